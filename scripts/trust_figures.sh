#!/usr/bin/env bash
# Issue 26 figures: coverage at a guaranteed precision for a realistic
# human budget (review + audit labels together), on Fashion-MNIST (the CNN's
# own scores) and SMS spam (minilm-l6 embeddings + a head retrained every
# round), with `labelloop simulate`:
#   - current: uniform audit, one global Learn-then-Test threshold (binomial);
#   - pooled:  uniform audit, class curves from the review labels, one scan at δ;
#   - ipw:     audit drawn each round where the decision is made (uniform share
#              0.2), Horvitz–Thompson terms, betting e-process, pooled order;
#   - ipw-review (SMS, where people review): ipw, and review batches drawn by
#              the proportional rule (probability ∝ chance of being wrong,
#              uniform share 0.2) whose labels count towards the bound;
#   - MAPIE BinaryClassificationController (fixed_sequence) on the current
#     method's audit labels and scores; the single-threshold oracle (truth).
#
#   bash scripts/trust_figures.sh                 # 20 seeds
#   SEEDS=5 bash scripts/trust_figures.sh         # quicker
#   ONLY=fashion bash scripts/trust_figures.sh    # one data set (fashion|sms)
#   BIN=/path/to/labelloop bash scripts/trust_figures.sh   # skip the release build
#   METHODS="current pooled" bash scripts/trust_figures.sh  # a subset (current pooled ipw ipw-review)
#   FINISH=0 bash scripts/trust_figures.sh        # skip the `simulate --finish` shares
#   FINISH_ONLY=1 bash scripts/trust_figures.sh   # only the `simulate --finish` shares
#   SKIP_SETUP=1 bash scripts/trust_figures.sh    # data and models already in place
#
# Writes target/trust-figures/figures.md (also printed) and every run under
# target/trust-figures/. Python side: .venv-figures (as calibration_figures.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SEEDS=${SEEDS:-20}
ONLY=${ONLY:-fashion,sms}
THREADS=${THREADS:-2}
SHARE=${SHARE:-0.2}
OUT=${OUT:-$ROOT/target/trust-figures}
log() { printf '[trust] %s\n' "$*" >&2; }

[ "${SKIP_SETUP:-0}" = 1 ] || bash scripts/setup.sh >/dev/null
if [ -z "${BIN:-}" ]; then
    log "building the release binary"
    cargo build --release --quiet
    BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/labelloop
fi
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
    "$BIN" simulate --threads "$THREADS" --seeds "$SEEDS" --out "$OUT/$name" "$@" \
        >"$OUT/$name.txt" 2>"$OUT/$name.log"
}

METHODS=${METHODS:-current pooled ipw ipw-review}
FINISH=${FINISH:-1}
FINISH_ONLY=${FINISH_ONLY:-0}
IPW=(--audit-design ipw --uniform-share "$SHARE")
REVIEW=(--review-sampling proportional)
three() { # three NAME ARGS... : the current method, pooled and ipw on the same seeds
    local name=$1
    shift
    for m in $METHODS; do
        case $m in
        current) sim "$name-current" "$@" --method global ;;
        pooled) sim "$name-pooled" "$@" --method pooled ;;
        ipw) sim "$name-ipw" "$@" "${IPW[@]}" ;;
        ipw-review) if [[ $name == sms-* ]]; then sim "$name-ipw-review" "$@" "${IPW[@]}" "${REVIEW[@]}"; fi ;;
        esac
    done
}

COMMON=(--target 0.95 --delta 0.05 --strategy random)
if [[ $ONLY == *fashion* && $FINISH_ONLY != 1 ]]; then
    F=(--model fashion-mnist-cnn --data data/fashion-mnist/test.jsonl --predictor model
        --cache "$OUT/cache-fashion.json" "${COMMON[@]}" --rounds 0)
    # 300 = 100 seed + 200 audit; 500 = 100 + 400; 1,000 = 200 + 800.
    three fashion-300 "${F[@]}" --seed-size 100 --audit-labels 200
    three fashion-500 "${F[@]}" --seed-size 100 --audit-labels 400
    three fashion-1000 "${F[@]}" --seed-size 200 --audit-labels 800
fi
if [[ $ONLY == *sms* && $FINISH_ONLY != 1 ]]; then
    S=(--model minilm-l6 --data data/sms-spam/sms.jsonl --cache "$OUT/cache-sms.json"
        "${COMMON[@]}" --seed-size 20 --batch 20)
    # Review labels arrive 20 a round and the head is retrained every round;
    # audit labels arrive over the same rounds.
    # 300 = 20 seed + 80 review + 200 audit; 500 = 20 + 180 + 300; 1,000 = 20 + 280 + 700.
    three sms-300 "${S[@]}" --rounds 4 --audit-labels 200 --audit-per-round 40
    three sms-500 "${S[@]}" --rounds 9 --audit-labels 300 --audit-per-round 30
    three sms-1000 "${S[@]}" --rounds 14 --audit-labels 700 --audit-per-round 47
fi

# The share of items people labeled to finish the data set (`--finish`), at
# the same guarantee: today's runs (scripts/calibration_figures.sh: Fashion
# 1,000 audit labels, random batches of 500; SMS 300 audit labels, margin
# batches of 50), the current method at smaller audits, and the new design
# (ipw audit + proportional review counted) at each audit size.
if [[ $FINISH == 1 ]]; then
    if [[ $ONLY == *fashion* ]]; then
        FF=(--model fashion-mnist-cnn --data data/fashion-mnist/test.jsonl --predictor model
            --cache "$OUT/cache-fashion.json" --target 0.95 --delta 0.05 --strategy random
            --seed-size 100 --batch 500 --finish)
        for a in ${FASHION_FINISH_AUDITS:-1000 500 300}; do
            sim "finish-fashion-$a-current" "${FF[@]}" --audit-labels "$a" --method global
            sim "finish-fashion-$a-new" "${FF[@]}" --audit-labels "$a" "${IPW[@]}" "${REVIEW[@]}"
        done
    fi
    if [[ $ONLY == *sms* ]]; then
        SF=(--model minilm-l6 --data data/sms-spam/sms.jsonl --cache "$OUT/cache-sms.json"
            --target 0.95 --delta 0.05 --strategy margin --seed-size 20 --batch 50 --finish)
        for a in ${SMS_FINISH_AUDITS:-300 150}; do
            sim "finish-sms-$a-current" "${SF[@]}" --audit-labels "$a" --method global
            sim "finish-sms-$a-new" "${SF[@]}" --audit-labels "$a" "${IPW[@]}" "${REVIEW[@]}"
        done
    fi
fi

.venv-figures/bin/python scripts/trust_figures.py "$OUT" >"$OUT/figures.md"
cat "$OUT/figures.md"
