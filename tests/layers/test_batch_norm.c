/* tests/layers/test_batch_norm.c - batch normalisation as the fused host op
 * (ABI 1.4 op_batch_norm, the cpu backend's batch_norm slots) and the
 * batch_norm1d/2d layers that use it:
 *   - the op (through the op_probe fixture) against a double-precision
 *     reference (output, running statistics with the unbiased variance) and
 *     its gradients against central finite differences, in training and eval
 *     mode, with and without affine parameters and running statistics, on
 *     [N, C], [N, C, L] and [N, C, H, W] inputs;
 *   - the layers on the cpu backend (fused) against the same layers on a
 *     backend without the batch_norm slots (composed from host ops: the
 *     fallback), over several training steps, then eval: outputs, gradients,
 *     running statistics, num_batches_tracked, momentum None;
 *   - bad arguments fail with a status and a message naming the problem. */
#include "test_util.h"

#include <dlfcn.h>

static nnm_ctx *g_ctx;
#define TU_CTX g_ctx

/* ------------------------------------------------------------------------ */
/* "cpunobn": the cpu backend's kernels on a second device (type CUDA, host  */
/* memory) without the batch_norm slots, so the layers compose batch norm.   */
/* ------------------------------------------------------------------------ */

static void *g_cpu_dl;
static const nnm_backend_vtable *g_cpu_vt;
static void *g_cpu_state;

static nnm_tensor_desc on_cpu(const nnm_tensor_desc *d) {
    nnm_tensor_desc c = *d;
    c.device.type = NNM_DEVICE_CPU;
    c.device.id = 0;
    return c;
}

static nnm_status nb_init(nnm_env *env, void **state) {
    *state = NULL;
    return g_cpu_vt->init(env, &g_cpu_state);
}
static void nb_shutdown(void *state) { (void)state; }
static nnm_status nb_alloc(nnm_env *env, void *state, int32_t id, size_t bytes, void **ptr) {
    (void)env, (void)state, (void)id;
    *ptr = aligned_alloc(64, bytes ? (bytes + 63) / 64 * 64 : 64);
    return *ptr ? NNM_OK : NNM_E_NOMEM;
}
static void nb_free(void *state, int32_t id, void *ptr) {
    (void)state, (void)id;
    free(ptr);
}
static nnm_status nb_memcpy(nnm_env *env, void *state, void *dst, nnm_device dd, const void *src, nnm_device sd,
                            size_t bytes) {
    (void)env, (void)state, (void)dd, (void)sd;
    if (bytes) memmove(dst, src, bytes);
    return NNM_OK;
}
static nnm_status nb_fill(nnm_env *env, void *state, const nnm_tensor_desc *out, double v) {
    (void)state;
    nnm_tensor_desc o = on_cpu(out);
    return g_cpu_vt->fill(env, g_cpu_state, &o, v);
}
static nnm_status nb_binary(nnm_env *env, void *state, const nnm_binary_args *a) {
    (void)state;
    nnm_tensor_desc x = on_cpu(a->a), y = on_cpu(a->b), o = on_cpu(a->out);
    nnm_binary_args b = *a;
    b.a = &x, b.b = &y, b.out = &o;
    return g_cpu_vt->binary(env, g_cpu_state, &b);
}
static nnm_status nb_unary(nnm_env *env, void *state, const nnm_unary_args *a) {
    (void)state;
    nnm_tensor_desc x = on_cpu(a->x), o = on_cpu(a->out);
    nnm_unary_args b = *a;
    b.x = &x, b.out = &o;
    return g_cpu_vt->unary(env, g_cpu_state, &b);
}
static nnm_status nb_reduce(nnm_env *env, void *state, const nnm_reduce_args *a) {
    (void)state;
    nnm_tensor_desc x = on_cpu(a->x), o = on_cpu(a->out);
    nnm_reduce_args b = *a;
    b.x = &x, b.out = &o;
    return g_cpu_vt->reduce(env, g_cpu_state, &b);
}

static const nnm_backend_vtable nobn_be = {
    .struct_size = sizeof(nnm_backend_vtable),
    .flags = NNM_BACKEND_OPS_1_3,
    .name = "cpunobn",
    .version_major = 1,
    .device_type = NNM_DEVICE_CUDA,
    .init = nb_init,
    .shutdown = nb_shutdown,
    .alloc = nb_alloc,
    .free = nb_free,
    .memcpy = nb_memcpy,
    .fill = nb_fill,
    .binary = nb_binary,
    .unary = nb_unary,
    .reduce = nb_reduce,
};
static const nnm_backend_vtable *const nobn_backends[] = {&nobn_be};
static const nnm_plugin_desc nobn_desc = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
    .name = "cpunobn",
    .n_backends = 1,
    .backends = nobn_backends,
};

static const nnm_device g_nobn = {NNM_DEVICE_CUDA, 0};

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */
/* ------------------------------------------------------------------------ */

/* The op_probe module running op_batch_norm (bn_flags: 1 running stats, 2
 * weight, 4 bias). */
static nnm_module *bn_probe(int flags, int training, double momentum, double eps) {
    nnm_config *cfg = NULL;
    nnm_config_new(&cfg);
    nnm_config_set_str(cfg, "op", "batch_norm");
    nnm_config_set_int(cfg, "bn_flags", flags);
    nnm_config_set_int(cfg, "training", training);
    nnm_config_set_float(cfg, "momentum", momentum);
    nnm_config_set_float(cfg, "eps", eps);
    nnm_module *m = tu_module(g_ctx, "op_probe", cfg);
    nnm_config_free(cfg);
    return m;
}

/* A CPU tensor of `shape` from p (NULL: nothing, returns NULL). */
static nnm_tensor *mk(int32_t nd, const int64_t *shape, const float *p) {
    return p ? tu_tf32(g_ctx, nd, shape, p) : NULL;
}

/* The case: x [n, c, l...] as shape, values, statistics and affine. */
typedef struct bcase {
    int32_t nd;
    int64_t shape[4];
    int64_t n, c, l;
    float *x, *rm, *rv, *w, *b, *g;
} bcase;

