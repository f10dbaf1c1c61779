#!/usr/bin/env bash
# Speed comparison: the labelloop CLI against what a Python user would write
# (numpy + Pillow + tokenizers + onnxruntime), and against raw ONNX Runtime
# session.run on pre-decoded inputs. Same ORT version, 2 intra-op threads
# everywhere (--threads), median of --runs runs per side.
#
#   bash scripts/bench_compare.sh                      # all three scenarios, 5 runs each
#   bash scripts/bench_compare.sh --runs 7 --only text
#   bash scripts/bench_compare.sh --quick --runs 1     # smoke test only: noisy numbers
#
# Options (handled by scripts/bench/compare.py):
#   --quick                      fewer items (and 1 run unless --runs): a smoke test
#   --runs N                     runs per side (default 5; at least 3 unless --quick)
#   --only fashion|orientation|text   repeatable or comma-separated; default all
#   --threads N                  ORT intra-op threads on every side (default 2)
#   --bin PATH                   labelloop binary (default target/release/labelloop)
# Own options:
#   --build                      run `cargo build --release` even if the binary exists
#
# Writes bench-results/compare.md (also printed) and bench-results/compare.json.
# Runs scripts/setup.sh first (idempotent), builds labelloop if it is missing,
# and keeps the Python peers in .venv-bench/ (pinned: scripts/bench/requirements.txt).
# Measure on an otherwise idle machine: the numbers are CPU-bound.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=scripts/bench/venv.sh
. scripts/bench/venv.sh

log() { printf '[bench] %s\n' "$*" >&2; }

build=0
own_bin=0
args=()
for arg in "$@"; do
    case "$arg" in
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
        --build) build=1 ;;
        --bin|--bin=*) own_bin=1; args+=("$arg") ;;
        *) args+=("$arg") ;;
    esac
done

bash scripts/setup.sh

if [ "$build" = 1 ] || { [ "$own_bin" = 0 ] && [ ! -x target/release/labelloop ]; }; then
    log "building labelloop (release)"
    cargo build --release --quiet
fi

# Python peers in their own venv, reinstalled only when requirements.txt changes.
ensure_bench_venv

exec "$VENV/bin/python" scripts/bench/compare.py "${args[@]}"
