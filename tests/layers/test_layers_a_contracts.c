/* tests/layers/test_layers_a_contracts.c - bad configs and inputs of the
 * issue-10 part A layers (conv, pooling, flatten, normalisation) are refused
 * with the status and a message naming the problem, as PyTorch refuses them;
 * mode semantics (batch norm differs between train and eval, eval() reaches
 * nested modules, eval calls repeat exactly). */
#include "test_util.h"

static nnm_ctx *g_ctx;
#define TU_CTX g_ctx

/* A config from "key=int" / "key=[a,b]" / "key='str'" / "key=f:1.5" / "key=b:1" items. */
static nnm_config *cfg_of(const char *const *items) {
    nnm_config *c = NULL;
    nnm_config_new(&c);
    for (; items && *items; items++) {
        char key[64];
        const char *eq = strchr(*items, '=');
        snprintf(key, sizeof key, "%.*s", (int)(eq - *items), *items);
        const char *v = eq + 1;
        if (v[0] == '\'') {
            char s[64];
            snprintf(s, sizeof s, "%.*s", (int)strlen(v) - 2, v + 1);
            nnm_config_set_str(c, key, s);
        } else if (v[0] == '[') {
            int64_t xs[8];
            size_t n = 0;
            for (const char *p = v + 1; *p && *p != ']' && n < 8;) {
                xs[n++] = strtoll(p, (char **)&p, 10);
                if (*p == ',') p++;
            }
            nnm_config_set_ints(c, key, xs, n);
        } else if (!strncmp(v, "f:", 2)) {
            nnm_config_set_float(c, key, atof(v + 2));
        } else if (!strncmp(v, "b:", 2)) {
            nnm_config_set_bool(c, key, atoi(v + 2));
        } else {
            nnm_config_set_int(c, key, atoll(v));
        }
    }
    return c;
}

/* create fails with `code` and a message containing `needle`. */
static void refused(const char *layer, const char *const *items, nnm_status code, const char *needle) {
    nnm_config *c = cfg_of(items);
    nnm_module *m = NULL;
    nnm_status st = nnm_module_create(g_ctx, layer, c, &m);
    nnm_config_free(c);
    if (st != code || !strstr(nnm_ctx_errmsg(g_ctx), needle))
        fprintf(stderr, "\n  %s: got %s \"%s\", want %s with \"%s\"\n", layer, nnm_status_name(st),
                nnm_ctx_errmsg(g_ctx), nnm_status_name(code), needle);
    CU_ASSERT_EQUAL(st, code);
    CU_ASSERT_PTR_NOT_NULL(strstr(nnm_ctx_errmsg(g_ctx), needle));
    nnm_module_release(m);
}

static nnm_module *made(const char *layer, const char *const *items) {
    nnm_config *c = cfg_of(items);
    nnm_module *m = tu_module(g_ctx, layer, c);
    nnm_config_free(c);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    return m;
}

static nnm_tensor *ones(int32_t nd, const int64_t *shape) {
    int64_t n = 1;
    for (int32_t i = 0; i < nd; i++) n *= shape[i];
    float *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    for (int64_t i = 0; i < n; i++) v[i] = (float)((i * 7) % 11) * 0.25f - 1.0f;
    nnm_tensor *t = NULL;
    CU_ASSERT_EQUAL(nnm_tensor_from_f32(g_ctx, nd, shape, v, &t), NNM_OK);
    free(v);
    return t;
}

/* calling m on x fails with code and a message containing needle */
static void call_refused(nnm_module *m, nnm_tensor *x, nnm_status code, const char *needle) {
    nnm_tensor *y = NULL;
    nnm_status st = nnm_module_call(m, &x, 1, &y, 1);
    if (st != code || !strstr(nnm_ctx_errmsg(g_ctx), needle))
        fprintf(stderr, "\n  call: got %s \"%s\", want %s with \"%s\"\n", nnm_status_name(st),
                nnm_ctx_errmsg(g_ctx), nnm_status_name(code), needle);
    CU_ASSERT_EQUAL(st, code);
    CU_ASSERT_PTR_NOT_NULL(strstr(nnm_ctx_errmsg(g_ctx), needle));
    CU_ASSERT_PTR_NULL(y);
}

