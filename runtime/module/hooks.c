/* runtime/module/hooks.c - hook lists whose entries may be removed at any time, even
 * by the hook that is running: removal during an iteration only marks the
 * entry, and the last iteration to finish unlinks it. */
#include <stdlib.h>

#include "internal.h"

void nnm__hook_list_init(nnm__hook_list *l, nnm_ctx *ctx, uint32_t *owner_count) {
    l->head = l->tail = NULL;
    l->count = l->running = l->next_id = l->dead = 0;
    l->ctx = ctx;
    l->owner_count = owner_count;
}

static void unlink_free(nnm__hook_list *l, nnm_hook_handle *h) {
    if (h->prev) h->prev->next = h->next; else l->head = h->next;
    if (h->next) h->next->prev = h->prev; else l->tail = h->prev;
    free(h);
}

void nnm__hook_list_clear(nnm__hook_list *l) {
    while (l->head) {
        nnm_hook_handle *h = l->head;
        if (!h->removed && l->owner_count) (*l->owner_count)--;
        unlink_free(l, h);
    }
    l->count = l->dead = 0;
}

static nnm_status hook_add(nnm__hook_list *l, nnm_forward_pre_hook_fn pre,
                           nnm_forward_hook_fn post, void *user, nnm_hook_handle **handle) {
    if (handle) *handle = NULL;
    nnm_hook_handle *h = calloc(1, sizeof *h);
    if (!h) return nnm__error(l->ctx, NNM_E_NOMEM, "out of memory (hook)");
    if (pre)
        h->fn.pre = pre;
    else
        h->fn.post = post;
    h->user = user;
    h->list = l;
    h->id = l->next_id++;
    h->prev = l->tail;
    if (l->tail) l->tail->next = h; else l->head = h;
    l->tail = h;
    l->count++;
    if (l->owner_count) (*l->owner_count)++;
    if (handle) *handle = h;
    return NNM_OK;
}

NNM_API void nnm_hook_remove(nnm_hook_handle *h) {
    if (!h || h->removed) return;
    nnm__hook_list *l = h->list;
    h->removed = 1;
    l->count--;
    if (l->owner_count) (*l->owner_count)--;
    if (l->running)
        l->dead++;
    else
        unlink_free(l, h);
}

void nnm__hook_list_end(nnm__hook_list *l) {
    if (--l->running || !l->dead) return;
    nnm_hook_handle *h = l->head;
    while (h) {
        nnm_hook_handle *next = h->next;
        if (h->removed) unlink_free(l, h);
        h = next;
    }
    l->dead = 0;
}

#define CHECK_FN(ctx, fn)                                                                  \
    if (!(fn)) return nnm__error((ctx), NNM_E_INVALID, "hook function is NULL")

NNM_API nnm_status nnm_module_register_forward_pre_hook(nnm_module *m, nnm_forward_pre_hook_fn fn,
                                                        void *user, nnm_hook_handle **handle) {
    if (handle) *handle = NULL;
    if (!nnm__module_live(m)) return NNM_E_INVALID;
    CHECK_FN(m->ctx, fn);
    return hook_add(&m->pre_hooks, fn, NULL, user, handle);
}

NNM_API nnm_status nnm_module_register_forward_hook(nnm_module *m, nnm_forward_hook_fn fn,
                                                    void *user, nnm_hook_handle **handle) {
    if (handle) *handle = NULL;
    if (!nnm__module_live(m)) return NNM_E_INVALID;
    CHECK_FN(m->ctx, fn);
    return hook_add(&m->post_hooks, NULL, fn, user, handle);
}

NNM_API nnm_status nnm_ctx_register_forward_pre_hook(nnm_ctx *ctx, nnm_forward_pre_hook_fn fn,
                                                     void *user, nnm_hook_handle **handle) {
    if (handle) *handle = NULL;
    if (!ctx) return NNM_E_INVALID;
    CHECK_FN(ctx, fn);
    return hook_add(&ctx->gpre_hooks, fn, NULL, user, handle);
}

NNM_API nnm_status nnm_ctx_register_forward_hook(nnm_ctx *ctx, nnm_forward_hook_fn fn,
                                                 void *user, nnm_hook_handle **handle) {
    if (handle) *handle = NULL;
    if (!ctx) return NNM_E_INVALID;
    CHECK_FN(ctx, fn);
    return hook_add(&ctx->gpost_hooks, NULL, fn, user, handle);
}

NNM_API nnm_status nnm_module_register_full_backward_pre_hook(nnm_module *m,
                                                              nnm_backward_pre_hook_fn fn,
                                                              void *user, nnm_hook_handle **handle) {
    if (handle) *handle = NULL;
    if (!nnm__module_live(m)) return NNM_E_INVALID;
    CHECK_FN(m->ctx, fn);
    nnm_status st = hook_add(&m->bw_pre_hooks, NULL, NULL, user, handle);
    if (!st) m->bw_pre_hooks.tail->fn.bw_pre = fn;
    return st;
}

NNM_API nnm_status nnm_module_register_full_backward_hook(nnm_module *m, nnm_backward_hook_fn fn,
                                                          void *user, nnm_hook_handle **handle) {
    if (handle) *handle = NULL;
    if (!nnm__module_live(m)) return NNM_E_INVALID;
    CHECK_FN(m->ctx, fn);
    nnm_status st = hook_add(&m->bw_hooks, NULL, NULL, user, handle);
    if (!st) m->bw_hooks.tail->fn.bw = fn;
    return st;
}
