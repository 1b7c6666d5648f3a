/* tests/cuda/test_cuda_bodies.c - the cuda backend's kernels without a GPU.
 *
 * Every kernel of the cuda backend's op families is a grid-stride loop over
 * a plain-C body (plugins/cuda/cuda_*_body.h, NNM_CUDA_HD is empty here).
 * This suite includes those bodies, runs them on host memory over the full
 * index range a launch covers - every output element, or every row - and
 * compares the result with the cpu backend's slot (nnm_cpu.so driven
 * directly, as tests/layers/test_cpu_backend.c does) on the same inputs:
 * contiguous, strided, transposed, broadcast, offset, empty and edge sizes,
 * NaN and infinities where the op has a rule for them. Whole buffers are
 * compared, so a body that writes outside its element shows.
 *
 * What this proves: the index arithmetic, the plans built on the host and
 * the formulas the GPU runs. What only a GPU proves (tests/cuda/
 * test_cuda_ops.c, run by scripts/gpu-check.sh): the launches, the streams,
 * device libm's last ulps and the atomics' order.
 */
#include "test_util.h"

#include <dlfcn.h>

#include "cuda_elementwise_body.h"
#include "cuda_reduce_body.h"
#include "cuda_softmax_body.h"
#include "cuda_nll_body.h"
#include "cuda_optim_body.h"
#include "cuda_cast_body.h"
#include "cuda_im2col_body.h"
#include "cuda_index_body.h"
#include "cuda_layer_norm_body.h"
#include "cuda_rnn_body.h"
#include "cuda_embedding_bag_body.h"
#include "cuda_ctc_body.h"

#ifndef NNM_TEST_PLUGIN_DIR
#error "NNM_TEST_PLUGIN_DIR must name the directory holding nnm_cpu.so"
#endif

static tu_fake_host g_fake;
static void *g_dl;
static const nnm_backend_vtable *g_cpu;
static void *g_state;
static uint32_t g_rng = 4242u;

static int suite_init(void) {
    tu_fake_host_init(&g_fake);
    const nnm_plugin_desc *d = tu_plugin_open(NNM_TEST_PLUGIN_DIR "/nnm_cpu.so", &g_dl);
    if (d == NULL || d->n_backends != 1)
        return 1;
    g_cpu = d->backends[0];
    return g_cpu->init(&g_fake.env, &g_state) != NNM_OK;
}

static int suite_clean(void) {
    if (g_cpu != NULL)
        g_cpu->shutdown(g_state);
    if (g_dl != NULL)
        dlclose(g_dl);
    return 0;
}

/* The cpu slot's status, its message printed when it is not NNM_OK. */
static nnm_status cpu_ok(nnm_status st) {
    if (st != NNM_OK)
        fprintf(stderr, "\n  cpu: %s\n", g_fake.msg);
    return st;
}

/* ---- views over host buffers --------------------------------------------- */

typedef struct hv {
    nnm_tensor_desc d;
    int64_t shape[NNM_MAX_DIMS];
    int64_t strides[NNM_MAX_DIMS];
} hv;

/* A view of `data` (elements of dt) with shape, strides (NULL: contiguous)
 * and an offset in elements. */
static nnm_tensor_desc *hv_init(hv *v, void *data, nnm_dtype dt, int32_t ndim,
                                const int64_t *shape, const int64_t *strides, int64_t off) {
    memset(v, 0, sizeof *v);
    v->d.data = data;
    v->d.device = (nnm_device){NNM_DEVICE_CPU, 0};
    v->d.ndim = ndim;
    v->d.dtype = dt;
    v->d.shape = v->shape;
    v->d.strides = v->strides;
    v->d.byte_offset = (uint64_t)off * (dt.bits / 8u);
    int64_t st = 1;
    for (int32_t i = ndim - 1; i >= 0; i--) {
        v->shape[i] = shape[i];
        v->strides[i] = strides != NULL ? strides[i] : st;
        st *= shape[i];
    }
    return &v->d;
}

static nnm_tensor_desc *hvf(hv *v, float *data, int32_t ndim, const int64_t *shape,
                            const int64_t *strides, int64_t off) {
    return hv_init(v, data, NNM_F32, ndim, shape, strides, off);
}

static const nnm_dtype I64 = {NNM_DTYPE_INT, 64, 1};

/* First element of a view (byte_offset applied). */
static void *hv_base(const hv *v) {
    return (char *)v->d.data + v->d.byte_offset;
}

static int64_t numel_of(int32_t ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int32_t i = 0; i < ndim; i++)
        n *= shape[i];
    return n;
}

#define SENTINEL 1234.5f
static void fill_sentinel(float *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        p[i] = SENTINEL;
}

/* Random values in [-4, 4), and every 7th one of a few specials when
 * `specials` (NaN, infinities, zeros, halves for the rounding ops). */
static void fill_inputs(float *p, size_t n, int specials) {
    static const float sp[] = {0.0f, -0.0f, 0.5f, 1.5f, 2.5f, -2.5f, -3.0f, 3.0f, 6.0f,
                               INFINITY, -INFINITY, NAN};
    for (size_t i = 0; i < n; i++) {
        p[i] = 2.0f * tu_rand(&g_rng);
        if (specials && i % 7 == 3)
            p[i] = sp[(i / 7) % (sizeof sp / sizeof sp[0])];
    }
}

static int same_f32(const char *what, const float *got, const float *want, size_t n, double rtol,
                    double atol) {
    return tu_count_mismatch(what, got, want, (int64_t)n, rtol, atol, TU_MATCH_NONFINITE) == 0;
}

/* ------------------------------------------------------------------------ */
/* Elementwise: unary (every op), binary (every op), where                   */
/* ------------------------------------------------------------------------ */

/* One geometry: out's and x's shapes, strides and offsets in one buffer each. */
typedef struct geom {
    const char *name;
    int32_t ndim;
    int64_t oshape[4], ostr[4], xshape[4], xstr[4];
    int64_t ooff, xoff;
    int ocontig, xcontig;
} geom;

static const geom k_geoms[] = {
    {"contiguous", 3, {3, 5, 7}, {0}, {3, 5, 7}, {0}, 0, 0, 1, 1},
    {"x transposed", 2, {6, 5}, {0}, {6, 5}, {1, 6}, 0, 0, 1, 0},
    {"x broadcast", 3, {4, 3, 5}, {0}, {1, 3, 1}, {0}, 0, 2, 1, 1},
    {"strided output", 3, {2, 3, 4}, {40, 12, 2}, {2, 3, 4}, {1, 2, 6}, 3, 1, 0, 0},
    {"0-d", 0, {0}, {0}, {0}, {0}, 1, 1, 1, 1},
    {"empty", 2, {0, 5}, {0}, {0, 5}, {0}, 0, 0, 1, 1},
    {"8 wide", 1, {1000}, {0}, {1000}, {3}, 0, 5, 1, 0},
};

#define BUF 4096

