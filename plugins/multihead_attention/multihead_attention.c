/* plugins/multihead_attention/multihead_attention.c - the
 * "multihead_attention" layer (torch.nn.MultiheadAttention), so that a
 * transformer encoder block can be assembled from a manifest.
 *
 * Config (PyTorch's names and defaults):
 *   embed_dim    int, required, > 0
 *   num_heads    int, required, > 0, divides embed_dim
 *   dropout      float, default 0.0, in [0, 1): on the attention weights, in
 *                train mode only, masks from the call context's generator
 *   bias         bool, default true: in_proj_bias (and out_proj's bias)
 *   batch_first  bool, default false: inputs [N, L, E] instead of [L, N, E]
 *   is_causal    bool, default false (nnmod's; PyTorch 1.13 takes an
 *                attn_mask argument instead): query i attends to keys j <= i
 * kdim, vdim, add_bias_kv and add_zero_attn are not supported (refused by the
 * schema).
 *
 * State, as PyTorch's state_dict names it:
 *   in_proj_weight [3E, E]  xavier_uniform_, as PyTorch
 *   in_proj_bias   [3E]     zeros (bias only)
 *   out_proj.*              a CHILD module named "out_proj": a linear layer
 *                           E -> E (with bias iff bias), as PyTorch's out_proj
 *                           submodule; the manifest lists it (examples/manifests/
 *                           transformer_encoder_block.json), finalize checks it
 *
 * Inputs: query, key, value ([L, N, E], [S, N, E], [S, N, E]; batch_first:
 * [N, L, E], ...), and optionally key_padding_mask [N, S]: BOOL (true: that
 * key is ignored) or f32 (added to the scores), as PyTorch's.
 * Outputs: attn_output (the query's shape); when the caller asks for two, also
 * the attention weights averaged over heads [N, L, S] (PyTorch's
 * need_weights=True, average_attn_weights=True; after dropout, as PyTorch).
 *
 * Forward is host ops only (ABI 1.3: op_slice, op_permute, op_bmm,
 * op_softmax, op_rand), and out_proj runs through the call path, so the
 * gradient and every device come from the runtime (a key padding mask of
 * BOOL dtype and the causal mask are built on the CPU).
 */
#include <nnmod/plugin.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layer_util.h"

typedef struct mha_state {
    int64_t embed_dim, num_heads, head_dim;
    double dropout;
    int bias, batch_first, is_causal;
    nnm_tensor *in_proj_weight; /* borrowed: owned by the module */
    nnm_tensor *in_proj_bias;   /* borrowed; NULL without bias */
} mha_state;

#define MHA_MAX_DIM ((int64_t)1 << 20)

