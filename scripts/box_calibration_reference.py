#!/usr/bin/env python3
"""Side-by-side check of labelloop's box calibration (src/calibrate/boxes.rs).

For each `labelloop simulate --coco ... --out DIR` run given, reads
DIR/simulation-boxes.json (the design, the bound, every seed's audit image
ids and per-class thresholds) and DIR/box-outcomes.jsonl (per image: the
matched proposals as [class, score, correct], true and missed counts), and
(for a `simulate --segments` run) simulation-segments.json and
segment-outcomes.jsonl, recordings for images and segments for boxes, (for a
`simulate --lines` run) simulation-lines.json and line-outcomes.jsonl, pages
and lines; and
recomputes the thresholds with an independent numpy implementation of
Learn-then-Test (fixed sequence over the audit boxes' distinct scores,
strict to loose, stop at the first failure) on the per-image
false-discovery proportion, with either p-value:

- betting: p = min(1, 1 / prod(1 + lam * (alpha - L_i))), lam = 0.9 / (1 - alpha);
- hoeffding-bentkus: min(exp(-n KL(min(mean, alpha) || alpha)),
  e * BinomCDF(ceil(n * mean); n, alpha)) (scipy's binomial CDF).

It then runs MAPIE's BinaryClassificationController (risk "precision",
fixed_sequence) on the same audit boxes **treated as independent** (the
box, not the image, as the unit), and shows its threshold and the realised
precision of the boxes it would accept on the routed (non-audit) images,
beside labelloop's.

Installs nothing itself; run it from a venv with the pins of
scripts/box_calibration_reference.requirements.txt (the figures script
makes .venv-boxref):

    .venv-boxref/bin/python scripts/box_calibration_reference.py DIR [DIR ...]

Prints a markdown table per run and exits 1 if any threshold differs.
"""

import json
import math
import os
import sys
import warnings

import numpy as np
from scipy.stats import binom


def load(run_dir):
    # A speech run (`simulate --segments`) and an OCR run (`simulate
    # --lines`) write the same two files under their own names: recordings
    # or pages for images, segments or lines for boxes.
    names = ("simulation-boxes.json", "box-outcomes.jsonl")
    for kind in ("segment", "line"):
        if os.path.exists(os.path.join(run_dir, f"simulation-{kind}s.json")):
            names = (f"simulation-{kind}s.json", f"{kind}-outcomes.jsonl")
    with open(os.path.join(run_dir, names[0])) as f:
        report = json.load(f)
    images = {}
    with open(os.path.join(run_dir, names[1])) as f:
        for line in f:
            row = json.loads(line)
            images[row["id"]] = row
    return report, images


def p_betting(losses, alpha, share=0.9):
    if len(losses) == 0:
        return 1.0
    lam = share / (1.0 - alpha)
    ln_e = float(np.sum(np.log1p(lam * (alpha - losses))))
    return min(1.0, math.exp(-ln_e))


def kl(q, p):
    def term(a, b):
        return 0.0 if a <= 0 else a * math.log(a / b)

    return term(q, p) + term(1 - q, 1 - p)


def p_hb(losses, alpha):
    n = len(losses)
    if n == 0:
        return 1.0
    mean = float(np.sum(losses)) / n
    hoeffding = math.exp(-n * kl(min(mean, alpha), alpha))
    k = math.ceil(n * mean)
    bentkus = math.e * float(binom.cdf(k, n, alpha))
    return min(hoeffding, bentkus, 1.0)


def scan(images, klass, alpha, delta, bound):
    """images: list of (scores, classes, correct) arrays with >= 1 box
    (of `klass`, when given). Returns the loosest passing threshold."""
    idx, scores, wrong = [], [], []
    for i, (s, c, ok) in enumerate(images):
        keep = np.ones(len(s), bool) if klass is None else (c == klass)
        idx.append(np.full(int(keep.sum()), i))
        scores.append(s[keep])
        wrong.append(~ok[keep])
    idx = np.concatenate(idx) if idx else np.zeros(0, int)
    scores = np.concatenate(scores) if scores else np.zeros(0)
    wrong = np.concatenate(wrong) if wrong else np.zeros(0, bool)
    n = len(images)
    best = None
    for t in np.unique(scores)[::-1]:
        acc = scores >= t
        a = np.bincount(idx, weights=acc.astype(float), minlength=n)
        w = np.bincount(idx, weights=(acc & wrong).astype(float), minlength=n)
        losses = np.where(a > 0, w / np.maximum(a, 1), 0.0)
        p = p_betting(losses, alpha) if bound == "betting" else p_hb(losses, alpha)
        if p > delta:
            break
        best = float(t)
    return best


def arrays(row):
    b = row["boxes"]
    return (
        np.array([x[1] for x in b], float),
        np.array([x[0] for x in b], int),
        np.array([bool(x[2]) for x in b], bool),
    )


def numpy_thresholds(report, images, audit_ids):
    alpha = 1.0 - report["target"]
    delta = report["delta"]
    bound = report["bound"] if isinstance(report["bound"], str) else "betting"
    k = len(report["labels"])
    audit = [arrays(images[i]) for i in audit_ids]
    with_props = [a for a in audit if len(a[0]) > 0]
    if report["design"] == "shared":
        t = scan(with_props, None, alpha, delta, bound)
        return [t] * k
    out = []
    for c in range(k):
        of_c = [a for a in with_props if np.any(a[1] == c)]
        out.append(scan(of_c, c, alpha, delta / k, bound))
    return out


