/* tests/layers/test_modes.c - train/eval semantics of the layers that depend
 * on the mode:
 *   - in eval mode the same input gives identical outputs across calls;
 *   - dropout (and attention dropout) and batch norm differ between train
 *     and eval (batch norm updates its running statistics in train only); in
 *     train mode every element is 0 or x / (1 - p), about p of them zero;
 *   - the masks come from the context's generator: contexts seeded alike
 *     reproduce them exactly, another seed does not, and successive calls
 *     draw new ones;
 *   - stochastic_depth keeps or drops whole samples ("row") or the whole
 *     input ("batch"), scaled by 1 / (1 - p);
 *   - nnm_module_train(root, 0) reaches every nested module (sequential in
 *     sequential, graph, attention's out_proj), which the behaviour shows too.
 */
#include "test_util.h"

#include <math.h>

#ifndef NNM_SOURCE_DIR
#error "NNM_SOURCE_DIR must name the repository root"
#endif

static nnm_ctx *g_ctx;
#define TU_CTX g_ctx

static int suite_init(void) {
    return tu_ctx_new(&g_ctx);
}

static int suite_clean(void) {
    return tu_ctx_free(&g_ctx);
}

static nnm_module *dropout_in(nnm_ctx *ctx, const char *layer, double p) {
    nnm_config *c = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_config_new(&c), NNM_OK);
    nnm_config_set_float(c, "p", p);
    nnm_module *m = tu_module(ctx, layer, c);
    nnm_config_free(c);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    return m;
}

#define N 4096

static void fill(float *x, int n) {
    tu_fill_uniform(x, (size_t)n, 7, 0.5, 2.0); /* no zeros: a zero means dropped */
}

/* y = m(x) as floats (N of them); 1 on success. */
static int run(nnm_module *m, nnm_tensor *x, float *y) {
    nnm_tensor *out = NULL;
    nnm_status st = tu_call1(m, x, &out);
    CHECK_STATUS(st, NNM_OK);
    int ok = st == NNM_OK && nnm_tensor_to_f32(out, y, N) == NNM_OK;
    nnm_tensor_release(out);
    return ok;
}

static void test_dropout_modes(void) {
    LEAK_CHECK_BEGIN();
    static float xv[N], a[N], b[N];
    fill(xv, N);
    nnm_tensor *x = tu_tf32(g_ctx, 2, (int64_t[]){64, 64}, xv);
    nnm_module *m = dropout_in(g_ctx, "dropout", 0.25);

    /* eval: the input itself, every call */
    CHECK_STATUS(nnm_module_train(m, 0), NNM_OK);
    nnm_tensor *y = NULL;
    CHECK_STATUS(tu_call1(m, x, &y), NNM_OK);
    CU_ASSERT_PTR_EQUAL(y, x);
    nnm_tensor_release(y);
    CU_ASSERT_TRUE(run(m, x, a) && run(m, x, b));
    CU_ASSERT_EQUAL(memcmp(a, b, sizeof a), 0);
    CU_ASSERT_EQUAL(memcmp(a, xv, sizeof a), 0);

    /* train: 0 or x / 0.75, about a quarter zero, new masks each call */
    CHECK_STATUS(nnm_module_train(m, 1), NNM_OK);
    CU_ASSERT_TRUE(run(m, x, a) && run(m, x, b));
    int zeros = 0, bad = 0, same = 0;
    for (int i = 0; i < N; i++) {
        zeros += a[i] == 0.0f;
        bad += a[i] != 0.0f && a[i] != xv[i] * (float)(1.0 / 0.75);
        same += a[i] == b[i];
    }
    CU_ASSERT_EQUAL(bad, 0);
    /* Binomial(4096, 0.25): mean 1024, sd 27.7; 8 sd either way */
    CU_ASSERT_TRUE(zeros > 1024 - 222 && zeros < 1024 + 222);
    CU_ASSERT_TRUE(same < N - 100); /* two calls, two masks */
    nnm_module_release(m);

    /* p = 1 zeroes everything; p = 0 is the identity in train mode too */
    m = dropout_in(g_ctx, "dropout", 1.0);
    CHECK_STATUS(nnm_module_train(m, 1), NNM_OK);
    CU_ASSERT_TRUE(run(m, x, a));
    zeros = 0;
    for (int i = 0; i < N; i++)
        zeros += a[i] == 0.0f;
    CU_ASSERT_EQUAL(zeros, N);
    nnm_module_release(m);
    m = dropout_in(g_ctx, "dropout", 0.0);
    CHECK_STATUS(nnm_module_train(m, 1), NNM_OK);
    CHECK_STATUS(tu_call1(m, x, &y), NNM_OK);
    CU_ASSERT_PTR_EQUAL(y, x);
    nnm_tensor_release(y);
    nnm_module_release(m);
    nnm_tensor_release(x);
    LEAK_CHECK_END();
}

