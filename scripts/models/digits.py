"""digits v1: a small CNN on scikit-learn's bundled 8x8 digits, exported with torch.onnx (logits, no Softmax)."""

import base64
import io
import os

import numpy as np
import torch
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from common import finish_onnx, quantiles, session, softmax, version_dir, write_reference, write_spec

SEED = 11
EPOCHS = 40


class DigitsCnn(nn.Module):
    """Two 3x3 convolutions, a 2x2 max-pool and two fully connected layers; outputs 10 logits."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def to_png(pixels: np.ndarray) -> bytes:
    """An 8-bit grayscale PNG of an 8x8 image in [0, 1] (light ink on a dark background)."""
    image = Image.fromarray(np.round(pixels * 255).astype(np.uint8), mode="L")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def main() -> None:
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)  # [n, 8, 8] in [0, 1]
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=SEED, stratify=y)
    mean = round(float(x_train.mean()), 8)  # stored in model.toml with this precision
    std = round(float(x_train.std()), 8)

    def tensor(images: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(((images - mean) / std)[:, None, :, :].astype(np.float32))

    model = DigitsCnn()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    train_x, train_y = tensor(x_train), torch.from_numpy(y_train)
    generator = torch.Generator().manual_seed(SEED)
    for _ in range(EPOCHS):
        model.train()
        order = torch.randperm(len(train_x), generator=generator)
        for start in range(0, len(order), 64):
            batch = order[start:start + 64]
            optimizer.zero_grad()
            loss_fn(model(train_x[batch]), train_y[batch]).backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = float((model(tensor(x_test)).argmax(1).numpy() == y_test).mean())

    out = version_dir("digits", "1")
    onnx_path = os.path.join(out, "model.onnx")
    tmp_path = onnx_path + ".tmp"
    torch.onnx.export(
        model, tensor(x_test[:1]), tmp_path, dynamo=False, opset_version=17,
        input_names=["input"], output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )
    import onnx  # local: torch.onnx wrote the file, onnx finishes it
    finish_onnx(onnx.load(tmp_path), onnx_path)
    os.remove(tmp_path)

    labels = [str(d) for d in range(10)]
    doc = {
        "name": "digits",
        "version": "1",
        "description": "Handwritten digit 0-9 from an image (scaled to 8x8 grayscale, light ink on dark).",
        "task": "classification",
        "framework": f"PyTorch {torch.__version__} CNN (2 conv + 2 FC), torch.onnx opset 17",
        "trained_on": f"{len(x_train)} images of scikit-learn's bundled digits data (seed {SEED})",
        "labels": labels,
        "metrics": {"holdout_rows": int(len(x_test)), "accuracy": round(accuracy, 4)},
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 1, 8, 8]}],
        "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 10], "kind": "logits"}],
        "vision": {
            "input": "input", "width": 8, "height": 8, "channels": "grayscale", "invert": False,
            "mean": [mean], "std": [std],
        },
        "baseline": {
            "rows": int(len(x_train)),
            "class_balance": [round(float((y_train == d).mean()), 6) for d in range(10)],
            "features": [{"name": "mean_intensity", "mean": round(float(x_train.mean()), 6),
                          "std": round(float(x_train.mean(axis=(1, 2)).std()), 6),
                          "quantiles": quantiles(x_train.mean(axis=(1, 2)))}],
        },
    }
    write_spec(out, doc)

    # Reference cases: an 8x8 PNG per digit; the tensor is computed from the PNG's own bytes exactly as
    # the function preprocesses it (pixel/255, then (x - mean) / std), then run through onnxruntime.
    sess = session(onnx_path)
    cases = []
    for digit in range(10):
        index = int(np.flatnonzero(y_test == digit)[0])
        png = to_png(x_test[index])
        pixels = np.asarray(Image.open(io.BytesIO(png)), dtype=np.float32) / 255.0
        input_tensor = ((pixels - np.float32(mean)) / np.float32(std)).astype(np.float32).reshape(1, 1, 8, 8)
        logits = sess.run(None, {"input": input_tensor})[0]
        cases.append({
            "name": f"digit-{digit}",
            "request": {"image": base64.b64encode(png).decode()},
            "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 1, 8, 8],
                        "data": [float(v) for v in input_tensor.ravel()]}],
            "outputs": [{"name": "logits", "datatype": "FP32", "shape": list(logits.shape),
                         "data": [float(v) for v in logits.ravel()]}],
            "probabilities": [float(v) for v in softmax(logits).ravel()],
            "prediction": int(logits.argmax()),
            "label": int(y_test[index]),
        })
    write_reference(os.path.join(out, "reference.json"), cases)

    # A larger JPEG of one digit: exercises decoding and resizing (checked by label, not by tolerance).
    seven = np.asarray(Image.fromarray(np.round(x_test[int(np.flatnonzero(y_test == 7)[0])] * 255)
                                       .astype(np.uint8), mode="L").resize((64, 64), Image.NEAREST))
    Image.fromarray(seven, mode="L").save(os.path.join(out, "sample-7.jpg"), format="JPEG", quality=95)
    print(f"digits v1: held-out accuracy {accuracy:.4f}, {len(cases)} reference cases")


if __name__ == "__main__":
    main()
