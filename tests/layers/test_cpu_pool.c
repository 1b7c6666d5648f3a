/* tests/layers/test_cpu_pool.c - the cpu backend's pooling fast paths against
 * its generic kernel, bit for bit.
 *
 * plugins/cpu/pool_kernels.inc is pure loops, so this suite includes it on its
 * own and runs both paths (the `fast` flag of cpu_pool_run) over many
 * geometries: odd sizes, padding, ceil_mode, overlapping and non-overlapping
 * windows, kernel 1, batch 1, avg divisor rules, and inputs full of ties
 * (+0 and -0 included), NaNs with distinct payloads, and infinities. The
 * generic kernel is checked against PyTorch by the golden suites
 * (test_layers_golden, test_conformance); the corners those cannot hold
 * (ties, NaN, -inf, signed zeros: no finite differences there) are checked
 * here, both paths, against tests/golden/pool_golden.h. */
#include "test_util.h"

#include <nnmod/plugin.h>

#include "../../plugins/cpu/pool_kernels.inc"

#include "golden/pool_golden.h"

static uint32_t g_rng = 4242u;

static uint32_t next_u32(void) {
    g_rng = g_rng * 1664525u + 1013904223u;
    return g_rng >> 8;
}

static float nan_with_payload(uint32_t payload) {
    uint32_t bits = 0x7fc00000u | (payload & 0x3fffffu);
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* Values from a small set (ties everywhere) with the corner values mixed in:
 * kind 0 plain ties, 1 with -0/+0 and infinities, 2 with NaNs too. */
static float pick(int kind) {
    static const float vals[] = {-2.0f, -1.0f, 0.5f, 1.0f, 1.0f, 3.0f};
    const uint32_t r = next_u32();
    if (kind >= 1 && r % 7 == 0) {
        static const float corners[] = {0.0f, -0.0f, INFINITY, -INFINITY};
        return corners[(r / 7) % 4];
    }
    if (kind >= 2 && r % 11 == 0)
        return nan_with_payload(r / 11);
    return vals[(r / 77) % 6];
}

/* One pooling problem, shaped as nnm__op_pool computes outputs. */
typedef struct pool_case {
    int32_t op, ns, ceil_mode, count_include_pad;
    int64_t divisor_override, batch;
    int64_t in[3], k[3], s[3], p[3], d[3];
} pool_case;

/* Fills args and geometry; 0 when the window does not fit (skip the case). */
static int setup(const pool_case *c, nnm_pool_args *a, cpu_geom3 *G) {
    memset(a, 0, sizeof *a);
    a->struct_size = sizeof *a;
    a->op = c->op;
    a->n_spatial = c->ns;
    a->count_include_pad = c->count_include_pad;
    a->divisor_override = c->divisor_override;
    for (int i = 0; i < 3; i++) {
        const int j = i - (3 - c->ns);
        int64_t in = 1, o = 1, k = 1, s = 1, p = 0, d = 1;
        if (j >= 0) {
            in = c->in[j], k = c->k[j], s = c->s[j], p = c->p[j];
            d = c->op == NNM_POOL_MAX ? c->d[j] : 1;
            if (p > k / 2)
                return 0;
            const int64_t span = in + 2 * p - d * (k - 1) - 1;
            if (span < 0)
                return 0;
            o = (c->ceil_mode ? (span + s - 1) / s : span / s) + 1;
            if (c->ceil_mode && (o - 1) * s >= in + p)
                o--;
            a->kernel[j] = k, a->stride[j] = s, a->padding[j] = p, a->dilation[j] = d;
        }
        G->in[i] = in, G->out[i] = o, G->k[i] = k, G->s[i] = s, G->p[i] = p, G->d[i] = d;
    }
    return 1;
}

/* Equal bits, except that two NaNs are equal where NaNs are added together
 * (avg sums, gradients of overlapping windows): which payload survives
 * depends on the operand order the compiler gave the add instruction. Max
 * pooling's forward selects, so its NaNs must match bit for bit. */
static int same_bits(const float *a, const float *b, int64_t n, int nan_any) {
    for (int64_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], sizeof a[i]) != 0 && !(nan_any && a[i] != a[i] && b[i] != b[i]))
            return 0;
    return 1;
}

static int g_fast_cases, g_tiled_cases, g_total;

