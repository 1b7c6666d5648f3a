#!/usr/bin/env python3
"""The PyTorch side of bench_call, for quoting the two in one run.

Run with Debian's torch: OPENBLAS_NUM_THREADS=1 /usr/bin/python3 bench/bench_call_torch.py
Prints JSON lines like bench_call: an identity module call, relu(x), and a
50-deep Sequential(Linear(16,16), ReLU) at batch 1 under no_grad and with
grad mode on, medians of 15 repetitions.
"""
import json
import statistics
import time

import torch

torch.set_num_threads(1)


def per_call(fn, iters, reps=15):
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        times.append((time.perf_counter() - t0) / iters)
    return statistics.median(times)


def main():
    x = torch.zeros(1, 16)
    ident = torch.nn.Identity()
    seq = torch.nn.Sequential(*[m for _ in range(50) for m in (torch.nn.Linear(16, 16), torch.nn.ReLU())])
    with torch.no_grad():
        out = [
            ("torch_identity_module_call", per_call(lambda: ident(x), 200000) * 1e9, "ns/call"),
            ("torch_relu_call", per_call(lambda: torch.relu(x), 200000) * 1e9, "ns/call"),
            ("torch_seq50_linear16_relu", per_call(lambda: seq(x), 2000) * 1e6, "us/forward"),
        ]
    for name, value, unit in out:
        print(json.dumps({"bench": name, "value": round(value, 3), "unit": unit,
                          "torch": torch.__version__, "grad": False}))
    # grad mode on (the parameters require grad, so every Linear records a node)
    value = per_call(lambda: seq(x), 2000) * 1e6
    print(json.dumps({"bench": "torch_seq50_linear16_relu_grad", "value": round(value, 3),
                      "unit": "us/forward", "torch": torch.__version__, "grad": True}))


if __name__ == "__main__":
    main()
