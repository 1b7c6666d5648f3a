/* tests/layers/test_conv_gemm5.c - the cpu backend's convolution as im2col
 * + its AVX-512 gemm with the weights packed once (plugins/cpu/
 * conv_gemm5.inc, behind the ABI 1.4 `conv` slot), driven through the slot
 * on one thread, against a direct grouped convolution computed here in
 * double: 1-d, 2-d and 3-d, groups, pointwise (the image as its own column
 * matrix), stride, dilation, padding at either end, bias or none, batch > 1,
 * channel counts off the kernel's 12-row tile. Where the CPU has no
 * AVX-512F the slot declines these geometries (NNM_E_UNSUPPORTED, no
 * message) and the test checks only that. Every case is at least 2^15
 * multiply-adds an image, below which the slot leaves it to the runtime.
 *
 * Tolerance: a f32 sum of K terms is within ~K u S of the exact one (S =
 * sum of |terms|, u = 2^-24); the kernel sums in order within 256-deep
 * slices, so K u S with K = the reduction length bounds it; 4 K u S + tiny
 * is asked. */
#include "test_util.h"

#include <dlfcn.h>
#include <float.h>

typedef struct geo {
    int ns;
    int64_t n, cin, cout, groups;
    int64_t in[3], k[3], s[3], p[3], e[3], d[3]; /* per spatial dim: size, kernel, stride, pad, pad end, dilation */
    int bias;
} geo;

static const geo k_geos[] = {
    /* ns n cin cout groups   in            k          s          p          e          d    bias */
    {2, 2, 12, 13, 1, {9, 11}, {3, 3}, {2, 2}, {1, 1}, {1, 1}, {1, 1}, 1},             /* 3x3 stride 2 */
    {2, 1, 3, 64, 1, {31, 29}, {11, 11}, {4, 4}, {2, 2}, {2, 2}, {1, 1}, 1},          /* AlexNet's first */
    {2, 3, 32, 26, 1, {7, 7}, {1, 1}, {1, 1}, {0, 0}, {0, 0}, {1, 1}, 0},             /* pointwise */
    {2, 2, 32, 48, 2, {6, 5}, {3, 3}, {1, 1}, {1, 1}, {1, 1}, {1, 1}, 1},             /* groups 2, 3x3 */
    {2, 1, 16, 36, 1, {10, 9}, {3, 2}, {1, 2}, {2, 0}, {0, 1}, {2, 1}, 1},            /* dilation, pad ends */
    {2, 2, 300, 12, 1, {5, 5}, {1, 1}, {1, 1}, {0, 0}, {0, 0}, {1, 1}, 1},            /* K > 256: two k slices */
    {1, 2, 8, 14, 1, {64}, {5}, {1}, {2}, {2}, {1}, 1},                               /* 1-d */
    {3, 1, 4, 12, 1, {5, 6, 4}, {3, 3, 3}, {1, 2, 1}, {1, 1, 1}, {1, 1, 0}, {1, 1, 1}, 0}, /* 3-d */
    {2, 1, 8, 150, 1, {4, 4}, {3, 3}, {1, 1}, {0, 0}, {0, 0}, {1, 1}, 1},             /* 150 rows: > 144 */
    /* weights read in place: 4-, 8- and 12-row tiles and their edges; images joined in one product */
    {2, 3, 64, 64, 4, {9, 9}, {3, 3}, {1, 1}, {1, 1}, {1, 1}, {1, 1}, 1},             /* groups of 16 (regnet_x) */
    {2, 2, 48, 48, 6, {16, 15}, {3, 3}, {2, 2}, {1, 1}, {1, 1}, {1, 1}, 1},             /* groups of 8, stride 2 */
    {2, 2, 32, 32, 8, {16, 16}, {3, 3}, {1, 1}, {1, 1}, {1, 1}, {1, 1}, 0},           /* groups of 4 */
    {2, 5, 24, 20, 1, {20, 16}, {3, 2}, {1, 1}, {1, 1}, {1, 1}, {1, 1}, 1},           /* 300 positions: 3 + 2 images */
    {2, 1, 16, 24, 1, {9, 9}, {3, 3}, {1, 1}, {1, 1}, {1, 1}, {1, 1}, 1},             /* 3x3 s1 on few positions: before Winograd */
    {2, 4, 40, 36, 1, {7, 7}, {3, 3}, {1, 1}, {1, 1}, {1, 1}, {1, 1}, 1},             /* K = 360 > 256, 4 images joined */
    {2, 2, 96, 20, 1, {6, 6}, {1, 1}, {1, 1}, {0, 0}, {0, 0}, {1, 1}, 0},             /* pointwise, 2 images joined */
    {2, 8, 1, 16, 1, {28, 28}, {3, 3}, {1, 1}, {1, 1}, {1, 1}, {1, 1}, 1},            /* the Fashion CNN's conv1 */
    {2, 7, 3, 12, 1, {12, 13}, {5, 5}, {2, 2}, {2, 2}, {1, 2}, {1, 1}, 1},            /* 7 images: parts of 1 and 2 */
    /* one image on two threads: 784 columns in 8 ranges of 128, the last ones past the end (resnet18's layer2.0.conv1 shape) */
    {2, 1, 8, 16, 1, {56, 56}, {3, 3}, {2, 2}, {1, 1}, {1, 1}, {1, 1}, 1},
    {2, 1, 4, 12, 1, {45, 45}, {3, 3}, {1, 1}, {1, 1}, {1, 1}, {1, 1}, 0},            /* 2025 columns: more ranges than tiles */
};

