/* tests/layers/test_conv_depthwise.c - the cpu backend's direct depthwise
 * convolution (plugins/cpu/conv_depthwise.inc behind the ABI 1.4 conv /
 * conv_backward slots: groups == C_in, C_out a multiple of it, 1-d and 2-d)
 * through the real call path (the op_probe fixture layer -> host op_conv ->
 * the backend's slot), against a direct grouped convolution computed here in
 * double: y and the gradients of sum(y * R) for x, w and b, on geometries
 * that cover stride, dilation, padding past the kernel, asymmetric "same"
 * padding, channel multipliers, 1-d, batch > 1 and large kernels, both
 * forward kernels (the phase planes and the row loops, NNM_CPU_DEPTHWISE=rows). Then the
 * slot driven directly declines what is not depthwise (groups 1, a grouped
 * conv with 2 channels a group, 3-d), with NNM_E_UNSUPPORTED and no message.
 *
 * Tolerance: a direct f32 sum of K terms is within ~K u S of the exact one
 * (S = sum of |terms|, u = 2^-24); K is at most 49 here (a 7x7 kernel), and
 * grad_w sums N * OH * OW terms in float rows added in double. 16 u S is
 * ample for the forward and grad_x; grad_w is allowed 64 u S. */
#include "test_util.h"

#include <dlfcn.h>
#include <float.h>

static nnm_ctx *g_ctx;
#define TU_CTX g_ctx

typedef struct geo {
    int ns;                       /* 1 or 2 spatial dims */
    int64_t n, c, mult, h, w;     /* h is 1 for ns 1 */
    int64_t kh, kw, sh, sw, ph, pw, eh, ew, dh, dw; /* eh/ew: padding at the end */
    int bias;
} geo;

static int64_t out_of(int64_t in, int64_t k, int64_t s, int64_t p, int64_t e, int64_t d) {
    return (in + p + e - d * (k - 1) - 1) / s + 1;
}

typedef struct refs {
    double *y, *sy, *gx, *sgx, *gw, *sgw, *gb, *sgb;
} refs;

static refs reference(const geo *g, int64_t oh, int64_t ow, const float *x, const float *w, const float *b,
                      const float *R) {
    const int64_t co = g->c * g->mult, kk = g->kh * g->kw;
    const int64_t ny = g->n * co * oh * ow, nx = g->n * g->c * g->h * g->w, nw = co * kk;
    refs r;
    r.y = calloc((size_t)ny, sizeof(double)), r.sy = calloc((size_t)ny, sizeof(double));
    r.gx = calloc((size_t)nx, sizeof(double)), r.sgx = calloc((size_t)nx, sizeof(double));
    r.gw = calloc((size_t)nw, sizeof(double)), r.sgw = calloc((size_t)nw, sizeof(double));
    r.gb = calloc((size_t)co, sizeof(double)), r.sgb = calloc((size_t)co, sizeof(double));
    for (int64_t n = 0; n < g->n; n++)
        for (int64_t o = 0; o < co; o++) {
            const int64_t ci = o / g->mult;
            for (int64_t oy = 0; oy < oh; oy++)
                for (int64_t ox = 0; ox < ow; ox++) {
                    const int64_t yi = ((n * co + o) * oh + oy) * ow + ox;
                    double s = b ? b[o] : 0.0, a = b ? fabs(b[o]) : 0.0;
                    const double rv = R[yi];
                    r.gb[o] += rv, r.sgb[o] += fabs(rv);
                    for (int64_t ky = 0; ky < g->kh; ky++)
                        for (int64_t kx = 0; kx < g->kw; kx++) {
                            const int64_t iy = oy * g->sh - g->ph + ky * g->dh, ix = ox * g->sw - g->pw + kx * g->dw;
                            if (iy < 0 || iy >= g->h || ix < 0 || ix >= g->w) continue;
                            const int64_t wi = o * kk + ky * g->kw + kx;
                            const int64_t xi = ((n * g->c + ci) * g->h + iy) * g->w + ix;
                            const double wv = w[wi], xv = x[xi];
                            s += wv * xv, a += fabs(wv * xv);
                            r.gw[wi] += rv * xv, r.sgw[wi] += fabs(rv * xv);
                            r.gx[xi] += wv * rv, r.sgx[xi] += fabs(wv * rv);
                        }
                    r.y[yi] = s, r.sy[yi] = a;
                }
        }
    return r;
}

