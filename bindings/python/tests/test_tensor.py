import gc
import sys

import numpy as np
import pytest

import nnmod


def test_tensor_shares_numpy_memory(ctx):
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    t = nnmod.tensor(a, ctx=ctx)
    assert t.shape == (3, 4)
    assert t.dtype is nnmod.float32
    v = t.numpy()
    assert np.shares_memory(v, a)
    a[1, 2] = 100.0
    assert t.numpy()[1, 2] == 100.0
    del t, v


def test_tensor_keeps_array_alive(ctx):
    a = np.arange(6, dtype=np.float32)
    before = sys.getrefcount(a)
    t = nnmod.tensor(a, ctx=ctx)
    assert sys.getrefcount(a) > before  # the tensor holds the array
    u = t.detach()
    del t
    gc.collect()
    assert sys.getrefcount(a) > before  # a view of the same memory still does
    np.testing.assert_array_equal(u.numpy(), np.arange(6, dtype=np.float32))
    del u
    gc.collect()
    assert sys.getrefcount(a) == before  # the last tensor let it go


def test_numpy_view_keeps_tensor_alive(ctx):
    t = nnmod.tensor(np.ones((2, 2), np.float32) * 3, ctx=ctx)
    v = t.numpy()
    del t
    gc.collect()
    np.testing.assert_array_equal(v, np.full((2, 2), 3, np.float32))
    del v


def test_dtype_conversions(ctx):
    t = nnmod.tensor(np.array([1.5, 2.5]), ctx=ctx)  # float64 in: nnmod computes in f32
    assert t.dtype is nnmod.float32
    i = nnmod.tensor(np.array([1, 2, 3], np.int32), ctx=ctx)
    assert i.dtype is nnmod.int64
    np.testing.assert_array_equal(i.numpy(), [1, 2, 3])
    b = nnmod.tensor([True, False], ctx=ctx)
    assert b.dtype is nnmod.bool_
    with pytest.raises(nnmod.DTypeError):
        nnmod.tensor(np.array([1 + 2j]), ctx=ctx)


def test_strided_and_readonly_arrays(ctx):
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    t = nnmod.tensor(a.T, ctx=ctx)  # a view with strides (1, 4) elements, no copy
    assert t.shape == (4, 3)
    assert t.stride() == (1, 4)
    np.testing.assert_array_equal(t.numpy(), a.T)
    assert np.shares_memory(t.numpy(), a)
    ro = np.ones(4, np.float32)
    ro.setflags(write=False)
    r = nnmod.tensor(ro, ctx=ctx)  # copied: nnmod's views are writable
    assert not np.shares_memory(r.numpy(), ro)
    neg = a[:, ::-1]  # negative strides: copied
    np.testing.assert_array_equal(nnmod.tensor(neg, ctx=ctx).numpy(), neg)
    empty = nnmod.tensor(np.zeros((0, 3), np.float32), ctx=ctx)
    assert empty.shape == (0, 3) and empty.numpy().shape == (0, 3)
    del t, r, empty


def test_ops_match_numpy(ctx):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((3, 4)).astype(np.float32)
    b = rng.standard_normal((4,)).astype(np.float32)
    ta, tb = nnmod.tensor(a, ctx=ctx), nnmod.tensor(b, ctx=ctx)
    np.testing.assert_allclose((ta + tb).numpy(), a + b, rtol=1e-6)
    np.testing.assert_allclose((ta * tb - 2.0).numpy(), a * b - 2.0, rtol=1e-6)
    np.testing.assert_allclose((1.0 / (ta.abs() + 1)).numpy(), 1 / (np.abs(a) + 1), rtol=1e-6)
    np.testing.assert_allclose(ta.sum(1).numpy(), a.sum(1), rtol=1e-5)
    np.testing.assert_allclose(ta.mean().item(), a.mean(), rtol=1e-5)
    np.testing.assert_allclose((ta @ nnmod.tensor(a.T.copy(), ctx=ctx)).numpy(), a @ a.T,
                               rtol=1e-5)
    np.testing.assert_allclose(ta.relu().numpy(), np.maximum(a, 0))
    assert ta.reshape(2, 6).shape == (2, 6)
    with pytest.raises(nnmod.ShapeError):
        ta + nnmod.tensor(np.ones(3, np.float32), ctx=ctx)


def test_dlpack_with_numpy(ctx):
    t = nnmod.tensor(np.arange(6, dtype=np.float32).reshape(2, 3), ctx=ctx)
    assert t.__dlpack_device__() == (1, 0)
    a = np.from_dlpack(t)  # unversioned capsule, no copy
    assert np.shares_memory(a, t.numpy())
    np.testing.assert_array_equal(a, [[0, 1, 2], [3, 4, 5]])
    src = np.linspace(0, 1, 5, dtype=np.float32)
    u = nnmod.from_dlpack(src, ctx=ctx)  # NumPy's __dlpack__, no copy
    assert np.shares_memory(u.numpy(), src)
    del t, a, u
    gc.collect()


def test_dlpack_versioned_round_trip(ctx):
    t = nnmod.tensor(np.arange(4, dtype=np.float32), ctx=ctx)
    cap = t.__dlpack__(max_version=(1, 0))
    u = nnmod.from_dlpack(cap, ctx=ctx)
    assert np.shares_memory(u.numpy(), t.numpy())
    with pytest.raises(nnmod.InvalidError):
        nnmod.from_dlpack(cap, ctx=ctx)  # a capsule is consumed once
    del t, u, cap
    gc.collect()


def test_unconsumed_capsule_releases_storage(ctx):
    t = nnmod.tensor(np.zeros(1000, np.float32), ctx=ctx)
    before = ctx.stats()
    caps = [t.__dlpack__(), t.__dlpack__(max_version=(1, 0))]
    del caps
    gc.collect()
    del t
    gc.collect()
    after = ctx.stats()
    assert after["live_tensors"] == before["live_tensors"] - 1


def test_grad_properties(ctx):
    x = nnmod.tensor(np.array([1.0, -2.0, 3.0], np.float32), requires_grad=True, ctx=ctx)
    assert x.requires_grad and x.is_leaf and x.grad is None
    y = (x * x).sum()
    assert not y.is_leaf
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [2.0, -4.0, 6.0])
    x.grad = None
    assert x.grad is None
    d = x.detach()
    assert not d.requires_grad and np.shares_memory(d.numpy(), x.numpy())
    with pytest.raises(nnmod.Error):
        (x * 2).backward()  # three elements: needs a gradient
    del x, y, d


def test_repr_and_item(ctx):
    t = nnmod.tensor(np.array([[1.5]], np.float32), ctx=ctx)
    assert t.item() == 1.5
    assert repr(t).startswith("tensor(")
    assert t.tolist() == [[1.5]]
    del t
