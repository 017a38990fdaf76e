//! The function's HTTP contract (DESIGN.md), independent of any host: a request in, a JSON reply out.
//! Each target supplies a [`Catalog`] of model specs and an [`Inference`] engine.

use serde_json::{json, Value};

use crate::catalog::Catalog;
use crate::error::ApiError;
use crate::postprocess::{classify, Classification};
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
    /// What the host records about a prediction (audit trail, drift, shadow), if one was made.
    pub telemetry: Option<Telemetry>,
}

/// A prediction's record for the host, sent as `ember-x-*` headers that Ember's host strips.
#[derive(Debug, Clone, PartialEq)]
pub struct Telemetry {
    /// The inputs as the model saw them (tabular row; mean intensity for images), for drift.
    pub features: Vec<f64>,
    /// The predicted class.
    pub prediction: usize,
    /// The shadow version's answer, compared with the returned one.
    pub shadow: Option<ShadowResult>,
    /// `(failed version, reason)` when a fallback version answered.
    pub fallback: Option<(String, String)>,
}

/// A shadow version's answer to the same request.
#[derive(Debug, Clone, PartialEq)]
pub struct ShadowResult {
    /// Shadow version.
    pub version: String,
    /// Its predicted class.
    pub prediction: usize,
    /// Whether it agrees with the returned prediction.
    pub agrees: bool,
}

impl Telemetry {
    /// The `ember-x-*` headers carrying this telemetry.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let features: Vec<String> = self.features.iter().map(|f| f.to_string()).collect();
        let mut headers = vec![
            ("ember-x-features", features.join(",")),
            ("ember-x-prediction", self.prediction.to_string()),
        ];
        if let Some(shadow) = &self.shadow {
            headers.push((
                "ember-x-shadow",
                format!(
                    "{}:{}:{}",
                    shadow.version,
                    shadow.prediction,
                    u8::from(shadow.agrees)
                ),
            ));
        }
        if let Some((version, reason)) = &self.fallback {
            headers.push(("ember-x-fallback", format!("{version}:{reason}")));
        }
        headers
    }
}

impl Response {
    fn ok(body: Value) -> Self {
        Self {
            status: 200,
            body,
            model: None,
            telemetry: None,
        }
    }

    fn from_model(spec: &ModelSpec, body: Value) -> Self {
        Self {
            status: 200,
            body,
            model: Some((spec.name.clone(), spec.version.clone())),
            telemetry: None,
        }
    }

