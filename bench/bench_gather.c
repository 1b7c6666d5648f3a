/* bench/bench_gather.c - the layers that move rows without arithmetic,
 * through the real call path on the cpu backend, one thread:
 *   embedding_fwd / _fwd_bwd   embedding, a table of V = 30000 rows of
 *                              D = 256, indices [32, 128] (a language
 *                              model's lookup; backward: the weight's dense
 *                              gradient)
 *   embedding_pad_fwd_bwd      the same with padding_idx 0 (its row gets no
 *                              gradient)
 *   concat_fwd / _fwd_bwd      concat of [32, 64, 28, 28] and [32, 32, 28, 28]
 *                              along dim 1 (a DenseNet / U-Net skip
 *                              connection; backward: the gradient cut back)
 *   concat_last_fwd            concat of two [4096, 64] along the last dim
 * "value" is the median wall time (ms) of REPS repetitions after a warm-up,
 * "cpu_ms" the process CPU time (less hurt by a loaded machine). Written to
 * measure the layers before and after they became host ops (issue 22: every
 * layer runs on every device); quote ratios of one run. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BENCH_NAME "bench_gather"
#include "bench_util.h"
#include "nnmod/nnmod.h"

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
    printf("{\"bench\": \"%s\", \"value\": %.3f, \"unit\": \"ms\", \"cpu_ms\": %.3f, \"threads\": 1, "
           "\"impl\": \"nnmod\"}\n",
           name, ms, cpu_ms);
    fflush(stdout);
}

static nnm_tensor *randn(nnm_ctx *ctx, int32_t nd, const int64_t *shape) {
    int64_t n = 1;
    for (int32_t i = 0; i < nd; i++) n *= shape[i];
    float *v = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) v[i] = (float)(next_u() & 0xffff) / 65536.0f - 0.5f;
    nnm_tensor *t = NULL;
    if (nnm_tensor_from_f32(ctx, nd, shape, v, &t) != NNM_OK) die(ctx, "tensor");
    free(v);
    return t;
}

/* forward (grad off) and, when g, forward + backward of sum(y * g) */
static void run(nnm_ctx *ctx, const char *name, nnm_module *m, nnm_tensor **in, uint32_t n_in, nnm_tensor *g,
                int fwd, int reps) {
    nnm_tensor *y = NULL;
    double t[64], c[64];
    char full[96];
    if (fwd) {
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
    }
    if (g == NULL) return;
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
}

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 15;
    if (reps < 1 || reps > 64) reps = 15;
    nnm_ctx *ctx = NULL;
    if (nnm_ctx_new(NULL, &ctx) != NNM_OK) return 1;
    nnm_ctx_set_num_threads(ctx, 1);

    enum { V = 30000, D = 256, B = 32, T = 128 };
    int64_t *idx = malloc(sizeof(int64_t) * B * T);
    for (int i = 0; i < B * T; i++) idx[i] = next_u() % V;
    nnm_tensor *x = NULL;
    if (nnm_tensor_from_i64(ctx, 2, (int64_t[]){B, T}, idx, &x) != NNM_OK) die(ctx, "indices");
    free(idx);
    nnm_tensor *gy = randn(ctx, 3, (int64_t[]){B, T, D});
    for (int pad = 0; pad < 2; pad++) {
        nnm_config *cfg = NULL;
        nnm_config_new(&cfg);
        nnm_config_set_int(cfg, "num_embeddings", V);
        nnm_config_set_int(cfg, "embedding_dim", D);
        if (pad) nnm_config_set_int(cfg, "padding_idx", 0);
        nnm_module *m = NULL;
        if (nnm_module_create(ctx, "embedding", cfg, &m) != NNM_OK) die(ctx, "embedding");
        nnm_config_free(cfg);
        run(ctx, pad ? "embedding_pad" : "embedding", m, &x, 1, gy, !pad, reps);
        nnm_module_release(m);
    }
    nnm_tensor_release(gy);
    nnm_tensor_release(x);

    nnm_config *cfg = NULL;
    nnm_config_new(&cfg);
    nnm_config_set_int(cfg, "dim", 1);
    nnm_module *cat = NULL;
    if (nnm_module_create(ctx, "concat", cfg, &cat) != NNM_OK) die(ctx, "concat");
    nnm_config_free(cfg);
    nnm_tensor *a = randn(ctx, 4, (int64_t[]){32, 64, 28, 28}), *b = randn(ctx, 4, (int64_t[]){32, 32, 28, 28});
    nnm_tensor *g = randn(ctx, 4, (int64_t[]){32, 96, 28, 28});
    nnm_tensor_set_requires_grad(a, 1);
    nnm_tensor_set_requires_grad(b, 1);
    run(ctx, "concat", cat, (nnm_tensor *[]){a, b}, 2, g, 1, reps);
    nnm_module_release(cat);
    nnm_tensor_release(a);
    nnm_tensor_release(b);
    nnm_tensor_release(g);

    cfg = NULL;
    nnm_config_new(&cfg);
    nnm_config_set_int(cfg, "dim", -1);
    if (nnm_module_create(ctx, "concat", cfg, &cat) != NNM_OK) die(ctx, "concat");
    nnm_config_free(cfg);
    a = randn(ctx, 2, (int64_t[]){4096, 64});
    b = randn(ctx, 2, (int64_t[]){4096, 64});
    run(ctx, "concat_last", cat, (nnm_tensor *[]){a, b}, 2, NULL, 1, reps);
    nnm_module_release(cat);
    nnm_tensor_release(a);
    nnm_tensor_release(b);
    nnm_ctx_free(ctx);
    return 0;
}
