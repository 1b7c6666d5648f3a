/* tests/cuda/test_cuda_dnn.c - the cuda backend's cuDNN concern on a GPU:
 * conv, pool and batch norm slots of nnm_cuda.so driven directly (as
 * tests/cuda/test_cuda.c drives the elementwise ones) against references:
 *  - conv / conv_backward (cuDNN): forward with and without bias, backward
 *    data and filter (together and alone), over 1-, 2- and 3-d geometries with
 *    groups, depthwise, stride, padding and dilation, random inputs, compared
 *    with a float64 direct convolution computed here; declines (uneven
 *    padding) answer NNM_E_UNSUPPORTED;
 *  - pool / pool_backward (own kernels): max, avg (count_include_pad,
 *    divisor_override, ceil-mode outputs), adaptive avg, 1-3 d, dilation,
 *    inputs full of ties and a NaN, compared with the cpu backend's slots
 *    bit for bit (the kernels promise the cpu semantics exactly);
 *  - batch_norm / batch_norm_backward (cuDNN + own kernels): training (with
 *    and without running statistics, weight and bias), eval, an empty batch,
 *    l = 1, compared with the cpu backend's slots (y, saved statistics,
 *    running statistics, gradients);
 *  - cuDNN absent (NNM_CUDNN_LIBRARY naming nothing): conv and batch norm
 *    decline with a message naming cuDNN, pooling still works.
 * Without a device (or without the plugin) it prints
 *     test_cuda_dnn: SKIPPED: no CUDA device ...
 * and checks only what needs none: the slots are there and refuse a missing
 * state or args. scripts/gpu-check.sh runs it on a GPU.
 */
#include "test_util.h"

#include <dlfcn.h>

#ifndef NNM_TEST_PLUGIN_DIR
#error "NNM_TEST_PLUGIN_DIR must name the directory holding the plugins"
#endif
#ifndef NNM_TEST_HAVE_CUDA_PLUGIN
#define NNM_TEST_HAVE_CUDA_PLUGIN 0
#endif
#ifndef NNM_TEST_CUDA_HAVE_CUDNN
#define NNM_TEST_CUDA_HAVE_CUDNN 0
#endif

static const nnm_device CUDA0 = {NNM_DEVICE_CUDA, 0};
static const nnm_device CPU0 = {NNM_DEVICE_CPU, 0};

static tu_fake_host g_fake;
static uint32_t g_rng = 4242u;

typedef struct backend {
    void *dl;
    const nnm_backend_vtable *vt;
    void *state;
} backend;

static backend g_cpu, g_gpu;
static char g_skip[1024];

static int backend_open(backend *b, const char *file) {
    memset(b, 0, sizeof *b);
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", NNM_TEST_PLUGIN_DIR, file);
    const nnm_plugin_desc *d = tu_plugin_open(path, &b->dl);
    if (d == NULL || d->n_backends != 1 || d->backends == NULL || d->backends[0] == NULL)
        return 0;
    b->vt = d->backends[0];
    return 1;
}

static void backend_close(backend *b) {
    if (b->state != NULL && b->vt->shutdown != NULL)
        b->vt->shutdown(b->state);
    if (b->dl != NULL)
        dlclose(b->dl);
    memset(b, 0, sizeof *b);
}

/* ------------------------------------------------------------------------ */
/* Device memory and descriptors                                             */
/* ------------------------------------------------------------------------ */

static float *dev_alloc(size_t n) {
    void *p = NULL;
    tu_fake_host_reset(&g_fake);
    nnm_status st = g_gpu.vt->alloc(&g_fake.env, g_gpu.state, 0, (n ? n : 1) * sizeof(float), &p);
    if (st != NNM_OK)
        fprintf(stderr, "\n  cuda alloc: %s\n", g_fake.msg);
    CU_ASSERT_EQUAL(st, NNM_OK);
    return p;
}

static void dev_free(void *p) {
    if (p != NULL)
        g_gpu.vt->free(g_gpu.state, 0, p);
}

static float *dev_upload(const float *h, size_t n) {
    float *d = dev_alloc(n);
    if (d != NULL && n > 0)
        CU_ASSERT_EQUAL(g_gpu.vt->memcpy(&g_fake.env, g_gpu.state, d, CUDA0, h, CPU0,
                                         n * sizeof(float)),
                        NNM_OK);
    return d;
}

static void dev_download(float *h, const float *d, size_t n) {
    if (n > 0)
        CU_ASSERT_EQUAL(g_gpu.vt->memcpy(&g_fake.env, g_gpu.state, h, CPU0, d, CUDA0,
                                         n * sizeof(float)),
                        NNM_OK);
}

/* A contiguous f32 tensor: host copy, device copy, and a descriptor of each. */
typedef struct tens {
    int32_t ndim;
    int64_t shape[NNM_MAX_DIMS], strides[NNM_MAX_DIMS];
    size_t n;
    float *h;  /* host data (the cpu side's operand) */
    float *d;  /* device copy */
    nnm_tensor_desc hd, dd;
} tens;

static size_t numel_of(int32_t ndim, const int64_t *shape) {
    size_t n = 1;
    for (int32_t i = 0; i < ndim; i++)
        n *= (size_t)shape[i];
    return n;
}

/* A tensor of `shape` filled by `fill` (0 zeros, 1 random in [-1, 1), 2
 * small integers: many ties), uploaded. */
static void tens_make(tens *t, int32_t ndim, const int64_t *shape, int fill) {
    memset(t, 0, sizeof *t);
    t->ndim = ndim;
    int64_t st = 1;
    for (int32_t i = ndim - 1; i >= 0; i--) {
        t->shape[i] = shape[i];
        t->strides[i] = st;
        st *= shape[i];
    }
    t->n = numel_of(ndim, shape);
    t->h = calloc(t->n ? t->n : 1, sizeof(float));
    CU_ASSERT_PTR_NOT_NULL_FATAL(t->h);
    if (fill == 1)
        tu_fill_rand(&g_rng, t->h, t->n);
    for (size_t i = 0; fill == 2 && i < t->n; i++)
        t->h[i] = (float)((int)((tu_rand(&g_rng) + 1.0f) * 2.0f)); /* 0..3 */
    t->d = dev_upload(t->h, t->n);
    nnm_tensor_desc d;
    memset(&d, 0, sizeof d);
    d.ndim = ndim;
    d.dtype = NNM_F32;
    d.shape = t->shape;
    d.strides = t->strides;
    t->hd = d;
    t->hd.data = t->h;
    t->hd.device = CPU0;
    t->dd = d;
    t->dd.data = t->d;
    t->dd.device = CUDA0;
}

static void tens_free(tens *t) {
    free(t->h);
    dev_free(t->d);
    memset(t, 0, sizeof *t);
}

/* The device copy, downloaded into a new host buffer. */
static float *tens_fetch(const tens *t) {
    float *h = malloc((t->n ? t->n : 1) * sizeof(float));
    CU_ASSERT_PTR_NOT_NULL_FATAL(h);
    dev_download(h, t->d, t->n);
    return h;
}

/* Compares t's device copy with want[] (t->n values). */
static int tens_check(const char *what, const tens *t, const float *want, double rtol,
                      double atol) {
    float *got = tens_fetch(t);
    const int bad = tu_count_mismatch(what, got, want, (int64_t)t->n, rtol, atol,
                                      TU_MATCH_NONFINITE);
    free(got);
    return bad;
}