    /// The contract's error reply.
    pub fn error(error: &ApiError) -> Self {
        Self {
            status: error.status,
            body: error.to_json(),
            model: None,
            telemetry: None,
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
                telemetry: None,
            },
        }
    }

    /// Looks a model version up and remembers it for the reply's attribution.
    fn spec(&self, name: &str, version: Option<&str>, pick: Pick) -> Result<ModelSpec, ApiError> {
        let spec = self.catalog.spec(name, version, pick)?;
        self.remember(&spec);
        Ok(spec)
    }

    /// The model version an error reply will be attributed to.
    fn remember(&self, spec: &ModelSpec) {
        self.resolved
            .set(Some((spec.name.clone(), spec.version.clone())));
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
        let routing = self.catalog.routing(name);
        let spec = self
            .catalog
            .spec_routed(name, version, &routing, request.pick)?;
        self.remember(&spec);
        let body = json_body(request)?;
        let input = preprocess(&spec, &body)?;
        let features = drift_features(&spec, &input);
        let (spec, result, fallback) = match self.classify(&spec, input) {
            Ok(result) => (spec, result, None),
            Err(error) if error.status >= 500 => {
                let failed = (spec.version.clone(), error.code.to_string());
                match routing
                    .fallback
                    .as_deref()
                    .filter(|v| *v != spec.version)
                    .and_then(|v| self.run_version(name, v, &body).ok())
                {
                    Some((backup, result)) => (backup, result, Some(failed)),
                    None => return default_answer(&routing, &spec, failed, features).ok_or(error),
                }
            }
            Err(error) => return Err(error),
        };
        let shadow = routing
            .shadow
            .as_deref()
            .filter(|v| *v != spec.version)
            .and_then(|v| self.shadow(name, v, &body, result.prediction));
        let mut reply = prediction_body(&spec, &result);
        if let Some((failed, reason)) = &fallback {
            reply["fallback"] = json!({ "from_version": failed, "reason": reason });
        }
        let mut response = Response::from_model(&spec, reply);
        response.telemetry = Some(Telemetry {
            features,
            prediction: result.prediction,
            shadow,
            fallback,
        });
        Ok(response)
    }

    fn classify(&self, spec: &ModelSpec, input: Tensor) -> Result<Classification, ApiError> {
        let outputs = self.inference.infer(spec, vec![input])?;
        classify(spec, &outputs)
    }

    /// Preprocesses and classifies `body` with another version of the model (fallback, shadow).
    fn run_version(
        &self,
        name: &str,
        version: &str,
        body: &Value,
    ) -> Result<(ModelSpec, Classification), ApiError> {
        let spec = self.catalog.spec(name, Some(version), Pick::default())?;
        let result = self.classify(&spec, preprocess(&spec, body)?)?;
        Ok((spec, result))
    }

    /// Runs the shadow version on the same request; its failures never reach the caller.
    fn shadow(
        &self,
        name: &str,
        version: &str,
        body: &Value,
        returned: usize,
    ) -> Option<ShadowResult> {
        let (spec, result) = self.run_version(name, version, body).ok()?;
        Some(ShadowResult {
            version: spec.version,
            prediction: result.prediction,
            agrees: result.prediction == returned,
        })
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

/// The model's declared default answer, marked as a fallback, when it has one.
fn default_answer(
    routing: &crate::routing::Routing,
    spec: &ModelSpec,
    failed: (String, String),
    features: Vec<f64>,
) -> Option<Response> {
    let answer = routing.default_answer.as_ref()?;
    let body = fallback_answer(answer, &spec.name, &failed.0, &failed.1);
    let mut response = Response::from_model(spec, body);
    response.telemetry = Some(Telemetry {
        features,
        prediction: answer["prediction"].as_u64().unwrap_or_default() as usize,
        shadow: None,
        fallback: Some(failed),
    });
    Some(response)
}

/// A declared default answer as a reply: the answer's fields plus `model` and a `fallback` mark.
pub fn fallback_answer(answer: &Value, model: &str, failed_version: &str, reason: &str) -> Value {
    let mut body = match answer {
        Value::Object(fields) => Value::Object(fields.clone()),
        other => json!({ "prediction": other }),
    };
    body["model"] = json!(model);
    body["fallback"] =
        json!({ "from_version": failed_version, "reason": reason, "default_answer": true });
    body
}

/// The `/predict` reply for a classification: every host and backend (the browser too) answers
/// with this shape.
pub fn prediction_body(spec: &ModelSpec, result: &Classification) -> Value {
    json!({
        "model": spec.name,
        "model_version": spec.version,
        "prediction": result.prediction,
        "label": result.label,
        "confidence": result.confidence,
        "probabilities": result.probabilities,
        "labels": spec.labels,
        "timestamp": crate::clock::now_rfc3339(),
    })
}

/// The model's preprocessing: named features or an image into its input tensor.
pub fn preprocess(spec: &ModelSpec, body: &Value) -> Result<Tensor, ApiError> {
    match (&spec.tabular, &spec.vision) {
        (Some(tabular), _) => tabular::to_tensor(tabular, body),
        (_, Some(vision)) => vision::to_tensor(vision, body),
        _ => Err(ApiError::new(
            503,
            "model_not_ready",
            "model has no preprocessing",
        )),
    }
}

/// What drift monitoring compares with the training baseline: the tabular row itself, or an
/// image's mean intensity in [0, 1] (undoing the normalization).
fn drift_features(spec: &ModelSpec, input: &Tensor) -> Vec<f64> {
    let values = input.data.to_f64();
    match &spec.vision {
        None => values,
        Some(vision) => {
            let plane = values.len() / vision.mean.len().max(1);
            let sum: f64 = values
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let c = (i / plane.max(1)).min(vision.mean.len() - 1);
                    v * vision.std[c] as f64 + vision.mean[c] as f64
                })
                .sum();
            vec![sum / values.len().max(1) as f64]
        }
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