static nnm_status mha_create(nnm_env *env, void **self) {
    const nnm_host *h = env->host;
    *self = NULL;
    mha_state s = {0};
    nnm_status st = h->config_int(env, "embed_dim", NULL, &s.embed_dim);
    if (st == NNM_OK)
        st = h->config_int(env, "num_heads", NULL, &s.num_heads);
    const double d0 = 0.0;
    const int yes = 1, no = 0;
    if (st == NNM_OK)
        st = h->config_float(env, "dropout", &d0, &s.dropout);
    if (st == NNM_OK)
        st = h->config_bool(env, "bias", &yes, &s.bias);
    if (st == NNM_OK)
        st = h->config_bool(env, "batch_first", &no, &s.batch_first);
    if (st == NNM_OK)
        st = h->config_bool(env, "is_causal", &no, &s.is_causal);
    if (st != NNM_OK)
        return st;
    if (s.embed_dim <= 0 || s.embed_dim > MHA_MAX_DIM)
        return h->set_error(env, NNM_E_INVALID, "embed_dim must be in [1, %lld], got %lld",
                            (long long)MHA_MAX_DIM, (long long)s.embed_dim);
    if (s.num_heads <= 0 || s.embed_dim % s.num_heads != 0)
        return h->set_error(env, NNM_E_INVALID,
                            "embed_dim must be divisible by num_heads (embed_dim %lld, "
                            "num_heads %lld)",
                            (long long)s.embed_dim, (long long)s.num_heads);
    if (!(s.dropout >= 0.0 && s.dropout < 1.0))
        return h->set_error(env, NNM_E_INVALID, "dropout must be in [0, 1), got %g", s.dropout);
    if (!NNM_HOST_HAS(h, op_bmm) || !NNM_HOST_HAS(h, op_permute) || !NNM_HOST_HAS(h, op_slice) ||
        !NNM_HOST_HAS(h, op_softmax) || !NNM_HOST_HAS(h, op_rand))
        return h->set_error(env, NNM_E_VERSION,
                            "multihead_attention needs the ABI 1.3 host ops (op_bmm, op_permute, "
                            "op_slice, op_softmax, op_rand); this host is ABI %u.%u",
                            (unsigned)h->abi_major, (unsigned)h->abi_minor);
    s.head_dim = s.embed_dim / s.num_heads;
    s.bias = s.bias != 0;
    const int64_t E = s.embed_dim;
    const double bound = sqrt(6.0 / (double)(E + 3 * E)); /* xavier_uniform_ of [3E, E] */
    const int64_t wshape[2] = {3 * E, E};
    st = h->param_new(env, "in_proj_weight", 2, wshape, NNM_INIT_UNIFORM, -bound, bound,
                      &s.in_proj_weight);
    if (st == NNM_OK && s.bias) {
        const int64_t bshape[1] = {3 * E};
        st = h->param_new(env, "in_proj_bias", 1, bshape, NNM_INIT_ZEROS, 0.0, 0.0,
                          &s.in_proj_bias);
    }
    if (st != NNM_OK)
        return st;
    mha_state *p = malloc(sizeof *p);
    if (p == NULL)
        return h->set_error(env, NNM_E_NOMEM, "out of memory for the attention layer's state");
    *p = s;
    *self = p;
    return NNM_OK;
}

static void mha_destroy(void *self) {
    free(self);
}

/* The index of the child named out_proj, or -1 after setting a message. */
static int32_t mha_out_proj(nnm_env *env) {
    const nnm_host *h = env->host;
    const uint32_t n = h->child_count(env);
    for (uint32_t i = 0; i < n; i++) {
        const char *name = NULL;
        int32_t ni = 0, no = 0;
        if (h->child_info(env, i, &name, &ni, &no) == NNM_OK && name != NULL &&
            strcmp(name, "out_proj") == 0) {
            if (ni != 1 && ni != NNM_ARITY_ANY) {
                h->set_error(env, NNM_E_INVALID,
                             "child 'out_proj' takes %d inputs; it must be a linear layer "
                             "(embed_dim -> embed_dim)",
                             (int)ni);
                return -1;
            }
            if (n != 1) {
                h->set_error(env, NNM_E_INVALID,
                             "multihead_attention has one child, 'out_proj'; it has %u",
                             (unsigned)n);
                return -1;
            }
            return (int32_t)i;
        }
    }
    h->set_error(env, NNM_E_INVALID,
                 "multihead_attention needs a child named 'out_proj' (linear, embed_dim -> "
                 "embed_dim), as PyTorch's out_proj submodule");
    return -1;
}

static nnm_status mha_finalize(nnm_env *env, void *self) {
    (void)self;
    return mha_out_proj(env) < 0 ? NNM_E_INVALID : NNM_OK;
}

/* A tiny arena of intermediate tensors, released together. */
typedef struct mha_tmp {
    nnm_tensor *t[48];
    int n;
} mha_tmp;

static nnm_tensor *keep(mha_tmp *a, nnm_tensor *t) {
    if (t != NULL && a->n < (int)(sizeof a->t / sizeof a->t[0]))
        a->t[a->n++] = t;
    return t;
}

static void release_all(const nnm_host *h, mha_tmp *a) {
    for (int i = 0; i < a->n; i++)
        h->tensor_release(a->t[i]);
    a->n = 0;
}

