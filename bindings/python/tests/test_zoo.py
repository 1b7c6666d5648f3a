"""torchvision's classification zoo through nnmod.torch.export.

Each model (random weights, fixed seed) is exported at batch 1; the test
checks eval outputs at batch 1 and 2 (the exporter's second trace makes sizes
follow the batch), then one TRAIN step against PyTorch at batch 2: the loss, every parameter's
gradient and the batch-norm running statistics. Dropout and stochastic depth
are set to p=0 before the export so that both sides compute the same thing.

Skipped where torch or torchvision do not import (CI has neither). By default
the lighter model of 13 families runs, at a small input it takes;
NNMOD_ZOO=families runs every family (resnext, googlenet, inception,
efficientnet v2, swin v2, vgg, wide_resnet, maxvit too: ~20 minutes here);
NNMOD_ZOO=all runs all 80 models of torchvision 0.14 (slow: vgg, vit_h_14,
regnet_y_128gf, ... take minutes each on one thread), NNMOD_ZOO=a,b,c the
ones named.

Models that nnmod cannot export yet are expected failures (xfail) whose
reason is the exporter's full list of what is missing, unless they are in
MUST_EXPORT: those fail the test if they stop exporting or matching.

    python3 bindings/python/tests/test_zoo.py [names]   # the status table
"""
import copy
import os
import sys
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

import nnmod  # noqa: E402
import nnmod.torch  # noqa: E402

M = torchvision.models

# name -> (constructor kwargs, input side). The side is the smallest (or a
# small) one the model takes: 64 where the model allows it.
ZOO = {
    "alexnet": ({}, 64),
    "vgg11": ({}, 32), "vgg11_bn": ({}, 32), "vgg13": ({}, 32), "vgg13_bn": ({}, 32),
    "vgg16": ({}, 32), "vgg16_bn": ({}, 32), "vgg19": ({}, 32), "vgg19_bn": ({}, 32),
    "resnet18": ({}, 64), "resnet34": ({}, 64), "resnet50": ({}, 64), "resnet101": ({}, 64),
    "resnet152": ({}, 64), "resnext50_32x4d": ({}, 64), "resnext101_32x8d": ({}, 64),
    "resnext101_64x4d": ({}, 64), "wide_resnet50_2": ({}, 64), "wide_resnet101_2": ({}, 64),
    "squeezenet1_0": ({}, 64), "squeezenet1_1": ({}, 64),
    "densenet121": ({}, 64), "densenet161": ({}, 64), "densenet169": ({}, 64),
    "densenet201": ({}, 64),
    "googlenet": ({"aux_logits": False, "init_weights": True}, 64),
    "inception_v3": ({"aux_logits": False, "init_weights": True}, 75),
    "mobilenet_v2": ({}, 64), "mobilenet_v3_large": ({}, 64), "mobilenet_v3_small": ({}, 64),
    "mnasnet0_5": ({}, 64), "mnasnet0_75": ({}, 64), "mnasnet1_0": ({}, 64),
    "mnasnet1_3": ({}, 64),
    "shufflenet_v2_x0_5": ({}, 64), "shufflenet_v2_x1_0": ({}, 64),
    "shufflenet_v2_x1_5": ({}, 64), "shufflenet_v2_x2_0": ({}, 64),
    **{f"efficientnet_b{i}": ({}, 64) for i in range(8)},
    "efficientnet_v2_s": ({}, 64), "efficientnet_v2_m": ({}, 64),
    "efficientnet_v2_l": ({}, 64),
    **{f"regnet_{k}": ({}, 64) for k in (
        "x_400mf", "x_800mf", "x_1_6gf", "x_3_2gf", "x_8gf", "x_16gf", "x_32gf", "y_400mf",
        "y_800mf", "y_1_6gf", "y_3_2gf", "y_8gf", "y_16gf", "y_32gf", "y_128gf")},
    "convnext_tiny": ({}, 64), "convnext_small": ({}, 64), "convnext_base": ({}, 64),
    "convnext_large": ({}, 64),
    "vit_b_16": ({"image_size": 32}, 32), "vit_b_32": ({"image_size": 32}, 32),
    "vit_l_16": ({"image_size": 32}, 32), "vit_l_32": ({"image_size": 32}, 32),
    "vit_h_14": ({"image_size": 28}, 28),
    "swin_t": ({}, 64), "swin_s": ({}, 64), "swin_b": ({}, 64),
    "swin_v2_t": ({}, 64), "swin_v2_s": ({}, 64), "swin_v2_b": ({}, 64),
    "maxvit_t": ({}, 224),           # its windows need 224 (7 * 32)
}

