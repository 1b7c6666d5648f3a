/* runtime/dist/comm.c - communicators: the runtime's face of the comm plugins
 * (ABI 1.3). Checks tensors (contiguous, on the communicator's device, dtype),
 * keeps them alive while a collective is in flight, and turns the plugin's
 * work handles into requests. Errors land on the context like every other. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct nnm_comm {
    nnm_ctx *ctx;
    nnm__plugin *plugin;          /* referenced: the vtable lives in it */
    const nnm_comm_vtable *vt;
    void *state;
    int32_t rank, world;
    nnm_device device;
    uint32_t refs;                /* the user's + one per request */
};

struct nnm_comm_request {
    nnm_comm *c;
    nnm_comm_work *work;
    nnm_tensor *keep[2];          /* retained until the wait */
};

static void comm_release(nnm_comm *c) {
    if (!c || --c->refs) return;
    c->vt->shutdown(c->state);
    nnm__plugin_release(c->plugin);
    nnm__ctx_release(c->ctx);
    free(c);
}

NNM_API nnm_status nnm_comm_new(nnm_ctx *ctx, const char *request, const nnm_comm_options *opts,
                                nnm_comm **out) {
    if (out) *out = NULL;
    if (!ctx) return NNM_E_INVALID;
    if (!out || !request) return nnm__error(ctx, NNM_E_INVALID, "nnm_comm_new: %s is NULL",
                                            !out ? "out" : "request");
    if (opts && opts->struct_size < sizeof *opts)
        return nnm__error(ctx, NNM_E_INVALID, "nnm_comm_new: options struct_size %u is too small",
                          opts->struct_size);
    double timeout = opts && opts->timeout_s > 0 ? opts->timeout_s : NNM_COMM_DEFAULT_TIMEOUT_S;
    const char *env_t = getenv("NNM_COMM_TIMEOUT");
    if (env_t && *env_t) {
        char *end;
        double v = strtod(env_t, &end);
        if (end == env_t || *end || !(v > 0))
            return nnm__error(ctx, NNM_E_INVALID,
                              "NNM_COMM_TIMEOUT='%.40s' is not a positive number of seconds", env_t);
        timeout = v;
    }
    const nnm_comm_vtable *vt;
    nnm__plugin *owner;
    char err[512];
    nnm_status st = nnm__registry_find_comm(&ctx->reg, request, &vt, &owner, err, sizeof err);
    if (st) return nnm__error(ctx, st, "%s", err);
    nnm_comm *c = calloc(1, sizeof *c);
    if (!c) return nnm__error(ctx, NNM_E_NOMEM, "out of memory (communicator)");
    nnm_comm_init_args args = {sizeof args, 0, timeout, -1, 0, 0, 0};
    nnm__env env;
    nnm__env_init(&env, ctx, NULL, NNM__PHASE_BACKEND);
    ctx->errmsg[0] = 0;
    st = vt->init(&env.pub, &args, &c->state);
    if (st) {
        free(c);
        if (!ctx->errmsg[0]) nnm__error(ctx, st, "comm '%s': init failed", vt->name);
        return st > 0 ? NNM_E_PLUGIN : st;
    }
    if (args.world_size < 1 || args.rank < 0 || args.rank >= args.world_size) {
        vt->shutdown(c->state);
        free(c);
        return nnm__error(ctx, NNM_E_PLUGIN, "comm '%s': init reported rank %d of %d", vt->name,
                          args.rank, args.world_size);
    }
    c->ctx = ctx;
    c->plugin = owner;
    c->vt = vt;
    c->rank = args.rank;
    c->world = args.world_size;
    c->device = (nnm_device){vt->device_type, vt->device_type == NNM_DEVICE_CPU ? 0 : args.device_id};
    c->refs = 1;
    nnm__plugin_retain(owner);
    nnm__ctx_retain(ctx);
    *out = c;
    return NNM_OK;
}

NNM_API void nnm_comm_free(nnm_comm *c) { comm_release(c); }

