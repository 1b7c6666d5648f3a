/* plugins/dropout/dropout.c - the "dropout", "dropout1d", "dropout2d",
 * "dropout3d", "alpha_dropout" and "feature_alpha_dropout" layers
 * (torch.nn.Dropout, Dropout1d/2d/3d, AlphaDropout, FeatureAlphaDropout), and
 * "stochastic_depth" (torchvision.ops.StochasticDepth, below). dropout1d/3d
 * draw per channel of a 3-d/5-d input (per channel of an unbatched 2-d/4-d
 * one), as PyTorch 1.13; alpha_dropout keeps the self-normalising statistics
 * (see alpha_dropout_forward), and feature_alpha_dropout does so with one
 * draw per (sample, channel) of an input of at least 2 dims, as ATen's
 * feature_alpha_dropout.
 *
 * Config (PyTorch's names and defaults):
 *   p        float, default 0.5, in [0, 1]: the probability of a zero
 *   inplace  bool, default false: accepted and ignored (nnmod never writes an
 *            input; the values are the same)
 *
 * Eval mode (or p = 0): the input itself is returned (one more reference), as
 * F.dropout returns its input. Train mode: out = x * mask, where each mask
 * element is 1 / (1 - p) with probability 1 - p and 0 otherwise, drawn from
 * the CALL CONTEXT's generator (host->op_rand, ABI 1.3): a context seeded
 * alike reproduces every mask exactly. dropout draws one mask element per
 * input element; dropout2d one per (sample, channel), broadcast over the rest
 * ([N, C, 1, ...]; a 3-D input is (N, C, L), as PyTorch 1.13 treats it).
 * p = 1 zeroes everything. The masks cannot equal PyTorch's (another
 * generator); their law and scale do.
 *
 * Forward is host ops only (op_rand, op_full, op_binary MUL), so the gradient
 * (mask * grad) and every device come from the runtime.
 */
#include <nnmod/plugin.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layer_util.h"

enum dropout_kind { DROP_PLAIN, DROP_2D, DROP_1D, DROP_3D, DROP_ALPHA, DROP_FEATURE_ALPHA };

typedef struct dropout_state {
    double p;
    int channels; /* enum dropout_kind */
    int inplace;
} dropout_state;

static nnm_status dropout_new(nnm_env *env, int channels, void **self) {
    const nnm_host *h = env->host;
    *self = NULL;
    dropout_state s = {0.5, channels, 0};
    const double dp = 0.5;
    const int no = 0;
    nnm_status st = h->config_float(env, "p", &dp, &s.p);
    if (st == NNM_OK)
        st = h->config_bool(env, "inplace", &no, &s.inplace);
    if (st != NNM_OK)
        return st;
    if (!(s.p >= 0.0 && s.p <= 1.0))
        return h->set_error(env, NNM_E_INVALID,
                            "dropout probability has to be between 0 and 1, but got %g", s.p);
    if (!NNM_HOST_HAS(h, op_rand) || !NNM_HOST_HAS(h, op_full))
        return h->set_error(env, NNM_E_VERSION,
                            "dropout needs the host slots op_rand and op_full (ABI 1.3); this "
                            "host is ABI %u.%u",
                            (unsigned)h->abi_major, (unsigned)h->abi_minor);
    dropout_state *p = malloc(sizeof *p);
    if (p == NULL)
        return h->set_error(env, NNM_E_NOMEM, "out of memory for the dropout layer's state");
    *p = s;
    *self = p;
    return NNM_OK;
}

static nnm_status dropout_create(nnm_env *env, void **self) {
    return dropout_new(env, DROP_PLAIN, self);
}

static nnm_status dropout2d_create(nnm_env *env, void **self) {
    return dropout_new(env, DROP_2D, self);
}

static nnm_status dropout1d_create(nnm_env *env, void **self) {
    return dropout_new(env, DROP_1D, self);
}

static nnm_status dropout3d_create(nnm_env *env, void **self) {
    return dropout_new(env, DROP_3D, self);
}

static nnm_status alpha_dropout_create(nnm_env *env, void **self) {
    return dropout_new(env, DROP_ALPHA, self);
}

static nnm_status feature_alpha_dropout_create(nnm_env *env, void **self) {
    return dropout_new(env, DROP_FEATURE_ALPHA, self);
}

