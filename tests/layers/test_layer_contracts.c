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
    /* op_index_select checks the indices (on any device) and names the entry */
    CHECK_ERROR(tu_call1(m, bad, &y), NNM_E_INVALID, "index 4 (entry 1) is out of range for a dim of size 4");
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

/* embedding_bag (issue 18): bad configs and inputs are refused with PyTorch's
 * reasons; the cases PyTorch 1.13 gets wrong are refused with ours. */
static nnm_status bag_call(nnm_module *m, nnm_tensor *a, nnm_tensor *b, nnm_tensor *c) {
    nnm_tensor *in[3] = {a, b, c}, *y = NULL;
    uint32_t n = c ? 3 : b ? 2 : 1;
    nnm_status st = nnm_module_call(m, in, n, &y, 1);
    nnm_tensor_release(y);
    return st;
}

static void test_embedding_bag_contract(void) {
    LEAK_CHECK_BEGIN();
    nnm_config *c = cfg_new();
    nnm_config_set_int(c, "num_embeddings", 5);
    nnm_config_set_int(c, "embedding_dim", 2);
    nnm_config_set_str(c, "mode", "median");
    expect_create_fails("embedding_bag", c, NNM_E_INVALID, "mode has to be one of sum, mean or max");
    nnm_config_set_str(c, "mode", "max");
    nnm_config_set_bool(c, "scale_grad_by_freq", 1);
    expect_create_fails("embedding_bag", c, NNM_E_INVALID, "max mode does not support scaling");
    nnm_config_set_bool(c, "scale_grad_by_freq", 0);
    nnm_config_set_str(c, "mode", "mean");
    nnm_config_set_float(c, "max_norm", -1.0);
    expect_create_fails("embedding_bag", c, NNM_E_INVALID, "max_norm must be >= 0");
    nnm_config_free(c);

    c = cfg_new();
    nnm_config_set_int(c, "num_embeddings", 5);
    nnm_config_set_int(c, "embedding_dim", 2);
    nnm_config_set_bool(c, "include_last_offset", 1);
    nnm_module *m = tu_module(g_ctx, "embedding_bag", c);
    nnm_config_free(c);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    char repr[256];
    nnm_module_repr(m, repr, sizeof repr);
    CU_ASSERT_PTR_NOT_NULL(strstr(repr, "EmbeddingBag(5, 2, mode=mean)"));
    nnm_tensor *x1 = tu_ti64(g_ctx, 1, (int64_t[]){4}, (int64_t[]){0, 1, 2, 3});
    nnm_tensor *x2 = tu_ti64(g_ctx, 2, (int64_t[]){2, 2}, (int64_t[]){0, 1, 2, 3});
    nnm_tensor *x3 = tu_ti64(g_ctx, 3, (int64_t[]){1, 2, 2}, (int64_t[]){0, 1, 2, 3});
    nnm_tensor *xbad = tu_ti64(g_ctx, 1, (int64_t[]){2}, (int64_t[]){1, 5});
    nnm_tensor *o_nz = tu_ti64(g_ctx, 1, (int64_t[]){2}, (int64_t[]){1, 4});
    nnm_tensor *o_dec = tu_ti64(g_ctx, 1, (int64_t[]){3}, (int64_t[]){0, 3, 2});
    nnm_tensor *o_big = tu_ti64(g_ctx, 1, (int64_t[]){2}, (int64_t[]){0, 5});
    nnm_tensor *o_short = tu_ti64(g_ctx, 1, (int64_t[]){2}, (int64_t[]){0, 2});
    nnm_tensor *o_ok = tu_ti64(g_ctx, 1, (int64_t[]){2}, (int64_t[]){0, 2});
    nnm_tensor *w4 = tu_tf32(g_ctx, 1, (int64_t[]){4}, (float[]){1, 2, 3, 4});
    nnm_tensor *w3 = tu_tf32(g_ctx, 1, (int64_t[]){3}, (float[]){1, 2, 3});
    CHECK_ERROR(bag_call(m, x1, NULL, NULL), NNM_E_INVALID, "offsets has to be a 1D Tensor but got None");
    CHECK_ERROR(bag_call(m, x3, NULL, NULL), NNM_E_SHAPE, "input has to be 1D or 2D Tensor");
    CHECK_ERROR(bag_call(m, x2, o_ok, NULL), NNM_E_INVALID, "if input is 2D, then offsets has to be None");
    CHECK_ERROR(bag_call(m, x1, o_nz, NULL), NNM_E_INVALID, "offsets[0] has to be 0");
    CHECK_ERROR(bag_call(m, x1, o_dec, NULL), NNM_E_INVALID, "offsets must be non-decreasing");
    CHECK_ERROR(bag_call(m, x1, o_big, NULL), NNM_E_INVALID, "can not be greater than input's length");
    /* indices past the last offset: PyTorch 1.13's backward reads past its buffers, refused */
    CHECK_ERROR(bag_call(m, x1, o_short, NULL), NNM_E_INVALID, "the last offset must be the input's length");
    CHECK_ERROR(bag_call(m, x2, NULL, NULL), NNM_E_INVALID, "a 2-d input is not supported with it");
    CHECK_ERROR(bag_call(m, x1, o_ok, w4), NNM_E_INVALID, "only supported for mode='sum'");
    CHECK_ERROR(bag_call(m, x1, o_ok, w3), NNM_E_SHAPE, "must have the same shape as the input");
    CHECK_ERROR(bag_call(m, xbad, o_ok, NULL), NNM_E_INVALID, "index 5");
    CHECK_ERROR(bag_call(m, w4, o_ok, NULL), NNM_E_DTYPE, "i64 indices");
    /* edge cases: no indices at all (two empty bags of zeros), no bags */
    nnm_tensor *x0 = NULL, *o00 = tu_ti64(g_ctx, 1, (int64_t[]){3}, (int64_t[]){0, 0, 0}), *y = NULL;
    CHECK_STATUS(nnm_tensor_from_i64(g_ctx, 1, (int64_t[]){0}, NULL, &x0), NNM_OK);
    nnm_tensor *args[2] = {x0, o00};
    CHECK_STATUS(nnm_module_call(m, args, 2, &y, 1), NNM_OK);
    float z[4] = {1, 1, 1, 1};
    CU_ASSERT_TRUE(y != NULL && tu_shape_is(y, 2, (int64_t[]){2, 2}) && nnm_tensor_to_f32(y, z, 4) == NNM_OK);
    CU_ASSERT_TRUE(z[0] == 0.0f && z[1] == 0.0f && z[2] == 0.0f && z[3] == 0.0f);
    nnm_tensor_release(y);
    y = NULL;
    nnm_tensor *x20 = NULL;
    CHECK_STATUS(nnm_tensor_from_i64(g_ctx, 2, (int64_t[]){0, 3}, NULL, &x20), NNM_OK);
    nnm_config *c2 = cfg_new();
    nnm_config_set_int(c2, "num_embeddings", 5);
    nnm_config_set_int(c2, "embedding_dim", 2);
    nnm_config_set_str(c2, "mode", "max");
    nnm_module *m2 = tu_module(g_ctx, "embedding_bag", c2);
    nnm_config_free(c2);
    CHECK_STATUS(nnm_module_call(m2, &x20, 1, &y, 1), NNM_OK);
    CU_ASSERT_TRUE(y != NULL && tu_shape_is(y, 2, (int64_t[]){0, 2}));
    nnm_tensor_release(y);
    nnm_module_release(m2);
    nnm_tensor_release(x20);
    nnm_tensor_release(x0);
    nnm_tensor_release(o00);
    nnm_tensor_release(x1);
    nnm_tensor_release(x2);
    nnm_tensor_release(x3);
    nnm_tensor_release(xbad);
    nnm_tensor_release(o_nz);
    nnm_tensor_release(o_dec);
    nnm_tensor_release(o_big);
    nnm_tensor_release(o_short);
    nnm_tensor_release(o_ok);
    nnm_tensor_release(w4);
    nnm_tensor_release(w3);
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
    nnm_config_set_int(c, "kdim", 0);
    expect_create_fails("multihead_attention", c, NNM_E_INVALID, "kdim must be in [1, ");
    nnm_config_set_int(c, "kdim", 3);
    nnm_config_set_int(c, "vdim", -2);
    expect_create_fails("multihead_attention", c, NNM_E_INVALID, "vdim must be in [1, ");
    nnm_config_set_int(c, "vdim", 2);
    nnm_config_set_bool(c, "add_bias_kv", 1);
    nnm_config_set_bool(c, "static_k", 1); /* not supported: refused, not ignored */
    expect_create_fails("multihead_attention", c, NNM_E_INVALID, "config.static_k: unknown key");
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
    CHECK_ERROR(nnm_module_call(m, in, 3, &y, 1), NNM_E_SHAPE,
                "key must be [N, T, features] with 6 features (kdim); got [2, 3, 5]");
    in[1] = x;
    nnm_tensor *kpm = tu_tf32(g_ctx, 2, (int64_t[]){2, 4}, NULL);
    in[3] = kpm;
    CHECK_ERROR(nnm_module_call(m, in, 4, &y, 1), NNM_E_SHAPE,
                "key_padding_mask must be [N, S] = [2, 3]; got [2, 4]");
    nnm_tensor *idx = tu_ti64(g_ctx, 2, (int64_t[]){2, 3}, (int64_t[]){0, 0, 1, 0, 0, 0});
    in[3] = idx;
    CHECK_ERROR(nnm_module_call(m, in, 4, &y, 1), NNM_E_DTYPE, "key_padding_mask must be bool");
    CHECK_ERROR(nnm_module_call(m, in, 4, &y, 1), NNM_E_DTYPE, "(added to the scores); got i64");
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

/* A multihead_attention module with its out_proj child, from a config set by
 * the caller (embed_dim and num_heads are set here). */
static nnm_module *mha_with(nnm_config *c, int64_t E, int64_t H) {
    nnm_config_set_int(c, "embed_dim", E);
    nnm_config_set_int(c, "num_heads", H);
    nnm_module *m = tu_module(g_ctx, "multihead_attention", c);
    nnm_config_free(c);
    if (m == NULL)
        return NULL;
    nnm_module *op = tu_linear(g_ctx, "linear", E, E, 1);
    CHECK_STATUS(nnm_module_add_child(m, "out_proj", op), NNM_OK);
    nnm_module_release(op);
    CHECK_STATUS(nnm_module_finalize(m), NNM_OK);
    return m;
}

static nnm_tensor *tbool(int32_t ndim, const int64_t *shape, const uint8_t *v, int code) {
    nnm_tensor *t = NULL;
    const nnm_dtype dt = {(uint8_t)code, 8, 1};
    CHECK_STATUS(nnm_tensor_new(g_ctx, (nnm_device){NNM_DEVICE_CPU, 0}, dt, ndim, shape, &t),
                 NNM_OK);
    if (t != NULL && nnm_tensor_numel(t) > 0)
        memcpy(tu_cpu_data(t), v, (size_t)nnm_tensor_numel(t));
    return t;
}

static nnm_tensor *tfill(int32_t ndim, const int64_t *shape, uint32_t seed) {
    float buf[256];
    int64_t n = 1;
    for (int32_t i = 0; i < ndim; i++)
        n *= shape[i];
    CU_ASSERT_TRUE_FATAL(n <= 256);
    tu_fill_uniform(buf, (size_t)n, seed, -1.0, 1.0);
    return tu_tf32(g_ctx, ndim, shape, buf);
}

/* attn_mask, the absent (0-element) key_padding_mask, kdim/vdim, add_bias_kv,
 * unbatched inputs: their state names and shapes, and every bad input a
 * clear error naming the sizes, never a crash. */
static void test_attention_inputs(void) {
    LEAK_CHECK_BEGIN();
    nnm_config *c = cfg_new();
    nnm_config_set_int(c, "kdim", 3);
    nnm_config_set_int(c, "vdim", 5);
    nnm_config_set_bool(c, "add_bias_kv", 1);
    nnm_config_set_bool(c, "add_zero_attn", 1);
    nnm_module *m = mha_with(c, 4, 2); /* E 4, H 2, seq-first */
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    tu_named p = tu_params_of(m);
    CU_ASSERT_PTR_NULL(tu_named_get(&p, "in_proj_weight"));
    const char *names[5] = {"q_proj_weight", "k_proj_weight", "v_proj_weight", "bias_k",
                            "bias_v"};
    const int64_t shapes[5][3] = {{4, 4}, {4, 3}, {4, 5}, {1, 1, 4}, {1, 1, 4}};
    for (int i = 0; i < 5; i++) {
        nnm_tensor *t = tu_named_get(&p, names[i]);
        CU_ASSERT_TRUE(t != NULL && tu_shape_is(t, i < 3 ? 2 : 3, shapes[i]));
    }
    CU_ASSERT_TRUE(tu_shape_is(tu_named_get(&p, "in_proj_bias"), 1, (int64_t[]){12}));

    /* L 2, N 2, S 3; S' = 3 + bias_kv + zero_attn = 5 */
    nnm_tensor *q = tfill(3, (int64_t[]){2, 2, 4}, 1), *k = tfill(3, (int64_t[]){3, 2, 3}, 2),
               *v = tfill(3, (int64_t[]){3, 2, 5}, 3);
    nnm_tensor *none = tu_tf32(g_ctx, 1, (int64_t[]){0}, NULL);
    nnm_tensor *am = tfill(2, (int64_t[]){2, 3}, 4), *am3 = tfill(3, (int64_t[]){4, 2, 3}, 5);
    nnm_tensor *in[6] = {q, k, v, none, am, NULL}, *out[2] = {NULL, NULL}, *y = NULL;
    CHECK_STATUS(nnm_module_call(m, in, 5, out, 2), NNM_OK);
    CU_ASSERT_TRUE(tu_shape_is(out[0], 3, (int64_t[]){2, 2, 4}));
    CU_ASSERT_TRUE(tu_shape_is(out[1], 3, (int64_t[]){2, 2, 5}));
    nnm_tensor_release(out[0]);
    nnm_tensor_release(out[1]);
    in[4] = am3;
    CHECK_STATUS(nnm_module_call(m, in, 5, &y, 1), NNM_OK);
    nnm_tensor_release(y);
    y = NULL;

    /* two absent masks are no masks: the same output as three inputs */
    nnm_tensor *y3 = NULL, *y5 = NULL;
    in[4] = none;
    CHECK_STATUS(nnm_module_call(m, in, 3, &y3, 1), NNM_OK);
    CHECK_STATUS(nnm_module_call(m, in, 5, &y5, 1), NNM_OK);
    int64_t n3 = 0, n5 = 0;
    float *a3 = tu_read_f32(y3, &n3), *a5 = tu_read_f32(y5, &n5);
    CU_ASSERT_TRUE(a3 != NULL && a5 != NULL && n3 == n5 &&
                   memcmp(a3, a5, sizeof(float) * (size_t)n3) == 0);
    free(a3);
    free(a5);
    nnm_tensor_release(y3);
    nnm_tensor_release(y5);

    /* wrong features: kdim, vdim */
    in[1] = v;
    CHECK_ERROR(nnm_module_call(m, in, 3, &y, 1), NNM_E_SHAPE,
                "key must be [T, N, features] with 3 features (kdim); got [3, 2, 5]");
    in[1] = k;
    in[2] = k;
    CHECK_ERROR(nnm_module_call(m, in, 3, &y, 1), NNM_E_SHAPE,
                "value must be [T, N, features] with 5 features (vdim); got [3, 2, 3]");
    in[2] = v;
    nnm_tensor *k4 = tfill(3, (int64_t[]){4, 2, 3}, 6);
    in[1] = k4;
    CHECK_ERROR(nnm_module_call(m, in, 3, &y, 1), NNM_E_SHAPE,
                "key and value lengths 4, 3");
    in[1] = k;

    /* attn_mask: shape, dims, dtype */
    nnm_tensor *am_bad = tfill(2, (int64_t[]){3, 3}, 7);
    in[4] = am_bad;
    CHECK_ERROR(nnm_module_call(m, in, 5, &y, 1), NNM_E_SHAPE,
                "attn_mask must be [L, S] = [2, 3] or [N * num_heads, L, S] = [4, 2, 3]; got "
                "[3, 3]");
    nnm_tensor *am_4d = tfill(4, (int64_t[]){2, 2, 2, 3}, 8);
    in[4] = am_4d;
    CHECK_ERROR(nnm_module_call(m, in, 5, &y, 1), NNM_E_SHAPE, "got [2, 2, 2, 3]");
    nnm_tensor *am_i64 = tu_ti64(g_ctx, 2, (int64_t[]){2, 3}, (int64_t[]){0, 1, 0, 0, 0, 1});
    in[4] = am_i64;
    CHECK_ERROR(nnm_module_call(m, in, 5, &y, 1), NNM_E_DTYPE,
                "attn_mask must be bool (true: may not attend), u8");

    /* key_padding_mask: shape, dtype (u8 refused, as 1.13), f32 with f32 attn_mask */
    const uint8_t bits[12] = {0, 1, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0};
    nnm_tensor *kpm_u8 = tbool(2, (int64_t[]){2, 3}, bits, NNM_DTYPE_UINT);
    in[3] = kpm_u8;
    CHECK_ERROR(nnm_module_call(m, in, 4, &y, 1), NNM_E_DTYPE,
                "key_padding_mask must be bool (true: ignore that key) or f32");
    CHECK_ERROR(nnm_module_call(m, in, 4, &y, 1), NNM_E_DTYPE, "got u8");
    nnm_tensor *kpm_t = tbool(2, (int64_t[]){3, 2}, bits, NNM_DTYPE_BOOL);
    in[3] = kpm_t;
    CHECK_ERROR(nnm_module_call(m, in, 4, &y, 1), NNM_E_SHAPE,
                "key_padding_mask must be [N, S] = [2, 3]; got [3, 2]");
    nnm_tensor *kpm_f = tfill(2, (int64_t[]){2, 3}, 9);
    in[3] = kpm_f;
    in[4] = am;
    CHECK_ERROR(nnm_module_call(m, in, 5, &y, 1), NNM_E_UNSUPPORTED,
                "a f32 key_padding_mask with a f32 attn_mask is not supported");
    nnm_tensor *am_b = tbool(2, (int64_t[]){2, 3}, bits, NNM_DTYPE_BOOL);
    in[4] = am_b; /* f32 kpm with a bool attn_mask: logical_or, fine */
    CHECK_STATUS(nnm_module_call(m, in, 5, &y, 1), NNM_OK);
    nnm_tensor_release(y);
    y = NULL;

    /* arity and dims */
    in[5] = am;
    CHECK_ERROR(nnm_module_call(m, in, 6, &y, 1), NNM_E_SHAPE,
                "takes query, key, value[, key_padding_mask[, attn_mask]]");
    nnm_tensor *q2 = tfill(2, (int64_t[]){2, 4}, 10), *k2 = tfill(2, (int64_t[]){3, 3}, 11),
               *v2 = tfill(2, (int64_t[]){3, 5}, 12);
    in[0] = q2;
    CHECK_ERROR(nnm_module_call(m, in, 3, &y, 1), NNM_E_SHAPE,
                "for a 2-D query, key must be 2-D too; got [3, 2, 3]");
    nnm_tensor *q4 = tfill(4, (int64_t[]){1, 2, 2, 4}, 13);
    in[0] = q4;
    CHECK_ERROR(nnm_module_call(m, in, 3, &y, 1), NNM_E_SHAPE,
                "query must be 3-D (batched) or 2-D (unbatched); got [1, 2, 2, 4]");

    /* unbatched: [L, E], [S, kdim], [S, vdim]; key_padding_mask [S] */
    in[0] = q2;
    in[1] = k2;
    in[2] = v2;
    in[3] = kpm_t; /* [3, 2]: a batched mask */
    CHECK_ERROR(nnm_module_call(m, in, 4, &y, 1), NNM_E_SHAPE,
                "key_padding_mask of an unbatched (2-D) query must be [S] = [3]; got [3, 2]");
    nnm_tensor *kpm1 = tbool(1, (int64_t[]){3}, bits, NNM_DTYPE_BOOL);
    in[3] = kpm1;
    in[4] = am3; /* [N * H, L, S] of a batch of 2: unbatched wants [H, L, S] */
    CHECK_ERROR(nnm_module_call(m, in, 5, &y, 1), NNM_E_SHAPE,
                "[N * num_heads, L, S] = [2, 2, 3]; got [4, 2, 3]");
    in[4] = am;
    CHECK_STATUS(nnm_module_call(m, in, 5, out, 2), NNM_OK);
    CU_ASSERT_TRUE(tu_shape_is(out[0], 2, (int64_t[]){2, 4}));
    CU_ASSERT_TRUE(tu_shape_is(out[1], 2, (int64_t[]){2, 5}));
    nnm_tensor_release(out[0]);
    nnm_tensor_release(out[1]);

    /* a key sequence of length 0: with add_bias_kv and add_zero_attn S' = 2,
     * weights whose rows sum to 1; without, PyTorch's empty softmax: the
     * output is out_proj's bias and the weights have 0 elements */
    nnm_tensor *k0 = tu_tf32(g_ctx, 2, (int64_t[]){0, 3}, NULL),
               *v0 = tu_tf32(g_ctx, 2, (int64_t[]){0, 5}, NULL);
    nnm_tensor *in0[3] = {q2, k0, v0};
    CHECK_STATUS(nnm_module_call(m, in0, 3, out, 2), NNM_OK);
    int64_t nw = 0;
    float *w = tu_read_f32(out[1], &nw);
    CU_ASSERT_TRUE(w != NULL && nw == 4 && fabsf(w[0] + w[1] - 1.0f) < 1e-5f &&
                   fabsf(w[2] + w[3] - 1.0f) < 1e-5f);
    free(w);
    nnm_tensor_release(out[0]);
    nnm_tensor_release(out[1]);
    nnm_tensor_release(k0);
    nnm_tensor_release(v0);
    nnm_module *m2 = mha_with(cfg_new(), 4, 2);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m2);
    nnm_tensor *e0 = tu_tf32(g_ctx, 2, (int64_t[]){0, 4}, NULL);
    nnm_tensor *i2[3] = {q2, e0, e0};
    CHECK_STATUS(nnm_module_call(m2, i2, 3, out, 2), NNM_OK);
    CU_ASSERT_EQUAL(nnm_tensor_numel(out[1]), 0);
    tu_named p2 = tu_params_of(m2);
    int64_t ny = 0, nb = 0;
    float *yv0 = tu_read_f32(out[0], &ny);
    float *bv = tu_read_f32(tu_named_get(&p2, "out_proj.bias"), &nb);
    CU_ASSERT_TRUE_FATAL(yv0 != NULL && bv != NULL && ny == 8 && nb == 4);
    for (int i = 0; i < 8; i++)
        CU_ASSERT_TRUE(fabsf(yv0[i] - bv[i % 4]) < 1e-6f);
    free(yv0);
    free(bv);
    nnm_tensor_release(out[0]);
    nnm_tensor_release(out[1]);
    nnm_tensor_release(e0);
    nnm_module_release(m2);

    nnm_tensor *all[] = {q,     k,     v,      none,   am,   am3,   k4,   am_bad, am_4d, am_i64,
                         kpm_u8, kpm_t, kpm_f, am_b, q2,   k2,    v2,   q4,     kpm1};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        nnm_tensor_release(all[i]);
    nnm_module_release(m);

    /* is_causal with an attn_mask: refused; a fully masked row: NaN, as 1.13 */
    c = cfg_new();
    nnm_config_set_bool(c, "is_causal", 1);
    m = mha_with(c, 4, 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    nnm_tensor *x = tfill(3, (int64_t[]){2, 1, 4}, 14);
    const uint8_t full[4] = {0, 0, 1, 1}; /* row 1 masks both keys */
    nnm_tensor *amf = tbool(2, (int64_t[]){2, 2}, full, NNM_DTYPE_BOOL);
    nnm_tensor *none2 = tu_tf32(g_ctx, 2, (int64_t[]){1, 0}, NULL);
    nnm_tensor *cin[5] = {x, x, x, none2, amf};
    CHECK_ERROR(nnm_module_call(m, cin, 5, &y, 1), NNM_E_INVALID,
                "is_causal and an attn_mask input are both given");
    nnm_module_release(m);
    m = mha_with(cfg_new(), 4, 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CHECK_STATUS(nnm_module_call(m, cin, 5, &y, 1), NNM_OK);
    int64_t n = 0;
    float *yv = tu_read_f32(y, &n);
    CU_ASSERT_TRUE_FATAL(yv != NULL && n == 8);
    for (int i = 0; i < 8; i++) /* [L 2, N 1, E 4]: row 0 finite, row 1 NaN */
        CU_ASSERT_TRUE(i < 4 ? isfinite(yv[i]) : isnan(yv[i]));
    free(yv);
    nnm_tensor_release(y);
    nnm_tensor_release(amf);
    nnm_tensor_release(none2);
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
    CU_add_test(s, "embedding_bag", test_embedding_bag_contract);
    CU_add_test(s, "concat and mul", test_concat_mul_contract);
    CU_add_test(s, "multihead_attention", test_attention_contract);
    CU_add_test(s, "multihead_attention masks, kdim, unbatched", test_attention_inputs);
    CU_add_test(s, "dropout", test_dropout_contract);
    return tu_run();
}
