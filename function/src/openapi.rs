//! The function's API as OpenAPI 3.1, generated from the model specs it serves: every model
//! version's `/predict` body as JSON Schema (features with their types, ranges and defaults, or the
//! image), the KServe v2 routes with each model's tensors, and every error body.

use ember_contract::headers;
use serde_json::{json, Map, Value};

use crate::catalog::ModelVersions;
use crate::spec::{FeatureKind, ModelSpec, Task};
use crate::tensor::DataType;
use crate::text::MAX_TEXTS;
use crate::v2::{binary, MAX_BATCH};

/// A model with the specs of its versions, ascending.
pub struct Documented {
    /// Its versions and aliases.
    pub versions: ModelVersions,
    /// The spec of each version, in `versions.versions` order.
    pub specs: Vec<ModelSpec>,
}

/// The OpenAPI document for these models; `/predict` serves `default_model`.
pub fn document(models: &[Documented], default_model: &str) -> Value {
    let mut paths = Map::new();
    let mut schemas = common_schemas();
    for model in models {
        let name = &model.versions.name;
        let Some(routed) = model.specs.last() else {
            continue;
        };
        for spec in &model.specs {
            schemas.insert(request_schema_name(spec), predict_request(spec));
            schemas.insert(tensors_schema_name(spec), infer_request(spec));
            paths.insert(
                format!("/models/{name}/versions/{}/predict", spec.version),
                predict_path(spec, &format!("{name} version {}", spec.version)),
            );
        }
        // Unpinned requests follow the routing (split, else stable, else newest), so their body is
        // any version's; the newest's is documented.
        let routed_as = format!("{name} (the version its routing picks)");
        paths.insert(
            format!("/models/{name}/predict"),
            predict_path(routed, &routed_as),
        );
        if name == default_model {
            paths.insert("/predict".into(), predict_path(routed, &routed_as));
        }
        let versions: Vec<&String> = model
            .versions
            .versions
            .iter()
            .chain(model.versions.aliases.keys())
            .collect();
        paths.insert(format!("/v2/models/{name}/infer"), infer_path(routed, None));
        paths.insert(
            format!("/v2/models/{name}/versions/{{version}}/infer"),
            infer_path(routed, Some(&versions)),
        );
        paths.insert(
            format!("/v2/models/{name}"),
            v2_get(&format!("{name}'s metadata"), "V2ModelMetadata", None),
        );
        paths.insert(
            format!("/v2/models/{name}/versions/{{version}}"),
            v2_get(
                &format!("{name}'s metadata at a version"),
                "V2ModelMetadata",
                Some(&versions),
            ),
        );
        paths.insert(
            format!("/v2/models/{name}/ready"),
            v2_get(&format!("whether {name} is ready"), "Empty", None),
        );
        paths.insert(
            format!("/v2/models/{name}/versions/{{version}}/ready"),
            v2_get(
                &format!("whether {name} is ready at a version"),
                "Empty",
                Some(&versions),
            ),
        );
    }
    if let Some(embeddings) = openai_embeddings(models) {
        paths.insert("/v1/embeddings".into(), embeddings);
    }
    paths.insert(
        "/health".into(),
        get("Liveness and the model versions served", "Health", "Error"),
    );
    paths.insert(
        "/models".into(),
        get(
            "The models with their versions and aliases",
            "Models",
            "Error",
        ),
    );
    paths.insert(
        "/v2".into(),
        v2_get("KServe v2 server metadata", "V2ServerMetadata", None),
    );
    for probe in ["live", "ready"] {
        paths.insert(
            format!("/v2/health/{probe}"),
            v2_get(&format!("KServe v2 {probe}ness"), "Empty", None),
        );
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Ember",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Models served as a WebAssembly function. Ember's own host adds the \
                ember-invocation-id, ember-cost and ember-duration-us reply headers and its \
                /-/metrics and /-/health endpoints, which other hosts do not have.",
        },
        "paths": paths,
        "components": { "schemas": schemas },
    })
}

