//! Inference through the host's `wasi:nn`: graphs are loaded by name, never parsed in the guest.

use crate::app::Inference;
use crate::spec::ModelSpec;
use crate::tensor::{DataType, Tensor, TensorData};
use ember_contract::{ApiError, Code};

wit_bindgen::generate!({ path: "wit/wasi-nn.wit", world: "ml" });

use self::wasi::nn::{errors, graph, tensor};

/// The host's wasi-nn, reached by graph name `<model>/<version>`.
pub struct WasiNn;

impl Inference for WasiNn {
    fn infer(&self, spec: &ModelSpec, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, ApiError> {
        let graph =
            graph::load_by_name(&spec.model_version().to_string()).map_err(|e| match e.code() {
                errors::ErrorCode::NotFound => ApiError::new(
                    Code::ModelNotReady,
                    format!(
                        "model '{}' version {} is not loaded",
                        spec.name, spec.version
                    ),
                ),
                _ => failed(&e),
            })?;
        let context = graph.init_execution_context().map_err(|e| failed(&e))?;
        let named = inputs
            .into_iter()
            .map(|t| {
                let dims: Vec<u32> = t.shape.iter().map(|d| *d as u32).collect();
                let ty = tensor_type(t.data.datatype());
                (t.name, tensor::Tensor::new(&dims, ty, t.data.as_le_bytes()))
            })
            .collect();
        let outputs = context.compute(named).map_err(|e| failed(&e))?;
        outputs
            .into_iter()
            .map(|(name, t)| {
                let datatype = data_type(t.ty()).ok_or_else(unsupported)?;
                let data =
                    TensorData::from_le_bytes(datatype, &t.data()).ok_or_else(unsupported)?;
                let shape = t.dimensions().iter().map(|d| *d as usize).collect();
                Ok(Tensor { name, shape, data })
            })
            .collect()
    }
}

fn failed(error: &errors::Error) -> ApiError {
    // The host's message stays in the host's logs; the client learns only that inference failed.
    let _ = error.data();
    ApiError::new(Code::InferenceFailed, "inference failed")
}

fn unsupported() -> ApiError {
    ApiError::new(
        Code::InferenceFailed,
        "the model returned an unsupported tensor",
    )
}

fn tensor_type(datatype: DataType) -> tensor::TensorType {
    match datatype {
        DataType::Fp32 => tensor::TensorType::Fp32,
        DataType::Fp64 => tensor::TensorType::Fp64,
        DataType::Int32 => tensor::TensorType::I32,
        DataType::Int64 => tensor::TensorType::I64,
    }
}

fn data_type(ty: tensor::TensorType) -> Option<DataType> {
    Some(match ty {
        tensor::TensorType::Fp32 => DataType::Fp32,
        tensor::TensorType::Fp64 => DataType::Fp64,
        tensor::TensorType::I32 => DataType::Int32,
        tensor::TensorType::I64 => DataType::Int64,
        _ => return None,
    })
}
