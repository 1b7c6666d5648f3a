/* tests/layers/test_losses.c - what the conformance table
 * (tests/golden/conformance/<loss>.safetensors) cannot show for the losses
 * of plugins/losses (issue 18): edge values (bce_loss at x = 0 and 1, where
 * PyTorch clamps the log to -100; kl_div with zero targets; huge
 * differences for smooth_l1/huber) give finite values and gradients; empty
 * batches give PyTorch's values (mean of nothing is NaN, sum 0, "none" an
 * empty tensor); "none" output shapes; the weight buffers; bad configs and
 * inputs refused with a message naming the loss and the problem. The
 * expected values are PyTorch 1.13's. */
#include "test_util.h"

#include <dlfcn.h>
#include <math.h>

static nnm_ctx *g_ctx;
#define TU_CTX g_ctx

/* ------------------------------------------------------------------------ */
/* "cpunoctc": the cpu backend's kernels on a second device (type CUDA, host */
/* memory) without the ctc_loss slots (nor cast, index_select, ...), so the  */
/* ctc_loss layer composes its recursion from host ops there.               */
/* ------------------------------------------------------------------------ */

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

static int suite_init(void) {
    nnm_ctx_options o = {sizeof o, NNM_CTX_NO_DISCOVERY, 0};
    if (nnm_ctx_new(&o, &g_ctx) != NNM_OK) return 1;
    const nnm_plugin_desc *cpu = tu_plugin_open(NNM_TEST_CPU_PLUGIN, &g_cpu_dl);
    if (!cpu || cpu->n_backends < 1) return 1;
    g_cpu_vt = cpu->backends[0];
    static const char *const plugins[] = {NNM_TEST_CPU_PLUGIN, NNM_TEST_LOSSES_PLUGIN};
    for (int i = 0; i < 2; i++)
        if (nnm_plugin_load(g_ctx, plugins[i]) != NNM_OK) {
            fprintf(stderr, "%s: %s\n", plugins[i], nnm_ctx_errmsg(g_ctx));
            return 1;
        }
    return nnm_plugin_register_static(g_ctx, &noctc_desc, "test_losses") != NNM_OK;
}

static int suite_clean(void) {
    nnm_ctx_free(g_ctx);
    g_ctx = NULL;
    if (g_cpu_dl) dlclose(g_cpu_dl);
    return 0;
}

/* A config of up to two (key, value) pairs: a string value when the key is
 * "reduction", else a float. */
static nnm_config *cfg2(const char *k1, const char *v1, const char *k2, double v2) {
    nnm_config *c = NULL;
    nnm_config_new(&c);
    if (k1 != NULL) nnm_config_set_str(c, k1, v1);
    if (k2 != NULL) nnm_config_set_float(c, k2, v2);
    return c;
}

static nnm_module *loss(const char *layer, nnm_config *c) {
    nnm_module *m = tu_module(g_ctx, layer, c);
    nnm_config_free(c);
    return m;
}

static nnm_status call3(nnm_module *m, nnm_tensor *a, nnm_tensor *b, nnm_tensor *t,
                        nnm_tensor **out) {
    nnm_tensor *in[3] = {a, b, t};
    *out = NULL;
    return nnm_module_call(m, in, 3, out, 1);
}

static float scalar_of(nnm_tensor *t) {
    float v = NAN;
    if (t == NULL || nnm_tensor_to_f32(t, &v, 1) != NNM_OK) return NAN;
    return v;
}

/* out = loss(x, y) with x requiring grad, then d sum(out) / dx into g. */
static int loss_grad(nnm_module *m, nnm_tensor *x, nnm_tensor *y, float *out, size_t n_out,
                     float *g, size_t n) {
    nnm_tensor *o = NULL;
    CHECK_STATUS(nnm_tensor_set_requires_grad(x, 1), NNM_OK);
    int ok = tu_call2(m, x, y, &o) == NNM_OK && nnm_tensor_to_f32(o, out, n_out) == NNM_OK;
    if (ok) {
        int64_t no = nnm_tensor_numel(o);
        float ones[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
        const nnm_tensor_desc *d = nnm_tensor_desc_get(o);
        nnm_tensor *s = no <= 16 ? tu_tf32(g_ctx, d->ndim, d->shape, ones) : NULL;
        ok = s != NULL && nnm_backward(o, s, 0) == NNM_OK && nnm_tensor_grad(x) != NULL &&
             nnm_tensor_to_f32(nnm_tensor_grad(x), g, n) == NNM_OK;
        nnm_tensor_release(s);
    }
    if (!ok) fprintf(stderr, "\n  loss_grad: %s\n", nnm_ctx_errmsg(g_ctx));
    nnm_tensor_release(o);
    return ok;
}

static int all_finite(const float *v, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i])) return 0;
    return 1;
}

/* bce_loss at x = 0 and 1: PyTorch clamps log to -100, so a confident wrong
 * prediction costs 100, a right one 0; nnmod's gradients there are finite
 * (PyTorch's backward divides by max(x (1 - x), 1e-12) instead: docs). */
