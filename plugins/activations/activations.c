/* plugins/activations/activations.c - the activation layers of torch.nn, one
 * plugin exporting several layers (those composed from host ops, hardtanh
 * to softmin, are in composed.inc):
 *
 *   leaky_relu  (LeakyReLU)   negative_slope float = 0.01
 *   elu         (ELU)         alpha float = 1.0
 *   gelu        (GELU)        approximate str = "none" | "tanh"
 *   silu        (SiLU)
 *   hardswish   (Hardswish)
 *   tanh        (Tanh)
 *   sigmoid     (Sigmoid)
 *   softmax     (Softmax)     dim int, default None (PyTorch's legacy choice)
 *   log_softmax (LogSoftmax)  dim int, as softmax
 *
 * `inplace` (LeakyReLU, ELU, SiLU, Hardswish) is accepted and ignored: nnmod
 * never writes to an input, and the values are the same.
 *
 * Each is one host op (op_unary with NNM_UNARY_SILU, _GELU, ... of ABI 1.5,
 * or op_softmax), so the kernels are the backend's (vectorised on the CPU,
 * PyTorch's formulas), autograd is the runtime's (one node, whose backward
 * is the op's *_GRAD twin times the gradient) and every device that has the
 * ops runs them. Every layer is stateless apart from its config and takes
 * any input shape (softmax: at least dim+1 dims).
 */
#include <nnmod/plugin.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layer_util.h"

enum act_kind {
    ACT_LEAKY_RELU,
    ACT_ELU,
    ACT_GELU,
    ACT_SILU,
    ACT_HARDSWISH,
    ACT_TANH,
    ACT_SIGMOID,
    ACT_SOFTMAX,
    ACT_LOG_SOFTMAX
};

typedef struct act_state {
    int kind;       /* enum act_kind */
    double a;       /* negative_slope, alpha */
    int gelu_tanh;  /* gelu: approximate == "tanh" */
    int has_dim;    /* softmax: dim given (else PyTorch's implicit choice) */
    int64_t dim;
} act_state;

static const char *const act_names[] = {"leaky_relu", "elu",     "gelu",    "silu",
                                        "hardswish",  "tanh",    "sigmoid", "softmax",
                                        "log_softmax"};

/* ------------------------------------------------------------------------ */
/* create                                                                    */
/* ------------------------------------------------------------------------ */

static nnm_status act_new(nnm_env *env, int kind, void **self) {
    const nnm_host *h = env->host;
    act_state s = {0};
    s.kind = kind;
    nnm_status st = NNM_OK;
    int inplace = 0;
    const int no = 0;
    switch (kind) {
    case ACT_LEAKY_RELU: {
        const double d = 0.01;
        st = h->config_float(env, "negative_slope", &d, &s.a);
        if (st == NNM_OK)
            st = h->config_bool(env, "inplace", &no, &inplace);
        break;
    }
    case ACT_ELU: {
        const double d = 1.0;
        st = h->config_float(env, "alpha", &d, &s.a);
        if (st == NNM_OK)
            st = h->config_bool(env, "inplace", &no, &inplace);
        break;
    }
    case ACT_GELU: {
        const char *approx = NULL;
        st = h->config_str(env, "approximate", "none", &approx);
        if (st != NNM_OK)
            return st;
        if (strcmp(approx, "tanh") == 0)
            s.gelu_tanh = 1;
        else if (strcmp(approx, "none") != 0)
            return h->set_error(env, NNM_E_INVALID,
                                "approximate must be \"none\" or \"tanh\", got \"%s\"", approx);
        break;
    }
    case ACT_SILU:
    case ACT_HARDSWISH:
        st = h->config_bool(env, "inplace", &no, &inplace);
        break;
    case ACT_SOFTMAX:
    case ACT_LOG_SOFTMAX: {
        const int64_t none = INT64_MIN;
        st = h->config_int(env, "dim", &none, &s.dim);
        s.has_dim = st == NNM_OK && s.dim != INT64_MIN;
        break;
    }
    default:
        break;
    }
    if (st != NNM_OK)
        return st; /* the host named the key and the problem */
    if ((kind == ACT_LEAKY_RELU || kind == ACT_ELU) && !isfinite(s.a))
        return h->set_error(env, NNM_E_INVALID, "%s must be finite",
                            kind == ACT_ELU ? "alpha" : "negative_slope");
    act_state *p = malloc(sizeof *p);
    if (p == NULL)
        return h->set_error(env, NNM_E_NOMEM, "out of memory for the %s layer's state",
                            act_names[kind]);
    *p = s;
    *self = p;
    return NNM_OK;
}

