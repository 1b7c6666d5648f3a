/* tests/hostile/test_hostile_layers.c - bad tensors into the layers and ops
 * sessions 6-7 added (max_unpool, embedding_bag, embedding's max_norm,
 * ctc_loss, the losses, interpolate's antialias, index_select and friends,
 * the casts, arg_reduce, the recurrent layers), as a stranger would feed
 * them: indices out of range, negative, of the wrong dtype or shape, offsets
 * that are not monotonic, lengths past the input, NaN and infinities, empty
 * dims. Each must fail with a precise status and a message naming the
 * offending thing (or give PyTorch's answer), leave no output behind and
 * leak nothing; never crash, hang or write out of bounds (the suite runs
 * under the ASan/UBSan build). */
#include "test_util.h"

static nnm_ctx *g_ctx;
#define TU_CTX g_ctx

static int suite_init(void) {
    return tu_ctx_new(&g_ctx);
}

static int suite_clean(void) {
    return tu_ctx_free(&g_ctx);
}

#define INTS(...) (const int64_t[]){__VA_ARGS__}, sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)
#define SHAPE(...) (int32_t)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (const int64_t[]){__VA_ARGS__}
#define FLOATS(...) (const float[]){__VA_ARGS__}

static nnm_config *cfg_new(void) {
    nnm_config *c = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_config_new(&c), NNM_OK);
    return c;
}

/* The module, or NULL (printed); frees cfg. */
static nnm_module *made(const char *layer, nnm_config *cfg) {
    nnm_module *m = tu_module(g_ctx, layer, cfg);
    nnm_config_free(cfg);
    CU_ASSERT_PTR_NOT_NULL(m);
    return m;
}

/* nnm_module_create fails with `want` and a message containing needle; frees cfg. */
static void create_fails(const char *layer, nnm_config *cfg, nnm_status want, const char *needle) {
    nnm_module *m = NULL;
    CHECK_ERROR(nnm_module_create(g_ctx, layer, cfg, &m), want, needle);
    CU_ASSERT_PTR_NULL(m);
    nnm_module_release(m);
    nnm_config_free(cfg);
}

/* The call fails with `want` and needle, and leaves every output NULL. */
static void call_fails(nnm_module *m, nnm_tensor *const *in, uint32_t n_in, uint32_t n_out, nnm_status want,
                       const char *needle) {
    nnm_tensor *out[NNM_MAX_IO] = {0};
    if (m == NULL) return;
    CHECK_ERROR(nnm_module_call(m, in, n_in, out, n_out), want, needle);
    for (uint32_t i = 0; i < n_out; i++) {
        CU_ASSERT_PTR_NULL(out[i]);
        nnm_tensor_release(out[i]);
    }
}

/* The call succeeds; out[0..n_out) are new references. */
static int call_ok(nnm_module *m, nnm_tensor *const *in, uint32_t n_in, nnm_tensor **out, uint32_t n_out) {
    if (m == NULL) return 0;
    nnm_status st = nnm_module_call(m, in, n_in, out, n_out);
    if (st != NNM_OK) fprintf(stderr, "\n  call: %s: %s\n", nnm_status_name(st), nnm_ctx_errmsg(g_ctx));
    CU_ASSERT_EQUAL(st, NNM_OK);
    return st == NNM_OK;
}

static nnm_tensor *f32(int32_t ndim, const int64_t *shape, const float *v) {
    return tu_tf32(g_ctx, ndim, shape, v);
}

static nnm_tensor *i64(int32_t ndim, const int64_t *shape, const int64_t *v) {
    return tu_ti64(g_ctx, ndim, shape, v);
}

/* 0, 1, 2, ... scaled by k in a new f32 tensor. */
static nnm_tensor *ramp(int32_t ndim, const int64_t *shape, float k) {
    int64_t n = 1;
    for (int32_t i = 0; i < ndim; i++) n *= shape[i];
    float *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    for (int64_t i = 0; i < n; i++) v[i] = (float)i * k;
    nnm_tensor *t = f32(ndim, shape, v);
    free(v);
    return t;
}

static void release_all(nnm_tensor **t, size_t n) {
    for (size_t i = 0; i < n; i++) nnm_tensor_release(t[i]);
}

/* ---- max_unpool --------------------------------------------------------- */

static void test_max_unpool(void) {
    LEAK_CHECK_BEGIN();
    nnm_config *c = cfg_new();
    nnm_config_set_int(c, "kernel_size", 2);
    nnm_module *m = made("max_unpool2d", c);
    nnm_tensor *x = ramp(SHAPE(1, 1, 2, 2), 1.0f);
    nnm_tensor *big = i64(SHAPE(1, 1, 2, 2), (const int64_t[]){0, 3, 16, 5});
    nnm_tensor *neg = i64(SHAPE(1, 1, 2, 2), (const int64_t[]){0, -1, 8, 5});
    nnm_tensor *huge = i64(SHAPE(1, 1, 2, 2), (const int64_t[]){0, INT64_MAX, 8, 5});
    nnm_tensor *fidx = ramp(SHAPE(1, 1, 2, 2), 1.0f);
    nnm_tensor *shp = i64(SHAPE(1, 1, 4), (const int64_t[]){0, 1, 2, 3});
    nnm_tensor *x5 = ramp(SHAPE(1, 1, 1, 2, 2), 1.0f);
    nnm_tensor *i5 = i64(SHAPE(1, 1, 1, 2, 2), NULL);
    call_fails(m, (nnm_tensor *[]){x, big}, 2, 1, NNM_E_INVALID,
               "max_unpool2d: Found an invalid max index: 16 (output volumes are of size 16)");
    call_fails(m, (nnm_tensor *[]){x, neg}, 2, 1, NNM_E_INVALID, "max_unpool2d: Found an invalid max index: -1");
    call_fails(m, (nnm_tensor *[]){x, huge}, 2, 1, NNM_E_INVALID, "Found an invalid max index: 9223372036854775807");
    call_fails(m, (nnm_tensor *[]){x, fidx}, 2, 1, NNM_E_DTYPE, "max_unpool2d: indices must be i64");
    call_fails(m, (nnm_tensor *[]){x, shp}, 2, 1, NNM_E_SHAPE, "shape of indices to be same as that of the input");
    call_fails(m, (nnm_tensor *[]){x5, i5}, 2, 1, NNM_E_SHAPE, "max_unpool2d: expected 3D or 4D input, got 5D");
    call_fails(m, (nnm_tensor *[]){x}, 1, 1, NNM_E_SHAPE, "(max_unpool2d): expected 2 inputs, got 1");
    /* a good call still works after all that */
    nnm_tensor *ok = i64(SHAPE(1, 1, 2, 2), (const int64_t[]){0, 3, 9, 15}), *y = NULL;
    if (call_ok(m, (nnm_tensor *[]){x, ok}, 2, &y, 1)) {
        float v[16];
        CU_ASSERT_EQUAL(nnm_tensor_to_f32(y, v, 16), NNM_OK);
        CU_ASSERT_EQUAL(v[0], 0.0f);
        CU_ASSERT_EQUAL(v[3], 1.0f);
        CU_ASSERT_EQUAL(v[9], 2.0f);
        CU_ASSERT_EQUAL(v[15], 3.0f);
        CU_ASSERT_EQUAL(v[1], 0.0f);
    }
    nnm_tensor_release(y);
    /* a kernel larger than the layer allows names the bound it broke */
    c = cfg_new();
    nnm_config_set_int(c, "kernel_size", (int64_t)1 << 40);
    create_fails("max_unpool2d", c, NNM_E_INVALID, "kernel_size must be >= 1 and <= 2^30, got 1099511627776");
    nnm_module_release(m);
    nnm_tensor *all[] = {x, big, neg, huge, fidx, shp, x5, i5, ok};
    release_all(all, sizeof all / sizeof all[0]);
    LEAK_CHECK_END();
}