static void bcase_init(bcase *k, int32_t nd, const int64_t *shape, uint32_t seed) {
    memset(k, 0, sizeof *k);
    k->nd = nd;
    memcpy(k->shape, shape, (size_t)nd * sizeof shape[0]);
    k->n = shape[0];
    k->c = shape[1];
    k->l = 1;
    for (int32_t i = 2; i < nd; i++) k->l *= shape[i];
    const int64_t nx = k->n * k->c * k->l;
    k->x = malloc((size_t)nx * sizeof(float));
    k->g = malloc((size_t)nx * sizeof(float));
    k->rm = malloc((size_t)k->c * sizeof(float));
    k->rv = malloc((size_t)k->c * sizeof(float));
    k->w = malloc((size_t)k->c * sizeof(float));
    k->b = malloc((size_t)k->c * sizeof(float));
    tu_fill_uniform(k->x, (size_t)nx, seed, -2.0, 2.0);
    for (int64_t i = 0; i < nx; i++) k->x[i] += 3.0f; /* a mean well away from 0 */
    tu_fill_uniform(k->g, (size_t)nx, seed + 1, -1.0, 1.0);
    tu_fill_uniform(k->rm, (size_t)k->c, seed + 2, 2.0, 4.0);
    tu_fill_uniform(k->rv, (size_t)k->c, seed + 3, 0.5, 2.0);
    tu_fill_uniform(k->w, (size_t)k->c, seed + 4, 0.5, 1.5);
    tu_fill_uniform(k->b, (size_t)k->c, seed + 5, -1.0, 1.0);
}

static void bcase_free(bcase *k) {
    free(k->x), free(k->g), free(k->rm), free(k->rv), free(k->w), free(k->b);
}

/* F.batch_norm in double: y, and the running statistics afterwards (rm, rv
 * updated in place when given). */
static void ref_bn(const bcase *k, const float *x, int flags, int training, double mom, double eps, double *y,
                   double *rm, double *rv) {
    const int64_t n = k->n, C = k->c, l = k->l, cnt = n * l;
    for (int64_t c = 0; c < C; c++) {
        double mean, var;
        if (training || !(flags & 1)) {
            double s = 0, ss = 0;
            for (int64_t i = 0; i < n; i++)
                for (int64_t j = 0; j < l; j++) s += x[(i * C + c) * l + j];
            mean = s / (double)cnt;
            for (int64_t i = 0; i < n; i++)
                for (int64_t j = 0; j < l; j++) {
                    double d = x[(i * C + c) * l + j] - mean;
                    ss += d * d;
                }
            var = ss / (double)cnt;
            if (training && (flags & 1)) {
                rm[c] = (1 - mom) * rm[c] + mom * mean;
                rv[c] = (1 - mom) * rv[c] + mom * var * (double)cnt / (double)(cnt - 1);
            }
        } else {
            mean = rm[c];
            var = rv[c];
        }
        const double inv = 1.0 / sqrt(var + eps), w = (flags & 2) ? k->w[c] : 1.0, b = (flags & 4) ? k->b[c] : 0.0;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < l; j++) {
                const int64_t at = (i * C + c) * l + j;
                y[at] = (x[at] - mean) * inv * w + b;
            }
    }
}

/* Calls the probe on x (and the case's tensors per flags); with grad on x,
 * w, b when grad. Returns y (NULL on failure); the running stats tensors in
 * *rmt, *rvt and weight/bias in *wt, *bt (when made; release them). */
static nnm_tensor *call_probe(nnm_module *m, const bcase *k, const float *x, const float *w, const float *b,
                              int flags, int grad, nnm_tensor **xt, nnm_tensor **rmt, nnm_tensor **rvt,
                              nnm_tensor **wt, nnm_tensor **bt) {
    const int64_t cs[1] = {k->c};
    nnm_tensor *in[5];
    uint32_t ni = 0;
    *xt = mk(k->nd, k->shape, x);
    *rmt = *rvt = *wt = *bt = NULL;
    in[ni++] = *xt;
    if (flags & 1) in[ni++] = *rmt = mk(1, cs, k->rm), in[ni++] = *rvt = mk(1, cs, k->rv);
    if (flags & 2) in[ni++] = *wt = mk(1, cs, w);
    if (flags & 4) in[ni++] = *bt = mk(1, cs, b);
    if (grad) {
        nnm_tensor_set_requires_grad(*xt, 1);
        if (*wt) nnm_tensor_set_requires_grad(*wt, 1);
        if (*bt) nnm_tensor_set_requires_grad(*bt, 1);
    }
    nnm_tensor *y = NULL;
    nnm_status st = nnm_module_call(m, in, ni, &y, 1);
    if (st != NNM_OK) fprintf(stderr, "\n  batch_norm probe: %s: %s\n", nnm_status_name(st), nnm_ctx_errmsg(g_ctx));
    CU_ASSERT_EQUAL(st, NNM_OK);
    return y;
}

static void release5(nnm_tensor *a, nnm_tensor *b, nnm_tensor *c, nnm_tensor *d, nnm_tensor *e) {
    nnm_tensor_release(a), nnm_tensor_release(b), nnm_tensor_release(c), nnm_tensor_release(d);
    nnm_tensor_release(e);
}

/* sum(y * g) in double for the op on (x, w, b); NAN on failure. */
static double objective(nnm_module *m, const bcase *k, const float *x, const float *w, const float *b, int flags) {
    nnm_tensor *xt, *rmt, *rvt, *wt, *bt;
    nnm_tensor *y = call_probe(m, k, x, w, b, flags, 0, &xt, &rmt, &rvt, &wt, &bt);
    double s = NAN;
    int64_t n = 0;
    float *v = y ? tu_read_f32(y, &n) : NULL;
    if (v) {
        s = 0;
        for (int64_t i = 0; i < n; i++) s += (double)v[i] * k->g[i];
    }
    free(v);
    release5(y, xt, rmt, rvt, wt);
    nnm_tensor_release(bt);
    return s;
}

/* Central differences of objective() for every element of p[0..n) (one of
 * x, w, b) against the analytical gradient got[n]. Returns mismatches. */
static int fd_check(const char *what, nnm_module *m, const bcase *k, float *x, float *w, float *b, int flags,
                    float *p, int64_t n, const float *got) {
    const double h = 1e-2;
    int bad = 0;
    for (int64_t i = 0; i < n; i++) {
        const float keep = p[i];
        p[i] = (float)(keep + h);
        double up = objective(m, k, x, w, b, flags);
        p[i] = (float)(keep - h);
        double dn = objective(m, k, x, w, b, flags);
        p[i] = keep;
        double fd = (up - dn) / (2 * h);
        if (!tu_near(got[i], fd, 2e-2, 3e-3)) {
            if (bad < 4) fprintf(stderr, "\n  %s[%lld]: autograd %.6g, finite differences %.6g", what, (long long)i,
                                 (double)got[i], fd);
            bad++;
        }
    }
    return bad;
}

