/* tests/ddp/ddp_nccl.c - data parallel training on GPUs over the "nccl"
 * communicator, checked against one process:  ddp_nccl SCRATCH_DIR
 *
 * Every rank (one process per GPU; NCCL refuses two ranks on one GPU, so a
 * one-GPU machine runs one rank, ddp_nccl.sh starts two where there are two
 * GPUs) trains a small MLP with nnm_ddp over nccl on its slice of each global
 * batch - the batches come from a dataset through nnm_loader_set_device, so
 * they are staged in pinned memory and copied asynchronously - and, in the
 * same process, a reference copy on the same GPU on the whole global batch
 * with no communicator, and a CPU copy of the reference. Small buckets
 * (several all-reduces per backward, on NCCL's own stream while backward
 * goes on) make the stream ordering matter: a bucket read before its
 * gradients were written, or an optimizer step that ran before the reduction
 * landed, shows as a gradient or a parameter off the reference.
 *
 * Checks, every step: the averaged .grads of the DDP model within 1e-5 of
 * the GPU reference's, and the GPU reference within 1e-4 of the CPU's; after
 * the last step the same for the parameters. Prints one line per rank.
 * Where there is no GPU (or no libnccl) it prints
 *     ddp_nccl: SKIPPED: <why>
 * and exits 0. Exit status 1 on any failed check.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nnmod/nnmod.h"

#define IN 24
#define HID 40
#define OUT 6
#define B 8 /* rows per rank per step */
#define K 5 /* steps */

static int g_rank = 0, g_world = 1;

#define FAIL(...)                                                                        \
    do {                                                                                 \
        fprintf(stderr, "ddp_nccl rank %d: %s:%d: ", g_rank, __FILE__, __LINE__);        \
        fprintf(stderr, __VA_ARGS__);                                                    \
        fprintf(stderr, "\n");                                                           \
        goto out;                                                                        \
    } while (0)
#define OK(ctx, expr)                                                                    \
    do {                                                                                 \
        nnm_status st_ = (expr);                                                         \
        if (st_ != NNM_OK)                                                               \
            FAIL("%s: %s: %s", #expr, nnm_status_name(st_), nnm_ctx_errmsg(ctx));         \
    } while (0)

/* ---- the dataset: f32 inputs [N, IN], f32 targets [N, OUT], as IDX files ---- */

static int put_be32(FILE *f, uint32_t v) {
    unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16), (unsigned char)(v >> 8),
                          (unsigned char)v};
    return fwrite(b, 1, 4, f) == 4;
}

/* IDX type 0x0D (f32, big-endian) of [n, cols] from f(i, j). */
static int write_idx_f32(const char *path, uint32_t n, uint32_t cols, int targets) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    unsigned char head[4] = {0, 0, 0x0D, 2};
    int ok = fwrite(head, 1, 4, f) == 4 && put_be32(f, n) && put_be32(f, cols);
    for (uint32_t i = 0; ok && i < n; i++) {
        for (uint32_t j = 0; ok && j < cols; j++) {
            float v = targets ? cosf(0.37f * (float)(i + 1) - 0.61f * (float)(j + 1))
                              : sinf(0.29f * (float)(i + 1) + 0.43f * (float)(j + 1));
            uint32_t u;
            memcpy(&u, &v, 4);
            ok = put_be32(f, u);
        }
    }
    return fclose(f) == 0 && ok;
}

/* ---- models ----------------------------------------------------------------- */

static nnm_module *linear(nnm_ctx *ctx, int64_t in, int64_t out) {
    nnm_config *cfg = NULL;
    nnm_module *m = NULL;
    if (nnm_config_new(&cfg)) return NULL;
    nnm_config_set_int(cfg, "in_features", in);
    nnm_config_set_int(cfg, "out_features", out);
    if (nnm_module_create(ctx, "linear", cfg, &m)) m = NULL;
    nnm_config_free(cfg);
    return m;
}

/* linear(IN, HID) relu linear(HID, HID) relu linear(HID, OUT); the same
 * weights in every context made with the same seed. */
