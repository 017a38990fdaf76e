"""The bundled models' reference cases (models/<name>/<version>/reference.json: inputs with
onnxruntime's outputs), shared by the client scripts."""

import json
import pathlib

# How far a client's outputs may be from onnxruntime's.
TOLERANCE = 1e-4


def reference_versions(models):
    """(model, version, cases) for every model version under `models` with a reference.json."""
    for reference in sorted(pathlib.Path(models).glob("*/*/reference.json")):
        version = reference.parent
        yield version.parent.name, version.name, json.loads(reference.read_text())["cases"]