/* ------------------------------------------------------------------------ */
/* The op against the reference and finite differences                      */
/* ------------------------------------------------------------------------ */

static void check_op(int32_t nd, const int64_t *shape, int flags, int training, uint32_t seed) {
    bcase k;
    bcase_init(&k, nd, shape, seed);
    const double mom = 0.3, eps = 1e-5;
    nnm_module *m = bn_probe(flags, training, mom, eps);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    const int64_t nx = k.n * k.c * k.l;
    nnm_tensor *xt, *rmt, *rvt, *wt, *bt;
    nnm_tensor *y = call_probe(m, &k, k.x, k.w, k.b, flags, 1, &xt, &rmt, &rvt, &wt, &bt);
    CU_ASSERT_PTR_NOT_NULL_FATAL(y);
    /* forward and running statistics against the reference */
    double *yr = malloc((size_t)nx * sizeof(double)), rm[64], rv[64];
    float *yw = malloc((size_t)nx * sizeof(float)), rmw[64], rvw[64];
    for (int64_t c = 0; c < k.c; c++) rm[c] = k.rm[c], rv[c] = k.rv[c];
    ref_bn(&k, k.x, flags, training, mom, eps, yr, rm, rv);
    for (int64_t i = 0; i < nx; i++) yw[i] = (float)yr[i];
    for (int64_t c = 0; c < k.c; c++) rmw[c] = (float)rm[c], rvw[c] = (float)rv[c];
    int64_t got_n = 0;
    float *yg = tu_read_f32(y, &got_n);
    CU_ASSERT_EQUAL(got_n, nx);
    CU_ASSERT_EQUAL(tu_count_mismatch("y", yg, yw, nx, 1e-4, 1e-5, 0), 0);
    if (flags & 1) {
        float *a = tu_read_f32(rmt, &got_n), *v = tu_read_f32(rvt, &got_n);
        CU_ASSERT_EQUAL(tu_count_mismatch("running_mean", a, rmw, k.c, 1e-5, 1e-6, 0), 0);
        CU_ASSERT_EQUAL(tu_count_mismatch("running_var", v, rvw, k.c, 1e-5, 1e-6, 0), 0);
        free(a), free(v);
    }
    free(yg), free(yr), free(yw);
    /* gradients of sum(y * g) */
    nnm_tensor *gt = tu_tf32(g_ctx, k.nd, k.shape, k.g);
    CHECK_STATUS(nnm_backward(y, gt, 0), NNM_OK);
    nnm_module *m2 = bn_probe(flags, training, 0.0, eps); /* momentum 0: finite differences leave stats alone */
    struct {
        const char *what;
        nnm_tensor *t;
        float *p;
        int64_t n;
    } wrt[3] = {{"grad x", xt, k.x, nx}, {"grad weight", wt, k.w, k.c}, {"grad bias", bt, k.b, k.c}};
    for (int i = 0; i < 3; i++) {
        if (!wrt[i].t) continue;
        nnm_tensor *gr = nnm_tensor_grad(wrt[i].t);
        CU_ASSERT_PTR_NOT_NULL(gr);
        if (!gr) continue;
        float *gv = tu_read_f32(gr, &got_n);
        CU_ASSERT_EQUAL(got_n, wrt[i].n);
        int bad = fd_check(wrt[i].what, m2, &k, k.x, k.w, k.b, flags, wrt[i].p, wrt[i].n, gv);
        if (bad)
            fprintf(stderr, "\n  (shape ndim %d, flags %d, training %d)\n", (int)nd, flags, training);
        CU_ASSERT_EQUAL(bad, 0);
        free(gv);
    }
    release5(y, xt, rmt, rvt, wt);
    nnm_tensor_release(bt);
    nnm_tensor_release(gt);
    nnm_module_release(m);
    nnm_module_release(m2);
    bcase_free(&k);
}

static void test_op_gradcheck(void) {
    LEAK_CHECK_BEGIN();
    static const int64_t s2[2] = {5, 3}, s3[3] = {3, 2, 5}, s4[4] = {2, 3, 2, 3};
    static const int flag_sets[] = {0, 1, 2, 4, 6, 7};
    uint32_t seed = 11;
    for (int training = 1; training >= 0; training--)
        for (size_t f = 0; f < sizeof flag_sets / sizeof flag_sets[0]; f++) {
            const int flags = flag_sets[f];
            if (!training && !(flags & 1)) continue; /* eval needs running stats */
            check_op(2, s2, flags, training, seed += 10);
            check_op(3, s3, flags, training, seed += 10);
            check_op(4, s4, flags, training, seed += 10);
        }
    LEAK_CHECK_END();
}

/* A non-contiguous input (a permuted view's copy is what the op reads) and
 * a large mean: the two-pass variance keeps its digits. */
static void test_op_large_mean(void) {
    LEAK_CHECK_BEGIN();
    const int64_t shape[3] = {4, 2, 300};
    bcase k;
    bcase_init(&k, 3, shape, 5);
    for (int64_t i = 0; i < k.n * k.c * k.l; i++) k.x[i] = 1e4f + (k.x[i] - 3.0f) * 0.5f;
    nnm_module *m = bn_probe(7, 1, 0.1, 1e-5);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    nnm_tensor *xt, *rmt, *rvt, *wt, *bt;
    nnm_tensor *y = call_probe(m, &k, k.x, k.w, k.b, 7, 0, &xt, &rmt, &rvt, &wt, &bt);
    const int64_t nx = k.n * k.c * k.l;
    double *yr = malloc((size_t)nx * sizeof(double)), rm[2] = {k.rm[0], k.rm[1]}, rv[2] = {k.rv[0], k.rv[1]};
    float *yw = malloc((size_t)nx * sizeof(float));
    ref_bn(&k, k.x, 7, 1, 0.1, 1e-5, yr, rm, rv);
    for (int64_t i = 0; i < nx; i++) yw[i] = (float)yr[i];
    int64_t n = 0;
    float *yg = y ? tu_read_f32(y, &n) : NULL;
    CU_ASSERT_PTR_NOT_NULL(yg);
    /* x holds its spread (std 0.6 around 1e4) to ~1e-3 */
    if (yg) CU_ASSERT_EQUAL(tu_count_mismatch("y", yg, yw, nx, 1e-4, 1e-4, 0), 0);
    float *v = tu_read_f32(rvt, &n);
    const float rvw[2] = {(float)rv[0], (float)rv[1]};
    CU_ASSERT_EQUAL(tu_count_mismatch("running_var", v, rvw, 2, 1e-4, 1e-7, 0), 0);
    free(v), free(yg), free(yr), free(yw);
    release5(y, xt, rmt, rvt, wt);
    nnm_tensor_release(bt);
    nnm_module_release(m);
    bcase_free(&k);
    LEAK_CHECK_END();
}

