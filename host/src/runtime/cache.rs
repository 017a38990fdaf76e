//! On-disk cache of compiled components, keyed by the component's content hash and the engine's
//! compatibility hash (wasmtime version, target, settings): a restart deserializes instead of
//! compiling.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

/// Whether a component came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Deserialized from a cached compilation.
    Hit,
    /// Compiled now (and stored for next time).
    Compiled,
}

/// Loads `wasm` compiled for `engine`, from `cache_dir` when possible.
pub fn load_component(
    engine: &Engine,
    wasm: &Path,
    cache_dir: &Path,
) -> anyhow::Result<(Component, CacheOutcome)> {
    let bytes = std::fs::read(wasm).with_context(|| format!("reading {}", wasm.display()))?;
    let path = cache_path(engine, &bytes, cache_dir);
    if path.is_file() {
        // SAFETY: the file was written by `precompile_component` of an engine with the same
        // compatibility hash (it is in the file name), and the cache directory is Ember's own.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => return Ok((component, CacheOutcome::Hit)),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring unusable cached component")
            }
        }
    }
    let compiled = engine.precompile_component(&bytes)?;
    std::fs::create_dir_all(cache_dir)
        .with_context(|| format!("creating {}", cache_dir.display()))?;
    // A private temporary name, then an atomic rename: concurrent starts never see (or mmap) a
    // file that another process is still writing.
    let partial = path.with_extension(format!("{}.partial", std::process::id()));
    std::fs::write(&partial, &compiled)?;
    std::fs::rename(&partial, &path)?;
    // SAFETY: these bytes were just produced by `precompile_component` on this engine.
    let component = unsafe { Component::deserialize(engine, &compiled) }?;
    Ok((component, CacheOutcome::Compiled))
}

fn cache_path(engine: &Engine, wasm: &[u8], cache_dir: &Path) -> PathBuf {
    let mut hasher = Sha256Hasher(Sha256::new());
    hasher.0.update(wasm);
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let digest = hasher.0.finalize();
    let key: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    cache_dir.join(format!("{key}.cwasm"))
}

/// Feeds `Hash` implementations into SHA-256.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        unreachable!("only the SHA-256 digest is read")
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}
