/* bench/bench_ddp.c - one DDP training step of an MLP 784-2048-2048-10 at a
 * per-rank batch of 128 (forward, cross-entropy, backward with the bucketed
 * all-reduce, SGD momentum 0.9), run by bench_ddp.sh under mpirun with 1 and
 * 2 ranks, one BLAS thread each. Rank 0 prints one JSON line: global
 * samples/s (median of REPS runs of STEPS steps, each run between barriers),
 * the all-reduce time of the same bytes measured alone (blocking, no
 * compute beside it; median of REPS x 3, taken between the timed runs so the
 * load of the machine weighs on both alike; on memory like DDP's buckets:
 * alone_buffer) with the CPU time the process spent on it, and the time
 * backward still spent on communication once its last gradient was ready
 * (exposed, nnm_ddp_stats.exposed_s: wall time from the last bucket's start
 * to the end of the waits; per step, the least over the ranks, i.e. the
 * tail of the rank that finished its backward last, which waited for the
 * communication only, not for a slower peer; then the median over the
 * steps; exposed_rank0_ms is rank 0's own, straggling included); hidden =
 * 1 - exposed / alone is
 * the share of the communication that overlapped the backward. memcpy_ms is
 * one core copying the same bytes (taken beside each all-reduce alone): the
 * memory bandwidth the all-reduce is measured against (allreduce_gbps: bytes
 * over the all-reduce's wall time; memcpy_gbps likewise).
 *   mpirun -np N bench_ddp [STEPS [BUCKET_MB [FIRST_BUCKET_MB]]]
 * BUCKET_MB, FIRST_BUCKET_MB: nnm_ddp_options' caps in MiB (0: defaults).
 * NNM_BENCH_DDP_MODEL=cnn: a CNN instead (cnn() below: three 3x3 convs of
 * 16 -> 128 -> 256 -> 256 channels on 8 x 8 inputs, 0.9 M conv weights,
 * then max pool and linear(256, 10)) at a per-rank batch of 16: conv weight
 * gradients in the buckets (the line's "bench" says which model).
 */
#define _DEFAULT_SOURCE /* mmap's MAP_ANONYMOUS, MADV_HUGEPAGE */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define BENCH_NAME "bench_ddp"
#include "bench_util.h"
#include "nnmod/nnmod.h"

#define BATCH 128
#define REPS 5
#define ALONE 3 /* all-reduces alone after each timed run */

static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void add(nnm_module *seq, nnm_module *m) {
    nnm_module_add_child(seq, NULL, m);
    nnm_module_release(m);
}

static volatile char g_sink;
static int g_batch = BATCH; /* per rank */

static nnm_module *conv(nnm_ctx *ctx, int64_t in, int64_t out) {
    nnm_config *cfg = NULL;
    nnm_config_new(&cfg);
    nnm_config_set_int(cfg, "in_channels", in);
    nnm_config_set_int(cfg, "out_channels", out);
    nnm_config_set_int(cfg, "kernel_size", 3);
    nnm_config_set_int(cfg, "padding", 1);
    nnm_module *m;
    if (nnm_module_create(ctx, "conv2d", cfg, &m)) die(ctx, "conv2d");
    nnm_config_free(cfg);
    return m;
}

static nnm_module *cnn(nnm_ctx *ctx) {
    nnm_module *model = layer(ctx, "sequential", 0, 0);
    add(model, conv(ctx, 16, 128));
    add(model, layer(ctx, "relu", 0, 0));
    add(model, conv(ctx, 128, 256));
    add(model, layer(ctx, "relu", 0, 0));
    add(model, conv(ctx, 256, 256));
    add(model, layer(ctx, "relu", 0, 0));
    nnm_config *cfg = NULL;
    nnm_config_new(&cfg);
    nnm_config_set_int(cfg, "kernel_size", 8);
    nnm_module *pool;
    if (nnm_module_create(ctx, "max_pool2d", cfg, &pool)) die(ctx, "max_pool2d");
    nnm_config_free(cfg);
    add(model, pool);
    add(model, layer(ctx, "flatten", 0, 0));
    add(model, layer(ctx, "linear", 256, 10));
    return model;
}
/* The all-reduce alone runs on memory like DDP's buckets (runtime/dist/ddp.c):
 * 2 MiB-aligned, advised to be backed by huge pages (unless
 * NNM_DDP_HUGE_PAGES=0), so that it measures the same transfers. */
