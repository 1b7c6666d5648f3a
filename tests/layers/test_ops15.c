/* tests/layers/test_ops15.c - the ABI 1.5 host ops through the op_probe
 * fixture and the call path: tensor_from_host and op_index_select (forward
 * against a direct reference, its gradient index_add with repeated indices,
 * any dim, 0-d index, i64 data, bad arguments), and the same answers, bit
 * for bit, from a backend without the index slots (the cpu kernels under
 * another name with index_select/index_add NULL: the one-hot gemm), where
 * an i64 tensor is NNM_E_UNSUPPORTED naming op and backend. */
#include "test_util.h"

#include <dlfcn.h>

static nnm_ctx *g_ctx;     /* cpu backend (with the slots) */
static nnm_ctx *g_nctx;    /* "noindex": the cpu kernels without them */
#define TU_CTX g_ctx

static void *g_cpu_dl;
static nnm_backend_vtable g_vt;
static const nnm_backend_vtable *const g_backends[] = {&g_vt};
static const nnm_plugin_desc g_desc = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
    .name = "noindex",
    .n_backends = 1,
    .backends = g_backends,
};

static nnm_module *probe(nnm_ctx *ctx, int64_t dim, const int64_t *idx, size_t m) {
    nnm_config *cfg = NULL;
    nnm_config_new(&cfg);
    nnm_config_set_str(cfg, "op", "index_select");
    nnm_config_set_int(cfg, "dim", dim);
    if (idx) nnm_config_set_ints(cfg, "ints", idx, m);
    nnm_module *mod = tu_module(ctx, "op_probe", cfg);
    nnm_config_free(cfg);
    return mod;
}

/* y = x.index_select(d, idx) for x contiguous [outer, n, inner]. */
static void ref_select(const float *x, float *y, const int64_t *idx, int64_t m, int64_t outer, int64_t n,
                       int64_t inner) {
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < m; j++)
            for (int64_t i = 0; i < inner; i++) y[(o * m + j) * inner + i] = x[(o * n + idx[j]) * inner + i];
}

static void ref_add(const float *g, float *gx, const int64_t *idx, int64_t m, int64_t outer, int64_t n,
                    int64_t inner) {
    memset(gx, 0, sizeof(float) * (size_t)(outer * n * inner));
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < m; j++)
            for (int64_t i = 0; i < inner; i++) gx[(o * n + idx[j]) * inner + i] += g[(o * m + j) * inner + i];
}

/* One case on ctx: x [2, 5, 3] (or the shape given), dim d, indices idx;
 * forward and the gradient of sum(y * w) against the references. Writes y
 * and gx for the bit-for-bit comparison between backends. */
static void run_case(nnm_ctx *ctx, int32_t ndim, const int64_t *shape, int32_t d, const int64_t *idx, int64_t m,
                     float *y_out, float *gx_out) {
    int64_t n_x = 1, outer = 1, inner = 1;
    for (int32_t i = 0; i < ndim; i++) n_x *= shape[i];
    for (int32_t i = 0; i < d; i++) outer *= shape[i];
    for (int32_t i = d + 1; i < ndim; i++) inner *= shape[i];
    const int64_t n = shape[d], n_y = outer * m * inner;
    float x[256], w[256], yr[256], gr[256];
    tu_fill_uniform(x, (size_t)n_x, 7u, -2.0, 2.0);
    tu_fill_uniform(w, (size_t)n_y, 8u, -1.0, 1.0);
    ref_select(x, yr, idx, m, outer, n, inner);
    ref_add(w, gr, idx, m, outer, n, inner);
    nnm_module *mod = probe(ctx, d, idx, (size_t)m);
    CU_ASSERT_PTR_NOT_NULL_FATAL(mod);
    nnm_tensor *tx = tu_tf32(ctx, ndim, shape, x), *y = NULL, *tw = NULL;
    nnm_tensor_set_requires_grad(tx, 1);
    CHECK_STATUS(nnm_module_call(mod, &tx, 1, &y, 1), NNM_OK);
    CU_ASSERT_EQUAL_FATAL(nnm_tensor_numel(y), n_y);
    const nnm_tensor_desc *yd = nnm_tensor_desc_get(y);
    CU_ASSERT_EQUAL(yd->ndim, ndim);
    CU_ASSERT_EQUAL(yd->shape[d], m);
    CU_ASSERT(memcmp(tu_cpu_data(y), yr, sizeof(float) * (size_t)n_y) == 0);
    /* s = sum(y * w): the gradient of y is w */
    tw = tu_tf32(ctx, yd->ndim, yd->shape, w);
    CHECK_STATUS(nnm_backward(y, tw, 0), NNM_OK);
    nnm_tensor *gx = nnm_tensor_grad(tx);
    CU_ASSERT_PTR_NOT_NULL_FATAL(gx);
    CU_ASSERT_EQUAL(tu_count_mismatch("index_add", tu_cpu_data(gx), gr, (size_t)n_x, 1e-6, 1e-6, 0), 0);
    if (y_out) memcpy(y_out, tu_cpu_data(y), sizeof(float) * (size_t)n_y);
    if (gx_out) memcpy(gx_out, tu_cpu_data(gx), sizeof(float) * (size_t)n_x);
    nnm_tensor_release(tw);
    nnm_tensor_release(y);
    nnm_tensor_release(tx);
    nnm_module_release(mod);
}

