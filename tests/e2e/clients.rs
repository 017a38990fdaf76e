//! Clients nobody here wrote, unchanged, against `ember up`: the scripts in `tests/clients` run in
//! the virtual environment scripts/setup makes from `tests/clients/requirements.txt`.

use std::path::PathBuf;
use std::process::Command;

use crate::support::{repo_root, Server};

/// The clients' Python: `$EMBER_CLIENTS_VENV`, else `~/.cache/ember/clients-venv`, as
/// scripts/setup makes it.
fn python() -> PathBuf {
    let venv = std::env::var_os("EMBER_CLIENTS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache"));
            cache.join("ember/clients-venv")
        });
    let python = venv.join("bin/python");
    assert!(
        python.is_file(),
        "{} is missing: scripts/setup installs the test clients",
        python.display()
    );
    python
}

/// Runs `tests/clients/<script>` with `args` and fails with its output unless it succeeds.
fn run_client(script: &str, args: &[&str]) -> String {
    let root = repo_root();
    let output = Command::new(python())
        .arg(root.join("tests/clients").join(script))
        .args(args)
        .output()
        .expect("python runs");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{script} failed:\n{printed}");
    printed
}

#[test]
fn tritonclient_http_infers_every_reference_case_with_binary_and_json_tensors() {
    let server = Server::start(&[]);
    let address = server.base.trim_start_matches("http://");
    let models = repo_root().join("models");
    let printed = run_client("triton_http.py", &[address, models.to_str().unwrap()]);
    assert!(printed.contains("ok: "), "{printed}");
}
