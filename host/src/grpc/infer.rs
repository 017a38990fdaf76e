//! `ModelInfer` as the function's REST v2 infer call in Triton's binary tensor data form: the
//! inputs' `raw_input_contents` go after the JSON header as binary tensor data (typed `contents`
//! go in the header as JSON data), every output is asked for as binary data, and the reply's
//! binary outputs become `raw_output_contents` without a copy.

use std::collections::HashMap;

use bytes::Bytes;
use ember_contract::headers;
use ember_function::v2::binary;
use serde_json::{json, Map, Value};
use tonic::Status;

use super::proto::infer_parameter::ParameterChoice;
use super::proto::model_infer_response::InferOutputTensor;
use super::proto::{InferParameter, InferTensorContents, ModelInferRequest, ModelInferResponse};

/// A v2 REST infer body: the JSON header, then the inputs' bytes.
#[derive(Debug)]
pub struct RestInfer {
    /// The JSON header's length (`Inference-Header-Content-Length`).
    pub header_length: usize,
    /// The whole body.
    pub body: Vec<u8>,
}

/// The REST v2 infer body for `request`; a request that cannot be one is refused naming its field.
pub fn to_rest(request: &ModelInferRequest) -> Result<RestInfer, Status> {
    let raw = &request.raw_input_contents;
    if !raw.is_empty() && raw.len() != request.inputs.len() {
        return Err(Status::invalid_argument(format!(
            "raw_input_contents holds {} tensors for {} inputs: send one per input, in order, or none",
            raw.len(),
            request.inputs.len()
        )));
    }
    let mut tensor_data = Vec::new();
    let mut inputs = Vec::with_capacity(request.inputs.len());
    for (i, input) in request.inputs.iter().enumerate() {
        let mut tensor = json!({
            "name": input.name,
            "datatype": input.datatype,
            "shape": input.shape,
        });
        let mut parameters = parameters_json(&input.parameters);
        match (raw.get(i), &input.contents) {
            (Some(_), Some(_)) => {
                return Err(Status::invalid_argument(format!(
                    "inputs[{i}].contents: an input's typed contents and raw_input_contents exclude each other"
                )))
            }
            (Some(bytes), None) => {
                parameters.insert(binary::DATA_SIZE.into(), json!(bytes.len()));
                tensor_data.extend_from_slice(bytes);
            }
            (None, Some(contents)) => {
                tensor["data"] = contents_json(&input.datatype, contents, i)?;
            }
            // The function refuses it, naming the input and its expected length.
            (None, None) => tensor["data"] = json!([]),
        }
        if !parameters.is_empty() {
            tensor["parameters"] = Value::Object(parameters);
        }
        inputs.push(tensor);
    }
    let outputs: Vec<Value> = request
        .outputs
        .iter()
        .map(|output| {
            let mut parameters = parameters_json(&output.parameters);
            parameters.insert(binary::DATA.into(), json!(true));
            json!({ "name": output.name, "parameters": parameters })
        })
        .collect();
    let mut parameters = parameters_json(&request.parameters);
    parameters.insert(binary::DATA_OUTPUT.into(), json!(true));
    let mut header = json!({ "inputs": inputs, "parameters": parameters });
    if !outputs.is_empty() {
        header["outputs"] = json!(outputs);
    }
    if !request.id.is_empty() {
        header["id"] = json!(request.id);
    }
    let mut body = serde_json::to_vec(&header).expect("JSON values serialize");
    let header_length = body.len();
    body.extend_from_slice(&tensor_data);
    Ok(RestInfer {
        header_length,
        body,
    })
}

