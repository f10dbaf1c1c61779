#!/usr/bin/env python3
"""Reference OCR for scripts/ocr_figures.sh: rapidocr's own Python pipeline
(rapidocr==3.10.0, PP-OCRv6 small, angle classifier off) or Debian's
Tesseract, over a pages.jsonl, writing labelloop's JSONL shape:

    {"id", "width", "height", "text", "regions": [{"text", "score", "box", "polygon"}]}

    python scripts/ocr_reference.py rapidocr data/ocr-pages/pages.jsonl OUT.jsonl [--threads N]
    python scripts/ocr_reference.py tesseract data/ocr-pages/pages.jsonl OUT.jsonl

rapidocr runs with its defaults except use_cls = False (the 180° classifier
flipped ~4% of long lines on upright pages) and the ONNX Runtime thread count.
Tesseract: `tesseract IMAGE - tsv` (its default page segmentation, English);
a line is its words joined by spaces, its box their union, its score the mean
word confidence / 100.
"""
import argparse
import csv
import io
import json
import os
import subprocess
import sys


def rapidocr_pages(items, root, threads):
    from rapidocr import RapidOCR

    params = {"Global.use_cls": False, "Global.log_level": "warning"}
    if threads:
        params["EngineConfig.onnxruntime.intra_op_num_threads"] = threads
        params["EngineConfig.onnxruntime.inter_op_num_threads"] = 1
    engine = RapidOCR(params=params)
    from PIL import Image

    for item in items:
        path = os.path.join(root, item["image"])
        with Image.open(path) as im:
            w, h = im.size
        res = engine(path)
        regions = []
        if res.boxes is not None and res.txts is not None:
            for box, txt, score in zip(res.boxes, res.txts, res.scores):
                poly = [[float(x), float(y)] for x, y in box]
                xs, ys = [p[0] for p in poly], [p[1] for p in poly]
                regions.append({"text": txt, "score": float(score),
                                "box": [min(xs), min(ys), max(xs), max(ys)], "polygon": poly})
        yield {"id": item["id"], "width": w, "height": h,
               "text": "\n".join(r["text"] for r in regions), "regions": regions}


def tesseract_pages(items, root):
    from PIL import Image

    for item in items:
        path = os.path.join(root, item["image"])
        with Image.open(path) as im:
            w, h = im.size
        tsv = subprocess.run(["tesseract", path, "-", "-l", "eng", "tsv"], check=True,
                             capture_output=True, text=True).stdout
        lines = {}
        for row in csv.DictReader(io.StringIO(tsv), delimiter="\t", quoting=csv.QUOTE_NONE):
            if row.get("level") != "5" or not (row.get("text") or "").strip():
                continue
            key = (row["block_num"], row["par_num"], row["line_num"])
            x0, y0 = float(row["left"]), float(row["top"])
            x1, y1 = x0 + float(row["width"]), y0 + float(row["height"])
            ln = lines.setdefault(key, {"words": [], "box": [x0, y0, x1, y1], "conf": []})
            ln["words"].append(row["text"].strip())
            b = ln["box"]
            ln["box"] = [min(b[0], x0), min(b[1], y0), max(b[2], x1), max(b[3], y1)]
            ln["conf"].append(max(0.0, float(row["conf"])) / 100.0)
        regions = []
        for ln in lines.values():
            x0, y0, x1, y1 = ln["box"]
            regions.append({"text": " ".join(ln["words"]), "score": sum(ln["conf"]) / len(ln["conf"]),
                            "box": ln["box"], "polygon": [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]})
        yield {"id": item["id"], "width": w, "height": h,
               "text": "\n".join(r["text"] for r in regions), "regions": regions}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("engine", choices=["rapidocr", "tesseract"])
    ap.add_argument("pages")
    ap.add_argument("out")
    ap.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: rapidocr's default)")
    args = ap.parse_args()
    root = os.path.dirname(os.path.abspath(args.pages))
    with open(args.pages) as f:
        items = [json.loads(l) for l in f if l.strip()]
    pages = rapidocr_pages(items, root, args.threads) if args.engine == "rapidocr" else tesseract_pages(items, root)
    with open(args.out, "w") as out:
        for p in pages:
            out.write(json.dumps(p, ensure_ascii=False) + "\n")
    print(f"{args.engine}: {len(items)} pages", file=sys.stderr)


if __name__ == "__main__":
    main()
