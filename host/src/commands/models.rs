//! `ember models list | promote | rollback | split | shadow | fallback | default-answer | alerts`:
//! version routing, written atomically to `models/<name>/routing.json` — or, with `--remote URL`,
//! through a deployment's management API (Ember's host or the Spin build, which keeps it in Spin's
//! key-value store). The function reads it on every request, so a change applies to the next
//! request with no restart and no failed request. `ember models agreement`, `drift` and `quality`
//! read the ledger's decisions and outcomes (`drift --remote` reads the deployment's records);
//! `ember models rollout` asks `ember up` for a guarded rollout (its state is in the ledger).

use std::path::PathBuf;

use anyhow::{bail, Context as _};
use ember_contract::manage::RecordQuery;
use ember_function::catalog::{Catalog, DirCatalog};
use ember_function::routing::{Routing, Weighted};

use crate::metering::drift::{assess, Baseline, DriftReport, MIN_WINDOW};
use crate::metering::ledger::{self, LedgerArg};
use crate::metering::meter::Arrival;
use crate::nn::registry::DEFAULT_MODELS_DIR;
use crate::outcomes::{self, quality, rollout};
use crate::policy;
use crate::remote::{Remote, RemoteArg};

/// Options of `ember models`.
#[derive(clap::Args, Debug, Clone)]
pub struct ModelsArgs {
    /// Models directory.
    #[arg(long, default_value = DEFAULT_MODELS_DIR, global = true)]
    pub models: PathBuf,
    /// A deployment to operate over HTTP instead.
    #[command(flatten)]
    pub remote: RemoteArg,
    /// What to do.
    #[command(subcommand)]
    pub command: ModelsCommand,
}

/// What to do.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum ModelsCommand {
    /// Every model with its versions, aliases, split and latest rollout.
    List {
        /// The usage ledger (for rollouts; left out when it does not exist).
        #[command(flatten)]
        ledger: LedgerArg,
    },
    /// Make a version `stable` (ends any split; the previous stable is kept for rollback).
    Promote {
        /// Model name.
        name: String,
        /// Version to promote.
        version: String,
    },
    /// Return `stable` to the version it had before the last promotion.
    Rollback {
        /// Model name.
        name: String,
    },
    /// Split unversioned traffic by weight, e.g. `split credit-risk 1=90 2=10` (`canary` = the
    /// lightest version); `split credit-risk` with no weights ends the split.
    Split {
        /// Model name.
        name: String,
        /// `version=weight` pairs.
        weights: Vec<String>,
    },
    /// Send a copy of every request to a shadow version (recorded and compared, never
    /// returned); `off` stops it.
    Shadow {
        /// Model name.
        name: String,
        /// Shadow version, or `off`.
        version: String,
    },
    /// The version that answers when the chosen one fails; `off` removes it.
    Fallback {
        /// Model name.
        name: String,
        /// Fallback version, or `off`.
        version: String,
    },
    /// A declared answer (JSON object) for when the chosen version fails or times out; `off`
    /// removes it.
    DefaultAnswer {
        /// Model name.
        name: String,
        /// The answer, e.g. `{"prediction": 1, "label": "default"}`, or `off`.
        answer: String,
    },
    /// How often the shadow version agreed with the returned predictions (from the ledger).
    Agreement {
        /// Model name.
        name: String,
        /// The usage ledger.
        #[command(flatten)]
        ledger: LedgerArg,
    },
    /// PSI and KS of recent inputs and predictions against the training baseline.
    Drift {
        /// Model name.
        name: String,
        /// Version (default: stable).
        #[arg(long)]
        version: Option<String>,
        /// Most recent decisions to assess.
        #[arg(long, default_value_t = crate::metering::drift::WINDOW)]
        window: usize,
        /// PSI above which drift is flagged.
        #[arg(long, default_value_t = crate::metering::drift::PSI_THRESHOLD)]
        threshold: f64,
        /// The usage ledger.
        #[command(flatten)]
        ledger: LedgerArg,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Live quality per version from recorded outcomes: accuracy (95% interval), precision,
    /// recall and F1 per class, AUC, Brier, per day; beside the held-out metrics.
    Quality {
        /// Model name.
        name: String,
        /// Only this version.
        #[arg(long)]
        version: Option<String>,
        /// Latest labelled predictions per version to judge.
        #[arg(long, default_value_t = quality::WINDOW)]
        window: usize,
        /// The usage ledger.
        #[command(flatten)]
        ledger: LedgerArg,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Roll a version out step by step, judged by guards on live data, rolling back by itself
    /// on a failed guard (`ember up` runs it); with no version, the rollout's state and history.
    Rollout {
        /// Model name.
        name: String,
        /// The version to roll out.
        version: Option<String>,
        /// The version's share of traffic at each step, percent, ending at 100.
        #[arg(long, default_value = "5,25,50,100", value_delimiter = ',')]
        steps: Vec<u32>,
        /// How long each step runs before it is judged (e.g. 30s, 10m, 1h).
        #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
        every: std::time::Duration,
        /// Guards, comma-separated: accuracy, auc, brier (against a number or
        /// `baseline[±d]`), error_rate, agreement (against a number).
        #[arg(
            long,
            default_value = "accuracy>=baseline-0.02,error_rate<0.01,agreement>=0.9"
        )]
        guard: String,
        /// Labelled predictions, invocations or shadow comparisons a guard needs for a verdict
        /// (until then the step waits).
        #[arg(long, default_value_t = 100)]
        min_evidence: usize,
        /// Stop the rollout under way: the baseline answers everything again.
        #[arg(long, conflicts_with = "version")]
        abort: bool,
        /// The usage ledger.
        #[command(flatten)]
        ledger: LedgerArg,
    },
    /// Alert thresholds of a model's versions (in its routing policy); with no option, print them.
    Alerts {
        /// Model name.
        name: String,
        /// Alert when live accuracy falls more than this below the held-out accuracy.
        #[arg(long)]
        accuracy_drop: Option<f64>,
        /// Labelled predictions needed before accuracy is judged.
        #[arg(long)]
        min_labels: Option<u32>,
        /// Alert when a feature's or the prediction mix's PSI exceeds this.
        #[arg(long)]
        psi: Option<f64>,
        /// Alert when more than this share of recent invocations failed.
        #[arg(long)]
        error_rate: Option<f64>,
        /// Invocations needed before the error rate is judged.
        #[arg(long)]
        min_requests: Option<u32>,
    },
}

