//! The core against the bundled models: their specs are valid, and preprocessing builds exactly the
//! tensors that the reference cases fed to onnxruntime.

use ember_contract::reference::{Case, Reference};
use ember_function::catalog::{Catalog, DirCatalog};
use ember_function::routing::Pick;
use ember_function::spec::{Channels, ModelSpec, VisionSpec};
use ember_function::tensor::TensorData;
use ember_function::{tabular, vision};

fn models_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models")
}

fn cases(model: &str) -> Vec<Case> {
    Reference::read(&models_dir(), model, "1").unwrap().cases
}

fn expected_input(case: &Case) -> Vec<f32> {
    case.inputs[0].data.clone()
}

fn spec(model: &str) -> ModelSpec {
    DirCatalog::new(models_dir())
        .spec(model, None, Pick::default())
        .unwrap()
}

#[test]
fn the_catalog_lists_every_bundled_model_and_its_specs_check() {
    let catalog = DirCatalog::new(models_dir());
    let names: Vec<String> = catalog.models().into_iter().map(|m| m.name).collect();
    assert_eq!(
        names,
        ["credit-risk", "digits", "efficientnet-lite0", "minilm"]
    );
    for name in names {
        let spec = catalog.spec(&name, None, Pick::default()).unwrap();
        assert_eq!(spec.name, name);
        // Unversioned requests go to `stable` (routing.json), which is version 1 for each.
        assert_eq!(spec.model_version().to_string(), format!("{name}/1"));
    }
}

#[test]
fn every_model_json_is_its_model_toml_without_the_baseline() {
    for (model, version) in [
        ("credit-risk", "1"),
        ("credit-risk", "2"),
        ("credit-risk", "3"),
        ("digits", "1"),
        ("efficientnet-lite0", "1"),
        ("efficientnet-lite0", "2"),
        ("minilm", "1"),
    ] {
        let dir = models_dir().join(model).join(version);
        let toml_text = std::fs::read_to_string(dir.join("model.toml")).unwrap();
        let from_toml = ModelSpec::from_toml(&toml_text).unwrap();
        let from_json =
            ModelSpec::from_json(&std::fs::read(dir.join("model.json")).unwrap()).unwrap();
        assert_eq!(
            serde_json::to_value(&from_toml).unwrap(),
            serde_json::to_value(&from_json).unwrap(),
            "{model}: model.json is stale; run scripts/make-models"
        );
    }
}

#[test]
fn tabular_preprocessing_builds_the_reference_rows_exactly() {
    let spec = spec("credit-risk");
    let tabular = spec.tabular.as_ref().unwrap();
    for case in cases("credit-risk") {
        let tensor = tabular::to_tensor(tabular, &case.request).unwrap();
        assert_eq!(tensor.shape, vec![1, 7]);
        assert_eq!(
            tensor.data,
            TensorData::F32(expected_input(&case)),
            "{}",
            case.name
        );
    }
}

#[test]
fn vision_preprocessing_builds_the_reference_tensors() {
    let spec = spec("digits");
    let vision = spec.vision.as_ref().unwrap();
    for case in cases("digits") {
        let tensor = vision::to_tensor(vision, &case.request).unwrap();
        assert_eq!(tensor.shape, vec![1, 1, 8, 8]);
        let TensorData::F32(actual) = tensor.data else {
            panic!("FP32 expected")
        };
        for (a, e) in actual.iter().zip(expected_input(&case)) {
            assert!((a - e).abs() < 1e-6, "{}: {a} vs {e}", case.name);
        }
    }
}

#[test]
fn unknown_names_versions_and_traversal_are_404() {
    let catalog = DirCatalog::new(models_dir());
    for (name, version, field) in [
        ("nope", None, "model"),
        ("../models", None, "model"),
        ("credit-risk", Some("9"), "version"),
        ("credit-risk", Some("01"), "version"),
        ("credit-risk", Some("../1"), "version"),
        ("credit-risk", Some("nightly"), "version"),
    ] {
        let error = catalog.spec(name, version, Pick::default()).unwrap_err();
        assert_eq!(error.status(), 404, "{name} {version:?}");
        assert_eq!(error.field.as_deref(), Some(field));
    }
}

#[test]
fn a_spec_with_mismatched_labels_is_refused() {
    let text = std::fs::read_to_string(models_dir().join("digits/1/model.toml")).unwrap();
    let broken = text.replace("\"9\",", "");
    assert!(ModelSpec::from_toml(&broken)
        .unwrap_err()
        .contains("labels"));
}

