/* plugins/cuda/cuda_reduce.c - the reduce slot (1.1): validated and planned
 * as the cpu backend's cpu_reduce, one thread per output element
 * (reduce.cu). */
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
    return cuda_launched(env, "reduce",
                         nnm__cuda_launch_reduce(cuda_stream(s, id), &P, n_out,
                                                 P.count > 0 ? (const float *)cuda_bytes(x) : NULL,
                                                 cuda_base(out)));
}
