//! KServe Open Inference Protocol v2 (REST): request checks and reply shapes, with JSON tensors
//! or Triton's [`binary`] tensor data extension.

pub mod binary;

use serde_json::{json, Map, Value};

use crate::catalog::ModelVersions;
use crate::spec::{ModelSpec, TensorSpec};
use crate::tensor::{DataType, Tensor, TensorData};
use ember_contract::{ApiError, Code};

/// Largest batch a v2 request may carry.
pub const MAX_BATCH: usize = 64;

/// A checked v2 inference request.
#[derive(Debug, Clone, PartialEq)]
pub struct InferRequest {
    /// The caller's request id, echoed in the reply.
    pub id: Option<String>,
    /// Input tensors, checked against the model's declaration.
    pub inputs: Vec<Tensor>,
    /// The outputs the caller asked for; empty means all.
    pub outputs: Vec<RequestedOutput>,
    /// Whether outputs not asked for by name go back as binary tensor data
    /// (`parameters.binary_data_output`).
    pub binary_output: bool,
}

/// An output a v2 request asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestedOutput {
    /// Its name in the model.
    pub name: String,
    /// Whether it goes back as binary tensor data (`parameters.binary_data`).
    pub binary: Option<bool>,
}

/// A v2 infer reply: the JSON header and the binary tensor data after it, if any output went
/// binary.
#[derive(Debug, Clone, PartialEq)]
pub struct InferReply {
    /// The JSON part.
    pub header: Value,
    /// The outputs' raw bytes, in the order the header lists them.
    pub tensor_data: Option<Vec<u8>>,
}

/// `GET /v2`: server metadata.
pub fn server_metadata() -> Value {
    json!({
        "name": "ember",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": [binary::EXTENSION],
    })
}

/// `GET /v2/models/{m}[/versions/{v}]`: model metadata.
pub fn model_metadata(spec: &ModelSpec, versions: &ModelVersions) -> Value {
    let tensors = |list: Vec<(&String, DataType, &Vec<i64>)>| -> Vec<Value> {
        list.into_iter()
            .map(|(name, dt, shape)| json!({"name": name, "datatype": dt.as_str(), "shape": shape}))
            .collect()
    };
    json!({
        "name": spec.name,
        "versions": versions.versions,
        "platform": "onnx",
        "inputs": tensors(spec.inputs.iter().map(|t| (&t.name, t.datatype, &t.shape)).collect()),
        "outputs": tensors(spec.outputs.iter().map(|t| (&t.name, t.datatype, &t.shape)).collect()),
    })
}

/// Parses and checks an infer request body against the model's declared inputs, split at its
/// `Inference-Header-Content-Length` when binary tensor data follows the JSON.
pub fn parse_infer(
    spec: &ModelSpec,
    header_length: Option<&str>,
    body: &[u8],
) -> Result<InferRequest, ApiError> {
    let binary::SplitBody {
        header: body,
        mut tensors,
    } = binary::split(header_length, body)?;
    let object = body.as_object().ok_or_else(|| {
        ApiError::invalid(
            Code::NotAnObject,
            "$",
            "the body must be a JSON object with 'inputs'",
        )
    })?;
    let id = match object.get("id") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(ApiError::invalid(
                Code::WrongType,
                "id",
                "'id' must be a string",
            ))
        }
    };
    let inputs = match object.get("inputs") {
        Some(Value::Array(a)) if !a.is_empty() => a,
        Some(_) => {
            return Err(ApiError::invalid(
                Code::WrongType,
                "inputs",
                "'inputs' must be a non-empty array of tensors",
            ))
        }
        None => {
            return Err(ApiError::invalid(
                Code::MissingField,
                "inputs",
                "'inputs' is missing",
            ))
        }
    };
    let mut parsed = Vec::with_capacity(inputs.len());
    for (i, input) in inputs.iter().enumerate() {
        let tensor = parse_input(spec, i, input, &mut tensors)?;
        if parsed.iter().any(|t: &Tensor| t.name == tensor.name) {
            let field = format!("inputs[{i}].name");
            return Err(ApiError::invalid(
                Code::DuplicateInput,
                &field,
                format!("input '{}' is given twice", tensor.name),
            ));
        }
        parsed.push(tensor);
    }
    if let Some(missing) = spec
        .inputs
        .iter()
        .find(|d| !parsed.iter().any(|t| t.name == d.name))
    {
        return Err(ApiError::invalid(
            Code::MissingInput,
            "inputs",
            format!("input '{}' is missing", missing.name),
        ));
    }
    let batch = parsed[0].shape[0];
    if let Some(t) = parsed.iter().find(|t| t.shape[0] != batch) {
        return Err(ApiError::invalid(
            Code::BatchMismatch,
            "inputs",
            format!("input '{}' has a different batch size", t.name),
        ));
    }
    tensors.finish()?;
    Ok(InferRequest {
        id,
        inputs: parsed,
        outputs: parse_requested_outputs(spec, object)?,
        binary_output: binary::flag(&body, binary::DATA_OUTPUT, "parameters.binary_data_output")?
            .unwrap_or(false),
    })
}