typedef struct huge_buf {
    nnm_dlpack_tensor dl;
    void *base;
    size_t len;
    int64_t shape[1], strides[1];
} huge_buf;

static void huge_free(nnm_dlpack_tensor *self) {
    huge_buf *h = self->manager_ctx;
    munmap(h->base, h->len);
    free(h);
}

static nnm_tensor *alone_buffer(nnm_ctx *ctx, int64_t n) {
    const size_t huge = (size_t)2 << 20, bytes = (size_t)n * sizeof(float);
    const char *e = getenv("NNM_DDP_HUGE_PAGES");
    nnm_tensor *t = NULL;
    if ((e && strcmp(e, "0") == 0) || bytes < huge) {
        if (nnm_tensor_from_f32(ctx, 1, &n, NULL, &t)) die(ctx, "flat");
        return t;
    }
    size_t len = (bytes + huge - 1) / huge * huge;
    char *p = mmap(NULL, len + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    huge_buf *h = calloc(1, sizeof *h);
    if (p == MAP_FAILED || !h) die(ctx, "mmap");
    char *a = (char *)(((uintptr_t)p + huge - 1) & ~(uintptr_t)(huge - 1));
    madvise(a, len, MADV_HUGEPAGE);
    h->base = p;
    h->len = len + huge;
    h->shape[0] = n;
    h->strides[0] = 1;
    h->dl.version = (nnm_dlpack_version){1, 0};
    h->dl.manager_ctx = h;
    h->dl.deleter = huge_free;
    h->dl.dl_tensor = (nnm_tensor_desc){a, (nnm_device){NNM_DEVICE_CPU, 0}, 1, NNM_F32, h->shape, h->strides, 0};
    if (nnm_tensor_from_dlpack(ctx, &h->dl, &t)) die(ctx, "dlpack");
    return t;
}

static int g_plain; /* NNM_BENCH_PLAIN=1 with one rank: the bare module, no DDP */
static nnm_module *g_model;

static void step(nnm_ctx *ctx, nnm_ddp *ddp, nnm_module *loss_fn, nnm_optim *opt, nnm_tensor *x,
                 nnm_tensor *target) {
    nnm_tensor *logits, *loss;
    if (nnm_optim_zero_grad(opt)) die(ctx, "zero_grad");
    if (g_plain ? nnm_module_call(g_model, &x, 1, &logits, 1) : nnm_ddp_call(ddp, &x, 1, &logits, 1))
        die(ctx, "forward");
    nnm_tensor *in[2] = {logits, target};
    if (nnm_module_call(loss_fn, in, 2, &loss, 1)) die(ctx, "loss");
    if (nnm_backward(loss, NULL, 0)) die(ctx, "backward");
    if (nnm_optim_step(opt)) die(ctx, "step");
    nnm_tensor_release(loss);
    nnm_tensor_release(logits);
}

int main(int argc, char **argv) {
    int steps = argc > 1 ? atoi(argv[1]) : 4;
    if (steps < 1) steps = 1;
    double bucket_mb = argc > 2 ? atof(argv[2]) : 0, first_mb = argc > 3 ? atof(argv[3]) : 0;
    nnm_ctx *ctx;
    if (nnm_ctx_new(NULL, &ctx)) return 1;
    nnm_comm *comm;
    if (nnm_comm_new(ctx, "mpi", NULL, &comm)) die(ctx, "comm");
    int rank = nnm_comm_rank(comm), world = nnm_comm_world_size(comm);
    g_plain = world == 1 && getenv("NNM_BENCH_PLAIN") && atoi(getenv("NNM_BENCH_PLAIN")) == 1;
    const char *kind = getenv("NNM_BENCH_DDP_MODEL");
    const int is_cnn = kind != NULL && strcmp(kind, "cnn") == 0;
    nnm_module *model;
    if (is_cnn) {
        model = cnn(ctx);
        g_batch = 16;
    } else {
        model = layer(ctx, "sequential", 0, 0);
        add(model, layer(ctx, "linear", 784, 2048));
        add(model, layer(ctx, "relu", 0, 0));
        add(model, layer(ctx, "linear", 2048, 2048));
        add(model, layer(ctx, "relu", 0, 0));
        add(model, layer(ctx, "linear", 2048, 10));
    }
    const int64_t feat = is_cnn ? 16 * 8 * 8 : 784;
    nnm_module *loss_fn = layer(ctx, "cross_entropy", 0, 0);
    nnm_ddp *ddp;
    nnm_ddp_options dopt = {sizeof dopt, 0, (uint64_t)(bucket_mb * 1048576.0),
                            (uint64_t)(first_mb * 1048576.0)};
    g_model = model;
    if (g_plain) ddp = NULL;
    else if (nnm_ddp_new(model, comm, &dopt, &ddp)) die(ctx, "ddp");
    nnm_sgd_options so = {sizeof so, 0, 0.01, 0.9, 0.0, 0.0};
    nnm_optim *opt;
    if (nnm_optim_sgd_new(model, &so, &opt)) die(ctx, "sgd");

    int64_t xs[4] = {g_batch, 784, 0, 0}, ts[1] = {g_batch};
    if (is_cnn) xs[1] = 16, xs[2] = 8, xs[3] = 8;
    float *xv = malloc(sizeof(float) * (size_t)(g_batch * feat));
    int64_t tv[BATCH];
    if (!xv) return 1;
    unsigned seed = 12345u + 977u * (unsigned)rank;
    for (int64_t i = 0; i < g_batch * feat; i++) xv[i] = (float)((seed = seed * 1103515245u + 12345u) >> 16 & 0xff) / 255.0f;
    for (int i = 0; i < g_batch; i++) tv[i] = (i + rank) % 10;
    nnm_tensor *x, *target;
    if (nnm_tensor_from_f32(ctx, is_cnn ? 4 : 2, xs, xv, &x) || nnm_tensor_from_i64(ctx, 1, ts, tv, &target))
        die(ctx, "inputs");
    free(xv);

    for (int i = 0; i < 2; i++) step(ctx, ddp, loss_fn, opt, x, target); /* warm up */
    double rate[REPS], exposed[REPS * 64], alone[REPS * ALONE], alone_cpu[REPS * ALONE], copy[REPS * ALONE];
    int n_exp = 0, n_alone = 0;
    nnm_ddp_stats st = {sizeof st, 0, 0, 0, 0};
    nnm_ddp_stats_get(ddp, &st);
    /* The same bytes all-reduced with nothing else running. */
    int64_t n[1] = {(int64_t)(st.bytes_reduced / sizeof(float))};
    if (n[0] == 0) n[0] = 1;
    nnm_tensor *flat = alone_buffer(ctx, n[0]);
    size_t bytes = (size_t)n[0] * sizeof(float);
    char *csrc = malloc(bytes), *cdst = malloc(bytes);
    if (!csrc || !cdst) die(ctx, "memcpy buffers");
    memset(csrc, 1, bytes);
    memset(cdst, 2, bytes);
    for (int r = 0; r < REPS; r++) {
        if (nnm_comm_barrier(comm)) die(ctx, "barrier");
        double t0 = now_s();
        for (int i = 0; i < steps; i++) {
            step(ctx, ddp, loss_fn, opt, x, target);
            nnm_ddp_stats_get(ddp, &st);
            if (n_exp < REPS * 64) exposed[n_exp++] = st.exposed_s;
        }
        if (nnm_comm_barrier(comm)) die(ctx, "barrier");
        rate[r] = (double)steps * g_batch * world / (now_s() - t0);
        for (int k = 0; k < ALONE && world > 1; k++) {
            if (nnm_comm_barrier(comm)) die(ctx, "barrier");
            double a0 = now_s(), c0 = cpu_s();
            if (nnm_comm_all_reduce(comm, flat)) die(ctx, "all-reduce");
            alone[n_alone] = now_s() - a0;
            alone_cpu[n_alone] = cpu_s() - c0;
            double m0 = now_s();
            memcpy(cdst, csrc, bytes);
            copy[n_alone++] = now_s() - m0;
            g_sink ^= cdst[bytes / 2 + (size_t)n_alone]; /* the copy is used */
        }
    }
    /* Per step, the least wait over the ranks. */
    double exp_min[REPS * 64];
    {
        int64_t s1[1] = {n_exp}, sN[1] = {(int64_t)n_exp * world};
        float mine[REPS * 64];
        for (int i = 0; i < n_exp; i++) mine[i] = (float)exposed[i];
        nnm_tensor *a, *all;
        if (nnm_tensor_from_f32(ctx, 1, s1, mine, &a) || nnm_tensor_from_f32(ctx, 1, sN, NULL, &all) ||
            nnm_comm_all_gather(comm, a, all))
            die(ctx, "all-gather");
        float *v = malloc(sizeof(float) * (size_t)n_exp * (size_t)world);
        if (!v || nnm_tensor_to_f32(all, v, (size_t)n_exp * (size_t)world)) die(ctx, "exposed");
        for (int i = 0; i < n_exp; i++) {
            exp_min[i] = v[i];
            for (int r = 1; r < world; r++)
                if (v[(size_t)r * (size_t)n_exp + (size_t)i] < exp_min[i]) exp_min[i] = v[(size_t)r * (size_t)n_exp + (size_t)i];
        }
        free(v);
        nnm_tensor_release(a);
        nnm_tensor_release(all);
    }
    double med_alone = n_alone ? median(alone, n_alone) : 0, med_exp0 = median(exposed, n_exp);
    double med_exp = median(exp_min, n_exp);
    double med_cpu = n_alone ? median(alone_cpu, n_alone) : 0;
    double med_copy = n_alone ? median(copy, n_alone) : 0;
    free(csrc);
    free(cdst);
    if (rank == 0)
        printf("{\"bench\": \"%s_step_%s\", ", g_plain ? "plain" : "ddp",
               is_cnn ? "cnn16_128_256_256_8x8" : "mlp784_2048_2048_10");
    if (rank == 0)
        printf("\"value\": %.1f, \"unit\": \"samples/s\", "
               "\"ranks\": %d, \"batch_per_rank\": %d, \"steps\": %d, \"reps\": %d, \"buckets\": %u, "
               "\"bucket_mb\": %g, \"first_bucket_mb\": %g, "
               "\"allreduce_mb\": %.1f, \"allreduce_alone_ms\": %.2f, \"allreduce_alone_cpu_ms\": %.2f, "
               "\"memcpy_ms\": %.2f, \"allreduce_gbps\": %.2f, \"memcpy_gbps\": %.2f, "
               "\"exposed_ms\": %.2f, \"exposed_rank0_ms\": %.2f, \"hidden\": %.2f}\n",
               median(rate, REPS), world, g_batch, steps, REPS, st.n_buckets, bucket_mb, first_mb,
               (double)st.bytes_reduced / 1048576.0, 1e3 * med_alone, 1e3 * med_cpu, 1e3 * med_copy,
               med_alone > 0 ? (double)bytes / med_alone / 1e9 : 0.0, med_copy > 0 ? (double)bytes / med_copy / 1e9 : 0.0,
               1e3 * med_exp, 1e3 * med_exp0,
               world > 1 && med_alone > 0 ? 1.0 - med_exp / med_alone : 0.0);
    nnm_tensor_release(flat);
    nnm_tensor_release(x);
    nnm_tensor_release(target);
    nnm_optim_free(opt);
    nnm_ddp_free(ddp);
    nnm_comm_free(comm);
    nnm_module_release(loss_fn);
    nnm_module_release(model);
    nnm_ctx_free(ctx);
    return 0;
}
