/* tests/autograd/test_gradcheck.c - every differentiable op of nnmod.h's Ops
 * section and every loss layer, checked against central finite differences.
 *
 * For a closure f(leaves) -> y, the check builds the scalar s = sum(y * W),
 * with W a fixed pseudo-random tensor of y's shape (nnm_op_binary MUL, then
 * nnm_op_reduce SUM), runs nnm_backward(s) and compares each leaf's .grad with
 *
 *     ds/dx_j ~= (s(x_j + h) - s(x_j - h)) / ((x_j + h) - (x_j - h))
 *
 * where the perturbed values are the float32 numbers actually stored and
 * s(.) is summed in double from the float32 outputs (grad mode off). Inputs
 * are drawn away from the kinks of relu/abs/max/min (more than 10 h) so the
 * difference never straddles one. A gradient passes when
 * |analytic - numeric| <= ATOL + RTOL * |numeric|; the worst error of every
 * check is printed at the end.
 */
#include "ag_test.h"

#define GC_EPS 1e-2
#define GC_RTOL 1e-2
#define GC_ATOL 1e-3
#define GC_MAX_LEAVES 6

/* ------------------------------------------------------------------------ */
/* The checker                                                               */
/* ------------------------------------------------------------------------ */

typedef nnm_status (*gc_fn)(void *user, nnm_tensor *const *x, nnm_tensor **out);

/* Worst results over the whole run, for the summary. */
static int g_checks, g_failed_checks;
static int64_t g_elements;
static double g_worst_abs, g_worst_rel, g_worst_ratio;
static char g_worst_abs_name[96], g_worst_rel_name[96], g_worst_ratio_name[96];