static void test_conv_configs(void) {
    const char *base[] = {"in_channels=4", "out_channels=6", NULL};
    (void)base;
    refused("conv2d", (const char *[]){"in_channels=4", "out_channels=6", NULL}, NNM_E_NOT_FOUND, "kernel_size");
    refused("conv2d", (const char *[]){"in_channels=4", "out_channels=6", "kernel_size=[3,3,3]", NULL}, NNM_E_SHAPE,
            "kernel_size");
    refused("conv2d", (const char *[]){"in_channels=4", "out_channels=6", "kernel_size='x'", NULL}, NNM_E_TYPE,
            "kernel_size");
    refused("conv2d", (const char *[]){"in_channels=4", "out_channels=6", "kernel_size=3", "groups=3", NULL},
            NNM_E_INVALID, "divisible by groups");
    refused("conv2d", (const char *[]){"in_channels=4", "out_channels=6", "kernel_size=3", "stride=2",
                                       "padding='same'", NULL},
            NNM_E_INVALID, "strided");
    refused("conv2d", (const char *[]){"in_channels=4", "out_channels=6", "kernel_size=3", "padding='full'", NULL},
            NNM_E_INVALID, "padding string");
    refused("conv2d", (const char *[]){"in_channels=4", "out_channels=6", "kernel_size=3", "padding_mode='mirror'",
                                       NULL},
            NNM_E_INVALID, "padding_mode must be one of");
    refused("conv_transpose2d", (const char *[]){"in_channels=4", "out_channels=6", "kernel_size=3",
                                                 "padding_mode='reflect'", NULL},
            NNM_E_INVALID, "only \"zeros\" padding mode");
    refused("conv2d", (const char *[]){"in_channels=0", "out_channels=6", "kernel_size=3", NULL}, NNM_E_INVALID,
            "in_channels");
    refused("conv2d", (const char *[]){"in_channels=4", "out_channels=6", "kernel_size=3", "dilation=0", NULL},
            NNM_E_INVALID, "dilation");
    refused("conv2d", (const char *[]){"in_channels=4", "out_channels=6", "kernel_size=3", "bogus=1", NULL},
            NNM_E_INVALID, "bogus");
    refused("conv_transpose2d", (const char *[]){"in_channels=4", "out_channels=6", "kernel_size=3",
                                                 "output_padding=2", "stride=2", NULL},
            NNM_E_INVALID, "output padding");
    refused("conv_transpose2d", (const char *[]){"in_channels=4", "out_channels=6", "kernel_size=3",
                                                 "padding='same'", NULL},
            NNM_E_TYPE, "padding");
}

static void test_conv_inputs(void) {
    nnm_module *m = made("conv2d", (const char *[]){"in_channels=3", "out_channels=2", "kernel_size=3", NULL});
    int64_t wrong_c[4] = {1, 4, 5, 5}, small[4] = {1, 3, 2, 5}, flat[2] = {3, 5};
    nnm_tensor *a = ones(4, wrong_c), *b = ones(4, small), *c = ones(2, flat);
    call_refused(m, a, NNM_E_SHAPE, "3 channels");
    call_refused(m, b, NNM_E_SHAPE, "smaller than the kernel");
    call_refused(m, c, NNM_E_SHAPE, "expected a 3D (unbatched) or 4D (batched) input");
    nnm_tensor_release(a), nnm_tensor_release(b), nnm_tensor_release(c);
    nnm_module_release(m);
}

/* A zero spatial size is refused unless the batch is empty, as PyTorch does
 * (conv_transpose2d used to return a bias-only [2, 2, 2, 6] from [2, 1, 0, 4]). */
