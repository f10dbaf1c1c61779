#!/usr/bin/env python3
"""Layout boxes: labelloop against rapid_layout and raw ONNX Runtime (run by scripts/bench_layout.sh).

On the synthetic pages in data/layout-pages/ (scripts/render_layout_pages.py), with the same
model file (models/layout/model.onnx), the same ONNX Runtime version and the same total
intra-op threads (--threads) on every side:

  labelloop         wall clock of the whole `labelloop -q label --model layout PAGES.jsonl
                    --threads T --out FILE` process (ORT and model load, listing, decode,
                    resize, inference, decode of the boxes, NMS, JSON out).
  rapid_layout      wall clock of the whole `layout_peers.py pipeline --threads T` process:
                    rapid_layout's own pipeline page by page (Python start and imports included).
  raw ORT           session.run alone on pre-decoded, pre-resized tensors (`layout_peers.py raw`),
                    for each --raw-sessions value (1: one session of T threads; 2: two sessions
                    of T/2 threads from two Python threads); the best is the ceiling.

Runs alternate (labelloop, rapid_layout, raw ...) --runs times; medians are reported, with the
CPU seconds (user + system, all threads) per page of the same spans, which a busy machine
distorts less than the wall clock. Before
the timed runs, one untimed run of labelloop writes its boxes and scripts/layout_reference.py
writes rapid_layout's; both are scored by pycocotools (scripts/coco_eval.py) against the
ground truth. Targets from issue #22: mAP within 0.01 of rapid_layout's, >= 1.5x rapid_layout's
pages/s, >= 0.85x raw ORT's.

Writes bench-results/layout/{report.md, report.json, labelloop.jsonl, labelloop-dets.json,
reference.json} and prints the report. --skip-labelloop runs the Python sides alone.
"""
import argparse
import datetime
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from coco_eval import evaluate  # noqa: E402
from labelloop_to_coco import convert  # noqa: E402

PEERS = os.path.join(ROOT, "scripts", "bench", "layout_peers.py")
REFERENCE = os.path.join(ROOT, "scripts", "layout_reference.py")
SUMMARY = re.compile(r"labeled (\d+) of (\d+) items with .* in ([\d.]+)s \(([\d.]+) items/s\); (\d+) failed")


def log(msg):
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def rel(path):
    return os.path.relpath(path, ROOT)


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_labelloop(a, out):
    cmd = [a.bin, "-q", "label", "--model", a.model, a.pages, "--threads", str(a.threads),
           "--out", out, *a.labelloop_arg]
    c0, t0 = children_cpu(), time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t0, children_cpu() - c0
    m = SUMMARY.search(p.stderr)
    if p.returncode != 0 or not m:
        raise SystemExit(f"labelloop failed (exit {p.returncode}): {' '.join(cmd)}\n{p.stderr}")
    ok, total, failed = int(m[1]), int(m[2]), int(m[5])
    if failed or ok != total:
        log(f"WARNING: labelloop labeled {ok} of {total} pages, {failed} failed: {' '.join(cmd)}")
    return {"wall": wall, "cpu": cpu, "ok": ok, "total": total, "failed": failed, "self_seconds": float(m[3])}


def run_py(args):
    cmd = [sys.executable, *args]
    c0, t0 = children_cpu(), time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t0, children_cpu() - c0
    if p.returncode != 0:
        raise SystemExit(f"failed (exit {p.returncode}): {' '.join(cmd)}\n{p.stderr}")
    lines = p.stdout.strip().splitlines()
    res = json.loads(lines[-1]) if lines else {}
    res["wall"], res["process_cpu"] = wall, cpu
    return res


def run_pipeline(a):
    return run_py([PEERS, "pipeline", "--input", a.pages, "--threads", str(a.threads),
                   "--model", a.model_file])


def run_raw(a, sessions):
    return run_py([PEERS, "raw", "--input", a.pages, "--threads", str(a.threads), "--sessions",
                   str(sessions), "--repeat", "1", "--model", a.model_file])


def side(name, timed, pages, seconds, cpu=None, **extra):
    """Median wall seconds -> pages/s; cpu: CPU seconds (user + system, all threads) of the same spans."""
    med = statistics.median(seconds)
    rates = [pages / s for s in seconds]
    return {"side": name, "timed": timed, "pages": pages, "runs": len(seconds), "seconds": seconds,
            "median_seconds": med, "pages_per_s": pages / med, "min_pages_per_s": min(rates),
            "max_pages_per_s": max(rates), "cpu_seconds": cpu,
            "cpu_s_per_page": statistics.median(cpu) / pages if cpu else None, **extra}


def environment(a):
    def cmd(*c):
        try:
            return subprocess.run(c, cwd=ROOT, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    import onnxruntime
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host_cpu": cpu, "cores": os.cpu_count(), "loadavg_start": list(os.getloadavg()),
        "labelloop": "" if a.skip_labelloop else cmd(a.bin, "--version"), "labelloop_bin": a.bin,
        "git_commit": cmd("git", "rev-parse", "--short", "HEAD"),
        "git_dirty": bool(cmd("git", "status", "--porcelain", "--untracked-files=no")),
        "python": platform.python_version(), "onnxruntime_python": onnxruntime.__version__,
        "threads": a.threads, "runs": a.runs, "pages_input": rel(a.pages), "ground_truth": rel(a.gt),
    }


