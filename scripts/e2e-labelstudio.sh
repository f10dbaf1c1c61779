#!/usr/bin/env bash
# labelloop as a Label Studio ML backend, against a real Label Studio 1.23.2
# (issue #11, steps 1-5; step 6 with LS_SYNC=N; the detection step of issue #22
# on synthetic pages, LS_KINDS layout; the speech step of issue #24 on calls
# built from real prompts, LS_KINDS audio; the OCR step of issue #23 on
# rendered pages, LS_KINDS ocr). Installs Label Studio into a
# venv (idempotent), initialises a fresh instance, starts it and labelloop on
# loopback, and runs scripts/labelstudio/e2e.py. Prints the figures as JSON.
#
#   scripts/e2e-labelstudio.sh               # steps 1-5
#   LS_RECORD=tests/fixtures/labelstudio scripts/e2e-labelstudio.sh   # re-record fixtures
#
# Environment: LS_VENV (default .venv-ls), LS_PORT (18080), LL_PORT (18090),
# LS_KINDS (sms,fashion,layout,audio,ocr), LABELLOOP_BIN (default $CARGO_TARGET_DIR/debug/labelloop,
# else target/debug/labelloop, built if missing). The run's files go under the same target folder.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
START=$(date +%s)
VENV=${LS_VENV:-$ROOT/.venv-ls}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
WORK=$TARGET/ls-e2e-run
LS_PORT=${LS_PORT:-18080}
LL_PORT=${LL_PORT:-18090}
TOKEN=0123456789abcdef0123456789abcdef01234567
BIN=${LABELLOOP_BIN:-$TARGET/debug/labelloop}

if [ ! -x "$VENV/bin/label-studio" ]; then
  echo "installing label-studio 1.23.2 into $VENV (about 2-3 minutes)" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q label-studio==1.23.2
fi
[ -x "$BIN" ] || cargo build --bin labelloop
bash scripts/setup.sh >/dev/null

# What Label Studio needs to talk to a backend on loopback (see ../shared/design.md).
export LABEL_STUDIO_ML_BLOCK_LOCAL_IP=false LABEL_STUDIO_SSRF_PROTECTION_ENABLED=false \
  LABEL_STUDIO_LATEST_VERSION_CHECK=false LABEL_STUDIO_COLLECT_ANALYTICS=false \
  LABEL_STUDIO_SENTRY_DSN= LABEL_STUDIO_FRONTEND_SENTRY_DSN= \
  LOCAL_FILES_SERVING_ENABLED=true LOCAL_FILES_DOCUMENT_ROOT=$ROOT/data

rm -rf "$WORK" && mkdir -p "$WORK"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

T=$(date +%s)
"$VENV/bin/label-studio" init e2e --data-dir "$WORK/ls" --username admin@example.com \
  --password admin12345 --user-token "$TOKEN" --enable-legacy-api-token -q >"$WORK/ls-init.log" 2>&1
INIT_SECS=$(( $(date +%s) - T ))
"$VENV/bin/label-studio" start e2e --data-dir "$WORK/ls" --internal-host 127.0.0.1 -p "$LS_PORT" \
  --host "http://127.0.0.1:$LS_PORT" >"$WORK/ls.log" 2>&1 &
pids+=($!)
# Token auth on, as in production: the /labelstudio routes need each
# project's Basic credentials, which e2e.py creates and gives Label Studio.
mkdir -p "$WORK/ll"
LL_TOKEN=$("$BIN" -q tokens create --role admin --name e2e --db "sqlite://$WORK/ll/ll.db")
"$BIN" serve --addr "127.0.0.1:$LL_PORT" --db "sqlite://$WORK/ll/ll.db" \
  --data-root data --threads 2 --ls-hosts "127.0.0.1:$LS_PORT,localhost:$LS_PORT" >"$WORK/ll.log" 2>&1 &
pids+=($!)
for i in $(seq 1 240); do
  curl -sf "http://127.0.0.1:$LS_PORT/health" >/dev/null && curl -sf "http://127.0.0.1:$LL_PORT/healthz" >/dev/null && break
  sleep 0.5
done
curl -sf "http://127.0.0.1:$LS_PORT/health" >/dev/null || { echo "Label Studio did not start; see $WORK/ls.log" >&2; exit 1; }

args=(--ls "http://127.0.0.1:$LS_PORT" --ls-token "$TOKEN" --ll "http://127.0.0.1:$LL_PORT" --ll-token "$LL_TOKEN"
      --kinds "${LS_KINDS:-sms,fashion,layout,audio,ocr}" --sync "${LS_SYNC:-0}")
[ -n "${LS_RECORD:-}" ] && args+=(--record "$LS_RECORD")
FIGURES=$("$VENV/bin/python" scripts/labelstudio/e2e.py "${args[@]}" | tail -1)
TOTAL=$(( $(date +%s) - START ))
echo "$FIGURES" | python3 -c "import json,sys; d=json.load(sys.stdin); d['ls_init_secs']=$INIT_SECS; d['script_secs']=$TOTAL; print(json.dumps(d))"
