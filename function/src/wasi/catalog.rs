//! The catalog an instance reads through: the models directory, with what an instance has already
//! parsed kept for the instance's later requests.
//!
//! Versions are immutable once published, so a version's spec is parsed at most once per instance
//! — or never, when the component was pre-initialized ([`super::lifecycle`]) and the snapshot holds
//! it. `routing.json` changes at any time (`ember models promote | rollback | split` replace it
//! atomically, so every change is a new file): it is parsed again only when the file's identity
//! (the host's device and inode, size, modification time) differs from the last one this instance
//! parsed, so a promotion applies to the next request while an unchanged policy costs one `stat`. Every read of the
//! directory goes through std's file system, so it runs in [`permanent`] (see `super::arena`).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use wasip2::filesystem::preopens::get_directories;
use wasip2::filesystem::types::{Descriptor, PathFlags};

use super::permanent;
use crate::catalog::{is_valid_name, Catalog, DirCatalog, ModelVersions};
use crate::routing::{Pick, Routing};
use crate::spec::ModelSpec;
use crate::text::TextEncoder;
use ember_contract::names::{GUEST_MODELS_DIR, ROUTING_FILE};
use ember_contract::{ApiError, ModelVersion};

/// Parsed specs by graph name.
static SPECS: Mutex<BTreeMap<ModelVersion, ModelSpec>> = Mutex::new(BTreeMap::new());

/// Parsed tokenizers of text models, by graph name.
static ENCODERS: Mutex<BTreeMap<ModelVersion, Arc<TextEncoder>>> = Mutex::new(BTreeMap::new());

/// Parsed routing by model name, with the identity of the file it was parsed from.
static ROUTING: Mutex<BTreeMap<String, (FileIdentity, Routing)>> = Mutex::new(BTreeMap::new());

thread_local! {
    /// The models directory, opened on first use and kept for the instance's later requests.
    static MODELS_DIR: RefCell<Option<Descriptor>> = const { RefCell::new(None) };
}

/// What tells one version of a file from the next: an atomic replacement is a new file (its
/// metadata hash is the host's device and inode), an edit in place changes its size or time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileIdentity {
    hash: (u64, u64),
    len: u64,
    modified: Option<(u64, u32)>,
}

impl FileIdentity {
    /// The identity of `relative` (a path under the models directory), if it exists.
    fn of(relative: &str) -> Option<Self> {
        with_models_dir(|dir| {
            let stat = dir.stat_at(PathFlags::empty(), relative).ok()?;
            let hash = dir.metadata_hash_at(PathFlags::empty(), relative).ok()?;
            Some(Self {
                hash: (hash.lower, hash.upper),
                len: stat.size,
                modified: stat
                    .data_modification_timestamp
                    .map(|t| (t.seconds, t.nanoseconds)),
            })
        })
    }
}

/// Runs `f` on the models directory, opening it on first use.
fn with_models_dir<R>(f: impl FnOnce(&Descriptor) -> Option<R>) -> Option<R> {
    MODELS_DIR.with_borrow_mut(|dir| {
        if dir.is_none() {
            *dir = get_directories()
                .into_iter()
                .find(|(_, path)| path == GUEST_MODELS_DIR)
                .map(|(descriptor, _)| descriptor);
        }
        f(dir.as_ref()?)
    })
}

/// Opens the models directory now rather than on the first request that needs it.
pub fn open_models_dir() {
    with_models_dir(|_| Some(()));
}

/// Closes the models directory this instance opened (a pre-initialized snapshot must not keep it).
pub fn close_models_dir() {
    MODELS_DIR.with_borrow_mut(|dir| *dir = None);
}

fn lock<T>(mutex: &'static Mutex<T>) -> MutexGuard<'static, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The models directory at [`GUEST_MODELS_DIR`], through this instance's caches.
pub struct InstanceCatalog(DirCatalog);

impl Default for InstanceCatalog {
    fn default() -> Self {
        Self(DirCatalog::new(GUEST_MODELS_DIR))
    }
}

impl InstanceCatalog {
    /// Parses every published version's spec (and a text model's tokenizer) and every model's
    /// routing into the caches (run by pre-initialization); returns the specs, so the embedded
    /// build can load their graphs too.
    pub fn load_all(&self) -> Vec<ModelSpec> {
        let mut loaded = Vec::new();
        for listed in self.0.models() {
            let _ = self.routing(&listed.name);
            for version in &listed.versions {
                // A version that fails here answers 503 `model_not_ready` when asked for.
                if let Ok(spec) = self.cached_spec(&listed.name, version) {
                    // The embedded build leaves out versions that opt out of it.
                    if spec.text.is_some() && (spec.embedded || cfg!(not(feature = "embedded"))) {
                        let _ = self.text_encoder(&spec);
                    }
                    loaded.push(spec);
                }
            }
        }
        loaded
    }

    fn cached_spec(&self, name: &str, version: &str) -> Result<ModelSpec, ApiError> {
        if let Some(spec) = lock(&SPECS).get(&ModelVersion::new(name, version)) {
            return Ok(spec.clone());
        }
        // The key and the spec outlive the request: both are made outside its arena.
        permanent(|| {
            let spec = self.0.read_spec(name, version)?;
            lock(&SPECS).insert(ModelVersion::new(name, version), spec);
            Ok::<_, ApiError>(())
        })?;
        Ok(lock(&SPECS)[&ModelVersion::new(name, version)].clone())
    }
}

impl Catalog for InstanceCatalog {
    fn spec_routed(
        &self,
        name: &str,
        version: Option<&str>,
        routing: &Routing,
        pick: Pick,
    ) -> Result<ModelSpec, ApiError> {
        // Resolving may list the model's versions.
        let version = permanent(|| self.0.resolve_version(name, version, routing, pick))?;
        self.cached_spec(name, &version)
    }

    fn models(&self) -> Vec<ModelVersions> {
        permanent(|| self.0.models())
    }

    fn text_encoder(&self, spec: &ModelSpec) -> Result<Arc<TextEncoder>, ApiError> {
        let name = spec.model_version();
        if let Some(encoder) = lock(&ENCODERS).get(&name) {
            return Ok(encoder.clone());
        }
        // Parsed once per instance (or at pre-initialization), outside the request arena.
        permanent(|| {
            let encoder = Arc::new(self.0.read_text_encoder(spec)?);
            lock(&ENCODERS).insert(name, encoder.clone());
            Ok(encoder)
        })
    }

    fn routing(&self, name: &str) -> Routing {
        if !is_valid_name(name) {
            return Routing::default();
        }
        // On Spin, a policy set through the management API outranks the packaged file.
        #[cfg(feature = "spin")]
        if let Some(routing) = super::spin::stored_routing(name) {
            return routing;
        }
        let Some(identity) = FileIdentity::of(&format!("{name}/{ROUTING_FILE}")) else {
            // No file: the default policy, and nothing to remember.
            permanent(|| lock(&ROUTING).remove(name));
            return Routing::default();
        };
        if let Some((seen, routing)) = lock(&ROUTING).get(name) {
            if *seen == identity {
                return routing.clone();
            }
        }
        permanent(|| {
            let routing = self.0.routing(name);
            lock(&ROUTING).insert(name.to_string(), (identity, routing.clone()));
            routing
        })
    }
}
