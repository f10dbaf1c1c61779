#!/usr/bin/env python3
"""Render the document pages in tests/fixtures/documents/ (run once; outputs are committed).

The orientation test rotates these real text pages by 0/90/180/270 degrees and
checks what the model says. Needs Pillow (its bundled default TrueType font).
"""
import argparse
import os
import textwrap

from PIL import Image, ImageDraw, ImageFont

TEXTS = [
    """Quarterly report. Revenue grew eleven percent over the previous quarter, driven by
    strong demand in the northern region and a lower churn rate among enterprise customers.
    Operating costs rose slightly because of new hires in support and engineering. The board
    approved a dividend of twelve cents per share, payable next month to shareholders of record.
    Management expects growth to continue through the end of the year, although currency
    movements remain a risk. Capital expenditure will focus on the new distribution centre.""",
    """Dear customer, thank you for your letter of the fourteenth. We have reviewed your account
    and found that the late fee charged in March was applied in error. The amount has been
    credited to your next statement. Please keep this letter for your records. If you have any
    further questions about your account, our service team is available on weekdays between
    nine and five. We apologise for the inconvenience and thank you for your patience.""",
    """Instructions for use. Remove the device from its packaging and charge it fully before
    first use. Press and hold the power button for three seconds to switch it on. The indicator
    light turns green when the battery is full. Do not expose the device to water or extreme
    heat. Clean the surface with a dry cloth only. Dispose of the battery according to local
    regulations. The warranty covers manufacturing defects for a period of two years.""",
]


def render(text, width=620, height=820, size=17):
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=size)
    title_font = ImageFont.load_default(size=size + 9)
    words = " ".join(text.split())
    title, body = words.split(".", 1)
    draw.text((40, 40), title.strip(), fill="black", font=title_font)
    y = 90
    for _ in range(3):
        for line in textwrap.wrap(body.strip(), width=62):
            draw.text((40, y), line, fill="black", font=font)
            y += size + 8
            if y > height - 60:
                return img
        y += size
    return img


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/documents")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for i, text in enumerate(TEXTS, 1):
        render(text).convert("L").save(os.path.join(args.out, f"page-{i}.png"), optimize=True)


if __name__ == "__main__":
    main()