/* Issue 18: after one training step the running mean must be the float64
 * batch mean rounded once, as PyTorch's (which sums in double). Data like
 * resnet18's first conv output: a mean near 0 (1e-4) against a spread of
 * 0.3 over 112 x 112 rows, the channel's first value far from the mean. The
 * float lanes the kernel had summed up to a row's 784 values each (the
 * flush came only at row ends) around that first value, and the mean came
 * out 2e-5 off relative, 100 float ulps. */
static nnm_tensor *g_rm_buf, *g_rv_buf;
static nnm_status grab_stats(void *user, const char *name, nnm_tensor *t) {
    (void)user;
    if (!strcmp(name, "running_mean")) g_rm_buf = t;
    if (!strcmp(name, "running_var")) g_rv_buf = t;
    return NNM_OK;
}

static void test_layer_running_stats_digits(void) {
    LEAK_CHECK_BEGIN();
    enum { N = 4, C = 3, L = 112 * 112 };
    static float x[N * C * L];
    uint32_t seed = 77u;
    for (int64_t i = 0; i < N * C * L; i++) {
        const int c = (int)((i / L) % C);
        /* a sum of 4 uniforms: roughly normal, spread 0.3, mean (c - 1) * 1e-4 */
        const double u = (double)tu_rand(&seed) + tu_rand(&seed) + tu_rand(&seed) + tu_rand(&seed);
        x[i] = (float)((c - 1) * 1e-4 + 0.13 * u);
        if (i % L == 0) x[i] = 0.9f; /* the first value of each row: far from the mean */
    }
    double mean[C] = {0}, var[C] = {0};
    for (int64_t i = 0; i < N * C * L; i++) mean[(i / L) % C] += x[i];
    for (int c = 0; c < C; c++) mean[c] /= (double)N * L;
    for (int64_t i = 0; i < N * C * L; i++) {
        const double d = x[i] - mean[(i / L) % C];
        var[(i / L) % C] += d * d;
    }
    nnm_config *cfg = NULL;
    nnm_config_new(&cfg);
    nnm_config_set_int(cfg, "num_features", C);
    nnm_module *m = tu_module(g_ctx, "batch_norm2d", cfg);
    nnm_config_free(cfg);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    const int64_t shape[4] = {N, C, 112, 112};
    nnm_tensor *tx = tu_tf32(g_ctx, 4, shape, x), *y = NULL;
    CHECK_STATUS(tu_call1(m, tx, &y), NNM_OK);
    g_rm_buf = g_rv_buf = NULL;
    CHECK_STATUS(nnm_module_named_buffers(m, grab_stats, NULL), NNM_OK);
    float rm[C], rv[C];
    CU_ASSERT_EQUAL_FATAL(nnm_tensor_to_f32(g_rm_buf, rm, C), NNM_OK);
    CU_ASSERT_EQUAL_FATAL(nnm_tensor_to_f32(g_rv_buf, rv, C), NNM_OK);
    for (int c = 0; c < C; c++) {
        const double want_m = 0.1 * mean[c], want_v = 0.9 + 0.1 * var[c] / ((double)N * L - 1);
        /* rounded once: within half a float ulp (a little slack for the sum's own rounding) */
        const double ulp_m = fabs(want_m) * 0x1p-23, ulp_v = fabs(want_v) * 0x1p-23;
        CU_ASSERT_TRUE(fabs(rm[c] - want_m) <= 0.6 * ulp_m);
        CU_ASSERT_TRUE(fabs(rv[c] - want_v) <= 0.6 * ulp_v);
        if (fabs(rm[c] - want_m) > 0.6 * ulp_m || fabs(rv[c] - want_v) > 0.6 * ulp_v)
            fprintf(stderr, "\n  channel %d: running_mean %.9g want %.9g (%.2g ulp), running_var %.9g want %.9g\n", c,
                    (double)rm[c], want_m, fabs(rm[c] - want_m) / ulp_m, (double)rv[c], want_v);
    }
    nnm_tensor_release(y);
    nnm_tensor_release(tx);
    nnm_module_release(m);
    LEAK_CHECK_END();
}

/* Issue 18: num_batches_tracked is i64 as PyTorch's: a PyTorch count past
 * 2^24 loads, counts on exactly (f32 would stay at 2^24), saves as I64 and
 * loads back; a count nnmod saved as f32 before loads too. */
