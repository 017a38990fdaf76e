//! The prediction pipeline, sans I/O: a request body becomes the model's input tensor
//! ([`prepare`]); the model's outputs become the reply ([`finish`]). Inference in between is the
//! caller's — a host's wasi-nn, the embedded engine, or the browser's WebGPU and CPU backends —
//! so every target validates, preprocesses and answers with this same code.

use ember_contract::{ApiError, Code};
use serde_json::Value;

use crate::postprocess::{classify, Classification};
use crate::spec::{ModelSpec, VisionSpec};
use crate::tensor::{Tensor, TensorData};
use crate::{tabular, vision};

/// Largest request body the function accepts, in bytes.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// A request body checked against a model version's spec, ready for inference.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The model's input tensor.
    pub input: Tensor,
    /// What drift monitoring compares with the training baseline.
    pub features: Vec<f64>,
    /// How many ranked classes the reply lists (vision models), if any.
    pub top_k: Option<usize>,
}

/// Validates and preprocesses a `/predict` body for `spec`.
pub fn prepare(spec: &ModelSpec, body: &Value) -> Result<Prepared, ApiError> {
    let input = preprocess(spec, body)?;
    let top_k = match &spec.vision {
        Some(vision) => Some(vision::top_k(vision, spec.labels.len(), body)?),
        None => None,
    };
    let features = drift_features(spec, &input);
    Ok(Prepared {
        input,
        features,
        top_k,
    })
}

/// The classification the model's outputs make, checked against the spec.
pub fn finish(spec: &ModelSpec, outputs: &[Tensor]) -> Result<Classification, ApiError> {
    classify(spec, outputs)
}

/// Parses a request body as JSON; `Err` names the syntax error.
pub fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            Code::MalformedJson,
            format!("the body is not valid JSON: {e}"),
        )
        .with_field("$")
    })
}

/// Checks the content type and size, then parses the body as JSON.
pub fn json_body(content_type: Option<&str>, body: &[u8]) -> Result<Value, ApiError> {
    let media_type = content_type
        .and_then(|ct| ct.split(';').next())
        .map(|ct| ct.trim().to_ascii_lowercase());
    if media_type.as_deref() != Some(JSON) {
        return Err(ApiError::new(
            Code::UnsupportedMediaType,
            format!(
                "content-type must be {JSON}, got {}",
                content_type.unwrap_or("none")
            ),
        )
        .with_field("content-type"));
    }
    if body.len() > MAX_BODY_BYTES {
        return Err(too_large());
    }
    parse_json(body)
}

/// The JSON media type, which every reply without tensor data has.
pub const JSON: &str = "application/json";

/// 413 for a body over [`MAX_BODY_BYTES`].
pub fn too_large() -> ApiError {
    ApiError::new(
        Code::BodyTooLarge,
        format!("the body exceeds {MAX_BODY_BYTES} bytes"),
    )
}

/// The model's preprocessing: named features or an image into its input tensor.
fn preprocess(spec: &ModelSpec, body: &Value) -> Result<Tensor, ApiError> {
    match (&spec.tabular, &spec.vision) {
        (Some(tabular), _) => tabular::to_tensor(tabular, body),
        (_, Some(vision)) => vision::to_tensor(vision, body),
        _ => Err(ApiError::new(
            Code::ModelNotReady,
            "model has no preprocessing",
        )),
    }
}

/// What drift monitoring compares with the training baseline: the tabular row itself, or an
/// image's mean intensity in [0, 1] (undoing the normalization).
fn drift_features(spec: &ModelSpec, input: &Tensor) -> Vec<f64> {
    let Some(vision) = &spec.vision else {
        return input.data.to_f64();
    };
    let mean = match &input.data {
        TensorData::F32(values) => mean_intensity(vision, values),
        other => mean_intensity(vision, &other.to_f64()),
    };
    vec![mean]
}

/// The mean intensity of a normalized, channel-first image tensor: each channel's plane
/// un-normalized with its own mean and deviation (what is past the last full plane counts as the
/// last channel) — as the sum of each plane, scaled, without a copy.
fn mean_intensity<T: Copy + Into<f64>>(vision: &VisionSpec, values: &[T]) -> f64 {
    let channels = vision.mean.len().max(1);
    let plane = (values.len() / channels).max(1);
    let (mut sum, mut rest) = (0.0, values);
    for c in 0..channels {
        let (this, next) = if c + 1 == channels {
            (rest, &rest[rest.len()..])
        } else {
            rest.split_at(plane.min(rest.len()))
        };
        sum += f64::from(vision.std[c]) * plane_sum(this)
            + f64::from(vision.mean[c]) * this.len() as f64;
        rest = next;
    }
    sum / values.len().max(1) as f64
}

/// The sum of `values` in eight running lanes, which the compiler vectorizes (a 150,528-value
/// image tensor summed one value at a time was 3% of its request in wasm, measured).
fn plane_sum<T: Copy + Into<f64>>(values: &[T]) -> f64 {
    let mut lanes = [0f64; 8];
    let chunks = values.chunks_exact(lanes.len());
    let rest: f64 = chunks.remainder().iter().map(|v| (*v).into()).sum();
    for chunk in chunks {
        for (lane, v) in lanes.iter_mut().zip(chunk) {
            *lane += (*v).into();
        }
    }
    lanes.iter().sum::<f64>() + rest
}
