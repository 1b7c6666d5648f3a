#!/usr/bin/env python3
"""bench_conv_slot_torch: bench_conv_slot's geometries timed with PyTorch's
F.conv2d (oneDNN on this build), one thread, the same JSON lines; with
--nnmod PATH it also runs bench_conv_slot (the cpu backend's conv slot)
geometry by geometry, alternating, and prints the ratio nnmod / PyTorch.

    /usr/bin/python3 bench/bench_conv_slot_torch.py [--reps R]
        [--nnmod build/bin/bench_conv_slot] [GEOMETRY ...]
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def default_geometries():
    src = open(os.path.join(HERE, "bench_conv_slot.c")).read()
    block = src.split("k_default[] = {", 1)[1].split("};", 1)[0]
    return re.findall(r'"([0-9,]+)"', block)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--nnmod", default="")
    ap.add_argument("geometries", nargs="*")
    a = ap.parse_args()
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(1)
    for spec in a.geometries or default_geometries():
        n, ci, co, h, w, k, s, p, g = (int(v) for v in spec.split(","))
        x = torch.randn(n, ci, h, w)
        wt = torch.randn(co, ci // g, k, k)
        b = torch.randn(co)
        with torch.no_grad():
            F.conv2d(x, wt, b, s, p, 1, g)
            t = []
            for _ in range(a.reps):
                c0 = time.process_time()
                F.conv2d(x, wt, b, s, p, 1, g)
                t.append(time.process_time() - c0)
        tm = statistics.median(t) * 1e3
        macs = n * co * ((h + 2 * p - k) // s + 1) * ((w + 2 * p - k) // s + 1) * (ci // g) * k * k
        line = {"bench": "conv_torch", "geometry": spec, "value": round(tm, 4), "unit": "ms",
                "gflops": round(2 * macs / tm * 1e-6, 1)}
        if a.nnmod:
            out = subprocess.run([a.nnmod, str(a.reps), spec], capture_output=True, text=True,
                                 check=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            line["nnmod"] = r["value"]
            line["nnmod_gflops"] = r.get("gflops", 0)
            line["ratio"] = round(r["value"] / tm, 3) if r["unit"] == "ms" else None
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
