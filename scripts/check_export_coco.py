#!/usr/bin/env python3
"""labelloop's COCO and YOLO exports, read by the real tools (issue #22).

    python scripts/check_export_coco.py --url http://127.0.0.1:8080 \
        [--gt data/layout-pages/instances.json] [--pages 60] [--review 10] [--token T] [--out DIR]

Against a running `labelloop serve` whose --data-root is the folder of GT (the pages'
`file_name`s are paths under it; scripts/check_export_coco.sh starts one):
1. creates a detection project on the `layout` model and pre-labels the first --pages pages
   (ids = the COCO `file_name`s, so exported images map back to the ground truth);
2. a "person" reviews the first --review pages by sending their ground-truth boxes
   (PUT .../regions);
3. exports `format=coco` (final boxes) and loads it with pycocotools' COCO: only the reviewed
   images, each with exactly its ground-truth boxes (floats, within 1e-9), provenance kept;
4. exports `format=coco&boxes=machine` (every proposal with its score), loads it with COCO,
   and evaluates those boxes against the ground truth with COCOeval (bbox, all pages);
5. exports `format=yolo`, opens it with zipfile (CRC-checked), and reads the reviewed pages'
   boxes back from `class cx cy w h` lines.
Prints one JSON summary; exits 1 on any mismatch.
"""
import argparse
import contextlib
import io
import json
import os
import sys
import time
import urllib.error
import urllib.request
import zipfile

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


