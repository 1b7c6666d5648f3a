"""nnmod.Module: a Python handle on one reference to an nnm_module, and hooks.

A Module object owns one libnnmod reference; the C module (and, through it,
its parameters, buffers and children) lives while any handle or parent holds
one. Handles are cheap and not unique: ``model.fc1`` twice gives two Module
objects for the same C module, equal under ``==``.

Hooks are plain Python callables registered with libnnmod through one C
trampoline per hook kind; the callable is found again by an integer key (the
C hook's user data). A hook that raises makes the module call (or backward)
fail with nnmod.HookError, whose message carries the Python traceback and
whose __cause__ is the exception; nothing propagates through C frames.
"""
import collections
import ctypes
import os
import threading
import traceback
from ctypes import (POINTER, byref, c_char_p, c_double, c_int64, c_size_t, c_uint32,
                    c_void_p, create_string_buffer)

import numpy as np

from . import _lib as L
from ._context import _decode, _exiting_flag, _set_pending, default_context
from ._errors import InvalidError, NotFoundError, ShapeError, as_runtime_error
from ._tensor import Tensor, _as_tensor, device as _device

IncompatibleKeys = collections.namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])

# ---- hook registry -----------------------------------------------------------

_hooks = {}            # key -> (fn, Context, kind)
_hooks_lock = threading.Lock()
_next_key = [1]


def _hook_add(fn, ctx, kind):
    with _hooks_lock:
        key = _next_key[0]
        _next_key[0] += 1
        _hooks[key] = (fn, ctx, kind)
    return key


def _hook_drop(key):
    with _hooks_lock:
        _hooks.pop(key, None)


def _hook_count():
    """How many Python hook closures are alive (for tests of their lifetime)."""
    with _hooks_lock:
        return len(_hooks)


def _hook_failed(ctx, exc, what):
    text = "".join(traceback.format_exception_only(type(exc), exc)).rstrip("\n")
    tb = exc.__traceback__
    if tb is not None and tb.tb_frame.f_globals.get("__name__") == __name__:
        tb = tb.tb_next  # the trampoline's own frame says nothing
    tb = "".join(traceback.format_tb(tb))
    if tb:
        text += "\nTraceback (most recent call last):\n" + tb.rstrip("\n")
    _set_pending(exc, f"Python {what} raised {text}")
    if ctx is not None:
        ctx.set_error(L.NNM_E_HOOK, f"Python {what} raised {text}")
    return L.NNM_E_HOOK


def _as_tuple(r):
    if isinstance(r, Tensor):
        return (r,)
    if isinstance(r, (tuple, list)):
        return tuple(r)
    return (r,)


def _replace(ctx, arr, n, new, what, allow_none=False):
    """Stores new references in arr[0..n) for the tensors a hook returned."""
    new = _as_tuple(new)
    if len(new) != n:
        raise ShapeError(f"{what} returned {len(new)} tensor(s) where {n} are expected")
    for i, t in enumerate(new):
        if t is None:
            if not allow_none:
                raise InvalidError(f"{what} returned None at position {i}")
            arr[i] = None  # the runtime releases what was there
            continue
        t = _as_tensor(t, ctx)
        if t._h.value != arr[i]:
            # A new reference; the runtime releases the one replaced.
            L.nnm_tensor_retain(t._h)
            arr[i] = t._h.value


def _wrap_all(ctx, arr, n):
    return tuple(Tensor._borrow(ctx, arr[i]) if arr[i] else None for i in range(n))


@L.ForwardPreHookFn
def _pre_trampoline(user, m, ins, n_in):
    ctx = None
    try:
        fn, ctx, _ = _hooks[user]
        r = fn(Module._borrow(ctx, m), _wrap_all(ctx, ins, n_in))
        if r is not None:
            _replace(ctx, ins, n_in, r, "forward pre-hook")
        return 0
    except BaseException as e:  # noqa: B902 - never let anything cross the C frames
        return _hook_failed(ctx, e, "forward pre-hook")


