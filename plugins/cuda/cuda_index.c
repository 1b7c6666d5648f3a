/* plugins/cuda/cuda_index.c - index_select and index_add (1.5): checked as
 * the cpu backend's (plugins/cpu/index_kernels.inc) but for the indices'
 * values, which the runtime checked and device memory keeps from the host
 * (the kernels guard every access instead); index.cu. */
#include "cuda_index_kernels.h"
#include "cuda_ops.h"

static nnm_status cuda_index_check(nnm_env *env, cuda_state *s, const char *op,
                                   const nnm_index_args *a, int add, int32_t *id) {
    if (a == NULL)
        return CUDA_ERR(env, NNM_E_INVALID, "cuda %s: args is NULL", op);
    if (a->struct_size < sizeof(nnm_index_args))
        return CUDA_ERR(env, NNM_E_INVALID, "cuda %s: args struct_size %u < %zu", op,
                        (unsigned)a->struct_size, sizeof(nnm_index_args));
    if (a->outer < 0 || a->n < 0 || a->inner < 0 || a->m < 0 || a->elem_size == 0 ||
        a->index == NULL || a->src == NULL || a->dst == NULL)
        return CUDA_ERR(env, NNM_E_INVALID, "cuda %s: bad sizes or NULL tensors", op);
    if (add && a->elem_size != sizeof(float))
        return CUDA_ERR(env, NNM_E_DTYPE, "cuda %s: f32 only (elements of %u bytes)", op,
                        (unsigned)a->elem_size);
    if (s == NULL)
        return CUDA_ERR(env, NNM_E_STATE, "cuda %s: backend not initialised", op);
    const nnm_tensor_desc *ds[3] = {a->index, a->src, a->dst};
    const int64_t want[3] = {a->m, a->outer * (add ? a->m : a->n) * a->inner,
                             a->outer * (add ? a->n : a->m) * a->inner};
    static const char *const names[3] = {"index", "src", "dst"};
    for (int k = 0; k < 3; k++) {
        const nnm_tensor_desc *d = ds[k];
        if (d->device.type != NNM_DEVICE_CUDA || d->ndim < 0 || d->ndim > NNM_MAX_DIMS ||
            (d->ndim > 0 && (d->shape == NULL || d->strides == NULL)) || !cuda_is_contiguous(d))
            return CUDA_ERR(env, NNM_E_INVALID, "cuda %s: %s must be a contiguous CUDA tensor", op,
                            names[k]);
        if (*id < 0) {
            nnm_status st = cuda_check_id(env, s, op, d->device.id);
            if (st != NNM_OK)
                return st;
            *id = d->device.id;
        } else if (d->device.id != *id) {
            return CUDA_ERR(env, NNM_E_DEVICE, "cuda %s: %s tensor is on cuda:%d, index on cuda:%d",
                            op, names[k], (int)d->device.id, (int)*id);
        }
        int64_t n = 1;
        for (int32_t i = 0; i < d->ndim; i++)
            n *= d->shape[i];
        if (n != want[k])
            return CUDA_ERR(env, NNM_E_SHAPE, "cuda %s: %s has %lld elements, expected %lld", op,
                            names[k], (long long)n, (long long)want[k]);
        if (n > 0 && d->data == NULL)
            return CUDA_ERR(env, NNM_E_INVALID, "cuda %s: %s tensor has NULL data", op, names[k]);
    }
    if (cuda_dtype_kind(a->index->dtype) != CUDA_DT_I64)
        return CUDA_ERR(env, NNM_E_DTYPE, "cuda %s: index must be i64", op);
    return NNM_OK;
}

nnm_status cuda_index_select(nnm_env *env, void *state, const nnm_index_args *a) {
    cuda_state *s = state;
    int32_t id = -1;
    nnm_status st = cuda_index_check(env, s, "index_select", a, 0, &id);
    if (st != NNM_OK || a->outer * a->m * a->inner == 0)
        return st;
    if ((st = cuda_use(env, "index_select", id)) != NNM_OK)
        return st;
    return cuda_launched(env, "index_select",
                         nnm__cuda_launch_index_select(cuda_stream(s, id), a->outer, a->n, a->m,
                                                       a->inner, a->elem_size,
                                                       cuda_bytes(a->index), cuda_bytes(a->src),
                                                       cuda_bytes(a->dst)));
}

nnm_status cuda_index_add(nnm_env *env, void *state, const nnm_index_args *a) {
    cuda_state *s = state;
    int32_t id = -1;
    nnm_status st = cuda_index_check(env, s, "index_add", a, 1, &id);
    if (st != NNM_OK || a->outer * a->m * a->inner == 0)
        return st;
    if ((st = cuda_use(env, "index_add", id)) != NNM_OK)
        return st;
    return cuda_launched(env, "index_add",
                         nnm__cuda_launch_index_add(cuda_stream(s, id), a->outer, a->n, a->m,
                                                    a->inner, cuda_bytes(a->index),
                                                    cuda_bytes(a->src), cuda_bytes(a->dst)));
}
