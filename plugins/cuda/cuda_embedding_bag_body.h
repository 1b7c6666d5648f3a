/* plugins/cuda/cuda_embedding_bag_body.h - the bodies of embedding_bag and
 * embedding_bag_backward (embedding_bag.cu), plain C (see cuda_hd.h): the
 * cpu backend's segment reductions (plugins/cpu/embedding_bag_kernels.inc),
 * one output element (bag, column), one column of a bag's gradient, or one
 * entry's per-sample-weight gradient per call. Each bag's entries are taken
 * in bag order, as the cpu backend takes them. The runtime checked offsets
 * and indices; the bodies only keep their accesses in bounds (an entry out
 * of range counts nothing). */
#ifndef NNM_CUDA_EMBEDDING_BAG_BODY_H
#define NNM_CUDA_EMBEDDING_BAG_BODY_H

#include <nnmod/plugin.h>

#include "cuda_hd.h"

#include <stddef.h>

/* What the kernels read (device pointers; NULL where absent). */
typedef struct nnm_cuda_bag {
    int32_t mode; /* NNM_REDUCE_SUM, _MEAN or _MAX */
    int64_t pad, num, dim, n, bags;
    const float *w;      /* [num, dim] */
    const int64_t *idx;  /* [n] */
    const int64_t *off;  /* [bags + 1] */
    const float *psw;    /* [n] or NULL */
    float *out;          /* [bags, dim] forward */
    int64_t *arg;        /* [bags, dim] max */
    const float *g;      /* [bags, dim] backward */
    float *gw;           /* [num, dim] or NULL */
    float *gpsw;         /* [n] or NULL */
} nnm_cuda_bag;

/* Bag b's entries, clamped to [0, n). */
static inline NNM_CUDA_HD void nnm_cuda_bag_range(const nnm_cuda_bag *B, int64_t b, int64_t *lo,
                                                  int64_t *hi) {
    int64_t l = B->off[b], h = B->off[b + 1];
    l = l < 0 ? 0 : l;
    h = h > B->n ? B->n : h;
    *lo = l;
    *hi = h < l ? l : h;
}

/* 1 when entry i counts: not padding, in range. */
static inline NNM_CUDA_HD int nnm_cuda_bag_takes(const nnm_cuda_bag *B, int64_t i) {
    const int64_t r = B->idx[i];
    return r != B->pad && r >= 0 && r < B->num;
}

/* out[q] (and arg[q] for max), q = b * dim + k. */
static inline NNM_CUDA_HD void nnm_cuda_bag_fwd_elem(const nnm_cuda_bag *B, int64_t q) {
    const int64_t b = q / B->dim, k = q % B->dim;
    int64_t lo, hi;
    nnm_cuda_bag_range(B, b, &lo, &hi);
    int64_t cnt = 0;
    if (B->mode == NNM_REDUCE_MAX) {
        float y = 0.0f;
        int64_t ar = -1;
        for (int64_t i = lo; i < hi; i++) {
            if (!nnm_cuda_bag_takes(B, i))
                continue;
            const int64_t r = B->idx[i];
            const float v = B->w[r * B->dim + k];
            if (cnt++ == 0 || v > y) { /* the first maximum wins; NaN never replaces */
                y = v;
                ar = r;
            }
        }
        B->out[q] = y;
        B->arg[q] = ar;
        return;
    }
    float y = 0.0f;
    for (int64_t i = lo; i < hi; i++) {
        if (!nnm_cuda_bag_takes(B, i))
            continue;
        const float v = B->w[B->idx[i] * B->dim + k];
        cnt++;
        if (B->psw != NULL) {
            const float pv = v * B->psw[i];
            y = y + pv;
        } else {
            y = y + v;
        }
    }
    if (B->mode == NNM_REDUCE_MEAN && cnt > 1)
        y /= (float)cnt;
    B->out[q] = y;
}

/* max: grad_out[q] into grad_weight[arg[q], k]. */
static inline NNM_CUDA_HD void nnm_cuda_bag_bwd_max_elem(const nnm_cuda_bag *B, int64_t q) {
    const int64_t r = B->arg[q];
    if (r >= 0 && r < B->num)
        NNM_CUDA_ATOMIC_ADD(&B->gw[r * B->dim + q % B->dim], B->g[q]);
}

/* sum / mean: column k of bag b's gradient (q = b * dim + k) into the rows
 * of its entries. */
static inline NNM_CUDA_HD void nnm_cuda_bag_bwd_sum_elem(const nnm_cuda_bag *B, int64_t q) {
    const int64_t b = q / B->dim, k = q % B->dim;
    int64_t lo, hi;
    nnm_cuda_bag_range(B, b, &lo, &hi);
    float s = 1.0f;
    if (B->mode == NNM_REDUCE_MEAN) {
        int64_t cnt = 0;
        for (int64_t i = lo; i < hi; i++)
            cnt += B->idx[i] != B->pad; /* as the cpu backend counts */
        s = cnt > 0 ? 1.0f / (float)cnt : 1.0f;
    }
    const float gv = B->g[q];
    for (int64_t i = lo; i < hi; i++) {
        if (!nnm_cuda_bag_takes(B, i))
            continue;
        const float sc = B->psw != NULL ? B->psw[i] : s;
        const float v = sc == 1.0f ? gv : gv * sc;
        NNM_CUDA_ATOMIC_ADD(&B->gw[B->idx[i] * B->dim + k], v);
    }
}

/* grad_per_sample_weights[i]: grad_out's row of i's bag . weight's row of
 * i (0 for padding), summed in double. */
static inline NNM_CUDA_HD void nnm_cuda_bag_bwd_psw_elem(const nnm_cuda_bag *B, int64_t i) {
    if (!nnm_cuda_bag_takes(B, i) || B->bags == 0) {
        B->gpsw[i] = 0.0f;
        return;
    }
    int64_t lo = 0, hi = B->bags; /* the last bag whose start is <= i */
    while (hi - lo > 1) {
        const int64_t mid = lo + (hi - lo) / 2;
        if (B->off[mid] <= i)
            lo = mid;
        else
            hi = mid;
    }
    const float *g = B->g + lo * B->dim, *w = B->w + B->idx[i] * B->dim;
    double dot = 0.0;
    for (int64_t k = 0; k < B->dim; k++)
        dot += (double)g[k] * (double)w[k];
    B->gpsw[i] = (float)dot;
}

#endif /* NNM_CUDA_EMBEDDING_BAG_BODY_H */
