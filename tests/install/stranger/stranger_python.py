"""stranger_python.py - the third-party plugins from Python (tests/install/stranger).

usage: python3 stranger_python.py WORKDIR PLUGIN.so...

Uses only what docs/bindings.md and docs/writing-a-plugin.md show: a
Context with the plugins, nnmod.create with config keywords, the page's
gradcheck function (copied as written), train/eval, named_buffers,
state_dict/load_state_dict and save/load through safetensors.
"""
import os
import sys

import numpy as np
import nnmod


def gradcheck(m, x, ctx=None, eps=1e-2, rtol=1e-2, atol=1e-3):
    """docs/writing-a-plugin.md, "Checking the gradient", as written."""
    x = np.array(x, np.float32)
    w = None

    def loss(xt):
        nonlocal w
        y = m(xt)
        if w is None:
            w = nnmod.tensor(np.random.default_rng(0).standard_normal(y.shape), ctx=ctx)
        return (y * w).sum()

    xt = nnmod.tensor(x, requires_grad=True, ctx=ctx)
    m.zero_grad()
    loss(xt).backward()
    checks = [("input", x, xt.grad.numpy())]
    checks += [(n, p.numpy(), p.grad.numpy()) for n, p in m.named_parameters()]
    for name, values, grad in checks:
        for i in np.ndindex(values.shape):
            v = values[i]
            with nnmod.no_grad():
                values[i] = v + eps
                up = loss(xt).item()
                values[i] = v - eps
                down = loss(xt).item()
                values[i] = v
            fd = (up - down) / (2 * eps)
            if abs(grad[i] - fd) > atol + rtol * abs(fd):
                raise AssertionError(f"{name}{list(i)}: backward {grad[i]}, finite differences {fd}")


def main():
    work, plugins = sys.argv[1], sys.argv[2:]
    ctx = nnmod.Context(plugins=plugins)
    X = [[-1.5, -0.25, 0.5], [1.0, 2.0, 0.125]]
    x = np.array(X, np.float32)

    # the same layer three ways: C with its own backward, C composed, Rust
    requests = ["stranger.scaled_tanh", "stranger.scaled_tanh_auto"]
    if any("stranger_rs" in p for p in plugins):
        requests.append("stranger_rs.scaled_tanh")
    grads = {}
    for req in requests:
        m = nnmod.create(req, ctx=ctx, init_scale=1.5)
        y = m(x).numpy()
        assert np.allclose(y, 1.5 * np.tanh(x), atol=1e-6), (req, y)
        gradcheck(m, X, ctx)
        xt = nnmod.tensor(x, requires_grad=True, ctx=ctx)
        m.zero_grad()
        m(xt).sum().backward()
        grads[req] = (xt.grad.numpy().copy(), m.scale.grad.numpy().copy())
        print(f"{req}: {m} ok")
    ref = grads["stranger.scaled_tanh_auto"]
    for req, (gx, gs) in grads.items():
        assert np.allclose(gx, ref[0], atol=1e-5) and np.allclose(gs, ref[1], atol=1e-5), req

    # C++
    m = nnmod.create("stranger_cxx.softsign", ctx=ctx, alpha=2.0, learn_alpha=True)
    assert np.allclose(m(x).numpy(), 2 * x / (1 + np.abs(x)), atol=1e-6)
    gradcheck(m, X, ctx)
    print(f"stranger_cxx.softsign: {m} ok")

    # a buffer updated in training; state dicts in memory and in files
    m = nnmod.create("stranger.track_mean", ctx=ctx, num_features=3, momentum=0.5)
    m(x)
    m(x + 1)
    bufs = dict(m.named_buffers())
    mean = x.mean(0)
    want = 0.25 * mean + 0.5 * (mean + 1)
    assert np.allclose(bufs["running_mean"].numpy(), want, atol=1e-6), bufs["running_mean"].numpy()
    assert int(bufs["num_batches_tracked"].numpy()) == 2
    sd = m.state_dict()
    assert list(sd) == ["running_mean", "num_batches_tracked"], list(sd)
    m.eval()
    assert np.allclose(m(x).numpy(), x - want, atol=1e-6)
    gradcheck(m, X, ctx)  # eval: a pure function of x
    path = os.path.join(work, "track_mean_py.safetensors")
    m.save(path)
    m2 = nnmod.create("stranger.track_mean", ctx=ctx, num_features=3)
    m2.load(path, strict=True)
    assert np.allclose(dict(m2.named_buffers())["running_mean"].numpy(), want)
    assert int(dict(m2.named_buffers())["num_batches_tracked"].numpy()) == 2
    m3 = nnmod.create("stranger.track_mean", ctx=ctx, num_features=3)
    m3.load_state_dict(sd)
    assert np.allclose(dict(m3.named_buffers())["running_mean"].numpy(), want)
    tensors = nnmod.load_safetensors(path)
    assert set(tensors) == {"running_mean", "num_batches_tracked"}, set(tensors)
    # errors name the module and the key
    try:
        m(np.zeros((2, 4), np.float32))
    except nnmod.ShapeError as e:
        assert "expected input [*, 3], got [2, 4]" in e.message, e.message
    else:
        raise AssertionError("a [2, 4] input was accepted")
    try:
        nnmod.create("stranger.track_mean", ctx=ctx)
    except nnmod.NotFoundError as e:
        assert "num_features" in e.message, e.message
    else:
        raise AssertionError("track_mean without num_features was accepted")
    print("stranger_python: all checks passed")


if __name__ == "__main__":
    main()
