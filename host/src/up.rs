//! `ember up`: load the models and the function, then serve HTTP.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use ember_function::catalog::DirCatalog;

use crate::nn::registry::SharedGraphs;
use crate::nn::tract::TractBackend;
use crate::runtime::{Runtime, RuntimeConfig};

/// Options of `ember up`.
#[derive(clap::Args, Debug, Clone)]
pub struct UpArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,
    /// Models directory (`<name>/<version>/model.{toml,onnx}`), preopened read-only for the guest.
    #[arg(long, default_value = "models")]
    pub models: PathBuf,
    /// The function component to serve.
    #[arg(long, default_value = env!("EMBER_FUNCTION_WASM"))]
    pub component: PathBuf,
    /// Where compiled components are cached between runs.
    #[arg(long, default_value = ".ember/cache")]
    pub cache_dir: PathBuf,
    /// Per-request deadline in milliseconds (504 past it).
    #[arg(long, default_value_t = 5000)]
    pub deadline_ms: u64,
    /// Per-instance linear memory limit in MiB.
    #[arg(long, default_value_t = 256)]
    pub memory_limit_mib: usize,
    /// Instances alive at once.
    #[arg(long, default_value_t = 128)]
    pub max_instances: u32,
    /// Model served by `POST /predict`.
    #[arg(long, default_value = ember_function::app::DEFAULT_MODEL)]
    pub default_model: String,
    /// Tokio worker threads (default: one per core).
    #[arg(long)]
    pub workers: Option<usize>,
}

/// Starts the server and runs until interrupted.
pub fn run(args: UpArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = args.workers {
        runtime.worker_threads(workers);
    }
    runtime.enable_all().build()?.block_on(serve(args, started))
}

async fn serve(args: UpArgs, started: Instant) -> anyhow::Result<()> {
    let catalog = DirCatalog::new(&args.models);
    let graphs = SharedGraphs::load(&catalog, &mut TractBackend)
        .with_context(|| format!("loading models from {}", args.models.display()))?;
    let config = RuntimeConfig {
        component: args.component.clone(),
        models: args.models.clone(),
        cache_dir: args.cache_dir.clone(),
        deadline: Duration::from_millis(args.deadline_ms),
        memory_limit: args.memory_limit_mib * 1024 * 1024,
        max_instances: args.max_instances,
        env: vec![("EMBER_DEFAULT_MODEL".into(), args.default_model.clone())],
    };
    let runtime = Runtime::new(config, graphs.clone())?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let address = listener.local_addr()?;
    tracing::info!(
        models = ?graphs.names(),
        component = %args.component.display(),
        compiled = ?runtime.cache,
        startup_ms = started.elapsed().as_secs_f64() * 1e3,
        "ready"
    );
    // The first stdout line is the contract with scripts and tests that start `ember up`.
    println!("ember listening on http://{address}");
    std::io::stdout().flush()?;
    tokio::select! {
        result = crate::server::serve(listener, Arc::new(runtime)) => result,
        _ = shutdown_signal() => {
            tracing::info!("shutting down");
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
