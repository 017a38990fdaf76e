//! `ember bench`: every performance target, measured in one run against baselines from the same
//! run (this machine is noisy): native inference (ONNX Runtime, and tract beside it) is the floor; end-to-end latency over
//! loopback HTTP, overhead above the floor, throughput at several concurrencies, cold start, the
//! fast-path table against the seed's Flask server and hello-world components (with metering on
//! and off), the embedded variant against the wasi-nn one, scale to zero, and the browser package
//! in Chromium.

mod browser;
mod client;
mod models;
mod peers;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use wasmtime_wasi_nn::backend::{Id, NamedTensor};

use self::client::Probe;
use crate::nn::ort::{self, OrtBackend};
use crate::nn::reference_tensor;
use crate::nn::registry::DEFAULT_MODELS_DIR;
use crate::nn::tract::TractBackend;
use crate::nn::GraphLoader;
use crate::runtime::DEFAULT_CACHE_DIR;
use crate::stats::Samples;
use ember_contract::reference::{Case, Reference};

/// Options of `ember bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Seconds per throughput point.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Requests per latency measurement.
    #[arg(long, default_value_t = 3000)]
    pub requests: usize,
    /// Cold starts to time.
    #[arg(long, default_value_t = 5)]
    pub cold_runs: usize,
    /// Models directory.
    #[arg(long, default_value = DEFAULT_MODELS_DIR)]
    pub models: PathBuf,
    /// Compiled-component cache used by the servers the bench starts.
    #[arg(long, default_value = DEFAULT_CACHE_DIR)]
    pub cache_dir: PathBuf,
    /// Predictions per model and backend timed in the browser.
    #[arg(long, default_value_t = 200)]
    pub browser_runs: usize,
    /// The Chromium driver (the browser tests' own), with playwright-core installed beside it.
    #[arg(long, default_value = "tests/browser/drive.mjs")]
    pub browser_driver: PathBuf,
    /// Run only these sections (repeatable; default: all). The native floor always runs.
    #[arg(long, value_enum)]
    pub only: Vec<Section>,
}

/// The sections of the report.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// Warm latency and throughput.
    Warm,
    /// Cold start.
    ColdStart,
    /// Ember against the seed's Flask server, hello-world components and the host's floor.
    FastPath,
    /// The embedded build against the wasi-nn build.
    Variants,
    /// Idle unload and reload.
    ScaleToZero,
    /// The browser package in Chromium.
    Browser,
    /// Real models (EfficientNet-Lite0, MiniLM) against their floors and the seed's server.
    Models,
}

const MODELS: [&str; 2] = ["credit-risk", "digits"];

/// Runs every measurement and prints the report.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!(
        "ember bench — {} cores",
        std::thread::available_parallelism()?.get()
    );
    // `ember up` serves with ONNX Runtime when its library loads (`--backend auto`), so its
    // floor is the one the end-to-end rows are compared with; tract's is printed beside it.
    let ort = ort::default_library()
        .filter(|library| library.is_file())
        .map(|library| OrtBackend::load(&library))
        .transpose()?;
    println!("\n## Native floor: inference in-process, one thread per request, batch 1 (µs)");
    println!(
        "{:<16} {:>10} {:>10} {:>10} {:>10} {:>11}",
        "model", "tract p50", "tract p99", "ORT p50", "ORT p99", "tract/ORT"
    );
    let mut floors = Vec::new();
    // Version 1 of each model (the end-to-end rows' floor), and credit-risk's tree ensemble.
    for (model, version) in MODELS
        .map(|m| (m, "1"))
        .into_iter()
        .chain([("credit-risk", "3")])
    {
        let mut backends: Vec<&dyn GraphLoader> = vec![&TractBackend];
        backends.extend(ort.as_ref().map(|ort| ort as &dyn GraphLoader));
        let samples = native_floor(&args.models, model, version, &backends)?;
        let tract = &samples[0];
        let name = format!("{model} v{version}");
        let mut row = format!(
            "{name:<16} {:>10.1} {:>10.1}",
            tract.p50_us(),
            tract.p99_us()
        );
        let first = version == "1";
        match samples.get(1) {
            Some(floor) => {
                row += &format!(
                    " {:>10.1} {:>10.1} {:>10.2}x",
                    floor.p50_us(),
                    floor.p99_us(),
                    tract.p50_us() / floor.p50_us()
                );
                if first {
                    floors.push(floor.p50_us());
                }
            }
            None => {
                row += "   skipped: ONNX Runtime is not installed (run scripts/fetch-onnxruntime)";
                if first {
                    floors.push(tract.p50_us());
                }
            }
        }
        println!("{row}");
    }

    let runs = |section| args.only.is_empty() || args.only.contains(&section);
    if runs(Section::Warm) {
        warm(&runtime, &args, &floors)?;
    }
    if runs(Section::ColdStart) {
        cold_start(&runtime, &args)?;
    }
    if runs(Section::FastPath) {
        peers::run(&runtime, &args)?;
    }
    if runs(Section::Variants) {
        variants(&runtime, &args)?;
    }
    if runs(Section::ScaleToZero) {
        scale_to_zero(&runtime, &args)?;
    }
    if runs(Section::Models) {
        models::run(&runtime, &args, ort.as_ref())?;
    }
    if runs(Section::Browser) {
        browser::run(&args, &floors)?;
    }
    crate::metering::ledger::remove(&bench_ledger());
    Ok(())
}