/* F.alpha_dropout (training, 0 < p < 1): with a Bernoulli(1 - p) keep mask m
 * and alpha' = 1.7580993408473766 (SELU's -scale * alpha),
 * a = ((alpha'^2 p + 1)(1 - p))^-1/2:
 *   out = x * (m * a) + (m - 1) * alpha' * a + alpha' * a * p
 * (ATen's _dropout_impl), so kept elements are a * x + alpha' a p and dropped
 * ones the SELU saturation value, affinely corrected. The mask has `shape`
 * (x's, or [N, C, 1, ...] for feature_alpha_dropout: m and b broadcast). */
static nnm_status alpha_dropout_forward(nnm_env *env, const dropout_state *s, nnm_tensor *x,
                                        int32_t ndim, const int64_t *shape, nnm_tensor **out) {
    const nnm_host *h = env->host;
    const double alpha = 1.7580993408473766, p = s->p;
    const double a = 1.0 / sqrt((alpha * alpha * p + 1.0) * (1.0 - p));
    nnm_tensor *m = NULL, *ma = NULL, *xm = NULL, *b = NULL;
    nnm_status st = h->op_rand(env, NNM_RAND_BERNOULLI, 1.0 - p, 1.0, ndim, shape, &m);
    if (!st) st = h->op_unary(env, NNM_UNARY_SCALE, m, a, &ma);
    if (!st) st = h->op_binary(env, NNM_BINARY_MUL, x, ma, &xm);
    if (!st) { /* b = m * alpha a - alpha a + alpha a p */
        nnm_tensor *t = NULL;
        st = h->op_unary(env, NNM_UNARY_SCALE, m, alpha * a, &t);
        if (!st) st = h->op_unary(env, NNM_UNARY_ADD_SCALAR, t, alpha * a * p - alpha * a, &b);
        h->tensor_release(t);
    }
    if (!st) st = h->op_binary(env, NNM_BINARY_ADD, xm, b, out);
    h->tensor_release(m);
    h->tensor_release(ma);
    h->tensor_release(xm);
    h->tensor_release(b);
    return st;
}

static void dropout_destroy(void *self) {
    free(self);
}

static nnm_status dropout_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in,
                                  nnm_tensor **out, uint32_t n_out) {
    const nnm_host *h = env->host;
    const dropout_state *s = self;
    if (s == NULL)
        return h->set_error(env, NNM_E_STATE, "dropout: forward without state");
    if (n_in != 1 || n_out != 1 || in == NULL || out == NULL || in[0] == NULL)
        return h->set_error(env, NNM_E_SHAPE, "dropout takes 1 input and 1 output, got %u and %u",
                            (unsigned)n_in, (unsigned)n_out);
    const nnm_tensor_desc *d = h->tensor_desc(in[0]);
    if (!nnm_lu_is_f32(d))
        return h->set_error(env, NNM_E_DTYPE, "dropout takes f32 tensors");
    if (s->channels == DROP_2D && d->ndim < 2)
        return h->set_error(env, NNM_E_SHAPE,
                            "dropout2d needs at least 2 dims (N, C, ...), got %d", (int)d->ndim);
    if (s->channels == DROP_1D && d->ndim != 2 && d->ndim != 3)
        return h->set_error(env, NNM_E_SHAPE,
                            "dropout1d: Expected 2D or 3D input, but received a %dD input", (int)d->ndim);
    if (s->channels == DROP_3D && d->ndim != 4 && d->ndim != 5)
        return h->set_error(env, NNM_E_SHAPE,
                            "dropout3d: Expected 4D or 5D input, but received a %dD input", (int)d->ndim);
    if (s->channels == DROP_FEATURE_ALPHA && d->ndim < 2)
        return h->set_error(env, NNM_E_SHAPE,
                            "feature_alpha_dropout: Feature dropout requires at least 2 dimensions in "
                            "the input, got %d", (int)d->ndim);
    if (!h->is_training(env) || s->p == 0.0 || nnm_lu_numel(d) == 0) {
        h->tensor_retain(in[0]);
        out[0] = in[0];
        return NNM_OK;
    }
    /* one draw per element, or per (sample, channel): dims from the first
     * spatial one on are 1 (dropout1d/3d on an unbatched input: per channel,
     * dim 0) */
    int32_t first_spatial = d->ndim;
    if (s->channels == DROP_2D || s->channels == DROP_FEATURE_ALPHA)
        first_spatial = 2;
    else if (s->channels == DROP_1D)
        first_spatial = d->ndim == 3 ? 2 : 1;
    else if (s->channels == DROP_3D)
        first_spatial = d->ndim == 5 ? 2 : 1;
    int64_t shape[NNM_MAX_DIMS];
    for (int32_t i = 0; i < d->ndim; i++)
        shape[i] = i >= first_spatial ? 1 : d->shape[i];
    if ((s->channels == DROP_ALPHA || s->channels == DROP_FEATURE_ALPHA) && s->p < 1.0)
        return alpha_dropout_forward(env, s, in[0], d->ndim, shape, &out[0]);
    nnm_tensor *mask = NULL;
    nnm_status st;
    if (s->p >= 1.0)
        st = h->op_full(env, d->ndim, shape, 0.0, &mask);
    else
        st = h->op_rand(env, NNM_RAND_BERNOULLI, 1.0 - s->p, 1.0 / (1.0 - s->p), d->ndim, shape,
                        &mask);
    if (st == NNM_OK)
        st = h->op_binary(env, NNM_BINARY_MUL, in[0], mask, &out[0]);
    h->tensor_release(mask);
    return st;
}

