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
 * tanh and sigmoid are one host op each, so autograd and every device come
 * from the runtime. The others ship a CPU kernel and their own backward (one
 * autograd node), written from PyTorch's formulas so that values and
 * gradients agree with torch 1.13 to float rounding; on another device they
 * fail with NNM_E_UNSUPPORTED. Every layer is stateless apart from its config
 * and takes any input shape (softmax: at least dim+1 dims).
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
/* Elementwise kernels (PyTorch's formulas, aten/src/ATen/native/cpu)        */
/* ------------------------------------------------------------------------ */

#define ACT_SQRT1_2 0.70710678118654752440
#define ACT_SQRT2 1.41421356237309504880
#define ACT_2_SQRTPI 1.12837916709551257390 /* 2 / sqrt(pi) */

static float act_f(const act_state *s, float x) {
    switch (s->kind) {
    case ACT_LEAKY_RELU:
        return x > 0.0f ? x : x * (float)s->a;
    case ACT_ELU:
        return x > 0.0f ? x : (float)s->a * expm1f(x);
    case ACT_GELU:
        if (s->gelu_tanh) {
            const float k_beta = (float)(ACT_SQRT2 * ACT_2_SQRTPI * 0.5), k_kappa = 0.044715f;
            const float inner = k_beta * (x + k_kappa * x * x * x);
            return 0.5f * x * (1.0f + tanhf(inner));
        }
        return x * 0.5f * (1.0f + erff(x * (float)ACT_SQRT1_2));
    case ACT_SILU:
        return x / (1.0f + expf(-x));
    case ACT_HARDSWISH:
        return x * fminf(fmaxf(x + 3.0f, 0.0f), 6.0f) / 6.0f;
    default:
        return x;
    }
}

/* dy/dx * g. */
static float act_df(const act_state *s, float x, float g) {
    switch (s->kind) {
    case ACT_LEAKY_RELU:
        return x > 0.0f ? g : g * (float)s->a;
    case ACT_ELU:
        return x > 0.0f ? g : g * (float)s->a * expf(x);
    case ACT_GELU:
        if (s->gelu_tanh) {
            const float k_beta = (float)(ACT_SQRT2 * ACT_2_SQRTPI * 0.5), k_kappa = 0.044715f;
            const float x_sq = x * x, x_cube = x_sq * x;
            const float inner = k_beta * (x + k_kappa * x_cube);
            const float t = tanhf(inner);
            const float left = 0.5f * x, right = 1.0f + t;
            const float left_d = 0.5f * right;
            const float tanh_d = 1.0f - t * t;
            const float inner_d = k_beta * (1.0f + 3.0f * k_kappa * x_sq);
            const float right_d = left * tanh_d * inner_d;
            return g * (left_d + right_d);
        } else {
            const float k_alpha = (float)ACT_SQRT1_2;
            const float k_beta = (float)(ACT_2_SQRTPI * ACT_SQRT1_2 * 0.5);
            const float cdf = 0.5f * (1.0f + erff(x * k_alpha));
            const float pdf = k_beta * expf(x * x * -0.5f);
            return g * (cdf + x * pdf);
        }
    case ACT_SILU: {
        const float sg = 1.0f / (1.0f + expf(-x));
        return g * sg * (1.0f + x * (1.0f - sg));
    }
    case ACT_HARDSWISH:
        if (x < -3.0f)
            return 0.0f;
        if (x <= 3.0f)
            return g * (x / 3.0f + 0.5f);
        return g;
    default:
        return g;
    }
}

/* ------------------------------------------------------------------------ */
/* Softmax over one dim, as [outer, n, inner]                                */
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

static void softmax_split(const nnm_tensor_desc *d, int32_t dim, int64_t *outer, int64_t *n,
                          int64_t *inner) {
    *outer = 1;
    *n = 1;
    *inner = 1;
    for (int32_t i = 0; i < d->ndim; i++) {
        if (i < dim)
            *outer *= d->shape[i];
        else if (i == dim)
            *n = d->shape[i];
        else
            *inner *= d->shape[i];
    }
}

/* y = softmax or log_softmax of x along the middle index (double sums, as
 * PyTorch accumulates in a wider type on the CPU). */