/* Runs one case through both paths, forward and backward; CU asserts equal bits. */
static void check_case(const pool_case *c, int kind) {
    nnm_pool_args a;
    cpu_geom3 G;
    if (!setup(c, &a, &G))
        return;
    const int64_t nin = c->batch * G.in[0] * G.in[1] * G.in[2];
    const int64_t nout = c->batch * G.out[0] * G.out[1] * G.out[2];
    float *x = malloc((size_t)(nin + 1) * sizeof *x);
    float *g = malloc((size_t)(nout + 1) * sizeof *g);
    float *o1 = malloc((size_t)(nout + 1) * sizeof *o1), *o2 = malloc((size_t)(nout + 1) * sizeof *o2);
    float *gx1 = malloc((size_t)(nin + 1) * sizeof *gx1), *gx2 = malloc((size_t)(nin + 1) * sizeof *gx2);
    CU_ASSERT_FATAL(x && g && o1 && o2 && gx1 && gx2);
    for (int64_t i = 0; i < nin; i++)
        x[i] = pick(kind);
    for (int64_t i = 0; i < nout; i++) /* gradients: -0 and NaN too */
        g[i] = kind >= 1 && next_u32() % 9 == 0 ? (kind >= 2 ? nan_with_payload(next_u32()) : -0.0f)
                                                 : (float)((int)(next_u32() % 17) - 8) * 0.25f;
    /* garbage in the outputs: every element must be written */
    for (int64_t i = 0; i < nout; i++)
        o1[i] = o2[i] = 12345.0f;
    for (int64_t i = 0; i < nin; i++)
        gx1[i] = gx2[i] = -777.0f;

    cpu_pool2d P;
    int tiled = 0;
    if (cpu_pool2d_plan(&a, &G, c->batch, &P)) {
        g_fast_cases++;
        tiled = cpu_pool2d_tiles(&P);
        g_tiled_cases += tiled;
    }
    g_total++;
    cpu_pool_run(&a, &G, c->batch, x, o1, 1);
    cpu_pool_run(&a, &G, c->batch, x, o2, 0);
    cpu_pool_backward_run(&a, &G, c->batch, x, g, gx1, 1);
    cpu_pool_backward_run(&a, &G, c->batch, x, g, gx2, 0);
    const int fwd_ok = same_bits(o1, o2, nout, c->op != NNM_POOL_MAX);
    const int bwd_ok = same_bits(gx1, gx2, nin, !tiled);
    if (!fwd_ok || !bwd_ok)
        fprintf(stderr,
                "\nmismatch (%s%s): op %d ns %d batch %lld in %lldx%lld k %lldx%lld s %lldx%lld "
                "p %lldx%lld d %lldx%lld ceil %d cip %d div %lld kind %d\n",
                fwd_ok ? "" : "forward ", bwd_ok ? "" : "backward", (int)c->op, (int)c->ns,
                (long long)c->batch, (long long)G.in[1], (long long)G.in[2], (long long)G.k[1],
                (long long)G.k[2], (long long)G.s[1], (long long)G.s[2], (long long)G.p[1],
                (long long)G.p[2], (long long)G.d[1], (long long)G.d[2], (int)c->ceil_mode,
                (int)c->count_include_pad, (long long)c->divisor_override, kind);
    CU_ASSERT(fwd_ok);
    CU_ASSERT(bwd_ok);
    free(x), free(g), free(o1), free(o2), free(gx1), free(gx2);
}

static pool_case case2d(int32_t op, int64_t batch, int64_t h, int64_t w, int64_t kh, int64_t kw,
                        int64_t sh, int64_t sw, int64_t ph, int64_t pw, int32_t ceil_mode) {
    pool_case c;
    memset(&c, 0, sizeof c);
    c.op = op, c.ns = 2, c.batch = batch, c.ceil_mode = ceil_mode, c.count_include_pad = 1;
    c.in[0] = h, c.in[1] = w, c.k[0] = kh, c.k[1] = kw, c.s[0] = sh, c.s[1] = sw;
    c.p[0] = ph, c.p[1] = pw, c.d[0] = c.d[1] = 1;
    return c;
}

