/* plugins/multihead_attention/mha.h - what the attention layer's two files
 * share: its state, the arena of intermediate tensors, and the mask helpers
 * (mha_masks.c). Private to this plugin. */
#ifndef NNM_PLUGINS_MHA_H
#define NNM_PLUGINS_MHA_H

#include <nnmod/plugin.h>

#include <stddef.h>

typedef struct mha_state {
    int64_t embed_dim, num_heads, head_dim, kdim, vdim;
    double dropout;
    int bias, batch_first, is_causal, add_bias_kv, add_zero_attn;
    /* kdim or vdim differs from embed_dim: q/k/v_proj_weight instead of
     * in_proj_weight (PyTorch's _qkv_same_embed_dim false) */
    int separate;
    nnm_tensor *in_proj_weight; /* borrowed (owned by the module); NULL when separate */
    nnm_tensor *proj_weight[3]; /* borrowed: q/k/v_proj_weight; NULL unless separate */
    nnm_tensor *in_proj_bias;   /* borrowed; NULL without bias */
    nnm_tensor *bias_k, *bias_v; /* borrowed, [1, 1, E]; NULL without add_bias_kv */
} mha_state;

/* A small arena of intermediate tensors, released together (mha_release). */
#define MHA_TMP_MAX 96
typedef struct mha_tmp {
    nnm_tensor *t[MHA_TMP_MAX];
    int n;
} mha_tmp;

/* The sizes of one call, batch first: query [N, L, E], key/value [N, S, .];
 * S2 = S + add_bias_kv + add_zero_attn, the keys the scores cover. */
typedef struct mha_dims {
    int64_t N, H, L, S, S2;
    int batched; /* 0: the caller's inputs were 2-D ([L, E], ...), N is 1 */
} mha_dims;

/* Checks the optional masks against the call's sizes, dtypes and the 1.13
 * rules for combining them (kpm, am: NULL when absent). Sets a message and
 * returns an error status when they do not fit. */
nnm_status mha_masks_check(nnm_env *env, const mha_state *s, const mha_dims *dm, nnm_tensor *kpm,
                           nnm_tensor *am);

/* *out = scores [N, H, L, S2] with the masks applied as PyTorch 1.13's
 * multi_head_attention_forward merges them (float masks added through host
 * ops, so their gradient flows; boolean parts built on the CPU as 0/-inf),
 * or scores itself (borrowed, not kept) when there is no mask. New tensors
 * go to the arena. */
nnm_status mha_masks_apply(nnm_env *env, const mha_state *s, mha_tmp *a, const mha_dims *dm,
                           nnm_tensor *kpm, nnm_tensor *am, nnm_tensor *scores, nnm_tensor **out);

/* Adds t to the arena (NULL: nothing). A full arena releases t and returns
 * NNM_E_LIMIT with a message (a bug of this plugin, never a crash). */
nnm_status mha_keep(nnm_env *env, mha_tmp *a, nnm_tensor *t);
void mha_release(const nnm_host *h, mha_tmp *a);

/* st = expr (a host op writing new reference *t), then t joins arena a;
 * on failure goto done. Needs `nnm_status st`, `env`, `a` and a `done` label. */
#define MHA_OP(expr, t)                                                                  \
    do {                                                                                 \
        st = (expr);                                                                     \
        if (st == NNM_OK)                                                                \
            st = mha_keep(env, a, (t));                                                  \
        if (st != NNM_OK)                                                                \
            goto done;                                                                   \
    } while (0)

#endif
