//! Child processes Ember starts and watches (the bench's peers; the end-to-end tests' servers):
//! collecting what they print, and upstream `wasmtime serve` with the function mounted as on Spin.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use ember_contract::names::GUEST_MODELS_DIR;

/// Collects everything `stream` yields, in the background, into the returned text.
pub fn capture(mut stream: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = text.clone();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = stream.read(&mut chunk) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    });
    text
}

/// Starts upstream `wasmtime serve` (`binary`, built from tests/wasmtime-serve) on a free loopback
/// port serving `component`, with `models` mounted at the guest's models directory as spin.toml
/// mounts it and `options` (wasmtime's own flags, e.g. `-O …`) before it; returns the child and
/// its log ([`serving_address`] reads the address from it).
pub fn spawn_wasmtime_serve(
    binary: &Path,
    component: &Path,
    models: &Path,
    options: &[&str],
) -> std::io::Result<(Child, Arc<Mutex<String>>)> {
    spawn_wasmtime_serve_with(binary, component, &[(models, GUEST_MODELS_DIR)], options)
}

/// [`spawn_wasmtime_serve`] with each `(host directory, guest path)` of `mounts` preopened.
pub fn spawn_wasmtime_serve_with(
    binary: &Path,
    component: &Path,
    mounts: &[(&Path, &str)],
    options: &[&str],
) -> std::io::Result<(Child, Arc<Mutex<String>>)> {
    let mut command = Command::new(binary);
    command.args(["--addr", "127.0.0.1:0", "-S", "cli"]);
    command.args(options);
    for (host, guest) in mounts {
        command
            .arg("--dir")
            .arg(format!("{}::{guest}", host.display()));
    }
    let mut child = command
        .arg(component)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let log = capture(child.stderr.take().expect("stderr is piped"));
    Ok((child, log))
}

/// The `host:port` `wasmtime serve` announced in its log, once it has.
pub fn serving_address(log: &str) -> Option<String> {
    let rest = log.split("Serving HTTP on http://").nth(1)?;
    let address = rest.split(['/', ' ', '\n']).next()?;
    (!address.is_empty()).then(|| address.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_announced_address_is_read_from_the_log() {
        let log = "warning: x\nServing HTTP on http://127.0.0.1:41234/\n";
        assert_eq!(serving_address(log).as_deref(), Some("127.0.0.1:41234"));
        assert_eq!(serving_address("compiling..."), None);
    }
}
