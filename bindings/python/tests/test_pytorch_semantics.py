"""nnmod against PyTorch 1.13's own semantics, case by case, from the facts
tests/golden/make_semantics_golden.py recorded with torch
(tests/golden/semantics/pytorch_semantics.json): module structure and
names, state dicts, modes and freezing, zero_grad, hooks, autograd errors,
optimizer trajectories with skipped parameters and lr changes, losses and
layers at their edges. Where nnmod differs on purpose the test says so and
checks nnmod's documented behaviour (docs/modules.md, "Differences from
PyTorch")."""
import json
import math
import os

import numpy as np
import pytest

import nnmod

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.path.normpath(os.path.join(HERE, "..", "..", "..", "tests", "golden", "semantics",
                                       "pytorch_semantics.json"))

with open(GOLDEN) as _f:
    G = json.load(_f)


def A(d):
    """A fixture array as NumPy."""
    dt = np.dtype(d["dtype"])
    return np.array(d["data"], dtype=dt).reshape(d["shape"])


def SD(d):
    return {k: A(v) for k, v in d.items()}


def close(got, want, tol=1e-5):
    got = got.numpy() if isinstance(got, nnmod.Tensor) else np.asarray(got)
    want = A(want) if isinstance(want, dict) else np.asarray(want)
    assert got.shape == want.shape, (got.shape, want.shape)
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol, equal_nan=True)


def lin(ctx, i, o, weights=None):
    m = nnmod.create("linear", ctx=ctx, in_features=i, out_features=o)
    if weights is not None:
        m.load_state_dict(SD(weights))
    return m


def seq(ctx, *mods):
    return nnmod.create("sequential", ctx=ctx, children=list(mods))


# ---- module structure --------------------------------------------------------

def test_shared_module_seen_once_gradients_add_up(ctx):
    g = G["shared"]
    l = lin(ctx, 3, 3, g["weights"])
    m = seq(ctx, l, nnmod.create("relu", ctx=ctx))
    m.add_module("2", l)       # Sequential(lin, ReLU(), lin): one Linear in two slots
    m.finalize()
    assert [n for n, _ in m.named_parameters()] == g["named_parameters"]
    assert [n for n, _ in m.named_modules()] == g["named_modules"]
    assert [n for n, _ in m.named_children()] == g["named_children"]
    assert list(m.state_dict()) == g["state_dict"]
    assert len(m) == g["len"] and len(list(iter(m))) == g["iter"]
    assert m.num_parameters() == g["num_params"]
    x = nnmod.tensor(A(g["x"]), requires_grad=True, ctx=ctx)
    y = m(x)
    close(y, g["y"])
    y.sum().backward()
    close(x.grad, g["x_grad"])
    close(l.weight.grad, g["weight_grad"])


def test_nested_names_prefixes_and_apply(ctx):
    g = G["nested"]
    m = seq(ctx, seq(ctx, lin(ctx, 2, 2), lin(ctx, 2, 2)), lin(ctx, 2, 1))
    assert [n for n, _ in m.named_parameters()] == g["named_parameters"]
    assert [n for n, _ in m.named_modules()] == g["named_modules"]
    assert [n for n, _ in m.named_modules(prefix="p")] == g["named_modules_prefix"]
    assert list(m.state_dict(prefix="p.")) == g["state_dict_prefix"]
    order = []
    assert m.apply(lambda mod: order.append(mod.path)) is m
    assert order == g["apply_order"]


@pytest.mark.parametrize("layer,cfg,key", [
    ("batch_norm1d", {"num_features": 3}, "batch_norm1d"),
    ("transformer_encoder_layer", {"d_model": 4, "nhead": 2, "dim_feedforward": 8},
     "transformer_encoder_layer"),
    ("lstm", {"input_size": 3, "hidden_size": 4, "num_layers": 2, "bidirectional": True,
              "proj_size": 2}, "lstm"),
])
def test_state_dict_key_order(ctx, layer, cfg, key):
    m = nnmod.create(layer, ctx=ctx, **cfg)
    assert list(m.state_dict()) == G["key_orders"][key]
    if layer == "transformer_encoder_layer":
        assert [n for n, _ in m.named_modules()] == G["key_orders"][key + "_modules"]


