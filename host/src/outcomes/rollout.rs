//! Progressive delivery: a rollout moves a candidate version's share of a model's traffic through
//! its steps (e.g. 5, 25, 50, 100 %), holds each step for its interval, then judges the step's
//! live evidence with the rollout's [guards](super::guard): all pass → the next step (100 % promotes
//! the candidate); one fails → back to the baseline at once; too little evidence → the step waits.
//! While it runs the candidate also shadows the baseline's requests (unless another shadow is
//! set), so its quality and agreement are measured on all traffic from the first step.
//!
//! The state lives in the ledger (`rollouts`, and every decision with its evidence in
//! `rollout_events`), so a restarted `ember up` carries on; the traffic split is the model's
//! routing policy, which the function reads on every request.

use std::time::Duration;

use anyhow::{bail, Context as _};
use ember_function::catalog::{Catalog as _, DirCatalog};
use ember_function::routing::{Routing, Weighted};
use rusqlite::{params, Connection, OptionalExtension as _};
use serde::Serialize;
use serde_json::json;

use super::guard::{Guard, Metric, Verdict};
use super::quality::{self, Quality, Span};
use crate::policy;

/// What an operator asks for.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Model.
    pub model: String,
    /// The version rolled out.
    pub candidate: String,
    /// The candidate's share at each step, in percent, ending at 100.
    pub steps: Vec<u32>,
    /// How long each step runs before it is judged.
    pub every: Duration,
    /// The guards, as given.
    pub guards: String,
    /// Labelled predictions (or invocations, or shadow comparisons) a guard needs for a verdict.
    pub min_evidence: usize,
}

/// Where a rollout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Asked for; `ember up` starts it on its next check.
    Pending,
    /// At one of its steps.
    Running,
    /// The candidate was promoted.
    Completed,
    /// A guard failed: the baseline answers everything again.
    RolledBack,
    /// Stopped by an operator.
    Aborted,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Running => "running",
            State::Completed => "completed",
            State::RolledBack => "rolled_back",
            State::Aborted => "aborted",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "pending" => State::Pending,
            "running" => State::Running,
            "completed" => State::Completed,
            "rolled_back" => State::RolledBack,
            _ => State::Aborted,
        }
    }
}

/// A rollout as stored.
#[derive(Debug, Clone)]
pub struct Rollout {
    /// Model.
    pub model: String,
    /// The version rolled out.
    pub candidate: String,
    /// The version it replaces (`stable` when it started).
    pub baseline: String,
    /// Shares per step, percent.
    pub steps: Vec<u32>,
    /// Time per step.
    pub every: Duration,
    /// The guards, as given.
    pub guards: String,
    /// Evidence a guard needs for a verdict.
    pub min_evidence: usize,
    /// Index of the current step.
    pub step: usize,
    /// When the current step began, µs since the Unix epoch.
    pub step_started_at_us: i64,
    /// Where it is.
    pub state: State,
    /// Whether the rollout made the candidate the model's shadow (and so clears it at the end).
    pub shadowing: bool,
}

impl Rollout {
    /// The candidate's share now, percent.
    pub fn percent(&self) -> u32 {
        match self.state {
            State::Running => self.steps.get(self.step).copied().unwrap_or(0),
            State::Completed => 100,
            _ => 0,
        }
    }
}

/// One decision of a rollout, with its evidence.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Model.
    pub model: String,
    /// Candidate version.
    pub candidate: String,
    /// When, µs since the Unix epoch.
    pub at_us: i64,
    /// The candidate's share after the decision, percent.
    pub percent: u32,
    /// `started`, `advanced`, `holding`, `completed`, `rolled_back` or `aborted`.
    pub action: String,
    /// What it was decided on.
    pub evidence: serde_json::Value,
}

