//! Drift monitoring: live inputs and predictions of a model version against the training
//! baseline in its `model.toml` (per-feature deciles, class balance). PSI and KS per feature, PSI
//! of the prediction mix; a sliding window per version feeds `/-/metrics`, and
//! `ember models drift` assesses the latest decisions in the ledger the same way.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::Mutex;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::metering::UsageRecord;

/// Decisions kept per model version for live monitoring.
pub const WINDOW: usize = 1000;
/// Fewer decisions than this give no verdict.
pub const MIN_WINDOW: usize = 100;
/// PSI above this flags drift (0.25 is the usual "significant shift").
pub const PSI_THRESHOLD: f64 = 0.25;
/// Floor for bin proportions, so empty bins keep PSI finite.
const EPSILON: f64 = 1e-4;

/// A version's training baseline, from `model.toml`'s `[baseline]`.
#[derive(Debug, Clone, Deserialize)]
pub struct Baseline {
    /// Per-feature deciles, in input order.
    pub features: Vec<FeatureBaseline>,
    /// Share of each class in training.
    pub class_balance: Vec<f64>,
}

/// One feature's training distribution.
#[derive(Debug, Clone, Deserialize)]
pub struct FeatureBaseline {
    /// Feature name.
    pub name: String,
    /// 0%, 10%, …, 100% quantiles.
    pub quantiles: Vec<f64>,
}

#[derive(Deserialize)]
struct SpecWithBaseline {
    baseline: Baseline,
}

impl Baseline {
    /// Reads the baseline of `<models>/<model>/<version>/model.toml`.
    pub fn load(models: &Path, model: &str, version: &str) -> anyhow::Result<Self> {
        let path = models
            .join(model)
            .join(version)
            .join(ember_contract::names::MODEL_TOML);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        Ok(toml::from_str::<SpecWithBaseline>(&text)
            .with_context(|| format!("{} has no [baseline]", path.display()))?
            .baseline)
    }
}

/// A drift assessment.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DriftReport {
    /// Model.
    pub model: String,
    /// Version.
    pub version: String,
    /// Decisions assessed.
    pub window: usize,
    /// Per-feature statistics.
    pub features: Vec<FeatureDrift>,
    /// PSI of the live prediction mix against the training class balance.
    pub prediction_psi: f64,
    /// Whether any PSI passed the threshold (never with fewer than [`MIN_WINDOW`] decisions).
    pub drifted: bool,
}

/// One feature's drift.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FeatureDrift {
    /// Feature name.
    pub name: String,
    /// Population stability index over the baseline's decile bins.
    pub psi: f64,
    /// Kolmogorov–Smirnov distance to the baseline CDF (interpolated between deciles).
    pub ks: f64,
}

/// Assesses live `(features, prediction)` rows against a baseline.
pub fn assess(
    model: &str,
    version: &str,
    baseline: &Baseline,
    rows: &[(Vec<f64>, Option<i64>)],
    threshold: f64,
) -> DriftReport {
    let features: Vec<FeatureDrift> = baseline
        .features
        .iter()
        .enumerate()
        .map(|(i, feature)| {
            let values: Vec<f64> = rows.iter().filter_map(|(f, _)| f.get(i).copied()).collect();
            FeatureDrift {
                name: feature.name.clone(),
                psi: psi(&feature.quantiles, &values),
                ks: ks(&feature.quantiles, &values),
            }
        })
        .collect();
    let predictions: Vec<i64> = rows.iter().filter_map(|(_, p)| *p).collect();
    let prediction_psi = class_psi(&baseline.class_balance, &predictions);
    let enough = rows.len() >= MIN_WINDOW;
    DriftReport {
        model: model.to_string(),
        version: version.to_string(),
        window: rows.len(),
        drifted: enough
            && (prediction_psi > threshold || features.iter().any(|f| f.psi > threshold)),
        features,
        prediction_psi,
    }
}

/// Baseline CDF at `x` from deciles: the largest k/10 with quantile k ≤ x (ties keep their mass).
fn baseline_cdf_step(quantiles: &[f64], x: f64) -> f64 {
    let below = quantiles.iter().rposition(|q| *q <= x);
    below
        .map(|k| k as f64 / (quantiles.len() - 1) as f64)
        .unwrap_or(0.0)
}

/// PSI over bins bounded by the baseline's distinct interior deciles (right-closed bins).
fn psi(quantiles: &[f64], values: &[f64]) -> f64 {
    if values.is_empty() || quantiles.len() < 3 {
        return 0.0;
    }
    let mut edges: Vec<f64> = quantiles[1..quantiles.len() - 1].to_vec();
    edges.dedup();
    let live_cdf = |x: f64| values.iter().filter(|v| **v <= x).count() as f64 / values.len() as f64;
    let mut total = 0.0;
    let (mut expected_below, mut actual_below) = (0.0, 0.0);
    for edge in edges.iter().copied().chain(std::iter::once(f64::INFINITY)) {
        let (expected_cdf, actual_cdf) = if edge.is_infinite() {
            (1.0, 1.0)
        } else {
            (baseline_cdf_step(quantiles, edge), live_cdf(edge))
        };
        let e = (expected_cdf - expected_below).max(EPSILON);
        let a = (actual_cdf - actual_below).max(EPSILON);
        total += (a - e) * (a / e).ln();
        expected_below = expected_cdf;
        actual_below = actual_cdf;
    }
    total
}

