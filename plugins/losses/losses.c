/* plugins/losses/losses.c - the loss layers (torch.nn.MSELoss, CrossEntropyLoss,
 * NLLLoss, BCEWithLogitsLoss) in one plugin, "losses".
 *
 * Every loss takes 2 inputs (input, target) and gives 1 output, and computes
 * with the host's ABI 1.1 ops only, so autograd and every device come from the
 * runtime (no `backward` slot). Each needs a host of ABI >= 1.1 and says so at
 * create on an older one.
 *
 * Config, common to all:
 *   reduction  str, "mean" (default), "sum" or "none"
 *
 *   mse_loss         input, target: f32 of the same shape.
 *                    (input - target)^2, reduced.
 *   cross_entropy    input [N, C] logits (or [C]), target [N] i64 class indices
 *                    (or [] with a [C] input).
 *                    ignore_index     int, default -100
 *                    label_smoothing  float in [0, 1], default 0
 *                    nll(log_softmax(input), target), reduced; "mean" divides by
 *                    the number of samples not ignored, as PyTorch.
 *   nll_loss         input [N, C] log-probabilities (or [C]), target as above.
 *                    ignore_index     int, default -100
 *   bce_with_logits  input, target: f32 of the same shape (target in [0, 1]).
 *                    max(x, 0) - x*y + log(1 + exp(-|x|)), reduced.
 *
 * The output is a scalar ([] shape) for "mean"/"sum", and the per-element (or
 * per-sample) losses for "none", as in PyTorch.
 */
#include <nnmod/plugin.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layer_util.h"

/* Which loss a state belongs to. */
enum loss_kind {
    LOSS_MSE = 0,
    LOSS_CROSS_ENTROPY = 1,
    LOSS_NLL = 2,
    LOSS_BCE_WITH_LOGITS = 3
};

typedef struct loss_state {
    int32_t kind;            /* enum loss_kind */
    int32_t reduction;       /* enum nnm_reduction */
    int64_t ignore_index;    /* cross_entropy, nll_loss */
    double label_smoothing;  /* cross_entropy */
} loss_state;

static const char *const loss_names[] = {"mse_loss", "cross_entropy", "nll_loss",
                                         "bce_with_logits"};

static const char *reduction_name(int32_t r) {
    switch (r) {
    case NNM_REDUCTION_NONE: return "none";
    case NNM_REDUCTION_SUM: return "sum";
    default: return "mean";
    }
}

/* ------------------------------------------------------------------------ */
/* create / destroy / extra_repr                                             */
/* ------------------------------------------------------------------------ */

/* The ABI 1.1 ops every loss may use; an older host has none of them. */
static nnm_status loss_check_host(nnm_env *env, const char *name) {
    const nnm_host *h = env->host;
    if (!NNM_HOST_HAS(h, op_reduce) || !NNM_HOST_HAS(h, op_log_softmax) ||
        !NNM_HOST_HAS(h, op_nll) || !NNM_HOST_HAS(h, op_reshape))
        return h->set_error(env, NNM_E_VERSION,
                            "%s needs a host of ABI >= %d.1 (op_reduce, op_log_softmax, op_nll, "
                            "op_reshape); this host speaks %u.%u",
                            name, NNM_ABI_MAJOR, (unsigned)h->abi_major, (unsigned)h->abi_minor);
    return NNM_OK;
}

static nnm_status loss_read_reduction(nnm_env *env, const char *name, int32_t *out) {
    const nnm_host *h = env->host;
    const char *s = NULL;
    nnm_status st = h->config_str(env, "reduction", "mean", &s);
    if (st != NNM_OK)
        return st; /* the host named the key and the problem */
    if (strcmp(s, "mean") == 0)
        *out = NNM_REDUCTION_MEAN;
    else if (strcmp(s, "sum") == 0)
        *out = NNM_REDUCTION_SUM;
    else if (strcmp(s, "none") == 0)
        *out = NNM_REDUCTION_NONE;
    else
        return h->set_error(env, NNM_E_INVALID,
                            "%s: reduction must be \"mean\", \"sum\" or \"none\", got \"%.64s\"",
                            name, s);
    return NNM_OK;
}

