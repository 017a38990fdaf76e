//! Rewrites an ONNX graph into the forms wonnx 0.5.1 implements, without changing what it
//! computes (the load-time self-check against tract confirms that). Exporters emit equivalent
//! forms wonnx rejects: a symbolic batch dimension, an unused `ai.onnx.ml` opset import
//! (skl2onnx), `Gemm` with `transB = 1` (PyTorch's `Linear`), `Reduce*` axes as an input
//! (opset 13+) where wonnx reads only the `axes` attribute, and a row-vector `MatMul` / `Gemm`
//! whose inner dimension is not a multiple of 4 (wonnx's vec4 kernel silently drops the
//! remainder: credit-risk's 7 features would count as 4).

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
    pad_inner_dimension_to_vec4(graph);
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
        let dims = weights.get_dims().iter().rev().copied().collect();
        graph
            .mut_initializer()
            .push(float_tensor(&name, dims, transposed));
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

/// `MatMul(A, B)` / `Gemm(A, B, C)` with `A` of shape `[1, K]`, `K` not a multiple of 4, and a
/// constant float `B` of shape `[K, N]` → the same over `A' = Concat(A, zeros)` and `B'` with zero
/// rows appended, both padded to the next multiple of 4: the added terms are all `0 × 0`.
/// wonnx's `[1, K]` kernel (`gemm_1.wgsl`) reads `A` as vec4s and loops `K / 4` times.
fn pad_inner_dimension_to_vec4(graph: &mut GraphProto) {
    let mut index = 0;
    while index < graph.get_node().len() {
        let Some(padding) = inner_padding(graph, &graph.get_node()[index]) else {
            index += 1;
            continue;
        };
        let left = graph.get_node()[index].get_input()[0].clone();
        let padded_left = padding.left_info.get_name().to_string();
        let padded_right = padding.weights.get_name().to_string();
        let zeros = format!("{left}__ember_zeros");
        graph.mut_value_info().push(padding.left_info);
        graph.mut_initializer().push(float_tensor(
            &zeros,
            vec![1, padding.zeros],
            vec![0.0; padding.zeros as usize],
        ));
        graph.mut_initializer().push(padding.weights);
        let mut concat = NodeProto::new();
        concat.set_name(format!("{left}__ember_pad"));
        concat.set_op_type("Concat".into());
        concat.set_input(RepeatedField::from_vec(vec![left, zeros]));
        concat.set_output(RepeatedField::from_vec(vec![padded_left.clone()]));
        concat.mut_attribute().push(int_attribute("axis", 1));
        let node = &mut graph.mut_node()[index];
        node.mut_input()[0] = padded_left;
        node.mut_input()[1] = padded_right;
        graph.mut_node().insert(index, concat);
        index += 2;
    }
}

/// What [`pad_inner_dimension_to_vec4`] adds for one node.
struct InnerPadding {
    /// How many zero columns `A` gets.
    zeros: i64,
    /// The declared shape of `A'` (`<A>__ember_padded`).
    left_info: ValueInfoProto,
    /// `B'` (`<B>__ember_padded`).
    weights: TensorProto,
}

/// The padding a row-vector `MatMul` / `Gemm` over constant weights needs, if any.
fn inner_padding(graph: &GraphProto, node: &NodeProto) -> Option<InnerPadding> {
    let transposed = ["transA", "transB"]
        .iter()
        .any(|name| attribute(node, name).is_some_and(|a| a.get_i() != 0));
    if !matches!(node.get_op_type(), "MatMul" | "Gemm") || transposed {
        return None;
    }
    let left_info = value_info(graph, node.get_input().first()?)?;
    let [1, inner] = dims(left_info)[..] else {
        return None;
    };
    let zeros = (4 - inner % 4) % 4;
    if zeros == 0 {
        return None;
    }
    let weights = padded_rows(
        initializer(graph, node.get_input().get(1))?,
        inner as usize,
        zeros as usize,
    )?;
    let mut left_info = left_info.clone();
    left_info.set_name(format!("{}__ember_padded", left_info.get_name()));
    left_info
        .mut_field_type()
        .mut_tensor_type()
        .mut_shape()
        .mut_dim()[1]
        .set_dim_value(inner + zeros);
    Some(InnerPadding {
        zeros,
        left_info,
        weights,
    })
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

/// The declared type and shape of a graph input or intermediate value.
fn value_info<'a>(graph: &'a GraphProto, name: &str) -> Option<&'a ValueInfoProto> {
    graph
        .get_input()
        .iter()
        .chain(graph.get_value_info())
        .find(|info| info.get_name() == name)
}

/// A value's fixed dimensions (symbolic ones read as 0).
fn dims(info: &ValueInfoProto) -> Vec<i64> {
    info.get_field_type()
        .get_tensor_type()
        .get_shape()
        .get_dim()
        .iter()
        .map(|d| d.get_dim_value())
        .collect()
}

/// A float tensor named `name`.
fn float_tensor(name: &str, dims: Vec<i64>, values: Vec<f32>) -> TensorProto {
    let mut tensor = TensorProto::new();
    tensor.set_name(name.to_string());
    tensor.set_data_type(FLOAT);
    tensor.set_dims(dims);
    tensor.set_float_data(values);
    tensor
}

/// An integer attribute.
fn int_attribute(name: &str, value: i64) -> AttributeProto {
    let mut attribute = AttributeProto::new();
    attribute.set_name(name.to_string());
    attribute.set_field_type(AttributeProto_AttributeType::INT);
    attribute.set_i(value);
    attribute
}

/// A copy of the `[rows, cols]` float tensor `tensor` with `padding` zero rows appended, named
/// `<name>__ember_padded`.
fn padded_rows(tensor: &TensorProto, rows: usize, padding: usize) -> Option<TensorProto> {
    let &[declared_rows, cols] = tensor.get_dims() else {
        return None;
    };
    let mut values = floats(tensor)?;
    if declared_rows as usize != rows || values.len() != rows * cols as usize {
        return None;
    }
    values.resize((rows + padding) * cols as usize, 0.0);
    Some(float_tensor(
        &format!("{}__ember_padded", tensor.get_name()),
        vec![(rows + padding) as i64, cols],
        values,
    ))
}

/// A float tensor's values, from either of its encodings.
fn floats(tensor: &TensorProto) -> Option<Vec<f32>> {
    if tensor.get_data_type() != FLOAT {
        return None;
    }
    Some(if tensor.get_raw_data().is_empty() {
        tensor.get_float_data().to_vec()
    } else {
        tensor
            .get_raw_data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    })
}

/// A 2-D float tensor's values, transposed (row-major `[rows, cols]` → `[cols, rows]`).
fn transposed_floats(tensor: &TensorProto) -> Option<Vec<f32>> {
    let &[rows, cols] = tensor.get_dims() else {
        return None;
    };
    let values = floats(tensor)?;
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
