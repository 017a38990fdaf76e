//! wonnx on WebGPU: an ONNX graph compiled to WGSL compute shaders, run through the browser's
//! `navigator.gpu`.

use std::collections::HashMap;

use ember_function::tensor::{Tensor, TensorData};
use protobuf::Message;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use wonnx::onnx::ModelProto;
use wonnx::utils::{InputTensor, OutputTensor};
use wonnx::Session;

use crate::wonnx_graph;

/// A graph compiled for the GPU.
pub struct WebGpuSession {
    session: Session,
}

impl WebGpuSession {
    /// Compiles an ONNX graph for batches of one, rewritten into forms wonnx implements
    /// ([`crate::wonnx_graph`]); errors name what wonnx can't run.
    pub async fn compile(onnx: &[u8]) -> Result<Self, String> {
        let mut model = ModelProto::parse_from_bytes(onnx)
            .map_err(|e| format!("wonnx cannot read the graph: {e}"))?;
        wonnx_graph::prepare(&mut model);
        let session = Session::from_model(model)
            .await
            .map_err(|e| format!("wonnx cannot run the graph: {e}"))?;
        Ok(Self { session })
    }

    /// Runs the graph; outputs come back flat (the caller knows their shapes from the spec).
    pub async fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, String> {
        let mut named = HashMap::new();
        for tensor in inputs {
            let input = match &tensor.data {
                TensorData::F32(v) => InputTensor::from(v.as_slice()),
                TensorData::I32(v) => InputTensor::from(v.as_slice()),
                TensorData::I64(v) => InputTensor::from(v.as_slice()),
                TensorData::F64(_) => return Err("wonnx has no FP64 inputs".into()),
            };
            named.insert(tensor.name.clone(), input);
        }
        let outputs = self
            .session
            .run(&named)
            .await
            .map_err(|e| format!("wonnx failed: {e}"))?;
        Ok(outputs
            .into_iter()
            .map(|(name, output)| {
                let data = match output {
                    OutputTensor::F32(v) => TensorData::F32(v),
                    OutputTensor::I32(v) => TensorData::I32(v),
                    OutputTensor::I64(v) => TensorData::I64(v),
                    OutputTensor::U8(v) => TensorData::I32(v.into_iter().map(i32::from).collect()),
                };
                Tensor {
                    shape: vec![data.len()],
                    name,
                    data,
                }
            })
            .collect())
    }
}

/// Describes the browser's WebGPU adapter (`navigator.gpu.requestAdapter()`), or says why there
/// is none. Checked before wonnx asks for a device, since wonnx panics without one.
pub async fn adapter() -> Result<String, String> {
    let global = js_sys::global();
    let gpu = get(&get(&global, "navigator"), "gpu");
    if gpu.is_undefined() || gpu.is_null() {
        return Err("navigator.gpu is unavailable (no WebGPU in this browser)".into());
    }
    let request = js_sys::Reflect::get(&gpu, &"requestAdapter".into())
        .ok()
        .and_then(|f| f.dyn_into::<js_sys::Function>().ok())
        .ok_or("navigator.gpu has no requestAdapter")?;
    let promise = request
        .call0(&gpu)
        .map_err(|e| format!("requestAdapter failed: {e:?}"))?;
    let adapter = JsFuture::from(js_sys::Promise::from(promise))
        .await
        .map_err(|e| format!("requestAdapter failed: {e:?}"))?;
    if adapter.is_null() || adapter.is_undefined() {
        return Err("navigator.gpu.requestAdapter() returned no adapter".into());
    }
    let info = get(&adapter, "info");
    let mut words: Vec<String> = ["vendor", "architecture", "description"]
        .iter()
        .filter_map(|key| get(&info, key).as_string())
        .filter(|s| !s.is_empty())
        .collect();
    if get(&adapter, "isFallbackAdapter").is_truthy() || get(&info, "isFallbackAdapter").is_truthy()
    {
        words.push("(software fallback adapter)".into());
    }
    if words.is_empty() {
        words.push("(unnamed)".into());
    }
    Ok(words.join(" "))
}

fn get(object: &JsValue, key: &str) -> JsValue {
    js_sys::Reflect::get(object, &key.into()).unwrap_or(JsValue::UNDEFINED)
}
