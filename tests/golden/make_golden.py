#!/usr/bin/env python3
"""PyTorch golden vectors for nnmod's autograd, losses and optimizers
(tests/autograd/test_autograd_parity.c).

Writes, under tests/golden/autograd/ (small, deterministic, committed):

  mlp_ce.safetensors      Sequential(Linear(4,8), ReLU, Linear(8,3)) with fixed
                          weights and cross-entropy on a fixed batch of 6, one
                          sample of which has target -100 (ignored). Variants
                          "plain" (label_smoothing 0) and "smooth" (0.1).
  linreg_mse.safetensors  Linear(3,1) + MSE on 8 samples. Variant "mse".
  unused.safetensors      Net(used=Linear(3,2), unused=Linear(3,2)) whose forward
                          calls only `used`; cross-entropy with reduction "sum".
                          Variant "ce_sum". unused.* never gets a .grad.
  losses.safetensors      small cases of each loss layer (every reduction,
                          ignore_index, label smoothing, the unbatched form):
                          loss and the gradients of input (and target where
                          PyTorch has one).

Names in the model files:
  input, target                 the batch (target i64 for cross-entropy)
  init.<param>                  the weights, under state_dict names ("0.weight")
  output                        model(input) with the initial weights
  <v>.loss                      the loss, [] (scalar)
  <v>.grad.<param>              every gradient after loss.backward() (absent for a
                                parameter whose .grad stays None)
  <v>.sgd.<param>, <v>.sgd_losses [3]       params after 3 SGD steps and the loss
  <v>.adamw.<param>, <v>.adamw_losses [3]   seen at each step; the same for AdamW
Each step is zero_grad, forward, loss, backward, step, from the initial
weights. The hyper-parameters are in __metadata__ (sgd.lr, sgd.momentum,
sgd.weight_decay, adamw.lr, adamw.beta1, adamw.beta2, adamw.eps,
adamw.weight_decay), with <v>.reduction, <v>.ignore_index, <v>.label_smoothing,
the loss layer's name (<v>.loss_layer) and state_dict_keys (comma-separated).

Names in losses.safetensors: <case>.input, <case>.target, <case>.gout (the
gradient fed to backward for reduction "none"), and per variant
<case>.<variant>.loss, .grad_input, .grad_target; the variant's layer config is
in __metadata__["<case>.<variant>"] as "layer;key=value;..." so the C suite is
driven by the file alone.

The fixtures are made so that float32 rounding cannot flip a branch: every
hidden pre-activation stays at least 1e-3 from the ReLU kink during all
training steps, and no nonzero gradient element is below 1e-6 (AdamW's first
step divides a gradient by its own magnitude, so a tiny gradient of another
sign would move a parameter by a whole lr).

No safetensors package is needed: the format is written by hand.

Usage:
    /usr/bin/python3 tests/golden/make_golden.py
"""
import json
import os
import struct

import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "autograd")
SEED = 20240612

SGD = dict(lr=0.1, momentum=0.9, weight_decay=0.01)
ADAMW = dict(lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
STEPS = 3

DTYPES = {torch.float32: "F32", torch.int64: "I64"}


def write_safetensors(path, tensors, metadata=None):
    """tensors: dict name -> tensor. Laid out like the reference writer:
    largest element size first, then by name; header padded with spaces."""
    items = sorted(tensors.items(), key=lambda kv: (-kv[1].element_size(), kv[0]))
    header = {}
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    blobs, at = [], 0
    for name, t in items:
        t = t.detach().contiguous().cpu()
        raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [at, at + len(raw)]}
        blobs.append(raw)
        at += len(raw)
    h = json.dumps(header, separators=(",", ":"), sort_keys=False).encode("utf-8")
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def hyper_meta():
    return {"sgd.lr": SGD["lr"], "sgd.momentum": SGD["momentum"],
            "sgd.weight_decay": SGD["weight_decay"],
            "adamw.lr": ADAMW["lr"], "adamw.beta1": ADAMW["betas"][0],
            "adamw.beta2": ADAMW["betas"][1], "adamw.eps": ADAMW["eps"],
            "adamw.weight_decay": ADAMW["weight_decay"], "steps": STEPS,
            "torch_version": torch.__version__}


# --------------------------------------------------------------------------
# Guards against fixtures that float32 rounding could flip
# --------------------------------------------------------------------------

class KinkWatch:
    """Records the smallest |pre-activation| seen by every ReLU of a model."""

    def __init__(self, model):
        self.min_abs = float("inf")
        for m in model.modules():
            if isinstance(m, nn.ReLU):
                m.register_forward_pre_hook(self.hook)

    def hook(self, _m, inp):
        self.min_abs = min(self.min_abs, inp[0].detach().abs().min().item())


def check_grads(model, what):
    for name, p in model.named_parameters():
        if p.grad is None:
            continue
        g = p.grad.abs()
        tiny = g[(g > 0) & (g < 1e-6)]
        assert tiny.numel() == 0, "%s: %s has gradient elements below 1e-6: %s" % (
            what, name, tiny)


