/* bench/bench_gpu.c - nnmod on a CUDA device, through the public API alone
 * (modules moved with nnm_module_to, inputs with nnm_tensor_to). Its PyTorch
 * twin is bench/bench_gpu_torch.py; bench/bench_gpu.sh runs both on the same
 * GPU in one run and adds "ratio_vs_torch" (nnmod over PyTorch, lower is
 * better) to each line. scripts/gpu-check.sh runs that on a lent GPU.
 *
 * Prints one JSON object per line, {"bench", "value", "unit", ...}:
 *   gpu_call_seq50_no_grad   a 50-deep Sequential(Linear(16,16), ReLU) at
 *                            batch 1 under no_grad: us per module call
 *                            (101 modules a forward; target < 3 us), the
 *                            host-side cost of the call path plus the launches
 *   gpu_call_seq50_grad      the same with grad mode on (every linear records
 *                            its autograd node)
 *   gpu_resnet50_fwd_bwd     ResNet-50 (bench/bench_gpu_resnet50.json, exported
 *                            from torchvision by bench/make_bench_gpu_models.py;
 *                            no weights: the layers' own init) in train mode,
 *                            batch 64 x 3 x 224 x 224: forward, cross-entropy
 *                            on random classes, backward; ms per step
 *   gpu_resnet50_fwd         the same forward in eval mode under no_grad
 *   gpu_transformer_encoder_layer_fwd_bwd   transformer_encoder_layer
 *                            (d_model 512, nhead 8, dim_feedforward 2048,
 *                            dropout 0.1, [S, N, E] = [256, 32, 512]) in train
 *                            mode: forward, sum(y * g), backward; ms
 *   gpu_transformer_encoder_layer_fwd       eval, no_grad: ms
 * Each figure is the median of REPS timed repetitions after WARMUP untimed
 * ones (cuDNN's algorithm choices and the caching allocator settle there);
 * the warm-up and the timed repetitions each stop early once they have run
 * MAX_S seconds (after one repetition at least; "reps" says how many ran). Timing: the host clock around the repetitions, the device
 * synchronised before each reading: nnm_ctx_synchronize where libnnmod has
 * it (0.5), else a device-to-host copy of one element, which waits for
 * everything queued before it (the context has one stream per device).
 *
 * Where no CUDA device can be used (no GPU, no driver, no cuda plugin) it
 * prints {"bench": "gpu", "skipped": "<the runtime's message>"} and exits 0.
 *
 * usage: bench_gpu [--device cuda:N] [--reps N] [--warmup N] [--max-s S]
 *                  [--resnet MANIFEST] [--only call|resnet|transformer] [--batch N]
 * --device cpu runs the same code on the CPU (with --batch 1: a check of
 * this program where no GPU is, as scripts/gpu-check.sh --dry-run does);
 * --batch N sets ResNet-50's batch (64) and the transformer's (32).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BENCH_NAME "bench_gpu"
#include "bench_util.h"
#include "nnmod/nnmod.h"

#ifndef BENCH_GPU_RESNET50
#define BENCH_GPU_RESNET50 "bench/bench_gpu_resnet50.json"
#endif
#define MAX_REPS 100

static nnm_ctx *g_ctx;
static nnm_device g_dev = {NNM_DEVICE_CUDA, 0};
static nnm_tensor *g_one; /* one f32 on the device: reading it synchronises */
static int g_reps = 10, g_warmup = 3, g_batch = 64, g_tbatch = 32;
static double g_max_s = 20;
static uint32_t g_rng = 0x12345678u;

static float frand(void) { /* uniform in [-1, 1) */
    g_rng = g_rng * 1664525u + 1013904223u;
    return (float)(g_rng >> 8) * (2.0f / 16777216.0f) - 1.0f;
}

/* nnm_ctx_synchronize (nnmod 0.5, the cudart work) where this libnnmod has
 * it: weak, so the bench builds and runs against one without it. */
NNM_API nnm_status nnm_ctx_synchronize(nnm_ctx *ctx) __attribute__((weak));

