"""nnmod.Tensor: a Python handle on one reference to an nnm_tensor.

Ownership: a Tensor object owns exactly one libnnmod reference, dropped when
the object is collected. Views handed out (numpy(), __dlpack__) keep the
Tensor, or the storage, alive themselves, so they never dangle.
"""
import ctypes
import threading
from ctypes import (POINTER, addressof, byref, c_char_p, c_int32, c_int64, c_void_p, cast,
                    pythonapi, py_object, sizeof)

import numpy as np

from . import _lib as L
from ._context import _exiting_flag, default_context
from ._errors import DTypeError, DeviceError, InvalidError, ShapeError, as_runtime_error


class dtype:
    """A tensor element type, DLPack-coded (code, bits)."""

    __slots__ = ("name", "code", "bits", "numpy")

    def __init__(self, name, code, bits, numpy_dtype):
        self.name, self.code, self.bits, self.numpy = name, code, bits, numpy_dtype

    @property
    def itemsize(self):
        return (self.bits + 7) // 8

    def __repr__(self):
        return "nnmod." + self.name

    def __reduce__(self):
        return self.name


float32 = dtype("float32", 2, 32, np.dtype(np.float32))
float64 = dtype("float64", 2, 64, np.dtype(np.float64))
float16 = dtype("float16", 2, 16, np.dtype(np.float16))
bfloat16 = dtype("bfloat16", 4, 16, None)
int64 = dtype("int64", 0, 64, np.dtype(np.int64))
int32 = dtype("int32", 0, 32, np.dtype(np.int32))
int16 = dtype("int16", 0, 16, np.dtype(np.int16))
int8 = dtype("int8", 0, 8, np.dtype(np.int8))
uint8 = dtype("uint8", 1, 8, np.dtype(np.uint8))
bool_ = dtype("bool", 6, 8, np.dtype(np.bool_))
_DTYPES = {(d.code, d.bits): d for d in (float32, float64, float16, bfloat16, int64, int32, int16,
                                         int8, uint8, bool_)}
_BY_NUMPY = {d.numpy: d for d in _DTYPES.values() if d.numpy is not None}


def _dtype_of(dt):
    d = _DTYPES.get((dt.code, dt.bits))
    if d is None or dt.lanes != 1:
        return dtype(f"dtype(code={dt.code}, bits={dt.bits}, lanes={dt.lanes})", dt.code, dt.bits,
                     None)
    return d


_UNARY = {"neg": 1, "relu": 2, "exp": 3, "log": 4, "tanh": 5, "sigmoid": 6, "sqrt": 7, "abs": 8,
          "scale": 9}
_BINARY = {"add": 0, "sub": 1, "mul": 2, "div": 3, "maximum": 4, "minimum": 5}
_REDUCE = {"sum": 0, "mean": 1, "amax": 2, "amin": 3}