static void test_bce_edges(void) {
    LEAK_CHECK_BEGIN();
    const int64_t s4[1] = {4};
    const float xv[4] = {0.0f, 1.0f, 0.0f, 1.0f}, yv[4] = {1.0f, 0.0f, 0.0f, 1.0f};
    nnm_module *m = loss("bce_loss", cfg2("reduction", "none", NULL, 0));
    nnm_tensor *x = tu_tf32(g_ctx, 1, s4, xv), *y = tu_tf32(g_ctx, 1, s4, yv);
    float out[4], g[4];
    CU_ASSERT_TRUE(loss_grad(m, x, y, out, 4, g, 4));
    const float want[4] = {100.0f, 100.0f, 0.0f, 0.0f};
    CU_ASSERT_EQUAL(tu_count_mismatch("bce_loss at 0 and 1", out, want, 4, 0, 0, 0), 0);
    CU_ASSERT_TRUE(all_finite(g, 4));
    nnm_module_release(m);
    /* bce_with_logits at |x| = 100: finite, the linear branch exact */
    const float lv[4] = {-100.0f, 100.0f, 100.0f, -100.0f};
    nnm_tensor *l = tu_tf32(g_ctx, 1, s4, lv);
    m = loss("bce_with_logits", cfg2("reduction", "none", NULL, 0));
    CU_ASSERT_TRUE(loss_grad(m, l, y, out, 4, g, 4));
    const float wl[4] = {100.0f, 100.0f, 100.0f, 100.0f};
    CU_ASSERT_EQUAL(tu_count_mismatch("bce_with_logits at |x| = 100", out, wl, 4, 1e-6, 0, 0), 0);
    CU_ASSERT_TRUE(all_finite(g, 4));
    nnm_module_release(m);
    nnm_tensor_release(l);
    nnm_tensor_release(x);
    nnm_tensor_release(y);
    LEAK_CHECK_END();
}

/* kl_div: a zero target counts 0 (xlogy(0, 0) = 0), no NaN in the value or
 * the input's gradient; batchmean divides the sum by the batch size. */
static void test_kl_div_zeros(void) {
    LEAK_CHECK_BEGIN();
    const int64_t s23[2] = {2, 3};
    const float xv[6] = {-1.0f, -2.0f, -0.5f, -3.0f, -0.1f, -1.5f};
    const float tv[6] = {0.0f, 0.25f, 0.75f, 0.5f, 0.0f, 0.5f};
    nnm_module *m = loss("kl_div", cfg2("reduction", "batchmean", NULL, 0));
    nnm_tensor *x = tu_tf32(g_ctx, 2, s23, xv), *t = tu_tf32(g_ctx, 2, s23, tv);
    float out[1], g[6];
    CU_ASSERT_TRUE(loss_grad(m, x, t, out, 1, g, 6));
    double sum = 0.0;
    for (int i = 0; i < 6; i++)
        if (tv[i] > 0) sum += tv[i] * (log(tv[i]) - xv[i]);
    CU_ASSERT_TRUE(tu_near(out[0], sum / 2.0, 1e-6, 1e-6));
    CU_ASSERT_TRUE(all_finite(g, 6));
    CU_ASSERT_EQUAL(g[0], 0.0f); /* -t / N */
    CU_ASSERT_TRUE(tu_near(g[1], -0.125, 1e-6, 0));
    nnm_module_release(m);
    nnm_tensor_release(x);
    nnm_tensor_release(t);
    LEAK_CHECK_END();
}

/* smooth_l1 and huber of a difference of 1e30: the quadratic branch is not
 * evaluated there (no inf, no NaN gradient). */
static void test_huge_differences(void) {
    LEAK_CHECK_BEGIN();
    const int64_t s3[1] = {3};
    const float xv[3] = {1e30f, -1e30f, 0.25f}, yv[3] = {0.0f, 0.0f, 0.0f};
    static const char *const layers[2] = {"smooth_l1_loss", "huber_loss"};
    for (int k = 0; k < 2; k++) {
        nnm_module *m = loss(layers[k], cfg2("reduction", "none", NULL, 0));
        nnm_tensor *x = tu_tf32(g_ctx, 1, s3, xv), *y = tu_tf32(g_ctx, 1, s3, yv);
        float out[3], g[3];
        CU_ASSERT_TRUE(loss_grad(m, x, y, out, 3, g, 3));
        CU_ASSERT_TRUE(all_finite(out, 3) && all_finite(g, 3));
        CU_ASSERT_EQUAL(g[0], 1.0f);
        CU_ASSERT_EQUAL(g[1], -1.0f);
        CU_ASSERT_TRUE(tu_near(g[2], 0.25, 1e-6, 0));
        CU_ASSERT_TRUE(tu_near(out[2], 0.03125, 1e-6, 0));
        nnm_module_release(m);
        nnm_tensor_release(x);
        nnm_tensor_release(y);
    }
    LEAK_CHECK_END();
}

/* An empty batch: "mean" is NaN (0 / 0), "sum" 0, "none" an empty tensor of
 * the per-sample shape, as PyTorch. */
