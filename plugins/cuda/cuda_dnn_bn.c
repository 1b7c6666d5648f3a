/* plugins/cuda/cuda_dnn_bn.c - the batch_norm and batch_norm_backward
 * slots: x viewed as [n, c, l] (contiguous), statistics per channel, as
 * cuDNN's spatial batch norm of {n, c, l, 1}.
 *
 * forward, training:  cudnnBatchNormalizationForwardTraining. Its
 *                     exponentialAverageFactor is the slot's momentum
 *                     (running = (1 - m) * running + m * batch), its
 *                     running variance is the unbiased one (what PyTorch's
 *                     cuDNN path relies on too), its saved "inverse
 *                     variance" is 1 / sqrt(biased var + eps): the slot's
 *                     save_invstd. running_mean / running_var may both be
 *                     NULL (cuDNN then updates none).
 * forward, eval:      cudnnBatchNormalizationForwardInference with the
 *                     running statistics; save_mean / save_invstd from them
 *                     (dnn_kernels.cu, as the cpu backend rounds them).
 * backward, training: cudnnBatchNormalizationBackward from the saved
 *                     statistics, when grad_x is asked for; grad_weight /
 *                     grad_bias alone come from one reduction kernel (they
 *                     are the same sums in either mode).
 * backward, eval:     the statistics are constants: own kernels
 *                     (grad_x = w * invstd * g; the same reduction).
 * An empty batch (n * l == 0) never reaches cuDNN: the cpu backend's
 * statistics are written (training: mean 0, invstd 1 / sqrt(eps)), running
 * statistics untouched; zero gradients for weight and bias.
 * weight / bias NULL (no affine) are ones / zeros in scratch for cuDNN.
 *
 * Declines (NNM_E_UNSUPPORTED; the batch_norm layer then composes the op
 * from host ops): cuDNN absent, and what cuda_dnn_bn_plan_make declines
 * (PyTorch's bounds for cuDNN batch norm).
 */
#include "cuda_dnn_lib.h"

#include <stdio.h>
#include <string.h>

/* The slot's checks (as the cpu backend's cpu_bn_check): every operand on
 * one device, f32, contiguous, of its element count. */
static nnm_status bn_check(nnm_env *env, cuda_state *s, const char *op,
                           const nnm_batch_norm_args *a, int bwd, int32_t *id) {
    if (s == NULL)
        return CUDA_ERR(env, NNM_E_STATE, "cuda %s: backend not initialised", op);
    if (a == NULL)
        return CUDA_ERR(env, NNM_E_INVALID, "cuda %s: args is NULL", op);
    if (a->struct_size < sizeof(nnm_batch_norm_args))
        return CUDA_ERR(env, NNM_E_INVALID, "cuda %s: args struct_size %u < %zu", op,
                        (unsigned)a->struct_size, sizeof(nnm_batch_norm_args));
    if (a->n < 0 || a->c < 0 || a->l < 0 || (a->c && a->n > INT64_MAX / a->c) ||
        (a->n * a->c != 0 && a->l > INT64_MAX / (a->n * a->c)))
        return CUDA_ERR(env, NNM_E_SHAPE, "cuda %s: bad [n %lld, c %lld, l %lld]", op,
                        (long long)a->n, (long long)a->c, (long long)a->l);
    if (!(a->eps >= 0))
        return CUDA_ERR(env, NNM_E_INVALID, "cuda %s: eps %g must be >= 0", op, a->eps);
    const int64_t nx = a->n * a->c * a->l;
    const struct {
        const char *what;
        const nnm_tensor_desc *d;
        int64_t numel;
        int required;
    } ops[] = {
        {"x", a->x, nx, 1},
        {"weight", a->weight, a->c, 0},
        {"bias", bwd ? NULL : a->bias, a->c, 0},
        {"running_mean", bwd ? NULL : a->running_mean, a->c, 0},
        {"running_var", bwd ? NULL : a->running_var, a->c, 0},
        {"save_mean", a->save_mean, a->c, 1},
        {"save_invstd", a->save_invstd, a->c, 1},
        {"y", bwd ? NULL : a->y, nx, !bwd},
        {"grad_out", bwd ? a->grad_out : NULL, nx, bwd},
        {"grad_x", bwd ? a->grad_x : NULL, nx, 0},
        {"grad_weight", bwd ? a->grad_weight : NULL, a->c, 0},
        {"grad_bias", bwd ? a->grad_bias : NULL, a->c, 0},
    };
    *id = -1;
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        if (ops[i].d == NULL) {
            if (ops[i].required)
                return CUDA_ERR(env, NNM_E_INVALID, "cuda %s: %s tensor is NULL", op, ops[i].what);
            continue;
        }
        int64_t numel = 0;
        nnm_status st = cuda_dnn_check(env, s, op, ops[i].what, ops[i].d, id, &numel);
        if (st != NNM_OK)
            return st;
        if (numel != ops[i].numel)
            return CUDA_ERR(env, NNM_E_SHAPE, "cuda %s: %s has %lld elements, expected %lld", op,
                            ops[i].what, (long long)numel, (long long)ops[i].numel);
    }
    if (!bwd && (a->running_mean == NULL) != (a->running_var == NULL))
        return CUDA_ERR(env, NNM_E_INVALID, "cuda %s: running_mean and running_var come together",
                        op);
    if (!bwd && !a->training && a->running_mean == NULL)
        return CUDA_ERR(env, NNM_E_INVALID, "cuda %s: eval mode needs the running statistics", op);
    return cuda_use(env, op, *id);
}

