/* plugins/cuda/cuda_cast.c - cast and arg_reduce (1.5): checked as the cpu
 * backend's (plugins/cpu/cast_kernels.inc), one thread per element
 * (cast.cu). cast takes f32, i64, i32, u8 and bool in any direction. */
#include "cuda_cast_kernels.h"
#include "cuda_ops.h"

/* cuda_ops.h's kinds are the bodies' */
_Static_assert(CUDA_DT_F32 == NNM_CUDA_K_F32 && CUDA_DT_I64 == NNM_CUDA_K_I64 &&
                   CUDA_DT_I32 == NNM_CUDA_K_I32 && CUDA_DT_U8 == NNM_CUDA_K_U8 &&
                   CUDA_DT_BOOL == NNM_CUDA_K_BOOL,
               "cast kinds");

nnm_status cuda_cast(nnm_env *env, void *state, const nnm_cast_args *a) {
    cuda_state *s = state;
    if (a == NULL)
        return CUDA_ERR(env, NNM_E_INVALID, "cuda cast: args is NULL");
    if (a->struct_size < sizeof(nnm_cast_args) || a->x == NULL || a->out == NULL)
        return CUDA_ERR(env, NNM_E_INVALID, "cuda cast: args struct_size %u < %zu or NULL tensors",
                        (unsigned)a->struct_size, sizeof(nnm_cast_args));
    if (s == NULL)
        return CUDA_ERR(env, NNM_E_STATE, "cuda cast: backend not initialised");
    const nnm_tensor_desc *x = a->x, *o = a->out;
    const int kx = cuda_dtype_kind(x->dtype), ko = cuda_dtype_kind(o->dtype);
    if (kx == CUDA_DT_BAD || ko == CUDA_DT_BAD)
        return CUDA_ERR(env, NNM_E_DTYPE,
                        "cuda cast: only f32, i64, i32, u8 and bool (codes %d -> %d)",
                        (int)x->dtype.code, (int)o->dtype.code);
    int64_t n_o = 0, n_x = 0;
    int32_t id = -1;
    nnm_status st = cuda_check_desc_dt(env, s, "cast", "output", o, ko, &id, &n_o);
    if (st == NNM_OK)
        st = cuda_check_desc_dt(env, s, "cast", "x", x, kx, &id, &n_x);
    if (st != NNM_OK)
        return st;
    if (!cuda_is_contiguous(o) || x->ndim != o->ndim)
        return CUDA_ERR(env, NNM_E_INVALID,
                        "cuda cast: x and out must be CUDA tensors of one shape, out contiguous");
    for (int32_t i = 0; i < x->ndim; i++)
        if (x->shape[i] != o->shape[i])
            return CUDA_ERR(env, NNM_E_SHAPE, "cuda cast: x and out differ in dim %d", (int)i);
    nnm_strided_layout L;
    const nnm_tensor_desc *ds[2] = {o, x};
    static const char *const names[2] = {"output", "x"};
    st = cuda_layout_init(env, "cast", &L, o->ndim, o->shape, 2, ds, names);
    if (st != NNM_OK || n_o == 0)
        return st;
    if ((st = cuda_use(env, "cast", id)) != NNM_OK)
        return st;
    return cuda_launched(env, "cast",
                         nnm__cuda_launch_cast(cuda_stream(s, id), &L, n_o, kx, cuda_bytes(x), ko,
                                               cuda_bytes(o)));
}

nnm_status cuda_arg_reduce(nnm_env *env, void *state, const nnm_arg_reduce_args *a) {
    cuda_state *s = state;
    if (a == NULL)
        return CUDA_ERR(env, NNM_E_INVALID, "cuda arg_reduce: args is NULL");
    if (a->struct_size < sizeof(nnm_arg_reduce_args) || a->x == NULL || a->out == NULL)
        return CUDA_ERR(env, NNM_E_INVALID,
                        "cuda arg_reduce: args struct_size %u < %zu or NULL tensors",
                        (unsigned)a->struct_size, sizeof(nnm_arg_reduce_args));
    if (a->op != NNM_REDUCE_MAX && a->op != NNM_REDUCE_MIN)
        return CUDA_ERR(env, NNM_E_UNSUPPORTED, "cuda arg_reduce: op %d (MAX or MIN only)",
                        (int)a->op);
    if (a->outer < 0 || a->n < 1 || a->inner < 0)
        return CUDA_ERR(env, NNM_E_INVALID, "cuda arg_reduce: bad sizes");
    if (s == NULL)
        return CUDA_ERR(env, NNM_E_STATE, "cuda arg_reduce: backend not initialised");
    if (cuda_dtype_kind(a->x->dtype) != CUDA_DT_F32 || cuda_dtype_kind(a->out->dtype) != CUDA_DT_I64)
        return CUDA_ERR(env, NNM_E_DTYPE, "cuda arg_reduce: x must be f32 and out i64");
    int64_t n_x = 0, n_o = 0;
    int32_t id = -1;
    nnm_status st = cuda_check_desc_dt(env, s, "arg_reduce", "output", a->out, CUDA_DT_I64, &id, &n_o);
    if (st == NNM_OK)
        st = cuda_check_desc(env, s, "arg_reduce", "x", a->x, &id, &n_x);
    if (st != NNM_OK)
        return st;
    if (!cuda_is_contiguous(a->x) || !cuda_is_contiguous(a->out))
        return CUDA_ERR(env, NNM_E_INVALID,
                        "cuda arg_reduce: x and out must be contiguous CUDA tensors");
    if (n_x != a->outer * a->n * a->inner || n_o != a->outer * a->inner)
        return CUDA_ERR(env, NNM_E_SHAPE,
                        "cuda arg_reduce: x has %lld elements and out %lld, [outer %lld, n %lld, "
                        "inner %lld] wants %lld and %lld",
                        (long long)n_x, (long long)n_o, (long long)a->outer, (long long)a->n,
                        (long long)a->inner, (long long)(a->outer * a->n * a->inner),
                        (long long)(a->outer * a->inner));
    if (n_o == 0)
        return NNM_OK;
    if ((st = cuda_use(env, "arg_reduce", id)) != NNM_OK)
        return st;
    return cuda_launched(env, "arg_reduce",
                         nnm__cuda_launch_arg_reduce(cuda_stream(s, id), a->outer, a->n, a->inner,
                                                     a->op == NNM_REDUCE_MAX, cuda_base(a->x),
                                                     cuda_bytes(a->out)));
}
