/* tests/layers/test_conv_winograd.c - the cpu backend's Winograd F(2x2, 3x3)
 * convolution (ABI 1.4 conv / conv_backward slots) through the real call
 * path (the op_probe fixture layer -> host op_conv -> the backend's slot),
 * forced on every geometry with NNM_CPU_WINOGRAD=1, against a direct
 * convolution computed here in double: the output and the gradients of
 * sum(y * R) for x, w and b, plus central finite differences on a sample.
 * Then the slots driven directly: the geometries they must decline do so
 * with NNM_E_UNSUPPORTED and no message, and NNM_CPU_WINOGRAD=0 declines all.
 * Last, inf and NaN operands give the direct sum's +-inf and NaN.
 *
 * Tolerance. A direct f32 convolution's error is bounded by gamma_K * S
 * with S = sum |w| |x| over the output's window and K = 9 C_in terms (u =
 * 2^-24, gamma_K ~ K u); BLAS's blocked sums make it ~ sqrt(K) u S in
 * practice. Winograd computes the same sum after exact-in-reals transforms
 * whose entries are 0, +-1, +-1/2: B^T d B and A^T M A each add a few
 * roundings on values that are sums of up to 16 terms of the inputs, so the
 * error stays a modest multiple of u S (Lavin & Gray 2015; for F(2x2, 3x3)
 * about 2-4x the direct conv's). grad_w is the loosest: its 16 sums over
 * N * tiles terms run on transformed values (each a sum of up to 4 inputs
 * times up to 4 output gradients) before G^T . G combines them with
 * cancellation. We allow WINO_TOL_U * u * S per element (S: sum |w| |x| for
 * y, sum |w| |R| for grad_x, sum |R| |x| for grad_w). The largest ratios
 * err / (u S) measured here: Winograd y 2.2, grad_x 6.9, grad_w 29.7; the
 * im2col path on the same cases y 5.2, grad_x 3.2, grad_w 1.9. The run
 * prints them so the margin stays visible. */
#include "test_util.h"

#include <dlfcn.h>
#include <float.h>

#define WINO_TOL_U 64.0

static nnm_ctx *g_ctx;
#define TU_CTX g_ctx
static double g_worst[4]; /* largest err / (u S) seen: y, grad_x, grad_w, grad_b */

typedef struct geo {
    int64_t n, ci, co, h, w, pt, pb, pl, pr;
    int bias;
} geo;

static int64_t out_h(const geo *g) { return g->h + g->pt + g->pb - 2; }
static int64_t out_w(const geo *g) { return g->w + g->pl + g->pr - 2; }

/* The direct convolution and its gradients for R, in double, with the
 * scales sum |terms| of each element. */
typedef struct refs {
    double *y, *sy, *gx, *sgx, *gw, *sgw, *gb, *sgb;
} refs;

static double at4(const float *t, int64_t c, int64_t h, int64_t w, int64_t a, int64_t b, int64_t i, int64_t j) {
    if (i < 0 || i >= h || j < 0 || j >= w) return 0.0;
    return t[((a * c + b) * h + i) * w + j];
}

static refs reference(const geo *g, const float *x, const float *w, const float *b, const float *R) {
    const int64_t oh = out_h(g), ow = out_w(g);
    const int64_t ny = g->n * g->co * oh * ow, nx = g->n * g->ci * g->h * g->w, nw = g->co * g->ci * 9;
    refs r;
    r.y = calloc((size_t)ny, sizeof(double));
    r.sy = calloc((size_t)ny, sizeof(double));
    r.gx = calloc((size_t)nx, sizeof(double));
    r.sgx = calloc((size_t)nx, sizeof(double));
    r.gw = calloc((size_t)nw, sizeof(double));
    r.sgw = calloc((size_t)nw, sizeof(double));
    r.gb = calloc((size_t)g->co, sizeof(double));
    r.sgb = calloc((size_t)g->co, sizeof(double));
    for (int64_t n = 0; n < g->n; n++)
        for (int64_t co = 0; co < g->co; co++)
            for (int64_t oy = 0; oy < oh; oy++)
                for (int64_t ox = 0; ox < ow; ox++) {
                    const int64_t yi = ((n * g->co + co) * oh + oy) * ow + ox;
                    double s = b ? b[co] : 0.0, a = b ? fabs(b[co]) : 0.0;
                    const double rv = R[yi];
                    r.gb[co] += rv;
                    r.sgb[co] += fabs(rv);
                    for (int64_t ci = 0; ci < g->ci; ci++)
                        for (int64_t ky = 0; ky < 3; ky++)
                            for (int64_t kx = 0; kx < 3; kx++) {
                                const int64_t iy = oy + ky - g->pt, ix = ox + kx - g->pl;
                                const double wv = w[((co * g->ci + ci) * 3 + ky) * 3 + kx];
                                const double xv = at4(x, g->ci, g->h, g->w, n, ci, iy, ix);
                                s += wv * xv;
                                a += fabs(wv * xv);
                                const int64_t wi = ((co * g->ci + ci) * 3 + ky) * 3 + kx;
                                r.gw[wi] += rv * xv;
                                r.sgw[wi] += fabs(rv * xv);
                                if (iy >= 0 && iy < g->h && ix >= 0 && ix < g->w) {
                                    const int64_t xi = ((n * g->ci + ci) * g->h + iy) * g->w + ix;
                                    r.gx[xi] += wv * rv;
                                    r.sgx[xi] += fabs(wv * rv);
                                }
                            }
                    r.y[yi] = s;
                    r.sy[yi] = a;
                }
    return r;
}

