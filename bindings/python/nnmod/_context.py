"""Contexts, the per-context lock, and turning statuses into exceptions.

A libnnmod context, and everything made from it, may be used by one thread at
a time (abi/nnmod/nnmod.h). ctypes releases the GIL around every C call, so
the binding keeps that promise itself: every call that touches a context's
objects runs under the context's re-entrant lock. Re-entrant, because a Python
hook runs inside a module call on the same thread and may call nnmod again.
Objects of different contexts never share a lock, so two threads with two
contexts run in parallel.
"""
import atexit
import threading
from ctypes import byref, c_uint16, c_void_p, sizeof

from . import _lib as L
from ._errors import error_for

# Set at interpreter exit: releases after that are skipped (the process is
# going away, and ctypes callbacks must not run during teardown).
_exiting = False


def _at_exit():
    global _exiting
    _exiting = True


atexit.register(_at_exit)


def _exiting_flag():
    return _exiting

# A Python hook's exception, per thread, kept until the failed call that ran
# the hook raises (then it becomes that error's __cause__).
_pending = threading.local()


def _set_pending(exc, text):
    _pending.value = (exc, text)


def _take_pending():
    p = getattr(_pending, "value", None)
    _pending.value = None
    return p


def _decode(b):
    return b.decode("utf-8", "replace") if b else ""


def status_name(status):
    return _decode(L.nnm_status_name(status))


class Context:
    """An nnmod context: the loaded plugins, the allocator, the error message.

    Most programs never make one: every function takes ``ctx=None`` meaning
    the process-wide default context (nnmod.default_context()). Make your own
    for a second independent set of plugins, another seed, or to run two
    threads in parallel (one context each).

    seed: the parameter-initialisation seed (0: nnmod's default);
    discover: scan the default plugin paths (NNM_PLUGIN_PATH, beside libnnmod,
    the installed plugin directory); plugins: extra .so files or directories
    to load.
    """

    def __init__(self, seed=0, discover=True, plugins=()):
        opts = L.CtxOptions(sizeof(L.CtxOptions), 0 if discover else 1, seed)
        out = c_void_p()
        st = L.nnm_ctx_new(byref(opts), byref(out))
        if st:
            raise error_for(st, "nnm_ctx_new failed: " + _decode(L.nnm_status_str(st)))
        self._h = out
        self.lock = threading.RLock()
        for p in plugins:
            self.load_plugin(p)

    def __del__(self):
        h = getattr(self, "_h", None)
        if h is not None and h.value and not _exiting:
            L.nnm_ctx_free(h)
            self._h = None

    # ---- errors ----

    def message(self):
        return _decode(L.nnm_ctx_errmsg(self._h))

    def error(self, status):
        """The exception for a failed call on this context (call under the lock,
        right after the call, before anything else can overwrite the message)."""
        msg = self.message()
        pending = _take_pending()
        if pending is None:
            return error_for(status, msg, status_name(status))
        exc, text = pending
        # The C message holds at most 1 KiB: put the full traceback back.
        head = text[:40]
        i = msg.find(head) if head else -1
        if i >= 0:
            msg = msg[:i] + text
        else:
            msg = f"{msg}\n{text}"
        err = error_for(status, msg, status_name(status))
        err.__cause__ = exc
        return err

    def check(self, status):
        if status:
            raise self.error(status)

    def raise_pending_base(self):
        """KeyboardInterrupt and SystemExit in a hook propagate as themselves."""
        p = getattr(_pending, "value", None)
        if p is not None and not isinstance(p[0], Exception):
            _pending.value = None
            raise p[0]

    # ---- plugins ----

    def load_plugin(self, path):
        """Loads one plugin file, or every *.so of a directory."""
        import os
        with self.lock:
            if os.path.isdir(path):
                self.check(L.nnm_plugin_load_dir(self._h, os.fsencode(path), None))
            else:
                self.check(L.nnm_plugin_load(self._h, os.fsencode(path)))

    def plugins(self):
        """Every plugin record (loaded or failed) as dicts: path, name, status,
        error, abi, n_layers, n_backends, and layers: one dict per layer with
        name, domain, qualified_name ("acme.gelu"), version (a tuple) and
        plain (True when the plain name reaches it; docs/abi.md, Names)."""
        res = []
        with self.lock:
            for i in range(L.nnm_plugin_count(self._h)):
                info = L.PluginInfo(sizeof(L.PluginInfo))
                self.check(L.nnm_plugin_info_get(self._h, i, byref(info)))
                layers = []
                has_layer_info = getattr(L, "nnm_plugin_layer_info", None) is not None
                for j in range(info.n_layers if info.status == 0 and has_layer_info else 0):
                    li = L.LayerInfo(sizeof(L.LayerInfo))
                    if L.nnm_plugin_layer_info(self._h, i, j, byref(li)) != 0:
                        continue
                    layers.append({"name": _decode(li.name), "domain": _decode(li.domain),
                                   "qualified_name": _decode(li.qualified_name),
                                   "version": (li.version_major, li.version_minor,
                                               li.version_patch),
                                   "plain": bool(li.flags & 2)})
                res.append({"path": _decode(info.path), "name": _decode(info.name),
                            "status": info.status, "error": _decode(info.error),
                            "abi": (info.abi_major, info.abi_minor),
                            "n_layers": info.n_layers, "n_backends": info.n_backends,
                            "layers": layers})
        return res

    def stats(self):
        """Allocation statistics (nnm_ctx_stats) as a dict."""
        s = L.CtxStats(sizeof(L.CtxStats))
        with self.lock:
            self.check(L.nnm_ctx_stats_get(self._h, byref(s)))
        return {name: getattr(s, name) for name, _ in L.CtxStats._fields_[2:]}

    def empty_cache(self):
        with self.lock:
            L.nnm_ctx_empty_cache(self._h)

    def synchronize(self):
        """Waits for the work queued on this context's devices (torch.cuda.synchronize);
        raises what that work failed with. A CPU-only context returns at once."""
        if getattr(L, "nnm_ctx_synchronize", None) is None:  # an older libnnmod: synchronous
            return
        with self.lock:
            self.check(L.nnm_ctx_synchronize(self._h))

    @property
    def num_threads(self):
        """Intra-op threads of this context (nnm_ctx_set_num_threads); by default the cores, or
        NNM_NUM_THREADS / OMP_NUM_THREADS / OPENBLAS_NUM_THREADS when set."""
        with self.lock:
            return L.nnm_ctx_num_threads(self._h)

    @num_threads.setter
    def num_threads(self, n):
        with self.lock:
            self.check(L.nnm_ctx_set_num_threads(self._h, int(n)))

    def reset_peak_stats(self):
        """Restarts stats()' peak_bytes_* high-water marks from the current figures."""
        with self.lock:
            L.nnm_ctx_reset_peak_stats(self._h)

    def set_error(self, status, text):
        """Sets the context's message (what a failing hook does)."""
        L.nnm_ctx_set_error_msg(self._h, status, text.encode("utf-8", "replace"))

_default = None
_default_lock = threading.Lock()


def default_context():
    """The process-wide context every function uses when given ctx=None."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Context()
    return _default


def version():
    """libnnmod's version string ("0.4.0")."""
    return _decode(L.nnm_version())


def abi_version():
    """The plugin ABI of the loaded libnnmod, as (major, minor)."""
    a, b = c_uint16(), c_uint16()
    L.nnm_abi_version(byref(a), byref(b))
    return a.value, b.value

