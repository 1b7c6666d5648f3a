#!/usr/bin/env python3
"""Writes tests/golden/semantics/pytorch_semantics.json: what PyTorch 1.13's
nn.Module, hooks, autograd, optimizers, losses and layers do at the edges
that a PyTorch user relies on, for bindings/python/tests/test_pytorch_semantics.py
to check nnmod against (the test never needs torch).

Run with a Python that has torch 1.13:
    /usr/bin/python3 tests/golden/make_semantics_golden.py

Every case records its inputs (weights, data) and PyTorch's results: names
and orders, which calls raise (the exception class), values (float32 values
written as JSON numbers, which round-trip exactly; NaN as NaN). The file is
deterministic and meant to be committed.
"""
import json
import os

import numpy as np
import torch
import torch.nn as nn

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "semantics",
                   "pytorch_semantics.json")
R = np.random.default_rng(20261207)
torch.manual_seed(20261207)


def rnd(*shape):
    return R.standard_normal(shape).astype(np.float32)


def arr(t):
    if isinstance(t, torch.Tensor):
        t = t.detach().cpu().numpy()
    a = np.asarray(t)
    return {"shape": list(a.shape), "dtype": str(a.dtype),
            "data": [float(v) if a.dtype.kind == "f" else int(v) for v in a.reshape(-1)]}


def sd_of(m):
    return {k: arr(v) for k, v in m.state_dict().items()}


def raises(fn):
    try:
        fn()
        return None
    except Exception as e:  # noqa: BLE001 - the class is the fact recorded
        return type(e).__name__


G = {"torch_version": torch.__version__}


# ---- module structure ------------------------------------------------------

def structure():
    lin = nn.Linear(3, 3)
    seq = nn.Sequential(lin, nn.ReLU(), lin)           # one Linear in two slots
    x = rnd(2, 3)
    xt = torch.tensor(x, requires_grad=True)
    y = seq(xt)
    y.sum().backward()
    nested = nn.Sequential(nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2)), nn.Linear(2, 1))
    G["shared"] = {
        "weights": sd_of(lin), "x": arr(x), "y": arr(y), "x_grad": arr(xt.grad),
        "weight_grad": arr(lin.weight.grad),
        "named_parameters": [n for n, _ in seq.named_parameters()],
        "named_modules": [n for n, _ in seq.named_modules()],
        "named_children": [n for n, _ in seq.named_children()],
        "state_dict": list(seq.state_dict()),
        "len": len(seq), "iter": len(list(iter(seq))),
        "num_params": sum(p.numel() for p in seq.parameters()),
    }
    G["nested"] = {
        "named_parameters": [n for n, _ in nested.named_parameters()],
        "named_modules": [n for n, _ in nested.named_modules()],
        "named_modules_prefix": [n for n, _ in nested.named_modules(prefix="p")],
        "state_dict_prefix": list(nested.state_dict(prefix="p.")),
        "apply_order": [],
    }
    nested.apply(lambda m: G["nested"]["apply_order"].append(
        next(n for n, mm in nested.named_modules() if mm is m)))
    G["key_orders"] = {
        "batch_norm1d": list(nn.BatchNorm1d(3).state_dict()),
        "transformer_encoder_layer": list(nn.TransformerEncoderLayer(4, 2, 8).state_dict()),
        "transformer_encoder_layer_modules":
            [n for n, _ in nn.TransformerEncoderLayer(4, 2, 8).named_modules()],
        "lstm": list(nn.LSTM(3, 4, num_layers=2, bidirectional=True, proj_size=2).state_dict()),
    }
    # replacing, deleting, adding children (names keep their slots)
    a, b, c = nn.Linear(2, 2), nn.Linear(2, 2), nn.Linear(2, 2)
    m = nn.Sequential()
    m.add_module("a", a)
    m.add_module("b", b)
    steps = []
    m.a = c
    steps.append([n for n, _ in m.named_children()])
    del m.a
    steps.append([n for n, _ in m.named_children()])
    m.add_module("z", a)
    steps.append([n for n, _ in m.named_children()])
    m.add_module("b", c)                                  # an existing name: replaced in place
    steps.append([n for n, _ in m.named_children()])
    G["children_edits"] = {"steps": steps, "b_is_c": m.b is c}


