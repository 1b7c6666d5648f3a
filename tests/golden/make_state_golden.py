#!/usr/bin/env python3
"""PyTorch interop fixtures for nnmod's state dicts (tests/state/test_state_dict.c).

Writes, under tests/golden/state/ (small, deterministic, meant to be committed):

  mlp.safetensors         state_dict of Sequential(Linear(4,8), ReLU, Linear(8,3))
                          after a few SGD steps on fixed data
  mlp_mixed.safetensors   the same weights stored as F16 / BF16 / F64 / F32
  mlp_io.safetensors      "input" [5,4], "output" [5,3] (mlp.safetensors'
                          weights), "output_mixed" [5,3] (the weights after
                          rounding to the mixed file's dtypes, as float32)
  nested.safetensors      state_dict of Net below: nested Sequential, a
                          ModuleList, a ModuleDict, a persistent and a
                          non-persistent buffer ("tasks.cls.0.weight", ...)
  nested_io.safetensors   "input" [5,4], "output" [5,10]
  mlp.manifest.json       the nnmod manifest (docs/manifest.md) of the MLP:
                          sequential(linear, relu, linear), weights
                          mlp.safetensors with its sha256
  nested.manifest.json    the nnmod manifest of Net: a root "graph" whose
                          nodes call into the ModuleList and the ModuleDict
                          ("heads.0: norm", "tasks.cls: norm"), weights
                          nested.safetensors with its sha256. "center" is a
                          test-only layer the C suites register themselves.
                          nnmod has no cat layer yet: the graph returns the
                          four head outputs and the C test concatenates them
                          (tests/state/test_interop.c).

Every *_io file records PyTorch's state_dict key list, in state_dict order,
in __metadata__["state_dict_keys"] (comma-separated), so the C test can check
the names nnmod writes without torch.

No safetensors package is needed: the format is written (and read) by hand.

Usage:
    /usr/bin/python3 tests/golden/make_state_golden.py            # regenerate
    /usr/bin/python3 tests/golden/make_state_golden.py --check F  # load an
        nnmod-written state dict F (mlp or nested, told apart by its keys)
        into PyTorch with strict=True and compare the model's output with
        the golden one. The C suite leaves such files in $NNM_TEST_KEEP_DIR
        when that variable is set.
"""
import hashlib
import json
import os
import struct
import sys

import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "state")
SEED = 20240611

DTYPES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL",
}
FROM_NAME = {v: k for k, v in DTYPES.items()}


