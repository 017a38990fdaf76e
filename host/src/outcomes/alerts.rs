//! Alerts: a model version whose live accuracy fell below its held-out accuracy, whose inputs or
//! predictions drifted, or whose invocations fail too often, by the thresholds of the model's
//! routing policy ([`AlertRules`]). An alert is raised once when its condition starts to hold —
//! logged, counted in `/-/metrics`, kept in the ledger and handed to the configured hook (a
//! command that gets the evidence as JSON on stdin: the retraining trigger) — and cleared when
//! it stops holding.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use ember_function::routing::AlertRules;
use rusqlite::{params, Connection};
use serde::Serialize;
use serde_json::{json, Value};

use super::quality::Quality;
use super::rollout::{HeldOut, Rate};
use crate::metering::drift::DriftReport;

/// How far back a version's error rate looks.
pub const ERROR_WINDOW: Duration = Duration::from_secs(300);

/// How long the hook may run.
const HOOK_TIMEOUT: Duration = Duration::from_secs(30);

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// Live accuracy below held-out accuracy − `accuracy_drop`.
    Accuracy,
    /// A PSI above `psi`.
    Drift,
    /// Failed share of recent invocations above `error_rate`.
    ErrorRate,
}

impl Rule {
    /// The name in metrics, logs and the ledger.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Accuracy => "accuracy",
            Rule::Drift => "drift",
            Rule::ErrorRate => "error_rate",
        }
    }
}

/// What a version's alert rules are judged on.
#[derive(Debug, Clone, Copy)]
pub struct Signals<'a> {
    /// Live quality over the sliding window.
    pub quality: &'a Quality,
    /// Held-out metrics from `model.toml`.
    pub held_out: HeldOut,
    /// Recent invocations and failures.
    pub errors: Rate,
    /// The live drift window, if the version has one.
    pub drift: Option<&'a DriftReport>,
}

/// Which rules hold for a version now, each with its evidence.
pub fn judge(rules: &AlertRules, signals: Signals<'_>) -> Vec<(Rule, bool, Value)> {
    let Signals {
        quality,
        held_out,
        errors,
        drift,
    } = signals;
    let mut verdicts = Vec::new();
    if let Some(held_out_accuracy) = held_out.accuracy {
        let floor = held_out_accuracy - rules.accuracy_drop;
        let enough = quality.labelled >= rules.min_labels as usize;
        let holds = enough && quality.accuracy.is_some_and(|a| a < floor);
        verdicts.push((
            Rule::Accuracy,
            holds,
            json!({
                "accuracy": quality.accuracy,
                "accuracy_ci95": quality.accuracy_ci95,
                "labelled": quality.labelled,
                "held_out_accuracy": held_out_accuracy,
                "threshold": floor,
                "min_labels": rules.min_labels,
            }),
        ));
    }
    if let Some(report) = drift {
        let worst = report
            .features
            .iter()
            .map(|f| (f.name.as_str(), f.psi))
            .chain([("prediction", report.prediction_psi)])
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let holds = report.window >= crate::metering::drift::MIN_WINDOW
            && worst.is_some_and(|(_, psi)| psi > rules.psi);
        verdicts.push((
            Rule::Drift,
            holds,
            json!({
                "window": report.window,
                "worst": worst.map(|(name, psi)| json!({"feature": name, "psi": psi})),
                "threshold": rules.psi,
                "features": report.features,
                "prediction_psi": report.prediction_psi,
            }),
        ));
    }
    let rate = (errors.total > 0).then(|| errors.hits as f64 / errors.total as f64);
    verdicts.push((
        Rule::ErrorRate,
        errors.total >= rules.min_requests as u64 && rate.is_some_and(|r| r > rules.error_rate),
        json!({
            "invocations": errors.total,
            "failed": errors.hits,
            "error_rate": rate,
            "window_seconds": ERROR_WINDOW.as_secs(),
            "threshold": rules.error_rate,
            "min_requests": rules.min_requests,
        }),
    ));
    verdicts
}

/// Width of the buckets [`RecentErrors`] counts in.
const BUCKET_US: i64 = 10_000_000;

/// One bucket of a version's recent invocations: its start (µs), invocations, failures.
type Bucket = (i64, u64, u64);

/// Invocations and failures per model version over the last [`ERROR_WINDOW`], kept up to date
/// by reading only the ledger rows added since the last check (so a busy host's check costs what
/// arrived since, not the whole window).
#[derive(Debug, Default)]
pub struct RecentErrors {
    /// The last invocation row read.
    cursor: Option<i64>,
    /// Per model version: (bucket start µs, invocations, failed), oldest first.
    buckets: HashMap<(String, String), VecDeque<Bucket>>,
}