/* ---- embedding and embedding_bag ---------------------------------------- */

static nnm_module *bag(const char *mode, int64_t padding_idx, double max_norm, int last) {
    nnm_config *c = cfg_new();
    nnm_config_set_int(c, "num_embeddings", 5);
    nnm_config_set_int(c, "embedding_dim", 3);
    if (mode) nnm_config_set_str(c, "mode", mode);
    if (padding_idx != INT64_MIN) nnm_config_set_int(c, "padding_idx", padding_idx);
    if (max_norm > 0) nnm_config_set_float(c, "max_norm", max_norm);
    if (last) nnm_config_set_bool(c, "include_last_offset", 1);
    return made(mode ? "embedding_bag" : "embedding", c);
}

static void test_embedding_bag(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *sum = bag("sum", INT64_MIN, 0, 0), *mean = bag("mean", INT64_MIN, 0, 0);
    nnm_module *pad = bag("sum", 1, 0, 0), *mx = bag("max", INT64_MIN, 1.0, 0), *last = bag("sum", INT64_MIN, 0, 1);
    nnm_tensor *x = i64(SHAPE(4), (const int64_t[]){0, 1, 2, 3});
    nnm_tensor *oob = i64(SHAPE(4), (const int64_t[]){0, 1, 5, 3});
    nnm_tensor *negi = i64(SHAPE(4), (const int64_t[]){0, -1, 2, 3});
    nnm_tensor *dec = i64(SHAPE(3), (const int64_t[]){0, 3, 1});
    nnm_tensor *past = i64(SHAPE(2), (const int64_t[]){0, 9});
    nnm_tensor *negoff = i64(SHAPE(2), (const int64_t[]){0, -2});
    nnm_tensor *first = i64(SHAPE(2), (const int64_t[]){1, 2});
    nnm_tensor *off2d = i64(SHAPE(1, 2), (const int64_t[]){0, 2});
    nnm_tensor *offf = ramp(SHAPE(2), 2.0f);
    nnm_tensor *off = i64(SHAPE(2), (const int64_t[]){0, 2});
    nnm_tensor *off_last_short = i64(SHAPE(3), (const int64_t[]){0, 2, 3});
    nnm_tensor *psw_bad = ramp(SHAPE(3), 1.0f), *psw = ramp(SHAPE(4), 1.0f);
    nnm_tensor *x3 = i64(SHAPE(1, 2, 2), NULL), *xf = ramp(SHAPE(4), 1.0f);
    call_fails(sum, (nnm_tensor *[]){x, dec}, 2, 1, NNM_E_INVALID, "embedding_bag: offsets must be non-decreasing");
    call_fails(sum, (nnm_tensor *[]){x, past}, 2, 1, NNM_E_INVALID,
               "embedding_bag: offsets[1] can not be greater than input's length");
    call_fails(sum, (nnm_tensor *[]){x, negoff}, 2, 1, NNM_E_INVALID, "embedding_bag: offsets");
    call_fails(sum, (nnm_tensor *[]){x, first}, 2, 1, NNM_E_INVALID, "embedding_bag: offsets[0] has to be 0");
    call_fails(sum, (nnm_tensor *[]){x, off2d}, 2, 1, NNM_E_SHAPE, "embedding_bag: offsets has to be a 1D Tensor");
    call_fails(sum, (nnm_tensor *[]){x, offf}, 2, 1, NNM_E_INVALID, "embedding_bag: input 1 must be offsets (i64), got f32 [2]");
    call_fails(sum, (nnm_tensor *[]){x}, 1, 1, NNM_E_INVALID, "embedding_bag: offsets has to be a 1D Tensor but got None");
    call_fails(sum, (nnm_tensor *[]){oob, off}, 2, 1, NNM_E_INVALID, "5");
    call_fails(sum, (nnm_tensor *[]){negi, off}, 2, 1, NNM_E_INVALID, "-1");
    call_fails(pad, (nnm_tensor *[]){oob, off}, 2, 1, NNM_E_INVALID,
               "embedding_bag: index 5 (element 2) is out of range for 5 embeddings");
    call_fails(mx, (nnm_tensor *[]){negi, off}, 2, 1, NNM_E_INVALID,
               "embedding_bag: index -1 (element 1) is out of range for 5 embeddings");
    call_fails(sum, (nnm_tensor *[]){x, off, psw_bad}, 3, 1, NNM_E_SHAPE,
               "embedding_bag: If per_sample_weights ([3]) is not None, then it must have the same shape as the input ([4])");
    call_fails(mean, (nnm_tensor *[]){x, off, psw}, 3, 1, NNM_E_INVALID,
               "per_sample_weights is only supported for mode='sum' (got mode='mean')");
    call_fails(last, (nnm_tensor *[]){x, off_last_short}, 2, 1, NNM_E_INVALID,
               "embedding_bag: with include_last_offset the last offset must be the");
    call_fails(sum, (nnm_tensor *[]){x3, off}, 2, 1, NNM_E_SHAPE, "embedding_bag: input has to be 1D or 2D Tensor, but got Tensor of dimension 3");
    call_fails(sum, (nnm_tensor *[]){xf, off}, 2, 1, NNM_E_DTYPE, "embedding_bag takes i64 indices, got f32");
    /* padding_idx outside the table is refused at create, naming it */
    nnm_config *c = cfg_new();
    nnm_config_set_int(c, "num_embeddings", 5);
    nnm_config_set_int(c, "embedding_dim", 3);
    nnm_config_set_int(c, "padding_idx", 5);
    create_fails("embedding_bag", c, NNM_E_INVALID, "padding_idx");
    c = cfg_new();
    nnm_config_set_int(c, "num_embeddings", 5);
    nnm_config_set_int(c, "embedding_dim", 3);
    nnm_config_set_int(c, "padding_idx", -6);
    create_fails("embedding", c, NNM_E_INVALID, "padding_idx");
    c = cfg_new();
    nnm_config_set_int(c, "num_embeddings", 5);
    nnm_config_set_int(c, "embedding_dim", 3);
    nnm_config_set_float(c, "max_norm", NAN);
    create_fails("embedding", c, NNM_E_INVALID, "max_norm");
    c = cfg_new();
    nnm_config_set_int(c, "num_embeddings", 5);
    nnm_config_set_int(c, "embedding_dim", 3);
    nnm_config_set_float(c, "norm_type", NAN);
    create_fails("embedding", c, NNM_E_INVALID, "norm_type");
    /* the weights are untouched by the refused calls (max_norm renormalises
     * in place: never before the indices were checked) */
    nnm_tensor *emb_out = NULL;
    nnm_tensor *y = NULL;
    (void)emb_out;
    nnm_module *e = bag(NULL, INT64_MIN, 0.5, 0);
    nnm_tensor *eo = i64(SHAPE(2), (const int64_t[]){1, 7});
    call_fails(e, (nnm_tensor *[]){eo}, 1, 1, NNM_E_INVALID, "index 7 (element 1) is out of range for 5 embeddings");
    if (call_ok(mx, (nnm_tensor *[]){x, off}, 2, &y, 1)) CU_ASSERT_TRUE(tu_shape_is(y, SHAPE(2, 3)));
    nnm_tensor_release(y);
    nnm_module *mods[] = {sum, mean, pad, mx, last, e};
    for (size_t i = 0; i < sizeof mods / sizeof mods[0]; i++) nnm_module_release(mods[i]);
    nnm_tensor *all[] = {x, oob, negi, dec, past, negoff, first, off2d, offf, off, off_last_short, psw_bad, psw, x3, xf, eo};
    release_all(all, sizeof all / sizeof all[0]);
    LEAK_CHECK_END();
}

