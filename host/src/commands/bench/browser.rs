//! The browser package in Chromium, driven by the browser tests' own driver
//! (`tests/browser/drive.mjs`): model load time and mean time per prediction on WebGPU and on the
//! CPU, against the native tract floor measured in the same run. Skipped, saying why, on a
//! machine without Node.js, playwright-core, Chromium or the built package.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

use super::{reference_case, spawn_server, stop, BenchArgs, MODELS};

/// Longest a browser run may take.
const DEADLINE: Duration = Duration::from_secs(300);

/// The package `ember up` serves under `/demo/pkg` (built by `scripts/build-browser`).
const PACKAGE: &str = "target/browser/pkg/ember_browser_bg.wasm";

/// Prints the browser section; `floors` are the native p50s (µs) of [`MODELS`], same run.
pub fn run(args: &BenchArgs, floors: &[f64]) -> anyhow::Result<()> {
    println!(
        "\n## Browser: Chromium, load and mean per prediction over {} runs (ms)",
        args.browser_runs
    );
    if let Err(missing) = prerequisites(&args.browser_driver) {
        println!("skipped: {missing:#}");
        return Ok(());
    }
    let (mut server, address) = spawn_server(&args.cache_dir, &["--preload"])?;
    let cases = MODELS
        .iter()
        .map(|model| {
            let case = reference_case(&args.models, model, "1")?;
            Ok(json!({"model": model, "name": "case-0", "input": case.request}))
        })
        .collect::<anyhow::Result<Vec<Value>>>()?;
    let job = json!({
        "base": format!("http://{address}"),
        "backends": ["webgpu", "cpu"],
        "cases": cases,
        "invalid": [],
        "repeats": args.browser_runs,
        "screenshot": null,
    });
    let report = drive(&args.browser_driver, &job);
    stop(&mut server);
    let report = report?;
    println!(
        "{:<12} {:<7} {:<7} {:>9} {:>11} {:>15}",
        "model", "asked", "ran", "load", "predict", "browser/native"
    );
    for load in report["loads"].as_array().into_iter().flatten() {
        let (model, asked) = (text(&load["model"]), text(&load["backend"]));
        if let Some(error) = load.get("error") {
            let reason = error["error"]["message"].as_str().unwrap_or("load failed");
            println!("{model:<12} {asked:<7} refused: {reason}");
            continue;
        }
        let timing = report["timings"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["model"] == load["model"] && t["backend"] == load["backend"])
            .with_context(|| format!("no timing for {model} on {asked}"))?;
        let predict_ms = timing["mean_ms"].as_f64().unwrap_or(f64::NAN);
        let floor_us = MODELS
            .iter()
            .position(|m| *m == model)
            .map_or(f64::NAN, |i| floors[i]);
        println!(
            "{model:<12} {asked:<7} {:<7} {:>9.1} {predict_ms:>11.3} {:>14.1}x",
            text(&load["ran"]),
            load["load_ms"].as_f64().unwrap_or(f64::NAN),
            predict_ms * 1e3 / floor_us
        );
    }
    println!(
        "(predict: validation + preprocessing + inference + reply, in the page; WebGPU here may \
         be a software adapter)"
    );
    Ok(())
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or("?")
}

/// What the driver needs, or what is missing.
fn prerequisites(driver: &Path) -> anyhow::Result<()> {
    if !Path::new(PACKAGE).is_file() {
        bail!("{PACKAGE} is missing (scripts/build-browser builds it)");
    }
    let modules = driver
        .parent()
        .unwrap_or(Path::new("."))
        .join("node_modules/playwright-core");
    if !modules.is_dir() {
        bail!(
            "{} is missing (scripts/setup installs it)",
            modules.display()
        );
    }
    Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .context("node is not installed (scripts/setup installs it)")?;
    Ok(())
}

/// Runs the driver on `job` under [`DEADLINE`] and returns its JSON report.
fn drive(driver: &Path, job: &Value) -> anyhow::Result<Value> {
    let job_file = std::env::temp_dir().join(format!("ember-bench-{}.json", std::process::id()));
    std::fs::write(&job_file, job.to_string())?;
    let child = Command::new("node")
        .arg(driver)
        .arg(&job_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting node")?;
    let pid = child.id();
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || done.send(child.wait_with_output()));
    let output = finished.recv_timeout(DEADLINE);
    let _ = std::fs::remove_file(&job_file);
    let Ok(output) = output else {
        // SAFETY: kill(2) on the pid of our own child, which has not been reaped (still running).
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        bail!("the browser run took over {DEADLINE:?}");
    };
    let output = output?;
    if !output.status.success() {
        bail!(
            "{} failed: {}",
            driver.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    serde_json::from_slice(&output.stdout).context("the driver's report")
}
