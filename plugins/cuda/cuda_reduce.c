/* plugins/cuda/cuda_reduce.c - the reduce slot (1.1): validated and planned
 * as the cpu backend's cpu_reduce; one thread per output element, or two
 * passes over fixed chunks for reductions longer than NNM_CUDA_RED_CHUNK
 * (reduce.cu), the partial results in scratch memory. */
#include "cuda_ops.h"
#include "cuda_reduce_kernels.h"

nnm_status cuda_reduce(nnm_env *env, void *state, const nnm_reduce_args *a) {
    cuda_state *s = state;
    if (a == NULL)
        return CUDA_ERR(env, NNM_E_INVALID, "cuda reduce: args is NULL");
    if (a->struct_size < sizeof(nnm_reduce_args))
        return CUDA_ERR(env, NNM_E_INVALID, "cuda reduce: args struct_size %u < %zu",
                        (unsigned)a->struct_size, sizeof(nnm_reduce_args));
    if (a->op < NNM_REDUCE_SUM || a->op > NNM_REDUCE_MIN)
        return CUDA_ERR(env, NNM_E_UNSUPPORTED, "cuda reduce: unknown op %d", (int)a->op);
    if (s == NULL)
        return CUDA_ERR(env, NNM_E_STATE, "cuda reduce: backend not initialised");
    static const char *const op_names[] = {"sum", "mean", "max", "min"};
    int64_t n_out = 0, n_x = 0;
    int32_t id = -1;
    nnm_status st = cuda_check_desc(env, s, "reduce", "output", a->out, &id, &n_out);
    if (st == NNM_OK)
        st = cuda_check_desc(env, s, "reduce", "x", a->x, &id, &n_x);
    if (st != NNM_OK)
        return st;
    const nnm_tensor_desc *x = a->x, *out = a->out;
    if (x->ndim != out->ndim)
        return CUDA_ERR(env, NNM_E_SHAPE,
                        "cuda reduce: output has %d dims, x has %d (reduced dims stay as size 1)",
                        (int)out->ndim, (int)x->ndim);
    if (!cuda_is_contiguous(out))
        return cuda_err_contiguous(env, "reduce", "output");
    nnm_cuda_red_plan P;
    memset(&P, 0, sizeof P);
    const int32_t bad = nnm_cuda_red_plan_init(&P, a->op, a->alpha, x, out);
    if (bad >= 0)
        return CUDA_ERR(env, NNM_E_SHAPE,
                        "cuda reduce: output has size %lld in dim %d where x has %lld (it "
                        "must be %lld, or 1 to reduce the dim)",
                        (long long)out->shape[bad], (int)bad, (long long)x->shape[bad],
                        (long long)x->shape[bad]);
    if (n_out == 0)
        return NNM_OK;
    if (P.count == 0 && (a->op == NNM_REDUCE_MAX || a->op == NNM_REDUCE_MIN))
        return CUDA_ERR(env, NNM_E_SHAPE,
                        "cuda reduce: %s over zero elements (a reduced dim of x has size 0) has "
                        "no identity",
                        op_names[a->op]);
    if ((st = cuda_use(env, "reduce", id)) != NNM_OK)
        return st;
    const float *xb = P.count > 0 ? (const float *)cuda_bytes(x) : NULL;
    if (P.count <= NNM_CUDA_RED_CHUNK) /* one thread per output element */
        return cuda_launched(env, "reduce",
                             nnm__cuda_launch_reduce(cuda_stream(s, id), &P, n_out, xb,
                                                     cuda_base(out), NULL, 1, P.count));
    /* long reductions: fixed chunks summed in parallel, then combined in order */
    const int64_t nchunks = (P.count + NNM_CUDA_RED_CHUNK - 1) / NNM_CUDA_RED_CHUNK;
    if (n_out > INT64_MAX / 8 / nchunks)
        return CUDA_ERR(env, NNM_E_LIMIT, "cuda reduce: %lld outputs of %lld elements", (long long)n_out,
                        (long long)P.count);
    void *part = NULL;
    if ((st = cuda_scratch_get(env, s, id, (size_t)(n_out * nchunks) * sizeof(double), &part)) !=
        NNM_OK)
        return st;
    st = cuda_launched(env, "reduce",
                       nnm__cuda_launch_reduce(cuda_stream(s, id), &P, n_out, xb, cuda_base(out),
                                               part, nchunks, NNM_CUDA_RED_CHUNK));
    cuda_scratch_put(s, id, part);
    return st;
}
