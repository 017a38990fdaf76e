//! On-disk cache of compiled components, keyed by the component file's [`FileIdentity`] and the
//! engine's compatibility hash (wasmtime version, target, settings): a restart deserializes
//! instead of compiling, without reading the component. (Hashing the contents instead cost ~9 ms
//! of a ~30 ms cold start for an 11 MB pre-initialized snapshot.) A cache directory copied to
//! another machine therefore starts cold there: the identities differ.

use std::hash::{Hash, Hasher};
use std::os::unix::fs::MetadataExt as _;
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
    let identity = FileIdentity::of(wasm)?;
    let path = cache_path(engine, identity, cache_dir);
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
    let bytes = std::fs::read(wasm).with_context(|| format!("reading {}", wasm.display()))?;
    let compiled = engine.precompile_component(&bytes)?;
    // Stored only if the file did not change while it was read: its key would name other bytes.
    if FileIdentity::of(wasm)? == identity {
        // Concurrent starts never see (or mmap) a file that another process is still writing.
        crate::atomic_file::replace(&path, &compiled)?;
        prune(cache_dir, "cwasm", KEEP_ENTRIES);
    }
    // SAFETY: these bytes were just produced by `precompile_component` on this engine.
    let component = unsafe { Component::deserialize(engine, &compiled) }?;
    Ok((component, CacheOutcome::Compiled))
}

/// Compiled components kept in a cache directory; older ones are deleted (an embedded build's
/// entry is ~66 MB, and every rebuild of a function makes a new one).
const KEEP_ENTRIES: usize = 8;

/// How recently written a cache entry is never deleted: another process sharing the directory may
/// have just made it and not yet read it.
const PRUNE_GRACE: std::time::Duration = std::time::Duration::from_secs(600);

/// Deletes all but the `keep` most recently modified files with `extension` in `dir`, sparing any
/// written in the last [`PRUNE_GRACE`]. Best effort: a file another process still maps stays
/// readable to it on Unix.
pub(crate) fn prune(dir: &Path, extension: &str, keep: usize) {
    let mut entries: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == extension))
        .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
        .collect();
    entries.sort_by_key(|(modified, _)| std::cmp::Reverse(*modified));
    let old =
        |modified: &std::time::SystemTime| modified.elapsed().is_ok_and(|age| age >= PRUNE_GRACE);
    for (_, stale) in entries
        .into_iter()
        .skip(keep)
        .filter(|(modified, _)| old(modified))
    {
        if std::fs::remove_file(&stale).is_ok() {
            tracing::info!(path = %stale.display(), "removed an old cache entry");
        }
    }
}

/// A file as the file system identifies it: device, inode, size, and modification and change
/// times. Any write to the file, or a new file in its place, changes it — the change time cannot
/// be set back by anyone — except a rewrite of the same size within one tick of the file
/// system's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileIdentity {
    device: u64,
    inode: u64,
    len: u64,
    times: [i64; 4],
}

impl FileIdentity {
    /// The identity of the file at `path`.
    pub fn of(path: &Path) -> anyhow::Result<Self> {
        let meta =
            std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
        Ok(Self {
            device: meta.dev(),
            inode: meta.ino(),
            len: meta.len(),
            times: [
                meta.mtime(),
                meta.mtime_nsec(),
                meta.ctime(),
                meta.ctime_nsec(),
            ],
        })
    }
}

fn cache_path(engine: &Engine, identity: FileIdentity, cache_dir: &Path) -> PathBuf {
    let mut hasher = Sha256Hasher::default();
    identity.hash(&mut hasher);
    engine.precompile_compatibility_hash().hash(&mut hasher);
    // The first 128 bits name the file.
    cache_dir.join(format!("{}.cwasm", &hasher.hex()[..32]))
}

/// Feeds `Hash` implementations into SHA-256, for keys that name cache files.
#[derive(Default)]
pub struct Sha256Hasher(Sha256);

impl Sha256Hasher {
    /// The digest of what was hashed, in hex.
    pub fn hex(self) -> String {
        format!("{:x}", self.0.finalize())
    }
}

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        unreachable!("only the SHA-256 digest is read")
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_component_is_compiled_once_and_again_after_any_write_to_it() {
        let temp = tempfile::tempdir().unwrap();
        let (wasm, cache) = (temp.path().join("f.wasm"), temp.path().join("cache"));
        std::fs::create_dir(&cache).unwrap();
        let engine = Engine::default();
        // An empty component with one custom section named `tag`: same size, other contents.
        let component = |tag: u8| [&b"\0asm\x0d\0\x01\0"[..], &[0, 2, 1, tag]].concat();
        std::fs::write(&wasm, component(b'a')).unwrap();
        let outcome = |wasm: &Path| load_component(&engine, wasm, &cache).unwrap().1;
        assert_eq!(outcome(&wasm), CacheOutcome::Compiled);
        assert_eq!(outcome(&wasm), CacheOutcome::Hit);
        // Rewritten in place with the same size and modification time: its change time moved.
        let modified = std::fs::metadata(&wasm).unwrap().modified().unwrap();
        std::fs::write(&wasm, component(b'b')).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&wasm)
            .unwrap()
            .set_modified(modified)
            .unwrap();
        assert_eq!(outcome(&wasm), CacheOutcome::Compiled);
        assert_eq!(outcome(&wasm), CacheOutcome::Hit);
    }

    #[test]
    fn pruning_keeps_the_newest_and_the_recent_compiled_components_and_other_files() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path();
        let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        for i in 0..5u64 {
            let file = std::fs::File::create(dir.join(format!("{i}.cwasm"))).unwrap();
            // Old enough to prune, oldest first.
            file.set_modified(hour_ago + std::time::Duration::from_secs(i))
                .unwrap();
        }
        std::fs::write(dir.join("notes.txt"), b"kept").unwrap();
        prune(dir, "cwasm", 2);
        let left = |dir: &Path| {
            let mut left: Vec<String> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            left.sort();
            left
        };
        assert_eq!(left(dir), ["3.cwasm", "4.cwasm", "notes.txt"]);
        // Entries written moments ago may be about to be read by another process: spared.
        for i in 5..8 {
            std::fs::write(dir.join(format!("{i}.cwasm")), b"x").unwrap();
        }
        prune(dir, "cwasm", 2);
        assert_eq!(left(dir), ["5.cwasm", "6.cwasm", "7.cwasm", "notes.txt"]);
    }
}
