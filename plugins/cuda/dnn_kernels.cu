/* plugins/cuda/dnn_kernels.cu - pooling and batch-norm helper kernels (see
 * cuda_dnn_kernels.h for each one's contract).
 *
 * Pooling is the cpu backend's generic kernel (plugins/cpu/pool_kernels.inc)
 * with one thread per output element (forward, argmax) or per input element
 * (gradients, which gather instead of scattering: no atomics, the same sums
 * in the same order as the cpu backend, so the results are the same bits).
 * cuDNN's pooling is not used: it has no dilation, no divisor_override, no
 * adaptive windows, no ceil-mode clipping of the count_include_pad divisor,
 * and its max backward does not promise PyTorch's first-maximum rule.
 *
 * 64-bit indices throughout, grid-stride loops, no fast math.
 */
#include "cuda_dnn_kernels.h"

#include <cuda_runtime.h>

#include <stdint.h>

namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 65536; /* grid-stride loops cover the rest */

unsigned blocks_for(int64_t n) {
    int64_t b = (n + kThreads - 1) / kThreads;
    return (unsigned)(b < kMaxBlocks ? b : kMaxBlocks);
}

__device__ __forceinline__ float neg_inf() {
    return -__int_as_float(0x7f800000);
}

/* The running maximum after seeing v (cpu_pool_takes). */
__device__ __forceinline__ bool takes(float v, float m) {
    return v > m || v != v;
}

/* floor(a / b) for b > 0 and any a. */
__device__ __forceinline__ int64_t floor_div(int64_t a, int64_t b) {
    const int64_t q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

/* The window of output o along dim i (cpu_pool_window): [*start, *end) and,
 * for avg, the size clipped to the padded input only. */
__device__ void pool_window(const nnm__cuda_pool_geom &g, int i, int64_t o, int64_t *start,
                            int64_t *end, int64_t *pool) {
    const int64_t in = g.in[i];
    if (g.op == NNM_POOL_ADAPTIVE_AVG) {
        const int64_t out = g.out[i];
        *start = (o * in) / out;
        *end = ((o + 1) * in + out - 1) / out;
        *pool = *end - *start;
        return;
    }
    int64_t s = o * g.s[i] - g.p[i];
    if (g.op == NNM_POOL_MAX) {
        int64_t e = s + (g.k[i] - 1) * g.d[i] + 1;
        if (e > in)
            e = in;
        while (s < 0)
            s += g.d[i];
        *start = s;
        *end = e;
        *pool = 0;
        return;
    }
    int64_t e = s + g.k[i];
    if (e > in + g.p[i])
        e = in + g.p[i];
    *pool = e - s;
    if (s < 0)
        s = 0;
    if (e > in)
        e = in;
    *start = s;
    *end = e;
}

/* The avg divisor of a window (CPU_POOL_WALK). */
__device__ __forceinline__ double pool_div(const nnm__cuda_pool_geom &g, const int64_t *s,
                                           const int64_t *e, const int64_t *p) {
    if (g.op == NNM_POOL_AVG && g.divisor_override > 0)
        return (double)g.divisor_override;
    if (g.op == NNM_POOL_AVG && g.count_include_pad)
        return (double)(p[0] * p[1] * p[2]);
    return (double)((e[0] - s[0]) * (e[1] - s[1]) * (e[2] - s[2]));
}

/* The 3-d output position of flat index oi within a plane. */
__device__ __forceinline__ void out_pos(const nnm__cuda_pool_geom &g, int64_t oi, int64_t *o) {
    o[2] = oi % g.out[2];
    o[1] = (oi / g.out[2]) % g.out[1];
    o[0] = oi / (g.out[2] * g.out[1]);
}

/* Plane index of the window's maximum (cpu_pool_argmax); the window is not empty. */
__device__ int64_t window_argmax(const nnm__cuda_pool_geom &g, const float *xp, const int64_t *s,
                                 const int64_t *e) {
    int64_t best = (s[0] * g.in[1] + s[1]) * g.in[2] + s[2];
    float m = neg_inf();
    for (int64_t z = s[0]; z < e[0]; z += g.d[0])
        for (int64_t y = s[1]; y < e[1]; y += g.d[1])
            for (int64_t x = s[2]; x < e[2]; x += g.d[2]) {
                const int64_t idx = (z * g.in[1] + y) * g.in[2] + x;
                const float v = xp[idx];
                if (takes(v, m)) {
                    m = v;
                    best = idx;
                }
            }
    return best;
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
        const float *xp = x + pl * plane_in;
        int64_t o[3], s[3], e[3], p[3];
        out_pos(g, oi, o);
        bool empty = false;
        for (int i = 0; i < 3; i++) {
            pool_window(g, i, o[i], &s[i], &e[i], &p[i]);
            empty = empty || s[i] >= e[i];
        }
        if (g.op == NNM_POOL_MAX) {
            const int64_t best = empty ? -1 : window_argmax(g, xp, s, e);
            if (mode == 1)
                arg[idx] = best;
            else
                out[idx] = empty ? neg_inf() : xp[best];
            continue;
        }
        if (empty) {
            out[idx] = 0.0f;
            continue;
        }
        double sum = 0.0;
        for (int64_t z = s[0]; z < e[0]; z++)
            for (int64_t y = s[1]; y < e[1]; y++) {
                const float *r = xp + (z * g.in[1] + y) * g.in[2];
                for (int64_t xx = s[2]; xx < e[2]; xx++)
                    sum += (double)r[xx];
            }
        out[idx] = (float)(sum / pool_div(g, s, e, p));
    }
}