static void refs_free(refs *r) {
    free(r->y), free(r->sy), free(r->gx), free(r->sgx), free(r->gw), free(r->sgw), free(r->gb), free(r->sgb);
}

/* Elements of got outside want +- (WINO_TOL_U u scale + a denormal's worth). */
static int check(const char *what, int slot, const geo *g, const float *got, const double *want,
                 const double *scale, int64_t n) {
    int bad = 0;
    for (int64_t i = 0; i < n; i++) {
        const double err = fabs(got[i] - want[i]), unit = FLT_EPSILON / 2 * scale[i];
        if (unit > 0 && err / unit > g_worst[slot]) g_worst[slot] = err / unit;
        if (!(err <= WINO_TOL_U * unit + 1e-30)) {
            if (bad < 3)
                fprintf(stderr, "\n  [%lld %lld->%lld %lldx%lld pad %lld/%lld %lld/%lld] %s[%lld]: got %.9g want %.9g (scale %.3g)",
                        (long long)g->n, (long long)g->ci, (long long)g->co, (long long)g->h, (long long)g->w,
                        (long long)g->pt, (long long)g->pb, (long long)g->pl, (long long)g->pr, what, (long long)i,
                        (double)got[i], want[i], scale[i]);
            bad++;
        }
    }
    return bad;
}

static nnm_module *conv_probe(const geo *g) {
    nnm_config *cfg = NULL;
    nnm_config_new(&cfg);
    nnm_config_set_str(cfg, "op", "conv");
    nnm_config_set_int(cfg, "ns", 2);
    const int64_t pad[2] = {g->pt, g->pl}, pe[2] = {g->pb, g->pr};
    nnm_config_set_ints(cfg, "padding", pad, 2);
    nnm_config_set_ints(cfg, "padding_end", pe, 2);
    nnm_module *m = tu_module(g_ctx, "op_probe", cfg);
    nnm_config_free(cfg);
    return m;
}

/* sum(y * R) in double for the current inputs (no recording). */
static double loss(nnm_module *m, nnm_tensor **in, int n_in, const float *R, int64_t ny) {
    nnm_tensor *y = NULL;
    int was = nnm_grad_set_enabled(0);
    nnm_status st = nnm_module_call(m, in, (uint32_t)n_in, &y, 1);
    nnm_grad_set_enabled(was);
    if (st != NNM_OK) return NAN;
    const float *p = tu_cpu_data(y);
    double s = 0;
    for (int64_t i = 0; i < ny; i++) s += (double)p[i] * R[i];
    nnm_tensor_release(y);
    return s;
}

/* Central differences of loss() at a few elements of t against grad. */
static int fd_check(const char *what, nnm_module *m, nnm_tensor **in, int n_in, nnm_tensor *t, const float *grad,
                    const float *R, int64_t ny, uint32_t *seed) {
    int64_t n = nnm_tensor_numel(t);
    float *p = tu_cpu_data(t);
    int bad = 0;
    for (int k = 0; k < 4; k++) {
        *seed = *seed * 1664525u + 1013904223u;
        const int64_t i = (int64_t)(*seed >> 8) % n;
        const float keep = p[i], eps = 1e-2f;
        p[i] = keep + eps;
        double lp = loss(m, in, n_in, R, ny);
        p[i] = keep - eps;
        double lm = loss(m, in, n_in, R, ny);
        p[i] = keep;
        /* L is linear in each single element: the difference is exact but for
         * float rounding of y, ~ u sum |y R| / eps */
        double num = (lp - lm) / (2.0 * (double)eps);
        if (!tu_near(grad[i], num, 2e-2, 2e-3)) {
            fprintf(stderr, "\n  finite differences %s[%lld]: analytic %.7g numeric %.7g", what, (long long)i,
                    (double)grad[i], num);
            bad++;
        }
    }
    return bad;
}

