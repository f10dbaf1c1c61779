#!/usr/bin/env bash
# The main job, on the embedded default (SQLite), after an idempotent setup:
#  1. pre-label the 10,000 Fashion-MNIST test images from the CLI and report
#     accuracy against the true labels (demo-output.jsonl);
#  2. start the service on http://127.0.0.1:8080 with every model loaded and a
#     demo project whose 1,000 images are pre-labeled in the background; it
#     prints the review page's URL (http://127.0.0.1:8080/ui) with the keys
#     to press, then example curl lines. Stop it with Ctrl-C.
# Extra arguments go to `labelloop serve` (e.g. --addr 127.0.0.1:9000).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --locked
./target/release/labelloop label \
    --model models/fashion-mnist-cnn \
    data/fashion-mnist/test.jsonl \
    --out demo-output.jsonl
echo "wrote demo-output.jsonl" >&2
exec ./target/release/labelloop serve --no-auth --demo --data-dir data/labelloop "$@"
