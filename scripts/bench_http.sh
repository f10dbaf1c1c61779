#!/usr/bin/env bash
# HTTP speed comparison: `labelloop serve` against the Python backend a Label
# Studio user runs today (Flask + gunicorn, 2 sync workers, onnxruntime:
# scripts/bench/ls_backend.py), dynamic batching on vs off, and HTTP batch jobs
# against the CLI. Load from wrk (installed from Debian if missing).
#
#   bash scripts/bench_http.sh                     # all four scenarios, 15 s x 3 runs each
#   bash scripts/bench_http.sh --only single,batching --runs 5
#   bash scripts/bench_http.sh --quick             # smoke test only: noisy numbers
#
# Scenarios (details: scripts/bench/http_compare.py):
#   single    1-item requests, wrk -t2 -c32: labelloop /v1/predict vs LS backend /predict (target >= 3x)
#   batch64   64-item requests, wrk -t2 -c2: same two servers, items/s (target >= 3x)
#   batching  labelloop 1-item, -c32: default batching vs --max-batch 1 (target >= 3x)
#   jobs      10,000 images via POST /v1/projects/{id}/items (chunks of 1,000) until the
#             jobs are done, vs `labelloop label` on the same images (target >= 0.8x)
#   ls-single  1-task Label Studio /predict bodies, -c32: /labelstudio/{project}/predict vs the
#              LS backend, the same bodies (images as local paths under the data root, each
#              server reading the files) (target >= 2.5x)
#   ls-batch64 64-task bodies, -c2: the same (target >= 2.5x)
#   ls-1000    1,000 tasks in one /labelstudio/{project}/predict, median of 3 (target < 2 s)
#   ls-orientation  the orientation model, 8-task bodies of rotated document pages, -c4, vs
#              raw onnxruntime session.run on the pages pre-decoded, batch 8, the same total
#              threads (target >= 0.8x)
# Each scenario also reports its ceiling, measured in the same run: raw onnxruntime on
# pre-decoded tensors (batch 1, 32, 64) and, for jobs, scripts/bench/sqlite_floor.py.
#
# Options (handled by scripts/bench/http_compare.py):
#   --quick              3 s runs, 1 run, 1 s warm-up, 1,000 images for jobs (each overridable)
#   --duration S         seconds per timed wrk run (default 15)
#   --runs N             timed runs per side, median reported (default 3; at least 3 unless --quick)
#   --warmup S           untimed wrk seconds per side before the runs (default 5)
#   --images N           images for the jobs scenario (default 10000)
#   --only LIST          single,batch64,batching,jobs (or a,b,c,d); repeatable
#   --threads N          labelloop ONNX Runtime intra-op threads per session (default: serve's,
#                        the cores over the sessions)
#   --sessions N         labelloop ONNX Runtime sessions per model (default: serve's, one per
#                        core, at most 4)
#   --peer-threads N     intra-op threads per gunicorn worker (default 1: 2 workers share 2 cores)
#   --bin PATH           labelloop binary (default target/release/labelloop)
# Own options:
#   --build              run `cargo build --release` even if the binary exists
#
# Writes bench-results/http.md (also printed) and bench-results/http.json; raw wrk
# output, generated Lua scripts and server logs go to bench-results/http-logs/.
# Servers listen on free 127.0.0.1 ports only and are always stopped at the end.
# Measure on an otherwise idle machine: wrk and the servers share the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=scripts/bench/venv.sh
. scripts/bench/venv.sh

log() { printf '[bench] %s\n' "$*" >&2; }

build=0
own_bin=0
args=()
for arg in "$@"; do
    case "$arg" in
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
        --build) build=1 ;;
        --bin|--bin=*) own_bin=1; args+=("$arg") ;;
        *) args+=("$arg") ;;
    esac
done

if ! command -v wrk >/dev/null 2>&1; then
    log "installing wrk (Debian package)"
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >&2
    else
        sudo apt-get update -qq >&2 && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >&2
    fi
fi

bash scripts/setup.sh

# Build when asked, when the binary is missing, or when it is older than the sources
# (a stale binary may predate `serve` or the API being measured).
if [ "$own_bin" = 0 ]; then
    bin=target/release/labelloop
    if [ "$build" = 1 ] || [ ! -x "$bin" ] || \
        [ -n "$(find src migrations Cargo.toml Cargo.lock -newer "$bin" -print -quit 2>/dev/null)" ]; then
        log "building labelloop (release)"
        cargo build --release --quiet
    fi
elif [ "$build" = 1 ]; then
    cargo build --release --quiet
fi

ensure_bench_venv

# The driver stops its servers itself (also on SIGINT/SIGTERM); this trap is the
# backstop for a driver that died hard: it stops whatever pids it had recorded.
PIDFILE=$ROOT/bench-results/http-logs/servers.pid
cleanup() {
    local pid
    [ -f "$PIDFILE" ] || return 0
    while read -r pid; do
        [ -n "$pid" ] || continue
        if kill -0 "$pid" 2>/dev/null; then
            log "stopping leftover server process group $pid"
            kill -TERM -- "-$pid" 2>/dev/null || true
        fi
    done < "$PIDFILE"
    rm -f "$PIDFILE"
}
trap cleanup EXIT

# In the background so that a TERM sent to this script is handled at once (bash runs
# traps only between foreground commands) and passed on to the driver, which then stops
# its servers. Ctrl-C reaches the driver directly (same process group).
"$VENV/bin/python" scripts/bench/http_compare.py "${args[@]}" &
driver=$!
trap 'kill -TERM "$driver" 2>/dev/null || true; wait "$driver" || true; exit 143' TERM
trap 'wait "$driver" || true; exit 130' INT
wait "$driver"
