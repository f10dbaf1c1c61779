"""Tables for scripts/calibration_figures.sh from the runs it made.

Reads target/calibration-figures/<run>/simulation.json and the per-strategy
predictions-*.jsonl / label-quality-*.jsonl, runs MAPIE's
BinaryClassificationController (fixed_sequence) on the same audit labels and
calibrated scores labelloop used, and cleanlab's find_label_issues on the
same out-of-sample probabilities, and prints markdown tables.
"""

import argparse
import json
import os
import statistics
import sys
import warnings

import numpy as np

TARGET = 0.95
DELTA = 0.05


def load(out, name):
    path = os.path.join(out, name, "simulation.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def jsonl(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def strategy_of(report):
    """The strategy the figures follow: the non-random one if any."""
    names = [r["strategy"] for r in report["results"]]
    others = [n for n in names if n != "random"]
    return others[0] if others else names[0]


def finals(report, strategy):
    """Final round per seed: (seed, strategy result, last round)."""
    out = []
    for run in report["runs"]:
        for r in run["results"]:
            if r["strategy"] == strategy:
                out.append((run["seed"], r, r["rounds"][-1]))
    return out


def mean(xs):
    xs = [x for x in xs if x is not None]
    return statistics.fmean(xs) if xs else float("nan")


def fmt(x, d=3):
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "—"
    return f"{x:.{d}f}"


def mapie_threshold(scores, correct):
    from mapie.risk_control import BinaryClassificationController

    def predict_proba(x):
        s = np.asarray(x, dtype=float).reshape(-1)
        return np.stack([1.0 - s, s], axis=1)

    ctl = BinaryClassificationController(
        predict_function=predict_proba,
        risk="precision",
        target_level=TARGET,
        confidence_level=1 - DELTA,
        fwer_method="fixed_sequence",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ctl.calibrate(np.asarray(scores).reshape(-1, 1), np.asarray(correct, dtype=int))
    t = ctl.best_predict_param
    return None if t is None else float(np.asarray(t).reshape(-1)[0])


def ltt_count_grid(scores, correct, start, step=10):
    """Learn-then-Test, fixed sequence, candidates stepped by accepted audit
    counts (as calibrate::threshold does): candidate m accepts every audit
    item scoring at least the m-th highest score; H0 precision < target is
    rejected when P(X >= correct | m, target) <= delta; stop at the first
    failure. Returns the loosest passing threshold, or None."""
    from scipy.stats import binom

    order = np.argsort(-np.asarray(scores), kind="stable")
    s = np.asarray(scores)[order]
    c = np.asarray(correct, dtype=int)[order]
    n = len(s)
    cum = np.cumsum(c)
    best = None
    m = min(start, n)
    while True:
        t = s[m - 1]
        accepted = int(np.searchsorted(-s, -t, side="right"))  # ties extend
        k = int(cum[accepted - 1])
        if binom.sf(k - 1, accepted, TARGET) > DELTA:
            break
        best = t
        if m >= n:
            break
        m = min(m + step, n)
    return best


def first_start(delta):
    return int(np.ceil(np.log(delta) / np.log(TARGET)))


def one_error_start(delta):
    """Smallest m at which m - 1 correct of m pass at delta."""
    from scipy.stats import binom

    m = first_start(delta)
    while binom.sf(m - 2, m, TARGET) > delta:
        m += 1
    return m


def labelloop_start(n, delta):
    """calibrate::threshold's default start: the one-error count when the
    sample holds twice as many, else the error-free count."""
    one = one_error_start(delta)
    return one if n >= 2 * one else first_start(delta)


def realised(rows, threshold):
    """Coverage and precision of `score >= threshold` on machine-decided rows."""
    machine = [r for r in rows if r["status"] in ("auto_accepted", "needs_review")]
    if threshold is None or not machine:
        return 0.0, None
    acc = [r for r in machine if r["score"] >= threshold]
    if not acc:
        return 0.0, None
    right = sum(r["predicted"] == r["true_label"] for r in acc)
    return len(acc) / len(machine), right / len(acc)


def guarantee(out, name, title):
    report = load(out, name)
    if report is None:
        return []
    strategy = strategy_of(report)
    rows = jsonl(os.path.join(out, name, f"predictions-{strategy}.jsonl"))
    by_seed = {}
    for r in rows:
        by_seed.setdefault(r["seed"], []).append(r)
    ll, pe, mp, oracle, again, proposed = [], [], [], [], [], []
    for seed, _, last in finals(report, strategy):
        ll.append((last["auto_coverage"], last["auto_precision"] if last["auto_coverage"] > 0 else None))
        p = last["point_estimate"]
        pe.append((p["coverage"], p["precision"]))
        oracle.append(last["oracle_coverage"])
        srows = by_seed.get(seed, [])
        audit = [r for r in srows if r["status"] == "audit" and r["human_label"] is not None]
        if audit:
            t = mapie_threshold([r["score"] for r in audit], [r["predicted"] == r["human_label"] for r in audit])
            mp.append(realised(srows, t))
            sc = [r["score"] for r in audit]
            ok = [r["predicted"] == r["human_label"] for r in audit]
            again.append(realised(srows, ltt_count_grid(sc, ok, labelloop_start(len(sc), DELTA), step=1)))
            proposed.append(realised(srows, ltt_count_grid(sc, ok, first_start(DELTA), step=10)))
        else:
            mp.append((0.0, None))
            again.append((0.0, None))
            proposed.append((0.0, None))
    n = len(ll)
    audit_labels = finals(report, strategy)[0][2]["audit_labels"] if n else 0

    def row(label, pairs, guaranteed):
        violations = sum(1 for c, p in pairs if p is not None and p < TARGET)
        precs = [p for _, p in pairs if p is not None]
        return (
            f"| {label} | {guaranteed} | {violations}/{n} | {fmt(mean([c for c, _ in pairs]))} | "
            f"{fmt(min(precs) if precs else None)} | {fmt(mean(precs))} |"
        )

    lines = [
        f"### {title}: the guarantee ({n} seeds, {audit_labels} audit labels, target {TARGET}, δ {DELTA})",
        "",
        "| method | guarantee | runs with realised precision < 0.95 | mean coverage | min precision | mean precision |",
        "|---|---|---:|---:|---:|---:|",
        row("labelloop (Learn-then-Test, global, temperature-scaled)", ll, "yes"),
        row("MAPIE BinaryClassificationController (fixed_sequence)", mp, "yes"),
        row("SageMaker-style point estimate", pe, "no"),
        row("count-grid scan re-implemented here (should match labelloop)", again, "yes"),
        row("labelloop's previous rule (error-free start 59, step 10)", proposed, "yes"),
        f"| single-threshold oracle (knows the truth) | — | 0/{n} | {fmt(mean(oracle))} | ≥ 0.950 | — |",
        "",
    ]
    eb = [last["ece_before"] for _, _, last in finals(report, strategy)]
    ea = [last["ece_after"] for _, _, last in finals(report, strategy)]
    temps = [last["temperature"] for _, _, last in finals(report, strategy)]
    lines.append(
        f"ECE (15 bins, held-out audit labels): before {fmt(mean(eb))} → after {fmt(mean(ea))} "
        f"(mean temperature {fmt(mean(temps), 2)}); ECE improved in "
        f"{sum(1 for b, a in zip(eb, ea) if b is not None and a is not None and a < b)}/{n} seeds."
    )
    lines.append("")
    return lines


def coverage_growth(out, name, title):
    report = load(out, name)
    if report is None:
        return []
    strategy = strategy_of(report)
    per = {}
    for run in report["runs"]:
        for r in run["results"]:
            if r["strategy"] != strategy:
                continue
            for x in r["rounds"]:
                per.setdefault(x["audit_labels"], []).append(x)
    lines = [
        f"### {title}: coverage against audit labels ({len(report['runs'])} seeds)",
        "",
        "| audit labels | labelloop coverage | realised precision (min) | violations | oracle coverage | ECE before → after |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for a in sorted(per):
        xs = per[a]
        precs = [x["auto_precision"] for x in xs if x["auto_coverage"] > 0]
        lines.append(
            f"| {a} | {fmt(mean([x['auto_coverage'] for x in xs]))} | "
            f"{fmt(min(precs) if precs else None)} | {sum(p < TARGET for p in precs)}/{len(xs)} | "
            f"{fmt(mean([x['oracle_coverage'] for x in xs]))} | "
            f"{fmt(mean([x['ece_before'] for x in xs]))} → {fmt(mean([x['ece_after'] for x in xs]))} |"
        )
    lines.append("")
    return lines


def drift(out, drift_name, steady_name, title):
    d, s = load(out, drift_name), load(out, steady_name)
    if d is None or s is None:
        return []
    strategy = strategy_of(d)
    delays = [r["drift_delay"] for _, r, _ in finals(d, strategy)]
    caught = sum(1 for x in delays if x is not None and x <= 300)
    start = finals(d, strategy)[0][1]["drift_start_audit"]
    false_alarms = sum(1 for _, r, _ in finals(s, strategy) if r["alarms_at_audit"])
    total = finals(s, strategy)[0][2]["audit_labels"]
    known = [x for x in delays if x is not None]
    return [
        f"### {title}: drift ({len(delays)} seeds)",
        "",
        "| | result |",
        "|---|---|",
        f"| alarm within 300 audit labels of the drift (after {start}) | {caught}/{len(delays)} |",
        f"| delay in audit labels: median (min–max) | "
        f"{fmt(statistics.median(known), 0) if known else '—'} "
        f"({min(known) if known else '—'}–{max(known) if known else '—'}) |",
        f"| false alarms without drift, over {total} audit labels | {false_alarms}/{len(finals(s, strategy))} |",
        "",
    ]


def noise(out, name, title):
    report = load(out, name)
    if report is None:
        return []
    strategy = strategy_of(report)
    rows = jsonl(os.path.join(out, name, f"label-quality-{strategy}.jsonl"))
    by_seed = {}
    for r in rows:
        by_seed.setdefault(r["seed"], []).append(r)
    from cleanlab.filter import find_label_issues

    ours, theirs, ks = [], [], []
    for seed, rs in sorted(by_seed.items()):
        k = sum(r["corrupted"] for r in rs)
        if k == 0:
            continue
        ks.append(k)
        ranked = sorted((r for r in rs if r["suspect_rank"] is not None), key=lambda r: r["suspect_rank"])
        ours.append(sum(r["corrupted"] for r in ranked[:k]) / k)
        labels = np.array([r["given"] for r in rs])
        probs = np.array([r["probs"] for r in rs])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            idx = find_label_issues(labels, probs, return_indices_ranked_by="self_confidence")
        theirs.append(sum(rs[i]["corrupted"] for i in idx[:k]) / k)
    n = len(ours)
    wins = sum(1 for a, b in zip(ours, theirs) if a >= b)
    return [
        f"### {title}: label errors at 5% noise ({n} seeds, k = corrupted labels, mean k {fmt(mean(ks), 1)})",
        "",
        "| method | mean precision at k | min | seeds ≥ 0.6 |",
        "|---|---:|---:|---:|",
        f"| labelloop suspects | {fmt(mean(ours))} | {fmt(min(ours) if ours else None)} | {sum(x >= 0.6 for x in ours)}/{n} |",
        f"| cleanlab find_label_issues (self_confidence) | {fmt(mean(theirs))} | {fmt(min(theirs) if theirs else None)} | {sum(x >= 0.6 for x in theirs)}/{n} |",
        "",
        f"labelloop matches or beats cleanlab in {wins}/{n} seeds.",
        "",
    ]


def finish(out, name, title, share_target):
    report = load(out, name)
    if report is None:
        return []
    strategy = strategy_of(report)
    fs = [r["finish"] for _, r, _ in finals(report, strategy) if r.get("finish")]
    if not fs:
        return []
    shares = [f["human_share"] for f in fs]
    precs = [f["precision"] for f in fs]
    return [
        f"### {title}: the cost of a finished data set ({len(fs)} seeds, target ≤ {share_target:.0%} human)",
        "",
        "| | mean | max / min |",
        "|---|---:|---:|",
        f"| human share (seed + review + audit) | {fmt(mean(shares))} | max {fmt(max(shares))} |",
        f"| of which audit / review / seed (mean labels) | {fmt(mean([f['audit_labels'] for f in fs]), 0)} / "
        f"{fmt(mean([f['review_labels'] for f in fs]), 0)} / {fmt(mean([f['seed_labels'] for f in fs]), 0)} | |",
        f"| realised precision of the finished set | {fmt(mean(precs), 4)} | min {fmt(min(precs), 4)} |",
        f"| finished (every item human or auto-accepted) | {sum(f['complete'] for f in fs)}/{len(fs)} | |",
        "",
    ]


def zero_shot(out):
    lines = []
    variants = [
        ("bare label names", "sms-zero-names", None),
        ("scripts/sms_label_descriptions.json", "sms-zero-descriptions", "scripts/sms_label_descriptions.json"),
        ("terse descriptions", "sms-zero-terse", os.path.join(out, "sms-descriptions-terse.json")),
        ("keyword-style descriptions", "sms-zero-keywords", os.path.join(out, "sms-descriptions-keywords.json")),
    ]
    for label, name, path in variants:
        report = load(out, name)
        if report is None:
            continue
        acc = report["results"][0]["rounds"][0]["accuracy"]
        texts = "ham, spam"
        if path and os.path.exists(path):
            with open(path) as f:
                texts = "; ".join(f"{k}: “{v}”" for k, v in json.load(f).items())
        lines.append(f"| {label} | {texts} | {fmt(acc)} |")
    if not lines:
        return []
    majority = None
    path = "data/sms-spam/sms.jsonl"
    if os.path.exists(path):
        labels = [json.loads(line)["label"] for line in open(path) if line.strip()]
        test = labels[::5]
        majority = max(test.count(x) for x in set(test)) / len(test)
    return [
        "### SMS: zero-shot accuracy (no labels at all; held-out fifth of the data)",
        "",
        "| label texts | texts | accuracy |",
        "|---|---|---:|",
        *lines,
        f"| (majority class) | | {fmt(majority)} |",
        "",
    ]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--seeds", type=int, default=20)
    a = ap.parse_args()
    out = a.out
    lines = [
        "## Calibration figures",
        "",
        f"`SEEDS={a.seeds} bash scripts/calibration_figures.sh`; target 0.95, δ 0.05.",
        "Fashion-MNIST: the CNN's own probabilities on the 10,000 test images (8,000 in the pool).",
        "SMS spam: minilm-l6 embeddings with a head trained on the review labels (margin strategy).",
        "",
    ]
    lines += guarantee(out, "fashion-guarantee", "Fashion-MNIST")
    lines += guarantee(out, "sms-guarantee", "SMS spam")
    lines += coverage_growth(out, "fashion-coverage", "Fashion-MNIST")
    lines += coverage_growth(out, "sms-coverage", "SMS spam")
    lines += drift(out, "fashion-drift", "fashion-steady", "Fashion-MNIST, Trouser ↔ Bag")
    lines += drift(out, "sms-drift", "sms-steady", "SMS spam, ham ↔ spam")
    lines += noise(out, "fashion-noise", "Fashion-MNIST")
    lines += noise(out, "sms-noise", "SMS spam")
    lines += finish(out, "fashion-finish", "Fashion-MNIST", 0.35)
    lines += finish(out, "sms-finish", "SMS spam", 0.15)
    lines += zero_shot(out)
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
