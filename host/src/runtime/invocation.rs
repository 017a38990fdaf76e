//! One invocation as metering sees it: what it measured, its reply, and the taps that measure it
//! on the way (active count, request body bytes and digest, the function's private headers).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use ember_contract::{headers as contract_headers, Code, ModelVersion, Telemetry};
use sha2::{Digest as _, Sha256};

use crate::nn::metered::InferenceTotals;

/// What one invocation measured.
#[derive(Debug, Clone, Default)]
pub struct InvocationStats {
    /// HTTP status answered.
    pub status: u16,
    /// Host failure, when the host answered instead of the function.
    pub failure: Option<Code>,
    /// The model version the function resolved (from its `ember-model` / `ember-model-version`
    /// headers).
    pub model: Option<ModelVersion>,
    /// Wall time from arrival to a complete reply, µs.
    pub wall_us: u64,
    /// CPU time spent running the instance (guest and its host calls), µs.
    pub cpu_us: u64,
    /// Guest fuel consumed: wasm instructions, deterministic for the same request.
    pub fuel: u64,
    /// Backend inference time and MACs.
    pub inference: InferenceTotals,
    /// Largest linear memory the instance reached, bytes.
    pub peak_memory_bytes: u64,
    /// Request body bytes.
    pub bytes_in: u64,
    /// Response body bytes.
    pub bytes_out: u64,
    /// SHA-256 of the request body, hex.
    pub input_sha256: String,
    /// The prediction's record, from the function's private telemetry header (stripped from the
    /// reply).
    pub telemetry: Option<Telemetry>,
}

/// A complete reply and its measurements.
pub struct Invocation {
    /// Status, headers and the buffered body.
    pub response: hyper::Response<Bytes>,
    /// What it cost.
    pub stats: InvocationStats,
}

/// Watches the request body stream by: counts its bytes and digests it.
pub(super) struct BodyTap {
    pub(super) bytes: Arc<AtomicU64>,
    pub(super) digest: Arc<Mutex<Sha256>>,
}

impl BodyTap {
    pub(super) fn observe(&self, data: &[u8]) {
        self.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
        self.digest.lock().unwrap().update(data);
    }
}

/// Removes the function's private headers (host telemetry, never for clients) and returns the
/// telemetry record among them.
pub(super) fn take_telemetry(headers: &mut hyper::HeaderMap) -> Option<Telemetry> {
    let record = headers
        .get(contract_headers::TELEMETRY)
        .and_then(|v| v.to_str().ok())
        .and_then(Telemetry::from_header);
    remove_private_headers(headers);
    record
}

/// The model version a reply's headers name.
pub(super) fn model_version(headers: &hyper::HeaderMap) -> Option<ModelVersion> {
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    Some(ModelVersion::new(
        header(contract_headers::MODEL)?,
        header(contract_headers::MODEL_VERSION)?,
    ))
}

/// Removes every private header (`ember-x-*`): the function's telemetry from a reply, or what a
/// client sent in a request (only the host sets them).
pub(crate) fn remove_private_headers(headers: &mut hyper::HeaderMap) {
    let private: Vec<_> = headers
        .keys()
        .filter(|n| n.as_str().starts_with(contract_headers::PRIVATE_PREFIX))
        .cloned()
        .collect();
    for name in private {
        headers.remove(name);
    }
}
