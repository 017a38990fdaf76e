//! Decisions: the audit trail (`ember audit`), shadow versions (recorded and compared, never
//! returned), fallbacks for failing versions, and drift detection against the training baseline.

use std::path::Path;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::support::{ember, models_copy, repo_root, scratch_dir, Server};

fn start(models: &Path, ledger: &Path) -> Server {
    Server::start(&[
        "--models",
        models.to_str().unwrap(),
        "--ledger",
        ledger.to_str().unwrap(),
    ])
}

fn audit(id: &str, ledger: &Path) -> Value {
    serde_json::from_str(&ember(&["audit", id, "--ledger", ledger.to_str().unwrap()])).unwrap()
}

fn holdout() -> Vec<Value> {
    let text =
        std::fs::read_to_string(repo_root().join("models/credit-risk/1/holdout.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn every_decision_is_traceable_with_ember_audit() {
    let ledger = scratch_dir("audit").join("usage.db");
    let server = start(&repo_root().join("models"), &ledger);
    let body = json!({"age": 42, "income": 52000, "credit_score": 710}).to_string();
    let reply = server.post_json_full("/predict", &serde_json::from_str(&body).unwrap());
    assert_eq!(reply.status, 200);
    assert!(
        reply.headers.keys().all(|h| !h.starts_with("ember-x-")),
        "telemetry leaked: {:?}",
        reply.headers
    );
    let id = &reply.headers["ember-invocation-id"];
    let audit = audit(id, &ledger);
    assert_eq!(audit["id"], *id);
    assert_eq!(audit["model"], "credit-risk");
    assert_eq!(audit["model_version"], "1");
    let decision = &audit["decision"];
    let digest: String = Sha256::digest(body.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(decision["input_sha256"], digest);
    let output: Value = serde_json::from_str(decision["output"].as_str().unwrap()).unwrap();
    assert_eq!(output, reply.body);
    assert_eq!(decision["prediction"], reply.body["prediction"]);
    assert_eq!(decision["features"].as_array().unwrap().len(), 7);
}

#[test]
fn a_shadow_version_is_compared_and_never_returned() {
    let models = models_copy();
    let ledger = scratch_dir("shadow").join("usage.db");
    ember(&[
        "models",
        "--models",
        models.to_str().unwrap(),
        "shadow",
        "credit-risk",
        "2",
    ]);
    let server = start(&models, &ledger);
    for applicant in holdout().iter().take(40) {
        let reply = server.post_json_full("/models/credit-risk/predict", applicant);
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.body["model_version"], "1",
            "the shadow answered: {}",
            reply.body
        );
        assert!(reply.headers.keys().all(|h| !h.starts_with("ember-x-")));
    }
    let (_, metrics) = server.get_text("/-/metrics");
    let compared: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("ember_shadow_comparisons_total{") && l.contains("shadow=\"2\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(compared, 40.0, "{metrics}");
    drop(server);
    let report = ember(&[
        "models",
        "agreement",
        "credit-risk",
        "--ledger",
        ledger.to_str().unwrap(),
    ]);
    let row = report
        .lines()
        .find(|l| l.starts_with('1'))
        .unwrap_or_else(|| panic!("{report}"));
    let fields: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(fields[..3], ["1", "2", "40"], "{report}");
    let rate: f64 = fields[3].trim_end_matches('%').parse().unwrap();
    assert!((50.0..=100.0).contains(&rate), "{report}");
}

#[test]
fn a_failing_version_falls_back_and_says_so() {
    let models = models_copy();
    let ledger = scratch_dir("fallback").join("usage.db");
    // Version 4 has a valid spec but a corrupt graph: it can never load.
    let v4 = models.join("credit-risk/4");
    std::fs::create_dir_all(&v4).unwrap();
    std::fs::write(v4.join("model.onnx"), b"not an onnx graph").unwrap();
    let spec = std::fs::read_to_string(models.join("credit-risk/1/model.json")).unwrap();
    std::fs::write(
        v4.join("model.json"),
        spec.replace("\"version\":\"1\"", "\"version\":\"4\""),
    )
    .unwrap();
    let dir = models.to_str().unwrap();
    ember(&["models", "--models", dir, "promote", "credit-risk", "4"]);
    let server = start(&models, &ledger);
    let applicant = &holdout()[0];
    assert_eq!(
        server.post_json("/models/credit-risk/predict", applicant).0,
        503,
        "no fallback yet"
    );
    ember(&["models", "--models", dir, "fallback", "credit-risk", "1"]);
    let reply = server.post_json_full("/models/credit-risk/predict", applicant);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["model_version"], "1");
    assert_eq!(reply.body["fallback"]["from_version"], "4");
    assert_eq!(reply.body["fallback"]["reason"], "model_not_ready");
    let audit = audit(&reply.headers["ember-invocation-id"], &ledger);
    assert_eq!(audit["decision"]["fallback_from"], "4");
    assert_eq!(audit["model_version"], "1");

    // Without a fallback version, a declared default answer stands in.
    ember(&["models", "--models", dir, "fallback", "credit-risk", "off"]);
    ember(&[
        "models",
        "--models",
        dir,
        "default-answer",
        "credit-risk",
        r#"{"prediction": 1, "label": "default"}"#,
    ]);
    let reply = server.post_json_full("/models/credit-risk/predict", applicant);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["label"], "default");
    assert_eq!(reply.body["fallback"]["default_answer"], true);
    assert_eq!(reply.body["fallback"]["from_version"], "4");
}

#[test]
fn a_timed_out_prediction_gets_the_declared_default_answer() {
    // A model whose function never answers in time (the misbehaving guest loops on `?loop`).
    let models = scratch_dir("slow-models");
    std::fs::create_dir_all(models.join("slowpoke")).unwrap();
    std::fs::write(
        models.join("slowpoke/routing.json"),
        r#"{"aliases": {"stable": "1", "canary": "2"}, "default_answer": {"prediction": 0, "label": "approve"}}"#,
    )
    .unwrap();
    let ledger = scratch_dir("slow-ledger").join("usage.db");
    let server = Server::start(&[
        "--component",
        env!("EMBER_MISBEHAVE_WASM"),
        "--deadline-ms",
        "300",
        "--models",
        models.to_str().unwrap(),
        "--ledger",
        ledger.to_str().unwrap(),
    ]);
    let reply = server.post_json_full("/models/slowpoke/predict?loop", &json!({}));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["label"], "approve");
    assert_eq!(reply.body["fallback"]["reason"], "deadline_exceeded");
    let record = audit(&reply.headers["ember-invocation-id"], &ledger);
    assert_eq!(record["failure"], "deadline_exceeded");
    assert_eq!(record["decision"]["fallback_reason"], "deadline_exceeded");
    assert_eq!(reply.body["fallback"]["from_version"], "1");
    assert_eq!(record["model_version"], "1");
    // The answer names the version the request pinned, directly or through an alias.
    for path in [
        "/models/slowpoke/versions/2/predict?loop",
        "/models/slowpoke/versions/canary/predict?loop",
    ] {
        let reply = server.post_json_full(path, &json!({}));
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
        assert_eq!(reply.body["fallback"]["from_version"], "2", "{path}");
        let pinned = audit(&reply.headers["ember-invocation-id"], &ledger);
        assert_eq!(pinned["model_version"], "2", "{path}");
        assert_eq!(pinned["decision"]["fallback_from"], "2", "{path}");
    }
    // A model without a declared answer still gets the plain 504.
    assert_eq!(server.get("/loop").0, 504);
}

