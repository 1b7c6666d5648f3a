/* plugins/cuda/dnn_kernels.cu - pooling and batch-norm helper kernels (see
 * cuda_dnn_kernels.h for each one's contract).
 *
 * Pooling is the cpu backend's generic kernel (plugins/cpu/pool_kernels.inc)
 * with one thread per output element (forward, argmax) or per input element
 * (gradients, which gather instead of scattering: no atomics, the same sums
 * in the same order as the cpu backend, so the results are the same bits).
 * The per-element bodies are cuda_dnn_pool_body.h, which the CPU test
 * tests/cuda/test_cuda_dnn_plan.c also runs against the cpu backend.
 * cuDNN's pooling is not used: it has no dilation, no divisor_override, no
 * adaptive windows, no ceil-mode clipping of the count_include_pad divisor,
 * and its max backward does not promise PyTorch's first-maximum rule.
 *
 * 64-bit indices throughout, grid-stride loops, no fast math.
 */
#include "cuda_dnn_kernels.h"
#include "cuda_dnn_pool_body.h"
#include "cuda_dnn_bn_body.h"

#include <cuda_runtime.h>

#include <stdint.h>

namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 65536; /* grid-stride loops cover the rest */

unsigned blocks_for(int64_t n) {
    int64_t b = (n + kThreads - 1) / kThreads;
    return (unsigned)(b < kMaxBlocks ? b : kMaxBlocks);
}

/* mode 0: out gets the pooled value; mode 1: arg gets the argmax (max only). */
__global__ void pool_forward_kernel(nnm__cuda_pool_geom g, const float *x, float *out,
                                    int64_t *arg, int mode) {
    const int64_t plane_in = g.in[0] * g.in[1] * g.in[2];
    const int64_t plane_out = g.out[0] * g.out[1] * g.out[2];
    const int64_t total = g.outer * plane_out;
    for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (int64_t)blockDim.x * gridDim.x) {
        const int64_t pl = idx / plane_out, oi = idx % plane_out;
        int64_t best = -1;
        const float v = dnn_pool_forward_one(&g, x + pl * plane_in, oi, &best);
        if (mode == 1)
            arg[idx] = best;
        else
            out[idx] = v;
    }
}

/* max: grad_x[q] = sum over outputs (in order) whose argmax is q. */
__global__ void pool_backward_max_kernel(nnm__cuda_pool_geom g, const int64_t *arg,
                                         const float *grad_out, float *grad_x) {
    const int64_t plane_in = g.in[0] * g.in[1] * g.in[2];
    const int64_t plane_out = g.out[0] * g.out[1] * g.out[2];
    const int64_t total = g.outer * plane_in;
    for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (int64_t)blockDim.x * gridDim.x) {
        const int64_t pl = idx / plane_in, qi = idx % plane_in;
        grad_x[idx] = dnn_pool_backward_max_one(&g, arg + pl * plane_out, grad_out + pl * plane_out, qi);
    }
}

/* avg, adaptive avg: grad_x[q] = sum over covering windows (in order) of
 * (float)(grad_out / divisor). */
__global__ void pool_backward_avg_kernel(nnm__cuda_pool_geom g, const float *grad_out,
                                         float *grad_x) {
    const int64_t plane_in = g.in[0] * g.in[1] * g.in[2];
    const int64_t plane_out = g.out[0] * g.out[1] * g.out[2];
    const int64_t total = g.outer * plane_in;
    for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (int64_t)blockDim.x * gridDim.x) {
        const int64_t pl = idx / plane_in, qi = idx % plane_in;
        grad_x[idx] = dnn_pool_backward_avg_one(&g, grad_out + pl * plane_out, qi);
    }
}

/* ---- batch norm helpers ---------------------------------------------------- */

__global__ void fill_kernel(float *p, int64_t n, float v) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)blockDim.x * gridDim.x)
        p[i] = v;
}

/* mode 0: empty batch (mean 0, invstd 1/sqrt(eps)); 1: from the running stats. */
__global__ void bn_stats_kernel(int64_t c, const float *rm, const float *rv, double eps, float *sm,
                                float *si, int mode) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < c;
         i += (int64_t)blockDim.x * gridDim.x) {
        if (mode == 0) {
            sm[i] = 0.0f;
            si[i] = dnn_bn_empty_invstd(eps);
        } else {
            sm[i] = rm[i];
            si[i] = dnn_bn_invstd(rv[i], eps);
        }
    }
}

