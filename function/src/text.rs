//! Text preprocessing: texts become token ids, an attention mask and token types (a Hugging Face
//! `tokenizer.json`, run inside the function with the `tokenizers` crate: the same ids as Python's
//! `tokenizers`), one text per inference; the embedding graph's output comes back as its vector.

use serde_json::Value;
use tokenizers::{Tokenizer, TruncationParams};

use crate::spec::{ModelSpec, TextSpec};
use crate::tabular::json_type;
use crate::tensor::{Tensor, TensorData};
use ember_contract::{ApiError, Code};

/// Most texts one request may embed.
pub const MAX_TEXTS: usize = 64;

/// A model version's tokenizer, truncating at its `max_tokens`.
pub struct TextEncoder {
    tokenizer: Tokenizer,
}

impl std::fmt::Debug for TextEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextEncoder").finish_non_exhaustive()
    }
}

impl TextEncoder {
    /// Parses a `tokenizer.json`; texts are cut to `spec.max_tokens` tokens and never padded.
    pub fn from_bytes(bytes: &[u8], spec: &TextSpec) -> Result<Self, String> {
        let mut tokenizer = Tokenizer::from_bytes(bytes).map_err(|e| e.to_string())?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: spec.max_tokens,
                ..Default::default()
            }))
            .map_err(|e| e.to_string())?;
        tokenizer.with_padding(None);
        Ok(Self { tokenizer })
    }

    /// The token ids of `text`, special tokens included.
    pub fn ids(&self, text: &str) -> Result<Vec<u32>, ApiError> {
        Ok(self.encode(text)?.get_ids().to_vec())
    }

    fn encode(&self, text: &str) -> Result<tokenizers::Encoding, ApiError> {
        self.tokenizer
            .encode(text, true)
            .map_err(|_| ApiError::new(Code::InferenceFailed, "the text could not be tokenized"))
    }
}

/// One text ready for an embedding graph.
#[derive(Debug, Clone)]
pub struct TextInputs {
    /// The graph's inputs: ids, attention mask and (if declared) token types, `[1, tokens]`.
    pub inputs: Vec<Tensor>,
    /// Its tokens, special tokens included.
    pub tokens: usize,
}

/// The texts of a `/predict` body: `{"text": "…"}` or `{"texts": ["…", …]}` (a single text is
/// answered as a list of one all the same).
pub fn predict_texts(body: &Value) -> Result<Vec<String>, ApiError> {
    let object = body.as_object().ok_or_else(|| {
        ApiError::invalid(
            Code::NotAnObject,
            "$",
            "the body must be a JSON object {\"text\": \"…\"} or {\"texts\": [\"…\"]}",
        )
    })?;
    if let Some(key) = object
        .keys()
        .find(|k| !["text", "texts"].contains(&k.as_str()))
    {
        return Err(ApiError::invalid(
            Code::UnknownField,
            key.as_str(),
            format!("unknown field '{key}'; a text request carries 'text' or 'texts'"),
        ));
    }
    match (object.get("text"), object.get("texts")) {
        (Some(text), None) => Ok(vec![one_text(text, "text")?]),
        (None, Some(texts)) => many_texts(texts, "texts"),
        (Some(_), Some(_)) => Err(ApiError::invalid(
            Code::UnknownField,
            "texts",
            "send either 'text' or 'texts', not both",
        )),
        (None, None) => Err(ApiError::invalid(
            Code::MissingField,
            "text",
            "field 'text' (a string) or 'texts' (an array of strings) is missing",
        )),
    }
}

/// OpenAI's `input`: a string or an array of strings (token arrays are not accepted).
pub fn openai_input(input: Option<&Value>) -> Result<Vec<String>, ApiError> {
    match input {
        None => Err(ApiError::invalid(
            Code::MissingField,
            "input",
            "field 'input' (a string or an array of strings) is missing",
        )),
        Some(texts @ Value::Array(_)) => many_texts(texts, "input"),
        Some(other) => Ok(vec![one_text(other, "input")?]),
    }
}

fn one_text(value: &Value, field: &str) -> Result<String, ApiError> {
    value.as_str().map(str::to_string).ok_or_else(|| {
        ApiError::invalid(
            Code::WrongType,
            field,
            format!("field '{field}' must be a string, got {}", json_type(value)),
        )
    })
}

fn many_texts(value: &Value, field: &str) -> Result<Vec<String>, ApiError> {
    let items = value.as_array().ok_or_else(|| {
        ApiError::invalid(
            Code::WrongType,
            field,
            format!(
                "field '{field}' must be an array of strings, got {}",
                json_type(value)
            ),
        )
    })?;
    if items.is_empty() || items.len() > MAX_TEXTS {
        return Err(ApiError::invalid(
            Code::BatchTooLarge,
            field,
            format!(
                "field '{field}' must hold 1 to {MAX_TEXTS} texts, got {}",
                items.len()
            ),
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| one_text(item, &format!("{field}[{i}]")))
        .collect()
}

/// Tokenizes `text` for `spec`'s graph, as a batch of one. (Texts are never padded into a
/// shared batch: an int8 graph quantizes each batch's activations with one scale, so padding would
/// change a text's vector with its neighbours.)
pub fn to_tensors(
    spec: &TextSpec,
    encoder: &TextEncoder,
    text: &str,
) -> Result<TextInputs, ApiError> {
    let encoding = encoder.encode(text)?;
    let tokens = encoding.len();
    let tensor = |name: &str, values: &[u32]| Tensor {
        name: name.to_string(),
        shape: vec![1, tokens],
        data: TensorData::I64(values.iter().map(|v| i64::from(*v)).collect()),
    };
    let mut inputs = vec![
        tensor(&spec.ids, encoding.get_ids()),
        tensor(&spec.attention_mask, encoding.get_attention_mask()),
    ];
    if let Some(type_ids) = &spec.type_ids {
        inputs.push(tensor(type_ids, encoding.get_type_ids()));
    }
    Ok(TextInputs { inputs, tokens })
}

/// The graph's embedding of one text, checked against the spec.
pub fn embedding(spec: &ModelSpec, outputs: &[Tensor]) -> Result<Vec<f32>, ApiError> {
    let declared = &spec.outputs[0];
    let dimensions = spec.dimensions();
    let wrong = || {
        ApiError::new(
            Code::InferenceFailed,
            "the model returned embeddings of the wrong shape or with non-finite values",
        )
    };
    let output = outputs
        .iter()
        .find(|t| t.name == declared.name)
        .ok_or_else(wrong)?;
    let TensorData::F32(values) = &output.data else {
        return Err(wrong());
    };
    if values.len() != dimensions || values.iter().any(|v| !v.is_finite()) {
        return Err(wrong());
    }
    Ok(values.clone())
}
