#!/usr/bin/env python3
"""bench_bindings (Python part): one small module call from Python, nnmod vs
PyTorch, in the same run (bench/bench_bindings.sh does C, Rust and Go).

    NNMOD_LIBRARY=build/lib/libnnmod.so /usr/bin/python3 bench/bench_bindings.py \\
        [--iters N] [--reps R] [--rounds K]

Modules as bench_bindings.sh's: ReLU, and Linear(16, 16), on a [4, 16]
input, called as module(x) from Python, the output dropped; with grad mode
off (no_grad in both) and on (the default in both). nnmod and PyTorch
alternate round by round so that load from elsewhere hits both alike. Each
figure is ns per call: "value" is process CPU time (a loaded machine
deschedules the process, and CPU time does not count that), "wall" the
elapsed time; medians over reps x rounds. PyTorch is optional (one intra-op
thread; without it only nnmod's lines are printed). One JSON object a line:
per module, mode and framework, then the ratios nnmod / PyTorch (target < 1).
"""
import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "bindings", "python"))
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

import nnmod  # noqa: E402


def per_call(fn, iters, reps):
    fn()
    cpu, wall = [], []
    for _ in range(reps):
        c0, w0 = time.process_time_ns(), time.perf_counter_ns()
        for _ in range(iters):
            fn()
        cpu.append((time.process_time_ns() - c0) / iters)
        wall.append((time.perf_counter_ns() - w0) / iters)
    return cpu, wall


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=5000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    try:
        import torch
        torch.set_num_threads(1)
    except ImportError:
        torch = None

    x_np = np.random.default_rng(0).standard_normal((4, 16)).astype(np.float32)
    x = nnmod.tensor(x_np)
    mods = {"relu": nnmod.create("relu"),
            "linear": nnmod.create("linear", in_features=16, out_features=16)}
    tmods, tx = {}, None
    if torch is not None:
        tmods = {"relu": torch.nn.ReLU(), "linear": torch.nn.Linear(16, 16)}
        tx = torch.from_numpy(x_np)

    res = {}  # (framework, module, mode) -> ([cpu], [wall])
    for _ in range(a.rounds):
        for name in mods:
            for mode in ("no_grad", "grad"):
                m = mods[name]
                with nnmod.set_grad_enabled(mode == "grad"):
                    c, w = per_call(lambda: m(x), a.iters, a.reps)
                r = res.setdefault(("nnmod", name, mode), ([], []))
                r[0].extend(c)
                r[1].extend(w)
                if torch is not None:
                    tm = tmods[name]
                    with torch.set_grad_enabled(mode == "grad"):
                        c, w = per_call(lambda: tm(tx), a.iters, a.reps)
                    r = res.setdefault(("torch", name, mode), ([], []))
                    r[0].extend(c)
                    r[1].extend(w)
    common = {"unit": "ns", "input": [4, 16], "iters": a.iters, "reps": a.reps,
              "rounds": a.rounds, "stat": "median", "loadavg": os.getloadavg()[0]}
    med = {k: (statistics.median(v[0]), statistics.median(v[1])) for k, v in res.items()}
    for (fw, name, mode), (c, w) in med.items():
        extra = {"torch_version": torch.__version__} if fw == "torch" else {}
        print(json.dumps({"bench": f"python_call_{fw}_{name}_{mode}", "value": round(c, 1),
                          "wall": round(w, 1), "module": name, "grad": mode == "grad",
                          **extra, **common}))
    if torch is not None:
        for name in mods:
            for mode in ("no_grad", "grad"):
                n, t = med[("nnmod", name, mode)], med[("torch", name, mode)]
                print(json.dumps({"bench": f"python_call_nnmod_vs_torch_{name}_{mode}",
                                  "value": round(n[0] / t[0], 3), "wall": round(n[1] / t[1], 3),
                                  "unit": "ratio", "target": "< 1", "module": name,
                                  "grad": mode == "grad"}))


if __name__ == "__main__":
    main()