static void sync_device(void) {
    if (nnm_ctx_synchronize) {
        if (nnm_ctx_synchronize(g_ctx)) die(g_ctx, "nnm_ctx_synchronize");
        return;
    }
    float f; /* the copy waits for everything queued before it on the stream */
    if (nnm_tensor_to_f32(g_one, &f, 1)) die(g_ctx, "synchronise (a one-element copy)");
}

/* A random f32 tensor on the device (scaled by `scale`). */
static nnm_tensor *dev_rand(int32_t nd, const int64_t *shape, float scale) {
    int64_t n = 1;
    for (int32_t i = 0; i < nd; i++) n *= shape[i];
    float *buf = malloc((size_t)n * sizeof *buf);
    if (!buf) die(g_ctx, "out of memory");
    for (int64_t i = 0; i < n; i++) buf[i] = scale * frand();
    nnm_tensor *h = NULL, *d = NULL;
    if (nnm_tensor_from_f32(g_ctx, nd, shape, buf, &h)) die(g_ctx, "tensor");
    free(buf);
    if (nnm_tensor_to(h, g_dev, &d)) die(g_ctx, "tensor to the device");
    nnm_tensor_release(h);
    return d;
}

static void emit(const char *name, double value, const char *unit, int reps, const char *extra) {
    char dev[32];
    snprintf(dev, sizeof dev, g_dev.type == NNM_DEVICE_CPU ? "cpu" : "cuda:%d", (int)g_dev.id);
    printf("{\"bench\": \"%s\", \"value\": %.4g, \"unit\": \"%s\", \"reps\": %d, \"device\": \"%s\"%s%s}\n",
           name, value, unit, reps, dev, extra && extra[0] ? ", " : "", extra ? extra : "");
    fflush(stdout);
}

/* Runs step() warmup times, then up to g_reps timed times (each synchronised),
 * stopping after g_max_s seconds; returns the median seconds and the count. */
typedef void (*step_fn)(void *user);
static double time_steps(step_fn step, void *user, int *reps_done) {
    double start = now_s();
    for (int i = 0; i < g_warmup && (i == 0 || now_s() - start < g_max_s); i++) step(user);
    sync_device();
    double t[MAX_REPS];
    start = now_s();
    int n = 0;
    while (n < g_reps) {
        double t0 = now_s();
        step(user);
        sync_device();
        t[n++] = now_s() - t0;
        if (now_s() - start > g_max_s) break;
    }
    *reps_done = n;
    return median(t, n);
}

/* ---- per-module call overhead ----------------------------------------------- */

typedef struct call_case {
    nnm_module *seq;
    nnm_tensor *x;
    int iters;
} call_case;

static void call_step(void *user) {
    call_case *c = user;
    for (int i = 0; i < c->iters; i++) {
        nnm_tensor *y = NULL;
        if (nnm_module_call(c->seq, &c->x, 1, &y, 1)) die(g_ctx, "seq50 call");
        nnm_tensor_release(y);
    }
}

static void bench_call(void) {
    nnm_module *seq = NULL;
    if (nnm_module_create(g_ctx, "sequential", NULL, &seq)) die(g_ctx, "sequential");
    for (int i = 0; i < 50; i++) {
        nnm_module *l = layer(g_ctx, "linear", 16, 16), *r = layer(g_ctx, "relu", 0, 0);
        if (nnm_module_add_child(seq, NULL, l) || nnm_module_add_child(seq, NULL, r)) die(g_ctx, "add");
        nnm_module_release(l);
        nnm_module_release(r);
    }
    if (nnm_module_to(seq, g_dev)) die(g_ctx, "seq50 to the device");
    call_case c = {seq, dev_rand(2, (int64_t[]){1, 16}, 1.0f), 200};
    int n = 0;
    char extra[160];
    int prev = nnm_grad_set_enabled(0);
    double s = time_steps(call_step, &c, &n);
    nnm_grad_set_enabled(prev);
    snprintf(extra, sizeof extra, "\"modules\": 101, \"forwards\": %d, \"us_per_forward\": %.2f, \"target\": 3",
             c.iters, 1e6 * s / c.iters);
    emit("gpu_call_seq50_no_grad", 1e6 * s / c.iters / 101.0, "us/module", n, extra);
    s = time_steps(call_step, &c, &n);
    snprintf(extra, sizeof extra, "\"modules\": 101, \"forwards\": %d, \"us_per_forward\": %.2f",
             c.iters, 1e6 * s / c.iters);
    emit("gpu_call_seq50_grad", 1e6 * s / c.iters / 101.0, "us/module", n, extra);
    nnm_tensor_release(c.x);
    nnm_module_release(seq);
}