/* Sets x's and the per-channel descriptors for cuDNN from the plan. */
static nnm_status bn_describe(nnm_env *env, struct cuda_dnn_state *d, const cuda_dnn_bn_plan *p,
                              const char *op) {
    const char *call = "";
    const cudnnStatus_t cs = cuda_dnn_describe_bn(&d->fn, d->xd, d->bd, p, &call);
    return cs == CUDNN_STATUS_SUCCESS ? NNM_OK : cuda_dnn_fail(env, d, op, call, cs);
}

/* Scratch [2c]: ones then zeros, for a missing weight / bias. */
static nnm_status bn_affine_default(nnm_env *env, cuda_state *s, int32_t id, const char *op,
                                    int64_t c, void **buf) {
    nnm_status st = cuda_scratch_get(env, s, id, (size_t)(2 * c) * sizeof(float), buf);
    if (st != NNM_OK)
        return st;
    float *p = *buf;
    int rc = nnm__cuda_dnn_fill(cuda_stream(s, id), p, c, 1.0f);
    if (rc == 0)
        rc = nnm__cuda_dnn_fill(cuda_stream(s, id), p + c, c, 0.0f);
    if (rc != 0) {
        cuda_scratch_put(s, id, *buf);
        *buf = NULL;
    }
    return cuda_launched(env, op, rc);
}

nnm_status cuda_dnn_batch_norm(nnm_env *env, void *state, const nnm_batch_norm_args *a) {
    cuda_state *s = state;
    const char *op = "batch_norm";
    int32_t id = -1;
    nnm_status st = bn_check(env, s, op, a, 0, &id);
    if (st != NNM_OK)
        return st;
    const cudaStream_t stream = cuda_stream(s, id);
    float *sm = cuda_dnn_ptr(a->save_mean), *si = cuda_dnn_ptr(a->save_invstd);
    float *rm = cuda_dnn_ptr(a->running_mean), *rv = cuda_dnn_ptr(a->running_var);
    if (a->c == 0)
        return NNM_OK;
    if (a->n * a->l == 0) /* nothing to normalise; the running stats stay */
        return cuda_launched(env, op,
                             a->training ? nnm__cuda_bn_empty_stats(stream, a->c, a->eps, sm, si)
                                         : nnm__cuda_bn_eval_stats(stream, a->c, rm, rv, a->eps,
                                                                   sm, si));
    cuda_dnn_bn_plan p;
    char msg[256];
    if ((st = cuda_dnn_bn_plan_make(a->n, a->c, a->l, a->training, &p, msg, sizeof msg)) != NNM_OK)
        return CUDA_ERR(env, st, "cuda %s: %s", op, msg);
    if (a->eps < CUDNN_BN_MIN_EPSILON)
        return CUDA_ERR(env, NNM_E_UNSUPPORTED, "cuda %s: eps %g below cuDNN's minimum %g", op,
                        a->eps, (double)CUDNN_BN_MIN_EPSILON);
    struct cuda_dnn_state *d = NULL;
    cudnnHandle_t h = NULL;
    if ((st = cuda_dnn_get(env, s, op, id, &d, &h)) != NNM_OK ||
        (st = bn_describe(env, d, &p, op)) != NNM_OK)
        return st;
    void *aff = NULL;
    if ((a->weight == NULL || a->bias == NULL) &&
        (st = bn_affine_default(env, s, id, op, a->c, &aff)) != NNM_OK)
        return st;
    const float *scale = a->weight != NULL ? cuda_dnn_ptr(a->weight) : (const float *)aff;
    const float *shift = a->bias != NULL ? cuda_dnn_ptr(a->bias) : (const float *)aff + a->c;
    const float one = 1.0f, zero = 0.0f;
    cudnnStatus_t cs;
    const char *call;
    if (a->training) {
        call = "cudnnBatchNormalizationForwardTraining";
        cs = d->fn.cudnnBatchNormalizationForwardTraining(
            h, CUDNN_BATCHNORM_SPATIAL, &one, &zero, d->xd, cuda_dnn_ptr(a->x), d->xd,
            cuda_dnn_ptr(a->y), d->bd, scale, shift, a->momentum, rm, rv, a->eps, sm, si);
    } else {
        call = "cudnnBatchNormalizationForwardInference";
        cs = d->fn.cudnnBatchNormalizationForwardInference(
            h, CUDNN_BATCHNORM_SPATIAL, &one, &zero, d->xd, cuda_dnn_ptr(a->x), d->xd,
            cuda_dnn_ptr(a->y), d->bd, scale, shift, rm, rv, a->eps);
    }
    cuda_scratch_put(s, id, aff); /* after the work is queued */
    if (cs != CUDNN_STATUS_SUCCESS)
        return cuda_dnn_fail(env, d, op, call, cs);
    if (!a->training)
        return cuda_launched(env, op, nnm__cuda_bn_eval_stats(stream, a->c, rm, rv, a->eps, sm, si));
    return NNM_OK;
}

