//! Tabular preprocessing: a JSON object of named features → one validated FP32 row.

use serde_json::{Map, Value};

use crate::spec::{FeatureKind, FeatureSpec, TabularSpec};
use crate::tensor::{Tensor, TensorData};
use ember_contract::{ApiError, Code};

/// Validates `body` against the declared features and builds the `[1, features]` input row.
///
/// Unknown fields, missing required features, wrong types, non-integers for integer features,
/// values outside `[min, max]` and values that are not finite in FP32 are rejected with 422,
/// naming the field. Absent optional features take their declared default.
pub fn to_tensor(spec: &TabularSpec, body: &Value) -> Result<Tensor, ApiError> {
    let object = body.as_object().ok_or_else(|| {
        ApiError::invalid(
            Code::NotAnObject,
            "$",
            "the body must be a JSON object of named features",
        )
    })?;
    reject_unknown(spec, object)?;
    let row = spec
        .features
        .iter()
        .map(|feature| value_of(feature, object.get(&feature.name)))
        .collect::<Result<Vec<f32>, ApiError>>()?;
    Ok(Tensor {
        name: spec.input.clone(),
        shape: vec![1, row.len()],
        data: TensorData::F32(row),
    })
}

fn reject_unknown(spec: &TabularSpec, object: &Map<String, Value>) -> Result<(), ApiError> {
    match object
        .keys()
        .find(|key| !spec.features.iter().any(|f| &f.name == *key))
    {
        Some(key) => {
            let known: Vec<&str> = spec.features.iter().map(|f| f.name.as_str()).collect();
            Err(ApiError::invalid(
                Code::UnknownFeature,
                key.as_str(),
                format!(
                    "unknown feature '{key}'; expected one of {}",
                    known.join(", ")
                ),
            ))
        }
        None => Ok(()),
    }
}

fn value_of(feature: &FeatureSpec, value: Option<&Value>) -> Result<f32, ApiError> {
    let name = feature.name.as_str();
    let Some(value) = value else {
        return match (feature.required, feature.default) {
            (false, Some(default)) => Ok(default as f32),
            _ => Err(ApiError::invalid(
                Code::MissingFeature,
                name,
                format!("required feature '{name}' is missing"),
            )),
        };
    };
    let number = value.as_f64().ok_or_else(|| {
        ApiError::invalid(
            Code::WrongType,
            name,
            format!(
                "feature '{name}' must be {}, got {}",
                kind_name(feature.kind),
                json_type(value)
            ),
        )
    })?;
    let single = number as f32;
    if !number.is_finite() || !single.is_finite() {
        return Err(ApiError::invalid(
            Code::NotFinite,
            name,
            format!("feature '{name}' must be a finite number representable as FP32"),
        ));
    }
    if feature.kind == FeatureKind::Integer && number.fract() != 0.0 {
        return Err(ApiError::invalid(
            Code::NotAnInteger,
            name,
            format!("feature '{name}' must be an integer, got {number}"),
        ));
    }
    if number < feature.min || number > feature.max {
        return Err(ApiError::invalid(
            Code::OutOfRange,
            name,
            format!(
                "feature '{name}' must be between {} and {}, got {number}",
                feature.min, feature.max
            ),
        ));
    }
    Ok(single)
}

fn kind_name(kind: FeatureKind) -> &'static str {
    match kind {
        FeatureKind::Integer => "an integer",
        FeatureKind::Number => "a number",
    }
}

/// The JSON type of a value, for error messages.
pub fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