#define TRY(expr)                                                                        \
    do {                                                                                 \
        st = (expr);                                                                     \
        if (st != NNM_OK)                                                                \
            goto done;                                                                   \
    } while (0)

/* x [N, T, E] projected by rows [k*E, (k+1)*E) of in_proj, split into heads:
 * [N, H, T, D]. */
static nnm_status mha_project(nnm_env *env, const mha_state *s, mha_tmp *a, nnm_tensor *x,
                              int64_t k, nnm_tensor **out) {
    const nnm_host *h = env->host;
    nnm_status st;
    nnm_tensor *w = NULL, *b = NULL, *y = NULL, *y4 = NULL;
    const int64_t E = s->embed_dim;
    TRY(h->op_slice(env, s->in_proj_weight, 0, k * E, E, &w));
    keep(a, w);
    if (s->in_proj_bias != NULL) {
        TRY(h->op_slice(env, s->in_proj_bias, 0, k * E, E, &b));
        keep(a, b);
    }
    TRY(h->op_linear(env, x, w, b, &y));
    keep(a, y);
    const nnm_tensor_desc *d = h->tensor_desc(y);
    const int64_t shape[4] = {d->shape[0], d->shape[1], s->num_heads, s->head_dim};
    TRY(h->op_reshape(env, y, 4, shape, &y4));
    keep(a, y4);
    const int32_t perm[4] = {0, 2, 1, 3};
    TRY(h->op_permute(env, y4, perm, 4, out));
    keep(a, *out);
done:
    return st;
}

/* The additive mask [N or 1, 1, L, S] (0 or -inf) from is_causal and a BOOL
 * key padding mask, or *out NULL when there is none. A f32 key padding mask
 * is returned reshaped to [N, 1, 1, S] (PyTorch adds a float mask). */
static nnm_status mha_mask(nnm_env *env, const mha_state *s, mha_tmp *a, nnm_tensor *kpm,
                           int64_t N, int64_t L, int64_t S, nnm_tensor **out) {
    const nnm_host *h = env->host;
    nnm_status st = NNM_OK;
    *out = NULL;
    if (kpm == NULL && !s->is_causal)
        return NNM_OK;
    const nnm_tensor_desc *kd = kpm != NULL ? h->tensor_desc(kpm) : NULL;
    if (kd != NULL) {
        if (kd->ndim != 2 || kd->shape[0] != N || kd->shape[1] != S)
            return h->set_error(env, NNM_E_SHAPE,
                                "key_padding_mask must be [N, S] = [%lld, %lld]", (long long)N,
                                (long long)S);
        if (nnm_lu_is_f32(kd) && !s->is_causal) {
            const int64_t shape[4] = {N, 1, 1, S};
            st = h->op_reshape(env, kpm, 4, shape, out);
            keep(a, *out);
            return st;
        }
        if (kd->dtype.code != NNM_DTYPE_BOOL && !nnm_lu_is_f32(kd))
            return h->set_error(env, NNM_E_DTYPE,
                                "key_padding_mask must be bool (true: ignore) or f32 (added)");
        if (kd->device.type != NNM_DEVICE_CPU || !nnm_lu_is_contiguous(kd))
            return h->set_error(env, NNM_E_UNSUPPORTED,
                                "key_padding_mask: a contiguous CPU tensor is needed");
    }
    if (h->device(env).type != NNM_DEVICE_CPU)
        return h->set_error(env, NNM_E_UNSUPPORTED,
                            "multihead_attention builds its masks on the CPU only");
    const int64_t n = kd != NULL ? N : 1;
    const int64_t shape[4] = {n, 1, L, S};
    TRY(h->tensor_new(env, 4, shape, NNM_F32, out));
    keep(a, *out);
    float *m = nnm_lu_data(h->tensor_desc(*out));
    for (int64_t b = 0; b < n; b++)
        for (int64_t i = 0; i < L; i++)
            for (int64_t j = 0; j < S; j++) {
                float v = (s->is_causal && j > i) ? -INFINITY : 0.0f;
                if (kd != NULL) {
                    if (kd->dtype.code == NNM_DTYPE_BOOL)
                        v = ((const uint8_t *)nnm_lu_data(kd))[b * S + j] ? -INFINITY : v;
                    else
                        v += ((const float *)nnm_lu_data(kd))[b * S + j];
                }
                m[(b * L + i) * S + j] = v;
            }
done:
    return st;
}

