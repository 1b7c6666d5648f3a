#!/usr/bin/env python3
"""Writes tests/golden/layers/op_layer_norm_*.safetensors: PyTorch reference
cases for host->op_layer_norm (ABI 1.5: F.layer_norm of x, or of x +
residual, as one op over the backend's layer_norm slots) through the test
fixture layer "op_probe" (config op "layer_norm", bn_flags 1 residual, 2
weight, 4 bias; dim = normalized_ndim). test_layers_golden.c runs them with
every other fixture of that folder (values and gradients; finite
differences too).

Run with a Python that has torch (the tests never need it):
    /usr/bin/python3 tests/golden/make_layer_norm_golden.py
Deterministic; uses make_layers_golden.py's writer and case layout.
"""
import os
import sys

import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_layers_golden as mg  # noqa: E402


def ln_case(name, flags, k, eps, shape, seed):
    x = mg.rnd(*shape, seed=seed)
    norm = list(shape[len(shape) - k:])
    inputs = [x]
    if flags & 1:
        inputs.append(mg.rnd(*shape, seed=seed + 1))
    if flags & 2:
        inputs.append(mg.rnd(*norm, seed=seed + 2, lo=0.5, hi=1.5))
    if flags & 4:
        inputs.append(mg.rnd(*norm, seed=seed + 3, lo=-0.5, hi=0.5))

    def fn(*t):
        i = 1
        v = t[0]
        if flags & 1:
            v = v + t[i]
            i += 1
        w = b = None
        if flags & 2:
            w = t[i]
            i += 1
        if flags & 4:
            b = t[i]
        return F.layer_norm(v, norm, w, b, eps)

    mg.case(name, "op_probe", {"op": "layer_norm", "bn_flags": flags, "dim": k, "eps": eps}, inputs, fn)


def main():
    os.makedirs(mg.OUT, exist_ok=True)
    # 37 columns: the 16-float lanes and a tail; affine
    ln_case("op_layer_norm_affine", 6, 1, 1e-5, (3, 4, 37), 900)
    # post-norm's norm(x + f(x)): the residual gets x's gradient
    ln_case("op_layer_norm_residual", 7, 1, 1e-5, (2, 5, 64), 910)
    # two normalised dims, no affine, eps 1e-3
    ln_case("op_layer_norm_2dims", 0, 2, 1e-3, (3, 4, 5), 920)
    # 40 rows: the backward's fixed row chunks (dweight / dbias partial sums)
    ln_case("op_layer_norm_rows", 3, 1, 1e-5, (40, 20), 930)
    # bias only, one column per row would be constant: 33 columns
    ln_case("op_layer_norm_bias_only", 4, 1, 1e-5, (7, 33), 940)


if __name__ == "__main__":
    main()
