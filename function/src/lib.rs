//! Ember's inference function.
//!
//! The core — model spec, validation, preprocessing, postprocessing and the HTTP contract — is plain
//! Rust that compiles natively (unit tests), for `wasm32-wasip2` (the component: [`wasi`] face with
//! `wasi:http` + `wasi:nn`) and for `wasm32-unknown-unknown` (the `ember-browser` package). Hosts differ only in the [`app::Inference`]
//! engine and the [`catalog::Catalog`] they hand to [`app::App`].

#![warn(missing_docs)]

pub mod app;
pub mod catalog;
pub mod clock;
pub mod manage;
pub mod openapi;
pub mod postprocess;
pub mod routing;
pub mod spec;
pub mod tabular;
pub mod tensor;
pub mod text;
#[cfg(feature = "tract")]
pub mod tract;
pub mod v2;
pub mod vision;

#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
pub mod wasi;
