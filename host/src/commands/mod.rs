//! Ember's command line: one file per command, each a thin layer over the capability modules.

pub mod audit;
pub mod bench;
pub mod feedback;
pub mod keys;
pub mod manifest;
pub mod models;
pub mod preinit;
pub mod up;
pub mod usage;

use clap::{Parser, Subcommand};

/// Ember's command line.
#[derive(Parser)]
#[command(
    name = "ember",
    version,
    about = "Run a model as a serverless WebAssembly function"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the function and the bundled models over HTTP.
    Up(Box<up::UpArgs>),
    /// Measure native inference, end-to-end latency, throughput and cold start.
    Bench(bench::BenchArgs),
    /// Summarize the usage ledger: counts, errors, cost, latency percentiles.
    Usage(usage::UsageArgs),
    /// Model versions: list, promote, rollback, split, shadow, fallback, drift, quality, rollout.
    Models(models::ModelsArgs),
    /// Everything recorded about one invocation: usage, input digest, output, model version.
    Audit(audit::AuditArgs),
    /// Record the true outcomes of past invocations from a CSV or JSON Lines file.
    Feedback(feedback::FeedbackArgs),
    /// API keys: create, list, revoke, rotate (for `ember up --auth keys`).
    Keys(keys::KeysArgs),
    /// Check a spin.toml and show what Ember serves from it.
    Manifest(manifest::ManifestArgs),
    /// Pre-initialize the embedded function with the models (for Spin and `wasmtime serve`).
    Preinit(preinit::PreinitArgs),
}

impl Cli {
    /// Runs the parsed command.
    pub fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Up(args) => up::run(*args),
            Command::Bench(args) => bench::run(args),
            Command::Usage(args) => usage::run(args),
            Command::Models(args) => models::run(args),
            Command::Audit(args) => audit::run(args),
            Command::Feedback(args) => feedback::run(args),
            Command::Preinit(args) => preinit::run(args),
            Command::Manifest(args) => manifest::run(args),
            Command::Keys(args) => keys::run(args),
        }
    }
}
