//! In-guest inference: tract runs inside the component, which then imports no `wasi:nn`.
//!
//! Parsing and optimizing a model costs millions of instructions, far more than a request, and
//! every request gets a fresh instance. So the component is pre-initialized (wizer-style, by
//! `ember preinit`): its `wizer-initialize` export loads every model version under `/models` — its
//! spec and its tract plan — and the snapshot of that memory becomes the component's data, so each
//! instance starts with both ready. Routing is still read per request (promotions and rollbacks
//! apply at once). A version added after the snapshot is parsed on first use in each instance:
//! correct, but slow until the component is pre-initialized again. Versions are immutable once
//! published.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::app::Inference;
use crate::catalog::{Catalog, DirCatalog, ModelVersions};
use crate::routing::{Pick, Routing};
use crate::spec::ModelSpec;
use crate::tensor::Tensor;
use crate::tract::TractModel;
use ember_contract::names::{GRAPH_FILE, GUEST_MODELS_DIR};
use ember_contract::ModelVersion;
use ember_contract::{ApiError, Code};

/// Ready models by graph name (`<model>/<version>`); filled by pre-initialization.
static MODELS: Mutex<BTreeMap<ModelVersion, Arc<TractModel>>> = Mutex::new(BTreeMap::new());

/// Parsed specs by graph name; filled by pre-initialization.
static SPECS: Mutex<BTreeMap<ModelVersion, ModelSpec>> = Mutex::new(BTreeMap::new());

/// The models directory, with the specs the snapshot holds already parsed.
pub struct SnapshotCatalog(pub DirCatalog);

impl Catalog for SnapshotCatalog {
    fn spec_routed(
        &self,
        name: &str,
        version: Option<&str>,
        routing: &Routing,
        pick: Pick,
    ) -> Result<ModelSpec, ApiError> {
        let version = self.0.resolve_version(name, version, routing, pick)?;
        let key = ModelVersion::new(name, &version);
        if let Some(spec) = SPECS.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Ok(spec.clone());
        }
        self.0.read_spec(name, &version)
    }

    fn models(&self) -> Vec<ModelVersions> {
        self.0.models()
    }

    fn routing(&self, name: &str) -> Routing {
        self.0.routing(name)
    }
}

/// tract inside the guest, over the models in its memory.
pub struct Embedded;

impl Inference for Embedded {
    fn infer(&self, spec: &ModelSpec, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, ApiError> {
        let model = model(spec)?;
        model
            .run_tensors(inputs)
            .map_err(|_| ApiError::new(Code::InferenceFailed, "inference failed"))
    }
}

/// The ready model for `spec`, parsed now if the snapshot lacks it.
fn model(spec: &ModelSpec) -> Result<Arc<TractModel>, ApiError> {
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

wit_bindgen::generate!({
    inline: "
        package ember:function;
        world preinit {
            /// Loads every model version into memory; run once by the pre-initializer.
            export wizer-initialize: func();
        }
    ",
});

struct Preinit;

export!(Preinit);

impl Guest for Preinit {
    fn wizer_initialize() {
        let catalog = DirCatalog::new(GUEST_MODELS_DIR);
        for listed in catalog.models() {
            for version in &listed.versions {
                // A version that fails to load here answers 503 `model_not_ready` when asked for.
                if let Ok(spec) = catalog.read_spec(&listed.name, version) {
                    let _ = model(&spec);
                    SPECS
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(spec.model_version(), spec);
                }
            }
        }
        // The preopened directory handles belong to this instance: forget them, so instances
        // made from the snapshot open their own on first use.
        unsafe { __wasilibc_reset_preopens() };
    }
}

extern "C" {
    /// wasi-libc's hook for pre-initializers: drops the cached preopen table.
    fn __wasilibc_reset_preopens();
}
