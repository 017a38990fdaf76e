//! The `wasm32-wasip2` component: `wasi:http/incoming-handler` in front; behind it, the host's
//! `wasi:nn` (default build) or, with the `embedded` feature, tract inside the guest for hosts
//! without wasi-nn (Spin, `wasmtime serve`). Models are read from the host's read-only mount at
//! [`ember_contract::names::GUEST_MODELS_DIR`].

#[cfg(feature = "embedded")]
mod embedded;
mod http;
#[cfg(not(feature = "embedded"))]
mod nn;

use crate::catalog::DirCatalog;
use ember_contract::names::GUEST_MODELS_DIR;

#[cfg(feature = "embedded")]
use embedded::Embedded as Engine;
#[cfg(not(feature = "embedded"))]
use nn::WasiNn as Engine;

/// Where this build finds model specs: the snapshot's parsed specs over the models directory.
#[cfg(feature = "embedded")]
fn catalog() -> embedded::SnapshotCatalog {
    embedded::SnapshotCatalog(DirCatalog::new(GUEST_MODELS_DIR))
}

/// Where this build finds model specs: the models directory.
#[cfg(not(feature = "embedded"))]
fn catalog() -> DirCatalog {
    DirCatalog::new(GUEST_MODELS_DIR)
}
