#!/usr/bin/env bash
# Set up (idempotent), build, and run the main job: pre-label the 10,000
# Fashion-MNIST test images with the bundled CNN and report accuracy against
# the true labels. Output: demo-output.jsonl (one JSON line per image).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --locked
./target/release/labelloop label \
    --model models/fashion-mnist-cnn \
    data/fashion-mnist/test.jsonl \
    --out demo-output.jsonl
echo "wrote demo-output.jsonl; first line:" >&2
head -n 1 demo-output.jsonl >&2
