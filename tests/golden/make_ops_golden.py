#!/usr/bin/env python3
"""PyTorch golden vectors for the functional ops (plugins/tensor_ops,
plugins/math_ops, and add/mul's scalar `other`/`alpha`), run by the layer
conformance suite (tests/layers/test_conformance.c) like every other layer:
forward, input gradients, finite differences.

The rows live here rather than in make_conformance_golden.py so that both
tables grow without touching each other; the format, the case runner and the
C suite are make_conformance_golden.py's (imported). Each row names its file
(tests/golden/conformance/ops_<file>.safetensors) instead of one file per
layer: ~50 op types would otherwise outgrow the suite's file slots.

Ops whose output carries no gradient (comparisons, full) are wrapped in a
two-node graph `op(...) + x` so that the suite's backward has something to
reach; their rows turn finite differences off (a comparison is a step).

Usage:
    /usr/bin/python3 tests/golden/make_ops_golden.py [file ...]
"""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_conformance_golden as mcg  # noqa: E402

SEED = 20261207
A = mcg.A
Fn = mcg.Fn

_base_make_input = mcg.make_input


def make_input(spec, g):
    """Adds to make_conformance_golden's kinds:
    ("pos", shape)   f32 in [0.5, 2] (log, sqrt, divisors, pow bases)
    ("mask01", shape) f32 0/1 (a mask as nnmod's comparisons make it)
    ("ties", shape)  f32 in {-1, 0, 1} (comparisons with many equal pairs)"""
    kind, shape = spec[0], spec[1] if len(spec) > 1 else None
    if kind == "pos":
        return torch.rand(shape, generator=g) * 1.5 + 0.5
    if kind == "mask01":
        return (torch.rand(shape, generator=g) < 0.4).to(torch.float32)
    if kind == "ties":
        return torch.randint(-1, 2, shape, generator=g).to(torch.float32)
    if kind == "halves":  # f32 multiples of 0.5 (round's ties) in random order, away from 0
        n = 1
        for d in shape:
            n *= d
        v = (torch.randperm(n, generator=g).to(torch.float32) - n // 2) * 0.5 + 0.25 * (torch.arange(n) % 2 == 1)
        return v.reshape(shape)
    if kind == "intf":  # f32 integers in [-3, 3] (pow's integral exponents)
        return torch.randint(-3, 4, shape, generator=g).to(torch.float32)
    if kind == "neg":  # f32 in [-2, -0.5] (negative pow bases)
        return -(torch.rand(shape, generator=g) * 1.5 + 0.5)
    return _base_make_input(spec, g)


mcg.make_input = make_input  # run_case looks it up at call time

ROWS = []


def op(file, name, layer, config, f, inputs, **kw):
    """One op called on its inputs; f is the PyTorch function."""
    ROWS.append(dict(file=file, name=name, layer=layer, config=config, torch=lambda f=f: Fn(f),
                     inputs=inputs, repr=False, **kw))


def graph_op(file, name, layer, config, f, inputs, n_data=None):
    """op(inputs) + inputs[0] as a graph (the op's output has no gradient)."""
    names = [f"x{i}" for i in range(len(inputs))]
    refs = names if n_data is None else names[:n_data] + names[n_data:]
    cfg = {"inputs": names, "nodes": [f"op: {', '.join(refs)}", "out: op, x0"], "outputs": ["out"]}
    children = [{"name": "op", "type": layer, "config": config}, {"name": "out", "type": "add"}]
    ROWS.append(dict(file=file, name=name, layer="graph", config=cfg, children=children,
                     torch=lambda f=f: Fn(lambda *x: f(*x).to(torch.float32) + x[0]),
                     inputs=inputs, repr=False, gradcheck=False))


# ---------------------------------------------------------------------------
# shape: view, reshape, permute, transpose, contiguous, squeeze, unsqueeze,
# expand, expand_as, repeat
# ---------------------------------------------------------------------------
S = "shape"
op(S, "view_neg1", "view", {"shape": [-1, 4]}, lambda x: x.view(-1, 4), [A((2, 3, 4))])
op(S, "view_to_0d", "view", {"shape": []}, lambda x: x.view([]), [A((1, 1))])
op(S, "view_dynamic_batch", "view",
   {"shape": [0, -1], "from_input": [1, -1], "from_dim": [0, -1]},
   lambda x, like: x.view(like.size(0), -1), [A((3, 2, 4)), A((3, 5))])
op(S, "view_dynamic_negdim", "reshape",
   {"shape": [0, 0, -1], "from_input": [0, 1, -1], "from_dim": [0, -1, -1]},
   lambda x, like: x.reshape(x.size(0), like.size(-1), -1), [A((2, 6, 2)), A((4, 3))])
op(S, "reshape_empty", "reshape", {"shape": [-1, 3]}, lambda x: x.reshape(-1, 3), [A((0, 2, 3))])
op(S, "reshape_flat", "reshape", {"shape": [-1]}, lambda x: x.reshape(-1), [A((2, 3, 2))])
op(S, "permute_4d", "permute", {"dims": [0, 2, -1, 1]}, lambda x: x.permute(0, 2, -1, 1), [A((2, 3, 4, 5))])
op(S, "permute_identity", "permute", {"dims": [0, 1]}, lambda x: x.permute(0, 1), [A((2, 3))])
op(S, "transpose_neg", "transpose", {"dim0": -1, "dim1": 0}, lambda x: x.transpose(-1, 0), [A((2, 3, 4))])
op(S, "transpose_same", "transpose", {"dim0": 1, "dim1": 1}, lambda x: x.transpose(1, 1), [A((2, 3))])
op(S, "transpose_1d", "transpose", {"dim0": 0, "dim1": -1}, lambda x: x.transpose(0, -1), [A((4,))])
op(S, "contiguous", "contiguous", {}, lambda x: x.contiguous(), [A((3, 4))])
op(S, "squeeze_all", "squeeze", {}, lambda x: x.squeeze(), [A((1, 3, 1, 2))])
op(S, "squeeze_dim", "squeeze", {"dim": 2}, lambda x: x.squeeze(2), [A((1, 3, 1, 2))])
op(S, "squeeze_dims", "squeeze", {"dim": [0, -2]}, lambda x: x.squeeze(2).squeeze(0), [A((1, 3, 1, 2))])
op(S, "squeeze_noop", "squeeze", {"dim": 1}, lambda x: x.squeeze(1), [A((2, 3))])
op(S, "unsqueeze_last", "unsqueeze", {"dim": -1}, lambda x: x.unsqueeze(-1), [A((2, 3))])
op(S, "unsqueeze_first", "unsqueeze", {"dim": 0}, lambda x: x.unsqueeze(0), [A((2, 3))])
op(S, "unsqueeze_0d", "unsqueeze", {"dim": 0}, lambda x: x.unsqueeze(0), [A(())])
op(S, "expand_new_dims", "expand", {"size": [2, 3, 4]}, lambda x: x.expand(2, 3, 4), [A((3, 1))])
op(S, "expand_neg1", "expand", {"size": [3, -1]}, lambda x: x.expand(3, -1), [A((1, 4))])
op(S, "expand_class_token", "expand",
   {"size": [-1, -1, -1], "from_input": [1, -1, -1], "from_dim": [0, -1, -1]},
   lambda t, x: t.expand(x.size(0), -1, -1), [A((1, 1, 5)), A((4, 7, 5))])
op(S, "expand_same", "expand", {"size": [2, 3]}, lambda x: x.expand(2, 3), [A((2, 3))])
op(S, "expand_as", "expand_as", {}, lambda x, o: x.expand_as(o), [A((1, 3)), A((4, 3))])
op(S, "repeat_new_dim", "repeat", {"repeats": [2, 1, 3]}, lambda x: x.repeat(2, 1, 3), [A((2, 3))])
op(S, "repeat_ones", "repeat", {"repeats": [1, 1]}, lambda x: x.repeat(1, 1), [A((2, 3))])
op(S, "repeat_zero", "repeat", {"repeats": [0, 2]}, lambda x: x.repeat(0, 2), [A((2, 3))])

# ---------------------------------------------------------------------------
# index: chunk, split, unbind, getitem, narrow, select, stack, roll, pad
# ---------------------------------------------------------------------------
I = "index"
op(I, "chunk_uneven", "chunk", {"chunks": 3}, lambda x: x.chunk(3), [A((5, 4))], n_out=3)
op(I, "chunk_last", "chunk", {"chunks": 2, "dim": -1}, lambda x: x.chunk(2, -1), [A((2, 6))], n_out=2)
op(I, "chunk_fewer", "chunk", {"chunks": 4, "dim": 0}, lambda x: x.chunk(4), [A((6, 2))], n_out=3)
op(I, "split_int", "split", {"split_size_or_sections": 3}, lambda x: x.split(3), [A((7, 3))], n_out=3)
op(I, "split_sections", "split", {"split_size_or_sections": [2, 0, 5], "dim": 1},
   lambda x: x.split([2, 0, 5], 1), [A((2, 7))], n_out=3)
op(I, "unbind_dim1", "unbind", {"dim": 1}, lambda x: x.unbind(1), [A((3, 2, 4))], n_out=2)
op(I, "unbind_default", "unbind", {}, lambda x: x.unbind(), [A((3, 2))], n_out=3)
op(I, "getitem_mixed", "getitem", {"index": ["1:3", "None", "...", "::2"]},
   lambda x: x[1:3, None, ..., ::2], [A((4, 5, 6))])
op(I, "getitem_int_neg", "getitem", {"index": ["-1"]}, lambda x: x[-1], [A((4, 5))])
op(I, "getitem_col", "getitem", {"index": [":", "2"]}, lambda x: x[:, 2], [A((4, 5))])
op(I, "getitem_step3_tail", "getitem", {"index": ["...", "1:-1:3"]}, lambda x: x[..., 1:-1:3], [A((2, 3, 9))])
op(I, "getitem_step2_even", "getitem", {"index": ["::2", "1::2"]}, lambda x: x[::2, 1::2], [A((6, 6))])
op(I, "getitem_none_only", "getitem", {"index": ["None"]}, lambda x: x[None], [A((2, 3))])
op(I, "getitem_int_slice_neg", "getitem", {"index": ["0", "::3", "-2:"]}, lambda x: x[0, ::3, -2:],
   [A((2, 7, 5))])
op(I, "getitem_empty_slice", "getitem", {"index": ["5:"]}, lambda x: x[5:], [A((4, 3))])
op(I, "getitem_cls_token", "getitem", {"index": [":", "0"]}, lambda x: x[:, 0], [A((2, 5, 4))])
op(I, "narrow_neg_start", "narrow", {"dim": 1, "start": -4, "length": 3}, lambda x: x.narrow(1, -4, 3),
   [A((4, 6))])
op(I, "select_neg", "select", {"dim": -2, "index": -1}, lambda x: x.select(-2, -1), [A((3, 4, 5))])
op(I, "stack_dim1", "stack", {"dim": 1}, lambda *x: torch.stack(x, 1), [A((2, 3)), A((2, 3)), A((2, 3))])
op(I, "stack_last", "stack", {"dim": -1}, lambda *x: torch.stack(x, -1), [A((4,)), A((4,))])
op(I, "stack_one", "stack", {}, lambda x: torch.stack([x]), [A((2, 2))])
op(I, "roll_2d", "roll", {"shifts": [1, -2], "dims": [0, 1]}, lambda x: x.roll((1, -2), (0, 1)), [A((3, 4))])
op(I, "roll_flat", "roll", {"shifts": 5}, lambda x: x.roll(5), [A((3, 4))])
op(I, "roll_swin", "roll", {"shifts": [-3, -3], "dims": [1, 2]}, lambda x: torch.roll(x, (-3, -3), (1, 2)),
   [A((1, 7, 7, 2))])
op(I, "pad_last", "pad", {"pad": [1, 2], "value": 0.5}, lambda x: F.pad(x, (1, 2), value=0.5), [A((2, 3, 4))])
op(I, "pad_two_dims_crop", "pad", {"pad": [1, -1, 2, 0]}, lambda x: F.pad(x, (1, -1, 2, 0)), [A((2, 3, 4))])
op(I, "pad_crop_only", "pad", {"pad": [-1, -1], "mode": "constant"}, lambda x: F.pad(x, (-1, -1)),
   [A((3, 5))])

op(I, "index_select_dim1", "index_select", {"dim": 1}, lambda x, i: x.index_select(1, i),
   [A((2, 5, 3)), ("i64", (7,), 5)])
op(I, "index_select_swin_table", "index_select", {"dim": 0}, lambda t, i: t[i],
   [A((9, 2)), ("i64", (16,), 9)])
op(I, "flip_two", "flip", {"dims": [0, -1]}, lambda x: x.flip((0, -1)), [A((3, 2, 4))])
op(I, "triu_diag1", "triu", {"diagonal": 1}, lambda x: x.triu(1), [A((2, 4, 5))])
op(I, "tril_default", "tril", {}, lambda x: x.tril(), [A((5, 3))])
op(I, "tril_neg", "tril", {"diagonal": -1}, lambda x: torch.tril(x, -1), [A((4, 4))])

# ---------------------------------------------------------------------------
# elementwise: sub, div, pow, neg, abs, sqrt, rsqrt, exp, log, clamp; add/mul
# with a scalar
# ---------------------------------------------------------------------------
E = "elementwise"
op(E, "sub_broadcast", "sub", {}, lambda x, y: x - y, [A((2, 3)), A((3,))])
op(E, "sub_scalar", "sub", {"other": 1.5}, lambda x: x - 1.5, [A((2, 3))])
op(E, "sub_rsub", "sub", {"other": 2.0, "reverse": True}, lambda x: 2.0 - x, [A((2, 3))])
op(E, "sub_alpha", "sub", {"alpha": 2.0}, lambda x, y: torch.sub(x, y, alpha=2.0), [A((2, 3)), A((2, 3))])
op(E, "sub_rsub_alpha", "sub", {"other": 1.0, "reverse": True, "alpha": 3.0},
   lambda x: torch.rsub(x, 1.0, alpha=3.0), [A((4,))])
op(E, "div_broadcast", "div", {}, lambda x, y: x / y, [A((2, 3)), ("pos", (2, 1))])
op(E, "div_scalar", "div", {"other": 3.0}, lambda x: x / 3.0, [A((2, 3))])
op(E, "div_reverse", "div", {"other": 2.0, "reverse": True}, lambda x: 2.0 / x, [("pos", (5,))])
op(E, "pow_square", "pow", {"exponent": 2}, lambda x: x ** 2, [A((2, 3))])
op(E, "pow_cube", "pow", {"exponent": 3.0}, lambda x: x.pow(3.0), [A((2, 3))])
op(E, "pow_half", "pow", {"exponent": 0.5}, lambda x: x ** 0.5, [("pos", (2, 3))])
op(E, "pow_reverse", "pow", {"exponent": 10000.0, "reverse": True}, lambda x: 10000.0 ** x,
   [("pos", (6,))], rtol=1e-3)
op(E, "pow_tensors", "pow", {}, lambda x, y: x ** y, [("pos", (2, 3)), A((3,))])
op(E, "neg", "neg", {}, lambda x: -x, [A((2, 3))])
op(E, "abs", "abs", {}, lambda x: x.abs(), [A((2, 3), 1.0, [0.0])])
op(E, "sqrt", "sqrt", {}, lambda x: x.sqrt(), [("pos", (2, 3))])
op(E, "rsqrt", "rsqrt", {}, lambda x: x.rsqrt(), [("pos", (2, 3))])
op(E, "exp", "exp", {}, lambda x: x.exp(), [A((2, 3))])
op(E, "log", "log", {}, lambda x: x.log(), [("pos", (2, 3))])
op(E, "erf", "erf", {}, lambda x: torch.erf(x), [A((2, 3))])
op(E, "clamp_both", "clamp", {"min": -0.5, "max": 0.5}, lambda x: x.clamp(-0.5, 0.5),
   [A((3, 4), 1.0, [-0.5, 0.5])])
op(E, "clamp_min", "clamp", {"min": 0.0}, lambda x: x.clamp(min=0.0), [A((3, 4), 1.0, [0.0])])
op(E, "clamp_max", "clamp", {"max": 0.2}, lambda x: x.clamp(max=0.2), [A((3, 4), 1.0, [0.2])])
op(E, "add_scalar", "add", {"other": 2.5}, lambda x: x + 2.5, [A((2, 3))])
op(E, "add_alpha", "add", {"alpha": -0.5}, lambda x, y: torch.add(x, y, alpha=-0.5), [A((2, 3)), A((3,))])
op(E, "add_scalar_alpha", "add", {"other": 2.0, "alpha": 3.0}, lambda x: torch.add(x, 2.0, alpha=3.0),
   [A((4,))])
op(E, "mul_scalar", "mul", {"other": 0.125}, lambda x: x * 0.125, [A((2, 3))])

# ---------------------------------------------------------------------------
# reduce: mean, sum, amax, amin, max, min, maximum, minimum
# ---------------------------------------------------------------------------
R = "reduce"
op(R, "mean_last_keepdim", "mean", {"dim": -1, "keepdim": True}, lambda x: x.mean(-1, keepdim=True),
   [A((2, 3, 4))])
op(R, "mean_hw", "mean", {"dim": [2, 3]}, lambda x: x.mean((2, 3)), [A((2, 3, 4, 5))])
op(R, "mean_all", "mean", {}, lambda x: x.mean(), [A((3, 4))])
op(R, "sum_dim1", "sum", {"dim": 1}, lambda x: x.sum(1), [A((2, 3, 4))])
op(R, "sum_all_keepdim", "sum", {"dim": [0, 1], "keepdim": True}, lambda x: x.sum((0, 1), keepdim=True),
   [A((3, 4))])
op(R, "sum_empty", "sum", {"dim": 0}, lambda x: x.sum(0), [A((0, 3))])
op(R, "sum_0d", "sum", {"dim": 0}, lambda x: x.sum(0), [A(())])
op(R, "amax_dim1", "amax", {"dim": 1}, lambda x: x.amax(1), [("distinct", (2, 5, 3))])
op(R, "amin_dims_keepdim", "amin", {"dim": [0, -1], "keepdim": True},
   lambda x: x.amin((0, -1), keepdim=True), [("distinct", (2, 5, 3))])
op(R, "max_dim_values", "max", {"dim": 1}, lambda x: x.max(1).values, [("distinct", (3, 4))])
op(R, "min_dim_keepdim", "min", {"dim": -1, "keepdim": True}, lambda x: x.min(-1, keepdim=True).values,
   [("distinct", (3, 4))])
op(R, "max_all", "max", {}, lambda x: x.max(), [("distinct", (3, 4))])
op(R, "max_two_inputs", "max", {}, lambda x, y: torch.max(x, y), [("distinct", (3, 4)), ("distinct", (4,))])
op(R, "maximum", "maximum", {}, lambda x, y: torch.maximum(x, y), [("distinct", (2, 3)), ("distinct", (2, 3))])
op(R, "minimum", "minimum", {}, lambda x, y: torch.minimum(x, y), [("distinct", (2, 3)), ("distinct", (1, 3))])

op(R, "var_dims", "var", {"dim": [0, 2]}, lambda x: x.var((0, 2)), [A((2, 3, 4))])
op(R, "var_biased_keepdim", "var", {"dim": -1, "unbiased": False, "keepdim": True},
   lambda x: x.var(-1, unbiased=False, keepdim=True), [A((3, 5))])
op(R, "std_all", "std", {}, lambda x: x.std(), [A((3, 4))])
op(R, "norm_p2_last", "norm", {"dim": -1}, lambda x: x.norm(dim=-1), [A((3, 4))])
op(R, "norm_inf_keepdim", "norm", {"p": "inf", "dim": 1, "keepdim": True},
   lambda x: x.norm(p=float("inf"), dim=1, keepdim=True), [("distinct", (2, 5))])
op(R, "norm_p3_all", "norm", {"p": 3}, lambda x: x.norm(p=3), [A((2, 3), 1.0, [0.0])])
op(R, "norm_p1", "norm", {"p": 1, "dim": 0}, lambda x: x.norm(p=1, dim=0), [A((4, 3), 1.0, [0.0])])
op(R, "normalize_default", "normalize", {}, lambda x: F.normalize(x), [A((2, 3, 4))])
op(R, "normalize_last", "normalize", {"dim": -1}, lambda x: F.normalize(x, dim=-1), [A((3, 5))])

# ---------------------------------------------------------------------------
# product: matmul, bmm
# ---------------------------------------------------------------------------
P = "product"
op(P, "matmul_2d", "matmul", {}, lambda a, b: a @ b, [A((3, 4)), A((4, 5))])
op(P, "matmul_3d_2d", "matmul", {}, lambda a, b: a @ b, [A((2, 3, 4)), A((4, 5))])
op(P, "matmul_broadcast", "matmul", {}, lambda a, b: torch.matmul(a, b), [A((2, 1, 3, 4)), A((3, 4, 2))])
op(P, "matmul_vec_mat", "matmul", {}, lambda a, b: a @ b, [A((4,)), A((2, 4, 3))])
op(P, "matmul_mat_vec", "matmul", {}, lambda a, b: a @ b, [A((2, 3, 4)), A((4,))])
op(P, "matmul_dot", "matmul", {}, lambda a, b: a @ b, [A((5,)), A((5,))])
op(P, "matmul_k0", "matmul", {}, lambda a, b: a @ b, [A((2, 0)), A((0, 3))])
op(P, "bmm", "bmm", {}, lambda a, b: torch.bmm(a, b), [A((2, 3, 4)), A((2, 4, 5))])

# ---------------------------------------------------------------------------
# select: masked_fill, where, comparisons, full
# ---------------------------------------------------------------------------
W = "select"
op(W, "masked_fill", "masked_fill", {"value": -1e9}, lambda x, m: x.masked_fill(m.bool(), -1e9),
   [A((2, 3, 4)), ("mask01", (3, 4))])
op(W, "masked_fill_inf", "masked_fill", {"value": "-inf"},  # JSON has no -inf literal
   lambda x, m: x.masked_fill(m.bool(), float("-inf")), [A((2, 4)), ("mask01", (2, 1))], gradcheck=False)
op(W, "where_broadcast", "where", {}, lambda c, x, y: torch.where(c.bool(), x, y),
   [("mask01", (3, 1)), A((3, 4)), A((4,))])
for cmp in ("eq", "ne", "lt", "le", "gt", "ge"):
    fn = getattr(torch, cmp)
    graph_op(W, f"{cmp}_tensors", cmp, {}, lambda x, y, fn=fn: fn(x, y), [("ties", (3, 4)), ("ties", (4,))])
    graph_op(W, f"{cmp}_scalar", cmp, {"other": 0.0}, lambda x, fn=fn: fn(x, 0.0), [("ties", (3, 4))])
graph_op(W, "sign", "sign", {}, lambda x: torch.sign(x), [("ties", (3, 4))])
graph_op(W, "arange_dynamic_f32", "arange", {"end": 0, "dtype": "float32", "from_input": [0], "from_dim": [-1]},
         lambda x: torch.arange(x.size(-1), dtype=torch.float32), [A((2, 5))])
graph_op(W, "arange_float_step", "arange", {"start": 0.5, "end": 2.0, "step": 0.25},
         lambda x: torch.arange(0.5, 2.0, 0.25), [A((3, 6))])
graph_op(W, "lt_scalar_frac", "lt", {"other": 0.1}, lambda x: x < 0.1, [A((3, 4))])
graph_op(W, "full_dynamic", "full", {"size": [0, 3], "fill_value": 2.5, "from_input": [0, -1],
                                     "from_dim": [0, -1]},
         lambda x: torch.full((x.size(0), 3), 2.5), [A((2, 3))])
graph_op(W, "full_zeros_static", "full", {"size": [2, 3], "fill_value": 0.0},
         lambda x: torch.zeros(2, 3), [A((2, 3))])


# ---------------------------------------------------------------------------
# composite: several ops chained in one graph (a ViT-style head), so that the
# ops meet each other's outputs (views, copies) inside the graph plugin
# ---------------------------------------------------------------------------
def vit_head(x, cls):
    n, c = x.shape[0], x.shape[1]
    t = x.view(n, c, -1).permute(0, 2, 1)             # [N, HW, C]
    tok = cls.expand(n, -1, -1)                          # [N, 1, C]
    seq = torch.cat([tok, t], 1)                         # [N, 1 + HW, C]
    return seq[:, 0] * 0.5 + seq[:, 1::2].mean(1) - seq.amax((1,))


ROWS.append(dict(
    file="composite", name="vit_head_graph", layer="graph", repr=False,
    config={"inputs": ["x", "cls"],
            "nodes": ["flat: x", "tokens: flat", "tok: cls, x", "seq: tok, tokens", "first: seq",
                      "half: first", "odd: seq", "avg: odd", "mx: seq", "sum: half, avg",
                      "out: sum, mx"],
            "outputs": ["out"]},
    children=[
        {"name": "flat", "type": "view",
         "config": {"shape": [0, 0, -1], "from_input": [0, 0, -1], "from_dim": [0, 1, -1]}},
        {"name": "tokens", "type": "permute", "config": {"dims": [0, 2, 1]}},
        {"name": "tok", "type": "expand",
         "config": {"size": [-1, -1, -1], "from_input": [1, -1, -1], "from_dim": [0, -1, -1]}},
        {"name": "seq", "type": "concat", "config": {"dim": 1}},
        {"name": "first", "type": "getitem", "config": {"index": [":", "0"]}},
        {"name": "half", "type": "mul", "config": {"other": 0.5}},
        {"name": "odd", "type": "getitem", "config": {"index": [":", "1::2"]}},
        {"name": "avg", "type": "mean", "config": {"dim": 1}},
        {"name": "mx", "type": "amax", "config": {"dim": [1]}},
        {"name": "sum", "type": "add"},
        {"name": "out", "type": "sub"},
    ],
    torch=lambda: Fn(vit_head), inputs=[("distinct", (2, 4, 3, 3)), A((1, 1, 4))]))


# ---------------------------------------------------------------------------
# dtype (ABI 1.5 host: op_cast, op_detach, op_arg_reduce, the 1.5 unary codes
# and binary pow): sin, cos, floor, ceil, round, trunc, pow of negative bases,
# argmax/argmin, max/min with indices, to/float/long/bool/type_as, detach,
# bool masks. Rows whose op yields no f32 gradient are graphs that add an f32
# path (the suite's backward needs one). Appended last: earlier rows keep
# their seeds.
# ---------------------------------------------------------------------------
D = "dtype"


def graph_row(name, nodes, children, f, inputs, n_in=None, **kw):
    """A graph of `children` (name, type, config) wired by `nodes` over the
    inputs x0..xn; its output is the last node's."""
    names = [f"x{i}" for i in range(len(inputs))]
    cfg = {"inputs": names, "nodes": nodes, "outputs": [nodes[-1].split(":")[0]]}
    ch = [{"name": c[0], "type": c[1], "config": c[2]} for c in children]
    ROWS.append(dict(file=D, name=name, layer="graph", config=cfg, children=ch, torch=lambda f=f: Fn(f),
                     inputs=inputs, repr=False, **kw))


op(D, "sin", "sin", {}, lambda x: x.sin(), [A((3, 4), 2.0)])
op(D, "cos", "cos", {}, lambda x: torch.cos(x), [A((3, 4), 2.0)])
op(D, "floor", "floor", {}, lambda x: x.floor(), [("halves", (3, 4))], gradcheck=False)
op(D, "ceil", "ceil", {}, lambda x: x.ceil(), [("halves", (3, 4))], gradcheck=False)
op(D, "round_half_even", "round", {}, lambda x: x.round(), [("halves", (4, 5))], gradcheck=False)
op(D, "trunc", "trunc", {}, lambda x: x.trunc(), [("halves", (3, 4))], gradcheck=False)
op(D, "pow_negative_base", "pow", {}, lambda x, y: x ** y, [("neg", (2, 3)), ("intf", (3,))], gradcheck=False)
op(D, "pow_zero_base", "pow", {}, lambda x, y: torch.pow(x, y),
   [("f", (2, 3), 1.0, [0.0]), ("pos", (2, 3))], gradcheck=False)
graph_row("argmax_dim", ["am: x0", "f: am", "mx: x0", "out: f, mx"],
          [("am", "argmax", {"dim": 1}), ("f", "float", {}), ("mx", "amax", {"dim": 1}), ("out", "add", {})],
          lambda x: x.argmax(1).float() + x.amax(1), [("distinct", (3, 5, 2))])
graph_row("argmin_keepdim_neg", ["am: x0", "f: am", "mx: x0", "out: f, mx"],
          [("am", "argmin", {"dim": -1, "keepdim": True}), ("f", "float", {}),
           ("mx", "amin", {"dim": -1, "keepdim": True}), ("out", "add", {})],
          lambda x: torch.argmin(x, -1, keepdim=True).float() + x.amin(-1, keepdim=True),
          [("distinct", (2, 3, 4))])
graph_row("argmax_flat", ["am: x0", "f: am", "mx: x0", "out: f, mx"],
          [("am", "argmax", {}), ("f", "float", {}), ("mx", "amax", {}), ("out", "add", {})],
          lambda x: torch.argmax(x).float() + x.amax(), [("distinct", (3, 4))])
graph_row("max_dim_indices", ["mx: x0", "f: mx:1", "out: mx, f"],
          [("mx", "max", {"dim": 1}), ("f", "float", {}), ("out", "add", {})],
          lambda x: (lambda r: r.values + r.indices.float())(x.max(1)), [("distinct", (3, 4, 2))])
graph_row("min_dim_keepdim_indices", ["mn: x0", "f: mn:1", "out: mn, f"],
          [("mn", "min", {"dim": 0, "keepdim": True}), ("f", "float", {}), ("out", "add", {})],
          lambda x: (lambda r: r.values + r.indices.float())(x.min(0, keepdim=True)), [("distinct", (4, 3))])
graph_row("float_of_bool_mask", ["f: x1", "out: x0, f"], [("f", "float", {}), ("out", "add", {})],
          lambda x, m: x + m.float(), [A((3, 4)), ("mask", (3, 4))])
graph_row("long_truncates", ["l: x0", "f: l", "out: f, x0"],
          [("l", "to", {"dtype": "torch.int64"}), ("f", "float", {}), ("out", "add", {})],
          lambda x: x.long().float() + x, [A((3, 4), 3.0)], gradcheck=False)
graph_row("type_as_index", ["t: x1, x0", "out: t, x0"], [("t", "type_as", {}), ("out", "add", {})],
          lambda x, i: i.type_as(x) + x, [A((2, 5)), ("i64", (2, 5), 7)])
graph_row("bool_of_float", ["b: x0", "f: b", "out: f, x0"],
          [("b", "bool", {}), ("f", "to", {"dtype": "float32"}), ("out", "add", {})],
          lambda x: x.bool().float() + x, [A((3, 4), 1.0, [0.0])], gradcheck=False)
graph_row("detach_mul", ["d: x0", "out: d, x0"], [("d", "detach", {}), ("out", "mul", {})],
          lambda x: x.detach() * x, [A((3, 4))], gradcheck=False)  # differences see both factors
op(D, "masked_fill_bool_mask", "masked_fill", {"value": -2.5}, lambda x, m: x.masked_fill(m, -2.5),
   [A((2, 3, 4)), ("mask", (3, 4))])
op(D, "where_bool_cond", "where", {}, lambda c, x, y: torch.where(c, x, y),
   [("mask", (3, 1)), A((3, 4)), A((4,))])


# ---------------------------------------------------------------------------
# scan: cumsum, gather (torch.cumsum / torch.gather: what users' models call
# beyond the zoo). Appended last: earlier rows keep their seeds.
# ---------------------------------------------------------------------------
G = "scan"
op(G, "cumsum_last", "cumsum", {"dim": -1}, lambda x: x.cumsum(-1), [A((3, 7))])
op(G, "cumsum_dim0_long", "cumsum", {"dim": 0}, lambda x: torch.cumsum(x, 0), [A((19, 2))])
op(G, "cumsum_middle", "cumsum", {"dim": 1}, lambda x: torch.cumsum(x, dim=1), [A((2, 5, 3))])
op(G, "cumsum_one", "cumsum", {"dim": 1}, lambda x: x.cumsum(1), [A((4, 1))])
op(G, "cumsum_0d", "cumsum", {"dim": 0}, lambda x: x.cumsum(0), [A(())])
op(G, "gather_dim1", "gather", {"dim": 1}, lambda x, i: torch.gather(x, 1, i),
   [A((3, 5)), ("i64", (3, 4), 5)])
op(G, "gather_dim0_smaller", "gather", {"dim": 0}, lambda x, i: x.gather(0, i),
   [A((4, 3, 2)), ("i64", (6, 2, 2), 4)])
op(G, "gather_last_repeats", "gather", {"dim": -1}, lambda x, i: x.gather(-1, i),
   [A((2, 3, 4)), ("i64", (2, 3, 9), 4)])


def main():
    torch.set_num_threads(1)
    only = set(sys.argv[1:])
    files = {}
    names = set()
    for idx, r in enumerate(ROWS):
        if r["name"] in names:
            raise SystemExit(f"duplicate row name {r['name']}")
        names.add(r["name"])
        if only and r["file"] not in only:
            continue
        f = files.setdefault(r["file"], ({}, {}))
        # stateless ops: train and eval are the same computation; one mode
        for mode in r.get("modes", ("eval",)):
            C, t, meta = mcg.run_case(r, mode, SEED + 1000 * idx + (mode == "eval"))
            f[0].update(t)
            f[1].update(meta)
    for name, (t, meta) in sorted(files.items()):
        meta["generator"] = "tests/golden/make_ops_golden.py"
        meta["torch"] = torch.__version__
        path = os.path.join(mcg.OUT, f"ops_{name}.safetensors")
        mcg.write_safetensors(path, t, meta)
        print(f"{path}: {sum(1 for k in meta if k.startswith('case.'))} cases")


if __name__ == "__main__":
    main()
