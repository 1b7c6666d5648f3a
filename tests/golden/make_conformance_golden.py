#!/usr/bin/env python3
"""PyTorch golden vectors for the layer conformance suite
(tests/layers/test_conformance.c, in the style of ggml's test-backend-ops).

One table, CASES, lists every layer x several configs and shapes (odd sizes,
batch 1). Each row is run in train mode and in eval mode (unless the row says
otherwise) and written to tests/golden/conformance/<layer>.safetensors, so that a
row added for one layer rewrites only that layer's file.

Names in a file, for a case named C (C = "<row name>.<mode>"):

  C.in.<i>            input i (f32, or i64 indices)
  C.state.<name>      every state_dict entry before the call, under PyTorch's
                      names (parameters and buffers)
  C.out.<k>           output k of the forward
  C.gout.<k>          the weights W_k of s = sum_k sum(out_k * W_k), whose
                      backward gives the gradients below
  C.grad.in.<i>       ds/d input i (float inputs only)
  C.grad.state.<name> ds/d parameter (absent when PyTorch leaves .grad None)
  C.after.<name>      every buffer after the forward (running statistics)
  C.nograd.<name>     (optional) 1 where the layer defines no gradient for
                      parameter <name> (embedding's padding_idx row): the
                      gradient must be 0 there and finite differences skip it

__metadata__ drives the C suite:

  case.C   a one-module nnmod manifest, JSON (nnm_manifest_parse builds it)
  opts.C   "mode=train;n_in=2;n_out=1;gradcheck=1;rtol=0.0001;atol=1e-05"
           (gradcheck=1: also compare backward with finite differences)
  repr.C   (optional) repr(module) in PyTorch: print(model) must match it

Adding a layer ("layers"' conv/pool/norm rows): append rows to CASES below
(see tests/layers/README.md), run this script, commit the new file. Nothing
in the C suite changes.

No safetensors package is needed: the format is written by hand.

Usage:
    /usr/bin/python3 tests/golden/make_conformance_golden.py [layer ...]
"""
import json
import math
import os
import struct
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "conformance")
SEED = 20261202

DTYPES = {torch.float32: "F32", torch.int64: "I64", torch.bool: "BOOL", torch.uint8: "U8"}


def write_safetensors(path, tensors, metadata):
    items = sorted(tensors.items(), key=lambda kv: (-kv[1].element_size(), kv[0]))
    header = {"__metadata__": {k: str(v) for k, v in metadata.items()}}
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
# Inputs
# ---------------------------------------------------------------------------

def away_from(x, kinks, margin=0.05):
    """Moves values within `margin` of a kink to kink +- margin, so that the
    finite differences of the C gradcheck (eps 1e-2) never straddle one."""
    for k in kinks:
        d = x - k
        near = d.abs() < margin
        x = torch.where(near, k + torch.where(d >= 0, margin, -margin) * torch.ones_like(x), x)
    return x


def make_input(spec, g):
    """spec: ("f", shape[, scale][, kinks]) f32 normal; ("i64", shape, high)
    indices in [0, high); ("mask", shape) a bool key padding mask;
    ("distinct", shape) values 0.05 apart in random order (no near-ties for
    max pooling's finite differences)."""
    kind, shape = spec[0], (spec[1] if len(spec) > 1 else None)
    if kind == "f":
        scale = spec[2] if len(spec) > 2 else 1.0
        x = torch.randn(shape, generator=g) * scale
        if len(spec) > 3:
            x = away_from(x, spec[3])
        return x
    if kind == "poolidx":  # ("poolidx", input shape, k, s, p, nd): max_poolNd's indices of a random input
        f = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[spec[5]]
        return f(torch.randn(shape, generator=g), spec[2], spec[3], spec[4], return_indices=True)[1]
    if kind == "ties":  # small integers: many equal values in a window
        return torch.randint(0, 3, shape, generator=g).to(torch.float32)
    if kind == "distinct":  # spread values: no two within 2 * eps (max pooling ties)
        n = math.prod(shape)
        return ((torch.randperm(n, generator=g).to(torch.float32) - n / 2) * 0.05).reshape(shape)
    if kind == "i64":
        return torch.randint(0, spec[2], shape, generator=g, dtype=torch.int64)
    if kind == "mask":  # True = ignore this key; never a whole row
        m = torch.rand(shape, generator=g) < 0.3
        m[..., 0] = False
        return m
    if kind == "amask":  # bool attn_mask [.., L, S]: key 0 always allowed (no NaN row)
        m = torch.rand(shape, generator=g) < 0.35
        m[..., 0] = False
        return m if len(spec) < 3 else m.to(spec[2])
    if kind == "fkpm":  # f32 key padding mask, mostly exact zeros ([..., 0] too)
        x = torch.randn(shape, generator=g) * (torch.rand(shape, generator=g) < 0.4)
        x[..., 0] = 0.0
        return x
    if kind == "fullmask":  # bool attn_mask [L, S] whose row 1 masks every key
        m = torch.zeros(shape, dtype=torch.bool)
        m[1, :] = True
        return m
    if kind == "empty":  # a 0-element f32 tensor: an absent (None) optional input
        return torch.empty(0)
    if kind == "lit":  # given values (embedding_bag's offsets, indices with padding)
        return torch.tensor(spec[1], dtype=spec[2] if len(spec) > 2 else torch.int64)
    raise ValueError(kind)


# ---------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------
# A row: dict with
#   name     unique row name (the case is "<name>.<mode>")
#   layer    nnmod layer type (the file is tests/golden/conformance/<layer>.safetensors)
#   config   nnmod config (None values are left out: the layer's default)
#   torch    factory of the PyTorch twin: lambda -> nn.Module, or a function
#            of the inputs for layers torch has no Module for (concat, mul)
#   call     (optional) lambda m, *inputs -> tuple of outputs (default m(*x))
#   inputs   list of input specs (make_input)
#   inputs_fn (optional, instead of inputs) lambda g -> list of input tensors
#            made with torch.Generator g (targets in a loss's domain)
#   modes    (optional) ("train", "eval") by default
#   n_out    (optional) outputs compared (default 1)
#   gradcheck (optional) default True when the case is small
#   rtol, atol (optional) default 1e-4, 1e-5
#   repr     (optional) False: PyTorch's repr is not compared (no twin module)
#   repr_map (optional) str -> str applied to PyTorch's repr (a known difference)
#   children (optional) child modules of the manifest's root (attention's out_proj)
#   nograd   (optional) lambda m -> {param name: 0/1 mask}: C.nograd.<name>
#   no_grad_in (optional) True: the inputs' gradients are not written (not
#            compared: a documented difference, such as split ties)
#   after_params (optional) True: C.after.<param> holds each parameter after
#            the forward (a layer that writes its weight in place: max_norm)
#   seed     (optional) the row's own seed; rows without one are seeded by
#            their index among the rows without one (a seeded row inserted
#            anywhere moves no other row's seed)

A = lambda s, *rest: ("f", s) + rest  # noqa: E731


class Fn(nn.Module):
    """A stateless torch function as a module (for concat, mul)."""

    def __init__(self, f):
        super().__init__()
        self.f = f

    def forward(self, *x):
        return self.f(*x)


CASES = []


def row(**kw):
    CASES.append(kw)


# activations ---------------------------------------------------------------
for shape, tag in (((2, 3, 5), "3d"), ((1, 7), "b1"), ((4, 1, 3, 3), "4d")):
    row(name=f"leaky_relu_default_{tag}", layer="leaky_relu", config={},
        torch=lambda: nn.LeakyReLU(), inputs=[A(shape, 1.0, [0.0])])
    row(name=f"elu_{tag}", layer="elu", config={"alpha": 0.7},
        torch=lambda: nn.ELU(alpha=0.7), inputs=[A(shape, 1.0, [0.0])])
    row(name=f"gelu_none_{tag}", layer="gelu", config={},
        torch=lambda: nn.GELU(), inputs=[A(shape, 2.0)])
    row(name=f"gelu_tanh_{tag}", layer="gelu", config={"approximate": "tanh"},
        torch=lambda: nn.GELU(approximate="tanh"), inputs=[A(shape, 2.0)])
    row(name=f"silu_{tag}", layer="silu", config={},
        torch=lambda: nn.SiLU(), inputs=[A(shape, 2.0)])
    row(name=f"tanh_{tag}", layer="tanh", config={},
        torch=lambda: nn.Tanh(), inputs=[A(shape, 1.5)])
    row(name=f"sigmoid_{tag}", layer="sigmoid", config={},
        torch=lambda: nn.Sigmoid(), inputs=[A(shape, 2.0)])
    row(name=f"hardswish_{tag}", layer="hardswish", config={},
        torch=lambda: nn.Hardswish(), inputs=[A(shape, 3.0, [-3.0, 3.0])])
row(name="leaky_relu_slope", layer="leaky_relu", config={"negative_slope": 0.2},
    torch=lambda: nn.LeakyReLU(0.2), inputs=[A((3, 4), 1.0, [0.0])])
row(name="elu_alpha1", layer="elu", config={},
    torch=lambda: nn.ELU(), inputs=[A((5, 3), 1.0, [0.0])])

for dim, shape, tag in ((-1, (2, 5), "last"), (1, (2, 3, 4), "mid"), (0, (3, 2), "first"),
                        (1, (1, 7), "b1"), (None, (2, 3, 4), "none3d"),
                        (None, (3, 5), "none2d"), (-2, (2, 3, 2, 5), "neg2")):
    cfg = {} if dim is None else {"dim": dim}
    row(name=f"softmax_{tag}", layer="softmax", config=cfg,
        torch=(lambda d=dim: nn.Softmax(dim=d)), inputs=[A(shape, 2.0)])
    row(name=f"log_softmax_{tag}", layer="log_softmax", config=cfg,
        torch=(lambda d=dim: nn.LogSoftmax(dim=d)), inputs=[A(shape, 2.0)])

# graph helpers ---------------------------------------------------------------
row(name="concat_dim1", repr=False, layer="concat", config={"dim": 1},
    torch=lambda: Fn(lambda a, b: torch.cat([a, b], 1)),
    inputs=[A((2, 3, 4)), A((2, 5, 4))])
row(name="concat_default3", repr=False, layer="concat", config={},
    torch=lambda: Fn(lambda a, b, c: torch.cat([a, b, c], 0)),
    inputs=[A((1, 3)), A((2, 3)), A((4, 3))])
row(name="concat_last", repr=False, layer="concat", config={"dim": -1},
    torch=lambda: Fn(lambda a, b: torch.cat([a, b], -1)),
    inputs=[A((1, 2, 3)), A((1, 2, 1))])
row(name="mul_same", repr=False, layer="mul", config={},
    torch=lambda: Fn(lambda a, b: a * b), inputs=[A((3, 5)), A((3, 5))])
row(name="mul_broadcast3", repr=False, layer="mul", config={},
    torch=lambda: Fn(lambda a, b, c: a * b * c),
    inputs=[A((2, 3, 4)), A((3, 1)), A((4,))])

# embedding -------------------------------------------------------------------
def pad_rows(w, row):
    mask = torch.zeros_like(w)
    mask[row] = 1
    return mask


row(name="embedding_basic", layer="embedding",
    config={"num_embeddings": 10, "embedding_dim": 3},
    torch=lambda: nn.Embedding(10, 3), inputs=[("i64", (2, 5), 10)])
row(name="embedding_padding", layer="embedding",
    config={"num_embeddings": 7, "embedding_dim": 4, "padding_idx": 0},
    torch=lambda: nn.Embedding(7, 4, padding_idx=0), inputs=[("i64", (3, 6), 7)],
    nograd=lambda m: {"weight": pad_rows(m.weight, 0)})
row(name="embedding_negpad_b1", layer="embedding",
    config={"num_embeddings": 5, "embedding_dim": 2, "padding_idx": -1},
    torch=lambda: nn.Embedding(5, 2, padding_idx=-1), inputs=[("i64", (1, 9), 5)],
    nograd=lambda m: {"weight": pad_rows(m.weight, 4)})

# embedding max_norm (issue 18): the looked-up rows are renormalised in place
# at forward time; the weight after the call is compared, and no finite
# differences (each forward renormalises again).
row(name="embedding_max_norm", layer="embedding", seed=18001,
    config={"num_embeddings": 10, "embedding_dim": 4, "max_norm": 1.0},
    torch=lambda: nn.Embedding(10, 4, max_norm=1.0), inputs=[("i64", (3, 5), 10)],
    after_params=True, gradcheck=False)
row(name="embedding_max_norm_int_p1_padding", layer="embedding", seed=18002,
    config={"num_embeddings": 8, "embedding_dim": 3, "max_norm": 2, "norm_type": 1, "padding_idx": 3},
    torch=lambda: nn.Embedding(8, 3, max_norm=2, norm_type=1, padding_idx=3),
    inputs=[("i64", (2, 7), 8)], after_params=True, gradcheck=False,
    nograd=lambda m: {"weight": pad_rows(m.weight, 3)})
