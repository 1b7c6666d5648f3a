/* plugins/cuda/cuda_dnn_desc.h - cuDNN's entry points as the backend
 * dlsyms them, and the one place that turns plans (cuda_dnn_plan.h) into
 * cuDNN descriptors. Needs cudnn.h but no CUDA runtime and no device:
 * cuDNN's descriptor calls are host-only, so tests/cuda/test_cuda_dnn_plan.c
 * runs exactly this code against the real libcudnn on a machine without a
 * GPU (where cuDNN is installed) and asks cuDNN what it understood
 * (cudnnGetConvolutionNdForwardOutputDim, cudnnDeriveBNTensorDescriptor).
 */
#ifndef NNM_CUDA_DNN_DESC_H
#define NNM_CUDA_DNN_DESC_H

#include "cuda_dnn_plan.h"

#include <cudnn.h>

#include <stddef.h>

/* The cuDNN major this was compiled against: the soname tried first, and
 * the only major accepted at load (cudnnGetVersion). */
#define CUDA_DNN_STR_(x) #x
#define CUDA_DNN_STR(x) CUDA_DNN_STR_(x)
#define CUDA_DNN_SONAME "libcudnn.so." CUDA_DNN_STR(CUDNN_MAJOR)

/* Every cuDNN entry point used, dlsym'd by name at load; each field has
 * exactly the type the header declares (so a call through it is checked
 * like a direct call). */
#define CUDA_DNN_FNS(X)                                                                   \
    X(cudnnGetVersion)                                                                    \
    X(cudnnGetErrorString)                                                                \
    X(cudnnCreate)                                                                        \
    X(cudnnDestroy)                                                                       \
    X(cudnnSetStream)                                                                     \
    X(cudnnCreateTensorDescriptor)                                                        \
    X(cudnnDestroyTensorDescriptor)                                                       \
    X(cudnnSetTensorNdDescriptor)                                                         \
    X(cudnnCreateFilterDescriptor)                                                        \
    X(cudnnDestroyFilterDescriptor)                                                       \
    X(cudnnSetFilterNdDescriptor)                                                         \
    X(cudnnCreateConvolutionDescriptor)                                                   \
    X(cudnnDestroyConvolutionDescriptor)                                                  \
    X(cudnnSetConvolutionNdDescriptor)                                                    \
    X(cudnnSetConvolutionGroupCount)                                                      \
    X(cudnnSetConvolutionMathType)                                                        \
    X(cudnnGetConvolutionForwardAlgorithm_v7)                                             \
    X(cudnnGetConvolutionBackwardDataAlgorithm_v7)                                        \
    X(cudnnGetConvolutionBackwardFilterAlgorithm_v7)                                      \
    X(cudnnConvolutionForward)                                                            \
    X(cudnnConvolutionBackwardData)                                                       \
    X(cudnnConvolutionBackwardFilter)                                                     \
    X(cudnnAddTensor)                                                                     \
    X(cudnnBatchNormalizationForwardTraining)                                             \
    X(cudnnBatchNormalizationForwardInference)                                            \
    X(cudnnBatchNormalizationBackward)

typedef struct cuda_dnn_fns {
#define CUDA_DNN_FIELD(name) __typeof__(&name) name;
    CUDA_DNN_FNS(CUDA_DNN_FIELD)
#undef CUDA_DNN_FIELD
} cuda_dnn_fns;

/* The places cuDNN is looked for when NNM_CUDNN_LIBRARY is not set, in
 * order, into cand[0..max) (each up to CUDA_DNN_PATH_MAX bytes): the soname,
 * libcudnn.so, the toolkit's library directory (toolkit_libdir, "" for
 * none), beside cuBLAS (cublas_dir, "" for none) and the pip wheels' layout
 * relative to it. Returns how many. */
#define CUDA_DNN_PATH_MAX 640
int cuda_dnn_candidates(const char *cublas_dir, const char *toolkit_libdir,
                        char (*cand)[CUDA_DNN_PATH_MAX], int max);

/* dlopens cuDNN: NNM_CUDNN_LIBRARY when set (a file, or a directory holding
 * CUDA_DNN_SONAME) and nothing else, else the first of cuda_dnn_candidates
 * that loads (RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE: it stays mapped for its
 * thread-exit handlers). The handle and its path, or NULL with why saying
 * what was tried and why each failed. */
void *cuda_dnn_open(const char *cublas_dir, const char *toolkit_libdir, char *path, size_t pcap,
                    char *why, size_t wcap);

/* Resolves every CUDA_DNN_FNS entry point from the dlopen handle dl into
 * *fn. NULL when all are there, else the name of the first missing one
 * (*fn then partly filled: do not use it). */
const char *cuda_dnn_resolve(void *dl, cuda_dnn_fns *fn);

/* The major version of a cudnnGetVersion() value (9.x: major * 10000 + ...;
 * 8.x and older: major * 1000 + ...). */
size_t cuda_dnn_version_major(size_t version);

/* cudnnSetTensorNdDescriptor / cudnnSetFilterNdDescriptor (f32, NCHW) from a plan. */
cudnnStatus_t cuda_dnn_set_tensor(const cuda_dnn_fns *fn, cudnnTensorDescriptor_t td,
                                  const cuda_dnn_tensor *t);
cudnnStatus_t cuda_dnn_set_filter(const cuda_dnn_fns *fn, cudnnFilterDescriptor_t fd, int nbdims,
                                  const int *dims);

/* Sets x, y, w and the convolution (padding, stride, dilation, cross
 * correlation in f32, group count) from plan p; the math type is left to
 * the algorithm search. On failure *call names the cuDNN call that failed. */
cudnnStatus_t cuda_dnn_describe_conv(const cuda_dnn_fns *fn, cudnnTensorDescriptor_t xd,
                                     cudnnTensorDescriptor_t yd, cudnnFilterDescriptor_t wd,
                                     cudnnConvolutionDescriptor_t cd, const cuda_dnn_conv_plan *p,
                                     const char **call);

/* Sets x {n, c, l, 1} and the per-channel {1, c, 1, 1} descriptors of a batch norm. */
cudnnStatus_t cuda_dnn_describe_bn(const cuda_dnn_fns *fn, cudnnTensorDescriptor_t xd,
                                   cudnnTensorDescriptor_t chd, const cuda_dnn_bn_plan *p,
                                   const char **call);

#endif /* NNM_CUDA_DNN_DESC_H */
