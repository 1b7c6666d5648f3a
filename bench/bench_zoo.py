#!/usr/bin/env python3
"""bench_zoo: torchvision's classification zoo, exported with
nnmod.torch.export, timed against PyTorch 1.13 in the same run.

    NNMOD_LIBRARY=build/lib/libnnmod.so /usr/bin/python3 bench/bench_zoo.py \\
        [--models a,b,c | --all] [--side N] [--reps R] [--rounds K]

For every model that exports: single-image (batch 1) and batch-8 inference,
eval mode, gradients off, one thread on each side (OpenBLAS and PyTorch's
intra-op), random weights, the same input for both. nnmod and PyTorch
alternate round by round so that load from elsewhere hits both alike. Each
figure is ms per forward: "value" is process CPU time (CPU time does not
count being descheduled on a shared machine), "wall" the elapsed time;
medians over reps x rounds. One JSON object a line: per model and batch, each
framework, then the ratio nnmod / PyTorch; at the end the geometric mean of
the ratios per batch (the figure; target <= 0.8, no model above 1.0) and the
models that did not export with why (the first line of the exporter's
report). Input side: --side (default 224, the zoo's native; inception_v3
takes at least 75, vit models are built with image_size=side).
"""
import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "bindings", "python"))
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

DEFAULT = ["alexnet", "vgg11_bn", "resnet18", "resnet50", "resnext50_32x4d", "wide_resnet50_2",
           "squeezenet1_1", "densenet121", "googlenet", "inception_v3", "mobilenet_v2",
           "mobilenet_v3_small", "mobilenet_v3_large", "mnasnet1_0", "shufflenet_v2_x1_0",
           "efficientnet_b0", "efficientnet_v2_s", "regnet_x_400mf", "regnet_y_400mf",
           "convnext_tiny", "vit_b_16", "swin_t", "swin_v2_t", "maxvit_t"]


def per_call(fn, reps):
    cpu, wall = [], []
    for _ in range(reps):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        cpu.append((time.process_time() - c0) * 1e3)
        wall.append((time.perf_counter() - w0) * 1e3)
    return cpu, wall


def make(torchvision, name, side):
    kwargs = {}
    if name.startswith("vit_"):
        kwargs["image_size"] = side
    if name in ("googlenet", "inception_v3"):
        kwargs.update(aux_logits=False, init_weights=True)
    return getattr(torchvision.models, name)(**kwargs).eval()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="")
    ap.add_argument("--all", action="store_true")
    ap.add_argument("--side", type=int, default=224)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batches", default="1,8")
    a = ap.parse_args()
    import torch
    import torchvision
    import nnmod.torch
    torch.set_num_threads(1)
    if a.all:
        names = torchvision.models.list_models(module=torchvision.models)
    elif a.models:
        names = [n for n in a.models.split(",") if n]
    else:
        names = DEFAULT
    batches = [int(b) for b in a.batches.split(",")]
    ratios = {b: [] for b in batches}
    failed = {}
    tmp = tempfile.mkdtemp(prefix="bench-zoo-")
    for name in names:
        side = max(a.side, 75) if name == "inception_v3" else a.side
        torch.manual_seed(0)
        model = make(torchvision, name, side)
        path = os.path.join(tmp, f"{name}.json")
        try:
            nnmod.torch.export(model, path, torch.randn(1, 3, side, side))
        except nnmod.Error as e:
            items = [ln.strip().split(" (")[0] for ln in str(e).splitlines()[1:]
                     if ln.startswith("    ")]
            failed[name] = "; ".join(items) or str(e).splitlines()[0]
            print(json.dumps({"bench": f"zoo_{name}_export", "value": 0, "unit": "ok",
                              "why": failed[name]}), flush=True)
            continue
        m = nnmod.from_manifest(path).eval()
        for b in batches:
            x = torch.randn(b, 3, side, side)
            xn = nnmod.tensor(x.numpy())

            def run_torch():
                with torch.no_grad():
                    model(x)

            def run_nnmod():
                with nnmod.no_grad():
                    m(xn)

            run_torch()
            run_nnmod()
            res = {"torch": ([], []), "nnmod": ([], [])}
            for _ in range(a.rounds):
                for fw, fn in (("nnmod", run_nnmod), ("torch", run_torch)):
                    c, w = per_call(fn, a.reps)
                    res[fw][0].extend(c)
                    res[fw][1].extend(w)
            med = {fw: (statistics.median(c), statistics.median(w)) for fw, (c, w) in res.items()}
            for fw in ("nnmod", "torch"):
                print(json.dumps({"bench": f"zoo_{name}_b{b}_{fw}", "value": round(med[fw][0], 2),
                                  "unit": "ms", "wall": round(med[fw][1], 2), "side": side}),
                      flush=True)
            r = med["nnmod"][0] / med["torch"][0]
            ratios[b].append(r)
            print(json.dumps({"bench": f"zoo_{name}_b{b}_nnmod_vs_torch", "value": round(r, 3),
                              "unit": "ratio"}), flush=True)
        m = xn = None
        try:
            os.unlink(path)
            os.unlink(os.path.splitext(path)[0] + ".safetensors")
        except OSError:
            pass
    for b in batches:
        if ratios[b]:
            g = math.exp(sum(math.log(r) for r in ratios[b]) / len(ratios[b]))
            print(json.dumps({"bench": f"zoo_geomean_b{b}_nnmod_vs_torch", "value": round(g, 3),
                              "unit": "ratio", "models": len(ratios[b]),
                              "worst": round(max(ratios[b]), 3)}), flush=True)
    print(json.dumps({"bench": "zoo_exported", "value": len(names) - len(failed),
                      "unit": "models", "of": len(names),
                      "not_exported": sorted(failed)}), flush=True)


if __name__ == "__main__":
    main()
