#!/usr/bin/env python3
"""Writes bench/bench_gpu_resnet50.json: torchvision's resnet50 exported by
nnmod.torch.export (bindings/python/nnmod/torch.py), WITHOUT its weights (the
manifest's "weights" entry is dropped: bench_gpu times the model with the
layers' own initialisation, so no 100 MB file travels to the GPU machine).

    NNMOD_LIBRARY=build/lib/libnnmod.so /usr/bin/python3 bench/make_bench_gpu_models.py

Needs torch and torchvision (Debian's python3-torch 1.13 / torchvision 0.14
made the committed file) and a build of libnnmod with its plugins.
"""
import json
import os
import sys
import tempfile

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "bindings", "python"))

import torch  # noqa: E402
import torchvision  # noqa: E402

import nnmod.torch  # noqa: E402


def main():
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "resnet50.json")
        nnmod.torch.export(torchvision.models.resnet50(), path, torch.randn(1, 3, 224, 224),
                           check=False)
        with open(path) as f:
            doc = json.load(f)
    doc.pop("weights", None)
    doc.setdefault("metadata", {})["note"] = (
        "bench/make_bench_gpu_models.py: torchvision resnet50, no weights (bench_gpu)")
    out = os.path.join(here, "bench_gpu_resnet50.json")
    with open(out, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(out)


if __name__ == "__main__":
    main()
