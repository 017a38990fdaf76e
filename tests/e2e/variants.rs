//! The two builds of the function — inference through the host's wasi:nn, and tract embedded in
//! the guest (pre-initialized, for Spin and other hosts without wasi-nn) — answer alike, through
//! Ember and through an unmodified `wasmtime serve`; spin.toml describes them correctly.

use std::path::PathBuf;
use std::sync::OnceLock;

use serde_json::{json, Value};

use crate::support::{
    assert_close, ember, models_copy, publish_copy, reference_answers, reference_cases,
    reference_cases_in, repo_root, scratch_dir, ReferenceAnswer, Server,
};

/// The pre-initialized embedded function (WASI only, for `wasmtime serve`), made once per test
/// run by `ember preinit --build embedded`.
pub fn embedded_component() -> &'static PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| preinit("embedded", "target/wasm/ember-function-embedded.wasm"))
}

/// The pre-initialized Spin build at the path spin.toml names, made once per test run by
/// `ember preinit --build spin` (what spin.toml's build command runs).
pub fn spin_component() -> &'static PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| preinit("spin", "target/wasm/ember-function-spin.wasm"))
}

fn preinit(build: &str, out: &str) -> PathBuf {
    let root = repo_root();
    let out = root.join(out);
    ember(&[
        "preinit",
        "--build",
        build,
        "--models",
        root.join("models").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    out
}

/// Every reference case through `/predict` and v2 `infer`, within 1e-4 of onnxruntime.
fn answers(server: &Server) -> Vec<ReferenceAnswer> {
    let all = reference_answers(server);
    for answer in &all {
        assert_close(
            &answer.predict["probabilities"],
            &answer.case["probabilities"],
            1e-4,
            &answer.name,
        );
    }
    all
}

/// The parts of two replies that must agree (not the timestamp). Native and wasm tract kernels
/// round differently in the last bits (digits' logits reach ±16, where an f32 step is 2e-6).
fn assert_same_answers(a: &[ReferenceAnswer], b: &[ReferenceAnswer], what: &str) {
    assert_eq!(a.len(), b.len());
    for (a, b) in a.iter().zip(b) {
        let name = &a.name;
        for field in ["model", "model_version", "prediction", "label"] {
            assert_eq!(a.predict[field], b.predict[field], "{what} {name}: {field}");
        }
        assert_close(
            &a.predict["probabilities"],
            &b.predict["probabilities"],
            1e-6,
            &format!("{what} {name}"),
        );
        assert_close(
            &a.infer["outputs"][0]["data"],
            &b.infer["outputs"][0]["data"],
            1e-5,
            &format!("{what} {name} v2"),
        );
    }
}

#[test]
fn embedded_and_wasi_nn_variants_give_the_same_answers_on_ember_and_wasmtime_serve() {
    let component = embedded_component();
    let wasi_nn = answers(&Server::start(&[]));
    let embedded = answers(&Server::start(&["--variant", "embedded"]));
    assert_same_answers(&wasi_nn, &embedded, "ember embedded vs wasi-nn");
    let serve = Server::wasmtime_serve(component);
    let under_wasmtime = answers(&serve);
    // The same component on two hosts computes bit for bit the same.
    for (a, b) in embedded.iter().zip(&under_wasmtime) {
        assert_eq!(
            a.predict["probabilities"], b.predict["probabilities"],
            "{}: Ember vs wasmtime serve",
            a.name
        );
    }
    assert_same_answers(&embedded, &under_wasmtime, "wasmtime serve vs ember");
    // Nothing internal reaches a client of a host that passes headers through: the function sends
    // its telemetry only to a host that asks for it (and strips it), as Ember's does.
    let reply = serve.post_json_full("/predict", &reference_cases("credit-risk")[0]["request"]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.headers["ember-model-version"], "1");
    let private: Vec<_> = reply
        .headers
        .keys()
        .filter(|h| h.starts_with("ember-x-"))
        .collect();
    assert!(private.is_empty(), "wasmtime serve returned {private:?}");
    // Bad input gets the same error on both hosts.
    let bad = json!({"age": "old", "income": 52000, "credit_score": 710});
    let (status, error) = serve.post_json("/predict", &bad);
    assert_eq!(status, 422, "{error}");
    assert_eq!(error["error"]["field"], "age");
}

#[test]
fn embedded_fuel_per_request_stays_within_twice_the_wasi_nn_variant() {
    embedded_component();
    let request = json!({"age": 42, "income": 52000, "credit_score": 710});
    let mut fuel = Vec::new();
    for variant in ["wasi-nn", "embedded"] {
        let db = scratch_dir("fuel").join("usage.db");
        let server = Server::start(&["--variant", variant, "--ledger", db.to_str().unwrap()]);
        let mut ids = Vec::new();
        for _ in 0..3 {
            let reply = server.post_json_full("/predict", &request);
            assert_eq!(reply.status, 200, "{variant}: {}", reply.body);
            ids.push(reply.headers["ember-invocation-id"].clone());
        }
        drop(server);
        let conn = ember::metering::ledger::open_current(&db).unwrap();
        let figures: Vec<i64> = ids
            .iter()
            .map(|id| {
                conn.query_row("SELECT fuel FROM invocations WHERE id = ?1", [id], |r| {
                    r.get(0)
                })
                .unwrap()
            })
            .collect();
        // The wasi-nn build counts the same for every request. The embedded build runs tract in
        // the guest through the C allocator, whose free lists depend on what ran before (README,
        // Metering): its counts agree to within 1%.
        if variant == "embedded" {
            let least = *figures.iter().min().unwrap() as f64;
            let most = *figures.iter().max().unwrap() as f64;
            assert!(most - least <= least * 0.01, "{variant}: {figures:?}");
        } else {
            assert!(
                figures.windows(2).all(|w| w[0] == w[1]),
                "{variant}: {figures:?}"
            );
        }
        fuel.push(figures[1]);
    }
    // credit-risk's graph is 47 MACs, so the embedded variant's fuel is nearly all the same
    // validation, routing and JSON work as the wasi-nn variant's; without pre-initialization it
    // would re-parse the model per request (millions of instructions).
    println!(
        "guest fuel per credit-risk request: wasi-nn {} | embedded {} ({:.2}x)",
        fuel[0],
        fuel[1],
        fuel[1] as f64 / fuel[0] as f64
    );
    assert!(fuel[1] <= 2 * fuel[0], "{fuel:?}");
}

#[test]
fn spin_toml_follows_the_manifest_rules_and_names_files_the_build_makes() {
    spin_component();
    let manifest = repo_root().join("spin.toml");
    let report: Value = serde_json::from_str(&ember(&[
        "manifest",
        "--manifest",
        manifest.to_str().unwrap(),
    ]))
    .unwrap();
    assert_eq!(report["component"], "ember-function", "{report}");
    assert_eq!(report["routes"], json!(["/..."]));
    for file in report["files"].as_array().unwrap() {
        assert_eq!(file["exists"], true, "{file}");
    }
    // Spin runs the Spin build: it has no wasi:nn, so the source must not import it; it imports
    // Spin's key-value store, SQLite and variables. The embedded build imports WASI only.
    let imports = |file: &[u8], name: &str| file.windows(name.len()).any(|w| w == name.as_bytes());
    let source = std::fs::read(repo_root().join(report["source"].as_str().unwrap())).unwrap();
    assert!(
        !imports(&source, "wasi:nn"),
        "spin.toml's source imports wasi:nn"
    );
    assert!(imports(&source, "wasi:http/incoming-handler@0.2"));
    for spin in ["key-value@2.0.0", "sqlite@2.0.0", "variables@2.0.0"] {
        assert!(imports(&source, &format!("fermyon:spin/{spin}")), "{spin}");
    }
    let embedded = std::fs::read(embedded_component()).unwrap();
    assert!(!imports(&embedded, "wasi:nn") && !imports(&embedded, "fermyon:"));
}

#[test]
fn ember_up_pre_initializes_a_missing_spin_component_from_the_manifest() {
    spin_component();
    let dir = scratch_dir("manifest");
    let root = repo_root();
    let manifest = std::fs::read_to_string(root.join("spin.toml"))
        .unwrap()
        .replace(
            "source = \"target/wasm/ember-function-spin.wasm\"",
            &format!("source = \"{}\"", dir.join("spin.wasm").display()),
        )
        .replace(
            "{ source = \"models\"",
            &format!("{{ source = \"{}\"", root.join("models").display()),
        );
    let path = dir.join("spin.toml");
    std::fs::write(&path, manifest).unwrap();
    let server = Server::start(&["--manifest", path.to_str().unwrap(), "--variant", "spin"]);
    assert!(server.logs().contains("pre-initialized the function"));
    // Pre-initialization is reproducible: the same code and models give the same bytes as
    // `ember preinit` (so the compiled component is cached once).
    assert!(
        std::fs::read(dir.join("spin.wasm")).unwrap() == std::fs::read(spin_component()).unwrap(),
        "pre-initialization is not reproducible"
    );
    let (status, reply) = server.post_json(
        "/predict",
        &json!({"age": 42, "income": 52000, "credit_score": 710}),
    );
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["model"], "credit-risk");
}

#[test]
fn the_embedded_build_follows_live_routing_and_serves_versions_newer_than_its_snapshot() {
    embedded_component();
    let models = models_copy();
    let dir = models.to_str().unwrap();
    let server = Server::start(&["--variant", "embedded", "--models", dir]);
    let request = json!({"age": 42, "income": 52000, "credit_score": 710});
    let (_, reply) = server.post_json("/predict", &request);
    assert_eq!(reply["model_version"], "1", "{reply}");
    // Routing is read per request: a promotion applies at once, specs come from the snapshot.
    ember(&["models", "--models", dir, "promote", "credit-risk", "2"]);
    let (_, reply) = server.post_json("/predict", &request);
    assert_eq!(reply["model_version"], "2", "{reply}");
    // Version 3's tree ensemble runs in the guest's tract too, as onnxruntime computed it.
    let trees = &reference_cases_in(&models, "credit-risk", "3")[0];
    let (status, reply) =
        server.post_json("/models/credit-risk/versions/3/predict", &trees["request"]);
    assert_eq!(status, 200, "{reply}");
    assert_close(
        &reply["probabilities"],
        &trees["probabilities"],
        1e-4,
        "v3 embedded",
    );
    // A version published after the snapshot is parsed on first use, not refused.
    publish_copy(&models, "credit-risk", "1", "4");
    let (status, reply) = server.post_json("/models/credit-risk/versions/4/predict", &request);
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["model_version"], "4");
    let (_, v1) = server.post_json("/models/credit-risk/versions/1/predict", &request);
    assert_eq!(reply["probabilities"], v1["probabilities"]);
}

#[test]
fn versions_that_opt_out_of_the_embedded_build_say_where_they_run() {
    embedded_component();
    let server = Server::start(&["--variant", "embedded"]);
    let photo =
        &crate::support::reference_cases_in(&repo_root().join("models"), "efficientnet-lite0", "1")
            [1]["request"];
    for (path, body) in [
        ("/models/efficientnet-lite0/predict", photo.clone()),
        ("/models/minilm/predict", json!({"text": "hello"})),
    ] {
        let (status, reply) = server.post_json(path, &body);
        assert_eq!(status, 503, "{path}: {reply}");
        assert_eq!(reply["error"]["code"], "model_not_ready", "{reply}");
        let message = reply["error"]["message"].as_str().unwrap();
        assert!(message.contains("not in this build"), "{reply}");
    }
    let (status, reply) = server.post_json(
        "/predict",
        &json!({"age": 42, "income": 52000, "credit_score": 710}),
    );
    assert_eq!(status, 200, "{reply}");
}
