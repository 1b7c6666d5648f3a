/* plugins/cuda/cuda_optim.c - sgd_step and adam_step (1.1): checked as the
 * cpu backend's, one thread per element (optim.cu). The args carry raw
 * pointers: the device is the one param's memory is on. */
#include "cuda_ops.h"
#include "cuda_optim_kernels.h"

/* Checks n and that each of the k pointers is non-NULL when n > 0. */
static nnm_status cuda_check_buffers(nnm_env *env, const char *op, int64_t n, int k,
                                     const void *const *ptrs, const char *const *names) {
    if (n < 0)
        return CUDA_ERR(env, NNM_E_INVALID, "cuda %s: n is %lld (must be >= 0)", op, (long long)n);
    for (int i = 0; n > 0 && i < k; i++)
        if (ptrs[i] == NULL)
            return CUDA_ERR(env, NNM_E_INVALID, "cuda %s: %s is NULL with n = %lld", op, names[i],
                            (long long)n);
    return NNM_OK;
}

nnm_status cuda_sgd_step(nnm_env *env, void *state, const nnm_sgd_args *a) {
    cuda_state *s = state;
    if (a == NULL)
        return CUDA_ERR(env, NNM_E_INVALID, "cuda sgd_step: args is NULL");
    if (a->struct_size < sizeof(nnm_sgd_args))
        return CUDA_ERR(env, NNM_E_INVALID, "cuda sgd_step: args struct_size %u < %zu",
                        (unsigned)a->struct_size, sizeof(nnm_sgd_args));
    if (s == NULL)
        return CUDA_ERR(env, NNM_E_STATE, "cuda sgd_step: backend not initialised");
    const int use_mom = a->momentum != 0.0f;
    const void *const ptrs[3] = {a->param, a->grad, a->momentum_buf};
    static const char *const names[3] = {"param", "grad", "momentum_buf (momentum != 0)"};
    nnm_status st = cuda_check_buffers(env, "sgd_step", a->n, use_mom ? 3 : 2, ptrs, names);
    if (st != NNM_OK || a->n == 0)
        return st;
    int32_t id = -1;
    if ((st = cuda_raw_device(env, s, "sgd_step", "param", a->param, &id)) != NNM_OK)
        return st;
    const nnm_cuda_sgd_k k = nnm_cuda_sgd_scalars(a);
    return cuda_launched(env, "sgd_step",
                         nnm__cuda_launch_sgd(cuda_stream(s, id), &k, a->n, a->param, a->grad,
                                              a->momentum_buf));
}

nnm_status cuda_adam_step(nnm_env *env, void *state, const nnm_adam_args *a) {
    cuda_state *s = state;
    if (a == NULL)
        return CUDA_ERR(env, NNM_E_INVALID, "cuda adam_step: args is NULL");
    if (a->struct_size < sizeof(nnm_adam_args))
        return CUDA_ERR(env, NNM_E_INVALID, "cuda adam_step: args struct_size %u < %zu",
                        (unsigned)a->struct_size, sizeof(nnm_adam_args));
    if (a->step < 1)
        return CUDA_ERR(env, NNM_E_INVALID, "cuda adam_step: step is %lld (the first step is 1)",
                        (long long)a->step);
    if (s == NULL)
        return CUDA_ERR(env, NNM_E_STATE, "cuda adam_step: backend not initialised");
    const void *const ptrs[4] = {a->param, a->grad, a->exp_avg, a->exp_avg_sq};
    static const char *const names[4] = {"param", "grad", "exp_avg", "exp_avg_sq"};
    nnm_status st = cuda_check_buffers(env, "adam_step", a->n, 4, ptrs, names);
    if (st != NNM_OK || a->n == 0)
        return st;
    int32_t id = -1;
    if ((st = cuda_raw_device(env, s, "adam_step", "param", a->param, &id)) != NNM_OK)
        return st;
    const nnm_cuda_adam_k k = nnm_cuda_adam_scalars(a);
    return cuda_launched(env, "adam_step",
                         nnm__cuda_launch_adam(cuda_stream(s, id), &k, a->n, a->param, a->grad,
                                               a->exp_avg, a->exp_avg_sq, a->max_exp_avg_sq));
}
