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

/// Asserts that `run` gives every reference case of `model` `version` (its first output) within
/// `tolerance` of onnxruntime's: the backends' shared check against `reference.json`.
#[cfg(test)]
pub(crate) fn assert_matches_reference(
    model: &str,
    version: &str,
    tolerance: f32,
    mut run: impl FnMut(
        wasmtime_wasi_nn::backend::NamedTensor,
    ) -> Vec<wasmtime_wasi_nn::backend::NamedTensor>,
) {
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    let reference = ember_contract::reference::Reference::read(&models, model, version).unwrap();
    let floats = |t: &wasmtime_wasi_nn::Tensor| -> Vec<f32> {
        t.data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    };
    for case in &reference.cases {
        let outputs = run(reference_tensor(&case.inputs[0]));
        let expected = reference_tensor(&case.outputs[0]).tensor;
        assert_eq!(outputs[0].name, case.outputs[0].name);
        assert_eq!(outputs[0].tensor.dimensions, expected.dimensions);
        for (a, e) in floats(&outputs[0].tensor).iter().zip(floats(&expected)) {
            assert!(
                (a - e).abs() <= tolerance,
                "{model} v{version} {}: {a} vs {e}",
                case.name
            );
        }
    }
}
