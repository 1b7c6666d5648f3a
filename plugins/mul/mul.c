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

static nnm_status mul_create(nnm_env *env, void **self) {
    (void)env;
    *self = NULL;
    return NNM_OK;
}

static nnm_status mul_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in,
                              nnm_tensor **out, uint32_t n_out) {
    const nnm_host *h = env->host;
    (void)self;
    if (n_in < 1 || n_out != 1 || in == NULL || out == NULL)
        return h->set_error(env, NNM_E_SHAPE,
                            "mul takes at least 1 input and returns 1 output, got %u and %u",
                            (unsigned)n_in, (unsigned)n_out);
    out[0] = NULL;
    for (uint32_t i = 0; i < n_in; i++)
        if (in[i] == NULL)
            return h->set_error(env, NNM_E_INVALID, "mul: input %u is NULL", (unsigned)i);
    nnm_tensor *acc = in[0]; /* borrowed while it is in[0] */
    if (n_in == 1) {
        h->tensor_retain(acc);
        out[0] = acc;
        return NNM_OK;
    }
    for (uint32_t i = 1; i < n_in; i++) {
        nnm_tensor *next = NULL;
        nnm_status st = h->op_binary(env, NNM_BINARY_MUL, acc, in[i], &next);
        if (i > 1)
            h->tensor_release(acc); /* a product made by the previous step */
        if (st != NNM_OK) {
            h->tensor_release(next); /* NULL on failure by contract; be safe */
            return st;               /* the op has set the message */
        }
        acc = next;
    }
    out[0] = acc;
    return NNM_OK;
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
};

NNM_PLUGIN_DEFINE(mul_plugin)
