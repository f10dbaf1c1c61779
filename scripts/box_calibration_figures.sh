#!/usr/bin/env bash
# The box-calibration figures of README ("Detection: the guarantee on
# synthetic pages"): `labelloop simulate --coco` on 400 synthetic pages
# (scripts/render_layout_pages.py, seed 2201, data/layout-pages-sim/),
# 20 seeds, target 0.95, δ 0.05, the real layout model (models/layout).
#
#   scripts/box_calibration_figures.sh [OUT]     (default OUT: .cache/box-figures)
#
# Runs: the default (design shared, betting p-values, 30% of the images
# audited), then the same with Hoeffding–Bentkus p-values, with the
# per-class (Bonferroni) design, and with 40% audited. Every run reads one
# proposal cache, so the model labels each page once. Then
# scripts/box_calibration_reference.py recomputes every threshold in numpy
# and runs MAPIE's box-level controller beside it (.venv-boxref/, pinned in
# scripts/box_calibration_reference.requirements.txt).
#
# Needs scripts/setup.sh first (models/layout, .venv-data for the renderer).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-.cache/box-figures}
SEEDS=${SEEDS:-20}
log() { echo "box_calibration_figures: $*" >&2; }

if [ ! -f data/layout-pages-sim/instances.json ]; then
    [ -x .venv-data/bin/python ] || { log "run scripts/setup.sh first (.venv-data)"; exit 1; }
    log "rendering 400 synthetic pages into data/layout-pages-sim (seed 2201)"
    rm -rf data/layout-pages-sim
    .venv-data/bin/python scripts/render_layout_pages.py --out data/layout-pages-sim --pages 400 --seed 2201 >&2
fi
if [ ! -x .venv-boxref/bin/python ]; then
    log "creating .venv-boxref"
    python3 -m venv .venv-boxref
fi
.venv-boxref/bin/pip install --quiet --disable-pip-version-check -r scripts/box_calibration_reference.requirements.txt
cargo build --release --locked --quiet
mkdir -p "$OUT"
BIN=target/release/labelloop
CACHE="$OUT/proposals.json"
run() {
    local name=$1
    shift
    log "run $name"
    "$BIN" simulate --model layout --coco data/layout-pages-sim/instances.json \
        --seeds "$SEEDS" --target 0.95 --delta 0.05 --cache "$CACHE" \
        --out "$OUT/$name" "$@" >"$OUT/$name.md"
    grep '^summary' "$OUT/$name.md" | sed "s/^/$name: /"
}
run shared-betting
run shared-hoeffding-bentkus --bound hoeffding-bentkus
run per-class-betting --design per-class
run shared-betting-audit40 --audit-rate 0.4
.venv-boxref/bin/python scripts/box_calibration_reference.py \
    "$OUT/shared-betting" "$OUT/shared-hoeffding-bentkus" "$OUT/per-class-betting" \
    >"$OUT/reference.md"
tail -n 1 "$OUT/reference.md"
grep '^realised' "$OUT/reference.md"
log "tables in $OUT/*.md"
