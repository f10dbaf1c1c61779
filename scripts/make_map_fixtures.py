#!/usr/bin/env python3
"""Reference COCO bbox mAP for `src/calibrate/matching.rs`, computed by
pycocotools' `COCOeval` and written to `tests/fixtures/detect/map_cases.json`,
which `calibrate::matching::coco_map` is checked against to 1e-9
(`cargo test --test map_fixtures`).

    python3 scripts/make_map_fixtures.py            # pip-installs the pins in a temp venv, removed after
    python3 scripts/make_map_fixtures.py --venv DIR # reuses (or makes) the venv in DIR

The cases are small and random (fixed seeds) but aimed at the places where
an implementation can quietly differ from pycocotools: scores tied within
and across images, truth boxes tied in IoU, IoUs exactly on a threshold,
recalls exactly on a recall threshold (k/10 against k·0.01), classes with
detections but no truth and classes with neither, images without
detections or without truth, more than 100 detections in one image and
class (pycocotools keeps the 100 best), and arbitrary float coordinates.

Boxes are stored as corners `[x0, y0, x1, y1]` (labelloop's `BoxPx`) and
given to pycocotools as `[x0, y0, x1 - x0, y1 - y0]`, the very floats that
`BoxPx::to_coco` computes, so both sides see the same numbers.

Deterministic: re-running with the pinned versions rewrites the same file.
"""

import contextlib
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile

PINS = ["pycocotools==2.0.11", "numpy==2.4.6"]
OUT = os.path.join(
    os.path.dirname(os.path.abspath(__file__)),
    "..",
    "tests",
    "fixtures",
    "detect",
    "map_cases.json",
)


def ensure_pycocotools():
    """Re-runs this script inside a venv that has the pins, unless it is
    already running in one (marked by LABELLOOP_MAP_FIXTURES_VENV)."""
    if os.environ.get("LABELLOOP_MAP_FIXTURES_VENV"):
        return
    args = sys.argv[1:]
    venv = args[args.index("--venv") + 1] if "--venv" in args else None
    temporary = venv is None
    if temporary:
        venv = tempfile.mkdtemp(prefix="map-fixtures-venv-")
    python = os.path.join(venv, "bin", "python")
    if not os.path.exists(python):
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    subprocess.run([python, "-m", "pip", "install", "-q", *PINS], check=True)
    env = dict(os.environ, LABELLOOP_MAP_FIXTURES_VENV=venv)
    returncode = subprocess.run([python, os.path.abspath(__file__)], env=env).returncode
    if temporary:
        shutil.rmtree(venv, ignore_errors=True)
    sys.exit(returncode)


# ---- cases -------------------------------------------------------------------


def snap(v, grid):
    """Rounds to a dyadic grid (1/grid, grid a power of two), so that
    `x0 + (x1 - x0)` is exact and IoUs can tie exactly."""
    return round(v * grid) / grid if grid else v


def random_box(rng, width, height, grid, min_side=4.0):
    w = rng.uniform(min_side, width / 2)
    h = rng.uniform(min_side, height / 2)
    x0 = rng.uniform(0, width - w)
    y0 = rng.uniform(0, height - h)
    return [snap(x0, grid), snap(y0, grid), snap(x0 + w, grid), snap(y0 + h, grid)]


def jitter(rng, box, width, height, amount, grid):
    x0, y0, x1, y1 = box
    dx = (x1 - x0) * amount
    dy = (y1 - y0) * amount
    nx0 = min(max(0.0, x0 + rng.uniform(-dx, dx)), width - 1)
    ny0 = min(max(0.0, y0 + rng.uniform(-dy, dy)), height - 1)
    nx1 = max(min(width, x1 + rng.uniform(-dx, dx)), nx0 + 1)
    ny1 = max(min(height, y1 + rng.uniform(-dy, dy)), ny0 + 1)
    return [snap(nx0, grid), snap(ny0, grid), snap(nx1, grid), snap(ny1, grid)]


def score(rng, levels):
    """A score in (0, 1); with `levels`, one of that many values, so that
    ties are common."""
    if levels:
        return rng.randint(1, levels) / levels
    return rng.random()


