//! Metering: every invocation becomes one [`UsageRecord`], priced by a [`prices::PriceTable`],
//! made durable in the [`ledger`] (a reply waits for its record's [`journal`] append), counted in Prometheus
//! [`metrics`] (in either [`exposition`] format) and watched for [`drift`]; the [`meter::Meter`]
//! does all of it for one invocation.

pub mod drift;
pub mod exposition;
pub mod journal;
pub mod ledger;
pub mod meter;
pub mod metrics;
pub mod prices;
mod records;
pub mod usage;

use serde::{Deserialize, Serialize};

use self::meter::Arrival;
use crate::runtime::InvocationStats;

/// One invocation, as billed and audited.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UsageRecord {
    /// Invocation id (UUIDv7: time-ordered), also sent as `ember-invocation-id`.
    pub id: String,
    /// Arrival time, µs since the Unix epoch.
    pub started_at_us: i64,
    /// The function (component) that ran.
    pub function: String,
    /// Model the function resolved, if any.
    pub model: Option<String>,
    /// Model version the function resolved, if any.
    pub model_version: Option<String>,
    /// HTTP method.
    pub method: String,
    /// Request path, without the query.
    pub route: String,
    /// HTTP status answered.
    pub status: u16,
    /// Host failure code, when the host answered instead of the function.
    pub failure: Option<String>,
    /// Wall time, µs.
    pub wall_us: u64,
    /// CPU time of the instance, µs.
    pub cpu_us: u64,
    /// Guest fuel (wasm instructions), deterministic.
    pub fuel: u64,
    /// Inference calls.
    pub infer_calls: u64,
    /// Inference time in the backend, µs.
    pub infer_us: u64,
    /// Inference multiply-accumulates for the input shapes, deterministic.
    pub infer_macs: u64,
    /// Peak linear memory, bytes.
    pub peak_memory_bytes: u64,
    /// Request body bytes.
    pub bytes_in: u64,
    /// Response body bytes.
    pub bytes_out: u64,
    /// Price of this invocation, in the price table's currency.
    pub cost: f64,
    /// Name of the API key the invocation was billed to (never the key), when keys are required.
    #[serde(default)]
    pub key: Option<String>,
    /// What the model decided, when a model version answered.
    pub decision: Option<Decision>,
}

/// A model's decision, for the audit trail, drift monitoring and shadow comparison.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Decision {
    /// SHA-256 of the request body, hex.
    pub input_sha256: String,
    /// The inputs as the model saw them (tabular row; image mean intensity).
    pub features: Vec<f64>,
    /// The predicted class, when the route made a prediction.
    pub prediction: Option<i64>,
    /// The reply body returned to the caller.
    pub output: String,
    /// Shadow version that saw a copy of the request.
    pub shadow_version: Option<String>,
    /// Its prediction.
    pub shadow_prediction: Option<i64>,
    /// Whether it agreed with the returned prediction.
    pub shadow_agrees: Option<bool>,
    /// The version that failed when a fallback answered.
    pub fallback_from: Option<String>,
    /// Why it failed.
    pub fallback_reason: Option<String>,
}

impl Decision {
    /// The decision in an invocation's reply, if a model version answered successfully.
    pub fn from_invocation(stats: &InvocationStats, output: &[u8]) -> Option<Self> {
        if stats.model.is_none() || stats.status >= 400 {
            return None;
        }
        let telemetry = stats.telemetry.as_ref();
        let shadow = telemetry.and_then(|t| t.shadow.as_ref());
        let fallback = telemetry.and_then(|t| t.fallback.as_ref());
        Some(Self {
            input_sha256: stats.input_sha256.clone(),
            features: telemetry.map(|t| t.features.clone()).unwrap_or_default(),
            prediction: telemetry.and_then(|t| t.prediction).map(|p| p as i64),
            output: String::from_utf8_lossy(output).into_owned(),
            shadow_version: shadow.map(|s| s.version.clone()),
            shadow_prediction: shadow.map(|s| s.prediction as i64),
            shadow_agrees: shadow.map(|s| s.agrees),
            fallback_from: fallback.map(|f| f.from_version.clone()),
            fallback_reason: fallback.map(|f| f.reason.clone()),
        })
    }
}

impl UsageRecord {
    /// Builds the record of one invocation (with the reply body it returned) and prices it.
    pub fn new(
        function: &str,
        arrival: &Arrival<'_>,
        invocation: (&InvocationStats, &[u8]),
        prices: &prices::PriceTable,
    ) -> Self {
        let (stats, output) = invocation;
        let mut record = Self {
            id: arrival.id.clone(),
            started_at_us: arrival.started_at_us,
            function: function.to_string(),
            model: stats.model.as_ref().map(|m| m.model.clone()),
            model_version: stats.model.as_ref().map(|m| m.version.clone()),
            method: arrival.method.to_string(),
            route: arrival.route.to_string(),
            status: stats.status,
            failure: stats.failure.map(|code| code.as_str().to_string()),
            wall_us: stats.wall_us,
            cpu_us: stats.cpu_us,
            fuel: stats.fuel,
            infer_calls: stats.inference.calls,
            infer_us: stats.inference.micros,
            infer_macs: stats.inference.macs,
            peak_memory_bytes: stats.peak_memory_bytes,
            bytes_in: stats.bytes_in,
            bytes_out: stats.bytes_out,
            cost: 0.0,
            key: arrival.key.map(str::to_string),
            decision: Decision::from_invocation(stats, output),
        };
        record.cost = prices.cost(&record).total();
        record
    }

    /// Whether the invocation succeeded (status below 400).
    pub fn succeeded(&self) -> bool {
        self.status < 400
    }
}