static int dropout_extra_repr(void *self, char *buf, size_t cap) {
    const dropout_state *s = self;
    char num[40];
    if (s == NULL)
        return snprintf(buf, cap, "%s", "");
    nnm_lu_pyfloat(num, sizeof num, s->p);
    return snprintf(buf, cap, "p=%s, inplace=%s", num, s->inplace ? "True" : "False");
}

/* ------------------------------------------------------------------------ */
/* stochastic_depth: torchvision.ops.StochasticDepth(p, mode)                */
/* ------------------------------------------------------------------------ */

/* Config: p (float, required, in [0, 1]) and mode (str, required: "row" or
 * "batch"), as torchvision's constructor. Eval mode or p = 0: the input
 * itself. Train mode: x * noise, noise one Bernoulli(1 - p) draw per sample
 * ("row": shape [N, 1, ...]) or one for the whole batch ("batch": [1, ...]),
 * divided by 1 - p, from the call context's generator (host->op_rand); p = 1
 * gives noise 0 (zeros, NaN where x is NaN, as torchvision's x * 0). */
typedef struct sd_state {
    double p;
    int p_int; /* the config gave an integer: printed without ".0" */
    int batch; /* mode "batch" */
} sd_state;

static nnm_status sd_create(nnm_env *env, void **self) {
    const nnm_host *h = env->host;
    *self = NULL;
    sd_state s = {0.0, 0, 0};
    const char *mode = NULL;
    nnm_status st = h->config_float(env, "p", NULL, &s.p);
    if (st == NNM_OK)
        st = h->config_str(env, "mode", NULL, &mode);
    if (st != NNM_OK)
        return st;
    if (!(s.p >= 0.0 && s.p <= 1.0))
        return h->set_error(env, NNM_E_INVALID,
                            "drop probability has to be between 0 and 1, but got %g", s.p);
    if (strcmp(mode, "batch") == 0)
        s.batch = 1;
    else if (strcmp(mode, "row") != 0)
        return h->set_error(env, NNM_E_INVALID, "mode has to be either 'batch' or 'row', but got %s",
                            mode);
    int32_t t = 0;
    s.p_int = h->config_type(env, "p", &t) == NNM_OK && t == NNM_CONFIG_INT;
    if (!NNM_HOST_HAS(h, op_rand) || !NNM_HOST_HAS(h, op_full))
        return h->set_error(env, NNM_E_VERSION,
                            "stochastic_depth needs the host slots op_rand and op_full (ABI 1.3); "
                            "this host is ABI %u.%u",
                            (unsigned)h->abi_major, (unsigned)h->abi_minor);
    sd_state *p = malloc(sizeof *p);
    if (p == NULL)
        return h->set_error(env, NNM_E_NOMEM, "out of memory for the stochastic_depth state");
    *p = s;
    *self = p;
    return NNM_OK;
}

static nnm_status sd_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in,
                             nnm_tensor **out, uint32_t n_out) {
    const nnm_host *h = env->host;
    const sd_state *s = self;
    if (s == NULL)
        return h->set_error(env, NNM_E_STATE, "stochastic_depth: forward without state");
    if (n_in != 1 || n_out != 1 || in == NULL || out == NULL || in[0] == NULL)
        return h->set_error(env, NNM_E_SHAPE,
                            "stochastic_depth takes 1 input and 1 output, got %u and %u",
                            (unsigned)n_in, (unsigned)n_out);
    const nnm_tensor_desc *d = h->tensor_desc(in[0]);
    if (!nnm_lu_is_f32(d))
        return h->set_error(env, NNM_E_DTYPE, "stochastic_depth takes f32 tensors");
    if (!s->batch && d->ndim < 1)
        return h->set_error(env, NNM_E_SHAPE,
                            "stochastic_depth with mode 'row' needs at least 1 dim (the batch)");
    if (!h->is_training(env) || s->p == 0.0) {
        h->tensor_retain(in[0]);
        out[0] = in[0];
        return NNM_OK;
    }
    int64_t shape[NNM_MAX_DIMS];
    for (int32_t i = 0; i < d->ndim; i++)
        shape[i] = (!s->batch && i == 0) ? d->shape[0] : 1;
    nnm_tensor *noise = NULL;
    nnm_status st;
    if (s->p >= 1.0)
        st = h->op_full(env, d->ndim, shape, 0.0, &noise);
    else
        st = h->op_rand(env, NNM_RAND_BERNOULLI, 1.0 - s->p, 1.0 / (1.0 - s->p), d->ndim, shape,
                        &noise);
    if (st == NNM_OK)
        st = h->op_binary(env, NNM_BINARY_MUL, in[0], noise, &out[0]);
    h->tensor_release(noise);
    return st;
}