static nnm_status mha_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in,
                              nnm_tensor **out, uint32_t n_out) {
    const nnm_host *h = env->host;
    const mha_state *s = self;
    mha_tmp a = {{0}, 0};
    nnm_status st = NNM_OK;
    if (s == NULL)
        return h->set_error(env, NNM_E_STATE, "multihead_attention: forward without state");
    if (n_in < 3 || n_in > 4 || n_out < 1 || n_out > 2 || in == NULL || out == NULL)
        return h->set_error(env, NNM_E_SHAPE,
                            "multihead_attention takes query, key, value[, key_padding_mask] "
                            "and returns attn_output[, attn_weights]; got %u inputs and %u "
                            "outputs",
                            (unsigned)n_in, (unsigned)n_out);
    for (uint32_t i = 0; i < n_in; i++)
        if (in[i] == NULL)
            return h->set_error(env, NNM_E_INVALID, "input %u is NULL", (unsigned)i);
    const int32_t op = mha_out_proj(env);
    if (op < 0)
        return NNM_E_INVALID;
    const int64_t E = s->embed_dim;
    const char *names[3] = {"query", "key", "value"};
    for (int i = 0; i < 3; i++) {
        const nnm_tensor_desc *d = h->tensor_desc(in[i]);
        if (d->ndim != 3 || d->shape[2] != E)
            return h->set_error(env, NNM_E_SHAPE,
                                "%s must be %s with E = %lld (%d dims given)", names[i],
                                s->batch_first ? "[N, L, E]" : "[L, N, E]", (long long)E,
                                (int)d->ndim);
    }
    const int32_t swap[3] = {1, 0, 2};
    nnm_tensor *x[3];
    for (int i = 0; i < 3; i++) { /* to [N, T, E] */
        if (s->batch_first) {
            x[i] = in[i];
        } else {
            TRY(h->op_permute(env, in[i], swap, 3, &x[i]));
            keep(&a, x[i]);
        }
    }
    const nnm_tensor_desc *qd = h->tensor_desc(x[0]), *kd = h->tensor_desc(x[1]),
                          *vd = h->tensor_desc(x[2]);
    const int64_t N = qd->shape[0], L = qd->shape[1], S = kd->shape[1];
    if (kd->shape[0] != N || vd->shape[0] != N || vd->shape[1] != S) {
        st = h->set_error(env, NNM_E_SHAPE,
                            "query, key and value disagree: batch %lld, %lld, %lld; key and "
                            "value lengths %lld, %lld",
                            (long long)N, (long long)kd->shape[0], (long long)vd->shape[0],
                            (long long)S, (long long)vd->shape[1]);
        goto done;
    }

    nnm_tensor *q = NULL, *k = NULL, *v = NULL, *qs = NULL, *kt = NULL, *sc = NULL, *mask = NULL,
               *scm = NULL, *w = NULL, *wd = NULL, *o = NULL, *o2 = NULL, *o3 = NULL, *o4 = NULL;
    TRY(mha_project(env, s, &a, x[0], 0, &q));
    TRY(mha_project(env, s, &a, x[1], 1, &k));
    TRY(mha_project(env, s, &a, x[2], 2, &v));
    TRY(h->op_unary(env, NNM_UNARY_SCALE, q, 1.0 / sqrt((double)s->head_dim), &qs));
    keep(&a, qs);
    const int32_t tr[4] = {0, 1, 3, 2};
    TRY(h->op_permute(env, k, tr, 4, &kt));
    keep(&a, kt);
    TRY(h->op_bmm(env, qs, kt, &sc)); /* [N, H, L, S] */
    keep(&a, sc);
    TRY(mha_mask(env, s, &a, n_in == 4 ? in[3] : NULL, N, L, S, &mask));
    if (mask != NULL) {
        TRY(h->op_binary(env, NNM_BINARY_ADD, sc, mask, &scm));
        keep(&a, scm);
    } else {
        scm = sc;
    }
    TRY(h->op_softmax(env, scm, -1, 0, &w));
    keep(&a, w);
    if (s->dropout > 0.0 && h->is_training(env)) {
        const nnm_tensor_desc *d = h->tensor_desc(w);
        nnm_tensor *m = NULL;
        TRY(h->op_rand(env, NNM_RAND_BERNOULLI, 1.0 - s->dropout, 1.0 / (1.0 - s->dropout),
                       d->ndim, d->shape, &m));
        keep(&a, m);
        TRY(h->op_binary(env, NNM_BINARY_MUL, w, m, &wd));
        keep(&a, wd);
    } else {
        wd = w;
    }
    TRY(h->op_bmm(env, wd, v, &o)); /* [N, H, L, D] */
    keep(&a, o);
    const int32_t back[4] = {0, 2, 1, 3};
    TRY(h->op_permute(env, o, back, 4, &o2)); /* [N, L, H, D] */
    keep(&a, o2);
    const int64_t shape3[3] = {N, L, E};
    TRY(h->op_reshape(env, o2, 3, shape3, &o3));
    keep(&a, o3);
    if (!s->batch_first) {
        TRY(h->op_permute(env, o3, swap, 3, &o4));
        keep(&a, o4);
    } else {
        o4 = o3;
    }
    TRY(h->child_call(env, (uint32_t)op, &o4, 1, &out[0], 1));
    if (n_out == 2) {
        const int32_t heads[1] = {1};
        st = h->op_reduce(env, NNM_REDUCE_MEAN, wd, heads, 1, 0, &out[1]);
        if (st != NNM_OK) {
            h->tensor_release(out[0]);
            out[0] = NULL;
        }
    }
done:
    release_all(h, &a);
    return st;
}