static nnm_module *build(nnm_ctx *ctx) {
    nnm_module *seq = NULL;
    if (nnm_module_create(ctx, "sequential", NULL, &seq)) return NULL;
    nnm_module *p[5] = {linear(ctx, IN, HID), NULL, linear(ctx, HID, HID), NULL, linear(ctx, HID, OUT)};
    if (nnm_module_create(ctx, "relu", NULL, &p[1])) p[1] = NULL;
    if (nnm_module_create(ctx, "relu", NULL, &p[3])) p[3] = NULL;
    int ok = 1;
    for (int i = 0; i < 5; i++) ok = ok && p[i] && nnm_module_add_child(seq, NULL, p[i]) == NNM_OK;
    for (int i = 0; i < 5; i++) nnm_module_release(p[i]);
    if (!ok) {
        nnm_module_release(seq);
        return NULL;
    }
    return seq;
}

static nnm_optim *sgd(nnm_module *m) {
    nnm_sgd_options s = {sizeof s, 0, 0.05, 0.9, 0.0, 0.0};
    nnm_optim *o = NULL;
    return nnm_optim_sgd_new(m, &s, &o) ? NULL : o;
}

static nnm_loader *loader(nnm_dataset *ds, int64_t batch, uint32_t rank, uint32_t world,
                          nnm_device dev) {
    nnm_loader_options o;
    memset(&o, 0, sizeof o);
    o.struct_size = sizeof o;
    o.batch_size = batch;
    o.rank = rank;
    o.world_size = world;
    nnm_loader *l = NULL;
    if (nnm_loader_new(ds, &o, &l)) return NULL;
    if (nnm_loader_set_device(l, dev)) {
        nnm_loader_free(l);
        return NULL;
    }
    return l;
}

/* One forward and backward of mean((m(x) - t)^2) on the loader's next batch. */
static nnm_status step_fwd_bwd(nnm_ctx *ctx, nnm_module *m, nnm_ddp *ddp, nnm_loader *l) {
    nnm_tensor *x = NULL, *t = NULL, *y = NULL, *d = NULL, *sq = NULL, *loss = NULL;
    nnm_status st = nnm_loader_next(l, &x, &t);
    if (!st && (!x || !t)) st = nnm_ctx_set_error(ctx, NNM_E_STATE, "the loader ran dry");
    if (!st) st = ddp ? nnm_ddp_call(ddp, &x, 1, &y, 1) : nnm_module_call(m, &x, 1, &y, 1);
    if (!st) st = nnm_op_binary(ctx, NNM_BINARY_SUB, y, t, &d);
    if (!st) st = nnm_op_binary(ctx, NNM_BINARY_MUL, d, d, &sq);
    if (!st) st = nnm_op_reduce(ctx, NNM_REDUCE_MEAN, sq, NULL, 0, 0, &loss);
    if (!st) st = nnm_backward(loss, NULL, 0);
    nnm_tensor *all[6] = {x, t, y, d, sq, loss};
    for (int i = 0; i < 6; i++) nnm_tensor_release(all[i]);
    return st;
}

typedef struct flat {
    float v[8192];
    int n;
    int grads;
} flat;

static nnm_status take(void *user, const char *name, nnm_tensor *p) {
    flat *f = user;
    (void)name;
    nnm_tensor *t = f->grads ? nnm_tensor_grad(p) : p;
    if (!t) return NNM_E_STATE;
    int64_t n = nnm_tensor_numel(t);
    if (f->n + n > 8192) return NNM_E_LIMIT;
    nnm_status st = nnm_tensor_to_f32(t, f->v + f->n, (size_t)n); /* waits for the device */
    f->n += (int)n;
    return st;
}

static int collect(nnm_module *m, int grads, flat *f) {
    memset(f, 0, sizeof *f);
    f->grads = grads;
    return nnm_module_named_parameters(m, take, f) == NNM_OK;
}

