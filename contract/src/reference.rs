//! A model version's reference cases (`reference.json`): requests, the tensors they become and
//! the outputs the native runtime (onnxruntime) gave for them, written by the script that exported
//! the model (scripts/models). Tests check every backend against them; benchmarks send them.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::names::REFERENCE_FILE;

/// The reference cases of one model version.
#[derive(Debug, Clone, Deserialize)]
pub struct Reference {
    /// The cases, in the order the export script wrote them.
    pub cases: Vec<Case>,
}

/// One reference case.
#[derive(Debug, Clone, Deserialize)]
pub struct Case {
    /// A name for messages, e.g. `applicant-0`.
    #[serde(default)]
    pub name: String,
    /// The `/predict` request body.
    #[serde(default)]
    pub request: Value,
    /// The tensors the request becomes after preprocessing.
    pub inputs: Vec<ReferenceTensor>,
    /// The native runtime's outputs for those tensors.
    #[serde(default)]
    pub outputs: Vec<ReferenceTensor>,
    /// The predicted class.
    #[serde(default)]
    pub prediction: usize,
}

/// An FP32 tensor in a reference case.
#[derive(Debug, Clone, Deserialize)]
pub struct ReferenceTensor {
    /// Tensor name in the graph.
    pub name: String,
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Elements, row-major.
    pub data: Vec<f32>,
}

impl Reference {
    /// Parses a `reference.json`.
    pub fn parse(json: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(json)
    }

    /// Reads `<models>/<model>/<version>/reference.json`; `Err` names the file and the problem.
    pub fn read(models: &Path, model: &str, version: &str) -> Result<Self, String> {
        let path = models.join(model).join(version).join(REFERENCE_FILE);
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&bytes).map_err(|e| format!("{}: {e}", path.display()))
    }
}
