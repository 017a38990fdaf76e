//! The instance's life before its first request, in two exports beside `wasi:http`:
//!
//! - `wizer-initialize` (pre-initialization, wizer-style, run by Ember's host at build or start):
//!   runs once with the models directory mounted, parses every model version's spec and routing
//!   (and, in the embedded build, loads every graph into a tract plan), and the snapshot of that
//!   memory becomes the component's initial state. Instances made from it start with all of it
//!   ready, and with the language runtime's constructors already run, so no request parses what it
//!   did not change.
//! - `ember-ready` (called by Ember's host on each new instance, before its first request,
//!   unmetered): starts what the C library starts lazily on first use (the environment, the
//!   preopened directories) and reserves the request arena ([`super::arena`]), so a request's
//!   instruction count — what it is billed — is the same whether it is its instance's first or
//!   hundredth. Hosts that don't know it (`wasmtime serve`, Spin)
//!   simply never call it.

use super::catalog::{close_models_dir, open_models_dir, InstanceCatalog};
use super::reserve_arena;
use ember_contract::names::{GUEST_MODELS_DIR, TELEMETRY_ENV};

wit_bindgen::generate!({
    inline: "
        package ember:function;
        world lifecycle {
            /// Loads every model version into memory; run once by the pre-initializer.
            export wizer-initialize: func();
            /// Starts what the C library starts lazily; run on each new instance.
            export ember-ready: func();
        }
    ",
});

struct Lifecycle;

export!(Lifecycle);

impl Guest for Lifecycle {
    fn ember_ready() {
        let _ = std::env::var_os(TELEMETRY_ENV);
        let _ = std::fs::metadata(GUEST_MODELS_DIR);
        open_models_dir();
        reserve_arena();
    }

    fn wizer_initialize() {
        let specs = InstanceCatalog::default().load_all();
        #[cfg(feature = "embedded")]
        for spec in &specs {
            // A graph that fails here answers 503 `model_not_ready` when asked for.
            let _ = super::embedded::load_and_warm(spec);
        }
        #[cfg(not(feature = "embedded"))]
        let _ = specs;
        // The preopened directory handles belong to this instance: forget them, so instances
        // made from the snapshot open their own on first use. Likewise the environment, if
        // anything read it while loading: instances must see their host's (EMBER_TELEMETRY,
        // EMBER_DEFAULT_MODEL), not the pre-initializer's empty one.
        close_models_dir();
        unsafe {
            __wasilibc_reset_preopens();
            __wasilibc_deinitialize_environ();
        }
    }
}

extern "C" {
    /// wasi-libc's hook for pre-initializers: drops the cached preopen table.
    fn __wasilibc_reset_preopens();
    /// wasi-libc's hook for pre-initializers: forgets the environment read so far, so the next
    /// `getenv` reads the running instance's.
    fn __wasilibc_deinitialize_environ();
}
