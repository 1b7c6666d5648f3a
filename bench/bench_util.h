/* bench/bench_util.h - what every benchmark shares: a monotonic clock, the
 * median of a sample, and dying with the runtime's message. Header-only;
 * each benchmark defines BENCH_NAME before including it. */
#ifndef NNM_BENCH_UTIL_H
#define NNM_BENCH_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "nnmod/nnmod.h"

#ifndef BENCH_NAME
#error "define BENCH_NAME before including bench_util.h"
#endif

static inline double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sorts v in place and returns its median. */
static inline double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[n / 2];
}

static inline void die(nnm_ctx *ctx, const char *what) {
    fprintf(stderr, BENCH_NAME ": %s: %s\n", what, nnm_ctx_errmsg(ctx));
    exit(1);
}

/* A module of `type`; in > 0 makes it a linear layer in -> out (the MLP
 * benches' layers), in == 0 a layer without config (relu, ...). Exits on
 * failure. */
static inline nnm_module *layer(nnm_ctx *ctx, const char *type, int64_t in, int64_t out) {
    nnm_config *cfg = NULL;
    if (in) {
        nnm_config_new(&cfg);
        nnm_config_set_int(cfg, "in_features", in);
        nnm_config_set_int(cfg, "out_features", out);
    }
    nnm_module *m;
    if (nnm_module_create(ctx, type, cfg, &m)) die(ctx, type);
    nnm_config_free(cfg);
    return m;
}

#endif