static void test_layer_num_batches_i64(void) {
    LEAK_CHECK_BEGIN();
    nnm_config *cfg = NULL;
    nnm_config_new(&cfg);
    nnm_config_set_int(cfg, "num_features", 2);
    nnm_module *m = tu_module(g_ctx, "batch_norm2d", cfg), *m2 = tu_module(g_ctx, "batch_norm2d", cfg);
    nnm_config_free(cfg);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m2);
    tu_named b;
    memset(&b, 0, sizeof b);
    CHECK_STATUS(nnm_module_named_buffers(m, tu_named_add, &b), NNM_OK);
    nnm_tensor *nbt = tu_named_get(&b, "num_batches_tracked");
    CU_ASSERT_PTR_NOT_NULL_FATAL(nbt);
    const nnm_tensor_desc *d = nnm_tensor_desc_get(nbt);
    CU_ASSERT(d->dtype.code == NNM_DTYPE_INT && d->dtype.bits == 64 && d->ndim == 0);
    /* PyTorch's count 2^24 + 5, loaded strictly */
    const int64_t big = ((int64_t)1 << 24) + 5;
    nnm_state_dict *sd = NULL;
    CHECK_STATUS(nnm_module_state_dict(m, &sd), NNM_OK);
    nnm_tensor *tb = tu_ti64(g_ctx, 0, NULL, &big);
    CHECK_STATUS(nnm_state_dict_set(sd, "num_batches_tracked", tb), NNM_OK);
    nnm_tensor_release(tb);
    CHECK_STATUS(nnm_module_load_state_dict(m, sd, 1, NULL), NNM_OK);
    nnm_state_dict_free(sd);
    CU_ASSERT_EQUAL(*(const int64_t *)tu_cpu_data(nbt), big);
    /* two training calls: + 2, exactly */
    float x[2 * 2 * 3];
    tu_fill_uniform(x, 12, 9u, -1.0, 1.0);
    const int64_t shape[4] = {2, 2, 3, 1};
    nnm_tensor *tx = tu_tf32(g_ctx, 4, shape, x), *y = NULL;
    for (int k = 0; k < 2; k++) {
        CHECK_STATUS(tu_call1(m, tx, &y), NNM_OK);
        nnm_tensor_release(y);
        y = NULL;
    }
    CU_ASSERT_EQUAL(*(const int64_t *)tu_cpu_data(nbt), big + 2);
    float f = 0;
    CHECK_STATUS(nnm_tensor_to_f32(nbt, &f, 1), NNM_OK);
    CU_ASSERT_EQUAL(f, (float)(big + 2));
    /* saved as I64, loaded back exactly */
    char dir[256];
    CU_ASSERT_EQUAL_FATAL(tu_tmpdir_new(dir, sizeof dir, "nnm_bn_i64"), 0);
    const char *path = tu_path(dir, "bn.safetensors");
    char pbuf[512];
    snprintf(pbuf, sizeof pbuf, "%s", path);
    CHECK_STATUS(nnm_module_save(m, pbuf, 0, NULL), NNM_OK);
    nnm_safetensors *st = NULL;
    CHECK_STATUS(nnm_safetensors_open(g_ctx, pbuf, &st), NNM_OK);
    nnm_st_entry e = {sizeof e};
    CHECK_STATUS(nnm_safetensors_find(st, "num_batches_tracked", &e), NNM_OK);
    CU_ASSERT_STRING_EQUAL(e.dtype_name, "I64");
    int64_t saved = 0;
    memcpy(&saved, e.data, 8);
    CU_ASSERT_EQUAL(saved, big + 2);
    nnm_safetensors_close(st);
    CHECK_STATUS(nnm_module_load(m2, pbuf, 1, NULL), NNM_OK);
    tu_named b2;
    memset(&b2, 0, sizeof b2);
    CHECK_STATUS(nnm_module_named_buffers(m2, tu_named_add, &b2), NNM_OK);
    CU_ASSERT_EQUAL(*(const int64_t *)tu_cpu_data(tu_named_get(&b2, "num_batches_tracked")), big + 2);
    /* a count nnmod kept as f32 loads into the i64 buffer */
    CHECK_STATUS(nnm_module_state_dict(m2, &sd), NNM_OK);
    const float seven = 7.0f;
    nnm_tensor *tf = tu_tf32(g_ctx, 0, NULL, &seven);
    CHECK_STATUS(nnm_state_dict_set(sd, "num_batches_tracked", tf), NNM_OK);
    nnm_tensor_release(tf);
    CHECK_STATUS(nnm_module_load_state_dict(m2, sd, 1, NULL), NNM_OK);
    nnm_state_dict_free(sd);
    CU_ASSERT_EQUAL(*(const int64_t *)tu_cpu_data(tu_named_get(&b2, "num_batches_tracked")), 7);
    tu_dir_remove_all(dir);
    nnm_tensor_release(tx);
    nnm_module_release(m2);
    nnm_module_release(m);
    LEAK_CHECK_END();
}

/* ------------------------------------------------------------------------ */
/* Bad arguments                                                             */
/* ------------------------------------------------------------------------ */

static void test_op_errors(void) {
    LEAK_CHECK_BEGIN();
    const int64_t xs[4] = {2, 3, 2, 2}, c3[1] = {3}, c4[1] = {4}, one[2] = {1, 3}, x1[1] = {6};
    float buf[24] = {0}, ones[4] = {1, 1, 1, 1};
    for (int i = 0; i < 24; i++) buf[i] = (float)(i % 5);
    nnm_tensor *x = tu_tf32(g_ctx, 4, xs, buf), *rm = tu_tf32(g_ctx, 1, c3, buf), *rv = tu_tf32(g_ctx, 1, c3, ones);
    nnm_tensor *w4 = tu_tf32(g_ctx, 1, c4, ones), *y = NULL;
    nnm_module *m;
    /* weight of the wrong C */
    m = bn_probe(2, 1, 0.1, 1e-5);
    nnm_tensor *a1[2] = {x, w4};
    CHECK_ERROR(nnm_module_call(m, a1, 2, &y, 1), NNM_E_SHAPE, "weight must be [3]");
    CU_ASSERT_PTR_NULL(y);
    nnm_module_release(m);
    /* running stats of the wrong C */
    m = bn_probe(1, 0, 0.1, 1e-5);
    nnm_tensor *a2[3] = {x, rm, w4};
    CHECK_ERROR(nnm_module_call(m, a2, 3, &y, 1), NNM_E_SHAPE, "running_var must be [3]");
    nnm_module_release(m);
    /* eval without running stats */
    m = bn_probe(0, 0, 0.1, 1e-5);
    CHECK_ERROR(nnm_module_call(m, &x, 1, &y, 1), NNM_E_INVALID, "eval mode needs running_mean");
    nnm_module_release(m);
    /* running_mean without running_var */
    m = bn_probe(1, 1, 0.1, 1e-5);
    nnm_tensor *a3[2] = {x, rm};
    CHECK_ERROR(nnm_module_call(m, a3, 2, &y, 1), NNM_E_INVALID, "both or neither");
    /* running stats that require grad are refused, as op_update refuses them */
    nnm_tensor *rvg = tu_tf32(g_ctx, 1, c3, ones);
    nnm_tensor_set_requires_grad(rvg, 1);
    nnm_tensor *a4[3] = {x, rm, rvg};
    CHECK_ERROR(nnm_module_call(m, a4, 3, &y, 1), NNM_E_STATE, "running_var requires grad");
    /* dtype */
    int64_t iv[24] = {0};
    nnm_tensor *xi = NULL;
    CHECK_STATUS(nnm_tensor_from_i64(g_ctx, 4, xs, iv, &xi), NNM_OK);
    nnm_tensor *a5[3] = {xi, rm, rv};
    CHECK_ERROR(nnm_module_call(m, a5, 3, &y, 1), NNM_E_DTYPE, "input must be f32");
    nnm_tensor *a6[3] = {x, rm, xi};
    CHECK_ERROR(nnm_module_call(m, a6, 3, &y, 1), NNM_E_DTYPE, "running_var must be f32");
    /* one value per channel in training, as PyTorch */
    nnm_tensor *x13 = tu_tf32(g_ctx, 2, one, buf);
    nnm_tensor *a7[3] = {x13, rm, rv};
    CHECK_ERROR(nnm_module_call(m, a7, 3, &y, 1), NNM_E_SHAPE, "expected more than 1 value per channel when training");
    /* a 1-d input */
    nnm_tensor *xv = tu_tf32(g_ctx, 1, x1, buf);
    nnm_tensor *a8[3] = {xv, rm, rv};
    CHECK_ERROR(nnm_module_call(m, a8, 3, &y, 1), NNM_E_SHAPE, ">= 2 dims");
    CU_ASSERT_PTR_NULL(y);
    nnm_module_release(m);
    /* one value per channel is fine in eval (running stats) */
    m = bn_probe(1, 0, 0.1, 1e-5);
    CHECK_STATUS(nnm_module_call(m, a7, 3, &y, 1), NNM_OK);
    nnm_tensor_release(y);
    y = NULL;
    nnm_module_release(m);
    /* an empty batch: an empty output, the running stats left alone (as PyTorch) */
    const int64_t e3[3] = {0, 3, 2};
    nnm_tensor *xe = NULL;
    CHECK_STATUS(nnm_tensor_new(g_ctx, (nnm_device){NNM_DEVICE_CPU, 0}, NNM_F32, 3, e3, &xe), NNM_OK);
    m = bn_probe(1, 1, 0.5, 1e-5);
    nnm_tensor *a9[3] = {xe, rm, rv};
    CHECK_STATUS(nnm_module_call(m, a9, 3, &y, 1), NNM_OK);
    CU_ASSERT_TRUE(y && tu_shape_is(y, 3, e3));
    nnm_tensor_release(y);
    y = NULL;
    nnm_tensor_release(xe);
    nnm_module_release(m);
    /* the running stats were never touched by the refused calls */
    float rmv[3];
    CHECK_STATUS(nnm_tensor_to_f32(rm, rmv, 3), NNM_OK);
    CU_ASSERT_TRUE(rmv[0] == 0.0f && rmv[1] == 1.0f && rmv[2] == 2.0f);
    release5(x, rm, rv, w4, rvg);
    release5(xi, x13, xv, NULL, NULL);
    LEAK_CHECK_END();
}

