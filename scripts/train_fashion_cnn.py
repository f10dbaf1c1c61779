#!/usr/bin/env python3
"""Train a small Fashion-MNIST CNN in pure numpy and export it to ONNX.

Reproducible (numpy default_rng(0)); needs only numpy, onnx and onnxruntime.

Outputs:
  models/fashion-mnist-cnn/model.onnx       fp32 weights, input/outputs float32
  models/fashion-mnist-cnn/model.toml
  models/fashion-mnist-cnn-fp16/model.onnx  fp16 weights, input/outputs float16
                                            (computes in fp32 via Cast nodes)
  models/fashion-mnist-cnn-fp16/model.toml

Architecture:
  Conv3x3(1->16, pad 1) + ReLU + MaxPool2
  Conv3x3(16->32, pad 1) + ReLU + MaxPool2
  Flatten(32*7*7) -> Dense(1568->64) + ReLU   [= `embedding`]
  Dense(64->10) -> Softmax                    [= `probabilities`]

The graph input `image` is already normalised:
  x = (pixel/255 - 0.2860) / 0.3530

Usage:
  python3 scripts/train_fashion_cnn.py [--data DIR] [--out DIR] [--epochs N]
"""

import argparse
import gzip
import os
import time

import numpy as np

LABELS = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
MEAN = 0.2860
STD = 0.3530
SEED = 0
VERSION = "1.0.0"


# --------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------

def load_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[0:4], "big")
    ndim = magic & 0xFF
    assert magic >> 8 == 0x08, f"{path}: expected unsigned byte IDX data"
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    return arr.reshape(dims)


def load_split(data_dir, prefix):
    images = load_idx(os.path.join(data_dir, f"{prefix}-images-idx3-ubyte.gz"))
    labels = load_idx(os.path.join(data_dir, f"{prefix}-labels-idx1-ubyte.gz"))
    assert images.shape[0] == labels.shape[0]
    return images, labels.astype(np.int64)


def normalise(images_u8):
    """uint8 [N,28,28] -> float32 NHWC [N,28,28,1]."""
    x = images_u8.astype(np.float32) / np.float32(255.0)
    x = (x - np.float32(MEAN)) / np.float32(STD)
    return x[..., None]


# --------------------------------------------------------------------------
# numpy layers (NHWC internally)
# --------------------------------------------------------------------------

def im2col3x3(x):
    """x [B,H,W,C] -> cols [B,H,W,9*C], patch order (ky, kx, c), padding 1."""
    b, h, w, c = x.shape
    xp = np.zeros((b, h + 2, w + 2, c), dtype=x.dtype)
    xp[:, 1:-1, 1:-1, :] = x
    cols = np.empty((b, h, w, 9, c), dtype=x.dtype)
    for ky in range(3):
        for kx in range(3):
            cols[:, :, :, ky * 3 + kx, :] = xp[:, ky:ky + h, kx:kx + w, :]
    return cols.reshape(b, h, w, 9 * c)


def col2im3x3(dcols, c):
    """Adjoint of im2col3x3: dcols [B,H,W,9*C] -> dx [B,H,W,C]."""
    b, h, w, _ = dcols.shape
    dcols = dcols.reshape(b, h, w, 9, c)
    dxp = np.zeros((b, h + 2, w + 2, c), dtype=dcols.dtype)
    for ky in range(3):
        for kx in range(3):
            dxp[:, ky:ky + h, kx:kx + w, :] += dcols[:, :, :, ky * 3 + kx, :]
    return dxp[:, 1:-1, 1:-1, :]


def conv3x3(x, w, bias):
    """x [B,H,W,C], w [9*C, M], bias [M] -> (z [B,H,W,M], cols)."""
    cols = im2col3x3(x)
    b, h, wd, k = cols.shape
    z = cols.reshape(-1, k) @ w + bias
    return z.reshape(b, h, wd, -1), cols