static const int64_t shape3[3] = {2, 5, 3};
static const int64_t rep[5] = {4, 0, 4, 2, 4}; /* repeated: their gradients sum */

static void test_select_and_grad(void) {
    LEAK_CHECK_BEGIN();
    run_case(g_ctx, 3, shape3, 1, rep, 5, NULL, NULL);
    const int64_t i0[3] = {1, 1, 0}, i2[4] = {2, 0, 1, 2};
    run_case(g_ctx, 3, shape3, 0, i0, 3, NULL, NULL);
    run_case(g_ctx, 3, shape3, 2, i2, 4, NULL, NULL);
    const int64_t none[1] = {0};
    run_case(g_ctx, 3, shape3, 1, none, 0, NULL, NULL); /* no indices: an empty slice */
    LEAK_CHECK_END();
}

static void test_negative_dim_and_0d_index(void) {
    LEAK_CHECK_BEGIN();
    float x[30];
    tu_fill_uniform(x, 30, 3u, -1.0, 1.0);
    nnm_module *mod = probe(g_ctx, -1, NULL, 0);
    nnm_tensor *tx = tu_tf32(g_ctx, 3, shape3, x), *y = NULL;
    const int64_t two = 2;
    nnm_tensor *idx = tu_ti64(g_ctx, 0, NULL, &two);
    nnm_tensor *in[2] = {tx, idx};
    CHECK_STATUS(nnm_module_call(mod, in, 2, &y, 1), NNM_OK);
    const int64_t want[3] = {2, 5, 1};
    CU_ASSERT(tu_shape_is(y, 3, want));
    const float *py = tu_cpu_data(y);
    for (int i = 0; i < 10; i++) CU_ASSERT_EQUAL(py[i], x[i * 3 + 2]);
    nnm_tensor_release(y);
    nnm_tensor_release(idx);
    nnm_tensor_release(tx);
    nnm_module_release(mod);
    LEAK_CHECK_END();
}

static void test_i64_data(void) {
    LEAK_CHECK_BEGIN();
    const int64_t shape[2] = {3, 2}, data[6] = {10, 11, 20, 21, 30, 31}, idx[2] = {2, 0};
    nnm_module *mod = probe(g_ctx, 0, idx, 2);
    nnm_tensor *tx = tu_ti64(g_ctx, 2, shape, data), *y = NULL;
    CHECK_STATUS(nnm_module_call(mod, &tx, 1, &y, 1), NNM_OK);
    const int64_t *py = tu_cpu_data(y);
    CU_ASSERT(py[0] == 30 && py[1] == 31 && py[2] == 10 && py[3] == 11);
    nnm_tensor_release(y);
    nnm_tensor_release(tx);
    nnm_module_release(mod);
    /* without the slot: only f32 runs (the one-hot gemm) */
    mod = probe(g_nctx, 0, idx, 2);
    tx = tu_ti64(g_nctx, 2, shape, data);
    CU_ASSERT_EQUAL(nnm_module_call(mod, &tx, 1, &y, 1), NNM_E_UNSUPPORTED);
    CU_ASSERT_PTR_NOT_NULL(strstr(nnm_ctx_errmsg(g_nctx), "index_select: backend 'noindex' has no index_select slot"));
    nnm_tensor_release(tx);
    nnm_module_release(mod);
    LEAK_CHECK_END();
}