static void test_unary_all_ops(void) {
    static float x[BUF], want[BUF], got[BUF];
    fill_inputs(x, BUF, 1);
    for (size_t g = 0; g < sizeof k_geoms / sizeof k_geoms[0]; g++) {
        const geom *G = &k_geoms[g];
        for (int op = NNM_UNARY_COPY; op <= NNM_UNARY_HARDSIGMOID_GRAD; op++) {
            const double alpha = op == NNM_UNARY_POW ? 2.0 : op == NNM_UNARY_ELU ? 1.3 : 0.7;
            hv o, xv, o2;
            nnm_unary_args a = {sizeof a, op, alpha, NULL, NULL};
            a.x = hvf(&xv, x, G->ndim, G->xshape, G->xcontig ? NULL : G->xstr, G->xoff);
            a.out = hvf(&o, want, G->ndim, G->oshape, G->ocontig ? NULL : G->ostr, G->ooff);
            fill_sentinel(want, BUF);
            fill_sentinel(got, BUF);
            CU_ASSERT_EQUAL_FATAL(cpu_ok(g_cpu->unary(&g_fake.env, g_state, &a)), NNM_OK);
            /* the kernel: the layout the C side builds, the body per element */
            nnm_strided_layout L;
            const nnm_tensor_desc *ds[2] = {
                hvf(&o2, got, G->ndim, G->oshape, G->ocontig ? NULL : G->ostr, G->ooff), a.x};
            static const char *const names[2] = {"output", "x"};
            CU_ASSERT_EQUAL_FATAL(
                nnm_strided_layout_init(NULL, "cuda", "unary", &L, G->ndim, G->oshape, 2, ds, names),
                NNM_OK);
            const int64_t n = numel_of(G->ndim, G->oshape);
            float *ob = hv_base(&o2);
            const float *xb = hv_base(&xv);
            for (int64_t i = 0; i < n; i++) {
                int64_t off[2];
                nnm_cuda_layout_offsets(&L, i, 2, off);
                ob[off[0]] = nnm_cuda_unary_f(op, xb[off[1]], (float)alpha);
            }
            char what[96];
            snprintf(what, sizeof what, "unary op %d, %s", op, G->name);
            CU_ASSERT_TRUE(same_f32(what, got, want, BUF, 2e-6, 1e-6));
        }
    }
}

static void test_binary_all_ops(void) {
    static float a[BUF], b[BUF], want[BUF], got[BUF];
    fill_inputs(a, BUF, 1);
    fill_inputs(b, BUF, 1);
    /* a, b: the geometry's x layout and its transpose/broadcast partner */
    for (size_t g = 0; g < sizeof k_geoms / sizeof k_geoms[0]; g++) {
        const geom *G = &k_geoms[g];
        for (int op = NNM_BINARY_ADD; op <= NNM_BINARY_POW; op++) {
            hv o, av, bv, o2;
            nnm_binary_args ar = {sizeof ar, op, NULL, NULL, NULL};
            ar.a = hvf(&av, a, G->ndim, G->xshape, G->xcontig ? NULL : G->xstr, G->xoff);
            ar.b = hvf(&bv, b, G->ndim, G->oshape, NULL, 1);
            ar.out = hvf(&o, want, G->ndim, G->oshape, G->ocontig ? NULL : G->ostr, G->ooff);
            fill_sentinel(want, BUF);
            fill_sentinel(got, BUF);
            CU_ASSERT_EQUAL_FATAL(cpu_ok(g_cpu->binary(&g_fake.env, g_state, &ar)), NNM_OK);
            nnm_strided_layout L;
            const nnm_tensor_desc *ds[3] = {
                hvf(&o2, got, G->ndim, G->oshape, G->ocontig ? NULL : G->ostr, G->ooff), ar.a,
                ar.b};
            static const char *const names[3] = {"output", "a", "b"};
            CU_ASSERT_EQUAL_FATAL(
                nnm_strided_layout_init(NULL, "cuda", "binary", &L, G->ndim, G->oshape, 3, ds, names),
                NNM_OK);
            const int64_t n = numel_of(G->ndim, G->oshape);
            float *ob = hv_base(&o2);
            const float *pa = hv_base(&av), *pb = hv_base(&bv);
            for (int64_t i = 0; i < n; i++) {
                int64_t off[3];
                nnm_cuda_layout_offsets(&L, i, 3, off);
                ob[off[0]] = nnm_cuda_binary_f(op, pa[off[1]], pb[off[2]]);
            }
            char what[96];
            snprintf(what, sizeof what, "binary op %d, %s", op, G->name);
            CU_ASSERT_TRUE(same_f32(what, got, want, BUF, 2e-6, 1e-6));
        }
    }
}

static void test_where(void) {
    static float c[BUF], a[BUF], b[BUF], want[BUF], got[BUF];
    fill_inputs(a, BUF, 1);
    fill_inputs(b, BUF, 1);
    for (size_t i = 0; i < BUF; i++)
        c[i] = (i % 3 == 0) ? 0.0f : (i % 3 == 1 ? 1.0f : NAN); /* NaN is != 0: true */
    for (size_t g = 0; g < sizeof k_geoms / sizeof k_geoms[0]; g++) {
        const geom *G = &k_geoms[g];
        hv o, cv, av, bv, o2;
        nnm_where_args w = {sizeof w, 0, NULL, NULL, NULL, NULL};
        w.cond = hvf(&cv, c, G->ndim, G->xshape, G->xcontig ? NULL : G->xstr, G->xoff);
        w.a = hvf(&av, a, G->ndim, G->oshape, NULL, 0);
        w.b = hvf(&bv, b, G->ndim, G->xshape, G->xcontig ? NULL : G->xstr, 2);
        w.out = hvf(&o, want, G->ndim, G->oshape, G->ocontig ? NULL : G->ostr, G->ooff);
        fill_sentinel(want, BUF);
        fill_sentinel(got, BUF);
        CU_ASSERT_EQUAL_FATAL(cpu_ok(g_cpu->where(&g_fake.env, g_state, &w)), NNM_OK);
        nnm_strided_layout L;
        const nnm_tensor_desc *ds[4] = {
            hvf(&o2, got, G->ndim, G->oshape, G->ocontig ? NULL : G->ostr, G->ooff), w.cond, w.a,
            w.b};
        static const char *const names[4] = {"output", "cond", "a", "b"};
        CU_ASSERT_EQUAL_FATAL(
            nnm_strided_layout_init(NULL, "cuda", "where", &L, G->ndim, G->oshape, 4, ds, names),
            NNM_OK);
        const int64_t n = numel_of(G->ndim, G->oshape);
        for (int64_t i = 0; i < n; i++)
            nnm_cuda_where_body(&L, i, hv_base(&o2), hv_base(&cv), hv_base(&av), hv_base(&bv));
        CU_ASSERT_TRUE(same_f32(G->name, got, want, BUF, 0.0, 0.0));
    }
}

/* ------------------------------------------------------------------------ */
/* reduce                                                                    */
/* ------------------------------------------------------------------------ */

static void test_reduce(void) {
    static float x[BUF], want[BUF], got[BUF];
    fill_inputs(x, BUF, 0);
    x[17] = NAN; /* max/min propagate it */
    /* x [3, 4, 5] contiguous, permuted ([5, 4, 3] read transposed), offset */
    const int64_t shape[3] = {3, 4, 5};
    const int64_t perm_str[3] = {1, 3, 12};
    const int64_t zshape[3] = {3, 0, 5};
    for (int layout = 0; layout < 3; layout++)
        for (int mask = 0; mask < 8; mask++)
            for (int op = NNM_REDUCE_SUM; op <= NNM_REDUCE_MIN; op++) {
                const int64_t *xs = layout == 2 ? zshape : shape;
                int64_t os[3];
                for (int i = 0; i < 3; i++)
                    os[i] = (mask >> i) & 1 ? 1 : xs[i];
                hv xv, o, o2;
                nnm_reduce_args a = {sizeof a, op, 0.5, NULL, NULL};
                a.x = hvf(&xv, x, 3, xs, layout == 1 ? perm_str : NULL, layout == 1 ? 0 : 3);
                a.out = hvf(&o, want, 3, os, NULL, 0);
                fill_sentinel(want, BUF);
                fill_sentinel(got, BUF);
                const nnm_status st = g_cpu->reduce(&g_fake.env, g_state, &a);
                nnm_cuda_red_plan P;
                memset(&P, 0, sizeof P);
                CU_ASSERT_EQUAL(nnm_cuda_red_plan_init(&P, op, 0.5, a.x, hvf(&o2, got, 3, os, NULL, 0)), -1);
                if (P.count == 0 && (op == NNM_REDUCE_MAX || op == NNM_REDUCE_MIN)) {
                    CU_ASSERT_EQUAL(st, NNM_E_SHAPE); /* cuda_reduce refuses it too */
                    continue;
                }
                CU_ASSERT_EQUAL_FATAL(cpu_ok(st), NNM_OK);
                const int64_t n = numel_of(3, os);
                for (int64_t i = 0; i < n; i++)
                    nnm_cuda_reduce_body(&P, i, hv_base(&xv), got);
                char what[96];
                snprintf(what, sizeof what, "reduce op %d, layout %d, mask %d", op, layout, mask);
                CU_ASSERT_TRUE(same_f32(what, got, want, BUF, 1e-6, 1e-6));
                /* the two-pass path, with chunks of 7 (and 1: every element its own) */
                for (int64_t chunk = 7; P.count > 0 && chunk >= 1; chunk -= 6) {
                    static double part[BUF * 8];
                    const int64_t nch = (P.count + chunk - 1) / chunk;
                    CU_ASSERT_FATAL(n * nch <= BUF * 8);
                    fill_sentinel(got, BUF);
                    for (int64_t t = 0; t < n * nch; t++)
                        nnm_cuda_reduce_part(&P, t, nch, chunk, hv_base(&xv), part);
                    for (int64_t i = 0; i < n; i++)
                        nnm_cuda_reduce_combine(&P, i, nch, part, got);
                    CU_ASSERT_TRUE(same_f32(what, got, want, BUF, 1e-6, 1e-6));
                }
            }
    /* a bad output shape is found */
    hv xv, o;
    nnm_cuda_red_plan P;
    const int64_t bad[3] = {3, 2, 5};
    CU_ASSERT_EQUAL(nnm_cuda_red_plan_init(&P, 0, 1.0, hvf(&xv, x, 3, shape, NULL, 0),
                                           hvf(&o, got, 3, bad, NULL, 0)),
                    1);
}