#define ACT_CREATE(fn, kind)                                                              \
    static nnm_status fn(nnm_env *env, void **self) {                                    \
        *self = NULL;                                                                    \
        return act_new(env, kind, self);                                                 \
    }
ACT_CREATE(leaky_relu_create, ACT_LEAKY_RELU)
ACT_CREATE(elu_create, ACT_ELU)
ACT_CREATE(gelu_create, ACT_GELU)
ACT_CREATE(silu_create, ACT_SILU)
ACT_CREATE(hardswish_create, ACT_HARDSWISH)
ACT_CREATE(tanh_create, ACT_TANH)
ACT_CREATE(sigmoid_create, ACT_SIGMOID)
ACT_CREATE(softmax_create, ACT_SOFTMAX)
ACT_CREATE(log_softmax_create, ACT_LOG_SOFTMAX)

static void act_destroy(void *self) {
    free(self);
}

/* ------------------------------------------------------------------------ */
/* forward: one host op                                                      */
/* ------------------------------------------------------------------------ */

/* The dim softmax reduces over for an input of ndim dims: the configured one
 * (negative counts from the end), or PyTorch's legacy implicit choice for
 * dim=None (0 for 0, 1 or 3 dims, else 1). -1 (message set) when out of range. */
static int32_t softmax_dim(nnm_env *env, const act_state *s, int32_t ndim) {
    int64_t d;
    if (!s->has_dim)
        d = (ndim == 0 || ndim == 1 || ndim == 3) ? 0 : 1;
    else
        d = s->dim < 0 ? s->dim + (ndim > 0 ? ndim : 1) : s->dim;
    const int32_t span = ndim > 0 ? ndim : 1; /* a 0-d tensor takes dim 0 or -1 */
    if (d < 0 || d >= span) {
        env->host->set_error(env, NNM_E_SHAPE,
                             "%s: dim %lld is out of range for an input of %d dims",
                             act_names[s->kind], (long long)s->dim, (int)ndim);
        return -1;
    }
    return (int32_t)d;
}

static nnm_status act_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in,
                              nnm_tensor **out, uint32_t n_out) {
    const nnm_host *h = env->host;
    const act_state *s = self;
    if (s == NULL)
        return h->set_error(env, NNM_E_STATE, "forward without state");
    if (n_in != 1 || n_out != 1 || in == NULL || out == NULL || in[0] == NULL)
        return h->set_error(env, NNM_E_SHAPE, "%s takes 1 input and 1 output, got %u and %u",
                            act_names[s->kind], (unsigned)n_in, (unsigned)n_out);
    switch (s->kind) {
    case ACT_LEAKY_RELU: return h->op_unary(env, NNM_UNARY_LEAKY_RELU, in[0], s->a, &out[0]);
    case ACT_ELU: return h->op_unary(env, NNM_UNARY_ELU, in[0], s->a, &out[0]);
    case ACT_GELU:
        return h->op_unary(env, s->gelu_tanh ? NNM_UNARY_GELU_TANH : NNM_UNARY_GELU, in[0], 0.0, &out[0]);
    case ACT_SILU: return h->op_unary(env, NNM_UNARY_SILU, in[0], 0.0, &out[0]);
    case ACT_HARDSWISH: return h->op_unary(env, NNM_UNARY_HARDSWISH, in[0], 0.0, &out[0]);
    case ACT_TANH: return h->op_unary(env, NNM_UNARY_TANH, in[0], 0.0, &out[0]);
    case ACT_SIGMOID: return h->op_unary(env, NNM_UNARY_SIGMOID, in[0], 0.0, &out[0]);
    default: { /* softmax, log_softmax */
        const int32_t dim = softmax_dim(env, s, h->tensor_desc(in[0])->ndim);
        if (dim < 0)
            return NNM_E_SHAPE;
        return h->op_softmax(env, in[0], dim, s->kind == ACT_LOG_SOFTMAX, &out[0]);
    }
    }
}

