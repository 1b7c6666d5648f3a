// tests/abi/compile_cxx.cpp - both headers from C++ (built as C++11 and
// C++17 with -pedantic-errors): a plugin written in C++ and an application.
#include "nnmod/plugin.h"
#include "nnmod/nnmod.h"

#include <cstddef>

// Slots have C language linkage, as the vtable's function pointer types do.
extern "C" {
static nnm_status t_create(nnm_env *env, void **self) {
    *self = nullptr;
    const nnm_host *h = env->host;
    return NNM_HOST_HAS(h, set_error) ? NNM_OK : NNM_E_UNSUPPORTED;
}

static nnm_status t_forward(nnm_env *env, void *, nnm_tensor *const *in, uint32_t,
                            nnm_tensor **out, uint32_t) {
    return env->host->op_unary(env, NNM_UNARY_RELU, in[0], 0.0, &out[0]);
}
}

namespace {

const nnm_layer_vtable t_layer = {
    sizeof(nnm_layer_vtable), 0, "abi_compile_test_cxx", 1, 0, 0, 1, 1,
    t_create, nullptr, t_forward, nullptr, nullptr, nullptr, nullptr, 0, 0, nullptr};

const nnm_layer_vtable *const t_layers[] = {&t_layer};

} // namespace

extern const nnm_plugin_desc t_desc_cxx;
const nnm_plugin_desc t_desc_cxx = {
    sizeof(nnm_plugin_desc), NNM_ABI_MAJOR, NNM_ABI_MINOR, "abi_compile_test_cxx", nullptr,
    1, 0, t_layers, nullptr, 0, 0, nullptr, nullptr};

NNM_PLUGIN_DEFINE(t_desc_cxx)

// Application side: only compiled, never called.
nnm_status nnm_abi_compile_test_cxx(nnm_ctx *ctx);
nnm_status nnm_abi_compile_test_cxx(nnm_ctx *ctx) {
    nnm_module *m = nullptr;
    nnm_status st = nnm_module_create(ctx, "relu", nullptr, &m);
    nnm_module_release(m);
    nnm_dtype f32 = {NNM_DTYPE_FLOAT, 32, 1};
    // the header's own macros work in C++ too (NNM_F32 was a C compound
    // literal, which g++ -pedantic refuses)
    nnm_dtype f32m = NNM_F32;
    nnm_tensor *t = nullptr;
    if (st == NNM_OK)
        st = nnm_tensor_new(ctx, nnm_device{NNM_DEVICE_CPU, 0}, NNM_F32, 0, nullptr, &t);
    nnm_tensor_release(t);
    (void)f32;
    (void)f32m;
    return st;
}
