/* runtime/core/backend.c - finding and initialising the backend of a device. */
#include <stdio.h>
#include <string.h>

#include "internal.h"

nnm_status nnm__backend_push_threads(nnm_ctx *ctx, nnm__backend *be) {
    if (!ctx->num_threads || be->vt->struct_size < offsetof(nnm_backend_vtable, set_num_threads) +
                                                       sizeof be->vt->set_num_threads ||
        !be->vt->set_num_threads)
        return NNM_OK;
    nnm__env env;
    nnm__env_init(&env, ctx, NULL, NNM__PHASE_BACKEND);
    uint64_t seq = ctx->err_seq;
    nnm_status st = be->vt->set_num_threads(&env.pub, be->state, ctx->num_threads);
    if (st < 0 && ctx->err_seq == seq && strcmp(nnm_status_name(st), "unknown") != 0)
        return nnm__error(ctx, st, "backend '%s' refused %d threads", be->vt->name, (int)ctx->num_threads);
    /* a status outside the ABI is not passed on to the caller as it is */
    return nnm__backend_check(ctx, be, "set_num_threads", st, seq);
}

nnm_status nnm__backend_check(nnm_ctx *ctx, const nnm__backend *be, const char *slot, nnm_status st, uint64_t seq) {
    if (st == NNM_OK) return NNM_OK;
    const int known = st < 0 && strcmp(nnm_status_name(st), "unknown") != 0;
    char name[64];
    nnm__show(be->vt->name ? be->vt->name : "?", name, sizeof name);
    if (known && ctx->err_seq != seq) return st;
    if (known)
        return nnm__error(ctx, st, "backend '%s': %s failed (%s) without a message", name, slot,
                          nnm_status_name(st));
    if (ctx->err_seq != seq) {
        char msg[NNM__ERRMSG_CAP];
        memcpy(msg, ctx->errmsg, sizeof msg);
        return nnm__error(ctx, NNM_E_PLUGIN, "backend '%s': %s failed with status %d, which is not an nnm_status: %s",
                          name, slot, (int)st, msg);
    }
    return nnm__error(ctx, NNM_E_PLUGIN, "backend '%s': %s failed with status %d, which is not an nnm_status",
                      name, slot, (int)st);
}

/* Backends are found lazily, on the first tensor of their device, so that a
 * context on a machine without a GPU never touches the cuda plugin. (The
 * inline nnm__backend_get in ctx_internal.h answers a started backend
 * itself and calls this for everything else.) */
nnm_status nnm__backend_find(nnm_ctx *ctx, nnm_device dev, nnm__backend **out) {
    if (NNM__UNLIKELY(dev.type == NNM_DEVICE_META))
        return nnm__error(ctx, NNM_E_DEVICE,
                          "a tensor on the meta device has a shape and no data: nothing can compute "
                          "on it, copy it or read it (build the module on a real device)");
    if (NNM__UNLIKELY(dev.type <= 0 || dev.type >= NNM__DEVICE_TYPES || dev.id < 0))
        return nnm__error(ctx, NNM_E_DEVICE, "unknown device type %d id %d", (int)dev.type,
                          (int)dev.id);
    nnm__backend *be = &ctx->backends[dev.type];
    if (NNM__LIKELY(be->status == NNM_OK && be->tried)) {
        *out = be;
        return NNM_OK;
    }
    if (!be->tried) {
        be->tried = 1;
        char err[NNM__ERRMSG_CAP];
        err[0] = 0;
        nnm__plugin *owner = NULL;
        be->status = nnm__registry_find_backend(&ctx->reg, dev.type, &be->vt, &owner, err, sizeof err);
        if (be->status) {
            snprintf(be->error, sizeof be->error,
                     "no backend for device type '%s' (%d) is loaded (is its plugin installed? "
                     "see nnm_plugin_info)",
                     nnm__device_type_name(dev.type), (int)dev.type);
        } else {
            nnm__plugin_retain(owner);
            be->plugin = owner;
            nnm__env env;
            nnm__env_init(&env, ctx, NULL, NNM__PHASE_BACKEND);
            ctx->errmsg[0] = 0;
            be->status = be->vt->init(&env.pub, &be->state);
            if (be->status) {
                snprintf(be->error, sizeof be->error, "backend '%s' did not start: %s",
                         be->vt->name, ctx->errmsg[0] ? ctx->errmsg : nnm_status_str(be->status));
                nnm__plugin_release(owner);
                be->plugin = NULL;
                be->vt = NULL;
            } else if (nnm__backend_push_threads(ctx, be)) {
                /* not fatal: the backend runs with its own thread count */
                ctx->errmsg[0] = 0;
            }
        }
    }
    if (be->status) {
        /* Keep "no device" distinct so callers can skip GPU work cleanly. */
        nnm_status code = be->status == NNM_E_NO_DEVICE ? NNM_E_NO_DEVICE : NNM_E_DEVICE;
        return nnm__error(ctx, code, "%s", be->error);
    }
    *out = be;
    return NNM_OK;
}

