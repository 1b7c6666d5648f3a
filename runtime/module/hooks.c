/* runtime/module/hooks.c - hook lists and their handles.
 *
 * Entries may be removed at any time, even by the hook that is running:
 * removal during an iteration only stamps the entry, and the last iteration
 * to finish unlinks it and runs its user_free, so a hook's `user` outlives
 * every run of it that has started.
 *
 * A handle is a separate object that points at its entry, and the entry back
 * at it; whichever goes first clears the other's pointer. So a handle can be
 * removed or freed in any order relative to its module and context (what
 * garbage-collected bindings need), and a handle whose hook is gone touches
 * nothing but itself.
 */
#include <stdlib.h>

#include "internal.h"

void nnm__hook_list_init(nnm__hook_list *l, nnm_ctx *ctx, uint32_t *owner_count) {
    l->head = l->tail = NULL;
    l->count = l->running = l->dead = l->n_always = 0;
    l->seq = 1;
    l->ctx = ctx;
    l->owner_count = owner_count;
}

/* Unlinks and frees an entry; its user_free runs last, when the list is
 * consistent again (it may register or remove other hooks). */
static void unlink_free(nnm__hook_list *l, nnm__hook *h) {
    if (h->prev) h->prev->next = h->next; else l->head = h->next;
    if (h->next) h->next->prev = h->prev; else l->tail = h->prev;
    if (h->handle) h->handle->hook = NULL;
    void (*user_free)(void *) = h->user_free;
    void *user = h->user;
    free(h);
    if (user_free) user_free(user);
}

/* Marks h removed; frees it now unless an iteration may still reach it. */
static void hook_drop(nnm__hook_list *l, nnm__hook *h) {
    h->removed_at = l->seq++;
    l->count--;
    if (h->flags & NNM_HOOK_ALWAYS_CALL) l->n_always--;
    if (l->owner_count) (*l->owner_count)--;
    if (h->handle) { /* the handle is told now: a second remove is a no-op */
        h->handle->hook = NULL;
        h->handle = NULL;
    }
    if (l->running)
        l->dead++;
    else
        unlink_free(l, h);
}

void nnm__hook_list_clear(nnm__hook_list *l) {
    /* user_free may add hooks to this very list: take one at a time */
    for (nnm__hook *h = l->head; h;) {
        nnm__hook *next = h->next;
        if (!h->removed_at) {
            hook_drop(l, h);
            next = l->head; /* h may be gone and the list changed */
            while (next && next->removed_at) next = next->next;
        }
        h = next;
    }
}

void nnm__hook_list_end(nnm__hook_list *l) {
    if (--l->running || !l->dead) return;
    l->dead = 0;
    for (nnm__hook *h = l->head; h;) {
        nnm__hook *next = h->next;
        if (h->removed_at) {
            unlink_free(l, h);
            next = l->head; /* a user_free may have changed the list */
        }
        h = next;
    }
}

/* ---- handles ------------------------------------------------------------- */

static nnm_hook_handle *handle_new(nnm_ctx *owner) {
    nnm_hook_handle *hd = calloc(1, sizeof *hd);
    if (!hd || !owner) return hd;
    hd->owner = owner;
    hd->next = owner->hook_handles;
    if (hd->next) hd->next->prev = hd;
    owner->hook_handles = hd;
    return hd;
}

NNM_API nnm_status nnm_hook_handle_remove(nnm_hook_handle *hd) {
    if (!hd) return NNM_E_INVALID;
    if (!hd->hook) return NNM_E_STATE; /* no message: see nnmod.h */
    hook_drop(hd->hook->list, hd->hook);
    return NNM_OK;
}

NNM_API void nnm_hook_remove(nnm_hook_handle *hd) { (void)nnm_hook_handle_remove(hd); }

NNM_API int nnm_hook_handle_is_live(const nnm_hook_handle *hd) { return hd && hd->hook; }