/* embedding with max_norm: an out-of-range index must be refused before
 * the in-place renormalisation touches a row (a row past the table is
 * memory the layer does not own). */
static void test_embedding_max_norm(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *e = bag(NULL, INT64_MIN, 0.5, 0);
    tu_named p = tu_params_of(e);
    nnm_tensor *w = tu_named_get(&p, "weight");
    float before[15], after[15];
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(w, before, 15), NNM_OK);
    nnm_tensor *bad = i64(SHAPE(3), (const int64_t[]){0, 2, -3});
    call_fails(e, (nnm_tensor *[]){bad}, 1, 1, NNM_E_INVALID, "index -3 (element 2) is out of range for 5 embeddings");
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(w, after, 15), NNM_OK);
    CU_ASSERT_EQUAL(memcmp(before, after, sizeof before), 0); /* nothing renormalised */
    nnm_module *b = bag("sum", INT64_MIN, 0.5, 0);
    tu_named pb = tu_params_of(b);
    nnm_tensor *wb = tu_named_get(&pb, "weight");
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(wb, before, 15), NNM_OK);
    nnm_tensor *off = i64(SHAPE(1), (const int64_t[]){0});
    call_fails(b, (nnm_tensor *[]){bad, off}, 2, 1, NNM_E_INVALID, "index -3 (element 2) is out of range");
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(wb, after, 15), NNM_OK);
    CU_ASSERT_EQUAL(memcmp(before, after, sizeof before), 0);
    nnm_tensor_release(bad);
    nnm_tensor_release(off);
    nnm_module_release(e);
    nnm_module_release(b);
    LEAK_CHECK_END();
}

/* ---- ctc_loss ------------------------------------------------------------ */

static nnm_module *ctc(int64_t blank, int zero_inf, const char *reduction) {
    nnm_config *c = cfg_new();
    if (blank >= 0) nnm_config_set_int(c, "blank", blank);
    if (zero_inf) nnm_config_set_bool(c, "zero_infinity", 1);
    if (reduction) nnm_config_set_str(c, "reduction", reduction);
    return made("ctc_loss", c);
}