/* dropout2d zeroes whole channels: [N, C, H, W] = [4, 16, 8, 8]. */
static void test_dropout2d_channels(void) {
    LEAK_CHECK_BEGIN();
    static float xv[N], a[N];
    fill(xv, N);
    nnm_tensor *x = tu_tf32(g_ctx, 4, (int64_t[]){4, 16, 8, 8}, xv);
    nnm_module *m = dropout_in(g_ctx, "dropout2d", 0.5);
    CHECK_STATUS(nnm_module_train(m, 1), NNM_OK);
    CU_ASSERT_TRUE(run(m, x, a));
    int mixed = 0, dropped = 0, bad = 0;
    for (int c = 0; c < 64; c++) { /* (sample, channel) planes of 64 */
        int z = 0;
        for (int i = 0; i < 64; i++) {
            const float v = a[c * 64 + i];
            z += v == 0.0f;
            bad += v != 0.0f && v != xv[c * 64 + i] * 2.0f;
        }
        mixed += z != 0 && z != 64;
        dropped += z == 64;
    }
    CU_ASSERT_EQUAL(mixed, 0);
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_TRUE(dropped > 8 && dropped < 56); /* Binomial(64, 0.5) */
    nnm_tensor *x1 = tu_tf32(g_ctx, 1, (int64_t[]){4}, xv), *y = NULL;
    CHECK_ERROR(tu_call1(m, x1, &y), NNM_E_SHAPE, "at least 2 dims");
    nnm_tensor_release(x1);
    nnm_module_release(m);
    nnm_tensor_release(x);
    LEAK_CHECK_END();
}

static nnm_module *stochastic_depth_in(nnm_ctx *ctx, double p, const char *mode) {
    nnm_config *c = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_config_new(&c), NNM_OK);
    nnm_config_set_float(c, "p", p);
    nnm_config_set_str(c, "mode", mode);
    nnm_module *m = tu_module(ctx, "stochastic_depth", c);
    nnm_config_free(c);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    return m;
}

/* stochastic_depth (torchvision.ops.StochasticDepth): "row" keeps or zeroes
 * whole samples, scaled by 1 / (1 - p); "batch" the whole input; eval is the
 * identity; bad configs are refused. */
