/* plugins/normalization/normalization.c - the normalisation layers of
 * torch.nn, one plugin:
 *
 *   batch_norm1d (BatchNorm1d)  x [N, C] or [N, C, L]
 *   batch_norm2d (BatchNorm2d)  x [N, C, H, W]
 *   batch_norm3d (BatchNorm3d)  x [N, C, D, H, W]
 *       num_features (required), eps = 1e-5, momentum = 0.1 (the string
 *       "none" / "None" for PyTorch's None: a cumulative moving average),
 *       affine = true, track_running_stats = true
 *       parameters weight [C] (ones), bias [C] (zeros) when affine; persistent
 *       buffers running_mean [C] (zeros), running_var [C] (ones),
 *       num_batches_tracked [] (0; i64 as PyTorch's on an ABI 1.5 host, so
 *       the count is exact past 2^24 and saves as I64; f32 on an older host)
 *       when track_running_stats.
 *       Training mode (read from the call context) normalises with the batch
 *       statistics (biased variance) and updates the running ones with the
 *       unbiased variance, as PyTorch; eval mode uses the running ones and
 *       updates nothing (without running stats it uses the batch's).
 *   layer_norm (LayerNorm)      normalized_shape (int or list, required),
 *                               eps = 1e-5, elementwise_affine = true
 *   group_norm (GroupNorm)      num_groups, num_channels (required),
 *                               eps = 1e-5, affine = true
 *   instance_norm1d/2d/3d (InstanceNorm1d/2d/3d)  x [N, C, *] or [C, *]
 *       num_features (required), eps = 1e-5, momentum = 0.1, affine = false,
 *       track_running_stats = false: each (sample, channel) normalised over
 *       its spatial dims; with track_running_stats the running statistics are
 *       the batch-norm update averaged over the samples, as F.instance_norm
 *       (num_batches_tracked is declared, as PyTorch's, and never counted)
 *   local_response_norm (LocalResponseNorm)  size (required), alpha = 1e-4,
 *       beta = 0.75, k = 1.0: x / (k + alpha * avg_c(x^2))^beta over a
 *       window of `size` channels, as F.local_response_norm (zero padding,
 *       average pooling)
 *
 * Batch norm is the host's fused op_batch_norm (ABI 1.4: one backend
 * kernel, one autograd node) and layer norm its op_layer_norm (ABI 1.5: the
 * same) where the host and the device's backend have them; where they do
 * not (NNM_E_UNSUPPORTED: an older host, a backend without the slots such
 * as CUDA's) they, like group norm, are composed from host ops (reduce, binary, unary POW/ADD_SCALAR, reshape), so
 * autograd and every device come from the runtime; running statistics are
 * written with op_update, which is never recorded. */
#include <nnmod/plugin.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layer_util.h"

enum norm_kind { NORM_BN1D, NORM_BN2D, NORM_LN, NORM_GN, NORM_BN3D, NORM_IN1D, NORM_IN2D, NORM_IN3D, NORM_LRN };

#define NORM_IS_BN(k) ((k) == NORM_BN1D || (k) == NORM_BN2D || (k) == NORM_BN3D)
#define NORM_IS_IN(k) ((k) == NORM_IN1D || (k) == NORM_IN2D || (k) == NORM_IN3D)

typedef struct norm_state {
    int kind;
    int64_t features;               /* BN: num_features; GN: num_channels */
    int64_t groups;                 /* GN */
    int64_t shape[NNM_MAX_DIMS];    /* LN: normalized_shape */
    size_t n_shape;
    double eps, momentum;
    int momentum_none, affine, track;
    int64_t lrn_size;               /* LRN: size; alpha, beta in eps/momentum's place */
    double alpha, beta, k;
    int alpha_int, beta_int, k_int;
    nnm_tensor *weight, *bias;      /* borrowed; NULL without affine */
    nnm_tensor *running_mean, *running_var, *num_batches; /* borrowed; NULL without tracking */
} norm_state;

static const char *const norm_names[] = {"batch_norm1d",    "batch_norm2d",    "layer_norm",
                                         "group_norm",      "batch_norm3d",    "instance_norm1d",
                                         "instance_norm2d", "instance_norm3d", "local_response_norm"};

#define NORM_MAX_FEATURES ((int64_t)1 << 30)

static nnm_status norm_read_momentum(nnm_env *env, norm_state *s) {
    const nnm_host *h = env->host;
    int32_t type = 0;
    const double dflt = 0.1;
    if (h->config_type(env, "momentum", &type) == NNM_OK && type == NNM_CONFIG_STR) {
        const char *v = NULL;
        nnm_status st = h->config_str(env, "momentum", NULL, &v);
        if (st) return st;
        if (strcmp(v, "none") != 0 && strcmp(v, "None") != 0)
            return h->set_error(env, NNM_E_INVALID, "%s: momentum must be a number or \"none\", got \"%.32s\"",
                                norm_names[s->kind], v);
        s->momentum_none = 1;
        return NNM_OK;
    }
    return h->config_float(env, "momentum", &dflt, &s->momentum);
}