static nnm_status loss_create(nnm_env *env, void **self, int32_t kind) {
    const nnm_host *h = env->host;
    const char *name = loss_names[kind];
    *self = NULL;
    nnm_status st = loss_check_host(env, name);
    if (st != NNM_OK)
        return st;
    loss_state s = {kind, NNM_REDUCTION_MEAN, -100, 0.0};
    st = loss_read_reduction(env, name, &s.reduction);
    if (st != NNM_OK)
        return st;
    if (kind == LOSS_CROSS_ENTROPY || kind == LOSS_NLL) {
        const int64_t dflt_ignore = -100;
        st = h->config_int(env, "ignore_index", &dflt_ignore, &s.ignore_index);
        if (st != NNM_OK)
            return st;
    }
    if (kind == LOSS_CROSS_ENTROPY) {
        const double dflt_smoothing = 0.0;
        st = h->config_float(env, "label_smoothing", &dflt_smoothing, &s.label_smoothing);
        if (st != NNM_OK)
            return st;
        /* !(a <= x && x <= b) also refuses NaN. */
        if (!(s.label_smoothing >= 0.0 && s.label_smoothing <= 1.0))
            return h->set_error(env, NNM_E_INVALID,
                                "%s: label_smoothing must be in [0, 1], got %g", name,
                                s.label_smoothing);
    }
    loss_state *p = malloc(sizeof *p);
    if (p == NULL)
        return h->set_error(env, NNM_E_NOMEM, "out of memory for the %s layer's state", name);
    *p = s;
    *self = p;
    return NNM_OK;
}

static nnm_status mse_create(nnm_env *env, void **self) {
    return loss_create(env, self, LOSS_MSE);
}
static nnm_status cross_entropy_create(nnm_env *env, void **self) {
    return loss_create(env, self, LOSS_CROSS_ENTROPY);
}
static nnm_status nll_create(nnm_env *env, void **self) {
    return loss_create(env, self, LOSS_NLL);
}
static nnm_status bce_create(nnm_env *env, void **self) {
    return loss_create(env, self, LOSS_BCE_WITH_LOGITS);
}

static void loss_destroy(void *self) {
    free(self);
}

static int loss_extra_repr(void *self, char *buf, size_t cap) {
    const loss_state *s = self;
    if (s == NULL)
        return snprintf(buf, cap, "%s", "");
    switch (s->kind) {
    case LOSS_CROSS_ENTROPY:
        return snprintf(buf, cap, "reduction=%s, ignore_index=%lld, label_smoothing=%g",
                        reduction_name(s->reduction), (long long)s->ignore_index,
                        s->label_smoothing);
    case LOSS_NLL:
        return snprintf(buf, cap, "reduction=%s, ignore_index=%lld",
                        reduction_name(s->reduction), (long long)s->ignore_index);
    default:
        return snprintf(buf, cap, "reduction=%s", reduction_name(s->reduction));
    }
}

/* ------------------------------------------------------------------------ */
/* Forward helpers                                                           */
/* ------------------------------------------------------------------------ */

static int is_f32(const nnm_tensor_desc *d) {
    return d->dtype.code == NNM_DTYPE_FLOAT && d->dtype.bits == 32 && d->dtype.lanes == 1;
}

static int is_i64(const nnm_tensor_desc *d) {
    return d->dtype.code == NNM_DTYPE_INT && d->dtype.bits == 64 && d->dtype.lanes == 1;
}

static int same_shape(const nnm_tensor_desc *a, const nnm_tensor_desc *b) {
    if (a->ndim != b->ndim)
        return 0;
    for (int32_t i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i])
            return 0;
    return 1;
}

static nnm_status check_arity(nnm_env *env, const char *name, nnm_tensor *const *in,
                              uint32_t n_in, nnm_tensor **out, uint32_t n_out) {
    if (n_in != 2 || n_out != 1 || in == NULL || out == NULL || in[0] == NULL || in[1] == NULL)
        return env->host->set_error(env, NNM_E_SHAPE,
                                    "%s takes 2 inputs (input, target) and 1 output, got %u and %u",
                                    name, (unsigned)n_in, (unsigned)n_out);
    return NNM_OK;
}

/* Applies `reduction` to per-element losses `x` (consumed: the reference is
 * handed to *out or dropped). */
static nnm_status reduce_owned(nnm_env *env, int32_t reduction, nnm_tensor *x,
                               nnm_tensor **out) {
    const nnm_host *h = env->host;
    if (reduction == NNM_REDUCTION_NONE) {
        *out = x;
        return NNM_OK;
    }
    const int32_t op = reduction == NNM_REDUCTION_SUM ? NNM_REDUCE_SUM : NNM_REDUCE_MEAN;
    nnm_status st = h->op_reduce(env, op, x, NULL, 0, 0, out);
    h->tensor_release(x);
    return st;
}