/// A base64 PNG of a `width` x `height` RGB image whose red channel is `x % 256` and green `y`.
fn coordinate_png(width: u32, height: u32) -> String {
    use base64::Engine as _;
    let image = image::RgbImage::from_fn(width, height, |x, y| image::Rgb([x as u8, y as u8, 0]));
    let mut png = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    base64::engine::general_purpose::STANDARD.encode(png)
}

#[test]
fn imagenet_preprocessing_crops_the_centre_of_an_image_whose_shorter_side_fits() {
    let spec = spec("efficientnet-lite0");
    let vision = spec.vision.as_ref().unwrap();
    assert_eq!((vision.shorter_side, vision.width), (Some(256), 224));
    // 300 x 256: no resize; the crop starts at x = (300 - 224) / 2 = 38, y = (256 - 224) / 2 = 16.
    let body = serde_json::json!({ "image": coordinate_png(300, 256) });
    let tensor = vision::to_tensor(vision, &body).unwrap();
    assert_eq!(tensor.shape, vec![1, 3, 224, 224]);
    let TensorData::F32(data) = tensor.data else {
        panic!("FP32 expected")
    };
    let pixel = |channel: usize, y: usize, x: usize| {
        let v = data[channel * 224 * 224 + y * 224 + x];
        ((v * vision.std[channel] + vision.mean[channel]) * 255.0).round() as u32
    };
    assert_eq!((pixel(0, 0, 0), pixel(1, 0, 0)), (38, 16));
    assert_eq!(
        (pixel(0, 223, 223), pixel(1, 223, 223)),
        ((38 + 223) % 256, 16 + 223)
    );
    assert_eq!(pixel(2, 100, 100), 0);
}

#[test]
fn imagenet_preprocessing_resizes_any_shape_to_the_model_input() {
    let spec = spec("efficientnet-lite0");
    let vision = spec.vision.as_ref().unwrap();
    for (w, h) in [(451, 300), (300, 451), (224, 224), (1000, 257), (64, 48)] {
        let body = serde_json::json!({ "image": coordinate_png(w, h) });
        let tensor = vision::to_tensor(vision, &body).unwrap();
        assert_eq!(tensor.shape, vec![1, 3, 224, 224], "{w}x{h}");
    }
}

#[test]
fn top_k_defaults_to_the_model_s_and_is_checked_against_the_labels() {
    let spec = spec("efficientnet-lite0");
    let vision = spec.vision.as_ref().unwrap();
    let image = "";
    let top_k = |k: serde_json::Value| {
        vision::top_k(
            vision,
            1000,
            &serde_json::json!({ "image": image, "top_k": k }),
        )
    };
    assert_eq!(
        vision::top_k(vision, 1000, &serde_json::json!({ "image": image })).unwrap(),
        5
    );
    assert_eq!(top_k(serde_json::json!(1000)).unwrap(), 1000);
    for (bad, code) in [
        (serde_json::json!(0), "out_of_range"),
        (serde_json::json!(1001), "out_of_range"),
        (serde_json::json!(-3), "out_of_range"),
        (serde_json::json!(2.5), "not_an_integer"),
        (serde_json::json!("3"), "wrong_type"),
    ] {
        let error = top_k(bad.clone()).unwrap_err();
        assert_eq!(error.status(), 422, "{bad}");
        assert_eq!(error.code.to_string(), code, "{bad}");
        assert_eq!(error.field.as_deref(), Some("top_k"));
    }
}

#[test]
fn the_in_function_tokenizer_gives_hugging_face_s_ids() {
    // reference.json holds the ids Python's `tokenizers` gave for each text: accents, CJK, emoji,
    // punctuation, empty, and a long text truncated at the model's 256 tokens.
    let catalog = DirCatalog::new(models_dir());
    let spec = catalog.spec("minilm", None, Pick::default()).unwrap();
    let encoder = catalog.read_text_encoder(&spec).unwrap();
    let path = models_dir().join("minilm/1/reference.json");
    let reference: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let cases = reference["cases"].as_array().unwrap();
    assert!(cases.len() >= 10);
    for case in cases {
        let text = case["request"]["text"].as_str().unwrap();
        let expected: Vec<u32> = case["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|id| id.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(encoder.ids(text).unwrap(), expected, "{}", case["name"]);
    }
    let long = cases.iter().find(|c| c["name"] == "long").unwrap();
    assert_eq!(long["ids"].as_array().unwrap().len(), 256);
}

#[test]
fn text_requests_become_id_mask_and_type_tensors_of_one_text() {
    let catalog = DirCatalog::new(models_dir());
    let spec = catalog.spec("minilm", None, Pick::default()).unwrap();
    let encoder = catalog.read_text_encoder(&spec).unwrap();
    let inputs =
        ember_function::text::to_tensors(spec.text.as_ref().unwrap(), &encoder, "hello world")
            .unwrap();
    assert_eq!(inputs.tokens, 4); // [CLS] hello world [SEP]
    let names: Vec<&str> = inputs.inputs.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["input_ids", "attention_mask", "token_type_ids"]);
    assert_eq!(inputs.inputs[1].data, TensorData::I64(vec![1; 4]));
    assert_eq!(inputs.inputs[2].data, TensorData::I64(vec![0; 4]));
    assert!(inputs.inputs.iter().all(|t| t.shape == [1, 4]));
}

