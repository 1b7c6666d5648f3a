/* plugins/cuda/cuda_nll_kernels.h - the launchers of nll.cu (bodies in
 * cuda_nll_body.h). Plain C; each returns a cudaError_t as int. */
#ifndef NNM_CUDA_NLL_KERNELS_H
#define NNM_CUDA_NLL_KERNELS_H

#include <cuda_runtime_api.h>

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* *first_bad = the smallest row whose target is out of range and not
 * ignore_index (left as it was, UINT64_MAX from the caller, when none). */
int nnm__cuda_launch_nll_check(cudaStream_t stream, int64_t n, int64_t c, const int64_t *target,
                               int64_t ts, int64_t ignore_index, unsigned long long *first_bad);
/* out [n] and, when count is not NULL, count[0]. */
int nnm__cuda_launch_nll(cudaStream_t stream, int64_t n, int64_t c, const float *logp,
                         const int64_t *target, int64_t ts, int64_t ignore_index, double e,
                         float *out, float *count);
/* grad_logp [n, c] in full. */
int nnm__cuda_launch_nll_backward(cudaStream_t stream, int64_t n, int64_t c, const float *grad,
                                  int64_t gs, const int64_t *target, int64_t ts,
                                  int64_t ignore_index, double e, float *grad_logp);

#ifdef __cplusplus
}
#endif

#endif /* NNM_CUDA_NLL_KERNELS_H */
