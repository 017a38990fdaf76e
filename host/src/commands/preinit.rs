//! `ember preinit`: pre-initializes an in-guest build of the function with the models (the Spin
//! build for Spin, the embedded one for `wasmtime serve`), see [`crate::preinit`].

use std::path::PathBuf;

use crate::nn::registry::DEFAULT_MODELS_DIR;
use crate::preinit::{write_preinitialized, InGuestBuild};

/// Options of `ember preinit`.
#[derive(clap::Args, Debug, Clone)]
pub struct PreinitArgs {
    /// Which build: `spin` (spin.toml's `source`) or `embedded` (WASI only).
    #[arg(long, value_enum, default_value_t = InGuestBuild::Spin)]
    pub build: InGuestBuild,
    /// The component as built (tract inside, exporting `wizer-initialize`); default: `--build`'s.
    #[arg(long)]
    pub component: Option<PathBuf>,
    /// Models directory loaded into the snapshot (mounted at `/models` during initialization).
    #[arg(long, default_value = DEFAULT_MODELS_DIR)]
    pub models: PathBuf,
    /// Where the pre-initialized component is written; default: `--build`'s.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Runs `ember preinit`.
pub fn run(args: PreinitArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let component = args.component.as_deref().unwrap_or(args.build.built());
    let out = args.out.as_deref().unwrap_or(args.build.default_output());
    write_preinitialized(component, &args.models, out)?;
    tracing::info!(
        out = %out.display(),
        ms = started.elapsed().as_millis() as u64,
        "pre-initialized"
    );
    Ok(())
}