/* ------------------------------------------------------------------------ */
/* softmax, log_softmax                                                      */
/* ------------------------------------------------------------------------ */

static void test_softmax(void) {
    static float x[BUF], want[BUF], got[BUF];
    fill_inputs(x, BUF, 0);
    /* rows with NaN, +inf and all -inf (outer 0 of the [4, 6, 3] case) */
    x[5] = NAN;
    x[7] = INFINITY;
    const int64_t cases[][3] = {{4, 6, 3}, {5, 9, 1}, {1, 1, 7}, {3, 1, 1}, {0, 4, 2}, {2, 300, 1}};
    x[300 + 8] = x[300 + 9] = x[300 + 10] = x[300 + 11] = -INFINITY; /* a chunk of 4 of only -inf */
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
        for (int lg = 0; lg <= 1; lg++) {
            const int64_t outer = cases[k][0], n = cases[k][1], inner = cases[k][2];
            if (k == 3) /* a row of only -inf */
                for (int i = 0; i < 3; i++)
                    x[i] = -INFINITY;
            const int64_t shape[3] = {outer, n, inner};
            hv xv, o;
            nnm_softmax_args a = {sizeof a, lg, outer, n, inner, hvf(&xv, x, 3, shape, NULL, 0),
                                  hvf(&o, want, 3, shape, NULL, 0)};
            fill_sentinel(want, BUF);
            fill_sentinel(got, BUF);
            CU_ASSERT_EQUAL_FATAL(cpu_ok(g_cpu->softmax(&g_fake.env, g_state, &a)), NNM_OK);
            for (int64_t r = 0; r < outer * inner; r++)
                nnm_cuda_softmax_row(r, n, inner, lg, x, got);
            char what[64];
            snprintf(what, sizeof what, "softmax case %zu log %d", k, lg);
            CU_ASSERT_TRUE(same_f32(what, got, want, BUF, 2e-6, 1e-7));
            /* the three-pass path for long rows, with chunks of 4 and 1 */
            for (int64_t chunk = 4; chunk >= 1; chunk -= 3) {
                static double part[2 * BUF], stats[2 * BUF];
                static float got3[BUF];
                const int64_t rows = outer * inner, nch = (n + chunk - 1) / chunk;
                CU_ASSERT_FATAL(rows * nch <= BUF);
                fill_sentinel(got3, BUF);
                for (int64_t t = 0; t < rows * nch; t++)
                    nnm_cuda_softmax_part(t, nch, chunk, n, inner, x, part);
                for (int64_t r = 0; r < rows; r++)
                    nnm_cuda_softmax_stats(r, nch, part, stats);
                for (int64_t q = 0; q < rows * n; q++)
                    nnm_cuda_softmax_elem(q, n, inner, lg, stats, x, got3);
                CU_ASSERT_TRUE(same_f32(what, got3, want, BUF, 2e-6, 1e-7));
            }
            if (lg && inner == 1) { /* log_softmax (1.1) over the last dim: the same rows */
                const int64_t s2[2] = {outer, n};
                nnm_log_softmax_args l = {sizeof l, 0, hvf(&xv, x, 2, s2, NULL, 0),
                                          hvf(&o, want, 2, s2, NULL, 0)};
                fill_sentinel(want, BUF);
                CU_ASSERT_EQUAL_FATAL(cpu_ok(g_cpu->log_softmax(&g_fake.env, g_state, &l)), NNM_OK);
                CU_ASSERT_TRUE(same_f32("log_softmax", got, want, BUF, 0.0, 0.0));
            }
            if (k == 3)
                fill_inputs(x, 3, 0);
        }
}

/* ------------------------------------------------------------------------ */
/* nll, nll_backward                                                         */
/* ------------------------------------------------------------------------ */

static void test_nll(void) {
    enum { N = 7, C = 5 };
    static float logp[N * C], want[N], got[N], gwant[N * C], ggot[N * C], grad[N];
    int64_t target[N] = {0, 4, -100, 2, 3, -100, 1};
    fill_inputs(logp, N * C, 0);
    fill_inputs(grad, N, 0);
    const int64_t s2[2] = {N, C}, s1[1] = {N}, one[1] = {1};
    for (int k = 0; k < 2; k++) {
        const double e = k ? 0.1 : 0.0;
        hv lv, tv, ov, cv;
        float cwant = -1.0f;
        nnm_nll_args a = {sizeof a, 0, -100, e, hvf(&lv, logp, 2, s2, NULL, 0),
                          hv_init(&tv, target, I64, 1, s1, NULL, 0), hvf(&ov, want, 1, s1, NULL, 0),
                          hvf(&cv, &cwant, 1, one, NULL, 0)};
        fill_sentinel(want, N);
        fill_sentinel(got, N);
        CU_ASSERT_EQUAL_FATAL(cpu_ok(g_cpu->nll(&g_fake.env, g_state, &a)), NNM_OK);
        for (int64_t i = 0; i < N; i++) {
            CU_ASSERT_FALSE(nnm_cuda_nll_bad(i, C, target, 1, -100));
            nnm_cuda_nll_row(i, C, logp, target, 1, -100, e, got);
        }
        CU_ASSERT_TRUE(same_f32("nll", got, want, N, 0.0, 0.0));
        CU_ASSERT_EQUAL(nnm_cuda_nll_count(N, target, 1, -100), cwant);

        nnm_nll_backward_args b = {sizeof b, 0, -100, e, hvf(&ov, grad, 1, s1, NULL, 0),
                                   hv_init(&tv, target, I64, 1, s1, NULL, 0),
                                   hvf(&lv, gwant, 2, s2, NULL, 0)};
        fill_sentinel(gwant, N * C);
        fill_sentinel(ggot, N * C);
        CU_ASSERT_EQUAL_FATAL(cpu_ok(g_cpu->nll_backward(&g_fake.env, g_state, &b)), NNM_OK);
        for (int64_t q = 0; q < N * C; q++)
            nnm_cuda_nll_backward_elem(q, C, grad, 1, target, 1, -100, e, ggot);
        CU_ASSERT_TRUE(same_f32("nll_backward", ggot, gwant, N * C, 0.0, 0.0));
    }
    /* a target out of range: the cpu backend refuses it, the check finds it */
    target[3] = 5;
    hv lv, tv, ov;
    nnm_nll_args a = {sizeof a, 0, -100, 0.0, hvf(&lv, logp, 2, s2, NULL, 0),
                      hv_init(&tv, target, I64, 1, s1, NULL, 0), hvf(&ov, want, 1, s1, NULL, 0),
                      NULL};
    CU_ASSERT_EQUAL(g_cpu->nll(&g_fake.env, g_state, &a), NNM_E_INVALID);
    int first = -1;
    for (int64_t i = N - 1; i >= 0; i--)
        if (nnm_cuda_nll_bad(i, C, target, 1, -100))
            first = (int)i;
    CU_ASSERT_EQUAL(first, 3);
}

