#!/usr/bin/env python3
"""labelloop's detection JSONL (`labelloop label --model layout ...`) -> COCO detection results.

Each input line: {"id", "width", "height", "regions": [{"label", "score", "box": [x0, y0, x1, y1]}],
"model", "model_version"}, boxes in pixels of the original image (floats). Lines with
"error" are reported and skipped. The id is matched to a COCO image by file_name: exactly,
else by a path ending in "/" + file_name, else by base name (which must be unique); labels
map to category ids by name. Writes [{image_id, category_id, bbox: [x, y, w, h], score}].

    python scripts/labelloop_to_coco.py GT.json labelloop.jsonl -o labelloop-dets.json
"""
import argparse
import json
import os
import sys


def index_images(gt):
    exact = {im["file_name"]: im for im in gt["images"]}
    base = {}
    for im in gt["images"]:
        base.setdefault(os.path.basename(im["file_name"]), []).append(im)
    return exact, base


def find_image(item_id, exact, base):
    norm = item_id.replace("\\", "/")
    if norm in exact:
        return exact[norm]
    for fn, im in exact.items():
        if norm.endswith("/" + fn):
            return im
    cands = base.get(os.path.basename(norm), [])
    return cands[0] if len(cands) == 1 else None


def convert(gt, lines):
    exact, base = index_images(gt)
    cat = {c["name"]: c["id"] for c in gt["categories"]}
    dets, errors, seen = [], [], set()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        rec = json.loads(line)
        if "error" in rec:
            errors.append(f"line {n}: {rec.get('id')}: {rec['error']}")
            continue
        im = find_image(str(rec["id"]), exact, base)
        if im is None:
            raise SystemExit(f"line {n}: id {rec['id']!r} matches no COCO file_name")
        if im["id"] in seen:
            raise SystemExit(f"line {n}: image {im['file_name']} appears twice")
        seen.add(im["id"])
        if (rec.get("width"), rec.get("height")) != (im["width"], im["height"]):
            print(f"warning: line {n}: size {rec.get('width')}x{rec.get('height')} differs from "
                  f"COCO {im['width']}x{im['height']} for {im['file_name']}", file=sys.stderr)
        for r in rec.get("regions", []):
            if r["label"] not in cat:
                raise SystemExit(f"line {n}: label {r['label']!r} is not a COCO category ({sorted(cat)})")
            x0, y0, x1, y1 = (float(v) for v in r["box"])
            dets.append({"image_id": im["id"], "category_id": cat[r["label"]],
                         "bbox": [x0, y0, x1 - x0, y1 - y0], "score": float(r["score"])})
    missing = [im["file_name"] for im in gt["images"] if im["id"] not in seen]
    return dets, errors, missing


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("gt", help="COCO instances (for file names and category ids)")
    ap.add_argument("jsonl", help="labelloop label output")
    ap.add_argument("-o", "--out", required=True)
    args = ap.parse_args()
    gt = json.load(open(args.gt))
    with open(args.jsonl) as f:
        dets, errors, missing = convert(gt, f)
    for e in errors:
        print(f"error line skipped: {e}", file=sys.stderr)
    if missing:
        print(f"warning: {len(missing)} COCO images have no labelloop line (first: {missing[0]})",
              file=sys.stderr)
    with open(args.out, "w") as f:
        json.dump(dets, f)
    print(f"{len(dets)} boxes from {len(gt['images']) - len(missing)} images -> {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
