/* tests/layers/test_resample.c - what the conformance table cannot show for
 * plugins/resample: bad configs and inputs are refused with PyTorch's
 * reasons (never a crash), and upsample on a large tensor keeps exact values
 * (nearest x2 is a copy; bilinear of a constant is the constant). */
#include "test_util.h"

static nnm_ctx *g_ctx;
#define TU_CTX g_ctx

static int suite_init(void) { return tu_ctx_new(&g_ctx); }
static int suite_clean(void) { return tu_ctx_free(&g_ctx); }

static void expect_create_fails(const char *layer, nnm_config *cfg, nnm_status want, const char *needle) {
    nnm_module *m = NULL;
    CHECK_ERROR(nnm_module_create(g_ctx, layer, cfg, &m), want, needle);
    CU_ASSERT_PTR_NULL(m);
    nnm_module_release(m);
}

static void test_bad_configs(void) {
    LEAK_CHECK_BEGIN();
    nnm_config *c = NULL;
    nnm_config_new(&c);
    expect_create_fails("upsample", c, NNM_E_INVALID, "either size or scale_factor should be defined");
    nnm_config_set_int(c, "size", 4);
    nnm_config_set_float(c, "scale_factor", 2.0);
    expect_create_fails("upsample", c, NNM_E_INVALID, "only one of size or scale_factor");
    nnm_config_free(c);
    nnm_config_new(&c);
    nnm_config_set_float(c, "scale_factor", 2.0);
    nnm_config_set_bool(c, "align_corners", 1);
    expect_create_fails("upsample", c, NNM_E_INVALID, "align_corners option can only be set");
    nnm_config_set_str(c, "mode", "cubic");
    expect_create_fails("upsample", c, NNM_E_INVALID, "mode must be");
    nnm_config_free(c);
    nnm_config_new(&c);
    nnm_config_set_float(c, "scale_factor", -1.0);
    expect_create_fails("upsample", c, NNM_E_INVALID, "scale_factor entries must be > 0");
    nnm_config_free(c);
    nnm_config_new(&c); /* antialias: bilinear and bicubic only, as F.interpolate */
    nnm_config_set_float(c, "scale_factor", 0.5);
    nnm_config_set_bool(c, "antialias", 1);
    expect_create_fails("upsample", c, NNM_E_INVALID, "Anti-alias option is only supported for bilinear and bicubic");
    nnm_config_set_str(c, "mode", "bicubic");
    nnm_module *m = NULL;
    CHECK_STATUS(nnm_module_create(g_ctx, "upsample", c, &m), NNM_OK);
    char repr[128] = "";
    nnm_module_repr(m, repr, sizeof repr);
    CU_ASSERT_PTR_NOT_NULL(strstr(repr, "Upsample(scale_factor=0.5, mode=bicubic, antialias=True)"));
    nnm_module_release(m);
    nnm_config_free(c);
    nnm_config_new(&c);
    nnm_config_set_int(c, "upscale_factor", 0);
    expect_create_fails("pixel_shuffle", c, NNM_E_INVALID, "upscale_factor must be >= 1");
    nnm_config_free(c);
    nnm_config_new(&c);
    const int64_t three[3] = {1, 2, 3};
    nnm_config_set_ints(c, "padding", three, 3);
    expect_create_fails("reflection_pad2d", c, NNM_E_SHAPE, "padding");
    nnm_config_free(c);
    nnm_config_new(&c);
    nnm_config_set_int(c, "padding", 1);
    expect_create_fails("constant_pad1d", c, NNM_E_NOT_FOUND, "config.value");
    nnm_config_free(c);
    LEAK_CHECK_END();
}

static nnm_status call_with(const char *layer, nnm_config *c, int32_t ndim, const int64_t *shape) {
    nnm_module *m = tu_module(g_ctx, layer, c);
    if (!m) return NNM_E_PLUGIN;
    static float zeros[4096];
    nnm_tensor *x = tu_tf32(g_ctx, ndim, shape, zeros), *y = NULL;
    nnm_status st = tu_call1(m, x, &y);
    nnm_tensor_release(y);
    nnm_tensor_release(x);
    nnm_module_release(m);
    return st;
}