@L.ForwardHookFn
def _fwd_trampoline(user, m, ins, n_in, outs, n_out):
    ctx = None
    failing = False
    try:
        fn, ctx, _ = _hooks[user]
        args = _wrap_all(ctx, ins, n_in)
        res = _wrap_all(ctx, outs, n_out)
        failing = any(o is None for o in res)  # an always_call hook after a failure
        r = fn(Module._borrow(ctx, m), args, res[0] if n_out == 1 else res)
        if r is not None and not failing:
            _replace(ctx, outs, n_out, r, "forward hook")
        return 0
    except BaseException as e:  # noqa: B902
        if failing:
            # libnnmod ignores this hook's status and keeps the first failure:
            # its exception must not become that failure's cause.
            if not isinstance(e, Exception):
                _set_pending(e, "")
            return L.NNM_E_HOOK
        return _hook_failed(ctx, e, "forward hook")


@L.BackwardPreHookFn
def _bw_pre_trampoline(user, m, gout, n_out):
    ctx = None
    try:
        fn, ctx, _ = _hooks[user]
        r = fn(Module._borrow(ctx, m), _wrap_all(ctx, gout, n_out))
        if r is not None:
            _replace(ctx, gout, n_out, r, "backward pre-hook", allow_none=True)
        return 0
    except BaseException as e:  # noqa: B902
        return _hook_failed(ctx, e, "backward pre-hook")


@L.BackwardHookFn
def _bw_trampoline(user, m, gin, n_in, gout, n_out):
    ctx = None
    try:
        fn, ctx, _ = _hooks[user]
        r = fn(Module._borrow(ctx, m), _wrap_all(ctx, gin, n_in), _wrap_all(ctx, gout, n_out))
        if r is not None:
            _replace(ctx, gin, n_in, r, "backward hook", allow_none=True)
        return 0
    except BaseException as e:  # noqa: B902
        return _hook_failed(ctx, e, "backward hook")


@L.HookUserFree
def _user_free(user):
    # libnnmod drops the hook (removed, its module destroyed, its context
    # freed): the closure goes with it.
    _hook_drop(user)


_TRAMPOLINES = {
    "forward_pre": (L.nnm_module_register_forward_pre_hook_v2, _pre_trampoline),
    "forward": (L.nnm_module_register_forward_hook_v2, _fwd_trampoline),
    "backward_pre": (L.nnm_module_register_full_backward_pre_hook_v2, _bw_pre_trampoline),
    "backward": (L.nnm_module_register_full_backward_hook_v2, _bw_trampoline),
    "global_forward_pre": (L.nnm_ctx_register_forward_pre_hook_v2, _pre_trampoline),
    "global_forward": (L.nnm_ctx_register_forward_hook_v2, _fwd_trampoline),
    "global_backward_pre": (L.nnm_ctx_register_full_backward_pre_hook, _bw_pre_trampoline),
    "global_backward": (L.nnm_ctx_register_full_backward_hook, _bw_trampoline),
}


class RemovableHandle:
    """What register_*_hook returns: .remove() unregisters the hook (safe to
    call twice, after the module died, and from inside any hook). Dropping
    the handle does not remove the hook, as in PyTorch. Also a context
    manager that removes the hook on exit."""

    __slots__ = ("_ctx", "_h", "__weakref__")

    def __init__(self, ctx, h):
        self._ctx, self._h = ctx, h

    def remove(self):
        if self._h:
            with self._ctx.lock:
                L.nnm_hook_handle_remove(self._h)  # NNM_E_STATE: already gone, harmless

    @property
    def live(self):
        """True while the hook is registered."""
        return bool(self._h) and bool(L.nnm_hook_handle_is_live(self._h))

    def __del__(self):
        h = self._h
        if h and not _exiting_flag():
            with self._ctx.lock:
                L.nnm_hook_handle_free(h)  # the handle only; the hook stays
            self._h = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


def _register(kind, ctx, target_h, fn, prepend=False, always_call=False):
    if not callable(fn):
        raise InvalidError(f"a hook must be callable, got {type(fn).__name__}")
    reg, tramp = _TRAMPOLINES[kind]
    flags = (L.NNM_HOOK_PREPEND if prepend else 0) | (L.NNM_HOOK_ALWAYS_CALL if always_call else 0)
    opts = L.HookOptions(ctypes.sizeof(L.HookOptions), flags, _user_free)
    key = _hook_add(fn, ctx, kind)
    h = c_void_p()
    with ctx.lock:
        st = reg(target_h, tramp, c_void_p(key), byref(opts), byref(h))
        if st:
            _hook_drop(key)  # user_free is not called for a failed registration
            raise ctx.error(st)
    return RemovableHandle(ctx, h)


