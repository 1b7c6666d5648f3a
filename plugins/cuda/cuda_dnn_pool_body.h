/* plugins/cuda/cuda_dnn_pool_body.h - the pooling kernels' per-element
 * bodies, compiled twice: by nvcc into dnn_kernels.cu (one GPU thread per
 * element) and by the C compiler into tests/cuda/test_cuda_dnn_plan.c, which
 * runs them over every element on the CPU and compares the results with the
 * cpu backend's pool slots bit for bit - so the pooling maths is proven on a
 * machine without a GPU; only the launch itself needs one.
 *
 * The maths is the cpu backend's generic kernel (plugins/cpu/pool_kernels.inc)
 * step for step: the same windows (cpu_pool_window), the same order of
 * visits, the same NaN rule, sums in double divided once; the gradients
 * gather per input element, adding in output order from +0.0f, which is
 * the order the cpu backend scatters in.
 *
 * Plain C99 subset (no references, no C++), pointers to contiguous planes.
 */
#ifndef NNM_CUDA_DNN_POOL_BODY_H
#define NNM_CUDA_DNN_POOL_BODY_H

#include "cuda_dnn_plan.h" /* nnm__cuda_pool_geom */

#include <math.h>
#include <stdint.h>

#if defined(__CUDACC__)
#define DNN_HD static __host__ __device__ __forceinline__
#else
#define DNN_HD static inline
#endif

/* The running maximum after seeing v (cpu_pool_takes). */
DNN_HD int dnn_pool_takes(float v, float m) {
    return v > m || v != v;
}