static void run_case(const geo *g, uint32_t seed) {
    const int64_t oh = out_h(g), ow = out_w(g);
    const int64_t xs[4] = {g->n, g->ci, g->h, g->w}, ws[4] = {g->co, g->ci, 3, 3}, bs[1] = {g->co};
    const int64_t nx = g->n * g->ci * g->h * g->w, nw = g->co * g->ci * 9, ny = g->n * g->co * oh * ow;
    float *x = malloc((size_t)nx * sizeof *x), *w = malloc((size_t)nw * sizeof *w);
    float *b = malloc((size_t)g->co * sizeof *b), *R = malloc((size_t)ny * sizeof *R);
    tu_fill_uniform(x, (size_t)nx, seed, -1.0, 1.0);
    tu_fill_uniform(w, (size_t)nw, seed + 1, -0.5, 0.5);
    tu_fill_uniform(b, (size_t)g->co, seed + 2, -0.5, 0.5);
    tu_fill_uniform(R, (size_t)ny, seed + 3, -1.0, 1.0);
    nnm_module *m = conv_probe(g);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    nnm_tensor *in[3] = {tu_tf32(g_ctx, 4, xs, x), tu_tf32(g_ctx, 4, ws, w), g->bias ? tu_tf32(g_ctx, 1, bs, b) : NULL};
    const int n_in = g->bias ? 3 : 2;
    for (int i = 0; i < n_in; i++) CU_ASSERT_EQUAL(nnm_tensor_set_requires_grad(in[i], 1), NNM_OK);
    const int64_t ys[4] = {g->n, g->co, oh, ow};
    nnm_tensor *y = NULL, *gr = tu_tf32(g_ctx, 4, ys, R);
    CHECK_STATUS(nnm_module_call(m, in, (uint32_t)n_in, &y, 1), NNM_OK);
    CU_ASSERT_FATAL(y != NULL && tu_shape_is(y, 4, ys));
    CHECK_STATUS(nnm_backward(y, gr, 0), NNM_OK);
    refs r = reference(g, x, w, g->bias ? b : NULL, R);
    int bad = check("y", 0, g, tu_cpu_data(y), r.y, r.sy, ny);
    nnm_tensor *gx = nnm_tensor_grad(in[0]), *gw = nnm_tensor_grad(in[1]), *gb = g->bias ? nnm_tensor_grad(in[2]) : NULL;
    CU_ASSERT_FATAL(gx != NULL && gw != NULL && (!g->bias || gb != NULL));
    bad += check("grad_x", 1, g, tu_cpu_data(gx), r.gx, r.sgx, nx);
    bad += check("grad_w", 2, g, tu_cpu_data(gw), r.gw, r.sgw, nw);
    if (gb) bad += check("grad_b", 3, g, tu_cpu_data(gb), r.gb, r.sgb, g->co);
    uint32_t s2 = seed * 7u + 1u;
    bad += fd_check("x", m, in, n_in, in[0], tu_cpu_data(gx), R, ny, &s2);
    bad += fd_check("w", m, in, n_in, in[1], tu_cpu_data(gw), R, ny, &s2);
    if (gb) bad += fd_check("b", m, in, n_in, in[2], tu_cpu_data(gb), R, ny, &s2);
    CU_ASSERT_EQUAL(bad, 0);
    refs_free(&r);
    nnm_tensor_release(y);
    nnm_tensor_release(gr);
    for (int i = 0; i < n_in; i++) nnm_tensor_release(in[i]);
    nnm_module_release(m);
    free(x), free(w), free(b), free(R);
}