def maxpool2(a):
    b, h, w, c = a.shape
    r = a.reshape(b, h // 2, 2, w // 2, 2, c)
    return r.max(axis=(2, 4))


def relu_maxpool2_backward(a, p, dp):
    """Backward through ReLU followed by 2x2 max-pool (a = relu(z), p = pool(a)).

    Ties at zero are killed by the ReLU mask (a > 0); non-zero ties have
    probability ~0 with float inputs.
    """
    b, h, w, c = a.shape
    r = a.reshape(b, h // 2, 2, w // 2, 2, c)
    mask = (r == p[:, :, None, :, None, :]) & (r > 0)
    dz = mask * dp[:, :, None, :, None, :]
    return dz.reshape(b, h, w, c).astype(np.float32, copy=False)


def init_params(rng):
    def he(fan_in, shape):
        return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)

    return {
        "c1w": he(9 * 1, (9 * 1, 16)), "c1b": np.zeros(16, np.float32),
        "c2w": he(9 * 16, (9 * 16, 32)), "c2b": np.zeros(32, np.float32),
        "d1w": he(1568, (1568, 64)), "d1b": np.zeros(64, np.float32),
        "d2w": (rng.standard_normal((64, 10)) * np.sqrt(1.0 / 64)).astype(np.float32),
        "d2b": np.zeros(10, np.float32),
    }


def softmax(logits):
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def forward(params, x, keep=False):
    """x NHWC float32. Returns (probs, embedding[, cache])."""
    z1, cols1 = conv3x3(x, params["c1w"], params["c1b"])
    a1 = np.maximum(z1, 0)
    p1 = maxpool2(a1)
    z2, cols2 = conv3x3(p1, params["c2w"], params["c2b"])
    a2 = np.maximum(z2, 0)
    p2 = maxpool2(a2)
    f = p2.reshape(p2.shape[0], -1)  # (h, w, c) order
    h = np.maximum(f @ params["d1w"] + params["d1b"], 0)
    logits = h @ params["d2w"] + params["d2b"]
    probs = softmax(logits)
    if not keep:
        return probs, h
    cache = dict(cols1=cols1, a1=a1, p1=p1, cols2=cols2, a2=a2, p2=p2, f=f, h=h)
    return probs, h, cache


def backward(params, probs, y, cache):
    b = y.shape[0]
    g = {}
    dlogits = probs.copy()
    dlogits[np.arange(b), y] -= 1.0
    dlogits /= np.float32(b)
    h = cache["h"]
    g["d2w"] = h.T @ dlogits
    g["d2b"] = dlogits.sum(axis=0)
    dh = (dlogits @ params["d2w"].T) * (h > 0)
    g["d1w"] = cache["f"].T @ dh
    g["d1b"] = dh.sum(axis=0)
    dp2 = (dh @ params["d1w"].T).reshape(cache["p2"].shape)
    dz2 = relu_maxpool2_backward(cache["a2"], cache["p2"], dp2)
    cols2 = cache["cols2"]
    dz2f = dz2.reshape(-1, dz2.shape[-1])
    g["c2w"] = cols2.reshape(-1, cols2.shape[-1]).T @ dz2f
    g["c2b"] = dz2f.sum(axis=0)
    dcols2 = (dz2f @ params["c2w"].T).reshape(cols2.shape)
    dp1 = col2im3x3(dcols2, cache["p1"].shape[-1])
    dz1 = relu_maxpool2_backward(cache["a1"], cache["p1"], dp1)
    cols1 = cache["cols1"]
    dz1f = dz1.reshape(-1, dz1.shape[-1])
    g["c1w"] = cols1.reshape(-1, cols1.shape[-1]).T @ dz1f
    g["c1b"] = dz1f.sum(axis=0)
    return g


class Adam:
    def __init__(self, params, b1=0.9, b2=0.999, eps=1e-8):
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}
        self.b1, self.b2, self.eps = b1, b2, eps
        self.t = 0

    def step(self, params, grads, lr):
        self.t += 1
        c1 = 1.0 - self.b1 ** self.t
        c2 = 1.0 - self.b2 ** self.t
        step = float(lr * np.sqrt(c2) / c1)
        for k in params:
            gk = grads[k].astype(np.float32, copy=False)
            self.m[k] *= np.float32(self.b1)
            self.m[k] += np.float32(1.0 - self.b1) * gk
            self.v[k] *= np.float32(self.b2)
            self.v[k] += np.float32(1.0 - self.b2) * gk * gk
            params[k] -= np.float32(step) * self.m[k] / (np.sqrt(self.v[k]) + np.float32(self.eps))