static int64_t out_dim(const geo *g, int i) {
    return (g->in[i] + g->p[i] + g->e[i] - g->d[i] * (g->k[i] - 1) - 1) / g->s[i] + 1;
}

/* The second backend state: NNM_CPU_THREADS=all and 2 threads, so every op
 * that can split does (the forward's products, grad_w's parts). */
static void *g_state2;

static void run_case(const nnm_backend_vtable *be, void *state, tu_fake_host *h, int ci, const geo *g) {
    const int nd = g->ns + 2;
    int64_t xs[5] = {g->n, g->cin}, ws[5] = {g->cout, g->cin / g->groups}, ys[5] = {g->n, g->cout};
    int64_t lin = 1, lout = 1, kp = 1, od[3] = {1, 1, 1}, id[3] = {1, 1, 1}, kd[3] = {1, 1, 1};
    for (int i = 0; i < g->ns; i++) {
        xs[2 + i] = g->in[i], ws[2 + i] = g->k[i], ys[2 + i] = out_dim(g, i);
        lin *= g->in[i], lout *= ys[2 + i], kp *= g->k[i];
        od[3 - g->ns + i] = ys[2 + i], id[3 - g->ns + i] = g->in[i], kd[3 - g->ns + i] = g->k[i];
    }
    int64_t S[3] = {1, 1, 1}, P[3] = {0, 0, 0}, D[3] = {1, 1, 1};
    for (int i = 0; i < g->ns; i++) S[3 - g->ns + i] = g->s[i], P[3 - g->ns + i] = g->p[i], D[3 - g->ns + i] = g->d[i];
    const int64_t cig = g->cin / g->groups, cog = g->cout / g->groups;
    const int64_t nx = g->n * g->cin * lin, nw = g->cout * cig * kp, ny = g->n * g->cout * lout;
    float *x = malloc((size_t)nx * sizeof *x), *w = malloc((size_t)nw * sizeof *w);
    float *b = malloc((size_t)g->cout * sizeof *b), *y = malloc((size_t)ny * sizeof *y);
    tu_fill_uniform(x, (size_t)nx, 11u + (uint32_t)ci, -1.0, 1.0);
    tu_fill_uniform(w, (size_t)nw, 23u + (uint32_t)ci, -0.5, 0.5);
    tu_fill_uniform(b, (size_t)g->cout, 37u + (uint32_t)ci, -0.5, 0.5);
    for (int64_t i = 0; i < ny; i++) y[i] = NAN; /* every output must be written */
    int64_t xst[5], wst[5], yst[5], bs[1] = {g->cout}, bst[1] = {1};
    int64_t sx = 1, sw = 1, sy = 1;
    for (int j = nd - 1; j >= 0; j--) {
        xst[j] = sx, sx *= xs[j];
        wst[j] = sw, sw *= ws[j];
        yst[j] = sy, sy *= ys[j];
    }
    nnm_tensor_desc xd = {x, {NNM_DEVICE_CPU, 0}, nd, {NNM_DTYPE_FLOAT, 32, 1}, xs, xst, 0};
    nnm_tensor_desc wd = {w, {NNM_DEVICE_CPU, 0}, nd, {NNM_DTYPE_FLOAT, 32, 1}, ws, wst, 0};
    nnm_tensor_desc yd = {y, {NNM_DEVICE_CPU, 0}, nd, {NNM_DTYPE_FLOAT, 32, 1}, ys, yst, 0};
    nnm_tensor_desc bd = {b, {NNM_DEVICE_CPU, 0}, 1, {NNM_DTYPE_FLOAT, 32, 1}, bs, bst, 0};
    nnm_conv_params p;
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    p.n_spatial = g->ns;
    p.groups = (int32_t)g->groups;
    for (int i = 0; i < g->ns; i++) {
        p.stride[i] = g->s[i];
        p.padding[i] = g->p[i];
        p.padding_end[i] = g->e[i];
        p.dilation[i] = g->d[i];
    }
    nnm_conv_args a = {sizeof a, 0, &p, &xd, &wd, g->bias ? &bd : NULL, &yd, NULL, NULL, NULL};
    const int before = h->n_errors;
    nnm_status st = be->conv(&h->env, state, &a);
    if (!__builtin_cpu_supports("avx512f")) {
        CU_ASSERT_EQUAL(st, NNM_E_UNSUPPORTED);
        CU_ASSERT_EQUAL(h->n_errors, before);
    } else {
        CU_ASSERT_EQUAL(st, NNM_OK);
        if (st != NNM_OK) fprintf(stderr, "\n  case %d: status %d", ci, (int)st);
        int bad = 0;
        for (int64_t n = 0; n < g->n && st == NNM_OK; n++)
            for (int64_t o = 0; o < g->cout; o++) {
                const int64_t gr = o / cog;
                for (int64_t z = 0; z < od[0]; z++)
                    for (int64_t r = 0; r < od[1]; r++)
                        for (int64_t c = 0; c < od[2]; c++) {
                            double s = g->bias ? b[o] : 0.0, sc = g->bias ? fabs(b[o]) : 0.0;
                            for (int64_t i = 0; i < cig; i++)
                                for (int64_t kz = 0; kz < kd[0]; kz++)
                                    for (int64_t kr = 0; kr < kd[1]; kr++)
                                        for (int64_t kc = 0; kc < kd[2]; kc++) {
                                            const int64_t iz = z * S[0] - P[0] + kz * D[0];
                                            const int64_t ir = r * S[1] - P[1] + kr * D[1];
                                            const int64_t ic = c * S[2] - P[2] + kc * D[2];
                                            if (iz < 0 || iz >= id[0] || ir < 0 || ir >= id[1] || ic < 0 || ic >= id[2])
                                                continue;
                                            const double xv = x[(((n * g->cin + gr * cig + i) * id[0] + iz) * id[1] + ir) * id[2] + ic];
                                            const double wv = w[(((o * cig + i) * kd[0] + kz) * kd[1] + kr) * kd[2] + kc];
                                            s += xv * wv, sc += fabs(xv * wv);
                                        }
                            const float got = y[(((n * g->cout + o) * od[0] + z) * od[1] + r) * od[2] + c];
                            const double tol = 4.0 * (double)(cig * kp + 1) * FLT_EPSILON / 2 * sc + 1e-30;
                            if (!(fabs(got - s) <= tol)) {
                                if (bad < 3)
                                    fprintf(stderr, "\n  case %d y[%lld,%lld,%lld,%lld,%lld]: got %.9g want %.9g", ci,
                                            (long long)n, (long long)o, (long long)z, (long long)r, (long long)c,
                                            (double)got, s);
                                bad++;
                            }
                        }
            }
        CU_ASSERT_EQUAL(bad, 0);
        /* on two threads (the images' products dealt out): the same bits, or
         * declined where the call is one product */
        float *y2 = malloc((size_t)ny * sizeof *y2);
        for (int64_t i = 0; i < ny; i++) y2[i] = NAN;
        yd.data = y2;
        const nnm_status st2 = be->conv(&h->env, g_state2, &a);
        CU_ASSERT(st2 == NNM_OK || st2 == NNM_E_UNSUPPORTED);
        if (st2 == NNM_OK && memcmp(y, y2, (size_t)ny * sizeof *y)) fprintf(stderr, "\n  case %d: y differs on two threads", ci);
        if (st2 == NNM_OK) CU_ASSERT_EQUAL(memcmp(y, y2, (size_t)ny * sizeof *y), 0);
        yd.data = y;
        free(y2);
    }
    /* the weight gradient alone (the input needs none), from grad_out = y's
     * shape filled with values: against a double reference, then the same
     * bits on two threads */
    if (be->conv_backward != NULL && __builtin_cpu_supports("avx512f")) {
        float *gy = malloc((size_t)ny * sizeof *gy), *gw1 = malloc((size_t)nw * sizeof *gw1),
              *gw2 = malloc((size_t)nw * sizeof *gw2);
        tu_fill_uniform(gy, (size_t)ny, 51u + (uint32_t)ci, -1.0, 1.0);
        for (int64_t i = 0; i < nw; i++) gw1[i] = gw2[i] = NAN;
        nnm_tensor_desc gyd = yd, gwd = wd;
        gyd.data = gy;
        gwd.data = gw1;
        nnm_conv_args ab = {sizeof ab, 0, &p, &xd, &wd, NULL, NULL, &gyd, NULL, &gwd};
        nnm_status sb = be->conv_backward(&h->env, state, &ab);
        CU_ASSERT(sb == NNM_OK || sb == NNM_E_UNSUPPORTED);
        if (sb == NNM_OK) {
            int bad = 0;
            for (int64_t o = 0; o < g->cout; o++) {
                const int64_t gr = o / cog;
                for (int64_t i = 0; i < cig; i++)
                    for (int64_t kz = 0; kz < kd[0]; kz++)
                        for (int64_t kr = 0; kr < kd[1]; kr++)
                            for (int64_t kc = 0; kc < kd[2]; kc++) {
                                double s = 0.0, sc = 0.0;
                                for (int64_t n = 0; n < g->n; n++)
                                    for (int64_t z = 0; z < od[0]; z++)
                                        for (int64_t r = 0; r < od[1]; r++)
                                            for (int64_t c = 0; c < od[2]; c++) {
                                                const int64_t iz = z * S[0] - P[0] + kz * D[0];
                                                const int64_t ir = r * S[1] - P[1] + kr * D[1];
                                                const int64_t ic = c * S[2] - P[2] + kc * D[2];
                                                if (iz < 0 || iz >= id[0] || ir < 0 || ir >= id[1] || ic < 0 ||
                                                    ic >= id[2])
                                                    continue;
                                                const double xv =
                                                    x[(((n * g->cin + gr * cig + i) * id[0] + iz) * id[1] + ir) * id[2] + ic];
                                                const double gv = gy[(((n * g->cout + o) * od[0] + z) * od[1] + r) * od[2] + c];
                                                s += xv * gv, sc += fabs(xv * gv);
                                            }
                                const float got = gw1[(((o * cig + i) * kd[0] + kz) * kd[1] + kr) * kd[2] + kc];
                                const double tol = 4.0 * (double)(g->n * lout + 1) * FLT_EPSILON / 2 * sc + 1e-30;
                                if (!(fabs(got - s) <= tol)) {
                                    if (bad < 3)
                                        fprintf(stderr, "\n  case %d grad_w[%lld,%lld,..]: got %.9g want %.9g", ci,
                                                (long long)o, (long long)i, (double)got, s);
                                    bad++;
                                }
                            }
            }
            CU_ASSERT_EQUAL(bad, 0);
            gwd.data = gw2;
            CU_ASSERT_EQUAL(be->conv_backward(&h->env, g_state2, &ab), NNM_OK);
            if (memcmp(gw1, gw2, (size_t)nw * sizeof *gw1)) fprintf(stderr, "\n  case %d: grad_w differs on two threads", ci);
            CU_ASSERT_EQUAL(memcmp(gw1, gw2, (size_t)nw * sizeof *gw1), 0);
        }
        free(gy), free(gw1), free(gw2);
    }
    free(x), free(w), free(b), free(y);
}

