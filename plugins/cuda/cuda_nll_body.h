/* plugins/cuda/cuda_nll_body.h - the bodies of nll and nll_backward
 * (nll.cu), plain C (see cuda_hd.h): the cpu backend's cpu_nll /
 * cpu_nll_backward per row and per element. logp / grad_logp are [n, c]
 * contiguous; target is i64 with stride ts. */
#ifndef NNM_CUDA_NLL_BODY_H
#define NNM_CUDA_NLL_BODY_H

#include "cuda_hd.h"

/* 1 when row i's target is neither in [0, c) nor ignore_index. */
static inline NNM_CUDA_HD int nnm_cuda_nll_bad(int64_t i, int64_t c, const int64_t *target,
                                               int64_t ts, int64_t ignore_index) {
    const int64_t t = target[i * ts];
    return t != ignore_index && (t < 0 || t >= c);
}

/* out[i] = (1 - e) * -logp[i, t] + e * mean_j(-logp[i, j]), 0 if ignored
 * (the smoothing term only when e != 0, so a -inf elsewhere in the row is
 * harmless); the row's sum in double, in order. The target was checked. */
static inline NNM_CUDA_HD void nnm_cuda_nll_row(int64_t i, int64_t c, const float *logp,
                                                const int64_t *target, int64_t ts,
                                                int64_t ignore_index, double e, float *out) {
    const int64_t t = target[i * ts];
    if (t == ignore_index || t < 0 || t >= c) {
        out[i] = 0.0f;
        return;
    }
    const float *row = logp + i * c;
    double v = -(double)row[t];
    if (e != 0.0) {
        double sum = 0.0;
        for (int64_t j = 0; j < c; j++)
            sum += (double)row[j];
        v = (1.0 - e) * v + e * (-sum / (double)c);
    }
    out[i] = (float)v;
}

/* The number of rows not ignored, as f32. */
static inline NNM_CUDA_HD float nnm_cuda_nll_count(int64_t n, const int64_t *target, int64_t ts,
                                                   int64_t ignore_index) {
    int64_t kept = 0;
    for (int64_t i = 0; i < n; i++)
        kept += target[i * ts] != ignore_index;
    return (float)kept;
}

/* grad_logp[k] (k = i * c + j) = grad[i] * (-(1 - e) [j == t] - e / c), 0 for
 * an ignored row; grad has stride gs. */
static inline NNM_CUDA_HD void nnm_cuda_nll_backward_elem(int64_t k, int64_t c, const float *grad,
                                                          int64_t gs, const int64_t *target,
                                                          int64_t ts, int64_t ignore_index,
                                                          double e, float *grad_logp) {
    const int64_t i = k / c, j = k % c;
    const int64_t t = target[i * ts];
    if (t == ignore_index || t < 0 || t >= c) {
        grad_logp[k] = 0.0f;
        return;
    }
    const double off = -e / (double)c;       /* d out[i] / d logp[i, j != t] */
    const double on = -(1.0 - e) + off;      /* d out[i] / d logp[i, t] */
    const double gi = (double)grad[i * gs];
    grad_logp[k] = j == t ? (float)(gi * on) : (e != 0.0 ? (float)(gi * off) : 0.0f);
}

#endif /* NNM_CUDA_NLL_BODY_H */