static const geo k_geos[] = {
    /* n  ci co  h   w  pt pb pl pr bias */
    {1, 3, 5, 7, 9, 1, 1, 1, 1, 1},    /* odd sizes, batch 1 */
    {2, 1, 4, 5, 6, 0, 0, 0, 0, 1},    /* C_in = 1, no padding */
    {1, 4, 3, 3, 3, 0, 0, 0, 0, 0},    /* a 1 x 1 output */
    {2, 2, 3, 2, 3, 1, 1, 1, 1, 1},    /* H < 4 */
    {1, 3, 2, 1, 6, 1, 1, 1, 1, 1},    /* H = 1 */
    {1, 3, 2, 6, 5, 2, 2, 2, 2, 1},    /* padding 2 */
    {1, 2, 3, 4, 5, 3, 3, 3, 1, 1},    /* padding past the kernel: grad_x crops dY */
    {2, 5, 7, 8, 8, 1, 1, 1, 1, 0},    /* even sizes, no bias */
    {1, 3, 4, 6, 7, 0, 2, 2, 0, 1},    /* asymmetric "same" */
    {2, 4, 3, 5, 4, 2, 0, 1, 1, 1},    /* asymmetric the other way */
    {3, 16, 9, 10, 11, 1, 1, 1, 1, 1}, /* more channels, C_out not a multiple of anything */
    {2, 64, 64, 30, 30, 1, 1, 1, 1, 1}, /* several chunks of tiles, crossing rows and images */
    {1, 33, 70, 13, 58, 1, 1, 0, 0, 1}, /* tile rows of 28 (two vectors, the second partial) */
    {2, 3, 4, 9, 37, 0, 1, 1, 0, 1},    /* W odd, tile rows of 18, asymmetric */
};

/* "1": the best transforms this CPU has (AVX-512 where it can); "generic":
 * the portable ones, so both are tested on an AVX-512 machine. */
static void test_geometries(void) {
    static const char *const modes[] = {"1", "generic"};
    for (int mo = 0; mo < 2; mo++) {
        setenv("NNM_CPU_WINOGRAD", modes[mo], 1);
        for (size_t i = 0; i < sizeof k_geos / sizeof k_geos[0]; i++) run_case(&k_geos[i], 11u + 13u * (uint32_t)i);
    }
    unsetenv("NNM_CPU_WINOGRAD");
    printf("\n  largest error / (u * sum|terms|): y %.2f, grad_x %.2f, grad_w %.2f, grad_b %.2f (allowed %.0f)\n",
           g_worst[0], g_worst[1], g_worst[2], g_worst[3], WINO_TOL_U);
}

/* With 2 threads set on the context the forward's chunks (y, and grad_x's
 * convolution) are dealt out to two threads: the same answers, on
 * geometries of several chunks and enough work (cpu's WINO_PAR_MIN). */
static void test_threads(void) {
    CU_ASSERT(nnm_ctx_num_threads(g_ctx) >= 1); /* the default: the cores, or *_NUM_THREADS */
    CU_ASSERT_EQUAL(nnm_ctx_set_num_threads(g_ctx, 0), NNM_E_INVALID);
    CU_ASSERT_EQUAL(nnm_ctx_set_num_threads(NULL, 2), NNM_E_INVALID);
    CHECK_STATUS(nnm_ctx_set_num_threads(g_ctx, 2), NNM_OK);
    CU_ASSERT_EQUAL(nnm_ctx_num_threads(g_ctx), 2);
    setenv("NNM_CPU_WINOGRAD", "1", 1);
    const geo big = {2, 64, 64, 30, 30, 1, 1, 1, 1, 1};  /* 8 chunks */
    const geo fashion = {4, 16, 32, 14, 14, 1, 1, 1, 1, 1}; /* the Fashion CNN's conv2 at batch 4 */
    run_case(&big, 77u);
    run_case(&fashion, 78u);
    unsetenv("NNM_CPU_WINOGRAD");
    CHECK_STATUS(nnm_ctx_set_num_threads(g_ctx, 1), NNM_OK);
}

/* One module of `type` (config: `key` = `val`) run forward and backward
 * with 1 and then 2 threads set on the context: the same bits, y and the
 * input's gradient (the cpu backend's pool and batch-norm slots split their
 * planes or channels above 2^18 input elements). */
/* The first parameter's gradient, read (v NULL: none), and its size. */
typedef struct first_grad_out {
    float *v;
    int64_t n;
} first_grad_out;

static nnm_status first_grad(void *user, const char *name, nnm_tensor *t) {
    (void)name;
    first_grad_out *out = user;
    if (!out->v && nnm_tensor_grad(t)) {
        out->v = tu_read_f32(nnm_tensor_grad(t), NULL);
        out->n = nnm_tensor_numel(t);
    }
    return NNM_OK;
}

