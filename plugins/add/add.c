/* plugins/add/add.c - the "add" layer: the elementwise sum of all its inputs,
 * out = ((in[0] + in[1]) + in[2]) + ..., with NumPy broadcasting.
 *
 * For residual connections in a graph ("sum: fc2, x"). Takes any number (>= 1)
 * of inputs and returns one output; with a single input it returns that
 * tensor itself (one more reference), as identity does. Without config it is
 * stateless (self is NULL). Forward is host ops only, so autograd and every device come
 * from the runtime.
 *
 * Config (1.1, optional; a manifest without them behaves as 1.0):
 *   other  float: one input plus a Python scalar, x + alpha * other
 *   alpha  float, default 1: torch.add(x, y, alpha=a) = x + a * y (two inputs,
 *          or with `other`)
 */
#include <nnmod/plugin.h>

#include <stdio.h>
#include <stdlib.h>

#include "../common/fold_inputs.h"
#include "../common/layer_util.h"

/* Present only when the config has `other` or `alpha` (else self is NULL). */
typedef struct add_state {
    int has_other;
    double other;
    double alpha;
} add_state;

static nnm_status add_create(nnm_env *env, void **self) {
    const nnm_host *h = env->host;
    *self = NULL;
    int32_t type = -1;
    add_state s = {0, 0.0, 1.0};
    const double one = 1.0;
    nnm_status st = h->config_type(env, "other", &type);
    const int has_alpha = h->config_type(env, "alpha", &type) == NNM_OK;
    if (st == NNM_OK) {
        s.has_other = 1;
        if ((st = h->config_float(env, "other", NULL, &s.other))) return st;
    } else if (!has_alpha) {
        return NNM_OK; /* 1.0 behaviour: stateless */
    }
    if ((st = h->config_float(env, "alpha", &one, &s.alpha))) return st;
    add_state *p = malloc(sizeof *p);
    if (!p) return h->set_error(env, NNM_E_NOMEM, "add: out of memory");
    *p = s;
    *self = p;
    return NNM_OK;
}

static void add_destroy(void *self) {
    free(self);
}

static nnm_status add_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in,
                              nnm_tensor **out, uint32_t n_out) {
    const nnm_host *h = env->host;
    const add_state *s = self;
    if (s == NULL || (!s->has_other && s->alpha == 1.0))
        return nnm_fold_inputs(env, "add", NNM_BINARY_ADD, in, n_in, out, n_out);
    const uint32_t want = s->has_other ? 1 : 2;
    if (n_in != want || n_out != 1 || in == NULL || out == NULL || in[0] == NULL || (want == 2 && in[1] == NULL))
        return h->set_error(env, NNM_E_SHAPE, "add: with %s, add takes %u input%s and returns 1 output, got %u and %u",
                            s->has_other ? "other" : "alpha", (unsigned)want, want == 1 ? "" : "s", (unsigned)n_in,
                            (unsigned)n_out);
    out[0] = NULL;
    if (s->has_other) /* x + alpha * other */
        return h->op_unary(env, NNM_UNARY_ADD_SCALAR, in[0], s->alpha * s->other, out);
    nnm_tensor *t = NULL; /* x + alpha * y */
    nnm_status st = h->op_unary(env, NNM_UNARY_SCALE, in[1], s->alpha, &t);
    if (st == NNM_OK)
        st = h->op_binary(env, NNM_BINARY_ADD, in[0], t, out);
    h->tensor_release(t);
    return st;
}

static int add_extra_repr(void *self, char *buf, size_t cap) {
    const add_state *s = self;
    char a[40], b[40];
    if (s == NULL)
        return snprintf(buf, cap, "%s", "");
    nnm_lu_pyfloat(b, sizeof b, s->alpha);
    if (!s->has_other)
        return snprintf(buf, cap, "alpha=%s", b);
    nnm_lu_pyfloat(a, sizeof a, s->other);
    return s->alpha == 1.0 ? snprintf(buf, cap, "other=%s", a) : snprintf(buf, cap, "other=%s, alpha=%s", a, b);
}

/* Optional keys (1.1); a manifest of 1.0 has none. */
static const nnm_config_field add_config[] = {
    {"other", NNM_CONFIG_FLOAT, 0, "a scalar operand: one input, x + alpha * other"},
    {"alpha", NNM_CONFIG_FLOAT, 0, "multiplier of the second operand (torch.add's alpha), default 1"},
};

static const nnm_layer_vtable add_layer = {
    .struct_size = sizeof(nnm_layer_vtable),
    .flags = 0,
    .name = "add",
    .version_major = 1,
    .version_minor = 1,
    .version_patch = 0,
    .n_inputs = NNM_ARITY_ANY,
    .n_outputs = 1,
    .create = add_create,
    .destroy = add_destroy,
    .forward = add_forward,
    .extra_repr = add_extra_repr,
    .config_fields = add_config,
    .n_config_fields = 2,
};

static const nnm_layer_vtable *const add_layers[] = {&add_layer};

static const nnm_plugin_desc add_plugin = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
    .name = "add",
    .description = "Elementwise sum of all inputs, with broadcasting (residual connections)",
    .n_layers = 1,
    .n_backends = 0,
    .layers = add_layers,
    .backends = NULL,
};

NNM_PLUGIN_DEFINE(add_plugin)
