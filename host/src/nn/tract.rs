//! The tract-onnx backend for `wasi:nn`: pure Rust, no native library, no download.
//!
//! A graph is parsed and optimized once, into a shareable plan; each execution context only
//! borrows it, so a fresh instance per request never re-parses the model. Its cost (MACs per batch
//! row) comes from tract's per-op cost model, computed once at load.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use ember_contract::names::GRAPH_FILE;
use ember_function::tract::TractModel;
use tract_onnx::prelude::{DatumType, IntoTValue, TValue, Tensor as TractTensor};
use wasmtime_wasi_nn::backend::{BackendError, BackendGraph, NamedTensor};
use wasmtime_wasi_nn::wit::TensorType;
use wasmtime_wasi_nn::{Graph, Tensor};

use super::context::{invalid, NamedGraph, SharedGraph};
use super::{GraphLoader, LoadedGraph};

/// Loads ONNX graphs with tract.
#[derive(Default)]
pub struct TractBackend;

impl GraphLoader for TractBackend {
    fn load_dir(&self, dir: &Path) -> anyhow::Result<LoadedGraph> {
        let path = dir.join(GRAPH_FILE);
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let model = TractModel::parse_with_single_row_plan(&bytes)
            .map_err(|e| anyhow::anyhow!("{}: {e:?}", path.display()))?;
        tracing::debug!(path = %path.display(), single_row_plan = model.has_single_row_plan(), "tract loaded a graph");
        let macs_per_row = model.macs_per_row.unwrap_or_else(|| {
            tracing::warn!(path = %path.display(), "graph cost unknown; inference MACs are reported as 0");
            0
        });
        Ok(LoadedGraph {
            graph: Graph::from(Box::new(SharedGraph(Arc::new(model))) as Box<dyn BackendGraph>),
            macs_per_row,
        })
    }
}

/// Runs a model on `wasi:nn` tensors.
pub fn run_named(
    model: &TractModel,
    inputs: Vec<NamedTensor>,
) -> Result<Vec<NamedTensor>, BackendError> {
    let values = inputs
        .into_iter()
        .map(|t| Ok((t.name, to_tract(&t.tensor)?.into_tvalue())))
        .collect::<Result<_, BackendError>>()?;
    model
        .run(values)
        .map_err(tract_error)?
        .into_iter()
        .map(|(name, value)| {
            Ok(NamedTensor {
                name,
                tensor: from_tract(&value)?,
            })
        })
        .collect()
}

impl NamedGraph for TractModel {
    fn input_names(&self) -> &[String] {
        &self.inputs
    }

    fn run(&self, inputs: Vec<NamedTensor>) -> Result<Vec<NamedTensor>, BackendError> {
        run_named(self, inputs)
    }
}

fn to_tract(tensor: &Tensor) -> Result<TractTensor, BackendError> {
    let shape: Vec<usize> = tensor.dimensions.iter().map(|d| *d as usize).collect();
    let datum = match tensor.ty {
        TensorType::Fp32 => DatumType::F32,
        TensorType::Fp64 => DatumType::F64,
        TensorType::I32 => DatumType::I32,
        TensorType::I64 => DatumType::I64,
        TensorType::U8 => DatumType::U8,
        other => return Err(BackendError::UnsupportedTensorType(format!("{other:?}"))),
    };
    let expected = shape.iter().product::<usize>() * datum.size_of();
    if tensor.data.len() != expected {
        return Err(invalid(format!(
            "tensor data has {} bytes, its shape needs {expected}",
            tensor.data.len()
        )));
    }
    // SAFETY: the length was checked against shape × element size; tract copies the bytes into an
    // aligned buffer of `datum`, for which every bit pattern is a valid value.
    unsafe { TractTensor::from_raw_dt(datum, &shape, &tensor.data) }.map_err(tract_error)
}

fn from_tract(value: &TValue) -> Result<Tensor, BackendError> {
    let ty = match value.datum_type() {
        DatumType::F32 => TensorType::Fp32,
        DatumType::F64 => TensorType::Fp64,
        DatumType::I32 => TensorType::I32,
        DatumType::I64 => TensorType::I64,
        DatumType::U8 => TensorType::U8,
        other => return Err(BackendError::UnsupportedTensorType(format!("{other:?}"))),
    };
    let bytes = value.as_bytes().to_vec();
    Ok(Tensor::new(
        value.shape().iter().map(|d| *d as u32).collect(),
        ty,
        bytes,
    ))
}

fn tract_error(error: impl std::fmt::Display) -> BackendError {
    BackendError::BackendAccess(wasmtime::format_err!("tract: {error:#}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::assert_matches_reference;

    #[test]
    fn bundled_models_match_their_onnxruntime_reference_outputs() {
        let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
        for (model, version) in [("credit-risk", "1"), ("credit-risk", "3"), ("digits", "1")] {
            let dir = models.join(model).join(version);
            let graph = TractModel::parse(&std::fs::read(dir.join(GRAPH_FILE)).unwrap()).unwrap();
            assert_matches_reference(model, version, 1e-4, |input| {
                run_named(&graph, vec![input]).unwrap()
            });
        }
    }

    #[test]
    fn graph_costs_are_counted_in_multiply_accumulates() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
        let credit = TractBackend.load_dir(&dir.join("credit-risk/1")).unwrap();
        let digits = TractBackend.load_dir(&dir.join("digits/1")).unwrap();
        // credit-risk: one 7x2 MatMul (the scaler is Sub/Div, not FMA) → at least 14 MACs a row.
        assert!(credit.macs_per_row >= 14, "{}", credit.macs_per_row);
        // digits: conv 1→16 and 16→32 on 8x8, then 512→64→10: about 337k MACs.
        assert!(
            (300_000..400_000).contains(&digits.macs_per_row),
            "{}",
            digits.macs_per_row
        );
    }

    #[test]
    fn a_batch_of_several_rows_and_a_single_row_plan_agree() {
        let bytes = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/credit-risk/1/model.onnx"),
        )
        .unwrap();
        let model = TractModel::parse_with_single_row_plan(&bytes).unwrap();
        assert!(model.has_single_row_plan());
        let rows = [
            [42f32, 52000.0, 710.0, 0.3, 15000.0, 5.0, 0.0],
            [23.0, 18000.0, 540.0, 0.9, 30000.0, 1.0, 2.0],
            [67.0, 91000.0, 800.0, 0.1, 5000.0, 30.0, 0.0],
        ];
        let run = |rows: &[[f32; 7]]| {
            let data = rows
                .iter()
                .flatten()
                .flat_map(|x| x.to_le_bytes())
                .collect();
            let tensor = Tensor::new(vec![rows.len() as u32, 7], TensorType::Fp32, data);
            let out = run_named(
                &model,
                vec![NamedTensor {
                    name: "input".into(),
                    tensor,
                }],
            )
            .unwrap();
            let probabilities = out
                .into_iter()
                .find(|t| t.tensor.dimensions == [rows.len() as u32, 2]);
            probabilities.expect("a [rows, 2] output").tensor.data
        };
        // The batch runs on the general plan, each row alone on the batch-1 plan.
        let batch = run(&rows);
        let single: Vec<u8> = rows
            .iter()
            .flat_map(|row| run(std::slice::from_ref(row)))
            .collect();
        let floats = |bytes: &[u8]| -> Vec<f32> {
            bytes
                .chunks(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect()
        };
        for (b, s) in floats(&batch).iter().zip(floats(&single)) {
            assert!((b - s).abs() < 1e-6, "{b} vs {s}");
        }
    }
}
