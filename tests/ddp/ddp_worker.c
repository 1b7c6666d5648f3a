/* tests/ddp/ddp_worker.c - one rank of the DDP tests, run by mpirun (see
 * CMakeLists.txt):  ddp_worker PROBE_PLUGIN SCRATCH_DIR [die]
 *
 * Every scenario trains the same small model for K steps with DDP over the
 * "mpi" communicator, each rank on its own slice of a global batch, and in the
 * same process trains a reference copy (rank 0's initial weights: the DDP
 * model of each rank starts from a different seed, so the initial broadcast
 * is tested too) on the whole global batch without any communication. It
 * then checks that the parameters are bitwise identical on every rank
 * (all-gathered and compared) and within 1e-6 of the reference.
 *
 * "die": rank 1 exits in the middle of step 2 (after its forward, before its
 * backward); the others must fail with NNM_E_TIMEOUT naming rank 1 within the
 * timeout (NNM_COMM_TIMEOUT, set by the test), and write
 * SCRATCH/died_ok.<rank> to say so. Exit status 0 means every check passed.
 */
#define _POSIX_C_SOURCE 200809L /* setenv */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nnmod/nnmod.h"

#define IN 5
#define HID 7
#define OUT 3
#define B 4      /* rows per rank */
#define K 4      /* steps */

static int g_rank = -1, g_world = 0, g_fail = 0;
static const char *g_probe, *g_scratch;

#define CHECK(cond, ...)                                                               \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "rank %d: %s:%d: check failed: %s: ", g_rank, __FILE__,    \
                    __LINE__, #cond);                                                  \
            fprintf(stderr, __VA_ARGS__);                                              \
            fprintf(stderr, "\n");                                                     \
            g_fail = 1;                                                                \
            return -1;                                                                 \
        }                                                                              \
    } while (0)
#define OKS(ctx, expr) CHECK((expr) == NNM_OK, "%s", nnm_ctx_errmsg(ctx))
/* The same for a function that owns a context, a communicator, modules...:
 * it jumps to the function's `out`, which frees them (each is NULL until
 * made), so a failed check leaks nothing (an MPI communicator included). */
#define CHECK_OUT(cond, ...)                                                           \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "rank %d: %s:%d: check failed: %s: ", g_rank, __FILE__,    \
                    __LINE__, #cond);                                                  \
            fprintf(stderr, __VA_ARGS__);                                              \
            fprintf(stderr, "\n");                                                     \
            g_fail = 1;                                                                \
            goto out;                                                                  \
        }                                                                              \
    } while (0)
#define OKS_OUT(ctx, expr) CHECK_OUT((expr) == NNM_OK, "%s", nnm_ctx_errmsg(ctx))

typedef struct scenario {
    const char *name;
    int probe;               /* a ddp_probe layer first (buffer; unused param) */
    int with_unused;
    uint32_t flags;          /* NNM_DDP_* */
    uint64_t bucket, first;  /* 0: defaults */
    int accum;               /* micro-batches per step (no_sync for all but the last) */
    int adam;
    int ckpt;                /* checkpoint after K steps, resume on every rank */
    int bn;                  /* a real batch_norm1d after the first linear: per-rank
                              * batch statistics (no SyncBatchNorm), so only the
                              * ranks' agreement is checked, not the reference */
    int tied;                /* two linear(HID, HID) sharing one weight: a parameter
                              * that gets two gradients in one backward */
} scenario;

/* The global batch of (step, micro): N * B rows; rank r owns rows [rB, rB+B). */
static void make_batch(int step, int micro, int rows, float *x, float *t) {
    for (int i = 0; i < rows; i++) {
        for (int j = 0; j < IN; j++)
            x[i * IN + j] = sinf(0.7f * (float)(i + 1) + 0.3f * (float)(j + 1) + 1.1f * (float)step + 0.5f * (float)micro);
        for (int j = 0; j < OUT; j++)
            t[i * OUT + j] = cosf(0.4f * (float)(i + 1) - 0.9f * (float)(j + 1) + 0.7f * (float)step + 0.2f * (float)micro);
    }
}

static nnm_module *child(nnm_ctx *ctx, const char *type, int64_t a, int64_t b, int with_unused) {
    nnm_config *cfg = NULL;
    nnm_module *m = NULL;
    if (nnm_config_new(&cfg)) return NULL;
    if (strcmp(type, "linear") == 0) {
        nnm_config_set_int(cfg, "in_features", a);
        nnm_config_set_int(cfg, "out_features", b);
    } else if (strcmp(type, "batch_norm1d") == 0) {
        nnm_config_set_int(cfg, "num_features", a);
    } else if (strcmp(type, "ddp_probe") == 0) {
        nnm_config_set_int(cfg, "features", a);
        nnm_config_set_bool(cfg, "with_unused", with_unused);
    }
    if (nnm_module_create(ctx, type, cfg, &m)) m = NULL;
    nnm_config_free(cfg);
    return m;
}

static nnm_status find_weight(void *user, const char *name, nnm_tensor *t) {
    nnm_tensor **out = user;
    if (strcmp(name, "weight") == 0) *out = t;
    return NNM_OK;
}

/* [probe(IN)] -> linear(IN, HID) -> [bn] -> relu -> [linear(HID, HID) -> relu
 * -> linear(HID, HID) tied to it -> relu] -> linear(HID, OUT) */