static nnm_status norm_new(nnm_env *env, int kind, void **self) {
    const nnm_host *h = env->host;
    *self = NULL;
    if (!NNM_HOST_HAS(h, op_update))
        return h->set_error(env, NNM_E_VERSION, "%s needs a host of ABI 1.3", norm_names[kind]);
    norm_state s;
    memset(&s, 0, sizeof s);
    s.kind = kind;
    const double eps = 1e-5;
    const int yes = 1;
    nnm_status st;
    const char *layer = norm_names[kind];
    if (kind == NORM_LRN) {
        const double alpha = 1e-4, beta = 0.75, k = 1.0;
        int32_t t = 0;
        if ((st = h->config_int(env, "size", NULL, &s.lrn_size)) || (st = h->config_float(env, "alpha", &alpha, &s.alpha)) ||
            (st = h->config_float(env, "beta", &beta, &s.beta)) || (st = h->config_float(env, "k", &k, &s.k)))
            return st;
        if (s.lrn_size < 1 || s.lrn_size > NORM_MAX_FEATURES)
            return h->set_error(env, NNM_E_INVALID, "local_response_norm: size must be >= 1, got %lld",
                                (long long)s.lrn_size);
        s.alpha_int = h->config_type(env, "alpha", &t) == NNM_OK && t == NNM_CONFIG_INT;
        s.beta_int = h->config_type(env, "beta", &t) == NNM_OK && t == NNM_CONFIG_INT;
        s.k_int = h->config_type(env, "k", &t) == NNM_OK && t == NNM_CONFIG_INT;
        norm_state *p = malloc(sizeof *p);
        if (!p) return h->set_error(env, NNM_E_NOMEM, "%s: out of memory", layer);
        *p = s;
        *self = p;
        return NNM_OK;
    }
    if ((st = h->config_float(env, "eps", &eps, &s.eps))) return st;
    if (!(s.eps >= 0)) return h->set_error(env, NNM_E_INVALID, "%s: eps must be >= 0", layer);
    int64_t pshape[NNM_MAX_DIMS];
    int32_t pnd = 1;
    if (NORM_IS_BN(kind) || NORM_IS_IN(kind)) {
        /* InstanceNorm's defaults: affine and track_running_stats false */
        const int dflt = NORM_IS_BN(kind);
        if ((st = h->config_int(env, "num_features", NULL, &s.features)) || (st = norm_read_momentum(env, &s)) ||
            (st = h->config_bool(env, "affine", &dflt, &s.affine)) ||
            (st = h->config_bool(env, "track_running_stats", &dflt, &s.track)))
            return st;
        (void)yes;
        if (NORM_IS_IN(kind) && s.momentum_none)
            return h->set_error(env, NNM_E_INVALID, "%s: momentum must be a number (instance norm has no cumulative average)",
                                layer);
        pshape[0] = s.features;
    } else if (kind == NORM_GN) {
        if ((st = h->config_int(env, "num_groups", NULL, &s.groups)) ||
            (st = h->config_int(env, "num_channels", NULL, &s.features)) ||
            (st = h->config_bool(env, "affine", &yes, &s.affine)))
            return st;
        if (s.groups < 1 || s.groups > NORM_MAX_FEATURES)
            return h->set_error(env, NNM_E_INVALID, "group_norm: num_groups must be >= 1");
        if (s.features % s.groups) return h->set_error(env, NNM_E_INVALID, "group_norm: num_channels must be divisible by num_groups");
        pshape[0] = s.features;
    } else {
        int32_t type = 0;
        if ((st = h->config_type(env, "normalized_shape", &type)) == NNM_E_NOT_FOUND)
            return h->set_error(env, NNM_E_NOT_FOUND, "layer_norm: config.normalized_shape is required");
        if (type == NNM_CONFIG_INT) {
            st = h->config_int(env, "normalized_shape", NULL, &s.shape[0]);
            s.n_shape = 1;
        } else {
            st = h->config_ints(env, "normalized_shape", s.shape, NNM_MAX_DIMS, &s.n_shape);
        }
        if (st || (st = h->config_bool(env, "elementwise_affine", &yes, &s.affine))) return st;
        if (s.n_shape == 0) return h->set_error(env, NNM_E_INVALID, "layer_norm: normalized_shape is empty");
        int64_t prod = 1;
        for (size_t i = 0; i < s.n_shape; i++) {
            if (s.shape[i] < 1 || s.shape[i] > NORM_MAX_FEATURES || prod > NORM_MAX_FEATURES / s.shape[i])
                return h->set_error(env, NNM_E_INVALID, "layer_norm: normalized_shape entries must be >= 1");
            prod *= s.shape[i];
            pshape[i] = s.shape[i];
        }
        pnd = (int32_t)s.n_shape;
        s.features = prod;
    }
    if (s.features < 1 || s.features > NORM_MAX_FEATURES)
        return h->set_error(env, NNM_E_INVALID, "%s: the feature count must be in [1, %lld]", layer,
                            (long long)NORM_MAX_FEATURES);
    if (s.affine && ((st = h->param_new(env, "weight", pnd, pshape, NNM_INIT_ONES, 0, 0, &s.weight)) ||
                     (st = h->param_new(env, "bias", pnd, pshape, NNM_INIT_ZEROS, 0, 0, &s.bias))))
        return st;
    if (s.track) {
        const int64_t none[1] = {1};
        const nnm_dtype i64 = {NNM_DTYPE_INT, 64, 1};
        if ((st = h->buffer_new(env, "running_mean", 1, pshape, NNM_INIT_ZEROS, 0, 1, &s.running_mean)) ||
            (st = h->buffer_new(env, "running_var", 1, pshape, NNM_INIT_ONES, 0, 1, &s.running_var)))
            return st;
        /* i64 as PyTorch's (exact past 2^24, saved as I64) on a 1.5 host, whose
         * op_update counts in it; f32 on an older one */
        if (NNM_HOST_HAS(h, buffer_new_v2))
            st = h->buffer_new_v2(env, "num_batches_tracked", 0, none, i64, NNM_INIT_ZEROS, 0, 0, 1, &s.num_batches);
        else
            st = h->buffer_new(env, "num_batches_tracked", 0, none, NNM_INIT_ZEROS, 0, 1, &s.num_batches);
        if (st) return st;
    }
    norm_state *p = malloc(sizeof *p);
    if (!p) return h->set_error(env, NNM_E_NOMEM, "%s: out of memory", layer);
    *p = s;
    *self = p;
    return NNM_OK;
}