def register_module_forward_pre_hook(hook, prepend=False, ctx=None):
    """A forward-pre-hook for every module of the context (global hooks run
    before the module's own): hook(module, args) -> None or new args."""
    ctx = ctx or default_context()
    return _register("global_forward_pre", ctx, ctx._h, hook, prepend)


def register_module_forward_hook(hook, prepend=False, always_call=False, ctx=None):
    """A forward hook for every module of the context:
    hook(module, args, output) -> None or a new output."""
    ctx = ctx or default_context()
    return _register("global_forward", ctx, ctx._h, hook, prepend, always_call)


def register_module_full_backward_pre_hook(hook, prepend=False, ctx=None):
    """A backward pre-hook for every module of the context:
    hook(module, grad_output) -> None or new output gradients."""
    ctx = ctx or default_context()
    return _register("global_backward_pre", ctx, ctx._h, hook, prepend)


def register_module_full_backward_hook(hook, prepend=False, ctx=None):
    """A full backward hook for every module of the context:
    hook(module, grad_input, grad_output) -> None or new input gradients."""
    ctx = ctx or default_context()
    return _register("global_backward", ctx, ctx._h, hook, prepend)


# ---- visitors ----------------------------------------------------------------

_visit = threading.local()


@L.ModuleVisitFn
def _collect(user, name, ptr):
    _visit.items.append((name, ptr))
    return 0


def _walk(fn, h):
    prev = getattr(_visit, "items", None)
    _visit.items = []
    try:
        st = fn(h, _collect, None)
        return st, [(_decode(n), p) for n, p in _visit.items]
    finally:
        _visit.items = prev


# ---- Module ------------------------------------------------------------------

class _Params:
    """What Module.parameters() returns: a one-shot iterator over the
    parameters, as PyTorch's generator, that also tells an optimizer which
    module they belong to."""

    def __init__(self, module, items):
        self._module = module
        self._it = iter(items)

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._it)


_MAX_IO = 16   # NNM_MAX_IO: outputs of one call


