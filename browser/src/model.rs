//! The `Model` class JavaScript uses: load a model version's spec and graph, pick a backend,
//! predict with the server's validation, preprocessing and postprocessing.

use std::rc::Rc;

use ember_contract::names::REFERENCE_FILE;
use ember_contract::{ApiError, Code};
use ember_function::app::embed::embeddings_reply;
use ember_function::app::predict::{finish, parse_json, prepare};
use ember_function::app::reply::Prediction;
use ember_function::spec::ModelSpec;
use ember_function::spec::Task;
use ember_function::tensor::Tensor;
use ember_function::text::{self, TextEncoder};
use ember_function::tract::TractModel;
use serde_json::{json, Value};
use wasm_bindgen::prelude::*;

use crate::backend::{probes, reference_probes, self_check, Choice, Requested};
use crate::fetch;
use crate::webgpu::{self, WebGpuSession};

/// A model version loaded in the page, ready to predict.
#[wasm_bindgen]
pub struct Model {
    inner: Rc<Loaded>,
}

struct Loaded {
    spec: ModelSpec,
    /// A text model's tokenizer (`tokenizer.json` beside `model.json`).
    encoder: Option<TextEncoder>,
    engine: Engine,
    choice: Choice,
    load_ms: f64,
}

enum Engine {
    WebGpu(WebGpuSession),
    Cpu(TractModel),
}

#[wasm_bindgen]
impl Model {
    /// Fetches the version's `model.json` and ONNX graph and prepares a backend (the
    /// `reference.json` beside `model.json`, when there is one, joins WebGPU's self-check):
    /// `options.backend` is `"auto"` (default: WebGPU when an adapter exists and the graph passes
    /// the self-check against tract, else the CPU), `"webgpu"` (or a rejection saying why not) or
    /// `"cpu"`. Rejects with `{status, error: {code, message, field}}`.
    pub async fn load(
        spec_url: String,
        onnx_url: String,
        options: JsValue,
    ) -> Result<Model, JsValue> {
        let started = now_ms();
        let backend = js_sys::Reflect::get(&options, &"backend".into())
            .ok()
            .and_then(|v| v.as_string());
        let requested = Requested::parse(backend.as_deref()).map_err(to_js)?;
        let spec_bytes = fetch::bytes(&spec_url).await.map_err(to_js)?;
        let spec: ModelSpec = serde_json::from_slice(&spec_bytes)
            .map_err(|e| not_ready(format!("{spec_url} is not a model spec: {e}")))?;
        let onnx = fetch::bytes(&onnx_url).await.map_err(to_js)?;
        let cpu = TractModel::parse_with_single_row_plan(&onnx)
            .map_err(|e| not_ready(format!("the graph failed to load: {e}")))?;
        let encoder = match &spec.text {
            None => None,
            Some(text_spec) => {
                let url = beside(&spec_url, &text_spec.tokenizer);
                let bytes = fetch::bytes(&url).await.map_err(to_js)?;
                Some(
                    TextEncoder::from_bytes(&bytes, text_spec)
                        .map_err(|e| not_ready(format!("{url} is not a tokenizer: {e}")))?,
                )
            }
        };
        let (engine, choice) = match requested {
            Requested::Auto if encoder.is_some() => (
                Engine::Cpu(cpu),
                Choice {
                    name: "cpu",
                    reason: format!("tract on the CPU: {TEXT_ON_CPU}"),
                },
            ),
            Requested::WebGpu if encoder.is_some() => {
                return Err(to_js(
                    ApiError::new(
                        Code::BackendUnavailable,
                        format!("WebGPU was requested but {TEXT_ON_CPU}"),
                    )
                    .with_field("backend"),
                ))
            }
            Requested::Cpu => (
                Engine::Cpu(cpu),
                Choice {
                    name: "cpu",
                    reason: "tract on the CPU, as requested".into(),
                },
            ),
            Requested::Auto | Requested::WebGpu => {
                // The reference cases beside model.json, when the version has them, join the
                // self-check.
                let reference_url = beside(&spec_url, REFERENCE_FILE);
                let reference = fetch::bytes(&reference_url).await.ok();
                match try_webgpu(&spec, &onnx, &cpu, reference.as_deref()).await {
                    Ok((session, reason)) => (
                        Engine::WebGpu(session),
                        Choice {
                            name: "webgpu",
                            reason,
                        },
                    ),
                    Err(why) if requested == Requested::Auto => (
                        Engine::Cpu(cpu),
                        Choice {
                            name: "cpu",
                            reason: format!("tract on the CPU: {why}"),
                        },
                    ),
                    Err(why) => {
                        return Err(to_js(
                            ApiError::new(
                                Code::BackendUnavailable,
                                format!("WebGPU was requested but {why}"),
                            )
                            .with_field("backend"),
                        ))
                    }
                }
            }
        };
        Ok(Model {
            inner: Rc::new(Loaded {
                spec,
                encoder,
                engine,
                choice,
                load_ms: now_ms() - started,
            }),
        })
    }