static void test_ctc_loss(void) {
    LEAK_CHECK_BEGIN();
    /* T = 3, N = 2, C = 4: uniform log-probs */
    float lpv[24];
    for (int i = 0; i < 24; i++) lpv[i] = logf(0.25f);
    nnm_tensor *lp = f32(SHAPE(3, 2, 4), lpv);
    nnm_tensor *tg = i64(SHAPE(2, 2), (const int64_t[]){1, 2, 3, 3});
    nnm_tensor *il = i64(SHAPE(2), (const int64_t[]){3, 3});
    nnm_tensor *tl = i64(SHAPE(2), (const int64_t[]){2, 2});
    nnm_module *none = ctc(-1, 0, "none"), *zi = ctc(-1, 1, "none"), *mean = ctc(-1, 0, NULL);
    nnm_module *blank9 = ctc(9, 0, NULL);
    /* targets longer than the input can align: PyTorch's inf, or 0 with zero_infinity */
    nnm_tensor *tl_long = i64(SHAPE(2), (const int64_t[]){2, 2}), *il_short = i64(SHAPE(2), (const int64_t[]){1, 3});
    nnm_tensor *y = NULL;
    if (call_ok(none, (nnm_tensor *[]){lp, tg, il_short, tl_long}, 4, &y, 1)) {
        float v[2];
        CU_ASSERT_EQUAL(nnm_tensor_to_f32(y, v, 2), NNM_OK);
        CU_ASSERT_TRUE(isinf(v[0]) && v[0] > 0);
        CU_ASSERT_TRUE(isfinite(v[1]));
    }
    nnm_tensor_release(y);
    y = NULL;
    if (call_ok(zi, (nnm_tensor *[]){lp, tg, il_short, tl_long}, 4, &y, 1)) {
        float v[2];
        CU_ASSERT_EQUAL(nnm_tensor_to_f32(y, v, 2), NNM_OK);
        CU_ASSERT_EQUAL(v[0], 0.0f);
    }
    nnm_tensor_release(y);
    /* negative lengths, lengths past T or the targets' width */
    nnm_tensor *il_neg = i64(SHAPE(2), (const int64_t[]){-1, 3}), *il_big = i64(SHAPE(2), (const int64_t[]){3, 4});
    nnm_tensor *tl_neg = i64(SHAPE(2), (const int64_t[]){2, -2}), *tl_wide = i64(SHAPE(2), (const int64_t[]){3, 2});
    call_fails(none, (nnm_tensor *[]){lp, tg, il_neg, tl}, 4, 1, NNM_E_INVALID, "input_lengths[0] = -1 is not in [0, 3]");
    call_fails(none, (nnm_tensor *[]){lp, tg, il_big, tl}, 4, 1, NNM_E_INVALID, "input_lengths[1] = 4 is not in [0, 3]");
    call_fails(none, (nnm_tensor *[]){lp, tg, il, tl_neg}, 4, 1, NNM_E_INVALID, "target_lengths[1] = -2 is not in [0, 2]");
    call_fails(none, (nnm_tensor *[]){lp, tg, il, tl_wide}, 4, 1, NNM_E_INVALID, "target_lengths[0] = 3 is not in [0, 2]");
    /* labels outside the classes, blank outside the classes */
    nnm_tensor *tg_bad = i64(SHAPE(2, 2), (const int64_t[]){1, 4, 3, 3});
    nnm_tensor *tg_neg = i64(SHAPE(2, 2), (const int64_t[]){1, 2, -7, 3});
    call_fails(none, (nnm_tensor *[]){lp, tg_bad, il, tl}, 4, 1, NNM_E_INVALID, "target 1 of sample 0 is 4, not in [0, 4)");
    call_fails(none, (nnm_tensor *[]){lp, tg_neg, il, tl}, 4, 1, NNM_E_INVALID, "target 0 of sample 1 is -7, not in [0, 4)");
    call_fails(blank9, (nnm_tensor *[]){lp, tg, il, tl}, 4, 1, NNM_E_INVALID, "ctc_loss: blank 9 is not a class of log_probs [3, 2, 4]");
    nnm_config *c = cfg_new();
    nnm_config_set_int(c, "blank", -1);
    create_fails("ctc_loss", c, NNM_E_INVALID, "blank must be >= 0, got -1");
    /* the lengths' shapes, both named as they are */
    nnm_tensor *il3 = i64(SHAPE(3), (const int64_t[]){3, 3, 3});
    call_fails(none, (nnm_tensor *[]){lp, tg, il, il3}, 4, 1, NNM_E_SHAPE,
               "ctc_loss: input_lengths and target_lengths must be [N] for log_probs [3, 2, 4], got [2] and [3]");
    call_fails(none, (nnm_tensor *[]){lp, tg, il3, tl}, 4, 1, NNM_E_SHAPE, "got [3] and [2]");
    /* wrong dtypes */
    nnm_tensor *ilf = ramp(SHAPE(2), 1.0f);
    call_fails(none, (nnm_tensor *[]){lp, tg, ilf, tl}, 4, 1, NNM_E_DTYPE, "input_lengths and target_lengths must be i64");
    call_fails(none, (nnm_tensor *[]){tg, tg, il, tl}, 4, 1, NNM_E_DTYPE, "ctc_loss: log_probs must be f32");
    /* concatenated targets that do not hold the sum of the lengths */
    nnm_tensor *cat = i64(SHAPE(3), (const int64_t[]){1, 2, 3});
    call_fails(none, (nnm_tensor *[]){lp, cat, il, tl}, 4, 1, NNM_E_SHAPE, "must hold the sum of target_lengths, 4");
    /* empty targets: every sample's loss is the all-blank path */
    nnm_tensor *empty = i64(SHAPE(0), NULL), *zeros = i64(SHAPE(2), (const int64_t[]){0, 0});
    y = NULL;
    if (call_ok(none, (nnm_tensor *[]){lp, empty, il, zeros}, 4, &y, 1)) {
        float v[2];
        CU_ASSERT_EQUAL(nnm_tensor_to_f32(y, v, 2), NNM_OK);
        CU_ASSERT_TRUE(tu_near(v[0], -3.0 * log(0.25), 1e-5, 1e-5));
    }
    nnm_tensor_release(y);
    y = NULL;
    if (call_ok(mean, (nnm_tensor *[]){lp, empty, il, zeros}, 4, &y, 1)) {
        float v[1];
        CU_ASSERT_EQUAL(nnm_tensor_to_f32(y, v, 1), NNM_OK);
        CU_ASSERT_TRUE(tu_near(v[0], -3.0 * log(0.25), 1e-5, 1e-5));
    }
    nnm_tensor_release(y);
    nnm_module *mods[] = {none, zi, mean, blank9};
    for (size_t i = 0; i < sizeof mods / sizeof mods[0]; i++) nnm_module_release(mods[i]);
    nnm_tensor *all[] = {lp, tg, il, tl, tl_long, il_short, il_neg, il_big, tl_neg, tl_wide, tg_bad, tg_neg, il3, ilf, cat, empty, zeros};
    release_all(all, sizeof all / sizeof all[0]);
    LEAK_CHECK_END();
}

/* ---- the other losses: mismatched shapes and targets ------------------------ */

