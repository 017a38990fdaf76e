//! The ONNX Runtime backend for `wasi:nn`: the `ort` crate over ONNX Runtime's CPU library, loaded
//! at start from the PyPI wheel's `libonnxruntime.so` (`scripts/fetch-onnxruntime`; never a
//! download at build or run time).
//!
//! A graph is loaded once, as a pool of sessions — one per core, each running its operators on
//! one thread — so concurrent requests on the same graph run side by side instead of queueing
//! behind one lock (an `ort` session runs one request at a time). Its cost (MACs per batch row)
//! comes from tract's per-op cost model when tract can read the graph.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use anyhow::Context as _;
use ember_contract::names::GRAPH_FILE;
use ember_function::tract::TractModel;
use ort::environment::Environment;
use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, PrimitiveTensorElementType, Tensor as OrtTensor, TensorElementType};
use wasmtime_wasi_nn::backend::{BackendError, BackendGraph, NamedTensor};
use wasmtime_wasi_nn::wit::TensorType;
use wasmtime_wasi_nn::{Graph, Tensor};

use super::context::{invalid, NamedGraph, SharedGraph};
use super::{GraphLoader, LoadedGraph};

/// The ONNX Runtime version `scripts/fetch-onnxruntime` installs (the `ort` crate's `api-31`).
pub const VERSION: &str = "1.31.1";

/// Where `scripts/fetch-onnxruntime` puts the library: `$EMBER_ORT_DIR/<version>/`, by default
/// under `~/.cache/ember/onnxruntime`.
pub fn default_library() -> Option<PathBuf> {
    let dir = match std::env::var_os("EMBER_ORT_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?
            .join("ember/onnxruntime"),
    };
    Some(dir.join(VERSION).join("libonnxruntime.so"))
}

/// Loads ONNX graphs with ONNX Runtime.
pub struct OrtBackend {
    environment: Environment,
    sessions_per_graph: usize,
}

/// The process's ONNX Runtime environment: ONNX Runtime allows one per process, and its library
/// is loaded once.
static ENVIRONMENT: Mutex<Option<Environment>> = Mutex::new(None);

impl OrtBackend {
    /// Loads ONNX Runtime from `library` (the first library a process loads is the one it uses).
    pub fn load(library: &Path) -> anyhow::Result<Self> {
        let mut shared = ENVIRONMENT.lock().unwrap_or_else(PoisonError::into_inner);
        let environment = match &*shared {
            Some(environment) => environment.clone(),
            None => {
                let environment = ort::init_from(library)
                    .with_context(|| format!("loading ONNX Runtime from {}", library.display()))?
                    .with_name("ember")
                    .with_telemetry(false)
                    .build()
                    .context("starting ONNX Runtime")?;
                shared.insert(environment).clone()
            }
        };
        Ok(Self {
            environment,
            sessions_per_graph: std::thread::available_parallelism().map_or(1, |n| n.get()),
        })
    }
}

impl OrtBackend {
    /// Loads `<dir>/model.onnx` as a pool of sessions; returns it with the graph's MACs per row.
    fn load_pool(&self, dir: &Path) -> anyhow::Result<(SessionPool, u64)> {
        let path = dir.join(GRAPH_FILE);
        let model = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let fold_weights = only_weights_quantized(&model);
        let first = new_session(&self.environment, &model, fold_weights)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let names = |outlets: &[ort::value::Outlet]| -> Vec<String> {
            outlets.iter().map(|o| o.name().to_string()).collect()
        };
        let (inputs, outputs) = (names(first.inputs()), names(first.outputs()));
        let macs_per_row = TractModel::parse(&model)
            .ok()
            .and_then(|model| model.macs_per_row)
            .unwrap_or_else(|| {
                tracing::warn!(path = %path.display(), "graph cost unknown (tract cannot read it); inference MACs are reported as 0");
                0
            });
        // One session now; the others when requests overlap (loading is on a request's path).
        let sessions = std::iter::once(Some(first))
            .chain((1..self.sessions_per_graph).map(|_| None))
            .map(Mutex::new)
            .collect();
        let pool = SessionPool {
            sessions,
            environment: self.environment.clone(),
            model,
            fold_weights,
            next: AtomicUsize::new(0),
            inputs,
            outputs,
        };
        Ok((pool, macs_per_row))
    }
}

