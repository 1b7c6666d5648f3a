/* plugins/cuda/kernels.cu - the cuda backend's elementwise kernels.
 *
 * One grid-stride kernel per (op, shape class). After the host merged the
 * dims (cuda.c), a layout of at most one dim, which covers contiguous
 * tensors, scalar broadcast and any single stride, takes the 1-d kernel:
 * o[i*s0] = f(a[i*s1], b[i*s2]), with a unit-stride branch; anything else
 * takes the N-d kernel, which turns the linear index into per-operand offsets
 * with a fixed, unrolled loop over at most NNM_MAX_DIMS dims. 64-bit indices
 * throughout.
 *
 * The maths is the cpu backend's, written the same way (same NaN rules for
 * max/min and relu, the same overflow-free sigmoid), compiled without fast
 * math, so the two agree to the last few ulps of expf/logf/tanhf.
 */
#include "cuda_kernels.h"

#include <cuda_runtime.h>

#include <stdint.h>

namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 65536; /* grid-stride loops cover the rest */

unsigned blocks_for(int64_t n) {
    int64_t b = (n + kThreads - 1) / kThreads;
    return (unsigned)(b < kMaxBlocks ? b : kMaxBlocks);
}

/* ---- the maths, as in plugins/cpu/cpu.c ----------------------------------- */

__device__ __forceinline__ float relu_f(float x) {
    return x < 0.0f ? 0.0f : x; /* NaN stays NaN, like torch.relu */
}

__device__ __forceinline__ float sigmoid_f(float x) {
    /* exp of a non-positive argument only, so nothing overflows */
    if (x >= 0.0f)
        return 1.0f / (1.0f + expf(-x));
    const float e = expf(x);
    return e / (1.0f + e);
}

/* torch.maximum / torch.minimum: NaN in either input gives NaN. */
__device__ __forceinline__ float max_f(float a, float b) {
    return a != a ? a : (b != b ? b : (a > b ? a : b));
}
__device__ __forceinline__ float min_f(float a, float b) {
    return a != a ? a : (b != b ? b : (a < b ? a : b));
}

template <int OP>
__device__ __forceinline__ float unary_f(float x, float alpha) {
    switch (OP) {
    case NNM_UNARY_COPY: return x;
    case NNM_UNARY_NEG: return -x;
    case NNM_UNARY_RELU: return relu_f(x);
    case NNM_UNARY_EXP: return expf(x);
    case NNM_UNARY_LOG: return logf(x);
    case NNM_UNARY_TANH: return tanhf(x);
    case NNM_UNARY_SIGMOID: return sigmoid_f(x);
    case NNM_UNARY_SQRT: return sqrtf(x);
    case NNM_UNARY_ABS: return fabsf(x);
    case NNM_UNARY_STEP: return x > 0.0f ? 1.0f : 0.0f;
    case NNM_UNARY_SIGN: return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : 0.0f);
    default: return alpha * x; /* NNM_UNARY_SCALE */
    }
}

template <int OP>
__device__ __forceinline__ float binary_f(float x, float y) {
    switch (OP) {
    case NNM_BINARY_ADD: return x + y;
    case NNM_BINARY_SUB: return x - y;
    case NNM_BINARY_MUL: return x * y;
    case NNM_BINARY_DIV: return x / y;
    case NNM_BINARY_MAX: return max_f(x, y);
    default: return min_f(x, y); /* NNM_BINARY_MIN */
    }
}

/* ---- indexing ------------------------------------------------------------ */

/* Offsets (in elements) of linear index i of L's shape in each of the first
 * NOPS operands. The loop is unrolled over NNM_MAX_DIMS so L stays in the
 * kernel's parameter space. */
template <int NOPS>
__device__ __forceinline__ void nd_offsets(const nnm__cuda_layout &L, int64_t i, int64_t *off) {
#pragma unroll
    for (int k = 0; k < NOPS; k++)
        off[k] = 0;
#pragma unroll
    for (int j = 0; j < NNM_MAX_DIMS; j++) {
        const int d = NNM_MAX_DIMS - 1 - j; /* innermost first */
        if (d < L.ndim) {
            const int64_t s = L.shape[d];
            const int64_t c = i % s;
            i /= s;
#pragma unroll
            for (int k = 0; k < NOPS; k++)
                off[k] += c * L.strides[k][d];
        }
    }
}

