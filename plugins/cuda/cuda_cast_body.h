/* plugins/cuda/cuda_cast_body.h - the per-element bodies of cast and
 * arg_reduce (cast.cu), plain C (see cuda_hd.h), the cpu backend's rules
 * (plugins/cpu/cast_kernels.inc): floats to integers round toward zero, NaN
 * and values out of range give the type's minimum (u8 goes through i64 and
 * wraps), anything to bool is != 0; argmax/argmin take the first extreme,
 * NaN counting as the extreme. Kinds are cuda_ops.h's CUDA_DT_* values. */
#ifndef NNM_CUDA_CAST_BODY_H
#define NNM_CUDA_CAST_BODY_H

#include "cuda_elementwise_body.h" /* nnm_cuda_layout_offsets */

#define NNM_CUDA_K_F32 0
#define NNM_CUDA_K_I64 1
#define NNM_CUDA_K_I32 2
#define NNM_CUDA_K_U8 3
#define NNM_CUDA_K_BOOL 4

/* float -> i64 as x86's cvttss2si: NaN and out of range give INT64_MIN */
static inline NNM_CUDA_HD int64_t nnm_cuda_f2i64(float v) {
    return (v == v && v >= -9223372036854775808.0f && v < 9223372036854775808.0f) ? (int64_t)v
                                                                                : INT64_MIN;
}
static inline NNM_CUDA_HD int32_t nnm_cuda_f2i32(float v) {
    return (v == v && v >= -2147483648.0f && v < 2147483648.0f) ? (int32_t)v : INT32_MIN;
}

/* out[e] = x[the element of linear index e] converted. L: out (contiguous),
 * x; x and out are the first elements (byte_offset applied). */
static inline NNM_CUDA_HD void nnm_cuda_cast_elem(const nnm_strided_layout *L, int64_t e, int kx,
                                                  const void *x, int ko, void *out) {
    int64_t off[2];
    nnm_cuda_layout_offsets(L, e, 2, off);
    const int64_t j = off[1];
    float fv = 0.0f;
    int64_t iv = 0;
    switch (kx) {
    case NNM_CUDA_K_F32: fv = ((const float *)x)[j]; break;
    case NNM_CUDA_K_I64: iv = ((const int64_t *)x)[j]; break;
    case NNM_CUDA_K_I32: iv = ((const int32_t *)x)[j]; break;
    case NNM_CUDA_K_U8: iv = ((const uint8_t *)x)[j]; break;
    default: iv = ((const uint8_t *)x)[j] != 0; break;
    }
    const int isf = kx == NNM_CUDA_K_F32;
    const int64_t o = off[0];
    switch (ko) {
    case NNM_CUDA_K_F32: ((float *)out)[o] = isf ? fv : (float)iv; break;
    case NNM_CUDA_K_I64: ((int64_t *)out)[o] = isf ? nnm_cuda_f2i64(fv) : iv; break;
    case NNM_CUDA_K_I32:
        ((int32_t *)out)[o] = isf ? nnm_cuda_f2i32(fv) : (int32_t)(uint32_t)(uint64_t)iv;
        break;
    case NNM_CUDA_K_U8:
        ((uint8_t *)out)[o] = (uint8_t)(uint64_t)(isf ? nnm_cuda_f2i64(fv) : iv);
        break;
    default: ((uint8_t *)out)[o] = (uint8_t)(isf ? fv != 0.0f : iv != 0); break;
    }
}

/* out[r] (r = o * inner + i) = the first j where x[o, j, i] is the maximum
 * (is_max) or minimum; NaN wins (and stops the search). n >= 1. */
static inline NNM_CUDA_HD void nnm_cuda_arg_reduce_elem(int64_t r, int64_t n, int64_t inner,
                                                        int is_max, const float *x, int64_t *out) {
    const int64_t o = r / inner, i = r % inner;
    const float *p = x + o * n * inner + i;
    int64_t best = 0;
    float bv = p[0];
    for (int64_t j = 1; j < n && bv == bv; j++) {
        const float v = p[j * inner];
        if (v != v || (is_max ? v > bv : v < bv)) {
            bv = v;
            best = j;
        }
    }
    out[r] = best;
}

#endif /* NNM_CUDA_CAST_BODY_H */