/* Exact comparison (NaN == NaN, -0 == +0 differs: bit patterns). */
static int tens_check_bits(const char *what, const tens *t, const float *want) {
    float *got = tens_fetch(t);
    int bad = 0;
    for (size_t i = 0; i < t->n; i++) {
        const int same = (got[i] != got[i] && want[i] != want[i]) ||
                         memcmp(&got[i], &want[i], sizeof(float)) == 0;
        if (!same) {
            if (bad < 4)
                fprintf(stderr, "\n  %s[%zu]: got %.9g want %.9g", what, i, (double)got[i],
                        (double)want[i]);
            bad++;
        }
    }
    if (bad)
        fprintf(stderr, "\n  %s: %d of %zu differ\n", what, bad, t->n);
    free(got);
    return bad;
}

/* ------------------------------------------------------------------------ */
/* No device: the slots exist and refuse cleanly                             */
/* ------------------------------------------------------------------------ */

static void test_slots_without_device(void) {
    backend b;
    CU_ASSERT_TRUE_FATAL(backend_open(&b, "nnm_cuda.so"));
    const nnm_backend_vtable *vt = b.vt;
    CU_ASSERT_PTR_NOT_NULL(vt->pool);
    CU_ASSERT_PTR_NOT_NULL(vt->pool_backward);
    if (NNM_TEST_CUDA_HAVE_CUDNN) {
        CU_ASSERT_PTR_NOT_NULL(vt->conv);
        CU_ASSERT_PTR_NOT_NULL(vt->conv_backward);
        CU_ASSERT_PTR_NOT_NULL(vt->batch_norm);
        CU_ASSERT_PTR_NOT_NULL(vt->batch_norm_backward);
    }
    tu_fake_host_reset(&g_fake);
    nnm_pool_args pa;
    memset(&pa, 0, sizeof pa);
    pa.struct_size = sizeof pa;
    CU_ASSERT_EQUAL(vt->pool(&g_fake.env, NULL, &pa), NNM_E_STATE);
    CU_ASSERT_EQUAL(vt->pool_backward(&g_fake.env, NULL, &pa), NNM_E_STATE);
    if (vt->conv != NULL) {
        nnm_conv_args ca;
        memset(&ca, 0, sizeof ca);
        ca.struct_size = sizeof ca;
        CU_ASSERT_EQUAL(vt->conv(&g_fake.env, NULL, &ca), NNM_E_STATE);
        CU_ASSERT_EQUAL(vt->conv_backward(&g_fake.env, NULL, &ca), NNM_E_STATE);
    }
    if (vt->batch_norm != NULL) {
        nnm_batch_norm_args ba;
        memset(&ba, 0, sizeof ba);
        ba.struct_size = sizeof ba;
        CU_ASSERT_EQUAL(vt->batch_norm(&g_fake.env, NULL, &ba), NNM_E_STATE);
        CU_ASSERT_EQUAL(vt->batch_norm_backward(&g_fake.env, NULL, &ba), NNM_E_STATE);
    }
    CU_ASSERT_TRUE(g_fake.n_errors >= 2);
    backend_close(&b);
}

/* ------------------------------------------------------------------------ */
/* Convolution against a float64 direct convolution                          */
/* ------------------------------------------------------------------------ */

typedef struct conv_geom {
    const char *name;
    int32_t ns;
    int64_t n, cin, cout;
    int32_t groups;
    int64_t in[3], k[3], stride[3], pad[3], dil[3];
    int bias;
} conv_geom;

static int64_t conv_out(const conv_geom *g, int i) {
    return (g->in[i] + 2 * g->pad[i] - g->dil[i] * (g->k[i] - 1) - 1) / g->stride[i] + 1;
}

/* Walks every (n, co, out pos, ci_g, k pos) term of the convolution,
 * calling TERM with the flat indices xi (into x), wi (into w), yi (into y);
 * padded positions are skipped. Dims past ns are 1. */
#define CONV_WALK(g, TERM)                                                                 \
    do {                                                                                   \
        int64_t I[3] = {1, 1, 1}, O[3] = {1, 1, 1}, K[3] = {1, 1, 1}, S[3] = {1, 1, 1},    \
                P[3] = {0, 0, 0}, D[3] = {1, 1, 1};                                        \
        for (int i_ = 0; i_ < (g)->ns; i_++) {                                             \
            I[i_] = (g)->in[i_];                                                           \
            O[i_] = conv_out((g), i_);                                                     \
            K[i_] = (g)->k[i_];                                                            \
            S[i_] = (g)->stride[i_];                                                       \
            P[i_] = (g)->pad[i_];                                                          \
            D[i_] = (g)->dil[i_];                                                          \
        }                                                                                  \
        const int64_t cig = (g)->cin / (g)->groups, cog = (g)->cout / (g)->groups;         \
        for (int64_t b_ = 0; b_ < (g)->n; b_++)                                            \
            for (int64_t co = 0; co < (g)->cout; co++)                                     \
                for (int64_t o0 = 0; o0 < O[0]; o0++)                                      \
                    for (int64_t o1 = 0; o1 < O[1]; o1++)                                  \
                        for (int64_t o2 = 0; o2 < O[2]; o2++) {                            \
                            const int64_t yi =                                             \
                                (((b_ * (g)->cout + co) * O[0] + o0) * O[1] + o1) * O[2] + \
                                o2;                                                        \
                            const int64_t gi = co / cog;                                   \
                            for (int64_t c_ = 0; c_ < cig; c_++)                           \
                                for (int64_t k0 = 0; k0 < K[0]; k0++)                      \
                                    for (int64_t k1 = 0; k1 < K[1]; k1++)                  \
                                        for (int64_t k2 = 0; k2 < K[2]; k2++) {            \
                                            const int64_t p0 = o0 * S[0] - P[0] + k0 * D[0], \
                                                          p1 = o1 * S[1] - P[1] + k1 * D[1], \
                                                          p2 = o2 * S[2] - P[2] + k2 * D[2]; \
                                            if (p0 < 0 || p0 >= I[0] || p1 < 0 ||          \
                                                p1 >= I[1] || p2 < 0 || p2 >= I[2])        \
                                                continue;                                  \
                                            const int64_t ci = gi * cig + c_;              \
                                            const int64_t xi =                             \
                                                (((b_ * (g)->cin + ci) * I[0] + p0) * I[1] + \
                                                 p1) * I[2] + p2;                          \
                                            const int64_t wi =                             \
                                                (((co * cig + c_) * K[0] + k0) * K[1] +    \
                                                 k1) * K[2] + k2;                          \
                                            TERM;                                          \
                                        }                                                  \
                        }                                                                  \
    } while (0)

static float *to_float(const double *v, size_t n) {
    float *f = malloc((n ? n : 1) * sizeof(float));
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    for (size_t i = 0; i < n; i++)
        f[i] = (float)v[i];
    return f;
}

/* Largest |v| (the scale of the comparison's absolute tolerance). */
static double max_abs(const double *v, size_t n) {
    double m = 0.0;
    for (size_t i = 0; i < n; i++)
        m = fabs(v[i]) > m ? fabs(v[i]) : m;
    return m;
}

static nnm_status call_conv(int backward, const nnm_conv_params *p, tens *x, tens *w, tens *b,
                            tens *y, tens *gx, tens *gw) {
    nnm_conv_args a;
    memset(&a, 0, sizeof a);
    a.struct_size = sizeof a;
    a.params = p;
    a.x = &x->dd;
    a.w = &w->dd;
    if (backward) {
        a.grad_out = &y->dd;
        a.grad_x = gx ? &gx->dd : NULL;
        a.grad_w = gw ? &gw->dd : NULL;
    } else {
        a.b = b ? &b->dd : NULL;
        a.y = &y->dd;
    }
    tu_fake_host_reset(&g_fake);
    nnm_status st = backward ? g_gpu.vt->conv_backward(&g_fake.env, g_gpu.state, &a)
                             : g_gpu.vt->conv(&g_fake.env, g_gpu.state, &a);
    if (st != NNM_OK)
        fprintf(stderr, "\n  cuda %s: %s: %s\n", backward ? "conv_backward" : "conv",
                nnm_status_name(st), g_fake.msg);
    return st;
}