class Tensor:
    """An n-dimensional array living in libnnmod (CPU or another device).

    Made by nnmod.tensor(array), nnmod.from_dlpack(obj), module calls and ops.
    ``.numpy()`` is a view of the same memory on the CPU (no copy);
    ``.grad``, ``.backward()``, ``.requires_grad`` follow PyTorch.
    """

    __slots__ = ("_h", "_ctx", "_origin", "__weakref__")

    def __init__(self, *args, **kwargs):
        raise TypeError("make tensors with nnmod.tensor(array) or nnmod.from_dlpack(obj)")

    @classmethod
    def _own(cls, ctx, h):
        """Wraps handle h (a c_void_p), taking over the reference it holds."""
        t = object.__new__(cls)
        t._h = h
        t._ctx = ctx
        t._origin = None
        return t

    @classmethod
    def _borrow(cls, ctx, ptr):
        """Wraps a borrowed pointer (int), taking a reference of its own."""
        L.nnm_tensor_retain(ptr)
        return cls._own(ctx, c_void_p(ptr))

    def __del__(self):
        h = self._h
        if h and not _exiting_flag():
            with self._ctx.lock:
                L.nnm_tensor_release(h)
            self._h = None

    # ---- description ----

    def _desc(self):
        return L.nnm_tensor_desc_get(self._h).contents

    @property
    def shape(self):
        d = self._desc()
        return tuple(d.shape[i] for i in range(d.ndim))

    def size(self, dim=None):
        s = self.shape
        return s if dim is None else s[dim]

    @property
    def ndim(self):
        return self._desc().ndim

    def dim(self):
        return self.ndim

    def numel(self):
        return L.nnm_tensor_numel(self._h)

    def __len__(self):
        s = self.shape
        if not s:
            raise TypeError("len() of a 0-d tensor")
        return s[0]

    @property
    def dtype(self):
        return _dtype_of(self._desc().dtype)

    @property
    def device(self):
        d = self._desc().device
        return Device(d.type, d.id)

    def stride(self):
        d = self._desc()
        return tuple(d.strides[i] for i in range(d.ndim))

    # ---- data ----

    def _array_interface(self, readonly):
        d = self._desc()
        dt = _dtype_of(d.dtype)
        if dt.numpy is None:
            raise DTypeError(f"{dt.name} has no NumPy dtype")
        if d.device.type != L.NNM_DEVICE_CPU:
            raise DeviceError(f"the tensor is on {Device(d.device.type, d.device.id)}: "
                              "numpy() views CPU memory only; copy it with .cpu() first")
        nd = d.ndim
        shape = tuple(d.shape[i] for i in range(nd))
        item = dt.numpy.itemsize
        strides = tuple(d.strides[i] * item for i in range(nd))
        ptr = (d.data or 0) + d.byte_offset
        if 0 in shape or not ptr:
            ptr = None
        return {"version": 3, "shape": shape, "typestr": dt.numpy.str,
                "data": (ptr if ptr is not None else 0, readonly), "strides": strides}

    def numpy(self):
        """A NumPy array sharing this tensor's memory (CPU tensors; no copy).
        The array keeps the tensor alive. Writing to it changes the tensor and
        bypasses autograd, as with PyTorch's t.detach().numpy()."""
        iface = self._array_interface(False)
        if not iface["data"][0]:  # no elements: nothing to share
            return np.empty(iface["shape"], iface["typestr"])
        return np.asarray(_ArrayView(self, iface))

    def __array__(self, dtype=None):
        a = self.numpy()
        return a if dtype is None else a.astype(dtype, copy=False)

    def cpu(self):
        """This tensor if it is on the CPU, else a CPU copy (f32 tensors)."""
        d = self._desc()
        if d.device.type == L.NNM_DEVICE_CPU:
            return self
        if (d.dtype.code, d.dtype.bits) != (2, 32):
            raise DTypeError("copying to the CPU: only f32 tensors")
        out = np.empty(self.shape, dtype=np.float32)
        with self._ctx.lock:
            self._ctx.check(L.nnm_tensor_to_f32(self._h, out.ctypes.data, out.size))
        return tensor(out, ctx=self._ctx)

    def tolist(self):
        return self.cpu().numpy().tolist()

    def item(self):
        if self.numel() != 1:
            raise ShapeError(f"item() of a tensor with {self.numel()} elements")
        return self.cpu().numpy().reshape(()).item()

    def __repr__(self):
        try:
            body = np.array2string(self.cpu().numpy(), separator=", ", prefix="tensor(")
        except Exception as e:  # a dtype NumPy lacks, a device without a copy
            body = f"<{type(e).__name__}: {e}>"
        extra = ""
        if self.dtype is not float32:
            extra += f", dtype={self.dtype!r}"
        dev = self.device
        if dev.type != "cpu":
            extra += f", device='{dev}'"
        if self.requires_grad:
            extra += ", requires_grad=True"
        return f"tensor({body}{extra})"

    # ---- DLPack ----

    def __dlpack_device__(self):
        d = self._desc().device
        return (d.type, d.id)

    def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
        """A DLPack capsule sharing this tensor's memory: "dltensor_versioned"
        when the consumer asks for max_version >= (1, 0), else the unversioned
        "dltensor" that NumPy 1.x and PyTorch 1.x/2.x read."""
        if copy:
            raise InvalidError("__dlpack__(copy=True) is not supported")
        if dl_device is not None and tuple(dl_device) != self.__dlpack_device__():
            raise DeviceError(f"__dlpack__: the tensor is on {self.__dlpack_device__()}, "
                              f"dl_device {tuple(dl_device)} asked")
        versioned = max_version is not None and tuple(max_version)[0] >= 1
        return _export_capsule(self, versioned)

    # ---- autograd ----

    @property
    def requires_grad(self):
        return bool(L.nnm_tensor_requires_grad(self._h))

    @requires_grad.setter
    def requires_grad(self, value):
        self.requires_grad_(value)

    def requires_grad_(self, requires_grad=True):
        with self._ctx.lock:
            self._ctx.check(L.nnm_tensor_set_requires_grad(self._h, 1 if requires_grad else 0))
        return self

    @property
    def is_leaf(self):
        return bool(L.nnm_tensor_is_leaf(self._h))

    @property
    def grad(self):
        """The accumulated gradient (a Tensor sharing its memory), or None."""
        with self._ctx.lock:
            g = L.nnm_tensor_grad(self._h)
            return Tensor._borrow(self._ctx, g) if g else None

    @grad.setter
    def grad(self, value):
        with self._ctx.lock:
            if value is None:
                self._ctx.check(L.nnm_tensor_set_grad(self._h, None))
            else:
                value = _as_tensor(value, self._ctx)
                self._ctx.check(L.nnm_tensor_set_grad(self._h, value._h))

    def backward(self, gradient=None, retain_graph=False):
        """Adds d(self)/d(leaf) into every leaf's .grad (loss.backward()).
        gradient is needed unless self has one element. Runs with the hooks of
        the modules involved; a failing hook raises nnmod.HookError."""
        ctx = self._ctx
        g = None if gradient is None else _as_tensor(gradient, ctx)
        with ctx.lock:
            st = L.nnm_backward(self._h, g._h if g is not None else None, 1 if retain_graph else 0)
            if st:
                ctx.raise_pending_base()
                raise as_runtime_error(ctx.error(st))  # PyTorch raises RuntimeError

    def detach(self):
        """A tensor sharing this one's memory, outside any graph."""
        out = c_void_p()
        with self._ctx.lock:
            self._ctx.check(L.nnm_tensor_detach(self._h, byref(out)))
        return Tensor._own(self._ctx, out)

    # ---- ops (recorded for autograd like any op) ----

    def _unary(self, op, alpha=0.0):
        out = c_void_p()
        ctx = self._ctx
        with ctx.lock:
            ctx.check(L.nnm_op_unary(ctx._h, _UNARY[op], self._h, alpha, byref(out)))
        return Tensor._own(ctx, out)

    def _binary(self, op, other, swap=False):
        ctx = self._ctx
        other = _as_tensor(other, ctx)
        a, b = (other, self) if swap else (self, other)
        out = c_void_p()
        with ctx.lock:
            ctx.check(L.nnm_op_binary(ctx._h, _BINARY[op], a._h, b._h, byref(out)))
        return Tensor._own(ctx, out)

    def _reduce(self, op, dim, keepdim):
        ctx = self._ctx
        if dim is None:
            dims, n = None, 0
        else:
            ds = (dim,) if isinstance(dim, int) else tuple(dim)
            dims, n = (c_int32 * len(ds))(*ds), len(ds)
        out = c_void_p()
        with ctx.lock:
            ctx.check(L.nnm_op_reduce(ctx._h, _REDUCE[op], self._h, dims, n, 1 if keepdim else 0,
                                      byref(out)))
        return Tensor._own(ctx, out)

    def __add__(self, o): return self._binary("add", o)
    def __radd__(self, o): return self._binary("add", o, True)
    def __sub__(self, o): return self._binary("sub", o)
    def __rsub__(self, o): return self._binary("sub", o, True)
    def __mul__(self, o): return self._binary("mul", o)
    def __rmul__(self, o): return self._binary("mul", o, True)
    def __truediv__(self, o): return self._binary("div", o)
    def __rtruediv__(self, o): return self._binary("div", o, True)
    def __neg__(self): return self._unary("neg")

    def __matmul__(self, o):
        ctx = self._ctx
        o = _as_tensor(o, ctx)
        out = c_void_p()
        with ctx.lock:
            ctx.check(L.nnm_op_matmul(ctx._h, self._h, o._h, byref(out)))
        return Tensor._own(ctx, out)

    def relu(self): return self._unary("relu")
    def exp(self): return self._unary("exp")
    def log(self): return self._unary("log")
    def tanh(self): return self._unary("tanh")
    def sigmoid(self): return self._unary("sigmoid")
    def sqrt(self): return self._unary("sqrt")
    def abs(self): return self._unary("abs")
    def sum(self, dim=None, keepdim=False): return self._reduce("sum", dim, keepdim)
    def mean(self, dim=None, keepdim=False): return self._reduce("mean", dim, keepdim)
    def amax(self, dim=None, keepdim=False): return self._reduce("amax", dim, keepdim)
    def amin(self, dim=None, keepdim=False): return self._reduce("amin", dim, keepdim)

    def reshape(self, *shape):
        if len(shape) == 1 and not isinstance(shape[0], int):
            shape = tuple(shape[0])
        ctx = self._ctx
        out = c_void_p()
        with ctx.lock:
            ctx.check(L.nnm_op_reshape(ctx._h, self._h, len(shape), (c_int64 * len(shape))(*shape),
                                       byref(out)))
        return Tensor._own(ctx, out)

    view = reshape


