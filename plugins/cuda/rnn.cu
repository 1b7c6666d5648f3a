/* plugins/cuda/rnn.cu - one time step of a recurrent layer's gate maths and
 * its gradients, one thread per (row, unit); cuda_rnn_body.h. The args
 * (pointers and sizes) travel by value. */
#include "cuda_launch.cuh"
#include "cuda_rnn_body.h"
#include "cuda_rnn_kernels.h"

namespace {

__global__ void rnn_fwd_k(const nnm_rnn_cell_args a, int64_t n) {
    NNM_CUDA_GRID_LOOP(q, n) nnm_cuda_rnn_fwd_elem(&a, q);
}

__global__ void rnn_bwd_k(const nnm_rnn_cell_args a, int64_t n) {
    NNM_CUDA_GRID_LOOP(q, n) nnm_cuda_rnn_bwd_elem(&a, q);
}

} // namespace

extern "C" int nnm__cuda_launch_rnn_cell(cudaStream_t st, const nnm_rnn_cell_args *a) {
    const int64_t n = a->batch * a->hidden;
    return NNM_CUDA_LAUNCH(rnn_fwd_k, n, st, *a, n);
}

extern "C" int nnm__cuda_launch_rnn_cell_backward(cudaStream_t st, const nnm_rnn_cell_args *a) {
    const int64_t n = a->batch * a->hidden;
    return NNM_CUDA_LAUNCH(rnn_bwd_k, n, st, *a, n);
}
