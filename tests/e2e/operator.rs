//! The operator page (`/-/`) in the real Chromium, after real traffic: it renders every chart,
//! its totals per model version equal `ember usage --by version` and `/-/metrics` for the same
//! traffic, its drift panels cover the versions that decided, and a decision's link opens that
//! invocation's audit record.

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::browser::run_driver;
use crate::support::{ember, repo_root, scratch_dir, Server};

#[test]
fn the_operator_page_shows_what_the_ledger_and_metrics_hold() {
    let ledger = scratch_dir("operator").join("usage.db");
    let ledger = ledger.to_str().unwrap();
    let server = Server::start(&["--ledger", ledger]);
    let mut answered = 0;
    let mut outcomes = Vec::new();
    for i in 0..15 {
        let applicant =
            json!({"age": 20 + i, "income": 30000 + 2000 * i, "credit_score": 600 + 10 * i});
        let (status, _) = server.post_json("/models/credit-risk/versions/2/predict", &applicant);
        assert_eq!(status, 200);
        let reply = server.post_json_full("/predict", &applicant);
        assert_eq!(reply.status, 200);
        answered += 2;
        // Every one of them defaulted, as it turned out.
        outcomes.push(
            json!({"invocation_id": reply.headers["ember-invocation-id"], "label": "default"}),
        );
    }
    assert_eq!(
        server.post_json("/-/feedback", &Value::from(outcomes)).0,
        200
    );
    let (_, quality) = server.get("/-/api/quality/credit-risk");
    let live = &quality["versions"][0]["window"];
    assert_eq!(live["labelled"], 15, "{quality}");
    for bad in [json!({"age": "old"}), json!({"age": 42})] {
        let (status, _) = server.post_json("/predict", &bad);
        assert_eq!(status, 422);
    }

    let screenshot = repo_root().join("target/browser/operator.png");
    let _ = std::fs::remove_file(&screenshot);
    let report = run_driver(
        "operator.mjs",
        &json!({"base": server.base, "screenshot": screenshot}),
    );
    assert_eq!(report["console"], json!([]), "{report}");
    let base = server.base.as_str();
    for url in report["requests"].as_array().unwrap() {
        assert!(
            url.as_str().unwrap().starts_with(base),
            "the page loaded {url} from elsewhere"
        );
    }
    let charts = report["charts"].as_array().unwrap();
    assert_eq!(charts.len(), 5, "{report}");
    for chart in charts {
        assert!(chart["canvases"].as_u64().unwrap() >= 1, "{chart}");
        let legend = &chart["legend"];
        assert!(
            legend.to_string().contains("credit-risk/1")
                && legend.to_string().contains("credit-risk/2"),
            "{chart}"
        );
    }
    let models: Vec<String> = report["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row[0].as_str().unwrap().to_string())
        .collect();
    assert!(
        models.contains(&"credit-risk".to_string()) && models.contains(&"digits".to_string()),
        "{models:?}"
    );

    // The same numbers as `ember usage` (read while the server runs) and as /-/metrics.
    let usage = ember(&[
        "usage", "--ledger", ledger, "--by", "version", "--format", "json",
    ]);
    let usage: Vec<Value> = serde_json::from_str(&usage).unwrap();
    let shown = report["totals"].as_object().unwrap();
    let mut counted = 0;
    for group in &usage {
        let version = group["group"].as_str().unwrap();
        if version.starts_with('-') || version.ends_with("/-") {
            continue;
        }
        let row = &shown[version];
        assert_eq!(row["count"], group["count"], "{version}");
        assert_eq!(row["errors"], group["errors"], "{version}");
        let (page_cost, usage_cost) = (
            row["cost"].as_f64().unwrap(),
            group["cost"].as_f64().unwrap(),
        );
        assert!(
            (page_cost - usage_cost).abs() <= 1e-12 * usage_cost.max(1.0),
            "{version}: {page_cost} vs {usage_cost}"
        );
        counted += row["count"].as_u64().unwrap();
    }
    assert_eq!(counted, answered as u64 + 2, "{report}");
    let (_, metrics) = server.get_text("/-/metrics");
    let successes: HashMap<&str, u64> = metrics
        .lines()
        .filter(|line| line.starts_with("ember_request_success_total{"))
        .filter_map(|line| {
            let version = line.split("version=\"").nth(1)?.split('"').next()?;
            let model = line.split("model=\"").nth(1)?.split('"').next()?;
            let value = line.rsplit(' ').next()?.parse::<f64>().ok()? as u64;
            (model == "credit-risk").then_some((version, value))
        })
        .collect();
    for (version, value) in successes {
        let row = &shown[&format!("credit-risk/{version}")];
        let succeeded = row["count"].as_u64().unwrap() - row["errors"].as_u64().unwrap();
        assert_eq!(succeeded, value, "credit-risk/{version} successes");
    }

    let drift: Vec<&str> = report["drift"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["version"].as_str().unwrap())
        .collect();
    assert!(
        drift.contains(&"credit-risk/1") && drift.contains(&"credit-risk/2"),
        "{drift:?}"
    );
    for panel in report["drift"].as_array().unwrap() {
        assert_eq!(panel["features"], 7, "{panel}");
    }
    // Live quality: the page shows the API's numbers beside the held-out ones.
    let row = &report["quality"]["credit-risk/1"];
    assert_eq!(row[1], "15", "{report}");
    let accuracy = format!("{:.2}%", 100.0 * live["accuracy"].as_f64().unwrap());
    assert_eq!(row[2], accuracy.as_str(), "{report}");
    assert_eq!(row[4], "77.02%", "{report}");
    let links = report["audit_links"].as_array().unwrap();
    assert_eq!(links.len(), 20, "{report}");
    let audit = &report["audit"];
    assert!(
        links[0]
            .as_str()
            .unwrap()
            .ends_with(audit["id"].as_str().unwrap()),
        "{audit}"
    );
    assert_eq!(audit["model"], "credit-risk", "{audit}");
    assert!(
        audit["decision"]["features"]
            .as_array()
            .is_some_and(|f| f.len() == 7),
        "{audit}"
    );
    assert!(std::fs::metadata(&screenshot).unwrap().len() > 10_000);
}

#[test]
fn with_keys_required_the_page_asks_for_the_admin_token_and_shows_who_was_billed() {
    let ledger = scratch_dir("operator-keys").join("usage.db");
    let ledger = ledger.to_str().unwrap();
    let key = ember(&["keys", "--ledger", ledger, "create", "--name", "team-ops"]);
    let token = "operator-page-token";
    let server = Server::start(&["--ledger", ledger, "--auth", "keys", "--admin-token", token]);
    let auth = format!("Bearer {}", key.trim());
    let applicant = json!({"age": 40, "income": 52000, "credit_score": 700});
    for _ in 0..3 {
        let reply = server.send(
            "POST",
            "/models/credit-risk/versions/1/predict",
            &[("authorization", &auth)],
            Some(&applicant),
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
    }

    let report = run_driver(
        "operator.mjs",
        &json!({"base": server.base, "token": token}),
    );
    assert_eq!(report["asked_for_token"], true, "{report}");
    assert!(
        report["status_before_token"]
            .as_str()
            .unwrap()
            .contains("admin token"),
        "{report}"
    );
    assert_eq!(report["totals"]["credit-risk/1"]["count"], 3, "{report}");
    // The audit record, fetched with the token, names the key's name and never the key.
    assert_eq!(report["audit"]["key"], "team-ops", "{report}");
    assert!(!report.to_string().contains(key.trim()));
}