/* The layers refuse one value per channel in training (fused and composed). */
static void test_layer_single_value(void) {
    LEAK_CHECK_BEGIN();
    const char *layers[2] = {"batch_norm1d", "batch_norm2d"};
    const int64_t s2[2] = {1, 3}, s4[4] = {1, 3, 1, 1};
    float z[3] = {1, 2, 3};
    for (int i = 0; i < 2; i++)
        for (int dev = 0; dev < 2; dev++) {
            nnm_config *cfg = NULL;
            nnm_config_new(&cfg);
            nnm_config_set_int(cfg, "num_features", 3);
            nnm_module *m = tu_module(g_ctx, layers[i], cfg);
            nnm_config_free(cfg);
            CU_ASSERT_PTR_NOT_NULL_FATAL(m);
            nnm_tensor *x = tu_tf32(g_ctx, i ? 4 : 2, i ? s4 : s2, z), *xd = NULL, *y = NULL;
            if (dev) {
                CHECK_STATUS(nnm_module_to(m, g_nobn), NNM_OK);
                CHECK_STATUS(nnm_tensor_new(g_ctx, g_nobn, NNM_F32, i ? 4 : 2, i ? s4 : s2, &xd), NNM_OK);
                memcpy(nnm_tensor_desc_get(xd)->data, z, sizeof z);
            }
            CHECK_ERROR(nnm_module_call(m, dev ? &xd : &x, 1, &y, 1), NNM_E_SHAPE, "more than 1 value per channel");
            CU_ASSERT_PTR_NULL(y);
            CU_ASSERT_PTR_NOT_NULL(strstr(nnm_ctx_errmsg(g_ctx), i ? "got input size [1, 3, 1, 1]" : "got input size [1, 3]"));
            nnm_tensor_release(x);
            nnm_tensor_release(xd);
            nnm_module_release(m);
        }
    /* eval without running statistics normalises with the batch's, so
     * PyTorch refuses one value per channel there too (nnmod returned zeros
     * before the layers' 1.0.3); with running statistics eval takes it */
    for (int i = 0; i < 2; i++)
        for (int track = 0; track < 2; track++) {
            nnm_config *cfg = NULL;
            nnm_config_new(&cfg);
            nnm_config_set_int(cfg, "num_features", 3);
            nnm_config_set_bool(cfg, "track_running_stats", track);
            nnm_module *m = tu_module(g_ctx, layers[i], cfg);
            nnm_config_free(cfg);
            CU_ASSERT_PTR_NOT_NULL_FATAL(m);
            CHECK_STATUS(nnm_module_train(m, 0), NNM_OK);
            nnm_tensor *x = tu_tf32(g_ctx, i ? 4 : 2, i ? s4 : s2, z), *y = NULL;
            if (track) {
                CHECK_STATUS(nnm_module_call(m, &x, 1, &y, 1), NNM_OK);
            } else {
                CHECK_ERROR(nnm_module_call(m, &x, 1, &y, 1), NNM_E_SHAPE,
                            "more than 1 value per channel when training");
                CU_ASSERT_PTR_NOT_NULL(strstr(nnm_ctx_errmsg(g_ctx), "eval without running statistics"));
            }
            nnm_tensor_release(y);
            nnm_tensor_release(x);
            nnm_module_release(m);
        }
    LEAK_CHECK_END();
}

/* An empty batch in training is not one value per channel: as PyTorch, an
 * empty output, running statistics unchanged, num_batches_tracked counted,
 * zero parameter gradients (fused and composed). */
