#!/usr/bin/env python3
"""Leaks of Fashion-MNIST test into train, from `labelloop screen test.jsonl
--reference train.jsonl`: the count, the top 200 candidate pairs by score
(leaks_top200.jsonl, for labeling by eye) and a picture of the top 32 pairs
(leaks_top.png: test image left, training image right, score below)."""
import argparse
import json
import os

import numpy as np
from PIL import Image, ImageDraw


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--issues", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    leaks = []
    for l in open(a.issues):
        r = json.loads(l)
        for i in r.get("issues", []):
            if i["type"] == "leak":
                leaks.append((i["score"], r["id"], i["of"]))
    leaks.sort(key=lambda x: (-x[0], x[1]))
    with open(os.path.join(a.out, "leaks_top200.jsonl"), "w") as f:
        for s, q, of in leaks[:200]:
            f.write(json.dumps({"test": q, "train": of, "score": s, "copy": None}) + "\n")
    top = leaks[:32]
    cols = 4
    rows = (len(top) + cols - 1) // cols
    scale = 3
    cell_w, cell_h = 2 * 28 * scale + 12, 28 * scale + 16
    img = Image.new("L", (cols * cell_w, max(rows, 1) * cell_h), 255)
    draw = ImageDraw.Draw(img)

    def load(id_):
        split, n = id_.split("-")
        return Image.open(os.path.join(a.data, "fashion", split, f"{n}.png")).resize((28 * scale, 28 * scale), Image.NEAREST)

    for k, (s, q, of) in enumerate(top):
        x, y = (k % cols) * cell_w, (k // cols) * cell_h
        img.paste(load(q), (x + 2, y + 2))
        img.paste(load(of), (x + 4 + 28 * scale, y + 2))
        draw.text((x + 4, y + 28 * scale + 3), f"{q} / {of}  {s:.3f}", fill=0)
    img.save(os.path.join(a.out, "leaks_top.png"))
    exact = sum(1 for s, _, _ in leaks if s >= 0.999999)
    print(json.dumps({"test_items_with_a_training_copy": len(leaks), "score_1": exact,
                      "top": [{"test": q, "train": of, "score": s} for s, q, of in leaks[:5]]}))


if __name__ == "__main__":
    main()