static void test_empty_batch(void) {
    LEAK_CHECK_BEGIN();
    const int64_t s03[2] = {0, 3}, s0[1] = {0};
    nnm_tensor *x = tu_tf32(g_ctx, 2, s03, NULL), *y = tu_tf32(g_ctx, 2, s03, NULL);
    nnm_tensor *t = tu_ti64(g_ctx, 1, s0, NULL), *y1 = tu_tf32(g_ctx, 1, s0, NULL);
    nnm_tensor *out = NULL;
    static const char *const pointwise[] = {"l1_loss", "smooth_l1_loss", "huber_loss", "mse_loss",
                                            "bce_loss", "bce_with_logits", "kl_div"};
    for (size_t k = 0; k < sizeof pointwise / sizeof pointwise[0]; k++) {
        nnm_module *m = loss(pointwise[k], NULL);
        CHECK_STATUS(tu_call2(m, x, y, &out), NNM_OK);
        CU_ASSERT_TRUE(isnan(scalar_of(out)));
        nnm_tensor_release(out);
        nnm_module_release(m);
        m = loss(pointwise[k], cfg2("reduction", "sum", NULL, 0));
        CHECK_STATUS(tu_call2(m, x, y, &out), NNM_OK);
        CU_ASSERT_EQUAL(scalar_of(out), 0.0f);
        nnm_tensor_release(out);
        nnm_module_release(m);
        m = loss(pointwise[k], cfg2("reduction", "none", NULL, 0));
        CHECK_STATUS(tu_call2(m, x, y, &out), NNM_OK);
        CU_ASSERT_TRUE(tu_shape_is(out, 2, s03));
        nnm_tensor_release(out);
        nnm_module_release(m);
    }
    nnm_module *m = loss("kl_div", cfg2("reduction", "batchmean", NULL, 0));
    CHECK_STATUS(tu_call2(m, x, y, &out), NNM_OK);
    CU_ASSERT_TRUE(isnan(scalar_of(out)));
    nnm_tensor_release(out);
    nnm_module_release(m);
    static const char *const classes[] = {"cross_entropy", "nll_loss", "multi_margin_loss"};
    for (size_t k = 0; k < sizeof classes / sizeof classes[0]; k++) {
        m = loss(classes[k], NULL);
        CHECK_STATUS(tu_call2(m, x, t, &out), NNM_OK);
        CU_ASSERT_TRUE(isnan(scalar_of(out)));
        nnm_tensor_release(out);
        nnm_module_release(m);
        m = loss(classes[k], cfg2("reduction", "none", NULL, 0));
        CHECK_STATUS(tu_call2(m, x, t, &out), NNM_OK);
        CU_ASSERT_TRUE(tu_shape_is(out, 1, s0));
        nnm_tensor_release(out);
        nnm_module_release(m);
    }
    m = loss("cosine_embedding_loss", cfg2("reduction", "sum", NULL, 0));
    CHECK_STATUS(call3(m, x, y, y1, &out), NNM_OK);
    CU_ASSERT_EQUAL(scalar_of(out), 0.0f);
    nnm_tensor_release(out);
    nnm_module_release(m);
    nnm_tensor *all[] = {x, y, t, y1};
    for (size_t i = 0; i < 4; i++)
        nnm_tensor_release(all[i]);
    LEAK_CHECK_END();
}

/* The weight becomes the buffer "weight" (PyTorch's state_dict name) with
 * the configured values; on the meta device too (shapes only). */
static void test_weight_buffer(void) {
    LEAK_CHECK_BEGIN();
    const double w[3] = {0.5, 2.0, 1.25};
    nnm_config *c = NULL;
    nnm_config_new(&c);
    nnm_config_set_floats(c, "weight", w, 3);
    nnm_module *m = tu_module(g_ctx, "cross_entropy", c);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    tu_named b;
    memset(&b, 0, sizeof b);
    CHECK_STATUS(nnm_module_named_buffers(m, tu_named_add, &b), NNM_OK);
    CU_ASSERT_EQUAL(b.n, 1);
    CU_ASSERT_STRING_EQUAL(b.names[0], "weight");
    float got[3];
    CHECK_STATUS(nnm_tensor_to_f32(b.t[0], got, 3), NNM_OK);
    CU_ASSERT_TRUE(got[0] == 0.5f && got[1] == 2.0f && got[2] == 1.25f);
    char repr[128];
    nnm_module_repr(m, repr, sizeof repr);
    CU_ASSERT_PTR_NOT_NULL(strstr(repr, "CrossEntropyLoss()"));
    /* a weight of the wrong length is refused at the call, naming both */
    const int64_t s24[2] = {2, 4}, s2[1] = {2};
    const float xv[8] = {0};
    nnm_tensor *x = tu_tf32(g_ctx, 2, s24, xv), *t = tu_ti64(g_ctx, 1, s2, (int64_t[]){0, 1});
    nnm_tensor *out = NULL;
    CHECK_ERROR(tu_call2(m, x, t, &out), NNM_E_SHAPE, "weight has 3 entries, the input 4 classes");
    nnm_module_release(m);
    nnm_module *meta = NULL;
    CHECK_STATUS(nnm_module_create_on(g_ctx, "cross_entropy", c,
                                      (nnm_device){NNM_DEVICE_META, 0}, &meta),
                 NNM_OK);
    nnm_module_release(meta);
    nnm_config_free(c);
    nnm_config_new(&c);
    nnm_config_set_floats(c, "weight", w, 0);
    nnm_module *bad = NULL;
    CHECK_ERROR(nnm_module_create(g_ctx, "bce_loss", c, &bad), NNM_E_INVALID,
                "weight must be a non-empty list");
    nnm_config_free(c);
    /* bce's weight broadcasts against the last dim */
    nnm_config_new(&c);
    nnm_config_set_floats(c, "weight", w, 3);
    m = tu_module(g_ctx, "bce_loss", c);
    nnm_config_free(c);
    nnm_tensor *p = tu_tf32(g_ctx, 2, s24, (float[]){.5f, .5f, .5f, .5f, .5f, .5f, .5f, .5f});
    CHECK_ERROR(tu_call2(m, p, p, &out), NNM_E_SHAPE, "weight of size 3 does not broadcast to input [2, 4]");
    nnm_module_release(m);
    nnm_tensor_release(p);
    nnm_tensor_release(x);
    nnm_tensor_release(t);
    LEAK_CHECK_END();
}

