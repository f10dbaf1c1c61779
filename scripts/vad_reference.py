#!/usr/bin/env python3
"""The Python reference for voice activity (#24): silero-vad 6.2.3's
`get_speech_timestamps` on the same calls, without torch.

silero's own function needs torch (a 5.8 GB install we do not make). Its
two halves are taken apart here:

- the model loop is `OnnxWrapper.__call__` and the loop of
  `get_speech_timestamps` in numpy + onnxruntime, line for line: batch 1, one
  intra-op and one inter-op thread (as OnnxWrapper sets), 512-sample windows
  at 16 kHz with the previous call's last 64 samples in front (zeros first),
  the last window zero-padded;
- the post-processing is silero's own `get_speech_timestamps_from_probs`,
  read out of `silero_vad/utils_vad.py` inside the wheel and run as is
  (defaults: threshold 0.5, neg threshold 0.35, min speech 250 ms, min
  silence 100 ms, pad 30 ms).

8 kHz recordings are resampled to 16 kHz with scipy's polyphase
`resample_poly` (labelloop uses rubato's FFT resampler: the two differ in
the last bits, which is part of what the comparison measures).

Writes the same JSONL as `labelloop label --model vad`.
"""

import argparse
import ast
import json
import sys
import time
import typing
import warnings
import wave
import zipfile
from math import gcd

import numpy as np
import onnxruntime
from scipy.signal import resample_poly

RATE = 16000
WINDOW, CONTEXT = 512, 64


def silero_postprocess(wheel):
    """`get_speech_timestamps_from_probs`, compiled from the wheel's source."""
    with zipfile.ZipFile(wheel) as z:
        src = z.read("silero_vad/utils_vad.py").decode()
    tree = ast.parse(src)
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "get_speech_timestamps_from_probs")
    scope = {"List": typing.List, "Callable": typing.Callable, "warnings": warnings,
             "make_visualization": lambda *a, **k: None}
    exec(compile(ast.Module(body=[fn], type_ignores=[]), "utils_vad.py", "exec"), scope)
    return scope["get_speech_timestamps_from_probs"]


def read(path):
    with wave.open(path, "rb") as w:
        rate, ch, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
        assert width == 2, path
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
    x = x.reshape(-1, ch).mean(axis=1)
    if rate != RATE:
        g = gcd(rate, RATE)
        x = resample_poly(x, RATE // g, rate // g).astype(np.float32)
    return x


def probs(session, x):
    state = np.zeros((2, 1, 128), dtype=np.float32)
    context = np.zeros((1, CONTEXT), dtype=np.float32)
    sr = np.array(RATE, dtype=np.int64)
    out = []
    for start in range(0, len(x), WINDOW):
        chunk = x[start:start + WINDOW]
        if len(chunk) < WINDOW:
            chunk = np.pad(chunk, (0, WINDOW - len(chunk)))
        inp = np.concatenate([context, chunk[None, :]], axis=1)
        p, state = session.run(None, {"input": inp, "state": state, "sr": sr})
        context = inp[:, -CONTEXT:]
        out.append(float(p[0, 0]))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("calls", nargs="+", help="JSONL files of {id, audio}")
    ap.add_argument("--model", default="models/vad/model.onnx")
    ap.add_argument("--wheel", required=True, help="silero_vad-6.2.3-py3-none-any.whl")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    t0 = time.perf_counter()
    post = silero_postprocess(args.wheel)
    opts = onnxruntime.SessionOptions()
    opts.inter_op_num_threads = 1
    opts.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(args.model, providers=["CPUExecutionProvider"], sess_options=opts)
    seconds = 0.0
    with open(args.out, "w") as out:
        for path in args.calls:
            for line in open(path):
                item = json.loads(line)
                x = read(item["audio"])
                p = probs(session, x)
                speeches = post(p, sampling_rate=RATE, audio_length_samples=len(x))
                segs = []
                for s in speeches:
                    a, b = s["start"], s["end"]
                    fr = p[-(-a // WINDOW):max(-(-b // WINDOW), -(-a // WINDOW) + 1)]
                    segs.append({"label": "Speech", "start": a / RATE, "end": b / RATE,
                                 "score": float(np.mean(fr)) if fr else 0.0})
                seconds += len(x) / RATE
                out.write(json.dumps({"id": item["id"], "duration": len(x) / RATE, "segments": segs,
                                      "model": "silero-vad-python", "model_version": "6.2.3"}) + "\n")
    took = time.perf_counter() - t0
    print(f"reference: {seconds:.1f} s of audio in {took:.2f} s ({seconds / took:.1f} s/s)", file=sys.stderr)


if __name__ == "__main__":
    main()
