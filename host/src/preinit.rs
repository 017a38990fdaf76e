//! Pre-initialization of the function (wizer-style) so that no instance ever parses a model or a
//! spec: the embedded build by `ember preinit` (and by `ember up --variant embedded` when stale),
//! the wasi-nn build by `ember up`, into its cache directory. The component's `wizer-initialize`
//! export runs once, here, with the models directory mounted at `/models` as at serving time; it
//! loads every model version's spec (and, in the embedded build, its tract plan) into memory, and
//! the snapshot of the instance's memories and globals becomes the component's initial state. Each
//! instance then starts with all of it ready, its language runtime already started: the cost
//! moves from every request (or every instance) to the build.

use std::hash::Hash as _;
use std::path::Path;

use anyhow::Context as _;
use rand::rngs::StdRng;
use rand::SeedableRng;
use wasmtime::component::{Component, Instance, Lift, Linker, WasmList};
use wasmtime::{Config, Engine, OptLevel, Store};
use wasmtime_wasi::{FsPerms, WasiCtx};
use wasmtime_wasi_nn::wit::WasiNnCtx;
use wasmtime_wasi_nn::InMemoryRegistry;
use wasmtime_wizer::{ComponentInstanceState, Wizer};

use crate::runtime::{link, prune, FileIdentity, HostState, Sha256Hasher};
use ember_contract::names::{GUEST_MODELS_DIR, SPEC_FILE};
use ember_function::catalog::{Catalog as _, DirCatalog};

/// Seed of the random sources pre-initialization runs with ("EMBER" in ASCII).
const SEED: u64 = 0x0045_4d42_4552;

/// The builds of the function that run tract inside themselves, for hosts without wasi:nn; each
/// is served pre-initialized.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum InGuestBuild {
    /// Imports nothing but WASI: for `wasmtime serve` and any wasi:http host.
    Embedded,
    /// The embedded build plus Spin's APIs (key-value routing, SQLite records, the management
    /// API): what spin.toml's `source` names.
    Spin,
}

impl InGuestBuild {
    /// The component as `cargo build` made it (before pre-initialization).
    pub fn built(self) -> &'static Path {
        Path::new(match self {
            Self::Embedded => env!("EMBER_EMBEDDED_WASM"),
            Self::Spin => env!("EMBER_SPIN_WASM"),
        })
    }

    /// Where its snapshot goes by default (spin.toml's `source` names the Spin one).
    pub fn default_output(self) -> &'static Path {
        Path::new(match self {
            Self::Embedded => "target/wasm/ember-function-embedded.wasm",
            Self::Spin => "target/wasm/ember-function-spin.wasm",
        })
    }
}

/// Pre-initializes `component` with `models` and writes the result to `out` (atomically).
pub fn write_preinitialized(component: &Path, models: &Path, out: &Path) -> anyhow::Result<()> {
    let wasm =
        std::fs::read(component).with_context(|| format!("reading {}", component.display()))?;
    let snapshot = tokio::runtime::Builder::new_current_thread()
        .build()?
        .block_on(preinitialize(&wasm, models))
        .with_context(|| format!("pre-initializing {}", component.display()))?;
    crate::atomic_file::replace(out, &snapshot)
}

/// The snapshot of `component` pre-initialized with `models`, made now unless `cache_dir` holds it
/// already. It is keyed by the path and [`FileIdentity`] of the component and of every model
/// version's spec (no file is read on a start that finds its snapshot), so a rebuilt function or a
/// new or changed version makes a new one.
pub fn cached_snapshot(
    component: &Path,
    models: &Path,
    cache_dir: &Path,
) -> anyhow::Result<std::path::PathBuf> {
    let mut key = Sha256Hasher::default();
    let mut identify = |file: &Path| -> anyhow::Result<()> {
        file.hash(&mut key);
        FileIdentity::of(file)?.hash(&mut key);
        Ok(())
    };
    identify(component)?;
    let catalog = DirCatalog::new(models);
    for listed in catalog.models() {
        for version in &listed.versions {
            identify(&catalog.version_path(&listed.name, version).join(SPEC_FILE))?;
        }
    }
    let dir = cache_dir.join(SNAPSHOT_DIR);
    let out = dir.join(format!("{}.wasm", key.hex()));
    if !out.is_file() {
        let started = std::time::Instant::now();
        write_preinitialized(component, models, &out)?;
        prune(&dir, "wasm", KEEP_SNAPSHOTS);
        tracing::info!(component = %component.display(), ms = started.elapsed().as_millis() as u64, "pre-initialized the function");
    }
    Ok(out)
}

