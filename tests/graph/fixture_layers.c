/* tests/graph/fixture_layers.c - layers built only for the graph suite, to
 * wire multi-input, multi-output and input-less nodes. One plugin,
 * "graph_fixtures", loaded by path (never installed):
 *
 *   fx_fork   1 input, 2 outputs: out[0] = x itself (one more reference),
 *             out[1] = 2 * x
 *   fx_fan    1 input, NNM_ARITY_ANY outputs: out[i] = (i + 1) * x
 *   fx_sub    2 inputs, 1 output: a - b (so input order shows)
 *   fx_const  no input, 1 output: a new [1] tensor {5} (CPU only)
 *   fx_any    1 input, 1 output, the input itself; declares no config schema
 *             (config_fields NULL) and reads, when present, "n" (int), "slope"
 *             (float), "fs" (floats), "s" (string), "ss" (strings), and an
 *             int under the name that "key" (string) gives: any key at all
 *   fx_named  1 input, NNM_ARITY_ANY outputs, each the input itself; hands
 *             config "names" (strings, unchecked) to host->set_output_names,
 *             so the host's own checks are reached
 *
 * No config (empty schemas); stateless. Host ops only, so autograd works.
 */
#include <nnmod/plugin.h>

static nnm_status fx_create(nnm_env *env, void **self) {
    (void)env;
    *self = NULL;
    return NNM_OK;
}

static nnm_status fork_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in,
                               nnm_tensor **out, uint32_t n_out) {
    const nnm_host *h = env->host;
    (void)self;
    if (n_in != 1 || n_out != 2)
        return h->set_error(env, NNM_E_SHAPE, "fx_fork takes 1 input and 2 outputs");
    nnm_status st = h->op_unary(env, NNM_UNARY_SCALE, in[0], 2.0, &out[1]);
    if (st != NNM_OK)
        return st;
    h->tensor_retain(in[0]);
    out[0] = in[0];
    return NNM_OK;
}

static nnm_status fan_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in,
                              nnm_tensor **out, uint32_t n_out) {
    const nnm_host *h = env->host;
    (void)self;
    if (n_in != 1)
        return h->set_error(env, NNM_E_SHAPE, "fx_fan takes 1 input");
    for (uint32_t i = 0; i < n_out; i++) {
        nnm_status st = h->op_unary(env, NNM_UNARY_SCALE, in[0], (double)(i + 1), &out[i]);
        if (st != NNM_OK) {
            for (uint32_t j = 0; j < i; j++) {
                h->tensor_release(out[j]);
                out[j] = NULL;
            }
            return st;
        }
    }
    return NNM_OK;
}

static nnm_status sub_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in,
                              nnm_tensor **out, uint32_t n_out) {
    const nnm_host *h = env->host;
    (void)self;
    if (n_in != 2 || n_out != 1)
        return h->set_error(env, NNM_E_SHAPE, "fx_sub takes 2 inputs and 1 output");
    return h->op_binary(env, NNM_BINARY_SUB, in[0], in[1], &out[0]);
}

static nnm_status const_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in,
                                nnm_tensor **out, uint32_t n_out) {
    const nnm_host *h = env->host;
    (void)self;
    (void)in;
    if (n_in != 0 || n_out != 1)
        return h->set_error(env, NNM_E_SHAPE, "fx_const takes no input and 1 output");
    if (h->device(env).type != NNM_DEVICE_CPU)
        return h->set_error(env, NNM_E_DEVICE, "fx_const runs on the CPU only");
    const int64_t shape[1] = {1};
    nnm_status st = h->tensor_new(env, 1, shape, NNM_F32, &out[0]);
    if (st != NNM_OK)
        return st;
    const nnm_tensor_desc *d = h->tensor_desc(out[0]);
    float *p = (float *)((char *)d->data + d->byte_offset);
    p[0] = 5.0f;
    return NNM_OK;
}

static const nnm_config_field fx_no_config[1] = {{NULL, 0, 0, NULL}};

