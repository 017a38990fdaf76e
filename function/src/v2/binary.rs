//! Triton's binary tensor data extension to v2 REST. A request body may be a JSON header of
//! `Inference-Header-Content-Length` bytes followed by raw tensor bytes, which inputs with
//! `parameters.binary_data_size` claim in order; a reply does the same for the outputs asked for
//! with `binary_data` (or, for all of them, the request's `binary_data_output`). Elements are
//! little-endian, row-major.

use ember_contract::{headers, ApiError, Code};
use serde_json::Value;

use crate::app::predict::{self, MAX_BODY_BYTES};

/// The extension's name in `GET /v2`.
pub const EXTENSION: &str = "binary_tensor_data";

/// The tensor parameter giving how many of the bytes after the JSON header are its data.
pub const DATA_SIZE: &str = "binary_data_size";
/// The requested-output parameter asking for it as binary data.
pub const DATA: &str = "binary_data";
/// The request parameter asking for every output not named otherwise as binary data.
pub const DATA_OUTPUT: &str = "binary_data_output";

/// Media type of a body that carries tensor bytes after its JSON header.
pub const OCTET_STREAM: &str = "application/octet-stream";

/// An infer request body: its JSON header and the tensor bytes after it.
#[derive(Debug)]
pub struct SplitBody<'a> {
    /// The JSON header (the whole body when there are no tensor bytes).
    pub header: Value,
    /// The tensor bytes, for the inputs to claim.
    pub tensors: TensorBytes<'a>,
}

/// Splits an infer request body at `header_length` (the `Inference-Header-Content-Length`
/// header) and parses its JSON. As on Triton, the `content-type` is not consulted: the protocol
/// fixes the body's format, and tritonclient sends none.
pub fn split<'a>(header_length: Option<&str>, body: &'a [u8]) -> Result<SplitBody<'a>, ApiError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(predict::too_large());
    }
    let at = match header_length {
        None => body.len(),
        Some(value) => value
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| *n <= body.len())
            .ok_or_else(|| {
                ApiError::invalid(
                    Code::BinaryDataMismatch,
                    headers::INFERENCE_HEADER_CONTENT_LENGTH,
                    format!(
                        "must be the JSON header's length in bytes, at most the body's {}; got '{value}'",
                        body.len()
                    ),
                )
            })?,
    };
    let (json, tensors) = body.split_at(at);
    Ok(SplitBody {
        header: predict::parse_json(json)?,
        tensors: TensorBytes {
            bytes: tensors,
            claimed: 0,
        },
    })
}

/// The tensor bytes after a request's JSON header, claimed front to back by its inputs.
#[derive(Debug)]
pub struct TensorBytes<'a> {
    bytes: &'a [u8],
    claimed: usize,
}

impl<'a> TensorBytes<'a> {
    /// The next `size` bytes, for the input whose `binary_data_size` is `field`.
    pub fn claim(&mut self, size: usize, field: &str) -> Result<&'a [u8], ApiError> {
        let left = self.bytes.len() - self.claimed;
        if size > left {
            return Err(ApiError::invalid(
                Code::BinaryDataMismatch,
                field,
                format!("claims {size} bytes but only {left} follow the JSON header"),
            ));
        }
        let claimed = &self.bytes[self.claimed..self.claimed + size];
        self.claimed += size;
        Ok(claimed)
    }

    /// Checks that the inputs claimed every byte.
    pub fn finish(self) -> Result<(), ApiError> {
        match self.bytes.len() - self.claimed {
            0 => Ok(()),
            left => Err(ApiError::invalid(
                Code::BinaryDataMismatch,
                "inputs",
                format!("{left} bytes after the JSON header belong to no input's binary_data_size"),
            )),
        }
    }
}

