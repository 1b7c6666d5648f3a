/* tests/cuda/test_cuda_ops.c - every backend slot of the cuda backend's op
 * families (plugins/cuda/cuda_ops.h) on a GPU against the cpu backend.
 *
 * nnm_cuda.so and nnm_cpu.so are dlopened and driven directly (as
 * tests/cuda/test_cuda.c does for fill/unary/binary/gemm) with the same
 * random inputs: the cpu backend runs on host buffers, the cuda backend on
 * device copies of them, and the device's outputs (whole buffers, padding
 * included) are compared with the host's within a stated tolerance (device
 * libm's last ulps; sums in another order where the cuda kernels sum in
 * double or with atomics). Where there is no device (or the plugin was not
 * built) it prints
 *     test_cuda_ops: SKIPPED: <why>
 * and checks only that the plugin's descriptor lists every slot.
 *
 * The kernels' bodies are proven on the host by test_cuda_bodies; this suite
 * proves the launches, streams, scratch memory and argument plumbing, and is
 * what scripts/gpu-check.sh runs on a machine with a GPU.
 */
#include "test_util.h"

#include <dlfcn.h>

#ifndef NNM_TEST_PLUGIN_DIR
#error "NNM_TEST_PLUGIN_DIR must name the directory holding the plugins"
#endif
#ifndef NNM_TEST_HAVE_CUDA_PLUGIN
#define NNM_TEST_HAVE_CUDA_PLUGIN 0
#endif

static const nnm_device CUDA0 = {NNM_DEVICE_CUDA, 0};
static const nnm_device CPU0 = {NNM_DEVICE_CPU, 0};
static const nnm_dtype I64 = {NNM_DTYPE_INT, 64, 1};

static tu_fake_host g_fake;
static uint32_t g_rng = 777u;

typedef struct backend {
    void *dl;
    const nnm_backend_vtable *vt;
    void *state;
} backend;

static backend g_be[2]; /* [0] cpu, [1] cuda */
static char g_skip[1024];

static int backend_open(backend *b, const char *file) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", NNM_TEST_PLUGIN_DIR, file);
    const nnm_plugin_desc *d = tu_plugin_open(path, &b->dl);
    if (d == NULL || d->n_backends != 1 || d->backends == NULL)
        return 0;
    b->vt = d->backends[0];
    return 1;
}

static void backend_close(backend *b) {
    if (b->state != NULL)
        b->vt->shutdown(b->state);
    if (b->dl != NULL)
        dlclose(b->dl);
    memset(b, 0, sizeof *b);
}

/* The backend's status, its message printed when it is not NNM_OK. */
static nnm_status ok(int gpu, nnm_status st) {
    if (st != NNM_OK)
        fprintf(stderr, "\n  %s: %s\n", gpu ? "cuda" : "cpu", g_fake.msg);
    return st;
}
#define VT(gpu) (g_be[gpu].vt)
#define ST(gpu) (g_be[gpu].state)
#define ENV (&g_fake.env)

/* ---- buffers on both sides ------------------------------------------------ */

/* The same bytes on the host (h) and on device 0 (d). */
typedef struct pb {
    void *h;
    void *d;
    size_t bytes;
} pb;

#define MAX_PB 32
static pb *g_live[MAX_PB];
static int g_nlive;

static void pb_init(pb *p, const void *init, size_t bytes) {
    p->bytes = bytes;
    p->h = malloc(bytes > 0 ? bytes : 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p->h);
    if (init != NULL)
        memcpy(p->h, init, bytes);
    else
        memset(p->h, 0, bytes);
    p->d = NULL;
    CU_ASSERT_EQUAL_FATAL(ok(1, VT(1)->alloc(ENV, ST(1), 0, bytes, &p->d)), NNM_OK);
    if (bytes > 0)
        CU_ASSERT_EQUAL_FATAL(ok(1, VT(1)->memcpy(ENV, ST(1), p->d, CUDA0, p->h, CPU0, bytes)), NNM_OK);
    if (g_nlive < MAX_PB)
        g_live[g_nlive++] = p;
}

/* n floats, random in [-4, 4) (a few specials when asked) */
static void pb_rand(pb *p, size_t n, int specials) {
    float *v = malloc(n * sizeof(float) + 1);
    for (size_t i = 0; i < n; i++) {
        v[i] = 2.0f * tu_rand(&g_rng);
        if (specials && i % 11 == 5)
            v[i] = (i / 11) % 3 == 0 ? NAN : (i / 11) % 3 == 1 ? INFINITY : 0.5f;
    }
    pb_init(p, v, n * sizeof(float));
    free(v);
}

static void pb_sentinel(pb *p, size_t n) {
    float *v = malloc(n * sizeof(float) + 1);
    for (size_t i = 0; i < n; i++)
        v[i] = 1234.5f;
    pb_init(p, v, n * sizeof(float));
    free(v);
}

static void *pb_at(const pb *p, int gpu) {
    return gpu ? p->d : p->h;
}

/* The device bytes, downloaded (free it). */
static void *pb_fetch(const pb *p) {
    void *h = malloc(p->bytes + 1);
    if (p->bytes > 0)
        CU_ASSERT_EQUAL(ok(1, VT(1)->memcpy(ENV, ST(1), h, CPU0, p->d, CUDA0, p->bytes)), NNM_OK);
    return h;
}

static void pb_free_all(void) {
    for (int i = 0; i < g_nlive; i++) {
        free(g_live[i]->h);
        VT(1)->free(ST(1), 0, g_live[i]->d);
    }
    g_nlive = 0;
}

/* device float output vs host, whole buffer */
static int same_f(const char *what, const pb *p, double rtol, double atol) {
    float *d = pb_fetch(p);
    const int bad = tu_count_mismatch(what, d, p->h, (int64_t)(p->bytes / sizeof(float)), rtol,
                                      atol, TU_MATCH_NONFINITE);
    free(d);
    return bad == 0;
}