# the default run (ctest python_zoo), kept to a few minutes on a shared
# 2-core machine: the lighter model of most families
DEFAULT = ["alexnet", "resnet18", "squeezenet1_1", "densenet121", "mobilenet_v2",
           "mobilenet_v3_small", "mnasnet0_5", "shufflenet_v2_x0_5", "efficientnet_b0",
           "regnet_y_400mf", "convnext_tiny", "vit_b_16", "swin_t"]
# NNMOD_ZOO=families: every family (vgg: 133M parameters, wide_resnet: 69M;
# minutes each on this machine's one thread)
FAMILIES = DEFAULT + ["resnext50_32x4d", "googlenet", "inception_v3", "efficientnet_v2_s",
                      "swin_v2_t", "vgg11_bn", "wide_resnet50_2", "resnet50", "squeezenet1_0",
                      "regnet_x_400mf", "mobilenet_v3_large", "maxvit_t"]

# Models that export and match today: a regression in these fails the test.
MUST_EXPORT = {"alexnet", "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn",
               "vgg19", "vgg19_bn", "resnet18", "resnet34", "resnet50", "resnet101",
               "resnet152", "resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d",
               "wide_resnet50_2", "wide_resnet101_2", "squeezenet1_0", "squeezenet1_1",
               "densenet121", "densenet161", "densenet169", "densenet201", "googlenet",
               "inception_v3", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large",
               *(f"efficientnet_b{i}" for i in range(8)), "efficientnet_v2_s",
               "efficientnet_v2_m", "efficientnet_v2_l",
               *(m for m in ZOO if m.startswith("regnet_")), "mnasnet0_5", "mnasnet0_75",
               "mnasnet1_0", "mnasnet1_3", "shufflenet_v2_x0_5", "shufflenet_v2_x1_0",
               "shufflenet_v2_x1_5", "shufflenet_v2_x2_0", "convnext_tiny", "convnext_small",
               "convnext_base", "convnext_large", "vit_b_16", "vit_b_32", "vit_l_16",
               "vit_l_32", "vit_h_14", "swin_t", "swin_s", "swin_b", "swin_v2_t", "swin_v2_s",
               "swin_v2_b", "maxvit_t"}

# Kinks. A float32 train step of a deep net at batch 2 and a small input is a
# lottery at its non-differentiable points: a batch norm over 8 values (a 2x2
# map at batch 2) spreads its outputs densely around ReLU's 0, so some
# pre-activation lies within float32's rounding of the kink, float32 and float64
# take different sides, and that element's gradient differs by its whole
# value, upstream of it everywhere. Which float32 implementation loses depends
# on the input: with torch's seed 0 and mobilenet_v2, nnmod lands 1.5e-2 from
# float64 where PyTorch's float32 lands 3.1e-4; with another input PyTorch's
# float32 lands 5.5e-3 and nnmod 3.2e-4 (session 7, issue 17's notes). With
# the kinked activations made smooth (ReLU, ReLU6 -> SiLU; Hardswish ->
# x * sigmoid, Hardsigmoid -> sigmoid), both land within 1e-4 of float64
# (mobilenet_v2 2.7e-5 vs PyTorch's 4.2e-5, googlenet 8.8e-5 vs 6.7e-5).
# So when nnmod is farther from float64 than 3x PyTorch's float32, the same
# model with smooth activations is exported and compared the same way: every
# other gradient (convs, batch norms, pools, linears, the graph) must then be
# as close to float64 as PyTorch's, and the kink is reported. ReLU's own
# gradient is pinned by the golden tests.
SMOOTH_MODULES = {"ReLU": "SiLU", "ReLU6": "SiLU", "Hardswish": "SiLU", "Hardsigmoid": "Sigmoid"}


def _smoothed(model):
    """model (a copy is not made) with ReLU/ReLU6/Hardswish/Hardsigmoid
    children replaced by SiLU/Sigmoid."""
    for n, c in list(model.named_children()):
        new = SMOOTH_MODULES.get(type(c).__name__)
        if new:
            setattr(model, n, getattr(torch.nn, new)())
        else:
            _smoothed(c)
    return model


