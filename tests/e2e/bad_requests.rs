//! Bad requests get the right 4xx with a JSON error naming the field, and the server keeps
//! answering correctly afterwards.

use base64::Engine as _;
use serde_json::{json, Value};

use crate::support::{reference_cases, Server};

struct Case {
    what: &'static str,
    path: &'static str,
    content_type: &'static str,
    body: Vec<u8>,
    status: u16,
    field: &'static str,
}

fn case(
    what: &'static str,
    path: &'static str,
    body: impl Into<Vec<u8>>,
    status: u16,
    field: &'static str,
) -> Case {
    Case {
        what,
        path,
        content_type: "application/json",
        body: body.into(),
        status,
        field,
    }
}

fn credit(overrides: Value) -> Vec<u8> {
    let mut body = json!({"age": 42, "income": 52000, "credit_score": 710});
    for (k, v) in overrides.as_object().unwrap() {
        if v.is_null() {
            body.as_object_mut().unwrap().remove(k);
        } else {
            body[k] = v.clone();
        }
    }
    body.to_string().into_bytes()
}

fn image(bytes: &[u8]) -> Vec<u8> {
    json!({ "image": base64::engine::general_purpose::STANDARD.encode(bytes) })
        .to_string()
        .into_bytes()
}

fn v2(mutate: impl Fn(&mut Value)) -> Vec<u8> {
    let mut body = json!({ "inputs": reference_cases("credit-risk")[0]["inputs"] });
    mutate(&mut body["inputs"][0]);
    body.to_string().into_bytes()
}

