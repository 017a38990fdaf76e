//! Ledger records ([`UsageRecord`]) and the management API's prediction records ([`Record`]),
//! one into the other: what Ember's host answers `/-/ember/records` with, and how `ember usage
//! --remote` reports a deployment's records with the ledger's report.

use ember_contract::manage::Record;
use ember_contract::telemetry::{Fallback, Shadow};
use ember_contract::Telemetry;

use super::{Decision, UsageRecord};

impl UsageRecord {
    /// The record as the management API's [`Record`]; `None` for an invocation that made no
    /// decision.
    pub fn to_record(&self) -> Option<Record> {
        let decision = self.decision.as_ref()?;
        let shadow = match (&decision.shadow_version, decision.shadow_prediction) {
            (Some(version), Some(prediction)) => Some(Shadow {
                version: version.clone(),
                prediction: prediction as usize,
                agrees: decision.shadow_agrees.unwrap_or(false),
            }),
            _ => None,
        };
        let fallback = match (&decision.fallback_from, &decision.fallback_reason) {
            (Some(from), Some(reason)) => Some(Fallback {
                from_version: from.clone(),
                reason: reason.clone(),
            }),
            _ => None,
        };
        Some(Record {
            id: self.id.clone(),
            started_at_us: self.started_at_us,
            model: self.model.clone()?,
            version: self.model_version.clone()?,
            route: self.route.clone(),
            status: self.status,
            wall_us: self.wall_us,
            infer_us: self.infer_us,
            input_sha256: decision.input_sha256.clone(),
            telemetry: Telemetry {
                features: decision.features.clone(),
                prediction: decision.prediction.map(|p| p as usize),
                shadow,
                fallback,
            },
            output: decision.output.clone(),
            cost: Some(self.cost),
        })
    }

    /// A management API [`Record`] as a ledger record, for reports over a remote deployment's
    /// records (what only Ember's host measures — fuel, CPU time, memory — is zero).
    pub fn from_record(record: &Record) -> Self {
        let telemetry = &record.telemetry;
        Self {
            id: record.id.clone(),
            started_at_us: record.started_at_us,
            function: String::new(),
            model: Some(record.model.clone()),
            model_version: Some(record.version.clone()),
            // Predictions are POSTed on every route that makes a record.
            method: "POST".into(),
            route: record.route.clone(),
            status: record.status,
            // A record is of an answered prediction: a fallback answered it, nothing failed.
            failure: None,
            wall_us: record.wall_us,
            cpu_us: 0,
            fuel: 0,
            infer_calls: u64::from(record.infer_us > 0),
            infer_us: record.infer_us,
            infer_macs: 0,
            peak_memory_bytes: 0,
            bytes_in: 0,
            bytes_out: record.output.len() as u64,
            cost: record.cost.unwrap_or(0.0),
            key: None,
            decision: Some(Decision {
                input_sha256: record.input_sha256.clone(),
                features: telemetry.features.clone(),
                prediction: telemetry.prediction.map(|p| p as i64),
                output: record.output.clone(),
                shadow_version: telemetry.shadow.as_ref().map(|s| s.version.clone()),
                shadow_prediction: telemetry.shadow.as_ref().map(|s| s.prediction as i64),
                shadow_agrees: telemetry.shadow.as_ref().map(|s| s.agrees),
                fallback_from: telemetry.fallback.as_ref().map(|f| f.from_version.clone()),
                fallback_reason: telemetry.fallback.as_ref().map(|f| f.reason.clone()),
            }),
        }
    }
}
