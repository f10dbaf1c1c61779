#!/usr/bin/env bash
# Voice-activity figures (#24): labelloop beside the Python reference
# (silero-vad 6.2.3's get_speech_timestamps, torch-free: scripts/vad_reference.py)
# on calls built from real prompts (scripts/make_calls.py; a synthetic
# arrangement of real sounds).
#
#   scripts/vad_figures.sh            # quality per condition + speed, ~5 min
#   RUNS=5 scripts/vad_figures.sh     # more timing runs
#
# Quality: per condition, segment precision / recall / F1 at IoU >= 0.5 and
# the median start / end errors of matched segments (scripts/vad_score.py).
# Speed: whole-process seconds of audio per second over all 160 calls, each
# system run as one process pinned to one core (taskset -c 0) with one
# thread of ONNX Runtime, runs alternating, the median of RUNS (default 3).
# labelloop is also timed with [vad] streams = 1 (one recording per model
# call, as the reference does) to show what batching streams is worth.
#
# Needs scripts/setup.sh to have run (models/vad, data/asterisk). Writes
# bench-results/vad/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
OUT=bench-results/vad
mkdir -p "$OUT"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
WHEEL=$(ls .cache/wheels/silero_vad-6.2.3-*.whl 2>/dev/null | head -n1 || true)
if [ -z "$WHEEL" ]; then
    python3 -m pip download --quiet --no-deps --only-binary=:all: -d .cache/wheels silero-vad==6.2.3
    WHEEL=$(ls .cache/wheels/silero_vad-6.2.3-*.whl | head -n1)
fi
[ -f models/vad/model.onnx ] && [ -f data/asterisk/.complete ] || { echo "run scripts/setup.sh first" >&2; exit 1; }

if ! .venv-vad/bin/python -c 'import numpy, scipy, onnxruntime as o; assert o.__version__ == "1.31.1"' 2>/dev/null; then
    python3 -m venv .venv-vad
    .venv-vad/bin/python -m pip install --quiet --disable-pip-version-check \
        numpy==2.4.6 scipy==1.17.1 onnxruntime==1.31.1
fi
PY=.venv-vad/bin/python
[ -f data/vad-calls/music0/truth.jsonl ] || $PY scripts/make_calls.py --out data/vad-calls --calls 40 --seed 24
cargo build --release --quiet --bin labelloop
LL=$CARGO_TARGET_DIR/release/labelloop
CONDS="clean noise0 music-6 music0"

echo "== quality" >&2
for c in $CONDS; do
    $LL label --model vad --threads 1 --sessions 1 --workers 1 data/vad-calls/$c/calls.jsonl \
        -o "$OUT/labelloop-$c.jsonl" 2>/dev/null
    $PY scripts/vad_reference.py data/vad-calls/$c/calls.jsonl --wheel "$WHEEL" \
        --out "$OUT/reference-$c.jsonl" 2>/dev/null
    $PY scripts/vad_score.py data/vad-calls/$c/truth.jsonl \
        labelloop="$OUT/labelloop-$c.jsonl" reference="$OUT/reference-$c.jsonl" > "$OUT/score-$c.json"
done

echo "== the engine alone: the same 16 kHz samples into both" >&2
# Each side resamples 8 kHz to 16 kHz its own way above (rubato's FFT
# resampler, scipy's polyphase filter). Here both read the same 16 kHz WAVs
# (written once by scipy), so what is left to differ is the model loop and
# the post-processing.
$PY - "$OUT" $CONDS <<'EOF2'
import json, os, sys, wave
import numpy as np
from scipy.signal import resample_poly
out, conds = sys.argv[1], sys.argv[2:]
for c in conds:
    d = f"{out}/calls16k/{c}"
    os.makedirs(d, exist_ok=True)
    with open(f"{d}/calls.jsonl", "w") as f:
        for line in open(f"data/vad-calls/{c}/calls.jsonl"):
            item = json.loads(line)
            with wave.open(item["audio"], "rb") as w:
                x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)
            y = np.clip(np.round(resample_poly(x, 2, 1)), -32768, 32767).astype("<i2")
            path = os.path.abspath(f"{d}/{item['id']}.wav")
            with wave.open(path, "wb") as w:
                w.setnchannels(1); w.setsampwidth(2); w.setframerate(16000); w.writeframes(y.tobytes())
            f.write(json.dumps({"id": item["id"], "audio": path}) + "\n")