static void run_conv(const conv_geom *g) {
    nnm_conv_params p;
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    p.n_spatial = g->ns;
    p.groups = g->groups;
    int64_t xs[5] = {g->n, g->cin}, ws[5] = {g->cout, g->cin / g->groups}, ys[5] = {g->n, g->cout};
    for (int i = 0; i < g->ns; i++) {
        p.stride[i] = g->stride[i];
        p.padding[i] = p.padding_end[i] = g->pad[i];
        p.dilation[i] = g->dil[i];
        xs[2 + i] = g->in[i];
        ws[2 + i] = g->k[i];
        ys[2 + i] = conv_out(g, i);
    }
    const int32_t nd = g->ns + 2;
    tens x, w, b, y, gy, gx, gw;
    tens_make(&x, nd, xs, 1);
    tens_make(&w, nd, ws, 1);
    tens_make(&b, 1, &g->cout, 1);
    tens_make(&y, nd, ys, 1); /* garbage first: the slot writes every element */
    tens_make(&gy, nd, ys, 1);
    tens_make(&gx, nd, xs, 1);
    tens_make(&gw, nd, ws, 1);
    double *ry = calloc(y.n, sizeof(double)), *rgx = calloc(x.n, sizeof(double)),
           *rgw = calloc(w.n, sizeof(double));
    CU_ASSERT_PTR_NOT_NULL_FATAL(ry);
    CU_ASSERT_PTR_NOT_NULL_FATAL(rgx);
    CU_ASSERT_PTR_NOT_NULL_FATAL(rgw);
    CONV_WALK(g, {
        ry[yi] += (double)x.h[xi] * (double)w.h[wi];
        rgx[xi] += (double)gy.h[yi] * (double)w.h[wi];
        rgw[wi] += (double)gy.h[yi] * (double)x.h[xi];
    });
    if (g->bias)
        for (size_t i = 0; i < y.n; i++)
            ry[i] += (double)b.h[(i / numel_of(g->ns, ys + 2)) % (size_t)g->cout];
    char label[160];
    /* f32 sums of up to cin_g * prod(k) terms of |.| < 1: a few ulps of the scale */
    const double rtol = 1e-4;
    if (call_conv(0, &p, &x, &w, g->bias ? &b : NULL, &y, NULL, NULL) == NNM_OK) {
        float *want = to_float(ry, y.n);
        snprintf(label, sizeof label, "%s: y", g->name);
        CU_ASSERT_EQUAL(tens_check(label, &y, want, rtol, 1e-5 * (1.0 + max_abs(ry, y.n))), 0);
        free(want);
    } else {
        CU_FAIL("conv");
    }
    /* both gradients, then each alone (each written in full over garbage) */
    for (int which = 0; which < 3; which++) {
        tens_free(&gx);
        tens_free(&gw);
        tens_make(&gx, nd, xs, 1);
        tens_make(&gw, nd, ws, 1);
        if (call_conv(1, &p, &x, &w, NULL, &gy, which != 2 ? &gx : NULL,
                      which != 1 ? &gw : NULL) != NNM_OK) {
            CU_FAIL("conv_backward");
            continue;
        }
        if (which != 2) {
            float *want = to_float(rgx, x.n);
            snprintf(label, sizeof label, "%s: grad_x (%d)", g->name, which);
            CU_ASSERT_EQUAL(tens_check(label, &gx, want, rtol, 1e-5 * (1.0 + max_abs(rgx, x.n))),
                            0);
            free(want);
        }
        if (which != 1) {
            float *want = to_float(rgw, w.n);
            snprintf(label, sizeof label, "%s: grad_w (%d)", g->name, which);
            CU_ASSERT_EQUAL(tens_check(label, &gw, want, rtol, 1e-5 * (1.0 + max_abs(rgw, w.n))),
                            0);
            free(want);
        }
    }
    free(ry);
    free(rgx);
    free(rgw);
    tens_free(&x);
    tens_free(&w);
    tens_free(&b);
    tens_free(&y);
    tens_free(&gy);
    tens_free(&gx);
    tens_free(&gw);
}

static const conv_geom conv_cases[] = {
    {"2d 3x3 pad 1", 2, 2, 3, 4, 1, {7, 9}, {3, 3}, {1, 1}, {1, 1}, {1, 1}, 1},
    {"2d stride 2, no bias", 2, 3, 4, 6, 1, {11, 10}, {3, 3}, {2, 2}, {1, 1}, {1, 1}, 0},
    {"2d groups 2, dilation 2", 2, 2, 4, 6, 2, {9, 9}, {3, 3}, {1, 1}, {2, 2}, {2, 2}, 1},
    {"2d depthwise stride 2", 2, 2, 8, 8, 8, {10, 10}, {3, 3}, {2, 2}, {1, 1}, {1, 1}, 1},
    {"2d 1x1", 2, 4, 16, 8, 1, {6, 6}, {1, 1}, {1, 1}, {0, 0}, {1, 1}, 1},
    {"2d 7x7 stride 2 pad 3 (resnet stem)", 2, 2, 3, 8, 1, {32, 32}, {7, 7}, {2, 2}, {3, 3}, {1, 1}, 0},
    {"2d asymmetric kernel, strides, dilations", 2, 2, 6, 4, 2, {12, 9}, {3, 2}, {2, 1}, {2, 0}, {1, 3}, 1},
    {"1d", 1, 3, 4, 5, 1, {17}, {3}, {1}, {1}, {1}, 1},
    {"1d groups 2, stride 2, dilation 2", 1, 2, 4, 6, 2, {20}, {3}, {2}, {2}, {2}, 1},
    {"3d", 3, 2, 2, 3, 1, {5, 6, 7}, {3, 3, 3}, {1, 1, 1}, {1, 1, 1}, {1, 1, 1}, 1},
    {"3d groups, stride, dilation", 3, 1, 4, 4, 2, {6, 7, 8}, {2, 3, 2}, {2, 1, 2}, {0, 1, 1}, {1, 2, 1}, 0},
};

static void test_conv(void) {
    for (size_t i = 0; i < sizeof conv_cases / sizeof conv_cases[0]; i++)
        run_conv(&conv_cases[i]);
    /* again: the algorithms now come from the cache, the results must not change */
    run_conv(&conv_cases[0]);
    run_conv(&conv_cases[2]);
}

