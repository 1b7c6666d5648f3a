/* plugins/cuda/cuda_dnn_plan.c - nnm args -> cuDNN descriptor numbers, the
 * conv algorithm cache, pooling geometry (see cuda_dnn_plan.h). Pure C: no
 * CUDA, no cuDNN, no device memory.
 */
#include "cuda_dnn_plan.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static nnm_status plan_msg(char *msg, size_t cap, nnm_status st, const char *fmt, ...) {
    if (msg != NULL && cap > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, cap, fmt, ap);
        va_end(ap);
    }
    return st;
}

/* Packed strides for dims[0..nb). 0 if some stride would exceed INT_MAX. */
static int packed(cuda_dnn_tensor *t) {
    int64_t st = 1;
    for (int i = t->nbdims - 1; i >= 0; i--) {
        if (st > INT_MAX)
            return 0;
        t->strides[i] = (int)st;
        st *= t->dims[i];
    }
    return st <= INT_MAX; /* the element count too */
}

static int fits_int(int64_t v) {
    return v >= 0 && v <= INT_MAX;
}

/* "[a, b, c]" of a descriptor's shape (or "NULL"), for messages. */
static const char *shape_str(const nnm_tensor_desc *d, char *buf, size_t cap) {
    if (d == NULL || (d->ndim > 0 && d->shape == NULL)) {
        snprintf(buf, cap, "NULL");
        return buf;
    }
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int32_t i = 0; i < d->ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", i ? ", " : "", (long long)d->shape[i]);
    if (n < cap)
        snprintf(buf + n, cap - n, "]");
    return buf;
}