def predict(params, x, batch=1000):
    probs, embs = [], []
    for i in range(0, x.shape[0], batch):
        p, e = forward(params, x[i:i + batch])
        probs.append(p)
        embs.append(e)
    return np.concatenate(probs), np.concatenate(embs)


def lr_at(epoch, epochs, base=1e-3):
    # constant for the first half, then halve every epoch
    half = epochs // 2
    return base if epoch < half else base * 0.5 ** (epoch - half + 1)


def train(x_train, y_train, x_test, y_test, epochs, batch_size):
    rng = np.random.default_rng(SEED)
    params = init_params(rng)
    opt = Adam(params)
    n = x_train.shape[0]
    for epoch in range(epochs):
        t0 = time.time()
        lr = lr_at(epoch, epochs)
        perm = rng.permutation(n)
        loss_sum, correct, seen = 0.0, 0, 0
        for bi, i in enumerate(range(0, n, batch_size)):
            idx = perm[i:i + batch_size]
            xb, yb = x_train[idx], y_train[idx]
            # light augmentation: random horizontal flip (all classes are
            # roughly left/right symmetric garments/shoes/bags)
            flip = rng.random(xb.shape[0]) < 0.5
            xb = np.where(flip[:, None, None, None], xb[:, :, ::-1, :], xb)
            probs, _, cache = forward(params, xb, keep=True)
            loss_sum += float(-np.log(probs[np.arange(len(yb)), yb] + 1e-12).sum())
            correct += int((probs.argmax(axis=1) == yb).sum())
            seen += len(yb)
            grads = backward(params, probs, yb, cache)
            opt.step(params, grads, lr)
            if bi % 100 == 0:
                print(f"  epoch {epoch + 1} batch {bi:4d}/{(n + batch_size - 1) // batch_size} "
                      f"loss {loss_sum / seen:.4f} acc {correct / seen:.4f} "
                      f"({time.time() - t0:.0f}s)", flush=True)
        test_probs, _ = predict(params, x_test)
        test_acc = float((test_probs.argmax(axis=1) == y_test).mean())
        print(f"epoch {epoch + 1}/{epochs}: lr {lr:.2e} train_loss {loss_sum / seen:.4f} "
              f"train_acc {correct / seen:.4f} test_acc {test_acc:.4f} "
              f"time {time.time() - t0:.1f}s", flush=True)
    return params


# --------------------------------------------------------------------------
# ONNX export
# --------------------------------------------------------------------------

def onnx_weights(params):
    """Convert internal NHWC-layout weights to ONNX NCHW conventions."""
    c1w = params["c1w"].reshape(3, 3, 1, 16).transpose(3, 2, 0, 1)    # [M,C,kh,kw]
    c2w = params["c2w"].reshape(3, 3, 16, 32).transpose(3, 2, 0, 1)
    # internal flatten is (h, w, c); ONNX Flatten of NCHW is (c, h, w)
    d1w = params["d1w"].reshape(7, 7, 32, 64).transpose(2, 0, 1, 3).reshape(1568, 64)
    return {
        "conv1.weight": np.ascontiguousarray(c1w), "conv1.bias": params["c1b"],
        "conv2.weight": np.ascontiguousarray(c2w), "conv2.bias": params["c2b"],
        "fc1.weight": np.ascontiguousarray(d1w), "fc1.bias": params["d1b"],
        "fc2.weight": params["d2w"], "fc2.bias": params["d2b"],
    }


