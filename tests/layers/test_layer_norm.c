/* tests/layers/test_layer_norm.c - host->op_layer_norm (ABI 1.5) and the cpu
 * backend's layer_norm slots, beyond the PyTorch goldens
 * (tests/golden/layers/op_layer_norm_*: values, gradients, finite
 * differences) and the conformance suite's fused/composed runs:
 *   - a double-precision reference on shapes around the kernel's 16-float
 *     lanes and row chunks, with and without residual and affine, forward
 *     and every gradient (the residual's equals x's);
 *   - the same bits on 1 and 2 threads, forward and backward;
 *   - bad arguments fail with a status and a message naming the problem. */
#include "test_util.h"

#include <math.h>

static nnm_ctx *g_ctx;
#define TU_CTX g_ctx

static nnm_module *ln_probe(int flags, int k, double eps) {
    nnm_config *cfg = NULL;
    nnm_config_new(&cfg);
    nnm_config_set_str(cfg, "op", "layer_norm");
    nnm_config_set_int(cfg, "bn_flags", flags);
    nnm_config_set_int(cfg, "dim", k);
    nnm_config_set_float(cfg, "eps", eps);
    nnm_module *m = tu_module(g_ctx, "op_probe", cfg);
    nnm_config_free(cfg);
    return m;
}

static float frand(uint32_t *s) {
    *s = *s * 1664525u + 1013904223u;
    return (float)((*s >> 8) & 0xffff) / 32768.0f - 1.0f;
}

/* One case: x [rows, cols] (+ r), w, b per flags; upstream g. Runs the
 * probe with grad, backward of sum(y * g); compares with the double
 * reference. Returns the output and grads in out[] when asked (for the
 * thread test). */
typedef struct ln_run {
    float *y, *gx, *gr, *gw, *gb;
} ln_run;

static void ln_run_free(ln_run *r) {
    free(r->y), free(r->gx), free(r->gr), free(r->gw), free(r->gb);
    memset(r, 0, sizeof *r);
}

static int run_case(int64_t rows, int64_t cols, int flags, double eps, uint32_t seed, ln_run *res) {
    const int64_t n = rows * cols;
    float *x = malloc(sizeof(float) * (size_t)n), *r = malloc(sizeof(float) * (size_t)n),
          *g = malloc(sizeof(float) * (size_t)n), *w = malloc(sizeof(float) * (size_t)cols),
          *b = malloc(sizeof(float) * (size_t)cols);
    for (int64_t i = 0; i < n; i++) x[i] = 3.0f + 2.0f * frand(&seed), r[i] = frand(&seed), g[i] = frand(&seed);
    for (int64_t i = 0; i < cols; i++) w[i] = 1.0f + 0.5f * frand(&seed), b[i] = 0.5f * frand(&seed);
    const int64_t shape[2] = {rows, cols};
    nnm_tensor *in[4], *xt = tu_tf32(g_ctx, 2, shape, x), *rt = NULL, *wt = NULL, *bt = NULL;
    uint32_t ni = 0;
    in[ni++] = xt;
    if (flags & 1) in[ni++] = rt = tu_tf32(g_ctx, 2, shape, r);
    if (flags & 2) in[ni++] = wt = tu_tf32(g_ctx, 1, &cols, w);
    if (flags & 4) in[ni++] = bt = tu_tf32(g_ctx, 1, &cols, b);
    for (uint32_t i = 0; i < ni; i++) nnm_tensor_set_requires_grad(in[i], 1);
    nnm_module *m = ln_probe(flags, 1, eps);
    nnm_tensor *y = NULL, *gt = tu_tf32(g_ctx, 2, shape, g);
    int bad = 0;
    CHECK_STATUS(nnm_module_call(m, in, ni, &y, 1), NNM_OK);
    if (y) CHECK_STATUS(nnm_backward(y, gt, 0), NNM_OK);
    float *yv = y ? tu_read_f32(y, NULL) : NULL;
    float *gx = tu_read_f32(nnm_tensor_grad(xt), NULL);
    float *gr = rt ? tu_read_f32(nnm_tensor_grad(rt), NULL) : NULL;
    float *gw = wt ? tu_read_f32(nnm_tensor_grad(wt), NULL) : NULL;
    float *gb = bt ? tu_read_f32(nnm_tensor_grad(bt), NULL) : NULL;
    CU_ASSERT_PTR_NOT_NULL_FATAL(yv);
    CU_ASSERT_PTR_NOT_NULL_FATAL(gx);
    double *dgw = calloc((size_t)cols, sizeof(double)), *dgb = calloc((size_t)cols, sizeof(double));
    for (int64_t i = 0; i < rows; i++) {
        double mean = 0, var = 0, v[4096];
        for (int64_t c = 0; c < cols; c++) v[c] = (double)x[i * cols + c] + ((flags & 1) ? (double)r[i * cols + c] : 0);
        for (int64_t c = 0; c < cols; c++) mean += v[c];
        mean /= (double)cols;
        for (int64_t c = 0; c < cols; c++) var += (v[c] - mean) * (v[c] - mean);
        var /= (double)cols;
        const double rs = 1.0 / sqrt(var + eps);
        double s1 = 0, s2 = 0;
        for (int64_t c = 0; c < cols; c++) {
            const double xh = (v[c] - mean) * rs, wc = (flags & 2) ? w[c] : 1.0, bc = (flags & 4) ? b[c] : 0.0;
            const double want = xh * wc + bc, gw_ = g[i * cols + c] * wc;
            if (fabs(yv[i * cols + c] - want) > 1e-5 + 1e-5 * fabs(want)) bad++;
            s1 += gw_, s2 += gw_ * xh;
            dgw[c] += g[i * cols + c] * xh, dgb[c] += g[i * cols + c];
        }
        for (int64_t c = 0; c < cols; c++) {
            const double xh = (v[c] - mean) * rs, wc = (flags & 2) ? w[c] : 1.0;
            const double want = rs * (g[i * cols + c] * wc - s1 / (double)cols - xh * s2 / (double)cols);
            if (fabs(gx[i * cols + c] - want) > 1e-4 + 1e-4 * fabs(want)) bad++;
            if (gr && gr[i * cols + c] != gx[i * cols + c]) bad++;
        }
    }
    for (int64_t c = 0; c < cols; c++) {
        if (gw && fabs(gw[c] - dgw[c]) > 1e-4 * (1 + fabs(dgw[c]))) bad++;
        if (gb && fabs(gb[c] - dgb[c]) > 1e-4 * (1 + fabs(dgb[c]))) bad++;
    }
    if (bad) fprintf(stderr, "\n  layer_norm %lld x %lld flags %d: %d values off\n", (long long)rows, (long long)cols, flags, bad);
    if (res) {
        res->y = yv, res->gx = gx, res->gr = gr, res->gw = gw, res->gb = gb;
    } else {
        free(yv), free(gx), free(gr), free(gw), free(gb);
    }
    free(dgw), free(dgb);
    nnm_tensor_release(y), nnm_tensor_release(gt);
    for (uint32_t i = 0; i < ni; i++) nnm_tensor_release(in[i]);
    nnm_module_release(m);
    free(x), free(r), free(g), free(w), free(b);
    return bad;
}

