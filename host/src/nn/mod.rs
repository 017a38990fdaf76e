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

/// An FP32 tensor in KServe v2 JSON form (`name`, `shape`, flat `data`), as the models' reference
/// cases store them, converted for a backend.
pub fn fp32_tensor_from_json(
    value: &serde_json::Value,
) -> anyhow::Result<wasmtime_wasi_nn::backend::NamedTensor> {
    use anyhow::Context as _;
    let dims = value["shape"]
        .as_array()
        .context("shape")?
        .iter()
        .map(|d| d.as_u64().map(|d| d as u32).context("dimension"))
        .collect::<anyhow::Result<_>>()?;
    let data = value["data"]
        .as_array()
        .context("data")?
        .iter()
        .map(|v| {
            v.as_f64()
                .map(|x| (x as f32).to_le_bytes())
                .context("number")
        })
        .collect::<anyhow::Result<Vec<_>>>()?
        .concat();
    Ok(wasmtime_wasi_nn::backend::NamedTensor {
        name: value["name"].as_str().context("name")?.to_string(),
        tensor: wasmtime_wasi_nn::Tensor::new(dims, wasmtime_wasi_nn::wit::TensorType::Fp32, data),
    })
}
