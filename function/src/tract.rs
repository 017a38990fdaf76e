//! ONNX graphs run by tract-onnx, parsed and optimized once into a plan that every run borrows.
//! The host's `wasi:nn` backend and the embedded guest (hosts without wasi-nn) both use it, so
//! the two variants compute with the same code.
//!
//! A graph whose batch dimension is symbolic (`batch`, for KServe v2 batches) is optimized for
//! any batch size, which costs tract its best kernels on convolutional networks (EfficientNet-Lite0
//! ran 16x slower than ONNX Runtime that way). [`TractModel::parse_with_single_row_plan`] also
//! optimizes the graph with the batch fixed at 1 and runs single-row requests — nearly all of
//! them — on that plan.

use std::collections::HashMap;
use std::sync::Arc;

use tract_onnx::prelude::{
    Framework, InferenceModelExt, IntoRunnable, IntoTValue, Symbol, SymbolValues, TDim, TValue,
    TVec, Tensor as TractTensor, TractResult, TypedModel, TypedRunnableModel,
};
use tract_onnx::tract_core::internal::{anyhow, bail};
use tract_onnx::tract_core::ops::Cost;

use crate::tensor::{Tensor, TensorData};

/// An optimized, runnable graph with its input and output names.
pub struct TractModel {
    plan: Arc<TypedRunnableModel>,
    /// The graph optimized with its batch dimension fixed at 1, when it was asked for and the
    /// graph has one.
    single_row: Option<SingleRow>,
    /// Input names, in the graph's order.
    pub inputs: Vec<String>,
    /// Output names, in the graph's order.
    pub outputs: Vec<String>,
    /// Multiply-accumulates per batch row from tract's per-op cost model; `None` when a node's
    /// cost cannot be evaluated.
    pub macs_per_row: Option<u64>,
}

/// A graph's plan for batches of one row.
struct SingleRow {
    plan: Arc<TypedRunnableModel>,
    /// The batch axis of each input, in the graph's order (`None`: the input has none).
    batch_axes: Vec<Option<usize>>,
}

/// The symbol Ember's exported graphs name their batch dimension with.
const BATCH_SYMBOL: &str = "batch";

impl TractModel {
    /// Parses and optimizes an ONNX model into one plan for every batch size.
    pub fn parse(bytes: &[u8]) -> TractResult<Self> {
        Self::parse_with(bytes, false)
    }

    /// Parses an ONNX model and optimizes it twice: for every batch size, and with its batch
    /// dimension fixed at 1 for single-row requests (twice the load time and weights in memory,
    /// for tract's fastest kernels on the requests nearly all traffic is).
    pub fn parse_with_single_row_plan(bytes: &[u8]) -> TractResult<Self> {
        Self::parse_with(bytes, true)
    }

    fn parse_with(mut bytes: &[u8], single_row: bool) -> TractResult<Self> {
        let model = tract_onnx::onnx().model_for_read(&mut bytes)?;
        let inputs = model
            .input_outlets()?
            .iter()
            .map(|o| model.node(o.node).name.clone())
            .collect();
        let outputs = model
            .output_outlets()?
            .iter()
            .map(|o| {
                model
                    .outlet_label(*o)
                    .map(str::to_string)
                    .unwrap_or_else(|| model.node(o.node).name.clone())
            })
            .collect();
        let typed = model.into_typed()?.into_decluttered()?;
        let macs_per_row = macs_per_row(&typed).ok();
        // Without it (no `batch` symbol, no input batched by it, or a graph tract cannot
        // optimize at batch 1) every request runs on the general plan, as before.
        let single_row = match typed.symbols.get(BATCH_SYMBOL) {
            Some(batch) if single_row => SingleRow::of(&typed, batch).ok().flatten(),
            _ => None,
        };
        let plan = typed.into_optimized()?.into_runnable()?;
        Ok(Self {
            plan,
            single_row,
            inputs,
            outputs,
            macs_per_row,
        })
    }

    /// Whether single-row requests run on a plan optimized for batch 1.
    pub fn has_single_row_plan(&self) -> bool {
        self.single_row.is_some()
    }