# --------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------

class UnusedNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.used = nn.Linear(3, 2)
        self.unused = nn.Linear(3, 2)

    def forward(self, x):
        return self.used(x)


def run_variant(make, init, x, y, loss_fn, v, out, kink_min=1e-3):
    """Forward/backward once, then 3 SGD and 3 AdamW steps, each from init."""
    model = make()
    model.load_state_dict(init)
    watch = KinkWatch(model)
    loss = loss_fn(model(x), y)
    loss.backward()
    check_grads(model, v)
    out[v + ".loss"] = loss.detach().clone()
    for name, p in model.named_parameters():
        if p.grad is not None:
            out["%s.grad.%s" % (v, name)] = p.grad.detach().clone()
    for opt_name in ("sgd", "adamw"):
        model = make()
        model.load_state_dict(init)
        watch = KinkWatch(model)
        if opt_name == "sgd":
            opt = torch.optim.SGD(model.parameters(), **SGD)
        else:
            opt = torch.optim.AdamW(model.parameters(), **ADAMW)
        losses = []
        for _ in range(STEPS):
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            check_grads(model, "%s.%s" % (v, opt_name))
            opt.step()
            losses.append(loss.item())
        assert watch.min_abs >= kink_min, "%s.%s: a ReLU input came within %g of 0" % (
            v, opt_name, watch.min_abs)
        for name, p in model.named_parameters():
            out["%s.%s.%s" % (v, opt_name, name)] = p.detach().clone()
        out["%s.%s_losses" % (v, opt_name)] = torch.tensor(losses, dtype=torch.float32)


def model_file(path, make, x, y, variants, extra_meta=None):
    """variants: list of (name, loss_fn, meta dict)."""
    model = make()
    init = {k: v.detach().clone() for k, v in model.state_dict().items()}
    out = {"input": x, "target": y}
    for k, v in init.items():
        out["init." + k] = v
    with torch.no_grad():
        out["output"] = model(x)
    meta = hyper_meta()
    meta["state_dict_keys"] = ",".join(init.keys())
    for name, loss_fn, vmeta in variants:
        run_variant(make, init, x, y, loss_fn, name, out)
        for k, val in vmeta.items():
            meta["%s.%s" % (name, k)] = val
    if extra_meta:
        meta.update(extra_meta)
    write_safetensors(path, out, meta)


def make_mlp():
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def gen_mlp():
    x = torch.randn(6, 4)
    y = torch.tensor([0, 2, 1, -100, 2, 0], dtype=torch.int64)
    ce = dict(loss_layer="cross_entropy", reduction="mean", ignore_index=-100)
    model_file(os.path.join(OUT, "mlp_ce.safetensors"), make_mlp, x, y, [
        ("plain", lambda o, t: F.cross_entropy(o, t), dict(ce, label_smoothing=0.0)),
        ("smooth", lambda o, t: F.cross_entropy(o, t, label_smoothing=0.1),
         dict(ce, label_smoothing=0.1)),
    ])


def gen_linreg():
    x = torch.randn(8, 3)
    w_true = torch.tensor([[1.5, -2.0, 0.5]])
    y = x @ w_true.t() + 0.3 + 0.05 * torch.randn(8, 1)
    model_file(os.path.join(OUT, "linreg_mse.safetensors"), lambda: nn.Linear(3, 1), x, y, [
        ("mse", lambda o, t: F.mse_loss(o, t), dict(loss_layer="mse_loss", reduction="mean")),
    ])


def gen_unused():
    x = torch.randn(5, 3)
    y = torch.tensor([1, 0, 1, 1, 0], dtype=torch.int64)
    model_file(os.path.join(OUT, "unused.safetensors"), UnusedNet, x, y, [
        ("ce_sum", lambda o, t: F.cross_entropy(o, t, reduction="sum"),
         dict(loss_layer="cross_entropy", reduction="sum", ignore_index=-100,
              label_smoothing=0.0)),
    ])


# --------------------------------------------------------------------------
# Loss layers on their own
# --------------------------------------------------------------------------

def loss_case(out, meta, case, x, t, gout, variants, target_grad):
    """variants: list of (variant, fn(x, t, reduction), layer config string)."""
    out[case + ".input"] = x
    out[case + ".target"] = t
    out[case + ".gout"] = gout
    for v, fn, reduction, cfg in variants:
        xi = x.clone().requires_grad_(True)
        ti = t.clone().requires_grad_(True) if target_grad else t
        loss = fn(xi, ti, reduction)
        if reduction == "none":
            loss.backward(gout)
        else:
            loss.backward()
        key = "%s.%s" % (case, v)
        out[key + ".loss"] = loss.detach().clone()
        out[key + ".grad_input"] = xi.grad.clone()
        if target_grad:
            out[key + ".grad_target"] = ti.grad.clone()
        meta[key] = cfg