static nnm_module *build(nnm_ctx *ctx, const scenario *sc) {
    nnm_module *seq = NULL;
    if (nnm_module_create(ctx, "sequential", NULL, &seq)) return NULL;
    nnm_module *parts[9] = {0};
    int n = 0, tie_a = -1;
    if (sc->probe) parts[n++] = child(ctx, "ddp_probe", IN, 0, sc->with_unused);
    parts[n++] = child(ctx, "linear", IN, HID, 0);
    if (sc->bn) parts[n++] = child(ctx, "batch_norm1d", HID, 0, 0);
    parts[n++] = child(ctx, "relu", 0, 0, 0);
    if (sc->tied) {
        tie_a = n;
        parts[n++] = child(ctx, "linear", HID, HID, 0);
        parts[n++] = child(ctx, "relu", 0, 0, 0);
        parts[n++] = child(ctx, "linear", HID, HID, 0);
        parts[n++] = child(ctx, "relu", 0, 0, 0);
    }
    parts[n++] = child(ctx, "linear", HID, OUT, 0);
    int ok = 1;
    for (int i = 0; i < n; i++) {
        ok = ok && parts[i] && nnm_module_add_child(seq, NULL, parts[i]) == NNM_OK;
        if (ok && tie_a >= 0 && i == tie_a + 2) { /* its weight is tie_a's */
            nnm_tensor *w = NULL;
            ok = nnm_module_named_parameters(parts[tie_a], find_weight, &w) == NNM_OK && w &&
                 nnm_module_set_parameter(parts[i], "weight", w) == NNM_OK;
        }
    }
    for (int i = 0; i < n; i++) nnm_module_release(parts[i]);
    if (!ok) {
        fprintf(stderr, "rank %d: build: %s\n", g_rank, nnm_ctx_errmsg(ctx));
        nnm_module_release(seq);
        return NULL;
    }
    return seq;
}

static nnm_optim *make_opt(nnm_module *m, const scenario *sc) {
    nnm_optim *o = NULL;
    if (sc->adam) {
        nnm_adam_options a = {sizeof a, 0, 0, 0, 0.01, 0.9, 0.999, 1e-8, 0.0};
        if (nnm_optim_adam_new(m, &a, &o)) return NULL;
    } else {
        nnm_sgd_options s = {sizeof s, 0, 0.1, 0.9, 0.0, 0.0};
        if (nnm_optim_sgd_new(m, &s, &o)) return NULL;
    }
    return o;
}

/* mean((y - t)^2) */
static nnm_status mse(nnm_ctx *ctx, nnm_tensor *y, nnm_tensor *t, nnm_tensor **loss) {
    nnm_tensor *d = NULL, *sq = NULL;
    nnm_status st = nnm_op_binary(ctx, NNM_BINARY_SUB, y, t, &d);
    if (!st) st = nnm_op_binary(ctx, NNM_BINARY_MUL, d, d, &sq);
    if (!st) st = nnm_op_reduce(ctx, NNM_REDUCE_MEAN, sq, NULL, 0, 0, loss);
    nnm_tensor_release(d);
    nnm_tensor_release(sq);
    return st;
}

/* One forward + backward on rows [row0, row0 + rows) of the batch. */
static nnm_status fwd_bwd(nnm_ctx *ctx, nnm_module *m, nnm_ddp *ddp, const float *x,
                          const float *t, int row0, int rows) {
    int64_t xs[2] = {rows, IN}, ts[2] = {rows, OUT};
    nnm_tensor *xt = NULL, *tt = NULL, *y = NULL, *loss = NULL;
    nnm_status st = nnm_tensor_from_f32(ctx, 2, xs, x + row0 * IN, &xt);
    if (!st) st = nnm_tensor_from_f32(ctx, 2, ts, t + row0 * OUT, &tt);
    if (!st) st = ddp ? nnm_ddp_call(ddp, &xt, 1, &y, 1) : nnm_module_call(m, &xt, 1, &y, 1);
    if (!st) st = mse(ctx, y, tt, &loss);
    if (!st) st = nnm_backward(loss, NULL, 0);
    nnm_tensor_release(xt);
    nnm_tensor_release(tt);
    nnm_tensor_release(y);
    nnm_tensor_release(loss);
    return st;
}

typedef struct flat {
    float v[4096];
    int n;
    const char *names[64];
    int offs[64], counts[64], n_t;
} flat;

static nnm_status gather_one(void *user, const char *name, nnm_tensor *t) {
    flat *f = user;
    int64_t n = nnm_tensor_numel(t);
    if (f->n + n > 4096 || f->n_t == 64) return NNM_E_LIMIT;
    f->offs[f->n_t] = f->n;
    f->counts[f->n_t] = (int)n;
    f->names[f->n_t++] = name; /* only used while the walk lasts: copied below */
    nnm_status st = nnm_tensor_to_f32(t, f->v + f->n, (size_t)n);
    f->n += (int)n;
    return st;
}

static nnm_status gather_grad(void *user, const char *name, nnm_tensor *t) {
    flat *f = user;
    nnm_tensor *g = nnm_tensor_grad(t);
    (void)f;
    if (!g) return NNM_E_STATE;
    return gather_one(user, name, g);
}