/// Runs `ember models`.
pub fn run(args: ModelsArgs) -> anyhow::Result<()> {
    let catalog = DirCatalog::new(&args.models);
    let deployment = match args.remote.connect()? {
        Some(remote) => Deployment::Remote(remote),
        None => Deployment::Local(&catalog),
    };
    match args.command {
        ModelsCommand::List { ledger } => list(&deployment, &ledger)?,
        ModelsCommand::Promote { name, version } => {
            deployment.require_version(&name, &version)?;
            deployment.update(&name, |r| r.promote(&version))?;
            println!("{name}: stable → {version}");
        }
        ModelsCommand::Rollback { name } => {
            let mut restored = None;
            deployment.update(&name, |r| restored = r.rollback())?;
            match restored {
                Some(version) => println!("{name}: stable → {version} (rolled back)"),
                None => bail!("{name} has no earlier stable version to roll back to"),
            }
        }
        ModelsCommand::Split { name, weights } => {
            let split = weights
                .iter()
                .map(|pair| parse_weight(pair))
                .collect::<anyhow::Result<Vec<_>>>()?;
            deployment.require_versions(&name, split.iter().map(|w| w.version.as_str()))?;
            let canary = (split.len() > 1)
                .then(|| split.iter().min_by_key(|w| w.weight))
                .flatten()
                .map(|w| w.version.clone());
            deployment.update(&name, |r| {
                r.split = split.clone();
                match &canary {
                    Some(v) => r.aliases.insert("canary".into(), v.clone()),
                    None => r.aliases.remove("canary"),
                };
            })?;
            println!("{name}: split {}", weights.join(" "));
        }
        ModelsCommand::Shadow { name, version } => {
            let shadow = deployment.optional_version(&name, &version)?;
            deployment.update(&name, |r| r.shadow = shadow.clone())?;
            println!("{name}: shadow {version}");
        }
        ModelsCommand::Fallback { name, version } => {
            let fallback = deployment.optional_version(&name, &version)?;
            deployment.update(&name, |r| r.fallback = fallback.clone())?;
            println!("{name}: fallback {version}");
        }
        ModelsCommand::DefaultAnswer { name, answer } => {
            let answer = match answer.as_str() {
                "off" => None,
                json => Some(
                    serde_json::from_str::<serde_json::Value>(json)
                        .context("the answer must be JSON")?,
                ),
            };
            if answer.as_ref().is_some_and(|a| !a.is_object()) {
                bail!("the default answer must be a JSON object");
            }
            deployment.update(&name, |r| r.default_answer = answer.clone())?;
            println!(
                "{name}: default answer {}",
                answer.map(|a| a.to_string()).unwrap_or("off".into())
            );
        }
        ModelsCommand::Agreement { name, ledger } => {
            deployment.local_only("agreement")?;
            let conn = ledger.open_current()?;
            let mut stmt = conn.prepare(
                "SELECT model_version, shadow_version, COUNT(*), SUM(shadow_agrees) FROM decisions
                 WHERE model = ?1 AND shadow_agrees IS NOT NULL
                 GROUP BY model_version, shadow_version ORDER BY model_version, shadow_version",
            )?;
            let rows = stmt.query_map([&name], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })?;
            println!(
                "{:<10} {:<8} {:>10} {:>10}",
                "primary", "shadow", "compared", "agreement"
            );
            for row in rows {
                let (primary, shadow, compared, agreed) = row?;
                println!(
                    "{primary:<10} {shadow:<8} {compared:>10} {:>9.2}%",
                    100.0 * agreed as f64 / compared as f64
                );
            }
        }
        ModelsCommand::Drift {
            name,
            version,
            window,
            threshold,
            ledger,
            json,
        } => {
            let version = match version {
                Some(v) => v,
                None => deployment.stable(&name)?,
            };
            // The training baseline is the model's own (model.toml); the decisions are the
            // deployment's.
            let baseline = Baseline::load(catalog.root(), &name, &version)?;
            let rows: Vec<_> = match &deployment {
                Deployment::Local(_) => {
                    let conn = ledger.open_current()?;
                    ledger::recent_decisions(&conn, &name, &version, window)?
                        .into_iter()
                        .filter_map(|r| r.decision)
                        .map(|d| (d.features, d.prediction))
                        .collect()
                }
                Deployment::Remote(remote) => remote
                    .records(&RecordQuery {
                        model: Some(name.clone()),
                        version: Some(version.clone()),
                        limit: Some(window),
                        ..Default::default()
                    })?
                    .into_iter()
                    .map(|r| {
                        (
                            r.telemetry.features,
                            r.telemetry.prediction.map(|p| p as i64),
                        )
                    })
                    .collect(),
            };
            let rows: Vec<_> = rows.into_iter().filter(|(f, _)| !f.is_empty()).collect();
            let report = assess(&name, &version, &baseline, &rows, threshold);
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_drift(&report, threshold);
            }
        }
        ModelsCommand::Quality {
            name,
            version,
            window,
            ledger,
            json,
        } => {
            deployment.local_only("quality")?;
            let conn = ledger.open_current()?;
            let report: Vec<_> = outcomes::report(&conn, &catalog, &name, window)?
                .into_iter()
                .filter(|v| version.as_ref().is_none_or(|only| *only == v.version))
                .collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                report.iter().for_each(print_quality);
            }
        }
        ModelsCommand::Rollout {
            name,
            version,
            steps,
            every,
            guard,
            min_evidence,
            abort,
            ledger,
        } => {
            deployment.local_only("rollout")?;
            let conn = ledger.open_current()?;
            let now_us = Arrival::now_us();
            if abort {
                let stopped = rollout::abort(&conn, &catalog, &name, now_us)?;
                println!("{name}: rollout of {} aborted", stopped.candidate);
            } else if let Some(version) = version {
                deployment.require_version(&name, &version)?;
                let plan = rollout::Plan {
                    model: name.clone(),
                    candidate: version.clone(),
                    steps,
                    every,
                    guards: guard,
                    min_evidence,
                };
                rollout::submit(&conn, &catalog, &plan, now_us)?;
                println!(
                    "{name}: rollout of {version} submitted (steps {:?}% every {}, guards {}); \
                     ember up runs it",
                    plan.steps,
                    humantime::format_duration(plan.every),
                    plan.guards
                );
            } else {
                for event in rollout::history(&conn, &name)? {
                    println!(
                        "{} {:<12} {} at {:>3}%  {}",
                        chrono::DateTime::from_timestamp_micros(event.at_us)
                            .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                            .unwrap_or_default(),
                        event.action,
                        event.candidate,
                        event.percent,
                        verdicts(&event.evidence)
                    );
                }
            }
        }
        ModelsCommand::Alerts {
            name,
            accuracy_drop,
            min_labels,
            psi,
            error_rate,
            min_requests,
        } => {
            let mut rules = deployment.routing(&name)?.alerts.unwrap_or_default();
            let changes = [
                accuracy_drop.map(|v| rules.accuracy_drop = v),
                min_labels.map(|v| rules.min_labels = v),
                psi.map(|v| rules.psi = v),
                error_rate.map(|v| rules.error_rate = v),
                min_requests.map(|v| rules.min_requests = v),
            ];
            if changes.iter().any(Option::is_some) {
                deployment.versions(&name)?;
                deployment.update(&name, |r| r.alerts = Some(rules.clone()))?;
            }
            println!("{name}: {}", serde_json::to_string(&rules)?);
        }
    }
    Ok(())
}