static void test_conv_declines(void) {
    /* uneven padding ("same" with an even kernel): NNM_E_UNSUPPORTED, the runtime's im2col path */
    nnm_conv_params p;
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    p.n_spatial = 2;
    p.groups = 1;
    p.stride[0] = p.stride[1] = p.dilation[0] = p.dilation[1] = 1;
    p.padding_end[0] = p.padding_end[1] = 1;
    tens x, w, y;
    tens_make(&x, 4, (int64_t[]){1, 2, 5, 5}, 1);
    tens_make(&w, 4, (int64_t[]){3, 2, 2, 2}, 1);
    tens_make(&y, 4, (int64_t[]){1, 3, 5, 5}, 0);
    nnm_conv_args a;
    memset(&a, 0, sizeof a);
    a.struct_size = sizeof a;
    a.params = &p;
    a.x = &x.dd;
    a.w = &w.dd;
    a.y = &y.dd;
    CU_ASSERT_EQUAL(g_gpu.vt->conv(&g_fake.env, g_gpu.state, &a), NNM_E_UNSUPPORTED);
    /* a malformed call is an error, not a decline */
    y.shape[3] = 4;
    CU_ASSERT_EQUAL(g_gpu.vt->conv(&g_fake.env, g_gpu.state, &a), NNM_E_SHAPE);
    /* a host tensor is refused */
    y.shape[3] = 5;
    p.padding[0] = p.padding[1] = 1;
    p.padding_end[0] = p.padding_end[1] = 1;
    y.shape[2] = y.shape[3] = 6;
    a.x = &x.hd;
    CU_ASSERT_EQUAL(g_gpu.vt->conv(&g_fake.env, g_gpu.state, &a), NNM_E_DEVICE);
    tens_free(&x);
    tens_free(&w);
    tens_free(&y);
}

/* ------------------------------------------------------------------------ */
/* Pooling against the cpu backend, bit for bit                              */
/* ------------------------------------------------------------------------ */

typedef struct pool_case {
    const char *name;
    int32_t op, ns, ndim;
    int64_t xs[5], os[5];
    int64_t k[3], s[3], p[3], d[3];
    int32_t count_include_pad;
    int64_t divisor_override;
} pool_case;

static const pool_case pool_cases[] = {
    {"max 2x2/2", NNM_POOL_MAX, 2, 4, {2, 3, 8, 8}, {2, 3, 4, 4}, {2, 2}, {2, 2}, {0, 0}, {1, 1}, 0, 0},
    {"max 3x3/2 pad 1", NNM_POOL_MAX, 2, 4, {2, 3, 9, 9}, {2, 3, 5, 5}, {3, 3}, {2, 2}, {1, 1}, {1, 1}, 0, 0},
    {"max 3x3/2 ceil mode", NNM_POOL_MAX, 2, 4, {1, 2, 8, 8}, {1, 2, 4, 4}, {3, 3}, {2, 2}, {0, 0}, {1, 1}, 0, 0},
    {"max dilation 2, overlapping", NNM_POOL_MAX, 2, 4, {1, 2, 10, 9}, {1, 2, 10, 4}, {2, 3}, {1, 2}, {1, 1}, {2, 2}, 0, 0},
    {"max 1d", NNM_POOL_MAX, 1, 3, {2, 3, 15}, {2, 3, 8}, {3}, {2}, {1}, {1}, 0, 0},
    {"max 3d", NNM_POOL_MAX, 3, 5, {1, 2, 5, 6, 7}, {1, 2, 2, 3, 4}, {2, 2, 3}, {2, 2, 2}, {0, 0, 1}, {1, 1, 1}, 0, 0},
    {"avg 3x3/1 pad 1 include pad", NNM_POOL_AVG, 2, 4, {2, 2, 7, 7}, {2, 2, 7, 7}, {3, 3}, {1, 1}, {1, 1}, {1, 1}, 1, 0},
    {"avg 3x3/2 pad 1 exclude pad", NNM_POOL_AVG, 2, 4, {2, 2, 7, 7}, {2, 2, 4, 4}, {3, 3}, {2, 2}, {1, 1}, {1, 1}, 0, 0},
    {"avg ceil mode include pad", NNM_POOL_AVG, 2, 4, {1, 2, 8, 8}, {1, 2, 5, 5}, {3, 3}, {2, 2}, {1, 1}, {1, 1}, 1, 0},
    {"avg divisor_override", NNM_POOL_AVG, 2, 4, {1, 3, 6, 6}, {1, 3, 3, 3}, {2, 2}, {2, 2}, {0, 0}, {1, 1}, 0, 3},
    {"avg 1d", NNM_POOL_AVG, 1, 3, {2, 2, 11}, {2, 2, 6}, {2}, {2}, {1}, {1}, 0, 0},
    {"avg 3d", NNM_POOL_AVG, 3, 5, {1, 2, 4, 5, 6}, {1, 2, 2, 2, 3}, {2, 2, 2}, {2, 2, 2}, {0, 0, 0}, {1, 1, 1}, 0, 0},
    {"adaptive 7x7 -> 3x2", NNM_POOL_ADAPTIVE_AVG, 2, 4, {2, 3, 7, 7}, {2, 3, 3, 2}, {1, 1}, {1, 1}, {0, 0}, {1, 1}, 0, 0},
    {"adaptive 3 -> 5 (overlapping)", NNM_POOL_ADAPTIVE_AVG, 1, 3, {2, 2, 3}, {2, 2, 5}, {1}, {1}, {0}, {1}, 0, 0},
    {"adaptive global 3d", NNM_POOL_ADAPTIVE_AVG, 3, 5, {2, 2, 3, 4, 5}, {2, 2, 1, 1, 1}, {1, 1, 1}, {1, 1, 1}, {0, 0, 0}, {1, 1, 1}, 0, 0},
};

static void run_pool(const pool_case *c, int fill) {
    tens x, out, gout, gx;
    tens_make(&x, c->ndim, c->xs, fill);
    if (fill == 2 && x.n > 5) { /* a NaN: propagates in max, poisons its windows' avg */
        x.h[x.n / 2] = NAN;
        dev_free(x.d);
        x.d = dev_upload(x.h, x.n);
        x.dd.data = x.d;
    }
    tens_make(&out, c->ndim, c->os, 1);
    tens_make(&gout, c->ndim, c->os, 1);
    tens_make(&gx, c->ndim, c->xs, 1);
    nnm_pool_args a;
    memset(&a, 0, sizeof a);
    a.struct_size = sizeof a;
    a.op = c->op;
    a.n_spatial = c->ns;
    a.count_include_pad = c->count_include_pad;
    a.divisor_override = c->divisor_override;
    for (int i = 0; i < c->ns; i++) {
        a.kernel[i] = c->k[i];
        a.stride[i] = c->s[i];
        a.padding[i] = c->p[i];
        a.dilation[i] = c->d[i];
    }
    /* cpu: out and grad_x into host buffers */
    float *want_out = malloc(out.n * sizeof(float)), *want_gx = malloc(gx.n * sizeof(float));
    CU_ASSERT_PTR_NOT_NULL_FATAL(want_out);
    CU_ASSERT_PTR_NOT_NULL_FATAL(want_gx);
    nnm_tensor_desc ho = out.hd, hgx = gx.hd;
    ho.data = want_out;
    hgx.data = want_gx;
    a.x = &x.hd;
    a.out = &ho;
    tu_fake_host_reset(&g_fake);
    CU_ASSERT_EQUAL_FATAL(g_cpu.vt->pool(&g_fake.env, g_cpu.state, &a), NNM_OK);
    a.out = NULL;
    a.grad_out = &gout.hd;
    a.grad_x = &hgx;
    CU_ASSERT_EQUAL_FATAL(g_cpu.vt->pool_backward(&g_fake.env, g_cpu.state, &a), NNM_OK);
    /* cuda */
    char label[160];
    a.x = &x.dd;
    a.out = &out.dd;
    a.grad_out = NULL;
    a.grad_x = NULL;
    tu_fake_host_reset(&g_fake);
    nnm_status st = g_gpu.vt->pool(&g_fake.env, g_gpu.state, &a);
    if (st != NNM_OK)
        fprintf(stderr, "\n  cuda pool %s: %s\n", c->name, g_fake.msg);
    CU_ASSERT_EQUAL(st, NNM_OK);
    snprintf(label, sizeof label, "pool %s (fill %d): out", c->name, fill);
    CU_ASSERT_EQUAL(tens_check_bits(label, &out, want_out), 0);
    a.out = NULL;
    a.grad_out = &gout.dd;
    a.grad_x = &gx.dd;
    st = g_gpu.vt->pool_backward(&g_fake.env, g_gpu.state, &a);
    if (st != NNM_OK)
        fprintf(stderr, "\n  cuda pool_backward %s: %s\n", c->name, g_fake.msg);
    CU_ASSERT_EQUAL(st, NNM_OK);
    snprintf(label, sizeof label, "pool %s (fill %d): grad_x", c->name, fill);
    CU_ASSERT_EQUAL(tens_check_bits(label, &gx, want_gx), 0);
    free(want_out);
    free(want_gx);
    tens_free(&x);
    tens_free(&out);
    tens_free(&gout);
    tens_free(&gx);
}