row(name="embedding_max_norm_p3", layer="embedding", seed=18003,
    config={"num_embeddings": 6, "embedding_dim": 5, "max_norm": 1.5, "norm_type": 3.0},
    torch=lambda: nn.Embedding(6, 5, max_norm=1.5, norm_type=3.0), inputs=[("i64", (4,), 6)],
    after_params=True, gradcheck=False)

row(name="embedding_scale_grad_by_freq", layer="embedding", seed=18004,
    config={"num_embeddings": 5, "embedding_dim": 3, "scale_grad_by_freq": True},
    torch=lambda: nn.Embedding(5, 3, scale_grad_by_freq=True), inputs=[("i64", (3, 6), 5)],
    gradcheck=False)  # a scaled gradient, not the derivative: no finite differences
row(name="embedding_scale_grad_by_freq_padding_max_norm", layer="embedding", seed=18005,
    config={"num_embeddings": 6, "embedding_dim": 4, "padding_idx": 1, "max_norm": 1.5,
            "scale_grad_by_freq": True},
    torch=lambda: nn.Embedding(6, 4, padding_idx=1, max_norm=1.5, scale_grad_by_freq=True),
    inputs=[("i64", (2, 9), 6)], after_params=True, gradcheck=False,
    nograd=lambda m: {"weight": pad_rows(m.weight, 1)})

# embedding_bag (issue 18) ------------------------------------------------------
L = lambda v: ("lit", v)  # noqa: E731
row(name="embedding_bag_mean_2d", layer="embedding_bag", seed=18101,
    config={"num_embeddings": 10, "embedding_dim": 3},
    torch=lambda: nn.EmbeddingBag(10, 3), inputs=[("i64", (4, 5), 10)])
row(name="embedding_bag_mean_b1", layer="embedding_bag", seed=18102,
    config={"num_embeddings": 6, "embedding_dim": 4, "mode": "mean"},
    torch=lambda: nn.EmbeddingBag(6, 4, mode="mean"), inputs=[("i64", (1, 7), 6)])
row(name="embedding_bag_sum_offsets_empty", layer="embedding_bag", seed=18103,
    config={"num_embeddings": 10, "embedding_dim": 3, "mode": "sum"},
    torch=lambda: nn.EmbeddingBag(10, 3, mode="sum"),
    inputs=[("i64", (8,), 10), L([0, 3, 3, 6])])
row(name="embedding_bag_sum_psw_offsets", layer="embedding_bag", seed=18104,
    config={"num_embeddings": 7, "embedding_dim": 4, "mode": "sum"},
    torch=lambda: nn.EmbeddingBag(7, 4, mode="sum"),
    inputs=[("i64", (9,), 7), L([0, 2, 5]), A((9,))])
row(name="embedding_bag_sum_psw_2d", layer="embedding_bag", seed=18105,
    config={"num_embeddings": 9, "embedding_dim": 2, "mode": "sum"},
    torch=lambda: nn.EmbeddingBag(9, 2, mode="sum"),
    call=lambda m, x, w: m(x, per_sample_weights=w),
    inputs=[("i64", (3, 4), 9), A((3, 4))])
row(name="embedding_bag_max_offsets_empty", layer="embedding_bag", seed=18106,
    config={"num_embeddings": 12, "embedding_dim": 5, "mode": "max"},
    torch=lambda: nn.EmbeddingBag(12, 5, mode="max"),
    inputs=[L([3, 1, 7, 1, 0, 11, 5, 5, 9, 2]), L([0, 4, 4, 7])])
row(name="embedding_bag_max_2d", layer="embedding_bag", seed=18107,
    config={"num_embeddings": 12, "embedding_dim": 5, "mode": "max"},
    torch=lambda: nn.EmbeddingBag(12, 5, mode="max"), inputs=[("i64", (2, 6), 12)],
    gradcheck=False)  # eps 1e-2 moves some maxima
row(name="embedding_bag_mean_padding", layer="embedding_bag", seed=18108,
    config={"num_embeddings": 6, "embedding_dim": 3, "mode": "mean", "padding_idx": 2},
    torch=lambda: nn.EmbeddingBag(6, 3, mode="mean", padding_idx=2),
    inputs=[L([1, 2, 4, 2, 2, 0, 5, 2, 3]), L([0, 3, 5, 6])],
    nograd=lambda m: {"weight": pad_rows(m.weight, 2)})
row(name="embedding_bag_max_padding_last_offset", layer="embedding_bag", seed=18109,
    config={"num_embeddings": 8, "embedding_dim": 4, "mode": "max", "padding_idx": 0,
            "include_last_offset": True},
    torch=lambda: nn.EmbeddingBag(8, 4, mode="max", padding_idx=0, include_last_offset=True),
    inputs=[L([5, 0, 3, 0, 0, 7, 1, 6, 2]), L([0, 2, 3, 5, 9])],
    nograd=lambda m: {"weight": pad_rows(m.weight, 0)})
# include_last_offset with indices past the last offset (a 2-d input's last
# row, as PyTorch builds its offsets) is refused: PyTorch 1.13's backward reads
# past its buffers there in every mode (garbage gradients, or a corrupted heap
# for max), and its mean miscounts the last bag

# scale_grad_by_freq: scaled gradients, not derivatives (no finite
# differences). PyTorch 1.13's CPU EmbeddingBag divides index i's rows by the
# count of the i-th smallest distinct index (counts[indices[i]] where
# counts[index] is meant), so the twin is the documented semantics made of
# PyTorch ops: F.embedding(..., scale_grad_by_freq=True) summed per bag.
class BagByEmbedding(nn.Module):
    def __init__(self, num, dim, mode="mean", padding_idx=None):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num, dim))
        self.mode, self.padding_idx = mode, padding_idx
        if padding_idx is not None:
            with torch.no_grad():
                self.weight[padding_idx].fill_(0)

    def forward(self, x, offsets=None, psw=None):
        if x.dim() == 2:
            offsets = torch.arange(0, x.numel(), x.size(1))
            x = x.reshape(-1)
            psw = None if psw is None else psw.reshape(-1)
        e = F.embedding(x, self.weight, padding_idx=self.padding_idx, scale_grad_by_freq=True)
        if psw is not None:
            e = e * psw[:, None]
        ends = list(offsets[1:].tolist()) + [x.numel()]
        out = []
        for b, start in enumerate(offsets.tolist()):
            keep = [i for i in range(start, ends[b]) if x[i] != self.padding_idx]
            s = e[keep].sum(0) if keep else torch.zeros(e.shape[1])
            out.append(s / max(len(keep), 1) if self.mode == "mean" else s)
        return torch.stack(out)


row(name="embedding_bag_sum_psw_scale_grad", layer="embedding_bag", seed=18115, gradcheck=False,
    config={"num_embeddings": 5, "embedding_dim": 3, "mode": "sum", "scale_grad_by_freq": True},
    torch=lambda: BagByEmbedding(5, 3, mode="sum"), repr=False,
    inputs=[("i64", (10,), 5), L([0, 4, 4, 7]), A((10,))])
row(name="embedding_bag_mean_padding_scale_grad_2d", layer="embedding_bag", seed=18116, gradcheck=False,
    config={"num_embeddings": 6, "embedding_dim": 4, "padding_idx": 0, "scale_grad_by_freq": True},
    torch=lambda: BagByEmbedding(6, 4, padding_idx=0), repr=False,
    inputs=[("i64", (3, 5), 6)], nograd=lambda m: {"weight": pad_rows(m.weight, 0)})
row(name="embedding_bag_sum_psw_negpad", layer="embedding_bag", seed=18111,
    config={"num_embeddings": 6, "embedding_dim": 3, "mode": "sum", "padding_idx": -1},
    torch=lambda: nn.EmbeddingBag(6, 3, mode="sum", padding_idx=-1),
    inputs=[L([5, 1, 2, 5, 3, 0, 4]), L([0, 2, 4]), A((7,))],
    nograd=lambda m: {"weight": pad_rows(m.weight, 5)})
row(name="embedding_bag_mean_max_norm", layer="embedding_bag", seed=18112,
    config={"num_embeddings": 10, "embedding_dim": 4, "max_norm": 1.0, "norm_type": 2.5},
    torch=lambda: nn.EmbeddingBag(10, 4, max_norm=1.0, norm_type=2.5),
    inputs=[("i64", (3, 4), 10)], after_params=True, gradcheck=False)
row(name="embedding_bag_sum_larger", layer="embedding_bag", seed=18113,
    config={"num_embeddings": 50, "embedding_dim": 16, "mode": "sum"},
    torch=lambda: nn.EmbeddingBag(50, 16, mode="sum"),
    inputs=[("i64", (40,), 50), L([0, 5, 6, 20, 20, 33])])


# dropout ---------------------------------------------------------------------
# Train-mode masks come from nnmod's generator, not PyTorch's, so the golden
# rows are the deterministic ones: eval (the identity) and train with p = 0
# or p = 1; tests/layers/test_modes.c checks the masks' law and seeding.
for layer, tw, shape in (("dropout", nn.Dropout, (3, 5)), ("dropout2d", nn.Dropout2d, (2, 3, 4, 5))):
    row(name=f"{layer}_eval", layer=layer, config={"p": 0.3}, modes=("eval",),
        torch=(lambda tw=tw: tw(p=0.3)), inputs=[A(shape)])
    row(name=f"{layer}_p0", layer=layer, config={"p": 0.0},
        torch=(lambda tw=tw: tw(p=0.0)), inputs=[A(shape)])
    row(name=f"{layer}_p1", layer=layer, config={"p": 1.0, "inplace": False}, modes=("train",),
        torch=(lambda tw=tw: tw(p=1.0)), inputs=[A(shape)])


# losses (issue 18) -------------------------------------------------------------
# Every row has a seed of its own (no other row's seed moves) and inputs made by
# `inputs_fn(g)`: targets in their domain (probabilities, +-1 labels, class
# indices with ignored entries) and values kept away from the kinks the C
# gradcheck's finite differences (eps 1e-2) must not straddle. Losses have no
# train/eval difference: one mode each.
LOSS_SEED = 7180000


def loss_row(name, layer, config, torch_fn, inputs_fn, seed, **kw):
    row(name=name, layer=layer, config=config, torch=torch_fn, inputs_fn=inputs_fn,
        seed=LOSS_SEED + seed, modes=kw.pop("modes", ("train",)), **kw)


def pair_away(shape, kinks, scale=1.0):
    """(x, y) with |x - y| away from each kink (the pointwise losses' kinks
    are at |x - y| = 0 and |x - y| = beta)."""
    def f(g):
        x = torch.randn(shape, generator=g) * scale
        d = torch.randn(shape, generator=g) * 1.5
        d = away_from(d, sorted({k for b in kinks for k in (b, -b)}), 0.06)
        return [x, x + d]
    return f


def red_name(reduction):
    return {None: "mean"}.get(reduction, reduction)


for red in (None, "sum", "none"):
    cfg = {} if red is None else {"reduction": red}
    kw = {} if red is None else {"reduction": red}
    tag = red_name(red)
    loss_row(f"l1_loss_{tag}", "l1_loss", cfg, (lambda kw=kw: nn.L1Loss(**kw)),
             pair_away((3, 5), [0.0]), 1 + len(tag))
    loss_row(f"smooth_l1_loss_{tag}", "smooth_l1_loss", cfg,
             (lambda kw=kw: nn.SmoothL1Loss(**kw)), pair_away((4, 3, 2), [0.0, 1.0]), 11 + len(tag))
    loss_row(f"huber_loss_{tag}", "huber_loss", cfg, (lambda kw=kw: nn.HuberLoss(**kw)),
             pair_away((2, 7), [0.0, 1.0]), 21 + len(tag))
    loss_row(f"mse_loss_{tag}", "mse_loss", cfg, (lambda kw=kw: nn.MSELoss(**kw)),
             pair_away((3, 4), []), 31 + len(tag))
loss_row("smooth_l1_loss_beta0_5_1d", "smooth_l1_loss", {"beta": 0.5},
         lambda: nn.SmoothL1Loss(beta=0.5), pair_away((9,), [0.0, 0.5]), 41)
loss_row("smooth_l1_loss_beta0", "smooth_l1_loss", {"beta": 0.0, "reduction": "none"},
         lambda: nn.SmoothL1Loss(beta=0.0, reduction="none"), pair_away((2, 3), [0.0]), 42)
loss_row("smooth_l1_loss_beta2_scalar", "smooth_l1_loss", {"beta": 2},
         lambda: nn.SmoothL1Loss(beta=2), pair_away((), [0.0, 2.0]), 43)
loss_row("huber_loss_delta0_3", "huber_loss", {"delta": 0.3, "reduction": "sum"},
         lambda: nn.HuberLoss(delta=0.3, reduction="sum"), pair_away((3, 3), [0.0, 0.3]), 44)
loss_row("huber_loss_delta2_5_4d", "huber_loss", {"delta": 2.5},
         lambda: nn.HuberLoss(delta=2.5), pair_away((2, 1, 3, 2), [0.0, 2.5], 2.0), 45)


def bce_inputs(shape):
    def f(g):
        x = torch.rand(shape, generator=g) * 0.7 + 0.15  # log(x), log(1 - x): mild curvature
        y = torch.rand(shape, generator=g)
        return [x, y]
    return f


