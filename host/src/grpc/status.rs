//! The function's replies in gRPC terms: an error reply's [`Code`] becomes the gRPC status code
//! for the same failure, its message the status message, its code and field trailing metadata;
//! the reply's public `ember-*` headers (invocation id, cost, model version) travel as metadata,
//! as they do on REST.

use ember_contract::{headers, ApiError, Code};
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::Status;

/// Metadata naming the error code of a failed call (e.g. `missing_input`).
pub const ERROR_CODE: &str = "ember-error-code";
/// Metadata naming the request field a failed call was refused for.
pub const ERROR_FIELD: &str = "ember-error-field";

/// The gRPC code for a failure with this contract code: refused input is `INVALID_ARGUMENT`, an
/// unknown model or version `NOT_FOUND`, a missing or dead key `UNAUTHENTICATED`, a model outside
/// the key `PERMISSION_DENIED`, a body too large, a rate limit or a spent budget
/// `RESOURCE_EXHAUSTED`, no capacity `UNAVAILABLE`, a deadline `DEADLINE_EXCEEDED`, the
/// function's own failure `INTERNAL`.
pub fn grpc_code(code: Code) -> tonic::Code {
    match code.status() {
        404 => tonic::Code::NotFound,
        405 => tonic::Code::Unimplemented,
        401 => tonic::Code::Unauthenticated,
        403 => tonic::Code::PermissionDenied,
        402 | 413 | 429 => tonic::Code::ResourceExhausted,
        400..=499 => tonic::Code::InvalidArgument,
        503 => tonic::Code::Unavailable,
        504 => tonic::Code::DeadlineExceeded,
        _ => tonic::Code::Internal,
    }
}

/// The status for a reply that is not a success.
pub fn from_reply(status: http::StatusCode, headers: &http::HeaderMap, body: &[u8]) -> Status {
    let error = serde_json::from_slice(body)
        .ok()
        .and_then(|body| ApiError::from_json(&body));
    let Some(error) = error else {
        tracing::error!(%status, "a v2 error reply without an error body");
        return Status::internal("the function failed");
    };
    let mut metadata = reply_metadata(headers);
    insert(&mut metadata, ERROR_CODE, error.code.as_str());
    if let Some(field) = &error.field {
        insert(&mut metadata, ERROR_FIELD, field);
    }
    Status::with_metadata(grpc_code(error.code), error.message, metadata)
}

/// `response` with the reply's public headers as its metadata.
pub fn with_reply_metadata<T>(
    mut response: tonic::Response<T>,
    headers: &http::HeaderMap,
) -> tonic::Response<T> {
    *response.metadata_mut() = reply_metadata(headers);
    response
}

/// The reply's headers a client may see (`ember-*`, never the private `ember-x-*`).
fn reply_metadata(headers: &http::HeaderMap) -> MetadataMap {
    let public = headers.iter().filter(|(name, _)| {
        let name = name.as_str();
        name.starts_with("ember-") && !name.starts_with(headers::PRIVATE_PREFIX)
    });
    let mut only_public = http::HeaderMap::new();
    for (name, value) in public {
        only_public.append(name.clone(), value.clone());
    }
    MetadataMap::from_headers(only_public)
}

fn insert(metadata: &mut MetadataMap, key: &'static str, value: &str) {
    if let Ok(value) = MetadataValue::try_from(value) {
        metadata.insert(key, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_gets_the_grpc_code_for_it() {
        assert_eq!(grpc_code(Code::MissingInput), tonic::Code::InvalidArgument);
        assert_eq!(
            grpc_code(Code::BinaryDataMismatch),
            tonic::Code::InvalidArgument
        );
        assert_eq!(grpc_code(Code::UnknownModel), tonic::Code::NotFound);
        assert_eq!(
            grpc_code(Code::BodyTooLarge),
            tonic::Code::ResourceExhausted
        );
        assert_eq!(grpc_code(Code::Overloaded), tonic::Code::Unavailable);
        assert_eq!(
            grpc_code(Code::Unauthenticated),
            tonic::Code::Unauthenticated
        );
        assert_eq!(grpc_code(Code::Forbidden), tonic::Code::PermissionDenied);
        assert_eq!(grpc_code(Code::RateLimited), tonic::Code::ResourceExhausted);
        assert_eq!(
            grpc_code(Code::DeadlineExceeded),
            tonic::Code::DeadlineExceeded
        );
        assert_eq!(grpc_code(Code::FunctionTrapped), tonic::Code::Internal);
    }

    #[test]
    fn an_error_reply_keeps_its_message_code_and_field_and_hides_private_headers() {
        let error = ApiError::invalid(Code::WrongShape, "inputs[0].shape", "must be [-1, 7]");
        let mut headers = http::HeaderMap::new();
        headers.insert(headers::INVOCATION_ID, "abc".parse().unwrap());
        headers.insert(headers::TELEMETRY, "secret".parse().unwrap());
        let body = serde_json::to_vec(&error.to_v2_json()).unwrap();
        let status = from_reply(http::StatusCode::BAD_REQUEST, &headers, &body);
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(status.message(), "must be [-1, 7]");
        let metadata = status.metadata();
        assert_eq!(metadata.get(ERROR_CODE).unwrap(), "wrong_shape");
        assert_eq!(metadata.get(ERROR_FIELD).unwrap(), "inputs[0].shape");
        assert_eq!(metadata.get(headers::INVOCATION_ID).unwrap(), "abc");
        assert!(metadata.get(headers::TELEMETRY).is_none());
        let opaque = from_reply(http::StatusCode::BAD_GATEWAY, &headers, b"<html>");
        assert_eq!(opaque.code(), tonic::Code::Internal);
    }
}
