/* plugins/cuda/cuda_dnn_bn_body.h - the batch-norm helper kernels'
 * per-element maths (what cuDNN has no call for: eval mode's saved
 * statistics and input gradient, the weight and bias gradients alone, an
 * empty batch's statistics), compiled by nvcc into dnn_kernels.cu and by
 * the C compiler into tests/cuda/test_cuda_dnn_plan.c, which checks them on
 * the CPU against the cpu backend's batch_norm slots (plugins/cpu/
 * bn_kernels.inc: the same formulas, the same float rounding). x, g and gx
 * are [n, C, l] contiguous.
 */
#ifndef NNM_CUDA_DNN_BN_BODY_H
#define NNM_CUDA_DNN_BN_BODY_H

#include <math.h>
#include <stdint.h>

#ifndef DNN_HD
#if defined(__CUDACC__)
#define DNN_HD static __host__ __device__ __forceinline__
#else
#define DNN_HD static inline
#endif
#endif

/* Eval mode's saved invstd from the running variance, rounded once. */
DNN_HD float dnn_bn_invstd(float running_var, double eps) {
    return (float)(1.0 / sqrt((double)running_var + eps));
}

/* An empty training batch's invstd (the cpu backend's: the variance is 0). */
DNN_HD float dnn_bn_empty_invstd(double eps) {
    return (float)(1.0 / sqrt(eps));
}

/* Channel ch's sums over positions j = start, start + step, ... < n * l, in
 * double, added to *sg (sum g) and *sgx (sum g * (x - mean)). */
DNN_HD void dnn_bn_sums(const float *x, const float *g, int64_t n, int64_t C, int64_t l,
                        int64_t ch, double mean, int64_t start, int64_t step, double *sg,
                        double *sgx) {
    const int64_t count = n * l;
    for (int64_t j = start; j < count; j += step) {
        const int64_t at = ((j / l) * C + ch) * l + j % l;
        const double gj = (double)g[at];
        *sg += gj;
        *sgx += gj * ((double)x[at] - mean);
    }
}

/* The weight gradient from the channel's sum of g * (x - mean). */
DNN_HD float dnn_bn_grad_weight(double sgx, float invstd) {
    return (float)(sgx * (double)invstd);
}

/* Eval mode's input gradient at flat index i: (w * invstd) * g, the product
 * rounded to float first as the cpu backend's k1. */
DNN_HD float dnn_bn_eval_grad_x_one(const float *g, const float *w, const float *invstd, int64_t C,
                                    int64_t l, int64_t i) {
    const int64_t ch = (i / l) % C;
    const float k1 = (w != 0 ? w[ch] : 1.0f) * invstd[ch];
    return k1 * g[i];
}

#endif /* NNM_CUDA_DNN_BN_BODY_H */
