//! `ember up`: load the function, then serve HTTP; graphs load on first use and unload when idle,
//! and the process can exit when idle (scale to zero).

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use ember_contract::names::{DEFAULT_MODEL, DEFAULT_MODEL_ENV};
use ember_function::catalog::DirCatalog;

use crate::front::manage::{Management, StateOwner};
use crate::front::operator;
use crate::front::router::Router;
use crate::front::static_files::StaticSite;
use crate::front::tls::TlsArgs;
use crate::front::{Front, IdleClock};
use crate::manifest::{Manifest, SpinRoute, DEFAULT_MANIFEST};
use crate::metering::meter::MeteringArgs;
use crate::nn::registry::{GraphStore, DEFAULT_MODELS_DIR};
use crate::nn::{Backends, NnArgs};
use crate::outcomes::{Outcomes, OutcomesArgs};
use crate::preinit::{self, InGuestBuild};
use crate::runtime::{Runtime, RuntimeArgs, RuntimeConfig};
use crate::spin::{SpinGrants, SpinHost};
use crate::tenants::{AuthMode, TenantArgs};
use ember_contract::manage::ADMIN_TOKEN_VARIABLE;

/// Options of `ember up`.
#[derive(clap::Args, Debug, Clone)]
pub struct UpArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,
    /// The application manifest (Spin's `spin.toml`): component, models mount, environment,
    /// variables and routes. Default: `spin.toml` when the current directory has one.
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// Which build of the function to serve: `wasi-nn` (the host runs inference), `spin` (the
    /// manifest's `source`: tract inside the guest and Spin's APIs, as deployed on Spin) or
    /// `embedded` (tract inside, WASI only, as on `wasmtime serve`); the last two are
    /// pre-initialized with the models when stale.
    #[arg(long, value_enum, default_value_t = Variant::WasiNn)]
    pub variant: Variant,
    /// Where Spin's APIs keep their data on this host (the key-value store, SQLite databases).
    #[arg(long, default_value = crate::spin::DEFAULT_STATE_DIR)]
    pub spin_state: PathBuf,
    /// Models directory (`<name>/<version>/model.{toml,onnx}`), preopened read-only for the
    /// guest; overrides the manifest's `/models` mount. Default: `models`.
    #[arg(long)]
    pub models: Option<PathBuf>,
    /// The function component to serve; overrides the manifest and `--variant`.
    #[arg(long)]
    pub component: Option<PathBuf>,
    /// The runtime's cache and the sandbox's limits.
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    /// Model served by `POST /predict`. Default: the manifest's `EMBER_DEFAULT_MODEL`, else
    /// `credit-risk`.
    #[arg(long)]
    pub default_model: Option<String>,
    /// Tokio worker threads (default: one per core).
    #[arg(long)]
    pub workers: Option<usize>,
    /// The ledger, prices and whether to meter.
    #[command(flatten)]
    pub metering: MeteringArgs,
    /// Exit cleanly after this many seconds without requests (scale to zero).
    #[arg(long)]
    pub idle_exit: Option<f64>,
    /// When graphs load and unload.
    #[command(flatten)]
    pub nn: NnArgs,
    /// The operator page served at `/-/`: a directory with `page/` and uPlot's npm package
    /// (scripts/setup installs it).
    #[arg(long, default_value_os_t = operator::default_page_dir())]
    pub operator_page: PathBuf,
    /// API keys, the admin token and the concurrency cap.
    #[command(flatten)]
    pub tenants: TenantArgs,
    /// HTTPS.
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Alerts and rollouts.
    #[command(flatten)]
    pub outcomes: OutcomesArgs,
}

/// Starts the server and runs until interrupted.
pub fn run(args: UpArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    // ONNX Runtime's library loads while the rest starts up; `serve` waits for it before "ready".
    let backends = Arc::new(args.nn.load_backends());
    // Resolved before the server's runtime starts: pre-initializing runs a runtime of its own.
    let function = ServedFunction::resolve(&args)?;
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = args.workers {
        runtime.worker_threads(workers);
    }
    runtime
        .enable_all()
        .build()?
        .block_on(serve(args, function, backends, started))
}

