#!/usr/bin/env python3
"""zoo_layers: where a torchvision model's time goes, layer by layer, nnmod
against PyTorch 1.13 in the same run (a profiling aid for bench_zoo.py).

    NNMOD_LIBRARY=build/lib/libnnmod.so /usr/bin/python3 bench/zoo_layers.py \\
        MODEL [--batch B] [--side N] [--reps R] [--top K]

Both sides get a forward-pre-hook and a forward hook on every leaf module
(nnmod: every module without children, functional graph nodes included);
each leaf's process CPU time is the median over R forwards (eval, no grad,
one thread each side). Leaves are matched by their path (the exporter keeps
PyTorch's names); the table lists the K leaves with the largest excess of
nnmod over PyTorch, then the leaves of one side only (nnmod's functional
nodes: add, flatten, ...), summed by layer type. Hooks cost some
microseconds per call on each side, so tiny leaves read high on both.
"""
import argparse
import collections
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "bindings", "python"))
sys.path.insert(0, HERE)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--side", type=int, default=224)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--top", type=int, default=25)
    a = ap.parse_args()
    import torch
    import torchvision
    import nnmod
    import nnmod.torch
    from bench_zoo import make
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = make(torchvision, a.model, a.side)
    tmp = tempfile.mkdtemp(prefix="zoo-layers-")
    path = os.path.join(tmp, f"{a.model}.json")
    nnmod.torch.export(model, path, torch.randn(1, 3, a.side, a.side))
    m = nnmod.from_manifest(path).eval()
    x = torch.randn(a.batch, 3, a.side, a.side)
    xn = nnmod.tensor(x.numpy())

    # torch side
    t_times = collections.defaultdict(list)
    t_type = {}
    t_start = {}
    handles = []
    for name, mod in model.named_modules():
        if any(True for _ in mod.children()):
            continue
        t_type[name] = type(mod).__name__

        def pre(mod, args, name=name):
            t_start[name] = time.process_time()

        def post(mod, args, out, name=name):
            t_times[name].append(time.process_time() - t_start[name])

        handles.append(mod.register_forward_pre_hook(pre))
        handles.append(mod.register_forward_hook(post))

    # nnmod side: global hooks, leaves only
    leaf = {}
    for name, mod in m.named_modules():
        leaf[name] = not any(True for _ in mod.children())
    n_times = collections.defaultdict(list)
    n_type = {}
    n_start = {}

    def npre(mod, args):
        p = mod.path
        if leaf.get(p, False):
            n_start[p] = time.process_time()

    def npost(mod, args, out):
        p = mod.path
        if leaf.get(p, False):
            n_times[p].append(time.process_time() - n_start[p])
            n_type[p] = mod.layer_type

    h1 = nnmod.register_module_forward_pre_hook(npre)
    h2 = nnmod.register_module_forward_hook(npost)
    tot_n, tot_t = [], []
    for r in range(a.reps + 1):
        c0 = time.process_time()
        with nnmod.no_grad():
            m(xn)
        c1 = time.process_time()
        with torch.no_grad():
            model(x)
        c2 = time.process_time()
        if r == 0:  # warm-up
            n_times.clear()
            t_times.clear()
            continue
        tot_n.append(c1 - c0)
        tot_t.append(c2 - c1)
    h1.remove()
    h2.remove()

    def med(v):  # per forward: sum of a leaf's calls in one forward
        reps = a.reps
        calls = len(v) // reps
        return statistics.median(sum(v[r * calls:(r + 1) * calls]) for r in range(reps)) * 1e3

    nm = {k: med(v) for k, v in n_times.items()}
    tm = {k: med(v) for k, v in t_times.items()}
    both = [k for k in nm if k in tm]
    print(f"# {a.model} b{a.batch}: whole forward nnmod {statistics.median(tot_n)*1e3:.2f} ms, "
          f"torch {statistics.median(tot_t)*1e3:.2f} ms (hooked); leaves nnmod "
          f"{sum(nm.values()):.2f}, torch {sum(tm.values()):.2f}; matched nnmod "
          f"{sum(nm[k] for k in both):.2f}, torch {sum(tm[k] for k in both):.2f}")
    rows = sorted(both, key=lambda k: tm[k] - nm[k])
    print(f"{'leaf':45s} {'type':18s} {'nnmod':>8s} {'torch':>8s} {'ratio':>6s}")
    for k in rows[:a.top]:
        print(f"{k:45s} {t_type[k]:18s} {nm[k]:8.3f} {tm[k]:8.3f} {nm[k]/max(tm[k],1e-9):6.2f}")
    by = collections.defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])
    for k in both:
        e = by[t_type[k]]
        e[0] += nm[k]
        e[1] += tm[k]
    print("# matched leaves by type: nnmod, torch")
    for ty, e in sorted(by.items(), key=lambda kv: -kv[1][0]):
        print(f"  {ty:28s} {e[0]:8.3f} {e[1]:8.3f} {e[0]/max(e[1],1e-9):6.2f}")
    only = collections.defaultdict(float)
    for k in nm:
        if k not in tm:
            only["nnmod:" + n_type.get(k, "?")] += nm[k]
    for k in tm:
        if k not in nm:
            only["torch:" + t_type[k]] += tm[k]
    print("# leaves of one side only, by type")
    for ty, v in sorted(only.items(), key=lambda kv: -kv[1]):
        print(f"  {ty:28s} {v:8.3f}")


if __name__ == "__main__":
    main()