static uint32_t name_seed(const char *s) {
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

static int is_f32(nnm_tensor *t) {
    const nnm_tensor_desc *d = nnm_tensor_desc_get(t);
    return d != NULL && d->dtype.code == NNM_DTYPE_FLOAT && d->dtype.bits == 32;
}

/* s = sum(y * w) in double from y's float32 values; NAN on failure. */
static double weighted_sum(nnm_tensor *y, const float *w, int64_t n) {
    int64_t ny = 0;
    float *v = tu_read_f32(y, &ny);
    if (v == NULL || ny != n) {
        free(v);
        return NAN;
    }
    double s = 0.0;
    for (int64_t i = 0; i < n; i++)
        s += (double)v[i] * (double)w[i];
    free(v);
    return s;
}

/* Evaluates f with grad mode off; returns sum(y * w) or NAN. */
static double eval_numeric(gc_fn f, void *user, nnm_tensor *const *x, const float *w, int64_t n) {
    int prev = nnm_grad_set_enabled(0);
    nnm_tensor *y = NULL;
    nnm_status st = f(user, x, &y);
    nnm_grad_set_enabled(prev);
    double s = st == NNM_OK ? weighted_sum(y, w, n) : NAN;
    nnm_tensor_release(y);
    return s;
}

/* Checks the gradients of f with respect to every f32 leaf in x[0..nx) whose
 * wrt bit is set (wrt 0: every f32 leaf). Returns the number of bad elements
 * (or -1 when something failed outright). */
static int gradcheck(const char *name, gc_fn f, void *user, nnm_tensor *const *x, int nx,
                     uint32_t wrt) {
    CU_ASSERT_TRUE_FATAL(nx <= GC_MAX_LEAVES);
    int diff[GC_MAX_LEAVES] = {0}, was_rg[GC_MAX_LEAVES] = {0};
    int bad = 0;
    g_checks++;
    for (int i = 0; i < nx; i++) {
        diff[i] = x[i] != NULL && is_f32(x[i]) && (wrt == 0 || (wrt >> i) & 1u);
        if (!diff[i])
            continue;
        was_rg[i] = nnm_tensor_requires_grad(x[i]);
        CHECK_STATUS(nnm_tensor_set_requires_grad(x[i], 1), NNM_OK);
        CHECK_STATUS(nnm_tensor_set_grad(x[i], NULL), NNM_OK);
    }

    /* Analytic: s = sum(f(x) * W), backward. */
    int prev = nnm_grad_set_enabled(1);
    nnm_tensor *y = NULL, *wt = NULL, *yw = NULL, *s = NULL;
    float *w = NULL;
    int64_t ny = 0;
    nnm_status st = f(user, x, &y);
    if (st != NNM_OK)
        fprintf(stderr, "\n  gradcheck %s: forward: %s: %s\n", name, nnm_status_name(st),
                nnm_ctx_errmsg(g_ctx));
    CU_ASSERT_EQUAL(st, NNM_OK);
    if (st == NNM_OK) {
        const nnm_tensor_desc *d = nnm_tensor_desc_get(y);
        ny = nnm_tensor_numel(y);
        w = malloc(sizeof(float) * (size_t)(ny > 0 ? ny : 1));
        CU_ASSERT_PTR_NOT_NULL_FATAL(w);
        tu_fill_uniform(w, (size_t)ny, name_seed(name), -1.0, 1.0);
        wt = tu_tf32(g_ctx, d->ndim, d->shape, w);
        st = nnm_op_binary(g_ctx, NNM_BINARY_MUL, y, wt, &yw);
        if (st == NNM_OK)
            st = nnm_op_reduce(g_ctx, NNM_REDUCE_SUM, yw, NULL, 0, 0, &s);
        if (st == NNM_OK)
            st = nnm_backward(s, NULL, 0);
        if (st != NNM_OK)
            fprintf(stderr, "\n  gradcheck %s: backward: %s: %s\n", name, nnm_status_name(st),
                    nnm_ctx_errmsg(g_ctx));
        CU_ASSERT_EQUAL(st, NNM_OK);
        /* The f32 reduction agrees with the double one. */
        if (st == NNM_OK) {
            double sd = weighted_sum(y, w, ny);
            if (!tu_near(scalar_of(s), sd, 1e-4, 1e-5)) {
                fprintf(stderr, "\n  gradcheck %s: sum(y*W) = %.9g, in double %.9g\n", name,
                        scalar_of(s), sd);
                CU_FAIL("sum(y * W) disagrees with the double computation");
            }
        }
    }
    nnm_tensor_release(s);
    nnm_tensor_release(yw);
    nnm_tensor_release(wt);
    nnm_tensor_release(y);
    nnm_grad_set_enabled(prev);
    if (st != NNM_OK) {
        bad = -1;
        goto done;
    }

    double worst_abs = 0.0, worst_rel = 0.0, worst_ratio = 0.0;
    for (int i = 0; i < nx; i++) {
        if (!diff[i])
            continue;
        nnm_tensor *g = nnm_tensor_grad(x[i]);
        if (g == NULL || !same_shape(g, x[i])) {
            fprintf(stderr, "\n  gradcheck %s: leaf %d has %s\n", name, i,
                    g ? "a gradient of another shape" : "no gradient");
            CU_FAIL("missing or misshapen gradient");
            bad = -1;
            continue;
        }
        int64_t n = 0;
        float *ga = tu_read_f32(g, &n);
        float *p = tu_cpu_data(x[i]);
        CU_ASSERT_PTR_NOT_NULL_FATAL(ga);
        CU_ASSERT_PTR_NOT_NULL_FATAL(p);
        for (int64_t j = 0; j < n; j++) {
            const float orig = p[j];
            const float hi = (float)(orig + GC_EPS), lo = (float)(orig - GC_EPS);
            p[j] = hi;
            const double fp = eval_numeric(f, user, x, w, ny);
            p[j] = lo;
            const double fm = eval_numeric(f, user, x, w, ny);
            p[j] = orig;
            const double num = (fp - fm) / ((double)hi - (double)lo);
            const double err = fabs((double)ga[j] - num);
            const double tol = GC_ATOL + GC_RTOL * fabs(num);
            const double rel = err / fmax(fabs(num), 1e-2);
            g_elements++;
            if (!(err <= tol)) {
                if (bad < 6)
                    fprintf(stderr, "\n  gradcheck %s: leaf %d [%lld]: analytic %.7g numeric %.7g",
                            name, i, (long long)j, (double)ga[j], num);
                bad++;
            }
            if (isnan(err)) {
                worst_ratio = INFINITY;
                continue;
            }
            worst_abs = fmax(worst_abs, err);
            worst_rel = fmax(worst_rel, rel);
            worst_ratio = fmax(worst_ratio, err / tol);
        }
        free(ga);
    }
    if (worst_abs > g_worst_abs) {
        g_worst_abs = worst_abs;
        snprintf(g_worst_abs_name, sizeof g_worst_abs_name, "%s", name);
    }
    if (worst_rel > g_worst_rel) {
        g_worst_rel = worst_rel;
        snprintf(g_worst_rel_name, sizeof g_worst_rel_name, "%s", name);
    }
    if (worst_ratio > g_worst_ratio) {
        g_worst_ratio = worst_ratio;
        snprintf(g_worst_ratio_name, sizeof g_worst_ratio_name, "%s", name);
    }
    if (bad)
        fprintf(stderr, "\n  gradcheck %s: %d bad elements (worst |a-n| %.3g)\n", name, bad,
                worst_abs);
    CU_ASSERT_EQUAL(bad, 0);

done:
    if (bad)
        g_failed_checks++;
    free(w);
    for (int i = 0; i < nx; i++) {
        if (!diff[i])
            continue;
        nnm_tensor_set_grad(x[i], NULL);
        if (!was_rg[i])
            nnm_tensor_set_requires_grad(x[i], 0);
    }
    return bad;
}

/* ------------------------------------------------------------------------ */
/* Input domains                                                             */
/* ------------------------------------------------------------------------ */

enum domain {
    D_ANY = 0,     /* U(-2, 2) */
    D_POS = 1,     /* U(0.5, 2): log, sqrt, divisors */
    D_AWAY0 = 2,   /* |x| in [0.1, 2], random sign: relu, abs */
    D_DISTINCT = 3, /* a permutation of a grid with step 0.1: max/min reductions */
    D_GRID0 = 4,   /* multiples of 0.2 in [-1.6, 1.6] */
    D_GRID1 = 5,   /* the same shifted by 0.1: never within 0.1 of D_GRID0 */
    D_NONZERO = 6  /* |x| in [0.5, 2], random sign: divisors */
};

static int64_t numel_of(int32_t ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int32_t i = 0; i < ndim; i++)
        n *= shape[i];
    return n;
}

