/* plugins/cuda/im2col.cu - im2col (one thread per column entry) and col2im
 * (one thread per image element, a gather: deterministic, no atomics);
 * cuda_im2col_body.h. */
#include "cuda_im2col_kernels.h"
#include "cuda_launch.cuh"

namespace {

__global__ void im2col_k(const nnm_cuda_geom3 G, int64_t n, const float *im, float *col) {
    NNM_CUDA_GRID_LOOP(q, n) nnm_cuda_im2col_elem(&G, q, im, col);
}

__global__ void col2im_k(const nnm_cuda_geom3 G, int64_t n, const float *col, float *im) {
    NNM_CUDA_GRID_LOOP(q, n) nnm_cuda_col2im_elem(&G, q, col, im);
}

} // namespace

extern "C" int nnm__cuda_launch_im2col(cudaStream_t st, const nnm_cuda_geom3 *G, int64_t n,
                                       const float *im, float *col) {
    return NNM_CUDA_LAUNCH(im2col_k, n, st, *G, n, im, col);
}

extern "C" int nnm__cuda_launch_col2im(cudaStream_t st, const nnm_cuda_geom3 *G, int64_t n,
                                       const float *col, float *im) {
    return NNM_CUDA_LAUNCH(col2im_k, n, st, *G, n, col, im);
}