def write_safetensors(path, tensors, metadata=None):
    """tensors: dict name -> tensor. Laid out like the reference writer:
    largest element size first, then by name; header padded with spaces."""
    items = sorted(tensors.items(), key=lambda kv: (-kv[1].element_size(), kv[0]))
    header = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    blobs, at = [], 0
    for name, t in items:
        t = t.detach().contiguous().cpu()
        raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [at, at + len(raw)]}
        blobs.append(raw)
        at += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    """Returns (dict name -> tensor, metadata), checking the layout rules."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {})
    body = data[8 + n:]
    out, at = {}, 0
    for name, e in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"]):
        b, en = e["data_offsets"]
        assert b == at, "%s: gap or overlap at %s" % (path, name)
        dt = FROM_NAME[e["dtype"]]
        raw = bytearray(body[b:en])
        t = torch.frombuffer(raw, dtype=dt) if raw else torch.empty(0, dtype=dt)
        out[name] = t.reshape(e["shape"]).clone()
        at = en
    assert at == len(body), "%s: trailing bytes" % path
    return out, meta


def sha256_of(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def linear_spec(m, name=None):
    spec = {"type": "linear",
            "config": {"in_features": m.in_features, "out_features": m.out_features}}
    if m.bias is None:
        spec["config"]["bias"] = False
    return named(spec, name)


def named(spec, name):
    return dict({"name": name}, **spec) if name is not None else spec


def module_spec(m, name=None):
    """The nnmod manifest module for a torch module of this file's models.
    Children of a Sequential/ModuleList keep their index names (the
    manifest's default), as PyTorch's state_dict keys do."""
    if isinstance(m, nn.Linear):
        return linear_spec(m, name)
    if isinstance(m, nn.ReLU):
        return named({"type": "relu"}, name)
    if isinstance(m, Center):
        return named({"type": "center",
                      "config": {"features": m.running_mean.shape[0]}}, name)
    if isinstance(m, (nn.Sequential, nn.ModuleList)):
        kind = "sequential" if isinstance(m, nn.Sequential) else "module_list"
        return named({"type": kind, "children": [module_spec(c) for c in m]}, name)
    if isinstance(m, nn.ModuleDict):
        return named({"type": "module_dict",
                      "children": [module_spec(c, k) for k, c in m.items()]}, name)
    raise TypeError("no nnmod layer for %s" % type(m).__name__)


def types_of(spec, acc):
    acc.add(spec["type"])
    for c in spec.get("children", []):
        types_of(c, acc)
    return acc


def write_manifest(path, root, weights, description):
    """An nnmod manifest (schema v1, JSON) for `root` with weights the
    safetensors file `weights` (beside the manifest) and its sha256."""
    doc = {
        "format": "nnmod.manifest",
        "version": 1,
        "plugins": {t: "^1.0" for t in sorted(types_of(root, set()))},
        "root": root,
        "weights": {"path": os.path.basename(weights), "sha256": sha256_of(weights)},
        "metadata": {"description": description,
                     "generator": "tests/golden/make_state_golden.py"},
    }
    with open(path, "w") as f:
        f.write(json.dumps(doc, indent=2) + "\n")


def net_manifest_root(net):
    """Net as an nnmod graph: the forward's calls into the containers become
    dotted nodes; torch.cat is left to the caller (no cat layer yet)."""
    return {
        "type": "graph",
        "config": {
            "inputs": ["x"],
            "nodes": ["encoder: x", "norm: encoder", "heads.0: norm", "heads.1: norm",
                      "tasks.cls: norm", "tasks.reg: norm"],
            "outputs": ["heads.0", "heads.1", "tasks.cls", "tasks.reg"],
        },
        "children": [module_spec(c, n) for n, c in net.named_children()],
    }


def make_mlp():
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


class Center(nn.Module):
    """x - running_mean; also holds a non-persistent buffer (not in the state dict)."""

    def __init__(self, n):
        super().__init__()
        self.register_buffer("running_mean", torch.zeros(n))
        self.register_buffer("scratch", torch.zeros(n), persistent=False)

    def forward(self, x):
        return x - self.running_mean


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 6))
        self.norm = Center(6)
        self.heads = nn.ModuleList([nn.Linear(6, 3), nn.Linear(6, 2)])
        self.tasks = nn.ModuleDict({
            "cls": nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)),
            "reg": nn.Linear(6, 2),
        })

    def forward(self, x):
        h = self.norm(self.encoder(x))
        return torch.cat([self.heads[0](h), self.heads[1](h), self.tasks["cls"](h),
                          self.tasks["reg"](h)], dim=-1)


def train(model, x, y, steps=5, lr=0.05):
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        opt.step()


def keys_meta(model):
    return {"state_dict_keys": ",".join(model.state_dict().keys()),
            "torch_version": torch.__version__}


def generate():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(SEED)
    x_train = torch.randn(16, 4)
    x = torch.randn(5, 4)

    mlp = make_mlp()
    train(mlp, x_train, torch.randn(16, 3))
    sd = mlp.state_dict()
    write_safetensors(os.path.join(OUT, "mlp.safetensors"), sd)
    # The same weights in other dtypes; nnmod converts them to float32 on load.
    mixed = {"0.weight": sd["0.weight"].half(), "0.bias": sd["0.bias"].bfloat16(),
             "2.weight": sd["2.weight"].double(), "2.bias": sd["2.bias"]}
    write_safetensors(os.path.join(OUT, "mlp_mixed.safetensors"), mixed)
    with torch.no_grad():
        y = mlp(x)
        rounded = make_mlp()
        rounded.load_state_dict({k: v.float() for k, v in mixed.items()})
        y_mixed = rounded(x)
    write_safetensors(os.path.join(OUT, "mlp_io.safetensors"),
                      {"input": x, "output": y, "output_mixed": y_mixed}, keys_meta(mlp))
    write_manifest(os.path.join(OUT, "mlp.manifest.json"), module_spec(mlp),
                   os.path.join(OUT, "mlp.safetensors"),
                   "Sequential(Linear(4, 8), ReLU, Linear(8, 3)), trained "
                   "(make_state_golden.py)")

    net = Net()
    with torch.no_grad():
        net.norm.running_mean.copy_(torch.randn(6) * 0.5)
        net.norm.scratch.fill_(123.0)  # must never reach a file
    train(net, x_train, torch.randn(16, 10))
    write_safetensors(os.path.join(OUT, "nested.safetensors"), net.state_dict())
    with torch.no_grad():
        y = net(x)
    write_safetensors(os.path.join(OUT, "nested_io.safetensors"), {"input": x, "output": y},
                      keys_meta(net))
    write_manifest(os.path.join(OUT, "nested.manifest.json"), net_manifest_root(net),
                   os.path.join(OUT, "nested.safetensors"),
                   "make_state_golden.py's Net; outputs are the four heads, which "
                   "Net.forward concatenates (torch.cat, dim=-1)")
    for f in sorted(os.listdir(OUT)):
        print("%-24s %6d bytes" % (f, os.path.getsize(os.path.join(OUT, f))))


def check(path):
    sd, meta = read_safetensors(path)
    print("%s: %d tensors, metadata %s" % (path, len(sd), meta))
    model, io = (Net(), "nested_io") if any(k.startswith("encoder.") for k in sd) else (
        make_mlp(), "mlp_io")
    model.load_state_dict(sd, strict=True)  # raises on any missing/unexpected/mismatched key
    golden, _ = read_safetensors(os.path.join(OUT, io + ".safetensors"))
    with torch.no_grad():
        y = model(golden["input"])
    err = (y - golden["output"]).abs().max().item()
    print("loaded into %s with strict=True; max |y - golden| = %.3g" % (
        type(model).__name__, err))
    if not torch.allclose(y, golden["output"], rtol=1e-5, atol=1e-6):
        sys.exit("MISMATCH")
    print("OK")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--check":
        check(sys.argv[2])
    elif len(sys.argv) == 1:
        generate()
    else:
        sys.exit(__doc__)
