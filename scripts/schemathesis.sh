#!/usr/bin/env bash
# The API against its own document: Schemathesis (PyPI, pinned, in
# .venv-schemathesis/) drives a real `labelloop serve` for a fixed time with a
# fixed seed, and fails on any check failure (schema-mismatch warnings are
# printed; see scripts/schemathesis.toml).
#
# The server runs on a temporary SQLite store with token auth on, holding a
# project of each task kind: image classification (fashion-mnist-cnn, 50
# Fashion-MNIST test images, every one in the audit sample, 12 labeled so
# that calibrating and training are accepted), text (minilm-l6, 20 SMS
# messages, zero-shot) and, when the engine loads it, object detection
# (layout, 3 synthetic pages). Ids 1, 2, 3 of projects and items exist, so the
# generated small ids reach real resources as well as missing ones.
#
# Usage: scripts/schemathesis.sh [SECONDS] [SEED]   (defaults 90 and 20240527)
# Needs scripts/setup.sh (models and data); idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MAX_TIME=${1:-${SCHEMATHESIS_SECONDS:-90}}
SEED=${2:-${SCHEMATHESIS_SEED:-20240527}}
VENV=.venv-schemathesis
ST_VERSION=4.32.5

log() { printf '[schemathesis] %s\n' "$*" >&2; }

if [ ! -x "$VENV/bin/st" ] || ! "$VENV/bin/st" --version 2>/dev/null | grep -q "$ST_VERSION"; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet "schemathesis==$ST_VERSION"
fi

cargo build --quiet --locked
TARGET=${CARGO_TARGET_DIR:-target}
case $TARGET in /*) ;; *) TARGET=$ROOT/$TARGET ;; esac
BIN=$TARGET/debug/labelloop

WORK=$(mktemp -d)
SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BASE=http://127.0.0.1:$PORT

TOKEN=$("$BIN" tokens create --role admin --name schemathesis --data-dir "$WORK/store")
"$BIN" serve --addr "127.0.0.1:$PORT" --data-dir "$WORK/store" \
    --data-root "$ROOT/data" --workers 1 --sessions 1 --threads 1 \
    >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 120); do
    curl -sf "$BASE/readyz" >/dev/null 2>&1 && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; exit 1; }
    sleep 0.5
done
curl -sf "$BASE/readyz" >/dev/null || { log "the server never became ready"; cat "$WORK/server.log" >&2; exit 1; }
log "serving on $BASE (log: server.log in a temporary folder)"

# api METHOD PATH [BODY] -> the JSON answer; fails on a non-2xx status.
api() {
    curl -sS --fail-with-body -X "$1" "$BASE$2" \
        -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
        ${3:+--data-binary "$3"}
}
# field JSON EXPR: a value out of a JSON answer (EXPR is Python on `d`).
field() { python3 -c "import json, sys; d = json.loads(sys.argv[1]); print($2)" "$1"; }

wait_job() { # wait_job ID: until the job leaves `running`
    for _ in $(seq 240); do
        local state
        state=$(field "$(api GET "/v1/jobs/$1")" 'd["state"]')
        [ "$state" != running ] && [ "$state" != calibrating ] && { log "job $1: $state"; return; }
        sleep 0.5
    done
    log "job $1 did not finish"
    exit 1
}

# 1. Image classification: 50 Fashion-MNIST test images, all audited.
P1=$(field "$(api POST /v1/projects '{"name": "fashion", "model": "fashion-mnist-cnn", "settings": {"audit_rate": 1, "calibrate_every": 0}}')" 'd["id"]')
ITEMS=$(python3 - "$ROOT/data/fashion-mnist/test.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])][:50]
print(json.dumps([{"id": r["id"], "path": "fashion-mnist/" + r["image"]} for r in rows]))
PY
)
wait_job "$(field "$(api POST "/v1/projects/$P1/items" "$ITEMS")" 'd["job"]["id"]')"
# 12 human labels (the true ones): audit labels for calibrating, labels for a head.
LABELED=$(python3 - "$ROOT/data/fashion-mnist/test.jsonl" <<'PY'
import json, sys
for r in [json.loads(l) for l in open(sys.argv[1])][:12]:
    print(r["id"] + "\t" + r["label"])
PY
)
PAGE=$(api GET "/v1/projects/$P1/items?limit=100")
while IFS=$'\t' read -r cid label; do
    id=$(field "$PAGE" "[i['id'] for i in d['items'] if i['client_id'] == '$cid'][0]")
    api POST "/v1/items/$id/annotations" "{\"label\": \"$label\"}" >/dev/null
done <<<"$LABELED"
wait_job "$(field "$(api POST "/v1/projects/$P1/calibrate")" 'd["id"]')"

# 2. Text: 20 SMS messages on minilm-l6 (zero-shot until a head is trained).
P2=$(field "$(api POST /v1/projects '{"name": "sms", "model": "minilm-l6", "labels": ["ham", "spam"]}')" 'd["id"]')
TEXTS=$(python3 - "$ROOT/data/sms-spam/sms.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])][:20]
print(json.dumps([{"id": r["id"], "text": r["text"]} for r in rows]))
PY
)
wait_job "$(field "$(api POST "/v1/projects/$P2/items" "$TEXTS")" 'd["job"]["id"]')"

# 3. Object detection, when projects on the layout model exist on this tree.
if P3_JSON=$(api POST /v1/projects '{"name": "layout", "model": "layout"}' 2>/dev/null); then
    P3=$(field "$P3_JSON" 'd["id"]')
    PAGES=$(python3 - "$ROOT/data/layout-pages/pages.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])][:3]
print(json.dumps([{"id": r["id"], "path": "layout-pages/" + r["image"]} for r in rows]))
PY
)
    wait_job "$(field "$(api POST "/v1/projects/$P3/items" "$PAGES")" 'd["job"]["id"]')"
else
    log "no detection project: $P3_JSON"
fi

log "running Schemathesis $ST_VERSION for ${MAX_TIME}s, seed $SEED"
set +e
"$VENV/bin/st" --config-file scripts/schemathesis.toml run "$BASE/v1/openapi.json" \
    -H "Authorization: Bearer $TOKEN" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,negative_data_rejection \
    --max-time "$MAX_TIME" --seed "$SEED" --workers 2 \
    --generation-database none --request-timeout 30 --no-color \
    --report "${SCHEMATHESIS_REPORTS:-junit}" --report-dir "$ROOT/target/schemathesis"
status=$?
set -e
if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    log "the server died during the run"
    tail -50 "$WORK/server.log" >&2
    exit 1
fi
if grep -q '"level":"ERROR"\| ERROR ' "$WORK/server.log"; then
    log "the server logged errors:"
    grep '"level":"ERROR"\| ERROR ' "$WORK/server.log" | head -20 >&2
fi
exit $status
