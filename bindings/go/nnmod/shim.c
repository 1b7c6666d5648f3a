/* bindings/go/nnmod/shim.c - see shim.h. */
#include <stdlib.h>
#include <string.h>

#include "shim.h"
#include "_cgo_export.h"

#define WITH_GRAD(grad, expr)                                                            \
    do {                                                                                 \
        int prev_ = nnm_grad_set_enabled(grad);                                          \
        nnm_status st_ = (expr);                                                         \
        nnm_grad_set_enabled(prev_);                                                     \
        return st_;                                                                      \
    } while (0)

nnm_status nnmgo_call(int grad, nnm_module *m, nnm_tensor *const *in, uint32_t n_in,
                      nnm_tensor **out, uint32_t n_out) {
    WITH_GRAD(grad, nnm_module_call(m, in, n_in, out, n_out));
}

nnmgo_ret nnmgo_call1(int grad, uintptr_t m, uintptr_t x, uintptr_t old) {
    nnmgo_ret r = {NNM_OK, NULL};
    nnm_tensor *in = (nnm_tensor *)x;
    int prev = nnm_grad_set_enabled(grad);
    r.status = nnm_module_call((nnm_module *)m, &in, 1, &r.t, 1);
    nnm_grad_set_enabled(prev);
    if (r.status == NNM_OK) nnm_tensor_release((nnm_tensor *)old);
    return r;
}

void nnmgo_release(uintptr_t t) { nnm_tensor_release((nnm_tensor *)t); }

nnm_status nnmgo_binary(int grad, nnm_ctx *ctx, int32_t op, nnm_tensor *a, nnm_tensor *b,
                        nnm_tensor **out) {
    WITH_GRAD(grad, nnm_op_binary(ctx, op, a, b, out));
}

nnm_status nnmgo_unary(int grad, nnm_ctx *ctx, int32_t op, nnm_tensor *x, double alpha,
                       nnm_tensor **out) {
    WITH_GRAD(grad, nnm_op_unary(ctx, op, x, alpha, out));
}

nnm_status nnmgo_reduce(int grad, nnm_ctx *ctx, int32_t op, nnm_tensor *x, const int32_t *dims,
                        uint32_t n_dims, int keepdim, nnm_tensor **out) {
    WITH_GRAD(grad, nnm_op_reduce(ctx, op, x, dims, n_dims, keepdim, out));
}

nnm_status nnmgo_reshape(int grad, nnm_ctx *ctx, nnm_tensor *x, int32_t ndim,
                         const int64_t *shape, nnm_tensor **out) {
    WITH_GRAD(grad, nnm_op_reshape(ctx, x, ndim, shape, out));
}

static nnm_status forward_tramp(void *user, nnm_module *m, nnm_tensor *const *in, uint32_t n_in,
                                nnm_tensor **out, uint32_t n_out) {
    return nnmgoForwardHook((uintptr_t)user, m, (nnm_tensor **)in, n_in, out, n_out);
}

static nnm_status pre_tramp(void *user, nnm_module *m, nnm_tensor **in, uint32_t n_in) {
    return nnmgoForwardPreHook((uintptr_t)user, m, in, n_in);
}

static nnm_status backward_tramp(void *user, nnm_module *m, nnm_tensor **grad_in, uint32_t n_in,
                                 nnm_tensor *const *grad_out, uint32_t n_out) {
    return nnmgoBackwardHook((uintptr_t)user, m, grad_in, n_in, (nnm_tensor **)grad_out, n_out);
}

static void free_tramp(void *user) { nnmgoHookFree((uintptr_t)user); }

nnm_status nnmgo_register_forward_hook(nnm_module *m, nnm_ctx *ctx, uintptr_t handle,
                                       uint32_t flags, nnm_hook_handle **out) {
    nnm_hook_options o = {sizeof o, flags, free_tramp};
    if (m) return nnm_module_register_forward_hook_v2(m, forward_tramp, (void *)handle, &o, out);
    return nnm_ctx_register_forward_hook_v2(ctx, forward_tramp, (void *)handle, &o, out);
}

nnm_status nnmgo_register_forward_pre_hook(nnm_module *m, nnm_ctx *ctx, uintptr_t handle,
                                           uint32_t flags, nnm_hook_handle **out) {
    nnm_hook_options o = {sizeof o, flags, free_tramp};
    if (m) return nnm_module_register_forward_pre_hook_v2(m, pre_tramp, (void *)handle, &o, out);
    return nnm_ctx_register_forward_pre_hook_v2(ctx, pre_tramp, (void *)handle, &o, out);
}

static nnm_status named_add(nnmgo_named *l, const char *name, void *item) {
    if (l->n == l->cap) {
        uint32_t cap = l->cap ? 2 * l->cap : 16;
        char **names = realloc(l->names, cap * sizeof *names);
        if (!names) return NNM_E_NOMEM;
        l->names = names;
        void **items = realloc(l->items, cap * sizeof *items);
        if (!items) return NNM_E_NOMEM;
        l->items = items;
        l->cap = cap;
    }
    char *copy = strdup(name);
    if (!copy) return NNM_E_NOMEM;
    l->names[l->n] = copy;
    l->items[l->n++] = item;
    return NNM_OK;
}

static nnm_status visit_tensor(void *user, const char *name, nnm_tensor *t) {
    nnm_status st = named_add(user, name, t);
    if (st == NNM_OK) nnm_tensor_retain(t); /* the Go side owns one reference each */
    return st;
}

static nnm_status visit_module(void *user, const char *name, nnm_module *m) {
    nnm_status st = named_add(user, name, m);
    if (st == NNM_OK) nnm_module_retain(m);
    return st;
}

nnm_status nnmgo_named_parameters(nnm_module *m, nnmgo_named *out) {
    return nnm_module_named_parameters(m, visit_tensor, out);
}

nnm_status nnmgo_named_modules(nnm_module *m, nnmgo_named *out) {
    return nnm_module_named_modules(m, visit_module, out);
}

void nnmgo_named_free(nnmgo_named *l) {
    for (uint32_t i = 0; i < l->n; i++) free(l->names[i]);
    free(l->names);
    free(l->items);
    memset(l, 0, sizeof *l);
}

nnm_status nnmgo_register_full_backward_hook(nnm_module *m, nnm_ctx *ctx, uintptr_t handle,
                                             nnm_hook_handle **out) {
    nnm_hook_options o = {sizeof o, 0, free_tramp};
    if (m) return nnm_module_register_full_backward_hook_v2(m, backward_tramp, (void *)handle, &o, out);
    return nnm_ctx_register_full_backward_hook(ctx, backward_tramp, (void *)handle, &o, out);
}
