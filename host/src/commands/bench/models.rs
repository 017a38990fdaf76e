//! Real models: EfficientNet-Lite0 (ImageNet; fp32 and int8 weights) and MiniLM sentence
//! embeddings (int8), each against its native floor on both backends (the function's own
//! preprocessing run natively, so the floor sees the tensors Ember's graph does), Ember end to end
//! at c=1 and c=8, and the seed's Flask + onnxruntime server on EfficientNet-Lite0.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use wasmtime_wasi_nn::backend::NamedTensor;

use super::client::{self, Probe};
use super::peers::flask;
use super::{reference_case, spawn_server, stop, time_interleaved, BenchArgs};
use crate::nn::ort::OrtBackend;
use crate::nn::tract::TractBackend;
use crate::nn::GraphLoader;
use ember_function::app::predict;
use ember_function::catalog::{Catalog as _, DirCatalog};
use ember_function::spec::ModelSpec;
use ember_function::tensor::Tensor;
use ember_function::text;

/// The versions measured, with how many native runs each backend gets (tract is far slower), run
/// interleaved ([`time_interleaved`]).
const VERSIONS: [(&str, &str, usize, usize); 3] = [
    ("efficientnet-lite0", "1", 200, 10),
    ("efficientnet-lite0", "2", 200, 10),
    ("minilm", "1", 500, 50),
];

/// Requests per end-to-end latency measurement.
const E2E_REQUESTS: usize = 100;

/// One measured version.
struct Measured {
    name: String,
    ort_p50_us: Option<f64>,
    tract_p50_us: f64,
    e2e_p50_us: f64,
    c8_rate: f64,
}

/// Prints the real-model table and its ratios.
pub fn run(
    runtime: &tokio::runtime::Runtime,
    args: &BenchArgs,
    ort: Option<&OrtBackend>,
) -> anyhow::Result<()> {
    println!(
        "\n## Real models: native floor (µs, p50, batch 1), Ember end to end over loopback HTTP \
         (µs p50 at c=1; requests/s at c=8, {:.0} s)",
        args.seconds
    );
    println!(
        "{:<22} {:>10} {:>11} {:>10} {:>9} {:>9} {:>10}",
        "model", "ORT p50", "tract p50", "tract/ORT", "e2e p50", "e2e/ORT", "c=8 req/s"
    );
    let (mut server, address) = spawn_server(&args.cache_dir, &["--preload"])?;
    let measured = VERSIONS
        .iter()
        .map(|&(model, version, ort_runs, tract_runs)| {
            let inputs = native_inputs(&args.models, model, version)?;
            let dir = args.models.join(model).join(version);
            let mut backends: Vec<(&dyn GraphLoader, usize)> = vec![(&TractBackend, tract_runs)];
            backends.extend(ort.map(|ort| (ort as &dyn GraphLoader, ort_runs)));
            let samples = time_interleaved(&backends, &dir, &inputs)?;
            let tract_p50_us = samples[0].p50_us();
            let ort_p50_us = samples.get(1).map(|s| s.p50_us());
            let probe = probe(args, &address, model, version)?;
            let (e2e_p50_us, c8_rate) = end_to_end(runtime, &probe, args.seconds)?;
            let row = Measured {
                name: format!("{model} v{version}"),
                ort_p50_us,
                tract_p50_us,
                e2e_p50_us,
                c8_rate,
            };
            print_row(&row);
            Ok(row)
        })
        .collect::<anyhow::Result<Vec<_>>>();
    stop(&mut server);
    let measured = measured?;

    let photo = probe_body(args, "efficientnet-lite0", "1")?;
    let seed = flask(&args.models, "efficientnet-lite0", "1", &photo).and_then(|peer| {
        let probe = Probe {
            address: peer.address.clone(),
            path: "/predict".into(),
            body: photo.clone(),
            authorization: None,
        };
        let rates = end_to_end(runtime, &probe, args.seconds).map_err(|e| e.to_string());
        drop(peer);
        rates
    });
    match &seed {
        Ok((p50, rate)) => println!(
            "{:<22} {:>10} {:>11} {:>10} {:>9.0} {:>9} {:>10.1}",
            "Flask seed, effnet v1", "", "", "", p50, "", rate
        ),
        Err(why) => println!("Flask seed, effnet v1: {why}"),
    }

    let effnet = &measured[0];
    if let Some(floor) = effnet.ort_p50_us {
        println!(
            "efficientnet-lite0 e2e p50 / native ORT floor at c=1: {:.2}x (target ≤ 1.1x)",
            effnet.e2e_p50_us / floor
        );
    }
    match &seed {
        Ok((_, rate)) => println!(
            "efficientnet-lite0 Ember / Flask at c=8: {:.2}x (target ≥ 1.0x)",
            effnet.c8_rate / rate
        ),
        Err(_) => println!("efficientnet-lite0 Ember / Flask at c=8: not measured (Flask skipped)"),
    }
    let minilm = &measured[2];
    if let Some(floor) = minilm.ort_p50_us {
        println!(
            "minilm int8 tract / ORT: {:.1}x faster on ONNX Runtime (target ≥ 5x)",
            minilm.tract_p50_us / floor
        );
    }
    Ok(())
}

