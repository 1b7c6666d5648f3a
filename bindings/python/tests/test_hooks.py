import gc
import threading
import weakref

import numpy as np
import pytest

import nnmod
from nnmod import _module


def x24():
    return np.arange(8, dtype=np.float32).reshape(2, 4) / 8


def test_forward_hooks_see_and_replace(ctx, mlp_path):
    m = nnmod.from_manifest(mlp_path, ctx=ctx)
    seen = []
    h1 = m.fc1.register_forward_hook(lambda mod, args, out: seen.append((mod.path, out.shape)))
    h2 = m.fc2.register_forward_pre_hook(lambda mod, args: seen.append(("pre", args[0].shape)))
    y = m(x24())
    assert seen == [("fc1", (2, 8)), ("pre", (2, 8))]
    # replace fc2's output: the model returns what the hook returned
    zeros = nnmod.tensor(np.zeros((2, 3), np.float32), ctx=ctx)
    h3 = m.fc2.register_forward_hook(lambda mod, args, out: zeros)
    np.testing.assert_array_equal(m(x24()).numpy(), np.zeros((2, 3)))
    # replace fc1's input: zeros in, so fc1 gives its bias
    h4 = m.fc1.register_forward_pre_hook(lambda mod, args: (np.zeros((2, 4), np.float32),))
    h3.remove()
    out = m.fc1(x24())
    np.testing.assert_allclose(out.numpy(), np.broadcast_to(m.fc1.bias.numpy(), (2, 8)))
    for h in (h1, h2, h4):
        h.remove()
    h1.remove()  # twice is harmless
    seen.clear()
    np.testing.assert_allclose(m(x24()).numpy(), y.numpy())
    assert seen == []
    del m, y, zeros, out


def test_hook_exception_becomes_the_call_error(ctx, mlp_path):
    m = nnmod.from_manifest(mlp_path, ctx=ctx)

    def bad(mod, args, out):
        raise ValueError("boom in " + mod.path)

    h = m.fc2.register_forward_hook(bad)
    with pytest.raises(nnmod.HookError) as e:
        m(x24())
    err = e.value
    assert err.status_name == "NNM_E_HOOK"
    assert "fc2 (linear)" in err.message
    assert "ValueError: boom in fc2" in err.message
    assert "Traceback (most recent call last)" in err.message and "in bad" in err.message
    assert isinstance(err.__cause__, ValueError)
    h.remove()
    m(x24())  # works again
    # a hook returning the wrong count fails the same way, never crashes
    h = m.fc1.register_forward_hook(lambda mod, a, o: (o, o))
    with pytest.raises(nnmod.HookError) as e:
        m(x24())
    assert "returned 2 tensor(s) where 1 are expected" in str(e.value)
    h.remove()
    del m, h, err, e


def test_keyboard_interrupt_in_hook_propagates(ctx, mlp_path):
    m = nnmod.from_manifest(mlp_path, ctx=ctx)

    def stop(mod, args):
        raise KeyboardInterrupt

    h = m.register_forward_pre_hook(stop)
    with pytest.raises(KeyboardInterrupt):
        m(x24())
    h.remove()
    del m


def test_long_traceback_is_kept_whole(ctx, mlp_path):
    m = nnmod.from_manifest(mlp_path, ctx=ctx)

    def deep(n):
        if n == 0:
            raise RuntimeError("deep " + "x" * 2000)
        deep(n - 1)

    h = m.act.register_forward_hook(lambda mod, a, o: deep(30))
    with pytest.raises(nnmod.HookError) as e:
        m(x24())
    assert "x" * 2000 in str(e.value)  # beyond the C message's 1 KiB
    assert str(e.value).endswith('raise RuntimeError("deep " + "x" * 2000)')  # the last frame
    h.remove()
    del m, h, e


def test_hook_closures_are_freed_on_remove(ctx, mlp_path):
    m = nnmod.from_manifest(mlp_path, ctx=ctx)

    class Hook:
        def __call__(self, mod, args, out):
            return None

    hook = Hook()
    ref = weakref.ref(hook)
    n = _module._hook_count()
    h = m.fc1.register_forward_hook(hook)
    del hook
    gc.collect()
    assert ref() is not None
    assert _module._hook_count() == n + 1
    h.remove()
    gc.collect()
    assert ref() is None
    assert _module._hook_count() == n
    assert not h.live
    del m


def test_hook_closures_die_with_their_module(ctx, mlp_path):
    m = nnmod.from_manifest(mlp_path, ctx=ctx)

    class Hook:
        def __call__(self, mod, args, out):
            return None

    hook = Hook()
    ref = weakref.ref(hook)
    n = _module._hook_count()
    h = m.fc2.register_forward_hook(hook)  # the handle outlives the module below
    m.fc1.register_forward_pre_hook(lambda mod, a: None)  # no handle kept at all
    del hook
    assert _module._hook_count() == n + 2 and h.live
    del m
    gc.collect()
    assert ref() is None  # libnnmod's user_free released it when fc2 died
    assert _module._hook_count() == n
    assert not h.live
    h.remove()  # a stale handle is harmless
    del h


