"""credit-risk: logistic regression (v1, v2, core-op ONNX) and gradient-boosted trees (v3, an ONNX
tree ensemble) on synthetic loan applicants."""

import json
import os

import lightgbm
import numpy as np
import onnx
import onnxmltools
import sklearn
import skl2onnx
from onnxmltools.convert.common.data_types import FloatTensorType
from onnx.utils import Extractor
from skl2onnx import to_onnx
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from common import finish_onnx, quantiles, session, version_dir, write_reference, write_spec

SEED = 7
ROWS = 20_000

# name, type, min, max, required, default (median of the training data when optional), unit, description
FEATURES = [
    ("age", "integer", 18, 100, True, "years", "Applicant's age"),
    ("income", "number", 0, 10_000_000, True, "USD/year", "Gross annual income"),
    ("credit_score", "integer", 300, 850, True, "FICO", "Credit bureau score"),
    ("debt_to_income", "number", 0, 5, False, "ratio", "Monthly debt payments / monthly income"),
    ("loan_amount", "number", 500, 1_000_000, False, "USD", "Requested principal"),
    ("employment_years", "number", 0, 60, False, "years", "Years with current employer"),
    ("num_late_payments", "integer", 0, 100, False, "count", "Late payments in the last 24 months"),
]
LABELS = ["repaid", "default"]