static nnm_status bn1d_create(nnm_env *env, void **self) { return norm_new(env, NORM_BN1D, self); }
static nnm_status bn3d_create(nnm_env *env, void **self) { return norm_new(env, NORM_BN3D, self); }
static nnm_status in1d_create(nnm_env *env, void **self) { return norm_new(env, NORM_IN1D, self); }
static nnm_status in2d_create(nnm_env *env, void **self) { return norm_new(env, NORM_IN2D, self); }
static nnm_status in3d_create(nnm_env *env, void **self) { return norm_new(env, NORM_IN3D, self); }
static nnm_status lrn_create(nnm_env *env, void **self) { return norm_new(env, NORM_LRN, self); }
static nnm_status bn2d_create(nnm_env *env, void **self) { return norm_new(env, NORM_BN2D, self); }
static nnm_status ln_create(nnm_env *env, void **self) { return norm_new(env, NORM_LN, self); }
static nnm_status gn_create(nnm_env *env, void **self) { return norm_new(env, NORM_GN, self); }
static void norm_destroy(void *self) { free(self); }

/* The references a forward holds, released together. */
typedef struct norm_tmp {
    nnm_tensor *t[24];
    int n;
} norm_tmp;

static nnm_tensor **norm_slot(norm_tmp *k) { return &k->t[k->n++]; }

static void norm_tmp_release(const nnm_host *h, norm_tmp *k) {
    for (int i = 0; i < k->n; i++) h->tensor_release(k->t[i]);
    k->n = 0;
}

/* y = (x - mean) * (var + eps)^-1/2 with mean and biased var of x over dims
 * (kept as size 1); *mean and *var (borrowed from k) when asked. */
static nnm_status norm_batch(nnm_env *env, norm_tmp *k, nnm_tensor *x, const int32_t *dims, uint32_t nd, double eps,
                             nnm_tensor **y, nnm_tensor **mean, nnm_tensor **var) {
    const nnm_host *h = env->host;
    nnm_tensor **m = norm_slot(k), **xc = norm_slot(k), **sq = norm_slot(k), **v = norm_slot(k),
               **ve = norm_slot(k), **inv = norm_slot(k);
    nnm_status st;
    if ((st = h->op_reduce(env, NNM_REDUCE_MEAN, x, dims, nd, 1, m)) ||
        (st = h->op_binary(env, NNM_BINARY_SUB, x, *m, xc)) ||
        (st = h->op_binary(env, NNM_BINARY_MUL, *xc, *xc, sq)) ||
        (st = h->op_reduce(env, NNM_REDUCE_MEAN, *sq, dims, nd, 1, v)) ||
        (st = h->op_unary(env, NNM_UNARY_ADD_SCALAR, *v, eps, ve)) ||
        (st = h->op_unary(env, NNM_UNARY_POW, *ve, -0.5, inv)) || (st = h->op_binary(env, NNM_BINARY_MUL, *xc, *inv, y)))
        return st;
    if (mean) *mean = *m;
    if (var) *var = *v;
    return NNM_OK;
}

/* t [C] viewed as [1, C, 1, ...] for an nd-dim input. */
static nnm_status norm_channel_view(nnm_env *env, nnm_tensor *t, int64_t c, int32_t nd, nnm_tensor **out) {
    int64_t shape[NNM_MAX_DIMS] = {0};
    if (nd < 2 || nd > NNM_MAX_DIMS) return env->host->set_error(env, NNM_E_SHAPE, "channel view of %d dims", (int)nd);
    for (int32_t i = 0; i < nd; i++) shape[i] = i == 1 ? c : 1;
    return env->host->op_reshape(env, t, nd, shape, out);
}

/* y * w + b with w, b viewed for an nd-dim input (channel dim 1), or as
 * they are (trailing dims: layer_norm). Takes *y. */
static nnm_status norm_affine(nnm_env *env, norm_tmp *k, const norm_state *s, nnm_tensor *y, int32_t nd,
                              nnm_tensor **out) {
    const nnm_host *h = env->host;
    if (!s->affine) {
        *out = y;
        return NNM_OK;
    }
    *norm_slot(k) = y;
    nnm_tensor *w = s->weight, *b = s->bias;
    nnm_status st;
    if (s->kind != NORM_LN) {
        nnm_tensor **wv = norm_slot(k), **bv = norm_slot(k);
        if ((st = norm_channel_view(env, w, s->features, nd, wv)) || (st = norm_channel_view(env, b, s->features, nd, bv)))
            return st;
        w = *wv;
        b = *bv;
    }
    nnm_tensor **yw = norm_slot(k);
    if ((st = h->op_binary(env, NNM_BINARY_MUL, y, w, yw))) return st;
    return h->op_binary(env, NNM_BINARY_ADD, *yw, b, out);
}