fn request_schema_name(spec: &ModelSpec) -> String {
    format!("{}-v{}-request", spec.name, spec.version)
}

fn tensors_schema_name(spec: &ModelSpec) -> String {
    format!("{}-v{}-infer-request", spec.name, spec.version)
}

fn reference(schema: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{schema}") })
}

fn json_content(schema: Value) -> Value {
    json!({ "application/json": { "schema": schema } })
}

/// The error replies every operation may give: 4xx for the request, 5xx for the function or host.
fn errors(envelope: &str) -> Value {
    json!({
        "4XX": {
            "description": "The request broke a rule; the body names it and, when one is to blame, the field",
            "content": json_content(reference(envelope)),
        },
        "5XX": {
            "description": "The function or host failed (deadline, memory limit, trap, overload); no internals are named",
            "content": json_content(reference(envelope)),
        },
    })
}

fn with_errors(ok: Value, envelope: &str) -> Value {
    let mut responses = errors(envelope);
    responses["200"] = ok;
    responses
}

fn get(summary: &str, schema: &str, envelope: &str) -> Value {
    json!({ "get": {
        "summary": summary,
        "responses": with_errors(
            json!({ "description": "OK", "content": json_content(reference(schema)) }),
            envelope,
        ),
    }})
}

fn version_parameter(versions: &[&String]) -> Value {
    json!({
        "name": "version",
        "in": "path",
        "required": true,
        "description": "A version number or an alias",
        "schema": { "type": "string", "enum": versions },
    })
}

fn v2_get(summary: &str, schema: &str, versions: Option<&[&String]>) -> Value {
    let mut path = get(summary, schema, "V2Error");
    if let Some(versions) = versions {
        path["get"]["parameters"] = json!([version_parameter(versions)]);
    }
    path
}

fn predict_path(spec: &ModelSpec, what: &str) -> Value {
    json!({ "post": {
        "summary": format!("Predict with {what}"),
        "description": spec.description,
        "parameters": [{
            "name": headers::CALLER_KEY,
            "in": "header",
            "required": false,
            "description": "The caller's identity: a traffic split sends the same caller to the same version",
            "schema": { "type": "string" },
        }],
        "requestBody": {
            "required": true,
            "content": json_content(reference(&request_schema_name(spec))),
        },
        "responses": with_errors(
            json!({ "description": "The prediction", "content": json_content(reference(match spec.task {
                Task::Classification => "Prediction",
                Task::Embedding => "Embeddings",
            })) }),
            "Error",
        ),
    }})
}

fn infer_path(spec: &ModelSpec, versions: Option<&[&String]>) -> Value {
    let mut path = json!({ "post": {
        "summary": format!("KServe v2 inference on {}", spec.name),
        "description": "JSON tensors, or Triton's binary tensor data extension \
            (Inference-Header-Content-Length; binary_data_size, binary_data, binary_data_output)",
        "requestBody": {
            "required": true,
            "content": json_content(reference(&tensors_schema_name(spec))),
        },
        "responses": with_errors(
            json!({ "description": "The outputs", "content": json_content(reference("V2InferResponse")) }),
            "V2Error",
        ),
    }});
    if let Some(versions) = versions {
        path["post"]["parameters"] = json!([version_parameter(versions)]);
    }
    path
}