# ---- state dicts -----------------------------------------------------------

def state_dicts():
    lin = nn.Linear(3, 2)
    seq = nn.Sequential(lin)
    sd = dict(seq.state_dict())
    partial = {"0.weight": torch.ones(2, 3), "extra": torch.zeros(1), "0.zzz": torch.zeros(1)}
    strict_exc = raises(lambda: nn.Sequential(nn.Linear(3, 2)).load_state_dict(partial))
    tgt = nn.Sequential(nn.Linear(3, 2))
    r = tgt.load_state_dict(partial, strict=False)
    mism = {"0.weight": torch.ones(2, 3) * 7, "0.bias": torch.zeros(5)}
    tgt2 = nn.Sequential(nn.Linear(3, 2))
    before = tgt2[0].weight.detach().clone()
    mism_exc = raises(lambda: tgt2.load_state_dict(mism, strict=False))
    f64 = {k: v.double() for k, v in sd.items()}
    tgt3 = nn.Sequential(nn.Linear(3, 2))
    tgt3.load_state_dict(f64)
    bn = nn.BatchNorm1d(2)
    bn_sd = {k: v for k, v in bn.state_dict().items() if k != "num_batches_tracked"}
    G["load"] = {
        "weights": {k: arr(v) for k, v in sd.items()},
        "partial_strict_exception": strict_exc,
        "partial_missing": r.missing_keys, "partial_unexpected": r.unexpected_keys,
        "partial_weight_after": arr(tgt[0].weight),
        "mismatch_exception": mism_exc,
        # PyTorch copies the keys that fit before it raises (nnmod copies none)
        "mismatch_torch_loaded_weight": bool((tgt2[0].weight != before).any()),
        "f64_loads": arr(tgt3[0].weight),
        "bn_without_num_batches_tracked": raises(lambda: nn.BatchNorm1d(2).load_state_dict(bn_sd)),
        "state_dict_requires_grad": seq.state_dict()["0.weight"].requires_grad,
    }


# ---- modes, freezing, zero_grad ----------------------------------------------

def modes():
    l1, l2 = nn.Linear(3, 2), nn.Linear(2, 2)
    m = nn.Sequential(l1, nn.Dropout(0.5), l2)
    m.eval()
    ev = [x.training for x in m.modules()]
    m[0].train()
    one = [x.training for x in m.modules()]
    m.train()
    m[0].requires_grad_(False)
    x = rnd(4, 3)
    xt = torch.tensor(x, requires_grad=True)
    m.eval()
    m(xt).sum().backward()
    frozen = {"l1_grad_none": l1.weight.grad is None, "l1_requires_grad": l1.weight.requires_grad,
              "x_grad": arr(xt.grad), "l2_weight_grad": arr(l2.weight.grad)}
    # zero_grad(set_to_none=False) keeps zero-filled grads, and a step with
    # weight decay and momentum still moves those parameters
    m.zero_grad(set_to_none=False)
    zeros = arr(l2.weight.grad)
    opt = torch.optim.SGD([l2.weight, l2.bias], lr=0.1, momentum=0.9, weight_decay=0.5)
    w0 = {k: arr(v) for k, v in l2.state_dict().items()}
    opt.step()
    opt.zero_grad(set_to_none=False)
    opt.step()
    G["modes"] = {
        "weights": {"l1": sd_of(l1), "l2": w0}, "x": arr(x),
        "eval": ev, "train_child": one, "frozen": frozen, "zero_filled": zeros,
        "after_two_zero_grad_steps": {k: arr(v) for k, v in l2.state_dict().items()},
    }


