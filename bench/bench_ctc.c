/* bench/bench_ctc.c - ctc_loss forward and forward+backward, one JSON line
 * per path: "fused" (the cpu backend's ctc_loss slots) and "composed" (the
 * layer's recursion of host ops, on "cpunoctc": the cpu kernels on a second
 * device without the ctc slots, as in tests/layers/test_losses.c). Median of
 * 15 calls. bench/bench_ctc_torch.py times F.ctc_loss on the same data.
 *
 *   OPENBLAS_NUM_THREADS=1 build/bin/bench_ctc [T [S [fused|composed]]]   (N 16, C 20) */
#define _POSIX_C_SOURCE 200809L
#define BENCH_NAME "bench_ctc"
#include <dlfcn.h>
#include <math.h>
#include <string.h>
#include <stdint.h>
#include "nnmod/nnmod.h"
#include "nnmod/plugin.h"
#include "bench_util.h"
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

static nnm_ctx *g_ctx;
static nnm_tensor *on_dev(nnm_device dev, nnm_dtype dt, int32_t nd, const int64_t *shape, const void *p, size_t n) {
    nnm_tensor *t = NULL;
    if (nnm_tensor_new(g_ctx, dev, dt, nd, shape, &t)) die(g_ctx, "tensor");
    memcpy(nnm_tensor_desc_get(t)->data, p, n * (dt.bits / 8u));
    return t;
}
int main(int argc, char **argv) {
    const int64_t T = argc > 1 ? atoll(argv[1]) : 50, N = 16, C = 20, S = argc > 2 ? atoll(argv[2]) : 10;
    nnm_ctx_options o = {sizeof o, NNM_CTX_NO_DISCOVERY, 0};
    if (nnm_ctx_new(&o, &g_ctx)) return 1;
    const nnm_plugin_desc *cpu = NULL;
    g_cpu_dl = dlopen(CPU_SO, RTLD_NOW);
    void *sym = dlsym(g_cpu_dl, NNM_PLUGIN_ENTRY_SYMBOL);
    nnm_plugin_entry_fn entry = NULL;
    memcpy(&entry, &sym, sizeof entry);
    cpu = entry(NNM_ABI_MAJOR, NNM_ABI_MINOR);
    g_cpu_vt = cpu->backends[0];
    if (nnm_plugin_load(g_ctx, CPU_SO) || nnm_plugin_load(g_ctx, LOSS_SO)) die(g_ctx, "load");
    if (nnm_plugin_register_static(g_ctx, &noctc_desc, "bench")) die(g_ctx, "reg");
    const nnm_dtype I64 = {NNM_DTYPE_INT, 64, 1};
    float *lp = malloc(sizeof(float) * T * N * C);
    for (int64_t i = 0; i < T * N; i++) for (int64_t c = 0; c < C; c++) lp[i * C + c] = -logf((float)C) + 0.01f * (float)((i * 7 + c * 13) % 17 - 8);
    int64_t *tg = malloc(sizeof(int64_t) * N * S), il[64], tl[64];
    for (int64_t i = 0; i < N * S; i++) tg[i] = 1 + (i * 5) % (C - 1);
    for (int64_t b = 0; b < N; b++) { il[b] = T - (b % 3); tl[b] = S - (b % 2); }
    const nnm_device devs[2] = {{NNM_DEVICE_CPU, 0}, g_noctc};
    const char *only = argc > 3 ? argv[3] : NULL;
    for (int d = 0; d < 2; d++) {
        if (only && strcmp(only, d ? "composed" : "fused") != 0) continue;
        nnm_module *m = NULL;
        if (nnm_module_create(g_ctx, "ctc_loss", NULL, &m)) die(g_ctx, "create");
        if (d && nnm_module_to(m, devs[d])) die(g_ctx, "to");
        const int64_t l3[3] = {T, N, C}, ts2[2] = {N, S}, n1[1] = {N};
        double ts[2][15];
        for (int rep = 0; rep < 15; rep++) {
            nnm_tensor *in[4] = {on_dev(devs[d], NNM_F32, 3, l3, lp, T * N * C), on_dev(devs[d], I64, 2, ts2, tg, N * S),
                                 on_dev(devs[d], I64, 1, n1, il, N), on_dev(devs[d], I64, 1, n1, tl, N)};
            nnm_tensor_set_requires_grad(in[0], 1);
            nnm_tensor *out = NULL;
            double t0 = now_s();
            if (nnm_module_call(m, in, 4, &out, 1)) die(g_ctx, "call");
            double t1 = now_s();
            if (nnm_backward(out, NULL, 0)) die(g_ctx, "backward");
            double t2 = now_s();
            ts[0][rep] = t1 - t0; ts[1][rep] = t2 - t0;
            if (rep == 0) { float v; nnm_tensor_to_f32(out, &v, 1); fprintf(stderr, "%s loss %g\n", d ? "composed" : "fused", v); }
            nnm_tensor_release(out);
            for (int i = 0; i < 4; i++) nnm_tensor_release(in[i]);
        }
        printf("{\"bench\":\"ctc_loss\",\"path\":\"%s\",\"T\":%lld,\"N\":%lld,\"C\":%lld,\"S\":%lld,\"fwd_ms\":%.3f,\"fwd_bwd_ms\":%.3f}\n",
               d ? "composed" : "fused", (long long)T, (long long)N, (long long)C, (long long)S,
               1e3 * median(ts[0], 15), 1e3 * median(ts[1], 15));
        nnm_module_release(m);
    }
    nnm_ctx_free(g_ctx);
    return 0;
}
