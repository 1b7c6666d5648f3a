#!/usr/bin/env python3
"""The PyTorch side of bench_embedding_bag (bench/bench_embedding_bag.sh runs
both in one go).

    OMP_NUM_THREADS=1 /usr/bin/python3 bench/bench_embedding_bag_torch.py [REPS]

nn.EmbeddingBag(100000, 64), 512 bags, one thread, the same indices and bag
lengths as bench_embedding_bag.c (the same linear congruential generator):
sum with fixed and variable bags, mean on a [512, 20] input, max with the
variable bags; forward (no_grad) and forward + backward (dense weight
gradient). Medians of REPS repetitions after a warm-up of the wall time
("value") and of the process CPU time ("cpu_ms"); JSON lines like
bench_embedding_bag's.
"""
import json
import statistics
import sys
import time

import torch
import torch.nn as nn

torch.set_num_threads(1)
V, D, B, LEN = 100000, 64, 512, 20
_seed = 12345


def next_u():
    global _seed
    _seed = (_seed * 1664525 + 1013904223) & 0xFFFFFFFF
    return _seed >> 8


def timed(fn, reps):
    fn()  # warm-up
    t, c = [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        t.append(time.perf_counter() - t0)
        c.append(time.process_time() - c0)
    return statistics.median(t), statistics.median(c)


def emit(name, tc):
    print(json.dumps({"bench": name, "value": round(tc[0] * 1e3, 3), "unit": "ms",
                      "cpu_ms": round(tc[1] * 1e3, 3), "num_embeddings": V, "dim": D,
                      "bags": B, "mean_bag": LEN, "threads": 1, "impl": "torch", "torch": torch.__version__}),
          flush=True)


def run(name, m, args, reps):
    def fwd():
        with torch.no_grad():
            m(*args)

    emit(f"{name}_fwd", timed(fwd, reps))
    g = torch.tensor([(next_u() & 0xFFFF) / 65536.0 - 0.5 for _ in range(B * D)]).reshape(B, D)

    def fwd_bwd():
        m.zero_grad(set_to_none=True)
        m(*args).backward(g)

    emit(f"{name}_fwd_bwd", timed(fwd_bwd, reps))


def main():
    reps = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    lens = [1 + next_u() % (2 * LEN - 1) for _ in range(B)]
    fixed = torch.tensor([next_u() % V for _ in range(B * LEN)])
    var = torch.tensor([next_u() % V for _ in range(sum(lens))])
    off_fixed = torch.arange(0, B * LEN, LEN)
    off_var = torch.tensor([0] + list(torch.tensor(lens).cumsum(0)[:-1].tolist()))
    torch.manual_seed(0)
    s, me, mx = (nn.EmbeddingBag(V, D, mode=k) for k in ("sum", "mean", "max"))
    run("sum_fixed", s, (fixed, off_fixed), reps)
    run("sum_var", s, (var, off_var), reps)
    run("mean_2d", me, (fixed.reshape(B, LEN),), reps)
    run("max_var", mx, (var, off_var), reps)


if __name__ == "__main__":
    main()
