#!/usr/bin/env python3
"""Writes tests/golden/layers/*.safetensors: PyTorch reference cases for the
ABI 1.3 host ops (through the test fixture layer "op_probe") and the layer
plugins of issue 10 part A (conv, pooling, flatten, normalisation).

Run with a Python that has torch (the tests never need it):
    /usr/bin/python3 tests/golden/make_layers_golden.py
Deterministic (fixed seeds, float32, CPU, one thread); the files are small
and committed. Each file is one case, read by tests/layers/test_layers_golden.c:

  metadata  manifest     a one-module nnmod manifest (JSON) building the layer
            mode         "train" or "eval"
            n_inputs     number of inputs; input_<i> each
            grad_inputs  comma-separated indices of the inputs that require grad
            n_warmup     calls made before the checked one (warmup<k>_input_<i>)
            repr         (layers) PyTorch's repr(module), which print(model) must match
  tensors   state.<name>        parameters and buffers loaded before the calls
            input_<i>           the checked call's inputs
            output_0            its output
            upstream_0          W: the gradient is that of sum(output_0 * W)
            grad_input_<i>      d/d input_i
            grad.<param>        d/d each parameter
            state_after.<name>  buffers after every call (running statistics)

num_batches_tracked is stored as F32 (nnmod keeps buffers in f32).
"""
import json
import os
import struct
import zlib

import torch
import torch.nn as nn
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "layers")
torch.set_num_threads(1)