def test_replace_delete_add_children(ctx):
    g = G["children_edits"]
    a, b, c = lin(ctx, 2, 2), lin(ctx, 2, 2), lin(ctx, 2, 2)
    m = nnmod.create("sequential", ctx=ctx)
    m.add_module("a", a)
    m.add_module("b", b)
    steps = []
    m.a = c
    steps.append([n for n, _ in m.named_children()])
    del m.a
    steps.append([n for n, _ in m.named_children()])
    m.add_module("z", a)
    steps.append([n for n, _ in m.named_children()])
    m.add_module("b", c)       # an existing name: replaced in its place, as PyTorch
    steps.append([n for n, _ in m.named_children()])
    assert steps == g["steps"]
    assert (m.b == c) == g["b_is_c"]


def test_named_children_of_a_module_in_two_trees(ctx):
    shared = lin(ctx, 2, 2)
    t1 = nnmod.create("sequential", ctx=ctx)
    t1.add_module("first", shared)
    t2 = nnmod.create("sequential", ctx=ctx)
    t2.add_module("other", lin(ctx, 2, 2))
    t2.add_module("second", shared)          # PyTorch: t2.second = t1.first
    assert [n for n, _ in t2.named_children()] == ["other", "second"]
    assert t2.second == shared and shared.name == "first"


# ---- state dicts ---------------------------------------------------------------

def test_load_state_dict_reports_and_refusals(ctx):
    g = G["load"]
    m = seq(ctx, lin(ctx, 3, 2))
    partial = {"0.weight": np.ones((2, 3), np.float32), "extra": np.zeros(1, np.float32),
               "0.zzz": np.zeros(1, np.float32)}
    assert g["partial_strict_exception"] == "RuntimeError"
    with pytest.raises(nnmod.NotFoundError) as e:
        m.load_state_dict(partial)
    assert isinstance(e.value, RuntimeError)      # what a PyTorch `except` catches
    assert e.value.missing_keys == g["partial_missing"]
    assert e.value.unexpected_keys == g["partial_unexpected"]
    r = m.load_state_dict(partial, strict=False)
    assert (r.missing_keys, r.unexpected_keys) == (g["partial_missing"], g["partial_unexpected"])
    close(m[0].weight, g["partial_weight_after"])
    # a size mismatch is refused strict or not (PyTorch raises too); PyTorch has
    # copied the keys that fit by then, nnmod copies none (documented)
    m2 = seq(ctx, lin(ctx, 3, 2))
    before = m2[0].weight.numpy().copy()
    assert g["mismatch_exception"] == "RuntimeError" and g["mismatch_torch_loaded_weight"]
    with pytest.raises(nnmod.ShapeError) as e:
        m2.load_state_dict({"0.weight": np.full((2, 3), 7, np.float32),
                            "0.bias": np.zeros(5, np.float32)}, strict=False)
    assert isinstance(e.value, RuntimeError)
    np.testing.assert_array_equal(m2[0].weight.numpy(), before)
    # float64 values load into float32 parameters, as PyTorch's copy_
    m3 = seq(ctx, lin(ctx, 3, 2))
    m3.load_state_dict({k: v.astype(np.float64) for k, v in SD(g["weights"]).items()})
    close(m3[0].weight, g["f64_loads"])
    assert m3.state_dict()["0.weight"].requires_grad == g["state_dict_requires_grad"]


def test_batch_norm_state_dict_without_num_batches_tracked(ctx):
    # PyTorch (a plain dict has no version metadata) fills num_batches_tracked
    # with 0; so does nnmod
    assert G["load"]["bn_without_num_batches_tracked"] is None
    bn = nnmod.create("batch_norm1d", ctx=ctx, num_features=2)
    sd = {k: v.numpy().copy() for k, v in bn.state_dict().items() if k != "num_batches_tracked"}
    bn.num_batches_tracked.numpy()[...] = 5
    r = bn.load_state_dict(sd)
    assert r.missing_keys == [] and int(bn.num_batches_tracked.numpy()) == 0


# ---- modes, freezing, zero_grad --------------------------------------------------

