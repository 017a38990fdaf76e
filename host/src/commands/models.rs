//! `ember models list | promote | rollback | split | shadow | fallback | default-answer`: version routing, written
//! atomically to `models/<name>/routing.json`. The function reads it on every request, so a change
//! applies to the next request with no restart and no failed request. `ember models agreement`
//! and `ember models drift` read the ledger's decisions.

use std::path::PathBuf;

use anyhow::{bail, Context as _};
use ember_function::catalog::{Catalog, DirCatalog};
use ember_function::routing::{Routing, Weighted};

use crate::metering::drift::{assess, Baseline, DriftReport, MIN_WINDOW};
use crate::metering::ledger::{self, LedgerArg};
use crate::nn::registry::DEFAULT_MODELS_DIR;

/// Options of `ember models`.
#[derive(clap::Args, Debug, Clone)]
pub struct ModelsArgs {
    /// Models directory.
    #[arg(long, default_value = DEFAULT_MODELS_DIR, global = true)]
    pub models: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub command: ModelsCommand,
}

/// What to do.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum ModelsCommand {
    /// Every model with its versions, aliases and split.
    List,
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
}

/// Runs `ember models`.
pub fn run(args: ModelsArgs) -> anyhow::Result<()> {
    let catalog = DirCatalog::new(&args.models);
    match args.command {
        ModelsCommand::List => {
            for model in catalog.models() {
                let routing = catalog.routing(&model.name);
                let split: Vec<String> = routing
                    .split
                    .iter()
                    .map(|w| format!("{}={}", w.version, w.weight))
                    .collect();
                println!(
                    "{:<16} versions {:<10} aliases {:<28} split {}",
                    model.name,
                    model.versions.join(","),
                    serde_json::to_string(&model.aliases)?,
                    if split.is_empty() {
                        "-".into()
                    } else {
                        split.join(" ")
                    }
                );
            }
        }
        ModelsCommand::Promote { name, version } => {
            require_version(&catalog, &name, &version)?;
            update(&catalog, &name, |r| r.promote(&version))?;
            println!("{name}: stable → {version}");
        }
        ModelsCommand::Rollback { name } => {
            let mut restored = None;
            update(&catalog, &name, |r| restored = r.rollback())?;
            match restored {
                Some(version) => println!("{name}: stable → {version} (rolled back)"),
                None => bail!("{name} has no earlier stable version to roll back to"),
            }
        }
        ModelsCommand::Split { name, weights } => {
            let split = weights
                .iter()
                .map(|pair| parse_weight(&catalog, &name, pair))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let canary = (split.len() > 1)
                .then(|| split.iter().min_by_key(|w| w.weight))
                .flatten()
                .map(|w| w.version.clone());
            update(&catalog, &name, |r| {
                r.split = split.clone();
                match &canary {
                    Some(v) => r.aliases.insert("canary".into(), v.clone()),
                    None => r.aliases.remove("canary"),
                };
            })?;
            println!("{name}: split {}", weights.join(" "));
        }
        ModelsCommand::Shadow { name, version } => {
            let shadow = optional_version(&catalog, &name, &version)?;
            update(&catalog, &name, |r| r.shadow = shadow.clone())?;
            println!("{name}: shadow {version}");
        }
        ModelsCommand::Fallback { name, version } => {
            let fallback = optional_version(&catalog, &name, &version)?;
            update(&catalog, &name, |r| r.fallback = fallback.clone())?;
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
            update(&catalog, &name, |r| r.default_answer = answer.clone())?;
            println!(
                "{name}: default answer {}",
                answer.map(|a| a.to_string()).unwrap_or("off".into())
            );
        }
        ModelsCommand::Agreement { name, ledger } => {
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
                None => {
                    catalog
                        .spec(&name, Some("stable"), Default::default())
                        .or_else(|_| catalog.spec(&name, None, Default::default()))
                        .map_err(|e| anyhow::anyhow!("{name}: {}", e.message))?
                        .version
                }
            };
            let baseline = Baseline::load(catalog.root(), &name, &version)?;
            let conn = ledger.open_current()?;
            let rows: Vec<_> = ledger::recent_decisions(&conn, &name, &version, window)?
                .into_iter()
                .filter_map(|r| r.decision)
                .filter(|d| !d.features.is_empty())
                .map(|d| (d.features, d.prediction))
                .collect();
            let report = assess(&name, &version, &baseline, &rows, threshold);
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_drift(&report, threshold);
            }
        }
    }
    Ok(())
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

/// `off` → `None`; otherwise the version, which must exist.
fn optional_version(
    catalog: &DirCatalog,
    name: &str,
    version: &str,
) -> anyhow::Result<Option<String>> {
    if version == "off" {
        return Ok(None);
    }
    require_version(catalog, name, version)?;
    Ok(Some(version.to_string()))
}

fn require_version(catalog: &DirCatalog, name: &str, version: &str) -> anyhow::Result<()> {
    let known = catalog
        .models()
        .into_iter()
        .find(|m| m.name == name)
        .with_context(|| format!("no model named {name}"))?;
    if !known.versions.iter().any(|v| v == version) {
        bail!(
            "{name} has no version {version} (has {})",
            known.versions.join(", ")
        );
    }
    // The version must also be servable: its spec has to parse.
    catalog
        .spec(name, Some(version), Default::default())
        .map_err(|e| anyhow::anyhow!("{name} {version}: {}", e.message))?;
    Ok(())
}

fn parse_weight(catalog: &DirCatalog, name: &str, pair: &str) -> anyhow::Result<Weighted> {
    let (version, weight) = pair
        .split_once('=')
        .with_context(|| format!("'{pair}' is not version=weight"))?;
    require_version(catalog, name, version)?;
    Ok(Weighted {
        version: version.to_string(),
        weight: weight
            .parse()
            .with_context(|| format!("weight in '{pair}'"))?,
    })
}

/// Reads, changes and atomically replaces a model's routing file.
fn update(
    catalog: &DirCatalog,
    name: &str,
    change: impl FnOnce(&mut Routing),
) -> anyhow::Result<()> {
    let path = catalog.routing_path(name);
    let mut routing = catalog.routing(name);
    change(&mut routing);
    // Every request sees the old routing or the new one, never a mix.
    crate::atomic_file::replace(&path, &serde_json::to_vec(&routing)?)
}
