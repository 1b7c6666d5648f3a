/* plugins/cuda/cuda_nll.c - nll and nll_backward (1.1): validated as the cpu
 * backend's cpu_nll / cpu_nll_backward. The targets' range, which the cpu
 * backend checks on the host before writing anything, is checked on the
 * device first (nll.cu) and read back: one synchronisation per call, the
 * price of the same error (with row and value) instead of a garbage loss. */
#include "cuda_ops.h"
#include "cuda_nll_kernels.h"

/* Checks logp [N, C] (contiguous f32) and target [N] (i64, any stride). */
static nnm_status cuda_check_nll(nnm_env *env, const cuda_state *s, const char *op,
                                 const nnm_tensor_desc *logp, const char *logp_name,
                                 const nnm_tensor_desc *target, int32_t *id, int64_t *n,
                                 int64_t *c) {
    int64_t n_l = 0, n_t = 0;
    nnm_status st = cuda_check_desc(env, s, op, logp_name, logp, id, &n_l);
    if (st == NNM_OK)
        st = cuda_check_desc_dt(env, s, op, "target", target, CUDA_DT_I64, id, &n_t);
    if (st != NNM_OK)
        return st;
    if (logp->ndim != 2)
        return CUDA_ERR(env, NNM_E_SHAPE, "cuda %s: %s must be [N, C], it has %d dims", op,
                        logp_name, (int)logp->ndim);
    if (!cuda_is_contiguous(logp))
        return cuda_err_contiguous(env, op, logp_name);
    *n = logp->shape[0];
    *c = logp->shape[1];
    if (target->ndim != 1 || target->shape[0] != *n)
        return CUDA_ERR(env, NNM_E_SHAPE,
                        "cuda %s: target must be [%lld] to match %s [%lld, %lld]", op,
                        (long long)*n, logp_name, (long long)*n, (long long)*c);
    return NNM_OK;
}

/* The targets' range on the device (see the file comment). */
static nnm_status cuda_nll_targets(nnm_env *env, cuda_state *s, int32_t id, const char *op,
                                   const nnm_tensor_desc *target, int64_t n, int64_t c,
                                   int64_t ignore_index) {
    if (n == 0)
        return NNM_OK;
    nnm_status st = cuda_use(env, op, id);
    if (st != NNM_OK)
        return st;
    void *flag = NULL;
    if ((st = cuda_scratch_get(env, s, id, sizeof(unsigned long long), &flag)) != NNM_OK)
        return st;
    const int64_t *t = cuda_bytes(target);
    const int64_t ts = target->strides[0];
    unsigned long long bad = ~0ull;
    cudaError_t e = cudaMemsetAsync(flag, 0xff, sizeof bad, cuda_stream(s, id));
    if (e != cudaSuccess)
        st = cuda_fail(env, op, "cudaMemsetAsync", e);
    if (st == NNM_OK)
        st = cuda_launched(env, op,
                           nnm__cuda_launch_nll_check(cuda_stream(s, id), n, c, t, ts,
                                                      ignore_index, flag));
    if (st == NNM_OK)
        st = cuda_read_back(env, s, id, op, &bad, flag, sizeof bad);
    cuda_scratch_put(s, id, flag);
    if (st != NNM_OK || bad == ~0ull)
        return st;
    int64_t ti = 0;
    st = cuda_read_back(env, s, id, op, &ti, t + (int64_t)bad * ts, sizeof ti);
    if (st != NNM_OK)
        return st;
    return CUDA_ERR(env, NNM_E_INVALID,
                    "cuda %s: target %lld at row %lld is outside [0, %lld) (and is not "
                    "ignore_index %lld)",
                    op, (long long)ti, (long long)bad, (long long)c, (long long)ignore_index);
}

/* A [N] f32 vector: ndim 1, size n. */
static nnm_status cuda_check_vec(nnm_env *env, const cuda_state *s, const char *op,
                                 const char *what, const nnm_tensor_desc *d, int32_t *id,
                                 int64_t n) {
    int64_t numel = 0;
    nnm_status st = cuda_check_desc(env, s, op, what, d, id, &numel);
    if (st != NNM_OK)
        return st;
    if (d->ndim != 1 || d->shape[0] != n)
        return CUDA_ERR(env, NNM_E_SHAPE, "cuda %s: %s must be [%lld] (one value per row)", op,
                        what, (long long)n);
    return NNM_OK;
}

