//! `ember models list | promote | rollback | split`: version routing, written atomically to
//! `models/<name>/routing.json`. The function reads it on every request, so a change applies to
//! the next request with no restart and no failed request.

use std::path::PathBuf;

use anyhow::{bail, Context as _};
use ember_function::catalog::{Catalog, DirCatalog};
use ember_function::routing::{Routing, Weighted};

/// Options of `ember models`.
#[derive(clap::Args, Debug, Clone)]
pub struct ModelsArgs {
    /// Models directory.
    #[arg(long, default_value = "models", global = true)]
    pub models: PathBuf,
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
    }
    Ok(())
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
    let partial = path.with_extension(format!("json.{}.partial", std::process::id()));
    std::fs::write(&partial, serde_json::to_vec(&routing)?)
        .with_context(|| format!("writing {}", partial.display()))?;
    // rename(2) is atomic: every request sees the old routing or the new one, never a mix.
    std::fs::rename(&partial, &path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}