/// A session that runs its operators on the calling thread. With `fold_weights`, ONNX Runtime's
/// QDQ handling is off, so the dequantized weights of an int8-weight graph are folded into fp32
/// constants at load instead of being dequantized on every run (EfficientNet-Lite0 v2: 43 → 17 ms
/// in onnxruntime, outputs equal to 1e-7).
fn new_session(
    environment: &Environment,
    model: &[u8],
    fold_weights: bool,
) -> ort::Result<Session> {
    let builder = Session::builder(environment)?
        .with_intra_threads(1)?
        .with_inter_threads(1)?
        .with_intra_op_spinning(false)?;
    let mut builder = if fold_weights {
        builder.with_config_entry("session.disable_quant_qdq", "1")?
    } else {
        builder
    };
    builder.commit_from_memory(model)
}

/// Whether the graph quantizes only constants: `DequantizeLinear` nodes but no `QuantizeLinear`
/// (a statically quantized graph's activations, which ONNX Runtime fuses into int8 kernels and
/// which must keep its QDQ handling on). Dynamic quantization (`DynamicQuantizeLinear`, as in
/// MiniLM) is unaffected either way.
fn only_weights_quantized(model: &[u8]) -> bool {
    use tract_onnx::prelude::Framework as _;
    let Ok(proto) = tract_onnx::onnx().proto_model_for_read(&mut &model[..]) else {
        return false;
    };
    let ops: Vec<&str> = proto
        .graph
        .iter()
        .flat_map(|graph| &graph.node)
        .map(|node| node.op_type.as_str())
        .collect();
    ops.contains(&"DequantizeLinear") && !ops.contains(&"QuantizeLinear")
}

impl GraphLoader for OrtBackend {
    fn load_dir(&self, dir: &Path) -> anyhow::Result<LoadedGraph> {
        let (pool, macs_per_row) = self.load_pool(dir)?;
        Ok(LoadedGraph {
            graph: Graph::from(Box::new(SharedGraph(Arc::new(pool))) as Box<dyn BackendGraph>),
            macs_per_row,
        })
    }
}

/// One graph's sessions (up to one per core, made as requests come to overlap) and its declared
/// input and output names.
struct SessionPool {
    sessions: Vec<Mutex<Option<Session>>>,
    environment: Environment,
    model: Vec<u8>,
    /// Whether sessions fold dequantized weights at load ([`new_session`]).
    fold_weights: bool,
    next: AtomicUsize,
    inputs: Vec<String>,
    outputs: Vec<String>,
}

impl SessionPool {
    /// A free session — the first slot not in use, making its session if it has none yet — else
    /// (all busy) the next slot in turn, waited for.
    fn session(&self) -> Result<MutexGuard<'_, Option<Session>>, BackendError> {
        let mut slot = self.sessions.iter().find_map(|s| s.try_lock().ok());
        let mut slot = match slot.take() {
            Some(free) => free,
            None => {
                let n = self.sessions.len();
                self.sessions[self.next.fetch_add(1, Ordering::Relaxed) % n]
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
            }
        };
        if slot.is_none() {
            *slot = Some(
                new_session(&self.environment, &self.model, self.fold_weights)
                    .map_err(ort_error)?,
            );
        }
        Ok(slot)
    }

    /// Runs the graph on `inputs`; the outputs come in the graph's declared order.
    fn run(&self, inputs: Vec<NamedTensor>) -> Result<Vec<NamedTensor>, BackendError> {
        let values = inputs
            .into_iter()
            .map(|t| Ok((t.name, SessionInputValue::from(to_ort(&t.tensor)?))))
            .collect::<Result<Vec<_>, BackendError>>()?;
        let mut slot = self.session()?;
        let session = slot.as_mut().expect("a slot handed out holds a session");
        let outputs = session.run(values).map_err(ort_error)?;
        self.outputs
            .iter()
            .filter_map(|name| outputs.get(name).map(|value| (name, value)))
            .map(|(name, value)| {
                Ok(NamedTensor {
                    name: name.clone(),
                    tensor: from_ort(value)?,
                })
            })
            .collect()
    }
}

impl NamedGraph for SessionPool {
    fn input_names(&self) -> &[String] {
        &self.inputs
    }

    fn run(&self, inputs: Vec<NamedTensor>) -> Result<Vec<NamedTensor>, BackendError> {
        SessionPool::run(self, inputs)
    }
}

