/* tests/layers/test_activations.c - what the conformance table cannot show
 * for the activations composed from host ops (issue 18): gradients exactly
 * AT the kinks (the golden inputs stay 0.05 away from them), checked against
 * the values PyTorch 1.13 gives (torch.autograd on x = [-3, 0, 3, 6, -1]
 * and x = [0.5, 0, -0.5]); no NaN from the branch not taken at |x| = 100;
 * bad configs and inputs refused with a message. */
#include "test_util.h"

#include <math.h>

static nnm_ctx *g_ctx;
#define TU_CTX g_ctx

static int suite_init(void) { return tu_ctx_new(&g_ctx); }
static int suite_clean(void) { return tu_ctx_free(&g_ctx); }

/* d sum(layer(x)) / dx into g (n values); 1 on success. */
static int grad_of(const char *layer, nnm_config *cfg, const float *x, int64_t n, float *y, float *g) {
    nnm_module *m = tu_module(g_ctx, layer, cfg);
    if (m == NULL) return 0;
    nnm_tensor *tx = tu_tf32(g_ctx, 1, &n, x), *ty = NULL, *s = NULL;
    nnm_tensor_set_requires_grad(tx, 1);
    int ok = 0;
    if (nnm_module_call(m, &tx, 1, &ty, 1) == NNM_OK && nnm_tensor_to_f32(ty, y, (size_t)n) == NNM_OK) {
        float ones[8] = {1, 1, 1, 1, 1, 1, 1, 1};
        s = tu_tf32(g_ctx, 1, &n, ones);
        ok = nnm_backward(ty, s, 0) == NNM_OK && nnm_tensor_grad(tx) != NULL &&
             nnm_tensor_to_f32(nnm_tensor_grad(tx), g, (size_t)n) == NNM_OK;
    }
    if (!ok) fprintf(stderr, "\n  %s: %s\n", layer, nnm_ctx_errmsg(g_ctx));
    nnm_tensor_release(s);
    nnm_tensor_release(ty);
    nnm_tensor_release(tx);
    nnm_module_release(m);
    return ok;
}

typedef struct kink_case {
    const char *layer;
    const char *key1;
    double v1;
    const char *key2;
    double v2;
    float want[5]; /* PyTorch's gradient at x = -3, 0, 3, 6, -1 */
} kink_case;

static void test_kinks(void) {
    LEAK_CHECK_BEGIN();
    static const float x[5] = {-3, 0, 3, 6, -1};
    static const kink_case cases[] = {
        {"hardsigmoid", NULL, 0, NULL, 0, {0.0f, 0.16666667f, 0.0f, 0.0f, 0.16666667f}},
        {"relu6", NULL, 0, NULL, 0, {0, 0, 1, 0, 0}},
        {"hardtanh", NULL, 0, NULL, 0, {0, 1, 0, 0, 0}},
        {"hardtanh", "min_val", -3, "max_val", 3, {0, 1, 0, 0, 1}},
        {"logsigmoid", NULL, 0, NULL, 0, {0.95257413f, 0.5f, 0.047425874f, 0.0024726233f, 0.7310586f}},
        {"selu", NULL, 0, NULL, 0, {0.087530605f, 1.7580993f, 1.050701f, 1.050701f, 0.64676863f}},
        {"celu", NULL, 0, NULL, 0, {0.049787067f, 1, 1, 1, 0.36787945f}},
        {"softsign", NULL, 0, NULL, 0, {0.0625f, 1, 0.0625f, 0.020408168f, 0.25f}},
        {"threshold", "threshold", 0, "value", 5, {0, 0, 1, 1, 0}},
        {"threshold", "threshold", 3, "value", 5, {0, 0, 0, 1, 0}},
        {"mish", NULL, 0, NULL, 0, {-0.093393125f, 0.6f, 1.021107f, 1.000134f, 0.05921673f}},
        {"softplus", "beta", 1, "threshold", 3, {0.047425874f, 0.5f, 0.95257413f, 1, 0.26894143f}},
        {"prelu", NULL, 0, NULL, 0, {0.25f, 0.25f, 1, 1, 0.25f}},
        {"tanhshrink", NULL, 0, NULL, 0, {0.990134f, 0, 0.990134f, 0.99997544f, 0.58002567f}},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const kink_case *c = &cases[k];
        nnm_config *cfg = NULL;
        nnm_config_new(&cfg);
        if (c->key1) nnm_config_set_float(cfg, c->key1, c->v1);
        if (c->key2) nnm_config_set_float(cfg, c->key2, c->v2);
        float y[5], g[5];
        CU_ASSERT_TRUE(grad_of(c->layer, cfg, x, 5, y, g));
        nnm_config_free(cfg);
        char what[64];
        snprintf(what, sizeof what, "%s grad (case %zu)", c->layer, k);
        CU_ASSERT_EQUAL(tu_count_mismatch(what, g, c->want, 5, 1e-5, 1e-6, 0), 0);
    }
    LEAK_CHECK_END();
}

/* |x| = 100: finite values and gradients (exp of the branch not taken is
 * clamped), the linear branches exact. */
