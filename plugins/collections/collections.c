/* plugins/collections/collections.c - the containers that hold modules
 * without calling them: "module_list" (torch.nn.ModuleList) and
 * "module_dict" (torch.nn.ModuleDict).
 *
 * module_list holds children under the names "0", "1", ...
 * (nnm_module_add_child with a NULL name); module_dict under the names they
 * were added with (any name the runtime takes: non-empty, no '.', no
 * control characters; unique). Either way their parameters are
 * named like PyTorch's ("layers.0.weight", "heads.cls.bias"). Like their
 * PyTorch counterparts they have no forward: calling one fails with
 * NNM_E_UNSUPPORTED; call the children instead (nnm_module_get, or a graph
 * node naming "heads.cls"). No config; stateless (self is NULL).
 */
#include <nnmod/plugin.h>

static nnm_status holder_create(nnm_env *env, void **self) {
    (void)env;
    *self = NULL;
    return NNM_OK;
}

static nnm_status refuse_call(nnm_env *env, nnm_tensor **out, uint32_t n_out, const char *type,
                              const char *torch_class) {
    for (uint32_t i = 0; out != NULL && i < n_out; i++) out[i] = NULL;
    return env->host->set_error(env, NNM_E_UNSUPPORTED,
                                "%s is not callable: call its children (torch.nn.%s has no forward)",
                                type, torch_class);
}

static nnm_status module_list_forward(nnm_env *env, void *self, nnm_tensor *const *in,
                                      uint32_t n_in, nnm_tensor **out, uint32_t n_out) {
    (void)self, (void)in, (void)n_in;
    return refuse_call(env, out, n_out, "module_list", "ModuleList");
}

static nnm_status module_dict_forward(nnm_env *env, void *self, nnm_tensor *const *in,
                                      uint32_t n_in, nnm_tensor **out, uint32_t n_out) {
    (void)self, (void)in, (void)n_in;
    return refuse_call(env, out, n_out, "module_dict", "ModuleDict");
}

/* No config keys: an empty schema (not NULL), so the runtime refuses any key
 * before create. */
static const nnm_config_field no_config[1] = {{NULL, 0, 0, NULL}};

#define HOLDER_LAYER(var, lname, display, forward_fn)                                    \
    static const nnm_layer_vtable var = {                                                \
        .struct_size = sizeof(nnm_layer_vtable),                                         \
        .flags = NNM_LAYER_CONTAINER,                                                    \
        .name = lname,                                                                   \
        .version_major = 1,                                                              \
        .version_minor = 0,                                                              \
        .version_patch = 0,                                                              \
        .n_inputs = NNM_ARITY_ANY,                                                       \
        .n_outputs = NNM_ARITY_ANY,                                                      \
        .create = holder_create,                                                         \
        .forward = forward_fn,                                                           \
        .config_fields = no_config,                                                      \
        .n_config_fields = 0,                                                            \
        .display_name = display,                                                         \
    }

HOLDER_LAYER(module_list_layer, "module_list", "ModuleList", module_list_forward);
HOLDER_LAYER(module_dict_layer, "module_dict", "ModuleDict", module_dict_forward);

static const nnm_layer_vtable *const collection_layers[] = {&module_list_layer,
                                                            &module_dict_layer};

static const nnm_plugin_desc collections_plugin = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
    .name = "collections",
    .description = "ModuleList and ModuleDict (hold children, no forward)",
    .n_layers = 2,
    .n_backends = 0,
    .layers = collection_layers,
    .backends = NULL,
};

NNM_PLUGIN_DEFINE(collections_plugin)