/* input and target: f32 and the same shape (mse_loss, bce_with_logits). */
static nnm_status check_pointwise(nnm_env *env, const char *name, nnm_tensor *x, nnm_tensor *y) {
    const nnm_host *h = env->host;
    const nnm_tensor_desc *dx = h->tensor_desc(x);
    const nnm_tensor_desc *dy = h->tensor_desc(y);
    if (!is_f32(dx) || !is_f32(dy))
        return h->set_error(env, NNM_E_DTYPE, "%s: input and target must be f32", name);
    if (!same_shape(dx, dy)) {
        char a[96], b[96];
        return h->set_error(env, NNM_E_SHAPE,
                            "%s: target size %s must be the same as input size %s", name,
                            nnm_lu_shape_str(dy, b, sizeof b), nnm_lu_shape_str(dx, a, sizeof a));
    }
    return NNM_OK;
}

/* ------------------------------------------------------------------------ */
/* mse_loss                                                                  */
/* ------------------------------------------------------------------------ */

static nnm_status mse_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in,
                              nnm_tensor **out, uint32_t n_out) {
    const nnm_host *h = env->host;
    const loss_state *s = self;
    nnm_status st = check_arity(env, "mse_loss", in, n_in, out, n_out);
    if (st != NNM_OK)
        return st;
    out[0] = NULL;
    st = check_pointwise(env, "mse_loss", in[0], in[1]);
    if (st != NNM_OK)
        return st;
    nnm_tensor *d = NULL, *sq = NULL;
    st = h->op_binary(env, NNM_BINARY_SUB, in[0], in[1], &d);
    if (st == NNM_OK)
        st = h->op_binary(env, NNM_BINARY_MUL, d, d, &sq);
    h->tensor_release(d);
    if (st != NNM_OK)
        return st;
    return reduce_owned(env, s->reduction, sq, &out[0]);
}

/* ------------------------------------------------------------------------ */
/* bce_with_logits                                                           */
/* ------------------------------------------------------------------------ */

/* loss = max(x, 0) - x*y + log(1 + exp(-|x|)), computed as
 *        x*(1/2) + |x|*(1/2) - x*y - log(sigmoid(|x|)).
 * The two forms are equal (max(x, 0) = (x + |x|) / 2 exactly in binary
 * floating point, and log(1 + exp(-a)) = -log(sigmoid(a))), and the second
 * needs no constant tensor and is stable (sigmoid(|x|) is in [1/2, 1], so the
 * log never sees 0). It also has the right gradient at x = 0: with the
 * subgradients relu'(0) = |.|'(0) = 0 that autograd uses, the first form
 * would give d/dx = -y there, the second gives sigmoid(0) - y = 1/2 - y, which
 * is PyTorch's. */
static nnm_status bce_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in,
                              nnm_tensor **out, uint32_t n_out) {
    const nnm_host *h = env->host;
    const loss_state *s = self;
    nnm_status st = check_arity(env, "bce_with_logits", in, n_in, out, n_out);
    if (st != NNM_OK)
        return st;
    out[0] = NULL;
    st = check_pointwise(env, "bce_with_logits", in[0], in[1]);
    if (st != NNM_OK)
        return st;
    nnm_tensor *x = in[0], *y = in[1];
    /* t[] holds every intermediate; released together at the end. */
    enum { ABS, SIG, LOGSIG, HALF_X, HALF_ABS, XY, RELU, A, LOSS, N_T };
    nnm_tensor *t[N_T] = {0};
    st = h->op_unary(env, NNM_UNARY_ABS, x, 0.0, &t[ABS]);
    if (st == NNM_OK)
        st = h->op_unary(env, NNM_UNARY_SIGMOID, t[ABS], 0.0, &t[SIG]);
    if (st == NNM_OK)
        st = h->op_unary(env, NNM_UNARY_LOG, t[SIG], 0.0, &t[LOGSIG]);
    if (st == NNM_OK)
        st = h->op_unary(env, NNM_UNARY_SCALE, x, 0.5, &t[HALF_X]);
    if (st == NNM_OK)
        st = h->op_unary(env, NNM_UNARY_SCALE, t[ABS], 0.5, &t[HALF_ABS]);
    if (st == NNM_OK)
        st = h->op_binary(env, NNM_BINARY_ADD, t[HALF_X], t[HALF_ABS], &t[RELU]);
    if (st == NNM_OK)
        st = h->op_binary(env, NNM_BINARY_MUL, x, y, &t[XY]);
    if (st == NNM_OK)
        st = h->op_binary(env, NNM_BINARY_SUB, t[RELU], t[XY], &t[A]);
    if (st == NNM_OK)
        st = h->op_binary(env, NNM_BINARY_SUB, t[A], t[LOGSIG], &t[LOSS]);
    nnm_tensor *loss = NULL;
    if (st == NNM_OK) {
        loss = t[LOSS];
        t[LOSS] = NULL;
    }
    for (int i = 0; i < N_T; i++)
        h->tensor_release(t[i]);
    if (st != NNM_OK)
        return st;
    return reduce_owned(env, s->reduction, loss, &out[0]);
}

