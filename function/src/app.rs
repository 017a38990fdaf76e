//! The function's HTTP contract (DESIGN.md), independent of any host: a request in, a JSON reply out.
//! Each target supplies a [`Catalog`] of model specs and an [`Inference`] engine.

use serde_json::{json, Value};

use crate::catalog::Catalog;
use crate::error::ApiError;
use crate::postprocess::classify;
use crate::routing::Pick;
use crate::spec::ModelSpec;
use crate::tensor::Tensor;
use crate::{tabular, v2, vision};

/// Largest request body the function accepts, in bytes.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// Model served by `POST /predict` unless configured otherwise.
pub const DEFAULT_MODEL: &str = "credit-risk";

/// Runs a model version's graph; the host (wasi-nn), an in-guest engine or the browser implement it.
pub trait Inference {
    /// Runs `spec`'s graph on checked inputs and returns its outputs.
    fn infer(&self, spec: &ModelSpec, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, ApiError>;
}

/// An incoming request, as much of it as the contract reads.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// HTTP method, uppercase.
    pub method: &'a str,
    /// Path, possibly with a query string.
    pub path: &'a str,
    /// The `content-type` header, if any.
    pub content_type: Option<&'a str>,
    /// The whole body (at most [`MAX_BODY_BYTES`]).
    pub body: &'a [u8],
    /// How a traffic split picks a version for this caller.
    pub pick: Pick<'a>,
}

/// A reply: status, JSON body and the model version that answered (sent as the
/// `ember-model` / `ember-model-version` headers, which hosts use to attribute usage).
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: Value,
    /// `(model, version)` when a model version was resolved.
    pub model: Option<(String, String)>,
}

impl Response {
    fn ok(body: Value) -> Self {
        Self {
            status: 200,
            body,
            model: None,
        }
    }

    fn from_model(spec: &ModelSpec, body: Value) -> Self {
        Self {
            status: 200,
            body,
            model: Some((spec.name.clone(), spec.version.clone())),
        }
    }

    /// The contract's error reply.
    pub fn error(error: &ApiError) -> Self {
        Self {
            status: error.status,
            body: error.to_json(),
            model: None,
        }
    }

    /// The body as bytes.
    pub fn body_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.body).unwrap_or_default()
    }
}

/// The function: routes requests to predictions, v2 inference, metadata and health.
pub struct App<C, I> {
    catalog: C,
    inference: I,
    default_model: String,
    resolved: std::cell::Cell<Option<(String, String)>>,
}

impl<C: Catalog, I: Inference> App<C, I> {
    /// A function over this catalog and engine; `/predict` serves `default_model`.
    pub fn new(catalog: C, inference: I, default_model: impl Into<String>) -> Self {
        Self {
            catalog,
            inference,
            default_model: default_model.into(),
            resolved: std::cell::Cell::new(None),
        }
    }

    /// Answers one request; every failure becomes a JSON error reply. Replies name the model
    /// version they resolved, errors included, so hosts can attribute them.
    pub fn handle(&self, request: &Request) -> Response {
        let path = request.path.split('?').next().unwrap_or_default();
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let is_v2 = segments.first() == Some(&"v2");
        match self.route(request, &segments) {
            Ok(response) => response,
            Err(error) => Response {
                status: error.status,
                body: if is_v2 {
                    error.to_v2_json()
                } else {
                    error.to_json()
                },
                model: self.resolved.take(),
            },
        }
    }

    /// Looks a model version up and remembers it for the reply's attribution.
    fn spec(&self, name: &str, version: Option<&str>, pick: Pick) -> Result<ModelSpec, ApiError> {
        let spec = self.catalog.spec(name, version, pick)?;
        self.resolved
            .set(Some((spec.name.clone(), spec.version.clone())));
        Ok(spec)
    }

    fn route(&self, request: &Request, segments: &[&str]) -> Result<Response, ApiError> {
        let allowed = allowed_method(segments)
            .ok_or_else(|| ApiError::not_found("no_route", "no such route"))?;
        if request.method != allowed {
            return Err(ApiError::new(
                405,
                "method_not_allowed",
                format!("{} is not allowed here; use {allowed}", request.method),
            ));
        }
        match segments {
            ["predict"] => self.predict(request, &self.default_model, None),
            ["models", name, "predict"] => self.predict(request, name, None),
            ["models", name, "versions", version, "predict"] => {
                self.predict(request, name, Some(version))
            }
            ["health"] => Ok(Response::ok(
                json!({ "status": "ok", "models": self.catalog.models() }),
            )),
            ["models"] => Ok(Response::ok(json!({ "models": self.catalog.models() }))),
            ["v2"] => Ok(Response::ok(v2::server_metadata())),
            ["v2", "models", name] => self.metadata(name, None),
            ["v2", "models", name, "versions", version] => self.metadata(name, Some(version)),
            ["v2", "models", name, "ready"] => self.ready(name, None),
            ["v2", "models", name, "versions", version, "ready"] => self.ready(name, Some(version)),
            ["v2", "models", name, "infer"] => self.infer(request, name, None),
            ["v2", "models", name, "versions", version, "infer"] => {
                self.infer(request, name, Some(version))
            }
            // `/v2/health/live` and `/v2/health/ready`: the function is up whenever it runs.
            _ => Ok(Response::ok(json!({}))),
        }
    }

