/* plugins/cuda/cuda_cast_kernels.h - the launchers of cast.cu (bodies in
 * cuda_cast_body.h). Plain C; each returns a cudaError_t as int. */
#ifndef NNM_CUDA_CAST_KERNELS_H
#define NNM_CUDA_CAST_KERNELS_H

#include "cuda_cast_body.h"

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* kinds: NNM_CUDA_K_*; L: out, x */
int nnm__cuda_launch_cast(cudaStream_t stream, const nnm_strided_layout *L, int64_t n, int kx,
                          const void *x, int ko, void *out);
int nnm__cuda_launch_arg_reduce(cudaStream_t stream, int64_t outer, int64_t n, int64_t inner,
                                int is_max, const float *x, int64_t *out);

#ifdef __cplusplus
}
#endif

#endif /* NNM_CUDA_CAST_KERNELS_H */