static int64_t gcd64(int64_t a, int64_t b) {
    while (b) {
        int64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

static nnm_tensor *input(int32_t ndim, const int64_t *shape, int dom, uint32_t seed) {
    const int64_t n = numel_of(ndim, shape);
    float *v = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    float *sg = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    CU_ASSERT_PTR_NOT_NULL_FATAL(v);
    CU_ASSERT_PTR_NOT_NULL_FATAL(sg);
    tu_fill_uniform(sg, (size_t)n, seed ^ 0x5bd1e995u, -1.0, 1.0);
    switch (dom) {
    case D_POS: tu_fill_uniform(v, (size_t)n, seed, 0.5, 2.0); break;
    case D_AWAY0:
    case D_NONZERO:
        tu_fill_uniform(v, (size_t)n, seed, dom == D_AWAY0 ? 0.1 : 0.5, 2.0);
        for (int64_t i = 0; i < n; i++)
            v[i] = sg[i] < 0 ? -v[i] : v[i];
        break;
    case D_DISTINCT: {
        int64_t m = 7;
        while (gcd64(m, n) != 1)
            m += 2;
        for (int64_t i = 0; i < n; i++)
            v[i] = (float)(0.1 * (double)((i * m + (int64_t)(seed % 5u)) % n) - 0.05 * (double)n);
        break;
    }
    case D_GRID0:
    case D_GRID1:
        for (int64_t i = 0; i < n; i++)
            v[i] = (float)(0.2 * (double)((i * 7 + (int64_t)(seed % 11u)) % 17) - 1.6 +
                           (dom == D_GRID1 ? 0.1 : 0.0));
        break;
    default: tu_fill_uniform(v, (size_t)n, seed, -2.0, 2.0); break;
    }
    nnm_tensor *t = tu_tf32(g_ctx, ndim, shape, v);
    free(v);
    free(sg);
    return t;
}

#define SHAPE(...) (int32_t)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (int64_t[]){__VA_ARGS__}

/* ------------------------------------------------------------------------ */
/* Closures                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct op_case {
    int32_t op;
    double alpha;
    int32_t dims[NNM_MAX_DIMS];
    uint32_t n_dims;
    int keepdim;
    int64_t ignore_index;
    double smoothing;
    int32_t reduction;
    int32_t ndim;
    int64_t shape[NNM_MAX_DIMS];
    nnm_module *m;
} op_case;

static nnm_status f_unary(void *u, nnm_tensor *const *x, nnm_tensor **out) {
    const op_case *c = u;
    return nnm_op_unary(g_ctx, c->op, x[0], c->alpha, out);
}

static nnm_status f_binary(void *u, nnm_tensor *const *x, nnm_tensor **out) {
    const op_case *c = u;
    return nnm_op_binary(g_ctx, c->op, x[0], x[1], out);
}

/* op(x, x): the same leaf on both sides. */
static nnm_status f_binary_self(void *u, nnm_tensor *const *x, nnm_tensor **out) {
    const op_case *c = u;
    return nnm_op_binary(g_ctx, c->op, x[0], x[0], out);
}

static nnm_status f_matmul(void *u, nnm_tensor *const *x, nnm_tensor **out) {
    (void)u;
    return nnm_op_matmul(g_ctx, x[0], x[1], out);
}

static nnm_status f_linear(void *u, nnm_tensor *const *x, nnm_tensor **out) {
    (void)u;
    return nnm_op_linear(g_ctx, x[0], x[1], x[2], out);
}

static nnm_status f_linear_nobias(void *u, nnm_tensor *const *x, nnm_tensor **out) {
    (void)u;
    return nnm_op_linear(g_ctx, x[0], x[1], NULL, out);
}

static nnm_status f_reduce(void *u, nnm_tensor *const *x, nnm_tensor **out) {
    const op_case *c = u;
    return nnm_op_reduce(g_ctx, c->op, x[0], c->n_dims ? c->dims : NULL, c->n_dims, c->keepdim,
                         out);
}

static nnm_status f_log_softmax(void *u, nnm_tensor *const *x, nnm_tensor **out) {
    (void)u;
    return nnm_op_log_softmax(g_ctx, x[0], out);
}

static nnm_status f_nll(void *u, nnm_tensor *const *x, nnm_tensor **out) {
    const op_case *c = u;
    return nnm_op_nll(g_ctx, x[0], x[1], c->ignore_index, c->smoothing, c->reduction, out);
}

/* reshape, then exp so the result is not linear in x (a wrong index mapping
 * in reshape's backward would then show). */
static nnm_status f_reshape(void *u, nnm_tensor *const *x, nnm_tensor **out) {
    const op_case *c = u;
    nnm_tensor *r = NULL;
    nnm_status st = nnm_op_reshape(g_ctx, x[0], c->ndim, c->shape, &r);
    if (st == NNM_OK)
        st = nnm_op_unary(g_ctx, NNM_UNARY_TANH, r, 0.0, out);
    nnm_tensor_release(r);
    return st;
}

static nnm_status f_module1(void *u, nnm_tensor *const *x, nnm_tensor **out) {
    const op_case *c = u;
    return tu_call1(c->m, x[0], out);
}

static nnm_status f_module2(void *u, nnm_tensor *const *x, nnm_tensor **out) {
    const op_case *c = u;
    return tu_call2(c->m, x[0], x[1], out);
}

/* x * exp(x) + tanh(x): x reaches the output along three paths. */
static nnm_status f_diamond(void *u, nnm_tensor *const *x, nnm_tensor **out) {
    (void)u;
    nnm_tensor *e = NULL, *xe = NULL, *t = NULL;
    nnm_status st = nnm_op_unary(g_ctx, NNM_UNARY_EXP, x[0], 0.0, &e);
    if (st == NNM_OK)
        st = nnm_op_binary(g_ctx, NNM_BINARY_MUL, x[0], e, &xe);
    if (st == NNM_OK)
        st = nnm_op_unary(g_ctx, NNM_UNARY_TANH, x[0], 0.0, &t);
    if (st == NNM_OK)
        st = nnm_op_binary(g_ctx, NNM_BINARY_ADD, xe, t, out);
    nnm_tensor_release(e);
    nnm_tensor_release(xe);
    nnm_tensor_release(t);
    return st;
}

/* A small network from ops only: nll(log_softmax(linear(reshape(x), w, b)
 * * sigmoid(x2)), t) with x [2, 3, 4] -> [6, 4]. */
static nnm_status f_network(void *u, nnm_tensor *const *x, nnm_tensor **out) {
    (void)u;
    nnm_tensor *r = NULL, *h = NULL, *g = NULL, *hg = NULL, *lp = NULL;
    nnm_status st = nnm_op_reshape(g_ctx, x[0], 2, (int64_t[]){6, 4}, &r);
    if (st == NNM_OK)
        st = nnm_op_linear(g_ctx, r, x[1], x[2], &h);
    if (st == NNM_OK)
        st = nnm_op_unary(g_ctx, NNM_UNARY_SIGMOID, x[3], 0.0, &g);
    if (st == NNM_OK)
        st = nnm_op_binary(g_ctx, NNM_BINARY_MUL, h, g, &hg);
    if (st == NNM_OK)
        st = nnm_op_log_softmax(g_ctx, hg, &lp);
    if (st == NNM_OK)
        st = nnm_op_nll(g_ctx, lp, x[4], -100, 0.1, NNM_REDUCTION_MEAN, out);
    nnm_tensor_release(r);
    nnm_tensor_release(h);
    nnm_tensor_release(g);
    nnm_tensor_release(hg);
    nnm_tensor_release(lp);
    return st;
}

static void release_all(nnm_tensor **t, int n) {
    for (int i = 0; i < n; i++)
        nnm_tensor_release(t[i]);
}

/* ------------------------------------------------------------------------ */
/* Ops                                                                       */
/* ------------------------------------------------------------------------ */

static void test_gc_unary(void) {
    LEAK_CHECK_BEGIN();
    static const struct {
        int32_t op;
        double alpha;
        int dom;
        const char *name;
    } ops[] = {
        {NNM_UNARY_COPY, 0, D_ANY, "copy"},       {NNM_UNARY_NEG, 0, D_ANY, "neg"},
        {NNM_UNARY_RELU, 0, D_AWAY0, "relu"},     {NNM_UNARY_EXP, 0, D_ANY, "exp"},
        {NNM_UNARY_LOG, 0, D_POS, "log"},         {NNM_UNARY_TANH, 0, D_ANY, "tanh"},
        {NNM_UNARY_SIGMOID, 0, D_ANY, "sigmoid"}, {NNM_UNARY_SQRT, 0, D_POS, "sqrt"},
        {NNM_UNARY_ABS, 0, D_AWAY0, "abs"},       {NNM_UNARY_SCALE, 2.5, D_ANY, "scale(2.5)"},
        {NNM_UNARY_SCALE, -0.3, D_ANY, "scale(-0.3)"},
    };
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        op_case c = {.op = ops[i].op, .alpha = ops[i].alpha};
        char name[64];
        snprintf(name, sizeof name, "unary %s [3,4]", ops[i].name);
        nnm_tensor *x[1] = {input(SHAPE(3, 4), ops[i].dom, (uint32_t)i + 1)};
        gradcheck(name, f_unary, &c, x, 1, 0);
        release_all(x, 1);
        snprintf(name, sizeof name, "unary %s [2,1,3]", ops[i].name);
        x[0] = input(SHAPE(2, 1, 3), ops[i].dom, (uint32_t)i + 101);
        gradcheck(name, f_unary, &c, x, 1, 0);
        release_all(x, 1);
    }
    LEAK_CHECK_END();
}

typedef struct shape_pair {
    int32_t na;
    int64_t a[4];
    int32_t nb;
    int64_t b[4];
} shape_pair;

static const shape_pair g_pairs[] = {
    {2, {2, 3}, 2, {2, 3}},       /* same shape */
    {2, {2, 3}, 1, {3}},          /* trailing broadcast */
    {1, {3}, 2, {2, 3}},          /* on the left */
    {2, {2, 1}, 2, {1, 4}},       /* both sides */
    {3, {2, 3, 4}, 2, {3, 1}},    /* rank and size-1 */
    {1, {1}, 2, {2, 3}},          /* a [1] */
    {0, {0}, 2, {2, 3}},          /* a scalar [] */
    {2, {2, 3}, 0, {0}},          /* a scalar [] on the right */
};

static void test_gc_binary(void) {
    LEAK_CHECK_BEGIN();
    static const struct {
        int32_t op;
        int da, db;
        const char *name;
    } ops[] = {
        {NNM_BINARY_ADD, D_ANY, D_ANY, "add"},       {NNM_BINARY_SUB, D_ANY, D_ANY, "sub"},
        {NNM_BINARY_MUL, D_ANY, D_ANY, "mul"},       {NNM_BINARY_DIV, D_ANY, D_NONZERO, "div"},
        {NNM_BINARY_MAX, D_GRID0, D_GRID1, "max"},   {NNM_BINARY_MIN, D_GRID1, D_GRID0, "min"},
    };
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        for (size_t k = 0; k < sizeof g_pairs / sizeof g_pairs[0]; k++) {
            const shape_pair *p = &g_pairs[k];
            op_case c = {.op = ops[i].op};
            char name[96];
            snprintf(name, sizeof name, "binary %s pair %zu (%dd x %dd)", ops[i].name, k,
                     (int)p->na, (int)p->nb);
            nnm_tensor *x[2] = {input(p->na, p->a, ops[i].da, (uint32_t)(i * 16 + k)),
                                input(p->nb, p->b, ops[i].db, (uint32_t)(i * 16 + k + 7))};
            gradcheck(name, f_binary, &c, x, 2, 0);
            /* only one side requiring grad */
            snprintf(name, sizeof name, "binary %s pair %zu, wrt b only", ops[i].name, k);
            gradcheck(name, f_binary, &c, x, 2, 2u);
            CU_ASSERT_PTR_NULL(nnm_tensor_grad(x[0]));
            release_all(x, 2);
        }
    }
    /* The same leaf on both sides: its gradient is the sum of both. */
    static const int32_t self_ops[] = {NNM_BINARY_ADD, NNM_BINARY_SUB, NNM_BINARY_MUL,
                                       NNM_BINARY_DIV};
    for (size_t i = 0; i < sizeof self_ops / sizeof self_ops[0]; i++) {
        op_case c = {.op = self_ops[i]};
        char name[64];
        snprintf(name, sizeof name, "binary op %d (x, x)", (int)self_ops[i]);
        nnm_tensor *x[1] = {input(SHAPE(3, 2), D_NONZERO, (uint32_t)i + 50)};
        gradcheck(name, f_binary_self, &c, x, 1, 0);
        release_all(x, 1);
    }
    LEAK_CHECK_END();
}

