//! Sentence embeddings (minilm: all-MiniLM-L6-v2, int8), tokenized inside the function: every
//! reference text (accents, CJK, emoji, a text past the 256-token limit) within cosine 0.999 of
//! onnxruntime on Hugging Face `tokenizers`' ids, through `/predict` and OpenAI's `/v1/embeddings`
//! (the `openai` client itself), and a key limited to other models cannot use it.

use serde_json::{json, Value};

use crate::clients::run_client;
use crate::support::{ember, reference_cases_in, repo_root, scratch_dir, Server};

const MODEL: &str = "minilm";
const MIN_COSINE: f64 = 0.999;

fn cases() -> Vec<Value> {
    reference_cases_in(&repo_root().join("models"), MODEL, "1")
}

/// A JSON array of numbers as floats.
pub fn vector(value: &Value) -> Vec<f64> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

/// The cosine similarity of two vectors.
pub fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / norm(a) / norm(b)
}

#[test]
fn texts_embed_as_onnxruntime_on_hugging_face_s_tokens_one_at_a_time_and_batched() {
    let server = Server::start(&[]);
    let cases = cases();
    let path = format!("/models/{MODEL}/predict");
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let (status, reply) = server.post_json(&path, &case["request"]);
        assert_eq!(status, 200, "{name}: {reply}");
        assert_eq!(reply["dimensions"], 384);
        assert_eq!(reply["model_version"], "1");
        assert_eq!(
            reply["tokens"],
            case["ids"].as_array().unwrap().len(),
            "{name}"
        );
        let embeddings = reply["embeddings"].as_array().unwrap();
        assert_eq!(embeddings.len(), 1);
        let similarity = cosine(&vector(&embeddings[0]), &vector(&case["embedding"]));
        assert!(similarity >= MIN_COSINE, "{name}: cosine {similarity}");
    }
    // The long text was cut at the model's 256 tokens.
    let long = cases.iter().find(|c| c["name"] == "long").unwrap();
    assert_eq!(long["ids"].as_array().unwrap().len(), 256);

    // All texts in one request: answered in order, with the same vectors as one at a time.
    let texts: Vec<&Value> = cases.iter().map(|c| &c["request"]["text"]).collect();
    let (status, reply) = server.post_json(&path, &json!({ "texts": texts }));
    assert_eq!(status, 200, "{reply}");
    let tokens: usize = cases
        .iter()
        .map(|c| c["ids"].as_array().unwrap().len())
        .sum();
    assert_eq!(reply["tokens"], tokens);
    let embeddings: Vec<Vec<f64>> = reply["embeddings"]
        .as_array()
        .unwrap()
        .iter()
        .map(vector)
        .collect();
    for (embedding, case) in embeddings.iter().zip(&cases) {
        let similarity = cosine(embedding, &vector(&case["embedding"]));
        assert!(similarity >= MIN_COSINE, "{}: {similarity}", case["name"]);
    }
    // And they mean something: two sentences about a guitar player are closer to each other
    // than to a tax deadline.
    let at = |name: &str| cases.iter().position(|c| c["name"] == name).unwrap();
    let (a, b, other) = (at("similar-a"), at("similar-b"), at("unrelated"));
    assert!(
        cosine(&embeddings[a], &embeddings[b]) > cosine(&embeddings[a], &embeddings[other]) + 0.3
    );
}

#[test]
fn bad_text_requests_name_the_field_and_the_rule() {
    let server = Server::start(&[]);
    let path = format!("/models/{MODEL}/predict");
    let too_many: Vec<&str> = vec!["x"; 65];
    for (body, code, field) in [
        (json!({}), "missing_field", "text"),
        (json!({"text": 7}), "wrong_type", "text"),
        (json!({"texts": "one"}), "wrong_type", "texts"),
        (json!({"texts": []}), "batch_too_large", "texts"),
        (json!({ "texts": too_many }), "batch_too_large", "texts"),
        (json!({"texts": ["a", "b", null]}), "wrong_type", "texts[2]"),
        (
            json!({"text": "a", "texts": ["b"]}),
            "unknown_field",
            "texts",
        ),
        (json!({"text": "a", "image": "b"}), "unknown_field", "image"),
    ] {
        let (status, reply) = server.post_json(&path, &body);
        assert_eq!(status, 422, "{body}: {reply}");
        assert_eq!(reply["error"]["code"], code, "{body}: {reply}");
        assert_eq!(reply["error"]["field"], field, "{body}: {reply}");
    }
    for (body, status, code) in [
        (json!({"input": "a"}), 422, "missing_field"),
        (json!({"model": "digits", "input": "a"}), 422, "wrong_task"),
        (json!({"model": "nope", "input": "a"}), 404, "unknown_model"),
        (json!({"model": MODEL, "input": [1, 2]}), 422, "wrong_type"),
        (
            json!({"model": MODEL, "input": "a", "encoding_format": "int8"}),
            422,
            "unsupported_parameter",
        ),
        (
            json!({"model": MODEL, "input": "a", "n": 2}),
            422,
            "unknown_field",
        ),
    ] {
        let (got, reply) = server.post_json("/v1/embeddings", &body);
        assert_eq!(
            (got, reply["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}: {reply}"
        );
    }
}

#[test]
fn the_openai_client_embeds_through_v1_embeddings_unchanged() {
    let server = Server::start(&[]);
    let models = repo_root().join("models");
    let printed = run_client(
        "openai_embeddings.py",
        &[&server.base, models.to_str().unwrap()],
    );
    assert!(printed.contains("ok"), "{printed}");
}

#[test]
fn a_key_limited_to_other_models_cannot_embed_and_a_forged_limit_is_ignored() {
    let ledger = scratch_dir("embeddings-keys").join("usage.db");
    let ledger = ledger.to_str().unwrap();
    let create = |args: &[&str]| {
        let mut all = vec!["keys", "--ledger", ledger, "create"];
        all.extend_from_slice(args);
        ember(&all).trim().to_string()
    };
    let scoped = create(&["--name", "credit-only", "--models", "credit-risk"]);
    let open = create(&["--name", "everything"]);
    let server = Server::start(&["--ledger", ledger, "--auth", "keys"]);
    let body = json!({"model": MODEL, "input": "hello"});
    let bearer = |key: &str| format!("Bearer {key}");
    let refused = server.send(
        "POST",
        "/v1/embeddings",
        &[("authorization", &bearer(&scoped))],
        Some(&body),
    );
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(refused.body["error"]["field"], "model");
    // A client cannot narrow (or widen) what the host passes the function.
    let forged = server.send(
        "POST",
        "/v1/embeddings",
        &[
            ("authorization", &bearer(&open)),
            ("ember-x-allowed-models", "credit-risk"),
        ],
        Some(&body),
    );
    assert_eq!(forged.status, 200, "{}", forged.body);
    assert_eq!(
        forged.body["data"][0]["embedding"]
            .as_array()
            .unwrap()
            .len(),
        384
    );
}