/* ------------------------------------------------------------------------ */
/* sgd_step, adam_step                                                       */
/* ------------------------------------------------------------------------ */

enum { OPT_N = 67 };

/* The bodies' fmaf is what the cpu backend runs where the CPU has FMA: the
 * same bits there; elsewhere its double-precision detour may round a rare
 * tie the other way. */
static double opt_rtol(void) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    return __builtin_cpu_supports("fma") ? 0.0 : 1e-7;
#else
    return 1e-7;
#endif
}

static void test_sgd(void) {
    static float p0[OPT_N], g[OPT_N], b0[OPT_N];
    fill_inputs(p0, OPT_N, 0);
    fill_inputs(g, OPT_N, 0);
    fill_inputs(b0, OPT_N, 0);
    for (int cfg = 0; cfg < 16; cfg++) {
        float pw[OPT_N], bw[OPT_N], pg[OPT_N], bg[OPT_N];
        memcpy(pw, p0, sizeof pw);
        memcpy(pg, p0, sizeof pg);
        memcpy(bw, b0, sizeof bw);
        memcpy(bg, b0, sizeof bg);
        const int mom = cfg & 1;
        nnm_sgd_args a;
        memset(&a, 0, sizeof a);
        a.struct_size = sizeof a;
        a.nesterov = (cfg >> 1) & 1;
        a.first_step = (cfg >> 2) & 1;
        a.n = OPT_N;
        a.param = pw;
        a.grad = g;
        a.momentum_buf = mom ? bw : NULL;
        a.lr = 0.1;
        a.momentum = mom ? 0.9 : 0.0;
        a.dampening = a.nesterov ? 0.0 : 0.1;
        a.weight_decay = (cfg >> 3) & 1 ? 0.01 : 0.0;
        CU_ASSERT_EQUAL_FATAL(cpu_ok(g_cpu->sgd_step(&g_fake.env, g_state, &a)), NNM_OK);
        const nnm_cuda_sgd_k k = nnm_cuda_sgd_scalars(&a);
        for (int64_t i = 0; i < OPT_N; i++)
            nnm_cuda_sgd_elem(&k, i, pg, g, mom ? bg : NULL);
        char what[48];
        snprintf(what, sizeof what, "sgd config %d", cfg);
        CU_ASSERT_TRUE(same_f32(what, pg, pw, OPT_N, opt_rtol(), 0.0));
        CU_ASSERT_TRUE(same_f32(what, bg, bw, OPT_N, opt_rtol(), 0.0));
    }
}

static void test_adam(void) {
    static float p0[OPT_N], g[OPT_N], m0[OPT_N], v0[OPT_N], x0[OPT_N];
    fill_inputs(p0, OPT_N, 0);
    fill_inputs(g, OPT_N, 0);
    fill_inputs(m0, OPT_N, 0);
    for (int i = 0; i < OPT_N; i++) {
        v0[i] = 0.01f * (float)(i % 13);
        x0[i] = 0.015f * (float)(i % 7);
    }
    for (int cfg = 0; cfg < 16; cfg++) {
        float pw[OPT_N], mw[OPT_N], vw[OPT_N], xw[OPT_N], pg[OPT_N], mg[OPT_N], vg[OPT_N], xg[OPT_N];
        memcpy(pw, p0, sizeof pw), memcpy(pg, p0, sizeof pg);
        memcpy(mw, m0, sizeof mw), memcpy(mg, m0, sizeof mg);
        memcpy(vw, v0, sizeof vw), memcpy(vg, v0, sizeof vg);
        memcpy(xw, x0, sizeof xw), memcpy(xg, x0, sizeof xg);
        const int ams = cfg & 1;
        nnm_adam_args a;
        memset(&a, 0, sizeof a);
        a.struct_size = sizeof a;
        a.decoupled = (cfg >> 1) & 1;
        a.step = (cfg >> 2) & 1 ? 3 : 1;
        a.n = OPT_N;
        a.param = pw;
        a.grad = g;
        a.exp_avg = mw;
        a.exp_avg_sq = vw;
        a.max_exp_avg_sq = ams ? xw : NULL;
        a.lr = 1e-3;
        a.beta1 = 0.9;
        a.beta2 = 0.999;
        a.eps = 1e-8;
        a.weight_decay = (cfg >> 3) & 1 ? 0.01 : 0.0;
        CU_ASSERT_EQUAL_FATAL(cpu_ok(g_cpu->adam_step(&g_fake.env, g_state, &a)), NNM_OK);
        const nnm_cuda_adam_k k = nnm_cuda_adam_scalars(&a);
        for (int64_t i = 0; i < OPT_N; i++)
            nnm_cuda_adam_elem(&k, i, pg, g, mg, vg, ams ? xg : NULL);
        char what[48];
        snprintf(what, sizeof what, "adam config %d", cfg);
        CU_ASSERT_TRUE(same_f32(what, pg, pw, OPT_N, opt_rtol(), 0.0));
        CU_ASSERT_TRUE(same_f32(what, mg, mw, OPT_N, opt_rtol(), 0.0));
        CU_ASSERT_TRUE(same_f32(what, vg, vw, OPT_N, opt_rtol(), 0.0));
        CU_ASSERT_TRUE(same_f32(what, xg, xw, OPT_N, opt_rtol(), 0.0));
    }
}

/* ------------------------------------------------------------------------ */
/* cast, arg_reduce                                                          */
/* ------------------------------------------------------------------------ */

static void test_cast(void) {
    static const nnm_dtype dts[5] = {{NNM_DTYPE_FLOAT, 32, 1}, {NNM_DTYPE_INT, 64, 1},
                                     {NNM_DTYPE_INT, 32, 1}, {NNM_DTYPE_UINT, 8, 1},
                                     {NNM_DTYPE_BOOL, 8, 1}};
    static const size_t sizes[5] = {4, 8, 4, 1, 1};
    /* x: [3, 4] read transposed from a [4, 3] buffer of 12 values */
    static const float fv[12] = {0.0f, -0.0f, 1.9f, -1.9f, 300.7f, -300.7f, 3e9f, -3e9f,
                                 1e20f, NAN, INFINITY, -INFINITY};
    static const int64_t iv[12] = {0, 1, -1, 255, 256, -257, 2147483648LL, -2147483649LL,
                                   INT64_MAX, INT64_MIN, 7, 100};
    const int64_t shape[2] = {3, 4}, tstr[2] = {1, 3};
    for (int kx = 0; kx < 5; kx++)
        for (int ko = 0; ko < 5; ko++) {
            unsigned char xb[12 * 8], want[12 * 8 + 8], got[12 * 8 + 8];
            for (int i = 0; i < 12; i++) {
                switch (kx) {
                case 0: memcpy(xb + 4 * i, &fv[i], 4); break;
                case 1: memcpy(xb + 8 * i, &iv[i], 8); break;
                case 2: { int32_t v = (int32_t)iv[i]; memcpy(xb + 4 * i, &v, 4); break; }
                case 3: xb[i] = (unsigned char)iv[i]; break;
                default: xb[i] = (unsigned char)(i % 3 == 0 ? 0 : 1); break;
                }
            }
            memset(want, 0xab, sizeof want);
            memset(got, 0xab, sizeof got);
            hv xv, ov, ov2;
            nnm_cast_args a = {sizeof a, 0, hv_init(&xv, xb, dts[kx], 2, shape, tstr, 0),
                               hv_init(&ov, want, dts[ko], 2, shape, NULL, 0)};
            CU_ASSERT_EQUAL_FATAL(cpu_ok(g_cpu->cast(&g_fake.env, g_state, &a)), NNM_OK);
            nnm_strided_layout L;
            memset(&L, 0, sizeof L); /* GCC 12 -O3 cannot see the FATAL assert below */
            const nnm_tensor_desc *ds[2] = {hv_init(&ov2, got, dts[ko], 2, shape, NULL, 0), a.x};
            static const char *const names[2] = {"output", "x"};
            CU_ASSERT_EQUAL_FATAL(
                nnm_strided_layout_init(NULL, "cuda", "cast", &L, 2, shape, 2, ds, names), NNM_OK);
            for (int64_t e = 0; e < 12; e++)
                nnm_cuda_cast_elem(&L, e, kx, xb, ko, got);
            if (memcmp(got, want, sizeof want) != 0)
                fprintf(stderr, "\n  cast %d -> %d differs\n", kx, ko);
            CU_ASSERT_EQUAL(memcmp(got, want, 12 * sizes[ko] + 8), 0);
        }
}

