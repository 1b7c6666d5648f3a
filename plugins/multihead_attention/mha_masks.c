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
 * f32 masks are added with host ops, so they get gradients and run on any
 * device; the boolean parts (and a f32 key padding mask used as a bool) are
 * built on the CPU into one 0/-inf tensor, as small as the masks allow.
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

/* Element idx[0..ndim) of a CPU mask of kind BOOL (0/1) or FLOAT, any strides. */
static double mask_at(const nnm_tensor_desc *d, const int64_t *idx) {
    const int64_t esize = d->dtype.bits / 8;
    int64_t off = 0, st = 1;
    for (int32_t i = d->ndim - 1; i >= 0; i--) {
        off += idx[i] * (d->strides != NULL ? d->strides[i] : st);
        st *= d->shape[i];
    }
    const char *p = (const char *)nnm_lu_data(d) + off * esize;
    if (d->dtype.code == NNM_DTYPE_FLOAT) {
        float f;
        memcpy(&f, p, sizeof f);
        return f;
    }
    return *(const uint8_t *)p != 0;
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
    int kpm_cpu, am_cpu; /* part of the CPU mask */
} mask_plan;

static mask_plan plan_of(const nnm_host *h, nnm_tensor *kpm, nnm_tensor *am) {
    mask_plan p = {0};
    p.kk = kpm != NULL ? mask_kind(h->tensor_desc(kpm)) : MASK_NONE;
    if (kpm != NULL && h->tensor_desc(kpm)->dtype.code == NNM_DTYPE_UINT)
        p.kk = -1; /* 1.13: "only bool and floating types of key_padding_mask" */
    p.ak = am != NULL ? mask_kind(h->tensor_desc(am)) : MASK_NONE;
    p.am_add = p.ak == MASK_FLOAT;
    p.am_cpu = p.ak == MASK_BOOL;
    p.kpm_add = p.kk == MASK_FLOAT && p.ak == MASK_NONE;
    p.kpm_cpu = p.kk == MASK_BOOL || (p.kk == MASK_FLOAT && p.ak != MASK_NONE);
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
    if ((p.kpm_cpu || p.am_cpu || s->is_causal) && h->device(env).type != NNM_DEVICE_CPU)
        return h->set_error(env, NNM_E_UNSUPPORTED,
                            "multihead_attention builds its boolean masks (bool masks, "
                            "is_causal) on the CPU only");
    const char *which[2] = {"key_padding_mask", "attn_mask"};
    nnm_tensor *m[2] = {kpm, am};
    for (int i = 0; i < 2; i++)
        if (m[i] != NULL && (i == 0 ? p.kpm_cpu : p.am_cpu) &&
            h->tensor_desc(m[i])->device.type != NNM_DEVICE_CPU)
            return h->set_error(env, NNM_E_UNSUPPORTED, "%s: a CPU tensor is needed here",
                                which[i]);
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

/* The CPU mask [nb, nh, nl, S2] of 0 and -inf from is_causal and the masks
 * the plan sends to the CPU. */
static nnm_status cpu_mask(nnm_env *env, const mha_state *s, mha_tmp *a, const mha_dims *dm,
                           const mask_plan *p, nnm_tensor *kpm, nnm_tensor *am,
                           nnm_tensor **out) {
    const nnm_host *h = env->host;
    nnm_status st = NNM_OK;
    const nnm_tensor_desc *kd = p->kpm_cpu ? h->tensor_desc(kpm) : NULL;
    const nnm_tensor_desc *ad = p->am_cpu ? h->tensor_desc(am) : NULL;
    const int am3 = ad != NULL && ad->ndim == 3;
    const int64_t nb = (kd != NULL || am3) ? dm->N : 1, nh = am3 ? dm->H : 1;
    const int64_t nl = (ad != NULL || s->is_causal) ? dm->L : 1;
    const int64_t shape[4] = {nb, nh, nl, dm->S2};
    MHA_OP(h->tensor_new(env, 4, shape, NNM_F32, out), *out);
    float *m = nnm_lu_data(h->tensor_desc(*out));
    for (int64_t b = 0; b < nb; b++)
        for (int64_t hh = 0; hh < nh; hh++)
            for (int64_t i = 0; i < nl; i++)
                for (int64_t j = 0; j < dm->S2; j++) {
                    int masked = 0;
                    if (j < dm->S) { /* the appended keys are never masked */
                        masked = s->is_causal && j > i;
                        if (kd != NULL) {
                            const int64_t ki[2] = {dm->batched ? b : j, j};
                            const double v = mask_at(kd, ki);
                            masked |= v != 0.0; /* a f32 one: logical_or */
                        }
                        if (ad != NULL) {
                            const int64_t ai2[2] = {i, j}, ai3[3] = {b * dm->H + hh, i, j};
                            masked |= mask_at(ad, am3 ? ai3 : ai2) != 0.0;
                        }
                    }
                    m[((b * nh + hh) * nl + i) * dm->S2 + j] = masked ? -INFINITY : 0.0f;
                }
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
    if (p.kpm_cpu || p.am_cpu || s->is_causal) {
        nnm_tensor *m = NULL, *sum = NULL;
        st = cpu_mask(env, s, a, dm, &p, kpm, am, &m);
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
