/* tests/layers/noctc_backend.h - "cpunoctc": the cpu backend's kernels on a
 * second device (type CUDA, host memory) without the ctc_loss slots (nor
 * cast, index_select, ...), so the ctc_loss layer composes its recursion
 * from host ops there. Shared by tests/layers/test_losses.c and
 * bench/bench_ctc.c; the includer dlopens the cpu plugin into g_cpu_vt
 * (and g_cpu_dl) and registers noctc_desc with nnm_plugin_register_static. */
#ifndef NNM_TESTS_NOCTC_BACKEND_H
#define NNM_TESTS_NOCTC_BACKEND_H

#include <stdlib.h>
#include <string.h>

#include "nnmod/plugin.h"

static void *g_cpu_dl;
static const nnm_backend_vtable *g_cpu_vt;
static void *g_cpu_state;
static const nnm_device g_noctc = {NNM_DEVICE_CUDA, 0};

static nnm_tensor_desc on_cpu(const nnm_tensor_desc *d) {
    nnm_tensor_desc c = *d;
    c.device.type = NNM_DEVICE_CPU;
    c.device.id = 0;
    return c;
}

static nnm_status nc_init(nnm_env *env, void **state) {
    *state = NULL;
    return g_cpu_vt->init(env, &g_cpu_state);
}
static void nc_shutdown(void *state) { (void)state; }
static nnm_status nc_alloc(nnm_env *env, void *state, int32_t id, size_t bytes, void **ptr) {
    (void)env, (void)state, (void)id;
    *ptr = aligned_alloc(64, bytes ? (bytes + 63) / 64 * 64 : 64);
    return *ptr ? NNM_OK : NNM_E_NOMEM;
}
static void nc_free(void *state, int32_t id, void *ptr) {
    (void)state, (void)id;
    free(ptr);
}
static nnm_status nc_memcpy(nnm_env *env, void *state, void *dst, nnm_device dd, const void *src, nnm_device sd,
                            size_t bytes) {
    (void)env, (void)state, (void)dd, (void)sd;
    if (bytes) memmove(dst, src, bytes);
    return NNM_OK;
}
static nnm_status nc_fill(nnm_env *env, void *state, const nnm_tensor_desc *out, double v) {
    (void)state;
    nnm_tensor_desc o = on_cpu(out);
    return g_cpu_vt->fill(env, g_cpu_state, &o, v);
}
static nnm_status nc_gemm(nnm_env *env, void *state, const nnm_gemm_args *a) {
    (void)state;
    return g_cpu_vt->gemm(env, g_cpu_state, a);
}
static nnm_status nc_binary(nnm_env *env, void *state, const nnm_binary_args *a) {
    (void)state;
    nnm_tensor_desc x = on_cpu(a->a), y = on_cpu(a->b), o = on_cpu(a->out);
    nnm_binary_args b = *a;
    b.a = &x, b.b = &y, b.out = &o;
    return g_cpu_vt->binary(env, g_cpu_state, &b);
}
static nnm_status nc_unary(nnm_env *env, void *state, const nnm_unary_args *a) {
    (void)state;
    nnm_tensor_desc x = on_cpu(a->x), o = on_cpu(a->out);
    nnm_unary_args b = *a;
    b.x = &x, b.out = &o;
    return g_cpu_vt->unary(env, g_cpu_state, &b);
}
static nnm_status nc_reduce(nnm_env *env, void *state, const nnm_reduce_args *a) {
    (void)state;
    nnm_tensor_desc x = on_cpu(a->x), o = on_cpu(a->out);
    nnm_reduce_args b = *a;
    b.x = &x, b.out = &o;
    return g_cpu_vt->reduce(env, g_cpu_state, &b);
}
static nnm_status nc_where(nnm_env *env, void *state, const nnm_where_args *a) {
    (void)state;
    nnm_tensor_desc k = on_cpu(a->cond), x = on_cpu(a->a), y = on_cpu(a->b), o = on_cpu(a->out);
    nnm_where_args b = *a;
    b.cond = &k, b.a = &x, b.b = &y, b.out = &o;
    return g_cpu_vt->where(env, g_cpu_state, &b);
}

static const nnm_backend_vtable noctc_be = {
    .struct_size = sizeof(nnm_backend_vtable),
    .flags = NNM_BACKEND_OPS_1_3 | NNM_BACKEND_OPS_1_5,
    .name = "cpunoctc",
    .version_major = 1,
    .device_type = NNM_DEVICE_CUDA,
    .init = nc_init,
    .shutdown = nc_shutdown,
    .alloc = nc_alloc,
    .free = nc_free,
    .memcpy = nc_memcpy,
    .fill = nc_fill,
    .gemm = nc_gemm,
    .binary = nc_binary,
    .unary = nc_unary,
    .reduce = nc_reduce,
    .where = nc_where,
};
static const nnm_backend_vtable *const noctc_backends[] = {&noctc_be};
static const nnm_plugin_desc noctc_desc = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
    .name = "cpunoctc",
    .n_backends = 1,
    .backends = noctc_backends,
};

#endif /* NNM_TESTS_NOCTC_BACKEND_H */