/* 1 when max |a - b| <= tol (and as many values), else 0 after saying where. */
static int close_to(const flat *a, const flat *b, double tol, const char *what, int step) {
    if (a->n != b->n || a->n == 0) {
        fprintf(stderr, "ddp_nccl rank %d: %s: %d vs %d values\n", g_rank, what, a->n, b->n);
        return 0;
    }
    double worst = 0;
    int at = 0;
    for (int i = 0; i < a->n; i++) {
        double d = fabs((double)a->v[i] - (double)b->v[i]);
        if (!(d <= worst)) {
            worst = d;
            at = i;
        }
    }
    if (worst <= tol) return 1;
    fprintf(stderr, "ddp_nccl rank %d: step %d: %s: max difference %.3g at %d (%.9g vs %.9g), tolerance %.1g\n",
            g_rank, step, what, worst, at, a->v[at], b->v[at], tol);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: ddp_nccl SCRATCH_DIR\n");
        return 2;
    }
    int rc = 1, skip = 0;
    nnm_ctx *ctx = NULL;
    nnm_comm *comm = NULL;
    nnm_dataset *ds = NULL;
    nnm_module *m = NULL, *ref = NULL, *cpu = NULL;
    nnm_ddp *ddp = NULL;
    nnm_optim *o = NULL, *ro = NULL, *co = NULL;
    nnm_loader *l = NULL, *rl = NULL, *cl = NULL;
    static flat a, b, c;
    const nnm_device CPU0 = {NNM_DEVICE_CPU, 0};

    nnm_ctx_options copt = {sizeof copt, 0, 1234};
    if (nnm_ctx_new(&copt, &ctx)) {
        fprintf(stderr, "ddp_nccl: nnm_ctx_new failed\n");
        return 1;
    }
    /* a GPU at all? */
    nnm_tensor *probe = NULL;
    if (nnm_tensor_new(ctx, (nnm_device){NNM_DEVICE_CUDA, 0}, (nnm_dtype){NNM_DTYPE_FLOAT, 32, 1}, 1,
                       (int64_t[]){1}, &probe) != NNM_OK) {
        printf("ddp_nccl: SKIPPED: %s\n", nnm_ctx_errmsg(ctx));
        skip = 1;
        goto out;
    }
    nnm_tensor_release(probe);
    nnm_comm_options cop = {sizeof cop, 0, 120.0};
    nnm_status cst = nnm_comm_new(ctx, "nccl", &cop, &comm);
    if (cst == NNM_E_NO_DEVICE || cst == NNM_E_LOAD || cst == NNM_E_NOT_FOUND) {
        printf("ddp_nccl: SKIPPED: the nccl communicator is not available: %s\n", nnm_ctx_errmsg(ctx));
        skip = 1;
        goto out;
    }
    OK(ctx, cst);
    g_rank = nnm_comm_rank(comm);
    g_world = nnm_comm_world_size(comm);
    const nnm_device dev = nnm_comm_device(comm);

    /* rank 0 writes the dataset; the barrier (an NCCL all-reduce) publishes it */
    char xp[4096], tp[4096];
    snprintf(xp, sizeof xp, "%s/ddp_nccl_x.idx", argv[1]);
    snprintf(tp, sizeof tp, "%s/ddp_nccl_t.idx", argv[1]);
    const uint32_t n = (uint32_t)(g_world * B * K);
    if (g_rank == 0 && !(write_idx_f32(xp, n, IN, 0) && write_idx_f32(tp, n, OUT, 1)))
        FAIL("cannot write the dataset under %s", argv[1]);
    OK(ctx, nnm_comm_barrier(comm));
    OK(ctx, nnm_dataset_open_idx(ctx, xp, tp, &ds));

    /* the same seed in one context: build the three copies from the same
     * generator state each time (rank 0's are broadcast by nnm_ddp_new anyway) */
    OK(ctx, nnm_ctx_manual_seed(ctx, 77));
    m = build(ctx);
    OK(ctx, nnm_ctx_manual_seed(ctx, 77));
    ref = build(ctx);
    OK(ctx, nnm_ctx_manual_seed(ctx, 77));
    cpu = build(ctx);
    if (!m || !ref || !cpu) FAIL("build: %s", nnm_ctx_errmsg(ctx));
    OK(ctx, nnm_module_to(m, dev));
    OK(ctx, nnm_module_to(ref, dev));
    /* small buckets: several all-reduces per backward, overlapped with it */
    nnm_ddp_options dopt = {sizeof dopt, 0, 4096, 1024};
    OK(ctx, nnm_ddp_new(m, comm, &dopt, &ddp));
    o = sgd(m);
    ro = sgd(ref);
    co = sgd(cpu);
    if (!o || !ro || !co) FAIL("optimizers: %s", nnm_ctx_errmsg(ctx));
    /* rank r's k-th batch is rows r, r + W, ... of the reference's k-th batch */
    l = loader(ds, B, (uint32_t)g_rank, (uint32_t)g_world, dev);
    rl = loader(ds, (int64_t)B * g_world, 0, 1, dev);
    cl = loader(ds, (int64_t)B * g_world, 0, 1, CPU0);
    if (!l || !rl || !cl) FAIL("loaders: %s", nnm_ctx_errmsg(ctx));

    int good = 1;
    for (int k = 0; k < K; k++) {
        OK(ctx, step_fwd_bwd(ctx, m, ddp, l));
        OK(ctx, step_fwd_bwd(ctx, ref, NULL, rl));
        OK(ctx, step_fwd_bwd(ctx, cpu, NULL, cl));
        if (!collect(m, 1, &a) || !collect(ref, 1, &b) || !collect(cpu, 1, &c))
            FAIL("reading the gradients: %s", nnm_ctx_errmsg(ctx));
        good &= close_to(&a, &b, 1e-5, "gradients, ddp vs one GPU", k);
        good &= close_to(&b, &c, 1e-4, "gradients, GPU vs CPU", k);
        OK(ctx, nnm_optim_step(o));
        OK(ctx, nnm_optim_step(ro));
        OK(ctx, nnm_optim_step(co));
        OK(ctx, nnm_optim_zero_grad(o));
        OK(ctx, nnm_optim_zero_grad(ro));
        OK(ctx, nnm_optim_zero_grad(co));
    }
    OK(ctx, nnm_ctx_synchronize(ctx));
    if (!collect(m, 0, &a) || !collect(ref, 0, &b) || !collect(cpu, 0, &c))
        FAIL("reading the parameters: %s", nnm_ctx_errmsg(ctx));
    good &= close_to(&a, &b, 1e-5, "parameters, ddp vs one GPU", K);
    good &= close_to(&b, &c, 1e-4, "parameters, GPU vs CPU", K);
    nnm_ddp_stats ds_ = {sizeof ds_, 0, 0, 0, 0};
    OK(ctx, nnm_ddp_stats_get(ddp, &ds_));
    printf("ddp_nccl rank %d of %d on cuda:%d: %s; %u buckets, %llu bytes reduced per step, comm %.3f ms, "
           "exposed %.3f ms (last step)\n",
           g_rank, g_world, (int)dev.id, good ? "OK" : "FAILED", ds_.n_buckets,
           (unsigned long long)ds_.bytes_reduced, ds_.comm_s * 1e3, ds_.exposed_s * 1e3);
    if (good && ds_.n_buckets < 2) {
        fprintf(stderr, "ddp_nccl rank %d: expected several buckets, got %u\n", g_rank, ds_.n_buckets);
        good = 0;
    }
    rc = good ? 0 : 1;
out:
    nnm_loader_free(l);
    nnm_loader_free(rl);
    nnm_loader_free(cl);
    nnm_optim_free(o);
    nnm_optim_free(ro);
    nnm_optim_free(co);
    nnm_ddp_free(ddp);
    nnm_module_release(m);
    nnm_module_release(ref);
    nnm_module_release(cpu);
    nnm_dataset_free(ds);
    nnm_comm_free(comm);
    nnm_ctx_free(ctx);
    return skip ? 0 : rc;
}
