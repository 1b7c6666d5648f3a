/* plugins/cuda/cuda_softmax_kernels.h - the softmax kernel's launcher
 * (softmax.cu). Plain C; returns a cudaError_t as int (0 = success). */
#ifndef NNM_CUDA_SOFTMAX_KERNELS_H
#define NNM_CUDA_SOFTMAX_KERNELS_H

#include <cuda_runtime_api.h>

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Rows longer than this many elements take three passes. */
#define NNM_CUDA_SM_CHUNK 1024

/* softmax (log_ 0) or log_softmax (1) of x [outer, n, inner] along n
 * (cuda_softmax_body.h): one thread per row of n (outer * inner rows) when
 * work is NULL, else chunks of `chunk` with nchunks per row, their partial
 * results in work (2 * rows * (nchunks + 1) doubles of device memory). */
int nnm__cuda_launch_softmax(cudaStream_t stream, int64_t outer, int64_t n, int64_t inner,
                             int log_, const float *x, float *out, double *work, int64_t nchunks,
                             int64_t chunk);

#ifdef __cplusplus
}
#endif

#endif /* NNM_CUDA_SOFTMAX_KERNELS_H */