static void test_gc_matmul_linear(void) {
    LEAK_CHECK_BEGIN();
    nnm_tensor *x[3];
    x[0] = input(SHAPE(3, 4), D_ANY, 1);
    x[1] = input(SHAPE(4, 5), D_ANY, 2);
    gradcheck("matmul [3,4] @ [4,5]", f_matmul, NULL, x, 2, 0);
    release_all(x, 2);
    x[0] = input(SHAPE(1, 4), D_ANY, 3);
    x[1] = input(SHAPE(4, 1), D_ANY, 4);
    gradcheck("matmul [1,4] @ [4,1]", f_matmul, NULL, x, 2, 0);
    release_all(x, 2);

    x[0] = input(SHAPE(5, 4), D_ANY, 5);
    x[1] = input(SHAPE(3, 4), D_ANY, 6);
    x[2] = input(SHAPE(3), D_ANY, 7);
    gradcheck("linear [5,4] w [3,4] b [3]", f_linear, NULL, x, 3, 0);
    gradcheck("linear [5,4] w [3,4] (no bias)", f_linear_nobias, NULL, x, 2, 0);
    gradcheck("linear wrt x only", f_linear, NULL, x, 3, 1u);
    gradcheck("linear wrt w, b only", f_linear, NULL, x, 3, 6u);
    release_all(x, 3);
    x[0] = input(SHAPE(2, 3, 4), D_ANY, 8);
    x[1] = input(SHAPE(5, 4), D_ANY, 9);
    x[2] = input(SHAPE(5), D_ANY, 10);
    gradcheck("linear 3-D [2,3,4] w [5,4] b [5]", f_linear, NULL, x, 3, 0);
    gradcheck("linear 3-D [2,3,4] (no bias)", f_linear_nobias, NULL, x, 2, 0);
    release_all(x, 3);
    x[0] = input(SHAPE(4), D_ANY, 11);
    x[1] = input(SHAPE(2, 4), D_ANY, 12);
    x[2] = input(SHAPE(2), D_ANY, 13);
    gradcheck("linear 1-D [4] w [2,4] b [2]", f_linear, NULL, x, 3, 0);
    release_all(x, 3);
    LEAK_CHECK_END();
}