def make_image(rng, width, height, truths_per_class, *, grid, levels, hit_rate,
               fp_per_class, dup_rate=0.2, jitter_amount=0.25):
    """Truth boxes per class, and detections: a jittered copy of most truths
    (sometimes two: duplicates), plus random false positives."""
    truth, preds = [], []
    for cls, n in truths_per_class.items():
        for _ in range(n):
            box = random_box(rng, width, height, grid)
            truth.append(box + [cls])
            if rng.random() < hit_rate:
                preds.append(jitter(rng, box, width, height, jitter_amount, grid) + [cls, score(rng, levels)])
            if rng.random() < dup_rate:
                preds.append(jitter(rng, box, width, height, jitter_amount, grid) + [cls, score(rng, levels)])
    for cls, n in fp_per_class.items():
        for _ in range(n):
            preds.append(random_box(rng, width, height, grid) + [cls, score(rng, levels)])
    rng.shuffle(preds)
    return {"width": width, "height": height, "truth": truth, "preds": preds}


def case_basic(rng):
    images = [
        make_image(rng, 640, 480, {0: 10, 1: 3, 2: 5}, grid=64, levels=0, hit_rate=0.8,
                   fp_per_class={0: 3, 1: 2, 2: 1})
        for _ in range(4)
    ]
    return {"name": "basic", "num_classes": 3, "images": images}


def case_ties(rng):
    """Coarse scores (ties within and across images) and integer corners;
    duplicated truth boxes (IoU ties between truths)."""
    images = []
    for _ in range(5):
        img = make_image(rng, 200, 100, {0: 4, 1: 6}, grid=1, levels=5, hit_rate=0.9,
                         fp_per_class={0: 2, 1: 2}, dup_rate=0.5, jitter_amount=0.1)
        img["truth"].append(list(img["truth"][0]))
        img["preds"].append(img["truth"][0][:4] + [img["truth"][0][4], 0.6])
        images.append(img)
    return {"name": "ties", "num_classes": 2, "images": images}


def case_classes_without_truth(rng):
    """Class 2 has detections but no truth (AP −1); class 3 has nothing."""
    images = [
        make_image(rng, 800, 600, {0: 5, 1: 2}, grid=16, levels=20, hit_rate=0.7,
                   fp_per_class={0: 2, 2: 3})
        for _ in range(3)
    ]
    return {"name": "classes_without_truth", "num_classes": 4, "images": images}


def case_empty_images(rng):
    """Images with truth but no detections, with neither, and with
    detections but no truth."""
    full = make_image(rng, 320, 240, {0: 3, 1: 3, 2: 2}, grid=32, levels=0, hit_rate=0.8,
                      fp_per_class={1: 2})
    no_dets = make_image(rng, 320, 240, {0: 2, 2: 4}, grid=32, levels=0, hit_rate=0.0,
                         fp_per_class={}, dup_rate=0.0)
    nothing = {"width": 320, "height": 240, "truth": [], "preds": []}
    no_truth = make_image(rng, 320, 240, {}, grid=32, levels=0, hit_rate=0.0,
                          fp_per_class={0: 3, 2: 1})
    return {"name": "empty_images", "num_classes": 3, "images": [full, no_dets, nothing, no_truth, full]}


def case_many_detections(rng):
    """150 detections of class 0 in one image (pycocotools keeps the 100
    best by score), 40 of class 1 in it too."""
    crowded = make_image(rng, 1920, 1080, {0: 60, 1: 20}, grid=8, levels=50, hit_rate=0.9,
                         fp_per_class={0: 150, 1: 20})
    other = make_image(rng, 1920, 1080, {0: 10, 1: 5}, grid=8, levels=50, hit_rate=0.9,
                       fp_per_class={0: 5})
    return {"name": "many_detections", "num_classes": 2, "images": [crowded, other]}


def case_thresholds_exactly(rng):
    """IoUs exactly 0.5, 0.75 and 0.95 (dyadic boxes against a 10×10
    truth), and 10 truths per class so recalls hit k/10."""
    truth, preds = [], []
    for i in range(10):
        base = [20.0 * i, 0.0, 20.0 * i + 10.0, 10.0]
        truth.append(base + [0])
        truth.append(base + [1])
    exact = {0.5: 5.0, 0.75: 7.5, 0.95: 9.5}
    for i, (iou, h) in enumerate(list(exact.items()) * 3):
        preds.append([20.0 * i, 0.0, 20.0 * i + 10.0, h, 0, 0.9 - 0.01 * i])
    for i in range(10):
        if i % 3 != 2:
            preds.append([20.0 * i, 0.0, 20.0 * i + 10.0, 10.0, 1, 0.5 + 0.01 * (i % 4)])
        else:
            preds.append([20.0 * i + 200.0, 50.0, 20.0 * i + 210.0, 60.0, 1, 0.55])
    image = {"width": 500, "height": 100, "truth": truth, "preds": preds}
    other = make_image(rng, 500, 100, {0: 0, 1: 0}, grid=4, levels=4, hit_rate=0.0,
                       fp_per_class={0: 2, 1: 2})
    return {"name": "thresholds_exactly", "num_classes": 2, "images": [image, other]}


