/* plugins/cuda/layer_norm.cu - layer normalisation: one thread per row
 * (forward, grad_x), one per column (grad_weight, grad_bias): no atomics,
 * deterministic; cuda_layer_norm_body.h. */
#include "cuda_launch.cuh"
#include "cuda_layer_norm_body.h"
#include "cuda_layer_norm_kernels.h"

namespace {

__global__ void ln_fwd_k(int64_t rows, int64_t C, float eps, const float *x, const float *r,
                         const float *w, const float *b, float *y, float *mean, float *rstd) {
    NNM_CUDA_GRID_LOOP(row, rows) nnm_cuda_ln_fwd_row(row, C, eps, x, r, w, b, y, mean, rstd);
}

__global__ void ln_bwd_row_k(int64_t rows, int64_t C, const float *x, const float *r,
                             const float *w, const float *g, const float *mean, const float *rstd,
                             float *gx) {
    NNM_CUDA_GRID_LOOP(row, rows) nnm_cuda_ln_bwd_row(row, C, x, r, w, g, mean, rstd, gx);
}

__global__ void ln_bwd_col_k(int64_t rows, int64_t C, const float *x, const float *r,
                             const float *g, const float *mean, const float *rstd, float *gw,
                             float *gb) {
    NNM_CUDA_GRID_LOOP(col, C) nnm_cuda_ln_bwd_col(col, rows, C, x, r, g, mean, rstd, gw, gb);
}

} // namespace

extern "C" int nnm__cuda_launch_layer_norm(cudaStream_t st, int64_t rows, int64_t cols, float eps,
                                           const float *x, const float *r, const float *w,
                                           const float *b, float *y, float *mean, float *rstd) {
    return NNM_CUDA_LAUNCH(ln_fwd_k, rows, st, rows, cols, eps, x, r, w, b, y, mean, rstd);
}

extern "C" int nnm__cuda_launch_layer_norm_backward(cudaStream_t st, int64_t rows, int64_t cols,
                                                    const float *x, const float *r,
                                                    const float *w, const float *g,
                                                    const float *mean, const float *rstd,
                                                    float *gx, float *gw, float *gb) {
    int rc = 0;
    if (gx != NULL)
        rc = NNM_CUDA_LAUNCH(ln_bwd_row_k, rows, st, rows, cols, x, r, w, g, mean, rstd, gx);
    if (rc == 0 && (gw != NULL || gb != NULL))
        rc = NNM_CUDA_LAUNCH(ln_bwd_col_k, cols, st, rows, cols, x, r, g, mean, rstd, gw, gb);
    return rc;
}
