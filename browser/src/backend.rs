//! Choosing a backend: what the caller asked for, and the load-time self-check that keeps a
//! WebGPU graph wonnx computes wrongly from answering (wonnx reports success while its Softmax
//! returns zeros in Chromium, docs/stack.md; before `wonnx_graph` padded it, credit-risk's 7-wide
//! MatMul counted only 4 features), by comparing it with tract on synthetic probes and the
//! version's reference cases.

use ember_contract::reference::Reference;
use ember_contract::{ApiError, Code};
use ember_function::spec::ModelSpec;
use ember_function::tensor::{DataType, Tensor, TensorData};

/// Largest difference from the CPU reference the self-check accepts, relative to the reference's
/// magnitude (at least 1): both compute in f32, so honest backends agree to ~1e-6.
pub const SELF_CHECK_TOLERANCE: f64 = 1e-3;

/// The backend a caller asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requested {
    /// WebGPU when it is available and passes the self-check, else the CPU.
    Auto,
    /// WebGPU or a load error saying why not.
    WebGpu,
    /// tract on the CPU.
    Cpu,
}

impl Requested {
    /// Parses the `backend` option (absent means `auto`).
    pub fn parse(option: Option<&str>) -> Result<Self, ApiError> {
        match option {
            None | Some("auto") => Ok(Self::Auto),
            Some("webgpu") => Ok(Self::WebGpu),
            Some("cpu") => Ok(Self::Cpu),
            Some(other) => Err(ApiError::new(
                Code::InvalidOption,
                format!("backend must be one of auto, webgpu, cpu; got '{other}'"),
            )
            .with_field("backend")),
        }
    }
}

/// The backend that runs a loaded model, and why it was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// `webgpu` or `cpu`.
    pub name: &'static str,
    /// One sentence: what was found (adapter, self-check) or why WebGPU was not used.
    pub reason: String,
}

/// How many probe inputs the self-check runs, one after another: a backend that keeps state
/// between runs or drops part of an input shows up as a difference on a later probe.
pub const PROBES: usize = 4;

/// Deterministic inputs for the spec's first graph input: its shape with every dynamic
/// dimension set to 1, filled with values in [-1, 1] that differ element to element (a constant
/// would hide wrong strides) and probe to probe.
pub fn probes(spec: &ModelSpec) -> Vec<Tensor> {
    let input = &spec.inputs[0];
    let shape: Vec<usize> = input.shape.iter().map(|&d| d.max(1) as usize).collect();
    (0..PROBES)
        .map(|k| {
            let values = (0..Tensor::element_count(&shape))
                .map(move |i| ((i * 37 + k * 13) % 23) as f64 / 11.0 - 1.0);
            let data = match input.datatype {
                DataType::Fp32 => TensorData::F32(values.map(|v| v as f32).collect()),
                DataType::Fp64 => TensorData::F64(values.collect()),
                DataType::Int32 => TensorData::I32(values.map(|v| (v * 10.0) as i32).collect()),
                DataType::Int64 => TensorData::I64(values.map(|v| (v * 10.0) as i64).collect()),
            };
            Tensor {
                name: input.name.clone(),
                shape: shape.clone(),
                data,
            }
        })
        .collect()
}

/// The inputs of a model version's reference cases (`reference.json`, produced with the model
/// and checked against onnxruntime): realistic values the synthetic probes may miss. Cases
/// whose input doesn't fit the spec's first input are skipped.
pub fn reference_probes(spec: &ModelSpec, reference: &[u8]) -> Result<Vec<Tensor>, String> {
    let reference = Reference::parse(reference).map_err(|e| format!("reference.json: {e}"))?;
    let input = &spec.inputs[0];
    Ok(reference
        .cases
        .into_iter()
        .flat_map(|case| case.inputs)
        .filter(|i| {
            i.name == input.name
                && input.datatype == DataType::Fp32
                && Tensor::element_count(&i.shape) == i.data.len()
        })
        .map(|i| Tensor {
            name: i.name,
            shape: i.shape,
            data: TensorData::F32(i.data),
        })
        .collect())
}

