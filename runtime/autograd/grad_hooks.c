/* runtime/autograd/grad_hooks.c - post-accumulate-grad hooks on leaf tensors
 * (PyTorch's Tensor.register_post_accumulate_grad_hook): the engine calls them
 * right after it adds a gradient into a leaf's .grad. DDP's reducer is their
 * first user: a parameter whose gradient is ready may start its bucket's
 * all-reduce while the rest of the backward runs. */
#include <stdlib.h>

#include "internal.h"

NNM_API nnm_status nnm_tensor_register_post_accumulate_grad_hook(nnm_tensor *t,
                                                                 nnm_grad_hook_fn fn, void *user,
                                                                 nnm_hook_handle **handle) {
    if (handle) *handle = NULL;
    if (!t) return NNM_E_INVALID;
    if (!fn) return nnm__error(t->ctx, NNM_E_INVALID, "hook function is NULL");
    if (t->grad_fn)
        return nnm__error(t->ctx, NNM_E_STATE,
                          "post-accumulate-grad hooks can only be registered on leaf tensors");
    if (!t->grad_hooks) {
        if (!(t->grad_hooks = malloc(sizeof *t->grad_hooks)))
            return nnm__error(t->ctx, NNM_E_NOMEM, "out of memory (hook)");
        nnm__hook_list_init(t->grad_hooks, t->ctx, NULL);
    }
    return nnm__hook_add_grad(t->grad_hooks, fn, user, handle);
}

nnm_status nnm__grad_hooks_run(nnm_tensor *leaf) {
    nnm__hook_list *l = leaf->grad_hooks;
    if (!l->count) return NNM_OK;
    nnm_ctx *ctx = leaf->ctx;
    nnm_status st = NNM_OK;
    uint64_t start = l->seq; /* hooks added by a hook wait for the next time */
    l->running++;
    for (nnm__hook *h = l->head; h && !st; h = h->next) {
        if (!nnm__hook_runs(h, start)) continue;
        uint64_t seq = ctx->err_seq;
        st = h->fn.grad(h->user, leaf);
        if (st) {
            if (st > 0) st = NNM_E_HOOK;
            if (ctx->err_seq == seq)
                nnm__error(ctx, st, "post-accumulate-grad hook failed: %s", nnm_status_str(st));
        }
    }
    nnm__hook_list_end(l);
    return st;
}

void nnm__grad_hooks_free(nnm_tensor *t) {
    nnm__hook_list_clear(t->grad_hooks);
    free(t->grad_hooks);
    t->grad_hooks = NULL;
}
