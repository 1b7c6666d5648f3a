/* plugins/relu/relu.c - the "relu" layer (torch.nn.ReLU): y = max(x, 0).
 *
 * Stateless (self is NULL); any input shape; forward is one host op, so
 * autograd and every device come from the runtime.
 */
#include <nnmod/plugin.h>

static nnm_status relu_create(nnm_env *env, void **self) {
    (void)env;
    *self = NULL;
    return NNM_OK;
}

static nnm_status relu_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in,
                               nnm_tensor **out, uint32_t n_out) {
    const nnm_host *h = env->host;
    (void)self;
    if (n_in != 1 || n_out != 1 || in == NULL || out == NULL || in[0] == NULL)
        return h->set_error(env, NNM_E_SHAPE, "relu takes 1 input and 1 output, got %u and %u",
                            (unsigned)n_in, (unsigned)n_out);
    return h->op_unary(env, NNM_UNARY_RELU, in[0], 0.0, &out[0]);
}

/* No config keys: an empty schema (not NULL), so the runtime refuses any key
 * before create. */
static const nnm_config_field relu_config[1] = {{NULL, 0, 0, NULL}};

static const nnm_layer_vtable relu_layer = {
    .struct_size = sizeof(nnm_layer_vtable),
    .flags = 0,
    .name = "relu",
    .display_name = "ReLU",
    .version_major = 1,
    .version_minor = 0,
    .version_patch = 0,
    .n_inputs = 1,
    .n_outputs = 1,
    .create = relu_create,
    .destroy = NULL,
    .forward = relu_forward,
    .extra_repr = NULL,
    .config_fields = relu_config,
    .n_config_fields = 0,
};

static const nnm_layer_vtable *const relu_layers[] = {&relu_layer};

static const nnm_plugin_desc relu_plugin = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
    .name = "relu",
    .description = "ReLU activation (torch.nn.ReLU)",
    .n_layers = 1,
    .n_backends = 0,
    .layers = relu_layers,
    .backends = NULL,
    .domain = NNM_DOMAIN_NNMOD, /* nnmod's own library: the plain names */
};

NNM_PLUGIN_DEFINE(relu_plugin)