/* The parameters' .grads, in registration order. */
static int flatten_grads(nnm_module *m, flat *f) {
    memset(f, 0, sizeof *f);
    return nnm_module_named_parameters(m, gather_grad, f);
}

typedef struct addrs {
    const char *p[64];
    int64_t n[64];
    int k;
} addrs;

static nnm_status grad_addr(void *user, const char *name, nnm_tensor *t) {
    (void)name;
    addrs *a = user;
    nnm_tensor *g = nnm_tensor_grad(t);
    if (!g || a->k == 64) return NNM_E_STATE;
    const nnm_tensor_desc *d = nnm_tensor_desc_get(g);
    a->p[a->k] = (const char *)d->data + d->byte_offset;
    a->n[a->k++] = nnm_tensor_numel(g);
    return NNM_OK;
}

static int flatten(nnm_module *m, int buffers, flat *f) {
    memset(f, 0, sizeof *f);
    return buffers ? nnm_module_named_buffers(m, gather_one, f)
                   : nnm_module_named_parameters(m, gather_one, f);
}

/* 1 when every rank's values are bitwise ours, 0 when not, -1 on failure. */
static int all_same(nnm_ctx *ctx, nnm_comm *comm, const flat *f) {
    int64_t s1[1] = {f->n}, sN[1] = {(int64_t)f->n * g_world};
    nnm_tensor *mine = NULL, *all = NULL;
    float *v = malloc(sizeof(float) * (size_t)f->n * (size_t)g_world);
    int same = -1;
    if (v && !nnm_tensor_from_f32(ctx, 1, s1, f->v, &mine) &&
        !nnm_tensor_from_f32(ctx, 1, sN, NULL, &all) && !nnm_comm_all_gather(comm, mine, all) &&
        !nnm_tensor_to_f32(all, v, (size_t)f->n * (size_t)g_world)) {
        same = 1;
        for (int r = 0; r < g_world; r++)
            if (memcmp(v + (size_t)r * (size_t)f->n, f->v, sizeof(float) * (size_t)f->n) != 0) same = 0;
    }
    free(v);
    nnm_tensor_release(mine);
    nnm_tensor_release(all);
    return same;
}

/* Every rank's values bitwise equal to ours. */
static int check_identical(nnm_ctx *ctx, nnm_comm *comm, const flat *f, const char *what) {
    int64_t s1[1] = {f->n}, sN[1] = {(int64_t)f->n * g_world};
    nnm_tensor *mine = NULL, *all = NULL;
    OKS(ctx, nnm_tensor_from_f32(ctx, 1, s1, f->v, &mine));
    OKS(ctx, nnm_tensor_from_f32(ctx, 1, sN, NULL, &all));
    OKS(ctx, nnm_comm_all_gather(comm, mine, all));
    float *v = malloc(sizeof(float) * (size_t)f->n * (size_t)g_world);
    CHECK(v != NULL, "oom");
    OKS(ctx, nnm_tensor_to_f32(all, v, (size_t)f->n * (size_t)g_world));
    int bad = -1;
    for (int r = 0; r < g_world && bad < 0; r++)
        if (memcmp(v + (size_t)r * (size_t)f->n, f->v, sizeof(float) * (size_t)f->n) != 0) bad = r;
    free(v);
    nnm_tensor_release(mine);
    nnm_tensor_release(all);
    CHECK(bad < 0, "%s differ bitwise between rank %d and rank %d", what, g_rank, bad);
    return 0;
}

static int check_close(const flat *a, const flat *b, double tol, const char *what) {
    CHECK(a->n == b->n, "%s: %d vs %d values", what, a->n, b->n);
    double worst = 0;
    int at = 0;
    for (int i = 0; i < a->n; i++) {
        double d = fabs((double)a->v[i] - (double)b->v[i]);
        if (d > worst || isnan(d)) {
            worst = d;
            at = i;
        }
    }
    CHECK(worst <= tol, "%s: max |ddp - reference| = %.3g at %d (%g vs %g)", what, worst, at,
          a->v[at], b->v[at]);
    return 0;
}

static nnm_ctx *new_ctx(uint64_t seed) {
    nnm_ctx_options o = {sizeof o, 0, seed};
    nnm_ctx *ctx = NULL;
    if (nnm_ctx_new(&o, &ctx)) return NULL;
    if (nnm_plugin_load(ctx, g_probe)) {
        fprintf(stderr, "rank %d: %s\n", g_rank, nnm_ctx_errmsg(ctx));
        nnm_ctx_free(ctx);
        return NULL;
    }
    return ctx;
}

/* Trains `steps` steps from step `from`: the DDP model on this rank's rows,
 * the reference on all rows. rm_sim follows rank 0's running_mean. */
