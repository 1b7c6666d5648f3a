/* plugins/losses/losses.c - the loss layers of torch.nn in one plugin,
 * "losses": mse_loss, cross_entropy, nll_loss, bce_with_logits, l1_loss,
 * smooth_l1_loss, huber_loss, bce_loss, kl_div, cosine_embedding_loss,
 * margin_ranking_loss, multi_margin_loss, ctc_loss.
 *
 * Every loss computes with host ops only (op_unary, op_binary, op_reduce,
 * op_where, op_log_softmax, op_nll, op_reshape, op_permute and, for the
 * class weights, op_cast and op_index_select), so autograd and every device
 * come from the runtime (no `backward` slot). docs/layers.md ("Losses") is
 * the reference for each layer's inputs, config keys and differences from
 * PyTorch; the summary:
 *
 *   reduction   str, "mean" (default), "sum" or "none" (kl_div also
 *               "batchmean"). The output is a scalar ([] shape) for a
 *               reduction, the per-element (or per-sample) losses for "none".
 *   weight      (cross_entropy, nll_loss, bce_loss, bce_with_logits,
 *               multi_margin_loss) PyTorch's constructor tensor, given as a
 *               list of floats; it becomes the buffer "weight" (PyTorch
 *               registers it as a buffer: the state dicts match).
 *               bce_with_logits' `pos_weight` likewise.
 *
 * The config lists and PyTorch's formulas are in the descriptor section at
 * the end of this file.
 */
#include <nnmod/plugin.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layer_util.h"

/* nnmod.h's NNM_DEVICE_META (a plugin sees only plugin.h): modules built
 * there have shapes and no data, so the weight buffers are not filled. */
#define LOSS_DEVICE_META 0x6d6574

/* Which loss a state belongs to (index into loss_names). */
enum loss_kind {
    LOSS_MSE = 0,
    LOSS_CROSS_ENTROPY,
    LOSS_NLL,
    LOSS_BCE_WITH_LOGITS,
    LOSS_L1,
    LOSS_SMOOTH_L1,
    LOSS_HUBER,
    LOSS_BCE,
    LOSS_KL_DIV,
    LOSS_COSINE_EMBEDDING,
    LOSS_MARGIN_RANKING,
    LOSS_MULTI_MARGIN,
    LOSS_CTC,
    LOSS_N_KINDS
};

static const char *const loss_names[LOSS_N_KINDS] = {
    "mse_loss",       "cross_entropy",         "nll_loss",            "bce_with_logits",
    "l1_loss",        "smooth_l1_loss",        "huber_loss",          "bce_loss",
    "kl_div",         "cosine_embedding_loss", "margin_ranking_loss", "multi_margin_loss",
    "ctc_loss"};

/* enum nnm_reduction, plus kl_div's "batchmean". */
#define LOSS_REDUCTION_BATCHMEAN 3

typedef struct loss_state {
    int32_t kind;            /* enum loss_kind */
    int32_t reduction;       /* enum nnm_reduction or LOSS_REDUCTION_BATCHMEAN */
    int64_t ignore_index;    /* cross_entropy, nll_loss */
    double label_smoothing;  /* cross_entropy */
    double beta;             /* smooth_l1_loss' beta, huber_loss' delta */
    double margin;           /* cosine_embedding, margin_ranking, multi_margin */
    int64_t p;               /* multi_margin_loss: 1 or 2 */
    int log_target;          /* kl_div */
    int zero_infinity;       /* ctc_loss */
    int64_t blank;           /* ctc_loss */
    nnm_tensor *weight;      /* the "weight" buffer (borrowed) or NULL */
    nnm_tensor *pos_weight;  /* bce_with_logits' "pos_weight" buffer or NULL */
    int64_t n_weight, n_pos_weight;
} loss_state;

/* ------------------------------------------------------------------------ */
/* An arena of intermediate tensors: each helper returns a borrowed tensor    */
/* (released together by lc_finish) or NULL once an op failed, so a formula   */
/* reads as one expression and the first failure's status and message win.   */
/* ------------------------------------------------------------------------ */

#define LC_CAP 64

typedef struct lc {
    nnm_env *env;
    const nnm_host *h;
    nnm_status st;
    int n;
    nnm_tensor *t[LC_CAP];
} lc;

static void lc_init(lc *c, nnm_env *env) {
    c->env = env;
    c->h = env->host;
    c->st = NNM_OK;
    c->n = 0;
}

static nnm_tensor *lc_keep(lc *c, nnm_status st, nnm_tensor *t) {
    if (st != NNM_OK) {
        c->st = st;
        c->h->tensor_release(t);
        return NULL;
    }
    if (c->n == LC_CAP) { /* a bug in this file, not a user's mistake */
        c->h->tensor_release(t);
        c->st = c->h->set_error(c->env, NNM_E_LIMIT, "losses: too many intermediates");
        return NULL;
    }
    c->t[c->n++] = t;
    return t;
}

static nnm_tensor *un(lc *c, int32_t op, nnm_tensor *x, double a) {
    nnm_tensor *o = NULL;
    if (c->st != NNM_OK || x == NULL)
        return NULL;
    const nnm_status st_ = c->h->op_unary(c->env, op, x, a, &o);
    return lc_keep(c, st_, o);
}

static nnm_tensor *bin(lc *c, int32_t op, nnm_tensor *a, nnm_tensor *b) {
    nnm_tensor *o = NULL;
    if (c->st != NNM_OK || a == NULL || b == NULL)
        return NULL;
    const nnm_status st_ = c->h->op_binary(c->env, op, a, b, &o);
    return lc_keep(c, st_, o);
}

/* op over dim (keepdim 0), or over every dim when all is nonzero. */
static nnm_tensor *red(lc *c, int32_t op, nnm_tensor *x, int all, int32_t dim) {
    nnm_tensor *o = NULL;
    if (c->st != NNM_OK || x == NULL)
        return NULL;
    const nnm_status st_ = c->h->op_reduce(c->env, op, x, all ? NULL : &dim, all ? 0 : 1, 0, &o);
    return lc_keep(c, st_, o);
}

static nnm_tensor *reshape(lc *c, nnm_tensor *x, int32_t ndim, const int64_t *shape) {
    nnm_tensor *o = NULL;
    if (c->st != NNM_OK || x == NULL)
        return NULL;
    const nnm_status st_ = c->h->op_reshape(c->env, x, ndim, shape, &o);
    return lc_keep(c, st_, o);
}

static nnm_tensor *cast(lc *c, nnm_tensor *x, nnm_dtype dt) {
    nnm_tensor *o = NULL;
    if (c->st != NNM_OK || x == NULL)
        return NULL;
    const nnm_status st_ = c->h->op_cast(c->env, x, dt, &o);
    return lc_keep(c, st_, o);
}

static nnm_tensor *slice(lc *c, nnm_tensor *x, int32_t dim, int64_t start, int64_t len) {
    nnm_tensor *o = NULL;
    if (c->st != NNM_OK || x == NULL)
        return NULL;
    const nnm_status st_ = c->h->op_slice(c->env, x, dim, start, len, &o);
    return lc_keep(c, st_, o);
}

static nnm_tensor *concat2(lc *c, nnm_tensor *a, nnm_tensor *b, int32_t dim) {
    nnm_tensor *o = NULL;
    if (c->st != NNM_OK || a == NULL || b == NULL)
        return NULL;
    nnm_tensor *const xs[2] = {a, b};
    const nnm_status st_ = c->h->op_concat(c->env, xs, 2, dim, &o);
    return lc_keep(c, st_, o);
}

static nnm_tensor *detach(lc *c, nnm_tensor *x) {
    nnm_tensor *o = NULL;
    if (c->st != NNM_OK || x == NULL)
        return NULL;
    const nnm_status st_ = c->h->op_detach(c->env, x, &o);
    return lc_keep(c, st_, o);
}

/* A constant from host memory (f32 or i64). */
static nnm_tensor *from_host(lc *c, int32_t ndim, const int64_t *shape, nnm_dtype dt,
                             const void *data) {
    nnm_tensor *o = NULL;
    if (c->st != NNM_OK)
        return NULL;
    const nnm_status st_ = c->h->tensor_from_host(c->env, ndim, shape, dt, data, &o);
    return lc_keep(c, st_, o);
}

/* Shorthands. */
#define ADD(a, b) bin(c, NNM_BINARY_ADD, (a), (b))
#define SUB(a, b) bin(c, NNM_BINARY_SUB, (a), (b))
#define MUL(a, b) bin(c, NNM_BINARY_MUL, (a), (b))
#define DIV(a, b) bin(c, NNM_BINARY_DIV, (a), (b))
#define SCALE(x, a) un(c, NNM_UNARY_SCALE, (x), (a))
#define ADDS(x, a) un(c, NNM_UNARY_ADD_SCALAR, (x), (a))
#define NEG(x) un(c, NNM_UNARY_NEG, (x), 0.0)
#define ABS(x) un(c, NNM_UNARY_ABS, (x), 0.0)
#define LOG(x) un(c, NNM_UNARY_LOG, (x), 0.0)
#define GE(x, a) un(c, NNM_UNARY_GE, (x), (a)) /* 1 where x >= a; no gradient */
#define CMIN(x, a) un(c, NNM_UNARY_CLAMP_MIN, (x), (a))
#define CMAX(x, a) un(c, NNM_UNARY_CLAMP_MAX, (x), (a))

/* 1 where x == a exactly (x >= a and -x >= -a), else 0; no gradient. */
static nnm_tensor *eq_mask(lc *c, nnm_tensor *x, double a) {
    return MUL(GE(x, a), GE(NEG(x), -a));
}

/* torch.where(mask != 0, a, b) (mask without gradient). */
static nnm_tensor *where(lc *c, nnm_tensor *mask, nnm_tensor *a, nnm_tensor *b) {
    nnm_tensor *o = NULL;
    if (c->st != NNM_OK || mask == NULL || a == NULL || b == NULL)
        return NULL;
    const nnm_status st_ = c->h->op_where(c->env, mask, a, b, &o);
    return lc_keep(c, st_, o);
}