/// A `/predict` body: named features with their rules, or an image.
fn predict_request(spec: &ModelSpec) -> Value {
    if let Some(tabular) = &spec.tabular {
        let mut properties = Map::new();
        for feature in &tabular.features {
            let mut schema = json!({
                "type": match feature.kind {
                    FeatureKind::Integer => "integer",
                    FeatureKind::Number => "number",
                },
                "minimum": feature.min,
                "maximum": feature.max,
                "description": describe(&feature.description, &feature.unit),
            });
            if let Some(default) = feature.default {
                schema["default"] = json!(default);
            }
            properties.insert(feature.name.clone(), schema);
        }
        let required: Vec<&String> = tabular
            .features
            .iter()
            .filter(|f| f.required)
            .map(|f| &f.name)
            .collect();
        return json!({
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": false,
        });
    }
    if spec.text.is_some() {
        return json!({
            "type": "object",
            "properties": {
                "text": { "type": "string", "description": "One text to embed" },
                "texts": {
                    "type": "array",
                    "items": { "type": "string" },
                    "minItems": 1,
                    "maxItems": MAX_TEXTS,
                    "description": "Texts to embed, answered in order",
                },
            },
            "oneOf": [{ "required": ["text"] }, { "required": ["texts"] }],
            "additionalProperties": false,
        });
    }
    let top_k = spec
        .vision
        .as_ref()
        .map_or(1, |v| v.top_k.min(spec.labels.len()));
    json!({
        "type": "object",
        "properties": {
            "image": {
                "type": "string",
                "description": "A PNG or JPEG image, base64 (a data: URL is accepted), any size; resized in the function",
                "contentEncoding": "base64",
            },
            "top_k": {
                "type": "integer",
                "minimum": 1,
                "maximum": spec.labels.len(),
                "default": top_k,
                "description": "How many of the most probable classes the reply lists",
            },
        },
        "required": ["image"],
        "additionalProperties": false,
    })
}

/// `POST /v1/embeddings` (OpenAI's embeddings API) over the text models, if there are any.
fn openai_embeddings(models: &[Documented]) -> Option<Value> {
    let embedding_models: Vec<&ModelSpec> = models
        .iter()
        .filter_map(|m| m.specs.last())
        .filter(|spec| spec.task == Task::Embedding)
        .collect();
    if embedding_models.is_empty() {
        return None;
    }
    let names: Vec<&String> = embedding_models.iter().map(|s| &s.name).collect();
    let mut dimensions: Vec<usize> = embedding_models.iter().map(|s| s.dimensions()).collect();
    dimensions.sort_unstable();
    dimensions.dedup();
    let request = json!({
        "type": "object",
        "properties": {
            "model": { "type": "string", "enum": names },
            "input": {
                "oneOf": [
                    { "type": "string" },
                    { "type": "array", "items": { "type": "string" }, "minItems": 1, "maxItems": MAX_TEXTS },
                ],
                "description": "A text or texts to embed (token arrays are not accepted)",
            },
            "encoding_format": { "enum": ["float", "base64"], "default": "float" },
            "dimensions": { "type": "integer", "enum": dimensions, "description": "The model's own; vectors are not shortened" },
            "user": { "type": "string", "description": "Accepted and ignored" },
        },
        "required": ["model", "input"],
        "additionalProperties": false,
    });
    Some(json!({ "post": {
        "summary": "OpenAI-compatible embeddings",
        "description": "The request and reply of OpenAI's POST /v1/embeddings, so its clients work unchanged",
        "requestBody": { "required": true, "content": json_content(request) },
        "responses": with_errors(
            json!({ "description": "The embeddings", "content": json_content(reference("OpenAIEmbeddings")) }),
            "Error",
        ),
    }}))
}

fn describe(description: &str, unit: &str) -> String {
    match unit {
        "" => description.to_string(),
        unit => format!("{description} ({unit})"),
    }
}

