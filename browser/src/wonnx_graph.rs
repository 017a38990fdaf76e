//! Rewrites an ONNX graph into the forms wonnx 0.5.1 implements, without changing what it
//! computes (the load-time self-check against tract confirms that). Exporters emit equivalent
//! forms wonnx rejects: a symbolic batch dimension, an unused `ai.onnx.ml` opset import
//! (skl2onnx), `Gemm` with `transB = 1` (PyTorch's `Linear`), and `Reduce*` axes as an input
//! (opset 13+) where wonnx reads only the `axes` attribute.

use protobuf::RepeatedField;
use wonnx::onnx::{
    AttributeProto, AttributeProto_AttributeType, GraphProto, ModelProto, NodeProto, TensorProto,
    ValueInfoProto,
};

/// ONNX's FLOAT element type.
const FLOAT: i32 = 1;
/// ONNX's INT64 element type.
const INT64: i32 = 7;

/// Applies every rewrite for a batch of one.
pub fn prepare(model: &mut ModelProto) {
    drop_unused_opsets(model);
    let graph = model.mut_graph();
    graph.mut_input().iter_mut().for_each(fix_symbolic_dims);
    graph.mut_output().iter_mut().for_each(fix_symbolic_dims);
    graph
        .mut_value_info()
        .iter_mut()
        .for_each(fix_symbolic_dims);
    untranspose_gemm_weights(graph);
    reduce_axes_as_attributes(graph);
}

/// wonnx refuses a model that imports an opset domain it doesn't know, used or not.
fn drop_unused_opsets(model: &mut ModelProto) {
    let used = |domain: &str| {
        domain.is_empty()
            || domain == "ai.onnx"
            || model
                .get_graph()
                .get_node()
                .iter()
                .any(|n| n.get_domain() == domain)
    };
    let kept: Vec<_> = model
        .get_opset_import()
        .iter()
        .filter(|o| used(o.get_domain()))
        .cloned()
        .collect();
    model.set_opset_import(RepeatedField::from_vec(kept));
}

/// wonnx accepts only fixed shapes: every symbolic dimension (the batch) becomes 1.
fn fix_symbolic_dims(info: &mut ValueInfoProto) {
    let shape = info.mut_field_type().mut_tensor_type().mut_shape();
    for dim in shape.mut_dim().iter_mut() {
        if dim.has_dim_param() {
            dim.set_dim_value(1);
        }
    }
}

/// `Gemm(A, B, C, transB = 1)` with a constant 2-D float `B` → `Gemm(A, Bᵀ, C)` over a
/// transposed copy of the weights.
fn untranspose_gemm_weights(graph: &mut GraphProto) {
    for index in 0..graph.get_node().len() {
        let node = &graph.get_node()[index];
        if node.get_op_type() != "Gemm" || attribute(node, "transB").map(|a| a.get_i()) != Some(1) {
            continue;
        }
        let Some(weights) = initializer(graph, node.get_input().get(1)) else {
            continue;
        };
        let Some(transposed) = transposed_floats(weights) else {
            continue;
        };
        let name = format!("{}__ember_transposed", weights.get_name());
        let mut copy = TensorProto::new();
        copy.set_name(name.clone());
        copy.set_data_type(FLOAT);
        copy.set_dims(weights.get_dims().iter().rev().copied().collect());
        copy.set_float_data(transposed);
        graph.mut_initializer().push(copy);
        let node = &mut graph.mut_node()[index];
        node.mut_input()[1] = name;
        node.mut_attribute().retain(|a| a.get_name() != "transB");
    }
}

/// `ReduceX(data, axes)` with constant axes → `ReduceX(data)` with an `axes` attribute.
fn reduce_axes_as_attributes(graph: &mut GraphProto) {
    for index in 0..graph.get_node().len() {
        let node = &graph.get_node()[index];
        if !node.get_op_type().starts_with("Reduce") || node.get_input().len() < 2 {
            continue;
        }
        let Some(axes) = initializer(graph, node.get_input().get(1)).and_then(int64s) else {
            continue;
        };
        let mut attribute = AttributeProto::new();
        attribute.set_name("axes".into());
        attribute.set_field_type(AttributeProto_AttributeType::INTS);
        attribute.set_ints(axes);
        let node = &mut graph.mut_node()[index];
        node.mut_input().truncate(1);
        node.mut_attribute().push(attribute);
    }
}

fn attribute<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.get_attribute().iter().find(|a| a.get_name() == name)
}

fn initializer<'a>(graph: &'a GraphProto, name: Option<&String>) -> Option<&'a TensorProto> {
    let name = name?;
    graph
        .get_initializer()
        .iter()
        .find(|t| t.get_name() == name)
}

/// A 2-D float tensor's values, transposed (row-major `[rows, cols]` → `[cols, rows]`).
fn transposed_floats(tensor: &TensorProto) -> Option<Vec<f32>> {
    let &[rows, cols] = tensor.get_dims() else {
        return None;
    };
    if tensor.get_data_type() != FLOAT {
        return None;
    }
    let values: Vec<f32> = if tensor.get_raw_data().is_empty() {
        tensor.get_float_data().to_vec()
    } else {
        tensor
            .get_raw_data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    };
    let (rows, cols) = (rows as usize, cols as usize);
    (values.len() == rows * cols).then(|| {
        (0..cols * rows)
            .map(|i| values[(i % rows) * cols + i / rows])
            .collect()
    })
}

/// An INT64 tensor's values.
fn int64s(tensor: &TensorProto) -> Option<Vec<i64>> {
    if tensor.get_data_type() != INT64 {
        return None;
    }
    Some(if tensor.get_raw_data().is_empty() {
        tensor.get_int64_data().to_vec()
    } else {
        tensor
            .get_raw_data()
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().expect("chunks of 8")))
            .collect()
    })
}
