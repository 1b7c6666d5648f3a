/* tests/autograd/ag_test.h - what the autograd suites share beyond
 * tests/test_util.h: the suite's context (g_ctx, which TU_CTX names), its
 * init/cleanup, scalar and shape helpers, loss layers and sequentials, and a
 * comparison that also tracks the worst relative error. Header-only; each
 * suite includes it once, first. Public API only (nnmod.h). */
#ifndef NNM_TESTS_AG_TEST_H
#define NNM_TESTS_AG_TEST_H

#include "test_util.h"

static nnm_ctx *g_ctx;
#define TU_CTX g_ctx

static inline int ag_suite_init(void) { return tu_ctx_new(&g_ctx); }

static inline int ag_suite_clean(void) { return tu_ctx_free(&g_ctx); }

/* ------------------------------------------------------------------------ */
/* Tensors                                                                   */
/* ------------------------------------------------------------------------ */

/* The first element of an f32 tensor as a double (NAN on failure). */
static inline double scalar_of(nnm_tensor *t) {
    float v[1];
    if (t == NULL || nnm_tensor_numel(t) != 1 || nnm_tensor_to_f32(t, v, 1) != NNM_OK)
        return NAN;
    return v[0];
}

/* 1 when a has b's shape. */
static inline int same_shape(nnm_tensor *a, nnm_tensor *b) {
    const nnm_tensor_desc *d = nnm_tensor_desc_get(b);
    return d != NULL && tu_shape_is(a, d->ndim, d->shape);
}

/* ------------------------------------------------------------------------ */
/* Modules                                                                   */
/* ------------------------------------------------------------------------ */

/* A loss layer. reduction NULL, ignore_index INT64_MIN and smoothing < 0 leave
 * the key unset (the layer's default). */
static inline nnm_module *mk_loss(const char *layer, const char *reduction, int64_t ignore_index,
                                  double smoothing) {
    nnm_config *cfg = NULL;
    if (nnm_config_new(&cfg) != NNM_OK)
        return NULL;
    if (reduction != NULL)
        nnm_config_set_str(cfg, "reduction", reduction);
    if (ignore_index != INT64_MIN)
        nnm_config_set_int(cfg, "ignore_index", ignore_index);
    if (smoothing >= 0)
        nnm_config_set_float(cfg, "label_smoothing", smoothing);
    nnm_module *m = tu_module(g_ctx, layer, cfg);
    nnm_config_free(cfg);
    return m;
}

/* Sequential(children...) under the names "0", "1", ...; takes over the
 * caller's references to the children (also on failure). */
static inline nnm_module *mk_seq(nnm_module *const *children, int n) {
    nnm_module *s = tu_module(g_ctx, "sequential", NULL);
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

/* Sequential(Linear(in, hidden), ReLU, Linear(hidden, out)), both with bias. */
static inline nnm_module *mk_mlp(int64_t in, int64_t hidden, int64_t out) {
    nnm_module *kids[3] = {tu_linear(g_ctx, "linear", in, hidden, 1),
                           tu_module(g_ctx, "relu", NULL),
                           tu_linear(g_ctx, "linear", hidden, out, 1)};
    return mk_seq(kids, 3);
}

/* ------------------------------------------------------------------------ */
/* Comparisons                                                               */
/* ------------------------------------------------------------------------ */

/* tu_count_mismatch (tu_near, no flags), and *worst (may be NULL) is raised to
 * the largest relative error |got - want| / |want| over the elements with
 * |want| >= 1e-3 (INFINITY for a NaN anywhere). */
static inline int ag_mismatch(const char *what, const float *got, const float *want, int64_t n,
                              double rtol, double atol, double *worst) {
    for (int64_t i = 0; worst != NULL && i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        double rel = fabs((double)want[i]) >= 1e-3 ? d / fabs((double)want[i]) : 0.0;
        if (rel > *worst || isnan(d))
            *worst = isnan(d) ? INFINITY : rel;
    }
    return tu_count_mismatch(what, got, want, n, rtol, atol, 0);
}

#endif /* NNM_TESTS_AG_TEST_H */
