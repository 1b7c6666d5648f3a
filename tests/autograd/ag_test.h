/* tests/autograd/ag_test.h - helpers shared by the autograd suites: a context,
 * leak checks, status-and-message checks, tensor and module helpers, and a
 * reader for the golden safetensors files. Header-only; each suite includes it
 * once. Public API only (nnmod.h). */
#ifndef NNM_TESTS_AG_TEST_H
#define NNM_TESTS_AG_TEST_H

#include <CUnit/Basic.h>

#include <nnmod/nnmod.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static nnm_ctx *g_ctx;

static inline int ag_suite_init(void) {
    nnm_status st = nnm_ctx_new(NULL, &g_ctx);
    if (st != NNM_OK) {
        fprintf(stderr, "nnm_ctx_new: %s\n", nnm_status_name(st));
        return 1;
    }
    return 0;
}

static inline int ag_suite_clean(void) {
    nnm_ctx_free(g_ctx);
    g_ctx = NULL;
    return 0;
}

/* Runs the suites registered so far; exit status 1 when anything failed. */
static inline int ag_run(void) {
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures() + CU_get_number_of_suites_failed() +
                      CU_get_number_of_tests_failed();
    CU_cleanup_registry();
    return failed ? 1 : 0;
}

/* ------------------------------------------------------------------------ */
/* Leak checks and status checks                                             */
/* ------------------------------------------------------------------------ */

typedef struct ag_live {
    uint64_t tensors, modules;
    int ok;
} ag_live;

static inline ag_live ag_live_now(void) {
    nnm_ctx_stats s;
    memset(&s, 0, sizeof s);
    s.struct_size = sizeof s;
    ag_live c = {0, 0, 0};
    if (nnm_ctx_stats_get(g_ctx, &s) == NNM_OK) {
        c.tensors = s.live_tensors;
        c.modules = s.live_modules;
        c.ok = 1;
    }
    return c;
}

#define LEAK_CHECK_BEGIN() const ag_live live_before_ = ag_live_now()
#define LEAK_CHECK_END()                                                                 \
    do {                                                                                 \
        ag_live after_ = ag_live_now();                                                  \
        CU_ASSERT_TRUE(live_before_.ok && after_.ok);                                    \
        if (after_.tensors != live_before_.tensors)                                      \
            fprintf(stderr, "\n  %s:%d: %lld tensors leaked\n", __FILE__, __LINE__,        \
                    (long long)(after_.tensors - live_before_.tensors));                 \
        CU_ASSERT_EQUAL(after_.tensors, live_before_.tensors);                           \
        CU_ASSERT_EQUAL(after_.modules, live_before_.modules);                           \
    } while (0)

/* Prints the context's message when a status is not the expected one. */
#define CHECK_STATUS(expr, want)                                                         \
    do {                                                                                 \
        nnm_status got_ = (expr);                                                        \
        if (got_ != (want))                                                              \
            fprintf(stderr, "\n  %s:%d: %s -> %s (want %s): %s\n", __FILE__, __LINE__,    \
                    #expr, nnm_status_name(got_), nnm_status_name(want),                 \
                    nnm_ctx_errmsg(g_ctx));                                              \
        CU_ASSERT_EQUAL(got_, (want));                                                   \
    } while (0)

/* The status must be `want` and the context's message must contain `needle`. */
#define CHECK_ERROR(expr, want, needle)                                                  \
    do {                                                                                 \
        nnm_status got_ = (expr);                                                        \
        const char *msg_ = nnm_ctx_errmsg(g_ctx);                                        \
        int has_ = msg_ != NULL && strstr(msg_, (needle)) != NULL;                       \
        if (got_ != (want) || !has_)                                                     \
            fprintf(stderr, "\n  %s:%d: %s -> %s (want %s containing \"%s\"): %s\n",      \
                    __FILE__, __LINE__, #expr, nnm_status_name(got_),                    \
                    nnm_status_name(want), (needle), msg_ ? msg_ : "(null)");            \
        CU_ASSERT_EQUAL(got_, (want));                                                   \
        CU_ASSERT_TRUE(has_);                                                            \
    } while (0)

/* ------------------------------------------------------------------------ */
/* Tensors                                                                   */
/* ------------------------------------------------------------------------ */

static inline nnm_tensor *tf32(int32_t ndim, const int64_t *shape, const float *data) {
    nnm_tensor *t = NULL;
    nnm_status st = nnm_tensor_from_f32(g_ctx, ndim, shape, data, &t);
    if (st != NNM_OK)
        fprintf(stderr, "\n  nnm_tensor_from_f32: %s: %s\n", nnm_status_name(st),
                nnm_ctx_errmsg(g_ctx));
    CU_ASSERT_EQUAL(st, NNM_OK);
    return t;
}

