/* plugins/cuda/cuda_hd.h - what the per-element kernel bodies of the cuda
 * backend share: the NNM_CUDA_HD marker and a few scalar helpers.
 *
 * Every kernel of the cuda backend's op families is a grid-stride loop that
 * calls a `static inline NNM_CUDA_HD` body (one output element, or one row,
 * per call) from a plain-C header cuda_<family>_body.h. Under nvcc the
 * bodies are __host__ __device__; under a C compiler NNM_CUDA_HD is empty,
 * so tests/cuda/test_cuda_bodies.c runs the very same bodies on host memory
 * over the full index range and compares them with the cpu backend: the
 * index maths and the formulas are proven without a GPU, only the launch
 * plumbing is left for one.
 *
 * Plain C99 that C++ (nvcc) also compiles; no CUDA header.
 */
#ifndef NNM_CUDA_HD_H
#define NNM_CUDA_HD_H

#include <math.h>
#include <stdint.h>

#ifdef __CUDACC__
#define NNM_CUDA_HD __host__ __device__
#else
#define NNM_CUDA_HD
#endif

/* #pragma unroll in the device pass only (a host compiler warns about it) */
#if defined(__CUDA_ARCH__)
#define NNM_CUDA_UNROLL _Pragma("unroll")
#else
#define NNM_CUDA_UNROLL
#endif

/* *p += v: an atomic add in device code, a plain one on the host (the test
 * runs the bodies one index at a time). Device atomics make sums whose order
 * depends on scheduling: results that use it are not bit-reproducible. */
#if defined(__CUDA_ARCH__)
#define NNM_CUDA_ATOMIC_ADD(p, v) ((void)atomicAdd((p), (v)))
#else
#define NNM_CUDA_ATOMIC_ADD(p, v) ((void)(*(p) += (v)))
#endif

/* torch.maximum / torch.minimum: NaN in either input gives NaN. */
static inline NNM_CUDA_HD float nnm_cuda_maxf(float a, float b) {
    return a != a ? a : (b != b ? b : (a > b ? a : b));
}
static inline NNM_CUDA_HD float nnm_cuda_minf(float a, float b) {
    return a != a ? a : (b != b ? b : (a < b ? a : b));
}

/* sigmoid without overflow: exp of a non-positive argument only. NaN stays
 * NaN, +-inf give 1 and 0. */
static inline NNM_CUDA_HD float nnm_cuda_sigmoid(float x) {
    const float e = expf(-fabsf(x)), r = 1.0f / (1.0f + e);
    return x >= 0.0f ? r : (x != x ? x : e * r);
}

#endif /* NNM_CUDA_HD_H */
