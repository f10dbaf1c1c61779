#!/usr/bin/env python3
"""A mixed load against a real `labelloop serve` (issue #28's acceptance run).

For --secs seconds, all at once, on one Fashion-MNIST project (token auth on,
the Label Studio door closed and opened with the project's credentials):
  * 16 annotators (one annotator token each) lease review lists and label
    what they were given;
  * 2 callers of POST /v1/predict;
  * Label Studio traffic: 2 callers of /labelstudio/{p}/predict and 2
    senders of webhooks (ANNOTATION_CREATED with fresh ids, some sent
    twice at once, the way a retrying Label Studio does).
Then it checks, against the server's own records:
  * server errors (5xx, or a connection that failed): must be 0;
  * double assignments: an item handed to a second annotator while the
    first one's lease on it was live and unanswered: must be 0;
  * lost acknowledged writes: an annotation answered 201, or a webhook
    answered 200, that the items do not hold: must be 0;
  * duplicate Label Studio annotations (one annotation id recorded twice): 0;
  * webhook latency p50/p99 (target p99 < 500 ms) and the server's RSS,
    sampled every second (flat: last minute's max within 10% of the first
    sample after warm-up).
The calls are synthetic; the images and the model are real.

Usage: python3 scripts/load_mixed.py [--bin target/release/labelloop] [--secs 60]
       [--db sqlite|postgres] [--items 3000]
Prints one JSON object of figures and exits 1 when a check fails.
"""

import argparse
import base64
import http.client
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG = "postgres://postgres@127.0.0.1:5432/test"


class Client:
    """One keep-alive HTTP/1.1 connection per thread."""

    def __init__(self, port, headers):
        self.port = port
        self.headers = headers
        self.conn = None

    def call(self, method, path, body=None, extra=None):
        headers = dict(self.headers)
        if extra:
            headers.update(extra)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["content-type"] = "application/json"
        for attempt in range(2):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                self.conn.request(method, path, body=data, headers=headers)
                resp = self.conn.getresponse()
                raw = resp.read()
                try:
                    return resp.status, json.loads(raw) if raw else None
                except ValueError:
                    return resp.status, raw.decode(errors="replace")
            except (http.client.HTTPException, OSError):
                self.conn = None
                if attempt == 1:
                    return 599, None
        return 599, None


