# Sourced by scripts/bench_compare.sh and scripts/bench_http.sh (not run on its own).
# Keeps the Python peers' venv in $ROOT/.venv-bench, (re)installed only when
# scripts/bench/requirements.txt or requirements-nodeps.txt changes (pinned versions;
# see those files; the second is installed with --no-deps).
# Needs ROOT set and a log function; sets VENV.

VENV=$ROOT/.venv-bench

ensure_bench_venv() {
    local py=${PYTHON:-python3}
    local reqs=$ROOT/scripts/bench/requirements.txt
    local nodeps=$ROOT/scripts/bench/requirements-nodeps.txt
    local stamp=$VENV/.requirements.sha256
    local want
    want=$(cat "$reqs" "$nodeps" | sha256sum | cut -d' ' -f1)
    if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        log "preparing $VENV from scripts/bench/requirements.txt"
        [ -x "$VENV/bin/python" ] || "$py" -m venv "$VENV"
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$reqs" >&2
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -r "$nodeps" >&2
        echo "$want" > "$stamp"
    fi
}