static int train(const scenario *sc, nnm_ctx *ctx, nnm_ddp *ddp, nnm_optim *opt, nnm_ctx *rctx,
                 nnm_module *ref, nnm_optim *ropt, int from, int steps, float *rm_sim) {
    nnm_module *m = nnm_ddp_module(ddp);
    int rows = B * g_world;
    float x[64 * IN], t[64 * OUT];
    int accum = sc->accum ? sc->accum : 1;
    for (int step = from; step < from + steps; step++) {
        for (int micro = 0; micro < accum; micro++) {
            make_batch(step, micro, rows, x, t);
            nnm_ddp_set_sync(ddp, micro == accum - 1);
            OKS(ctx, fwd_bwd(ctx, m, ddp, x, t, g_rank * B, B));
            OKS(rctx, fwd_bwd(rctx, ref, NULL, x, t, 0, rows));
            if (rm_sim) /* what rank 0's probe computes, in its arithmetic */
                for (int j = 0; j < IN; j++) {
                    double s = 0;
                    for (int i = 0; i < B; i++) s += x[i * IN + j];
                    rm_sim[j] = (float)(0.9 * rm_sim[j] + 0.1 * (s / (double)B));
                }
        }
        OKS(ctx, nnm_optim_step(opt));
        OKS(ctx, nnm_optim_zero_grad(opt));
        OKS(rctx, nnm_optim_step(ropt));
        OKS(rctx, nnm_optim_zero_grad(ropt));
    }
    return 0;
}

/* After a synchronised backward: every .grad lives in its bucket (they lie
 * end to end in reverse registration order, one run per bucket), and the
 * gradients are bitwise the same on every rank and within 1e-6 of one
 * process's on the whole batch. */
static int check_grads(const scenario *sc, nnm_ctx *ctx, nnm_comm *comm, nnm_ddp *ddp, nnm_ctx *rctx,
                       nnm_module *ref) {
    nnm_module *m = nnm_ddp_module(ddp);
    int rows = B * g_world;
    float x[64 * IN], t[64 * OUT];
    make_batch(K + 7, 0, rows, x, t);
    nnm_ddp_set_sync(ddp, 1);
    OKS(ctx, fwd_bwd(ctx, m, ddp, x, t, g_rank * B, B));
    OKS(rctx, fwd_bwd(rctx, ref, NULL, x, t, 0, rows));
    addrs a;
    memset(&a, 0, sizeof a);
    OKS(ctx, nnm_module_named_parameters(m, grad_addr, &a));
    int runs = 1;
    for (int i = a.k - 1; i > 0; i--)
        if (a.p[i] + a.n[i] * (int64_t)sizeof(float) != a.p[i - 1]) runs++;
    nnm_ddp_stats stats = {sizeof stats, 0, 0, 0, 0};
    OKS(ctx, nnm_ddp_stats_get(ddp, &stats));
    CHECK((uint32_t)runs == stats.n_buckets, "the .grads lie in %d runs, not in the %u buckets", runs,
          stats.n_buckets);
    flat g, rg;
    OKS(ctx, flatten_grads(m, &g));
    OKS(rctx, flatten_grads(ref, &rg));
    if (check_identical(ctx, comm, &g, "gradients")) return -1;
    if (!sc->bn && check_close(&g, &rg, 1e-6, "gradients")) return -1;
    OKS(ctx, nnm_module_zero_grad(m));
    OKS(rctx, nnm_module_zero_grad(ref));
    return 0;
}

static nnm_status find_tensor(void *user, const char *name, nnm_tensor *t) {
    nnm_tensor **out = user;
    if (strcmp(name, "0.unused") == 0) *out = t;
    return NNM_OK;
}

/* Releases four tensors (NULL is a no-op) and sets them to NULL. */
static void release4(nnm_tensor **a, nnm_tensor **b, nnm_tensor **c, nnm_tensor **d) {
    nnm_tensor **all[4] = {a, b, c, d};
    for (int i = 0; i < 4; i++) {
        nnm_tensor_release(*all[i]);
        *all[i] = NULL;
    }
}

