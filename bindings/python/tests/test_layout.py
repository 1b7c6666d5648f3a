"""The ctypes declarations agree with the library: struct sizes (when the
library can say them: nnm_struct_size) and the constants the binding uses."""
import ctypes

import pytest

import nnmod
from nnmod import _lib as L


STRUCTS = {"nnm_tensor_desc": L.TensorDesc, "nnm_dlpack_tensor": L.DLPackTensor,
           "nnm_ctx_options": L.CtxOptions, "nnm_sgd_options": L.SGDOptions,
           "nnm_adam_options": L.AdamOptions, "nnm_load_report": L.LoadReport,
           "nnm_st_entry": L.STEntry, "nnm_kv": L.KV, "nnm_plugin_info": L.PluginInfo,
           "nnm_ctx_stats": L.CtxStats, "nnm_layer_info": L.LayerInfo, "nnm_device": L.Device, "nnm_dtype": L.DType}


def test_dlpack_layouts():
    # DLPack's own layouts (docs/abi.md section 6)
    assert ctypes.sizeof(L.TensorDesc) == 48
    assert ctypes.sizeof(L.DLPackTensor) == 80
    assert L.DLPackTensor.dl_tensor.offset == 32
    assert ctypes.sizeof(L.DLManagedTensor) == 64


@pytest.mark.skipif(not hasattr(L.lib, "nnm_struct_size"), reason="libnnmod has no nnm_struct_size")
@pytest.mark.parametrize("name", sorted(STRUCTS))
def test_struct_sizes(name):
    f = L.lib.nnm_struct_size
    f.restype, f.argtypes = ctypes.c_size_t, [ctypes.c_char_p]
    assert f(name.encode()) == ctypes.sizeof(STRUCTS[name])


@pytest.mark.skipif(not hasattr(L.lib, "nnm_constant"), reason="libnnmod has no nnm_constant")
def test_constants():
    f = L.lib.nnm_constant
    f.restype, f.argtypes = ctypes.c_int32, [ctypes.c_char_p, ctypes.POINTER(ctypes.c_int64)]
    for name in ("NNM_E_HOOK", "NNM_DEVICE_CPU", "NNM_DEVICE_CUDA", "NNM_ARITY_ANY",
                 "NNM_BUILD_NO_WEIGHTS", "NNM_MANIFEST_AUTO", "NNM_CONFIG_STRS"):
        v = ctypes.c_int64()
        assert f(name.encode(), ctypes.byref(v)) == 0, name
        assert v.value == getattr(L, name), name
    for code, cls in nnmod._errors._by_status.items():
        v = ctypes.c_int64()
        assert f(cls.status_name.encode(), ctypes.byref(v)) == 0
        assert v.value == code


def test_status_names_match_the_library():
    for code, cls in nnmod._errors._by_status.items():
        assert L.nnm_status_name(code).decode() == cls.status_name
        assert issubclass(cls, nnmod.Error)