def call(base, method, path, token, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    if data is not None:
        req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=600) as r:
            return r.status, r.headers.get("content-type", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("content-type", ""), e.read()


def call_json(base, method, path, token, body=None, want=200):
    code, _, raw = call(base, method, path, token, body)
    if code != want:
        sys.exit(f"{method} {path}: {code} {raw[:500]!r}")
    return json.loads(raw)


def close(a, b, side):
    return abs(a - b) <= 1e-9 * side


def quiet(f, *args):
    """Run a pycocotools call without its progress prints."""
    with contextlib.redirect_stdout(io.StringIO()):
        return f(*args)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--gt", default="data/layout-pages/instances.json")
    ap.add_argument("--pages", type=int, default=60)
    ap.add_argument("--review", type=int, default=10)
    ap.add_argument("--token", default=os.environ.get("LABELLOOP_TOKEN"))
    ap.add_argument("--out", default="target/check-export-coco")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    gt = json.load(open(a.gt))
    cat_name = {c["id"]: c["name"] for c in gt["categories"]}
    images = sorted(gt["images"], key=lambda im: im["id"])[: a.pages]
    by_file = {im["file_name"]: im for im in images}
    gt_boxes = {}
    for ann in gt["annotations"]:
        gt_boxes.setdefault(ann["image_id"], []).append(ann)
    problems = []

    # 1. A detection project, pre-labeled as a job.
    project = call_json(a.url, "POST", "/v1/projects", a.token,
                        {"name": f"coco-check-{int(time.time())}", "model": "layout"}, want=201)
    pid = project["id"]
    items = [{"id": im["file_name"], "path": im["file_name"]} for im in images]
    started = time.time()
    job = call_json(a.url, "POST", f"/v1/projects/{pid}/items", a.token, items, want=202)["job"]
    while job["state"] not in ("done", "failed"):
        time.sleep(1)
        job = call_json(a.url, "GET", f"/v1/jobs/{job['id']}", a.token)
    if job["state"] != "done" or job["errors"]:
        sys.exit(f"pre-labeling job: {job}")
    prelabel_secs = time.time() - started
    listed = call_json(a.url, "GET", f"/v1/projects/{pid}/items?limit=1000", a.token)["items"]
    item_of = {it["client_id"]: it["id"] for it in listed}

    # 2. A person's boxes on the first pages: the ground truth.
    reviewed = images[: a.review]
    for im in reviewed:
        boxes = [{"label": cat_name[g["category_id"]],
                  "box": [g["bbox"][0], g["bbox"][1], g["bbox"][0] + g["bbox"][2],
                          g["bbox"][1] + g["bbox"][3]]}
                 for g in gt_boxes.get(im["id"], [])]
        call_json(a.url, "PUT", f"/v1/projects/{pid}/items/{item_of[im['file_name']]}/regions",
                  a.token, {"regions": boxes})

    # 3. COCO, final boxes: the reviewed pages, exactly their ground truth.
    code, ctype, raw = call(a.url, "GET", f"/v1/projects/{pid}/export?format=coco", a.token)
    if code != 200:
        sys.exit(f"coco export: {code} {raw[:300]!r}")
    final_path = os.path.join(a.out, "final.json")
    open(final_path, "wb").write(raw)
    final = quiet(COCO, final_path)
    if sorted(c["name"] for c in final.loadCats(final.getCatIds())) != sorted(cat_name.values()):
        problems.append("categories differ from the ground truth's names")
    exported_files = sorted(final.imgs[i]["file_name"] for i in final.getImgIds())
    if exported_files != sorted(im["file_name"] for im in reviewed):
        problems.append(f"final export lists {len(exported_files)} images, not the {len(reviewed)} reviewed")
    final_cat = {c["id"]: c["name"] for c in final.dataset["categories"]}
    matched = 0
    for img_id in final.getImgIds():
        fimg = final.imgs[img_id]
        gimg = by_file[fimg["file_name"]]
        if (fimg["width"], fimg["height"]) != (gimg["width"], gimg["height"]):
            problems.append(f"{fimg['file_name']}: size {fimg['width']}x{fimg['height']}")
        want = [(cat_name[g["category_id"]], g["bbox"]) for g in gt_boxes.get(gimg["id"], [])]
        got = final.loadAnns(final.getAnnIds(imgIds=[img_id]))
        for ann in got:
            prov = ann.get("labelloop", {})
            if prov.get("source") != "human" or prov.get("annotator") is None:
                problems.append(f"annotation {ann['id']}: provenance {prov}")
            hit = next((k for k, (n, b) in enumerate(want)
                        if n == final_cat[ann["category_id"]]
                        and all(close(x, y, gimg["width"] if i % 2 == 0 else gimg["height"])
                                for i, (x, y) in enumerate(zip(ann["bbox"], b)))), None)
            if hit is None:
                problems.append(f"{fimg['file_name']}: {ann['bbox']} is not a ground-truth box")
            else:
                want.pop(hit)
                matched += 1
        if want:
            problems.append(f"{fimg['file_name']}: {len(want)} ground-truth boxes missing")

    # 4. COCO, every machine box with its score, evaluated against the ground truth.
    code, _, raw = call(a.url, "GET", f"/v1/projects/{pid}/export?format=coco&boxes=machine", a.token)
    machine_path = os.path.join(a.out, "machine.json")
    open(machine_path, "wb").write(raw)
    machine = quiet(COCO, machine_path)
    mcat = {c["id"]: c["name"] for c in machine.dataset["categories"]}
    gt_cat = {n: i for i, n in cat_name.items()}
    dets = []
    for ann in machine.dataset["annotations"]:
        gimg = by_file[machine.imgs[ann["image_id"]]["file_name"]]
        dets.append({"image_id": gimg["id"], "category_id": gt_cat[mcat[ann["category_id"]]],
                     "bbox": ann["bbox"], "score": ann["score"]})
    coco_gt = quiet(COCO, a.gt)
    coco_dt = quiet(coco_gt.loadRes, dets)
    ev = COCOeval(coco_gt, coco_dt, "bbox")
    ev.params.imgIds = [by_file[machine.imgs[i]["file_name"]]["id"] for i in machine.getImgIds()]
    quiet(ev.evaluate)
    quiet(ev.accumulate)
    quiet(ev.summarize)

    # 5. YOLO: a zip the standard library opens, the reviewed pages' boxes in it.
    code, ytype, raw = call(a.url, "GET", f"/v1/projects/{pid}/export?format=yolo", a.token)
    open(os.path.join(a.out, "yolo.zip"), "wb").write(raw)
    z = zipfile.ZipFile(io.BytesIO(raw))
    bad = z.testzip()
    if bad is not None:
        problems.append(f"yolo zip: CRC error in {bad}")
    names_line = next(l for l in z.read("data.yaml").decode().splitlines() if l.startswith("names: "))
    names = json.loads(names_line[len("names: "):])
    rows = list(__import__("csv").DictReader(io.StringIO(z.read("items.csv").decode())))
    yolo_boxes = 0
    for row in rows:
        gimg = by_file[row["client_id"]]
        w, h = gimg["width"], gimg["height"]
        want = [(cat_name[g["category_id"]], g["bbox"]) for g in gt_boxes.get(gimg["id"], [])]
        for line in z.read(row["labels"]).decode().splitlines():
            c, cx, cy, bw, bh = line.split(" ")
            cx, cy, bw, bh = float(cx), float(cy), float(bw), float(bh)
            xywh = [(cx - bw / 2) * w, (cy - bh / 2) * h, bw * w, bh * h]
            hit = next((k for k, (n, b) in enumerate(want)
                        if n == names[int(c)] and all(close(x, y, w if i % 2 == 0 else h)
                                                      for i, (x, y) in enumerate(zip(xywh, b)))), None)
            if hit is None:
                problems.append(f"yolo {row['labels']}: {line} is not a ground-truth box")
            else:
                want.pop(hit)
                yolo_boxes += 1
        if want:
            problems.append(f"yolo {row['labels']}: {len(want)} ground-truth boxes missing")

    summary = {
        "project": pid,
        "pages": len(images),
        "prelabel_seconds": round(prelabel_secs, 1),
        "coco_final": {
            "content_type": ctype,
            "images": len(final.getImgIds()),
            "annotations": len(final.getAnnIds()),
            "matched_ground_truth_exactly": matched,
            "images_left_out": final.dataset["labelloop"]["images_left_out"],
        },
        "coco_machine": {
            "images": len(machine.getImgIds()),
            "annotations": len(machine.getAnnIds()),
            "map50": round(float(ev.stats[1]), 4),
            "map": round(float(ev.stats[0]), 4),
            "ar100": round(float(ev.stats[8]), 4),
        },
        "yolo": {
            "content_type": ytype,
            "files": len(z.namelist()),
            "label_files": sum(1 for n in z.namelist() if n.startswith("labels/")),
            "boxes_matched_ground_truth": yolo_boxes,
            "names": len(names),
        },
        "problems": problems[:20],
    }
    print(json.dumps(summary, indent=2))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