static void test_pool(void) {
    for (size_t i = 0; i < sizeof pool_cases / sizeof pool_cases[0]; i++) {
        run_pool(&pool_cases[i], 1); /* random */
        run_pool(&pool_cases[i], 2); /* ties everywhere and a NaN */
    }
}

/* ------------------------------------------------------------------------ */
/* Batch norm against the cpu backend                                        */
/* ------------------------------------------------------------------------ */

typedef struct bn_case {
    const char *name;
    int64_t n, c, l;
    int training, affine, running;
    double momentum, eps;
} bn_case;

static const bn_case bn_cases[] = {
    {"train 2d", 4, 3, 25, 1, 1, 1, 0.1, 1e-5},
    {"train no affine", 3, 5, 16, 1, 0, 1, 0.3, 1e-3},
    {"train no running stats", 8, 2, 9, 1, 1, 0, 0.1, 1e-5},
    {"train 1d (l = 1)", 16, 6, 1, 1, 1, 1, 0.1, 1e-5},
    {"train cumulative momentum 1", 2, 4, 30, 1, 1, 1, 1.0, 1e-5},
    {"eval", 4, 3, 25, 0, 1, 1, 0.1, 1e-5},
    {"eval no affine", 5, 2, 7, 0, 0, 1, 0.1, 1e-5},
    {"train empty batch", 0, 3, 25, 1, 1, 1, 0.1, 1e-5},
    {"eval empty batch", 0, 3, 25, 0, 1, 1, 0.1, 1e-5},
};

static void run_bn(const bn_case *c) {
    const int64_t xs[3] = {c->n, c->c, c->l};
    tens x, w, b, rm, rv, sm, si, y, gy, gx, gw, gb;
    tens_make(&x, 3, xs, 1);
    for (size_t i = 0; i < x.n; i++) /* a mean far from 0: the variance must not cancel */
        x.h[i] = 3.0f + 2.0f * x.h[i];
    dev_free(x.d);
    x.d = dev_upload(x.h, x.n);
    x.dd.data = x.d;
    tens_make(&w, 1, &c->c, 1);
    tens_make(&b, 1, &c->c, 1);
    tens_make(&rm, 1, &c->c, 1);
    tens_make(&rv, 1, &c->c, 1);
    for (size_t i = 0; i < rv.n; i++)
        rv.h[i] = 0.5f + fabsf(rv.h[i]);
    dev_free(rv.d);
    rv.d = dev_upload(rv.h, rv.n);
    rv.dd.data = rv.d;
    tens_make(&sm, 1, &c->c, 1);
    tens_make(&si, 1, &c->c, 1);
    tens_make(&y, 3, xs, 1);
    tens_make(&gy, 3, xs, 1);
    tens_make(&gx, 3, xs, 1);
    tens_make(&gw, 1, &c->c, 1);
    tens_make(&gb, 1, &c->c, 1);
    /* the cpu side writes host copies of what the gpu writes */
    float *h_rm = malloc(rm.n * sizeof(float)), *h_rv = malloc(rv.n * sizeof(float));
    float *h_sm = malloc(sm.n * sizeof(float)), *h_si = malloc(si.n * sizeof(float));
    float *h_y = malloc((y.n ? y.n : 1) * sizeof(float)), *h_gx = malloc((gx.n ? gx.n : 1) * sizeof(float));
    float *h_gw = malloc(gw.n * sizeof(float)), *h_gb = malloc(gb.n * sizeof(float));
    CU_ASSERT_FATAL(h_rm && h_rv && h_sm && h_si && h_y && h_gx && h_gw && h_gb);
    memcpy(h_rm, rm.h, rm.n * sizeof(float));
    memcpy(h_rv, rv.h, rv.n * sizeof(float));
    nnm_tensor_desc d_rm = rm.hd, d_rv = rv.hd, d_sm = sm.hd, d_si = si.hd, d_y = y.hd,
                    d_gx = gx.hd, d_gw = gw.hd, d_gb = gb.hd;
    d_rm.data = h_rm;
    d_rv.data = h_rv;
    d_sm.data = h_sm;
    d_si.data = h_si;
    d_y.data = h_y;
    d_gx.data = h_gx;
    d_gw.data = h_gw;
    d_gb.data = h_gb;
    nnm_batch_norm_args a;
    memset(&a, 0, sizeof a);
    a.struct_size = sizeof a;
    a.training = c->training;
    a.momentum = c->momentum;
    a.eps = c->eps;
    a.n = c->n;
    a.c = c->c;
    a.l = c->l;
    /* cpu */
    a.x = &x.hd;
    a.weight = c->affine ? &w.hd : NULL;
    a.bias = c->affine ? &b.hd : NULL;
    a.running_mean = c->running ? &d_rm : NULL;
    a.running_var = c->running ? &d_rv : NULL;
    a.save_mean = &d_sm;
    a.save_invstd = &d_si;
    a.y = &d_y;
    tu_fake_host_reset(&g_fake);
    CU_ASSERT_EQUAL_FATAL(g_cpu.vt->batch_norm(&g_fake.env, g_cpu.state, &a), NNM_OK);
    nnm_batch_norm_args ab = a;
    ab.bias = ab.running_mean = ab.running_var = ab.y = NULL;
    ab.momentum = ab.eps = 0.0; /* as the runtime's backward passes them */
    ab.grad_out = &gy.hd;
    ab.grad_x = &d_gx;
    ab.grad_weight = c->affine ? &d_gw : NULL;
    ab.grad_bias = c->affine ? &d_gb : NULL;
    CU_ASSERT_EQUAL_FATAL(g_cpu.vt->batch_norm_backward(&g_fake.env, g_cpu.state, &ab), NNM_OK);
    /* cuda */
    a.x = &x.dd;
    a.weight = c->affine ? &w.dd : NULL;
    a.bias = c->affine ? &b.dd : NULL;
    a.running_mean = c->running ? &rm.dd : NULL;
    a.running_var = c->running ? &rv.dd : NULL;
    a.save_mean = &sm.dd;
    a.save_invstd = &si.dd;
    a.y = &y.dd;
    tu_fake_host_reset(&g_fake);
    nnm_status st = g_gpu.vt->batch_norm(&g_fake.env, g_gpu.state, &a);
    if (st != NNM_OK)
        fprintf(stderr, "\n  cuda batch_norm %s: %s: %s\n", c->name, nnm_status_name(st), g_fake.msg);
    CU_ASSERT_EQUAL(st, NNM_OK);
    char label[160];
    const double rtol = 1e-4, atol = 1e-5;
#define BN_CHECK(T, WANT, WHAT)                                                           \
    do {                                                                                  \
        snprintf(label, sizeof label, "batch_norm %s: %s", c->name, WHAT);                \
        CU_ASSERT_EQUAL(tens_check(label, &(T), (WANT), rtol, atol), 0);                  \
    } while (0)
    BN_CHECK(y, h_y, "y");
    BN_CHECK(sm, h_sm, "save_mean");
    BN_CHECK(si, h_si, "save_invstd");
    if (c->running) {
        BN_CHECK(rm, h_rm, "running_mean");
        BN_CHECK(rv, h_rv, "running_var");
    }
    ab = a;
    ab.bias = ab.running_mean = ab.running_var = ab.y = NULL;
    ab.momentum = ab.eps = 0.0;
    ab.grad_out = &gy.dd;
    ab.grad_x = &gx.dd;
    ab.grad_weight = c->affine ? &gw.dd : NULL;
    ab.grad_bias = c->affine ? &gb.dd : NULL;
    tu_fake_host_reset(&g_fake);
    st = g_gpu.vt->batch_norm_backward(&g_fake.env, g_gpu.state, &ab);
    if (st != NNM_OK)
        fprintf(stderr, "\n  cuda batch_norm_backward %s: %s: %s\n", c->name, nnm_status_name(st),
                g_fake.msg);
    CU_ASSERT_EQUAL(st, NNM_OK);
    BN_CHECK(gx, h_gx, "grad_x");
    if (c->affine) {
        BN_CHECK(gw, h_gw, "grad_weight");
        BN_CHECK(gb, h_gb, "grad_bias");
    }
    /* the parameter gradients alone (no grad_x): the reduction kernel */
    if (c->affine) {
        tens_free(&gw);
        tens_free(&gb);
        tens_make(&gw, 1, &c->c, 1);
        tens_make(&gb, 1, &c->c, 1);
        ab.grad_x = NULL;
        ab.grad_weight = &gw.dd;
        ab.grad_bias = &gb.dd;
        CU_ASSERT_EQUAL(g_gpu.vt->batch_norm_backward(&g_fake.env, g_gpu.state, &ab), NNM_OK);
        BN_CHECK(gw, h_gw, "grad_weight alone");
        BN_CHECK(gb, h_gb, "grad_bias alone");
    }
#undef BN_CHECK
    free(h_rm);
    free(h_rv);
    free(h_sm);
    free(h_si);
    free(h_y);
    free(h_gx);
    free(h_gw);
    free(h_gb);
    tens *all[] = {&x, &w, &b, &rm, &rv, &sm, &si, &y, &gy, &gx, &gw, &gb};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        tens_free(all[i]);
}