EOF2
for c in $CONDS; do
    $LL label --model vad --threads 1 --sessions 1 --workers 1 "$OUT/calls16k/$c/calls.jsonl" \
        -o "$OUT/labelloop16k-$c.jsonl" 2>/dev/null
    $PY scripts/vad_reference.py "$OUT/calls16k/$c/calls.jsonl" --wheel "$WHEEL" \
        --out "$OUT/reference16k-$c.jsonl" 2>/dev/null
    $PY scripts/vad_score.py data/vad-calls/$c/truth.jsonl \
        labelloop="$OUT/labelloop16k-$c.jsonl" reference="$OUT/reference16k-$c.jsonl" > "$OUT/score16k-$c.json"
done

echo "== speed ($RUNS alternating runs, one core)" >&2
cat data/vad-calls/*/calls.jsonl > "$OUT/all-calls.jsonl"
ONE=$(mktemp -d)
trap 'rm -rf "$ONE"' EXIT
mkdir -p "$ONE/vad-streams1"
ln -s "$PWD/models/vad/model.onnx" "$ONE/vad-streams1/model.onnx"
sed 's/^streams = .*/streams = 1/' models/vad/model.toml > "$ONE/vad-streams1/model.toml"
timed() { # timed NAME CMD... -> appends wall seconds to $OUT/time-NAME
    local name=$1; shift
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >/dev/null 2>&1
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc >> "$OUT/time-$name"
}
rm -f "$OUT"/time-*
for r in $(seq "$RUNS"); do
    timed labelloop taskset -c 0 $LL label --model vad --threads 1 --sessions 1 --workers 1 \
        "$OUT/all-calls.jsonl" -o /dev/null
    timed reference taskset -c 0 $PY scripts/vad_reference.py "$OUT/all-calls.jsonl" --wheel "$WHEEL" --out /dev/null
    timed labelloop-streams1 taskset -c 0 $LL label --model "$ONE/vad-streams1" --threads 1 --sessions 1 \
        --workers 1 "$OUT/all-calls.jsonl" -o /dev/null
done

$PY - "$OUT" $CONDS <<'EOF'
import json, statistics, sys
out, conds = sys.argv[1], sys.argv[2:]
audio = 0.0
for c in conds:
    for line in open(f"{out}/labelloop-{c}.jsonl"):
        audio += json.loads(line)["duration"]
print("Voice activity on calls built from real prompts (a synthetic arrangement of real sounds);")
print("segment matched at IoU >= 0.5; errors are medians over matched segments.\n")
print("| condition | system | segments (true) | precision | recall | F1 | start err ms | end err ms | score >= 0.8: kept, precision |")
print("|---|---|---|---|---|---|---|---|---|")
for c in conds:
    s = json.load(open(f"{out}/score-{c}.json"))
    for name in ("labelloop", "reference"):
        a, hi = s[name]
        print(f"| {c} | {name} | {a['pred']} ({a['true']}) | {a['precision']:.3f} | {a['recall']:.3f} | {a['f1']:.3f} "
              f"| {a['start_ms']:.0f} | {a['end_ms']:.0f} | {hi['pred']}, {hi['precision']:.3f} |")
print("\nThe engine alone (both read the same 16 kHz WAVs; no resampling on either side):\n")
print("| condition | F1 labelloop | F1 reference | segments identical | largest boundary difference ms |")
print("|---|---|---|---|---|")
for c in conds:
    s = json.load(open(f"{out}/score16k-{c}.json"))
    a = {json.loads(l)["id"]: json.loads(l)["segments"] for l in open(f"{out}/labelloop16k-{c}.jsonl")}
    b = {json.loads(l)["id"]: json.loads(l)["segments"] for l in open(f"{out}/reference16k-{c}.jsonl")}
    same = total = 0
    worst = 0.0
    for k in b:
        total += len(b[k])
        if len(a[k]) == len(b[k]):
            for x, y in zip(a[k], b[k]):
                d = max(abs(x["start"] - y["start"]), abs(x["end"] - y["end"]))
                worst = max(worst, d)
                same += d < 1e-9
    print(f"| {c} | {s['labelloop'][0]['f1']:.3f} | {s['reference'][0]['f1']:.3f} | {same} of {total} | {1000 * worst:.1f} |")
print(f"\nSpeed: {audio / 60:.1f} min of audio (all four conditions), whole process, one core (taskset -c 0), "
      "one ONNX Runtime thread; median of alternating runs.\n")
print("| system | runs (s) | median s | audio s per s |")
print("|---|---|---|---|")
for name in ("labelloop", "labelloop-streams1", "reference"):
    ts = [float(x) for x in open(f"{out}/time-{name}")]
    m = statistics.median(ts)
    print(f"| {name} | {', '.join(f'{t:.2f}' for t in ts)} | {m:.2f} | {audio / m:.0f} |")
EOF
