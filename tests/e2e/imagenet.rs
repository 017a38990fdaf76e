//! EfficientNet-Lite0 (ImageNet, 1000 classes) on real photos: scikit-image's bundled photos as
//! JPEGs get onnxruntime's top-1 class, and their 256 x 256 centre squares (a pixel-exact crop) get
//! onnxruntime's probabilities within 1e-4; fp32 (v1) and int8 weights (v2), on ONNX Runtime and
//! on tract.

use serde_json::{json, Value};

use crate::support::{assert_close, reference_cases_in, repo_root, Server};

const MODEL: &str = "efficientnet-lite0";
const TOLERANCE: f64 = 1e-4;

#[test]
fn photos_get_onnxruntime_s_classes_on_onnx_runtime() {
    let server = Server::start(&[]);
    for version in ["1", "2"] {
        check_photos(&server, version);
    }
}

#[test]
fn photos_get_onnxruntime_s_classes_on_tract_too() {
    let server = Server::start(&["--backend", "tract"]);
    for version in ["1", "2"] {
        check_photos(&server, version);
    }
}

#[test]
fn top_k_is_the_request_s_choice_and_checked() {
    let server = Server::start(&[]);
    let case = &reference_cases_in(&repo_root().join("models"), MODEL, "1")[1];
    let mut body = case["request"].clone();
    body["top_k"] = json!(2);
    let (status, reply) = server.post_json(&format!("/models/{MODEL}/predict"), &body);
    assert_eq!(status, 200, "{reply}");
    assert_ranks_the_most_probable(&reply, 2, "top_k 2");
    assert_eq!(labels(&reply["top_k"]), labels(&case["top_k"])[..2]);

    for (top_k, code) in [
        (json!(0), "out_of_range"),
        (json!(1001), "out_of_range"),
        (json!("5"), "wrong_type"),
    ] {
        body["top_k"] = top_k.clone();
        let (status, reply) = server.post_json(&format!("/models/{MODEL}/predict"), &body);
        assert_eq!(status, 422, "{top_k}: {reply}");
        assert_eq!(reply["error"]["code"], code, "{reply}");
        assert_eq!(reply["error"]["field"], "top_k", "{reply}");
    }
}

#[test]
fn a_phone_sized_jpeg_is_decoded_at_a_reduced_scale_and_keeps_its_class() {
    use base64::Engine as _;
    let server = Server::start(&[]);
    let cases = reference_cases_in(&repo_root().join("models"), MODEL, "1");
    let case = cases.iter().find(|c| c["name"] == "coffee-photo").unwrap();
    let base64 = base64::engine::general_purpose::STANDARD;
    let jpeg = base64
        .decode(case["request"]["image"].as_str().unwrap())
        .unwrap();
    let photo = image::load_from_memory(&jpeg).unwrap().to_rgb8();
    // 8x: 3,200 x 2,400, which the function decodes at 1/4 (twice the 256-pixel target).
    let (width, height) = (photo.width() * 8, photo.height() * 8);
    let large = image::imageops::resize(&photo, width, height, image::imageops::Triangle);
    let mut encoded = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut encoded, 90)
        .encode_image(&large)
        .unwrap();
    let body = json!({ "image": base64.encode(&encoded) });
    let (status, reply) = server.post_json(&format!("/models/{MODEL}/versions/1/predict"), &body);
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        reply["label"], case["top_k"][0]["label"],
        "{width}x{height}"
    );
    let expected = case["top_k"][0]["probability"].as_f64().unwrap();
    let confidence = reply["confidence"].as_f64().unwrap();
    assert!(
        (confidence - expected).abs() < 0.05,
        "{width}x{height}: {confidence} vs {expected}"
    );
}

/// Every reference case of `version` through `/predict`: the exact cases' probabilities within
/// 1e-4 of onnxruntime's and their top 5 in its order; every photo's top-1 class onnxruntime's.
fn check_photos(server: &Server, version: &str) {
    let cases = reference_cases_in(&repo_root().join("models"), MODEL, version);
    assert_eq!(cases.len(), 10);
    for case in &cases {
        let name = format!("v{version} {}", case["name"].as_str().unwrap());
        let (status, reply) = server.post_json(
            &format!("/models/{MODEL}/versions/{version}/predict"),
            &case["request"],
        );
        assert_eq!(status, 200, "{name}: {reply}");
        assert_eq!(reply["model_version"], version);
        assert_eq!(reply["prediction"], case["prediction"], "{name}: {reply}");
        assert_eq!(reply["label"], case["top_k"][0]["label"], "{name}");
        assert_ranks_the_most_probable(&reply, 5, &name);
        if case["exact"] == true {
            assert_close(
                &reply["probabilities"],
                &case["probabilities"],
                TOLERANCE,
                &name,
            );
        }
    }
}

/// The reply's `top_k` is its `k` most probable classes, most probable first, with their labels.
fn assert_ranks_the_most_probable(reply: &Value, k: usize, name: &str) {
    let probabilities: Vec<f64> = reply["probabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_f64().unwrap())
        .collect();
    let mut sorted = probabilities.clone();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let top_k = reply["top_k"].as_array().unwrap();
    assert_eq!(top_k.len(), k, "{name}");
    for (rank, entry) in top_k.iter().enumerate() {
        let index = entry["index"].as_u64().unwrap() as usize;
        assert_eq!(entry["probability"].as_f64(), Some(sorted[rank]), "{name}");
        assert_eq!(probabilities[index], sorted[rank], "{name}");
        assert_eq!(entry["label"], reply["labels"][index], "{name}");
    }
    assert_eq!(top_k[0]["probability"], reply["confidence"], "{name}");
}

fn labels(top_k: &Value) -> Vec<String> {
    top_k
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["label"].as_str().unwrap().to_string())
        .collect()
}