fn parse_requested_outputs(
    spec: &ModelSpec,
    object: &Map<String, Value>,
) -> Result<Vec<RequestedOutput>, ApiError> {
    let Some(requested) = object.get("outputs") else {
        return Ok(Vec::new());
    };
    let list = requested.as_array().ok_or_else(|| {
        ApiError::invalid(Code::WrongType, "outputs", "'outputs' must be an array")
    })?;
    list.iter()
        .enumerate()
        .map(|(i, o)| {
            let field = format!("outputs[{i}].name");
            let name = o.get("name").and_then(Value::as_str).ok_or_else(|| {
                ApiError::invalid(Code::MissingField, &field, "each output needs a 'name'")
            })?;
            binary::refuse_unsupported(o, &format!("outputs[{i}]"))?;
            let binary = binary::flag(o, binary::DATA, &format!("outputs[{i}].parameters"))?;
            if spec.outputs.iter().any(|d| d.name == name) {
                Ok(RequestedOutput {
                    name: name.to_string(),
                    binary,
                })
            } else {
                Err(ApiError::invalid(
                    Code::UnknownOutput,
                    &field,
                    format!("model has no output '{name}'"),
                ))
            }
        })
        .collect()
}

fn parse_input(
    spec: &ModelSpec,
    i: usize,
    input: &Value,
    tensor_bytes: &mut binary::TensorBytes,
) -> Result<Tensor, ApiError> {
    let field = |k: &str| format!("inputs[{i}].{k}");
    let get = |k: &str| {
        input.get(k).ok_or_else(|| {
            ApiError::invalid(
                Code::MissingField,
                field(k),
                format!("'{}' is missing", field(k)),
            )
        })
    };
    let name = get("name")?.as_str().ok_or_else(|| {
        ApiError::invalid(Code::WrongType, field("name"), "'name' must be a string")
    })?;
    let declared = spec.input(name).ok_or_else(|| {
        let known: Vec<&str> = spec.inputs.iter().map(|d| d.name.as_str()).collect();
        ApiError::invalid(
            Code::UnknownInput,
            field("name"),
            format!("model has no input '{name}'; expected {}", known.join(", ")),
        )
    })?;
    let datatype = get("datatype")?.as_str().unwrap_or_default();
    if DataType::parse(datatype) != Some(declared.datatype) {
        return Err(ApiError::invalid(
            Code::WrongDatatype,
            field("datatype"),
            format!(
                "input '{name}' has datatype {}, got '{datatype}'",
                declared.datatype.as_str()
            ),
        ));
    }
    let shape = parse_shape(declared, get("shape")?, &field("shape"))?;
    binary::refuse_unsupported(input, &format!("inputs[{i}]"))?;
    let expected = Tensor::element_count(&shape);
    let data = match binary::data_size(input, &field("parameters.binary_data_size"))? {
        Some(size) => {
            let size_field = field("parameters.binary_data_size");
            if input.get("data").is_some() {
                return Err(ApiError::invalid(
                    Code::BinaryDataMismatch,
                    field("data"),
                    "give either 'data' or parameters.binary_data_size, not both",
                ));
            }
            let bytes = tensor_bytes.claim(size, &size_field)?;
            let want = expected * declared.datatype.size();
            if size != want {
                return Err(ApiError::invalid(
                    Code::WrongDataLength,
                    size_field,
                    format!(
                        "shape {shape:?} of {} needs {want} bytes, got {size}",
                        declared.datatype.as_str()
                    ),
                ));
            }
            TensorData::from_le_bytes(declared.datatype, bytes)
                .expect("the size is a multiple of the element size")
        }
        None => {
            let mut flat = Vec::new();
            flatten(get("data")?, &mut flat, &field("data"))?;
            if flat.len() != expected {
                return Err(ApiError::invalid(
                    Code::WrongDataLength,
                    field("data"),
                    format!(
                        "shape {shape:?} needs {expected} elements, got {}",
                        flat.len()
                    ),
                ));
            }
            convert(declared.datatype, &flat, &field("data"))?
        }
    };
    if !data.is_finite() {
        return Err(ApiError::invalid(
            Code::NotFinite,
            field("data"),
            "FP32 and FP64 data must be finite and within range",
        ));
    }
    Ok(Tensor {
        name: name.to_string(),
        data,
        shape,
    })
}

