/* plugins/multihead_attention/multihead_attention.c - the
 * "multihead_attention" layer (torch.nn.MultiheadAttention 1.13), so that a
 * transformer block can be assembled from a manifest and loaded strictly from
 * PyTorch's state_dict.
 *
 * Config (PyTorch's names and defaults):
 *   embed_dim     int, required, > 0
 *   num_heads     int, required, > 0, divides embed_dim
 *   dropout       float, default 0.0, in [0, 1): on the attention weights, in
 *                 train mode only, masks from the call context's generator
 *   bias          bool, default true: in_proj_bias (and out_proj's bias)
 *   add_bias_kv   bool, default false: bias_k, bias_v appended to the keys
 *                 and values (after projection) along the sequence
 *   add_zero_attn bool, default false: a zero key and value appended (after
 *                 the head split)
 *   kdim, vdim    int, default embed_dim: the key's and value's features
 *   batch_first   bool, default false: inputs [N, L, E] instead of [L, N, E]
 *   is_causal     bool, default false (nnmod's; PyTorch 1.13 takes an
 *                 attn_mask argument instead): attn_mask = triu(ones(L, S), 1)
 *
 * State, as PyTorch's state_dict names it:
 *   in_proj_weight [3E, E]     xavier_uniform_; when kdim == vdim == E
 *   q_proj_weight  [E, E]      } xavier_uniform_ each, instead of
 *   k_proj_weight  [E, kdim]   } in_proj_weight, when kdim or vdim
 *   v_proj_weight  [E, vdim]   } differs from E
 *   in_proj_bias   [3E]        zeros (bias only)
 *   bias_k, bias_v [1, 1, E]   xavier_normal_ (add_bias_kv only)
 *   out_proj.*                 a CHILD module named "out_proj": a linear layer
 *                              E -> E (with bias iff bias), as PyTorch's out_proj
 *                              submodule; the manifest lists it (examples/
 *                              manifests/transformer_encoder_block.json),
 *                              finalize checks it
 *
 * Inputs, positional: query, key, value, [key_padding_mask, [attn_mask]]:
 * query [L, N, E], key [S, N, kdim], value [S, N, vdim] (batch_first:
 * [N, L, E], ...; unbatched: [L, E], [S, kdim], [S, vdim], whatever
 * batch_first says); the masks as mha_masks.c says. A mask input with 0
 * elements is absent (PyTorch's None), so attn_mask alone is q, k, v, an
 * empty tensor, attn_mask.
 * Outputs: attn_output (the query's shape); when the caller asks for two, also
 * the attention weights averaged over heads, [N, L, S'] ([L, S'] unbatched;
 * S' counts the keys add_bias_kv and add_zero_attn append), as PyTorch's
 * need_weights=True, average_attn_weights=True (after dropout, as PyTorch).
 *
 * Forward is host ops only (ABI 1.3: op_slice, op_permute, op_bmm,
 * op_softmax, op_rand, op_concat, op_full), and out_proj runs through the
 * call path, so the gradient and every device come from the runtime (the
 * boolean masks and the causal mask are built on the CPU). Inference (grad
 * mode off, no dropout in effect, no appended keys, one output, no key
 * padding mask nor boolean attn_mask) takes a fused path, as PyTorch's fast
 * path does: one in-projection gemm for self-attention and host->op_attention
 * (ABI 1.5) over the packed heads (mha_forward_fused); its values agree with
 * the composed path's to rounding.
 */