static void test_stochastic_depth(void) {
    LEAK_CHECK_BEGIN();
    static float xv[N], a[N];
    fill(xv, N);
    nnm_tensor *x = tu_tf32(g_ctx, 3, (int64_t[]){256, 4, 4}, xv), *y = NULL;
    nnm_module *m = stochastic_depth_in(g_ctx, 0.25, "row");
    CHECK_STATUS(nnm_module_train(m, 0), NNM_OK);
    CHECK_STATUS(tu_call1(m, x, &y), NNM_OK);
    CU_ASSERT_PTR_EQUAL(y, x);
    nnm_tensor_release(y);
    CHECK_STATUS(nnm_module_train(m, 1), NNM_OK);
    CU_ASSERT_TRUE(run(m, x, a));
    int mixed = 0, dropped = 0, bad = 0;
    for (int r = 0; r < 256; r++) { /* samples of 16 */
        int z = 0;
        for (int i = 0; i < 16; i++) {
            const float v = a[r * 16 + i];
            z += v == 0.0f;
            bad += v != 0.0f && v != xv[r * 16 + i] * (float)(1.0 / 0.75);
        }
        mixed += z != 0 && z != 16;
        dropped += z == 16;
    }
    CU_ASSERT_EQUAL(mixed, 0);
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_TRUE(dropped > 64 - 40 && dropped < 64 + 40); /* Binomial(256, 0.25): sd 6.9 */
    nnm_module_release(m);
    /* batch: all or nothing, over several calls both happen */
    m = stochastic_depth_in(g_ctx, 0.5, "batch");
    CHECK_STATUS(nnm_module_train(m, 1), NNM_OK);
    int all_zero = 0, kept = 0;
    for (int k = 0; k < 40; k++) {
        CU_ASSERT_TRUE(run(m, x, a));
        int z = 0;
        bad = 0;
        for (int i = 0; i < N; i++) {
            z += a[i] == 0.0f;
            bad += a[i] != 0.0f && a[i] != xv[i] * 2.0f;
        }
        CU_ASSERT_EQUAL(bad, 0);
        CU_ASSERT_TRUE(z == 0 || z == N);
        all_zero += z == N;
        kept += z == 0;
    }
    CU_ASSERT_TRUE(all_zero > 0 && kept > 0); /* each has probability 2^-40 to be missing */
    nnm_module_release(m);
    /* refused configs */
    nnm_config *c = NULL;
    nnm_module *bad_m = NULL;
    nnm_config_new(&c);
    nnm_config_set_float(c, "p", 0.5);
    nnm_config_set_str(c, "mode", "rows");
    CHECK_ERROR(nnm_module_create(g_ctx, "stochastic_depth", c, &bad_m), NNM_E_INVALID, "'batch' or 'row'");
    nnm_config_set_float(c, "p", 1.5);
    nnm_config_set_str(c, "mode", "row");
    CHECK_ERROR(nnm_module_create(g_ctx, "stochastic_depth", c, &bad_m), NNM_E_INVALID, "between 0 and 1");
    nnm_config_free(c);
    nnm_tensor_release(x);
    LEAK_CHECK_END();
}

/* dropout1d/dropout3d zero whole channels of 3-d/5-d inputs (per channel
 * of an unbatched one); alpha_dropout keeps a standard normal input's mean
 * and variance, its values being a * x + alpha' a p or alpha' a (p - 1);
 * feature_alpha_dropout does the same per whole (sample, channel). */