def build_model(params, fp16):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    elem = TensorProto.FLOAT16 if fp16 else TensorProto.FLOAT
    store = np.float16 if fp16 else np.float32
    weights = onnx_weights(params)

    initializers = []
    nodes = []
    w = {}  # logical weight name -> fp32 tensor name used by compute nodes
    for name, arr in weights.items():
        if fp16:
            initializers.append(numpy_helper.from_array(arr.astype(store), name=name + ".fp16"))
            nodes.append(helper.make_node("Cast", [name + ".fp16"], [name],
                                          to=TensorProto.FLOAT, name=f"cast_{name}"))
        else:
            initializers.append(numpy_helper.from_array(arr.astype(store), name=name))
        w[name] = name

    x = "image"
    if fp16:
        nodes.append(helper.make_node("Cast", ["image"], ["image_f32"],
                                      to=TensorProto.FLOAT, name="cast_image"))
        x = "image_f32"
    emb_name = "embedding_f32" if fp16 else "embedding"
    prob_name = "probabilities_f32" if fp16 else "probabilities"

    nodes += [
        helper.make_node("Conv", [x, w["conv1.weight"], w["conv1.bias"]], ["conv1"],
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1], name="conv1"),
        helper.make_node("Relu", ["conv1"], ["relu1"], name="relu1"),
        helper.make_node("MaxPool", ["relu1"], ["pool1"], kernel_shape=[2, 2], strides=[2, 2],
                         name="pool1"),
        helper.make_node("Conv", ["pool1", w["conv2.weight"], w["conv2.bias"]], ["conv2"],
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1], name="conv2"),
        helper.make_node("Relu", ["conv2"], ["relu2"], name="relu2"),
        helper.make_node("MaxPool", ["relu2"], ["pool2"], kernel_shape=[2, 2], strides=[2, 2],
                         name="pool2"),
        helper.make_node("Flatten", ["pool2"], ["flat"], axis=1, name="flatten"),
        helper.make_node("Gemm", ["flat", w["fc1.weight"], w["fc1.bias"]], ["fc1"], name="fc1"),
        helper.make_node("Relu", ["fc1"], [emb_name], name="relu3"),
        helper.make_node("Gemm", [emb_name, w["fc2.weight"], w["fc2.bias"]], ["logits"],
                         name="fc2"),
        helper.make_node("Softmax", ["logits"], [prob_name], axis=1, name="softmax"),
    ]
    if fp16:
        nodes += [
            helper.make_node("Cast", [prob_name], ["probabilities"], to=TensorProto.FLOAT16,
                             name="cast_probabilities"),
            helper.make_node("Cast", [emb_name], ["embedding"], to=TensorProto.FLOAT16,
                             name="cast_embedding"),
        ]

    graph = helper.make_graph(
        nodes,
        "fashion_mnist_cnn" + ("_fp16" if fp16 else ""),
        inputs=[helper.make_tensor_value_info("image", elem, ["batch", 1, 28, 28])],
        outputs=[
            helper.make_tensor_value_info("probabilities", elem, ["batch", 10]),
            helper.make_tensor_value_info("embedding", elem, ["batch", 64]),
        ],
        initializer=initializers,
    )
    doc = ("Fashion-MNIST CNN trained by scripts/train_fashion_cnn.py (seed 0). "
           "Input `image` [batch,1,28,28] normalised as (px/255 - 0.2860)/0.3530. "
           "Outputs `probabilities` [batch,10] (softmax) and `embedding` [batch,64] "
           "(post-ReLU penultimate layer)."
           + (" Weights, input and outputs are float16; compute is float32 via Cast nodes."
              if fp16 else ""))
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17)],
        producer_name="labelloop/scripts/train_fashion_cnn.py",
        producer_version=VERSION,
        doc_string=doc,
    )
    model.ir_version = 8
    model.model_version = 1
    helper.set_model_props(model, {"labels": "\n".join(LABELS), "version": VERSION})
    onnx.checker.check_model(model, full_check=True)
    return model


def manifest(name, dtype, description, embedding=True, version=VERSION):
    """model.toml for a Fashion-MNIST model; `embedding` adds the embedding output."""
    labels = ", ".join(f'"{label}"' for label in LABELS)
    text = f'''name = "{name}"
version = "{version}"
task = "image-classification"
description = "{description}"
labels = [{labels}]

[input]
kind = "image"
name = "image"
dtype = "{dtype}"
width = 28
height = 28
channels = 1
layout = "NCHW"
resize_filter = "triangle"
scale = 0.00392156862745098
mean = [0.2860]
std = [0.3530]

[[outputs]]
name = "probabilities"
kind = "probabilities"
'''
    if embedding:
        text += '''
[[outputs]]
name = "embedding"
kind = "embedding"
'''
    return text