impl RecentErrors {
    /// Reads the invocations added since the last call (on the first, those of the window) and
    /// forgets the buckets that left the window.
    pub fn catch_up(&mut self, conn: &Connection, now_us: i64) -> rusqlite::Result<()> {
        let since_us = now_us - ERROR_WINDOW.as_micros() as i64;
        let cursor = match self.cursor {
            Some(cursor) => cursor,
            None => conn.query_row(
                "SELECT COALESCE(MIN(rowid), 1 + (SELECT COALESCE(MAX(rowid), 0) FROM invocations)) - 1
                 FROM invocations WHERE started_at_us >= ?1",
                [since_us],
                |r| r.get(0),
            )?,
        };
        let mut stmt = conn.prepare_cached(
            "SELECT i.rowid, i.started_at_us, i.model, i.model_version, i.status >= 500,
                    d.fallback_from
             FROM invocations i LEFT JOIN decisions d ON d.invocation_id = i.id
             WHERE i.rowid > ?1 ORDER BY i.rowid",
        )?;
        let mut rows = stmt.query([cursor])?;
        self.cursor = Some(cursor);
        while let Some(row) = rows.next()? {
            self.cursor = Some(row.get(0)?);
            let at_us: i64 = row.get(1)?;
            let (Some(model), Some(version)) = (
                row.get::<_, Option<String>>(2)?,
                row.get::<_, Option<String>>(3)?,
            ) else {
                continue;
            };
            let failed: bool = row.get(4)?;
            // A fallback is a failure of the version it stood in for: another version's answer
            // or, when it names the version itself, the declared default answer.
            let (version, failed) = match row.get::<_, Option<String>>(5)? {
                Some(from) => (from, true),
                None => (version, failed),
            };
            let buckets = self.buckets.entry((model, version)).or_default();
            let start = at_us - at_us.rem_euclid(BUCKET_US);
            match buckets.back_mut() {
                Some((at, total, fails)) if *at == start => {
                    *total += 1;
                    *fails += u64::from(failed);
                }
                _ => buckets.push_back((start, 1, u64::from(failed))),
            }
        }
        for buckets in self.buckets.values_mut() {
            while buckets
                .front()
                .is_some_and(|(at, _, _)| *at + BUCKET_US <= since_us)
            {
                buckets.pop_front();
            }
        }
        Ok(())
    }

    /// `model` `version`'s invocations and failures in the window.
    pub fn rate(&self, model: &str, version: &str) -> Rate {
        self.buckets
            .get(&(model.to_string(), version.to_string()))
            .into_iter()
            .flatten()
            .fold(Rate::default(), |rate, (_, total, failed)| Rate {
                total: rate.total + total,
                hits: rate.hits + failed,
            })
    }
}

/// Identifies an alert: model, version, rule.
pub type AlertKey = (String, String, Rule);

/// The alerts raised and not yet cleared, as kept in the ledger.
#[derive(Debug, Default)]
pub struct Book {
    open: HashMap<AlertKey, i64>,
}

/// A change of an alert's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The condition started to hold.
    Raised,
    /// It stopped holding.
    Cleared,
}

impl Book {
    /// The alerts open in the ledger (raised by this or an earlier process).
    pub fn load(conn: &Connection) -> rusqlite::Result<Self> {
        let mut stmt = conn
            .prepare("SELECT id, model, version, rule FROM alerts WHERE cleared_at_us IS NULL")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?;
        let mut open = HashMap::new();
        for row in rows {
            let (id, model, version, rule) = row?;
            let rule = match rule.as_str() {
                "accuracy" => Rule::Accuracy,
                "drift" => Rule::Drift,
                _ => Rule::ErrorRate,
            };
            open.insert((model, version, rule), id);
        }
        Ok(Self { open })
    }

    /// Notes whether `key`'s condition holds now; raises or clears it in the ledger when that
    /// changed.
    pub fn note(
        &mut self,
        conn: &Connection,
        key: AlertKey,
        holds: bool,
        evidence: &Value,
        now_us: i64,
    ) -> rusqlite::Result<Option<Change>> {
        match (self.open.get(&key), holds) {
            (None, true) => {
                conn.execute(
                    "INSERT INTO alerts (model, version, rule, raised_at_us, evidence)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![key.0, key.1, key.2.as_str(), now_us, evidence.to_string()],
                )?;
                self.open.insert(key, conn.last_insert_rowid());
                Ok(Some(Change::Raised))
            }
            (Some(&id), false) => {
                conn.execute(
                    "UPDATE alerts SET cleared_at_us = ?2 WHERE id = ?1",
                    params![id, now_us],
                )?;
                self.open.remove(&key);
                Ok(Some(Change::Cleared))
            }
            _ => Ok(None),
        }
    }
}

/// The alerts raised and not cleared, newest first, with their evidence.
pub fn open(conn: &Connection) -> rusqlite::Result<Vec<Value>> {
    let mut stmt = conn.prepare(
        "SELECT model, version, rule, raised_at_us, evidence FROM alerts
         WHERE cleared_at_us IS NULL ORDER BY raised_at_us DESC",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(json!({
            "model": r.get::<_, String>(0)?,
            "version": r.get::<_, String>(1)?,
            "rule": r.get::<_, String>(2)?,
            "raised_at_us": r.get::<_, i64>(3)?,
            "evidence": serde_json::from_str::<Value>(&r.get::<_, String>(4)?).unwrap_or_default(),
        }))
    })?;
    rows.collect()
}

