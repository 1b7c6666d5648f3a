/* plugins/cuda/nll.cu - nll (one thread per row), its count (one thread)
 * and nll_backward (one thread per element of grad_logp); the target check
 * takes the smallest bad row with atomicMin (order-independent). */
#include "cuda_launch.cuh"
#include "cuda_nll_body.h"
#include "cuda_nll_kernels.h"

namespace {

__global__ void nll_check_k(int64_t n, int64_t c, const int64_t *t, int64_t ts, int64_t ig,
                            unsigned long long *first_bad) {
    NNM_CUDA_GRID_LOOP(i, n) {
        if (nnm_cuda_nll_bad(i, c, t, ts, ig))
            atomicMin(first_bad, (unsigned long long)i);
    }
}

__global__ void nll_k(int64_t n, int64_t c, const float *logp, const int64_t *t, int64_t ts,
                      int64_t ig, double e, float *out) {
    NNM_CUDA_GRID_LOOP(i, n) nnm_cuda_nll_row(i, c, logp, t, ts, ig, e, out);
}

__global__ void nll_count_k(int64_t n, const int64_t *t, int64_t ts, int64_t ig, float *count) {
    if (blockIdx.x == 0 && threadIdx.x == 0)
        count[0] = nnm_cuda_nll_count(n, t, ts, ig);
}

__global__ void nll_backward_k(int64_t total, int64_t c, const float *g, int64_t gs,
                               const int64_t *t, int64_t ts, int64_t ig, double e, float *gl) {
    NNM_CUDA_GRID_LOOP(k, total) nnm_cuda_nll_backward_elem(k, c, g, gs, t, ts, ig, e, gl);
}

} // namespace

extern "C" int nnm__cuda_launch_nll_check(cudaStream_t st, int64_t n, int64_t c,
                                          const int64_t *t, int64_t ts, int64_t ig,
                                          unsigned long long *first_bad) {
    return NNM_CUDA_LAUNCH(nll_check_k, n, st, n, c, t, ts, ig, first_bad);
}

extern "C" int nnm__cuda_launch_nll(cudaStream_t st, int64_t n, int64_t c, const float *logp,
                                    const int64_t *t, int64_t ts, int64_t ig, double e,
                                    float *out, float *count) {
    int rc = NNM_CUDA_LAUNCH(nll_k, n, st, n, c, logp, t, ts, ig, e, out);
    if (rc == 0 && count != NULL) {
        nll_count_k<<<1, 1, 0, st>>>(n, t, ts, ig, count);
        rc = (int)cudaGetLastError();
    }
    return rc;
}

extern "C" int nnm__cuda_launch_nll_backward(cudaStream_t st, int64_t n, int64_t c,
                                             const float *g, int64_t gs, const int64_t *t,
                                             int64_t ts, int64_t ig, double e, float *gl) {
    const int64_t total = n * c;
    return NNM_CUDA_LAUNCH(nll_backward_k, total, st, total, c, g, gs, t, ts, ig, e, gl);
}