def run_ort(path, x_nchw, batch=1000):
    import onnxruntime as ort

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    probs, embs = [], []
    for i in range(0, x_nchw.shape[0], batch):
        p, e = sess.run(["probabilities", "embedding"], {"image": x_nchw[i:i + batch]})
        probs.append(p)
        embs.append(e)
    io = ([(i.name, i.type, i.shape) for i in sess.get_inputs()],
          [(o.name, o.type, o.shape) for o in sess.get_outputs()])
    return np.concatenate(probs), np.concatenate(embs), io


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--out", default=os.path.join(root, "models"))
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=128)
    args = ap.parse_args()

    t_start = time.time()
    train_u8, y_train = load_split(args.data, "train")
    test_u8, y_test = load_split(args.data, "t10k")
    x_train, x_test = normalise(train_u8), normalise(test_u8)
    print(f"loaded train {x_train.shape} test {x_test.shape}", flush=True)

    params = train(x_train, y_train, x_test, y_test, args.epochs, args.batch_size)
    t_train = time.time() - t_start

    np_probs, np_emb = predict(params, x_test)
    np_acc = float((np_probs.argmax(axis=1) == y_test).mean())
    print(f"numpy test accuracy: {np_acc:.4f}")

    import onnx

    x_nchw = np.ascontiguousarray(x_test.transpose(0, 3, 1, 2))
    results = {}
    for fp16, folder, dtype, desc in [
        (False, "fashion-mnist-cnn", "float32",
         "Small CNN trained by scripts/train_fashion_cnn.py on Fashion-MNIST's "
         "60,000 training images (seed 0)."),
        (True, "fashion-mnist-cnn-fp16", "float16",
         "fp16 copy of the small CNN trained by scripts/train_fashion_cnn.py on "
         "Fashion-MNIST's 60,000 training images (seed 0): float16 weights, input "
         "and outputs, computed in fp32 via Cast nodes."),
    ]:
        out_dir = os.path.join(args.out, folder)
        os.makedirs(out_dir, exist_ok=True)
        path = os.path.join(out_dir, "model.onnx")
        onnx.save(build_model(params, fp16), path)
        with open(os.path.join(out_dir, "model.toml"), "w") as f:
            f.write(manifest(folder, dtype, desc))

        xin = x_nchw.astype(np.float16) if fp16 else x_nchw
        probs, emb, io = run_ort(path, xin)
        assert probs.dtype == (np.float16 if fp16 else np.float32)
        acc = float((probs.astype(np.float32).argmax(axis=1) == y_test).mean())
        dp = float(np.abs(probs.astype(np.float32) - np_probs).max())
        de = float(np.abs(emb.astype(np.float32) - np_emb).max())
        agree = float((probs.astype(np.float32).argmax(axis=1) == np_probs.argmax(axis=1)).mean())
        size = os.path.getsize(path)
        print(f"{folder}: {size} bytes, ORT accuracy {acc:.4f}, "
              f"max|dprob| vs numpy {dp:.2e}, max|demb| {de:.2e}, argmax agreement {agree:.4f}")
        print(f"  inputs  {io[0]}\n  outputs {io[1]}")
        if not fp16:
            assert dp < 1e-4 and de < 1e-3 and agree == 1.0, "numpy and ORT disagree"
        results[folder] = (acc, size)

    acc32 = results["fashion-mnist-cnn"][0]
    acc16 = results["fashion-mnist-cnn-fp16"][0]
    assert acc32 >= 0.895, f"fp32 accuracy {acc32:.4f} below 0.895"
    assert abs(acc32 - acc16) <= 0.005, "fp16 accuracy drifted more than 0.5 point"
    print(f"done: fp32 acc {acc32:.4f}, fp16 acc {acc16:.4f}, "
          f"training {t_train:.0f}s, total {time.time() - t_start:.0f}s")


if __name__ == "__main__":
    main()
