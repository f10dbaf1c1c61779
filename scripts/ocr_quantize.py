#!/usr/bin/env python3
"""A derived recognition graph for models/ocr: an int8 quantisation of the
installed PP-OCRv6 small recognition graph (rec.onnx) by ONNX Runtime's
quantisation tool.

- dynamic (default): weights int8 per channel, activations quantised at run
  time; only the op types given (default MatMul: the SVTR neck and the CTC
  head; ConvInteger is slower than float convolution on ONNX Runtime's CPU
  provider, so the convolutional backbone stays float).
- --static LINES_JSON: QDQ, weights int8 per channel, activations uint8 with
  ranges calibrated on the true line crops of the first --pages pages of a
  rendered lines.json (scripts/render_layout_pages.py --lines); every Conv
  and MatMul quantised.

    python scripts/ocr_quantize.py models/ocr/rec.onnx models/ocr/rec-int8.onnx [--ops MatMul]
    python scripts/ocr_quantize.py models/ocr/rec.onnx OUT.onnx --static data/ocr-sim/lines.json

Run from .venv-ocrref (scripts/ocr_reference.requirements.txt pins
onnxruntime 1.31.1 and onnx). The dictionary metadata (key `character`) is
copied over, so the derived graph loads like the original.
"""
import argparse
import json
import os
import sys

import numpy as np
import onnx
from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic,
                                      quantize_static)


class Crops(CalibrationDataReader):
    """True line crops at height 48, BGR, (v / 255 - 0.5) / 0.5, one batch per crop."""

    def __init__(self, lines_json, pages):
        from PIL import Image

        with open(lines_json) as f:
            truth = json.load(f)
        root = os.path.dirname(os.path.abspath(lines_json))
        self.items = []
        for page in truth["pages"][:pages]:
            with Image.open(os.path.join(root, page["id"])) as im:
                im = im.convert("RGB")
                for ln in page["lines"][::3]:
                    x0, y0, x1, y1 = ln["box"]
                    c = im.crop((int(x0), int(y0), int(x1) + 1, int(y1) + 1))
                    w = max(1, round(48 * c.width / max(1, c.height)))
                    a = np.asarray(c.resize((w, 48), Image.BILINEAR), dtype=np.float32)[:, :, ::-1]
                    a = (a / 255.0 - 0.5) / 0.5
                    self.items.append({"x": a.transpose(2, 0, 1)[None].copy()})
        self.it = iter(self.items)

    def get_next(self):
        return next(self.it, None)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--ops", default="MatMul", help="dynamic: comma-separated op types to quantise")
    ap.add_argument("--static", metavar="LINES_JSON", help="static QDQ, calibrated on these pages' true lines")
    ap.add_argument("--pages", type=int, default=10, help="static: pages of LINES_JSON to calibrate on")
    args = ap.parse_args()
    if args.static:
        reader = Crops(args.static, args.pages)
        # Per-channel DequantizeLinear needs opset 13; the graph is opset 11.
        from onnx import version_converter

        src13 = args.dst + ".opset13.onnx"
        onnx.save(version_converter.convert_version(onnx.load(args.src), 13), src13)
        quantize_static(src13, args.dst, reader, quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=["Conv", "MatMul"])
        os.remove(src13)
        what = f"static QDQ, {len(reader.items)} calibration crops"
    else:
        ops = [o for o in args.ops.split(",") if o]
        quantize_dynamic(args.src, args.dst, op_types_to_quantize=ops, per_channel=True,
                         weight_type=QuantType.QInt8)
        what = f"dynamic, {', '.join(ops)}"
    src, dst = onnx.load(args.src), onnx.load(args.dst)
    have = {p.key for p in dst.metadata_props}
    for p in src.metadata_props:
        if p.key not in have:
            dst.metadata_props.append(p)
    onnx.save(dst, args.dst)
    print(f"wrote {args.dst} ({what})", file=sys.stderr)


if __name__ == "__main__":
    main()