class Module:
    """A module of an nnmod tree (a layer or a container).

    Call it like a PyTorch module: ``y = model(x)``. Inputs are nnmod Tensors
    or anything nnmod.tensor() takes (NumPy arrays). A module with one output
    returns a Tensor, with several a tuple; one whose outputs have names (a
    graph with "output_names", as torchvision's segmentation models return
    {"out": ...}) returns a dict of them, in output order. Children are attributes
    (``model.fc1``) and items (``model[0]``, ``model["fc1"]``).
    """

    __slots__ = ("_h", "_ctx", "_n_out", "_out_names", "__weakref__")

    def __init__(self, *args, **kwargs):
        raise TypeError("make modules with nnmod.from_manifest(path) or nnmod.create(type, ...)")

    @classmethod
    def _own(cls, ctx, h):
        m = object.__new__(cls)
        m._h = h
        m._ctx = ctx
        m._n_out = None
        m._out_names = None
        return m

    @classmethod
    def _borrow(cls, ctx, ptr):
        L.nnm_module_retain(ptr)
        return cls._own(ctx, c_void_p(ptr))

    def __del__(self):
        h = self._h
        if h and not _exiting_flag():
            with self._ctx.lock:
                L.nnm_module_release(h)
            self._h = None

    def __eq__(self, other):
        return isinstance(other, Module) and other._h.value == self._h.value

    def __hash__(self):
        return hash(self._h.value)

    # ---- the call ----

    def _outputs(self):
        """How many outputs a call asks for: the layer's declared count; for a
        layer of any count (a graph), the length of its "outputs" config, or 1."""
        vt = POINTER(L.LayerVtableHead)()
        ctx = self._ctx
        with ctx.lock:
            st = L.nnm_layer_find(ctx._h, L.nnm_module_type(self._h), byref(vt))
            n = vt.contents.n_outputs if not st else L.NNM_ARITY_ANY
            if n == L.NNM_ARITY_ANY:
                v, cnt = POINTER(c_char_p)(), c_size_t()
                cfg = L.nnm_module_config(self._h)
                n = cnt.value if not L.nnm_config_get_strs(cfg, b"outputs", byref(v), byref(cnt)) \
                    else 1
        self._n_out = n
        # a model that returns a dict (a graph with "output_names")
        cnt = c_uint32()
        with ctx.lock:
            names = L.nnm_module_output_names(self._h, byref(cnt))
            self._out_names = tuple(_decode(names[i]) for i in range(cnt.value)) \
                if names and cnt.value == n else None
        return n

    @property
    def n_outputs(self):
        """How many outputs a call returns: the layer's declared count; for a
        layer of any count, a graph's number of `outputs`, else 1 (nn.LSTM's
        twin `lstm` returns its output only). Set it to ask for more: after
        ``m.n_outputs = 3`` an `lstm` returns (output, h_n, c_n) as a tuple,
        like a graph node reading `lstm:2` (a layer of a fixed count refuses
        another at the call). ``m(x, n_outputs=3)`` asks for one call."""
        return self._n_out or self._outputs()

    @n_outputs.setter
    def n_outputs(self, n):
        n = self._check_n_outputs(n)
        self._outputs()                  # the output names, where the model has them
        if self._out_names is not None and len(self._out_names) != n:
            self._out_names = None
        self._n_out = n

    @staticmethod
    def _check_n_outputs(n):
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= _MAX_IO:
            raise ValueError(f"n_outputs must be an integer from 1 to {_MAX_IO}, "
                             f"not {n!r}")
        return n

    def __call__(self, *inputs, n_outputs=None):
        ctx = self._ctx
        n_out = self._n_out or self._outputs()
        out_names = self._out_names
        if n_outputs is not None and n_outputs != n_out:
            n_out = self._check_n_outputs(n_outputs)
            if out_names is not None and len(out_names) != n_out:
                out_names = None     # names hold for the count they were declared for
        n_in = len(inputs)
        if n_in == 1:
            x = inputs[0]
            if type(x) is not Tensor:
                x = _as_tensor(x, ctx)
            arg = byref(x._h)
        else:
            ts = [x if type(x) is Tensor else _as_tensor(x, ctx) for x in inputs]
            arg = (c_void_p * max(n_in, 1))(*[t._h.value for t in ts])
        if n_out == 1:
            out = c_void_p()
            with ctx.lock:
                st = L.nnm_module_call(self._h, arg, n_in, byref(out), 1)
                if st:
                    ctx.raise_pending_base()
                    raise ctx.error(st)
            t = Tensor._own(ctx, out)
            return {out_names[0]: t} if out_names else t
        outs = (c_void_p * n_out)()
        with ctx.lock:
            st = L.nnm_module_call(self._h, arg, n_in, outs, n_out)
            if st:
                ctx.raise_pending_base()
                raise ctx.error(st)
        ts = tuple(Tensor._own(ctx, c_void_p(outs[i])) for i in range(n_out))
        return dict(zip(out_names, ts)) if out_names else ts

    # ---- structure ----

    @property
    def layer_type(self):
        """The layer type ("linear", "sequential")."""
        return _decode(L.nnm_module_type(self._h))

    @property
    def name(self):
        """The module's name in its parent ("" for a root)."""
        return _decode(L.nnm_module_name(self._h))

    @property
    def path(self):
        """The dotted path from the root ("layers.3.fc1"; "" for a root)."""
        n = L.nnm_module_path(self._h, None, 0)
        buf = create_string_buffer(n + 1)
        L.nnm_module_path(self._h, buf, n + 1)
        return _decode(buf.value)

    @property
    def parent(self):
        p = L.nnm_module_parent(self._h)
        return Module._borrow(self._ctx, p) if p else None

    @property
    def context(self):
        return self._ctx

    def named_children(self):
        """(name, child) for each direct child, in order; a child attached
        under two names (model.b = model.a) comes once, under its first
        name here, as PyTorch's named_children."""
        slot_name = getattr(L, "nnm_module_child_name", None)
        with self._ctx.lock:
            n = L.nnm_module_child_count(self._h)
            res, seen = [], set()
            for i in range(n):
                k = L.nnm_module_child(self._h, i)
                if k in seen:
                    continue
                seen.add(k)
                name = slot_name(self._h, i) if slot_name is not None else L.nnm_module_name(k)
                res.append((_decode(name), Module._borrow(self._ctx, k)))
            return res

    def children(self):
        return [m for _, m in self.named_children()]

    def __len__(self):
        return L.nnm_module_child_count(self._h)

    def __iter__(self):
        # every slot, as iterating a Sequential or ModuleList (a shared
        # child comes once per slot, unlike children())
        return iter([self[i] for i in range(len(self))])

    def get_submodule(self, target):
        """The descendant at a dotted path ("layers.3"); "" is self."""
        if target == "":
            return self
        with self._ctx.lock:
            p = L.nnm_module_get(self._h, target.encode())
            if not p:
                raise NotFoundError(f"{self.layer_type} has no submodule '{target}'")
            return Module._borrow(self._ctx, p)

    def __getitem__(self, key):
        if isinstance(key, int):
            n = len(self)
            if key < 0:
                key += n
            if not 0 <= key < n:
                raise IndexError(f"index {key} out of range for {n} children")
            with self._ctx.lock:
                return Module._borrow(self._ctx, L.nnm_module_child(self._h, key))
        try:
            return self.get_submodule(str(key))
        except NotFoundError:
            raise KeyError(key) from None

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        h = object.__getattribute__(self, "_h")
        p = L.nnm_module_get(h, name.encode())
        if p:
            return Module._borrow(self._ctx, p)
        for n, t in self._own_tensors():  # model.fc1.weight
            if n == name:
                return t
        raise AttributeError(f"'{self.layer_type}' module has no child, parameter or buffer "
                             f"'{name}'")

    def _own_tensors(self):
        return [(n, t) for fn in (L.nnm_module_named_parameters, L.nnm_module_named_buffers)
                for n, t in self._named_tensors(fn, "") if "." not in n]

    def __dir__(self):
        return sorted(set(super().__dir__()) | {n for n, _ in self.named_children()}
                      | {n for n, _ in self._own_tensors()})

    def named_modules(self, prefix=""):
        """(name, module) for this module ("") and every descendant, pre-order."""
        with self._ctx.lock:
            st, items = _walk(L.nnm_module_named_modules, self._h)
            self._ctx.check(st)
            return [((prefix + "." + n if n else prefix) if prefix else n,
                     Module._borrow(self._ctx, p)) for n, p in items]

    def modules(self):
        return [m for _, m in self.named_modules()]

    def _named_tensors(self, fn, prefix):
        with self._ctx.lock:
            st, items = _walk(fn, self._h)
            self._ctx.check(st)
            res = []
            for n, p in items:
                t = Tensor._borrow(self._ctx, p)
                t._origin = (self, n)
                res.append((prefix + "." + n if prefix else n, t))
            return res

    def named_parameters(self, prefix="", recurse=True):
        """(name, parameter) pairs, as PyTorch names them ("fc1.weight").
        The tensors are the parameters themselves (writes change the model)."""
        items = self._named_tensors(L.nnm_module_named_parameters, prefix)
        return iter(items if recurse else [(n, t) for n, t in items
                                           if "." not in n[len(prefix) + 1 if prefix else 0:]])

    def parameters(self, recurse=True):
        return _Params(self, [t for _, t in self.named_parameters(recurse=recurse)])

    def named_buffers(self, prefix="", recurse=True):
        items = self._named_tensors(L.nnm_module_named_buffers, prefix)
        return iter(items if recurse else [(n, t) for n, t in items
                                           if "." not in n[len(prefix) + 1 if prefix else 0:]])

    def buffers(self, recurse=True):
        return iter([t for _, t in self.named_buffers(recurse=recurse)])

    def num_parameters(self):
        return L.nnm_module_num_params(self._h)

    def __repr__(self):
        with self._ctx.lock:
            n = L.nnm_module_repr(self._h, None, 0)
            buf = create_string_buffer(int(n) + 1)
            L.nnm_module_repr(self._h, buf, int(n) + 1)
        return _decode(buf.value).rstrip("\n")

    # ---- modes and devices ----

    @property
    def training(self):
        return bool(L.nnm_module_is_training(self._h))

    def train(self, mode=True):
        with self._ctx.lock:
            self._ctx.check(L.nnm_module_train(self._h, 1 if mode else 0))
        return self

    def eval(self):
        return self.train(False)

    def to(self, device):
        d = _device(device)
        with self._ctx.lock:
            self._ctx.check(L.nnm_module_to(self._h, L.Device(d.type_code, d.index)))
        return self

    def cpu(self):
        return self.to("cpu")

    def cuda(self, index=0):
        return self.to(f"cuda:{index}")

    @property
    def device(self):
        from ._tensor import Device
        d = L.nnm_module_device(self._h)
        return Device(d.type, d.id)

    def zero_grad(self, set_to_none=True):
        """Resets every parameter's .grad. set_to_none=True (PyTorch 2.x's
        default, and nnmod's) sets them to None; set_to_none=False (PyTorch
        1.13's default) fills each existing .grad with zeros in place, so an
        optimizer step still updates those parameters (weight decay,
        momentum), as in PyTorch."""
        if set_to_none:
            with self._ctx.lock:
                self._ctx.check(L.nnm_module_zero_grad(self._h))
        else:
            _zero_fill_grads(self._ctx, self.parameters())

    def apply(self, fn):
        """Calls fn(module) on every child (recursively, children first)
        then on this module, and returns this module (Module.apply)."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    # ---- hooks ----

    def register_forward_pre_hook(self, hook, *, prepend=False):
        """hook(module, args) -> None, or new inputs (a Tensor or a tuple)."""
        return _register("forward_pre", self._ctx, self._h, hook, prepend)

    def register_forward_hook(self, hook, *, prepend=False, always_call=False):
        """hook(module, args, output) -> None, or a new output (a tuple for a
        module of several outputs). always_call: also run when the call fails
        (output then None for what forward did not produce)."""
        return _register("forward", self._ctx, self._h, hook, prepend, always_call)

    def register_full_backward_pre_hook(self, hook, *, prepend=False):
        """hook(module, grad_output) -> None, or new output gradients."""
        return _register("backward_pre", self._ctx, self._h, hook, prepend)

    def register_full_backward_hook(self, hook, *, prepend=False):
        """hook(module, grad_input, grad_output) -> None, or new input
        gradients (a tuple). grad_input is all None when no input needs a
        gradient, else zeros for an input that needs none, as PyTorch."""
        return _register("backward", self._ctx, self._h, hook, prepend)

    # ---- state ----

    def state_dict(self, prefix=""):
        """An OrderedDict of every parameter and persistent buffer, under
        PyTorch's keys, as tensors that share the module's memory and carry no
        autograd (PyTorch's are detached the same way). A shared module or a
        tied parameter appears under each of its names."""
        ctx = self._ctx
        sd = c_void_p()
        d = collections.OrderedDict()
        with ctx.lock:
            ctx.check(L.nnm_module_state_dict(self._h, byref(sd)))
            try:
                for i in range(L.nnm_state_dict_count(sd)):
                    name, t = c_char_p(), c_void_p()
                    ctx.check(L.nnm_state_dict_entry(sd, i, byref(name), byref(t)))
                    d[prefix + _decode(name.value)] = Tensor._borrow(ctx, t.value)
            finally:
                L.nnm_state_dict_free(sd)
        return d

    def load_state_dict(self, state_dict, strict=True):
        """Copies values (nnmod or PyTorch tensors, NumPy arrays) into the
        parameters and persistent buffers of the same names, on the module's
        device. A shape that does not fit fails (ShapeError) strict or not;
        with strict, a missing or unexpected key fails (NotFoundError); either
        way nothing changes on failure. Returns (missing_keys,
        unexpected_keys)."""
        ctx = self._ctx
        keep = []
        sd = c_void_p()
        rep = POINTER(L.LoadReport)()
        with ctx.lock:
            ctx.check(L.nnm_state_dict_new(ctx._h, byref(sd)))
            try:
                for k, v in state_dict.items():
                    t = v if isinstance(v, Tensor) and v._ctx is ctx else \
                        _as_tensor(_to_numpy(v), ctx)
                    keep.append(t)
                    ctx.check(L.nnm_state_dict_set(sd, str(k).encode(), t._h))
                st = L.nnm_module_load_state_dict(self._h, sd, 1 if strict else 0, byref(rep))
                if st:
                    err = as_runtime_error(ctx.error(st))  # PyTorch raises RuntimeError
                    if rep:
                        r = rep.contents
                        err.missing_keys = [_decode(r.missing[i]) for i in range(r.n_missing)]
                        err.unexpected_keys = [_decode(r.unexpected[i])
                                               for i in range(r.n_unexpected)]
                        err.mismatched = [_decode(r.mismatched[i]) for i in range(r.n_mismatched)]
                    raise err
                r = rep.contents if rep else None
                return IncompatibleKeys(
                    [_decode(r.missing[i]) for i in range(r.n_missing)] if r else [],
                    [_decode(r.unexpected[i]) for i in range(r.n_unexpected)] if r else [])
            finally:
                L.nnm_load_report_free(rep)
                L.nnm_state_dict_free(sd)

    def requires_grad_(self, requires_grad=True):
        """Sets requires_grad on every parameter of the tree (freezing)."""
        with self._ctx.lock:
            self._ctx.check(L.nnm_module_requires_grad_(self._h, 1 if requires_grad else 0))
        return self

    def __setattr__(self, name, value):
        if name in Module.__slots__ or name == "n_outputs":
            return object.__setattr__(self, name, value)
        if isinstance(value, Module):  # model.fc1 = other (replaces, or adds, the child)
            if value._ctx is not self._ctx:
                raise InvalidError("the module belongs to another context")
            with self._ctx.lock:
                self._ctx.check(L.nnm_module_set_child(self._h, name.encode(), value._h))
            return None
        if isinstance(value, Tensor):  # dec.weight = enc.weight (ties the parameter)
            with self._ctx.lock:
                self._ctx.check(L.nnm_module_set_parameter(self._h, name.encode(), value._h))
            return None
        raise AttributeError(f"cannot set '{name}' on an nnmod module (assign a Module to "
                             "replace a child, a parameter Tensor to tie one)")

    def __delattr__(self, name):
        with self._ctx.lock:
            self._ctx.check(L.nnm_module_del_child(self._h, name.encode()))

    def save(self, path, metadata=None):
        """Writes the state dict to a safetensors file, atomically."""
        meta = _kv_array(metadata)
        with self._ctx.lock:
            self._ctx.check(L.nnm_module_save(self._h, os.fsencode(path), len(metadata or {}),
                                              meta))

    def load(self, path, strict=True):
        """Loads a safetensors state dict file (PyTorch's keys). Not strict:
        the matching keys load and the rest are returned."""
        rep = POINTER(L.LoadReport)()
        try:
            with self._ctx.lock:
                st = L.nnm_module_load(self._h, os.fsencode(path), 1 if strict else 0, byref(rep))
                if st:
                    # the report of a refused load says why (as load_state_dict's)
                    err = as_runtime_error(self._ctx.error(st))
                    if rep:
                        r = rep.contents
                        err.missing_keys = [_decode(r.missing[i]) for i in range(r.n_missing)]
                        err.unexpected_keys = [_decode(r.unexpected[i])
                                               for i in range(r.n_unexpected)]
                        err.mismatched = [_decode(r.mismatched[i]) for i in range(r.n_mismatched)]
                    raise err
            if not rep:
                return IncompatibleKeys([], [])
            r = rep.contents
            return IncompatibleKeys([_decode(r.missing[i]) for i in range(r.n_missing)],
                                    [_decode(r.unexpected[i]) for i in range(r.n_unexpected)])
        finally:
            L.nnm_load_report_free(rep)

    def to_manifest(self, path):
        """Writes a manifest (.json: JSON, else msgpack) that rebuilds this tree."""
        mf = c_void_p()
        with self._ctx.lock:
            self._ctx.check(L.nnm_manifest_from_module(self._h, byref(mf)))
            try:
                self._ctx.check(L.nnm_manifest_save(mf, os.fsencode(path), L.NNM_MANIFEST_AUTO))
            finally:
                L.nnm_manifest_free(mf)


def _zero_fill_grads(ctx, params):
    """zero_grad(set_to_none=False): each parameter's existing .grad becomes
    zeros (in place on the CPU, where the next backward then accumulates
    into the same tensor); parameters without a .grad keep none."""
    for p in params:
        g = p.grad
        if g is None:
            continue
        dev = g.device
        if dev.type_code == L.NNM_DEVICE_CPU and g.dtype.numpy is not None:
            g.numpy()[...] = 0
            continue
        z = _as_tensor(np.zeros(g.shape, np.float32), ctx)
        out = c_void_p()
        with ctx.lock:
            ctx.check(L.nnm_tensor_to(z._h, L.Device(dev.type_code, dev.index), byref(out)))
        p.grad = Tensor._own(ctx, out)


def _to_numpy(v):
    if isinstance(v, Tensor):
        return v.cpu().numpy()
    if isinstance(v, np.ndarray):
        return v
    if hasattr(v, "detach") and hasattr(v, "numpy"):  # a PyTorch tensor
        return v.detach().cpu().numpy()
    return np.asarray(v)


def _kv_array(d):
    if not d:
        return None
    arr = (L.KV * len(d))()
    for i, (k, v) in enumerate(d.items()):
        arr[i].key = str(k).encode()
        arr[i].value = str(v).encode()
    return arr


def from_manifest(path, weights=None, ctx=None, strict=True):
    """Builds the module tree a manifest (msgpack or JSON) describes.

    weights: None loads the weights the manifest names (if any); a path loads
    that safetensors file instead; a dict loads a state dict.
    """
    ctx = ctx or default_context()
    mf = c_void_p()
    root = c_void_p()
    with ctx.lock:
        ctx.check(L.nnm_manifest_load(ctx._h, os.fsencode(path), L.NNM_MANIFEST_AUTO, None,
                                      byref(mf)))
        try:
            st = L.nnm_manifest_build(mf, L.NNM_BUILD_NO_WEIGHTS if weights is not None else 0,
                                      byref(root))
            if st:
                raise ctx.error(st)
        finally:
            L.nnm_manifest_free(mf)
    m = Module._own(ctx, root)
    if isinstance(weights, (str, bytes, os.PathLike)):
        m.load(weights, strict=strict)
    elif weights is not None:
        m.load_state_dict(weights, strict=strict)
    return m



def _config(ctx, cfg_h, values):
    for k, v in values.items():
        key = str(k).encode()
        if isinstance(v, bool):
            st = L.nnm_config_set_bool(cfg_h, key, 1 if v else 0)
        elif isinstance(v, int):
            st = L.nnm_config_set_int(cfg_h, key, v)
        elif isinstance(v, float):
            st = L.nnm_config_set_float(cfg_h, key, v)
        elif isinstance(v, str):
            st = L.nnm_config_set_str(cfg_h, key, v.encode())
        elif isinstance(v, (list, tuple)):
            if all(isinstance(e, str) for e in v) and v:
                st = L.nnm_config_set_strs(cfg_h, key, (c_char_p * len(v))(*[e.encode() for e in v]),
                                           len(v))
            elif all(isinstance(e, int) and not isinstance(e, bool) for e in v):
                st = L.nnm_config_set_ints(cfg_h, key, (c_int64 * max(len(v), 1))(*v), len(v))
            elif all(isinstance(e, (int, float)) and not isinstance(e, bool) for e in v):
                st = L.nnm_config_set_floats(cfg_h, key, (c_double * len(v))(*v), len(v))
            else:
                raise InvalidError(f"config '{k}': a list of ints, floats or strings, got {v!r}")
        else:
            raise InvalidError(f"config '{k}': unsupported value {v!r}")
        if st:
            raise InvalidError(f"config '{k}': nnm_config_set failed ({st})")


def create(layer, children=None, ctx=None, **config):
    """A new module of the layer named `layer` ("linear", "linear@^1.0"),
    with config keys as keyword arguments:

        fc = nnmod.create("linear", in_features=4, out_features=8)
        net = nnmod.create("sequential", children=[fc, nnmod.create("relu")])

    children: modules (or (name, module) pairs) to attach, then the tree is
    finalized (containers check their children, as for a manifest).
    """
    ctx = ctx or default_context()
    cfg = c_void_p()
    out = c_void_p()
    with ctx.lock:
        ctx.check(L.nnm_config_new(byref(cfg)))
        try:
            _config(ctx, cfg, config)
            ctx.check(L.nnm_module_create(ctx._h, layer.encode(), cfg, byref(out)))
        finally:
            L.nnm_config_free(cfg)
    m = Module._own(ctx, out)
    if children:
        for c in children:
            name, child = c if isinstance(c, tuple) else (None, c)
            m.add_module(name, child)
        m.finalize()
    return m


def _add_module(self, name, child):
    """Attaches child under name (None: its index), like add_module; as in
    PyTorch, a name that is already a child's replaces that child in its
    place, and a child that already has a parent is shared."""
    if child._ctx is not self._ctx:
        raise InvalidError("add_module: the child belongs to another context")
    with self._ctx.lock:
        if name and (child.parent is not None or
                     any(n == name for n, _ in self.named_children())):
            self._ctx.check(L.nnm_module_set_child(self._h, name.encode(), child._h))
        else:
            self._ctx.check(L.nnm_module_add_child(self._h, name.encode() if name else None,
                                                   child._h))
    return child


def _finalize(self):
    """Lets containers check their children (after add_module calls)."""
    with self._ctx.lock:
        self._ctx.check(L.nnm_module_finalize(self._h))
    return self


Module.add_module = _add_module
Module.finalize = _finalize