static void test_arg_reduce(void) {
    enum { O = 3, NN = 7, I = 4 };
    static float x[O * NN * I];
    fill_inputs(x, O * NN * I, 0);
    for (int i = 0; i < O * NN * I; i += 5)
        x[i] = 1.0f; /* ties: the first wins */
    x[30] = NAN;
    x[61] = NAN;
    const int64_t shape[3] = {O, NN, I}, oshape[2] = {O, I};
    for (int op = NNM_REDUCE_MAX; op <= NNM_REDUCE_MIN; op++) {
        int64_t want[O * I], got[O * I];
        hv xv, ov;
        nnm_arg_reduce_args a = {sizeof a, op, O, NN, I, hvf(&xv, x, 3, shape, NULL, 0),
                                 hv_init(&ov, want, I64, 2, oshape, NULL, 0)};
        CU_ASSERT_EQUAL_FATAL(cpu_ok(g_cpu->arg_reduce(&g_fake.env, g_state, &a)), NNM_OK);
        for (int64_t r = 0; r < O * I; r++)
            nnm_cuda_arg_reduce_elem(r, NN, I, op == NNM_REDUCE_MAX, x, got);
        CU_ASSERT_EQUAL(memcmp(got, want, sizeof want), 0);
    }
}

/* ------------------------------------------------------------------------ */
/* im2col, col2im                                                            */
/* ------------------------------------------------------------------------ */

/* out = floor((in + 2p - d (k - 1) - 1) / s) + 1 */
static int64_t conv_out(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d) {
    const int64_t span = in + 2 * p - d * (k - 1) - 1;
    return span < 0 ? 0 : span / s + 1;
}

static void test_im2col(void) {
    /* (n_spatial, channels, in, k, s, p, d) */
    static const struct {
        int32_t ns;
        int64_t ch, in[3], k[3], s[3], p[3], d[3];
    } cases[] = {
        {2, 3, {7, 6}, {3, 3}, {1, 1}, {1, 1}, {1, 1}},
        {2, 2, {9, 8}, {3, 2}, {2, 3}, {1, 0}, {2, 1}},
        {1, 4, {11}, {4}, {3}, {2}, {1}},
        {3, 2, {4, 5, 3}, {2, 3, 2}, {1, 2, 1}, {1, 1, 0}, {1, 1, 2}},
        {2, 1, {2, 2}, {5, 5}, {1, 1}, {2, 2}, {1, 1}}, /* window larger than the image */
        {2, 2, {1, 1}, {3, 3}, {2, 2}, {0, 0}, {1, 1}}, /* no output position */
    };
    static float im[4096], col[16384], want[16384], got[16384], imw[4096], img[4096];
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        nnm_im2col_args a;
        memset(&a, 0, sizeof a);
        a.struct_size = sizeof a;
        a.n_spatial = cases[t].ns;
        a.channels = cases[t].ch;
        int64_t nim = a.channels, L = 1, K = 1;
        for (int i = 0; i < a.n_spatial; i++) {
            a.im_size[i] = cases[t].in[i];
            a.kernel[i] = cases[t].k[i];
            a.stride[i] = cases[t].s[i];
            a.padding[i] = cases[t].p[i];
            a.dilation[i] = cases[t].d[i];
            a.col_size[i] = conv_out(a.im_size[i], a.kernel[i], a.stride[i], a.padding[i], a.dilation[i]);
            nim *= a.im_size[i];
            L *= a.col_size[i];
            K *= a.kernel[i];
        }
        const int64_t ncol = a.channels * K * L;
        CU_ASSERT_FATAL(nim <= 4096 && ncol <= 16384);
        fill_inputs(im, 4096, 0);
        fill_inputs(col, 16384, 0);
        nnm_cuda_geom3 G;
        CU_ASSERT_EQUAL_FATAL(nnm_cuda_geom_promote(&G, &a), -1);
        /* im2col */
        fill_sentinel(want, 16384);
        fill_sentinel(got, 16384);
        a.im = im;
        a.col = want;
        CU_ASSERT_EQUAL_FATAL(cpu_ok(g_cpu->im2col(&g_fake.env, g_state, &a)), NNM_OK);
        for (int64_t q = 0; q < ncol; q++)
            nnm_cuda_im2col_elem(&G, q, im, got);
        char what[48];
        snprintf(what, sizeof what, "im2col case %zu", t);
        CU_ASSERT_TRUE(same_f32(what, got, want, 16384, 0.0, 0.0));
        /* col2im: the same bits (the sums in the cpu backend's order) */
        fill_sentinel(imw, 4096);
        fill_sentinel(img, 4096);
        a.im = imw;
        a.col = col;
        CU_ASSERT_EQUAL_FATAL(cpu_ok(g_cpu->col2im(&g_fake.env, g_state, &a)), NNM_OK);
        for (int64_t q = 0; q < nim; q++)
            nnm_cuda_col2im_elem(&G, q, col, img);
        snprintf(what, sizeof what, "col2im case %zu", t);
        CU_ASSERT_TRUE(same_f32(what, img, imw, 4096, 0.0, 0.0));
    }
    nnm_im2col_args b;
    memset(&b, 0, sizeof b);
    nnm_cuda_geom3 G;
    b.n_spatial = 4;
    CU_ASSERT_EQUAL(nnm_cuda_geom_promote(&G, &b), -2);
    b.n_spatial = 2;
    b.kernel[0] = b.kernel[1] = b.stride[0] = b.stride[1] = b.dilation[0] = 1;
    b.dilation[1] = 0;
    CU_ASSERT_EQUAL(nnm_cuda_geom_promote(&G, &b), 1);
}

/* ------------------------------------------------------------------------ */
/* index_select, index_add                                                   */
/* ------------------------------------------------------------------------ */

