"""The `openai` client, unchanged, against a running Ember's /v1/embeddings: every reference text of
models/minilm/1 (embedded in Ember's function, tokenizer included) within cosine 0.999 of onnxruntime
on Hugging Face `tokenizers`' ids, through the client's default (base64) and float encodings, one
text and a batch; usage counts the tokens; a bad request raises the client's own errors.

Usage: openai_embeddings.py BASE_URL MODELS_DIR [API_KEY]. Prints one line per check; exits
non-zero on the first failure.
"""

import json
import pathlib
import sys

import numpy as np
import openai

MODEL = "minilm"
MIN_COSINE = 0.999


def cosine(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def main(base_url, models, api_key="unused"):
    cases = json.loads((pathlib.Path(models) / MODEL / "1" / "reference.json").read_text())["cases"]
    texts = [case["request"]["text"] for case in cases]
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key=api_key, max_retries=0)

    for encoding in ("base64", "float"):
        # The client's default is base64 (it decodes the float32s itself); float is asked for.
        kwargs = {} if encoding == "base64" else {"encoding_format": "float"}
        reply = client.embeddings.create(model=MODEL, input=texts, **kwargs)
        assert reply.object == "list" and reply.model == MODEL, reply
        assert [d.index for d in reply.data] == list(range(len(texts))), reply.data
        worst = min(cosine(d.embedding, c["embedding"]) for d, c in zip(reply.data, cases))
        assert worst >= MIN_COSINE, worst
        assert all(len(d.embedding) == 384 for d in reply.data)
        tokens = sum(len(c["ids"]) for c in cases)
        assert reply.usage.prompt_tokens == tokens == reply.usage.total_tokens, (reply.usage, tokens)
        print(f"{len(texts)} texts as one batch ({encoding}): cosine >= {worst:.6f}, {tokens} tokens")

    for case in cases:
        one = client.embeddings.create(model=MODEL, input=case["request"]["text"])
        similarity = cosine(one.data[0].embedding, case["embedding"])
        assert similarity >= MIN_COSINE, (case["name"], similarity)
        assert one.usage.prompt_tokens == len(case["ids"]), (case["name"], one.usage)
    print(f"{len(cases)} texts one at a time: cosine >= {MIN_COSINE}")

    for bad, status in (({"model": "no-such-model"}, 404), ({"model": "digits"}, 422),
                        ({"model": MODEL, "dimensions": 7}, 422)):
        try:
            client.embeddings.create(input="hello", **{"encoding_format": "float", **bad})
        except openai.APIStatusError as error:
            assert error.status_code == status, (bad, error.status_code, error.body)
            print(f"refused {bad} with {status}: {error.body}")
        else:
            raise AssertionError(f"{bad} was accepted")
    print("ok")


if __name__ == "__main__":
    main(*sys.argv[1:])