def logits_inputs(shape):
    def f(g):
        return [torch.randn(shape, generator=g) * 2.0, torch.rand(shape, generator=g)]
    return f


def wlist(n, seed, lo=0.2, hi=2.0):
    g = torch.Generator().manual_seed(LOSS_SEED + 900 + seed)
    return [float(v) for v in (torch.rand(n, generator=g) * (hi - lo) + lo)]


for red in (None, "sum", "none"):
    cfg = {} if red is None else {"reduction": red}
    kw = {} if red is None else {"reduction": red}
    tag = red_name(red)
    loss_row(f"bce_loss_{tag}", "bce_loss", cfg, (lambda kw=kw: nn.BCELoss(**kw)),
             bce_inputs((4, 3)), 51 + len(tag))
    loss_row(f"bce_with_logits_{tag}", "bce_with_logits", cfg,
             (lambda kw=kw: nn.BCEWithLogitsLoss(**kw)), logits_inputs((3, 4)), 61 + len(tag))
W4 = wlist(4, 1)
loss_row("bce_loss_weight", "bce_loss", {"weight": W4},
         lambda: nn.BCELoss(weight=torch.tensor(W4)), bce_inputs((3, 4)), 71)
loss_row("bce_loss_weight1_none_3d", "bce_loss", {"weight": [0.7], "reduction": "none"},
         lambda: nn.BCELoss(weight=torch.tensor([0.7]), reduction="none"),
         bce_inputs((2, 3, 2)), 72)
loss_row("bce_with_logits_pos_weight", "bce_with_logits", {"pos_weight": W4},
         lambda: nn.BCEWithLogitsLoss(pos_weight=torch.tensor(W4)), logits_inputs((5, 4)), 73)
loss_row("bce_with_logits_weight_pos_weight_none", "bce_with_logits",
         {"weight": wlist(4, 2), "pos_weight": W4, "reduction": "none"},
         lambda: nn.BCEWithLogitsLoss(weight=torch.tensor(wlist(4, 2)),
                                      pos_weight=torch.tensor(W4), reduction="none"),
         logits_inputs((2, 3, 4)), 74)
loss_row("bce_with_logits_weight_sum", "bce_with_logits", {"weight": wlist(4, 3), "reduction": "sum"},
         lambda: nn.BCEWithLogitsLoss(weight=torch.tensor(wlist(4, 3)), reduction="sum"),
         logits_inputs((3, 4)), 75)


def kl_inputs(shape, log_target):
    def f(g):
        x = F.log_softmax(torch.randn(shape, generator=g), dim=-1)
        t = torch.randn(shape, generator=g) * 0.3  # no tiny probability: log(t)'s
        t = F.log_softmax(t, dim=-1) if log_target else F.softmax(t, dim=-1)  # curvature
        return [x, t]
    return f


for red in (None, "batchmean", "sum", "none"):
    for lt in (False, True):
        cfg = {} if red is None else {"reduction": red}
        kw = {} if red is None else {"reduction": red}
        if lt:
            cfg["log_target"] = True
            kw["log_target"] = True
        tag = red_name(red) + ("_log_target" if lt else "")
        loss_row(f"kl_div_{tag}", "kl_div", cfg, (lambda kw=kw: nn.KLDivLoss(**kw)),
                 kl_inputs((3, 5), lt), 81 + len(tag) + 10 * lt)
loss_row("kl_div_batchmean_3d", "kl_div", {"reduction": "batchmean"},
         lambda: nn.KLDivLoss(reduction="batchmean"), kl_inputs((2, 3, 4), False), 101)


def pm1(shape, g, dtype=torch.float32):
    return (torch.randint(0, 2, shape, generator=g) * 2 - 1).to(dtype)


def cosine_inputs(n, d, dtype=torch.float32):
    def f(g):
        shp = (n, d) if n is not None else (d,)
        tshp = (n,) if n is not None else ()
        return [torch.randn(shp, generator=g), torch.randn(shp, generator=g), pm1(tshp, g, dtype)]
    return f


for red in (None, "sum", "none"):
    cfg = {} if red is None else {"reduction": red}
    kw = {} if red is None else {"reduction": red}
    tag = red_name(red)
    loss_row(f"cosine_embedding_loss_{tag}", "cosine_embedding_loss", cfg,
             (lambda kw=kw: nn.CosineEmbeddingLoss(**kw)), cosine_inputs(6, 4), 111 + len(tag))
loss_row("cosine_embedding_loss_margin", "cosine_embedding_loss",
         {"margin": -0.2, "reduction": "none"},
         lambda: nn.CosineEmbeddingLoss(margin=-0.2, reduction="none"), cosine_inputs(5, 3), 121)
loss_row("cosine_embedding_loss_unbatched", "cosine_embedding_loss", {"margin": 0.1},
         lambda: nn.CosineEmbeddingLoss(margin=0.1), cosine_inputs(None, 7), 122)
loss_row("cosine_embedding_loss_i64_target", "cosine_embedding_loss", {"reduction": "sum"},
         lambda: nn.CosineEmbeddingLoss(reduction="sum"), cosine_inputs(4, 3, torch.int64), 123)


def ranking_inputs(shape, margin):
    def f(g):
        x1 = torch.randn(shape, generator=g)
        y = pm1(shape, g)
        d = away_from(torch.randn(shape, generator=g), [margin, -margin], 0.08)
        return [x1, x1 - d, y]
    return f


for red in (None, "sum", "none"):
    cfg = {} if red is None else {"reduction": red}
    kw = {} if red is None else {"reduction": red}
    tag = red_name(red)
    loss_row(f"margin_ranking_loss_{tag}", "margin_ranking_loss", cfg,
             (lambda kw=kw: nn.MarginRankingLoss(**kw)), ranking_inputs((8,), 0.0), 131 + len(tag))
loss_row("margin_ranking_loss_margin_2d", "margin_ranking_loss", {"margin": 0.5},
         lambda: nn.MarginRankingLoss(margin=0.5), ranking_inputs((3, 4), 0.5), 141)


def multi_margin_inputs(n, c, margin):
    """x whose hinges margin - x[y] + x[j] all stay 0.06 away from 0."""
    def f(g):
        while True:
            shp = (n, c) if n is not None else (c,)
            x = torch.randn(shp, generator=g)
            y = torch.randint(0, c, (n,) if n is not None else (), generator=g)
            x2, y2 = x.reshape(-1, c), y.reshape(-1)
            z = margin - x2.gather(1, y2[:, None]) + x2
            z[torch.arange(len(y2)), y2] = 1.0
            if z.abs().min() > 0.06:
                return [x, y]
    return f


for red in (None, "sum", "none"):
    cfg = {} if red is None else {"reduction": red}
    kw = {} if red is None else {"reduction": red}
    tag = red_name(red)
    loss_row(f"multi_margin_loss_{tag}", "multi_margin_loss", cfg,
             (lambda kw=kw: nn.MultiMarginLoss(**kw)), multi_margin_inputs(5, 4, 1.0),
             151 + len(tag))
loss_row("multi_margin_loss_p2_margin", "multi_margin_loss", {"p": 2, "margin": 0.5},
         lambda: nn.MultiMarginLoss(p=2, margin=0.5), multi_margin_inputs(4, 5, 0.5), 161)
W5 = wlist(5, 4)
loss_row("multi_margin_loss_weight_none", "multi_margin_loss", {"weight": W5, "reduction": "none"},
         lambda: nn.MultiMarginLoss(weight=torch.tensor(W5), reduction="none"),
         multi_margin_inputs(6, 5, 1.0), 162)
loss_row("multi_margin_loss_unbatched", "multi_margin_loss", {"margin": 0.8, "reduction": "none"},
         lambda: nn.MultiMarginLoss(margin=0.8, reduction="none"),
         multi_margin_inputs(None, 6, 0.8), 163)


def class_inputs(shape, c_dim=1, ignore=None, probs=False, log_probs=False):
    """input [N, C, ...] (or [C]) and class indices (some == ignore) or
    class probabilities."""
    def f(g):
        x = torch.randn(shape, generator=g) * 1.5
        cd = 0 if len(shape) == 1 else c_dim
        if log_probs:
            x = F.log_softmax(x, dim=cd)
        C = shape[cd]
        if probs:
            return [x, F.softmax(torch.randn(shape, generator=g), dim=cd)]
        tshape = tuple(s for i, s in enumerate(shape) if i != cd)
        t = torch.randint(0, C, tshape, generator=g)
        if ignore is not None:
            m = torch.rand(tshape, generator=g) < 0.3
            t = torch.where(m, torch.full_like(t, ignore), t)
        return [x, t]
    return f


W3, W5b = wlist(3, 5), wlist(5, 6)
loss_row("cross_entropy_weight", "cross_entropy", {"weight": W5b},
         lambda: nn.CrossEntropyLoss(weight=torch.tensor(W5b)), class_inputs((6, 5)), 171)
loss_row("cross_entropy_weight_ignore_smoothing", "cross_entropy",
         {"weight": W5b, "ignore_index": 2, "label_smoothing": 0.2},
         lambda: nn.CrossEntropyLoss(weight=torch.tensor(W5b), ignore_index=2, label_smoothing=0.2),
         class_inputs((7, 5), ignore=2), 172)
loss_row("cross_entropy_weight_ignore_none", "cross_entropy",
         {"weight": W5b, "reduction": "none"},
         lambda: nn.CrossEntropyLoss(weight=torch.tensor(W5b), reduction="none"),
         class_inputs((6, 5), ignore=-100), 173)
loss_row("cross_entropy_weight_smoothing_sum", "cross_entropy",
         {"weight": W5b, "reduction": "sum", "label_smoothing": 0.1},
         lambda: nn.CrossEntropyLoss(weight=torch.tensor(W5b), reduction="sum", label_smoothing=0.1),
         class_inputs((4, 5)), 174)
loss_row("cross_entropy_weight_unbatched", "cross_entropy", {"weight": W3},
         lambda: nn.CrossEntropyLoss(weight=torch.tensor(W3)), class_inputs((3,)), 175)
for red in (None, "sum", "none"):
    cfg = {} if red is None else {"reduction": red}
    kw = {} if red is None else {"reduction": red}
    tag = red_name(red)
    loss_row(f"cross_entropy_probs_{tag}", "cross_entropy", cfg,
             (lambda kw=kw: nn.CrossEntropyLoss(**kw)), class_inputs((4, 3), probs=True),
             181 + len(tag))
loss_row("cross_entropy_probs_weight_smoothing", "cross_entropy",
         {"weight": W3, "label_smoothing": 0.3},
         lambda: nn.CrossEntropyLoss(weight=torch.tensor(W3), label_smoothing=0.3),
         class_inputs((5, 3), probs=True), 191)
loss_row("cross_entropy_probs_unbatched_none", "cross_entropy", {"reduction": "none"},
         lambda: nn.CrossEntropyLoss(reduction="none"), class_inputs((4,), probs=True), 192)
loss_row("cross_entropy_probs_4d", "cross_entropy", {},
         lambda: nn.CrossEntropyLoss(), class_inputs((2, 3, 2, 2), probs=True), 193)
loss_row("cross_entropy_kdim", "cross_entropy", {"ignore_index": 1},
         lambda: nn.CrossEntropyLoss(ignore_index=1), class_inputs((2, 4, 3), ignore=1), 194)
loss_row("cross_entropy_kdim_4d_none", "cross_entropy", {"reduction": "none", "label_smoothing": 0.1},
         lambda: nn.CrossEntropyLoss(reduction="none", label_smoothing=0.1),
         class_inputs((2, 3, 2, 3)), 195)
loss_row("cross_entropy_kdim_weight", "cross_entropy", {"weight": W3},
         lambda: nn.CrossEntropyLoss(weight=torch.tensor(W3)), class_inputs((3, 3, 4)), 196)
loss_row("nll_loss_weight", "nll_loss", {"weight": W5b},
         lambda: nn.NLLLoss(weight=torch.tensor(W5b)), class_inputs((6, 5), log_probs=True), 201)
loss_row("nll_loss_weight_ignore_sum", "nll_loss",
         {"weight": W5b, "ignore_index": 0, "reduction": "sum"},
         lambda: nn.NLLLoss(weight=torch.tensor(W5b), ignore_index=0, reduction="sum"),
         class_inputs((6, 5), ignore=0, log_probs=True), 202)
loss_row("nll_loss_kdim_none", "nll_loss", {"reduction": "none"},
         lambda: nn.NLLLoss(reduction="none"), class_inputs((2, 3, 5), log_probs=True), 203)


