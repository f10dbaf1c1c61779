#!/usr/bin/env bash
# The recording-calibration figures of README ("Speech: the guarantee"):
# `labelloop simulate --segments` on 800 calls in the music 0 dB condition
# (scripts/make_calls.py, seed 2424, data/vad-sim/; a synthetic arrangement
# of real Asterisk prompts and music), 20 seeds, target 0.95, δ 0.05, the
# real Silero VAD model (models/vad).
#
#   scripts/vad_calibration_figures.sh [OUT]    (default OUT: .cache/vad-calibration)
#
# Runs: 30% of the recordings audited (the default), then 20% and 10%, and
# 30% with Hoeffding–Bentkus p-values. Every run reads one answer cache, so
# the model segments each recording once. Then
# scripts/box_calibration_reference.py recomputes every threshold in numpy
# (recordings for images, segments for boxes) and runs MAPIE's controller
# beside it, the segment (not the recording) as its unit.
#
# Needs scripts/setup.sh first (models/vad, data/asterisk, .venv-data).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-.cache/vad-calibration}
SEEDS=${SEEDS:-20}
log() { echo "vad_calibration_figures: $*" >&2; }

[ -f models/vad/model.onnx ] && [ -f data/asterisk/.complete ] || { log "run scripts/setup.sh first"; exit 1; }
if [ ! -f data/vad-sim/music0/truth.jsonl ]; then
    log "building 800 calls into data/vad-sim (seed 2424, music at 0 dB)"
    .venv-data/bin/python scripts/make_calls.py --out data/vad-sim --calls 800 --seed 2424 --conditions music0 >&2
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
    "$BIN" simulate --model vad --segments data/vad-sim/music0/truth.jsonl \
        --seeds "$SEEDS" --target 0.95 --delta 0.05 --cache "$CACHE" \
        --out "$OUT/$name" "$@" >"$OUT/$name.md"
    grep '^summary' "$OUT/$name.md" | sed "s/^/$name: /"
}
run audit30
run audit20 --audit-rate 0.2
run audit10 --audit-rate 0.1
run audit30-hoeffding-bentkus --bound hoeffding-bentkus
.venv-boxref/bin/python scripts/box_calibration_reference.py \
    "$OUT/audit30" "$OUT/audit20" "$OUT/audit10" "$OUT/audit30-hoeffding-bentkus" \
    >"$OUT/reference.md"
tail -n 1 "$OUT/reference.md"
grep '^realised' "$OUT/reference.md" || true
log "tables in $OUT/*.md"