/// Records a new rollout of `plan` (started by `ember up` on its next check); refuses while
/// another rollout of the model is under way.
pub fn submit(
    conn: &Connection,
    catalog: &DirCatalog,
    plan: &Plan,
    now_us: i64,
) -> anyhow::Result<()> {
    Guard::parse_list(&plan.guards).map_err(anyhow::Error::msg)?;
    if plan.steps.is_empty()
        || plan.steps.last() != Some(&100)
        || plan.steps.windows(2).any(|w| w[0] >= w[1])
        || plan.steps[0] == 0
    {
        bail!("--steps must rise from above 0 to 100, e.g. 5,25,50,100");
    }
    let routing = catalog.routing(&plan.model);
    let baseline = routing
        .stable()
        .with_context(|| format!("{} has no stable version to roll out from", plan.model))?
        .to_string();
    if baseline == plan.candidate {
        bail!(
            "{} {} is the stable version already",
            plan.model,
            plan.candidate
        );
    }
    if let Some(current) =
        load(conn, &plan.model)?.filter(|r| matches!(r.state, State::Pending | State::Running))
    {
        bail!(
            "{} is rolling out {} already (abort it first: ember models rollout {} --abort)",
            plan.model,
            current.candidate,
            plan.model
        );
    }
    conn.execute(
        "INSERT OR REPLACE INTO rollouts (model, candidate, baseline, steps, every_ms, guards,
             min_evidence, step, step_started_at_us, state, shadowing, updated_at_us)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, ?8, 'pending', 0, ?8)",
        params![
            plan.model,
            plan.candidate,
            baseline,
            serde_json::to_string(&plan.steps)?,
            plan.every.as_millis() as i64,
            plan.guards,
            plan.min_evidence as i64,
            now_us,
        ],
    )?;
    Ok(())
}

const SELECT: &str = "SELECT model, candidate, baseline, steps, every_ms, guards, min_evidence,
    step, step_started_at_us, state, shadowing FROM rollouts";

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Rollout> {
    Ok(Rollout {
        model: row.get(0)?,
        candidate: row.get(1)?,
        baseline: row.get(2)?,
        steps: serde_json::from_str(&row.get::<_, String>(3)?).unwrap_or_default(),
        every: Duration::from_millis(row.get::<_, i64>(4)? as u64),
        guards: row.get(5)?,
        min_evidence: row.get::<_, i64>(6)? as usize,
        step: row.get::<_, i64>(7)? as usize,
        step_started_at_us: row.get(8)?,
        state: State::parse(&row.get::<_, String>(9)?),
        shadowing: row.get(10)?,
    })
}

/// The latest rollout of `model`, if any.
pub fn load(conn: &Connection, model: &str) -> rusqlite::Result<Option<Rollout>> {
    conn.query_row(&format!("{SELECT} WHERE model = ?1"), [model], from_row)
        .optional()
}

/// Every rollout that is pending or running.
pub fn active(conn: &Connection) -> rusqlite::Result<Vec<Rollout>> {
    let mut stmt = conn.prepare(&format!(
        "{SELECT} WHERE state IN ('pending', 'running') ORDER BY model"
    ))?;
    let rows = stmt.query_map([], from_row)?;
    rows.collect()
}

/// The decisions of `model`'s rollouts, oldest first.
pub fn history(conn: &Connection, model: &str) -> rusqlite::Result<Vec<Event>> {
    let mut stmt = conn.prepare(
        "SELECT model, candidate, at_us, percent, action, evidence FROM rollout_events
         WHERE model = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([model], |row| {
        Ok(Event {
            model: row.get(0)?,
            candidate: row.get(1)?,
            at_us: row.get(2)?,
            percent: row.get::<_, i64>(3)? as u32,
            action: row.get(4)?,
            evidence: serde_json::from_str(&row.get::<_, String>(5)?).unwrap_or_default(),
        })
    })?;
    rows.collect()
}

fn save(conn: &Connection, rollout: &Rollout, now_us: i64) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE rollouts SET step = ?2, step_started_at_us = ?3, state = ?4, shadowing = ?5,
             updated_at_us = ?6 WHERE model = ?1",
        params![
            rollout.model,
            rollout.step as i64,
            rollout.step_started_at_us,
            rollout.state.as_str(),
            rollout.shadowing,
            now_us,
        ],
    )?;
    Ok(())
}