# ctc_loss: the twin is nn.CTCLoss with the derivative of the loss with
# respect to log_probs (the gradient nnmod gives, and finite differences
# check): PyTorch's CTC backward adds exp(log_probs) * grad, the part that
# cancels once the gradient goes through log_softmax, so for logits both
# agree (docs/layers.md).
class _CTCTrue(torch.autograd.Function):
    @staticmethod
    def forward(ctx, lp, tg, il, tl, blank, zi):
        ctx.save_for_backward(lp, tg, il, tl)
        ctx.blank, ctx.zi = blank, zi
        return F.ctc_loss(lp, tg, il, tl, blank=blank, reduction="none", zero_infinity=zi)

    @staticmethod
    def backward(ctx, g):
        lp, tg, il, tl = ctx.saved_tensors
        with torch.enable_grad():
            x = lp.detach().requires_grad_()
            nll = F.ctc_loss(x, tg, il, tl, blank=ctx.blank, reduction="none", zero_infinity=ctx.zi)
            gpt, = torch.autograd.grad(nll, x, g)
        steps = (torch.arange(lp.shape[0])[:, None] < il[None, :]).to(lp.dtype)[:, :, None]
        live = torch.isfinite(F.ctc_loss(lp, tg, il, tl, blank=ctx.blank, reduction="none"))
        return gpt - lp.exp() * (g * live)[None, :, None] * steps, None, None, None, None, None


class CTCLoss(nn.CTCLoss):  # prints as PyTorch's
    def forward(self, lp, tg, il, tl):
        unbatched = lp.dim() == 2
        if unbatched:
            lp, tg, il, tl = lp[:, None], tg[None], il[None], tl[None]
        nll = _CTCTrue.apply(lp, tg, il, tl, self.blank, self.zero_infinity)
        if self.reduction == "mean":
            return (nll / tl.clamp_min(1)).mean()
        if self.reduction == "sum":
            return nll.sum()
        return nll[0] if unbatched else nll


def _ctc_twin_agrees():
    """Through log_softmax the twin's gradients are PyTorch's own."""
    g = torch.Generator().manual_seed(1)
    z = torch.randn(6, 3, 5, generator=g, requires_grad=True)
    tg, il, tl = torch.tensor([[1, 2, 3], [2, 2, 1], [4, 1, 1]]), torch.tensor([6, 5, 6]), torch.tensor([3, 2, 1])
    for red in ("mean", "none"):
        a = CTCLoss(reduction=red)(F.log_softmax(z, 2), tg, il, tl)
        b = nn.CTCLoss(reduction=red)(F.log_softmax(z, 2), tg, il, tl)
        ga, = torch.autograd.grad(a.sum(), z)
        gb, = torch.autograd.grad(b.sum(), z)
        assert torch.allclose(a, b) and torch.allclose(ga, gb, atol=1e-6), "CTC twin"


_ctc_twin_agrees()


def ctc_inputs(T, N, C, S, blank=0, il=None, tl=None, concat=False, repeats=False):
    def f(g):
        lp = F.log_softmax(torch.randn(T, N, C, generator=g), dim=2)
        labels = [c for c in range(C) if c != blank]
        tg = torch.tensor(labels)[torch.randint(0, len(labels), (N, S), generator=g)]
        if repeats:
            tg[:, 1] = tg[:, 0]
        ilv = torch.tensor(il) if il is not None else torch.randint(T - 2, T + 1, (N,), generator=g)
        tlv = torch.tensor(tl) if tl is not None else torch.randint(1, S + 1, (N,), generator=g)
        if concat:
            tg = torch.cat([tg[b, :tlv[b]] for b in range(N)])
        return [lp, tg, ilv, tlv]
    return f


def ctc_unbatched(T, C, S):
    def f(g):
        lp, tg, il, tl = ctc_inputs(T, 1, C, S, il=[T], tl=[S])(g)
        return [lp[:, 0], tg[0], il[0], tl[0]]
    return f


loss_row("ctc_loss_mean", "ctc_loss", {}, lambda: CTCLoss(), ctc_inputs(6, 3, 5, 3), 211)
loss_row("ctc_loss_sum_blank2", "ctc_loss", {"blank": 2, "reduction": "sum"},
         lambda: CTCLoss(blank=2, reduction="sum"), ctc_inputs(7, 2, 4, 3, blank=2), 212)
loss_row("ctc_loss_none_concat", "ctc_loss", {"reduction": "none"},
         lambda: CTCLoss(reduction="none"), ctc_inputs(6, 3, 4, 3, concat=True), 213)
loss_row("ctc_loss_repeats", "ctc_loss", {"reduction": "none"},
         lambda: CTCLoss(reduction="none"), ctc_inputs(8, 2, 3, 3, repeats=True, il=[8, 6], tl=[3, 2]),
         214)
loss_row("ctc_loss_zero_infinity", "ctc_loss", {"zero_infinity": True, "reduction": "none"},
         lambda: CTCLoss(zero_infinity=True, reduction="none"),
         ctc_inputs(5, 3, 4, 3, repeats=True, il=[5, 2, 3], tl=[2, 3, 3]), 215)
loss_row("ctc_loss_unbatched", "ctc_loss", {"reduction": "none"},
         lambda: CTCLoss(reduction="none"), ctc_unbatched(6, 4, 2), 216)
loss_row("ctc_loss_longer", "ctc_loss", {"blank": 3}, lambda: CTCLoss(blank=3),
         ctc_inputs(20, 4, 6, 5, blank=3), 217)


# multihead_attention -----------------------------------------------------------
# The twin is nn.MultiheadAttention; nnmod's out_proj is a child linear module
# (children=), printed as Linear where PyTorch prints
# NonDynamicallyQuantizableLinear. Outputs: attn_output, and the weights
# averaged over heads when n_out is 2.
def mha_row(name, E, H, N, L, S, batch_first=False, bias=True, n_out=1, kpm=False,
            causal=False, dropout=0.0, modes=("train", "eval"), gradcheck=None):
    cfg = {"embed_dim": E, "num_heads": H, "batch_first": batch_first}
    if not bias:
        cfg["bias"] = False
    if causal:
        cfg["is_causal"] = True
    if dropout:
        cfg["dropout"] = dropout
    shp = (lambda T: (N, T, E)) if batch_first else (lambda T: (T, N, E))
    inputs = [A(shp(L)), A(shp(S)), A(shp(S))]
    if kpm:
        inputs.append(("mask", (N, S)))

    def call(m, q, k, v, mask=None):
        attn_mask = torch.triu(torch.ones(L, S, dtype=torch.bool), 1) if causal else None
        return m(q, k, v, key_padding_mask=mask, need_weights=n_out == 2, attn_mask=attn_mask)

    kw = {} if gradcheck is None else {"gradcheck": gradcheck}
    row(name=name, layer="multihead_attention", config=cfg, modes=modes, n_out=n_out,
        torch=lambda: nn.MultiheadAttention(E, H, dropout=dropout, bias=bias,
                                            batch_first=batch_first),
        call=call, inputs=inputs,
        children=[{"name": "out_proj", "type": "linear",
                   "config": {"in_features": E, "out_features": E, "bias": bias}}],
        repr_map=lambda s: s.replace("NonDynamicallyQuantizableLinear", "Linear"), **kw)


mha_row("mha_seq_first", E=8, H=2, N=3, L=5, S=5)
mha_row("mha_batch_first_cross_weights", E=6, H=3, N=2, L=4, S=7, batch_first=True, n_out=2)
mha_row("mha_key_padding_mask", E=8, H=4, N=2, L=3, S=5, batch_first=True, kpm=True, n_out=2)
mha_row("mha_causal_b1", E=4, H=1, N=1, L=6, S=6, batch_first=True, causal=True, gradcheck=True)
mha_row("mha_no_bias_odd", E=6, H=2, N=1, L=3, S=5, bias=False, gradcheck=True)
mha_row("mha_dropout_eval", E=8, H=2, N=2, L=3, S=3, dropout=0.3, modes=("eval",))


# part A's layers: convolution, pooling, reshaping, normalisation ----------------
row(name="conv1d_basic", layer="conv1d",
    config={"in_channels": 3, "out_channels": 4, "kernel_size": 3},
    torch=lambda: nn.Conv1d(3, 4, 3), inputs=[A((2, 3, 9))])
row(name="conv1d_same_dilated_b1", layer="conv1d",
    config={"in_channels": 2, "out_channels": 3, "kernel_size": 4, "padding": "same",
            "dilation": 2, "bias": False},
    torch=lambda: nn.Conv1d(2, 3, 4, padding="same", dilation=2, bias=False),
    inputs=[A((1, 2, 11))])
row(name="conv2d_stride2_odd", layer="conv2d",
    config={"in_channels": 3, "out_channels": 4, "kernel_size": 3, "stride": 2, "padding": 1},
    torch=lambda: nn.Conv2d(3, 4, 3, stride=2, padding=1), inputs=[A((2, 3, 7, 9))])
row(name="conv2d_depthwise_b1", layer="conv2d",
    config={"in_channels": 4, "out_channels": 8, "kernel_size": [3, 2], "groups": 4,
            "padding": [1, 0]},
    torch=lambda: nn.Conv2d(4, 8, (3, 2), groups=4, padding=(1, 0)), inputs=[A((1, 4, 5, 6))])
row(name="conv2d_groups2_valid", layer="conv2d",
    config={"in_channels": 4, "out_channels": 6, "kernel_size": 2, "groups": 2,
            "padding": "valid", "dilation": [1, 2]},
    torch=lambda: nn.Conv2d(4, 6, 2, groups=2, padding="valid", dilation=(1, 2)),
    inputs=[A((2, 4, 5, 7))])
row(name="conv_transpose2d_stride2", layer="conv_transpose2d",
    config={"in_channels": 3, "out_channels": 2, "kernel_size": 3, "stride": 2, "padding": 1,
            "output_padding": 1},
    torch=lambda: nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1, output_padding=1),
    inputs=[A((2, 3, 4, 5))])
row(name="max_pool2d_2", layer="max_pool2d", config={"kernel_size": 2},
    torch=lambda: nn.MaxPool2d(2), inputs=[("distinct", (2, 3, 6, 7))])
