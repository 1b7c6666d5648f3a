#!/usr/bin/env python3
"""The PyTorch twin of bench/bench_gpu.c: the same models, shapes, steps and
timing on the same device, each line named as bench_gpu's with "_torch"
appended. bench/bench_gpu.sh runs both and prints the ratios.

    python3 bench/bench_gpu_torch.py [--device cuda:N|cpu] [--reps N] [--warmup N]
                                     [--max-s S] [--batch N] [--only call|resnet|transformer]

Eager PyTorch with its defaults (torch.backends.cudnn.benchmark False; TF32
as the installed version sets it: both flags are printed on the first line).
Timing: the host clock around each repetition, torch.cuda.synchronize()
before each reading; the median of REPS after WARMUP untimed repetitions.
Without a usable CUDA device (and --device cuda) prints a skip line, exits 0.
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda:0")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--max-s", type=float, default=20.0)
    ap.add_argument("--batch", type=int, default=0)
    ap.add_argument("--only", default=None)
    a = ap.parse_args()
    dev = torch.device(a.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        print(json.dumps({"bench": "gpu_torch", "skipped": "torch.cuda.is_available() is False "
                          "(torch %s)" % torch.__version__}))
        return
    cuda = dev.type == "cuda"
    rbatch = a.batch or 64
    tbatch = a.batch or 32
    name = torch.cuda.get_device_name(dev) if cuda else "cpu"
    print(json.dumps({"bench": "gpu_torch_env", "torch": torch.__version__, "device": str(dev),
                      "device_name": name,
                      "cudnn_benchmark": torch.backends.cudnn.benchmark,
                      "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
                      "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32}), flush=True)

    def sync():
        if cuda:
            torch.cuda.synchronize(dev)

    def time_steps(step):
        start = time.perf_counter()
        for i in range(a.warmup):
            if i and time.perf_counter() - start > a.max_s:
                break
            step()
        sync()
        t, start = [], time.perf_counter()
        while len(t) < a.reps:
            t0 = time.perf_counter()
            step()
            sync()
            t.append(time.perf_counter() - t0)
            if time.perf_counter() - start > a.max_s:
                break
        return statistics.median(t), len(t)

    def emit(bench, value, unit, reps, **extra):
        d = {"bench": bench + "_torch", "value": float("%.4g" % value), "unit": unit, "reps": reps,
             "device": str(dev)}
        d.update(extra)
        print(json.dumps(d), flush=True)

    torch.manual_seed(0)
    if a.only in (None, "call"):
        seq = torch.nn.Sequential(*[m for _ in range(50)
                                    for m in (torch.nn.Linear(16, 16), torch.nn.ReLU())]).to(dev)
        x = torch.rand(1, 16, device=dev) * 2 - 1
        iters = 200

        def calls():
            for _ in range(iters):
                seq(x)
        with torch.no_grad():
            s, n = time_steps(calls)
        emit("gpu_call_seq50_no_grad", 1e6 * s / iters / 101, "us/module", n, modules=101,
             forwards=iters, us_per_forward=round(1e6 * s / iters, 2))
        s, n = time_steps(calls)
        emit("gpu_call_seq50_grad", 1e6 * s / iters / 101, "us/module", n, modules=101,
             forwards=iters, us_per_forward=round(1e6 * s / iters, 2))
        del seq, x

    def run_model(m, x, loss_fn, bench, **extra):
        m.train()

        def fwd_bwd():
            m.zero_grad(set_to_none=True)
            loss_fn(m(x)).backward()
        s, n = time_steps(fwd_bwd)
        emit(bench + "_fwd_bwd", 1e3 * s, "ms", n, **extra)
        m.eval()
        with torch.no_grad():
            s, n = time_steps(lambda: m(x))
        emit(bench + "_fwd", 1e3 * s, "ms", n, **extra)

    if a.only in (None, "transformer"):
        m = torch.nn.TransformerEncoderLayer(512, 8, 2048, dropout=0.1).to(dev)
        x = torch.rand(256, tbatch, 512, device=dev) * 2 - 1
        g = (torch.rand(256, tbatch, 512, device=dev) * 2 - 1) * 0.01
        run_model(m, x, lambda y: (y * g).sum(), "gpu_transformer_encoder_layer", d_model=512,
                  nhead=8, dim_feedforward=2048, seq=256, batch=tbatch)
        del m, x, g

    if a.only in (None, "resnet"):
        try:
            import torchvision
        except ImportError:
            print(json.dumps({"bench": "gpu_resnet50_torch", "skipped": "no torchvision"}))
            return
        m = torchvision.models.resnet50().to(dev)
        x = torch.rand(rbatch, 3, 224, 224, device=dev) * 2 - 1
        y = torch.randint(0, 1000, (rbatch,), device=dev)
        run_model(m, x, lambda out: F.cross_entropy(out, y), "gpu_resnet50", batch=rbatch,
                  image=224)
        if cuda:
            print(json.dumps({"bench": "gpu_memory_torch", "value": round(
                torch.cuda.max_memory_allocated(dev) / 1048576.0, 1), "unit": "MiB",
                "cases": "resnet", "note": "torch.cuda.max_memory_allocated"}))


if __name__ == "__main__":
    main()
