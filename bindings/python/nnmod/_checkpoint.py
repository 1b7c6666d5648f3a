"""Training checkpoints: a module's state dict, an optimizer's state and
hyper-parameters, and user metadata in one safetensors file (the C API's
nnm_checkpoint_save / nnm_checkpoint_load; the file `nnm train` writes)."""
import os

from . import _lib as L
from ._module import Module, _kv_array
from ._errors import InvalidError


def _check_pair(module, optimizer):
    if not isinstance(module, Module):
        raise InvalidError("module must be an nnmod.Module")
    if optimizer is not None:
        if getattr(optimizer, "_h", None) is None:
            raise InvalidError("optimizer must be an nnmod.optim optimizer")
        if optimizer._ctx is not module._ctx:
            raise InvalidError("the optimizer and the module belong to different contexts")


def save_checkpoint(path, module, optimizer=None, metadata=None):
    """Writes module's state dict, optimizer's state (None: none) and the
    {str: str} metadata (keys may not start with "nnmod") to path,
    atomically. The optimizer's parameters must all be in module."""
    _check_pair(module, optimizer)
    meta = _kv_array(metadata)
    ctx = module._ctx
    with ctx.lock:
        ctx.check(L.nnm_checkpoint_save(os.fsencode(path), module._h,
                                        optimizer._h if optimizer is not None else None,
                                        None, len(metadata or {}), meta))


def load_checkpoint(path, module, optimizer=None):
    """Restores what save_checkpoint (or `nnm train`) wrote, so training
    resumes exactly: strict on the module's keys; the optimizer (None: the
    weights alone) must be of the same kind over the same parameters and
    groups, and takes the file's hyper-parameters (each group's lr included),
    step counts and state. Nothing changes on failure."""
    _check_pair(module, optimizer)
    ctx = module._ctx
    with ctx.lock:
        ctx.check(L.nnm_checkpoint_load(os.fsencode(path), module._h,
                                        optimizer._h if optimizer is not None else None))
        if optimizer is not None:  # the groups' lr came from the file
            for g in optimizer.param_groups:
                dict.__setitem__(g, "lr", L.nnm_optim_get_lr(optimizer._h, g._index))