def generate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Plausible applicants and a default outcome drawn from a known risk function plus noise."""
    age = np.clip(rng.normal(41, 12, n).round(), 18, 85)
    income = np.clip(rng.lognormal(np.log(52_000), 0.55, n), 8_000, 600_000).round(-2)
    credit_score = np.clip(rng.normal(680, 70, n).round(), 300, 850)
    debt_to_income = np.clip(rng.beta(2.2, 5.5, n) * 1.2, 0, 1.5).round(3)
    loan_amount = np.clip(rng.lognormal(np.log(15_000), 0.8, n), 500, 250_000).round(-2)
    employment_years = np.clip(rng.exponential(6.0, n), 0, np.maximum(age - 17, 0)).round(1)
    num_late_payments = np.minimum(rng.poisson(0.3 + 2.5 * (credit_score < 600), n), 30)
    risk = (
        -1.2
        - 0.018 * (credit_score - 680)
        + 2.4 * (debt_to_income - 0.3)
        - 0.45 * np.log(income / 52_000)
        + 0.35 * np.log(loan_amount / 15_000)
        - 0.04 * employment_years
        - 0.012 * (age - 41)
        + 0.35 * num_late_payments
        + rng.normal(0, 0.9, n)
    )
    default = (rng.random(n) < 1 / (1 + np.exp(-risk))).astype(np.int64)
    x = np.stack(
        [age, income, credit_score, debt_to_income, loan_amount, employment_years, num_late_payments],
        axis=1,
    ).astype(np.float32)
    return x, default


def export(pipeline, n_features: int) -> onnx.ModelProto:
    """Core-ops-only export: no ZipMap, no ai.onnx.ml Scaler/LinearClassifier, only the probabilities."""
    clf = pipeline.steps[-1][1]
    scaler = pipeline.steps[0][1]
    model = to_onnx(
        pipeline,
        np.zeros((1, n_features), dtype=np.float32),
        target_opset=15,
        options={id(clf): {"zipmap": False}, id(scaler): {"div": "div"}},
        black_op={"Scaler", "LinearClassifier", "ZipMap", "Normalizer"},
        final_types=None,
    )
    # Rename the graph input, keep only the probability output (drops the label's ArrayFeatureExtractor).
    old_input = model.graph.input[0].name
    for node in model.graph.node:
        node.input[:] = ["input" if i == old_input else i for i in node.input]
    model.graph.input[0].name = "input"
    model = Extractor(model).extract_model(["input"], ["probabilities"])
    for value in (model.graph.input[0], model.graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    return model


def export_trees(clf, n_features: int) -> onnx.ModelProto:
    """LightGBM as an ai.onnx.ml TreeEnsembleClassifier: no ZipMap, only the probabilities."""
    model = onnxmltools.convert_lightgbm(
        clf,
        initial_types=[("input", FloatTensorType([None, n_features]))],
        zipmap=False,
        target_opset=15,
    )
    probabilities = [o.name for o in model.graph.output if o.name != "label"][0]
    model = Extractor(model).extract_model(["input"], [probabilities])
    model.graph.output[0].name = "probabilities"
    for node in model.graph.node:
        node.output[:] = ["probabilities" if o == probabilities else o for o in node.output]
    for value in (model.graph.input[0], model.graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    return model


def logistic(class_weight, C: float):
    """A trainer: scaled logistic regression, exported to core ops."""
    def train(x_train, y_train):
        pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, C=C, class_weight=class_weight))
        pipeline.fit(x_train, y_train)
        framework = (f"scikit-learn {sklearn.__version__} (StandardScaler + LogisticRegression, "
                     f"C={C}, class_weight={class_weight}), skl2onnx {skl2onnx.__version__}, opset 17")
        return pipeline, export(pipeline, x_train.shape[1]), framework, False
    return train


def lightgbm_trees(x_train, y_train):
    """A trainer: gradient-boosted trees (LightGBM), exported as an ONNX tree ensemble."""
    clf = lightgbm.LGBMClassifier(n_estimators=200, learning_rate=0.05, num_leaves=15, random_state=SEED,
                                  deterministic=True, force_row_wise=True, n_jobs=1, verbose=-1)
    clf.fit(x_train, y_train)
    framework = (f"LightGBM {lightgbm.__version__} (200 trees, 15 leaves, learning rate 0.05), "
                 f"onnxmltools {onnxmltools.__version__}, opset 15, ai.onnx.ml TreeEnsembleClassifier")
    return clf, export_trees(clf, x_train.shape[1]), framework, True


# Versions: v1 is the original; v2 is retrained on twice the data with balanced class weights
# (it flags more applicants as risky: a realistic candidate for canary and shadow rollout); v3 is
# gradient-boosted trees on v1's data and split (so the same holdout and labels).
VERSIONS = {
    "1": {"rows": ROWS, "trainer": logistic(None, 1.0)},
    "2": {"rows": 2 * ROWS, "trainer": logistic("balanced", 0.5)},
    "3": {"rows": ROWS, "trainer": lightgbm_trees},
}


def main() -> None:
    for version, settings in VERSIONS.items():
        build(version, **settings)


def build(version: str, rows: int, trainer) -> None:
    rng = np.random.default_rng(SEED)
    x, y = generate(rng, rows)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=SEED, stratify=y)
    fitted, exported, framework, ml_ops = trainer(x_train, y_train)
    proba = fitted.predict_proba(x_test)[:, 1]
    auc = roc_auc_score(y_test, proba)
    accuracy = accuracy_score(y_test, fitted.predict(x_test))

    out = version_dir("credit-risk", version)
    onnx_path = os.path.join(out, "model.onnx")
    finish_onnx(exported, onnx_path, ml_ops=ml_ops)
    sess = session(onnx_path)
    ort_test = sess.run(None, {"input": x_test})[0]
    drift = float(np.abs(ort_test[:, 1] - proba).max())
    if drift > 1e-5:
        raise SystemExit(f"onnx export disagrees with scikit-learn by {drift}")

    # Defaults for optional features: training medians, rounded so every JSON/TOML parser reads
    # the same double.
    medians = [round(float(m), 6) for m in np.median(x_train, axis=0)]
    features = []
    for i, (name, ftype, lo, hi, required, unit, description) in enumerate(FEATURES):
        feature = {"name": name, "type": ftype, "min": lo, "max": hi, "required": required,
                   "unit": unit, "description": description}
        if not required:
            feature["default"] = medians[i]
        features.append(feature)

    doc = {
        "name": "credit-risk",
        "version": version,
        "description": "Probability that a loan applicant defaults, from seven application features.",
        "task": "classification",
        "framework": framework,
        "trained_on": f"{len(x_train)} synthetic applicants from scripts/models/credit_risk.py (seed {SEED})",
        "labels": LABELS,
        "metrics": {"holdout_rows": int(len(x_test)), "roc_auc": round(float(auc), 4),
                    "accuracy": round(float(accuracy), 4)},
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, len(FEATURES)]}],
        "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 2],
                     "kind": "probabilities"}],
        "tabular": {"input": "input", "features": features},
        "baseline": {
            "rows": int(len(x_train)),
            "class_balance": [round(float(1 - y_train.mean()), 6), round(float(y_train.mean()), 6)],
            "features": [{"name": f[0], "mean": round(float(x_train[:, i].mean()), 6),
                          "std": round(float(x_train[:, i].std()), 6),
                          "quantiles": quantiles(x_train[:, i])} for i, f in enumerate(FEATURES)],
        },
    }
    write_spec(out, doc)

    # Reference cases: human-level inputs (optional features sometimes omitted → defaults), the tensor
    # the function must build from them, and onnxruntime's output for that tensor.
    picks = rng.choice(len(x_test), size=12, replace=False)
    cases = []
    for k, row_index in enumerate(picks):
        row = x_test[row_index].copy()
        body = {}
        for i, (name, ftype, *_rest) in enumerate(FEATURES):
            required = FEATURES[i][4]
            if not required and k % 3 == 0:
                row[i] = np.float32(medians[i])
                continue
            body[name] = int(row[i]) if ftype == "integer" else float(row[i])
        tensor = row.reshape(1, -1).astype(np.float32)
        output = sess.run(None, {"input": tensor})[0]
        cases.append({
            "name": f"applicant-{k}",
            "request": body,
            "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, len(FEATURES)],
                        "data": [float(v) for v in tensor.ravel()]}],
            "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": list(output.shape),
                         "data": [float(v) for v in output.ravel()]}],
            "probabilities": [float(v) for v in output.ravel()],
            "prediction": int(output.argmax()),
        })
    write_reference(os.path.join(out, "reference.json"), cases)

    # Held-out applicants as requests: live traffic from the training distribution, for drift
    # tests and demos (shift them to simulate drift).
    holdout = [
        {name: (int(v) if ftype == "integer" else float(v)) for (name, ftype, *_), v in zip(FEATURES, row)}
        for row in x_test[:400]
    ]
    with open(os.path.join(out, "holdout.json"), "w") as f:
        json.dump(holdout, f, separators=(",", ":"))
        f.write("\n")
    # Their true outcomes (the generator's), in the same order: the ground truth that feedback,
    # live quality and guarded rollouts are tested and demonstrated with.
    with open(os.path.join(out, "holdout-labels.json"), "w") as f:
        json.dump([LABELS[int(y)] for y in y_test[:400]], f, separators=(",", ":"))
        f.write("\n")
    print(f"credit-risk v{version}: AUC {auc:.4f}, accuracy {accuracy:.4f}, {len(cases)} reference cases")


if __name__ == "__main__":
    main()
