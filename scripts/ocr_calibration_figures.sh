#!/usr/bin/env bash
# The OCR calibration figures of README ("OCR: the guarantee on synthetic
# pages"): `labelloop simulate --lines` on 100 synthetic pages
# (scripts/render_layout_pages.py --lines, seed 2323, half degraded,
# data/ocr-sim/), 20 seeds, target 0.95, δ 0.05, the real OCR model
# (models/ocr), a simulated annotator typing the true text.
#
#   scripts/ocr_calibration_figures.sh [OUT]    (default OUT: .cache/ocr-calibration)
#
# Runs: 70 of the 100 pages audited (betting p-values), then 80 and 60,
# and 70 with Hoeffding–Bentkus p-values. The audit is large because the
# page is the unit: with every audited page's accepted lines all right,
# betting p-values pass 0.95 at δ 0.05 only from about 65 audit pages on
# (Hoeffding–Bentkus from 59), whatever the project's size. Every run reads one
# answer cache, so the model reads each page once (the slow part: about
# 5–10 CPU-s a page; THREADS, default 2). Then
# scripts/box_calibration_reference.py recomputes every threshold in numpy
# (pages for images, lines for boxes) and runs MAPIE's controller beside
# it, the line (not the page) as its unit; and the share and precision of
# lines scoring at least 0.99 are read from the outcomes (a fixed threshold,
# for comparison with the fitted one).
#
# Needs scripts/setup.sh first (models/ocr, .venv-data for the renderer).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-.cache/ocr-calibration}
SEEDS=${SEEDS:-20}
THREADS=${THREADS:-2}
PAGES=${PAGES:-100}
SIM=data/ocr-sim
log() { echo "ocr_calibration_figures: $*" >&2; }

[ -f models/ocr/rec.onnx ] && [ -x .venv-data/bin/python ] || { log "run scripts/setup.sh first"; exit 1; }
if [ ! -f "$SIM/lines.json" ]; then
    log "rendering $PAGES synthetic pages into $SIM (seed 2323, --lines)"
    rm -rf "$SIM"
    .venv-data/bin/python scripts/render_layout_pages.py --out "$SIM" --pages "$PAGES" --seed 2323 --lines >&2
fi
if [ ! -x .venv-boxref/bin/python ]; then
    log "creating .venv-boxref"
    python3 -m venv .venv-boxref
fi
.venv-boxref/bin/pip install --quiet --disable-pip-version-check -r scripts/box_calibration_reference.requirements.txt
cargo build --release --locked --quiet --bin labelloop
mkdir -p "$OUT"
BIN=${CARGO_TARGET_DIR:-target}/release/labelloop
CACHE="$OUT/answers.json"
run() {
    local name=$1
    shift
    log "run $name"
    "$BIN" simulate --model ocr --lines "$SIM/lines.json" --threads "$THREADS" \
        --seeds "$SEEDS" --target 0.95 --delta 0.05 --cache "$CACHE" \
        --out "$OUT/$name" "$@" >"$OUT/$name.md"
    grep '^summary' "$OUT/$name.md" | sed "s/^/$name: /"
}
run audit70 --audit-images 70
run audit80 --audit-images 80
run audit60 --audit-images 60
run audit70-hoeffding-bentkus --audit-images 70 --bound hoeffding-bentkus
.venv-boxref/bin/python scripts/box_calibration_reference.py \
    "$OUT/audit70" "$OUT/audit80" "$OUT/audit60" "$OUT/audit70-hoeffding-bentkus" \
    >"$OUT/reference.md"
tail -n 1 "$OUT/reference.md"
grep '^realised' "$OUT/reference.md" || true
# A fixed threshold for comparison: lines scoring >= 0.99, their share of
# the machine's lines and their precision (a line correct when it matches a
# true line and its text is the true text).
python3 - "$OUT/audit70/line-outcomes.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
lines = [b for r in rows for b in r["boxes"]]
truths = sum(r["truths"] for r in rows)
missed = sum(r["missed"] for r in rows)
hi = [b for b in lines if b[1] >= 0.99]
ok = sum(1 for b in hi if b[2])
print(f"fixed 0.99: {len(hi)}/{len(lines)} machine lines ({len(hi) / len(lines):.3f}) score >= 0.99, "
      f"precision {ok / max(1, len(hi)):.4f}; all lines precision {sum(1 for b in lines if b[2]) / len(lines):.4f}; "
      f"{truths} true lines, {missed} missed by detection ({missed / truths:.4f})")
PY
log "tables in $OUT/*.md"