    /// Runs the plan on named values (every graph input exactly once, in any order) and returns
    /// the outputs named, in the graph's order.
    pub fn run(&self, inputs: Vec<(String, TValue)>) -> TractResult<Vec<(String, TValue)>> {
        let mut ordered: Vec<Option<TValue>> = vec![None; self.inputs.len()];
        for (name, value) in inputs {
            let index = self
                .inputs
                .iter()
                .position(|n| *n == name)
                .ok_or_else(|| anyhow!("the graph has no input '{name}'"))?;
            ordered[index] = Some(value);
        }
        let values: TVec<TValue> = ordered
            .into_iter()
            .zip(&self.inputs)
            .map(|(v, name)| v.ok_or_else(|| anyhow!("input '{name}' is missing")))
            .collect::<TractResult<_>>()?;
        let plan = match &self.single_row {
            Some(single) if single.fits(&values) => &single.plan,
            _ => &self.plan,
        };
        let outputs = plan.run(values)?;
        Ok(self.outputs.iter().cloned().zip(outputs).collect())
    }

    /// [`TractModel::run`] over the function's own tensors.
    pub fn run_tensors(&self, inputs: Vec<Tensor>) -> TractResult<Vec<Tensor>> {
        let values = inputs
            .into_iter()
            .map(|t| Ok((t.name, to_tract(&t.shape, &t.data)?.into_tvalue())))
            .collect::<TractResult<_>>()?;
        self.run(values)?
            .into_iter()
            .map(|(name, value)| {
                Ok(Tensor {
                    name,
                    shape: value.shape().to_vec(),
                    data: from_tract(&value)?,
                })
            })
            .collect()
    }
}

impl SingleRow {
    /// `typed` with `batch` set to 1, optimized; `None` when no input is batched by it.
    fn of(typed: &TypedModel, batch: Symbol) -> TractResult<Option<Self>> {
        let batch_axes: Vec<Option<usize>> = typed
            .input_outlets()?
            .iter()
            .map(|outlet| {
                let fact = typed.outlet_fact(*outlet)?;
                Ok(fact
                    .shape
                    .iter()
                    .position(|d| *d == TDim::Sym(batch.clone())))
            })
            .collect::<TractResult<_>>()?;
        if batch_axes.iter().all(Option::is_none) {
            return Ok(None);
        }
        let plan = typed
            .set_symbols(&HashMap::from([(batch, TDim::Val(1))]))?
            .into_decluttered()?
            .into_optimized()?
            .into_runnable()?;
        Ok(Some(Self { plan, batch_axes }))
    }

    /// Whether `values` (in the graph's input order) are one row each.
    fn fits(&self, values: &[TValue]) -> bool {
        values
            .iter()
            .zip(&self.batch_axes)
            .all(|(value, axis)| axis.is_none_or(|axis| value.shape().get(axis) == Some(&1)))
    }
}

fn to_tract(shape: &[usize], data: &TensorData) -> TractResult<TractTensor> {
    match data {
        TensorData::F32(v) => TractTensor::from_shape(shape, v),
        TensorData::F64(v) => TractTensor::from_shape(shape, v),
        TensorData::I32(v) => TractTensor::from_shape(shape, v),
        TensorData::I64(v) => TractTensor::from_shape(shape, v),
    }
}

fn from_tract(value: &TractTensor) -> TractResult<TensorData> {
    use tract_onnx::prelude::DatumType;
    let plain = value.try_as_plain_ram()?;
    Ok(match value.datum_type() {
        DatumType::F32 => TensorData::F32(plain.as_slice::<f32>()?.to_vec()),
        DatumType::F64 => TensorData::F64(plain.as_slice::<f64>()?.to_vec()),
        DatumType::I32 => TensorData::I32(plain.as_slice::<i32>()?.to_vec()),
        DatumType::I64 => TensorData::I64(plain.as_slice::<i64>()?.to_vec()),
        other => bail!("the graph returned an unsupported {other:?} tensor"),
    })
}

/// Sums the graph's multiply-accumulates with every batch dimension set to 1.
fn macs_per_row(model: &TypedModel) -> TractResult<u64> {
    let mut values = SymbolValues::default();
    if let Some(batch) = model.symbols.get("batch") {
        values = values.with(&batch, 1);
    }
    let mut total = 0i64;
    for node in model.nodes() {
        let inputs = model.node_input_facts(node.id)?;
        for (cost, count) in node.op.cost(&inputs)? {
            if matches!(cost, Cost::FMA(_)) {
                total += count.eval_to_i64(&values)?;
            }
        }
    }
    Ok(total.max(0) as u64)
}