    fn predict(
        &self,
        request: &Request,
        name: &str,
        version: Option<&str>,
    ) -> Result<Response, ApiError> {
        let spec = self.spec(name, version, request.pick)?;
        let body = json_body(request)?;
        let input = match (&spec.tabular, &spec.vision) {
            (Some(tabular), _) => tabular::to_tensor(tabular, &body)?,
            (_, Some(vision)) => vision::to_tensor(vision, &body)?,
            _ => {
                return Err(ApiError::new(
                    503,
                    "model_not_ready",
                    "model has no preprocessing",
                ))
            }
        };
        let outputs = self.inference.infer(&spec, vec![input])?;
        let result = classify(&spec, &outputs)?;
        Ok(Response::from_model(
            &spec,
            json!({
                "model": spec.name,
                "model_version": spec.version,
                "prediction": result.prediction,
                "label": result.label,
                "confidence": result.confidence,
                "probabilities": result.probabilities,
                "labels": spec.labels,
                "timestamp": crate::clock::now_rfc3339(),
            }),
        ))
    }

    fn metadata(&self, name: &str, version: Option<&str>) -> Result<Response, ApiError> {
        let spec = self.spec(name, version, Pick::default())?;
        let versions = self
            .catalog
            .models()
            .into_iter()
            .find(|m| m.name == spec.name)
            .unwrap_or_else(|| crate::catalog::ModelVersions {
                name: spec.name.clone(),
                versions: vec![spec.version.clone()],
                aliases: Default::default(),
            });
        Ok(Response::ok(v2::model_metadata(&spec, &versions)))
    }

    fn ready(&self, name: &str, version: Option<&str>) -> Result<Response, ApiError> {
        self.spec(name, version, Pick::default())?;
        Ok(Response::ok(json!({})))
    }

    fn infer(
        &self,
        request: &Request,
        name: &str,
        version: Option<&str>,
    ) -> Result<Response, ApiError> {
        let spec = self.spec(name, version, request.pick)?;
        let body = json_body(request)?;
        let infer = v2::parse_infer(&spec, &body)?;
        let outputs = self.inference.infer(&spec, infer.inputs.clone())?;
        Ok(Response::from_model(
            &spec,
            v2::infer_response(&spec, &infer, &outputs),
        ))
    }
}

/// The method a known route accepts, or `None` for an unknown path.
fn allowed_method(segments: &[&str]) -> Option<&'static str> {
    match segments {
        ["predict"]
        | ["models", _, "predict"]
        | ["models", _, "versions", _, "predict"]
        | ["v2", "models", _, "infer"]
        | ["v2", "models", _, "versions", _, "infer"] => Some("POST"),
        ["health"]
        | ["models"]
        | ["v2"]
        | ["v2", "health", "live" | "ready"]
        | ["v2", "models", _]
        | ["v2", "models", _, "versions", _]
        | ["v2", "models", _, "ready"]
        | ["v2", "models", _, "versions", _, "ready"] => Some("GET"),
        _ => None,
    }
}

/// Checks the content type and size, then parses the body as JSON.
fn json_body(request: &Request) -> Result<Value, ApiError> {
    let media_type = request
        .content_type
        .and_then(|ct| ct.split(';').next())
        .map(|ct| ct.trim().to_ascii_lowercase());
    if media_type.as_deref() != Some("application/json") {
        return Err(ApiError::new(
            415,
            "unsupported_media_type",
            format!(
                "content-type must be application/json, got {}",
                request.content_type.unwrap_or("none")
            ),
        )
        .with_field("content-type"));
    }
    if request.body.len() > MAX_BODY_BYTES {
        return Err(too_large());
    }
    serde_json::from_slice(request.body).map_err(|e| {
        ApiError::bad_request("malformed_json", format!("the body is not valid JSON: {e}"))
            .with_field("$")
    })
}

/// 413 for a body over [`MAX_BODY_BYTES`].
pub fn too_large() -> ApiError {
    ApiError::new(
        413,
        "body_too_large",
        format!("the body exceeds {MAX_BODY_BYTES} bytes"),
    )
}
