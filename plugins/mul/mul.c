/* plugins/mul/mul.c - the "mul" layer: the elementwise product of all its inputs,
 * out = ((in[0] * in[1]) * in[2]) * ..., with NumPy broadcasting.
 *
 * For gating in a graph ("gated: value, gate", GLU-style). Takes any number (>= 1)
 * of inputs and returns one output; with a single input it returns that
 * tensor itself (one more reference), as identity does. Without config it is
 * stateless (self is NULL). Forward is host ops only, so autograd and every device come
 * from the runtime.
 *
 * Config (1.1, optional; a manifest without it behaves as 1.0):
 *   other  float: one input times a Python scalar, x * other
 */
#include <nnmod/plugin.h>

#include <stdio.h>
#include <stdlib.h>

#include "../common/fold_inputs.h"
#include "../common/layer_util.h"

/* Present only when the config has `other` (else self is NULL). */
typedef struct mul_state {
    int has_other;
    double other;
} mul_state;

static nnm_status mul_create(nnm_env *env, void **self) {
    const nnm_host *h = env->host;
    *self = NULL;
    int32_t type = -1;
    if (h->config_type(env, "other", &type) != NNM_OK)
        return NNM_OK; /* 1.0 behaviour: stateless */
    mul_state s = {1, 0.0};
    nnm_status st = h->config_float(env, "other", NULL, &s.other);
    if (st) return st;
    mul_state *p = malloc(sizeof *p);
    if (!p) return h->set_error(env, NNM_E_NOMEM, "mul: out of memory");
    *p = s;
    *self = p;
    return NNM_OK;
}

static void mul_destroy(void *self) {
    free(self);
}

static nnm_status mul_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in,
                              nnm_tensor **out, uint32_t n_out) {
    const nnm_host *h = env->host;
    const mul_state *s = self;
    if (s == NULL)
        return nnm_fold_inputs(env, "mul", NNM_BINARY_MUL, in, n_in, out, n_out);
    if (n_in != 1 || n_out != 1 || in == NULL || out == NULL || in[0] == NULL)
        return h->set_error(env, NNM_E_SHAPE, "mul: with other, mul takes 1 input and returns 1 output, got %u and %u",
                            (unsigned)n_in, (unsigned)n_out);
    out[0] = NULL;
    return h->op_unary(env, NNM_UNARY_SCALE, in[0], s->other, out); /* x * other */
}

static int mul_extra_repr(void *self, char *buf, size_t cap) {
    const mul_state *s = self;
    char a[40];
    if (s == NULL)
        return snprintf(buf, cap, "%s", "");
    nnm_lu_pyfloat(a, sizeof a, s->other);
    return snprintf(buf, cap, "other=%s", a);
}

/* Optional keys (1.1); a manifest of 1.0 has none. */
static const nnm_config_field mul_config[] = {
    {"other", NNM_CONFIG_FLOAT, 0, "a scalar operand: one input, x * other"},
};

static const nnm_layer_vtable mul_layer = {
    .struct_size = sizeof(nnm_layer_vtable),
    .flags = 0,
    .name = "mul",
    .version_major = 1,
    .version_minor = 1,
    .version_patch = 0,
    .n_inputs = NNM_ARITY_ANY,
    .n_outputs = 1,
    .create = mul_create,
    .destroy = mul_destroy,
    .forward = mul_forward,
    .extra_repr = mul_extra_repr,
    .config_fields = mul_config,
    .n_config_fields = 1,
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