def test_modes_freezing_and_zero_filled_grads(ctx):
    g = G["modes"]
    l1, l2 = lin(ctx, 3, 2, g["weights"]["l1"]), lin(ctx, 2, 2, g["weights"]["l2"])
    m = seq(ctx, l1, nnmod.create("dropout", ctx=ctx), l2)
    m.eval()
    assert [x.training for x in m.modules()] == g["eval"]
    m[0].train()
    assert [x.training for x in m.modules()] == g["train_child"]
    m.train()
    m[0].requires_grad_(False)
    x = nnmod.tensor(A(g["x"]), requires_grad=True, ctx=ctx)
    m.eval()
    m(x).sum().backward()
    f = g["frozen"]
    assert (l1.weight.grad is None) == f["l1_grad_none"]
    assert l1.weight.requires_grad == f["l1_requires_grad"]
    close(x.grad, f["x_grad"])
    close(l2.weight.grad, f["l2_weight_grad"])
    grad_before = l2.weight.grad
    m.zero_grad(set_to_none=False)            # PyTorch 1.13's default
    close(l2.weight.grad, g["zero_filled"])
    assert np.shares_memory(grad_before.numpy(), l2.weight.grad.numpy())   # in place
    assert l1.weight.grad is None
    opt = nnmod.optim.SGD(l2.parameters(), lr=0.1, momentum=0.9, weight_decay=0.5)
    opt.step()
    opt.zero_grad(set_to_none=False)
    opt.step()
    for k, v in g["after_two_zero_grad_steps"].items():
        close(l2.state_dict()[k], v)
    m.zero_grad()                             # nnmod's default: set_to_none=True (PyTorch 2.x)
    assert l2.weight.grad is None


# ---- hooks ------------------------------------------------------------------------

def test_forward_hooks(ctx):
    g = G["hooks"]
    x = A(g["x"])

    def fresh():
        return lin(ctx, 3, 3, g["weights"])

    m = fresh()
    m.register_forward_pre_hook(lambda mod, a: (a[0] * 2,))
    close(m(x), g["pre_tuple"])
    m = fresh()
    m.register_forward_pre_hook(lambda mod, a: a[0] * 2)
    close(m(x), g["pre_single"])
    m = fresh()
    m.register_forward_hook(lambda mod, a, o: o + 1)
    close(m(x), g["forward_replace"])
    log = []
    m = fresh()
    h1 = m.register_forward_hook(lambda mod, a, o: log.append("h1"))
    m.register_forward_hook(lambda mod, a, o: log.append("h2"))
    m.register_forward_pre_hook(lambda mod, a: log.append("p1"))
    gh = nnmod.register_module_forward_hook(lambda mod, a, o: log.append("g"), ctx=ctx)
    gp = nnmod.register_module_forward_pre_hook(lambda mod, a: log.append("gp"), ctx=ctx)
    m(x)
    h1.remove()
    m(x)
    gh.remove()
    gp.remove()
    assert log == g["order"]
    cnt = [0]
    m = fresh()
    m.register_forward_hook(lambda *a: cnt.__setitem__(0, cnt[0] + 1))
    with nnmod.no_grad():
        y = m(x)
    assert cnt[0] == g["no_grad"]["forward_hook_calls"]
    assert y.requires_grad == g["no_grad"]["requires_grad"]


