//! The function's HTTP contract, natively: `App` over a copy of the bundled models and an
//! inference engine that answers with chosen logits (or fails for chosen versions), so routing,
//! the version policy, the pipeline and the replies are tested without wasm or HTTP.

use std::cell::RefCell;
use std::path::Path;

use ember_contract::{ApiError, Code, ModelVersion};
use ember_function::app::{App, Inference, Request, Response};
use ember_function::catalog::DirCatalog;
use ember_function::routing::Pick;
use ember_function::spec::ModelSpec;
use ember_function::tensor::{Tensor, TensorData};
use serde_json::{json, Value};

/// Answers every version with the same logits, except the versions told to fail; records which
/// versions ran.
struct Scripted {
    logits: Vec<f32>,
    failing: Vec<&'static str>,
    ran: RefCell<Vec<String>>,
}

impl Scripted {
    fn new(logits: &[f32]) -> Self {
        Self {
            logits: logits.to_vec(),
            failing: Vec::new(),
            ran: RefCell::default(),
        }
    }
}

impl Inference for &Scripted {
    fn infer(&self, spec: &ModelSpec, _inputs: Vec<Tensor>) -> Result<Vec<Tensor>, ApiError> {
        self.ran.borrow_mut().push(spec.version.clone());
        if self.failing.contains(&spec.version.as_str()) {
            return Err(ApiError::new(Code::InferenceFailed, "inference failed"));
        }
        let output = &spec.outputs[0];
        Ok(vec![Tensor {
            name: output.name.clone(),
            shape: vec![1, self.logits.len()],
            data: TensorData::F32(self.logits.clone()),
        }])
    }
}

/// A scratch copy of the bundled credit-risk model with `routing` as its version policy.
fn models(routing: Value) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let bundled = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/credit-risk");
    for version in ["1", "2"] {
        let target = dir.path().join("credit-risk").join(version);
        std::fs::create_dir_all(&target).unwrap();
        std::fs::copy(
            bundled.join(version).join("model.json"),
            target.join("model.json"),
        )
        .unwrap();
    }
    std::fs::write(
        dir.path().join("credit-risk/routing.json"),
        routing.to_string(),
    )
    .unwrap();
    dir
}

fn stable_only() -> Value {
    json!({"aliases": {"stable": "1"}, "split": [], "history": []})
}

fn applicant() -> Vec<u8> {
    json!({"age": 42, "income": 52000, "credit_score": 710})
        .to_string()
        .into_bytes()
}

fn call(app: &App<DirCatalog, &Scripted>, method: &str, path: &str, body: &[u8]) -> Response {
    app.handle(&Request {
        method,
        path,
        content_type: Some("application/json"),
        inference_header_length: None,
        body,
        pick: Pick::default(),
        allowed_models: None,
    })
}

fn app<'a>(models: &tempfile::TempDir, engine: &'a Scripted) -> App<DirCatalog, &'a Scripted> {
    App::new(DirCatalog::new(models.path()), engine, "credit-risk")
}

#[test]
fn a_prediction_is_attributed_and_leaves_its_telemetry() {
    let models = models(stable_only());
    let engine = Scripted::new(&[0.2, 1.5]);
    let reply = call(&app(&models, &engine), "POST", "/predict", &applicant());
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.model, Some(ModelVersion::new("credit-risk", "1")));
    assert_eq!(reply.body["prediction"], 1);
    assert_eq!(reply.body["label"], "default");
    let telemetry = reply.telemetry.expect("a prediction leaves telemetry");
    assert_eq!(telemetry.prediction, Some(1));
    assert_eq!(telemetry.features.len(), 7, "{:?}", telemetry.features);
    assert_eq!(telemetry.features[..3], [42.0, 52000.0, 710.0]);
    assert!(telemetry.shadow.is_none() && telemetry.fallback.is_none());
}

