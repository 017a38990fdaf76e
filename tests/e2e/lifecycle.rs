//! Model lifecycle: pinned versions and aliases, promote / rollback under load with no failed
//! request and no restart, sticky weighted splits, and versions added while serving.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{assert_close, ember, models_copy, publish_copy, reference_cases_in, Server};

fn ember_models(models: &Path, args: &[&str]) {
    let mut all = vec!["models", "--models", models.to_str().unwrap()];
    all.extend_from_slice(args);
    ember(&all);
}

fn cases(models: &Path, version: &str) -> Vec<Value> {
    reference_cases_in(models, "credit-risk", version)
}

#[test]
fn pinned_versions_aliases_and_v2_version_routes_reach_the_right_graph() {
    let models = models_copy();
    let server = Server::start(&["--models", models.to_str().unwrap()]);
    // Version 3 is gradient-boosted trees (an ai.onnx.ml tree ensemble).
    for version in ["1", "2", "3"] {
        for case in cases(&models, version) {
            let (status, reply) = server.post_json(
                &format!("/models/credit-risk/versions/{version}/predict"),
                &case["request"],
            );
            assert_eq!(status, 200, "{reply}");
            assert_eq!(reply["model_version"], version);
            assert_close(
                &reply["probabilities"],
                &case["probabilities"],
                1e-4,
                case["name"].as_str().unwrap(),
            );
            let request = serde_json::json!({ "inputs": case["inputs"] });
            let (status, reply) = server.post_json(
                &format!("/v2/models/credit-risk/versions/{version}/infer"),
                &request,
            );
            assert_eq!(status, 200, "{reply}");
            assert_eq!(reply["model_version"], version);
            assert_close(
                &reply["outputs"][0]["data"],
                &case["outputs"][0]["data"],
                1e-4,
                "v2",
            );
        }
    }
    let case = &cases(&models, "1")[0];
    assert_eq!(
        server
            .post_json("/models/credit-risk/predict", &case["request"])
            .1["model_version"],
        "1"
    );
    assert_eq!(
        server
            .post_json(
                "/models/credit-risk/versions/stable/predict",
                &case["request"]
            )
            .1["model_version"],
        "1"
    );
    assert_eq!(
        server
            .post_json(
                "/models/credit-risk/versions/canary/predict",
                &case["request"]
            )
            .0,
        404
    );
}

#[test]
fn the_tree_ensemble_version_is_split_and_promoted_and_a_version_may_name_its_backend() {
    let models = models_copy();
    let dir = models.to_str().unwrap();
    let server = Server::start(&["--models", dir]);
    let case = &cases(&models, "3")[0];
    ember_models(&models, &["split", "credit-risk", "1=50", "3=50"]);
    let answered: Vec<String> = (0..40)
        .map(|i| {
            let reply = server.send(
                "POST",
                "/models/credit-risk/predict",
                &[("ember-caller-key", &format!("caller-{i}"))],
                Some(&case["request"]),
            );
            assert_eq!(reply.status, 200, "{}", reply.body);
            reply.body["model_version"].as_str().unwrap().to_string()
        })
        .collect();
    assert!(answered.iter().any(|v| v == "3") && answered.iter().any(|v| v == "1"));
    ember_models(&models, &["promote", "credit-risk", "3"]);
    let (status, reply) = server.post_json("/models/credit-risk/predict", &case["request"]);
    assert_eq!((status, reply["model_version"].as_str()), (200, Some("3")));
    assert_close(&reply["probabilities"], &case["probabilities"], 1e-4, "v3");

    // tract runs the trees too; a version that names ONNX Runtime in its model.toml is not ready
    // where ONNX Runtime is not loaded, and the others serve on.
    let tract = Server::start(&["--models", dir, "--backend", "tract"]);
    let (status, reply) = tract.post_json("/models/credit-risk/predict", &case["request"]);
    assert_eq!((status, reply["model_version"].as_str()), (200, Some("3")));
    assert_close(
        &reply["probabilities"],
        &case["probabilities"],
        1e-4,
        "v3 on tract",
    );
    let spec = models.join("credit-risk/2/model.toml");
    let text = std::fs::read_to_string(&spec).unwrap();
    let (head, tables) = text.split_at(text.find("\n[").unwrap());
    std::fs::write(&spec, format!("{head}\nbackend = \"ort\"{tables}")).unwrap();
    let tract = Server::start(&["--models", dir, "--backend", "tract"]);
    let (status, reply) =
        tract.post_json("/models/credit-risk/versions/2/predict", &case["request"]);
    assert_eq!(status, 503, "{reply}");
    assert_eq!(reply["error"]["code"], "model_not_ready");
    // The reason is logged (read from the server's stderr as it arrives).
    let logged = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        tract.logs().contains("which is not loaded")
    });
    assert!(logged, "{}", tract.logs());
    let (status, _) = tract.post_json("/models/credit-risk/versions/1/predict", &case["request"]);
    assert_eq!(status, 200);
    let (status, _) = server.post_json("/models/credit-risk/versions/2/predict", &case["request"]);
    assert_eq!(status, 200, "ONNX Runtime, loaded here, runs it");
}

/// One request of the load loop: when it was sent and answered, its status and the version that
/// answered.
struct Sample {
    sent: Instant,
    answered: Instant,
    status: u16,
    version: String,
}