class Device:
    """A device (type, index); str() gives "cpu" or "cuda:0"."""

    __slots__ = ("type_code", "index")
    _NAMES = {1: "cpu", 2: "cuda"}

    def __init__(self, type_code, index=0):
        self.type_code, self.index = type_code, index

    @property
    def type(self):
        return self._NAMES.get(self.type_code, f"dlpack{self.type_code}")

    def __str__(self):
        return "cpu" if self.type_code == 1 else f"{self.type}:{self.index}"

    def __repr__(self):
        return f"device(type='{self.type}', index={self.index})"

    def __eq__(self, other):
        if isinstance(other, str):
            other = device(other)
        return (isinstance(other, Device) and self.type_code == other.type_code
                and self.index == other.index)

    def __hash__(self):
        return hash((self.type_code, self.index))


def device(spec):
    """nnmod.device("cpu"), ("cuda"), ("cuda:1")."""
    if isinstance(spec, Device):
        return spec
    name, _, idx = str(spec).partition(":")
    codes = {"cpu": 1, "cuda": 2}
    if name not in codes:
        raise InvalidError(f"unknown device '{spec}' (cpu, cuda, cuda:N)")
    return Device(codes[name], int(idx) if idx else 0)


class _ArrayView:
    """What numpy() wraps: the array interface plus the tensor it keeps alive."""

    __slots__ = ("__array_interface__", "_tensor")

    def __init__(self, tensor, iface):
        self._tensor = tensor
        self.__array_interface__ = iface


