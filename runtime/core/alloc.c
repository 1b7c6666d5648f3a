/* runtime/core/alloc.c - the caching allocator.
 *
 * Device memory is rounded up to a size class (four classes per power of two,
 * so at most 25% slack) and, when a storage dies, kept on its class's free list
 * instead of being returned to the backend. A steady-state forward therefore
 * reuses the same blocks and calls neither malloc nor the backend's alloc.
 * Storage objects themselves are recycled the same way.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

nnm__pool *nnm__pool_add(nnm_ctx *ctx, nnm_device dev) {
    for (uint32_t i = 0; i < ctx->n_pools; i++)
        if (nnm__device_eq(ctx->pools[i].device, dev)) return &ctx->pools[i];
    nnm__pool *p = realloc(ctx->pools, (ctx->n_pools + 1) * sizeof *p);
    if (!p) return NULL;
    ctx->pools = p;
    p = &ctx->pools[ctx->n_pools++];
    memset(p, 0, sizeof *p);
    p->device = dev;
    return p;
}

/* The pool of dev: the first one (the CPU's, in nearly every context) without
 * a loop or a call. */
static inline nnm__pool *pool_for(nnm_ctx *ctx, nnm_device dev) {
    if (NNM__LIKELY(ctx->n_pools && nnm__device_eq(ctx->pools[0].device, dev))) return &ctx->pools[0];
    return nnm__pool_add(ctx, dev);
}

nnm__storage *nnm__storage_obj(nnm_ctx *ctx) {
    nnm__storage *s = ctx->free_storages;
    if (s) {
        NNM__UNPOISON(s, sizeof *s);
        ctx->free_storages = s->next;
        return s;
    }
    return malloc(sizeof *s);
}

void nnm__storage_obj_recycle(nnm_ctx *ctx, nnm__storage *s) {
    s->next = ctx->free_storages;
    ctx->free_storages = s;
    nnm__poison_entry(s, sizeof *s, &s->next);
}

/* The meta device: a storage object that records its size and owns no memory. */
static nnm_status meta_storage(nnm_ctx *ctx, nnm_device dev, size_t bytes, nnm__storage **out) {
    nnm__storage *s = nnm__storage_obj(ctx);
    if (!s) return nnm__error(ctx, NNM_E_NOMEM, "out of memory (storage)");
    memset(s, 0, sizeof *s);
    s->bytes = bytes;
    s->device = dev;
    s->refs = 1;
    s->size_class = -1;
    s->ctx = ctx;
    nnm__ctx_retain(ctx);
    *out = s;
    return NNM_OK;
}

