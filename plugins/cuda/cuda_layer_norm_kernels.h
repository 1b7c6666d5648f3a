/* plugins/cuda/cuda_layer_norm_kernels.h - the launchers of layer_norm.cu
 * (bodies in cuda_layer_norm_body.h). Plain C; each returns a cudaError_t
 * as int. Pointers that may be NULL are those the bodies take as NULL. */
#ifndef NNM_CUDA_LAYER_NORM_KERNELS_H
#define NNM_CUDA_LAYER_NORM_KERNELS_H

#include <cuda_runtime_api.h>

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

int nnm__cuda_launch_layer_norm(cudaStream_t stream, int64_t rows, int64_t cols, float eps,
                                const float *x, const float *r, const float *w, const float *b,
                                float *y, float *mean, float *rstd);
/* grad_x (one thread per row) when gx is not NULL; grad_weight / grad_bias
 * (one thread per column) when either is not NULL. */
int nnm__cuda_launch_layer_norm_backward(cudaStream_t stream, int64_t rows, int64_t cols,
                                         const float *x, const float *r, const float *w,
                                         const float *g, const float *mean, const float *rstd,
                                         float *gx, float *gweight, float *gbias);

#ifdef __cplusplus
}
#endif

#endif /* NNM_CUDA_LAYER_NORM_KERNELS_H */
