//! Errors of the contract: every failure a client can meet has a [`Code`] (a stable name and its
//! HTTP status), a message naming the rule that was broken and, when one is to blame, the field.
//! The function, Ember's host and the browser package answer with the same envelopes.

use serde::{Deserialize, Serialize, Serializer};
use serde_json::{json, Value};

/// Every error code of the contract, serialized as its wire name ([`Code::as_str`]: the variant's
/// name in snake case, which is also how it deserializes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    // The request is not well formed (400).
    /// The body is not JSON.
    MalformedJson,
    /// The body could not be read.
    UnreadableBody,
    /// An option (e.g. the browser's backend) has no such value.
    InvalidOption,
    // The request breaks the model's schema (422 on Ember's API, 400 on KServe v2).
    /// A value that must be an object is not one.
    NotAnObject,
    /// A field the model does not know.
    UnknownField,
    /// A feature the model does not know.
    UnknownFeature,
    /// A required field is missing.
    MissingField,
    /// The model does not do what the route asks (e.g. `/v1/embeddings` of a classifier).
    WrongTask,
    /// A required feature is missing.
    MissingFeature,
    /// A value has the wrong JSON type.
    WrongType,
    /// A number is NaN or infinite.
    NotFinite,
    /// A number that must be an integer is not one.
    NotAnInteger,
    /// A number outside the feature's declared range.
    OutOfRange,
    /// A value that must be base64 is not.
    BadBase64,
    /// The bytes are not an image in a supported format.
    NotAnImage,
    /// The image is larger than the function decodes.
    ImageTooLarge,
    /// A v2 input named twice.
    DuplicateInput,
    /// A v2 input the model declares is missing.
    MissingInput,
    /// A v2 input the model does not declare.
    UnknownInput,
    /// A v2 output the model does not declare.
    UnknownOutput,
    /// v2 inputs disagree on the batch size.
    BatchMismatch,
    /// A v2 batch larger than the function accepts.
    BatchTooLarge,
    /// A v2 input's datatype differs from the model's.
    WrongDatatype,
    /// A v2 input's data length does not match its shape.
    WrongDataLength,
    /// A v2 input's shape does not fit the model's.
    WrongShape,
    /// The binary tensor data does not add up: the JSON header's length, or the bytes the
    /// inputs claim, disagree with the body.
    BinaryDataMismatch,
    /// A request parameter names a protocol extension Ember does not offer.
    UnsupportedParameter,
    /// A routing policy sent to the management API names a version the model lacks, or is not
    /// one.
    InvalidRouting,
    // Outcomes (feedback on past invocations: 404, 409, 422).
    /// No invocation has this id.
    UnknownInvocation,
    /// The invocation made no decision (it failed, or its route predicts nothing).
    NoDecision,
    /// A label that is not one of the model's.
    UnknownLabel,
    /// The invocation's outcome was recorded already; it is never overwritten.
    DuplicateOutcome,
    /// A change was made against a revision that is no longer current (`If-Match`): read again.
    StaleRevision,
    // Routing (404, 405, 413, 415).
    /// No such route.
    NoRoute,
    /// No such file (static sites).
    NotFound,
    /// No such model.
    UnknownModel,
    /// No such version or alias of the model.
    UnknownVersion,
    /// The route takes another method.
    MethodNotAllowed,
    /// The body is larger than the function accepts.
    BodyTooLarge,
    /// The body is not `application/json`.
    UnsupportedMediaType,
    // Tenants (401, 402, 403, 429).
    /// No credential, or one that is not a live API key (or admin token).
    Unauthenticated,
    /// The API key may not use this model.
    Forbidden,
    /// The API key's request rate is over its limit; retry after `Retry-After`.
    RateLimited,
    /// The API key's monthly budget is spent.
    BudgetExhausted,
    // The function's or the host's fault (5xx): messages name no internals.
    /// The model version cannot be used (misconfigured, not loaded).
    ModelNotReady,
    /// The requested backend is not available (the browser's WebGPU).
    BackendUnavailable,
    /// The inference backend failed.
    InferenceFailed,
    /// The function ran past its deadline.
    DeadlineExceeded,
    /// The function exceeded its memory limit.
    MemoryLimitExceeded,
    /// The function trapped.
    FunctionTrapped,
    /// The function returned without a response.
    NoResponse,
    /// The function answered with a wasi:http error instead of a response.
    FunctionError,
    /// No capacity to run the function before its deadline.
    Overloaded,
    /// The host failed to set the invocation up.
    HostError,
    /// The usage ledger could not store the invocation's record.
    MeteringUnavailable,
    /// The deployment's state (Spin's key-value store or SQLite database) could not be used.
    StateUnavailable,
}

