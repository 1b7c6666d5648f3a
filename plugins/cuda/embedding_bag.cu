/* plugins/cuda/embedding_bag.cu - bag reductions, one thread per output
 * element (deterministic); the gradients scatter-add into the weight's rows
 * with atomicAdd (repeated indices collide: not bit-reproducible), the
 * per-sample weights' gradient one thread per entry;
 * cuda_embedding_bag_body.h. */
#include "cuda_embedding_bag_kernels.h"
#include "cuda_launch.cuh"

namespace {

__global__ void bag_fwd_k(const nnm_cuda_bag B, int64_t n) {
    NNM_CUDA_GRID_LOOP(q, n) nnm_cuda_bag_fwd_elem(&B, q);
}

__global__ void bag_bwd_max_k(const nnm_cuda_bag B, int64_t n) {
    NNM_CUDA_GRID_LOOP(q, n) nnm_cuda_bag_bwd_max_elem(&B, q);
}

__global__ void bag_bwd_sum_k(const nnm_cuda_bag B, int64_t n) {
    NNM_CUDA_GRID_LOOP(q, n) nnm_cuda_bag_bwd_sum_elem(&B, q);
}

__global__ void bag_bwd_psw_k(const nnm_cuda_bag B, int64_t n) {
    NNM_CUDA_GRID_LOOP(i, n) nnm_cuda_bag_bwd_psw_elem(&B, i);
}

} // namespace

extern "C" int nnm__cuda_launch_embedding_bag(cudaStream_t st, const nnm_cuda_bag *B) {
    const int64_t n = B->bags * B->dim;
    return NNM_CUDA_LAUNCH(bag_fwd_k, n, st, *B, n);
}

extern "C" int nnm__cuda_launch_embedding_bag_backward(cudaStream_t st, const nnm_cuda_bag *B) {
    const int64_t n = B->bags * B->dim;
    int rc = 0;
    if (B->gw != NULL)
        rc = B->mode == NNM_REDUCE_MAX ? NNM_CUDA_LAUNCH(bag_bwd_max_k, n, st, *B, n)
                                       : NNM_CUDA_LAUNCH(bag_bwd_sum_k, n, st, *B, n);
    if (rc == 0 && B->gpsw != NULL)
        rc = NNM_CUDA_LAUNCH(bag_bwd_psw_k, B->n, st, *B, B->n);
    return rc;
}
