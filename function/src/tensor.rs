//! Tensors as the function moves them between JSON, preprocessing and `wasi:nn`.

use serde::{Deserialize, Serialize};

/// Element types Ember's models use, spelled as in KServe v2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum DataType {
    /// 32-bit float.
    #[serde(rename = "FP32")]
    Fp32,
    /// 64-bit float.
    #[serde(rename = "FP64")]
    Fp64,
    /// 32-bit signed integer.
    #[serde(rename = "INT32")]
    Int32,
    /// 64-bit signed integer.
    #[serde(rename = "INT64")]
    Int64,
}

impl DataType {
    /// The KServe v2 name.
    pub fn as_str(self) -> &'static str {
        match self {
            DataType::Fp32 => "FP32",
            DataType::Fp64 => "FP64",
            DataType::Int32 => "INT32",
            DataType::Int64 => "INT64",
        }
    }

    /// Parses a KServe v2 name.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "FP32" => DataType::Fp32,
            "FP64" => DataType::Fp64,
            "INT32" => DataType::Int32,
            "INT64" => DataType::Int64,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DataType::Fp32 | DataType::Int32 => 4,
            DataType::Fp64 | DataType::Int64 => 8,
        }
    }
}

/// Tensor elements, one vector per element type.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    /// FP32 elements.
    F32(Vec<f32>),
    /// FP64 elements.
    F64(Vec<f64>),
    /// INT32 elements.
    I32(Vec<i32>),
    /// INT64 elements.
    I64(Vec<i64>),
}

impl TensorData {
    /// The element type.
    pub fn datatype(&self) -> DataType {
        match self {
            TensorData::F32(_) => DataType::Fp32,
            TensorData::F64(_) => DataType::Fp64,
            TensorData::I32(_) => DataType::Int32,
            TensorData::I64(_) => DataType::Int64,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            TensorData::F32(v) => v.len(),
            TensorData::F64(v) => v.len(),
            TensorData::I32(v) => v.len(),
            TensorData::I64(v) => v.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether every element is finite (integers always are).
    pub fn is_finite(&self) -> bool {
        match self {
            TensorData::F32(v) => v.iter().all(|x| x.is_finite()),
            TensorData::F64(v) => v.iter().all(|x| x.is_finite()),
            TensorData::I32(_) | TensorData::I64(_) => true,
        }
    }

    /// Little-endian bytes, as `wasi:nn` tensors carry them: on the little-endian targets Ember
    /// builds for, the elements' own memory, not a copy (an element-by-element conversion was 3%
    /// of an image request's time in wasm, measured; a copy of its 600 kB tensor ~0.5%).
    pub fn as_le_bytes(&self) -> &[u8] {
        match self {
            TensorData::F32(v) => bytemuck::cast_slice(v),
            TensorData::F64(v) => bytemuck::cast_slice(v),
            TensorData::I32(v) => bytemuck::cast_slice(v),
            TensorData::I64(v) => bytemuck::cast_slice(v),
        }
    }

    /// Reads little-endian bytes of the given type; `None` if the length is not a multiple.
    pub fn from_le_bytes(datatype: DataType, bytes: &[u8]) -> Option<Self> {
        if !bytes.len().is_multiple_of(datatype.size()) {
            return None;
        }
        let chunks = |n: usize| bytes.chunks_exact(n);
        Some(match datatype {
            DataType::Fp32 => TensorData::F32(
                chunks(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
            ),
            DataType::Fp64 => TensorData::F64(
                chunks(8)
                    .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
            ),
            DataType::Int32 => TensorData::I32(
                chunks(4)
                    .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
            ),
            DataType::Int64 => TensorData::I64(
                chunks(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
            ),
        })
    }

    /// The elements as f64, for postprocessing and JSON.
    pub fn to_f64(&self) -> Vec<f64> {
        match self {
            TensorData::F32(v) => v.iter().map(|x| *x as f64).collect(),
            TensorData::F64(v) => v.clone(),
            TensorData::I32(v) => v.iter().map(|x| *x as f64).collect(),
            TensorData::I64(v) => v.iter().map(|x| *x as f64).collect(),
        }
    }

    /// The elements as a JSON array.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            TensorData::F32(v) => serde_json::json!(v),
            TensorData::F64(v) => serde_json::json!(v),
            TensorData::I32(v) => serde_json::json!(v),
            TensorData::I64(v) => serde_json::json!(v),
        }
    }
}

/// A named tensor with its shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Name in the graph.
    pub name: String,
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Elements, row-major.
    pub data: TensorData,
}

impl Tensor {
    /// Number of elements the shape implies.
    pub fn element_count(shape: &[usize]) -> usize {
        shape.iter().product()
    }
}

// Tensors travel as little-endian bytes, which `as_le_bytes` takes from the elements' memory.
#[cfg(not(target_endian = "little"))]
compile_error!("Ember's tensors are little-endian in memory; this target is big-endian");
