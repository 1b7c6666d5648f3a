/* plugins/cuda/cuda_index_body.h - the per-element bodies of index_select
 * and index_add (index.cu), plain C (see cuda_hd.h), over [outer, rows,
 * inner] views as nnm_index_args says. The runtime checked the indices;
 * the bodies only guard their accesses (an index outside [0, n) selects
 * zeros and adds nothing). */
#ifndef NNM_CUDA_INDEX_BODY_H
#define NNM_CUDA_INDEX_BODY_H

#include "cuda_hd.h"

#include <stddef.h>

/* dst element q of [outer, m, inner] (esize bytes each) = src[o, idx[j], i]. */
static inline NNM_CUDA_HD void nnm_cuda_index_select_elem(int64_t q, int64_t n, int64_t m,
                                                          int64_t inner, uint32_t esize,
                                                          const int64_t *idx, const char *src,
                                                          char *dst) {
    const int64_t i = q % inner, j = (q / inner) % m, o = q / (inner * m);
    const int64_t r = idx[j];
    char *d = dst + (size_t)q * esize;
    if (r < 0 || r >= n) {
        for (uint32_t b = 0; b < esize; b++)
            d[b] = 0;
        return;
    }
    const char *s = src + (size_t)((o * n + r) * inner + i) * esize;
    if (esize == 4 && ((uintptr_t)s | (uintptr_t)d) % 4 == 0) {
        *(uint32_t *)(void *)d = *(const uint32_t *)(const void *)s;
    } else if (esize == 8 && ((uintptr_t)s | (uintptr_t)d) % 8 == 0) {
        *(uint64_t *)(void *)d = *(const uint64_t *)(const void *)s;
    } else {
        for (uint32_t b = 0; b < esize; b++)
            d[b] = s[b];
    }
}

/* src element q of [outer, m, inner] added into dst[o, idx[j], i] (atomic on
 * the device: repeated indices collide). */
static inline NNM_CUDA_HD void nnm_cuda_index_add_elem(int64_t q, int64_t n, int64_t m,
                                                       int64_t inner, const int64_t *idx,
                                                       const float *src, float *dst) {
    const int64_t i = q % inner, j = (q / inner) % m, o = q / (inner * m);
    const int64_t r = idx[j];
    if (r < 0 || r >= n)
        return;
    NNM_CUDA_ATOMIC_ADD(&dst[(o * n + r) * inner + i], src[q]);
}

#endif /* NNM_CUDA_INDEX_BODY_H */
