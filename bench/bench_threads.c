/* bench/bench_threads.c - where intra-op threads help and where they hurt:
 * each layer of the Fashion-MNIST CNN (examples/manifests/fashion_cnn.json),
 * forward + backward in train mode (conv1's input needs no gradient, as in
 * training: its backward is the weight gradient alone), on 1 thread and on N threads
 * (nnm_ctx_set_num_threads), at batch 64 (what `nnm train` runs) and at
 * batch 1 and 8, plus a large gemm (Linear(1024, 1024) at batch 256) and a
 * large elementwise op (relu over 4 M elements).
 *
 *   bench_threads [N] [REPS] [ONLY]   (N: threads, default 2; REPS default 9;
 *                                      ONLY: the layers whose name starts so)
 *
 * For each (layer, batch) one JSON line:
 *   t1_ms        median wall time of one forward + backward on 1 thread
 *   tN_ms        the same on N threads with the backend's per-op, per-size
 *                policy (what users get: small ops stay on one thread)
 *   forced_ms    the same on N threads with every op that can split made to
 *                split whatever its size (NNM_CPU_THREADS=all, a second
 *                context): what the policy's cut-offs avoid
 *   speedup      t1_ms / tN_ms; forced_speedup t1_ms / forced_ms
 *   cpu_*_ms     process CPU time of the same, per call
 *   main_cpu_*   CPU time of the main thread alone on N threads (policy and
 *                forced); split = main_cpu_tN / cpu_t1: 1/N where the op is
 *                cut evenly, 1 where it stays on one thread; a measure of
 *                the split that the machine's load does not blur as it does
 *                wall time
 *
 *   bench_threads N REPS cnn [MANIFEST]: the whole Fashion CNN training step
 *                instead (cnn_bench), run from the source root
 * The three are timed in alternation, round by round, so machine load
 * spreads over them alike; medians of REPS rounds. On a machine shared with
 * other work the N-thread figures are pessimistic (a helper thread waits for
 * a core): the last line reports the load average before and after.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BENCH_NAME "bench_threads"
#include "bench_util.h"
#include "nnmod/nnmod.h"

static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* CPU seconds of the calling (main) thread alone: on N threads, the work
 * left on the critical path when helpers run beside it (a helper's share
 * is not in it). Under load, waiting in sched_yield costs it little. */
static double thread_cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void loadavg(double *one) {
    FILE *f = fopen("/proc/loadavg", "r");
    *one = -1;
    if (f) {
        if (fscanf(f, "%lf", one) != 1) *one = -1;
        fclose(f);
    }
}

typedef struct spec {
    const char *name, *type;
    int64_t a, b;      /* config: channels in/out (conv), features (bn), in/out (linear) */
    int32_t ndim;
    int64_t shape[4];  /* input shape, [0] = batch (replaced) */
    int no_input_grad; /* the input needs no gradient (a first layer, as in training) */
} spec;

static nnm_module *make(nnm_ctx *ctx, const spec *s) {
    nnm_config *cfg = NULL;
    nnm_config_new(&cfg);
    if (!strcmp(s->type, "conv2d")) {
        nnm_config_set_int(cfg, "in_channels", s->a);
        nnm_config_set_int(cfg, "out_channels", s->b);
        nnm_config_set_int(cfg, "kernel_size", 3);
        nnm_config_set_int(cfg, "padding", 1);
    } else if (!strcmp(s->type, "batch_norm2d")) {
        nnm_config_set_int(cfg, "num_features", s->a);
    } else if (!strcmp(s->type, "max_pool2d")) {
        nnm_config_set_int(cfg, "kernel_size", 2);
    } else if (!strcmp(s->type, "linear")) {
        nnm_config_set_int(cfg, "in_features", s->a);
        nnm_config_set_int(cfg, "out_features", s->b);
    }
    nnm_module *m;
    if (nnm_module_create(ctx, s->type, cfg, &m)) die(ctx, s->name);
    nnm_config_free(cfg);
    if (nnm_module_train(m, 1)) die(ctx, "train");
    return m;
}

typedef struct runner {
    nnm_ctx *ctx;
    nnm_module *m;
    nnm_tensor *x, *g; /* input (requires grad), gradient of the output */
} runner;

