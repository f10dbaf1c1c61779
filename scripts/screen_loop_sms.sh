#!/usr/bin/env bash
# The loop figure of issue 25: `labelloop simulate --finish` on the raw SMS
# file (4,837 rows, duplicates and near duplicates included) without and
# with screening, at the same guaranteed precision (target 0.95, δ 0.05,
# the same 300 audit labels), over several seeds: human labels spent to
# finish the data set, whether the guarantee held, precision and coverage
# over all rows.
#
#   bash scripts/screen_loop_sms.sh                       # 5 seeds
#   SEEDS=3 BIN=target/debug/labelloop bash scripts/screen_loop_sms.sh
#   PLAIN=0 bash scripts/screen_loop_sms.sh   # skip the separate plain run
#
# Reads .cache/sms-spam.csv (scripts/setup.sh). Writes under
# target/screen-loop/: raw.jsonl (every CSV row, as scripts/screen_data.py's
# sms/raw.jsonl), off/ (plain `simulate`, every row in the loop), on/
# (`simulate --screen`: both sides on the same embeddings and seeds,
# screening.json), and figures.md (also printed). The "without" side of
# --screen is checked against the plain run (same human labels per seed)
# unless PLAIN=0.
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${SEEDS:-5}
PLAIN=${PLAIN:-1}
THREADS=${THREADS:-2}
BIN=${BIN:-target/release/labelloop}
OUT=${OUT:-target/screen-loop}
log() { printf '[screen-loop] %s\n' "$*" >&2; }

if [ ! -f .cache/sms-spam.csv ] || [ ! -f models/minilm-l6/model.onnx ]; then
    log "running scripts/setup.sh for the SMS CSV and minilm-l6"
    bash scripts/setup.sh >/dev/null
fi
if [ ! -x "$BIN" ]; then
    log "building $BIN"
    cargo build --release --quiet
fi
mkdir -p "$OUT"
python3 - "$OUT/raw.jsonl" <<'PY'
import csv, json, sys
# As scripts/screen_data.py reads the raw CSV: header ",spam,text", every row kept.
with open(".cache/sms-spam.csv", newline="", encoding="utf-8") as f:
    r = csv.reader(f)
    next(r)
    rows = [(int(row[1]), row[2]) for row in r]
with open(sys.argv[1], "w", encoding="utf-8") as out:
    for i, (spam, text) in enumerate(rows):
        out.write(json.dumps({"id": f"sms-{i:04d}", "text": text, "label": "spam" if spam else "ham"}) + "\n")
print(f"{len(rows)} raw SMS rows", file=sys.stderr)
PY

COMMON=(--model minilm-l6 --data "$OUT/raw.jsonl" --cache "$OUT/cache.json"
    --strategy margin --seed-size 20 --batch 50 --audit-labels 300 --finish
    --target 0.95 --delta 0.05 --seeds "$SEEDS" --threads "$THREADS")
if [ "$PLAIN" = 1 ]; then
    log "without screening: $BIN simulate ${COMMON[*]} --out $OUT/off"
    nice -n 19 "$BIN" simulate "${COMMON[@]}" --out "$OUT/off" >"$OUT/off.txt" 2>"$OUT/off.log"
else
    rm -rf "$OUT/off"
fi
log "with screening: $BIN simulate ${COMMON[*]} --screen --out $OUT/on"
nice -n 19 "$BIN" simulate "${COMMON[@]}" --screen --out "$OUT/on" >"$OUT/on.txt" 2>"$OUT/on.log"

python3 - "$OUT" "$SEEDS" <<'PY' | tee "$OUT/figures.md"
import json, os, statistics as st, sys
out, seeds = sys.argv[1], int(sys.argv[2])
c = json.load(open(f"{out}/on/screening.json"))
plain = json.load(open(f"{out}/off/simulation.json")) if os.path.exists(f"{out}/off") else {"runs": []}
# The --screen run's "without" side is plain simulate: same human labels per seed.
for run in plain["runs"]:
    for r in run["results"]:
        f = r["finish"]
        spent = f["seed_labels"] + f["review_labels"] + f["audit_labels"]
        side = [s for s in c["without"] if s["seed"] == run["seed"] and s["strategy"] == r["strategy"]]
        assert side and side[0]["human_labels"] == spent, (run["seed"], r["strategy"], spent, side)
g = c["groups"]
print(f"Raw SMS ({g['rows']} rows): {g['exact_groups']} exact-duplicate groups ({g['exact_rows']} rows), "
      f"{g['near_pairs']} near-duplicate pairs at 5-gram Jaccard >= {g['near_threshold']}; "
      f"{g['groups']} groups ({g['grouped_rows']} rows) -> {g['representatives']} items in the loop with screening.")
print(f"`simulate --finish` (minilm-l6 embeddings + head), target {c['target']}, delta {c['delta']}, "
      f"300 audit labels, {seeds} seeds (mean, [min, max]):")
print()
print("| strategy | screening | rows | human labels | propagated | auto-accepted rows | coverage | guarantee met | guaranteed precision (min) | auto precision, all rows (min) | precision, all rows |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
def span(xs, f="{:.0f}"):
    return f"{f.format(st.mean(xs))} [{f.format(min(xs))}, {f.format(max(xs))}]"
def low(xs):
    xs = [x for x in xs if x is not None]
    return f"{min(xs):.4f}" if xs else "—"
for strategy in sorted({s["strategy"] for s in c["with"]}):
    for name, side in (("off", c["without"]), ("on", c["with"])):
        rs = [s for s in side if s["strategy"] == strategy]
        met = sum(s["guarantee_met"] for s in rs)
        print(f"| {strategy} | {name} | {rs[0]['rows']} | {span([s['human_labels'] for s in rs])} | "
              f"{span([s['propagated'] for s in rs])} | {span([s['auto_accepted'] for s in rs])} | "
              f"{span([s['coverage'] for s in rs], '{:.3f}')} | {met}/{len(rs)} | "
              f"{low([s['guaranteed_precision'] for s in rs])} | {low([s['auto_precision'] for s in rs])} | "
              f"{span([s['precision'] for s in rs], '{:.4f}')} |")
    off = {s["seed"]: s["human_labels"] for s in c["without"] if s["strategy"] == strategy}
    on = {s["seed"]: s["human_labels"] for s in c["with"] if s["strategy"] == strategy}
    fewer = sum(on[k] < off[k] for k in on)
    saved = [1 - on[k] / off[k] for k in on]
    print(f"| {strategy} | saved | | {span(saved, '{:.1%}')} fewer; fewer in {fewer}/{len(on)} seeds | | | | | | | |")
PY
