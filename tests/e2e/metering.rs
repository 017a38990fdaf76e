//! Metering: deterministic cost components, the durable ledger (kill -9 loses no replied
//! record), `ember usage` totals and Prometheus metrics checked with a real exposition parser.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use ember::metering::{journal, ledger};
use rusqlite::Connection;
use serde_json::{json, Value};

use crate::support::{ember, reference_cases, scratch_dir, Server};

fn ledger_args(db: &std::path::Path) -> Vec<String> {
    vec!["--ledger".into(), db.display().to_string()]
}

fn start(db: &std::path::Path) -> Server {
    let args = ledger_args(db);
    Server::start(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// What one model's requests measured: (fuel, MACs, cost bits) → how many requests.
type Figures = HashMap<(i64, i64, u64), usize>;

#[test]
fn the_same_request_costs_the_same_every_time() {
    let cases = [
        (
            "credit-risk",
            reference_cases("credit-risk")[3]["request"].clone(),
        ),
        ("digits", reference_cases("digits")[5]["request"].clone()),
        // A photo: JPEG decoding, resizing and a 150,528-value tensor in the guest.
        (
            "efficientnet-lite0",
            reference_cases("efficientnet-lite0")[0]["request"].clone(),
        ),
    ];
    // With instances reused (the default) and with a fresh instance per request; the models'
    // requests interleave, so a reused instance has served the others just before.
    let mut by_mode = Vec::new();
    for mode in [&[][..], &["--instance-reuse", "1"][..]] {
        let db = scratch_dir("determinism").join("usage.db");
        let mut args = ledger_args(&db);
        args.extend(mode.iter().map(|a| a.to_string()));
        let server = Server::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let mut ids: HashMap<&str, Vec<String>> = HashMap::new();
        let mut costs: HashMap<&str, HashSet<String>> = HashMap::new();
        for _ in 0..20 {
            for (model, request) in &cases {
                let reply = server.post_json_full(&format!("/models/{model}/predict"), request);
                assert_eq!(reply.status, 200);
                ids.entry(model)
                    .or_default()
                    .push(reply.headers["ember-invocation-id"].clone());
                costs
                    .entry(model)
                    .or_default()
                    .insert(reply.headers["ember-cost"].clone());
                assert!(reply.headers["ember-duration-us"].parse::<u64>().is_ok());
            }
        }
        drop(server);
        let conn = ledger::open_current(&db).unwrap();
        let mut figures: HashMap<&str, Figures> = HashMap::new();
        for (model, _) in &cases {
            assert_eq!(
                costs[model].len(),
                1,
                "{model} {mode:?}: costs differ: {costs:?}"
            );
            for id in &ids[model] {
                let row: (i64, i64, i64, f64) = conn
                    .query_row(
                        "SELECT fuel, infer_macs, infer_calls, cost FROM invocations WHERE id = ?1",
                        [id],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                    )
                    .unwrap();
                assert!(row.0 > 0 && row.1 > 0 && row.2 == 1, "{model}: {row:?}");
                *figures
                    .entry(model)
                    .or_default()
                    .entry((row.0, row.1, row.3.to_bits()))
                    .or_default() += 1;
            }
            assert_eq!(
                figures[model].len(),
                1,
                "{model} {mode:?}: fuel / MACs / cost differ across 20 runs: {figures:?}"
            );
        }
        by_mode.push(figures);
    }
    assert_eq!(
        by_mode[0], by_mode[1],
        "a reused instance bills a request differently from a fresh one"
    );
}

#[test]
fn every_reply_a_client_received_survives_kill_9() {
    let db = scratch_dir("durability").join("usage.db");
    let mut server = start(&db);
    let received = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let base = server.base.clone();
    let body = reference_cases("credit-risk")[0]["request"].to_string();
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (received, stop, base, body) =
                (received.clone(), stop.clone(), base.clone(), body.clone());
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(std::time::Duration::from_secs(5)))
                    .build()
                    .into();
                // Bounded: at most 5,000 requests per worker, and only until the host is killed.
                for _ in 0..5_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(response) = agent
                        .post(format!("{base}/predict"))
                        .header("content-type", "application/json")
                        .send(body.as_bytes())
                    else {
                        break;
                    };
                    if let Some(id) = response.headers().get("ember-invocation-id") {
                        received
                            .lock()
                            .unwrap()
                            .push(id.to_str().unwrap().to_string());
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    server.kill_hard();
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let received = received.lock().unwrap().clone();
    assert!(
        received.len() > 50,
        "too few replies before the kill: {}",
        received.len()
    );
    // Right after the kill, every reply is in the database or in the journal the host appended
    // to before replying (read without ingesting it).
    let ids = |conn: &Connection| -> HashSet<String> {
        conn.prepare("SELECT id FROM invocations")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let conn = Connection::open(&db).unwrap();
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    let mut durable = ids(&conn);
    drop(conn);
    let journaled = journal::scan(&db).unwrap();
    durable.extend(
        journaled
            .iter()
            .flat_map(|f| f.records.iter().map(|r| r.id.clone())),
    );
    let missing: Vec<_> = received
        .iter()
        .filter(|id| !durable.contains(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} replied invocations in neither the database nor the journal",
        missing.len(),
        received.len()
    );
    assert!(
        journaled.iter().all(|f| f.orphan.is_some()),
        "a killed host's journal segments are still locked"
    );
    drop(journaled);
    // The next start ingests the dead host's journal before serving: every reply is in SQLite.
    let server = start(&db);
    let stored = ids(&Connection::open(&db).unwrap());
    let missing: Vec<_> = received.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} replied invocations missing from the ledger after the restart",
        missing.len(),
        received.len()
    );
    // And the restarted host keeps appending.
    assert_eq!(
        server
            .post_json("/predict", &reference_cases("credit-risk")[0]["request"])
            .0,
        200
    );
}

#[test]
fn ember_usage_and_metrics_count_exactly_what_was_sent() {
    let db = scratch_dir("usage").join("usage.db");
    let server = start(&db);
    let credit = &reference_cases("credit-risk")[1]["request"];
    let digit = &reference_cases("digits")[2]["request"];
    for _ in 0..7 {
        assert_eq!(
            server.post_json("/models/credit-risk/predict", credit).0,
            200
        );
    }
    for _ in 0..4 {
        assert_eq!(server.post_json("/models/digits/predict", digit).0, 200);
    }
    for _ in 0..3 {
        assert_eq!(
            server
                .post_json("/models/credit-risk/predict", &json!({"age": 200}))
                .0,
            422
        );
    }

    let (status, text) = server.get_text("/-/metrics");
    assert_eq!(status, 200);
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus exposition text");
    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => 0.0,
            })
            .sum()
    };
    assert_eq!(
        value("ember_request_success_total", &[("model", "credit-risk")]),
        7.0
    );
    assert_eq!(
        value("ember_request_success_total", &[("model", "digits")]),
        4.0
    );
    assert_eq!(
        value(
            "ember_request_failure_total",
            &[("model", "credit-risk"), ("reason", "http_422")]
        ),
        3.0
    );
    assert!(value("ember_cost_total", &[("model", "digits")]) > 0.0);
    assert_eq!(value("ember_models_loaded", &[]), 2.0);
    for histogram in [
        "ember_request_duration_seconds",
        "ember_compute_infer_duration_seconds",
    ] {
        assert!(
            scrape.samples.iter().any(|s| s.metric == histogram),
            "{histogram} missing"
        );
    }
    drop(server); // the ledger is flushed on exit; replies were already durable

    let ledger = db.to_str().unwrap();
    let usage = |by: &str| -> Vec<Value> {
        let json = ember(&["usage", "--ledger", ledger, "--by", by, "--format", "json"]);
        serde_json::from_str::<Value>(&json)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    };
    let by_model: HashMap<String, (u64, u64)> = usage("model")
        .iter()
        .map(|g| {
            (
                g["group"].as_str().unwrap().to_string(),
                (g["count"].as_u64().unwrap(), g["errors"].as_u64().unwrap()),
            )
        })
        .collect();
    assert_eq!(by_model["credit-risk"], (10, 3));
    assert_eq!(by_model["digits"], (4, 0));
    let by_status: HashMap<String, u64> = usage("status")
        .iter()
        .map(|g| {
            (
                g["group"].as_str().unwrap().to_string(),
                g["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        by_status,
        HashMap::from([("200".to_string(), 11), ("422".to_string(), 3)])
    );
    let csv = ember(&[
        "usage", "--ledger", ledger, "--by", "route", "--format", "csv",
    ]);
    assert!(csv.starts_with("group,count,errors"), "{csv}");
    assert!(
        csv.contains("POST /models/credit-risk/predict,10,3,"),
        "{csv}"
    );
}
