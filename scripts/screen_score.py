#!/usr/bin/env python3
"""Score `labelloop screen` outputs against the planted truth of
scripts/screen_data.py, and run the Python references (datasketch MinHash-LSH,
cleanlab Datalab) on the same inputs. One sub-command per benchmark; each
prints one JSON object."""
import argparse
import itertools
import json
import re
import sys
import time
from collections import defaultdict

import numpy as np


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]


def clusters(issues):
    """Items joined by exact or near duplicate groups (union-find)."""
    parent = {}

    def find(x):
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    members = defaultdict(list)
    for line in issues:
        for is_ in line.get("issues", []):
            if is_["type"] in ("exact_duplicate", "near_duplicate"):
                members[is_["group"]].append(line["id"])
    for ms in members.values():
        for m in ms[1:]:
            ra, rb = find(ms[0]), find(m)
            if ra != rb:
                parent[rb] = ra
    groups = defaultdict(list)
    for x in list(parent):
        groups[find(x)].append(x)
    return [g for g in groups.values() if len(g) > 1]


def pairs_of(groups):
    out = set()
    for g in groups:
        for a, b in itertools.combinations(sorted(g), 2):
            out.add((a, b))
    return out


def score_pairs(pred, truth_rows):
    truth = {tuple(sorted((t["a"], t["b"]))): t["kind"] for t in truth_rows}
    kinds = sorted(set(truth.values()), key=lambda k: [t["kind"] for t in truth_rows].index(k))
    res = {"pairs_predicted": len(pred), "pairs_planted": len(truth)}
    tp = len(pred & set(truth))
    res["precision"] = round(tp / max(len(pred), 1), 4)
    res["recall"] = round(tp / len(truth), 4)
    copy_kind = {}
    for (a, b), k in truth.items():
        copy_kind[a if a.startswith(("p", "copy")) else b] = k
    per = {}
    for k in kinds:
        tk = {p for p, kk in truth.items() if kk == k}
        hit = len(tk & pred)
        involving = {p for p in pred if copy_kind.get(p[0]) == k or copy_kind.get(p[1]) == k}
        per[k] = {"recall": round(hit / len(tk), 4),
                  "precision": round(len(involving & tk) / max(len(involving), 1), 4)}
    res["per_kind"] = per
    return res


def cmd_text_near(a):
    issues = read_jsonl(a.issues)
    res = score_pairs(pairs_of(clusters(issues)), read_jsonl(a.truth))
    # datasketch on the same texts: MinHash-LSH at the same threshold, then the same exact Jaccard check.
    from datasketch import MinHash, MinHashLSH
    items = read_jsonl(a.data)
    t0 = time.perf_counter()

    def sh(text, n=5):
        t = re.sub(r"[\W_]+", " ", text.lower()).strip()
        return {t} if 0 < len(t) < n else {t[i:i + n] for i in range(len(t) - n + 1)}

    shs = [sh(r["text"]) for r in items]
    lsh = MinHashLSH(threshold=a.threshold, num_perm=120)
    mhs = []
    for i, s in enumerate(shs):
        m = MinHash(num_perm=120, seed=1)
        m.update_batch([g.encode() for g in s])
        mhs.append(m)
        lsh.insert(i, m)
    pred = set()
    for i, m in enumerate(mhs):
        for j in lsh.query(m):
            if j > i and shs[i] and shs[j] and len(shs[i] & shs[j]) / len(shs[i] | shs[j]) >= a.threshold:
                pred.add((i, j))
    secs = time.perf_counter() - t0
    ids = [r["id"] for r in items]
    parent = list(range(len(ids)))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j in pred:
        parent[find(j)] = find(i)
    g = defaultdict(list)
    for i in range(len(ids)):
        g[find(i)].append(ids[i])
    ref = score_pairs(pairs_of([x for x in g.values() if len(x) > 1]), read_jsonl(a.truth))
    res["datasketch"] = {"precision": ref["precision"], "recall": ref["recall"], "seconds": round(secs, 3)}
    print(json.dumps(res))


def cmd_image_near(a):
    issues = read_jsonl(a.issues)
    print(json.dumps(score_pairs(pairs_of(clusters(issues)), read_jsonl(a.truth))))


def auroc(scores, pos):
    from sklearn.metrics import roc_auc_score
    return float(roc_auc_score(pos, scores))


def cmd_outliers(a):
    truth = {r["id"] for r in read_jsonl(a.truth)}
    scores = read_jsonl(a.scores)
    flagged = {l["id"] for l in read_jsonl(a.issues) if any(i["type"] == "outlier" for i in l["issues"])}
    ids = [s["id"] for s in scores]
    pos = [i in truth for i in ids]
    neg_n = sum(1 for p in pos if not p)
    res = {
        "auroc": round(auroc([s["outlier_score"] for s in scores], pos), 4),
        "recall": round(sum(1 for i in ids if i in truth and i in flagged) / len(truth), 4),
        "false_positive_rate": round(sum(1 for i in ids if i not in truth and i in flagged) / neg_n, 4),
    }
    if a.predictions:
        conf = {}
        for l in read_jsonl(a.predictions):
            # `labelloop label` writes the top class's probability as `score`.
            if "score" in l:
                conf[l["id"]] = l["score"]
        confident = [i for i in truth if conf.get(i, 0) >= 0.95]
        res["digits_confidence_ge_0.95"] = round(len(confident) / len(truth), 4)
        res["of_those_not_flagged"] = sum(1 for i in confident if i not in flagged)
        res["auroc_of_model_confidence"] = round(auroc([-conf.get(i, 1.0) for i in ids], pos), 4)
    print(json.dumps(res))


