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
