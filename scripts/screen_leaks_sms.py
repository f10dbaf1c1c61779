#!/usr/bin/env python3
"""Leaks between splits through the real service, on the 4,512 distinct SMS
texts (data/sms-spam/sms.jsonl): a seeded 80/20 train/test split, plus
planted test copies of training texts (exact, doubled spaces, upper case,
a short suffix). Starts `labelloop serve` on a fresh SQLite file, ingests
through POST /v1/projects/{id}/items with `split`, screens, and reads
GET /v1/projects/{id}/issues?type=leak.

Prints: planted leaks found (recall), other leaks (natural near-duplicates
across the split), leaks inside one split (must be 0), and the screen's
wall time.

    python3 scripts/screen_leaks_sms.py --bin target/debug/labelloop [--seed 25] [--planted 200]
"""

import argparse
import json
import random
import socket
import subprocess
import tempfile
import time
import urllib.request


def call(base, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("content-type", "application/json")
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read() or b"null")


def wait_job(base, job, timeout=3600):
    t0 = time.time()
    while time.time() - t0 < timeout:
        j = call(base, "GET", f"/v1/jobs/{job}")
        if j["state"] in ("done", "failed"):
            return j
        time.sleep(0.5)
    raise SystemExit(f"job {job} did not finish")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/debug/labelloop")
    ap.add_argument("--seed", type=int, default=25)
    ap.add_argument("--planted", type=int, default=200)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    rows = [json.loads(l) for l in open("data/sms-spam/sms.jsonl")]
    rng.shuffle(rows)
    cut = len(rows) * 4 // 5
    train, test = rows[:cut], rows[cut:]
    items = [{"id": r["id"], "text": r["text"], "split": "train"} for r in train]
    items += [{"id": r["id"], "text": r["text"], "split": "test"} for r in test]
    edits = [
        ("exact", lambda t: t),
        ("space", lambda t: t.replace(" ", "  ")),
        ("upper", lambda t: t.upper()),
        ("suffix", lambda t: t + " ok see you"),
    ]
    planted = {}
    for n, r in enumerate(rng.sample([r for r in train if len(r["text"]) >= 30], args.planted)):
        name, f = edits[n % len(edits)]
        pid = f"planted-{name}-{n}"
        items.append({"id": pid, "text": f(r["text"]), "split": "test"})
        planted[pid] = r["id"]

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tmp = tempfile.mkdtemp()
    server = subprocess.Popen(
        [args.bin, "serve", "--no-auth", "--quiet", "--addr", f"127.0.0.1:{port}",
         "--db", f"sqlite://{tmp}/l.db"],
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                call(base, "GET", "/healthz")
                break
            except Exception:
                time.sleep(0.2)
        p = call(base, "POST", "/v1/projects", {"name": "sms leaks", "model": "minilm-l6",
                                               "labels": ["ham", "spam"], "threshold": 0.9,
                                               "settings": {"audit_rate": 0.0}})
        t0 = time.time()
        for i in range(0, len(items), 1000):
            r = call(base, "POST", f"/v1/projects/{p['id']}/items", items[i:i + 1000])
            wait_job(base, r["job"]["id"])
        print(f"ingested and embedded {len(items)} texts in {time.time() - t0:.1f} s")
        t0 = time.time()
        job = call(base, "POST", f"/v1/projects/{p['id']}/screen", {})
        j = wait_job(base, job["id"])
        took = time.time() - t0
        assert j["state"] == "done", j
        leaks, after = [], None
        while True:
            q = f"/v1/projects/{p['id']}/issues?type=leak&limit=1000" + (f"&after={after}" if after else "")
            page = call(base, "GET", q)
            leaks += page["issues"]
            after = page["next_after"]
            if after is None:
                break
        found = {l["client_id"]: l["of_client_id"] for l in leaks}
        hit = sum(1 for k, v in planted.items() if found.get(k) == v)
        anyhit = sum(1 for k in planted if k in found)
        print(f"planted copies flagged as a leak of any training text: {anyhit}/{len(planted)}")
        for k, v in planted.items():
            if found.get(k) != v:
                print("   missed:", k, "copies", v, "flagged as of", found.get(k))
        within = sum(1 for l in leaks if l["split"] == l["of_split"])
        other = [l for l in leaks if l["client_id"] not in planted]
        print(f"screen job: {took:.1f} s for {len(items)} items")
        print(f"planted leaks found: {hit}/{len(planted)} (recall {hit / len(planted):.3f})")
        print(f"other leaks (natural near-duplicates of a training text in test): {len(other)}")
        print(f"leaks inside one split: {within}")
        for l in other[:5]:
            print("  ", l["client_id"], "->", l["of_client_id"], f"score {l['score']:.2f}")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