static int same_bytes(const char *what, const pb *p) {
    void *d = pb_fetch(p);
    const int same = memcmp(d, p->h, p->bytes) == 0;
    if (!same)
        fprintf(stderr, "\n  %s: device bytes differ\n", what);
    free(d);
    return same;
}

/* ---- descriptors ------------------------------------------------------------ */

typedef struct hv {
    nnm_tensor_desc d;
    int64_t shape[NNM_MAX_DIMS];
    int64_t strides[NNM_MAX_DIMS];
} hv;

static nnm_tensor_desc *pd(hv *v, const pb *p, int gpu, nnm_dtype dt, int32_t ndim,
                           const int64_t *shape, const int64_t *strides, int64_t off) {
    memset(v, 0, sizeof *v);
    v->d.data = pb_at(p, gpu);
    v->d.device = gpu ? CUDA0 : CPU0;
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

static nnm_tensor_desc *pf(hv *v, const pb *p, int gpu, int32_t ndim, const int64_t *shape) {
    return pd(v, p, gpu, NNM_F32, ndim, shape, NULL, 0);
}

/* ------------------------------------------------------------------------ */
/* Elementwise                                                               */
/* ------------------------------------------------------------------------ */

static void test_unary_binary_where(void) {
    /* out [4, 6] strided (every other column) from x read transposed */
    const int64_t shape[2] = {4, 6}, ostr[2] = {12, 2}, xstr[2] = {1, 4};
    for (int op = NNM_UNARY_COPY; op <= NNM_UNARY_HARDSIGMOID_GRAD; op++) {
        pb x, o;
        pb_rand(&x, 24, 1);
        pb_sentinel(&o, 48);
        for (int gpu = 0; gpu <= 1; gpu++) {
            hv xv, ov;
            nnm_unary_args a = {sizeof a, op, op == NNM_UNARY_POW ? 2.0 : 0.7,
                                pd(&xv, &x, gpu, NNM_F32, 2, shape, xstr, 0),
                                pd(&ov, &o, gpu, NNM_F32, 2, shape, ostr, 0)};
            CU_ASSERT_EQUAL(ok(gpu, VT(gpu)->unary(ENV, ST(gpu), &a)), NNM_OK);
        }
        char what[32];
        snprintf(what, sizeof what, "unary op %d", op);
        CU_ASSERT_TRUE(same_f(what, &o, 1e-5, 1e-6));
        pb_free_all();
    }
    const int64_t bshape[2] = {1, 6};
    for (int op = NNM_BINARY_ADD; op <= NNM_BINARY_POW; op++) {
        pb a, b, o;
        pb_rand(&a, 24, 1);
        pb_rand(&b, 6, 1);
        pb_sentinel(&o, 24);
        for (int gpu = 0; gpu <= 1; gpu++) {
            hv av, bv, ov;
            nnm_tensor_desc *bd = pd(&bv, &b, gpu, NNM_F32, 2, bshape, NULL, 0);
            bv.strides[0] = 0; /* broadcast over rows */
            nnm_binary_args r = {sizeof r, op, pd(&av, &a, gpu, NNM_F32, 2, shape, xstr, 0), bd,
                                 pf(&ov, &o, gpu, 2, shape)};
            CU_ASSERT_EQUAL(ok(gpu, VT(gpu)->binary(ENV, ST(gpu), &r)), NNM_OK);
        }
        char what[32];
        snprintf(what, sizeof what, "binary op %d", op);
        CU_ASSERT_TRUE(same_f(what, &o, 1e-5, 1e-6));
        pb_free_all();
    }
    pb c, a, b, o;
    pb_rand(&c, 24, 0);
    pb_rand(&a, 24, 1);
    pb_rand(&b, 1, 0);
    pb_sentinel(&o, 24);
    float *cv = c.h;
    for (int i = 0; i < 24; i++)
        cv[i] = cv[i] > 0.0f ? 1.0f : 0.0f;
    CU_ASSERT_EQUAL(VT(1)->memcpy(ENV, ST(1), c.d, CUDA0, c.h, CPU0, c.bytes), NNM_OK);
    for (int gpu = 0; gpu <= 1; gpu++) {
        hv v0, v1, v2, v3;
        nnm_tensor_desc *bd = pd(&v2, &b, gpu, NNM_F32, 2, (const int64_t[]){1, 1}, NULL, 0);
        nnm_where_args w = {sizeof w, 0, pf(&v0, &c, gpu, 2, shape),
                            pd(&v1, &a, gpu, NNM_F32, 2, shape, xstr, 0), bd,
                            pf(&v3, &o, gpu, 2, shape)};
        CU_ASSERT_EQUAL(ok(gpu, VT(gpu)->where(ENV, ST(gpu), &w)), NNM_OK);
    }
    CU_ASSERT_TRUE(same_f("where", &o, 0.0, 0.0));
    pb_free_all();
}

/* ------------------------------------------------------------------------ */
/* reduce, softmax, log_softmax, arg_reduce, cast                            */
/* ------------------------------------------------------------------------ */

static void test_reductions(void) {
    const int64_t xs[3] = {5, 7, 9};
    for (int mask = 0; mask < 8; mask++)
        for (int op = NNM_REDUCE_SUM; op <= NNM_REDUCE_MIN; op++) {
            int64_t os[3];
            int64_t no = 1;
            for (int i = 0; i < 3; i++) {
                os[i] = (mask >> i) & 1 ? 1 : xs[i];
                no *= os[i];
            }
            pb x, o;
            pb_rand(&x, 5 * 7 * 9, 0);
            pb_sentinel(&o, (size_t)no);
            for (int gpu = 0; gpu <= 1; gpu++) {
                hv xv, ov;
                nnm_reduce_args a = {sizeof a, op, 0.5, pf(&xv, &x, gpu, 3, xs),
                                     pf(&ov, &o, gpu, 3, os)};
                CU_ASSERT_EQUAL(ok(gpu, VT(gpu)->reduce(ENV, ST(gpu), &a)), NNM_OK);
            }
            char what[40];
            snprintf(what, sizeof what, "reduce op %d mask %d", op, mask);
            CU_ASSERT_TRUE(same_f(what, &o, 1e-6, 1e-6));
            pb_free_all();
        }
    /* long reductions (the two-pass path): rows of 5000, columns of 5000, all of 100000 */
    static const int64_t longs[3][2][2] = {{{3, 5000}, {3, 1}}, {{5000, 3}, {1, 3}}, {{20, 5000}, {1, 1}}};
    for (int k = 0; k < 3; k++)
        for (int op = NNM_REDUCE_SUM; op <= NNM_REDUCE_MIN; op++) {
            const int64_t *xs2 = longs[k][0], *os2 = longs[k][1];
            pb x, o;
            pb_rand(&x, (size_t)(xs2[0] * xs2[1]), op >= NNM_REDUCE_MAX && k == 1);
            pb_sentinel(&o, (size_t)(os2[0] * os2[1]));
            for (int gpu = 0; gpu <= 1; gpu++) {
                hv xv, ov;
                nnm_reduce_args a = {sizeof a, op, 1.0, pf(&xv, &x, gpu, 2, xs2),
                                     pf(&ov, &o, gpu, 2, os2)};
                CU_ASSERT_EQUAL(ok(gpu, VT(gpu)->reduce(ENV, ST(gpu), &a)), NNM_OK);
            }
            char what[40];
            snprintf(what, sizeof what, "long reduce op %d case %d", op, k);
            CU_ASSERT_TRUE(same_f(what, &o, 1e-6, 1e-5));
            pb_free_all();
        }
    for (int lg = 0; lg <= 1; lg++) {
        const int64_t s3[3] = {3, 10, 4};
        pb x, o;
        pb_rand(&x, 120, 0);
        pb_sentinel(&o, 120);
        for (int gpu = 0; gpu <= 1; gpu++) {
            hv xv, ov;
            nnm_softmax_args a = {sizeof a, lg, 3, 10, 4, pf(&xv, &x, gpu, 3, s3), pf(&ov, &o, gpu, 3, s3)};
            CU_ASSERT_EQUAL(ok(gpu, VT(gpu)->softmax(ENV, ST(gpu), &a)), NNM_OK);
        }
        CU_ASSERT_TRUE(same_f("softmax", &o, 1e-5, 1e-7));
        pb_free_all();
    }
    for (int lg = 0; lg <= 1; lg++) /* long rows (the three-pass path) */
        for (int inner = 1; inner <= 3; inner += 2) {
            const int64_t s3[3] = {2, 2500, inner}, nel = 2 * 2500 * inner;
            pb x, o;
            pb_rand(&x, (size_t)nel, 0);
            pb_sentinel(&o, (size_t)nel);
            for (int gpu = 0; gpu <= 1; gpu++) {
                hv xv, ov;
                nnm_softmax_args a = {sizeof a, lg, 2, 2500, inner, pf(&xv, &x, gpu, 3, s3),
                                      pf(&ov, &o, gpu, 3, s3)};
                CU_ASSERT_EQUAL(ok(gpu, VT(gpu)->softmax(ENV, ST(gpu), &a)), NNM_OK);
            }
            CU_ASSERT_TRUE(same_f("softmax, long rows", &o, 1e-5, 1e-9));
            pb_free_all();
        }
    {
        const int64_t s2[2] = {12, 10};
        pb x, o;
        pb_rand(&x, 120, 0);
        pb_sentinel(&o, 120);
        for (int gpu = 0; gpu <= 1; gpu++) {
            hv xv, ov;
            nnm_log_softmax_args a = {sizeof a, 0, pf(&xv, &x, gpu, 2, s2), pf(&ov, &o, gpu, 2, s2)};
            CU_ASSERT_EQUAL(ok(gpu, VT(gpu)->log_softmax(ENV, ST(gpu), &a)), NNM_OK);
        }
        CU_ASSERT_TRUE(same_f("log_softmax", &o, 1e-5, 1e-6));
        pb_free_all();
    }
    for (int op = NNM_REDUCE_MAX; op <= NNM_REDUCE_MIN; op++) {
        const int64_t s3[3] = {3, 10, 4}, s2[2] = {3, 4};
        pb x, o;
        pb_rand(&x, 120, 1);
        pb_init(&o, NULL, 12 * sizeof(int64_t));
        for (int gpu = 0; gpu <= 1; gpu++) {
            hv xv, ov;
            nnm_arg_reduce_args a = {sizeof a, op, 3, 10, 4, pf(&xv, &x, gpu, 3, s3),
                                     pd(&ov, &o, gpu, I64, 2, s2, NULL, 0)};
            CU_ASSERT_EQUAL(ok(gpu, VT(gpu)->arg_reduce(ENV, ST(gpu), &a)), NNM_OK);
        }
        CU_ASSERT_TRUE(same_bytes("arg_reduce", &o));
        pb_free_all();
    }
    static const nnm_dtype dts[5] = {{NNM_DTYPE_FLOAT, 32, 1}, {NNM_DTYPE_INT, 64, 1},
                                     {NNM_DTYPE_INT, 32, 1}, {NNM_DTYPE_UINT, 8, 1},
                                     {NNM_DTYPE_BOOL, 8, 1}};
    const int64_t cs[2] = {4, 5}, ct[2] = {1, 4};
    for (int kx = 0; kx < 5; kx++)
        for (int ko = 0; ko < 5; ko++) {
            unsigned char init[20 * 8];
            for (size_t i = 0; i < sizeof init; i++)
                init[i] = (unsigned char)(i * 73u + 5u);
            if (kx == 0)
                for (int i = 0; i < 20; i++) {
                    const float f = (float)(i - 10) * 37.3f;
                    memcpy(init + 4 * i, &f, 4);
                }
            if (kx == 4)
                for (int i = 0; i < 20; i++)
                    init[i] = (unsigned char)(i % 2);
            pb x, o;
            pb_init(&x, init, 20 * (size_t)(dts[kx].bits / 8));
            pb_init(&o, NULL, 20 * (size_t)(dts[ko].bits / 8));
            for (int gpu = 0; gpu <= 1; gpu++) {
                hv xv, ov;
                nnm_cast_args a = {sizeof a, 0, pd(&xv, &x, gpu, dts[kx], 2, cs, ct, 0),
                                   pd(&ov, &o, gpu, dts[ko], 2, cs, NULL, 0)};
                CU_ASSERT_EQUAL(ok(gpu, VT(gpu)->cast(ENV, ST(gpu), &a)), NNM_OK);
            }
            char what[32];
            snprintf(what, sizeof what, "cast %d -> %d", kx, ko);
            CU_ASSERT_TRUE(same_bytes(what, &o));
            pb_free_all();
        }
}

/* ------------------------------------------------------------------------ */
/* nll, optimizers                                                           */
/* ------------------------------------------------------------------------ */

static void test_nll_optim(void) {
    enum { N = 9, C = 6 };
    int64_t tg[N] = {0, 5, -100, 3, 3, 1, -100, 2, 4};
    const int64_t s2[2] = {N, C}, s1[1] = {N}, one[1] = {1};
    for (int k = 0; k < 2; k++) {
        pb lp, t, out, cnt, g, gl;
        pb_rand(&lp, N * C, 0);
        pb_init(&t, tg, sizeof tg);
        pb_sentinel(&out, N);
        pb_sentinel(&cnt, 1);
        pb_rand(&g, N, 0);
        pb_sentinel(&gl, N * C);
        for (int gpu = 0; gpu <= 1; gpu++) {
            hv a1, a2, a3, a4;
            nnm_nll_args a = {sizeof a, 0, -100, k ? 0.1 : 0.0, pf(&a1, &lp, gpu, 2, s2),
                              pd(&a2, &t, gpu, I64, 1, s1, NULL, 0), pf(&a3, &out, gpu, 1, s1),
                              pf(&a4, &cnt, gpu, 1, one)};
            CU_ASSERT_EQUAL(ok(gpu, VT(gpu)->nll(ENV, ST(gpu), &a)), NNM_OK);
            nnm_nll_backward_args b = {sizeof b, 0, -100, k ? 0.1 : 0.0, pf(&a1, &g, gpu, 1, s1),
                                       pd(&a2, &t, gpu, I64, 1, s1, NULL, 0),
                                       pf(&a3, &gl, gpu, 2, s2)};
            CU_ASSERT_EQUAL(ok(gpu, VT(gpu)->nll_backward(ENV, ST(gpu), &b)), NNM_OK);
        }
        CU_ASSERT_TRUE(same_f("nll", &out, 1e-6, 1e-7));
        CU_ASSERT_TRUE(same_f("nll count", &cnt, 0.0, 0.0));
        CU_ASSERT_TRUE(same_f("nll_backward", &gl, 1e-6, 1e-7));
        pb_free_all();
    }
    /* a bad target: the same error on both, nothing else */
    tg[4] = 6;
    for (int gpu = 0; gpu <= 1; gpu++) {
        pb lp, t, out;
        pb_rand(&lp, N * C, 0);
        pb_init(&t, tg, sizeof tg);
        pb_sentinel(&out, N);
        hv a1, a2, a3;
        nnm_nll_args a = {sizeof a, 0, -100, 0.0, pf(&a1, &lp, gpu, 2, s2),
                          pd(&a2, &t, gpu, I64, 1, s1, NULL, 0), pf(&a3, &out, gpu, 1, s1), NULL};
        tu_fake_host_reset(&g_fake);
        CU_ASSERT_EQUAL(VT(gpu)->nll(ENV, ST(gpu), &a), NNM_E_INVALID);
        CU_ASSERT_TRUE(strstr(g_fake.msg, "target 6 at row 4") != NULL);
        pb_free_all();
    }
    /* SGD and Adam, a few steps each: the same bits as the cpu backend's FMA path */
    enum { P = 1000 };
    for (int cfg = 0; cfg < 4; cfg++) {
        pb p, g, buf;
        pb_rand(&p, P, 0);
        pb_rand(&g, P, 0);
        pb_rand(&buf, P, 0);
        for (int step = 0; step < 3; step++)
            for (int gpu = 0; gpu <= 1; gpu++) {
                nnm_sgd_args a;
                memset(&a, 0, sizeof a);
                a.struct_size = sizeof a;
                a.nesterov = cfg & 1;
                a.first_step = step == 0;
                a.n = P;
                a.param = pb_at(&p, gpu);
                a.grad = pb_at(&g, gpu);
                a.momentum_buf = pb_at(&buf, gpu);
                a.lr = 0.05;
                a.momentum = 0.9;
                a.weight_decay = cfg & 2 ? 1e-2 : 0.0;
                CU_ASSERT_EQUAL(ok(gpu, VT(gpu)->sgd_step(ENV, ST(gpu), &a)), NNM_OK);
            }
        CU_ASSERT_TRUE(same_f("sgd param", &p, 1e-6, 0.0));
        CU_ASSERT_TRUE(same_f("sgd buf", &buf, 1e-6, 0.0));
        pb_free_all();
    }
    for (int cfg = 0; cfg < 4; cfg++) {
        pb p, g, m, v, vm;
        pb_rand(&p, P, 0);
        pb_rand(&g, P, 0);
        pb_init(&m, NULL, P * sizeof(float));
        pb_init(&v, NULL, P * sizeof(float));
        pb_init(&vm, NULL, P * sizeof(float));
        for (int step = 1; step <= 3; step++)
            for (int gpu = 0; gpu <= 1; gpu++) {
                nnm_adam_args a;
                memset(&a, 0, sizeof a);
                a.struct_size = sizeof a;
                a.decoupled = cfg & 1;
                a.step = step;
                a.n = P;
                a.param = pb_at(&p, gpu);
                a.grad = pb_at(&g, gpu);
                a.exp_avg = pb_at(&m, gpu);
                a.exp_avg_sq = pb_at(&v, gpu);
                a.max_exp_avg_sq = cfg & 2 ? pb_at(&vm, gpu) : NULL;
                a.lr = 1e-3;
                a.beta1 = 0.9;
                a.beta2 = 0.999;
                a.eps = 1e-8;
                a.weight_decay = 1e-2;
                CU_ASSERT_EQUAL(ok(gpu, VT(gpu)->adam_step(ENV, ST(gpu), &a)), NNM_OK);
            }
        CU_ASSERT_TRUE(same_f("adam param", &p, 1e-6, 0.0));
        CU_ASSERT_TRUE(same_f("adam exp_avg", &m, 1e-6, 0.0));
        CU_ASSERT_TRUE(same_f("adam exp_avg_sq", &v, 1e-6, 0.0));
        pb_free_all();
    }
}

/* ------------------------------------------------------------------------ */
/* im2col, index, layer_norm, embedding_bag, rnn_cell, ctc                   */
/* ------------------------------------------------------------------------ */

static void test_nn_slots(void) {
    { /* im2col / col2im: 2 channels of 7 x 6, kernel 3 x 2, stride 2 x 1, padding 1 x 1, dilation 1 x 2 */
        nnm_im2col_args a;
        memset(&a, 0, sizeof a);
        a.struct_size = sizeof a;
        a.n_spatial = 2;
        a.channels = 2;
        a.im_size[0] = 7, a.im_size[1] = 6;
        a.kernel[0] = 3, a.kernel[1] = 2;
        a.stride[0] = 2, a.stride[1] = 1;
        a.padding[0] = 1, a.padding[1] = 1;
        a.dilation[0] = 1, a.dilation[1] = 2;
        a.col_size[0] = (7 + 2 - 2 - 1) / 2 + 1;
        a.col_size[1] = (6 + 2 - 2 - 1) / 1 + 1;
        const size_t nim = 2 * 7 * 6, ncol = 2 * 6 * a.col_size[0] * a.col_size[1];
        pb im, col, im2, col2;
        pb_rand(&im, nim, 0);
        pb_sentinel(&col, ncol);
        pb_rand(&col2, ncol, 0);
        pb_sentinel(&im2, nim);
        for (int gpu = 0; gpu <= 1; gpu++) {
            a.im = pb_at(&im, gpu);
            a.col = pb_at(&col, gpu);
            CU_ASSERT_EQUAL(ok(gpu, VT(gpu)->im2col(ENV, ST(gpu), &a)), NNM_OK);
            a.im = pb_at(&im2, gpu);
            a.col = pb_at(&col2, gpu);
            CU_ASSERT_EQUAL(ok(gpu, VT(gpu)->col2im(ENV, ST(gpu), &a)), NNM_OK);
        }
        CU_ASSERT_TRUE(same_f("im2col", &col, 0.0, 0.0));
        CU_ASSERT_TRUE(same_f("col2im", &im2, 0.0, 0.0));
        pb_free_all();
    }
    { /* index_select / index_add over [3, n, 5] */
        int64_t idx[6] = {3, 0, 3, 1, 2, 3};
        const int64_t m1[1] = {6}, src[3] = {3, 4, 5}, dst[3] = {3, 6, 5};
        pb ix, s, d, s2, d2;
        pb_init(&ix, idx, sizeof idx);
        pb_rand(&s, 60, 0);
        pb_sentinel(&d, 90);
        pb_rand(&s2, 90, 0);
        pb_rand(&d2, 60, 0);
        for (int gpu = 0; gpu <= 1; gpu++) {
            hv a1, a2, a3;
            nnm_index_args a = {sizeof a, 4, 3, 4, 5, 6, pd(&a1, &ix, gpu, I64, 1, m1, NULL, 0),
                                pf(&a2, &s, gpu, 3, src), pf(&a3, &d, gpu, 3, dst)};
            CU_ASSERT_EQUAL(ok(gpu, VT(gpu)->index_select(ENV, ST(gpu), &a)), NNM_OK);
            nnm_index_args b = {sizeof b, 4, 3, 4, 5, 6, pd(&a1, &ix, gpu, I64, 1, m1, NULL, 0),
                                pf(&a2, &s2, gpu, 3, dst), pf(&a3, &d2, gpu, 3, src)};
            CU_ASSERT_EQUAL(ok(gpu, VT(gpu)->index_add(ENV, ST(gpu), &b)), NNM_OK);
        }
        CU_ASSERT_TRUE(same_f("index_select", &d, 0.0, 0.0));
        CU_ASSERT_TRUE(same_f("index_add", &d2, 1e-6, 1e-6)); /* atomics: any order */
        pb_free_all();
    }
    { /* layer_norm with residual, weight and bias; its backward */
        enum { R = 17, CC = 130 };
        const int64_t rc[1] = {R * CC}, cs[1] = {CC}, rs[1] = {R};
        pb x, r, w, b, y, mean, rstd, g, gx, gw, gb;
        pb_rand(&x, R * CC, 0);
        pb_rand(&r, R * CC, 0);
        pb_rand(&w, CC, 0);
        pb_rand(&b, CC, 0);
        pb_sentinel(&y, R * CC);
        pb_sentinel(&mean, R);
        pb_sentinel(&rstd, R);
        pb_rand(&g, R * CC, 0);
        pb_sentinel(&gx, R * CC);
        pb_sentinel(&gw, CC);
        pb_sentinel(&gb, CC);
        for (int gpu = 0; gpu <= 1; gpu++) {
            hv v[11];
            nnm_layer_norm_args a;
            memset(&a, 0, sizeof a);
            a.struct_size = sizeof a;
            a.rows = R;
            a.cols = CC;
            a.eps = 1e-5;
            a.x = pf(&v[0], &x, gpu, 1, rc);
            a.residual = pf(&v[1], &r, gpu, 1, rc);
            a.weight = pf(&v[2], &w, gpu, 1, cs);
            a.bias = pf(&v[3], &b, gpu, 1, cs);
            a.y = pf(&v[4], &y, gpu, 1, rc);
            a.mean = pf(&v[5], &mean, gpu, 1, rs);
            a.rstd = pf(&v[6], &rstd, gpu, 1, rs);
            CU_ASSERT_EQUAL(ok(gpu, VT(gpu)->layer_norm(ENV, ST(gpu), &a)), NNM_OK);
            a.y = NULL;
            a.bias = NULL;
            a.grad_out = pf(&v[7], &g, gpu, 1, rc);
            a.grad_x = pf(&v[8], &gx, gpu, 1, rc);
            a.grad_weight = pf(&v[9], &gw, gpu, 1, cs);
            a.grad_bias = pf(&v[10], &gb, gpu, 1, cs);
            CU_ASSERT_EQUAL(ok(gpu, VT(gpu)->layer_norm_backward(ENV, ST(gpu), &a)), NNM_OK);
        }
        CU_ASSERT_TRUE(same_f("layer_norm y", &y, 1e-5, 1e-5));
        CU_ASSERT_TRUE(same_f("layer_norm mean", &mean, 1e-5, 1e-6));
        CU_ASSERT_TRUE(same_f("layer_norm rstd", &rstd, 1e-5, 0.0));
        CU_ASSERT_TRUE(same_f("layer_norm grad_x", &gx, 1e-4, 1e-5));
        CU_ASSERT_TRUE(same_f("layer_norm grad_weight", &gw, 1e-4, 1e-4));
        CU_ASSERT_TRUE(same_f("layer_norm grad_bias", &gb, 1e-4, 1e-4));
        pb_free_all();
    }
    for (int mode = NNM_REDUCE_SUM; mode <= NNM_REDUCE_MAX; mode++) { /* embedding_bag */
        enum { NUM = 7, D = 6, NI = 10, BAGS = 4 };
        int64_t idx[NI] = {1, 6, 1, 0, 5, 2, 2, 3, 6, 0}, off[BAGS + 1] = {0, 3, 3, 8, 10};
        const int64_t ws[1] = {NUM * D}, ns[1] = {NI}, os[1] = {BAGS + 1}, bs[1] = {BAGS * D};
        pb w, ix, of, psw, out, arg, g, gw, gp;
        pb_rand(&w, NUM * D, 0);
        pb_init(&ix, idx, sizeof idx);
        pb_init(&of, off, sizeof off);
        pb_rand(&psw, NI, 0);
        pb_sentinel(&out, BAGS * D);
        pb_init(&arg, NULL, BAGS * D * sizeof(int64_t));
        pb_rand(&g, BAGS * D, 0);
        pb_rand(&gw, NUM * D, 0);
        pb_sentinel(&gp, NI);
        const int use_psw = mode == NNM_REDUCE_SUM;
        for (int gpu = 0; gpu <= 1; gpu++) {
            hv v[9];
            nnm_embedding_bag_args a;
            memset(&a, 0, sizeof a);
            a.struct_size = sizeof a;
            a.mode = mode;
            a.padding_idx = 2;
            a.num_embeddings = NUM;
            a.dim = D;
            a.n = NI;
            a.bags = BAGS;
            a.weight = pf(&v[0], &w, gpu, 1, ws);
            a.indices = pd(&v[1], &ix, gpu, I64, 1, ns, NULL, 0);
            a.offsets = pd(&v[2], &of, gpu, I64, 1, os, NULL, 0);
            a.per_sample_weights = use_psw ? pf(&v[3], &psw, gpu, 1, ns) : NULL;
            a.out = pf(&v[4], &out, gpu, 1, bs);
            a.arg = mode == NNM_REDUCE_MAX ? pd(&v[5], &arg, gpu, I64, 1, bs, NULL, 0) : NULL;
            CU_ASSERT_EQUAL(ok(gpu, VT(gpu)->embedding_bag(ENV, ST(gpu), &a)), NNM_OK);
            a.out = NULL;
            a.grad_out = pf(&v[6], &g, gpu, 1, bs);
            a.grad_weight = pf(&v[7], &gw, gpu, 1, ws);
            a.grad_per_sample_weights = use_psw ? pf(&v[8], &gp, gpu, 1, ns) : NULL;
            CU_ASSERT_EQUAL(ok(gpu, VT(gpu)->embedding_bag_backward(ENV, ST(gpu), &a)), NNM_OK);
        }
        CU_ASSERT_TRUE(same_f("embedding_bag out", &out, 1e-6, 1e-6));
        if (mode == NNM_REDUCE_MAX)
            CU_ASSERT_TRUE(same_bytes("embedding_bag arg", &arg));
        CU_ASSERT_TRUE(same_f("embedding_bag grad_weight", &gw, 1e-6, 1e-6)); /* atomics */
        CU_ASSERT_TRUE(same_f("embedding_bag grad_psw", &gp, 1e-5, 1e-6));
        pb_free_all();
    }
    for (int mode = NNM_RNN_TANH; mode <= NNM_RNN_GRU; mode++) { /* rnn_cell */
        enum { B = 4, H = 9 };
        const int64_t G = mode == NNM_RNN_LSTM ? 4 : mode == NNM_RNN_GRU ? 3 : 1;
        pb gx, gh, bh, hp, cp, h, c, act, dh, dc, dgx, dgh, dhp;
        pb_rand(&gx, (size_t)(B * G * H), 0);
        pb_rand(&gh, (size_t)(B * G * H), 0);
        pb_rand(&bh, (size_t)(G * H), 0);
        pb_rand(&hp, B * H, 0);
        pb_rand(&cp, B * H, 0);
        pb_sentinel(&h, B * H);
        pb_sentinel(&c, B * H);
        pb_sentinel(&act, B * 4 * H);
        pb_rand(&dh, B * H, 0);
        pb_rand(&dc, B * H, 0);
        pb_sentinel(&dgx, (size_t)(B * G * H));
        pb_sentinel(&dgh, (size_t)(B * G * H));
        pb_rand(&dhp, B * H, 0);
        for (int gpu = 0; gpu <= 1; gpu++) {
            nnm_rnn_cell_args a;
            memset(&a, 0, sizeof a);
            a.struct_size = sizeof a;
            a.mode = mode;
            a.batch = B;
            a.hidden = H;
            a.gx = pb_at(&gx, gpu);
            a.gh = pb_at(&gh, gpu);
            a.b_hh = pb_at(&bh, gpu);
            a.h_prev = pb_at(&hp, gpu);
            a.c_prev = pb_at(&cp, gpu);
            a.h = pb_at(&h, gpu);
            a.c = pb_at(&c, gpu);
            a.act = mode >= NNM_RNN_LSTM ? pb_at(&act, gpu) : NULL;
            CU_ASSERT_EQUAL(ok(gpu, VT(gpu)->rnn_cell(ENV, ST(gpu), &a)), NNM_OK);
            a.dh = pb_at(&dh, gpu);
            a.dc = pb_at(&dc, gpu);
            a.dgx = pb_at(&dgx, gpu);
            a.dgh = pb_at(&dgh, gpu);
            a.dh_prev = pb_at(&dhp, gpu);
            CU_ASSERT_EQUAL(ok(gpu, VT(gpu)->rnn_cell_backward(ENV, ST(gpu), &a)), NNM_OK);
        }
        char what[32];
        snprintf(what, sizeof what, "rnn_cell mode %d", mode);
        CU_ASSERT_TRUE(same_f(what, &h, 1e-5, 1e-6));
        CU_ASSERT_TRUE(same_f(what, &c, 1e-5, 1e-6));
        CU_ASSERT_TRUE(same_f(what, &act, 1e-5, 1e-6));
        CU_ASSERT_TRUE(same_f(what, &dgx, 1e-4, 1e-5));
        CU_ASSERT_TRUE(same_f(what, &dgh, 1e-4, 1e-5));
        CU_ASSERT_TRUE(same_f(what, &dc, 1e-4, 1e-5));
        CU_ASSERT_TRUE(same_f(what, &dhp, 1e-4, 1e-5));
        pb_free_all();
    }
    { /* ctc: 3 samples, one of them unalignable */
        enum { T = 8, N = 3, C = 5, S = 3, W = 2 * S + 1 };
        float lpv[T * N * C];
        for (int rr = 0; rr < T * N; rr++) {
            double z = 0.0;
            for (int c = 0; c < C; c++) {
                lpv[rr * C + c] = tu_rand(&g_rng);
                z += exp((double)lpv[rr * C + c]);
            }
            for (int c = 0; c < C; c++)
                lpv[rr * C + c] -= (float)log(z);
        }
        int64_t tgs[N * S] = {1, 2, 0, 3, 3, 4, 2, 2, 2}, il[N] = {8, 6, 4}, tl[N] = {2, 3, 3};
        const int64_t lps[3] = {T, N, C}, ts[2] = {N, S}, ns[1] = {N}, as[3] = {N, T, W};
        pb lp, tg, ilb, tlb, nll, alpha, go, grad;
        pb_init(&lp, lpv, sizeof lpv);
        pb_init(&tg, tgs, sizeof tgs);
        pb_init(&ilb, il, sizeof il);
        pb_init(&tlb, tl, sizeof tl);
        pb_sentinel(&nll, N);
        pb_sentinel(&alpha, N * T * W);
        pb_rand(&go, N, 0);
        pb_sentinel(&grad, T * N * C);
        for (int gpu = 0; gpu <= 1; gpu++) {
            hv v[8];
            nnm_ctc_args a;
            memset(&a, 0, sizeof a);
            a.struct_size = sizeof a;
            a.zero_infinity = 1;
            a.blank = 0;
            a.t = T, a.n = N, a.c = C, a.s = S;
            a.log_probs = pf(&v[0], &lp, gpu, 3, lps);
            a.targets = pd(&v[1], &tg, gpu, I64, 2, ts, NULL, 0);
            a.input_lengths = pd(&v[2], &ilb, gpu, I64, 1, ns, NULL, 0);
            a.target_lengths = pd(&v[3], &tlb, gpu, I64, 1, ns, NULL, 0);
            a.nll = pf(&v[4], &nll, gpu, 1, ns);
            a.alpha = pf(&v[5], &alpha, gpu, 3, as);
            CU_ASSERT_EQUAL(ok(gpu, VT(gpu)->ctc_loss(ENV, ST(gpu), &a)), NNM_OK);
            a.grad_out = pf(&v[6], &go, gpu, 1, ns);
            a.grad_log_probs = pf(&v[7], &grad, gpu, 3, lps);
            CU_ASSERT_EQUAL(ok(gpu, VT(gpu)->ctc_loss_backward(ENV, ST(gpu), &a)), NNM_OK);
        }
        CU_ASSERT_TRUE(same_f("ctc nll", &nll, 1e-5, 1e-5));
        CU_ASSERT_TRUE(same_f("ctc alpha", &alpha, 1e-5, 1e-5));
        CU_ASSERT_TRUE(same_f("ctc grad", &grad, 1e-4, 1e-5));
        pb_free_all();
    }
    CU_ASSERT_EQUAL(VT(1)->set_num_threads(ENV, ST(1), 4), NNM_OK);
    CU_ASSERT_EQUAL(VT(1)->set_num_threads(ENV, ST(1), 0), NNM_E_INVALID);
}

/* ------------------------------------------------------------------------ */
/* Always: the descriptor lists every slot                                   */
/* ------------------------------------------------------------------------ */

static void test_slots_listed(void) {
    backend b;
    memset(&b, 0, sizeof b);
    CU_ASSERT_TRUE_FATAL(backend_open(&b, "nnm_cuda.so"));
    const nnm_backend_vtable *vt = b.vt;
    CU_ASSERT_EQUAL(vt->flags & (NNM_BACKEND_OPS_1_3 | NNM_BACKEND_OPS_1_5),
                    NNM_BACKEND_OPS_1_3 | NNM_BACKEND_OPS_1_5);
    const void *slots[] = {
        (const void *)vt->reduce, (const void *)vt->log_softmax, (const void *)vt->nll,
        (const void *)vt->nll_backward, (const void *)vt->sgd_step, (const void *)vt->adam_step,
        (const void *)vt->im2col, (const void *)vt->col2im, (const void *)vt->softmax,
        (const void *)vt->where, (const void *)vt->index_select, (const void *)vt->index_add,
        (const void *)vt->rnn_cell, (const void *)vt->rnn_cell_backward, (const void *)vt->cast,
        (const void *)vt->arg_reduce, (const void *)vt->ctc_loss,
        (const void *)vt->ctc_loss_backward, (const void *)vt->set_num_threads,
        (const void *)vt->embedding_bag, (const void *)vt->embedding_bag_backward,
        (const void *)vt->layer_norm, (const void *)vt->layer_norm_backward};
    for (size_t i = 0; i < sizeof slots / sizeof slots[0]; i++)
        CU_ASSERT_PTR_NOT_NULL(slots[i]);
    /* argument checks that need no device: NULL args, no state */
    tu_fake_host_reset(&g_fake);
    CU_ASSERT_EQUAL(vt->reduce(ENV, NULL, NULL), NNM_E_INVALID);
    CU_ASSERT_EQUAL(vt->softmax(ENV, NULL, NULL), NNM_E_INVALID);
    CU_ASSERT_EQUAL(vt->cast(ENV, NULL, NULL), NNM_E_INVALID);
    CU_ASSERT_EQUAL(vt->layer_norm(ENV, NULL, NULL), NNM_E_INVALID);
    nnm_reduce_args r = {sizeof r, NNM_REDUCE_SUM, 1.0, NULL, NULL};
    CU_ASSERT_EQUAL(vt->reduce(ENV, NULL, &r), NNM_E_STATE);
    CU_ASSERT_EQUAL(vt->set_num_threads(ENV, NULL, 1), NNM_OK);
    CU_ASSERT_EQUAL(g_fake.n_errors, 5);
    backend_close(&b);
}

int main(void) {
    tu_fake_host_init(&g_fake);
    int have = 0;
    if (!NNM_TEST_HAVE_CUDA_PLUGIN) {
        snprintf(g_skip, sizeof g_skip, "no CUDA device: the cuda plugin was not built (no CUDA toolkit)");
    } else if (!backend_open(&g_be[0], "nnm_cpu.so") || !backend_open(&g_be[1], "nnm_cuda.so")) {
        snprintf(g_skip, sizeof g_skip, "no CUDA device: cannot open nnm_cpu.so / nnm_cuda.so");
    } else if (g_be[0].vt->init(ENV, &g_be[0].state) != NNM_OK) {
        snprintf(g_skip, sizeof g_skip, "cpu init: %s", g_fake.msg);
    } else if (g_be[1].vt->init(ENV, &g_be[1].state) != NNM_OK) {
        snprintf(g_skip, sizeof g_skip, "%s", g_fake.msg);
        g_be[1].state = NULL;
    } else {
        have = 1;
    }
    if (!have)
        printf("test_cuda_ops: SKIPPED: %s\n", g_skip);
    CU_pSuite s = tu_suite("cuda ops", NULL, NULL);
    int rc = 1;
    if (s != NULL) {
        if (NNM_TEST_HAVE_CUDA_PLUGIN)
            CU_add_test(s, "every slot listed, checks without a device", test_slots_listed);
        if (have) {
            CU_add_test(s, "unary (every op, strided out), binary (every op), where",
                        test_unary_binary_where);
            CU_add_test(s, "reduce, softmax, log_softmax, arg_reduce, cast", test_reductions);
            CU_add_test(s, "nll (+ bad target), sgd, adam", test_nll_optim);
            CU_add_test(s, "im2col, index, layer_norm, embedding_bag, rnn_cell, ctc",
                        test_nn_slots);
        }
        rc = tu_run();
    }
    backend_close(&g_be[1]);
    backend_close(&g_be[0]);
    return rc;
}
