"""Does ONNX Runtime lose throughput when two sessions run in one process?

Runs the Fashion-MNIST CNN at batch 64 on one-thread sessions: one alone, two
on two threads of this process (onnxruntime releases the GIL in run), and two
in two processes; prints batches per second. Used to rule ORT in or out when
labelloop's 64-task /labelstudio predict loses throughput at 2 connections.

    .venv-bench/bin/python scripts/bench/ort_in_process.py [seconds]
"""
import multiprocessing as mp
import os
import sys
import threading
import time

import numpy as np
import onnxruntime as ort

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = os.path.join(ROOT, "models", "fashion-mnist-cnn", "model.onnx")
SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0


def session():
    o = ort.SessionOptions()
    o.intra_op_num_threads = 1
    o.inter_op_num_threads = 1
    return ort.InferenceSession(MODEL, o, providers=["CPUExecutionProvider"])


def batch(s):
    inp = s.get_inputs()[0]
    shape = [64 if (d is None or isinstance(d, str)) else d for d in inp.shape]
    return inp.name, np.random.default_rng(0).random(shape, dtype=np.float32)


def loop(s, out):
    name, x = batch(s)
    n, t = 0, time.monotonic()
    while time.monotonic() - t < SECONDS:
        s.run(None, {name: x})
        n += 1
    out.append(n / SECONDS)


def in_process(q):
    r = []
    loop(session(), r)
    q.put(r[0])


def main():
    r = []
    loop(session(), r)
    print(f"one session alone: {r[0]:,.0f} batches/s")
    r = []
    threads = [threading.Thread(target=loop, args=(session(), r)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(f"two sessions, one process: {sum(r):,.0f} batches/s ({', '.join(f'{x:,.0f}' for x in r)})")
    q = mp.Queue()
    procs = [mp.Process(target=in_process, args=(q,)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    r = [q.get(), q.get()]
    print(f"two processes: {sum(r):,.0f} batches/s ({', '.join(f'{x:,.0f}' for x in r)})")


if __name__ == "__main__":
    main()
