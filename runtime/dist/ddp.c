/* runtime/dist/ddp.c - distributed data parallel: PyTorch's Reducer.
 *
 * Wrapping broadcasts the module's parameters and buffers from rank 0. The
 * parameters that require grad are grouped into buckets in reverse
 * registration order (the order backward tends to produce their gradients);
 * a bucket closes once it holds its cap (first_bucket_bytes for the first, so
 * the first all-reduce starts early; bucket_bytes after). Each bucket is one
 * flat buffer and each parameter's .grad a view of its slice (PyTorch's
 * gradient_as_bucket_view): the engine writes a parameter's first gradient
 * into the view (nnm__grad_set_view) and adds later ones in place, so
 * nothing is copied in or out. Each parameter carries a post-accumulate-grad
 * hook (once per backward): when the last parameter of a bucket is ready, the
 * bucket's all-reduce starts asynchronously, in place, while backward goes
 * on. Buckets start strictly in order (every rank must start the same
 * collectives in the same order); each piece is divided by the world size
 * just before its all-reduce starts (as PyTorch's reducer divides a
 * gradient before the sum), and once the last one started, a callback at
 * the end of the backward waits for every bucket before backward returns.
 *
 * Gradients in blocks: a large 2-D parameter's gradient is computed in row
 * blocks of about 1 MiB (nnm__grad_block_rows; a linear layer's backward
 * does so whether DDP watches or not), and each bucket is all-reduced in
 * pieces: those blocks, then the runs of elements between them, laid out by
 * the parameters' shapes alone, so every rank starts the same collectives in
 * the same order. The layer's backward hands each block over once written
 * (nnm__grad_set_parts): when its bucket is the next to start and the block
 * is its next piece, the block's all-reduce starts at once, while the next
 * block is computed. So a large gradient that is ready last (the first
 * layer's) leaves only its last block to wait for; the rest of a bucket
 * starts once all its parameters are ready.
 *
 * find_unused_parameters: after the forward, the autograd graph is searched
 * from the outputs; the parameters it does not reach are ready at once
 * (contributing zeros), and a used-flag per parameter is summed with the
 * gradients so a parameter no rank used keeps .grad unset (as PyTorch does).
 */
#if defined(__linux__) && !defined(_DEFAULT_SOURCE)
#define _DEFAULT_SOURCE /* mmap's MAP_ANONYMOUS, madvise's MADV_HUGEPAGE */
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "internal.h"

typedef struct ddp_param {
    struct nnm_ddp *d;
    nnm_tensor *t;                /* borrowed from the module */
    nnm_tensor *view;             /* owned: t's slice of its bucket's flat buffer */
    nnm_tensor *kept;             /* owned: a locally unused parameter's .grad, kept
                                   * in case no rank used it; NULL otherwise */
    char *name;
    int64_t numel;
    int64_t offset;               /* in its bucket's flat buffer */
    uint32_t bucket;
    int ready;
    int used;                     /* reached from the outputs (find_unused) */
    nnm_hook_handle *hook;
} ddp_param;

/* One all-reduce of a bucket: elements [off, off + n). */
typedef struct ddp_piece {
    int64_t off, n;
    nnm_comm_request *req;        /* in flight, or NULL */
} ddp_piece;

typedef struct ddp_bucket {
    uint32_t first, count;        /* params[first .. first + count), bucket order */
    int64_t numel;                /* + n_params used flags in the last bucket */
    uint32_t pending;             /* parameters not ready yet */
    nnm_tensor *flat;
    ddp_piece *piece;             /* its all-reduces, in the order every rank starts
                                   * them: the blocks of its blocked parameters, in
                                   * bucket order, then the runs between those */
    uint32_t n_piece, n_block;    /* pieces; the first n_block are blocks */
    uint32_t next_piece;          /* the next one to start */
} ddp_bucket;