fn parse_shape(declared: &TensorSpec, value: &Value, field: &str) -> Result<Vec<usize>, ApiError> {
    let dims: Option<Vec<usize>> = value
        .as_array()
        .map(|a| a.iter().map(|d| d.as_u64().map(|d| d as usize)).collect())
        .unwrap_or(None);
    let dims = dims.ok_or_else(|| {
        ApiError::invalid(
            Code::WrongType,
            field,
            "'shape' must be an array of non-negative integers",
        )
    })?;
    let matches = dims.len() == declared.shape.len()
        && dims
            .iter()
            .zip(&declared.shape)
            .all(|(d, want)| *want < 0 || *d as i64 == *want);
    if !matches || dims.first().copied().unwrap_or(0) == 0 {
        return Err(ApiError::invalid(
            Code::WrongShape,
            field,
            format!(
                "input '{}' has shape {:?} (-1 = any), got {dims:?}",
                declared.name, declared.shape
            ),
        ));
    }
    if dims[0] > MAX_BATCH {
        return Err(ApiError::invalid(
            Code::BatchTooLarge,
            field,
            format!("batch size {} exceeds the limit of {MAX_BATCH}", dims[0]),
        ));
    }
    Ok(dims)
}

/// Row-major flattening; KServe v2 allows flat or nested `data`.
fn flatten<'a>(value: &'a Value, out: &mut Vec<&'a Value>, field: &str) -> Result<(), ApiError> {
    match value {
        Value::Array(items) => items.iter().try_for_each(|v| flatten(v, out, field)),
        Value::Number(_) => {
            out.push(value);
            Ok(())
        }
        _ => Err(ApiError::invalid(
            Code::WrongType,
            field,
            "'data' must hold only numbers",
        )),
    }
}

fn convert(datatype: DataType, flat: &[&Value], field: &str) -> Result<TensorData, ApiError> {
    let numbers = || flat.iter().map(|v| v.as_f64().unwrap_or(f64::NAN));
    let integers = || {
        flat.iter().map(|v| {
            v.as_i64().ok_or_else(|| {
                ApiError::invalid(
                    Code::NotAnInteger,
                    field,
                    "integer tensors need integer data",
                )
            })
        })
    };
    Ok(match datatype {
        DataType::Fp32 => TensorData::F32(numbers().map(|x| x as f32).collect()),
        DataType::Fp64 => TensorData::F64(numbers().collect()),
        DataType::Int64 => TensorData::I64(integers().collect::<Result<_, _>>()?),
        DataType::Int32 => TensorData::I32(
            integers()
                .map(|r| {
                    r.and_then(|x| {
                        i32::try_from(x).map_err(|_| {
                            ApiError::invalid(Code::OutOfRange, field, "INT32 data out of range")
                        })
                    })
                })
                .collect::<Result<_, _>>()?,
        ),
    })
}

/// The reply to an infer request: the outputs asked for (all when none were named), each as
/// JSON `data` or, when asked, binary tensor data after the header.
pub fn infer_response(spec: &ModelSpec, request: &InferRequest, outputs: &[Tensor]) -> InferReply {
    let mut tensor_data: Option<Vec<u8>> = None;
    let mut listed = Vec::with_capacity(outputs.len());
    for tensor in outputs {
        let binary = if request.outputs.is_empty() {
            request.binary_output
        } else {
            match request.outputs.iter().find(|o| o.name == tensor.name) {
                Some(asked) => asked.binary.unwrap_or(request.binary_output),
                None => continue,
            }
        };
        let mut output = json!({
            "name": tensor.name,
            "datatype": tensor.data.datatype().as_str(),
            "shape": tensor.shape,
        });
        if binary {
            let bytes = tensor.data.as_le_bytes();
            output["parameters"] = json!({ (binary::DATA_SIZE): bytes.len() });
            tensor_data
                .get_or_insert_with(Vec::new)
                .extend_from_slice(bytes);
        } else {
            output["data"] = tensor.data.to_json();
        }
        listed.push(output);
    }
    let mut header = json!({
        "model_name": spec.name,
        "model_version": spec.version,
        "outputs": listed,
    });
    if let Some(id) = &request.id {
        header["id"] = json!(id);
    }
    InferReply {
        header,
        tensor_data,
    }
}
