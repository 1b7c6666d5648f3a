"""Grad mode: per thread in libnnmod, as in PyTorch.

nnm_grad_set_enabled changes the mode of the calling OS thread only. A Python
thread is one OS thread, so ``with nnmod.no_grad():`` affects exactly the
thread that entered it, like torch.no_grad(); other threads keep their mode.
"""
import functools

from . import _lib as L


def is_grad_enabled():
    return bool(L.nnm_grad_is_enabled())


class set_grad_enabled:
    """Sets grad mode for this thread; as a context manager or decorator,
    restores the previous mode on exit."""

    def __init__(self, mode):
        self.prev = bool(L.nnm_grad_set_enabled(1 if mode else 0))
        self.mode = bool(mode)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        L.nnm_grad_set_enabled(1 if self.prev else 0)
        return False


class _GradMode:
    mode = None

    def __enter__(self):
        self.prev = bool(L.nnm_grad_set_enabled(1 if self.mode else 0))
        return self

    def __exit__(self, *exc):
        L.nnm_grad_set_enabled(1 if self.prev else 0)
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*a, **k):
            with type(self)():
                return fn(*a, **k)
        return wrapper


class no_grad(_GradMode):
    """Context manager (and decorator): no autograd recording in this thread."""

    mode = False


class enable_grad(_GradMode):
    """Context manager (and decorator): autograd recording on in this thread."""

    mode = True
