//! The graphs a host serves, by `wasi:nn` name (`<model>/<version>`): loaded on first use, shared
//! by every request, evicted after an idle time (scale to zero), reloaded transparently.
//!
//! wasmtime-wasi-nn's `InMemoryRegistry` loads eagerly and can't be shared, so each request gets a
//! [`RequestGraphs`]: a view of the shared [`GraphStore`] that wraps what it hands out in the
//! request's inference meter.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use elsa::sync::FrozenMap;
use ember_contract::ModelVersion;
use ember_function::catalog::{is_valid_name, is_valid_version, Catalog, DirCatalog};
use wasmtime_wasi_nn::wit::WasiNnCtx;
use wasmtime_wasi_nn::{Graph, GraphRegistry, Registry};

use super::metered::{InferenceMeter, MeteredGraph};
use super::{GraphLoader, LoadedGraph};

/// The models directory commands use unless told otherwise (the repository's bundled models).
pub const DEFAULT_MODELS_DIR: &str = "models";

/// Every servable model version, loaded lazily; versions added to the models directory while
/// serving are found on first use.
pub struct GraphStore {
    loader: Box<dyn GraphLoader>,
    catalog: DirCatalog,
    entries: RwLock<BTreeMap<String, Arc<Entry>>>,
}

struct Entry {
    dir: PathBuf,
    slot: Mutex<Slot>,
}

#[derive(Default)]
struct Slot {
    loaded: Option<LoadedGraph>,
    last_used: Option<Instant>,
}

impl GraphStore {
    /// The models directory the graphs come from: the one every other capability reads models
    /// from (the guest's preopen, routing of timeouts, drift baselines).
    pub fn catalog(&self) -> &DirCatalog {
        &self.catalog
    }

    /// Indexes every version in the catalog; nothing is loaded yet.
    pub fn new(catalog: DirCatalog, loader: Box<dyn GraphLoader>) -> Self {
        let store = Self {
            loader,
            catalog,
            entries: RwLock::default(),
        };
        for model in store.catalog.models() {
            for version in &model.versions {
                store.entry(&format!("{}/{version}", model.name));
            }
        }
        store
    }

    /// Names of every known graph, sorted.
    pub fn names(&self) -> Vec<String> {
        self.entries.read().unwrap().keys().cloned().collect()
    }

    /// Loads every known graph now (checks a deployment at start; the warm path for benchmarks).
    pub fn load_all(&self) -> anyhow::Result<()> {
        self.names()
            .iter()
            .try_for_each(|name| self.checkout(name).map(drop))
    }

    /// How many graphs are resident.
    pub fn loaded_count(&self) -> usize {
        self.entries
            .read()
            .unwrap()
            .values()
            .filter(|e| e.slot.lock().unwrap().loaded.is_some())
            .count()
    }

    /// Drops graphs unused for `idle`; in-flight requests keep their own references.
    pub fn evict_idle(&self, idle: Duration) -> Vec<String> {
        let mut evicted = Vec::new();
        for (name, entry) in self.entries.read().unwrap().iter() {
            let mut slot = entry.slot.lock().unwrap();
            if slot.loaded.is_some() && slot.last_used.is_some_and(|t| t.elapsed() >= idle) {
                slot.loaded = None;
                evicted.push(name.clone());
            }
        }
        evicted
    }

    /// The entry for `<model>/<version>`, created if that version exists on disk.
    fn entry(&self, name: &str) -> Option<Arc<Entry>> {
        if let Some(entry) = self.entries.read().unwrap().get(name) {
            return Some(entry.clone());
        }
        let graph = ModelVersion::parse(name)?;
        if !is_valid_name(&graph.model) || !is_valid_version(&graph.version) {
            return None;
        }
        let dir = self.catalog.version_path(&graph.model, &graph.version);
        if !dir.join(ember_contract::names::GRAPH_FILE).is_file() {
            return None;
        }
        let mut entries = self.entries.write().unwrap();
        let entry = entries.entry(name.to_string()).or_insert_with(|| {
            Arc::new(Entry {
                dir,
                slot: Mutex::default(),
            })
        });
        Some(entry.clone())
    }

    /// Notes that the graph named `name` was used now (it is not idle).
    fn touch(&self, name: &str) {
        if let Some(entry) = self.entry(name) {
            entry.slot.lock().unwrap().last_used = Some(Instant::now());
        }
    }

    /// The graph named `name`, loading it if needed.
    fn checkout(&self, name: &str) -> anyhow::Result<LoadedGraph> {
        let entry = self
            .entry(name)
            .with_context(|| format!("no model version {name}"))?;
        let mut slot = entry.slot.lock().unwrap();
        slot.last_used = Some(Instant::now());
        if let Some(loaded) = &slot.loaded {
            return Ok(loaded.clone());
        }
        let started = Instant::now();
        let loaded = self.loader.load_dir(&entry.dir)?;
        tracing::info!(
            graph = name,
            load_ms = started.elapsed().as_secs_f64() * 1e3,
            "graph loaded"
        );
        slot.loaded = Some(loaded.clone());
        Ok(loaded)
    }
}

/// One instance's view of the store: graphs it reaches are metered into `meter` (emptied after
/// each request).
pub struct RequestGraphs {
    store: Arc<GraphStore>,
    meter: Arc<InferenceMeter>,
    handed_out: FrozenMap<String, Box<Graph>>,
}

impl RequestGraphs {
    /// A view for one instance.
    pub fn new(store: Arc<GraphStore>, meter: Arc<InferenceMeter>) -> Self {
        Self {
            store,
            meter,
            handed_out: FrozenMap::new(),
        }
    }

    /// A `wasi:nn` context over this view, with no backend to load raw bytes with: the guest
    /// reaches graphs by name only and never parses a model.
    pub fn into_context(self) -> WasiNnCtx {
        WasiNnCtx::new([], Registry::from(self))
    }
}

impl GraphRegistry for RequestGraphs {
    fn get(&self, name: &str) -> Option<&Graph> {
        if let Some(graph) = self.handed_out.get(name) {
            // A warm instance keeps the graph it was handed; it is still in use.
            self.store.touch(name);
            return Some(graph);
        }
        match self.store.checkout(name) {
            Ok(loaded) => Some(self.handed_out.insert(
                name.to_string(),
                Box::new(MeteredGraph::wrap(
                    loaded.graph,
                    loaded.macs_per_row,
                    self.meter.clone(),
                )),
            )),
            Err(error) => {
                tracing::error!(
                    graph = name,
                    error = format!("{error:#}"),
                    "graph unavailable"
                );
                None
            }
        }
    }

    fn get_mut(&mut self, _name: &str) -> Option<&mut Graph> {
        None
    }
}
