/* plugins/cuda/cuda_im2col.c - im2col and col2im (1.3): checked as the cpu
 * backend's (plugins/cpu/nn_kernels.inc), one thread per written element
 * (im2col.cu). The args carry raw device pointers: the device is the one
 * the image's memory is on. */
#include "cuda_im2col_kernels.h"
#include "cuda_ops.h"

static nnm_status cuda_im2col_run(nnm_env *env, void *state, const nnm_im2col_args *a, int back) {
    cuda_state *s = state;
    const char *op = back ? "col2im" : "im2col";
    if (a == NULL)
        return CUDA_ERR(env, NNM_E_INVALID, "cuda %s: args is NULL", op);
    if (a->struct_size < sizeof(nnm_im2col_args))
        return CUDA_ERR(env, NNM_E_INVALID, "cuda %s: args struct_size %u < %zu", op,
                        (unsigned)a->struct_size, sizeof(nnm_im2col_args));
    if (a->channels < 0)
        return CUDA_ERR(env, NNM_E_INVALID, "cuda %s: channels %lld", op, (long long)a->channels);
    nnm_cuda_geom3 G;
    const int bad = nnm_cuda_geom_promote(&G, a);
    if (bad == -2)
        return CUDA_ERR(env, NNM_E_INVALID, "cuda %s: n_spatial %d (1..3)", op, (int)a->n_spatial);
    if (bad >= 0)
        return CUDA_ERR(env, NNM_E_INVALID,
                        "cuda %s: spatial dim %d: size %lld -> %lld, kernel %lld, stride %lld, "
                        "padding %lld, dilation %lld",
                        op, bad, (long long)a->im_size[bad], (long long)a->col_size[bad],
                        (long long)a->kernel[bad], (long long)a->stride[bad],
                        (long long)a->padding[bad], (long long)a->dilation[bad]);
    const int64_t nim = a->channels * G.in[0] * G.in[1] * G.in[2];
    const int64_t ncol = a->channels * G.out[0] * G.out[1] * G.out[2];
    if ((nim > 0 && a->im == NULL) || (ncol > 0 && a->col == NULL))
        return CUDA_ERR(env, NNM_E_INVALID, "cuda %s: %s is NULL", op, a->im == NULL ? "im" : "col");
    if (s == NULL)
        return CUDA_ERR(env, NNM_E_STATE, "cuda %s: backend not initialised", op);
    const int64_t n = back ? nim : ncol * G.k[0] * G.k[1] * G.k[2];
    if (n == 0)
        return NNM_OK;
    int32_t id = -1;
    nnm_status st = cuda_raw_device(env, s, op, back ? "im" : "col", back ? a->im : a->col, &id);
    if (st != NNM_OK)
        return st;
    const int rc = back ? nnm__cuda_launch_col2im(cuda_stream(s, id), &G, n, a->col, a->im)
                        : nnm__cuda_launch_im2col(cuda_stream(s, id), &G, n, a->im, a->col);
    return cuda_launched(env, op, rc);
}

nnm_status cuda_im2col(nnm_env *env, void *state, const nnm_im2col_args *a) {
    return cuda_im2col_run(env, state, a, 0);
}

nnm_status cuda_col2im(nnm_env *env, void *state, const nnm_im2col_args *a) {
    return cuda_im2col_run(env, state, a, 1);
}