static void test_conv_zero_spatial(void) {
    nnm_module *c = made("conv2d", (const char *[]){"in_channels=1", "out_channels=2", "kernel_size=1",
                                                   "padding=1", NULL});
    nnm_module *t = made("conv_transpose2d", (const char *[]){"in_channels=1", "out_channels=2", "kernel_size=3",
                                                             NULL});
    int64_t zs[4] = {2, 1, 0, 4}, zb[4] = {0, 1, 0, 4};
    nnm_tensor *a = ones(4, zs), *b = ones(4, zb), *y = NULL;
    call_refused(c, a, NNM_E_SHAPE, "only a zero batch");
    call_refused(t, a, NNM_E_SHAPE, "only a zero batch");
    CU_ASSERT_EQUAL(nnm_module_call(c, &b, 1, &y, 1), NNM_OK); /* PyTorch: [0, 2, 2, 6] */
    if (y) {
        const nnm_tensor_desc *d = nnm_tensor_desc_get(y);
        CU_ASSERT(d->ndim == 4 && d->shape[0] == 0 && d->shape[1] == 2 && d->shape[2] == 2 && d->shape[3] == 6);
    }
    nnm_tensor_release(y), nnm_tensor_release(a), nnm_tensor_release(b);
    nnm_module_release(c), nnm_module_release(t);
}

/* conv 1.1 functional=true (F.conv2d(x, weight, bias)): no parameters, the
 * weight and bias are inputs; the same numbers as the module with that
 * weight, the gradient reaches the weight input; wrong operands refused. */
static void test_conv_functional(void) {
    const char *mod_cfg[] = {"in_channels=3", "out_channels=4", "kernel_size=3", "padding=1", "groups=1", NULL};
    const char *fn_cfg[] = {"in_channels=3", "out_channels=4", "kernel_size=3", "padding=1", "functional=b:1", NULL};
    nnm_module *m = made("conv2d", mod_cfg), *f = made("conv2d", fn_cfg);
    tu_named mp = tu_params_of(m), fp = tu_params_of(f);
    CU_ASSERT_EQUAL(fp.n, 0);
    nnm_tensor *w = tu_named_get(&mp, "weight"), *b = tu_named_get(&mp, "bias");
    CU_ASSERT_PTR_NOT_NULL_FATAL(w);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    int64_t n = 0;
    float *wv = tu_read_f32(w, &n);
    nnm_tensor *w2 = tu_tf32(g_ctx, 4, (int64_t[]){4, 3, 3, 3}, wv);
    free(wv);
    CHECK_STATUS(nnm_tensor_set_requires_grad(w2, 1), NNM_OK);
    int64_t xs[4] = {2, 3, 5, 6};
    nnm_tensor *x = ones(4, xs), *y1 = NULL, *y2 = NULL, *y3 = NULL;
    CHECK_STATUS(tu_call1(m, x, &y1), NNM_OK);
    nnm_tensor *in3[3] = {x, w2, b};
    CHECK_STATUS(nnm_module_call(f, in3, 3, &y2, 1), NNM_OK);
    int64_t n1 = 0, n2 = 0;
    float *a1 = y1 ? tu_read_f32(y1, &n1) : NULL, *a2 = y2 ? tu_read_f32(y2, &n2) : NULL;
    CU_ASSERT_TRUE_FATAL(a1 && a2 && n1 == n2 && n1 == 2 * 4 * 5 * 6);
    CU_ASSERT_EQUAL(memcmp(a1, a2, (size_t)n1 * sizeof *a1), 0);
    /* the gradient reaches the weight input, as the module's parameter's */
    nnm_tensor *g = ones(4, (int64_t[]){2, 4, 5, 6});
    CHECK_STATUS(nnm_backward(y1, g, 0), NNM_OK);
    CHECK_STATUS(nnm_backward(y2, g, 0), NNM_OK);
    float *g1 = nnm_tensor_grad(w) ? tu_read_f32(nnm_tensor_grad(w), &n1) : NULL;
    float *g2 = nnm_tensor_grad(w2) ? tu_read_f32(nnm_tensor_grad(w2), &n2) : NULL;
    CU_ASSERT_TRUE_FATAL(g1 && g2 && n1 == n2 && n1 == 4 * 3 * 3 * 3);
    for (int64_t i = 0; i < n1; i++) CU_ASSERT_TRUE(tu_near(g2[i], g1[i], 1e-6, 1e-6));
    /* without a bias (two inputs), and a 0-element bias: none */
    nnm_tensor *none = tu_tf32(g_ctx, 1, (int64_t[]){0}, (float[]){0});
    nnm_tensor *in2[3] = {x, w2, none};
    CHECK_STATUS(nnm_module_call(f, in2, 2, &y3, 1), NNM_OK);
    nnm_tensor *y4 = NULL;
    CHECK_STATUS(nnm_module_call(f, in2, 3, &y4, 1), NNM_OK);
    int64_t n3 = 0, n4 = 0;
    float *a3 = y3 ? tu_read_f32(y3, &n3) : NULL, *a4 = y4 ? tu_read_f32(y4, &n4) : NULL;
    CU_ASSERT_TRUE(a3 && a4 && n3 == n4 && !memcmp(a3, a4, (size_t)n3 * sizeof *a3));
    /* refused: one input, a weight of another shape, a bias of another size */
    nnm_tensor *y5 = NULL;
    CHECK_ERROR(nnm_module_call(f, &x, 1, &y5, 1), NNM_E_SHAPE, "takes 2 or 3 inputs");
    nnm_tensor *wbad = ones(4, (int64_t[]){4, 3, 2, 3});
    nnm_tensor *inb[3] = {x, wbad, b};
    CHECK_ERROR(nnm_module_call(f, inb, 3, &y5, 1), NNM_E_SHAPE, "weight must be [4, 3, kernel_size...]");
    nnm_tensor *bbad = ones(1, (int64_t[]){3});
    nnm_tensor *inc[3] = {x, w2, bbad};
    CHECK_ERROR(nnm_module_call(f, inc, 3, &y5, 1), NNM_E_SHAPE, "bias must have 4 elements");
    /* the module form still takes one input */
    CHECK_ERROR(nnm_module_call(m, in3, 3, &y5, 1), NNM_E_SHAPE, "takes 1 input");
    free(a1), free(a2), free(a3), free(a4), free(g1), free(g2);
    nnm_tensor_release(y1), nnm_tensor_release(y2), nnm_tensor_release(y3), nnm_tensor_release(y4);
    nnm_tensor_release(x), nnm_tensor_release(w2), nnm_tensor_release(g), nnm_tensor_release(none);
    nnm_tensor_release(wbad), nnm_tensor_release(bbad);
    nnm_module_release(m), nnm_module_release(f);
}

