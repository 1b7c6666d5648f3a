/* plugins/cuda/cuda_dnn_desc.c - plans -> cuDNN descriptors, and resolving
 * cuDNN's entry points (see cuda_dnn_desc.h). No CUDA runtime, no device.
 */
#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* RTLD_NODELETE */
#endif

#include "cuda_dnn_desc.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Appends "; <what>: <err>" to why (truncating). */
static void why_add(char *why, size_t cap, const char *what, const char *err) {
    const size_t n = strlen(why);
    if (n + 1 < cap)
        snprintf(why + n, cap - n, "%s%s: %s", n ? "; " : "", what, err ? err : "not found");
}

/* dlopens `path`; on failure notes dlerror() in why. */
static void *try_open(const char *path, char *why, size_t cap) {
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    if (h == NULL)
        why_add(why, cap, path, dlerror());
    return h;
}

int cuda_dnn_candidates(const char *cublas_dir, const char *toolkit_libdir,
                        char (*cand)[CUDA_DNN_PATH_MAX], int max) {
    int n = 0;
    if (n < max)
        snprintf(cand[n++], CUDA_DNN_PATH_MAX, "%s", CUDA_DNN_SONAME);
    if (n < max)
        snprintf(cand[n++], CUDA_DNN_PATH_MAX, "libcudnn.so");
    if (toolkit_libdir != NULL && toolkit_libdir[0] != '\0' && n < max)
        snprintf(cand[n++], CUDA_DNN_PATH_MAX, "%s/%s", toolkit_libdir, CUDA_DNN_SONAME);
    if (cublas_dir != NULL && cublas_dir[0] != '\0') {
        if ((toolkit_libdir == NULL || strcmp(cublas_dir, toolkit_libdir) != 0) && n < max)
            snprintf(cand[n++], CUDA_DNN_PATH_MAX, "%s/%s", cublas_dir, CUDA_DNN_SONAME);
        /* pip wheels: .../nvidia/cublas/lib or .../nvidia/cu13/lib -> .../nvidia/cudnn/lib */
        if (n < max)
            snprintf(cand[n++], CUDA_DNN_PATH_MAX, "%s/../../cudnn/lib/%s", cublas_dir,
                     CUDA_DNN_SONAME);
    }
    return n;
}

void *cuda_dnn_open(const char *cublas_dir, const char *toolkit_libdir, char *path, size_t pcap,
                    char *why, size_t wcap) {
    why[0] = '\0';
    path[0] = '\0';
    const char *env = getenv("NNM_CUDNN_LIBRARY");
    if (env != NULL && env[0] != '\0') {
        struct stat st;
        if (stat(env, &st) == 0 && S_ISDIR(st.st_mode))
            snprintf(path, pcap, "%s/%s", env, CUDA_DNN_SONAME);
        else
            snprintf(path, pcap, "%s", env);
        void *h = try_open(path, why, wcap);
        if (h == NULL) {
            const size_t n = strlen(why);
            if (n + 1 < wcap)
                snprintf(why + n, wcap - n, " (NNM_CUDNN_LIBRARY is set: nothing else is tried)");
        }
        return h;
    }
    char cand[6][CUDA_DNN_PATH_MAX];
    const int nc = cuda_dnn_candidates(cublas_dir, toolkit_libdir, cand, 6);
    for (int i = 0; i < nc; i++) {
        void *h = try_open(cand[i], why, wcap);
        if (h != NULL) {
            snprintf(path, pcap, "%s", cand[i]);
            return h;
        }
    }
    return NULL;
}

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
