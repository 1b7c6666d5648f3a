/* plugins/multihead_attention/mha_masks.c - key_padding_mask, attn_mask and
 * is_causal, checked and merged as PyTorch 1.13's
 * F.multi_head_attention_forward does:
 *
 *   key_padding_mask  [N, S] ([S] unbatched); bool (true: ignore the key) or
 *                     f32 (added to the scores)
 *   attn_mask         [L, S] or [N * num_heads, L, S] ([num_heads, L, S]
 *                     unbatched); bool (true: may not attend), u8 (PyTorch's
 *                     deprecated byte mask: nonzero = bool true) or f32 (added)
 *   is_causal         nnmod's key: attn_mask = triu(ones(L, S), 1) as a bool
 *                     mask; refused together with an attn_mask input
 *
 * add_bias_kv and add_zero_attn append keys; both masks are padded with 0
 * (false) there, so those keys are never masked. The merge (1.13):
 *   - no attn_mask: the key padding mask is the mask (a f32 one is added);
 *   - bool attn_mask: attn_mask.logical_or(key_padding_mask): a f32 key
 *     padding mask then masks every key where it is nonzero;
 *   - f32 attn_mask: attn_mask.masked_fill(key_padding_mask, -inf) for a
 *     bool key padding mask; a f32 one there is refused: 1.13's masked_fill
 *     misreads a float mask (no key masked for 0/1 values, "Mask tensor can
 *     take 0 and 1 values only" for others), nothing to reproduce.
 * A row with every key masked gives NaN, as in 1.13 (softmax of all -inf).
 *
 * Host ops only, so every mask runs on any device: f32 masks are added (and
 * get gradients); the boolean parts (and a f32 key padding mask used as a
 * bool) are cast to 0/1 on their device, summed with a causal table made on
 * the host, and turned into one 0/-inf tensor (op_where), as small as the
 * masks allow.
 */
#include "mha.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layer_util.h"

enum { MASK_NONE = 0, MASK_BOOL = 1, MASK_FLOAT = 2 };

static int mask_kind(const nnm_tensor_desc *d) {
    if (d == NULL)
        return MASK_NONE;
    if (nnm_lu_is_f32(d))
        return MASK_FLOAT;
    if (d->dtype.lanes == 1 && d->dtype.bits == 8 &&
        (d->dtype.code == NNM_DTYPE_BOOL || d->dtype.code == NNM_DTYPE_UINT))
        return MASK_BOOL;
    return -1;
}

static int kpm_shape_ok(const nnm_tensor_desc *d, const mha_dims *dm) {
    if (dm->batched)
        return d->ndim == 2 && d->shape[0] == dm->N && d->shape[1] == dm->S;
    return d->ndim == 1 && d->shape[0] == dm->S;
}

static int am_shape_ok(const nnm_tensor_desc *d, const mha_dims *dm) {
    if (d->ndim == 2)
        return d->shape[0] == dm->L && d->shape[1] == dm->S;
    return d->ndim == 3 && d->shape[0] == dm->N * dm->H && d->shape[1] == dm->L &&
           d->shape[2] == dm->S;
}

/* Whether the CPU 0/-inf part is needed, and what each mask contributes. */
typedef struct mask_plan {
    int kk, ak;          /* kinds of key_padding_mask, attn_mask */
    int kpm_add, am_add; /* added with host ops (f32) */
    int kpm_bool, am_bool; /* read as bool: part of the 0/-inf mask */
} mask_plan;

static mask_plan plan_of(const nnm_host *h, nnm_tensor *kpm, nnm_tensor *am) {
    mask_plan p = {0};
    p.kk = kpm != NULL ? mask_kind(h->tensor_desc(kpm)) : MASK_NONE;
    if (kpm != NULL && h->tensor_desc(kpm)->dtype.code == NNM_DTYPE_UINT)
        p.kk = -1; /* 1.13: "only bool and floating types of key_padding_mask" */
    p.ak = am != NULL ? mask_kind(h->tensor_desc(am)) : MASK_NONE;
    p.am_add = p.ak == MASK_FLOAT;
    p.am_bool = p.ak == MASK_BOOL;
    p.kpm_add = p.kk == MASK_FLOAT && p.ak == MASK_NONE;
    p.kpm_bool = p.kk == MASK_BOOL || (p.kk == MASK_FLOAT && p.ak != MASK_NONE);
    return p;
}