NNM_API void nnm_hook_handle_free(nnm_hook_handle *hd) {
    if (!hd) return;
    if (hd->hook) hd->hook->handle = NULL;
    if (hd->owner) {
        if (hd->prev) hd->prev->next = hd->next; else hd->owner->hook_handles = hd->next;
        if (hd->next) hd->next->prev = hd->prev;
    }
    free(hd);
}

/* ---- registration -------------------------------------------------------- */

enum { KIND_PRE, KIND_POST, KIND_BW_PRE, KIND_BW };

/* Adds fn to l. caller_handle: _v2 (the caller owns the handle) or not (the
 * context does). Sets no error of its own beyond argument checks. */
static nnm_status hook_add(nnm__hook_list *l, int kind, void (*fn)(void), void *user,
                           const nnm_hook_options *opts, int caller_handle,
                           nnm_hook_handle **handle) {
    nnm_ctx *ctx = l->ctx;
    uint32_t flags = 0;
    void (*user_free)(void *) = NULL;
    if (!fn) return nnm__error(ctx, NNM_E_INVALID, "hook function is NULL");
    if (opts) {
        if (opts->struct_size < offsetof(nnm_hook_options, flags) + sizeof opts->flags)
            return nnm__error(ctx, NNM_E_INVALID, "nnm_hook_options.struct_size %u is too small",
                              opts->struct_size);
        flags = opts->flags;
        if (opts->struct_size >= offsetof(nnm_hook_options, user_free) + sizeof opts->user_free)
            user_free = opts->user_free;
        if (flags & ~(NNM_HOOK_PREPEND | NNM_HOOK_ALWAYS_CALL))
            return nnm__error(ctx, NNM_E_INVALID, "unknown hook flags 0x%x",
                              flags & ~(NNM_HOOK_PREPEND | NNM_HOOK_ALWAYS_CALL));
        if ((flags & NNM_HOOK_ALWAYS_CALL) && kind != KIND_POST)
            return nnm__error(ctx, NNM_E_INVALID,
                              "NNM_HOOK_ALWAYS_CALL is for forward hooks only (as PyTorch's always_call)");
    }
    nnm__hook *h = calloc(1, sizeof *h);
    nnm_hook_handle *hd = NULL;
    if (h && handle && !(hd = handle_new(caller_handle ? NULL : ctx))) {
        free(h);
        h = NULL;
    }
    if (!h) return nnm__error(ctx, NNM_E_NOMEM, "out of memory (hook)");
    /* Every member of the union is a function pointer of the same size: the
     * kind says which one the call path reads. */
    switch (kind) {
    case KIND_PRE: h->fn.pre = (nnm_forward_pre_hook_fn)fn; break;
    case KIND_POST: h->fn.post = (nnm_forward_hook_fn)fn; break;
    case KIND_BW_PRE: h->fn.bw_pre = (nnm_backward_pre_hook_fn)fn; break;
    default: h->fn.bw = (nnm_backward_hook_fn)fn; break;
    }
    h->flags = flags;
    h->user = user;
    h->user_free = user_free;
    h->list = l;
    h->id = l->seq++;
    if (flags & NNM_HOOK_PREPEND) {
        h->next = l->head;
        if (l->head) l->head->prev = h; else l->tail = h;
        l->head = h;
    } else {
        h->prev = l->tail;
        if (l->tail) l->tail->next = h; else l->head = h;
        l->tail = h;
    }
    l->count++;
    if (flags & NNM_HOOK_ALWAYS_CALL) l->n_always++;
    if (l->owner_count) (*l->owner_count)++;
    if (hd) {
        hd->hook = h;
        h->handle = hd;
        *handle = hd;
    }
    return NNM_OK;
}

#define FN(f) ((void (*)(void))(f))