def mapie_threshold(report, images, audit_ids):
    try:
        from mapie.risk_control import BinaryClassificationController
    except ImportError:
        return "n/a"
    s = np.concatenate([arrays(images[i])[0] for i in audit_ids])
    y = np.concatenate([arrays(images[i])[2] for i in audit_ids]).astype(int)

    def predict_proba(x):
        v = np.asarray(x, dtype=float).reshape(-1)
        return np.stack([1.0 - v, v], axis=1)

    ctl = BinaryClassificationController(
        predict_function=predict_proba,
        risk="precision",
        target_level=report["target"],
        confidence_level=1.0 - report["delta"],
        fwer_method="fixed_sequence",
        # A fixed grid fine enough for these scores (the default steps by
        # 0.01, and its first candidate, 0.99, already fails here).
        list_predict_params=np.round(np.arange(0.5, 1.0, 0.0005), 4),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ctl.calibrate(s.reshape(-1, 1), y)
    t = ctl.best_predict_param
    return None if t is None else float(t)


def min_count(errors, target, delta):
    m = max(math.ceil(math.log(delta) / math.log(target)), errors + 1)
    while binom.sf(m - errors - 1, m, target) > delta:
        m += 1
    return m


def box_level_threshold(report, images, audit_ids):
    """labelloop's item-level scan (src/calibrate/threshold.rs, fit_global)
    run on the audit boxes as if they were independent items: exact
    binomial p-values over accepted counts from a start fixed by the sample
    size. Not valid for boxes (they cluster by page); shown for the price of
    the image as the unit."""
    target, delta = report["target"], report["delta"]
    s = np.concatenate([arrays(images[i])[0] for i in audit_ids])
    ok = np.concatenate([arrays(images[i])[2] for i in audit_ids])
    order = np.argsort(-s, kind="mergesort")
    s, ok = s[order], ok[order]
    n = len(s)
    one_error = min_count(1, target, delta)
    start = one_error if n >= 2 * one_error else min_count(0, target, delta)
    if n < start:
        return None
    best, m, tested = None, start, 0
    while True:
        m_eff = min(m, n)
        if m_eff > tested:
            t = s[m_eff - 1]
            a = int(np.searchsorted(-s, -t, side="right"))
            k = int(ok[:a].sum())
            if binom.sf(k - 1, a, target) > delta:
                break
            best, tested = float(t), a
        if m_eff == n:
            break
        m += 1
    return best


def realised(images, ids, thresholds):
    acc = cor = 0
    for i in ids:
        s, c, ok = arrays(images[i])
        for sc, cl, good in zip(s, c, ok):
            t = thresholds[cl]
            if t is not None and sc >= t:
                acc += 1
                cor += int(good)
    return (cor / acc if acc else None), acc


def fmt(v):
    if v is None:
        return "—"
    if isinstance(v, str):
        return v
    return f"{v:.4f}"


def main(dirs):
    differ = 0
    for d in dirs:
        report, images = load(d)
        bound = report["bound"] if isinstance(report["bound"], str) else "betting"
        print(f"\n### {d}: design {report['design']}, bound {bound}, target {report['target']}, δ {report['delta']}\n")
        print("| seed | labelloop thresholds | numpy thresholds | agree | MAPIE (boxes as units) | box-level binomial scan | realised precision (accepted boxes): labelloop / MAPIE / box-level |")
        print("|---:|---|---|---|---:|---:|---|")
        mapie_meets = ours_meets = box_meets = 0
        cov = {"labelloop": [], "box-level": []}
        for run in report["runs"]:
            ours = [c["threshold"] for c in run["classes"]]
            ref = numpy_thresholds(report, images, run["audit_ids"])
            agree = all(
                (a is None and b is None) or (a is not None and b is not None and a == b)
                for a, b in zip(ours, ref)
            )
            differ += 0 if agree else 1
            audit = set(run["audit_ids"])
            routed = [i for i in images if i not in audit]
            m = mapie_threshold(report, images, run["audit_ids"])
            p_ours, n_ours = realised(images, routed, ours)
            if isinstance(m, float) or m is None:
                p_m, n_m = realised(images, routed, [m] * len(ours))
            else:
                p_m, n_m = None, 0
            b = box_level_threshold(report, images, run["audit_ids"])
            p_b, n_b = realised(images, routed, [b] * len(ours))
            truths = sum(images[i]["truths"] for i in routed)
            cov["labelloop"].append((p_ours or 0) * n_ours / truths)
            cov["box-level"].append((p_b or 0) * n_b / truths)
            box_meets += int(p_b is None or p_b >= report["target"])
            ours_meets += int(p_ours is None or p_ours >= report["target"])
            mapie_meets += int(p_m is None or p_m >= report["target"])
            shown = sorted({fmt(t) for t in ours})
            shown_ref = sorted({fmt(t) for t in ref})
            print(
                f"| {run['seed']} | {', '.join(shown)} | {', '.join(shown_ref)} | {'yes' if agree else 'NO'} "
                f"| {fmt(m)} | {fmt(b)} | {fmt(p_ours)} ({n_ours}) / {fmt(p_m)} ({n_m}) / {fmt(p_b)} ({n_b}) |"
            )
        n = len(report["runs"])
        print(
            f"\nrealised precision ≥ target: labelloop {ours_meets}/{n}, MAPIE box-level {mapie_meets}/{n}, "
            f"box-level binomial scan {box_meets}/{n}; mean coverage labelloop {np.mean(cov['labelloop']):.3f}, "
            f"box-level binomial scan {np.mean(cov['box-level']):.3f}"
        )
    if differ:
        print(f"\n{differ} seed(s) with thresholds that differ", file=sys.stderr)
        return 1
    print("\nall thresholds agree with the numpy implementation")
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1:]))