static void test_reference(void) {
    static const int64_t shapes[][2] = {{1, 1}, {1, 2}, {3, 15}, {4, 16}, {5, 17}, {9, 47}, {17, 256}, {33, 100}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int flags = 0; flags < 8; flags++)
            CU_ASSERT_EQUAL(run_case(shapes[s][0], shapes[s][1], flags, 1e-5, (uint32_t)(7 + s * 8 + flags), NULL), 0);
}

static int same_bits(const float *a, const float *b, int64_t n) {
    if (!a || !b) return a == b;
    return memcmp(a, b, sizeof(float) * (size_t)n) == 0;
}

/* 64 x 1100 (above the threading threshold): the bits on 1 and 2 threads */
static void test_threads_same_bits(void) {
    const int64_t rows = 64, cols = 1100;
    ln_run one = {0}, two = {0};
    CU_ASSERT_EQUAL(nnm_ctx_set_num_threads(g_ctx, 1), NNM_OK);
    CU_ASSERT_EQUAL(run_case(rows, cols, 7, 1e-5, 99, &one), 0);
    CU_ASSERT_EQUAL(nnm_ctx_set_num_threads(g_ctx, 2), NNM_OK);
    CU_ASSERT_EQUAL(run_case(rows, cols, 7, 1e-5, 99, &two), 0);
    CU_ASSERT_TRUE(same_bits(one.y, two.y, rows * cols));
    CU_ASSERT_TRUE(same_bits(one.gx, two.gx, rows * cols));
    CU_ASSERT_TRUE(same_bits(one.gw, two.gw, cols));
    CU_ASSERT_TRUE(same_bits(one.gb, two.gb, cols));
    ln_run_free(&one), ln_run_free(&two);
    CU_ASSERT_EQUAL(nnm_ctx_set_num_threads(g_ctx, 1), NNM_OK);
}

static void expect_fail(nnm_module *m, nnm_tensor **in, uint32_t n, nnm_status want, const char *needle) {
    nnm_tensor *y = NULL;
    CU_ASSERT_EQUAL(nnm_module_call(m, in, n, &y, 1), want);
    CU_ASSERT_PTR_NULL(y);
    const char *msg = nnm_ctx_errmsg(g_ctx);
    if (!strstr(msg, needle)) fprintf(stderr, "\n  message '%s' lacks '%s'\n", msg, needle);
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, needle));
    nnm_tensor_release(y);
}

