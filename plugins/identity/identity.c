/* plugins/identity/identity.c - the "identity" layer (torch.nn.Identity).
 *
 * Stateless (self is NULL). Returns its input itself, not a copy: out[0] is
 * in[0] with one more reference, as PyTorch's Identity returns the same tensor.
 */
#include <nnmod/plugin.h>

static nnm_status identity_create(nnm_env *env, void **self) {
    (void)env;
    *self = NULL;
    return NNM_OK;
}

static nnm_status identity_forward(nnm_env *env, void *self, nnm_tensor *const *in,
                                   uint32_t n_in, nnm_tensor **out, uint32_t n_out) {
    const nnm_host *h = env->host;
    (void)self;
    if (n_in != 1 || n_out != 1 || in == NULL || out == NULL || in[0] == NULL)
        return h->set_error(env, NNM_E_SHAPE,
                            "identity takes 1 input and 1 output, got %u and %u", (unsigned)n_in,
                            (unsigned)n_out);
    h->tensor_retain(in[0]);
    out[0] = in[0];
    return NNM_OK;
}

/* No config keys: an empty schema (not NULL), so the runtime refuses any key
 * before create. */
static const nnm_config_field identity_config[1] = {{NULL, 0, 0, NULL}};

static const nnm_layer_vtable identity_layer = {
    .struct_size = sizeof(nnm_layer_vtable),
    .flags = 0,
    .name = "identity",
    .version_major = 1,
    .version_minor = 0,
    .version_patch = 0,
    .n_inputs = 1,
    .n_outputs = 1,
    .create = identity_create,
    .destroy = NULL,
    .forward = identity_forward,
    .extra_repr = NULL,
    .config_fields = identity_config,
    .n_config_fields = 0,
};

static const nnm_layer_vtable *const identity_layers[] = {&identity_layer};

static const nnm_plugin_desc identity_plugin = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
    .name = "identity",
    .description = "Identity (torch.nn.Identity): returns its input tensor",
    .n_layers = 1,
    .n_backends = 0,
    .layers = identity_layers,
    .backends = NULL,
    .domain = NNM_DOMAIN_NNMOD, /* nnmod's own library: the plain names */
};

NNM_PLUGIN_DEFINE(identity_plugin)
