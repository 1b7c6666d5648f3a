/* example_swish - a third-party layer plugin for nnmod.
 *
 *   swish(x) = x * sigmoid(beta * x)        (Ramachandran et al., 2017)
 *
 * Config:
 *   beta        float, default 1.0   the slope inside the sigmoid
 *   learn_beta  bool,  default false declare beta as a parameter (shape [1],
 *                                    named "beta" in the state dict) instead
 *                                    of a constant
 *
 * The layer computes only with the host's ops (op_unary, op_binary), so it
 * runs on every device that has a backend and gets autograd from the runtime.
 * It includes nnmod/plugin.h and nothing else of nnmod, and links nothing.
 */
#include <stdio.h>
#include <stdlib.h>

#include "nnmod/plugin.h"

typedef struct swish {
    double beta;
    nnm_tensor *beta_param; /* borrowed from the module; NULL unless learn_beta */
} swish;

/* Parses the config once and declares the parameter. The runtime owns the
 * parameter; we own `s`, freed in swish_destroy. */
static nnm_status swish_create(nnm_env *env, void **self) {
    const nnm_host *h = env->host;
    const double one = 1.0;
    const int no = 0;
    double beta;
    int learn;
    nnm_status st;

    if ((st = h->config_float(env, "beta", &one, &beta)) != NNM_OK)
        return st; /* the host already set a message naming the key */
    if ((st = h->config_bool(env, "learn_beta", &no, &learn)) != NNM_OK)
        return st;

    swish *s = calloc(1, sizeof *s);
    if (!s)
        return h->set_error(env, NNM_E_NOMEM, "swish: out of memory");
    s->beta = beta;
    if (learn) {
        const int64_t shape[1] = {1};
        st = h->param_new(env, "beta", 1, shape, NNM_INIT_CONSTANT, beta, 0.0, &s->beta_param);
        if (st != NNM_OK) {
            free(s);
            return st;
        }
    }
    *self = s;
    return NNM_OK;
}

static void swish_destroy(void *self) {
    free(self);
}

/* out[0] = x * sigmoid(beta * x). Each op hands back a new reference; the
 * intermediates are released here, out[0] goes to the caller. */
static nnm_status swish_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in,
                                nnm_tensor **out, uint32_t n_out) {
    const nnm_host *h = env->host;
    const swish *s = self;
    nnm_tensor *bx = NULL, *sig = NULL;
    nnm_status st;
    (void)n_in;
    (void)n_out; /* the runtime checked both against n_inputs/n_outputs */

    if (s->beta_param)
        st = h->op_binary(env, NNM_BINARY_MUL, in[0], s->beta_param, &bx); /* broadcasts [1] */
    else
        st = h->op_unary(env, NNM_UNARY_SCALE, in[0], s->beta, &bx);
    if (st == NNM_OK)
        st = h->op_unary(env, NNM_UNARY_SIGMOID, bx, 0.0, &sig);
    if (st == NNM_OK)
        st = h->op_binary(env, NNM_BINARY_MUL, in[0], sig, &out[0]);
    h->tensor_release(sig);
    h->tensor_release(bx);
    return st;
}

static int swish_extra_repr(void *self, char *buf, size_t cap) {
    const swish *s = self;
    return snprintf(buf, cap, "beta=%g%s", s->beta, s->beta_param ? ", learn_beta=True" : "");
}

/* The config schema (ABI 1.2): the runtime refuses unknown keys and wrong
 * types before create runs, and a manifest's message names the path
 * ("root.children[1].config.beta: expected float, got string"). */
static const nnm_config_field swish_config[] = {
    {"beta", NNM_CONFIG_FLOAT, 0, "slope: x * sigmoid(beta * x) (default 1)"},
    {"learn_beta", NNM_CONFIG_BOOL, 0, "make beta a learned parameter (default false)"},
};

static const nnm_layer_vtable swish_layer = {
    .struct_size = sizeof(nnm_layer_vtable),
    .flags = 0,
    .name = "swish",
    .version_major = 1, /* the maths version: bump major if outputs change */
    .version_minor = 0,
    .version_patch = 0,
    .n_inputs = 1,
    .n_outputs = 1,
    .create = swish_create,
    .destroy = swish_destroy,
    .forward = swish_forward,
    .extra_repr = swish_extra_repr,
    .config_fields = swish_config,
    .n_config_fields = sizeof swish_config / sizeof swish_config[0],
    .display_name = "Swish",
};

static const nnm_layer_vtable *const layers[] = {&swish_layer};

static const nnm_plugin_desc desc = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
    .name = "example_swish",
    .description = "swish(x) = x * sigmoid(beta * x), an out-of-tree example",
    .n_layers = 1,
    .n_backends = 0,
    .layers = layers,
    .backends = NULL,
    /* (ABI 1.5) the domain that qualifies the layer names: applications ask
     * for "example.swish", which no other provider's "swish" can take. */
    .domain = "example",
};

/* The one exported symbol: returns &desc to a host of the same ABI major. */
NNM_PLUGIN_DEFINE(desc)
