//! Host-side failures of an invocation and the JSON replies they become. A 5xx names no internals;
//! the detail goes to the log.

use bytes::Bytes;
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

    /// Status, code and message for the client.
    pub fn describe(&self) -> (u16, &'static str, &'static str) {
        match self {
            Failure::Deadline => (
                504,
                "deadline_exceeded",
                "the function ran past its deadline",
            ),
            Failure::MemoryLimit => (
                500,
                "memory_limit_exceeded",
                "the function exceeded its memory limit",
            ),
            Failure::Trap(_) => (500, "function_trapped", "the function failed"),
            Failure::NoResponse => (500, "no_response", "the function returned no response"),
            Failure::GuestError(_) => (500, "function_error", "the function failed"),
            Failure::Overloaded => (503, "overloaded", "no capacity to run the function; retry"),
            Failure::Host(_) => (500, "host_error", "the host failed to run the function"),
        }
    }

    /// Logs the failure and builds the reply.
    pub fn response(self) -> hyper::Response<Bytes> {
        let (status, code, message) = self.describe();
        match &self {
            Failure::Trap(e) | Failure::Host(e) => {
                tracing::warn!(code, error = ?e, "invocation failed")
            }
            Failure::GuestError(e) => tracing::warn!(code, error = %e, "invocation failed"),
            _ => tracing::warn!(code, "invocation failed"),
        }
        json_response(
            status,
            serde_json::json!({ "error": { "code": code, "message": message } }),
        )
    }
}

/// A JSON reply built by the host.
pub fn json_response(status: u16, body: serde_json::Value) -> hyper::Response<Bytes> {
    hyper::Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Bytes::from(serde_json::to_vec(&body).unwrap_or_default()))
        .expect("static response parts are valid")
}
