#!/usr/bin/env python3
"""The PyTorch side of bench_train: the same step, for quoting both in one run.

OPENBLAS_NUM_THREADS=1 /usr/bin/python3 bench/bench_train_torch.py
"""
import json
import statistics
import time

import torch

torch.set_num_threads(1)
BATCH, STEPS, REPS = 64, 200, 7


def main():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))
    loss_fn = torch.nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.rand(BATCH, 784)
    t = torch.arange(BATCH) % 10

    def step():
        opt.zero_grad()
        loss = loss_fn(model(x), t)
        loss.backward()
        opt.step()

    for _ in range(5):
        step()
    rates = []
    for _ in range(REPS):
        t0 = time.perf_counter()
        for _ in range(STEPS):
            step()
        rates.append(STEPS * BATCH / (time.perf_counter() - t0))
    print(json.dumps({"bench": "torch_train_step_mlp784_256_10", "value": round(statistics.median(rates)),
                      "unit": "samples/s", "batch": BATCH, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
