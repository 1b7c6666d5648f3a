/* plugins/embedding/embedding.c - the lookup-table layers:
 *
 * "embedding" (torch.nn.Embedding): y[..., :] = weight[idx[...], :].
 *   Config (PyTorch's names and defaults):
 *     num_embeddings int, required, > 0
 *     embedding_dim  int, required, > 0
 *     padding_idx    int, default None; in [-num_embeddings, num_embeddings),
 *                    a negative one counts from the end (stored normalised, as
 *                    PyTorch does). Its row starts at zero and gets no gradient.
 *     max_norm       float, default None: at every forward, each row the input
 *                    looks up whose norm_type-norm exceeds max_norm is scaled
 *                    IN PLACE (never recorded) to max_norm / (norm + 1e-7), as
 *                    torch.embedding_renorm_ does under no_grad
 *     norm_type      float, default 2 (p of the p-norm; inf = max |w|)
 *     scale_grad_by_freq bool, default false: the weight's gradient of each
 *                    row divided by its index's count in the input, as PyTorch
 *   sparse is not supported (the schema refuses it).
 *   Host ops only, so it runs on every device (1.1.1; before, a CPU kernel):
 *   op_index_select gathers the rows (its gradient is the scatter-add into
 *   the weight's rows, the backend's index_add slot), padding_idx's gradient
 *   is masked with op_where, scale_grad_by_freq scales each position's
 *   gradient (the indices read on the host), and max_norm renormalises the
 *   weight in place with op_update on a detached alias. Indices get no
 *   gradient.
 *
 * "embedding_bag" (torch.nn.EmbeddingBag): sums, means or maxima of bags of
 *   rows. Config as embedding's plus mode ("mean" | "sum" | "max", default
 *   "mean") and include_last_offset (default false). Inputs, as
 *   EmbeddingBag.forward(input, offsets, per_sample_weights):
 *     input [B, N] i64 (B bags of N) [, per_sample_weights [B, N] f32], or
 *     input [n] i64, offsets [B] i64 (B + 1 with include_last_offset)
 *       [, per_sample_weights [n] f32];
 *   output [B, embedding_dim]. One host op, host->op_embedding_bag (ABI
 *   1.5: the backend's embedding_bag slots, a segment reduction that reads
 *   each row once and records one autograd node), where the host and the
 *   device's backend have it and scale_grad_by_freq is off. Otherwise
 *   composed of host ops (index_select, concat,
 *   reduce, binary, where), so it runs on every device and gets its
 *   gradients (weight and per_sample_weights) from the runtime: the rows are
 *   gathered once, then laid out as [B, L, embedding_dim] (L the longest
 *   bag; short bags and padding_idx entries point at a zero filler row,
 *   which max mode then masks to -inf with op_where) and reduced over L. The
 *   bag layout is computed
 *   on the host from offsets (and from the indices when padding_idx,
 *   max_norm or scale_grad_by_freq is set). With include_last_offset the
 *   last offset must be the input's length (PyTorch 1.13 mishandles indices
 *   past it; see the docs); scale_grad_by_freq is refused in max mode, as
 *   PyTorch, and composed as detached values plus a scaled zero difference
 *   (bag_scale_grad). max_norm: as embedding's, the weight written in place
 *   on the CPU (no host op writes a parameter).
 *
 * Parameter of both (PyTorch's state_dict name):
 *   weight [num_embeddings, embedding_dim]  N(0, 1), the padding row zeroed
 * An index outside [0, num_embeddings) fails with NNM_E_INVALID naming it.
 */
#include <nnmod/plugin.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layer_util.h"

enum { BAG_SUM = 0, BAG_MEAN = 1, BAG_MAX = 2 };
static const char *const bag_mode_name[] = {"sum", "mean", "max"};

typedef struct embedding_state {
    int64_t num_embeddings;
    int64_t embedding_dim;
    int has_padding;
    int64_t padding_idx; /* normalised to [0, num_embeddings) */
    int has_max_norm;
    double max_norm;
    double norm_type;
    int norm_type_is_int; /* the config gave an integer (prints "1", not "1.0") */
    int scale_grad_by_freq;
    int max_norm_is_int;
    int bag;                 /* embedding_bag */
    int mode;                /* BAG_* */
    int include_last_offset;
    nnm_tensor *weight;      /* borrowed: owned by the module */
} embedding_state;

#define EMBEDDING_MAX ((int64_t)1 << 31)

static nnm_status embedding_read_size(nnm_env *env, const char *key, int64_t *out) {
    const nnm_host *h = env->host;
    nnm_status st = h->config_int(env, key, NULL, out);
    if (st != NNM_OK)
        return st;
    if (*out <= 0)
        return h->set_error(env, NNM_E_INVALID, "%s must be > 0, got %lld", key, (long long)*out);
    if (*out > EMBEDDING_MAX)
        return h->set_error(env, NNM_E_LIMIT, "%s must be <= %lld, got %lld", key,
                            (long long)EMBEDDING_MAX, (long long)*out);
    return NNM_OK;
}

/* A float config value that may be absent (*present 0) or an integer
 * (*is_int 1, so extra_repr prints it as Python would print an int). */
static nnm_status embedding_read_float(nnm_env *env, const char *key, double *out, int *present,
                                       int *is_int) {
    const nnm_host *h = env->host;
    int32_t type = -1;
    *present = 0;
    *is_int = 0;
    nnm_status st = h->config_type(env, key, &type);
    if (st == NNM_E_NOT_FOUND)
        return NNM_OK;
    if (st != NNM_OK)
        return st;
    *present = 1;
    *is_int = type == NNM_CONFIG_INT;
    return h->config_float(env, key, NULL, out);
}

