//! Ember's function in the browser: the server's model spec, validation, preprocessing and
//! postprocessing (the `ember-function` crate, unchanged) compiled to `wasm32-unknown-unknown` with
//! wasm-bindgen, running the graph with wonnx on WebGPU or tract on the CPU.
//!
//! JavaScript sees one class, `Model` ([`model::Model`]):
//! `await Model.load(specUrl, onnxUrl, {backend: "auto" | "webgpu" | "cpu"})`, then
//! `await model.predict(input)`, which resolves to the `/predict` reply (plus the backend that ran
//! and why) or rejects with the server's error body and status. `scripts/build-browser` builds the
//! package; `ember up` serves it with a demo page at `/demo/`.

pub mod backend;

#[cfg(target_arch = "wasm32")]
mod fetch;
#[cfg(target_arch = "wasm32")]
pub mod model;
#[cfg(target_arch = "wasm32")]
mod webgpu;
#[cfg(target_arch = "wasm32")]
mod wonnx_graph;
