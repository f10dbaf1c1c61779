#!/usr/bin/env python3
"""rapidocr's pipeline (angle classifier off, 1 intra-op thread) over a
pages.jsonl whose images are absolute paths, with every
`InferenceSession.run` timed and told apart by its input's height (48 for
recognition), for scripts/ocr_profile.sh. Prints the split.

    .venv-ocrref/bin/python scripts/ocr_profile.py PAGES.jsonl
"""
import json
import sys
import time

import onnxruntime as ort

spent = {"det": 0.0, "rec": 0.0, "rec_cols": 0, "rec_crops": 0}
_run = ort.InferenceSession.run


def timed(self, output_names, input_feed, run_options=None):
    x = next(iter(input_feed.values()))
    t = time.perf_counter()
    r = _run(self, output_names, input_feed, run_options)
    dt = time.perf_counter() - t
    if x.ndim == 4 and x.shape[2] == 48:
        spent["rec"] += dt
        spent["rec_cols"] += x.shape[0] * x.shape[3]
        spent["rec_crops"] += x.shape[0]
    else:
        spent["det"] += dt
    return r


ort.InferenceSession.run = timed


def main():
    from rapidocr import RapidOCR

    engine = RapidOCR(params={"Global.use_cls": False, "Global.log_level": "warning",
                              "EngineConfig.onnxruntime.intra_op_num_threads": 1,
                              "EngineConfig.onnxruntime.inter_op_num_threads": 1})
    items = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
    t = time.perf_counter()
    for it in items:
        engine(it["image"])
    total = time.perf_counter() - t
    print(f"  pipeline {total:.1f} s wall over {len(items)} pages: detection run {spent['det']:.1f} s, "
          f"recognition run {spent['rec']:.1f} s ({spent['rec_crops']} crops, {spent['rec_cols']} padded columns), "
          f"the rest {total - spent['det'] - spent['rec']:.1f} s")


if __name__ == "__main__":
    main()
