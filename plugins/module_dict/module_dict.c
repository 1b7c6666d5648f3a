/* plugins/module_dict/module_dict.c - the "module_dict" container
 * (torch.nn.ModuleDict).
 *
 * Holds children under the names they were added with (nnm_module_add_child
 * with a name; [A-Za-z0-9_], unique), so their parameters are named like
 * PyTorch's ("blocks.encoder.weight"). Like nn.ModuleDict it has no forward:
 * calling it fails with NNM_E_UNSUPPORTED; call its children instead
 * (nnm_module_get). No config; stateless (self is NULL).
 */
#include <nnmod/plugin.h>

static nnm_status module_dict_create(nnm_env *env, void **self) {
    (void)env;
    *self = NULL;
    return NNM_OK;
}

static nnm_status module_dict_forward(nnm_env *env, void *self, nnm_tensor *const *in,
                                      uint32_t n_in, nnm_tensor **out, uint32_t n_out) {
    (void)self;
    (void)in;
    (void)n_in;
    for (uint32_t i = 0; out != NULL && i < n_out; i++)
        out[i] = NULL;
    return env->host->set_error(env, NNM_E_UNSUPPORTED,
                                "module_dict is not callable: call its children "
                                "(torch.nn.ModuleDict has no forward)");
}

/* No config keys: an empty schema (not NULL), so the runtime refuses any key
 * before create. */
static const nnm_config_field module_dict_config[1] = {{NULL, 0, 0, NULL}};

static const nnm_layer_vtable module_dict_layer = {
    .struct_size = sizeof(nnm_layer_vtable),
    .flags = NNM_LAYER_CONTAINER,
    .name = "module_dict",
    .version_major = 1,
    .version_minor = 0,
    .version_patch = 0,
    .n_inputs = NNM_ARITY_ANY,
    .n_outputs = NNM_ARITY_ANY,
    .create = module_dict_create,
    .destroy = NULL,
    .forward = module_dict_forward,
    .extra_repr = NULL,
    .config_fields = module_dict_config,
    .n_config_fields = 0,
};

static const nnm_layer_vtable *const module_dict_layers[] = {&module_dict_layer};

static const nnm_plugin_desc module_dict_plugin = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
    .name = "module_dict",
    .description = "ModuleDict container (torch.nn.ModuleDict): holds named children, no forward",
    .n_layers = 1,
    .n_backends = 0,
    .layers = module_dict_layers,
    .backends = NULL,
};

NNM_PLUGIN_DEFINE(module_dict_plugin)
