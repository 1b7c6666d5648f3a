/* plugins/cuda/cuda_dnn.h - the cuDNN concern of the cuda backend:
 * convolution (cuda_dnn_conv.c), batch norm (cuda_dnn_bn.c) and pooling
 * (cuda_dnn_pool.c, own kernels: dnn_kernels.cu), and what they share
 * (cuda_dnn.c, cuda_dnn_lib.h): loading cuDNN, one handle per device bound
 * to the context's stream, reusable descriptors, error mapping.
 *
 * cuDNN is not linked: the first op that needs it dlopens it (cuda_dnn.c
 * says from where), so nnm_cuda.so loads on any machine, and where cuDNN is
 * missing those ops answer NNM_E_UNSUPPORTED with a message naming cuDNN's
 * absence (conv then runs as im2col + gemm, batch norm is composed by the
 * layer). Everything hangs off cuda_state's `dnn` pointer, made on first use
 * and freed by cuda_dnn_shutdown (called from cuda_shutdown).
 *
 * This header needs no cuDNN header: where the build finds no cudnn.h
 * (NNM_CUDA_HAVE_CUDNN undefined) only pooling is built, and cuda.c leaves
 * the conv and batch-norm slots NULL. The translation of nnm args into
 * descriptor numbers, and the algorithm cache, are pure C in
 * cuda_dnn_plan.c (tested without a GPU).
 */
#ifndef NNM_CUDA_DNN_H
#define NNM_CUDA_DNN_H

#include "cuda_internal.h"
#include "cuda_dnn_kernels.h"
#include "cuda_dnn_plan.h"

/* Validates a descriptor the dnn ops read or write: cuda_check_desc, then
 * contiguity. *numel (when not NULL) gets its element count. (cuda_dnn_pool.c) */
nnm_status cuda_dnn_check(nnm_env *env, const cuda_state *s, const char *op, const char *what,
                          const nnm_tensor_desc *d, int32_t *id, int64_t *numel);

/* The first element of d (cuda_base), or NULL for a NULL descriptor or
 * NULL data (an empty tensor): no arithmetic on a null pointer. */
static inline float *cuda_dnn_ptr(const nnm_tensor_desc *d) {
    return d != NULL && d->data != NULL ? cuda_base(d) : NULL;
}

/* Frees handles, descriptors, caches and the library (cuda_shutdown calls
 * it; cuda_dnn.c, built with cuDNN only). */
void cuda_dnn_shutdown(cuda_state *s);

/* ---- the backend slots ---------------------------------------------------- */

/* cuda_dnn_conv.c (with cuDNN only) */
nnm_status cuda_dnn_conv(nnm_env *env, void *state, const nnm_conv_args *args);
nnm_status cuda_dnn_conv_backward(nnm_env *env, void *state, const nnm_conv_args *args);
/* cuda_dnn_pool.c */
nnm_status cuda_dnn_pool(nnm_env *env, void *state, const nnm_pool_args *args);
nnm_status cuda_dnn_pool_backward(nnm_env *env, void *state, const nnm_pool_args *args);
/* cuda_dnn_bn.c (with cuDNN only) */
nnm_status cuda_dnn_batch_norm(nnm_env *env, void *state, const nnm_batch_norm_args *args);
nnm_status cuda_dnn_batch_norm_backward(nnm_env *env, void *state,
                                        const nnm_batch_norm_args *args);

#endif /* NNM_CUDA_DNN_H */
