#!/usr/bin/env python3
"""Build "calls" from real speech prompts for measuring voice activity (#24).

A synthetic arrangement of real sounds: each call strings together 4-8 of
the 553 Asterisk studio prompts (Allison Smith, Digium; CC-BY-SA-3.0;
`scripts/setup.sh` puts them in data/asterisk/), single phrases only (see
`prompts`), with a gap before, between
and after them. The gaps hold, per condition:

  clean     digital silence
  noise0    white noise at 0 dB: the same RMS as the call's speech
  music-6   music on hold (asterisk-moh-opsound-wav), RMS 6 dB below the speech
  music0    the same music at the speech's RMS

The speech RMS is measured over each prompt's true extent, so the levels are
per call. Gap content fades in and out over 10 ms. The same seed gives every
condition the same prompts, order and gaps: only what fills the gaps changes.

Ground truth: each prompt's extent trimmed where it falls 40 dB below its
own peak (first and last sample with |x| >= peak / 100), in seconds.

Writes OUT/<condition>/<id>.wav (8 kHz, 16-bit mono, as the prompts are),
OUT/<condition>/calls.jsonl ({"id", "audio"}: what `labelloop label` reads)
and OUT/<condition>/truth.jsonl ({"id", "audio", "duration", "segments":
[[s, e], ...]}: what `labelloop simulate --segments` reads).

Needs numpy only (the wave module reads and writes the files).
"""

import argparse
import gzip
import json
import os
import re
import wave

import numpy as np

RATE = 8000
CONDITIONS = [("clean", None, None), ("noise0", "noise", 0.0), ("music-6", "music", -6.0), ("music0", "music", 0.0)]


def read_wav(path):
    with wave.open(path, "rb") as w:
        assert w.getframerate() == RATE and w.getnchannels() == 1 and w.getsampwidth() == 2, path
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64) / 32768.0


def write_wav(path, x):
    pcm = np.clip(np.round(x * 32768.0), -32768, 32767).astype("<i2")
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm.tobytes())


def extent(x):
    """First and last sample at or above 40 dB below the peak."""
    a = np.abs(x)
    hot = np.nonzero(a >= a.max() / 100.0)[0]
    return int(hot[0]), int(hot[-1]) + 1


def prompts(root):
    """Single spoken phrases: prompts whose transcript is speech (not the
    bracketed tones and beeps) with no punctuation inside it (one phrase,
    no sentence or clause break), at most 3 s long once trimmed. A prompt
    of several sentences pauses between them, and any VAD rightly cuts it
    into several segments where the ground truth has one extent."""
    with gzip.open(os.path.join(root, "core-sounds-en.txt.gz"), "rt", encoding="utf-8", errors="replace") as f:
        spoken = set()
        for line in f:
            if line.startswith(";") or ":" not in line:
                continue
            name, text = line.split(":", 1)
            text = text.strip()
            inner = re.sub(r"[.!?]+$", "", text)
            if text and not text.startswith("[") and not re.search(r"[.,;:!?]", inner):
                spoken.add(name.strip())
    found = []
    sounds = os.path.join(root, "sounds")
    for dirpath, _, files in os.walk(sounds):
        for f in files:
            rel = os.path.relpath(os.path.join(dirpath, f), sounds)
            if f.endswith(".wav") and rel[:-4] in spoken:
                s, e = extent(read_wav(os.path.join(sounds, rel)))
                if e - s <= 3 * RATE:
                    found.append(rel)
    return sorted(found)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--asterisk", default="data/asterisk")
    ap.add_argument("--out", default="data/vad-calls")
    ap.add_argument("--calls", type=int, default=40)
    ap.add_argument("--seed", type=int, default=24)
    ap.add_argument("--conditions", default=",".join(c[0] for c in CONDITIONS),
                    help="comma-separated subset of " + ", ".join(c[0] for c in CONDITIONS))
    args = ap.parse_args()
    wanted = args.conditions.split(",")
    unknown = [c for c in wanted if c not in [k[0] for k in CONDITIONS]]
    if unknown:
        ap.error(f"unknown condition(s) {unknown}")
    rng = np.random.default_rng(args.seed)
    names = prompts(args.asterisk)
    music = np.concatenate([read_wav(os.path.join(args.asterisk, "moh", f))
                            for f in sorted(os.listdir(os.path.join(args.asterisk, "moh"))) if f.endswith(".wav")])
    print(f"{len(names)} spoken prompts, {len(music) / RATE / 60:.1f} min of music")
    fade = int(0.010 * RATE)
    plans = []
    for c in range(args.calls):
        picks = rng.choice(len(names), size=int(rng.integers(4, 9)), replace=False)
        parts, gaps = [], [rng.uniform(0.3, 1.5)]
        for p in picks:
            x = read_wav(os.path.join(args.asterisk, "sounds", names[p]))
            s, e = extent(x)
            parts.append((names[p], x, s, e))
            gaps.append(rng.uniform(0.4, 3.0))
        plans.append((f"call-{c:03d}", parts, gaps, int(rng.integers(0, len(music))), int(rng.integers(1 << 31))))
    for cond, kind, level_db in [c for c in CONDITIONS if c[0] in wanted]:
        out = os.path.join(args.out, cond)
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "calls.jsonl"), "w") as calls, open(os.path.join(out, "truth.jsonl"), "w") as truth:
            for cid, parts, gaps, music_at, noise_seed in plans:
                speech = np.concatenate([x[s:e] for _, x, s, e in parts])
                speech_rms = float(np.sqrt(np.mean(speech ** 2)))
                pieces, segs, t = [], [], 0
                noise_rng = np.random.default_rng(noise_seed)
                m = music_at

                def gap(seconds):
                    nonlocal m
                    n = int(round(seconds * RATE))
                    if kind is None:
                        return np.zeros(n)
                    if kind == "noise":
                        g = noise_rng.standard_normal(n)
                    else:
                        idx = (m + np.arange(n)) % len(music)
                        m = (m + n) % len(music)
                        g = music[idx].copy()
                    rms = float(np.sqrt(np.mean(g ** 2))) or 1.0
                    g *= speech_rms * 10 ** (level_db / 20) / rms
                    ramp = np.minimum(1.0, np.minimum(np.arange(n) + 1, n - np.arange(n)) / fade)
                    return g * ramp

                for i, (name, x, s, e) in enumerate(parts):
                    g = gap(gaps[i])
                    pieces.append(g)
                    t += len(g)
                    pieces.append(x)
                    segs.append([(t + s) / RATE, (t + e) / RATE])
                    t += len(x)
                pieces.append(gap(gaps[-1]))
                y = np.concatenate(pieces)
                peak = np.abs(y).max()
                if peak > 0.99:
                    y *= 0.99 / peak
                path = os.path.join(out, cid + ".wav")
                write_wav(path, y)
                calls.write(json.dumps({"id": cid, "audio": os.path.abspath(path)}) + "\n")
                truth.write(json.dumps({"id": cid, "audio": os.path.abspath(path),
                                        "duration": len(y) / RATE, "segments": segs,
                                        "prompts": [p[0] for p in parts]}) + "\n")
        print(f"{cond}: {len(plans)} calls in {out}")


if __name__ == "__main__":
    main()
