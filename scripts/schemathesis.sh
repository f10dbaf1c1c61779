#!/usr/bin/env bash
# The API against its own document: Schemathesis (PyPI, pinned, in
# .venv-schemathesis/) drives a real `labelloop serve` for a fixed time with a
# fixed seed, and fails on any check failure, on a token refused
# (`missing_auth`) and on data the document calls valid refused as invalid
# (`validation_mismatch`); see scripts/schemathesis.toml.
#
# The server runs on a temporary SQLite store with token auth on, holding a
# project of each task kind, each in a state where every operation on it can
# succeed: 1, text (minilm-l6, 10 ham and 10 spam SMS messages, all in the
# audit sample and all labeled, so a head trains and a calibration fits);
# 2, image classification (fashion-mnist-cnn, 50 Fashion-MNIST test images,
# all audited, 12 labeled, calibrated); 3, object detection (layout, 3
# synthetic pages) when the engine loads it; 5, speech (vad, two Asterisk
# prompts, with a signed content link the fuzzer reuses). Ids 1, 2, 3 of projects and
# items exist, so the generated small ids reach real resources as well as
# missing ones; and the operations that only a project in the right state
# serves (train, calibrate, annotations, an item's regions, a screen with
# its reference project, 4) draw the fixture's ids in
# three draws of four or more (Schemathesis dictionaries, appended to the
# config below; scripts/schemathesis_hooks.py fits ingests and box sets),
# the other draws exploring as before.
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
RELABEL_PID=
cleanup() {
    if [ -n "$RELABEL_PID" ]; then
        kill -TERM "$RELABEL_PID" 2>/dev/null || true
        wait "$RELABEL_PID" 2>/dev/null || true
    fi
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

# api METHOD PATH [BODY] -> the JSON answer; fails on a non-2xx status,
# showing the answer.
api() {
    local out
    if ! out=$(curl -sS --fail-with-body -X "$1" "$BASE$2" \
        -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
        ${3:+--data-binary "$3"}); then
        log "$1 $2: $out"
        return 1
    fi
    printf '%s\n' "$out"
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

# label_all PROJECT TSV: a human label on each item (TSV: client id, label).
label_all() {
    local page cid label id
    page=$(api GET "/v1/projects/$1/items?limit=100")
    while IFS=$'\t' read -r cid label; do
        id=$(field "$page" "[i['id'] for i in d['items'] if i['client_id'] == '$cid'][0]")
        api POST "/v1/items/$id/annotations" "{\"label\": \"$label\"}" >/dev/null
    done <<<"$2"
}

# 1. Text: 20 SMS messages on minilm-l6, half ham and half spam, all
# labeled. The first 10 stay out of the audit sample, and their labels train
# a head (checked here); the next 10 are all audited, and their labels fit a
# calibration.
P1=$(field "$(api POST /v1/projects '{"name": "sms", "model": "minilm-l6", "labels": ["ham", "spam"], "settings": {"audit_rate": 0, "calibrate_every": 0}}')" 'd["id"]')
SMS=$(python3 - "$ROOT/data/sms-spam/sms.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
ham = [r for r in rows if r["label"] == "ham"]
spam = [r for r in rows if r["label"] == "spam"]
print(json.dumps([ham[:5] + spam[:5], ham[5:10] + spam[5:10]]))
PY
)
for half in 0 1; do
    [ "$half" = 1 ] && api PUT "/v1/projects/$P1/settings" '{"audit_rate": 1, "calibrate_every": 0}' >/dev/null
    wait_job "$(field "$(api POST "/v1/projects/$P1/items" "$(field "$SMS" "json.dumps([{'id': r['id'], 'text': r['text']} for r in d[$half]])")")" 'd["job"]["id"]')"
    label_all "$P1" "$(field "$SMS" "chr(10).join(r['id'] + chr(9) + r['label'] for r in d[$half])")"
    if [ "$half" = 0 ]; then
        wait_job "$(field "$(api POST "/v1/projects/$P1/train")" 'd["repredict_job"]["id"]')"
    fi
done
wait_job "$(field "$(api POST "/v1/projects/$P1/calibrate")" 'd["id"]')"

# 2. Image classification: 50 Fashion-MNIST test images, all audited, 12
# labeled (the true labels), calibrated.
P2=$(field "$(api POST /v1/projects '{"name": "fashion", "model": "fashion-mnist-cnn", "settings": {"audit_rate": 1, "calibrate_every": 0}}')" 'd["id"]')
ITEMS=$(python3 - "$ROOT/data/fashion-mnist/test.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])][:50]
print(json.dumps([{"id": r["id"], "path": "fashion-mnist/" + r["image"]} for r in rows]))
PY
)
wait_job "$(field "$(api POST "/v1/projects/$P2/items" "$ITEMS")" 'd["job"]["id"]')"
FASHION_LABELS=$(python3 - "$ROOT/data/fashion-mnist/test.jsonl" <<'PY'
import json, sys
for r in [json.loads(l) for l in open(sys.argv[1])][:12]:
    print(r["id"] + "\t" + r["label"])
PY
)
label_all "$P2" "$FASHION_LABELS"
wait_job "$(field "$(api POST "/v1/projects/$P2/calibrate")" 'd["id"]')"

# 3. Object detection, when projects on the layout model exist on this tree.
P3=
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

# 4. The reference project that screens of project 2 test against: 30
# other Fashion-MNIST test images on the same model.
P2R=$(field "$(api POST /v1/projects '{"name": "fashion-reference", "model": "fashion-mnist-cnn", "settings": {"audit_rate": 0, "calibrate_every": 0}}')" 'd["id"]')
REF_ITEMS=$(python3 - "$ROOT/data/fashion-mnist/test.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])][50:80]
print(json.dumps([{"id": r["id"], "path": "fashion-mnist/" + r["image"]} for r in rows]))
PY
)
wait_job "$(field "$(api POST "/v1/projects/$P2R/items" "$REF_ITEMS")" 'd["job"]["id"]')"

# 5. Speech, when the vad model and the Asterisk prompts are here: two
# prompts as recordings, for the waveform peaks; and a signed link to the
# first (GET /v1/items/{id}/content-link), whose parts the fuzzer reuses,
# since it cannot sign one itself (a link lasts 10 minutes, longer than a run).
P5=
SPEECH_ITEMS=
LINK=
if [ -f "$ROOT/data/asterisk/.complete" ] && P5_JSON=$(api POST /v1/projects '{"name": "calls", "model": "vad", "threshold": 0.99}' 2>/dev/null); then
    P5=$(field "$P5_JSON" 'd["id"]')
    wait_job "$(field "$(api POST "/v1/projects/$P5/items" '[{"id": "hello", "path": "asterisk/sounds/hello.wav"}, {"id": "goodbye", "path": "asterisk/sounds/goodbye.wav"}]')" 'd["job"]["id"]')"
    SPEECH_ITEMS=$(field "$(api GET "/v1/projects/$P5/items?limit=100")" '", ".join(str(i["id"]) for i in d["items"])')
    LINK=$(api GET "/v1/items/${SPEECH_ITEMS%%,*}/content-link")
else
    log "no speech project: ${P5_JSON:-no data/asterisk}"
fi

# The fixture's ids as Schemathesis dictionaries, bound to the operations
# that only a project in the right state serves (Schemathesis' own
# per-operation `parameters`): the static settings, then these. Ingests are
# fitted to the fixture by scripts/schemathesis_hooks.py (a batch and a
# project id that the document cannot tie together).
PAGE_SIZES={}
if [ -n "$P3" ]; then
    PAGE_SIZES=$(python3 - "$BASE" "$TOKEN" "$P3" <<'PY'
import json, sys, urllib.request
base, token, project = sys.argv[1:4]
def get(path):
    req = urllib.request.Request(base + path, headers={"Authorization": "Bearer " + token})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())
sizes = {}
for item in get(f"/v1/projects/{project}/items?limit=100")["items"]:
    r = get(f"/v1/projects/{project}/items/{item['id']}/regions")
    sizes[str(item["id"])] = [r["width"], r["height"]]
print(json.dumps(sizes))
PY
)
fi
LABELLOOP_FIXTURE=$(python3 -c 'import json, sys; print(json.dumps({"text_project": int(sys.argv[1]), "image_project": int(sys.argv[2]), "image_paths": [i["path"] for i in json.loads(sys.argv[3])], "detection_project": int(sys.argv[4] or 0), "pages": json.loads(sys.argv[5])}))' "$P1" "$P2" "$ITEMS" "$P3" "$PAGE_SIZES")
export LABELLOOP_FIXTURE
CONFIG=$WORK/schemathesis.toml
{
    printf 'hooks = "%s"\n' "$ROOT/scripts/schemathesis_hooks.py"
    cat scripts/schemathesis.toml
    cat <<TOML

# --- appended by scripts/schemathesis.sh: the fixture's ids ---
[dictionaries.labeled-projects]
values = [$P1]

[dictionaries.labeled-items]
values = [$(field "$(api GET "/v1/projects/$P1/items?limit=100")" '", ".join(str(i["id"]) for i in d["items"])')]

[dictionaries.labeled-labels]
values = ["ham", "spam"]

[[operations]]
include-name = "POST /v1/projects/{id}/train"
parameters = { "path.id" = { dictionary = "labeled-projects", probability = 0.75 } }

[[operations]]
include-name = "POST /v1/projects/{id}/calibrate"
parameters = { "path.id" = { dictionary = "labeled-projects", probability = 0.75 } }

[dictionaries.screen-projects]
values = [$P2]

[dictionaries.screen-references]
values = [$P2R]

[[operations]]
include-name = "POST /v1/projects/{id}/screen"
parameters = { "path.id" = { dictionary = "screen-projects", probability = 0.75 }, "body.reference_project" = { dictionary = "screen-references", probability = 0.75 } }

[[operations]]
include-name = "POST /v1/items/{id}/annotations"
parameters = { "path.id" = { dictionary = "labeled-items", probability = 0.75 }, "body.label" = { dictionary = "labeled-labels", probability = 0.75 } }
TOML
    if [ -n "$P3" ]; then
        cat <<TOML

[dictionaries.detection-projects]
values = [$P3]

[dictionaries.detection-items]
values = [$(field "$(api GET "/v1/projects/$P3/items?limit=100")" '", ".join(str(i["id"]) for i in d["items"])')]

[[operations]]
include-path = "/v1/projects/{id}/items/{item}/regions"
parameters = { "path.id" = { dictionary = "detection-projects", probability = 0.9 }, "path.item" = { dictionary = "detection-items", probability = 0.9 } }
TOML
    fi
    if [ -n "$P5" ]; then
        cat <<TOML

[dictionaries.speech-projects]
values = [$P5]

[dictionaries.speech-items]
values = [$SPEECH_ITEMS]

[[operations]]
include-name = "GET /v1/items/{id}/peaks"
parameters = { "path.id" = { dictionary = "speech-items", probability = 0.9 }, "query.project" = { dictionary = "speech-projects", probability = 0.9 } }

[dictionaries.link-items]
values = [${SPEECH_ITEMS%%,*}]

[dictionaries.link-users]
values = ["schemathesis"]

[dictionaries.link-expires]
values = [$(field "$LINK" 'd["expires_at"]')]

[dictionaries.link-sigs]
values = ["$(field "$LINK" 'd["url"].rsplit("sig=", 1)[1]')"]

[[operations]]
include-name = "GET /v1/items/{id}/content/signed"
parameters = { "path.id" = { dictionary = "link-items", probability = 0.9 }, "query.user" = { dictionary = "link-users", probability = 0.9 }, "query.expires" = { dictionary = "link-expires", probability = 0.9 }, "query.sig" = { dictionary = "link-sigs", probability = 0.9 } }
TOML
    fi
} >"$CONFIG"

# An annotator at work beside the fuzzer: the fuzzer deletes annotations
# (DELETE /v1/annotations/{id}, starting with every id it has seen), and a
# project without human labels can neither train nor calibrate. Every second,
# each fixture item left without a label gets its true label again.
{
    field "$SMS" "chr(10).join('$P1' + chr(9) + r['id'] + chr(9) + r['label'] for r in d[0] + d[1])"
    while IFS=$'\t' read -r cid label; do printf '%s\t%s\t%s\n' "$P2" "$cid" "$label"; done <<<"$FASHION_LABELS"
} >"$WORK/labels.tsv"
python3 - "$BASE" "$TOKEN" "$WORK/labels.tsv" <<'PY' &
import json, sys, time, urllib.request
base, token, tsv = sys.argv[1:4]
truth = {}
for line in open(tsv):
    project, cid, label = line.rstrip("\n").split("\t")
    truth.setdefault(project, {})[cid] = label
def call(method, path, body=None):
    req = urllib.request.Request(base + path, method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": "Bearer " + token, "content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())
while True:
    for project, labels in truth.items():
        try:
            for item in call("GET", f"/v1/projects/{project}/items?limit=100")["items"]:
                label = labels.get(item["client_id"])
                if label and item["status"] != "labeled":
                    call("POST", f"/v1/items/{item['id']}/annotations", {"label": label})
        except Exception:
            pass  # the fuzzer's doing (a lease, a conflict): next round
    time.sleep(1)
PY
RELABEL_PID=$!

log "running Schemathesis $ST_VERSION for ${MAX_TIME}s, seed $SEED"
set +e
"$VENV/bin/st" --config-file "$CONFIG" run "$BASE/v1/openapi.json" \
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