static void test_geometries(void) {
    tu_fake_host h;
    tu_fake_host_init(&h);
    void *dl = NULL;
    const nnm_plugin_desc *d = tu_plugin_open(NNM_TEST_CPU_PLUGIN, &dl);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    const nnm_backend_vtable *be = d->backends[0];
    CU_ASSERT_PTR_NOT_NULL_FATAL(be->conv);
    void *state = NULL;
    CU_ASSERT_EQUAL_FATAL(be->init(&h.env, &state), NNM_OK);
    CU_ASSERT_EQUAL(be->set_num_threads(&h.env, state, 1), NNM_OK); /* one thread: the kernel's case */
    setenv("NNM_CPU_THREADS", "all", 1); /* read by init */
    CU_ASSERT_EQUAL_FATAL(be->init(&h.env, &g_state2), NNM_OK);
    unsetenv("NNM_CPU_THREADS");
    CU_ASSERT_EQUAL(be->set_num_threads(&h.env, g_state2, 2), NNM_OK);
    for (size_t i = 0; i < sizeof k_geos / sizeof k_geos[0]; i++) run_case(be, state, &h, (int)i, &k_geos[i]);
    be->shutdown(g_state2);
    be->shutdown(state);
    dlclose(dl);
}

int main(void) {
    CU_pSuite s = tu_suite("conv_gemm5", NULL, NULL);
    CU_add_test(s, "im2col + AVX-512 gemm convolutions (1-3 d, groups, pointwise, stride, dilation, padding ends, "
                   "bias) and their weight gradients vs a direct double convolution; two threads: the same bits",
                test_geometries);
    return tu_run();
}