__device__ __forceinline__ int64_t first_index() {
    return (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_stride() {
    return (int64_t)blockDim.x * gridDim.x;
}

/* ---- kernels -------------------------------------------------------------- */

__global__ void fill_1d(int64_t n, float *o, int64_t so, float v) {
    for (int64_t i = first_index(); i < n; i += grid_stride())
        o[i * so] = v;
}

__global__ void fill_nd(const nnm__cuda_layout L, int64_t n, float *o, float v) {
    for (int64_t i = first_index(); i < n; i += grid_stride()) {
        int64_t off[1];
        nd_offsets<1>(L, i, off);
        o[off[0]] = v;
    }
}

template <int OP>
__global__ void unary_1d(int64_t n, float *o, int64_t so, const float *x, int64_t sx,
                         float alpha) {
    if (so == 1 && sx == 1) {
        for (int64_t i = first_index(); i < n; i += grid_stride())
            o[i] = unary_f<OP>(x[i], alpha);
    } else {
        for (int64_t i = first_index(); i < n; i += grid_stride())
            o[i * so] = unary_f<OP>(x[i * sx], alpha);
    }
}

template <int OP>
__global__ void unary_nd(const nnm__cuda_layout L, int64_t n, float *o, const float *x,
                         float alpha) {
    for (int64_t i = first_index(); i < n; i += grid_stride()) {
        int64_t off[2];
        nd_offsets<2>(L, i, off);
        o[off[0]] = unary_f<OP>(x[off[1]], alpha);
    }
}

template <int OP>
__global__ void binary_1d(int64_t n, float *o, int64_t so, const float *a, int64_t sa,
                          const float *b, int64_t sb) {
    if (so == 1 && sa == 1 && sb == 1) {
        for (int64_t i = first_index(); i < n; i += grid_stride())
            o[i] = binary_f<OP>(a[i], b[i]);
    } else {
        for (int64_t i = first_index(); i < n; i += grid_stride())
            o[i * so] = binary_f<OP>(a[i * sa], b[i * sb]);
    }
}

template <int OP>
__global__ void binary_nd(const nnm__cuda_layout L, int64_t n, float *o, const float *a,
                          const float *b) {
    for (int64_t i = first_index(); i < n; i += grid_stride()) {
        int64_t off[3];
        nd_offsets<3>(L, i, off);
        o[off[0]] = binary_f<OP>(a[off[1]], b[off[2]]);
    }
}

/* Stride of operand k in a layout of at most one dim (0 for a single element). */
int64_t stride1(const nnm__cuda_layout *L, int k) {
    return L->ndim == 1 ? L->strides[k][0] : 0;
}

template <int OP>
void launch_unary(cudaStream_t st, const nnm__cuda_layout *L, int64_t n, float *o, const float *x,
                  float alpha) {
    if (L->ndim <= 1)
        unary_1d<OP>
            <<<blocks_for(n), kThreads, 0, st>>>(n, o, stride1(L, 0), x, stride1(L, 1), alpha);
    else
        unary_nd<OP><<<blocks_for(n), kThreads, 0, st>>>(*L, n, o, x, alpha);
}

template <int OP>
void launch_binary(cudaStream_t st, const nnm__cuda_layout *L, int64_t n, float *o, const float *a,
                   const float *b) {
    if (L->ndim <= 1)
        binary_1d<OP><<<blocks_for(n), kThreads, 0, st>>>(n, o, stride1(L, 0), a, stride1(L, 1), b,
                                                   stride1(L, 2));
    else
        binary_nd<OP><<<blocks_for(n), kThreads, 0, st>>>(*L, n, o, a, b);
}

} // namespace

/* ---- launchers (cuda_kernels.h) ------------------------------------------- */

extern "C" int nnm__cuda_launch_fill(cudaStream_t st, const nnm__cuda_layout *L, int64_t n,
                                     float *o, float v) {
    if (L->ndim <= 1)
        fill_1d<<<blocks_for(n), kThreads, 0, st>>>(n, o, stride1(L, 0), v);
    else
        fill_nd<<<blocks_for(n), kThreads, 0, st>>>(*L, n, o, v);
    return (int)cudaGetLastError();
}

extern "C" int nnm__cuda_launch_unary(cudaStream_t st, int32_t op, const nnm__cuda_layout *L,
                                      int64_t n, float *o, const float *x, float alpha) {
    switch (op) {
    case NNM_UNARY_COPY: launch_unary<NNM_UNARY_COPY>(st, L, n, o, x, alpha); break;
    case NNM_UNARY_NEG: launch_unary<NNM_UNARY_NEG>(st, L, n, o, x, alpha); break;
    case NNM_UNARY_RELU: launch_unary<NNM_UNARY_RELU>(st, L, n, o, x, alpha); break;
    case NNM_UNARY_EXP: launch_unary<NNM_UNARY_EXP>(st, L, n, o, x, alpha); break;
    case NNM_UNARY_LOG: launch_unary<NNM_UNARY_LOG>(st, L, n, o, x, alpha); break;
    case NNM_UNARY_TANH: launch_unary<NNM_UNARY_TANH>(st, L, n, o, x, alpha); break;
    case NNM_UNARY_SIGMOID: launch_unary<NNM_UNARY_SIGMOID>(st, L, n, o, x, alpha); break;
    case NNM_UNARY_SQRT: launch_unary<NNM_UNARY_SQRT>(st, L, n, o, x, alpha); break;
    case NNM_UNARY_ABS: launch_unary<NNM_UNARY_ABS>(st, L, n, o, x, alpha); break;
    case NNM_UNARY_SCALE: launch_unary<NNM_UNARY_SCALE>(st, L, n, o, x, alpha); break;
    case NNM_UNARY_STEP: launch_unary<NNM_UNARY_STEP>(st, L, n, o, x, alpha); break;
    case NNM_UNARY_SIGN: launch_unary<NNM_UNARY_SIGN>(st, L, n, o, x, alpha); break;
    default: return (int)cudaErrorInvalidValue; /* the caller validated op */
    }
    return (int)cudaGetLastError();
}

extern "C" int nnm__cuda_launch_binary(cudaStream_t st, int32_t op, const nnm__cuda_layout *L,
                                       int64_t n, float *o, const float *a, const float *b) {
    switch (op) {
    case NNM_BINARY_ADD: launch_binary<NNM_BINARY_ADD>(st, L, n, o, a, b); break;
    case NNM_BINARY_SUB: launch_binary<NNM_BINARY_SUB>(st, L, n, o, a, b); break;
    case NNM_BINARY_MUL: launch_binary<NNM_BINARY_MUL>(st, L, n, o, a, b); break;
    case NNM_BINARY_DIV: launch_binary<NNM_BINARY_DIV>(st, L, n, o, a, b); break;
    case NNM_BINARY_MAX: launch_binary<NNM_BINARY_MAX>(st, L, n, o, a, b); break;
    case NNM_BINARY_MIN: launch_binary<NNM_BINARY_MIN>(st, L, n, o, a, b); break;
    default: return (int)cudaErrorInvalidValue; /* the caller validated op */
    }
    return (int)cudaGetLastError();
}
