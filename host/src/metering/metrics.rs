//! Prometheus metrics at `/-/metrics`, with Triton-style names (`*_request_success_total`,
//! `*_request_failure_total`, `*_compute_infer_duration_*`) and durations in seconds. There is no
//! queue duration: past `--max-instances` a request is answered 503 at once, never queued.

use std::sync::atomic::{AtomicI64, AtomicU64};

use ember_contract::Code;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use super::exposition::Format;
use super::UsageRecord;
use crate::metering::drift::DriftReport;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    model: String,
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FeatureLabels {
    model: String,
    version: String,
    feature: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShadowLabels {
    model: String,
    version: String,
    shadow: String,
    agree: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    model: String,
    version: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeyLabels {
    key: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeyNameLabels {
    key: String,
}

type HistogramFamily = Family<ModelLabels, Histogram, fn() -> Histogram>;

/// Every metric the host exports.
pub struct Metrics {
    registry: Registry,
    success: Family<ModelLabels, Counter>,
    failure: Family<FailureLabels, Counter>,
    duration: HistogramFamily,
    infer_duration: HistogramFamily,
    cost: Family<ModelLabels, Counter<f64, AtomicU64>>,
    models_loaded: Gauge<i64, AtomicI64>,
    instances_active: Gauge<i64, AtomicI64>,
    shadow: Family<ShadowLabels, Counter>,
    drift_psi: Family<FeatureLabels, Gauge<f64, AtomicU64>>,
    drift_ks: Family<FeatureLabels, Gauge<f64, AtomicU64>>,
    drift_detected: Family<ModelLabels, Gauge<i64, AtomicI64>>,
    key_requests: Family<KeyLabels, Counter>,
    key_cost: Family<KeyNameLabels, Counter<f64, AtomicU64>>,
}

/// Buckets in seconds, from 10 µs to ~5 s.
fn seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1e-5, 2.0, 20))
}

/// Microseconds as seconds.
fn seconds(us: u64) -> f64 {
    us as f64 / 1e6
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let success = Family::<ModelLabels, Counter>::default();
        let failure = Family::<FailureLabels, Counter>::default();
        let duration: HistogramFamily = Family::new_with_constructor(seconds_histogram);
        let infer_duration: HistogramFamily = Family::new_with_constructor(seconds_histogram);
        let cost = Family::<ModelLabels, Counter<f64, AtomicU64>>::default();
        let models_loaded = Gauge::<i64, AtomicI64>::default();
        let instances_active = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "ember_request_success",
            "Invocations answered below 400",
            success.clone(),
        );
        registry.register(
            "ember_request_failure",
            "Invocations answered 400 or above, by reason (host failure code or http_<status>)",
            failure.clone(),
        );
        registry.register_with_unit(
            "ember_request_duration",
            "Invocation wall time, arrival to complete reply",
            Unit::Seconds,
            duration.clone(),
        );
        registry.register_with_unit(
            "ember_compute_infer_duration",
            "Inference time in the wasi-nn backend per invocation",
            Unit::Seconds,
            infer_duration.clone(),
        );
        registry.register(
            "ember_cost",
            "Cost billed, in the price table's currency",
            cost.clone(),
        );
        registry.register(
            "ember_models_loaded",
            "Model graphs resident in memory",
            models_loaded.clone(),
        );
        registry.register(
            "ember_instances_active",
            "Function instances running now",
            instances_active.clone(),
        );
        let shadow = Family::<ShadowLabels, Counter>::default();
        let drift_psi = Family::<FeatureLabels, Gauge<f64, AtomicU64>>::default();
        let drift_ks = Family::<FeatureLabels, Gauge<f64, AtomicU64>>::default();
        let drift_detected = Family::<ModelLabels, Gauge<i64, AtomicI64>>::default();
        registry.register(
            "ember_shadow_comparisons",
            "Shadow predictions compared with the returned one, by agreement",
            shadow.clone(),
        );
        registry.register(
            "ember_drift_psi",
            "Population stability index of live inputs vs the training baseline (feature=prediction: the prediction mix)",
            drift_psi.clone(),
        );
        registry.register(
            "ember_drift_ks",
            "Kolmogorov-Smirnov distance of live inputs vs the training baseline",
            drift_ks.clone(),
        );
        registry.register(
            "ember_drift_detected",
            "1 when a model version's inputs or predictions drifted",
            drift_detected.clone(),
        );
        // Per API key: the label values are the names operators gave their keys (bounded by the
        // key table), `""` for requests that presented no live key.
        let key_requests = Family::<KeyLabels, Counter>::default();
        let key_cost = Family::<KeyNameLabels, Counter<f64, AtomicU64>>::default();
        registry.register(
            "ember_key_requests",
            "Requests per API key name, by outcome: success, failure, or the refusal's code (unauthenticated, forbidden, rate_limited, budget_exhausted, overloaded)",
            key_requests.clone(),
        );
        registry.register(
            "ember_key_cost",
            "Cost billed per API key name, in the price table's currency",
            key_cost.clone(),
        );
        Self {
            registry,
            key_requests,
            key_cost,
            success,
            failure,
            duration,
            infer_duration,
            cost,
            models_loaded,
            instances_active,
            shadow,
            drift_psi,
            drift_ks,
            drift_detected,
        }
    }
}