static void expect_create_fails(const char *layer, nnm_config *cfg, nnm_status want,
                                const char *needle) {
    nnm_module *m = NULL;
    CHECK_ERROR(nnm_module_create(g_ctx, layer, cfg, &m), want, needle);
    CU_ASSERT_PTR_NULL(m);
    nnm_module_release(m);
    nnm_config_free(cfg);
}

static void test_bad_configs(void) {
    LEAK_CHECK_BEGIN();
    expect_create_fails("smooth_l1_loss", cfg2(NULL, NULL, "beta", -1.0), NNM_E_INVALID,
                        "beta must be >= 0");
    expect_create_fails("huber_loss", cfg2(NULL, NULL, "delta", 0.0), NNM_E_INVALID,
                        "delta must be > 0");
    expect_create_fails("huber_loss", cfg2(NULL, NULL, "beta", 1.0), NNM_E_INVALID,
                        "config.beta: unknown key");
    expect_create_fails("l1_loss", cfg2("reduction", "batchmean", NULL, 0), NNM_E_INVALID,
                        "reduction must be \"mean\", \"sum\" or \"none\", got \"batchmean\"");
    expect_create_fails("kl_div", cfg2("reduction", "avg", NULL, 0), NNM_E_INVALID,
                        "\"batchmean\"");
    expect_create_fails("cosine_embedding_loss", cfg2(NULL, NULL, "margin", NAN), NNM_E_INVALID,
                        "margin must be finite");
    nnm_config *c = NULL;
    nnm_config_new(&c);
    nnm_config_set_int(c, "p", 3);
    expect_create_fails("multi_margin_loss", c, NNM_E_INVALID, "p must be 1 or 2");
    expect_create_fails("l1_loss", cfg2(NULL, NULL, "size_average", 1.0), NNM_E_INVALID,
                        "config.size_average: unknown key");
    /* the good defaults build */
    static const char *const all[] = {"l1_loss", "smooth_l1_loss", "huber_loss", "bce_loss",
                                      "kl_div", "cosine_embedding_loss", "margin_ranking_loss",
                                      "multi_margin_loss"};
    static const char *const display[] = {"L1Loss()", "SmoothL1Loss()", "HuberLoss()",
                                          "BCELoss()", "KLDivLoss()", "CosineEmbeddingLoss()",
                                          "MarginRankingLoss()", "MultiMarginLoss()"};
    for (size_t k = 0; k < sizeof all / sizeof all[0]; k++) {
        nnm_module *m = tu_module(g_ctx, all[k], NULL);
        CU_ASSERT_PTR_NOT_NULL(m);
        char repr[128] = "";
        if (m != NULL) nnm_module_repr(m, repr, sizeof repr);
        CU_ASSERT_PTR_NOT_NULL(strstr(repr, display[k]));
        nnm_module_release(m);
    }
    LEAK_CHECK_END();
}