EXPECT = {"black": "quality:dark", "white": "quality:light", "constant": "quality:constant",
          "darkened": "quality:dark", "blurred": "quality:blurry", "truncated": "unreadable"}


def cmd_quality(a):
    truth = {r["id"]: r["kind"] for r in read_jsonl(a.truth)}
    got = defaultdict(set)
    for l in read_jsonl(a.issues):
        if "error" in l:
            got[l["id"]].add("unreadable")
        for i in l.get("issues", []):
            if i["type"].startswith("quality:"):
                got[l["id"]].add(i["type"])
    per = {}
    for kind in EXPECT:
        ids = [i for i, k in truth.items() if k == kind]
        per[kind] = round(sum(1 for i in ids if EXPECT[kind] in got[i]) / len(ids), 4)
    clean = [r["id"] for r in read_jsonl(a.data) if r["id"] not in truth]
    fp = sum(1 for i in clean if got[i])
    by_type = defaultdict(int)
    for i in clean:
        for t in got[i]:
            by_type[t] += 1
    print(json.dumps({"recall": per, "clean_flagged_rate": round(fp / len(clean), 4),
                      "clean_flagged_by_type": dict(by_type)}))


def cmd_pii(a):
    truth = {r["id"]: set(r["kinds"]) for r in read_jsonl(a.truth)}
    got = defaultdict(set)
    for l in read_jsonl(a.issues):
        for i in l.get("issues", []):
            if i["type"].startswith("pii:"):
                got[l["id"]].add(i["type"][4:])
    res = {}
    for k in ["email", "phone", "card", "iban"]:
        tp = sum(1 for i in truth if k in truth[i] and k in got[i])
        fp = sum(1 for i in truth if k not in truth[i] and k in got[i])
        fn = sum(1 for i in truth if k in truth[i] and k not in got[i])
        res[k] = {"precision": round(tp / max(tp + fp, 1), 4), "recall": round(tp / max(tp + fn, 1), 4)}
    print(json.dumps(res))


def cmd_npy(a):
    """Embeddings JSONL (labelloop label --embeddings) -> float32 .npy, rows in the data file's order."""
    by_id = {str(l["id"]): l["embedding"] for l in read_jsonl(a.embeddings)}
    ids = [str(l["id"]) for l in read_jsonl(a.data)]
    x = np.asarray([by_id[i] for i in ids], dtype=np.float32)
    np.save(a.out, x)
    print(json.dumps({"rows": int(x.shape[0]), "dim": int(x.shape[1])}))


def cmd_datalab(a):
    """Datalab near_duplicate + outlier on an .npy (or embeddings JSONL); the timing covers find_issues."""
    from cleanlab import Datalab
    if a.embeddings.endswith(".npy"):
        x = np.load(a.embeddings).astype(np.float32)
    else:
        x = np.asarray([l["embedding"] for l in read_jsonl(a.embeddings)], dtype=np.float32)
    t0 = time.perf_counter()
    lab = Datalab(data={"i": list(range(len(x)))}, verbosity=0)
    lab.find_issues(features=x, issue_types={"near_duplicate": {}, "outlier": {}})
    secs = time.perf_counter() - t0
    s = lab.get_issue_summary()
    print(json.dumps({"items": len(x), "seconds": round(secs, 2),
                      "issues": {r["issue_type"]: int(r["num_issues"]) for _, r in s.iterrows()}}))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("text-near"); p.add_argument("--issues"); p.add_argument("--truth"); p.add_argument("--data"); p.add_argument("--threshold", type=float, default=0.5)
    p = sub.add_parser("image-near"); p.add_argument("--issues"); p.add_argument("--truth")
    p = sub.add_parser("outliers"); p.add_argument("--issues"); p.add_argument("--truth"); p.add_argument("--scores"); p.add_argument("--predictions")
    p = sub.add_parser("quality"); p.add_argument("--issues"); p.add_argument("--truth"); p.add_argument("--data")
    p = sub.add_parser("pii"); p.add_argument("--issues"); p.add_argument("--truth")
    p = sub.add_parser("datalab"); p.add_argument("--embeddings")
    p = sub.add_parser("npy"); p.add_argument("--embeddings"); p.add_argument("--data"); p.add_argument("--out")
    a = ap.parse_args()
    {"text-near": cmd_text_near, "image-near": cmd_image_near, "outliers": cmd_outliers,
     "quality": cmd_quality, "pii": cmd_pii, "datalab": cmd_datalab, "npy": cmd_npy}[a.cmd](a)


if __name__ == "__main__":
    main()
