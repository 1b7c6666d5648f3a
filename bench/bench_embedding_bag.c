/* bench/bench_embedding_bag.c - embedding_bag (issue 18) through the real call
 * path (embedding plugin -> op_index_select, op_reduce, ... -> the cpu
 * backend's index_select / index_add slots), one thread. A recommender's
 * lookup: a table of V = 100000 rows of D = 64, B = 512 bags.
 *
 * Prints JSON lines (medians of REPS repetitions after a warm-up):
 *   sum_fixed_fwd / _fwd_bwd   mode sum, input [n] with offsets, every bag 20
 *                              long (no second gather)
 *   sum_var_fwd / _fwd_bwd     mode sum, bags of 1 to 39 (mean 20): the padded
 *                              layout [B, 39, D]
 *   mean_2d_fwd / _fwd_bwd     mode mean, input [512, 20]
 *   max_var_fwd / _fwd_bwd     mode max, the variable bags
 * _fwd runs with grad mode off; _fwd_bwd is forward + backward of the
 * output (the weight's gradient, dense as PyTorch's). "value" is wall time,
 * "cpu_ms" the process CPU time (a loaded machine deschedules the process,
 * and CPU time does not count that). bench/
 * bench_embedding_bag_torch.py runs the same in PyTorch;
 * bench/bench_embedding_bag.sh runs both and prints the ratios. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BENCH_NAME "bench_embedding_bag"
#include "bench_util.h"
#include "nnmod/nnmod.h"

enum { V = 100000, D = 64, B = 512, LEN = 20 };

static unsigned g_seed = 12345u;
static unsigned next_u(void) {
    g_seed = g_seed * 1664525u + 1013904223u;
    return g_seed >> 8;
}

static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void emit(const char *name, double ms, double cpu_ms) {
    printf("{\"bench\": \"%s\", \"value\": %.3f, \"unit\": \"ms\", \"cpu_ms\": %.3f, \"num_embeddings\": %d, "
           "\"dim\": %d, \"bags\": %d, \"mean_bag\": %d, \"threads\": 1, \"impl\": \"nnmod\"}\n",
           name, ms, cpu_ms, V, D, B, LEN);
    fflush(stdout);
}

static nnm_module *bag_module(nnm_ctx *ctx, const char *mode) {
    nnm_config *cfg = NULL;
    nnm_config_new(&cfg);
    nnm_config_set_int(cfg, "num_embeddings", V);
    nnm_config_set_int(cfg, "embedding_dim", D);
    nnm_config_set_str(cfg, "mode", mode);
    nnm_module *m = NULL;
    if (nnm_module_create(ctx, "embedding_bag", cfg, &m) != NNM_OK) die(ctx, "embedding_bag");
    nnm_config_free(cfg);
    return m;
}

static void run(nnm_ctx *ctx, const char *name, nnm_module *m, nnm_tensor **in, uint32_t n_in, int reps) {
    nnm_tensor *y = NULL, *g = NULL;
    double t[64], c[64];
    char full[96];
    int prev = nnm_grad_set_enabled(0);
    for (int i = -1; i < reps; i++) {
        double t0 = now_s(), c0 = cpu_s();
        if (nnm_module_call(m, in, n_in, &y, 1) != NNM_OK) die(ctx, "forward");
        if (i >= 0) t[i] = now_s() - t0, c[i] = cpu_s() - c0;
        nnm_tensor_release(y);
        y = NULL;
    }
    nnm_grad_set_enabled(prev);
    snprintf(full, sizeof full, "%s_fwd", name);
    emit(full, median(t, reps) * 1e3, median(c, reps) * 1e3);
    float *gv = malloc(sizeof(float) * B * D);
    for (int i = 0; i < B * D; i++) gv[i] = (float)(next_u() & 0xffff) / 65536.0f - 0.5f;
    if (nnm_tensor_from_f32(ctx, 2, (int64_t[]){B, D}, gv, &g) != NNM_OK) die(ctx, "grad");
    free(gv);
    for (int i = -1; i < reps; i++) {
        nnm_module_zero_grad(m);
        double t0 = now_s(), c0 = cpu_s();
        if (nnm_module_call(m, in, n_in, &y, 1) != NNM_OK) die(ctx, "forward (grad)");
        if (nnm_backward(y, g, 0) != NNM_OK) die(ctx, "backward");
        if (i >= 0) t[i] = now_s() - t0, c[i] = cpu_s() - c0;
        nnm_tensor_release(y);
        y = NULL;
    }
    snprintf(full, sizeof full, "%s_fwd_bwd", name);
    emit(full, median(t, reps) * 1e3, median(c, reps) * 1e3);
    nnm_tensor_release(g);
}

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 7;
    if (reps < 1 || reps > 64) reps = 7;
    nnm_ctx *ctx = NULL;
    if (nnm_ctx_new(NULL, &ctx) != NNM_OK) return 1;
    /* the same indices and bag lengths as bench_embedding_bag_torch.py's
     * (one generator, written out by both) */
    int64_t *fixed = malloc(sizeof(int64_t) * B * LEN), off_fixed[B], off_var[B];
    int64_t n_var = 0, lens[B];
    for (int b = 0; b < B; b++) {
        lens[b] = 1 + (int64_t)(next_u() % (2 * LEN - 1));
        n_var += lens[b];
    }
    int64_t *var = malloc(sizeof(int64_t) * (size_t)n_var);
    for (int i = 0; i < B * LEN; i++) fixed[i] = next_u() % V;
    for (int64_t i = 0; i < n_var; i++) var[i] = next_u() % V;
    for (int b = 0, at = 0; b < B; at += (int)lens[b], b++) {
        off_fixed[b] = (int64_t)b * LEN;
        off_var[b] = at;
    }
    nnm_tensor *xf = NULL, *of = NULL, *xv = NULL, *ov = NULL, *x2 = NULL;
    if (nnm_tensor_from_i64(ctx, 1, (int64_t[]){B * LEN}, fixed, &xf) ||
        nnm_tensor_from_i64(ctx, 1, (int64_t[]){B}, off_fixed, &of) ||
        nnm_tensor_from_i64(ctx, 1, (int64_t[]){n_var}, var, &xv) ||
        nnm_tensor_from_i64(ctx, 1, (int64_t[]){B}, off_var, &ov) ||
        nnm_tensor_from_i64(ctx, 2, (int64_t[]){B, LEN}, fixed, &x2))
        die(ctx, "indices");
    nnm_module *sum = bag_module(ctx, "sum"), *mean = bag_module(ctx, "mean"), *max = bag_module(ctx, "max");
    run(ctx, "sum_fixed", sum, (nnm_tensor *[]){xf, of}, 2, reps);
    run(ctx, "sum_var", sum, (nnm_tensor *[]){xv, ov}, 2, reps);
    run(ctx, "mean_2d", mean, (nnm_tensor *[]){x2}, 1, reps);
    run(ctx, "max_var", max, (nnm_tensor *[]){xv, ov}, 2, reps);
    nnm_module_release(sum);
    nnm_module_release(mean);
    nnm_module_release(max);
    nnm_tensor *all[] = {xf, of, xv, ov, x2};
    for (int i = 0; i < 5; i++) nnm_tensor_release(all[i]);
    free(fixed);
    free(var);
    nnm_ctx_free(ctx);
    return 0;
}
