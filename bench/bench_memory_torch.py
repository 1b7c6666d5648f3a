#!/usr/bin/env python3
"""The PyTorch side of bench_memory: the same Fashion-MNIST CNN (as
bench/train_torch.py builds it), batch 64, or torchvision's resnet18 at
batch 32 (3 x 224 x 224, 1000 classes), cross-entropy, Adam, forward +
backward + step, one thread.

    /usr/bin/python3 bench/bench_memory_torch.py [STEPS] [resnet18]

Prints JSON lines like bench_memory: the peak resident memory while training
less the resident memory before the first step (MiB), and the process's peak.
The interpreter and libtorch are in the baseline, as libnnmod is in nnmod's.
"""
import json
import resource
import sys

import torch
from torch import nn

torch.set_num_threads(1)
BATCH = 64


def rss_now():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def main():
    steps = max(2, int(sys.argv[1]) if len(sys.argv) > 1 else 20)
    name = sys.argv[2] if len(sys.argv) > 2 else "fashion_cnn"
    torch.manual_seed(1)
    if name == "resnet18":
        import torchvision
        batch, shape, classes = 32, (3, 224, 224), 1000
        model = torchvision.models.resnet18()
    else:
        batch, shape, classes = BATCH, (1, 28, 28), 10
        model = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(1568, 10))
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.rand(batch, *shape)
    target = torch.arange(batch) % classes

    def step():
        opt.zero_grad()
        loss = loss_fn(model(x), target)
        loss.backward()
        opt.step()

    before = rss_now()
    for _ in range(steps):
        step()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    mib = 1024.0 * 1024.0
    common = {"model": name, "batch": batch, "torch": torch.__version__}
    print(json.dumps({"bench": "memory_train_step_rss_delta_torch", "value": round((peak - before) / mib, 1),
                      "unit": "MiB", "steps": steps, **common}))
    print(json.dumps({"bench": "memory_train_step_rss_peak_torch", "value": round(peak / mib, 1),
                      "unit": "MiB", **common}))


if __name__ == "__main__":
    main()