nnm_status mha_masks_check(nnm_env *env, const mha_state *s, const mha_dims *dm, nnm_tensor *kpm,
                           nnm_tensor *am) {
    const nnm_host *h = env->host;
    char got[96];
    const mask_plan p = plan_of(h, kpm, am);
    if (kpm != NULL) {
        const nnm_tensor_desc *d = h->tensor_desc(kpm);
        if (p.kk < 0)
            return h->set_error(env, NNM_E_DTYPE,
                                "key_padding_mask must be bool (true: ignore that key) or f32 "
                                "(added to the scores); got %s",
                                nnm_lu_dtype_str(d->dtype, got, sizeof got));
        if (!kpm_shape_ok(d, dm)) {
            if (dm->batched)
                return h->set_error(env, NNM_E_SHAPE,
                                    "key_padding_mask must be [N, S] = [%lld, %lld]; got %s",
                                    (long long)dm->N, (long long)dm->S,
                                    nnm_lu_shape_str(d, got, sizeof got));
            return h->set_error(env, NNM_E_SHAPE,
                                "key_padding_mask of an unbatched (2-D) query must be [S] = "
                                "[%lld]; got %s",
                                (long long)dm->S, nnm_lu_shape_str(d, got, sizeof got));
        }
    }
    if (am != NULL) {
        const nnm_tensor_desc *d = h->tensor_desc(am);
        if (p.ak < 0)
            return h->set_error(env, NNM_E_DTYPE,
                                "attn_mask must be bool (true: may not attend), u8 (nonzero: may "
                                "not attend) or f32 (added to the scores); got %s",
                                nnm_lu_dtype_str(d->dtype, got, sizeof got));
        if (!am_shape_ok(d, dm))
            return h->set_error(env, NNM_E_SHAPE,
                                "attn_mask must be [L, S] = [%lld, %lld] or [N * num_heads, L, "
                                "S] = [%lld, %lld, %lld]; got %s",
                                (long long)dm->L, (long long)dm->S, (long long)(dm->N * dm->H),
                                (long long)dm->L, (long long)dm->S,
                                nnm_lu_shape_str(d, got, sizeof got));
        if (s->is_causal)
            return h->set_error(env, NNM_E_INVALID,
                                "is_causal and an attn_mask input are both given: pass the "
                                "causal mask in attn_mask, or leave attn_mask absent");
    }
    if ((p.kpm_bool || p.am_bool) && (!NNM_HOST_HAS(h, op_cast) || !NNM_HOST_HAS(h, tensor_from_host)))
        return h->set_error(env, NNM_E_VERSION,
                            "multihead_attention: boolean masks need a host of ABI 1.5 (op_cast)");
    if (s->is_causal && !NNM_HOST_HAS(h, tensor_from_host))
        return h->set_error(env, NNM_E_VERSION,
                            "multihead_attention: is_causal needs a host of ABI 1.5 (tensor_from_host)");
    if (p.kk == MASK_FLOAT && p.ak == MASK_FLOAT)
        return h->set_error(env, NNM_E_UNSUPPORTED,
                            "a f32 key_padding_mask with a f32 attn_mask is not supported: "
                            "PyTorch 1.13 misreads the float key_padding_mask there "
                            "(masked_fill of a float mask); pass a bool key_padding_mask, or "
                            "add it into attn_mask");
    return NNM_OK;
}

/* x's last dim (of length S) padded with zeros to S2, for add_bias_kv and
 * add_zero_attn; x itself when S2 == S. */