static nnm_tensor *scalar(lc *c, double v) {
    nnm_tensor *o = NULL;
    if (c->st != NNM_OK)
        return NULL;
    const nnm_status st_ = c->h->op_full(c->env, 0, NULL, v, &o);
    return lc_keep(c, st_, o);
}

/* Ends a computation: *out takes a new reference to `result` (when every op
 * succeeded) and the arena is released. */
static nnm_status lc_finish(lc *c, nnm_tensor *result, nnm_tensor **out) {
    if (c->st == NNM_OK && result != NULL) {
        c->h->tensor_retain(result);
        *out = result;
    }
    for (int i = 0; i < c->n; i++)
        c->h->tensor_release(c->t[i]);
    c->n = 0;
    if (c->st == NNM_OK && result == NULL)
        c->st = c->h->set_error(c->env, NNM_E_PLUGIN, "losses: no result");
    return c->st;
}

/* Applies `reduction` (not batchmean) to per-element losses x. */
static nnm_tensor *reduce_loss(lc *c, int32_t reduction, nnm_tensor *x) {
    if (reduction == NNM_REDUCTION_NONE)
        return x;
    return red(c, reduction == NNM_REDUCTION_SUM ? NNM_REDUCE_SUM : NNM_REDUCE_MEAN, x, 1, 0);
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

/* The losses added in issue 18 (and the weights) compose the ABI 1.3 ops
 * (op_full, op_where, GE, CLAMP_MIN/MAX, ADD_SCALAR); class weights also
 * op_cast, op_index_select and tensor_from_host (1.5). */
static nnm_status loss_check_host13(nnm_env *env, const char *name, int need15) {
    const nnm_host *h = env->host;
    if (!NNM_HOST_HAS(h, op_full) || !NNM_HOST_HAS(h, op_where) || !NNM_HOST_HAS(h, op_update))
        return h->set_error(env, NNM_E_VERSION,
                            "%s needs a host of ABI >= %d.3 (op_full, op_where, op_update); this "
                            "host speaks %u.%u",
                            name, NNM_ABI_MAJOR, (unsigned)h->abi_major, (unsigned)h->abi_minor);
    if (need15 && (!NNM_HOST_HAS(h, op_cast) || !NNM_HOST_HAS(h, op_index_select) ||
                   !NNM_HOST_HAS(h, tensor_from_host)))
        return h->set_error(env, NNM_E_VERSION,
                            "%s with a weight needs a host of ABI >= %d.5 (op_cast, "
                            "op_index_select, tensor_from_host); this host speaks %u.%u",
                            name, NNM_ABI_MAJOR, (unsigned)h->abi_major, (unsigned)h->abi_minor);
    return NNM_OK;
}

static nnm_status loss_read_reduction(nnm_env *env, const char *name, int batchmean,
                                      int32_t *out) {
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
    else if (batchmean && strcmp(s, "batchmean") == 0)
        *out = LOSS_REDUCTION_BATCHMEAN;
    else
        return h->set_error(env, NNM_E_INVALID,
                            "%s: reduction must be \"mean\", \"sum\"%s or \"none\", got \"%.64s\"",
                            name, batchmean ? ", \"batchmean\"" : "", s);
    return NNM_OK;
}

/* Reads the optional float list `key` (PyTorch's weight tensor) into a new
 * persistent buffer of the same name, [n], holding the values. *buf stays
 * NULL when the key is absent. */
static nnm_status loss_read_weight(nnm_env *env, const char *name, const char *key,
                                   nnm_tensor **buf, int64_t *n_out) {
    const nnm_host *h = env->host;
    int32_t type = 0;
    *buf = NULL;
    *n_out = 0;
    if (h->config_type(env, key, &type) == NNM_E_NOT_FOUND)
        return NNM_OK; /* PyTorch's None */
    nnm_status st = loss_check_host13(env, name, 1);
    if (st != NNM_OK)
        return st;
    double *v = NULL;
    size_t cap = 256, n = 0;
    for (;;) {
        double *nv = realloc(v, cap * sizeof *v);
        if (nv == NULL) {
            free(v);
            return h->set_error(env, NNM_E_NOMEM, "%s: out of memory for %s", name, key);
        }
        v = nv;
        st = h->config_floats(env, key, v, cap, &n);
        if (st != NNM_E_LIMIT || cap >= ((size_t)1 << 26))
            break;
        cap *= 4;
    }
    if (st != NNM_OK) {
        free(v);
        return st; /* the host named the key */
    }
    if (n == 0) {
        free(v);
        return h->set_error(env, NNM_E_INVALID, "%s: %s must be a non-empty list of floats",
                            name, key);
    }
    float *f = malloc(n * sizeof *f);
    if (f == NULL) {
        free(v);
        return h->set_error(env, NNM_E_NOMEM, "%s: out of memory for %s", name, key);
    }
    for (size_t i = 0; i < n; i++)
        f[i] = (float)v[i];
    free(v);
    const int64_t shape[1] = {(int64_t)n};
    st = h->buffer_new(env, key, 1, shape, NNM_INIT_ZEROS, 0.0, 1, buf);
    if (st == NNM_OK && h->device(env).type != LOSS_DEVICE_META) {
        nnm_tensor *src = NULL;
        st = h->tensor_from_host(env, 1, shape, NNM_F32, f, &src);
        if (st == NNM_OK)
            st = h->op_update(env, *buf, src, 0.0, 1.0);
        h->tensor_release(src);
    }
    free(f);
    if (st != NNM_OK) {
        *buf = NULL;
        return st;
    }
    *n_out = (int64_t)n;
    return NNM_OK;
}

static nnm_status loss_create(nnm_env *env, void **self, int32_t kind) {
    const nnm_host *h = env->host;
    const char *name = loss_names[kind];
    *self = NULL;
    nnm_status st = loss_check_host(env, name);
    if (st != NNM_OK)
        return st;
    if (kind >= LOSS_L1 && (st = loss_check_host13(env, name, 0)) != NNM_OK)
        return st;
    loss_state s;
    memset(&s, 0, sizeof s);
    s.kind = kind;
    s.ignore_index = -100;
    s.p = 1;
    st = loss_read_reduction(env, name, kind == LOSS_KL_DIV, &s.reduction);
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
    if (kind == LOSS_SMOOTH_L1 || kind == LOSS_HUBER) {
        const char *key = kind == LOSS_SMOOTH_L1 ? "beta" : "delta";
        const double dflt = 1.0;
        st = h->config_float(env, key, &dflt, &s.beta);
        if (st != NNM_OK)
            return st;
        if (kind == LOSS_SMOOTH_L1 && !(s.beta >= 0.0 && s.beta < INFINITY))
            return h->set_error(env, NNM_E_INVALID,
                                "%s: beta must be >= 0 and finite (smooth_l1_loss does not "
                                "support negative values for beta), got %g",
                                name, s.beta);
        if (kind == LOSS_HUBER && !(s.beta > 0.0 && s.beta < INFINITY))
            return h->set_error(env, NNM_E_INVALID,
                                "%s: delta must be > 0 and finite (huber_loss does not support "
                                "non-positive values for delta), got %g",
                                name, s.beta);
    }
    if (kind == LOSS_COSINE_EMBEDDING || kind == LOSS_MARGIN_RANKING ||
        kind == LOSS_MULTI_MARGIN) {
        const double dflt = kind == LOSS_MULTI_MARGIN ? 1.0 : 0.0;
        st = h->config_float(env, "margin", &dflt, &s.margin);
        if (st != NNM_OK)
            return st;
        if (!isfinite(s.margin))
            return h->set_error(env, NNM_E_INVALID, "%s: margin must be finite, got %g", name,
                                s.margin);
    }
    if (kind == LOSS_MULTI_MARGIN) {
        const int64_t dflt_p = 1;
        st = h->config_int(env, "p", &dflt_p, &s.p);
        if (st != NNM_OK)
            return st;
        if (s.p != 1 && s.p != 2)
            return h->set_error(env, NNM_E_INVALID,
                                "%s: p must be 1 or 2 (only p == 1 and p == 2 supported), got %lld",
                                name, (long long)s.p);
    }
    if (kind == LOSS_CTC) {
        const int64_t dflt_blank = 0;
        const int dflt_zi = 0;
        st = h->config_int(env, "blank", &dflt_blank, &s.blank);
        if (st == NNM_OK)
            st = h->config_bool(env, "zero_infinity", &dflt_zi, &s.zero_infinity);
        if (st != NNM_OK)
            return st;
        if (s.blank < 0)
            return h->set_error(env, NNM_E_INVALID, "%s: blank must be >= 0, got %lld", name,
                                (long long)s.blank);
        if (!NNM_HOST_HAS(h, op_index_select) || !NNM_HOST_HAS(h, op_detach) ||
            !NNM_HOST_HAS(h, tensor_read_f32) || !NNM_HOST_HAS(h, op_cast))
            return h->set_error(env, NNM_E_VERSION,
                                "%s needs a host of ABI >= %d.5 (op_index_select, op_detach, op_cast)",
                                name, NNM_ABI_MAJOR);
    }
    if (kind == LOSS_KL_DIV) {
        const int dflt_lt = 0;
        st = h->config_bool(env, "log_target", &dflt_lt, &s.log_target);
        if (st != NNM_OK)
            return st;
    }
    if (kind == LOSS_CROSS_ENTROPY || kind == LOSS_NLL || kind == LOSS_BCE ||
        kind == LOSS_BCE_WITH_LOGITS || kind == LOSS_MULTI_MARGIN) {
        st = loss_read_weight(env, name, "weight", &s.weight, &s.n_weight);
        if (st != NNM_OK)
            return st;
    }
    if (kind == LOSS_BCE_WITH_LOGITS) {
        st = loss_read_weight(env, name, "pos_weight", &s.pos_weight, &s.n_pos_weight);
        if (st != NNM_OK)
            return st;
    }
    loss_state *p = malloc(sizeof *p);
    if (p == NULL)
        return h->set_error(env, NNM_E_NOMEM, "out of memory for the %s layer's state", name);
    *p = s;
    *self = p;
    return NNM_OK;
}

#define LOSS_CREATE_FN(fn, kind)                                                         \
    static nnm_status fn(nnm_env *env, void **self) {                                    \
        return loss_create(env, self, kind);                                             \
    }
LOSS_CREATE_FN(mse_create, LOSS_MSE)
LOSS_CREATE_FN(cross_entropy_create, LOSS_CROSS_ENTROPY)
LOSS_CREATE_FN(nll_create, LOSS_NLL)
LOSS_CREATE_FN(bce_with_logits_create, LOSS_BCE_WITH_LOGITS)
LOSS_CREATE_FN(l1_create, LOSS_L1)
LOSS_CREATE_FN(smooth_l1_create, LOSS_SMOOTH_L1)
LOSS_CREATE_FN(huber_create, LOSS_HUBER)
LOSS_CREATE_FN(bce_create, LOSS_BCE)
LOSS_CREATE_FN(kl_div_create, LOSS_KL_DIV)
LOSS_CREATE_FN(cosine_embedding_create, LOSS_COSINE_EMBEDDING)
LOSS_CREATE_FN(margin_ranking_create, LOSS_MARGIN_RANKING)
LOSS_CREATE_FN(multi_margin_create, LOSS_MULTI_MARGIN)
LOSS_CREATE_FN(ctc_create, LOSS_CTC)

static void loss_destroy(void *self) {
    free(self);
}

/* PyTorch's loss modules define no extra_repr: print(model) shows
 * "CrossEntropyLoss()" whatever the config, and so does nnmod. */
static int loss_extra_repr(void *self, char *buf, size_t cap) {
    (void)self;
    return snprintf(buf, cap, "%s", "");
}

/* ------------------------------------------------------------------------ */
/* Checks                                                                    */
/* ------------------------------------------------------------------------ */

static int is_f32(const nnm_tensor_desc *d) {
    return nnm_lu_is_f32(d);
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
                              uint32_t n_in, nnm_tensor **out, uint32_t n_out, uint32_t want,
                              const char *names) {
    if (n_in != want || n_out != 1 || in == NULL || out == NULL)
        return env->host->set_error(env, NNM_E_SHAPE,
                                    "%s takes %u inputs (%s) and 1 output, got %u and %u", name,
                                    (unsigned)want, names, (unsigned)n_in, (unsigned)n_out);
    for (uint32_t i = 0; i < want; i++)
        if (in[i] == NULL)
            return env->host->set_error(env, NNM_E_SHAPE, "%s: input %u (of %s) is missing",
                                        name, (unsigned)i, names);
    out[0] = NULL;
    return NNM_OK;
}

/* input and target: f32 and the same shape. PyTorch broadcasts a target of
 * another size for most pointwise losses with a warning ("likely lead to
 * incorrect results"); nnmod cannot warn, so it refuses. */
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

/* A 1-d weight buffer of n entries applied to x elementwise: it broadcasts
 * against x's last dim (n == 1 or n == that size), as PyTorch's [C] weight
 * tensor does. */
static nnm_status check_elem_weight(nnm_env *env, const char *name, const char *key, int64_t n,
                                    nnm_tensor *x) {
    const nnm_host *h = env->host;
    const nnm_tensor_desc *dx = h->tensor_desc(x);
    const int64_t last = dx->ndim > 0 ? dx->shape[dx->ndim - 1] : 1;
    if (n != 1 && n != last) {
        char a[96];
        return h->set_error(env, NNM_E_SHAPE,
                            "%s: %s of size %lld does not broadcast to input %s (the size of "
                            "the last dim, %lld, or 1)",
                            name, key, (long long)n, nnm_lu_shape_str(dx, a, sizeof a),
                            (long long)last);
    }
    return NNM_OK;
}

/* ------------------------------------------------------------------------ */
/* Pointwise losses: mse_loss, l1_loss, smooth_l1_loss, huber_loss           */
/* ------------------------------------------------------------------------ */

static nnm_status pointwise_forward(nnm_env *env, void *self, nnm_tensor *const *in,
                                    uint32_t n_in, nnm_tensor **out, uint32_t n_out) {
    const loss_state *s = self;
    const char *name = loss_names[s->kind];
    nnm_status st = check_arity(env, name, in, n_in, out, n_out, 2, "input, target");
    if (st == NNM_OK)
        st = check_pointwise(env, name, in[0], in[1]);
    if (st != NNM_OK)
        return st;
    lc cc, *c = &cc;
    lc_init(c, env);
    nnm_tensor *d = SUB(in[0], in[1]), *l = NULL;
    switch (s->kind) {
    case LOSS_MSE:
        l = MUL(d, d);
        break;
    case LOSS_L1: /* |d|; the gradient at d = 0 is 0, as PyTorch's sign */
        l = ABS(d);
        break;
    case LOSS_SMOOTH_L1:
    case LOSS_HUBER: {
        /* z = |d|: z < b ? 0.5 z^2 / b : z - 0.5 b (smooth_l1, b = beta), or
         * z < b ? 0.5 z^2 : b (z - 0.5 b) (huber, b = delta). The quadratic
         * branch is computed on min(z, b), so the branch not taken never
         * overflows; the linear branch holds from z = b on, as PyTorch. */
        const double b = s->beta;
        nnm_tensor *z = ABS(d);
        if (s->kind == LOSS_SMOOTH_L1 && b == 0.0) { /* PyTorch: l1_loss */
            l = z;
            break;
        }
        nnm_tensor *zc = CMAX(z, b);
        nnm_tensor *quad = SCALE(MUL(zc, zc), s->kind == LOSS_SMOOTH_L1 ? 0.5 / b : 0.5);
        nnm_tensor *lin = ADDS(z, -0.5 * b);
        if (s->kind == LOSS_HUBER)
            lin = SCALE(lin, b);
        l = where(c, GE(z, b), lin, quad);
        break;
    }
    default:
        break;
    }
    return lc_finish(c, reduce_loss(c, s->reduction, l), &out[0]);
}

/* ------------------------------------------------------------------------ */
/* bce_loss, bce_with_logits                                                 */
/* ------------------------------------------------------------------------ */

/* max(log(x), -100), PyTorch's clamp of the log in binary_cross_entropy.
 * The log is taken of max(x, smallest denormal), so log(0) is never formed:
 * the value is -100 there and the gradient 0 (never 0 * inf). */
static nnm_tensor *clamped_log(lc *c, nnm_tensor *x) {
    return CMIN(LOG(CMIN(x, 1.401298464324817e-45)), -100.0);
}

static nnm_status bce_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in,
                              nnm_tensor **out, uint32_t n_out) {
    const loss_state *s = self;
    const char *name = loss_names[s->kind];
    nnm_status st = check_arity(env, name, in, n_in, out, n_out, 2, "input, target");
    if (st == NNM_OK)
        st = check_pointwise(env, name, in[0], in[1]);
    if (st == NNM_OK && s->weight != NULL)
        st = check_elem_weight(env, name, "weight", s->n_weight, in[0]);
    if (st != NNM_OK)
        return st;
    lc cc, *c = &cc;
    lc_init(c, env);
    nnm_tensor *x = in[0], *y = in[1];
    /* (y - 1) * max(log(1 - x), -100) - y * max(log(x), -100), as PyTorch */
    nnm_tensor *lx = clamped_log(c, x);
    nnm_tensor *l1x = clamped_log(c, ADDS(NEG(x), 1.0));
    nnm_tensor *l = SUB(MUL(ADDS(y, -1.0), l1x), MUL(y, lx));
    if (s->weight != NULL)
        l = MUL(l, s->weight);
    return lc_finish(c, reduce_loss(c, s->reduction, l), &out[0]);
}

