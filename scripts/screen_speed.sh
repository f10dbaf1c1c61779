#!/usr/bin/env bash
# Speed of near-duplicate + outlier screening against cleanlab Datalab, both
# sides on the same embeddings (issue 25):
#   bash scripts/screen_speed.sh                 # 10k and 60k, RUNS=3 alternating
#   SIZES=10k RUNS=5 bash scripts/screen_speed.sh
#
# The Fashion-MNIST CNN's 64-d embeddings of the 10,000 test images (10k) and
# the 60,000 training images (60k) are exported once to .npy files. Each run
# then times, one after the other:
#   ours:    labelloop screen --embeddings emb.npy --only near,outliers
#            (the real near-duplicate stage: pixel + embedding k-NN
#            candidates, shifted-correlation check; and the within-pool
#            outlier rule, Datalab's) — `screen_seconds` of its summary,
#            which excludes reading and decoding the images, as Datalab's
#            timing excludes loading its array;
#   Datalab: find_issues(features=emb, issue_types={near_duplicate, outlier}).
# Medians of RUNS; Datalab at 60k runs DATALAB_60K_RUNS times (default 1: it
# takes 10-25 minutes here). A finished Datalab 60k result
# ($OUT/datalab-60k-1.json) is reused when REUSE_DATALAB_60K=1 (the table says so).
# Writes $OUT/speed.md (also printed) with the load average around each side.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
FIG=${FIG:-$TARGET/screen-figures}
DATA=$FIG/data
OUT=${OUT:-$FIG/speed}
BIN=$TARGET/release/labelloop
THREADS=${THREADS:-2}
RUNS=${RUNS:-3}
SIZES=${SIZES:-10k 60k}
DATALAB_60K_RUNS=${DATALAB_60K_RUNS:-1}
PY=.venv-screen/bin/python
log() { printf '[speed] %s\n' "$*" >&2; }
load() { cut -d' ' -f1 /proc/loadavg; }
median() { $PY -c "import statistics,sys; print(round(statistics.median(float(x) for x in sys.argv[1:]), 3))" "$@"; }

[ -x "$BIN" ] || cargo build --release --quiet --bin labelloop
[ -f "$DATA/fashion/train.jsonl" ] || { log "run scripts/screen_figures.sh first (it builds the sets)"; exit 1; }
mkdir -p "$OUT"
ROWS=""
for n in $SIZES; do
    data=$DATA/fashion/test.jsonl
    [ "$n" = 60k ] && data=$DATA/fashion/train.jsonl
    if [ ! -f "$OUT/emb-$n.npy" ]; then
        log "$n: exporting the CNN's embeddings"
        "$BIN" -q label --threads "$THREADS" --embeddings --model fashion-mnist-cnn "$data" --out "$OUT/emb-$n.jsonl" 2>/dev/null
        $PY scripts/screen_score.py npy --embeddings "$OUT/emb-$n.jsonl" --data "$data" --out "$OUT/emb-$n.npy" >/dev/null
    fi
    dl_runs=$RUNS
    [ "$n" = 60k ] && dl_runs=$DATALAB_60K_RUNS
    ours=() near=() outl=() theirs=() loads=() dloads=()
    reused=""
    for r in $(seq "$RUNS"); do
        l0=$(load)
        "$BIN" -q screen --threads "$THREADS" --model fashion-mnist-cnn "$data" --embeddings "$OUT/emb-$n.npy" \
            --only near,outliers --out "$OUT/ours-$n-$r.issues.jsonl" --summary "$OUT/ours-$n-$r.summary.json" 2>"$OUT/ours-$n-$r.log"
        loads+=("$l0" "$(load)")
        read -r t a b < <($PY -c "import json,sys; s=json.load(open(sys.argv[1])); print(s['screen_seconds'], s['seconds'].get('near_image', 0), s['seconds'].get('outliers', 0))" "$OUT/ours-$n-$r.summary.json")
        ours+=("$t") near+=("$a") outl+=("$b")
        log "$n run $r: ours ${t}s (near $a, outliers $b)"
        if [ "$r" -le "$dl_runs" ]; then
            if [ "$n" = 60k ] && [ "$r" = 1 ] && [ -n "${REUSE_DATALAB_60K:-}" ] && [ -f "$OUT/datalab-60k-1.json" ]; then
                reused=" (Datalab 60k result reused from an earlier run of this script's command)"
            else
                l0=$(load)
                OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS $PY scripts/screen_score.py datalab --embeddings "$OUT/emb-$n.npy" >"$OUT/datalab-$n-$r.json"
                dloads+=("$l0" "$(load)")
            fi
            theirs+=("$($PY -c "import json,sys; print(json.load(open(sys.argv[1]))['seconds'])" "$OUT/datalab-$n-$r.json")")
            log "$n run $r: Datalab ${theirs[-1]}s"
        fi
    done
    o=$(median "${ours[@]}")
    t=$(median "${theirs[@]}")
    ratio=$($PY -c "print(round($t / $o, 1))")
    ROWS+="| $n | $o (near $(median "${near[@]}"), outliers $(median "${outl[@]}")) | $t | **${ratio}×** | ${#ours[@]} / ${#theirs[@]} | ${loads[*]} / ${dloads[*]:-reused}${reused} |"$'\n'
done
{
    echo "# Near-duplicate + outlier speed, same embeddings ($THREADS threads; $(date -u +%F))"
    echo
    echo "| items | labelloop screen --only near,outliers (s, median) | Datalab near_duplicate + outlier (s, median) | ratio | runs (ours / Datalab) | load average before/after (ours / Datalab) |"
    echo "|---|---|---|---|---|---|"
    printf '%s' "$ROWS"
} | tee "$OUT/speed.md"
