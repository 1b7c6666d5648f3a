"""Finding libnnmod and declaring its C API for ctypes.

Only this module knows C types. Everything else in the package calls the
functions through ``lib`` with the argument and result types declared here,
so a wrong argument raises ctypes.ArgumentError instead of corrupting memory.

The library is found, in order, through:
  1. ``NNMOD_LIBRARY``: the path of libnnmod.so;
  2. ``pkg-config --variable=libdir nnmod`` (an install, or PKG_CONFIG_PATH);
  3. the dynamic linker's search (``ctypes.util.find_library('nnmod')``),
     which covers the installed location (/usr/local/lib, ...);
  4. a build tree of the source checkout this package sits in
     (``<checkout>/build/lib/libnnmod.so``), for running from the sources.
Plugins are then discovered by libnnmod itself (NNM_PLUGIN_PATH, the
directory beside the library, the installed plugin directory).
"""
import ctypes
import ctypes.util
import os
import shutil
import subprocess
from ctypes import (CFUNCTYPE, POINTER, Structure, c_char_p, c_double, c_int, c_int32, c_int64,
                    c_size_t, c_uint8, c_uint16, c_uint32, c_uint64, c_void_p)

__all__ = ["lib", "path", "Device", "DType", "TensorDesc", "DLPackVersion", "DLPackTensor"]


