//! The browser package in a real browser: Debian's Chromium, driven by playwright-core
//! (`tests/browser/drive.mjs`), loads the demo page from `ember up` (spin.toml's static file
//! server component) and runs every reference case and bad input on WebGPU and on the CPU; the
//! answers must equal the server's. Graphs wonnx fails on (`tests/fixtures`) must fall back to
//! the CPU at load, saying why.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::embeddings::{cosine, vector};
use crate::support::{assert_close, reference_answers, repo_root, scratch_dir, Server};

/// Longest the browser run may take before the test gives up on it.
const BROWSER_DEADLINE: Duration = Duration::from_secs(300);

/// Model versions wonnx fails on in Chromium (`tests/fixtures`, made by
/// `scripts/models/browser_fixture.py`: digits v1 ending in Softmax), with what the package must
/// say about each.
const WONNX_FAILURES: [(&str, &str); 2] = [
    // Compiles, but Chromium rejects the shader and the run returns zeros.
    (
        "softmax-opset15",
        "wonnx returned all zeros for 'probabilities'",
    ),
    // wonnx implements Softmax only up to opset 15.
    ("softmax-opset17", "wonnx cannot run the graph"),
];

/// Requests the server rejects, each with the field and rule it breaks.
fn bad_inputs() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        (
            "credit-risk",
            "missing-feature",
            json!({"income": 52000, "credit_score": 690}),
        ),
        (
            "credit-risk",
            "out-of-range",
            json!({"age": 12, "income": 52000, "credit_score": 690}),
        ),
        (
            "credit-risk",
            "wrong-type",
            json!({"age": "old", "income": 52000, "credit_score": 690}),
        ),
        (
            "credit-risk",
            "fractional-integer",
            json!({"age": 35.5, "income": 52000, "credit_score": 690}),
        ),
        (
            "credit-risk",
            "unknown-field",
            json!({"age": 35, "income": 52000, "credit_score": 690, "zodiac": "leo"}),
        ),
        ("credit-risk", "not-an-object", json!([35, 52000, 690])),
        ("digits", "missing-image", json!({})),
        (
            "digits",
            "not-base64",
            json!({"image": "this is not base64!"}),
        ),
        (
            "digits",
            "not-an-image",
            json!({"image": "aGVsbG8gd29ybGQ="}),
        ),
    ]
}

/// Runs `drive.mjs` on a job and returns its report.
fn drive(job: &Value) -> Value {
    run_driver("drive.mjs", job)
}

