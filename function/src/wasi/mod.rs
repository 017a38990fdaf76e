//! The `wasm32-wasip2` component: `wasi:http/incoming-handler` in front, `wasi:nn` behind.
//! Models are read from the host's read-only mount at [`crate::catalog::GUEST_MODELS_DIR`].

mod http;
mod nn;
