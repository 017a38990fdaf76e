//! The function's error type: every failure a client can cause maps to a status, a stable code,
//! a message and (when one is to blame) the offending field.

use serde_json::{json, Value};

/// An error answered to the client as JSON; never a panic.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status (4xx for the client's fault, 5xx for ours).
    pub status: u16,
    /// Stable machine-readable code, e.g. `missing_feature`.
    pub code: &'static str,
    /// Human-readable explanation naming the rule that was broken.
    pub message: String,
    /// The request field at fault, when there is one.
    pub field: Option<String>,
}

impl ApiError {
    /// A new error without a field.
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    /// Names the field at fault.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// 400: the request is not well formed.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(400, code, message)
    }

    /// 422: well-formed, but it breaks the model's schema.
    pub fn invalid(
        code: &'static str,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::new(422, code, message).with_field(field)
    }

    /// 404: no such route, model or version.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(404, code, message)
    }

    /// 500 with a message that names no internals.
    pub fn internal(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(500, code, message)
    }

    /// The contract's error body: `{"error": {"code", "message", "field"?}}`.
    pub fn to_json(&self) -> Value {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let Some(field) = &self.field {
            error["field"] = json!(field);
        }
        json!({ "error": error })
    }

    /// KServe v2's error body: `{"error": "<message>"}`, with the code and field beside it.
    pub fn to_v2_json(&self) -> Value {
        let mut body = json!({ "error": self.message, "code": self.code });
        if let Some(field) = &self.field {
            body["field"] = json!(field);
        }
        body
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for ApiError {}
