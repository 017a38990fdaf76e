//! Every reference case matches onnxruntime's output within 1e-4, through `/predict` and v2 `infer`,
//! on either inference backend (ONNX Runtime, tract).

use serde_json::json;

use crate::support::{assert_close, reference_answers, reference_cases, repo_root, Server};

const TOLERANCE: f64 = 1e-4;

#[test]
fn reference_cases_match_onnxruntime_through_predict_and_v2_infer() {
    // The default (`auto`) runs ONNX Runtime where scripts/setup installed it, as here.
    let server = Server::start(&[]);
    assert!(
        server.logs().contains("inference backend: ONNX Runtime"),
        "{}",
        server.logs()
    );
    check_reference_answers(&server);
}

#[test]
fn the_tract_backend_answers_every_reference_case_too() {
    let server = Server::start(&["--backend", "tract"]);
    assert!(server
        .logs()
        .contains("inference backend: tract (--backend tract)"));
    check_reference_answers(&server);
}

#[test]
fn without_onnx_runtime_auto_falls_back_to_tract_and_ort_refuses_to_start() {
    let missing = repo_root().join("target/no-such-libonnxruntime.so");
    let missing = missing.to_str().unwrap();
    let server = Server::start(&["--ort-library", missing]);
    let logs = server.logs();
    assert!(
        logs.contains("inference backend: tract, as ONNX Runtime is not available")
            && logs.contains("no-such-libonnxruntime.so is missing"),
        "{logs}"
    );
    assert_eq!(
        server
            .post_json(
                "/predict",
                &json!({"age": 42, "income": 52000, "credit_score": 710})
            )
            .0,
        200
    );
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ember"))
        .current_dir(repo_root())
        .args([
            "up",
            "--listen",
            "127.0.0.1:0",
            "--no-metering",
            "--backend",
            "ort",
            "--ort-library",
            missing,
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains("--backend ort") && said.contains("is missing"),
        "{said}"
    );
}

fn check_reference_answers(server: &Server) {
    for answer in reference_answers(server) {
        let (name, case, reply) = (&answer.name, &answer.case, &answer.predict);
        assert_close(
            &reply["probabilities"],
            &case["probabilities"],
            TOLERANCE,
            name,
        );
        assert_eq!(reply["prediction"], case["prediction"], "{name}");
        assert_eq!(reply["model"], answer.model);
        assert_eq!(reply["model_version"], "1");
        let confidence = reply["confidence"].as_f64().unwrap();
        let top = case["probabilities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_f64().unwrap())
            .fold(0.0, f64::max);
        assert!((confidence - top).abs() <= TOLERANCE, "{name}: confidence");

        let reply = &answer.infer;
        assert_eq!(&reply["id"], name);
        assert_eq!(reply["model_name"], answer.model);
        let expected = &case["outputs"][0];
        let output = &reply["outputs"][0];
        assert_eq!(output["name"], expected["name"]);
        assert_eq!(output["shape"], expected["shape"]);
        assert_eq!(output["datatype"], "FP32");
        assert_close(&output["data"], &expected["data"], TOLERANCE, name);
    }
}

#[test]
fn predict_defaults_to_credit_risk_and_answers_the_readme_example() {
    let server = Server::start(&[]);
    let (status, reply) = server.post_json(
        "/predict",
        &json!({"age": 42, "income": 52000, "credit_score": 710}),
    );
    assert_eq!(status, 200, "{reply}");
    for field in [
        "prediction",
        "confidence",
        "model_version",
        "timestamp",
        "label",
        "probabilities",
    ] {
        assert!(!reply[field].is_null(), "missing {field}: {reply}");
    }
    assert_eq!(reply["model"], "credit-risk");
    let p: f64 = reply["probabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_f64().unwrap())
        .sum();
    assert!((p - 1.0).abs() < 1e-6);
}

#[test]
fn a_larger_jpeg_is_decoded_resized_and_classified() {
    let server = Server::start(&[]);
    let jpeg =
        std::fs::read(crate::support::repo_root().join("models/digits/1/sample-7.jpg")).unwrap();
    use base64::Engine as _;
    let image = base64::engine::general_purpose::STANDARD.encode(jpeg);
    let (status, reply) = server.post_json("/models/digits/predict", &json!({ "image": image }));
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["label"], "7", "{reply}");
}

#[test]
fn health_metadata_and_pinned_versions_answer() {
    let server = Server::start(&[]);
    let (status, health) = server.get("/health");
    assert_eq!(status, 200);
    assert_eq!(health["status"], "ok");
    let names: Vec<&str> = health["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["credit-risk", "digits", "efficientnet-lite0", "minilm"],
        "{health}"
    );
    assert_eq!(server.get("/v2").1["name"], "ember");
    assert_eq!(server.get("/v2/health/live").0, 200);
    assert_eq!(server.get("/v2/health/ready").0, 200);
    let (status, meta) = server.get("/v2/models/digits");
    assert_eq!(status, 200);
    assert_eq!(meta["inputs"][0]["shape"], json!([-1, 1, 8, 8]));
    assert_eq!(server.get("/v2/models/digits/versions/1/ready").0, 200);
    assert_eq!(server.get("/v2/models/digits/versions/9/ready").0, 404);
    let case = &reference_cases("credit-risk")[0];
    let (status, reply) =
        server.post_json("/models/credit-risk/versions/1/predict", &case["request"]);
    assert_eq!(status, 200);
    assert_eq!(reply["model_version"], "1");
}

#[test]
fn a_restart_uses_the_cached_compiled_component() {
    let cache = crate::support::scratch_dir("cache");
    let first = Server::start_with_cache(&cache, &[]);
    assert!(
        first.logs().contains("compiled=Compiled"),
        "{}",
        first.logs()
    );
    drop(first);
    let second = Server::start_with_cache(&cache, &[]);
    assert!(second.logs().contains("compiled=Hit"), "{}", second.logs());
    assert_eq!(second.get("/health").0, 200);
}
