//! The `wasm32-wasip2` component: `wasi:http/incoming-handler` in front, `wasi:nn` behind.
//! Models are read from the host's read-only preopened directory at [`MODELS_DIR`].

mod http;
mod nn;

/// Where the host preopens the models directory (Ember, `wasmtime serve --dir`, Spin `files`).
pub const MODELS_DIR: &str = "/models";
