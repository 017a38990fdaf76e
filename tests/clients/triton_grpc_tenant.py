"""tritonclient.grpc, unchanged, against an `ember up --auth keys` serving HTTPS: gRPC over TLS
(HTTP/2 by ALPN) with the test's own certificate as the only root, the API key in the call's
metadata, and each bad credential answered with its gRPC status.

Usage: triton_grpc_tenant.py HOST:PORT MODELS_DIR CA_PEM KEY. The key may use credit-risk only. Prints one
line per check and, last, "ok: N inferences, M refused"; exits non-zero on the first failure.
"""

import sys

import grpc
import tritonclient.grpc as grpcclient

from reference_cases import reference_versions
from triton_grpc import inputs_of, refused


def main(url, models, ca, key):
    with open(ca, "rb") as pem:
        root = pem.read()
    client = grpcclient.InferenceServerClient(url=url, ssl=True, root_certificates=ca)
    assert root and client.is_server_live(), "probes need no key"
    case = next(c for m, _, c in reference_versions(models) if m == "credit-risk")[0]
    with_key = {"authorization": f"Bearer {key}"}
    result = client.infer("credit-risk", inputs_of(case), headers=with_key).get_response()
    assert result.model_name == "credit-risk", result
    print("inferred over TLS with the key in metadata, version", result.model_version)
    refused(
        lambda: client.infer("credit-risk", inputs_of(case)),
        grpc.StatusCode.UNAUTHENTICATED,
        "API key",
    )
    refused(
        lambda: client.infer(
            "credit-risk", inputs_of(case), headers={"authorization": "Bearer ek_wrong"}
        ),
        grpc.StatusCode.UNAUTHENTICATED,
        "not valid",
    )
    refused(
        lambda: client.infer("digits", [], headers=with_key),
        grpc.StatusCode.PERMISSION_DENIED,
        "digits",
    )
    print("ok: 1 inferences, 3 refused")


if __name__ == "__main__":
    main(*sys.argv[1:])