static void test_losses(void) {
    LEAK_CHECK_BEGIN();
    nnm_tensor *a = ramp(SHAPE(2, 3), 0.1f), *b = ramp(SHAPE(3, 2), 0.1f), *c4 = ramp(SHAPE(4), 0.1f);
    nnm_tensor *cls_bad = i64(SHAPE(2), (const int64_t[]){0, 3}), *cls_neg = i64(SHAPE(2), (const int64_t[]){-5, 0});
    nnm_tensor *cls_len = i64(SHAPE(3), (const int64_t[]){0, 1, 2});
    const char *pointwise[] = {"mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss", "bce_with_logits"};
    for (size_t i = 0; i < sizeof pointwise / sizeof pointwise[0]; i++) {
        nnm_module *m = made(pointwise[i], cfg_new());
        call_fails(m, (nnm_tensor *[]){a, b}, 2, 1, NNM_E_SHAPE, pointwise[i]);
        CU_ASSERT_PTR_NOT_NULL(strstr(nnm_ctx_errmsg(g_ctx), "[3, 2]"));
        call_fails(m, (nnm_tensor *[]){a, c4}, 2, 1, NNM_E_SHAPE, "[4]");
        nnm_module_release(m);
    }
    nnm_module *ce = made("cross_entropy", cfg_new()), *nll = made("nll_loss", cfg_new());
    call_fails(ce, (nnm_tensor *[]){a, cls_bad}, 2, 1, NNM_E_INVALID, "target");
    CU_ASSERT_PTR_NOT_NULL(strstr(nnm_ctx_errmsg(g_ctx), "3"));
    call_fails(nll, (nnm_tensor *[]){a, cls_neg}, 2, 1, NNM_E_INVALID, "-5");
    call_fails(ce, (nnm_tensor *[]){a, cls_len}, 2, 1, NNM_E_SHAPE, "cross_entropy");
    nnm_module_release(ce);
    nnm_module_release(nll);
    nnm_tensor *all[] = {a, b, c4, cls_bad, cls_neg, cls_len};
    release_all(all, sizeof all / sizeof all[0]);
    LEAK_CHECK_END();
}

/* ---- upsample / interpolate with antialias --------------------------------- */

static void test_interpolate(void) {
    LEAK_CHECK_BEGIN();
    nnm_tensor *x = ramp(SHAPE(1, 2, 7, 5), 0.25f);
    const char *modes[] = {"bilinear", "bicubic"};
    const int64_t sizes[][2] = {{1, 1}, {3, 2}, {1, 5}, {7, 1}, {13, 11}, {2, 9}};
    for (size_t k = 0; k < 2; k++)
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            nnm_config *c = cfg_new();
            nnm_config_set_ints(c, "size", sizes[i], 2);
            nnm_config_set_str(c, "mode", modes[k]);
            nnm_config_set_bool(c, "antialias", 1);
            nnm_module *m = made("upsample", c);
            nnm_tensor *y = NULL;
            if (call_ok(m, &x, 1, &y, 1)) {
                CU_ASSERT_TRUE(tu_shape_is(y, SHAPE(1, 2, sizes[i][0], sizes[i][1])));
                int64_t n = 0;
                float *v = tu_read_f32(y, &n);
                for (int64_t j = 0; v && j < n; j++) CU_ASSERT_TRUE(isfinite(v[j]));
                /* a constant-preserving filter: every value within the input's range */
                for (int64_t j = 0; v && j < n && !strcmp(modes[k], "bilinear"); j++)
                    CU_ASSERT_TRUE(v[j] >= -1e-4f && v[j] <= 69 * 0.25f + 1e-4f);
                free(v);
            }
            nnm_tensor_release(y);
            nnm_module_release(m);
        }
    /* sizes of zero and scale factors that make one */
    nnm_config *c = cfg_new();
    nnm_config_set_ints(c, "size", INTS(0, 3));
    nnm_config_set_str(c, "mode", "bilinear");
    nnm_config_set_bool(c, "antialias", 1);
    create_fails("upsample", c, NNM_E_INVALID, "upsample: size entries must be >= 1, got 0");
    nnm_module *m = NULL;
    c = cfg_new();
    nnm_config_set_float(c, "scale_factor", 0.01);
    nnm_config_set_str(c, "mode", "bicubic");
    nnm_config_set_bool(c, "antialias", 1);
    m = made("upsample", c);
    call_fails(m, &x, 1, 1, NNM_E_SHAPE, "upsample");
    nnm_module_release(m);
    c = cfg_new();
    nnm_config_set_float(c, "scale_factor", NAN);
    nnm_config_set_str(c, "mode", "bilinear");
    create_fails("upsample", c, NNM_E_INVALID, "scale_factor");
    c = cfg_new();
    nnm_config_set_float(c, "scale_factor", 1e30);
    nnm_config_set_str(c, "mode", "nearest");
    m = tu_module(g_ctx, "upsample", c);
    nnm_config_free(c);
    /* 7 * 1e30 does not fit an int64: refused by size, never converted */
    call_fails(m, &x, 1, 1, NNM_E_LIMIT, "upsample: output size 7000000000000000");
    CU_ASSERT_PTR_NOT_NULL(strstr(nnm_ctx_errmsg(g_ctx), "of spatial dim 0 is too large (input 7, scale_factor 1e+30"));
    nnm_module_release(m);
    /* a size whose index table would overflow size_t in bytes */
    const char *big_modes[] = {"nearest", "bilinear", "bicubic"};
    for (size_t k = 0; k < 3; k++) {
        c = cfg_new();
        nnm_config_set_ints(c, "size", INTS((int64_t)1 << 62, 1));
        nnm_config_set_str(c, "mode", big_modes[k]);
        m = made("upsample", c);
        call_fails(m, &x, 1, 1, NNM_E_LIMIT, "upsample: output size 4611686018427387904 of spatial dim 0 is too large");
        nnm_module_release(m);
        c = cfg_new();
        nnm_config_set_ints(c, "size", INTS((int64_t)1 << 39, 1));
        nnm_config_set_str(c, "mode", big_modes[k]);
        if (k) nnm_config_set_bool(c, "antialias", 1);
        m = made("upsample", c);
        nnm_tensor *y = NULL;
        nnm_status st = m ? nnm_module_call(m, &x, 1, &y, 1) : NNM_OK;
        CU_ASSERT_TRUE(st == NNM_E_LIMIT || st == NNM_E_NOMEM);
        CU_ASSERT_PTR_NULL(y);
        nnm_tensor_release(y);
        nnm_module_release(m);
    }
    nnm_tensor_release(x);
    LEAK_CHECK_END();
}

