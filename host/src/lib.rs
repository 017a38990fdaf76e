//! Ember's host: runs a model as a serverless WebAssembly function.
//!
//! Capabilities, each a module owning its configuration, state and tests:
//! - [`runtime`]: the wasmtime engine, the component cache and one invocation's sandbox (deadline,
//!   memory cap, fuel, CPU time);
//! - [`nn`]: `wasi:nn` for guests — the model backends, the graph store and inference metering;
//! - [`spin`]: Spin's key-value store, SQLite and variables for guests (the Spin build);
//! - [`metering`]: usage records, prices, the durable ledger, Prometheus metrics, usage reports
//!   and drift against the training baseline;
//! - [`tenants`]: API keys, per-key scopes, rate limits and budgets, the concurrency cap;
//! - [`outcomes`]: ground-truth feedback, live quality per model version, alerts and guarded
//!   rollouts;
//! - [`front`]: the HTTP front (host endpoints, the manifest's routes and static sites, the
//!   function);
//! - [`manifest`]: `spin.toml` as Ember reads it;
//! - [`policy`]: changing a model's routing policy;
//! - [`remote`]: operating a deployment over HTTP (the management API's client);
//! - [`preinit`]: pre-initializing the embedded function with its models;
//! - [`in_flight`]: counting what is under way (invocations, ledger commits);
//! - [`process`]: watching child processes (the bench's peers, the tests' servers).
//!
//! [`commands`] holds one file per CLI command over these; `main.rs` only parses and dispatches.
//! The contract the host shares with the function is the `ember-contract` crate; the architecture
//! is described in `docs/architecture.md`.

#![warn(missing_docs)]

pub mod atomic_file;
pub mod commands;
pub mod front;
pub mod grpc;
pub mod in_flight;
pub mod manifest;
pub mod metering;
pub mod nn;
pub mod outcomes;
pub mod policy;
pub mod preinit;
pub mod process;
pub mod remote;
pub mod runtime;
pub mod spin;
pub mod stats;
pub mod tenants;