static int mha_extra_repr(void *self, char *buf, size_t cap) {
    (void)self; /* PyTorch's MultiheadAttention prints only its out_proj child */
    return snprintf(buf, cap, "%s", "");
}

static const nnm_config_field mha_config[] = {
    {"embed_dim", NNM_CONFIG_INT, NNM_CONFIG_REQUIRED, "model width E"},
    {"num_heads", NNM_CONFIG_INT, NNM_CONFIG_REQUIRED, "heads; divides embed_dim"},
    {"dropout", NNM_CONFIG_FLOAT, 0, "dropout on the attention weights in train mode (0.0)"},
    {"bias", NNM_CONFIG_BOOL, 0, "in_proj_bias and out_proj.bias (true)"},
    {"batch_first", NNM_CONFIG_BOOL, 0, "inputs [N, L, E] instead of [L, N, E] (false)"},
    {"is_causal", NNM_CONFIG_BOOL, 0, "query i attends to keys j <= i only (false)"},
};

static const nnm_layer_vtable mha_layer = {
    .struct_size = sizeof(nnm_layer_vtable),
    .flags = NNM_LAYER_CONTAINER,
    .name = "multihead_attention",
    .display_name = "MultiheadAttention",
    .version_major = 1,
    .version_minor = 0,
    .version_patch = 0,
    .n_inputs = NNM_ARITY_ANY,
    .n_outputs = NNM_ARITY_ANY,
    .create = mha_create,
    .destroy = mha_destroy,
    .forward = mha_forward,
    .extra_repr = mha_extra_repr,
    .finalize = mha_finalize,
    .config_fields = mha_config,
    .n_config_fields = sizeof mha_config / sizeof mha_config[0],
};

static const nnm_layer_vtable *const mha_layers[] = {&mha_layer};

static const nnm_plugin_desc mha_plugin = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
    .name = "multihead_attention",
    .description = "Multi-head attention (torch.nn.MultiheadAttention) from host ops",
    .n_layers = 1,
    .n_backends = 0,
    .layers = mha_layers,
    .backends = NULL,
};

NNM_PLUGIN_DEFINE(mha_plugin)
