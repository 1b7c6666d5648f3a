#!/usr/bin/env python3
"""PyTorch golden files for the example models of examples/manifests/
(tests/layers/test_models.c): each model is built in PyTorch with the same
structure and state_dict names as its nnmod manifest, and this script writes

  tests/golden/models/<model>.state.safetensors
      model.state_dict() exactly as PyTorch names it (what nnm_module_load
      reads with strict=1)
  tests/golden/models/<model>.io.safetensors
      input              the batch
      output             model(input) in eval mode
      gout               W: the gradients are those of sum(output * W)
      grad.input         d/d input
      grad.<param>       d/d every parameter (state_dict names)
      train.output       model(input) in train mode at the last of TRAIN_STEPS
                         (3) calls, where the model is deterministic in train
                         mode (no dropout)
      train.after.<buf>  the buffers after those calls (running statistics)
      __metadata__ manifest = the manifest's path relative to the repository

The manifests carry the configs; the PyTorch twins below must agree with them
(the test fails otherwise). Usage:
    /usr/bin/python3 tests/golden/make_model_golden.py
"""
import json
import os
import struct
import sys

import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "models")
SEED = 1202

DTYPES = {torch.float32: "F32", torch.int64: "I64"}


def write_safetensors(path, tensors, metadata=None):
    items = sorted(tensors.items(), key=lambda kv: (-kv[1].element_size(), kv[0]))
    header = {}
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    blobs, at = [], 0
    for name, t in items:
        t = t.detach().contiguous().cpu()
        b = t.numpy().tobytes()
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [at, at + len(b)]}
        blobs.append(b)
        at += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


# ---------------------------------------------------------------------------
# The models (their structure mirrors the manifests)
# ---------------------------------------------------------------------------

def transformer_encoder_block():
    """examples/manifests/transformer_encoder_block.json: PyTorch's own
    TransformerEncoderLayer (post-norm, ReLU), batch_first."""
    return nn.TransformerEncoderLayer(d_model=16, nhead=4, dim_feedforward=32, dropout=0.1,
                                      batch_first=True), (2, 5, 16), False


def lenet():
    """examples/manifests/lenet.json: LeNet-5 on 28x28 (padding 2 on conv1),
    ReLU and max pooling; nn.Sequential, so the names are 0.weight, 3.weight,
    7.weight, ..."""
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, 10)), (2, 1, 28, 28), True


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock (expansion 1) with a downsampling
    shortcut: examples/manifests/resnet_basic_block.json."""

    def __init__(self, inplanes, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = nn.Sequential(
            nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.downsample(x))


def resnet_basic_block():
    return BasicBlock(4, 8, 2), (2, 4, 9, 9), True


MODELS = {
    "transformer_encoder_block": transformer_encoder_block,
    "lenet": lenet,
    "resnet_basic_block": resnet_basic_block,
}
TRAIN_STEPS = 3


def perturb(m, g):
    """Every parameter gets a small random offset so that no entry sits at
    its init constant (zeros, ones): a bias or norm weight that is ignored
    would go unnoticed otherwise."""
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))


def main():
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    only = set(sys.argv[1:])
    for name, make in MODELS.items():
        if only and name not in only:
            continue
        torch.manual_seed(SEED)
        g = torch.Generator().manual_seed(SEED)
        m, in_shape, train_deterministic = make()
        perturb(m, g)
        x = torch.randn(in_shape, generator=g)
        state = {k: v.detach().clone() for k, v in m.state_dict().items()}
        io = {"input": x.clone()}
        if train_deterministic:
            m.train()
            with torch.no_grad():
                for _ in range(TRAIN_STEPS):
                    io["train.output"] = m(x.clone())
            for k, b in m.named_buffers():
                io["train.after." + k] = b.detach().clone()
            m.load_state_dict(state)
        m.eval()
        xi = x.clone().requires_grad_(True)
        y = m(xi)
        w = torch.randn(y.shape, generator=g)
        (y * w).sum().backward()
        io["output"] = y.detach()
        io["gout"] = w
        io["grad.input"] = xi.grad
        for k, p in m.named_parameters():
            io["grad." + k] = p.grad
        write_safetensors(os.path.join(OUT, name + ".state.safetensors"), state)
        write_safetensors(os.path.join(OUT, name + ".io.safetensors"), io,
                          {"manifest": f"examples/manifests/{name}.json",
                           "generator": "tests/golden/make_model_golden.py",
                           "torch": torch.__version__})
        print(name, "ok")


if __name__ == "__main__":
    main()
