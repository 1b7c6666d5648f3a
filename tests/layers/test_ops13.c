/* tests/layers/test_ops13.c - the ABI 1.3 host ops that golden vectors cannot
 * pin: the context's RNG (seeded contexts reproduce tensors, the Bernoulli
 * rate is what was asked), in-place buffer updates (refused on a tensor that
 * requires grad), op_full, and the errors of bad arguments. Driven through
 * the op_probe fixture layer (tests/layers/op_probe.c). */
#include "test_util.h"

static nnm_ctx *ctx_seeded(uint64_t seed) {
    nnm_ctx_options o = {sizeof o, NNM_CTX_NO_DISCOVERY, seed};
    nnm_ctx *c = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_ctx_new(&o, &c), NNM_OK);
    CU_ASSERT_EQUAL_FATAL(nnm_plugin_load(c, NNM_TEST_CPU_PLUGIN), NNM_OK);
    CU_ASSERT_EQUAL_FATAL(nnm_plugin_load(c, NNM_TEST_OP_PROBE), NNM_OK);
    return c;
}

static nnm_module *probe(nnm_ctx *c, const char *op, int64_t dist, double a, double b, int64_t n) {
    nnm_config *cfg = NULL;
    nnm_config_new(&cfg);
    nnm_config_set_str(cfg, "op", op);
    nnm_config_set_int(cfg, "dist", dist);
    nnm_config_set_float(cfg, "a", a);
    nnm_config_set_float(cfg, "b", b);
    nnm_config_set_float(cfg, "alpha", a);
    nnm_config_set_float(cfg, "beta", b);
    nnm_config_set_float(cfg, "value", a);
    int64_t shape[1] = {n};
    nnm_config_set_ints(cfg, "ints", shape, 1);
    nnm_module *m = tu_module(c, "op_probe", cfg);
    nnm_config_free(cfg);
    return m;
}

/* Draws n values of `dist` from a fresh context seeded `seed` (malloc'd). */
static float *draw(uint64_t seed, int64_t dist, double a, double b, int64_t n, int calls) {
    nnm_ctx *c = ctx_seeded(seed);
    nnm_module *m = probe(c, "rand", dist, a, b, n);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    nnm_tensor *dummy = NULL, *y = NULL;
    int64_t one[1] = {1};
    float z = 0;
    CU_ASSERT_EQUAL(nnm_tensor_from_f32(c, 1, one, &z, &dummy), NNM_OK);
    float *v = NULL;
    for (int k = 0; k < calls; k++) {
        nnm_tensor_release(y);
        y = NULL;
        CU_ASSERT_EQUAL_FATAL(nnm_module_call(m, &dummy, 1, &y, 1), NNM_OK);
    }
    int64_t got = 0;
    v = tu_read_f32(y, &got);
    CU_ASSERT_EQUAL(got, n);
    nnm_tensor_release(y);
    nnm_tensor_release(dummy);
    nnm_module_release(m);
    nnm_ctx_free(c);
    return v;
}

