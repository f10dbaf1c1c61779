#!/usr/bin/env bash
# The COCO and YOLO exports read by the real tools (issue #22): starts `labelloop serve`
# (debug build, a throwaway SQLite database, --no-auth on loopback, --data-root
# data/layout-pages), then runs scripts/check_export_coco.py against it: pre-label the
# synthetic pages with the layout model, review some with their ground truth, load the
# COCO exports with pycocotools (and evaluate the machine boxes with COCOeval), open the
# YOLO zip with zipfile. pycocotools is pinned in scripts/check_export_coco.requirements.txt
# (.venv-coco/). Needs scripts/setup.sh first (models/layout, data/layout-pages).
#
#   bash scripts/check_export_coco.sh [--pages 60] [--review 10]
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '[check-export-coco] %s\n' "$*" >&2; }
[ -f data/layout-pages/instances.json ] || { log "run scripts/setup.sh first (data/layout-pages)"; exit 1; }
[ -f models/layout/model.onnx ] || { log "run scripts/setup.sh first (models/layout)"; exit 1; }
VENV=.venv-coco
if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV"
    python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet --disable-pip-version-check -r scripts/check_export_coco.requirements.txt
cargo build --quiet --locked
BIN=${CARGO_TARGET_DIR:-target}/debug/labelloop
tmp=$(mktemp -d)
out=$tmp/serve.out
"$BIN" -q serve --addr 127.0.0.1:0 --db "sqlite://$tmp/db.sqlite" --no-auth \
    --data-root data/layout-pages > "$out" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$tmp"' EXIT
url=
for _ in $(seq 1 120); do
    url=$(sed -n 's/^labelloop listening on //p' "$out" | head -1)
    [ -n "$url" ] && break
    kill -0 "$pid" 2>/dev/null || { log "labelloop serve exited"; exit 1; }
    sleep 0.5
done
[ -n "$url" ] || { log "labelloop serve did not start"; exit 1; }
log "labelloop serve on $url"
"$VENV/bin/python" scripts/check_export_coco.py --url "$url" "$@"
