//! The fast-path table: Ember's `/predict` against its peers and floors, measured in the same
//! run — the seed's Flask + onnxruntime server (`scripts/peers/flask_seed.py` under gunicorn),
//! Ember with metering on and off, with API keys and a rate limit checked on every request,
//! with instance reuse (the default) and a fresh instance per
//! request, the embedded build on Ember and on upstream `wasmtime serve` (as it starts, and with
//! its function table kept resident between instances),
//! a hello-world wasi:http component on both hosts, and the host's own HTTP floor. Peers that are
//! not installed are reported as skipped, never guessed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::client::{self, Probe};
use super::{bench_ledger, probe, spawn_server, stop, BenchArgs, MODELS};
use crate::process::{serving_address, spawn_wasmtime_serve};
use crate::tenants::limits::Limits;
use crate::tenants::store;

/// Longest a peer may take to start serving (wasmtime serve compiles the embedded build).
const START_DEADLINE: Duration = Duration::from_secs(120);

/// Concurrencies of the table.
const CONCURRENCY: [usize; 2] = [1, 32];

/// Rows the targets are stated against.
const SEED: &str = "Flask + onnxruntime (seed, gunicorn -w 2)";
const METERING_ON: &str = "Ember, metering on";
const METERING_OFF: &str = "Ember, metering off";
const KEYS_OFF: &str = "Ember, metering on, --auth none (A/B with the next row)";
const KEYS_ON: &str = "Ember, metering on, --auth keys + rate limit";
/// Alternating load slices per concurrency in the keys A/B.
const AB_SLICES: u32 = 6;
const FRESH: &str = "Ember, metering on, --instance-reuse 1";
const EMBEDDED_ON_WASMTIME: &str = "wasmtime serve, embedded build";
const EMBEDDED_ON_WASMTIME_TABLE_RESIDENT: &str =
    "wasmtime serve, embedded build, table kept resident";
/// The option of the row above: wasmtime's pooling allocator (`wasmtime serve`'s default) then
/// zeroes the embedded build's function table (~16k entries, ~126 KB) between instances instead of
/// handing its pages back to the kernel, whose faults on the next instance were the largest cost
/// of a request there (docs/benchmarks.md has the profile).
const TABLE_KEEP_RESIDENT: &str = "pooling-table-keep-resident=262144";
const HELLO_ON_WASMTIME: &str = "hello world on wasmtime serve";

/// One row: what was measured, or why it was not.
struct Row {
    label: &'static str,
    rates: Result<[f64; 2], String>,
}