void nnm__backends_shutdown(nnm_ctx *ctx) {
    for (int i = 0; i < NNM__DEVICE_TYPES; i++) {
        nnm__backend *be = &ctx->backends[i];
        if (be->tried && be->status == NNM_OK) {
            if (be->vt->shutdown) be->vt->shutdown(be->state);
            nnm__plugin_release(be->plugin);
        }
        memset(be, 0, sizeof *be);
    }
}

static int has_synchronize(const nnm__backend *be) {
    return be->tried && be->status == NNM_OK && be->vt &&
           be->vt->struct_size >= offsetof(nnm_backend_vtable, synchronize) + sizeof be->vt->synchronize &&
           be->vt->synchronize;
}

static nnm_status backend_sync(nnm_ctx *ctx, nnm__backend *be, int32_t device_id) {
    nnm__env env;
    nnm__env_init(&env, ctx, NULL, NNM__PHASE_BACKEND);
    const uint64_t seq = ctx->err_seq;
    nnm_status st = be->vt->synchronize(&env.pub, be->state, device_id);
    return st ? nnm__backend_check(ctx, be, "synchronize", st, seq) : NNM_OK;
}

nnm_status nnm__backend_sync(nnm_ctx *ctx, nnm_device dev) {
    if (dev.type <= 0 || dev.type >= NNM__DEVICE_TYPES || dev.type == NNM_DEVICE_CPU) return NNM_OK;
    nnm__backend *be = &ctx->backends[dev.type];
    return has_synchronize(be) ? backend_sync(ctx, be, dev.id) : NNM_OK;
}

/* nnm_ctx_synchronize: every backend this context initialised that has the
 * (1.5, optional) `synchronize` slot waits for its devices (-1: all it used).
 * Backends never touched are not started for this. */
NNM_API nnm_status nnm_ctx_synchronize(nnm_ctx *ctx) {
    if (!ctx) return NNM_E_INVALID;
    nnm_status first = NNM_OK;
    for (int t = 0; t < NNM__DEVICE_TYPES; t++) {
        nnm__backend *be = &ctx->backends[t];
        if (!has_synchronize(be)) continue;
        nnm_status st = backend_sync(ctx, be, -1);
        if (st && !first) first = st;
    }
    return first;
}

nnm_status nnm__backend_upload(nnm_ctx *ctx, nnm__backend *be, void *dst, nnm_device dev,
                               const void *src, size_t bytes) {
    const nnm_backend_vtable *vt = be->vt;
    const nnm_device cpu = {NNM_DEVICE_CPU, 0};
    nnm__env env;
    nnm__env_init(&env, ctx, NULL, NNM__PHASE_BACKEND);
    uint64_t seq = ctx->err_seq;
    void *h = NULL;
    if (bytes && vt->struct_size >= offsetof(nnm_backend_vtable, host_free) + sizeof vt->host_free &&
        vt->host_alloc && vt->host_free &&
        vt->host_alloc(&env.pub, be->state, dev.id, bytes, &h) == NNM_OK && h) {
        memcpy(h, src, bytes);
        seq = ctx->err_seq;
        nnm_status st = vt->memcpy(&env.pub, be->state, dst, dev, h, cpu, bytes);
        vt->host_free(be->state, dev.id, h);
        return st ? nnm__backend_check(ctx, be, "memcpy", st, seq) : NNM_OK;
    }
    if (ctx->err_seq != seq) ctx->errmsg[0] = 0; /* a refused host_alloc is not this call's failure */
    seq = ctx->err_seq;
    nnm_status st = vt->memcpy(&env.pub, be->state, dst, dev, src, cpu, bytes);
    return st ? nnm__backend_check(ctx, be, "memcpy", st, seq) : NNM_OK;
}