/* ------------------------------------------------------------------------ */
/* cross_entropy, nll_loss                                                   */
/* ------------------------------------------------------------------------ */

/* Checks (input, target) of a class-index loss. *batched is 0 for the
 * unbatched form ([C] input, [] target). */
static nnm_status check_class_targets(nnm_env *env, const char *name, nnm_tensor *x,
                                      nnm_tensor *t, int *batched) {
    const nnm_host *h = env->host;
    const nnm_tensor_desc *dx = h->tensor_desc(x);
    const nnm_tensor_desc *dt = h->tensor_desc(t);
    char a[96], b[96];
    if (!is_f32(dx))
        return h->set_error(env, NNM_E_DTYPE, "%s: input must be f32", name);
    if (!is_i64(dt))
        return h->set_error(env, NNM_E_DTYPE,
                            "%s: target must hold class indices of dtype i64 (class "
                            "probabilities are not supported)",
                            name);
    if (dx->ndim == 2) {
        if (dt->ndim != 1 || dt->shape[0] != dx->shape[0])
            return h->set_error(env, NNM_E_SHAPE,
                                "%s: expected target of shape [%lld] for input %s, got %s", name,
                                (long long)dx->shape[0], nnm_lu_shape_str(dx, a, sizeof a),
                                nnm_lu_shape_str(dt, b, sizeof b));
        *batched = 1;
    } else if (dx->ndim == 1) {
        if (dt->ndim != 0)
            return h->set_error(env, NNM_E_SHAPE,
                                "%s: expected a scalar target ([]) for unbatched input %s, got %s",
                                name, nnm_lu_shape_str(dx, a, sizeof a), nnm_lu_shape_str(dt, b, sizeof b));
        *batched = 0;
    } else {
        return h->set_error(env, NNM_E_SHAPE,
                            "%s: input must be [N, C] (or [C] unbatched), got %s", name,
                            nnm_lu_shape_str(dx, a, sizeof a));
    }
    if (dx->shape[dx->ndim - 1] == 0)
        return h->set_error(env, NNM_E_SHAPE, "%s: input %s has no classes", name,
                            nnm_lu_shape_str(dx, a, sizeof a));
    return NNM_OK;
}

/* nll(logp, target) for one class-index loss; logp is borrowed. */
static nnm_status class_loss(nnm_env *env, const loss_state *s, nnm_tensor *logp,
                             nnm_tensor *target, int batched, nnm_tensor **out) {
    const nnm_host *h = env->host;
    if (batched)
        return h->op_nll(env, logp, target, s->ignore_index, s->label_smoothing, s->reduction,
                         out);
    /* Unbatched: [C] -> [1, C], [] -> [1], then the [1] per-sample loss of
     * "none" back to []. */
    const nnm_tensor_desc *d = h->tensor_desc(logp);
    const int64_t shape2[2] = {1, d->shape[0]};
    const int64_t shape1[1] = {1};
    nnm_tensor *lp2 = NULL, *t1 = NULL, *loss = NULL;
    nnm_status st = h->op_reshape(env, logp, 2, shape2, &lp2);
    if (st == NNM_OK)
        st = h->op_reshape(env, target, 1, shape1, &t1);
    if (st == NNM_OK)
        st = h->op_nll(env, lp2, t1, s->ignore_index, s->label_smoothing, s->reduction, &loss);
    h->tensor_release(lp2);
    h->tensor_release(t1);
    if (st != NNM_OK)
        return st;
    if (s->reduction != NNM_REDUCTION_NONE) {
        *out = loss;
        return NNM_OK;
    }
    st = h->op_reshape(env, loss, 0, NULL, out);
    h->tensor_release(loss);
    return st;
}