/// Runs the alert hook `command` (by `sh -c`) with `alert` as JSON on stdin, and logs how it
/// ended; it never blocks the watch.
pub fn deliver(command: &str, alert: Value) {
    let command = command.to_string();
    tokio::spawn(async move {
        let outcome = tokio::time::timeout(HOOK_TIMEOUT, run_hook(&command, &alert)).await;
        match outcome {
            Ok(Ok(status)) if status.success() => {
                tracing::info!(hook = %command, "alert delivered")
            }
            Ok(Ok(status)) => tracing::warn!(hook = %command, %status, "the alert hook failed"),
            Ok(Err(error)) => {
                tracing::warn!(hook = %command, %error, "the alert hook could not run")
            }
            Err(_) => tracing::warn!(hook = %command, "the alert hook timed out"),
        }
    });
}

async fn run_hook(command: &str, alert: &Value) -> std::io::Result<std::process::ExitStatus> {
    use tokio::io::AsyncWriteExt as _;
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is not an error.
        let _ = stdin.write_all(alert.to_string().as_bytes()).await;
    }
    child.wait().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quality(labelled: usize, accuracy: f64) -> Quality {
        Quality {
            labelled,
            accuracy: Some(accuracy),
            accuracy_ci95: None,
            classes: vec![],
            macro_f1: None,
            scored: 0,
            auc: None,
            brier: None,
        }
    }

    fn holds(rules: &AlertRules, signals: Signals<'_>, rule: Rule) -> bool {
        judge(rules, signals)
            .into_iter()
            .any(|(r, holds, _)| r == rule && holds)
    }

    #[test]
    fn accuracy_alerts_need_the_drop_and_enough_labels() {
        let rules = AlertRules::default();
        let held_out = HeldOut {
            accuracy: Some(0.77),
            roc_auc: None,
        };
        for (labelled, accuracy, raised) in
            [(400, 0.70, true), (400, 0.75, false), (100, 0.50, false)]
        {
            let quality = quality(labelled, accuracy);
            let signals = Signals {
                quality: &quality,
                held_out,
                errors: Rate::default(),
                drift: None,
            };
            assert_eq!(
                holds(&rules, signals, Rule::Accuracy),
                raised,
                "{labelled} {accuracy}"
            );
        }
    }

    #[test]
    fn recent_errors_read_new_rows_only_and_blame_a_fallback_on_the_failed_version() {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::metering::ledger::open(
            &dir.path().join("usage.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_CREATE,
        )
        .unwrap();
        let invoked = |id: &str, at_us: i64, version: &str, status: u16| {
            conn.execute(
                "INSERT INTO invocations (id, started_at_us, function, model, model_version,
                     method, route, status, wall_us, cpu_us, fuel, infer_calls, infer_us,
                     infer_macs, peak_memory_bytes, bytes_in, bytes_out, cost)
                 VALUES (?1, ?2, 'f', 'm', ?3, 'POST', '/predict', ?4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)",
                params![id, at_us, version, status],
            )
            .unwrap();
        };
        let now = 1_800_000_000_000_000;
        let window = ERROR_WINDOW.as_micros() as i64;
        invoked("before", now - 2 * window, "1", 500);
        invoked("a", now - 1_000, "1", 200);
        invoked("b", now - 900, "1", 503);
        let mut recent = RecentErrors::default();
        recent.catch_up(&conn, now).unwrap();
        let rate = |recent: &RecentErrors, v| {
            let r = recent.rate("m", v);
            (r.total, r.hits)
        };
        assert_eq!(rate(&recent, "1"), (2, 1));
        // An answer by `version` standing in for version 1, which failed.
        let fell_back = |id: &str, at_us: i64, version: &str| {
            invoked(id, at_us, version, 200);
            conn.execute(
                "INSERT INTO decisions (invocation_id, model, model_version, started_at_us,
                     input_sha256, features, output, fallback_from)
                 VALUES (?1, 'm', ?2, ?3, '', '[]', '{}', '1')",
                params![id, version, at_us],
            )
            .unwrap();
        };
        // Version 2 answered in its place; then its declared default answer did.
        fell_back("c", now - 10, "2");
        fell_back("d", now - 5, "1");
        recent.catch_up(&conn, now).unwrap();
        assert_eq!((rate(&recent, "1"), rate(&recent, "2")), ((4, 3), (0, 0)));
        // Once the window has moved past them, they no longer count.
        recent.catch_up(&conn, now + 2 * window).unwrap();
        assert_eq!(rate(&recent, "1"), (0, 0));
    }

    #[test]
    fn error_rate_alerts_need_enough_invocations() {
        let rules = AlertRules::default();
        let q = quality(0, 0.0);
        let signals = |total, hits| Signals {
            quality: &q,
            held_out: HeldOut::default(),
            errors: Rate { total, hits },
            drift: None,
        };
        assert!(holds(&rules, signals(200, 3), Rule::ErrorRate));
        assert!(!holds(&rules, signals(200, 2), Rule::ErrorRate));
        assert!(!holds(&rules, signals(50, 50), Rule::ErrorRate));
    }
}
