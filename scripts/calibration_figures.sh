#!/usr/bin/env bash
# The calibration figures of issue 10, reproduced end to end with
# `labelloop simulate` on Fashion-MNIST (the CNN's own scores) and SMS spam
# (minilm-l6 embeddings + a head), beside MAPIE, cleanlab, a SageMaker-style
# point estimate and the single-threshold oracle on the same audit labels.
#
#   bash scripts/calibration_figures.sh              # 20 seeds
#   SEEDS=5 bash scripts/calibration_figures.sh      # quicker
#   ONLY=fashion bash scripts/calibration_figures.sh # one data set (fashion|sms)
#
# Writes target/calibration-figures/figures.md (also printed), and every
# run's simulation.json / predictions-*.jsonl under target/calibration-figures/.
# Runs scripts/setup.sh (idempotent), builds the release binary, keeps the
# Python side in .venv-figures/ (pinned: scripts/calibration_figures.requirements.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SEEDS=${SEEDS:-20}
ONLY=${ONLY:-fashion,sms}
THREADS=${THREADS:-2}
OUT=$ROOT/target/calibration-figures
BIN=$ROOT/target/release/labelloop
log() { printf '[figures] %s\n' "$*" >&2; }

bash scripts/setup.sh >/dev/null
log "building the release binary"
cargo build --release --quiet
if [ ! -x .venv-figures/bin/python ]; then
    log "creating .venv-figures"
    python3 -m venv .venv-figures
fi
.venv-figures/bin/pip install --quiet -r scripts/calibration_figures.requirements.txt
mkdir -p "$OUT"

sim() { # sim NAME ARGS... : one simulate run into $OUT/NAME
    local name=$1
    shift
    log "$name: labelloop simulate $*"
    "$BIN" simulate --threads "$THREADS" --seeds "${SIM_SEEDS:-$SEEDS}" --out "$OUT/$name" "$@" \
        >"$OUT/$name.txt" 2>"$OUT/$name.log"
}

if [[ $ONLY == *fashion* ]]; then
    F=(--model fashion-mnist-cnn --data data/fashion-mnist/test.jsonl
        --predictor model --cache "$OUT/cache-fashion.json" --target 0.95 --delta 0.05)
    # The guarantee: 1,000 audit labels, 200 seed labels (the temperature's).
    sim fashion-guarantee "${F[@]}" --strategy random --rounds 0 --seed-size 200 --audit-labels 1000
    # Coverage against audit labels: 500 more per round, a refit each round.
    sim fashion-coverage "${F[@]}" --strategy random --rounds 3 --seed-size 200 --batch 20 \
        --audit-labels 2000 --audit-per-round 500 --calibrate-every 500
    # Drift: Trouser <-> Bag from round 2 (after 400 audit labels), one version.
    DRIFT=(--strategy random --rounds 5 --seed-size 200 --batch 20 --audit-labels 1200
        --audit-per-round 200 --calibrate-every 0)
    sim fashion-drift "${F[@]}" "${DRIFT[@]}" --drift-at 2 --drift-swap Trouser,Bag
    sim fashion-steady "${F[@]}" "${DRIFT[@]}"
    # Label errors: 5% of human labels corrupted.
    sim fashion-noise "${F[@]}" --strategy random --rounds 0 --seed-size 200 --audit-labels 1000 --noise 0.05
    # The cost of a finished data set.
    sim fashion-finish "${F[@]}" --strategy random --seed-size 100 --batch 500 --audit-labels 1000 --finish
fi

if [[ $ONLY == *sms* ]]; then
    S=(--model minilm-l6 --data data/sms-spam/sms.jsonl --cache "$OUT/cache-sms.json"
        --target 0.95 --delta 0.05)
    sim sms-guarantee "${S[@]}" --strategy margin --rounds 10 --seed-size 20 --batch 20 --audit-labels 500
    sim sms-coverage "${S[@]}" --strategy margin --rounds 3 --seed-size 20 --batch 50 \
        --audit-labels 2000 --audit-per-round 500 --calibrate-every 500
    DRIFT=(--strategy margin --rounds 6 --seed-size 20 --batch 20 --audit-labels 700
        --audit-per-round 100)
    sim sms-drift "${S[@]}" "${DRIFT[@]}" --drift-at 3 --drift-swap ham,spam
    sim sms-steady "${S[@]}" "${DRIFT[@]}"
    sim sms-noise "${S[@]}" --strategy margin --rounds 10 --seed-size 20 --batch 50 --audit-labels 500 --noise 0.05
    sim sms-finish "${S[@]}" --strategy margin --seed-size 20 --batch 50 --audit-labels 300 --finish
    # Zero-shot: no labels at all; accuracy on the held-out fifth.
    # The shipped descriptions, and two alternatives tried beside them.
    ZS=(--zero-shot --strategy random --rounds 0 --seed-size 20 --audit-labels 0)
    cat >"$OUT/sms-descriptions-terse.json" <<'JSON'
{"ham": "a normal message", "spam": "an advertisement"}
JSON
    cat >"$OUT/sms-descriptions-keywords.json" <<'JSON'
{"ham": "ok see you later, I'm at home, call me when you're free, love you",
 "spam": "WINNER! Claim your FREE prize now, txt WIN to 80082, urgent cash award, call 0800"}
JSON
    SIM_SEEDS=1 sim sms-zero-names "${S[@]}" "${ZS[@]}"
    SIM_SEEDS=1 sim sms-zero-descriptions "${S[@]}" "${ZS[@]}" \
        --label-descriptions scripts/sms_label_descriptions.json
    for v in terse keywords; do
        SIM_SEEDS=1 sim "sms-zero-$v" "${S[@]}" "${ZS[@]}" \
            --label-descriptions "$OUT/sms-descriptions-$v.json"
    done
fi

.venv-figures/bin/python scripts/calibration_figures.py "$OUT" --seeds "$SEEDS" >"$OUT/figures.md"
cat "$OUT/figures.md"