static int sd_extra_repr(void *self, char *buf, size_t cap) {
    const sd_state *s = self;
    char num[40];
    if (s == NULL)
        return snprintf(buf, cap, "%s", "");
    if (s->p_int)
        snprintf(num, sizeof num, "%lld", (long long)s->p);
    else
        nnm_lu_pyfloat(num, sizeof num, s->p);
    return snprintf(buf, cap, "p=%s, mode=%s", num, s->batch ? "batch" : "row");
}

static const nnm_config_field sd_config[] = {
    {"p", NNM_CONFIG_FLOAT, NNM_CONFIG_REQUIRED, "probability of a sample (mode row) or the batch being zeroed"},
    {"mode", NNM_CONFIG_STR, NNM_CONFIG_REQUIRED, "\"row\" (one draw per sample) or \"batch\""},
};

static const nnm_layer_vtable sd_layer = {
    .struct_size = sizeof(nnm_layer_vtable),
    .flags = 0,
    .name = "stochastic_depth",
    .display_name = "StochasticDepth",
    .version_major = 1,
    .version_minor = 0,
    .version_patch = 0,
    .n_inputs = 1,
    .n_outputs = 1,
    .create = sd_create,
    .destroy = dropout_destroy,
    .forward = sd_forward,
    .extra_repr = sd_extra_repr,
    .config_fields = sd_config,
    .n_config_fields = sizeof sd_config / sizeof sd_config[0],
};

static const nnm_config_field dropout_config[] = {
    {"p", NNM_CONFIG_FLOAT, 0, "probability of an element (dropout2d: a channel) being zeroed"},
    {"inplace", NNM_CONFIG_BOOL, 0, "accepted and ignored (nnmod never writes inputs)"},
};

#define DROPOUT_VTABLE(var, lname, disp, createfn)                                       \
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
        .destroy = dropout_destroy,                                                      \
        .forward = dropout_forward,                                                      \
        .extra_repr = dropout_extra_repr,                                                \
        .config_fields = dropout_config,                                                 \
        .n_config_fields = sizeof dropout_config / sizeof dropout_config[0],             \
    };

DROPOUT_VTABLE(dropout_layer, "dropout", "Dropout", dropout_create)
DROPOUT_VTABLE(dropout2d_layer, "dropout2d", "Dropout2d", dropout2d_create)
DROPOUT_VTABLE(dropout1d_layer, "dropout1d", "Dropout1d", dropout1d_create)
DROPOUT_VTABLE(dropout3d_layer, "dropout3d", "Dropout3d", dropout3d_create)
DROPOUT_VTABLE(alpha_dropout_layer, "alpha_dropout", "AlphaDropout", alpha_dropout_create)
DROPOUT_VTABLE(feature_alpha_dropout_layer, "feature_alpha_dropout", "FeatureAlphaDropout",
               feature_alpha_dropout_create)

static const nnm_layer_vtable *const dropout_layers[] = {
    &dropout_layer,   &dropout2d_layer,     &sd_layer, &dropout1d_layer, &dropout3d_layer,
    &alpha_dropout_layer, &feature_alpha_dropout_layer};

static const nnm_plugin_desc dropout_plugin = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
    .name = "dropout",
    .description = "Dropout, Dropout1d/2d/3d, AlphaDropout, FeatureAlphaDropout (torch.nn) and StochasticDepth "
                   "(torchvision.ops), masks from the call context's generator",
    .n_layers = sizeof dropout_layers / sizeof dropout_layers[0],
    .n_backends = 0,
    .layers = dropout_layers,
    .backends = NULL,
    .domain = NNM_DOMAIN_NNMOD, /* nnmod's own library: the plain names */
};

NNM_PLUGIN_DEFINE(dropout_plugin)
