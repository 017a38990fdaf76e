//! Outcomes over real HTTP with the real credit-risk versions and the true labels of its holdout
//! (`holdout-labels.json`, written by scripts/make-models from the same seeded generator):
//! feedback joined to decisions, live quality equal to a direct computation, an alert whose hook
//! receives the evidence, and guarded rollouts that roll back or complete by themselves.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{ember, models_copy, repo_root, scratch_dir, Server};

/// The holdout applicants and their true labels.
fn holdout() -> Vec<(Value, String)> {
    let read = |file: &str| -> Value {
        let path = repo_root().join("models/credit-risk/1").join(file);
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    let (rows, labels) = (read("holdout.json"), read("holdout-labels.json"));
    let labels = labels.as_array().unwrap();
    assert_eq!(rows.as_array().unwrap().len(), labels.len());
    rows.as_array()
        .unwrap()
        .iter()
        .zip(labels)
        .map(|(row, label)| (row.clone(), label.as_str().unwrap().to_string()))
        .collect()
}

const LABELS: [&str; 2] = ["repaid", "default"];

/// One answered prediction.
struct Answer {
    id: String,
    version: String,
    prediction: usize,
    truth: String,
}

/// Sends every holdout applicant to credit-risk, each as its own caller (a sticky split).
fn predict_all(server: &Server) -> Vec<Answer> {
    holdout()
        .into_iter()
        .enumerate()
        .map(|(i, (applicant, truth))| predict(server, i, &applicant, truth))
        .collect()
}

fn predict(server: &Server, i: usize, applicant: &Value, truth: String) -> Answer {
    let key = format!("applicant-{i}");
    let reply = server.send(
        "POST",
        "/models/credit-risk/predict",
        &[("ember-caller-key", &key)],
        Some(applicant),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    Answer {
        id: reply.headers["ember-invocation-id"].clone(),
        version: reply.body["model_version"].as_str().unwrap().to_string(),
        prediction: reply.body["prediction"].as_u64().unwrap() as usize,
        truth,
    }
}

fn feedback_of(answers: &[Answer]) -> Value {
    answers
        .iter()
        .map(|a| json!({"invocation_id": a.id, "label": a.truth}))
        .collect()
}

fn start(models: &Path, ledger: &Path, extra: &[&str]) -> Server {
    let mut args = vec![
        "--models",
        models.to_str().unwrap(),
        "--ledger",
        ledger.to_str().unwrap(),
        "--watch-every",
        "0.2",
    ];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// `ember models --models M ARGS`, and `--ledger L` after them when given.
fn models_cli(models: &Path, ledger: Option<&Path>, args: &[&str]) -> String {
    let mut all = vec!["models", "--models", models.to_str().unwrap()];
    all.extend_from_slice(args);
    if let Some(ledger) = ledger {
        all.extend_from_slice(&["--ledger", ledger.to_str().unwrap()]);
    }
    ember(&all)
}

fn routing(models: &Path) -> Value {
    let text = std::fs::read_to_string(models.join("credit-risk/routing.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Polls `done` every 200 ms for up to `seconds`.
fn wait_until(seconds: u64, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn quality_of(server: &Server, version: &str) -> Value {
    let (status, report) = server.get("/-/api/quality/credit-risk");
    assert_eq!(status, 200, "{report}");
    report["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["version"] == version)
        .unwrap()["window"]
        .clone()
}

#[test]
fn feedback_joins_decisions_and_live_quality_equals_a_direct_computation() {
    let dir = scratch_dir("feedback");
    let ledger = dir.join("usage.db");
    let models = repo_root().join("models");
    let server = start(&models, &ledger, &[]);
    let answers = predict_all(&server);
    let (first, rest) = answers.split_at(200);

    // Half over HTTP, right after the replies (their decisions may still be in the journal).
    let (status, body) = server.post_json("/-/feedback", &feedback_of(first));
    assert_eq!((status, &body), (200, &json!({"recorded": 200})));
    // The other half from a CSV file with `ember feedback`, while the host runs.
    let csv = dir.join("outcomes.csv");
    let mut text = String::from("invocation_id,label\n");
    for a in rest {
        text.push_str(&format!("{},{}\n", a.id, a.truth));
    }
    std::fs::write(&csv, text).unwrap();
    let said = ember(&[
        "feedback",
        csv.to_str().unwrap(),
        "--ledger",
        ledger.to_str().unwrap(),
        "--models",
        models.to_str().unwrap(),
    ]);
    assert!(said.contains("recorded 200 outcomes"), "{said}");

    // Refusals name the field and the rule; none records anything.
    let extra = predict(&server, 0, &holdout()[0].0, "default".into());
    for (body, status, code, field) in [
        (
            json!({"invocation_id": "nope", "label": "default"}),
            404,
            "unknown_invocation",
            "invocation_id",
        ),
        (
            json!({"invocation_id": answers[0].id, "label": "repaid"}),
            409,
            "duplicate_outcome",
            "invocation_id",
        ),
        (
            json!([{"invocation_id": extra.id, "label": "repaid"}, {"invocation_id": answers[1].id, "label": "repaid"}]),
            409,
            "duplicate_outcome",
            "[1].invocation_id",
        ),
        (
            json!([{"invocation_id": extra.id, "label": 1}, {"invocation_id": extra.id, "label": 0}]),
            409,
            "duplicate_outcome",
            "[1].invocation_id",
        ),
        (
            json!({"invocation_id": extra.id, "label": "maybe"}),
            422,
            "unknown_label",
            "label",
        ),
        (
            json!({"invocation_id": extra.id, "label": 2}),
            422,
            "unknown_label",
            "label",
        ),
        (
            json!({"invocation_id": extra.id, "label": true}),
            422,
            "wrong_type",
            "label",
        ),
        (
            json!({"invocation_id": extra.id}),
            422,
            "missing_field",
            "label",
        ),
    ] {
        let (got, reply) = server.post_json("/-/feedback", &body);
        assert_eq!(got, status, "{body}: {reply}");
        assert_eq!(reply["error"]["code"], code, "{body}: {reply}");
        assert_eq!(reply["error"]["field"], field, "{body}: {reply}");
    }
    let refused = server.post_json_full("/predict", &json!({"age": 7}));
    assert_eq!(refused.status, 422);
    let (status, reply) = server.post_json(
        "/-/feedback",
        &json!({"invocation_id": refused.headers["ember-invocation-id"], "label": 0}),
    );
    assert_eq!(
        (status, reply["error"]["code"].as_str()),
        (422, Some("no_decision"))
    );
    let get = server.send("GET", "/-/feedback", &[], None);
    assert_eq!(get.status, 405);
    assert_eq!(get.headers["allow"], "POST");
    // The batch that failed on its second item did not record its first.
    let (status, _) = server.post_json(
        "/-/feedback",
        &json!({"invocation_id": extra.id, "label": 1}),
    );
    assert_eq!(status, 200);

    // Live quality equals the same numbers computed here from the replies and the labels.
    let mut judged: Vec<&Answer> = answers.iter().collect();
    judged.push(&extra);
    let truth = |a: &Answer| LABELS.iter().position(|l| *l == a.truth).unwrap();
    let right = judged.iter().filter(|a| a.prediction == truth(a)).count();
    let accuracy = right as f64 / judged.len() as f64;
    let window = quality_of(&server, "1");
    assert_eq!(window["labelled"], judged.len());
    assert_eq!(window["accuracy"].as_f64(), Some(accuracy));
    for (k, class) in window["classes"].as_array().unwrap().iter().enumerate() {
        let predicted = judged.iter().filter(|a| a.prediction == k).count();
        let hits = judged
            .iter()
            .filter(|a| a.prediction == k && truth(a) == k)
            .count();
        let support = judged.iter().filter(|a| truth(a) == k).count();
        assert_eq!(class["support"], support);
        assert_eq!(
            class["precision"].as_f64(),
            Some(hits as f64 / predicted as f64)
        );
        assert_eq!(class["recall"].as_f64(), Some(hits as f64 / support as f64));
    }
    let [low, high] = [0, 1].map(|i| window["accuracy_ci95"][i].as_f64().unwrap());
    assert!(low < accuracy && accuracy < high, "{window}");
    assert!(window["auc"].as_f64().unwrap() > 0.7, "{window}");
    assert_eq!(window["scored"], judged.len());
    // The CLI reads the same from the ledger, and /-/metrics shows it after the next check.
    let cli: Value = serde_json::from_str(&models_cli(
        &models,
        Some(&ledger),
        &["quality", "credit-risk", "--version", "1", "--json"],
    ))
    .unwrap();
    assert_eq!(cli[0]["window"], window);
    assert_eq!(cli[0]["held_out"]["accuracy"], 0.7702);
    wait_until(10, "the accuracy gauge", || {
        let (_, metrics) = server.get_text("/-/metrics");
        metrics.lines().any(|l| {
            l.starts_with("ember_model_accuracy{")
                && l.contains("version=\"1\"")
                && l.rsplit(' ').next().unwrap().parse::<f64>().ok() == Some(accuracy)
        })
    });
}

#[test]
fn an_accuracy_drop_raises_an_alert_and_the_hook_receives_the_evidence() {
    let dir = scratch_dir("alert");
    let (models, ledger) = (models_copy(), dir.join("usage.db"));
    let hooked = dir.join("alert.json");
    models_cli(
        &models,
        None,
        &["alerts", "credit-risk", "--min-labels", "300"],
    );
    let hook = format!("cat > {}", hooked.display());
    let server = start(&models, &ledger, &["--alert-hook", &hook]);
    let answers = predict_all(&server);
    // The world changed: two in five applicants did the opposite of what their features said.
    let flipped: Vec<Value> = answers
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let truth = LABELS.iter().position(|l| *l == a.truth).unwrap();
            let label = if i % 5 < 2 { 1 - truth } else { truth };
            json!({"invocation_id": a.id, "label": label})
        })
        .collect();
    assert_eq!(
        server
            .post_json("/-/feedback", &Value::from(flipped.clone()))
            .0,
        200
    );
    let right = answers
        .iter()
        .zip(&flipped)
        .filter(|(a, f)| f["label"] == a.prediction)
        .count();
    let accuracy = right as f64 / answers.len() as f64;
    assert!(accuracy < 0.7702 - 0.03, "{accuracy}");

    wait_until(20, "the alert hook", || {
        std::fs::read_to_string(&hooked).is_ok_and(|t| serde_json::from_str::<Value>(&t).is_ok())
    });
    let alert: Value = serde_json::from_str(&std::fs::read_to_string(&hooked).unwrap()).unwrap();
    assert_eq!(alert["alert"], "accuracy");
    assert_eq!(
        (alert["model"].as_str(), alert["version"].as_str()),
        (Some("credit-risk"), Some("1"))
    );
    let evidence = &alert["evidence"];
    assert_eq!(evidence["accuracy"].as_f64(), Some(accuracy));
    assert_eq!(evidence["labelled"], 400);
    assert_eq!(evidence["held_out_accuracy"], 0.7702);
    assert_eq!(evidence["min_labels"], 300);

    let (_, metrics) = server.get_text("/-/metrics");
    for family in ["ember_alerts_raised_total", "ember_alert_active"] {
        let line = metrics
            .lines()
            .find(|l| {
                l.starts_with(family)
                    && l.contains("rule=\"accuracy\"")
                    && l.contains("version=\"1\"")
            })
            .unwrap_or_else(|| panic!("{family}: {metrics}"));
        assert!(line.ends_with(" 1"), "{line}");
    }
    let (_, overview) = server.get("/-/api/overview");
    let open = overview["outcomes"]["alerts"].as_array().unwrap();
    assert!(
        open.iter()
            .any(|a| a["rule"] == "accuracy" && a["version"] == "1"),
        "{overview}"
    );
}

/// The actions of a rollout history, but for its waits for evidence.
fn actions(history: &str) -> Vec<&str> {
    history
        .lines()
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .filter(|a| *a != "holding")
        .collect()
}

/// The rollout's recorded decisions: `ember models rollout credit-risk`.
fn rollout_history(models: &Path, ledger: &Path) -> String {
    models_cli(models, Some(ledger), &["rollout", "credit-risk"])
}

fn rollout(models: &Path, ledger: &Path, version: &str, guard: &str) -> String {
    models_cli(
        models,
        Some(ledger),
        &[
            "rollout",
            "credit-risk",
            version,
            "--steps",
            "20,50,100",
            "--every",
            "1s",
            "--guard",
            guard,
            "--min-evidence",
            "50",
        ],
    )
}

fn started(models: &Path, ledger: &Path) {
    wait_until(20, "the rollout to start", || {
        rollout_history(models, ledger).contains("started")
    });
}

#[test]
fn a_guarded_rollout_of_a_worse_version_rolls_back_at_its_first_step() {
    let (models, ledger) = (models_copy(), scratch_dir("rollback").join("usage.db"));
    let server = start(&models, &ledger, &[]);
    // Version 2 is measurably less accurate on the holdout's true labels (0.7625 vs 0.79).
    rollout(&models, &ledger, "2", "accuracy>=baseline,error_rate<0.01");
    started(&models, &ledger);
    assert_eq!(
        routing(&models)["shadow"],
        "2",
        "the candidate shadows the baseline"
    );
    let answers = predict_all(&server);
    let to_candidate = answers.iter().filter(|a| a.version == "2").count();
    assert!(
        (40..=120).contains(&to_candidate),
        "20% split: {to_candidate}"
    );
    assert_eq!(
        server.post_json("/-/feedback", &feedback_of(&answers)).0,
        200
    );
    wait_until(30, "the rollback", || {
        rollout_history(&models, &ledger).contains("rolled_back")
    });

    let history = rollout_history(&models, &ledger);
    let actions = actions(&history);
    assert_eq!(actions, ["started", "rolled_back"], "{history}");
    assert!(history.contains("accuracy>=baseline"), "{history}");
    let routing = routing(&models);
    assert_eq!(routing["aliases"], json!({"stable": "1"}));
    assert_eq!(routing["split"], json!([]));
    assert!(routing.get("shadow").is_none(), "{routing}");
    // The evidence: the candidate judged on every request (answers and shadow predictions).
    let conn = rusqlite::Connection::open(&ledger).unwrap();
    let evidence: String = conn
        .query_row(
            "SELECT evidence FROM rollout_events WHERE action = 'rolled_back'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let evidence: Value = serde_json::from_str(&evidence).unwrap();
    assert_eq!(evidence["candidate"]["labelled"], 400);
    assert_eq!(evidence["baseline"]["labelled"], 400 - to_candidate);
    let (candidate, baseline) = (
        evidence["candidate"]["accuracy"].as_f64().unwrap(),
        evidence["baseline"]["accuracy"].as_f64().unwrap(),
    );
    assert!(candidate < baseline, "{evidence}");
    assert_eq!(evidence["guards"][0]["verdict"], "fail");
    let (_, reply) = server.post_json("/models/credit-risk/predict", &holdout()[0].0);
    assert_eq!(reply["model_version"], "1");
}

#[test]
fn a_guarded_rollout_of_a_better_version_completes_to_100_percent() {
    let (models, ledger) = (models_copy(), scratch_dir("rollout").join("usage.db"));
    models_cli(&models, None, &["promote", "credit-risk", "2"]);
    let server = start(&models, &ledger, &[]);
    // Version 1 is the more accurate one: rolled out over 2, it passes every step.
    rollout(
        &models,
        &ledger,
        "1",
        "accuracy>=baseline-0.02,error_rate<0.01,agreement>=0.5",
    );
    started(&models, &ledger);
    let mut rounds = 0;
    while !rollout_history(&models, &ledger).contains("completed") {
        rounds += 1;
        assert!(rounds <= 8, "{}", rollout_history(&models, &ledger));
        let answers = predict_all(&server);
        assert_eq!(
            server.post_json("/-/feedback", &feedback_of(&answers)).0,
            200
        );
        let before = rollout_history(&models, &ledger).lines().count();
        wait_until(15, "the step to be judged", || {
            let history = rollout_history(&models, &ledger);
            history.lines().count() > before || history.contains("completed")
        });
    }
    let history = rollout_history(&models, &ledger);
    let actions = actions(&history);
    assert_eq!(actions, ["started", "advanced", "completed"], "{history}");
    let routing = routing(&models);
    assert_eq!(routing["aliases"], json!({"stable": "1"}));
    assert_eq!(routing["history"], json!(["1", "2"]));
    assert_eq!(routing["split"], json!([]));
    assert!(routing.get("shadow").is_none(), "{routing}");
    let listed = models_cli(&models, Some(&ledger), &["list"]);
    assert!(
        listed.contains("rollout of 1 from 2: completed at 100%"),
        "{listed}"
    );
    let (_, reply) = server.post_json("/models/credit-risk/predict", &holdout()[0].0);
    assert_eq!(reply["model_version"], "1");
}
