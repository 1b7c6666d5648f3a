/* runtime/autograd/grad_hooks.c - post-accumulate-grad hooks on leaf tensors
 * (PyTorch's Tensor.register_post_accumulate_grad_hook): the engine calls them
 * once per backward, right after the leaf's last gradient of that backward
 * has been added into its .grad. DDP's reducer is their first user: a
 * parameter whose gradient is ready may start its bucket's all-reduce while
 * the rest of the backward runs. The same per-leaf record holds DDP's bucket
 * view: the tensor the first gradient is copied into when .grad is unset. */
#include <stdlib.h>

#include "internal.h"

nnm_status nnm__grad_hooks_get(nnm_tensor *t, nnm__grad_hooks **out) {
    if (!t->grad_hooks) {
        nnm__grad_hooks *g = calloc(1, sizeof *g);
        if (!g) return nnm__error(t->ctx, NNM_E_NOMEM, "out of memory (hook)");
        nnm__hook_list_init(&g->list, t->ctx, NULL);
        t->grad_hooks = g;
    }
    *out = t->grad_hooks;
    return NNM_OK;
}

NNM_API nnm_status nnm_tensor_register_post_accumulate_grad_hook(nnm_tensor *t,
                                                                 nnm_grad_hook_fn fn, void *user,
                                                                 nnm_hook_handle **handle) {
    if (handle) *handle = NULL;
    if (!t) return NNM_E_INVALID;
    if (!fn) return nnm__error(t->ctx, NNM_E_INVALID, "hook function is NULL");
    if (t->grad_fn)
        return nnm__error(t->ctx, NNM_E_STATE,
                          "post-accumulate-grad hooks can only be registered on leaf tensors");
    nnm__grad_hooks *g = NULL;
    nnm_status st = nnm__grad_hooks_get(t, &g);
    return st ? st : nnm__hook_add_grad(&g->list, fn, user, handle);
}

nnm_status nnm__grad_hooks_run(nnm_tensor *leaf) {
    nnm__hook_list *l = &leaf->grad_hooks->list;
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

nnm_status nnm__grad_set_view(nnm_tensor *t, nnm_tensor *view) {
    if (!view) {
        if (t->grad_hooks) {
            nnm_tensor_release(t->grad_hooks->view);
            t->grad_hooks->view = NULL;
        }
        return NNM_OK;
    }
    nnm__grad_hooks *g = NULL;
    nnm_status st = nnm__grad_hooks_get(t, &g);
    if (st) return st;
    nnm_tensor_retain(view);
    nnm_tensor_release(g->view);
    g->view = view;
    return NNM_OK;
}

nnm_status nnm__grad_set_parts(nnm_tensor *t, nnm__grad_part_fn fn, void *user) {
    if (!fn) {
        if (t->grad_hooks) {
            t->grad_hooks->part = NULL;
            t->grad_hooks->part_user = NULL;
        }
        return NNM_OK;
    }
    nnm__grad_hooks *g = NULL;
    nnm_status st = nnm__grad_hooks_get(t, &g);
    if (st) return st;
    g->part = fn;
    g->part_user = user;
    return NNM_OK;
}

int64_t nnm__grad_block_rows(int64_t rows, int64_t cols) {
    if (rows <= 0 || cols <= 0) return 0;
    /* whole multiples of 64 rows (the row tiles of common gemm kernels) of
     * at least NNM__GRAD_BLOCK_ELEMS elements and 256 rows: each block's gemm
     * packs the layer's whole input again (by estimate some 7% of a 128-row
     * block's arithmetic) */
    int64_t r = (NNM__GRAD_BLOCK_ELEMS + cols - 1) / cols;
    r = (r + 63) / 64 * 64;
    if (r < 256) r = 256;
    return 2 * r <= rows ? r : 0;
}

void nnm__grad_hooks_free(nnm_tensor *t) {
    nnm__hook_list_clear(&t->grad_hooks->list);
    nnm_tensor_release(t->grad_hooks->view);
    free(t->grad_hooks);
    t->grad_hooks = NULL;
}
