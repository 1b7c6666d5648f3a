/* bench/bench_rnn.c - the recurrent layers through the real call path
 * (recurrent plugin -> op_linear + op_rnn -> the cpu backend's gemm and
 * rnn_cell slots), one thread. The shape is issue 18's: 2 layers, hidden
 * 256, input 256, sequence 64, batch 32 (time-major [64, 32, 256]).
 *
 * Prints JSON lines:
 *   lstm_fwd          lstm forward, grad mode off: ms
 *   lstm_fwd_bwd      lstm forward + backward of the output (grads of x and
 *                     every parameter): ms
 *   gru_fwd, gru_fwd_bwd   the same for gru
 * Medians of REPS repetitions after a warm-up. bench/bench_rnn_torch.py runs
 * the same in PyTorch; bench/bench_rnn.sh runs both in one go and prints the
 * ratios (alternating the two sides over rounds). The machine may be
 * shared: quote the ratios of one run. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>

#define BENCH_NAME "bench_rnn"
#include "bench_util.h"
#include "nnmod/nnmod.h"

enum { SEQ = 64, BATCH = 32, IN = 256, HID = 256, LAYERS = 2 };

static nnm_tensor *filled(nnm_ctx *ctx, int32_t nd, const int64_t *shape, unsigned seed) {
    nnm_tensor *t = NULL;
    if (nnm_tensor_new(ctx, (nnm_device){NNM_DEVICE_CPU, 0}, (nnm_dtype){NNM_DTYPE_FLOAT, 32, 1}, nd, shape, &t))
        die(ctx, "tensor");
    const nnm_tensor_desc *d = nnm_tensor_desc_get(t);
    float *p = (float *)((char *)d->data + d->byte_offset);
    int64_t n = nnm_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = (float)((seed >> 9) & 0xffff) / 65536.0f - 0.5f;
    }
    return t;
}

static void emit(const char *name, double ms) {
    printf("{\"bench\": \"%s\", \"value\": %.3f, \"unit\": \"ms\", \"seq\": %d, \"batch\": %d, \"input\": %d, "
           "\"hidden\": %d, \"layers\": %d, \"threads\": 1, \"impl\": \"nnmod\"}\n",
           name, ms, SEQ, BATCH, IN, HID, LAYERS);
    fflush(stdout);
}

static void bench(nnm_ctx *ctx, const char *type, int reps) {
    nnm_config *cfg = NULL;
    nnm_config_new(&cfg);
    nnm_config_set_int(cfg, "input_size", IN);
    nnm_config_set_int(cfg, "hidden_size", HID);
    nnm_config_set_int(cfg, "num_layers", LAYERS);
    nnm_module *m = NULL;
    if (nnm_module_create(ctx, type, cfg, &m) != NNM_OK) die(ctx, type);
    nnm_config_free(cfg);
    const int64_t xs[3] = {SEQ, BATCH, IN}, ys[3] = {SEQ, BATCH, HID};
    nnm_tensor *x = filled(ctx, 3, xs, 1), *g = filled(ctx, 3, ys, 2), *y = NULL;
    double t[64];
    char name[64];
    int prev = nnm_grad_set_enabled(0);
    for (int i = -1; i < reps; i++) {
        double t0 = now_s();
        if (nnm_module_call(m, &x, 1, &y, 1) != NNM_OK) die(ctx, "forward");
        if (i >= 0) t[i] = now_s() - t0;
        nnm_tensor_release(y);
        y = NULL;
    }
    nnm_grad_set_enabled(prev);
    snprintf(name, sizeof name, "%s_fwd", type);
    emit(name, median(t, reps) * 1e3);
    nnm_tensor_set_requires_grad(x, 1);
    for (int i = -1; i < reps; i++) {
        nnm_module_zero_grad(m);
        nnm_tensor_set_grad(x, NULL);
        double t0 = now_s();
        if (nnm_module_call(m, &x, 1, &y, 1) != NNM_OK) die(ctx, "forward (grad)");
        if (nnm_backward(y, g, 0) != NNM_OK) die(ctx, "backward");
        if (i >= 0) t[i] = now_s() - t0;
        nnm_tensor_release(y);
        y = NULL;
    }
    snprintf(name, sizeof name, "%s_fwd_bwd", type);
    emit(name, median(t, reps) * 1e3);
    nnm_tensor_release(g);
    nnm_tensor_release(x);
    nnm_module_release(m);
}

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 7;
    if (reps < 1 || reps > 64) reps = 7;
    openblas_set_num_threads(1);
    nnm_ctx *ctx = NULL;
    if (nnm_ctx_new(NULL, &ctx) != NNM_OK) return 1;
    nnm_ctx_set_num_threads(ctx, 1); /* one thread, as PyTorch's side (contexts default to the cores) */
    bench(ctx, "lstm", reps);
    bench(ctx, "gru", reps);
    nnm_ctx_free(ctx);
    return 0;
}