/* ------------------------------------------------------------------------ */
/* extra_repr: PyTorch's text                                                */
/* ------------------------------------------------------------------------ */

static int act_extra_repr(void *self, char *buf, size_t cap) {
    const act_state *s = self;
    char num[40];
    if (s == NULL)
        return snprintf(buf, cap, "%s", "");
    switch (s->kind) {
    case ACT_LEAKY_RELU:
        nnm_lu_pyfloat(num, sizeof num, s->a);
        return snprintf(buf, cap, "negative_slope=%s", num);
    case ACT_ELU:
        nnm_lu_pyfloat(num, sizeof num, s->a);
        return snprintf(buf, cap, "alpha=%s", num);
    case ACT_GELU:
        return snprintf(buf, cap, "approximate='%s'", s->gelu_tanh ? "tanh" : "none");
    case ACT_SOFTMAX:
    case ACT_LOG_SOFTMAX:
        if (!s->has_dim)
            return snprintf(buf, cap, "dim=None");
        return snprintf(buf, cap, "dim=%lld", (long long)s->dim);
    default:
        return snprintf(buf, cap, "%s", "");
    }
}

/* ------------------------------------------------------------------------ */
/* Schemas and vtables                                                       */
/* ------------------------------------------------------------------------ */

static const nnm_config_field leaky_relu_config[] = {
    {"negative_slope", NNM_CONFIG_FLOAT, 0, "slope for x < 0 (default 0.01)"},
    {"inplace", NNM_CONFIG_BOOL, 0, "accepted and ignored (nnmod never writes inputs)"},
};
static const nnm_config_field elu_config[] = {
    {"alpha", NNM_CONFIG_FLOAT, 0, "alpha * (exp(x) - 1) for x <= 0 (default 1.0)"},
    {"inplace", NNM_CONFIG_BOOL, 0, "accepted and ignored (nnmod never writes inputs)"},
};
static const nnm_config_field gelu_config[] = {
    {"approximate", NNM_CONFIG_STR, 0, "\"none\" (erf, default) or \"tanh\""},
};
static const nnm_config_field inplace_config[] = {
    {"inplace", NNM_CONFIG_BOOL, 0, "accepted and ignored (nnmod never writes inputs)"},
};
static const nnm_config_field no_config[1] = {{NULL, 0, 0, NULL}};
static const nnm_config_field softmax_config[] = {
    {"dim", NNM_CONFIG_INT, 0, "dim to normalise over (default: PyTorch's implicit dim)"},
};

#define ACT_VTABLE(var, lname, disp, createfn, fields, nfields)                       \
    static const nnm_layer_vtable var = {                                                \
        .struct_size = sizeof(nnm_layer_vtable),                                         \
        .flags = 0,                                                                      \
        .name = lname,                                                                   \
        .display_name = disp,                                                            \
        .version_major = 1,                                                              \
        .version_minor = 0,                                                              \
        .version_patch = 0,                                                              \
        .n_inputs = 1,                                                                   \
        .n_outputs = 1,                                                                  \
        .create = createfn,                                                              \
        .destroy = act_destroy,                                                          \
        .forward = act_forward,                                                          \
        .extra_repr = act_extra_repr,                                                    \
        .config_fields = fields,                                                         \
        .n_config_fields = nfields,                                                      \
    };

#define NFIELDS(a) ((uint32_t)(sizeof(a) / sizeof((a)[0])))

ACT_VTABLE(leaky_relu_layer, "leaky_relu", "LeakyReLU", leaky_relu_create,
           leaky_relu_config, NFIELDS(leaky_relu_config))
ACT_VTABLE(elu_layer, "elu", "ELU", elu_create, elu_config, NFIELDS(elu_config))
ACT_VTABLE(gelu_layer, "gelu", "GELU", gelu_create, gelu_config,
           NFIELDS(gelu_config))
ACT_VTABLE(silu_layer, "silu", "SiLU", silu_create, inplace_config,
           NFIELDS(inplace_config))