static void test_layer_empty_batch(void) {
    LEAK_CHECK_BEGIN();
    const char *layers[3] = {"batch_norm1d", "batch_norm1d", "batch_norm2d"};
    static const int64_t shapes[3][4] = {{0, 3}, {2, 3, 0}, {0, 3, 2, 2}};
    static const int32_t nds[3] = {2, 3, 4};
    for (int i = 0; i < 3; i++)
        for (int dev = 0; dev < 2; dev++) {
            nnm_config *cfg = NULL;
            nnm_config_new(&cfg);
            nnm_config_set_int(cfg, "num_features", 3);
            nnm_module *m = tu_module(g_ctx, layers[i], cfg);
            nnm_config_free(cfg);
            CU_ASSERT_PTR_NOT_NULL_FATAL(m);
            if (dev) CHECK_STATUS(nnm_module_to(m, g_nobn), NNM_OK);
            nnm_tensor *x = NULL, *y = NULL, *g = NULL;
            CHECK_STATUS(nnm_tensor_new(g_ctx, dev ? g_nobn : (nnm_device){NNM_DEVICE_CPU, 0}, NNM_F32, nds[i], shapes[i], &x), NNM_OK);
            CHECK_STATUS(nnm_tensor_new(g_ctx, dev ? g_nobn : (nnm_device){NNM_DEVICE_CPU, 0}, NNM_F32, nds[i], shapes[i], &g), NNM_OK);
            nnm_tensor_set_requires_grad(x, 1);
            nnm_status st = nnm_module_call(m, &x, 1, &y, 1);
            if (st) fprintf(stderr, "\n  %s %s: %s", layers[i], dev ? "composed" : "fused", nnm_ctx_errmsg(g_ctx));
            CU_ASSERT_EQUAL_FATAL(st, NNM_OK);
            CU_ASSERT(tu_shape_is(y, nds[i], shapes[i]));
            CHECK_STATUS(nnm_backward(y, g, 0), NNM_OK);
            nnm_module_to(m, (nnm_device){NNM_DEVICE_CPU, 0});
            tu_named b;
            memset(&b, 0, sizeof b);
            CHECK_STATUS(nnm_module_named_buffers(m, tu_named_add, &b), NNM_OK);
            float rm[3], rv[3], nbt = 0;
            CHECK_STATUS(nnm_tensor_to_f32(tu_named_get(&b, "running_mean"), rm, 3), NNM_OK);
            CHECK_STATUS(nnm_tensor_to_f32(tu_named_get(&b, "running_var"), rv, 3), NNM_OK);
            CHECK_STATUS(nnm_tensor_to_f32(tu_named_get(&b, "num_batches_tracked"), &nbt, 1), NNM_OK);
            for (int c = 0; c < 3; c++) CU_ASSERT(rm[c] == 0.0f && rv[c] == 1.0f);
            CU_ASSERT_EQUAL(nbt, 1.0f);
            tu_named p = tu_params_of(m);
            for (int k = 0; k < p.n; k++) {
                nnm_tensor *gp = nnm_tensor_grad(p.t[k]);
                float v[3] = {1, 1, 1};
                /* PyTorch: zeros; no gradient at all is as good for an optimizer */
                if (gp) CHECK_STATUS(nnm_tensor_to_f32(gp, v, 3), NNM_OK);
                for (int c = 0; gp && c < 3; c++) CU_ASSERT_EQUAL(v[c], 0.0f);
            }
            nnm_tensor_release(x), nnm_tensor_release(g), nnm_tensor_release(y);
            nnm_module_release(m);
        }
    LEAK_CHECK_END();
}

/* ------------------------------------------------------------------------ */
/* Fused (cpu) against composed (cpunobn): the layers                        */
/* ------------------------------------------------------------------------ */

/* A tensor on the cpunobn device holding p. */
static nnm_tensor *on_nobn(int32_t nd, const int64_t *shape, const float *p, int64_t n) {
    nnm_tensor *t = NULL;
    CHECK_STATUS(nnm_tensor_new(g_ctx, g_nobn, NNM_F32, nd, shape, &t), NNM_OK);
    if (t) memcpy(nnm_tensor_desc_get(t)->data, p, (size_t)n * sizeof(float));
    return t;
}

static int compare_tensors(const char *what, nnm_tensor *a, nnm_tensor *b, double rtol, double atol) {
    int64_t na = 0, nb = 0;
    float *va = a ? tu_read_f32(a, &na) : NULL, *vb = b ? tu_read_f32(b, &nb) : NULL;
    int bad = !va || !vb || na != nb;
    if (bad) fprintf(stderr, "\n  %s: missing or of another size\n", what);
    else bad = tu_count_mismatch(what, va, vb, na, rtol, atol, 0);
    free(va), free(vb);
    return bad;
}

/* layer, config (affine, track, momentum none), x shape: 3 training steps
 * (each with its own x), then one eval call, on both devices. */