static int run(const scenario *sc) {
    int ret = -1;
    nnm_comm *comm = NULL;
    nnm_module *m = NULL, *ref = NULL;
    nnm_ddp *ddp = NULL;
    nnm_optim *opt = NULL, *ropt = NULL;
    nnm_ctx *ctx = new_ctx(100 + (uint64_t)g_rank), *rctx = new_ctx(100);
    CHECK_OUT(ctx && rctx, "context");
    nnm_comm_options co = {sizeof co, 0, 120.0};
    OKS_OUT(ctx, nnm_comm_new(ctx, "mpi", &co, &comm));
    CHECK_OUT(nnm_comm_rank(comm) == g_rank && nnm_comm_world_size(comm) == g_world, "rank/world");
    m = build(ctx, sc);
    ref = build(rctx, sc);
    CHECK_OUT(m && ref, "build");
    nnm_ddp_options o = {sizeof o, sc->flags, sc->bucket, sc->first};
    OKS_OUT(ctx, nnm_ddp_new(m, comm, &o, &ddp));
    opt = make_opt(m, sc);
    ropt = make_opt(ref, sc);
    CHECK_OUT(opt && ropt, "optimizers");
    float rm_sim[IN] = {0};
    if (train(sc, ctx, ddp, opt, rctx, ref, ropt, 0, K, sc->probe ? rm_sim : NULL)) goto out;

    if (sc->ckpt) {
        /* Rank 0 writes; every rank resumes from the file into a fresh model
         * (another seed) and optimizer, under a fresh wrapper. */
        char path[512];
        snprintf(path, sizeof path, "%s/ddp_ckpt_np%d.safetensors", g_scratch, g_world);
        if (g_rank == 0) OKS_OUT(ctx, nnm_checkpoint_save(path, m, opt, NULL, 0, NULL));
        OKS_OUT(ctx, nnm_comm_barrier(comm));
        nnm_ddp_free(ddp);
        nnm_optim_free(opt);
        nnm_module_release(m);
        ddp = NULL;
        opt = NULL;
        m = build(ctx, sc);
        CHECK_OUT(m != NULL, "rebuild");
        opt = make_opt(m, sc);
        CHECK_OUT(opt != NULL, "optimizer");
        OKS_OUT(ctx, nnm_checkpoint_load(path, m, opt));
        OKS_OUT(ctx, nnm_ddp_new(m, comm, &o, &ddp));
        if (train(sc, ctx, ddp, opt, rctx, ref, ropt, K, K, NULL)) goto out;
    }

    flat a, r;
    OKS_OUT(ctx, flatten(m, 0, &a));
    OKS_OUT(rctx, flatten(ref, 0, &r));
    if (check_identical(ctx, comm, &a, "parameters")) goto out;
    if (!sc->bn && check_close(&a, &r, 1e-6, "parameters")) goto out;
    nnm_ddp_stats stats = {sizeof stats, 0, 0, 0, 0};
    OKS_OUT(ctx, nnm_ddp_stats_get(ddp, &stats));
    if (sc->bucket) CHECK_OUT(stats.n_buckets >= 3, "want an uneven split in >= 3 buckets, got %u", stats.n_buckets);

    if (sc->with_unused) {
        nnm_tensor *u = NULL;
        OKS_OUT(ctx, nnm_module_named_parameters(m, find_tensor, &u));
        CHECK_OUT(u != NULL, "no 0.unused");
        float uv[2];
        OKS_OUT(ctx, nnm_tensor_to_f32(u, uv, 2));
        CHECK_OUT(uv[0] == 0.25f && uv[1] == 0.25f, "an unused parameter moved: %g %g", uv[0], uv[1]);
        CHECK_OUT(nnm_tensor_grad(u) == NULL, "a parameter no rank used got a .grad");
    }
    if (sc->bn) {
        /* Each rank's last forward updated the running stats from its own
         * rows: they differ until the next forward broadcasts rank 0's. */
        flat pre;
        OKS_OUT(ctx, flatten(m, 1, &pre));
        int same = all_same(ctx, comm, &pre);
        CHECK_OUT(same == 0, "the running stats agree before the broadcast (%d): the test shows nothing", same);
    }
    if (sc->probe || sc->bn) {
        /* A forward in eval mode broadcasts the buffers (and updates none). */
        OKS_OUT(ctx, nnm_module_train(m, 0));
        float x[B * IN] = {0};
        int64_t xs[2] = {B, IN};
        nnm_tensor *xt = NULL, *y = NULL;
        int prev = nnm_grad_set_enabled(0);
        OKS_OUT(ctx, nnm_tensor_from_f32(ctx, 2, xs, x, &xt));
        nnm_status st = nnm_ddp_call(ddp, &xt, 1, &y, 1);
        nnm_grad_set_enabled(prev);
        nnm_tensor_release(xt);
        nnm_tensor_release(y);
        OKS_OUT(ctx, st);
        flat bb;
        OKS_OUT(ctx, flatten(m, 1, &bb));
        CHECK_OUT(bb.n == (sc->probe ? IN : 0) + (sc->bn ? 2 * HID + 1 : 0), "buffers: %d values", bb.n);
        if (check_identical(ctx, comm, &bb, "buffers")) goto out;
    }
    if (sc->probe) {
        flat bb, sim;
        OKS_OUT(ctx, flatten(m, 1, &bb));
        memset(&sim, 0, sizeof sim);
        memcpy(sim.v, rm_sim, sizeof rm_sim);
        sim.n = IN;
        if (check_close(&bb, &sim, 1e-6, "running_mean (rank 0's, broadcast)")) goto out;
    }
    if (sc->with_unused) {
        nnm_tensor *u = NULL;
        OKS_OUT(ctx, nnm_module_named_parameters(m, find_tensor, &u));
        CHECK_OUT(u != NULL, "no 0.unused");
        OKS_OUT(ctx, nnm_module_train(m, 1));
        /* A .grad of its own that no rank's backward touches stays as it was
         * (it rides in its bucket, but no rank used the parameter), also
         * after a forward whose backward never came. */
        int64_t s2[1] = {2};
        const float gv[2] = {5.0f, -3.0f};
        nnm_tensor *g = NULL;
        OKS_OUT(ctx, nnm_tensor_from_f32(ctx, 1, s2, gv, &g));
        OKS_OUT(ctx, nnm_tensor_set_grad(u, g));
        nnm_tensor_release(g);
        float x[64 * IN], t[64 * OUT];
        make_batch(K + 3, 0, B * g_world, x, t);
        int64_t xs[2] = {B, IN};
        nnm_tensor *xt = NULL, *y = NULL;
        OKS_OUT(ctx, nnm_tensor_from_f32(ctx, 2, xs, x + g_rank * B * IN, &xt));
        OKS_OUT(ctx, nnm_ddp_call(ddp, &xt, 1, &y, 1)); /* no backward */
        nnm_tensor_release(y);
        nnm_tensor_release(xt);
        OKS_OUT(ctx, fwd_bwd(ctx, m, ddp, x, t, g_rank * B, B));
        float got[2] = {0};
        CHECK_OUT(nnm_tensor_grad(u) != NULL, "the unused parameter's own .grad is gone");
        OKS_OUT(ctx, nnm_tensor_to_f32(nnm_tensor_grad(u), got, 2));
        CHECK_OUT(got[0] == 5.0f && got[1] == -3.0f, "the unused parameter's own .grad changed: %g %g", got[0],
              got[1]);
        OKS_OUT(ctx, nnm_module_zero_grad(m));
    }
    if (!sc->with_unused && !sc->ckpt && !sc->probe) {
        OKS_OUT(ctx, nnm_module_train(m, 1));
        if (check_grads(sc, ctx, comm, ddp, rctx, ref)) goto out;
    }
    ret = 0;
out:
    nnm_ddp_free(ddp);
    nnm_optim_free(opt);
    nnm_optim_free(ropt);
    nnm_module_release(m);
    nnm_module_release(ref);
    nnm_comm_free(comm);
    nnm_ctx_free(ctx);
    nnm_ctx_free(rctx);
    if (ret == 0 && g_rank == 0) printf("ddp %-14s np=%d: ok\n", sc->name, g_world);
    return ret;
}

