/* plugins/cuda/reduce.cu - sum / mean / max / min over dims
 * (cuda_reduce_body.h): one thread per output element, or, for long
 * reductions, one thread per fixed chunk of an output's elements and a second
 * kernel combining each output's chunks in order. Sums in double; the result
 * does not depend on the launch (deterministic). */
#include "cuda_launch.cuh"
#include "cuda_reduce_kernels.h"

namespace {

__global__ void reduce_k(const nnm_cuda_red_plan P, int64_t n, const float *x, float *o) {
    NNM_CUDA_GRID_LOOP(i, n) nnm_cuda_reduce_body(&P, i, x, o);
}

__global__ void reduce_part_k(const nnm_cuda_red_plan P, int64_t total, int64_t nchunks,
                              int64_t chunk, const float *x, double *part) {
    NNM_CUDA_GRID_LOOP(t, total) nnm_cuda_reduce_part(&P, t, nchunks, chunk, x, part);
}

__global__ void reduce_combine_k(const nnm_cuda_red_plan P, int64_t n, int64_t nchunks,
                                 const double *part, float *o) {
    NNM_CUDA_GRID_LOOP(i, n) nnm_cuda_reduce_combine(&P, i, nchunks, part, o);
}

} // namespace

extern "C" int nnm__cuda_launch_reduce(cudaStream_t st, const nnm_cuda_red_plan *P, int64_t n,
                                       const float *x, float *o, double *part, int64_t nchunks,
                                       int64_t chunk) {
    if (part == NULL)
        return NNM_CUDA_LAUNCH(reduce_k, n, st, *P, n, x, o);
    const int64_t total = n * nchunks;
    int rc = NNM_CUDA_LAUNCH(reduce_part_k, total, st, *P, total, nchunks, chunk, x, part);
    if (rc == 0)
        rc = NNM_CUDA_LAUNCH(reduce_combine_k, n, st, *P, n, nchunks, part, o);
    return rc;
}
