//! `ember preinit`: pre-initializes the embedded function with the models (for Spin and `wasmtime
//! serve`), see [`crate::preinit`].

use std::path::PathBuf;

use crate::nn::registry::DEFAULT_MODELS_DIR;
use crate::preinit::{write_preinitialized, DEFAULT_OUTPUT};

/// Options of `ember preinit`.
#[derive(clap::Args, Debug, Clone)]
pub struct PreinitArgs {
    /// The embedded function as built (tract inside, exporting `wizer-initialize`).
    #[arg(long, default_value = env!("EMBER_EMBEDDED_WASM"))]
    pub component: PathBuf,
    /// Models directory loaded into the snapshot (mounted at `/models` during initialization).
    #[arg(long, default_value = DEFAULT_MODELS_DIR)]
    pub models: PathBuf,
    /// Where the pre-initialized component is written.
    #[arg(long, default_value = DEFAULT_OUTPUT)]
    pub out: PathBuf,
}

/// Runs `ember preinit`.
pub fn run(args: PreinitArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    write_preinitialized(&args.component, &args.models, &args.out)?;
    tracing::info!(
        out = %args.out.display(),
        ms = started.elapsed().as_millis() as u64,
        "pre-initialized"
    );
    Ok(())
}