static void test_dropout1d3d_alpha(void) {
    LEAK_CHECK_BEGIN();
    static float xv[N], a[N];
    fill(xv, N);
    /* dropout1d on [16, 16, 16]: planes of 16 along the last dim */
    nnm_tensor *x = tu_tf32(g_ctx, 3, (int64_t[]){16, 16, 16}, xv), *y = NULL;
    nnm_module *m = dropout_in(g_ctx, "dropout1d", 0.5);
    CHECK_STATUS(nnm_module_train(m, 1), NNM_OK);
    CU_ASSERT_TRUE(run(m, x, a));
    int mixed = 0, dropped = 0;
    for (int c = 0; c < 256; c++) {
        int z = 0;
        for (int i = 0; i < 16; i++) z += a[c * 16 + i] == 0.0f;
        mixed += z != 0 && z != 16;
        dropped += z == 16;
    }
    CU_ASSERT_EQUAL(mixed, 0);
    CU_ASSERT_TRUE(dropped > 128 - 60 && dropped < 128 + 60);
    nnm_tensor *x4 = tu_tf32(g_ctx, 4, (int64_t[]){4, 4, 4, 4}, xv);
    CHECK_ERROR(tu_call1(m, x4, &y), NNM_E_SHAPE, "Expected 2D or 3D input");
    nnm_module_release(m);
    /* dropout3d on an unbatched [64, 4, 4, 4]: one draw per channel of 64 */
    nnm_tensor *x3 = tu_tf32(g_ctx, 4, (int64_t[]){64, 4, 4, 4}, xv);
    m = dropout_in(g_ctx, "dropout3d", 0.5);
    CHECK_STATUS(nnm_module_train(m, 1), NNM_OK);
    CU_ASSERT_TRUE(run(m, x3, a));
    mixed = 0;
    for (int c = 0; c < 64; c++) {
        int z = 0;
        for (int i = 0; i < 64; i++) z += a[c * 64 + i] == 0.0f;
        mixed += z != 0 && z != 64;
    }
    CU_ASSERT_EQUAL(mixed, 0);
    nnm_module_release(m);
    /* alpha_dropout on N(0, 1) */
    static float g[N];
    uint32_t seed = 11u;
    for (int i = 0; i < N; i += 2) { /* Box-Muller */
        const double u1 = (tu_rand(&seed) + 2.0) / 4.0 * 0.999 + 0.0005, u2 = (tu_rand(&seed) + 2.0) / 4.0;
        const double r = sqrt(-2.0 * log(u1));
        g[i] = (float)(r * cos(6.283185307179586 * u2));
        g[i + 1] = (float)(r * sin(6.283185307179586 * u2));
    }
    nnm_tensor *xg = tu_tf32(g_ctx, 1, (int64_t[]){N}, g);
    m = dropout_in(g_ctx, "alpha_dropout", 0.2);
    CHECK_STATUS(nnm_module_train(m, 1), NNM_OK);
    CU_ASSERT_TRUE(run(m, xg, a));
    const double alpha = 1.7580993408473766, p = 0.2, aa = 1.0 / sqrt((alpha * alpha * p + 1.0) * (1.0 - p));
    double mean = 0, var = 0, mean_in = 0;
    int bad = 0, n_drop = 0;
    for (int i = 0; i < N; i++) {
        mean += a[i];
        mean_in += g[i];
        const double kept = aa * g[i] + alpha * aa * p, drop = alpha * aa * (p - 1.0);
        const int is_drop = fabs(a[i] - drop) < 1e-5;
        n_drop += is_drop;
        bad += !is_drop && fabs(a[i] - kept) > 1e-5;
    }
    mean /= N;
    mean_in /= N;
    for (int i = 0; i < N; i++) var += (a[i] - mean) * (a[i] - mean);
    var /= N - 1;
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_TRUE(n_drop > 819 - 200 && n_drop < 819 + 200); /* Binomial(4096, 0.2): sd 25.6 */
    CU_ASSERT_TRUE(fabs(mean - mean_in) < 0.1);
    CU_ASSERT_TRUE(fabs(var - 1.0) < 0.15);
    CHECK_STATUS(nnm_module_train(m, 0), NNM_OK);
    CHECK_STATUS(tu_call1(m, xg, &y), NNM_OK);
    CU_ASSERT_PTR_EQUAL(y, xg);
    nnm_tensor_release(y);
    nnm_module_release(m);
    /* feature_alpha_dropout on N(0, 1) as [8, 64, 8]: alpha_dropout's values,
     * one draw per (sample, channel) of 8 elements, mean and variance kept */
    nnm_tensor *xf = tu_tf32(g_ctx, 3, (int64_t[]){8, 64, 8}, g);
    m = dropout_in(g_ctx, "feature_alpha_dropout", 0.2);
    CHECK_STATUS(nnm_module_train(m, 1), NNM_OK);
    CU_ASSERT_TRUE(run(m, xf, a));
    mean = var = 0;
    bad = n_drop = 0;
    for (int c = 0; c < 512; c++) {
        int z = 0;
        for (int i = c * 8; i < c * 8 + 8; i++) {
            const double kept = aa * g[i] + alpha * aa * p, drop = alpha * aa * (p - 1.0);
            const int is_drop = fabs(a[i] - drop) < 1e-5 && fabs(a[i] - kept) > 1e-5;
            z += is_drop;
            bad += !is_drop && fabs(a[i] - kept) > 1e-5;
            mean += a[i];
        }
        mixed += z != 0 && z != 8;
        n_drop += z == 8;
    }
    mean /= N;
    for (int i = 0; i < N; i++) var += (a[i] - mean) * (a[i] - mean);
    var /= N - 1;
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(mixed, 0);
    CU_ASSERT_TRUE(n_drop > 102 - 50 && n_drop < 102 + 50); /* Binomial(512, 0.2): sd 9 */
    CU_ASSERT_TRUE(fabs(mean - mean_in) < 0.15);
    CU_ASSERT_TRUE(fabs(var - 1.0) < 0.2);
    nnm_tensor *x1 = tu_tf32(g_ctx, 1, (int64_t[]){4}, g);
    CHECK_ERROR(tu_call1(m, x1, &y), NNM_E_SHAPE, "Feature dropout requires at least 2 dimensions");
    nnm_tensor_release(x1);
    nnm_module_release(m);
    nnm_tensor_release(xf);
    nnm_tensor_release(xg);
    nnm_tensor_release(x3);
    nnm_tensor_release(x4);
    nnm_tensor_release(x);
    LEAK_CHECK_END();
}