/* The fused host op (ABI 1.4). Returns NNM_E_UNSUPPORTED, having changed
 * nothing, where the host or the device's backend lacks it: the caller then
 * composes the op. num_batches_tracked is counted here, once the op ran. */
static nnm_status bn_fused(nnm_env *env, const norm_state *s, nnm_tensor *x, int training, nnm_tensor **out) {
    const nnm_host *h = env->host;
    if (!NNM_HOST_HAS(h, op_batch_norm)) return NNM_E_UNSUPPORTED;
    const int update = training && s->track;
    nnm_batch_norm_params p = {sizeof p, training || !s->track, s->momentum, s->eps};
    nnm_status st;
    if (update && s->momentum_none) { /* cumulative average: factor 1 / (batches so far, this one included) */
        float nbt = 0;
        if ((st = h->tensor_read_f32(env, s->num_batches, &nbt, 1))) return st;
        p.momentum = 1.0 / ((double)nbt + 1.0);
    }
    /* eval without running stats normalises with the batch's, as PyTorch */
    if ((st = h->op_batch_norm(env, x, s->track ? s->running_mean : NULL, s->track ? s->running_var : NULL,
                               s->weight, s->bias, &p, out)))
        return st;
    if (update) {
        nnm_tensor *one = NULL;
        const int64_t none[1] = {1};
        if (!(st = h->op_full(env, 0, none, 1.0, &one))) st = h->op_update(env, s->num_batches, one, 1.0, 1.0);
        h->tensor_release(one);
    }
    if (st) {
        h->tensor_release(*out);
        *out = NULL;
    }
    return st;
}

static nnm_status bn_forward(nnm_env *env, const norm_state *s, nnm_tensor *x, nnm_tensor **out) {
    const nnm_host *h = env->host;
    const char *layer = norm_names[s->kind];
    const nnm_tensor_desc *d = h->tensor_desc(x);
    if (s->kind == NORM_BN1D ? (d->ndim != 2 && d->ndim != 3) : d->ndim != (s->kind == NORM_BN2D ? 4 : 5))
        return h->set_error(env, NNM_E_SHAPE, "%s: expected %s input, got %dD", layer,
                            s->kind == NORM_BN1D ? "2D or 3D" : s->kind == NORM_BN2D ? "4D" : "5D", (int)d->ndim);
    if (d->shape[1] != s->features)
        return h->set_error(env, NNM_E_SHAPE, "%s: expected %lld channels (num_features), got %lld", layer,
                            (long long)s->features, (long long)d->shape[1]);
    const int training = h->is_training(env);
    const int use_batch = training || !s->track;
    int32_t dims[NNM_MAX_DIMS];
    uint32_t nd = 0;
    int64_t count = 1;
    for (int32_t i = 0; i < d->ndim; i++)
        if (i != 1) {
            dims[nd++] = i;
            count *= d->shape[i];
        }
    /* exactly one, as PyTorch: an empty batch trains to an empty output and
     * leaves the running statistics alone (num_batches_tracked still counts).
     * Eval without running statistics normalises with the batch's, so PyTorch
     * (F.batch_norm with training=True) refuses one value there too. */
    if (use_batch && count == 1) {
        char shp[160];
        size_t n = 0;
        shp[0] = 0;
        for (int32_t i = 0; i < d->ndim && n < sizeof shp; i++) {
            const int w = snprintf(shp + n, sizeof shp - n, "%s%lld", i ? ", " : "", (long long)d->shape[i]);
            n += w > 0 ? (size_t)w : 0;
        }
        return h->set_error(env, NNM_E_SHAPE,
                            "%s: expected more than 1 value per channel when training, got input size [%s]%s",
                            layer, shp, training ? "" : " (eval without running statistics uses the batch's)");
    }
    nnm_status st;
    /* The fused op, unless this is eval without running stats on an empty
     * batch (the composed path handles it). */
    if (!(!training && count < 1 && use_batch) && (st = bn_fused(env, s, x, training, out)) != NNM_E_UNSUPPORTED)
        return st;
    norm_tmp k = {{0}, 0};
    st = NNM_OK;
    nnm_tensor *y = NULL;
    if (use_batch) {
        nnm_tensor *mean = NULL, *var = NULL;
        if ((st = norm_batch(env, &k, x, dims, nd, s->eps, &y, &mean, &var))) goto done;
        if (training && s->track) {
            /* num_batches_tracked += 1; factor = momentum or 1 / count (cumulative) */
            nnm_tensor **one = norm_slot(&k), **mc = norm_slot(&k), **vc = norm_slot(&k);
            const int64_t cshape[1] = {s->features};
            float nbt = 0;
            if ((st = h->op_full(env, 0, cshape, 1.0, one)) ||
                (st = h->op_update(env, s->num_batches, *one, 1.0, 1.0)) ||
                (st = h->tensor_read_f32(env, s->num_batches, &nbt, 1)))
                goto done;
            const double f = s->momentum_none ? 1.0 / (double)nbt : s->momentum;
            const double unbias = (double)count / (double)(count - 1);
            if (count > 0 && /* an empty batch's mean is NaN */
                ((st = h->op_reshape(env, mean, 1, cshape, mc)) || (st = h->op_reshape(env, var, 1, cshape, vc)) ||
                 (st = h->op_update(env, s->running_mean, *mc, 1.0 - f, f)) ||
                 (st = h->op_update(env, s->running_var, *vc, 1.0 - f, f * unbias))))
                goto done;
        }
    } else {
        nnm_tensor **mv = norm_slot(&k), **vv = norm_slot(&k), **xc = norm_slot(&k), **ve = norm_slot(&k),
                   **inv = norm_slot(&k);
        if ((st = norm_channel_view(env, s->running_mean, s->features, d->ndim, mv)) ||
            (st = norm_channel_view(env, s->running_var, s->features, d->ndim, vv)) ||
            (st = h->op_binary(env, NNM_BINARY_SUB, x, *mv, xc)) ||
            (st = h->op_unary(env, NNM_UNARY_ADD_SCALAR, *vv, s->eps, ve)) ||
            (st = h->op_unary(env, NNM_UNARY_POW, *ve, -0.5, inv)) || (st = h->op_binary(env, NNM_BINARY_MUL, *xc, *inv, &y)))
            goto done;
    }
    st = norm_affine(env, &k, s, y, d->ndim, out);
    y = NULL; /* norm_affine took it */
done:
    h->tensor_release(y);
    norm_tmp_release(h, &k);
    return st;
}