#[test]
fn promote_and_rollback_apply_to_new_requests_under_load_without_a_failure() {
    let models = models_copy();
    let server = Server::start(&["--models", models.to_str().unwrap()]);
    let body = cases(&models, "1")[0]["request"].to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let workers: Vec<_> = (0..6)
        .map(|_| {
            let (stop, seen, base, body) = (
                stop.clone(),
                seen.clone(),
                server.base.clone(),
                body.clone(),
            );
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .build()
                    .into();
                for _ in 0..20_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let sent = Instant::now();
                    let mut response = agent
                        .post(format!("{base}/models/credit-risk/predict"))
                        .header("content-type", "application/json")
                        .send(body.as_bytes())
                        .unwrap();
                    let status = response.status().as_u16();
                    let reply: Value =
                        serde_json::from_str(&response.body_mut().read_to_string().unwrap())
                            .unwrap();
                    let version = reply["model_version"].as_str().unwrap_or("").to_string();
                    seen.lock().unwrap().push(Sample {
                        sent,
                        answered: Instant::now(),
                        status,
                        version,
                    });
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(400));
    ember_models(&models, &["promote", "credit-risk", "2"]);
    let promoted = Instant::now();
    std::thread::sleep(Duration::from_millis(600));
    let rolling_back = Instant::now();
    ember_models(&models, &["rollback", "credit-risk"]);
    let rolled_back = Instant::now();
    std::thread::sleep(Duration::from_millis(600));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let all = std::mem::take(&mut *seen.lock().unwrap());
    assert!(all.len() > 100, "too little traffic: {}", all.len());
    assert!(
        all.iter().all(|s| s.status == 200),
        "a request failed during promote/rollback"
    );
    // A request sent after a change returned follows the new routing; one in flight across a
    // change may finish on either version, so a window holds the requests sent after one change
    // returned and answered before the next began.
    let versions_between = |from: Instant, to: Instant| -> Vec<&str> {
        all.iter()
            .filter(|s| s.sent > from && s.answered < to)
            .map(|s| s.version.as_str())
            .collect()
    };
    let after_promote = versions_between(promoted, rolling_back);
    let after_rollback = versions_between(rolled_back, Instant::now());
    assert!(after_promote.len() > 10 && after_rollback.len() > 10);
    assert!(after_promote.iter().all(|v| *v == "2"), "{after_promote:?}");
    assert!(
        after_rollback.iter().all(|v| *v == "1"),
        "{after_rollback:?}"
    );
}

#[test]
fn a_split_is_weighted_and_sticky_per_caller_key() {
    let models = models_copy();
    ember_models(&models, &["split", "credit-risk", "1=55", "2=45"]);
    let server = Server::start(&["--models", models.to_str().unwrap()]);
    let body = cases(&models, "1")[0]["request"].to_string();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let version_for = |key: &str| -> String {
        let mut response = agent
            .post(format!("{}/models/credit-risk/predict", server.base))
            .header("content-type", "application/json")
            .header("ember-caller-key", key)
            .send(body.as_bytes())
            .unwrap();
        let reply: Value =
            serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
        reply["model_version"].as_str().unwrap().to_string()
    };
    let mut counts = std::collections::HashMap::new();
    for caller in 0..40 {
        let key = format!("caller-{caller}");
        let first = version_for(&key);
        for _ in 0..3 {
            assert_eq!(version_for(&key), first, "{key} is not sticky");
        }
        *counts.entry(first).or_insert(0) += 1;
    }
    assert!(
        counts.get("1").copied().unwrap_or(0) >= 8 && counts.get("2").copied().unwrap_or(0) >= 8,
        "{counts:?}"
    );
    assert_eq!(
        server
            .post_json(
                "/models/credit-risk/versions/canary/predict",
                &cases(&models, "1")[0]["request"]
            )
            .1["model_version"],
        "2"
    );
}

#[test]
fn a_version_added_while_serving_is_served_without_a_restart() {
    let models = models_copy();
    let server = Server::start(&["--models", models.to_str().unwrap()]);
    let case = &cases(&models, "2")[0];
    assert_eq!(
        server
            .post_json("/models/credit-risk/versions/4/predict", &case["request"])
            .0,
        404
    );
    publish_copy(&models, "credit-risk", "2", "4");
    let (status, reply) =
        server.post_json("/models/credit-risk/versions/4/predict", &case["request"]);
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["model_version"], "4");
    assert_close(&reply["probabilities"], &case["probabilities"], 1e-4, "v4");
    // The warm instance that parsed v4's spec on first use keeps it across later requests, whose
    // own allocations must not disturb it: versions interleaved, each answered as itself.
    let v1 = &cases(&models, "1")[0];
    for round in 0..10 {
        for (version, case) in [("4", case), ("1", v1), ("2", case)] {
            let (status, reply) = server.post_json(
                &format!("/models/credit-risk/versions/{version}/predict"),
                &case["request"],
            );
            assert_eq!(status, 200, "round {round}, v{version}: {reply}");
            assert_eq!(reply["model_version"], version, "round {round}");
            assert_close(
                &reply["probabilities"],
                &case["probabilities"],
                1e-4,
                &format!("round {round}, v{version}"),
            );
        }
    }
}