/// A v2 infer body with the model's input tensors.
fn infer_request(spec: &ModelSpec) -> Value {
    let inputs: Vec<Value> = spec
        .inputs
        .iter()
        .map(|input| {
            json!({
                "type": "object",
                "properties": {
                    "name": { "const": input.name },
                    "datatype": { "const": input.datatype.as_str() },
                    "shape": shape_schema(&input.shape),
                    "data": {
                        "type": "array",
                        "description": "Row-major elements, flat or nested",
                        "items": { "type": ["number", "array"] },
                    },
                    "parameters": reference("V2Parameters"),
                },
                "required": ["name", "datatype", "shape"],
            })
        })
        .collect();
    json!({
        "type": "object",
        "properties": {
            "id": { "type": "string" },
            "inputs": {
                "type": "array",
                "minItems": 1,
                "items": if inputs.len() == 1 { inputs[0].clone() } else { json!({ "oneOf": inputs }) },
            },
            "outputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "name": { "enum": spec.outputs.iter().map(|o| &o.name).collect::<Vec<_>>() },
                        "parameters": reference("V2Parameters"),
                    },
                    "required": ["name"],
                },
            },
            "parameters": reference("V2Parameters"),
        },
        "required": ["inputs"],
    })
}

/// A declared shape as JSON Schema: each fixed dimension a constant, each `-1` (the batch) from 1
/// to [`MAX_BATCH`].
fn shape_schema(declared: &[i64]) -> Value {
    let dims: Vec<Value> = declared
        .iter()
        .map(|&d| match d {
            d if d < 0 => json!({ "type": "integer", "minimum": 1, "maximum": MAX_BATCH }),
            d => json!({ "const": d }),
        })
        .collect();
    json!({
        "type": "array",
        "description": format!("{declared:?}; -1 is the batch, at most {MAX_BATCH}"),
        "prefixItems": dims,
        "items": false,
        "minItems": declared.len(),
    })
}

