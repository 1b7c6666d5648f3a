"""Backward and optimizers against PyTorch's numbers
(tests/golden/make_golden.py wrote tests/golden/autograd/mlp_ce.safetensors)."""
import os

import numpy as np
import pytest

import nnmod


@pytest.fixture
def case(golden):
    return nnmod.load_safetensors(os.path.join(golden, "autograd", "mlp_ce.safetensors"),
                                  with_metadata=True)


def mlp(ctx, data):
    m = nnmod.create("sequential", ctx=ctx, children=[
        nnmod.create("linear", in_features=4, out_features=8, ctx=ctx),
        nnmod.create("relu", ctx=ctx),
        nnmod.create("linear", in_features=8, out_features=3, ctx=ctx)])
    m.load_state_dict({k[len("init."):]: v for k, v in data.items() if k.startswith("init.")})
    return m


@pytest.mark.parametrize("variant", ["plain", "smooth"])
def test_backward_matches_pytorch(ctx, case, variant):
    data, meta = case
    m = mlp(ctx, data)
    loss_fn = nnmod.create("cross_entropy", ctx=ctx,
                           label_smoothing=float(meta[f"{variant}.label_smoothing"]),
                           ignore_index=int(meta[f"{variant}.ignore_index"]))
    out = m(data["input"])
    np.testing.assert_allclose(out.numpy(), data["output"].numpy(), rtol=1e-5, atol=1e-6)
    loss = loss_fn(out, data["target"])
    np.testing.assert_allclose(loss.item(), data[f"{variant}.loss"].item(), rtol=1e-5)
    loss.backward()
    for name, p in m.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), data[f"{variant}.grad.{name}"].numpy(),
                                   rtol=1e-4, atol=1e-6, err_msg=name)
    del m, loss_fn, out, loss, data


@pytest.mark.parametrize("variant", ["plain", "smooth"])
@pytest.mark.parametrize("kind", ["sgd", "adamw"])
def test_optimizer_steps_match_pytorch(ctx, case, variant, kind):
    data, meta = case
    m = mlp(ctx, data)
    loss_fn = nnmod.create("cross_entropy", ctx=ctx,
                           label_smoothing=float(meta[f"{variant}.label_smoothing"]))
    if kind == "sgd":
        opt = nnmod.optim.SGD(m.parameters(), lr=float(meta["sgd.lr"]),
                              momentum=float(meta["sgd.momentum"]),
                              weight_decay=float(meta["sgd.weight_decay"]))
    else:
        opt = nnmod.optim.AdamW(m.parameters(), lr=float(meta["adamw.lr"]),
                                betas=(float(meta["adamw.beta1"]), float(meta["adamw.beta2"])),
                                eps=float(meta["adamw.eps"]),
                                weight_decay=float(meta["adamw.weight_decay"]))
    losses = []
    for _ in range(int(meta["steps"])):
        opt.zero_grad()
        loss = loss_fn(m(data["input"]), data["target"])
        losses.append(loss.item())
        loss.backward()
        opt.step()
    np.testing.assert_allclose(losses, data[f"{variant}.{kind}_losses"].numpy(), rtol=1e-5)
    for name, p in m.named_parameters():
        np.testing.assert_allclose(p.numpy(), data[f"{variant}.{kind}.{name}"].numpy(),
                                   rtol=1e-4, atol=1e-6, err_msg=name)
    del m, loss_fn, opt, loss, data


def test_finite_differences(ctx, mlp_path):
    m = nnmod.from_manifest(mlp_path, ctx=ctx)
    x = np.random.default_rng(3).standard_normal((3, 4)).astype(np.float32)
    (m(x) * m(x)).mean().backward()
    w = m.fc1.weight
    g = w.grad.numpy().copy()
    wn = w.numpy()
    eps = 1e-2
    with nnmod.no_grad():
        for (i, j) in [(0, 0), (3, 2), (7, 3)]:
            old = wn[i, j]
            wn[i, j] = old + eps
            up = (m(x) * m(x)).mean().item()
            wn[i, j] = old - eps
            down = (m(x) * m(x)).mean().item()
            wn[i, j] = old
            assert abs((up - down) / (2 * eps) - g[i, j]) < 1e-3 * max(1.0, abs(g[i, j]))
    del m, w