static nnm_status pad_keys(nnm_env *env, mha_tmp *a, const mha_dims *dm, nnm_tensor *x,
                           nnm_tensor **out) {
    const nnm_host *h = env->host;
    nnm_status st = NNM_OK;
    *out = x;
    if (dm->S2 == dm->S)
        return NNM_OK;
    const nnm_tensor_desc *d = h->tensor_desc(x);
    int64_t shape[4];
    for (int32_t i = 0; i < d->ndim; i++)
        shape[i] = d->shape[i];
    shape[d->ndim - 1] = dm->S2 - dm->S;
    nnm_tensor *z = NULL;
    MHA_OP(h->op_full(env, d->ndim, shape, 0.0, &z), z);
    nnm_tensor *both[2] = {x, z};
    MHA_OP(h->op_concat(env, both, 2, -1, out), *out);
done:
    return st;
}

/* m (a bool, u8 or f32 mask of any device) as f32 0/1: 1 where it is
 * nonzero (NaN too), as PyTorch reads a mask it or-s together. */
static nnm_status mask_01(nnm_env *env, mha_tmp *a, nnm_tensor *m, nnm_tensor **out) {
    const nnm_host *h = env->host;
    nnm_status st = NNM_OK;
    const nnm_dtype boolean = {NNM_DTYPE_BOOL, 8, 1};
    nnm_tensor *b = NULL;
    if (h->tensor_desc(m)->dtype.code == NNM_DTYPE_BOOL) {
        h->tensor_retain(m);
        b = m;
    } else {
        st = h->op_cast(env, m, boolean, &b);
    }
    if (st == NNM_OK)
        st = mha_keep(env, a, b);
    if (st == NNM_OK)
        MHA_OP(h->op_cast(env, b, NNM_F32, out), *out);
done:
    return st;
}

/* The boolean part of the mask, [nb, nh, nl, S2] broadcast against the
 * scores, 0 where a key may be attended and -inf where not: is_causal (a
 * [1, 1, L, S2] table made on the host), and the masks the plan reads as
 * bool, each cast to 0/1 on its device, laid out to broadcast and padded
 * with 0 over the appended keys; their sum picks -inf with op_where. Host
 * ops only: it runs on the masks' device. */
static nnm_status bool_mask(nnm_env *env, const mha_state *s, mha_tmp *a, const mha_dims *dm,
                            const mask_plan *p, nnm_tensor *kpm, nnm_tensor *am, nnm_tensor **out) {
    const nnm_host *h = env->host;
    nnm_status st = NNM_OK;
    nnm_tensor *cnt = NULL;
    if (s->is_causal) {
        const int64_t shape[4] = {1, 1, dm->L, dm->S2};
        if (!nnm_lu_host_fits((double)dm->L * (double)dm->S2 * sizeof(float)))
            return h->set_error(env, NNM_E_NOMEM, "multihead_attention: a causal mask of %lld x %lld",
                                (long long)dm->L, (long long)dm->S2);
        float *t = malloc(sizeof(float) * (size_t)(dm->L * dm->S2 > 0 ? dm->L * dm->S2 : 1));
        if (t == NULL)
            return h->set_error(env, NNM_E_NOMEM, "multihead_attention: out of memory (causal mask)");
        for (int64_t i = 0; i < dm->L; i++) /* the appended keys are never masked */
            for (int64_t j = 0; j < dm->S2; j++)
                t[i * dm->S2 + j] = j < dm->S && j > i ? 1.0f : 0.0f;
        st = h->tensor_from_host(env, 4, shape, NNM_F32, t, &cnt);
        free(t);
        if (st == NNM_OK)
            st = mha_keep(env, a, cnt);
        if (st != NNM_OK)
            goto done;
    }
    for (int k = 0; k < 2; k++) {
        nnm_tensor *m = k == 0 ? (p->kpm_bool ? kpm : NULL) : (p->am_bool ? am : NULL);
        if (m == NULL)
            continue;
        const nnm_tensor_desc *d = h->tensor_desc(m);
        int64_t shape[4];
        if (k == 0) { /* [N, S] or [S] -> [N, 1, 1, S] */
            shape[0] = dm->batched ? dm->N : 1, shape[1] = 1, shape[2] = 1, shape[3] = dm->S;
        } else { /* [L, S] -> [1, 1, L, S]; [N * H, L, S] -> [N, H, L, S] */
            shape[0] = d->ndim == 3 ? dm->N : 1, shape[1] = d->ndim == 3 ? dm->H : 1;
            shape[2] = dm->L, shape[3] = dm->S;
        }
        nnm_tensor *f = NULL, *r = NULL, *padded = NULL, *sum = NULL;
        if ((st = mask_01(env, a, m, &f)) != NNM_OK)
            goto done;
        MHA_OP(h->op_reshape(env, f, 4, shape, &r), r);
        if ((st = pad_keys(env, a, dm, r, &padded)) != NNM_OK)
            goto done;
        if (cnt == NULL) {
            cnt = padded;
        } else {
            MHA_OP(h->op_binary(env, NNM_BINARY_ADD, cnt, padded, &sum), sum);
            cnt = sum;
        }
    }
    const int64_t one[1] = {1};
    nnm_tensor *ninf = NULL, *zero = NULL;
    MHA_OP(h->op_full(env, 1, one, -INFINITY, &ninf), ninf);
    MHA_OP(h->op_full(env, 1, one, 0.0, &zero), zero);
    MHA_OP(h->op_where(env, cnt, ninf, zero, out), *out);
done:
    return st;
}

