//! Host-side failures of an invocation and the JSON replies they become. A 5xx names no internals;
//! the detail goes to the log.

use bytes::Bytes;
use ember_contract::{ApiError, Code};
use wasmtime::Trap;

/// Why the host, not the function, answered.
#[derive(Debug)]
pub enum Failure {
    /// The function ran past its deadline.
    Deadline,
    /// The function's memory hit the per-instance limit.
    MemoryLimit,
    /// The function trapped (a bug in the guest).
    Trap(wasmtime::Error),
    /// The function returned without setting a response.
    NoResponse,
    /// The function answered with a wasi:http error code instead of a response.
    GuestError(String),
    /// No instance slot freed up before the deadline.
    Overloaded,
    /// The host itself failed to set up the invocation.
    Host(wasmtime::Error),
}

impl Failure {
    /// Sorts a guest call's error into deadline, memory limit or trap.
    pub fn classify(error: wasmtime::Error, memory_exceeded: bool) -> Self {
        match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => Failure::Deadline,
            _ if memory_exceeded => Failure::MemoryLimit,
            _ => Failure::Trap(error),
        }
    }

    /// The failure's code (which decides the status).
    pub fn code(&self) -> Code {
        match self {
            Failure::Deadline => Code::DeadlineExceeded,
            Failure::MemoryLimit => Code::MemoryLimitExceeded,
            Failure::Trap(_) => Code::FunctionTrapped,
            Failure::NoResponse => Code::NoResponse,
            Failure::GuestError(_) => Code::FunctionError,
            Failure::Overloaded => Code::Overloaded,
            Failure::Host(_) => Code::HostError,
        }
    }

    /// What the client is told: the code and a message that names no internals.
    fn message(&self) -> &'static str {
        match self {
            Failure::Deadline => "the function ran past its deadline",
            Failure::MemoryLimit => "the function exceeded its memory limit",
            Failure::Trap(_) | Failure::GuestError(_) => "the function failed",
            Failure::NoResponse => "the function returned no response",
            Failure::Overloaded => "no capacity to run the function; retry",
            Failure::Host(_) => "the host failed to run the function",
        }
    }

    /// Logs the failure and builds the reply.
    pub fn response(self) -> hyper::Response<Bytes> {
        let code = self.code().as_str();
        match &self {
            Failure::Trap(e) | Failure::Host(e) => {
                tracing::warn!(code, error = ?e, "invocation failed")
            }
            Failure::GuestError(e) => tracing::warn!(code, error = %e, "invocation failed"),
            _ => tracing::warn!(code, "invocation failed"),
        }
        error_response(&ApiError::new(self.code(), self.message()))
    }
}

/// The host's reply for an error, in the contract's envelope.
pub fn error_response(error: &ApiError) -> hyper::Response<Bytes> {
    json_response(error.status(), error.to_json())
}

/// A JSON reply built by the host.
pub fn json_response(status: u16, body: serde_json::Value) -> hyper::Response<Bytes> {
    hyper::Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Bytes::from(serde_json::to_vec(&body).unwrap_or_default()))
        .expect("static response parts are valid")
}
