//! The graphs a host serves, loaded once by name (`<model>/<version>`) and shared by every request.
//!
//! wasmtime-wasi-nn's `InMemoryRegistry` can't be cloned, so each request gets a [`SharedGraphs`]
//! handle — one reference count — inside a fresh `WasiNnCtx`.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context as _;
use ember_function::catalog::{Catalog, DirCatalog};
use wasmtime_wasi_nn::backend::BackendFromDir;
use wasmtime_wasi_nn::wit::{ExecutionTarget, WasiNnCtx};
use wasmtime_wasi_nn::{Graph, GraphRegistry, Registry};

/// Every model version's graph, by `wasi:nn` name.
#[derive(Clone, Default)]
pub struct SharedGraphs(Arc<BTreeMap<String, Graph>>);

impl SharedGraphs {
    /// Loads every version in the catalog with `backend`; a graph that fails to load is an error.
    pub fn load(catalog: &DirCatalog, backend: &mut dyn BackendFromDir) -> anyhow::Result<Self> {
        let mut graphs = BTreeMap::new();
        for model in catalog.models() {
            for version in &model.versions {
                let spec = catalog
                    .spec(&model.name, Some(version))
                    .map_err(|e| anyhow::anyhow!("{}/{version}: {}", model.name, e.message))?;
                let dir = catalog.version_path(&model.name, version);
                let graph = backend
                    .load_from_dir(&dir, ExecutionTarget::Cpu)
                    .with_context(|| format!("loading {}", dir.display()))?;
                graphs.insert(spec.graph_name(), graph);
            }
        }
        Ok(Self(Arc::new(graphs)))
    }

    /// Names of the loaded graphs, sorted.
    pub fn names(&self) -> Vec<String> {
        self.0.keys().cloned().collect()
    }

    /// A `wasi:nn` context for one request: the shared graphs by name, and no backend to load
    /// raw bytes with (the guest never parses a model).
    pub fn context(&self) -> WasiNnCtx {
        WasiNnCtx::new([], Registry::from(self.clone()))
    }
}

impl GraphRegistry for SharedGraphs {
    fn get(&self, name: &str) -> Option<&Graph> {
        self.0.get(name)
    }

    fn get_mut(&mut self, _name: &str) -> Option<&mut Graph> {
        None
    }
}
