//! The `wasm32-wasip2` component: `wasi:http/incoming-handler` in front; behind it, the host's
//! `wasi:nn` (default build) or, with the `embedded` feature, tract inside the guest for hosts
//! without wasi-nn (Spin, `wasmtime serve`). Models are read from the host's read-only mount at
//! [`crate::catalog::GUEST_MODELS_DIR`].

#[cfg(feature = "embedded")]
mod embedded;
mod http;
#[cfg(not(feature = "embedded"))]
mod nn;

#[cfg(feature = "embedded")]
use embedded::Embedded as Engine;
#[cfg(not(feature = "embedded"))]
use nn::WasiNn as Engine;
