//! Spin's HTTP route syntax: exact paths and prefix wildcards.

use anyhow::ensure;

/// A Spin HTTP route: exact (`/predict`) or prefix wildcard (`/api/...`, `/...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Matches one path.
    Exact(String),
    /// Matches a path and everything below it.
    Prefix(String),
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Route::Exact(path) => write!(f, "{path}"),
            Route::Prefix(prefix) => write!(f, "{prefix}/..."),
        }
    }
}

impl Route {
    /// Parses Spin's route syntax.
    pub fn parse(route: &str) -> anyhow::Result<Self> {
        ensure!(
            route.starts_with('/'),
            "route '{route}' must start with '/'"
        );
        Ok(match route.strip_suffix("/...") {
            Some(prefix) => Route::Prefix(prefix.to_string()),
            None => Route::Exact(route.trim_end_matches('/').to_string()),
        })
    }

    /// How specific the route is, for choosing among routes that match one path as Spin does:
    /// exact routes before wildcards, longer prefixes before shorter ones.
    pub fn specificity(&self) -> (bool, usize) {
        match self {
            Route::Exact(path) => (true, path.len()),
            Route::Prefix(prefix) => (false, prefix.len()),
        }
    }

    /// Whether `path` (without query) is routed here.
    pub fn matches(&self, path: &str) -> bool {
        let path = path.trim_end_matches('/');
        match self {
            Route::Exact(exact) => path == exact,
            Route::Prefix(prefix) => {
                path == prefix
                    || path
                        .strip_prefix(prefix.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_follow_spin_wildcards() {
        let all = Route::parse("/...").unwrap();
        assert!(all.matches("/predict") && all.matches("/"));
        let api = Route::parse("/api/...").unwrap();
        assert!(api.matches("/api") && api.matches("/api/predict"));
        assert!(!api.matches("/apiary") && !api.matches("/predict"));
        let exact = Route::parse("/predict").unwrap();
        assert!(exact.matches("/predict") && !exact.matches("/predict/x"));
        assert!(Route::parse("predict").is_err());
    }
}