/* The shapes a CNN uses and the corners named in the brief, all input kinds. */
static void test_named_shapes(void) {
    const pool_case cases[] = {
        case2d(NNM_POOL_MAX, 64, 28, 28, 2, 2, 2, 2, 0, 0, 0),  /* the CNN's pool1 */
        case2d(NNM_POOL_MAX, 2, 6, 66, 2, 2, 2, 2, 0, 0, 0),    /* 33 outputs a row: 16 + 16 + 1 */
        case2d(NNM_POOL_MAX, 2, 5, 67, 2, 2, 2, 2, 0, 0, 0),    /* odd both ways: margins */
        case2d(NNM_POOL_MAX, 1, 4, 64, 2, 2, 2, 2, 0, 0, 0),    /* whole vectors only */
        case2d(NNM_POOL_MAX, 1, 4, 31, 2, 2, 2, 2, 0, 0, 0),
        case2d(NNM_POOL_MAX, 3, 14, 14, 2, 2, 2, 2, 0, 0, 0),
        case2d(NNM_POOL_MAX, 1, 7, 7, 2, 2, 2, 2, 0, 0, 0),     /* odd: margins */
        case2d(NNM_POOL_MAX, 1, 7, 7, 2, 2, 2, 2, 0, 0, 1),     /* ceil: clipped tail */
        case2d(NNM_POOL_MAX, 2, 9, 10, 3, 3, 3, 3, 0, 0, 0),
        case2d(NNM_POOL_MAX, 2, 9, 10, 3, 2, 3, 2, 0, 0, 1),
        case2d(NNM_POOL_MAX, 2, 11, 13, 3, 3, 2, 2, 1, 1, 0),   /* overlapping, padded */
        case2d(NNM_POOL_MAX, 2, 11, 13, 3, 3, 2, 2, 1, 1, 1),
        case2d(NNM_POOL_MAX, 1, 5, 5, 1, 1, 1, 1, 0, 0, 0),     /* kernel 1 */
        case2d(NNM_POOL_MAX, 1, 5, 6, 1, 1, 2, 3, 0, 0, 1),
        case2d(NNM_POOL_MAX, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0),
        case2d(NNM_POOL_MAX, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0),
        case2d(NNM_POOL_MAX, 2, 4, 9, 4, 1, 1, 4, 2, 0, 1),
        case2d(NNM_POOL_AVG, 64, 28, 28, 2, 2, 2, 2, 0, 0, 0),
        case2d(NNM_POOL_AVG, 1, 7, 7, 2, 2, 2, 2, 0, 0, 1),
        case2d(NNM_POOL_AVG, 2, 11, 13, 3, 3, 2, 2, 1, 1, 1),
        case2d(NNM_POOL_AVG, 2, 9, 10, 3, 3, 3, 3, 0, 0, 0),
        case2d(NNM_POOL_AVG, 1, 5, 5, 1, 1, 1, 1, 0, 0, 0),
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (int kind = 0; kind < 3; kind++)
            for (int cip = 0; cip < 2; cip++)
                for (int dov = 0; dov < 2; dov++) {
                    pool_case c = cases[i];
                    if (c.op == NNM_POOL_MAX && (cip == 0 || dov == 1))
                        continue; /* no avg options on max */
                    c.count_include_pad = cip;
                    c.divisor_override = dov ? 3 : 0;
                    check_case(&c, kind);
                }
}

/* Random geometries: 1-d, 2-d and 3-d (depth kernel 1 folds into the 2-d
 * fast paths; other 3-d windows stay generic), dilation too. */
static void test_random_shapes(void) {
    for (int t = 0; t < 3000; t++) {
        pool_case c;
        memset(&c, 0, sizeof c);
        c.op = next_u32() % 2 ? NNM_POOL_MAX : NNM_POOL_AVG;
        const uint32_t r = next_u32() % 10;
        c.ns = r == 0 ? 1 : (r == 1 ? 3 : 2);
        c.batch = 1 + next_u32() % 3;
        c.ceil_mode = (int32_t)(next_u32() % 2);
        c.count_include_pad = (int32_t)(next_u32() % 2);
        c.divisor_override = next_u32() % 4 == 0 ? 1 + next_u32() % 5 : 0;
        const int tiled = next_u32() % 3 == 0;
        for (int i = 0; i < c.ns; i++) {
            c.in[i] = 1 + next_u32() % 13;
            c.k[i] = 1 + next_u32() % 4;
            c.s[i] = tiled ? c.k[i] : 1 + next_u32() % 4;
            c.p[i] = tiled ? 0 : next_u32() % (c.k[i] / 2 + 1);
            c.d[i] = next_u32() % 6 == 0 ? 2 : 1;
        }
        if (c.ns == 3 && next_u32() % 2) { /* depth left alone: the folded fast path */
            c.k[0] = c.s[0] = 1;
            c.p[0] = 0;
        }
        check_case(&c, (int)(next_u32() % 3));
    }
    /* the suite must have exercised every path */
    CU_ASSERT(g_fast_cases > 100);
    CU_ASSERT(g_tiled_cases > 100);
    CU_ASSERT(g_total - g_fast_cases > 100);
}

static float from_bits(uint32_t b) {
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

/* got[i] against PyTorch's bits: exact for max (a selection and sums in
 * torch's order), within float rounding for avg (torch's accumulation
 * differs); any NaN matches any NaN. */
static int golden_match(const float *got, const uint32_t *want, int64_t n, int exact) {
    int bad = 0;
    for (int64_t i = 0; i < n; i++) {
        const float w = from_bits(want[i]), v = got[i];
        uint32_t vb;
        memcpy(&vb, &v, sizeof vb);
        int ok = vb == want[i] || (v != v && w != w);
        if (!ok && !exact)
            ok = fabsf(v - w) <= 1e-6f + 1e-6f * fabsf(w);
        if (!ok && bad++ < 4)
            fprintf(stderr, "\n  [%lld]: got %.9g (0x%08x) want %.9g (0x%08x)", (long long)i,
                    (double)v, (unsigned)vb, (double)w, (unsigned)want[i]);
    }
    return bad;
}

static void test_golden_corners(void) {
    for (size_t k = 0; k < sizeof pg_cases / sizeof pg_cases[0]; k++) {
        const pg_case *t = &pg_cases[k];
        pool_case c;
        memset(&c, 0, sizeof c);
        c.op = t->op == 0 ? NNM_POOL_MAX : NNM_POOL_AVG;
        c.ns = 2;
        c.batch = t->shape[0] * t->shape[1];
        c.ceil_mode = t->ceil_mode;
        c.count_include_pad = t->count_include_pad;
        c.divisor_override = t->divisor_override;
        for (int i = 0; i < 2; i++) {
            c.in[i] = t->shape[2 + i], c.k[i] = t->kernel[i], c.s[i] = t->stride[i];
            c.p[i] = t->padding[i], c.d[i] = t->dilation[i];
        }
        nnm_pool_args a;
        cpu_geom3 G;
        CU_ASSERT_FATAL(setup(&c, &a, &G));
        CU_ASSERT_EQUAL(G.out[1], t->out_hw[0]);
        CU_ASSERT_EQUAL(G.out[2], t->out_hw[1]);
        const int64_t nin = c.batch * G.in[1] * G.in[2], nout = c.batch * G.out[1] * G.out[2];
        float *x = malloc((size_t)nin * sizeof *x), *g = malloc((size_t)nout * sizeof *g);
        float *y = malloc((size_t)nout * sizeof *y), *gx = malloc((size_t)nin * sizeof *gx);
        CU_ASSERT_FATAL(x && g && y && gx);
        for (int64_t i = 0; i < nin; i++)
            x[i] = from_bits(t->x[i]);
        for (int64_t i = 0; i < nout; i++)
            g[i] = from_bits(t->g[i]);
        for (int fast = 0; fast < 2; fast++) {
            const int exact = c.op == NNM_POOL_MAX;
            cpu_pool_run(&a, &G, c.batch, x, y, fast);
            int bad = golden_match(y, t->y, nout, exact);
            if (bad)
                fprintf(stderr, "\n%s (%s): forward, %d differ\n", t->name, fast ? "fast" : "generic", bad);
            CU_ASSERT_EQUAL(bad, 0);
            cpu_pool_backward_run(&a, &G, c.batch, x, g, gx, fast);
            bad = golden_match(gx, t->gx, nin, exact);
            if (bad)
                fprintf(stderr, "\n%s (%s): backward, %d differ\n", t->name, fast ? "fast" : "generic", bad);
            CU_ASSERT_EQUAL(bad, 0);
        }
        free(x), free(g), free(y), free(gx);
    }
}

#ifdef CPU_POOL_AVX512
/* The same with the AVX-512 rows of the 2 x 2 max pool off: the scalar loops
 * that machines without AVX-512F run (the fast path above took the AVX-512
 * rows where this one has it). */
static void test_scalar_rows(void) {
    const int was = atomic_load(&cpu_pool_avx512_state);
    atomic_store(&cpu_pool_avx512_state, 1);
    test_named_shapes();
    test_golden_corners();
    atomic_store(&cpu_pool_avx512_state, was);
}
#endif

int main(void) {
    CU_pSuite s = tu_suite("cpu_pool", NULL, NULL);
    if (s == NULL)
        return 1;
    CU_add_test(s, "named shapes: fast == generic, bit for bit", test_named_shapes);
    CU_add_test(s, "random shapes: fast == generic, bit for bit", test_random_shapes);
    CU_add_test(s, "PyTorch corners: ties, signed zeros, NaN, -inf, ceil_mode",
                test_golden_corners);
#ifdef CPU_POOL_AVX512
    CU_add_test(s, "2 x 2 max: the scalar rows too", test_scalar_rows);
#endif
    return tu_run();
}