nnm_status cuda_dnn_batch_norm_backward(nnm_env *env, void *state,
                                        const nnm_batch_norm_args *a) {
    cuda_state *s = state;
    const char *op = "batch_norm_backward";
    int32_t id = -1;
    nnm_status st = bn_check(env, s, op, a, 1, &id);
    if (st != NNM_OK)
        return st;
    if (a->c == 0 || (a->grad_x == NULL && a->grad_weight == NULL && a->grad_bias == NULL))
        return NNM_OK;
    const cudaStream_t stream = cuda_stream(s, id);
    const float *x = cuda_dnn_ptr(a->x), *g = cuda_dnn_ptr(a->grad_out);
    const float *mean = cuda_dnn_ptr(a->save_mean), *invstd = cuda_dnn_ptr(a->save_invstd);
    const float *w = cuda_dnn_ptr(a->weight);
    float *gx = cuda_dnn_ptr(a->grad_x), *gw = cuda_dnn_ptr(a->grad_weight),
          *gb = cuda_dnn_ptr(a->grad_bias);
    if (!a->training || gx == NULL || a->n * a->l == 0) {
        /* constants (eval), or no grad_x: the sums, and w * invstd * g */
        int rc = nnm__cuda_bn_param_grads(stream, a->n, a->c, a->l, x, g, mean, invstd, gw, gb);
        if (rc == 0 && gx != NULL)
            rc = nnm__cuda_bn_eval_grad_x(stream, a->n, a->c, a->l, g, w, invstd, gx);
        return cuda_launched(env, op, rc);
    }
    cuda_dnn_bn_plan p;
    char msg[256];
    if ((st = cuda_dnn_bn_plan_make(a->n, a->c, a->l, 1, &p, msg, sizeof msg)) != NNM_OK)
        return CUDA_ERR(env, st, "cuda %s: %s", op, msg);
    struct cuda_dnn_state *d = NULL;
    cudnnHandle_t h = NULL;
    if ((st = cuda_dnn_get(env, s, op, id, &d, &h)) != NNM_OK ||
        (st = bn_describe(env, d, &p, op)) != NNM_OK)
        return st;
    /* scratch [3c]: ones for a missing weight, then the unwanted gradients */
    void *buf = NULL;
    if ((st = cuda_scratch_get(env, s, id, (size_t)(3 * a->c) * sizeof(float), &buf)) != NNM_OK)
        return st;
    float *ones = buf;
    int rc = w == NULL ? nnm__cuda_dnn_fill(stream, ones, a->c, 1.0f) : 0;
    if (rc != 0) {
        cuda_scratch_put(s, id, buf);
        return cuda_launched(env, op, rc);
    }
    const float one = 1.0f, zero = 0.0f;
    /* The saved statistics are given, so cuDNN does not use epsilon; it still
     * checks its range. The runtime's backward passes eps 0 (it has no use
     * for it), which an older cuDNN's minimum rejects: 1e-5 then. */
    const double eps = a->eps > 0.0 && a->eps >= CUDNN_BN_MIN_EPSILON
                           ? a->eps
                           : (CUDNN_BN_MIN_EPSILON > 1e-5 ? CUDNN_BN_MIN_EPSILON : 1e-5);
    const cudnnStatus_t cs = d->fn.cudnnBatchNormalizationBackward(
        h, CUDNN_BATCHNORM_SPATIAL, &one, &zero, &one, &zero, d->xd, x, d->xd, g, d->xd, gx, d->bd,
        w != NULL ? w : ones, gw != NULL ? gw : ones + a->c, gb != NULL ? gb : ones + 2 * a->c, eps,
        mean, invstd);
    cuda_scratch_put(s, id, buf);
    if (cs != CUDNN_STATUS_SUCCESS)
        return cuda_dnn_fail(env, d, op, "cudnnBatchNormalizationBackward", cs);
    return NNM_OK;
}
