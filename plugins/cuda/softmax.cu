/* plugins/cuda/softmax.cu - softmax / log_softmax along one dim
 * (cuda_softmax_body.h): one thread per row, or, for rows longer than
 * NNM_CUDA_SM_CHUNK, one thread per fixed chunk, per row, then per element;
 * deterministic. */
#include "cuda_launch.cuh"
#include "cuda_softmax_body.h"
#include "cuda_softmax_kernels.h"

namespace {

__global__ void softmax_k(int64_t rows, int64_t n, int64_t inner, int log_, const float *x,
                          float *out) {
    NNM_CUDA_GRID_LOOP(r, rows) nnm_cuda_softmax_row(r, n, inner, log_, x, out);
}

__global__ void softmax_part_k(int64_t total, int64_t nchunks, int64_t chunk, int64_t n,
                               int64_t inner, const float *x, double *part) {
    NNM_CUDA_GRID_LOOP(t, total) nnm_cuda_softmax_part(t, nchunks, chunk, n, inner, x, part);
}

__global__ void softmax_stats_k(int64_t rows, int64_t nchunks, const double *part,
                                double *stats) {
    NNM_CUDA_GRID_LOOP(r, rows) nnm_cuda_softmax_stats(r, nchunks, part, stats);
}

__global__ void softmax_elem_k(int64_t total, int64_t n, int64_t inner, int log_,
                               const double *stats, const float *x, float *out) {
    NNM_CUDA_GRID_LOOP(q, total) nnm_cuda_softmax_elem(q, n, inner, log_, stats, x, out);
}

} // namespace

extern "C" int nnm__cuda_launch_softmax(cudaStream_t st, int64_t outer, int64_t n, int64_t inner,
                                        int log_, const float *x, float *out, double *work,
                                        int64_t nchunks, int64_t chunk) {
    const int64_t rows = outer * inner;
    if (work == NULL)
        return NNM_CUDA_LAUNCH(softmax_k, rows, st, rows, n, inner, log_, x, out);
    double *part = work, *stats = work + 2 * rows * nchunks;
    const int64_t parts = rows * nchunks, total = rows * n;
    int rc = NNM_CUDA_LAUNCH(softmax_part_k, parts, st, parts, nchunks, chunk, n, inner, x, part);
    if (rc == 0)
        rc = NNM_CUDA_LAUNCH(softmax_stats_k, rows, st, rows, nchunks, part, stats);
    if (rc == 0)
        rc = NNM_CUDA_LAUNCH(softmax_elem_k, total, st, total, n, inner, log_, stats, x, out);
    return rc;
}