/* ---- index_select, flip, getitem: indices out of range ---------------------- */

static void test_index_ops(void) {
    LEAK_CHECK_BEGIN();
    nnm_tensor *x = ramp(SHAPE(3, 4), 1.0f);
    nnm_config *c = cfg_new();
    nnm_config_set_int(c, "dim", 1);
    nnm_module *is = made("index_select", c);
    nnm_tensor *big = i64(SHAPE(2), (const int64_t[]){0, 4}), *neg = i64(SHAPE(2), (const int64_t[]){-1, 0});
    nnm_tensor *fl = ramp(SHAPE(2), 1.0f), *two = i64(SHAPE(1, 2), (const int64_t[]){0, 1});
    nnm_tensor *maxi = i64(SHAPE(1), (const int64_t[]){INT64_MIN});
    call_fails(is, (nnm_tensor *[]){x, big}, 2, 1, NNM_E_INVALID, "4");
    CU_ASSERT_PTR_NOT_NULL(strstr(nnm_ctx_errmsg(g_ctx), "index"));
    call_fails(is, (nnm_tensor *[]){x, neg}, 2, 1, NNM_E_INVALID, "-1");
    call_fails(is, (nnm_tensor *[]){x, maxi}, 2, 1, NNM_E_INVALID, "-9223372036854775808");
    call_fails(is, (nnm_tensor *[]){x, fl}, 2, 1, NNM_E_DTYPE, "index");
    call_fails(is, (nnm_tensor *[]){x, two}, 2, 1, NNM_E_SHAPE, "index");
    nnm_module_release(is);
    c = cfg_new();
    nnm_config_set_int(c, "dim", 5);
    is = made("index_select", c);
    call_fails(is, (nnm_tensor *[]){x, neg}, 2, 1, NNM_E_SHAPE, "Dimension out of range");
    nnm_module_release(is);
    c = cfg_new();
    nnm_config_set_ints(c, "dims", INTS(0, 7));
    nnm_module *fp = made("flip", c);
    call_fails(fp, &x, 1, 1, NNM_E_SHAPE, "Dimension out of range");
    nnm_module_release(fp);
    c = cfg_new();
    nnm_config_set_strs(c, "index", (const char *const[]){"3"}, 1);
    nnm_module *gi = made("getitem", c);
    call_fails(gi, &x, 1, 1, NNM_E_SHAPE, "getitem: index[0]: index 3 is out of bounds for dimension 0 with size 3");
    nnm_module_release(gi);
    c = cfg_new();
    nnm_config_set_strs(c, "index", (const char *const[]){"-9223372036854775808"}, 1);
    gi = tu_module(g_ctx, "getitem", c);
    nnm_config_free(c);
    if (gi) call_fails(gi, &x, 1, 1, NNM_E_SHAPE, "index -9223372036854775808 is out of bounds");
    nnm_module_release(gi);
    nnm_tensor *all[] = {x, big, neg, fl, two, maxi};
    release_all(all, sizeof all / sizeof all[0]);
    LEAK_CHECK_END();
}

/* ---- casts of NaN and infinities ------------------------------------------- */

static void test_casts(void) {
    LEAK_CHECK_BEGIN();
    nnm_tensor *x = f32(SHAPE(7), FLOATS(NAN, INFINITY, -INFINITY, 1e30f, -1e30f, 300.7f, -1.5f));
    /* torch 1.13 on x86: NaN and out-of-range values give the type's
     * minimum, u8 wraps (through int32: 300 -> 44, -1 -> 255), bool is x != 0 */
    static const struct { const char *dtype; float want[7]; } cases[] = {
        {"long", {(float)INT64_MIN, (float)INT64_MIN, (float)INT64_MIN, (float)INT64_MIN, (float)INT64_MIN, 300.0f, -1.0f}},
        {"int", {(float)INT32_MIN, (float)INT32_MIN, (float)INT32_MIN, (float)INT32_MIN, (float)INT32_MIN, 300.0f, -1.0f}},
        {"bool", {1, 1, 1, 1, 1, 1, 1}},
    };
    nnm_module *back = made("float", cfg_new());
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        nnm_config *c = cfg_new();
        nnm_config_set_str(c, "dtype", cases[k].dtype);
        nnm_module *m = made("to", c);
        nnm_tensor *y = NULL, *z = NULL;
        if (call_ok(m, &x, 1, &y, 1) && call_ok(back, &y, 1, &z, 1)) {
            float v[7];
            CU_ASSERT_EQUAL(nnm_tensor_to_f32(z, v, 7), NNM_OK);
            for (int i = 0; i < 7; i++) {
                if (v[i] != cases[k].want[i])
                    fprintf(stderr, "\n  to %s [%d]: got %g want %g", cases[k].dtype, i, v[i], cases[k].want[i]);
                CU_ASSERT_EQUAL(v[i], cases[k].want[i]);
            }
        }
        nnm_tensor_release(y);
        nnm_tensor_release(z);
        nnm_module_release(m);
    }
    /* uint8: every value is defined (no UB under UBSan), finite ones wrap */
    nnm_config *c = cfg_new();
    nnm_config_set_str(c, "dtype", "uint8");
    nnm_module *m = made("to", c);
    nnm_tensor *y = NULL, *z = NULL;
    if (call_ok(m, &x, 1, &y, 1) && call_ok(back, &y, 1, &z, 1)) {
        float v[7];
        CU_ASSERT_EQUAL(nnm_tensor_to_f32(z, v, 7), NNM_OK);
        for (int i = 0; i < 7; i++) CU_ASSERT_TRUE(v[i] >= 0 && v[i] <= 255);
        CU_ASSERT_EQUAL(v[5], 44.0f);
        CU_ASSERT_EQUAL(v[6], 255.0f);
    }
    nnm_tensor_release(y);
    nnm_tensor_release(z);
    nnm_module_release(m);
    nnm_module_release(back);
    c = cfg_new();
    nnm_config_set_str(c, "dtype", "float16");
    create_fails("to", c, NNM_E_DTYPE, "to: dtype \"float16\": one of float32 (float), int64 (long)");
    nnm_tensor_release(x);
    LEAK_CHECK_END();
}

/* ---- argmax / max over empty dims ------------------------------------------ */

