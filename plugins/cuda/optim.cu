/* plugins/cuda/optim.cu - SGD and Adam/AdamW steps, one thread per element
 * (cuda_optim_body.h). The bodies' fmaf calls are the only fused operations:
 * the file is built with -fmad=false so that nvcc contracts nothing else and
 * the steps keep torch's (and the cpu backend's) float rounding. */
#include "cuda_launch.cuh"
#include "cuda_optim_kernels.h"

namespace {

__global__ void sgd_k(const nnm_cuda_sgd_k k, int64_t n, float *p, const float *g, float *buf) {
    NNM_CUDA_GRID_LOOP(i, n) nnm_cuda_sgd_elem(&k, i, p, g, buf);
}

__global__ void adam_k(const nnm_cuda_adam_k k, int64_t n, float *p, const float *g, float *m,
                       float *v, float *vmax) {
    NNM_CUDA_GRID_LOOP(i, n) nnm_cuda_adam_elem(&k, i, p, g, m, v, vmax);
}

} // namespace

extern "C" int nnm__cuda_launch_sgd(cudaStream_t st, const nnm_cuda_sgd_k *k, int64_t n, float *p,
                                    const float *g, float *buf) {
    return NNM_CUDA_LAUNCH(sgd_k, n, st, *k, n, p, g, buf);
}

extern "C" int nnm__cuda_launch_adam(cudaStream_t st, const nnm_cuda_adam_k *k, int64_t n,
                                     float *p, const float *g, float *m, float *v, float *vmax) {
    return NNM_CUDA_LAUNCH(adam_k, n, st, *k, n, p, g, m, v, vmax);
}