/// The `ModelInferResponse` for the function's successful infer reply.
pub fn from_rest(headers: &http::HeaderMap, body: &Bytes) -> Result<ModelInferResponse, Status> {
    let header_length = headers
        .get(headers::INFERENCE_HEADER_CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok());
    let untranslatable = |why: String| {
        tracing::error!(
            why,
            "the function's v2 infer reply does not translate to gRPC"
        );
        Status::internal("the function's reply could not be translated")
    };
    let split =
        binary::split(header_length, body).map_err(|error| untranslatable(error.message))?;
    let header = split.header;
    let mut tensors = split.tensors;
    let listed = header["outputs"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut outputs = Vec::with_capacity(listed.len());
    let mut raw_output_contents = Vec::with_capacity(listed.len());
    for (i, output) in listed.iter().enumerate() {
        let field = format!("outputs[{i}]");
        let size = binary::data_size(output, &field)
            .map_err(|error| untranslatable(error.message))?
            .ok_or_else(|| untranslatable(format!("{field} came back as JSON")))?;
        let bytes = tensors
            .claim(size, &field)
            .map_err(|error| untranslatable(error.message))?;
        raw_output_contents.push(body.slice_ref(bytes));
        let mut parameters = parameters_proto(&output["parameters"]);
        parameters.remove(binary::DATA_SIZE);
        outputs.push(InferOutputTensor {
            name: string(&output["name"]),
            datatype: string(&output["datatype"]),
            shape: output["shape"]
                .as_array()
                .map(|dims| dims.iter().filter_map(Value::as_i64).collect())
                .unwrap_or_default(),
            parameters,
            contents: None,
        });
    }
    tensors
        .finish()
        .map_err(|error| untranslatable(error.message))?;
    Ok(ModelInferResponse {
        model_name: string(&header["model_name"]),
        model_version: string(&header["model_version"]),
        id: string(&header["id"]),
        parameters: parameters_proto(&header["parameters"]),
        outputs,
        raw_output_contents,
    })
}

fn string(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_string()
}

/// Typed tensor contents as the JSON `data` of a v2 tensor: the contents field the datatype
/// reads from, as v2 REST's JSON tensors have it.
fn contents_json(
    datatype: &str,
    contents: &InferTensorContents,
    input: usize,
) -> Result<Value, Status> {
    Ok(match datatype {
        "BOOL" => json!(contents.bool_contents),
        "INT8" | "INT16" | "INT32" => json!(contents.int_contents),
        "INT64" => json!(contents.int64_contents),
        "UINT8" | "UINT16" | "UINT32" => json!(contents.uint_contents),
        "UINT64" => json!(contents.uint64_contents),
        // Widening is exact; a NaN becomes null, which the function refuses by name.
        "FP32" => json!(contents
            .fp32_contents
            .iter()
            .map(|x| f64::from(*x))
            .collect::<Vec<_>>()),
        "FP64" => json!(contents.fp64_contents),
        "BYTES" => json!(contents
            .bytes_contents
            .iter()
            .map(|b| String::from_utf8_lossy(b))
            .collect::<Vec<_>>()),
        other => {
            return Err(Status::invalid_argument(format!(
                "inputs[{input}].contents: datatype '{other}' has no typed contents field; send it in raw_input_contents"
            )))
        }
    })
}

/// gRPC parameters as a v2 JSON `parameters` object.
fn parameters_json(parameters: &HashMap<String, InferParameter>) -> Map<String, Value> {
    parameters
        .iter()
        .filter_map(|(name, parameter)| {
            let value = match parameter.parameter_choice.as_ref()? {
                ParameterChoice::BoolParam(b) => json!(b),
                ParameterChoice::Int64Param(n) => json!(n),
                ParameterChoice::StringParam(s) => json!(s),
                ParameterChoice::DoubleParam(x) => json!(x),
                ParameterChoice::Uint64Param(n) => json!(n),
            };
            Some((name.clone(), value))
        })
        .collect()
}

/// A v2 JSON `parameters` object as gRPC parameters (values of other JSON types are left out).
fn parameters_proto(parameters: &Value) -> HashMap<String, InferParameter> {
    let Some(parameters) = parameters.as_object() else {
        return HashMap::new();
    };
    parameters
        .iter()
        .filter_map(|(name, value)| {
            let choice = match value {
                Value::Bool(b) => ParameterChoice::BoolParam(*b),
                Value::String(s) => ParameterChoice::StringParam(s.clone()),
                Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                    (Some(n), _, _) => ParameterChoice::Int64Param(n),
                    (None, Some(n), _) => ParameterChoice::Uint64Param(n),
                    (None, None, Some(x)) => ParameterChoice::DoubleParam(x),
                    _ => return None,
                },
                _ => return None,
            };
            Some((
                name.clone(),
                InferParameter {
                    parameter_choice: Some(choice),
                },
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::proto::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
    use super::*;

    fn input(name: &str, datatype: &str, shape: &[i64]) -> InferInputTensor {
        InferInputTensor {
            name: name.into(),
            datatype: datatype.into(),
            shape: shape.to_vec(),
            ..Default::default()
        }
    }

    fn header(rest: &RestInfer) -> Value {
        serde_json::from_slice(&rest.body[..rest.header_length]).unwrap()
    }

    #[test]
    fn raw_inputs_become_binary_tensor_data_in_order() {
        let request = ModelInferRequest {
            model_name: "credit-risk".into(),
            id: "r1".into(),
            inputs: vec![input("a", "FP32", &[1, 2]), input("b", "INT64", &[1])],
            outputs: vec![InferRequestedOutputTensor {
                name: "probabilities".into(),
                ..Default::default()
            }],
            raw_input_contents: vec![
                Bytes::from_static(&[1, 2, 3, 4, 5, 6, 7, 8]),
                Bytes::from_static(&[9; 8]),
            ],
            ..Default::default()
        };
        let rest = to_rest(&request).unwrap();
        let header = header(&rest);
        assert_eq!(header["id"], "r1");
        assert_eq!(header["inputs"][0]["parameters"]["binary_data_size"], 8);
        assert_eq!(header["inputs"][1]["shape"], json!([1]));
        assert_eq!(header["outputs"][0]["parameters"]["binary_data"], true);
        assert_eq!(header["parameters"]["binary_data_output"], true);
        assert_eq!(
            &rest.body[rest.header_length..],
            &[1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 9, 9, 9, 9, 9]
        );
    }

    #[test]
    fn typed_contents_become_json_data_and_mismatches_are_refused() {
        let mut typed = input("input", "FP32", &[1, 2]);
        typed.contents = Some(InferTensorContents {
            fp32_contents: vec![0.5, 2.0],
            ..Default::default()
        });
        let request = ModelInferRequest {
            inputs: vec![typed.clone()],
            ..Default::default()
        };
        let rest = to_rest(&request).unwrap();
        assert_eq!(header(&rest)["inputs"][0]["data"], json!([0.5, 2.0]));
        assert_eq!(rest.body.len(), rest.header_length);

        let both = ModelInferRequest {
            inputs: vec![typed],
            raw_input_contents: vec![Bytes::from_static(&[0; 8])],
            ..Default::default()
        };
        assert!(to_rest(&both)
            .unwrap_err()
            .message()
            .contains("inputs[0].contents"));
        let short = ModelInferRequest {
            inputs: vec![input("a", "FP32", &[1]), input("b", "FP32", &[1])],
            raw_input_contents: vec![Bytes::from_static(&[0; 4])],
            ..Default::default()
        };
        assert!(to_rest(&short)
            .unwrap_err()
            .message()
            .contains("raw_input_contents"));
        let mut half = input("h", "FP16", &[1]);
        half.contents = Some(InferTensorContents::default());
        let half = ModelInferRequest {
            inputs: vec![half],
            ..Default::default()
        };
        assert_eq!(
            to_rest(&half).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }

    #[test]
    fn binary_outputs_become_raw_output_contents() {
        let json = serde_json::to_vec(&json!({
            "model_name": "credit-risk", "model_version": "1", "id": "r1",
            "outputs": [
                {"name": "probabilities", "datatype": "FP32", "shape": [1, 2], "parameters": {"binary_data_size": 8}},
                {"name": "label", "datatype": "INT64", "shape": [1], "parameters": {"binary_data_size": 8}},
            ],
        }))
        .unwrap();
        let mut body = json.clone();
        body.extend(0u8..16);
        let mut headers = http::HeaderMap::new();
        headers.insert(
            headers::INFERENCE_HEADER_CONTENT_LENGTH,
            json.len().to_string().parse().unwrap(),
        );
        let reply = from_rest(&headers, &Bytes::from(body)).unwrap();
        assert_eq!(
            (reply.model_name.as_str(), reply.model_version.as_str()),
            ("credit-risk", "1")
        );
        assert_eq!(reply.outputs[0].shape, vec![1, 2]);
        assert!(reply.outputs[0].parameters.is_empty());
        assert_eq!(
            reply.raw_output_contents[0].as_ref(),
            &[0, 1, 2, 3, 4, 5, 6, 7]
        );
        assert_eq!(
            reply.raw_output_contents[1].as_ref(),
            &[8, 9, 10, 11, 12, 13, 14, 15]
        );
        let truncated = Bytes::from(json);
        assert_eq!(
            from_rest(&headers, &truncated).unwrap_err().code(),
            tonic::Code::Internal
        );
    }
}
