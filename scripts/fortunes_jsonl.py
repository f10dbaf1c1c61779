#!/usr/bin/env python3
"""Debian's `fortunes` files as a labeled topic set: data/fortunes/fortunes.jsonl.

Each fortune file of the package is one topic; its entries are separated by
lines holding a single `%`. This keeps eight topical files (the catch-all
ones such as `fortunes`, `miscellaneous` or `wisdom` have no topic), removes
overstriking (`X<BS>X`), joins lines, drops empty and duplicate texts (a
text in two files is dropped from both: its label is ambiguous) and writes
one {"id", "text", "label"} object per line, in file order.

Usage: fortunes_jsonl.py SRC_DIR --out data/fortunes
"""

import argparse
import json
import os
import re
from collections import Counter

TOPICS = ["computers", "education", "food", "law", "politics", "science", "sports", "work"]
OVERSTRIKE = re.compile(r".\x08")


def entries(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        raw = f.read()
    for block in re.split(r"^%\s*$", raw, flags=re.M):
        text = " ".join(OVERSTRIKE.sub("", block).split())
        if text:
            yield text


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src", help="the package's fortunes folder (usr/share/games/fortunes)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    rows = [(t, topic) for topic in TOPICS for t in entries(os.path.join(args.src, topic))]
    labels_of = {}
    for text, topic in rows:
        labels_of.setdefault(text, set()).add(topic)
    seen = set()
    kept = []
    for text, topic in rows:
        if len(labels_of[text]) == 1 and text not in seen:
            seen.add(text)
            kept.append((text, topic))
    os.makedirs(args.out, exist_ok=True)
    dest = os.path.join(args.out, "fortunes.jsonl")
    with open(dest + ".tmp", "w", encoding="utf-8") as f:
        for i, (text, topic) in enumerate(kept):
            f.write(json.dumps({"id": f"fortune-{i:05d}", "text": text, "label": topic}) + "\n")
    os.replace(dest + ".tmp", dest)
    counts = Counter(t for _, t in kept)
    print(f"wrote {dest}: {len(kept)} fortunes, " + ", ".join(f"{k} {counts[k]}" for k in TOPICS))


if __name__ == "__main__":
    main()