static void test_bad_arguments(void) {
    const int64_t s23[2] = {2, 3}, s3[1] = {3}, s4[1] = {4}, s32[2] = {3, 2};
    const float v[6] = {0, 1, 2, 3, 4, 5};
    nnm_tensor *x = tu_tf32(g_ctx, 2, s23, v), *w3 = tu_tf32(g_ctx, 1, s3, v), *w4 = tu_tf32(g_ctx, 1, s4, v),
               *r32 = tu_tf32(g_ctx, 2, s32, v);
    nnm_module *m = ln_probe(0, 3, 1e-5);
    expect_fail(m, &x, 1, NNM_E_SHAPE, "normalized_ndim must be in [1, 2]");
    nnm_module_release(m);
    m = ln_probe(0, 0, 1e-5);
    expect_fail(m, &x, 1, NNM_E_SHAPE, "normalized_ndim");
    nnm_module_release(m);
    m = ln_probe(0, 1, -1.0);
    expect_fail(m, &x, 1, NNM_E_INVALID, "eps");
    nnm_module_release(m);
    m = ln_probe(2, 1, 1e-5);
    nnm_tensor *in[2] = {x, w4};
    expect_fail(m, in, 2, NNM_E_SHAPE, "weight [4]");
    in[1] = w3;
    nnm_tensor *y = NULL;
    CHECK_STATUS(nnm_module_call(m, in, 2, &y, 1), NNM_OK);
    nnm_tensor_release(y);
    nnm_module_release(m);
    m = ln_probe(1, 1, 1e-5);
    in[1] = r32;
    expect_fail(m, in, 2, NNM_E_SHAPE, "residual [3, 2]");
    nnm_module_release(m);
    const int64_t i64s[1] = {2};
    nnm_tensor *xi = tu_ti64(g_ctx, 1, i64s, (const int64_t[]){1, 2});
    m = ln_probe(0, 1, 1e-5);
    expect_fail(m, &xi, 1, NNM_E_DTYPE, "f32");
    nnm_module_release(m);
    nnm_tensor_release(xi), nnm_tensor_release(x), nnm_tensor_release(w3), nnm_tensor_release(w4);
    nnm_tensor_release(r32);
}

/* Rows of one constant value: variance 0, the output is bias (rstd =
 * 1/sqrt(eps)), the gradient finite. */
static void test_constant_rows(void) {
    const int64_t s[2] = {3, 20};
    float v[60];
    for (int i = 0; i < 60; i++) v[i] = 5.0f;
    nnm_tensor *x = tu_tf32(g_ctx, 2, s, v);
    nnm_tensor_set_requires_grad(x, 1);
    nnm_module *m = ln_probe(0, 1, 1e-5);
    nnm_tensor *y = NULL;
    CHECK_STATUS(nnm_module_call(m, &x, 1, &y, 1), NNM_OK);
    float *yv = y ? tu_read_f32(y, NULL) : NULL;
    CU_ASSERT_PTR_NOT_NULL_FATAL(yv);
    for (int i = 0; i < 60; i++) CU_ASSERT_EQUAL(yv[i], 0.0f);
    nnm_tensor *g = tu_tf32(g_ctx, 2, s, v);
    CHECK_STATUS(nnm_backward(y, g, 0), NNM_OK);
    nnm_tensor_release(g);
    float *gx = tu_read_f32(nnm_tensor_grad(x), NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(gx);
    for (int i = 0; i < 60; i++) CU_ASSERT_TRUE(isfinite(gx[i]));
    free(yv), free(gx);
    nnm_tensor_release(y), nnm_tensor_release(x);
    nnm_module_release(m);
}

static int suite_init(void) {
    nnm_ctx_options o = {sizeof o, NNM_CTX_NO_DISCOVERY, 0};
    if (nnm_ctx_new(&o, &g_ctx) != NNM_OK) return 1;
    static const char *const plugins[] = {NNM_TEST_CPU_PLUGIN, NNM_TEST_OP_PROBE};
    for (int i = 0; i < 2; i++)
        if (nnm_plugin_load(g_ctx, plugins[i]) != NNM_OK) {
            fprintf(stderr, "%s: %s\n", plugins[i], nnm_ctx_errmsg(g_ctx));
            return 1;
        }
    return 0;
}

static int suite_clean(void) { return tu_ctx_free(&g_ctx); }

int main(void) {
    CU_pSuite s = tu_suite("layer_norm", suite_init, suite_clean);
    if (!s) return 1;
    CU_add_test(s, "op_layer_norm: double reference, residual and affine, every gradient", test_reference);
    CU_add_test(s, "op_layer_norm: the same bits on 1 and 2 threads", test_threads_same_bits);
    CU_add_test(s, "op_layer_norm: bad arguments", test_bad_arguments);
    CU_add_test(s, "op_layer_norm: constant rows", test_constant_rows);
    return tu_run();
}
