"""save_safetensors / load_safetensors: dicts of tensors to and from files."""
import collections
import ctypes
import os
from ctypes import byref, c_char_p, c_int64, c_void_p, sizeof

from . import _lib as L
from ._context import _decode, default_context
from ._tensor import Tensor, _as_tensor


def save_safetensors(tensors, path, metadata=None, ctx=None):
    """Writes {name: tensor} (nnmod tensors or NumPy arrays) to a safetensors
    file atomically (temp file, fsync, rename). metadata: {str: str}."""
    ctx = ctx or default_context()
    items = [(str(k), _as_tensor(v, ctx)) for k, v in tensors.items()]
    names = (c_char_p * max(len(items), 1))(*[k.encode() for k, _ in items])
    handles = (c_void_p * max(len(items), 1))(*[t._h.value for _, t in items])
    meta = metadata or {}
    kv = (L.KV * max(len(meta), 1))()
    for i, (k, v) in enumerate(meta.items()):
        kv[i].key, kv[i].value = str(k).encode(), str(v).encode()
    with ctx.lock:
        ctx.check(L.nnm_safetensors_write(ctx._h, os.fsencode(path), len(items), names, handles,
                                          len(meta), kv))


def load_safetensors(path, ctx=None, with_metadata=False):
    """Reads every tensor of a safetensors file into new CPU tensors, in file
    order: {name: Tensor}. with_metadata: also return the __metadata__ dict."""
    ctx = ctx or default_context()
    st = c_void_p()
    res = collections.OrderedDict()
    meta = {}
    with ctx.lock:
        ctx.check(L.nnm_safetensors_open(ctx._h, os.fsencode(path), byref(st)))
        try:
            for i in range(L.nnm_safetensors_count(st)):
                e = L.STEntry(sizeof(L.STEntry))
                ctx.check(L.nnm_safetensors_entry(st, i, byref(e)))
                shape = (c_int64 * max(e.ndim, 1))(*[e.shape[j] for j in range(e.ndim)])
                out = c_void_p()
                ctx.check(L.nnm_tensor_new(ctx._h, L.Device(L.NNM_DEVICE_CPU, 0), e.dtype, e.ndim,
                                           shape, byref(out)))
                t = Tensor._own(ctx, out)
                if e.nbytes:
                    ctypes.memmove(L.nnm_tensor_desc_get(out).contents.data, e.data, e.nbytes)
                res[_decode(e.name)] = t
            for i in range(L.nnm_safetensors_metadata_count(st)):
                k, v = c_char_p(), c_char_p()
                ctx.check(L.nnm_safetensors_metadata(st, i, byref(k), byref(v)))
                meta[_decode(k.value)] = _decode(v.value)
        finally:
            L.nnm_safetensors_close(st)
    return (res, meta) if with_metadata else res