def gen_losses():
    out, meta = {}, {"torch_version": torch.__version__}
    reds = ("mean", "sum", "none")

    # mse_loss: x, y [3, 4]; the target gets a gradient too.
    x = torch.randn(3, 4)
    y = torch.randn(3, 4)
    loss_case(out, meta, "mse", x, y, torch.randn(3, 4), [
        (r, lambda a, b, r: F.mse_loss(a, b, reduction=r), r,
         "mse_loss;reduction=%s" % r) for r in reds], True)

    # bce_with_logits: x [4, 3] with 0 (the kink of |x|), large and moderate
    # values; y in [0, 1] with soft labels.
    x = torch.tensor([[0.0, 1.5, -2.0], [30.0, -30.0, 0.25],
                      [-0.75, 3.0, 8.0], [-9.0, 0.5, -1.25]])
    y = torch.tensor([[1.0, 0.0, 1.0], [1.0, 0.0, 0.3],
                      [0.0, 0.7, 1.0], [0.0, 1.0, 0.5]])
    loss_case(out, meta, "bce", x, y, torch.randn(4, 3), [
        (r, lambda a, b, r: F.binary_cross_entropy_with_logits(a, b, reduction=r), r,
         "bce_with_logits;reduction=%s" % r) for r in reds], True)

    # nll_loss: log-probabilities [5, 4], one ignored sample; ignore_index 1 too.
    logp = F.log_softmax(torch.randn(5, 4), dim=1)
    t = torch.tensor([3, -100, 0, 1, 1], dtype=torch.int64)
    loss_case(out, meta, "nll", logp, t.clamp(min=0), torch.randn(5), [
        (r, lambda a, b, r: F.nll_loss(a, b, reduction=r), r, "nll_loss;reduction=%s" % r)
        for r in reds], False)
    # the ignored sample (-100), and ignore_index 1
    loss_case(out, meta, "nlli", logp, t, torch.randn(5), [
        (r, lambda a, b, r: F.nll_loss(a, b, reduction=r), r, "nll_loss;reduction=%s" % r)
        for r in reds], False)
    loss_case(out, meta, "nll1", logp, t.clamp(min=0), torch.randn(5), [
        (r, lambda a, b, r: F.nll_loss(a, b, ignore_index=1, reduction=r), r,
         "nll_loss;reduction=%s;ignore_index=1" % r) for r in reds], False)

    # cross_entropy: logits [5, 4], one ignored sample; smoothing 0 and 0.2.
    logits = torch.randn(5, 4) * 2.0
    t = torch.tensor([2, 0, -100, 3, 0], dtype=torch.int64)
    variants = []
    for ls in (0.0, 0.2):
        for r in reds:
            variants.append(("ls%g_%s" % (ls * 10, r),
                             (lambda ls: lambda a, b, r: F.cross_entropy(
                                 a, b, reduction=r, label_smoothing=ls))(ls),
                             r, "cross_entropy;reduction=%s;label_smoothing=%r" % (r, ls)))
    # ignore_index 3 (and the -100 sample a valid class 1 instead)
    variants_i3 = [("i3_" + r, lambda a, b, r: F.cross_entropy(
        a, b, ignore_index=3, reduction=r, label_smoothing=0.2), r,
        "cross_entropy;reduction=%s;ignore_index=3;label_smoothing=0.2" % r) for r in reds]
    loss_case(out, meta, "ce", logits, t, torch.randn(5), variants, False)
    loss_case(out, meta, "cei3", logits, torch.where(t < 0, torch.ones_like(t), t),
              torch.randn(5), variants_i3, False)

    # cross_entropy unbatched: [C] logits, [] target.
    loss_case(out, meta, "ce1", torch.randn(4), torch.tensor(2, dtype=torch.int64),
              torch.randn(()), [
                  (r, lambda a, b, r: F.cross_entropy(a, b, reduction=r, label_smoothing=0.1),
                   r, "cross_entropy;reduction=%s;label_smoothing=0.1" % r) for r in reds],
              False)

    write_safetensors(os.path.join(OUT, "losses.safetensors"), out, meta)


def seeded(gen, name):
    """Runs gen from SEED, SEED+1, ... until its fixture passes the guards."""
    for k in range(100):
        torch.manual_seed(SEED + k)
        try:
            gen()
            print("%-12s seed %d" % (name, SEED + k))
            return
        except AssertionError as e:
            print("%-12s seed %d refused: %s" % (name, SEED + k, e))
    raise SystemExit("no seed gave a robust fixture for " + name)


def generate():
    os.makedirs(OUT, exist_ok=True)
    seeded(gen_mlp, "mlp_ce")
    seeded(gen_linreg, "linreg_mse")
    seeded(gen_unused, "unused")
    seeded(gen_losses, "losses")
    for f in sorted(os.listdir(OUT)):
        print("%-24s %6d bytes" % (f, os.path.getsize(os.path.join(OUT, f))))


if __name__ == "__main__":
    generate()