ACT_VTABLE(hardswish_layer, "hardswish", "Hardswish", hardswish_create,
           inplace_config, NFIELDS(inplace_config))
ACT_VTABLE(tanh_layer, "tanh", "Tanh", tanh_create, no_config, 0)
ACT_VTABLE(sigmoid_layer, "sigmoid", "Sigmoid", sigmoid_create, no_config, 0)
ACT_VTABLE(softmax_layer, "softmax", "Softmax", softmax_create, softmax_config,
           NFIELDS(softmax_config))
ACT_VTABLE(log_softmax_layer, "log_softmax", "LogSoftmax", log_softmax_create,
           softmax_config, NFIELDS(softmax_config))

/* The activations composed from host ops (every device, runtime autograd). */
#include "composed.inc"

CMP_VTABLE(hardtanh_layer, "hardtanh", "Hardtanh", hardtanh_create, hardtanh_config,
           NFIELDS(hardtanh_config))
CMP_VTABLE(relu6_layer, "relu6", "ReLU6", relu6_create, inplace_shown_config,
           NFIELDS(inplace_shown_config))
CMP_VTABLE(hardsigmoid_layer, "hardsigmoid", "Hardsigmoid", hardsigmoid_create, inplace_config,
           NFIELDS(inplace_config))
CMP_VTABLE(prelu_layer, "prelu", "PReLU", prelu_create, prelu_config, NFIELDS(prelu_config))
CMP_VTABLE(softplus_layer, "softplus", "Softplus", softplus_create, softplus_config,
           NFIELDS(softplus_config))
CMP_VTABLE(mish_layer, "mish", "Mish", mish_create, inplace_shown_config,
           NFIELDS(inplace_shown_config))
CMP_VTABLE(selu_layer, "selu", "SELU", selu_create, inplace_shown_config,
           NFIELDS(inplace_shown_config))
CMP_VTABLE(celu_layer, "celu", "CELU", celu_create, celu_config, NFIELDS(celu_config))
CMP_VTABLE(glu_layer, "glu", "GLU", glu_create, glu_config, NFIELDS(glu_config))
CMP_VTABLE(logsigmoid_layer, "logsigmoid", "LogSigmoid", logsigmoid_create, no_config, 0)
CMP_VTABLE(softsign_layer, "softsign", "Softsign", softsign_create, no_config, 0)
CMP_VTABLE(tanhshrink_layer, "tanhshrink", "Tanhshrink", tanhshrink_create, no_config, 0)
CMP_VTABLE(threshold_layer, "threshold", "Threshold", threshold_create, threshold_config,
           NFIELDS(threshold_config))
CMP_VTABLE(softmin_layer, "softmin", "Softmin", softmin_create, softmax_config,
           NFIELDS(softmax_config))

static const nnm_layer_vtable *const act_layers[] = {
    &leaky_relu_layer, &elu_layer,     &gelu_layer,    &silu_layer,        &hardswish_layer,
    &tanh_layer,       &sigmoid_layer, &softmax_layer, &log_softmax_layer,
    &hardtanh_layer,   &relu6_layer,   &hardsigmoid_layer, &prelu_layer,   &softplus_layer,
    &mish_layer,       &selu_layer,    &celu_layer,    &glu_layer,         &logsigmoid_layer,
    &softsign_layer,   &tanhshrink_layer, &threshold_layer, &softmin_layer,
};

static const nnm_plugin_desc act_plugin = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
    .name = "activations",
    .description = "Activations of torch.nn: LeakyReLU, ELU, GELU, SiLU, Hardswish, Tanh, "
                   "Sigmoid, Softmax, LogSoftmax, Hardtanh, ReLU6, Hardsigmoid, PReLU, Softplus, "
                   "Mish, SELU, CELU, GLU, LogSigmoid, Softsign, Tanhshrink, Threshold, Softmin",
    .n_layers = sizeof act_layers / sizeof act_layers[0],
    .n_backends = 0,
    .layers = act_layers,
    .backends = NULL,
    .domain = NNM_DOMAIN_NNMOD, /* nnmod's own library: the plain names */
};

NNM_PLUGIN_DEFINE(act_plugin)
