/* runtime/data/loader.c - the batching pipeline over a dataset: a seeded
 * shuffle per epoch, this rank's slice of it, batches (the last one partial
 * unless dropped) converted to f32 and normalised as they are gathered.
 *
 * The epoch's order is a pure function of (seed, epoch, N): every rank of a
 * distributed run computes the same permutation and takes its own strided
 * slice, as torch.utils.data.DistributedSampler(drop_last=False) does, and a
 * resumed run sees exactly the order an uninterrupted one would. The shuffle
 * is specified so other languages can reproduce it (bench/train_torch.py does):
 *
 *   x = seed + 0x9e3779b97f4a7c15 * (epoch + 1)          (mod 2^64)
 *   perm = [0, 1, ..., N-1]
 *   for i = N-1 down to 1:
 *       j = (splitmix64(&x) * (i + 1)) >> 64           (128-bit product)
 *       swap perm[i], perm[j]
 *
 * where splitmix64 adds 0x9e3779b97f4a7c15 to x and returns the usual mix of
 * it. Without NNM_LOADER_SHUFFLE, perm is the identity. When world_size does
 * not divide N, perm is padded with its own first elements up to a multiple
 * of world_size; rank r takes perm[r], perm[r + W], perm[r + 2W], ...
 *
 * Batches for a device (nnm_loader_set_device) are gathered into a staging
 * buffer - page-locked when the device's backend has host_alloc - and copied
 * on the backend's stream (upload_batch): the copy of batch i+1 is queued
 * behind the work on batch i instead of waiting for it. The CPU path is
 * untouched: batches are gathered straight into the tensors.
 */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "data_internal.h"

struct nnm_loader {
    nnm_ctx *ctx;                 /* retained */
    nnm_dataset *ds;              /* borrowed: outlives the loader */
    nnm_loader_options opt;
    int64_t *order;               /* this rank's samples of the epoch, n_rank of them */
    int64_t *perm;                /* the epoch's permutation, ds->n of them */
    int64_t n_rank;
    int64_t pos;                  /* the next sample of `order` */
    uint64_t epoch;
    float a, b;                   /* x -> a * x + b */
    int32_t ndim;                 /* per-sample input shape handed out */
    int64_t shape[NNM_MAX_DIMS];
    nnm_device device;            /* where batches are made (nnm_loader_set_device) */
};

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void build_order(nnm_loader *l) {
    const int64_t n = l->ds->n;
    for (int64_t i = 0; i < n; i++) l->perm[i] = i;
    if (l->opt.flags & NNM_LOADER_SHUFFLE) {
        uint64_t x = l->opt.seed + 0x9e3779b97f4a7c15ull * (l->epoch + 1);
        for (int64_t i = n - 1; i > 0; i--) {
            uint64_t j = (uint64_t)(((unsigned __int128)splitmix64(&x) * (uint64_t)(i + 1)) >> 64);
            int64_t t = l->perm[i];
            l->perm[i] = l->perm[j];
            l->perm[j] = t;
        }
    }
    const int64_t w = l->opt.world_size, r = l->opt.rank;
    for (int64_t k = 0; k < l->n_rank; k++) l->order[k] = l->perm[(r + k * w) % n];
    l->pos = 0;
}