def test_full_backward_hooks(ctx):
    g = G["hooks"]
    x = A(g["x"])

    def fresh():
        return lin(ctx, 3, 3, g["weights"])

    calls = []
    m = fresh()
    m.register_full_backward_hook(lambda mod, gi, go: calls.append(
        [gi[0].numpy().copy() if gi[0] is not None else None, go[0].numpy().copy()]))
    xt = nnmod.tensor(x, requires_grad=True, ctx=ctx)
    (m(m(xt)) * 2).sum().backward()
    want = g["twice"]
    assert len(calls) == len(want["calls"])
    for (gi, go), (wi, wo) in zip(calls, want["calls"]):
        close(gi, wi)
        close(go, wo)
    close(xt.grad, want["x_grad"])
    close(m.weight.grad, want["weight_grad"])

    seen = []
    m = fresh()
    m.register_full_backward_hook(lambda mod, gi, go: seen.append(gi[0] is None))
    m(x).sum().backward()
    assert seen == g["no_input_grad"]

    m = fresh()
    m.register_full_backward_hook(lambda mod, gi, go: (gi[0] * 3,))
    xt = nnmod.tensor(x, requires_grad=True, ctx=ctx)
    m(xt).sum().backward()
    close(xt.grad, g["replace_grad_input"]["x_grad"])
    close(m.weight.grad, g["replace_grad_input"]["weight_grad"])

    seen = []
    m = fresh()
    m.register_full_backward_hook(lambda mod, gi, go: seen.append(go[0].numpy().copy()))
    m.register_forward_hook(lambda mod, a, o: o * 2)
    xt = nnmod.tensor(x, requires_grad=True, ctx=ctx)
    (m(xt) * m(xt)).sum().backward()
    want = g["forward_replaced_backward"]
    assert len(seen) == len(want["grad_outputs"])
    for s, w in zip(seen, want["grad_outputs"]):
        close(s, w)
    close(xt.grad, want["x_grad"])

    ident = []
    idm = nnmod.create("identity", ctx=ctx)
    idm.register_full_backward_hook(lambda mod, gi, go: ident.append(
        [gi[0].numpy().copy(), go[0].numpy().copy()]))
    xt = nnmod.tensor(x, requires_grad=True, ctx=ctx)
    (idm(xt) * 3).sum().backward()
    assert len(ident) == len(g["identity"])
    close(ident[0][0], g["identity"][0][0])
    close(ident[0][1], g["identity"][0][1])

    # an input that needs no gradient beside one that does: zeros, as PyTorch
    # (nnmod's are f32 where PyTorch keeps an integer input's dtype)
    mixed = []
    ce = nnmod.create("cross_entropy", ctx=ctx)
    ce.register_full_backward_hook(lambda mod, gi, go: mixed.append(
        [None if t is None else t.numpy().copy() for t in gi]))
    xt = nnmod.tensor(x, requires_grad=True, ctx=ctx)
    ce(xt, A(g["mixed_inputs"]["target"])).backward()
    want = g["mixed_inputs"]["grad_input"]
    assert len(mixed) == 1 and len(mixed[0]) == len(want)
    for got, w in zip(mixed[0], want):
        assert (got is None) == (w is None)
        close(got, w)
    close(xt.grad, g["mixed_inputs"]["x_grad"])

    order = []
    m = fresh()
    m.register_full_backward_hook(lambda *a: order.append("m"))
    gb = nnmod.register_module_full_backward_hook(lambda *a: order.append("g"), ctx=ctx)
    m(nnmod.tensor(x, requires_grad=True, ctx=ctx)).sum().backward()
    gb.remove()
    assert order == g["backward_order"]


# ---- autograd ----------------------------------------------------------------------

def _raises(fn):
    try:
        fn()
        return None
    except Exception as e:  # noqa: BLE001
        return e


def test_autograd_errors_and_accumulation(ctx):
    g = G["autograd"]
    m = lin(ctx, 3, 2, g["weights"])
    x = A(g["x"])
    for _ in range(2):
        m(x).sum().backward()
    close(m.weight.grad, g["accumulated_weight_grad"])

    def runtime_error(e, want):
        # PyTorch raises RuntimeError; nnmod's errors are RuntimeErrors there too
        assert want == "RuntimeError"
        assert isinstance(e, nnmod.Error) and isinstance(e, RuntimeError), repr(e)

    y = m(x).sum()
    y.backward()
    e = _raises(y.backward)
    runtime_error(e, g["second_backward"])
    assert "backward through the graph a second time" in str(e)
    y = m(x).sum()
    y.backward(retain_graph=True)
    assert _raises(lambda: y.backward(retain_graph=False)) is None and g["retained_second"] is None
    runtime_error(_raises(y.backward), g["retained_third"])
    e = _raises(lambda: m(x).backward())
    runtime_error(e, g["non_scalar"])
    assert "grad can be implicitly created only for scalar outputs" in str(e)
    e = _raises(lambda: (nnmod.tensor(x, ctx=ctx) * 2).sum().backward())
    runtime_error(e, g["no_grad_fn"])
    with nnmod.no_grad():
        yn = m(x).sum()
    assert yn.requires_grad == g["no_grad_output"]["requires_grad"]
    runtime_error(_raises(yn.backward), g["no_grad_output"]["backward"])
    y = m(x)
    d = y.detach()
    assert [d.requires_grad, d.is_leaf] == g["detach"]
    assert [y.requires_grad, y.is_leaf] == g["non_leaf"]
    y.sum().backward()
    assert (y.grad is None) == g["non_leaf_grad_none"]
    runtime_error(_raises(lambda: y.requires_grad_(False)), g["non_leaf_requires_grad_false"])
    runtime_error(_raises(lambda: m(x).backward(np.ones((3, 2), np.float32))), g["bad_grad_shape"])
    assert g["int_requires_grad"] == "RuntimeError"
    assert _raises(lambda: nnmod.tensor(np.array([1, 2]), ctx=ctx).requires_grad_()) is not None
    a = nnmod.tensor(x.copy(), requires_grad=True, ctx=ctx)
    a.grad = np.ones((4, 3), np.float32)
    (a * a).sum().backward()
    close(a.grad, g["grad_added_to_set_grad"])
    with nnmod.no_grad():
        with nnmod.enable_grad():
            ye = m(x)
    assert ye.requires_grad == g["enable_grad_in_no_grad"]


