//! Starting a real `ember up` on a free loopback port and talking to it over HTTP.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use ember::process::{capture, serving_address, spawn_wasmtime_serve_with};
use ember_contract::names::{GUEST_MODELS_DIR, REFERENCE_FILE};
use serde_json::Value;

/// The repository root (tests run with the host package as their directory).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A fresh, empty directory under `target/` for one test (unique within this test run).
pub fn scratch_dir(name: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    static SWEEP: std::sync::Once = std::sync::Once::new();
    let root = repo_root().join("target").join("e2e");
    SWEEP.call_once(|| remove_ended_runs_scratch(&root));
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = root.join(format!("{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Removes the scratch directories (`{name}-{pid}-{n}`) of test runs whose process has ended.
/// Their models copies and ledgers would otherwise pile up, a few gigabytes a run, in the build
/// cache that CI's clones share; a run still going (its process alive) keeps its own.
fn remove_ended_runs_scratch(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name
            .to_str()
            .and_then(|n| n.rsplit('-').nth(1)?.parse::<u32>().ok());
        let ended = pid.is_some_and(|pid| !Path::new("/proc").join(pid.to_string()).exists());
        if ended {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A running `ember up`, killed when dropped.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `ember up` with the bundled models and the given extra arguments.
    pub fn start(extra: &[&str]) -> Server {
        Self::start_with_cache(&repo_root().join("target").join("e2e-cache"), extra)
    }

    /// Starts `ember up` with a specific compiled-component cache directory.
    pub fn start_with_cache(cache: &Path, extra: &[&str]) -> Server {
        Self::start_with_env(cache, extra, &[])
    }

    /// Starts `ember up` with a specific cache directory and environment variables (e.g. Spin
    /// variables). Unless `extra` names them, the ledger and the Spin APIs' state go to fresh
    /// scratch directories.
    pub fn start_with_env(cache: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let scratch = |flag: &str, dir: &str, file: &str| {
            if extra.contains(&flag) {
                vec![]
            } else {
                vec![
                    flag.to_string(),
                    scratch_dir(dir).join(file).display().to_string(),
                ]
            }
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_ember"))
            .current_dir(repo_root())
            .args(["up", "--listen", "127.0.0.1:0", "--cache-dir"])
            .arg(cache)
            .args(scratch("--ledger", "ledger", "usage.db"))
            .args(scratch("--spin-state", "spin-state", "spin"))
            .args(extra)
            .envs(env.iter().copied())
            .env("EMBER_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ember binary runs");
        let stderr = capture(child.stderr.take().unwrap());
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line
            .trim()
            .strip_prefix("ember listening on ")
            .unwrap_or_else(|| panic!("ember did not start: {line:?}\n{}", stderr.lock().unwrap()))
            .to_string();
        // "ready" is logged just before the address is printed; wait for the log reader to see it.
        for _ in 0..200 {
            if stderr.lock().unwrap().contains("ready") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Server {
            child,
            base,
            stderr,
        }
    }

    /// Starts upstream `wasmtime serve` (tests/wasmtime-serve, built by `cargo build --release`)
    /// on the given component, with the models mounted at `/models` as spin.toml mounts them,
    /// and waits until it listens.
    pub fn wasmtime_serve(component: &Path) -> Server {
        let models = repo_root().join("models");
        Self::wasmtime_serve_with(component, &[(&models, GUEST_MODELS_DIR)])
    }

    /// [`Server::wasmtime_serve`] with each `(host directory, guest path)` of `mounts` preopened.
    pub fn wasmtime_serve_with(component: &Path, mounts: &[(&Path, &str)]) -> Server {
        // The test binary runs from target/release/deps; the workspace's binaries sit one up.
        let wasmtime = std::env::current_exe()
            .unwrap()
            .parent()
            .and_then(Path::parent)
            .unwrap()
            .join("wasmtime-serve");
        assert!(
            wasmtime.is_file(),
            "{} is missing: `cargo build --release` builds it (scripts/test runs it)",
            wasmtime.display()
        );
        let (mut child, stderr) =
            spawn_wasmtime_serve_with(&wasmtime, component, mounts, &[]).expect("wasmtime runs");
        // Compiling the ~10 MB embedded component takes a while on two cores.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
        let base = loop {
            let logged = stderr.lock().unwrap().clone();
            if let Some(address) = serving_address(&logged) {
                break format!("http://{address}");
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("wasmtime serve exited ({status}):\n{logged}");
            }
            assert!(
                std::time::Instant::now() < deadline,
                "wasmtime serve did not start:\n{logged}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        Server {
            child,
            base,
            stderr,
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the server logged so far.
    pub fn logs(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Whether the process is still running.
    pub fn is_alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// `GET path` → (status, JSON body).
    pub fn get(&self, path: &str) -> (u16, Value) {
        reply(agent().get(format!("{}{path}", self.base)).call())
    }

    /// `GET path` as the caller `key` (`ember-caller-key`) → (status, JSON body).
    pub fn get_as(&self, key: &str, path: &str) -> (u16, Value) {
        reply(
            agent()
                .get(format!("{}{path}", self.base))
                .header(ember_contract::headers::CALLER_KEY, key)
                .call(),
        )
    }

    /// `POST path` with a JSON body.
    pub fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post(path, "application/json", body.to_string().as_bytes())
    }

    /// `POST path` with raw bytes and a content type.
    pub fn post(&self, path: &str, content_type: &str, body: &[u8]) -> (u16, Value) {
        let reply = self.post_full(path, content_type, body);
        (reply.status, reply.body)
    }

    /// `POST path` with a JSON body, keeping the reply's headers.
    pub fn post_json_full(&self, path: &str, body: &Value) -> Reply {
        self.post_full(path, "application/json", body.to_string().as_bytes())
    }

    /// `POST path` with a v2 binary tensor data body: the JSON `header`, then `tensor_bytes`, with
    /// `header_length` as its `Inference-Header-Content-Length` (the header's own length when `None`).
    pub fn post_binary_infer(
        &self,
        path: &str,
        header: &Value,
        tensor_bytes: &[u8],
        header_length: Option<&str>,
    ) -> (u16, Value) {
        let mut body = header.to_string().into_bytes();
        let length = header_length.map_or_else(|| body.len().to_string(), str::to_string);
        body.extend_from_slice(tensor_bytes);
        let reply = full_reply(
            agent()
                .post(format!("{}{path}", self.base))
                .header("inference-header-content-length", length)
                .send(&body[..]),
        );
        (reply.status, reply.body)
    }

    fn post_full(&self, path: &str, content_type: &str, body: &[u8]) -> Reply {
        full_reply(
            agent()
                .post(format!("{}{path}", self.base))
                .header("content-type", content_type)
                .send(body),
        )
    }

    /// `method path` with extra headers and a JSON body (or none), keeping the reply's headers.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Reply {
        send_with(&agent(), &self.base, method, path, headers, body)
    }

    /// `GET path` → status and raw text (for non-JSON endpoints such as `/-/metrics`).
    pub fn get_text(&self, path: &str) -> (u16, String) {
        let mut response = agent()
            .get(format!("{}{path}", self.base))
            .call()
            .expect("the server answers");
        let status = response.status().as_u16();
        (status, response.body_mut().read_to_string().unwrap())
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits up to `timeout` for the process to exit by itself; its exit status if it did.
    pub fn wait_exit(&mut self, timeout: std::time::Duration) -> Option<std::process::ExitStatus> {
        let started = std::time::Instant::now();
        while started.elapsed() < timeout {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        None
    }
}

/// A reply with its headers.
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Lowercase header names → values.
    pub headers: std::collections::HashMap<String, String>,
    /// JSON body.
    pub body: Value,
}

fn full_reply(result: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Reply {
    let mut response = result.expect("the server answers");
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                v.to_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .with_config()
        .limit(64 * 1024 * 1024)
        .read_to_string()
        .unwrap();
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("reply is not JSON (status {status}): {text:?}"));
    Reply {
        status,
        headers,
        body,
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// [`Server::send`] with another agent (one that trusts a test's own certificate).
pub fn send_with(
    agent: &ureq::Agent,
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> Reply {
    let mut request = ureq::http::Request::builder()
        .method(method)
        .uri(format!("{base}{path}"));
    if body.is_some() {
        request = request.header("content-type", "application/json");
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let body = body.map(Value::to_string).unwrap_or_default();
    full_reply(agent.run(request.body(body).unwrap()))
}

/// The tests' HTTP client: statuses are answers, not errors.
pub fn agent_config() -> ureq::config::ConfigBuilder<ureq::typestate::AgentScope> {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(30)))
}

fn agent() -> ureq::Agent {
    agent_config().build().into()
}

fn reply(result: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, Value) {
    let reply = full_reply(result);
    (reply.status, reply.body)
}

/// The reference cases of a bundled model's version 1: inputs with onnxruntime's outputs.
pub fn reference_cases(model: &str) -> Vec<Value> {
    reference_cases_in(&repo_root().join("models"), model, "1")
}

/// The reference cases of `model` at `version` in a models directory, as the JSON the tests
/// compare replies with.
pub fn reference_cases_in(models: &Path, model: &str, version: &str) -> Vec<Value> {
    let path = models.join(model).join(version).join(REFERENCE_FILE);
    let text = std::fs::read_to_string(path).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    doc["cases"].as_array().unwrap().clone()
}

/// Asserts two number arrays agree element-wise within `tolerance`.
pub fn assert_close(actual: &Value, expected: &Value, tolerance: f64, what: &str) {
    let actual: Vec<f64> = actual
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let expected: Vec<f64> = expected
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    for (i, (a, e)) in actual.iter().zip(&expected).enumerate() {
        assert!(
            (a - e).abs() <= tolerance,
            "{what}[{i}]: {a} vs onnxruntime {e}"
        );
    }
}

/// One reference case's replies from a server: `/predict` and v2 `infer`.
pub struct ReferenceAnswer {
    /// `<model>/<case>`, also the v2 request id.
    pub name: String,
    /// Model name.
    pub model: &'static str,
    /// The case (inputs with onnxruntime's outputs).
    pub case: Value,
    /// The `/models/{model}/predict` reply (status 200 checked).
    pub predict: Value,
    /// The `/v2/models/{model}/infer` reply (status 200 checked).
    pub infer: Value,
}

/// Every reference case of both bundled models through `/predict` and v2 `infer`.
pub fn reference_answers(server: &Server) -> Vec<ReferenceAnswer> {
    let mut all = Vec::new();
    for model in ["credit-risk", "digits"] {
        for case in reference_cases(model) {
            let name = format!("{model}/{}", case["name"].as_str().unwrap());
            let (status, predict) =
                server.post_json(&format!("/models/{model}/predict"), &case["request"]);
            assert_eq!(status, 200, "{name}: {predict}");
            let request = serde_json::json!({ "id": name, "inputs": case["inputs"] });
            let (status, infer) = server.post_json(&format!("/v2/models/{model}/infer"), &request);
            assert_eq!(status, 200, "{name} v2: {infer}");
            all.push(ReferenceAnswer {
                name,
                model,
                case,
                predict,
                infer,
            });
        }
    }
    all
}

/// Publishes a copy of `model`'s version `from` as version `to` in a models directory, as an
/// operator would: the same graph and files, the spec renumbered.
pub fn publish_copy(models: &Path, model: &str, from: &str, to: &str) {
    let source = models.join(model).join(from);
    let target = models.join(model).join(to);
    std::fs::create_dir_all(&target).unwrap();
    for file in ["model.onnx", "model.toml", "reference.json"] {
        std::fs::copy(source.join(file), target.join(file)).unwrap();
    }
    let spec = std::fs::read_to_string(source.join("model.json")).unwrap();
    std::fs::write(
        target.join("model.json"),
        spec.replace(
            &format!("\"version\":\"{from}\""),
            &format!("\"version\":\"{to}\""),
        ),
    )
    .unwrap();
}

/// A private copy of the bundled models, so routing changes stay in one test.
pub fn models_copy() -> PathBuf {
    let dir = scratch_dir("models");
    let status = Command::new("cp")
        .arg("-r")
        .arg(repo_root().join("models"))
        .arg(&dir)
        .status()
        .unwrap();
    assert!(status.success());
    dir.join("models")
}

/// Runs the `ember` CLI and returns its standard output; fails the test if it fails.
pub fn ember(args: &[&str]) -> String {
    ember_with_env(args, &[]).unwrap_or_else(|stderr| panic!("ember {args:?}: {stderr}"))
}

/// Runs the `ember` CLI with environment variables: its standard output, or its standard error
/// when it fails.
pub fn ember_with_env(args: &[&str], env: &[(&str, &str)]) -> Result<String, String> {
    let output = Command::new(env!("CARGO_BIN_EXE_ember"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    if output.status.success() {
        Ok(String::from_utf8(output.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}
