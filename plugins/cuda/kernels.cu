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
 * The maths and the index arithmetic are cuda_elementwise_body.h's (plain C,
 * proven against the cpu backend on the host by tests/cuda/test_cuda_bodies.c),
 * compiled without fast math, so the two backends agree to the last few ulps
 * of expf/logf/tanhf/erff.
 */
#include "cuda_kernels.h"
#include "cuda_elementwise_body.h"

#include <cuda_runtime.h>

#include <stdint.h>

namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 65536; /* grid-stride loops cover the rest */

unsigned blocks_for(int64_t n) {
    int64_t b = (n + kThreads - 1) / kThreads;
    return (unsigned)(b < kMaxBlocks ? b : kMaxBlocks);
}

/* ---- the maths: cuda_elementwise_body.h (OP a constant: the switch folds) -- */

template <int OP>
__device__ __forceinline__ float unary_f(float x, float alpha) {
    return nnm_cuda_unary_f(OP, x, alpha);
}

template <int OP>
__device__ __forceinline__ float binary_f(float x, float y) {
    return nnm_cuda_binary_f(OP, x, y);
}

/* ---- indexing ------------------------------------------------------------ */

/* Offsets (in elements) of linear index i of L's shape in each of the first
 * NOPS operands (cuda_elementwise_body.h). */
template <int NOPS>
__device__ __forceinline__ void nd_offsets(const nnm__cuda_layout &L, int64_t i, int64_t *off) {
    nnm_cuda_layout_offsets(&L, i, NOPS, off);
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

__global__ void where_nd(const nnm__cuda_layout L, int64_t n, float *o, const float *c,
                         const float *a, const float *b) {
    for (int64_t i = first_index(); i < n; i += grid_stride())
        nnm_cuda_where_body(&L, i, o, c, a, b);
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
    case NNM_UNARY_ERF: launch_unary<NNM_UNARY_ERF>(st, L, n, o, x, alpha); break;
    case NNM_UNARY_ADD_SCALAR: launch_unary<NNM_UNARY_ADD_SCALAR>(st, L, n, o, x, alpha); break;
    case NNM_UNARY_POW: launch_unary<NNM_UNARY_POW>(st, L, n, o, x, alpha); break;
    case NNM_UNARY_CLAMP_MIN: launch_unary<NNM_UNARY_CLAMP_MIN>(st, L, n, o, x, alpha); break;
    case NNM_UNARY_CLAMP_MAX: launch_unary<NNM_UNARY_CLAMP_MAX>(st, L, n, o, x, alpha); break;
    case NNM_UNARY_GE: launch_unary<NNM_UNARY_GE>(st, L, n, o, x, alpha); break;
    case NNM_UNARY_SIN: launch_unary<NNM_UNARY_SIN>(st, L, n, o, x, alpha); break;
    case NNM_UNARY_COS: launch_unary<NNM_UNARY_COS>(st, L, n, o, x, alpha); break;
    case NNM_UNARY_FLOOR: launch_unary<NNM_UNARY_FLOOR>(st, L, n, o, x, alpha); break;
    case NNM_UNARY_CEIL: launch_unary<NNM_UNARY_CEIL>(st, L, n, o, x, alpha); break;
    case NNM_UNARY_ROUND: launch_unary<NNM_UNARY_ROUND>(st, L, n, o, x, alpha); break;
    case NNM_UNARY_TRUNC: launch_unary<NNM_UNARY_TRUNC>(st, L, n, o, x, alpha); break;
    case NNM_UNARY_SILU: launch_unary<NNM_UNARY_SILU>(st, L, n, o, x, alpha); break;
    case NNM_UNARY_GELU: launch_unary<NNM_UNARY_GELU>(st, L, n, o, x, alpha); break;
    case NNM_UNARY_GELU_TANH: launch_unary<NNM_UNARY_GELU_TANH>(st, L, n, o, x, alpha); break;
    case NNM_UNARY_HARDSWISH: launch_unary<NNM_UNARY_HARDSWISH>(st, L, n, o, x, alpha); break;
    case NNM_UNARY_LEAKY_RELU: launch_unary<NNM_UNARY_LEAKY_RELU>(st, L, n, o, x, alpha); break;
    case NNM_UNARY_ELU: launch_unary<NNM_UNARY_ELU>(st, L, n, o, x, alpha); break;
    case NNM_UNARY_RELU6: launch_unary<NNM_UNARY_RELU6>(st, L, n, o, x, alpha); break;
    case NNM_UNARY_HARDSIGMOID: launch_unary<NNM_UNARY_HARDSIGMOID>(st, L, n, o, x, alpha); break;
    case NNM_UNARY_SILU_GRAD: launch_unary<NNM_UNARY_SILU_GRAD>(st, L, n, o, x, alpha); break;
    case NNM_UNARY_GELU_GRAD: launch_unary<NNM_UNARY_GELU_GRAD>(st, L, n, o, x, alpha); break;
    case NNM_UNARY_GELU_TANH_GRAD: launch_unary<NNM_UNARY_GELU_TANH_GRAD>(st, L, n, o, x, alpha); break;
    case NNM_UNARY_HARDSWISH_GRAD: launch_unary<NNM_UNARY_HARDSWISH_GRAD>(st, L, n, o, x, alpha); break;
    case NNM_UNARY_LEAKY_RELU_GRAD: launch_unary<NNM_UNARY_LEAKY_RELU_GRAD>(st, L, n, o, x, alpha); break;
    case NNM_UNARY_ELU_GRAD: launch_unary<NNM_UNARY_ELU_GRAD>(st, L, n, o, x, alpha); break;
    case NNM_UNARY_RELU6_GRAD: launch_unary<NNM_UNARY_RELU6_GRAD>(st, L, n, o, x, alpha); break;
    case NNM_UNARY_HARDSIGMOID_GRAD: launch_unary<NNM_UNARY_HARDSIGMOID_GRAD>(st, L, n, o, x, alpha); break;
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
    case NNM_BINARY_POW: launch_binary<NNM_BINARY_POW>(st, L, n, o, a, b); break;
    default: return (int)cudaErrorInvalidValue; /* the caller validated op */
    }
    return (int)cudaGetLastError();
}

extern "C" int nnm__cuda_launch_where(cudaStream_t st, const nnm__cuda_layout *L, int64_t n,
                                      float *o, const float *c, const float *a, const float *b) {
    where_nd<<<blocks_for(n), kThreads, 0, st>>>(*L, n, o, c, a, b);
    return (int)cudaGetLastError();
}