static void test_batch_norm(void) {
    for (size_t i = 0; i < sizeof bn_cases / sizeof bn_cases[0]; i++)
        run_bn(&bn_cases[i]);
}

/* ------------------------------------------------------------------------ */
/* cuDNN absent                                                              */
/* ------------------------------------------------------------------------ */

static void test_without_cudnn(void) {
    /* a second state of the backend that looks for cuDNN where there is none */
    const char *old = getenv("NNM_CUDNN_LIBRARY");
    char *saved = old ? strdup(old) : NULL;
    setenv("NNM_CUDNN_LIBRARY", "/nonexistent/libcudnn.so.9", 1);
    void *st2 = NULL;
    tu_fake_host_reset(&g_fake);
    CU_ASSERT_EQUAL_FATAL(g_gpu.vt->init(&g_fake.env, &st2), NNM_OK);
    void *keep = g_gpu.state;
    g_gpu.state = st2; /* dev_* use this state */
    tens x, w, y;
    tens_make(&x, 4, (int64_t[]){1, 2, 5, 5}, 1);
    tens_make(&w, 4, (int64_t[]){3, 2, 3, 3}, 1);
    tens_make(&y, 4, (int64_t[]){1, 3, 3, 3}, 0);
    nnm_conv_params p;
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    p.n_spatial = 2;
    p.groups = 1;
    p.stride[0] = p.stride[1] = p.dilation[0] = p.dilation[1] = 1;
    nnm_conv_args a;
    memset(&a, 0, sizeof a);
    a.struct_size = sizeof a;
    a.params = &p;
    a.x = &x.dd;
    a.w = &w.dd;
    a.y = &y.dd;
    tu_fake_host_reset(&g_fake);
    CU_ASSERT_EQUAL(g_gpu.vt->conv(&g_fake.env, st2, &a), NNM_E_UNSUPPORTED);
    CU_ASSERT_PTR_NOT_NULL(strstr(g_fake.msg, "cuDNN is not available"));
    CU_ASSERT_PTR_NOT_NULL(strstr(g_fake.msg, "/nonexistent/libcudnn.so.9"));
    /* asked again: the same answer, no new search */
    CU_ASSERT_EQUAL(g_gpu.vt->conv(&g_fake.env, st2, &a), NNM_E_UNSUPPORTED);
    /* batch norm declines too; pooling needs no cuDNN */
    tens sm, si, by;
    const int64_t c3 = 3;
    tens_make(&sm, 1, &c3, 0);
    tens_make(&si, 1, &c3, 0);
    tens_make(&by, 3, (int64_t[]){2, 3, 4}, 0);
    tens bx;
    tens_make(&bx, 3, (int64_t[]){2, 3, 4}, 1);
    nnm_batch_norm_args ba;
    memset(&ba, 0, sizeof ba);
    ba.struct_size = sizeof ba;
    ba.training = 1;
    ba.momentum = 0.1;
    ba.eps = 1e-5;
    ba.n = 2;
    ba.c = 3;
    ba.l = 4;
    ba.x = &bx.dd;
    ba.save_mean = &sm.dd;
    ba.save_invstd = &si.dd;
    ba.y = &by.dd;
    tu_fake_host_reset(&g_fake);
    CU_ASSERT_EQUAL(g_gpu.vt->batch_norm(&g_fake.env, st2, &ba), NNM_E_UNSUPPORTED);
    CU_ASSERT_PTR_NOT_NULL(strstr(g_fake.msg, "cuDNN"));
    nnm_pool_args pa;
    memset(&pa, 0, sizeof pa);
    pa.struct_size = sizeof pa;
    pa.op = NNM_POOL_MAX;
    pa.n_spatial = 2;
    pa.kernel[0] = pa.kernel[1] = pa.stride[0] = pa.stride[1] = 2;
    pa.dilation[0] = pa.dilation[1] = 1;
    tens px, po;
    tens_make(&px, 4, (int64_t[]){1, 2, 4, 4}, 1);
    tens_make(&po, 4, (int64_t[]){1, 2, 2, 2}, 0);
    pa.x = &px.dd;
    pa.out = &po.dd;
    CU_ASSERT_EQUAL(g_gpu.vt->pool(&g_fake.env, st2, &pa), NNM_OK);
    tens *all[] = {&x, &w, &y, &sm, &si, &by, &bx, &px, &po};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        tens_free(all[i]);
    g_gpu.state = keep;
    g_gpu.vt->shutdown(st2);
    if (saved != NULL) {
        setenv("NNM_CUDNN_LIBRARY", saved, 1);
        free(saved);
    } else {
        unsetenv("NNM_CUDNN_LIBRARY");
    }
}


/* ------------------------------------------------------------------------ */
/* End to end: layers on cuda vs the same layers on cpu (public API)         */
/* ------------------------------------------------------------------------ */

