/* plugins/cuda/cuda_elementwise.c - fill, unary and binary: validated as the
 * cpu backend validates them, dims merged the same way, one strided kernel
 * (kernels.cu) on the context's stream. */
#include "cuda_internal.h"

nnm_status cuda_fill(nnm_env *env, void *state, const nnm_tensor_desc *out, double value) {
    cuda_state *s = state;
    if (s == NULL)
        return CUDA_ERR(env, NNM_E_STATE, "cuda fill: backend not initialised");
    int64_t numel = 0;
    int32_t id = -1;
    nnm_status st = cuda_check_desc(env, s, "fill", "output", out, &id, &numel);
    if (st != NNM_OK)
        return st;
    if (numel == 0)
        return NNM_OK;
    nnm__cuda_layout L;
    const nnm_tensor_desc *ds[1] = {out};
    static const char *const names[1] = {"output"};
    st = cuda_layout_init(env, "fill", &L, out->ndim, out->shape, 1, ds, names);
    if (st == NNM_OK)
        st = cuda_use(env, "fill", id);
    if (st != NNM_OK)
        return st;
    return cuda_launched(env, "fill",
                         nnm__cuda_launch_fill(cuda_stream(s, id), &L, numel, cuda_base(out),
                                               (float)value));
}

nnm_status cuda_binary(nnm_env *env, void *state, const nnm_binary_args *args) {
    cuda_state *s = state;
    if (args == NULL)
        return CUDA_ERR(env, NNM_E_INVALID, "cuda binary: args is NULL");
    if (args->struct_size < sizeof(nnm_binary_args))
        return CUDA_ERR(env, NNM_E_INVALID, "cuda binary: args struct_size %u < %zu",
                        (unsigned)args->struct_size, sizeof(nnm_binary_args));
    if (args->op < NNM_BINARY_ADD || args->op > NNM_BINARY_MIN)
        return CUDA_ERR(env, NNM_E_UNSUPPORTED, "cuda binary: unknown op %d", (int)args->op);
    if (s == NULL)
        return CUDA_ERR(env, NNM_E_STATE, "cuda binary: backend not initialised");
    int64_t n_out = 0, n_a = 0, n_b = 0;
    int32_t id = -1;
    nnm_status st = cuda_check_desc(env, s, "binary", "output", args->out, &id, &n_out);
    if (st == NNM_OK)
        st = cuda_check_desc(env, s, "binary", "a", args->a, &id, &n_a);
    if (st == NNM_OK)
        st = cuda_check_desc(env, s, "binary", "b", args->b, &id, &n_b);
    if (st != NNM_OK)
        return st;
    nnm__cuda_layout L;
    const nnm_tensor_desc *ds[3] = {args->out, args->a, args->b};
    static const char *const names[3] = {"output", "a", "b"};
    st = cuda_layout_init(env, "binary", &L, args->out->ndim, args->out->shape, 3, ds, names);
    if (st != NNM_OK || n_out == 0)
        return st;
    if ((st = cuda_use(env, "binary", id)) != NNM_OK)
        return st;
    return cuda_launched(env, "binary",
                         nnm__cuda_launch_binary(cuda_stream(s, id), args->op, &L, n_out,
                                                 cuda_base(args->out), cuda_base(args->a),
                                                 cuda_base(args->b)));
}

nnm_status cuda_unary(nnm_env *env, void *state, const nnm_unary_args *args) {
    cuda_state *s = state;
    if (args == NULL)
        return CUDA_ERR(env, NNM_E_INVALID, "cuda unary: args is NULL");
    if (args->struct_size < sizeof(nnm_unary_args))
        return CUDA_ERR(env, NNM_E_INVALID, "cuda unary: args struct_size %u < %zu",
                        (unsigned)args->struct_size, sizeof(nnm_unary_args));
    if (args->op < NNM_UNARY_COPY || args->op > NNM_UNARY_SIGN)
        return CUDA_ERR(env, NNM_E_UNSUPPORTED, "cuda unary: unknown op %d", (int)args->op);
    if (s == NULL)
        return CUDA_ERR(env, NNM_E_STATE, "cuda unary: backend not initialised");
    int64_t n_out = 0, n_x = 0;
    int32_t id = -1;
    nnm_status st = cuda_check_desc(env, s, "unary", "output", args->out, &id, &n_out);
    if (st == NNM_OK)
        st = cuda_check_desc(env, s, "unary", "x", args->x, &id, &n_x);
    if (st != NNM_OK)
        return st;
    nnm__cuda_layout L;
    const nnm_tensor_desc *ds[2] = {args->out, args->x};
    static const char *const names[2] = {"output", "x"};
    st = cuda_layout_init(env, "unary", &L, args->out->ndim, args->out->shape, 2, ds, names);
    if (st != NNM_OK || n_out == 0)
        return st;
    if ((st = cuda_use(env, "unary", id)) != NNM_OK)
        return st;
    return cuda_launched(env, "unary",
                         nnm__cuda_launch_unary(cuda_stream(s, id), args->op, &L, n_out,
                                                cuda_base(args->out), cuda_base(args->x),
                                                (float)args->alpha));
}