def fmt(x, nd=3):
    return "–" if x is None else f"{x:.{nd}f}"


def markdown(env, sides, ratios, acc):
    out = [f"# Layout boxes on synthetic pages: labelloop vs rapid_layout vs raw ONNX Runtime",
           "",
           f"{env['date']} · {env['host_cpu']} · {env['cores']} cores · load at start "
           f"{' '.join(f'{x:.2f}' for x in env['loadavg_start'])} · {env['threads']} intra-op threads "
           f"in total on every side · median of {env['runs']} alternating runs · ORT "
           f"{env['onnxruntime_python']} · git {env['git_commit']}{' (dirty)' if env['git_dirty'] else ''}",
           "",
           f"Pages: {env['pages_input']} (synthetic pages rendered by scripts/render_layout_pages.py; "
           f"real scans will differ).",
           "",
           "## Accuracy (pycocotools, boxes with score > 0.5)",
           "",
           "| side | mAP@0.5 | mAP@[.5:.95] | F1 (score ≥ 0.5, IoU ≥ 0.5) | precision | recall | boxes | pages all right |",
           "|---|---|---|---|---|---|---|---|"]
    for name, r in acc.items():
        if r is None:
            continue
        out.append(f"| {name} | {fmt(r['map50'])} | {fmt(r['map'])} | {fmt(r['f1'])} | {fmt(r['precision'])} | "
                   f"{fmt(r['recall'])} | {r['detections']} | {r['images_all_right']}/{r['images']} |")
    if acc.get("labelloop") and acc.get("rapid_layout"):
        d50 = acc["labelloop"]["map50"] - acc["rapid_layout"]["map50"]
        d = acc["labelloop"]["map"] - acc["rapid_layout"]["map"]
        ok = abs(d50) <= 0.01 and abs(d) <= 0.01
        out += ["", f"labelloop − rapid_layout: mAP@0.5 {d50:+.4f}, mAP@[.5:.95] {d:+.4f} "
                    f"(target: within 0.01 — {'met' if ok else 'NOT met'})"]
    ref = acc.get("rapid_layout")
    if ref:
        out += ["", "Per-class AP@0.5: " + ", ".join(
            f"{k} {v:.2f}" + (f" / {acc['labelloop']['per_class_ap50'].get(k, 0):.2f}" if acc.get("labelloop") else "")
            for k, v in ref["per_class_ap50"].items()) + (" (rapid_layout / labelloop)" if acc.get("labelloop") else "")]
    out += ["", "## Throughput (whole process unless stated)", "",
            "| side | timed | median pages/s | min–max pages/s | median s | median CPU-s per page |",
            "|---|---|---|---|---|---|"]
    for s in sides:
        out.append(f"| {s['side']} | {s['timed']} | {s['pages_per_s']:.2f} | {s['min_pages_per_s']:.2f}–"
                   f"{s['max_pages_per_s']:.2f} | {s['median_seconds']:.2f} | {fmt(s['cpu_s_per_page'])} |")
    if ratios:
        out += ["", "| ratio | value | target | met |", "|---|---|---|---|"]
        for r in ratios:
            out.append(f"| {r['ratio']} | {r['value']:.2f}× | {'≥ ' + format(r['target'], '.2f') + '×' if r['target'] else ''} | "
                       f"{'' if r['met'] is None else ('yes' if r['met'] else 'NO')} |")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bin", default="target/release/labelloop")
    ap.add_argument("--model", default="layout", help="labelloop --model (a name under models/ or a folder)")
    ap.add_argument("--pages", default="data/layout-pages/pages.jsonl")
    ap.add_argument("--gt", default="data/layout-pages/instances.json")
    ap.add_argument("--raw-sessions", default="1,2", help="comma-separated session counts for raw ORT")
    ap.add_argument("--labelloop-arg", action="append", default=[], help="extra argument for labelloop label")
    ap.add_argument("--skip-labelloop", action="store_true", help="run the Python sides only")
    ap.add_argument("--out-dir", default="bench-results/layout")
    a = ap.parse_args()
    if a.runs < 3:
        log(f"WARNING: --runs {a.runs}: medians of fewer than 3 runs are not the figures to report")
    a.bin = os.path.join(ROOT, a.bin) if not os.path.isabs(a.bin) else a.bin
    a.pages, a.gt = os.path.join(ROOT, a.pages), os.path.join(ROOT, a.gt)
    # As labelloop's registry::resolve: a folder holding model.toml, or any path with a '/', else models/NAME.
    direct = os.path.isfile(os.path.join(ROOT, a.model, "model.toml")) or "/" in a.model
    model_dir = a.model if direct else os.path.join("models", a.model)
    a.model_file = os.path.join(ROOT, model_dir, "model.onnx")
    out_dir = os.path.join(ROOT, a.out_dir)
    os.makedirs(out_dir, exist_ok=True)
    for need in (a.pages, a.gt, a.model_file):
        if not os.path.exists(need):
            raise SystemExit(f"{rel(need)} is missing: run scripts/setup.sh")
    if not a.skip_labelloop:
        if not os.path.exists(os.path.join(ROOT, model_dir, "model.toml")):
            raise SystemExit(f"{model_dir}/model.toml is missing (labelloop's manifest for the layout model)")
        if not os.access(a.bin, os.X_OK):
            raise SystemExit(f"{a.bin} is missing: cargo build --release")
    raw_sessions = [int(x) for x in a.raw_sessions.split(",") if x.strip()]
    env = environment(a)
    with open(a.gt) as f:
        gt = json.load(f)
    pages = len(gt["images"])

    # Untimed: the boxes of each side, for the accuracy check (and warm caches).
    acc = {"labelloop": None, "rapid_layout": None}
    ref_path = os.path.join(out_dir, "reference.json")
    log("rapid_layout reference boxes (untimed)")
    run_py([REFERENCE, a.gt, "-o", ref_path, "--model", a.model_file, "--threads", str(a.threads)])
    acc["rapid_layout"] = evaluate(a.gt, ref_path)
    if not a.skip_labelloop:
        ll_jsonl = os.path.join(out_dir, "labelloop.jsonl")
        ll_dets = os.path.join(out_dir, "labelloop-dets.json")
        log("labelloop boxes (untimed)")
        run_labelloop(a, ll_jsonl)
        with open(ll_jsonl) as f:
            dets, errors, missing = convert(gt, f)
        if errors or missing:
            log(f"WARNING: labelloop output: {len(errors)} error lines, {len(missing)} pages missing")
        with open(ll_dets, "w") as f:
            json.dump(dets, f)
        acc["labelloop"] = evaluate(a.gt, ll_dets)

    # Timed, alternating.
    ll_runs, py_runs, raw_runs = [], [], {s: [] for s in raw_sessions}
    for r in range(a.runs):
        msg = []
        if not a.skip_labelloop:
            ll_runs.append(run_labelloop(a, "/dev/null"))
            msg.append(f"labelloop {ll_runs[-1]['wall']:.2f}s")
        py_runs.append(run_pipeline(a))
        msg.append(f"rapid_layout {py_runs[-1]['wall']:.2f}s")
        for s in raw_sessions:
            raw_runs[s].append(run_raw(a, s))
            msg.append(f"raw ORT x{s} {raw_runs[s][-1]['pass_seconds'][0]:.2f}s")
        log(f"run {r + 1}/{a.runs}: " + ", ".join(msg))

    sides = []
    ll = py = None
    if ll_runs:
        ll = side("labelloop CLI", "process wall clock", pages, [x["wall"] for x in ll_runs],
                  cpu=[x["cpu"] for x in ll_runs],
                  self_reported_seconds=statistics.median(x["self_seconds"] for x in ll_runs))
        sides.append(ll)
    py = side("rapid_layout 1.2.1 pipeline", "process wall clock", pages, [x["wall"] for x in py_runs],
              cpu=[x["process_cpu"] for x in py_runs],
              in_process_seconds=statistics.median(x["seconds"] for x in py_runs))
    sides.append(py)
    sides.append(side("rapid_layout 1.2.1 pipeline", "in process, after imports and session creation", pages,
                      [x["seconds"] for x in py_runs], cpu=[x["cpu_seconds"] for x in py_runs]))
    raws = []
    for s in raw_sessions:
        raws.append(side(f"raw ORT session.run, {s} session(s)", "session.run on prepared tensors", pages,
                         [x["pass_seconds"][0] for x in raw_runs[s]],
                         cpu=[x["pass_cpu_seconds"][0] for x in raw_runs[s]], sessions=s))
    sides += raws
    best_raw = max(raws, key=lambda s: s["pages_per_s"]) if raws else None
    ratios = []
    if ll:
        ratios.append({"ratio": "labelloop / rapid_layout (whole process)", "value": ll["pages_per_s"] / py["pages_per_s"],
                       "target": 1.5, "met": ll["pages_per_s"] / py["pages_per_s"] >= 1.5})
        if best_raw:
            v = ll["pages_per_s"] / best_raw["pages_per_s"]
            ratios.append({"ratio": f"labelloop / best raw ORT ({best_raw['sessions']} session(s))", "value": v,
                           "target": 0.85, "met": v >= 0.85})
    if best_raw:
        ratios.append({"ratio": "rapid_layout / best raw ORT", "value": py["pages_per_s"] / best_raw["pages_per_s"],
                       "target": None, "met": None})
    env["loadavg_end"] = list(os.getloadavg())
    report = {"environment": env, "accuracy": acc, "sides": sides, "ratios": ratios}
    with open(os.path.join(out_dir, "report.json"), "w") as f:
        json.dump(report, f, indent=1)
    md = markdown(env, sides, ratios, acc)
    md += f"\nLoad average at the end: {' '.join(f'{x:.2f}' for x in env['loadavg_end'])}.\n"
    with open(os.path.join(out_dir, "report.md"), "w") as f:
        f.write(md)
    print(md)


if __name__ == "__main__":
    main()
