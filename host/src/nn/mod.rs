//! `wasi:nn` for Ember: backends behind wasmtime-wasi-nn's `BackendInner` trait (one file each)
//! and the registry of graphs the host loads once and shares with every instance.

pub mod registry;
pub mod tract;