static nnm_status embedding_create_common(nnm_env *env, int bag, void **self) {
    const nnm_host *h = env->host;
    *self = NULL;
    embedding_state s = {0};
    s.bag = bag;
    nnm_status st = embedding_read_size(env, "num_embeddings", &s.num_embeddings);
    if (st == NNM_OK)
        st = embedding_read_size(env, "embedding_dim", &s.embedding_dim);
    if (st != NNM_OK)
        return st;
    if (s.num_embeddings > ((int64_t)1 << 40) / s.embedding_dim)
        return h->set_error(env, NNM_E_LIMIT, "weight of %lld x %lld elements is too large",
                            (long long)s.num_embeddings, (long long)s.embedding_dim);
    const int64_t none = INT64_MIN;
    st = h->config_int(env, "padding_idx", &none, &s.padding_idx);
    if (st != NNM_OK)
        return st;
    if (s.padding_idx != INT64_MIN) {
        if (s.padding_idx < -s.num_embeddings || s.padding_idx >= s.num_embeddings)
            return h->set_error(env, NNM_E_INVALID,
                                "padding_idx must be within num_embeddings (%lld), got %lld",
                                (long long)s.num_embeddings, (long long)s.padding_idx);
        if (s.padding_idx < 0)
            s.padding_idx += s.num_embeddings;
        s.has_padding = 1;
    }
    int present = 0;
    if ((st = embedding_read_float(env, "max_norm", &s.max_norm, &s.has_max_norm,
                                   &s.max_norm_is_int)) != NNM_OK)
        return st;
    if (s.has_max_norm && !(s.max_norm >= 0.0))
        return h->set_error(env, NNM_E_INVALID, "max_norm must be >= 0, got %g", s.max_norm);
    s.norm_type = 2.0;
    if ((st = embedding_read_float(env, "norm_type", &s.norm_type, &present,
                                   &s.norm_type_is_int)) != NNM_OK)
        return st;
    if (!present)
        s.norm_type_is_int = 0; /* PyTorch's default is the float 2. */
    if (s.norm_type != s.norm_type || s.norm_type < 0.0)
        return h->set_error(env, NNM_E_INVALID, "norm_type must be >= 0 (or inf), got %g",
                            s.norm_type);
    const int no_ = 0;
    if ((st = h->config_bool(env, "scale_grad_by_freq", &no_, &s.scale_grad_by_freq)) != NNM_OK)
        return st;
    if (bag) {
        const char *mode = NULL;
        if ((st = h->config_str(env, "mode", "mean", &mode)) != NNM_OK)
            return st;
        s.mode = strcmp(mode, "sum") == 0 ? BAG_SUM : strcmp(mode, "mean") == 0 ? BAG_MEAN
                 : strcmp(mode, "max") == 0                                     ? BAG_MAX
                                                                                : -1;
        if (s.mode < 0)
            return h->set_error(env, NNM_E_INVALID, "mode has to be one of sum, mean or max, got '%s'",
                                mode);
        if (s.mode == BAG_MAX && s.scale_grad_by_freq)
            return h->set_error(env, NNM_E_INVALID,
                                "max mode does not support scaling the gradient by the frequency");
        if (s.scale_grad_by_freq && !NNM_HOST_HAS(h, op_detach))
            return h->set_error(env, NNM_E_VERSION,
                                "embedding_bag: scale_grad_by_freq needs a host of ABI 1.5 (op_detach)");
        const int no = 0;
        if ((st = h->config_bool(env, "include_last_offset", &no, &s.include_last_offset)) != NNM_OK)
            return st;
    }
    const int64_t wshape[2] = {s.num_embeddings, s.embedding_dim};
    st = h->param_new(env, "weight", 2, wshape, NNM_INIT_NORMAL, 0.0, 1.0, &s.weight);
    if (st != NNM_OK)
        return st;
    const nnm_tensor_desc *wd0 = h->tensor_desc(s.weight);
    /* (no data at all when the host validates on its meta device: nothing to zero) */
    if (s.has_padding && wd0->data != NULL) { /* PyTorch zeroes the padding row at init */
        const nnm_tensor_desc *wd = h->tensor_desc(s.weight);
        if (wd->device.type != NNM_DEVICE_CPU || !nnm_lu_is_contiguous(wd))
            return h->set_error(env, NNM_E_UNSUPPORTED,
                                "%s: cannot zero the padding row on device type %d",
                                bag ? "embedding_bag" : "embedding", wd->device.type);
        float *w = nnm_lu_data(wd);
        memset(w + s.padding_idx * s.embedding_dim, 0, sizeof(float) * (size_t)s.embedding_dim);
    }
    embedding_state *p = malloc(sizeof *p);
    if (p == NULL)
        return h->set_error(env, NNM_E_NOMEM, "out of memory for the %s layer's state",
                            bag ? "embedding_bag" : "embedding");
    *p = s;
    *self = p;
    return NNM_OK;
}

static nnm_status embedding_create(nnm_env *env, void **self) {
    return embedding_create_common(env, 0, self);
}

static nnm_status embedding_bag_create(nnm_env *env, void **self) {
    return embedding_create_common(env, 1, self);
}

static void embedding_destroy(void *self) {
    free(self);
}