static void softmax_kernel(int is_log, const float *x, float *y, int64_t outer, int64_t n,
                           int64_t inner) {
    for (int64_t o = 0; o < outer; o++) {
        for (int64_t i = 0; i < inner; i++) {
            const float *xp = x + o * n * inner + i;
            float *yp = y + o * n * inner + i;
            float mx = -INFINITY;
            for (int64_t k = 0; k < n; k++)
                mx = fmaxf(mx, xp[k * inner]);
            double sum = 0.0;
            for (int64_t k = 0; k < n; k++)
                sum += exp((double)xp[k * inner] - (double)mx);
            if (is_log) {
                const double lse = (double)mx + log(sum);
                for (int64_t k = 0; k < n; k++)
                    yp[k * inner] = (float)((double)xp[k * inner] - lse);
            } else {
                for (int64_t k = 0; k < n; k++)
                    yp[k * inner] = (float)(exp((double)xp[k * inner] - (double)mx) / sum);
            }
        }
    }
}

/* gx from the output y and gy: softmax gx = y * (g - sum(g * y));
 * log_softmax gx = g - exp(y) * sum(g). */
static void softmax_backward_kernel(int is_log, const float *y, const float *g, float *gx,
                                    int64_t outer, int64_t n, int64_t inner) {
    for (int64_t o = 0; o < outer; o++) {
        for (int64_t i = 0; i < inner; i++) {
            const int64_t base = o * n * inner + i;
            double dot = 0.0;
            for (int64_t k = 0; k < n; k++) {
                const int64_t j = base + k * inner;
                dot += is_log ? (double)g[j] : (double)g[j] * (double)y[j];
            }
            for (int64_t k = 0; k < n; k++) {
                const int64_t j = base + k * inner;
                gx[j] = is_log ? (float)((double)g[j] - exp((double)y[j]) * dot)
                            : (float)((double)y[j] * ((double)g[j] - dot));
            }
        }
    }
}

/* ------------------------------------------------------------------------ */
/* forward / backward                                                        */
/* ------------------------------------------------------------------------ */

/* y = the layer applied to the contiguous f32 CPU tensor x (new reference). */
static nnm_status act_apply(nnm_env *env, const act_state *s, nnm_tensor *x, nnm_tensor **y) {
    const nnm_host *h = env->host;
    const nnm_tensor_desc *d = h->tensor_desc(x);
    int32_t dim = 0;
    if (s->kind == ACT_SOFTMAX || s->kind == ACT_LOG_SOFTMAX) {
        dim = softmax_dim(env, s, d->ndim);
        if (dim < 0)
            return NNM_E_SHAPE;
    }
    nnm_status st = nnm_lu_new_like(env, d, y);
    if (st != NNM_OK)
        return st;
    const float *xp = nnm_lu_data(d);
    float *yp = nnm_lu_data(h->tensor_desc(*y));
    if (s->kind == ACT_SOFTMAX || s->kind == ACT_LOG_SOFTMAX) {
        int64_t outer, n, inner;
        softmax_split(d, dim, &outer, &n, &inner);
        softmax_kernel(s->kind == ACT_LOG_SOFTMAX, xp, yp, outer, n, inner);
    } else {
        const int64_t n = nnm_lu_numel(d);
        for (int64_t i = 0; i < n; i++)
            yp[i] = act_f(s, xp[i]);
    }
    return NNM_OK;
}

static nnm_status act_check_io(nnm_env *env, const act_state *s, nnm_tensor *const *in,
                               uint32_t n_in, nnm_tensor **out, uint32_t n_out) {
    if (s == NULL)
        return env->host->set_error(env, NNM_E_STATE, "forward without state");
    if (n_in != 1 || n_out != 1 || in == NULL || out == NULL || in[0] == NULL)
        return env->host->set_error(env, NNM_E_SHAPE,
                                    "%s takes 1 input and 1 output, got %u and %u",
                                    act_names[s->kind], (unsigned)n_in, (unsigned)n_out);
    return NNM_OK;
}

static nnm_status act_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in,
                              nnm_tensor **out, uint32_t n_out) {
    const nnm_host *h = env->host;
    const act_state *s = self;
    nnm_status st = act_check_io(env, s, in, n_in, out, n_out);
    if (st != NNM_OK)
        return st;
    if (s->kind == ACT_TANH)
        return h->op_unary(env, NNM_UNARY_TANH, in[0], 0.0, &out[0]);
    if (s->kind == ACT_SIGMOID)
        return h->op_unary(env, NNM_UNARY_SIGMOID, in[0], 0.0, &out[0]);

    nnm_tensor *x = NULL;
    st = nnm_lu_cpu_f32(env, act_names[s->kind], in[0], &x);
    if (st != NNM_OK)
        return st;
    st = act_apply(env, s, x, &out[0]);
    /* backward recomputes from x (saving the output would tie it to its own
     * node) */
    if (st == NNM_OK)
        st = h->save_for_backward(env, &x, 1);
    h->tensor_release(x);
    return st;
}

