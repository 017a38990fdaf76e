//! A static file server as a `wasm32-wasip2` component, for the demo and docs pages: it exports
//! `wasi:http/incoming-handler` and answers `GET` and `HEAD` with the files under its preopened
//! directories (spin.toml's `files` on Spin, `--dir host::guest` on `wasmtime serve`).
//!
//! [`site`] decides what a request names (no I/O, so it builds and is tested natively, and Ember's
//! host serves a manifest's file-server components by the same rules); `serve` opens the file
//! under the preopens and streams it.

#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
mod serve;
pub mod site;