static void same_bits_on_two_threads(const char *type, const char *key, int64_t val, const char *plugin) {
    CU_ASSERT_EQUAL_FATAL(nnm_plugin_load(g_ctx, plugin), NNM_OK);
    nnm_config *cfg = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_config_new(&cfg), NNM_OK);
    if (key) nnm_config_set_int(cfg, key, val);
    if (!strcmp(type, "conv2d")) { /* 32 -> 32, 3x3, padding 1: Winograd, grad_w in parts */
        nnm_config_set_int(cfg, "out_channels", val);
        nnm_config_set_int(cfg, "kernel_size", 3);
        nnm_config_set_int(cfg, "padding", 1);
    }
    nnm_module *m = tu_module(g_ctx, type, cfg);
    nnm_config_free(cfg);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    const int64_t xs[4] = {8, 32, 32, 32};
    const size_t nx = 8 * 32 * 32 * 32;
    float *xv = malloc(nx * sizeof *xv), *rv = malloc(nx * sizeof *rv);
    float *got[2][2] = {{NULL, NULL}, {NULL, NULL}};
    first_grad_out gw[2] = {{NULL, 0}, {NULL, 0}};
    int64_t ny = 0;
    CU_ASSERT_FATAL(xv != NULL && rv != NULL);
    tu_fill_uniform(xv, nx, 5u, -1.0, 1.0);
    for (size_t i = 0; i < nx; i += 7) xv[i] = 0.5f; /* ties */
    tu_fill_uniform(rv, nx, 6u, -1.0, 1.0);
    for (int t = 0; t < 2; t++) {
        CHECK_STATUS(nnm_ctx_set_num_threads(g_ctx, t + 1), NNM_OK);
        CHECK_STATUS(nnm_module_zero_grad(m), NNM_OK);
        nnm_tensor *x = tu_tf32(g_ctx, 4, xs, xv), *y = NULL;
        CU_ASSERT_EQUAL(nnm_tensor_set_requires_grad(x, 1), NNM_OK);
        CHECK_STATUS(nnm_module_call(m, &x, 1, &y, 1), NNM_OK);
        CU_ASSERT_FATAL(y != NULL);
        ny = nnm_tensor_numel(y);
        nnm_tensor *r = tu_tf32(g_ctx, nnm_tensor_desc_get(y)->ndim, nnm_tensor_desc_get(y)->shape, rv);
        CHECK_STATUS(nnm_backward(y, r, 0), NNM_OK);
        got[t][0] = tu_read_f32(y, NULL);
        got[t][1] = nnm_tensor_grad(x) ? tu_read_f32(nnm_tensor_grad(x), NULL) : NULL;
        nnm_module_named_parameters(m, first_grad, &gw[t]);
        nnm_tensor_release(y);
        nnm_tensor_release(r);
        nnm_tensor_release(x);
    }
    CU_ASSERT_FATAL(got[0][0] && got[1][0] && got[0][1] && got[1][1]);
    CU_ASSERT_EQUAL(memcmp(got[0][0], got[1][0], (size_t)ny * sizeof(float)), 0);
    CU_ASSERT_EQUAL(memcmp(got[0][1], got[1][1], nx * sizeof(float)), 0);
    CU_ASSERT_EQUAL(gw[0].n, gw[1].n);
    if (gw[0].v && gw[1].v && gw[0].n == gw[1].n)
        CU_ASSERT_EQUAL(memcmp(gw[0].v, gw[1].v, (size_t)gw[0].n * sizeof(float)), 0);
    for (int t = 0; t < 2; t++) free(got[t][0]), free(got[t][1]), free(gw[t].v);
    free(xv), free(rv);
    nnm_module_release(m);
    CHECK_STATUS(nnm_ctx_set_num_threads(g_ctx, 1), NNM_OK);
}

static void test_pool_bn_threads(void) {
    same_bits_on_two_threads("max_pool2d", "kernel_size", 2, NNM_TEST_POOL_PLUGIN);
    same_bits_on_two_threads("batch_norm2d", "num_features", 32, NNM_TEST_NORM_PLUGIN);
    /* relu: the elementwise slots (unary forward, where for the gradient)
     * split their flat range above 2^18 elements */
    same_bits_on_two_threads("relu", NULL, 0, NNM_TEST_RELU_PLUGIN);
    /* conv2d 3x3 (Winograd): y, grad_x and grad_w, whose parts are summed in
     * the same order on any thread count */
    setenv("NNM_CPU_WINOGRAD", "1", 1);
    same_bits_on_two_threads("conv2d", "in_channels", 32, NNM_TEST_CONV_PLUGIN);
    unsetenv("NNM_CPU_WINOGRAD");
}

