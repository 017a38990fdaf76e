//! Text embeddings: `/predict` of a text model (`{"text"}` / `{"texts"}` → `embeddings`,
//! `dimensions`, `tokens`) and the OpenAI-compatible `POST /v1/embeddings`, which the `openai`
//! client calls unchanged (floats or its default base64).

use base64::Engine as _;
use ember_contract::{ApiError, Code, Telemetry};
use serde::Serialize;
use serde_json::{json, Map, Value};

use super::predict;
use super::reply::Response;
use super::{App, Inference, Request};
use crate::catalog::Catalog;
use crate::spec::{ModelSpec, Task};
use crate::text::{self, TextInputs};

/// The fields `/v1/embeddings` reads; `user` is accepted and ignored, as OpenAI documents it.
const OPENAI_FIELDS: [&str; 5] = ["model", "input", "encoding_format", "dimensions", "user"];

/// What one embedding request produced.
struct Embedded {
    vectors: Vec<Vec<f32>>,
    tokens: usize,
}

/// `/predict`'s reply for a text model: every host and the browser answer with this shape.
pub fn embeddings_reply(spec: &ModelSpec, vectors: &[Vec<f32>], tokens: usize) -> Value {
    let reply = EmbeddingReply {
        model: &spec.name,
        model_version: &spec.version,
        embeddings: vectors,
        dimensions: spec.dimensions(),
        tokens,
        timestamp: crate::clock::now_rfc3339(),
    };
    serde_json::to_value(&reply).unwrap_or_default()
}

#[derive(Serialize)]
struct EmbeddingReply<'a> {
    model: &'a str,
    model_version: &'a str,
    embeddings: &'a [Vec<f32>],
    dimensions: usize,
    tokens: usize,
    timestamp: String,
}

impl<C: Catalog, I: Inference> App<C, I> {
    /// `POST /predict` of a text model: the body's texts, embedded.
    pub(super) fn predict_embeddings(
        &self,
        spec: &ModelSpec,
        body: &Value,
    ) -> Result<Response, ApiError> {
        let texts = text::predict_texts(body)?;
        let embedded = self.embed(spec, &texts)?;
        let reply = embeddings_reply(spec, &embedded.vectors, embedded.tokens);
        Ok(attributed(spec, reply, embedded.tokens))
    }

    /// `POST /v1/embeddings`, OpenAI's request and reply.
    pub(super) fn openai_embeddings(&self, request: &Request) -> Result<Response, ApiError> {
        let body = predict::json_body(request.content_type, request.body)?;
        let fields = body.as_object().ok_or_else(|| {
            ApiError::invalid(
                Code::NotAnObject,
                "$",
                "the body must be a JSON object {\"model\": …, \"input\": …}",
            )
        })?;
        if let Some(key) = fields.keys().find(|k| !OPENAI_FIELDS.contains(&k.as_str())) {
            return Err(ApiError::invalid(
                Code::UnknownField,
                key.as_str(),
                format!("unknown field '{key}'; /v1/embeddings reads {OPENAI_FIELDS:?}"),
            ));
        }
        let name = match fields.get("model") {
            Some(Value::String(name)) => name,
            None => {
                return Err(ApiError::invalid(
                    Code::MissingField,
                    "model",
                    "field 'model' (the model's name) is missing",
                ))
            }
            Some(_) => {
                return Err(ApiError::invalid(
                    Code::WrongType,
                    "model",
                    "field 'model' must be a string",
                ))
            }
        };
        if let Some(allowed) = request.allowed_models {
            if !allowed.split(',').any(|m| m == name) {
                return Err(ApiError::new(
                    Code::Forbidden,
                    format!("this API key may not use model '{name}' (it may use: {allowed})"),
                )
                .with_field("model"));
            }
        }
        if fields.get("user").is_some_and(|user| !user.is_string()) {
            return Err(ApiError::invalid(
                Code::WrongType,
                "user",
                "field 'user' must be a string",
            ));
        }
        let base64 = encoding_is_base64(fields)?;
        let texts = text::openai_input(fields.get("input"))?;
        let routing = self.catalog.routing(name);
        let spec = self
            .catalog
            .spec_routed(name, None, &routing, request.pick)
            .map_err(|e| e.with_field("model"))?;
        self.remember(&spec);
        if spec.task != Task::Embedding {
            return Err(ApiError::invalid(
                Code::WrongTask,
                "model",
                format!("model '{name}' does not produce embeddings"),
            ));
        }
        check_dimensions(fields, spec.dimensions())?;
        let embedded = self.embed(&spec, &texts)?;
        let data: Vec<Value> = embedded
            .vectors
            .iter()
            .enumerate()
            .map(|(index, vector)| {
                let embedding = if base64 {
                    let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                    json!(base64::engine::general_purpose::STANDARD.encode(bytes))
                } else {
                    json!(vector)
                };
                json!({ "object": "embedding", "index": index, "embedding": embedding })
            })
            .collect();
        let reply = json!({
            "object": "list",
            "data": data,
            "model": spec.name,
            "usage": { "prompt_tokens": embedded.tokens, "total_tokens": embedded.tokens },
        });
        Ok(attributed(&spec, reply, embedded.tokens))
    }

    /// Tokenizes each text, runs the graph on it and reads its vector.
    fn embed(&self, spec: &ModelSpec, texts: &[String]) -> Result<Embedded, ApiError> {
        let text_spec = spec
            .text
            .as_ref()
            .ok_or_else(|| ApiError::new(Code::ModelNotReady, "model has no text preprocessing"))?;
        let encoder = self.catalog.text_encoder(spec)?;
        let mut embedded = Embedded {
            vectors: Vec::with_capacity(texts.len()),
            tokens: 0,
        };
        for text in texts {
            let TextInputs { inputs, tokens } = text::to_tensors(text_spec, &encoder, text)?;
            let outputs = self.inference.infer(spec, inputs)?;
            embedded.vectors.push(text::embedding(spec, &outputs)?);
            embedded.tokens += tokens;
        }
        Ok(embedded)
    }
}

/// A 200 reply attributed to `spec`, recording the tokens embedded (the drift feature of a
/// text model).
fn attributed(spec: &ModelSpec, body: Value, tokens: usize) -> Response {
    Response {
        telemetry: Some(Telemetry {
            features: vec![tokens as f64],
            prediction: None,
            shadow: None,
            fallback: None,
        }),
        ..Response::from_model(spec, body)
    }
}

/// OpenAI's `encoding_format`: `float` (the default) or `base64` (little-endian f32s).
fn encoding_is_base64(fields: &Map<String, Value>) -> Result<bool, ApiError> {
    match fields.get("encoding_format") {
        None => Ok(false),
        Some(Value::String(f)) if f == "float" => Ok(false),
        Some(Value::String(f)) if f == "base64" => Ok(true),
        Some(other) => Err(ApiError::invalid(
            Code::UnsupportedParameter,
            "encoding_format",
            format!("field 'encoding_format' must be \"float\" or \"base64\", got {other}"),
        )),
    }
}

/// OpenAI's `dimensions`: accepted when it is the model's own (the graph cannot shorten its
/// vectors).
fn check_dimensions(fields: &Map<String, Value>, dimensions: usize) -> Result<(), ApiError> {
    match fields.get("dimensions") {
        None => Ok(()),
        Some(value) if value.as_u64() == Some(dimensions as u64) => Ok(()),
        Some(other) => Err(ApiError::invalid(
            Code::UnsupportedParameter,
            "dimensions",
            format!("field 'dimensions' must be this model's {dimensions}, got {other}"),
        )),
    }
}