def write_safetensors(path, tensors, metadata):
    header = {"__metadata__": metadata}
    blobs, off = [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().to(torch.float32).contiguous()
        b = t.numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def manifest(layer_type, config, version="^1.0"):
    root = {"type": layer_type}
    if config:
        root["config"] = config
    return json.dumps({"format": "nnmod.manifest", "version": 1,
                       "plugins": {layer_type: version}, "root": root})


def case(name, layer_type, config, inputs, fn=None, module=None, mode="train",
         grad_inputs=None, warmup=()):
    """fn(*inputs) -> output for stateless ops; module: a torch.nn.Module whose
    state_dict is the layer's."""
    g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    if grad_inputs is None:
        grad_inputs = list(range(len(inputs)))
    tensors, meta = {}, {}
    if module is not None:
        module.train(mode == "train")
        for k, v in module.state_dict().items():
            tensors["state." + k] = v.clone().float()
        with torch.no_grad():
            for k, w in enumerate(warmup):
                for i, x in enumerate(w):
                    tensors["warmup%d_input_%d" % (k, i)] = x
                module(*w)
        fn = module
    xs = []
    for i, x in enumerate(inputs):
        x = x.clone()
        if i in grad_inputs:
            x.requires_grad_(True)
        tensors["input_%d" % i] = x.detach()
        xs.append(x)
    y = fn(*xs)
    w = torch.rand(y.shape, generator=g) * 2 - 1
    tensors["output_0"] = y.detach()
    tensors["upstream_0"] = w
    if y.requires_grad:
        (y * w).sum().backward()
        for i in grad_inputs:
            if xs[i].grad is not None:
                tensors["grad_input_%d" % i] = xs[i].grad
        if module is not None:
            for k, p in module.named_parameters():
                if p.grad is not None:
                    tensors["grad." + k] = p.grad
    if module is not None:
        for k, b in module.named_buffers():
            tensors["state_after." + k] = b.detach().clone().float()
    if module is not None:
        meta["repr"] = repr(module)
    meta["manifest"] = manifest(layer_type, config)
    meta["mode"] = mode
    meta["n_inputs"] = str(len(inputs))
    meta["grad_inputs"] = ",".join(str(i) for i in grad_inputs)
    meta["n_warmup"] = str(len(warmup))
    write_safetensors(os.path.join(OUT, name + ".safetensors"), tensors, meta)


def rnd(*shape, seed=0, lo=-2.0, hi=2.0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g) * (hi - lo) + lo


def spaced(*shape, seed=0):
    """Distinct values at least 0.05 apart (max pooling: a finite difference
    of 1e-2 never changes which element wins)."""
    g = torch.Generator().manual_seed(seed)
    n = 1
    for s in shape:
        n *= s
    return (torch.randperm(n, generator=g).float() * 0.05 - 0.025 * n).reshape(shape)


def op_cases():
    U = {"erf": 12, "add_scalar": 13, "pow": 14, "clamp_min": 15, "clamp_max": 16}
    x = rnd(3, 5, seed=1)
    case("op_erf", "op_probe", {"op": "unary", "code": U["erf"]}, [x], torch.erf)
    case("op_add_scalar", "op_probe", {"op": "unary", "code": U["add_scalar"], "alpha": 0.75}, [x],
         lambda t: t + 0.75)
    xp = rnd(3, 5, seed=2, lo=0.5, hi=2.0)
    case("op_pow", "op_probe", {"op": "unary", "code": U["pow"], "alpha": 2.5}, [xp], lambda t: t ** 2.5)
    case("op_pow_neg", "op_probe", {"op": "unary", "code": U["pow"], "alpha": -0.5}, [xp],
         lambda t: t ** -0.5)
    # away from the bound by more than the finite difference step
    xa = x + torch.sign(x - 0.25) * 0.05
    case("op_clamp_min", "op_probe", {"op": "unary", "code": U["clamp_min"], "alpha": 0.25}, [xa],
         lambda t: torch.clamp(t, min=0.25))
    xb = x + torch.sign(x + 0.25) * 0.05
    case("op_clamp_max", "op_probe", {"op": "unary", "code": U["clamp_max"], "alpha": -0.25}, [xb],
         lambda t: torch.clamp(t, max=-0.25))
    a, b = rnd(2, 3, 4, 5, seed=3), rnd(3, 5, 2, seed=4)
    case("op_bmm_broadcast", "op_probe", {"op": "bmm"}, [a, b], torch.matmul)
    case("op_bmm_batched", "op_probe", {"op": "bmm"}, [rnd(4, 3, 6, seed=5), rnd(4, 6, 2, seed=6)],
         torch.matmul)
    case("op_bmm_shared_rhs", "op_probe", {"op": "bmm"}, [rnd(2, 3, 4, seed=7), rnd(4, 5, seed=8)],
         torch.matmul)
    case("op_bmm_lhs_broadcast", "op_probe", {"op": "bmm"}, [rnd(1, 3, 4, seed=17), rnd(2, 4, 5, seed=18)],
         torch.matmul)
    x4 = rnd(2, 3, 4, 5, seed=9)
    case("op_permute", "op_probe", {"op": "permute", "ints": [0, 2, 3, 1]}, [x4],
         lambda t: t.permute(0, 2, 3, 1))
    case("op_permute_neg", "op_probe", {"op": "permute", "ints": [-1, 0, 1, 2]}, [x4],
         lambda t: t.permute(3, 0, 1, 2))
    case("op_concat_dim1", "op_probe", {"op": "concat", "dim": 1},
         [rnd(2, 3, 4, seed=10), rnd(2, 1, 4, seed=11), rnd(2, 2, 4, seed=12)],
         lambda *t: torch.cat(t, 1))
    case("op_concat_last", "op_probe", {"op": "concat", "dim": -1},
         [rnd(2, 3, 4, seed=13), rnd(2, 3, 2, seed=14)], lambda *t: torch.cat(t, -1))
    case("op_slice", "op_probe", {"op": "slice", "dim": 2, "start": 1, "length": 3}, [x4],
         lambda t: t.narrow(2, 1, 3))
    case("op_slice_first", "op_probe", {"op": "slice", "dim": 0, "start": 1, "length": 1}, [x4],
         lambda t: t.narrow(0, 1, 1))
    case("op_softmax_last", "op_probe", {"op": "softmax", "dim": -1}, [x4], lambda t: F.softmax(t, -1))
    case("op_softmax_mid", "op_probe", {"op": "softmax", "dim": 1}, [x4], lambda t: F.softmax(t, 1))
    case("op_log_softmax_mid", "op_probe", {"op": "softmax", "dim": 2, "log": True}, [x4],
         lambda t: F.log_softmax(t, 2))
    cond = (rnd(3, 1, 5, seed=15) > 0).float()
    case("op_where", "op_probe", {"op": "where"}, [cond, rnd(3, 4, 5, seed=16), rnd(1, 4, 1, seed=19)],
         lambda c, p, q: torch.where(c != 0, p, q), grad_inputs=[1, 2])
    mask = (rnd(2, 1, 4, seed=20) > 0.5).float()
    case("op_masked_fill", "op_probe", {"op": "masked_fill", "value": -1e9},
         [rnd(2, 3, 4, seed=21), mask], lambda t, m: t.masked_fill(m != 0, -1e9), grad_inputs=[0])


def conv_op_cases():
    P = "op_probe"
    x, w, b = rnd(2, 4, 7, 6, seed=30), rnd(6, 2, 3, 2, seed=31, lo=-0.5, hi=0.5), rnd(6, seed=32)
    case("op_conv2d_groups_stride_dil", P,
         {"op": "conv", "ns": 2, "groups": 2, "stride": [2, 1], "padding": [1, 0], "dilation": [1, 2]},
         [x, w, b], lambda x, w, b: F.conv2d(x, w, b, stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2))
    case("op_conv2d_pointwise", P, {"op": "conv", "ns": 2},
         [rnd(2, 3, 4, 5, seed=33), rnd(5, 3, 1, 1, seed=34), rnd(5, seed=35)], F.conv2d)
    # "same" with an even kernel: one more zero after than before
    xs, ws = rnd(1, 2, 5, 6, seed=36), rnd(3, 2, 4, 4, seed=37, lo=-0.5, hi=0.5)
    case("op_conv2d_asym_pad", P, {"op": "conv", "ns": 2, "padding": 1, "padding_end": 2}, [xs, ws],
         lambda x, w: F.conv2d(F.pad(x, (1, 2, 1, 2)), w))
    case("op_conv1d", P, {"op": "conv", "ns": 1, "stride": 2, "padding": 2, "dilation": 2},
         [rnd(3, 2, 11, seed=38), rnd(4, 2, 3, seed=39), rnd(4, seed=40)],
         lambda x, w, b: F.conv1d(x, w, b, stride=2, padding=2, dilation=2))
    case("op_conv3d", P, {"op": "conv", "ns": 3, "padding": 1},
         [rnd(1, 2, 4, 3, 5, seed=41), rnd(3, 2, 3, 2, 3, seed=42, lo=-0.5, hi=0.5)],
         lambda x, w: F.conv3d(x, w, padding=1))
    case("op_conv_transpose2d", P,
         {"op": "conv", "ns": 2, "transposed": 1, "groups": 2, "stride": 2, "padding": 1, "output_padding": 1,
          "dilation": [1, 2]},
         [rnd(2, 4, 3, 4, seed=43), rnd(4, 3, 3, 3, seed=44, lo=-0.5, hi=0.5), rnd(6, seed=45)],
         lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1, groups=2,
                                            dilation=(1, 2)))
    case("op_conv_transpose1d", P, {"op": "conv", "ns": 1, "transposed": 1, "stride": 3},
         [rnd(2, 3, 5, seed=46), rnd(3, 2, 4, seed=47)], lambda x, w: F.conv_transpose1d(x, w, stride=3))
    # pooling: spaced values keep the max unique under finite differences
    xp = spaced(2, 3, 7, 8, seed=48)
    case("op_max_pool2d", P, {"op": "pool", "pool_op": 0, "kernel": 3, "stride": 2, "padding": 1}, [xp],
         lambda x: F.max_pool2d(x, 3, 2, 1))
    case("op_max_pool2d_dil_ceil", P,
         {"op": "pool", "pool_op": 0, "kernel": [2, 3], "stride": [2, 2], "dilation": [2, 1], "ceil_mode": 1},
         [xp], lambda x: F.max_pool2d(x, (2, 3), 2, 0, dilation=(2, 1), ceil_mode=True))
    xa = rnd(2, 3, 7, 8, seed=49)
    case("op_avg_pool2d", P, {"op": "pool", "pool_op": 1, "kernel": 3, "stride": 2, "padding": 1}, [xa],
         lambda x: F.avg_pool2d(x, 3, 2, 1))
    case("op_avg_pool2d_nopad_ceil", P,
         {"op": "pool", "pool_op": 1, "kernel": 3, "stride": 2, "padding": 1, "ceil_mode": 1,
          "count_include_pad": 0}, [xa],
         lambda x: F.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False))
    case("op_avg_pool2d_divisor", P,
         {"op": "pool", "pool_op": 1, "kernel": 2, "stride": 2, "divisor_override": 3}, [xa],
         lambda x: F.avg_pool2d(x, 2, 2, divisor_override=3))
    case("op_adaptive_avg_pool2d", P, {"op": "pool", "pool_op": 2, "output_size": [3, 5]}, [xa],
         lambda x: F.adaptive_avg_pool2d(x, (3, 5)))
    case("op_max_pool1d", P, {"op": "pool", "pool_op": 0, "ns": 1, "kernel": 3, "stride": 1},
         [spaced(2, 9, seed=50)], lambda x: F.max_pool1d(x, 3, 1))