def case_float_coordinates(rng):
    """Arbitrary float corners and scores on large images."""
    images = [
        make_image(rng, 20000, 15000, {0: 8, 1: 4, 2: 6}, grid=0, levels=0, hit_rate=0.85,
                   fp_per_class={0: 4, 1: 4, 2: 2})
        for _ in range(3)
    ]
    return {"name": "float_coordinates", "num_classes": 3, "images": images}


# ---- pycocotools ------------------------------------------------------------


def to_coco(box):
    x0, y0, x1, y1 = box
    return [x0, y0, x1 - x0, y1 - y0]


def evaluate(case):
    import numpy as np
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = {
        "images": [
            {"id": i + 1, "width": img["width"], "height": img["height"]}
            for i, img in enumerate(case["images"])
        ],
        "categories": [{"id": k + 1, "name": f"class{k}"} for k in range(case["num_classes"])],
        "annotations": [],
    }
    dets = []
    for i, img in enumerate(case["images"]):
        for t in img["truth"]:
            bbox = to_coco(t[:4])
            gt["annotations"].append({
                "id": len(gt["annotations"]) + 1,
                "image_id": i + 1,
                "category_id": t[4] + 1,
                "bbox": bbox,
                "area": bbox[2] * bbox[3],
                "iscrowd": 0,
            })
        for p in img["preds"]:
            dets.append({"image_id": i + 1, "category_id": p[4] + 1, "bbox": to_coco(p[:4]), "score": p[5]})
    assert dets, "pycocotools' loadRes needs at least one detection"
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(dets)
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    precision = ev.eval["precision"]  # [T, R, K, A, M]; A 0 = 'all', M 2 = 100
    class_ap = []
    for k in range(case["num_classes"]):
        row = []
        for t in range(len(ev.params.iouThrs)):
            s = precision[t, :, k, 0, 2]
            row.append(float(np.mean(s[s > -1])) if (s > -1).any() else -1.0)
        class_ap.append(row)
    expected = {
        "class_ap": class_ap,
        "map_50": float(ev.stats[1]),
        "map_50_95": float(ev.stats[0]),
        "stats": [float(s) for s in ev.stats],
    }
    return expected, ev.params


def main():
    ensure_pycocotools()
    import numpy as np
    import pycocotools

    makers = [
        case_basic,
        case_ties,
        case_classes_without_truth,
        case_empty_images,
        case_many_detections,
        case_thresholds_exactly,
        case_float_coordinates,
    ]
    cases = []
    params = None
    for seed, make in enumerate(makers):
        case = make(random.Random(1000 + seed))
        case["expected"], params = evaluate(case)
        cases.append(case)
    out = {
        "generator": "scripts/make_map_fixtures.py",
        "pycocotools": pycocotools.__version__ if hasattr(pycocotools, "__version__") else PINS[0],
        "numpy": np.__version__,
        "box_format": "truth [x0, y0, x1, y1, class], preds [x0, y0, x1, y1, class, score]; "
                      "pycocotools got [x0, y0, x1 - x0, y1 - y0], classes as category ids class + 1",
        "iou_thresholds": [float(v) for v in params.iouThrs],
        "recall_thresholds": [float(v) for v in params.recThrs],
        "cases": cases,
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    for case in cases:
        e = case["expected"]
        n_preds = sum(len(img["preds"]) for img in case["images"])
        print(f"{case['name']:24s} images {len(case['images'])} preds {n_preds:4d} "
              f"mAP@0.5 {e['map_50']:.6f} mAP@[.5:.95] {e['map_50_95']:.6f}")
    print(f"wrote {os.path.relpath(OUT)}")


if __name__ == "__main__":
    main()
