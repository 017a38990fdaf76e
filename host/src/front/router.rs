//! The front's route table: which of the manifest's components a path goes to — the function or
//! one of the static sites — with Spin's precedence (an exact route before a wildcard, a longer
//! prefix before a shorter one; the function when a site's route is the same as one of its own),
//! matched by `matchit`.

use anyhow::Context as _;

use crate::manifest::SpinRoute;

/// Where a path goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The function.
    Function,
    /// The static site at this index of the manifest's sites.
    Site(usize),
}

/// The manifest's HTTP routes, compiled once.
pub struct Router(matchit::Router<Target>);

impl Router {
    /// A table over the function's routes and each static site's route (in the order given).
    pub fn new<'a>(
        function: &[SpinRoute],
        sites: impl IntoIterator<Item = &'a SpinRoute>,
    ) -> anyhow::Result<Self> {
        let mut router = matchit::Router::new();
        let mut targets: Vec<(&SpinRoute, Target)> = function
            .iter()
            .map(|route| (route, Target::Function))
            .chain(
                sites
                    .into_iter()
                    .enumerate()
                    .map(|(i, r)| (r, Target::Site(i))),
            )
            .collect();
        // Exact routes first, so a wildcard's own path never takes an exact route's place; the
        // sort is stable, so the function's routes still come before the sites'.
        targets.sort_by_key(|(route, _)| matches!(route, SpinRoute::Prefix(_)));
        for (route, target) in targets {
            for pattern in patterns(route) {
                match router.insert(pattern.clone(), target) {
                    Ok(()) => {}
                    // A path already taken keeps its first owner: exact before wildcard, the
                    // function before a site.
                    Err(matchit::InsertError::Conflict { .. }) => {}
                    Err(error) => {
                        return Err(error).with_context(|| format!("route '{route}'"));
                    }
                }
            }
        }
        Ok(Self(router))
    }

    /// Where `path` (without query) goes; `None` when no route names it.
    pub fn route(&self, path: &str) -> Option<Target> {
        let trimmed = path.trim_end_matches('/');
        let path = if trimmed.is_empty() { "/" } else { trimmed };
        self.0.at(path).ok().map(|matched| *matched.value)
    }
}

/// matchit patterns for a Spin route: the path itself, and for a wildcard everything below it.
fn patterns(route: &SpinRoute) -> Vec<String> {
    let escape = |path: &str| path.replace('{', "{{").replace('}', "}}");
    match route {
        SpinRoute::Exact(path) if path.is_empty() => vec!["/".into()],
        SpinRoute::Exact(path) => vec![escape(path)],
        SpinRoute::Prefix(prefix) if prefix.is_empty() => vec!["/".into(), "/{*rest}".into()],
        SpinRoute::Prefix(prefix) => vec![escape(prefix), format!("{}/{{*rest}}", escape(prefix))],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(text: &str) -> SpinRoute {
        SpinRoute::parse(text).unwrap()
    }

    #[test]
    fn spin_precedence_between_the_function_and_static_sites() {
        let router = Router::new(
            &[route("/..."), route("/predict")],
            &[route("/demo/..."), route("/predict"), route("/files/x")],
        )
        .unwrap();
        assert_eq!(router.route("/predict"), Some(Target::Function));
        assert_eq!(
            router.route("/models/digits/predict"),
            Some(Target::Function)
        );
        assert_eq!(router.route("/"), Some(Target::Function));
        assert_eq!(router.route("/demo"), Some(Target::Site(0)));
        assert_eq!(router.route("/demo/"), Some(Target::Site(0)));
        assert_eq!(router.route("/demo/pkg/x.wasm"), Some(Target::Site(0)));
        assert_eq!(router.route("/demonstration"), Some(Target::Function));
        assert_eq!(router.route("/files/x"), Some(Target::Site(2)));
    }

    #[test]
    fn an_exact_site_route_beats_the_functions_wildcard_at_its_own_path() {
        let router = Router::new(&[route("/x/...")], &[route("/x")]).unwrap();
        assert_eq!(router.route("/x"), Some(Target::Site(0)));
        assert_eq!(router.route("/x/y"), Some(Target::Function));
    }

    #[test]
    fn paths_no_route_names_go_nowhere() {
        let router = Router::new(&[route("/api/..."), route("/health")], &[]).unwrap();
        assert_eq!(router.route("/api"), Some(Target::Function));
        assert_eq!(router.route("/api/predict"), Some(Target::Function));
        assert_eq!(router.route("/health/"), Some(Target::Function));
        for path in ["/", "/apiary", "/health/x", "/predict"] {
            assert_eq!(router.route(path), None, "{path}");
        }
    }
}