static void refs_free(refs *r) {
    free(r->y), free(r->sy), free(r->gx), free(r->sgx), free(r->gw), free(r->sgw), free(r->gb), free(r->sgb);
}

static int check(const char *what, int ci, const float *got, const double *want, const double *scale, int64_t n,
                 double tol_u) {
    int bad = 0;
    for (int64_t i = 0; i < n; i++) {
        const double err = fabs(got[i] - want[i]), unit = FLT_EPSILON / 2 * scale[i];
        if (!(err <= tol_u * unit + 1e-30)) {
            if (bad < 3)
                fprintf(stderr, "\n  case %d %s[%lld]: got %.9g want %.9g (scale %.3g)", ci, what, (long long)i,
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
    nnm_config_set_int(cfg, "ns", g->ns);
    nnm_config_set_int(cfg, "groups", g->c);
    const int two = g->ns == 2;
    const int64_t pad[2] = {two ? g->ph : g->pw, g->pw}, pe[2] = {two ? g->eh : g->ew, g->ew};
    const int64_t st[2] = {two ? g->sh : g->sw, g->sw}, di[2] = {two ? g->dh : g->dw, g->dw};
    nnm_config_set_ints(cfg, "padding", pad, (size_t)g->ns);
    nnm_config_set_ints(cfg, "padding_end", pe, (size_t)g->ns);
    nnm_config_set_ints(cfg, "stride", st, (size_t)g->ns);
    nnm_config_set_ints(cfg, "dilation", di, (size_t)g->ns);
    nnm_module *m = tu_module(g_ctx, "op_probe", cfg);
    nnm_config_free(cfg);
    return m;
}

static void run_case(int ci, const geo *g) {
    const int two = g->ns == 2;
    const int64_t oh = two ? out_of(g->h, g->kh, g->sh, g->ph, g->eh, g->dh) : 1;
    const int64_t ow = out_of(g->w, g->kw, g->sw, g->pw, g->ew, g->dw);
    const int64_t co = g->c * g->mult, kk = g->kh * g->kw;
    const int64_t nx = g->n * g->c * g->h * g->w, nw = co * kk, ny = g->n * co * oh * ow;
    int64_t xs[4] = {g->n, g->c, g->h, g->w}, ws[4] = {co, 1, g->kh, g->kw}, ys[4] = {g->n, co, oh, ow};
    if (!two) xs[2] = g->w, ws[2] = g->kw, ys[2] = ow;
    const int64_t bs[1] = {co};
    float *x = malloc((size_t)nx * sizeof *x), *w = malloc((size_t)nw * sizeof *w);
    float *b = malloc((size_t)co * sizeof *b), *R = malloc((size_t)ny * sizeof *R);
    tu_fill_uniform(x, (size_t)nx, 11u + (uint32_t)ci, -1.0, 1.0);
    tu_fill_uniform(w, (size_t)nw, 23u + (uint32_t)ci, -0.5, 0.5);
    tu_fill_uniform(b, (size_t)co, 37u + (uint32_t)ci, -0.5, 0.5);
    tu_fill_uniform(R, (size_t)ny, 41u + (uint32_t)ci, -1.0, 1.0);
    nnm_module *m = conv_probe(g);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    const int32_t nd = g->ns + 2;
    nnm_tensor *in[3] = {tu_tf32(g_ctx, nd, xs, x), tu_tf32(g_ctx, nd, ws, w), g->bias ? tu_tf32(g_ctx, 1, bs, b) : NULL};
    const int n_in = g->bias ? 3 : 2;
    for (int i = 0; i < n_in; i++) CU_ASSERT_EQUAL(nnm_tensor_set_requires_grad(in[i], 1), NNM_OK);
    nnm_tensor *y = NULL, *gr = tu_tf32(g_ctx, nd, ys, R);
    CHECK_STATUS(nnm_module_call(m, in, (uint32_t)n_in, &y, 1), NNM_OK);
    CU_ASSERT_FATAL(y != NULL && tu_shape_is(y, nd, ys));
    CHECK_STATUS(nnm_backward(y, gr, 0), NNM_OK);
    refs r = reference(g, oh, ow, x, w, g->bias ? b : NULL, R);
    int bad = check("y", ci, tu_cpu_data(y), r.y, r.sy, ny, 16.0);
    nnm_tensor *gx = nnm_tensor_grad(in[0]), *gw = nnm_tensor_grad(in[1]), *gb = g->bias ? nnm_tensor_grad(in[2]) : NULL;
    CU_ASSERT_FATAL(gx != NULL && gw != NULL && (!g->bias || gb != NULL));
    bad += check("grad_x", ci, tu_cpu_data(gx), r.gx, r.sgx, nx, 16.0);
    bad += check("grad_w", ci, tu_cpu_data(gw), r.gw, r.sgw, nw, 64.0);
    if (gb) bad += check("grad_b", ci, tu_cpu_data(gb), r.gb, r.sgb, co, 64.0);
    CU_ASSERT_EQUAL(bad, 0);
    refs_free(&r);
    nnm_tensor_release(y);
    nnm_tensor_release(gr);
    for (int i = 0; i < n_in; i++) nnm_tensor_release(in[i]);
    nnm_module_release(m);
    free(x), free(w), free(b), free(R);
}

static const geo k_geos[] = {
    /* ns n  c mult h   w  kh kw sh sw ph pw eh ew dh dw bias */
    {2, 1, 3, 1, 7, 9, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1},     /* MobileNet's stride-1 3x3 */
    {2, 2, 4, 1, 8, 9, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 0},     /* stride 2, odd width */
    {2, 1, 5, 1, 10, 10, 5, 5, 2, 2, 2, 2, 2, 2, 1, 1, 1},   /* EfficientNet's 5x5 stride 2 */
    {2, 2, 3, 1, 9, 11, 7, 7, 1, 1, 3, 3, 3, 3, 1, 1, 1},    /* ConvNeXt's 7x7 */
    {2, 1, 2, 3, 6, 7, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1},     /* channel multiplier 3 */
    {2, 2, 3, 2, 9, 8, 3, 3, 1, 2, 2, 2, 2, 2, 2, 2, 1},     /* dilation 2, mixed strides */
    {2, 1, 2, 1, 4, 5, 3, 3, 1, 1, 3, 3, 3, 1, 1, 1, 1},     /* padding past the kernel */
    {2, 1, 3, 1, 6, 7, 4, 4, 1, 1, 1, 1, 2, 2, 1, 1, 1},     /* even kernel, asymmetric "same" */
    {2, 1, 2, 1, 5, 5, 3, 2, 3, 1, 0, 0, 0, 0, 1, 1, 1},     /* stride 3 rows, kernel 3x2 */
    {2, 3, 16, 1, 2, 2, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1},    /* a 2x2 map at stride 2 -> 1x1 */
    {1, 2, 4, 1, 1, 13, 1, 5, 1, 1, 0, 2, 0, 2, 1, 1, 1},    /* 1-d, "same" */
    {1, 1, 3, 2, 1, 17, 1, 3, 1, 2, 0, 1, 0, 1, 1, 3, 0},    /* 1-d, stride 2, dilation 3, mult 2 */
    {2, 2, 5, 1, 7, 7, 5, 5, 1, 1, 2, 2, 2, 2, 1, 1, 1},     /* MnasNet's last stage: 5x5 on 7x7 */
    {2, 1, 3, 1, 15, 13, 5, 5, 2, 2, 2, 2, 2, 2, 1, 1, 1},   /* 5x5 stride 2, odd sizes */
    {2, 1, 2, 1, 12, 12, 3, 3, 2, 2, 0, 0, 1, 1, 1, 1, 1},   /* padding at the end only */
    {2, 1, 2, 1, 40, 37, 7, 7, 1, 1, 3, 3, 3, 3, 1, 1, 1},   /* a larger plane, 7x7 */
    {2, 1, 2, 2, 11, 9, 3, 3, 3, 2, 1, 1, 1, 1, 2, 3, 1},    /* strides 3x2, dilations 2x3, mult 2 */
    {2, 1, 2, 1, 9, 10, 3, 3, 2, 2, 1, 1, 0, 0, 1, 1, 1},    /* stride 2 leaving input rows unread */
};

/* Every geometry through the forward on padded phase planes (the default)
 * and through the row loops (NNM_CPU_DEPTHWISE=rows). */
static void test_geometries(void) {
    static const char *const modes[2] = {NULL, "rows"};
    for (int mo = 0; mo < 2; mo++) {
        if (modes[mo]) setenv("NNM_CPU_DEPTHWISE", modes[mo], 1);
        for (size_t i = 0; i < sizeof k_geos / sizeof k_geos[0]; i++) run_case((int)i, &k_geos[i]);
        unsetenv("NNM_CPU_DEPTHWISE");
    }
}

/* The slot alone: a grouped convolution that is not depthwise (two
 * channels a group), or a 3-d one, is declined without a message. */
static void test_declines(void) {
    tu_fake_host h;
    tu_fake_host_init(&h);
    void *dl = NULL;
    const nnm_plugin_desc *d = tu_plugin_open(NNM_TEST_CPU_PLUGIN, &dl);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    const nnm_backend_vtable *be = d->backends[0];
    CU_ASSERT_PTR_NOT_NULL_FATAL(be->conv);
    static float xb[2 * 4 * 5 * 5 * 5], wb[4 * 2 * 3 * 3 * 3], yb[2 * 4 * 5 * 5 * 5];
    const struct {
        const char *what;
        int32_t ns, groups;
        int64_t wc; /* w's input channels a group */
    } cases[] = {{"groups 2 of 4 channels", 2, 2, 2}, {"3-d depthwise", 3, 4, 1}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const int32_t nd = cases[i].ns + 2;
        int64_t xs[5] = {2, 4, 5, 5, 5}, ws[5] = {4, cases[i].wc, 3, 3, 3}, xst[5], wst[5];
        int64_t sx = 1, sw = 1;
        for (int j = nd - 1; j >= 0; j--) xst[j] = sx, sx *= xs[j], wst[j] = sw, sw *= ws[j];
        nnm_tensor_desc x = {xb, {NNM_DEVICE_CPU, 0}, nd, {NNM_DTYPE_FLOAT, 32, 1}, xs, xst, 0};
        nnm_tensor_desc w = {wb, {NNM_DEVICE_CPU, 0}, nd, {NNM_DTYPE_FLOAT, 32, 1}, ws, wst, 0};
        nnm_tensor_desc y = {yb, {NNM_DEVICE_CPU, 0}, nd, {NNM_DTYPE_FLOAT, 32, 1}, xs, xst, 0};
        nnm_conv_params p;
        memset(&p, 0, sizeof p);
        p.struct_size = sizeof p;
        p.n_spatial = cases[i].ns;
        p.groups = cases[i].groups;
        for (int j = 0; j < 3; j++) p.stride[j] = p.dilation[j] = p.padding[j] = p.padding_end[j] = 1;
        nnm_conv_args a = {sizeof a, 0, &p, &x, &w, NULL, &y, NULL, NULL, NULL};
        const int before = h.n_errors;
        nnm_status st = be->conv(&h.env, NULL, &a);
        if (st != NNM_E_UNSUPPORTED || h.n_errors != before)
            fprintf(stderr, "\n  %s: status %d, %d messages", cases[i].what, (int)st, h.n_errors - before);
        CU_ASSERT_EQUAL(st, NNM_E_UNSUPPORTED);
        CU_ASSERT_EQUAL(h.n_errors, before);
    }
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
    CU_pSuite s = tu_suite("conv_depthwise", suite_init, suite_clean);
    CU_add_test(s, "depthwise 1-d/2-d convolutions (stride, dilation, padding, multiplier, 7x7): y and grads vs "
                   "a direct double convolution",
                test_geometries);
    CU_add_test(s, "the slot declines grouped convolutions that are not depthwise", test_declines);
    return tu_run();
}
