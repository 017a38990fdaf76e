//! `model.toml`: the single source of truth for a model version (see docs/architecture.md), and its
//! `model.json` twin without the drift baseline, which the function parses on every request
//! (a fresh instance per request; JSON parses about six times faster than TOML).

use serde::{Deserialize, Serialize};

use crate::tensor::DataType;

/// One model version as declared by its `model.toml`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ModelSpec {
    /// Model name, e.g. `credit-risk`.
    pub name: String,
    /// Version, a positive integer as a string (the folder name).
    pub version: String,
    /// One line on what the model predicts.
    #[serde(default)]
    pub description: String,
    /// What the model does: classify, or embed text.
    pub task: Task,
    /// How the model was produced.
    #[serde(default)]
    pub framework: String,
    /// What it was trained on.
    #[serde(default)]
    pub trained_on: String,
    /// Class labels, in output order (none for an embedding model).
    #[serde(default)]
    pub labels: Vec<String>,
    /// Held-out metrics, free-form numbers.
    #[serde(default)]
    pub metrics: toml::Table,
    /// The graph's input tensors.
    pub inputs: Vec<TensorSpec>,
    /// The graph's output tensors; the first is the prediction.
    pub outputs: Vec<OutputSpec>,
    /// Tabular preprocessing: named features into one input row.
    pub tabular: Option<TabularSpec>,
    /// Vision preprocessing: an image into one normalized input tensor.
    pub vision: Option<VisionSpec>,
    /// Text preprocessing: texts tokenized into id, mask and type tensors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<TextSpec>,
    /// Whether the embedded build (tract inside the guest: what Spin and `wasmtime serve` run)
    /// pre-loads and serves this version. Large graphs opt out: their plans would grow every
    /// instance's snapshot; hosts with `wasi:nn` serve them.
    #[serde(default = "serves_embedded")]
    pub embedded: bool,
}

fn serves_embedded() -> bool {
    true
}

/// What the model does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// Picks one of `labels`.
    Classification,
    /// Maps text to a vector (`/predict` answers `embeddings`; `/v1/embeddings` too).
    Embedding,
}

/// A declared graph input: name, datatype and shape (`-1` marks a dynamic dimension).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct TensorSpec {
    /// Tensor name in the graph.
    pub name: String,
    /// Element type, in KServe v2 spelling (`FP32`).
    pub datatype: DataType,
    /// Dimensions; `-1` is dynamic.
    pub shape: Vec<i64>,
}

/// A declared graph output and how to read it.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct OutputSpec {
    /// Tensor name in the graph.
    pub name: String,
    /// Element type.
    pub datatype: DataType,
    /// Dimensions; `-1` is dynamic.
    pub shape: Vec<i64>,
    /// Whether the values are logits (softmax applied in postprocessing) or probabilities.
    pub kind: OutputKind,
}

/// How a classifier's output is to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputKind {
    /// Unnormalized scores: postprocessing applies softmax.
    Logits,
    /// Already probabilities (e.g. a sigmoid classifier's): used as they are.
    Probabilities,
    /// One vector per input row, returned as it is.
    Embedding,
}

/// Tabular models: a JSON object of named features becomes one row of `input`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct TabularSpec {
    /// The graph input the row feeds.
    pub input: String,
    /// Features in column order.
    pub features: Vec<FeatureSpec>,
}

/// One tabular feature and its validation rule.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct FeatureSpec {
    /// Field name in the request body.
    pub name: String,
    /// `integer` or `number`.
    #[serde(rename = "type")]
    pub kind: FeatureKind,
    /// Smallest accepted value (inclusive).
    pub min: f64,
    /// Largest accepted value (inclusive).
    pub max: f64,
    /// Whether the request must carry it.
    pub required: bool,
    /// Value used when an optional feature is absent.
    pub default: Option<f64>,
    /// Unit, for documentation.
    #[serde(default)]
    pub unit: String,
    /// What the feature means.
    #[serde(default)]
    pub description: String,
}

/// A feature's value type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FeatureKind {
    /// A whole number.
    Integer,
    /// Any finite number.
    Number,
}

/// Vision models: an image becomes a normalized NCHW tensor.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct VisionSpec {
    /// The graph input the image feeds.
    pub input: String,
    /// Target width in pixels.
    pub width: u32,
    /// Target height in pixels.
    pub height: u32,
    /// When set, the image's shorter side is resized to this many pixels (keeping its aspect ratio)
    /// and the centre `width` x `height` cropped, as ImageNet models expect; otherwise the image
    /// is stretched to `width` x `height`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shorter_side: Option<u32>,
    /// Channel layout the model expects.
    pub channels: Channels,
    /// Whether to invert intensities (dark ink on light paper → light on dark).
    #[serde(default)]
    pub invert: bool,
    /// Per-channel mean subtracted from `pixel / 255`.
    pub mean: Vec<f32>,
    /// Per-channel standard deviation dividing the result.
    pub std: Vec<f32>,
    /// How many of the most probable classes a reply lists when the request does not say
    /// (`top_k`); at most the number of labels.
    #[serde(default = "default_top_k")]
    pub top_k: usize,
}

/// Replies list the five most probable classes unless the model or the request says otherwise.
pub const DEFAULT_TOP_K: usize = 5;

fn default_top_k() -> usize {
    DEFAULT_TOP_K
}