fn print_row(row: &Measured) {
    let ort = |f: &dyn Fn(f64) -> String| row.ort_p50_us.map(f).unwrap_or_else(|| "—".into());
    println!(
        "{:<22} {:>10} {:>11.0} {:>10} {:>9.0} {:>9} {:>10.1}",
        row.name,
        ort(&|p| format!("{p:.0}")),
        row.tract_p50_us,
        ort(&|p| format!("{:.1}x", row.tract_p50_us / p)),
        row.e2e_p50_us,
        ort(&|p| format!("{:.2}x", row.e2e_p50_us / p)),
        row.c8_rate
    );
}

/// p50 at c=1 (after a warm-up) and requests/s at c=8.
fn end_to_end(
    runtime: &tokio::runtime::Runtime,
    probe: &Probe,
    seconds: f64,
) -> anyhow::Result<(f64, f64)> {
    runtime.block_on(client::load(probe, 1, Duration::from_secs(30), 10))?;
    let (latency, _) = runtime.block_on(client::load(
        probe,
        1,
        Duration::from_secs(30),
        E2E_REQUESTS,
    ))?;
    let (samples, elapsed) = runtime.block_on(client::load(
        probe,
        8,
        Duration::from_secs_f64(seconds),
        usize::MAX,
    ))?;
    Ok((
        latency.p50_us(),
        samples.len() as f64 / elapsed.as_secs_f64(),
    ))
}

/// The first reference case's request body of `model` `version`.
fn probe_body(args: &BenchArgs, model: &str, version: &str) -> anyhow::Result<Bytes> {
    let case = reference_case(&args.models, model, version)?;
    Ok(Bytes::from(serde_json::to_vec(&case.request)?))
}

fn probe(args: &BenchArgs, address: &str, model: &str, version: &str) -> anyhow::Result<Probe> {
    Ok(Probe {
        address: address.to_string(),
        path: format!("/models/{model}/versions/{version}/predict"),
        body: probe_body(args, model, version)?,
        authorization: None,
    })
}

/// The graph inputs of the first reference case, made by the function's own preprocessing
/// (decode, resize, crop, normalize; or tokenize) run natively.
fn native_inputs(models: &Path, model: &str, version: &str) -> anyhow::Result<Vec<NamedTensor>> {
    let catalog = DirCatalog::new(models);
    let spec: ModelSpec = catalog
        .read_spec(model, version)
        .map_err(|e| anyhow::anyhow!("{model} v{version}: {}", e.message))?;
    let case = reference_case(models, model, version)?;
    let tensors: Vec<Tensor> = match &spec.text {
        Some(text_spec) => {
            let encoder = catalog
                .text_encoder(&spec)
                .map_err(|e| anyhow::anyhow!("{}", e.message))?;
            let texts =
                text::predict_texts(&case.request).map_err(|e| anyhow::anyhow!("{}", e.message))?;
            text::to_tensors(text_spec, &encoder, &texts[0])
                .map_err(|e| anyhow::anyhow!("{}", e.message))?
                .inputs
        }
        None => vec![
            predict::prepare(&spec, &case.request)
                .map_err(|e| anyhow::anyhow!("{}", e.message))?
                .input,
        ],
    };
    tensors.iter().map(named_tensor).collect()
}

/// A function tensor as wasi-nn carries it.
fn named_tensor(tensor: &Tensor) -> anyhow::Result<NamedTensor> {
    use ember_function::tensor::DataType;
    use wasmtime_wasi_nn::wit::TensorType;
    let ty = match tensor.data.datatype() {
        DataType::Fp32 => TensorType::Fp32,
        DataType::Int64 => TensorType::I64,
        other => anyhow::bail!("no wasi-nn tensor type for {}", other.as_str()),
    };
    let dims = tensor.shape.iter().map(|d| *d as u32).collect();
    Ok(NamedTensor {
        name: tensor.name.clone(),
        tensor: wasmtime_wasi_nn::Tensor::new(dims, ty, tensor.data.to_le_bytes()),
    })
}
