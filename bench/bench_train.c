/* bench/bench_train.c - one training step of an MLP 784-256-10 at batch 64:
 * forward through the call path, cross-entropy (the loss layer), backward,
 * SGD (momentum 0.9). Single-threaded BLAS (OPENBLAS_NUM_THREADS=1) to
 * compare with bench_train_torch.py. Prints samples/s (median of REPS runs of
 * STEPS steps) and the heap allocations a steady-state step makes.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define BENCH_NAME "bench_train"
#include "bench_util.h"
#include "nnmod/nnmod.h"

#define BATCH 64
#define REPS 7

static void step(nnm_ctx *ctx, nnm_module *model, nnm_module *loss_fn, nnm_optim *opt, nnm_tensor *x,
                 nnm_tensor *target) {
    nnm_tensor *logits, *loss;
    if (nnm_optim_zero_grad(opt)) die(ctx, "zero_grad");
    if (nnm_module_call(model, &x, 1, &logits, 1)) die(ctx, "forward");
    nnm_tensor *in[2] = {logits, target};
    if (nnm_module_call(loss_fn, in, 2, &loss, 1)) die(ctx, "loss");
    if (nnm_backward(loss, NULL, 0)) die(ctx, "backward");
    if (nnm_optim_step(opt)) die(ctx, "step");
    nnm_tensor_release(loss);
    nnm_tensor_release(logits);
}

int main(int argc, char **argv) {
    int steps = argc > 1 ? atoi(argv[1]) : 200;
    if (steps < 1) steps = 1;
    nnm_ctx *ctx;
    if (nnm_ctx_new(NULL, &ctx)) return 1;
    nnm_module *model = layer(ctx, "sequential", 0, 0);
    nnm_module *l1 = layer(ctx, "linear", 784, 256), *act = layer(ctx, "relu", 0, 0),
               *l2 = layer(ctx, "linear", 256, 10);
    nnm_module_add_child(model, NULL, l1);
    nnm_module_add_child(model, NULL, act);
    nnm_module_add_child(model, NULL, l2);
    nnm_module_release(l1);
    nnm_module_release(act);
    nnm_module_release(l2);
    nnm_module *loss_fn = layer(ctx, "cross_entropy", 0, 0);
    nnm_sgd_options so = {sizeof so, 0, 0.01, 0.9, 0.0, 0.0};
    nnm_optim *opt;
    if (nnm_optim_sgd_new(model, &so, &opt)) die(ctx, "sgd");

    int64_t xs[2] = {BATCH, 784}, ts[1] = {BATCH};
    float *xv = malloc(sizeof(float) * BATCH * 784);
    int64_t tv[BATCH];
    if (!xv) return 1;
    unsigned seed = 12345;
    for (int i = 0; i < BATCH * 784; i++) xv[i] = (float)((seed = seed * 1103515245u + 12345u) >> 16 & 0xff) / 255.0f;
    for (int i = 0; i < BATCH; i++) tv[i] = i % 10;
    nnm_tensor *x, *target;
    if (nnm_tensor_from_f32(ctx, 2, xs, xv, &x) || nnm_tensor_from_i64(ctx, 1, ts, tv, &target))
        die(ctx, "inputs");
    free(xv);

    for (int i = 0; i < 5; i++) step(ctx, model, loss_fn, opt, x, target); /* warm caches, state */
    nnm_ctx_stats s0 = {sizeof s0}, s1 = {sizeof s1};
    nnm_ctx_stats_get(ctx, &s0);
    double rate[REPS];
    for (int r = 0; r < REPS; r++) {
        double t0 = now_s();
        for (int i = 0; i < steps; i++) step(ctx, model, loss_fn, opt, x, target);
        rate[r] = (double)steps * BATCH / (now_s() - t0);
    }
    nnm_ctx_stats_get(ctx, &s1);
    qsort(rate, REPS, sizeof rate[0], cmp_double);
    printf("{\"bench\": \"train_step_mlp784_256_10\", \"value\": %.0f, \"unit\": \"samples/s\", \"batch\": %d, "
           "\"steps\": %d, \"reps\": %d, \"heap_allocs_per_step\": %.3f}\n",
           rate[REPS / 2], BATCH, steps, REPS,
           (double)(s1.heap_allocs - s0.heap_allocs) / ((double)steps * REPS));
    nnm_tensor_release(x);
    nnm_tensor_release(target);
    nnm_optim_free(opt);
    nnm_module_release(loss_fn);
    nnm_module_release(model);
    nnm_ctx_free(ctx);
    return 0;
}
