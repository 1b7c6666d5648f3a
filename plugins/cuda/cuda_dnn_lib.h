/* plugins/cuda/cuda_dnn_lib.h - the cuDNN library as the cuda backend
 * holds it (see cuda_dnn.h): the dlsym'd entry points, the per-context
 * state behind cuda_state's `dnn`, and the helpers the cuDNN-calling files
 * (cuda_dnn.c, cuda_dnn_conv.c, cuda_dnn_bn.c) share. Built only where the
 * build found cudnn.h.
 */
#ifndef NNM_CUDA_DNN_LIB_H
#define NNM_CUDA_DNN_LIB_H

#include "cuda_dnn.h"
#include "cuda_dnn_desc.h"

#include <cudnn.h>

/* Per device, per context. */
typedef struct cuda_dnn_device {
    cudnnHandle_t handle;  /* NULL until the first cuDNN call on this device */
    cuda_dnn_cache algos;  /* conv algorithm per geometry (cuda_dnn_plan.h) */
} cuda_dnn_device;

struct cuda_dnn_state {
    int loaded;            /* 1: cuDNN usable; -1: absent or unusable (why says) */
    char why[1024];        /* the load failure, for every later message */
    void *dl;              /* dlopen handle */
    char path[512];        /* what was loaded */
    size_t version;        /* cudnnGetVersion() */
    int allow_tf32;        /* NNM_CUDNN_ALLOW_TF32=1: conv may use TF32 tensor cores */
    cuda_dnn_fns fn;
    /* descriptors reused by every call (re-set each time; host objects) */
    cudnnTensorDescriptor_t xd, yd, bd;
    cudnnFilterDescriptor_t wd;
    cudnnConvolutionDescriptor_t cd;
    int n_devices;
    cuda_dnn_device devs[]; /* n_devices entries */
};

/* The cuDNN state with a handle for device `id` (checked, current), bound to
 * cuda_stream(s, id); loads cuDNN on the first call of the context. Returns
 * NNM_E_UNSUPPORTED with "cuda <op>: cuDNN is not available: ..." where
 * cuDNN cannot be loaded (the answer is remembered: one dlopen search per
 * context). */
nnm_status cuda_dnn_get(nnm_env *env, cuda_state *s, const char *op, int32_t id,
                        struct cuda_dnn_state **dnn, cudnnHandle_t *handle);

/* The status a failed cuDNN call maps to, with "cuda <op>: <call>: cuDNN
 * status <n> (<text>)" set: NNM_E_UNSUPPORTED for what cuDNN does not
 * support or cannot load (a sub-library) and for bad parameters (a geometry
 * it refuses), NNM_E_NOMEM for failed allocations, NNM_E_DEVICE otherwise. */
nnm_status cuda_dnn_fail(nnm_env *env, const struct cuda_dnn_state *d, const char *op,
                         const char *call, cudnnStatus_t cs);


#endif /* NNM_CUDA_DNN_LIB_H */
