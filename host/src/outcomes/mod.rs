//! Outcomes: whether predictions were right, and what follows from it. [`feedback`] records the
//! true outcome of past invocations beside their decisions in the ledger; [`quality`] turns them
//! into live accuracy, per-class precision / recall / F1, AUC and Brier per model version;
//! [`alerts`] raises what the model's thresholds call for and hands it to a hook; [`rollout`]
//! moves a candidate version through its traffic steps, judged by its [`guard`]s. In `ember up`,
//! [`Outcomes`] owns the ledger connection all of this shares and checks alerts and rollouts on
//! a timer ([`Outcomes::watch`]).

pub mod alerts;
pub mod feedback;
pub mod guard;
pub mod quality;
pub mod rollout;

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use ember_contract::ApiError;
use ember_function::catalog::{Catalog as _, DirCatalog};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use rusqlite::{Connection, OpenFlags};
use serde::Serialize;
use serde_json::json;

use self::alerts::{Book, Change, RecentErrors, Signals};
use self::quality::{Quality, Span};
use self::rollout::{HeldOut, Moved};
use crate::metering::drift::DriftReport;
use crate::metering::meter::Arrival;
use crate::metering::metrics::Metrics;

/// The options of `ember up` for outcomes.
#[derive(clap::Args, Debug, Clone)]
pub struct OutcomesArgs {
    /// Command run (by `sh -c`) with each raised alert as JSON on stdin: the retraining trigger.
    #[arg(long)]
    pub alert_hook: Option<String>,
    /// Seconds between checks of alerts and rollouts.
    #[arg(long, default_value_t = 5.0)]
    pub watch_every: f64,
}

impl OutcomesArgs {
    /// The outcomes unit over the ledger at `ledger` and the models of `catalog`, its metrics
    /// registered in `metrics`.
    pub fn outcomes(
        &self,
        ledger: &Path,
        catalog: DirCatalog,
        metrics: &mut Metrics,
    ) -> anyhow::Result<Outcomes> {
        let conn = crate::metering::ledger::open(ledger, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
        let book = Book::load(&conn)?;
        Ok(Outcomes {
            book: Mutex::new(book),
            recent: Mutex::new(RecentErrors::default()),
            conn: Mutex::new(conn),
            catalog,
            hook: self.alert_hook.clone(),
            every: Duration::from_secs_f64(self.watch_every.max(0.01)),
            metrics: OutcomeMetrics::register(metrics),
            holding: Mutex::new(HashSet::new()),
        })
    }
}

/// Feedback, quality, alerts and rollouts of one `ember up`.
pub struct Outcomes {
    conn: Mutex<Connection>,
    catalog: DirCatalog,
    hook: Option<String>,
    every: Duration,
    metrics: OutcomeMetrics,
    book: Mutex<Book>,
    recent: Mutex<RecentErrors>,
    /// Rollout steps (model, step) whose wait for evidence was recorded.
    holding: Mutex<HashSet<(String, usize)>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One model version's live quality beside its held-out metrics.
#[derive(Debug, Clone, Serialize)]
pub struct VersionQuality {
    /// Model.
    pub model: String,
    /// Version.
    pub version: String,
    /// Held-out metrics from `model.toml`.
    pub held_out: HeldOut,
    /// The latest labelled predictions (up to the window).
    pub window: Quality,
    /// Per UTC day, oldest first, over the same predictions.
    pub days: Vec<DayQuality>,
}

/// One day's quality.
#[derive(Debug, Clone, Serialize)]
pub struct DayQuality {
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    /// Its labelled predictions.
    pub quality: Quality,
}

/// The live quality of every version of `model` over its latest `window` labelled predictions.
pub fn report(
    conn: &Connection,
    catalog: &DirCatalog,
    model: &str,
    window: usize,
) -> anyhow::Result<Vec<VersionQuality>> {
    let entry = catalog
        .models()
        .into_iter()
        .find(|m| m.name == model)
        .ok_or_else(|| anyhow::anyhow!("no model named {model}"))?;
    entry
        .versions
        .iter()
        // A version whose spec does not read is not ready; the others are reported.
        .filter_map(|version| {
            let spec = catalog
                .spec(model, Some(version), Default::default())
                .ok()?;
            Some((version, spec.labels))
        })
        .map(|(version, labels)| {
            let rows = quality::labelled(conn, model, version, Span::ALL, window)?;
            Ok(VersionQuality {
                model: model.to_string(),
                version: version.clone(),
                held_out: HeldOut::of(catalog, model, version),
                window: Quality::of(&labels, &rows),
                days: quality::by_day(&rows)
                    .into_iter()
                    .map(|(day, rows)| DayQuality {
                        day,
                        quality: Quality::of(&labels, &rows),
                    })
                    .collect(),
            })
        })
        .collect()
}

impl Outcomes {
    /// Records feedback received over HTTP (`POST /-/feedback`); the decisions it names must be
    /// in the database already (the caller flushes the ledger first).
    pub fn record(&self, items: &[feedback::Feedback]) -> Result<usize, ApiError> {
        let recorded = feedback::record(
            &mut lock(&self.conn),
            &self.catalog,
            items,
            Arrival::now_us(),
        )?;
        self.metrics.feedback.inc_by(recorded as u64);
        Ok(recorded)
    }

