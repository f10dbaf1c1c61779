#!/usr/bin/env python3
"""Build the tiny detection-head fixtures in tests/fixtures/detect/ (run once; outputs are committed).

Two ONNX graphs whose outputs are known exactly, for labelloop's yolov8 and rtdetr heads:

  yolov8/model.onnx  input `images` [1,3,64,64] f32 -> `output0` [1, 4+C, A]: per anchor
                     cx, cy, w, h in input pixels and C class scores already sigmoided
                     (ultralytics YOLOv8 export, no NMS in the graph). C=3, A=10.
  rtdetr/model.onnx  input `images` [1,3,64,64] f32 -> `output0` [1, Q, 4+C]: cx, cy, w, h
                     normalised to 0..1 of the input size, class scores sigmoided
                     (ultralytics RT-DETR export, NMS-free). C=3, Q=6.

Each output is a constant plus 0 * ReduceMean(images), so it depends on the input (no
constant folding removes the input) and equals the constant for any finite input.
Each expected.json holds the raw output tensor and the detections a correct decoder returns
above score threshold 0.25 (no score equals it; yolov8: per-class hard NMS at IoU 0.45),
as [x0, y0, x1, y1] in input
pixels with label index, label name and score, sorted by score (descending). Per anchor or
query, the class is the arg-max of the scores (as ultralytics' non_max_suppression does with
multi_label off). Boxes are computed in f64 from the f32 tensor values: compare with a
tolerance of 1e-4 px. The ONNX metadata key `names` holds the classes as ultralytics writes
them ("{0: 'cat', 1: 'dog', 2: 'bird'}"). The script checks both graphs in onnxruntime.

    .venv-bench/bin/python scripts/make_detect_heads.py
"""
import argparse
import json
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SIZE = 64
CLASSES = ["cat", "dog", "bird"]
SCORE_THR = 0.25
NMS_IOU = 0.45

# YOLOv8 anchors: (cx, cy, w, h) in input pixels, then scores for cat, dog, bird.
YOLO_ANCHORS = [
    # two overlapping cats (IoU 0.78): the weaker one is suppressed
    ((20.0, 20.0, 16.0, 16.0), (0.90, 0.05, 0.02)),
    ((22.0, 20.0, 16.0, 16.0), (0.80, 0.10, 0.01)),
    # a dog exactly over the first cat: another class, both survive per-class NMS
    ((20.0, 20.0, 16.0, 16.0), (0.03, 0.85, 0.04)),
    # a cat overlapping the first cat at IoU 0.33 (< 0.45): kept
    ((28.0, 20.0, 16.0, 16.0), (0.60, 0.02, 0.02)),
    # a bird, alone
    ((48.0, 48.0, 10.0, 12.0), (0.01, 0.02, 0.70)),
    # a bird box partly outside the input (cx - w/2 < 0): decoders return it as is
    ((3.0, 50.0, 10.0, 8.0), (0.02, 0.01, 0.55)),
    # sub-threshold anchors: dropped
    ((40.0, 10.0, 12.0, 12.0), (0.24, 0.10, 0.20)),
    ((10.0, 40.0, 8.0, 8.0), (0.05, 0.05, 0.05)),
    # just above the threshold: kept (no score sits exactly at 0.25, so > and >= agree)
    ((40.0, 30.0, 6.0, 6.0), (0.26, 0.0, 0.0)),
    # a dog overlapping the strong dog at IoU 0.88 but weaker: suppressed
    ((20.0, 21.0, 16.0, 15.0), (0.02, 0.50, 0.03)),
]

# RT-DETR queries: (cx, cy, w, h) as fractions of the input, then scores.
RTDETR_QUERIES = [
    ((0.25, 0.25, 0.25, 0.25), (0.92, 0.03, 0.05)),
    ((0.28, 0.25, 0.25, 0.25), (0.05, 0.81, 0.02)),  # overlaps the first: NMS-free, both kept
    ((0.75, 0.70, 0.20, 0.30), (0.10, 0.05, 0.64)),
    ((0.50, 0.50, 0.10, 0.10), (0.20, 0.15, 0.24)),  # below 0.25: dropped
    ((0.60, 0.20, 0.125, 0.0625), (0.30, 0.02, 0.01)),
    ((0.10, 0.90, 0.05, 0.05), (0.01, 0.01, 0.01)),  # background query: dropped
]