class _SmoothFunctions:
    """While active, F.relu/relu6/hardswish/hardsigmoid are smooth too
    (googlenet and inception call F.relu in their forward)."""

    def __enter__(self):
        import torch.nn.functional as F
        self.saved = {k: getattr(F, k) for k in ("relu", "relu6", "hardswish", "hardsigmoid")}
        F.relu = F.relu6 = F.hardswish = lambda x, inplace=False: F.silu(x)
        F.hardsigmoid = lambda x, inplace=False: torch.sigmoid(x)
        return self

    def __exit__(self, *exc):
        import torch.nn.functional as F
        for k, v in self.saved.items():
            setattr(F, k, v)
        return False


# loss (relative), gradients (relative to the model's largest gradient),
# running statistics (relative to each buffer's largest value)
TRAIN_TOL = (1e-4, 5e-3, 1e-4)


def _train_step_torch(model, x):
    model.train()
    model.zero_grad()
    y = model(x)
    loss = (y * y).mean()
    loss.backward()
    grads = {n: p.grad.double().numpy() for n, p in model.named_parameters()}
    stats = {k: v.double().numpy() for k, v in model.state_dict().items() if "running_" in k}
    return float(loss), grads, stats


def _train_step_nnmod(m, x, ctx):
    m.train()
    m.zero_grad()
    y = m(nnmod.tensor(x.numpy(), ctx=ctx))
    loss = (y * y).mean()
    loss.backward()
    grads = {n: p.grad.numpy().astype(np.float64) for n, p in m.named_parameters()}
    stats = {k: v.numpy().astype(np.float64) for k, v in m.state_dict().items()
             if "running_" in k}
    return float(loss.numpy()), grads, stats


def _train_errors(a, b):
    """(loss, gradients, running statistics) errors of a against b."""
    la, ga, sa = a
    lb, gb, sb = b
    assert set(ga) <= set(gb) and set(sa) <= set(sb), "parameter names differ"
    e_loss = abs(la - lb) / max(1.0, abs(lb))
    scale = max([float(np.max(np.abs(gb[k]))) for k in ga] + [1e-30])
    e_grad = max([_max_err(ga[k], gb[k]) for k in ga] + [0.0]) / scale
    e_stat = max([_max_err(sa[k], sb[k]) / max(float(np.max(np.abs(sb[k]))), 1e-6)
                  for k in sa] + [0.0])
    return e_loss, e_grad, e_stat


def _train_vs_f64(tr_n, tr_t, pre, x):
    """Errors of nnmod's and PyTorch float32's train step against PyTorch
    float64 (from `pre`, the weights before the step)."""
    tr_d = _train_step_torch(copy.deepcopy(pre).double(), x.double())
    return _train_errors(tr_n, tr_d), _train_errors(tr_t, tr_d)


def _as_close(e_n, e_t, name="", raise_=False):
    """nnmod about as close to float64 as PyTorch's float32: within 3x its
    error plus the tolerance, for the loss, the gradients and the statistics."""
    for what, en, et, tol in zip(("loss", "gradients", "running statistics"), e_n, e_t, TRAIN_TOL):
        if en > 3 * et + tol:
            if raise_:
                raise AssertionError(f"{name}: train step {what} differ: nnmod is {en:.2e} from "
                                     f"PyTorch float64, PyTorch float32 {et:.2e}")
            return False
    return True


# Beyond classification (torchvision 0.14): segmentation models return a
# dict ({"out": ..., "aux": ...}), video models take [N, C, T, H, W].
# name -> (constructor, input shape at batch 1). Random weights, no
# downloads (weights=None, weights_backbone=None).
def _seg(name, **kw):
    return lambda: getattr(M.segmentation, name)(weights=None, weights_backbone=None,
                                                 num_classes=5, **kw)


def _video(name):
    return lambda: getattr(M.video, name)(weights=None, num_classes=7)


