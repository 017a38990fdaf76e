//! The price table: what one invocation costs. Deterministic components (requests, guest
//! instructions, inference FLOPs) are billed by default; time-based ones (GB-seconds of memory,
//! CPU seconds) vary run to run and are billed only when the table gives them a price.

use std::path::Path;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::UsageRecord;

/// The built-in price table (`ember up --prices FILE` overrides it; same keys).
pub const DEFAULT_PRICES: &str = r#"
currency = "USD"
# Deterministic: the same request always costs the same.
per_request = 0.0000002          # $0.20 per million invocations
per_million_instructions = 0.0000005   # guest fuel (wasm instructions)
per_gflop = 0.000004             # inference compute, 2 FLOPs per multiply-accumulate
# Time-based, so not reproducible: off unless priced.
per_gb_second = 0.0              # peak linear memory x wall time
per_cpu_second = 0.0             # instance CPU time
"#;

/// Prices per unit.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PriceTable {
    /// Currency code shown beside costs.
    pub currency: String,
    /// Per invocation.
    pub per_request: f64,
    /// Per million guest instructions (fuel).
    pub per_million_instructions: f64,
    /// Per GFLOP of inference (2 × MACs).
    pub per_gflop: f64,
    /// Per GB-second of peak linear memory over the wall time.
    pub per_gb_second: f64,
    /// Per CPU-second of the instance.
    pub per_cpu_second: f64,
}

/// One invocation's cost, by component.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cost {
    /// The flat per-request price.
    pub request: f64,
    /// Guest instructions.
    pub instructions: f64,
    /// Inference FLOPs.
    pub inference: f64,
    /// Memory over time (0 unless priced).
    pub memory: f64,
    /// CPU time (0 unless priced).
    pub cpu: f64,
}

impl Cost {
    /// The sum of the components.
    pub fn total(&self) -> f64 {
        self.request + self.instructions + self.inference + self.memory + self.cpu
    }
}

impl Default for PriceTable {
    fn default() -> Self {
        toml::from_str(DEFAULT_PRICES).expect("the built-in price table parses")
    }
}

impl PriceTable {
    /// Reads a price table file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing price table {}", path.display()))
    }

    /// Prices one invocation.
    pub fn cost(&self, record: &UsageRecord) -> Cost {
        let gb = record.peak_memory_bytes as f64 / 1e9;
        Cost {
            request: self.per_request,
            instructions: record.fuel as f64 / 1e6 * self.per_million_instructions,
            inference: 2.0 * record.infer_macs as f64 / 1e9 * self.per_gflop,
            memory: gb * record.wall_us as f64 / 1e6 * self.per_gb_second,
            cpu: record.cpu_us as f64 / 1e6 * self.per_cpu_second,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(fuel: u64, macs: u64, wall_us: u64) -> UsageRecord {
        UsageRecord {
            id: "x".into(),
            started_at_us: 0,
            function: "f".into(),
            model: None,
            model_version: None,
            method: "POST".into(),
            route: "/predict".into(),
            status: 200,
            failure: None,
            wall_us,
            cpu_us: wall_us,
            fuel,
            infer_calls: 1,
            infer_us: 10,
            infer_macs: macs,
            peak_memory_bytes: 1 << 20,
            bytes_in: 10,
            bytes_out: 10,
            cost: 0.0,
            key: None,
            decision: None,
        }
    }

    #[test]
    fn default_prices_bill_only_deterministic_components() {
        let prices = PriceTable::default();
        let a = prices.cost(&record(2_000_000, 1_000_000, 100)).total();
        let b = prices.cost(&record(2_000_000, 1_000_000, 9_000)).total();
        assert_eq!(a, b, "wall time must not change the default price");
        let expected = 0.0000002 + 2.0 * 0.0000005 + 2.0 * 1e6 / 1e9 * 0.000004;
        assert!((a - expected).abs() < 1e-18);
    }

    #[test]
    fn time_components_are_billed_when_priced() {
        let prices = PriceTable {
            per_gb_second: 1.0,
            ..PriceTable::default()
        };
        let cost = prices.cost(&record(0, 0, 1_000_000));
        assert!((cost.memory - (1u64 << 20) as f64 / 1e9).abs() < 1e-15);
    }

    #[test]
    fn unknown_keys_in_a_price_table_are_refused() {
        assert!(toml::from_str::<PriceTable>("currency='USD'\nper_requests=1.0").is_err());
    }
}
