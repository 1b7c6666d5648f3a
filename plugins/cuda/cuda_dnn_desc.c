/* plugins/cuda/cuda_dnn_desc.c - plans -> cuDNN descriptors, and resolving
 * cuDNN's entry points (see cuda_dnn_desc.h). No CUDA runtime, no device.
 */
#include "cuda_dnn_desc.h"

#include <dlfcn.h>
#include <string.h>

const char *cuda_dnn_resolve(void *dl, cuda_dnn_fns *fn) {
    const char *missing = NULL;
    void *p;
#define CUDA_DNN_SYM(name)                                                                \
    p = dlsym(dl, #name);                                                                 \
    if (p == NULL && missing == NULL)                                                     \
        missing = #name;                                                                  \
    memcpy(&fn->name, &p, sizeof p); /* object pointer -> function pointer, as POSIX dlsym intends */
    CUDA_DNN_FNS(CUDA_DNN_SYM)
#undef CUDA_DNN_SYM
    return missing;
}

size_t cuda_dnn_version_major(size_t version) {
    return version >= 90000 ? version / 10000 : version / 1000;
}

cudnnStatus_t cuda_dnn_set_tensor(const cuda_dnn_fns *fn, cudnnTensorDescriptor_t td,
                                  const cuda_dnn_tensor *t) {
    return fn->cudnnSetTensorNdDescriptor(td, CUDNN_DATA_FLOAT, t->nbdims, t->dims, t->strides);
}

cudnnStatus_t cuda_dnn_set_filter(const cuda_dnn_fns *fn, cudnnFilterDescriptor_t fd, int nbdims,
                                  const int *dims) {
    return fn->cudnnSetFilterNdDescriptor(fd, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, nbdims, dims);
}

cudnnStatus_t cuda_dnn_describe_conv(const cuda_dnn_fns *fn, cudnnTensorDescriptor_t xd,
                                     cudnnTensorDescriptor_t yd, cudnnFilterDescriptor_t wd,
                                     cudnnConvolutionDescriptor_t cd, const cuda_dnn_conv_plan *p,
                                     const char **call) {
    cudnnStatus_t cs;
    if ((cs = cuda_dnn_set_tensor(fn, xd, &p->x)) != CUDNN_STATUS_SUCCESS) {
        *call = "cudnnSetTensorNdDescriptor (x)";
        return cs;
    }
    if ((cs = cuda_dnn_set_tensor(fn, yd, &p->y)) != CUDNN_STATUS_SUCCESS) {
        *call = "cudnnSetTensorNdDescriptor (y)";
        return cs;
    }
    if ((cs = cuda_dnn_set_filter(fn, wd, p->nbdims, p->w)) != CUDNN_STATUS_SUCCESS) {
        *call = "cudnnSetFilterNdDescriptor";
        return cs;
    }
    if ((cs = fn->cudnnSetConvolutionNdDescriptor(cd, p->n_spatial, p->pad, p->stride, p->dilation,
                                                  CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT)) !=
        CUDNN_STATUS_SUCCESS) {
        *call = "cudnnSetConvolutionNdDescriptor";
        return cs;
    }
    if ((cs = fn->cudnnSetConvolutionGroupCount(cd, p->groups)) != CUDNN_STATUS_SUCCESS) {
        *call = "cudnnSetConvolutionGroupCount";
        return cs;
    }
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cuda_dnn_describe_bn(const cuda_dnn_fns *fn, cudnnTensorDescriptor_t xd,
                                   cudnnTensorDescriptor_t chd, const cuda_dnn_bn_plan *p,
                                   const char **call) {
    cudnnStatus_t cs;
    if ((cs = cuda_dnn_set_tensor(fn, xd, &p->x)) != CUDNN_STATUS_SUCCESS) {
        *call = "cudnnSetTensorNdDescriptor (x)";
        return cs;
    }
    if ((cs = cuda_dnn_set_tensor(fn, chd, &p->ch)) != CUDNN_STATUS_SUCCESS) {
        *call = "cudnnSetTensorNdDescriptor (per channel)";
        return cs;
    }
    return CUDNN_STATUS_SUCCESS;
}