ZOO_MORE = {
    "lraspp_mobilenet_v3_large": (_seg("lraspp_mobilenet_v3_large"), (1, 3, 64, 64)),
    "deeplabv3_mobilenet_v3_large": (_seg("deeplabv3_mobilenet_v3_large", aux_loss=True),
                                     (1, 3, 64, 64)),
    "fcn_resnet50": (_seg("fcn_resnet50", aux_loss=True), (1, 3, 64, 64)),
    "fcn_resnet101": (_seg("fcn_resnet101", aux_loss=True), (1, 3, 64, 64)),
    "deeplabv3_resnet50": (_seg("deeplabv3_resnet50", aux_loss=True), (1, 3, 64, 64)),
    "deeplabv3_resnet101": (_seg("deeplabv3_resnet101", aux_loss=True), (1, 3, 64, 64)),
    "r3d_18": (_video("r3d_18"), (1, 3, 4, 32, 32)),
    "mc3_18": (_video("mc3_18"), (1, 3, 4, 32, 32)),
    "r2plus1d_18": (_video("r2plus1d_18"), (1, 3, 4, 32, 32)),
    # S3D's last pooling is a (2, 7, 7) window: 224x224 and 16 frames at least
    "s3d": (_video("s3d"), (1, 3, 16, 224, 224)),
    # MViT's positional tables fix 16 frames of 224x224 (minutes here)
    "mvit_v1_b": (_video("mvit_v1_b"), (1, 3, 16, 224, 224)),
    "mvit_v2_s": (_video("mvit_v2_s"), (1, 3, 16, 224, 224)),
}
# the default run: one light model of each kind (dict outputs with an aux
# head; 3-d convolutions and batch norms)
DEFAULT_MORE = ["lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large", "mc3_18"]
FAMILIES_MORE = DEFAULT_MORE + ["fcn_resnet50", "deeplabv3_resnet50", "r3d_18", "r2plus1d_18"]


def _selected_more():
    sel = os.environ.get("NNMOD_ZOO", "")
    if sel == "all":
        return list(ZOO_MORE)
    if sel == "families":
        return FAMILIES_MORE
    if sel:
        return [s.strip() for s in sel.split(",") if s.strip() in ZOO_MORE]
    return DEFAULT_MORE


def _loss(y):
    ys = list(y.values()) if isinstance(y, dict) else [y]
    loss = (ys[0] * ys[0]).mean()
    for t in ys[1:]:
        loss = loss + (t * t).mean()
    return loss


def run_more(name, tmp_path, ctx, st=None):
    """run_model for ZOO_MORE: dict outputs (every entry compared, the loss
    the sum of each one's mean square) and video inputs."""
    torch.set_num_threads(1)
    make, shape = ZOO_MORE[name]
    torch.manual_seed(0)
    model = make().eval()
    for mod in model.modules():
        if isinstance(mod, torch.nn.modules.dropout._DropoutNd):
            mod.p = 0.0
    x1 = torch.randn(*shape)
    x2 = torch.randn(2, *shape[1:])
    st = {} if st is None else st
    st.update({"model": name, "export": False, "eval": None, "train": None})
    t0 = time.time()
    manifest, _ = nnmod.torch.export(model, str(tmp_path / f"{name}.json"), x1, ctx=ctx,
                                     check=False)
    st["export"] = True
    st["export_s"] = time.time() - t0
    m = nnmod.from_manifest(manifest, ctx=ctx)
    try:
        sd = m.state_dict()
        extra = sorted(set(sd) ^ set(model.state_dict()))
        del sd
        assert not extra, f"{name}: state-dict keys differ from PyTorch's: {extra[:6]}"
        m.eval()
        errs = []
        for x in (x1, x2):
            with torch.no_grad():
                want = model(x)
            with nnmod.no_grad():
                got = m(nnmod.tensor(x.numpy(), ctx=ctx))
            if isinstance(want, dict):
                assert isinstance(got, dict) and list(got) == list(want), (list(got), list(want))
                pairs = [(got[k].numpy(), want[k].numpy()) for k in want]
            else:
                pairs = [(got.numpy(), want.numpy())]
            for g, w in pairs:
                assert g.shape == w.shape, (name, g.shape, w.shape)
                errs.append(_max_err(g, w))
                assert _close(g, w, 1e-4), f"{name}: eval output differs at batch " \
                    f"{x.shape[0]}: max abs error {errs[-1]}"
        st["eval"] = max(errs)
        # one train step: loss, every gradient, running statistics
        pre = copy.deepcopy(model)
        model.train()
        model.zero_grad()
        loss_t = _loss(model(x2))
        loss_t.backward()
        tr_t = (float(loss_t), {n: p.grad.double().numpy() for n, p in model.named_parameters()},
                {k: v.double().numpy() for k, v in model.state_dict().items() if "running_" in k})
        m.train()
        m.zero_grad()
        loss_n = _loss(m(nnmod.tensor(x2.numpy(), ctx=ctx)))
        loss_n.backward()
        tr_n = (float(loss_n.numpy()),
                {n: p.grad.numpy().astype(np.float64) for n, p in m.named_parameters()},
                {k: v.numpy().astype(np.float64) for k, v in m.state_dict().items()
                 if "running_" in k})
        errs = _train_errors(tr_n, tr_t)
        st["train"] = errs
        if any(e > t for e, t in zip(errs, TRAIN_TOL)):
            dbl = copy.deepcopy(pre).double().train()
            dbl.zero_grad()
            loss_d = _loss(dbl(x2.double()))
            loss_d.backward()
            tr_d = (float(loss_d), {n: p.grad.numpy() for n, p in dbl.named_parameters()},
                    {k: v.numpy() for k, v in dbl.state_dict().items() if "running_" in k})
            e_n, e_t = _train_errors(tr_n, tr_d), _train_errors(tr_t, tr_d)
            st["train_f64"] = (e_n, e_t)
            _as_close(e_n, e_t, name, raise_=True)
        del loss_n
        return st
    finally:
        del m


