#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite on the real models and data.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/setup-browser.sh
cargo test --locked "$@"
bash scripts/check_openapi.sh