async fn serve(
    args: UpArgs,
    function: ServedFunction,
    backends: Arc<Backends>,
    started: Instant,
) -> anyhow::Result<()> {
    let graphs = Arc::new(GraphStore::new(
        DirCatalog::new(&function.models),
        Box::new(backends.clone()),
    ));
    if args.nn.preload {
        graphs
            .load_all()
            .with_context(|| format!("loading models from {}", function.models.display()))?;
    }
    let config = RuntimeConfig {
        component: function.runnable.clone(),
        limits: args.runtime.clone(),
        env: function.env.clone(),
        fuel: args.metering.enabled(),
        spin: Arc::new(SpinHost::new(
            function.spin.clone(),
            args.spin_state.clone(),
        )),
    };
    let runtime = Runtime::new(config, graphs.clone())?;
    let mut meter = args
        .metering
        .meter(&function.name(), graphs.catalog().root())?;
    let outcomes = args
        .metering
        .enabled()
        .then(|| {
            args.outcomes.outcomes(
                &args.metering.ledger.path,
                graphs.catalog().clone(),
                &mut meter.metrics,
            )
        })
        .transpose()?
        .map(Arc::new);
    // After the meter: it creates and migrates the ledger the keys live in.
    let gate = args.tenants.gate(
        &args.metering.ledger.path,
        args.metering.enabled(),
        function.auth,
    )?;
    let tls = args.tls.load()?.map(Arc::new);
    let front = Arc::new(Front {
        runtime,
        meter,
        default_model: function.default_model.clone(),
        router: Router::new(&function.routes, function.sites.iter().map(|s| &s.route))?,
        sites: function.sites.clone(),
        operator_page: operator::page_site(&args.operator_page),
        gate,
        outcomes: outcomes.clone(),
        idle: IdleClock::default(),
        management: function.management.clone(),
    });
    // A backend that cannot be had (`--backend ort` without the library) stops the start.
    backends.wait()?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let address = listener.local_addr()?;
    tracing::info!(
        graphs = ?graphs.names(),
        component = %function.component.display(),
        variant = ?args.variant,
        compiled = ?front.runtime.cache,
        metering = args.metering.enabled(),
        keys_required = front.gate.requires_keys(),
        tls = tls.is_some(),
        startup_ms = started.elapsed().as_secs_f64() * 1e3,
        "ready"
    );
    // The first stdout line is the contract with scripts and tests that start `ember up`.
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!("ember listening on {scheme}://{address}");
    std::io::stdout().flush()?;
    let result = tokio::select! {
        result = crate::front::serve(listener, front.clone(), tls.clone()) => result,
        _ = reload_tls(tls.as_deref()) => Ok(()),
        _ = args.nn.unload_idle_graphs(&graphs) => Ok(()),
        _ = front.runtime.expire_idle_instances(args.nn.idle()) => Ok(()),
        _ = watch_outcomes(outcomes, &front) => Ok(()),
        _ = idle_exit(&front, args.idle_exit) => {
            tracing::info!("idle: exiting (scale to zero)");
            Ok(())
        }
        _ = shutdown_signal() => {
            tracing::info!("shutting down");
            Ok(())
        }
    };
    // Dropping the front flushes the ledger's queued records.
    drop(front);
    result
}

/// Checks alerts and rollouts with the front's live drift windows; forever without a ledger.
async fn watch_outcomes(outcomes: Option<Arc<Outcomes>>, front: &Arc<Front>) {
    let Some(outcomes) = outcomes else {
        return std::future::pending().await;
    };
    let front = front.clone();
    outcomes
        .watch(Arc::new(move || front.meter.drift.reports()))
        .await
}

/// Reloads the certificate on SIGHUP when serving HTTPS; without TLS, never resolves (and a
/// SIGHUP keeps its default meaning).
async fn reload_tls(tls: Option<&crate::front::tls::Tls>) {
    match tls {
        Some(tls) => tls.reload_on_hangup().await,
        None => std::future::pending().await,
    }
}

/// The builds of the function.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// Inference through the host's `wasi:nn` (Ember's backends, graphs shared by all instances).
    WasiNn,
    /// The Spin build (spin.toml's `source`): tract inside the guest, pre-initialized with the
    /// models, and Spin's key-value store, SQLite and variables, which this host provides.
    Spin,
    /// tract inside the guest, pre-initialized, importing nothing but WASI.
    Embedded,
}

impl Variant {
    /// The in-guest build this variant serves, if it is one.
    fn in_guest(self) -> Option<InGuestBuild> {
        match self {
            Self::WasiNn => None,
            Self::Spin => Some(InGuestBuild::Spin),
            Self::Embedded => Some(InGuestBuild::Embedded),
        }
    }
}

/// What `ember up` serves, from the flags, the manifest and the built-in defaults (in that order).
struct ServedFunction {
    /// The function's component, as built or named.
    component: PathBuf,
    /// What the runtime loads: the component, or its pre-initialized snapshot.
    runnable: PathBuf,
    models: PathBuf,
    env: Vec<(String, String)>,
    default_model: String,
    routes: Vec<SpinRoute>,
    sites: Vec<StaticSite>,
    /// The manifest's `tool.ember.auth`.
    auth: Option<AuthMode>,
    /// The Spin APIs the manifest grants it.
    spin: SpinGrants,
    /// Who answers the management API: the function itself (the Spin build) or this host.
    management: Management,
}

