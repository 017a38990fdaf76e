"""The bundled models' reference cases (models/<name>/<version>/reference.json: inputs with
onnxruntime's outputs), shared by the client scripts."""

import json
import pathlib

# How far a client's outputs may be from onnxruntime's.
TOLERANCE = 1e-4


def reference_versions(models):
    """(model, version, cases) for every model version under `models` whose reference.json has
    tensor cases (inputs with onnxruntime's outputs). Versions whose cases are requests only (the
    ImageNet photos: a 224x224x3 tensor per case would not fit the file) are checked through
    /predict by tests/e2e instead."""
    for reference in sorted(pathlib.Path(models).glob("*/*/reference.json")):
        version = reference.parent
        cases = [c for c in json.loads(reference.read_text())["cases"] if c.get("inputs")]
        if cases:
            yield version.parent.name, version.name, cases
