#!/usr/bin/env python3
"""The PyTorch side of bench_layers, for quoting the two in one run.

Run with Debian's torch, one thread:
    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 /usr/bin/python3 bench/bench_layers_torch.py [REPS]
Prints JSON lines like bench_layers: conv2d 3x3, 64 -> 64 channels, 56 x 56,
padding 1, batch 8 and 32; forward (no_grad) and forward + backward (grads of
input, weight and bias); max_pool2d 2x2 on [64, 16, 28, 28], forward and
forward + backward; batch_norm2d (train mode) on [64, 16, 28, 28] and
[64, 32, 14, 14], forward and forward + backward (grads of input, weight and
bias); medians of REPS repetitions after a warm-up.
"""
import json
import statistics
import sys
import time

import torch

torch.set_num_threads(1)
C_IN, C_OUT, HW, K = 64, 64, 56, 3


def flops(batch):
    return 2.0 * batch * C_OUT * HW * HW * C_IN * K * K


def timed(fn, reps):
    fn()  # warm-up
    t = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        t.append(time.perf_counter() - t0)
    return statistics.median(t)


def emit(name, value, unit, batch, **extra):
    d = {"bench": name, "value": round(value, 4), "unit": unit, "batch": batch, "threads": 1,
         "torch": torch.__version__}
    d.update({k: round(v, 4) for k, v in extra.items()})
    print(json.dumps(d), flush=True)


def main():
    reps = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    conv = torch.nn.Conv2d(C_IN, C_OUT, K, padding=1)
    for batch in (8, 32):
        r = reps if batch == 8 else (reps + 1) // 2
        x = torch.randn(batch, C_IN, HW, HW)
        with torch.no_grad():
            fwd = timed(lambda: conv(x), r)
        emit("torch_conv2d_fwd_b%d" % batch, fwd * 1e3, "ms", batch, gflops=flops(batch) / fwd / 1e9)
        xg = x.clone().requires_grad_(True)
        g = torch.randn(batch, C_OUT, HW, HW) * 0.01

        def step():
            conv.zero_grad()
            xg.grad = None
            conv(xg).backward(g)

        fb = timed(step, r)
        emit("torch_conv2d_fwd_bwd_b%d" % batch, fb * 1e3, "ms", batch, gflops=3 * flops(batch) / fb / 1e9)
    bench_max_pool(reps)
    bench_batch_norm(reps, 16, 28)
    bench_batch_norm(reps, 32, 14)


def bench_max_pool(reps):
    b, c, s = 64, 16, 28
    pool = torch.nn.MaxPool2d(2)
    x = torch.randn(b, c, s, s)
    with torch.no_grad():
        fwd = timed(lambda: pool(x), 2 * reps)
    emit("torch_max_pool2d_fwd_b64", fwd * 1e3, "ms", b, gbs=4.0 * b * c * s * s * 1.25 / fwd / 1e9)
    xg = x.clone().requires_grad_(True)
    g = torch.randn(b, c, s // 2, s // 2) * 0.01

    def step():
        xg.grad = None
        pool(xg).backward(g)

    emit("torch_max_pool2d_fwd_bwd_b64", timed(step, 2 * reps) * 1e3, "ms", b)


def bench_batch_norm(reps, c, s):
    b = 64
    bn = torch.nn.BatchNorm2d(c)  # train mode: batch statistics, running ones updated
    x = torch.randn(b, c, s, s)
    with torch.no_grad():
        fwd = timed(lambda: bn(x), 2 * reps)
    emit("torch_batch_norm2d_fwd_b64_c%d" % c, fwd * 1e3, "ms", b, gbs=4.0 * b * c * s * s * 2 / fwd / 1e9)
    xg = x.clone().requires_grad_(True)
    g = torch.randn(b, c, s, s) * 0.01

    def step():
        bn.zero_grad()
        xg.grad = None
        bn(xg).backward(g)

    emit("torch_batch_norm2d_fwd_bwd_b64_c%d" % c, timed(step, 2 * reps) * 1e3, "ms", b)


if __name__ == "__main__":
    main()