def randomize(m, seed):
    """Non-trivial affine parameters (PyTorch's ones/zeros would hide a
    swapped weight and bias)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.rand(p.shape, generator=g) * 1.5 + 0.25)
    return m


def pretrain(m, shape, steps, seed):
    """Running statistics that are not the initial zeros/ones."""
    m.train()
    with torch.no_grad():
        for k in range(steps):
            m(rnd(*shape, seed=seed + k, lo=-1.0, hi=3.0))
    return m


def layer_cases():
    torch.manual_seed(1234)
    # ---- convolutions ----
    case("conv2d_basic", "conv2d", {"in_channels": 3, "out_channels": 4, "kernel_size": 3, "padding": 1},
         [rnd(2, 3, 6, 5, seed=100)], module=nn.Conv2d(3, 4, 3, padding=1))
    case("conv2d_stride_dilation_nobias", "conv2d",
         {"in_channels": 2, "out_channels": 3, "kernel_size": [3, 2], "stride": 2, "dilation": [2, 1],
          "padding": [2, 0], "bias": False},
         [rnd(2, 2, 9, 7, seed=101)],
         module=nn.Conv2d(2, 3, (3, 2), stride=2, dilation=(2, 1), padding=(2, 0), bias=False))
    case("conv2d_groups_same_even", "conv2d",
         {"in_channels": 4, "out_channels": 6, "kernel_size": 4, "groups": 2, "padding": "same"},
         [rnd(2, 4, 5, 6, seed=102)], module=nn.Conv2d(4, 6, 4, groups=2, padding="same"))
    case("conv2d_depthwise_valid", "conv2d",
         {"in_channels": 4, "out_channels": 8, "kernel_size": 3, "groups": 4, "padding": "valid"},
         [rnd(2, 4, 6, 6, seed=103)], module=nn.Conv2d(4, 8, 3, groups=4, padding="valid"))
    case("conv2d_same_dilated", "conv2d",
         {"in_channels": 2, "out_channels": 2, "kernel_size": 3, "dilation": 2, "padding": "same"},
         [rnd(1, 2, 7, 5, seed=104)], module=nn.Conv2d(2, 2, 3, dilation=2, padding="same"))
    case("conv2d_unbatched", "conv2d", {"in_channels": 3, "out_channels": 2, "kernel_size": 2},
         [rnd(3, 5, 4, seed=105)], module=nn.Conv2d(3, 2, 2))
    case("conv2d_1x1_batch1", "conv2d", {"in_channels": 5, "out_channels": 3, "kernel_size": 1},
         [rnd(1, 5, 4, 3, seed=106)], module=nn.Conv2d(5, 3, 1))
    case("conv1d_stride_pad", "conv1d",
         {"in_channels": 2, "out_channels": 3, "kernel_size": 3, "stride": 2, "padding": 1},
         [rnd(2, 2, 9, seed=107)], module=nn.Conv1d(2, 3, 3, stride=2, padding=1))
    case("conv1d_same_dilated_tuple", "conv1d",
         {"in_channels": 3, "out_channels": 2, "kernel_size": [4], "dilation": [2], "padding": "same"},
         [rnd(2, 3, 10, seed=108)], module=nn.Conv1d(3, 2, 4, dilation=2, padding="same"))
    case("conv_transpose2d_groups_outpad", "conv_transpose2d",
         {"in_channels": 4, "out_channels": 6, "kernel_size": 3, "stride": 2, "padding": 1,
          "output_padding": 1, "groups": 2},
         [rnd(2, 4, 3, 4, seed=109)],
         module=nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2))
    case("conv_transpose2d_rect_nobias", "conv_transpose2d",
         {"in_channels": 3, "out_channels": 2, "kernel_size": [2, 3], "stride": [1, 2], "dilation": [2, 1],
          "bias": False},
         [rnd(1, 3, 4, 3, seed=110)],
         module=nn.ConvTranspose2d(3, 2, (2, 3), stride=(1, 2), dilation=(2, 1), bias=False))
    # ---- pooling ----
    xp = spaced(2, 3, 8, 7, seed=111)
    case("max_pool2d_k2", "max_pool2d", {"kernel_size": 2}, [xp], module=nn.MaxPool2d(2))
    case("max_pool2d_pad_ceil", "max_pool2d",
         {"kernel_size": [3, 2], "stride": [2, 1], "padding": 1, "ceil_mode": True}, [xp],
         module=nn.MaxPool2d((3, 2), stride=(2, 1), padding=1, ceil_mode=True))
    case("max_pool2d_dilation_unbatched", "max_pool2d", {"kernel_size": 2, "stride": 1, "dilation": 2},
         [spaced(3, 6, 6, seed=112)], module=nn.MaxPool2d(2, stride=1, dilation=2))
    xa = rnd(2, 3, 7, 9, seed=113)
    case("avg_pool2d_k3s2p1", "avg_pool2d", {"kernel_size": 3, "stride": 2, "padding": 1}, [xa],
         module=nn.AvgPool2d(3, stride=2, padding=1))
    case("avg_pool2d_exclude_pad_ceil", "avg_pool2d",
         {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True, "count_include_pad": False}, [xa],
         module=nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False))
    case("avg_pool2d_divisor", "avg_pool2d", {"kernel_size": [2, 3], "divisor_override": 4}, [xa],
         module=nn.AvgPool2d((2, 3), divisor_override=4))
    case("adaptive_avg_pool2d_3x4", "adaptive_avg_pool2d", {"output_size": [3, 4]}, [xa],
         module=nn.AdaptiveAvgPool2d((3, 4)))
    case("adaptive_avg_pool2d_global", "adaptive_avg_pool2d", {"output_size": 1}, [xa],
         module=nn.AdaptiveAvgPool2d(1))
    # ---- flatten ----
    x4 = rnd(2, 3, 4, 5, seed=114)
    case("flatten_default", "flatten", None, [x4], module=nn.Flatten())
    case("flatten_0_2", "flatten", {"start_dim": 0, "end_dim": 2}, [x4], module=nn.Flatten(0, 2))
    case("unflatten", "unflatten", {"dim": 1, "unflattened_size": [3, 4]}, [rnd(2, 12, 5, seed=115)],
         module=nn.Unflatten(1, (3, 4)))
    case("unflatten_infer", "unflatten", {"dim": -1, "unflattened_size": [2, -1]}, [rnd(2, 3, 10, seed=116)],
         module=nn.Unflatten(-1, (2, -1)))
    # ---- normalisation ----
    bn_shape = (4, 3, 5, 4)
    warm = [[rnd(*bn_shape, seed=120 + k, lo=-1.0, hi=3.0)] for k in range(3)]
    case("batch_norm2d_train_steps", "batch_norm2d", {"num_features": 3}, [rnd(*bn_shape, seed=119)],
         module=randomize(nn.BatchNorm2d(3), 1), warmup=warm)
    case("batch_norm2d_momentum_none", "batch_norm2d", {"num_features": 3, "momentum": "none", "eps": 1e-3},
         [rnd(*bn_shape, seed=124)], module=randomize(nn.BatchNorm2d(3, eps=1e-3, momentum=None), 2),
         warmup=warm)
    case("batch_norm2d_eval", "batch_norm2d", {"num_features": 3, "momentum": 0.3}, [rnd(*bn_shape, seed=125)],
         module=pretrain(randomize(nn.BatchNorm2d(3, momentum=0.3), 3), bn_shape, 3, 130), mode="eval")
    case("batch_norm2d_no_affine_no_track_eval", "batch_norm2d",
         {"num_features": 3, "affine": False, "track_running_stats": False}, [rnd(*bn_shape, seed=126)],
         module=nn.BatchNorm2d(3, affine=False, track_running_stats=False), mode="eval")
    case("batch_norm1d_2d_train", "batch_norm1d", {"num_features": 5}, [rnd(6, 5, seed=127)],
         module=randomize(nn.BatchNorm1d(5), 4), warmup=[[rnd(6, 5, seed=128)]])
    case("batch_norm1d_3d_train", "batch_norm1d", {"num_features": 3, "momentum": 0.5},
         [rnd(2, 3, 4, seed=129)], module=randomize(nn.BatchNorm1d(3, momentum=0.5), 5))
    case("batch_norm1d_eval", "batch_norm1d", {"num_features": 3}, [rnd(2, 3, 4, seed=131)],
         module=pretrain(randomize(nn.BatchNorm1d(3), 6), (2, 3, 4), 2, 140), mode="eval")
    case("layer_norm_2d_shape", "layer_norm", {"normalized_shape": [4, 5]}, [x4],
         module=randomize(nn.LayerNorm([4, 5]), 7))
    case("layer_norm_int_eps", "layer_norm", {"normalized_shape": 5, "eps": 1e-3}, [x4],
         module=randomize(nn.LayerNorm(5, eps=1e-3), 8))
    case("layer_norm_no_affine", "layer_norm", {"normalized_shape": [5], "elementwise_affine": False}, [x4],
         module=nn.LayerNorm(5, elementwise_affine=False))
    case("group_norm", "group_norm", {"num_groups": 2, "num_channels": 6}, [rnd(2, 6, 3, 4, seed=132)],
         module=randomize(nn.GroupNorm(2, 6), 9))
    case("group_norm_no_affine_3d", "group_norm", {"num_groups": 3, "num_channels": 3, "affine": False},
         [rnd(2, 3, 5, seed=133)], module=nn.GroupNorm(3, 3, affine=False))


def main():
    os.makedirs(OUT, exist_ok=True)
    op_cases()
    conv_op_cases()
    layer_cases()


if __name__ == "__main__":
    main()