NNM_API int32_t nnm_comm_rank(const nnm_comm *c) { return c ? c->rank : -1; }
NNM_API int32_t nnm_comm_world_size(const nnm_comm *c) { return c ? c->world : 0; }
NNM_API nnm_device nnm_comm_device(const nnm_comm *c) {
    return c ? c->device : (nnm_device){NNM_DEVICE_CPU, 0};
}

/* Checks that t can be handed to the plugin as one buffer. */
static nnm_status check_tensor(nnm_comm *c, const char *what, nnm_tensor *t, int need_f32) {
    if (!t) return nnm__error(c->ctx, NNM_E_INVALID, "%s: tensor is NULL", what);
    if (t->ctx != c->ctx)
        return nnm__error(c->ctx, NNM_E_INVALID, "%s: tensor belongs to another context", what);
    if (!nnm__tensor_is_contiguous(t))
        return nnm__error(c->ctx, NNM_E_INVALID, "%s: tensor is not contiguous", what);
    if (t->desc.device.type != c->device.type) {
        char a[32], b[32];
        return nnm__error(c->ctx, NNM_E_DEVICE, "%s: tensor is on %s, comm '%s' works on %s", what,
                          nnm__device_name(t->desc.device, a, sizeof a), c->vt->name,
                          nnm__device_name(c->device, b, sizeof b));
    }
    if (need_f32 && (t->desc.dtype.code != NNM_DTYPE_FLOAT || t->desc.dtype.bits != 32))
        return nnm__error(c->ctx, NNM_E_DTYPE, "%s: only f32 tensors can be summed", what);
    return NNM_OK;
}

static void *tensor_data(nnm_tensor *t) { return (char *)t->desc.data + t->desc.byte_offset; }

static uint64_t tensor_bytes(nnm_tensor *t) {
    return (uint64_t)nnm_tensor_numel(t) * nnm__dtype_size(t->desc.dtype);
}

/* Wraps a started work into a request, or cleans up after a failed start. */
static nnm_status finish_start(nnm_comm *c, nnm_status st, nnm_comm_work *w, nnm_tensor *a,
                               nnm_tensor *b, nnm_comm_request **out) {
    if (st) {
        if (!c->ctx->errmsg[0]) nnm__error(c->ctx, st, "comm '%s': start failed", c->vt->name);
        return st > 0 ? NNM_E_PLUGIN : st;
    }
    nnm_comm_request *r = malloc(sizeof *r);
    if (!r) {
        /* Started, but nobody can wait on it: wait here so the buffers stay valid. */
        nnm__env env;
        nnm__env_init(&env, c->ctx, NULL, NNM__PHASE_BACKEND);
        (void)c->vt->wait(&env.pub, c->state, w);
        return nnm__error(c->ctx, NNM_E_NOMEM, "out of memory (comm request)");
    }
    r->c = c;
    r->work = w;
    r->keep[0] = a;
    r->keep[1] = b;
    if (a) nnm_tensor_retain(a);
    if (b) nnm_tensor_retain(b);
    c->refs++;
    *out = r;
    return NNM_OK;
}

#define START_PROLOGUE(c, out)                                                              \
    if (out) *out = NULL;                                                                   \
    if (!c) return NNM_E_INVALID;                                                           \
    if (!out) return nnm__error(c->ctx, NNM_E_INVALID, "comm: request pointer is NULL");    \
    nnm__env env;                                                                           \
    nnm__env_init(&env, c->ctx, NULL, NNM__PHASE_BACKEND);                                  \
    c->ctx->errmsg[0] = 0;                                                                  \
    nnm_comm_work *w = NULL;                                                                \
    nnm_status st

NNM_API nnm_status nnm_comm_all_reduce_start(nnm_comm *c, nnm_tensor *t, nnm_comm_request **out) {
    START_PROLOGUE(c, out);
    if ((st = check_tensor(c, "all-reduce", t, 1))) return st;
    st = c->vt->all_reduce_start(&env.pub, c->state, tensor_data(t), nnm_tensor_numel(t), &w);
    return finish_start(c, st, w, t, NULL, out);
}

