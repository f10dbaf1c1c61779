#!/usr/bin/env python3
"""COCO box-mAP fixtures scored by pycocotools, for labelloop's own mAP code (issue #22:
"labelloop's own mAP code equals pycocotools to 1e-9 on fixtures"). Run once; outputs are
committed under tests/fixtures/detect/map/.

  crafted/  3 categories, 6 images, hand-made edge cases: a duplicate detection (one FP),
            equal scores, a detection of a category with no ground truth (its AP is -1 and
            it is left out of the mean), an image with ground truth and no detections, an
            image with detections and no ground truth, boxes at IoU just above and below
            0.5 / 0.75, 101 detections on one image (maxDets 100 cuts the lowest), small,
            medium and large areas.
  random/   5 categories, 20 images, seeded random ground truth and jittered detections
            with false positives and misses (numpy.random.default_rng(22)).
  pages/    the first 8 synthetic pages of data/layout-pages (ground truth) with
            rapid_layout 1.2.1's boxes on them (scripts/layout_reference.py), if present.

Each folder: gt.json (COCO instances), dets.json (COCO results) and expected.json with
pycocotools' 12 summary stats (COCOeval.stats: AP@[.5:.95], AP@.5, AP@.75, AP small/medium/
large, AR@1, AR@10, AR@100, AR small/medium/large) and per category AP@[.5:.95] and AP@0.5
(area all, maxDets 100; -1 where a category has no ground truth).

    .venv-bench/bin/python scripts/make_map_fixture.py
"""
import argparse
import contextlib
import io
import json
import os

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


def ann(aid, img, cat, x, y, w, h):
    return {"id": aid, "image_id": img, "category_id": cat, "bbox": [float(x), float(y), float(w), float(h)],
            "area": float(w * h), "iscrowd": 0}


def det(img, cat, x, y, w, h, s):
    return {"image_id": img, "category_id": cat, "bbox": [float(x), float(y), float(w), float(h)], "score": float(s)}


