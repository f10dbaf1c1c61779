#!/usr/bin/env python3
"""Write Fashion-MNIST test images as 28x28 greyscale PNGs plus a JSONL index.

Standard library only (gzip, zlib, struct), so setup needs no pip packages.
Output: OUT/test/00000.png ... and OUT/test.jsonl with
{"id": "fmnist-test-00000", "image": "test/00000.png", "label": "Ankle boot"}.
"""
import argparse
import gzip
import json
import os
import struct
import zlib

LABELS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
          "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def png_grey(width, height, pixels):
    raw = b"".join(b"\x00" + pixels[y * width:(y + 1) * width] for y in range(height))

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--out", default="data/fashion-mnist")
    args = ap.parse_args()
    with gzip.open(os.path.join(args.src, "t10k-images-idx3-ubyte.gz")) as f:
        magic, n, rows, cols = struct.unpack(">IIII", f.read(16))
        assert magic == 2051, "not an IDX image file"
        images = f.read()
    with gzip.open(os.path.join(args.src, "t10k-labels-idx1-ubyte.gz")) as f:
        magic, n_labels = struct.unpack(">II", f.read(8))
        assert magic == 2049 and n_labels == n, "labels do not match images"
        labels = f.read()
    os.makedirs(os.path.join(args.out, "test"), exist_ok=True)
    size = rows * cols
    tmp = os.path.join(args.out, "test.jsonl.tmp")
    with open(tmp, "w") as index:
        for i in range(n):
            name = f"test/{i:05d}.png"
            with open(os.path.join(args.out, name), "wb") as png:
                png.write(png_grey(cols, rows, images[i * size:(i + 1) * size]))
            index.write(json.dumps({"id": f"fmnist-test-{i:05d}", "image": name, "label": LABELS[labels[i]]}) + "\n")
    os.replace(tmp, os.path.join(args.out, "test.jsonl"))


if __name__ == "__main__":
    main()
