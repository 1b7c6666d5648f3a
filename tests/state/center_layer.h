/* tests/state/center_layer.h - the "center" test layer, registered
 * statically by the state suites: y = x - running_mean, like the Center
 * module of tests/golden/make_state_golden.py. It holds a persistent buffer
 * (running_mean, in the state dict) and a non-persistent one (scratch, not),
 * so the suites can check what a state dict includes. Header-only; include
 * it once per suite, then nnm_plugin_register_static(ctx, &center_plugin,
 * ...). */
#ifndef NNM_TESTS_STATE_CENTER_LAYER_H
#define NNM_TESTS_STATE_CENTER_LAYER_H

#include <nnmod/plugin.h>

#include <stdlib.h>

typedef struct center_state {
    nnm_tensor *mean;
} center_state;

static nnm_status center_create(nnm_env *env, void **self) {
    const nnm_host *h = env->host;
    *self = NULL;
    int64_t f;
    nnm_status st = h->config_int(env, "features", NULL, &f);
    if (st) return st;
    center_state *s = malloc(sizeof *s);
    if (!s) return h->set_error(env, NNM_E_NOMEM, "center: out of memory");
    const int64_t shape[1] = {f};
    nnm_tensor *scratch;
    if ((st = h->buffer_new(env, "running_mean", 1, shape, NNM_INIT_ZEROS, 0, 1, &s->mean)) ||
        (st = h->buffer_new(env, "scratch", 1, shape, NNM_INIT_ZEROS, 0, 0, &scratch))) {
        free(s);
        return st;
    }
    *self = s;
    return NNM_OK;
}

static void center_destroy(void *self) { free(self); }

static nnm_status center_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in,
                                 nnm_tensor **out, uint32_t n_out) {
    const center_state *s = self;
    (void)n_in;
    (void)n_out;
    return env->host->op_binary(env, NNM_BINARY_SUB, in[0], s->mean, &out[0]);
}

static const nnm_layer_vtable center_layer = {
    .struct_size = sizeof(nnm_layer_vtable),
    .name = "center",
    .version_major = 1,
    .n_inputs = 1,
    .n_outputs = 1,
    .create = center_create,
    .destroy = center_destroy,
    .forward = center_forward,
};
static const nnm_layer_vtable *const center_layers[] = {&center_layer};
static const nnm_plugin_desc center_plugin = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
    .name = "test_state_center",
    .description = "the center test layer (tests/state/center_layer.h)",
    .n_layers = 1,
    .layers = center_layers,
};

#endif