def crafted():
    cats = [{"id": 1, "name": "text"}, {"id": 2, "name": "title"}, {"id": 3, "name": "figure"}]
    images = [{"id": i, "file_name": f"img_{i}.png", "width": 640, "height": 480} for i in range(1, 7)]
    g, d = [], []
    a = lambda *v: g.append(ann(len(g) + 1, *v))  # noqa: E731
    # image 1: two texts and a title; a duplicate text detection, a title at IoU ~0.55
    a(1, 1, 10, 10, 200, 50)
    a(1, 1, 10, 80, 200, 50)
    a(1, 2, 300, 10, 100, 20)
    d += [det(1, 1, 10, 10, 200, 50, 0.95), det(1, 1, 12, 11, 200, 50, 0.90), det(1, 1, 10, 85, 200, 50, 0.80),
          det(1, 2, 300, 10, 100, 11, 0.70)]  # title IoU 0.55
    # image 2: a figure (large area), detections with equal scores, one a miss
    a(2, 3, 100, 100, 300, 200)
    a(2, 1, 20, 20, 30, 10)  # small area
    d += [det(2, 3, 110, 105, 300, 200, 0.60), det(2, 3, 400, 300, 50, 50, 0.60), det(2, 1, 21, 20, 30, 10, 0.60)]
    # image 3: ground truth, no detections
    a(3, 1, 50, 50, 100, 40)
    a(3, 2, 50, 10, 120, 20)
    # image 4: detections, no ground truth (all false positives), including a category-3 box
    d += [det(4, 1, 0, 0, 50, 50, 0.85), det(4, 3, 100, 100, 60, 60, 0.40)]
    # image 5: IoU just above / below 0.75 for texts
    a(5, 1, 0, 0, 100, 100)
    a(5, 1, 200, 0, 100, 100)
    d += [det(5, 1, 0, 0, 100, 76, 0.5), det(5, 1, 200, 0, 100, 74, 0.55)]
    # image 6: 101 text detections against 2 texts (maxDets 100 drops the lowest, which is a hit)
    a(6, 1, 0, 0, 40, 40)
    a(6, 1, 500, 400, 40, 40)
    for k in range(100):
        d.append(det(6, 1, 100 + (k % 10) * 30, 100 + (k // 10) * 25, 20, 20, 0.9 - k * 0.001))
    d.append(det(6, 1, 500, 400, 40, 40, 0.01))
    d.append(det(6, 1, 0, 0, 40, 40, 0.3))
    # a category with detections but no ground truth anywhere: add category 4
    cats.append({"id": 4, "name": "table"})
    d.append(det(1, 4, 0, 300, 100, 100, 0.99))
    return {"images": images, "annotations": g, "categories": cats}, d


def random_set(rng):
    cats = [{"id": i, "name": f"c{i}"} for i in range(1, 6)]
    images = [{"id": i, "file_name": f"r_{i}.png", "width": 800, "height": 600} for i in range(1, 21)]
    g, d = [], []
    for im in images:
        for _ in range(rng.integers(0, 12)):
            w, h = rng.uniform(8, 300), rng.uniform(8, 200)
            x, y = rng.uniform(0, 800 - w), rng.uniform(0, 600 - h)
            c = int(rng.integers(1, 6))
            g.append(ann(len(g) + 1, im["id"], c, x, y, w, h))
            if rng.random() < 0.85:  # found, jittered
                j = rng.normal(0, 0.08, 4)
                c2 = c if rng.random() < 0.9 else int(rng.integers(1, 6))
                d.append(det(im["id"], c2, x + j[0] * w, y + j[1] * h, w * (1 + j[2]), h * (1 + j[3]),
                             round(float(rng.uniform(0.3, 1.0)), 2)))  # rounded: ties happen
        for _ in range(rng.integers(0, 4)):  # false positives
            w, h = rng.uniform(8, 200), rng.uniform(8, 150)
            d.append(det(im["id"], int(rng.integers(1, 6)), rng.uniform(0, 800 - w), rng.uniform(0, 600 - h), w, h,
                         round(float(rng.uniform(0.05, 0.9)), 2)))
    return {"images": images, "annotations": g, "categories": cats}, d


def pages_set(root):
    gt_path = os.path.join(root, "data", "layout-pages", "instances.json")
    dt_path = os.path.join(root, "bench-results", "layout", "reference.json")
    if not (os.path.exists(gt_path) and os.path.exists(dt_path)):
        return None
    gt = json.load(open(gt_path))
    keep = {im["id"] for im in gt["images"][:8]}
    gt = {"images": [im for im in gt["images"] if im["id"] in keep],
          "annotations": [a for a in gt["annotations"] if a["image_id"] in keep],
          "categories": gt["categories"]}
    dets = [x for x in json.load(open(dt_path)) if x["image_id"] in keep]
    return gt, dets


def score(gt_path, dt_path):
    with contextlib.redirect_stdout(io.StringIO()):
        cg = COCO(gt_path)
        cd = cg.loadRes(dt_path)
        ev = COCOeval(cg, cd, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    prec = ev.eval["precision"]  # [T, R, K, A, M]
    t50 = int(np.argmin(np.abs(ev.params.iouThrs - 0.5)))
    per = {}
    for k, cid in enumerate(ev.params.catIds):
        p_all = prec[:, :, k, 0, -1]
        p50 = prec[t50, :, k, 0, -1]
        per[str(cid)] = {"ap": float(np.mean(p_all[p_all > -1])) if (p_all > -1).any() else -1.0,
                         "ap50": float(np.mean(p50[p50 > -1])) if (p50 > -1).any() else -1.0}
    names = ["AP@[.5:.95]", "AP@.5", "AP@.75", "AP small", "AP medium", "AP large",
             "AR@1", "AR@10", "AR@100", "AR small", "AR medium", "AR large"]
    return {"stats": [float(s) for s in ev.stats], "stats_names": names, "per_category": per,
            "params": {"iouType": "bbox", "maxDets": [1, 10, 100], "iouThrs": [round(float(t), 2) for t in ev.params.iouThrs],
                       "recThrs": 101, "areaRng": {"all": [0, 1e10], "small": [0, 1024], "medium": [1024, 9216],
                                                   "large": [9216, 1e10]}}}


def write(out, gt, dets):
    os.makedirs(out, exist_ok=True)
    gp, dp = os.path.join(out, "gt.json"), os.path.join(out, "dets.json")
    with open(gp, "w") as f:
        json.dump(gt, f, indent=0)
    with open(dp, "w") as f:
        json.dump(dets, f, indent=0)
    exp = score(gp, dp)
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(exp, f, indent=1)
        f.write("\n")
    print(f"{out}: {len(gt['images'])} images, {len(gt['annotations'])} boxes, {len(dets)} detections, "
          f"mAP {exp['stats'][0]:.6f}, mAP@0.5 {exp['stats'][1]:.6f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="tests/fixtures/detect/map")
    a = ap.parse_args()
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
    write(os.path.join(a.out, "crafted"), *crafted())
    write(os.path.join(a.out, "random"), *random_set(np.random.default_rng(22)))
    p = pages_set(root)
    if p:
        write(os.path.join(a.out, "pages"), *p)
    else:
        print("pages/: skipped (needs data/layout-pages and bench-results/layout/reference.json)")


if __name__ == "__main__":
    main()