def test_adam_and_groups(ctx, mlp_path):
    m = nnmod.from_manifest(mlp_path, ctx=ctx)
    opt = nnmod.optim.Adam([{"params": m.parameters()},
                            {"params": m.fc2.parameters(), "lr": 0.0}], lr=0.05)
    assert [g["lr"] for g in opt.param_groups] == [0.05, 0.0]
    w1, w2 = m.fc1.weight.numpy().copy(), m.fc2.weight.numpy().copy()
    x = np.ones((2, 4), np.float32)
    m(x).sum().backward()
    opt.step()
    assert not np.allclose(m.fc1.weight.numpy(), w1)
    np.testing.assert_array_equal(m.fc2.weight.numpy(), w2)  # its group's lr is 0
    opt.param_groups[1]["lr"] = 0.05
    opt.zero_grad()
    assert m.fc1.weight.grad is None
    m(x).sum().backward()
    opt.step()
    assert not np.allclose(m.fc2.weight.numpy(), w2)
    with pytest.raises(nnmod.InvalidError):
        nnmod.optim.SGD(list(m.parameters())[:2], lr=0.1)  # half a module
    with pytest.raises(nnmod.InvalidError):
        nnmod.optim.SGD(m.parameters(), lr=-1.0)
    del m, opt


def test_optimizer_on_a_submodule_list(ctx, mlp_path):
    m = nnmod.from_manifest(mlp_path, ctx=ctx)
    opt = nnmod.optim.SGD(list(m.fc2.parameters()), lr=1.0)
    w1, w2 = m.fc1.weight.numpy().copy(), m.fc2.weight.numpy().copy()
    m(np.ones((1, 4), np.float32)).sum().backward()
    opt.step()
    np.testing.assert_array_equal(m.fc1.weight.numpy(), w1)
    np.testing.assert_allclose(m.fc2.weight.numpy(), w2 - m.fc2.weight.grad.numpy(), rtol=1e-6)
    del m, opt


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_checkpoint_resume_equals_uninterrupted(ctx, case, kind, tmp_path):
    """Two steps, a checkpoint, a third step in a fresh module and optimizer
    loaded from it: bit for bit the third step of an uninterrupted run."""
    data, _ = case
    loss_fn = nnmod.create("cross_entropy", ctx=ctx)

    def make():
        m = mlp(ctx, data)
        if kind == "sgd":
            return m, nnmod.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
        return m, nnmod.optim.Adam(m.parameters(), lr=0.01)

    def step(m, opt):
        opt.zero_grad()
        loss_fn(m(data["input"]), data["target"]).backward()
        opt.step()

    a, oa = make()
    step(a, oa)
    step(a, oa)
    path = str(tmp_path / "ck.safetensors")
    nnmod.save_checkpoint(path, a, oa, metadata={"epoch": "2"})
    step(a, oa)
    b, ob = make()
    ob.param_groups[0]["lr"] = 0.5  # the file's lr replaces it
    nnmod.load_checkpoint(path, b, ob)
    assert ob.param_groups[0]["lr"] == pytest.approx(0.1 if kind == "sgd" else 0.01)
    step(b, ob)
    for (name, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(p.numpy(), q.numpy(), err_msg=name)
    _, meta = nnmod.load_safetensors(path, with_metadata=True, ctx=ctx)
    assert meta["epoch"] == "2"
    # the wrong kind of optimizer, or a corrupt file, is refused; nothing changes
    wrong = nnmod.optim.AdamW(b.parameters()) if kind == "sgd" else \
        nnmod.optim.SGD(b.parameters(), lr=0.1)
    before = [p.numpy().copy() for p in b.parameters()]
    with pytest.raises(nnmod.InvalidError):
        nnmod.load_checkpoint(path, b, wrong)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(open(path, "rb").read()[:100])
    with pytest.raises(nnmod.Error):
        nnmod.load_checkpoint(str(bad), b, ob)
    for p, q in zip(before, b.parameters()):
        np.testing.assert_array_equal(p, q.numpy())
    with pytest.raises(nnmod.InvalidError):
        nnmod.save_checkpoint(path, b, optimizer="not an optimizer")
    del a, b, oa, ob, wrong, loss_fn


def test_synchronize_on_the_cpu(ctx, mlp_path):
    # nnm_ctx_synchronize: nothing queued on a CPU-only context, before and after work
    ctx.synchronize()
    m = nnmod.from_manifest(mlp_path, ctx=ctx)
    m(np.ones((2, 4), dtype=np.float32))
    ctx.synchronize()
