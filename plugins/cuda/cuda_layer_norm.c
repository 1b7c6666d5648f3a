/* plugins/cuda/cuda_layer_norm.c - layer_norm and layer_norm_backward (1.5):
 * checked as the cpu backend's (plugins/cpu/ln_kernels.inc), one thread per
 * row or column (layer_norm.cu). */
#include "cuda_layer_norm_kernels.h"
#include "cuda_ops.h"

/* Checks the args both slots read; p[k] gets tensor k's first element
 * (NULL when absent), in the order of names below. */
static nnm_status cuda_ln_check(nnm_env *env, cuda_state *s, const char *op,
                                const nnm_layer_norm_args *a, int backward, int32_t *id,
                                float **p) {
    if (a == NULL)
        return CUDA_ERR(env, NNM_E_INVALID, "cuda %s: args is NULL", op);
    if (a->struct_size < sizeof(nnm_layer_norm_args))
        return CUDA_ERR(env, NNM_E_INVALID, "cuda %s: args struct_size %u < %zu", op,
                        (unsigned)a->struct_size, sizeof(nnm_layer_norm_args));
    if (a->rows < 0 || a->cols < 1 || a->rows > INT64_MAX / a->cols || !(a->eps >= 0) ||
        a->eps > 1e30)
        return CUDA_ERR(env, NNM_E_INVALID, "cuda %s: bad sizes (%lld rows of %lld) or eps %g", op,
                        (long long)a->rows, (long long)a->cols, a->eps);
    if (a->x == NULL || a->mean == NULL || a->rstd == NULL ||
        (backward ? a->grad_out == NULL : a->y == NULL))
        return CUDA_ERR(env, NNM_E_INVALID, "cuda %s: x, mean, rstd or %s is NULL", op,
                        backward ? "grad_out" : "y");
    if (s == NULL)
        return CUDA_ERR(env, NNM_E_STATE, "cuda %s: backend not initialised", op);
    const int64_t rc = a->rows * a->cols;
    const nnm_tensor_desc *ds[10] = {a->x,
                                     a->residual,
                                     a->weight,
                                     backward ? NULL : a->bias,
                                     a->mean,
                                     a->rstd,
                                     backward ? a->grad_out : a->y,
                                     backward ? a->grad_x : NULL,
                                     backward ? a->grad_weight : NULL,
                                     backward ? a->grad_bias : NULL};
    static const char *const names[10] = {"x",    "residual", "weight", "bias",        "mean",
                                          "rstd", "y",        "grad_x", "grad_weight", "grad_bias"};
    const int64_t want[10] = {rc, rc, a->cols, a->cols, a->rows, a->rows, rc, rc, a->cols, a->cols};
    for (int k = 0; k < 10; k++) {
        const nnm_tensor_desc *d = ds[k];
        p[k] = NULL;
        if (d == NULL)
            continue;
        int64_t n = 0;
        nnm_status st = cuda_check_desc(env, s, op, names[k], d, id, &n);
        if (st != NNM_OK)
            return st;
        if (!cuda_is_contiguous(d))
            return cuda_err_contiguous(env, op, names[k]);
        if (n != want[k])
            return CUDA_ERR(env, NNM_E_SHAPE, "cuda %s: %s has %lld elements, expected %lld", op,
                            names[k], (long long)n, (long long)want[k]);
        p[k] = cuda_base(d);
    }
    return NNM_OK;
}

nnm_status cuda_layer_norm(nnm_env *env, void *state, const nnm_layer_norm_args *a) {
    cuda_state *s = state;
    int32_t id = -1;
    float *p[10];
    nnm_status st = cuda_ln_check(env, s, "layer_norm", a, 0, &id, p);
    if (st != NNM_OK || a->rows == 0)
        return st;
    if ((st = cuda_use(env, "layer_norm", id)) != NNM_OK)
        return st;
    return cuda_launched(env, "layer_norm",
                         nnm__cuda_launch_layer_norm(cuda_stream(s, id), a->rows, a->cols,
                                                     (float)a->eps, p[0], p[1], p[2], p[3], p[6],
                                                     p[4], p[5]));
}

nnm_status cuda_layer_norm_backward(nnm_env *env, void *state, const nnm_layer_norm_args *a) {
    cuda_state *s = state;
    int32_t id = -1;
    float *p[10];
    nnm_status st = cuda_ln_check(env, s, "layer_norm_backward", a, 1, &id, p);
    if (st != NNM_OK)
        return st;
    if ((st = cuda_use(env, "layer_norm_backward", id)) != NNM_OK)
        return st;
    /* rows 0: grad_weight and grad_bias are zeros, written by the column kernel */
    return cuda_launched(env, "layer_norm_backward",
                         nnm__cuda_launch_layer_norm_backward(cuda_stream(s, id), a->rows, a->cols,
                                                              p[0], p[1], p[2], p[6], p[4], p[5],
                                                              p[7], p[8], p[9]));
}