static int cmp_i64(const void *a, const void *b) {
    const int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* torch.embedding_renorm_(weight, idx, max_norm, norm_type) under no_grad,
 * in host ops (so on any device): each row that idx names (host memory, the
 * n indices range-checked) and whose norm_type-norm exceeds max_norm is
 * scaled in place by max_norm / (norm + 1e-7), as PyTorch's `row *= scale`.
 * Never recorded: the rows' norms, the factor per row and the new weight are
 * computed from a detached alias of the weight, then written over it with
 * op_update (a parameter written in place, as torch does under no_grad).
 * O(num_embeddings * dim) per call: every row's norm, every row rewritten
 * (the factor 1 where nothing changes). */
static nnm_status embedding_renorm(nnm_env *env, const embedding_state *s, const int64_t *idx,
                                   int64_t n) {
    const nnm_host *h = env->host;
    const nnm_tensor_desc *wd = h->tensor_desc(s->weight);
    if (n == 0 || wd->data == NULL)
        return NNM_OK;
    if (!NNM_HOST_HAS(h, op_detach) || !NNM_HOST_HAS(h, tensor_from_host) || !NNM_HOST_HAS(h, op_where))
        return h->set_error(env, NNM_E_VERSION, "%s: max_norm needs a host of ABI 1.5 (op_detach)",
                            s->bag ? "embedding_bag" : "embedding");
    const int64_t V = s->num_embeddings;
    if (!nnm_lu_host_fits((double)V * sizeof(float)))
        return h->set_error(env, NNM_E_NOMEM, "max_norm: out of memory for %lld rows", (long long)V);
    float *sel = calloc((size_t)V, sizeof(float)); /* 1: a row idx names */
    if (sel == NULL)
        return h->set_error(env, NNM_E_NOMEM, "max_norm: out of memory for %lld rows", (long long)V);
    for (int64_t i = 0; i < n; i++)
        sel[idx[i]] = 1.0f;
    const double p = s->norm_type;
    const int32_t dim1[1] = {1};
    nnm_tensor *w = NULL, *a = NULL, *t = NULL, *norm = NULL, *selt = NULL, *big = NULL, *cond = NULL,
               *den = NULL, *mx = NULL, *scale = NULL, *one = NULL, *factor = NULL, *nw = NULL;
    const int64_t vshape[2] = {V, 1}, oshape[1] = {1};
    /* the scale PyTorch applies when the float norm is > max_norm: the
     * smallest float above max_norm is the threshold of GE */
    float thr = (float)s->max_norm;
    if ((double)thr <= s->max_norm)
        thr = nextafterf(thr, INFINITY);
    nnm_status st = h->op_detach(env, s->weight, &w);
    if (st == NNM_OK)
        st = h->op_unary(env, NNM_UNARY_ABS, w, 0.0, &a);
    if (st == NNM_OK) {
        if (isinf(p)) {
            st = h->op_reduce(env, NNM_REDUCE_MAX, a, dim1, 1, 1, &norm);
        } else if (p == 0.0) { /* the count of nonzero entries */
            st = h->op_unary(env, NNM_UNARY_SIGN, a, 0.0, &t);
            if (st == NNM_OK)
                st = h->op_reduce(env, NNM_REDUCE_SUM, t, dim1, 1, 1, &norm);
        } else if (p == 1.0) {
            st = h->op_reduce(env, NNM_REDUCE_SUM, a, dim1, 1, 1, &norm);
        } else {
            nnm_tensor *sum = NULL;
            st = p == 2.0 ? h->op_binary(env, NNM_BINARY_MUL, a, a, &t) : h->op_unary(env, NNM_UNARY_POW, a, p, &t);
            if (st == NNM_OK)
                st = h->op_reduce(env, NNM_REDUCE_SUM, t, dim1, 1, 1, &sum);
            if (st == NNM_OK)
                st = p == 2.0 ? h->op_unary(env, NNM_UNARY_SQRT, sum, 0.0, &norm)
                              : h->op_unary(env, NNM_UNARY_POW, sum, 1.0 / p, &norm);
            h->tensor_release(sum);
        }
    }
    if (st == NNM_OK)
        st = h->tensor_from_host(env, 2, vshape, NNM_F32, sel, &selt);
    if (st == NNM_OK)
        st = h->op_unary(env, NNM_UNARY_GE, norm, (double)thr, &big);
    if (st == NNM_OK)
        st = h->op_binary(env, NNM_BINARY_MUL, big, selt, &cond);
    if (st == NNM_OK)
        st = h->op_unary(env, NNM_UNARY_ADD_SCALAR, norm, 1e-7, &den);
    if (st == NNM_OK)
        st = h->op_full(env, 1, oshape, s->max_norm, &mx);
    if (st == NNM_OK)
        st = h->op_binary(env, NNM_BINARY_DIV, mx, den, &scale);
    if (st == NNM_OK)
        st = h->op_full(env, 1, oshape, 1.0, &one);
    if (st == NNM_OK)
        st = h->op_where(env, cond, scale, one, &factor);
    if (st == NNM_OK)
        st = h->op_binary(env, NNM_BINARY_MUL, w, factor, &nw);
    if (st == NNM_OK)
        st = h->op_update(env, w, nw, 0.0, 1.0);
    nnm_tensor *all[] = {w, a, t, norm, selt, big, cond, den, mx, scale, one, factor, nw};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        h->tensor_release(all[i]);
    free(sel);
    return st;
}

static nnm_status bag_read_i64(nnm_env *env, nnm_tensor *t, const char *what, const int64_t **buf,
                               int64_t **owned);
static nnm_status bag_scale_grad(nnm_env *env, const int64_t *idx, int64_t n, nnm_tensor *g,
                                 const embedding_state *s, nnm_tensor **out);

/* y (rows gathered at the flat indices), with no gradient reaching the
 * padding row: where(idx == padding_idx, detach(y), y). The mask is
 * gathered from a one-hot column of the table's length with the same
 * indices (exact for every index, on any device). */
static nnm_status embedding_mask_padding(nnm_env *env, const embedding_state *s, nnm_tensor *flat,
                                         nnm_tensor *y, nnm_tensor **out) {
    const nnm_host *h = env->host;
    const int64_t V = s->num_embeddings, P = s->padding_idx;
    nnm_tensor *parts[3] = {NULL, NULL, NULL}, *onehot = NULL, *m = NULL, *yd = NULL;
    const int64_t sz[3] = {P, 1, V - P - 1};
    nnm_tensor *use[3];
    uint32_t k = 0;
    nnm_status st = NNM_OK;
    for (int i = 0; i < 3 && st == NNM_OK; i++) {
        if (sz[i] == 0)
            continue;
        const int64_t shape[2] = {sz[i], 1};
        st = h->op_full(env, 2, shape, i == 1 ? 1.0 : 0.0, &parts[i]);
        use[k++] = parts[i];
    }
    if (st == NNM_OK)
        st = k == 1 ? (h->tensor_retain(use[0]), onehot = use[0], NNM_OK) : h->op_concat(env, use, k, 0, &onehot);
    if (st == NNM_OK)
        st = h->op_index_select(env, onehot, 0, flat, &m); /* [n, 1] */
    if (st == NNM_OK)
        st = h->op_detach(env, y, &yd);
    if (st == NNM_OK)
        st = h->op_where(env, m, yd, y, out);
    nnm_tensor *all[] = {parts[0], parts[1], parts[2], onehot, m, yd};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        h->tensor_release(all[i]);
    return st;
}

/* torch.nn.Embedding's forward in host ops, so on every device: the rows
 * op_index_select gathers (the runtime checks the indices; its gradient is
 * the scatter-add into the weight's rows, repeated indices summed), the
 * padding row's gradient masked, scale_grad_by_freq's per-index scale, and
 * max_norm's in-place renormalisation first. The last two read the indices
 * on the host (tensor_read_f32 off the CPU: exact below 2^24). */
static nnm_status embedding_forward(nnm_env *env, void *self, nnm_tensor *const *in,
                                    uint32_t n_in, nnm_tensor **out, uint32_t n_out) {
    const nnm_host *h = env->host;
    const embedding_state *s = self;
    char dt[64];
    if (s == NULL)
        return h->set_error(env, NNM_E_STATE, "embedding: forward without state");
    if (n_in != 1 || n_out != 1 || in == NULL || out == NULL || in[0] == NULL)
        return h->set_error(env, NNM_E_SHAPE, "embedding takes 1 input and 1 output, got %u and %u",
                            (unsigned)n_in, (unsigned)n_out);
    if (!NNM_HOST_HAS(h, op_index_select) || !NNM_HOST_HAS(h, op_detach))
        return h->set_error(env, NNM_E_VERSION, "embedding needs a host of ABI 1.5 or later");
    const nnm_tensor_desc *d = h->tensor_desc(in[0]);
    if (d->dtype.code != NNM_DTYPE_INT || d->dtype.bits != 64 || d->dtype.lanes != 1)
        return h->set_error(env, NNM_E_DTYPE, "embedding takes i64 indices, got %s",
                            nnm_lu_dtype_str(d->dtype, dt, sizeof dt));
    if (d->ndim + 1 > NNM_MAX_DIMS)
        return h->set_error(env, NNM_E_SHAPE, "indices of %d dims leave no room for the "
                            "embedding dim (at most %d dims)", (int)d->ndim, NNM_MAX_DIMS);
    const int64_t n = nnm_lu_numel(d);
    int64_t oshape[NNM_MAX_DIMS];
    memcpy(oshape, d->shape, sizeof(int64_t) * (size_t)d->ndim);
    oshape[d->ndim] = s->embedding_dim;
    const int grad = h->grad_enabled(env);
    const int64_t *idx = NULL;
    int64_t *owned = NULL;
    nnm_status st = NNM_OK;
    if (s->has_max_norm || (s->scale_grad_by_freq && grad && n > 0)) {
        st = bag_read_i64(env, in[0], "indices", &idx, &owned);
        for (int64_t i = 0; st == NNM_OK && i < n; i++)
            if (idx[i] < 0 || idx[i] >= s->num_embeddings)
                st = h->set_error(env, NNM_E_INVALID,
                                  "index %lld (element %lld) is out of range for %lld embeddings",
                                  (long long)idx[i], (long long)i, (long long)s->num_embeddings);
    }
    if (st == NNM_OK && s->has_max_norm)
        st = embedding_renorm(env, s, idx, n);
    nnm_tensor *flat = NULL, *y = NULL, *y2 = NULL;
    const int64_t fshape[1] = {n};
    if (st == NNM_OK)
        st = h->op_reshape(env, in[0], 1, fshape, &flat);
    if (st == NNM_OK)
        st = h->op_index_select(env, s->weight, 0, flat, &y); /* [n, D]; checks the range */
    if (st == NNM_OK && grad && n > 0 && s->scale_grad_by_freq) { /* also zeroes padding_idx's */
        st = bag_scale_grad(env, idx, n, y, s, &y2);
    } else if (st == NNM_OK && grad && n > 0 && s->has_padding) {
        st = embedding_mask_padding(env, s, flat, y, &y2);
    }
    if (st == NNM_OK)
        st = h->op_reshape(env, y2 != NULL ? y2 : y, d->ndim + 1, oshape, &out[0]);
    h->tensor_release(flat);
    h->tensor_release(y);
    h->tensor_release(y2);
    free(owned);
    return st;
}

/* ------------------------------------------------------------------------ */
/* embedding_bag: composed of host ops                                       */
/* ------------------------------------------------------------------------ */

/* The n entries of i64 tensor t in host memory: *buf points at t's own
 * elements on the CPU (*owned NULL), else at a copy read through
 * tensor_read_f32 (exact below 2^24; larger values are refused) that the
 * caller frees through *owned. */
static nnm_status bag_read_i64(nnm_env *env, nnm_tensor *t, const char *what, const int64_t **buf,
                               int64_t **owned) {
    const nnm_host *h = env->host;
    const nnm_tensor_desc *d = h->tensor_desc(t);
    const int64_t n = nnm_lu_numel(d);
    *buf = NULL;
    *owned = NULL;
    if (d->device.type == NNM_DEVICE_CPU && nnm_lu_is_contiguous(d)) {
        *buf = n ? nnm_lu_data(d) : NULL;
        return NNM_OK;
    }
    int64_t *v = malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
    float *f = malloc(sizeof(float) * (size_t)(n ? n : 1));
    nnm_status st = (v && f) ? h->tensor_read_f32(env, t, f, (size_t)n)
                             : h->set_error(env, NNM_E_NOMEM, "embedding_bag: out of memory");
    for (int64_t i = 0; st == NNM_OK && i < n; i++) {
        if (!(fabsf(f[i]) < 16777216.0f))
            st = h->set_error(env, NNM_E_LIMIT,
                              "embedding_bag: %s of a tensor off the CPU are read exactly below "
                              "2^24 only (element %lld)", what, (long long)i);
        else
            v[i] = (int64_t)f[i];
    }
    free(f);
    if (st != NNM_OK) {
        free(v);
        return st;
    }
    *buf = v;
    *owned = v;
    return NNM_OK;
}

static int is_i64(const nnm_tensor_desc *d) {
    return d->dtype.code == NNM_DTYPE_INT && d->dtype.bits == 64 && d->dtype.lanes == 1;
}

/* The layout of the bags: B bags, L slots each, pos[b * L + j] the input
 * position of slot j of bag b (n: the filler row), cnt[b] the entries that
 * count (padding_idx's left out). */
typedef struct bag_plan {
    int64_t B, L, n;
    int64_t *pos;   /* [B * L] */
    float *cnt;     /* [B] */
    int identity;   /* pos is 0..n-1 in order (every bag full, no padding): no second gather */
} bag_plan;

static nnm_status bag_plan_make(nnm_env *env, const embedding_state *s, const int64_t *off,
                                int64_t n_off, int64_t n, const int64_t *idx, bag_plan *pl) {
    const nnm_host *h = env->host;
    memset(pl, 0, sizeof *pl);
    pl->n = n;
    if (s->include_last_offset && n_off < 1)
        return h->set_error(env, NNM_E_SHAPE, "embedding_bag: include_last_offset needs at least "
                            "one offset, got none");
    const int64_t B = s->include_last_offset ? n_off - 1 : n_off;
    if (n_off > 0 && off[0] != 0)
        return h->set_error(env, NNM_E_INVALID,
                            "embedding_bag: offsets[0] has to be 0, i.e., the first sequence in the "
                            "mini-batch has to start from position 0. However, got %lld",
                            (long long)off[0]);
    for (int64_t b = 0; b < n_off; b++) {
        if (off[b] > n)
            return h->set_error(env, NNM_E_INVALID,
                                "embedding_bag: offsets[%lld] can not be greater than input's length "
                                "%lld but got %lld", (long long)b, (long long)n, (long long)off[b]);
        if (b > 0 && off[b] < off[b - 1])
            return h->set_error(env, NNM_E_INVALID,
                                "embedding_bag: offsets must be non-decreasing, got offsets[%lld] = "
                                "%lld after %lld", (long long)b, (long long)off[b],
                                (long long)off[b - 1]);
    }
    /* include_last_offset with indices past the last offset: PyTorch 1.13's
     * forward leaves them out (sum, max) or counts them in the last bag's size
     * (mean), and its backward reads and writes past its buffers (garbage
     * gradients; a corrupted heap for max): refused, as is a 2-d input with
     * include_last_offset (PyTorch's offsets leave its last row out) */
    const int64_t last = s->include_last_offset && n_off > 0 ? off[n_off - 1] : n;
    if (last < n)
        return h->set_error(env, NNM_E_INVALID,
                            "embedding_bag: with include_last_offset the last offset must be the "
                            "input's length %lld (the end of the last bag; a 2-d input is not "
                            "supported with it), got %lld",
                            (long long)n, (long long)last);
    int64_t L = 1, any_pad = 0;
    for (int64_t b = 0; b < B; b++) {
        const int64_t end = b + 1 < n_off ? off[b + 1] : n;
        int64_t c = 0;
        for (int64_t i = off[b]; i < end; i++) {
            if (s->has_padding && idx[i] == s->padding_idx)
                any_pad = 1;
            else
                c++;
        }
        if (c > L)
            L = c;
    }
    pl->B = B;
    pl->L = L;
    if (B > ((int64_t)1 << 40) / L || B * L > ((int64_t)1 << 40) / s->embedding_dim)
        return h->set_error(env, NNM_E_LIMIT,
                            "embedding_bag: %lld bags padded to the longest (%lld entries) make a "
                            "layout of more than 2^40 elements", (long long)B, (long long)L);
    pl->cnt = malloc(sizeof(float) * (size_t)(B ? B : 1));
    pl->pos = malloc(sizeof(int64_t) * (size_t)(B * L > 0 ? B * L : 1));
    if (pl->cnt == NULL || pl->pos == NULL)
        return h->set_error(env, NNM_E_NOMEM, "embedding_bag: out of memory for %lld x %lld slots",
                            (long long)B, (long long)L);
    int identity = !any_pad && B * L == n;
    for (int64_t b = 0; b < B; b++) {
        const int64_t end = b + 1 < n_off ? off[b + 1] : n;
        int64_t j = 0;
        for (int64_t i = off[b]; i < end; i++)
            if (!(s->has_padding && idx[i] == s->padding_idx))
                pl->pos[b * L + j++] = i;
        pl->cnt[b] = (float)j;
        for (; j < L; j++) {
            pl->pos[b * L + j] = n;
            identity = 0;
        }
    }
    for (int64_t k = 0; identity && k < B * L; k++)
        identity = pl->pos[k] == k;
    pl->identity = identity;
    return NNM_OK;
}

static void bag_plan_free(bag_plan *pl) {
    free(pl->pos);
    free(pl->cnt);
}

/* The bags of the gathered rows g [n, D] (already weighted), reduced. */
static nnm_status bag_reduce(nnm_env *env, const embedding_state *s, const bag_plan *pl,
                             nnm_tensor *g, nnm_tensor **out) {
    const nnm_host *h = env->host;
    const int64_t D = s->embedding_dim, B = pl->B, L = pl->L;
    nnm_tensor *fill = NULL, *ge = NULL, *pos = NULL, *p = NULL, *p3 = NULL, *r = NULL;
    nnm_tensor *aux = NULL, *zero = NULL;
    nnm_status st = NNM_OK;
    if (pl->identity) {
        h->tensor_retain(g);
        p = g;
    } else {
        const int64_t fshape[2] = {1, D}, pshape[1] = {B * L};
        nnm_tensor *parts[2] = {g, NULL};
        /* a finite filler: a backend without the index_select slot gathers
         * with a one-hot product, where a -inf row would make every bag NaN;
         * max mode masks the filler's slots with -inf below (op_where) */
        st = h->op_full(env, 2, fshape, 0.0, &fill);
        parts[1] = fill;
        if (st == NNM_OK)
            st = h->op_concat(env, parts, 2, 0, &ge);
        if (st == NNM_OK)
            st = h->tensor_from_host(env, 1, pshape, (nnm_dtype){NNM_DTYPE_INT, 64, 1}, pl->pos, &pos);
        if (st == NNM_OK)
            st = h->op_index_select(env, ge, 0, pos, &p);
    }
    const int64_t shape3[3] = {B, L, D};
    const int32_t dim1 = 1;
    if (st == NNM_OK)
        st = h->op_reshape(env, p, 3, shape3, &p3);
    if (st == NNM_OK && s->mode == BAG_MAX && !pl->identity) {
        /* the filler's slots (short bags, padding entries) lose every maximum */
        const int64_t mshape[3] = {B, L, 1}, one[1] = {1};
        float *mk = malloc(sizeof(float) * (size_t)(B * L > 0 ? B * L : 1));
        nnm_tensor *mask = NULL, *ninf = NULL, *pm = NULL;
        if (mk == NULL)
            st = h->set_error(env, NNM_E_NOMEM, "embedding_bag: out of memory");
        for (int64_t k = 0; st == NNM_OK && k < B * L; k++)
            mk[k] = pl->pos[k] != pl->n ? 1.0f : 0.0f;
        if (st == NNM_OK)
            st = h->tensor_from_host(env, 3, mshape, NNM_F32, mk, &mask);
        if (st == NNM_OK)
            st = h->op_full(env, 1, one, -INFINITY, &ninf);
        if (st == NNM_OK)
            st = h->op_where(env, mask, p3, ninf, &pm);
        free(mk);
        h->tensor_release(mask);
        h->tensor_release(ninf);
        if (st == NNM_OK) {
            h->tensor_release(p3);
            p3 = pm;
        }
    }
    if (st == NNM_OK)
        st = h->op_reduce(env, s->mode == BAG_MAX ? NNM_REDUCE_MAX : NNM_REDUCE_SUM, p3, &dim1, 1, 0,
                          &r);
    const int64_t cshape[2] = {B, 1};
    if (st == NNM_OK && s->mode == BAG_MEAN) {
        /* sum / count, an empty bag's sum (0) divided by 1 */
        float *c = malloc(sizeof(float) * (size_t)(B ? B : 1));
        if (c == NULL)
            st = h->set_error(env, NNM_E_NOMEM, "embedding_bag: out of memory");
        for (int64_t b = 0; st == NNM_OK && b < B; b++)
            c[b] = pl->cnt[b] > 0.0f ? pl->cnt[b] : 1.0f;
        if (st == NNM_OK)
            st = h->tensor_from_host(env, 2, cshape, NNM_F32, c, &aux);
        free(c);
        if (st == NNM_OK)
            st = h->op_binary(env, NNM_BINARY_DIV, r, aux, out);
    } else if (st == NNM_OK && s->mode == BAG_MAX) {
        /* an empty bag's maximum is the filler's -inf: PyTorch gives 0 */
        int any_empty = 0;
        float *e = malloc(sizeof(float) * (size_t)(B ? B : 1));
        if (e == NULL)
            st = h->set_error(env, NNM_E_NOMEM, "embedding_bag: out of memory");
        for (int64_t b = 0; st == NNM_OK && b < B; b++) {
            e[b] = pl->cnt[b] > 0.0f ? 0.0f : 1.0f;
            any_empty |= pl->cnt[b] == 0.0f;
        }
        if (st == NNM_OK && any_empty) {
            const int64_t one[1] = {1};
            st = h->tensor_from_host(env, 2, cshape, NNM_F32, e, &aux);
            if (st == NNM_OK)
                st = h->op_full(env, 1, one, 0.0, &zero);
            if (st == NNM_OK)
                st = h->op_where(env, aux, zero, r, out);
        } else if (st == NNM_OK) {
            *out = r;
            r = NULL;
        }
        free(e);
    } else if (st == NNM_OK) {
        *out = r;
        r = NULL;
    }
    h->tensor_release(fill);
    h->tensor_release(ge);
    h->tensor_release(pos);
    h->tensor_release(p);
    h->tensor_release(p3);
    h->tensor_release(r);
    h->tensor_release(aux);
    h->tensor_release(zero);
    return st;
}

/* scale_grad_by_freq: *out has g's values (exactly: g_detached + (g -
 * g_detached) * c, the difference being 0) and passes c_i = 1 / count of
 * idx[i] in the input times the gradient to g, as PyTorch's dense backward
 * scales each index's rows. (An infinite weight makes that row NaN.) */
static nnm_status bag_scale_grad(nnm_env *env, const int64_t *idx, int64_t n, nnm_tensor *g,
                                 const embedding_state *s, nnm_tensor **out) {
    const nnm_host *h = env->host;
    int64_t *sorted = malloc(sizeof(int64_t) * (size_t)n);
    float *c = malloc(sizeof(float) * (size_t)n);
    nnm_status st = NNM_OK;
    if (sorted == NULL || c == NULL)
        st = h->set_error(env, NNM_E_NOMEM, "embedding_bag: out of memory");
    if (st == NNM_OK) {
        memcpy(sorted, idx, sizeof(int64_t) * (size_t)n);
        qsort(sorted, (size_t)n, sizeof(int64_t), cmp_i64);
        for (int64_t i = 0; i < n; i++) {
            int64_t lo = 0, hi = n, lo2, hi2 = n;
            while (lo < hi) {
                const int64_t mid = lo + (hi - lo) / 2;
                if (sorted[mid] < idx[i]) lo = mid + 1; else hi = mid;
            }
            for (lo2 = lo; lo2 < hi2;) {
                const int64_t mid = lo2 + (hi2 - lo2) / 2;
                if (sorted[mid] <= idx[i]) lo2 = mid + 1; else hi2 = mid;
            }
            /* embedding: padding_idx's row gets no gradient (its entries
             * never reach the bag layer's reduction, which masks them) */
            c[i] = !s->bag && s->has_padding && idx[i] == s->padding_idx ? 0.0f
                                                                         : (float)(1.0 / (double)(lo2 - lo));
        }
    }
    nnm_tensor *ct = NULL, *gd = NULL, *diff = NULL, *sc = NULL;
    const int64_t cshape[2] = {n, 1};
    if (st == NNM_OK) st = h->tensor_from_host(env, 2, cshape, NNM_F32, c, &ct);
    if (st == NNM_OK) st = h->op_detach(env, g, &gd);
    if (st == NNM_OK) st = h->op_binary(env, NNM_BINARY_SUB, g, gd, &diff);
    if (st == NNM_OK) st = h->op_binary(env, NNM_BINARY_MUL, diff, ct, &sc);
    if (st == NNM_OK) st = h->op_binary(env, NNM_BINARY_ADD, gd, sc, out);
    h->tensor_release(ct);
    h->tensor_release(gd);
    h->tensor_release(diff);
    h->tensor_release(sc);
    free(sorted);
    free(c);
    return st;
}

static nnm_status embedding_bag_forward(nnm_env *env, void *self, nnm_tensor *const *in,
                                        uint32_t n_in, nnm_tensor **out, uint32_t n_out) {
    const nnm_host *h = env->host;
    const embedding_state *s = self;
    char b1[64], b2[64];
    if (s == NULL)
        return h->set_error(env, NNM_E_STATE, "embedding_bag: forward without state");
    if (n_in < 1 || n_in > 3 || n_out != 1 || in == NULL || out == NULL || in[0] == NULL)
        return h->set_error(env, NNM_E_SHAPE,
                            "embedding_bag takes input[, offsets][, per_sample_weights] and returns "
                            "one output, got %u inputs and %u outputs", (unsigned)n_in,
                            (unsigned)n_out);
    if (!NNM_HOST_HAS(h, op_index_select) || !NNM_HOST_HAS(h, tensor_from_host))
        return h->set_error(env, NNM_E_VERSION, "embedding_bag needs a host of ABI 1.5 or later");
    const nnm_tensor_desc *xd = h->tensor_desc(in[0]);
    if (!is_i64(xd))
        return h->set_error(env, NNM_E_DTYPE, "embedding_bag takes i64 indices, got %s",
                            nnm_lu_dtype_str(xd->dtype, b1, sizeof b1));
    if (xd->ndim != 1 && xd->ndim != 2)
        return h->set_error(env, NNM_E_SHAPE,
                            "embedding_bag: input has to be 1D or 2D Tensor, but got Tensor of "
                            "dimension %d", (int)xd->ndim);
    /* the optional inputs: offsets (i64, 1-d input only), per_sample_weights (f32);
     * a 0-element tensor stands for an absent one (None) */
    nnm_tensor *offsets = NULL, *psw = NULL;
    for (uint32_t i = 1; i < n_in; i++) {
        if (in[i] == NULL)
            continue;
        const nnm_tensor_desc *d = h->tensor_desc(in[i]);
        if (is_i64(d) && i == 1 && (xd->ndim == 1 || nnm_lu_numel(d) > 0)) {
            if (xd->ndim == 2)
                return h->set_error(env, NNM_E_INVALID,
                                    "embedding_bag: if input is 2D, then offsets has to be None, as "
                                    "input is treated is a mini-batch of fixed length sequences");
            if (d->ndim != 1)
                return h->set_error(env, NNM_E_SHAPE, "embedding_bag: offsets has to be a 1D Tensor");
            offsets = in[i];
        } else if (nnm_lu_is_f32(d) && nnm_lu_numel(d) == 0 && i == 1 && n_in == 3) {
            continue; /* offsets None, per_sample_weights next */
        } else if (nnm_lu_is_f32(d) && (i == 2 || (i == 1 && xd->ndim == 2))) {
            psw = in[i];
        } else {
            return h->set_error(env, NNM_E_INVALID,
                                "embedding_bag: input %u must be %s, got %s %s", (unsigned)i,
                                i == 1 && xd->ndim == 1 ? "offsets (i64)" : "per_sample_weights (f32)",
                                nnm_lu_dtype_str(d->dtype, b1, sizeof b1),
                                nnm_lu_shape_str(d, b2, sizeof b2));
        }
    }
    if (xd->ndim == 1 && offsets == NULL)
        return h->set_error(env, NNM_E_INVALID, "embedding_bag: offsets has to be a 1D Tensor but "
                            "got None");
    if (psw != NULL) {
        const nnm_tensor_desc *pd = h->tensor_desc(psw);
        int same = pd->ndim == xd->ndim;
        for (int32_t k = 0; same && k < xd->ndim; k++)
            same = pd->shape[k] == xd->shape[k];
        if (!same)
            return h->set_error(env, NNM_E_SHAPE,
                                "embedding_bag: If per_sample_weights (%s) is not None, then it must "
                                "have the same shape as the input (%s)",
                                nnm_lu_shape_str(pd, b1, sizeof b1), nnm_lu_shape_str(xd, b2, sizeof b2));
        if (s->mode != BAG_SUM)
            return h->set_error(env, NNM_E_INVALID,
                                "embedding_bag: per_sample_weights was not None. per_sample_weights "
                                "is only supported for mode='sum' (got mode='%s')",
                                bag_mode_name[s->mode]);
    }
    const int64_t n = nnm_lu_numel(xd), D = s->embedding_dim;
    /* the offsets on the host: given, or every N-th position of a 2-d input */
    const int64_t *off = NULL, *idx = NULL;
    int64_t *off_owned = NULL, *idx_owned = NULL, n_off = 0;
    nnm_status st = NNM_OK;
    if (offsets != NULL) {
        n_off = nnm_lu_numel(h->tensor_desc(offsets));
        st = bag_read_i64(env, offsets, "offsets", &off, &off_owned);
    } else {
        n_off = xd->shape[0];
        off_owned = malloc(sizeof(int64_t) * (size_t)(n_off ? n_off : 1));
        if (off_owned == NULL)
            st = h->set_error(env, NNM_E_NOMEM, "embedding_bag: out of memory");
        for (int64_t b = 0; st == NNM_OK && b < n_off; b++)
            off_owned[b] = b * xd->shape[1];
        off = off_owned;
    }
    if (st == NNM_OK && (s->has_padding || s->has_max_norm || s->scale_grad_by_freq))
        st = bag_read_i64(env, in[0], "indices", &idx, &idx_owned);
    for (int64_t i = 0; st == NNM_OK && idx != NULL && i < n; i++)
        if (idx[i] < 0 || idx[i] >= s->num_embeddings)
            st = h->set_error(env, NNM_E_INVALID,
                              "embedding_bag: index %lld (element %lld) is out of range for %lld "
                              "embeddings", (long long)idx[i], (long long)i,
                              (long long)s->num_embeddings);
    if (st == NNM_OK && s->has_max_norm)
        st = embedding_renorm(env, s, idx, n);
    /* the fused segment reduction (host->op_embedding_bag, the backend's
     * embedding_bag slots) unless scale_grad_by_freq asks for scaled
     * gradients (or a 2-d input meets include_last_offset, refused below);
     * a backend without the slots: the composed path below */
    if (st == NNM_OK && !s->scale_grad_by_freq && !(xd->ndim == 2 && s->include_last_offset) &&
        NNM_HOST_HAS(h, op_embedding_bag)) {
        const int32_t mode = s->mode == BAG_MAX ? NNM_REDUCE_MAX : s->mode == BAG_MEAN ? NNM_REDUCE_MEAN
                                                                                        : NNM_REDUCE_SUM;
        const nnm_embedding_bag_params p = {sizeof p, mode, s->include_last_offset, s->has_padding,
                                            s->has_padding ? s->padding_idx : 0};
        st = h->op_embedding_bag(env, s->weight, in[0], offsets, psw, &p, &out[0]);
        if (st != NNM_E_UNSUPPORTED) {
            free(off_owned);
            free(idx_owned);
            return st;
        }
        st = NNM_OK;
    }
    bag_plan pl;
    memset(&pl, 0, sizeof pl);
    if (st == NNM_OK)
        st = bag_plan_make(env, s, off, n_off, n, idx, &pl);
    nnm_tensor *flat = NULL, *g = NULL, *pw = NULL, *gw = NULL;
    const int64_t fshape[1] = {n}, wshape[2] = {n, 1};
    if (st == NNM_OK)
        st = h->op_reshape(env, in[0], 1, fshape, &flat);
    if (st == NNM_OK)
        st = h->op_index_select(env, s->weight, 0, flat, &g); /* [n, D]; checks the range */
    if (st == NNM_OK && s->scale_grad_by_freq && n > 0) {
        nnm_tensor *g2 = NULL;
        st = bag_scale_grad(env, idx, n, g, s, &g2);
        h->tensor_release(g);
        g = g2;
    }
    if (st == NNM_OK && psw != NULL) {
        st = h->op_reshape(env, psw, 2, wshape, &pw);
        if (st == NNM_OK)
            st = h->op_binary(env, NNM_BINARY_MUL, g, pw, &gw);
    }
    if (st == NNM_OK)
        st = bag_reduce(env, s, &pl, gw != NULL ? gw : g, &out[0]);
    (void)D;
    bag_plan_free(&pl);
    free(off_owned);
    free(idx_owned);
    h->tensor_release(flat);
    h->tensor_release(g);
    h->tensor_release(pw);
    h->tensor_release(gw);
    return st;
}

/* ------------------------------------------------------------------------ */
/* extra_repr, schemas, vtables                                              */
/* ------------------------------------------------------------------------ */

/* ", key=value" of a float config as Python prints what was given. */
static int put_float(char *buf, size_t cap, size_t at, const char *key, double v, int is_int) {
    char num[48];
    if (is_int && v >= -9223372036854775808.0 && v < 9223372036854775808.0)
        snprintf(num, sizeof num, "%lld", (long long)v);
    else if (is_int) /* INT64_MAX came back from a double as 2^63: no long long holds it */
        snprintf(num, sizeof num, "%.0f", v);
    else
        nnm_lu_pyfloat(num, sizeof num, v);
    return snprintf(at < cap ? buf + at : NULL, at < cap ? cap - at : 0, ", %s=%s", key, num);
}

static int embedding_extra_repr(void *self, char *buf, size_t cap) {
    const embedding_state *s = self;
    if (s == NULL)
        return snprintf(buf, cap, "%s", "");
    size_t at = 0;
    int k = snprintf(buf, cap, "%lld, %lld", (long long)s->num_embeddings,
                     (long long)s->embedding_dim);
    at += k > 0 ? (size_t)k : 0;
    /* PyTorch's order: Embedding puts padding_idx first, EmbeddingBag after mode */
    if (s->has_padding && !s->bag) {
        k = snprintf(at < cap ? buf + at : NULL, at < cap ? cap - at : 0, ", padding_idx=%lld",
                     (long long)s->padding_idx);
        at += k > 0 ? (size_t)k : 0;
    }
    if (s->has_max_norm) {
        k = put_float(buf, cap, at, "max_norm", s->max_norm, s->max_norm_is_int);
        at += k > 0 ? (size_t)k : 0;
    }
    if (s->norm_type != 2.0) {
        k = put_float(buf, cap, at, "norm_type", s->norm_type, s->norm_type_is_int);
        at += k > 0 ? (size_t)k : 0;
    }
    if (s->scale_grad_by_freq) {
        k = snprintf(at < cap ? buf + at : NULL, at < cap ? cap - at : 0, ", scale_grad_by_freq=True");
        at += k > 0 ? (size_t)k : 0;
    }
    if (s->bag) {
        k = snprintf(at < cap ? buf + at : NULL, at < cap ? cap - at : 0, ", mode=%s",
                     bag_mode_name[s->mode]);
        at += k > 0 ? (size_t)k : 0;
        if (s->has_padding) {
            k = snprintf(at < cap ? buf + at : NULL, at < cap ? cap - at : 0, ", padding_idx=%lld",
                         (long long)s->padding_idx);
            at += k > 0 ? (size_t)k : 0;
        }
    }
    return (int)at;
}

#define EMBEDDING_FIELDS                                                                           \
    {"num_embeddings", NNM_CONFIG_INT, NNM_CONFIG_REQUIRED, "size of the table (> 0)"},           \
        {"embedding_dim", NNM_CONFIG_INT, NNM_CONFIG_REQUIRED, "size of each vector (> 0)"},      \
        {"padding_idx", NNM_CONFIG_INT, 0,                                                         \
         "row that stays zero and gets no gradient (default None)"},                               \
        {"max_norm", NNM_CONFIG_FLOAT, 0,                                                          \
         "rows looked up are renormalised in place to this norm at most (default None)"},        \
        {"norm_type", NNM_CONFIG_FLOAT, 0, "p of the p-norm for max_norm (default 2)"},          \
        {"scale_grad_by_freq", NNM_CONFIG_BOOL, 0,                                                 \
         "each row's gradient divided by its index's count in the input (default false)"}

static const nnm_config_field embedding_config[] = {EMBEDDING_FIELDS};

static const nnm_config_field embedding_bag_config[] = {
    EMBEDDING_FIELDS,
    {"mode", NNM_CONFIG_STR, 0, "\"sum\", \"mean\" (default) or \"max\""},
    {"include_last_offset", NNM_CONFIG_BOOL, 0,
     "offsets has B + 1 entries, the last one the end of the last bag (default false)"},
};

static const nnm_layer_vtable embedding_layer = {
    .struct_size = sizeof(nnm_layer_vtable),
    .flags = 0,
    .name = "embedding",
    .display_name = "Embedding",
    .version_major = 1,
    .version_minor = 1, /* 1.1: max_norm, norm_type, scale_grad_by_freq */
    .version_patch = 1, /* 1.1.1: host ops on every device (was a CPU kernel) */
    .n_inputs = 1,
    .n_outputs = 1,
    .create = embedding_create,
    .destroy = embedding_destroy,
    .forward = embedding_forward,
    .extra_repr = embedding_extra_repr,
    .config_fields = embedding_config,
    .n_config_fields = sizeof embedding_config / sizeof embedding_config[0],
};

static const nnm_layer_vtable embedding_bag_layer = {
    .struct_size = sizeof(nnm_layer_vtable),
    .flags = 0,
    .name = "embedding_bag",
    .display_name = "EmbeddingBag",
    .version_major = 1,
    .version_minor = 0,
    .version_patch = 1, /* 1.0.1: max_norm in host ops (was CPU only) */
    .n_inputs = NNM_ARITY_ANY, /* input[, offsets][, per_sample_weights] */
    .n_outputs = 1,
    .create = embedding_bag_create,
    .destroy = embedding_destroy,
    .forward = embedding_bag_forward,
    .extra_repr = embedding_extra_repr,
    .config_fields = embedding_bag_config,
    .n_config_fields = sizeof embedding_bag_config / sizeof embedding_bag_config[0],
};

static const nnm_layer_vtable *const embedding_layers[] = {&embedding_layer, &embedding_bag_layer};

static const nnm_plugin_desc embedding_plugin = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
    .name = "embedding",
    .description = "Lookup tables (torch.nn.Embedding, torch.nn.EmbeddingBag), i64 indices",
    .n_layers = 2,
    .n_backends = 0,
    .layers = embedding_layers,
    .backends = NULL,
    .domain = NNM_DOMAIN_NNMOD, /* nnmod's own library: the plain names */
};

NNM_PLUGIN_DEFINE(embedding_plugin)
