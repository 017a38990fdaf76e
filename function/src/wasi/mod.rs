//! The `wasm32-wasip2` component: `wasi:http/incoming-handler` in front; behind it, the host's
//! `wasi:nn` (default build) or, with the `embedded` feature, tract inside the guest for hosts
//! without wasi-nn (Spin, `wasmtime serve`). Models are read from the host's read-only mount at
//! [`ember_contract::names::GUEST_MODELS_DIR`], through a catalog that keeps what the instance
//! parsed; both builds are pre-initialized with every spec (and the embedded one with every graph).
//! The Spin build (feature `spin`, on top of `embedded`) adds Spin's APIs: see [`spin`].

mod arena;
mod catalog;
#[cfg(feature = "embedded")]
mod embedded;
mod http;
mod lifecycle;
#[cfg(not(feature = "embedded"))]
mod nn;
#[cfg(feature = "spin")]
mod spin;

use catalog::InstanceCatalog;

use arena::{permanent, request, reserve as reserve_arena};
#[cfg(feature = "embedded")]
use embedded::Embedded as Engine;
#[cfg(not(feature = "embedded"))]
use nn::WasiNn as Engine;