/* The same seed gives the same masks; another seed other masks. */
static void test_seeded_masks(void) {
    static float xv[N], r[3][N];
    fill(xv, N);
    const uint64_t seeds[3] = {42, 42, 43};
    for (int k = 0; k < 3; k++) {
        nnm_ctx_options o;
        memset(&o, 0, sizeof o);
        o.struct_size = sizeof o;
        o.seed = seeds[k];
        nnm_ctx *ctx = NULL;
        CU_ASSERT_EQUAL_FATAL(nnm_ctx_new(&o, &ctx), NNM_OK);
        nnm_module *m = dropout_in(ctx, "dropout", 0.5);
        CU_ASSERT_EQUAL(nnm_module_train(m, 1), NNM_OK);
        nnm_tensor *x = NULL, *y = NULL;
        CU_ASSERT_EQUAL(nnm_tensor_from_f32(ctx, 1, (int64_t[]){N}, xv, &x), NNM_OK);
        nnm_tensor *in[1] = {x};
        CU_ASSERT_EQUAL(nnm_module_call(m, in, 1, &y, 1), NNM_OK);
        CU_ASSERT_EQUAL(nnm_tensor_to_f32(y, r[k], N), NNM_OK);
        nnm_tensor_release(y);
        nnm_tensor_release(x);
        nnm_module_release(m);
        nnm_ctx_free(ctx);
    }
    CU_ASSERT_EQUAL(memcmp(r[0], r[1], sizeof r[0]), 0);
    CU_ASSERT_NOT_EQUAL(memcmp(r[0], r[2], sizeof r[0]), 0);
}

static nnm_status count_training(void *user, const char *name, nnm_module *m) {
    (void)name;
    int *c = user;
    c[0]++;
    c[1] += nnm_module_is_training(m) != 0;
    return NNM_OK;
}

/* Sequential(Sequential(Dropout), Graph(a: Dropout, out: Add)): one switch on
 * the root reaches all. */
