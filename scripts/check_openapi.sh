#!/usr/bin/env bash
# Validate the generated OpenAPI document against the OpenAPI 3.1 schema with
# the reference validator (PyPI `openapi-spec-validator`, in .venv-openapi/).
# Usage: scripts/check_openapi.sh   (idempotent; builds the debug binary)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-openapi
if [ ! -x "$VENV/bin/openapi-spec-validator" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet openapi-spec-validator==0.7.1
fi
cargo build --quiet --locked
TARGET="${CARGO_TARGET_DIR:-target}"
mkdir -p "$TARGET"
"$TARGET/debug/labelloop" openapi > "$TARGET/openapi.json"
"$VENV/bin/openapi-spec-validator" --schema 3.1.0 "$TARGET/openapi.json"
