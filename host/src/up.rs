//! `ember up`: load the function, then serve HTTP; graphs load on first use and unload when idle,
//! and the process can exit when idle (scale to zero).

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use ember_function::catalog::DirCatalog;

use crate::drift::DriftMonitor;
use crate::metering::ledger::Ledger;
use crate::metering::metrics::Metrics;
use crate::metering::prices::PriceTable;
use crate::nn::registry::GraphStore;
use crate::nn::tract::TractBackend;
use crate::runtime::{Runtime, RuntimeConfig};
use crate::server::Host;

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
    /// The usage ledger (SQLite).
    #[arg(long, default_value = ".ember/usage.db")]
    pub ledger: PathBuf,
    /// Price table (TOML); the built-in one is in README ("Metering").
    #[arg(long)]
    pub prices: Option<PathBuf>,
    /// Serve without metering: no fuel counting, no ledger, no cost headers (for comparison).
    #[arg(long)]
    pub no_metering: bool,
    /// Unload a model's graph after this many seconds without use (reloaded on next use).
    #[arg(long, default_value_t = 300.0)]
    pub idle_unload: f64,
    /// Exit cleanly after this many seconds without requests (scale to zero).
    #[arg(long)]
    pub idle_exit: Option<f64>,
    /// Load every graph at start instead of on first use.
    #[arg(long)]
    pub preload: bool,
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
    let graphs = Arc::new(GraphStore::new(
        DirCatalog::new(&args.models),
        Box::new(TractBackend),
    ));
    if args.preload {
        graphs
            .load_all()
            .with_context(|| format!("loading models from {}", args.models.display()))?;
    }
    let config = RuntimeConfig {
        component: args.component.clone(),
        models: args.models.clone(),
        cache_dir: args.cache_dir.clone(),
        deadline: Duration::from_millis(args.deadline_ms),
        memory_limit: args.memory_limit_mib * 1024 * 1024,
        max_instances: args.max_instances,
        env: vec![("EMBER_DEFAULT_MODEL".into(), args.default_model.clone())],
        fuel: !args.no_metering,
    };
    let runtime = Runtime::new(config, graphs.clone())?;
    let host = Arc::new(Host {
        runtime,
        function: args
            .component
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        ledger: (!args.no_metering)
            .then(|| Ledger::open(&args.ledger))
            .transpose()?,
        prices: args
            .prices
            .as_deref()
            .map(PriceTable::load)
            .transpose()?
            .unwrap_or_default(),
        metrics: Metrics::default(),
        drift: DriftMonitor::new(&args.models),
        catalog: DirCatalog::new(&args.models),
        default_model: args.default_model.clone(),
        last_request_ms: AtomicU64::new(0),
        epoch: Instant::now(),
    });
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let address = listener.local_addr()?;
    tracing::info!(
        graphs = ?graphs.names(),
        component = %args.component.display(),
        compiled = ?host.runtime.cache,
        metering = !args.no_metering,
        startup_ms = started.elapsed().as_secs_f64() * 1e3,
        "ready"
    );
    // The first stdout line is the contract with scripts and tests that start `ember up`.
    println!("ember listening on http://{address}");
    std::io::stdout().flush()?;
    let idle_unload = Duration::from_secs_f64(args.idle_unload);
    let result = tokio::select! {
        result = crate::server::serve(listener, host.clone()) => result,
        _ = unload_idle_graphs(&graphs, idle_unload) => Ok(()),
        _ = idle_exit(&host, args.idle_exit) => {
            tracing::info!("idle: exiting (scale to zero)");
            Ok(())
        }
        _ = shutdown_signal() => {
            tracing::info!("shutting down");
            Ok(())
        }
    };
    // Dropping the host flushes the ledger's queued records.
    drop(host);
    result
}

/// Evicts graphs idle longer than `idle`, forever.
async fn unload_idle_graphs(graphs: &GraphStore, idle: Duration) {
    let period = (idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(10));
    loop {
        tokio::time::sleep(period).await;
        for graph in graphs.evict_idle(idle) {
            tracing::info!(%graph, "graph unloaded (idle)");
        }
    }
}

/// Resolves once no request has arrived for `seconds` and none is running; never without a limit.
async fn idle_exit(host: &Host, seconds: Option<f64>) {
    let Some(seconds) = seconds else {
        return std::future::pending().await;
    };
    let limit_ms = (seconds * 1e3) as u64;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if host.idle_ms() >= limit_ms && host.runtime.active() == 0 {
            return;
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