    /// Validates and preprocesses `input` (the `/predict` body, e.g. `{age: 41, …}`,
    /// `{image: "<base64 PNG>"}` or `{text: "…"}`), runs the graph and resolves to the `/predict` reply plus
    /// `backend: {name, reason}` and `latency_ms`; invalid input rejects with the server's
    /// `{status, error: {code, message, field}}`.
    pub fn predict(&self, input: JsValue) -> js_sys::Promise {
        let loaded = Rc::clone(&self.inner);
        wasm_bindgen_futures::future_to_promise(async move {
            let started = now_ms();
            let mut reply = loaded.predict(&input).await.map_err(to_js)?;
            reply["backend"] =
                json!({ "name": loaded.choice.name, "reason": loaded.choice.reason });
            reply["latency_ms"] = json!(now_ms() - started);
            Ok(to_js_value(&reply))
        })
    }

    /// `webgpu` or `cpu`.
    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        self.inner.choice.name.to_string()
    }

    /// Why that backend runs this model.
    #[wasm_bindgen(getter, js_name = backendReason)]
    pub fn backend_reason(&self) -> String {
        self.inner.choice.reason.clone()
    }

    /// Milliseconds `load` took: fetching, parsing, compiling and the self-check.
    #[wasm_bindgen(getter, js_name = loadMs)]
    pub fn load_ms(&self) -> f64 {
        self.inner.load_ms
    }

    /// The version's spec (`model.json`): name, version, labels, inputs and preprocessing.
    #[wasm_bindgen(getter)]
    pub fn spec(&self) -> JsValue {
        to_js_value(&serde_json::to_value(&self.inner.spec).unwrap_or_default())
    }
}

impl Loaded {
    async fn predict(&self, input: &JsValue) -> Result<Value, ApiError> {
        let body = js_sys::JSON::stringify(input)
            .ok()
            .and_then(|s| s.as_string())
            .unwrap_or_default();
        let body = parse_json(body.as_bytes())?;
        if self.spec.task == Task::Embedding {
            return self.embed(&body).await;
        }
        let prepared = prepare(&self.spec, &body)?;
        let outputs = self.infer(vec![prepared.input]).await?;
        let result = finish(&self.spec, &outputs)?;
        Ok(Prediction::new(&self.spec, &result, prepared.top_k).to_json())
    }

    /// A text model's `/predict`: each text tokenized and embedded, as the function does.
    async fn embed(&self, body: &Value) -> Result<Value, ApiError> {
        let (Some(text_spec), Some(encoder)) = (&self.spec.text, &self.encoder) else {
            return Err(ApiError::new(
                Code::ModelNotReady,
                "model has no text preprocessing",
            ));
        };
        let mut vectors = Vec::new();
        let mut tokens = 0;
        for input in text::predict_texts(body)? {
            let prepared = text::to_tensors(text_spec, encoder, &input)?;
            let outputs = self.infer(prepared.inputs).await?;
            vectors.push(text::embedding(&self.spec, &outputs)?);
            tokens += prepared.tokens;
        }
        Ok(embeddings_reply(&self.spec, &vectors, tokens))
    }

    async fn infer(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, ApiError> {
        let failed = |e: String| ApiError::new(Code::InferenceFailed, e);
        match &self.engine {
            Engine::WebGpu(session) => session.run(&inputs).await.map_err(failed),
            Engine::Cpu(model) => model.run_tensors(inputs).map_err(|e| failed(e.to_string())),
        }
    }
}

/// Compiles the graph with wonnx and checks it against tract on the probes and the reference
/// cases; `Err` says why WebGPU can't serve this model here.
async fn try_webgpu(
    spec: &ModelSpec,
    onnx: &[u8],
    cpu: &TractModel,
    reference: Option<&[u8]>,
) -> Result<(WebGpuSession, String), String> {
    let adapter = webgpu::adapter().await?;
    let session = WebGpuSession::compile(onnx).await?;
    let mut inputs = probes(spec);
    if let Some(reference) = reference {
        inputs.extend(reference_probes(spec, reference)?);
    }
    let count = inputs.len();
    let mut difference = 0.0f64;
    for probe in inputs {
        let expected = cpu
            .run_tensors(vec![probe.clone()])
            .map_err(|e| format!("tract failed on the self-check: {e}"))?;
        let got = session.run(&[probe]).await?;
        difference = difference.max(self_check(spec, &got, &expected)?);
    }
    Ok((
        session,
        format!("wonnx on WebGPU adapter {adapter}; self-check on {count} inputs within {difference:.1e} of tract"),
    ))
}

/// Why text models run on the CPU: wonnx has none of an int8 transformer's integer ops.
const TEXT_ON_CPU: &str =
    "wonnx (WebGPU) has no MatMulInteger or DynamicQuantizeLinear, which this int8 text model runs on";

/// The URL of `file` in the same folder as `url`.
fn beside(url: &str, file: &str) -> String {
    match url.rsplit_once('/') {
        Some((dir, _)) => format!("{dir}/{file}"),
        None => file.to_string(),
    }
}

/// A 503 `model_not_ready` rejection: the version's files could not be used.
fn not_ready(message: String) -> JsValue {
    to_js(ApiError::new(Code::ModelNotReady, message))
}

/// The rejection value for an error: the server's body with its status.
fn to_js(error: ApiError) -> JsValue {
    let mut body = error.to_json();
    body["status"] = json!(error.status());
    to_js_value(&body)
}

/// A JSON value as a plain JavaScript object.
fn to_js_value(value: &Value) -> JsValue {
    js_sys::JSON::parse(&value.to_string()).unwrap_or(JsValue::NULL)
}

/// `performance.now()` in milliseconds.
fn now_ms() -> f64 {
    web_sys::window()
        .and_then(|w| w.performance())
        .map(|p| p.now())
        .unwrap_or_default()
}