static void test_gc_reduce(void) {
    LEAK_CHECK_BEGIN();
    static const struct {
        uint32_t n;
        int32_t d[3];
    } dims[] = {{0, {0}}, {1, {0}}, {1, {1}}, {1, {-1}}, {2, {0, 2}}, {2, {-1, 0}}, {3, {0, 1, 2}}};
    static const struct {
        int32_t op;
        const char *name;
    } ops[] = {{NNM_REDUCE_SUM, "sum"},
               {NNM_REDUCE_MEAN, "mean"},
               {NNM_REDUCE_MAX, "max"},
               {NNM_REDUCE_MIN, "min"}};
    for (size_t o = 0; o < sizeof ops / sizeof ops[0]; o++)
        for (size_t k = 0; k < sizeof dims / sizeof dims[0]; k++)
            for (int keep = 0; keep <= 1; keep++) {
                op_case c = {.op = ops[o].op, .n_dims = dims[k].n, .keepdim = keep};
                memcpy(c.dims, dims[k].d, sizeof dims[k].d);
                char name[96];
                snprintf(name, sizeof name, "reduce %s dims %u:{%d,%d,%d} keepdim %d",
                         ops[o].name, dims[k].n, dims[k].d[0], dims[k].d[1], dims[k].d[2], keep);
                nnm_tensor *x[1] = {input(SHAPE(2, 3, 4), D_DISTINCT, (uint32_t)(o * 31 + k))};
                gradcheck(name, f_reduce, &c, x, 1, 0);
                release_all(x, 1);
            }
    LEAK_CHECK_END();
}