static void test_index(void) {
    enum { O = 3, N = 5, M = 7, I = 4 };
    int64_t idx[M] = {4, 0, 2, 2, 4, 1, 4}; /* repeats: index_add sums them */
    const int64_t sm[1] = {M};
    /* index_select of 4-, 8-, 2- and 1-byte elements */
    static const uint32_t esizes[4] = {4, 8, 2, 1};
    for (int e = 0; e < 4; e++) {
        const uint32_t es = esizes[e];
        unsigned char src[O * N * I * 8], want[O * M * I * 8 + 16], got[O * M * I * 8 + 16];
        for (size_t b = 0; b < sizeof src; b++)
            src[b] = (unsigned char)(b * 37u + 11u);
        memset(want, 0xcd, sizeof want);
        memset(got, 0xcd, sizeof got);
        const nnm_dtype dt = es == 4 ? NNM_F32 : es == 8 ? I64 : (nnm_dtype){NNM_DTYPE_UINT, (uint8_t)(8 * es), 1};
        const int64_t ss[3] = {O, N, I}, ds[3] = {O, M, I};
        hv iv, sv, dv;
        nnm_index_args a = {sizeof a, es, O, N, I, M, hv_init(&iv, idx, I64, 1, sm, NULL, 0),
                            hv_init(&sv, src, dt, 3, ss, NULL, 0), hv_init(&dv, want, dt, 3, ds, NULL, 0)};
        CU_ASSERT_EQUAL_FATAL(cpu_ok(g_cpu->index_select(&g_fake.env, g_state, &a)), NNM_OK);
        for (int64_t q = 0; q < O * M * I; q++)
            nnm_cuda_index_select_elem(q, N, M, I, es, idx, (const char *)src, (char *)got);
        CU_ASSERT_EQUAL(memcmp(got, want, sizeof want), 0);
    }
    /* index_add: the bits of the cpu backend's sums (same order on the host) */
    static float src[O * M * I], dw[O * N * I], dg[O * N * I];
    fill_inputs(src, O * M * I, 0);
    fill_inputs(dw, O * N * I, 0);
    memcpy(dg, dw, sizeof dg);
    const int64_t ss[3] = {O, M, I}, ds[3] = {O, N, I};
    hv iv, sv, dv;
    nnm_index_args a = {sizeof a, 4, O, N, I, M, hv_init(&iv, idx, I64, 1, sm, NULL, 0),
                        hvf(&sv, src, 3, ss, NULL, 0), hvf(&dv, dw, 3, ds, NULL, 0)};
    CU_ASSERT_EQUAL_FATAL(cpu_ok(g_cpu->index_add(&g_fake.env, g_state, &a)), NNM_OK);
    for (int64_t q = 0; q < O * M * I; q++)
        nnm_cuda_index_add_elem(q, N, M, I, idx, src, dg);
    CU_ASSERT_TRUE(same_f32("index_add", dg, dw, O * N * I, 0.0, 0.0));
    /* a corrupt index reads and writes nothing */
    idx[2] = 99;
    for (int64_t q = 0; q < O * M * I; q++)
        nnm_cuda_index_add_elem(q, N, M, I, idx, src, dg);
    /* (under ASan an access at row 99 would stop the suite) */
    static float sel[O * M * I];
    fill_sentinel(sel, O * M * I);
    for (int64_t q = 0; q < O * M * I; q++)
        nnm_cuda_index_select_elem(q, N, M, I, 4, idx, (const char *)dw, (char *)sel);
    for (int64_t q = 0; q < O * M * I; q++)
        if ((q / I) % M == 2)
            CU_ASSERT_EQUAL(sel[q], 0.0f);
}

/* ------------------------------------------------------------------------ */
/* layer_norm, layer_norm_backward                                           */
/* ------------------------------------------------------------------------ */

static void test_layer_norm(void) {
    static const int64_t cases[][2] = {{5, 7}, {3, 33}, {4, 1}, {0, 5}, {2, 300}};
    static float x[1024], r[1024], w[512], b[512], g[1024];
    static float yw[1024], yg[1024], mw[64], mg[64], sw[64], sg[64];
    static float gxw[1024], gxg[1024], gww[512], gwg[512], gbw[512], gbg[512];
    fill_inputs(x, 1024, 0);
    fill_inputs(r, 1024, 0);
    fill_inputs(w, 512, 0);
    fill_inputs(b, 512, 0);
    fill_inputs(g, 1024, 0);
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++)
        for (int opt = 0; opt < 8; opt++) {
            const int64_t R = cases[t][0], C = cases[t][1], rc[1] = {R * C}, cs[1] = {C}, rs[1] = {R};
            const int has_r = opt & 1, has_w = (opt >> 1) & 1, has_b = (opt >> 2) & 1;
            hv xv, rv, wv, bv, yv, mv, sv, gv, gxv, gwv, gbv;
            nnm_layer_norm_args a;
            memset(&a, 0, sizeof a);
            a.struct_size = sizeof a;
            a.rows = R;
            a.cols = C;
            a.eps = 1e-5;
            a.x = hvf(&xv, x, 1, rc, NULL, 0);
            a.residual = has_r ? hvf(&rv, r, 1, rc, NULL, 0) : NULL;
            a.weight = has_w ? hvf(&wv, w, 1, cs, NULL, 0) : NULL;
            a.bias = has_b ? hvf(&bv, b, 1, cs, NULL, 0) : NULL;
            a.y = hvf(&yv, yw, 1, rc, NULL, 0);
            a.mean = hvf(&mv, mw, 1, rs, NULL, 0);
            a.rstd = hvf(&sv, sw, 1, rs, NULL, 0);
            fill_sentinel(yw, 1024), fill_sentinel(yg, 1024);
            fill_sentinel(mw, 64), fill_sentinel(mg, 64), fill_sentinel(sw, 64), fill_sentinel(sg, 64);
            CU_ASSERT_EQUAL_FATAL(cpu_ok(g_cpu->layer_norm(&g_fake.env, g_state, &a)), NNM_OK);
            for (int64_t row = 0; row < R; row++)
                nnm_cuda_ln_fwd_row(row, C, 1e-5f, x, has_r ? r : NULL, has_w ? w : NULL,
                                    has_b ? b : NULL, yg, mg, sg);
            char what[64];
            snprintf(what, sizeof what, "layer_norm [%lld, %lld] opt %d", (long long)R, (long long)C, opt);
            CU_ASSERT_TRUE(same_f32(what, yg, yw, 1024, 1e-5, 1e-6));
            CU_ASSERT_TRUE(same_f32(what, mg, mw, 64, 1e-6, 1e-7));
            CU_ASSERT_TRUE(same_f32(what, sg, sw, 64, 1e-6, 0.0));
            /* backward from the cpu backend's saved statistics */
            nnm_layer_norm_args bw = a;
            bw.y = NULL;
            bw.bias = NULL;
            bw.grad_out = hvf(&gv, g, 1, rc, NULL, 0);
            bw.grad_x = hvf(&gxv, gxw, 1, rc, NULL, 0);
            bw.grad_weight = has_w ? hvf(&gwv, gww, 1, cs, NULL, 0) : NULL;
            bw.grad_bias = has_b ? hvf(&gbv, gbw, 1, cs, NULL, 0) : NULL;
            fill_sentinel(gxw, 1024), fill_sentinel(gxg, 1024);
            fill_sentinel(gww, 512), fill_sentinel(gwg, 512), fill_sentinel(gbw, 512), fill_sentinel(gbg, 512);
            CU_ASSERT_EQUAL_FATAL(cpu_ok(g_cpu->layer_norm_backward(&g_fake.env, g_state, &bw)), NNM_OK);
            for (int64_t row = 0; row < R; row++)
                nnm_cuda_ln_bwd_row(row, C, x, has_r ? r : NULL, has_w ? w : NULL, g, mw, sw, gxg);
            if (has_w || has_b)
                for (int64_t col = 0; col < C; col++)
                    nnm_cuda_ln_bwd_col(col, R, C, x, has_r ? r : NULL, g, mw, sw,
                                        has_w ? gwg : NULL, has_b ? gbg : NULL);
            CU_ASSERT_TRUE(same_f32(what, gxg, gxw, 1024, 1e-4, 2e-6));
            CU_ASSERT_TRUE(same_f32(what, gwg, gww, 512, 1e-5, 1e-5));
            CU_ASSERT_TRUE(same_f32(what, gbg, gbw, 512, 1e-5, 1e-5));
        }
}

/* ------------------------------------------------------------------------ */
/* rnn_cell, rnn_cell_backward                                               */
/* ------------------------------------------------------------------------ */

