#!/usr/bin/env bash
# Side-by-side speed check of this tree against an earlier commit, in one run:
# builds both release binaries (the earlier one in a throwaway git worktree
# under target/bench-base/), then runs scripts/bench_compare.sh and
# scripts/bench_http.sh for each binary in turn, alternating rounds so that
# machine drift hits both alike. Each round's own peers are reported too, so
# the ratio to the peer can be compared as well as raw rates.
#
#   bash scripts/bench_vs_commit.sh --base a5a30ea            # 3 rounds
#   bash scripts/bench_vs_commit.sh --base HEAD~5 --rounds 1 --quick
#
# Writes bench-results/vs-<base>/<round>-<side>-{compare,http}.md
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=""; ROUNDS=3; QUICK=()
while [ $# -gt 0 ]; do
    case "$1" in
        --base) BASE=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --quick) QUICK=(--quick); shift ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
[ -n "$BASE" ] || { echo "--base REV is required (see --help)" >&2; exit 2; }
bash scripts/setup.sh
cargo build --release --locked
REV=$(git rev-parse --short "$BASE")
WT=target/bench-base/$REV
if [ ! -x "$WT/target/release/labelloop" ]; then
    [ -d "$WT" ] || git worktree add --detach "$WT" "$REV"
    for p in .ort data models/minilm-l6/model.onnx models/minilm-l6/tokenizer.json models/orientation/model.onnx; do
        [ -e "$WT/$p" ] || ln -s "$PWD/$p" "$WT/$p"
    done
    (cd "$WT" && cargo build --release --locked)
fi
OUT=bench-results/vs-$REV
mkdir -p "$OUT"
declare -A BIN=([base]="$WT/target/release/labelloop" [head]="target/release/labelloop")
for r in $(seq "$ROUNDS"); do
    for side in base head; do
        echo "== round $r: $side (${BIN[$side]})" >&2
        bash scripts/bench_compare.sh --bin "${BIN[$side]}" --runs 3 --only fashion,text "${QUICK[@]}"
        cp bench-results/compare.md "$OUT/$r-$side-compare.md"
        bash scripts/bench_http.sh --bin "${BIN[$side]}" --runs 3 --duration 8 --only single,batch64,jobs --images 3000 "${QUICK[@]}"
        cp bench-results/http.md "$OUT/$r-$side-http.md"
    done
done
echo "results: $OUT" >&2
