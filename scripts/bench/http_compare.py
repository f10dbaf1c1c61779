#!/usr/bin/env python3
"""HTTP speed comparison of `labelloop serve` (run by scripts/bench_http.sh).

Scenarios (fashion-mnist-cnn on Fashion-MNIST test PNGs, sent as base64):
  single    one-item requests, wrk -t2 -c32: labelloop POST /v1/predict (1 item) vs the
            Label Studio-style Python backend (scripts/bench/ls_backend.py: Flask + gunicorn,
            2 sync workers) POST /predict (1 task). req/s = items/s. Target labelloop >= 3x.
  batch64   64-item requests, wrk -t2 -c2: the same two servers; items/s = req/s * 64.
            Target >= 3x.
  batching  labelloop /v1/predict, 1 item, wrk -t2 -c32: default dynamic batching vs the same
            server started with --max-batch 1. Target >= 3x.
  jobs      HTTP batch jobs vs the CLI: a fresh server + SQLite db per run; N images (10,000;
            --quick 1,000) POSTed to /v1/projects/{id}/items in chunks of 1,000, then every
            job polled until done. items/s = N / (first ingest request -> last job done).
            Compared with `labelloop label` on the same N PNGs in the same run (its own
            reported rate, i.e. after model load; its process wall clock is reported too).
            Target >= 0.8.
  ls-single, ls-batch64  Label Studio /predict bodies (1 task at -c32, 64 tasks at -c2), images as
            local paths under the data root: labelloop /labelstudio/{project}/predict vs the same
            peer. Target >= 2.5x.
  ls-1000   1,000 tasks in one /labelstudio/{project}/predict. Target < 2 s.
  ls-orientation  the orientation model, 8-task bodies of rotated pages at -c4, vs raw
            onnxruntime session.run on the same pages pre-decoded (batch 8, same total threads).
            Target >= 0.8x.

How: every server runs on a free 127.0.0.1 port with the machine's cores (labelloop in one
process with serve's default layout, one single-threaded session per core on 2 cores; the
peer 2 workers x 1 intra-op thread; the CLI and raw onnxruntime the same total threads). wrk runs on
the same machine (2 threads), with a Lua script that rotates a few pre-built bodies of
distinct images. Before any timing each body is sent once to each side and the top-1
labels are compared. Each wrk scenario: one untimed --warmup run per side, then --runs
timed runs of --duration seconds, sides interleaved; the median run is reported
(req/s, p50 and p99 each as the median over runs). wrk is a closed-loop generator: the
latencies are those of a server kept saturated by a fixed number of connections.
"""
import argparse
import atexit
import base64
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.dont_write_bytecode = True  # no __pycache__ in scripts/bench/
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402  (shared helpers: inputs, CLI runner, environment)

ROOT = compare.ROOT
MODEL = "fashion-mnist-cnn"
MODEL_DIR = os.path.join(ROOT, "models", MODEL)
VENV = os.path.join(ROOT, ".venv-bench")
SCENARIOS = ("single", "batch64", "batching", "jobs", "ls-single", "ls-batch64", "ls-1000", "ls-orientation")
LS_SCENARIOS = {"ls-single", "ls-batch64", "ls-1000", "ls-orientation"}
ALIASES = {"a": "single", "b": "batch64", "c": "batching", "d": "jobs"}
INGEST_CHUNK = 1000
LISTENING = re.compile(r"labelloop listening on (http://\S+)")

log = compare.log


def rel(path):
    return os.path.relpath(path, ROOT)


# --- servers -----------------------------------------------------------------

class Servers:
    """Every server this run starts, so that all of them are stopped however we exit."""

    def __init__(self, log_dir, pidfile):
        self.log_dir, self.pidfile = log_dir, pidfile
        self.live = {}  # name -> Popen

    def _write_pids(self):
        with open(self.pidfile, "w") as f:
            f.writelines(f"{p.pid}\n" for p in self.live.values())

    def start(self, name, cmd, env=None, cwd=ROOT):
        log_path = os.path.join(self.log_dir, f"{name}.log")
        logf = open(log_path, "w")
        # Own session (process group), so stopping it also stops gunicorn's workers.
        p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=logf, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        logf.close()
        p.log_path = log_path
        self.live[name] = p
        self._write_pids()
        return p

    def stop(self, name):
        p = self.live.pop(name, None)
        if p is None:
            return
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                log(f"{name} did not stop on SIGTERM within 15s; killing it")
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()
        self._write_pids()

    def stop_all(self):
        for name in list(self.live):
            self.stop(name)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path, n=30):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def start_labelloop(a, servers, name, db, extra=()):
    port = free_port()
    cmd = [a.bin, "-q", "serve", "--addr", f"127.0.0.1:{port}", "--no-auth",
           "--db", f"sqlite://{db}", "--threads", str(a.threads), "--sessions", str(a.sessions), *extra]
    p = servers.start(name, cmd)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with open(p.log_path, errors="replace") as f:
            m = LISTENING.search(f.read())
        if m:
            base = m[1].rstrip("/")
            http_json("GET", base + "/readyz")
            return base
        if p.poll() is not None:
            raise SystemExit(f"{name} exited with {p.returncode} before listening: {' '.join(cmd)}\n"
                             f"{tail(p.log_path)}")
        time.sleep(0.05)
    raise SystemExit(f"{name} did not print 'labelloop listening on' within 120s\n{tail(p.log_path)}")


def start_peer(a, servers, name="ls-backend"):
    port = free_port()
    gunicorn = os.path.join(VENV, "bin", "gunicorn")
    cmd = [gunicorn, "-w", "2", "-b", f"127.0.0.1:{port}", "--no-control-socket",
           "--chdir", os.path.join(ROOT, "scripts", "bench"), "ls_backend:app"]
    env = dict(os.environ, LS_BACKEND_MODEL=MODEL_DIR, LS_BACKEND_THREADS=str(a.peer_threads),
               LS_BACKEND_DATA_ROOT=FASHION_ROOT)
    p = servers.start(name, cmd, env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if p.poll() is not None:
            raise SystemExit(f"gunicorn exited with {p.returncode}: {' '.join(cmd)}\n{tail(p.log_path)}")
        try:
            if http_json("GET", base + "/health", timeout=2)[0] == 200:
                # Both workers import the app (and load the model) on their own; give the
                # second one a moment, the warm-up run covers the rest.
                time.sleep(1.0)
                return base
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"gunicorn did not answer /health within 60s\n{tail(p.log_path)}")


