/* plugins/cuda/cuda_embedding_bag.c - embedding_bag and its backward (1.5):
 * checked as the cpu backend's (plugins/cpu/embedding_bag_kernels.inc) but
 * for the values of offsets, indices and arg, which the runtime checked and
 * device memory keeps from the host (the kernels keep every access in
 * bounds instead); embedding_bag.cu. */
#include "cuda_embedding_bag_kernels.h"
#include "cuda_ops.h"

static nnm_status cuda_bag_check(nnm_env *env, cuda_state *s, const char *op,
                                 const nnm_embedding_bag_args *a, int backward, int32_t *id,
                                 nnm_cuda_bag *B) {
    if (a == NULL)
        return CUDA_ERR(env, NNM_E_INVALID, "cuda %s: args is NULL", op);
    if (a->struct_size < sizeof(nnm_embedding_bag_args))
        return CUDA_ERR(env, NNM_E_INVALID, "cuda %s: args struct_size %u < %zu", op,
                        (unsigned)a->struct_size, sizeof(nnm_embedding_bag_args));
    if (a->mode != NNM_REDUCE_SUM && a->mode != NNM_REDUCE_MEAN && a->mode != NNM_REDUCE_MAX)
        return CUDA_ERR(env, NNM_E_INVALID, "cuda %s: mode %d is not sum, mean or max", op,
                        (int)a->mode);
    if (a->num_embeddings < 0 || a->dim < 0 || a->n < 0 || a->bags < 0 || a->padding_idx < -1 ||
        a->padding_idx >= a->num_embeddings)
        return CUDA_ERR(env, NNM_E_INVALID, "cuda %s: bad sizes or padding_idx", op);
    if (a->per_sample_weights != NULL && a->mode != NNM_REDUCE_SUM)
        return CUDA_ERR(env, NNM_E_INVALID, "cuda %s: per_sample_weights takes mode sum", op);
    if (a->mode == NNM_REDUCE_MAX && a->arg == NULL)
        return CUDA_ERR(env, NNM_E_INVALID, "cuda %s: mode max needs arg", op);
    if (backward && a->grad_out == NULL)
        return CUDA_ERR(env, NNM_E_INVALID, "cuda %s: grad_out is NULL", op);
    if (!backward && a->out == NULL)
        return CUDA_ERR(env, NNM_E_INVALID, "cuda %s: out is NULL", op);
    if (s == NULL)
        return CUDA_ERR(env, NNM_E_STATE, "cuda %s: backend not initialised", op);
    const nnm_tensor_desc *ds[8] = {a->weight, a->indices, a->offsets, a->per_sample_weights,
                                    backward ? a->grad_out : a->out, a->arg,
                                    backward ? a->grad_weight : NULL,
                                    backward ? a->grad_per_sample_weights : NULL};
    static const char *const names[8] = {"weight", "indices", "offsets", "per_sample_weights",
                                         "out", "arg", "grad_weight", "grad_per_sample_weights"};
    const int kinds[8] = {CUDA_DT_F32, CUDA_DT_I64, CUDA_DT_I64, CUDA_DT_F32,
                          CUDA_DT_F32, CUDA_DT_I64, CUDA_DT_F32, CUDA_DT_F32};
    const int64_t want[8] = {a->num_embeddings * a->dim, a->n, a->bags + 1, a->n, a->bags * a->dim,
                             a->bags * a->dim, a->num_embeddings * a->dim, a->n};
    void *p[8] = {NULL};
    for (int k = 0; k < 8; k++) {
        const nnm_tensor_desc *d = ds[k];
        if (d == NULL)
            continue;
        int64_t n = 0;
        nnm_status st = cuda_check_desc_dt(env, s, op, names[k], d, kinds[k], id, &n);
        if (st != NNM_OK)
            return st;
        if (!cuda_is_contiguous(d))
            return cuda_err_contiguous(env, op, names[k]);
        if (n != want[k])
            return CUDA_ERR(env, NNM_E_SHAPE, "cuda %s: %s has %lld elements, expected %lld", op,
                            names[k], (long long)n, (long long)want[k]);
        p[k] = cuda_bytes(d);
    }
    if (a->weight == NULL || a->indices == NULL || a->offsets == NULL)
        return CUDA_ERR(env, NNM_E_INVALID, "cuda %s: weight, indices and offsets are required",
                        op);
    memset(B, 0, sizeof *B);
    B->mode = a->mode;
    B->pad = a->padding_idx;
    B->num = a->num_embeddings;
    B->dim = a->dim;
    B->n = a->n;
    B->bags = a->bags;
    B->w = p[0];
    B->idx = p[1];
    B->off = p[2];
    B->psw = p[3];
    if (backward)
        B->g = p[4];
    else
        B->out = p[4];
    B->arg = p[5];
    B->gw = p[6];
    B->gpsw = p[7];
    return NNM_OK;
}

nnm_status cuda_embedding_bag(nnm_env *env, void *state, const nnm_embedding_bag_args *a) {
    cuda_state *s = state;
    int32_t id = -1;
    nnm_cuda_bag B;
    nnm_status st = cuda_bag_check(env, s, "embedding_bag", a, 0, &id, &B);
    if (st != NNM_OK || a->bags * a->dim == 0)
        return st;
    if ((st = cuda_use(env, "embedding_bag", id)) != NNM_OK)
        return st;
    return cuda_launched(env, "embedding_bag",
                         nnm__cuda_launch_embedding_bag(cuda_stream(s, id), &B));
}

nnm_status cuda_embedding_bag_backward(nnm_env *env, void *state,
                                       const nnm_embedding_bag_args *a) {
    cuda_state *s = state;
    int32_t id = -1;
    nnm_cuda_bag B;
    nnm_status st = cuda_bag_check(env, s, "embedding_bag_backward", a, 1, &id, &B);
    if (st != NNM_OK)
        return st;
    if (a->grad_per_sample_weights != NULL && a->per_sample_weights == NULL)
        return CUDA_ERR(env, NNM_E_INVALID,
                        "cuda embedding_bag_backward: grad_per_sample_weights needs "
                        "per_sample_weights");
    if ((st = cuda_use(env, "embedding_bag_backward", id)) != NNM_OK)
        return st;
    return cuda_launched(env, "embedding_bag_backward",
                         nnm__cuda_launch_embedding_bag_backward(cuda_stream(s, id), &B));
}
