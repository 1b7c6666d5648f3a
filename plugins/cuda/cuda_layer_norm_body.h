/* plugins/cuda/cuda_layer_norm_body.h - the bodies of layer_norm and
 * layer_norm_backward (layer_norm.cu), plain C (see cuda_hd.h): the cpu
 * backend's formulas (plugins/cpu/ln_kernels.inc), one row or one column per
 * call, sums in double in index order (the cpu backend adds float lanes
 * first: the two agree to float rounding, and this one does not depend on
 * the launch).
 *   forward:  v = x (+ r); mean; var = mean((v - mean)^2);
 *             rstd = 1 / sqrt(var + eps); y = (v - mean) * rstd * w + b
 *   backward: xh = (v - mean) * rstd, gw = g * w:
 *             dx = rstd * (gw - mean(gw) - xh * mean(gw * xh));
 *             dweight = sum over rows of g * xh, dbias = sum of g */
#ifndef NNM_CUDA_LAYER_NORM_BODY_H
#define NNM_CUDA_LAYER_NORM_BODY_H

#include "cuda_hd.h"

#include <stddef.h>

/* r, w, b may be NULL. y may alias nothing it reads. */
static inline NNM_CUDA_HD void nnm_cuda_ln_fwd_row(int64_t row, int64_t C, float eps,
                                                   const float *x, const float *r, const float *w,
                                                   const float *b, float *y, float *mean,
                                                   float *rstd) {
    const float inv_c = 1.0f / (float)C;
    const float *xr = x + row * C, *rr = r != NULL ? r + row * C : NULL;
    float *yr = y + row * C;
    double s = 0.0;
    for (int64_t i = 0; i < C; i++)
        s += (double)(rr != NULL ? xr[i] + rr[i] : xr[i]);
    const float m = (float)(s * (double)inv_c);
    double q = 0.0;
    for (int64_t i = 0; i < C; i++) {
        const float v = rr != NULL ? xr[i] + rr[i] : xr[i];
        const double d = (double)v - (double)m;
        q += d * d;
    }
    const float var = (float)(q * (double)inv_c);
    const float rs = 1.0f / sqrtf(var + eps);
    mean[row] = m;
    rstd[row] = rs;
    for (int64_t i = 0; i < C; i++) {
        const float v = rr != NULL ? xr[i] + rr[i] : xr[i];
        float o = (v - m) * rs;
        if (w != NULL)
            o = o * w[i];
        if (b != NULL)
            o = o + b[i];
        yr[i] = o;
    }
}

/* grad_x's row. r, w may be NULL. */
static inline NNM_CUDA_HD void nnm_cuda_ln_bwd_row(int64_t row, int64_t C, const float *x,
                                                   const float *r, const float *w, const float *g,
                                                   const float *mean, const float *rstd,
                                                   float *gx) {
    const float inv_c = 1.0f / (float)C;
    const float *xr = x + row * C, *rr = r != NULL ? r + row * C : NULL, *gr = g + row * C;
    const float m = mean[row], rs = rstd[row];
    double s1 = 0.0, s2 = 0.0;
    for (int64_t i = 0; i < C; i++) {
        const float xh = ((rr != NULL ? xr[i] + rr[i] : xr[i]) - m) * rs;
        const float gw = w != NULL ? gr[i] * w[i] : gr[i];
        s1 += (double)gw;
        s2 += (double)gw * (double)xh;
    }
    const float m1 = (float)s1 * inv_c, m2 = (float)s2 * inv_c;
    float *dx = gx + row * C;
    for (int64_t i = 0; i < C; i++) {
        const float xh = ((rr != NULL ? xr[i] + rr[i] : xr[i]) - m) * rs;
        const float gw = w != NULL ? gr[i] * w[i] : gr[i];
        dx[i] = rs * (gw - m1 - xh * m2);
    }
}

/* grad_weight[col] and / or grad_bias[col] (each may be NULL) over R rows. */
static inline NNM_CUDA_HD void nnm_cuda_ln_bwd_col(int64_t col, int64_t R, int64_t C,
                                                   const float *x, const float *r, const float *g,
                                                   const float *mean, const float *rstd,
                                                   float *gweight, float *gbias) {
    double sw = 0.0, sb = 0.0;
    for (int64_t row = 0; row < R; row++) {
        const int64_t k = row * C + col;
        const float gv = g[k];
        if (gweight != NULL) {
            const float xh = ((r != NULL ? x[k] + r[k] : x[k]) - mean[row]) * rstd[row];
            sw += (double)(gv * xh);
        }
        sb += (double)gv;
    }
    if (gweight != NULL)
        gweight[col] = (float)sw;
    if (gbias != NULL)
        gbias[col] = (float)sb;
}

#endif /* NNM_CUDA_LAYER_NORM_BODY_H */