/* The default thresholds give the same answers (im2col or Winograd alike). */
static void test_default_thresholds(void) {
    const geo g = {2, 8, 8, 9, 9, 1, 1, 1, 1, 1};
    run_case(&g, 99u);
    const geo g1 = {2, 1, 16, 12, 12, 1, 1, 1, 1, 1};
    run_case(&g1, 98u);
}

/* got against the direct sum where want is not finite: NaN where it is NaN,
 * the same infinity where it is one; finite elements within the tolerance. */
static int check_classes(const char *what, const float *got, const double *want, const double *scale, int64_t n) {
    int bad = 0;
    for (int64_t i = 0; i < n; i++) {
        const double gv = got[i];
        const int ok = isnan(want[i])   ? isnan(gv)
                       : isinf(want[i]) ? gv == want[i]
                                        : fabs(gv - want[i]) <= WINO_TOL_U * FLT_EPSILON / 2 * scale[i] + 1e-30;
        if (!ok && bad++ < 3)
            fprintf(stderr, "\n  %s[%lld]: got %g want %g", what, (long long)i, gv, want[i]);
    }
    return bad;
}

/* An inf in x, w or dY must give what the direct sum gives (PyTorch's
 * +-inf), not the transforms' inf - inf = NaN: forced on, the slots decline
 * such operands and im2col runs. NaN propagates to the same elements. */
static void test_nonfinite(void) {
    static const char *const modes[] = {"1", "generic"};
    const geo g = {2, 4, 8, 7, 7, 1, 1, 1, 1, 1};
    const int64_t oh = out_h(&g), ow = out_w(&g);
    const int64_t xs[4] = {g.n, g.ci, g.h, g.w}, ws[4] = {g.co, g.ci, 3, 3}, bs[1] = {g.co}, ys[4] = {g.n, g.co, oh, ow};
    const int64_t nx = g.n * g.ci * g.h * g.w, nw = g.co * g.ci * 9, ny = g.n * g.co * oh * ow;
    float *x = malloc((size_t)nx * sizeof *x), *w = malloc((size_t)nw * sizeof *w), b[8];
    float *R = malloc((size_t)ny * sizeof *R);
    /* which operand gets the specials: x (forward and grad_w), dY (grad_x and grad_w), w */
    for (int which = 0; which < 3; which++)
        for (int mo = 0; mo < 2; mo++) {
            tu_fill_uniform(x, (size_t)nx, 5u, -1.0, 1.0);
            tu_fill_uniform(w, (size_t)nw, 6u, -0.5, 0.5);
            tu_fill_uniform(b, 8, 7u, -0.5, 0.5);
            tu_fill_uniform(R, (size_t)ny, 8u, -1.0, 1.0);
            if (which == 0) {
                x[2 * 7 + 2] = INFINITY; /* image 0, channel 0, (2, 2): inside a tile */
                x[nx - 1] = -INFINITY;   /* the last image's last corner */
                x[49 + 3 * 7 + 3] = NAN; /* image 0, channel 1, (3, 3) */
            } else if (which == 1) {
                R[3 * ow + 3] = INFINITY;
                R[ny - 2] = -INFINITY;
            } else {
                w[4] = INFINITY; /* co 0, ci 0, the centre */
            }
            setenv("NNM_CPU_WINOGRAD", modes[mo], 1);
            nnm_module *m = conv_probe(&g);
            CU_ASSERT_PTR_NOT_NULL_FATAL(m);
            nnm_tensor *in[3] = {tu_tf32(g_ctx, 4, xs, x), tu_tf32(g_ctx, 4, ws, w), tu_tf32(g_ctx, 1, bs, b)};
            for (int i = 0; i < 3; i++) CU_ASSERT_EQUAL(nnm_tensor_set_requires_grad(in[i], 1), NNM_OK);
            nnm_tensor *y = NULL, *gr = tu_tf32(g_ctx, 4, ys, R);
            CHECK_STATUS(nnm_module_call(m, in, 3, &y, 1), NNM_OK);
            CU_ASSERT_FATAL(y != NULL);
            CHECK_STATUS(nnm_backward(y, gr, 0), NNM_OK);
            refs r = reference(&g, x, w, b, R);
            int bad = check_classes("y", tu_cpu_data(y), r.y, r.sy, ny);
            nnm_tensor *gx = nnm_tensor_grad(in[0]), *gw = nnm_tensor_grad(in[1]);
            CU_ASSERT_FATAL(gx != NULL && gw != NULL);
            bad += check_classes("grad_x", tu_cpu_data(gx), r.gx, r.sgx, nx);
            bad += check_classes("grad_w", tu_cpu_data(gw), r.gw, r.sgw, nw);
            if (bad) fprintf(stderr, "\n  (specials in %s, NNM_CPU_WINOGRAD=%s)", which == 0 ? "x" : which == 1 ? "dY" : "w", modes[mo]);
            CU_ASSERT_EQUAL(bad, 0);
            refs_free(&r);
            nnm_tensor_release(y);
            nnm_tensor_release(gr);
            for (int i = 0; i < 3; i++) nnm_tensor_release(in[i]);
            nnm_module_release(m);
        }
    unsetenv("NNM_CPU_WINOGRAD");
    free(x), free(w), free(R);
}

