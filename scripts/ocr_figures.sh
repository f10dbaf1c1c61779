#!/usr/bin/env bash
# The OCR figures of README ("OCR: text lines on synthetic pages"): on the 20
# synthetic pages of data/ocr-pages (scripts/render_layout_pages.py --lines,
# seed 23, half degraded), page CER, line exact-match and text-line detection
# F1 (scripts/ocr_eval.py) of
#   - labelloop (`labelloop label --model ocr`, release build),
#   - rapidocr==3.10.0's own Python pipeline, angle classifier off
#     (scripts/ocr_reference.py in .venv-ocrref/, ONNX Runtime 1.31.1),
#   - Debian's Tesseract 5 (`tesseract IMAGE - tsv`, English),
# then whole-process pages/s of labelloop and rapidocr: RUNS (default 3)
# alternating runs each over the 20 pages, the same total threads (THREADS,
# default 2: labelloop 2 sessions of 1 thread, rapidocr 2 intra-op threads),
# medians. Model loading and interpreter start are inside the timing.
#
#   scripts/ocr_figures.sh [OUT]      (default OUT: .cache/ocr-figures)
#
# Needs scripts/setup.sh first (models/ocr, data/ocr-pages) and, for the
# Tesseract column, Debian's tesseract-ocr (installed here when root).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-.cache/ocr-figures}
RUNS=${RUNS:-3}
THREADS=${THREADS:-2}
PAGES=data/ocr-pages/pages.jsonl
TRUTH=data/ocr-pages/lines.json
log() { echo "ocr_figures: $*" >&2; }

[ -f "$TRUTH" ] && [ -f models/ocr/rec.onnx ] || { log "run scripts/setup.sh first"; exit 1; }
if [ ! -x .venv-ocrref/bin/python ]; then
    log "creating .venv-ocrref"
    python3 -m venv .venv-ocrref
fi
.venv-ocrref/bin/pip install --quiet --disable-pip-version-check -r scripts/ocr_reference.requirements.txt
if ! command -v tesseract >/dev/null; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        apt-get install -y -qq tesseract-ocr >/dev/null 2>&1 \
            || { apt-get update -qq >/dev/null && apt-get install -y -qq tesseract-ocr >/dev/null; }
    fi
fi
cargo build --release --locked --quiet
BIN=${CARGO_TARGET_DIR:-target}/release/labelloop
mkdir -p "$OUT"

labelloop_run() { # OUTFILE
    "$BIN" label --model ocr --threads "$THREADS" --sessions "$THREADS" "$PAGES" --out "$1" 2>/dev/null
}
rapidocr_run() { # OUTFILE
    .venv-ocrref/bin/python scripts/ocr_reference.py rapidocr "$PAGES" "$1" --threads "$THREADS" 2>/dev/null
}
secs() { # COMMAND... -> wall seconds on stdout
    local t0 t1
    t0=$(date +%s.%N)
    "$@"
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc -l
}

: > "$OUT/times.txt"
for r in $(seq 1 "$RUNS"); do
    a=$(secs labelloop_run "$OUT/labelloop.jsonl")
    b=$(secs rapidocr_run "$OUT/rapidocr.jsonl")
    echo "$r labelloop $a rapidocr $b" | tee -a "$OUT/times.txt" >&2
done
if command -v tesseract >/dev/null; then
    OMP_THREAD_LIMIT=$THREADS .venv-ocrref/bin/python scripts/ocr_reference.py tesseract "$PAGES" "$OUT/tesseract.jsonl"
fi

echo "== accuracy (synthetic pages: data/ocr-pages, 20 pages, half degraded)"
for who in labelloop rapidocr tesseract; do
    [ -f "$OUT/$who.jsonl" ] || continue
    echo "-- $who"
    python3 scripts/ocr_eval.py "$TRUTH" "$OUT/$who.jsonl"
done
echo "== whole-process pages/s ($RUNS alternating runs each, $THREADS threads, medians; a shared, noisy machine)"
python3 - "$OUT/times.txt" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
a = [float(r[2]) for r in rows]
b = [float(r[4]) for r in rows]
ma, mb = statistics.median(a), statistics.median(b)
print(f"labelloop {20 / ma:.3f} pages/s (median {ma:.1f} s; runs {', '.join(f'{x:.1f}' for x in a)})")
print(f"rapidocr  {20 / mb:.3f} pages/s (median {mb:.1f} s; runs {', '.join(f'{x:.1f}' for x in b)})")
print(f"labelloop / rapidocr: {mb / ma:.2f}x")
PY