fn record(
    conn: &Connection,
    rollout: &Rollout,
    action: &str,
    evidence: &serde_json::Value,
    now_us: i64,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO rollout_events (model, candidate, at_us, percent, action, evidence)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            rollout.model,
            rollout.candidate,
            now_us,
            rollout.percent() as i64,
            action,
            evidence.to_string(),
        ],
    )?;
    Ok(())
}

/// The routing of a rollout at `percent`: the split between baseline and candidate (`canary`),
/// and the candidate as shadow when the rollout set it.
fn route(routing: &mut Routing, rollout: &Rollout, percent: u32) {
    routing.split = vec![
        Weighted {
            version: rollout.baseline.clone(),
            weight: 100 - percent,
        },
        Weighted {
            version: rollout.candidate.clone(),
            weight: percent,
        },
    ];
    routing
        .aliases
        .insert("canary".into(), rollout.candidate.clone());
    if rollout.shadowing {
        routing.shadow = Some(rollout.candidate.clone());
    }
}

/// Undoes a rollout's routing: no split, no canary, and no shadow if the rollout set it.
fn unroute(routing: &mut Routing, rollout: &Rollout) {
    routing.split.clear();
    routing.aliases.remove("canary");
    if rollout.shadowing && routing.shadow.as_deref() == Some(&rollout.candidate) {
        routing.shadow = None;
    }
}

/// Stops `model`'s rollout by an operator's hand: the baseline answers everything again.
pub fn abort(
    conn: &Connection,
    catalog: &DirCatalog,
    model: &str,
    now_us: i64,
) -> anyhow::Result<Rollout> {
    // Under the routing lock, so a check judging the rollout right now sees the abort.
    let routing = policy::lock(catalog, model)?;
    let mut rollout = load(conn, model)?
        .filter(|r| matches!(r.state, State::Pending | State::Running))
        .with_context(|| format!("{model} has no rollout under way"))?;
    routing.update(|r| unroute(r, &rollout))?;
    rollout.state = State::Aborted;
    save(conn, &rollout, now_us)?;
    record(conn, &rollout, "aborted", &json!({}), now_us)?;
    Ok(rollout)
}

/// What a step was judged on.
#[derive(Debug, Clone, Serialize)]
pub struct Evidence {
    /// The step's window, µs since the Unix epoch.
    pub since_us: i64,
    /// End of the window.
    pub until_us: i64,
    /// The candidate's labelled predictions in the window.
    pub candidate: Quality,
    /// The baseline's.
    pub baseline: Quality,
    /// The baseline's held-out accuracy and AUC (its `model.toml`), used while it has fewer
    /// labelled predictions than the rollout's minimum.
    pub baseline_held_out: HeldOut,
    /// The candidate's invocations and failures in the window.
    pub errors: Rate,
    /// The candidate's shadow comparisons and agreements in the window.
    pub agreement: Rate,
    /// Each guard's verdict.
    pub guards: Vec<GuardVerdict>,
}

/// Held-out metrics of a version, from its `model.toml`.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct HeldOut {
    /// Held-out accuracy.
    pub accuracy: Option<f64>,
    /// Held-out ROC AUC.
    pub roc_auc: Option<f64>,
}

impl HeldOut {
    /// The held-out metrics of `model` `version`.
    pub fn of(catalog: &DirCatalog, model: &str, version: &str) -> Self {
        let Ok(spec) = catalog.spec(model, Some(version), Default::default()) else {
            return Self::default();
        };
        let metric = |name: &str| spec.metrics.get(name).and_then(|v| v.as_float());
        Self {
            accuracy: metric("accuracy"),
            roc_auc: metric("roc_auc"),
        }
    }
}

/// A count of events of which some had a property (failed, agreed).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Rate {
    /// Events counted.
    pub total: u64,
    /// Of them, those with the property.
    pub hits: u64,
}

impl Rate {
    /// `hits / total` once `total` reaches `min`.
    fn share(self, min: usize) -> Option<f64> {
        (self.total >= min as u64 && self.total > 0).then(|| self.hits as f64 / self.total as f64)
    }
}