static void test_bad_inputs(void) {
    LEAK_CHECK_BEGIN();
    const int64_t s23[2] = {2, 3}, s32[2] = {3, 2}, s2[1] = {2}, s3[1] = {3}, s223[3] = {2, 2, 3};
    float v[12];
    tu_fill_uniform(v, 12, 5, 0.1, 0.9);
    nnm_tensor *a = tu_tf32(g_ctx, 2, s23, v), *b = tu_tf32(g_ctx, 2, s32, v);
    nnm_tensor *f2 = tu_tf32(g_ctx, 1, s2, v), *f3 = tu_tf32(g_ctx, 1, s3, v);
    nnm_tensor *a3 = tu_tf32(g_ctx, 3, s223, v);
    nnm_tensor *i2 = tu_ti64(g_ctx, 1, s2, (int64_t[]){0, 2});
    nnm_tensor *bad = tu_ti64(g_ctx, 1, s2, (int64_t[]){0, 3});
    nnm_tensor *neg = tu_ti64(g_ctx, 1, s2, (int64_t[]){-1, 0});
    nnm_tensor *out = NULL;
    static const char *const pointwise[] = {"l1_loss", "smooth_l1_loss", "huber_loss", "bce_loss",
                                            "kl_div"};
    for (size_t k = 0; k < sizeof pointwise / sizeof pointwise[0]; k++) {
        nnm_module *m = loss(pointwise[k], NULL);
        CHECK_ERROR(tu_call2(m, a, b, &out), NNM_E_SHAPE,
                    "target size [3, 2] must be the same as input size [2, 3]");
        CHECK_ERROR(tu_call2(m, a, i2, &out), NNM_E_DTYPE, "must be f32");
        CU_ASSERT_NOT_EQUAL(tu_call1(m, a, &out), NNM_OK); /* arity */
        CU_ASSERT_PTR_NULL(out);
        nnm_module_release(m);
    }
    nnm_module *m = loss("cosine_embedding_loss", NULL);
    CHECK_ERROR(call3(m, a, a, a, &out), NNM_E_SHAPE, "0D or 1D target tensor expected");
    CHECK_ERROR(call3(m, a, a, f3, &out), NNM_E_SHAPE, "got [2, 3], [2, 3] and target [3]");
    CHECK_ERROR(call3(m, a, b, f2, &out), NNM_E_SHAPE, "expected input1 and input2 of one shape");
    CHECK_ERROR(call3(m, a3, a3, f2, &out), NNM_E_SHAPE, "[N, D] with target [N]");
    CU_ASSERT_NOT_EQUAL(tu_call2(m, a, a, &out), NNM_OK); /* arity 3 */
    /* i64 target of +-1 works */
    nnm_tensor *pm = tu_ti64(g_ctx, 1, s2, (int64_t[]){1, -1});
    CHECK_STATUS(call3(m, a, a, pm, &out), NNM_OK);
    CU_ASSERT_TRUE(tu_near(scalar_of(out), 0.5, 1e-6, 1e-6)); /* (1 - 1 + max(0, 1 - 0)) / 2 */
    nnm_tensor_release(out);
    nnm_tensor_release(pm);
    nnm_module_release(m);
    m = loss("margin_ranking_loss", NULL);
    CHECK_ERROR(call3(m, a, a, f2, &out), NNM_E_SHAPE,
                "All input tensors should have same dimension but got sizes: input1: [2, 3], "
                "input2: [2, 3], target: [2]");
    CHECK_ERROR(call3(m, f2, f2, i2, &out), NNM_E_DTYPE, "must be f32");
    nnm_module_release(m);
    m = loss("multi_margin_loss", NULL);
    CHECK_ERROR(tu_call2(m, a, bad, &out), NNM_E_INVALID, "target out of range");
    CHECK_ERROR(tu_call2(m, a, neg, &out), NNM_E_INVALID, "target out of range");
    CHECK_ERROR(tu_call2(m, a3, i2, &out), NNM_E_SHAPE, "Expected non-empty vector or matrix");
    CHECK_ERROR(tu_call2(m, a, f2, &out), NNM_E_DTYPE, "i64");
    CHECK_ERROR(tu_call2(m, f3, i2, &out), NNM_E_SHAPE, "inconsistent target size, expected 1 but got [2]");
    nnm_module_release(m);
    m = loss("cross_entropy", NULL);
    CHECK_ERROR(tu_call2(m, a, bad, &out), NNM_E_INVALID, "");
    nnm_module_release(m);
    nnm_config *ci = NULL;
    nnm_config_new(&ci);
    nnm_config_set_int(ci, "ignore_index", 0);
    m = loss("cross_entropy", ci);
    CHECK_ERROR(tu_call2(m, a, a, &out), NNM_E_INVALID, "ignore_index is not supported for floating point target");
    CHECK_ERROR(tu_call2(m, a3, i2, &out), NNM_E_SHAPE, "expected target of shape [2, 3]");
    nnm_module_release(m);
    nnm_tensor *all[] = {a, b, f2, f3, a3, i2, bad, neg};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        nnm_tensor_release(all[i]);
    LEAK_CHECK_END();
}

/* "none" shapes of the unbatched forms, as PyTorch: cross_entropy [C] -> [],
 * multi_margin [C] with target [1] -> [1], cosine [D] -> []. */
static void test_unbatched_shapes(void) {
    LEAK_CHECK_BEGIN();
    const int64_t s4[1] = {4}, s1[1] = {1};
    const float xv[4] = {0.1f, -0.4f, 0.9f, 0.3f};
    nnm_tensor *x = tu_tf32(g_ctx, 1, s4, xv), *t0 = tu_ti64(g_ctx, 0, NULL, (int64_t[]){2});
    nnm_tensor *t1 = tu_ti64(g_ctx, 1, s1, (int64_t[]){2}), *y0 = tu_tf32(g_ctx, 0, NULL, (float[]){-1});
    nnm_tensor *out = NULL;
    nnm_module *m = loss("cross_entropy", cfg2("reduction", "none", NULL, 0));
    CHECK_STATUS(tu_call2(m, x, t0, &out), NNM_OK);
    CU_ASSERT_TRUE(tu_shape_is(out, 0, NULL));
    nnm_tensor_release(out);
    nnm_module_release(m);
    m = loss("multi_margin_loss", cfg2("reduction", "none", NULL, 0));
    CHECK_STATUS(tu_call2(m, x, t1, &out), NNM_OK);
    CU_ASSERT_TRUE(tu_shape_is(out, 1, s1));
    /* PyTorch: (max(0, 1 - 0.9 + 0.1) + max(0, 1 - 0.9 - 0.4) + max(0, 1 - 0.9 + 0.3)) / 4 */
    CU_ASSERT_TRUE(tu_near(scalar_of(out), (0.2 + 0.0 + 0.4) / 4.0, 1e-6, 1e-6));
    nnm_tensor_release(out);
    CHECK_STATUS(tu_call2(m, x, t0, &out), NNM_OK);
    CU_ASSERT_TRUE(tu_shape_is(out, 0, NULL));
    nnm_tensor_release(out);
    nnm_module_release(m);
    m = loss("cosine_embedding_loss", cfg2("reduction", "none", NULL, 0));
    CHECK_STATUS(call3(m, x, x, y0, &out), NNM_OK);
    CU_ASSERT_TRUE(tu_shape_is(out, 0, NULL));
    CU_ASSERT_TRUE(tu_near(scalar_of(out), 1.0, 1e-6, 1e-6)); /* cos = 1, y = -1: 1 - 0 */
    nnm_tensor_release(out);
    nnm_module_release(m);
    nnm_tensor *all[] = {x, t0, t1, y0};
    for (size_t i = 0; i < 4; i++)
        nnm_tensor_release(all[i]);
    LEAK_CHECK_END();
}

