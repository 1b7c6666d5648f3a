/* plugins/cuda/cuda_dnn_pool.c - the pool and pool_backward slots: max,
 * avg and adaptive avg over 1-3 spatial dims, with the cpu backend's
 * semantics bit for bit (dnn_kernels.cu says how, and why not cuDNN's
 * pooling). Needs no cuDNN.
 *
 * max's gradient recomputes each window's argmax from x (nnm_pool_args has
 * no indices): one kernel writes the argmaxes to scratch, a second gathers
 * per input element, so the result does not depend on thread timing.
 */
#include "cuda_dnn.h"

#include <stdio.h>

/* Contiguous (size-1 dims may have any stride), as the cpu backend checks. */
static int dnn_contiguous(const nnm_tensor_desc *d) {
    int64_t want = 1;
    for (int32_t i = d->ndim - 1; i >= 0; i--) {
        if (d->shape[i] != 1 && d->strides[i] != want)
            return 0;
        want *= d->shape[i];
    }
    return 1;
}

nnm_status cuda_dnn_check(nnm_env *env, const cuda_state *s, const char *op, const char *what,
                          const nnm_tensor_desc *d, int32_t *id, int64_t *numel) {
    int64_t n = 0;
    nnm_status st = cuda_check_desc(env, s, op, what, d, id, &n);
    if (st != NNM_OK)
        return st;
    if (!dnn_contiguous(d))
        return CUDA_ERR(env, NNM_E_INVALID, "cuda %s: %s tensor must be contiguous", op, what);
    if (numel != NULL)
        *numel = n;
    return NNM_OK;
}

static nnm_status pool_begin(nnm_env *env, cuda_state *s, const nnm_pool_args *a, int backward,
                             const char *op, nnm__cuda_pool_geom *g, int32_t *id) {
    if (s == NULL)
        return CUDA_ERR(env, NNM_E_STATE, "cuda %s: backend not initialised", op);
    char msg[512];
    nnm_status st = cuda_dnn_pool_plan(a, backward, g, msg, sizeof msg);
    if (st != NNM_OK)
        return CUDA_ERR(env, st, "cuda %s: %s", op, msg);
    *id = -1;
    if ((st = cuda_dnn_check(env, s, op, "x", a->x, id, NULL)) != NNM_OK)
        return st;
    if (backward) {
        if ((st = cuda_dnn_check(env, s, op, "grad_out", a->grad_out, id, NULL)) != NNM_OK ||
            (st = cuda_dnn_check(env, s, op, "grad_x", a->grad_x, id, NULL)) != NNM_OK)
            return st;
    } else if ((st = cuda_dnn_check(env, s, op, "out", a->out, id, NULL)) != NNM_OK) {
        return st;
    }
    return cuda_use(env, op, *id);
}

nnm_status cuda_dnn_pool(nnm_env *env, void *state, const nnm_pool_args *a) {
    cuda_state *s = state;
    nnm__cuda_pool_geom g;
    int32_t id = -1;
    nnm_status st = pool_begin(env, s, a, 0, "pool", &g, &id);
    if (st != NNM_OK)
        return st;
    return cuda_launched(env, "pool",
                         nnm__cuda_pool_forward(cuda_stream(s, id), g, cuda_dnn_ptr(a->x),
                                                cuda_dnn_ptr(a->out)));
}

nnm_status cuda_dnn_pool_backward(nnm_env *env, void *state, const nnm_pool_args *a) {
    cuda_state *s = state;
    nnm__cuda_pool_geom g;
    int32_t id = -1;
    nnm_status st = pool_begin(env, s, a, 1, "pool_backward", &g, &id);
    if (st != NNM_OK)
        return st;
    const cudaStream_t stream = cuda_stream(s, id);
    if (g.op != NNM_POOL_MAX)
        return cuda_launched(env, "pool_backward",
                             nnm__cuda_pool_backward_avg(stream, g, cuda_dnn_ptr(a->grad_out),
                                                         cuda_dnn_ptr(a->grad_x)));
    const int64_t n_out = g.outer * g.out[0] * g.out[1] * g.out[2];
    void *arg = NULL;
    if ((st = cuda_scratch_get(env, s, id, (size_t)n_out * sizeof(int64_t), &arg)) != NNM_OK)
        return st;
    int rc = nnm__cuda_pool_argmax(stream, g, cuda_dnn_ptr(a->x), arg);
    if (rc == 0)
        rc = nnm__cuda_pool_backward_max(stream, g, arg, cuda_dnn_ptr(a->grad_out),
                                         cuda_dnn_ptr(a->grad_x));
    cuda_scratch_put(s, id, arg); /* after the kernels are queued */
    return cuda_launched(env, "pool_backward", rc);
}