static inline nnm_tensor *ti64(int32_t ndim, const int64_t *shape, const int64_t *data) {
    nnm_tensor *t = NULL;
    nnm_status st = nnm_tensor_from_i64(g_ctx, ndim, shape, data, &t);
    if (st != NNM_OK)
        fprintf(stderr, "\n  nnm_tensor_from_i64: %s: %s\n", nnm_status_name(st),
                nnm_ctx_errmsg(g_ctx));
    CU_ASSERT_EQUAL(st, NNM_OK);
    return t;
}

/* A new malloc'd copy of an f32 tensor's elements (numel in *n); NULL on failure. */
static inline float *read_f32(nnm_tensor *t, int64_t *n) {
    int64_t numel = nnm_tensor_numel(t);
    if (n != NULL)
        *n = numel;
    if (t == NULL)
        return NULL;
    float *buf = malloc(sizeof(float) * (size_t)(numel > 0 ? numel : 1));
    if (buf != NULL && nnm_tensor_to_f32(t, buf, (size_t)numel) != NNM_OK) {
        free(buf);
        buf = NULL;
    }
    return buf;
}

/* The first element of an f32 tensor as a double (NAN on failure). */
static inline double scalar_of(nnm_tensor *t) {
    float v[1];
    if (t == NULL || nnm_tensor_numel(t) != 1 || nnm_tensor_to_f32(t, v, 1) != NNM_OK)
        return NAN;
    return v[0];
}

/* Pointer to the first element of a contiguous CPU tensor (NULL otherwise). */
static inline void *cpu_data(nnm_tensor *t) {
    const nnm_tensor_desc *d = nnm_tensor_desc_get(t);
    if (d == NULL || d->device.type != NNM_DEVICE_CPU)
        return NULL;
    int64_t st = 1;
    for (int32_t i = d->ndim - 1; i >= 0; i--) {
        if (d->shape[i] != 1 && d->strides[i] != st)
            return NULL;
        st *= d->shape[i];
    }
    return (char *)d->data + d->byte_offset;
}

/* Overwrites a contiguous f32 CPU tensor (e.g. a parameter) with `data`. */
static inline int write_f32(nnm_tensor *t, const float *data, size_t n) {
    const nnm_tensor_desc *d = nnm_tensor_desc_get(t);
    void *p = cpu_data(t);
    if (p == NULL || d->dtype.code != NNM_DTYPE_FLOAT || d->dtype.bits != 32 ||
        (size_t)nnm_tensor_numel(t) != n)
        return 0;
    memcpy(p, data, n * sizeof(float));
    return 1;
}

static inline int shape_is(nnm_tensor *t, int32_t ndim, const int64_t *shape) {
    const nnm_tensor_desc *d = nnm_tensor_desc_get(t);
    if (d == NULL || d->ndim != ndim)
        return 0;
    for (int32_t i = 0; i < ndim; i++)
        if (d->shape[i] != shape[i])
            return 0;
    return 1;
}

static inline int same_shape(nnm_tensor *a, nnm_tensor *b) {
    const nnm_tensor_desc *d = nnm_tensor_desc_get(b);
    return d != NULL && shape_is(a, d->ndim, d->shape);
}

/* Deterministic uniform values in [lo, hi) from a 32-bit LCG. */
static inline void fill_uniform(float *p, size_t n, uint32_t seed, double lo, double hi) {
    uint32_t s = seed * 2654435761u + 12345u;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        double u = (double)(s >> 8) / 16777216.0;
        p[i] = (float)(lo + (hi - lo) * u);
    }
}

/* ------------------------------------------------------------------------ */
/* Modules                                                                   */
/* ------------------------------------------------------------------------ */

static inline nnm_module *mk_linear(int64_t in, int64_t out, int bias) {
    nnm_config *cfg = NULL;
    nnm_module *m = NULL;
    if (nnm_config_new(&cfg) != NNM_OK)
        return NULL;
    nnm_config_set_int(cfg, "in_features", in);
    nnm_config_set_int(cfg, "out_features", out);
    nnm_config_set_bool(cfg, "bias", bias);
    nnm_status st = nnm_module_create(g_ctx, "linear", cfg, &m);
    if (st != NNM_OK)
        fprintf(stderr, "\n  create linear(%lld, %lld): %s: %s\n", (long long)in,
                (long long)out, nnm_status_name(st), nnm_ctx_errmsg(g_ctx));
    nnm_config_free(cfg);
    return m;
}

static inline nnm_module *mk_plain(const char *request) {
    nnm_module *m = NULL;
    nnm_status st = nnm_module_create(g_ctx, request, NULL, &m);
    if (st != NNM_OK)
        fprintf(stderr, "\n  create %s: %s: %s\n", request, nnm_status_name(st),
                nnm_ctx_errmsg(g_ctx));
    return m;
}