/* floor(a / b) for b > 0 and any a. */
DNN_HD int64_t dnn_floor_div(int64_t a, int64_t b) {
    const int64_t q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

/* The window of output o along dim i (cpu_pool_window): [*start, *end) and,
 * for avg, the size clipped to the padded input only. */
DNN_HD void dnn_pool_window(const nnm__cuda_pool_geom *g, int i, int64_t o, int64_t *start,
                            int64_t *end, int64_t *pool) {
    const int64_t in = g->in[i];
    if (g->op == NNM_POOL_ADAPTIVE_AVG) {
        const int64_t out = g->out[i];
        *start = (o * in) / out;
        *end = ((o + 1) * in + out - 1) / out;
        *pool = *end - *start;
        return;
    }
    int64_t s = o * g->s[i] - g->p[i];
    if (g->op == NNM_POOL_MAX) {
        int64_t e = s + (g->k[i] - 1) * g->d[i] + 1;
        if (e > in)
            e = in;
        while (s < 0)
            s += g->d[i];
        *start = s;
        *end = e;
        *pool = 0;
        return;
    }
    int64_t e = s + g->k[i];
    if (e > in + g->p[i])
        e = in + g->p[i];
    *pool = e - s;
    if (s < 0)
        s = 0;
    if (e > in)
        e = in;
    *start = s;
    *end = e;
}

/* The avg divisor of a window (CPU_POOL_WALK). */
DNN_HD double dnn_pool_div(const nnm__cuda_pool_geom *g, const int64_t *s, const int64_t *e,
                           const int64_t *p) {
    if (g->op == NNM_POOL_AVG && g->divisor_override > 0)
        return (double)g->divisor_override;
    if (g->op == NNM_POOL_AVG && g->count_include_pad)
        return (double)(p[0] * p[1] * p[2]);
    return (double)((e[0] - s[0]) * (e[1] - s[1]) * (e[2] - s[2]));
}

/* Output element oi of one plane xp: its value, and for max its argmax
 * (the plane index of the element returned; -1 for an empty window). */
DNN_HD float dnn_pool_forward_one(const nnm__cuda_pool_geom *g, const float *xp, int64_t oi,
                                  int64_t *argmax) {
    int64_t o[3], s[3], e[3], p[3];
    o[2] = oi % g->out[2];
    o[1] = (oi / g->out[2]) % g->out[1];
    o[0] = oi / (g->out[2] * g->out[1]);
    int empty = 0;
    for (int i = 0; i < 3; i++) {
        dnn_pool_window(g, i, o[i], &s[i], &e[i], &p[i]);
        empty = empty || s[i] >= e[i];
    }
    *argmax = -1;
    if (g->op == NNM_POOL_MAX) {
        if (empty)
            return -INFINITY;
        int64_t best = (s[0] * g->in[1] + s[1]) * g->in[2] + s[2];
        float m = -INFINITY;
        for (int64_t z = s[0]; z < e[0]; z += g->d[0])
            for (int64_t y = s[1]; y < e[1]; y += g->d[1])
                for (int64_t x = s[2]; x < e[2]; x += g->d[2]) {
                    const int64_t idx = (z * g->in[1] + y) * g->in[2] + x;
                    const float v = xp[idx];
                    if (dnn_pool_takes(v, m)) {
                        m = v;
                        best = idx;
                    }
                }
        *argmax = best;
        return xp[best];
    }
    if (empty)
        return 0.0f;
    double sum = 0.0;
    for (int64_t z = s[0]; z < e[0]; z++)
        for (int64_t y = s[1]; y < e[1]; y++) {
            const float *r = xp + (z * g->in[1] + y) * g->in[2];
            for (int64_t x = s[2]; x < e[2]; x++)
                sum += (double)r[x];
        }
    return (float)(sum / dnn_pool_div(g, s, e, p));
}

/* The outputs along dim i whose windows may cover input position q: a
 * superset [*lo, *hi] (the callers check each window exactly). */
DNN_HD void dnn_pool_candidates(const nnm__cuda_pool_geom *g, int i, int64_t q, int64_t *lo,
                                int64_t *hi) {
    const int64_t in = g->in[i], out = g->out[i];
    int64_t l, h;
    if (g->op == NNM_POOL_ADAPTIVE_AVG) {
        l = dnn_floor_div(q * out, in) - 1;
        h = ((q + 1) * out + in - 1) / in;
    } else {
        /* the raw window of o is [o * s - p, o * s - p + span) */
        const int64_t span = g->op == NNM_POOL_MAX ? (g->k[i] - 1) * g->d[i] + 1 : g->k[i];
        l = dnn_floor_div(q + g->p[i] - span, g->s[i]);
        h = dnn_floor_div(q + g->p[i], g->s[i]);
    }
    *lo = l < 0 ? 0 : l;
    *hi = h > out - 1 ? out - 1 : h;
}

/* Input element qi of one plane: max's gradient, the sum over the outputs
 * (in order) whose argmax (ap: the plane's argmaxes) is qi. */
DNN_HD float dnn_pool_backward_max_one(const nnm__cuda_pool_geom *g, const int64_t *ap,
                                       const float *gp, int64_t qi) {
    const int64_t q[3] = {qi / (g->in[1] * g->in[2]), (qi / g->in[2]) % g->in[1], qi % g->in[2]};
    int64_t lo[3], hi[3];
    for (int i = 0; i < 3; i++)
        dnn_pool_candidates(g, i, q[i], &lo[i], &hi[i]);
    float acc = 0.0f;
    for (int64_t o0 = lo[0]; o0 <= hi[0]; o0++)
        for (int64_t o1 = lo[1]; o1 <= hi[1]; o1++)
            for (int64_t o2 = lo[2]; o2 <= hi[2]; o2++) {
                const int64_t oi = (o0 * g->out[1] + o1) * g->out[2] + o2;
                if (ap[oi] == qi)
                    acc += gp[oi];
            }
    return acc;
}

/* Input element qi of one plane: avg's (or adaptive avg's) gradient, the
 * sum over the covering windows (in order) of (float)(grad / divisor). */
DNN_HD float dnn_pool_backward_avg_one(const nnm__cuda_pool_geom *g, const float *gp, int64_t qi) {
    const int64_t q[3] = {qi / (g->in[1] * g->in[2]), (qi / g->in[2]) % g->in[1], qi % g->in[2]};
    int64_t lo[3], hi[3];
    for (int i = 0; i < 3; i++)
        dnn_pool_candidates(g, i, q[i], &lo[i], &hi[i]);
    float acc = 0.0f;
    int64_t s[3], e[3], p[3];
    for (int64_t o0 = lo[0]; o0 <= hi[0]; o0++) {
        dnn_pool_window(g, 0, o0, &s[0], &e[0], &p[0]);
        if (q[0] < s[0] || q[0] >= e[0])
            continue;
        for (int64_t o1 = lo[1]; o1 <= hi[1]; o1++) {
            dnn_pool_window(g, 1, o1, &s[1], &e[1], &p[1]);
            if (q[1] < s[1] || q[1] >= e[1])
                continue;
            for (int64_t o2 = lo[2]; o2 <= hi[2]; o2++) {
                dnn_pool_window(g, 2, o2, &s[2], &e[2], &p[2]);
                if (q[2] < s[2] || q[2] >= e[2])
                    continue;
                const int64_t oi = (o0 * g->out[1] + o1) * g->out[2] + o2;
                acc += (float)((double)gp[oi] / dnn_pool_div(g, s, e, p));
            }
        }
    }
    return acc;
}

#endif /* NNM_CUDA_DNN_POOL_BODY_H */
