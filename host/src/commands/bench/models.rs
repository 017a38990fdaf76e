//! Real models: EfficientNet-Lite0 (ImageNet; fp32 and int8 weights) and MiniLM sentence
//! embeddings (int8), each against its native floor on both backends (the function's own
//! preprocessing run natively, so the floor sees the tensors Ember's graph does), Ember end to end
//! at c=1 and c=8, and the seed's Flask + onnxruntime server on EfficientNet-Lite0.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use wasmtime_wasi_nn::backend::NamedTensor;

use super::client::{self, Probe};
use super::peers::flask;
use super::{
    reference_case, spawn_server, stop, time_interleaved, warm_latency, BenchArgs, ROUNDS,
};
use crate::nn::ort::OrtBackend;
use crate::nn::tract::TractBackend;
use crate::nn::GraphLoader;
use crate::stats::Samples;
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

/// Requests per end-to-end latency measurement at c=1.
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
    let photo = probe_body(args, "efficientnet-lite0", "1")?;
    let phone = phone_photo(&photo)?;
    let phone_on_ember = Probe {
        body: phone.clone(),
        ..probe(args, &address, "efficientnet-lite0", "1")?
    };
    let measured = VERSIONS
        .iter()
        .map(|&(model, version, ort_runs, tract_runs)| {
            let inputs = native_inputs(&args.models, model, version)?;
            let dir = args.models.join(model).join(version);
            let mut backends: Vec<(&dyn GraphLoader, usize)> = vec![(&TractBackend, tract_runs)];
            backends.extend(ort.map(|ort| (ort as &dyn GraphLoader, ort_runs)));
            let probe = probe(args, &address, model, version)?;
            // End to end at c=1 in the same rounds as the native floors: its ratio to the floor
            // compares requests and runs made under the same load.
            let mut e2e = Samples::default();
            let samples = time_interleaved(&backends, &dir, &inputs, |warming_up| {
                let requests = E2E_REQUESTS.div_ceil(ROUNDS);
                let (round, _) =
                    runtime.block_on(client::load(&probe, 1, Duration::from_secs(30), requests))?;
                if !warming_up {
                    e2e.extend(round);
                }
                Ok(())
            })?;
            let tract_p50_us = samples[0].p50_us();
            let ort_p50_us = samples.get(1).map(|s| s.p50_us());
            let e2e_p50_us = e2e.p50_us();
            let c8_rate = throughput(runtime, &probe, args.seconds)?;
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
    let phone_p50_us =
        warm_latency(runtime, &phone_on_ember, WARM_UP, PHONE_REQUESTS).map(|s| s.p50_us());
    stop(&mut server);
    let measured = measured?;
    let phone_p50_us = phone_p50_us?;

    let seed = flask(&args.models, "efficientnet-lite0", "1", &photo).and_then(|peer| {
        let probe = Probe {
            address: peer.address.clone(),
            path: "/predict".into(),
            body: photo.clone(),
            authorization: None,
        };
        let rates = (|| {
            let p50 = warm_latency(runtime, &probe, WARM_UP, E2E_REQUESTS)?.p50_us();
            let rate = throughput(runtime, &probe, args.seconds)?;
            let phone = Probe {
                body: phone.clone(),
                ..probe.clone()
            };
            let phone_p50 = warm_latency(runtime, &phone, WARM_UP, PHONE_REQUESTS)?.p50_us();
            anyhow::Ok(((p50, rate), phone_p50))
        })();
        drop(peer);
        rates.map_err(|e| e.to_string())
    });
    match &seed {
        Ok(((p50, rate), _)) => println!(
            "{:<22} {:>10} {:>11} {:>10} {:>9.0} {:>9} {:>10.1}",
            "Flask seed, effnet v1", "", "", "", p50, "", rate
        ),
        Err(why) => println!("Flask seed, effnet v1: {why}"),
    }
    let phone_on_flask = seed.as_ref().ok().map(|(_, p50)| *p50);
    println!(
        "phone-sized photo ({}x{} JPEG, {:.1} MB request), p50 at c=1: Ember {:.1} ms, \
         Flask seed {}",
        PHONE_SIZE.0,
        PHONE_SIZE.1,
        phone.len() as f64 / 1e6,
        phone_p50_us / 1e3,
        phone_on_flask.map_or("skipped".into(), |p50| format!("{:.1} ms", p50 / 1e3)),
    );

    let effnet = &measured[0];
    if let Some(floor) = effnet.ort_p50_us {
        println!(
            "efficientnet-lite0 e2e p50 / native ORT floor at c=1: {:.2}x (target ≤ 1.1x)",
            effnet.e2e_p50_us / floor
        );
    }
    match &seed {
        Ok(((_, rate), phone_p50)) => {
            println!(
                "efficientnet-lite0 Ember / Flask at c=8: {:.2}x (target ≥ 1.0x)",
                effnet.c8_rate / rate
            );
            println!(
                "efficientnet-lite0 phone-sized photo, Flask / Ember p50 at c=1: {:.2}x",
                phone_p50 / phone_p50_us
            );
        }
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

/// The phone-sized photo's width and height: a 12-megapixel camera's width, the reference
/// photo's 3:2.
const PHONE_SIZE: (u32, u32) = (4032, 2688);

/// Requests that warm a server up before a latency measurement of the large models (each takes
/// milliseconds; the fast path's 200 would take seconds).
const WARM_UP: usize = 3;

/// Requests per phone-sized photo latency measurement (each a megabyte, tens of milliseconds).
const PHONE_REQUESTS: usize = 20;

/// The photo request's image enlarged to a phone camera's size, as a JPEG request body: what a
/// client that does not resize before uploading sends.
fn phone_photo(photo: &Bytes) -> anyhow::Result<Bytes> {
    use base64::Engine as _;
    let request: serde_json::Value = serde_json::from_slice(photo)?;
    let base64 = base64::engine::general_purpose::STANDARD;
    let jpeg = base64.decode(
        request["image"]
            .as_str()
            .context("no image in the photo case")?,
    )?;
    let small = image::load_from_memory(&jpeg)?.to_rgb8();
    let large = image::imageops::resize(
        &small,
        PHONE_SIZE.0,
        PHONE_SIZE.1,
        image::imageops::Triangle,
    );
    let mut encoded = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut encoded, 90).encode_image(&large)?;
    let body = serde_json::json!({ "image": base64.encode(&encoded) });
    Ok(Bytes::from(serde_json::to_vec(&body)?))
}

/// Requests/s at c=8 for `seconds`.
fn throughput(
    runtime: &tokio::runtime::Runtime,
    probe: &Probe,
    seconds: f64,
) -> anyhow::Result<f64> {
    let (samples, elapsed) = runtime.block_on(client::load(
        probe,
        8,
        Duration::from_secs_f64(seconds),
        usize::MAX,
    ))?;
    Ok(samples.len() as f64 / elapsed.as_secs_f64())
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
        tensor: wasmtime_wasi_nn::Tensor::new(dims, ty, tensor.data.as_le_bytes().to_vec()),
    })
}