static nnm_status ln_forward(nnm_env *env, const norm_state *s, nnm_tensor *x, nnm_tensor **out) {
    const nnm_host *h = env->host;
    const nnm_tensor_desc *d = h->tensor_desc(x);
    const int32_t k_dims = (int32_t)s->n_shape;
    int ok = d->ndim >= k_dims;
    for (int32_t i = 0; ok && i < k_dims; i++) ok = d->shape[d->ndim - k_dims + i] == s->shape[i];
    if (!ok)
        return h->set_error(env, NNM_E_SHAPE, "layer_norm: the input's trailing dims do not match normalized_shape");
    /* the fused op (ABI 1.5: one backend kernel, one autograd node), unless
     * the host or the device's backend lacks it */
    if (NNM_HOST_HAS(h, op_layer_norm)) {
        const nnm_layer_norm_params p = {sizeof p, k_dims, s->eps};
        nnm_status fst = h->op_layer_norm(env, x, NULL, s->affine ? s->weight : NULL, s->affine ? s->bias : NULL, &p, out);
        if (fst != NNM_E_UNSUPPORTED) return fst;
    }
    int32_t dims[NNM_MAX_DIMS];
    for (int32_t i = 0; i < k_dims; i++) dims[i] = d->ndim - k_dims + i;
    norm_tmp k = {{0}, 0};
    nnm_tensor *y = NULL;
    nnm_status st = norm_batch(env, &k, x, dims, (uint32_t)k_dims, s->eps, &y, NULL, NULL);
    if (!st) {
        st = norm_affine(env, &k, s, y, d->ndim, out);
        y = NULL;
    }
    h->tensor_release(y);
    norm_tmp_release(h, &k);
    return st;
}

static nnm_status gn_forward(nnm_env *env, const norm_state *s, nnm_tensor *x, nnm_tensor **out) {
    const nnm_host *h = env->host;
    const nnm_tensor_desc *d = h->tensor_desc(x);
    if (d->ndim < 2 || d->shape[1] != s->features)
        return h->set_error(env, NNM_E_SHAPE, "group_norm: expected input [N, %lld, *]", (long long)s->features);
    const int32_t nd = d->ndim;
    int64_t gshape[3] = {d->shape[0], s->groups, -1}, xshape[NNM_MAX_DIMS];
    for (int32_t i = 0; i < nd; i++) xshape[i] = d->shape[i];
    if (nnm_lu_numel(d) == 0) gshape[2] = 0;
    norm_tmp k = {{0}, 0};
    nnm_tensor **xg = norm_slot(&k), **yg = norm_slot(&k), *y = NULL;
    const int32_t dim2 = 2;
    nnm_status st;
    if (!(st = h->op_reshape(env, x, 3, gshape, xg)) &&
        !(st = norm_batch(env, &k, *xg, &dim2, 1, s->eps, yg, NULL, NULL)) &&
        !(st = h->op_reshape(env, *yg, nd, xshape, &y))) {
        st = norm_affine(env, &k, s, y, nd, out);
        y = NULL;
    }
    h->tensor_release(y);
    norm_tmp_release(h, &k);
    return st;
}

/* F.instance_norm: x [N, C, *] (or [C, *], unbatched) normalised per
 * (sample, channel) over the spatial dims with the instance's statistics
 * (training, or without running statistics), else with the running ones;
 * training with running statistics updates them with the batch-norm rule
 * applied per instance and averaged over the samples. */
