/* plugins/cuda/cuda_elementwise_body.h - the per-element bodies of the
 * elementwise kernels (kernels.cu): the offsets of one linear index in a
 * strided layout, and the maths of every unary and binary op and where.
 *
 * The maths is the cpu backend's (plugins/cpu/cpu.c), op for op: the same
 * NaN rules (relu, clamp, max/min, relu6 keep NaN), the same PyTorch
 * formulas (GELU with erf, the *_GRAD ops as PyTorch's *_backward without
 * the gradient factor), torch.round's half-to-even. Where the cpu backend
 * uses a vectorisable approximation (its sigmoid/tanh/erf polynomials, which
 * agree with libm within 2 ulp), this uses the CUDA libm function, compiled
 * without fast math. Plain C (see cuda_hd.h).
 */
#ifndef NNM_CUDA_ELEMENTWISE_BODY_H
#define NNM_CUDA_ELEMENTWISE_BODY_H

#include <nnmod/plugin.h>

#include "cuda_hd.h"
#include "strided_layout.h"

/* Offsets (in elements) of linear index i (row-major over L's shape) in
 * each of the first nops operands of L. A fixed trip count over
 * NNM_MAX_DIMS, unrolled under nvcc: with nops a constant, every field of L
 * is read at a constant offset, so a kernel's L stays in parameter space. */
static inline NNM_CUDA_HD void nnm_cuda_layout_offsets(const nnm_strided_layout *L, int64_t i,
                                                       int nops, int64_t *off) {
    NNM_CUDA_UNROLL
    for (int k = 0; k < nops; k++)
        off[k] = 0;
    NNM_CUDA_UNROLL
    for (int j = 0; j < NNM_MAX_DIMS; j++) {
        const int d = NNM_MAX_DIMS - 1 - j; /* innermost first */
        if (d < L->ndim) {
            const int64_t s = L->shape[d];
            const int64_t c = i % s;
            i /= s;
            NNM_CUDA_UNROLL
            for (int k = 0; k < nops; k++)
                off[k] += c * L->strides[k][d];
        }
    }
}

#define NNM_CUDA_GELU_BETA 0.7978845608028654f   /* sqrt(2 / pi) */
#define NNM_CUDA_GELU_KAPPA 0.044715f
#define NNM_CUDA_SQRT1_2 0.7071067811865476f
#define NNM_CUDA_INV_SQRT_2PI 0.3989422804014327f /* 1 / sqrt(2 pi) */

static inline NNM_CUDA_HD float nnm_cuda_relu6(float x) {
    return x < 0.0f ? 0.0f : x > 6.0f ? 6.0f : x; /* NaN stays NaN */
}

/* out = op(x) for enum nnm_unary_op `op` (0..NNM_UNARY_HARDSIGMOID_GRAD);
 * alpha as nnm_unary_args' (as float). */