static void test_mode_reaches_nested(void) {
    LEAK_CHECK_BEGIN();
    static const char doc[] =
        "{\"format\":\"nnmod.manifest\",\"version\":1,"
        "\"plugins\":{\"sequential\":\"^1\",\"graph\":\"^1\",\"dropout\":\"^1\",\"add\":\"^1\"},"
        "\"root\":{\"type\":\"sequential\",\"children\":["
        "{\"name\":\"inner\",\"type\":\"sequential\",\"children\":["
        "{\"type\":\"dropout\",\"config\":{\"p\":0.5}}]},"
        "{\"name\":\"g\",\"type\":\"graph\",\"config\":{\"inputs\":[\"x\"],"
        "\"nodes\":[\"a: x\",\"s: a, x\"]},\"children\":["
        "{\"name\":\"a\",\"type\":\"dropout\",\"config\":{\"p\":0.5}},"
        "{\"name\":\"s\",\"type\":\"add\"}]}]}}";
    nnm_manifest *mf = NULL;
    nnm_module *root = NULL;
    CHECK_STATUS(nnm_manifest_parse(g_ctx, doc, sizeof doc - 1, NNM_MANIFEST_JSON, NULL, NULL,
                                    &mf),
                 NNM_OK);
    CHECK_STATUS(nnm_manifest_build(mf, 0, &root), NNM_OK);
    nnm_manifest_free(mf);
    CU_ASSERT_PTR_NOT_NULL_FATAL(root);
    int c[2] = {0, 0};
    CHECK_STATUS(nnm_module_named_modules(root, count_training, c), NNM_OK);
    CU_ASSERT_EQUAL(c[0], 6);
    CU_ASSERT_EQUAL(c[1], 6); /* modules start in train mode, as PyTorch's */

    static float xv[N], a[N], b[N];
    fill(xv, N);
    nnm_tensor *x = tu_tf32(g_ctx, 1, (int64_t[]){N}, xv);
    CHECK_STATUS(nnm_module_train(root, 0), NNM_OK);
    c[0] = c[1] = 0;
    CHECK_STATUS(nnm_module_named_modules(root, count_training, c), NNM_OK);
    CU_ASSERT_EQUAL(c[0], 6);
    CU_ASSERT_EQUAL(c[1], 0);
    /* eval: 2x exactly, every call */
    CU_ASSERT_TRUE(run(root, x, a) && run(root, x, b));
    CU_ASSERT_EQUAL(memcmp(a, b, sizeof a), 0);
    int bad = 0;
    for (int i = 0; i < N; i++)
        bad += a[i] != xv[i] + xv[i];
    CU_ASSERT_EQUAL(bad, 0);
    /* train again: dropout shows */
    CHECK_STATUS(nnm_module_train(root, 1), NNM_OK);
    CU_ASSERT_TRUE(run(root, x, a));
    bad = 0;
    for (int i = 0; i < N; i++)
        bad += a[i] != xv[i] + xv[i];
    CU_ASSERT_TRUE(bad > N / 4);
    nnm_tensor_release(x);
    nnm_module_release(root);
    LEAK_CHECK_END();
}

/* Attention: dropout on the weights in train mode only; eval repeats. */
static void test_attention_modes(void) {
    LEAK_CHECK_BEGIN();
    static const char doc[] =
        "{\"format\":\"nnmod.manifest\",\"version\":1,"
        "\"plugins\":{\"multihead_attention\":\"^1\",\"linear\":\"^1\"},"
        "\"root\":{\"type\":\"multihead_attention\",\"config\":{\"embed_dim\":8,"
        "\"num_heads\":2,\"dropout\":0.5,\"batch_first\":true},\"children\":["
        "{\"name\":\"out_proj\",\"type\":\"linear\",\"config\":{\"in_features\":8,"
        "\"out_features\":8}}]}}";
    nnm_manifest *mf = NULL;
    nnm_module *m = NULL;
    CHECK_STATUS(nnm_manifest_parse(g_ctx, doc, sizeof doc - 1, NNM_MANIFEST_JSON, NULL, NULL,
                                    &mf),
                 NNM_OK);
    CHECK_STATUS(nnm_manifest_build(mf, 0, &m), NNM_OK);
    nnm_manifest_free(mf);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    float xv[2 * 5 * 8], e1[80], e2[80], t1[80], t2[80];
    tu_fill_uniform(xv, 80, 3, -1.0, 1.0);
    nnm_tensor *x = tu_tf32(g_ctx, 3, (int64_t[]){2, 5, 8}, xv);
    nnm_tensor *in[3] = {x, x, x};
    float *dst[4] = {e1, e2, t1, t2};
    for (int k = 0; k < 4; k++) {
        if (k == 0)
            CHECK_STATUS(nnm_module_train(m, 0), NNM_OK);
        if (k == 2)
            CHECK_STATUS(nnm_module_train(m, 1), NNM_OK);
        nnm_tensor *y = NULL;
        CHECK_STATUS(nnm_module_call(m, in, 3, &y, 1), NNM_OK);
        CU_ASSERT_EQUAL(nnm_tensor_to_f32(y, dst[k], 80), NNM_OK);
        nnm_tensor_release(y);
    }
    CU_ASSERT_EQUAL(memcmp(e1, e2, sizeof e1), 0);
    CU_ASSERT_NOT_EQUAL(memcmp(e1, t1, sizeof e1), 0);
    CU_ASSERT_NOT_EQUAL(memcmp(t1, t2, sizeof t1), 0);
    nnm_tensor_release(x);
    nnm_module_release(m);
    LEAK_CHECK_END();
}

