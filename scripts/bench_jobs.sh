#!/usr/bin/env bash
# End-to-end pre-labeling jobs (issue #29): `labelloop serve` (release) on a
# fresh store, N Fashion-MNIST paths ingested over HTTP as NDJSON in chunks
# of 20,000 (the 10,000 test PNGs repeated under distinct ids), every job
# waited for, then 20 review pages timed. Reports ingest and end-to-end
# time, items/s, review page p50 / max, peak RSS (VmHWM) and the store's size.
#
#   bash scripts/bench_jobs.sh                          # 300,000 items, this tree, 2 runs
#   bash scripts/bench_jobs.sh --items 1000000 --base a5a30ea --runs 2
#   bash scripts/bench_jobs.sh --postgres --replicas 2 --items 300000
#   bash scripts/bench_jobs.sh --items 20000 --runs 1   # smoke test
#
# Options:
#   --items N        items per run (default 300000)
#   --runs N         runs per side, medians reported (default 2)
#   --base REV       also run the release build of REV (built once in a git
#                    worktree under target/bench-base/REV), alternating with this
#                    tree's: base, head, head, base, ...
#   --bin PATH       this side's binary (default target/release/labelloop, built)
#   --postgres [URL] PostgreSQL instead of SQLite: a fresh database per run on
#                    URL's server (default postgres://postgres@127.0.0.1:5432/test)
#   --replicas N     servers sharing the PostgreSQL database (default 1); ingest
#                    chunks go to them in turn, every replica's workers label
#   --ceiling        also measure, in the same run, the CLI's own rate
#                    (`labelloop label` on the 10,000 PNGs, after each round) and
#                    SQLite's floor for the same rows (scripts/bench/sqlite_floor.py)
#   --pages N        review pages timed after each run (default 20; p50/p99/max)
#   --rss-trace PFX  sample the server's RSS every second into PFX-<side>-run<r>.csv
#                    (plot: python3 scripts/bench/plot_rss.py PFX-*.csv --out rss.png)
#   --serve-arg ARG  extra flag for every `serve` (repeatable), e.g. --serve-arg=--workers=4
#
# Writes bench-results/jobs.json (every run) and prints a table of medians.
# The machine is shared and noisy: compare sides within one invocation.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
log() { printf '[bench-jobs] %s\n' "$*" >&2; }

ITEMS=300000; RUNS=2; BASE=""; BIN=""; PG=""; REPLICAS=1; CEILING=0; EXTRA=()
while [ $# -gt 0 ]; do
    case "$1" in
        --items) ITEMS=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;;
        --base) BASE=$2; shift 2 ;;
        --bin) BIN=$2; shift 2 ;;
        --postgres)
            if [ $# -gt 1 ] && [[ "$2" == postgres* ]]; then PG=$2; shift 2
            else PG=postgres://postgres@127.0.0.1:5432/test; shift; fi ;;
        --replicas) REPLICAS=$2; shift 2 ;;
        --ceiling) CEILING=1; shift ;;
        --pages) EXTRA+=(--pages "$2"); shift 2 ;;
        --rss-trace) EXTRA+=(--rss-trace "$2"); shift 2 ;;
        --serve-arg) EXTRA+=(--serve-arg="$2"); shift 2 ;;
        --serve-arg=*) EXTRA+=(--serve-arg="${1#--serve-arg=}"); shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

[ -d data/fashion-mnist/test ] && [ -e .ort ] || bash scripts/setup.sh
if [ -z "$BIN" ]; then
    cargo build --release --locked >&2
    BIN=target/release/labelloop
fi
SIDES=(--side "head=$BIN")
if [ -n "$BASE" ]; then
    REV=$(git rev-parse --short "$BASE")
    WT=target/bench-base/$REV
    if [ ! -x "$WT/target/release/labelloop" ]; then
        [ -d "$WT" ] || git worktree add --detach "$WT" "$REV" >&2
        for p in .ort data models/minilm-l6/model.onnx models/minilm-l6/tokenizer.json models/orientation/model.onnx; do
            [ -e "$WT/$p" ] || [ ! -e "$p" ] || ln -s "$ROOT/$p" "$WT/$p"
        done
        log "building $REV in $WT"
        (cd "$WT" && cargo build --release --locked >&2)
    fi
    SIDES=(--side "$REV=$WT/target/release/labelloop" "${SIDES[@]}")
fi
PGARGS=()
if [ -n "$PG" ]; then
    pg_isready -q -h 127.0.0.1 || pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
    PGARGS=(--postgres "$PG" --replicas "$REPLICAS")
fi
CLI=()
[ "$CEILING" = 1 ] && CLI=(--cli)
mkdir -p bench-results
python3 scripts/bench/jobs_e2e.py "${SIDES[@]}" --items "$ITEMS" --runs "$RUNS" \
    "${PGARGS[@]}" "${CLI[@]}" "${EXTRA[@]}" --out bench-results/jobs.json
if [ "$CEILING" = 1 ] && [ -z "$PG" ]; then
    log "SQLite floor for the same rows (python3 sqlite3, no server)"
    python3 scripts/bench/sqlite_floor.py --items "$(( ITEMS < 100000 ? ITEMS : 100000 ))" --runs 1 --paths
fi