/// Baseline CDF interpolated linearly between deciles.
fn baseline_cdf(quantiles: &[f64], x: f64) -> f64 {
    let n = (quantiles.len() - 1) as f64;
    if x < quantiles[0] {
        return 0.0;
    }
    if x >= quantiles[quantiles.len() - 1] {
        return 1.0;
    }
    let k = quantiles.iter().rposition(|q| *q <= x).unwrap_or(0);
    let (lo, hi) = (quantiles[k], quantiles[k + 1]);
    let within = if hi > lo { (x - lo) / (hi - lo) } else { 1.0 };
    (k as f64 + within) / n
}

/// KS distance between the live sample and the baseline CDF.
fn ks(quantiles: &[f64], values: &[f64]) -> f64 {
    if values.is_empty() || quantiles.len() < 2 {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len() as f64;
    sorted
        .iter()
        .enumerate()
        .map(|(i, x)| {
            let f = baseline_cdf(quantiles, *x);
            (f - i as f64 / n).abs().max(((i + 1) as f64 / n - f).abs())
        })
        .fold(0.0, f64::max)
}

/// PSI of the live class mix against the training class balance.
fn class_psi(balance: &[f64], predictions: &[i64]) -> f64 {
    if predictions.is_empty() {
        return 0.0;
    }
    balance
        .iter()
        .enumerate()
        .map(|(class, expected)| {
            let actual = predictions.iter().filter(|p| **p == class as i64).count() as f64
                / predictions.len() as f64;
            let (a, e) = (actual.max(EPSILON), expected.max(EPSILON));
            (a - e) * (a / e).ln()
        })
        .sum()
}

/// Live windows per model version, fed by every decision the host records.
pub struct DriftMonitor {
    models: std::path::PathBuf,
    windows: Mutex<BTreeMap<(String, String), Window>>,
}

struct Window {
    baseline: Option<Baseline>,
    rows: VecDeque<(Vec<f64>, Option<i64>)>,
}

impl DriftMonitor {
    /// A monitor reading baselines from `models`.
    pub fn new(models: &Path) -> Self {
        Self {
            models: models.to_path_buf(),
            windows: Mutex::default(),
        }
    }

    /// Adds a decision to its version's window.
    pub fn observe(&self, record: &UsageRecord) {
        let (Some(model), Some(version), Some(decision)) =
            (&record.model, &record.model_version, &record.decision)
        else {
            return;
        };
        if decision.features.is_empty() {
            return;
        }
        let mut windows = self.windows.lock().unwrap();
        let window = windows
            .entry((model.clone(), version.clone()))
            .or_insert_with(|| Window {
                baseline: Baseline::load(&self.models, model, version).ok(),
                rows: VecDeque::with_capacity(WINDOW),
            });
        if window.rows.len() == WINDOW {
            window.rows.pop_front();
        }
        window
            .rows
            .push_back((decision.features.clone(), decision.prediction));
    }

    /// Assessments of every window that has a baseline.
    pub fn reports(&self) -> Vec<DriftReport> {
        let windows = self.windows.lock().unwrap();
        windows
            .iter()
            .filter_map(|((model, version), window)| {
                let rows: Vec<_> = window.rows.iter().cloned().collect();
                Some(assess(
                    model,
                    version,
                    window.baseline.as_ref()?,
                    &rows,
                    PSI_THRESHOLD,
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uniform_baseline() -> Baseline {
        Baseline {
            features: vec![FeatureBaseline {
                name: "x".into(),
                quantiles: (0..=10).map(|k| k as f64 * 10.0).collect(),
            }],
            class_balance: vec![0.5, 0.5],
        }
    }

    fn rows(values: impl Iterator<Item = f64>) -> Vec<(Vec<f64>, Option<i64>)> {
        values
            .enumerate()
            .map(|(i, v)| (vec![v], Some((i % 2) as i64)))
            .collect()
    }

    #[test]
    fn a_sample_from_the_baseline_does_not_drift() {
        let live = rows((0..500).map(|i| (i as f64 * 0.2) % 100.0));
        let report = assess("m", "1", &uniform_baseline(), &live, PSI_THRESHOLD);
        assert!(
            report.features[0].psi < 0.05 && report.features[0].ks < 0.05,
            "{report:?}"
        );
        assert!(!report.drifted);
    }

    #[test]
    fn a_shifted_sample_drifts() {
        let live = rows((0..500).map(|i| 50.0 + (i as f64 * 0.1) % 50.0));
        let report = assess("m", "1", &uniform_baseline(), &live, PSI_THRESHOLD);
        assert!(
            report.features[0].psi > 0.5 && report.features[0].ks > 0.4,
            "{report:?}"
        );
        assert!(report.drifted);
    }

    #[test]
    fn small_windows_give_no_verdict() {
        let live = rows((0..20).map(|_| 99.0));
        assert!(!assess("m", "1", &uniform_baseline(), &live, PSI_THRESHOLD).drifted);
    }

    #[test]
    fn tied_deciles_keep_their_mass() {
        // 60% of training rows were 0: a live sample with the same mix does not drift.
        let q = vec![0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 2.0, 9.0];
        let live: Vec<f64> = (0..1000)
            .map(|i| match i % 10 {
                0..=5 => 0.0,
                6 | 7 => 1.0,
                8 => 2.0,
                _ => 5.0,
            })
            .collect();
        assert!(psi(&q, &live) < 0.05, "{}", psi(&q, &live));
    }
}
