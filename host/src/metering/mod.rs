//! Metering: every invocation becomes one [`UsageRecord`], priced by a [`PriceTable`], written to
//! the durable [`ledger`] (a reply waits for its record's commit) and counted in Prometheus
//! [`metrics`].

pub mod ledger;
pub mod metrics;
pub mod prices;
pub mod usage;

use serde::Serialize;

use crate::runtime::InvocationStats;

/// One invocation, as billed and audited.
#[derive(Debug, Clone, Serialize, PartialEq)]
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
}

impl UsageRecord {
    /// Builds the record of one invocation and prices it.
    pub fn new(
        id: String,
        started_at_us: i64,
        function: &str,
        method: &str,
        route: &str,
        stats: &InvocationStats,
        prices: &prices::PriceTable,
    ) -> Self {
        let mut record = Self {
            id,
            started_at_us,
            function: function.to_string(),
            model: stats.model.clone(),
            model_version: stats.model_version.clone(),
            method: method.to_string(),
            route: route.to_string(),
            status: stats.status,
            failure: stats.failure.map(str::to_string),
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
        };
        record.cost = prices.cost(&record).total();
        record
    }

    /// Whether the invocation succeeded (status below 400).
    pub fn succeeded(&self) -> bool {
        self.status < 400
    }
}