#[test]
fn routes_methods_and_protocols_answer_with_their_envelopes() {
    let models = models(stable_only());
    let engine = Scripted::new(&[1.0, 0.0]);
    let app = app(&models, &engine);
    let reply = call(&app, "GET", "/predict", b"");
    assert_eq!(reply.status, 405);
    assert_eq!(reply.body["error"]["code"], "method_not_allowed");
    let reply = call(&app, "GET", "/nowhere", b"");
    assert_eq!(reply.status, 404);
    assert_eq!(reply.body["error"]["code"], "no_route");
    // Ember's API answers a schema violation with 422 and the field; KServe v2 with 400.
    let reply = call(&app, "POST", "/predict", br#"{"age": "old"}"#);
    assert_eq!(reply.status, 422);
    assert_eq!(reply.body["error"]["field"], "age");
    assert_eq!(reply.model, Some(ModelVersion::new("credit-risk", "1")));
    let reply = call(
        &app,
        "POST",
        "/v2/models/credit-risk/infer",
        br#"{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}"#,
    );
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(reply.body["error"].is_string(), "{}", reply.body);
    let reply = call(&app, "GET", "/v2/models/nope", b"");
    assert_eq!(
        (reply.status, reply.body["code"].as_str()),
        (404, Some("unknown_model"))
    );
    assert!(
        engine.ran.borrow().is_empty(),
        "no invalid request reaches inference"
    );
}

#[test]
fn a_failing_version_falls_back_and_the_shadow_sees_a_copy() {
    let models = models(json!({
        "aliases": {"stable": "2"}, "split": [], "history": [],
        "fallback": "1", "shadow": "1",
    }));
    let mut engine = Scripted::new(&[0.0, 2.0]);
    engine.failing = vec!["2"];
    let reply = call(&app(&models, &engine), "POST", "/predict", &applicant());
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.model, Some(ModelVersion::new("credit-risk", "1")));
    assert_eq!(reply.body["fallback"]["from_version"], "2");
    assert_eq!(reply.body["fallback"]["reason"], "inference_failed");
    let telemetry = reply.telemetry.unwrap();
    let fallback = telemetry.fallback.unwrap();
    assert_eq!(
        (fallback.from_version.as_str(), fallback.reason.as_str()),
        ("2", "inference_failed")
    );
    // The shadow is the version that answered, so it does not run again.
    assert!(telemetry.shadow.is_none());
    assert_eq!(*engine.ran.borrow(), ["2", "1"]);
}

#[test]
fn the_shadow_answer_is_compared_but_never_returned() {
    let models = models(json!({
        "aliases": {"stable": "1"}, "split": [], "history": [], "shadow": "2",
    }));
    let engine = Scripted::new(&[3.0, 1.0]);
    let reply = call(&app(&models, &engine), "POST", "/predict", &applicant());
    assert_eq!(reply.body["model_version"], "1");
    let shadow = reply.telemetry.unwrap().shadow.unwrap();
    assert_eq!(
        (shadow.version.as_str(), shadow.prediction, shadow.agrees),
        ("2", 0, true)
    );
    assert_eq!(*engine.ran.borrow(), ["1", "2"]);
}

#[test]
fn without_a_fallback_version_the_declared_default_answer_stands_in() {
    let declared = models(json!({
        "aliases": {"stable": "1"}, "split": [], "history": [],
        "default_answer": {"prediction": 1, "label": "default"},
    }));
    let mut engine = Scripted::new(&[0.0, 1.0]);
    engine.failing = vec!["1"];
    let reply = call(
        &app(&declared, &engine),
        "POST",
        "/models/credit-risk/predict",
        &applicant(),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["label"], "default");
    assert_eq!(reply.body["fallback"]["default_answer"], true);
    assert_eq!(reply.telemetry.unwrap().prediction, Some(1));
    // Without one, the failure is the answer: a 5xx that names no internals.
    let undeclared = models(stable_only());
    let reply = call(&app(&undeclared, &engine), "POST", "/predict", &applicant());
    assert_eq!(reply.status, 500);
    assert_eq!(reply.body["error"]["code"], "inference_failed");
}