static nnm_status act_backward(nnm_env *env, void *self, nnm_tensor *const *grad_out,
                               uint32_t n_out, nnm_tensor **grad_in, uint32_t n_in) {
    const nnm_host *h = env->host;
    const act_state *s = self;
    if (s == NULL || n_out != 1 || n_in != 1)
        return h->set_error(env, NNM_E_STATE, "backward: unexpected arity %u -> %u",
                            (unsigned)n_out, (unsigned)n_in);
    grad_in[0] = NULL;
    if (grad_out[0] == NULL)
        return NNM_OK;
    nnm_tensor *const *saved = NULL;
    uint32_t n_saved = 0;
    nnm_status st = h->saved_tensors(env, &saved, &n_saved);
    if (st != NNM_OK)
        return st;
    if (n_saved != 1)
        return h->set_error(env, NNM_E_STATE, "backward: expected 1 saved tensor, got %u",
                            (unsigned)n_saved);
    const nnm_tensor_desc *xd = h->tensor_desc(saved[0]);
    nnm_tensor *g = NULL, *y = NULL;
    st = nnm_lu_cpu_f32(env, act_names[s->kind], grad_out[0], &g);
    if (st != NNM_OK)
        return st;
    if (nnm_lu_numel(h->tensor_desc(g)) != nnm_lu_numel(xd)) {
        h->tensor_release(g);
        return h->set_error(env, NNM_E_SHAPE, "backward: gradient of another size");
    }
    st = nnm_lu_new_like(env, xd, &grad_in[0]);
    if (st != NNM_OK) {
        h->tensor_release(g);
        return st;
    }
    const float *xp = nnm_lu_data(xd);
    const float *gp = nnm_lu_data(h->tensor_desc(g));
    float *gx = nnm_lu_data(h->tensor_desc(grad_in[0]));
    if (s->kind == ACT_SOFTMAX || s->kind == ACT_LOG_SOFTMAX) {
        st = act_apply(env, s, saved[0], &y);
        if (st == NNM_OK) {
            int64_t outer, n, inner;
            softmax_split(xd, softmax_dim(env, s, xd->ndim), &outer, &n, &inner);
            softmax_backward_kernel(s->kind == ACT_LOG_SOFTMAX,
                                    nnm_lu_data(h->tensor_desc(y)), gp, gx, outer, n, inner);
        }
    } else {
        const int64_t n = nnm_lu_numel(xd);
        for (int64_t i = 0; i < n; i++)
            gx[i] = act_df(s, xp[i], gp[i]);
    }
    h->tensor_release(y);
    h->tensor_release(g);
    if (st != NNM_OK) {
        h->tensor_release(grad_in[0]);
        grad_in[0] = NULL;
    }
    return st;
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

#define ACT_VTABLE(var, lname, disp, createfn, bw, fields, nfields)                       \
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
        .backward = bw,                                                                  \
        .config_fields = fields,                                                         \
        .n_config_fields = nfields,                                                      \
    };

#define NFIELDS(a) ((uint32_t)(sizeof(a) / sizeof((a)[0])))

ACT_VTABLE(leaky_relu_layer, "leaky_relu", "LeakyReLU", leaky_relu_create, act_backward,
           leaky_relu_config, NFIELDS(leaky_relu_config))
ACT_VTABLE(elu_layer, "elu", "ELU", elu_create, act_backward, elu_config, NFIELDS(elu_config))
ACT_VTABLE(gelu_layer, "gelu", "GELU", gelu_create, act_backward, gelu_config,
           NFIELDS(gelu_config))
ACT_VTABLE(silu_layer, "silu", "SiLU", silu_create, act_backward, inplace_config,
           NFIELDS(inplace_config))
ACT_VTABLE(hardswish_layer, "hardswish", "Hardswish", hardswish_create, act_backward,
           inplace_config, NFIELDS(inplace_config))
ACT_VTABLE(tanh_layer, "tanh", "Tanh", tanh_create, NULL, no_config, 0)
ACT_VTABLE(sigmoid_layer, "sigmoid", "Sigmoid", sigmoid_create, NULL, no_config, 0)
ACT_VTABLE(softmax_layer, "softmax", "Softmax", softmax_create, act_backward, softmax_config,
           NFIELDS(softmax_config))
ACT_VTABLE(log_softmax_layer, "log_softmax", "LogSoftmax", log_softmax_create, act_backward,
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