#[test]
fn shifted_traffic_raises_the_drift_flag_and_unshifted_traffic_does_not() {
    for (label, shift) in [("unshifted", false), ("shifted", true)] {
        let ledger = scratch_dir("drift").join("usage.db");
        let server = start(&repo_root().join("models"), &ledger);
        for applicant in holdout().iter().take(300) {
            let mut applicant = applicant.clone();
            if shift {
                // A recession: lower incomes and scores, more debt.
                applicant["income"] = json!(applicant["income"].as_f64().unwrap() * 0.45);
                applicant["credit_score"] =
                    json!((applicant["credit_score"].as_i64().unwrap() - 90).max(300));
                applicant["debt_to_income"] =
                    json!((applicant["debt_to_income"].as_f64().unwrap() * 1.8).min(5.0));
            }
            assert_eq!(
                server
                    .post_json("/models/credit-risk/predict", &applicant)
                    .0,
                200
            );
        }
        let (_, metrics) = server.get_text("/-/metrics");
        let detected = metrics
            .lines()
            .find(|l| l.starts_with("ember_drift_detected{") && l.contains("model=\"credit-risk\""))
            .unwrap_or_else(|| panic!("{label}: no drift gauge\n{metrics}"));
        assert_eq!(detected.ends_with(" 1"), shift, "{label}: {detected}");
        drop(server);
        let models = repo_root().join("models");
        let report: Value = serde_json::from_str(&ember(&[
            "models",
            "--models",
            models.to_str().unwrap(),
            "drift",
            "credit-risk",
            "--json",
            "--ledger",
            ledger.to_str().unwrap(),
        ]))
        .unwrap();
        assert_eq!(report["window"], 300);
        assert_eq!(report["drifted"], shift, "{label}: {report}");
        let income_psi = report["features"][1]["psi"].as_f64().unwrap();
        assert_eq!(income_psi > 0.25, shift, "{label}: income PSI {income_psi}");
    }
}
