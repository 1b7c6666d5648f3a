/* plugins/cuda/cuda_index_kernels.h - the launchers of index.cu (bodies in
 * cuda_index_body.h). Plain C; each returns a cudaError_t as int. */
#ifndef NNM_CUDA_INDEX_KERNELS_H
#define NNM_CUDA_INDEX_KERNELS_H

#include <cuda_runtime_api.h>

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

int nnm__cuda_launch_index_select(cudaStream_t stream, int64_t outer, int64_t n, int64_t m,
                                  int64_t inner, uint32_t esize, const int64_t *idx,
                                  const void *src, void *dst);
int nnm__cuda_launch_index_add(cudaStream_t stream, int64_t outer, int64_t n, int64_t m,
                               int64_t inner, const int64_t *idx, const float *src, float *dst);

#ifdef __cplusplus
}
#endif

#endif /* NNM_CUDA_INDEX_KERNELS_H */