/* One layer: its request and config (ints; -1 ends), the input shape. */
typedef struct e2e_case {
    const char *name, *request;
    struct {
        const char *key;
        int64_t v[3];
        int n; /* 0: an int (v[0]); else a tuple of n */
    } cfg[8];
    int32_t ndim;
    int64_t xs[5];
    int train;
} e2e_case;

static const e2e_case e2e_cases[] = {
    {"conv2d groups 2, stride 2, dilation 2, padding 2", "conv2d@^1",
     {{"in_channels", {4}, 0}, {"out_channels", {6}, 0}, {"kernel_size", {3}, 0},
      {"stride", {2}, 0}, {"padding", {2}, 0}, {"dilation", {2}, 0}, {"groups", {2}, 0}, {NULL, {0}, 0}},
     4, {2, 4, 11, 9}, 1},
    {"conv2d padding same (uneven: the runtime's im2col path)", "conv2d@^1",
     {{"in_channels", {3}, 0}, {"out_channels", {4}, 0}, {"kernel_size", {2, 4}, 2}, {NULL, {0}, 0}},
     4, {2, 3, 7, 8}, 1},
    {"conv1d", "conv1d@^1",
     {{"in_channels", {3}, 0}, {"out_channels", {5}, 0}, {"kernel_size", {5}, 0}, {"padding", {2}, 0}, {NULL, {0}, 0}},
     3, {4, 3, 20}, 1},
    {"conv3d stride (1, 2, 2)", "conv3d@^1",
     {{"in_channels", {2}, 0}, {"out_channels", {3}, 0}, {"kernel_size", {3}, 0},
      {"stride", {1, 2, 2}, 3}, {"padding", {1}, 0}, {NULL, {0}, 0}},
     5, {2, 2, 5, 8, 8}, 1},
    {"batch_norm2d training", "batch_norm2d@^1", {{"num_features", {3}, 0}, {NULL, {0}, 0}},
     4, {4, 3, 6, 5}, 1},
    {"batch_norm2d eval", "batch_norm2d@^1", {{"num_features", {3}, 0}, {NULL, {0}, 0}},
     4, {4, 3, 6, 5}, 0},
    {"max_pool2d 3/2 pad 1 ceil", "max_pool2d@^1",
     {{"kernel_size", {3}, 0}, {"stride", {2}, 0}, {"padding", {1}, 0}, {"ceil_mode", {1}, 0}, {NULL, {0}, 0}},
     4, {2, 3, 10, 10}, 1},
    {"avg_pool2d 3/2 pad 1 exclude pad", "avg_pool2d@^1",
     {{"kernel_size", {3}, 0}, {"stride", {2}, 0}, {"padding", {1}, 0}, {"count_include_pad", {0}, 0}, {NULL, {0}, 0}},
     4, {2, 3, 9, 9}, 1},
    {"adaptive_avg_pool2d 5x3", "adaptive_avg_pool2d@^1", {{"output_size", {5, 3}, 2}, {NULL, {0}, 0}},
     4, {2, 3, 9, 7}, 1},
};

static nnm_ctx *g_ctx;
#define TU_CTX g_ctx

static nnm_module *e2e_module(const e2e_case *c) {
    nnm_config *cfg = NULL;
    if (nnm_config_new(&cfg) != NNM_OK)
        return NULL;
    for (int i = 0; c->cfg[i].key != NULL; i++) {
        if (c->cfg[i].n == 0 && strcmp(c->cfg[i].key, "ceil_mode") != 0 &&
            strcmp(c->cfg[i].key, "count_include_pad") != 0)
            nnm_config_set_int(cfg, c->cfg[i].key, c->cfg[i].v[0]);
        else if (c->cfg[i].n == 0)
            nnm_config_set_bool(cfg, c->cfg[i].key, (int)c->cfg[i].v[0]);
        else
            nnm_config_set_ints(cfg, c->cfg[i].key, c->cfg[i].v, (size_t)c->cfg[i].n);
    }
    if (strcmp(c->name, "conv2d padding same (uneven: the runtime's im2col path)") == 0)
        nnm_config_set_str(cfg, "padding", "same");
    nnm_module *m = tu_module(g_ctx, c->request, cfg);
    nnm_config_free(cfg);
    return m;
}

/* Every f32 parameter and buffer of `from` copied into `to` (both on the CPU). */
static void e2e_copy_state(nnm_module *from, nnm_module *to) {
    for (int pass = 0; pass < 2; pass++) {
        tu_named a, b;
        memset(&a, 0, sizeof a);
        memset(&b, 0, sizeof b);
        if (pass == 0) {
            a = tu_params_of(from);
            b = tu_params_of(to);
        } else {
            CU_ASSERT_EQUAL(nnm_module_named_buffers(from, tu_named_add, &a), NNM_OK);
            CU_ASSERT_EQUAL(nnm_module_named_buffers(to, tu_named_add, &b), NNM_OK);
        }
        CU_ASSERT_EQUAL_FATAL(a.n, b.n);
        for (int i = 0; i < a.n && i < TU_MAX_NAMED; i++) {
            const nnm_tensor_desc *d = nnm_tensor_desc_get(a.t[i]);
            if (d->dtype.code != NNM_DTYPE_FLOAT)
                continue;
            int64_t n = 0;
            float *v = tu_read_f32(a.t[i], &n);
            CU_ASSERT_PTR_NOT_NULL_FATAL(v);
            CU_ASSERT_TRUE(tu_write_f32(b.t[i], v, (size_t)n));
            free(v);
        }
    }
}

/* A new tensor on `dev` holding data (through the opened backend for cuda). */
static nnm_tensor *e2e_tensor(nnm_device dev, int32_t ndim, const int64_t *shape,
                              const float *data) {
    nnm_tensor *t = NULL;
    CHECK_STATUS(nnm_tensor_new(g_ctx, dev, NNM_F32, ndim, shape, &t), NNM_OK);
    if (t == NULL)
        return NULL;
    const nnm_tensor_desc *d = nnm_tensor_desc_get(t);
    const size_t n = numel_of(ndim, shape);
    if (dev.type == NNM_DEVICE_CPU) {
        CU_ASSERT_TRUE(tu_write_f32(t, data, n));
    } else if (n > 0) {
        CU_ASSERT_EQUAL(g_gpu.vt->memcpy(&g_fake.env, g_gpu.state, (char *)d->data + d->byte_offset,
                                         CUDA0, data, CPU0, n * sizeof(float)),
                        NNM_OK);
    }
    return t;
}

static void e2e_compare(const char *what, nnm_tensor *got, nnm_tensor *want) {
    CU_ASSERT_PTR_NOT_NULL_FATAL(got);
    CU_ASSERT_PTR_NOT_NULL_FATAL(want);
    const int64_t n = nnm_tensor_numel(want);
    CU_ASSERT_EQUAL_FATAL(nnm_tensor_numel(got), n);
    float *a = malloc((size_t)(n ? n : 1) * sizeof(float)), *b = malloc((size_t)(n ? n : 1) * sizeof(float));
    CU_ASSERT_FATAL(a != NULL && b != NULL);
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(got, a, (size_t)n), NNM_OK);
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(want, b, (size_t)n), NNM_OK);
    double scale = 1.0;
    for (int64_t i = 0; i < n; i++)
        scale = fmax(scale, fabs((double)b[i]));
    CU_ASSERT_EQUAL(tu_count_mismatch(what, a, b, n, 1e-4, 1e-5 * scale, TU_MATCH_NONFINITE), 0);
    free(a);
    free(b);
}