static void test_arg_reduce_empty(void) {
    LEAK_CHECK_BEGIN();
    nnm_tensor *e = ramp(SHAPE(0, 3), 1.0f), *z = ramp(SHAPE(0), 1.0f);
    nnm_config *c = cfg_new();
    nnm_config_set_int(c, "dim", 0);
    nnm_module *am0 = made("argmax", c);
    c = cfg_new();
    nnm_config_set_int(c, "dim", 1);
    nnm_module *am1 = made("argmin", c), *all = made("argmax", cfg_new());
    c = cfg_new();
    nnm_config_set_int(c, "dim", 0);
    nnm_module *mx = made("max", c);
    call_fails(am0, &e, 1, 1, NNM_E_SHAPE, "argmax: Expected reduction dim 0 to have non-zero size");
    call_fails(all, &z, 1, 1, NNM_E_SHAPE, "argmax: Expected reduction dim 0 to have non-zero size");
    call_fails(mx, &e, 1, 2, NNM_E_SHAPE, "max(): Expected reduction dim 0 to have non-zero size");
    nnm_tensor *y = NULL;
    if (call_ok(am1, &e, 1, &y, 1)) CU_ASSERT_TRUE(tu_shape_is(y, SHAPE(0)));
    nnm_tensor_release(y);
    c = cfg_new();
    nnm_config_set_int(c, "dim", -3);
    nnm_module *bad = made("argmax", c);
    call_fails(bad, &e, 1, 1, NNM_E_SHAPE, "Dimension out of range");
    nnm_module *mods[] = {am0, am1, all, mx, bad};
    for (size_t i = 0; i < sizeof mods / sizeof mods[0]; i++) nnm_module_release(mods[i]);
    nnm_tensor_release(e);
    nnm_tensor_release(z);
    LEAK_CHECK_END();
}

/* ---- recurrent layers with a wrong h0 ---------------------------------------- */

static void test_rnn_h0(void) {
    LEAK_CHECK_BEGIN();
    const char *kinds[] = {"rnn", "lstm", "gru"};
    nnm_tensor *x = ramp(SHAPE(5, 2, 4), 0.01f);
    nnm_tensor *h_feat = ramp(SHAPE(1, 2, 4), 0.01f), *h_layers = ramp(SHAPE(2, 2, 3), 0.01f);
    nnm_tensor *h_batch = ramp(SHAPE(1, 3, 3), 0.01f), *h_2d = ramp(SHAPE(2, 3), 0.01f);
    nnm_tensor *h_i64 = i64(SHAPE(1, 2, 3), NULL), *h_ok = ramp(SHAPE(1, 2, 3), 0.01f);
    nnm_tensor *x_feat = ramp(SHAPE(5, 2, 7), 0.01f), *x4 = ramp(SHAPE(5, 2, 4, 1), 0.01f);
    for (size_t k = 0; k < 3; k++) {
        nnm_config *c = cfg_new();
        nnm_config_set_int(c, "input_size", 4);
        nnm_config_set_int(c, "hidden_size", 3);
        nnm_module *m = made(kinds[k], c);
        const uint32_t nh = k == 1 ? 3 : 2; /* lstm: x, h0, c0 */
        nnm_tensor *bad[] = {h_feat, h_layers, h_batch, h_2d};
        for (size_t i = 0; i < 4; i++) {
            nnm_tensor *in[3] = {x, bad[i], h_ok};
            call_fails(m, in, nh, 1, NNM_E_SHAPE, "h");
        }
        if (k == 1) { /* a good h0 with a bad c0 */
            call_fails(m, (nnm_tensor *[]){x, h_ok, h_layers}, 3, 1, NNM_E_SHAPE, "c");
        }
        nnm_tensor *in[3] = {x, h_i64, h_ok};
        call_fails(m, in, nh, 1, NNM_E_DTYPE, "");
        call_fails(m, &x_feat, 1, 1, NNM_E_SHAPE, "7");
        call_fails(m, &x4, 1, 1, NNM_E_SHAPE, "");
        nnm_module_release(m);
    }
    /* unbatched x [L, H_in] takes a 2-d h0 [layers, H] only */
    nnm_tensor *xu = ramp(SHAPE(5, 4), 0.01f), *hu_ok = ramp(SHAPE(1, 3), 0.01f);
    for (size_t k = 0; k < 3; k++) {
        nnm_config *c = cfg_new();
        nnm_config_set_int(c, "input_size", 4);
        nnm_config_set_int(c, "hidden_size", 3);
        nnm_module *m = made(kinds[k], c);
        const uint32_t nh = k == 1 ? 3 : 2;
        call_fails(m, (nnm_tensor *[]){xu, h_ok, h_ok}, nh, 1, NNM_E_SHAPE, "h");
        if (k == 1) call_fails(m, (nnm_tensor *[]){xu, hu_ok, h_ok}, 3, 1, NNM_E_SHAPE, "c");
        nnm_module_release(m);
    }
    /* lstm with proj_size: h0 [layers, N, P], c0 [layers, N, H]; swapped is refused */
    nnm_config *c = cfg_new();
    nnm_config_set_int(c, "input_size", 4);
    nnm_config_set_int(c, "hidden_size", 3);
    nnm_config_set_int(c, "proj_size", 2);
    nnm_module *lp = made("lstm", c);
    nnm_tensor *hp = ramp(SHAPE(1, 2, 2), 0.01f), *y = NULL;
    call_fails(lp, (nnm_tensor *[]){x, h_ok, hp}, 3, 1, NNM_E_SHAPE, "");
    if (call_ok(lp, (nnm_tensor *[]){x, hp, h_ok}, 3, &y, 1)) CU_ASSERT_TRUE(tu_shape_is(y, SHAPE(5, 2, 2)));
    nnm_tensor_release(y);
    nnm_module_release(lp);
    nnm_tensor_release(xu);
    nnm_tensor_release(hu_ok);
    nnm_tensor_release(hp);
    nnm_tensor *all[] = {x, h_feat, h_layers, h_batch, h_2d, h_i64, h_ok, x_feat, x4};
    release_all(all, sizeof all / sizeof all[0]);
    LEAK_CHECK_END();
}

/* ---- dynamic dims (from_input / from_dim) naming what is not there ---------- */