static void test_large_inputs(void) {
    LEAK_CHECK_BEGIN();
    static const char *const layers[] = {"softplus", "mish", "selu", "celu", "logsigmoid", "softsign"};
    static const float x[4] = {-100, 100, -90, 95};
    for (size_t k = 0; k < sizeof layers / sizeof layers[0]; k++) {
        float y[4], g[4];
        CU_ASSERT_TRUE(grad_of(layers[k], NULL, x, 4, y, g));
        for (int i = 0; i < 4; i++) {
            CU_ASSERT_TRUE(isfinite(y[i]) && isfinite(g[i]));
            if (!(isfinite(y[i]) && isfinite(g[i])))
                fprintf(stderr, "\n  %s(%g) = %g, grad %g\n", layers[k], (double)x[i], (double)y[i], (double)g[i]);
        }
    }
    float y[4], g[4];
    CU_ASSERT_TRUE(grad_of("softplus", NULL, x, 4, y, g));
    CU_ASSERT_EQUAL(y[1], 100.0f);
    CU_ASSERT_EQUAL(g[1], 1.0f);
    CU_ASSERT_TRUE(g[0] >= 0.0f && g[0] < 1e-40f); /* exp(-100): a denormal, as PyTorch's */
    CU_ASSERT_TRUE(grad_of("logsigmoid", NULL, x, 4, y, g));
    CU_ASSERT_EQUAL(y[0], -100.0f);
    CU_ASSERT_EQUAL(g[0], 1.0f);
    LEAK_CHECK_END();
}

/* NaN goes through as NaN (as in PyTorch). */
static void test_nan(void) {
    LEAK_CHECK_BEGIN();
    static const char *const layers[] = {"relu6", "hardtanh", "hardsigmoid", "threshold", "prelu", "selu"};
    const float x[1] = {NAN};
    for (size_t k = 0; k < sizeof layers / sizeof layers[0]; k++) {
        nnm_config *cfg = NULL;
        nnm_config_new(&cfg);
        if (!strcmp(layers[k], "threshold")) {
            nnm_config_set_float(cfg, "threshold", 0.5);
            nnm_config_set_float(cfg, "value", 2.0);
        }
        float y[1], g[1];
        CU_ASSERT_TRUE(grad_of(layers[k], cfg, x, 1, y, g));
        CU_ASSERT_TRUE(isnan(y[0]));
        nnm_config_free(cfg);
    }
    LEAK_CHECK_END();
}

static void expect_create_fails(const char *layer, nnm_config *cfg, nnm_status want, const char *needle) {
    nnm_module *m = NULL;
    CHECK_ERROR(nnm_module_create(g_ctx, layer, cfg, &m), want, needle);
    CU_ASSERT_PTR_NULL(m);
    nnm_module_release(m);
}

static void test_bad_configs_and_inputs(void) {
    LEAK_CHECK_BEGIN();
    nnm_config *c = NULL;
    nnm_config_new(&c);
    nnm_config_set_float(c, "min_val", 2.0);
    expect_create_fails("hardtanh", c, NNM_E_INVALID, "must be larger than min_val");
    nnm_config_free(c);
    nnm_config_new(&c);
    expect_create_fails("threshold", c, NNM_E_NOT_FOUND, "config.threshold: required float is missing");
    nnm_config_free(c);
    nnm_config_new(&c);
    nnm_config_set_int(c, "num_parameters", 0);
    expect_create_fails("prelu", c, NNM_E_INVALID, "num_parameters must be >= 1");
    nnm_config_free(c);
    nnm_config_new(&c);
    nnm_config_set_float(c, "alpha", 0.0);
    expect_create_fails("celu", c, NNM_E_INVALID, "alpha must not be 0");
    nnm_config_free(c);
    nnm_config_new(&c);
    nnm_config_set_bool(c, "inplace", 1);
    expect_create_fails("glu", c, NNM_E_INVALID, "config.inplace: unknown key");
    nnm_config_free(c);

    /* prelu's weights go along dim 1; glu halves an even dim */
    nnm_config_new(&c);
    nnm_config_set_int(c, "num_parameters", 3);
    nnm_module *m = tu_module(g_ctx, "prelu", c);
    nnm_config_free(c);
    float xv[12] = {0};
    const int64_t s24[2] = {3, 4}, s5[1] = {5};
    nnm_tensor *x = tu_tf32(g_ctx, 2, s24, xv), *y = NULL;
    CHECK_ERROR(tu_call1(m, x, &y), NNM_E_SHAPE, "num_parameters = 3 does not match the channel size");
    nnm_module_release(m);
    m = tu_module(g_ctx, "glu", NULL);
    nnm_tensor *x5 = tu_tf32(g_ctx, 1, s5, xv);
    CHECK_ERROR(tu_call1(m, x5, &y), NNM_E_SHAPE, "dimension 0 is size 5");
    nnm_module_release(m);
    nnm_config_new(&c);
    nnm_config_set_int(c, "dim", 2);
    m = tu_module(g_ctx, "softmin", c);
    nnm_config_free(c);
    CHECK_ERROR(tu_call1(m, x, &y), NNM_E_SHAPE, "dim 2 is out of range");
    nnm_module_release(m);
    nnm_tensor_release(x5);
    nnm_tensor_release(x);
    LEAK_CHECK_END();
}

int main(void) {
    CU_pSuite s = tu_suite("activations", suite_init, suite_clean);
    CU_add_test(s, "composed activations: PyTorch's gradients at the kinks", test_kinks);
    CU_add_test(s, "composed activations: |x| = 100 gives no inf/NaN", test_large_inputs);
    CU_add_test(s, "composed activations: NaN propagates", test_nan);
    CU_add_test(s, "composed activations: bad configs and inputs", test_bad_configs_and_inputs);
    return tu_run();
}