nnm_status cuda_nll(nnm_env *env, void *state, const nnm_nll_args *a) {
    cuda_state *s = state;
    if (a == NULL)
        return CUDA_ERR(env, NNM_E_INVALID, "cuda nll: args is NULL");
    if (a->struct_size < sizeof(nnm_nll_args))
        return CUDA_ERR(env, NNM_E_INVALID, "cuda nll: args struct_size %u < %zu",
                        (unsigned)a->struct_size, sizeof(nnm_nll_args));
    const double e = a->label_smoothing;
    if (!(e >= 0.0 && e <= 1.0))
        return CUDA_ERR(env, NNM_E_INVALID, "cuda nll: label_smoothing %g is outside [0, 1]", e);
    if (s == NULL)
        return CUDA_ERR(env, NNM_E_STATE, "cuda nll: backend not initialised");
    int64_t n = 0, c = 0;
    int32_t id = -1;
    nnm_status st = cuda_check_nll(env, s, "nll", a->logp, "logp", a->target, &id, &n, &c);
    if (st == NNM_OK)
        st = cuda_check_vec(env, s, "nll", "output", a->out, &id, n);
    if (st != NNM_OK)
        return st;
    if (n > 1 && a->out->strides[0] != 1)
        return cuda_err_contiguous(env, "nll", "output");
    if (a->count != NULL) {
        int64_t n_c = 0;
        st = cuda_check_desc(env, s, "nll", "count", a->count, &id, &n_c);
        if (st != NNM_OK)
            return st;
        if (n_c != 1)
            return CUDA_ERR(env, NNM_E_SHAPE, "cuda nll: count must hold one element, it has %lld",
                            (long long)n_c);
    }
    if ((st = cuda_nll_targets(env, s, id, "nll", a->target, n, c, a->ignore_index)) != NNM_OK)
        return st;
    if ((st = cuda_use(env, "nll", id)) != NNM_OK)
        return st;
    return cuda_launched(env, "nll",
                         nnm__cuda_launch_nll(cuda_stream(s, id), n, c, cuda_base(a->logp),
                                              cuda_bytes(a->target), a->target->strides[0],
                                              a->ignore_index, e, cuda_base(a->out),
                                              a->count != NULL ? cuda_base(a->count) : NULL));
}

nnm_status cuda_nll_backward(nnm_env *env, void *state, const nnm_nll_backward_args *a) {
    cuda_state *s = state;
    if (a == NULL)
        return CUDA_ERR(env, NNM_E_INVALID, "cuda nll_backward: args is NULL");
    if (a->struct_size < sizeof(nnm_nll_backward_args))
        return CUDA_ERR(env, NNM_E_INVALID, "cuda nll_backward: args struct_size %u < %zu",
                        (unsigned)a->struct_size, sizeof(nnm_nll_backward_args));
    const double e = a->label_smoothing;
    if (!(e >= 0.0 && e <= 1.0))
        return CUDA_ERR(env, NNM_E_INVALID,
                        "cuda nll_backward: label_smoothing %g is outside [0, 1]", e);
    if (s == NULL)
        return CUDA_ERR(env, NNM_E_STATE, "cuda nll_backward: backend not initialised");
    int64_t n = 0, c = 0;
    int32_t id = -1;
    nnm_status st = cuda_check_nll(env, s, "nll_backward", a->grad_logp, "grad_logp", a->target,
                                   &id, &n, &c);
    if (st == NNM_OK)
        st = cuda_check_vec(env, s, "nll_backward", "grad", a->grad, &id, n);
    if (st != NNM_OK)
        return st;
    if ((st = cuda_nll_targets(env, s, id, "nll_backward", a->target, n, c, a->ignore_index)) !=
        NNM_OK)
        return st;
    if (n * c == 0)
        return NNM_OK;
    if ((st = cuda_use(env, "nll_backward", id)) != NNM_OK)
        return st;
    return cuda_launched(env, "nll_backward",
                         nnm__cuda_launch_nll_backward(
                             cuda_stream(s, id), n, c, cuda_base(a->grad), a->grad->strides[0],
                             cuda_bytes(a->target), a->target->strides[0], a->ignore_index, e,
                             cuda_base(a->grad_logp)));
}
