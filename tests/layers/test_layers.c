/* tests/layers/test_layers.c - the built-in layers (linear, relu, identity,
 * sequential) driven end to end through the public API only.
 *
 * Plugins are found by discovery (the directory beside libnnmod). Each test
 * checks that it leaves no live tensor or module behind. Linear is checked
 * against a naive double-precision computation from the module's own
 * parameters and against PyTorch golden vectors (tests/golden/linear_golden.h,
 * written by tests/golden/make_linear_golden.py).
 */
#include "test_util.h"

#include "golden/linear_golden.h"

static nnm_ctx *g_ctx;
#define TU_CTX g_ctx

static int suite_init(void) { return tu_ctx_new(&g_ctx); }

static int suite_clean(void) { return tu_ctx_free(&g_ctx); }

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */
/* ------------------------------------------------------------------------ */

/* Deterministic values in [-2, 2): tu_rand from a state seeded by `seed`. */
static void fill_pattern(float *p, size_t n, uint32_t seed) {
    uint32_t s = seed * 2654435761u + 1u;
    tu_fill_rand(&s, p, n);
}

/* ------------------------------------------------------------------------ */
/* Linear                                                                    */
/* ------------------------------------------------------------------------ */

/* Runs linear on a [.., in] input and compares with a naive double
 * computation from the module's own parameters. */
static void check_linear_naive(int64_t in, int64_t out, int bias, int32_t ndim,
                               const int64_t *xshape) {
    nnm_module *m = tu_linear(g_ctx, "linear@^1", in, out, bias);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    tu_named pl = tu_params_of(m);
    nnm_tensor *w = tu_named_get(&pl, "weight");
    nnm_tensor *b = tu_named_get(&pl, "bias");
    CU_ASSERT_PTR_NOT_NULL_FATAL(w);
    CU_ASSERT_EQUAL(pl.n, bias ? 2 : 1);
    CU_ASSERT_TRUE(tu_shape_is(w, 2, (int64_t[]){out, in}));
    if (bias) {
        CU_ASSERT_PTR_NOT_NULL_FATAL(b);
        CU_ASSERT_TRUE(tu_shape_is(b, 1, (int64_t[]){out}));
        CU_ASSERT_STRING_EQUAL(pl.names[0], "weight"); /* registration order */
        CU_ASSERT_STRING_EQUAL(pl.names[1], "bias");
    } else {
        CU_ASSERT_PTR_NULL(b);
    }

    int64_t rows = 1;
    for (int32_t i = 0; i + 1 < ndim; i++)
        rows *= xshape[i];
    float *xv = malloc(sizeof(float) * (size_t)(rows * in + 1));
    fill_pattern(xv, (size_t)(rows * in), (uint32_t)(in * 31 + out));
    nnm_tensor *x = tu_tf32(g_ctx, ndim, xshape, xv);
    nnm_tensor *y = NULL;
    CHECK_STATUS(tu_call1(m, x, &y), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL(y);
    if (y != NULL) {
        int64_t yshape[NNM_MAX_DIMS];
        memcpy(yshape, xshape, sizeof(int64_t) * (size_t)ndim);
        yshape[ndim - 1] = out;
        CU_ASSERT_TRUE(tu_shape_is(y, ndim, yshape));
        float *wv = tu_read_f32(w, NULL);
        float *bv = bias ? tu_read_f32(b, NULL) : NULL;
        int64_t ny = 0;
        float *yv = tu_read_f32(y, &ny);
        CU_ASSERT_PTR_NOT_NULL_FATAL(wv);
        CU_ASSERT_PTR_NOT_NULL_FATAL(yv);
        CU_ASSERT_EQUAL(ny, rows * out);
        int bad = 0;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t o = 0; o < out; o++) {
                double acc = bias ? (double)bv[o] : 0.0;
                for (int64_t i = 0; i < in; i++)
                    acc += (double)xv[r * in + i] * (double)wv[o * in + i];
                if (!tu_near(yv[r * out + o], acc, 1e-5, 1e-5))
                    bad++;
            }
        CU_ASSERT_EQUAL(bad, 0);
        free(wv);
        free(bv);
        free(yv);
    }
    nnm_tensor_release(y);
    nnm_tensor_release(x);
    free(xv);
    nnm_module_release(m);
}