    /// `GET /-/api/quality/{model}`: the model's live quality per version.
    pub fn quality(&self, model: &str) -> anyhow::Result<Vec<VersionQuality>> {
        report(&lock(&self.conn), &self.catalog, model, quality::WINDOW)
    }

    /// The operator page's part: every model version's live quality, the open alerts and each
    /// model's latest rollout.
    pub fn overview(&self) -> anyhow::Result<serde_json::Value> {
        let conn = lock(&self.conn);
        let mut quality = Vec::new();
        let mut rollouts = Vec::new();
        for model in self.catalog.models() {
            for mut version in report(&conn, &self.catalog, &model.name, quality::WINDOW)? {
                version.days.clear();
                quality.push(version);
            }
            if let Some(r) = rollout::load(&conn, &model.name)? {
                rollouts.push(json!({
                    "model": r.model,
                    "candidate": r.candidate,
                    "baseline": r.baseline,
                    "state": r.state,
                    "percent": r.percent(),
                    "steps": r.steps,
                    "guards": r.guards,
                }));
            }
        }
        Ok(json!({
            "quality": quality,
            "alerts": alerts::open(&conn)?,
            "rollouts": rollouts,
        }))
    }

    /// Checks alerts and rollouts every `--watch-every` seconds, with the live drift windows
    /// `drift` reports, until the future is dropped.
    pub async fn watch(self: Arc<Self>, drift: Arc<dyn Fn() -> Vec<DriftReport> + Send + Sync>) {
        loop {
            tokio::time::sleep(self.every).await;
            let (outcomes, drift) = (self.clone(), drift.clone());
            match tokio::task::spawn_blocking(move || outcomes.check(&drift())).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::warn!(error = format!("{error:#}"), "checking outcomes failed")
                }
                Err(error) => tracing::error!(%error, "the outcomes check panicked"),
            }
        }
    }

    /// One check: every rollout under way, then every model version's quality and alerts.
    fn check(&self, drift: &[DriftReport]) -> anyhow::Result<()> {
        let conn = lock(&self.conn);
        let now_us = Arrival::now_us();
        for mut rollout in rollout::active(&conn)? {
            self.check_rollout(&conn, &mut rollout, now_us);
        }
        let mut book = lock(&self.book);
        let mut recent = lock(&self.recent);
        recent.catch_up(&conn, now_us)?;
        for model in self.catalog.models() {
            let rules = self.catalog.routing(&model.name).alerts.unwrap_or_default();
            for version in &model.versions {
                let Ok(spec) = self
                    .catalog
                    .spec(&model.name, Some(version), Default::default())
                else {
                    continue;
                };
                let rows =
                    quality::labelled(&conn, &model.name, version, Span::ALL, quality::WINDOW)?;
                let quality = Quality::of(&spec.labels, &rows);
                self.metrics.show_quality(&model.name, version, &quality);
                let signals = Signals {
                    quality: &quality,
                    held_out: HeldOut::of(&self.catalog, &model.name, version),
                    errors: recent.rate(&model.name, version),
                    drift: drift
                        .iter()
                        .find(|d| d.model == model.name && d.version == *version),
                };
                for (rule, holds, evidence) in alerts::judge(&rules, signals) {
                    let key = (model.name.clone(), version.clone(), rule);
                    let change = book.note(&conn, key.clone(), holds, &evidence, now_us)?;
                    self.alerted(&key, change, evidence, now_us);
                }
            }
        }
        Ok(())
    }