nnm_status nnm__storage_new(nnm_ctx *ctx, nnm_device dev, size_t bytes, nnm__storage **out) {
    *out = NULL;
    if (NNM__UNLIKELY(dev.type == NNM_DEVICE_META)) return meta_storage(ctx, dev, bytes, out);
    size_t rounded = bytes;
    int32_t cls = nnm__size_class(bytes, &rounded);
    nnm__pool *pool = NULL;
    if (cls >= 0) {
        pool = pool_for(ctx, dev);
        if (!pool) return nnm__error(ctx, NNM_E_NOMEM, "out of memory (allocator pool)");
        nnm__storage *s = nnm__pool_pop(ctx, pool, cls);
        if (s) {
            *out = s;
            return NNM_OK;
        }
    }
    nnm__backend *be;
    nnm_status st = nnm__backend_get(ctx, dev, &be);
    if (st) return st;
    nnm__storage *s = nnm__storage_obj(ctx);
    if (!s) return nnm__error(ctx, NNM_E_NOMEM, "out of memory (storage)");
    nnm__env env;
    nnm__env_init(&env, ctx, NULL, NNM__PHASE_BACKEND);
    void *data = NULL;
    const uint64_t seq = ctx->err_seq;
    st = be->vt->alloc(&env.pub, be->state, dev.id, rounded, &data);
    if (st == NNM_E_NOMEM && ctx->stats.bytes_cached) {
        /* Give the cache back and try once more, as PyTorch's allocator does. */
        nnm_ctx_empty_cache(ctx);
        st = be->vt->alloc(&env.pub, be->state, dev.id, rounded, &data);
    }
    if (!st && !data && rounded) /* a hostile or broken backend: never hand NULL out as memory */
        st = nnm__error(ctx, NNM_E_PLUGIN,
                        "backend '%s' (%s): alloc of %zu bytes returned success but a NULL pointer",
                        be->vt->name, be->plugin ? be->plugin->path : "?", rounded);
    if (st) {
        nnm__storage_obj_recycle(ctx, s);
        if (st == NNM_E_NOMEM && ctx->err_seq != seq && ctx->errmsg[0]) /* keep the backend's reason */
            nnm__error(ctx, st, "could not allocate %zu bytes (%s)", rounded, ctx->errmsg);
        else if (!ctx->errmsg[0] || st == NNM_E_NOMEM)
            nnm__error(ctx, st, "could not allocate %zu bytes", rounded);
        return st;
    }
    ctx->stats.heap_allocs++;
    ctx->stats.bytes_in_use += rounded;
    nnm__note_peak(ctx);
    s->data = data;
    s->bytes = rounded;
    s->device = dev;
    s->refs = 1;
    s->size_class = cls;
    s->ctx = ctx;
    s->external = NULL;
    s->next = NULL;
    nnm__ctx_retain(ctx);
    *out = s;
    return NNM_OK;
}

static void storage_free_memory(nnm_ctx *ctx, nnm__storage *s) {
    nnm__unpoison_block(s);
    nnm__backend *be = &ctx->backends[s->device.type];
    if (be->vt && be->vt->free) be->vt->free(be->state, s->device.id, s->data);
    s->data = NULL;
}

void nnm__storage_release(nnm__storage *s) {
    if (s) nnm__storage_release_inline(s);
}

void nnm__storage_dead(nnm__storage *s) {
    nnm_ctx *ctx = s->ctx;
    if (s->device.type == NNM_DEVICE_META) {
        nnm__storage_obj_recycle(ctx, s);
    } else if (s->external) {
        nnm_dlpack_tensor *ext = s->external;
        s->external = NULL;
        if (ext->deleter) ext->deleter(ext);
        nnm__storage_obj_recycle(ctx, s);
    } else {
        ctx->stats.bytes_in_use -= s->bytes;
        nnm__pool *pool = s->size_class >= 0 ? pool_for(ctx, s->device) : NULL;
        if (pool) {
            nnm__pool_push(ctx, pool, s);
        } else {
            storage_free_memory(ctx, s);
            nnm__storage_obj_recycle(ctx, s);
        }
    }
    nnm__ctx_release(ctx);
}

NNM_API void nnm_ctx_empty_cache(nnm_ctx *ctx) {
    if (!ctx) return;
    for (uint32_t i = 0; i < ctx->n_pools; i++) {
        nnm__pool *p = &ctx->pools[i];
        for (int c = 0; c < NNM__NCLASSES; c++) {
            while (p->free[c]) {
                nnm__storage *s = p->free[c];
                p->free[c] = s->next;
                ctx->stats.bytes_cached -= s->bytes;
                storage_free_memory(ctx, s);
                nnm__storage_obj_recycle(ctx, s);
            }
        }
    }
}

void nnm__alloc_fini(nnm_ctx *ctx) {
    nnm_ctx_empty_cache(ctx);
    free(ctx->pools);
    ctx->pools = NULL;
    ctx->n_pools = 0;
    while (ctx->free_storages) {
        nnm__storage *s = ctx->free_storages;
        NNM__UNPOISON(s, sizeof *s);
        ctx->free_storages = s->next;
        free(s);
    }
}