static nnm_status in_forward(nnm_env *env, const norm_state *s, nnm_tensor *x0, nnm_tensor **out) {
    const nnm_host *h = env->host;
    const char *layer = norm_names[s->kind];
    const nnm_tensor_desc *d0 = h->tensor_desc(x0);
    const int32_t ns = s->kind - NORM_IN1D + 1;
    if (d0->ndim != ns + 1 && d0->ndim != ns + 2)
        return h->set_error(env, NNM_E_SHAPE, "%s: expected %dD or %dD input, got %dD", layer, (int)ns + 1,
                            (int)ns + 2, (int)d0->ndim);
    norm_tmp k = {{0}, 0};
    nnm_status st = NNM_OK;
    nnm_tensor *x = x0, *y = NULL, *yb = NULL;
    const int unbatched = d0->ndim == ns + 1;
    int64_t shape[NNM_MAX_DIMS];
    if (unbatched) {
        shape[0] = 1;
        for (int32_t i = 0; i < d0->ndim; i++) shape[1 + i] = d0->shape[i];
        nnm_tensor **xb = norm_slot(&k);
        if ((st = h->op_reshape(env, x0, d0->ndim + 1, shape, xb))) goto done;
        x = *xb;
    }
    const nnm_tensor_desc *d = h->tensor_desc(x);
    const int32_t nd = d->ndim;
    if (d->shape[1] != s->features && (s->affine || s->track)) {
        st = h->set_error(env, NNM_E_SHAPE, "%s: expected input's size at dim=%d to match num_features (%lld), got %lld",
                          layer, unbatched ? 0 : 1, (long long)s->features, (long long)d->shape[1]);
        goto done;
    }
    const int training = h->is_training(env);
    const int use_input = training || !s->track;
    int32_t dims[NNM_MAX_DIMS];
    int64_t count = 1;
    for (int32_t i = 2; i < nd; i++) {
        dims[i - 2] = i;
        count *= d->shape[i];
    }
    if (use_input && count == 1) {
        st = h->set_error(env, NNM_E_SHAPE, "%s: expected more than 1 spatial element when training, got input %s",
                          layer, nnm_lu_shape_str(d0, (char[128]){0}, 128));
        goto done;
    }
    if (use_input) {
        nnm_tensor *mean = NULL, *var = NULL;
        if ((st = norm_batch(env, &k, x, dims, (uint32_t)(nd - 2), s->eps, &yb, &mean, &var))) goto done;
        if (training && s->track && count > 0) {
            /* PyTorch's _InstanceNorm never counts num_batches_tracked */
            nnm_tensor **mm = norm_slot(&k), **vm = norm_slot(&k), **mc = norm_slot(&k), **vc = norm_slot(&k);
            const int64_t cshape[1] = {s->features};
            const int32_t dim0 = 0;
            if ((st = h->op_reduce(env, NNM_REDUCE_MEAN, mean, &dim0, 1, 0, mm)) ||
                (st = h->op_reduce(env, NNM_REDUCE_MEAN, var, &dim0, 1, 0, vm)) ||
                (st = h->op_reshape(env, *mm, 1, cshape, mc)) || (st = h->op_reshape(env, *vm, 1, cshape, vc)))
                goto done;
            const double f = s->momentum;
            const double unbias = (double)count / (double)(count - 1);
            if ((st = h->op_update(env, s->running_mean, *mc, 1.0 - f, f)) ||
                (st = h->op_update(env, s->running_var, *vc, 1.0 - f, f * unbias)))
                goto done;
        }
    } else {
        nnm_tensor **mv = norm_slot(&k), **vv = norm_slot(&k), **xc = norm_slot(&k), **ve = norm_slot(&k),
                   **inv = norm_slot(&k);
        if ((st = norm_channel_view(env, s->running_mean, s->features, nd, mv)) ||
            (st = norm_channel_view(env, s->running_var, s->features, nd, vv)) ||
            (st = h->op_binary(env, NNM_BINARY_SUB, x, *mv, xc)) ||
            (st = h->op_unary(env, NNM_UNARY_ADD_SCALAR, *vv, s->eps, ve)) ||
            (st = h->op_unary(env, NNM_UNARY_POW, *ve, -0.5, inv)) || (st = h->op_binary(env, NNM_BINARY_MUL, *xc, *inv, &yb)))
            goto done;
    }
    st = norm_affine(env, &k, s, yb, nd, unbatched ? &y : out);
    yb = NULL; /* norm_affine took it */
    if (!st && unbatched) {
        st = h->op_reshape(env, y, d0->ndim, d0->shape, out);
        h->tensor_release(y);
        y = NULL;
    }
done:
    h->tensor_release(yb);
    h->tensor_release(y);
    norm_tmp_release(h, &k);
    return st;
}

/* F.local_response_norm: x / (k + alpha * avg over `size` channels of x^2)^beta,
 * the average taken over the zero-padded channel window (size // 2 before,
 * (size - 1) // 2 after) with a divisor of size. */