static nnm_status sum_buffers(void *user, const char *name, nnm_tensor *t) {
    (void)name;
    float v[64];
    int64_t n = nnm_tensor_numel(t);
    if (n > 64 || nnm_tensor_to_f32(t, v, (size_t)n) != NNM_OK)
        return NNM_E_LIMIT;
    for (int64_t i = 0; i < n; i++)
        *(double *)user += v[i] * (double)(i + 1);
    return NNM_OK;
}

static double buffers_fingerprint(nnm_module *m) {
    double f = 0.0;
    CHECK_STATUS(nnm_module_named_buffers(m, sum_buffers, &f), NNM_OK);
    return f;
}

/* The ResNet block of examples/manifests (batch norm, nested in a graph and
 * a sequential): eval repeats exactly and leaves the running statistics
 * alone; train normalises with the batch and updates them. */
static void test_batch_norm_modes(void) {
    LEAK_CHECK_BEGIN();
    nnm_manifest *mf = NULL;
    nnm_module *m = NULL;
    CHECK_STATUS(nnm_manifest_load(g_ctx, NNM_SOURCE_DIR "/examples/manifests/resnet_basic_block.json",
                                   NNM_MANIFEST_AUTO, NULL, &mf),
                 NNM_OK);
    CHECK_STATUS(nnm_manifest_build(mf, NNM_BUILD_NO_WEIGHTS, &m), NNM_OK);
    nnm_manifest_free(mf);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    enum { NX = 2 * 4 * 9 * 9, NY = 2 * 8 * 5 * 5 };
    static float xv[NX], e1[NY], e2[NY], t1[NY];
    tu_fill_uniform(xv, NX, 11, -2.0, 3.0); /* mean 0.5, not what the running stats hold */
    nnm_tensor *x = tu_tf32(g_ctx, 4, (int64_t[]){2, 4, 9, 9}, xv), *y = NULL;
    const double fresh = buffers_fingerprint(m);
    CHECK_STATUS(nnm_module_train(m, 0), NNM_OK);
    float *dst[3] = {e1, e2, t1};
    for (int k = 0; k < 3; k++) {
        if (k == 2)
            CHECK_STATUS(nnm_module_train(m, 1), NNM_OK);
        CHECK_STATUS(tu_call1(m, x, &y), NNM_OK);
        CU_ASSERT_EQUAL(nnm_tensor_to_f32(y, dst[k], NY), NNM_OK);
        nnm_tensor_release(y);
        y = NULL;
        if (k == 1)
            CU_ASSERT_TRUE(buffers_fingerprint(m) == fresh); /* eval updates nothing */
    }
    CU_ASSERT_EQUAL(memcmp(e1, e2, sizeof e1), 0);
    CU_ASSERT_NOT_EQUAL(memcmp(e1, t1, sizeof e1), 0);
    CU_ASSERT_TRUE(buffers_fingerprint(m) != fresh); /* train updated the running stats */
    nnm_tensor_release(x);
    nnm_module_release(m);
    LEAK_CHECK_END();
}

int main(void) {
    CU_pSuite s = tu_suite("train and eval modes", suite_init, suite_clean);
    if (s == NULL)
        return 1;
    CU_add_test(s, "dropout: eval is the identity, train masks", test_dropout_modes);
    CU_add_test(s, "dropout2d: whole channels", test_dropout2d_channels);
    CU_add_test(s, "stochastic_depth: rows or the batch, scaled; eval identity", test_stochastic_depth);
    CU_add_test(s, "dropout1d/3d: whole channels; (feature_)alpha_dropout keeps mean and variance",
                test_dropout1d3d_alpha);
    CU_add_test(s, "seeded contexts reproduce masks", test_seeded_masks);
    CU_add_test(s, "train(0) on the root reaches every nested module", test_mode_reaches_nested);
    CU_add_test(s, "attention dropout: train only", test_attention_modes);
    CU_add_test(s, "batch norm: eval repeats and updates nothing", test_batch_norm_modes);
    return tu_run();
}
