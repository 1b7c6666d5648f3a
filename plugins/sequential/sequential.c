/* plugins/sequential/sequential.c - the "sequential" container
 * (torch.nn.Sequential).
 *
 * Calls children 0..n-1 in order through host->child_call (so each child's
 * hooks, mode and profiling apply), feeding each child's single output to the
 * next and releasing the intermediates as it goes. With no children it returns
 * its input itself (one more reference), like an empty nn.Sequential.
 * Stateless (self is NULL); the children belong to the module tree.
 */
#include <nnmod/plugin.h>

static nnm_status sequential_create(nnm_env *env, void **self) {
    (void)env;
    *self = NULL;
    return NNM_OK;
}

static nnm_status sequential_forward(nnm_env *env, void *self, nnm_tensor *const *in,
                                     uint32_t n_in, nnm_tensor **out, uint32_t n_out) {
    const nnm_host *h = env->host;
    (void)self;
    if (n_in != 1 || n_out != 1 || in == NULL || out == NULL || in[0] == NULL)
        return h->set_error(env, NNM_E_SHAPE,
                            "sequential takes 1 input and 1 output, got %u and %u",
                            (unsigned)n_in, (unsigned)n_out);
    out[0] = NULL;
    const uint32_t n = h->child_count(env);
    nnm_tensor *cur = in[0]; /* borrowed while owned == NULL */
    nnm_tensor *owned = NULL;
    for (uint32_t i = 0; i < n; i++) {
        nnm_tensor *next = NULL;
        nnm_status st = h->child_call(env, i, &cur, 1, &next, 1);
        h->tensor_release(owned);
        if (st != NNM_OK) {
            h->tensor_release(next); /* NULL on failure by contract; be safe */
            return st;               /* the call path has set the message */
        }
        if (next == NULL)
            return h->set_error(env, NNM_E_PLUGIN, "sequential: child %u returned no output",
                                (unsigned)i);
        owned = next;
        cur = next;
    }
    if (n == 0) {
        h->tensor_retain(cur); /* no children: the input itself */
        owned = cur;
    }
    out[0] = owned;
    return NNM_OK;
}

/* No config keys: an empty schema (not NULL), so the runtime refuses any key
 * before create. */
static const nnm_config_field sequential_config[1] = {{NULL, 0, 0, NULL}};

static const nnm_layer_vtable sequential_layer = {
    .struct_size = sizeof(nnm_layer_vtable),
    .flags = NNM_LAYER_CONTAINER,
    .name = "sequential",
    .version_major = 1,
    .version_minor = 0,
    .version_patch = 0,
    .n_inputs = 1,
    .n_outputs = 1,
    .create = sequential_create,
    .destroy = NULL,
    .forward = sequential_forward,
    .extra_repr = NULL,
    .config_fields = sequential_config,
    .n_config_fields = 0,
};

static const nnm_layer_vtable *const sequential_layers[] = {&sequential_layer};

static const nnm_plugin_desc sequential_plugin = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
    .name = "sequential",
    .description = "Sequential container (torch.nn.Sequential)",
    .n_layers = 1,
    .n_backends = 0,
    .layers = sequential_layers,
    .backends = NULL,
    .domain = NNM_DOMAIN_NNMOD, /* nnmod's own library: the plain names */
};

NNM_PLUGIN_DEFINE(sequential_plugin)