/* loss = max(x, 0) - x*y + log(1 + exp(-|x|)), computed as
 *        x*(1/2) + |x|*(1/2) - x*y - log(sigmoid(|x|)).
 * The two forms are equal (max(x, 0) = (x + |x|) / 2 exactly in binary
 * floating point, and log(1 + exp(-a)) = -log(sigmoid(a))), and the second
 * needs no constant tensor and is stable (sigmoid(|x|) is in [1/2, 1], so the
 * log never sees 0). It also has the right gradient at x = 0: with the
 * subgradients relu'(0) = |.|'(0) = 0 that autograd uses, the first form
 * would give d/dx = -y there, the second gives sigmoid(0) - y = 1/2 - y, which
 * is PyTorch's.
 * With pos_weight pw, PyTorch's (1 - y) x + (1 + (pw - 1) y) softplus(-x),
 * softplus(-x) = |x|/2 - x/2 - log(sigmoid(|x|)) (gradient -1/2 at 0, as
 * -sigmoid(0)). weight multiplies the result. */
static nnm_status bce_with_logits_forward(nnm_env *env, void *self, nnm_tensor *const *in,
                                          uint32_t n_in, nnm_tensor **out, uint32_t n_out) {
    const loss_state *s = self;
    const char *name = loss_names[s->kind];
    nnm_status st = check_arity(env, name, in, n_in, out, n_out, 2, "input, target");
    if (st == NNM_OK)
        st = check_pointwise(env, name, in[0], in[1]);
    if (st == NNM_OK && s->weight != NULL)
        st = check_elem_weight(env, name, "weight", s->n_weight, in[0]);
    if (st == NNM_OK && s->pos_weight != NULL)
        st = check_elem_weight(env, name, "pos_weight", s->n_pos_weight, in[0]);
    if (st != NNM_OK)
        return st;
    lc cc, *c = &cc;
    lc_init(c, env);
    nnm_tensor *x = in[0], *y = in[1];
    nnm_tensor *ax = ABS(x);
    nnm_tensor *logsig = LOG(un(c, NNM_UNARY_SIGMOID, ax, 0.0));
    nnm_tensor *half_x = SCALE(x, 0.5), *half_abs = SCALE(ax, 0.5);
    nnm_tensor *l;
    if (s->pos_weight == NULL) {
        l = SUB(SUB(ADD(half_x, half_abs), MUL(x, y)), logsig);
    } else {
        nnm_tensor *sp = SUB(SUB(half_abs, half_x), logsig); /* softplus(-x) */
        nnm_tensor *lw = ADDS(MUL(ADDS(s->pos_weight, -1.0), y), 1.0);
        l = ADD(SUB(x, MUL(x, y)), MUL(lw, sp));
    }
    if (s->weight != NULL)
        l = MUL(l, s->weight);
    return lc_finish(c, reduce_loss(c, s->reduction, l), &out[0]);
}

