#!/usr/bin/env python3
"""pycocotools box mAP of COCO detection results against COCO instances, as JSON.

    python scripts/coco_eval.py GT.json DETS.json [--f1-score 0.5] [--f1-iou 0.5]

Prints {"map50", "map", "per_class_ap50": {label: AP@0.5}, "f1", "precision",
"recall", "tp", "fp", "fn", "detections", "ground_truth", "images",
"images_all_right"}. mAP is pycocotools' COCOeval (iouType bbox, maxDets 100);
per-class AP@0.5 is read from its precision array (-1 for a class without ground
truth is left out). F1 counts detections with score >= --f1-score, matched greedily
by score to unmatched ground truth of the same class at IoU >= --f1-iou per image
(as COCOeval matches); an image is "all right" when it has no FP and no FN.
"""
import argparse
import contextlib
import io
import json
import sys

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


def iou_xywh(a, b):
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax1, bx1) - max(a[0], b[0]))
    ih = max(0.0, min(ay1, by1) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def f1_at(gt, dets, score_thr, iou_thr):
    by_img_gt, by_img_dt = {}, {}
    for a in gt["annotations"]:
        by_img_gt.setdefault(a["image_id"], []).append(a)
    for d in dets:
        if d["score"] >= score_thr:
            by_img_dt.setdefault(d["image_id"], []).append(d)
    tp = fp = fn = 0
    all_right = 0
    for im in gt["images"]:
        g = by_img_gt.get(im["id"], [])
        ds = sorted(by_img_dt.get(im["id"], []), key=lambda d: -d["score"])
        used = [False] * len(g)
        itp = ifp = 0
        for d in ds:
            best, bi = iou_thr, -1
            for j, a in enumerate(g):
                if used[j] or a["category_id"] != d["category_id"]:
                    continue
                v = iou_xywh(d["bbox"], a["bbox"])
                if v >= best:
                    best, bi = v, j
            if bi >= 0:
                used[bi] = True
                itp += 1
            else:
                ifp += 1
        ifn = len(g) - itp
        tp, fp, fn = tp + itp, fp + ifp, fn + ifn
        all_right += int(ifp == 0 and ifn == 0)
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return {"f1": f1, "precision": p, "recall": r, "tp": tp, "fp": fp, "fn": fn,
            "images_all_right": all_right}


def evaluate(gt_path, dets_path, score_thr=0.5, iou_thr=0.5):
    gt = json.load(open(gt_path))
    dets = json.load(open(dets_path))
    with contextlib.redirect_stdout(io.StringIO()):
        cg = COCO(gt_path)
        if dets:
            cd = cg.loadRes(dets_path)
            ev = COCOeval(cg, cd, "bbox")
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
    out = {"map50": 0.0, "map": 0.0, "per_class_ap50": {}}
    if dets:
        out["map"] = float(ev.stats[0])
        out["map50"] = float(ev.stats[1])
        prec = ev.eval["precision"]  # [T, R, K, A, M]
        t50 = int(np.argmin(np.abs(ev.params.iouThrs - 0.5)))
        names = {c["id"]: c["name"] for c in gt["categories"]}
        for k, cid in enumerate(ev.params.catIds):
            pr = prec[t50, :, k, 0, -1]  # area all, maxDets 100
            if (pr > -1).any():
                out["per_class_ap50"][names[cid]] = float(np.mean(pr[pr > -1]))
    out.update(f1_at(gt, dets, score_thr, iou_thr))
    out.update({"detections": len(dets), "ground_truth": len(gt["annotations"]),
                "images": len(gt["images"]), "f1_score_threshold": score_thr, "f1_iou": iou_thr})
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("gt")
    ap.add_argument("dets")
    ap.add_argument("--f1-score", type=float, default=0.5)
    ap.add_argument("--f1-iou", type=float, default=0.5)
    args = ap.parse_args()
    json.dump(evaluate(args.gt, args.dets, args.f1_score, args.f1_iou), sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