static void run_e2e(const e2e_case *c) {
    nnm_module *ma = e2e_module(c), *mb = e2e_module(c);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ma);
    CU_ASSERT_PTR_NOT_NULL_FATAL(mb);
    e2e_copy_state(ma, mb);
    CHECK_STATUS(nnm_module_train(ma, c->train), NNM_OK);
    CHECK_STATUS(nnm_module_train(mb, c->train), NNM_OK);
    CHECK_STATUS(nnm_module_to(mb, CUDA0), NNM_OK);
    const size_t nx = numel_of(c->ndim, c->xs);
    float *xv = malloc(nx * sizeof(float));
    CU_ASSERT_PTR_NOT_NULL_FATAL(xv);
    tu_fill_rand(&g_rng, xv, nx);
    nnm_tensor *xa = e2e_tensor(CPU0, c->ndim, c->xs, xv), *xb = e2e_tensor(CUDA0, c->ndim, c->xs, xv);
    CU_ASSERT_FATAL(xa != NULL && xb != NULL);
    CHECK_STATUS(nnm_tensor_set_requires_grad(xa, 1), NNM_OK);
    CHECK_STATUS(nnm_tensor_set_requires_grad(xb, 1), NNM_OK);
    nnm_tensor *ya = NULL, *yb = NULL;
    CHECK_STATUS(tu_call1(ma, xa, &ya), NNM_OK);
    nnm_status st = tu_call1(mb, xb, &yb);
    if (st != NNM_OK)
        fprintf(stderr, "\n  %s on cuda: %s: %s\n", c->name, nnm_status_name(st), nnm_ctx_errmsg(g_ctx));
    CU_ASSERT_EQUAL(st, NNM_OK);
    char label[160];
    if (ya != NULL && yb != NULL) {
        snprintf(label, sizeof label, "%s: y", c->name);
        e2e_compare(label, yb, ya);
        const nnm_tensor_desc *yd = nnm_tensor_desc_get(ya);
        const size_t ny = numel_of(yd->ndim, yd->shape);
        float *gv = malloc((ny ? ny : 1) * sizeof(float));
        CU_ASSERT_PTR_NOT_NULL_FATAL(gv);
        tu_fill_rand(&g_rng, gv, ny);
        nnm_tensor *ga = e2e_tensor(CPU0, yd->ndim, yd->shape, gv);
        nnm_tensor *gb = e2e_tensor(CUDA0, yd->ndim, yd->shape, gv);
        CHECK_STATUS(nnm_backward(ya, ga, 0), NNM_OK);
        st = nnm_backward(yb, gb, 0);
        if (st != NNM_OK)
            fprintf(stderr, "\n  %s backward on cuda: %s: %s\n", c->name, nnm_status_name(st),
                    nnm_ctx_errmsg(g_ctx));
        CU_ASSERT_EQUAL(st, NNM_OK);
        snprintf(label, sizeof label, "%s: grad x", c->name);
        e2e_compare(label, nnm_tensor_grad(xb), nnm_tensor_grad(xa));
        tu_named pa = tu_params_of(ma), pb = tu_params_of(mb);
        for (int i = 0; i < pa.n && i < pb.n && i < TU_MAX_NAMED; i++) {
            snprintf(label, sizeof label, "%s: grad %s", c->name, pa.names[i]);
            e2e_compare(label, nnm_tensor_grad(pb.t[i]), nnm_tensor_grad(pa.t[i]));
        }
        tu_named ba, bb;
        memset(&ba, 0, sizeof ba);
        memset(&bb, 0, sizeof bb);
        CU_ASSERT_EQUAL(nnm_module_named_buffers(ma, tu_named_add, &ba), NNM_OK);
        CU_ASSERT_EQUAL(nnm_module_named_buffers(mb, tu_named_add, &bb), NNM_OK);
        for (int i = 0; i < ba.n && i < bb.n && i < TU_MAX_NAMED; i++) {
            if (nnm_tensor_desc_get(ba.t[i])->dtype.code != NNM_DTYPE_FLOAT)
                continue;
            snprintf(label, sizeof label, "%s: buffer %s", c->name, ba.names[i]);
            e2e_compare(label, bb.t[i], ba.t[i]);
        }
        nnm_tensor_release(ga);
        nnm_tensor_release(gb);
        free(gv);
    }
    nnm_tensor_release(ya);
    nnm_tensor_release(yb);
    nnm_tensor_release(xa);
    nnm_tensor_release(xb);
    free(xv);
    nnm_module_release(ma);
    nnm_module_release(mb);
}

static void test_e2e_layers(void) {
    if (nnm_ctx_new(NULL, &g_ctx) != NNM_OK) {
        CU_FAIL("nnm_ctx_new");
        return;
    }
    for (size_t i = 0; i < sizeof e2e_cases / sizeof e2e_cases[0]; i++)
        run_e2e(&e2e_cases[i]);
    tu_ctx_free(&g_ctx);
}

/* ------------------------------------------------------------------------ */

static void test_skip_message(void) {
    CU_ASSERT_PTR_NOT_NULL(strstr(g_skip, "CUDA"));
}

static int gpu_init(void) {
    return 0; /* opened in main */
}

int main(void) {
    tu_fake_host_init(&g_fake);
    int have_device = 0;
    if (!NNM_TEST_HAVE_CUDA_PLUGIN) {
        snprintf(g_skip, sizeof g_skip, "no CUDA device (the cuda plugin was not built)");
    } else if (backend_open(&g_gpu, "nnm_cuda.so")) {
        nnm_status st = g_gpu.vt->init(&g_fake.env, &g_gpu.state);
        if (st == NNM_OK)
            have_device = 1;
        else
            snprintf(g_skip, sizeof g_skip, "%s", g_fake.msg[0] ? g_fake.msg : "no CUDA device");
    } else {
        snprintf(g_skip, sizeof g_skip, "no CUDA device (nnm_cuda.so did not load)");
    }
    if (have_device && (!backend_open(&g_cpu, "nnm_cpu.so") ||
                        g_cpu.vt->init(&g_fake.env, &g_cpu.state) != NNM_OK)) {
        fprintf(stderr, "test_cuda_dnn: the cpu backend did not start\n");
        backend_close(&g_gpu);
        return 1;
    }
    if (!have_device) {
        /* "no CUDA device: ..." from init, or why there is no plugin */
        printf("test_cuda_dnn: SKIPPED: %s\n", g_skip);
        backend_close(&g_gpu);
    }
    CU_pSuite s = tu_suite("cuda dnn", NULL, NULL);
    if (s == NULL)
        return 1;
    if (NNM_TEST_HAVE_CUDA_PLUGIN)
        CU_add_test(s, "slots present, refuse a missing state", test_slots_without_device);
    if (have_device) {
        CU_pSuite g = tu_suite("cuda dnn on the device", gpu_init, NULL);
        if (g == NULL)
            return 1;
        CU_add_test(g, "pool and pool_backward vs cpu, bit for bit", test_pool);
        CU_add_test(g, "layers on cuda vs cpu: conv, batch norm, pooling, fwd and bwd",
                    test_e2e_layers);
        if (g_gpu.vt->conv != NULL) {
            CU_add_test(g, "conv and conv_backward vs float64 reference", test_conv);
            CU_add_test(g, "conv declines and errors", test_conv_declines);
            CU_add_test(g, "batch_norm and batch_norm_backward vs cpu", test_batch_norm);
            CU_add_test(g, "cuDNN absent: conv and batch norm decline, pool works",
                        test_without_cudnn);
        }
    }
    if (!have_device)
        CU_add_test(s, "no device: the skip names it", test_skip_message);
    const int rc = tu_run();
    backend_close(&g_gpu);
    backend_close(&g_cpu);
    return rc;
}
