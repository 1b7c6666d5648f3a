/* tests/layers/test_layer_contracts.c - what the conformance table cannot
 * show for the layers of issue 10 part B: bad configs and bad inputs fail
 * with a status and a message naming the problem (never a crash), the
 * documented edge cases (single inputs, p = 0, padding rows), and, with
 * tests/layers/test_modes.c, the train/eval contract. */
#include "test_util.h"

static nnm_ctx *g_ctx;
#define TU_CTX g_ctx

static int suite_init(void) {
    return tu_ctx_new(&g_ctx);
}

static int suite_clean(void) {
    return tu_ctx_free(&g_ctx);
}

/* nnm_module_create must fail with `want` and a message containing needle. */
static void expect_create_fails(const char *layer, nnm_config *cfg, nnm_status want,
                                const char *needle) {
    nnm_module *m = (nnm_module *)&m;
    CHECK_ERROR(nnm_module_create(g_ctx, layer, cfg, &m), want, needle);
    CU_ASSERT_PTR_NULL(m);
    if (m != NULL && m != (nnm_module *)&m)
        nnm_module_release(m);
}

static nnm_config *cfg_new(void) {
    nnm_config *c = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_config_new(&c), NNM_OK);
    return c;
}

static void test_activation_configs(void) {
    LEAK_CHECK_BEGIN();
    nnm_config *c = cfg_new();
    nnm_config_set_str(c, "approximate", "fast");
    expect_create_fails("gelu", c, NNM_E_INVALID, "approximate must be \"none\" or \"tanh\"");
    nnm_config_free(c);

    c = cfg_new();
    nnm_config_set_str(c, "negative_slope", "steep");
    expect_create_fails("leaky_relu", c, NNM_E_TYPE, "negative_slope");
    nnm_config_free(c);

    c = cfg_new(); /* the schema refuses keys the layer does not take */
    nnm_config_set_bool(c, "inplace", 1);
    expect_create_fails("gelu", c, NNM_E_INVALID, "config.inplace: unknown key");
    nnm_config_free(c);

    c = cfg_new();
    nnm_config_set_float(c, "alpha", INFINITY);
    expect_create_fails("elu", c, NNM_E_INVALID, "alpha must be finite");
    nnm_config_free(c);

    c = cfg_new();
    nnm_config_set_float(c, "dim", 1.0);
    expect_create_fails("softmax", c, NNM_E_TYPE, "dim");
    nnm_config_free(c);
    LEAK_CHECK_END();
}

static nnm_module *module_with(const char *layer, const char *key, int64_t v) {
    nnm_config *c = cfg_new();
    if (key != NULL)
        nnm_config_set_int(c, key, v);
    nnm_module *m = tu_module(g_ctx, layer, c);
    nnm_config_free(c);
    CU_ASSERT_PTR_NOT_NULL(m);
    return m;
}

static void test_softmax_dim_range(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *m = module_with("softmax", "dim", 2);
    nnm_tensor *x = tu_tf32(g_ctx, 2, (int64_t[]){2, 3}, NULL), *y = NULL;
    CHECK_ERROR(tu_call1(m, x, &y), NNM_E_SHAPE, "dim 2 is out of range for an input of 2 dims");
    CU_ASSERT_PTR_NULL(y);
    nnm_module_release(m);
    /* dim -2 on [2, 3] is dim 0: columns sum to one */
    m = module_with("softmax", "dim", -2);
    float xv[6] = {1, 2, 3, -1, 0.5f, 7};
    nnm_tensor_release(x);
    x = tu_tf32(g_ctx, 2, (int64_t[]){2, 3}, xv);
    CHECK_STATUS(tu_call1(m, x, &y), NNM_OK);
    float yv[6] = {0};
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(y, yv, 6), NNM_OK);
    for (int j = 0; j < 3; j++)
        CU_ASSERT_TRUE(tu_near(yv[j] + yv[3 + j], 1.0, 0, 1e-6));
    nnm_tensor_release(y);
    nnm_tensor_release(x);
    nnm_module_release(m);
    /* an i64 input is refused by dtype */
    m = module_with("gelu", NULL, 0);
    nnm_tensor *idx = tu_ti64(g_ctx, 1, (int64_t[]){2}, (int64_t[]){1, 2});
    CHECK_ERROR(tu_call1(m, idx, &y), NNM_E_DTYPE, "f32");
    nnm_tensor_release(idx);
    nnm_module_release(m);
    LEAK_CHECK_END();
}

