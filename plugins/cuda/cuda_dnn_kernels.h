/* plugins/cuda/cuda_dnn_kernels.h - the launchers of dnn_kernels.cu: the
 * pooling kernels (the cuda backend's pool / pool_backward slots, which do
 * not use cuDNN) and the few batch-norm kernels cuDNN has no call for (eval
 * mode's saved statistics and gradients, an empty batch's statistics).
 *
 * Private to the plugin, plain C (gcc and nvcc both compile it). Each
 * launcher queues its kernel(s) on `stream` (of the current device), never
 * synchronises, launches nothing for an empty problem, and returns the
 * launch status (a cudaError_t value; 0 is success). Pointers are device
 * pointers to contiguous f32 (or i64) data.
 */
#ifndef NNM_CUDA_DNN_KERNELS_H
#define NNM_CUDA_DNN_KERNELS_H

#include "cuda_dnn_plan.h" /* nnm__cuda_pool_geom */

#include <cuda_runtime_api.h> /* cudaStream_t; plain C */

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- pooling: PyTorch's CPU semantics, those of the cpu backend's generic
 * kernel (plugins/cpu/pool_kernels.inc), bit for bit: windows walked in
 * row-major order, max takes `v > m || isnan(v)` (first maximum wins, NaN
 * propagates, an empty window gives -inf), avg sums in double and divides
 * once (divisor_override, count_include_pad clipped to the padded input, or
 * the covered count), adaptive windows floor/ceil. */

/* out [outer, *g.out] from x [outer, *g.in]. */
int nnm__cuda_pool_forward(cudaStream_t stream, nnm__cuda_pool_geom g, const float *x, float *out);
/* max only: arg [outer, *g.out] gets the plane index of each window's
 * maximum (the element the forward returned), -1 for an empty window. */
int nnm__cuda_pool_argmax(cudaStream_t stream, nnm__cuda_pool_geom g, const float *x,
                          int64_t *arg);
/* max's gradient: each grad_x element (written in full) is the sum, in
 * output order, of grad_out over the outputs whose argmax it is; +0.0 where
 * there is none. Deterministic: one thread per input element gathers. */
int nnm__cuda_pool_backward_max(cudaStream_t stream, nnm__cuda_pool_geom g, const int64_t *arg,
                                const float *grad_out, float *grad_x);
/* avg / adaptive avg's gradient: each grad_x element (written in full) is
 * the sum, in output order, of (float)(grad_out / divisor) over the windows
 * that cover it. */
int nnm__cuda_pool_backward_avg(cudaStream_t stream, nnm__cuda_pool_geom g, const float *grad_out,
                                float *grad_x);

/* ---- batch norm helpers (x viewed as [n, c, l], contiguous) */

/* p[0..n) = value. */
int nnm__cuda_dnn_fill(cudaStream_t stream, float *p, int64_t n, float value);
/* The statistics of an empty training batch, as the cpu backend: mean 0,
 * invstd 1 / sqrt(eps). */
int nnm__cuda_bn_empty_stats(cudaStream_t stream, int64_t c, double eps, float *save_mean,
                             float *save_invstd);
/* Eval mode's saved statistics: save_mean = running_mean, save_invstd =
 * (float)(1 / sqrt((double)running_var + eps)). */
int nnm__cuda_bn_eval_stats(cudaStream_t stream, int64_t c, const float *running_mean,
                            const float *running_var, double eps, float *save_mean,
                            float *save_invstd);
/* Per channel, sums in double: grad_weight = (float)(sum(g * (x - mean)) *
 * invstd), grad_bias = (float)sum(g); either may be NULL (not both). One
 * block per channel. */
int nnm__cuda_bn_param_grads(cudaStream_t stream, int64_t n, int64_t c, int64_t l, const float *x,
                             const float *grad_out, const float *mean, const float *invstd,
                             float *grad_weight, float *grad_bias);
/* Eval mode's input gradient: grad_x = (w * invstd) * grad_out per channel
 * (w = 1 when weight is NULL). */
int nnm__cuda_bn_eval_grad_x(cudaStream_t stream, int64_t n, int64_t c, int64_t l,
                             const float *grad_out, const float *weight, const float *invstd,
                             float *grad_x);

#ifdef __cplusplus
}
#endif

#endif /* NNM_CUDA_DNN_KERNELS_H */
