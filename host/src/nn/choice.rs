//! Which backend runs a model version: the one its `model.toml` names (`backend = "ort"` or
//! `"tract"`), else the one `--backend` chose. A version that names ONNX Runtime where it is not
//! loaded is not ready (503 `model_not_ready`, the reason in the log); the others serve on.

use std::path::Path;

use anyhow::Context as _;
use ember_contract::names::MODEL_TOML;
use serde::Deserialize;

use super::ort::OrtBackend;
use super::tract::TractBackend;
use super::{GraphLoader, LoadedGraph};

/// A backend a model version can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// ONNX Runtime.
    Ort,
    /// tract.
    Tract,
}

/// The backends of one `ember up` and the default between them.
pub struct BackendChoice {
    /// ONNX Runtime, when its library loaded.
    pub ort: Option<OrtBackend>,
    /// What runs versions that name no backend.
    pub default: Engine,
}

/// The part of `model.toml` that picks the backend.
#[derive(Deserialize)]
struct Hint {
    backend: Option<Engine>,
}

impl BackendChoice {
    /// The backend `<dir>/model.toml` names, if any (none without a `model.toml`).
    fn named(dir: &Path) -> anyhow::Result<Option<Engine>> {
        let path = dir.join(MODEL_TOML);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
        };
        Ok(toml::from_str::<Hint>(&text)
            .with_context(|| format!("{}: backend must be \"ort\" or \"tract\"", path.display()))?
            .backend)
    }
}

impl GraphLoader for BackendChoice {
    fn load_dir(&self, dir: &Path) -> anyhow::Result<LoadedGraph> {
        match Self::named(dir)?.unwrap_or(self.default) {
            Engine::Tract => TractBackend.load_dir(dir),
            Engine::Ort => self
                .ort
                .as_ref()
                .with_context(|| {
                    format!(
                        "{} runs on ONNX Runtime (its model.toml says backend = \"ort\"), which is not loaded",
                        dir.display()
                    )
                })?
                .load_dir(dir),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A copy of credit-risk v1 whose `model.toml` ends with `extra`.
    fn version_with(extra: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let v1 = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/credit-risk/1");
        for file in ["model.onnx", "model.json"] {
            std::fs::copy(v1.join(file), dir.path().join(file)).unwrap();
        }
        let spec = std::fs::read_to_string(v1.join(MODEL_TOML)).unwrap();
        // A top-level key goes before the first table.
        let (head, tables) = spec.split_at(spec.find("\n[").unwrap());
        std::fs::write(
            dir.path().join(MODEL_TOML),
            format!("{head}\n{extra}{tables}"),
        )
        .unwrap();
        dir
    }

    #[test]
    fn a_version_that_names_onnx_runtime_is_not_run_by_tract() {
        let pinned = version_with("backend = \"ort\"\n");
        let plain = version_with("");
        assert_eq!(
            BackendChoice::named(pinned.path()).unwrap(),
            Some(Engine::Ort)
        );
        assert_eq!(BackendChoice::named(plain.path()).unwrap(), None);
        let tract_only = BackendChoice {
            ort: None,
            default: Engine::Tract,
        };
        assert!(tract_only.load_dir(plain.path()).is_ok());
        let error = format!("{:#}", tract_only.load_dir(pinned.path()).err().unwrap());
        assert!(error.contains("runs on ONNX Runtime"), "{error}");
        let wrong = version_with("backend = \"gpu\"\n");
        let error = format!("{:#}", BackendChoice::named(wrong.path()).unwrap_err());
        assert!(error.contains("backend must be"), "{error}");
    }
}