def test_prepend_and_always_call(ctx, mlp_path):
    m = nnmod.from_manifest(mlp_path, ctx=ctx)
    order = []
    h1 = m.fc1.register_forward_hook(lambda mod, a, o: order.append("first"))
    h2 = m.fc1.register_forward_hook(lambda mod, a, o: order.append("prepended"), prepend=True)
    m(x24())
    assert order == ["prepended", "first"]
    seen = []
    h3 = m.fc2.register_forward_hook(lambda mod, a, o: seen.append(o), always_call=True)
    with pytest.raises(nnmod.ShapeError):
        m.fc2(np.ones((2, 5), np.float32))  # fails in the input check
    assert seen == [None]  # ran anyway, without an output
    # an always_call hook that raises on the failure path leaves the failure as it was
    h4 = m.fc2.register_forward_hook(lambda mod, a, o: 1 / 0, always_call=True)
    with pytest.raises(nnmod.ShapeError) as e:
        m.fc2(np.ones((2, 5), np.float32))
    assert e.value.__cause__ is None and "ZeroDivision" not in str(e.value)
    h4.remove()
    del e
    for h in (h1, h2, h3):
        h.remove()
    del m


def test_global_backward_hooks(ctx, mlp_path):
    m = nnmod.from_manifest(mlp_path, ctx=ctx)
    seen = []
    h = nnmod.register_module_full_backward_hook(
        lambda mod, gi, go: seen.append(mod.path or "<root>"), ctx=ctx)
    x = nnmod.tensor(x24(), ctx=ctx)
    m(x).sum().backward()
    assert seen[0] == "<root>" and set(seen) == {"<root>", "fc1", "act", "fc2"}
    h.remove()
    del m, x


def test_remove_inside_hook(ctx, mlp_path):
    m = nnmod.from_manifest(mlp_path, ctx=ctx)
    calls = []
    handles = {}

    def once(mod, args, out):
        calls.append(mod.path)
        handles["h"].remove()

    handles["h"] = m.fc1.register_forward_hook(once)
    m(x24())
    m(x24())
    assert calls == ["fc1"]
    del m


def test_global_hooks(ctx, mlp_path):
    m = nnmod.from_manifest(mlp_path, ctx=ctx)
    seen = []
    h = nnmod.register_module_forward_hook(lambda mod, a, o: seen.append(mod.path or "<root>"),
                                           ctx=ctx)
    m(x24())
    assert seen == ["fc1", "act", "fc2", "<root>"]
    h.remove()
    del m


def test_backward_hooks(ctx, mlp_path):
    m = nnmod.from_manifest(mlp_path, ctx=ctx)
    seen = {}

    def bw(mod, grad_in, grad_out):
        seen["in"] = [None if g is None else g.numpy().copy() for g in grad_in]
        seen["out"] = [g.numpy().copy() for g in grad_out]

    h = m.fc2.register_full_backward_hook(bw)
    x = nnmod.tensor(x24(), ctx=ctx)
    y = m(x)
    y.sum().backward()
    assert seen["out"][0].shape == (2, 3)
    np.testing.assert_allclose(seen["out"][0], np.ones((2, 3)))
    # d(sum(fc2(h)))/dh = ones @ W2
    np.testing.assert_allclose(seen["in"][0], np.ones((2, 3)) @ m.fc2.weight.numpy(), rtol=1e-5)
    h.remove()

    # a backward hook may scale the input gradient: fc1 then sees it scaled
    m.zero_grad()
    h = m.fc2.register_full_backward_hook(lambda mod, gi, go: tuple(g * 0.0 for g in gi))
    y = m(x)
    y.sum().backward()
    assert not m.fc1.weight.grad.numpy().any()
    assert m.fc2.weight.grad.numpy().any()
    h.remove()

    m.zero_grad()
    h = m.fc2.register_full_backward_hook(lambda mod, gi, go: 1 / 0)
    y = m(x)
    with pytest.raises(nnmod.HookError) as e:
        y.sum().backward()
    assert "ZeroDivisionError" in str(e.value)
    h.remove()
    del m, x, y, h, e


def test_grad_mode_is_per_thread(ctx, mlp_path):
    m = nnmod.from_manifest(mlp_path, ctx=ctx)
    inside = threading.Event()
    checked = threading.Event()
    result = {}

    def other():
        inside.wait()
        result["other_enabled"] = nnmod.is_grad_enabled()
        result["other_requires_grad"] = m(x24()).requires_grad
        checked.set()

    t = threading.Thread(target=other)
    t.start()
    with nnmod.no_grad():
        assert not nnmod.is_grad_enabled()
        assert not m(x24()).requires_grad
        inside.set()
        checked.wait()
        assert not nnmod.is_grad_enabled()
    t.join()
    assert result == {"other_enabled": True, "other_requires_grad": True}
    assert nnmod.is_grad_enabled()

    @nnmod.no_grad()
    def f():
        return nnmod.is_grad_enabled()

    assert f() is False and nnmod.is_grad_enabled()
    del m


def test_threads_share_a_context_safely(ctx, mlp_path):
    m = nnmod.from_manifest(mlp_path, ctx=ctx)
    x = np.random.default_rng(5).standard_normal((4, 4)).astype(np.float32)
    want = m(x).numpy().copy()
    errors = []

    def work():
        try:
            for _ in range(300):
                y = m(x)
                if not np.array_equal(y.numpy(), want):
                    errors.append("mismatch")
                (y * y).sum().backward()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    ts = [threading.Thread(target=work) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert errors == []
    del m
