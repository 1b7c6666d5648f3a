"""nnmod: PyTorch's nn.Module contract over libnnmod's C API.

    import nnmod
    model = nnmod.from_manifest("examples/manifests/mlp.json")
    y = model(np.ones((2, 4), np.float32))
    print(model); y.sum().backward()

Pure Python (ctypes) over libnnmod.so; see docs/bindings.md for the object
model, ownership, threads and errors. ``nnmod.torch.export`` (import
nnmod.torch) turns PyTorch models into manifests.
"""
from ._lib import path as library_path
from ._errors import (Error, InvalidError, NoMemoryError, ShapeError, DTypeError, DeviceError,
                      NotFoundError, ConfigTypeError, VersionError, LoadError, UnsupportedError,
                      StateError, FileSystemError, PluginError, HookError, NoDeviceError,
                      ExistsError, LimitError)
from ._context import Context, default_context, version, abi_version
from ._tensor import (Tensor, Device, device, dtype, tensor, from_dlpack, float32, float64,
                      float16, bfloat16, int64, int32, int16, int8, uint8, bool_)
from ._module import (Module, RemovableHandle, IncompatibleKeys, from_manifest, create,
                      register_module_forward_pre_hook, register_module_forward_hook,
                      register_module_full_backward_pre_hook, register_module_full_backward_hook)
from ._autograd import no_grad, enable_grad, set_grad_enabled, is_grad_enabled
from ._safetensors import save_safetensors, load_safetensors
from ._checkpoint import save_checkpoint, load_checkpoint
from . import optim

__version__ = "0.4.0"

__all__ = [
    "library_path", "Error", "InvalidError", "NoMemoryError", "ShapeError", "DTypeError",
    "DeviceError", "NotFoundError", "ConfigTypeError", "VersionError", "LoadError",
    "UnsupportedError", "StateError", "FileSystemError", "PluginError", "HookError",
    "NoDeviceError", "ExistsError", "LimitError", "Context", "default_context", "version",
    "abi_version", "Tensor", "Device", "device", "dtype", "tensor", "from_dlpack", "float32",
    "float64", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "bool_",
    "Module", "RemovableHandle", "IncompatibleKeys", "from_manifest", "create",
    "register_module_forward_pre_hook", "register_module_forward_hook",
    "register_module_full_backward_pre_hook", "register_module_full_backward_hook", "no_grad",
    "enable_grad", "set_grad_enabled", "is_grad_enabled", "save_safetensors",
    "load_safetensors", "save_checkpoint", "load_checkpoint", "optim",
]