def _candidates():
    env = os.environ.get("NNMOD_LIBRARY")
    if env:
        # An explicit choice is the only one tried: a typo must not silently
        # fall back to another libnnmod.
        yield env, "NNMOD_LIBRARY"
        return
    if shutil.which("pkg-config"):
        try:
            libdir = subprocess.run(["pkg-config", "--variable=libdir", "nnmod"],
                                    capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            libdir = ""
        if libdir:
            yield os.path.join(libdir, "libnnmod.so"), "pkg-config"
    found = ctypes.util.find_library("nnmod")
    if found:
        yield found, "the dynamic linker's search path"
    here = os.path.dirname(os.path.abspath(__file__))
    checkout = os.path.normpath(os.path.join(here, "..", "..", ".."))
    if os.path.isfile(os.path.join(checkout, "abi", "nnmod", "nnmod.h")):
        yield os.path.join(checkout, "build", "lib", "libnnmod.so"), "the source checkout's build tree"


def _load():
    tried = []
    for cand, how in _candidates():
        try:
            return ctypes.CDLL(cand), cand
        except OSError as e:
            tried.append(f"{cand} ({how}): {e}")
    raise ImportError("nnmod: libnnmod.so not found. Set NNMOD_LIBRARY to its path, or install "
                      "nnmod (cmake --install) so that pkg-config or the dynamic linker finds it. "
                      "Tried: " + ("; ".join(tried) if tried else "nothing (no candidate)"))


lib, path = _load()


# ---- structs (laid out as in abi/nnmod/*.h; tests/test_layout.py checks sizes) ----

class Device(Structure):
    _fields_ = [("type", c_int32), ("id", c_int32)]


class DType(Structure):
    _fields_ = [("code", c_uint8), ("bits", c_uint8), ("lanes", c_uint16)]


class TensorDesc(Structure):
    _fields_ = [("data", c_void_p), ("device", Device), ("ndim", c_int32), ("dtype", DType),
                ("shape", POINTER(c_int64)), ("strides", POINTER(c_int64)),
                ("byte_offset", c_uint64)]


class DLPackVersion(Structure):
    _fields_ = [("major", c_uint32), ("minor", c_uint32)]


class DLPackTensor(Structure):
    pass


DLPackDeleter = CFUNCTYPE(None, POINTER(DLPackTensor))
DLPackTensor._fields_ = [("version", DLPackVersion), ("manager_ctx", c_void_p),
                         ("deleter", DLPackDeleter), ("flags", c_uint64),
                         ("dl_tensor", TensorDesc)]


class DLManagedTensor(Structure):
    """DLPack 0.x's unversioned DLManagedTensor, what NumPy 1.x and PyTorch
    1.x exchange under the capsule name "dltensor"."""


DLManagedDeleter = CFUNCTYPE(None, POINTER(DLManagedTensor))
DLManagedTensor._fields_ = [("dl_tensor", TensorDesc), ("manager_ctx", c_void_p),
                            ("deleter", DLManagedDeleter)]


class CtxOptions(Structure):
    _fields_ = [("struct_size", c_uint32), ("flags", c_uint32), ("seed", c_uint64)]


class SGDOptions(Structure):
    _fields_ = [("struct_size", c_uint32), ("nesterov", c_int32), ("lr", c_double),
                ("momentum", c_double), ("dampening", c_double), ("weight_decay", c_double)]


class AdamOptions(Structure):
    _fields_ = [("struct_size", c_uint32), ("amsgrad", c_int32), ("decoupled", c_int32),
                ("reserved", c_int32), ("lr", c_double), ("beta1", c_double), ("beta2", c_double),
                ("eps", c_double), ("weight_decay", c_double)]


class LoadReport(Structure):
    _fields_ = [("struct_size", c_uint32), ("n_missing", c_uint32), ("missing", POINTER(c_char_p)),
                ("n_unexpected", c_uint32), ("unexpected", POINTER(c_char_p)),
                ("n_mismatched", c_uint32), ("mismatched", POINTER(c_char_p))]


class STEntry(Structure):
    _fields_ = [("struct_size", c_uint32), ("dtype", DType), ("name", c_char_p),
                ("dtype_name", c_char_p), ("ndim", c_int32), ("shape", POINTER(c_int64)),
                ("data", c_void_p), ("nbytes", c_uint64)]


class KV(Structure):
    _fields_ = [("key", c_char_p), ("value", c_char_p)]


class LayerVtableHead(Structure):
    """The first fields of nnm_layer_vtable (ABI 1.0), for the arity."""
    _fields_ = [("struct_size", c_uint32), ("flags", c_uint32), ("name", c_char_p),
                ("version_major", c_uint32), ("version_minor", c_uint32),
                ("version_patch", c_uint32), ("n_inputs", c_int32), ("n_outputs", c_int32)]


class PluginInfo(Structure):
    _fields_ = [("struct_size", c_uint32), ("status", c_int32), ("path", c_char_p),
                ("name", c_char_p), ("error", c_char_p), ("abi_major", c_uint16),
                ("abi_minor", c_uint16), ("n_layers", c_uint32), ("n_backends", c_uint32),
                ("live_modules", c_uint32)]


class LayerInfo(Structure):
    _fields_ = [("struct_size", c_uint32), ("flags", c_uint32), ("name", c_char_p),
                ("domain", c_char_p), ("qualified_name", c_char_p),
                ("version_major", c_uint32), ("version_minor", c_uint32),
                ("version_patch", c_uint32), ("reserved", c_uint32)]


class CtxStats(Structure):
    _fields_ = [("struct_size", c_uint32), ("reserved", c_uint32), ("heap_allocs", c_uint64),
                ("cache_hits", c_uint64), ("bytes_cached", c_uint64),
                ("bytes_in_use", c_uint64), ("live_tensors", c_uint64),
                ("live_modules", c_uint64), ("peak_bytes_in_use", c_uint64),
                ("peak_bytes_reserved", c_uint64)]


# ---- hook callback types ----

PTensorArr = POINTER(c_void_p)
ForwardPreHookFn = CFUNCTYPE(c_int32, c_void_p, c_void_p, PTensorArr, c_uint32)
ForwardHookFn = CFUNCTYPE(c_int32, c_void_p, c_void_p, PTensorArr, c_uint32, PTensorArr, c_uint32)
BackwardPreHookFn = CFUNCTYPE(c_int32, c_void_p, c_void_p, PTensorArr, c_uint32)
BackwardHookFn = CFUNCTYPE(c_int32, c_void_p, c_void_p, PTensorArr, c_uint32, PTensorArr,
                           c_uint32)
ModuleVisitFn = CFUNCTYPE(c_int32, c_void_p, c_char_p, c_void_p)
TensorVisitFn = CFUNCTYPE(c_int32, c_void_p, c_char_p, c_void_p)

P = c_void_p
PP = POINTER(c_void_p)
st = c_int32


def _fn(name, restype, *argtypes, optional=False):
    try:
        f = getattr(lib, name)
    except AttributeError:
        if optional:
            return None
        raise ImportError(f"nnmod: {path} has no {name}: it is older than this binding")
    f.restype = restype
    f.argtypes = list(argtypes)
    globals()[name] = f
    return f


# versions and status
_fn("nnm_version", c_char_p)
_fn("nnm_abi_version", None, POINTER(c_uint16), POINTER(c_uint16))
_fn("nnm_status_name", c_char_p, st)
_fn("nnm_status_str", c_char_p, st)
# context
_fn("nnm_ctx_new", st, POINTER(CtxOptions), PP)
_fn("nnm_ctx_free", None, P)
_fn("nnm_ctx_errmsg", c_char_p, P)
_fn("nnm_ctx_set_error_msg", st, P, st, c_char_p)
_fn("nnm_ctx_stats_get", st, P, POINTER(CtxStats))
_fn("nnm_ctx_empty_cache", None, P)
_fn("nnm_ctx_synchronize", st, P, optional=True)
_fn("nnm_ctx_reset_peak_stats", None, P)
_fn("nnm_ctx_set_num_threads", st, P, c_int32)
_fn("nnm_ctx_num_threads", c_int32, P)
_fn("nnm_plugin_load", st, P, c_char_p)
_fn("nnm_plugin_load_dir", st, P, c_char_p, POINTER(c_uint32))
_fn("nnm_plugin_count", c_uint32, P)
_fn("nnm_plugin_info_get", st, P, c_uint32, POINTER(PluginInfo))
_fn("nnm_plugin_layer_info", st, P, c_uint32, c_uint32, POINTER(LayerInfo), optional=True)
_fn("nnm_layer_find", st, P, c_char_p, POINTER(POINTER(LayerVtableHead)))
# tensors
_fn("nnm_tensor_new", st, P, Device, DType, c_int32, POINTER(c_int64), PP)
_fn("nnm_tensor_from_f32", st, P, c_int32, POINTER(c_int64), c_void_p, PP)
_fn("nnm_tensor_from_i64", st, P, c_int32, POINTER(c_int64), c_void_p, PP)
_fn("nnm_tensor_to_f32", st, P, c_void_p, c_size_t)
_fn("nnm_tensor_to", st, P, Device, PP)
_fn("nnm_tensor_retain", None, P)
_fn("nnm_tensor_release", None, P)
_fn("nnm_tensor_desc_get", POINTER(TensorDesc), P)
_fn("nnm_tensor_numel", c_int64, P)
_fn("nnm_tensor_to_dlpack", st, P, POINTER(POINTER(DLPackTensor)))
_fn("nnm_tensor_from_dlpack", st, P, c_void_p, PP)
# config (read back for repr/arity)
_fn("nnm_config_count", c_size_t, P)
_fn("nnm_config_key", c_char_p, P, c_size_t, POINTER(c_int))
_fn("nnm_config_get_strs", st, P, c_char_p, POINTER(POINTER(c_char_p)), POINTER(c_size_t))
# modules
_fn("nnm_module_retain", None, P)
_fn("nnm_module_release", None, P)
_fn("nnm_module_call", st, P, PP, c_uint32, PP, c_uint32)
_fn("nnm_module_name", c_char_p, P)
_fn("nnm_module_type", c_char_p, P)
_fn("nnm_module_path", c_int, P, c_char_p, c_size_t)
_fn("nnm_module_parent", P, P)
_fn("nnm_module_child_count", c_uint32, P)
_fn("nnm_module_child", P, P, c_uint32)
_fn("nnm_module_child_name", c_char_p, P, c_uint32, optional=True)
_fn("nnm_module_get", P, P, c_char_p)
_fn("nnm_module_ctx", P, P)
_fn("nnm_module_config", P, P)
_fn("nnm_module_output_names", POINTER(c_char_p), P, POINTER(c_uint32))
_fn("nnm_module_named_modules", st, P, ModuleVisitFn, c_void_p)
_fn("nnm_module_named_parameters", st, P, TensorVisitFn, c_void_p)
_fn("nnm_module_named_buffers", st, P, TensorVisitFn, c_void_p)
_fn("nnm_module_num_params", c_int64, P)
_fn("nnm_module_repr", c_int64, P, c_char_p, c_size_t)
_fn("nnm_module_train", st, P, c_int)
_fn("nnm_module_is_training", c_int, P)
_fn("nnm_module_to", st, P, Device)
_fn("nnm_module_device", Device, P)
_fn("nnm_grad_set_enabled", c_int, c_int)
_fn("nnm_grad_is_enabled", c_int)
# hooks
_fn("nnm_module_register_forward_pre_hook", st, P, ForwardPreHookFn, c_void_p, PP)
_fn("nnm_module_register_forward_hook", st, P, ForwardHookFn, c_void_p, PP)
_fn("nnm_ctx_register_forward_pre_hook", st, P, ForwardPreHookFn, c_void_p, PP)
_fn("nnm_ctx_register_forward_hook", st, P, ForwardHookFn, c_void_p, PP)
_fn("nnm_hook_remove", None, P)
_fn("nnm_module_register_full_backward_pre_hook", st, P, BackwardPreHookFn, c_void_p, PP)
_fn("nnm_module_register_full_backward_hook", st, P, BackwardHookFn, c_void_p, PP)
# ops
_fn("nnm_op_unary", st, P, c_int32, P, c_double, PP)
_fn("nnm_op_binary", st, P, c_int32, P, P, PP)
_fn("nnm_op_matmul", st, P, P, P, PP)
_fn("nnm_op_reduce", st, P, c_int32, P, POINTER(c_int32), c_uint32, c_int, PP)
_fn("nnm_op_reshape", st, P, P, c_int32, POINTER(c_int64), PP)
# autograd
_fn("nnm_tensor_set_requires_grad", st, P, c_int)
_fn("nnm_tensor_requires_grad", c_int, P)
_fn("nnm_tensor_is_leaf", c_int, P)
_fn("nnm_tensor_grad", P, P)
_fn("nnm_tensor_set_grad", st, P, P)
_fn("nnm_tensor_detach", st, P, PP)
_fn("nnm_backward", st, P, P, c_int)
_fn("nnm_module_zero_grad", st, P)
# optimizers
_fn("nnm_optim_sgd_new", st, P, POINTER(SGDOptions), PP)
_fn("nnm_optim_adam_new", st, P, POINTER(AdamOptions), PP)
_fn("nnm_optim_free", None, P)
_fn("nnm_optim_add_group", st, P, c_char_p, c_double, c_double, POINTER(c_uint32))
_fn("nnm_optim_group_count", c_uint32, P)
_fn("nnm_optim_set_lr", st, P, c_uint32, c_double)
_fn("nnm_optim_get_lr", c_double, P, c_uint32)
_fn("nnm_optim_step", st, P)
_fn("nnm_optim_zero_grad", st, P)
# safetensors and state
_fn("nnm_safetensors_open", st, P, c_char_p, PP)
_fn("nnm_safetensors_close", None, P)
_fn("nnm_safetensors_count", c_uint32, P)
_fn("nnm_safetensors_entry", st, P, c_uint32, POINTER(STEntry))
_fn("nnm_safetensors_metadata_count", c_uint32, P)
_fn("nnm_safetensors_metadata", st, P, c_uint32, POINTER(c_char_p), POINTER(c_char_p))
_fn("nnm_safetensors_write", st, P, c_char_p, c_uint32, POINTER(c_char_p), PP, c_uint32,
    POINTER(KV))
_fn("nnm_module_save", st, P, c_char_p, c_uint32, POINTER(KV))
_fn("nnm_checkpoint_save", st, c_char_p, P, P, P, c_uint32, POINTER(KV))
_fn("nnm_checkpoint_load", st, c_char_p, P, P)
_fn("nnm_module_load", st, P, c_char_p, c_int, POINTER(POINTER(LoadReport)))
_fn("nnm_load_report_free", None, POINTER(LoadReport))
# manifests
_fn("nnm_manifest_load", st, P, c_char_p, c_int, c_void_p, PP)
_fn("nnm_manifest_free", None, P)
_fn("nnm_manifest_build", st, P, c_uint32, PP)
_fn("nnm_manifest_from_module", st, P, PP)
_fn("nnm_manifest_save", st, P, c_char_p, c_int)
_fn("nnm_manifest_set_weights", st, P, c_char_p, c_char_p)

# Constants the binding needs (abi/nnmod/plugin.h, nnmod.h; docs/abi.md).
NNM_OK = 0
NNM_E_HOOK = -14
NNM_DEVICE_CPU = 1
NNM_DEVICE_CUDA = 2
NNM_ARITY_ANY = -1
NNM_BUILD_NO_WEIGHTS = 1
NNM_MANIFEST_AUTO = 0
NNM_CONFIG_STRS = 6

_fn("nnm_config_new", st, PP)
_fn("nnm_config_free", None, P)
_fn("nnm_config_set_int", st, P, c_char_p, c_int64)
_fn("nnm_config_set_float", st, P, c_char_p, c_double)
_fn("nnm_config_set_bool", st, P, c_char_p, c_int)
_fn("nnm_config_set_str", st, P, c_char_p, c_char_p)
_fn("nnm_config_set_ints", st, P, c_char_p, POINTER(c_int64), c_size_t)
_fn("nnm_config_set_floats", st, P, c_char_p, POINTER(c_double), c_size_t)
_fn("nnm_config_set_strs", st, P, c_char_p, POINTER(c_char_p), c_size_t)
_fn("nnm_module_create", st, P, c_char_p, P, PP)
_fn("nnm_module_add_child", st, P, c_char_p, P)
_fn("nnm_module_finalize", st, P)


class ConfigField(Structure):
    _fields_ = [("key", c_char_p), ("type", c_int32), ("flags", c_uint32), ("doc", c_char_p)]


class LayerVtable12(Structure):
    """nnm_layer_vtable up to ABI 1.2 (read only up to the plugin's struct_size)."""
    _fields_ = LayerVtableHead._fields_ + [
        ("create", c_void_p), ("destroy", c_void_p), ("forward", c_void_p),
        ("extra_repr", c_void_p), ("backward", c_void_p), ("finalize", c_void_p),
        ("config_fields", POINTER(ConfigField)), ("n_config_fields", c_uint32),
        ("reserved", c_uint32), ("display_name", c_char_p)]

# Hooks, version 2 (options with a user-data destructor; caller-owned handles).
HookUserFree = CFUNCTYPE(None, c_void_p)


class HookOptions(Structure):
    _fields_ = [("struct_size", c_uint32), ("flags", c_uint32), ("user_free", HookUserFree)]


NNM_HOOK_PREPEND = 1
NNM_HOOK_ALWAYS_CALL = 2
_fn("nnm_module_register_forward_pre_hook_v2", st, P, ForwardPreHookFn, c_void_p,
    POINTER(HookOptions), PP)
_fn("nnm_module_register_forward_hook_v2", st, P, ForwardHookFn, c_void_p, POINTER(HookOptions), PP)
_fn("nnm_module_register_full_backward_pre_hook_v2", st, P, BackwardPreHookFn, c_void_p,
    POINTER(HookOptions), PP)
_fn("nnm_module_register_full_backward_hook_v2", st, P, BackwardHookFn, c_void_p,
    POINTER(HookOptions), PP)
_fn("nnm_ctx_register_forward_pre_hook_v2", st, P, ForwardPreHookFn, c_void_p,
    POINTER(HookOptions), PP)
_fn("nnm_ctx_register_forward_hook_v2", st, P, ForwardHookFn, c_void_p, POINTER(HookOptions), PP)
_fn("nnm_ctx_register_full_backward_pre_hook", st, P, BackwardPreHookFn, c_void_p,
    POINTER(HookOptions), PP)
_fn("nnm_ctx_register_full_backward_hook", st, P, BackwardHookFn, c_void_p, POINTER(HookOptions),
    PP)
_fn("nnm_hook_handle_remove", st, P)
_fn("nnm_hook_handle_is_live", c_int, P)
_fn("nnm_hook_handle_free", None, P)

# In-memory state dicts, sharing and freezing (nnmod.h, modapi).
_fn("nnm_state_dict_new", st, P, PP)
_fn("nnm_state_dict_free", None, P)
_fn("nnm_state_dict_set", st, P, c_char_p, P)
_fn("nnm_state_dict_count", c_uint32, P)
_fn("nnm_state_dict_entry", st, P, c_uint32, POINTER(c_char_p), PP)
_fn("nnm_module_state_dict", st, P, PP)
_fn("nnm_module_load_state_dict", st, P, P, c_int, POINTER(POINTER(LoadReport)))
_fn("nnm_module_set_child", st, P, c_char_p, P)
_fn("nnm_module_del_child", st, P, c_char_p)
_fn("nnm_module_set_parameter", st, P, c_char_p, P)
_fn("nnm_module_requires_grad_", st, P, c_int)