/// Prints the table and the ratios the fast-path targets are stated in.
pub fn run(runtime: &tokio::runtime::Runtime, args: &BenchArgs) -> anyhow::Result<()> {
    println!(
        "\n## Fast path: credit-risk /predict and its peers, requests/s ({:.0} s per point)",
        args.seconds
    );
    let hello = PathBuf::from(env!("EMBER_MISBEHAVE_WASM"));
    let embedded = crate::preinit::InGuestBuild::Embedded
        .default_output()
        .to_path_buf();
    let mut rows = Vec::new();
    rows.push(Row {
        label: SEED,
        rates: flask(
            &args.models,
            MODELS[0],
            "1",
            &Bytes::from_static(br#"{"age": 42, "income": 52000, "credit_score": 710}"#),
        )
        .and_then(|peer| measure(runtime, args, peer, None, None)),
    });
    for (label, extra) in [
        (METERING_ON, vec!["--preload"]),
        (METERING_OFF, vec!["--preload", "--no-metering"]),
        (FRESH, vec!["--preload", "--instance-reuse", "1"]),
        (
            "Ember, embedded build",
            vec!["--preload", "--variant", "embedded"],
        ),
    ] {
        rows.push(Row {
            label,
            rates: ember(args, &extra).and_then(|peer| measure(runtime, args, peer, None, None)),
        });
    }
    let [without_keys, with_keys] = match keys_ab(runtime, args) {
        Ok([a, b]) => [Ok(a), Ok(b)],
        Err(why) => [Err(why.clone()), Err(why)],
    };
    rows.push(Row {
        label: KEYS_OFF,
        rates: without_keys,
    });
    rows.push(Row {
        label: KEYS_ON,
        rates: with_keys,
    });
    for (label, options) in [
        (EMBEDDED_ON_WASMTIME, vec![]),
        (
            EMBEDDED_ON_WASMTIME_TABLE_RESIDENT,
            vec!["-O", TABLE_KEEP_RESIDENT],
        ),
    ] {
        rows.push(Row {
            label,
            rates: wasmtime_serve(&embedded, &args.models, &options)
                .and_then(|peer| measure(runtime, args, peer, None, None)),
        });
    }
    let component = hello.to_string_lossy().into_owned();
    for (label, extra) in [
        (
            "hello world on Ember, metering on",
            vec!["--component", &component],
        ),
        (
            "hello world on Ember, metering off",
            vec!["--component", &component, "--no-metering"],
        ),
        (
            "hello world on Ember, --instance-reuse 1",
            vec!["--component", &component, "--instance-reuse", "1"],
        ),
    ] {
        rows.push(Row {
            label,
            rates: ember(args, &extra)
                .and_then(|peer| measure(runtime, args, peer, Some("/"), None)),
        });
    }
    rows.push(Row {
        label: HELLO_ON_WASMTIME,
        rates: wasmtime_serve(&hello, &args.models, &[])
            .and_then(|peer| measure(runtime, args, peer, Some("/"), None)),
    });
    rows.push(Row {
        label: "Ember's own route /-/health (no wasm)",
        rates: ember(args, &[])
            .and_then(|peer| measure(runtime, args, peer, Some("/-/health"), None)),
    });
    print_table(&rows);
    print_ratios(&rows);
    Ok(())
}

/// A server the table measures, stopped when dropped.
pub(super) struct Peer {
    child: Child,
    /// Where it listens, `host:port`.
    pub(super) address: String,
}

impl Drop for Peer {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// Requests per second at each of [`CONCURRENCY`] against `peer` (`path` instead of credit-risk's
/// `/predict`, for the hello world and the host's floor; with an API key when given), after a
/// short warm-up.
fn measure(
    runtime: &tokio::runtime::Runtime,
    args: &BenchArgs,
    peer: Peer,
    path: Option<&str>,
    key: Option<String>,
) -> Result<[f64; 2], String> {
    let probe = predict_probe(args, &peer, path, key)?;
    load(runtime, &probe, 8, 0.5)?;
    let rates = [
        rate(load(runtime, &probe, CONCURRENCY[0], args.seconds)?),
        rate(load(runtime, &probe, CONCURRENCY[1], args.seconds)?),
    ];
    drop(peer);
    Ok(rates)
}

/// The probe of `peer`: credit-risk's reference request on `/predict` (or `path`), with `key`.
fn predict_probe(
    args: &BenchArgs,
    peer: &Peer,
    path: Option<&str>,
    key: Option<String>,
) -> Result<Probe, String> {
    let mut probe = probe(&args.models, &peer.address, MODELS[0]).map_err(|e| e.to_string())?;
    probe.path = path.unwrap_or("/predict").to_string();
    probe.authorization = key.map(|key| format!("Bearer {key}"));
    Ok(probe)
}

/// Requests answered and the time taken by `concurrency` workers over `seconds`.
fn load(
    runtime: &tokio::runtime::Runtime,
    probe: &Probe,
    concurrency: usize,
    seconds: f64,
) -> Result<(usize, Duration), String> {
    let (samples, elapsed) = runtime
        .block_on(client::load(
            probe,
            concurrency,
            Duration::from_secs_f64(seconds),
            usize::MAX,
        ))
        .map_err(|e| format!("load failed: {e:#}"))?;
    Ok((samples.len(), elapsed))
}

fn rate((requests, elapsed): (usize, Duration)) -> f64 {
    requests as f64 / elapsed.as_secs_f64()
}

/// What API keys and a rate limit cost: `ember up` without and with `--auth keys`, both serving
/// at once and loaded in alternating slices (the order flipped each time), so the machine's drift
/// over minutes falls on both alike. Requests/s at each concurrency, [without, with].
fn keys_ab(runtime: &tokio::runtime::Runtime, args: &BenchArgs) -> Result<[[f64; 2]; 2], String> {
    let key = bench_key()?;
    let plain = ember(args, &["--preload"])?;
    let keyed = ember(args, &["--preload", "--auth", "keys"])?;
    let probes = [
        predict_probe(args, &plain, None, None)?,
        predict_probe(args, &keyed, None, Some(key))?,
    ];
    for probe in &probes {
        load(runtime, probe, 8, 0.5)?;
    }
    let slice = args.seconds / f64::from(AB_SLICES);
    let mut rates = [[0.0; 2]; 2];
    for (column, concurrency) in CONCURRENCY.into_iter().enumerate() {
        let mut totals = [(0, Duration::ZERO); 2];
        for round in 0..AB_SLICES {
            for turn in 0..2 {
                let which = (turn + round as usize) % 2;
                let (requests, elapsed) = load(runtime, &probes[which], concurrency, slice)?;
                totals[which].0 += requests;
                totals[which].1 += elapsed;
            }
        }
        for (which, total) in totals.into_iter().enumerate() {
            rates[which][column] = rate(total);
        }
    }
    Ok(rates)
}

/// A key in the bench's ledger whose rate limit every request checks and none reaches.
fn bench_key() -> Result<String, String> {
    let conn = store::open(&bench_ledger()).map_err(|e| format!("{e:#}"))?;
    let limits = Limits {
        rate: Some(1e9),
        burst: Some(u32::MAX),
        budget: None,
    };
    let name = format!("bench-{}", std::process::id());
    let key = store::create(&conn, &name, None, &limits).map_err(|e| format!("{e:#}"))?;
    Ok(key.secret)
}

fn ember(args: &BenchArgs, extra: &[&str]) -> Result<Peer, String> {
    let (child, address) = spawn_server(&args.cache_dir, extra).map_err(|e| format!("{e:#}"))?;
    Ok(Peer { child, address })
}

/// The seed's server from the peers' virtual environment (scripts/peers/setup), serving `model`
/// `version`; ready once it answers `ready_body` with a 2xx.
pub(super) fn flask(
    models: &Path,
    model: &str,
    version: &str,
    ready_body: &Bytes,
) -> Result<Peer, String> {
    let venv = std::env::var_os("EMBER_PEERS_VENV")
        .map(PathBuf::from)
        .or_else(|| {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
            Some(cache.join("ember/peers-venv"))
        })
        .ok_or("no HOME to find the peers in")?;
    let gunicorn = venv.join("bin/gunicorn");
    if !gunicorn.is_file() {
        return Err(format!(
            "skipped: {} is missing (run scripts/peers/setup)",
            gunicorn.display()
        ));
    }
    let address = free_address()?;
    let models = std::fs::canonicalize(models).map_err(|e| format!("{}: {e}", models.display()))?;
    let child = Command::new(gunicorn)
        .args(["-w", "2", "-b", &address, "--chdir", "scripts/peers"])
        .args(["--log-level", "warning", "flask_seed:app"])
        .env("EMBER_MODELS", models)
        .env("EMBER_MODEL", model)
        .env("EMBER_MODEL_VERSION", version)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("gunicorn: {e}"))?;
    let peer = Peer { child, address };
    wait_until_serving(&peer, ready_body)?;
    Ok(peer)
}

/// Upstream `wasmtime serve` (tests/wasmtime-serve, built beside `ember`) serving `component`
/// with the models mounted as on Spin, and wasmtime's `options`.
fn wasmtime_serve(component: &Path, models: &Path, options: &[&str]) -> Result<Peer, String> {
    let binary = std::env::current_exe()
        .map_err(|e| e.to_string())?
        .with_file_name("wasmtime-serve");
    if !binary.is_file() {
        return Err(format!(
            "skipped: {} is missing (cargo build --release builds it)",
            binary.display()
        ));
    }
    if !component.is_file() {
        return Err(format!(
            "skipped: {} is missing (ember preinit writes it)",
            component.display()
        ));
    }
    let (mut child, logged) = spawn_wasmtime_serve(&binary, component, models, options)
        .map_err(|e| format!("wasmtime serve: {e}"))?;
    let started = Instant::now();
    loop {
        let text = logged.lock().unwrap().clone();
        if let Some(address) = serving_address(&text) {
            return Ok(Peer { child, address });
        }
        if started.elapsed() > START_DEADLINE || child.try_wait().ok().flatten().is_some() {
            stop(&mut child);
            return Err(format!("wasmtime serve did not start: {text}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A loopback address no one listens on right now.
fn free_address() -> Result<String, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(listener
        .local_addr()
        .map_err(|e| e.to_string())?
        .to_string())
}

/// Waits until `peer` answers `body` (its workers have loaded the model).
fn wait_until_serving(peer: &Peer, body: &Bytes) -> Result<(), String> {
    let started = Instant::now();
    let probe = Probe {
        address: peer.address.clone(),
        path: "/predict".into(),
        body: body.clone(),
        authorization: None,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    while runtime.block_on(client::once(&probe)).is_err() {
        if started.elapsed() > START_DEADLINE {
            return Err(format!("{} did not start serving", peer.address));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

fn print_table(rows: &[Row]) {
    let mut table = comfy_table::Table::new();
    table
        .load_preset(comfy_table::presets::NOTHING)
        .set_header(["server", "c=1", "c=32"]);
    for row in rows {
        let cells = match &row.rates {
            Ok(rates) => rates.map(|r| format!("{r:.0}")).to_vec(),
            Err(why) => vec![why.clone(), String::new()],
        };
        table.add_row([vec![row.label.to_string()], cells].concat());
    }
    for column in 1..3 {
        if let Some(column) = table.column_mut(column) {
            column.set_cell_alignment(comfy_table::CellAlignment::Right);
        }
    }
    println!("{table}");
}

/// The targets of the fast path, as ratios of rows of this run.
fn print_ratios(rows: &[Row]) {
    let rate = |label: &str, c: usize| {
        rows.iter()
            .find(|r| r.label == label)
            .and_then(|r| r.rates.as_ref().ok())
            .map(|rates| rates[c])
    };
    let ratio = |what: &str, a: (&str, usize), b: (&str, usize), target: &str| match (
        rate(a.0, a.1),
        rate(b.0, b.1),
    ) {
        (Some(x), Some(y)) => println!("{what}: {:.2}x (target {target})", x / y),
        _ => println!("{what}: not measured (a row above was skipped)"),
    };
    ratio(
        "Ember / Flask at c=32",
        (METERING_ON, 1),
        (SEED, 1),
        "≥ 10x",
    );
    ratio("Ember / Flask at c=1", (METERING_ON, 0), (SEED, 0), "≥ 3x");
    ratio(
        "metering on / off at c=32",
        (METERING_ON, 1),
        (METERING_OFF, 1),
        "≥ 0.95",
    );
    ratio(
        "auth + rate limit on / off at c=32 (A/B)",
        (KEYS_ON, 1),
        (KEYS_OFF, 1),
        "≥ 0.97",
    );
    ratio(
        "instance reuse / fresh instance per request at c=32",
        (METERING_ON, 1),
        (FRESH, 1),
        "—",
    );
    ratio(
        "embedded / hello world on wasmtime serve at c=32",
        (EMBEDDED_ON_WASMTIME, 1),
        (HELLO_ON_WASMTIME, 1),
        "≥ 0.70",
    );
    ratio(
        "  the same with the function table kept resident",
        (EMBEDDED_ON_WASMTIME_TABLE_RESIDENT, 1),
        (HELLO_ON_WASMTIME, 1),
        "—",
    );
}
