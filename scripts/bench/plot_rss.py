"""Draw the RSS curves that `jobs_e2e.py --rss-trace` wrote (seconds,rss_mib
CSV files) as one PNG: time on x, resident MiB on y, a line per file.

    .venv-data/bin/python scripts/bench/plot_rss.py bench-results/rss-*.csv --out rss.png

Pillow only (the page renderer's venv has it), so no plotting stack is needed.
"""
import argparse
import csv
import os

from PIL import Image, ImageDraw

COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csv", nargs="+")
    ap.add_argument("--out", required=True)
    ap.add_argument("--title", default="labelloop serve: resident memory during the job")
    ap.add_argument("--limit-mib", type=float, default=1024, help="a dashed line at this MiB (the goal)")
    a = ap.parse_args()
    series = []
    for path in a.csv:
        with open(path) as f:
            rows = [(float(r["seconds"]), float(r["rss_mib"])) for r in csv.DictReader(f)]
        if rows:
            series.append((os.path.basename(path).removesuffix(".csv"), rows))
    if not series:
        raise SystemExit("no samples in the given files")
    t_max = max(t for _, rows in series for t, _ in rows)
    y_max = max(a.limit_mib * 1.1, max(m for _, rows in series for _, m in rows) * 1.1)
    w, h, left, right, top, bottom = 960, 540, 70, 20, 40, 50
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    px = lambda t: left + (w - left - right) * t / max(t_max, 1e-9)
    py = lambda m: h - bottom - (h - top - bottom) * m / y_max
    d.rectangle([left, top, w - right, h - bottom], outline="black")
    for k in range(6):
        m = y_max * k / 5
        d.line([left - 4, py(m), left, py(m)], fill="black")
        d.text((5, py(m) - 6), f"{m:,.0f} MiB", fill="black")
        t = t_max * k / 5
        d.line([px(t), h - bottom, px(t), h - bottom + 4], fill="black")
        d.text((px(t) - 15, h - bottom + 8), f"{t:,.0f} s", fill="black")
    # The goal as a dashed line.
    x = left
    while x < w - right:
        d.line([x, py(a.limit_mib), min(x + 8, w - right), py(a.limit_mib)], fill=(120, 120, 120))
        x += 16
    d.text((w - right - 120, py(a.limit_mib) - 14), f"{a.limit_mib:,.0f} MiB goal", fill=(90, 90, 90))
    for i, (name, rows) in enumerate(series):
        c = COLOURS[i % len(COLOURS)]
        d.line([(px(t), py(m)) for t, m in rows], fill=c, width=2)
        peak = max(m for _, m in rows)
        d.text((left + 10, top + 8 + 14 * i), f"{name}: peak {peak:,.0f} MiB", fill=c)
    d.text((left, 12), a.title, fill="black")
    img.save(a.out)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