static void test_dynamic_dims(void) {
    LEAK_CHECK_BEGIN();
    nnm_tensor *x = ramp(SHAPE(2, 3), 1.0f), *y = ramp(SHAPE(4), 1.0f);
    static const struct {
        const char *op;
        const char *key;
        int64_t size[3];
        int n;
        int64_t from_input[3], from_dim[3];
        uint32_t n_in;
    } cases[] = {
        {"view", "shape", {0, -1}, 2, {INT64_MAX, -1}, {0, -1}, 2},
        {"view", "shape", {0, -1}, 2, {1, -1}, {INT64_MIN, -1}, 2},
        {"reshape", "shape", {0, -1}, 2, {-2, -1}, {0, -1}, 2},
        {"expand", "size", {-1, -1, -1}, 3, {1, -1, -1}, {1, -1, -1}, 2},
        {"full", "size", {0, 3}, 2, {0, -1}, {5, -1}, 1},
        {"full", "size", {0, 3}, 2, {0, -1}, {0, -1}, 0},
        {"arange", "end", {0}, 1, {0}, {-1}, 0},
        {"arange", "end", {0}, 1, {3}, {0}, 1},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        nnm_config *c = cfg_new();
        if (cases[k].n == 1 && !strcmp(cases[k].key, "end"))
            nnm_config_set_int(c, "end", cases[k].size[0]);
        else
            nnm_config_set_ints(c, cases[k].key, cases[k].size, (size_t)cases[k].n);
        if (!strcmp(cases[k].op, "full")) nnm_config_set_float(c, "fill_value", 1.0);
        nnm_config_set_ints(c, "from_input", cases[k].from_input, (size_t)cases[k].n);
        nnm_config_set_ints(c, "from_dim", cases[k].from_dim, (size_t)cases[k].n);
        nnm_module *m = NULL;
        nnm_status st = nnm_module_create(g_ctx, cases[k].op, c, &m);
        nnm_config_free(c);
        nnm_tensor *out = NULL;
        if (st == NNM_OK) {
            nnm_tensor *in[2] = {x, y};
            st = nnm_module_call(m, in, cases[k].n_in, &out, 1);
        }
        const char *msg = nnm_ctx_errmsg(g_ctx);
        const int named = strstr(msg, cases[k].op) && (strstr(msg, "from_input") || strstr(msg, "from_dim"));
        if (st == NNM_OK || !named)
            fprintf(stderr, "\n  %s case %zu: %s: %s\n", cases[k].op, k, nnm_status_name(st), msg);
        CU_ASSERT_TRUE(st == NNM_E_SHAPE || st == NNM_E_INVALID);
        CU_ASSERT_TRUE(named);
        CU_ASSERT_PTR_NULL(out);
        nnm_tensor_release(out);
        nnm_module_release(m);
    }
    nnm_tensor_release(x);
    nnm_tensor_release(y);
    LEAK_CHECK_END();
}

/* ---- safetensors into a module with an i64 buffer -------------------------- */

#define SEED(name) NNM_HX_ST_CORPUS "/" name ".safetensors"

static void test_safetensors_i64_buffer(void) {
    LEAK_CHECK_BEGIN();
    nnm_config *c = cfg_new();
    nnm_config_set_int(c, "num_features", 2);
    nnm_module *bn = made("batch_norm1d", c);
    tu_named st = tu_params_of(bn);
    (void)st;
    nnm_load_report *rep = NULL;
    /* the count as i64, as PyTorch saves it */
    CHECK_STATUS(nnm_module_load(bn, SEED("bn_i64_count"), 1, &rep), NNM_OK);
    nnm_load_report_free(rep);
    rep = NULL;
    /* an I32 count is no dtype nnmod converts: refused by key, nothing loads */
    CHECK_ERROR(nnm_module_load(bn, SEED("bn_i32_count"), 1, &rep), NNM_E_SHAPE,
                "num_batches_tracked: file [] I32 vs module [] I64 (dtype not convertible)");
    nnm_load_report_free(rep);
    rep = NULL;
    /* overlapping and out-of-bounds offsets, a header longer than any file */
    CHECK_ERROR(nnm_module_load(bn, SEED("overlap"), 0, &rep), NNM_E_INVALID, "overlap.safetensors");
    CU_ASSERT_PTR_NULL(rep);
    CHECK_ERROR(nnm_module_load(bn, SEED("out_of_bounds"), 0, &rep), NNM_E_INVALID, "out_of_bounds.safetensors");
    CU_ASSERT_PTR_NULL(rep);
    CHECK_ERROR(nnm_module_load(bn, SEED("huge_header"), 0, &rep), NNM_E_LIMIT,
                "huge_header.safetensors: header length 9223372036854775813 exceeds the limit");
    CU_ASSERT_PTR_NULL(rep);
    /* a NaN count stored as F32 (nnmod before ABI 1.5 kept it in f32) */
    nnm_status s2 = nnm_module_load(bn, SEED("bn_f32_nan_count"), 1, &rep);
    CU_ASSERT_TRUE(s2 == NNM_OK || s2 == NNM_E_INVALID);
    nnm_load_report_free(rep);
    nnm_module_release(bn);
    LEAK_CHECK_END();
}

int main(void) {
    CU_pSuite s = tu_suite("hostile_layers", suite_init, suite_clean);
    if (s == NULL) return 1;
    CU_add_test(s, "max_unpool: bad indices", test_max_unpool);
    CU_add_test(s, "embedding_bag: bad offsets, weights, indices", test_embedding_bag);
    CU_add_test(s, "embedding max_norm: refused before renormalising", test_embedding_max_norm);
    CU_add_test(s, "ctc_loss: bad lengths, labels, blank", test_ctc_loss);
    CU_add_test(s, "losses: mismatched shapes and targets", test_losses);
    CU_add_test(s, "interpolate: antialias at odd sizes, zero sizes", test_interpolate);
    CU_add_test(s, "index_select, flip, getitem: out of range", test_index_ops);
    CU_add_test(s, "casts of NaN and infinities", test_casts);
    CU_add_test(s, "arg_reduce over empty dims", test_arg_reduce_empty);
    CU_add_test(s, "rnn, lstm, gru: wrong h0", test_rnn_h0);
    CU_add_test(s, "safetensors into a module with an i64 buffer", test_safetensors_i64_buffer);
    CU_add_test(s, "dynamic dims naming inputs and dims that are not there", test_dynamic_dims);
    return tu_run();
}