/// The guards' verdicts of a rollout event's evidence, as `guard=value verdict`.
fn verdicts(evidence: &serde_json::Value) -> String {
    let guards = evidence["guards"].as_array().cloned().unwrap_or_default();
    guards
        .iter()
        .map(|g| {
            format!(
                "{} ({}: {})",
                g["guard"].as_str().unwrap_or_default(),
                g["value"]
                    .as_f64()
                    .map(|v| format!("{v:.4}"))
                    .unwrap_or("-".into()),
                g["verdict"].as_str().unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_quality(v: &outcomes::VersionQuality) {
    let pct = |x: Option<f64>| {
        x.map(|x| format!("{:.2}%", 100.0 * x))
            .unwrap_or("-".into())
    };
    let num = |x: Option<f64>| x.map(|x| format!("{x:.4}")).unwrap_or("-".into());
    let q = &v.window;
    println!(
        "{} v{}: {} labelled predictions, accuracy {} (95% {}), held-out {}; AUC {} (held-out {}), Brier {}, macro F1 {}",
        v.model,
        v.version,
        q.labelled,
        pct(q.accuracy),
        q.accuracy_ci95
            .map(|[l, h]| format!("{:.2}–{:.2}%", 100.0 * l, 100.0 * h))
            .unwrap_or("-".into()),
        pct(v.held_out.accuracy),
        num(q.auc),
        num(v.held_out.roc_auc),
        num(q.brier),
        num(q.macro_f1),
    );
    println!(
        "  {:<12} {:>8} {:>10} {:>8} {:>8}",
        "class", "support", "precision", "recall", "F1"
    );
    for c in &q.classes {
        println!(
            "  {:<12} {:>8} {:>10} {:>8} {:>8}",
            c.label,
            c.support,
            pct(c.precision),
            pct(c.recall),
            num(c.f1)
        );
    }
    for day in &v.days {
        println!(
            "  {}: {} labelled, accuracy {}",
            day.day,
            day.quality.labelled,
            pct(day.quality.accuracy)
        );
    }
}

fn print_drift(report: &DriftReport, threshold: f64) {
    println!(
        "{} v{}: {} recent decisions",
        report.model, report.version, report.window
    );
    println!("{:<20} {:>8} {:>8}", "feature", "PSI", "KS");
    for f in &report.features {
        println!("{:<20} {:>8.3} {:>8.3}", f.name, f.psi, f.ks);
    }
    println!("{:<20} {:>8.3}", "prediction mix", report.prediction_psi);
    if report.window < MIN_WINDOW {
        println!("not enough decisions for a verdict (need {MIN_WINDOW})");
    } else if report.drifted {
        println!("DRIFT: a PSI exceeds {threshold}");
    } else {
        println!("no drift (every PSI ≤ {threshold})");
    }
}

/// Prints every model with its versions, aliases, split and (locally) its latest rollout.
fn list(deployment: &Deployment, ledger: &LedgerArg) -> anyhow::Result<()> {
    let models: Vec<(String, Vec<String>, Routing)> = match deployment {
        Deployment::Local(catalog) => catalog
            .models()
            .into_iter()
            .map(|m| (m.name.clone(), m.versions, catalog.routing(&m.name)))
            .collect(),
        Deployment::Remote(remote) => remote
            .models()?
            .into_iter()
            .map(|m| Ok((m.name, m.versions, serde_json::from_value(m.routing)?)))
            .collect::<anyhow::Result<_>>()?,
    };
    let conn = match deployment {
        Deployment::Local(_) if ledger.path.is_file() => Some(ledger.open_current()?),
        _ => None,
    };
    for (name, versions, routing) in models {
        let split: Vec<String> = routing
            .split
            .iter()
            .map(|w| format!("{}={}", w.version, w.weight))
            .collect();
        println!(
            "{:<16} versions {:<10} aliases {:<28} split {}",
            name,
            versions.join(","),
            serde_json::to_string(&routing.aliases)?,
            if split.is_empty() {
                "-".into()
            } else {
                split.join(" ")
            }
        );
        let latest = match &conn {
            Some(conn) => rollout::load(conn, &name)?,
            None => None,
        };
        if let Some(r) = latest {
            println!(
                "{:<16} rollout of {} from {}: {} at {}% (steps {:?})",
                "",
                r.candidate,
                r.baseline,
                serde_json::to_value(r.state)?.as_str().unwrap_or_default(),
                r.percent(),
                r.steps
            );
        }
    }
    Ok(())
}

/// Where `ember models` changes routing: the local models directory, or a deployment over HTTP.
enum Deployment<'a> {
    Local(&'a DirCatalog),
    Remote(Remote),
}

impl Deployment<'_> {
    /// Refuses a command that reads the local ledger when `--remote` was given.
    fn local_only(&self, command: &str) -> anyhow::Result<()> {
        match self {
            Self::Local(_) => Ok(()),
            Self::Remote(_) => {
                bail!("`ember models {command}` reads the local ledger; it has no --remote form")
            }
        }
    }

    /// `name`'s published versions; an error for a model the deployment lacks.
    fn versions(&self, name: &str) -> anyhow::Result<Vec<String>> {
        let versions = match self {
            Self::Local(catalog) => catalog
                .models()
                .into_iter()
                .find(|m| m.name == name)
                .map(|m| m.versions),
            Self::Remote(remote) => remote
                .models()?
                .into_iter()
                .find(|m| m.name == name)
                .map(|m| m.versions),
        };
        versions.with_context(|| format!("no model named {name}"))
    }

    /// Fails unless `name` has `version` (and, locally, its spec parses: it must be servable; a
    /// deployment checks its own).
    fn require_version(&self, name: &str, version: &str) -> anyhow::Result<()> {
        self.require_versions(name, [version])
    }

    /// [`Deployment::require_version`] for each of `versions`, reading the model list once (a
    /// remote deployment's is one request).
    fn require_versions<'v>(
        &self,
        name: &str,
        versions: impl IntoIterator<Item = &'v str>,
    ) -> anyhow::Result<()> {
        let known = self.versions(name)?;
        for version in versions {
            if !known.iter().any(|v| v == version) {
                bail!("{name} has no version {version} (has {})", known.join(", "));
            }
            if let Self::Local(catalog) = self {
                catalog
                    .spec(name, Some(version), Default::default())
                    .map_err(|e| anyhow::anyhow!("{name} {version}: {}", e.message))?;
            }
        }
        Ok(())
    }

    /// `off` → `None`; otherwise the version, which must exist.
    fn optional_version(&self, name: &str, version: &str) -> anyhow::Result<Option<String>> {
        if version == "off" {
            return Ok(None);
        }
        self.require_version(name, version)?;
        Ok(Some(version.to_string()))
    }

    /// `name`'s routing.
    fn routing(&self, name: &str) -> anyhow::Result<Routing> {
        match self {
            Self::Local(catalog) => Ok(catalog.routing(name)),
            Self::Remote(remote) => remote.routing(name),
        }
    }

    /// The version `name`'s `stable` alias names, else its newest.
    fn stable(&self, name: &str) -> anyhow::Result<String> {
        let routing = self.routing(name)?;
        match routing.stable() {
            Some(stable) => Ok(stable.to_string()),
            None => self
                .versions(name)?
                .pop()
                .with_context(|| format!("{name} has no versions")),
        }
    }

    /// Reads `name`'s routing, applies `change` and stores it (atomically; locally under the
    /// routing lock).
    fn update(&self, name: &str, change: impl FnMut(&mut Routing)) -> anyhow::Result<()> {
        match self {
            Self::Local(catalog) => policy::update(catalog, name, change),
            Self::Remote(remote) => remote.update(name, change).map(drop),
        }
    }
}

fn parse_weight(pair: &str) -> anyhow::Result<Weighted> {
    let (version, weight) = pair
        .split_once('=')
        .with_context(|| format!("'{pair}' is not version=weight"))?;
    Ok(Weighted {
        version: version.to_string(),
        weight: weight
            .parse()
            .with_context(|| format!("weight in '{pair}'"))?,
    })
}
