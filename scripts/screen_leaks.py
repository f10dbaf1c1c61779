#!/usr/bin/env python3
"""Leaks of Fashion-MNIST test into train, from `labelloop screen test.jsonl
--reference train.jsonl`: the count, the top 200 candidate pairs by score
(leaks_top200.jsonl), a picture of the top 32 pairs (leaks_top.png: test
image, training image, and their residual after the best ±2 px shift and a
brightness/contrast fit, ×4; the label from the fixture under each pair) and,
with --labels, the pairs' labels by eye (tests/fixtures/fashion_leaks_top200.jsonl:
`copy` = the same photograph, `different` = another product that looks alike,
`unsure` = 28 px cannot tell) joined on (test, train)."""
import argparse
import json
import os
from collections import Counter

import numpy as np
from PIL import Image, ImageDraw


def aligned_residual(a, b):
    """The residual of `a` against `b` after the best shift in ±2 px and a least-squares gain and offset."""
    best = None
    padded = np.pad(b, 2)
    for dy in range(-2, 3):
        for dx in range(-2, 3):
            bb = padded[2 + dy:30 + dy, 2 + dx:30 + dx]
            x = np.stack([bb.ravel(), np.ones(bb.size)], 1)
            coef, *_ = np.linalg.lstsq(x, a.ravel(), rcond=None)
            res = a - (x @ coef).reshape(a.shape)
            rms = float(np.sqrt((res ** 2).mean()))
            if best is None or rms < best[0]:
                best = (rms, res)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--issues", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--labels", help="the labeled top-200 fixture")
    a = ap.parse_args()
    leaks = []
    for l in open(a.issues):
        r = json.loads(l)
        for i in r.get("issues", []):
            if i["type"] == "leak":
                leaks.append((i["score"], r["id"], i["of"]))
    leaks.sort(key=lambda x: (-x[0], x[1]))
    labels = {}
    if a.labels:
        for l in open(a.labels):
            r = json.loads(l)
            labels[(r["test"], r["train"])] = r["label"]
    with open(os.path.join(a.out, "leaks_top200.jsonl"), "w") as f:
        for s, q, of in leaks[:200]:
            f.write(json.dumps({"test": q, "train": of, "score": s, "label": labels.get((q, of))}) + "\n")

    def load(id_):
        split, n = id_.split("-")
        return np.asarray(Image.open(os.path.join(a.data, "fashion", split, f"{n}.png")).convert("L"), dtype=np.float64)

    top = leaks[:32]
    cols, scale = 4, 3
    w = 28 * scale
    cell_w, cell_h = 3 * w + 14, w + 16
    rows = (len(top) + cols - 1) // cols
    img = Image.new("RGB", (cols * cell_w, max(rows, 1) * cell_h), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    for k, (s, q, of) in enumerate(top):
        x, y = (k % cols) * cell_w, (k // cols) * cell_h
        ta, tb = load(q), load(of)
        _, res = aligned_residual(ta, tb)
        panels = [ta, tb, np.clip(np.abs(res) * 4, 0, 255)]
        for j, p in enumerate(panels):
            tile = Image.fromarray(p.astype(np.uint8)).resize((w, w), Image.NEAREST).convert("RGB")
            img.paste(tile, (x + 2 + j * (w + 2), y + 2))
        lab = labels.get((q, of), "")
        draw.text((x + 4, y + w + 3), f"{q} / {of} {s:.3f} {lab}", fill=(0, 0, 0) if lab != "copy" else (0, 120, 0))
    img.save(os.path.join(a.out, "leaks_top.png"))

    summary = {"test_items_with_a_training_copy": len(leaks),
               "score_1": sum(1 for s, _, _ in leaks if s >= 0.999999),
               "top": [{"test": q, "train": of, "score": s} for s, q, of in leaks[:5]]}
    if labels:
        bands = {}
        for k, (s, q, of) in enumerate(leaks[:200]):
            band = "top 20" if k < 20 else "21-200"
            bands.setdefault(band, Counter())[labels.get((q, of), "unlabeled")] += 1
        summary["top200_by_eye"] = {b: dict(c) for b, c in bands.items()}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
