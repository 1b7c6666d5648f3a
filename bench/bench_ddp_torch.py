#!/usr/bin/env python3
"""The PyTorch side of bench_ddp: DistributedDataParallel (gloo) on the same
MLP 784-2048-2048-10, per-rank batch 128, SGD momentum 0.9, one thread per
rank, with 1 and 2 ranks. One JSON line per world size.

OPENBLAS_NUM_THREADS=1 /usr/bin/python3 bench/bench_ddp_torch.py [STEPS]
"""
import json
import os
import statistics
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

BATCH, REPS = 128, 5


def run(rank, world, steps, port, out):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(784, 2048), torch.nn.ReLU(), torch.nn.Linear(2048, 2048),
                                torch.nn.ReLU(), torch.nn.Linear(2048, 10))
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    loss_fn = torch.nn.CrossEntropyLoss()
    opt = torch.optim.SGD(ddp.parameters(), lr=0.01, momentum=0.9)
    g = torch.Generator().manual_seed(rank)
    x = torch.rand(BATCH, 784, generator=g)
    t = (torch.arange(BATCH) + rank) % 10

    def step():
        opt.zero_grad()
        loss_fn(ddp(x), t).backward()
        opt.step()

    for _ in range(2):
        step()
    rates = []
    for _ in range(REPS):
        dist.barrier()
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        dist.barrier()
        rates.append(steps * BATCH * world / (time.perf_counter() - t0))
    if rank == 0:
        out.put(statistics.median(rates))
    dist.destroy_process_group()


def main():
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    ctx = mp.get_context("spawn")
    for world in (1, 2):
        out = ctx.Queue()
        port = 29500 + os.getpid() % 1000 + world
        procs = [ctx.Process(target=run, args=(r, world, steps, port, out)) for r in range(world)]
        for p in procs:
            p.start()
        rate = out.get()
        for p in procs:
            p.join()
        print(json.dumps({"bench": "ddp_step_mlp784_2048_2048_10_torch", "value": round(rate, 1),
                          "unit": "samples/s", "ranks": world, "batch_per_rank": BATCH, "steps": steps,
                          "reps": REPS, "torch": torch.__version__, "backend": "gloo"}), flush=True)


if __name__ == "__main__":
    main()
