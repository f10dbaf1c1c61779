#!/usr/bin/env python3
"""The recognition levers of README ("OCR", "Why not 2×"), on the
recognition graph alone (models/ocr/rec.onnx, 1 intra-op thread, process
CPU time, 3 alternating rounds, medians):

  batch   per-crop cost at batch 1 / 6 / 16 / 32, width 320, and at widths
          96 / 160 / 320 / 640, batch 6;
  pad     line exact-match of true-line crops of the first 5 pages of
          data/ocr-pages, each run alone at its own width and padded to
          320 (rapidocr's minimum);
  graphs  [6, 3, 48, 480] through rec.onnx and each derived graph given
          (scripts/ocr_quantize.py), ratios against rec.onnx.

    .venv-ocrref/bin/python scripts/ocr_rec_levers.py batch
    .venv-ocrref/bin/python scripts/ocr_rec_levers.py pad
    .venv-ocrref/bin/python scripts/ocr_rec_levers.py graphs OUT1.onnx [OUT2.onnx ...]
"""
import json
import os
import sys
import time

import numpy as np
import onnxruntime as ort

REC = "models/ocr/rec.onnx"


def session(path):
    o = ort.SessionOptions()
    o.intra_op_num_threads = 1
    o.inter_op_num_threads = 1
    return ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])


def cpu(s, x, reps=1):
    t = time.process_time()
    for _ in range(reps):
        s.run(None, {"x": x})
    return time.process_time() - t


def batch():
    s = session(REC)
    shapes = [(1, 320), (6, 320), (16, 320), (32, 320), (6, 96), (6, 160), (6, 640)]
    xs = {k: np.random.RandomState(0).uniform(-1, 1, (k[0], 3, 48, k[1])).astype(np.float32) for k in shapes}
    for x in xs.values():
        s.run(None, {"x": x})
    times = {k: [] for k in shapes}
    for _ in range(3):
        for k in shapes:
            times[k].append(cpu(s, xs[k]) / k[0])
    for k in shapes:
        print(f"batch {k[0]:2d} width {k[1]:3d}: {1000 * np.median(times[k]):.1f} ms per crop")


def pad():
    from PIL import Image

    s = session(REC)
    chars = [""] + s.get_modelmeta().custom_metadata_map["character"].splitlines() + [" "]
    truth = json.load(open("data/ocr-pages/lines.json"))

    def decode(p):
        out, prev = [], -1
        for k in p.argmax(-1):
            if k != prev and k != 0:
                out.append(chars[k])
            prev = k
        return "".join(out)

    right, n = {"own": 0, "pad320": 0}, 0
    for page in truth["pages"][:5]:
        im = Image.open(os.path.join("data/ocr-pages", page["id"])).convert("RGB")
        for ln in page["lines"]:
            x0, y0, x1, y1 = ln["box"]
            c = im.crop((int(x0) - 3, int(y0) - 3, int(x1) + 4, int(y1) + 4))
            w = max(1, int(np.ceil(48 * c.width / c.height)))
            a = (np.asarray(c.resize((w, 48), Image.BILINEAR), dtype=np.float32)[:, :, ::-1] / 255 - 0.5) / 0.5
            a = a.transpose(2, 0, 1)[None]
            for k, width in [("own", w), ("pad320", max(w, 320))]:
                x = np.zeros((1, 3, 48, width), np.float32)
                x[..., :w] = a
                right[k] += " ".join(decode(s.run(None, {"x": x})[0][0]).split()) == ln["text"]
            n += 1
    print(f"{n} true-line crops: exact at own width {right['own'] / n:.3f}, padded to 320 {right['pad320'] / n:.3f}")


def graphs(paths):
    paths = [REC] + paths
    x = np.random.RandomState(0).uniform(-1, 1, (6, 3, 48, 480)).astype(np.float32)
    ss = {p: session(p) for p in paths}
    for s in ss.values():
        s.run(None, {"x": x})
    times = {p: [] for p in paths}
    for _ in range(3):
        for p in paths:
            times[p].append(cpu(ss[p], x, 2))
    base = np.median(times[REC])
    for p in paths:
        print(f"{p}: {np.median(times[p]):.3f} CPU-s per 2 runs, {base / np.median(times[p]):.2f}x rec.onnx")


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "batch"
    {"batch": batch, "pad": pad}.get(what, lambda: graphs(sys.argv[2:]))()