#include "mha.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layer_util.h"

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
        st = h->config_bool(env, "add_bias_kv", &no, &s.add_bias_kv);
    if (st == NNM_OK)
        st = h->config_bool(env, "add_zero_attn", &no, &s.add_zero_attn);
    if (st == NNM_OK)
        st = h->config_int(env, "kdim", &s.embed_dim, &s.kdim);
    if (st == NNM_OK)
        st = h->config_int(env, "vdim", &s.embed_dim, &s.vdim);
    if (st == NNM_OK)
        st = h->config_bool(env, "batch_first", &no, &s.batch_first);
    if (st == NNM_OK)
        st = h->config_bool(env, "is_causal", &no, &s.is_causal);
    if (st != NNM_OK)
        return st;
    const char *dim_names[3] = {"embed_dim", "kdim", "vdim"};
    const int64_t dims[3] = {s.embed_dim, s.kdim, s.vdim};
    for (int i = 0; i < 3; i++)
        if (dims[i] <= 0 || dims[i] > MHA_MAX_DIM)
            return h->set_error(env, NNM_E_INVALID, "%s must be in [1, %lld], got %lld",
                                dim_names[i], (long long)MHA_MAX_DIM, (long long)dims[i]);
    if (s.num_heads <= 0 || s.embed_dim % s.num_heads != 0)
        return h->set_error(env, NNM_E_INVALID,
                            "embed_dim must be divisible by num_heads (embed_dim %lld, "
                            "num_heads %lld)",
                            (long long)s.embed_dim, (long long)s.num_heads);
    if (!(s.dropout >= 0.0 && s.dropout < 1.0))
        return h->set_error(env, NNM_E_INVALID, "dropout must be in [0, 1), got %g", s.dropout);
    if (!NNM_HOST_HAS(h, op_bmm) || !NNM_HOST_HAS(h, op_permute) || !NNM_HOST_HAS(h, op_slice) ||
        !NNM_HOST_HAS(h, op_softmax) || !NNM_HOST_HAS(h, op_rand) ||
        !NNM_HOST_HAS(h, op_concat) || !NNM_HOST_HAS(h, op_full))
        return h->set_error(env, NNM_E_VERSION,
                            "multihead_attention needs the ABI 1.3 host ops (op_bmm, op_permute, "
                            "op_slice, op_softmax, op_rand, op_concat, op_full); this host is "
                            "ABI %u.%u",
                            (unsigned)h->abi_major, (unsigned)h->abi_minor);
    s.head_dim = s.embed_dim / s.num_heads;
    s.bias = s.bias != 0;
    s.separate = s.kdim != s.embed_dim || s.vdim != s.embed_dim;
    const int64_t E = s.embed_dim;
    /* In PyTorch's order: the projections, in_proj_bias, bias_k, bias_v. */
    if (!s.separate) {
        const double bound = sqrt(6.0 / (double)(E + 3 * E)); /* xavier_uniform_ of [3E, E] */
        const int64_t wshape[2] = {3 * E, E};
        st = h->param_new(env, "in_proj_weight", 2, wshape, NNM_INIT_UNIFORM, -bound, bound,
                          &s.in_proj_weight);
    } else {
        const char *names[3] = {"q_proj_weight", "k_proj_weight", "v_proj_weight"};
        const int64_t fan_in[3] = {E, s.kdim, s.vdim};
        for (int i = 0; i < 3 && st == NNM_OK; i++) {
            const double bound = sqrt(6.0 / (double)(E + fan_in[i]));
            const int64_t wshape[2] = {E, fan_in[i]};
            st = h->param_new(env, names[i], 2, wshape, NNM_INIT_UNIFORM, -bound, bound,
                              &s.proj_weight[i]);
        }
    }
    if (st == NNM_OK && s.bias) {
        const int64_t bshape[1] = {3 * E};
        st = h->param_new(env, "in_proj_bias", 1, bshape, NNM_INIT_ZEROS, 0.0, 0.0,
                          &s.in_proj_bias);
    }
    if (st == NNM_OK && s.add_bias_kv) {
        /* xavier_normal_ of [1, 1, E]: fan_in = fan_out = E, std = sqrt(1 / E) */
        const int64_t kvshape[3] = {1, 1, E};
        const double std = sqrt(1.0 / (double)E);
        st = h->param_new(env, "bias_k", 3, kvshape, NNM_INIT_NORMAL, 0.0, std, &s.bias_k);
        if (st == NNM_OK)
            st = h->param_new(env, "bias_v", 3, kvshape, NNM_INIT_NORMAL, 0.0, std, &s.bias_v);
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

/* x [N, T, C] projected by projection k (0 q, 1 k, 2 v): [N, T, E]. */
static nnm_status mha_project(nnm_env *env, const mha_state *s, mha_tmp *a, nnm_tensor *x,
                              int64_t k, nnm_tensor **out) {
    const nnm_host *h = env->host;
    nnm_status st = NNM_OK;
    nnm_tensor *w = NULL, *b = NULL;
    const int64_t E = s->embed_dim;
    if (s->separate)
        w = s->proj_weight[k];
    else
        MHA_OP(h->op_slice(env, s->in_proj_weight, 0, k * E, E, &w), w);
    if (s->in_proj_bias != NULL)
        MHA_OP(h->op_slice(env, s->in_proj_bias, 0, k * E, E, &b), b);
    MHA_OP(h->op_linear(env, x, w, b, out), *out);
done:
    return st;
}

/* x [N, S, E] with bias [1, 1, E] appended along the sequence: [N, S + 1, E]
 * (PyTorch's cat([k, bias_k.repeat(1, bsz, 1)])). */
static nnm_status mha_append_bias(nnm_env *env, mha_tmp *a, nnm_tensor *x, nnm_tensor *bias,
                                  int64_t N, int64_t E, nnm_tensor **out) {
    const nnm_host *h = env->host;
    nnm_status st = NNM_OK;
    nnm_tensor *z = NULL, *rep = NULL;
    const int64_t shape[3] = {N, 1, E};
    MHA_OP(h->op_full(env, 3, shape, 0.0, &z), z);
    MHA_OP(h->op_binary(env, NNM_BINARY_ADD, bias, z, &rep), rep); /* broadcast: the repeat */
    nnm_tensor *both[2] = {x, rep};
    MHA_OP(h->op_concat(env, both, 2, 1, out), *out);
done:
    return st;
}

/* x [N, T, E] (seq_first: [T, N, E]) split into heads: [N, H, T, D]; with
 * add_zero_attn, a zero row appended: [N, H, T + 1, D]. */
static nnm_status mha_heads(nnm_env *env, const mha_state *s, mha_tmp *a, nnm_tensor *x,
                            int seq_first, int zero_attn, nnm_tensor **out) {
    const nnm_host *h = env->host;
    nnm_status st = NNM_OK;
    nnm_tensor *x4 = NULL, *xp = NULL, *z = NULL;
    const nnm_tensor_desc *d = h->tensor_desc(x);
    const int64_t N = d->shape[seq_first ? 1 : 0];
    const int64_t shape[4] = {d->shape[0], d->shape[1], s->num_heads, s->head_dim};
    MHA_OP(h->op_reshape(env, x, 4, shape, &x4), x4);
    const int32_t perm_bf[4] = {0, 2, 1, 3}, perm_sf[4] = {1, 2, 0, 3};
    MHA_OP(h->op_permute(env, x4, seq_first ? perm_sf : perm_bf, 4, &xp), xp);
    *out = xp;
    if (zero_attn) {
        const int64_t zshape[4] = {N, s->num_heads, 1, s->head_dim};
        MHA_OP(h->op_full(env, 4, zshape, 0.0, &z), z);
        nnm_tensor *both[2] = {xp, z};
        MHA_OP(h->op_concat(env, both, 2, 2, out), *out);
    }
done:
    return st;
}

static int64_t numel_of(const nnm_tensor_desc *d) {
    int64_t n = 1;
    for (int32_t i = 0; i < d->ndim; i++)
        n *= d->shape[i];
    return n;
}

/* Checks query, key and value (ndim, features, batch and lengths) and fills
 * dm's N, L, S. */
static nnm_status mha_check_inputs(nnm_env *env, const mha_state *s, nnm_tensor *const *in,
                                   mha_dims *dm) {
    const nnm_host *h = env->host;
    const char *names[3] = {"query", "key", "value"};
    const char *feat[3] = {"embed_dim", "kdim", "vdim"};
    const int64_t want[3] = {s->embed_dim, s->kdim, s->vdim};
    const nnm_tensor_desc *d[3];
    char got[96];
    for (int i = 0; i < 3; i++)
        d[i] = h->tensor_desc(in[i]);
    if (d[0]->ndim != 2 && d[0]->ndim != 3)
        return h->set_error(env, NNM_E_SHAPE,
                            "query must be 3-D (batched) or 2-D (unbatched); got %s",
                            nnm_lu_shape_str(d[0], got, sizeof got));
    dm->batched = d[0]->ndim == 3;
    const char *layout =
        !dm->batched ? "[T, features]" : s->batch_first ? "[N, T, features]" : "[T, N, features]";
    for (int i = 1; i < 3; i++)
        if (d[i]->ndim != d[0]->ndim)
            return h->set_error(env, NNM_E_SHAPE,
                                "for a %d-D query, %s must be %d-D too; got %s", (int)d[0]->ndim,
                                names[i], (int)d[0]->ndim, nnm_lu_shape_str(d[i], got, sizeof got));
    for (int i = 0; i < 3; i++)
        if (d[i]->shape[d[i]->ndim - 1] != want[i])
            return h->set_error(env, NNM_E_SHAPE,
                                "%s must be %s with %lld features (%s); got %s", names[i], layout,
                                (long long)want[i], feat[i],
                                nnm_lu_shape_str(d[i], got, sizeof got));
    const int bdim = !dm->batched ? -1 : s->batch_first ? 0 : 1;
    const int tdim = !dm->batched ? 0 : s->batch_first ? 1 : 0;
    int64_t n[3];
    for (int i = 0; i < 3; i++)
        n[i] = bdim < 0 ? 1 : d[i]->shape[bdim];
    dm->N = n[0];
    dm->L = d[0]->shape[tdim];
    dm->S = d[1]->shape[tdim];
    if (n[1] != n[0] || n[2] != n[0] || d[2]->shape[tdim] != dm->S)
        return h->set_error(env, NNM_E_SHAPE,
                            "query, key and value disagree: batch %lld, %lld, %lld; key and "
                            "value lengths %lld, %lld",
                            (long long)n[0], (long long)n[1], (long long)n[2], (long long)dm->S,
                            (long long)d[2]->shape[tdim]);
    return NNM_OK;
}

/* The inference path (grad mode off, no attention dropout, no appended
 * keys, one output; masks merged into one additive mask): ONE
 * in-projection gemm for self-attention (in_proj_weight whole; q, k and v
 * the same tensor) or two (q, then k and v together when they are one
 * tensor), then host->op_attention over the packed heads (no head split,
 * transpose or merge copies; the scale on the scores gemm), then out_proj.
 * *used 0: the caller takes the composed path (nothing was computed). */
static nnm_status mha_forward_fused(nnm_env *env, const mha_state *s, const mha_dims *dm,
                                    nnm_tensor *const *in, nnm_tensor *kpm, nnm_tensor *am, int32_t op,
                                    nnm_tensor **out, int *used) {
    const nnm_host *h = env->host;
    mha_tmp arena = {{0}, 0}, *a = &arena;
    nnm_status st = NNM_OK;
    *used = 0;
    const int64_t E = s->embed_dim, L = dm->L;
    nnm_tensor *x[3], *pk[3] = {NULL, NULL, NULL}, *mask = NULL, *o = NULL, *o2 = NULL;
    int64_t off[3] = {0, 0, 0};
    for (int i = 0; i < 3; i++) { /* unbatched [T, C]: [T, 1, C], seq first */
        if (dm->batched) {
            x[i] = in[i];
        } else {
            const nnm_tensor_desc *d = h->tensor_desc(in[i]);
            const int64_t shape[3] = {d->shape[0], 1, d->shape[1]};
            MHA_OP(h->op_reshape(env, in[i], 3, shape, &x[i]), x[i]);
        }
    }
    /* causal alone: op_attention's own triu mask (no [L, S] mask made here) */
    const int causal_only = s->is_causal && kpm == NULL && am == NULL;
    if (kpm != NULL || am != NULL || (s->is_causal && !causal_only)) {
        /* the masks merged as the composed path merges them, added to a
         * zero [1, 1, 1, 1]: one additive mask of the smallest broadcast
         * shape, which op_attention adds to the scores */
        nnm_tensor *zero = NULL;
        const int64_t one[4] = {1, 1, 1, 1};
        MHA_OP(h->op_full(env, 4, one, 0.0, &zero), zero);
        if ((st = mha_masks_apply(env, s, a, dm, kpm, am, zero, &mask)) != NNM_OK)
            goto done;
    }
    if (!s->separate && in[0] == in[1] && in[1] == in[2]) {
        MHA_OP(h->op_linear(env, x[0], s->in_proj_weight, s->in_proj_bias, &pk[0]), pk[0]);
        pk[1] = pk[2] = pk[0];
        off[1] = E;
        off[2] = 2 * E;
    } else if (!s->separate && in[1] == in[2]) {
        nnm_tensor *w = NULL, *b = NULL;
        if ((st = mha_project(env, s, a, x[0], 0, &pk[0])) != NNM_OK)
            goto done;
        MHA_OP(h->op_slice(env, s->in_proj_weight, 0, E, 2 * E, &w), w);
        if (s->in_proj_bias != NULL)
            MHA_OP(h->op_slice(env, s->in_proj_bias, 0, E, 2 * E, &b), b);
        MHA_OP(h->op_linear(env, x[1], w, b, &pk[1]), pk[1]);
        pk[2] = pk[1];
        off[2] = E;
    } else {
        for (int i = 0; i < 3; i++)
            if ((st = mha_project(env, s, a, x[i], i, &pk[i])) != NNM_OK)
                goto done;
    }
    const nnm_attention_params p = {sizeof p, (int32_t)s->num_heads, !dm->batched || !s->batch_first,
                                    causal_only /* else in the mask */, off[0], off[1], off[2], E, E, 0.0};
    st = h->op_attention(env, pk[0], pk[1], pk[2], mask, &p, &o);
    if (st == NNM_E_UNSUPPORTED) { /* a backend without softmax: composed */
        st = NNM_OK;
        goto done;
    }
    if (st != NNM_OK || (st = mha_keep(env, a, o)) != NNM_OK)
        goto done;
    *used = 1;
    if (!dm->batched) {
        const int64_t shape2[2] = {L, E};
        MHA_OP(h->op_reshape(env, o, 2, shape2, &o2), o2);
        o = o2;
    }
    st = h->child_call(env, (uint32_t)op, &o, 1, &out[0], 1);
done:
    mha_release(h, a);
    return st;
}

static nnm_status mha_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in,
                              nnm_tensor **out, uint32_t n_out) {
    const nnm_host *h = env->host;
    const mha_state *s = self;
    mha_tmp arena = {{0}, 0}, *a = &arena;
    nnm_status st = NNM_OK;
    if (s == NULL)
        return h->set_error(env, NNM_E_STATE, "multihead_attention: forward without state");
    if (n_in < 3 || n_in > 5 || n_out < 1 || n_out > 2 || in == NULL || out == NULL)
        return h->set_error(env, NNM_E_SHAPE,
                            "multihead_attention takes query, key, value[, key_padding_mask[, "
                            "attn_mask]] and returns attn_output[, attn_weights]; got %u inputs "
                            "and %u outputs",
                            (unsigned)n_in, (unsigned)n_out);
    for (uint32_t i = 0; i < n_in; i++)
        if (in[i] == NULL)
            return h->set_error(env, NNM_E_INVALID, "input %u is NULL", (unsigned)i);
    const int32_t op = mha_out_proj(env);
    if (op < 0)
        return NNM_E_INVALID;
    mha_dims dm = {0};
    dm.H = s->num_heads;
    st = mha_check_inputs(env, s, in, &dm);
    if (st != NNM_OK)
        return st;
    /* a mask with 0 elements is absent (None) */
    nnm_tensor *kpm = n_in > 3 && numel_of(h->tensor_desc(in[3])) > 0 ? in[3] : NULL;
    nnm_tensor *am = n_in > 4 && numel_of(h->tensor_desc(in[4])) > 0 ? in[4] : NULL;
    dm.S2 = dm.S + (s->add_bias_kv != 0) + (s->add_zero_attn != 0);
    st = mha_masks_check(env, s, &dm, kpm, am);
    if (st != NNM_OK)
        return st;
    if (n_out == 1 && !s->add_bias_kv && !s->add_zero_attn && !h->grad_enabled(env) &&
        (s->dropout == 0.0 || !h->is_training(env)) && NNM_HOST_HAS(h, op_attention)) {
        int used = 0;
        st = mha_forward_fused(env, s, &dm, in, kpm, am, op, out, &used);
        if (st != NNM_OK || used)
            return st;
    }

    const int64_t N = dm.N, L = dm.L, E = s->embed_dim;
    const int32_t swap[3] = {1, 0, 2};
    nnm_tensor *x[3], *p[3];
    /* [T, N, C] inputs are projected as they are and split into heads by one
     * permute (no copy to [N, T, C] first); add_bias_kv appends along the
     * sequence of the batch-first layout, so it takes that one. */
    const int seq_first = dm.batched && !s->batch_first && !s->add_bias_kv;
    for (int i = 0; i < 3; i++) { /* to [N, T, C] */
        if (seq_first) {
            x[i] = in[i];
        } else if (!dm.batched) {
            const nnm_tensor_desc *d = h->tensor_desc(in[i]);
            const int64_t shape[3] = {1, d->shape[0], d->shape[1]};
            MHA_OP(h->op_reshape(env, in[i], 3, shape, &x[i]), x[i]);
        } else if (s->batch_first) {
            x[i] = in[i];
        } else {
            MHA_OP(h->op_permute(env, in[i], swap, 3, &x[i]), x[i]);
        }
    }
    for (int i = 0; i < 3; i++) /* [N, T, E] */
        if ((st = mha_project(env, s, a, x[i], i, &p[i])) != NNM_OK)
            goto done;
    if (s->add_bias_kv) {
        if ((st = mha_append_bias(env, a, p[1], s->bias_k, N, E, &p[1])) != NNM_OK ||
            (st = mha_append_bias(env, a, p[2], s->bias_v, N, E, &p[2])) != NNM_OK)
            goto done;
    }
    nnm_tensor *q = NULL, *k = NULL, *v = NULL, *qs = NULL, *kt = NULL, *sc = NULL, *scm = NULL,
               *w = NULL, *wd = NULL, *o = NULL, *o2 = NULL, *o3 = NULL, *o4 = NULL;
    if ((st = mha_heads(env, s, a, p[0], seq_first, 0, &q)) != NNM_OK ||
        (st = mha_heads(env, s, a, p[1], seq_first, s->add_zero_attn, &k)) != NNM_OK ||
        (st = mha_heads(env, s, a, p[2], seq_first, s->add_zero_attn, &v)) != NNM_OK)
        goto done;
    MHA_OP(h->op_unary(env, NNM_UNARY_SCALE, q, 1.0 / sqrt((double)s->head_dim), &qs), qs);
    const int32_t tr[4] = {0, 1, 3, 2};
    MHA_OP(h->op_permute(env, k, tr, 4, &kt), kt);
    MHA_OP(h->op_bmm(env, qs, kt, &sc), sc); /* [N, H, L, S2] */
    if ((st = mha_masks_apply(env, s, a, &dm, kpm, am, sc, &scm)) != NNM_OK)
        goto done;
    MHA_OP(h->op_softmax(env, scm, -1, 0, &w), w);
    wd = w;
    if (s->dropout > 0.0 && h->is_training(env)) {
        const nnm_tensor_desc *d = h->tensor_desc(w);
        nnm_tensor *m = NULL;
        MHA_OP(h->op_rand(env, NNM_RAND_BERNOULLI, 1.0 - s->dropout, 1.0 / (1.0 - s->dropout),
                          d->ndim, d->shape, &m),
               m);
        MHA_OP(h->op_binary(env, NNM_BINARY_MUL, w, m, &wd), wd);
    }
    MHA_OP(h->op_bmm(env, wd, v, &o), o); /* [N, H, L, D] */
    const int32_t back[4] = {0, 2, 1, 3}, back_sf[4] = {2, 0, 1, 3};
    /* [N, L, H, D], or [L, N, H, D] straight for [L, N, E] */
    MHA_OP(h->op_permute(env, o, dm.batched && !s->batch_first ? back_sf : back, 4, &o2), o2);
    if (dm.batched && !s->batch_first) {
        const int64_t shape3[3] = {L, N, E};
        MHA_OP(h->op_reshape(env, o2, 3, shape3, &o4), o4);
    } else if (!dm.batched) {
        const int64_t shape2[2] = {L, E};
        MHA_OP(h->op_reshape(env, o2, 2, shape2, &o4), o4);
    } else {
        const int64_t shape3[3] = {N, L, E};
        MHA_OP(h->op_reshape(env, o2, 3, shape3, &o3), o3);
        o4 = o3;
    }
    st = h->child_call(env, (uint32_t)op, &o4, 1, &out[0], 1);
    if (st != NNM_OK)
        goto done;
    if (n_out == 2) {
        const int32_t heads[1] = {1};
        nnm_tensor *mean = NULL;
        st = h->op_reduce(env, NNM_REDUCE_MEAN, wd, heads, 1, 0, &mean); /* [N, L, S2] */
        if (st == NNM_OK && !dm.batched) {
            const int64_t shape2[2] = {L, dm.S2};
            st = h->op_reshape(env, mean, 2, shape2, &out[1]);
            h->tensor_release(mean);
        } else {
            out[1] = mean;
        }
        if (st != NNM_OK) {
            h->tensor_release(out[0]);
            out[0] = NULL;
            out[1] = NULL;
        }
    }
done:
    mha_release(h, a);
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
    {"add_bias_kv", NNM_CONFIG_BOOL, 0, "bias_k, bias_v appended to keys and values (false)"},
    {"add_zero_attn", NNM_CONFIG_BOOL, 0, "a zero key and value appended (false)"},
    {"kdim", NNM_CONFIG_INT, 0, "key features (embed_dim)"},
    {"vdim", NNM_CONFIG_INT, 0, "value features (embed_dim)"},
    {"batch_first", NNM_CONFIG_BOOL, 0, "inputs [N, L, E] instead of [L, N, E] (false)"},
    {"is_causal", NNM_CONFIG_BOOL, 0,
     "query i attends to keys j <= i only, as attn_mask = triu(ones(L, S), 1) (false)"},
};

static const nnm_layer_vtable mha_layer = {
    .struct_size = sizeof(nnm_layer_vtable),
    .flags = NNM_LAYER_CONTAINER,
    .name = "multihead_attention",
    .display_name = "MultiheadAttention",
    .version_major = 1,
    .version_minor = 1, /* 1.1: attn_mask, kdim/vdim, add_bias_kv, add_zero_attn, 2-D */
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
    .domain = NNM_DOMAIN_NNMOD, /* nnmod's own library: the plain names */
};

NNM_PLUGIN_DEFINE(mha_plugin)