#define FX_LAYER(var, lname, nin, nout, fwd)                                             \
    static const nnm_layer_vtable var = {                                                \
        .struct_size = sizeof(nnm_layer_vtable),                                         \
        .name = lname,                                                                   \
        .version_major = 1,                                                              \
        .n_inputs = nin,                                                                 \
        .n_outputs = nout,                                                               \
        .create = fx_create,                                                             \
        .forward = fwd,                                                                  \
        .config_fields = fx_no_config,                                                   \
        .n_config_fields = 0,                                                            \
    }

FX_LAYER(fork_layer, "fx_fork", 1, 2, fork_forward);
FX_LAYER(fan_layer, "fx_fan", 1, NNM_ARITY_ANY, fan_forward);
FX_LAYER(sub_layer, "fx_sub", 2, 1, sub_forward);
FX_LAYER(const_layer, "fx_const", 0, 1, const_forward);

static nnm_status any_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in,
                              nnm_tensor **out, uint32_t n_out) {
    (void)self;
    if (n_in != 1 || n_out != 1) return env->host->set_error(env, NNM_E_SHAPE, "fx_any takes 1 input");
    env->host->tensor_retain(in[0]);
    out[0] = in[0];
    return NNM_OK;
}

static nnm_status any_create(nnm_env *env, void **self) {
    const nnm_host *h = env->host;
    int64_t i64 = 0, zero = 0;
    double f = 0.0, fzero = 0.0;
    double fs[8];
    const char *str = NULL, *strs[8];
    size_t n = 0;
    *self = NULL;
    /* every key optional: a missing one is not an error */
    (void)h->config_int(env, "n", &zero, &i64);
    (void)h->config_float(env, "slope", &fzero, &f);
    (void)h->config_floats(env, "fs", fs, 8, &n);
    (void)h->config_str(env, "s", "", &str);
    (void)h->config_strs(env, "ss", strs, 8, &n);
    const char *key = NULL;
    if (h->config_str(env, "key", "", &key) == NNM_OK && key && *key)
        (void)h->config_int(env, key, &zero, &i64);
    return NNM_OK;
}

/* No schema declared: config_fields NULL, as an ABI 1.0/1.1 plugin has. */
static const nnm_layer_vtable any_layer = {
    .struct_size = sizeof(nnm_layer_vtable),
    .name = "fx_any",
    .version_major = 1,
    .n_inputs = 1,
    .n_outputs = 1,
    .create = any_create,
    .forward = any_forward,
};

static nnm_status named_create(nnm_env *env, void **self) {
    const nnm_host *h = env->host;
    const char *names[NNM_MAX_IO + 2];
    size_t n = 0;
    *self = NULL;
    nnm_status st = h->config_strs(env, "names", names, NNM_MAX_IO + 2, &n);
    if (st != NNM_OK)
        return st;
    return h->set_output_names(env, names, (uint32_t)n);
}

static nnm_status named_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in,
                                nnm_tensor **out, uint32_t n_out) {
    (void)self;
    if (n_in != 1)
        return env->host->set_error(env, NNM_E_SHAPE, "fx_named takes 1 input");
    for (uint32_t i = 0; i < n_out; i++) {
        env->host->tensor_retain(in[0]);
        out[i] = in[0];
    }
    return NNM_OK;
}

static const nnm_layer_vtable named_layer = {
    .struct_size = sizeof(nnm_layer_vtable),
    .name = "fx_named",
    .version_major = 1,
    .n_inputs = 1,
    .n_outputs = NNM_ARITY_ANY,
    .create = named_create,
    .forward = named_forward,
};

static const nnm_layer_vtable *const fx_layers[] = {&fork_layer, &fan_layer, &sub_layer,
                                                    &const_layer, &any_layer, &named_layer};

static const nnm_plugin_desc fx_plugin = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
    .name = "graph_fixtures",
    .description = "Test-only layers for the graph suite",
    .n_layers = 6,
    .n_backends = 0,
    .layers = fx_layers,
    .backends = NULL,
};

NNM_PLUGIN_DEFINE(fx_plugin)