/// An ONNX Runtime tensor holding `tensor`'s elements.
fn to_ort(tensor: &Tensor) -> Result<DynValue, BackendError> {
    let shape: Vec<i64> = tensor.dimensions.iter().map(|d| i64::from(*d)).collect();
    let elements = shape.iter().product::<i64>() as usize;
    // Generic over the conversion (not a `fn` pointer), so it inlines into the copy loop.
    fn typed<T, const N: usize>(
        shape: Vec<i64>,
        data: &[u8],
        elements: usize,
        from_le: impl Fn([u8; N]) -> T,
    ) -> Result<DynValue, BackendError>
    where
        T: PrimitiveTensorElementType + Clone + std::fmt::Debug + 'static,
    {
        if data.len() != elements * N {
            return Err(invalid(format!(
                "tensor data has {} bytes, its shape needs {}",
                data.len(),
                elements * N
            )));
        }
        let values: Vec<T> = data
            .chunks_exact(N)
            .map(|c| from_le(c.try_into().expect("chunks of N bytes")))
            .collect();
        OrtTensor::from_array((shape, values))
            .map(|t| t.into_dyn())
            .map_err(ort_error)
    }
    let data = &tensor.data;
    match tensor.ty {
        TensorType::Fp32 => typed(shape, data, elements, f32::from_le_bytes),
        TensorType::Fp64 => typed(shape, data, elements, f64::from_le_bytes),
        TensorType::I32 => typed(shape, data, elements, i32::from_le_bytes),
        TensorType::I64 => typed(shape, data, elements, i64::from_le_bytes),
        TensorType::U8 => typed(shape, data, elements, u8::from_le_bytes),
        other => Err(BackendError::UnsupportedTensorType(format!("{other:?}"))),
    }
}

/// A `wasi:nn` tensor holding an ONNX Runtime output's elements.
fn from_ort(value: &DynValue) -> Result<Tensor, BackendError> {
    fn typed<T: PrimitiveTensorElementType + Copy, const N: usize>(
        value: &DynValue,
        ty: TensorType,
        to_le: fn(T) -> [u8; N],
    ) -> Result<Tensor, BackendError> {
        let (shape, data) = value.try_extract_tensor::<T>().map_err(ort_error)?;
        let dims = shape.iter().map(|d| *d as u32).collect();
        Ok(Tensor::new(
            dims,
            ty,
            data.iter().flat_map(|x| to_le(*x)).collect(),
        ))
    }
    match value.dtype().tensor_type() {
        Some(TensorElementType::Float32) => typed(value, TensorType::Fp32, f32::to_le_bytes),
        Some(TensorElementType::Float64) => typed(value, TensorType::Fp64, f64::to_le_bytes),
        Some(TensorElementType::Int32) => typed(value, TensorType::I32, i32::to_le_bytes),
        Some(TensorElementType::Int64) => typed(value, TensorType::I64, i64::to_le_bytes),
        Some(TensorElementType::Uint8) => typed(value, TensorType::U8, u8::to_le_bytes),
        other => Err(BackendError::UnsupportedTensorType(format!("{other:?}"))),
    }
}

fn ort_error(error: impl std::fmt::Display) -> BackendError {
    BackendError::BackendAccess(wasmtime::format_err!("onnxruntime: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::{assert_matches_reference, reference_tensor};
    use ember_contract::reference::Reference;

    #[test]
    fn only_graphs_that_quantize_constants_alone_fold_their_weights() {
        let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
        for (graph, folds) in [
            ("efficientnet-lite0/2", true),
            ("minilm/1", true),
            ("efficientnet-lite0/1", false),
            ("credit-risk/1", false),
            ("digits/1", false),
        ] {
            let model = std::fs::read(models.join(graph).join(GRAPH_FILE)).unwrap();
            assert_eq!(only_weights_quantized(&model), folds, "{graph}");
        }
    }

    /// The backend over the library scripts/setup installs; the test says how to get it.
    fn backend() -> OrtBackend {
        let library = default_library().expect("a HOME to find ONNX Runtime in");
        assert!(
            library.is_file(),
            "{} is missing: run scripts/fetch-onnxruntime (scripts/setup does)",
            library.display()
        );
        OrtBackend::load(&library).unwrap()
    }

    #[test]
    fn bundled_models_match_their_onnxruntime_reference_outputs() {
        let backend = backend();
        let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
        for (model, version) in [("credit-risk", "1"), ("credit-risk", "2"), ("digits", "1")] {
            let (pool, macs_per_row) = backend
                .load_pool(&models.join(model).join(version))
                .unwrap();
            assert!(macs_per_row > 0, "{model}: cost from tract's model");
            assert_matches_reference(model, version, 1e-5, |input| pool.run(vec![input]).unwrap());
        }
    }

    #[test]
    fn a_request_runs_while_another_holds_a_session_of_the_same_graph() {
        let mut backend = backend();
        backend.sessions_per_graph = 2;
        let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
        let (pool, _) = backend.load_pool(&models.join("digits/1")).unwrap();
        let reference = Reference::read(&models, "digits", "1").unwrap();
        // One request is inside a session: the next makes and takes another instead of waiting.
        let busy = pool.session().unwrap();
        for _ in 0..3 {
            let input = reference_tensor(&reference.cases[0].inputs[0]);
            assert_eq!(pool.run(vec![input]).unwrap().len(), 1);
        }
        drop(busy);
    }
}