/* ---- a large weight's gradient in parts ------------------------------------ */

/* linear(256, 2048) -> relu -> linear(2048, 4): the first weight (2 MiB)
 * has its gradient computed, and all-reduced, in 2 blocks of 1024 rows. */
static nnm_module *wide(nnm_ctx *ctx) {
    nnm_module *seq = NULL;
    if (nnm_module_create(ctx, "sequential", NULL, &seq)) return NULL;
    nnm_module *parts[3] = {child(ctx, "linear", 256, 2048, 0), child(ctx, "relu", 0, 0, 0),
                            child(ctx, "linear", 2048, 4, 0)};
    int ok = 1;
    for (int i = 0; i < 3; i++) ok = ok && parts[i] && nnm_module_add_child(seq, NULL, parts[i]) == NNM_OK;
    for (int i = 0; i < 3; i++) nnm_module_release(parts[i]);
    if (!ok) {
        nnm_module_release(seq);
        return NULL;
    }
    return seq;
}

typedef struct vec {
    float *v;
    int64_t n, cap;
} vec;

static nnm_status vec_add_grad(void *user, const char *name, nnm_tensor *t) {
    (void)name;
    vec *f = user;
    nnm_tensor *g = nnm_tensor_grad(t);
    if (!g) return NNM_E_STATE;
    int64_t n = nnm_tensor_numel(g);
    if (f->n + n > f->cap) {
        int64_t cap = 2 * (f->n + n);
        float *v = realloc(f->v, (size_t)cap * sizeof(float));
        if (!v) return NNM_E_NOMEM;
        f->v = v;
        f->cap = cap;
    }
    nnm_status st = nnm_tensor_to_f32(g, f->v + f->n, (size_t)n);
    f->n += n;
    return st;
}

/* forward + backward of mean(y^2) on this rank's 16 rows of batch k. */
static nnm_status wide_fwd_bwd(nnm_ctx *ctx, nnm_ddp *ddp, int k) {
    float x[16 * 256];
    for (int i = 0; i < 16 * 256; i++)
        x[i] = sinf(0.013f * (float)i + 0.7f * (float)k + 1.9f * (float)g_rank);
    int64_t xs[2] = {16, 256};
    nnm_tensor *xt = NULL, *y = NULL, *sq = NULL, *loss = NULL;
    nnm_status st = nnm_tensor_from_f32(ctx, 2, xs, x, &xt);
    if (!st) st = nnm_ddp_call(ddp, &xt, 1, &y, 1);
    if (!st) st = nnm_op_binary(ctx, NNM_BINARY_MUL, y, y, &sq);
    if (!st) st = nnm_op_reduce(ctx, NNM_REDUCE_MEAN, sq, NULL, 0, 0, &loss);
    if (!st) st = nnm_backward(loss, NULL, 0);
    nnm_tensor_release(xt);
    nnm_tensor_release(y);
    nnm_tensor_release(sq);
    nnm_tensor_release(loss);
    return st;
}

/* Two copies of one model on one communicator, one whose blocks start as
 * they are written, one (NNM_DDP_EARLY_PARTS=0) whose blocks start with
 * their bucket, after the whole backward of the bucket: each step the
 * averaged gradients are bitwise identical on every rank and between the
 * two (a block started before its rows were final would show). */
