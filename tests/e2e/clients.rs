//! Clients nobody here wrote, unchanged, against `ember up`, from the virtual environment
//! scripts/setup makes from `tests/clients/requirements.txt`: tritonclient's HTTP and gRPC clients
//! (driven by the scripts in `tests/clients`) and schemathesis.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::support::{ember, repo_root, scratch_dir, Server};

/// A program of the clients' environment: `$EMBER_CLIENTS_VENV`, else
/// `~/.cache/ember/clients-venv`, as scripts/setup makes it.
fn client_program(name: &str) -> PathBuf {
    let venv = std::env::var_os("EMBER_CLIENTS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache"));
            cache.join("ember/clients-venv")
        });
    let program = venv.join("bin").join(name);
    assert!(
        program.is_file(),
        "{} is missing: scripts/setup installs the test clients",
        program.display()
    );
    program
}

/// Fails with a program's output unless it succeeded; returns that output.
fn succeeded(what: &str, output: std::process::Output) -> String {
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{what} failed:\n{printed}");
    printed
}

/// Runs `tests/clients/<script>` with `args` and fails with its output unless it succeeds.
pub fn run_client(script: &str, args: &[&str]) -> String {
    let root = repo_root();
    let output = Command::new(client_program("python"))
        .arg(root.join("tests/clients").join(script))
        .args(args)
        .output()
        .expect("python runs");
    succeeded(script, output)
}

#[test]
fn tritonclient_http_infers_every_reference_case_with_binary_and_json_tensors() {
    let server = Server::start(&[]);
    let address = server.base.trim_start_matches("http://");
    let models = repo_root().join("models");
    let printed = run_client("triton_http.py", &[address, models.to_str().unwrap()]);
    assert!(printed.contains("ok: "), "{printed}");
}

/// The gRPC client on the REST port, and its calls in the ledger exactly as REST's would be: one
/// metered invocation per call that reached the function, under the infer route it names.
#[test]
fn tritonclient_grpc_infers_every_reference_case_and_is_metered_as_rest() {
    let ledger = scratch_dir("grpc").join("usage.db");
    let ledger = ledger.to_str().unwrap();
    let server = Server::start(&["--ledger", ledger]);
    let address = server.base.trim_start_matches("http://");
    let models = repo_root().join("models");
    let printed = run_client("triton_grpc.py", &[address, models.to_str().unwrap()]);
    let counted = |what: &str| -> u64 {
        let at = printed.rfind(what).unwrap_or_else(|| panic!("{printed}"));
        let before = printed[..at].trim_end();
        let digits = before.rsplit([' ', ',']).next().unwrap();
        digits.parse().unwrap_or_else(|_| panic!("{printed}"))
    };
    let (inferred, refused) = (counted(" inferences"), counted(" refused"));
    drop(server);

    let usage = ember(&[
        "usage", "--ledger", ledger, "--by", "route", "--format", "json",
    ]);
    let groups: Vec<Value> = serde_json::from_str(&usage).unwrap();
    let (mut calls, mut errors) = (0, 0);
    for group in &groups {
        let route = group["group"].as_str().unwrap();
        if route.starts_with("POST /v2/models/") && route.ends_with("/infer") {
            calls += group["count"].as_u64().unwrap();
            errors += group["errors"].as_u64().unwrap();
        }
    }
    assert_eq!((calls, errors), (inferred + refused, refused), "{usage}");
}

/// Schemathesis against `/openapi.json`: every operation fuzzed from its schema, every response
/// checked against it — no 5xx, documented statuses and content types, bodies matching their
/// schemas, invalid data rejected, `Allow` on every 405. Left out: `positive_data_acceptance`,
/// since no JSON Schema can say "a decodable PNG" or "as many elements as the shape holds", so
/// schema-valid images and tensors are still refused (422 / 400, as they must be). The seed is
/// fixed so a failure reproduces.
#[test]
fn schemathesis_finds_every_response_matching_the_generated_openapi() {
    let server = Server::start(&[]);
    let scratch = scratch_dir("schemathesis");
    let output = Command::new(client_program("schemathesis"))
        .current_dir(&scratch)
        .args(["run", &format!("{}/openapi.json", server.base)])
        .args([
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
        ])
        .args(["--max-examples", "25", "--seed", "1", "--no-color"])
        .output()
        .expect("schemathesis runs");
    let printed = succeeded("schemathesis", output);
    // Every operation the document declares was tested, and passed.
    let (_, document) = server.get("/openapi.json");
    let operations: usize = document["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().keys())
        .filter(|key| {
            ["get", "put", "post", "delete", "options", "head", "patch"].contains(&key.as_str())
        })
        .count();
    assert!(
        printed.contains(&format!("{operations} selected / {operations} total"))
            && printed.contains(&format!("✅ {operations} passed")),
        "{printed}"
    );
}

#[test]
fn the_docs_page_and_everything_it_loads_come_from_the_host() {
    let server = Server::start(&[]);
    let (status, page) = server.get_text("/docs/");
    assert_eq!(status, 200);
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "{page}"
    );
    let assets: Vec<&str> = page
        .split(['"', '\''])
        .filter(|s| s.starts_with('/'))
        .collect();
    assert!(assets.contains(&"/openapi.json"), "{page}");
    assert!(assets.len() >= 3, "{assets:?}");
    for asset in assets {
        let (status, body) = server.get_text(asset);
        assert_eq!(status, 200, "{asset}");
        assert!(body.len() > 100, "{asset} is nearly empty");
    }
}