# ---- NumPy arrays and other producers into nnmod (zero-copy) ---------------

# Imports own the Python objects they borrow memory from until libnnmod calls
# the deleter (when the last tensor on that memory goes): struct address ->
# (struct, the objects to keep).
_keep = {}
_keep_lock = threading.Lock()


@L.DLPackDeleter
def _release_import(p):
    with _keep_lock:
        entry = _keep.pop(addressof(p.contents), None)
    if entry is not None and entry[2] is not None:
        legacy = entry[2]
        if legacy.contents.deleter:
            _call_legacy_deleter(legacy)


def _call_legacy_deleter(legacy):
    # With the GIL held: NumPy's deleter drops a Python reference.
    fn = ctypes.PYFUNCTYPE(None, c_void_p)(cast(legacy.contents.deleter, c_void_p).value)
    fn(addressof(legacy.contents))


def _import_desc(ctx, desc_fill, keep, legacy=None):
    """Builds an nnm_dlpack_tensor in Python memory, hands it to libnnmod,
    and keeps `keep` alive until libnnmod lets go."""
    dl = L.DLPackTensor()
    dl.version.major, dl.version.minor = 1, 0
    dl.deleter = _release_import
    desc_fill(dl.dl_tensor)
    with _keep_lock:
        _keep[addressof(dl)] = (dl, keep, legacy)
    out = c_void_p()
    with ctx.lock:
        st = L.nnm_tensor_from_dlpack(ctx._h, byref(dl), byref(out))  # deleter runs on failure
        if st:
            raise ctx.error(st)
    return Tensor._own(ctx, out)


