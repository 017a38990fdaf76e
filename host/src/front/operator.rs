//! The operator page at `/-/`: what an operator watches, drawn from the same sources as `ember
//! usage`, `ember models` and `/-/metrics`. The page itself (`browser/operator`, `--operator-page`)
//! is a static site; its data comes from `GET /-/api/overview` (the models' routing, the last
//! hour of the ledger per model version as totals and per-minute series, live drift, recent
//! decisions, live quality, open alerts and rollouts) and `GET /-/audit/{id}` (one invocation's audit record).

use std::path::{Path, PathBuf};

use ember_contract::{ApiError, Code};
use ember_function::catalog::Catalog;
use serde::Serialize;
use serde_json::{json, Value};

use super::static_files::StaticSite;
use crate::manifest::SpinRoute;
use crate::metering::drift::PSI_THRESHOLD;
use crate::metering::ledger;
use crate::metering::meter::{Arrival, Meter};
use crate::metering::usage::{summarize, GroupBy, Summary};
use crate::metering::UsageRecord;
use crate::outcomes::Outcomes;

/// How far back the overview looks.
pub const WINDOW_US: i64 = 3_600 * 1_000_000;
/// How many decisions the overview lists.
pub const RECENT_DECISIONS: usize = 20;

/// Where the page's files are: `index.html` and `operator.js` in `page/`, uPlot (npm, installed
/// by scripts/setup) in `node_modules/uplot/dist`, both served below `/-/`.
pub fn page_site(dir: &Path) -> StaticSite {
    StaticSite {
        id: "ember-operator".into(),
        route: SpinRoute::Prefix("/-".into()),
        mounts: vec![
            (dir.join("page"), "/".into()),
            (dir.join("node_modules/uplot/dist"), "/uplot".into()),
        ],
    }
}

/// The default `--operator-page`.
pub fn default_page_dir() -> PathBuf {
    PathBuf::from("browser/operator")
}

/// One model version's last hour: its totals (as `ember usage --by version` has them) and one
/// summary per minute with traffic.
#[derive(Debug, Serialize)]
struct VersionTraffic {
    model: String,
    version: String,
    totals: Summary,
    minutes: Vec<Summary>,
}

/// `GET /-/api/overview`.
pub fn overview(
    meter: &Meter,
    catalog: &impl Catalog,
    outcomes: Option<&Outcomes>,
) -> Result<Value, ApiError> {
    let now_us = Arrival::now_us();
    let records = match &meter.ledger {
        Some(writer) => {
            let read = ledger::open_current(writer.path())
                .and_then(|conn| Ok(ledger::read(&conn, now_us - WINDOW_US, now_us + 1)?));
            read.map_err(|error| {
                tracing::error!(error = ?error, "reading the ledger for the operator page");
                ApiError::new(
                    Code::MeteringUnavailable,
                    "the usage ledger could not be read",
                )
            })?
        }
        None => Vec::new(),
    };
    let models: Vec<Value> = catalog
        .models()
        .into_iter()
        .map(|versions| {
            let routing = catalog.routing(&versions.name);
            json!({
                "name": versions.name,
                "versions": versions.versions,
                "stable": routing.stable(),
                "routing": routing,
            })
        })
        .collect();
    let decisions: Vec<Value> = records
        .iter()
        .rev()
        .filter_map(|record| Some((record, record.decision.as_ref()?)))
        .take(RECENT_DECISIONS)
        .map(|(record, decision)| {
            json!({
                "id": record.id,
                "started_at_us": record.started_at_us,
                "model": record.model,
                "version": record.model_version,
                "prediction": decision.prediction,
                "shadow_version": decision.shadow_version,
                "shadow_agrees": decision.shadow_agrees,
                "fallback_from": decision.fallback_from,
                "status": record.status,
                "wall_us": record.wall_us,
            })
        })
        .collect();
    let outcomes = match outcomes {
        Some(outcomes) => outcomes.overview().map_err(|error| {
            tracing::error!(
                error = format!("{error:#}"),
                "reading outcomes for the operator page"
            );
            ApiError::new(
                Code::MeteringUnavailable,
                "the usage ledger could not be read",
            )
        })?,
        None => Value::Null,
    };
    Ok(json!({
        "outcomes": outcomes,
        "now_us": now_us,
        "window_us": WINDOW_US,
        "ledger": meter.ledger_path(),
        "currency": meter.prices.currency,
        "models": models,
        "traffic": traffic(&records),
        "drift": meter.drift.reports(),
        "psi_threshold": PSI_THRESHOLD,
        "decisions": decisions,
    }))
}

/// Per model version: totals and per-minute summaries (records without a model are left out).
fn traffic(records: &[UsageRecord]) -> Vec<VersionTraffic> {
    let mut by_version: std::collections::BTreeMap<(String, String), Vec<UsageRecord>> =
        Default::default();
    for record in records {
        if let (Some(model), Some(version)) = (&record.model, &record.model_version) {
            by_version
                .entry((model.clone(), version.clone()))
                .or_default()
                .push(record.clone());
        }
    }
    by_version
        .into_iter()
        .filter_map(|((model, version), records)| {
            let totals = summarize(&records, GroupBy::Version).pop()?;
            Some(VersionTraffic {
                model,
                version,
                totals,
                minutes: summarize(&records, GroupBy::Minute),
            })
        })
        .collect()
}

/// `GET /-/audit/{id}`: the invocation's record, decision included.
pub fn audit(meter: &Meter, id: &str) -> Result<Value, ApiError> {
    let Some(writer) = &meter.ledger else {
        return Err(ApiError::new(
            Code::NotFound,
            "this host keeps no ledger (--no-metering)",
        ));
    };
    let record = ledger::open_current(writer.path())
        .and_then(|conn| Ok(ledger::read_one(&conn, id)?))
        .map_err(|error| {
            tracing::error!(error = ?error, "reading an audit record");
            ApiError::new(
                Code::MeteringUnavailable,
                "the usage ledger could not be read",
            )
        })?;
    match record {
        Some(record) => Ok(serde_json::to_value(record).expect("records serialize")),
        None => Err(ApiError::invalid(
            Code::NotFound,
            "id",
            format!("no invocation '{id}' in the ledger"),
        )),
    }
}