row(name="max_pool2d_pad_ceil_b1", layer="max_pool2d",
    config={"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True},
    torch=lambda: nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
    inputs=[("distinct", (1, 2, 7, 8))])
row(name="avg_pool2d_pad", layer="avg_pool2d",
    config={"kernel_size": [3, 2], "stride": [2, 1], "padding": [1, 0],
            "count_include_pad": False},
    torch=lambda: nn.AvgPool2d((3, 2), stride=(2, 1), padding=(1, 0), count_include_pad=False),
    inputs=[A((2, 3, 7, 5))])
row(name="adaptive_avg_pool2d_odd", layer="adaptive_avg_pool2d", config={"output_size": [3, 2]},
    torch=lambda: nn.AdaptiveAvgPool2d((3, 2)), inputs=[A((2, 3, 7, 5))])
row(name="flatten_default", layer="flatten", config={},
    torch=lambda: nn.Flatten(), inputs=[A((2, 3, 4, 5))])
row(name="unflatten_neg", layer="unflatten", config={"dim": 1, "unflattened_size": [2, -1]},
    torch=lambda: nn.Unflatten(1, (2, -1)), inputs=[A((3, 6, 2))])
row(name="batch_norm1d_2d", layer="batch_norm1d", config={"num_features": 5},
    torch=lambda: nn.BatchNorm1d(5), inputs=[A((7, 5))])
row(name="batch_norm1d_3d_cumulative", layer="batch_norm1d",
    config={"num_features": 3, "momentum": "none", "eps": 1e-3},
    torch=lambda: nn.BatchNorm1d(3, momentum=None, eps=1e-3), inputs=[A((4, 3, 6))])
row(name="batch_norm2d", layer="batch_norm2d", config={"num_features": 4, "momentum": 0.3},
    torch=lambda: nn.BatchNorm2d(4, momentum=0.3), inputs=[A((3, 4, 5, 3), 2.0)])
row(name="batch_norm2d_no_affine", layer="batch_norm2d",
    config={"num_features": 2, "affine": False},
    torch=lambda: nn.BatchNorm2d(2, affine=False), inputs=[A((2, 2, 3, 3))])
row(name="layer_norm_last", layer="layer_norm", config={"normalized_shape": 6},
    torch=lambda: nn.LayerNorm(6), inputs=[A((2, 3, 6))])
row(name="layer_norm_2dims_b1", layer="layer_norm",
    config={"normalized_shape": [3, 4], "eps": 1e-3, "elementwise_affine": False},
    torch=lambda: nn.LayerNorm((3, 4), eps=1e-3, elementwise_affine=False),
    inputs=[A((1, 3, 4))])
row(name="group_norm", layer="group_norm", config={"num_groups": 2, "num_channels": 6},
    torch=lambda: nn.GroupNorm(2, 6), inputs=[A((2, 6, 3, 2))])


# multihead_attention, part 2 (appended last so that the rows above keep their
# seeds): attn_mask, the 1.13 mask merges, kdim/vdim, add_bias_kv,
# add_zero_attn, unbatched inputs. Mask inputs: ("empty",) is an absent mask
# (None in PyTorch, a 0-element tensor in nnmod). Eval mode (train=False)
# unless a row says otherwise.
def mha2_row(name, E, H, N, L, S, kdim=None, vdim=None, batch_first=False, bias=True,
             add_bias_kv=False, add_zero_attn=False, unbatched=False, kpm=None, am=None,
             causal=False, n_out=2, modes=("eval",), gradcheck=None):
    cfg = {"embed_dim": E, "num_heads": H}
    for k, v in (("kdim", kdim), ("vdim", vdim)):
        if v is not None:
            cfg[k] = v
    for k, v, d in (("batch_first", batch_first, False), ("bias", bias, True),
                    ("add_bias_kv", add_bias_kv, False), ("add_zero_attn", add_zero_attn, False),
                    ("is_causal", causal, False)):
        if v != d:
            cfg[k] = v
    Ek, Ev = kdim or E, vdim or E
    if unbatched:
        shp = lambda T, C: (T, C)  # noqa: E731
    elif batch_first:
        shp = lambda T, C: (N, T, C)  # noqa: E731
    else:
        shp = lambda T, C: (T, N, C)  # noqa: E731
    inputs = [A(shp(L, E)), A(shp(S, Ek)), A(shp(S, Ev))]
    kshape = (S,) if unbatched else (N, S)
    ashape = {"2": (L, S), "3": (H if unbatched else N * H, L, S)}
    if kpm is not None or am is not None:
        inputs.append(("empty",) if kpm is None else (kpm, kshape))
    if am is not None:  # ("bool"|"float"|"u8"|"full", "2"|"3")
        kind, nd = am
        inputs.append({"bool": ("amask", ashape[nd]), "u8": ("amask", ashape[nd], torch.uint8),
                       "float": ("f", ashape[nd]), "full": ("fullmask", ashape[nd])}[kind])

    def call(m, q, k, v, mask=None, amask=None):
        mask = None if mask is None or mask.numel() == 0 else mask
        if causal:
            amask = torch.triu(torch.ones(L, S, dtype=torch.bool), 1)
        return m(q, k, v, key_padding_mask=mask, need_weights=n_out == 2, attn_mask=amask)

    kw = {} if gradcheck is None else {"gradcheck": gradcheck}
    row(name=name, layer="multihead_attention", config=cfg, modes=modes, n_out=n_out,
        torch=lambda: nn.MultiheadAttention(E, H, bias=bias, add_bias_kv=add_bias_kv,
                                            add_zero_attn=add_zero_attn, kdim=kdim, vdim=vdim,
                                            batch_first=batch_first),
        call=call, inputs=inputs,
        children=[{"name": "out_proj", "type": "linear",
                   "config": {"in_features": E, "out_features": E, "bias": bias}}],
        repr_map=lambda s: s.replace("NonDynamicallyQuantizableLinear", "Linear"), **kw)


mha2_row("mha_attn_mask_bool_2d", E=8, H=2, N=2, L=3, S=4, am=("bool", "2"),
         modes=("train", "eval"))
mha2_row("mha_attn_mask_float_3d_kpm_bool", E=8, H=2, N=2, L=3, S=5, batch_first=True,
         kpm="mask", am=("float", "3"))
mha2_row("mha_attn_mask_u8_3d_alone", E=6, H=3, N=2, L=2, S=3, am=("u8", "3"))
mha2_row("mha_attn_mask_float_alone_b1", E=4, H=2, N=1, L=4, S=3, am=("float", "2"),
         gradcheck=True)
mha2_row("mha_kpm_float", E=8, H=4, N=2, L=3, S=5, kpm="fkpm")
mha2_row("mha_kpm_float_or_attn_mask_bool", E=8, H=2, N=2, L=3, S=5, kpm="fkpm",
         am=("bool", "3"))
mha2_row("mha_fully_masked_row_nan", E=4, H=2, N=2, L=3, S=4, am=("full", "2"))
mha2_row("mha_kdim_vdim", E=6, H=2, N=2, L=3, S=4, kdim=4, vdim=5, gradcheck=True,
         modes=("train", "eval"))
mha2_row("mha_kdim_only_no_bias", E=4, H=2, N=1, L=2, S=3, kdim=3, bias=False,
         batch_first=True)
mha2_row("mha_kdim_equal_vdim_equal", E=4, H=1, N=2, L=2, S=3, kdim=4, vdim=4)
mha2_row("mha_add_bias_kv_masks", E=8, H=2, N=2, L=3, S=4, add_bias_kv=True, kpm="mask",
         am=("bool", "2"), modes=("train", "eval"))
mha2_row("mha_add_zero_attn_float_masks", E=8, H=4, N=2, L=3, S=4, add_zero_attn=True,
         kpm="fkpm", batch_first=True)
mha2_row("mha_add_zero_attn_attn_mask_3d", E=6, H=2, N=2, L=2, S=3, add_zero_attn=True,
         am=("float", "3"))
mha2_row("mha_bias_kv_zero_attn_kdim_vdim", E=4, H=2, N=2, L=3, S=2, kdim=3, vdim=5,
         add_bias_kv=True, add_zero_attn=True, batch_first=True, kpm="mask",
         am=("float", "2"), gradcheck=True)
mha2_row("mha_unbatched", E=6, H=2, N=1, L=3, S=4, unbatched=True, modes=("train", "eval"))
mha2_row("mha_unbatched_masks_bias_kv_zero", E=4, H=2, N=1, L=3, S=4, unbatched=True,
         batch_first=True, kpm="mask", am=("float", "3"), add_bias_kv=True, add_zero_attn=True,
         gradcheck=True)
mha2_row("mha_unbatched_causal_kdim", E=4, H=1, N=1, L=4, S=4, unbatched=True, causal=True,
         kdim=2, vdim=3, n_out=1)
mha2_row("mha_seq_first_one_output_kpm_empty", E=4, H=2, N=2, L=2, S=3, kpm=None,
         am=("bool", "3"), n_out=1)

# activations composed from host ops (issue 18; appended so earlier rows keep
# their seeds). Inputs sit 0.05 away from the kinks (finite differences).
# An inplace=True twin runs on a copy of the leaf (autograd refuses in-place
# ops on a leaf); nnmod accepts the key and prints it as PyTorch does.
def _on_clone(m, x):
    return m(x.clone())


for shape, tag in (((2, 3, 5), "3d"), ((1, 7), "b1")):
    row(name=f"relu6_{tag}", layer="relu6", config={},
        torch=lambda: nn.ReLU6(), inputs=[A(shape, 4.0, [0.0, 6.0])])
    row(name=f"hardsigmoid_{tag}", layer="hardsigmoid", config={},
        torch=lambda: nn.Hardsigmoid(), inputs=[A(shape, 4.0, [-3.0, 3.0])])
    row(name=f"hardtanh_{tag}", layer="hardtanh", config={},
        torch=lambda: nn.Hardtanh(), inputs=[A(shape, 2.0, [-1.0, 1.0])])
    row(name=f"mish_{tag}", layer="mish", config={},
        torch=lambda: nn.Mish(), inputs=[A(shape, 3.0)])
    row(name=f"selu_{tag}", layer="selu", config={},
        torch=lambda: nn.SELU(), inputs=[A(shape, 2.0, [0.0])])
    row(name=f"celu_{tag}", layer="celu", config={},
        torch=lambda: nn.CELU(), inputs=[A(shape, 2.0, [0.0])])
    row(name=f"softplus_{tag}", layer="softplus", config={},
        torch=lambda: nn.Softplus(), inputs=[A(shape, 3.0)])
    row(name=f"logsigmoid_{tag}", layer="logsigmoid", config={},
        torch=lambda: nn.LogSigmoid(), inputs=[A(shape, 3.0)])
    row(name=f"softsign_{tag}", layer="softsign", config={},
        torch=lambda: nn.Softsign(), inputs=[A(shape, 2.0)])
    row(name=f"tanhshrink_{tag}", layer="tanhshrink", config={},
        torch=lambda: nn.Tanhshrink(), inputs=[A(shape, 2.0)])
row(name="relu6_inplace", call=_on_clone, layer="relu6", config={"inplace": True},
    torch=lambda: nn.ReLU6(inplace=True), inputs=[A((3, 4), 4.0, [0.0, 6.0])])
row(name="hardtanh_int_bounds", layer="hardtanh", config={"min_val": -2, "max_val": 3},
    torch=lambda: nn.Hardtanh(-2, 3), inputs=[A((2, 3, 4), 3.0, [-2.0, 3.0])])
row(name="hardtanh_float_bounds_inplace", call=_on_clone, layer="hardtanh",
    config={"min_val": -0.5, "max_val": 2.0, "inplace": True},
    torch=lambda: nn.Hardtanh(-0.5, 2.0, inplace=True), inputs=[A((4, 3), 2.0, [-0.5, 2.0])])
row(name="prelu_default", layer="prelu", config={},
    torch=lambda: nn.PReLU(), inputs=[A((2, 3, 4), 1.0, [0.0])])
row(name="prelu_channels_3d", layer="prelu", config={"num_parameters": 3},
    torch=lambda: nn.PReLU(3), inputs=[A((2, 3, 5), 1.0, [0.0])])
row(name="prelu_channels_2d_init", layer="prelu", config={"num_parameters": 4, "init": 0.1},
    torch=lambda: nn.PReLU(4, 0.1), inputs=[A((3, 4), 1.0, [0.0])])
row(name="prelu_channels_4d_b1", layer="prelu", config={"num_parameters": 2},
    torch=lambda: nn.PReLU(2), inputs=[A((1, 2, 3, 3), 1.0, [0.0])])
row(name="softplus_beta_threshold", layer="softplus", config={"beta": 2.0, "threshold": 3.0},
    torch=lambda: nn.Softplus(2.0, 3.0), inputs=[A((3, 5), 2.0, [1.5])])
row(name="softplus_int_beta", layer="softplus", config={"beta": 2, "threshold": 10},
    torch=lambda: nn.Softplus(2, 10), inputs=[A((4, 3), 3.0)])
row(name="selu_inplace", call=_on_clone, layer="selu", config={"inplace": True},
    torch=lambda: nn.SELU(inplace=True), inputs=[A((3, 3), 2.0, [0.0])])
row(name="celu_alpha", call=_on_clone, layer="celu", config={"alpha": 0.5, "inplace": True},
    torch=lambda: nn.CELU(0.5, inplace=True), inputs=[A((3, 5), 2.0, [0.0])])
row(name="mish_inplace", call=_on_clone, layer="mish", config={"inplace": True},
    torch=lambda: nn.Mish(inplace=True), inputs=[A((2, 5), 3.0)])
for layer, tw in (("softplus", nn.Softplus), ("mish", nn.Mish), ("selu", nn.SELU),
                  ("celu", nn.CELU), ("logsigmoid", nn.LogSigmoid), ("softsign", nn.Softsign)):
    # large magnitudes: the branch not taken must not turn an inf into a NaN
    row(name=f"{layer}_large", layer=layer, config={}, torch=(lambda tw=tw: tw()),
        inputs=[A((4, 5), 40.0, [0.0])])
row(name="glu_default", layer="glu", config={},
    torch=lambda: nn.GLU(), inputs=[A((3, 6), 2.0)])
row(name="glu_dim1", layer="glu", config={"dim": 1},
    torch=lambda: nn.GLU(1), inputs=[A((2, 4, 3), 2.0)])
row(name="glu_1d", layer="glu", config={"dim": 0},
    torch=lambda: nn.GLU(0), inputs=[A((8,), 2.0)])
row(name="threshold_float", layer="threshold", config={"threshold": 0.1, "value": 20.0},
    torch=lambda: nn.Threshold(0.1, 20.0), inputs=[A((3, 5), 1.0, [0.1])])
row(name="threshold_int_inplace", call=_on_clone, layer="threshold",
    config={"threshold": 1, "value": 2, "inplace": True},
    torch=lambda: nn.Threshold(1, 2, inplace=True), inputs=[A((2, 3, 4), 2.0, [1.0])])
for dim, shape, tag in ((1, (2, 3, 4), "mid"), (-1, (2, 5), "last"), (None, (3, 5), "none2d"),
                        (None, (2, 3, 4), "none3d")):
    cfg = {} if dim is None else {"dim": dim}
    row(name=f"softmin_{tag}", layer="softmin", config=cfg,
        torch=(lambda d=dim: nn.Softmin(dim=d)), inputs=[A(shape, 2.0)])


# stochastic_depth (torchvision.ops.StochasticDepth): the deterministic rows
# (eval, p = 0, p = 1); tests/layers/test_modes.c checks the draws.
def _stochastic_depth(p, mode):
    from torchvision.ops import StochasticDepth
    return StochasticDepth(p, mode)


row(name="stochastic_depth_eval_row", layer="stochastic_depth", config={"p": 0.2, "mode": "row"},
    modes=("eval",), torch=lambda: _stochastic_depth(0.2, "row"), inputs=[A((3, 4, 5))])
row(name="stochastic_depth_eval_batch", layer="stochastic_depth",
    config={"p": 0.5, "mode": "batch"}, modes=("eval",),
    torch=lambda: _stochastic_depth(0.5, "batch"), inputs=[A((2, 3))])
row(name="stochastic_depth_p0", layer="stochastic_depth", config={"p": 0, "mode": "batch"},
    torch=lambda: _stochastic_depth(0, "batch"), inputs=[A((2, 3, 2, 2))])
row(name="stochastic_depth_p1", layer="stochastic_depth", config={"p": 1.0, "mode": "row"},
    modes=("train",), torch=lambda: _stochastic_depth(1.0, "row"), inputs=[A((3, 2, 2))])

# resampling and padding (plugins/resample; issue 18) ---------------------------
def up_row(name, shape, size=None, scale_factor=None, mode="nearest", align_corners=None,
           recompute=None, **kw):
    cfg = {"mode": mode}
    if size is not None:
        cfg["size"] = list(size) if isinstance(size, tuple) else size
    if scale_factor is not None:
        cfg["scale_factor"] = list(scale_factor) if isinstance(scale_factor, tuple) else scale_factor
    if align_corners is not None:
        cfg["align_corners"] = align_corners
    if recompute is not None:
        cfg["recompute_scale_factor"] = recompute
    row(name=name, layer="upsample", config=cfg,
        torch=lambda: nn.Upsample(size=size, scale_factor=scale_factor, mode=mode,
                                  align_corners=align_corners, recompute_scale_factor=recompute),
        inputs=[A(shape)], **kw)


up_row("upsample_nearest_x2", (1, 2, 3, 4), scale_factor=2)
up_row("upsample_nearest_size", (2, 3, 4, 5), size=(5, 7))
up_row("upsample_nearest_1d_frac", (2, 3, 5), scale_factor=1.5)
up_row("upsample_nearest_3d", (1, 2, 2, 3, 2), scale_factor=2)
up_row("upsample_nearest_down", (1, 2, 7, 6), size=(3, 4))
up_row("upsample_nearest_exact", (2, 3, 5), size=7, mode="nearest-exact")
up_row("upsample_linear_x2", (2, 3, 5), scale_factor=2, mode="linear")
up_row("upsample_linear_align", (2, 3, 5), size=9, mode="linear", align_corners=True)
up_row("upsample_bilinear_x2", (1, 2, 3, 4), scale_factor=2, mode="bilinear")
up_row("upsample_bilinear_size_align", (2, 2, 3, 4), size=(5, 3), mode="bilinear", align_corners=True)
up_row("upsample_bilinear_tuple_scale", (1, 2, 3, 4), scale_factor=(1.5, 2.5), mode="bilinear")
up_row("upsample_bilinear_recompute", (1, 2, 3, 5), scale_factor=1.7, mode="bilinear",
       recompute=True)
up_row("upsample_bicubic_x2", (1, 2, 4, 3), scale_factor=2, mode="bicubic")
up_row("upsample_bicubic_size_align", (1, 2, 4, 3), size=(6, 5), mode="bicubic", align_corners=True)
up_row("upsample_bicubic_frac", (2, 1, 5, 4), scale_factor=1.7, mode="bicubic")
up_row("upsample_trilinear_x2", (1, 2, 2, 3, 2), scale_factor=2, mode="trilinear")
up_row("upsample_area", (1, 2, 5, 7), size=(2, 3), mode="area")


# antialias (F.interpolate's keyword; issue 18): no module twin, so no repr
def aa_row(name, shape, seed, size=None, scale_factor=None, mode="bilinear", align_corners=None, **kw):
    cfg = {"mode": mode, "antialias": True}
    if size is not None:
        cfg["size"] = list(size) if isinstance(size, tuple) else size
    if scale_factor is not None:
        cfg["scale_factor"] = list(scale_factor) if isinstance(scale_factor, tuple) else scale_factor
    if align_corners is not None:
        cfg["align_corners"] = align_corners
    row(name=name, layer="upsample", config=cfg, repr=False, seed=seed,
        torch=lambda: Fn(lambda x: F.interpolate(x, size=size, scale_factor=scale_factor, mode=mode,
                                                 align_corners=align_corners, antialias=True)),
        inputs=[A(shape)], **kw)


aa_row("upsample_aa_bilinear_down_size", (1, 2, 9, 11), 18401, size=(4, 3))
aa_row("upsample_aa_bilinear_down_scale", (2, 1, 10, 7), 18402, scale_factor=0.4)
aa_row("upsample_aa_bilinear_up", (1, 2, 3, 4), 18403, scale_factor=(2, 1.5))
aa_row("upsample_aa_bilinear_align", (1, 1, 8, 9), 18404, size=(3, 5), align_corners=True)
aa_row("upsample_aa_bicubic_down", (1, 2, 12, 9), 18405, size=(5, 4), mode="bicubic")
aa_row("upsample_aa_bicubic_down_scale", (2, 1, 9, 9), 18406, scale_factor=0.3, mode="bicubic")
aa_row("upsample_aa_bicubic_mixed", (1, 1, 5, 12), 18407, size=(8, 5), mode="bicubic")
aa_row("upsample_aa_bilinear_larger", (1, 3, 32, 24), 18408, size=(7, 10), rtol=2e-4)
for r, shape, tag in ((2, (1, 8, 3, 2), "r2"), (3, (2, 9, 2, 2), "r3"), (2, (8, 2, 3), "3d"),
                      (2, (2, 1, 4, 2, 2), "5d")):
    row(name=f"pixel_shuffle_{tag}", layer="pixel_shuffle", config={"upscale_factor": r},
        torch=(lambda r=r: nn.PixelShuffle(r)), inputs=[A(shape)])
for r, shape, tag in ((2, (1, 2, 4, 6), "r2"), (3, (2, 1, 3, 6), "r3")):
    row(name=f"pixel_unshuffle_{tag}", layer="pixel_unshuffle", config={"downscale_factor": r},
        torch=(lambda r=r: nn.PixelUnshuffle(r)), inputs=[A(shape)])
row(name="zero_pad2d_int", layer="zero_pad2d", config={"padding": 1},
    torch=lambda: nn.ZeroPad2d(1), inputs=[A((1, 2, 3, 4))])
row(name="zero_pad2d_tuple_3d", layer="zero_pad2d", config={"padding": [1, 2, 0, 3]},
    torch=lambda: nn.ZeroPad2d((1, 2, 0, 3)), inputs=[A((2, 3, 4))])
row(name="zero_pad2d_negative", layer="zero_pad2d", config={"padding": [-1, 2, 1, -2]},
    torch=lambda: nn.ZeroPad2d((-1, 2, 1, -2)), inputs=[A((1, 2, 4, 5))])
row(name="constant_pad1d", layer="constant_pad1d", config={"padding": 2, "value": 3.5},
    torch=lambda: nn.ConstantPad1d(2, 3.5), inputs=[A((2, 3, 4))])
row(name="constant_pad2d_int_value", layer="constant_pad2d",
    config={"padding": [1, 0, 2, 1], "value": 0},
    torch=lambda: nn.ConstantPad2d((1, 0, 2, 1), 0), inputs=[A((1, 2, 3, 3))])
row(name="constant_pad3d", layer="constant_pad3d", config={"padding": 1, "value": -1.0},
    torch=lambda: nn.ConstantPad3d(1, -1.0), inputs=[A((1, 2, 2, 3, 2))])
row(name="reflection_pad1d", layer="reflection_pad1d", config={"padding": 2},
    torch=lambda: nn.ReflectionPad1d(2), inputs=[A((2, 3, 5))])
row(name="reflection_pad1d_unbatched", layer="reflection_pad1d", config={"padding": [3, 1]},
    torch=lambda: nn.ReflectionPad1d((3, 1)), inputs=[A((3, 6))])
row(name="reflection_pad2d", layer="reflection_pad2d", config={"padding": [1, 2, 0, 1]},
    torch=lambda: nn.ReflectionPad2d((1, 2, 0, 1)), inputs=[A((1, 2, 4, 5))])
row(name="reflection_pad2d_int", layer="reflection_pad2d", config={"padding": 2},
    torch=lambda: nn.ReflectionPad2d(2), inputs=[A((2, 1, 3, 3))])
row(name="replication_pad1d", layer="replication_pad1d", config={"padding": [3, 1]},
    torch=lambda: nn.ReplicationPad1d((3, 1)), inputs=[A((2, 3, 4))])
row(name="replication_pad2d", layer="replication_pad2d", config={"padding": 2},
    torch=lambda: nn.ReplicationPad2d(2), inputs=[A((1, 2, 3, 3))])
row(name="replication_pad2d_unbatched", layer="replication_pad2d", config={"padding": [0, 1, 3, 2]},
    torch=lambda: nn.ReplicationPad2d((0, 1, 3, 2)), inputs=[A((2, 3, 4))])

# the 1-d / 3-d family (issue 18) ---------------------------------------------
row(name="conv3d_basic", layer="conv3d",
    config={"in_channels": 2, "out_channels": 3, "kernel_size": 2},
    torch=lambda: nn.Conv3d(2, 3, 2), inputs=[A((1, 2, 3, 4, 3))])
row(name="conv3d_groups_stride_pad", layer="conv3d",
    config={"in_channels": 2, "out_channels": 4, "kernel_size": [3, 1, 2], "stride": [1, 1, 2],
            "padding": 1, "groups": 2},
    torch=lambda: nn.Conv3d(2, 4, (3, 1, 2), stride=(1, 1, 2), padding=1, groups=2),
    inputs=[A((2, 2, 3, 3, 4))])
row(name="conv3d_unbatched_no_bias", layer="conv3d",
    config={"in_channels": 1, "out_channels": 2, "kernel_size": 2, "bias": False},
    torch=lambda: nn.Conv3d(1, 2, 2, bias=False), inputs=[A((1, 3, 2, 3))])
row(name="conv_transpose1d_stride2", layer="conv_transpose1d",
    config={"in_channels": 3, "out_channels": 2, "kernel_size": 3, "stride": 2, "padding": 1,
            "output_padding": 1},
    torch=lambda: nn.ConvTranspose1d(3, 2, 3, stride=2, padding=1, output_padding=1),
    inputs=[A((2, 3, 5))])
row(name="conv_transpose1d_unbatched", layer="conv_transpose1d",
    config={"in_channels": 3, "out_channels": 4, "kernel_size": 2, "groups": 1, "dilation": 2},
    torch=lambda: nn.ConvTranspose1d(3, 4, 2, dilation=2), inputs=[A((3, 4))])
row(name="conv_transpose3d_stride2", layer="conv_transpose3d",
    config={"in_channels": 2, "out_channels": 3, "kernel_size": 2, "stride": 2},
    torch=lambda: nn.ConvTranspose3d(2, 3, 2, stride=2), inputs=[A((1, 2, 2, 3, 2))])
for mode in ("reflect", "replicate", "circular"):
    row(name=f"conv2d_padding_mode_{mode}", layer="conv2d",
        config={"in_channels": 2, "out_channels": 3, "kernel_size": 3, "padding": [1, 2],
                "padding_mode": mode},
        torch=(lambda mode=mode: nn.Conv2d(2, 3, 3, padding=(1, 2), padding_mode=mode)),
        inputs=[A((1, 2, 4, 5))])
row(name="conv1d_padding_mode_reflect_same", layer="conv1d",
    config={"in_channels": 2, "out_channels": 2, "kernel_size": 4, "padding": "same",
            "padding_mode": "reflect"},
    torch=lambda: nn.Conv1d(2, 2, 4, padding="same", padding_mode="reflect"), inputs=[A((2, 2, 7))])
row(name="conv1d_padding_mode_circular_stride", layer="conv1d",
    config={"in_channels": 2, "out_channels": 3, "kernel_size": 3, "padding": 2,
            "padding_mode": "circular", "stride": 2},
    torch=lambda: nn.Conv1d(2, 3, 3, padding=2, padding_mode="circular", stride=2),
    inputs=[A((1, 2, 6))])
row(name="conv3d_padding_mode_replicate", layer="conv3d",
    config={"in_channels": 1, "out_channels": 2, "kernel_size": 3, "padding": 1,
            "padding_mode": "replicate"},
    torch=lambda: nn.Conv3d(1, 2, 3, padding=1, padding_mode="replicate"),
    inputs=[A((1, 1, 3, 3, 4))])
row(name="max_pool1d_pad_stride", layer="max_pool1d",
    config={"kernel_size": 3, "stride": 2, "padding": 1},
    torch=lambda: nn.MaxPool1d(3, 2, 1), inputs=[("distinct", (2, 3, 9))])
row(name="max_pool1d_dilation_ceil", layer="max_pool1d",
    config={"kernel_size": 3, "stride": 2, "dilation": 2, "ceil_mode": True},
    torch=lambda: nn.MaxPool1d(3, 2, dilation=2, ceil_mode=True), inputs=[("distinct", (1, 2, 10))])
row(name="max_pool3d_2", layer="max_pool3d", config={"kernel_size": 2},
    torch=lambda: nn.MaxPool3d(2), inputs=[("distinct", (1, 2, 4, 4, 4))])
row(name="max_pool3d_tuple_unbatched", layer="max_pool3d",
    config={"kernel_size": [2, 1, 2], "stride": [1, 1, 2]},
    torch=lambda: nn.MaxPool3d((2, 1, 2), (1, 1, 2)), inputs=[("distinct", (2, 3, 2, 4))])
# return_indices (issue 18): the second output is PyTorch's i64 flat index in
# the input's plane; ties and -inf windows take the first position
row(name="max_pool2d_indices_pad_ceil", layer="max_pool2d", seed=18201, n_out=2,
    config={"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True, "return_indices": True},
    torch=lambda: nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True, return_indices=True),
    inputs=[("distinct", (2, 3, 7, 8))])
row(name="max_pool2d_indices_dilation_unbatched", layer="max_pool2d", seed=18202, n_out=2,
    config={"kernel_size": [2, 3], "stride": [1, 2], "dilation": [2, 1], "return_indices": True},
    torch=lambda: nn.MaxPool2d((2, 3), (1, 2), dilation=(2, 1), return_indices=True),
    inputs=[("distinct", (2, 6, 7))])
row(name="max_pool2d_indices_ties", layer="max_pool2d", seed=18203, n_out=2, gradcheck=False,
    config={"kernel_size": 2, "stride": 1, "padding": 1, "return_indices": True},
    torch=lambda: nn.MaxPool2d(2, 1, 1, return_indices=True),
    inputs=[("ties", (1, 2, 4, 5))])
row(name="max_pool2d_indices_neginf", layer="max_pool2d", seed=18204, n_out=2, gradcheck=False,
    config={"kernel_size": 3, "stride": 2, "padding": 1, "return_indices": True},
    torch=lambda: nn.MaxPool2d(3, 2, 1, return_indices=True),
    inputs=[("lit", [[[[-math.inf, -math.inf, 1.0, 2.0], [-math.inf, -math.inf, 3.0, -1.0],
                        [0.5, -2.0, -math.inf, 4.0]]]], torch.float32)])
row(name="max_pool1d_indices", layer="max_pool1d", seed=18205, n_out=2,
    config={"kernel_size": 3, "stride": 2, "padding": 1, "dilation": 2, "return_indices": True},
    torch=lambda: nn.MaxPool1d(3, 2, 1, dilation=2, return_indices=True),
    inputs=[("distinct", (2, 3, 11))])
row(name="max_pool3d_indices", layer="max_pool3d", seed=18206, n_out=2,
    config={"kernel_size": [2, 3, 2], "stride": [1, 2, 2], "padding": [1, 1, 0], "return_indices": True},
    torch=lambda: nn.MaxPool3d((2, 3, 2), (1, 2, 2), (1, 1, 0), return_indices=True),
    inputs=[("distinct", (1, 2, 3, 5, 4))])
row(name="max_pool2d_indices_values_only", layer="max_pool2d", seed=18207,
    config={"kernel_size": 2, "return_indices": True},
    torch=lambda: nn.MaxPool2d(2, return_indices=True), inputs=[("distinct", (1, 3, 4, 6))])
row(name="adaptive_max_pool2d_indices", layer="adaptive_max_pool2d", seed=18211, n_out=2,
    config={"output_size": [3, 2], "return_indices": True},
    torch=lambda: nn.AdaptiveMaxPool2d((3, 2), return_indices=True), inputs=[("distinct", (2, 3, 7, 5))])
row(name="adaptive_max_pool1d_indices_up", layer="adaptive_max_pool1d", seed=18212, n_out=2,
    config={"output_size": 9, "return_indices": True},
    torch=lambda: nn.AdaptiveMaxPool1d(9, return_indices=True), inputs=[("distinct", (2, 3, 7))])
row(name="adaptive_max_pool3d_indices_unbatched", layer="adaptive_max_pool3d", seed=18213, n_out=2,
    config={"output_size": [2, 3, 2], "return_indices": True},
    torch=lambda: nn.AdaptiveMaxPool3d((2, 3, 2), return_indices=True),
    inputs=[("distinct", (2, 5, 4, 3))])
# ties: values and indices only (nnmod splits a tied maximum's gradient, PyTorch
# gives it to the first)
row(name="adaptive_max_pool2d_indices_ties", layer="adaptive_max_pool2d", seed=18214, n_out=2,
    config={"output_size": 3, "return_indices": True}, gradcheck=False, modes=("eval",),
    no_grad_in=True, torch=lambda: nn.AdaptiveMaxPool2d(3, return_indices=True),
    inputs=[("ties", (1, 2, 7, 8))])

# max_unpool1d/2d/3d (issue 18): the inverse of max pooling with indices
# (windows that do not overlap: where two elements name one index, PyTorch
# gathers the gradient for both, nnmod gives it to the one written last)
def unpool_row(name, seed, nd, in_shape, k, s, p, cfg):
    pooled = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[nd](torch.zeros(in_shape), k, s, p).shape
    tw = {1: nn.MaxUnpool1d, 2: nn.MaxUnpool2d, 3: nn.MaxUnpool3d}[nd]
    row(name=name, layer=f"max_unpool{nd}d", seed=seed, config=cfg,
        torch=lambda: tw(k, s, p), inputs=[A(tuple(pooled)), ("poolidx", in_shape, k, s, p, nd)])


unpool_row("max_unpool2d_2", 18501, 2, (2, 3, 6, 8), 2, 2, 0, {"kernel_size": 2})
unpool_row("max_unpool2d_pad_unbatched", 18502, 2, (3, 7, 10), 3, 3, 1,
           {"kernel_size": 3, "stride": 3, "padding": 1})
unpool_row("max_unpool1d", 18503, 1, (2, 3, 9), 3, 3, 0, {"kernel_size": 3, "stride": 3})
unpool_row("max_unpool3d", 18504, 3, (1, 2, 4, 4, 6), (2, 2, 3), (2, 2, 3), 0, {"kernel_size": [2, 2, 3]})
row(name="avg_pool1d_pad", layer="avg_pool1d", config={"kernel_size": 3, "stride": 2, "padding": 1},
    torch=lambda: nn.AvgPool1d(3, 2, 1), inputs=[A((2, 3, 8))])
row(name="avg_pool1d_ceil_exclude", layer="avg_pool1d",
    config={"kernel_size": 2, "ceil_mode": True, "count_include_pad": False},
    torch=lambda: nn.AvgPool1d(2, ceil_mode=True, count_include_pad=False), inputs=[A((1, 2, 7))])
row(name="avg_pool3d_2", layer="avg_pool3d", config={"kernel_size": 2},
    torch=lambda: nn.AvgPool3d(2), inputs=[A((1, 2, 4, 4, 4))])
row(name="avg_pool3d_pad_divisor", layer="avg_pool3d",
    config={"kernel_size": [2, 1, 2], "padding": [1, 0, 1], "count_include_pad": False,
            "divisor_override": 3},
    torch=lambda: nn.AvgPool3d((2, 1, 2), padding=(1, 0, 1), count_include_pad=False,
                               divisor_override=3),
    inputs=[A((2, 1, 3, 2, 3))])
row(name="adaptive_avg_pool1d", layer="adaptive_avg_pool1d", config={"output_size": 3},
    torch=lambda: nn.AdaptiveAvgPool1d(3), inputs=[A((2, 3, 7))])
row(name="adaptive_avg_pool3d", layer="adaptive_avg_pool3d", config={"output_size": [2, 3, 1]},
    torch=lambda: nn.AdaptiveAvgPool3d((2, 3, 1)), inputs=[A((1, 2, 5, 7, 3))])
row(name="adaptive_avg_pool3d_int_unbatched", layer="adaptive_avg_pool3d", config={"output_size": 2},
    torch=lambda: nn.AdaptiveAvgPool3d(2), inputs=[A((2, 3, 4, 5))])
row(name="batch_norm3d", layer="batch_norm3d", config={"num_features": 3},
    torch=lambda: nn.BatchNorm3d(3), inputs=[A((2, 3, 2, 3, 2), 2.0)])
row(name="batch_norm3d_cumulative_no_affine", layer="batch_norm3d",
    config={"num_features": 2, "momentum": "none", "affine": False},
    torch=lambda: nn.BatchNorm3d(2, momentum=None, affine=False), inputs=[A((3, 2, 2, 2, 2))])
row(name="instance_norm1d", layer="instance_norm1d", config={"num_features": 3},
    torch=lambda: nn.InstanceNorm1d(3), inputs=[A((2, 3, 5))])
row(name="instance_norm1d_affine", layer="instance_norm1d", config={"num_features": 4, "affine": True},
    torch=lambda: nn.InstanceNorm1d(4, affine=True), inputs=[A((2, 4, 6))])
row(name="instance_norm1d_track", layer="instance_norm1d",
    config={"num_features": 3, "track_running_stats": True, "momentum": 0.3},
    torch=lambda: nn.InstanceNorm1d(3, momentum=0.3, track_running_stats=True),
    inputs=[A((2, 3, 5), 2.0)])
row(name="instance_norm1d_unbatched", layer="instance_norm1d", config={"num_features": 3, "eps": 1e-3},
    torch=lambda: nn.InstanceNorm1d(3, eps=1e-3), inputs=[A((3, 5))])
row(name="instance_norm2d_affine", layer="instance_norm2d", config={"num_features": 4, "affine": True},
    torch=lambda: nn.InstanceNorm2d(4, affine=True), inputs=[A((2, 4, 3, 3))])
row(name="instance_norm2d_track_affine", layer="instance_norm2d",
    config={"num_features": 2, "track_running_stats": True, "affine": True},
    torch=lambda: nn.InstanceNorm2d(2, affine=True, track_running_stats=True),
    inputs=[A((2, 2, 3, 4))])
row(name="instance_norm3d", layer="instance_norm3d", config={"num_features": 2},
    torch=lambda: nn.InstanceNorm3d(2), inputs=[A((1, 2, 2, 3, 2))])
row(name="local_response_norm_3d", layer="local_response_norm", config={"size": 3},
    torch=lambda: nn.LocalResponseNorm(3), inputs=[A((2, 5, 4), 2.0)])
row(name="local_response_norm_4d_params", layer="local_response_norm",
    config={"size": 2, "alpha": 1e-3, "beta": 0.5, "k": 2.0},
    torch=lambda: nn.LocalResponseNorm(2, 1e-3, 0.5, 2.0), inputs=[A((1, 6, 3, 3), 3.0)])
row(name="local_response_norm_5d_strong", layer="local_response_norm",
    config={"size": 4, "alpha": 0.5, "k": 1},
    torch=lambda: nn.LocalResponseNorm(4, 0.5, k=1), inputs=[A((1, 4, 2, 2, 2))])
for layer, tw, shape in (("dropout1d", nn.Dropout1d, (2, 3, 5)), ("dropout3d", nn.Dropout3d, (2, 3, 2, 2, 2)),
                         ("alpha_dropout", nn.AlphaDropout, (3, 5))):
    row(name=f"{layer}_eval", layer=layer, config={"p": 0.3}, modes=("eval",),
        torch=(lambda tw=tw: tw(p=0.3)), inputs=[A(shape)])
    row(name=f"{layer}_p0", layer=layer, config={"p": 0.0},
        torch=(lambda tw=tw: tw(p=0.0)), inputs=[A(shape)])
    row(name=f"{layer}_p1", layer=layer, config={"p": 1.0, "inplace": False}, modes=("train",),
        torch=(lambda tw=tw: tw(p=1.0)), inputs=[A(shape)])
# feature_alpha_dropout (issue 18): the deterministic rows (eval, p = 0, p = 1)
for k, (tag, shape) in enumerate((("3d", (2, 3, 5)), ("4d", (1, 2, 3, 3)))):
    row(name=f"feature_alpha_dropout_eval_{tag}", layer="feature_alpha_dropout", config={"p": 0.3},
        modes=("eval",), seed=18301 + 3 * k,
        torch=lambda: nn.FeatureAlphaDropout(p=0.3), inputs=[A(shape)])
    row(name=f"feature_alpha_dropout_p0_{tag}", layer="feature_alpha_dropout", config={"p": 0.0},
        seed=18302 + 3 * k, torch=lambda: nn.FeatureAlphaDropout(p=0.0), inputs=[A(shape)])
    row(name=f"feature_alpha_dropout_p1_{tag}", layer="feature_alpha_dropout",
        config={"p": 1.0, "inplace": False}, modes=("train",), seed=18303 + 3 * k,
        torch=lambda: nn.FeatureAlphaDropout(p=1.0), inputs=[A(shape)])
# recurrent (plugins/recurrent) ------------------------------------------------
# Rows carry their own seed (seed=): helpers append rows concurrently; seeded
# rows take no index, so they move no other row's seed wherever they sit.
# Outputs: output, h_n (, c_n); h0/c0 inputs ("empty",) are absent (None).
# Dropout between layers draws nnmod's masks, not PyTorch's: those rows are
# eval only (tests/layers/test_recurrent.c checks the train-mode masks).
REC_SEED = SEED + 7_000_000
_rec_rows = 0


def _none(t):
    return None if t is None or t.numel() == 0 else t


def _rec_call(kind):
    def call(m, x, h0=None, c0=None):
        h0, c0 = _none(h0), _none(c0)
        if kind == "lstm":
            hx = None
            if h0 is not None or c0 is not None:  # PyTorch takes both or neither
                L = m.num_layers * (2 if m.bidirectional else 1)
                hs = (L,) + ((x.shape[0 if m.batch_first else 1],) if x.dim() == 3 else ())
                real = m.proj_size if m.proj_size > 0 else m.hidden_size
                hx = (h0 if h0 is not None else torch.zeros(hs + (real,)),
                      c0 if c0 is not None else torch.zeros(hs + (m.hidden_size,)))
            y, (hn, cn) = m(x, hx)
            return y, hn, cn
        y, hn = m(x, h0)
        return y, hn
    return call


def _cell_call(kind):
    def call(m, x, h=None, c=None):
        h, c = _none(h), _none(c)
        if kind == "lstm_cell":
            hx = None
            if h is not None or c is not None:
                shape = x.shape[:-1] + (m.hidden_size,)
                hx = (h if h is not None else torch.zeros(shape), c if c is not None else torch.zeros(shape))
            return m(x, hx)
        return (m(x, h),)
    return call


def rec_row(name, layer, config, torch_fn, inputs, n_out=None, **kw):
    global _rec_rows
    cell = layer.endswith("_cell")
    if n_out is None:
        n_out = (2 if layer == "lstm_cell" else 1) if cell else (3 if layer == "lstm" else 2)
    row(name=name, layer=layer, config=config, torch=torch_fn, inputs=inputs, n_out=n_out,
        call=(_cell_call if cell else _rec_call)(layer if cell else layer), seed=REC_SEED + 1000 * _rec_rows,
        **kw)
    _rec_rows += 1


for kind, tw in (("lstm", nn.LSTM), ("gru", nn.GRU), ("rnn", nn.RNN)):
    st = lambda L, N, H: [A((L, N, H)) if N else A((L, H))] * (2 if kind == "lstm" else 1)  # noqa: E731
    rec_row(f"{kind}_basic", kind, {"input_size": 3, "hidden_size": 4},
            (lambda tw=tw: tw(3, 4)), [A((5, 2, 3))])
    rec_row(f"{kind}_h0", kind, {"input_size": 3, "hidden_size": 4},
            (lambda tw=tw: tw(3, 4)), [A((4, 3, 3))] + st(1, 3, 4))
    rec_row(f"{kind}_2layer_bidir", kind,
            {"input_size": 3, "hidden_size": 4, "num_layers": 2, "bidirectional": True},
            (lambda tw=tw: tw(3, 4, num_layers=2, bidirectional=True)), [A((4, 2, 3))] + st(4, 2, 4))
    rec_row(f"{kind}_batch_first_bidir", kind,
            {"input_size": 2, "hidden_size": 3, "batch_first": True, "bidirectional": True},
            (lambda tw=tw: tw(2, 3, batch_first=True, bidirectional=True)), [A((3, 5, 2))] + st(2, 3, 3))
    rec_row(f"{kind}_unbatched_2layer", kind, {"input_size": 3, "hidden_size": 4, "num_layers": 2},
            (lambda tw=tw: tw(3, 4, num_layers=2)), [A((5, 3))] + st(2, None, 4))
    rec_row(f"{kind}_unbatched_bidir_nostate", kind,
            {"input_size": 2, "hidden_size": 3, "bidirectional": True, "batch_first": True},
            (lambda tw=tw: tw(2, 3, bidirectional=True, batch_first=True)), [A((4, 2))])
    rec_row(f"{kind}_nobias_b1", kind, {"input_size": 3, "hidden_size": 5, "bias": False},
            (lambda tw=tw: tw(3, 5, bias=False)), [A((6, 1, 3))])
    rec_row(f"{kind}_dropout_eval", kind,
            {"input_size": 3, "hidden_size": 4, "num_layers": 3, "dropout": 0.5}, modes=("eval",),
            torch_fn=(lambda tw=tw: tw(3, 4, num_layers=3, dropout=0.5)), inputs=[A((3, 2, 3))])
    rec_row(f"{kind}_dropout0_train_2layer", kind,
            {"input_size": 3, "hidden_size": 4, "num_layers": 2, "dropout": 0.0}, modes=("train",),
            torch_fn=(lambda tw=tw: tw(3, 4, num_layers=2, dropout=0.0)), inputs=[A((3, 2, 3))])
    rec_row(f"{kind}_larger", kind, {"input_size": 16, "hidden_size": 24, "num_layers": 2, "bidirectional": True},
            (lambda tw=tw: tw(16, 24, num_layers=2, bidirectional=True)), [A((12, 5, 16))] + st(4, 5, 24),
            modes=("train",))

rec_row("rnn_relu", "rnn", {"input_size": 3, "hidden_size": 4, "nonlinearity": "relu", "num_layers": 2},
        lambda: nn.RNN(3, 4, nonlinearity="relu", num_layers=2), [A((5, 2, 3)), A((2, 2, 4))],
        gradcheck=False)
rec_row("lstm_proj", "lstm", {"input_size": 3, "hidden_size": 5, "proj_size": 2, "num_layers": 2},
        lambda: nn.LSTM(3, 5, proj_size=2, num_layers=2), [A((4, 2, 3)), A((2, 2, 2)), A((2, 2, 5))])
rec_row("lstm_proj_bidir_batch_first", "lstm",
        {"input_size": 3, "hidden_size": 5, "proj_size": 3, "bidirectional": True, "batch_first": True},
        lambda: nn.LSTM(3, 5, proj_size=3, bidirectional=True, batch_first=True), [A((2, 4, 3))])
rec_row("lstm_proj_unbatched_c0_only", "lstm", {"input_size": 2, "hidden_size": 4, "proj_size": 1},
        lambda: nn.LSTM(2, 4, proj_size=1), [A((3, 2)), ("empty",), A((1, 4))])
rec_row("lstm_h_n_only", "lstm", {"input_size": 3, "hidden_size": 4, "num_layers": 2},
        lambda: nn.LSTM(3, 4, num_layers=2), [A((4, 2, 3))], n_out=2)
rec_row("lstm_dropout_int_repr", "lstm", {"input_size": 2, "hidden_size": 3, "num_layers": 2, "dropout": 1},
        lambda: nn.LSTM(2, 3, num_layers=2, dropout=1), [A((2, 1, 2))], modes=("eval",))
for kind, tw, cfg in (("rnn_cell", nn.RNNCell, {}), ("rnn_cell", nn.RNNCell, {"nonlinearity": "relu"}),
                      ("lstm_cell", nn.LSTMCell, {}), ("gru_cell", nn.GRUCell, {}),
                      ("lstm_cell", nn.LSTMCell, {"bias": False}), ("gru_cell", nn.GRUCell, {"bias": False})):
    tag = "_".join(f"{k}_{v}" for k, v in cfg.items()) or "default"
    n_state = 2 if kind == "lstm_cell" else 1
    kw = {"gradcheck": False} if cfg.get("nonlinearity") == "relu" else {}
    rec_row(f"{kind}_{tag}", kind, dict({"input_size": 3, "hidden_size": 4}, **cfg),
            (lambda tw=tw, cfg=cfg: tw(3, 4, **cfg)), [A((2, 3))] + [A((2, 4))] * n_state, **kw)
    rec_row(f"{kind}_{tag}_unbatched", kind, dict({"input_size": 3, "hidden_size": 4}, **cfg),
            (lambda tw=tw, cfg=cfg: tw(3, 4, **cfg)), [A((3,))] + [A((4,))] * n_state, **kw)
    rec_row(f"{kind}_{tag}_nostate", kind, dict({"input_size": 3, "hidden_size": 4}, **cfg),
            (lambda tw=tw, cfg=cfg: tw(3, 4, **cfg)), [A((1, 3))], **kw)

# adaptive max pooling (composed; issue 18) --------------------------------------
row(name="adaptive_max_pool1d", layer="adaptive_max_pool1d", config={"output_size": 3},
    torch=lambda: nn.AdaptiveMaxPool1d(3), inputs=[("distinct", (2, 3, 7))])
row(name="adaptive_max_pool2d_odd", layer="adaptive_max_pool2d", config={"output_size": [3, 2]},
    torch=lambda: nn.AdaptiveMaxPool2d((3, 2)), inputs=[("distinct", (2, 3, 7, 5))])
row(name="adaptive_max_pool2d_up_unbatched", layer="adaptive_max_pool2d", config={"output_size": 4},
    torch=lambda: nn.AdaptiveMaxPool2d(4), inputs=[("distinct", (2, 3, 5))])
row(name="adaptive_max_pool3d", layer="adaptive_max_pool3d", config={"output_size": [2, 1, 3]},
    torch=lambda: nn.AdaptiveMaxPool3d((2, 1, 3)), inputs=[("distinct", (1, 2, 5, 3, 4))])

# ---------------------------------------------------------------------------
# Running a case
# ---------------------------------------------------------------------------

def manifest_of(layer, config, children=None):
    cfg = {k: v for k, v in config.items() if v is not None}
    root = {"type": layer}
    plugins = {layer: "^1.0"}
    if cfg:
        root["config"] = cfg
    if children:
        root["children"] = children
        for c in children:
            plugins[c["type"]] = "^1.0"
    return {"format": "nnmod.manifest", "version": 1, "plugins": plugins, "root": root}


def run_case(r, mode, seed):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    m = r["torch"]()
    # parameters: the module's own init under the seed, then nudged off any
    # constant (zero biases, unit norm weights) so that every entry matters
    xs = r["inputs_fn"](g) if "inputs_fn" in r else [make_input(s, g) for s in r["inputs"]]
    with torch.no_grad():  # no parameter left at its init constant (zero biases)
        for p in m.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    state0 = {k: v.detach().clone() for k, v in m.state_dict().items()}
    m.train(mode == "train")
    leaves = []
    for x in xs:
        if x.dtype == torch.float32:
            x.requires_grad_(True)
        leaves.append(x)
    call = r.get("call")
    y = call(m, *leaves) if call else m(*leaves)
    if not isinstance(y, tuple):
        y = (y,)
    n_out = r.get("n_out", 1)
    y = y[:n_out]
    gouts = [torch.randn(t.shape, generator=g) for t in y]
    s = sum((t * w).sum() for t, w in zip(y, gouts))
    s.backward()

    C = f'{r["name"]}.{mode}'
    t = {}
    for i, x in enumerate(leaves):
        t[f"{C}.in.{i}"] = x.detach()
        if x.dtype == torch.float32 and x.grad is not None and not r.get("no_grad_in"):
            # (None: no gradient reaches it; no_grad_in: a known difference, not compared)
            t[f"{C}.grad.in.{i}"] = x.grad
    for k, v in state0.items():
        t[f"{C}.state.{k}"] = v
    for k, p in m.named_parameters():
        if p.grad is not None:
            t[f"{C}.grad.state.{k}"] = p.grad
    if r.get("after_params"):  # parameters a forward changes in place (max_norm)
        for k, p in m.named_parameters():
            t[f"{C}.after.{k}"] = p.detach().clone()
    nograd = r.get("nograd")
    if nograd:  # elements the layer defines to get no gradient (padding_idx)
        for k, mask in nograd(m).items():
            t[f"{C}.nograd.{k}"] = mask.to(torch.float32)
    for k, b in m.named_buffers():
        t[f"{C}.after.{k}"] = b.detach().clone()
    for k, (o, w) in enumerate(zip(y, gouts)):
        t[f"{C}.out.{k}"] = o.detach()
        t[f"{C}.gout.{k}"] = w
    size = sum(x.numel() for x in leaves) + sum(p.numel() for p in m.parameters())
    if any(torch.isnan(o).any() for o in y):  # NaN rows (1.13's fully masked query)
        size = 10 ** 9  # no finite differences of a NaN sum
    manifest = json.dumps(manifest_of(r["layer"], r["config"], r.get("children")),
                          separators=(",", ":"),
                          sort_keys=True)
    opts = "mode=%s;n_in=%d;n_out=%d;gradcheck=%d;rtol=%r;atol=%r" % (
        mode, len(leaves), n_out, int(r.get("gradcheck", size <= 600)),
        r.get("rtol", 1e-4), r.get("atol", 1e-5))
    meta = {"case." + C: manifest, "opts." + C: opts}
    if r.get("repr", True):
        meta["repr." + C] = r.get("repr_map", lambda s: s)(repr(m))
    return C, t, meta


def main():
    torch.set_num_threads(1)
    only = set(sys.argv[1:])
    os.makedirs(OUT, exist_ok=True)
    files = {}
    names = set()
    idx = 0  # index among the rows without a seed of their own (seeded rows move no one)
    for r in CASES:
        if r["name"] in names:
            raise SystemExit(f"duplicate row name {r['name']}")
        names.add(r["name"])
        seed = r["seed"] if "seed" in r else SEED + 1000 * idx
        idx += "seed" not in r
        if only and r["layer"] not in only:
            continue
        f = files.setdefault(r["layer"], ({}, {}))
        for mode in r.get("modes", ("train", "eval")):
            C, t, meta = run_case(r, mode, seed + (mode == "eval"))
            f[0].update(t)
            f[1].update(meta)
    for layer, (t, meta) in sorted(files.items()):
        meta["generator"] = "tests/golden/make_conformance_golden.py"
        meta["torch"] = torch.__version__
        path = os.path.join(OUT, f"{layer}.safetensors")
        write_safetensors(path, t, meta)
        print(f"{path}: {sum(1 for k in meta if k.startswith('case.'))} cases")


if __name__ == "__main__":
    main()