# ---- hooks -------------------------------------------------------------------

def hooks():
    x = rnd(2, 3)
    lin = nn.Linear(3, 3)
    w = sd_of(lin)
    out = {"weights": w, "x": arr(x)}

    def fresh():
        m = nn.Linear(3, 3)
        m.load_state_dict(lin.state_dict())
        return m

    m = fresh()
    m.register_forward_pre_hook(lambda mod, a: (a[0] * 2,))
    out["pre_tuple"] = arr(m(torch.tensor(x)))
    m = fresh()
    m.register_forward_pre_hook(lambda mod, a: a[0] * 2)
    out["pre_single"] = arr(m(torch.tensor(x)))
    m = fresh()
    m.register_forward_hook(lambda mod, a, o: o + 1)
    out["forward_replace"] = arr(m(torch.tensor(x)))
    # order: global hooks first, then the module's in registration order; removal
    log = []
    m = fresh()
    h1 = m.register_forward_hook(lambda mod, a, o: log.append("h1"))
    m.register_forward_hook(lambda mod, a, o: log.append("h2"))
    m.register_forward_pre_hook(lambda mod, a: log.append("p1"))
    g = nn.modules.module.register_module_forward_hook(lambda mod, a, o: log.append("g"))
    gp = nn.modules.module.register_module_forward_pre_hook(lambda mod, a: log.append("gp"))
    m(torch.tensor(x))
    h1.remove()
    m(torch.tensor(x))
    g.remove()
    gp.remove()
    out["order"] = log
    # a module called twice: its backward hooks fire per call
    calls = []
    m = fresh()
    m.register_full_backward_hook(lambda mod, gi, go: calls.append(
        [arr(gi[0]) if gi[0] is not None else None, arr(go[0])]))
    xt = torch.tensor(x, requires_grad=True)
    (m(m(xt)) * 2).sum().backward()
    out["twice"] = {"calls": calls, "x_grad": arr(xt.grad), "weight_grad": arr(m.weight.grad)}
    calls2 = []
    m = fresh()
    m.register_full_backward_hook(lambda mod, gi, go: calls2.append(gi[0] is None))
    m(torch.tensor(x)).sum().backward()
    out["no_input_grad"] = calls2
    # replacing grad_input changes what flows upstream, not the weight's grad
    m = fresh()
    m.register_full_backward_hook(lambda mod, gi, go: (gi[0] * 3,))
    xt = torch.tensor(x, requires_grad=True)
    m(xt).sum().backward()
    out["replace_grad_input"] = {"x_grad": arr(xt.grad), "weight_grad": arr(m.weight.grad)}
    # a forward hook's replacement is what the backward hook's grad_output is for
    seen = []
    m = fresh()
    m.register_full_backward_hook(lambda mod, gi, go: seen.append(arr(go[0])))
    m.register_forward_hook(lambda mod, a, o: o * 2)
    xt = torch.tensor(x, requires_grad=True)
    (m(xt) * m(xt)).sum().backward()
    out["forward_replaced_backward"] = {"grad_outputs": seen, "x_grad": arr(xt.grad)}
    # modules that return their input: the hook still sees the gradients
    ident = []
    idm = nn.Identity()
    idm.register_full_backward_hook(lambda mod, gi, go: ident.append([arr(gi[0]), arr(go[0])]))
    xt = torch.tensor(x, requires_grad=True)
    (idm(xt) * 3).sum().backward()
    out["identity"] = ident
    # no_grad: forward hooks run, the output needs no grad
    cnt = [0]
    m = fresh()
    m.register_forward_hook(lambda *a: cnt.__setitem__(0, cnt[0] + 1))
    with torch.no_grad():
        y = m(torch.tensor(x))
    out["no_grad"] = {"forward_hook_calls": cnt[0], "requires_grad": y.requires_grad}
    # a module with an input that needs no gradient beside one that does: the
    # hook sees zeros there (BackwardHookFunction materializes them)
    mixed = []
    ce = nn.CrossEntropyLoss()
    ce.register_full_backward_hook(lambda mod, gi, go: mixed.append(
        [arr(g) if g is not None else None for g in gi]))
    xt = torch.tensor(x, requires_grad=True)
    target = np.array([0, 2])
    ce(xt, torch.tensor(target)).backward()
    out["mixed_inputs"] = {"target": arr(target), "grad_input": mixed[0], "x_grad": arr(xt.grad)}
    # global full backward hooks run before the module's
    blog = []
    m = fresh()
    m.register_full_backward_hook(lambda *a: blog.append("m"))
    gb = nn.modules.module.register_module_full_backward_hook(lambda *a: blog.append("g"))
    m(torch.tensor(x, requires_grad=True)).sum().backward()
    gb.remove()
    out["backward_order"] = blog
    G["hooks"] = out


