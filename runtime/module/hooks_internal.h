/* runtime/module/hooks_internal.h - hook lists: forward, backward and grad hooks, with PyTorch's snapshot semantics.
 * Private to the runtime (nnm__ names); runtime/internal.h includes every such header. */
#ifndef NNM_HOOKS_INTERNAL_H
#define NNM_HOOKS_INTERNAL_H

#include "../core/core_internal.h"

/* ---- hooks -------------------------------------------------------------- */

typedef struct nnm__hook nnm__hook;

typedef struct nnm__hook_list {
    nnm__hook *head, *tail;
    uint32_t count;               /* live (not removed) hooks */
    uint32_t running;             /* iterations in progress */
    uint32_t dead;                /* removed, waiting for the iterations to end */
    uint32_t n_always;            /* live hooks with NNM_HOOK_ALWAYS_CALL */
    uint64_t seq;                 /* stamps registrations and removals (from 1) */
    nnm_ctx *ctx;
    uint32_t *owner_count;        /* counter to keep in step (fast-path gate) */
} nnm__hook_list;

/* One registered hook. An iteration started when seq was S runs the hooks
 * with id < S that are live or were removed at or after S (PyTorch's
 * snapshot semantics). */
struct nnm__hook {
    nnm__hook *next, *prev;
    nnm__hook_list *list;
    uint64_t id;                  /* list seq at registration */
    uint64_t removed_at;          /* list seq at removal; 0 while live */
    uint32_t flags;               /* NNM_HOOK_* */
    union {
        nnm_forward_pre_hook_fn pre;
        nnm_forward_hook_fn post;
        nnm_backward_pre_hook_fn bw_pre;
        nnm_backward_hook_fn bw;
        nnm_grad_hook_fn grad;    /* a tensor's post-accumulate-grad hook */
    } fn;
    void *user;
    void (*user_free)(void *user);
    nnm_hook_handle *handle;      /* NULL when it has none (or it was freed) */
};

/* A handle outlives its hook: the hook clears `hook` when it goes. */
struct nnm_hook_handle {
    nnm__hook *hook;              /* NULL once the hook is gone */
    nnm_ctx *owner;               /* context-owned (first-version) handles; NULL: the caller's */
    nnm_hook_handle *next, *prev; /* in owner->hook_handles */
};

/* hooks.c: iteration over a list (the call path and the engine). */
static inline int nnm__hook_runs(const nnm__hook *h, uint64_t start) {
    return h->id < start && (!h->removed_at || h->removed_at >= start);
}
/* hooks.c */
void nnm__hook_list_init(nnm__hook_list *l, nnm_ctx *ctx, uint32_t *owner_count);
/* Drops every hook of l (their user_free runs; deferred while l is running). */
void nnm__hook_list_clear(nnm__hook_list *l);
/* Ends one iteration over l (the call path increments l->running to start one). */
void nnm__hook_list_end(nnm__hook_list *l);
/* Appends a post-accumulate-grad hook to a tensor's list (grad_hooks.c). */
nnm_status nnm__hook_add_grad(nnm__hook_list *l, nnm_grad_hook_fn fn, void *user,
                              nnm_hook_handle **handle);
/* Context lifetime: the global lists at creation, at nnm_ctx_free (the
 * user's view ends) and at destruction (context-owned handles are freed). */
void nnm__hooks_ctx_init(nnm_ctx *ctx);
void nnm__hooks_ctx_close(nnm_ctx *ctx);
void nnm__hooks_ctx_fini(nnm_ctx *ctx);

#endif /* NNM_HOOKS_INTERNAL_H */