static void test_rnn_cell(void) {
    enum { B = 3, H = 5, GH = 4 * H, BH = B * H, BG = B * GH };
    static float gx[BG], gh[BG], bh[GH], hp[BH], cp[BH], dh[BH], dc0[BH], dhp0[BH];
    fill_inputs(gx, BG, 0);
    fill_inputs(gh, BG, 0);
    fill_inputs(bh, GH, 0);
    fill_inputs(hp, BH, 0);
    fill_inputs(cp, BH, 0);
    fill_inputs(dh, BH, 0);
    fill_inputs(dc0, BH, 0);
    fill_inputs(dhp0, BH, 0);
    gx[2] = NAN; /* relu keeps it */
    for (int mode = NNM_RNN_TANH; mode <= NNM_RNN_GRU; mode++)
        for (int with_b = 0; with_b <= 1; with_b++) {
            float hw[BH], hg[BH], cw[BH], cg[BH], aw[B * 4 * H], ag[B * 4 * H];
            fill_sentinel(hw, BH), fill_sentinel(hg, BH), fill_sentinel(cw, BH), fill_sentinel(cg, BH);
            fill_sentinel(aw, B * 4 * H), fill_sentinel(ag, B * 4 * H);
            nnm_rnn_cell_args a;
            memset(&a, 0, sizeof a);
            a.struct_size = sizeof a;
            a.mode = mode;
            a.batch = B;
            a.hidden = H;
            a.gx = gx;
            a.gh = gh;
            a.b_hh = with_b ? bh : NULL;
            a.h_prev = hp;
            a.c_prev = cp;
            a.h = hw;
            a.c = cw;
            a.act = mode >= NNM_RNN_LSTM ? aw : NULL;
            CU_ASSERT_EQUAL_FATAL(cpu_ok(g_cpu->rnn_cell(&g_fake.env, g_state, &a)), NNM_OK);
            nnm_rnn_cell_args k = a;
            k.h = hg;
            k.c = cg;
            k.act = mode >= NNM_RNN_LSTM ? ag : NULL;
            for (int64_t q = 0; q < BH; q++)
                nnm_cuda_rnn_fwd_elem(&k, q);
            char what[48];
            snprintf(what, sizeof what, "rnn_cell mode %d bias %d", mode, with_b);
            CU_ASSERT_TRUE(same_f32(what, hg, hw, BH, 2e-6, 1e-6));
            CU_ASSERT_TRUE(same_f32(what, cg, cw, BH, 2e-6, 1e-6));
            CU_ASSERT_TRUE(same_f32(what, ag, aw, B * 4 * H, 2e-6, 1e-6));
            /* backward from the cpu backend's forward */
            float dgxw[BG], dgxg[BG], dghw[BG], dghg[BG], dcw[BH], dcg[BH], dhpw[BH], dhpg[BH];
            fill_sentinel(dgxw, BG), fill_sentinel(dgxg, BG), fill_sentinel(dghw, BG), fill_sentinel(dghg, BG);
            memcpy(dcw, dc0, sizeof dcw), memcpy(dcg, dc0, sizeof dcg);
            memcpy(dhpw, dhp0, sizeof dhpw), memcpy(dhpg, dhp0, sizeof dhpg);
            nnm_rnn_cell_args b = a;
            b.dh = dh;
            b.dc = dcw;
            b.dgx = dgxw;
            b.dgh = dghw;
            b.dh_prev = dhpw;
            CU_ASSERT_EQUAL_FATAL(cpu_ok(g_cpu->rnn_cell_backward(&g_fake.env, g_state, &b)), NNM_OK);
            nnm_rnn_cell_args kb = b;
            kb.dc = dcg;
            kb.dgx = dgxg;
            kb.dgh = dghg;
            kb.dh_prev = dhpg;
            for (int64_t q = 0; q < BH; q++)
                nnm_cuda_rnn_bwd_elem(&kb, q);
            CU_ASSERT_TRUE(same_f32(what, dgxg, dgxw, BG, 2e-6, 1e-6));
            CU_ASSERT_TRUE(same_f32(what, dghg, dghw, BG, 2e-6, 1e-6));
            CU_ASSERT_TRUE(same_f32(what, dcg, dcw, BH, 2e-6, 1e-6));
            CU_ASSERT_TRUE(same_f32(what, dhpg, dhpw, BH, 2e-6, 1e-6));
        }
}

/* ------------------------------------------------------------------------ */
/* embedding_bag, embedding_bag_backward                                     */
/* ------------------------------------------------------------------------ */

static void test_embedding_bag(void) {
    enum { NUM = 6, D = 5, NI = 11, BAGS = 5 };
    /* bags: [0,3) [3,3) (empty) [3,7) [7,8) (padding only) [8,11) */
    int64_t idx[NI] = {1, 4, 1, 0, 5, 2, 2, 3, 4, 0, 4};
    int64_t off[BAGS + 1] = {0, 3, 3, 7, 8, 11};
    static float w[NUM * D], psw[NI], g[BAGS * D];
    fill_inputs(w, NUM * D, 0);
    fill_inputs(psw, NI, 0);
    fill_inputs(g, BAGS * D, 0);
    w[2 * D + 1] = NAN; /* never replaces a maximum; sums carry it */
    const int64_t ws[1] = {NUM * D}, ns[1] = {NI}, os[1] = {BAGS + 1}, bs[1] = {BAGS * D};
    for (int mode = NNM_REDUCE_SUM; mode <= NNM_REDUCE_MAX; mode++)
        for (int pad = -1; pad <= 3; pad += 4)
            for (int use_psw = 0; use_psw <= (mode == NNM_REDUCE_SUM); use_psw++) {
                float yw[BAGS * D], yg[BAGS * D];
                int64_t aw[BAGS * D], ag[BAGS * D];
                fill_sentinel(yw, BAGS * D), fill_sentinel(yg, BAGS * D);
                memset(aw, 0x7f, sizeof aw), memset(ag, 0x7f, sizeof ag);
                hv wv, iv, ov, pv, yv, av, gv, gwv, gpv;
                nnm_embedding_bag_args a;
                memset(&a, 0, sizeof a);
                a.struct_size = sizeof a;
                a.mode = mode;
                a.padding_idx = pad;
                a.num_embeddings = NUM;
                a.dim = D;
                a.n = NI;
                a.bags = BAGS;
                a.weight = hvf(&wv, w, 1, ws, NULL, 0);
                a.indices = hv_init(&iv, idx, I64, 1, ns, NULL, 0);
                a.offsets = hv_init(&ov, off, I64, 1, os, NULL, 0);
                a.per_sample_weights = use_psw ? hvf(&pv, psw, 1, ns, NULL, 0) : NULL;
                a.out = hvf(&yv, yw, 1, bs, NULL, 0);
                a.arg = mode == NNM_REDUCE_MAX ? hv_init(&av, aw, I64, 1, bs, NULL, 0) : NULL;
                CU_ASSERT_EQUAL_FATAL(cpu_ok(g_cpu->embedding_bag(&g_fake.env, g_state, &a)), NNM_OK);
                nnm_cuda_bag B;
                memset(&B, 0, sizeof B);
                B.mode = mode, B.pad = pad, B.num = NUM, B.dim = D, B.n = NI, B.bags = BAGS;
                B.w = w, B.idx = idx, B.off = off, B.psw = use_psw ? psw : NULL;
                B.out = yg, B.arg = mode == NNM_REDUCE_MAX ? ag : NULL;
                for (int64_t q = 0; q < BAGS * D; q++)
                    nnm_cuda_bag_fwd_elem(&B, q);
                char what[64];
                snprintf(what, sizeof what, "embedding_bag mode %d pad %d psw %d", mode, pad, use_psw);
                CU_ASSERT_TRUE(same_f32(what, yg, yw, BAGS * D, 0.0, 0.0));
                if (mode == NNM_REDUCE_MAX)
                    CU_ASSERT_EQUAL(memcmp(ag, aw, sizeof aw), 0);
                /* backward: grad_weight added into (the same start), grad_psw */
                float gww[NUM * D], gwg[NUM * D], gpw[NI], gpg[NI];
                fill_inputs(gww, NUM * D, 0);
                memcpy(gwg, gww, sizeof gwg);
                fill_sentinel(gpw, NI), fill_sentinel(gpg, NI);
                nnm_embedding_bag_args b = a;
                b.out = NULL;
                b.grad_out = hvf(&gv, g, 1, bs, NULL, 0);
                b.grad_weight = hvf(&gwv, gww, 1, ws, NULL, 0);
                b.grad_per_sample_weights = use_psw ? hvf(&gpv, gpw, 1, ns, NULL, 0) : NULL;
                CU_ASSERT_EQUAL_FATAL(cpu_ok(g_cpu->embedding_bag_backward(&g_fake.env, g_state, &b)), NNM_OK);
                B.out = NULL;
                B.arg = mode == NNM_REDUCE_MAX ? aw : NULL; /* what forward gave */
                B.g = g, B.gw = gwg, B.gpsw = use_psw ? gpg : NULL;
                for (int64_t q = 0; q < BAGS * D; q++) {
                    if (mode == NNM_REDUCE_MAX)
                        nnm_cuda_bag_bwd_max_elem(&B, q);
                    else
                        nnm_cuda_bag_bwd_sum_elem(&B, q);
                }
                if (use_psw)
                    for (int64_t i = 0; i < NI; i++)
                        nnm_cuda_bag_bwd_psw_elem(&B, i);
                CU_ASSERT_TRUE(same_f32(what, gwg, gww, NUM * D, 0.0, 0.0));
                CU_ASSERT_TRUE(same_f32(what, gpg, gpw, NI, 1e-6, 1e-6));
            }
}