static void test_rand_reproducible(void) {
    const int64_t n = 4000;
    float *a = draw(7, NNM_RAND_BERNOULLI, 0.7, 1.0 / 0.7, n, 2);
    float *b = draw(7, NNM_RAND_BERNOULLI, 0.7, 1.0 / 0.7, n, 2);
    float *c = draw(8, NNM_RAND_BERNOULLI, 0.7, 1.0 / 0.7, n, 2);
    float *d = draw(7, NNM_RAND_BERNOULLI, 0.7, 1.0 / 0.7, n, 1); /* the first mask of the stream */
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    CU_ASSERT_EQUAL(memcmp(a, b, (size_t)n * sizeof *a), 0); /* same seed, same calls: same mask */
    CU_ASSERT_NOT_EQUAL(memcmp(a, c, (size_t)n * sizeof *a), 0); /* another seed: another mask */
    CU_ASSERT_NOT_EQUAL(memcmp(a, d, (size_t)n * sizeof *a), 0); /* the stream moves on */
    int64_t kept = 0;
    for (int64_t i = 0; i < n; i++) {
        CU_ASSERT_TRUE(a[i] == 0.0f || a[i] == (float)(1.0 / 0.7));
        kept += a[i] != 0.0f;
    }
    /* 4000 draws of p = 0.7: the sd of the rate is 0.0072; 0.05 is 7 sd */
    CU_ASSERT_TRUE(fabs((double)kept / (double)n - 0.7) < 0.05);
    free(a), free(b), free(c), free(d);
    float *u = draw(3, NNM_RAND_UNIFORM, -2.0, 3.0, n, 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(u);
    double mean = 0;
    for (int64_t i = 0; i < n; i++) {
        CU_ASSERT_TRUE(u[i] >= -2.0f && u[i] < 3.0f);
        mean += u[i];
    }
    CU_ASSERT_TRUE(fabs(mean / (double)n - 0.5) < 0.15); /* sd of the mean: 0.023 */
    free(u);
}

static void test_update_in_place(void) {
    nnm_ctx *c = ctx_seeded(1);
    nnm_module *m = probe(c, "update", 0, 0.9, 0.1, 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    int64_t shape[2] = {2, 3}, bshape[1] = {3};
    float dv[6] = {1, 2, 3, 4, 5, 6}, sv[3] = {10, 20, 30};
    nnm_tensor *dst = NULL, *src = NULL, *y = NULL;
    CU_ASSERT_EQUAL(nnm_tensor_from_f32(c, 2, shape, dv, &dst), NNM_OK);
    CU_ASSERT_EQUAL(nnm_tensor_from_f32(c, 1, bshape, sv, &src), NNM_OK);
    nnm_tensor *in[2] = {dst, src};
    int prev = nnm_grad_set_enabled(0);
    CU_ASSERT_EQUAL(nnm_module_call(m, in, 2, &y, 1), NNM_OK);
    nnm_grad_set_enabled(prev);
    CU_ASSERT_PTR_EQUAL(y, dst); /* in place */
    float got[6];
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(dst, got, 6), NNM_OK);
    for (int i = 0; i < 6; i++) CU_ASSERT_DOUBLE_EQUAL(got[i], 0.9f * dv[i] + 0.1f * sv[i % 3], 1e-5);
    nnm_tensor_release(y);
    /* a tensor that requires grad is refused, and left alone */
    CU_ASSERT_EQUAL(nnm_tensor_set_requires_grad(dst, 1), NNM_OK);
    y = NULL;
    CU_ASSERT_EQUAL(nnm_module_call(m, in, 2, &y, 1), NNM_E_STATE);
    CU_ASSERT_PTR_NOT_NULL(strstr(nnm_ctx_errmsg(c), "requires grad"));
    float again[6];
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(dst, again, 6), NNM_OK);
    CU_ASSERT_EQUAL(memcmp(got, again, sizeof got), 0);
    nnm_tensor_release(src);
    nnm_tensor_release(dst);
    nnm_module_release(m);
    nnm_ctx_free(c);
}

static void test_full_and_errors(void) {
    nnm_ctx *c = ctx_seeded(1);
    nnm_module *m = probe(c, "full", 0, 2.5, 0, 5);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    int64_t one[1] = {1};
    float z = 0, v[5];
    nnm_tensor *x = NULL, *y = NULL;
    CU_ASSERT_EQUAL(nnm_tensor_from_f32(c, 1, one, &z, &x), NNM_OK);
    CU_ASSERT_EQUAL(nnm_module_call(m, &x, 1, &y, 1), NNM_OK);
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(y, v, 5), NNM_OK);
    for (int i = 0; i < 5; i++) CU_ASSERT_EQUAL(v[i], 2.5f);
    nnm_tensor_release(y);
    nnm_module_release(m);
    /* a Bernoulli probability outside [0, 1] */
    m = probe(c, "rand", NNM_RAND_BERNOULLI, 1.5, 1, 4);
    y = NULL;
    CU_ASSERT_EQUAL(nnm_module_call(m, &x, 1, &y, 1), NNM_E_INVALID);
    CU_ASSERT_PTR_NOT_NULL(strstr(nnm_ctx_errmsg(c), "bernoulli"));
    nnm_module_release(m);
    /* bmm of shapes that do not multiply names both */
    m = probe(c, "bmm", 0, 0, 0, 1);
    int64_t sa[3] = {2, 3, 4}, sb[3] = {2, 5, 6};
    float buf[60] = {0};
    nnm_tensor *a = NULL, *b = NULL;
    nnm_tensor_from_f32(c, 3, sa, buf, &a);
    nnm_tensor_from_f32(c, 3, sb, buf, &b);
    nnm_tensor *in[2] = {a, b};
    CU_ASSERT_EQUAL(nnm_module_call(m, in, 2, &y, 1), NNM_E_SHAPE);
    CU_ASSERT_PTR_NOT_NULL(strstr(nnm_ctx_errmsg(c), "[2, 3, 4]"));
    nnm_tensor_release(a);
    nnm_tensor_release(b);
    nnm_module_release(m);
    nnm_tensor_release(x);
    nnm_ctx_free(c);
}

int main(void) {
    CU_pSuite s = tu_suite("ops13", NULL, NULL);
    if (!s) return 1;
    CU_add_test(s, "rand: seeded contexts reproduce tensors; Bernoulli rate, uniform range", test_rand_reproducible);
    CU_add_test(s, "update: in place, broadcast, refused on a tensor that requires grad", test_update_in_place);
    CU_add_test(s, "full; bad arguments are errors with messages", test_full_and_errors);
    return tu_run();
}
