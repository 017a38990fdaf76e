//! Tenants over real HTTP(S): every refusal (401, 403, 402, 429, 503) with its JSON error and
//! headers, keys revoked and rotated under a running server, a burst that gets exactly its bucket
//! through, a budget spent to the cent and still spent after a restart, per-key usage equal to
//! what was sent, the admin token on the host's data, tenants that never share an instance, and
//! HTTPS with a certificate made here (rcgen) — reloaded on SIGHUP, and gRPC over it with
//! tritonclient.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::support::{agent_config, ember, reference_cases, scratch_dir, send_with, Reply, Server};

const ADMIN: &str = "admin-secret-for-tests";

/// `ember keys create` on `ledger`; returns the printed key.
fn create_key(ledger: &str, args: &[&str]) -> String {
    let mut all = vec!["keys", "--ledger", ledger, "create"];
    all.extend_from_slice(args);
    let key = ember(&all).trim().to_string();
    assert!(key.starts_with("ek_"), "{key}");
    key
}

fn keyed_server(ledger: &str, extra: &[&str]) -> Server {
    let mut args = vec!["--ledger", ledger, "--auth", "keys", "--admin-token", ADMIN];
    args.extend_from_slice(extra);
    Server::start(&args)
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

/// `POST /models/credit-risk/predict` with the given credential headers.
fn predict(server: &Server, headers: &[(&str, &str)]) -> Reply {
    let body = &reference_cases("credit-risk")[0]["request"];
    server.send("POST", "/models/credit-risk/predict", headers, Some(body))
}

fn error_code(reply: &Reply) -> &str {
    reply.body["error"]["code"].as_str().unwrap_or_default()
}

#[test]
fn each_bad_credential_gets_its_error_and_changes_apply_without_a_restart() {
    let ledger = scratch_dir("tenants").join("usage.db");
    let ledger = ledger.to_str().unwrap();
    let team = create_key(ledger, &["--name", "team-a"]);
    let digits_only = create_key(ledger, &["--name", "digits-only", "--models", "digits"]);
    let server = keyed_server(ledger, &[]);

    let missing = predict(&server, &[]);
    assert_eq!(
        (missing.status, error_code(&missing)),
        (401, "unauthenticated")
    );
    assert_eq!(missing.body["error"]["field"], "authorization");
    assert_eq!(missing.headers["www-authenticate"], "Bearer");
    // Unknown and wrong keys are the same case, with the same answer.
    let unknown = predict(&server, &[("authorization", "Bearer ek_0000")]);
    let wrong = predict(&server, &[("authorization", &bearer(&format!("{team}0")))]);
    assert_eq!((unknown.status, wrong.status), (401, 401));
    assert_eq!(unknown.body, wrong.body);

    let ok = predict(&server, &[("authorization", &bearer(&team))]);
    assert_eq!(ok.status, 200, "{}", ok.body);
    let ok = predict(&server, &[("x-api-key", &team)]);
    assert_eq!(ok.status, 200, "x-api-key works too");

    let outside = predict(&server, &[("authorization", &bearer(&digits_only))]);
    assert_eq!((outside.status, error_code(&outside)), (403, "forbidden"));
    assert!(outside.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("credit-risk"));
    let digit = &reference_cases("digits")[0]["request"];
    let inside = server.send(
        "POST",
        "/models/digits/predict",
        &[("authorization", &bearer(&digits_only))],
        Some(digit),
    );
    assert_eq!(inside.status, 200);

    // Rotation and revocation by another process apply to the very next request.
    let rotated = ember(&["keys", "--ledger", ledger, "rotate", "team-a"])
        .trim()
        .to_string();
    assert_eq!(
        predict(&server, &[("authorization", &bearer(&team))]).status,
        401
    );
    assert_eq!(
        predict(&server, &[("authorization", &bearer(&rotated))]).status,
        200
    );
    ember(&["keys", "--ledger", ledger, "revoke", "team-a"]);
    assert_eq!(
        predict(&server, &[("authorization", &bearer(&rotated))]).status,
        401
    );

    // The host's data takes the admin token; health stays open.
    assert_eq!(server.get("/-/health").0, 200);
    for (method, path) in [
        ("GET", "/-/metrics"),
        ("GET", "/-/api/overview"),
        ("GET", "/-/api/quality/credit-risk"),
        ("POST", "/-/feedback"),
    ] {
        let refused = server.send(
            method,
            path,
            &[("authorization", &bearer(&digits_only))],
            (method == "POST").then_some(&serde_json::json!({"invocation_id": "x", "label": 0})),
        );
        assert_eq!(
            (refused.status, error_code(&refused)),
            (401, "unauthenticated"),
            "{path}"
        );
    }
    let listed: Vec<Value> =
        serde_json::from_str(&ember(&["keys", "--ledger", ledger, "list", "--json"])).unwrap();
    let status: HashMap<&str, bool> = listed
        .iter()
        .map(|k| (k["name"].as_str().unwrap(), k["revoked_at_us"].is_null()))
        .collect();
    assert_eq!(
        status,
        HashMap::from([("team-a", false), ("digits-only", true)])
    );
    assert!(
        listed
            .iter()
            .all(|k| !k.to_string().contains(&digits_only[3..])),
        "no secret listed"
    );
}

#[test]
fn a_burst_gets_exactly_its_bucket_through_and_usage_is_billed_per_key() {
    let ledger = scratch_dir("tenants-rate").join("usage.db");
    let ledger = ledger.to_str().unwrap();
    let limited = create_key(
        ledger,
        &["--name", "limited", "--rate", "1/m", "--burst", "5"],
    );
    let free = create_key(ledger, &["--name", "free"]);
    let server = Arc::new(keyed_server(ledger, &[]));

    // 20 at once over a bucket of 5: exactly 5 through.
    let replies: Vec<Reply> = (0..20)
        .map(|_| {
            let (server, key) = (server.clone(), limited.clone());
            std::thread::spawn(move || predict(&server, &[("authorization", &bearer(&key))]))
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    let passed: Vec<&Reply> = replies.iter().filter(|r| r.status == 200).collect();
    let limited_replies: Vec<&Reply> = replies.iter().filter(|r| r.status == 429).collect();
    assert_eq!((passed.len(), limited_replies.len()), (5, 15));
    for reply in &limited_replies {
        assert_eq!(error_code(reply), "rate_limited");
        let retry: u64 = reply.headers["retry-after"].parse().unwrap();
        assert!((1..=60).contains(&retry), "{retry}");
        assert_eq!(reply.headers["ratelimit-limit"], "5");
        assert_eq!(reply.headers["ratelimit-remaining"], "0");
    }
    let mut remaining: Vec<u64> = passed
        .iter()
        .map(|r| r.headers["ratelimit-remaining"].parse().unwrap())
        .collect();
    remaining.sort();
    assert_eq!(remaining, vec![0, 1, 2, 3, 4]);
    for _ in 0..3 {
        assert_eq!(
            predict(&server, &[("authorization", &bearer(&free))]).status,
            200
        );
    }
    assert_eq!(predict(&server, &[]).status, 401);

    let (status, metrics) = {
        let reply = send_text(&server, "/-/metrics");
        (reply.0, reply.1)
    };
    assert_eq!(status, 200);
    let count = |labels: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(&format!("ember_key_requests_total{{{labels}}}")))
            .and_then(|l| l.rsplit(' ').next())
            .map_or(0.0, |v| v.parse().unwrap())
    };
    assert_eq!(count("key=\"limited\",outcome=\"success\""), 5.0);
    assert_eq!(count("key=\"limited\",outcome=\"rate_limited\""), 15.0);
    assert_eq!(count("key=\"free\",outcome=\"success\""), 3.0);
    assert_eq!(count("key=\"\",outcome=\"unauthenticated\""), 1.0);

    // The audit trail and `ember usage --by key` carry the key's name, never the key.
    let id = &passed[0].headers["ember-invocation-id"];
    let audit = ember(&["audit", id, "--ledger", ledger]);
    let audit: Value = serde_json::from_str(&audit).unwrap();
    assert_eq!(audit["key"], "limited");
    drop(server);
    let usage: Vec<Value> = serde_json::from_str(&ember(&[
        "usage", "--ledger", ledger, "--by", "key", "--format", "json",
    ]))
    .unwrap();
    let counts: HashMap<&str, u64> = usage
        .iter()
        .map(|g| (g["group"].as_str().unwrap(), g["count"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        counts,
        HashMap::from([("limited", 5), ("free", 3)]),
        "refusals are not billed"
    );
}

fn send_text(server: &Server, path: &str) -> (u16, String) {
    let mut response = agent_config()
        .build()
        .new_agent()
        .get(format!("{}{path}", server.base))
        .header("authorization", bearer(ADMIN))
        .call()
        .unwrap();
    let status = response.status().as_u16();
    (status, response.body_mut().read_to_string().unwrap())
}

/// The price of each invocation, as its reply says: `ember-cost: <amount> <currency>`.
fn cost_of(reply: &Reply) -> f64 {
    reply.headers["ember-cost"]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn a_spent_budget_refuses_with_402_also_after_a_restart() {
    let ledger = scratch_dir("tenants-budget").join("usage.db");
    let ledger = ledger.to_str().unwrap();
    // The price of one credit-risk prediction (deterministic: fuel and MACs).
    let probe = create_key(ledger, &["--name", "probe"]);
    let one = {
        let server = keyed_server(ledger, &[]);
        cost_of(&predict(&server, &[("authorization", &bearer(&probe))]))
    };
    assert!(one > 0.0);
    let budget = format!("{}", one * 2.5);
    let key = create_key(ledger, &["--name", "capped", "--budget", &budget]);
    let auth = [("authorization", bearer(&key))];
    let auth: Vec<(&str, &str)> = auth.iter().map(|(k, v)| (*k, v.as_str())).collect();

    let server = keyed_server(ledger, &[]);
    let mut spent = 0.0;
    for _ in 0..3 {
        let reply = predict(&server, &auth);
        assert_eq!(reply.status, 200, "{}", reply.body);
        spent += cost_of(&reply);
    }
    let refused = predict(&server, &auth);
    assert_eq!(
        (refused.status, error_code(&refused)),
        (402, "budget_exhausted")
    );
    assert!(refused.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("capped"));
    drop(server);

    // The spend is the ledger's: a restarted host refuses at once, and the list shows it.
    let server = keyed_server(ledger, &[]);
    assert_eq!(predict(&server, &auth).status, 402);
    drop(server);
    let listed: Vec<Value> =
        serde_json::from_str(&ember(&["keys", "--ledger", ledger, "list", "--json"])).unwrap();
    let capped = listed.iter().find(|k| k["name"] == "capped").unwrap();
    let listed_spend = capped["spent_this_month"].as_f64().unwrap();
    // The reply headers round each cost to 12 decimals.
    assert!(
        (listed_spend - spent).abs() < 2e-12,
        "{listed_spend} vs {spent}"
    );
}

#[test]
fn tenants_never_share_an_instance_and_the_concurrency_cap_answers_503_at_once() {
    let ledger = scratch_dir("tenants-isolation").join("usage.db");
    let ledger = ledger.to_str().unwrap();
    let alice = create_key(ledger, &["--name", "alice"]);
    let mallory = create_key(ledger, &["--name", "mallory"]);
    let server = Arc::new(keyed_server(
        ledger,
        &[
            "--component",
            env!("EMBER_MISBEHAVE_WASM"),
            "--deadline-ms",
            "1500",
            "--max-concurrency",
            "1",
        ],
    ));
    let as_caller = |key: &str, path: &str| {
        server.send(
            "GET",
            path,
            &[
                ("authorization", &bearer(key)),
                ("ember-caller-key", "user-1"),
            ],
            None,
        )
    };
    assert_eq!(as_caller(&alice, "/remember?alice-secret").status, 200);
    // The same caller key under another API key is another caller.
    let recalled = as_caller(&mallory, "/recall");
    assert_eq!((recalled.status, &recalled.body["left"]), (200, &json!("")));
    assert_eq!(as_caller(&alice, "/recall").body["left"], "alice-secret");

    // One request spins to its deadline; the next is refused at once, not queued.
    let spinning = {
        let (server, alice) = (server.clone(), alice.clone());
        std::thread::spawn(move || {
            server.send("GET", "/loop", &[("authorization", &bearer(&alice))], None)
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    let started = std::time::Instant::now();
    let refused = as_caller(&mallory, "/recall");
    assert_eq!((refused.status, error_code(&refused)), (503, "overloaded"));
    assert_eq!(refused.headers["retry-after"], "1");
    assert!(
        started.elapsed() < std::time::Duration::from_millis(1000),
        "answered at once"
    );
    assert_eq!(spinning.join().unwrap().status, 504);
    assert_eq!(as_caller(&mallory, "/recall").status, 200, "admitted again");
}

/// A self-signed certificate for 127.0.0.1, written as `cert.pem` and `key.pem` in `dir`;
/// returns the certificate's PEM.
fn write_certificate(dir: &Path) -> String {
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let pem = made.cert.pem();
    std::fs::write(dir.join("cert.pem"), &pem).unwrap();
    std::fs::write(dir.join("key.pem"), made.signing_key.serialize_pem()).unwrap();
    pem
}

fn trusting(pem: &str) -> ureq::Agent {
    let cert = ureq::tls::Certificate::from_pem(pem.as_bytes()).unwrap();
    agent_config()
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::Specific(Arc::new(vec![cert])))
                .build(),
        )
        .build()
        .new_agent()
}

#[test]
fn https_with_a_generated_certificate_reloads_on_sighup_and_carries_grpc_with_keys() {
    let dir = scratch_dir("tenants-tls");
    let first = write_certificate(&dir);
    let ledger = dir.join("usage.db");
    let ledger = ledger.to_str().unwrap();
    let key = create_key(ledger, &["--name", "tls-client", "--models", "credit-risk"]);
    let (cert, private) = (dir.join("cert.pem"), dir.join("key.pem"));
    let server = keyed_server(
        ledger,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            private.to_str().unwrap(),
        ],
    );
    assert!(
        server.base.starts_with("https://127.0.0.1:"),
        "{}",
        server.base
    );
    let body = &reference_cases("credit-risk")[0]["request"];
    let predict_over = |agent: &ureq::Agent| {
        let auth = bearer(&key);
        send_with(
            agent,
            &server.base,
            "POST",
            "/models/credit-risk/predict",
            &[("authorization", &auth)],
            Some(body),
        )
    };
    assert_eq!(predict_over(&trusting(&first)).status, 200);

    // A new certificate on disk and SIGHUP: new connections get it, no restart.
    let second = write_certificate(&dir);
    assert_ne!(first, second);
    let pid = server.pid().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    let mut reloaded = false;
    for _ in 0..100 {
        if server.logs().contains("reloaded the TLS certificate") {
            reloaded = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(reloaded, "{}", server.logs());
    assert_eq!(predict_over(&trusting(&second)).status, 200);
    let stale = send_with_result(&trusting(&first), &server.base);
    assert!(stale.is_err(), "the old certificate is no longer served");

    // tritonclient's gRPC client over TLS (HTTP/2 by ALPN), its key in the call's metadata.
    let address = server.base.trim_start_matches("https://");
    let models = crate::support::repo_root().join("models");
    let printed = crate::clients::run_client(
        "triton_grpc_tenant.py",
        &[
            address,
            models.to_str().unwrap(),
            cert.to_str().unwrap(),
            &key,
        ],
    );
    assert!(printed.contains("ok: "), "{printed}");
}

fn send_with_result(agent: &ureq::Agent, base: &str) -> Result<(), ureq::Error> {
    agent.get(format!("{base}/-/health")).call().map(|_| ())
}
