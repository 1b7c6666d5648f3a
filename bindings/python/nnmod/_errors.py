"""nnmod.Error and one subclass per status code (docs/abi.md, section 4)."""

__all__ = ["Error", "InvalidError", "NoMemoryError", "ShapeError", "DTypeError", "DeviceError",
           "NotFoundError", "ConfigTypeError", "VersionError", "LoadError", "UnsupportedError",
           "StateError", "FileSystemError", "PluginError", "HookError", "NoDeviceError", "ExistsError",
           "LimitError"]

_builtin_IOError = OSError


class Error(Exception):
    """A failed libnnmod call.

    ``status`` is the negative status code, ``status_name`` its name
    ("NNM_E_SHAPE"), ``message`` the context's message, which names the module
    path when a module call failed ("fc1 (linear): expected input [*, 4], got
    [2, 5]"). ``str(err)`` is "NNM_E_SHAPE: <message>".
    """

    status = None
    status_name = "NNM_E_UNKNOWN"

    def __init__(self, message, status=None, status_name=None):
        if status is not None:
            self.status = status
        if status_name is not None:
            self.status_name = status_name
        self.message = message
        super().__init__(f"{self.status_name}: {message}")


def _sub(name, code, status_name, *bases, doc):
    cls = type(name, (Error,) + bases, {"status": code, "status_name": status_name, "__doc__": doc})
    cls.__module__ = "nnmod"
    return cls


InvalidError = _sub("InvalidError", -1, "NNM_E_INVALID", ValueError, doc="bad argument")
NoMemoryError = _sub("NoMemoryError", -2, "NNM_E_NOMEM", MemoryError, doc="out of memory")
ShapeError = _sub("ShapeError", -3, "NNM_E_SHAPE", ValueError,
                  doc="tensor shape or arity does not fit")
DTypeError = _sub("DTypeError", -4, "NNM_E_DTYPE", TypeError,
                  doc="unsupported or mismatched dtype")
DeviceError = _sub("DeviceError", -5, "NNM_E_DEVICE", doc="wrong device, or no such device")
NotFoundError = _sub("NotFoundError", -6, "NNM_E_NOT_FOUND", LookupError,
                     doc="no such plugin, layer, key, child, ...")
ConfigTypeError = _sub("ConfigTypeError", -7, "NNM_E_TYPE", TypeError,
                       doc="config value of another type")
VersionError = _sub("VersionError", -8, "NNM_E_VERSION", doc="ABI or semantic version mismatch")
LoadError = _sub("LoadError", -9, "NNM_E_LOAD", doc="shared object could not be loaded")
UnsupportedError = _sub("UnsupportedError", -10, "NNM_E_UNSUPPORTED", NotImplementedError,
                        doc="optional slot not implemented")
StateError = _sub("StateError", -11, "NNM_E_STATE", RuntimeError,
                  doc="object in the wrong state (freed, busy, ...)")
FileSystemError = _sub("FileSystemError", -12, "NNM_E_IO", _builtin_IOError, doc="file system error")
PluginError = _sub("PluginError", -13, "NNM_E_PLUGIN", RuntimeError,
                   doc="a plugin failed without a more precise code")
HookError = _sub("HookError", -14, "NNM_E_HOOK", RuntimeError,
                 doc="a hook failed; a Python hook's exception is the __cause__")
NoDeviceError = _sub("NoDeviceError", -15, "NNM_E_NO_DEVICE",
                     doc="backend loaded, but this machine has no device")
ExistsError = _sub("ExistsError", -16, "NNM_E_EXISTS", doc="duplicate name or registration")
LimitError = _sub("LimitError", -17, "NNM_E_LIMIT", doc="a documented limit was exceeded")

_by_status = {c.status: c for c in (InvalidError, NoMemoryError, ShapeError, DTypeError,
                                    DeviceError, NotFoundError, ConfigTypeError, VersionError,
                                    LoadError, UnsupportedError, StateError, FileSystemError, PluginError,
                                    HookError, NoDeviceError, ExistsError, LimitError)}


def error_for(status, message, status_name=None):
    """The Error instance for a status code (an unknown code gives Error)."""
    cls = _by_status.get(status)
    if cls is None:
        return Error(message, status, status_name or f"status {status}")
    return cls(message)


_runtime_twins = {}


def as_runtime_error(err):
    """err, also a RuntimeError: where PyTorch raises RuntimeError for the
    same failure (load_state_dict's missing keys or size mismatch, a second
    backward, a non-scalar backward), `except RuntimeError` catches nnmod's
    too, while `except nnmod.NotFoundError` (or ShapeError, ...) still does.
    The class keeps its name (nnmod.ShapeError)."""
    if isinstance(err, RuntimeError) or not isinstance(err, Error):
        return err
    cls = type(err)
    twin = _runtime_twins.get(cls)
    if twin is None:
        twin = type(cls.__name__, (cls, RuntimeError), {"__doc__": cls.__doc__})
        twin.__module__ = cls.__module__
        twin.__qualname__ = cls.__qualname__
        _runtime_twins[cls] = twin
    err.__class__ = twin
    return err
