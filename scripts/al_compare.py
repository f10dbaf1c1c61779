#!/usr/bin/env python3
"""The table of scripts/al_compare.sh: label savings against random per
strategy and data set, median over seeds (min–max beside it), from each
set's simulation.json. A run whose strategy never stays at or above
random's final accuracy saves 0 (and is counted in `missed`).

Usage: al_compare.py OUT_DIR [--only sms,fashion,fortunes]
"""

import argparse
import json
import os
import statistics

TITLES = {
    "sms": "SMS spam (minilm-l6 + head)",
    "fashion": "Fashion-MNIST (CNN + head)",
    "fortunes": "fortunes, 8 topics (minilm-l6 + head)",
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--only", default="sms,fashion,fortunes")
    args = ap.parse_args()
    sets = [s for s in args.only.split(",") if s]
    savings = {}  # strategy -> set -> [savings per seed]
    missed = {}
    random_final = {}
    setup = {}
    for name in sets:
        with open(os.path.join(args.out, name, "simulation.json")) as f:
            rep = json.load(f)
        setup[name] = (rep["pool"], rep["test"], len(rep["labels"]), rep["seed_size"], rep["batch"], rep["rounds"], len(rep["runs"]))
        finals = []
        for run in rep["runs"]:
            for r in run["results"]:
                s = r["strategy"]
                if s == "random":
                    finals.append((r["rounds"][-1]["accuracy"], r["rounds"][-1]["labels"]))
                    continue
                v = r["label_savings"]
                savings.setdefault(s, {}).setdefault(name, []).append(max(v, 0.0) if v is not None else 0.0)
                missed.setdefault(s, {}).setdefault(name, 0)
                if v is None:
                    missed[s][name] += 1
        random_final[name] = (statistics.median(a for a, _ in finals), finals[0][1])

    print("| set | pool / test items | classes | seed + batch × rounds | seeds | random's final accuracy (median) |")
    print("|---|---:|---:|---|---:|---:|")
    for name in sets:
        pool, test, k, seed_size, batch, rounds, seeds = setup[name]
        acc, labels = random_final[name]
        print(f"| {TITLES.get(name, name)} | {pool} / {test} | {k} | {seed_size} + {batch} × {rounds} = {labels} labels | {seeds} | {acc:.4f} |")
    print()
    head = " | ".join(TITLES.get(n, n) for n in sets)
    print(f"| strategy | {head} | mean of medians | sets ≥ 50% |")
    print("|---" + "|---:" * (len(sets) + 2) + "|")
    rows = []
    for s, per in savings.items():
        meds = [statistics.median(per[n]) for n in sets]
        cells = []
        for n, m in zip(sets, meds):
            v = per[n]
            miss = missed[s][n]
            extra = f", {miss} missed" if miss else ""
            cells.append(f"{m:.0%} ({min(v):.0%}–{max(v):.0%}{extra})")
        rows.append((statistics.mean(meds), sum(m >= 0.5 for m in meds), s, cells))
    rows.sort(key=lambda r: (-r[0], r[2]))
    for mean, wins, s, cells in rows:
        print(f"| {s} | " + " | ".join(cells) + f" | {mean:.0%} | {wins} |")


if __name__ == "__main__":
    main()
