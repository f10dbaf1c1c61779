"""The SQLite floor under an HTTP batch job: the statements every item needs,
run straight through Python's sqlite3 (the C library, no server, no HTTP, no
inference), on labelloop's own schema and settings.

For each of N Fashion-MNIST-sized items it times what `labelloop serve` does
to the store, in the same shapes and transaction sizes:
  ingest  INSERT ... ON CONFLICT DO NOTHING, 500 rows per statement, the PNG inline;
  claim   UPDATE ... SET lease WHERE id IN (SELECT ... LIMIT 256) RETURNING content;
  record  UPDATE ... FROM (VALUES ...) with the 19 prediction columns (a 256-byte
          embedding among them) plus the audit INSERT INTO predictions, 256 per transaction.
SQLite has one writer, so these costs add up on one core however many cores
the machine has. scripts/bench/http_compare.py turns them into a ceiling for
the jobs scenario.

    python scripts/bench/sqlite_floor.py [--items 10000] [--runs 3] [--paths]

Prints one JSON line: median microseconds per item for each step and in all.
"""
import argparse
import glob
import json
import os
import random
import statistics
import sqlite3
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BATCH = 512  # the server's claim_batch: claimed, predicted and recorded together
INGEST_CHUNK = 500


EXTRA_SQL = []  # --extra-sql: a schema variant tried against the same statements


def connect(path):
    db = sqlite3.connect(path, isolation_level=None)
    # The settings src/store/mod.rs opens SQLite with.
    for pragma in ("journal_mode = WAL", "synchronous = NORMAL", "foreign_keys = ON",
                   "cache_size = -32768", "mmap_size = 0", "wal_autocheckpoint = 10000",
                   "journal_size_limit = 67108864", "temp_store = memory"):
        db.execute(f"PRAGMA {pragma}")
    for path_ in sorted(glob.glob(os.path.join(ROOT, "migrations", "sqlite", "*.sql"))):
        with open(path_, encoding="utf-8") as f:
            db.executescript(f.read())
    for script in EXTRA_SQL:
        db.executescript(script)
    return db


