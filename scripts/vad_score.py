#!/usr/bin/env python3
"""Score speech segments against the calls' ground truth (#24).

A predicted segment is correct when it overlaps a true segment of the same
call at IoU >= 0.5; matching is one-to-one, greedy by IoU (highest first).
Reports per system: precision, recall, F1, the median |start| and |end|
errors of the matched pairs (ms), and how many segments scoring >= 0.8 were
kept at what precision.

  vad_score.py TRUTH.jsonl NAME=PRED.jsonl [NAME=PRED.jsonl ...]
"""

import json
import sys

import numpy as np


def load(path):
    out = {}
    for line in open(path):
        d = json.loads(line)
        if "error" in d:
            out[d["id"]] = None
            continue
        segs = d["segments"]
        out[d["id"]] = [((g[0], g[1], 1.0) if isinstance(g, list) else (g["start"], g["end"], g["score"])) for g in segs]
    return out


def iou(a, b):
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else 0.0


def match(truth, pred):
    pairs = sorted(((iou(t, p), i, j) for i, t in enumerate(truth) for j, p in enumerate(pred)), reverse=True)
    ti, pj, out = set(), set(), []
    for v, i, j in pairs:
        if v < 0.5:
            break
        if i in ti or j in pj:
            continue
        ti.add(i)
        pj.add(j)
        out.append((i, j))
    return out


def score(truth, pred, min_score=0.0):
    tp = n_pred = n_true = 0
    ds, de = [], []
    for cid, t in truth.items():
        p = [g for g in (pred.get(cid) or []) if g[2] >= min_score]
        m = match(t, p)
        tp += len(m)
        n_pred += len(p)
        n_true += len(t)
        for i, j in m:
            ds.append(abs(p[j][0] - t[i][0]))
            de.append(abs(p[j][1] - t[i][1]))
    prec = tp / n_pred if n_pred else 1.0
    rec = tp / n_true if n_true else 1.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return dict(tp=tp, pred=n_pred, true=n_true, precision=prec, recall=rec, f1=f1,
                start_ms=1000 * float(np.median(ds)) if ds else float("nan"),
                end_ms=1000 * float(np.median(de)) if de else float("nan"))


def main():
    truth = load(sys.argv[1])
    rows = {}
    for arg in sys.argv[2:]:
        name, path = arg.split("=", 1)
        pred = load(path)
        missing = [c for c in truth if pred.get(c) is None]
        if missing:
            print(f"{name}: {len(missing)} calls without an answer: {missing[:5]}", file=sys.stderr)
        rows[name] = (score(truth, pred), score(truth, pred, 0.8))
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