static nnm_status lrn_forward(nnm_env *env, const norm_state *s, nnm_tensor *x, nnm_tensor **out) {
    const nnm_host *h = env->host;
    const nnm_tensor_desc *d = h->tensor_desc(x);
    if (d->ndim < 3)
        return h->set_error(env, NNM_E_SHAPE, "local_response_norm: expected 3D or higher dimensionality input (got %d dimensions)",
                            (int)d->ndim);
    if (nnm_lu_numel(d) == 0) {
        h->tensor_retain(x);
        *out = x;
        return NNM_OK;
    }
    norm_tmp k = {{0}, 0};
    const int64_t n = d->shape[0], c = d->shape[1], l = nnm_lu_numel(d) / (n * c);
    const int64_t before = s->lrn_size / 2, after = (s->lrn_size - 1) / 2;
    int64_t v4[4] = {n, 1, c, l}, zb[4] = {n, 1, before, l}, za[4] = {n, 1, after, l};
    nnm_tensor **sq = norm_slot(&k), **sq4 = norm_slot(&k), **z0 = norm_slot(&k), **z1 = norm_slot(&k),
               **cat = norm_slot(&k), **pooled = norm_slot(&k), **div = norm_slot(&k), **t1 = norm_slot(&k),
               **t2 = norm_slot(&k), **t3 = norm_slot(&k);
    nnm_status st;
    if ((st = h->op_binary(env, NNM_BINARY_MUL, x, x, sq)) || (st = h->op_reshape(env, *sq, 4, v4, sq4)) ||
        (before && (st = h->op_full(env, 4, zb, 0.0, z0))) || (after && (st = h->op_full(env, 4, za, 0.0, z1))))
        goto done;
    nnm_tensor *parts[3];
    uint32_t np = 0;
    if (before) parts[np++] = *z0;
    parts[np++] = *sq4;
    if (after) parts[np++] = *z1;
    nnm_pool_params p;
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    p.op = NNM_POOL_AVG;
    p.n_spatial = 2;
    p.count_include_pad = 1;
    p.kernel[0] = s->lrn_size;
    p.kernel[1] = 1;
    p.stride[0] = p.stride[1] = p.dilation[0] = p.dilation[1] = 1;
    if ((st = h->op_concat(env, parts, np, 2, cat)) || (st = h->op_pool(env, *cat, &p, pooled)) ||
        (st = h->op_reshape(env, *pooled, d->ndim, d->shape, div)) ||
        (st = h->op_unary(env, NNM_UNARY_SCALE, *div, s->alpha, t1)) ||
        (st = h->op_unary(env, NNM_UNARY_ADD_SCALAR, *t1, s->k, t2)) ||
        (st = h->op_unary(env, NNM_UNARY_POW, *t2, s->beta, t3)))
        goto done;
    st = h->op_binary(env, NNM_BINARY_DIV, x, *t3, out);
done:
    norm_tmp_release(h, &k);
    return st;
}

static nnm_status norm_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in, nnm_tensor **out,
                               uint32_t n_out) {
    const nnm_host *h = env->host;
    const norm_state *s = self;
    if (n_in != 1 || n_out != 1 || !in[0])
        return h->set_error(env, NNM_E_SHAPE, "%s takes 1 input and 1 output", norm_names[s->kind]);
    switch (s->kind) {
    case NORM_LN: return ln_forward(env, s, in[0], out);
    case NORM_GN: return gn_forward(env, s, in[0], out);
    case NORM_IN1D:
    case NORM_IN2D:
    case NORM_IN3D: return in_forward(env, s, in[0], out);
    case NORM_LRN: return lrn_forward(env, s, in[0], out);
    default: return bn_forward(env, s, in[0], out);
    }
}

static int norm_extra_repr(void *self, char *buf, size_t cap) {
    const norm_state *s = self;
    char eps[40], mom[40], shp[200];
    nnm_lu_pyfloat(eps, sizeof eps, s->eps);
    const char *tf[2] = {"False", "True"};
    switch (s->kind) {
    case NORM_LN: {
        size_t n = (size_t)snprintf(shp, sizeof shp, "(");
        for (size_t i = 0; i < s->n_shape && n < sizeof shp; i++)
            n += (size_t)snprintf(shp + n, sizeof shp - n, i ? ", %lld" : "%lld", (long long)s->shape[i]);
        if (n < sizeof shp) snprintf(shp + n, sizeof shp - n, s->n_shape == 1 ? ",)" : ")");
        return snprintf(buf, cap, "%s, eps=%s, elementwise_affine=%s", shp, eps, tf[s->affine != 0]);
    }
    case NORM_GN:
        return snprintf(buf, cap, "%lld, %lld, eps=%s, affine=%s", (long long)s->groups, (long long)s->features, eps,
                        tf[s->affine != 0]);
    case NORM_LRN: {
        char a[40], b[40], kk[40];
        if (s->alpha_int) snprintf(a, sizeof a, "%lld", (long long)s->alpha);
        else nnm_lu_pyfloat(a, sizeof a, s->alpha);
        if (s->beta_int) snprintf(b, sizeof b, "%lld", (long long)s->beta);
        else nnm_lu_pyfloat(b, sizeof b, s->beta);
        if (s->k_int) snprintf(kk, sizeof kk, "%lld", (long long)s->k);
        else nnm_lu_pyfloat(kk, sizeof kk, s->k);
        return snprintf(buf, cap, "%lld, alpha=%s, beta=%s, k=%s", (long long)s->lrn_size, a, b, kk);
    }
    default:
        if (s->momentum_none) snprintf(mom, sizeof mom, "None");
        else nnm_lu_pyfloat(mom, sizeof mom, s->momentum);
        return snprintf(buf, cap, "%lld, eps=%s, momentum=%s, affine=%s, track_running_stats=%s",
                        (long long)s->features, eps, mom, tf[s->affine != 0], tf[s->track != 0]);
    }
}

