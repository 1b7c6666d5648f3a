#!/usr/bin/env python3
"""bench_bindings (Python part): one small module call from Python, nnmod vs
PyTorch, in the same run. One JSON object per line.

    NNMOD_LIBRARY=build/lib/libnnmod.so PYTHONPATH=bindings/python \\
        /usr/bin/python3 bench/bench_bindings.py [--calls N] [--repeats R]

The module is Linear(4, 8) on a [2, 4] input, called as module(x) with grad
mode on (the default in both) and under no_grad. Each figure is the median
over R repeats of N calls, in ns per call. PyTorch is optional: without it
only nnmod's lines are printed.
"""
import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "bindings", "python"))

import numpy as np  # noqa: E402

import nnmod  # noqa: E402


def per_call_ns(fn, calls, repeats):
    fn()
    res = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        for _ in range(calls):
            fn()
        res.append((time.perf_counter_ns() - t0) / calls)
    return statistics.median(res)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=7)
    a = ap.parse_args()

    x_np = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    m = nnmod.create("linear", in_features=4, out_features=8)
    x = nnmod.tensor(x_np)
    common = {"unit": "ns", "module": "linear(4, 8)", "input": [2, 4], "calls": a.calls,
              "repeats": a.repeats, "stat": "median"}
    rows = {}
    rows["nnmod_grad"] = per_call_ns(lambda: m(x), a.calls, a.repeats)
    with nnmod.no_grad():
        rows["nnmod_no_grad"] = per_call_ns(lambda: m(x), a.calls, a.repeats)
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        torch.set_num_threads(1)
        tm = torch.nn.Linear(4, 8)
        tx = torch.from_numpy(x_np)
        rows["torch_grad"] = per_call_ns(lambda: tm(tx), a.calls, a.repeats)
        with torch.no_grad():
            rows["torch_no_grad"] = per_call_ns(lambda: tm(tx), a.calls, a.repeats)
    for mode in ("grad", "no_grad"):
        print(json.dumps({"bench": f"python_call_nnmod_{mode}", "value": round(rows[f"nnmod_{mode}"], 1),
                          **common}))
        if torch is not None:
            print(json.dumps({"bench": f"python_call_torch_{mode}",
                              "value": round(rows[f"torch_{mode}"], 1),
                              "torch_version": torch.__version__, **common}))
            print(json.dumps({"bench": f"python_call_ratio_{mode}",
                              "value": round(rows[f"nnmod_{mode}"] / rows[f"torch_{mode}"], 3),
                              "unit": "nnmod/torch", "module": "linear(4, 8)"}))


if __name__ == "__main__":
    main()