def http_json(method, url, body=None, timeout=120):
    """(status, parsed JSON or text). body: bytes or a JSON-able object."""
    data = None
    headers = {}
    if body is not None:
        data = body if isinstance(body, (bytes, bytearray)) else json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def scrape_metrics(base):
    """The few labelloop counters the report uses, from GET /metrics."""
    status, text = http_json("GET", base + "/metrics")
    out = {"batches": 0.0, "batched_items": 0.0, "http": {}}
    if status != 200 or not isinstance(text, str):
        return out
    for line in text.splitlines():
        if line.startswith(f'labelloop_batches_total{{model="{MODEL}"}}'):
            out["batches"] = float(line.split()[-1])
        elif line.startswith(f'labelloop_batched_items_total{{model="{MODEL}"}}'):
            out["batched_items"] = float(line.split()[-1])
        elif line.startswith("labelloop_http_requests_total{"):
            m = re.match(r'labelloop_http_requests_total\{route="([^"]*)",status="(\d+)"\} (\S+)', line)
            if m:
                out["http"][f"{m[1]} {m[2]}"] = float(m[3])
    return out


def metrics_delta(before, after):
    batches = after["batches"] - before["batches"]
    items = after["batched_items"] - before["batched_items"]
    http = {k: v - before["http"].get(k, 0.0) for k, v in after["http"].items()}
    http = {k: int(v) for k, v in http.items() if v > 0}
    return {"model_batches": int(batches), "mean_batch_size": items / batches if batches else None,
            "http_requests": http,
            "non_2xx": sum(v for k, v in http.items() if not k.split()[-1].startswith("2"))}


# --- inputs and wrk ----------------------------------------------------------

def fashion_rows(n):
    rows = compare.read_jsonl(os.path.join(ROOT, "data", "fashion-mnist", "test.jsonl"))[:n]
    if len(rows) < n:
        raise SystemExit(f"data/fashion-mnist/test.jsonl has only {len(rows)} rows, need {n}")
    return rows


def b64_png(row):
    with open(os.path.join(ROOT, "data", "fashion-mnist", row["image"]), "rb") as f:
        return base64.b64encode(f.read()).decode("ascii")


def labelloop_body(rows):
    return json.dumps({"model": MODEL, "items": [{"id": r["id"], "image": b64_png(r)} for r in rows]})


def peer_body(rows):
    return json.dumps({"tasks": [{"id": i + 1, "data": {"image": b64_png(r)}} for i, r in enumerate(rows)]})


LUA = r"""-- generated by scripts/bench/http_compare.py
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local bodies = {
%(bodies)s
}
local requests_ = {}
local next_ = 0
local threads = {}
setup = function(thread)
  thread:set("offset", #threads)
  table.insert(threads, thread)
end
init = function(args)
  for i, b in ipairs(bodies) do requests_[i] = wrk.format(nil, nil, nil, b) end
  next_ = offset or 0
end
request = function()
  next_ = next_ + 1
  return requests_[(next_ %% #requests_) + 1]
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%%d,"duration_us":%%d,"bytes":%%d,"connect_errors":%%d,"read_errors":%%d,' ..
    '"write_errors":%%d,"status_errors":%%d,"timeouts":%%d,"p50_us":%%d,"p90_us":%%d,"p99_us":%%d,' ..
    '"max_us":%%d,"mean_us":%%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
"""


def write_lua(path, bodies):
    parts = []
    for b in bodies:
        if "]==]" in b:
            raise SystemExit("a request body contains ']==]'; cannot embed it in Lua")
        parts.append(f"[==[{b}]==],")
    with open(path, "w") as f:
        f.write(LUA % {"bodies": "\n".join(parts)})
    return path


