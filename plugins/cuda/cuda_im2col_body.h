/* plugins/cuda/cuda_im2col_body.h - the per-element bodies of im2col and
 * col2im (im2col.cu), plain C (see cuda_hd.h). 1-d and 2-d calls are
 * promoted to 3 spatial dims with leading size-1 dims (kernel 1, stride 1,
 * no padding), as the cpu backend does (plugins/cpu/nn_kernels.inc).
 *
 * im2col: one thread per column entry (c, kd, kh, kw, od, oh, ow): the image
 * element it holds, 0 in the padding. col2im: one thread per image element,
 * gathering the column entries that map onto it in ascending kernel offset,
 * the order in which the cpu backend's scatter adds them, so the sums have
 * its bits; no atomics. */
#ifndef NNM_CUDA_IM2COL_BODY_H
#define NNM_CUDA_IM2COL_BODY_H

#include <nnmod/plugin.h>

#include "cuda_hd.h"

typedef struct nnm_cuda_geom3 {
    int64_t channels;
    int64_t in[3], out[3], k[3], s[3], p[3], d[3];
} nnm_cuda_geom3;

/* Promotes a's geometry; returns -1, or the (unpromoted) spatial dim that is
 * invalid (sizes < 0, kernel, stride or dilation < 1, padding < 0); -2 for
 * n_spatial outside 1..3. */
static inline int nnm_cuda_geom_promote(nnm_cuda_geom3 *G, const nnm_im2col_args *a) {
    const int32_t ns = a->n_spatial;
    if (ns < 1 || ns > 3)
        return -2;
    G->channels = a->channels;
    for (int i = 0; i < 3; i++) {
        const int j = i - (3 - ns);
        G->in[i] = j >= 0 ? a->im_size[j] : 1;
        G->out[i] = j >= 0 ? a->col_size[j] : 1;
        G->k[i] = j >= 0 ? a->kernel[j] : 1;
        G->s[i] = j >= 0 ? a->stride[j] : 1;
        G->p[i] = j >= 0 ? a->padding[j] : 0;
        G->d[i] = j >= 0 ? a->dilation[j] : 1;
        if (G->in[i] < 0 || G->out[i] < 0 || G->k[i] < 1 || G->s[i] < 1 || G->p[i] < 0 ||
            G->d[i] < 1)
            return j;
    }
    return -1;
}

/* col[q], q < channels * prod(k) * prod(out). */
static inline NNM_CUDA_HD void nnm_cuda_im2col_elem(const nnm_cuda_geom3 *G, int64_t q,
                                                    const float *im, float *col) {
    const int64_t L = G->out[0] * G->out[1] * G->out[2], K = G->k[0] * G->k[1] * G->k[2];
    const int64_t row = q / L, l = q % L;
    const int64_t c = row / K, kk = row % K;
    const int64_t kw = kk % G->k[2], kh = (kk / G->k[2]) % G->k[1], kd = kk / (G->k[2] * G->k[1]);
    const int64_t ow = l % G->out[2], oh = (l / G->out[2]) % G->out[1], od = l / (G->out[2] * G->out[1]);
    const int64_t z = od * G->s[0] - G->p[0] + kd * G->d[0];
    const int64_t y = oh * G->s[1] - G->p[1] + kh * G->d[1];
    const int64_t x = ow * G->s[2] - G->p[2] + kw * G->d[2];
    float v = 0.0f;
    if (z >= 0 && z < G->in[0] && y >= 0 && y < G->in[1] && x >= 0 && x < G->in[2])
        v = im[((c * G->in[0] + z) * G->in[1] + y) * G->in[2] + x];
    col[q] = v;
}

/* The output position o (of `out`) whose window holds input position t at
 * kernel offset k (stride s, padding p, dilation d), or -1. */
static inline NNM_CUDA_HD int64_t nnm_cuda_col_pos(int64_t t, int64_t k, int64_t s, int64_t p,
                                                   int64_t d, int64_t out) {
    const int64_t u = t + p - k * d;
    if (u < 0 || u % s != 0)
        return -1;
    const int64_t o = u / s;
    return o < out ? o : -1;
}

/* im[q], q < channels * prod(in): the sum of the column entries on it. */
static inline NNM_CUDA_HD void nnm_cuda_col2im_elem(const nnm_cuda_geom3 *G, int64_t q,
                                                    const float *col, float *im) {
    const int64_t L = G->out[0] * G->out[1] * G->out[2], K = G->k[0] * G->k[1] * G->k[2];
    const int64_t x = q % G->in[2], y = (q / G->in[2]) % G->in[1];
    const int64_t z = (q / (G->in[2] * G->in[1])) % G->in[0];
    const int64_t c = q / (G->in[2] * G->in[1] * G->in[0]);
    float acc = 0.0f;
    for (int64_t kd = 0; kd < G->k[0]; kd++) {
        const int64_t od = nnm_cuda_col_pos(z, kd, G->s[0], G->p[0], G->d[0], G->out[0]);
        if (od < 0)
            continue;
        for (int64_t kh = 0; kh < G->k[1]; kh++) {
            const int64_t oh = nnm_cuda_col_pos(y, kh, G->s[1], G->p[1], G->d[1], G->out[1]);
            if (oh < 0)
                continue;
            for (int64_t kw = 0; kw < G->k[2]; kw++) {
                const int64_t ow = nnm_cuda_col_pos(x, kw, G->s[2], G->p[2], G->d[2], G->out[2]);
                if (ow < 0)
                    continue;
                const int64_t row = c * K + (kd * G->k[1] + kh) * G->k[2] + kw;
                acc += col[row * L + (od * G->out[1] + oh) * G->out[2] + ow];
            }
        }
    }
    im[q] = acc;
}

#endif /* NNM_CUDA_IM2COL_BODY_H */
