"""nnmod.optim: SGD, Adam and AdamW over libnnmod's optimizers.

libnnmod's optimizers run over the parameters of one module tree, so an
optimizer is given ``model.parameters()`` (or the parameters of a submodule,
``model.fc1.parameters()``), a list of all of them, or the module itself.
Parameter groups are supported as PyTorch writes them, as long as each group
is the parameters of a submodule of the first group's module:
``[{"params": model.parameters()}, {"params": model.head.parameters(), "lr": 0.1}]``
(libnnmod moves a submodule's parameters into a group of their own).
"""
from ctypes import byref, c_uint32, c_void_p, sizeof

from . import _lib as L
from ._context import _exiting_flag
from ._errors import InvalidError
from ._module import Module, _Params, _zero_fill_grads

__all__ = ["Optimizer", "SGD", "Adam", "AdamW"]


def _module_of(params):
    if isinstance(params, Module):
        return params
    if isinstance(params, _Params):
        return params._module
    params = list(params)
    if not params:
        raise InvalidError("optimizer got an empty parameter list")
    origins = [getattr(p, "_origin", None) for p in params]
    if any(o is None for o in origins) or len({o[0]._h.value for o in origins}) != 1:
        raise InvalidError("nnmod optimizers take the parameters of one module: pass "
                           "model.parameters() (or a list of all of them)")
    m = origins[0][0]
    have = {p._h.value for p in params}
    want = {t._h.value for _, t in m.named_parameters()}
    if have != want:
        raise InvalidError("nnmod optimizers cover all the parameters of a module; this list "
                           f"holds {len(have)} of its {len(want)}")
    return m


class _Group(dict):
    """One parameter group; setting group["lr"] changes the optimizer's lr."""

    def __init__(self, opt, index, values):
        super().__init__(values)
        self._opt, self._index = opt, index

    def __setitem__(self, key, value):
        if key == "lr":
            with self._opt._ctx.lock:
                self._opt._ctx.check(L.nnm_optim_set_lr(self._opt._h, self._index, float(value)))
        super().__setitem__(key, value)


class Optimizer:
    """Base of the optimizers: step(), zero_grad(), param_groups."""

    def __init__(self, params, defaults):
        if isinstance(params, (list, tuple)) and params and isinstance(params[0], dict):
            groups = list(params)
        else:
            groups = [{"params": params}]
        self._root = _module_of(groups[0]["params"])
        self._ctx = self._root._ctx
        self._h = None
        self.defaults = dict(defaults)
        self._create(self._root, {**self.defaults, **{k: v for k, v in groups[0].items()
                                                      if k != "params"}})
        self.param_groups = [_Group(self, 0, {**self.defaults, **groups[0], "params": None})]
        for g in groups[1:]:
            sub = _module_of(g["params"])
            root_path, sub_path = self._root.path, sub.path
            if sub == self._root or not (root_path == "" or sub_path.startswith(root_path + ".")) \
                    or sub.context is not self._ctx:
                raise InvalidError("each further parameter group must be the parameters of a "
                                   "submodule of the first group's module")
            rel = sub_path[len(root_path) + 1:] if root_path else sub_path
            vals = {**self.defaults, **g}
            idx = c_uint32()
            with self._ctx.lock:
                self._ctx.check(L.nnm_optim_add_group(self._h, (rel + ".").encode(),
                                                      float(vals["lr"]),
                                                      float(vals.get("weight_decay", 0.0)),
                                                      byref(idx)))
            self.param_groups.append(_Group(self, idx.value, {**vals, "params": None}))

    def __del__(self):
        h = getattr(self, "_h", None)
        if h:
            if not _exiting_flag():
                with self._ctx.lock:
                    L.nnm_optim_free(h)
            self._h = None

    def step(self):
        """One update of every parameter that has a .grad."""
        with self._ctx.lock:
            self._ctx.check(L.nnm_optim_step(self._h))

    def zero_grad(self, set_to_none=True):
        """Sets every parameter's .grad to None (PyTorch 2.x's default);
        set_to_none=False (PyTorch 1.13's default) fills the existing ones
        with zeros instead, so the next step still applies weight decay and
        momentum to parameters that got no new gradient."""
        if set_to_none:
            with self._ctx.lock:
                self._ctx.check(L.nnm_optim_zero_grad(self._h))
        else:
            _zero_fill_grads(self._ctx, self._root.parameters())


class SGD(Optimizer):
    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    def _create(self, m, o):
        opts = L.SGDOptions(sizeof(L.SGDOptions), 1 if o["nesterov"] else 0, float(o["lr"]),
                            float(o["momentum"]), float(o["dampening"]), float(o["weight_decay"]))
        h = c_void_p()
        with self._ctx.lock:
            self._ctx.check(L.nnm_optim_sgd_new(m._h, byref(opts), byref(h)))
        self._h = h


class Adam(Optimizer):
    _decoupled = 0

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay, amsgrad=amsgrad))

    def _create(self, m, o):
        b1, b2 = o["betas"]
        opts = L.AdamOptions(sizeof(L.AdamOptions), 1 if o["amsgrad"] else 0, self._decoupled, 0,
                             float(o["lr"]), float(b1), float(b2), float(o["eps"]),
                             float(o["weight_decay"]))
        h = c_void_p()
        with self._ctx.lock:
            self._ctx.check(L.nnm_optim_adam_new(m._h, byref(opts), byref(h)))
        self._h = h


class AdamW(Adam):
    _decoupled = 1

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad)