# ---- autograd ----------------------------------------------------------------

def autograd():
    lin = nn.Linear(3, 2)
    x = rnd(4, 3)
    out = {"weights": sd_of(lin), "x": arr(x)}
    for _ in range(2):
        lin(torch.tensor(x)).sum().backward()
    out["accumulated_weight_grad"] = arr(lin.weight.grad)
    y = lin(torch.tensor(x)).sum()
    y.backward()
    out["second_backward"] = raises(lambda: y.backward())
    y = lin(torch.tensor(x)).sum()
    y.backward(retain_graph=True)
    out["retained_second"] = raises(lambda: y.backward(retain_graph=False))
    out["retained_third"] = raises(lambda: y.backward())
    out["non_scalar"] = raises(lambda: lin(torch.tensor(x)).backward())
    out["no_grad_fn"] = raises(lambda: (torch.tensor(x) * 2).sum().backward())
    with torch.no_grad():
        yn = lin(torch.tensor(x)).sum()
    out["no_grad_output"] = {"requires_grad": yn.requires_grad, "backward": raises(yn.backward)}
    y = lin(torch.tensor(x))
    d = y.detach()
    out["detach"] = [d.requires_grad, d.is_leaf]
    out["non_leaf"] = [y.requires_grad, y.is_leaf]
    y.sum().backward()
    out["non_leaf_grad_none"] = y.grad is None
    out["non_leaf_requires_grad_false"] = raises(lambda: y.requires_grad_(False))
    out["bad_grad_shape"] = raises(lambda: lin(torch.tensor(x)).backward(torch.ones(3, 2)))
    out["int_requires_grad"] = raises(lambda: torch.tensor([1, 2]).requires_grad_())
    a = torch.tensor(x, requires_grad=True)
    a.grad = torch.ones(4, 3)
    (a * a).sum().backward()
    out["grad_added_to_set_grad"] = arr(a.grad)
    with torch.no_grad():
        with torch.enable_grad():
            ye = lin(torch.tensor(x))
    out["enable_grad_in_no_grad"] = ye.requires_grad
    G["autograd"] = out


# ---- optimizers --------------------------------------------------------------

