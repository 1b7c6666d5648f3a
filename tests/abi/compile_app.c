/* tests/abi/compile_app.c - nnmod.h on its own, as an application uses it.
 * Built as strict C99 and C11 (-pedantic-errors). Taking the address of each
 * kind of callback checks the typedefs line up with real functions. */
#include "nnmod/nnmod.h"

#include <stddef.h>

static nnm_status pre(void *user, nnm_module *m, nnm_tensor **in, uint32_t n_in) {
    (void)user;
    (void)m;
    (void)in;
    (void)n_in;
    return NNM_OK;
}

static nnm_status fwd(void *user, nnm_module *m, nnm_tensor *const *in, uint32_t n_in,
                      nnm_tensor **out, uint32_t n_out) {
    (void)user;
    (void)m;
    (void)in;
    (void)n_in;
    (void)out;
    (void)n_out;
    return NNM_OK;
}

static nnm_status visit(void *user, const char *name, nnm_module *m) {
    (void)user;
    (void)name;
    (void)m;
    return NNM_OK;
}

static void prof(void *user, const nnm_profile_event *ev) {
    (void)user;
    (void)ev;
}

/* Never called: only compiled. */
nnm_status nnm_abi_compile_test_app(nnm_ctx *ctx, nnm_module *m);
nnm_status nnm_abi_compile_test_app(nnm_ctx *ctx, nnm_module *m) {
    nnm_forward_pre_hook_fn p = pre;
    nnm_forward_hook_fn f = fwd;
    nnm_module_visit_fn v = visit;
    nnm_profile_fn pf = prof;
    nnm_ctx_options opts = {sizeof(nnm_ctx_options), NNM_CTX_NO_DISCOVERY, 42};
    nnm_plugin_info info = {sizeof(nnm_plugin_info), 0, NULL, NULL, NULL, 0, 0, 0, 0, 0};
    nnm_status st;
    (void)opts;
    if ((st = nnm_plugin_info_get(ctx, 0, &info)) != NNM_OK)
        return st;
    if ((st = nnm_module_register_forward_pre_hook(m, p, NULL, NULL)) != NNM_OK)
        return st;
    if ((st = nnm_module_register_forward_hook(m, f, NULL, NULL)) != NNM_OK)
        return st;
    if ((st = nnm_ctx_set_profiler(ctx, pf, NULL)) != NNM_OK)
        return st;
    return nnm_module_named_modules(m, v, NULL);
}