static void test_pool_and_flatten(void) {
    /* max pooling and adaptive max pooling return indices (issue 18): below, and
     * the conformance rows */
    refused("max_pool2d", (const char *[]){"kernel_size=2", "padding=2", NULL}, NNM_E_INVALID, "half of kernel");
    {   /* two outputs only with return_indices */
        nnm_module *mp = made("max_pool2d", (const char *[]){"kernel_size=2", NULL});
        nnm_module *mpi = made("max_pool2d", (const char *[]){"kernel_size=2", "return_indices=b:1", NULL});
        nnm_tensor *x = tu_tf32(g_ctx, 3, (int64_t[]){1, 2, 2}, (float[]){1, 4, 3, 2});
        nnm_tensor *y[3] = {NULL, NULL, NULL};
        CHECK_ERROR(nnm_module_call(mp, &x, 1, y, 2), NNM_E_SHAPE, "returns 1 output");
        CHECK_ERROR(nnm_module_call(mpi, &x, 1, y, 3), NNM_E_SHAPE, "1 or 2 outputs");
        CHECK_STATUS(nnm_module_call(mpi, &x, 1, y, 2), NNM_OK);
        int64_t n = 0;
        float *idx = y[1] ? tu_read_f32(y[1], &n) : NULL;
        CU_ASSERT_TRUE(idx != NULL && n == 1 && idx[0] == 1.0f); /* 4 at (0, 1) */
        free(idx);
        /* max_unpool2d puts the values back where the indices say */
        nnm_module *up = made("max_unpool2d", (const char *[]){"kernel_size=2", NULL});
        nnm_tensor *u = NULL, *two[2] = {y[0], y[1]};
        CHECK_STATUS(nnm_module_call(up, two, 2, &u, 1), NNM_OK);
        float uv[4] = {-1, -1, -1, -1};
        CU_ASSERT_TRUE(u != NULL && tu_shape_is(u, 3, (int64_t[]){1, 2, 2}) &&
                       nnm_tensor_to_f32(u, uv, 4) == NNM_OK);
        CU_ASSERT_TRUE(uv[0] == 0.0f && uv[1] == 4.0f && uv[2] == 0.0f && uv[3] == 0.0f);
        nnm_tensor_release(u);
        nnm_tensor *bad_i = tu_ti64(g_ctx, 3, (int64_t[]){1, 1, 1}, (int64_t[]){4});
        two[1] = bad_i;
        CHECK_ERROR(nnm_module_call(up, two, 2, &u, 1), NNM_E_INVALID, "Found an invalid max index: 4");
        nnm_tensor_release(bad_i);
        bad_i = tu_ti64(g_ctx, 3, (int64_t[]){1, 1, 2}, (int64_t[]){0, 1});
        two[1] = bad_i;
        CHECK_ERROR(nnm_module_call(up, two, 2, &u, 1), NNM_E_SHAPE, "same as that of the input");
        nnm_tensor_release(bad_i);
        two[1] = y[0];
        CHECK_ERROR(nnm_module_call(up, two, 2, &u, 1), NNM_E_DTYPE, "indices must be i64");
        nnm_module_release(up);
        nnm_tensor_release(y[0]), nnm_tensor_release(y[1]), nnm_tensor_release(x);
        nnm_module_release(mp), nnm_module_release(mpi);
    }
    refused("avg_pool2d", (const char *[]){"kernel_size=2", "divisor_override=0", NULL}, NNM_E_INVALID, "divisor");
    refused("adaptive_avg_pool2d", (const char *[]){"output_size=0", NULL}, NNM_E_INVALID, "output_size");
    refused("unflatten", (const char *[]){"dim=1", "unflattened_size=[-1,-1]", NULL}, NNM_E_INVALID, "-1");
    nnm_module *m = made("max_pool2d", (const char *[]){"kernel_size=3", NULL});
    int64_t tiny[4] = {1, 1, 2, 2}, two[2] = {4, 4};
    nnm_tensor *a = ones(4, tiny), *b = ones(2, two);
    call_refused(m, a, NNM_E_SHAPE, "too small");
    call_refused(m, b, NNM_E_SHAPE, "3D or 4D");
    nnm_module_release(m);
    m = made("unflatten", (const char *[]){"dim=1", "unflattened_size=[3,2]", NULL});
    call_refused(m, b, NNM_E_SHAPE, "multiply up");
    nnm_module_release(m);
    m = made("flatten", (const char *[]){"start_dim=3", NULL});
    call_refused(m, b, NNM_E_SHAPE, "out of range");
    nnm_module_release(m);
    nnm_tensor_release(a), nnm_tensor_release(b);
}