# ---- optimizers ------------------------------------------------------------------------

@pytest.mark.parametrize("case", G["optim"], ids=lambda c: c["kind"] + " " + json.dumps(c["kwargs"]))
def test_optimizer_skips_parameters_without_grad_and_takes_lr_changes(ctx, case):
    l1, l2 = lin(ctx, 3, 2), lin(ctx, 2, 2)
    m = seq(ctx, l1, l2)
    m.load_state_dict(SD(case["weights"]))
    kw = dict(case["kwargs"])
    if "betas" in kw:
        kw["betas"] = tuple(kw["betas"])
    cls = {"sgd": nnmod.optim.SGD, "adam": nnmod.optim.Adam, "adamw": nnmod.optim.AdamW}
    opt = cls[case["kind"]](m.parameters(), **kw)
    x = A(case["x"])
    for s, want in enumerate(case["trace"]):
        opt.zero_grad(set_to_none=True)
        y = l2(x[:, :2].copy()) if s == 0 else m(x)
        (y * y).sum().backward()
        if s == 3:
            opt.param_groups[0]["lr"] = kw["lr"] / 4
        opt.step()
        for k, v in want.items():
            close(m.state_dict()[k], v, 2e-5)


# ---- losses ----------------------------------------------------------------------------

@pytest.mark.parametrize("case", G["losses"], ids=lambda c: c["name"])
def test_loss_edges(ctx, case):
    mod = nnmod.create(case["type"], ctx=ctx, **case["config"])
    ins = [A(a) for a in case["inputs"]]
    want_grad = "input_grad" in case
    ts = [nnmod.tensor(a, requires_grad=(i == 0 and want_grad), ctx=ctx) for i, a in enumerate(ins)]
    if "exception" in case:
        with pytest.raises(nnmod.Error):
            mod(*ts)
        return
    y = mod(*ts)
    close(y, case["output"], 1e-5)
    if want_grad:
        y.backward()
        close(ts[0].grad, case["input_grad"], 1e-5)


# ---- layers at their edges ---------------------------------------------------------------

@pytest.mark.parametrize("case", G["layers"], ids=lambda c: c["name"])
def test_layer_edges(ctx, case):
    mod = nnmod.create(case["type"], ctx=ctx, **case["config"])
    if case["state"]:
        mod.load_state_dict(SD(case["state"]))
    mod.train(case["train"])
    x = A(case["x"])
    grad = "input_grad" in case
    for _ in range(case["steps"]):
        xt = nnmod.tensor(x, requires_grad=grad, ctx=ctx)
        if "exception" in case:
            assert case["exception"] == "ValueError"
            with pytest.raises(ValueError) as e:
                mod(xt)
            assert "expected more than 1 value per channel when training" in str(e.value)
            assert "got input size [" in str(e.value)
            return
        y = mod(xt)
    close(y, case["output"], 1e-5)
    for k, v in case["state_after"].items():
        close(mod.state_dict()[k].numpy().astype(v["dtype"]), v, 1e-5)
    if grad:
        y.backward(A(case["grad_output"]))
        close(xt.grad, case["input_grad"], 1e-5)
