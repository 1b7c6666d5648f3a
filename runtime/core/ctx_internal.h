/* runtime/core/ctx_internal.h - the context object: registry, backends, allocator pools, global hooks, RNG, error message.
 * Private to the runtime (nnm__ names); runtime/internal.h includes every such header. */
#ifndef NNM_CTX_INTERNAL_H
#define NNM_CTX_INTERNAL_H

#include "../module/hooks_internal.h"

/* ---- context ------------------------------------------------------------ */

struct nnm_ctx {
    uint32_t refs;                /* 1 for the user + 1 per module/tensor/storage */
    int closed;                   /* nnm_ctx_free was called */
    nnm__registry reg;
    nnm__backend backends[NNM__DEVICE_TYPES];
    nnm__pool *pools;
    uint32_t n_pools;
    nnm__storage *free_storages;  /* recycled storage objects without memory */
    nnm_tensor *free_tensors;     /* recycled tensor objects */
    nnm__node *free_nodes;        /* recycled autograd nodes */
    nnm__node **stack;            /* engine scratch, grown as needed */
    uint32_t stack_cap;
    uint32_t stack_used;          /* entries held by the running walks (nested backwards stack up) */
    uint32_t stack_base;          /* where the innermost running walk starts */
    uint32_t n_backward_hooks;    /* modules' backward hooks, for the call path */
    uint32_t mark_seq;            /* autograd walks: marks visited nodes */
    /* autograd.c: the node whose backward runs now (NULL: none), its walk's
     * mark, and the inputs whose gradients it handed over early (bit i) */
    nnm__node *emit_node;
    uint32_t emit_mark, emit_mask;
    /* autograd.c: callbacks to run when the current backward ends
     * (nnm__backward_on_end), and how many backwards are running */
    struct {
        nnm_status (*fn)(void *user, nnm_status walk);
        void *user;
    } end_cb[8];
    uint32_t n_end_cb, bw_depth;
    nnm_ctx_stats stats;
    uint32_t n_global_hooks;      /* + profiler: nonzero leaves the fast path */
    nnm__hook_list gpre_hooks, gpost_hooks;
    nnm_profile_fn profiler;
    void *profiler_user;
    uint32_t depth;               /* call nesting depth */
    uint64_t rng[4];              /* xoshiro256** state */
    int err_attributed;           /* the message already names a module path */
    uint32_t shared_links;        /* set_child attached a module already attached elsewhere:
                                   * walks then visit each module and tensor once */
    char errmsg[NNM__ERRMSG_CAP];
    /* hooks.c */
    nnm__hook_list gbw_pre_hooks, gbw_hooks; /* global full backward (pre-)hooks */
    nnm_hook_handle *hook_handles; /* handles the context owns (first-version API) */
    uint64_t err_seq;             /* counts messages set: "did the plugin say why?" */
    int32_t num_threads;          /* intra-op threads: nnm_ctx_set_num_threads, or the
                                   * default (ctx.c default_threads: the cores) */
    uint32_t make_depth;          /* host->child_new nesting: creates running inside creates */
    int make_overflow;            /* the nesting limit was hit: the message is already the cause */
};

static inline void nnm__ctx_retain(nnm_ctx *ctx) { ctx->refs++; }
static inline void nnm__ctx_release(nnm_ctx *ctx) {
    if (--ctx->refs == 0) nnm__ctx_destroy(ctx);
}

/* The initialised backend for a device, or an error set on ctx (backend.c's
 * nnm__backend_find). Every op asks, so the started backend of a real
 * device is answered here, inline: one compare of the device type and two
 * loads. */
static inline nnm_status nnm__backend_get(nnm_ctx *ctx, nnm_device dev, nnm__backend **out) {
    if (NNM__LIKELY(dev.type >= 1 && dev.type < NNM__DEVICE_TYPES && dev.id >= 0)) {
        nnm__backend *be = &ctx->backends[dev.type];
        if (NNM__LIKELY(be->tried && be->status == NNM_OK)) {
            *out = be;
            return NNM_OK;
        }
    }
    return nnm__backend_find(ctx, dev, out);
}

/* Most host->child_new calls nested inside each other (a transformer needs 3):
 * a layer whose create makes itself, directly or through others, stops here
 * instead of overflowing the stack. */
#define NNM__MAKE_DEPTH_MAX 32u

/* ---- grad mode (ctx.c) -------------------------------------------------- *
 * Per thread. Read on every op and call, so the runtime reads the variable
 * itself rather than calling the exported nnm_grad_is_enabled, and in the
 * initial-exec TLS model: one load off the thread pointer instead of a
 * __tls_get_addr call (4 bytes of the static TLS surplus glibc keeps for
 * libraries loaded later, as a dlopen'd libnnmod is from Python). */
#if defined(__GNUC__)
#define NNM__TLS_FAST __attribute__((tls_model("initial-exec")))
#else
#define NNM__TLS_FAST
#endif
extern NNM__TLS_FAST _Thread_local int nnm__grad_disabled;
static inline int nnm__grad_enabled(void) { return !nnm__grad_disabled; }

#endif /* NNM_CTX_INTERNAL_H */