static void test_bad_arguments(void) {
    LEAK_CHECK_BEGIN();
    float x[30] = {0};
    nnm_tensor *tx = tu_tf32(g_ctx, 3, shape3, x), *y = NULL;
    const int64_t bad[2] = {1, 5};
    nnm_module *mod = probe(g_ctx, 1, bad, 2);
    CHECK_ERROR(nnm_module_call(mod, &tx, 1, &y, 1), NNM_E_INVALID, "index 5 (entry 1) is out of range");
    nnm_module_release(mod);
    const int64_t neg[1] = {-1};
    mod = probe(g_ctx, 1, neg, 1);
    CHECK_ERROR(nnm_module_call(mod, &tx, 1, &y, 1), NNM_E_INVALID, "index -1");
    nnm_module_release(mod);
    mod = probe(g_ctx, 3, neg, 0);
    CHECK_ERROR(nnm_module_call(mod, &tx, 1, &y, 1), NNM_E_SHAPE, "dim 3 is out of range");
    nnm_module_release(mod);
    /* an f32 index, a 2-d index */
    mod = probe(g_ctx, 0, NULL, 0);
    const int64_t s1[1] = {1}, s2[2] = {1, 1}, i1[1] = {0};
    float f0[1] = {0};
    nnm_tensor *fi = tu_tf32(g_ctx, 1, s1, f0), *i2 = tu_ti64(g_ctx, 2, s2, i1);
    nnm_tensor *in[2] = {tx, fi};
    CHECK_ERROR(nnm_module_call(mod, in, 2, &y, 1), NNM_E_DTYPE, "index must be i64");
    in[1] = i2;
    CHECK_ERROR(nnm_module_call(mod, in, 2, &y, 1), NNM_E_SHAPE, "0 or 1 dims");
    nnm_tensor_release(fi);
    nnm_tensor_release(i2);
    nnm_module_release(mod);
    nnm_tensor_release(tx);
    LEAK_CHECK_END();
}

/* The one-hot gemm of a backend without the slots: the same bits. */
static void test_fallback_same_bits(void) {
    LEAK_CHECK_BEGIN();
    float y0[256], g0[256], y1[256], g1[256];
    const int64_t shape4[4] = {2, 3, 4, 2}, i4[6] = {3, 3, 0, 1, 2, 3};
    run_case(g_ctx, 3, shape3, 1, rep, 5, y0, g0);
    run_case(g_nctx, 3, shape3, 1, rep, 5, y1, g1);
    CU_ASSERT(memcmp(y0, y1, sizeof(float) * 2 * 5 * 3) == 0);
    CU_ASSERT(memcmp(g0, g1, sizeof(float) * 30) == 0);
    run_case(g_ctx, 4, shape4, 2, i4, 6, y0, g0);
    run_case(g_nctx, 4, shape4, 2, i4, 6, y1, g1);
    CU_ASSERT(memcmp(y0, y1, sizeof(float) * 2 * 3 * 6 * 2) == 0);
    CU_ASSERT(memcmp(g0, g1, sizeof(float) * 48) == 0);
    LEAK_CHECK_END();
}

static int suite_init(void) {
    if (tu_ctx_new(&g_ctx) || nnm_plugin_load(g_ctx, NNM_TEST_OP_PROBE) != NNM_OK) return 1;
    const nnm_plugin_desc *cpu = tu_plugin_open(NNM_TEST_CPU_PLUGIN, &g_cpu_dl);
    if (!cpu || cpu->n_backends < 1) return 1;
    const nnm_backend_vtable *v = cpu->backends[0];
    memcpy(&g_vt, v, v->struct_size < sizeof g_vt ? v->struct_size : sizeof g_vt);
    g_vt.struct_size = sizeof g_vt;
    g_vt.name = "noindex";
    g_vt.index_select = NULL;
    g_vt.index_add = NULL;
    nnm_ctx_options o = {sizeof o, NNM_CTX_NO_DISCOVERY, 0};
    if (nnm_ctx_new(&o, &g_nctx) != NNM_OK) return 1;
    if (nnm_plugin_register_static(g_nctx, &g_desc, "test_ops15") != NNM_OK ||
        nnm_plugin_load(g_nctx, NNM_TEST_OP_PROBE) != NNM_OK) {
        fprintf(stderr, "%s\n", nnm_ctx_errmsg(g_nctx));
        return 1;
    }
    return 0;
}

static int suite_clean(void) {
    nnm_ctx_free(g_nctx);
    tu_ctx_free(&g_ctx);
    if (g_cpu_dl) dlclose(g_cpu_dl);
    return 0;
}

int main(void) {
    CU_pSuite s = tu_suite("ops15", suite_init, suite_clean);
    CU_add_test(s, "index_select: forward and index_add gradient (repeated indices), dims 0-2, no indices",
                test_select_and_grad);
    CU_add_test(s, "index_select: negative dim, 0-d index as an input", test_negative_dim_and_0d_index);
    CU_add_test(s, "index_select: i64 data (slot), unsupported without the slot", test_i64_data);
    CU_add_test(s, "index_select: bad index values, dtypes, dims", test_bad_arguments);
    CU_add_test(s, "index_select: a backend without the slots gives the same bits (one-hot gemm)",
                test_fallback_same_bits);
    return tu_run();
}
