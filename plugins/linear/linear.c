/* plugins/linear/linear.c - the "linear" layer (torch.nn.Linear): y = x @ W^T + b.
 *
 * Config:
 *   in_features  int, required, > 0
 *   out_features int, required, > 0
 *   bias         bool, default true
 * Parameters (named as in PyTorch's state_dict):
 *   weight [out_features, in_features]  U(-1/sqrt(in), 1/sqrt(in)), which is
 *          kaiming_uniform_(a=sqrt(5)), PyTorch's default
 *   bias   [out_features]               U(-1/sqrt(in), 1/sqrt(in))
 * Input 0 is [..., in_features] (any number of leading dims); output 0 is
 * [..., out_features]. Forward is one host op, so autograd and every device
 * come from the runtime.
 *
 * "non_dynamically_quantizable_linear" is the same layer under the class
 * PyTorch gives MultiheadAttention's out_proj
 * (torch.nn.modules.linear.NonDynamicallyQuantizableLinear), so a
 * transformer layer prints as PyTorch prints it.
 */
#include <nnmod/plugin.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct linear_state {
    int64_t in_features;
    int64_t out_features;
    int bias;
    nnm_tensor *weight; /* borrowed: owned by the module */
    nnm_tensor *b;      /* borrowed; NULL without bias */
} linear_state;

/* Largest feature count accepted, so out*in stays far from overflow. */
#define LINEAR_MAX_FEATURES ((int64_t)1 << 31)

static nnm_status linear_read_features(nnm_env *env, const char *key, int64_t *out) {
    const nnm_host *h = env->host;
    nnm_status st = h->config_int(env, key, NULL, out);
    if (st != NNM_OK)
        return st; /* the host named the key and the problem */
    if (*out <= 0)
        return h->set_error(env, NNM_E_INVALID, "%s must be > 0, got %lld", key, (long long)*out);
    if (*out > LINEAR_MAX_FEATURES)
        return h->set_error(env, NNM_E_LIMIT, "%s must be <= %lld, got %lld", key,
                            (long long)LINEAR_MAX_FEATURES, (long long)*out);
    return NNM_OK;
}

static nnm_status linear_create(nnm_env *env, void **self) {
    const nnm_host *h = env->host;
    *self = NULL;
    linear_state s = {0};
    nnm_status st = linear_read_features(env, "in_features", &s.in_features);
    if (st != NNM_OK)
        return st;
    st = linear_read_features(env, "out_features", &s.out_features);
    if (st != NNM_OK)
        return st;
    const int dflt_bias = 1;
    st = h->config_bool(env, "bias", &dflt_bias, &s.bias);
    if (st != NNM_OK)
        return st;
    s.bias = s.bias != 0;
    if (s.out_features > INT64_MAX / s.in_features)
        return h->set_error(env, NNM_E_LIMIT, "weight of %lld x %lld elements is too large",
                            (long long)s.out_features, (long long)s.in_features);

    const double bound = 1.0 / sqrt((double)s.in_features);
    const int64_t wshape[2] = {s.out_features, s.in_features};
    st = h->param_new(env, "weight", 2, wshape, NNM_INIT_UNIFORM, -bound, bound, &s.weight);
    if (st != NNM_OK)
        return st;
    if (s.bias) {
        const int64_t bshape[1] = {s.out_features};
        st = h->param_new(env, "bias", 1, bshape, NNM_INIT_UNIFORM, -bound, bound, &s.b);
        if (st != NNM_OK)
            return st;
    }
    const int64_t dims[1] = {s.in_features};
    st = h->input_spec(env, 0, 1, dims, NNM_SPEC_LEADING_ANY);
    if (st != NNM_OK)
        return st;

    linear_state *p = malloc(sizeof *p);
    if (p == NULL)
        return h->set_error(env, NNM_E_NOMEM, "out of memory for the linear layer's state");
    *p = s;
    *self = p;
    return NNM_OK;
}

static void linear_destroy(void *self) {
    free(self);
}

static nnm_status linear_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in,
                                 nnm_tensor **out, uint32_t n_out) {
    const nnm_host *h = env->host;
    const linear_state *s = self;
    if (s == NULL)
        return h->set_error(env, NNM_E_STATE, "linear: forward without state");
    if (n_in != 1 || n_out != 1 || in == NULL || out == NULL || in[0] == NULL)
        return h->set_error(env, NNM_E_SHAPE, "linear takes 1 input and 1 output, got %u and %u",
                            (unsigned)n_in, (unsigned)n_out);
    return h->op_linear(env, in[0], s->weight, s->b, &out[0]);
}

static int linear_extra_repr(void *self, char *buf, size_t cap) {
    const linear_state *s = self;
    if (s == NULL)
        return snprintf(buf, cap, "%s", "");
    return snprintf(buf, cap, "in_features=%lld, out_features=%lld, bias=%s",
                    (long long)s->in_features, (long long)s->out_features,
                    s->bias ? "True" : "False");
}

/* The config schema: the runtime checks keys and types before create. */
static const nnm_config_field linear_config[] = {
    {"in_features", NNM_CONFIG_INT, NNM_CONFIG_REQUIRED, "size of each input sample (> 0)"},
    {"out_features", NNM_CONFIG_INT, NNM_CONFIG_REQUIRED, "size of each output sample (> 0)"},
    {"bias", NNM_CONFIG_BOOL, 0, "learn an additive bias (default true)"},
};

static const nnm_layer_vtable linear_layer = {
    .struct_size = sizeof(nnm_layer_vtable),
    .flags = 0,
    .name = "linear",
    .version_major = 1,
    .version_minor = 0,
    .version_patch = 0,
    .n_inputs = 1,
    .n_outputs = 1,
    .create = linear_create,
    .destroy = linear_destroy,
    .forward = linear_forward,
    .extra_repr = linear_extra_repr,
    .config_fields = linear_config,
    .n_config_fields = sizeof linear_config / sizeof linear_config[0],
};

static const nnm_layer_vtable ndq_linear_layer = {
    .struct_size = sizeof(nnm_layer_vtable),
    .flags = 0,
    .name = "non_dynamically_quantizable_linear",
    .display_name = "NonDynamicallyQuantizableLinear",
    .version_major = 1,
    .version_minor = 0,
    .version_patch = 0,
    .n_inputs = 1,
    .n_outputs = 1,
    .create = linear_create,
    .destroy = linear_destroy,
    .forward = linear_forward,
    .extra_repr = linear_extra_repr,
    .config_fields = linear_config,
    .n_config_fields = sizeof linear_config / sizeof linear_config[0],
};

static const nnm_layer_vtable *const linear_layers[] = {&linear_layer, &ndq_linear_layer};

static const nnm_plugin_desc linear_plugin = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
    .name = "linear",
    .description = "Linear layer (torch.nn.Linear): y = x @ W^T + b",
    .n_layers = 2,
    .n_backends = 0,
    .layers = linear_layers,
    .backends = NULL,
    .domain = NNM_DOMAIN_NNMOD, /* nnmod's own library: the plain names */
};

NNM_PLUGIN_DEFINE(linear_plugin)