NNM_API nnm_status nnm_comm_broadcast_start(nnm_comm *c, nnm_tensor *t, int32_t root,
                                            nnm_comm_request **out) {
    START_PROLOGUE(c, out);
    if ((st = check_tensor(c, "broadcast", t, 0))) return st;
    if (root < 0 || root >= c->world)
        return nnm__error(c->ctx, NNM_E_INVALID, "broadcast: root %d is not a rank (0..%d)", root,
                          c->world - 1);
    st = c->vt->broadcast_start(&env.pub, c->state, tensor_data(t), tensor_bytes(t), root, &w);
    return finish_start(c, st, w, t, NULL, out);
}

NNM_API nnm_status nnm_comm_all_gather_start(nnm_comm *c, nnm_tensor *in, nnm_tensor *out,
                                             nnm_comm_request **req) {
    START_PROLOGUE(c, req);
    if ((st = check_tensor(c, "all-gather (in)", in, 0)) ||
        (st = check_tensor(c, "all-gather (out)", out, 0)))
        return st;
    if (in->desc.dtype.code != out->desc.dtype.code || in->desc.dtype.bits != out->desc.dtype.bits)
        return nnm__error(c->ctx, NNM_E_DTYPE, "all-gather: in and out differ in dtype");
    if (nnm_tensor_numel(out) != (int64_t)c->world * nnm_tensor_numel(in))
        return nnm__error(c->ctx, NNM_E_SHAPE,
                          "all-gather: out holds %lld elements, want %d ranks x %lld",
                          (long long)nnm_tensor_numel(out), c->world,
                          (long long)nnm_tensor_numel(in));
    st = c->vt->all_gather_start(&env.pub, c->state, tensor_data(in), tensor_data(out),
                                 tensor_bytes(in), &w);
    return finish_start(c, st, w, in, out, req);
}

NNM_API nnm_status nnm_comm_barrier_start(nnm_comm *c, nnm_comm_request **out) {
    START_PROLOGUE(c, out);
    st = c->vt->barrier_start(&env.pub, c->state, &w);
    return finish_start(c, st, w, NULL, NULL, out);
}

NNM_API nnm_status nnm_comm_wait(nnm_comm_request *r) {
    if (!r) return NNM_E_INVALID;
    nnm_comm *c = r->c;
    nnm__env env;
    nnm__env_init(&env, c->ctx, NULL, NNM__PHASE_BACKEND);
    c->ctx->errmsg[0] = 0;
    nnm_status st = c->vt->wait(&env.pub, c->state, r->work);
    if (st && !c->ctx->errmsg[0])
        nnm__error(c->ctx, st, "comm '%s' rank %d: collective failed", c->vt->name, c->rank);
    if (st > 0) st = NNM_E_PLUGIN;
    nnm_tensor_release(r->keep[0]);
    nnm_tensor_release(r->keep[1]);
    free(r);
    comm_release(c);
    return st;
}

NNM_API nnm_status nnm_comm_all_reduce(nnm_comm *c, nnm_tensor *t) {
    nnm_comm_request *r;
    nnm_status st = nnm_comm_all_reduce_start(c, t, &r);
    return st ? st : nnm_comm_wait(r);
}

NNM_API nnm_status nnm_comm_broadcast(nnm_comm *c, nnm_tensor *t, int32_t root) {
    nnm_comm_request *r;
    nnm_status st = nnm_comm_broadcast_start(c, t, root, &r);
    return st ? st : nnm_comm_wait(r);
}

NNM_API nnm_status nnm_comm_all_gather(nnm_comm *c, nnm_tensor *in, nnm_tensor *out) {
    nnm_comm_request *r;
    nnm_status st = nnm_comm_all_gather_start(c, in, out, &r);
    return st ? st : nnm_comm_wait(r);
}

NNM_API nnm_status nnm_comm_barrier(nnm_comm *c) {
    nnm_comm_request *r;
    nnm_status st = nnm_comm_barrier_start(c, &r);
    return st ? st : nnm_comm_wait(r);
}

/* For the DDP reducer. */
nnm_ctx *nnm__comm_ctx(const nnm_comm *c) { return c->ctx; }
void nnm__comm_retain(nnm_comm *c) { c->refs++; }