/// Where in a cache directory snapshots live.
const SNAPSHOT_DIR: &str = "preinit";

/// Snapshots kept in a cache directory; older ones are deleted.
const KEEP_SNAPSHOTS: usize = 8;

/// Runs the component's `wizer-initialize` with `models` mounted and returns the snapshot.
pub async fn preinitialize(wasm: &[u8], models: &Path) -> anyhow::Result<Vec<u8>> {
    let mut wizer = Wizer::new();
    // The component's own export lifts the core function: removing it would leave that lift
    // dangling. Calling it again later just reloads the models.
    wizer.keep_init_func(true);
    let (context, instrumented) = wizer.instrument_component(wasm)?;
    // The instrumented component runs once: compile it fast rather than well.
    let mut config = Config::new();
    config.cranelift_opt_level(OptLevel::None);
    let engine = Engine::new(&config)?;
    let component = Component::new(&engine, &instrumented)?;
    let linker: Linker<HostState> = link(&engine)?;
    let mut wasi = WasiCtx::builder();
    // Fixed seeds: the snapshot keeps whatever randomness initialization drew (std's hash-map
    // keys, shared by every instance made from it either way), so seeding makes the output the
    // same bytes for the same inputs — reproducible builds and one compiled-cache entry.
    wasi.secure_random(StdRng::seed_from_u64(SEED))
        .insecure_random(StdRng::seed_from_u64(SEED))
        .insecure_random_seed(SEED.into());
    wasi.allow_blocking_current_thread(true);
    wasi.preopened_dir(models, GUEST_MODELS_DIR, FsPerms::ReadOnly)
        .map_err(|e| anyhow::Error::from(e).context(format!("mounting {}", models.display())))?;
    let mut store = Store::new(
        &engine,
        HostState::new(
            wasi.build(),
            WasiNnCtx::new([], InMemoryRegistry::new().into()),
            // Initialization reads the models directory only.
            crate::spin::SpinHost::none(),
        ),
    );
    let instance = linker.instantiate_async(&mut store, &component).await?;
    let init = instance.get_typed_func::<(), ()>(&mut store, wizer.get_init_func())?;
    init.call_async(&mut store, ())
        .await
        .map_err(|e| anyhow::Error::from(e).context("the component's wizer-initialize trapped"))?;
    let snapshot = wizer
        .snapshot_component(
            &context,
            &mut Snapshotting {
                store: &mut store,
                instance,
            },
        )
        .await?;
    Ok(snapshot)
}

/// Lets the pre-initializer read an instance's state through its instrumented exports.
struct Snapshotting<'a> {
    store: &'a mut Store<HostState>,
    instance: Instance,
}

impl Snapshotting<'_> {
    async fn call<R: Lift + Send + Sync + 'static, O>(
        &mut self,
        instance: &str,
        func: &str,
        read: impl FnOnce(&Store<HostState>, R) -> O,
    ) -> O {
        let (_, exported) = self
            .instance
            .get_export(&mut *self.store, None, instance)
            .expect("the instrumented component exports its state");
        let (_, func) = self
            .instance
            .get_export(&mut *self.store, Some(&exported), func)
            .expect("the instrumented component exports its state");
        let func = self
            .instance
            .get_typed_func::<(), (R,)>(&mut *self.store, func)
            .expect("state accessors have the instrumented types");
        let (value,) = func
            .call_async(&mut *self.store, ())
            .await
            .expect("state accessors do not trap");
        read(self.store, value)
    }
}

impl ComponentInstanceState for Snapshotting<'_> {
    async fn call_func_ret_list_u8(
        &mut self,
        instance: &str,
        func: &str,
        contents: impl FnOnce(&[u8]) + Send,
    ) {
        self.call(instance, func, |store, list: WasmList<u8>| {
            contents(list.as_le_slice(store))
        })
        .await
    }

    async fn call_func_ret_s32(&mut self, instance: &str, func: &str) -> i32 {
        self.call(instance, func, |_, v| v).await
    }

    async fn call_func_ret_s64(&mut self, instance: &str, func: &str) -> i64 {
        self.call(instance, func, |_, v| v).await
    }

    async fn call_func_ret_f32(&mut self, instance: &str, func: &str) -> u32 {
        self.call(instance, func, |_, v: f32| v.to_bits()).await
    }

    async fn call_func_ret_f64(&mut self, instance: &str, func: &str) -> u64 {
        self.call(instance, func, |_, v: f64| v.to_bits()).await
    }
}
