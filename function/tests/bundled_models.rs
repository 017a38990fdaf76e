//! The core against the bundled models: their specs are valid, and preprocessing builds exactly the
//! tensors that the reference cases fed to onnxruntime.

use ember_contract::reference::{Case, Reference};
use ember_function::catalog::{Catalog, DirCatalog};
use ember_function::routing::Pick;
use ember_function::spec::ModelSpec;
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
    assert_eq!(names, ["credit-risk", "digits"]);
    for name in names {
        let spec = catalog.spec(&name, None, Pick::default()).unwrap();
        assert_eq!(spec.name, name);
        // Unversioned requests go to `stable` (routing.json), which is version 1 for both.
        assert_eq!(spec.model_version().to_string(), format!("{name}/1"));
    }
}

#[test]
fn every_model_json_is_its_model_toml_without_the_baseline() {
    for (model, version) in [("credit-risk", "1"), ("credit-risk", "2"), ("digits", "1")] {
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
