/* bindings/go/nnmod/shim.h - C helpers of the Go binding.
 *
 * Each helper does in ONE cgo call what needs one OS thread: set the calling
 * thread's grad mode to the Context's, run the call, restore the mode. A
 * goroutine cannot move to another thread during a cgo call, so grad mode is
 * right whatever thread the goroutine runs on next (docs/bindings.md). */
#ifndef NNMOD_GO_SHIM_H
#define NNMOD_GO_SHIM_H

#include <stdint.h>

#include <nnmod/nnmod.h>

nnm_status nnmgo_call(int grad, nnm_module *m, nnm_tensor *const *in, uint32_t n_in,
                      nnm_tensor **out, uint32_t n_out);
/* A status and a tensor, returned by value. The handles go in as integers:
 * cgo checks every pointer argument of a call (boxing it, one allocation
 * each in Go 1.19), and these are C pointers that need no check. */
typedef struct nnmgo_ret {
    nnm_status status;
    nnm_tensor *t;
} nnmgo_ret;
/* module(x), one input and one output; on success `old` (may be 0) is
 * released: a hot loop's one cgo call per module call (ForwardInto). */
nnmgo_ret nnmgo_call1(int grad, uintptr_t m, uintptr_t x, uintptr_t old);
/* nnm_tensor_release, without cgo's pointer check. */
void nnmgo_release(uintptr_t t);
nnm_status nnmgo_binary(int grad, nnm_ctx *ctx, int32_t op, nnm_tensor *a, nnm_tensor *b,
                        nnm_tensor **out);
nnm_status nnmgo_unary(int grad, nnm_ctx *ctx, int32_t op, nnm_tensor *x, double alpha,
                       nnm_tensor **out);
nnm_status nnmgo_reduce(int grad, nnm_ctx *ctx, int32_t op, nnm_tensor *x, const int32_t *dims,
                        uint32_t n_dims, int keepdim, nnm_tensor **out);
nnm_status nnmgo_reshape(int grad, nnm_ctx *ctx, nnm_tensor *x, int32_t ndim,
                         const int64_t *shape, nnm_tensor **out);

/* Hooks: the user data is a cgo.Handle (an integer), the functions are the
 * Go trampolines exported in hooks.go, and the destructor (user_free) deletes
 * the cgo.Handle when the runtime drops the hook. m NULL: a global hook of
 * ctx. flags: NNM_HOOK_*. */
nnm_status nnmgo_register_forward_hook(nnm_module *m, nnm_ctx *ctx, uintptr_t handle,
                                       uint32_t flags, nnm_hook_handle **out);
nnm_status nnmgo_register_forward_pre_hook(nnm_module *m, nnm_ctx *ctx, uintptr_t handle,
                                           uint32_t flags, nnm_hook_handle **out);
nnm_status nnmgo_register_full_backward_hook(nnm_module *m, nnm_ctx *ctx, uintptr_t handle,
                                             nnm_hook_handle **out);

/* Visitors collecting borrowed tensors/modules into a growable C array. */
typedef struct nnmgo_named {
    uint32_t n, cap;
    char **names;
    void **items;
} nnmgo_named;
nnm_status nnmgo_named_parameters(nnm_module *m, nnmgo_named *out);
nnm_status nnmgo_named_modules(nnm_module *m, nnmgo_named *out);
void nnmgo_named_free(nnmgo_named *l);

#endif