def run_wrk(a, url, lua, conns, duration, tag):
    cmd = ["wrk", f"-t{a.wrk_threads}", f"-c{conns}", f"-d{duration}s", "--latency",
           "--timeout", "10s", "-s", lua, url]
    p = subprocess.run(cmd, capture_output=True, text=True)
    with open(os.path.join(a.log_dir, f"wrk-{tag}.txt"), "w") as f:
        f.write(" ".join(cmd) + "\n\n" + p.stdout + p.stderr)
    line = next((x for x in p.stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if p.returncode != 0 or line is None:
        raise SystemExit(f"wrk failed (exit {p.returncode}): {' '.join(cmd)}\n{p.stdout}\n{p.stderr}")
    r = json.loads(line[len("WRKJSON "):])
    secs = r["duration_us"] / 1e6
    r["seconds"] = secs
    r["req_per_s"] = r["requests"] / secs
    # Requests answered with a 4xx/5xx still count in wrk's req/s; the rate reported here does not.
    r["ok_req_per_s"] = (r["requests"] - r["status_errors"]) / secs
    r["socket_errors"] = r["connect_errors"] + r["read_errors"] + r["write_errors"] + r["timeouts"]
    return r


# --- one wrk scenario, two sides ---------------------------------------------

def measure_sides(a, scen, sides, conns, items_per_req, before_run=None):
    """sides: [{"side", "url", "lua", "metrics_base" or None}]. Returns per-side summaries.
    before_run(r), if given, runs before each round of timed runs: a baseline measured
    outside wrk then alternates with the wrk runs and sees the same drift of a shared machine."""
    for s in sides:
        log(f"{scen}: warm-up {s['side']} ({a.warmup}s, {conns} connections)")
        run_wrk(a, s["url"], s["lua"], conns, a.warmup, f"{scen}-{s['key']}-warmup")
    runs = {s["key"]: [] for s in sides}
    for r in range(a.runs):
        if before_run is not None:
            before_run(r)
        order = sides if r % 2 == 0 else sides[::-1]  # alternate who goes first
        for s in order:
            before = scrape_metrics(s["metrics_base"]) if s.get("metrics_base") else None
            res = run_wrk(a, s["url"], s["lua"], conns, a.duration, f"{scen}-{s['key']}-run{r + 1}")
            if before is not None:
                res["server"] = metrics_delta(before, scrape_metrics(s["metrics_base"]))
            runs[s["key"]].append(res)
            msg = (f"{scen} run {r + 1}/{a.runs}: {s['side']}: {res['ok_req_per_s']:,.1f} req/s "
                   f"({res['ok_req_per_s'] * items_per_req:,.0f} items/s), p50 {res['p50_us'] / 1000:.1f} ms, "
                   f"p99 {res['p99_us'] / 1000:.1f} ms")
            if res["status_errors"] or res["socket_errors"]:
                msg += f"; {res['status_errors']} non-2xx, {res['socket_errors']} socket errors/timeouts"
            log(msg)
    out = []
    for s in sides:
        rs = runs[s["key"]]
        rates = [x["ok_req_per_s"] for x in rs]
        summary = {
            "side": s["side"], "key": s["key"], "url": s["url"], "connections": conns,
            "wrk_threads": a.wrk_threads, "items_per_request": items_per_req, "runs": len(rs),
            "req_per_s": statistics.median(rates),
            "items_per_s": statistics.median(rates) * items_per_req,
            "min_items_per_s": min(rates) * items_per_req, "max_items_per_s": max(rates) * items_per_req,
            "p50_ms": statistics.median(x["p50_us"] for x in rs) / 1000,
            "p99_ms": statistics.median(x["p99_us"] for x in rs) / 1000,
            "max_ms": max(x["max_us"] for x in rs) / 1000,
            "requests": sum(x["requests"] for x in rs),
            "non_2xx": sum(x["status_errors"] for x in rs),
            "socket_errors": sum(x["socket_errors"] for x in rs),
            "run_details": rs,
        }
        server = [x["server"] for x in rs if "server" in x]
        if server:
            sizes = [x["mean_batch_size"] for x in server if x["mean_batch_size"]]
            summary["mean_model_batch"] = statistics.median(sizes) if sizes else None
            summary["server_non_2xx"] = sum(x["non_2xx"] for x in server)
        out.append(summary)
    return out


def ratio(name, num, den, target):
    value = num["items_per_s"] / den["items_per_s"] if den["items_per_s"] else float("inf")
    return {"ratio": name, "value": value, "target": target, "met": value >= target}


def value_ratio(name, num, den):
    """A ratio reported for context (a ceiling), with no target of its own."""
    return {"ratio": name, "value": num / den if den else float("inf"), "target": None, "met": None}


def check_agreement(checks):
    """checks: [(labelloop_base, labelloop_body, peer_base or None, peer_body, rows)].
    Sends each body once; returns agreement stats and raises on a non-200."""
    same = total = correct_ll = correct_py = 0
    for ll_base, ll_body, py_base, py_body, rows in checks:
        st, ll = http_json("POST", ll_base + "/v1/predict", ll_body.encode())
        if st != 200:
            raise SystemExit(f"labelloop /v1/predict answered {st}: {str(ll)[:500]}")
        preds = ll["predictions"]
        errs = [p for p in preds if "error" in p]
        if len(preds) != len(rows) or errs:
            raise SystemExit(f"labelloop /v1/predict: {len(preds)} predictions for {len(rows)} items, "
                             f"errors: {errs[:3]}")
        ll_labels = [p["label"] for p in preds]
        correct_ll += sum(x == r["label"] for x, r in zip(ll_labels, rows))
        if py_base:
            st, py = http_json("POST", py_base + "/predict", py_body.encode())
            if st != 200:
                raise SystemExit(f"ls_backend /predict answered {st}: {str(py)[:500]}")
            py_labels = [x["result"][0]["value"]["choices"][0] for x in py["results"]]
            same += sum(x == y for x, y in zip(ll_labels, py_labels))
            correct_py += sum(x == r["label"] for x, r in zip(py_labels, rows))
        total += len(rows)
    return {"items": total, "labelloop_vs_peer_top1": same / total if checks[0][2] else None,
            "labelloop_accuracy": correct_ll / total,
            "peer_accuracy": correct_py / total if checks[0][2] else None}


def build_bodies(a, rows_per_body, n_bodies, tag):
    rows = fashion_rows(rows_per_body * n_bodies)
    groups = [rows[i * rows_per_body:(i + 1) * rows_per_body] for i in range(n_bodies)]
    ll = [labelloop_body(g) for g in groups]
    py = [peer_body(g) for g in groups]
    ll_lua = write_lua(os.path.join(a.log_dir, f"{tag}-labelloop.lua"), ll)
    py_lua = write_lua(os.path.join(a.log_dir, f"{tag}-peer.lua"), py)
    return groups, ll, py, ll_lua, py_lua


def session_layout(sessions, threads):
    """`labelloop serve`'s layout (ServeConfig::session_layout): fill the cores with
    single-threaded sessions, at most 4, unless told otherwise."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if sessions is None and threads is None:
        sessions = min(cores, 4)
    if sessions is None:
        sessions = max(1, cores // max(1, threads))
    if threads is None:
        threads = max(1, cores // max(1, sessions))
    return max(1, sessions), max(1, threads)


def whole(a):
    """`a` with every labelloop thread as one count: the CLI's --threads and the raw
    onnxruntime peers' threads, so each side has the server's cores."""
    return argparse.Namespace(**{**vars(a), "threads": a.total_threads})


def raw_ort_rate(a, batch):
    """Inference only: onnxruntime session.run on pre-decoded Fashion-MNIST tensors
    (scripts/bench/peers.py fashion-raw), labelloop's thread count, 10,000 images,
    median of 5 passes.
    No HTTP, JSON, base64 or PNG decoding: what the model alone allows on this machine."""
    inp, n = compare.fashion_input(a, 10000)
    res = compare.run_peer(whole(a), "fashion-raw", MODEL_DIR, inp, batch, repeat=5)
    return n / statistics.median(res["pass_seconds"])


def scenario_peer(a, scen, ll_base, py_base, items, conns, target):
    n_bodies = 16 if items == 1 else 4
    groups, ll, py, ll_lua, py_lua = build_bodies(a, items, n_bodies, scen)
    agree = check_agreement([(ll_base, lb, py_base, pb, g) for lb, pb, g in zip(ll, py, groups)])
    log(f"{scen}: {n_bodies} bodies of {items} item(s); top-1 agreement labelloop vs peer "
        f"{agree['labelloop_vs_peer_top1']:.2%} on {agree['items']} images")
    sides = [
        {"side": "LS-style backend (Flask + gunicorn, 2 workers)", "key": "peer",
         "url": py_base + "/predict", "lua": py_lua},
        {"side": "labelloop serve", "key": "labelloop", "url": ll_base + "/v1/predict",
         "lua": ll_lua, "metrics_base": ll_base},
    ]
    peer, lab = measure_sides(a, scen, sides, conns, items)
    title = (f"{items}-item requests, {conns} connections" if items > 1
             else f"one-item requests, {conns} connections")
    ratios = [ratio("labelloop / LS-style backend", lab, peer, target)]
    notes = ["The peer's gunicorn sync workers close the connection after every response "
             "(no keep-alive), so wrk reconnects for each of its requests; that is how that "
             "backend is served."]
    if items > 1:
        raw = raw_ort_rate(a, items)
        cores = os.cpu_count() or 1
        budget = cores * 1e6 / (target * peer["items_per_s"])
        infer = cores * 1e6 / raw
        ours = cores * 1e6 / lab["items_per_s"]
        ratios.append(value_ratio(f"ceiling: raw ORT session.run alone at batch {items} / LS-style backend",
                                  raw, peer["items_per_s"]))
        notes.append(f"Budget: {target:.0f}x the peer is {target * peer['items_per_s']:,.0f} items/s, "
                     f"{budget:.1f} us of CPU per item on {cores} cores (wrk's share included). "
                     f"onnxruntime alone, on pre-decoded tensors at batch {items} with {a.total_threads} "
                     f"threads, runs {raw:,.0f} items/s here: {infer:.1f} us per item, leaving "
                     f"{budget - infer:.1f} us for the HTTP request, JSON, base64, PNG decoding and the "
                     f"answer. labelloop now spends {ours:.1f} us per item in all, "
                     f"{ours - infer:.1f} us of it outside inference.")
    return {"scenario": scen, "title": f"{title}: labelloop vs the Label Studio-style Python backend",
            "sides": [lab, peer], "ratios": ratios, "agreement": agree, "bodies": n_bodies,
            "notes": notes}


FASHION_LABELS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                  "Sneaker", "Bag", "Ankle boot"]
FASHION_ROOT = os.path.join(ROOT, "data", "fashion-mnist")
ORIENT_MODEL = "orientation"
ORIENT_LABELS = ["0", "90", "180", "270"]


def ls_config(labels):
    return ('<View><Image name="image" value="$image"/><Choices name="label" toName="image">'
            + "".join(f'<Choice value="{l}"/>' for l in labels) + "</Choices></View>")


LS_CONFIG = ls_config(FASHION_LABELS)


def ls_body(paths, first_id=1, config=LS_CONFIG):
    """Label Studio's task shape, each image a local path under the server's data root (both
    servers read the file themselves, as a backend does with Label Studio's local storage)."""
    return json.dumps({"tasks": [{"id": first_id + i, "data": {"image": p}} for i, p in enumerate(paths)],
                       "label_config": config})


def ls_project(ll_base, model=MODEL, config=LS_CONFIG):
    """A labelloop project connected as Label Studio's backend, through /setup."""
    st, body = http_json("POST", ll_base + "/v1/projects",
                         json.dumps({"name": "ls-bench", "model": model}).encode())
    if st != 201:
        raise SystemExit(f"labelloop POST /v1/projects answered {st}: {str(body)[:300]}")
    pid = body["id"]
    st, body = http_json("POST", f"{ll_base}/labelstudio/{pid}/setup",
                         json.dumps({"project": "1", "schema": config, "hostname": "",
                                     "access_token": "", "extra_params": {}}).encode())
    if st != 200:
        raise SystemExit(f"labelloop /labelstudio/{pid}/setup answered {st}: {str(body)[:300]}")
    return pid


def ls_labels(results):
    return [(x["result"][0]["value"]["choices"][0] if x.get("result") else None) for x in results]


def scenario_ls(a, scen, ll_base, py_base, pid, items, conns, target):
    """The same Label Studio /predict bodies to both backends."""
    n_bodies = 16 if items == 1 else 4
    rows = fashion_rows(items * n_bodies)
    groups = [rows[i * items:(i + 1) * items] for i in range(n_bodies)]
    bodies = [ls_body([r["image"] for r in g], 1 + i * items) for i, g in enumerate(groups)]
    lua = write_lua(os.path.join(a.log_dir, f"{scen}.lua"), bodies)
    same = total = right = peer_right = 0
    for body, g in zip(bodies, groups):
        st, ll = http_json("POST", f"{ll_base}/labelstudio/{pid}/predict", body.encode())
        if st != 200 or len(ll.get("results", [])) != len(g):
            raise SystemExit(f"labelloop /labelstudio/{pid}/predict answered {st}: {str(ll)[:300]}")
        st, py = http_json("POST", py_base + "/predict", body.encode())
        if st != 200:
            raise SystemExit(f"ls_backend /predict answered {st}: {str(py)[:300]}")
        a_, b_ = ls_labels(ll["results"]), ls_labels(py["results"])
        same += sum(x == y for x, y in zip(a_, b_))
        right += sum(x == r["label"] for x, r in zip(a_, g))
        peer_right += sum(x == r["label"] for x, r in zip(b_, g))
        total += len(g)
    agree = {"items": total, "labelloop_vs_peer_top1": same / total, "labelloop_accuracy": right / total,
             "peer_accuracy": peer_right / total}
    log(f"{scen}: {n_bodies} bodies of {items} task(s); top-1 agreement {same / total:.2%}")
    sides = [
        {"side": "LS-style backend (Flask + gunicorn, 2 workers)", "key": "peer",
         "url": py_base + "/predict", "lua": lua},
        {"side": "labelloop /labelstudio/{project}/predict", "key": "labelloop",
         "url": f"{ll_base}/labelstudio/{pid}/predict", "lua": lua, "metrics_base": ll_base},
    ]
    peer, lab = measure_sides(a, scen, sides, conns, items)
    title = f"Label Studio /predict, {items}-task requests, {conns} connections"
    return {"scenario": scen, "title": title, "sides": [lab, peer],
            "ratios": [ratio("labelloop / LS-style backend", lab, peer, target)], "agreement": agree,
            "bodies": n_bodies,
            "notes": ["Both servers get the same Label Studio task bodies (images as local paths under the "
                      "data root, each server reading the file) and answer "
                      "Label Studio's result shape; labelloop's answers carry calibrated scores and its "
                      "model version, and it records unseen tasks as items in the background."]}


def scenario_ls_1000(a, ll_base, pid, runs=3):
    """What "Retrieve predictions" sends: 1,000 tasks in one request; median of `runs`."""
    rows = fashion_rows(1000)
    times = []
    for r in range(runs):
        body = ls_body([x["image"] for x in rows], 100000 + r * 1000).encode()
        t = time.perf_counter()
        st, out = http_json("POST", f"{ll_base}/labelstudio/{pid}/predict", body)
        times.append(time.perf_counter() - t)
        if st != 200 or len(out.get("results", [])) != 1000:
            raise SystemExit(f"1,000-task request answered {st}: {str(out)[:300]}")
    med = statistics.median(times)
    log(f"ls-1000: 1,000 tasks in one /predict: median {med:.2f} s of {runs}")
    return {"scenario": "ls-1000", "title": "1,000 tasks in one Label Studio /predict request",
            "seconds": times, "median_s": med,
            "ratios": [{"ratio": "2 s budget / median seconds", "value": 2.0 / med, "target": 1.0,
                        "met": med < 2.0}],
            "notes": [f"seconds per request: {', '.join(f'{t:.2f}' for t in times)} (median {med:.2f})"]}


def scenario_ls_orientation(a, servers, tmp, conns=4, items=8, target=0.8):
    """The compute-heavy document-orientation model in Label Studio's shape: 8-task requests of
    local page images at 4 connections, against onnxruntime session.run alone on the same pages
    pre-decoded, at the same batch size and total threads."""
    inp, truth = compare.orientation_input(a, 512)
    names = sorted(truth)
    ll_base = start_labelloop(a, servers, "labelloop-orientation", os.path.join(tmp, "orient.db"),
                              ["--data-root", inp])
    config = ls_config(ORIENT_LABELS)
    pid = ls_project(ll_base, ORIENT_MODEL, config)
    groups = [names[i:i + items] for i in range(0, len(names), items)]
    bodies = [ls_body(g, 1 + i * items, config) for i, g in enumerate(groups)]
    right = total = 0
    for body, g in zip(bodies, groups):
        st, ll = http_json("POST", f"{ll_base}/labelstudio/{pid}/predict", body.encode())
        if st != 200 or len(ll.get("results", [])) != len(g):
            raise SystemExit(f"labelloop /labelstudio/{pid}/predict answered {st}: {str(ll)[:300]}")
        right += sum(x == truth[n] for x, n in zip(ls_labels(ll["results"]), g))
        total += len(g)
    log(f"ls-orientation: {len(bodies)} bodies of {items} pages; accuracy {right / total:.2%}")
    lua = write_lua(os.path.join(a.log_dir, "ls-orientation.lua"), bodies)
    sides = [{"side": "labelloop /labelstudio/{project}/predict (orientation)", "key": "labelloop",
              "url": f"{ll_base}/labelstudio/{pid}/predict", "lua": lua, "metrics_base": ll_base}]
    threads = a.total_threads
    raws = []

    def raw_run(r):
        # One raw process before each round of wrk runs (the server idles meanwhile), so
        # both sides see the same moments of a shared machine.
        res = compare.run_peer(whole(a), "orient-raw",
                               os.path.join(ROOT, "models", ORIENT_MODEL), inp, items, repeat=3)
        raws.append(len(names) / statistics.median(res["pass_seconds"]))
        log(f"ls-orientation raw ORT before run {r + 1}: {raws[-1]:,.1f} items/s")

    (lab,) = measure_sides(a, "ls-orientation", sides, conns, items, before_run=raw_run)
    servers.stop("labelloop-orientation")
    raw = {"side": f"raw onnxruntime session.run, batch {items}, {threads} threads, pre-decoded tensors",
           "key": "raw", "items_per_s": statistics.median(raws), "runs": raws}
    return {"scenario": "ls-orientation",
            "title": f"orientation model, Label Studio /predict, {items}-task requests, {conns} connections",
            "sides": [lab], "raw": raw, "bodies": len(bodies),
            "agreement": {"items": total, "labelloop_accuracy": right / total},
            "ratios": [ratio("labelloop / raw ORT session.run", lab, raw, target)],
            "notes": [f"raw ORT (scripts/bench/peers.py orient-raw), median of {len(raws)} processes, one "
                      f"before each round of wrk runs, each the median of 3 passes over the {len(names)} "
                      f"pages: {', '.join(f'{x:,.1f}' for x in raws)} items/s",
                      f"labelloop --threads {a.threads} --sessions {a.sessions}; accuracy on the rotated "
                      f"pages {right / total:.2%}"]}


def scenario_batching(a, ll_base, mb1_base):
    groups, ll, _, ll_lua, _ = build_bodies(a, 1, 16, "batching")
    check_agreement([(mb1_base, b, None, None, g) for b, g in zip(ll, groups)])
    sides = [
        {"side": "labelloop serve --max-batch 1", "key": "maxbatch1", "url": mb1_base + "/v1/predict",
         "lua": ll_lua, "metrics_base": mb1_base},
        {"side": "labelloop serve (default batching)", "key": "default", "url": ll_base + "/v1/predict",
         "lua": ll_lua, "metrics_base": ll_base},
    ]
    mb1, dflt = measure_sides(a, "batching", sides, 32, 1)
    raw1, raw32 = raw_ort_rate(a, 1), raw_ort_rate(a, 32)
    cores = os.cpu_count() or 1
    per_req = cores * 1e6 / mb1["items_per_s"]
    c1, c32 = cores * 1e6 / raw1, cores * 1e6 / raw32
    return {"scenario": "batching",
            "title": "dynamic batching: one-item requests, 32 connections, default vs --max-batch 1",
            "sides": [dflt, mb1],
            "ratios": [ratio("default batching / --max-batch 1", dflt, mb1, 3.0),
                       value_ratio("raw ORT session.run, batch 32 / batch 1 (inference only)", raw32, raw1),
                       value_ratio("ceiling: --max-batch 1's per-request CPU with inference at batch-32 cost",
                                   per_req, per_req - c1 + c32)],
            "agreement": None, "bodies": 16,
            "notes": ["mean model batch = labelloop_batched_items_total / labelloop_batches_total "
                      "over each timed run (GET /metrics before and after), median over runs.",
                      f"Ceiling (Amdahl): onnxruntime alone on pre-decoded tensors ({a.total_threads} threads) "
                      f"runs {raw1:,.0f} items/s at batch 1 and {raw32:,.0f} items/s at batch 32, i.e. "
                      f"{c1:.1f} vs {c32:.1f} us of CPU per item on {cores} cores. With --max-batch 1 "
                      f"a request costs {per_req:.1f} us of CPU in all (wrk included); batching can only "
                      f"remove the difference, {c1 - c32:.1f} us, since TCP, HTTP, JSON and PNG decoding "
                      f"are paid per request either way: at most {per_req / (per_req - c1 + c32):.2f}x."]}


# --- jobs vs CLI -------------------------------------------------------------

def ingest_run(a, servers, tmp, chunks, n, r):
    db = os.path.join(tmp, f"jobs-run{r + 1}.db")
    name = f"labelloop-jobs-run{r + 1}"
    base = start_labelloop(a, servers, name, db)
    try:
        st, proj = http_json("POST", base + "/v1/projects", {"name": f"bench-{r + 1}", "model": MODEL})
        if st != 201:
            raise SystemExit(f"POST /v1/projects answered {st}: {proj}")
        pid = proj["id"]
        jobs, ingest_secs, inserted = [], [], 0
        t0 = time.perf_counter()
        for body in chunks:
            t = time.perf_counter()
            st, res = http_json("POST", f"{base}/v1/projects/{pid}/items", body)
            ingest_secs.append(time.perf_counter() - t)
            if st != 202:
                raise SystemExit(f"POST /v1/projects/{pid}/items answered {st}: {str(res)[:500]}")
            jobs.append(res["job"]["id"])
            inserted += res["inserted"]
        t_ingested = time.perf_counter()
        final, polls = {}, 0
        deadline = time.monotonic() + max(600, n / 10)
        for j in jobs:
            while True:
                st, job = http_json("GET", f"{base}/v1/jobs/{j}")
                polls += 1
                if st != 200:
                    raise SystemExit(f"GET /v1/jobs/{j} answered {st}: {job}")
                if job["state"] != "running":
                    final[j] = job
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"job {j} still running after the deadline: {job}")
                time.sleep(a.poll)
        t1 = time.perf_counter()
    finally:
        servers.stop(name)
    done = sum(j["done"] for j in final.values())
    errors = sum(j["errors"] for j in final.values())
    states = sorted({j["state"] for j in final.values()})
    if inserted != n or done != n or errors or states != ["done"]:
        log(f"WARNING: jobs run {r + 1}: inserted {inserted}, done {done}, errors {errors}, "
            f"job states {states} for {n} items")
    return {"seconds": t1 - t0, "ingest_seconds": t_ingested - t0,
            "ingest_request_seconds": ingest_secs, "after_ingest_seconds": t1 - t_ingested,
            "inserted": inserted, "done": done, "errors": errors, "job_states": states,
            "jobs": len(jobs), "polls": polls,
            "server_rate_per_sec_last_job": final[jobs[-1]].get("rate_per_sec")}


def scenario_jobs(a, servers, tmp):
    n = a.images
    rows = fashion_rows(n)
    log(f"jobs: encoding {n} PNGs as base64 in chunks of {INGEST_CHUNK}")
    chunks = []
    for i in range(0, n, INGEST_CHUNK):
        chunk = [{"id": r["id"], "image": b64_png(r)} for r in rows[i:i + INGEST_CHUNK]]
        chunks.append(json.dumps(chunk).encode())
    inp, n_cli = compare.fashion_input(a, n)
    if n_cli != n:
        raise SystemExit(f"CLI input {inp} holds {n_cli} images, not {n}")
    # Untimed warm-up of the CLI (page cache, ORT library load).
    compare.run_labelloop(whole(a), MODEL_DIR, [inp], 64)
    http_runs, cli_runs = [], []
    for r in range(a.runs):
        http_runs.append(ingest_run(a, servers, tmp, chunks, n, r))
        cli_runs.append(compare.run_labelloop(whole(a), MODEL_DIR, [inp], 64))
        h, c = http_runs[-1], cli_runs[-1]
        log(f"jobs run {r + 1}/{a.runs}: HTTP {n / h['seconds']:,.0f} items/s "
            f"({h['seconds']:.2f}s, ingest {h['ingest_seconds']:.2f}s); CLI {c['self_rate']:,} items/s "
            f"self-reported, {n / c['wall']:,.0f} items/s wall ({c['wall']:.2f}s)")
    hs = [x["seconds"] for x in http_runs]
    http_side = {
        "side": "labelloop serve: ingest + batch job", "key": "http", "items": n, "runs": len(hs),
        "timed": f"first POST .../items -> all {len(chunks)} job(s) done",
        "seconds": hs, "median_seconds": statistics.median(hs),
        "items_per_s": n / statistics.median(hs),
        "min_items_per_s": n / max(hs), "max_items_per_s": n / min(hs),
        "ingest_seconds": statistics.median(x["ingest_seconds"] for x in http_runs),
        "errors": sum(x["errors"] for x in http_runs),
        "not_done": sum(n - x["done"] for x in http_runs),
        "run_details": http_runs,
    }
    self_rates = [float(x["self_rate"]) for x in cli_runs]
    cli_side = {
        "side": "labelloop label (CLI), self-reported rate", "key": "cli", "items": n,
        "runs": len(cli_runs), "timed": "the CLI's own summary (after model load and listing)",
        "items_per_s": statistics.median(self_rates),
        "min_items_per_s": min(self_rates), "max_items_per_s": max(self_rates),
        "median_seconds": statistics.median(x["self_seconds"] for x in cli_runs),
        "failed": max(x["failed"] for x in cli_runs), "run_details": cli_runs,
    }
    walls = [x["wall"] for x in cli_runs]
    cli_wall = {
        "side": "labelloop label (CLI), process wall clock", "key": "cli_wall", "items": n,
        "runs": len(walls), "timed": "process start to exit",
        "items_per_s": n / statistics.median(walls),
        "min_items_per_s": n / max(walls), "max_items_per_s": n / min(walls),
        "median_seconds": statistics.median(walls),
    }
    floor = sqlite_floor(a)
    cores = os.cpu_count() or 1
    # Every item costs the CLI's CPU (decode + inference, both cores busy) plus
    # the SQLite statements, which no server can skip; HTTP and JSON cost extra.
    cli_cpu_us = cores * 1e6 / cli_side["items_per_s"]
    ceiling = cores * 1e6 / (cli_cpu_us + floor["us_per_item"]["total"])
    return {"scenario": "jobs", "title": f"HTTP batch jobs vs the CLI: {n:,} Fashion-MNIST test images",
            "sides": [http_side, cli_side, cli_wall],
            "ratios": [ratio("HTTP jobs / CLI (self-reported)", http_side, cli_side, 0.8),
                       {**ratio("HTTP jobs / CLI (wall clock)", http_side, cli_wall, 0.8),
                        "target": None, "met": None},
                       value_ratio("ceiling: CLI work + bare SQLite statements per item / CLI",
                                   ceiling, cli_side["items_per_s"])],
            "sqlite_floor": floor,
            "agreement": None,
            "notes": [f"A fresh server and SQLite database (in a temporary folder) per run, started "
                      f"before the clock; {len(chunks)} ingest request(s) of up to {INGEST_CHUNK:,} items sent "
                      f"one after another, then each job polled every {a.poll * 1000:.0f} ms. Default "
                      f"server settings (--threads {a.threads} --sessions {a.sessions}, its default job workers).",
                      f"CLI: `labelloop -q label --model models/{MODEL} <{n} PNGs> --batch-size 64 "
                      f"--threads {a.total_threads} --out /dev/null`, runs interleaved with the HTTP runs "
                      f"after one untimed warm-up run.",
                      f"Ceiling: the store statements every item needs (ingest insert, claim, recording "
                      f"the prediction and its audit row), run bare through Python's sqlite3 on labelloop's "
                      f"schema and settings (scripts/bench/sqlite_floor.py), cost "
                      f"{floor['us_per_item']['ingest']:.1f} + {floor['us_per_item']['claim']:.1f} + "
                      f"{floor['us_per_item']['record']:.1f} = {floor['us_per_item']['total']:.1f} us per "
                      f"item on one core. With the CLI's {cli_cpu_us:.1f} us of CPU per item on top, "
                      f"{cores} cores cannot exceed {ceiling:,.0f} items/s "
                      f"({ceiling / cli_side['items_per_s']:.2f}x the CLI) before any HTTP, JSON or "
                      f"driver cost."]}


def sqlite_floor(a):
    cmd = [sys.executable, os.path.join(ROOT, "scripts", "bench", "sqlite_floor.py"),
           "--items", str(a.images), "--runs", "3"]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"sqlite_floor.py failed (exit {p.returncode}):\n{p.stderr}")
    return json.loads(p.stdout.strip().splitlines()[-1])


# --- report ------------------------------------------------------------------

def fmt(x, digits=0):
    if x is None:
        return "—"
    return f"{x:,.{digits}f}" if x >= 100 or digits else f"{x:,.1f}"


def markdown(env, results, a):
    out = ["# labelloop HTTP speed comparison", ""]
    out.append(f"{env['date']} · {env['labelloop']} ({env['git_commit']}"
               f"{', dirty tree' if env['git_dirty'] else ''}) · {env['host_cpu']}, {env['cores']} cores · "
               f"ONNX Runtime {env['onnxruntime_python']} · labelloop --threads {a.threads} --sessions {a.sessions}, peer 2 gunicorn "
               f"workers x {a.peer_threads} intra-op thread · {env['wrk']}, -t{a.wrk_threads} on the same machine · "
               f"{a.duration}s per run, median of {a.runs} run(s) · load average at start "
               f"{env['loadavg_start'][0]:.2f}")
    out.append("")
    if a.quick or a.runs < 3:
        out += ["> **Smoke test** (`--quick` and/or fewer than 3 runs): short runs, fewer images; the numbers "
                "are noisy and are not a measurement.", ""]
    if env["loadavg_start"][0] > 0.5:
        out += [f"> Warning: the machine was not idle at the start (1-minute load average "
                f"{env['loadavg_start'][0]:.2f}); other work skews these numbers.", ""]
    summary = ["| scenario | ratio | value | target | met |", "| --- | --- | ---: | ---: | :---: |"]
    for r in results:
        for q in r["ratios"]:
            tgt = "—" if q["target"] is None else f"≥ {q['target']:.1f}×"
            met = "—" if q["met"] is None else ("yes" if q["met"] else "**no**")
            summary.append(f"| {r['scenario']} | {q['ratio']} | {q['value']:.2f}× | {tgt} | {met} |")
    out += summary + [""]
    for r in results:
        out += [f"## {r['scenario']}: {r['title']}", ""]
        if r["scenario"] == "ls-1000":
            extra = []
        elif r["scenario"] == "jobs":
            out.append("| side | timed | median items/s | min–max items/s | median s |")
            out.append("| --- | --- | ---: | ---: | ---: |")
            for s in r["sides"]:
                out.append(f"| {s['side']} | {s['timed']} | {fmt(s['items_per_s'])} | "
                           f"{fmt(s['min_items_per_s'])}–{fmt(s['max_items_per_s'])} | "
                           f"{s['median_seconds']:.2f} |")
            h = r["sides"][0]
            extra = [f"HTTP side: ingest requests took {h['ingest_seconds']:.2f}s (median) of "
                     f"{h['median_seconds']:.2f}s",
                     f"HTTP side: {h['errors']} item errors, {h['not_done']} items not done over all runs"]
            if r["sides"][1].get("failed"):
                extra.append(f"**CLI reported {r['sides'][1]['failed']} failed items**")
        else:
            out.append("| side | median items/s | req/s | min–max items/s | p50 ms | p99 ms | max ms | "
                       "non-2xx | socket errors | mean model batch |")
            out.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
            for s in r["sides"]:
                mb = s.get("mean_model_batch")
                out.append(f"| {s['side']} | {fmt(s['items_per_s'])} | {fmt(s['req_per_s'])} | "
                           f"{fmt(s['min_items_per_s'])}–{fmt(s['max_items_per_s'])} | {s['p50_ms']:.1f} | "
                           f"{s['p99_ms']:.1f} | {s['max_ms']:.1f} | {s['non_2xx']} | {s['socket_errors']} | "
                           f"{'—' if mb is None else f'{mb:.1f}'} |")
            s0 = r["sides"][0]
            extra = [f"wrk -t{s0['wrk_threads']} -c{s0['connections']}, {s0['items_per_request']} item(s) per "
                     f"request, {r['bodies']} distinct bodies rotated"]
            ag = r.get("agreement")
            if ag and ag.get("labelloop_vs_peer_top1") is not None:
                extra.append(f"top-1 agreement labelloop vs peer: {ag['labelloop_vs_peer_top1']:.2%} of "
                             f"{ag['items']} images (accuracy labelloop {ag['labelloop_accuracy']:.2%}, "
                             f"peer {ag['peer_accuracy']:.2%})")
        out.append("")
        out.append("| ratio | value | target | met |")
        out.append("| --- | ---: | ---: | :---: |")
        for q in r["ratios"]:
            tgt = "—" if q["target"] is None else f"≥ {q['target']:.1f}×"
            met = "—" if q["met"] is None else ("yes" if q["met"] else "**no**")
            out.append(f"| {q['ratio']} | {q['value']:.2f}× | {tgt} | {met} |")
        out.append("")
        out += [f"- {e}" for e in extra + r["notes"]]
        out.append("")
    if env.get("server_warnings"):
        out += ["## Server log lines (warnings/errors)", ""]
        out += [f"- `{w}`" for w in env["server_warnings"][:20]]
        out.append("")
    out.append("How: see scripts/bench/http_compare.py. items/s counts only 2xx answers; p50/p99 are wrk's "
               "(closed loop, fixed connections); the peer is scripts/bench/ls_backend.py. Raw wrk output and "
               f"server logs: {rel(a.log_dir)}/.")
    return "\n".join(out) + "\n"


def server_warnings(log_dir):
    out = []
    for name in sorted(os.listdir(log_dir)):
        if not name.endswith(".log"):
            continue
        with open(os.path.join(log_dir, name), errors="replace") as f:
            for line in f:
                if re.search(r"\b(WARN|WARNING|ERROR|error|panicked|CRITICAL)\b", line) and \
                        "Handling signal" not in line:
                    out.append(f"{name}: {line.strip()[:300]}")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 3s runs, 1 run, 1s warm-up, 1,000 images for jobs (each overridable)")
    ap.add_argument("--duration", type=int, help="seconds per wrk run (default 15; --quick 3)")
    ap.add_argument("--runs", type=int, help="timed runs per side (default 3; --quick 1)")
    ap.add_argument("--warmup", type=int, help="seconds of untimed wrk per side first (default 5; --quick 1)")
    ap.add_argument("--images", type=int, help="images for the jobs scenario (default 10000; --quick 1000)")
    ap.add_argument("--only", action="append", metavar="SCENARIO",
                    help=f"{', '.join(SCENARIOS)} (or a, b, c, d); repeat or comma-separate; default all")
    ap.add_argument("--threads", type=int,
                    help="labelloop ONNX Runtime intra-op threads per session (default: as serve's)")
    ap.add_argument("--sessions", type=int,
                    help="labelloop ONNX Runtime sessions per model (default: as serve's)")
    ap.add_argument("--peer-threads", type=int, default=1, help="intra-op threads per peer gunicorn worker")
    ap.add_argument("--wrk-threads", type=int, default=2)
    ap.add_argument("--poll", type=float, default=0.025, help="seconds between job polls (jobs scenario)")
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "labelloop"))
    ap.add_argument("--out-dir", default=os.path.join(ROOT, "bench-results"))
    a = ap.parse_args()
    a.sessions, a.threads = session_layout(a.sessions, a.threads)
    a.total_threads = a.sessions * a.threads
    a.duration = a.duration or (3 if a.quick else 15)
    a.runs = a.runs if a.runs is not None else (1 if a.quick else 3)
    a.warmup = a.warmup if a.warmup is not None else (1 if a.quick else 5)
    a.images = a.images or (1000 if a.quick else 10000)
    if a.runs < 1 or (a.runs < 3 and not a.quick):
        ap.error("--runs must be at least 3 for a measurement (use --quick for a smoke test)")
    if not 1 <= a.images <= 10000:
        ap.error("--images must be between 1 and 10000")
    only = [ALIASES.get(s.strip(), s.strip()) for o in (a.only or []) for s in o.split(",") if s.strip()]
    only = only or list(SCENARIOS)
    bad = [s for s in only if s not in SCENARIOS]
    if bad:
        ap.error(f"unknown scenario(s) {bad}; choose from {', '.join(SCENARIOS)} (or a-d)")
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (scripts/bench_http.sh installs it)")
    a.bin, a.out_dir = os.path.abspath(a.bin), os.path.abspath(a.out_dir)
    a.log_dir = os.path.join(a.out_dir, "http-logs")
    shutil.rmtree(a.log_dir, ignore_errors=True)
    os.makedirs(a.log_dir)

    servers = Servers(a.log_dir, os.path.join(a.log_dir, "servers.pid"))
    tmp = tempfile.mkdtemp(prefix="labelloop-bench-http-")
    atexit.register(shutil.rmtree, tmp, True)
    atexit.register(servers.stop_all)  # runs first (LIFO)
    # Started in the background by bench_http.sh, where SIGINT is ignored: take Ctrl-C back.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGHUP, lambda *_: sys.exit(129))

    env = compare.environment(a)
    env["wrk"] = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.split(" [")[0].strip()
    env["duration"], env["warmup"], env["images"] = a.duration, a.warmup, a.images
    if env["loadavg_start"][0] > 0.5:
        log(f"warning: 1-minute load average is {env['loadavg_start'][0]:.2f}; numbers will be skewed")

    results = []
    if {"single", "batch64", "batching"} & set(only):
        ll_base = start_labelloop(a, servers, "labelloop", os.path.join(tmp, "predict.db"))
        log(f"labelloop serve at {ll_base}")
        if {"single", "batch64"} & set(only):
            py_base = start_peer(a, servers)
            log(f"LS-style backend (gunicorn) at {py_base}")
            if "single" in only:
                results.append(scenario_peer(a, "single", ll_base, py_base, 1, 32, 3.0))
            if "batch64" in only:
                results.append(scenario_peer(a, "batch64", ll_base, py_base, 64, 2, 3.0))
            servers.stop("ls-backend")
        if "batching" in only:
            mb1_base = start_labelloop(a, servers, "labelloop-maxbatch1", os.path.join(tmp, "mb1.db"),
                                       ["--max-batch", "1"])
            log(f"labelloop serve --max-batch 1 at {mb1_base}")
            results.append(scenario_batching(a, ll_base, mb1_base))
            servers.stop("labelloop-maxbatch1")
        servers.stop("labelloop")
    if {"ls-single", "ls-batch64", "ls-1000"} & set(only):
        ll_base = start_labelloop(a, servers, "labelloop-ls", os.path.join(tmp, "ls.db"),
                                  ["--data-root", FASHION_ROOT])
        pid = ls_project(ll_base)
        if {"ls-single", "ls-batch64"} & set(only):
            py_base = start_peer(a, servers)
            if "ls-single" in only:
                results.append(scenario_ls(a, "ls-single", ll_base, py_base, pid, 1, 32, 2.5))
            if "ls-batch64" in only:
                results.append(scenario_ls(a, "ls-batch64", ll_base, py_base, pid, 64, 2, 2.5))
            servers.stop("ls-backend")
        if "ls-1000" in only:
            results.append(scenario_ls_1000(a, ll_base, pid))
        servers.stop("labelloop-ls")
    if "ls-orientation" in only:
        results.append(scenario_ls_orientation(a, servers, tmp))
    if "jobs" in only:
        results.append(scenario_jobs(a, servers, tmp))
    servers.stop_all()
    env["loadavg_end"] = list(os.getloadavg())
    env["server_warnings"] = server_warnings(a.log_dir)

    md = markdown(env, results, a)
    with open(os.path.join(a.out_dir, "http.md"), "w", encoding="utf-8") as f:
        f.write(md)
    with open(os.path.join(a.out_dir, "http.json"), "w", encoding="utf-8") as f:
        json.dump({"environment": env, "settings": {k: v for k, v in vars(a).items()},
                   "scenarios": results}, f, indent=2)
        f.write("\n")
    sys.stdout.write(md)
    log(f"wrote {rel(os.path.join(a.out_dir, 'http.md'))} and http.json")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        log("interrupted; stopping the servers")
        sys.exit(130)