/// A tensor's `parameters.binary_data_size`, if it has one.
pub fn data_size(tensor: &Value, field: &str) -> Result<Option<usize>, ApiError> {
    let Some(size) = parameter(tensor, DATA_SIZE) else {
        return Ok(None);
    };
    size.as_u64().map(|n| Some(n as usize)).ok_or_else(|| {
        ApiError::invalid(
            Code::WrongType,
            field,
            "'binary_data_size' must be a non-negative integer",
        )
    })
}

/// A boolean parameter (`binary_data`, `binary_data_output`) of a tensor or request, if set.
pub fn flag(object: &Value, name: &str, field: &str) -> Result<Option<bool>, ApiError> {
    match parameter(object, name) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(ApiError::invalid(
            Code::WrongType,
            field,
            format!("'{name}' must be true or false"),
        )),
    }
}

/// Refuses the parameters of extensions Ember does not offer (shared memory, classification),
/// which would otherwise be silently ignored and answer something the caller did not ask for.
pub fn refuse_unsupported(object: &Value, field: &str) -> Result<(), ApiError> {
    for (name, extension) in [
        ("shared_memory_region", "shared memory"),
        ("classification", "classification"),
    ] {
        if parameter(object, name).is_some() {
            return Err(ApiError::invalid(
                Code::UnsupportedParameter,
                format!("{field}.parameters.{name}"),
                format!("the {extension} extension is not supported; send the tensor data itself"),
            ));
        }
    }
    Ok(())
}

fn parameter<'v>(object: &'v Value, name: &str) -> Option<&'v Value> {
    object.get("parameters").and_then(|p| p.get(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_splits_at_its_header_length_and_inputs_claim_the_rest() {
        let body = b"{\"inputs\":[]}\x01\x02\x03\x04\x05";
        let mut split = split(Some("13"), body).unwrap();
        assert_eq!(split.header["inputs"], serde_json::json!([]));
        assert_eq!(split.tensors.claim(4, "a").unwrap(), &[1, 2, 3, 4]);
        let error = split.tensors.claim(2, "b").unwrap_err();
        assert_eq!(
            (error.code, error.field.as_deref()),
            (Code::BinaryDataMismatch, Some("b"))
        );
        assert_eq!(split.tensors.claim(1, "c").unwrap(), &[5]);
        split.tensors.finish().unwrap();
    }

    #[test]
    fn unclaimed_bytes_and_bad_header_lengths_are_refused() {
        let body = b"{}\x00";
        let leftover = split(Some("2"), body).unwrap().tensors.finish();
        assert_eq!(leftover.unwrap_err().code, Code::BinaryDataMismatch);
        for bad in ["4", "-1", "two"] {
            let error = split(Some(bad), body).unwrap_err();
            assert_eq!(error.code, Code::BinaryDataMismatch, "{bad}");
            assert_eq!(
                error.field.as_deref(),
                Some(headers::INFERENCE_HEADER_CONTENT_LENGTH)
            );
        }
    }

    #[test]
    fn parameters_are_typed_and_unsupported_extensions_named() {
        let tensor =
            serde_json::json!({"parameters": {"binary_data_size": 8, "binary_data": true}});
        assert_eq!(data_size(&tensor, "x").unwrap(), Some(8));
        assert_eq!(flag(&tensor, "binary_data", "x").unwrap(), Some(true));
        assert_eq!(flag(&tensor, "binary_data_output", "x").unwrap(), None);
        let wrong = serde_json::json!({"parameters": {"binary_data_size": -8, "binary_data": 1}});
        assert_eq!(data_size(&wrong, "x").unwrap_err().code, Code::WrongType);
        assert_eq!(
            flag(&wrong, "binary_data", "x").unwrap_err().code,
            Code::WrongType
        );
        let shm = serde_json::json!({"parameters": {"shared_memory_region": "r"}});
        let error = refuse_unsupported(&shm, "inputs[0]").unwrap_err();
        assert_eq!(
            error.field.as_deref(),
            Some("inputs[0].parameters.shared_memory_region")
        );
    }
}