static int run_parts(void) {
    int ret = -1;
    nnm_comm *comm = NULL;
    nnm_module *a = NULL, *b = NULL;
    nnm_ddp *da = NULL, *db = NULL;
    nnm_optim *oa = NULL, *ob = NULL;
    vec ga = {0}, gb = {0};
    nnm_ctx *ctx = new_ctx(300 + (uint64_t)g_rank);
    CHECK_OUT(ctx, "context");
    OKS_OUT(ctx, nnm_comm_new(ctx, "mpi", NULL, &comm));
    a = wide(ctx);
    b = wide(ctx);
    CHECK_OUT(a && b, "build");
    char path[512];
    snprintf(path, sizeof path, "%s/parts_np%d_r%d.safetensors", g_scratch, g_world, g_rank);
    OKS_OUT(ctx, nnm_module_save(a, path, 0, NULL));
    OKS_OUT(ctx, nnm_module_load(b, path, 1, NULL));
    remove(path);
    OKS_OUT(ctx, nnm_ddp_new(a, comm, NULL, &da));
    setenv("NNM_DDP_EARLY_PARTS", "0", 1);
    OKS_OUT(ctx, nnm_ddp_new(b, comm, NULL, &db));
    unsetenv("NNM_DDP_EARLY_PARTS");
    nnm_sgd_options so = {sizeof so, 0, 0.05, 0.9, 0.0, 0.0};
    CHECK_OUT(nnm_optim_sgd_new(a, &so, &oa) == NNM_OK && nnm_optim_sgd_new(b, &so, &ob) == NNM_OK, "sgd");
    for (int k = 0; k < 3; k++) {
        OKS_OUT(ctx, wide_fwd_bwd(ctx, da, k));
        OKS_OUT(ctx, wide_fwd_bwd(ctx, db, k));
        ga.n = gb.n = 0;
        OKS_OUT(ctx, nnm_module_named_parameters(a, vec_add_grad, &ga));
        OKS_OUT(ctx, nnm_module_named_parameters(b, vec_add_grad, &gb));
        CHECK_OUT(ga.n == gb.n && ga.n == 2048 * 256 + 2048 + 4 * 2048 + 4, "gradients: %lld values",
                  (long long)ga.n);
        int64_t s1[1] = {ga.n}, sN[1] = {ga.n * g_world};
        nnm_tensor *mine = NULL, *all = NULL;
        float *v = malloc(sizeof(float) * (size_t)ga.n * (size_t)g_world);
        CHECK_OUT(v != NULL, "oom");
        nnm_status st = nnm_tensor_from_f32(ctx, 1, s1, ga.v, &mine);
        if (!st) st = nnm_tensor_from_f32(ctx, 1, sN, NULL, &all);
        if (!st) st = nnm_comm_all_gather(comm, mine, all);
        if (!st) st = nnm_tensor_to_f32(all, v, (size_t)ga.n * (size_t)g_world);
        int bad = -1;
        for (int r = 0; !st && r < g_world && bad < 0; r++)
            if (memcmp(v + (size_t)r * (size_t)ga.n, ga.v, sizeof(float) * (size_t)ga.n) != 0) bad = r;
        free(v);
        nnm_tensor_release(mine);
        nnm_tensor_release(all);
        OKS_OUT(ctx, st);
        CHECK_OUT(bad < 0, "step %d: gradients differ bitwise between rank %d and rank %d", k, g_rank, bad);
        int64_t diff = 0;
        for (int64_t i = 0; i < ga.n; i++) diff += ga.v[i] != gb.v[i];
        CHECK_OUT(diff == 0, "step %d: %lld gradients of blocks started early differ from those started "
                  "with their bucket", k, (long long)diff);
        OKS_OUT(ctx, nnm_optim_step(oa));
        OKS_OUT(ctx, nnm_optim_step(ob));
        OKS_OUT(ctx, nnm_optim_zero_grad(oa));
        OKS_OUT(ctx, nnm_optim_zero_grad(ob));
    }
    ret = 0;
out:
    free(ga.v);
    free(gb.v);
    nnm_optim_free(oa);
    nnm_optim_free(ob);
    nnm_ddp_free(da);
    nnm_ddp_free(db);
    nnm_module_release(a);
    nnm_module_release(b);
    nnm_comm_free(comm);
    nnm_ctx_free(ctx);
    if (ret == 0 && g_rank == 0) printf("ddp %-14s np=%d: ok\n", "early_blocks", g_world);
    return ret;
}

/* Without find_unused_parameters a parameter without gradient must be
 * reported at the next forward, by name. */
static int run_unused_error(void) {
    scenario sc = {"unused_error", 1, 1, 0, 0, 0, 1, 0, 0, 0};
    int ret = -1;
    nnm_comm *comm = NULL;
    nnm_module *m = NULL;
    nnm_ddp *ddp = NULL;
    nnm_ctx *ctx = new_ctx(7);
    CHECK_OUT(ctx, "context");
    OKS_OUT(ctx, nnm_comm_new(ctx, "mpi", NULL, &comm));
    m = build(ctx, &sc);
    CHECK_OUT(m, "build");
    OKS_OUT(ctx, nnm_ddp_new(m, comm, NULL, &ddp));
    float x[64 * IN], t[64 * OUT];
    make_batch(0, 0, B * g_world, x, t);
    OKS_OUT(ctx, fwd_bwd(ctx, m, ddp, x, t, g_rank * B, B));
    nnm_status st = fwd_bwd(ctx, m, ddp, x, t, g_rank * B, B);
    CHECK_OUT(st == NNM_E_STATE && strstr(nnm_ctx_errmsg(ctx), "0.unused"),
          "got %s: %s", nnm_status_name(st), nnm_ctx_errmsg(ctx));
    ret = 0;
out:
    nnm_ddp_free(ddp);
    nnm_module_release(m);
    nnm_comm_free(comm);
    nnm_ctx_free(ctx);
    if (ret == 0 && g_rank == 0) printf("ddp %-14s np=%d: ok\n", sc.name, g_world);
    return ret;
}

