//! `wasi:nn` for Ember: model backends behind one trait (one file each), the store of graphs the
//! host loads on first use and evicts when idle, and the per-request registry that meters
//! inference.

pub mod metered;
pub mod registry;
pub mod tract;

use std::path::Path;

use wasmtime_wasi_nn::Graph;

/// A model backend: turns a model version's folder into a runnable, shareable graph.
pub trait GraphLoader: Send + Sync {
    /// Loads `<dir>/model.onnx` (or the backend's format) once; the result is shared by requests.
    fn load_dir(&self, dir: &Path) -> anyhow::Result<LoadedGraph>;
}

/// A loaded graph and its deterministic cost figure.
#[derive(Clone)]
pub struct LoadedGraph {
    /// The graph, as `wasi:nn` hands it to guests.
    pub graph: Graph,
    /// Multiply-accumulates for one batch row (from the graph's own op costs).
    pub macs_per_row: u64,
}