static void one(runner *r) {
    nnm_tensor *y;
    if (nnm_module_call(r->m, &r->x, 1, &y, 1)) die(r->ctx, "forward");
    if (!r->g) {
        int64_t n = nnm_tensor_numel(y);
        float *v = malloc(sizeof(float) * (size_t)n);
        for (int64_t i = 0; i < n; i++) v[i] = (float)((i * 7919) % 13) / 13.0f - 0.5f;
        const nnm_tensor_desc *d = nnm_tensor_desc_get(y);
        if (nnm_tensor_from_f32(r->ctx, d->ndim, d->shape, v, &r->g)) die(r->ctx, "grad");
        free(v);
    }
    if (nnm_backward(y, r->g, 0)) die(r->ctx, "backward");
    nnm_tensor_release(y);
    nnm_tensor_set_grad(r->x, NULL);
    nnm_module_zero_grad(r->m);
}

static runner setup(nnm_ctx *ctx, const spec *s, int64_t batch) {
    runner r = {ctx, make(ctx, s), NULL, NULL};
    int64_t shape[4];
    memcpy(shape, s->shape, sizeof shape);
    shape[0] = batch;
    int64_t n = 1;
    for (int i = 0; i < s->ndim; i++) n *= shape[i];
    float *v = malloc(sizeof(float) * (size_t)n);
    unsigned seed = 7;
    for (int64_t i = 0; i < n; i++) v[i] = (float)((seed = seed * 1103515245u + 12345u) >> 16 & 0xff) / 128.0f - 1.0f;
    if (nnm_tensor_from_f32(ctx, s->ndim, shape, v, &r.x)) die(ctx, "input");
    free(v);
    if (!s->no_input_grad && nnm_tensor_set_requires_grad(r.x, 1)) die(ctx, "requires_grad");
    return r;
}

static void teardown(runner *r) {
    nnm_tensor_release(r->x);
    nnm_tensor_release(r->g);
    nnm_module_release(r->m);
}

/* Wall, process CPU and main-thread CPU seconds per call of `iters` calls. */
static void timed(runner *r, long iters, double *wall, double *cpu, double *main_cpu) {
    double w0 = now_s(), c0 = cpu_s(), m0 = thread_cpu_s();
    for (long i = 0; i < iters; i++) one(r);
    *wall = (now_s() - w0) / (double)iters;
    *cpu = (cpu_s() - c0) / (double)iters;
    *main_cpu = (thread_cpu_s() - m0) / (double)iters;
}

/* The whole training step of the Fashion CNN (bench_threads N REPS cnn
 * [MANIFEST]): forward, cross-entropy, backward, Adam, batch 64, as `nnm
 * train` runs it (data loading aside), alternating 1 and N threads on one
 * context, round by round. One JSON line: medians of wall, process CPU and
 * main-thread CPU per step on each count; `split` is the main thread's CPU
 * on N threads over the step's CPU on 1: 1/N when every op is cut evenly,
 * 1 when nothing runs beside the main thread (what a quiet machine's wall
 * time approaches, whatever the load now). */
typedef struct cnn_run {
    nnm_ctx *ctx;
    nnm_module *model, *loss;
    nnm_optim *opt;
    nnm_tensor *x, *t;
} cnn_run;

static int g_only_n;

static void cnn_step(cnn_run *c) {
    nnm_tensor *logits, *loss;
    if (nnm_optim_zero_grad(c->opt)) die(c->ctx, "zero_grad");
    if (nnm_module_call(c->model, &c->x, 1, &logits, 1)) die(c->ctx, "forward");
    nnm_tensor *in[2] = {logits, c->t};
    if (nnm_module_call(c->loss, in, 2, &loss, 1)) die(c->ctx, "loss");
    nnm_tensor_release(logits);
    if (nnm_backward(loss, NULL, 0)) die(c->ctx, "backward");
    nnm_tensor_release(loss);
    if (nnm_optim_step(c->opt)) die(c->ctx, "step");
}

static void cnn_timed(cnn_run *c, long iters, double *wall, double *cpu, double *main_cpu) {
    double w0 = now_s(), c0 = cpu_s(), m0 = thread_cpu_s();
    for (long i = 0; i < iters; i++) cnn_step(c);
    *wall = (now_s() - w0) / (double)iters;
    *cpu = (cpu_s() - c0) / (double)iters;
    *main_cpu = (thread_cpu_s() - m0) / (double)iters;
}