impl Code {
    /// The HTTP status Ember's API answers with.
    pub fn status(self) -> u16 {
        use Code::*;
        match self {
            MalformedJson | UnreadableBody | InvalidOption => 400,
            NotAnObject | UnknownField | UnknownFeature | MissingField | MissingFeature
            | WrongTask | WrongType | NotFinite | NotAnInteger | OutOfRange | BadBase64
            | NotAnImage | ImageTooLarge | DuplicateInput | MissingInput | UnknownInput
            | UnknownOutput | BatchMismatch | BatchTooLarge | WrongDatatype | WrongDataLength
            | WrongShape | BinaryDataMismatch | UnsupportedParameter | InvalidRouting
            | NoDecision | UnknownLabel => 422,
            NoRoute | NotFound | UnknownModel | UnknownVersion | UnknownInvocation => 404,
            DuplicateOutcome => 409,
            StaleRevision => 412,
            MethodNotAllowed => 405,
            BodyTooLarge => 413,
            UnsupportedMediaType => 415,
            Unauthenticated => 401,
            BudgetExhausted => 402,
            Forbidden => 403,
            RateLimited => 429,
            InferenceFailed | MemoryLimitExceeded | FunctionTrapped | NoResponse
            | FunctionError | HostError => 500,
            ModelNotReady | BackendUnavailable | Overloaded | MeteringUnavailable
            | StateUnavailable => 503,
            DeadlineExceeded => 504,
        }
    }

    /// The HTTP status on the KServe v2 protocol, which answers every invalid request with 400.
    pub fn v2_status(self) -> u16 {
        match self.status() {
            422 => 400,
            status => status,
        }
    }

    /// The wire name, e.g. `missing_feature`: stable, clients match on it.
    pub fn as_str(self) -> &'static str {
        use Code::*;
        match self {
            MalformedJson => "malformed_json",
            UnreadableBody => "unreadable_body",
            InvalidOption => "invalid_option",
            NotAnObject => "not_an_object",
            UnknownField => "unknown_field",
            UnknownFeature => "unknown_feature",
            MissingField => "missing_field",
            WrongTask => "wrong_task",
            MissingFeature => "missing_feature",
            WrongType => "wrong_type",
            NotFinite => "not_finite",
            NotAnInteger => "not_an_integer",
            OutOfRange => "out_of_range",
            BadBase64 => "bad_base64",
            NotAnImage => "not_an_image",
            ImageTooLarge => "image_too_large",
            DuplicateInput => "duplicate_input",
            MissingInput => "missing_input",
            UnknownInput => "unknown_input",
            UnknownOutput => "unknown_output",
            BatchMismatch => "batch_mismatch",
            BatchTooLarge => "batch_too_large",
            WrongDatatype => "wrong_datatype",
            WrongDataLength => "wrong_data_length",
            WrongShape => "wrong_shape",
            BinaryDataMismatch => "binary_data_mismatch",
            UnsupportedParameter => "unsupported_parameter",
            InvalidRouting => "invalid_routing",
            UnknownInvocation => "unknown_invocation",
            NoDecision => "no_decision",
            UnknownLabel => "unknown_label",
            DuplicateOutcome => "duplicate_outcome",
            StaleRevision => "stale_revision",
            NoRoute => "no_route",
            NotFound => "not_found",
            UnknownModel => "unknown_model",
            UnknownVersion => "unknown_version",
            MethodNotAllowed => "method_not_allowed",
            BodyTooLarge => "body_too_large",
            UnsupportedMediaType => "unsupported_media_type",
            Unauthenticated => "unauthenticated",
            Forbidden => "forbidden",
            RateLimited => "rate_limited",
            BudgetExhausted => "budget_exhausted",
            ModelNotReady => "model_not_ready",
            BackendUnavailable => "backend_unavailable",
            InferenceFailed => "inference_failed",
            DeadlineExceeded => "deadline_exceeded",
            MemoryLimitExceeded => "memory_limit_exceeded",
            FunctionTrapped => "function_trapped",
            NoResponse => "no_response",
            FunctionError => "function_error",
            Overloaded => "overloaded",
            HostError => "host_error",
            MeteringUnavailable => "metering_unavailable",
            StateUnavailable => "state_unavailable",
        }
    }
}