/* ------------------------------------------------------------------------ */
/* kl_div                                                                    */
/* ------------------------------------------------------------------------ */

/* log_target: exp(t) (t - x); else xlogy(t, t) - t x, with xlogy(t, t) =
 * t log(t) where t > 0 and 0 elsewhere (computed as t * log(where(t > 0, t,
 * 1)), so t = 0 gives 0 and no NaN). */
static nnm_status kl_div_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in,
                                 nnm_tensor **out, uint32_t n_out) {
    const nnm_host *h = env->host;
    const loss_state *s = self;
    const char *name = loss_names[s->kind];
    nnm_status st = check_arity(env, name, in, n_in, out, n_out, 2, "input, target");
    if (st == NNM_OK)
        st = check_pointwise(env, name, in[0], in[1]);
    if (st != NNM_OK)
        return st;
    lc cc, *c = &cc;
    lc_init(c, env);
    nnm_tensor *x = in[0], *t = in[1], *l;
    if (s->log_target) {
        l = MUL(un(c, NNM_UNARY_EXP, t, 0.0), SUB(t, x));
    } else {
        nnm_tensor *pos = un(c, NNM_UNARY_STEP, t, 0.0);
        nnm_tensor *ts = where(c, pos, t, scalar(c, 1.0));
        l = SUB(MUL(t, LOG(ts)), MUL(t, x));
    }
    nnm_tensor *r;
    if (s->reduction == LOSS_REDUCTION_BATCHMEAN) {
        /* sum / input.size(0) (a 0-d input: the sum) */
        const nnm_tensor_desc *dx = h->tensor_desc(x);
        r = red(c, NNM_REDUCE_SUM, l, 1, 0);
        if (dx->ndim > 0)
            r = SCALE(r, 1.0 / (double)dx->shape[0]);
        if (dx->ndim > 0 && dx->shape[0] == 0)
            r = SCALE(r, NAN); /* 0 / 0, as PyTorch */
    } else {
        r = reduce_loss(c, s->reduction, l);
    }
    return lc_finish(c, r, &out[0]);
}

/* ------------------------------------------------------------------------ */
/* cosine_embedding_loss, margin_ranking_loss                                */
/* ------------------------------------------------------------------------ */

/* y as f32 (an i64 target of +-1 is accepted too, as PyTorch). */
static nnm_tensor *target_f32(lc *c, const char *name, nnm_tensor *y) {
    const nnm_tensor_desc *d = c->h->tensor_desc(y);
    if (is_f32(d))
        return y;
    if (is_i64(d) && NNM_HOST_HAS(c->h, op_cast))
        return cast(c, y, NNM_F32);
    char b[32];
    c->st = c->h->set_error(c->env, NNM_E_DTYPE, "%s: target must be f32 or i64, got %s", name,
                            nnm_lu_dtype_str(d->dtype, b, sizeof b));
    return NULL;
}

/* x1, x2 [N, D] with y [N], or [D] with y []: y == 1 gives 1 - cos, y == -1
 * max(0, cos - margin), any other value 0; cos = x1.x2 / sqrt((|x1|^2 + eps)
 * (|x2|^2 + eps)), eps = 1e-12, as PyTorch. */
static nnm_status cosine_embedding_forward(nnm_env *env, void *self, nnm_tensor *const *in,
                                           uint32_t n_in, nnm_tensor **out, uint32_t n_out) {
    const nnm_host *h = env->host;
    const loss_state *s = self;
    const char *name = loss_names[s->kind];
    nnm_status st = check_arity(env, name, in, n_in, out, n_out, 3, "input1, input2, target");
    if (st != NNM_OK)
        return st;
    const nnm_tensor_desc *d1 = h->tensor_desc(in[0]), *d2 = h->tensor_desc(in[1]);
    const nnm_tensor_desc *dy = h->tensor_desc(in[2]);
    char a[96], b[96], t[96];
    if (!is_f32(d1) || !is_f32(d2))
        return h->set_error(env, NNM_E_DTYPE, "%s: input1 and input2 must be f32", name);
    if (dy->ndim > 1)
        return h->set_error(env, NNM_E_SHAPE,
                            "%s: 0D or 1D target tensor expected, multi-target not supported "
                            "(target %s)",
                            name, nnm_lu_shape_str(dy, t, sizeof t));
    if (!same_shape(d1, d2) || d1->ndim != dy->ndim + 1 ||
        (dy->ndim == 1 && dy->shape[0] != d1->shape[0]))
        return h->set_error(env, NNM_E_SHAPE,
                            "%s: expected input1 and input2 of one shape, [N, D] with target "
                            "[N] or [D] with target [], got %s, %s and target %s",
                            name, nnm_lu_shape_str(d1, a, sizeof a),
                            nnm_lu_shape_str(d2, b, sizeof b), nnm_lu_shape_str(dy, t, sizeof t));
    lc cc, *c = &cc;
    lc_init(c, env);
    nnm_tensor *x1 = in[0], *x2 = in[1];
    nnm_tensor *y = target_f32(c, name, in[2]);
    const double eps = 1e-12;
    nnm_tensor *prod = red(c, NNM_REDUCE_SUM, MUL(x1, x2), 0, -1);
    nnm_tensor *m1 = ADDS(red(c, NNM_REDUCE_SUM, MUL(x1, x1), 0, -1), eps);
    nnm_tensor *m2 = ADDS(red(c, NNM_REDUCE_SUM, MUL(x2, x2), 0, -1), eps);
    nnm_tensor *cosv = DIV(prod, un(c, NNM_UNARY_SQRT, MUL(m1, m2), 0.0));
    nnm_tensor *pos = ADDS(NEG(cosv), 1.0);
    nnm_tensor *neg = CMIN(ADDS(cosv, -s->margin), 0.0);
    nnm_tensor *l = ADD(MUL(eq_mask(c, y, 1.0), pos), MUL(eq_mask(c, y, -1.0), neg));
    return lc_finish(c, reduce_loss(c, s->reduction, l), &out[0]);
}

/* max(0, -y (x1 - x2) + margin), as PyTorch (the three of one ndim; sizes
 * broadcast). */
static nnm_status margin_ranking_forward(nnm_env *env, void *self, nnm_tensor *const *in,
                                         uint32_t n_in, nnm_tensor **out, uint32_t n_out) {
    const nnm_host *h = env->host;
    const loss_state *s = self;
    const char *name = loss_names[s->kind];
    nnm_status st = check_arity(env, name, in, n_in, out, n_out, 3, "input1, input2, target");
    if (st != NNM_OK)
        return st;
    const nnm_tensor_desc *d1 = h->tensor_desc(in[0]), *d2 = h->tensor_desc(in[1]);
    const nnm_tensor_desc *dy = h->tensor_desc(in[2]);
    char a[96], b[96], t[96];
    if (!is_f32(d1) || !is_f32(d2) || !is_f32(dy))
        return h->set_error(env, NNM_E_DTYPE, "%s: input1, input2 and target must be f32", name);
    if (d1->ndim != d2->ndim || d1->ndim != dy->ndim)
        return h->set_error(env, NNM_E_SHAPE,
                            "%s: All input tensors should have same dimension but got sizes: "
                            "input1: %s, input2: %s, target: %s",
                            name, nnm_lu_shape_str(d1, a, sizeof a),
                            nnm_lu_shape_str(d2, b, sizeof b), nnm_lu_shape_str(dy, t, sizeof t));
    lc cc, *c = &cc;
    lc_init(c, env);
    nnm_tensor *l = CMIN(ADDS(MUL(NEG(in[2]), SUB(in[0], in[1])), s->margin), 0.0);
    return lc_finish(c, reduce_loss(c, s->reduction, l), &out[0]);
}

/* ------------------------------------------------------------------------ */
/* cross_entropy, nll_loss, multi_margin_loss                                */
/* ------------------------------------------------------------------------ */

/* The class-index losses see their input as rows: [N, C] as is, [C] as
 * [1, C], [N, C, d1, ...] as [N * d1 * ..., C] (class dim moved last). */
typedef struct rows {
    int64_t n_rows, n_classes;
    int32_t out_ndim;                  /* "none"'s output: [], [N] or [N, d1, ...] */
    int64_t out_shape[NNM_MAX_DIMS];
} rows;

/* Checks (input, target) of a class-index or class-probability loss and
 * fills *r; *probs is 1 for an f32 target of the input's shape (cross_entropy
 * only: `allow_probs`). */