/* Whether d has exactly `ndim` dims equal to shape[]. */
static int same_shape(const nnm_tensor_desc *d, int32_t ndim, const int64_t *shape) {
    if (d == NULL || d->ndim != ndim || (ndim > 0 && d->shape == NULL))
        return 0;
    for (int32_t i = 0; i < ndim; i++)
        if (d->shape[i] != shape[i])
            return 0;
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Convolution                                                               */
/* ------------------------------------------------------------------------ */

nnm_status cuda_dnn_conv_plan_make(const nnm_conv_args *a, int backward, cuda_dnn_conv_plan *p,
                                   char *msg, size_t cap) {
    char s1[96], s2[96], s3[96];
    memset(p, 0, sizeof *p);
    if (msg != NULL && cap > 0)
        msg[0] = '\0';
    if (a == NULL)
        return plan_msg(msg, cap, NNM_E_INVALID, "args is NULL");
    if (a->struct_size < sizeof(nnm_conv_args))
        return plan_msg(msg, cap, NNM_E_INVALID, "args struct_size %u < %zu",
                        (unsigned)a->struct_size, sizeof(nnm_conv_args));
    const nnm_conv_params *cp = a->params;
    if (cp == NULL || cp->struct_size < sizeof(nnm_conv_params))
        return plan_msg(msg, cap, NNM_E_INVALID, "params are NULL or too small");
    const int32_t ns = cp->n_spatial;
    if (ns < 1 || ns > NNM_MAX_SPATIAL)
        return plan_msg(msg, cap, NNM_E_INVALID, "n_spatial %d (1..%d)", (int)ns, NNM_MAX_SPATIAL);
    if (cp->transposed)
        return plan_msg(msg, cap, NNM_E_UNSUPPORTED, "transposed convolutions are not offered");
    if (cp->groups < 1)
        return plan_msg(msg, cap, NNM_E_INVALID, "groups %d < 1", (int)cp->groups);
    for (int32_t i = 0; i < ns; i++) {
        if (cp->stride[i] < 1 || cp->dilation[i] < 1 || cp->padding[i] < 0 || cp->padding_end[i] < 0)
            return plan_msg(msg, cap, NNM_E_INVALID,
                            "spatial dim %d: stride %lld, dilation %lld, padding %lld/%lld", (int)i,
                            (long long)cp->stride[i], (long long)cp->dilation[i],
                            (long long)cp->padding[i], (long long)cp->padding_end[i]);
    }
    const nnm_tensor_desc *x = a->x, *w = a->w, *y = backward ? a->grad_out : a->y;
    const char *yname = backward ? "grad_out" : "y";
    if (x == NULL || w == NULL || y == NULL)
        return plan_msg(msg, cap, NNM_E_INVALID, "%s tensor is NULL",
                        x == NULL ? "x" : w == NULL ? "w" : yname);
    if (backward && a->grad_x == NULL && a->grad_w == NULL)
        return plan_msg(msg, cap, NNM_E_INVALID, "neither grad_x nor grad_w asked for");
    const int32_t nd = ns + 2;
    if (x->ndim != nd || w->ndim != nd || y->ndim != nd || x->shape == NULL || w->shape == NULL ||
        y->shape == NULL)
        return plan_msg(msg, cap, NNM_E_SHAPE, "x %s, w %s and %s %s must have %d dims",
                        shape_str(x, s1, sizeof s1), shape_str(w, s2, sizeof s2), yname,
                        shape_str(y, s3, sizeof s3), (int)nd);
    /* sizes cuDNN's int descriptors cannot hold: declined before any arithmetic */
    int big = 0;
    for (int32_t i = 0; i < nd; i++)
        big |= !fits_int(x->shape[i]) || !fits_int(y->shape[i]) || !fits_int(w->shape[i]);
    for (int32_t i = 0; i < ns; i++)
        big |= !fits_int(cp->padding[i]) || !fits_int(cp->padding_end[i]) ||
               !fits_int(cp->stride[i]) || !fits_int(cp->dilation[i]);
    if (big)
        return plan_msg(msg, cap, NNM_E_UNSUPPORTED, "a size above INT_MAX");
    const int64_t n = x->shape[0], cin = x->shape[1], cout = w->shape[0], g = cp->groups;
    int64_t want_y[CUDA_DNN_MAX_DIMS] = {n, cout};
    int ok = cin % g == 0 && cout % g == 0 && w->shape[1] * g == cin;
    for (int32_t i = 0; ok && i < ns; i++) {
        const int64_t k = w->shape[2 + i], in = x->shape[2 + i];
        if (k < 1 || in < 0) {
            ok = 0;
            break;
        }
        const int64_t span = cp->dilation[i] * (k - 1) + 1;
        const int64_t padded = in + cp->padding[i] + cp->padding_end[i];
        want_y[2 + i] = padded >= span ? (padded - span) / cp->stride[i] + 1 : -1;
        ok = want_y[2 + i] >= 0;
    }
    if (!ok || !same_shape(y, nd, want_y))
        return plan_msg(msg, cap, NNM_E_SHAPE,
                        "x %s, w %s (groups %d) and %s %s do not make one convolution",
                        shape_str(x, s1, sizeof s1), shape_str(w, s2, sizeof s2), (int)g, yname,
                        shape_str(y, s3, sizeof s3));
    if (!backward && a->b != NULL && !same_shape(a->b, 1, &cout))
        return plan_msg(msg, cap, NNM_E_SHAPE, "b %s must be [%lld]",
                        shape_str(a->b, s1, sizeof s1), (long long)cout);
    if (backward && a->grad_x != NULL && !same_shape(a->grad_x, nd, x->shape))
        return plan_msg(msg, cap, NNM_E_SHAPE, "grad_x %s must have x's shape %s",
                        shape_str(a->grad_x, s1, sizeof s1), shape_str(x, s2, sizeof s2));
    if (backward && a->grad_w != NULL && !same_shape(a->grad_w, nd, w->shape))
        return plan_msg(msg, cap, NNM_E_SHAPE, "grad_w %s must have w's shape %s",
                        shape_str(a->grad_w, s1, sizeof s1), shape_str(w, s2, sizeof s2));

    /* declines: what cuDNN's NCHW descriptors cannot say */
    for (int32_t i = 0; i < ns; i++)
        if (cp->padding[i] != cp->padding_end[i])
            return plan_msg(msg, cap, NNM_E_UNSUPPORTED,
                            "uneven padding %lld/%lld in spatial dim %d (cuDNN pads symmetrically)",
                            (long long)cp->padding[i], (long long)cp->padding_end[i], (int)i);
    for (int32_t i = 0; i < nd; i++)
        if (x->shape[i] == 0 || y->shape[i] == 0 || w->shape[i] == 0)
            return plan_msg(msg, cap, NNM_E_UNSUPPORTED, "empty tensor");

    /* 1-d: a 2-d convolution of height 1 (the inserted dim comes first) */
    const int lift = ns == 1;
    p->nbdims = lift ? 4 : nd;
    p->n_spatial = p->nbdims - 2;
    p->groups = (int)g;
    p->x.nbdims = p->y.nbdims = p->bias.nbdims = p->nbdims;
    p->x.dims[0] = (int)n;
    p->x.dims[1] = (int)cin;
    p->y.dims[0] = (int)n;
    p->y.dims[1] = (int)cout;
    p->w[0] = (int)cout;
    p->w[1] = (int)w->shape[1];
    p->bias.dims[0] = 1;
    p->bias.dims[1] = (int)cout;
    for (int i = 0; i < p->n_spatial; i++) {
        const int j = lift ? i - 1 : i; /* the nnm spatial dim, -1 for the inserted one */
        p->x.dims[2 + i] = j < 0 ? 1 : (int)x->shape[2 + j];
        p->y.dims[2 + i] = j < 0 ? 1 : (int)y->shape[2 + j];
        p->w[2 + i] = j < 0 ? 1 : (int)w->shape[2 + j];
        p->bias.dims[2 + i] = 1;
        p->pad[i] = j < 0 ? 0 : (int)cp->padding[j];
        p->stride[i] = j < 0 ? 1 : (int)cp->stride[j];
        p->dilation[i] = j < 0 ? 1 : (int)cp->dilation[j];
    }
    cuda_dnn_tensor wt = {p->nbdims, {0}, {0}};
    memcpy(wt.dims, p->w, sizeof p->w);
    if (!packed(&p->x) || !packed(&p->y) || !packed(&wt) || !packed(&p->bias))
        return plan_msg(msg, cap, NNM_E_UNSUPPORTED, "more than INT_MAX elements");
    return NNM_OK;
}

void cuda_dnn_conv_key_make(cuda_dnn_conv_key *k, const cuda_dnn_conv_plan *p, int kind,
                            int math) {
    memset(k, 0, sizeof *k); /* padding and unused dims: compared with memcmp */
    k->kind = kind;
    k->math = math;
    k->nbdims = p->nbdims;
    k->groups = p->groups;
    for (int i = 0; i < p->nbdims; i++) {
        k->x[i] = p->x.dims[i];
        k->w[i] = p->w[i];
    }
    for (int i = 0; i < p->n_spatial; i++) {
        k->pad[i] = p->pad[i];
        k->stride[i] = p->stride[i];
        k->dilation[i] = p->dilation[i];
    }
}

/* ------------------------------------------------------------------------ */
/* The algorithm cache                                                       */
/* ------------------------------------------------------------------------ */

static uint64_t key_hash(const cuda_dnn_conv_key *k) {
    const unsigned char *b = (const unsigned char *)k;
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < sizeof *k; i++) {
        h ^= b[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

/* The slot holding k, or the empty slot where it would go. cap > 0. */
static cuda_dnn_cache_entry *probe(cuda_dnn_cache_entry *slots, size_t cap,
                                   const cuda_dnn_conv_key *k) {
    size_t i = (size_t)key_hash(k) & (cap - 1);
    while (slots[i].used && memcmp(&slots[i].key, k, sizeof *k) != 0)
        i = (i + 1) & (cap - 1);
    return &slots[i];
}

const cuda_dnn_algo *cuda_dnn_cache_find(cuda_dnn_cache *c, const cuda_dnn_conv_key *k) {
    if (c->cap == 0) {
        c->misses++;
        return NULL;
    }
    const cuda_dnn_cache_entry *e = probe(c->slots, c->cap, k);
    if (!e->used) {
        c->misses++;
        return NULL;
    }
    c->hits++;
    return &e->val;
}

nnm_status cuda_dnn_cache_put(cuda_dnn_cache *c, const cuda_dnn_conv_key *k,
                              const cuda_dnn_algo *v) {
    if (c->cap > 0) {
        cuda_dnn_cache_entry *e = probe(c->slots, c->cap, k);
        if (e->used) {
            e->val = *v;
            return NNM_OK;
        }
    }
    if (c->count >= CUDA_DNN_CACHE_MAX) {
        /* full: start over (the geometries in use come back on their next call) */
        memset(c->slots, 0, c->cap * sizeof c->slots[0]);
        c->count = 0;
        c->resets++;
    }
    if (2 * (c->count + 1) > c->cap) {
        const size_t ncap = c->cap ? 2 * c->cap : 16;
        cuda_dnn_cache_entry *ns = calloc(ncap, sizeof *ns);
        if (ns == NULL)
            return NNM_E_NOMEM;
        for (size_t i = 0; i < c->cap; i++)
            if (c->slots[i].used)
                *probe(ns, ncap, &c->slots[i].key) = c->slots[i];
        free(c->slots);
        c->slots = ns;
        c->cap = ncap;
    }
    cuda_dnn_cache_entry *e = probe(c->slots, c->cap, k);
    e->key = *k;
    e->val = *v;
    e->used = 1;
    c->count++;
    return NNM_OK;
}

void cuda_dnn_cache_clear(cuda_dnn_cache *c) {
    free(c->slots);
    c->slots = NULL;
    c->cap = 0;
    c->count = 0;
}

/* ------------------------------------------------------------------------ */
/* Batch norm                                                                */
/* ------------------------------------------------------------------------ */

/* PyTorch's bounds for handing a batch norm to cuDNN (Normalization.cpp):
 * some cuDNN kernels index with 32 bits and grid N. */
#define CUDA_DNN_BN_MAX_N_TRAIN 880801
#define CUDA_DNN_BN_MAX_N_EVAL 65535

nnm_status cuda_dnn_bn_plan_make(int64_t n, int64_t c, int64_t l, int training,
                                 cuda_dnn_bn_plan *p, char *msg, size_t cap) {
    memset(p, 0, sizeof *p);
    if (msg != NULL && cap > 0)
        msg[0] = '\0';
    if (n < 0 || c < 0 || l < 0 || (c && n > INT64_MAX / c) || (n * c != 0 && l > INT64_MAX / (n * c)))
        return plan_msg(msg, cap, NNM_E_SHAPE, "bad [n %lld, c %lld, l %lld]", (long long)n,
                        (long long)c, (long long)l);
    if (n == 0 || c == 0 || l == 0)
        return plan_msg(msg, cap, NNM_E_UNSUPPORTED, "empty tensor");
    if (n * c * l >= INT_MAX)
        return plan_msg(msg, cap, NNM_E_UNSUPPORTED, "%lld elements (cuDNN: fewer than INT_MAX)",
                        (long long)(n * c * l));
    if (n > (training ? CUDA_DNN_BN_MAX_N_TRAIN : CUDA_DNN_BN_MAX_N_EVAL))
        return plan_msg(msg, cap, NNM_E_UNSUPPORTED, "batch %lld above cuDNN's %d in %s mode",
                        (long long)n,
                        training ? CUDA_DNN_BN_MAX_N_TRAIN : CUDA_DNN_BN_MAX_N_EVAL,
                        training ? "training" : "eval");
    if (training && n * l < 2)
        return plan_msg(msg, cap, NNM_E_UNSUPPORTED, "one value per channel in training");
    p->x.nbdims = p->ch.nbdims = 4;
    p->x.dims[0] = (int)n;
    p->x.dims[1] = (int)c;
    p->x.dims[2] = (int)l;
    p->x.dims[3] = 1;
    p->ch.dims[0] = 1;
    p->ch.dims[1] = (int)c;
    p->ch.dims[2] = p->ch.dims[3] = 1;
    (void)packed(&p->x); /* fits: n * c * l < INT_MAX */
    (void)packed(&p->ch);
    p->count = n * l;
    return NNM_OK;
}

/* ------------------------------------------------------------------------ */
/* Pooling                                                                   */
/* ------------------------------------------------------------------------ */

nnm_status cuda_dnn_pool_plan(const nnm_pool_args *a, int backward, nnm__cuda_pool_geom *g,
                              char *msg, size_t cap) {
    char s1[96], s2[96];
    memset(g, 0, sizeof *g);
    if (msg != NULL && cap > 0)
        msg[0] = '\0';
    if (a == NULL)
        return plan_msg(msg, cap, NNM_E_INVALID, "args is NULL");
    if (a->struct_size < sizeof(nnm_pool_args))
        return plan_msg(msg, cap, NNM_E_INVALID, "args struct_size %u < %zu",
                        (unsigned)a->struct_size, sizeof(nnm_pool_args));
    if (a->op < NNM_POOL_MAX || a->op > NNM_POOL_ADAPTIVE_AVG)
        return plan_msg(msg, cap, NNM_E_UNSUPPORTED, "unknown pooling %d", (int)a->op);
    const nnm_tensor_desc *x = a->x, *o = backward ? a->grad_out : a->out;
    const char *oname = backward ? "grad_out" : "out";
    if (x == NULL || o == NULL || (backward && a->grad_x == NULL))
        return plan_msg(msg, cap, NNM_E_INVALID, "%s tensor is NULL",
                        x == NULL ? "x" : o == NULL ? oname : "grad_x");
    const int32_t ns = a->n_spatial;
    if (ns < 1 || ns > 3 || x->ndim < ns || o->ndim != x->ndim || x->ndim > NNM_MAX_DIMS ||
        (x->ndim > 0 && (x->shape == NULL || o->shape == NULL)))
        return plan_msg(msg, cap, NNM_E_SHAPE, "x %s and %s %s need the same ndim >= n_spatial %d",
                        shape_str(x, s1, sizeof s1), oname, shape_str(o, s2, sizeof s2), (int)ns);
    if (backward && !same_shape(a->grad_x, x->ndim, x->shape))
        return plan_msg(msg, cap, NNM_E_SHAPE, "grad_x %s must have x's shape %s",
                        shape_str(a->grad_x, s1, sizeof s1), shape_str(x, s2, sizeof s2));
    int64_t outer = 1;
    for (int32_t i = 0; i < x->ndim - ns; i++) {
        if (x->shape[i] != o->shape[i] || x->shape[i] < 0)
            return plan_msg(msg, cap, NNM_E_SHAPE, "x %s and %s %s differ in leading dim %d",
                            shape_str(x, s1, sizeof s1), oname, shape_str(o, s2, sizeof s2),
                            (int)i);
        outer *= x->shape[i];
    }
    g->op = a->op;
    g->count_include_pad = a->count_include_pad != 0;
    g->divisor_override = a->divisor_override;
    g->outer = outer;
    const int64_t *in = x->shape + x->ndim - ns, *out = o->shape + o->ndim - ns;
    for (int i = 0; i < 3; i++) {
        const int j = i - (3 - ns);
        g->in[i] = j >= 0 ? in[j] : 1;
        g->out[i] = j >= 0 ? out[j] : 1;
        g->k[i] = j >= 0 ? a->kernel[j] : 1;
        g->s[i] = j >= 0 ? a->stride[j] : 1;
        g->p[i] = j >= 0 ? a->padding[j] : 0;
        g->d[i] = j >= 0 ? a->dilation[j] : 1;
        if (g->in[i] < 0 || g->out[i] < 0 || g->k[i] < 1 || g->s[i] < 1 || g->p[i] < 0 ||
            g->d[i] < 1)
            return plan_msg(msg, cap, NNM_E_INVALID,
                            "spatial dim %d: size %lld -> %lld, kernel %lld, stride %lld, "
                            "padding %lld, dilation %lld",
                            j, (long long)g->in[i], (long long)g->out[i], (long long)g->k[i],
                            (long long)g->s[i], (long long)g->p[i], (long long)g->d[i]);
    }
    if (a->op == NNM_POOL_ADAPTIVE_AVG) {
        for (int i = 0; i < 3; i++)
            if (g->out[i] < 1 && g->in[i] > 0)
                return plan_msg(msg, cap, NNM_E_SHAPE, "adaptive output size 0");
    } else {
        /* every window must start inside the padded input, or reads would run off */
        for (int i = 0; i < 3; i++)
            if (g->out[i] > 0 && (g->out[i] - 1) * g->s[i] - g->p[i] >= g->in[i] + g->p[i])
                return plan_msg(msg, cap, NNM_E_SHAPE,
                                "output size %lld is too large for input size %lld",
                                (long long)g->out[i], (long long)g->in[i]);
    }
    return NNM_OK;
}
