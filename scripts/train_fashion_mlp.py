#!/usr/bin/env python3
"""Train a Fashion-MNIST MLP in pure numpy and export it to ONNX: the second
member of the committee for ensemble disagreement (vote entropy, mean KL).

It sees the same normalised 28x28 input as `fashion-mnist-cnn` but is a
different kind of model (no convolutions), so the two disagree on real,
hard items; that disagreement is what the committee strategies rank by.

Reproducible (numpy default_rng(1)); needs only numpy, onnx and onnxruntime.

Architecture:
  Flatten(784) -> Dense(784->128) + ReLU -> Dense(128->10) -> Softmax

Outputs:
  models/fashion-mnist-mlp/model.onnx
  models/fashion-mnist-mlp/model.toml

Usage:
  python3 scripts/train_fashion_mlp.py [--data DIR] [--out DIR] [--epochs N]
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_fashion_cnn import LABELS, load_split, manifest, normalise, softmax  # noqa: E402

SEED = 1
VERSION = "1.0.0"
HIDDEN = 128


def train(x, y, epochs, batch, rng):
    n = x.shape[0]
    w1 = rng.normal(0, np.sqrt(2 / 784), (784, HIDDEN)).astype(np.float32)
    b1 = np.zeros(HIDDEN, np.float32)
    w2 = rng.normal(0, np.sqrt(2 / HIDDEN), (HIDDEN, 10)).astype(np.float32)
    b2 = np.zeros(10, np.float32)
    params = [w1, b1, w2, b2]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    t = 0
    for epoch in range(epochs):
        lr = 1e-3 * 0.5 * (1 + np.cos(np.pi * epoch / epochs))
        order = rng.permutation(n)
        for s in range(0, n, batch):
            idx = order[s:s + batch]
            xb, yb = x[idx], y[idx]
            h = np.maximum(xb @ w1 + b1, 0)
            p = softmax(h @ w2 + b2)
            d = p.copy()
            d[np.arange(len(yb)), yb] -= 1
            d /= len(yb)
            gw2 = h.T @ d + 1e-4 * w2
            gb2 = d.sum(0)
            dh = (d @ w2.T) * (h > 0)
            gw1 = xb.T @ dh + 1e-4 * w1
            gb1 = dh.sum(0)
            t += 1
            for i, g in enumerate([gw1, gb1, gw2, gb2]):
                m[i] = 0.9 * m[i] + 0.1 * g
                v[i] = 0.999 * v[i] + 0.001 * g * g
                mh = m[i] / (1 - 0.9 ** t)
                vh = v[i] / (1 - 0.999 ** t)
                params[i] -= (lr * mh / (np.sqrt(vh) + 1e-8)).astype(np.float32)
        print(f"epoch {epoch + 1}/{epochs} done", flush=True)
    return params


def predict(params, x):
    w1, b1, w2, b2 = params
    return softmax(np.maximum(x @ w1 + b1, 0) @ w2 + b2)


def build_model(params):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w1, b1, w2, b2 = params
    inits = [
        numpy_helper.from_array(w1, "fc1.weight"),
        numpy_helper.from_array(b1, "fc1.bias"),
        numpy_helper.from_array(w2, "fc2.weight"),
        numpy_helper.from_array(b2, "fc2.bias"),
    ]
    nodes = [
        helper.make_node("Flatten", ["image"], ["flat"], axis=1, name="flatten"),
        helper.make_node("Gemm", ["flat", "fc1.weight", "fc1.bias"], ["fc1"], name="fc1"),
        helper.make_node("Relu", ["fc1"], ["hidden"], name="relu1"),
        helper.make_node("Gemm", ["hidden", "fc2.weight", "fc2.bias"], ["logits"], name="fc2"),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1, name="softmax"),
    ]
    graph = helper.make_graph(
        nodes, "fashion_mnist_mlp",
        inputs=[helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, 28, 28])],
        outputs=[helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 10])],
        initializer=inits,
    )
    model = helper.make_model(graph, producer_name="labelloop/scripts/train_fashion_mlp.py",
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {"labels": "\n".join(LABELS), "version": VERSION})
    onnx.checker.check_model(model, full_check=True)
    return model


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--out", default=os.path.join(root, "models"))
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=128)
    args = ap.parse_args()

    t0 = time.time()
    train_u8, y_train = load_split(args.data, "train")
    test_u8, y_test = load_split(args.data, "t10k")
    x_train = normalise(train_u8).reshape(-1, 784)
    x_test = normalise(test_u8).reshape(-1, 784)
    params = train(x_train, y_train, args.epochs, args.batch_size, np.random.default_rng(SEED))
    np_probs = predict(params, x_test)
    acc = float((np_probs.argmax(1) == y_test).mean())

    import onnx
    import onnxruntime as ort

    out_dir = os.path.join(args.out, "fashion-mnist-mlp")
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "model.onnx")
    onnx.save(build_model(params), path)
    with open(os.path.join(out_dir, "model.toml"), "w") as f:
        f.write(manifest(
            "fashion-mnist-mlp", "float32",
            "MLP (784-128-10) trained by scripts/train_fashion_mlp.py on Fashion-MNIST's "
            "60,000 training images (seed 1); committee member next to fashion-mnist-cnn.",
            embedding=False, version=VERSION))
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    probs = sess.run(["probabilities"], {"image": x_test.reshape(-1, 1, 28, 28)})[0]
    ort_acc = float((probs.argmax(1) == y_test).mean())
    assert np.abs(probs - np_probs).max() < 1e-4, "numpy and ORT disagree"
    assert ort_acc >= 0.86, f"accuracy {ort_acc:.4f} below 0.86"
    print(f"done in {time.time() - t0:.0f}s: numpy acc {acc:.4f}, ORT acc {ort_acc:.4f}, "
          f"{os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