static void test_embedding_contract(void) {
    LEAK_CHECK_BEGIN();
    nnm_config *c = cfg_new();
    nnm_config_set_int(c, "num_embeddings", 4);
    nnm_config_set_int(c, "embedding_dim", 3);
    nnm_config_set_int(c, "padding_idx", 4);
    expect_create_fails("embedding", c, NNM_E_INVALID, "padding_idx must be within");
    nnm_config_set_int(c, "padding_idx", -5);
    expect_create_fails("embedding", c, NNM_E_INVALID, "padding_idx must be within");
    nnm_config_set_int(c, "num_embeddings", 0);
    expect_create_fails("embedding", c, NNM_E_INVALID, "num_embeddings must be > 0");
    nnm_config_set_int(c, "num_embeddings", 4);
    nnm_config_set_bool(c, "sparse", 1); /* not supported: refused, not ignored */
    expect_create_fails("embedding", c, NNM_E_INVALID, "config.sparse: unknown key");
    nnm_config_free(c);

    c = cfg_new();
    nnm_config_set_int(c, "num_embeddings", 4);
    nnm_config_set_int(c, "embedding_dim", 3);
    nnm_config_set_int(c, "padding_idx", -1);
    nnm_module *m = tu_module(g_ctx, "embedding", c);
    nnm_config_free(c);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    tu_named p = tu_params_of(m);
    CU_ASSERT_EQUAL(p.n, 1);
    CU_ASSERT_STRING_EQUAL(p.names[0], "weight");
    float w[12];
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(p.t[0], w, 12), NNM_OK);
    CU_ASSERT_TRUE(w[9] == 0.0f && w[10] == 0.0f && w[11] == 0.0f); /* row 3 = padding */
    CU_ASSERT_TRUE(w[0] != 0.0f || w[1] != 0.0f);                   /* N(0, 1) elsewhere */

    nnm_tensor *y = NULL;
    nnm_tensor *bad = tu_ti64(g_ctx, 2, (int64_t[]){1, 3}, (int64_t[]){0, 4, 1});
    CHECK_ERROR(tu_call1(m, bad, &y), NNM_E_INVALID, "index 4 (element 1) is out of range");
    nnm_tensor_release(bad);
    bad = tu_ti64(g_ctx, 1, (int64_t[]){1}, (int64_t[]){-1});
    CHECK_ERROR(tu_call1(m, bad, &y), NNM_E_INVALID, "index -1");
    nnm_tensor_release(bad);
    bad = tu_tf32(g_ctx, 1, (int64_t[]){2}, (float[]){0, 1});
    CHECK_ERROR(tu_call1(m, bad, &y), NNM_E_DTYPE, "i64 indices");
    nnm_tensor_release(bad);
    /* 0-d indices give one vector */
    nnm_tensor *one = tu_ti64(g_ctx, 0, NULL, (int64_t[]){2});
    CHECK_STATUS(tu_call1(m, one, &y), NNM_OK);
    CU_ASSERT_TRUE(tu_shape_is(y, 1, (int64_t[]){3}));
    nnm_tensor_release(y);
    nnm_tensor_release(one);
    char repr[256];
    nnm_module_repr(m, repr, sizeof repr);
    CU_ASSERT_PTR_NOT_NULL(strstr(repr, "Embedding(4, 3, padding_idx=3)"));
    nnm_module_release(m);
    LEAK_CHECK_END();
}

