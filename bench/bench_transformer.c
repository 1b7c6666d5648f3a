/* bench/bench_transformer.c - transformer_encoder_layer (torch.nn's
 * TransformerEncoderLayer(d_model=256, nhead=8): dim_feedforward 2048,
 * dropout 0.1, relu, post-norm, [S, N, E] inputs) on seq 128, batch 8,
 * through the real call path (the layer's children: multihead_attention,
 * linear, dropout, layer_norm; the cpu backend), one thread.
 *
 * Prints JSON lines:
 *   transformer_encoder_layer_fwd      eval mode, grad mode off: ms (wall)
 *                                      and cpu_ms (process CPU time)
 *   transformer_encoder_layer_fwd_causal  the same with is_causal (a
 *                                      causal mask on the self-attention)
 *   transformer_encoder_layer_fwd_bwd  train mode (dropout 0.1 active),
 *                                      forward + backward of sum(y * g)
 *                                      (grads of the input and of every
 *                                      parameter): ms and cpu_ms
 * Medians of REPS repetitions after a warm-up (the caching allocator full).
 * Usage: bench_transformer [REPS [fwd]] ("fwd": the forward only, for
 * profiling).
 * bench/bench_transformer_torch.py runs the same in PyTorch, and
 * bench/bench_transformer.sh runs both in alternation and compares them.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BENCH_NAME "bench_transformer"
#include "bench_util.h"
#include "nnmod/nnmod.h"

#define D_MODEL 256
#define NHEAD 8
#define SEQ 128
#define BATCH 8

static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static nnm_tensor *filled(nnm_ctx *ctx, int32_t nd, const int64_t *shape, float v) {
    int64_t n = 1;
    for (int32_t i = 0; i < nd; i++) n *= shape[i];
    float *buf = malloc((size_t)n * sizeof *buf);
    if (!buf) die(ctx, "out of memory");
    for (int64_t i = 0; i < n; i++) buf[i] = v * (float)((i * 37) % 101 - 50) / 50.0f;
    nnm_tensor *t = NULL;
    if (nnm_tensor_from_f32(ctx, nd, shape, buf, &t) != NNM_OK) die(ctx, "tensor");
    free(buf);
    return t;
}

static void emit(const char *name, double ms, double cpu_ms) {
    printf("{\"bench\": \"%s\", \"value\": %.4g, \"unit\": \"ms\", \"cpu_ms\": %.4g, \"d_model\": %d, "
           "\"nhead\": %d, \"seq\": %d, \"batch\": %d, \"threads\": 1}\n",
           name, ms, cpu_ms, D_MODEL, NHEAD, SEQ, BATCH);
    fflush(stdout);
}

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 7;
    if (reps < 1 || reps > 64) reps = 7;
    nnm_ctx *ctx = NULL;
    if (nnm_ctx_new(NULL, &ctx) != NNM_OK) return 1;
    nnm_config *cfg = NULL;
    nnm_config_new(&cfg);
    nnm_config_set_int(cfg, "d_model", D_MODEL);
    nnm_config_set_int(cfg, "nhead", NHEAD);
    nnm_module *m = NULL;
    if (nnm_module_create(ctx, "transformer_encoder_layer", cfg, &m) != NNM_OK) die(ctx, "create");
    nnm_config_free(cfg);
    const int64_t shape[3] = {SEQ, BATCH, D_MODEL};
    nnm_tensor *x = filled(ctx, 3, shape, 1.0f), *g = filled(ctx, 3, shape, 0.01f), *y = NULL;
    double t[64], c[64];

    /* forward: eval, grad mode off */
    nnm_module_train(m, 0);
    int prev = nnm_grad_set_enabled(0);
    for (int i = -1; i < reps; i++) {
        double t0 = now_s(), c0 = cpu_s();
        if (nnm_module_call(m, &x, 1, &y, 1) != NNM_OK) die(ctx, "forward");
        if (i >= 0) t[i] = now_s() - t0, c[i] = cpu_s() - c0;
        nnm_tensor_release(y);
        y = NULL;
    }
    emit("transformer_encoder_layer_fwd", median(t, reps) * 1e3, median(c, reps) * 1e3);

    /* forward with a causal mask (is_causal: PyTorch's src_mask =
     * triu(-inf, 1)): eval, grad mode off */
    nnm_config *cc = NULL;
    nnm_config_new(&cc);
    nnm_config_set_int(cc, "d_model", D_MODEL);
    nnm_config_set_int(cc, "nhead", NHEAD);
    nnm_config_set_bool(cc, "is_causal", 1);
    nnm_module *mc = NULL;
    if (nnm_module_create(ctx, "transformer_encoder_layer", cc, &mc) != NNM_OK) die(ctx, "create (causal)");
    nnm_config_free(cc);
    nnm_module_train(mc, 0);
    for (int i = -1; i < reps; i++) {
        double t0 = now_s(), c0 = cpu_s();
        if (nnm_module_call(mc, &x, 1, &y, 1) != NNM_OK) die(ctx, "forward (causal)");
        if (i >= 0) t[i] = now_s() - t0, c[i] = cpu_s() - c0;
        nnm_tensor_release(y);
        y = NULL;
    }
    nnm_module_release(mc);
    nnm_grad_set_enabled(prev);
    emit("transformer_encoder_layer_fwd_causal", median(t, reps) * 1e3, median(c, reps) * 1e3);

    /* forward + backward: train mode (dropout on), grads of x and every parameter */
    if (argc > 2 && strcmp(argv[2], "fwd") == 0) reps = 0; /* profiling the forward alone */
    nnm_module_train(m, 1);
    nnm_tensor_set_requires_grad(x, 1);
    for (int i = -1; i < reps; i++) {
        nnm_module_zero_grad(m);
        nnm_tensor_set_grad(x, NULL);
        double t0 = now_s(), c0 = cpu_s();
        if (nnm_module_call(m, &x, 1, &y, 1) != NNM_OK) die(ctx, "forward (grad)");
        if (nnm_backward(y, g, 0) != NNM_OK) die(ctx, "backward");
        if (i >= 0) t[i] = now_s() - t0, c[i] = cpu_s() - c0;
        nnm_tensor_release(y);
        y = NULL;
    }
    if (reps) emit("transformer_encoder_layer_fwd_bwd", median(t, reps) * 1e3, median(c, reps) * 1e3);
    nnm_tensor_release(g);
    nnm_tensor_release(x);
    nnm_module_release(m);
    nnm_ctx_free(ctx);
    return 0;
}