static void test_bad_inputs(void) {
    LEAK_CHECK_BEGIN();
    nnm_config *c = NULL;
    nnm_config_new(&c);
    nnm_config_set_float(c, "scale_factor", 2.0);
    nnm_config_set_str(c, "mode", "bilinear");
    CHECK_ERROR(call_with("upsample", c, 3, (int64_t[]){1, 2, 3}), NNM_E_SHAPE,
                "Got 3D input, but bilinear mode needs 4D input");
    nnm_config_free(c);
    nnm_config_new(&c);
    const int64_t sz[2] = {4, 4};
    nnm_config_set_ints(c, "size", sz, 2);
    CHECK_ERROR(call_with("upsample", c, 5, (int64_t[]){1, 1, 2, 2, 2}), NNM_E_SHAPE, "3 spatial dimensions");
    nnm_config_free(c);
    nnm_config_new(&c);
    nnm_config_set_int(c, "upscale_factor", 2);
    CHECK_ERROR(call_with("pixel_shuffle", c, 4, (int64_t[]){1, 6, 2, 2}), NNM_E_SHAPE,
                "divisible by the square of upscale_factor");
    CHECK_ERROR(call_with("pixel_shuffle", c, 2, (int64_t[]){4, 4}), NNM_E_SHAPE, "at least 3 dimensions");
    nnm_config_free(c);
    nnm_config_new(&c);
    nnm_config_set_int(c, "downscale_factor", 2);
    CHECK_ERROR(call_with("pixel_unshuffle", c, 4, (int64_t[]){1, 1, 3, 4}), NNM_E_SHAPE, "divisible");
    nnm_config_free(c);
    nnm_config_new(&c);
    nnm_config_set_int(c, "padding", 3);
    CHECK_ERROR(call_with("reflection_pad1d", c, 3, (int64_t[]){1, 2, 3}), NNM_E_SHAPE,
                "padding size should be less than the corresponding input dimension");
    CHECK_ERROR(call_with("replication_pad2d", c, 2, (int64_t[]){3, 3}), NNM_E_SHAPE, "expects 3 or 4 dims");
    nnm_config_free(c);
    nnm_config_new(&c);
    nnm_config_set_int(c, "padding", -2);
    nnm_config_set_float(c, "value", 1.0);
    CHECK_ERROR(call_with("constant_pad1d", c, 2, (int64_t[]){2, 3}), NNM_E_SHAPE, "leaves no elements");
    nnm_config_free(c);
    LEAK_CHECK_END();
}

/* [1, 3, 32, 40] nearest x2: every output is its input value exactly;
 * bilinear of a constant image is that constant. */
static void test_exact_values(void) {
    LEAK_CHECK_BEGIN();
    static float x[3 * 32 * 40];
    tu_fill_uniform(x, sizeof x / sizeof x[0], 5u, -1.0, 1.0);
    const int64_t shape[4] = {1, 3, 32, 40};
    nnm_config *c = NULL;
    nnm_config_new(&c);
    nnm_config_set_float(c, "scale_factor", 2.0);
    nnm_module *m = tu_module(g_ctx, "upsample", c);
    nnm_tensor *tx = tu_tf32(g_ctx, 4, shape, x), *y = NULL;
    CHECK_STATUS(tu_call1(m, tx, &y), NNM_OK);
    const float *py = tu_cpu_data(y);
    int bad = 0;
    for (int ch = 0; ch < 3; ch++)
        for (int i = 0; i < 64; i++)
            for (int j = 0; j < 80; j++)
                bad += py[(ch * 64 + i) * 80 + j] != x[(ch * 32 + i / 2) * 40 + j / 2];
    CU_ASSERT_EQUAL(bad, 0);
    nnm_tensor_release(y);
    nnm_module_release(m);
    nnm_config_set_str(c, "mode", "bicubic");
    m = tu_module(g_ctx, "upsample", c);
    for (size_t i = 0; i < sizeof x / sizeof x[0]; i++) x[i] = 0.75f;
    nnm_tensor_release(tx);
    tx = tu_tf32(g_ctx, 4, shape, x);
    CHECK_STATUS(tu_call1(m, tx, &y), NNM_OK);
    py = tu_cpu_data(y);
    bad = 0;
    for (int i = 0; i < 3 * 64 * 80; i++) bad += !tu_near(py[i], 0.75, 1e-6, 1e-6);
    CU_ASSERT_EQUAL(bad, 0);
    nnm_tensor_release(y);
    nnm_module_release(m);
    nnm_config_free(c);
    nnm_tensor_release(tx);
    LEAK_CHECK_END();
}

int main(void) {
    CU_pSuite s = tu_suite("resample", suite_init, suite_clean);
    CU_add_test(s, "resample: bad configs refused", test_bad_configs);
    CU_add_test(s, "resample: bad inputs refused with PyTorch's reasons", test_bad_inputs);
    CU_add_test(s, "upsample: nearest x2 copies, bicubic keeps a constant", test_exact_values);
    return tu_run();
}