/* A loss layer. reduction NULL, ignore_index INT64_MIN and smoothing < 0 leave
 * the key unset (the layer's default). */
static inline nnm_module *mk_loss(const char *layer, const char *reduction, int64_t ignore_index,
                                  double smoothing) {
    nnm_config *cfg = NULL;
    nnm_module *m = NULL;
    if (nnm_config_new(&cfg) != NNM_OK)
        return NULL;
    if (reduction != NULL)
        nnm_config_set_str(cfg, "reduction", reduction);
    if (ignore_index != INT64_MIN)
        nnm_config_set_int(cfg, "ignore_index", ignore_index);
    if (smoothing >= 0)
        nnm_config_set_float(cfg, "label_smoothing", smoothing);
    nnm_status st = nnm_module_create(g_ctx, layer, cfg, &m);
    if (st != NNM_OK)
        fprintf(stderr, "\n  create %s: %s: %s\n", layer, nnm_status_name(st),
                nnm_ctx_errmsg(g_ctx));
    nnm_config_free(cfg);
    return m;
}

/* Sequential(children...) under the names "0", "1", ... */
static inline nnm_module *mk_seq(nnm_module *const *children, int n) {
    nnm_module *s = mk_plain("sequential");
    for (int i = 0; s != NULL && i < n; i++) {
        if (children[i] == NULL || nnm_module_add_child(s, NULL, children[i]) != NNM_OK) {
            nnm_module_release(s);
            s = NULL;
        }
    }
    for (int i = 0; i < n; i++)
        nnm_module_release(children[i]); /* the parent holds its own reference */
    return s;
}

static inline nnm_status call1(nnm_module *m, nnm_tensor *x, nnm_tensor **out) {
    *out = NULL;
    nnm_tensor *in[1] = {x};
    return nnm_module_call(m, in, 1, out, 1);
}

static inline nnm_status call2(nnm_module *m, nnm_tensor *a, nnm_tensor *b, nnm_tensor **out) {
    *out = NULL;
    nnm_tensor *in[2] = {a, b};
    return nnm_module_call(m, in, 2, out, 1);
}

/* Parameters by name, in visiting order. */
#define AG_MAX_PARAMS 16
typedef struct param_list {
    int n;
    char names[AG_MAX_PARAMS][64];
    nnm_tensor *t[AG_MAX_PARAMS];
} param_list;

static inline nnm_status ag_collect_param(void *user, const char *name, nnm_tensor *t) {
    param_list *l = user;
    if (l->n >= AG_MAX_PARAMS)
        return NNM_E_LIMIT;
    snprintf(l->names[l->n], sizeof l->names[l->n], "%s", name);
    l->t[l->n] = t;
    l->n++;
    return NNM_OK;
}

static inline param_list params_of(nnm_module *m) {
    param_list l;
    memset(&l, 0, sizeof l);
    CU_ASSERT_EQUAL(nnm_module_named_parameters(m, ag_collect_param, &l), NNM_OK);
    return l;
}

static inline nnm_tensor *param_get(const param_list *l, const char *name) {
    for (int i = 0; i < l->n; i++)
        if (strcmp(l->names[i], name) == 0)
            return l->t[i];
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Comparisons                                                               */
/* ------------------------------------------------------------------------ */

static inline int ag_near(double got, double want, double rtol, double atol) {
    return fabs(got - want) <= atol + rtol * fabs(want); /* false for NaN */
}

/* Elements of got that differ from want beyond tolerance; prints the first few
 * under `what`. *worst (may be NULL) is raised to the largest relative error
 * |got - want| / |want| over the elements with |want| >= 1e-3 (INFINITY for a
 * NaN anywhere). */
static inline int ag_mismatch(const char *what, const float *got, const float *want, int64_t n,
                              double rtol, double atol, double *worst) {
    int bad = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        double rel = fabs((double)want[i]) >= 1e-3 ? d / fabs((double)want[i]) : 0.0;
        if (worst != NULL && (rel > *worst || isnan(d)))
            *worst = isnan(d) ? INFINITY : rel;
        if (!ag_near(got[i], want[i], rtol, atol)) {
            if (bad < 4)
                fprintf(stderr, "\n  %s[%lld]: got %.9g want %.9g", what, (long long)i,
                        (double)got[i], (double)want[i]);
            bad++;
        }
    }
    if (bad)
        fprintf(stderr, "\n  %s: %d of %lld elements differ\n", what, bad, (long long)n);
    return bad;
}

#endif /* NNM_TESTS_AG_TEST_H */