/* One block per channel: sum(g) and sum(g * (x - mean)) in double. */
__global__ void bn_param_grads_kernel(int64_t n, int64_t C, int64_t l, const float *x,
                                      const float *g, const float *mean, const float *invstd,
                                      float *gw, float *gb) {
    __shared__ double s1[kThreads], s2[kThreads];
    const int64_t ch = blockIdx.x;
    double a1 = 0.0, a2 = 0.0;
    dnn_bn_sums(x, g, n, C, l, ch, (double)mean[ch], threadIdx.x, blockDim.x, &a1, &a2);
    s1[threadIdx.x] = a1;
    s2[threadIdx.x] = a2;
    __syncthreads();
    for (int w = kThreads / 2; w > 0; w /= 2) {
        if ((int)threadIdx.x < w) {
            s1[threadIdx.x] += s1[threadIdx.x + w];
            s2[threadIdx.x] += s2[threadIdx.x + w];
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        if (gw != nullptr)
            gw[ch] = dnn_bn_grad_weight(s2[0], invstd[ch]);
        if (gb != nullptr)
            gb[ch] = (float)s1[0];
    }
}

__global__ void bn_eval_grad_x_kernel(int64_t total, int64_t C, int64_t l, const float *g,
                                      const float *w, const float *invstd, float *gx) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (int64_t)blockDim.x * gridDim.x) {
        gx[i] = dnn_bn_eval_grad_x_one(g, w, invstd, C, l, i);
    }
}

int launched() {
    return (int)cudaGetLastError();
}

} // namespace

extern "C" {

int nnm__cuda_pool_forward(cudaStream_t stream, nnm__cuda_pool_geom g, const float *x, float *out) {
    const int64_t total = g.outer * g.out[0] * g.out[1] * g.out[2];
    if (total <= 0)
        return 0;
    pool_forward_kernel<<<blocks_for(total), kThreads, 0, stream>>>(g, x, out, nullptr, 0);
    return launched();
}

int nnm__cuda_pool_argmax(cudaStream_t stream, nnm__cuda_pool_geom g, const float *x,
                          int64_t *arg) {
    const int64_t total = g.outer * g.out[0] * g.out[1] * g.out[2];
    if (total <= 0)
        return 0;
    pool_forward_kernel<<<blocks_for(total), kThreads, 0, stream>>>(g, x, nullptr, arg, 1);
    return launched();
}

int nnm__cuda_pool_backward_max(cudaStream_t stream, nnm__cuda_pool_geom g, const int64_t *arg,
                                const float *grad_out, float *grad_x) {
    const int64_t total = g.outer * g.in[0] * g.in[1] * g.in[2];
    if (total <= 0)
        return 0;
    pool_backward_max_kernel<<<blocks_for(total), kThreads, 0, stream>>>(g, arg, grad_out, grad_x);
    return launched();
}

int nnm__cuda_pool_backward_avg(cudaStream_t stream, nnm__cuda_pool_geom g, const float *grad_out,
                                float *grad_x) {
    const int64_t total = g.outer * g.in[0] * g.in[1] * g.in[2];
    if (total <= 0)
        return 0;
    pool_backward_avg_kernel<<<blocks_for(total), kThreads, 0, stream>>>(g, grad_out, grad_x);
    return launched();
}

int nnm__cuda_dnn_fill(cudaStream_t stream, float *p, int64_t n, float value) {
    if (n <= 0)
        return 0;
    fill_kernel<<<blocks_for(n), kThreads, 0, stream>>>(p, n, value);
    return launched();
}

int nnm__cuda_bn_empty_stats(cudaStream_t stream, int64_t c, double eps, float *save_mean,
                             float *save_invstd) {
    if (c <= 0)
        return 0;
    bn_stats_kernel<<<blocks_for(c), kThreads, 0, stream>>>(c, nullptr, nullptr, eps, save_mean,
                                                            save_invstd, 0);
    return launched();
}

int nnm__cuda_bn_eval_stats(cudaStream_t stream, int64_t c, const float *running_mean,
                            const float *running_var, double eps, float *save_mean,
                            float *save_invstd) {
    if (c <= 0)
        return 0;
    bn_stats_kernel<<<blocks_for(c), kThreads, 0, stream>>>(c, running_mean, running_var, eps,
                                                            save_mean, save_invstd, 1);
    return launched();
}

int nnm__cuda_bn_param_grads(cudaStream_t stream, int64_t n, int64_t c, int64_t l, const float *x,
                             const float *grad_out, const float *mean, const float *invstd,
                             float *grad_weight, float *grad_bias) {
    if (c <= 0 || (grad_weight == nullptr && grad_bias == nullptr))
        return 0;
    if (c > 0x7fffffff)
        return (int)cudaErrorInvalidConfiguration;
    if (n * l == 0) { /* nothing summed: zeros */
        if (grad_weight != nullptr)
            fill_kernel<<<blocks_for(c), kThreads, 0, stream>>>(grad_weight, c, 0.0f);
        if (grad_bias != nullptr)
            fill_kernel<<<blocks_for(c), kThreads, 0, stream>>>(grad_bias, c, 0.0f);
        return launched();
    }
    bn_param_grads_kernel<<<(unsigned)c, kThreads, 0, stream>>>(n, c, l, x, grad_out, mean, invstd,
                                                               grad_weight, grad_bias);
    return launched();
}

int nnm__cuda_bn_eval_grad_x(cudaStream_t stream, int64_t n, int64_t c, int64_t l,
                             const float *grad_out, const float *weight, const float *invstd,
                             float *grad_x) {
    const int64_t total = n * c * l;
    if (total <= 0)
        return 0;
    bn_eval_grad_x_kernel<<<blocks_for(total), kThreads, 0, stream>>>(total, c, l, grad_out, weight,
                                                                      invstd, grad_x);
    return launched();
}

} // extern "C"