/* ------------------------------------------------------------------------ */
/* ctc_loss, ctc_loss_backward                                               */
/* ------------------------------------------------------------------------ */

static void test_ctc(void) {
    enum { T = 6, N = 4, C = 4, S = 3, W = 2 * S + 1 };
    static float lp[T * N * C];
    fill_inputs(lp, T * N * C, 0);
    for (int r = 0; r < T * N; r++) { /* rows of log-probabilities */
        double z = 0.0;
        for (int c = 0; c < C; c++)
            z += exp((double)lp[r * C + c]);
        for (int c = 0; c < C; c++)
            lp[r * C + c] -= (float)log(z);
    }
    /* sample 2 cannot align (3 labels, 2 repeated, in 3 steps); sample 3 is empty */
    int64_t tgs[N * S] = {1, 2, 0, 3, 3, 1, 2, 2, 2, 1, 0, 0};
    int64_t il[N] = {6, 5, 3, 0}, tl[N] = {2, 3, 3, 1};
    float go[N] = {1.0f, 0.5f, -2.0f, 1.5f};
    const int64_t lps[3] = {T, N, C}, ts[2] = {N, S}, ns[1] = {N}, as[3] = {N, T, W};
    for (int zi = 0; zi <= 1; zi++) {
        static float nw[N], ng[N], aw[N * T * W], ag[N * T * W], gw[T * N * C], gg[T * N * C];
        static float work[N * (2 * W + C)];
        fill_sentinel(nw, N), fill_sentinel(ng, N), fill_sentinel(aw, N * T * W), fill_sentinel(ag, N * T * W);
        hv lv, tv, iv, lv2, nv, av, gov, gv;
        nnm_ctc_args a;
        memset(&a, 0, sizeof a);
        a.struct_size = sizeof a;
        a.zero_infinity = zi;
        a.blank = 0;
        a.t = T, a.n = N, a.c = C, a.s = S;
        a.log_probs = hvf(&lv, lp, 3, lps, NULL, 0);
        a.targets = hv_init(&tv, tgs, I64, 2, ts, NULL, 0);
        a.input_lengths = hv_init(&iv, il, I64, 1, ns, NULL, 0);
        a.target_lengths = hv_init(&lv2, tl, I64, 1, ns, NULL, 0);
        a.nll = hvf(&nv, nw, 1, ns, NULL, 0);
        a.alpha = hvf(&av, aw, 3, as, NULL, 0);
        CU_ASSERT_EQUAL_FATAL(cpu_ok(g_cpu->ctc_loss(&g_fake.env, g_state, &a)), NNM_OK);
        nnm_cuda_ctc P;
        memset(&P, 0, sizeof P);
        P.t = T, P.n = N, P.c = C, P.s = S, P.blank = 0, P.zero_infinity = zi;
        P.lp = lp, P.tgs = tgs, P.il = il, P.tl = tl, P.nll = ng, P.alpha = ag;
        for (int64_t b = 0; b < N; b++)
            nnm_cuda_ctc_fwd_sample(&P, b);
        CU_ASSERT_TRUE(same_f32("ctc nll", ng, nw, N, 0.0, 0.0));
        CU_ASSERT_TRUE(same_f32("ctc alpha", ag, aw, N * T * W, 0.0, 0.0));
        fill_sentinel(gw, T * N * C), fill_sentinel(gg, T * N * C);
        nnm_ctc_args b = a;
        b.grad_out = hvf(&gov, go, 1, ns, NULL, 0);
        b.grad_log_probs = hvf(&gv, gw, 3, lps, NULL, 0);
        CU_ASSERT_EQUAL_FATAL(cpu_ok(g_cpu->ctc_loss_backward(&g_fake.env, g_state, &b)), NNM_OK);
        P.alpha = aw;
        P.go = go, P.go_stride = 1, P.grad = gg, P.work = work;
        for (int64_t q = 0; q < N; q++)
            nnm_cuda_ctc_bwd_sample(&P, q);
        CU_ASSERT_TRUE(same_f32("ctc grad", gg, gw, T * N * C, 0.0, 0.0));
        CU_ASSERT_TRUE(isinf(nw[2]) || zi); /* the unalignable sample */
    }
}

/* ------------------------------------------------------------------------ */

int main(void) {
    CU_pSuite s = tu_suite("cuda_bodies", suite_init, suite_clean);
    if (s == NULL)
        return 1;
    CU_add_test(s, "unary: every op, every geometry", test_unary_all_ops);
    CU_add_test(s, "binary: every op, every geometry", test_binary_all_ops);
    CU_add_test(s, "where", test_where);
    CU_add_test(s, "reduce: every op, every dim subset", test_reduce);
    CU_add_test(s, "softmax / log_softmax", test_softmax);
    CU_add_test(s, "nll / nll_backward, with smoothing and ignore_index", test_nll);
    CU_add_test(s, "sgd_step: every momentum / nesterov / decay case", test_sgd);
    CU_add_test(s, "adam_step: Adam, AdamW, amsgrad, decay, steps 1 and 3", test_adam);
    CU_add_test(s, "cast: every pair of dtypes, strided x, edge values", test_cast);
    CU_add_test(s, "arg_reduce: ties and NaN", test_arg_reduce);
    CU_add_test(s, "im2col / col2im: 1-d, 2-d, 3-d, stride, padding, dilation", test_im2col);
    CU_add_test(s, "index_select (1, 2, 4, 8 bytes) / index_add (repeats)", test_index);
    CU_add_test(s, "layer_norm / backward: residual, weight, bias, every combination", test_layer_norm);
    CU_add_test(s, "rnn_cell / backward: tanh, relu, LSTM, GRU, with and without b_hh", test_rnn_cell);
    CU_add_test(s, "embedding_bag / backward: sum, mean, max, padding, empty bags, weights",
                test_embedding_bag);
    CU_add_test(s, "ctc_loss / backward: alignable, unalignable, empty, zero_infinity", test_ctc);
    return tu_run();
}