#[test]
fn an_image_may_come_as_a_base64_data_url() {
    let spec = spec("efficientnet-lite0");
    let vision = spec.vision.as_ref().unwrap();
    let png = coordinate_png(300, 256);
    let plain = vision::to_tensor(vision, &serde_json::json!({ "image": png })).unwrap();
    let url = format!("data:image/png;base64,{png}");
    let from_url = vision::to_tensor(vision, &serde_json::json!({ "image": url })).unwrap();
    assert_eq!(from_url.data, plain.data);
    for not_base64 in [format!("data:image/png,{png}"), format!("x;base64,{png}")] {
        let error = vision::to_tensor(vision, &serde_json::json!({ "image": not_base64 }));
        let error = error.unwrap_err();
        assert_eq!(
            (error.status(), error.field.as_deref()),
            (422, Some("image"))
        );
        assert!(
            error.message.contains("not valid base64"),
            "{}",
            error.message
        );
    }
}

/// A spec that stretches the image to `width` x `height`; its tensor is each channel's `pixel / 255`.
fn unit_spec(width: u32, height: u32) -> VisionSpec {
    VisionSpec {
        input: "input".into(),
        width,
        height,
        shorter_side: None,
        channels: Channels::Rgb,
        invert: false,
        mean: vec![0.0; 3],
        std: vec![1.0; 3],
        top_k: 1,
    }
}

#[test]
fn a_cmyk_jpeg_is_converted_to_rgb() {
    // fixtures/cmyk-gradient.jpg: Pillow saved a 96 x 64 RGB image, red = x * 255 / 95 and
    // green = y * 255 / 63, as an Adobe CMYK JPEG (quality 95).
    let image = fixture_base64("cmyk-gradient.jpg");
    let spec = unit_spec(96, 64);
    let tensor = vision::to_tensor(&spec, &serde_json::json!({ "image": image })).unwrap();
    let TensorData::F32(data) = tensor.data else {
        panic!("FP32 expected")
    };
    let plane = 96 * 64;
    for (y, x) in (0..64).flat_map(|y| (0..96).map(move |x| (y, x))) {
        let at = |channel: usize| (data[channel * plane + y * 96 + x] * 255.0).round() as i32;
        let (red, green) = ((x * 255 / 95) as i32, (y * 255 / 63) as i32);
        assert!(
            (at(0) - red).abs() <= 6 && (at(1) - green).abs() <= 6,
            "({x}, {y}): {:?} vs ({red}, {green})",
            (at(0), at(1))
        );
    }
}

/// A fixture of `function/tests/fixtures`, base64-encoded.
fn fixture_base64(name: &str) -> String {
    use base64::Engine as _;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    base64::engine::general_purpose::STANDARD.encode(std::fs::read(path).unwrap())
}

#[test]
fn a_progressive_jpeg_decodes_and_one_declaring_a_huge_frame_is_refused_first() {
    // fixtures/progressive-16.jpg: Pillow's 16 x 16 progressive JPEG of a colour ramp.
    let spec = unit_spec(16, 16);
    let image = fixture_base64("progressive-16.jpg");
    vision::to_tensor(&spec, &serde_json::json!({ "image": image })).unwrap();

    // The same file with its frame header (SOF2) claiming 8000 x 8000: its coefficients alone
    // would take 384 MB, so it is refused before any is decoded.
    use base64::Engine as _;
    let base64 = base64::engine::general_purpose::STANDARD;
    let mut jpeg = base64.decode(&image).unwrap();
    let sof = jpeg.windows(2).position(|m| m == [0xFF, 0xC2]).unwrap();
    jpeg[sof + 5..sof + 9].copy_from_slice(&[0x1F, 0x40, 0x1F, 0x40]);
    let body = serde_json::json!({ "image": base64.encode(&jpeg) });
    let error = vision::to_tensor(&spec, &body).unwrap_err();
    assert_eq!(
        error.code,
        ember_contract::Code::ImageTooLarge,
        "{}",
        error.message
    );
    assert_eq!(error.field.as_deref(), Some("image"));
}