/// Judges WebGPU's outputs on the probe against the CPU's: `Ok(largest difference)` when every
/// declared output is present, finite, not all zeros and within [`SELF_CHECK_TOLERANCE`];
/// otherwise what is wrong.
pub fn self_check(spec: &ModelSpec, gpu: &[Tensor], cpu: &[Tensor]) -> Result<f64, String> {
    let mut largest = 0.0f64;
    for declared in &spec.outputs {
        let find = |outputs: &[Tensor]| {
            outputs
                .iter()
                .find(|t| t.name == declared.name)
                .map(|t| t.data.to_f64())
        };
        let gpu = find(gpu).ok_or_else(|| format!("wonnx returned no '{}'", declared.name))?;
        let cpu = find(cpu).ok_or_else(|| format!("tract returned no '{}'", declared.name))?;
        if gpu.len() != cpu.len() {
            return Err(format!(
                "wonnx returned {} values for '{}', tract {}",
                gpu.len(),
                declared.name,
                cpu.len()
            ));
        }
        if gpu.iter().any(|v| !v.is_finite()) {
            return Err(format!(
                "wonnx returned non-finite values for '{}'",
                declared.name
            ));
        }
        if gpu.iter().all(|v| *v == 0.0) && cpu.iter().any(|v| *v != 0.0) {
            return Err(format!(
                "wonnx returned all zeros for '{}' (an op it computes wrongly in this browser)",
                declared.name
            ));
        }
        for (g, c) in gpu.iter().zip(&cpu) {
            let difference = (g - c).abs() / c.abs().max(1.0);
            if difference > SELF_CHECK_TOLERANCE {
                return Err(format!(
                    "wonnx differs from tract on '{}' by {difference:.1e} (tolerance {SELF_CHECK_TOLERANCE:.0e})",
                    declared.name
                ));
            }
            largest = largest.max(difference);
        }
    }
    Ok(largest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ModelSpec {
        serde_json::from_str(include_str!("../../models/digits/1/model.json")).unwrap()
    }

    fn logits(values: Vec<f32>) -> Vec<Tensor> {
        vec![Tensor {
            name: "logits".into(),
            shape: vec![1, values.len()],
            data: TensorData::F32(values),
        }]
    }

    #[test]
    fn the_backend_option_is_checked_by_name() {
        assert_eq!(Requested::parse(None).unwrap(), Requested::Auto);
        assert_eq!(Requested::parse(Some("cpu")).unwrap(), Requested::Cpu);
        let error = Requested::parse(Some("gpu")).unwrap_err();
        assert_eq!((error.status(), error.code), (400, Code::InvalidOption));
        assert_eq!(error.field.as_deref(), Some("backend"));
    }

    #[test]
    fn probes_have_the_input_shape_with_a_batch_of_one_and_differ() {
        let probes = probes(&spec());
        assert_eq!(probes.len(), PROBES);
        for probe in &probes {
            assert_eq!(probe.shape, vec![1, 1, 8, 8]);
            let values = probe.data.to_f64();
            assert!(values.iter().all(|v| (-1.0..=1.0).contains(v)));
            assert!(values.windows(2).any(|w| w[0] != w[1]));
        }
        assert_ne!(probes[0].data, probes[1].data);
    }

    #[test]
    fn reference_cases_become_probes() {
        let spec = spec();
        let probes = reference_probes(
            &spec,
            include_bytes!("../../models/digits/1/reference.json"),
        )
        .unwrap();
        assert!(probes.len() >= 3);
        assert!(probes.iter().all(|p| p.shape == vec![1, 1, 8, 8]));
        assert!(reference_probes(&spec, b"{}").is_err());
    }

    #[test]
    fn the_self_check_passes_matching_outputs_and_names_every_failure() {
        let spec = spec();
        let cpu = logits((0..10).map(|i| i as f32 - 4.5).collect());
        let close = logits((0..10).map(|i| i as f32 - 4.5 + 1e-6).collect());
        assert!(self_check(&spec, &close, &cpu).unwrap() < 1e-5);
        let zeros = self_check(&spec, &logits(vec![0.0; 10]), &cpu).unwrap_err();
        assert!(zeros.contains("all zeros"), "{zeros}");
        let nan = self_check(&spec, &logits(vec![f32::NAN; 10]), &cpu).unwrap_err();
        assert!(nan.contains("non-finite"), "{nan}");
        let off = logits((0..10).map(|i| i as f32).collect());
        assert!(self_check(&spec, &off, &cpu)
            .unwrap_err()
            .contains("differs"));
        let short = self_check(&spec, &logits(vec![1.0; 3]), &cpu).unwrap_err();
        assert!(short.contains("3 values"), "{short}");
        assert!(self_check(&spec, &[], &cpu)
            .unwrap_err()
            .contains("no 'logits'"));
    }
}
