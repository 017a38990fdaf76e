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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_follow_spin_syntax() {
        assert_eq!(Route::parse("/...").unwrap(), Route::Prefix(String::new()));
        assert_eq!(
            Route::parse("/api/...").unwrap(),
            Route::Prefix("/api".into())
        );
        assert_eq!(
            Route::parse("/predict/").unwrap(),
            Route::Exact("/predict".into())
        );
        assert_eq!(Route::parse("/api/...").unwrap().to_string(), "/api/...");
        assert!(Route::parse("predict").is_err());
    }
}