static void test_concat_mul_contract(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *cat = module_with("concat", "dim", 1);
    nnm_tensor *a = tu_tf32(g_ctx, 2, (int64_t[]){2, 3}, NULL);
    nnm_tensor *b = tu_tf32(g_ctx, 2, (int64_t[]){3, 3}, NULL);
    nnm_tensor *y = NULL;
    CHECK_ERROR(tu_call2(cat, a, b, &y), NNM_E_SHAPE, "input 1 has size 3 in dim 0");
    CU_ASSERT_PTR_NULL(y);
    nnm_tensor *c3 = tu_tf32(g_ctx, 3, (int64_t[]){2, 3, 1}, NULL);
    CHECK_ERROR(tu_call2(cat, a, c3, &y), NNM_E_SHAPE, "input 1 has 3 dims");
    nnm_tensor *in1[1] = {a};
    CHECK_STATUS(nnm_module_call(cat, in1, 1, &y, 1), NNM_OK);
    CU_ASSERT_PTR_EQUAL(y, a); /* one input: itself */
    nnm_tensor_release(y);
    nnm_module_release(cat);
    cat = module_with("concat", "dim", 5);
    CHECK_ERROR(tu_call2(cat, a, a, &y), NNM_E_SHAPE, "dim 5 is out of range");
    nnm_module_release(cat);
    nnm_config *c = cfg_new();
    nnm_config_set_int(c, "dim", 9);
    expect_create_fails("concat", c, NNM_E_INVALID, "dim must be in [-8, 8)");
    nnm_config_free(c);

    nnm_module *mul = tu_module(g_ctx, "mul", NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(mul);
    CHECK_ERROR(tu_call2(mul, a, b, &y), NNM_E_SHAPE, "");
    CU_ASSERT_PTR_NULL(y);
    CHECK_STATUS(nnm_module_call(mul, in1, 1, &y, 1), NNM_OK);
    CU_ASSERT_PTR_EQUAL(y, a);
    nnm_tensor_release(y);
    nnm_module_release(mul);
    nnm_tensor_release(a);
    nnm_tensor_release(b);
    nnm_tensor_release(c3);
    LEAK_CHECK_END();
}

static void test_attention_contract(void) {
    LEAK_CHECK_BEGIN();
    nnm_config *c = cfg_new();
    nnm_config_set_int(c, "embed_dim", 6);
    nnm_config_set_int(c, "num_heads", 4);
    expect_create_fails("multihead_attention", c, NNM_E_INVALID,
                        "embed_dim must be divisible by num_heads");
    nnm_config_set_int(c, "num_heads", 2);
    nnm_config_set_float(c, "dropout", 1.0);
    expect_create_fails("multihead_attention", c, NNM_E_INVALID, "dropout must be in [0, 1)");
    nnm_config_set_float(c, "dropout", 0.0);
    nnm_config_set_int(c, "kdim", 3); /* not supported: refused, not ignored */
    expect_create_fails("multihead_attention", c, NNM_E_INVALID, "config.kdim: unknown key");
    nnm_config_free(c);

    c = cfg_new();
    nnm_config_set_int(c, "embed_dim", 6);
    nnm_config_set_int(c, "num_heads", 2);
    nnm_config_set_bool(c, "batch_first", 1);
    nnm_module *m = tu_module(g_ctx, "multihead_attention", c);
    nnm_config_free(c);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    tu_named p = tu_params_of(m);
    CU_ASSERT_EQUAL(p.n, 2);
    CU_ASSERT_PTR_NOT_NULL(tu_named_get(&p, "in_proj_weight"));
    CU_ASSERT_PTR_NOT_NULL(tu_named_get(&p, "in_proj_bias"));
    nnm_tensor *x = tu_tf32(g_ctx, 3, (int64_t[]){2, 3, 6}, NULL), *y = NULL;
    nnm_tensor *in[4] = {x, x, x, NULL};
    /* without its out_proj child: a message, not a crash */
    CHECK_ERROR(nnm_module_call(m, in, 3, &y, 1), NNM_E_INVALID, "child named 'out_proj'");
    CHECK_STATUS(nnm_module_finalize(m), NNM_E_INVALID);
    nnm_module *op = tu_linear(g_ctx, "linear", 6, 6, 1);
    CHECK_STATUS(nnm_module_add_child(m, "out_proj", op), NNM_OK);
    nnm_module_release(op);
    CHECK_STATUS(nnm_module_finalize(m), NNM_OK);
    p = tu_params_of(m);
    CU_ASSERT_PTR_NOT_NULL(tu_named_get(&p, "out_proj.weight"));
    CHECK_STATUS(nnm_module_call(m, in, 3, &y, 1), NNM_OK);
    CU_ASSERT_TRUE(tu_shape_is(y, 3, (int64_t[]){2, 3, 6}));
    nnm_tensor_release(y);
    y = NULL;
    nnm_tensor *outs[2] = {NULL, NULL};
    CHECK_STATUS(nnm_module_call(m, in, 3, outs, 2), NNM_OK);
    CU_ASSERT_TRUE(tu_shape_is(outs[1], 3, (int64_t[]){2, 3, 3})); /* weights [N, L, S] */
    nnm_tensor_release(outs[0]);
    nnm_tensor_release(outs[1]);
    nnm_tensor *bad = tu_tf32(g_ctx, 3, (int64_t[]){2, 3, 5}, NULL);
    in[1] = bad;
    CHECK_ERROR(nnm_module_call(m, in, 3, &y, 1), NNM_E_SHAPE, "key must be [N, L, E]");
    in[1] = x;
    nnm_tensor *kpm = tu_tf32(g_ctx, 2, (int64_t[]){2, 4}, NULL);
    in[3] = kpm;
    CHECK_ERROR(nnm_module_call(m, in, 4, &y, 1), NNM_E_SHAPE, "key_padding_mask must be [N, S]");
    nnm_tensor *idx = tu_ti64(g_ctx, 2, (int64_t[]){2, 3}, (int64_t[]){0, 0, 1, 0, 0, 0});
    in[3] = idx;
    CHECK_ERROR(nnm_module_call(m, in, 4, &y, 1), NNM_E_DTYPE, "key_padding_mask must be bool");
    CHECK_ERROR(nnm_module_call(m, in, 2, &y, 1), NNM_E_SHAPE, "query, key, value");
    char repr[512];
    nnm_module_repr(m, repr, sizeof repr);
    CU_ASSERT_PTR_NOT_NULL(strstr(repr, "MultiheadAttention(\n  (out_proj): Linear("));
    nnm_tensor_release(idx);
    nnm_tensor_release(kpm);
    nnm_tensor_release(bad);
    nnm_tensor_release(x);
    nnm_module_release(m);
    LEAK_CHECK_END();
}

static void test_dropout_contract(void) {
    LEAK_CHECK_BEGIN();
    nnm_config *c = cfg_new();
    nnm_config_set_float(c, "p", 1.5);
    expect_create_fails("dropout", c, NNM_E_INVALID, "between 0 and 1, but got 1.5");
    nnm_config_set_float(c, "p", -0.1);
    expect_create_fails("dropout2d", c, NNM_E_INVALID, "between 0 and 1");
    nnm_config_set_float(c, "p", 0.1);
    nnm_module *m = tu_module(g_ctx, "dropout", c);
    nnm_config_free(c);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    char repr[128];
    nnm_module_repr(m, repr, sizeof repr);
    CU_ASSERT_PTR_NOT_NULL(strstr(repr, "Dropout(p=0.1, inplace=False)"));
    nnm_module_release(m);
    LEAK_CHECK_END();
}

int main(void) {
    CU_pSuite s = tu_suite("layer contracts", suite_init, suite_clean);
    if (s == NULL)
        return 1;
    CU_add_test(s, "activation configs", test_activation_configs);
    CU_add_test(s, "softmax dims and dtypes", test_softmax_dim_range);
    CU_add_test(s, "embedding", test_embedding_contract);
    CU_add_test(s, "concat and mul", test_concat_mul_contract);
    CU_add_test(s, "multihead_attention", test_attention_contract);
    CU_add_test(s, "dropout", test_dropout_contract);
    return tu_run();
}