/* The outputs along dim i whose windows may cover input position q: a
 * superset [*lo, *hi] (callers check each window exactly). */
__device__ void candidates(const nnm__cuda_pool_geom &g, int i, int64_t q, int64_t *lo,
                           int64_t *hi) {
    const int64_t in = g.in[i], out = g.out[i];
    int64_t l, h;
    if (g.op == NNM_POOL_ADAPTIVE_AVG) {
        l = floor_div(q * out, in) - 1;
        h = ((q + 1) * out + in - 1) / in;
    } else {
        /* the raw window of o is [o * s - p, o * s - p + span) */
        const int64_t span = g.op == NNM_POOL_MAX ? (g.k[i] - 1) * g.d[i] + 1 : g.k[i];
        l = floor_div(q + g.p[i] - span, g.s[i]);
        h = floor_div(q + g.p[i], g.s[i]);
    }
    *lo = l < 0 ? 0 : l;
    *hi = h > out - 1 ? out - 1 : h;
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
        const int64_t q[3] = {qi / (g.in[1] * g.in[2]), (qi / g.in[2]) % g.in[1], qi % g.in[2]};
        int64_t lo[3], hi[3];
        for (int i = 0; i < 3; i++)
            candidates(g, i, q[i], &lo[i], &hi[i]);
        const int64_t *ap = arg + pl * plane_out;
        const float *gp = grad_out + pl * plane_out;
        float acc = 0.0f;
        for (int64_t o0 = lo[0]; o0 <= hi[0]; o0++)
            for (int64_t o1 = lo[1]; o1 <= hi[1]; o1++)
                for (int64_t o2 = lo[2]; o2 <= hi[2]; o2++) {
                    const int64_t oi = (o0 * g.out[1] + o1) * g.out[2] + o2;
                    if (ap[oi] == qi)
                        acc += gp[oi];
                }
        grad_x[idx] = acc;
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
        const int64_t q[3] = {qi / (g.in[1] * g.in[2]), (qi / g.in[2]) % g.in[1], qi % g.in[2]};
        int64_t lo[3], hi[3];
        for (int i = 0; i < 3; i++)
            candidates(g, i, q[i], &lo[i], &hi[i]);
        const float *gp = grad_out + pl * plane_out;
        float acc = 0.0f;
        for (int64_t o0 = lo[0]; o0 <= hi[0]; o0++) {
            int64_t s[3], e[3], p[3];
            pool_window(g, 0, o0, &s[0], &e[0], &p[0]);
            if (q[0] < s[0] || q[0] >= e[0])
                continue;
            for (int64_t o1 = lo[1]; o1 <= hi[1]; o1++) {
                pool_window(g, 1, o1, &s[1], &e[1], &p[1]);
                if (q[1] < s[1] || q[1] >= e[1])
                    continue;
                for (int64_t o2 = lo[2]; o2 <= hi[2]; o2++) {
                    pool_window(g, 2, o2, &s[2], &e[2], &p[2]);
                    if (q[2] < s[2] || q[2] >= e[2])
                        continue;
                    const int64_t oi = (o0 * g.out[1] + o1) * g.out[2] + o2;
                    acc += (float)((double)gp[oi] / pool_div(g, s, e, p));
                }
            }
        }
        grad_x[idx] = acc;
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
            si[i] = (float)(1.0 / sqrt(eps));
        } else {
            sm[i] = rm[i];
            si[i] = (float)(1.0 / sqrt((double)rv[i] + eps));
        }
    }
}

/* One block per channel: sum(g) and sum(g * (x - mean)) in double. */
__global__ void bn_param_grads_kernel(int64_t n, int64_t C, int64_t l, const float *x,
                                      const float *g, const float *mean, const float *invstd,
                                      float *gw, float *gb) {
    __shared__ double s1[kThreads], s2[kThreads];
    const int64_t ch = blockIdx.x;
    const int64_t count = n * l;
    const double m = (double)mean[ch];
    double a1 = 0.0, a2 = 0.0;
    for (int64_t j = threadIdx.x; j < count; j += blockDim.x) {
        const int64_t r = j / l, col = j % l;
        const int64_t at = (r * C + ch) * l + col;
        const double gj = (double)g[at];
        a1 += gj;
        a2 += gj * ((double)x[at] - m);
    }
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
            gw[ch] = (float)(s2[0] * (double)invstd[ch]);
        if (gb != nullptr)
            gb[ch] = (float)s1[0];
    }
}

__global__ void bn_eval_grad_x_kernel(int64_t total, int64_t C, int64_t l, const float *g,
                                      const float *w, const float *invstd, float *gx) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (int64_t)blockDim.x * gridDim.x) {
        const int64_t ch = (i / l) % C;
        const float k1 = (w != nullptr ? w[ch] : 1.0f) * invstd[ch];
        gx[i] = k1 * g[i];
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
