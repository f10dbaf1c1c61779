#!/usr/bin/env bash
# Where OCR's time goes, labelloop beside rapidocr, on the first N (default
# 6) synthetic pages of data/ocr-pages, one thread each (labelloop 1 session
# of 1 thread, rapidocr 1 intra-op thread):
#   - labelloop: per page detection, crop rectification and recognition
#     wall time, and per recognition batch staging (resize + normalise),
#     `session.run` and CTC decoding, and the padding (batch pixels against
#     the crops' own widths), from its debug log
#     (LABELLOOP_LOG=labelloop::model::ocr=debug);
#   - rapidocr: its detection and recognition `InferenceSession.run` calls
#     timed inside its own pipeline (scripts/ocr_profile.py), and the rest.
# Process CPU-seconds of each (user + sys) come from /usr/bin/time.
#
#   scripts/ocr_profile.sh [N] [OUT]      (default OUT: .cache/ocr-profile)
#
# Needs a release build; makes .venv-ocrref (rapidocr) if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-6}
OUT=${2:-.cache/ocr-profile}
BIN=${CARGO_TARGET_DIR:-target}/release/labelloop
if [ ! -x .venv-ocrref/bin/python ]; then
    python3 -m venv .venv-ocrref
fi
.venv-ocrref/bin/pip install --quiet --disable-pip-version-check -r scripts/ocr_reference.requirements.txt
mkdir -p "$OUT"
root=$(cd data/ocr-pages && pwd)
head -n "$N" data/ocr-pages/pages.jsonl \
    | python3 -c "import json,sys; [print(json.dumps({**d, 'image': '$root/' + d['image']})) for d in map(json.loads, sys.stdin)]" \
    >"$OUT/pages.jsonl"
cputime() { # LOG COMMAND... ; appends "user sys wall" to LOG
    local log=$1
    shift
    /usr/bin/time -f "%U %S %e" -o "$log" "$@"
}
LABELLOOP_LOG=labelloop::model::ocr=debug cputime "$OUT/labelloop.time" \
    "$BIN" label --model ocr --threads 1 --sessions 1 "$OUT/pages.jsonl" --out "$OUT/labelloop.jsonl" \
    2>"$OUT/labelloop.log"
cputime "$OUT/rapidocr.time" .venv-ocrref/bin/python scripts/ocr_profile.py "$OUT/pages.jsonl" >"$OUT/rapidocr.txt"
python3 - "$OUT" "$N" <<'PY'
import re, sys
out, n = sys.argv[1], int(sys.argv[2])
# The log may be coloured (ANSI escapes around keys): strip them first.
kv = lambda line: {k: float(v) for k, v in re.findall(r"(\w+)=([0-9.]+)", re.sub(r"\x1b\[[0-9;]*m", "", line))}
pages = [kv(l) for l in open(f"{out}/labelloop.log") if "ocr page" in l]
batches = [kv(l) for l in open(f"{out}/labelloop.log") if "ocr batch" in l]
cpu = lambda f: sum(map(float, open(f).read().split()[:2]))
lcpu, rcpu = cpu(f"{out}/labelloop.time"), cpu(f"{out}/rapidocr.time")
s = lambda rows, k: sum(r.get(k, 0.0) for r in rows) / 1e3
print(f"labelloop, {n} pages, {int(sum(p['lines'] for p in pages))} crops: process {lcpu:.1f} CPU-s")
print(f"  detection {s(pages, 'detect_ms'):.1f} s, crops {s(pages, 'crop_ms'):.1f} s, recognition {s(pages, 'recognize_ms'):.1f} s"
      f" (staging {s(batches, 'stage_ms'):.1f}, session.run {s(batches, 'run_ms'):.1f}, CTC {s(batches, 'decode_ms'):.1f})")
px = sum(b["crops"] * b["width"] for b in batches)
own = sum(b["own_width"] for b in batches)
print(f"  recognition batches {len(batches)}: padded columns {px:.0f} against the crops' own {own:.0f} ({px / own:.3f}x)")
print(f"rapidocr: process {rcpu:.1f} CPU-s")
print(open(f"{out}/rapidocr.txt").read().strip())
PY