static nnm__hook_list *module_list(nnm_module *m, int kind) {
    switch (kind) {
    case KIND_PRE: return &m->pre_hooks;
    case KIND_POST: return &m->post_hooks;
    case KIND_BW_PRE: return &m->bw_pre_hooks;
    default: return &m->bw_hooks;
    }
}

static nnm__hook_list *ctx_list(nnm_ctx *ctx, int kind) {
    switch (kind) {
    case KIND_PRE: return &ctx->gpre_hooks;
    case KIND_POST: return &ctx->gpost_hooks;
    case KIND_BW_PRE: return &ctx->gbw_pre_hooks;
    default: return &ctx->gbw_hooks;
    }
}

static nnm_status module_add(nnm_module *m, int kind, void (*fn)(void), void *user,
                             const nnm_hook_options *opts, int v2, nnm_hook_handle **handle) {
    if (handle) *handle = NULL;
    if (!nnm__module_live(m)) return NNM_E_INVALID;
    return hook_add(module_list(m, kind), kind, fn, user, opts, v2, handle);
}

static nnm_status ctx_add(nnm_ctx *ctx, int kind, void (*fn)(void), void *user,
                          const nnm_hook_options *opts, int v2, nnm_hook_handle **handle) {
    if (handle) *handle = NULL;
    if (!ctx) return NNM_E_INVALID;
    if (ctx->closed) return nnm__error(ctx, NNM_E_STATE, "the context was freed (nnm_ctx_free)");
    return hook_add(ctx_list(ctx, kind), kind, fn, user, opts, v2, handle);
}

/* First-version registrations: context-owned handles. */

NNM_API nnm_status nnm_module_register_forward_pre_hook(nnm_module *m, nnm_forward_pre_hook_fn fn,
                                                        void *user, nnm_hook_handle **handle) {
    return module_add(m, KIND_PRE, FN(fn), user, NULL, 0, handle);
}

NNM_API nnm_status nnm_module_register_forward_hook(nnm_module *m, nnm_forward_hook_fn fn,
                                                    void *user, nnm_hook_handle **handle) {
    return module_add(m, KIND_POST, FN(fn), user, NULL, 0, handle);
}

NNM_API nnm_status nnm_module_register_full_backward_pre_hook(nnm_module *m,
                                                              nnm_backward_pre_hook_fn fn,
                                                              void *user, nnm_hook_handle **handle) {
    return module_add(m, KIND_BW_PRE, FN(fn), user, NULL, 0, handle);
}

NNM_API nnm_status nnm_module_register_full_backward_hook(nnm_module *m, nnm_backward_hook_fn fn,
                                                          void *user, nnm_hook_handle **handle) {
    return module_add(m, KIND_BW, FN(fn), user, NULL, 0, handle);
}

NNM_API nnm_status nnm_ctx_register_forward_pre_hook(nnm_ctx *ctx, nnm_forward_pre_hook_fn fn,
                                                     void *user, nnm_hook_handle **handle) {
    return ctx_add(ctx, KIND_PRE, FN(fn), user, NULL, 0, handle);
}

NNM_API nnm_status nnm_ctx_register_forward_hook(nnm_ctx *ctx, nnm_forward_hook_fn fn,
                                                 void *user, nnm_hook_handle **handle) {
    return ctx_add(ctx, KIND_POST, FN(fn), user, NULL, 0, handle);
}

/* _v2 registrations: options, caller-owned handles. */

NNM_API nnm_status nnm_module_register_forward_pre_hook_v2(nnm_module *m, nnm_forward_pre_hook_fn fn,
                                                           void *user, const nnm_hook_options *opts,
                                                           nnm_hook_handle **handle) {
    return module_add(m, KIND_PRE, FN(fn), user, opts, 1, handle);
}

NNM_API nnm_status nnm_module_register_forward_hook_v2(nnm_module *m, nnm_forward_hook_fn fn,
                                                       void *user, const nnm_hook_options *opts,
                                                       nnm_hook_handle **handle) {
    return module_add(m, KIND_POST, FN(fn), user, opts, 1, handle);
}

