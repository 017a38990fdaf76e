"""tests/fixtures/softmax-opset{15,17}: digits v1 ending in Softmax, for the browser tests.

Ember's models end without Softmax because wonnx can't run it in Chromium (docs/stack.md). These
fixtures keep one on purpose, once for each way wonnx fails, which the browser package must
catch at load and answer on the CPU instead (tract's answer equals the server's for digits v1):
- opset 15: wonnx compiles the Softmax, Chromium rejects its shader, and the run silently
  returns zeros (the self-check's "all zeros");
- opset 17: wonnx refuses to compile the graph (it knows Softmax only up to opset 15).
Derived from the committed digits v1 files, so this needs only `onnx`.
"""

import json
import os

import onnx
from onnx import helper

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SOURCE = os.path.join(REPO, "models", "digits", "1")


def with_softmax(opset: int) -> onnx.ModelProto:
    """digits v1 with `probabilities = Softmax(logits)` appended, importing the given opset."""
    model = onnx.load(os.path.join(SOURCE, "model.onnx"))
    graph = model.graph
    assert graph.node[-1].output[0] == "logits"  # the last Gemm's output becomes an intermediate
    graph.value_info.append(helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["batch", 10]))
    graph.node.append(helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1))
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info("probabilities", onnx.TensorProto.FLOAT, ["batch", 10]))
    model.opset_import[0].version = opset
    onnx.checker.check_model(model, full_check=True)
    return model


def main() -> None:
    with open(os.path.join(SOURCE, "model.json")) as f:
        spec = json.load(f)
    for opset in (15, 17):
        name = f"softmax-opset{opset}"
        folder = os.path.join(REPO, "tests", "fixtures", name)
        os.makedirs(folder, exist_ok=True)
        onnx.save(with_softmax(opset), os.path.join(folder, "model.onnx"))
        spec["name"] = name
        spec["description"] = f"Test fixture: digits v1 ending in Softmax, opset {opset} (see scripts/models/browser_fixture.py)."
        spec["outputs"] = [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 10], "kind": "probabilities"}]
        with open(os.path.join(folder, "model.json"), "w") as f:
            json.dump(spec, f, separators=(",", ":"))
            f.write("\n")


if __name__ == "__main__":
    main()
