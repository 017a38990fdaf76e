//! In-guest inference: tract runs inside the component, which then imports no `wasi:nn`.
//!
//! Parsing and optimizing a model costs millions of instructions, far more than a request, and
//! hosts such as `wasmtime serve` give every request a fresh instance. So the component is
//! pre-initialized (`ember preinit`, see [`super::lifecycle`]): every model version's tract plan is
//! in the snapshot, and each instance starts with it ready. A version added after the snapshot is
//! parsed on first use in each instance: correct, but slow until the component is pre-initialized
//! again. Versions are immutable once published. A version whose spec says `embedded = false`
//! (a large graph) is neither in the snapshot nor served here.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::app::Inference;
use crate::catalog::DirCatalog;
use crate::spec::ModelSpec;
use crate::tensor::{Tensor, TensorData};
use crate::tract::TractModel;
use ember_contract::names::{GRAPH_FILE, GUEST_MODELS_DIR};
use ember_contract::ModelVersion;
use ember_contract::{ApiError, Code};

/// Ready models by graph name (`<model>/<version>`); filled by pre-initialization.
static MODELS: Mutex<BTreeMap<ModelVersion, Arc<TractModel>>> = Mutex::new(BTreeMap::new());

/// tract inside the guest, over the models in its memory.
pub struct Embedded;

#[cfg(feature = "spin")]
thread_local! {
    /// Time spent in inference since [`take_inference_us`] last read it.
    static INFERENCE_US: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// The µs spent in inference since the last call (the request's, when called once per request).
#[cfg(feature = "spin")]
pub(super) fn take_inference_us() -> u64 {
    INFERENCE_US.take()
}

impl Inference for Embedded {
    fn infer(&self, spec: &ModelSpec, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, ApiError> {
        // The Spin build records inference time with each prediction.
        #[cfg(feature = "spin")]
        let started = std::time::Instant::now();
        let outputs = run(spec, inputs);
        #[cfg(feature = "spin")]
        INFERENCE_US.set(INFERENCE_US.get() + started.elapsed().as_micros() as u64);
        outputs
    }
}

/// Runs `spec`'s model. Outside the request arena: tract keeps thread-local scratch buffers, made
/// on a model's first run, that outlive the request (and a model parsed now is kept).
fn run(spec: &ModelSpec, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, ApiError> {
    super::permanent(|| {
        model(spec)?
            .run_tensors(inputs)
            .map_err(|_| ApiError::new(Code::InferenceFailed, "inference failed"))
    })
}

/// Loads `spec`'s model and runs it once on zeros, so that what tract sets up on a model's first
/// run (its scratch buffers) is in the pre-initialized snapshot rather than in every instance's
/// first request.
pub(super) fn load_and_warm(spec: &ModelSpec) -> Result<(), ApiError> {
    let zeros = spec
        .inputs
        .iter()
        .filter_map(|input| {
            let shape: Vec<usize> = input.shape.iter().map(|d| (*d).max(1) as usize).collect();
            let bytes = vec![0u8; shape.iter().product::<usize>() * input.datatype.size()];
            let data = TensorData::from_le_bytes(input.datatype, &bytes)?;
            Some(Tensor {
                name: input.name.clone(),
                shape,
                data,
            })
        })
        .collect();
    // Untimed: no clock reading may be left in the snapshot, which must be the same bytes on
    // every build.
    run(spec, zeros).map(drop)
}

/// The ready model for `spec`, parsed now if the snapshot lacks it.
fn model(spec: &ModelSpec) -> Result<Arc<TractModel>, ApiError> {
    if !spec.embedded {
        return Err(ApiError::new(
            Code::ModelNotReady,
            format!(
                "model '{}' version {} is not in this build (it runs where wasi-nn does, e.g. `ember up`)",
                spec.name, spec.version
            ),
        ));
    }
    let name = spec.model_version();
    if let Some(model) = MODELS.lock().unwrap_or_else(|p| p.into_inner()).get(&name) {
        return Ok(model.clone());
    }
    let path = DirCatalog::new(GUEST_MODELS_DIR)
        .version_path(&spec.name, &spec.version)
        .join(GRAPH_FILE);
    let model = std::fs::read(path)
        .ok()
        .and_then(|bytes| TractModel::parse(&bytes).ok())
        .map(Arc::new)
        .ok_or_else(|| {
            ApiError::new(
                Code::ModelNotReady,
                format!(
                    "model '{}' version {} could not be loaded",
                    spec.name, spec.version
                ),
            )
        })?;
    MODELS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(name, model.clone());
    Ok(model)
}