NNM_API nnm_status nnm_module_register_full_backward_pre_hook_v2(nnm_module *m,
                                                                 nnm_backward_pre_hook_fn fn,
                                                                 void *user,
                                                                 const nnm_hook_options *opts,
                                                                 nnm_hook_handle **handle) {
    return module_add(m, KIND_BW_PRE, FN(fn), user, opts, 1, handle);
}

NNM_API nnm_status nnm_module_register_full_backward_hook_v2(nnm_module *m, nnm_backward_hook_fn fn,
                                                             void *user, const nnm_hook_options *opts,
                                                             nnm_hook_handle **handle) {
    return module_add(m, KIND_BW, FN(fn), user, opts, 1, handle);
}

NNM_API nnm_status nnm_ctx_register_forward_pre_hook_v2(nnm_ctx *ctx, nnm_forward_pre_hook_fn fn,
                                                        void *user, const nnm_hook_options *opts,
                                                        nnm_hook_handle **handle) {
    return ctx_add(ctx, KIND_PRE, FN(fn), user, opts, 1, handle);
}

NNM_API nnm_status nnm_ctx_register_forward_hook_v2(nnm_ctx *ctx, nnm_forward_hook_fn fn,
                                                    void *user, const nnm_hook_options *opts,
                                                    nnm_hook_handle **handle) {
    return ctx_add(ctx, KIND_POST, FN(fn), user, opts, 1, handle);
}

NNM_API nnm_status nnm_ctx_register_full_backward_pre_hook(nnm_ctx *ctx, nnm_backward_pre_hook_fn fn,
                                                           void *user, const nnm_hook_options *opts,
                                                           nnm_hook_handle **handle) {
    return ctx_add(ctx, KIND_BW_PRE, FN(fn), user, opts, 1, handle);
}

NNM_API nnm_status nnm_ctx_register_full_backward_hook(nnm_ctx *ctx, nnm_backward_hook_fn fn,
                                                       void *user, const nnm_hook_options *opts,
                                                       nnm_hook_handle **handle) {
    return ctx_add(ctx, KIND_BW, FN(fn), user, opts, 1, handle);
}

/* ---- the context's lists and handles -------------------------------------- */

void nnm__hooks_ctx_init(nnm_ctx *ctx) {
    nnm__hook_list_init(&ctx->gpre_hooks, ctx, &ctx->n_global_hooks);
    nnm__hook_list_init(&ctx->gpost_hooks, ctx, &ctx->n_global_hooks);
    nnm__hook_list_init(&ctx->gbw_pre_hooks, ctx, &ctx->n_global_hooks);
    nnm__hook_list_init(&ctx->gbw_hooks, ctx, &ctx->n_global_hooks);
}

void nnm__hooks_ctx_close(nnm_ctx *ctx) {
    nnm__hook_list_clear(&ctx->gpre_hooks);
    nnm__hook_list_clear(&ctx->gpost_hooks);
    nnm__hook_list_clear(&ctx->gbw_pre_hooks);
    nnm__hook_list_clear(&ctx->gbw_hooks);
}

void nnm__hooks_ctx_fini(nnm_ctx *ctx) {
    nnm__hooks_ctx_close(ctx); /* nothing is running any more: this frees them */
    while (ctx->hook_handles) nnm_hook_handle_free(ctx->hook_handles);
}

/* A tensor's post-accumulate-grad hook (autograd/grad_hooks.c): appended to
 * the tensor's list with a context-owned handle, as the first-version
 * registrations. */
nnm_status nnm__hook_add_grad(nnm__hook_list *l, nnm_grad_hook_fn fn, void *user,
                              nnm_hook_handle **handle) {
    nnm_status st = hook_add(l, KIND_BW, FN(fn), user, NULL, 0, handle);
    if (!st) l->tail->fn.grad = fn;
    return st;
}
