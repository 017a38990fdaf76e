"""The seed's serving pattern, as the peer `ember bench` measures Ember against: a Flask app under
gunicorn (`gunicorn -w 2 flask_seed:app`) that loads the ONNX model once per worker, validates the
named features of the request (the model's own rules from model.json: required, type, range, no
unknown fields), runs onnxruntime and answers with the prediction. For a vision model (model.json's
`vision`) it decodes the base64 image with Pillow, resizes its shorter side, centre-crops and
normalizes as the spec says, and answers with the top 5 classes too.

EMBER_MODELS names the models directory, EMBER_MODEL the model (default credit-risk) and
EMBER_MODEL_VERSION its version (default 1).
"""

import base64
import io
import json
import math
import os

import numpy as np
import onnxruntime
from flask import Flask, jsonify, request
from PIL import Image

MODELS = os.environ.get("EMBER_MODELS", "models")
MODEL = os.environ.get("EMBER_MODEL", "credit-risk")
VERSION = os.environ.get("EMBER_MODEL_VERSION", "1")

with open(os.path.join(MODELS, MODEL, VERSION, "model.json")) as f:
    SPEC = json.load(f)
VISION = SPEC.get("vision")
FEATURES = SPEC["tabular"]["features"] if not VISION else []
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


def image_tensor(encoded):
    """A base64 image as the model's normalized [1, 3, H, W] input, or None if it is not one."""
    try:
        image = Image.open(io.BytesIO(base64.b64decode(encoded))).convert("RGB")
    except (ValueError, OSError):
        return None
    side, width, height = VISION["shorter_side"], VISION["width"], VISION["height"]
    w, h = image.size
    scale = side / min(w, h)
    size = (side, round(h * scale)) if w <= h else (round(w * scale), side)
    image = image.resize(size, Image.BILINEAR)
    left, top = (size[0] - width) // 2, (size[1] - height) // 2
    pixels = np.asarray(image.crop((left, top, left + width, top + height)), dtype=np.float32) / 255.0
    mean, std = np.array(VISION["mean"], np.float32), np.array(VISION["std"], np.float32)
    return ((pixels - mean) / std).transpose(2, 0, 1)[None].astype(np.float32)


def classify_image(body):
    encoded = body.get("image")
    if not isinstance(encoded, str):
        return invalid("missing_field", "image", "'image' (base64 PNG or JPEG) is required")
    tensor = image_tensor(encoded)
    if tensor is None:
        return invalid("not_an_image", "image", "'image' is not a PNG or JPEG image")
    (logits,) = SESSION.run(None, {INPUT: tensor})
    z = logits[0].astype(np.float64)
    probabilities = np.exp(z - z.max())
    probabilities /= probabilities.sum()
    top = np.argsort(-probabilities)[:5]
    prediction = int(top[0])
    return jsonify(
        model=MODEL,
        model_version=VERSION,
        prediction=prediction,
        label=SPEC["labels"][prediction],
        confidence=float(probabilities[prediction]),
        probabilities=probabilities.tolist(),
        top_k=[{"index": int(i), "label": SPEC["labels"][i], "probability": float(probabilities[i])}
               for i in top],
    )


@app.post("/predict")
def predict():
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return jsonify(error={"code": "malformed_json", "message": "a JSON object is required"}), 400
    if VISION:
        return classify_image(body)
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
