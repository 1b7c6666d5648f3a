/* plugins/cuda/cuda_im2col_kernels.h - the launchers of im2col.cu (bodies
 * in cuda_im2col_body.h). Plain C; each returns a cudaError_t as int. */
#ifndef NNM_CUDA_IM2COL_KERNELS_H
#define NNM_CUDA_IM2COL_KERNELS_H

#include "cuda_im2col_body.h"

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* col in full: n = channels * prod(k) * prod(out) entries */
int nnm__cuda_launch_im2col(cudaStream_t stream, const nnm_cuda_geom3 *G, int64_t n,
                            const float *im, float *col);
/* im in full: n = channels * prod(in) elements */
int nnm__cuda_launch_col2im(cudaStream_t stream, const nnm_cuda_geom3 *G, int64_t n,
                            const float *col, float *im);

#ifdef __cplusplus
}
#endif

#endif /* NNM_CUDA_IM2COL_KERNELS_H */
