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
 * collectives in the same order), and the hook that readies the last
 * parameter waits for every bucket and divides it by the world size in place
 * before backward returns.
 *
 * find_unused_parameters: after the forward, the autograd graph is searched
 * from the outputs; the parameters it does not reach are ready at once
 * (contributing zeros), and a used-flag per parameter is summed with the
 * gradients so a parameter no rank used keeps .grad unset (as PyTorch does).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

typedef struct ddp_bucket {
    uint32_t first, count;        /* params[first .. first + count), bucket order */
    int64_t numel;                /* + n_params used flags in the last bucket */
    uint32_t pending;             /* parameters not ready yet */
    nnm_tensor *flat;
    nnm_comm_request *req;
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
    double last_start_s;          /* how long starting the last bucket took */
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
static nnm_status flat_copy(nnm_ddp *d, nnm_tensor *flat, int64_t off, nnm_tensor *src, int64_t numel,
                            int to_flat);

static void abandon(nnm_ddp *d);

static void ddp_destroy(nnm_ddp *d) {
    if (d->p) abandon(d);
    for (uint32_t i = 0; i < d->n_p; i++) {
        nnm_hook_remove(d->p[i].hook);
        nnm_hook_handle_free(d->p[i].hook);
        /* .grad may stay a view: it keeps the bucket's storage alive */
        if (d->p[i].t) (void)nnm__grad_set_view(d->p[i].t, NULL);
        nnm_tensor_release(d->p[i].view);
        nnm_tensor_release(d->p[i].kept);
        free(d->p[i].name);
    }
    for (uint32_t i = 0; i < d->n_b; i++) {
        if (d->b[i].req) (void)nnm_comm_wait(d->b[i].req); /* never leave MPI writing */
        d->b[i].req = NULL;
        nnm_tensor_release(d->b[i].flat);
    }
    free(d->p);
    free(d->b);
    nnm_comm_free(d->c);
    nnm_module_release(d->m);
    free(d);
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
            st = nnm__tensor_alloc(ctx, m->device, NNM_F32, 1, shape, &d->b[i].flat);
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

/* flat *= alpha in place. */
static nnm_status flat_scale(nnm_ddp *d, nnm_tensor *flat, double alpha) {
    nnm__backend *be;
    nnm_status st = nnm__backend_get(d->ctx, flat->desc.device, &be);
    if (st) return st;
    if (!be->vt->unary) return nnm__error(d->ctx, NNM_E_UNSUPPORTED, "ddp: the backend has no unary ops");
    nnm__env env;
    nnm__env_init(&env, d->ctx, NULL, NNM__PHASE_BACKEND);
    nnm_unary_args a = {sizeof a, NNM_UNARY_SCALE, alpha, &flat->desc, &flat->desc};
    return be->vt->unary(&env.pub, be->state, &a);
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
    if (st) return st;
    if (d->next_bucket == 0) d->t_first_start = now_s();
    st = nnm_comm_all_reduce_start(d->c, b->flat, &b->req);
    if (st) nnm__error(d->ctx, st, "ddp: all-reduce of bucket %u: %s", bi, d->ctx->errmsg);
    return st;
}

/* Waits for every bucket and averages it in place: the .grads are its views. */
static nnm_status finalize(nnm_ddp *d) {
    double t_end = now_s(), waited = 0.0;
    nnm_status st = NNM_OK;
    double inv = 1.0 / (double)nnm_comm_world_size(d->c);
    uint64_t bytes = 0;
    for (uint32_t i = 0; i < d->n_b; i++) {
        ddp_bucket *b = &d->b[i];
        bytes += (uint64_t)b->numel * sizeof(float);
        if (!b->req) continue;
        double w0 = now_s();
        nnm_status s2 = nnm_comm_wait(b->req);
        t_end = now_s();
        waited += t_end - w0;
        b->req = NULL;
        if (s2 && !st) {
            st = s2;
            nnm__error(d->ctx, st, "ddp: all-reduce of bucket %u: %s", i, d->ctx->errmsg);
        }
        /* the flags of find_unused are sums: scale only the gradients */
        if (!st && inv != 1.0) {
            nnm_tensor *g = b->flat;
            nnm_tensor *part = NULL;
            int64_t n = b->numel - (i == d->n_b - 1 && (d->opts.flags & NNM_DDP_FIND_UNUSED_PARAMETERS) ? d->n_p : 0);
            if (n != b->numel) {
                if ((st = nnm__tensor_view(b->flat, 1, &n, NULL, &part))) continue;
                g = part;
            }
            st = flat_scale(d, g, inv);
            nnm_tensor_release(part);
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
    /* exposed: what backward spent on communication once its last gradient
     * was ready (starting the last bucket, then waiting) */
    d->stats.exposed_s = d->last_start_s + waited;
    return st;
}

/* Waits for the buckets in flight of a backward that will not finish them,
 * and gives the locally unused parameters their .grad back. */
static void abandon(nnm_ddp *d) {
    for (uint32_t i = 0; i < d->n_b; i++)
        if (d->b[i].req) {
            (void)nnm_comm_wait(d->b[i].req);
            d->b[i].req = NULL;
        }
    for (uint32_t i = 0; i < d->n_p; i++) {
        ddp_param *p = &d->p[i];
        if (!p->kept) continue;
        nnm_tensor_release(p->t->grad);
        p->t->grad = p->kept;
        p->kept = NULL;
    }
}

/* Starts every bucket that is ready, in order; the last one finalises. */
static nnm_status launch_ready(nnm_ddp *d) {
    nnm_status st = NNM_OK;
    while (!st && d->next_bucket < d->n_b && d->b[d->next_bucket].pending == 0) {
        double t0 = now_s();
        st = bucket_start(d, d->next_bucket);
        if (d->next_bucket == d->n_b - 1) d->last_start_s = now_s() - t0;
        d->next_bucket++;
    }
    if (!st && d->next_bucket == d->n_b) st = finalize(d);
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
    for (uint32_t i = 0; i < d->n_b; i++) d->b[i].pending = d->b[i].count;
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
