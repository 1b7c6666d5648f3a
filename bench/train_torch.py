#!/usr/bin/env python3
"""The PyTorch side of bench/bench_epoch.sh: one epoch of the same model on the
same data, in the same order, with the same batch size, optimizer and input
normalisation as `nnm train examples/manifests/fashion_{mlp,cnn}.json`, in a
plain DataLoader loop on one thread.

    /usr/bin/python3 bench/train_torch.py mlp|cnn [--epochs N]

Prints one JSON object per line: samples/s of the training loop (data
loading included, evaluation excluded) and the test accuracy after the last
epoch. Debian's python3-torch (1.13); nothing from PyPI.
"""
import argparse
import gzip
import json
import struct
import time

import numpy as np
import torch

torch.set_num_threads(1)
DATA = "/usr/share/datasets/fashion-mnist/"
M64 = (1 << 64) - 1


def read_idx(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def epoch_order(n, seed, epoch):
    """runtime/data/loader.c's shuffle, transcribed (tests/data pins it)."""
    x = (seed + 0x9E3779B97F4A7C15 * (epoch + 1)) & M64
    perm = list(range(n))
    for i in range(n - 1, 0, -1):
        x = (x + 0x9E3779B97F4A7C15) & M64
        z = x
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        z ^= z >> 31
        j = (z * (i + 1)) >> 64
        perm[i], perm[j] = perm[j], perm[i]
    return perm


class Order(torch.utils.data.Sampler):
    def __init__(self, n, seed):
        self.n, self.seed, self.epoch = n, seed, 0

    def __iter__(self):
        return iter(epoch_order(self.n, self.seed, self.epoch))

    def __len__(self):
        return self.n


def model_of(kind, dropout):
    nn = torch.nn
    if kind == "mlp":
        layers = [nn.Flatten(), nn.Linear(784, 256), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        return nn.Sequential(*layers, nn.Linear(256, 10))
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 10))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", choices=["mlp", "cnn"])
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.001)
    ap.add_argument("--dropout", type=float, default=0.2)  # fashion_mlp.json's
    ap.add_argument("--threads", type=int, default=1)  # nnm train --threads
    ap.add_argument("--limit", type=int, default=0)  # nnm train --limit: the first N samples
    ap.add_argument("--device", default="cpu")  # nnm train --device (scripts/gpu-check.sh: cuda)
    ap.add_argument("--data", default=DATA)  # the Fashion-MNIST folder
    args = ap.parse_args()
    dev = torch.device(args.device)
    data = args.data.rstrip("/") + "/"
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    xtr = torch.from_numpy(read_idx(data + "train-images-idx3-ubyte.gz").copy())
    ytr = torch.from_numpy(read_idx(data + "train-labels-idx1-ubyte.gz").astype(np.int64))
    xte = torch.from_numpy(read_idx(data + "t10k-images-idx3-ubyte.gz").copy())
    yte = torch.from_numpy(read_idx(data + "t10k-labels-idx1-ubyte.gz").astype(np.int64))
    # nnm train's normalisation: mean/std of the training pixels / 255
    scaled = xtr.double() / 255
    mean, std = scaled.mean().item(), scaled.std(unbiased=False).item()
    del scaled

    def prep(x):
        return ((x.to(dev).float() / 255 - mean) / std).unsqueeze(1)  # [B, 1, 28, 28]

    if args.limit:
        xtr, ytr = xtr[:args.limit], ytr[:args.limit]
    sampler = Order(len(xtr), args.seed)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xtr, ytr),
                                         batch_size=args.batch_size, sampler=sampler)
    model = model_of(args.model, args.dropout).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    seen, t_train, c_train = 0, 0.0, 0.0
    for epoch in range(args.epochs):
        sampler.epoch = epoch
        model.train()
        t0, c0 = time.perf_counter(), time.process_time()
        for x, y in loader:
            opt.zero_grad()
            loss = loss_fn(model(prep(x)), y.to(dev))
            loss.backward()
            opt.step()
            seen += len(y)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t_train += time.perf_counter() - t0
        c_train += time.process_time() - c0
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(xte), 1000):
            correct += (model(prep(xte[i:i + 1000])).argmax(1).cpu() == yte[i:i + 1000]).sum().item()
    name = "epoch_" + args.model + "_torch"
    print(json.dumps({"bench": name, "value": round(seen / t_train), "unit": "samples/s",
                      "per_cpu_second": round(seen / c_train), "epochs": args.epochs,
                      "threads": args.threads, "device": str(dev), "torch": torch.__version__}))
    print(json.dumps({"bench": name + "_accuracy", "value": round(100 * correct / len(xte), 2),
                      "unit": "%", "epochs": args.epochs}))


if __name__ == "__main__":
    main()