static inline NNM_CUDA_HD float nnm_cuda_unary_f(int op, float x, float alpha) {
    switch (op) {
    case NNM_UNARY_COPY: return x;
    case NNM_UNARY_NEG: return -x;
    case NNM_UNARY_RELU: return x < 0.0f ? 0.0f : x; /* NaN stays NaN, like torch.relu */
    case NNM_UNARY_EXP: return expf(x);
    case NNM_UNARY_LOG: return logf(x);
    case NNM_UNARY_TANH: return tanhf(x);
    case NNM_UNARY_SIGMOID: return nnm_cuda_sigmoid(x);
    case NNM_UNARY_SQRT: return sqrtf(x);
    case NNM_UNARY_ABS: return fabsf(x);
    case NNM_UNARY_SCALE: return alpha * x;
    case NNM_UNARY_STEP: return x > 0.0f ? 1.0f : 0.0f;
    case NNM_UNARY_SIGN: return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : 0.0f);
    case NNM_UNARY_ERF: return erff(x);
    case NNM_UNARY_ADD_SCALAR: return x + alpha;
    case NNM_UNARY_POW: return powf(x, alpha);
    case NNM_UNARY_CLAMP_MIN: return x < alpha ? alpha : x; /* NaN compares false: stays NaN */
    case NNM_UNARY_CLAMP_MAX: return x > alpha ? alpha : x;
    case NNM_UNARY_GE: return x >= alpha ? 1.0f : 0.0f;
    case NNM_UNARY_SIN: return sinf(x);
    case NNM_UNARY_COS: return cosf(x);
    case NNM_UNARY_FLOOR: return floorf(x);
    case NNM_UNARY_CEIL: return ceilf(x);
    case NNM_UNARY_ROUND: return nearbyintf(x); /* half to even, as torch.round */
    case NNM_UNARY_TRUNC: return truncf(x);
    case NNM_UNARY_SILU: return x * nnm_cuda_sigmoid(x);
    case NNM_UNARY_GELU: return 0.5f * x * (1.0f + erff(x * NNM_CUDA_SQRT1_2));
    case NNM_UNARY_GELU_TANH: {
        const float inner = NNM_CUDA_GELU_BETA * (x + NNM_CUDA_GELU_KAPPA * x * x * x);
        return 0.5f * x * (1.0f + tanhf(inner));
    }
    case NNM_UNARY_HARDSWISH: {
        const float c = x + 3.0f;
        return x * (c < 0.0f ? 0.0f : c > 6.0f ? 6.0f : c) / 6.0f;
    }
    case NNM_UNARY_LEAKY_RELU: return x > 0.0f ? x : x * alpha;
    case NNM_UNARY_ELU: return x > 0.0f ? x : alpha * expm1f(x);
    case NNM_UNARY_RELU6: return nnm_cuda_relu6(x);
    case NNM_UNARY_HARDSIGMOID: return nnm_cuda_relu6(x + 3.0f) / 6.0f;
    case NNM_UNARY_SILU_GRAD: {
        const float s = nnm_cuda_sigmoid(x);
        return s * (1.0f + x * (1.0f - s));
    }
    case NNM_UNARY_GELU_GRAD: {
        const float cdf = 0.5f * (1.0f + erff(x * NNM_CUDA_SQRT1_2));
        return cdf + x * NNM_CUDA_INV_SQRT_2PI * expf(-0.5f * x * x);
    }
    case NNM_UNARY_GELU_TANH_GRAD: {
        const float x2 = x * x;
        const float t = tanhf(NNM_CUDA_GELU_BETA * (x + NNM_CUDA_GELU_KAPPA * x2 * x));
        return 0.5f * (1.0f + t) +
               0.5f * x * (1.0f - t * t) * NNM_CUDA_GELU_BETA * (1.0f + 3.0f * NNM_CUDA_GELU_KAPPA * x2);
    }
    case NNM_UNARY_HARDSWISH_GRAD: /* PyTorch's hardswish_backward */
        return x < -3.0f ? 0.0f : x <= 3.0f ? x / 3.0f + 0.5f : 1.0f;
    case NNM_UNARY_LEAKY_RELU_GRAD: return x > 0.0f ? 1.0f : alpha;
    case NNM_UNARY_ELU_GRAD: return x > 0.0f ? 1.0f : alpha * expf(x);
    case NNM_UNARY_RELU6_GRAD: return x > 0.0f && x < 6.0f ? 1.0f : 0.0f;
    default: /* NNM_UNARY_HARDSIGMOID_GRAD (the caller validated op) */
        return x > -3.0f && x < 3.0f ? 1.0f / 6.0f : 0.0f;
    }
}

/* out = op(a, b) for enum nnm_binary_op `op` (0..NNM_BINARY_POW). */
static inline NNM_CUDA_HD float nnm_cuda_binary_f(int op, float a, float b) {
    switch (op) {
    case NNM_BINARY_ADD: return a + b;
    case NNM_BINARY_SUB: return a - b;
    case NNM_BINARY_MUL: return a * b;
    case NNM_BINARY_DIV: return a / b;
    case NNM_BINARY_MAX: return nnm_cuda_maxf(a, b);
    case NNM_BINARY_MIN: return nnm_cuda_minf(a, b);
    default: return powf(a, b); /* NNM_BINARY_POW */
    }
}

/* Element i of where over layout L (operands out, cond, a, b). */
static inline NNM_CUDA_HD void nnm_cuda_where_body(const nnm_strided_layout *L, int64_t i, float *o,
                                                   const float *c, const float *a, const float *b) {
    int64_t off[4];
    nnm_cuda_layout_offsets(L, i, 4, off);
    o[off[0]] = c[off[1]] != 0.0f ? a[off[2]] : b[off[3]];
}

#endif /* NNM_CUDA_ELEMENTWISE_BODY_H */