/// Runs a Chromium driver of `tests/browser` on a job and returns its report.
pub fn run_driver(script: &str, job: &Value) -> Value {
    let dir = repo_root().join("tests").join("browser");
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "playwright-core is missing: scripts/setup installs it (scripts/test runs it)"
    );
    let job_file = scratch_dir("browser").join(format!("{script}.job.json"));
    std::fs::write(&job_file, job.to_string()).unwrap();
    let mut child = Command::new("node")
        .current_dir(&dir)
        .arg(script)
        .arg(&job_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs (scripts/setup installs it)");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        stdout.read_to_string(&mut text).map(|_| text)
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > BROWSER_DEADLINE {
            child.kill().unwrap();
            panic!("the browser run took over {BROWSER_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = reader.join().unwrap().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "{script} failed: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{script} report: {e}: {stdout}"))
}

#[test]
fn the_page_predicts_like_the_server_on_webgpu_and_cpu() {
    let pkg = repo_root().join("target/browser/pkg/ember_browser_bg.wasm");
    assert!(
        pkg.is_file(),
        "{} is missing: scripts/build-browser builds it (scripts/test runs it)",
        pkg.display()
    );
    let server = Server::start(&[]);
    let answers = reference_answers(&server);
    let screenshot = repo_root().join("target/browser/demo.png");
    let _ = std::fs::remove_file(&screenshot);
    let digit = answers.iter().find(|a| a.model == "digits").unwrap();
    let backends = ["webgpu", "cpu"];
    let job = json!({
        "base": server.base,
        "backends": backends,
        "cases": answers.iter().map(|a| json!({
            "model": a.model, "name": a.name, "input": a.case["request"],
        })).collect::<Vec<_>>(),
        "invalid": bad_inputs().iter().map(|(model, name, input)| json!({
            "model": model, "name": name, "input": input,
        })).collect::<Vec<_>>(),
        "fixtures": WONNX_FAILURES.iter().map(|(name, _)| json!({
            "name": name,
            "dir": repo_root().join("tests/fixtures").join(name),
            "input": digit.case["request"],
        })).collect::<Vec<_>>(),
        "repeats": 200,
        "screenshot": screenshot,
    });
    let report = drive(&job);

    // Loads: every bundled model runs on the backend asked for. Chromium here has a WebGPU
    // adapter (SwiftShader), and both models pass the self-check against tract there.
    let loads = report["loads"].as_array().unwrap();
    let models: std::collections::BTreeSet<_> = answers.iter().map(|a| a.model).collect();
    assert_eq!(loads.len(), models.len() * backends.len(), "{loads:?}");
    for load in loads {
        eprintln!("browser load: {load}");
        assert_eq!(load["ran"], load["backend"], "{load}");
        assert!(load["load_ms"].as_f64().unwrap() > 0.0, "{load}");
    }

    // Every reference case: the server's answer, within 1e-4, on each backend.
    for prediction in report["predictions"].as_array().unwrap() {
        let name = prediction["name"].as_str().unwrap();
        let backend = prediction["backend"].as_str().unwrap();
        let result = &prediction["result"];
        assert_eq!(result["ok"], true, "{name} on {backend}: {result}");
        let reply = &result["reply"];
        let server = &answers.iter().find(|a| a.name == name).unwrap().predict;
        let what = format!("{name} on {backend}");
        assert_close(
            &reply["probabilities"],
            &server["probabilities"],
            1e-4,
            &what,
        );
        for field in ["model", "model_version", "prediction", "label", "labels"] {
            assert_eq!(reply[field], server[field], "{what}: {field}");
        }
        assert_eq!(reply["backend"]["name"], backend, "{what}");
    }

    // Bad input: the server's status and error body, field and message included.
    for rejected in report["invalid"].as_array().unwrap() {
        let (model, name) = (rejected["model"].as_str().unwrap(), &rejected["name"]);
        let backend = rejected["backend"].as_str().unwrap();
        let (_, _, input) = bad_inputs()
            .into_iter()
            .find(|(m, n, _)| *m == model && n == name)
            .unwrap();
        let (status, body) = server.post_json(&format!("/models/{model}/predict"), &input);
        assert!(
            (400..500).contains(&status),
            "{name}: server {status} {body}"
        );
        let error = &rejected["result"]["error"];
        assert_eq!(rejected["result"]["ok"], false, "{name} on {backend}");
        assert_eq!(error["status"], status, "{name} on {backend}: {error}");
        assert_eq!(error["error"], body["error"], "{name} on {backend}");
    }

    // Graphs wonnx can't run here are caught at load: `auto` answers on the CPU, as the server
    // would; `webgpu` says why not.
    let fixtures = report["fixtures"].as_array().unwrap();
    assert_eq!(fixtures.len(), 2 * WONNX_FAILURES.len());
    for fixture in fixtures {
        eprintln!("browser fixture: {fixture}");
        let (_, why) = WONNX_FAILURES
            .iter()
            .find(|(name, _)| fixture["name"] == *name)
            .unwrap();
        if fixture["backend"] == "auto" {
            assert_eq!(fixture["ran"], "cpu", "{fixture}");
            assert!(
                fixture["reason"].as_str().unwrap().contains(why),
                "{fixture}"
            );
            let reply = &fixture["reply"];
            let what = format!("{} on the CPU", fixture["name"]);
            assert_close(
                &reply["probabilities"],
                &digit.predict["probabilities"],
                1e-4,
                &what,
            );
            assert_eq!(reply["label"], digit.predict["label"], "{what}");
        } else {
            let error = &fixture["error"];
            assert_eq!(error["status"], 503, "{fixture}");
            assert_eq!(error["error"]["code"], "backend_unavailable", "{fixture}");
            assert!(
                error["error"]["message"].as_str().unwrap().contains(why),
                "{fixture}"
            );
        }
    }

    // The page as a person uses it: a drawn digit gets a label and ten bars, the form a decision.
    let page = &report["page"];
    eprintln!("browser page: {page}");
    assert_eq!(page["title"], "Ember — inference in the browser");
    assert_eq!(page["bars"], 10, "{page}");
    assert!(
        page["digit"].as_str().unwrap().parse::<u8>().is_ok(),
        "{page}"
    );
    assert!(
        page["credit"].as_str().unwrap().starts_with("Approve")
            || page["credit"].as_str().unwrap().starts_with("Decline"),
        "{page}"
    );
    assert_eq!(page["formFields"], 7, "{page}");
    assert_eq!(report["console"], json!([]), "console errors");
    let png = std::fs::read(&screenshot).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000);
    for timing in report["timings"].as_array().unwrap() {
        eprintln!("browser inference: {timing}");
    }
}

#[test]
fn text_embeddings_run_in_the_page_on_the_cpu_and_auto_says_why() {
    let server = Server::start(&[]);
    let cases: Vec<Value> =
        crate::support::reference_cases_in(&repo_root().join("models"), "minilm", "1")
            .into_iter()
            .filter(|c| ["accents", "cjk", "emoji", "long"].contains(&c["name"].as_str().unwrap()))
            .collect();
    let job = json!({
        "base": server.base,
        "backends": ["auto", "cpu", "webgpu"],
        "cases": cases.iter().map(|c| json!({
            "model": "minilm", "name": c["name"], "input": c["request"],
        })).collect::<Vec<_>>(),
        "invalid": [{ "model": "minilm", "name": "a number", "input": { "text": 7 } }],
        "repeats": 3,
    });
    let report = drive(&job);

    // auto runs the text model on the CPU and says why; webgpu is refused with the same reason.
    let why = "MatMulInteger";
    for load in report["loads"].as_array().unwrap() {
        eprintln!("browser load: {load}");
        match load["backend"].as_str().unwrap() {
            "webgpu" => {
                assert_eq!(
                    load["error"]["error"]["code"], "backend_unavailable",
                    "{load}"
                );
                let message = load["error"]["error"]["message"].as_str().unwrap();
                assert!(message.contains(why), "{load}");
            }
            _ => {
                assert_eq!(load["ran"], "cpu", "{load}");
                assert!(
                    load["backend"] == "cpu" || load["reason"].as_str().unwrap().contains(why),
                    "{load}"
                );
            }
        }
    }
    // The page tokenizes as Hugging Face does and embeds as onnxruntime does.
    let mut embedded = 0;
    for prediction in report["predictions"].as_array().unwrap() {
        let (name, backend) = (&prediction["name"], &prediction["backend"]);
        let result = &prediction["result"];
        if backend == "webgpu" {
            assert_eq!(result["ok"], false, "{name} on webgpu: {result}");
            continue;
        }
        assert_eq!(result["ok"], true, "{name} on {backend}: {result}");
        let case = cases.iter().find(|c| &c["name"] == name).unwrap();
        let reply = &result["reply"];
        assert_eq!(
            reply["tokens"],
            case["ids"].as_array().unwrap().len(),
            "{name}"
        );
        assert_eq!(reply["dimensions"], 384);
        let cosine = cosine(
            &vector(&reply["embeddings"][0]),
            &vector(&case["embedding"]),
        );
        eprintln!("browser embedding: {name} on {backend}: cosine {cosine:.6}");
        // The ids are Hugging Face's exactly (the token count above, and the function's unit
        // test); the vectors are tract's, whose int8 DynamicQuantizeLinear rounds a little
        // differently from onnxruntime's (0.998 on the emoji text; the server, on ONNX Runtime,
        // is within 0.999: tests/e2e/embeddings.rs).
        assert!(cosine >= 0.995, "{name} on {backend}: cosine {cosine}");
        embedded += 1;
    }
    assert_eq!(embedded, 2 * cases.len());
    // Bad input gets the server's answer.
    let (status, body) = server.post_json("/models/minilm/predict", &json!({ "text": 7 }));
    for rejected in report["invalid"].as_array().unwrap() {
        if rejected["backend"] == "webgpu" {
            continue;
        }
        let error = &rejected["result"]["error"];
        assert_eq!(error["status"], status, "{rejected}");
        assert_eq!(error["error"], body["error"], "{rejected}");
    }
    assert_eq!(report["console"], json!([]), "console errors");
    for timing in report["timings"].as_array().unwrap() {
        eprintln!("browser inference: {timing}");
    }
}

#[test]
fn the_imagenet_model_classifies_photos_in_the_page_on_auto_and_the_cpu() {
    let server = Server::start(&[]);
    let cases =
        crate::support::reference_cases_in(&repo_root().join("models"), "efficientnet-lite0", "1");
    // The pixel-exact case (a 256 x 256 PNG: no resize) and a photo as a JPEG.
    let picked: Vec<&Value> = cases
        .iter()
        .filter(|c| c["name"] == "coffee-square" || c["name"] == "chelsea-photo")
        .collect();
    let job = json!({
        "base": server.base,
        "backends": ["auto", "cpu"],
        "cases": picked.iter().map(|c| json!({
            "model": "efficientnet-lite0", "name": c["name"], "input": c["request"],
        })).collect::<Vec<_>>(),
        "invalid": [],
        "repeats": 1,
    });
    let report = drive(&job);
    // `auto` compiles the graph with wonnx and self-checks it against tract (on this machine's
    // SwiftShader adapter it passes, within 1e-5); either way it says what it chose and why.
    for load in report["loads"].as_array().unwrap() {
        eprintln!("browser load: {load}");
        let ran = load["ran"].as_str().unwrap_or_default();
        assert!(ran == "webgpu" || ran == "cpu", "{load}");
        assert!(!load["reason"].as_str().unwrap().is_empty(), "{load}");
        if load["backend"] == "cpu" {
            assert_eq!(ran, "cpu", "{load}");
        }
    }
    let predictions = report["predictions"].as_array().unwrap();
    assert_eq!(predictions.len(), 2 * picked.len());
    for prediction in predictions {
        let name = prediction["name"].as_str().unwrap();
        let result = &prediction["result"];
        assert_eq!(result["ok"], true, "{name}: {result}");
        let reply = &result["reply"];
        let case = picked.iter().find(|c| c["name"] == name).unwrap();
        let (status, served) = server.post_json(
            "/models/efficientnet-lite0/versions/1/predict",
            &case["request"],
        );
        assert_eq!(status, 200, "{served}");
        // The same decode, resize and crop code as the server: the page's answer is the
        // server's, within tract's distance from onnxruntime.
        assert_close(
            &reply["probabilities"],
            &served["probabilities"],
            1e-4,
            name,
        );
        assert_eq!(reply["label"], case["top_k"][0]["label"], "{name}");
        assert_eq!(reply["top_k"].as_array().unwrap().len(), 5, "{name}");
    }
    assert_eq!(report["console"], json!([]), "console errors");
    for timing in report["timings"].as_array().unwrap() {
        eprintln!("browser inference: {timing}");
    }
}
