//! Postprocessing shared by every host and backend: softmax where the graph emits logits, then the
//! top class. (Softmax lives here, not in the graph: wonnx computes it wrongly in browsers.)

use serde::Serialize;

use crate::spec::{ModelSpec, OutputKind};
use crate::tensor::Tensor;
use ember_contract::{ApiError, Code};

/// A classifier's answer for one input.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Classification {
    /// Index of the chosen class.
    pub prediction: usize,
    /// Its label.
    pub label: String,
    /// Its probability.
    pub confidence: f64,
    /// Every class's probability, in label order.
    pub probabilities: Vec<f64>,
}

/// One of a classifier's most probable classes, as a reply's `top_k` lists them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ranked {
    /// Index of the class.
    pub index: usize,
    /// Its label.
    pub label: String,
    /// Its probability.
    pub probability: f64,
}

impl Classification {
    /// The `k` most probable classes, most probable first (ties in label order).
    pub fn top_k(&self, labels: &[String], k: usize) -> Vec<Ranked> {
        let mut order: Vec<usize> = (0..self.probabilities.len()).collect();
        order.sort_by(|a, b| self.probabilities[*b].total_cmp(&self.probabilities[*a]));
        order
            .into_iter()
            .take(k)
            .map(|index| Ranked {
                index,
                label: labels[index].clone(),
                probability: self.probabilities[index],
            })
            .collect()
    }
}

/// Numerically stable softmax, computed in f64.
pub fn softmax(logits: &[f64]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<f64> = logits.iter().map(|z| (z - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|e| e / sum).collect()
}

/// Reads the first output of a batch-of-one inference as a classification.
pub fn classify(spec: &ModelSpec, outputs: &[Tensor]) -> Result<Classification, ApiError> {
    let declared = &spec.outputs[0];
    let output = outputs
        .iter()
        .find(|t| t.name == declared.name)
        .ok_or_else(|| ApiError::new(Code::InferenceFailed, "the model returned no prediction"))?;
    let values = output.data.to_f64();
    if values.len() != spec.labels.len() || values.iter().any(|v| !v.is_finite()) {
        return Err(ApiError::new(
            Code::InferenceFailed,
            "the model returned an output of the wrong size or with non-finite values",
        ));
    }
    let probabilities = match declared.kind {
        OutputKind::Logits => softmax(&values),
        OutputKind::Probabilities => values,
        OutputKind::Embedding => {
            return Err(ApiError::new(
                Code::WrongTask,
                format!("model '{}' does not classify", spec.name),
            ))
        }
    };
    let (prediction, confidence) =
        probabilities
            .iter()
            .copied()
            .enumerate()
            .fold((0, f64::NEG_INFINITY), |best, (i, p)| {
                if p > best.1 {
                    (i, p)
                } else {
                    best
                }
            });
    Ok(Classification {
        prediction,
        label: spec.labels[prediction].clone(),
        confidence,
        probabilities,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_sums_to_one_and_survives_large_logits() {
        let p = softmax(&[1000.0, 1001.0, 999.0]);
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(p[1] > p[0] && p[0] > p[2]);
    }

    #[test]
    fn top_k_lists_the_most_probable_classes_first_and_keeps_ties_in_label_order() {
        let labels: Vec<String> = ["a", "b", "c", "d"].map(String::from).into();
        let result = Classification {
            prediction: 1,
            label: "b".into(),
            confidence: 0.4,
            probabilities: vec![0.2, 0.4, 0.2, 0.2],
        };
        let top = result.top_k(&labels, 3);
        let top: Vec<(usize, &str, f64)> = top
            .iter()
            .map(|r| (r.index, r.label.as_str(), r.probability))
            .collect();
        assert_eq!(top, [(1, "b", 0.4), (0, "a", 0.2), (2, "c", 0.2)]);
        assert_eq!(result.top_k(&labels, 9).len(), 4);
    }

    #[test]
    fn softmax_matches_the_closed_form_for_two_classes() {
        let p = softmax(&[0.0, 2.0]);
        assert!((p[1] - 1.0 / (1.0 + (-2.0f64).exp())).abs() < 1e-15);
    }
}