/* Rank 1 dies in the middle of step 2. */
static int run_die(void) {
    scenario sc = {"die", 0, 0, 0, 0, 0, 1, 0, 0, 0};
    int ret = -1;
    nnm_comm *comm = NULL;
    nnm_module *m = NULL;
    nnm_ddp *ddp = NULL;
    nnm_optim *opt = NULL;
    nnm_tensor *xt = NULL, *tt = NULL, *y = NULL, *loss = NULL;
    nnm_ctx *ctx = new_ctx(9);
    CHECK_OUT(ctx, "context");
    OKS_OUT(ctx, nnm_comm_new(ctx, "mpi", NULL, &comm)); /* timeout from NNM_COMM_TIMEOUT */
    m = build(ctx, &sc);
    CHECK_OUT(m, "build");
    OKS_OUT(ctx, nnm_ddp_new(m, comm, NULL, &ddp));
    opt = make_opt(m, &sc);
    float x[64 * IN], t[64 * OUT];
    int64_t xs[2] = {B, IN}, ts[2] = {B, OUT};
    for (int step = 0; step < 4; step++) {
        make_batch(step, 0, B * g_world, x, t);
        release4(&xt, &tt, &y, &loss);
        OKS_OUT(ctx, nnm_tensor_from_f32(ctx, 2, xs, x + g_rank * B * IN, &xt));
        OKS_OUT(ctx, nnm_tensor_from_f32(ctx, 2, ts, t + g_rank * B * OUT, &tt));
        OKS_OUT(ctx, nnm_ddp_call(ddp, &xt, 1, &y, 1));
        OKS_OUT(ctx, mse(ctx, y, tt, &loss));
        if (step == 2 && g_rank == 1) {
            fflush(NULL);
            _exit(0); /* a crash, as far as the others can tell */
        }
        nnm_status st = nnm_backward(loss, NULL, 0);
        release4(&xt, &tt, &y, &loss);
        if (step < 2) {
            OKS_OUT(ctx, st);
            OKS_OUT(ctx, nnm_optim_step(opt));
            OKS_OUT(ctx, nnm_optim_zero_grad(opt));
            continue;
        }
        const char *msg = nnm_ctx_errmsg(ctx);
        fprintf(stderr, "rank %d saw: %s: %s\n", g_rank, nnm_status_name(st), msg);
        CHECK_OUT(st == NNM_E_TIMEOUT, "got %s: %s", nnm_status_name(st), msg);
        CHECK_OUT(strstr(msg, "rank(s) 1 ") != NULL || strstr(msg, "rank(s) 1,") != NULL ||
                  strstr(msg, ", 1 ") != NULL || strstr(msg, ", 1,") != NULL,
              "the message does not name rank 1: %s", msg);
        char path[512];
        snprintf(path, sizeof path, "%s/died_ok.%d", g_scratch, g_rank);
        FILE *f = fopen(path, "w");
        CHECK_OUT(f != NULL, "cannot write %s", path);
        fprintf(f, "%s\n", msg);
        fclose(f);
        break;
    }
    /* A later collective fails at once: the communicator is broken. */
    CHECK_OUT(nnm_comm_barrier(comm) == NNM_E_STATE, "barrier after a failure: %s", nnm_ctx_errmsg(ctx));
    ret = 0;
out:
    release4(&xt, &tt, &y, &loss);
    nnm_optim_free(opt);
    nnm_ddp_free(ddp);
    nnm_module_release(m);
    nnm_comm_free(comm);
    nnm_ctx_free(ctx);
    return ret;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s PROBE_PLUGIN SCRATCH_DIR [die]\n", argv[0]);
        return 2;
    }
    g_probe = argv[1];
    g_scratch = argv[2];
    const char *r = getenv("OMPI_COMM_WORLD_RANK"), *w = getenv("OMPI_COMM_WORLD_SIZE");
    if (!r) r = getenv("PMI_RANK");
    if (!w) w = getenv("PMI_SIZE");
    if (!r || !w) {
        fprintf(stderr, "run me under mpirun\n");
        return 2;
    }
    g_rank = atoi(r);
    g_world = atoi(w);
    if (argc > 3 && strcmp(argv[3], "die") == 0) return run_die() ? 1 : 0;

    static const scenario all[] = {
        /* name           probe unused flags                          bucket first accum adam ckpt */
        {"sgd_momentum",  0, 0, 0,                                    0,    0,    1,    0,  0},
        {"adam",          0, 0, 0,                                    0,    0,    1,    1,  0},
        {"no_sync",       0, 0, 0,                                    0,    0,    3,    0,  0},
        {"uneven_buckets",0, 0, 0,                                    100,  8,    1,    0,  0},
        {"unused_param",  1, 1, NNM_DDP_FIND_UNUSED_PARAMETERS,       60,   20,   1,    0,  0},
        {"buffers",       1, 0, 0,                                    0,    0,    2,    0,  0},
        {"checkpoint",    0, 0, 0,                                    0,    0,    1,    1,  1},
        {"batch_norm",    0, 0, 0,                                    0,    0,    1,    0,  0, 1},
        {"tied_weight",   0, 0, 0,                                    100,  8,    1,    0,  0, 0, 1},
        {"tied_defaults", 0, 0, 0,                                    0,    0,    2,    0,  0, 0, 1},
    };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (run(&all[i])) g_fail = 1;
    if (run_unused_error()) g_fail = 1;
    if (run_parts()) g_fail = 1;
    return g_fail ? 1 : 0;
}
