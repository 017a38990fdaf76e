//! The function's HTTP contract, independent of any host: a request in, a JSON reply out. Each
//! target supplies a [`Catalog`] of model specs and an [`Inference`] engine.
//!
//! By role: this module routes ([`ember_contract::Route`]) and answers the metadata and KServe v2
//! routes; [`policy`] runs a prediction under the model's version policy (splits, fallback,
//! shadow, default answer); [`embed`] answers text models and OpenAI's `/v1/embeddings`;
//! [`predict`] is the sans-I/O pipeline every target shares; [`reply`] shapes what goes back.

pub mod embed;
pub mod policy;
pub mod predict;
pub mod reply;

use std::cell::Cell;

use ember_contract::route::{is_v2_path, ModelRef};
use ember_contract::{ApiError, Code, ModelVersion, Route};
use serde_json::json;

use crate::catalog::Catalog;
use crate::openapi;
use crate::routing::Pick;
use crate::spec::ModelSpec;
use crate::tensor::Tensor;
use crate::v2;
pub use reply::Response;

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
    /// The `Inference-Header-Content-Length` header, if any: a v2 infer body's JSON part ends
    /// there and binary tensor data follows.
    pub inference_header_length: Option<&'a str>,
    /// The whole body (at most [`predict::MAX_BODY_BYTES`]).
    pub body: &'a [u8],
    /// How a traffic split picks a version for this caller.
    pub pick: Pick<'a>,
    /// The models the caller's API key is limited to, comma-separated
    /// ([`ember_contract::headers::ALLOWED_MODELS`], set by Ember's host); `None`: any model.
    pub allowed_models: Option<&'a str>,
}

/// The function: routes requests to predictions, v2 inference, metadata and health.
pub struct App<C, I> {
    catalog: C,
    inference: I,
    default_model: String,
    /// The model version the request resolved, for the attribution of error replies.
    resolved: Cell<Option<ModelVersion>>,
}

impl<C: Catalog, I: Inference> App<C, I> {
    /// A function over this catalog and engine; `/predict` serves `default_model`.
    pub fn new(catalog: C, inference: I, default_model: impl Into<String>) -> Self {
        Self {
            catalog,
            inference,
            default_model: default_model.into(),
            resolved: Cell::new(None),
        }
    }

    /// Answers one request; every failure becomes a JSON error reply. Replies name the model
    /// version they resolved, errors included, so hosts can attribute them.
    pub fn handle(&self, request: &Request) -> Response {
        let route = Route::parse(request.path);
        match self.route(request, route) {
            Ok(response) => response,
            Err(error) => Response {
                model: self.resolved.take(),
                allow: route
                    .filter(|_| error.code == Code::MethodNotAllowed)
                    .map(|r| r.method()),
                ..Response::error(&error, is_v2_path(request.path))
            },
        }
    }

    fn route(&self, request: &Request, route: Option<Route>) -> Result<Response, ApiError> {
        let route = route.ok_or_else(|| ApiError::new(Code::NoRoute, "no such route"))?;
        if request.method != route.method() {
            return Err(ApiError::new(
                Code::MethodNotAllowed,
                format!(
                    "{} is not allowed here; use {}",
                    request.method,
                    route.method()
                ),
            ));
        }
        match route {
            Route::Predict(Some(target)) => self.predict(request, target.model, target.version),
            Route::Predict(None) => self.predict(request, &self.default_model, None),
            Route::Health => Ok(Response::ok(
                json!({ "status": "ok", "models": self.catalog.models() }),
            )),
            Route::Models => Ok(Response::ok(json!({ "models": self.catalog.models() }))),
            Route::OpenApi => self.openapi(),
            Route::V2Server => Ok(Response::ok(v2::server_metadata())),
            // The function is live and ready whenever it runs.
            Route::V2Health => Ok(Response::ok(json!({}))),
            Route::V2Metadata(target) => self.metadata(target),
            Route::V2Ready(target) => {
                self.spec(target)?;
                Ok(Response::ok(json!({})))
            }
            Route::V2Infer(target) => self.infer(request, target),
            Route::Embeddings => self.openai_embeddings(request),
        }
    }

    /// Looks up the version a v2 route names and remembers it for the reply's attribution.
    fn spec(&self, target: ModelRef) -> Result<ModelSpec, ApiError> {
        let spec = self
            .catalog
            .spec(target.model, target.version, Pick::default())?;
        self.remember(&spec);
        Ok(spec)
    }

    /// The model version an error reply will be attributed to.
    fn remember(&self, spec: &ModelSpec) {
        self.resolved.set(Some(spec.model_version()));
    }

    /// The OpenAPI document for every version of every model in the catalog.
    fn openapi(&self) -> Result<Response, ApiError> {
        let models = self
            .catalog
            .models()
            .into_iter()
            .map(|versions| {
                let specs = versions
                    .versions
                    .iter()
                    .map(|v| self.catalog.spec(&versions.name, Some(v), Pick::default()))
                    .collect::<Result<_, _>>()?;
                Ok(openapi::Documented { versions, specs })
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        Ok(Response::ok(openapi::document(
            &models,
            &self.default_model,
        )))
    }

    fn metadata(&self, target: ModelRef) -> Result<Response, ApiError> {
        let spec = self.spec(target)?;
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

    fn infer(&self, request: &Request, target: ModelRef) -> Result<Response, ApiError> {
        let spec = self
            .catalog
            .spec(target.model, target.version, request.pick)?;
        self.remember(&spec);
        let infer = v2::parse_infer(&spec, request.inference_header_length, request.body)?;
        let outputs = self.inference.infer(&spec, infer.inputs.clone())?;
        let reply = v2::infer_response(&spec, &infer, &outputs);
        Ok(Response {
            tensor_data: reply.tensor_data,
            ..Response::from_model(&spec, reply.header)
        })
    }
}