NNM_API nnm_status nnm_loader_new(nnm_dataset *ds, const nnm_loader_options *opts,
                                  nnm_loader **out) {
    if (out) *out = NULL;
    if (!ds) return NNM_E_INVALID;
    nnm_ctx *ctx = ds->ctx;
    if (!out || !opts) return nnm__error(ctx, NNM_E_INVALID, "nnm_loader_new: NULL argument");
    if (opts->struct_size < sizeof *opts)
        return nnm__error(ctx, NNM_E_INVALID, "nnm_loader_new: struct_size %u is too small (%zu)",
                          (unsigned)opts->struct_size, sizeof *opts);
    nnm_loader_options o = *opts;
    if (!o.world_size) o.world_size = 1;
    if (o.batch_size < 1)
        return nnm__error(ctx, NNM_E_INVALID, "nnm_loader_new: batch size %lld (at least 1)",
                          (long long)o.batch_size);
    if (o.rank >= o.world_size)
        return nnm__error(ctx, NNM_E_INVALID, "nnm_loader_new: rank %u of a world of %u",
                          (unsigned)o.rank, (unsigned)o.world_size);
    if (o.std < 0 || !isfinite(o.std) || !isfinite(o.mean) || !isfinite(o.scale) || o.scale < 0)
        return nnm__error(ctx, NNM_E_INVALID,
                          "%.*s: normalisation scale %g, mean %g and std %g: each must be finite, "
                          "std and scale not negative",
                          NNM__SHOW_PATH, ds->source, o.scale, o.mean, o.std);
    nnm_loader *l = calloc(1, sizeof *l);
    if (!l) return nnm__error(ctx, NNM_E_NOMEM, "nnm_loader_new: out of memory");
    l->ctx = ctx;
    l->ds = ds;
    l->opt = o;
    l->device = (nnm_device){NNM_DEVICE_CPU, 0};
    if (o.ndim) {
        if (o.ndim < 0 || o.ndim > NNM_MAX_DIMS - 1) {
            free(l);
            return nnm__error(ctx, NNM_E_SHAPE, "nnm_loader_new: a sample shape of %d dimensions",
                              (int)o.ndim);
        }
        int64_t n = 1; /* -1 once a dimension is bad or the product passes the sample's */
        for (int32_t d = 0; d < o.ndim; d++) {
            if (o.shape[d] < 1 || n < 0 || __builtin_mul_overflow(n, o.shape[d], &n) ||
                n > ds->sample_numel)
                n = -1;
        }
        if (n != ds->sample_numel) {
            char want[128];
            nnm_tensor_desc d = {0};
            d.ndim = o.ndim;
            d.shape = (int64_t *)o.shape;
            nnm__shape_str(&d, want, sizeof want);
            d.ndim = ds->ndim;
            d.shape = ds->shape;
            char have[128];
            nnm__shape_str(&d, have, sizeof have);
            free(l);
            return nnm__error(ctx, NNM_E_SHAPE,
                              "%.*s: samples of shape %s (%lld values) cannot be viewed as %s",
                              NNM__SHOW_PATH, ds->source, have, (long long)ds->sample_numel, want);
        }
        l->ndim = o.ndim;
        memcpy(l->shape, o.shape, sizeof l->shape);
    } else {
        l->ndim = ds->ndim;
        memcpy(l->shape, ds->shape, sizeof l->shape);
    }
    double scale = o.scale ? o.scale : (ds->elem == NNM__ELEM_U8 ? 1.0 / 255.0 : 1.0);
    double std = o.std ? o.std : 1.0;
    l->a = (float)(scale / std);
    l->b = (float)(-o.mean / std);
    if (!isfinite(l->a) || !isfinite(l->b)) { /* a std of 1e-300, say */
        free(l);
        return nnm__error(ctx, NNM_E_INVALID,
                          "%.*s: normalisation scale %g, mean %g and std %g: (x * scale - mean) "
                          "/ std overflows f32",
                          NNM__SHOW_PATH, ds->source, scale, o.mean, std);
    }
    l->n_rank = (ds->n + o.world_size - 1) / o.world_size;
    l->perm = malloc((size_t)ds->n * sizeof *l->perm);
    l->order = malloc((size_t)l->n_rank * sizeof *l->order);
    nnm__ctx_retain(ctx);
    if (!l->perm || !l->order) {
        unsigned long long bytes = (unsigned long long)(ds->n + l->n_rank) * 8u; /* before l goes */
        nnm_loader_free(l);
        return nnm__error(ctx, NNM_E_NOMEM,
                          "%.*s: out of memory for the sample order of %lld samples (%llu bytes)",
                          NNM__SHOW_PATH, ds->source, (long long)ds->n, bytes);
    }
    build_order(l);
    *out = l;
    return NNM_OK;
}