static void test_linear_naive_bias(void) {
    LEAK_CHECK_BEGIN();
    check_linear_naive(5, 3, 1, 3, (int64_t[]){2, 3, 5});
    check_linear_naive(4, 3, -1, 2, (int64_t[]){7, 4}); /* bias defaults to true */
    check_linear_naive(37, 19, 1, 2, (int64_t[]){11, 37});
    LEAK_CHECK_END();
}

static void test_linear_naive_nobias(void) {
    LEAK_CHECK_BEGIN();
    check_linear_naive(5, 3, 0, 3, (int64_t[]){2, 3, 5});
    check_linear_naive(16, 8, 0, 2, (int64_t[]){3, 16});
    LEAK_CHECK_END();
}

/* Any number of leading dims, including none (a plain vector). */
static void test_linear_leading_dims(void) {
    LEAK_CHECK_BEGIN();
    check_linear_naive(6, 2, 1, 1, (int64_t[]){6});
    check_linear_naive(6, 2, 1, 2, (int64_t[]){1, 6});
    check_linear_naive(6, 2, 1, 4, (int64_t[]){2, 1, 3, 6});
    check_linear_naive(3, 4, 0, 5, (int64_t[]){2, 2, 1, 2, 3});
    LEAK_CHECK_END();
}

/* An empty batch gives an empty output of the right shape, as in PyTorch. */
static void test_linear_empty_batch(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *m = tu_linear(g_ctx, "linear@^1", 4, 3, 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    nnm_tensor *x = tu_tf32(g_ctx, 2, (int64_t[]){0, 4}, NULL);
    nnm_tensor *y = NULL;
    CHECK_STATUS(tu_call1(m, x, &y), NNM_OK);
    if (y != NULL) {
        CU_ASSERT_TRUE(tu_shape_is(y, 2, (int64_t[]){0, 3}));
        CU_ASSERT_EQUAL(nnm_tensor_numel(y), 0);
    }
    nnm_tensor_release(y);
    nnm_tensor_release(x);
    nnm_module_release(m);
    LEAK_CHECK_END();
}

/* weight and bias ~ U(-1/sqrt(in), 1/sqrt(in)), PyTorch's default init. */
static void test_linear_init(void) {
    LEAK_CHECK_BEGIN();
    const int64_t in = 64, out = 64;
    nnm_module *m = tu_linear(g_ctx, "linear@^1", in, out, 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    tu_named pl = tu_params_of(m);
    int64_t nw = 0, nb = 0;
    float *w = tu_read_f32(tu_named_get(&pl, "weight"), &nw);
    float *b = tu_read_f32(tu_named_get(&pl, "bias"), &nb);
    CU_ASSERT_PTR_NOT_NULL_FATAL(w);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    CU_ASSERT_EQUAL(nw, in * out);
    CU_ASSERT_EQUAL(nb, out);
    CU_ASSERT_EQUAL(nnm_module_num_params(m), in * out + out);
    const double bound = 1.0 / sqrt((double)in);
    double lo = 1e9, hi = -1e9, sum = 0.0, sum_abs = 0.0;
    for (int64_t i = 0; i < nw; i++) {
        lo = w[i] < lo ? w[i] : lo;
        hi = w[i] > hi ? w[i] : hi;
        sum += w[i];
        sum_abs += fabs(w[i]);
    }
    CU_ASSERT_TRUE(lo >= -bound && hi <= bound);
    CU_ASSERT_TRUE(lo < -0.95 * bound && hi > 0.95 * bound); /* spans the range */
    CU_ASSERT_TRUE(fabs(sum / (double)nw) < 0.05 * bound);    /* centred */
    CU_ASSERT_TRUE(fabs(sum_abs / (double)nw - bound / 2) < 0.05 * bound); /* uniform */
    int in_range = 1;
    for (int64_t i = 0; i < nb; i++)
        in_range &= b[i] >= -bound && b[i] <= bound;
    CU_ASSERT_TRUE(in_range);
    free(w);
    free(b);
    nnm_module_release(m);
    LEAK_CHECK_END();
}

/* Golden vectors from PyTorch: F.linear with and without bias, F.relu. */
static void test_linear_golden(void) {
    LEAK_CHECK_BEGIN();
    const int64_t xshape[3] = {GOLDEN_BATCH0, GOLDEN_BATCH1, GOLDEN_IN_FEATURES};
    const int64_t yshape[3] = {GOLDEN_BATCH0, GOLDEN_BATCH1, GOLDEN_OUT_FEATURES};
    const int64_t ny = GOLDEN_BATCH0 * GOLDEN_BATCH1 * GOLDEN_OUT_FEATURES;
    nnm_tensor *x = tu_tf32(g_ctx, 3, xshape, golden_x);
    CU_ASSERT_PTR_NOT_NULL_FATAL(x);

    for (int bias = 1; bias >= 0; bias--) {
        nnm_module *m =
            tu_linear(g_ctx, "linear@^1", GOLDEN_IN_FEATURES, GOLDEN_OUT_FEATURES, bias);
        CU_ASSERT_PTR_NOT_NULL_FATAL(m);
        tu_named pl = tu_params_of(m);
        CU_ASSERT_TRUE(tu_write_f32(tu_named_get(&pl, "weight"), golden_w, 20));
        if (bias)
            CU_ASSERT_TRUE(tu_write_f32(tu_named_get(&pl, "bias"), golden_b, 4));
        nnm_tensor *y = NULL;
        CHECK_STATUS(tu_call1(m, x, &y), NNM_OK);
        if (y != NULL) {
            CU_ASSERT_TRUE(tu_shape_is(y, 3, yshape));
            int64_t n = 0;
            float *yv = tu_read_f32(y, &n);
            CU_ASSERT_EQUAL(n, ny);
            if (yv != NULL && n == ny)
                CU_ASSERT_EQUAL(tu_count_mismatch(NULL, yv, bias ? golden_y : golden_y_nobias, ny,
                                                  1e-5, 1e-6, 0),
                                0);
            free(yv);
            if (bias) { /* relu(linear(x)) */
                nnm_module *r = tu_module(g_ctx, "relu@^1", NULL);
                CU_ASSERT_PTR_NOT_NULL(r);
                nnm_tensor *z = NULL;
                if (r != NULL)
                    CHECK_STATUS(tu_call1(r, y, &z), NNM_OK);
                if (z != NULL) {
                    CU_ASSERT_TRUE(tu_shape_is(z, 3, yshape));
                    float *zv = tu_read_f32(z, &n);
                    if (zv != NULL && n == ny)
                        CU_ASSERT_EQUAL(
                            tu_count_mismatch(NULL, zv, golden_relu_y, ny, 1e-5, 1e-6, 0), 0);
                    free(zv);
                }
                nnm_tensor_release(z);
                nnm_module_release(r);
            }
        }
        nnm_tensor_release(y);
        nnm_module_release(m);
    }
    nnm_tensor_release(x);
    LEAK_CHECK_END();
}

/* Bad configs fail at create with the documented codes and clear messages. */
static void expect_create_fails(nnm_config *cfg, nnm_status want, const char *msg_part) {
    nnm_module *m = (nnm_module *)&m; /* must be reset to NULL */
    CHECK_STATUS(nnm_module_create(g_ctx, "linear@^1", cfg, &m), want);
    CU_ASSERT_PTR_NULL(m);
    if (msg_part != NULL) {
        const char *msg = nnm_ctx_errmsg(g_ctx);
        CU_ASSERT_PTR_NOT_NULL(strstr(msg, msg_part));
        if (strstr(msg, msg_part) == NULL)
            fprintf(stderr, "\n  message \"%s\" lacks \"%s\"\n", msg, msg_part);
    }
    if (m != NULL && m != (nnm_module *)&m)
        nnm_module_release(m);
}

static void test_linear_bad_config(void) {
    LEAK_CHECK_BEGIN();
    nnm_config *cfg = NULL;

    /* no config at all: in_features is missing */
    expect_create_fails(NULL, NNM_E_NOT_FOUND, "in_features");

    CU_ASSERT_EQUAL_FATAL(nnm_config_new(&cfg), NNM_OK);
    nnm_config_set_int(cfg, "out_features", 3);
    expect_create_fails(cfg, NNM_E_NOT_FOUND, "in_features");

    nnm_config_set_str(cfg, "in_features", "four");
    expect_create_fails(cfg, NNM_E_TYPE, "in_features");

    nnm_config_set_float(cfg, "in_features", 4.0);
    expect_create_fails(cfg, NNM_E_TYPE, "in_features");

    nnm_config_set_int(cfg, "in_features", 0);
    expect_create_fails(cfg, NNM_E_INVALID, "in_features must be > 0, got 0");

    nnm_config_set_int(cfg, "in_features", -3);
    expect_create_fails(cfg, NNM_E_INVALID, "in_features must be > 0, got -3");

    nnm_config_set_int(cfg, "in_features", 4);
    nnm_config_set_int(cfg, "out_features", -1);
    expect_create_fails(cfg, NNM_E_INVALID, "out_features must be > 0, got -1");

    nnm_config_set_int(cfg, "out_features", 3);
    nnm_config_set_str(cfg, "bias", "yes");
    expect_create_fails(cfg, NNM_E_TYPE, "bias");

    nnm_config_set_int(cfg, "in_features", (int64_t)1 << 40);
    nnm_config_set_bool(cfg, "bias", 1);
    expect_create_fails(cfg, NNM_E_LIMIT, "in_features");

    /* and the fixed config works */
    nnm_config_set_int(cfg, "in_features", 4);
    nnm_module *m = NULL;
    CHECK_STATUS(nnm_module_create(g_ctx, "linear@^1", cfg, &m), NNM_OK);
    nnm_module_release(m);
    nnm_config_free(cfg);
    LEAK_CHECK_END();
}

static void test_linear_wrong_shape(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *m = tu_linear(g_ctx, "linear@^1", 4, 3, 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    const int64_t bad_shapes[][3] = {{2, 5, 0}, {5, 0, 0}, {2, 4, 1}};
    const int32_t bad_ndims[] = {2, 1, 3};
    for (int i = 0; i < 3; i++) {
        nnm_tensor *x = tu_tf32(g_ctx, bad_ndims[i], bad_shapes[i], NULL);
        nnm_tensor *y = (nnm_tensor *)&y;
        nnm_tensor *in[1] = {x};
        CHECK_STATUS(nnm_module_call(m, in, 1, &y, 1), NNM_E_SHAPE);
        CU_ASSERT_PTR_NULL(y);
        nnm_tensor_release(x);
    }
    /* a 0-d input has no feature dim */
    nnm_tensor *x = tu_tf32(g_ctx, 0, NULL, (float[]){1.0f});
    nnm_tensor *y = NULL;
    CHECK_STATUS(tu_call1(m, x, &y), NNM_E_SHAPE);
    CU_ASSERT_PTR_NULL(y);
    nnm_tensor_release(x);
    nnm_module_release(m);
    LEAK_CHECK_END();
}

/* ------------------------------------------------------------------------ */
/* ReLU, Identity                                                            */
/* ------------------------------------------------------------------------ */

static void test_relu(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *r = tu_module(g_ctx, "relu@^1", NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_STRING_EQUAL(nnm_module_type(r), "relu");
    CU_ASSERT_EQUAL(nnm_module_num_params(r), 0);
    float xv[24];
    fill_pattern(xv, 24, 7);
    xv[0] = 0.0f;
    xv[1] = -0.0f;
    xv[2] = -1e-30f;
    xv[3] = 1e-30f;
    const int64_t shapes[][3] = {{24, 0, 0}, {4, 6, 0}, {2, 3, 4}};
    for (int32_t nd = 1; nd <= 3; nd++) {
        nnm_tensor *x = tu_tf32(g_ctx, nd, shapes[nd - 1], xv);
        nnm_tensor *y = NULL;
        CHECK_STATUS(tu_call1(r, x, &y), NNM_OK);
        if (y != NULL) {
            CU_ASSERT_PTR_NOT_EQUAL(y, x); /* a new tensor, x untouched */
            CU_ASSERT_TRUE(tu_shape_is(y, nd, shapes[nd - 1]));
            float yv[24], xa[24];
            CU_ASSERT_EQUAL(nnm_tensor_to_f32(y, yv, 24), NNM_OK);
            CU_ASSERT_EQUAL(nnm_tensor_to_f32(x, xa, 24), NNM_OK);
            int bad = 0;
            for (int i = 0; i < 24; i++)
                bad += yv[i] != (xv[i] > 0.0f ? xv[i] : 0.0f) || xa[i] != xv[i];
            CU_ASSERT_EQUAL(bad, 0);
        }
        nnm_tensor_release(y);
        nnm_tensor_release(x);
    }
    nnm_module_release(r);
    LEAK_CHECK_END();
}

static void test_identity(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *id = tu_module(g_ctx, "identity@^1", NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(id);
    CU_ASSERT_EQUAL(nnm_module_num_params(id), 0);
    float xv[6] = {1, -2, 3, -4, 5, -6};
    nnm_tensor *x = tu_tf32(g_ctx, 2, (int64_t[]){2, 3}, xv);
    nnm_tensor *y = NULL;
    CHECK_STATUS(tu_call1(id, x, &y), NNM_OK);
    CU_ASSERT_PTR_EQUAL(y, x); /* the same tensor, as torch.nn.Identity */
    nnm_tensor_release(y);     /* drops the reference the call handed out */
    float back[6];
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(x, back, 6), NNM_OK); /* x is still alive */
    CU_ASSERT_EQUAL(memcmp(back, xv, sizeof xv), 0);
    nnm_tensor_release(x);
    nnm_module_release(id);
    LEAK_CHECK_END();
}

/* ------------------------------------------------------------------------ */
/* Sequential                                                                */
/* ------------------------------------------------------------------------ */

static void test_sequential_chain(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *seq = tu_module(g_ctx, "sequential@^1", NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(seq);
    nnm_module *l1 = tu_linear(g_ctx, "linear@^1", 4, 8, 1);
    nnm_module *act = tu_module(g_ctx, "relu@^1", NULL);
    nnm_module *l2 = tu_linear(g_ctx, "linear@^1", 8, 3, 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(l1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(act);
    CU_ASSERT_PTR_NOT_NULL_FATAL(l2);
    CHECK_STATUS(nnm_module_add_child(seq, NULL, l1), NNM_OK);
    CHECK_STATUS(nnm_module_add_child(seq, NULL, act), NNM_OK);
    CHECK_STATUS(nnm_module_add_child(seq, NULL, l2), NNM_OK);
    CU_ASSERT_EQUAL(nnm_module_child_count(seq), 3);

    /* PyTorch's state_dict names: 0.weight, 0.bias, 2.weight, 2.bias */
    tu_named pl = tu_params_of(seq);
    CU_ASSERT_EQUAL(pl.n, 4);
    CU_ASSERT_PTR_NOT_NULL(tu_named_get(&pl, "0.weight"));
    CU_ASSERT_PTR_NOT_NULL(tu_named_get(&pl, "0.bias"));
    CU_ASSERT_PTR_NOT_NULL(tu_named_get(&pl, "2.weight"));
    CU_ASSERT_PTR_NOT_NULL(tu_named_get(&pl, "2.bias"));
    CU_ASSERT_EQUAL(nnm_module_num_params(seq), 4 * 8 + 8 + 8 * 3 + 3);

    float xv[5 * 4];
    fill_pattern(xv, 20, 99);
    nnm_tensor *x = tu_tf32(g_ctx, 2, (int64_t[]){5, 4}, xv);
    nnm_tensor *y = NULL, *h1 = NULL, *h2 = NULL, *h3 = NULL;
    CHECK_STATUS(tu_call1(seq, x, &y), NNM_OK);
    CHECK_STATUS(tu_call1(l1, x, &h1), NNM_OK);
    CHECK_STATUS(tu_call1(act, h1, &h2), NNM_OK);
    CHECK_STATUS(tu_call1(l2, h2, &h3), NNM_OK);
    if (y != NULL && h3 != NULL) {
        CU_ASSERT_TRUE(tu_shape_is(y, 2, (int64_t[]){5, 3}));
        float a[15], b[15];
        CU_ASSERT_EQUAL(nnm_tensor_to_f32(y, a, 15), NNM_OK);
        CU_ASSERT_EQUAL(nnm_tensor_to_f32(h3, b, 15), NNM_OK);
        /* same ops, same bits */
        CU_ASSERT_EQUAL(tu_count_mismatch(NULL, a, b, 15, 0.0, 0.0, 0), 0);
    }
    nnm_tensor_release(y);
    nnm_tensor_release(h1);
    nnm_tensor_release(h2);
    nnm_tensor_release(h3);

    /* a failing child fails the container with the child's code; no leaks */
    nnm_tensor *bad = tu_tf32(g_ctx, 2, (int64_t[]){5, 7}, NULL);
    y = (nnm_tensor *)&y;
    nnm_tensor *in[1] = {bad};
    CHECK_STATUS(nnm_module_call(seq, in, 1, &y, 1), NNM_E_SHAPE);
    CU_ASSERT_PTR_NULL(y);
    nnm_tensor_release(bad);

    nnm_tensor_release(x);
    nnm_module_release(l1); /* the container holds its own references */
    nnm_module_release(act);
    nnm_module_release(l2);
    nnm_module_release(seq);
    LEAK_CHECK_END();
}

/* A failure in the last child, after intermediates exist, releases them. */
static void test_sequential_late_failure(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *seq = tu_module(g_ctx, "sequential@^1", NULL);
    nnm_module *l1 = tu_linear(g_ctx, "linear@^1", 4, 6, 1);
    nnm_module *l2 = tu_linear(g_ctx, "linear@^1", 5, 2, 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(seq);
    CU_ASSERT_PTR_NOT_NULL_FATAL(l1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(l2);
    CHECK_STATUS(nnm_module_add_child(seq, "fc1", l1), NNM_OK);
    CHECK_STATUS(nnm_module_add_child(seq, "fc2", l2), NNM_OK); /* 6 -> 5 mismatch */
    nnm_module_release(l1);
    nnm_module_release(l2);
    nnm_tensor *x = tu_tf32(g_ctx, 2, (int64_t[]){3, 4}, NULL);
    nnm_tensor *y = NULL;
    CHECK_STATUS(tu_call1(seq, x, &y), NNM_E_SHAPE);
    CU_ASSERT_PTR_NULL(y);
    CU_ASSERT_PTR_NOT_NULL(strstr(nnm_ctx_errmsg(g_ctx), "fc2"));
    nnm_tensor_release(x);
    nnm_module_release(seq);
    LEAK_CHECK_END();
}

static void test_sequential_empty(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *seq = tu_module(g_ctx, "sequential@^1", NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(seq);
    CU_ASSERT_EQUAL(nnm_module_child_count(seq), 0);
    nnm_tensor *x = tu_tf32(g_ctx, 1, (int64_t[]){3}, (float[]){1, 2, 3});
    nnm_tensor *y = NULL;
    CHECK_STATUS(tu_call1(seq, x, &y), NNM_OK);
    CU_ASSERT_PTR_EQUAL(y, x); /* nn.Sequential() returns its input */
    nnm_tensor_release(y);
    nnm_tensor_release(x);
    nnm_module_release(seq);
    LEAK_CHECK_END();
}

/* Sequential(Sequential(Linear, ReLU), Identity) == relu(linear(x)). */
static void test_sequential_nested(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *outer = tu_module(g_ctx, "sequential@^1", NULL);
    nnm_module *inner = tu_module(g_ctx, "sequential@^1", NULL);
    nnm_module *fc = tu_linear(g_ctx, "linear@^1", 3, 2, 1);
    nnm_module *act = tu_module(g_ctx, "relu@^1", NULL);
    nnm_module *id = tu_module(g_ctx, "identity@^1", NULL);
    CU_ASSERT_FATAL(outer && inner && fc && act && id);
    CHECK_STATUS(nnm_module_add_child(inner, NULL, fc), NNM_OK);
    CHECK_STATUS(nnm_module_add_child(inner, NULL, act), NNM_OK);
    CHECK_STATUS(nnm_module_add_child(outer, "block", inner), NNM_OK);
    CHECK_STATUS(nnm_module_add_child(outer, "out", id), NNM_OK);
    tu_named pl = tu_params_of(outer);
    CU_ASSERT_PTR_NOT_NULL(tu_named_get(&pl, "block.0.weight"));
    CU_ASSERT_PTR_NOT_NULL(tu_named_get(&pl, "block.0.bias"));

    float xv[12];
    fill_pattern(xv, 12, 5);
    nnm_tensor *x = tu_tf32(g_ctx, 2, (int64_t[]){4, 3}, xv);
    nnm_tensor *y = NULL, *h = NULL, *want = NULL;
    CHECK_STATUS(tu_call1(outer, x, &y), NNM_OK);
    CHECK_STATUS(tu_call1(fc, x, &h), NNM_OK);
    CHECK_STATUS(tu_call1(act, h, &want), NNM_OK);
    if (y != NULL && want != NULL) {
        float a[8], b[8];
        CU_ASSERT_EQUAL(nnm_tensor_to_f32(y, a, 8), NNM_OK);
        CU_ASSERT_EQUAL(nnm_tensor_to_f32(want, b, 8), NNM_OK);
        CU_ASSERT_EQUAL(tu_count_mismatch(NULL, a, b, 8, 0.0, 0.0, 0), 0);
    }
    nnm_tensor_release(y);
    nnm_tensor_release(h);
    nnm_tensor_release(want);
    nnm_tensor_release(x);
    nnm_module_release(fc);
    nnm_module_release(act);
    nnm_module_release(id);
    nnm_module_release(inner);
    nnm_module_release(outer);
    LEAK_CHECK_END();
}

/* ------------------------------------------------------------------------ */
/* Lookup and printing                                                       */
/* ------------------------------------------------------------------------ */

static void test_layer_find(void) {
    const struct {
        const char *request, *name;
        uint32_t flags;
    } cases[] = {
        {"linear@^1", "linear", 0},
        {"relu@1.0.0", "relu", 0},
        {"identity@*", "identity", 0},
        {"sequential@~1.0", "sequential", NNM_LAYER_CONTAINER},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const nnm_layer_vtable *vt = NULL;
        CHECK_STATUS(nnm_layer_find(g_ctx, cases[i].request, &vt), NNM_OK);
        if (vt == NULL)
            continue;
        CU_ASSERT_STRING_EQUAL(vt->name, cases[i].name);
        CU_ASSERT_EQUAL(vt->version_major, 1);
        CU_ASSERT_EQUAL(vt->version_minor, 0);
        CU_ASSERT_EQUAL(vt->version_patch, 0);
        CU_ASSERT_EQUAL(vt->flags & NNM_LAYER_CONTAINER, cases[i].flags);
        CU_ASSERT_EQUAL(vt->n_inputs, 1);
        CU_ASSERT_EQUAL(vt->n_outputs, 1);
    }
    const nnm_layer_vtable *vt = NULL;
    CHECK_STATUS(nnm_layer_find(g_ctx, "linear@^2", &vt), NNM_E_NOT_FOUND);
}

/* Returns the module's repr in a malloc'd string (sized with cap 0 first). */
static char *repr_of(nnm_module *m) {
    int64_t n = nnm_module_repr(m, NULL, 0);
    CU_ASSERT_TRUE(n > 0);
    if (n <= 0)
        return NULL;
    char *buf = malloc((size_t)n + 1);
    CU_ASSERT_EQUAL(nnm_module_repr(m, buf, (size_t)n + 1), n);
    return buf;
}

static void test_repr(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *fc = tu_linear(g_ctx, "linear@^1", 4, 3, 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(fc);
    char *s = repr_of(fc);
    CU_ASSERT_TRUE(s != NULL && strstr(s, "in_features=4, out_features=3, bias=True") != NULL);
    free(s);

    nnm_module *seq = tu_module(g_ctx, "sequential@^1", NULL);
    nnm_module *fc2 = tu_linear(g_ctx, "linear@^1", 3, 2, 0);
    nnm_module *act = tu_module(g_ctx, "relu@^1", NULL);
    CU_ASSERT_FATAL(seq && fc2 && act);
    CHECK_STATUS(nnm_module_add_child(seq, NULL, fc), NNM_OK);
    CHECK_STATUS(nnm_module_add_child(seq, NULL, act), NNM_OK);
    CHECK_STATUS(nnm_module_add_child(seq, NULL, fc2), NNM_OK);
    s = repr_of(seq);
    CU_ASSERT_TRUE(s != NULL && strstr(s, "in_features=4, out_features=3, bias=True") != NULL);
    CU_ASSERT_TRUE(s != NULL && strstr(s, "in_features=3, out_features=2, bias=False") != NULL);
    free(s);

    /* a short buffer is truncated and NUL-terminated, like snprintf */
    char small[8];
    memset(small, 'x', sizeof small);
    CU_ASSERT_TRUE(nnm_module_repr(fc, small, sizeof small) > (int64_t)sizeof small);
    CU_ASSERT_EQUAL(small[sizeof small - 1], '\0');

    nnm_module_release(fc);
    nnm_module_release(fc2);
    nnm_module_release(act);
    nnm_module_release(seq);
    LEAK_CHECK_END();
}

int main(void) {
    CU_pSuite s = tu_suite("layers", suite_init, suite_clean);
    if (s == NULL)
        return 1;
    CU_add_test(s, "layer lookup", test_layer_find);
    CU_add_test(s, "linear vs naive, bias", test_linear_naive_bias);
    CU_add_test(s, "linear vs naive, no bias", test_linear_naive_nobias);
    CU_add_test(s, "linear leading dims", test_linear_leading_dims);
    CU_add_test(s, "linear empty batch", test_linear_empty_batch);
    CU_add_test(s, "linear init", test_linear_init);
    CU_add_test(s, "linear vs PyTorch golden", test_linear_golden);
    CU_add_test(s, "linear bad config", test_linear_bad_config);
    CU_add_test(s, "linear wrong input shape", test_linear_wrong_shape);
    CU_add_test(s, "relu", test_relu);
    CU_add_test(s, "identity", test_identity);
    CU_add_test(s, "sequential chain", test_sequential_chain);
    CU_add_test(s, "sequential late failure", test_sequential_late_failure);
    CU_add_test(s, "sequential empty", test_sequential_empty);
    CU_add_test(s, "sequential nested", test_sequential_nested);
    CU_add_test(s, "repr", test_repr);
    return tu_run();
}
