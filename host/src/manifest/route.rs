//! Spin's HTTP route syntax: exact paths and prefix wildcards.

use anyhow::ensure;

/// A Spin HTTP route: exact (`/predict`) or prefix wildcard (`/api/...`, `/...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpinRoute {
    /// Matches one path.
    Exact(String),
    /// Matches a path and everything below it.
    Prefix(String),
}

impl std::fmt::Display for SpinRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpinRoute::Exact(path) => write!(f, "{path}"),
            SpinRoute::Prefix(prefix) => write!(f, "{prefix}/..."),
        }
    }
}

impl SpinRoute {
    /// Parses Spin's route syntax.
    pub fn parse(route: &str) -> anyhow::Result<Self> {
        ensure!(
            route.starts_with('/'),
            "route '{route}' must start with '/'"
        );
        Ok(match route.strip_suffix("/...") {
            Some(prefix) => SpinRoute::Prefix(prefix.to_string()),
            None => SpinRoute::Exact(route.trim_end_matches('/').to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_follow_spin_syntax() {
        assert_eq!(
            SpinRoute::parse("/...").unwrap(),
            SpinRoute::Prefix(String::new())
        );
        assert_eq!(
            SpinRoute::parse("/api/...").unwrap(),
            SpinRoute::Prefix("/api".into())
        );
        assert_eq!(
            SpinRoute::parse("/predict/").unwrap(),
            SpinRoute::Exact("/predict".into())
        );
        assert_eq!(
            SpinRoute::parse("/api/...").unwrap().to_string(),
            "/api/..."
        );
        assert!(SpinRoute::parse("predict").is_err());
    }
}