OPTIMS = [
    ("sgd", dict(lr=0.1)),
    ("sgd", dict(lr=0.1, momentum=0.9)),
    ("sgd", dict(lr=0.1, momentum=0.9, dampening=0.5)),
    ("sgd", dict(lr=0.1, momentum=0.9, nesterov=True)),
    ("sgd", dict(lr=0.1, momentum=0.9, weight_decay=0.1)),
    ("adam", dict(lr=0.01)),
    ("adam", dict(lr=0.01, amsgrad=True)),
    ("adam", dict(lr=0.01, weight_decay=0.1, amsgrad=True, betas=(0.8, 0.9), eps=1e-6)),
    ("adamw", dict(lr=0.01)),
    ("adamw", dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
]


def optimizers():
    cases = []
    kinds = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    for kind, kw in OPTIMS:
        l1, l2 = nn.Linear(3, 2), nn.Linear(2, 2)
        m = nn.Sequential(l1, l2)
        w0 = {k: arr(v) for k, v in m.state_dict().items()}
        opt = kinds[kind](m.parameters(), **kw)
        x = rnd(4, 3)
        # step 1: only the second layer gets a gradient (the first is skipped
        # and gets no state); then both; then the lr changes for the last step
        trace = []
        for s in range(4):
            opt.zero_grad(set_to_none=True)
            if s == 0:
                y = l2(torch.tensor(x[:, :2]))
            else:
                y = m(torch.tensor(x))
            (y * y).sum().backward()
            if s == 3:
                opt.param_groups[0]["lr"] = kw["lr"] / 4
            opt.step()
            trace.append({k: arr(v) for k, v in m.state_dict().items()})
        kwj = {k: list(v) if isinstance(v, tuple) else v for k, v in kw.items()}
        cases.append({"kind": kind, "kwargs": kwj, "weights": w0, "x": arr(x), "trace": trace})
    G["optim"] = cases


# ---- losses ------------------------------------------------------------------

def losses():
    cases = []

    def add(name, mod, nnm_type, cfg, inputs, grad=True):
        ts = [torch.tensor(a, requires_grad=(i == 0 and grad)) for i, a in enumerate(inputs)]
        try:
            y = mod(*ts)
        except Exception as e:  # noqa: BLE001
            cases.append({"name": name, "type": nnm_type, "config": cfg,
                          "inputs": [arr(a) for a in inputs], "exception": type(e).__name__})
            return
        c = {"name": name, "type": nnm_type, "config": cfg, "inputs": [arr(a) for a in inputs],
             "output": arr(y)}
        if grad and y.numel() == 1 and y.requires_grad:
            y.backward()
            c["input_grad"] = arr(ts[0].grad)
        cases.append(c)

    x = rnd(4, 3)
    y = np.array([0, 2, -100, 1])
    ign = np.array([-100] * 4)
    w = [0.2, 1.0, 3.0]
    for red in ["mean", "sum", "none"]:
        add(f"ce ignore {red}", nn.CrossEntropyLoss(reduction=red), "cross_entropy",
            {"reduction": red}, [x, y])
        add(f"ce all ignored {red}", nn.CrossEntropyLoss(reduction=red), "cross_entropy",
            {"reduction": red}, [x, ign])
        add(f"nll all ignored {red}", nn.NLLLoss(reduction=red), "nll_loss", {"reduction": red},
            [x, ign])
        add(f"ce all ignored smoothing {red}", nn.CrossEntropyLoss(reduction=red, label_smoothing=0.1),
            "cross_entropy", {"reduction": red, "label_smoothing": 0.1}, [x, ign])
        add(f"ce weight smoothing ignore {red}",
            nn.CrossEntropyLoss(weight=torch.tensor(w), label_smoothing=0.2, reduction=red),
            "cross_entropy", {"weight": w, "label_smoothing": 0.2, "reduction": red}, [x, y])
        add(f"nll weight ignore {red}", nn.NLLLoss(weight=torch.tensor(w), reduction=red),
            "nll_loss", {"weight": w, "reduction": red}, [x, y])
        add(f"ce empty batch {red}", nn.CrossEntropyLoss(reduction=red), "cross_entropy",
            {"reduction": red}, [np.zeros((0, 3), np.float32), np.zeros(0, np.int64)])
    add("ce ignore_index 0 smoothing", nn.CrossEntropyLoss(ignore_index=0, label_smoothing=0.5),
        "cross_entropy", {"ignore_index": 0, "label_smoothing": 0.5}, [x, np.array([0, 0, 1, 2])])
    add("ce unbatched ignored", nn.CrossEntropyLoss(), "cross_entropy", {},
        [rnd(3), np.array(-100)])
    add("ce K-dim ignore", nn.CrossEntropyLoss(), "cross_entropy", {},
        [rnd(2, 3, 2, 2), np.array([[[0, -100], [2, 1]], [[1, 1], [-100, 0]]])])
    add("ce probabilities smoothing", nn.CrossEntropyLoss(label_smoothing=0.3), "cross_entropy",
        {"label_smoothing": 0.3}, [x, np.abs(rnd(4, 3))])
    p = np.array([[0.0, 1.0, 0.5, 1e-30]], np.float32)
    t = np.array([[1.0, 0.0, 0.5, 1.0]], np.float32)
    add("bce clamps the log at -100", nn.BCELoss(reduction="none"), "bce_loss",
        {"reduction": "none"}, [p, t], grad=False)
    add("bce weight", nn.BCELoss(weight=torch.tensor([1.0, 2.0, 3.0, 4.0])), "bce_loss",
        {"weight": [1.0, 2.0, 3.0, 4.0]}, [np.full((2, 4), 0.3, np.float32), np.ones((2, 4), np.float32)])
    z = rnd(3, 4) * 30
    tt = (rnd(3, 4) > 0).astype(np.float32)
    add("bce_with_logits pos_weight", nn.BCEWithLogitsLoss(pos_weight=torch.tensor([1.0, 2.0, 0.5, 3.0])),
        "bce_with_logits", {"pos_weight": [1.0, 2.0, 0.5, 3.0]}, [z, tt])
    add("bce_with_logits huge logits", nn.BCEWithLogitsLoss(pos_weight=torch.tensor([3.0])),
        "bce_with_logits", {"pos_weight": [3.0]},
        [np.array([[-200.0, 200.0, 0.0]], np.float32), np.array([[1.0, 0.0, 0.5]], np.float32)])
    add("mse empty batch", nn.MSELoss(), "mse_loss", {},
        [np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32)])
    add("kl_div batchmean", nn.KLDivLoss(reduction="batchmean"), "kl_div",
        {"reduction": "batchmean"}, [np.log(np.abs(rnd(2, 3)) + 0.1), np.abs(rnd(2, 3))])
    G["losses"] = cases