static void test_gc_log_softmax(void) {
    LEAK_CHECK_BEGIN();
    nnm_tensor *x[1];
    x[0] = input(SHAPE(4, 5), D_ANY, 1);
    gradcheck("log_softmax [4,5]", f_log_softmax, NULL, x, 1, 0);
    release_all(x, 1);
    x[0] = input(SHAPE(2, 3, 4), D_ANY, 2);
    gradcheck("log_softmax [2,3,4]", f_log_softmax, NULL, x, 1, 0);
    release_all(x, 1);
    x[0] = input(SHAPE(6), D_ANY, 3);
    gradcheck("log_softmax [6]", f_log_softmax, NULL, x, 1, 0);
    release_all(x, 1);
    LEAK_CHECK_END();
}

static void test_gc_nll(void) {
    LEAK_CHECK_BEGIN();
    const int64_t tgt[5] = {3, -100, 0, 1, 1};
    const int64_t tgt2[5] = {3, 2, 0, 1, 2};
    static const double smooth[] = {0.0, 0.3, 1.0};
    static const int32_t reds[] = {NNM_REDUCTION_NONE, NNM_REDUCTION_MEAN, NNM_REDUCTION_SUM};
    for (int tset = 0; tset < 2; tset++)
        for (size_t si = 0; si < sizeof smooth / sizeof smooth[0]; si++)
            for (size_t r = 0; r < 3; r++) {
                op_case c = {.ignore_index = tset ? 2 : -100,
                             .smoothing = smooth[si],
                             .reduction = reds[r]};
                char name[96];
                snprintf(name, sizeof name, "nll ignore %lld smoothing %g reduction %d",
                         (long long)c.ignore_index, c.smoothing, (int)reds[r]);
                nnm_tensor *x[2] = {input(SHAPE(5, 4), D_ANY, (uint32_t)(si * 3 + r)),
                                    tu_ti64(g_ctx, SHAPE(5), tset ? tgt2 : tgt)};
                gradcheck(name, f_nll, &c, x, 2, 0);
                CU_ASSERT_PTR_NULL(nnm_tensor_grad(x[1]));
                release_all(x, 2);
            }
    LEAK_CHECK_END();
}

static void test_gc_reshape(void) {
    LEAK_CHECK_BEGIN();
    static const struct {
        int32_t ndim;
        int64_t shape[4];
    } to[] = {{2, {6, 4}}, {2, {4, -1}}, {1, {24}}, {3, {2, 12, 1}}, {4, {1, 4, 3, 2}}};
    for (size_t k = 0; k < sizeof to / sizeof to[0]; k++) {
        op_case c = {.ndim = to[k].ndim};
        memcpy(c.shape, to[k].shape, sizeof to[k].shape);
        char name[64];
        snprintf(name, sizeof name, "reshape [2,3,4] -> case %zu", k);
        nnm_tensor *x[1] = {input(SHAPE(2, 3, 4), D_ANY, (uint32_t)k)};
        gradcheck(name, f_reshape, &c, x, 1, 0);
        release_all(x, 1);
    }
    LEAK_CHECK_END();
}

static void test_gc_graphs(void) {
    LEAK_CHECK_BEGIN();
    nnm_tensor *x[5];
    x[0] = input(SHAPE(3, 3), D_ANY, 1);
    gradcheck("diamond x*exp(x) + tanh(x)", f_diamond, NULL, x, 1, 0);
    release_all(x, 1);
    x[0] = input(SHAPE(2, 3, 4), D_ANY, 2);
    x[1] = input(SHAPE(3, 4), D_ANY, 3);
    x[2] = input(SHAPE(3), D_ANY, 4);
    x[3] = input(SHAPE(3), D_ANY, 5);
    x[4] = tu_ti64(g_ctx, SHAPE(6), (int64_t[]){0, 2, 1, -100, 2, 0});
    gradcheck("network reshape/linear/sigmoid/mul/log_softmax/nll", f_network, NULL, x, 5, 0);
    release_all(x, 5);
    LEAK_CHECK_END();
}

/* ------------------------------------------------------------------------ */
/* Layers                                                                    */
/* ------------------------------------------------------------------------ */

