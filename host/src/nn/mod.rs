//! `wasi:nn` for Ember: model backends behind one trait (one file each), the store of graphs the
//! host loads on first use and evicts when idle, and the per-request registry that meters
//! inference.

mod args;
pub mod choice;
pub mod context;
pub mod metered;
pub mod ort;
pub mod registry;
pub mod tract;

use std::path::Path;

pub use self::args::{Backend, Backends, NnArgs};
use ember_contract::reference::ReferenceTensor;
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

/// A reference case's FP32 tensor (`reference.json`), as a backend takes it.
pub fn reference_tensor(tensor: &ReferenceTensor) -> wasmtime_wasi_nn::backend::NamedTensor {
    let dims = tensor.shape.iter().map(|d| *d as u32).collect();
    let data = tensor.data.iter().flat_map(|x| x.to_le_bytes()).collect();
    wasmtime_wasi_nn::backend::NamedTensor {
        name: tensor.name.clone(),
        tensor: wasmtime_wasi_nn::Tensor::new(dims, wasmtime_wasi_nn::wit::TensorType::Fp32, data),
    }
}
