//! Operating deployments over HTTP: the Spin build on Ember's host (which provides Spin's
//! key-value store, SQLite and variables, as Spin would) and Ember's own host, through the same
//! `ember models … --remote`, `ember audit --remote` and `ember usage --remote` commands.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use crate::support::{
    assert_close, ember_with_env, models_copy, repo_root, scratch_dir, send_with, Reply, Server,
};
use crate::variants::spin_component;

const TOKEN: &str = "s3cret-admin-token";

/// `ember …` with the admin token, against `server`; its output, or why it failed.
fn remote(server: &Server, args: &[&str]) -> Result<String, String> {
    let mut args = args.to_vec();
    args.extend(["--remote", &server.base]);
    ember_with_env(&args, &[("EMBER_ADMIN_TOKEN", TOKEN)])
}

fn ok(result: Result<String, String>) -> String {
    result.unwrap_or_else(|stderr| panic!("ember failed: {stderr}"))
}

fn start(extra: &[&str]) -> Server {
    Server::start_with_env(
        &repo_root().join("target").join("e2e-cache"),
        extra,
        &[("SPIN_VARIABLE_ADMIN_TOKEN", TOKEN)],
    )
}

const REQUEST: &str = r#"{"age": 42, "income": 52000, "credit_score": 710}"#;

/// Posts credit-risk requests from four threads until stopped; the replies' statuses and versions.
struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    threads: Vec<std::thread::JoinHandle<Vec<(u16, String)>>>,
}

