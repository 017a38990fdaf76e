//! Replies: the status, JSON body and attribution every route answers with, and the shapes of a
//! prediction — the same on every host and in the browser.

use ember_contract::telemetry::Fallback;
use ember_contract::{ApiError, ModelVersion, Telemetry};
use serde::Serialize;
use serde_json::{json, Value};

use crate::app::predict;
use crate::postprocess::{Classification, Ranked};
use crate::spec::ModelSpec;
use crate::v2::binary::OCTET_STREAM;

/// A reply: status, JSON body and the model version that answered (sent as the
/// `ember-model` / `ember-model-version` headers, which hosts use to attribute usage).
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: Value,
    /// The model version that was resolved, if one was.
    pub model: Option<ModelVersion>,
    /// What the host records about a prediction (audit trail, drift, shadow), if one was made.
    pub telemetry: Option<Telemetry>,
    /// Raw tensor bytes that follow the JSON body (the v2 binary tensor data extension).
    pub tensor_data: Option<Vec<u8>>,
    /// The method the route takes, sent as a 405's `Allow` header.
    pub allow: Option<&'static str>,
    /// The `ETag` of what the body shows (the management API's routing revision).
    pub etag: Option<String>,
}

/// A [`Response`] as it goes on the wire.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    /// The `content-type`.
    pub content_type: &'static str,
    /// The `Inference-Header-Content-Length`: the JSON part's length, when tensor data follows it.
    pub header_length: Option<usize>,
    /// The body: the JSON, then any tensor data.
    pub bytes: Vec<u8>,
}

impl Response {
    /// 200 with `body`, attributed to no model.
    pub fn ok(body: Value) -> Self {
        Self {
            status: 200,
            body,
            model: None,
            telemetry: None,
            tensor_data: None,
            allow: None,
            etag: None,
        }
    }

    /// 200 with `body`, attributed to `spec`'s model version.
    pub fn from_model(spec: &ModelSpec, body: Value) -> Self {
        Self {
            model: Some(spec.model_version()),
            ..Self::ok(body)
        }
    }

    /// The error reply on Ember's API (`v2: false`) or KServe v2's (`v2: true`).
    pub fn error(error: &ApiError, v2: bool) -> Self {
        let (status, body) = if v2 {
            (error.code.v2_status(), error.to_v2_json())
        } else {
            (error.status(), error.to_json())
        };
        Self {
            status,
            body,
            model: None,
            telemetry: None,
            tensor_data: None,
            allow: None,
            etag: None,
        }
    }

    /// The reply's content type and body bytes.
    pub fn encode(&self) -> Encoded {
        let mut bytes = serde_json::to_vec(&self.body).unwrap_or_default();
        match &self.tensor_data {
            None => Encoded {
                content_type: predict::JSON,
                header_length: None,
                bytes,
            },
            Some(tensors) => {
                let header_length = Some(bytes.len());
                bytes.extend_from_slice(tensors);
                Encoded {
                    content_type: OCTET_STREAM,
                    header_length,
                    bytes,
                }
            }
        }
    }
}

/// The `/predict` reply for a classification: every host and backend (the browser too) answers
/// with this shape.
#[derive(Debug, Serialize)]
pub struct Prediction<'a> {
    /// The model.
    pub model: &'a str,
    /// The version that answered.
    pub model_version: &'a str,
    /// Index of the chosen class.
    pub prediction: usize,
    /// Its label.
    pub label: &'a str,
    /// Its probability.
    pub confidence: f64,
    /// Every class's probability, in label order.
    pub probabilities: &'a [f64],
    /// The labels, in class order.
    pub labels: &'a [String],
    /// The most probable classes, most probable first (vision models).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_k: Option<Vec<Ranked>>,
    /// When the answer was made (RFC 3339).
    pub timestamp: String,
    /// Set when this version answered for one that failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<FallbackMark<'a>>,
}

/// The mark on a reply that another version, or the declared default answer, gave for a failed one.
#[derive(Debug, Serialize)]
pub struct FallbackMark<'a> {
    /// The version that failed.
    pub from_version: &'a str,
    /// Its error code.
    pub reason: &'a str,
    /// Whether the answer is the model's declared default answer.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub default_answer: bool,
}

impl<'a> FallbackMark<'a> {
    /// The mark for a fallback version's answer.
    pub fn of(failed: &'a Fallback) -> Self {
        Self {
            from_version: &failed.from_version,
            reason: &failed.reason,
            default_answer: false,
        }
    }
}

impl<'a> Prediction<'a> {
    /// `spec`'s answer `result`, made now, listing the `top_k` most probable classes if asked.
    pub fn new(spec: &'a ModelSpec, result: &'a Classification, top_k: Option<usize>) -> Self {
        Self {
            model: &spec.name,
            model_version: &spec.version,
            prediction: result.prediction,
            label: &result.label,
            confidence: result.confidence,
            probabilities: &result.probabilities,
            labels: &spec.labels,
            top_k: top_k.map(|k| result.top_k(&spec.labels, k)),
            timestamp: crate::clock::now_rfc3339(),
            fallback: None,
        }
    }

    /// The reply body.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// A model's declared default answer standing in for a failed version: the reply body (the
/// answer's fields plus `model` and a `fallback` mark) and the telemetry recording it. The guest
/// answers with it when inference fails; Ember's host when the function runs past its deadline.
pub fn declared_answer(
    answer: &Value,
    model: &str,
    failed: Fallback,
    features: Vec<f64>,
) -> (Value, Telemetry) {
    let mut body = match answer {
        Value::Object(fields) => Value::Object(fields.clone()),
        other => json!({ "prediction": other }),
    };
    body["model"] = json!(model);
    body["fallback"] = json!(FallbackMark {
        default_answer: true,
        ..FallbackMark::of(&failed)
    });
    let telemetry = Telemetry {
        features,
        prediction: body["prediction"].as_u64().map(|p| p as usize),
        shadow: None,
        fallback: Some(failed),
    };
    (body, telemetry)
}