static const nnm_config_field bn_config[] = {
    {"num_features", NNM_CONFIG_INT, NNM_CONFIG_REQUIRED, "C of the input [N, C, ...]"},
    {"eps", NNM_CONFIG_FLOAT, 0, "added to the variance, default 1e-5"},
    {"momentum", NNM_CONFIG_ANY, 0, "running-stats factor, default 0.1; \"none\": cumulative average"},
    {"affine", NNM_CONFIG_BOOL, 0, "learnable weight and bias, default true"},
    {"track_running_stats", NNM_CONFIG_BOOL, 0, "keep running mean/var, default true"},
};
static const nnm_config_field in_config[] = {
    {"num_features", NNM_CONFIG_INT, NNM_CONFIG_REQUIRED, "C of the input [N, C, ...]"},
    {"eps", NNM_CONFIG_FLOAT, 0, "added to the variance, default 1e-5"},
    {"momentum", NNM_CONFIG_ANY, 0, "running-stats factor, default 0.1; \"none\": cumulative average"},
    {"affine", NNM_CONFIG_BOOL, 0, "learnable weight and bias, default false"},
    {"track_running_stats", NNM_CONFIG_BOOL, 0, "keep running mean/var, default false"},
};
static const nnm_config_field lrn_config[] = {
    {"size", NNM_CONFIG_INT, NNM_CONFIG_REQUIRED, "channels in the window"},
    {"alpha", NNM_CONFIG_FLOAT, 0, "multiplicative factor, default 1e-4"},
    {"beta", NNM_CONFIG_FLOAT, 0, "exponent, default 0.75"},
    {"k", NNM_CONFIG_FLOAT, 0, "additive factor, default 1.0"},
};
static const nnm_config_field ln_config[] = {
    {"normalized_shape", NNM_CONFIG_INT_OR_INTS, NNM_CONFIG_REQUIRED, "trailing dims to normalise over"},
    {"eps", NNM_CONFIG_FLOAT, 0, "added to the variance, default 1e-5"},
    {"elementwise_affine", NNM_CONFIG_BOOL, 0, "learnable weight and bias, default true"},
};
static const nnm_config_field gn_config[] = {
    {"num_groups", NNM_CONFIG_INT, NNM_CONFIG_REQUIRED, "groups the channels are split into"},
    {"num_channels", NNM_CONFIG_INT, NNM_CONFIG_REQUIRED, "C of the input [N, C, ...]"},
    {"eps", NNM_CONFIG_FLOAT, 0, "added to the variance, default 1e-5"},
    {"affine", NNM_CONFIG_BOOL, 0, "learnable per-channel weight and bias, default true"},
};

#define NORM_LAYER(var, lname, display, create_fn, cfg)                                               \
    static const nnm_layer_vtable var = {                                                             \
        .struct_size = sizeof(nnm_layer_vtable),                                                      \
        .name = lname,                                                                                \
        .version_major = 1,                                                                           \
        .version_patch = 3, /* 1.0.1: fused op_batch_norm; 1.0.2: num_batches_tracked i64; 1.0.3: eval without running stats refuses one value per channel, as PyTorch */ \
        .n_inputs = 1,                                                                                \
        .n_outputs = 1,                                                                               \
        .create = create_fn,                                                                          \
        .destroy = norm_destroy,                                                                      \
        .forward = norm_forward,                                                                      \
        .extra_repr = norm_extra_repr,                                                                \
        .config_fields = cfg,                                                                         \
        .n_config_fields = sizeof cfg / sizeof cfg[0],                                                \
        .display_name = display,                                                                      \
    }

NORM_LAYER(bn1d_layer, "batch_norm1d", "BatchNorm1d", bn1d_create, bn_config);
NORM_LAYER(bn2d_layer, "batch_norm2d", "BatchNorm2d", bn2d_create, bn_config);
NORM_LAYER(ln_layer, "layer_norm", "LayerNorm", ln_create, ln_config);
NORM_LAYER(gn_layer, "group_norm", "GroupNorm", gn_create, gn_config);
NORM_LAYER(bn3d_layer, "batch_norm3d", "BatchNorm3d", bn3d_create, bn_config);
NORM_LAYER(in1d_layer, "instance_norm1d", "InstanceNorm1d", in1d_create, in_config);
NORM_LAYER(in2d_layer, "instance_norm2d", "InstanceNorm2d", in2d_create, in_config);
NORM_LAYER(in3d_layer, "instance_norm3d", "InstanceNorm3d", in3d_create, in_config);
NORM_LAYER(lrn_layer, "local_response_norm", "LocalResponseNorm", lrn_create, lrn_config);

static const nnm_layer_vtable *const norm_layers[] = {&bn1d_layer, &bn2d_layer, &ln_layer,   &gn_layer,  &bn3d_layer,
                                                      &in1d_layer, &in2d_layer, &in3d_layer, &lrn_layer};

static const nnm_plugin_desc norm_plugin = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
    .name = "normalization",
    .description = "BatchNorm1d/2d/3d, LayerNorm, GroupNorm, InstanceNorm1d/2d/3d, LocalResponseNorm",
    .n_layers = sizeof norm_layers / sizeof norm_layers[0],
    .layers = norm_layers,
    .domain = NNM_DOMAIN_NNMOD, /* nnmod's own library: the plain names */
};

NNM_PLUGIN_DEFINE(norm_plugin)
