/* plugins/cuda/cuda_optim_body.h - the per-element bodies of sgd_step and
 * adam_step (optim.cu), plain C (see cuda_hd.h): torch.optim.SGD and
 * Adam/AdamW in torch's order of float operations, exactly as the cpu
 * backend's FMA loops (plugins/cpu/sgd_loops.inc, adam_loops.inc) with
 * fmaf for each `add(x, alpha=)` / `addcmul` (what torch's AVX2 and CUDA
 * kernels compute). The scalars are prepared once on the host
 * (nnm_cuda_sgd_scalars / nnm_cuda_adam_scalars) as the cpu backend does. */
#ifndef NNM_CUDA_OPTIM_BODY_H
#define NNM_CUDA_OPTIM_BODY_H

#include <nnmod/plugin.h>

#include "cuda_hd.h"

typedef struct nnm_cuda_sgd_k {
    float wd, mom, neg_lr, damp1;
    int32_t use_mom, first_step, nesterov;
} nnm_cuda_sgd_k;

static inline nnm_cuda_sgd_k nnm_cuda_sgd_scalars(const nnm_sgd_args *a) {
    nnm_cuda_sgd_k k;
    k.wd = (float)a->weight_decay;
    k.mom = (float)a->momentum;
    k.neg_lr = (float)-a->lr;
    k.damp1 = (float)(1.0 - a->dampening); /* 1 - dampening in double, rounded once */
    k.use_mom = a->momentum != 0.0f;
    k.first_step = a->first_step != 0;
    k.nesterov = a->nesterov != 0;
    return k;
}

static inline NNM_CUDA_HD void nnm_cuda_sgd_elem(const nnm_cuda_sgd_k *k, int64_t i, float *p,
                                                 const float *g, float *buf) {
    const float d = k->wd != 0.0f ? fmaf(p[i], k->wd, g[i]) : g[i];
    if (!k->use_mom) {
        p[i] = fmaf(d, k->neg_lr, p[i]);
        return;
    }
    const float b = k->first_step ? d : fmaf(d, k->damp1, buf[i] * k->mom);
    buf[i] = b;
    p[i] = fmaf(k->nesterov ? fmaf(b, k->mom, d) : b, k->neg_lr, p[i]);
}

typedef struct nnm_cuda_adam_k {
    float b1, b2, eps, wd, one_m_b1, one_m_b2, decay, neg_step_size, bc2_sqrt;
    int32_t decoupled, l2;
} nnm_cuda_adam_k;

static inline nnm_cuda_adam_k nnm_cuda_adam_scalars(const nnm_adam_args *a) {
    nnm_cuda_adam_k k;
    const double step = (double)a->step;
    k.b1 = (float)a->beta1;
    k.b2 = (float)a->beta2;
    k.eps = (float)a->eps;
    k.wd = (float)a->weight_decay;
    k.one_m_b1 = (float)(1.0 - a->beta1);
    k.one_m_b2 = (float)(1.0 - a->beta2);
    k.decay = (float)(1.0 - a->lr * a->weight_decay);
    k.neg_step_size = (float)-(a->lr / (1.0 - pow(a->beta1, step)));
    k.bc2_sqrt = (float)sqrt(1.0 - pow(a->beta2, step));
    k.decoupled = a->decoupled != 0;
    k.l2 = !k.decoupled && k.wd != 0.0f;
    return k;
}

/* vmax is NULL unless amsgrad. */
static inline NNM_CUDA_HD void nnm_cuda_adam_elem(const nnm_cuda_adam_k *k, int64_t i, float *p,
                                                  const float *g, float *m, float *v,
                                                  float *vmax) {
    const float pi = k->decoupled ? p[i] * k->decay : p[i];
    const float gi = k->l2 ? fmaf(p[i], k->wd, g[i]) : g[i];
    const float mi = fmaf(gi, k->one_m_b1, m[i] * k->b1);
    float vi = fmaf(k->one_m_b2 * gi, gi, v[i] * k->b2);
    m[i] = mi;
    v[i] = vi;
    if (vmax != NULL) {
        vi = nnm_cuda_maxf(vmax[i], vi);
        vmax[i] = vi;
    }
    const float denom = sqrtf(vi) / k->bc2_sqrt + k->eps;
    const float upd = (k->neg_step_size * mi) / denom;
    p[i] = pi + upd;
}

#endif /* NNM_CUDA_OPTIM_BODY_H */
