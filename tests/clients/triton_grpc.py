"""tritonclient.grpc, unchanged, against a running Ember (KServe v2 gRPC on the same port as
REST): liveness, readiness, server and model metadata, every reference case of every bundled
model version (raw tensor contents, the client's only way) within 1e-4 of onnxruntime, with all
outputs and with outputs named, a call routed by the model's policy, and bad calls answered with
the gRPC status for what is wrong.

Usage: triton_grpc.py HOST:PORT MODELS_DIR. Prints one line per check and, last,
"ok: N inferences, M refused"; exits non-zero on the first failure.
"""

import sys

import grpc
import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from reference_cases import TOLERANCE, reference_versions


def inputs_of(case):
    inputs = []
    for tensor in case["inputs"]:
        data = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
        infer_input = grpcclient.InferInput(tensor["name"], list(data.shape), tensor["datatype"])
        infer_input.set_data_from_numpy(data)
        inputs.append(infer_input)
    return inputs


def check_case(client, model, version, case, name_outputs):
    outputs = None
    if name_outputs:
        outputs = [grpcclient.InferRequestedOutput(t["name"]) for t in case["outputs"]]
    result = client.infer(
        model,
        inputs_of(case),
        model_version=version,
        outputs=outputs,
        request_id=case["name"],
        headers={"ember-caller-key": "grpc-client"},
    )
    response = result.get_response()
    assert response.model_name == model, response
    assert response.model_version == version, response
    assert response.id == case["name"], response
    assert len(response.raw_output_contents) == len(response.outputs), response
    for expected in case["outputs"]:
        actual = result.as_numpy(expected["name"])
        assert actual is not None, f"{expected['name']} missing from {response}"
        want = np.asarray(expected["data"], dtype=np.float32).reshape(expected["shape"])
        assert actual.shape == want.shape, (actual.shape, want.shape)
        np.testing.assert_allclose(actual, want, atol=TOLERANCE, rtol=0)


def refused(call, status, words):
    """Runs `call`, which must fail with gRPC `status` and a message containing `words`."""
    try:
        call()
    except InferenceServerException as error:
        assert error.status() == str(status), (error.status(), error.message())
        assert words in error.message(), error.message()
        print(f"refused with {status.name}: {error.message()}")
    else:
        raise AssertionError(f"accepted; wanted {status.name}")


def main(url, models):
    client = grpcclient.InferenceServerClient(url=url)
    assert client.is_server_live() and client.is_server_ready()
    metadata = client.get_server_metadata()
    assert metadata.name == "ember", metadata
    print("server metadata", list(metadata.extensions))
    inferences = 0
    for model, version, cases in reference_versions(models):
        assert client.is_model_ready(model, version), (model, version)
        meta = client.get_model_metadata(model, version)
        assert meta.name == model and version in meta.versions, meta
        assert meta.inputs and meta.outputs and meta.platform == "onnx", meta
        for case in cases:
            for name_outputs in (False, True):
                check_case(client, model, version, case, name_outputs)
                inferences += 1
        print(f"{model} v{version}: {len(cases)} cases, all outputs and named, within {TOLERANCE}")
    assert inferences > 0, f"no reference cases under {models}"

    # No version: the model's routing policy picks one, and the reply says which.
    case = next(cases for m, _, cases in reference_versions(models) if m == "credit-risk")[0]
    routed = client.infer("credit-risk", inputs_of(case)).get_response()
    inferences += 1
    versions = client.get_model_metadata("credit-risk").versions
    assert routed.model_version in versions, (routed.model_version, versions)
    print("routed to credit-risk version", routed.model_version)

    bad = grpcclient.InferInput("input", [1, 3], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 3), dtype=np.float32))
    refused(lambda: client.infer("credit-risk", [bad]), grpc.StatusCode.INVALID_ARGUMENT, "shape")
    refused(
        lambda: client.infer("no-such-model", inputs_of(case)),
        grpc.StatusCode.NOT_FOUND,
        "no-such-model",
    )
    refused(
        lambda: client.infer("credit-risk", inputs_of(case), model_version="99"),
        grpc.StatusCode.NOT_FOUND,
        "99",
    )
    refused(
        lambda: client.is_model_ready("no-such-model"), grpc.StatusCode.NOT_FOUND, "no-such-model"
    )
    refused(
        lambda: client.infer("a/b", inputs_of(case)), grpc.StatusCode.INVALID_ARGUMENT, "model_name"
    )
    print(f"ok: {inferences} inferences, 3 refused")


if __name__ == "__main__":
    main(*sys.argv[1:])
