/* plugins/cuda/cuda_reduce_body.h - the per-output-element body of the
 * reduce kernel (reduce.cu), plain C (see cuda_hd.h).
 *
 * The plan is the cpu backend's (cpu_reduce in plugins/cpu/cpu.c): x's dims
 * split into kept (out has x's size) and reduced (out has size 1), size-1
 * dims dropped, neighbours merged where x is contiguous across them. Output
 * element oi (out is contiguous, so oi runs row-major over the kept dims)
 * sums its count elements in double (sum, mean) or keeps the NaN-propagating
 * max / min, then scales as the cpu backend does. */
#ifndef NNM_CUDA_REDUCE_BODY_H
#define NNM_CUDA_REDUCE_BODY_H

#include <nnmod/plugin.h>

#include "cuda_hd.h"

typedef struct nnm_cuda_red_plan {
    int32_t op; /* enum nnm_reduce_op */
    int32_t nk, nr;
    int64_t kshape[NNM_MAX_DIMS], kstride[NNM_MAX_DIMS];
    int64_t rshape[NNM_MAX_DIMS], rstride[NNM_MAX_DIMS];
    int64_t count; /* elements reduced into each output element */
    double alpha;
} nnm_cuda_red_plan;

/* Appends a dim to a group, merged into the previous one when x is
 * contiguous across both (cpu_red_push). */
static inline void nnm_cuda_red_push(int32_t *nd, int64_t *shape, int64_t *stride, int64_t sz,
                                     int64_t st) {
    if (*nd > 0 && stride[*nd - 1] == st * sz) {
        shape[*nd - 1] *= sz;
        stride[*nd - 1] = st;
        return;
    }
    shape[*nd] = sz;
    stride[*nd] = st;
    (*nd)++;
}

/* Plans out = reduce(x) (shapes as nnm_reduce_args says; the caller checked
 * x->ndim == out->ndim). Returns -1, or the first dim where out's size is
 * neither x's nor 1. */
static inline int32_t nnm_cuda_red_plan_init(nnm_cuda_red_plan *P, int32_t op, double alpha,
                                             const nnm_tensor_desc *x, const nnm_tensor_desc *out) {
    int32_t i;
    P->op = op;
    P->alpha = alpha;
    P->nk = P->nr = 0;
    P->count = 1;
    for (i = 0; i < x->ndim; i++) {
        const int64_t xs = x->shape[i], os = out->shape[i];
        if (os == xs) {
            if (xs != 1)
                nnm_cuda_red_push(&P->nk, P->kshape, P->kstride, xs, x->strides[i]);
        } else if (os == 1) {
            nnm_cuda_red_push(&P->nr, P->rshape, P->rstride, xs, x->strides[i]);
            P->count *= xs;
        } else {
            return i;
        }
    }
    return -1;
}

/* Offset in x of index i over dims [0, nd) of shape/stride (row-major). */
static inline NNM_CUDA_HD int64_t nnm_cuda_red_offset(int32_t nd, const int64_t *shape,
                                                      const int64_t *stride, int64_t i) {
    int64_t off = 0;
    for (int32_t d = nd - 1; d >= 0; d--) {
        off += (i % shape[d]) * stride[d];
        i /= shape[d];
    }
    return off;
}

/* Reduced elements [r0, r1) of output element oi: the sum in double (sum,
 * mean) or the NaN-propagating max / min (as a double). */
static inline NNM_CUDA_HD double nnm_cuda_red_range(const nnm_cuda_red_plan *P, int64_t oi,
                                                    int64_t r0, int64_t r1, const float *x) {
    const float *xk = x + nnm_cuda_red_offset(P->nk, P->kshape, P->kstride, oi);
    if (P->op == NNM_REDUCE_MAX || P->op == NNM_REDUCE_MIN) {
        const int is_max = P->op == NNM_REDUCE_MAX;
        float ext = is_max ? -INFINITY : INFINITY;
        for (int64_t r = r0; r < r1; r++) {
            const float v = xk[nnm_cuda_red_offset(P->nr, P->rshape, P->rstride, r)];
            ext = is_max ? nnm_cuda_maxf(ext, v) : nnm_cuda_minf(ext, v);
        }
        return (double)ext;
    }
    double acc = 0.0;
    for (int64_t r = r0; r < r1; r++)
        acc += (double)xk[nnm_cuda_red_offset(P->nr, P->rshape, P->rstride, r)];
    return acc;
}

/* The output value from the whole accumulator, as the cpu backend scales. */
static inline NNM_CUDA_HD float nnm_cuda_red_final(const nnm_cuda_red_plan *P, double acc) {
    if (P->count == 0) /* torch: sum() of nothing is 0, mean() NaN (max/min refused) */
        return P->op == NNM_REDUCE_SUM ? 0.0f : NAN;
    if (P->op == NNM_REDUCE_MEAN)
        return (float)(acc / (double)P->count * P->alpha);
    return (float)(P->alpha * acc);
}

/* One pass: o[oi] from x (the first element of x). */
static inline NNM_CUDA_HD void nnm_cuda_reduce_body(const nnm_cuda_red_plan *P, int64_t oi,
                                                    const float *x, float *o) {
    o[oi] = nnm_cuda_red_final(P, P->count > 0 ? nnm_cuda_red_range(P, oi, 0, P->count, x) : 0.0);
}

/* Two passes, for long reductions: each output's elements cut into nchunks
 * fixed chunks of `chunk` (the last may be short), part[t] (t = oi * nchunks
 * + c) the accumulator of chunk c; then the chunks combined in order. The
 * cut does not depend on the launch, so neither does the result. */
static inline NNM_CUDA_HD void nnm_cuda_reduce_part(const nnm_cuda_red_plan *P, int64_t t,
                                                    int64_t nchunks, int64_t chunk,
                                                    const float *x, double *part) {
    const int64_t oi = t / nchunks, c = t % nchunks;
    const int64_t r0 = c * chunk, r1 = r0 + chunk < P->count ? r0 + chunk : P->count;
    part[t] = nnm_cuda_red_range(P, oi, r0, r1, x);
}

static inline NNM_CUDA_HD void nnm_cuda_reduce_combine(const nnm_cuda_red_plan *P, int64_t oi,
                                                       int64_t nchunks, const double *part,
                                                       float *o) {
    const double *p = part + oi * nchunks;
    double acc = p[0];
    for (int64_t c = 1; c < nchunks; c++) {
        if (P->op == NNM_REDUCE_MAX)
            acc = (double)nnm_cuda_maxf((float)acc, (float)p[c]); /* floats: exact */
        else if (P->op == NNM_REDUCE_MIN)
            acc = (double)nnm_cuda_minf((float)acc, (float)p[c]);
        else
            acc += p[c];
    }
    o[oi] = nnm_cuda_red_final(P, acc);
}

#endif /* NNM_CUDA_REDUCE_BODY_H */
