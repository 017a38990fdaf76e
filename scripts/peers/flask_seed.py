"""The seed's serving pattern, as the peer `ember bench` measures Ember against: a Flask app under
gunicorn (`gunicorn -w 2 flask_seed:app`) that loads the ONNX model once per worker, validates the
named features of the request (the model's own rules from model.json: required, type, range, no
unknown fields), runs onnxruntime and answers with the prediction.

EMBER_MODELS names the models directory, EMBER_MODEL the model (default credit-risk) and
EMBER_MODEL_VERSION its version (default 1).
"""

import json
import math
import os

import numpy as np
import onnxruntime
from flask import Flask, jsonify, request

MODELS = os.environ.get("EMBER_MODELS", "models")
MODEL = os.environ.get("EMBER_MODEL", "credit-risk")
VERSION = os.environ.get("EMBER_MODEL_VERSION", "1")

with open(os.path.join(MODELS, MODEL, VERSION, "model.json")) as f:
    SPEC = json.load(f)
FEATURES = SPEC["tabular"]["features"]
KNOWN = {feature["name"] for feature in FEATURES}
options = onnxruntime.SessionOptions()
options.intra_op_num_threads = 1
options.inter_op_num_threads = 1
SESSION = onnxruntime.InferenceSession(
    os.path.join(MODELS, MODEL, VERSION, "model.onnx"),
    options,
    providers=["CPUExecutionProvider"],
)
INPUT = SESSION.get_inputs()[0].name

app = Flask(__name__)


def invalid(code, field, message):
    return jsonify(error={"code": code, "field": field, "message": message}), 422


def value_of(feature, body):
    """The feature's value from the body, or (None, error reply)."""
    name = feature["name"]
    if name not in body:
        if feature.get("required"):
            return None, invalid("missing_feature", name, f"'{name}' is required")
        return float(feature["default"]), None
    value = body[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None, invalid("wrong_type", name, f"'{name}' must be a number")
    if not math.isfinite(value):
        return None, invalid("not_finite", name, f"'{name}' must be finite")
    if feature["type"] == "integer" and value != int(value):
        return None, invalid("not_an_integer", name, f"'{name}' must be an integer")
    if not feature["min"] <= value <= feature["max"]:
        return None, invalid(
            "out_of_range",
            name,
            f"'{name}' must be within [{feature['min']}, {feature['max']}]",
        )
    return float(value), None


@app.post("/predict")
def predict():
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return jsonify(error={"code": "malformed_json", "message": "a JSON object is required"}), 400
    for name in body:
        if name not in KNOWN:
            return invalid("unknown_feature", name, f"'{name}' is not a feature of {MODEL}")
    row = []
    for feature in FEATURES:
        value, error = value_of(feature, body)
        if error:
            return error
        row.append(value)
    (probabilities,) = SESSION.run(None, {INPUT: np.array([row], dtype=np.float32)})
    probabilities = probabilities[0].tolist()
    prediction = int(np.argmax(probabilities))
    return jsonify(
        model=MODEL,
        model_version=VERSION,
        prediction=prediction,
        label=SPEC["labels"][prediction],
        confidence=probabilities[prediction],
        probabilities=probabilities,
    )
