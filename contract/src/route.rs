//! The function's route table: every path the function answers, the method it takes and the model
//! and version it names. The function dispatches on it; the host reads it to learn which model a
//! request named when the function could not say (a timeout).

/// A model named by a path, with the version or alias the path pins, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelRef<'a> {
    /// The model.
    pub model: &'a str,
    /// The pinned version or alias.
    pub version: Option<&'a str>,
}

/// One route of the function's HTTP contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// `POST /models/{model}/predict`, `/models/{model}/versions/{version}/predict`, or `None`
    /// for `POST /predict` (the default model).
    Predict(Option<ModelRef<'a>>),
    /// `GET /health`.
    Health,
    /// `GET /models`.
    Models,
    /// `GET /openapi.json`: the API as OpenAPI 3.1, generated from the model specs.
    OpenApi,
    /// `GET /v2`: KServe v2 server metadata.
    V2Server,
    /// `GET /v2/health/live`, `/v2/health/ready`.
    V2Health,
    /// `GET /v2/models/{model}[/versions/{version}]`.
    V2Metadata(ModelRef<'a>),
    /// `GET /v2/models/{model}[/versions/{version}]/ready`.
    V2Ready(ModelRef<'a>),
    /// `POST /v2/models/{model}[/versions/{version}]/infer`.
    V2Infer(ModelRef<'a>),
    /// `POST /v1/embeddings`: OpenAI-compatible embeddings; the model is named in the body.
    Embeddings,
}

impl<'a> Route<'a> {
    /// The route a path (query string allowed) names, or `None` when there is none.
    pub fn parse(path: &'a str) -> Option<Self> {
        let named = |model| ModelRef {
            model,
            version: None,
        };
        let pinned = |model, version| ModelRef {
            model,
            version: Some(version),
        };
        Some(match segments(path).as_slice() {
            ["predict"] => Route::Predict(None),
            ["models", model, "predict"] => Route::Predict(Some(named(model))),
            ["models", model, "versions", version, "predict"] => {
                Route::Predict(Some(pinned(model, version)))
            }
            ["health"] => Route::Health,
            ["models"] => Route::Models,
            ["openapi.json"] => Route::OpenApi,
            ["v2"] => Route::V2Server,
            ["v2", "health", "live" | "ready"] => Route::V2Health,
            ["v2", "models", model] => Route::V2Metadata(named(model)),
            ["v2", "models", model, "versions", version] => {
                Route::V2Metadata(pinned(model, version))
            }
            ["v2", "models", model, "ready"] => Route::V2Ready(named(model)),
            ["v2", "models", model, "versions", version, "ready"] => {
                Route::V2Ready(pinned(model, version))
            }
            ["v2", "models", model, "infer"] => Route::V2Infer(named(model)),
            ["v2", "models", model, "versions", version, "infer"] => {
                Route::V2Infer(pinned(model, version))
            }
            ["v1", "embeddings"] => Route::Embeddings,
            _ => return None,
        })
    }

    /// The route's path, which [`Route::parse`] reads back as the same route. Model names and
    /// versions go in as they are: a caller building a path from names it was given checks them
    /// with [`is_path_segment`] first.
    pub fn path(&self) -> String {
        let model_path = |target: &ModelRef, leaf: &str| {
            let versioned = match target.version {
                Some(version) => format!("/models/{}/versions/{version}", target.model),
                None => format!("/models/{}", target.model),
            };
            format!("{versioned}{leaf}")
        };
        match self {
            Route::Predict(None) => "/predict".to_string(),
            Route::Predict(Some(target)) => model_path(target, "/predict"),
            Route::Health => "/health".to_string(),
            Route::Models => "/models".to_string(),
            Route::OpenApi => "/openapi.json".to_string(),
            Route::V2Server => "/v2".to_string(),
            Route::V2Health => "/v2/health/ready".to_string(),
            Route::V2Metadata(target) => format!("/v2{}", model_path(target, "")),
            Route::V2Ready(target) => format!("/v2{}", model_path(target, "/ready")),
            Route::V2Infer(target) => format!("/v2{}", model_path(target, "/infer")),
            Route::Embeddings => "/v1/embeddings".to_string(),
        }
    }

    /// The method the route takes.
    pub fn method(&self) -> &'static str {
        match self {
            Route::Predict(_) | Route::V2Infer(_) | Route::Embeddings => "POST",
            _ => "GET",
        }
    }
}

/// Whether a path (query string allowed) is under the KServe v2 protocol, whose error envelope and
/// statuses differ from Ember's — also for paths that name no route.
pub fn is_v2_path(path: &str) -> bool {
    segments(path).first() == Some(&"v2")
}

/// Whether `name` (a model or version a client sent outside a path, e.g. over gRPC) can stand as
/// one path segment of a route: non-empty, without `/`, `?`, `#` or `%`.
pub fn is_path_segment(name: &str) -> bool {
    !name.is_empty() && !name.contains(['/', '?', '#', '%'])
}

/// A path's segments, without the query string and the surrounding slashes.
fn segments(path: &str) -> Vec<&str> {
    let path = path.split('?').next().unwrap_or_default();
    path.trim_matches('/').split('/').collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_their_model_and_version() {
        assert_eq!(Route::parse("/predict?debug=1"), Some(Route::Predict(None)));
        assert_eq!(
            Route::parse("/models/digits/versions/canary/predict"),
            Some(Route::Predict(Some(ModelRef {
                model: "digits",
                version: Some("canary")
            })))
        );
        let infer = Route::parse("/v2/models/digits/infer").unwrap();
        assert_eq!(infer.method(), "POST");
        assert_eq!(Route::parse("/v2/health/ready"), Some(Route::V2Health));
        assert_eq!(Route::parse("/openapi.json"), Some(Route::OpenApi));
        assert_eq!(Route::parse("/health").map(|r| r.method()), Some("GET"));
        for unknown in ["/", "/models/x", "/v2/health/dead", "/predict/more"] {
            assert_eq!(Route::parse(unknown), None, "{unknown}");
        }
        assert!(is_v2_path("/v2/nothing") && is_v2_path("/v2?x") && !is_v2_path("/v20"));
    }

    #[test]
    fn every_route_parses_back_from_its_path() {
        let named = ModelRef {
            model: "digits",
            version: None,
        };
        let pinned = ModelRef {
            model: "credit-risk",
            version: Some("canary"),
        };
        let mut routes = vec![
            Route::Predict(None),
            Route::Health,
            Route::Models,
            Route::OpenApi,
            Route::V2Server,
            Route::V2Health,
            Route::Embeddings,
        ];
        for target in [named, pinned] {
            routes.extend([
                Route::Predict(Some(target)),
                Route::V2Metadata(target),
                Route::V2Ready(target),
                Route::V2Infer(target),
            ]);
        }
        for route in routes {
            assert_eq!(Route::parse(&route.path()), Some(route), "{}", route.path());
        }
        assert!(is_path_segment("credit-risk") && is_path_segment("2"));
        for bad in ["", "a/b", "a?b", "a%2Fb", "a#b"] {
            assert!(!is_path_segment(bad), "{bad}");
        }
    }
}
