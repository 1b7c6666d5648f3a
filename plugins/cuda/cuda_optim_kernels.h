/* plugins/cuda/cuda_optim_kernels.h - the launchers of optim.cu (bodies in
 * cuda_optim_body.h). Plain C; each returns a cudaError_t as int. */
#ifndef NNM_CUDA_OPTIM_KERNELS_H
#define NNM_CUDA_OPTIM_KERNELS_H

#include "cuda_optim_body.h"

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

int nnm__cuda_launch_sgd(cudaStream_t stream, const nnm_cuda_sgd_k *k, int64_t n, float *p,
                         const float *g, float *buf);
int nnm__cuda_launch_adam(cudaStream_t stream, const nnm_cuda_adam_k *k, int64_t n, float *p,
                          const float *g, float *m, float *v, float *vmax);

#ifdef __cplusplus
}
#endif

#endif /* NNM_CUDA_OPTIM_KERNELS_H */