/// Text models: texts are tokenized in the function (the `tokenizer` file beside the model, a
/// Hugging Face `tokenizer.json`) into a batch of ids, attention mask and token types.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct TextSpec {
    /// The tokenizer file in the version's folder.
    pub tokenizer: String,
    /// Tokens per text, special tokens included; longer texts are truncated.
    pub max_tokens: usize,
    /// The graph input taking token ids.
    pub ids: String,
    /// The graph input taking the attention mask (1 for a token, 0 for padding).
    pub attention_mask: String,
    /// The graph input taking token type ids, if the graph has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub type_ids: Option<String>,
}

/// Channel layout of a vision input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Channels {
    /// One luma channel.
    Grayscale,
    /// Red, green, blue.
    Rgb,
}

impl Channels {
    /// Number of channels.
    pub fn count(self) -> usize {
        match self {
            Channels::Grayscale => 1,
            Channels::Rgb => 3,
        }
    }
}

impl ModelSpec {
    /// Parses and checks a `model.toml`.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let spec: ModelSpec = toml::from_str(text).map_err(|e| e.to_string())?;
        spec.check()?;
        Ok(spec)
    }

    /// Parses and checks a `model.json` (the request-time twin of `model.toml`).
    pub fn from_json(text: &[u8]) -> Result<Self, String> {
        let spec: ModelSpec = serde_json::from_slice(text).map_err(|e| e.to_string())?;
        spec.check()?;
        Ok(spec)
    }

    /// This version's identity; written `<model>/<version>` it is the name under which the host
    /// registers the graph for `wasi:nn` `load-by-name`.
    pub fn model_version(&self) -> ember_contract::ModelVersion {
        ember_contract::ModelVersion::new(&self.name, &self.version)
    }

    /// Length of the vectors an embedding model returns.
    pub fn dimensions(&self) -> usize {
        self.outputs[0].shape.last().copied().unwrap_or(0).max(0) as usize
    }

    /// The declared input with this name.
    pub fn input(&self, name: &str) -> Option<&TensorSpec> {
        self.inputs.iter().find(|i| i.name == name)
    }

    /// Consistency rules a `model.toml` must satisfy before it is served.
    fn check(&self) -> Result<(), String> {
        if self.inputs.is_empty() || self.outputs.is_empty() {
            return Err("a model needs at least one input and one output".into());
        }
        let width = self.outputs[0].shape.last().copied().unwrap_or(0);
        match self.task {
            Task::Classification if width != self.labels.len() as i64 => {
                return Err(format!(
                    "output {} has {width} classes but {} labels are declared",
                    self.outputs[0].name,
                    self.labels.len()
                ))
            }
            Task::Classification if self.outputs[0].kind == OutputKind::Embedding => {
                return Err("a classifier's first output is logits or probabilities".into())
            }
            Task::Embedding if width < 1 || self.outputs[0].kind != OutputKind::Embedding => {
                return Err(format!(
                    "an embedding model's output {} is [N, dimensions] of kind embedding",
                    self.outputs[0].name
                ))
            }
            Task::Embedding if self.text.is_none() => {
                return Err("an embedding model declares [text]".into())
            }
            _ => {}
        }
        match (&self.tabular, &self.vision, &self.text) {
            (None, None, Some(text)) => {
                let named = [
                    Some(&text.ids),
                    Some(&text.attention_mask),
                    text.type_ids.as_ref(),
                ];
                for name in named.into_iter().flatten() {
                    let input = self
                        .input(name)
                        .ok_or_else(|| format!("text input {name} is not declared"))?;
                    if input.datatype != DataType::Int64 || input.shape.len() != 2 {
                        return Err(format!("text input {name} is not INT64 [N, tokens]"));
                    }
                }
                if text.max_tokens < 2 {
                    return Err("text max_tokens must leave room for the special tokens".into());
                }
            }
            (Some(tabular), None, None) => {
                let input = self
                    .input(&tabular.input)
                    .ok_or_else(|| format!("tabular input {} is not declared", tabular.input))?;
                if input.shape.last().copied() != Some(tabular.features.len() as i64) {
                    return Err(format!(
                        "input {} does not have one column per feature",
                        input.name
                    ));
                }
                for f in &tabular.features {
                    if !f.required && f.default.is_none() {
                        return Err(format!("optional feature {} needs a default", f.name));
                    }
                    if f.min > f.max {
                        return Err(format!("feature {} has min > max", f.name));
                    }
                }
            }
            (None, Some(vision), None) => {
                let input = self
                    .input(&vision.input)
                    .ok_or_else(|| format!("vision input {} is not declared", vision.input))?;
                let channels = vision.channels.count();
                let expected = [channels as i64, vision.height as i64, vision.width as i64];
                if input.shape.len() != 4 || input.shape[1..] != expected {
                    return Err(format!(
                        "input {} is not [N, C, H, W] = {expected:?}",
                        input.name
                    ));
                }
                if vision.mean.len() != channels || vision.std.len() != channels {
                    return Err("vision mean/std need one value per channel".into());
                }
                if vision.std.iter().any(|s| *s <= 0.0) {
                    return Err("vision std must be positive".into());
                }
                if vision
                    .shorter_side
                    .is_some_and(|side| side < vision.width.max(vision.height))
                {
                    return Err("vision shorter_side must cover width and height".into());
                }
                if vision.top_k == 0 {
                    return Err("vision top_k must be at least 1".into());
                }
            }
            _ => {
                return Err("a model declares exactly one of [tabular], [vision] or [text]".into())
            }
        }
        Ok(())
    }
}
