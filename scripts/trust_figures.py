#!/usr/bin/env python3
"""Tables for scripts/trust_figures.sh: per data set and budget, realised
precision and coverage of the current method, pooled, ipw, MAPIE's fixed
sequence (on the current method's audit labels) and the oracle."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import calibration_figures as cf  # noqa: E402

TARGET = cf.TARGET


def runs(out, name):
    report = cf.load(out, name)
    if report is None:
        return None, []
    strategy = cf.strategy_of(report)
    return report, cf.finals(report, strategy)


def mapie(out, name):
    report, fin = runs(out, name)
    if report is None:
        return []
    strategy = cf.strategy_of(report)
    rows = cf.jsonl(os.path.join(out, name, f"predictions-{strategy}.jsonl"))
    by_seed = {}
    for r in rows:
        by_seed.setdefault(r["seed"], []).append(r)
    res = []
    for seed, _, _ in fin:
        srows = by_seed.get(seed, [])
        audit = [r for r in srows if r["status"] == "audit" and r["human_label"] is not None]
        if not audit:
            res.append((0.0, None))
            continue
        t = cf.mapie_threshold([r["score"] for r in audit], [r["predicted"] == r["human_label"] for r in audit])
        res.append(cf.realised(srows, t))
    return res


def summary(pairs):
    n = len(pairs)
    cov = [c for c, _ in pairs]
    ok = sum(1 for c, p in pairs if p is None or c == 0 or p >= TARGET)
    precs = [p for c, p in pairs if p is not None and c > 0]
    zero = sum(1 for c in cov if c == 0)
    return n, ok, cf.mean(cov), (min(precs) if precs else None), zero


def table(out, data, title):
    lines = [f"##### {title}", ""]
    lines.append(
        "| human labels | method | realised precision ≥ 0.95 | mean coverage | × oracle | runs accepting nothing | min precision |"
    )
    lines.append("|---:|---|---:|---:|---:|---:|---:|")
    for budget in (300, 500, 1000):
        base = f"{data}-{budget}"
        methods = []
        oracle = None
        for key, label in (
            ("current", "current: uniform audit, global LTT (binomial)"),
            ("pooled", "pooled: uniform audit, class curves, one LTT at δ"),
            ("ipw", "ipw: audit where the decision is made, betting"),
            ("ipw-review", "ipw + proportional review, review labels counted"),
        ):
            report, fin = runs(out, f"{base}-{key}")
            if report is None:
                continue
            pairs = [
                (last["auto_coverage"], last["auto_precision"] if last["auto_coverage"] > 0 else None)
                for _, _, last in fin
            ]
            methods.append((label, pairs))
            if key == "current":
                oracle = cf.mean([last["oracle_coverage"] for _, _, last in fin])
                methods.append(("MAPIE fixed_sequence (current's audit labels)", mapie(out, f"{base}-current")))
        for label, pairs in methods:
            n, ok, cov, pmin, zero = summary(pairs)
            ratio = cov / oracle if oracle else float("nan")
            lines.append(
                f"| {budget} | {label} | {ok}/{n} | {cf.fmt(cov)} | {cf.fmt(ratio, 2)} | {zero}/{n} | {cf.fmt(pmin)} |"
            )
        if oracle is not None:
            lines.append(f"| {budget} | single-threshold oracle (knows the truth) | — | {cf.fmt(oracle)} | 1.00 | — | ≥ 0.950 |")
    lines.append("")
    return lines if len(lines) > 5 else []


def finish_table(out, data, title, audits, today):
    lines = [f"##### {title}", ""]
    lines.append(
        "| audit labels | method | human share (mean) | max | audit / review / seed labels (mean) | "
        "auto-accepted precision ≥ 0.95 | min auto-accepted precision | finished set precision (mean) |"
    )
    lines.append("|---:|---|---:|---:|---|---:|---:|---:|")
    for a in audits:
        for key, label in (
            ("current", "current: uniform audit, global LTT" + (" (today's run)" if a == today else "")),
            ("new", "new: ipw audit + proportional review counted"),
        ):
            report, fin = runs(out, f"finish-{data}-{a}-{key}")
            if report is None:
                continue
            fs = [(r["finish"], last) for _, r, last in fin if r.get("finish")]
            if not fs:
                continue
            shares = [f["human_share"] for f, _ in fs]
            auto = [last["auto_precision"] for _, last in fs if last["auto_coverage"] > 0]
            ok = sum(1 for _, last in fs if last["auto_coverage"] == 0 or last["auto_precision"] >= TARGET)
            lines.append(
                f"| {a} | {label} | {cf.fmt(cf.mean(shares))} | {cf.fmt(max(shares))} | "
                f"{cf.fmt(cf.mean([f['audit_labels'] for f, _ in fs]), 0)} / "
                f"{cf.fmt(cf.mean([f['review_labels'] for f, _ in fs]), 0)} / "
                f"{cf.fmt(cf.mean([f['seed_labels'] for f, _ in fs]), 0)} | {ok}/{len(fs)} | "
                f"{cf.fmt(min(auto) if auto else None)} | {cf.fmt(cf.mean([f['precision'] for f, _ in fs]), 4)} |"
            )
    lines.append("")
    return lines if len(lines) > 5 else []


def main():
    out = sys.argv[1]
    lines = ["Target 0.95, δ 0.05; realised precision and coverage on the machine-decided items, against the truth.", ""]
    lines += table(out, "fashion", "Fashion-MNIST (CNN's own scores; review labels = the uniform seed set)")
    lines += table(out, "sms", "SMS spam (minilm-l6 + head retrained every round, random review batches of 20)")
    lines += ["`simulate --finish`: the share of the pool people labeled (seed + review + audit), target 0.95, δ 0.05.", ""]
    lines += finish_table(out, "fashion", "Fashion-MNIST, finished (random review batches of 500)", (1000, 500, 300), 1000)
    lines += finish_table(out, "sms", "SMS spam, finished (margin review batches of 50; new: proportional)", (300, 150), 300)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