static void fused_vs_composed(const char *layer, int affine, int track, int mom_none, int32_t nd,
                              const int64_t *shape) {
    nnm_module *m[2];
    for (int d = 0; d < 2; d++) {
        nnm_config *cfg = NULL;
        nnm_config_new(&cfg);
        nnm_config_set_int(cfg, "num_features", shape[1]);
        nnm_config_set_bool(cfg, "affine", affine);
        nnm_config_set_bool(cfg, "track_running_stats", track);
        if (mom_none) nnm_config_set_str(cfg, "momentum", "None");
        else nnm_config_set_float(cfg, "momentum", 0.25);
        m[d] = tu_module(g_ctx, layer, cfg);
        nnm_config_free(cfg);
        CU_ASSERT_PTR_NOT_NULL_FATAL(m[d]);
    }
    int64_t nx = 1;
    for (int32_t i = 0; i < nd; i++) nx *= shape[i];
    const int64_t C = shape[1];
    float *x = malloc((size_t)nx * sizeof(float)), *g = malloc((size_t)nx * sizeof(float)), wb[2][64];
    if (affine) { /* the same non-trivial weight and bias on both */
        tu_fill_uniform(wb[0], (size_t)C, 77, 0.5, 1.5);
        tu_fill_uniform(wb[1], (size_t)C, 78, -1.0, 1.0);
        for (int d = 0; d < 2; d++) {
            tu_named p = tu_params_of(m[d]);
            tu_write_f32(tu_named_get(&p, "weight"), wb[0], (size_t)C);
            tu_write_f32(tu_named_get(&p, "bias"), wb[1], (size_t)C);
        }
    }
    CHECK_STATUS(nnm_module_to(m[1], g_nobn), NNM_OK);
    int bad = 0;
    for (int step = 0; step < 4; step++) {
        const int training = step < 3;
        for (int d = 0; d < 2; d++) nnm_module_train(m[d], training);
        tu_fill_uniform(x, (size_t)nx, 100 + (uint32_t)step, -1.0, 3.0);
        tu_fill_uniform(g, (size_t)nx, 200 + (uint32_t)step, -1.0, 1.0);
        nnm_tensor *xs[2] = {tu_tf32(g_ctx, nd, shape, x), on_nobn(nd, shape, x, nx)};
        nnm_tensor *gs[2] = {tu_tf32(g_ctx, nd, shape, g), on_nobn(nd, shape, g, nx)};
        nnm_tensor *ys[2] = {NULL, NULL};
        for (int d = 0; d < 2; d++) {
            nnm_tensor_set_requires_grad(xs[d], 1);
            nnm_status st = nnm_module_call(m[d], &xs[d], 1, &ys[d], 1);
            if (st) fprintf(stderr, "\n  %s on %s: %s\n", layer, d ? "cpunobn" : "cpu", nnm_ctx_errmsg(g_ctx));
            CU_ASSERT_EQUAL_FATAL(st, NNM_OK);
            CHECK_STATUS(nnm_backward(ys[d], gs[d], 0), NNM_OK);
        }
        bad += compare_tensors("y", ys[0], ys[1], 1e-4, 1e-5);
        bad += compare_tensors("grad x", nnm_tensor_grad(xs[0]), nnm_tensor_grad(xs[1]), 1e-3, 1e-4);
        tu_named p[2] = {tu_params_of(m[0]), tu_params_of(m[1])};
        for (int i = 0; i < p[0].n; i++)
            bad += compare_tensors(p[0].names[i], nnm_tensor_grad(p[0].t[i]), nnm_tensor_grad(tu_named_get(&p[1], p[0].names[i])),
                                   1e-3, 1e-4);
        tu_named b[2];
        memset(b, 0, sizeof b);
        for (int d = 0; d < 2; d++) CHECK_STATUS(nnm_module_named_buffers(m[d], tu_named_add, &b[d]), NNM_OK);
        CU_ASSERT_EQUAL(b[0].n, track ? 3 : 0);
        for (int i = 0; i < b[0].n; i++)
            bad += compare_tensors(b[0].names[i], b[0].t[i], tu_named_get(&b[1], b[0].names[i]), 1e-5, 1e-6);
        for (int d = 0; d < 2; d++) {
            nnm_tensor_release(xs[d]), nnm_tensor_release(gs[d]), nnm_tensor_release(ys[d]);
            for (int i = 0; i < p[d].n; i++) nnm_tensor_set_grad(p[d].t[i], NULL);
        }
    }
    if (bad) fprintf(stderr, "\n  %s affine %d track %d momentum %s, %d dims\n", layer, affine, track,
                     mom_none ? "None" : "0.25", (int)nd);
    CU_ASSERT_EQUAL(bad, 0);
    free(x), free(g);
    nnm_module_release(m[0]);
    nnm_module_release(m[1]);
}

static void test_fused_vs_composed(void) {
    LEAK_CHECK_BEGIN();
    static const int64_t s2[2] = {8, 5}, s3[3] = {4, 3, 7}, s4[4] = {3, 4, 5, 6};
    for (int v = 0; v < 5; v++) {
        /* (affine, track, momentum None): the default, then the variants */
        static const int cfg[5][3] = {{1, 1, 0}, {0, 1, 0}, {1, 0, 0}, {0, 0, 0}, {1, 1, 1}};
        fused_vs_composed("batch_norm1d", cfg[v][0], cfg[v][1], cfg[v][2], 2, s2);
        fused_vs_composed("batch_norm1d", cfg[v][0], cfg[v][1], cfg[v][2], 3, s3);
        fused_vs_composed("batch_norm2d", cfg[v][0], cfg[v][1], cfg[v][2], 4, s4);
    }
    LEAK_CHECK_END();
}

/* ------------------------------------------------------------------------ */

static int suite_init(void) {
    nnm_ctx_options o = {sizeof o, NNM_CTX_NO_DISCOVERY, 0};
    if (nnm_ctx_new(&o, &g_ctx) != NNM_OK) return 1;
    const nnm_plugin_desc *cpu = tu_plugin_open(NNM_TEST_CPU_PLUGIN, &g_cpu_dl);
    if (!cpu || cpu->n_backends < 1) return 1;
    g_cpu_vt = cpu->backends[0];
    static const char *const plugins[] = {NNM_TEST_CPU_PLUGIN, NNM_TEST_OP_PROBE, NNM_TEST_NORM_PLUGIN};
    for (int i = 0; i < 3; i++)
        if (nnm_plugin_load(g_ctx, plugins[i]) != NNM_OK) {
            fprintf(stderr, "%s: %s\n", plugins[i], nnm_ctx_errmsg(g_ctx));
            return 1;
        }
    return nnm_plugin_register_static(g_ctx, &nobn_desc, "test_batch_norm") != NNM_OK;
}

static int suite_clean(void) {
    nnm_ctx_free(g_ctx);
    if (g_cpu_dl) dlclose(g_cpu_dl);
    return 0;
}

int main(void) {
    CU_pSuite s = tu_suite("batch_norm", suite_init, suite_clean);
    if (!s) return 1;
    CU_add_test(s, "op_batch_norm: reference values and finite differences (train/eval, affine, stats, 2-4 dims)",
                test_op_gradcheck);
    CU_add_test(s, "op_batch_norm: a large mean keeps the variance's digits", test_op_large_mean);
    CU_add_test(s, "batch_norm2d: running statistics are the float64 ones rounded once (issue 18)",
                test_layer_running_stats_digits);
    CU_add_test(s, "batch_norm2d: num_batches_tracked is i64, exact past 2^24, saved as I64 (issue 18)",
                test_layer_num_batches_i64);
    CU_add_test(s, "op_batch_norm: bad arguments fail with a status and a message", test_op_errors);
    CU_add_test(s, "batch_norm1d/2d: one value per channel in training is refused (fused and composed)",
                test_layer_single_value);
    CU_add_test(s, "batch_norm1d/2d: an empty batch trains as in PyTorch (fused and composed)", test_layer_empty_batch);
    CU_add_test(s, "batch_norm1d/2d: fused (cpu) and composed (a backend without the slots) agree",
                test_fused_vs_composed);
    return tu_run();
}
