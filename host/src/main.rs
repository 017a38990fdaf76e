//! `ember`: run a model as a serverless WebAssembly function.

mod atomic_file;
mod audit;
mod bench;
mod drift;
mod manifest;
mod metering;
mod models;
mod nn;
mod preinit;
mod runtime;
mod server;
mod static_files;
mod stats;
mod up;

use clap::{Parser, Subcommand};

/// Ember's command line.
#[derive(Parser)]
#[command(
    name = "ember",
    version,
    about = "Run a model as a serverless WebAssembly function"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the function and the bundled models over HTTP.
    Up(up::UpArgs),
    /// Measure native inference, end-to-end latency, throughput and cold start.
    Bench(bench::BenchArgs),
    /// Summarize the usage ledger: counts, errors, cost, latency percentiles.
    Usage(metering::usage::UsageArgs),
    /// Model versions: list, promote, rollback, split, shadow, fallback, drift.
    Models(models::ModelsArgs),
    /// Everything recorded about one invocation: usage, input digest, output, model version.
    Audit(audit::AuditArgs),
    /// Check a spin.toml and show what Ember serves from it.
    Manifest(manifest::ManifestArgs),
    /// Pre-initialize the embedded function with the models (for Spin and `wasmtime serve`).
    Preinit(preinit::PreinitArgs),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EMBER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match Cli::parse().command {
        Command::Up(args) => up::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Usage(args) => metering::usage::run(args),
        Command::Models(args) => models::run(args),
        Command::Audit(args) => audit::run(args),
        Command::Preinit(args) => preinit::run(args),
        Command::Manifest(args) => manifest::run(args),
    }
}