def one_run(n, png, embedding, paths=False):
    with tempfile.TemporaryDirectory() as tmp:
        db = connect(os.path.join(tmp, "floor.db"))
        db.execute("INSERT INTO projects (name, model, labels, threshold, precision_target, created_at) "
                   "VALUES ('floor', 'fashion-mnist-cnn', '[]', 0.9, 0.95, 0)")
        now = int(time.time() * 1000)
        db.execute("BEGIN")
        job = db.execute("INSERT INTO jobs (project_id, state, total, created_at, updated_at) "
                         "VALUES (1, 'running', 0, ?, ?) RETURNING id", (now, now)).fetchone()[0]
        t0 = time.perf_counter()
        for start in range(0, n, INGEST_CHUNK):
            rows = range(start, min(start + INGEST_CHUNK, n))
            sql = ("INSERT INTO items (project_id, client_id, kind, text, image, path, status, job_id, created_at) VALUES "
                   + ", ".join("(?, ?, ?, ?, ?, ?, 'pending', ?, ?)" for _ in rows)
                   + " ON CONFLICT (project_id, client_id) DO NOTHING")
            args = []
            for i in rows:
                if paths:
                    args += [1, f"item-{i}", "path", None, None, f"{ROOT}/data/fashion-mnist/test/{i % 10000:05d}.png", job, now]
                else:
                    args += [1, f"item-{i}", "image", None, png, None, job, now]
            db.execute(sql, args)
        db.execute("UPDATE jobs SET total = ? WHERE id = ?", (n, job))
        db.execute("COMMIT")
        ingest = time.perf_counter() - t0

        claim_s = record_s = 0.0
        scores = json.dumps({f"class-{c}": 0.1 for c in range(10)})
        while True:
            t0 = time.perf_counter()
            until = int(time.time() * 1000) + 60_000
            claimed = db.execute(
                "UPDATE items SET lease_owner = ?, lease_until = ? WHERE id IN ("
                "SELECT id FROM items WHERE job_id = ? AND status = 'pending' "
                "AND (lease_until IS NULL OR lease_until < ?) ORDER BY id LIMIT ?) "
                "RETURNING id, project_id, kind, text, image, path",
                ("w1", until, job, until - 60_000, BATCH)).fetchall()
            claim_s += time.perf_counter() - t0
            if not claimed:
                break
            t0 = time.perf_counter()
            db.execute("BEGIN")
            values, args = [], []
            for (item_id, *_rest) in claimed:
                accept = random.random() < 0.8
                values.append("(" + ", ".join("?" * 19) + ")")
                args += [item_id, "auto_accepted" if accept else "needs_review", "Bag", 0.93, scores,
                         "1", "Bag" if accept else None, "machine" if accept else None,
                         0.07, 0.8, 0.2, embedding, None, None, 0.93, scores, 0, None, None]
            args += ["w1", job]
            recorded = db.execute(
                "UPDATE items SET status = CASE WHEN items.audit = 1 THEN 'needs_review' ELSE v.column2 END, "
                "pred_label = v.column3, pred_score = v.column4, pred_scores = v.column5, model_version = v.column6, "
                "final_label = CASE WHEN items.audit = 1 THEN NULL ELSE v.column7 END, "
                "final_source = CASE WHEN items.audit = 1 THEN NULL ELSE v.column8 END, unc_least_confidence = v.column9, "
                "unc_margin = v.column10, unc_entropy = v.column11, embedding = COALESCE(v.column12, items.embedding), "
                "unc_vote_entropy = v.column13, unc_mean_kl = v.column14, raw_score = v.column15, raw_scores = v.column16, "
                "audit = CASE WHEN items.audit = 1 THEN 1 ELSE v.column17 END, "
                "audit_p = COALESCE(items.audit_p, v.column18), calibration_version = v.column19, "
                "lease_owner = NULL, lease_until = NULL, error = NULL FROM (VALUES " + ", ".join(values)
                + ") AS v WHERE items.id = v.column1 AND items.lease_owner = ? AND +items.job_id = ? "
                "AND items.status = 'pending' RETURNING items.id", args).fetchall()
            audit = []
            for (item_id,) in recorded:
                audit += [item_id, "1", "Bag", 0.93, "w1", now]
            db.execute("INSERT INTO predictions (item_id, model_version, label, score, worker, created_at) VALUES "
                       + ", ".join("(?, ?, ?, ?, ?, ?)" for _ in recorded), audit)
            db.execute("COMMIT")
            record_s += time.perf_counter() - t0
        done = db.execute("SELECT COUNT(*) FROM items WHERE status != 'pending'").fetchone()[0]
        if done != n:
            raise SystemExit(f"floor run recorded {done} of {n} items")
        db.close()
    return {"ingest": ingest, "claim": claim_s, "record": record_s}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=10000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--paths", action="store_true", help="store path items (as scripts/bench_jobs.sh ingests), not inline PNGs")
    ap.add_argument("--extra-sql", metavar="FILE", help="SQL run after the migrations (a schema variant to compare)")
    a = ap.parse_args()
    if a.extra_sql:
        with open(a.extra_sql, encoding="utf-8") as f:
            EXTRA_SQL.append(f.read())
    png_dir = os.path.join(ROOT, "data", "fashion-mnist", "test")
    first = sorted(f for f in os.listdir(png_dir) if f.endswith(".png"))[0]
    with open(os.path.join(png_dir, first), "rb") as f:
        png = f.read()
    embedding = bytes(256)  # the CNN's 64 float32s
    runs = [one_run(a.items, png, embedding, a.paths) for _ in range(a.runs)]
    us = {k: statistics.median(r[k] for r in runs) / a.items * 1e6 for k in ("ingest", "claim", "record")}
    us["total"] = sum(us.values())
    print(json.dumps({"items": a.items, "runs": a.runs, "sqlite": sqlite3.sqlite_version,
                      "us_per_item": us, "items_per_s_ceiling": 1e6 / us["total"]}))


if __name__ == "__main__":
    main()