static int cnn_bench(nnm_ctx *ctx, int32_t nt, int reps, const char *path) {
    cnn_run c = {ctx, NULL, NULL, NULL, NULL, NULL};
    nnm_manifest *mf;
    if (nnm_manifest_load(ctx, path, NNM_MANIFEST_JSON, NULL, &mf)) die(ctx, path);
    if (nnm_manifest_build(mf, NNM_BUILD_NO_WEIGHTS, &c.model)) die(ctx, "build");
    nnm_manifest_free(mf);
    if (nnm_module_train(c.model, 1)) die(ctx, "train");
    if (nnm_module_create(ctx, "cross_entropy", NULL, &c.loss)) die(ctx, "cross_entropy");
    nnm_adam_options ao = {sizeof ao, 0, 0, 0, 1e-3, 0.9, 0.999, 1e-8, 0.0};
    if (nnm_optim_adam_new(c.model, &ao, &c.opt)) die(ctx, "adam");
    enum { B = 64 };
    int64_t xs[4] = {B, 1, 28, 28}, ts[1] = {B}, tv[B];
    float *xv = malloc(sizeof(float) * B * 28 * 28);
    if (!xv) return 1;
    unsigned seed = 12345;
    for (int i = 0; i < B * 28 * 28; i++) /* Fashion-like: a third zeros, normalised */
        xv[i] = (seed = seed * 1103515245u + 12345u) >> 16 & 3 ? (float)((seed >> 8) & 0xff) / 100.0f - 0.8f : -0.8f;
    for (int i = 0; i < B; i++) tv[i] = i % 10;
    if (nnm_tensor_from_f32(ctx, 4, xs, xv, &c.x) || nnm_tensor_from_i64(ctx, 1, ts, tv, &c.t)) die(ctx, "inputs");
    free(xv);
    for (int i = 0; i < 3; i++) cnn_step(&c); /* Adam's state, the allocator's cache, helper threads */
    double w[2][64], pc[2][64], mc[2][64];
    const long iters = 10;
    for (int rep = 0; rep < reps; rep++)
        for (int k = 0; k < 2; k++) {
            if (g_only_n && !k) { /* NNM_BENCH_ONLY_N=1: N threads alone (for perf) */
                w[0][rep] = pc[0][rep] = mc[0][rep] = 1.0;
                continue;
            }
            nnm_ctx_set_num_threads(ctx, k ? nt : 1);
            cnn_timed(&c, iters, &w[k][rep], &pc[k][rep], &mc[k][rep]);
        }
    const double w1 = median(w[0], reps), wn = median(w[1], reps), c1 = median(pc[0], reps),
                 cn = median(pc[1], reps), m1 = median(mc[0], reps), mn = median(mc[1], reps);
    printf("{\"bench\": \"threads_cnn_train_step_b64\", \"threads\": %d, \"t1_ms\": %.3f, \"tN_ms\": %.3f, "
           "\"speedup\": %.2f, \"samples_per_s_t1\": %.0f, \"samples_per_s_tN\": %.0f, \"cpu_t1_ms\": %.3f, "
           "\"cpu_tN_ms\": %.3f, \"main_cpu_t1_ms\": %.3f, \"main_cpu_tN_ms\": %.3f, \"split\": %.2f, "
           "\"reps\": %d, \"steps\": %ld}\n",
           (int)nt, 1e3 * w1, 1e3 * wn, w1 / wn, B / w1, B / wn, 1e3 * c1, 1e3 * cn, 1e3 * m1, 1e3 * mn, mn / c1,
           reps, iters);
    nnm_tensor_release(c.x);
    nnm_tensor_release(c.t);
    nnm_optim_free(c.opt);
    nnm_module_release(c.loss);
    nnm_module_release(c.model);
    return 0;
}

