/* plugins/mul/mul.c - the "mul" layer: the elementwise product of all its inputs,
 * out = ((in[0] * in[1]) * in[2]) * ..., with NumPy broadcasting.
 *
 * For gating in a graph ("gated: value, gate", GLU-style). Takes any number (>= 1)
 * of inputs and returns one output; with a single input it returns that
 * tensor itself (one more reference), as identity does. No config; stateless
 * (self is NULL). Forward is host ops only, so autograd and every device come
 * from the runtime.
 */
#include <nnmod/plugin.h>

#include "../common/fold_inputs.h"

static nnm_status mul_create(nnm_env *env, void **self) {
    (void)env;
    *self = NULL;
    return NNM_OK;
}

static nnm_status mul_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in,
                              nnm_tensor **out, uint32_t n_out) {
    (void)self;
    return nnm_fold_inputs(env, "mul", NNM_BINARY_MUL, in, n_in, out, n_out);
}

/* No config keys: an empty schema (not NULL), so the runtime refuses any key
 * before create. */
static const nnm_config_field mul_config[1] = {{NULL, 0, 0, NULL}};

static const nnm_layer_vtable mul_layer = {
    .struct_size = sizeof(nnm_layer_vtable),
    .flags = 0,
    .name = "mul",
    .version_major = 1,
    .version_minor = 0,
    .version_patch = 0,
    .n_inputs = NNM_ARITY_ANY,
    .n_outputs = 1,
    .create = mul_create,
    .destroy = NULL,
    .forward = mul_forward,
    .extra_repr = NULL,
    .config_fields = mul_config,
    .n_config_fields = 0,
};

static const nnm_layer_vtable *const mul_layers[] = {&mul_layer};

static const nnm_plugin_desc mul_plugin = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
    .name = "mul",
    .description = "Elementwise product of all inputs, with broadcasting (gating)",
    .n_layers = 1,
    .n_backends = 0,
    .layers = mul_layers,
    .backends = NULL,
    .domain = NNM_DOMAIN_NNMOD, /* nnmod's own library: the plain names */
};

NNM_PLUGIN_DEFINE(mul_plugin)