impl Metrics {
    /// Counts one invocation.
    pub fn observe(&self, record: &UsageRecord) {
        let labels = ModelLabels {
            model: record.model.clone().unwrap_or_default(),
            version: record.model_version.clone().unwrap_or_default(),
        };
        if record.succeeded() {
            self.success.get_or_create(&labels).inc();
        } else {
            let reason = record
                .failure
                .clone()
                .unwrap_or_else(|| format!("http_{}", record.status));
            self.failure
                .get_or_create(&FailureLabels {
                    model: labels.model.clone(),
                    version: labels.version.clone(),
                    reason,
                })
                .inc();
        }
        self.duration
            .get_or_create(&labels)
            .observe(seconds(record.wall_us));
        if record.infer_calls > 0 {
            self.infer_duration
                .get_or_create(&labels)
                .observe(seconds(record.infer_us));
        }
        self.cost.get_or_create(&labels).inc_by(record.cost);
        if let Some(key) = &record.key {
            let outcome = if record.succeeded() {
                "success"
            } else {
                "failure"
            };
            self.key_requests
                .get_or_create(&KeyLabels {
                    key: key.clone(),
                    outcome: outcome.into(),
                })
                .inc();
            self.key_cost
                .get_or_create(&KeyNameLabels { key: key.clone() })
                .inc_by(record.cost);
        }
        let decision = record.decision.as_ref();
        if let Some((shadow, agrees)) =
            decision.and_then(|d| Some((d.shadow_version.clone()?, d.shadow_agrees?)))
        {
            self.shadow
                .get_or_create(&ShadowLabels {
                    model: labels.model,
                    version: labels.version,
                    shadow,
                    agree: agrees.to_string(),
                })
                .inc();
        }
    }

    /// Registers another unit's metric in the same exposition (before serving starts).
    pub fn register(
        &mut self,
        name: &str,
        help: &str,
        metric: impl prometheus_client::registry::Metric,
    ) {
        self.registry.register(name, help, metric);
    }

    /// Counts a request the host refused before running the function, for the key it presented
    /// (`None`: no live key).
    pub fn refused(&self, key: Option<&str>, code: Code) {
        self.key_requests
            .get_or_create(&KeyLabels {
                key: key.unwrap_or_default().to_string(),
                outcome: code.as_str().to_string(),
            })
            .inc();
    }

    /// The exposition in `format`, with gauges set to the given current values.
    pub fn render(
        &self,
        format: Format,
        models_loaded: usize,
        instances_active: u64,
        drift: &[DriftReport],
    ) -> String {
        self.models_loaded.set(models_loaded as i64);
        self.instances_active.set(instances_active as i64);
        for report in drift {
            let feature = |name: &str| FeatureLabels {
                model: report.model.clone(),
                version: report.version.clone(),
                feature: name.to_string(),
            };
            for f in &report.features {
                self.drift_psi.get_or_create(&feature(&f.name)).set(f.psi);
                self.drift_ks.get_or_create(&feature(&f.name)).set(f.ks);
            }
            self.drift_psi
                .get_or_create(&feature("prediction"))
                .set(report.prediction_psi);
            self.drift_detected
                .get_or_create(&ModelLabels {
                    model: report.model.clone(),
                    version: report.version.clone(),
                })
                .set(i64::from(report.drifted));
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String does not fail");
        format.render(text)
    }
}