static nnm_status check_class_targets(nnm_env *env, const char *name, nnm_tensor *x,
                                      nnm_tensor *t, int allow_probs, int *probs, rows *r) {
    const nnm_host *h = env->host;
    const nnm_tensor_desc *dx = h->tensor_desc(x);
    const nnm_tensor_desc *dt = h->tensor_desc(t);
    char a[96], b[96];
    if (!is_f32(dx))
        return h->set_error(env, NNM_E_DTYPE, "%s: input must be f32", name);
    if (dx->ndim < 1)
        return h->set_error(env, NNM_E_SHAPE,
                            "%s: input must be [N, C], [N, C, d1, ...] or [C] (unbatched), got %s",
                            name, nnm_lu_shape_str(dx, a, sizeof a));
    const int32_t cdim = dx->ndim == 1 ? 0 : 1;
    r->n_classes = dx->shape[cdim];
    r->n_rows = 1;
    r->out_ndim = 0;
    for (int32_t i = 0; i < dx->ndim; i++) {
        if (i == cdim)
            continue;
        r->n_rows *= dx->shape[i];
        r->out_shape[r->out_ndim++] = dx->shape[i];
    }
    *probs = 0;
    if (allow_probs && is_f32(dt)) {
        if (!same_shape(dx, dt))
            return h->set_error(env, NNM_E_SHAPE,
                                "%s: class-probability target %s must have the input's shape %s",
                                name, nnm_lu_shape_str(dt, b, sizeof b),
                                nnm_lu_shape_str(dx, a, sizeof a));
        *probs = 1;
    } else if (!is_i64(dt)) {
        return h->set_error(env, NNM_E_DTYPE,
                            allow_probs ? "%s: target must hold class indices (i64) or class "
                                          "probabilities (f32, the input's shape)"
                                        : "%s: target must hold class indices of dtype i64",
                            name);
    } else {
        int ok = dt->ndim == r->out_ndim;
        for (int32_t i = 0; ok && i < dt->ndim; i++)
            ok = dt->shape[i] == r->out_shape[i];
        if (!ok) {
            char want[96];
            nnm_tensor_desc w = *dt;
            w.ndim = r->out_ndim;
            w.shape = r->out_shape;
            return h->set_error(env, NNM_E_SHAPE, "%s: expected target of shape %s for input %s, got %s",
                                name, nnm_lu_shape_str(&w, want, sizeof want),
                                nnm_lu_shape_str(dx, a, sizeof a),
                                nnm_lu_shape_str(dt, b, sizeof b));
        }
    }
    if (r->n_classes == 0)
        return h->set_error(env, NNM_E_SHAPE, "%s: input %s has no classes", name,
                            nnm_lu_shape_str(dx, a, sizeof a));
    return NNM_OK;
}

/* x as [rows, C] (class dim last), borrowed from the arena. */
static nnm_tensor *as_rows(lc *c, nnm_tensor *x, const rows *r) {
    const nnm_tensor_desc *d = c->h->tensor_desc(x);
    const int64_t shape[2] = {r->n_rows, r->n_classes};
    if (d->ndim <= 2)
        return reshape(c, x, 2, shape);
    if (c->st != NNM_OK)
        return NULL;
    int32_t perm[NNM_MAX_DIMS];
    int32_t k = 0;
    perm[k++] = 0;
    for (int32_t i = 2; i < d->ndim; i++)
        perm[k++] = i;
    perm[k++] = 1;
    nnm_tensor *o = NULL;
    if (!NNM_HOST_HAS(c->h, op_permute)) {
        c->st = c->h->set_error(c->env, NNM_E_VERSION, "K-dimensional input needs op_permute (ABI 1.3)");
        return NULL;
    }
    const nnm_status st = c->h->op_permute(c->env, x, perm, d->ndim, &o);
    nnm_tensor *p = lc_keep(c, st, o);
    return reshape(c, p, 2, shape);
}

/* target [..] as [rows] */
static nnm_tensor *target_rows(lc *c, nnm_tensor *t, const rows *r) {
    const int64_t shape[1] = {r->n_rows};
    return reshape(c, t, 1, shape);
}

/* per-row losses [rows] -> "none"'s output shape */
static nnm_tensor *rows_out(lc *c, nnm_tensor *l, const rows *r) {
    return reshape(c, l, r->out_ndim, r->out_shape);
}

/* The class-index loss of log-probabilities logp [rows, C] and targets
 * [rows] (i64), weights w [C] or NULL, label smoothing e: per row
 * (1 - e) w[y] nll + (e / C) sum_c w_c (-logp_c), 0 where y ==
 * ignore_index; "mean" divides by sum w[y] over rows not ignored, as
 * PyTorch. Without weights the host's op_nll does it all. */
static nnm_tensor *class_index_loss(lc *c, const loss_state *s, nnm_tensor *logp, nnm_tensor *tgt,
                                    const rows *r) {
    const nnm_host *h = c->h;
    if (c->st != NNM_OK)
        return NULL;
    if (s->weight == NULL) {
        nnm_tensor *o = NULL;
        const nnm_status st = h->op_nll(c->env, logp, tgt, s->ignore_index, s->label_smoothing,
                                        s->reduction, &o);
        o = lc_keep(c, st, o);
        return s->reduction == NNM_REDUCTION_NONE ? rows_out(c, o, r) : o;
    }
    if (s->n_weight != r->n_classes) {
        c->st = h->set_error(c->env, NNM_E_SHAPE,
                             "%s: weight has %lld entries, the input %lld classes (a weight "
                             "tensor should be defined either for all %lld classes or no classes)",
                             loss_names[s->kind], (long long)s->n_weight, (long long)r->n_classes,
                             (long long)r->n_classes);
        return NULL;
    }
    /* -logp[i, y_i] (0 where ignored; op_nll checks the range of y) */
    nnm_tensor *nll = NULL;
    nnm_status st = h->op_nll(c->env, logp, tgt, s->ignore_index, 0.0, NNM_REDUCTION_NONE, &nll);
    nll = lc_keep(c, st, nll);
    /* w[y_i] over rows not ignored: ignored targets index class 0, then 0 */
    nnm_tensor *tf = cast(c, tgt, NNM_F32);
    nnm_tensor *valid = ADDS(NEG(eq_mask(c, tf, (double)s->ignore_index)), 1.0);
    nnm_tensor *tsafe = cast(c, MUL(tf, valid), (nnm_dtype){NNM_DTYPE_INT, 64, 1});
    nnm_tensor *wy = NULL;
    if (c->st == NNM_OK && tsafe != NULL) {
        st = h->op_index_select(c->env, s->weight, 0, tsafe, &wy);
        wy = lc_keep(c, st, wy);
    }
    wy = MUL(wy, valid);
    nnm_tensor *l = MUL(nll, wy);
    if (s->label_smoothing > 0.0) {
        nnm_tensor *smooth = MUL(NEG(red(c, NNM_REDUCE_SUM, MUL(logp, s->weight), 0, -1)), valid);
        l = ADD(SCALE(l, 1.0 - s->label_smoothing),
                SCALE(smooth, s->label_smoothing / (double)r->n_classes));
    }
    switch (s->reduction) {
    case NNM_REDUCTION_NONE: return rows_out(c, l, r);
    case NNM_REDUCTION_SUM: return red(c, NNM_REDUCE_SUM, l, 1, 0);
    default: return DIV(red(c, NNM_REDUCE_SUM, l, 1, 0), red(c, NNM_REDUCE_SUM, wy, 1, 0));
    }
}

/* Class-probability targets p [rows, C]: per row -sum_c w_c p'_c logp_c
 * with p' = (1 - e) p + e / C; "mean" divides by the number of rows, as
 * PyTorch (not by the weights). */
static nnm_tensor *class_prob_loss(lc *c, const loss_state *s, nnm_tensor *logp, nnm_tensor *p,
                                   const rows *r) {
    if (s->weight != NULL && s->n_weight != r->n_classes) {
        c->st = c->h->set_error(c->env, NNM_E_SHAPE,
                                "%s: weight has %lld entries, the input %lld classes",
                                loss_names[s->kind], (long long)s->n_weight,
                                (long long)r->n_classes);
        return NULL;
    }
    if (s->label_smoothing > 0.0)
        p = ADDS(SCALE(p, 1.0 - s->label_smoothing), s->label_smoothing / (double)r->n_classes);
    nnm_tensor *prod = MUL(logp, p);
    if (s->weight != NULL)
        prod = MUL(prod, s->weight);
    nnm_tensor *l = NEG(red(c, NNM_REDUCE_SUM, prod, 0, -1));
    switch (s->reduction) {
    case NNM_REDUCTION_NONE: return rows_out(c, l, r);
    case NNM_REDUCTION_SUM: return red(c, NNM_REDUCE_SUM, l, 1, 0);
    default: return red(c, NNM_REDUCE_MEAN, l, 1, 0);
    }
}

static nnm_status class_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in,
                                nnm_tensor **out, uint32_t n_out) {
    const nnm_host *h = env->host;
    const loss_state *s = self;
    const char *name = loss_names[s->kind];
    nnm_status st = check_arity(env, name, in, n_in, out, n_out, 2, "input, target");
    if (st != NNM_OK)
        return st;
    int probs = 0;
    rows r;
    st = check_class_targets(env, name, in[0], in[1], s->kind == LOSS_CROSS_ENTROPY, &probs, &r);
    if (st != NNM_OK)
        return st;
    if (probs && s->ignore_index >= 0)
        return h->set_error(env, NNM_E_INVALID,
                            "%s: ignore_index is not supported for floating point target "
                            "(class probabilities; ignore_index = %lld)",
                            name, (long long)s->ignore_index);
    lc cc, *c = &cc;
    lc_init(c, env);
    nnm_tensor *x = as_rows(c, in[0], &r), *logp = x;
    if (s->kind == LOSS_CROSS_ENTROPY && c->st == NNM_OK && x != NULL) {
        logp = NULL;
        st = h->op_log_softmax(env, x, &logp);
        logp = lc_keep(c, st, logp);
    }
    nnm_tensor *l = probs ? class_prob_loss(c, s, logp, as_rows(c, in[1], &r), &r)
                          : class_index_loss(c, s, logp, target_rows(c, in[1], &r), &r);
    return lc_finish(c, l, &out[0]);
}

/* multi_margin_loss: input [N, C] with target [N], or [C] with target [] or
 * [1]; per row sum_{j != y} w[y] max(0, margin - x[y] + x[j])^p / C. x[y]
 * is picked with a one-hot mask (arange(C) == y), so no gather kernel is
 * needed; targets outside [0, C) are refused, as PyTorch. */