static void test_norm_configs_and_inputs(void) {
    refused("batch_norm2d", (const char *[]){"num_features=3", "momentum='often'", NULL}, NNM_E_INVALID, "momentum");
    refused("batch_norm2d", (const char *[]){NULL}, NNM_E_NOT_FOUND, "num_features");
    refused("group_norm", (const char *[]){"num_groups=4", "num_channels=6", NULL}, NNM_E_INVALID, "divisible");
    refused("layer_norm", (const char *[]){"normalized_shape=[0]", NULL}, NNM_E_INVALID, "normalized_shape");
    nnm_module *m = made("batch_norm2d", (const char *[]){"num_features=3", NULL});
    int64_t one_per_channel[4] = {1, 3, 1, 1}, wrong[4] = {2, 4, 2, 2}, three[3] = {2, 3, 4};
    nnm_tensor *a = ones(4, one_per_channel), *b = ones(4, wrong), *c = ones(3, three);
    call_refused(m, a, NNM_E_SHAPE, "more than 1 value per channel");
    call_refused(m, b, NNM_E_SHAPE, "expected 3 channels");
    call_refused(m, c, NNM_E_SHAPE, "expected 4D input");
    /* eval mode takes a single sample (running statistics) */
    nnm_module_train(m, 0);
    nnm_tensor *y = NULL;
    CU_ASSERT_EQUAL(nnm_module_call(m, &a, 1, &y, 1), NNM_OK);
    nnm_tensor_release(y);
    nnm_module_release(m);
    m = made("layer_norm", (const char *[]){"normalized_shape=[5]", NULL});
    call_refused(m, c, NNM_E_SHAPE, "normalized_shape");
    nnm_module_release(m);
    nnm_tensor_release(a), nnm_tensor_release(b), nnm_tensor_release(c);
}