NNM_API void nnm_loader_free(nnm_loader *l) {
    if (!l) return;
    free(l->perm);
    free(l->order);
    nnm__ctx_release(l->ctx);
    free(l);
}

NNM_API nnm_status nnm_loader_set_epoch(nnm_loader *l, uint64_t epoch) {
    if (!l) return NNM_E_INVALID;
    l->epoch = epoch;
    build_order(l);
    return NNM_OK;
}

NNM_API int64_t nnm_loader_sample_count(const nnm_loader *l) { return l ? l->n_rank : 0; }

NNM_API int64_t nnm_loader_batch_count(const nnm_loader *l) {
    if (!l) return 0;
    int64_t b = l->opt.batch_size;
    return (l->opt.flags & NNM_LOADER_DROP_LAST) ? l->n_rank / b : (l->n_rank + b - 1) / b;
}

NNM_API nnm_status nnm_loader_indices(const nnm_loader *l, int64_t *out, size_t cap) {
    if (!l || (!out && cap)) return NNM_E_INVALID;
    if (cap < (size_t)l->n_rank)
        return nnm__error(l->ctx, NNM_E_INVALID, "nnm_loader_indices: room for %zu of %lld",
                          cap, (long long)l->n_rank);
    memcpy(out, l->order, (size_t)l->n_rank * sizeof *out);
    return NNM_OK;
}

/* The next b samples, converted and normalised, into xd (f32) and, for a
 * dataset with targets, yd (f32 or i64). */
static void gather(const nnm_loader *l, int64_t b, float *xd, void *yd) {
    const nnm_dataset *ds = l->ds;
    const size_t numel = (size_t)ds->sample_numel, es = nnm__elem_size(ds->elem);
    const size_t tn = (size_t)ds->t_numel;
    for (int64_t k = 0; k < b; k++) {
        int64_t s = l->order[l->pos + k];
        nnm__elem_to_f32(ds->elem, ds->inputs + (size_t)s * numel * es, numel, l->a, l->b,
                         xd + (size_t)k * numel);
        if (!yd)
            continue;
        if (ds->t_float)
            memcpy((float *)yd + (size_t)k * tn, ds->tvalues + (size_t)s * tn, tn * sizeof(float));
        else
            memcpy((int64_t *)yd + (size_t)k * tn, ds->labels + (size_t)s * tn, tn * sizeof(int64_t));
    }
}

/* A batch for a device: gathered into one host staging buffer, page-locked
 * when the backend offers it (host_alloc), and copied into x and y (already
 * on the device) on the backend's stream. From pinned memory the copies are
 * asynchronous and host_free is stream-ordered, so the next batch is
 * gathered while the device still works on this one; from ordinary memory
 * they wait. */