/// The schemas every document shares: replies and error envelopes.
fn common_schemas() -> Map<String, Value> {
    let datatypes: Vec<&str> = [
        DataType::Fp32,
        DataType::Fp64,
        DataType::Int32,
        DataType::Int64,
    ]
    .iter()
    .map(|d| d.as_str())
    .collect();
    let string_map = json!({ "type": "object", "additionalProperties": { "type": "string" } });
    let model_versions = json!({
        "type": "object",
        "properties": {
            "name": { "type": "string" },
            "versions": { "type": "array", "items": { "type": "string" } },
            "aliases": string_map,
        },
        "required": ["name", "versions"],
    });
    let tensor_metadata = json!({
        "type": "object",
        "properties": {
            "name": { "type": "string" },
            "datatype": { "enum": datatypes },
            "shape": { "type": "array", "items": { "type": "integer" } },
        },
        "required": ["name", "datatype", "shape"],
    });
    let schemas = json!({
        "Empty": { "type": "object" },
        "Error": {
            "type": "object",
            "properties": { "error": {
                "type": "object",
                "properties": {
                    "code": { "type": "string", "description": "A stable name clients match on, e.g. missing_feature" },
                    "message": { "type": "string", "description": "The rule that was broken" },
                    "field": { "type": "string", "description": "The request field at fault" },
                },
                "required": ["code", "message"],
            }},
            "required": ["error"],
        },
        "V2Error": {
            "type": "object",
            "properties": {
                "error": { "type": "string" },
                "code": { "type": "string" },
                "field": { "type": "string" },
            },
            "required": ["error"],
        },
        "Prediction": {
            "type": "object",
            "properties": {
                "model": { "type": "string" },
                "model_version": { "type": "string" },
                "prediction": { "type": "integer", "minimum": 0 },
                "label": { "type": "string" },
                "confidence": { "type": "number", "minimum": 0, "maximum": 1 },
                "probabilities": { "type": "array", "items": { "type": "number" } },
                "labels": { "type": "array", "items": { "type": "string" } },
                "top_k": {
                    "type": "array",
                    "description": "Vision models: the most probable classes, most probable first",
                    "items": {
                        "type": "object",
                        "properties": {
                            "index": { "type": "integer", "minimum": 0 },
                            "label": { "type": "string" },
                            "probability": { "type": "number", "minimum": 0, "maximum": 1 },
                        },
                        "required": ["index", "label", "probability"],
                    },
                },
                "timestamp": { "type": "string", "format": "date-time" },
                "fallback": {
                    "type": "object",
                    "description": "Set when another version, or the model's declared default answer, answered for a failed one",
                    "properties": {
                        "from_version": { "type": "string" },
                        "reason": { "type": "string" },
                        "default_answer": { "type": "boolean" },
                    },
                },
            },
            "required": ["model", "prediction"],
        },
        "Embeddings": {
            "type": "object",
            "properties": {
                "model": { "type": "string" },
                "model_version": { "type": "string" },
                "embeddings": { "type": "array", "items": { "type": "array", "items": { "type": "number" } } },
                "dimensions": { "type": "integer", "minimum": 1 },
                "tokens": { "type": "integer", "minimum": 0, "description": "Tokens embedded, special tokens included" },
                "timestamp": { "type": "string", "format": "date-time" },
            },
            "required": ["model", "model_version", "embeddings", "dimensions", "tokens"],
        },
        "OpenAIEmbeddings": {
            "type": "object",
            "properties": {
                "object": { "const": "list" },
                "data": { "type": "array", "items": {
                    "type": "object",
                    "properties": {
                        "object": { "const": "embedding" },
                        "index": { "type": "integer", "minimum": 0 },
                        "embedding": { "oneOf": [
                            { "type": "array", "items": { "type": "number" } },
                            { "type": "string", "contentEncoding": "base64", "description": "little-endian float32s" },
                        ]},
                    },
                    "required": ["object", "index", "embedding"],
                }},
                "model": { "type": "string" },
                "usage": {
                    "type": "object",
                    "properties": {
                        "prompt_tokens": { "type": "integer", "minimum": 0 },
                        "total_tokens": { "type": "integer", "minimum": 0 },
                    },
                    "required": ["prompt_tokens", "total_tokens"],
                },
            },
            "required": ["object", "data", "model", "usage"],
        },
        "Health": {
            "type": "object",
            "properties": {
                "status": { "const": "ok" },
                "models": { "type": "array", "items": model_versions },
            },
            "required": ["status", "models"],
        },
        "Models": {
            "type": "object",
            "properties": { "models": { "type": "array", "items": model_versions } },
            "required": ["models"],
        },
        "V2ServerMetadata": {
            "type": "object",
            "properties": {
                "name": { "type": "string" },
                "version": { "type": "string" },
                "extensions": { "type": "array", "items": { "type": "string" } },
            },
            "required": ["name", "version", "extensions"],
        },
        "V2ModelMetadata": {
            "type": "object",
            "properties": {
                "name": { "type": "string" },
                "versions": { "type": "array", "items": { "type": "string" } },
                "platform": { "type": "string" },
                "inputs": { "type": "array", "items": tensor_metadata },
                "outputs": { "type": "array", "items": tensor_metadata },
            },
            "required": ["name", "platform", "inputs", "outputs"],
        },
        "V2InferResponse": {
            "type": "object",
            "properties": {
                "model_name": { "type": "string" },
                "model_version": { "type": "string" },
                "id": { "type": "string" },
                "outputs": { "type": "array", "items": {
                    "type": "object",
                    "properties": {
                        "name": { "type": "string" },
                        "datatype": { "enum": datatypes },
                        "shape": { "type": "array", "items": { "type": "integer" } },
                        "data": { "type": "array", "items": { "type": "number" } },
                        "parameters": reference("V2Parameters"),
                    },
                    "required": ["name", "datatype", "shape"],
                }},
            },
            "required": ["model_name", "outputs"],
        },
        "V2Parameters": {
            "type": "object",
            "properties": {
                (binary::DATA_SIZE): { "type": "integer", "minimum": 0 },
                (binary::DATA): { "type": "boolean" },
                (binary::DATA_OUTPUT): { "type": "boolean" },
            },
        },
    });
    match schemas {
        Value::Object(map) => map,
        _ => unreachable!("a JSON object literal"),
    }
}