nnm_status mha_masks_apply(nnm_env *env, const mha_state *s, mha_tmp *a, const mha_dims *dm,
                           nnm_tensor *kpm, nnm_tensor *am, nnm_tensor *scores, nnm_tensor **out) {
    const nnm_host *h = env->host;
    nnm_status st = NNM_OK;
    const mask_plan p = plan_of(h, kpm, am);
    nnm_tensor *cur = scores;
    *out = scores;
    if (p.am_add) { /* baddbmm(attn_mask, q, k^T): [1, 1, L, S] or [N, H, L, S] */
        const nnm_tensor_desc *d = h->tensor_desc(am);
        const int64_t shape[4] = {d->ndim == 3 ? dm->N : 1, d->ndim == 3 ? dm->H : 1, dm->L,
                                  dm->S};
        nnm_tensor *r = NULL, *padded = NULL, *sum = NULL;
        MHA_OP(h->op_reshape(env, am, 4, shape, &r), r);
        st = pad_keys(env, a, dm, r, &padded);
        if (st != NNM_OK)
            goto done;
        MHA_OP(h->op_binary(env, NNM_BINARY_ADD, cur, padded, &sum), sum);
        cur = sum;
    }
    if (p.kpm_add) { /* attn_mask = key_padding_mask: [N, 1, 1, S] */
        const int64_t shape[4] = {dm->N, 1, 1, dm->S};
        nnm_tensor *r = NULL, *padded = NULL, *sum = NULL;
        MHA_OP(h->op_reshape(env, kpm, 4, shape, &r), r);
        st = pad_keys(env, a, dm, r, &padded);
        if (st != NNM_OK)
            goto done;
        MHA_OP(h->op_binary(env, NNM_BINARY_ADD, cur, padded, &sum), sum);
        cur = sum;
    }
    if (p.kpm_bool || p.am_bool || s->is_causal) {
        nnm_tensor *m = NULL, *sum = NULL;
        st = bool_mask(env, s, a, dm, &p, kpm, am, &m);
        if (st != NNM_OK)
            goto done;
        MHA_OP(h->op_binary(env, NNM_BINARY_ADD, cur, m, &sum), sum);
        cur = sum;
    }
    *out = cur;
done:
    return st;
}

nnm_status mha_keep(nnm_env *env, mha_tmp *a, nnm_tensor *t) {
    if (t == NULL)
        return NNM_OK;
    if (a->n >= MHA_TMP_MAX) {
        env->host->tensor_release(t);
        return env->host->set_error(env, NNM_E_LIMIT,
                                    "multihead_attention: more than %d intermediate tensors",
                                    MHA_TMP_MAX);
    }
    a->t[a->n++] = t;
    return NNM_OK;
}

void mha_release(const nnm_host *h, mha_tmp *a) {
    for (int i = 0; i < a->n; i++)
        h->tensor_release(a->t[i]);
    a->n = 0;
}
