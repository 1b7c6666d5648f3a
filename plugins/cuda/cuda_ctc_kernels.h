/* plugins/cuda/cuda_ctc_kernels.h - the launchers of ctc.cu (bodies in
 * cuda_ctc_body.h). Plain C; each returns a cudaError_t as int. */
#ifndef NNM_CUDA_CTC_KERNELS_H
#define NNM_CUDA_CTC_KERNELS_H

#include "cuda_ctc_body.h"

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* one thread per sample */
int nnm__cuda_launch_ctc_loss(cudaStream_t stream, const nnm_cuda_ctc *P);
int nnm__cuda_launch_ctc_loss_backward(cudaStream_t stream, const nnm_cuda_ctc *P);

#ifdef __cplusplus
}
#endif

#endif /* NNM_CUDA_CTC_KERNELS_H */
