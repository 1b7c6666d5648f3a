/* plugins/cuda/index.cu - index_select (one thread per dst element) and
 * index_add (one thread per src element, atomicAdd into dst: repeated
 * indices sum in an order the scheduler picks, so the result is not
 * bit-reproducible); cuda_index_body.h. */
#include "cuda_index_body.h"
#include "cuda_index_kernels.h"
#include "cuda_launch.cuh"

namespace {

__global__ void index_select_k(int64_t total, int64_t n, int64_t m, int64_t inner, uint32_t esize,
                               const int64_t *idx, const char *src, char *dst) {
    NNM_CUDA_GRID_LOOP(q, total) nnm_cuda_index_select_elem(q, n, m, inner, esize, idx, src, dst);
}

__global__ void index_add_k(int64_t total, int64_t n, int64_t m, int64_t inner,
                            const int64_t *idx, const float *src, float *dst) {
    NNM_CUDA_GRID_LOOP(q, total) nnm_cuda_index_add_elem(q, n, m, inner, idx, src, dst);
}

} // namespace

extern "C" int nnm__cuda_launch_index_select(cudaStream_t st, int64_t outer, int64_t n, int64_t m,
                                             int64_t inner, uint32_t esize, const int64_t *idx,
                                             const void *src, void *dst) {
    const int64_t total = outer * m * inner;
    return NNM_CUDA_LAUNCH(index_select_k, total, st, total, n, m, inner, esize, idx,
                           (const char *)src, (char *)dst);
}

extern "C" int nnm__cuda_launch_index_add(cudaStream_t st, int64_t outer, int64_t n, int64_t m,
                                          int64_t inner, const int64_t *idx, const float *src,
                                          float *dst) {
    const int64_t total = outer * m * inner;
    return NNM_CUDA_LAUNCH(index_add_k, total, st, total, n, m, inner, idx, src, dst);
}
