//! The graph store's options, flattened into `ember up`: which backend runs the graphs, when
//! graphs load and when idle ones unload (scale to zero), and the task that unloads them.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use super::choice::{BackendChoice, Engine};
use super::ort::{self, OrtBackend};
use super::registry::GraphStore;
use super::GraphLoader;

/// Which backend runs the models' graphs.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// ONNX Runtime when its library loads, else tract.
    Auto,
    /// ONNX Runtime (its library must load).
    Ort,
    /// tract: pure Rust, nothing to install.
    Tract,
}

/// When graphs load and unload.
#[derive(clap::Args, Debug, Clone)]
pub struct NnArgs {
    /// Unload a model's graph, and drop warm instances, after this many seconds without use
    /// (reloaded on next use).
    #[arg(long, default_value_t = 300.0)]
    pub idle_unload: f64,
    /// Load every graph at start instead of on first use.
    #[arg(long)]
    pub preload: bool,
    /// The backend that runs the graphs (a version's `model.toml` may name its own).
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    pub backend: Backend,
    /// ONNX Runtime's library (default: where scripts/fetch-onnxruntime puts it).
    #[arg(long, env = "EMBER_ORT_LIBRARY")]
    pub ort_library: Option<PathBuf>,
}

/// The backends, being chosen on a thread of their own until [`Backends::wait`] has them.
pub struct Backends {
    choosing: Mutex<Option<anyhow::Result<JoinHandle<anyhow::Result<BackendChoice>>>>>,
    chosen: OnceLock<Result<BackendChoice, String>>,
}

impl Backends {
    /// The backends, once chosen (waiting for that the first time); the reason they could not be.
    pub fn wait(&self) -> anyhow::Result<&BackendChoice> {
        let chosen = self.chosen.get_or_init(|| {
            let choosing = self
                .choosing
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            match choosing {
                Some(Ok(thread)) => match thread.join() {
                    Ok(chosen) => chosen.map_err(|e| format!("{e:#}")),
                    Err(_) => Err("choosing the inference backend panicked".into()),
                },
                Some(Err(error)) => Err(format!("{error:#}")),
                None => Err("the inference backends were already being waited for".into()),
            }
        });
        chosen.as_ref().map_err(|e| anyhow::anyhow!("{e}"))
    }
}

impl GraphLoader for Arc<Backends> {
    fn load_dir(&self, dir: &std::path::Path) -> anyhow::Result<super::LoadedGraph> {
        self.wait()?.load_dir(dir)
    }
}

impl NnArgs {
    /// Starts choosing the backends on a thread of its own (loading ONNX Runtime's library takes
    /// tens of milliseconds), so the rest of the start-up runs meanwhile; see [`Backends::wait`].
    pub fn load_backends(&self) -> Backends {
        let args = self.clone();
        let choosing = std::thread::Builder::new()
            .name("ember-backends".into())
            .spawn(move || args.choose())
            .map_err(|e| anyhow::anyhow!("starting the backends' loader: {e}"));
        Backends {
            choosing: Mutex::new(Some(choosing)),
            chosen: OnceLock::new(),
        }
    }

    /// The backends `--backend` asks for: ONNX Runtime (for `auto`, if its library loads) and
    /// tract, with the default for versions whose `model.toml` names none. The log says which and
    /// why.
    fn choose(&self) -> anyhow::Result<BackendChoice> {
        if self.backend == Backend::Tract {
            tracing::info!(
                backend = "tract",
                "inference backend: tract (--backend tract)"
            );
            return Ok(BackendChoice {
                ort: None,
                default: Engine::Tract,
            });
        }
        let library = self.ort_library.clone().or_else(ort::default_library);
        let loaded = match &library {
            Some(path) if path.is_file() => OrtBackend::load(path),
            Some(path) => Err(anyhow::anyhow!(
                "{} is missing (scripts/fetch-onnxruntime installs it)",
                path.display()
            )),
            None => Err(anyhow::anyhow!("no HOME to find ONNX Runtime's library in")),
        };
        match (loaded, self.backend) {
            (Ok(backend), _) => {
                let library = library.unwrap_or_default();
                tracing::info!(backend = "ort", library = %library.display(), "inference backend: ONNX Runtime");
                Ok(BackendChoice {
                    ort: Some(backend),
                    default: Engine::Ort,
                })
            }
            (Err(error), Backend::Auto) => {
                tracing::info!(
                    backend = "tract",
                    reason = format!("{error:#}"),
                    "inference backend: tract, as ONNX Runtime is not available"
                );
                Ok(BackendChoice {
                    ort: None,
                    default: Engine::Tract,
                })
            }
            (Err(error), _) => Err(error.context("--backend ort")),
        }
    }

    /// How long a graph (and an instance holding it) may go unused before it is unloaded.
    pub fn idle(&self) -> Duration {
        Duration::from_secs_f64(self.idle_unload)
    }

    /// Unloads graphs idle longer than `--idle-unload`, checking a few times per period; runs
    /// until dropped.
    pub async fn unload_idle_graphs(&self, graphs: &GraphStore) {
        let idle = self.idle();
        let period = (idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(10));
        loop {
            tokio::time::sleep(period).await;
            for graph in graphs.evict_idle(idle) {
                tracing::info!(%graph, "graph unloaded (idle)");
            }
        }
    }
}
