"""The Python peer for scripts/bench_http.sh: a Label Studio-style ML backend.

This is what a Label Studio user runs today to pre-label images: a small Flask
app served by gunicorn, with the ONNX model loaded once per worker process, and
a `POST /predict` that takes Label Studio tasks and answers Label Studio
predictions. Written the idiomatic way (PIL + numpy decoding, one batched
session.run per request), not made slow on purpose.

    cd scripts/bench && gunicorn -w 2 -b 127.0.0.1:9090 ls_backend:app

Request:  {"tasks": [{"id": 1, "data": {"image": "<local path, base64 PNG or data: URI>"}}, ...]}
Response: {"results": [{"result": [{"from_name": "label", "to_name": "image",
                                    "type": "choices", "value": {"choices": ["Bag"]}}],
                        "score": 0.93, "model_version": "1.0.0"}, ...]}

Environment:
  LS_BACKEND_MODEL    model folder (model.onnx + model.toml); default models/fashion-mnist-cnn
  LS_BACKEND_THREADS  ONNX Runtime intra-op threads per worker; default 1 (see below)
  LS_BACKEND_DATA_ROOT  folder local image paths are read under; default data/fashion-mnist
"""
import base64
import binascii
import io
import os
import tomllib

import numpy as np
import onnxruntime as ort
from flask import Flask, jsonify, request
from PIL import Image

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MODEL_DIR = os.environ.get("LS_BACKEND_MODEL", os.path.join(ROOT, "models", "fashion-mnist-cnn"))

# Thread choice: gunicorn runs 2 sync worker processes on a 2-core machine, each
# with its own InferenceSession. One intra-op thread per worker uses both cores
# when both workers are busy (2 workers x 1 thread = 2 cores) without the
# oversubscription (and thread-pool spinning) that 2 x 2 threads would cause.
# labelloop gets the same 2 cores as one process with one 2-thread session.
THREADS = int(os.environ.get("LS_BACKEND_THREADS", "1"))
DATA_ROOT = os.path.realpath(os.environ.get("LS_BACKEND_DATA_ROOT", os.path.join(ROOT, "data", "fashion-mnist")))
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")

with open(os.path.join(MODEL_DIR, "model.toml"), "rb") as f:
    MANIFEST = tomllib.load(f)
LABELS = MANIFEST["labels"]
MODEL_VERSION = MANIFEST.get("version", "0")
_INP = MANIFEST["input"]
WIDTH, HEIGHT = _INP["width"], _INP["height"]
SCALE = np.float32(_INP.get("scale", 1 / 255))
MEAN = np.float32(_INP["mean"][0])
STD = np.float32(_INP["std"][0])

# Loaded at import time. gunicorn (without --preload) imports the app in each
# worker after forking, so every worker has its own session, loaded once.
_opts = ort.SessionOptions()
_opts.intra_op_num_threads = THREADS
_opts.inter_op_num_threads = 1
_opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
SESSION = ort.InferenceSession(os.path.join(MODEL_DIR, "model.onnx"), _opts,
                               providers=["CPUExecutionProvider"])
INPUT_NAME = _INP.get("name", SESSION.get_inputs()[0].name)

app = Flask(__name__)


class BadTask(ValueError):
    pass


def read_image(ref):
    """A local path under LS_BACKEND_DATA_ROOT (what Label Studio's local storage gives a
    backend), or a base64 PNG, optionally a data: URI. Base64 has no '.', so a reference
    ending in an image suffix is a path."""
    if ref.lower().endswith(IMAGE_SUFFIXES):
        path = os.path.realpath(os.path.join(DATA_ROOT, ref))
        if not path.startswith(DATA_ROOT + os.sep):
            raise BadTask(f"{ref!r} is outside the data root")
        return path
    if ref.startswith("data:"):
        ref = ref.split(",", 1)[1]
    return io.BytesIO(base64.b64decode(ref, validate=True))


def decode(image_ref):
    """An image reference (see read_image) -> [H, W] uint8 greyscale."""
    try:
        with Image.open(read_image(image_ref)) as im:
            im = im.convert("L")
            if im.size != (WIDTH, HEIGHT):
                im = im.resize((WIDTH, HEIGHT), Image.Resampling.BILINEAR)
            return np.asarray(im)
    except (binascii.Error, OSError) as e:
        raise BadTask(f"cannot decode image: {e}") from e


@app.get("/health")
def health():
    return jsonify({"status": "UP", "model_class": "FashionMnistOnnx"})


@app.post("/predict")
def predict():
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("tasks"), list):
        return jsonify({"error": "body must be {\"tasks\": [...]}"}), 400
    tasks = body["tasks"]
    if not tasks:
        return jsonify({"results": []})
    try:
        pixels = np.stack([decode(t["data"]["image"]) for t in tasks])
    except (KeyError, TypeError) as e:
        return jsonify({"error": f"every task needs data.image: {e}"}), 400
    except BadTask as e:
        return jsonify({"error": str(e)}), 400

    x = pixels.astype(np.float32) * SCALE
    x -= MEAN
    x /= STD
    (probs,) = SESSION.run(["probabilities"], {INPUT_NAME: x[:, None, :, :]})  # one batch per request
    top = probs.argmax(axis=1)
    results = [{
        "result": [{"from_name": "label", "to_name": "image", "type": "choices",
                    "value": {"choices": [LABELS[k]]}}],
        "score": float(probs[i, k]),
        "model_version": MODEL_VERSION,
    } for i, k in enumerate(top.tolist())]
    return jsonify({"results": results})
