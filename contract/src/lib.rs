//! Ember's guest↔host contract: what the function, Ember's host and the browser package agree on.
//!
//! Every name that crosses a boundary is declared here once and imported everywhere else:
//! - [`route`]: the function's route table (which paths exist, which method each takes, which
//!   model and version a path names);
//! - [`headers`]: the header names the function and the host exchange;
//! - [`error`]: the error [`Code`]s with their HTTP status, and the JSON error envelopes;
//! - [`telemetry`]: the record a prediction leaves for the host (audit, drift, shadow, fallback);
//! - [`names`]: the default model, [`ModelVersion`] (also the graph name) and the layout of a model version's files;
//! - [`reference`]: a version's reference cases (`reference.json`);
//! - [`manage`]: the management API that operates a deployment (routing, records) over HTTP.
//!
//! The crate is plain Rust (serde only): it compiles into the guest, the host and the browser.

#![warn(missing_docs)]

pub mod error;
pub mod headers;
pub mod manage;
pub mod names;
pub mod reference;
pub mod route;
pub mod telemetry;

pub use error::{ApiError, Code};
pub use names::ModelVersion;
pub use route::Route;
pub use telemetry::Telemetry;