/* ------------------------------------------------------------------------ */
/* ctc_loss: the fused slots (cpu) against the composed recursion (cpunoctc) */
/* ------------------------------------------------------------------------ */

/* A tensor of dtype dt on dev holding n elements of p (host memory). */
static nnm_tensor *on_dev(nnm_device dev, nnm_dtype dt, int32_t nd, const int64_t *shape, const void *p,
                          size_t n) {
    nnm_tensor *t = NULL;
    CHECK_STATUS(nnm_tensor_new(g_ctx, dev, dt, nd, shape, &t), NNM_OK);
    if (t && n) memcpy(nnm_tensor_desc_get(t)->data, p, n * (dt.bits / 8u));
    return t;
}

/* A ctc_loss module moved to dev. */
static nnm_module *ctc_module(const nnm_config *cfg, nnm_device dev) {
    nnm_module *m = tu_module(g_ctx, "ctc_loss", cfg);
    if (m && dev.type != NNM_DEVICE_CPU) CHECK_STATUS(nnm_module_to(m, dev), NNM_OK);
    return m;
}

typedef struct ctc_case {
    const char *what;
    int64_t T, N, C;
    int32_t tg_nd;           /* 2: padded [N, S]; 1: concatenated */
    int64_t S;               /* padded width, or the concatenated length */
    int64_t tg[16];
    int64_t il[4], tl[4];
    int64_t blank;
    int zero_infinity;
    int unbatched;
} ctc_case;

/* out (and the gradient of sum(out * w)) on both devices, for each reduction. */
static int ctc_both(const ctc_case *k, const char *reduction, float *outs[2], float *grads[2], int64_t *n_out) {
    const nnm_device devs[2] = {{NNM_DEVICE_CPU, 0}, g_noctc};
    const nnm_dtype I64 = {NNM_DTYPE_INT, 64, 1};
    const int64_t nlp = k->T * k->N * k->C;
    float *lp = malloc((size_t)nlp * sizeof *lp);
    tu_fill_uniform(lp, (size_t)nlp, 31 + (uint32_t)k->T, -3.0, 0.0);
    for (int64_t i = 0; i < k->T * k->N; i++) { /* log_softmax rows */
        double z = 0;
        for (int64_t c = 0; c < k->C; c++) z += exp(lp[i * k->C + c]);
        for (int64_t c = 0; c < k->C; c++) lp[i * k->C + c] -= (float)log(z);
    }
    int ok = 1;
    for (int d = 0; d < 2 && ok; d++) {
        nnm_config *cfg = NULL;
        nnm_config_new(&cfg);
        nnm_config_set_str(cfg, "reduction", reduction);
        nnm_config_set_int(cfg, "blank", k->blank);
        nnm_config_set_bool(cfg, "zero_infinity", k->zero_infinity);
        nnm_module *m = ctc_module(cfg, devs[d]);
        nnm_config_free(cfg);
        const int64_t l3[3] = {k->T, k->N, k->C}, l2[2] = {k->T, k->C}, t2[2] = {k->N, k->S}, t1[1] = {k->S};
        const int64_t n1[1] = {k->N};
        nnm_tensor *in[4] = {
            k->unbatched ? on_dev(devs[d], NNM_F32, 2, l2, lp, (size_t)nlp) : on_dev(devs[d], NNM_F32, 3, l3, lp, (size_t)nlp),
            k->tg_nd == 2 ? on_dev(devs[d], I64, 2, t2, k->tg, (size_t)(k->N * k->S)) : on_dev(devs[d], I64, 1, t1, k->tg, (size_t)k->S),
            on_dev(devs[d], I64, k->unbatched ? 0 : 1, n1, k->il, (size_t)k->N),
            on_dev(devs[d], I64, k->unbatched ? 0 : 1, n1, k->tl, (size_t)k->N)};
        nnm_tensor_set_requires_grad(in[0], 1);
        nnm_tensor *out = NULL, *w = NULL;
        nnm_status st = m ? nnm_module_call(m, in, 4, &out, 1) : NNM_E_INVALID;
        if (st != NNM_OK) {
            fprintf(stderr, "\n  ctc %s (%s) on %s: %s\n", k->what, reduction, d ? "cpunoctc" : "cpu",
                    nnm_ctx_errmsg(g_ctx));
            ok = 0;
        } else {
            const nnm_tensor_desc *od = nnm_tensor_desc_get(out);
            float wv[8] = {0.7f, -1.3f, 0.4f, 2.0f, -0.6f, 1.1f, 0.9f, -0.2f};
            w = on_dev(devs[d], NNM_F32, od->ndim, od->shape, wv, (size_t)nnm_tensor_numel(out));
            ok = nnm_backward(out, w, 0) == NNM_OK;
            if (!ok) fprintf(stderr, "\n  ctc backward: %s\n", nnm_ctx_errmsg(g_ctx));
            outs[d] = tu_read_f32(out, n_out);
            grads[d] = ok ? tu_read_f32(nnm_tensor_grad(in[0]), NULL) : NULL;
        }
        nnm_tensor_release(out);
        nnm_tensor_release(w);
        for (int i = 0; i < 4; i++) nnm_tensor_release(in[i]);
        nnm_module_release(m);
    }
    free(lp);
    return ok;
}