@pytest.mark.parametrize("name", _selected_more())
def test_zoo_more(name, tmp_path, ctx):
    st = run_more(name, tmp_path, ctx)
    print(f"{name}: eval max abs error {st['eval']:.2e}, train step errors {st['train']}")


def _selected():
    sel = os.environ.get("NNMOD_ZOO", "")
    if sel == "all":
        return list(ZOO)
    if sel == "families":
        return FAMILIES
    if sel:
        return [s.strip() for s in sel.split(",") if s.strip() and s.strip() not in ZOO_MORE]
    return DEFAULT


def _make(name):
    kwargs, side = ZOO[name]
    torch.manual_seed(0)
    model = getattr(M, name)(**kwargs)
    with torch.no_grad():              # zero-initialised heads (vit) would hide everything
        for pn, p in model.named_parameters():
            if p.dim() >= 2 and not p.any():
                p.normal_(0.0, 0.02)
    for mod in model.modules():        # the train step compares deterministic maths
        if isinstance(mod, torch.nn.modules.dropout._DropoutNd):
            mod.p = 0.0
        elif type(mod).__name__ == "StochasticDepth":
            mod.p = 0.0
    return model.eval(), side


def _max_err(g, w):
    return float(np.max(np.abs(g - w))) if g.shape == w.shape else float("inf")


def _close(g, w, rtol, atol=1e-5):
    return nnmod.torch._close(g, w, rtol, atol)


def run_model(name, tmp_path, ctx, train=True, st=None):
    """Exports `name`, checks it; returns a status dict (raises on failure;
    `st`, when given, is filled as far as it got)."""
    torch.set_num_threads(1)
    model, side = _make(name)
    x1 = torch.randn(1, 3, side, side)
    x2 = torch.randn(2, 3, side, side)
    st = {} if st is None else st
    st.update({"model": name, "export": False, "eval": None, "train": None})
    t0 = time.time()
    # check=False: the checks are below, explicit (export's own is the same)
    manifest, _ = nnmod.torch.export(model, str(tmp_path / f"{name}.json"), x1, ctx=ctx,
                                     check=False)
    st["export"] = True
    st["export_s"] = time.time() - t0
    m = nnmod.from_manifest(manifest, ctx=ctx)
    try:
        # exactly PyTorch's state dict (no constants of the exporter's own),
        # so a PyTorch checkpoint loads strictly
        sd = m.state_dict()
        keys = set(sd)
        del sd
        extra = sorted(keys ^ set(model.state_dict()))
        assert not extra, f"{name}: state-dict keys differ from PyTorch's: {extra[:6]}"
        # eval at batch 1 and 2 (the export already checked; say the figure)
        m.eval()
        errs = []
        for x in (x1, x2):
            with torch.no_grad():
                want = model(x).numpy()
            with nnmod.no_grad():
                got = m(nnmod.tensor(x.numpy(), ctx=ctx)).numpy()
            assert got.shape == want.shape, (name, got.shape, want.shape)
            errs.append(_max_err(got, want))
            assert _close(got, want, 1e-4), f"{name}: eval output differs at batch " \
                f"{x.shape[0]}: max abs error {errs[-1]}"
        st["eval"] = max(errs)
        if not train:
            return st
        # one train step: loss, every gradient, running statistics
        pre = copy.deepcopy(model)          # for the float64 reference, if needed
        tr_t = _train_step_torch(model, x2)
        tr_n = _train_step_nnmod(m, x2, ctx)
        errs = _train_errors(tr_n, tr_t)
        st["train"] = errs
        if any(e > t for e, t in zip(errs, TRAIN_TOL)):
            # Deep batch-normed nets at batch 2 and small inputs are
            # ill-conditioned (a channel of a few values normalised by its
            # spread): then both are compared with PyTorch in float64, and
            # nnmod must be about as close to it as PyTorch's float32 is.
            e_n, e_t = _train_vs_f64(tr_n, tr_t, pre, x2)
            st["train_f64"] = (e_n, e_t)
            if not _as_close(e_n, e_t):
                # kinks (see SMOOTH_MODULES): the same weights, smooth
                # activations, the same comparison
                with _SmoothFunctions():
                    smooth = _smoothed(copy.deepcopy(pre)).eval()
                    path = str(tmp_path / f"{name}_smooth.json")
                    man_s, _ = nnmod.torch.export(smooth, path, x1, ctx=ctx, check=False)
                    ms = nnmod.from_manifest(man_s, ctx=ctx)
                    try:
                        pre_s = copy.deepcopy(smooth)
                        ts = _train_step_torch(smooth, x2)
                        ns = _train_step_nnmod(ms, x2, ctx)
                        e_ns, e_ts = _train_vs_f64(ns, ts, pre_s, x2)
                    finally:
                        del ms
                st["train_smooth_f64"] = (e_ns, e_ts)
                print(f"{name}: train step {e_n} from float64 where PyTorch float32 is {e_t}: "
                      f"kinks; with smooth activations {e_ns} vs PyTorch's {e_ts}")
                _as_close(e_ns, e_ts, f"{name} (smooth activations)", raise_=True)
        del tr_n
        return st
    finally:
        del m


