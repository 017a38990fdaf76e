//! The browser package in a real browser: Debian's Chromium, driven by playwright-core
//! (`tests/browser/drive.mjs`), loads the demo page from `ember up` (spin.toml's static file
//! server component) and runs every reference case and bad input on WebGPU and on the CPU; the
//! answers must equal the server's.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{assert_close, reference_answers, repo_root, scratch_dir, Server};

/// Longest the browser run may take before the test gives up on it.
const BROWSER_DEADLINE: Duration = Duration::from_secs(300);

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
    let dir = repo_root().join("tests").join("browser");
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "playwright-core is missing: scripts/setup installs it (scripts/test runs it)"
    );
    let job_file = scratch_dir("browser").join("job.json");
    std::fs::write(&job_file, job.to_string()).unwrap();
    let mut child = Command::new("node")
        .current_dir(&dir)
        .arg("drive.mjs")
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
    assert!(status.success(), "drive.mjs failed: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("drive.mjs report: {e}: {stdout}"))
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
    let job = json!({
        "base": server.base,
        "backends": ["webgpu", "cpu"],
        "cases": answers.iter().map(|a| json!({
            "model": a.model, "name": a.name, "input": a.case["request"],
        })).collect::<Vec<_>>(),
        "invalid": bad_inputs().iter().map(|(model, name, input)| json!({
            "model": model, "name": name, "input": input,
        })).collect::<Vec<_>>(),
        "repeats": 200,
        "screenshot": screenshot,
    });
    let report = drive(&job);

    // Loads: the CPU always; WebGPU either runs a model or refuses it with the reason (the
    // self-check against tract), and runs at least one: Chromium here has a WebGPU adapter.
    let loads = report["loads"].as_array().unwrap();
    let refused = |model: &str| {
        loads
            .iter()
            .any(|l| l["model"] == model && l["backend"] == "webgpu" && l["error"].is_object())
    };
    for load in loads {
        eprintln!("browser load: {load}");
        if load["error"].is_object() {
            assert_eq!(load["backend"], "webgpu", "{load}");
            assert_eq!(
                load["error"]["error"]["code"], "backend_unavailable",
                "{load}"
            );
            assert_eq!(load["error"]["status"], 503, "{load}");
        } else {
            assert_eq!(load["ran"], load["backend"], "{load}");
        }
    }
    assert!(
        loads.iter().any(|l| l["ran"] == "webgpu"),
        "no model ran on WebGPU: {loads:?}"
    );

    // Every reference case: the server's answer, within 1e-4, on each backend that loaded.
    for prediction in report["predictions"].as_array().unwrap() {
        let name = prediction["name"].as_str().unwrap();
        let backend = prediction["backend"].as_str().unwrap();
        let result = &prediction["result"];
        let model = prediction["model"].as_str().unwrap();
        if backend == "webgpu" && refused(model) {
            assert_eq!(result["error"]["error"]["code"], "backend_unavailable");
            continue;
        }
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
        if backend == "webgpu" && refused(model) {
            continue;
        }
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
