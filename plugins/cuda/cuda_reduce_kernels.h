/* plugins/cuda/cuda_reduce_kernels.h - the reduce kernel's launcher
 * (reduce.cu). Plain C; returns a cudaError_t as int (0 = success). */
#ifndef NNM_CUDA_REDUCE_KERNELS_H
#define NNM_CUDA_REDUCE_KERNELS_H

#include "cuda_reduce_body.h"

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Reductions longer than this many elements take two passes. */
#define NNM_CUDA_RED_CHUNK 2048

/* o[oi] for every oi < n_out (cuda_reduce_body.h): one pass when part is
 * NULL, else chunks of `chunk` elements, nchunks per output, their partial
 * results in part (n_out * nchunks doubles of device memory). */
int nnm__cuda_launch_reduce(cudaStream_t stream, const nnm_cuda_red_plan *P, int64_t n_out,
                            const float *x, float *o, double *part, int64_t nchunks,
                            int64_t chunk);

#ifdef __cplusplus
}
#endif

#endif /* NNM_CUDA_REDUCE_KERNELS_H */