/// Warm latency over loopback HTTP (overhead above the native floor) and throughput.
fn warm(runtime: &tokio::runtime::Runtime, args: &BenchArgs, floors: &[f64]) -> anyhow::Result<()> {
    let mut server = spawn_server(&args.cache_dir, &["--preload"])?;
    let probes: Vec<Probe> = MODELS
        .iter()
        .map(|m| probe(&args.models, &server.1, m))
        .collect::<anyhow::Result<_>>()?;
    println!("\n## Warm end-to-end over loopback HTTP, concurrency 1 (µs)");
    println!(
        "{:<12} {:>8} {:>8} {:>10} {:>12}",
        "model", "p50", "p99", "overhead", "e2e/native"
    );
    for ((model, probe), floor) in MODELS.iter().zip(&probes).zip(floors) {
        let samples = warm_latency(runtime, probe, 200, args.requests)?;
        let p50 = samples.p50_us();
        println!(
            "{model:<12} {p50:>8.1} {:>8.1} {:>10.1} {:>11.1}x",
            samples.p99_us(),
            p50 - floor,
            p50 / floor
        );
    }
    println!("target: overhead ≤ 150 µs p50 for credit-risk");

    println!(
        "\n## Throughput (requests/s), {:.0} s per point",
        args.seconds
    );
    println!("{:<12} {:>10} {:>10} {:>10}", "model", "c=1", "c=8", "c=32");
    for (model, probe) in MODELS.iter().zip(&probes) {
        let mut row = format!("{model:<12}");
        for concurrency in [1, 8, 32] {
            let (samples, elapsed) = runtime.block_on(client::load(
                probe,
                concurrency,
                Duration::from_secs_f64(args.seconds),
                usize::MAX,
            ))?;
            row += &format!(" {:>10.0}", samples.len() as f64 / elapsed.as_secs_f64());
        }
        println!("{row}");
    }
    println!("target: ≥ 5,000 req/s for credit-risk at c=32");
    stop(&mut server.0);

    Ok(())
}

/// Process spawn → first `/predict` response, cached component.
fn cold_start(runtime: &tokio::runtime::Runtime, args: &BenchArgs) -> anyhow::Result<()> {
    println!("\n## Cold start: process spawn → first /predict response (ms)");
    let mut cold = Samples::default();
    for _ in 0..args.cold_runs {
        let started = Instant::now();
        let (mut child, address) = spawn_server(&args.cache_dir, &[])?;
        let probe = probe(&args.models, &address, MODELS[0])?;
        runtime.block_on(client::once(&probe))?;
        cold.push(started.elapsed());
        stop(&mut child);
    }
    println!(
        "cached component: p50 {:.1}   max {:.1}   ({} runs; target ≤ 150 ms)",
        cold.p50_us() / 1e3,
        cold.quantile_us(1.0) / 1e3,
        cold.len()
    );

    Ok(())
}