def _target_dtype(arr, want):
    if want is not None:
        want = want if isinstance(want, dtype) else _BY_NUMPY.get(np.dtype(want))
        if want is None or want.numpy is None:
            raise DTypeError(f"nnmod.tensor: unsupported dtype {want!r}")
        return want.numpy
    k = arr.dtype.kind
    if k == "f":
        return np.dtype(np.float32)  # nnmod computes in f32
    if k in "iu":
        return np.dtype(np.int64)    # indices and class targets are i64
    if k == "b":
        return np.dtype(np.bool_)
    raise DTypeError(f"nnmod.tensor: NumPy dtype {arr.dtype} has no nnmod counterpart")


def tensor(data, dtype=None, requires_grad=False, ctx=None):
    """A tensor over `data` (a NumPy array or anything np.asarray takes).

    No copy when `data` is a NumPy array of the target dtype (float32 for
    floating data, int64 for integers, unless dtype says otherwise), aligned,
    writable and with strides that are whole elements: the tensor then uses
    the array's memory and keeps the array alive. Otherwise the data is
    converted into a new array first. Writes through either are seen by both.
    """
    ctx = ctx or default_context()
    if isinstance(data, Tensor):
        t = data.detach()
    else:
        arr = np.asarray(data)
        target = _target_dtype(arr, dtype)
        if arr.dtype != target:
            arr = arr.astype(target)
        item = arr.itemsize
        if (not arr.flags.aligned or not arr.flags.writeable or arr.ndim > 8
                or any(s < 0 or s % item for s in arr.strides)):
            arr = np.array(arr, order="C", copy=True)
        if arr.ndim > 8:
            raise ShapeError(f"tensors have at most 8 dims, got {arr.ndim}")
        shape = (c_int64 * max(arr.ndim, 1))(*arr.shape)
        strides = (c_int64 * max(arr.ndim, 1))(*(s // item for s in arr.strides))
        code, bits = _BY_NUMPY[arr.dtype].code, _BY_NUMPY[arr.dtype].bits

        def fill(d):
            d.data = arr.ctypes.data if arr.size else None
            d.device.type, d.device.id = L.NNM_DEVICE_CPU, 0
            d.ndim = arr.ndim
            d.dtype.code, d.dtype.bits, d.dtype.lanes = code, bits, 1
            d.shape = cast(shape, POINTER(c_int64))
            d.strides = cast(strides, POINTER(c_int64))
            d.byte_offset = 0

        t = _import_desc(ctx, fill, (arr, shape, strides))
    if requires_grad:
        t.requires_grad_(True)
    return t


def _as_tensor(x, ctx):
    if isinstance(x, Tensor):
        return x
    if isinstance(x, (int, float, bool)):
        return tensor(np.array(x, dtype=np.float32), ctx=ctx)
    return tensor(x, ctx=ctx)


# ---- DLPack capsules ------------------------------------------------------

pythonapi.PyCapsule_New.restype = py_object
pythonapi.PyCapsule_New.argtypes = [c_void_p, c_char_p, c_void_p]
pythonapi.PyCapsule_IsValid.restype = ctypes.c_int
pythonapi.PyCapsule_IsValid.argtypes = [py_object, c_char_p]
pythonapi.PyCapsule_GetPointer.restype = c_void_p
pythonapi.PyCapsule_GetPointer.argtypes = [py_object, c_char_p]
pythonapi.PyCapsule_SetName.restype = ctypes.c_int
pythonapi.PyCapsule_SetName.argtypes = [py_object, c_char_p]
_capsule_IsValid_raw = ctypes.PYFUNCTYPE(ctypes.c_int, c_void_p, c_char_p)(
    ("PyCapsule_IsValid", pythonapi))
_capsule_GetPointer_raw = ctypes.PYFUNCTYPE(c_void_p, c_void_p, c_char_p)(
    ("PyCapsule_GetPointer", pythonapi))

# Names must outlive every capsule: module constants.
_N_LEGACY = c_char_p(b"dltensor")
_N_VERSIONED = c_char_p(b"dltensor_versioned")
_N_USED_LEGACY = c_char_p(b"used_dltensor")
_N_USED_VERSIONED = c_char_p(b"used_dltensor_versioned")

# Exports: address of the struct handed out -> (struct, nnmod export, ctx).
_exports = {}


def _drop_export(addr):
    with _keep_lock:
        entry = _exports.pop(addr, None)
    if entry is None:
        return
    _struct, exp, ctx = entry
    if _exiting_flag():
        return
    with ctx.lock:  # the export holds a storage reference of ctx
        exp.contents.deleter(exp)


@L.DLPackDeleter
def _export_deleter_versioned(p):
    _drop_export(addressof(p.contents))


@L.DLManagedDeleter
def _export_deleter_legacy(p):
    _drop_export(addressof(p.contents))


@ctypes.CFUNCTYPE(None, c_void_p)
def _capsule_destructor(cap):
    # Called when a capsule dies; if nobody consumed it (name unchanged), the
    # managed tensor is still ours to delete.
    for name in (_N_LEGACY, _N_VERSIONED):
        if _capsule_IsValid_raw(cap, name):
            p = _capsule_GetPointer_raw(cap, name)
            if p:
                _drop_export(p)
            return


def _export_capsule(t, versioned):
    ctx = t._ctx
    exp = POINTER(L.DLPackTensor)()
    with ctx.lock:
        ctx.check(L.nnm_tensor_to_dlpack(t._h, byref(exp)))
    if versioned:
        s = L.DLPackTensor()
        s.version = exp.contents.version
        s.manager_ctx = None
        s.deleter = _export_deleter_versioned
        s.flags = exp.contents.flags
        s.dl_tensor = exp.contents.dl_tensor
        name = _N_VERSIONED
    else:
        s = L.DLManagedTensor()
        s.dl_tensor = exp.contents.dl_tensor
        s.manager_ctx = None
        s.deleter = _export_deleter_legacy
        name = _N_LEGACY
    with _keep_lock:
        _exports[addressof(s)] = (s, exp, ctx)
    return pythonapi.PyCapsule_New(addressof(s), name, cast(_capsule_destructor, c_void_p))


def from_dlpack(obj, ctx=None):
    """A tensor sharing the memory of `obj`: anything with __dlpack__ (NumPy
    arrays, PyTorch tensors, ...) or a DLPack capsule. Both the versioned
    (DLPack 1.x) and the unversioned protocol are read."""
    ctx = ctx or default_context()
    if isinstance(obj, Tensor):
        return obj.detach()
    if hasattr(obj, "__dlpack__"):
        try:
            cap = obj.__dlpack__(max_version=(1, 0))
        except TypeError:
            cap = obj.__dlpack__()
    else:
        cap = obj
    if pythonapi.PyCapsule_IsValid(cap, _N_VERSIONED):
        p = pythonapi.PyCapsule_GetPointer(cap, _N_VERSIONED)
        pythonapi.PyCapsule_SetName(cap, _N_USED_VERSIONED)
        vt = L.DLPackTensor.from_address(p)
        if vt.version.major != 1:
            # not ours to import: give it back to its producer
            err = InvalidError(f"DLPack version {vt.version.major}.{vt.version.minor}: "
                                       "only 1.x is read")
            if vt.deleter:
                ctypes.PYFUNCTYPE(None, c_void_p)(cast(vt.deleter, c_void_p).value)(p)
            raise err

        def fill(d):
            ctypes.memmove(addressof(d), p + L.DLPackTensor.dl_tensor.offset, sizeof(L.TensorDesc))

        # Our struct's deleter calls the producer's, with the GIL held.
        return _import_desc(ctx, fill, None, cast(c_void_p(p), POINTER(L.DLPackTensor)))
    if pythonapi.PyCapsule_IsValid(cap, _N_LEGACY):
        p = pythonapi.PyCapsule_GetPointer(cap, _N_LEGACY)
        pythonapi.PyCapsule_SetName(cap, _N_USED_LEGACY)
        legacy = cast(c_void_p(p), POINTER(L.DLManagedTensor))

        def fill(d):
            ctypes.memmove(addressof(d), p, sizeof(L.TensorDesc))

        return _import_desc(ctx, fill, None, legacy)
    raise InvalidError("from_dlpack: expected an object with __dlpack__ or an unused "
                       "DLPack capsule")