static nnm_status multi_margin_forward(nnm_env *env, void *self, nnm_tensor *const *in,
                                       uint32_t n_in, nnm_tensor **out, uint32_t n_out) {
    const nnm_host *h = env->host;
    const loss_state *s = self;
    const char *name = loss_names[s->kind];
    nnm_status st = check_arity(env, name, in, n_in, out, n_out, 2, "input, target");
    if (st != NNM_OK)
        return st;
    if (!NNM_HOST_HAS(h, op_cast) || !NNM_HOST_HAS(h, tensor_from_host) ||
        !NNM_HOST_HAS(h, tensor_read_f32))
        return h->set_error(env, NNM_E_VERSION,
                            "%s needs a host of ABI >= %d.5 (op_cast, tensor_from_host)", name,
                            NNM_ABI_MAJOR);
    const nnm_tensor_desc *dx = h->tensor_desc(in[0]), *dt = h->tensor_desc(in[1]);
    char a[96], b[96];
    if (!is_f32(dx))
        return h->set_error(env, NNM_E_DTYPE, "%s: input must be f32", name);
    if (!is_i64(dt))
        return h->set_error(env, NNM_E_DTYPE, "%s: target must hold class indices of dtype i64",
                            name);
    if ((dx->ndim != 1 && dx->ndim != 2) || dx->shape[dx->ndim - 1] == 0)
        return h->set_error(env, NNM_E_SHAPE,
                            "%s: Expected non-empty vector or matrix with optional 0-dim batch "
                            "size, but got: %s",
                            name, nnm_lu_shape_str(dx, a, sizeof a));
    const int64_t n = dx->ndim == 2 ? dx->shape[0] : 1, C = dx->shape[dx->ndim - 1];
    if (dt->ndim > 1 || nnm_lu_numel(dt) != n)
        return h->set_error(env, NNM_E_SHAPE, "%s: inconsistent target size, expected %lld but got %s",
                            name, (long long)n, nnm_lu_shape_str(dt, b, sizeof b));
    if (s->weight != NULL && s->n_weight != C)
        return h->set_error(env, NNM_E_SHAPE,
                            "%s: weight has %lld entries, the input %lld classes", name,
                            (long long)s->n_weight, (long long)C);
    float *ar = malloc((size_t)C * sizeof *ar);
    if (ar == NULL)
        return h->set_error(env, NNM_E_NOMEM, "%s: out of memory", name);
    for (int64_t j = 0; j < C; j++)
        ar[j] = (float)j;
    lc cc, *c = &cc;
    lc_init(c, env);
    const int64_t row_shape[2] = {1, C}, col_shape[2] = {n, 1}, x_shape[2] = {n, C};
    nnm_tensor *arange = NULL;
    st = h->tensor_from_host(env, 2, row_shape, NNM_F32, ar, &arange);
    free(ar);
    arange = lc_keep(c, st, arange);
    nnm_tensor *x = reshape(c, in[0], 2, x_shape);
    nnm_tensor *tf = reshape(c, cast(c, in[1], NNM_F32), 2, col_shape);
    nnm_tensor *onehot = eq_mask(c, SUB(arange, tf), 0.0); /* [n, C] */
    if (c->st == NNM_OK && n > 0) { /* every row has its class: y in [0, C) */
        nnm_tensor *cnt = red(c, NNM_REDUCE_SUM, onehot, 1, 0);
        float got = 0.0f;
        if (c->st == NNM_OK && (c->st = h->tensor_read_f32(env, cnt, &got, 1)) == NNM_OK &&
            got != (float)n)
            c->st = h->set_error(env, NNM_E_INVALID, "%s: target out of range: every target "
                                 "must be in [0, %lld)", name, (long long)C);
    }
    nnm_tensor *xy = red(c, NNM_REDUCE_SUM, MUL(x, onehot), 0, -1);   /* [n] */
    nnm_tensor *z = ADDS(SUB(x, reshape(c, xy, 2, col_shape)), s->margin); /* [n, C] */
    nnm_tensor *hinge = un(c, NNM_UNARY_RELU, z, 0.0);
    if (s->p == 2)
        hinge = MUL(hinge, hinge);
    hinge = MUL(hinge, ADDS(NEG(onehot), 1.0)); /* j != y */
    if (s->weight != NULL)
        hinge = MUL(hinge, reshape(c, red(c, NNM_REDUCE_SUM, MUL(onehot, s->weight), 0, -1), 2,
                                   col_shape));
    nnm_tensor *l = SCALE(red(c, NNM_REDUCE_SUM, hinge, 0, -1), 1.0 / (double)C); /* [n] */
    if (s->reduction == NNM_REDUCTION_NONE && dx->ndim == 1)
        l = reshape(c, l, dt->ndim, dt->shape); /* [] or [1], as PyTorch */
    return lc_finish(c, reduce_loss(c, s->reduction, l), &out[0]);
}

/* ------------------------------------------------------------------------ */
/* ctc_loss                                                                  */
/* ------------------------------------------------------------------------ */

/* What the composed recursion needs from the host: the lengths and the
 * targets (read to host memory, as PyTorch checks them on the CPU), each
 * sample's extended label sequence l' (blank, l1, blank, l2, ..., blank) of
 * L = 2 tl + 1 states, padded to W = 2 S + 1. */
typedef struct ctc_host {
    int64_t T, N, C, S, W, max_len;
    float *il, *tl;       /* [N] */
    int64_t *lab;         /* [N, W]: l'[b][k] (blank past L) */
} ctc_host;

static void ctc_host_free(ctc_host *k) {
    free(k->il);
    free(k->tl);
    free(k->lab);
}

static nnm_status ctc_host_read(nnm_env *env, const loss_state *s, nnm_tensor *lp, nnm_tensor *tg,
                                nnm_tensor *il, nnm_tensor *tl, ctc_host *k) {
    const nnm_host *h = env->host;
    const nnm_tensor_desc *dl = h->tensor_desc(lp), *dt = h->tensor_desc(tg);
    memset(k, 0, sizeof *k);
    k->T = dl->shape[0];
    k->N = dl->shape[1];
    k->C = dl->shape[2];
    const int64_t n_tg = nnm_lu_numel(dt);
    const int padded = dt->ndim == 2;
    float *tv = malloc((size_t)(n_tg + 1) * sizeof *tv);
    k->il = malloc((size_t)(k->N + 1) * sizeof *k->il);
    k->tl = malloc((size_t)(k->N + 1) * sizeof *k->tl);
    nnm_status st = NNM_OK;
    if (tv == NULL || k->il == NULL || k->tl == NULL)
        st = h->set_error(env, NNM_E_NOMEM, "ctc_loss: out of memory");
    if (st == NNM_OK && k->N > 0)
        st = h->tensor_read_f32(env, il, k->il, (size_t)k->N);
    if (st == NNM_OK && k->N > 0)
        st = h->tensor_read_f32(env, tl, k->tl, (size_t)k->N);
    if (st == NNM_OK && n_tg > 0)
        st = h->tensor_read_f32(env, tg, tv, (size_t)n_tg);
    int64_t S = padded ? dt->shape[1] : 0, sum = 0;
    for (int64_t b = 0; st == NNM_OK && b < k->N; b++) {
        if (!(k->il[b] >= 0 && k->il[b] <= (float)k->T))
            st = h->set_error(env, NNM_E_INVALID,
                              "ctc_loss: input_lengths[%lld] = %g is not in [0, %lld] (T)",
                              (long long)b, (double)k->il[b], (long long)k->T);
        else if (!(k->tl[b] >= 0 && (!padded || k->tl[b] <= (float)S)))
            st = h->set_error(env, NNM_E_INVALID, "ctc_loss: target_lengths[%lld] = %g is not in "
                              "[0, %lld] (the targets' width)", (long long)b, (double)k->tl[b],
                              (long long)S);
        if (st == NNM_OK) {
            if (!padded && k->tl[b] > S)
                S = (int64_t)k->tl[b];
            if (k->il[b] > k->max_len)
                k->max_len = (int64_t)k->il[b];
            sum += (int64_t)k->tl[b];
        }
    }
    if (st == NNM_OK && !padded && sum != n_tg)
        st = h->set_error(env, NNM_E_SHAPE, "ctc_loss: concatenated targets of %lld entries must "
                          "hold the sum of target_lengths, %lld", (long long)n_tg, (long long)sum);
    k->S = S;
    k->W = 2 * S + 1;
    if (st == NNM_OK && (k->lab = malloc((size_t)(k->N * k->W + 1) * sizeof *k->lab)) == NULL)
        st = h->set_error(env, NNM_E_NOMEM, "ctc_loss: out of memory");
    for (int64_t b = 0, at = 0; st == NNM_OK && b < k->N; b++) {
        const int64_t n = (int64_t)k->tl[b];
        for (int64_t j = 0; j < k->W; j++)
            k->lab[b * k->W + j] = s->blank;
        for (int64_t j = 0; j < n && st == NNM_OK; j++) {
            const float v = padded ? tv[b * S + j] : tv[at + j];
            if (!(v >= 0 && v < (float)k->C))
                st = h->set_error(env, NNM_E_INVALID,
                                  "ctc_loss: target %lld of sample %lld is %g, not in [0, %lld)",
                                  (long long)j, (long long)b, (double)v, (long long)k->C);
            else
                k->lab[b * k->W + 2 * j + 1] = (int64_t)v;
        }
        at += n;
    }
    free(tv);
    if (st != NNM_OK)
        ctc_host_free(k);
    return st;
}

/* A large negative number standing for log(0): exp(NEG - m) is 0 without an
 * infinity anywhere, so no gradient is ever 0 * inf. */
#define CTC_NEG (-1e30)

