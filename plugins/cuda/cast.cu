/* plugins/cuda/cast.cu - dtype conversion (one thread per element) and
 * argmax/argmin (one thread per output element); cuda_cast_body.h. */
#include "cuda_cast_kernels.h"
#include "cuda_launch.cuh"

namespace {

__global__ void cast_k(const nnm_strided_layout L, int64_t n, int kx, const void *x, int ko,
                       void *out) {
    NNM_CUDA_GRID_LOOP(e, n) nnm_cuda_cast_elem(&L, e, kx, x, ko, out);
}

__global__ void arg_reduce_k(int64_t rows, int64_t n, int64_t inner, int is_max, const float *x,
                             int64_t *out) {
    NNM_CUDA_GRID_LOOP(r, rows) nnm_cuda_arg_reduce_elem(r, n, inner, is_max, x, out);
}

} // namespace

extern "C" int nnm__cuda_launch_cast(cudaStream_t st, const nnm_strided_layout *L, int64_t n,
                                     int kx, const void *x, int ko, void *out) {
    return NNM_CUDA_LAUNCH(cast_k, n, st, *L, n, kx, x, ko, out);
}

extern "C" int nnm__cuda_launch_arg_reduce(cudaStream_t st, int64_t outer, int64_t n,
                                           int64_t inner, int is_max, const float *x,
                                           int64_t *out) {
    const int64_t rows = outer * inner;
    return NNM_CUDA_LAUNCH(arg_reduce_k, rows, st, rows, n, inner, is_max, x, out);
}
