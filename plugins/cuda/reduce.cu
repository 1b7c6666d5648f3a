/* plugins/cuda/reduce.cu - sum / mean / max / min over dims: one thread per
 * output element (cuda_reduce_body.h), sums in double in index order, so the
 * result does not depend on the launch (deterministic). */
#include "cuda_launch.cuh"
#include "cuda_reduce_kernels.h"

namespace {

__global__ void reduce_k(const nnm_cuda_red_plan P, int64_t n, const float *x, float *o) {
    NNM_CUDA_GRID_LOOP(i, n) nnm_cuda_reduce_body(&P, i, x, o);
}

} // namespace

extern "C" int nnm__cuda_launch_reduce(cudaStream_t st, const nnm_cuda_red_plan *P, int64_t n,
                                       const float *x, float *o) {
    return NNM_CUDA_LAUNCH(reduce_k, n, st, *P, n, x, o);
}