/* One step of the composed recursion (its own arena): *fresh = alpha_t. */
static nnm_status ctc_step(nnm_env *env, nnm_tensor *alpha, nnm_tensor *K, nnm_tensor *V,
                           nnm_tensor *lpe, nnm_tensor *M, int64_t t, int64_t N, int64_t W,
                           nnm_tensor **fresh) {
    lc cc, *c = &cc;
    lc_init(c, env);
    const int64_t s2[2] = {N, W}, col[2] = {N, 1};
    nnm_tensor *negs = scalar(c, CTC_NEG);
    nnm_tensor *a1 = negs, *a2 = negs;
    if (W > 1) /* alpha shifted right by one state, log(0) coming in */
        a1 = concat2(c, ADDS(SCALE(slice(c, alpha, 1, 0, 1), 0.0), CTC_NEG),
                     slice(c, alpha, 1, 0, W - 1), 1);
    if (W > 2) /* by two, where l' allows skipping a blank */
        a2 = where(c, K, concat2(c, ADDS(SCALE(slice(c, alpha, 1, 0, 2), 0.0), CTC_NEG),
                                 slice(c, alpha, 1, 0, W - 2), 1),
                   negs);
    nnm_tensor *m = detach(c, bin(c, NNM_BINARY_MAX, bin(c, NNM_BINARY_MAX, alpha, a1), a2));
    nnm_tensor *sum = ADD(ADD(un(c, NNM_UNARY_EXP, SUB(alpha, m), 0.0),
                              un(c, NNM_UNARY_EXP, SUB(a1, m), 0.0)),
                          un(c, NNM_UNARY_EXP, SUB(a2, m), 0.0));
    nnm_tensor *lse = ADD(LOG(sum), m);
    nnm_tensor *nxt = CMIN(where(c, V, ADD(lse, reshape(c, slice(c, lpe, 0, t, 1), 2, s2)), negs),
                           CTC_NEG);
    nnm_tensor *mt = reshape(c, slice(c, M, 0, t, 1), 2, col);
    return lc_finish(c, where(c, mt, nxt, alpha), fresh);
}

/* The recursion composed of host ops (a backend without the ctc_loss slots):
 * lpe [T, N, W] = log_probs at each state's label (one op_index_select),
 * then per step t < max(input_lengths): alpha_t = logsumexp(alpha, alpha
 * shifted by 1, alpha shifted by 2 where l' allows the skip) + lpe_t,
 * frozen past each sample's input length. ~25 ops per step, each recorded:
 * a fallback, not the fast path. *out: [N] negative log likelihoods. */
static nnm_status ctc_composed(nnm_env *env, const loss_state *s, nnm_tensor *lp, nnm_tensor *tg,
                               nnm_tensor *il, nnm_tensor *tl, nnm_tensor **out) {
    const nnm_host *h = env->host;
    ctc_host k;
    nnm_status st = ctc_host_read(env, s, lp, tg, il, tl, &k);
    if (st != NNM_OK)
        return st;
    const int64_t T = k.T, N = k.N, C = k.C, W = k.W;
    const size_t nw = (size_t)(N * W);
    int64_t *idx = malloc((nw + 1) * sizeof *idx);
    float *skip = malloc((nw + 1) * sizeof *skip), *valid = malloc((nw + 1) * sizeof *valid);
    float *init = malloc((nw + 1) * sizeof *init), *end = malloc((nw + 1) * sizeof *end);
    float *steps = malloc((size_t)(T * N + 1) * sizeof *steps);
    float *nil = malloc((size_t)(2 * N + 1) * sizeof *nil), *nilv = nil + N;
    lc cc, *c = &cc;
    lc_init(c, env);
    nnm_tensor *alpha = NULL, *res = NULL;
    if (!idx || !skip || !valid || !init || !end || !steps || !nil) {
        c->st = h->set_error(env, NNM_E_NOMEM, "ctc_loss: out of memory");
        goto done;
    }
    for (int64_t b = 0; b < N; b++) {
        const int64_t L = 2 * (int64_t)k.tl[b] + 1;
        const int64_t *lab = k.lab + b * W;
        for (int64_t j = 0; j < W; j++) {
            const size_t at = (size_t)(b * W + j);
            idx[at] = b * C + lab[j];
            valid[at] = j < L;
            init[at] = j < L && j < 2;
            skip[at] = j < L && j >= 2 && lab[j] != s->blank && lab[j] != lab[j - 2];
            end[at] = j == L - 1 || (L > 1 && j == L - 2);
        }
        for (int64_t t = 0; t < T; t++)
            steps[t * N + b] = (float)t < k.il[b];
        /* an input length of 0: no step; 0 for an empty target, else no alignment */
        nil[b] = k.il[b] == 0;
        nilv[b] = k.tl[b] == 0 || s->zero_infinity ? 0.0f : INFINITY;
    }
    const nnm_dtype I64 = {NNM_DTYPE_INT, 64, 1};
    const int64_t nwv[1] = {(int64_t)nw}, s2[2] = {N, W}, s3[3] = {T, N, 1}, s1[1] = {N};
    const int64_t lp2s[2] = {T, N * C}, lpe3[3] = {T, N, W}, col[2] = {N, 1};
    nnm_tensor *K = from_host(c, 2, s2, NNM_F32, skip), *V = from_host(c, 2, s2, NNM_F32, valid);
    nnm_tensor *I = from_host(c, 2, s2, NNM_F32, init), *E = from_host(c, 2, s2, NNM_F32, end);
    nnm_tensor *M = from_host(c, 3, s3, NNM_F32, steps), *ix = from_host(c, 1, nwv, I64, idx);
    nnm_tensor *neg = scalar(c, CTC_NEG);
    nnm_tensor *lpe = NULL;
    if (c->st == NNM_OK) {
        nnm_tensor *lp2 = reshape(c, CMIN(lp, CTC_NEG), 2, lp2s);
        nnm_tensor *o = NULL;
        if (lp2 != NULL) {
            st = h->op_index_select(env, lp2, 1, ix, &o);
            lpe = reshape(c, lc_keep(c, st, o), 3, lpe3);
        }
    }
    if (k.max_len == 0) { /* every input length is 0 */
        res = from_host(c, 1, s1, NNM_F32, nilv);
        goto done;
    }
    nnm_tensor *a0 = where(c, I, reshape(c, slice(c, lpe, 0, 0, 1), 2, s2), neg);
    if (a0 != NULL) {
        h->tensor_retain(a0);
        alpha = a0;
    }
    for (int64_t t = 1; t < k.max_len && c->st == NNM_OK; t++) {
        nnm_tensor *fresh = NULL;
        c->st = ctc_step(env, alpha, K, V, lpe, M, t, N, W, &fresh);
        if (c->st == NNM_OK) {
            h->tensor_release(alpha);
            alpha = fresh;
        }
    }
    if (c->st == NNM_OK && alpha != NULL) {
        /* ll = log(sum over the last two states) */
        nnm_tensor *fin = where(c, E, alpha, neg); /* the other states out of the sum */
        nnm_tensor *mf = detach(c, reshape(c, red(c, NNM_REDUCE_MAX, fin, 0, -1), 2, col));
        nnm_tensor *ll = ADD(LOG(red(c, NNM_REDUCE_SUM, MUL(un(c, NNM_UNARY_EXP, SUB(fin, mf), 0.0),
                                                            E), 0, -1)),
                             reshape(c, mf, 1, s1));
        nnm_tensor *nll = NEG(ll);
        /* no alignment (nll of ~1e30): inf, or 0 with zero_infinity */
        nnm_tensor *none = GE(nll, 1e29);
        nll = where(c, none, scalar(c, s->zero_infinity ? 0.0 : INFINITY), nll);
        nnm_tensor *z = from_host(c, 1, s1, NNM_F32, nil), *zv = from_host(c, 1, s1, NNM_F32, nilv);
        res = where(c, z, zv, nll);
    }
done:
    st = lc_finish(c, res, out);
    h->tensor_release(alpha);
    free(idx), free(skip), free(valid), free(init), free(end), free(steps), free(nil);
    ctc_host_free(&k);
    return st;
}

/* log_probs [T, N, C] (or [T, C]), targets [N, S] padded or 1-d concatenated
 * (or [S]), input_lengths and target_lengths [N] (or []), all but
 * log_probs i64. "mean" averages nll / max(target_length, 1) over the batch,
 * as PyTorch. */
