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

#endif /* NNM_CUDA_SOFTMAX_BODY_H */