struct nnm_ddp {
    nnm_module *m;
    nnm_comm *c;
    nnm_ctx *ctx;
    nnm_ddp_options opts;
    ddp_param *p;                 /* in bucket order (reverse registration) */
    uint32_t n_p;
    ddp_bucket *b;
    uint32_t n_b;
    int sync;                     /* 0 inside no_sync */
    int armed;                    /* a synchronised forward awaits its backward */
    uint32_t n_ready;             /* parameters ready in this backward */
    uint32_t next_bucket;         /* the next bucket to start */
    double t_first_start;
    double t_last_ready;          /* when the last bucket's last parameter was ready */
    int end_queued;               /* backward_end waits for the end of the backward */
    int any_started;              /* a piece of this backward started */
    int early;                    /* blocks start as they are written (on_grad_part) */
    nnm_ddp_stats stats;
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- building -------------------------------------------------------------- */

typedef struct collect {
    nnm_ddp *d;
    nnm_status st;
    uint32_t n;
} collect;

static nnm_status count_param(void *user, const char *name, nnm_tensor *t) {
    (void)name;
    collect *c = user;
    if (t->flags & NNM__T_REQUIRES_GRAD) c->n++;
    return NNM_OK;
}

static nnm_status add_param(void *user, const char *name, nnm_tensor *t) {
    collect *c = user;
    if (!(t->flags & NNM__T_REQUIRES_GRAD)) return NNM_OK;
    nnm_ddp *d = c->d;
    /* Registration order in, bucket order (reversed) out. */
    ddp_param *p = &d->p[d->n_p - 1 - c->n++];
    size_t len = strlen(name) + 1;
    if (!(p->name = malloc(len))) return nnm__error(d->ctx, NNM_E_NOMEM, "out of memory (ddp)");
    memcpy(p->name, name, len);
    p->d = d;
    p->t = t;
    p->numel = nnm_tensor_numel(t);
    if (t->desc.dtype.code != NNM_DTYPE_FLOAT || t->desc.dtype.bits != 32)
        return nnm__error(d->ctx, NNM_E_DTYPE, "ddp: parameter %s is not f32", name);
    if (!nnm__device_eq(t->desc.device, d->m->device) ||
        t->desc.device.type != nnm_comm_device(d->c).type)
        return nnm__error(d->ctx, NNM_E_DEVICE,
                          "ddp: parameter %s is not on the communicator's device type", name);
    return NNM_OK;
}

static nnm_status broadcast_one(void *user, const char *name, nnm_tensor *t) {
    nnm_ddp *d = user;
    nnm_status st = nnm_comm_broadcast(d->c, t, 0);
    if (st) nnm__error(d->ctx, st, "ddp: broadcast of %s from rank 0: %s", name, d->ctx->errmsg);
    return st;
}

/* Broadcasts every buffer from rank 0: all start, then all are waited on. */
typedef struct bufs {
    nnm_ddp *d;
    nnm_comm_request **req;
    uint32_t n, cap;
} bufs;

static nnm_status start_buffer(void *user, const char *name, nnm_tensor *t) {
    (void)name;
    bufs *b = user;
    if (b->n == b->cap) {
        uint32_t cap = b->cap ? 2 * b->cap : 16;
        nnm_comm_request **r = realloc(b->req, cap * sizeof *r);
        if (!r) return nnm__error(b->d->ctx, NNM_E_NOMEM, "out of memory (ddp)");
        b->req = r;
        b->cap = cap;
    }
    nnm_status st = nnm_comm_broadcast_start(b->d->c, t, 0, &b->req[b->n]);
    if (!st) b->n++;
    return st;
}

static nnm_status broadcast_buffers(nnm_ddp *d) {
    bufs b = {d, NULL, 0, 0};
    nnm_status st = nnm_module_named_buffers(d->m, start_buffer, &b);
    for (uint32_t i = 0; i < b.n; i++) {
        nnm_status s2 = nnm_comm_wait(b.req[i]);
        if (!st) st = s2;
    }
    free(b.req);
    return st;
}

static nnm_status on_grad_ready(void *user, nnm_tensor *t);
static nnm_status on_grad_part(void *user, nnm_tensor *t, int64_t begin, int64_t end);
static void wait_pieces(nnm_ddp *d);
static nnm_status flat_copy(nnm_ddp *d, nnm_tensor *flat, int64_t off, nnm_tensor *src, int64_t numel,
                            int to_flat);

static void abandon(nnm_ddp *d);

static void ddp_destroy(nnm_ddp *d) {
    if (d->p) abandon(d);
    wait_pieces(d); /* never leave MPI writing */
    for (uint32_t i = 0; i < d->n_p; i++) {
        nnm_hook_remove(d->p[i].hook);
        nnm_hook_handle_free(d->p[i].hook);
        /* .grad may stay a view: it keeps the bucket's storage alive */
        if (d->p[i].t) {
            (void)nnm__grad_set_view(d->p[i].t, NULL);
            (void)nnm__grad_set_parts(d->p[i].t, NULL, NULL);
        }
        nnm_tensor_release(d->p[i].view);
        nnm_tensor_release(d->p[i].kept);
        free(d->p[i].name);
    }
    for (uint32_t i = 0; i < d->n_b; i++) {
        nnm_tensor_release(d->b[i].flat);
        free(d->b[i].piece);
    }
    free(d->p);
    free(d->b);
    nnm_comm_free(d->c);
    nnm_module_release(d->m);
    free(d);
}

/* A bucket on the CPU of at least 2 MiB gets memory of its own, aligned to
 * 2 MiB and advised to be backed by transparent huge pages (MADV_HUGEPAGE;
 * Linux, where THP is "madvise" or "always"), wrapped as a tensor through
 * DLPack (munmap when the last view goes). Open MPI's shared-memory
 * transport reads a large message straight from the peer's buffer with
 * process_vm_readv (CMA), which pins every page of it: 2 MiB pages make
 * that, and the copies' TLB misses, cheap. Measured on the development
 * machine, 22 MB all-reduced in place on 2 ranks: 5.4-6.7 ms of CPU per rank
 * on 4 KiB pages, 2.6-2.9 ms on huge pages (docs/distributed.md). 0 when the
 * memory could not be had this way (the caller allocates as usual);
 * NNM_DDP_HUGE_PAGES=0 turns it off. */
#define HUGE_BYTES ((size_t)2 << 20)
#if defined(__linux__) && defined(MADV_HUGEPAGE) && defined(MAP_ANONYMOUS)
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

static int huge_flat(nnm_ddp *d, int64_t numel, nnm_tensor **out) {
    const char *e = getenv("NNM_DDP_HUGE_PAGES");
    size_t bytes = (size_t)numel * sizeof(float);
    if ((e && strcmp(e, "0") == 0) || bytes < HUGE_BYTES || d->m->device.type != NNM_DEVICE_CPU) return 0;
    size_t len = (bytes + HUGE_BYTES - 1) / HUGE_BYTES * HUGE_BYTES;
    char *p = mmap(NULL, len + HUGE_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return 0;
    char *a = (char *)(((uintptr_t)p + HUGE_BYTES - 1) & ~(uintptr_t)(HUGE_BYTES - 1));
    if (a > p) munmap(p, (size_t)(a - p));
    if (a + len < p + len + HUGE_BYTES) munmap(a + len, (size_t)(p + len + HUGE_BYTES - (a + len)));
    (void)madvise(a, len, MADV_HUGEPAGE); /* advice: where THP is off, plain pages */
    huge_buf *h = calloc(1, sizeof *h);
    if (!h) {
        munmap(a, len);
        return 0;
    }
    h->base = a;
    h->len = len;
    h->shape[0] = numel;
    h->strides[0] = 1;
    h->dl.version = (nnm_dlpack_version){1, 0};
    h->dl.manager_ctx = h;
    h->dl.deleter = huge_free;
    h->dl.dl_tensor = (nnm_tensor_desc){a, d->m->device, 1, NNM_F32, h->shape, h->strides, 0};
    /* the deleter runs if this fails */
    return nnm_tensor_from_dlpack(d->ctx, &h->dl, out) == NNM_OK;
}
#else
static int huge_flat(nnm_ddp *d, int64_t numel, nnm_tensor **out) {
    (void)d, (void)numel, (void)out;
    return 0;
}
#endif

/* Rows per block of parameter p's gradient (nnm__grad_block_rows) when its
 * blocks are pieces of their own, or 0: in the last bucket only (the one
 * ready last, with nothing left of the backward to overlap: an earlier
 * bucket overlaps the layers after it whole, and every extra collective
 * costs a scratch buffer and a handshake), and on CPU communicators only (on
 * a GPU every start waits for the device: docs/distributed.md, "NCCL and
 * streams"). */
static int64_t block_rows(const nnm_ddp *d, const ddp_param *p) {
    if (nnm_comm_device(d->c).type != NNM_DEVICE_CPU || p->t->desc.ndim != 2 || p->bucket != d->n_b - 1)
        return 0;
    return nnm__grad_block_rows(p->t->shape[0], p->t->shape[1]);
}

/* Bucket bi's pieces: each blocked parameter's blocks (the rows its layer's
 * backward writes at a time), then the runs of elements between them. A
 * function of the parameters' shapes alone: every rank lays out the same
 * collectives in the same order, whether or not its blocks start early. */
static nnm_status layout_pieces(nnm_ddp *d, uint32_t bi) {
    ddp_bucket *b = &d->b[bi];
    uint32_t n = 1;
    for (uint32_t k = 0; k < b->count; k++) {
        ddp_param *p = &d->p[b->first + k];
        int64_t r = block_rows(d, p);
        if (r) n += (uint32_t)((p->t->shape[0] + r - 1) / r) + 1;
    }
    if (!(b->piece = calloc(n, sizeof *b->piece))) return nnm__error(d->ctx, NNM_E_NOMEM, "out of memory (ddp)");
    for (uint32_t k = 0; k < b->count; k++) {
        ddp_param *p = &d->p[b->first + k];
        int64_t r = block_rows(d, p), cols = p->t->desc.ndim == 2 ? p->t->shape[1] : 0;
        for (int64_t r0 = 0; r && r0 < p->t->shape[0]; r0 += r) {
            int64_t r1 = r0 + r < p->t->shape[0] ? r0 + r : p->t->shape[0];
            b->piece[b->n_piece++] = (ddp_piece){p->offset + r0 * cols, (r1 - r0) * cols, NULL};
        }
    }
    b->n_block = b->n_piece;
    int64_t run = 0;
    for (uint32_t k = 0; k < b->count; k++) {
        ddp_param *p = &d->p[b->first + k];
        if (!block_rows(d, p)) continue;
        if (p->offset > run) b->piece[b->n_piece++] = (ddp_piece){run, p->offset - run, NULL};
        run = p->offset + p->numel;
    }
    if (b->numel > run) b->piece[b->n_piece++] = (ddp_piece){run, b->numel - run, NULL};
    return NNM_OK;
}

/* Blocks start as they are written unless NNM_DDP_EARLY_PARTS=0 (they then
 * start with their bucket: for measuring what starting early gives). */
static int early_parts(void) {
    const char *e = getenv("NNM_DDP_EARLY_PARTS");
    return !(e && strcmp(e, "0") == 0);
}

NNM_API nnm_status nnm_ddp_new(nnm_module *m, nnm_comm *c, const nnm_ddp_options *opts,
                               nnm_ddp **out) {
    if (out) *out = NULL;
    if (!nnm__module_live(m)) return NNM_E_INVALID;
    nnm_ctx *ctx = m->ctx;
    if (!c || !out) return nnm__error(ctx, NNM_E_INVALID, "nnm_ddp_new: %s is NULL", !c ? "comm" : "out");
    if (nnm__comm_ctx(c) != ctx)
        return nnm__error(ctx, NNM_E_INVALID, "nnm_ddp_new: module and comm belong to different contexts");
    if (opts && opts->struct_size < sizeof *opts)
        return nnm__error(ctx, NNM_E_INVALID, "nnm_ddp_new: options struct_size %u is too small",
                          opts->struct_size);
    nnm_ddp *d = calloc(1, sizeof *d);
    if (!d) return nnm__error(ctx, NNM_E_NOMEM, "out of memory (ddp)");
    d->m = m;
    d->c = c;
    d->ctx = ctx;
    d->sync = 1;
    nnm_module_retain(m);
    nnm__comm_retain(c);
    d->opts = opts ? *opts : (nnm_ddp_options){sizeof(nnm_ddp_options), 0, 0, 0};
    d->opts.struct_size = sizeof d->opts;
    if (!d->opts.bucket_bytes) d->opts.bucket_bytes = NNM_DDP_DEFAULT_BUCKET_BYTES;
    if (!d->opts.first_bucket_bytes) d->opts.first_bucket_bytes = NNM_DDP_DEFAULT_FIRST_BUCKET_BYTES;

    collect col = {d, NNM_OK, 0};
    nnm_status st = nnm_module_named_parameters(m, count_param, &col);
    if (!st && col.n == 0) st = nnm__error(ctx, NNM_E_INVALID, "ddp: the module has no parameter that requires grad");
    if (!st && !(d->p = calloc(col.n, sizeof *d->p))) st = nnm__error(ctx, NNM_E_NOMEM, "out of memory (ddp)");
    if (!st) {
        d->n_p = col.n;
        col.n = 0;
        st = nnm_module_named_parameters(m, add_param, &col);
    }
    /* Buckets: close one once it holds at least its cap. */
    if (!st && !(d->b = calloc(d->n_p, sizeof *d->b))) st = nnm__error(ctx, NNM_E_NOMEM, "out of memory (ddp)");
    if (!st) {
        uint64_t bytes = 0;
        for (uint32_t i = 0; i < d->n_p; i++) {
            ddp_bucket *b = &d->b[d->n_b];
            if (b->count == 0) b->first = i;
            d->p[i].bucket = d->n_b;
            d->p[i].offset = b->numel;
            b->numel += d->p[i].numel;
            b->count++;
            bytes += (uint64_t)d->p[i].numel * sizeof(float);
            uint64_t cap = d->n_b == 0 ? d->opts.first_bucket_bytes : d->opts.bucket_bytes;
            if (bytes >= cap || i == d->n_p - 1) {
                d->n_b++;
                bytes = 0;
            }
        }
        if (d->opts.flags & NNM_DDP_FIND_UNUSED_PARAMETERS) d->b[d->n_b - 1].numel += d->n_p;
        for (uint32_t i = 0; !st && i < d->n_b; i++) {
            int64_t shape[1] = {d->b[i].numel};
            if (!huge_flat(d, d->b[i].numel, &d->b[i].flat))
                st = nnm__tensor_alloc(ctx, m->device, NNM_F32, 1, shape, &d->b[i].flat);
            if (!st) st = layout_pieces(d, i);
        }
        /* Gradients live in the buckets (PyTorch's gradient_as_bucket_view):
         * each parameter's first gradient of a backward is copied into its
         * slice, which becomes .grad; later ones add into it in place. */
        for (uint32_t i = 0; !st && i < d->n_p; i++) {
            ddp_param *p = &d->p[i];
            nnm_tensor *flat = d->b[p->bucket].flat;
            if ((st = nnm__tensor_view(flat, p->t->desc.ndim, p->t->shape, NULL, &p->view))) break;
            p->view->desc.byte_offset += (uint64_t)p->offset * sizeof(float);
            st = nnm__grad_set_view(p->t, p->view);
        }
    }
    /* Every rank starts from rank 0's weights and buffers. */
    if (!st) st = nnm_module_named_parameters(m, broadcast_one, d);
    if (!st) st = nnm_module_named_buffers(m, broadcast_one, d);
    for (uint32_t i = 0; !st && i < d->n_p; i++)
        st = nnm_tensor_register_post_accumulate_grad_hook(d->p[i].t, on_grad_ready, &d->p[i], &d->p[i].hook);
    /* A blocked gradient (a large linear weight's, written by its gemm in
     * row blocks) is handed over block by block: each block's all-reduce
     * starts as soon as it is written, when its bucket is the next to start
     * and the block is its next piece. */
    d->early = early_parts();
    for (uint32_t i = 0; !st && d->early && i < d->n_p; i++)
        if (block_rows(d, &d->p[i])) st = nnm__grad_set_parts(d->p[i].t, on_grad_part, &d->p[i]);
    /* A .grad from before the wrapping moves into its bucket. */
    for (uint32_t i = 0; !st && i < d->n_p; i++) {
        ddp_param *p = &d->p[i];
        if (!p->t->grad || p->t->grad == p->view) continue;
        if (!(st = flat_copy(d, d->b[p->bucket].flat, p->offset, p->t->grad, p->numel, 1))) {
            nnm_tensor_release(p->t->grad);
            nnm_tensor_retain(p->view);
            p->t->grad = p->view;
        }
    }
    if (st) {
        ddp_destroy(d);
        return st;
    }
    d->stats.struct_size = sizeof d->stats;
    d->stats.n_buckets = d->n_b;
    *out = d;
    return NNM_OK;
}

NNM_API void nnm_ddp_free(nnm_ddp *d) {
    if (d) ddp_destroy(d);
}

NNM_API nnm_module *nnm_ddp_module(const nnm_ddp *d) { return d ? d->m : NULL; }

NNM_API int nnm_ddp_set_sync(nnm_ddp *d, int sync) {
    if (!d) return -1;
    int prev = d->sync;
    d->sync = sync ? 1 : 0;
    return prev;
}

NNM_API nnm_status nnm_ddp_stats_get(const nnm_ddp *d, nnm_ddp_stats *out) {
    if (!d || !out || out->struct_size < sizeof *out) return NNM_E_INVALID;
    *out = d->stats;
    return NNM_OK;
}

/* ---- the reducer ------------------------------------------------------------- */

static ddp_param *param_of(nnm_ddp *d, const nnm_tensor *t) {
    for (uint32_t i = 0; i < d->n_p; i++)
        if (d->p[i].t == t) return &d->p[i];
    return NULL;
}

/* flat[off .. off + n) *= alpha in place. */
static nnm_status flat_scale(nnm_ddp *d, nnm_tensor *flat, int64_t off, int64_t n, double alpha) {
    if (n <= 0) return NNM_OK;
    nnm__backend *be;
    nnm_status st = nnm__backend_get(d->ctx, flat->desc.device, &be);
    if (st) return st;
    if (!be->vt->unary) return nnm__error(d->ctx, NNM_E_UNSUPPORTED, "ddp: the backend has no unary ops");
    nnm__env env;
    nnm__env_init(&env, d->ctx, NULL, NNM__PHASE_BACKEND);
    nnm_tensor_desc v = flat->desc;
    int64_t shape[1] = {n}, strides[1] = {1};
    v.byte_offset += (uint64_t)off * sizeof(float);
    v.ndim = 1;
    v.shape = shape;
    v.strides = strides;
    nnm_unary_args a = {sizeof a, NNM_UNARY_SCALE, alpha, &v, &v};
    return be->vt->unary(&env.pub, be->state, &a);
}

/* Starts bucket bi's next piece: divides its gradients by the world size
 * (as PyTorch's reducer does before the all-reduce: each rank contributes
 * grad / N; a block just written is still in cache, and nothing is left to
 * average once the sums are in), then starts its all-reduce, in place. */
static nnm_status piece_start(nnm_ddp *d, uint32_t bi) {
    ddp_bucket *b = &d->b[bi];
    ddp_piece *pc = &b->piece[b->next_piece];
    nnm_tensor *v = b->flat;
    nnm_status st = NNM_OK;
    int32_t world = nnm_comm_world_size(d->c);
    /* the flags of find_unused ride at the end of the last bucket: sums, not averaged */
    int64_t grads = b->numel - (bi == d->n_b - 1 && (d->opts.flags & NNM_DDP_FIND_UNUSED_PARAMETERS) ? d->n_p : 0);
    int64_t end = pc->off + pc->n < grads ? pc->off + pc->n : grads;
    if (world > 1 && end > pc->off && (st = flat_scale(d, b->flat, pc->off, end - pc->off, 1.0 / (double)world)))
        return st;
    if (pc->off != 0 || pc->n != b->numel) { /* a view of the piece; the request keeps it */
        if ((st = nnm__tensor_view(b->flat, 1, &pc->n, NULL, &v))) return st;
        v->desc.byte_offset += (uint64_t)pc->off * sizeof(float);
    }
    if (!d->any_started) {
        d->any_started = 1;
        d->t_first_start = now_s();
    }
    st = nnm_comm_all_reduce_start(d->c, v, &pc->req);
    if (v != b->flat) nnm_tensor_release(v);
    if (st) return nnm__error(d->ctx, st, "ddp: all-reduce of bucket %u: %s", bi, d->ctx->errmsg);
    b->next_piece++;
    return NNM_OK;
}

/* Waits for every piece in flight (a backward given up, the wrapper freed). */
static void wait_pieces(nnm_ddp *d) {
    for (uint32_t i = 0; i < d->n_b; i++)
        for (uint32_t k = 0; k < d->b[i].n_piece; k++)
            if (d->b[i].piece[k].req) {
                (void)nnm_comm_wait(d->b[i].piece[k].req);
                d->b[i].piece[k].req = NULL;
            }
}

/* Copies src (numel floats, same device) into dst at element offset off,
 * or zeros there when src is NULL. */
static nnm_status flat_copy(nnm_ddp *d, nnm_tensor *flat, int64_t off, nnm_tensor *src, int64_t numel,
                            int to_flat) {
    nnm__backend *be;
    nnm_status st = nnm__backend_get(d->ctx, flat->desc.device, &be);
    if (st) return st;
    float *f = (float *)((char *)flat->desc.data + flat->desc.byte_offset) + off;
    size_t bytes = (size_t)numel * sizeof(float);
    nnm__env env;
    nnm__env_init(&env, d->ctx, NULL, NNM__PHASE_BACKEND);
    if (!src) {
        nnm_tensor_desc view = flat->desc;
        int64_t shape[1] = {numel}, strides[1] = {1};
        view.data = f;
        view.byte_offset = 0;
        view.ndim = 1;
        view.shape = shape;
        view.strides = strides;
        return be->vt->fill ? be->vt->fill(&env.pub, be->state, &view, 0.0)
                            : nnm__error(d->ctx, NNM_E_UNSUPPORTED, "ddp: the backend cannot fill");
    }
    if (!nnm__tensor_is_contiguous(src))
        return nnm__error(d->ctx, NNM_E_STATE, "ddp: a .grad is not contiguous");
    void *g = (char *)src->desc.data + src->desc.byte_offset;
    return to_flat ? be->vt->memcpy(&env.pub, be->state, f, flat->desc.device, g, src->desc.device, bytes)
                   : be->vt->memcpy(&env.pub, be->state, g, src->desc.device, f, flat->desc.device, bytes);
}

/* Brings every gradient of bucket bi into its slice (most already live
 * there) and starts the bucket's all-reduce. */
static nnm_status bucket_start(nnm_ddp *d, uint32_t bi) {
    ddp_bucket *b = &d->b[bi];
    nnm_status st = NNM_OK;
    for (uint32_t k = 0; !st && k < b->count; k++) {
        ddp_param *p = &d->p[b->first + k];
        nnm_tensor *g = p->t->grad;
        nnm_tensor_release(p->kept);
        p->kept = NULL;
        if (g == p->view) {
            /* a locally unused parameter keeps its .grad if no rank used it */
            if (!p->used) st = nnm__op_unary(d->ctx, NNM_UNARY_COPY, g, 0, &p->kept);
            continue;
        }
        /* no gradient: zeros; one that is not the view (set by the user, or
         * not contiguous): copied in, and the view becomes .grad */
        if ((st = flat_copy(d, b->flat, p->offset, g, p->numel, 1)) || !g) continue;
        if (p->used) {
            nnm_tensor_release(g);
            nnm_tensor_retain(p->view);
            p->t->grad = p->view;
        } else {
            nnm_tensor_retain(g);
            p->kept = g;
        }
    }
    if (!st && bi == d->n_b - 1 && (d->opts.flags & NNM_DDP_FIND_UNUSED_PARAMETERS)) {
        /* the used flags ride in the last bucket; set on the host (CPU) */
        if (b->flat->desc.device.type != NNM_DEVICE_CPU)
            return nnm__error(d->ctx, NNM_E_UNSUPPORTED, "ddp: find_unused_parameters needs CPU buffers");
        float *u = (float *)b->flat->desc.data + (b->numel - d->n_p);
        for (uint32_t i = 0; i < d->n_p; i++) u[i] = d->p[i].used ? 1.0f : 0.0f;
    }
    /* the pieces that did not start early, in order */
    while (!st && b->next_piece < b->n_piece) st = piece_start(d, bi);
    return st;
}

/* Elements [begin, end) of a parameter's gradient are final (its layer's
 * backward writes it in parts): when its bucket is the next to start, their
 * all-reduce starts now, while the rest is computed. Every rank hands over
 * the same parts in the same order, so the collectives match. */
static nnm_status on_grad_part(void *user, nnm_tensor *t, int64_t begin, int64_t end) {
    ddp_param *p = user;
    nnm_ddp *d = p->d;
    ddp_bucket *b = &d->b[p->bucket];
    (void)t;
    const ddp_piece *pc = b->next_piece < b->n_block ? &b->piece[b->next_piece] : NULL;
    if (!d->armed || p->ready || p->bucket != d->next_bucket || !pc || pc->off != p->offset + begin ||
        pc->n != end - begin)
        return NNM_OK; /* it starts with its bucket */
    nnm_status st = piece_start(d, p->bucket);
    if (st) d->armed = 0; /* a failed step: the next forward starts afresh */
    return st;
}

/* Waits for every piece of every bucket (averaged: each rank summed its
 * gradients over the world size); the .grads are the buckets' views. */
static nnm_status finalize(nnm_ddp *d) {
    double t_end = now_s();
    nnm_status st = NNM_OK;
    uint64_t bytes = 0;
    for (uint32_t i = 0; i < d->n_b; i++) {
        ddp_bucket *b = &d->b[i];
        bytes += (uint64_t)b->numel * sizeof(float);
        for (uint32_t k = 0; k < b->n_piece; k++) {
            ddp_piece *pc = &b->piece[k];
            if (!pc->req) continue;
            nnm_status s2 = nnm_comm_wait(pc->req);
            t_end = now_s();
            pc->req = NULL;
            if (s2 && !st) {
                st = s2;
                nnm__error(d->ctx, st, "ddp: all-reduce of bucket %u: %s", i, d->ctx->errmsg);
            }
        }
    }
    d->armed = 0;
    if (st) return st;
    const float *used = NULL;
    if (d->opts.flags & NNM_DDP_FIND_UNUSED_PARAMETERS) {
        ddp_bucket *last = &d->b[d->n_b - 1];
        used = (const float *)last->flat->desc.data + (last->numel - d->n_p);
    }
    for (uint32_t i = 0; i < d->n_p; i++) {
        ddp_param *p = &d->p[i];
        if (used && used[i] == 0.0f) { /* no rank used it: .grad is as it was */
            if (p->kept) {
                nnm_tensor_release(p->t->grad);
                p->t->grad = p->kept;
                p->kept = NULL;
            } else if (p->t->grad == p->view) {
                nnm_tensor_release(p->t->grad);
                p->t->grad = NULL;
            }
            continue;
        }
        nnm_tensor_release(p->kept);
        p->kept = NULL;
        if (p->t->grad != p->view) {
            nnm_tensor_release(p->t->grad);
            nnm_tensor_retain(p->view);
            p->t->grad = p->view;
        }
    }
    d->stats.bytes_reduced = bytes;
    d->stats.comm_s = t_end - d->t_first_start;
    /* exposed: the wall time from the last gradient ready (the last bucket
     * about to start) to the end of the waits: starting the last bucket,
     * what is left of the backward (here and there, the comm thread takes
     * its core), waiting */
    d->stats.exposed_s = t_end - d->t_last_ready;
    return st;
}

/* Waits for the buckets in flight of a backward that will not finish them,
 * and gives the locally unused parameters their .grad back. */
static void abandon(nnm_ddp *d) {
    wait_pieces(d);
    for (uint32_t i = 0; i < d->n_p; i++) {
        ddp_param *p = &d->p[i];
        if (!p->kept) continue;
        nnm_tensor_release(p->t->grad);
        p->t->grad = p->kept;
        p->kept = NULL;
    }
}

/* The end of the backward that readied every bucket: wait, average; or,
 * when the backward failed, give the buckets up. */
static nnm_status backward_end(void *user, nnm_status walk) {
    nnm_ddp *d = user;
    d->end_queued = 0;
    if (!d->armed) return NNM_OK;
    if (walk) { /* the backward reports its own error: keep its message */
        char msg[NNM__ERRMSG_CAP];
        memcpy(msg, d->ctx->errmsg, sizeof msg);
        abandon(d);
        memcpy(d->ctx->errmsg, msg, sizeof msg);
        d->armed = 0;
        return NNM_OK;
    }
    return finalize(d);
}

/* Starts every bucket that is ready, in order; once all are started, the
 * final wait is queued for the end of the backward (what is left of it,
 * an input's gradient, overlaps the last bucket), or made now outside one. */
static nnm_status launch_ready(nnm_ddp *d) {
    nnm_status st = NNM_OK;
    while (!st && d->next_bucket < d->n_b && d->b[d->next_bucket].pending == 0) {
        double t0 = now_s();
        st = bucket_start(d, d->next_bucket);
        if (d->next_bucket == d->n_b - 1) d->t_last_ready = t0;
        d->next_bucket++;
    }
    if (!st && d->next_bucket == d->n_b && !d->end_queued) {
        if (nnm__backward_on_end(d->ctx, backward_end, d) == NNM_OK) d->end_queued = 1;
        else st = finalize(d);
    }
    return st;
}

static nnm_status mark_ready(nnm_ddp *d, ddp_param *p) {
    if (p->ready)
        return nnm__error(d->ctx, NNM_E_STATE,
                          "ddp: parameter %s got a gradient twice in one backward (it is shared, "
                          "or the graph was traversed twice); DDP reduces each parameter once",
                          p->name);
    p->ready = 1;
    d->n_ready++;
    d->b[p->bucket].pending--;
    return launch_ready(d);
}

static nnm_status on_grad_ready(void *user, nnm_tensor *t) {
    ddp_param *p = user;
    nnm_ddp *d = p->d;
    (void)t;
    if (!d->armed) return NNM_OK; /* no_sync, eval, or a backward of another graph */
    nnm_status st = mark_ready(d, p);
    if (st) d->armed = 0; /* a failed step: the next forward starts afresh */
    return st;
}

/* Marks the parameters the outputs' graph reaches. */
static nnm_status find_used(nnm_ddp *d, nnm_tensor *const *out, uint32_t n_out) {
    nnm_ctx *ctx = d->ctx;
    uint32_t mark = ++ctx->mark_seq;
    size_t len = 0, cap = 64;
    nnm__node **stack = malloc(cap * sizeof *stack);
    if (!stack) return nnm__error(ctx, NNM_E_NOMEM, "out of memory (ddp)");
    for (uint32_t i = 0; i < n_out; i++) {
        nnm_tensor *o = out[i];
        if (!o) continue;
        if (!o->grad_fn) {
            ddp_param *p = param_of(d, o);
            if (p) p->used = 1;
            continue;
        }
        if (o->grad_fn->mark == mark) continue;
        o->grad_fn->mark = mark;
        stack[len++] = o->grad_fn;
        while (len) {
            nnm__node *n = stack[--len];
            for (uint32_t e = 0; e < n->n_in; e++) {
                if (n->next[e].leaf) {
                    ddp_param *p = param_of(d, n->next[e].leaf);
                    if (p) p->used = 1;
                }
                nnm__node *up = n->next[e].fn;
                if (!up || up->mark == mark) continue;
                up->mark = mark;
                if (len == cap) {
                    nnm__node **s = realloc(stack, 2 * cap * sizeof *s);
                    if (!s) {
                        free(stack);
                        return nnm__error(ctx, NNM_E_NOMEM, "out of memory (ddp)");
                    }
                    stack = s;
                    cap *= 2;
                }
                stack[len++] = up;
            }
        }
    }
    free(stack);
    return NNM_OK;
}

NNM_API nnm_status nnm_ddp_call(nnm_ddp *d, nnm_tensor *const *in, uint32_t n_in,
                                nnm_tensor **out, uint32_t n_out) {
    if (out)
        for (uint32_t i = 0; i < n_out; i++) out[i] = NULL;
    if (!d) return NNM_E_INVALID;
    if (d->armed && d->n_ready > 0) {
        /* The previous backward left buckets unreduced. */
        char names[512];
        size_t len = 0;
        names[0] = 0;
        for (uint32_t i = 0; i < d->n_p && len + 1 < sizeof names; i++) {
            if (d->p[i].ready) continue;
            int w = snprintf(names + len, sizeof names - len, "%s%s", len ? ", " : "", d->p[i].name);
            if (w > 0) len += (size_t)w;
        }
        abandon(d);
        d->armed = 0;
        return nnm__error(d->ctx, NNM_E_STATE,
                          "ddp: the previous backward did not produce gradients for: %s; every rank "
                          "must reduce every parameter (use NNM_DDP_FIND_UNUSED_PARAMETERS when "
                          "some parameters do not take part in the loss)",
                          names);
    }
    /* A forward without backward (find_unused may have started the buckets
     * of unused parameters): every rank did the same, finish them. */
    abandon(d);
    d->armed = 0;
    nnm_status st;
    if (!(d->opts.flags & NNM_DDP_NO_BROADCAST_BUFFERS) && (st = broadcast_buffers(d))) {
        nnm__error(d->ctx, st, "ddp: broadcasting buffers: %s", d->ctx->errmsg);
        return st;
    }
    if ((st = nnm_module_call(d->m, in, n_in, out, n_out))) return st;
    if (!d->sync || !nnm_grad_is_enabled()) return NNM_OK;
    /* Arm the reducer for this forward's backward. */
    d->n_ready = 0;
    d->next_bucket = 0;
    d->any_started = 0;
    for (uint32_t i = 0; i < d->n_b; i++) {
        d->b[i].pending = d->b[i].count;
        d->b[i].next_piece = 0;
    }
    int find = (d->opts.flags & NNM_DDP_FIND_UNUSED_PARAMETERS) != 0;
    for (uint32_t i = 0; i < d->n_p; i++) {
        d->p[i].ready = 0;
        d->p[i].used = !find;
    }
    d->armed = 1;
    if (find) {
        if ((st = find_used(d, out, n_out))) goto fail;
        for (uint32_t i = 0; i < d->n_p; i++) {
            if (d->p[i].used) continue;
            d->p[i].ready = 1; /* contributes zeros, its flag 0 */
            d->b[d->p[i].bucket].pending--;
        }
        /* Buckets of unused parameters alone start now; n_ready stays 0 so
         * a forward without backward is no error. */
        if ((st = launch_ready(d))) goto fail;
    }
    return NNM_OK;
fail:
    d->armed = 0;
    for (uint32_t i = 0; i < n_out; i++) {
        nnm_tensor_release(out[i]);
        out[i] = NULL;
    }
    return st;
}