    fn check_rollout(&self, conn: &Connection, rollout: &mut rollout::Rollout, now_us: i64) {
        let at = (rollout.model.clone(), rollout.step);
        let holding = lock(&self.holding).contains(&at);
        match rollout::check(conn, &self.catalog, rollout, holding, now_us) {
            Ok(Moved::Yes(action)) => {
                tracing::info!(
                    model = %rollout.model,
                    candidate = %rollout.candidate,
                    percent = rollout.percent(),
                    action,
                    "rollout"
                );
                let mut holding = lock(&self.holding);
                if action == "holding" {
                    holding.insert(at);
                } else {
                    holding.retain(|(model, _)| *model != rollout.model);
                }
            }
            Ok(Moved::No) => {}
            Err(error) => tracing::warn!(
                model = %rollout.model,
                error = format!("{error:#}"),
                "checking the rollout failed"
            ),
        }
        self.metrics
            .rollout_percent
            .get_or_create(&VersionLabels::new(&rollout.model, &rollout.candidate))
            .set(rollout.percent() as i64);
    }

    fn alerted(
        &self,
        key: &alerts::AlertKey,
        change: Option<Change>,
        evidence: serde_json::Value,
        now_us: i64,
    ) {
        let (model, version, rule) = key;
        let labels = AlertLabels {
            model: model.clone(),
            version: version.clone(),
            rule: rule.as_str().into(),
        };
        match change {
            Some(Change::Raised) => {
                tracing::warn!(%model, %version, rule = rule.as_str(), %evidence, "alert raised");
                self.metrics.raised.get_or_create(&labels).inc();
                self.metrics.active.get_or_create(&labels).set(1);
                if let Some(hook) = &self.hook {
                    alerts::deliver(
                        hook,
                        json!({
                            "alert": rule.as_str(),
                            "model": model,
                            "version": version,
                            "raised_at_us": now_us,
                            "evidence": evidence,
                        }),
                    );
                }
            }
            Some(Change::Cleared) => {
                tracing::info!(%model, %version, rule = rule.as_str(), "alert cleared");
                self.metrics.active.get_or_create(&labels).set(0);
            }
            None => {}
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    model: String,
    version: String,
}

impl VersionLabels {
    fn new(model: &str, version: &str) -> Self {
        Self {
            model: model.into(),
            version: version.into(),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlertLabels {
    model: String,
    version: String,
    rule: String,
}

type GaugeF64 = Gauge<f64, AtomicU64>;

/// The outcomes' Prometheus metrics, registered beside metering's.
struct OutcomeMetrics {
    feedback: Counter,
    accuracy: Family<VersionLabels, GaugeF64>,
    labelled: Family<VersionLabels, Gauge<i64, AtomicI64>>,
    auc: Family<VersionLabels, GaugeF64>,
    brier: Family<VersionLabels, GaugeF64>,
    raised: Family<AlertLabels, Counter>,
    active: Family<AlertLabels, Gauge<i64, AtomicI64>>,
    rollout_percent: Family<VersionLabels, Gauge<i64, AtomicI64>>,
}

impl OutcomeMetrics {
    fn register(metrics: &mut Metrics) -> Self {
        let this = Self {
            feedback: Counter::default(),
            accuracy: Family::default(),
            labelled: Family::default(),
            auc: Family::default(),
            brier: Family::default(),
            raised: Family::default(),
            active: Family::default(),
            rollout_percent: Family::default(),
        };
        metrics.register(
            "ember_feedback",
            "Outcomes recorded for past invocations",
            this.feedback.clone(),
        );
        metrics.register(
            "ember_model_accuracy",
            "Live accuracy of a model version over its latest labelled predictions (up to 1000)",
            this.accuracy.clone(),
        );
        metrics.register(
            "ember_model_labelled_predictions",
            "Labelled predictions the live quality of a model version is computed over",
            this.labelled.clone(),
        );
        metrics.register(
            "ember_model_auc",
            "Live ROC AUC of a model version's answers",
            this.auc.clone(),
        );
        metrics.register(
            "ember_model_brier",
            "Live Brier score of a model version's answers",
            this.brier.clone(),
        );
        metrics.register(
            "ember_alerts_raised",
            "Alerts raised per model version and rule (accuracy, drift, error_rate)",
            this.raised.clone(),
        );
        metrics.register(
            "ember_alert_active",
            "1 while an alert on a model version is raised and not cleared",
            this.active.clone(),
        );
        metrics.register(
            "ember_rollout_percent",
            "Share of a model's traffic a rolled-out candidate version gets, percent",
            this.rollout_percent.clone(),
        );
        this
    }

    fn show_quality(&self, model: &str, version: &str, quality: &Quality) {
        let labels = VersionLabels::new(model, version);
        self.labelled
            .get_or_create(&labels)
            .set(quality.labelled as i64);
        for (family, value) in [
            (&self.accuracy, quality.accuracy),
            (&self.auc, quality.auc),
            (&self.brier, quality.brier),
        ] {
            if let Some(value) = value {
                family.get_or_create(&labels).set(value);
            }
        }
    }
}