/* Batch norm inside a sequential: train and eval differ, eval() on the root
 * reaches it, eval calls repeat exactly and leave the running stats alone. */
static void test_mode_semantics(void) {
    nnm_module *root = tu_module(g_ctx, "sequential", NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(root);
    nnm_module *bn = made("batch_norm2d", (const char *[]){"num_features=2", NULL});
    CU_ASSERT_EQUAL_FATAL(nnm_module_add_child(root, "bn", bn), NNM_OK);
    int64_t shape[4] = {3, 2, 2, 2};
    nnm_tensor *x = ones(4, shape), *y1 = NULL, *y2 = NULL, *y3 = NULL;
    CU_ASSERT_EQUAL(nnm_module_call(root, &x, 1, &y1, 1), NNM_OK); /* train: batch stats, stats move */
    CU_ASSERT_EQUAL(nnm_module_train(root, 0), NNM_OK);
    CU_ASSERT_FALSE(nnm_module_is_training(bn));
    float rm0[2], rm1[2];
    nnm_tensor *rm = NULL;
    tu_named bufs = {0};
    nnm_module_named_buffers(bn, tu_named_add, &bufs);
    rm = tu_named_get(&bufs, "running_mean");
    CU_ASSERT_PTR_NOT_NULL_FATAL(rm);
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(rm, rm0, 2), NNM_OK);
    CU_ASSERT_EQUAL(nnm_module_call(root, &x, 1, &y2, 1), NNM_OK);
    CU_ASSERT_EQUAL(nnm_module_call(root, &x, 1, &y3, 1), NNM_OK);
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(rm, rm1, 2), NNM_OK);
    CU_ASSERT_EQUAL(memcmp(rm0, rm1, sizeof rm0), 0); /* eval updates nothing */
    int64_t n = 0;
    float *a = tu_read_f32(y1, &n), *b = tu_read_f32(y2, NULL), *c = tu_read_f32(y3, NULL);
    CU_ASSERT_EQUAL(memcmp(b, c, (size_t)n * sizeof *b), 0);  /* eval is repeatable */
    CU_ASSERT_NOT_EQUAL(memcmp(a, b, (size_t)n * sizeof *a), 0); /* train and eval differ */
    CU_ASSERT_TRUE(rm0[0] != 0.0f || rm0[1] != 0.0f);            /* the train call moved them */
    free(a), free(b), free(c);
    nnm_tensor_release(y1), nnm_tensor_release(y2), nnm_tensor_release(y3), nnm_tensor_release(x);
    nnm_module_release(bn);
    nnm_module_release(root);
}

static int suite_init(void) { return tu_ctx_new(&g_ctx); }
static int suite_clean(void) { return tu_ctx_free(&g_ctx); }

int main(void) {
    CU_pSuite s = tu_suite("layers_a_contracts", suite_init, suite_clean);
    if (!s) return 1;
    CU_add_test(s, "conv configs refused as PyTorch refuses them", test_conv_configs);
    CU_add_test(s, "conv inputs of the wrong shape", test_conv_inputs);
    CU_add_test(s, "conv: zero spatial size only with a zero batch", test_conv_zero_spatial);
    CU_add_test(s, "conv functional=true: weight and bias as inputs", test_conv_functional);
    CU_add_test(s, "pool and flatten configs and inputs", test_pool_and_flatten);
    CU_add_test(s, "normalisation configs and inputs", test_norm_configs_and_inputs);
    CU_add_test(s, "batch norm: train vs eval, eval() reaches children, eval repeatable", test_mode_semantics);
    return tu_run();
}