static void test_ctc_fused_vs_composed(void) {
    LEAK_CHECK_BEGIN();
    static const ctc_case cases[] = {
        {"padded", 6, 3, 5, 2, 3, {1, 2, 3, 2, 2, 0, 4, 1, 1}, {6, 5, 6}, {3, 2, 1}, 0, 0, 0},
        {"concatenated, blank 2", 7, 2, 4, 1, 4, {1, 3, 0, 3}, {7, 5}, {3, 1}, 2, 0, 0},
        {"repeats, a short input", 5, 2, 3, 2, 2, {1, 1, 2, 1}, {5, 3}, {2, 2}, 0, 0, 0},
        {"zero_infinity: impossible and empty samples", 4, 4, 4, 2, 3,
         {1, 2, 3, 1, 1, 1, 2, 0, 0, 3, 0, 0}, {4, 2, 0, 0}, {3, 3, 0, 1}, 0, 1, 0},
        {"unbatched", 6, 1, 4, 1, 2, {3, 1}, {6}, {2}, 0, 0, 1},
    };
    static const char *const reds[3] = {"none", "mean", "sum"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (int r = 0; r < 3; r++) {
            float *o[2] = {0}, *g[2] = {0};
            int64_t n = 0;
            CU_ASSERT_TRUE(ctc_both(&cases[i], reds[r], o, g, &n));
            char what[128];
            snprintf(what, sizeof what, "ctc %s (%s) nll", cases[i].what, reds[r]);
            if (o[0] && o[1]) CU_ASSERT_EQUAL(tu_count_mismatch(what, o[1], o[0], n, 1e-4, 1e-5, 0), 0);
            snprintf(what, sizeof what, "ctc %s (%s) grad", cases[i].what, reds[r]);
            const int64_t ng = cases[i].T * cases[i].N * cases[i].C;
            if (g[0] && g[1]) CU_ASSERT_EQUAL(tu_count_mismatch(what, g[1], g[0], ng, 1e-3, 1e-5, 0), 0);
            if (i == 3 && r == 0 && o[0]) { /* impossible -> 0, il 0 with tl 0 -> 0, il 0 with tl 1 -> 0 */
                CU_ASSERT_EQUAL(o[0][1], 0.0f);
                CU_ASSERT_EQUAL(o[0][2], 0.0f);
                CU_ASSERT_EQUAL(o[0][3], 0.0f);
                for (int64_t t = 0; g[0] && t < 4; t++) /* no gradient for them, none past il */
                    for (int64_t b = 1; b < 4; b++)
                        for (int64_t c = 0; c < 4; c++) CU_ASSERT_EQUAL(g[0][(t * 4 + b) * 4 + c], 0.0f);
            }
            free(o[0]), free(o[1]), free(g[0]), free(g[1]);
        }
    LEAK_CHECK_END();
}

/* Without zero_infinity an impossible alignment is inf, an empty input with
 * an empty target 0 (on both paths). */
static void test_ctc_inf(void) {
    LEAK_CHECK_BEGIN();
    const ctc_case k = {"inf", 3, 3, 3, 2, 2, {1, 2, 1, 1, 0, 0}, {3, 2, 0}, {2, 2, 0}, 0, 0, 0};
    float *o[2] = {0}, *g[2] = {0};
    int64_t n = 0;
    CU_ASSERT_TRUE(ctc_both(&k, "none", o, g, &n));
    for (int d = 0; d < 2; d++)
        if (o[d]) {
            CU_ASSERT_TRUE(isfinite(o[d][0]));
            CU_ASSERT_TRUE(isinf(o[d][1]) && o[d][1] > 0); /* 1, 1 needs 3 steps, it has 2 */
            CU_ASSERT_EQUAL(o[d][2], 0.0f);
        }
    free(o[0]), free(o[1]), free(g[0]), free(g[1]);
    LEAK_CHECK_END();
}

static void test_ctc_bad_inputs(void) {
    LEAK_CHECK_BEGIN();
    const nnm_device devs[2] = {{NNM_DEVICE_CPU, 0}, g_noctc};
    const nnm_dtype I64 = {NNM_DTYPE_INT, 64, 1};
    float lp[2 * 2 * 3] = {0};
    const int64_t l3[3] = {2, 2, 3}, t2[2] = {2, 2}, n2[1] = {2}, t3[1] = {3};
    for (int d = 0; d < 2; d++) {
        nnm_module *m = ctc_module(NULL, devs[d]);
        nnm_tensor *x = on_dev(devs[d], NNM_F32, 3, l3, lp, 12);
        nnm_tensor *tg = on_dev(devs[d], I64, 2, t2, (int64_t[]){1, 2, 1, 0}, 4);
        nnm_tensor *tgbad = on_dev(devs[d], I64, 2, t2, (int64_t[]){1, 3, 1, 0}, 4);
        nnm_tensor *cat3 = on_dev(devs[d], I64, 1, t3, (int64_t[]){1, 2, 1}, 3);
        nnm_tensor *il = on_dev(devs[d], I64, 1, n2, (int64_t[]){2, 2}, 2);
        nnm_tensor *ilbad = on_dev(devs[d], I64, 1, n2, (int64_t[]){3, 2}, 2);
        nnm_tensor *tl = on_dev(devs[d], I64, 1, n2, (int64_t[]){2, 1}, 2);
        nnm_tensor *tlbad = on_dev(devs[d], I64, 1, n2, (int64_t[]){3, 1}, 2);
        nnm_tensor *out = NULL;
        nnm_tensor *a[4] = {x, tg, ilbad, tl};
        CHECK_ERROR(nnm_module_call(m, a, 4, &out, 1), NNM_E_INVALID, "input_lengths[0] = 3 is not in [0, 2]");
        nnm_tensor *b[4] = {x, tgbad, il, tl};
        CHECK_ERROR(nnm_module_call(m, b, 4, &out, 1), NNM_E_INVALID, "target 1 of sample 0 is 3, not in [0, 3)");
        nnm_tensor *c[4] = {x, tg, il, tlbad};
        CHECK_ERROR(nnm_module_call(m, c, 4, &out, 1), NNM_E_INVALID, "target_lengths[0] = 3 is not in [0, 2]");
        nnm_tensor *e[4] = {x, cat3, il, tlbad}; /* 3 + 1 != 3 */
        CHECK_ERROR(nnm_module_call(m, e, 4, &out, 1), NNM_E_SHAPE, "the sum of target_lengths, 4");
        nnm_tensor *f[4] = {x, tg, x, tl};
        CHECK_ERROR(nnm_module_call(m, f, 4, &out, 1), NNM_E_DTYPE, "must be i64");
        nnm_tensor *g[4] = {x, tg, tg, tl};
        CHECK_ERROR(nnm_module_call(m, g, 4, &out, 1), NNM_E_SHAPE, "input_lengths and target_lengths must be [N]");
        nnm_tensor *all[] = {x, tg, tgbad, cat3, il, ilbad, tl, tlbad};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) nnm_tensor_release(all[i]);
        nnm_module_release(m);
    }
    nnm_config *cfg = NULL;
    nnm_config_new(&cfg);
    nnm_config_set_int(cfg, "blank", 3);
    nnm_module *m = tu_module(g_ctx, "ctc_loss", cfg);
    nnm_config_free(cfg);
    nnm_tensor *x = tu_tf32(g_ctx, 3, l3, lp), *tg = tu_ti64(g_ctx, 2, t2, (int64_t[]){1, 2, 1, 0});
    nnm_tensor *il = tu_ti64(g_ctx, 1, n2, (int64_t[]){2, 2}), *tl = tu_ti64(g_ctx, 1, n2, (int64_t[]){2, 1});
    nnm_tensor *a[4] = {x, tg, il, tl}, *out = NULL;
    CHECK_ERROR(nnm_module_call(m, a, 4, &out, 1), NNM_E_INVALID, "blank 3 is not a class of log_probs [2, 2, 3]");
    nnm_tensor *all[] = {x, tg, il, tl};
    for (size_t i = 0; i < 4; i++) nnm_tensor_release(all[i]);
    nnm_module_release(m);
    char repr[64] = "";
    m = tu_module(g_ctx, "ctc_loss", NULL);
    if (m) nnm_module_repr(m, repr, sizeof repr);
    CU_ASSERT_PTR_NOT_NULL(strstr(repr, "CTCLoss()"));
    nnm_module_release(m);
    LEAK_CHECK_END();
}

int main(void) {
    CU_pSuite s = tu_suite("losses", suite_init, suite_clean);
    CU_add_test(s, "bce_loss at 0 and 1, bce_with_logits at |x| = 100", test_bce_edges);
    CU_add_test(s, "kl_div with zero targets", test_kl_div_zeros);
    CU_add_test(s, "smooth_l1 / huber of huge differences", test_huge_differences);
    CU_add_test(s, "empty batches", test_empty_batch);
    CU_add_test(s, "weight buffers", test_weight_buffer);
    CU_add_test(s, "bad configs", test_bad_configs);
    CU_add_test(s, "bad inputs", test_bad_inputs);
    CU_add_test(s, "unbatched shapes", test_unbatched_shapes);
    CU_add_test(s, "ctc_loss: fused (cpu) and composed (a backend without the slots) agree",
                test_ctc_fused_vs_composed);
    CU_add_test(s, "ctc_loss: impossible alignments are inf", test_ctc_inf);
    CU_add_test(s, "ctc_loss: bad inputs (both paths)", test_ctc_bad_inputs);
    return tu_run();
}