static nnm_status upload_batch(nnm_loader *l, int64_t b, nnm_tensor *x, nnm_tensor *y) {
    nnm_ctx *ctx = l->ctx;
    nnm__backend *be;
    nnm_status st = nnm__backend_get(ctx, l->device, &be);
    if (st) return st;
    const size_t xbytes = (size_t)nnm_tensor_numel(x) * sizeof(float);
    const size_t xpad = (xbytes + 63) & ~(size_t)63;
    const size_t ybytes = y ? (size_t)nnm_tensor_numel(y) * nnm__dtype_size(y->desc.dtype) : 0;
    const int pinned = be->vt->struct_size >= offsetof(nnm_backend_vtable, host_free) + sizeof be->vt->host_free &&
                       be->vt->host_alloc && be->vt->host_free;
    nnm__env env;
    nnm__env_init(&env, ctx, NULL, NNM__PHASE_BACKEND);
    void *h = NULL;
    if (pinned) {
        const uint64_t seq = ctx->err_seq;
        st = be->vt->host_alloc(&env.pub, be->state, l->device.id, xpad + ybytes, &h);
        if (st) st = nnm__backend_check(ctx, be, "host_alloc", st, seq);
        if (!st && !h)
            st = nnm__error(ctx, NNM_E_PLUGIN, "backend '%s': host_alloc returned success but NULL",
                            be->vt->name);
        if (st) return st;
    } else if (!(h = malloc(xpad + ybytes ? xpad + ybytes : 1))) {
        return nnm__error(ctx, NNM_E_NOMEM, "nnm_loader_next: out of memory (%zu bytes)", xpad + ybytes);
    }
    gather(l, b, h, y ? (char *)h + xpad : NULL);
    const nnm_device cpu = {NNM_DEVICE_CPU, 0};
    const uint64_t seq = ctx->err_seq;
    st = be->vt->memcpy(&env.pub, be->state, x->desc.data, l->device, h, cpu, xbytes);
    if (!st && y) st = be->vt->memcpy(&env.pub, be->state, y->desc.data, l->device, (char *)h + xpad, cpu, ybytes);
    if (st) st = nnm__backend_check(ctx, be, "memcpy", st, seq);
    if (pinned) be->vt->host_free(be->state, l->device.id, h);
    else free(h);
    return st;
}

NNM_API nnm_status nnm_loader_set_device(nnm_loader *l, nnm_device device) {
    if (!l) return NNM_E_INVALID;
    if (device.type != NNM_DEVICE_CPU) {
        nnm__backend *be;
        nnm_status st = nnm__backend_get(l->ctx, device, &be);
        if (st) return st;
    } else if (device.id != 0) {
        return nnm__error(l->ctx, NNM_E_DEVICE, "nnm_loader_set_device: cpu:%d (the CPU is device 0)",
                          (int)device.id);
    }
    l->device = device;
    return NNM_OK;
}

NNM_API nnm_status nnm_loader_next(nnm_loader *l, nnm_tensor **inputs, nnm_tensor **targets) {
    if (inputs) *inputs = NULL;
    if (targets) *targets = NULL;
    if (!l) return NNM_E_INVALID;
    if (!inputs || !targets) return nnm__error(l->ctx, NNM_E_INVALID, "nnm_loader_next: NULL argument");
    const nnm_dataset *ds = l->ds;
    int64_t left = l->n_rank - l->pos, b = l->opt.batch_size;
    if (left <= 0 || (left < b && (l->opt.flags & NNM_LOADER_DROP_LAST))) return NNM_OK;
    if (b > left) b = left;
    int64_t xs[NNM_MAX_DIMS], ts[NNM_MAX_DIMS];
    xs[0] = ts[0] = b;
    memcpy(xs + 1, l->shape, (size_t)l->ndim * sizeof *xs);
    memcpy(ts + 1, ds->t_shape, (size_t)ds->t_ndim * sizeof *ts);
    const nnm_device dev = l->device;
    const nnm_dtype tdt = ds->t_float ? NNM_F32 : (nnm_dtype){NNM_DTYPE_INT, 64, 1};
    nnm_tensor *x = NULL, *y = NULL;
    nnm_status st = nnm__tensor_alloc(l->ctx, dev, NNM_F32, l->ndim + 1, xs, &x);
    if (!st && ds->has_targets) st = nnm__tensor_alloc(l->ctx, dev, tdt, ds->t_ndim + 1, ts, &y);
    if (!st)
        st = dev.type == NNM_DEVICE_CPU ? (gather(l, b, x->desc.data, y ? y->desc.data : NULL), NNM_OK)
                                        : upload_batch(l, b, x, y);
    if (st) {
        nnm_tensor_release(x);
        nnm_tensor_release(y);
        return st;
    }
    l->pos += b;
    *inputs = x;
    *targets = y;
    return NNM_OK;
}