static void test_gc_loss_layers(void) {
    LEAK_CHECK_BEGIN();
    static const char *const reds[] = {"mean", "sum", "none"};
    char name[128];
    for (int r = 0; r < 3; r++) {
        /* mse_loss: input and target both get gradients. */
        op_case c = {.m = mk_loss("mse_loss", reds[r], INT64_MIN, -1)};
        CU_ASSERT_PTR_NOT_NULL_FATAL(c.m);
        nnm_tensor *x[2] = {input(SHAPE(3, 4), D_ANY, (uint32_t)r),
                            input(SHAPE(3, 4), D_ANY, (uint32_t)r + 10)};
        snprintf(name, sizeof name, "mse_loss reduction=%s", reds[r]);
        gradcheck(name, f_module2, &c, x, 2, 0);
        release_all(x, 2);
        nnm_module_release(c.m);

        /* bce_with_logits, with a 0 logit and soft labels. */
        c.m = mk_loss("bce_with_logits", reds[r], INT64_MIN, -1);
        CU_ASSERT_PTR_NOT_NULL_FATAL(c.m);
        const float lx[12] = {0.0f, 1.5f, -2.0f, 4.0f, -4.0f, 0.25f,
                              -0.75f, 3.0f, 6.0f, -6.0f, 0.5f, -1.25f};
        const float ly[12] = {1.0f, 0.0f, 1.0f, 1.0f, 0.0f, 0.3f,
                              0.0f, 0.7f, 1.0f, 0.0f, 1.0f, 0.5f};
        x[0] = tu_tf32(g_ctx, SHAPE(4, 3), lx);
        x[1] = tu_tf32(g_ctx, SHAPE(4, 3), ly);
        snprintf(name, sizeof name, "bce_with_logits reduction=%s", reds[r]);
        gradcheck(name, f_module2, &c, x, 2, 0);
        release_all(x, 2);
        nnm_module_release(c.m);

        /* cross_entropy and nll_loss: ignore_index and smoothing. */
        static const struct {
            const char *layer;
            int64_t ignore;
            double ls;
            int64_t t[5];
        } cls[] = {
            {"cross_entropy", INT64_MIN, -1, {2, 0, -100, 3, 0}},
            {"cross_entropy", INT64_MIN, 0.25, {2, 0, -100, 3, 0}},
            {"cross_entropy", 3, 0.1, {2, 0, 1, 3, 0}},
            {"nll_loss", INT64_MIN, -1, {2, 0, -100, 3, 0}},
            {"nll_loss", 0, -1, {2, 0, 1, 3, 0}},
        };
        for (size_t k = 0; k < sizeof cls / sizeof cls[0]; k++) {
            c.m = mk_loss(cls[k].layer, reds[r], cls[k].ignore, cls[k].ls);
            CU_ASSERT_PTR_NOT_NULL_FATAL(c.m);
            x[0] = input(SHAPE(5, 4), D_ANY, (uint32_t)(k * 3 + r) + 20);
            x[1] = tu_ti64(g_ctx, SHAPE(5), cls[k].t);
            snprintf(name, sizeof name, "%s reduction=%s ignore_index=%lld smoothing=%g",
                     cls[k].layer, reds[r],
                     (long long)(cls[k].ignore == INT64_MIN ? -100 : cls[k].ignore),
                     cls[k].ls < 0 ? 0.0 : cls[k].ls);
            gradcheck(name, f_module2, &c, x, 2, 0);
            release_all(x, 2);
            nnm_module_release(c.m);
        }

        /* cross_entropy unbatched: [C] logits, [] target. */
        c.m = mk_loss("cross_entropy", reds[r], INT64_MIN, 0.1);
        CU_ASSERT_PTR_NOT_NULL_FATAL(c.m);
        x[0] = input(SHAPE(4), D_ANY, (uint32_t)r + 40);
        x[1] = tu_ti64(g_ctx, 0, NULL, (int64_t[]){1});
        snprintf(name, sizeof name, "cross_entropy unbatched [4] reduction=%s", reds[r]);
        gradcheck(name, f_module2, &c, x, 2, 0);
        release_all(x, 2);
        nnm_module_release(c.m);
    }
    LEAK_CHECK_END();
}