/* ---- training / inference steps ------------------------------------------------ */

typedef struct model_case {
    nnm_module *m, *loss;
    nnm_tensor *x, *target; /* target: class indices (loss) or the gradient g of sum(y * g) */
} model_case;

static void fwd_step(void *user) {
    model_case *c = user;
    nnm_tensor *y = NULL;
    if (nnm_module_call(c->m, &c->x, 1, &y, 1)) die(g_ctx, "forward");
    nnm_tensor_release(y);
}

static void fwd_bwd_step(void *user) {
    model_case *c = user;
    nnm_tensor *y = NULL, *l = NULL;
    if (nnm_module_zero_grad(c->m)) die(g_ctx, "zero_grad");
    if (nnm_module_call(c->m, &c->x, 1, &y, 1)) die(g_ctx, "forward");
    if (c->loss) {
        nnm_tensor *in2[2] = {y, c->target};
        if (nnm_module_call(c->loss, in2, 2, &l, 1)) die(g_ctx, "loss");
        if (nnm_backward(l, NULL, 0)) die(g_ctx, "backward");
    } else if (nnm_backward(y, c->target, 0)) { /* d(sum(y * g))/dy = g */
        die(g_ctx, "backward");
    }
    nnm_tensor_release(l);
    nnm_tensor_release(y);
}

static void run_model(model_case *c, const char *name, const char *extra) {
    char nm[96];
    int n = 0;
    nnm_module_train(c->m, 1);
    double s = time_steps(fwd_bwd_step, c, &n);
    snprintf(nm, sizeof nm, "%s_fwd_bwd", name);
    emit(nm, 1e3 * s, "ms", n, extra);
    nnm_module_train(c->m, 0);
    int prev = nnm_grad_set_enabled(0);
    s = time_steps(fwd_step, c, &n);
    nnm_grad_set_enabled(prev);
    snprintf(nm, sizeof nm, "%s_fwd", name);
    emit(nm, 1e3 * s, "ms", n, extra);
}

static void bench_resnet(const char *path) {
    nnm_manifest *mf = NULL;
    nnm_module *m = NULL;
    if (nnm_manifest_load(g_ctx, path, NNM_MANIFEST_JSON, NULL, &mf) || nnm_manifest_build(mf, NNM_BUILD_NO_WEIGHTS, &m))
        die(g_ctx, path);
    if (nnm_module_to(m, g_dev)) die(g_ctx, "resnet50 to the device");
    const int64_t b = g_batch;
    model_case c = {m, NULL, dev_rand(4, (int64_t[]){b, 3, 224, 224}, 1.0f), NULL};
    if (nnm_module_create(g_ctx, "cross_entropy", NULL, &c.loss)) die(g_ctx, "cross_entropy");
    int64_t *cls = malloc((size_t)b * sizeof *cls);
    if (!cls) die(g_ctx, "out of memory");
    for (int64_t i = 0; i < b; i++) cls[i] = (int64_t)((frand() + 1.0f) * 500.0f) % 1000;
    nnm_tensor *h = NULL;
    if (nnm_tensor_from_i64(g_ctx, 1, &b, cls, &h) || nnm_tensor_to(h, g_dev, &c.target))
        die(g_ctx, "targets");
    free(cls);
    nnm_tensor_release(h);
    char extra[96];
    snprintf(extra, sizeof extra, "\"batch\": %d, \"image\": 224, \"params\": \"the layers' init\"", g_batch);
    run_model(&c, "gpu_resnet50", extra);
    nnm_tensor_release(c.x);
    nnm_tensor_release(c.target);
    nnm_module_release(c.loss);
    nnm_module_release(m);
    nnm_manifest_free(mf);
}