def to_xyxy(cx, cy, w, h):
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def candidates(boxes_cxcywh, scores, scale):
    """One candidate per row: arg-max class, its score; boxes in input pixels (f32 math as f64)."""
    out = []
    for (cx, cy, w, h), s in zip(boxes_cxcywh, scores):
        k = int(np.argmax(s))
        sc = float(s[k])
        if sc > SCORE_THR:
            out.append({"box": to_xyxy(cx * scale, cy * scale, w * scale, h * scale),
                        "label_index": k, "label": CLASSES[k], "score": sc})
    return out


def per_class_hard_nms(dets, thr):
    """Sort by score (stable), keep a box unless it overlaps a kept box of its class at IoU > thr."""
    kept = []
    for d in sorted(dets, key=lambda d: -d["score"]):
        if all(k["label_index"] != d["label_index"] or iou(k["box"], d["box"]) <= thr for k in kept):
            kept.append(d)
    return kept


def graph(name, const):
    """images -> const + 0 * ReduceMean(images) (broadcast to const's shape)."""
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, SIZE, SIZE])
    y = helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(const.shape))
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["mean"], keepdims=0),  # scalar
        helper.make_node("Mul", ["mean", "zero"], ["zeroed"]),
        helper.make_node("Add", ["table", "zeroed"], ["output0"]),
    ]
    inits = [numpy_helper.from_array(const.astype(np.float32), "table"),
             numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero")]
    g = helper.make_graph(nodes, name, [x], [y], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], producer_name="labelloop-fixtures")
    m.ir_version = 8
    # ultralytics writes its class names as a Python dict literal under the key "names".
    helper.set_model_props(m, {"names": str(dict(enumerate(CLASSES)))})
    onnx.checker.check_model(m, full_check=True)
    return m


def write(out_dir, model, expected):
    os.makedirs(out_dir, exist_ok=True)
    onnx.save(model, os.path.join(out_dir, "model.onnx"))
    with open(os.path.join(out_dir, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")


def check(out_dir, const):
    import onnxruntime as ort
    sess = ort.InferenceSession(os.path.join(out_dir, "model.onnx"), providers=["CPUExecutionProvider"])
    for x in (np.zeros((1, 3, SIZE, SIZE), np.float32),
              np.random.default_rng(0).normal(size=(1, 3, SIZE, SIZE)).astype(np.float32)):
        (y,) = sess.run(None, {"images": x})
        assert y.shape == const.shape and np.array_equal(y, const.astype(np.float32)), out_dir
    print(f"{out_dir}/model.onnx: output0 {list(const.shape)} checked in onnxruntime {ort.__version__}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="tests/fixtures/detect")
    args = ap.parse_args()

    # YOLOv8: [1, 4 + C, A]
    a = np.array([list(b) + list(s) for b, s in YOLO_ANCHORS], dtype=np.float32)  # [A, 4 + C]
    yolo = a.T[None]  # [1, 4 + C, A]
    f32 = a.astype(np.float64)  # the exact f32 values, as f64
    cands = candidates(f32[:, :4], f32[:, 4:], 1.0)
    dets = per_class_hard_nms(cands, NMS_IOU)
    d = os.path.join(args.out, "yolov8")
    write(d, graph("yolov8_head_fixture", yolo), {
        "head": "yolov8", "input": "images", "input_shape": [1, 3, SIZE, SIZE], "output": "output0",
        "output_shape": list(yolo.shape), "labels": CLASSES, "score_threshold": SCORE_THR,
        "nms_iou": NMS_IOU, "box_format": "x0,y0,x1,y1 in input pixels", "box_tolerance": 1e-4,
        "metadata_names": str(dict(enumerate(CLASSES))),
        "output0": yolo.tolist(), "candidates_above_threshold": len(cands), "detections": dets})
    check(d, yolo)

    # RT-DETR: [1, Q, 4 + C], boxes normalised
    q = np.array([list(b) + list(s) for b, s in RTDETR_QUERIES], dtype=np.float32)
    rtdetr = q[None]
    f64 = q.astype(np.float64)
    dets = sorted(candidates(f64[:, :4], f64[:, 4:], float(SIZE)), key=lambda d: -d["score"])
    d = os.path.join(args.out, "rtdetr")
    write(d, graph("rtdetr_head_fixture", rtdetr), {
        "head": "rtdetr", "input": "images", "input_shape": [1, 3, SIZE, SIZE], "output": "output0",
        "output_shape": list(rtdetr.shape), "labels": CLASSES, "score_threshold": SCORE_THR,
        "nms_iou": None, "box_format": "x0,y0,x1,y1 in input pixels (normalised cx,cy,w,h times 64)",
        "box_tolerance": 1e-4, "metadata_names": str(dict(enumerate(CLASSES))),
        "output0": rtdetr.tolist(), "detections": dets})
    check(d, rtdetr)


if __name__ == "__main__":
    main()