/* Gradients of parameters (leaves the module owns) through the call path. */
static void test_gc_modules(void) {
    LEAK_CHECK_BEGIN();
    op_case c = {.m = tu_linear(g_ctx, "linear", 4, 3, 1)};
    CU_ASSERT_PTR_NOT_NULL_FATAL(c.m);
    tu_named pl = tu_params_of(c.m);
    nnm_tensor *x[3] = {input(SHAPE(2, 5, 4), D_ANY, 1), tu_named_get(&pl, "weight"),
                        tu_named_get(&pl, "bias")};
    CU_ASSERT_PTR_NOT_NULL_FATAL(x[1]);
    CU_ASSERT_PTR_NOT_NULL_FATAL(x[2]);
    gradcheck("linear layer 3-D input, x and params", f_module1, &c, x, 3, 0);
    gradcheck("linear layer params only", f_module1, &c, x, 3, 6u);
    CU_ASSERT_PTR_NULL(nnm_tensor_grad(x[0]));
    nnm_tensor_release(x[0]);
    nnm_module_release(c.m);

    /* Sequential(linear(3,6), relu, linear(6,2)): hidden units kept away from
     * the relu kink by the first layer's bias. */
    c.m = mk_mlp(3, 6, 2);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c.m);
    pl = tu_params_of(c.m);
    CU_ASSERT_EQUAL(pl.n, 4);
    const float b0[6] = {0.9f, -0.9f, 0.8f, -0.8f, 0.95f, -0.85f};
    const float w0[18] = {0.1f, -0.2f, 0.15f, 0.05f, 0.2f, -0.1f, -0.15f, 0.1f, 0.05f,
                          0.2f, 0.1f, -0.05f, -0.1f, -0.1f, 0.2f, 0.05f, -0.2f, 0.1f};
    CU_ASSERT_TRUE(tu_write_f32(tu_named_get(&pl, "0.bias"), b0, 6));
    CU_ASSERT_TRUE(tu_write_f32(tu_named_get(&pl, "0.weight"), w0, 18));
    nnm_tensor *y[5] = {input(SHAPE(4, 3), D_ANY, 2), tu_named_get(&pl, "0.weight"),
                        tu_named_get(&pl, "0.bias"), tu_named_get(&pl, "2.weight"),
                        tu_named_get(&pl, "2.bias")};
    gradcheck("sequential(linear, relu, linear)", f_module1, &c, y, 5, 0);
    nnm_tensor_release(y[0]);
    nnm_module_release(c.m);
    LEAK_CHECK_END();
}

/* relu's gradient where finite differences say nothing, as torch 1.13's
 * threshold_backward(g, relu(x), 0) gives it (`y <= 0 ? 0 : g`): 0 at x <= 0
 * even for an infinite or NaN g, g at x > 0, and g at a NaN x. */
static void test_relu_backward_corners(void) {
    LEAK_CHECK_BEGIN();
    const float xv[7] = {-1.0f, 0.0f, -0.0f, 2.0f, NAN, -3.0f, 4.0f};
    const float gv[7] = {INFINITY, 5.0f, 5.0f, 7.0f, 3.0f, NAN, -INFINITY};
    const float want[7] = {0.0f, 0.0f, 0.0f, 7.0f, 3.0f, 0.0f, -INFINITY};
    const int64_t shape[1] = {7};
    nnm_tensor *x = tu_tf32(g_ctx, 1, shape, xv), *g = tu_tf32(g_ctx, 1, shape, gv), *y = NULL;
    CU_ASSERT_PTR_NOT_NULL_FATAL(x);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    CU_ASSERT_EQUAL(nnm_tensor_set_requires_grad(x, 1), NNM_OK);
    CU_ASSERT_EQUAL_FATAL(nnm_op_unary(g_ctx, NNM_UNARY_RELU, x, 0.0, &y), NNM_OK);
    CU_ASSERT_EQUAL(nnm_backward(y, g, 0), NNM_OK);
    int64_t n = 0;
    float *got = tu_read_f32(nnm_tensor_grad(x), &n);
    CU_ASSERT_PTR_NOT_NULL_FATAL(got);
    CU_ASSERT_EQUAL(n, 7);
    for (int i = 0; i < 7 && i < n; i++) {
        CU_ASSERT(got[i] == want[i]);
        if (got[i] != want[i])
            fprintf(stderr, "\n  relu grad [%d]: got %g want %g", i, (double)got[i], (double)want[i]);
    }
    free(got);
    nnm_tensor_release(y);
    nnm_tensor_release(g);
    nnm_tensor_release(x);
    LEAK_CHECK_END();
}

int main(void) {
    CU_pSuite s = tu_suite("gradcheck", ag_suite_init, ag_suite_clean);
    if (s == NULL)
        return 2;
    CU_add_test(s, "unary ops", test_gc_unary);
    CU_add_test(s, "relu backward corners (torch's threshold_backward)", test_relu_backward_corners);
    CU_add_test(s, "binary ops with broadcasting", test_gc_binary);
    CU_add_test(s, "matmul and linear", test_gc_matmul_linear);
    CU_add_test(s, "reductions", test_gc_reduce);
    CU_add_test(s, "log_softmax", test_gc_log_softmax);
    CU_add_test(s, "nll", test_gc_nll);
    CU_add_test(s, "reshape", test_gc_reshape);
    CU_add_test(s, "graphs (shared leaves, a network of ops)", test_gc_graphs);
    CU_add_test(s, "loss layers", test_gc_loss_layers);
    CU_add_test(s, "modules (parameters as leaves)", test_gc_modules);
    int rc = tu_run();
    printf("\ngradcheck: %d checks (%d failed), %lld gradient elements, eps %g, "
           "tolerance %g + %g * |numeric|\n",
           g_checks, g_failed_checks, (long long)g_elements, GC_EPS, GC_ATOL, GC_RTOL);
    printf("  worst |analytic - numeric|:            %.3g  (%s)\n", g_worst_abs,
           g_worst_abs_name);
    printf("  worst relative (|numeric| floor 1e-2):  %.3g  (%s)\n", g_worst_rel,
           g_worst_rel_name);
    printf("  worst error / tolerance:               %.3g  (%s)\n", g_worst_ratio,
           g_worst_ratio_name);
    return rc;
}