@pytest.mark.parametrize("name", _selected())
def test_zoo(name, tmp_path, ctx):
    try:
        st = run_model(name, tmp_path, ctx)
    except nnmod.UnsupportedError as e:
        if name in MUST_EXPORT:
            raise
        pytest.xfail(str(e))
    print(f"{name}: eval max abs error {st['eval']:.2e}, train step errors {st['train']}")


def main(names):
    """The per-model status table (markdown) on stdout."""
    import tempfile
    import pathlib
    import gc
    print("| model | exports | eval matches (batch 1, 2) | max abs error | train step "
          "(max rel grad error) | why not |")
    print("|---|---|---|---|---|---|")
    for name in names:
        ctx = nnmod.Context()
        with tempfile.TemporaryDirectory() as d:
            st = {"export": False, "eval": None, "train": None}
            why = ""
            try:
                (run_more if name in ZOO_MORE else run_model)(name, pathlib.Path(d), ctx, st=st)
            except nnmod.UnsupportedError as e:
                lines = [ln.strip() for ln in str(e).splitlines()[1:]
                         if ln.startswith("    ")]
                why = "; ".join(ln.split(" (")[0] if "(for" not in ln else ln.split(") (")[0]
                                + ")" for ln in lines)
            except AssertionError as e:
                why = str(e).splitlines()[0]
            except Exception as e:  # noqa: BLE001
                why = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        ev = st.get("eval")
        tr = st.get("train")
        if tr is None:
            trs = ""
        elif "train_smooth_f64" in st:
            (en, et) = st["train_smooth_f64"]
            trs = (f"yes with smooth activations (kinks; vs float64: nnmod {en[1]:.1e}, "
                   f"PyTorch float32 {et[1]:.1e})")
        elif "train_f64" in st:
            (en, et) = st["train_f64"]
            trs = (f"yes (vs float64: nnmod {en[1]:.1e}, PyTorch float32 {et[1]:.1e}; "
                   f"loss {en[0]:.1e} vs {et[0]:.1e})")
        else:
            trs = f"yes (grads {tr[1]:.1e}, loss {tr[0]:.1e}, stats {tr[2]:.1e})"
        print(f"| {name} | {'yes' if st.get('export') else 'no'} | "
              f"{'yes' if ev is not None else 'no'} | "
              f"{'' if ev is None else f'{ev:.1e}'} | {trs} | {why[:300]} |", flush=True)
        gc.collect()


if __name__ == "__main__":
    main(sys.argv[1:] or _selected() + _selected_more())
