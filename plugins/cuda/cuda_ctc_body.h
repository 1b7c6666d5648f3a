/* plugins/cuda/cuda_ctc_body.h - the per-sample bodies of ctc_loss and
 * ctc_loss_backward (ctc.cu), plain C (see cuda_hd.h): the cpu backend's
 * recursions (plugins/cpu/ctc_kernels.inc) in log space, float with one log
 * per state and the final sum in double, one sample per call. The runtime
 * checked every length and target (ops_ctc.c). */
#ifndef NNM_CUDA_CTC_BODY_H
#define NNM_CUDA_CTC_BODY_H

#include "cuda_hd.h"

#include <stddef.h>

typedef struct nnm_cuda_ctc {
    int64_t t, n, c, s, blank;
    int32_t zero_infinity;
    const float *lp;      /* [t, n, c] */
    const int64_t *tgs;   /* [n, s] */
    const int64_t *il;    /* [n] */
    const int64_t *tl;    /* [n] */
    float *nll;           /* [n] */
    float *alpha;         /* [n, t, 2 s + 1] */
    const float *go;      /* [n] with stride go_stride (backward) */
    int64_t go_stride;
    float *grad;          /* [t, n, c] (backward) */
    float *work;          /* backward: n * (2 (2 s + 1) + c) floats of scratch */
} nnm_cuda_ctc;

/* log(exp(a) + exp(b)) without overflow; -inf + -inf stays -inf */
static inline NNM_CUDA_HD double nnm_cuda_lse2(double a, double b) {
    if (a == -INFINITY)
        return b;
    if (b == -INFINITY)
        return a;
    const double m = a > b ? a : b;
    return m + log(exp(a - m) + exp(b - m));
}

/* log(exp(a) + exp(b) + exp(c)) in float, one log; -inf when all are */
static inline NNM_CUDA_HD float nnm_cuda_lse3f(float a, float b, float c) {
    float m = a > b ? a : b;
    m = m > c ? m : c;
    if (m == -INFINITY)
        return -INFINITY;
    return m + logf(expf(a - m) + expf(b - m) + expf(c - m));
}

/* l'[k]: blank at even k, the target's k/2-th label at odd k */
static inline NNM_CUDA_HD int64_t nnm_cuda_ctc_label(const int64_t *tg, int64_t k, int64_t blank) {
    return (k & 1) ? tg[k >> 1] : blank;
}

static inline NNM_CUDA_HD void nnm_cuda_ctc_fwd_sample(const nnm_cuda_ctc *P, int64_t b) {
    const int64_t T = P->t, N = P->n, C = P->c, W = 2 * P->s + 1, blank = P->blank;
    const int64_t len = P->il[b], L = 2 * P->tl[b] + 1;
    const int64_t *tg = P->tgs + b * P->s;
    const float *lp = P->lp;
    float *al = P->alpha + b * T * W;
    if (len == 0) {
        P->nll[b] = P->tl[b] == 0 ? 0.0f : (P->zero_infinity ? 0.0f : INFINITY);
        return;
    }
    for (int64_t k = 0; k < L; k++)
        al[k] = -INFINITY;
    al[0] = lp[b * C + blank];
    if (L > 1)
        al[1] = lp[b * C + tg[0]];
    for (int64_t i = 1; i < len; i++) {
        const float *prev = al + (i - 1) * W;
        float *cur = al + i * W;
        const float *lpi = lp + (i * N + b) * C;
        for (int64_t k = 0; k < L; k++) {
            const int64_t lk = nnm_cuda_ctc_label(tg, k, blank);
            const float a1 = k >= 1 ? prev[k - 1] : -INFINITY;
            const float a2 = k >= 2 && lk != blank && lk != nnm_cuda_ctc_label(tg, k - 2, blank)
                                 ? prev[k - 2]
                                 : -INFINITY;
            const float v = nnm_cuda_lse3f(prev[k], a1, a2);
            cur[k] = v == -INFINITY ? -INFINITY : v + lpi[lk];
        }
    }
    const float *last = al + (len - 1) * W;
    const double ll = nnm_cuda_lse2(last[L - 1], L > 1 ? (double)last[L - 2] : -INFINITY);
    P->nll[b] = ll == -INFINITY ? (P->zero_infinity ? 0.0f : INFINITY) : (float)-ll;
}

/* grad[i, b, :] for every i < t (zeros from the input length on). */
static inline NNM_CUDA_HD void nnm_cuda_ctc_bwd_sample(const nnm_cuda_ctc *P, int64_t b) {
    const int64_t T = P->t, N = P->n, C = P->c, W = 2 * P->s + 1, blank = P->blank;
    const int64_t len = P->il[b], L = 2 * P->tl[b] + 1;
    float *grad = P->grad;
    for (int64_t i = 0; i < T; i++)
        for (int64_t c = 0; c < C; c++)
            grad[(i * N + b) * C + c] = 0.0f;
    if (len == 0)
        return;
    const int64_t *tg = P->tgs + b * P->s;
    const float *lp = P->lp;
    const float *al = P->alpha + b * T * W;
    const float *last = al + (len - 1) * W;
    const double ll = nnm_cuda_lse2(last[L - 1], L > 1 ? (double)last[L - 2] : -INFINITY);
    const double g = (double)P->go[b * P->go_stride];
    if (ll == -INFINITY) { /* no alignment: inf loss */
        const float v = P->zero_infinity ? 0.0f : NAN;
        for (int64_t i = 0; i < len; i++)
            for (int64_t c = 0; c < C; c++)
                grad[(i * N + b) * C + c] = v;
        return;
    }
    float *beta = P->work + b * (2 * W + C), *next = beta + W, *acc = beta + 2 * W;
    for (int64_t i = len - 1; i >= 0; i--) {
        const float *lpi = lp + (i * N + b) * C;
        for (int64_t k = 0; k < L; k++) {
            const int64_t lk = nnm_cuda_ctc_label(tg, k, blank);
            float v;
            if (i == len - 1) {
                v = (k >= L - 2) ? 0.0f : -INFINITY;
            } else {
                const float b1 = k + 1 < L ? next[k + 1] : -INFINITY;
                const float b2 =
                    k + 2 < L && lk != blank && nnm_cuda_ctc_label(tg, k + 2, blank) != lk
                        ? next[k + 2]
                        : -INFINITY;
                v = nnm_cuda_lse3f(next[k], b1, b2);
            }
            beta[k] = v == -INFINITY ? -INFINITY : v + lpi[lk];
        }
        for (int64_t c = 0; c < C; c++)
            acc[c] = 0.0f;
        const float *ai = al + i * W;
        const float llf = (float)ll, gf = (float)g;
        for (int64_t k = 0; k < L; k++) {
            const int64_t lk = nnm_cuda_ctc_label(tg, k, blank);
            if (ai[k] != -INFINITY && beta[k] != -INFINITY)
                acc[lk] += expf(ai[k] + beta[k] - llf - lpi[lk]);
        }
        for (int64_t c = 0; c < C; c++)
            grad[(i * N + b) * C + c] = -acc[c] * gf;
        for (int64_t k = 0; k < L; k++)
            next[k] = beta[k];
    }
}

#endif /* NNM_CUDA_CTC_BODY_H */
