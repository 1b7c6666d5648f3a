/* plugins/cuda/cuda_embedding_bag_kernels.h - the launchers of
 * embedding_bag.cu (bodies in cuda_embedding_bag_body.h). Plain C; each
 * returns a cudaError_t as int. */
#ifndef NNM_CUDA_EMBEDDING_BAG_KERNELS_H
#define NNM_CUDA_EMBEDDING_BAG_KERNELS_H

#include "cuda_embedding_bag_body.h"

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* out (and arg) in full */
int nnm__cuda_launch_embedding_bag(cudaStream_t stream, const nnm_cuda_bag *B);
/* adds into gw (when not NULL), writes gpsw (when not NULL) */
int nnm__cuda_launch_embedding_bag_backward(cudaStream_t stream, const nnm_cuda_bag *B);

#ifdef __cplusplus
}
#endif

#endif /* NNM_CUDA_EMBEDDING_BAG_KERNELS_H */