/// The in-guest builds (tract inside the guest, pre-initialized: embedded, and the Spin build with
/// its key-value routing and SQLite records, which this host provides) against the wasi-nn build
/// (inference in the host), same run: warm latency and guest fuel per request.
fn variants(runtime: &tokio::runtime::Runtime, args: &BenchArgs) -> anyhow::Result<()> {
    println!(
        "\n## Variants: wasi-nn (host inference) vs embedded and spin (tract in the guest), concurrency 1"
    );
    println!(
        "{:<12} {:<9} {:>8} {:>8} {:>12}",
        "model", "variant", "p50 µs", "p99 µs", "guest fuel"
    );
    let mut fuel = Vec::new();
    for model in MODELS {
        for variant in VARIANTS {
            let ledger = std::env::temp_dir().join(format!(
                "ember-bench-{}-{variant}-{model}.db",
                std::process::id()
            ));
            let spin_state = tempfile::tempdir()?;
            let (mut child, address) = spawn_server_with_ledger(
                &args.cache_dir,
                &ledger,
                &[
                    "--preload",
                    "--variant",
                    variant,
                    "--spin-state",
                    &spin_state.path().display().to_string(),
                ],
            )?;
            let probe = probe(&args.models, &address, model)?;
            let samples = warm_latency(runtime, &probe, 200, args.requests / 3)?;
            stop(&mut child);
            let conn = crate::metering::ledger::open_current(&ledger)?;
            let guest_fuel: i64 = conn.query_row(
                "SELECT fuel FROM invocations ORDER BY started_at_us DESC LIMIT 1",
                [],
                |r| r.get(0),
            )?;
            drop(conn);
            crate::metering::ledger::remove(&ledger);
            println!(
                "{model:<12} {variant:<9} {:>8.1} {:>8.1} {guest_fuel:>12}",
                samples.p50_us(),
                samples.p99_us()
            );
            fuel.push(guest_fuel as f64);
        }
    }
    let n = VARIANTS.len();
    println!(
        "embedded / wasi-nn guest fuel: credit-risk {:.2}x (its graph is 47 MACs, so this is the \
         non-inference work; target ≤ 2x), digits {:.2}x (includes ~337k MACs of in-guest inference)",
        fuel[1] / fuel[0],
        fuel[n + 1] / fuel[n]
    );
    println!(
        "spin / embedded guest fuel (a key-value read for routing, a SQLite insert for the record): \
         credit-risk {:.2}x, digits {:.2}x",
        fuel[2] / fuel[1],
        fuel[n + 2] / fuel[n + 1]
    );
    Ok(())
}

/// The builds the variants section compares, in the order its ratios index them.
const VARIANTS: [&str; 3] = ["wasi-nn", "embedded", "spin"];

/// RSS while serving vs after the graphs unload, and the first request after eviction vs warm.
fn scale_to_zero(runtime: &tokio::runtime::Runtime, args: &BenchArgs) -> anyhow::Result<()> {
    println!("\n## Scale to zero (idle unload after 1 s)");
    let (mut child, address) = spawn_server(&args.cache_dir, &["--idle-unload", "1"])?;
    let probes: Vec<Probe> = MODELS
        .iter()
        .map(|m| probe(&args.models, &address, m))
        .collect::<anyhow::Result<_>>()?;
    let mut warm = Samples::default();
    for probe in &probes {
        let (samples, _) =
            runtime.block_on(client::load(probe, 4, Duration::from_secs(1), usize::MAX))?;
        if probe.path.contains(MODELS[1]) {
            warm = samples;
        }
    }
    let serving = rss_kib(child.id())?;
    std::thread::sleep(Duration::from_millis(2500));
    let unloaded = rss_kib(child.id())?;
    let started = Instant::now();
    runtime.block_on(client::once(&probes[1]))?;
    let reload = started.elapsed();
    stop(&mut child);
    println!(
        "RSS serving {:.1} MiB → after unload {:.1} MiB",
        serving as f64 / 1024.0,
        unloaded as f64 / 1024.0
    );
    println!(
        "digits: first request after eviction {:.2} ms (reload + new connection) vs warm p50 {:.2} ms",
        reload.as_secs_f64() * 1e3,
        warm.p50_us() / 1e3
    );
    Ok(())
}

/// Resident set size of a process, KiB.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmRSS missing")
}

/// The first reference case of `model` at `version`: what a measurement sends.
fn reference_case(models: &Path, model: &str, version: &str) -> anyhow::Result<Case> {
    let reference = Reference::read(models, model, version).map_err(anyhow::Error::msg)?;
    reference
        .cases
        .into_iter()
        .next()
        .with_context(|| format!("{model} v{version} has no reference cases"))
}

fn probe(models: &Path, address: &str, model: &str) -> anyhow::Result<Probe> {
    let case = reference_case(models, model, "1")?;
    Ok(Probe {
        address: address.to_string(),
        path: format!("/models/{model}/predict"),
        body: Bytes::from(serde_json::to_vec(&case.request)?),
        authorization: None,
    })
}

