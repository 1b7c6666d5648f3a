/* plugins/cuda/ctc.cu - CTC: one thread per sample runs the sample's whole
 * recursion (cuda_ctc_body.h). Simple and deterministic; slow for long
 * sequences (a state-parallel kernel is the next step, not needed for
 * correctness). */
#include "cuda_ctc_kernels.h"
#include "cuda_launch.cuh"

namespace {

__global__ void ctc_fwd_k(const nnm_cuda_ctc P) {
    NNM_CUDA_GRID_LOOP(b, P.n) nnm_cuda_ctc_fwd_sample(&P, b);
}

__global__ void ctc_bwd_k(const nnm_cuda_ctc P) {
    NNM_CUDA_GRID_LOOP(b, P.n) nnm_cuda_ctc_bwd_sample(&P, b);
}

} // namespace

extern "C" int nnm__cuda_launch_ctc_loss(cudaStream_t st, const nnm_cuda_ctc *P) {
    return NNM_CUDA_LAUNCH(ctc_fwd_k, P->n, st, *P);
}

extern "C" int nnm__cuda_launch_ctc_loss_backward(cudaStream_t st, const nnm_cuda_ctc *P) {
    return NNM_CUDA_LAUNCH(ctc_bwd_k, P->n, st, *P);
}