static nnm_status cross_entropy_forward(nnm_env *env, void *self, nnm_tensor *const *in,
                                        uint32_t n_in, nnm_tensor **out, uint32_t n_out) {
    const nnm_host *h = env->host;
    const loss_state *s = self;
    nnm_status st = check_arity(env, "cross_entropy", in, n_in, out, n_out);
    if (st != NNM_OK)
        return st;
    out[0] = NULL;
    int batched = 1;
    st = check_class_targets(env, "cross_entropy", in[0], in[1], &batched);
    if (st != NNM_OK)
        return st;
    nnm_tensor *logp = NULL;
    st = h->op_log_softmax(env, in[0], &logp);
    if (st != NNM_OK)
        return st;
    st = class_loss(env, s, logp, in[1], batched, &out[0]);
    h->tensor_release(logp);
    return st;
}

static nnm_status nll_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in,
                              nnm_tensor **out, uint32_t n_out) {
    const loss_state *s = self;
    nnm_status st = check_arity(env, "nll_loss", in, n_in, out, n_out);
    if (st != NNM_OK)
        return st;
    out[0] = NULL;
    int batched = 1;
    st = check_class_targets(env, "nll_loss", in[0], in[1], &batched);
    if (st != NNM_OK)
        return st;
    return class_loss(env, s, in[0], in[1], batched, &out[0]);
}

/* ------------------------------------------------------------------------ */
/* Descriptor                                                                */
/* ------------------------------------------------------------------------ */

/* Config schemas: the runtime checks keys and types before create. */
#define LOSS_REDUCTION_FIELD                                                             \
    {"reduction", NNM_CONFIG_STR, 0, "\"mean\" (default), \"sum\" or \"none\""}
#define LOSS_IGNORE_INDEX_FIELD                                                          \
    {"ignore_index", NNM_CONFIG_INT, 0, "target value that counts nothing (default -100)"}
static const nnm_config_field mse_config[] = {LOSS_REDUCTION_FIELD};
static const nnm_config_field bce_config[] = {LOSS_REDUCTION_FIELD};
static const nnm_config_field nll_config[] = {LOSS_REDUCTION_FIELD, LOSS_IGNORE_INDEX_FIELD};
static const nnm_config_field cross_entropy_config[] = {
    LOSS_REDUCTION_FIELD,
    LOSS_IGNORE_INDEX_FIELD,
    {"label_smoothing", NNM_CONFIG_FLOAT, 0, "in [0, 1] (default 0)"},
};

#define LOSS_LAYER(var, lname, display, create_fn, forward_fn, fields)                   \
    static const nnm_layer_vtable var = {                                                \
        .struct_size = sizeof(nnm_layer_vtable),                                         \
        .flags = 0,                                                                      \
        .name = lname,                                                                   \
        .version_major = 1,                                                              \
        .version_minor = 0,                                                              \
        .version_patch = 0,                                                              \
        .n_inputs = 2,                                                                   \
        .n_outputs = 1,                                                                  \
        .create = create_fn,                                                             \
        .destroy = loss_destroy,                                                         \
        .forward = forward_fn,                                                           \
        .extra_repr = loss_extra_repr,                                                   \
        .backward = NULL,                                                                \
        .config_fields = fields,                                                         \
        .n_config_fields = sizeof fields / sizeof fields[0],                             \
        .display_name = display,                                                         \
    }

LOSS_LAYER(mse_layer, "mse_loss", "MSELoss", mse_create, mse_forward, mse_config);
LOSS_LAYER(cross_entropy_layer, "cross_entropy", "CrossEntropyLoss", cross_entropy_create,
           cross_entropy_forward, cross_entropy_config);
LOSS_LAYER(nll_layer, "nll_loss", "NLLLoss", nll_create, nll_forward, nll_config);
LOSS_LAYER(bce_layer, "bce_with_logits", "BCEWithLogitsLoss", bce_create, bce_forward, bce_config);

static const nnm_layer_vtable *const loss_layers[] = {&mse_layer, &cross_entropy_layer,
                                                      &nll_layer, &bce_layer};

static const nnm_plugin_desc losses_plugin = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
    .name = "losses",
    .description = "Loss layers: mse_loss, cross_entropy, nll_loss, bce_with_logits",
    .n_layers = 4,
    .n_backends = 0,
    .layers = loss_layers,
    .backends = NULL,
    .domain = NNM_DOMAIN_NNMOD, /* nnmod's own library: the plain names */
};

NNM_PLUGIN_DEFINE(losses_plugin)