/// Latencies of `requests` sequential requests (concurrency 1), after `warm_up` more (or a
/// second of them, whichever ends first).
fn warm_latency(
    runtime: &tokio::runtime::Runtime,
    probe: &Probe,
    warm_up: usize,
    requests: usize,
) -> anyhow::Result<Samples> {
    runtime.block_on(client::load(probe, 1, Duration::from_secs(1), warm_up))?;
    let (samples, _) =
        runtime.block_on(client::load(probe, 1, Duration::from_secs(60), requests))?;
    Ok(samples)
}

/// Inference on the first reference case's tensors of `model` `version` by each backend,
/// interleaved, without wasm or HTTP.
fn native_floor(
    models: &Path,
    model: &str,
    version: &str,
    backends: &[&dyn GraphLoader],
) -> anyhow::Result<Vec<Samples>> {
    let case = reference_case(models, model, version)?;
    let inputs: Vec<NamedTensor> = case.inputs.iter().map(reference_tensor).collect();
    let runs: Vec<_> = backends.iter().map(|backend| (*backend, 2700)).collect();
    time_interleaved(
        &runs,
        &models.join(model).join(version),
        &inputs,
        |_| Ok(()),
    )
}

/// Rounds of [`time_interleaved`]: few enough that each backend's share runs back to back with
/// warm caches (a run right after another backend's is slower), enough to follow the machine.
const ROUNDS: usize = 10;

/// Each backend's `runs` inferences of the graph in `dir`, interleaved: in each of [`ROUNDS`]
/// rounds, every backend runs its share back to back, then `each_round` runs (told whether the
/// round is a warm-up) for whatever else a ratio compares. A ratio then compares runs made under
/// the same load (this machine's speed moves by the minute). Two more rounds warm up first.
fn time_interleaved(
    backends: &[(&dyn GraphLoader, usize)],
    dir: &Path,
    inputs: &[NamedTensor],
    mut each_round: impl FnMut(bool) -> anyhow::Result<()>,
) -> anyhow::Result<Vec<Samples>> {
    const WARM_UP: usize = ROUNDS / 5;
    let mut timed = backends
        .iter()
        .map(|(backend, runs)| {
            let graph = backend
                .load_dir(dir)
                .with_context(|| format!("loading {}", dir.display()))?
                .graph;
            let context = graph.init_execution_context()?;
            Ok((context, runs.div_ceil(ROUNDS), Samples::default()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    for round in 0..WARM_UP + ROUNDS {
        for (context, share, samples) in &mut timed {
            for _ in 0..*share {
                let started = Instant::now();
                for input in inputs {
                    context.set_input(Id::Name(input.name.clone()), &input.tensor)?;
                }
                context.compute()?;
                context.get_output(Id::Index(0))?;
                if round >= WARM_UP {
                    samples.push(started.elapsed());
                }
            }
        }
        each_round(round < WARM_UP)?;
    }
    Ok(timed.into_iter().map(|(_, _, samples)| samples).collect())
}

/// Starts `ember up` on a free port with a throwaway ledger; returns the child and its `host:port`.
fn spawn_server(cache_dir: &Path, extra: &[&str]) -> anyhow::Result<(Child, String)> {
    spawn_server_with_ledger(cache_dir, &bench_ledger(), extra)
}

/// The throwaway ledger of this bench run.
fn bench_ledger() -> PathBuf {
    std::env::temp_dir().join(format!("ember-bench-{}.db", std::process::id()))
}

/// [`spawn_server`] recording usage in `ledger`.
fn spawn_server_with_ledger(
    cache_dir: &Path,
    ledger: &Path,
    extra: &[&str],
) -> anyhow::Result<(Child, String)> {
    let mut child = Command::new(std::env::current_exe()?)
        .args(["up", "--listen", "127.0.0.1:0", "--cache-dir"])
        .arg(cache_dir)
        .arg("--ledger")
        .arg(ledger)
        .args(extra)
        .env("EMBER_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("child stdout")?).read_line(&mut line)?;
    let address = line
        .trim()
        .strip_prefix("ember listening on http://")
        .with_context(|| format!("ember up did not start: {line:?}"))?
        .to_string();
    Ok((child, address))
}

/// Stops a server the bench started as an operator would (SIGTERM: it ingests its journal and
/// exits), so the next one starts on an ingested ledger; kills it if it has not exited in 10 s.
fn stop(child: &mut Child) {
    // SAFETY: signalling a child this process spawned and has not reaped yet.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}