# ---- layers at the edges -------------------------------------------------------

def layers():
    cases = []

    def add(name, mod, nnm_type, cfg, x, train=True, grad=True, steps=1):
        sd = {k: arr(v) for k, v in mod.state_dict().items()}
        mod.train(train)
        c = {"name": name, "type": nnm_type, "config": cfg, "state": sd, "train": train,
             "x": arr(x), "steps": steps}
        for _ in range(steps):
            xt = torch.tensor(x, requires_grad=grad)
            try:
                y = mod(xt)
            except Exception as e:  # noqa: BLE001
                c["exception"] = type(e).__name__
                cases.append(c)
                return
        c["output"] = arr(y)
        c["state_after"] = {k: arr(v) for k, v in mod.state_dict().items()}
        if grad and y.numel():
            g = rnd(*y.shape)
            y.backward(torch.tensor(g))
            c["grad_output"] = arr(g)
            c["input_grad"] = arr(xt.grad)
        cases.append(c)

    e = np.zeros
    add("linear batch 0", nn.Linear(3, 2), "linear", {"in_features": 3, "out_features": 2},
        e((0, 3), np.float32))
    add("conv2d batch 0", nn.Conv2d(2, 3, 3), "conv2d",
        {"in_channels": 2, "out_channels": 3, "kernel_size": 3}, e((0, 2, 5, 5), np.float32))
    add("batch_norm1d train batch 0", nn.BatchNorm1d(3), "batch_norm1d", {"num_features": 3},
        e((0, 3), np.float32))
    add("batch_norm2d train batch 0", nn.BatchNorm2d(3), "batch_norm2d", {"num_features": 3},
        e((0, 3, 2, 2), np.float32))
    add("batch_norm1d train batch 1", nn.BatchNorm1d(3), "batch_norm1d", {"num_features": 3},
        rnd(1, 3))
    add("batch_norm2d train 1x1x1", nn.BatchNorm2d(3), "batch_norm2d", {"num_features": 3},
        rnd(1, 3, 1, 1))
    add("batch_norm2d train one sample 2x1", nn.BatchNorm2d(3), "batch_norm2d",
        {"num_features": 3}, rnd(1, 3, 2, 1))
    add("batch_norm1d eval batch 1", nn.BatchNorm1d(3), "batch_norm1d", {"num_features": 3},
        rnd(1, 3), train=False)
    add("batch_norm1d eval without running stats", nn.BatchNorm1d(3, track_running_stats=False),
        "batch_norm1d", {"num_features": 3, "track_running_stats": False}, rnd(5, 3), train=False)
    add("batch_norm1d eval without running stats batch 1",
        nn.BatchNorm1d(3, track_running_stats=False), "batch_norm1d",
        {"num_features": 3, "track_running_stats": False}, rnd(1, 3), train=False)
    add("batch_norm1d momentum None", nn.BatchNorm1d(3, momentum=None), "batch_norm1d",
        {"num_features": 3, "momentum": "none"}, rnd(5, 3), steps=3)
    add("batch_norm2d momentum None", nn.BatchNorm2d(3, momentum=None), "batch_norm2d",
        {"num_features": 3, "momentum": "none"}, rnd(5, 3, 2, 2), steps=3)
    add("batch_norm1d momentum 0", nn.BatchNorm1d(3, momentum=0.0), "batch_norm1d",
        {"num_features": 3, "momentum": 0.0}, rnd(4, 3), steps=2)
    add("dropout p 0", nn.Dropout(0.0), "dropout", {"p": 0.0}, rnd(3, 4))
    add("dropout p 1", nn.Dropout(1.0), "dropout", {"p": 1.0}, rnd(3, 4))
    add("dropout eval", nn.Dropout(0.5), "dropout", {"p": 0.5}, rnd(3, 4), train=False)
    add("dropout2d p 1", nn.Dropout2d(1.0), "dropout2d", {"p": 1.0}, rnd(2, 3, 2, 2))
    add("dropout empty", nn.Dropout(0.5), "dropout", {"p": 0.5}, e((0, 4), np.float32))
    add("layer_norm batch 0", nn.LayerNorm(4), "layer_norm", {"normalized_shape": 4},
        e((0, 4), np.float32))
    add("group_norm batch 0", nn.GroupNorm(2, 4), "group_norm",
        {"num_groups": 2, "num_channels": 4}, e((0, 4, 3), np.float32))
    add("max_pool2d batch 0", nn.MaxPool2d(2), "max_pool2d", {"kernel_size": 2},
        e((0, 2, 4, 4), np.float32))
    add("embedding no indices", nn.Embedding(5, 3), "embedding",
        {"num_embeddings": 5, "embedding_dim": 3}, e((0,), np.int64), grad=False)
    add("embedding batch 0", nn.Embedding(5, 3), "embedding",
        {"num_embeddings": 5, "embedding_dim": 3}, e((0, 4), np.int64), grad=False)
    add("instance_norm1d tracking", nn.InstanceNorm1d(3, track_running_stats=True),
        "instance_norm1d", {"num_features": 3, "track_running_stats": True}, rnd(2, 3, 4), steps=2)
    G["layers"] = cases


if __name__ == "__main__":
    structure()
    state_dicts()
    modes()
    hooks()
    autograd()
    optimizers()
    losses()
    layers()
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(G, f, indent=None, separators=(",", ":"), sort_keys=False)
        f.write("\n")
    print("wrote", OUT, os.path.getsize(OUT), "bytes")
