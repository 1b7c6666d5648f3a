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

#endif
