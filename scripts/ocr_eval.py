#!/usr/bin/env python3
"""Score OCR output (labelloop's JSONL shape) against the rendered pages'
lines (render_layout_pages.py --lines). Standard library only.

    python3 scripts/ocr_eval.py data/ocr-pages/lines.json OUT.jsonl [--json]

Matching: a predicted line and a true line match when each one's box centre
lies inside the other's box; among such pairs, one-to-one, by largest
overlap first. From the matches:

  detection F1   2·matched / (true lines + predicted lines)
  line exact     true lines whose matched prediction's text is exactly theirs
                 (after Unicode NFC), over all true lines (a missed line is wrong)
  page CER       over the page's lines, matched: edit distance between the
                 true and predicted text; a missed true line costs all its
                 characters, an extra predicted line all of its; summed over
                 all pages and divided by the true characters. Matching by
                 line makes the CER independent of reading order, which is
                 scored separately (tests/ocr.rs, the two-column page).
"""
import argparse
import json
import sys
import unicodedata


def edit_distance(a, b):
    if a == b:
        return 0
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def inside(p, b):
    return b[0] <= p[0] <= b[2] and b[1] <= p[1] <= b[3]


def centre(b):
    return ((b[0] + b[2]) / 2, (b[1] + b[3]) / 2)


def overlap(a, b):
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return max(0.0, w) * max(0.0, h)


def match(truth, pred):
    pairs = []
    for i, t in enumerate(truth):
        for j, p in enumerate(pred):
            if inside(centre(p["box"]), t["box"]) and inside(centre(t["box"]), p["box"]):
                pairs.append((overlap(t["box"], p["box"]), i, j))
    pairs.sort(reverse=True)
    used_t, used_p, out = set(), set(), {}
    for _, i, j in pairs:
        if i in used_t or j in used_p:
            continue
        used_t.add(i)
        used_p.add(j)
        out[i] = j
    return out


def nfc(s):
    return unicodedata.normalize("NFC", s)


def score(truth_pages, preds, subset=None):
    n_true = n_pred = n_match = exact = chars = edits = 0
    for page in truth_pages:
        if subset is not None and page["degraded"] != subset:
            continue
        p = preds.get(page["id"])
        if p is None:
            raise SystemExit(f"no prediction for {page['id']}")
        truth, pred = page["lines"], p.get("regions", [])
        m = match(truth, pred)
        n_true += len(truth)
        n_pred += len(pred)
        n_match += len(m)
        for i, t in enumerate(truth):
            tt = nfc(t["text"])
            chars += len(tt)
            if i in m:
                pt = nfc(pred[m[i]]["text"])
                edits += edit_distance(tt, pt)
                exact += tt == pt
            else:
                edits += len(tt)
        matched_pred = set(m.values())
        for j, q in enumerate(pred):
            if j not in matched_pred:
                edits += len(nfc(q["text"]))
    return {
        "pages": sum(1 for pg in truth_pages if subset is None or pg["degraded"] == subset),
        "true_lines": n_true,
        "pred_lines": n_pred,
        "page_cer": edits / max(chars, 1),
        "line_exact": exact / max(n_true, 1),
        "det_f1": 2 * n_match / max(n_true + n_pred, 1),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("truth")
    ap.add_argument("pred")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with open(args.truth) as f:
        truth = json.load(f)["pages"]
    preds = {}
    with open(args.pred) as f:
        for line in f:
            if line.strip():
                p = json.loads(line)
                preds[p["id"]] = p
    res = {"all": score(truth, preds), "clean": score(truth, preds, False),
           "degraded": score(truth, preds, True)}
    if args.json:
        print(json.dumps(res))
        return
    for k, r in res.items():
        print(f"{k:9s} pages {r['pages']:3d}  lines {r['true_lines']:5d} true / {r['pred_lines']:5d} found  "
              f"page CER {100 * r['page_cer']:.2f}%  line exact {100 * r['line_exact']:.1f}%  "
              f"det F1 {r['det_f1']:.3f}")


if __name__ == "__main__":
    sys.setrecursionlimit(10000)
    main()