/* ---- the slots driven directly ----------------------------------------- */

typedef struct desc4 {
    nnm_tensor_desc d;
    int64_t shape[4], strides[4];
} desc4;

static void desc_init(desc4 *t, float *data, int32_t nd, const int64_t *shape) {
    memset(t, 0, sizeof *t);
    int64_t s = 1;
    for (int32_t i = nd - 1; i >= 0; i--) {
        t->shape[i] = shape[i];
        t->strides[i] = s;
        s *= shape[i];
    }
    t->d.data = data;
    t->d.device.type = NNM_DEVICE_CPU;
    t->d.ndim = nd;
    t->d.dtype.code = NNM_DTYPE_FLOAT;
    t->d.dtype.bits = 32;
    t->d.dtype.lanes = 1;
    t->d.shape = t->shape;
    t->d.strides = t->strides;
}

static void test_declines(void) {
    tu_fake_host h;
    tu_fake_host_init(&h);
    void *dl = NULL;
    const nnm_plugin_desc *d = tu_plugin_open(NNM_TEST_CPU_PLUGIN, &dl);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    const nnm_backend_vtable *be = d->backends[0];
    CU_ASSERT_FATAL(be->struct_size >= offsetof(nnm_backend_vtable, conv_backward) + sizeof(void *));
    CU_ASSERT_PTR_NOT_NULL_FATAL(be->conv);
    CU_ASSERT_PTR_NOT_NULL_FATAL(be->conv_backward);
    static float x[2 * 8 * 9 * 9], w[8 * 8 * 5 * 5], y[2 * 8 * 9 * 9], gx[2 * 8 * 9 * 9], gw[8 * 8 * 5 * 5];
    struct {
        const char *what;
        int64_t k, stride, dil, groups, ns, transposed;
    } cases[] = {
        {"stride 2", 3, 2, 1, 1, 2, 0}, {"dilation 2", 3, 1, 2, 1, 2, 0}, {"groups 2", 3, 1, 1, 2, 2, 0},
        {"5x5 kernel", 5, 1, 1, 1, 2, 0}, {"1x1 kernel", 1, 1, 1, 1, 2, 0}, {"1-d", 3, 1, 1, 1, 1, 0},
        {"transposed", 3, 1, 1, 1, 2, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        nnm_conv_params p;
        memset(&p, 0, sizeof p);
        p.struct_size = sizeof p;
        p.n_spatial = (int32_t)cases[i].ns;
        p.groups = (int32_t)cases[i].groups;
        p.transposed = (int32_t)cases[i].transposed;
        for (int j = 0; j < 3; j++) {
            p.stride[j] = cases[i].stride;
            p.dilation[j] = cases[i].dil;
            p.padding[j] = p.padding_end[j] = 1;
        }
        const int64_t k = cases[i].k, ci_g = 8 / cases[i].groups;
        /* 5 x 5 planes: under 2^15 multiply-adds an image, which conv_gemm5 (the
         * slot's im2col + AVX-512 path) leaves to the runtime too */
        const int64_t xs[4] = {2, 8, 5, 5}, wsh[4] = {8, ci_g, k, k};
        const int64_t o = (5 + 2 - cases[i].dil * (k - 1) - 1) / cases[i].stride + 1, ysh[4] = {2, 8, o, o};
        desc4 dx, dw, dy, dgx, dgw;
        desc_init(&dx, x, 4, xs);
        desc_init(&dw, w, 4, wsh);
        desc_init(&dy, y, 4, ysh);
        desc_init(&dgx, gx, 4, xs);
        desc_init(&dgw, gw, 4, wsh);
        nnm_conv_args a = {sizeof a, 0, &p, &dx.d, &dw.d, NULL, &dy.d, NULL, NULL, NULL};
        tu_fake_host_reset(&h);
        CU_ASSERT_EQUAL(be->conv(&h.env, NULL, &a), NNM_E_UNSUPPORTED);
        nnm_conv_args ab = {sizeof ab, 0, &p, &dx.d, &dw.d, NULL, NULL, &dy.d, &dgx.d, &dgw.d};
        CU_ASSERT_EQUAL(be->conv_backward(&h.env, NULL, &ab), NNM_E_UNSUPPORTED);
        if (h.n_errors) fprintf(stderr, "\n  %s: declined with a message: %s", cases[i].what, h.msg);
        CU_ASSERT_EQUAL(h.n_errors, 0);
    }
    /* a geometry it has a kernel for: runs, unless NNM_CPU_WINOGRAD=0 */
    nnm_conv_params p;
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    p.n_spatial = 2;
    p.groups = 1;
    for (int j = 0; j < 2; j++) p.stride[j] = p.dilation[j] = p.padding[j] = p.padding_end[j] = 1;
    const int64_t xs[4] = {2, 8, 5, 5}, wsh[4] = {8, 8, 3, 3}; /* below conv_gemm5's size, as above */
    desc4 dx, dw, dy;
    desc_init(&dx, x, 4, xs);
    desc_init(&dw, w, 4, wsh);
    desc_init(&dy, y, 4, xs);
    nnm_conv_args a = {sizeof a, 0, &p, &dx.d, &dw.d, NULL, &dy.d, NULL, NULL, NULL};
    tu_fake_host_reset(&h);
    setenv("NNM_CPU_WINOGRAD", "1", 1);
    CU_ASSERT_EQUAL(be->conv(&h.env, NULL, &a), NNM_OK);
    setenv("NNM_CPU_WINOGRAD", "0", 1);
    CU_ASSERT_EQUAL(be->conv(&h.env, NULL, &a), NNM_E_UNSUPPORTED);
    unsetenv("NNM_CPU_WINOGRAD");
    CU_ASSERT_EQUAL(h.n_errors, 0);
    /* malformed arguments are errors with a message, not declines */
    desc4 bad;
    const int64_t bsh[4] = {2, 8, 4, 4}; /* y of the wrong plane */
    desc_init(&bad, y, 4, bsh);
    nnm_conv_args ab = {sizeof ab, 0, &p, &dx.d, &dw.d, NULL, &bad.d, NULL, NULL, NULL};
    CU_ASSERT_EQUAL(be->conv(&h.env, NULL, &ab), NNM_E_SHAPE);
    CU_ASSERT_EQUAL(h.n_errors, 1);
    CU_ASSERT_EQUAL(be->conv(&h.env, NULL, NULL), NNM_E_INVALID);
    dlclose(dl);
}

static int suite_init(void) {
    nnm_ctx_options o = {sizeof o, NNM_CTX_NO_DISCOVERY, 0};
    if (nnm_ctx_new(&o, &g_ctx) != NNM_OK) return 1;
    if (nnm_plugin_load(g_ctx, NNM_TEST_CPU_PLUGIN) != NNM_OK || nnm_plugin_load(g_ctx, NNM_TEST_OP_PROBE) != NNM_OK)
        return 1;
    return 0;
}

static int suite_clean(void) {
    nnm_ctx_free(g_ctx);
    g_ctx = NULL;
    return 0;
}

int main(void) {
    CU_pSuite s = tu_suite("conv_winograd", suite_init, suite_clean);
    CU_add_test(s, "Winograd F(2x2,3x3) forced on many geometries: y, grads vs direct double conv, finite differences",
                test_geometries);
    CU_add_test(s, "default thresholds: same answers either way", test_default_thresholds);
    CU_add_test(s, "two threads (nnm_ctx_set_num_threads): the same answers", test_threads);
    CU_add_test(s, "max_pool2d, batch_norm2d, relu and conv2d on two threads: the same bits", test_pool_bn_threads);
    CU_add_test(s, "the slots decline other geometries silently; NNM_CPU_WINOGRAD=0 declines all", test_declines);
    CU_add_test(s, "inf and NaN in x, w or dY: what the direct sum gives (the slots decline them)", test_nonfinite);
    return tu_run();
}
