/* plugins/cuda/cuda_softmax.c - softmax along any dim (1.3) and
 * log_softmax along the last (1.1): validated as the cpu backend's; one
 * thread per row, or three passes over fixed chunks for rows longer than
 * NNM_CUDA_SM_CHUNK (softmax.cu), their partial results in scratch memory. */
#include "cuda_ops.h"
#include "cuda_softmax_kernels.h"

/* Launches on device id (current) for x [outer, n, inner] (nonempty). */
static nnm_status cuda_softmax_run(nnm_env *env, cuda_state *s, int32_t id, const char *op,
                                   int64_t outer, int64_t n, int64_t inner, int log_,
                                   const float *x, float *out) {
    if (n <= NNM_CUDA_SM_CHUNK)
        return cuda_launched(env, op,
                             nnm__cuda_launch_softmax(cuda_stream(s, id), outer, n, inner, log_, x,
                                                      out, NULL, 1, n));
    const int64_t rows = outer * inner, nchunks = (n + NNM_CUDA_SM_CHUNK - 1) / NNM_CUDA_SM_CHUNK;
    if (rows > INT64_MAX / 16 / (nchunks + 1))
        return CUDA_ERR(env, NNM_E_LIMIT, "cuda %s: %lld rows of %lld", op, (long long)rows,
                        (long long)n);
    void *work = NULL;
    nnm_status st =
        cuda_scratch_get(env, s, id, (size_t)(2 * rows * (nchunks + 1)) * sizeof(double), &work);
    if (st != NNM_OK)
        return st;
    st = cuda_launched(env, op,
                       nnm__cuda_launch_softmax(cuda_stream(s, id), outer, n, inner, log_, x, out,
                                                work, nchunks, NNM_CUDA_SM_CHUNK));
    cuda_scratch_put(s, id, work);
    return st;
}

nnm_status cuda_softmax(nnm_env *env, void *state, const nnm_softmax_args *a) {
    cuda_state *s = state;
    if (a == NULL)
        return CUDA_ERR(env, NNM_E_INVALID, "cuda softmax: args is NULL");
    if (a->struct_size < sizeof(nnm_softmax_args))
        return CUDA_ERR(env, NNM_E_INVALID, "cuda softmax: args struct_size %u < %zu",
                        (unsigned)a->struct_size, sizeof(nnm_softmax_args));
    if (s == NULL)
        return CUDA_ERR(env, NNM_E_STATE, "cuda softmax: backend not initialised");
    int64_t nx = 0, no = 0;
    int32_t id = -1;
    nnm_status st = cuda_check_desc(env, s, "softmax", "x", a->x, &id, &nx);
    if (st == NNM_OK)
        st = cuda_check_desc(env, s, "softmax", "output", a->out, &id, &no);
    if (st != NNM_OK)
        return st;
    if (a->outer < 0 || a->dim < 0 || a->inner < 0 || nx != no ||
        (a->outer * a->dim * a->inner != nx))
        return CUDA_ERR(env, NNM_E_SHAPE,
                        "cuda softmax: [outer %lld, dim %lld, inner %lld] does not cover x (%lld) "
                        "and out (%lld)",
                        (long long)a->outer, (long long)a->dim, (long long)a->inner,
                        (long long)nx, (long long)no);
    if (!cuda_is_contiguous(a->x))
        return cuda_err_contiguous(env, "softmax", "x");
    if (!cuda_is_contiguous(a->out))
        return cuda_err_contiguous(env, "softmax", "output");
    if (nx == 0)
        return NNM_OK;
    if ((st = cuda_use(env, "softmax", id)) != NNM_OK)
        return st;
    return cuda_softmax_run(env, s, id, "softmax", a->outer, a->dim, a->inner, a->log != 0,
                            cuda_base(a->x), cuda_base(a->out));
}

nnm_status cuda_log_softmax(nnm_env *env, void *state, const nnm_log_softmax_args *a) {
    cuda_state *s = state;
    if (a == NULL)
        return CUDA_ERR(env, NNM_E_INVALID, "cuda log_softmax: args is NULL");
    if (a->struct_size < sizeof(nnm_log_softmax_args))
        return CUDA_ERR(env, NNM_E_INVALID, "cuda log_softmax: args struct_size %u < %zu",
                        (unsigned)a->struct_size, sizeof(nnm_log_softmax_args));
    if (s == NULL)
        return CUDA_ERR(env, NNM_E_STATE, "cuda log_softmax: backend not initialised");
    int64_t n_out = 0, n_x = 0;
    int32_t id = -1;
    nnm_status st = cuda_check_desc(env, s, "log_softmax", "output", a->out, &id, &n_out);
    if (st == NNM_OK)
        st = cuda_check_desc(env, s, "log_softmax", "x", a->x, &id, &n_x);
    if (st != NNM_OK)
        return st;
    const nnm_tensor_desc *x = a->x, *out = a->out;
    int same = x->ndim == out->ndim;
    for (int32_t i = 0; same && i < x->ndim; i++)
        same = x->shape[i] == out->shape[i];
    if (!same)
        return CUDA_ERR(env, NNM_E_SHAPE, "cuda log_softmax: output and x differ in shape");
    if (!cuda_is_contiguous(x))
        return cuda_err_contiguous(env, "log_softmax", "x");
    if (!cuda_is_contiguous(out))
        return cuda_err_contiguous(env, "log_softmax", "output");
    const int64_t c = x->ndim > 0 ? x->shape[x->ndim - 1] : 1;
    if (n_x == 0 || c == 0)
        return NNM_OK;
    if ((st = cuda_use(env, "log_softmax", id)) != NNM_OK)
        return st;
    return cuda_softmax_run(env, s, id, "log_softmax", n_x / c, c, 1, 1, cuda_base(x),
                            cuda_base(out));
}
