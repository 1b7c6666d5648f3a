/* bench/bench_memory.c - the memory of a training step: the Fashion-MNIST
 * CNN (examples/manifests/fashion_cnn.json) at batch 64, cross-entropy,
 * Adam, forward + backward + step, as `nnm train` runs it.
 *
 *   bench_memory [MANIFEST] [STEPS] [BATCH C H W CLASSES NAME]
 *       (bench/bench_memory.sh runs it beside bench_memory_torch.py: the
 *       Fashion CNN with the defaults, 64 x 1 x 28 x 28 and 10 classes, and
 *       an exported torchvision resnet18 at 32 x 3 x 224 x 224, 1000 classes;
 *       NAME labels the lines)
 *
 * Prints JSON lines:
 *   memory_train_step_rss_delta  peak resident memory while training, less the
 *                                resident memory before the first step (the
 *                                model, its inputs and the libraries are in the
 *                                baseline; activations, saved tensors,
 *                                gradients, optimizer state and the allocator's
 *                                cache are in the delta), MiB
 *   memory_train_step_rss_peak   the process's peak resident memory, MiB
 *   memory_train_step_alloc_peak the caching allocator's high-water mark of
 *                                bytes held by live tensors over one steady
 *                                step (nnm_ctx_stats peak_bytes_in_use after
 *                                nnm_ctx_reset_peak_stats), and of bytes held
 *                                at all (peak_bytes_reserved), MiB
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define BENCH_NAME "bench_memory"
#include "bench_util.h"
#include "nnmod/nnmod.h"


/* Resident set size now, from /proc/self/statm (pages), in bytes; 0 if unknown. */
static double rss_now(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    unsigned long size = 0, resident = 0;
    int ok = fscanf(f, "%lu %lu", &size, &resident) == 2;
    fclose(f);
    return ok ? (double)resident * 4096.0 : 0;
}

/* The process's peak resident set size (getrusage: KiB on Linux), in bytes. */
static double rss_peak(void) {
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) ? 0 : (double)ru.ru_maxrss * 1024.0;
}

static void step(nnm_ctx *ctx, nnm_module *model, nnm_module *loss_fn, nnm_optim *opt, nnm_tensor *x,
                 nnm_tensor *target) {
    nnm_tensor *logits, *loss;
    if (nnm_optim_zero_grad(opt)) die(ctx, "zero_grad");
    if (nnm_module_call(model, &x, 1, &logits, 1)) die(ctx, "forward");
    nnm_tensor *in[2] = {logits, target};
    if (nnm_module_call(loss_fn, in, 2, &loss, 1)) die(ctx, "loss");
    nnm_tensor_release(logits);
    if (nnm_backward(loss, NULL, 0)) die(ctx, "backward");
    nnm_tensor_release(loss);
    if (nnm_optim_step(opt)) die(ctx, "step");
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "examples/manifests/fashion_cnn.json";
    int steps = argc > 2 ? atoi(argv[2]) : 20;
    if (steps < 2) steps = 2;
    int64_t batch = 64, C = 1, H = 28, W = 28, CLASSES = 10; /* the Fashion CNN */
    const char *name = "fashion_cnn";
    if (argc > 8) {
        batch = atoll(argv[3]), C = atoll(argv[4]), H = atoll(argv[5]), W = atoll(argv[6]);
        CLASSES = atoll(argv[7]);
        name = argv[8];
    }
    if (batch < 1 || C < 1 || H < 1 || W < 1 || CLASSES < 1) {
        fprintf(stderr, "bench_memory: bad sizes\n");
        return 2;
    }
    nnm_ctx *ctx;
    if (nnm_ctx_new(NULL, &ctx)) return 1;
    nnm_manifest *mf;
    nnm_module *model;
    if (nnm_manifest_load(ctx, path, NNM_MANIFEST_JSON, NULL, &mf)) die(ctx, "manifest");
    if (nnm_manifest_build(mf, NNM_BUILD_NO_WEIGHTS, &model)) die(ctx, "build");
    nnm_manifest_free(mf);
    if (nnm_module_train(model, 1)) die(ctx, "train");
    nnm_module *loss_fn;
    if (nnm_module_create(ctx, "cross_entropy", NULL, &loss_fn)) die(ctx, "cross_entropy");
    nnm_adam_options ao = {sizeof ao, 0, 0, 0, 1e-3, 0.9, 0.999, 1e-8, 0.0};
    nnm_optim *opt;
    if (nnm_optim_adam_new(model, &ao, &opt)) die(ctx, "adam");

    int64_t xs[4] = {batch, C, H, W}, ts[1] = {batch};
    const int64_t nx = batch * C * H * W;
    float *xv = malloc(sizeof(float) * (size_t)nx);
    int64_t *tv = malloc(sizeof(int64_t) * (size_t)batch);
    if (!xv || !tv) return 1;
    unsigned seed = 12345;
    for (int64_t i = 0; i < nx; i++)
        xv[i] = (float)((seed = seed * 1103515245u + 12345u) >> 16 & 0xff) / 255.0f;
    for (int64_t i = 0; i < batch; i++) tv[i] = i % CLASSES;
    nnm_tensor *x, *target;
    if (nnm_tensor_from_f32(ctx, 4, xs, xv, &x) || nnm_tensor_from_i64(ctx, 1, ts, tv, &target))
        die(ctx, "inputs");
    free(xv);
    free(tv);

    double before = rss_now();
    step(ctx, model, loss_fn, opt, x, target); /* the first step makes Adam's state */
    nnm_ctx_reset_peak_stats(ctx);
    nnm_ctx_stats s0 = {sizeof s0};
    nnm_ctx_stats_get(ctx, &s0);
    for (int i = 1; i < steps; i++) step(ctx, model, loss_fn, opt, x, target);
    nnm_ctx_stats s1 = {sizeof s1};
    nnm_ctx_stats_get(ctx, &s1);
    double peak = rss_peak();
    const double mib = 1024.0 * 1024.0;
    printf("{\"bench\": \"memory_train_step_rss_delta\", \"value\": %.1f, \"unit\": \"MiB\", "
           "\"model\": \"%s\", \"batch\": %lld, \"steps\": %d}\n",
           (peak - before) / mib, name, (long long)batch, steps);
    printf("{\"bench\": \"memory_train_step_rss_peak\", \"value\": %.1f, \"unit\": \"MiB\", "
           "\"model\": \"%s\", \"batch\": %lld}\n",
           peak / mib, name, (long long)batch);
    printf("{\"bench\": \"memory_train_step_alloc_peak\", \"value\": %.2f, \"unit\": \"MiB\", "
           "\"reserved_peak\": %.2f, \"in_use_between_steps\": %.2f, \"heap_allocs_steady\": %llu, "
           "\"model\": \"%s\", \"batch\": %lld}\n",
           (double)s1.peak_bytes_in_use / mib, (double)s1.peak_bytes_reserved / mib,
           (double)s0.bytes_in_use / mib, (unsigned long long)(s1.heap_allocs - s0.heap_allocs), name,
           (long long)batch);
    nnm_tensor_release(x);
    nnm_tensor_release(target);
    nnm_optim_free(opt);
    nnm_module_release(loss_fn);
    nnm_module_release(model);
    nnm_ctx_free(ctx);
    return 0;
}
