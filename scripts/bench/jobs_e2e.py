"""End-to-end pre-labeling jobs: `labelloop serve` (release) on a fresh
store, N Fashion-MNIST paths ingested over HTTP as NDJSON in chunks, every
job waited for, then review pages timed. Driven by scripts/bench_jobs.sh.

Paths repeat the 10,000 test PNGs under data/fashion-mnist/test to reach N
(ids are distinct, so every item is labeled). Each side is a labelloop
binary; with several sides, runs alternate (a, b, a, b, ...) so that drift
of a shared machine hits every side alike, and medians are reported.

Per run: ingest seconds (all chunks posted and answered), seconds until
every job is done, end-to-end items/s, review page p50 / max over the
pages, peak RSS of each server (VmHWM from /proc at the end) and the
store's size (SQLite file + WAL, or PostgreSQL's pg_database_size).

Only the standard library: runs with any python3.
"""
import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DATA_ROOT = os.path.join(ROOT, "data", "fashion-mnist")
MODEL = "fashion-mnist-cnn"
LISTENING = re.compile(r"labelloop listening on (http://\S+)")


def log(msg):
    print(f"[bench-jobs] {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None, content_type="application/json", timeout=600):
    headers = {}
    if body is not None:
        headers["Content-Type"] = content_type
        if not isinstance(body, (bytes, bytearray)):
            body = json.dumps(body).encode()
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


class Server:
    def __init__(self, binary, db, log_path, extra):
        self.port = free_port()
        cmd = [binary, "-q", "serve", "--addr", f"127.0.0.1:{self.port}", "--no-auth",
               "--db", db, "--data-root", DATA_ROOT, *extra]
        self.log_path = log_path
        self.log = open(log_path, "w")
        self.p = subprocess.Popen(cmd, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with open(log_path, errors="replace") as f:
                m = LISTENING.search(f.read())
            if m:
                self.base = m[1].rstrip("/")
                return
            if self.p.poll() is not None:
                raise SystemExit(f"server exited with {self.p.returncode}: {' '.join(cmd)}\n"
                                 + open(log_path, errors="replace").read()[-2000:])
            time.sleep(0.05)
        self.stop()
        raise SystemExit(f"server did not listen within 120 s: {log_path}")

    def rss_mib(self):
        """Resident set now (VmRSS), for the RSS curve."""
        try:
            with open(f"/proc/{self.p.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            pass
        return None

    def peak_rss_mib(self):
        try:
            with open(f"/proc/{self.p.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            pass
        return None

    def stop(self):
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait()
        self.log.close()


def chunks(n, size):
    """NDJSON bodies of `size` path items each, ids i0..i{n-1}."""
    for start in range(0, n, size):
        lines = [f'{{"id":"i{k}","path":"test/{k % 10000:05d}.png"}}' for k in range(start, min(n, start + size))]
        yield ("\n".join(lines) + "\n").encode()


def pg_admin(sql, url):
    subprocess.run(["psql", url, "-q", "-v", "ON_ERROR_STOP=1", "-c", sql], check=True,
                   stdout=subprocess.DEVNULL)


def pg_scalar(sql, url):
    return subprocess.run(["psql", url, "-At", "-c", sql], check=True, capture_output=True,
                          text=True).stdout.strip()


def one_run(a, side, binary, r, tmp):
    tag = f"{side}-run{r}"
    pg_db = None
    if a.postgres:
        pg_db = f"bench_jobs_{os.getpid()}_{r}_{re.sub('[^a-z0-9]', '_', side.lower())}"
        pg_admin(f"DROP DATABASE IF EXISTS {pg_db}", a.postgres)
        pg_admin(f"CREATE DATABASE {pg_db}", a.postgres)
        db = a.postgres.rsplit("/", 1)[0] + "/" + pg_db
        replicas = a.replicas
    else:
        db_path = os.path.join(tmp, f"{tag}.db")
        db = f"sqlite://{db_path}"
        replicas = 1
    servers = []
    try:
        for k in range(replicas):
            servers.append(Server(binary, db, os.path.join(a.log_dir, f"{tag}-{k}.log"), a.serve_arg))
        base = servers[0].base
        # An explicit fixed threshold: the same routing work on every build
        # (since #26 a project without one auto-accepts nothing before a
        # calibration, where a5a30ea's default was 0.9).
        st, proj = http("POST", base + "/v1/projects",
                        {"name": f"bench-{tag}", "model": MODEL, "threshold": 0.9})
        if st != 201:
            raise SystemExit(f"POST /v1/projects answered {st}: {proj}")
        pid = proj["id"]
        jobs, inserted = [], 0
        t0 = time.perf_counter()
        trace, tracing_done = [], threading.Event()
        if a.rss_trace:
            def sample():
                while not tracing_done.wait(a.rss_every):
                    rss = [s.rss_mib() for s in servers]
                    trace.append((time.perf_counter() - t0, max(x or 0 for x in rss)))
            threading.Thread(target=sample, daemon=True).start()
        for i, body in enumerate(chunks(a.items, a.chunk)):
            target = servers[i % len(servers)].base
            st, res = http("POST", f"{target}/v1/projects/{pid}/items", body, "application/x-ndjson")
            if st != 202:
                raise SystemExit(f"ingest answered {st}: {str(res)[:500]}")
            jobs.append(res["job"]["id"])
            inserted += res["inserted"]
        t_ingest = time.perf_counter() - t0
        done = errors = 0
        deadline = time.monotonic() + max(900, a.items / 500)
        for j in jobs:
            while True:
                st, job = http("GET", f"{base}/v1/jobs/{j}")
                if st != 200:
                    raise SystemExit(f"GET /v1/jobs/{j} answered {st}: {job}")
                if job["state"] != "running":
                    done += job["done"]
                    errors += job["errors"]
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"job {j} still running after the deadline: {job}")
                time.sleep(a.poll)
        t_all = time.perf_counter() - t0
        tracing_done.set()
        pages = []
        for _ in range(a.pages):
            t = time.perf_counter()
            st, page = http("GET", f"{base}/v1/projects/{pid}/review?annotator=bench")
            pages.append((time.perf_counter() - t) * 1e3)
            if st != 200:
                raise SystemExit(f"review answered {st}: {str(page)[:300]}")
        rss = [s.peak_rss_mib() for s in servers]
        if pg_db:
            size = int(pg_scalar(f"SELECT pg_database_size('{pg_db}')", a.postgres)) / 2**20
    finally:
        for s in servers:
            s.stop()
    if not pg_db:
        size = sum(os.path.getsize(p) for p in (db_path, db_path + "-wal") if os.path.exists(p)) / 2**20
        for suffix in ("", "-wal", "-shm"):
            try:
                os.remove(db_path + suffix)
            except OSError:
                pass
    else:
        pg_admin(f"DROP DATABASE IF EXISTS {pg_db}", a.postgres)
    if inserted != a.items or done != a.items or errors:
        log(f"WARNING {tag}: inserted {inserted}, done {done}, errors {errors} of {a.items}")
    pages.sort()
    if a.rss_trace:
        with open(f"{a.rss_trace}-{tag}.csv", "w") as f:
            f.write("seconds,rss_mib\n")
            f.writelines(f"{t:.1f},{m:.1f}\n" for t, m in trace)
    p99 = pages[min(len(pages) - 1, int(0.99 * len(pages)))] if pages else None
    res = {"side": side, "run": r, "items": a.items, "ingest_s": t_ingest, "all_done_s": t_all,
           "items_per_s": a.items / t_all, "review_p50_ms": statistics.median(pages) if pages else None,
           "review_max_ms": max(pages) if pages else None,
           "review_p99_ms": p99, "peak_rss_mib": max(x or 0 for x in rss),
           "peak_rss_each_mib": rss, "db_mib": size, "done": done, "errors": errors,
           "replicas": replicas}
    log(f"{tag}: ingest {t_ingest:.1f} s, all done {t_all:.1f} s, {res['items_per_s']:,.0f} items/s, "
        f"review p50 {res['review_p50_ms']:.1f} / max {res['review_max_ms']:.1f} ms, "
        f"peak RSS {res['peak_rss_mib']:.0f} MiB, store {size:.0f} MiB")
    return res


def cli_rate(binary, tmp):
    """`labelloop label` on the 10,000 test PNGs: its own rate, the CPU a
    labeled item costs without any store (the other half of the ceiling)."""
    out = os.path.join(tmp, "cli.jsonl")
    t = time.perf_counter()
    p = subprocess.run([binary, "-q", "label", "--model", os.path.join(ROOT, "models", MODEL),
                        os.path.join(DATA_ROOT, "test"), "--out", out],
                       cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        log(f"labelloop label failed: {p.stderr[-1000:]}")
        return None
    n = sum(1 for _ in open(out))
    return {"items": n, "wall_s": wall, "items_per_s": n / wall}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--side", action="append", required=True, metavar="NAME=BINARY")
    ap.add_argument("--items", type=int, default=300_000)
    ap.add_argument("--chunk", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--pages", type=int, default=20)
    ap.add_argument("--poll", type=float, default=0.05)
    ap.add_argument("--postgres", metavar="URL", help="PostgreSQL server URL (a database per run is created there)")
    ap.add_argument("--replicas", type=int, default=1)
    ap.add_argument("--serve-arg", action="append", default=[], help="extra flag for serve (repeatable)")
    ap.add_argument("--rss-trace", metavar="PREFIX",
                    help="sample each run's RSS every --rss-every s into PREFIX-<side>-run<r>.csv")
    ap.add_argument("--rss-every", type=float, default=1.0)
    ap.add_argument("--cli", action="store_true", help="also time `labelloop label` per round (first side)")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench-results", "jobs.json"))
    a = ap.parse_args()
    a.log_dir = os.path.join(os.path.dirname(a.out), "jobs-logs")
    os.makedirs(a.log_dir, exist_ok=True)
    sides = [s.split("=", 1) for s in a.side]
    results, cli = [], []
    with tempfile.TemporaryDirectory(prefix="bench-jobs-") as tmp:
        for r in range(1, a.runs + 1):
            order = sides if r % 2 else list(reversed(sides))
            for name, binary in order:
                results.append(one_run(a, name, binary, r, tmp))
            if a.cli:
                c = cli_rate(sides[0][1], tmp)
                if c:
                    log(f"labelloop label: {c['items_per_s']:,.0f} items/s whole process")
                    cli.append(c)
    summary = {}
    for name, _ in sides:
        rs = [x for x in results if x["side"] == name]
        summary[name] = {k: statistics.median(x[k] for x in rs)
                         for k in ("ingest_s", "all_done_s", "items_per_s", "review_p50_ms",
                                   "review_p99_ms", "review_max_ms", "peak_rss_mib", "db_mib")}
        summary[name]["runs"] = len(rs)
    if cli:
        summary["cli_items_per_s"] = statistics.median(c["items_per_s"] for c in cli)
    with open(a.out, "w") as f:
        json.dump({"args": {k: v for k, v in vars(a).items()}, "runs": results, "median": summary}, f, indent=1)
    print(f"| side | items | ingest s | all done s | items/s | review p50 / p99 / max ms | peak RSS MiB | store MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, _ in sides:
        s = summary[name]
        print(f"| {name} | {a.items:,} | {s['ingest_s']:.1f} | {s['all_done_s']:.1f} | {s['items_per_s']:,.0f} | "
              f"{s['review_p50_ms']:.1f} / {s['review_p99_ms']:.1f} / {s['review_max_ms']:.1f} | {s['peak_rss_mib']:.0f} | {s['db_mib']:.0f} |")
    if cli:
        print(f"\n`labelloop label` on the 10,000 test PNGs (whole process): {summary['cli_items_per_s']:,.0f} items/s")
    print(f"\nmedians of {a.runs} run(s) per side; raw runs in {os.path.relpath(a.out, ROOT)}")


if __name__ == "__main__":
    main()