def rss_kib(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def pct(values, p):
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=str(ROOT / "target/release/labelloop"))
    ap.add_argument("--secs", type=float, default=60)
    ap.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--items", type=int, default=3000)
    ap.add_argument("--port", type=int, default=18190)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ll-load-"))
    if args.db == "sqlite":
        db = f"sqlite://{work}/ll.db"
    else:
        pg_schema = "llload_" + os.urandom(4).hex()
        subprocess.run(["psql", PG, "-q", "-c", f"CREATE SCHEMA {pg_schema}"], check=True)
        db = f"{PG}?options=-csearch_path%3D{pg_schema}"

    def token(role, name):
        out = subprocess.run(
            [args.bin, "tokens", "create", "--role", role, "--db", db, "--name", name],
            check=True, capture_output=True, text=True)
        return out.stdout.strip()

    admin = token("admin", "admin")
    annotators = [token("annotator", f"ann{i:02d}") for i in range(16)]
    predictor = token("predictor", "pipeline")
    server = subprocess.Popen(
        [args.bin, "-q", "serve", "--addr", f"127.0.0.1:{args.port}", "--db", db,
         "--data-root", str(ROOT / "data")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=open(work / "server.log", "w"), text=True)
    line = server.stdout.readline()
    if "listening" not in line:
        sys.exit(f"server did not start: {line!r}; see {work}/server.log")
    threading.Thread(target=lambda: [None for _ in server.stdout], daemon=True).start()

    a = Client(args.port, {"authorization": f"Bearer {admin}"})
    st, p = a.call("POST", "/v1/projects", {"name": "load", "model": "fashion-mnist-cnn"})
    assert st == 201, (st, p)
    project = p["id"]
    paths = [f"fashion-mnist/test/{i:05d}.png" for i in range(args.items)]
    for i in range(0, len(paths), 1000):
        st, _ = a.call("POST", f"/v1/projects/{project}/items",
                       [{"id": f"p{j}", "path": x} for j, x in enumerate(paths[i:i + 1000], i)])
        assert st in (200, 202), st
    st, creds = a.call("POST", f"/v1/projects/{project}/labelstudio/credentials")
    assert st == 201, (st, creds)
    basic = "Basic " + base64.b64encode(f"{creds['username']}:{creds['password']}".encode()).decode()
    schema = json.load(open(ROOT / "tests/fixtures/labelstudio/setup_fashion.json"))["schema"]
    ls = Client(args.port, {"authorization": basic})
    st, out = ls.call("POST", f"/labelstudio/{project}/setup",
                      {"hostname": "http://127.0.0.1:8080", "access_token": "x", "schema": schema})
    assert st == 200, (st, out)
    # Let the pre-labeling finish so review lists are full.
    deadline = time.time() + 300
    while time.time() < deadline:
        st, prog = a.call("GET", f"/v1/projects/{project}/progress")
        if st == 200 and prog.get("pending", 1) == 0:
            break
        time.sleep(0.5)

    truth = {}
    for line in open(ROOT / "data/fashion-mnist/test.jsonl"):
        r = json.loads(line)
        truth[r.get("path", r.get("id"))] = r.get("label")
    labels = sorted(set(v for v in truth.values() if v))

    lock = threading.Lock()
    stop = time.time() + args.secs
    errors = []            # (what, status)
    leases = {}            # item -> (annotator, until, answered)
    doubles = []
    acked_annotations = set()
    acked_hooks = {}       # ls annotation id -> task
    hook_ms = []
    counts = {"annotations": 0, "review_lists": 0, "predict": 0, "ls_predict": 0, "webhooks": 0}
    rss = []

    def annotator(i, tok):
        c = Client(args.port, {"authorization": f"Bearer {tok}"})
        me = f"ann{i:02d}"
        rnd = random.Random(i)
        while time.time() < stop:
            st, lst = c.call("GET", f"/v1/projects/{project}/review?limit=5")
            if st >= 500:
                errors.append(("review", st))
                continue
            if st != 200:
                continue
            now = time.time()
            with lock:
                counts["review_lists"] += 1
                for it in lst["items"]:
                    held = leases.get(it["id"])
                    if held and held[0] != me and held[1] > now and not held[2]:
                        doubles.append((it["id"], held[0], me))
                    leases[it["id"]] = (me, now + lst["lease_secs"], False)
            for it in lst["items"]:
                with lock:
                    leases[it["id"]] = (me, leases[it["id"]][1], True)
                st, out = c.call("POST", f"/v1/items/{it['id']}/annotations",
                                 {"label": rnd.choice(labels)})
                if st >= 500:
                    errors.append(("annotate", st))
                elif st == 201:
                    with lock:
                        acked_annotations.add(out["annotation_id"])
                        counts["annotations"] += 1

    def predictor_loop(seed):
        c = Client(args.port, {"authorization": f"Bearer {predictor}"})
        rnd = random.Random(seed)
        while time.time() < stop:
            body = {"model": "fashion-mnist-cnn",
                    "items": [{"path": rnd.choice(paths)} for _ in range(8)]}
            st, _ = c.call("POST", "/v1/predict", body)
            if st >= 500:
                errors.append(("predict", st))
            with lock:
                counts["predict"] += 1

    def ls_predict(seed):
        c = Client(args.port, {"authorization": basic})
        rnd = random.Random(seed)
        while time.time() < stop:
            tasks = [{"id": 1_000_000 + rnd.randrange(args.items),
                      "data": {"image": rnd.choice(paths)}} for _ in range(8)]
            st, _ = c.call("POST", f"/labelstudio/{project}/predict",
                           {"tasks": tasks, "label_config": schema})
            if st >= 500:
                errors.append(("ls_predict", st))
            with lock:
                counts["ls_predict"] += 1

    def webhooks(seed):
        c = Client(args.port, {"authorization": basic})
        twin = Client(args.port, {"authorization": basic})
        rnd = random.Random(seed)
        n = 0
        while time.time() < stop:
            n += 1
            ann = seed * 10_000_000 + n
            task = 2_000_000 + rnd.randrange(args.items)
            body = {"action": "ANNOTATION_CREATED",
                    "annotation": {"id": ann, "completed_by": {"id": 1, "email": f"ls{seed}@example.com"},
                                   "result": [{"from_name": "label", "to_name": "image", "type": "choices",
                                               "value": {"choices": [rnd.choice(labels)]}}],
                                   "updated_at": "2026-12-07T00:00:00Z", "was_cancelled": False},
                    "task": {"id": task, "data": {"image": paths[task - 2_000_000]}},
                    "project": {"label_config": schema}}
            t0 = time.time()
            if n % 5 == 0:
                # A retrying Label Studio: the same event twice at once.
                res = {}
                th = threading.Thread(target=lambda: res.update(t=twin.call(
                    "POST", f"/labelstudio/{project}/webhook", body)))
                th.start()
                st, _ = c.call("POST", f"/labelstudio/{project}/webhook", body)
                th.join()
                if res["t"][0] >= 500:
                    errors.append(("webhook", res["t"][0]))
            else:
                st, _ = c.call("POST", f"/labelstudio/{project}/webhook", body)
            ms = (time.time() - t0) * 1000
            if st >= 500:
                errors.append(("webhook", st))
            elif st == 200:
                with lock:
                    hook_ms.append(ms)
                    acked_hooks[ann] = task
                    counts["webhooks"] += 1

    def sampler():
        while time.time() < stop:
            rss.append(rss_kib(server.pid))
            time.sleep(1)

    threads = [threading.Thread(target=annotator, args=(i, t)) for i, t in enumerate(annotators)]
    threads += [threading.Thread(target=predictor_loop, args=(s,)) for s in (1, 2)]
    threads += [threading.Thread(target=ls_predict, args=(s,)) for s in (3, 4)]
    threads += [threading.Thread(target=webhooks, args=(s,)) for s in (5, 6)]
    threads.append(threading.Thread(target=sampler))
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    def read_back():
        held, ls_by_task, cursor = {}, {}, None
        while True:
            q = f"/v1/projects/{project}/items?limit=1000" + (f"&cursor={cursor}" if cursor else "")
            st, page = a.call("GET", q)
            assert st == 200, st
            for it in page["items"]:
                for an in it["annotations"]:
                    held[an["id"]] = an
                if it["client_id"].startswith("ls-task-"):
                    ls_by_task[int(it["client_id"][8:])] = [
                        an for an in it["annotations"] if an["annotator"].startswith("ls:")]
            cursor = page["next_cursor"]
            if cursor is None:
                return held, ls_by_task

    # Webhooks answered `queued` are applied after the answer: read back
    # until the count of Label Studio annotations holds still for 3 s.
    drain = time.time()
    held, ls_by_task = read_back()
    last, still = -1, time.time()
    while time.time() - drain < 120:
        n = sum(len(v) for v in ls_by_task.values())
        if n != last:
            last, still = n, time.time()
        elif time.time() - still >= 3:
            break
        time.sleep(0.5)
        held, ls_by_task = read_back()
    drain_secs = time.time() - drain
    lost = [x for x in acked_annotations if x not in held]
    # Each acknowledged webhook: its task holds an ls: annotation. Tasks that
    # got several webhooks keep each (different annotation ids).
    per_task = {}
    for ann, task in acked_hooks.items():
        per_task[task] = per_task.get(task, 0) + 1
    lost_hooks = sum(max(0, n - len(ls_by_task.get(t, []))) for t, n in per_task.items())
    dup_hooks = sum(max(0, len(ls_by_task.get(t, [])) - n) for t, n in per_task.items())
    server.terminate()
    server.wait(timeout=30)
    warm = rss[5:] or rss
    figures = {
        "db": args.db, "secs": args.secs, "calls": counts,
        "server_errors": len(errors), "error_samples": errors[:5],
        "double_assignments": len(doubles),
        "lost_acknowledged_annotations": len(lost),
        "lost_acknowledged_webhooks": lost_hooks,
        "duplicate_webhook_annotations": dup_hooks,
        "webhook_ms_p50": round(pct(hook_ms, 50) or 0, 1),
        "webhook_ms_p99": round(pct(hook_ms, 99) or 0, 1),
        "outbox_drain_secs": round(drain_secs, 1),
        "rss_mib_first_last_max": [round(warm[0] / 1024), round(warm[-1] / 1024), round(max(warm) / 1024)],
        "note": "synthetic calls; real images and model",
    }
    print(json.dumps(figures, indent=1))
    ok = (not errors and not doubles and not lost and lost_hooks == 0 and dup_hooks == 0
          and (pct(hook_ms, 99) or 0) < 500)
    if args.db == "postgres":
        subprocess.run(["psql", PG, "-q", "-c", f"DROP SCHEMA {pg_schema} CASCADE"], check=False)
    shutil.rmtree(work, ignore_errors=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