fn cases() -> Vec<Case> {
    let png = base64::engine::general_purpose::STANDARD
        .decode(
            reference_cases("digits")[0]["request"]["image"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
    let predict = "/predict";
    let infer = "/v2/models/credit-risk/infer";
    vec![
        case("malformed JSON", predict, r#"{"age": 42,"#, 400, "$"),
        case("empty body", predict, "", 400, "$"),
        Case {
            content_type: "text/plain",
            ..case(
                "wrong content type",
                predict,
                credit(json!({})),
                415,
                "content-type",
            )
        },
        Case {
            content_type: "application/x-www-form-urlencoded",
            ..case("form content type", predict, "age=42", 415, "content-type")
        },
        case(
            "missing required feature",
            predict,
            credit(json!({"credit_score": null})),
            422,
            "credit_score",
        ),
        case(
            "extra feature",
            predict,
            credit(json!({"zodiac": "leo"})),
            422,
            "zodiac",
        ),
        case(
            "string for a number",
            predict,
            credit(json!({"age": "forty"})),
            422,
            "age",
        ),
        case(
            "boolean for a number",
            predict,
            credit(json!({"income": true})),
            422,
            "income",
        ),
        case(
            "null feature",
            predict,
            credit(json!({"debt_to_income": Value::Array(vec![])})),
            422,
            "debt_to_income",
        ),
        case(
            "NaN as a string",
            predict,
            credit(json!({"age": "NaN"})),
            422,
            "age",
        ),
        case(
            "NaN literal",
            predict,
            r#"{"age": NaN, "income": 52000, "credit_score": 710}"#,
            400,
            "$",
        ),
        case(
            "infinity in FP32",
            predict,
            credit(json!({"loan_amount": 1e39})),
            422,
            "loan_amount",
        ),
        case(
            "Infinity literal",
            predict,
            r#"{"age": 42, "income": Infinity, "credit_score": 710}"#,
            400,
            "$",
        ),
        case(
            "below minimum",
            predict,
            credit(json!({"age": 17})),
            422,
            "age",
        ),
        case(
            "above maximum",
            predict,
            credit(json!({"credit_score": 900})),
            422,
            "credit_score",
        ),
        case(
            "negative income",
            predict,
            credit(json!({"income": -5})),
            422,
            "income",
        ),
        case(
            "fraction for an integer",
            predict,
            credit(json!({"age": 42.5})),
            422,
            "age",
        ),
        case("array body", predict, "[42, 52000, 710]", 422, "$"),
        case(
            "oversized body",
            predict,
            vec![b' '; 9 * 1024 * 1024],
            413,
            "",
        ),
        case(
            "bad base64",
            "/models/digits/predict",
            r#"{"image": "%%% not base64 %%%"}"#,
            422,
            "image",
        ),
        case(
            "bytes that are not an image",
            "/models/digits/predict",
            image(b"hello, I am text"),
            422,
            "image",
        ),
        case(
            "truncated PNG",
            "/models/digits/predict",
            image(&png[..png.len() / 2]),
            422,
            "image",
        ),
        case(
            "image missing",
            "/models/digits/predict",
            "{}",
            422,
            "image",
        ),
        case(
            "image of the wrong type",
            "/models/digits/predict",
            r#"{"image": 42}"#,
            422,
            "image",
        ),
        case(
            "unknown model",
            "/models/nope/predict",
            credit(json!({})),
            404,
            "model",
        ),
        case(
            "unknown version",
            "/models/credit-risk/versions/7/predict",
            credit(json!({})),
            404,
            "version",
        ),
        case(
            "path traversal as a model",
            "/models/..%2Fhost/predict",
            credit(json!({})),
            404,
            "model",
        ),
        case(
            "v2 wrong input name",
            infer,
            v2(|i| i["name"] = json!("features")),
            400,
            "inputs[0].name",
        ),
        case(
            "v2 wrong shape",
            infer,
            v2(|i| i["shape"] = json!([1, 6])),
            400,
            "inputs[0].shape",
        ),
        case(
            "v2 wrong datatype",
            infer,
            v2(|i| i["datatype"] = json!("INT64")),
            400,
            "inputs[0].datatype",
        ),
        case(
            "v2 wrong data length",
            infer,
            v2(|i| i["data"] = json!([1.0, 2.0])),
            400,
            "inputs[0].data",
        ),
        case(
            "v2 non-numeric data",
            infer,
            v2(|i| i["data"][3] = json!("x")),
            400,
            "inputs[0].data",
        ),
        case(
            "v2 FP32 overflow",
            infer,
            v2(|i| i["data"][1] = json!(1e300)),
            400,
            "inputs[0].data",
        ),
        case("v2 missing inputs", infer, r#"{"id": "x"}"#, 400, "inputs"),
        case(
            "v2 unknown model",
            "/v2/models/nope/infer",
            v2(|_| {}),
            404,
            "model",
        ),
    ]
}

fn error_field(body: &Value) -> Option<&str> {
    body["error"]["field"]
        .as_str()
        .or_else(|| body["field"].as_str())
}

#[test]
fn bad_requests_get_clear_errors_and_the_server_keeps_serving() {
    let server = Server::start(&[]);
    let cases = cases();
    assert!(cases.len() >= 25);
    for c in &cases {
        let (status, body) = server.post(c.path, c.content_type, &c.body);
        assert_eq!(status, c.status, "{}: {body}", c.what);
        let message = body["error"]["message"]
            .as_str()
            .or_else(|| body["error"].as_str());
        assert!(
            message.is_some_and(|m| !m.is_empty()),
            "{}: no message in {body}",
            c.what
        );
        if !c.field.is_empty() {
            assert_eq!(error_field(&body), Some(c.field), "{}: {body}", c.what);
        }
    }
    // Method and route errors.
    assert_eq!(server.get("/predict").0, 405);
    assert_eq!(server.get("/no/such/route").0, 404);
    // And it still answers correctly.
    let case = &reference_cases("credit-risk")[0];
    let (status, reply) = server.post_json("/predict", &case["request"]);
    assert_eq!(status, 200);
    assert_eq!(reply["prediction"], case["prediction"]);
}

/// A binary tensor data request for credit-risk: the first reference case's input, as
/// `binary_data_size` bytes, with `mutate` applied to the input's JSON.
fn binary_input(mutate: impl Fn(&mut Value)) -> (Value, Vec<u8>) {
    let input = &reference_cases("credit-risk")[0]["inputs"][0];
    let bytes: Vec<u8> = input["data"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|x| (x.as_f64().unwrap() as f32).to_le_bytes())
        .collect();
    let mut tensor = json!({
        "name": "input",
        "datatype": "FP32",
        "shape": input["shape"],
        "parameters": {"binary_data_size": bytes.len()},
    });
    mutate(&mut tensor);
    (json!({ "inputs": [tensor] }), bytes)
}

/// A binary tensor data request that must be refused, with the field and code the reply names.
struct BinaryCase {
    what: &'static str,
    header: Value,
    tensor_bytes: Vec<u8>,
    header_length: Option<&'static str>,
    field: &'static str,
    code: &'static str,
}

#[test]
fn binary_tensor_data_that_does_not_add_up_is_refused_naming_the_rule() {
    let server = Server::start(&[]);
    let infer = "/v2/models/credit-risk/infer";
    let (header, bytes) = binary_input(|_| {});
    let (status, reply) = server.post_binary_infer(infer, &header, &bytes, None);
    assert_eq!(status, 200, "the well-formed request: {reply}");
    let refused = |what, header: &Value, tensor_bytes: &[u8], field, code| BinaryCase {
        what,
        header: header.clone(),
        tensor_bytes: tensor_bytes.to_vec(),
        header_length: None,
        field,
        code,
    };
    let size = "inputs[0].parameters.binary_data_size";
    let mismatch = "binary_data_mismatch";
    let nan = [&f32::NAN.to_le_bytes()[..], &bytes[4..]].concat();
    let extra = [&bytes[..], &[0; 4]].concat();
    let cases = [
        BinaryCase {
            header_length: Some("100000"),
            ..refused(
                "header longer than the body",
                &header,
                &bytes,
                "inference-header-content-length",
                mismatch,
            )
        },
        BinaryCase {
            header_length: Some("twelve"),
            ..refused(
                "header length not a number",
                &header,
                &bytes,
                "inference-header-content-length",
                mismatch,
            )
        },
        refused(
            "fewer bytes than claimed",
            &header,
            &bytes[..20],
            size,
            mismatch,
        ),
        refused("bytes no input claims", &header, &extra, "inputs", mismatch),
        refused(
            "size not the shape's",
            &binary_input(|t| t["parameters"]["binary_data_size"] = json!(24)).0,
            &bytes[..24],
            size,
            "wrong_data_length",
        ),
        refused("a NaN", &header, &nan, "inputs[0].data", "not_finite"),
        refused(
            "data and bytes both",
            &binary_input(|t| t["data"] = json!(vec![1.0; 7])).0,
            &bytes,
            "inputs[0].data",
            mismatch,
        ),
        refused(
            "shared memory",
            &binary_input(|t| t["parameters"]["shared_memory_region"] = json!("r")).0,
            &bytes,
            "inputs[0].parameters.shared_memory_region",
            "unsupported_parameter",
        ),
        refused(
            "classification",
            &json!({"inputs": header["inputs"],
                "outputs": [{"name": "probabilities", "parameters": {"classification": 2}}]}),
            &bytes,
            "outputs[0].parameters.classification",
            "unsupported_parameter",
        ),
    ];
    for c in cases {
        let (status, reply) =
            server.post_binary_infer(infer, &c.header, &c.tensor_bytes, c.header_length);
        let what = c.what;
        assert_eq!(status, 400, "{what}: {reply}");
        assert_eq!(reply["field"], c.field, "{what}: {reply}");
        assert_eq!(reply["code"], c.code, "{what}: {reply}");
        assert!(
            reply["error"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}"
        );
    }
}
