//! The meter: every finished invocation becomes its usage record — priced, observed by Prometheus
//! and the drift monitor, and durable in the ledger — before the reply leaves, which then carries
//! the record's id, cost and duration.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use ember_contract::headers;
use hyper::header::HeaderValue;

use super::drift::DriftMonitor;
use super::exposition::Format;
use super::ledger::{Ledger, LedgerArg};
use super::metrics::Metrics;
use super::prices::PriceTable;
use super::UsageRecord;
use crate::runtime::Invocation;

/// Metering's options, flattened into `ember up`.
#[derive(clap::Args, Debug, Clone)]
pub struct MeteringArgs {
    /// The usage ledger.
    #[command(flatten)]
    pub ledger: LedgerArg,
    /// Price table (TOML); the built-in one is in README ("Metering").
    #[arg(long)]
    pub prices: Option<PathBuf>,
    /// Serve without metering: no fuel counting, no ledger, no cost headers (for comparison).
    #[arg(long)]
    pub no_metering: bool,
}

impl MeteringArgs {
    /// Whether invocations are metered (fuel counted, records kept).
    pub fn enabled(&self) -> bool {
        !self.no_metering
    }

    /// The meter of `function`, whose models live in `models` (for drift baselines): opens the
    /// ledger and loads the price table.
    pub fn meter(&self, function: &str, models: &Path) -> anyhow::Result<Meter> {
        Ok(Meter {
            function: function.to_string(),
            ledger: self
                .enabled()
                .then(|| Ledger::open(&self.ledger.path))
                .transpose()?,
            prices: self
                .prices
                .as_deref()
                .map(PriceTable::load)
                .transpose()?
                .unwrap_or_default(),
            metrics: Metrics::default(),
            drift: DriftMonitor::new(models),
        })
    }
}

/// Metering of one function.
pub struct Meter {
    /// Name of the function, as recorded in the ledger.
    pub function: String,
    /// Where usage records go; `None` serves without a ledger (no cost headers).
    pub ledger: Option<Ledger>,
    /// Prices for the cost of each invocation.
    pub prices: PriceTable,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Live drift windows per model version.
    pub drift: DriftMonitor,
}

/// What a record needs to know about the request that the invocation does not carry.
#[derive(Debug, Clone)]
pub struct Arrival<'a> {
    /// The invocation's id (a UUIDv7), chosen on arrival so the function can file its own
    /// records under it ([`ember_contract::headers::INVOCATION_ID_HINT`]).
    pub id: String,
    /// Arrival time, µs since the Unix epoch.
    pub started_at_us: i64,
    /// HTTP method.
    pub method: &'a str,
    /// Request path, without the query.
    pub route: &'a str,
    /// Name of the API key it is billed to, when keys are required.
    pub key: Option<&'a str>,
}

impl Arrival<'_> {
    /// The current time as an arrival time.
    pub fn now_us() -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or_default()
    }
}

/// The ledger could not store an invocation's record, so its reply must not leave.
#[derive(Debug, thiserror::Error)]
#[error("the usage record could not be stored")]
pub struct MeteringUnavailable(#[source] anyhow::Error);

impl Meter {
    /// Records `invocation`: builds and prices its record, observes it, makes it durable in the
    /// ledger (its journal append) and sets the reply's metering headers; returns its cost.
    pub fn record(
        &self,
        arrival: Arrival<'_>,
        invocation: &mut Invocation,
    ) -> Result<f64, MeteringUnavailable> {
        let record = UsageRecord::new(
            &self.function,
            &arrival,
            (&invocation.stats, invocation.response.body()),
            &self.prices,
        );
        self.metrics.observe(&record);
        self.drift.observe(&record);
        let Some(ledger) = &self.ledger else {
            return Ok(record.cost);
        };
        let cost = format!("{:.12} {}", record.cost, self.prices.currency);
        let (id, wall_us, billed) = (record.id.clone(), record.wall_us, record.cost);
        ledger.commit(record).map_err(MeteringUnavailable)?;
        let reply = invocation.response.headers_mut();
        for (name, value) in [
            (headers::INVOCATION_ID, id),
            (headers::COST, cost),
            (headers::DURATION_US, wall_us.to_string()),
        ] {
            if let Ok(value) = HeaderValue::from_str(&value) {
                reply.insert(name, value);
            }
        }
        Ok(billed)
    }

    /// The Prometheus exposition in `format`, with the gauges of the moment.
    pub fn render_metrics(
        &self,
        format: Format,
        graphs_loaded: usize,
        instances_active: u64,
    ) -> String {
        self.metrics.render(
            format,
            graphs_loaded,
            instances_active,
            &self.drift.reports(),
        )
    }

    /// Where the ledger is, when there is one.
    pub fn ledger_path(&self) -> Option<String> {
        self.ledger.as_ref().map(|l| l.path().display().to_string())
    }
}
