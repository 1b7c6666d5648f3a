/* plugins/module_list/module_list.c - the "module_list" container
 * (torch.nn.ModuleList).
 *
 * Holds children under the names "0", "1", ... (nnm_module_add_child with a
 * NULL name), so their parameters are named like PyTorch's
 * ("layers.0.weight"). Like nn.ModuleList it has no forward: calling it fails
 * with NNM_E_UNSUPPORTED; call its children instead (nnm_module_child,
 * nnm_module_get). No config; stateless (self is NULL).
 */
#include <nnmod/plugin.h>

static nnm_status module_list_create(nnm_env *env, void **self) {
    (void)env;
    *self = NULL;
    return NNM_OK;
}

static nnm_status module_list_forward(nnm_env *env, void *self, nnm_tensor *const *in,
                                      uint32_t n_in, nnm_tensor **out, uint32_t n_out) {
    (void)self;
    (void)in;
    (void)n_in;
    for (uint32_t i = 0; out != NULL && i < n_out; i++)
        out[i] = NULL;
    return env->host->set_error(env, NNM_E_UNSUPPORTED,
                                "module_list is not callable: call its children "
                                "(torch.nn.ModuleList has no forward)");
}

/* No config keys: an empty schema (not NULL), so the runtime refuses any key
 * before create. */
static const nnm_config_field module_list_config[1] = {{NULL, 0, 0, NULL}};

static const nnm_layer_vtable module_list_layer = {
    .struct_size = sizeof(nnm_layer_vtable),
    .flags = NNM_LAYER_CONTAINER,
    .name = "module_list",
    .version_major = 1,
    .version_minor = 0,
    .version_patch = 0,
    .n_inputs = NNM_ARITY_ANY,
    .n_outputs = NNM_ARITY_ANY,
    .create = module_list_create,
    .destroy = NULL,
    .forward = module_list_forward,
    .extra_repr = NULL,
    .config_fields = module_list_config,
    .n_config_fields = 0,
};

static const nnm_layer_vtable *const module_list_layers[] = {&module_list_layer};

static const nnm_plugin_desc module_list_plugin = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
    .name = "module_list",
    .description = "ModuleList container (torch.nn.ModuleList): holds children, no forward",
    .n_layers = 1,
    .n_backends = 0,
    .layers = module_list_layers,
    .backends = NULL,
};

NNM_PLUGIN_DEFINE(module_list_plugin)