static void bench_transformer(void) {
    nnm_config *cfg = NULL;
    nnm_config_new(&cfg);
    nnm_config_set_int(cfg, "d_model", 512);
    nnm_config_set_int(cfg, "nhead", 8);
    nnm_config_set_int(cfg, "dim_feedforward", 2048);
    nnm_module *m = NULL;
    if (nnm_module_create(g_ctx, "transformer_encoder_layer", cfg, &m)) die(g_ctx, "transformer_encoder_layer");
    nnm_config_free(cfg);
    if (nnm_module_to(m, g_dev)) die(g_ctx, "transformer_encoder_layer to the device");
    const int64_t shape[3] = {256, g_tbatch, 512};
    model_case c = {m, NULL, dev_rand(3, shape, 1.0f), dev_rand(3, shape, 0.01f)};
    char extra[128];
    snprintf(extra, sizeof extra, "\"d_model\": 512, \"nhead\": 8, \"dim_feedforward\": 2048, "
             "\"seq\": 256, \"batch\": %d", g_tbatch);
    run_model(&c, "gpu_transformer_encoder_layer", extra);
    nnm_tensor_release(c.x);
    nnm_tensor_release(c.target);
    nnm_module_release(m);
}

static void usage(void) {
    fprintf(stderr, "usage: bench_gpu [--device cuda:N] [--reps N] [--warmup N] [--max-s S] "
                    "[--resnet MANIFEST] [--only call|resnet|transformer] [--batch N]\n");
    exit(2);
}

int main(int argc, char **argv) {
    const char *resnet = BENCH_GPU_RESNET50, *only = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) usage();
        if (!strcmp(a, "--device")) {
            if (!strcmp(v, "cpu")) /* the code paths, proven where no GPU is */
                g_dev = (nnm_device){NNM_DEVICE_CPU, 0};
            else if (strncmp(v, "cuda", 4) || (v[4] && (v[4] != ':' || !v[5])))
                usage();
            else
                g_dev.id = v[4] ? atoi(v + 5) : 0;
        } else if (!strcmp(a, "--batch")) { /* ResNet-50's batch, and the transformer's */
            g_batch = g_tbatch = atoi(v);
            if (g_batch < 1) usage();
        } else if (!strcmp(a, "--reps")) {
            g_reps = atoi(v);
            if (g_reps < 1 || g_reps > MAX_REPS) usage();
        } else if (!strcmp(a, "--warmup")) {
            g_warmup = atoi(v);
            if (g_warmup < 0) usage();
        } else if (!strcmp(a, "--max-s")) {
            g_max_s = atof(v);
            if (!(g_max_s > 0)) usage();
        } else if (!strcmp(a, "--resnet")) {
            resnet = v;
        } else if (!strcmp(a, "--only")) {
            only = v;
        } else {
            usage();
        }
        i++;
    }
    if (nnm_ctx_new(NULL, &g_ctx)) return 1;
    if (nnm_tensor_new(g_ctx, g_dev, NNM_F32, 1, (int64_t[]){1}, &g_one)) {
        /* no device: a line saying why, and success (this is no failure) */
        const char *msg = nnm_ctx_errmsg(g_ctx);
        printf("{\"bench\": \"gpu\", \"skipped\": \"");
        for (const char *p = msg ? msg : "no CUDA device"; *p; p++)
            if (*p != '"' && *p != '\\' && (unsigned char)*p >= 0x20) putchar(*p);
        printf("\"}\n");
        nnm_ctx_free(g_ctx);
        return 0;
    }
    if (!only || !strcmp(only, "call")) bench_call();
    if (!only || !strcmp(only, "transformer")) bench_transformer();
    if (!only || !strcmp(only, "resnet")) bench_resnet(resnet);
    nnm_ctx_stats st = {sizeof st};
    if (nnm_ctx_stats_get(g_ctx, &st) == NNM_OK)
        printf("{\"bench\": \"gpu_memory\", \"value\": %.1f, \"unit\": \"MiB\", \"cases\": \"%s\", "
               "\"note\": \"peak bytes held by live tensors (peak_bytes_in_use)\"}\n",
               (double)st.peak_bytes_in_use / 1048576.0, only ? only : "all");
    nnm_tensor_release(g_one);
    nnm_ctx_free(g_ctx);
    return 0;
}
