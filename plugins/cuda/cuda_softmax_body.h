/* plugins/cuda/cuda_softmax_body.h - the per-row body of softmax and
 * log_softmax (softmax.cu), plain C (see cuda_hd.h).
 *
 * Row r of x viewed as [outer, n, inner] (r = o * inner + i, elements
 * o * n * inner + i + j * inner) as the cpu backend's general loop: the
 * NaN-propagating max m, the sum of expf(x - m) in double; log_softmax
 * writes x - (m + log(sum)), softmax expf(x - m) / sum. A row holding NaN or
 * +inf, or only -inf, comes out NaN (as PyTorch). out may alias x: each
 * element is read before it is written. */
#ifndef NNM_CUDA_SOFTMAX_BODY_H
#define NNM_CUDA_SOFTMAX_BODY_H

#include "cuda_hd.h"

static inline NNM_CUDA_HD void nnm_cuda_softmax_row(int64_t r, int64_t n, int64_t inner, int log_,
                                                    const float *x, float *out) {
    const int64_t o = r / inner, i = r % inner;
    const float *xr = x + o * n * inner + i;
    float *yr = out + o * n * inner + i;
    float m = -INFINITY;
    for (int64_t j = 0; j < n; j++)
        m = nnm_cuda_maxf(m, xr[j * inner]);
    double sum = 0.0;
    for (int64_t j = 0; j < n; j++)
        sum += (double)expf(xr[j * inner] - m);
    if (log_) {
        const double shift = (double)m + log(sum);
        for (int64_t j = 0; j < n; j++)
            yr[j * inner] = (float)((double)xr[j * inner] - shift);
    } else {
        const double inv = 1.0 / sum;
        for (int64_t j = 0; j < n; j++)
            yr[j * inner] = (float)((double)expf(xr[j * inner] - m) * inv);
    }
}

/* ---- long rows in three passes (rows longer than a chunk) ------------------
 * 1. per chunk c of `chunk` elements of row r (t = r * nchunks + c): the
 *    chunk's NaN-propagating max m_c and s_c = sum of expf(x - m_c) in
 *    double (0 for a chunk of only -inf), into part[2 t], part[2 t + 1];
 * 2. per row: M = max of m_c and S = sum of s_c exp(m_c - M) over the chunks
 *    in order, into stats[2 r], stats[2 r + 1]; a non-finite M (NaN, +inf,
 *    or a row of only -inf) is the NaN row of the one-pass rule;
 * 3. per element: x - (M + log S) or expf(x - M) / S.
 * The cut is fixed, so the result does not depend on the launch. */

static inline NNM_CUDA_HD void nnm_cuda_softmax_part(int64_t t, int64_t nchunks, int64_t chunk,
                                                     int64_t n, int64_t inner, const float *x,
                                                     double *part) {
    const int64_t r = t / nchunks, c = t % nchunks;
    const int64_t o = r / inner, i = r % inner;
    const float *xr = x + o * n * inner + i;
    const int64_t j0 = c * chunk, j1 = j0 + chunk < n ? j0 + chunk : n;
    float m = -INFINITY;
    for (int64_t j = j0; j < j1; j++)
        m = nnm_cuda_maxf(m, xr[j * inner]);
    double sum = 0.0;
    if (m != -INFINITY)
        for (int64_t j = j0; j < j1; j++)
            sum += (double)expf(xr[j * inner] - m);
    part[2 * t] = (double)m;
    part[2 * t + 1] = sum;
}

static inline NNM_CUDA_HD void nnm_cuda_softmax_stats(int64_t r, int64_t nchunks,
                                                      const double *part, double *stats) {
    const double *p = part + 2 * r * nchunks;
    float m = -INFINITY;
    for (int64_t c = 0; c < nchunks; c++)
        m = nnm_cuda_maxf(m, (float)p[2 * c]);
    double sum = 0.0;
    if (m > -INFINITY && m < INFINITY) /* NaN fails both */
        for (int64_t c = 0; c < nchunks; c++)
            if (p[2 * c] != -INFINITY)
                sum += p[2 * c + 1] * exp(p[2 * c] - (double)m);
    stats[2 * r] = m > -INFINITY && m < INFINITY ? (double)m : NAN;
    stats[2 * r + 1] = sum;
}

static inline NNM_CUDA_HD void nnm_cuda_softmax_elem(int64_t q, int64_t n, int64_t inner, int log_,
                                                     const double *stats, const float *x,
                                                     float *out) {
    const int64_t o = q / (n * inner), i = q % inner;
    const int64_t r = o * inner + i;
    const double m = stats[2 * r], sum = stats[2 * r + 1];
    if (m != m) {
        out[q] = NAN;
        return;
    }
    if (log_)
        out[q] = (float)((double)x[q] - (m + log(sum)));
    else
        out[q] = (float)((double)expf(x[q] - (float)m) * (1.0 / sum));
}

#endif /* NNM_CUDA_SOFTMAX_BODY_H */
