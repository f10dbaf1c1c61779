#!/usr/bin/env bash
# Issue 26, active learning: label savings against random selection of every
# batch strategy, on three labeled sets, with `labelloop simulate`:
#   - sms:      SMS spam (2 classes), minilm-l6 embeddings + a head;
#   - fashion:  the Fashion-MNIST test set (10 classes), CNN embeddings + a head;
#   - fortunes: Debian's fortunes, eight topics (scripts/fortunes_jsonl.py),
#               minilm-l6 + a head.
# Savings as `simulate` defines them (README "Active learning"): 1 − L/R,
# where R is random's labels in the last round and L the labels after which
# the strategy's held-out accuracy stays at or above random's final accuracy
# (a strategy that never gets there saves 0). No audit sample (labels =
# seed + review), the same seed set for every strategy of a seed.
#
#   bash scripts/al_compare.sh                    # 5 seeds (0..4)
#   SEEDS=10 bash scripts/al_compare.sh
#   ONLY=sms,fortunes bash scripts/al_compare.sh  # a subset (sms|fashion|fortunes)
#   STRATEGIES=margin,badge bash scripts/al_compare.sh
#   BIN=/path/to/labelloop bash scripts/al_compare.sh   # skip the release build
#
# Writes target/al-compare/table.md (also printed); each run's simulation.json
# under target/al-compare/<set>/; embeddings cached beside them.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SEEDS=${SEEDS:-5}
ONLY=${ONLY:-sms,fashion,fortunes}
THREADS=${THREADS:-2}
STRATEGIES=${STRATEGIES:-margin,cluster-margin,badge,typiclust,margin-diverse}
OUT=${OUT:-$ROOT/target/al-compare}
log() { printf '[al] %s\n' "$*" >&2; }

bash scripts/setup.sh >/dev/null
if [ -z "${BIN:-}" ]; then
    log "building the release binary"
    nice -n 19 cargo build --release --quiet --bin labelloop
    BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/labelloop
fi
mkdir -p "$OUT"

# name data model seed-size batch rounds
SETS="sms data/sms-spam/sms.jsonl minilm-l6 20 20 12
fashion data/fashion-mnist/test.jsonl fashion-mnist-cnn 50 50 16
fortunes data/fortunes/fortunes.jsonl minilm-l6 40 40 15"

while read -r name data model seed_size batch rounds; do
    case ",$ONLY," in *",$name,"*) ;; *) continue ;; esac
    log "$name: $STRATEGIES, $SEEDS seeds"
    nice -n 19 "$BIN" simulate --data "$data" -m "$model" --strategy "$STRATEGIES" \
        --seed-size "$seed_size" --batch "$batch" --rounds "$rounds" --seeds "$SEEDS" \
        --audit-labels 0 --threads "$THREADS" --cache "$OUT/$name.cache" \
        --out "$OUT/$name" > "$OUT/$name.log"
done <<< "$SETS"

python3 scripts/al_compare.py "$OUT" --only "$ONLY" | tee "$OUT/table.md"