impl ServedFunction {
    /// The function's name, as the ledger records it: its component's file name.
    fn name(&self) -> String {
        self.component
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    fn resolve(args: &UpArgs) -> anyhow::Result<Self> {
        let manifest = match &args.manifest {
            Some(path) => Some(Manifest::load(path)?),
            None if Path::new(DEFAULT_MANIFEST).is_file() => {
                Some(Manifest::load(Path::new(DEFAULT_MANIFEST))?)
            }
            None => None,
        };
        let function = manifest.as_ref().map(Manifest::http_function).transpose()?;
        let manifest_models = function.as_ref().and_then(|f| f.models.clone());
        let models = args
            .models
            .clone()
            .or_else(|| manifest_models.clone())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_MODELS_DIR));
        let mut sites = manifest
            .as_ref()
            .map(Manifest::static_sites)
            .transpose()?
            .unwrap_or_default();
        // A site mounting the function's models (the demo loads graphs from them) follows `--models`.
        for (dir, _) in sites.iter_mut().flat_map(|s| s.mounts.iter_mut()) {
            if Some(&*dir) == manifest_models.as_ref() {
                dir.clone_from(&models);
            }
        }
        let component = match (&args.component, &function, args.variant) {
            (Some(component), _, _) => component.clone(),
            (None, Some(f), Variant::WasiNn) => {
                f.wasi_nn_source.clone().unwrap_or(f.source.clone())
            }
            (None, Some(f), Variant::Spin) => f.source.clone(),
            (None, None, Variant::WasiNn) => PathBuf::from(env!("EMBER_FUNCTION_WASM")),
            (None, _, variant) => {
                let build = variant.in_guest().expect("only wasi-nn is not in-guest");
                build.default_output().to_path_buf()
            }
        };
        let runnable = match (args.variant.in_guest(), &args.component) {
            (Some(build), None) => {
                preinit_if_stale(build, &component, &models)?;
                component.clone()
            }
            // No instance of the wasi-nn build reads a spec or starts its runtime per request.
            (None, None) => {
                preinit::cached_snapshot(&component, &models, &args.runtime.cache_dir)
                    .unwrap_or_else(|error| {
                        tracing::warn!(error = format!("{error:#}"), component = %component.display(), "serving the function without pre-initialization");
                        component.clone()
                    })
            }
            (_, Some(_)) => component.clone(),
        };
        let mut env = function.as_ref().map(|f| f.env.clone()).unwrap_or_default();
        let default_model = args
            .default_model
            .clone()
            .or_else(|| {
                env.iter()
                    .find(|(k, _)| k == DEFAULT_MODEL_ENV)
                    .map(|(_, v)| v.clone())
            })
            .unwrap_or_else(|| DEFAULT_MODEL.to_string());
        env.retain(|(k, _)| k != DEFAULT_MODEL_ENV);
        env.push((DEFAULT_MODEL_ENV.into(), default_model.clone()));
        let spin = function
            .as_ref()
            .map(|f| f.spin.clone())
            .unwrap_or_default();
        // The function checks its `admin_token` variable; this host checks the same one first
        // and, answering for itself, falls back to its own admin token (`--admin-token`).
        let variable = spin
            .variables
            .get(ADMIN_TOKEN_VARIABLE)
            .filter(|t| !t.is_empty())
            .cloned();
        let management = if args.variant == Variant::Spin {
            Management {
                answered_by: StateOwner::Function,
                admin_token: variable,
            }
        } else {
            Management {
                answered_by: StateOwner::Host,
                admin_token: variable.or_else(|| args.tenants.admin_token.clone()),
            }
        };
        Ok(Self {
            auth: function.as_ref().and_then(|f| f.auth),
            spin,
            management,
            component,
            runnable,
            models,
            env,
            default_model,
            routes: function
                .map(|f| f.routes)
                .unwrap_or_else(|| vec![SpinRoute::Prefix(String::new())]),
            sites,
        })
    }
}

/// Pre-initializes an in-guest build into `out` when `out` is missing or older than the build
/// (the snapshot would hold stale code).
fn preinit_if_stale(build: InGuestBuild, out: &Path, models: &Path) -> anyhow::Result<()> {
    let built = build.built();
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let fresh = match (modified(out), modified(built)) {
        (Some(out), Some(built)) => out >= built,
        (Some(_), None) => true,
        (None, _) => false,
    };
    if !fresh {
        let started = Instant::now();
        preinit::write_preinitialized(built, models, out)?;
        tracing::info!(out = %out.display(), build = ?build, ms = started.elapsed().as_millis() as u64, "pre-initialized the function");
    }
    Ok(())
}

/// Resolves once no request has arrived for `seconds` and none is running; never without a limit.
async fn idle_exit(front: &Front, seconds: Option<f64>) {
    let Some(seconds) = seconds else {
        return std::future::pending().await;
    };
    let limit_ms = (seconds * 1e3) as u64;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if front.idle.idle_ms() >= limit_ms && front.runtime.active() == 0 {
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
