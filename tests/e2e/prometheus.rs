//! `/-/metrics` by Prometheus' own tools (Debian's `prometheus` package, installed by
//! scripts/setup): `promtool check metrics` finds nothing to lint in the classic text, a real
//! Prometheus scrapes it (asking for OpenMetrics, as it does) and holds the same numbers, and
//! every query of the Grafana dashboard (`deploy/grafana/ember.json`) runs on that Prometheus.

use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{reference_cases, repo_root, scratch_dir, Server};

/// Longest a fresh Prometheus may take to scrape the numbers the test expects.
const SCRAPE_DEADLINE: Duration = Duration::from_secs(90);

fn tool(name: &str) -> &str {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{name} is missing: scripts/setup installs Debian's prometheus package"
    );
    name
}

/// Traffic for the metrics: successes on both models and a 422.
fn send_traffic(server: &Server) -> (usize, usize) {
    let cases = reference_cases("credit-risk");
    for case in &cases {
        assert_eq!(server.post_json("/predict", &case["request"]).0, 200);
    }
    let (status, _) = server.post_json("/predict", &json!({"age": "old"}));
    assert_eq!(status, 422);
    for case in reference_cases("digits").iter().take(3) {
        assert_eq!(
            server
                .post_json("/models/digits/predict", &case["request"])
                .0,
            200
        );
    }
    (cases.len(), 1)
}

#[test]
fn promtool_finds_nothing_to_lint_and_openmetrics_is_served_when_asked() {
    let server = Server::start(&[]);
    send_traffic(&server);
    let (status, text) = server.get_text("/-/metrics");
    assert_eq!(status, 200);
    for name in [
        "ember_request_duration_seconds_bucket",
        "ember_compute_infer_duration_seconds_bucket",
        "# HELP ember_request_success_total ",
        "# TYPE ember_cost_total counter",
    ] {
        assert!(text.contains(name), "{name} missing:\n{text}");
    }
    assert!(!text.contains("# EOF"), "classic text has no EOF marker");
    let mut promtool = Command::new(tool("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let checked = promtool.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(
        checked.status.success() && said.trim().is_empty(),
        "promtool check metrics: {said}"
    );

    let reply = ureq::get(format!("{}/-/metrics", server.base))
        .header("accept", "application/openmetrics-text; version=1.0.0")
        .call()
        .unwrap();
    let content_type = reply.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let openmetrics = reply.into_body().read_to_string().unwrap();
    assert!(openmetrics.ends_with("# EOF\n"), "{openmetrics}");
    assert!(openmetrics.contains("# UNIT ember_request_duration_seconds seconds"));
}

/// A Prometheus scraping `target` every second, killed when dropped.
struct Prometheus {
    child: Child,
    api: String,
}

impl Prometheus {
    /// Scrapes `target` with `token` as its bearer credentials (the host's admin token).
    fn start(target: &str, token: &str, dir: &Path) -> Prometheus {
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: ember\n    \
                 metrics_path: /-/metrics\n    authorization:\n      credentials: '{token}'\n    \
                 static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(tool("prometheus"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus runs");
        Prometheus {
            child,
            api: format!("http://127.0.0.1:{port}/api/v1"),
        }
    }

    /// Runs an instant query; `None` until Prometheus answers.
    fn query(&self, promql: &str) -> Option<Value> {
        let mut reply = ureq::get(format!("{}/query", self.api))
            .query("query", promql)
            .config()
            .http_status_as_error(false)
            .build()
            .call()
            .ok()?;
        serde_json::from_str(&reply.body_mut().read_to_string().ok()?).ok()
    }

    /// The value of the first sample a query returns.
    fn value(&self, promql: &str) -> Option<f64> {
        let answer = self.query(promql)?;
        answer["data"]["result"][0]["value"][1]
            .as_str()?
            .parse()
            .ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every PromQL query in the dashboard, with Grafana's variables filled in.
fn dashboard_queries() -> Vec<(String, String)> {
    let path = repo_root().join("deploy/grafana/ember.json");
    let dashboard: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"]
                .as_str()
                .unwrap()
                .replace("$model", ".*")
                .replace("$__rate_interval", "1m");
            queries.push((panel["title"].as_str().unwrap().to_string(), expr));
        }
    }
    queries
}

#[test]
fn a_real_prometheus_scrapes_the_same_numbers_and_runs_the_dashboard() {
    // With an admin token the metrics need it: Prometheus sends it as bearer credentials.
    let token = "scrape-token";
    let server = Server::start(&["--admin-token", token]);
    assert_eq!(server.get("/-/metrics").0, 401, "no token, no metrics");
    let (successes, failures) = send_traffic(&server);
    let prometheus = Prometheus::start(
        server.base.trim_start_matches("http://"),
        token,
        &scratch_dir("prometheus"),
    );
    let deadline = Instant::now() + SCRAPE_DEADLINE;
    let scraped = "ember_request_success_total{model=\"credit-risk\"}";
    // Two scrapes of the same numbers: rates then have two points.
    while prometheus.value(&format!("count_over_time({scraped}[1m])")) < Some(2.0) {
        assert!(
            Instant::now() < deadline,
            "Prometheus never scraped {scraped}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(prometheus.value("up{job=\"ember\"}"), Some(1.0));
    assert_eq!(prometheus.value(scraped), Some(successes as f64));
    assert_eq!(
        prometheus.value("sum(ember_request_failure_total{reason=\"http_422\"})"),
        Some(failures as f64)
    );
    assert_eq!(
        prometheus.value("sum(ember_request_duration_seconds_count)"),
        Some((successes + failures + 3) as f64)
    );
    let mut reply = ureq::get(format!("{}/targets", prometheus.api))
        .call()
        .unwrap();
    let targets: Value = serde_json::from_str(&reply.body_mut().read_to_string().unwrap()).unwrap();
    let target = &targets["data"]["activeTargets"][0];
    assert_eq!(target["health"], "up", "{target}");
    assert_eq!(target["lastError"], "", "{target}");

    for (panel, expr) in dashboard_queries() {
        let answer = prometheus.query(&expr).unwrap();
        assert_eq!(answer["status"], "success", "{panel}: {expr}: {answer}");
        // Shadows are off in the bundled routing, so only their panel may be empty.
        if !expr.contains("shadow") {
            assert!(
                !answer["data"]["result"].as_array().unwrap().is_empty(),
                "{panel}: {expr} returned nothing"
            );
        }
    }
}
