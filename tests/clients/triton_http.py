"""tritonclient.http, unchanged, against a running Ember: server and model metadata, readiness,
every reference case of every bundled model version (binary tensors both ways, as the client's
defaults send them, and JSON tensors with binary_data=False) within 1e-4 of onnxruntime, and
a bad request answered as Triton answers it.

Usage: triton_http.py HOST:PORT MODELS_DIR. Prints one line per check; exits non-zero on the first
failure.
"""

import sys

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from reference_cases import TOLERANCE, reference_versions


def infer(client, model, version, case, binary):
    inputs = []
    for tensor in case["inputs"]:
        data = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
        infer_input = httpclient.InferInput(tensor["name"], list(data.shape), tensor["datatype"])
        infer_input.set_data_from_numpy(data, binary_data=binary)
        inputs.append(infer_input)
    if binary:
        # The client's defaults: no outputs named, so it asks for all of them as binary data.
        outputs = None
    else:
        outputs = [
            httpclient.InferRequestedOutput(t["name"], binary_data=False) for t in case["outputs"]
        ]
    return client.infer(
        model, inputs, model_version=version, outputs=outputs, request_id=case["name"]
    )


def check_case(client, model, version, case, binary):
    result = infer(client, model, version, case, binary)
    response = result.get_response()
    assert response["model_name"] == model, response
    assert response["model_version"] == version, response
    assert response["id"] == case["name"], response
    for expected in case["outputs"]:
        name = expected["name"]
        output = result.get_output(name)
        assert output is not None, f"{name} missing from {response}"
        assert ("binary_data_size" in output.get("parameters", {})) == binary, output
        assert "data" not in output if binary else "data" in output, output
        actual = result.as_numpy(name)
        want = np.asarray(expected["data"], dtype=np.float32).reshape(expected["shape"])
        assert actual.shape == want.shape, (actual.shape, want.shape)
        np.testing.assert_allclose(actual, want, atol=TOLERANCE, rtol=0)


def main(url, models):
    client = httpclient.InferenceServerClient(url=url)
    assert client.is_server_live() and client.is_server_ready()
    metadata = client.get_server_metadata()
    assert "binary_tensor_data" in metadata["extensions"], metadata
    print("server metadata", metadata)
    checked = 0
    for model, version, cases in reference_versions(models):
        assert client.is_model_ready(model, version), (model, version)
        meta = client.get_model_metadata(model, version)
        assert meta["name"] == model and version in meta["versions"], meta
        for case in cases:
            for binary in (True, False):
                check_case(client, model, version, case, binary)
                checked += 1
        print(f"{model} v{version}: {len(cases)} cases, binary and JSON, within {TOLERANCE}")
    assert checked > 0, f"no reference cases under {models}"

    # A wrong shape is refused the way Triton refuses it: status 400 and a message naming the rule.
    bad = httpclient.InferInput("input", [1, 3], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 3), dtype=np.float32))
    try:
        client.infer("credit-risk", [bad])
    except InferenceServerException as error:
        assert error.status() == "400", (error.status(), error.message())
        assert "shape" in error.message(), error.message()
        print("bad shape refused:", error.message())
    else:
        raise AssertionError("a wrong shape was accepted")
    print(f"ok: {checked} inferences")


if __name__ == "__main__":
    main(*sys.argv[1:])
