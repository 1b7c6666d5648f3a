/* plugins/cuda/softmax.cu - softmax / log_softmax along one dim: one thread
 * per row (cuda_softmax_body.h); deterministic. */
#include "cuda_launch.cuh"
#include "cuda_softmax_body.h"
#include "cuda_softmax_kernels.h"

namespace {

__global__ void softmax_k(int64_t rows, int64_t n, int64_t inner, int log_, const float *x,
                          float *out) {
    NNM_CUDA_GRID_LOOP(r, rows) nnm_cuda_softmax_row(r, n, inner, log_, x, out);
}

} // namespace

extern "C" int nnm__cuda_launch_softmax(cudaStream_t st, int64_t outer, int64_t n, int64_t inner,
                                        int log_, const float *x, float *out) {
    const int64_t rows = outer * inner;
    return NNM_CUDA_LAUNCH(softmax_k, rows, st, rows, n, inner, log_, x, out);
}
