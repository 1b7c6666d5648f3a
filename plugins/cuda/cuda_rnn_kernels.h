/* plugins/cuda/cuda_rnn_kernels.h - the launchers of rnn.cu (bodies in
 * cuda_rnn_body.h). Plain C; each returns a cudaError_t as int. */
#ifndef NNM_CUDA_RNN_KERNELS_H
#define NNM_CUDA_RNN_KERNELS_H

#include <nnmod/plugin.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* one thread per unit of a (checked) call: batch * hidden of them */
int nnm__cuda_launch_rnn_cell(cudaStream_t stream, const nnm_rnn_cell_args *a);
int nnm__cuda_launch_rnn_cell_backward(cudaStream_t stream, const nnm_rnn_cell_args *a);

#ifdef __cplusplus
}
#endif

#endif /* NNM_CUDA_RNN_KERNELS_H */
