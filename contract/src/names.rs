//! Names shared by the function and its hosts: the default model, graph names and the files of a
//! model version.

use std::fmt;

/// Model served by `POST /predict` unless configured otherwise.
pub const DEFAULT_MODEL: &str = "credit-risk";

/// Environment variable naming the model `POST /predict` serves; unset, it is [`DEFAULT_MODEL`]
/// (a manifest's `environment` may set it; `ember up --default-model` does).
pub const DEFAULT_MODEL_ENV: &str = "EMBER_DEFAULT_MODEL";

/// Environment variable a host sets (to any value) to receive each prediction's
/// [`Telemetry`](crate::Telemetry) in the private [`TELEMETRY`](crate::headers::TELEMETRY) header.
/// Only a host that strips private headers before replying may set it — Ember's host does; Spin and
/// `wasmtime serve` pass headers through and leave it unset, so the record (features, the shadow's
/// answer) never reaches a client there.
pub const TELEMETRY_ENV: &str = "EMBER_TELEMETRY";

/// The function's optional export that Ember's host calls on each new instance before its first
/// request, unmetered, so that what the C library starts lazily (environment, preopens) is never
/// billed to whichever request happens to be first (the function's WIT declares the same name).
pub const READY_EXPORT: &str = "ember-ready";

/// Where hosts mount the models directory for the function (read-only): Ember's preopen,
/// `wasmtime serve --dir models::/models`, Spin's `files = [{ source = "models", destination = "/models" }]`.
pub const GUEST_MODELS_DIR: &str = "/models";

/// A version's request-time spec, written by the host beside `model.toml`.
pub const SPEC_FILE: &str = "model.json";

/// A version's graph (ONNX).
pub const GRAPH_FILE: &str = "model.onnx";

/// A version's declared spec, as the model's author writes it.
pub const MODEL_TOML: &str = "model.toml";

/// A model's version policy (stable, canary, aliases, shadow, fallback), beside its versions.
pub const ROUTING_FILE: &str = "routing.json";

/// A version's reference cases (inputs and the native runtime's outputs), written by the script
/// that exported the model.
pub const REFERENCE_FILE: &str = "reference.json";

/// A model version: the pair replies are attributed to (the `ember-model` and
/// `ember-model-version` headers) and, written `<model>/<version>`, the name under which the host
/// registers the version's graph for `wasi:nn` `load-by-name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModelVersion {
    /// The model.
    pub model: String,
    /// The version.
    pub version: String,
}

impl ModelVersion {
    /// `model` at `version`.
    pub fn new(model: impl Into<String>, version: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            version: version.into(),
        }
    }

    /// Parses `<model>/<version>`; `None` for anything else.
    pub fn parse(name: &str) -> Option<Self> {
        let (model, version) = name.split_once('/')?;
        (!model.is_empty() && !version.is_empty() && !version.contains('/'))
            .then(|| Self::new(model, version))
    }
}

impl fmt::Display for ModelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.model, self.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_versions_round_trip_through_graph_names_and_reject_other_shapes() {
        let name = ModelVersion::new("credit-risk", "2");
        assert_eq!(name.to_string(), "credit-risk/2");
        assert_eq!(ModelVersion::parse("credit-risk/2"), Some(name));
        for bad in ["credit-risk", "/2", "credit-risk/", "a/b/c"] {
            assert_eq!(ModelVersion::parse(bad), None, "{bad}");
        }
    }
}
