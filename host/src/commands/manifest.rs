//! `ember manifest`: checks a spin.toml against Spin's rules and Ember's and shows what Ember
//! serves from it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::ensure;

use crate::manifest::{Manifest, SpinRoute, DEFAULT_MANIFEST};

/// Options of `ember manifest`.
#[derive(clap::Args, Debug, Clone)]
pub struct ManifestArgs {
    /// The manifest to check.
    #[arg(long, default_value = DEFAULT_MANIFEST)]
    pub manifest: PathBuf,
}

/// `ember manifest`: checks a manifest against Spin's rules and Ember's, prints what Ember would
/// serve (JSON) and fails if a file it references is missing (run after the build).
pub fn run(args: ManifestArgs) -> anyhow::Result<()> {
    let manifest = Manifest::load(&args.manifest)?;
    let function = manifest.http_function()?;
    let files: Vec<(PathBuf, bool)> = manifest
        .referenced_files()?
        .into_iter()
        .map(|path| {
            let exists = path.exists();
            (path, exists)
        })
        .collect();
    let component = &manifest.component[&function.id];
    let report = serde_json::json!({
        "application": {
            "name": manifest.application.name,
            "version": manifest.application.version,
            "description": manifest.application.description,
        },
        "component": function.id,
        "description": component.description,
        "build": component.build.as_ref().map(|b| b.command.clone()),
        "source": function.source,
        "wasi_nn_source": function.wasi_nn_source,
        "models": function.models,
        "routes": function.routes.iter().map(SpinRoute::to_string).collect::<Vec<_>>(),
        "environment": function
            .env
            .iter()
            .map(|(k, v)| (k.clone(), if manifest.is_secret(component, k) { "<secret>".to_string() } else { v.clone() }))
            .collect::<BTreeMap<_, _>>(),
        "files": files.iter().map(|(path, exists)| serde_json::json!({"path": path, "exists": exists})).collect::<Vec<_>>(),
        "static_sites": manifest.static_sites()?.iter().map(|site| serde_json::json!({
            "component": site.id,
            "route": site.route.to_string(),
            "mounts": site.mounts.iter().map(|(dir, destination)| serde_json::json!({"source": dir, "destination": destination})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    let missing: Vec<String> = files
        .iter()
        .filter(|(_, exists)| !exists)
        .map(|(path, _)| path.display().to_string())
        .collect();
    ensure!(
        missing.is_empty(),
        "missing (build first: `spin build` or `cargo run --release --bin ember -- preinit`): {}",
        missing.join(", ")
    );
    Ok(())
}
