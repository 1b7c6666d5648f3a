/* runtime/core/ops_attention.c - host->op_attention (ABI 1.5): multi-head
 * attention's core, softmax(scale * q_h k_h^T + mask) v_h, for inference.
 *
 * The heads stay where the in-projection wrote them: q, k and v are read,
 * and the output written, through the gemm slot's leading dimensions (one
 * gemm per batch entry and head for the scores, one for the weighted sum),
 * so no head is split into a copy, no key is transposed into one and no
 * head is merged back (the composed path's five copies of the activations),
 * and the scale rides on the scores gemm's alpha. Each head's scores stay
 * in one [L, S] scratch while the head's slice of the mask is added (zero
 * strides broadcast it), the backend's softmax runs and the weighted sum
 * is taken: in the cache, with or without a mask. No autograd node: a call that would
 * need one is NNM_E_UNSUPPORTED before anything is computed, and the layer
 * composes attention from recorded ops instead. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static int is_f32(const nnm_tensor *t) {
    return t->desc.dtype.code == NNM_DTYPE_FLOAT && t->desc.dtype.bits == 32 && t->desc.dtype.lanes == 1;
}

static float *base(const nnm_tensor *t) {
    return (float *)(void *)((char *)t->desc.data + t->desc.byte_offset);
}

/* The strides of a [T, N, C] (seq_first) or [N, T, C] contiguous tensor
 * along T and N. */
static void strides_of(const nnm_tensor *t, int seq_first, int64_t *st, int64_t *sn) {
    const int64_t C = t->shape[2];
    *st = seq_first ? t->shape[1] * C : C;
    *sn = seq_first ? C : t->shape[1] * C;
}