static nnm_status ctc_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in,
                              nnm_tensor **out, uint32_t n_out) {
    const nnm_host *h = env->host;
    const loss_state *s = self;
    const char *name = loss_names[s->kind];
    nnm_status st = check_arity(env, name, in, n_in, out, n_out, 4,
                                "log_probs, targets, input_lengths, target_lengths");
    if (st != NNM_OK)
        return st;
    const nnm_tensor_desc *dl = h->tensor_desc(in[0]), *dt = h->tensor_desc(in[1]);
    const nnm_tensor_desc *di = h->tensor_desc(in[2]), *dn = h->tensor_desc(in[3]);
    char a[96], b[96], b2[96];
    if (!is_f32(dl))
        return h->set_error(env, NNM_E_DTYPE, "%s: log_probs must be f32", name);
    if (!is_i64(dt) || !is_i64(di) || !is_i64(dn))
        return h->set_error(env, NNM_E_DTYPE,
                            "%s: targets, input_lengths and target_lengths must be i64", name);
    if (dl->ndim != 3 && dl->ndim != 2)
        return h->set_error(env, NNM_E_SHAPE, "%s: log_probs must be [T, N, C] or [T, C], got %s",
                            name, nnm_lu_shape_str(dl, a, sizeof a));
    const int batched = dl->ndim == 3;
    const int64_t N = batched ? dl->shape[1] : 1, C = dl->shape[dl->ndim - 1];
    if (s->blank >= C)
        return h->set_error(env, NNM_E_INVALID, "%s: blank %lld is not a class of log_probs %s", name,
                            (long long)s->blank, nnm_lu_shape_str(dl, a, sizeof a));
    if (di->ndim != (batched ? 1 : 0) || dn->ndim != di->ndim ||
        (batched && (di->shape[0] != N || dn->shape[0] != N)))
        return h->set_error(env, NNM_E_SHAPE,
                            "%s: input_lengths and target_lengths must be %s for log_probs %s, got "
                            "%s and %s",
                            name, batched ? "[N]" : "0-d", nnm_lu_shape_str(dl, a, sizeof a),
                            nnm_lu_shape_str(di, b, sizeof b), nnm_lu_shape_str(dn, b2, sizeof b2));
    if (batched ? !((dt->ndim == 2 && dt->shape[0] == N) || dt->ndim == 1) : dt->ndim != 1)
        return h->set_error(env, NNM_E_SHAPE,
                            "%s: targets must be %s, got %s", name,
                            batched ? "[N, S] (padded) or 1-d (concatenated)" : "[S]",
                            nnm_lu_shape_str(dt, a, sizeof a));
    lc cc, *c = &cc;
    lc_init(c, env);
    nnm_tensor *lp = in[0], *tg = in[1], *il = in[2], *tl = in[3];
    if (!batched) { /* [T, C] -> [T, 1, C], [S] -> [1, S], [] -> [1] */
        const int64_t l3[3] = {dl->shape[0], 1, C}, t2[2] = {1, dt->shape[0]}, one[1] = {1};
        lp = reshape(c, lp, 3, l3);
        tg = reshape(c, tg, 2, t2);
        il = reshape(c, il, 1, one);
        tl = reshape(c, tl, 1, one);
    }
    nnm_tensor *nll = NULL;
    if (c->st == NNM_OK) {
        const nnm_ctc_params p = {sizeof p, s->zero_infinity, s->blank};
        st = NNM_HOST_HAS(h, op_ctc_loss) ? h->op_ctc_loss(env, lp, tg, il, tl, &p, &nll)
                                          : NNM_E_UNSUPPORTED;
        if (st == NNM_E_UNSUPPORTED) /* no backend slot: the composed recursion */
            st = ctc_composed(env, s, lp, tg, il, tl, &nll);
        nll = lc_keep(c, st, nll);
    }
    nnm_tensor *r = nll;
    if (s->reduction == NNM_REDUCTION_MEAN && c->st == NNM_OK) {
        /* mean(nll / max(target_length, 1)); the lengths as a constant, so
         * no cast slot is needed */
        float *d = malloc((size_t)(N + 1) * sizeof *d);
        if (d == NULL)
            c->st = h->set_error(env, NNM_E_NOMEM, "%s: out of memory", name);
        else if (N > 0)
            c->st = h->tensor_read_f32(env, tl, d, (size_t)N);
        for (int64_t i = 0; c->st == NNM_OK && i < N; i++)
            d[i] = d[i] < 1.0f ? 1.0f : d[i];
        const int64_t ns[1] = {N};
        nnm_tensor *div = from_host(c, 1, ns, NNM_F32, d);
        free(d);
        r = red(c, NNM_REDUCE_MEAN, DIV(nll, div), 1, 0);
    } else if (s->reduction == NNM_REDUCTION_SUM)
        r = red(c, NNM_REDUCE_SUM, nll, 1, 0);
    else if (!batched)
        r = reshape(c, nll, 0, NULL);
    return lc_finish(c, r, &out[0]);
}

/* ------------------------------------------------------------------------ */
/* Descriptor                                                                */
/* ------------------------------------------------------------------------ */

/* Config schemas: the runtime checks keys and types before create. */
#define LOSS_REDUCTION_FIELD                                                             \
    {"reduction", NNM_CONFIG_STR, 0, "\"mean\" (default), \"sum\" or \"none\""}
#define LOSS_IGNORE_INDEX_FIELD                                                          \
    {"ignore_index", NNM_CONFIG_INT, 0, "target value that counts nothing (default -100)"}
#define LOSS_WEIGHT_FIELD(what)                                                          \
    {"weight", NNM_CONFIG_FLOATS, 0, what " (default None); the buffer \"weight\""}
static const nnm_config_field mse_config[] = {LOSS_REDUCTION_FIELD};
static const nnm_config_field l1_config[] = {LOSS_REDUCTION_FIELD};
static const nnm_config_field bce_with_logits_config[] = {
    LOSS_REDUCTION_FIELD,
    LOSS_WEIGHT_FIELD("per-element rescaling, broadcast against the last dim"),
    {"pos_weight", NNM_CONFIG_FLOATS, 0,
     "weight of positive examples per class (default None); the buffer \"pos_weight\""},
};
static const nnm_config_field bce_config[] = {
    LOSS_REDUCTION_FIELD, LOSS_WEIGHT_FIELD("per-element rescaling, broadcast against the last dim")};
static const nnm_config_field nll_config[] = {LOSS_REDUCTION_FIELD, LOSS_IGNORE_INDEX_FIELD,
                                              LOSS_WEIGHT_FIELD("one per class")};
static const nnm_config_field cross_entropy_config[] = {
    LOSS_REDUCTION_FIELD,
    LOSS_IGNORE_INDEX_FIELD,
    {"label_smoothing", NNM_CONFIG_FLOAT, 0, "in [0, 1] (default 0)"},
    LOSS_WEIGHT_FIELD("one per class"),
};
static const nnm_config_field smooth_l1_config[] = {
    LOSS_REDUCTION_FIELD, {"beta", NNM_CONFIG_FLOAT, 0, ">= 0 (default 1.0)"}};
static const nnm_config_field huber_config[] = {
    LOSS_REDUCTION_FIELD, {"delta", NNM_CONFIG_FLOAT, 0, "> 0 (default 1.0)"}};
static const nnm_config_field kl_div_config[] = {
    {"reduction", NNM_CONFIG_STR, 0, "\"mean\" (default), \"batchmean\", \"sum\" or \"none\""},
    {"log_target", NNM_CONFIG_BOOL, 0, "target holds log-probabilities (default false)"}};
static const nnm_config_field margin0_config[] = {
    LOSS_REDUCTION_FIELD, {"margin", NNM_CONFIG_FLOAT, 0, "default 0.0"}};
static const nnm_config_field multi_margin_config[] = {
    LOSS_REDUCTION_FIELD,
    {"p", NNM_CONFIG_INT, 0, "1 (default) or 2"},
    {"margin", NNM_CONFIG_FLOAT, 0, "default 1.0"},
    LOSS_WEIGHT_FIELD("one per class"),
};

static const nnm_config_field ctc_config[] = {
    {"blank", NNM_CONFIG_INT, 0, "the blank class (default 0)"},
    LOSS_REDUCTION_FIELD,
    {"zero_infinity", NNM_CONFIG_BOOL, 0, "an impossible alignment counts 0 (default false)"},
};

#define LOSS_LAYER(var, lname, display, minor, n_in, create_fn, forward_fn, fields)      \
    static const nnm_layer_vtable var = {                                                \
        .struct_size = sizeof(nnm_layer_vtable),                                         \
        .flags = 0,                                                                      \
        .name = lname,                                                                   \
        .version_major = 1,                                                              \
        .version_minor = minor,                                                          \
        .version_patch = 0,                                                              \
        .n_inputs = n_in,                                                                \
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

/* 1.1 of mse_loss, nll_loss, cross_entropy, bce_with_logits: the new keys
 * (weight, pos_weight), class-probability and K-dimensional inputs, and
 * PyTorch's repr ("CrossEntropyLoss()"). */
LOSS_LAYER(mse_layer, "mse_loss", "MSELoss", 1, 2, mse_create, pointwise_forward, mse_config);
LOSS_LAYER(cross_entropy_layer, "cross_entropy", "CrossEntropyLoss", 1, 2, cross_entropy_create,
           class_forward, cross_entropy_config);
LOSS_LAYER(nll_layer, "nll_loss", "NLLLoss", 1, 2, nll_create, class_forward, nll_config);
LOSS_LAYER(bce_with_logits_layer, "bce_with_logits", "BCEWithLogitsLoss", 1, 2,
           bce_with_logits_create, bce_with_logits_forward, bce_with_logits_config);
LOSS_LAYER(l1_layer, "l1_loss", "L1Loss", 0, 2, l1_create, pointwise_forward, l1_config);
LOSS_LAYER(smooth_l1_layer, "smooth_l1_loss", "SmoothL1Loss", 0, 2, smooth_l1_create,
           pointwise_forward, smooth_l1_config);
LOSS_LAYER(huber_layer, "huber_loss", "HuberLoss", 0, 2, huber_create, pointwise_forward,
           huber_config);
LOSS_LAYER(bce_layer, "bce_loss", "BCELoss", 0, 2, bce_create, bce_forward, bce_config);
LOSS_LAYER(kl_div_layer, "kl_div", "KLDivLoss", 0, 2, kl_div_create, kl_div_forward,
           kl_div_config);
LOSS_LAYER(cosine_embedding_layer, "cosine_embedding_loss", "CosineEmbeddingLoss", 0, 3,
           cosine_embedding_create, cosine_embedding_forward, margin0_config);
LOSS_LAYER(margin_ranking_layer, "margin_ranking_loss", "MarginRankingLoss", 0, 3,
           margin_ranking_create, margin_ranking_forward, margin0_config);
LOSS_LAYER(multi_margin_layer, "multi_margin_loss", "MultiMarginLoss", 0, 2, multi_margin_create,
           multi_margin_forward, multi_margin_config);
LOSS_LAYER(ctc_layer, "ctc_loss", "CTCLoss", 0, 4, ctc_create, ctc_forward, ctc_config);

static const nnm_layer_vtable *const loss_layers[] = {
    &mse_layer,         &cross_entropy_layer,    &nll_layer,
    &bce_with_logits_layer, &l1_layer,           &smooth_l1_layer,
    &huber_layer,       &bce_layer,              &kl_div_layer,
    &cosine_embedding_layer, &margin_ranking_layer, &multi_margin_layer,
    &ctc_layer};

static const nnm_plugin_desc losses_plugin = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
    .name = "losses",
    .description = "Loss layers: mse_loss, cross_entropy, nll_loss, bce_with_logits, l1_loss, "
                   "smooth_l1_loss, huber_loss, bce_loss, kl_div, cosine_embedding_loss, "
                   "margin_ranking_loss, multi_margin_loss, ctc_loss",
    .n_layers = sizeof loss_layers / sizeof loss_layers[0],
    .n_backends = 0,
    .layers = loss_layers,
    .backends = NULL,
    .domain = NNM_DOMAIN_NNMOD, /* nnmod's own library: the plain names */
};

NNM_PLUGIN_DEFINE(losses_plugin)