int main(int argc, char **argv) {
    int32_t nt = argc > 1 ? atoi(argv[1]) : 2;
    int reps = argc > 2 ? atoi(argv[2]) : 9;
    if (nt < 2) nt = 2;
    if (reps < 3) reps = 3;
    if (reps > 64) reps = 64;
    const char *only = argc > 3 ? argv[3] : "";
    double load0, load1;
    loadavg(&load0);
    if (!strcmp(only, "cnn")) { /* the whole training step */
        g_only_n = getenv("NNM_BENCH_ONLY_N") && atoi(getenv("NNM_BENCH_ONLY_N")) == 1;
        nnm_ctx *c;
        if (nnm_ctx_new(NULL, &c)) return 1;
        int rc = cnn_bench(c, nt, reps, argc > 4 ? argv[4] : "examples/manifests/fashion_cnn.json");
        loadavg(&load1);
        printf("{\"bench\": \"threads_load\", \"loadavg_before\": %.2f, \"loadavg_after\": %.2f, \"cores\": %ld}\n",
               load0, load1, sysconf(_SC_NPROCESSORS_ONLN));
        nnm_ctx_free(c);
        return rc;
    }
    nnm_ctx *ctx, *forced;
    if (nnm_ctx_new(NULL, &ctx)) return 1;
    setenv("NNM_CPU_THREADS", "all", 1); /* read by the cpu backend when forced's starts */
    if (nnm_ctx_new(NULL, &forced)) return 1;
    unsetenv("NNM_CPU_THREADS");
    if (nnm_ctx_set_num_threads(forced, nt)) die(forced, "threads");

    static const spec specs[] = {
        {"conv1", "conv2d", 1, 16, 4, {0, 1, 28, 28}, 1},
        {"bn1", "batch_norm2d", 16, 0, 4, {0, 16, 28, 28}},
        {"relu1", "relu", 0, 0, 4, {0, 16, 28, 28}},
        {"pool1", "max_pool2d", 0, 0, 4, {0, 16, 28, 28}},
        {"conv2", "conv2d", 16, 32, 4, {0, 16, 14, 14}},
        {"bn2", "batch_norm2d", 32, 0, 4, {0, 32, 14, 14}},
        {"relu2", "relu", 0, 0, 4, {0, 32, 14, 14}},
        {"pool2", "max_pool2d", 0, 0, 4, {0, 32, 14, 14}},
        {"fc", "linear", 1568, 10, 2, {0, 1568}},
        {"linear1024", "linear", 1024, 1024, 2, {0, 1024}},
        {"relu4m", "relu", 0, 0, 2, {0, 16384}},
    };
    static const int64_t batches[] = {1, 8, 64};
    for (size_t si = 0; si < sizeof specs / sizeof specs[0]; si++) {
        const spec *s = &specs[si];
        if (strncmp(s->name, only, strlen(only))) continue;
        int big = !strcmp(s->name, "linear1024") || !strcmp(s->name, "relu4m");
        for (size_t bi = 0; bi < 3; bi++) {
            int64_t batch = big ? 256 : batches[bi];
            if (big && bi < 2) continue;
            runner a = setup(ctx, s, batch), f = setup(forced, s, batch);
            one(&a); /* warm: allocator cache, output gradient */
            one(&f);
            double w0, c0, mm0;
            timed(&a, 1, &w0, &c0, &mm0);
            long iters = (long)(0.02 / (w0 > 1e-7 ? w0 : 1e-7)) + 1; /* some 20 ms a sample */
            double t1[64], tn[64], tf[64], c1[64], cn[64], cf[64], m1[64], mn[64], mf[64];
            for (int rep = 0; rep < reps; rep++) {
                nnm_ctx_set_num_threads(ctx, 1);
                timed(&a, iters, &t1[rep], &c1[rep], &m1[rep]);
                nnm_ctx_set_num_threads(ctx, nt);
                timed(&a, iters, &tn[rep], &cn[rep], &mn[rep]);
                timed(&f, iters, &tf[rep], &cf[rep], &mf[rep]);
            }
            double md1 = median(t1, reps), mdn = median(tn, reps), mdf = median(tf, reps);
            printf("{\"bench\": \"threads_%s_b%lld\", \"layer\": \"%s\", \"batch\": %lld, \"threads\": %d, "
                   "\"t1_ms\": %.4f, \"tN_ms\": %.4f, \"forced_ms\": %.4f, \"speedup\": %.2f, "
                   "\"forced_speedup\": %.2f, \"cpu_t1_ms\": %.4f, \"cpu_tN_ms\": %.4f, \"cpu_forced_ms\": %.4f, "
                   "\"main_cpu_tN_ms\": %.4f, \"main_cpu_forced_ms\": %.4f, \"split\": %.2f, \"reps\": %d, "
                   "\"iters\": %ld}\n",
                   s->name, (long long)batch, s->type, (long long)batch, (int)nt, 1e3 * md1, 1e3 * mdn, 1e3 * mdf,
                   md1 / mdn, md1 / mdf, 1e3 * median(c1, reps), 1e3 * median(cn, reps), 1e3 * median(cf, reps),
                   1e3 * median(mn, reps), 1e3 * median(mf, reps), median(mn, reps) / median(c1, reps), reps, iters);
            fflush(stdout);
            teardown(&a);
            teardown(&f);
        }
    }
    loadavg(&load1);
    printf("{\"bench\": \"threads_load\", \"loadavg_before\": %.2f, \"loadavg_after\": %.2f, \"cores\": %ld, "
           "\"note\": \"the 1-minute load average; above the core count a helper thread waits for a core and "
           "the N-thread figures are pessimistic\"}\n",
           load0, load1, sysconf(_SC_NPROCESSORS_ONLN));
    nnm_ctx_free(forced);
    nnm_ctx_free(ctx);
    return 0;
}