/// One guard's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct GuardVerdict {
    /// The guard.
    pub guard: String,
    /// The candidate's value.
    pub value: Option<f64>,
    /// What it was compared with.
    pub bound: Option<f64>,
    /// The verdict.
    pub verdict: Verdict,
}

/// Failed invocations of `version` in `span`, as [`alerts::RecentErrors`] counts them: a 5xx, or
/// a fallback standing in for it (another version's answer, or its declared default answer).
///
/// [`alerts::RecentErrors`]: super::alerts::RecentErrors
pub fn errors(conn: &Connection, model: &str, version: &str, span: Span) -> rusqlite::Result<Rate> {
    conn.query_row(
        "SELECT
            (SELECT COUNT(*) FROM invocations WHERE model = ?1 AND model_version = ?2
                AND started_at_us >= ?3 AND started_at_us < ?4),
            (SELECT COUNT(*) FROM invocations WHERE model = ?1 AND model_version = ?2
                AND status >= 500 AND started_at_us >= ?3 AND started_at_us < ?4),
            (SELECT COUNT(*) FROM decisions WHERE model = ?1 AND fallback_from = ?2
                AND model_version != ?2 AND started_at_us >= ?3 AND started_at_us < ?4),
            (SELECT COUNT(*) FROM decisions WHERE model = ?1 AND fallback_from = ?2
                AND model_version = ?2 AND started_at_us >= ?3 AND started_at_us < ?4)",
        params![model, version, span.since_us, span.until_us],
        |row| {
            let (answered, failed, elsewhere, defaulted): (i64, i64, i64, i64) =
                (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
            // A default answer is one of the version's own (200) invocations.
            Ok(Rate {
                total: (answered + elsewhere) as u64,
                hits: (failed + elsewhere + defaulted) as u64,
            })
        },
    )
}

/// How often `shadow`'s predictions agreed with the answers `answered` returned in `span` (by the
/// index on model, version and time: no index is kept for the shadow alone).
fn agreement(
    conn: &Connection,
    model: &str,
    answered: &str,
    shadow: &str,
    span: Span,
) -> rusqlite::Result<Rate> {
    conn.query_row(
        "SELECT COUNT(*), COALESCE(SUM(shadow_agrees), 0) FROM decisions
         WHERE model = ?1 AND model_version = ?2 AND started_at_us >= ?4 AND started_at_us < ?5
           AND shadow_version = ?3 AND shadow_agrees IS NOT NULL",
        params![model, answered, shadow, span.since_us, span.until_us],
        |row| {
            Ok(Rate {
                total: row.get::<_, i64>(0)? as u64,
                hits: row.get::<_, i64>(1)? as u64,
            })
        },
    )
}

/// Gathers the evidence of `rollout`'s current step up to `now_us` and judges its guards.
pub fn judge(
    conn: &Connection,
    catalog: &DirCatalog,
    rollout: &Rollout,
    now_us: i64,
) -> anyhow::Result<Evidence> {
    let span = Span {
        since_us: rollout.step_started_at_us,
        until_us: now_us,
    };
    let labels = catalog
        .spec(&rollout.model, Some(&rollout.candidate), Default::default())
        .map_err(|e| anyhow::anyhow!("{} {}: {}", rollout.model, rollout.candidate, e.message))?
        .labels;
    let quality_of = |version: &str| -> rusqlite::Result<Quality> {
        let rows = quality::labelled(conn, &rollout.model, version, span, usize::MAX >> 1)?;
        Ok(Quality::of(&labels, &rows))
    };
    let candidate = quality_of(&rollout.candidate)?;
    let baseline = quality_of(&rollout.baseline)?;
    let held_out = HeldOut::of(catalog, &rollout.model, &rollout.baseline);
    let errors = errors(conn, &rollout.model, &rollout.candidate, span)?;
    // While a rollout runs, the candidate shadows the requests the baseline answers.
    let agreement = agreement(
        conn,
        &rollout.model,
        &rollout.baseline,
        &rollout.candidate,
        span,
    )?;
    let min = rollout.min_evidence;
    let enough = |count: usize, value: Option<f64>| value.filter(|_| count >= min.max(1));
    let guards = Guard::parse_list(&rollout.guards)
        .map_err(anyhow::Error::msg)?
        .iter()
        .map(|guard| {
            let (value, base) = match guard.metric {
                Metric::Accuracy => (
                    enough(candidate.labelled, candidate.accuracy),
                    enough(baseline.labelled, baseline.accuracy).or(held_out.accuracy),
                ),
                Metric::Auc => (
                    enough(candidate.scored, candidate.auc),
                    enough(baseline.scored, baseline.auc).or(held_out.roc_auc),
                ),
                Metric::Brier => (
                    enough(candidate.scored, candidate.brier),
                    enough(baseline.scored, baseline.brier),
                ),
                Metric::ErrorRate => (errors.share(min), None),
                Metric::Agreement => (agreement.share(min), None),
            };
            let (bound, verdict) = guard.judge(value, base);
            GuardVerdict {
                guard: guard.to_string(),
                value,
                bound,
                verdict,
            }
        })
        .collect();
    Ok(Evidence {
        since_us: span.since_us,
        until_us: span.until_us,
        candidate,
        baseline,
        baseline_held_out: held_out,
        errors,
        agreement,
        guards,
    })
}

/// What a check did to a rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Moved {
    /// Nothing: its step is still running, or waits for evidence it already said it waits for.
    No,
    /// It changed state or step, or started waiting for evidence: the action recorded.
    Yes(&'static str),
}

/// Checks one rollout at `now_us`: starts it, or judges its current step once the step's time is
/// up and acts on the verdict. `holding` says whether its waiting at this step was recorded.
pub fn check(
    conn: &Connection,
    catalog: &DirCatalog,
    rollout: &mut Rollout,
    holding: bool,
    now_us: i64,
) -> anyhow::Result<Moved> {
    // Under the routing lock, read again: an operator may have aborted it since it was listed.
    let routing = policy::lock(catalog, &rollout.model)?;
    match load(conn, &rollout.model)? {
        Some(current)
            if (current.state, current.step, &current.candidate)
                == (rollout.state, rollout.step, &rollout.candidate) => {}
        _ => return Ok(Moved::No),
    }
    if rollout.state == State::Pending {
        rollout.shadowing = catalog.routing(&rollout.model).shadow.is_none();
        rollout.state = State::Running;
        rollout.step = 0;
        rollout.step_started_at_us = now_us;
        let percent = rollout.percent();
        routing.update(|r| route(r, rollout, percent))?;
        save(conn, rollout, now_us)?;
        record(conn, rollout, "started", &json!({}), now_us)?;
        return Ok(Moved::Yes("started"));
    }
    let due = rollout.step_started_at_us + rollout.every.as_micros() as i64;
    if rollout.state != State::Running || now_us < due {
        return Ok(Moved::No);
    }
    let evidence = judge(conn, catalog, rollout, now_us)?;
    let verdicts: Vec<Verdict> = evidence.guards.iter().map(|g| g.verdict).collect();
    let evidence_json = serde_json::to_value(&evidence)?;
    let action = if verdicts.contains(&Verdict::Fail) {
        routing.update(|r| unroute(r, rollout))?;
        rollout.state = State::RolledBack;
        "rolled_back"
    } else if verdicts.contains(&Verdict::Insufficient) {
        if holding {
            return Ok(Moved::No);
        }
        record(conn, rollout, "holding", &evidence_json, now_us)?;
        return Ok(Moved::Yes("holding"));
    } else if rollout.step + 1 >= rollout.steps.len() || rollout.steps[rollout.step + 1] >= 100 {
        let candidate = rollout.candidate.clone();
        routing.update(|r| {
            unroute(r, rollout);
            r.promote(&candidate);
        })?;
        rollout.step = rollout.steps.len() - 1;
        rollout.state = State::Completed;
        "completed"
    } else {
        rollout.step += 1;
        rollout.step_started_at_us = now_us;
        let percent = rollout.percent();
        routing.update(|r| route(r, rollout, percent))?;
        "advanced"
    };
    save(conn, rollout, now_us)?;
    record(conn, rollout, action, &evidence_json, now_us)?;
    Ok(Moved::Yes(action))
}