impl Load {
    fn start(base: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let threads = (0..4)
            .map(|_| {
                let (stop, sent, base) = (stop.clone(), sent.clone(), base.to_string());
                std::thread::spawn(move || {
                    let agent: ureq::Agent = crate::support::agent_config().build().into();
                    let body: Value = serde_json::from_str(REQUEST).unwrap();
                    let mut seen = Vec::new();
                    // Bounded: at most 20,000 requests per thread even if never stopped.
                    while !stop.load(Ordering::Relaxed) && seen.len() < 20_000 {
                        let reply = send_with(&agent, &base, "POST", "/predict", &[], Some(&body));
                        let version = reply.body["model_version"].as_str().unwrap_or("-");
                        seen.push((reply.status, version.to_string()));
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    seen
                })
            })
            .collect();
        Self {
            stop,
            sent,
            threads,
        }
    }

    /// Waits until the load has sent `n` more requests (at most 60 s), so each change happens
    /// while requests are in flight, however slow the machine.
    fn wait_for(&self, n: usize) {
        let target = self.sent.load(Ordering::Relaxed) + n;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while self.sent.load(Ordering::Relaxed) < target && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    fn finish(self) -> Vec<(u16, String)> {
        self.stop.store(true, Ordering::Relaxed);
        self.threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect()
    }
}

fn predict(server: &Server) -> Reply {
    server.post_json_full("/predict", &serde_json::from_str(REQUEST).unwrap())
}

/// Promotes, splits, shadows and rolls back under load through `--remote`, with no failed request,
/// and checks each change reached the next request; returns a reply recorded by the deployment.
fn operate_under_load(server: &Server) -> Reply {
    assert_eq!(predict(server).body["model_version"], "1");
    let load = Load::start(&server.base);
    load.wait_for(50);
    ok(remote(server, &["models", "promote", "credit-risk", "2"]));
    assert_eq!(predict(server).body["model_version"], "2");
    load.wait_for(50);
    ok(remote(server, &["models", "shadow", "credit-risk", "1"]));
    let shadowed = predict(server);
    assert_eq!(shadowed.body["model_version"], "2");
    ok(remote(server, &["models", "rollback", "credit-risk"]));
    assert_eq!(predict(server).body["model_version"], "1");
    load.wait_for(50);
    let seen = load.finish();
    eprintln!("{} requests under load, none failed", seen.len());
    let failed: Vec<_> = seen.iter().filter(|(status, _)| *status != 200).collect();
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    for version in ["1", "2"] {
        assert!(
            seen.iter().any(|(_, v)| v == version),
            "no reply from v{version}"
        );
    }
    let listed = ok(remote(server, &["models", "list"]));
    assert!(listed.contains(r#"{"stable":"1"}"#), "{listed}");
    shadowed
}

/// The deployment's record of `reply`: its model, version, input digest and shadow, through
/// `ember audit --remote`.
fn check_audit(server: &Server, reply: &Reply) {
    let id = &reply.headers["ember-invocation-id"];
    let record: Value = serde_json::from_str(&ok(remote(server, &["audit", id]))).unwrap();
    assert_eq!(record["id"], *id);
    assert_eq!(record["model"], "credit-risk");
    assert_eq!(record["version"], "2");
    let body = serde_json::to_vec(&serde_json::from_str::<Value>(REQUEST).unwrap()).unwrap();
    assert_eq!(
        record["input_sha256"],
        format!("{:x}", Sha256::digest(&body))
    );
    assert_eq!(record["features"].as_array().unwrap().len(), 7, "{record}");
    assert_eq!(record["shadow"]["version"], "1", "{record}");
    assert_eq!(record["prediction"], reply.body["prediction"]);
    // The host's ledger holds the same decision under the same id: the function's telemetry
    // reached it (the environment an instance sees is its host's, not pre-initialization's).
    let (status, ledger) = server.get(&format!("/-/audit/{id}"));
    assert_eq!(status, 200, "{ledger}");
    // (Spin's SQLite holds the features as JSON text, read back by the guest's serde_json, which
    // may round a digit's last bit: compared to 1e-12.)
    assert_close(
        &ledger["decision"]["features"],
        &record["features"],
        1e-12,
        "features",
    );
    let missing = remote(server, &["audit", "no-such-invocation"]).unwrap_err();
    assert!(missing.contains("unknown_invocation"), "{missing}");
}

/// `ember usage --remote` and `ember models drift --remote` over the deployment's records (drift
/// against the baseline in `models`, the operator's copy of the model).
fn check_reports(server: &Server, models: &std::path::Path) {
    let usage: Value = serde_json::from_str(&ok(remote(
        server,
        &["usage", "--by", "version", "--format", "json"],
    )))
    .unwrap();
    let count = |group: &str| {
        usage
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["group"] == group)
            .map(|g| g["count"].as_u64().unwrap())
            .unwrap_or(0)
    };
    assert!(
        count("credit-risk/1") > 0 && count("credit-risk/2") > 0,
        "{usage}"
    );
    let drift: Value = serde_json::from_str(&ok(remote(
        server,
        &[
            "models",
            "--models",
            models.to_str().unwrap(),
            "drift",
            "credit-risk",
            "--version",
            "1",
            "--json",
        ],
    )))
    .unwrap();
    assert!(drift["window"].as_u64().unwrap() > 0, "{drift}");
}

/// What the management API refuses: no token, another token, a policy naming a missing version.
fn check_refusals(server: &Server) {
    let agent: ureq::Agent = crate::support::agent_config().build().into();
    let get = |headers: &[(&str, &str)]| {
        send_with(
            &agent,
            &server.base,
            "GET",
            "/-/ember/models",
            headers,
            None,
        )
    };
    assert_eq!(get(&[]).status, 401);
    assert_eq!(get(&[("authorization", "Bearer wrong")]).status, 401);
    let bearer = format!("Bearer {TOKEN}");
    let auth = [("authorization", bearer.as_str())];
    let models = get(&auth);
    assert_eq!(models.status, 200);
    assert!(models
        .body
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["name"] == "credit-risk"));
    let bad = send_with(
        &agent,
        &server.base,
        "PUT",
        "/-/ember/models/credit-risk/routing",
        &auth,
        Some(&json!({"aliases": {"stable": "9"}})),
    );
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert_eq!(bad.body["error"]["code"], "invalid_routing");
    assert_eq!(bad.body["error"]["field"], "aliases.stable");
    let wrong = send_with(
        &agent,
        &server.base,
        "DELETE",
        "/-/ember/models",
        &auth,
        None,
    );
    assert_eq!(wrong.status, 405);
    assert_eq!(wrong.headers["allow"], "GET");
    let refused = ember_with_env(
        &[
            "models",
            "promote",
            "credit-risk",
            "2",
            "--remote",
            &server.base,
        ],
        &[("EMBER_ADMIN_TOKEN", "wrong")],
    )
    .unwrap_err();
    assert!(refused.contains("401"), "{refused}");
}

#[test]
fn the_spin_build_is_operated_remotely_through_spin_s_key_value_store_and_sqlite() {
    spin_component();
    let routing_file = repo_root().join("models/credit-risk/routing.json");
    let packaged = std::fs::read(&routing_file).ok();
    let state = scratch_dir("spin-operated").join("state");
    let state = state.to_str().unwrap();
    let server = start(&["--variant", "spin", "--spin-state", state]);
    check_refusals(&server);
    let shadowed = operate_under_load(&server);
    // No private header reaches a client; the id the host names is the one the function filed.
    assert!(shadowed.headers.keys().all(|h| !h.starts_with("ember-x-")));
    check_audit(&server, &shadowed);
    check_reports(&server, &repo_root().join("models"));
    // The routing lives in the key-value store, not in the (packaged, read-only) models
    // directory, and survives a restart.
    assert_eq!(std::fs::read(&routing_file).ok(), packaged);
    ok(remote(&server, &["models", "promote", "credit-risk", "2"]));
    drop(server);
    let again = start(&["--variant", "spin", "--spin-state", state]);
    assert_eq!(predict(&again).body["model_version"], "2");
    assert!(std::path::Path::new(state)
        .join("sqlite/default.db")
        .is_file());
}

#[test]
fn the_same_commands_operate_ember_s_own_host_remotely() {
    let models = models_copy();
    let server = start(&["--models", models.to_str().unwrap()]);
    check_refusals(&server);
    let shadowed = operate_under_load(&server);
    check_audit(&server, &shadowed);
    check_reports(&server, &models);
    // Here the policy is the models directory's routing file, as local commands write it.
    let routing = std::fs::read_to_string(models.join("credit-risk/routing.json")).unwrap();
    assert!(routing.contains(r#""stable":"1""#), "{routing}");
}

#[test]
fn without_an_admin_token_management_is_off() {
    spin_component();
    let server = Server::start(&["--variant", "spin"]);
    let reply = server.get("/-/ember/models");
    assert_eq!(reply.0, 401);
    assert!(reply.1["error"]["message"]
        .as_str()
        .unwrap()
        .contains("admin_token"));
}
