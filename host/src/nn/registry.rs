//! The graphs a host serves, by `wasi:nn` name (`<model>/<version>`): loaded on first use, shared
//! by every request, evicted after an idle time (scale to zero), reloaded transparently.
//!
//! wasmtime-wasi-nn's `InMemoryRegistry` loads eagerly and can't be shared, so each request gets a
//! [`RequestGraphs`]: a view of the shared [`GraphStore`] that wraps what it hands out in the
//! request's inference meter.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use ember_function::catalog::{Catalog, DirCatalog};
use wasmtime_wasi_nn::wit::WasiNnCtx;
use wasmtime_wasi_nn::{Graph, GraphRegistry, Registry};

use super::metered::{InferenceMeter, MeteredGraph};
use super::{GraphLoader, LoadedGraph};

/// Every servable model version, loaded lazily.
pub struct GraphStore {
    loader: Box<dyn GraphLoader>,
    names: Vec<String>,
    entries: Vec<Entry>,
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
    /// Indexes every version in the catalog; nothing is loaded yet.
    pub fn new(catalog: &DirCatalog, loader: Box<dyn GraphLoader>) -> Self {
        let mut versions = BTreeMap::new();
        for model in catalog.models() {
            for version in &model.versions {
                versions.insert(
                    format!("{}/{version}", model.name),
                    catalog.version_path(&model.name, version),
                );
            }
        }
        Self {
            loader,
            names: versions.keys().cloned().collect(),
            entries: versions
                .into_values()
                .map(|dir| Entry {
                    dir,
                    slot: Mutex::default(),
                })
                .collect(),
        }
    }

    /// Names of every servable graph, sorted.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Loads every graph now (checks a deployment at start; also the warm path for benchmarks).
    pub fn load_all(&self) -> anyhow::Result<()> {
        (0..self.entries.len()).try_for_each(|i| self.checkout(i).map(drop))
    }

    /// How many graphs are resident.
    pub fn loaded_count(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| e.slot.lock().unwrap().loaded.is_some())
            .count()
    }

    /// Drops graphs unused for `idle`; in-flight requests keep their own references.
    pub fn evict_idle(&self, idle: Duration) -> Vec<String> {
        let mut evicted = Vec::new();
        for (name, entry) in self.names.iter().zip(&self.entries) {
            let mut slot = entry.slot.lock().unwrap();
            if slot.loaded.is_some() && slot.last_used.is_some_and(|t| t.elapsed() >= idle) {
                slot.loaded = None;
                evicted.push(name.clone());
            }
        }
        evicted
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.names.binary_search_by(|n| n.as_str().cmp(name)).ok()
    }

    /// The graph at `index`, loading it if needed.
    fn checkout(&self, index: usize) -> anyhow::Result<LoadedGraph> {
        let entry = &self.entries[index];
        let mut slot = entry.slot.lock().unwrap();
        slot.last_used = Some(Instant::now());
        if let Some(loaded) = &slot.loaded {
            return Ok(loaded.clone());
        }
        let started = Instant::now();
        let loaded = self.loader.load_dir(&entry.dir)?;
        tracing::info!(
            graph = %self.names[index],
            load_ms = started.elapsed().as_secs_f64() * 1e3,
            "graph loaded"
        );
        slot.loaded = Some(loaded.clone());
        Ok(loaded)
    }
}

/// One request's view of the store: graphs it reaches are metered into `meter`.
pub struct RequestGraphs {
    store: Arc<GraphStore>,
    meter: Arc<InferenceMeter>,
    handed_out: Vec<OnceLock<Graph>>,
}

impl RequestGraphs {
    /// A view for one request.
    pub fn new(store: Arc<GraphStore>, meter: Arc<InferenceMeter>) -> Self {
        let handed_out = (0..store.entries.len()).map(|_| OnceLock::new()).collect();
        Self {
            store,
            meter,
            handed_out,
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
        let index = self.store.index(name)?;
        let cell = &self.handed_out[index];
        if cell.get().is_none() {
            match self.store.checkout(index) {
                Ok(loaded) => {
                    let _ = cell.set(MeteredGraph::wrap(
                        loaded.graph,
                        loaded.macs_per_row,
                        self.meter.clone(),
                    ));
                }
                Err(error) => {
                    tracing::error!(
                        graph = name,
                        error = format!("{error:#}"),
                        "graph failed to load"
                    );
                    return None;
                }
            }
        }
        cell.get()
    }

    fn get_mut(&mut self, _name: &str) -> Option<&mut Graph> {
        None
    }
}