impl Serialize for Code {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error answered to the client as JSON; never a panic.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// What went wrong; decides the HTTP status.
    pub code: Code,
    /// Human-readable explanation naming the rule that was broken.
    pub message: String,
    /// The request field at fault, when there is one.
    pub field: Option<String>,
}

impl ApiError {
    /// A new error without a field.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            field: None,
        }
    }

    /// A schema violation of `field`.
    pub fn invalid(code: Code, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(code, message).with_field(field)
    }

    /// Names the field at fault.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// The HTTP status on Ember's API.
    pub fn status(&self) -> u16 {
        self.code.status()
    }

    /// Ember's error body: `{"error": {"code", "message", "field"?}}`.
    pub fn to_json(&self) -> Value {
        json!({ "error": Envelope::from(self) })
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

impl ApiError {
    /// Reads an error body back, in either envelope ([`ApiError::to_json`],
    /// [`ApiError::to_v2_json`]); `None` when `body` is neither.
    pub fn from_json(body: &Value) -> Option<Self> {
        let (code, message, field) = match &body["error"] {
            Value::String(message) => (&body["code"], message.as_str(), &body["field"]),
            inside @ Value::Object(_) => (
                &inside["code"],
                inside["message"].as_str()?,
                &inside["field"],
            ),
            _ => return None,
        };
        Some(Self {
            code: Code::deserialize(code).ok()?,
            message: message.to_string(),
            field: field.as_str().map(str::to_string),
        })
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.status(), self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

/// The inside of Ember's error body.
#[derive(Serialize)]
struct Envelope<'a> {
    code: Code,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl<'a> From<&'a ApiError> for Envelope<'a> {
    fn from(error: &'a ApiError) -> Self {
        Self {
            code: error.code,
            message: &error.message,
            field: error.field.as_deref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_carry_code_message_and_field() {
        let error = ApiError::new(Code::MissingFeature, "age is required").with_field("age");
        assert_eq!(error.status(), 422);
        assert_eq!(
            error.to_json(),
            json!({"error": {"code": "missing_feature", "message": "age is required", "field": "age"}})
        );
        assert_eq!(
            error.to_v2_json(),
            json!({"error": "age is required", "code": "missing_feature", "field": "age"})
        );
        let bare = ApiError::new(Code::NoRoute, "no such route");
        assert_eq!(
            bare.to_json(),
            json!({"error": {"code": "no_route", "message": "no such route"}})
        );
    }

    #[test]
    fn both_envelopes_read_back_as_the_error_they_carry() {
        let error = ApiError::new(Code::BinaryDataMismatch, "too short").with_field("inputs[0]");
        assert_eq!(ApiError::from_json(&error.to_json()), Some(error.clone()));
        assert_eq!(ApiError::from_json(&error.to_v2_json()), Some(error));
        let bare = ApiError::new(Code::NotAnImage, "not a PNG");
        assert_eq!(ApiError::from_json(&bare.to_v2_json()), Some(bare));
        for code in [
            Code::MalformedJson,
            Code::BadBase64,
            Code::NotAnInteger,
            Code::MeteringUnavailable,
            Code::RateLimited,
        ] {
            assert_eq!(Code::deserialize(json!(code.as_str())).ok(), Some(code));
        }
        assert_eq!(
            ApiError::from_json(&json!({"error": {"code": "no_such_code", "message": "x"}})),
            None
        );
        assert_eq!(ApiError::from_json(&json!({"models": []})), None);
    }

    #[test]
    fn schema_violations_are_422_on_ember_and_400_on_v2() {
        assert_eq!(Code::WrongShape.status(), 422);
        assert_eq!(Code::WrongShape.v2_status(), 400);
        assert_eq!(Code::UnknownModel.v2_status(), 404);
        assert_eq!(Code::DeadlineExceeded.status(), 504);
    }
}