nnm_status nnm__op_attention(nnm_ctx *ctx, nnm_tensor *q, nnm_tensor *k, nnm_tensor *v, nnm_tensor *mask,
                             const nnm_attention_params *p, nnm_tensor **out) {
    *out = NULL;
    if (!p || p->struct_size < sizeof(nnm_attention_params))
        return nnm__error(ctx, NNM_E_INVALID, "attention: params are NULL or too small");
    if (!q || !k || !v) return nnm__error(ctx, NNM_E_INVALID, "attention: %s is NULL", !q ? "q" : !k ? "k" : "v");
    nnm_tensor *const qkv[3] = {q, k, v};
    static const char *const names[3] = {"q", "k", "v"};
    char s1[128];
    for (int i = 0; i < 3; i++) {
        if (!is_f32(qkv[i])) return nnm__error(ctx, NNM_E_DTYPE, "attention: %s must be f32", names[i]);
        if (qkv[i]->desc.ndim != 3) {
            nnm__shape_str(&qkv[i]->desc, s1, sizeof s1);
            return nnm__error(ctx, NNM_E_SHAPE, "attention: %s must have 3 dims, got %s", names[i], s1);
        }
        if (!nnm__device_eq(qkv[i]->desc.device, q->desc.device))
            return nnm__error(ctx, NNM_E_DEVICE, "attention: %s is on another device than q", names[i]);
    }
    if (mask && (!is_f32(mask) || !nnm__device_eq(mask->desc.device, q->desc.device) || mask->desc.ndim > 4))
        return nnm__error(ctx, NNM_E_INVALID, "attention: mask must be f32 of at most 4 dims on q's device");
    if (nnm__needs_grad(q, k, v) || (mask && nnm__needs_grad(mask, NULL, NULL)))
        return nnm__error(ctx, NNM_E_UNSUPPORTED,
                          "attention: the fused op has no gradient (inference only): compose it from recorded ops");
    const int sf = p->seq_first != 0;
    const int64_t H = p->num_heads, L = q->shape[sf ? 0 : 1], N = q->shape[sf ? 1 : 0];
    const int64_t S = k->shape[sf ? 0 : 1];
    if (k->shape[sf ? 1 : 0] != N || v->shape[sf ? 1 : 0] != N || v->shape[sf ? 0 : 1] != S)
        return nnm__error(ctx, NNM_E_SHAPE, "attention: q, k and v disagree on the batch (%lld) or k and v on the "
                          "keys (%lld)", (long long)N, (long long)S);
    if (H < 1 || p->qk_dim < 0 || p->v_dim < 0 || p->qk_dim % H || p->v_dim % H)
        return nnm__error(ctx, NNM_E_INVALID, "attention: num_heads %lld must divide qk_dim %lld and v_dim %lld",
                          (long long)H, (long long)p->qk_dim, (long long)p->v_dim);
    const int64_t offs[3] = {p->q_offset, p->k_offset, p->v_offset}, dims[3] = {p->qk_dim, p->qk_dim, p->v_dim};
    for (int i = 0; i < 3; i++)
        if (offs[i] < 0 || offs[i] > qkv[i]->shape[2] || dims[i] > qkv[i]->shape[2] - offs[i])
            return nnm__error(ctx, NNM_E_SHAPE, "attention: %s's columns [%lld, %lld + %lld) are outside its %lld",
                              names[i], (long long)offs[i], (long long)offs[i], (long long)dims[i],
                              (long long)qkv[i]->shape[2]);
    const int64_t D = p->qk_dim / H, Dv = p->v_dim / H;
    const int64_t want[4] = {N, H, L, S};
    if (mask)
        for (int32_t i = 0; i < mask->desc.ndim; i++) {
            const int64_t m = mask->shape[mask->desc.ndim - 1 - i], w = want[3 - i];
            if (m != 1 && m != w) {
                nnm__shape_str(&mask->desc, s1, sizeof s1);
                return nnm__error(ctx, NNM_E_SHAPE, "attention: mask %s does not broadcast to [%lld, %lld, %lld, %lld]",
                                  s1, (long long)N, (long long)H, (long long)L, (long long)S);
            }
        }
    nnm__backend *be;
    nnm_status st;
    if ((st = NNM__BACKEND_SLOT(ctx, q->desc.device, softmax, "attention (softmax)", &be))) return st;
    if (!be->vt->gemm) return nnm__error(ctx, NNM_E_UNSUPPORTED, "attention: backend '%s' has no gemm", be->vt->name);
    const nnm_device dev = q->desc.device;
    const int64_t oshape[3] = {sf ? L : N, sf ? N : L, p->v_dim};
    nnm_tensor *qc = NULL, *kc = NULL, *vc = NULL, *sc = NULL, *pr = NULL, *y = NULL, *cm = NULL, *mc = NULL;
    if ((st = nnm__contiguous(ctx, q, &qc)) || (st = nnm__contiguous(ctx, k, &kc)) ||
        (st = nnm__contiguous(ctx, v, &vc)) || (st = nnm__tensor_alloc(ctx, dev, NNM_F32, 3, oshape, &y)))
        goto done;
    if (nnm__numel(3, oshape) == 0) goto done;
    nnm__env env;
    nnm__env_init(&env, ctx, NULL, NNM__PHASE_BACKEND);
    const uint64_t seq = ctx->err_seq;
    int64_t qsl, qsn, ksl, ksn, vsl, vsn, osl, osn;
    strides_of(qc, sf, &qsl, &qsn);
    strides_of(kc, sf, &ksl, &ksn);
    strides_of(vc, sf, &vsl, &vsn);
    strides_of(y, sf, &osl, &osn);
    const float alpha = (float)(p->scale != 0.0 ? p->scale : D > 0 ? 1.0 / sqrt((double)D) : 1.0);
    const float *qb = base(qc), *kb = base(kc), *vb = base(vc);
    float *yb = base(y);
    /* Each head's scores stay in one [L, S] scratch, in the cache while its
     * mask is added (the head's slice of the mask, broadcast through zero
     * strides), its softmax runs and its weighted sum is taken. */
    const int64_t one[2] = {L, S};
    if ((st = nnm__tensor_alloc(ctx, dev, NNM_F32, 2, one, &sc)) ||
        (S > 0 && (st = nnm__tensor_alloc(ctx, dev, NNM_F32, 2, one, &pr))))
        goto done;
    /* the mask as [N or 1, H or 1, L or 1, S or 1] (contiguous), and the
     * causal mask [L, S] */
    int64_t mst[4] = {0, 0, 0, 0};
    const float *mb = NULL;
    if (mask) {
        if ((st = nnm__contiguous(ctx, mask, &mc))) goto done;
        const int32_t md = mc->desc.ndim;
        int64_t stride = 1;
        for (int32_t i = 3; i >= 0; i--) {
            const int32_t j = md - 4 + i; /* the mask's dim aligned with dim i of [N, H, L, S] */
            const int64_t sz = j >= 0 ? mc->shape[j] : 1;
            mst[i] = sz == 1 ? 0 : stride;
            stride *= sz;
        }
        mb = base(mc);
    }
    if (p->is_causal && S > 1) {
        float *c = malloc(sizeof(float) * (size_t)(L * S));
        if (!c) {
            st = nnm__error(ctx, NNM_E_NOMEM, "attention: out of memory");
            goto done;
        }
        for (int64_t i = 0; i < L; i++)
            for (int64_t j = 0; j < S; j++) c[i * S + j] = j > i ? -INFINITY : 0.0f;
        st = nnm__tensor_from_host(ctx, dev, 2, one, NNM_F32, c, &cm);
        free(c);
        if (st) goto done;
    }
    int64_t bshape[2] = {L, S}, sstr[2] = {S, 1}, mstr[2] = {0, 0}, cstr[2] = {S, 1};
    nnm_tensor_desc sd = sc->desc, md = sc->desc, cd = sc->desc;
    sd.shape = md.shape = cd.shape = bshape;
    sd.strides = sstr;
    md.strides = mstr;
    cd.strides = cstr;
    if (cm) cd = cm->desc, cd.shape = bshape, cd.strides = cstr;
    for (int64_t n = 0; n < N && !st; n++)
        for (int64_t h = 0; h < H && !st; h++) {
            nnm_gemm_args g = {sizeof g, 0, 1, L, S, D, alpha, 0.0f,
                               qb + n * qsn + p->q_offset + h * D, qsl,
                               kb + n * ksn + p->k_offset + h * D, ksl,
                               base(sc), S > 0 ? S : 1};
            if ((st = nnm__backend_check(ctx, be, "gemm", be->vt->gemm(&env.pub, be->state, &g), seq))) break;
            if (S > 0 && mb) { /* scores += the head's mask slice */
                md.data = (void *)(mb + n * mst[0] + h * mst[1]);
                md.byte_offset = 0;
                mstr[0] = mst[2];
                mstr[1] = mst[3];
                nnm_binary_args ba = {sizeof ba, NNM_BINARY_ADD, &sd, &md, &sd};
                if ((st = nnm__backend_check(ctx, be, "binary", be->vt->binary(&env.pub, be->state, &ba), seq))) break;
            }
            if (S > 0 && cm) {
                nnm_binary_args ba = {sizeof ba, NNM_BINARY_ADD, &sd, &cd, &sd};
                if ((st = nnm__backend_check(ctx, be, "binary", be->vt->binary(&env.pub, be->state, &ba), seq))) break;
            }
            if (S > 0) {
                nnm_softmax_args a = {sizeof a, 0, L, S, 1, &sc->desc, &pr->desc};
                if ((st = nnm__backend_check(ctx, be, "softmax", be->vt->softmax(&env.pub, be->state, &a), seq))) break;
            }
            nnm_gemm_args g2 = {sizeof g2, 0, 0, L, Dv, S, 1.0f, 0.0f,
                                S > 0 ? base(pr) : NULL, S > 0 ? S : 1,
                                vb + n * vsn + p->v_offset + h * Dv, vsl,
                                yb + n * osn + h * Dv, osl};
            st = nnm__backend_check(ctx, be, "gemm", be->vt->gemm(&env.pub, be->state, &g2), seq);
        }
done:
    nnm_tensor_release(qc);
    nnm_tensor_release(kc);
    nnm_tensor_release(vc);
    nnm_tensor_release(sc);
    nnm_tensor_release(pr);
    nnm_tensor_release(cm);
    nnm_tensor_release(mc);
    if (st) nnm_tensor_release(y);
    else *out = y;
    return st;
}
