/* plugins/cuda/cuda_dnn.c - loading cuDNN, per-device handles, descriptors,
 * error mapping (see cuda_dnn.h).
 *
 * Where cuDNN comes from, on the first op of a context that needs it:
 *  1. NNM_CUDNN_LIBRARY, when set: that file (or libcudnn.so.<major> in that
 *     directory), and nothing else - an explicit choice is never silently
 *     replaced by another copy;
 *  2. libcudnn.so.<major> of the cuDNN this was compiled against (9), by the
 *     dynamic linker's search (LD_LIBRARY_PATH, rpath, ld.so.cache);
 *  3. libcudnn.so (a development install);
 *  4. the CUDA toolkit's library directory this was built with;
 *  5. beside the cuBLAS that init loaded, and in the pip wheels' layout
 *     relative to it (site-packages/nvidia/{cublas,cu13}/lib ->
 *     site-packages/nvidia/cudnn/lib).
 * The library found must report the same major (cudnnGetVersion) and have
 * every entry point CUDA_DNN_FNS lists. cuDNN 9's libcudnn.so.9 is a small
 * dispatcher that loads libcudnn_ops / libcudnn_cnn / ... from its own
 * directory when first needed; a missing sub-library surfaces as
 * CUDNN_STATUS_SUBLIBRARY_LOADING_FAILED on the call that needs it, which
 * cuda_dnn_fail maps to NNM_E_UNSUPPORTED like an absent cuDNN.
 */
#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* dlinfo */
#endif

#include "cuda_dnn_lib.h"

#include <dlfcn.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef NNM_CUDA_TOOLKIT_LIBDIR
#define NNM_CUDA_TOOLKIT_LIBDIR ""
#endif

/* ------------------------------------------------------------------------ */
/* Loading                                                                   */
/* ------------------------------------------------------------------------ */

/* The directory of the loaded cuBLAS, or "" (buf). */
static const char *cublas_dir(const cuda_state *s, char *buf, size_t cap) {
    buf[0] = '\0';
    struct link_map *lm = NULL;
    if (s->cublas_dl == NULL || dlinfo(s->cublas_dl, RTLD_DI_LINKMAP, &lm) != 0 || lm == NULL ||
        lm->l_name == NULL || lm->l_name[0] != '/')
        return buf;
    snprintf(buf, cap, "%s", lm->l_name);
    char *slash = strrchr(buf, '/');
    if (slash != NULL)
        *slash = '\0';
    else
        buf[0] = '\0';
    return buf;
}

/* Loads cuDNN into d (d->loaded becomes 1 or -1). */
static void dnn_load(cuda_state *s, struct cuda_dnn_state *d) {
    char dir[512];
    d->dl = cuda_dnn_open(cublas_dir(s, dir, sizeof dir), NNM_CUDA_TOOLKIT_LIBDIR, d->path,
                          sizeof d->path, d->why, sizeof d->why);
    if (d->dl == NULL) {
        d->loaded = -1;
        return;
    }
    const char *missing = cuda_dnn_resolve(d->dl, &d->fn);
    if (missing != NULL) {
        snprintf(d->why, sizeof d->why, "%s lacks %s", d->path, missing);
        goto fail;
    }
    d->version = d->fn.cudnnGetVersion();
    /* 9.x: major * 10000 + minor * 100 + patch; 8.x and older: major * 1000 + ... */
    const size_t major = cuda_dnn_version_major(d->version);
    if (major != (size_t)CUDNN_MAJOR) {
        snprintf(d->why, sizeof d->why,
                 "%s is cuDNN %zu (version %zu); this build needs cuDNN %d.x", d->path, major,
                 d->version, (int)CUDNN_MAJOR);
        goto fail;
    }
    cudnnStatus_t cs = d->fn.cudnnCreateTensorDescriptor(&d->xd);
    if (cs == CUDNN_STATUS_SUCCESS)
        cs = d->fn.cudnnCreateTensorDescriptor(&d->yd);
    if (cs == CUDNN_STATUS_SUCCESS)
        cs = d->fn.cudnnCreateTensorDescriptor(&d->bd);
    if (cs == CUDNN_STATUS_SUCCESS)
        cs = d->fn.cudnnCreateFilterDescriptor(&d->wd);
    if (cs == CUDNN_STATUS_SUCCESS)
        cs = d->fn.cudnnCreateConvolutionDescriptor(&d->cd);
    if (cs != CUDNN_STATUS_SUCCESS) {
        snprintf(d->why, sizeof d->why, "%s: creating descriptors: cuDNN status %d (%s)", d->path,
                 (int)cs, d->fn.cudnnGetErrorString(cs));
        goto fail;
    }
    const char *tf32 = getenv("NNM_CUDNN_ALLOW_TF32");
    d->allow_tf32 = tf32 != NULL && strcmp(tf32, "1") == 0;
    d->loaded = 1;
    return;
fail:
    if (d->cd != NULL)
        (void)d->fn.cudnnDestroyConvolutionDescriptor(d->cd);
    if (d->wd != NULL)
        (void)d->fn.cudnnDestroyFilterDescriptor(d->wd);
    if (d->bd != NULL)
        (void)d->fn.cudnnDestroyTensorDescriptor(d->bd);
    if (d->yd != NULL)
        (void)d->fn.cudnnDestroyTensorDescriptor(d->yd);
    if (d->xd != NULL)
        (void)d->fn.cudnnDestroyTensorDescriptor(d->xd);
    d->cd = NULL;
    d->wd = NULL;
    d->bd = d->yd = d->xd = NULL;
    dlclose(d->dl);
    d->dl = NULL;
    memset(&d->fn, 0, sizeof d->fn);
    d->loaded = -1;
}

nnm_status cuda_dnn_get(nnm_env *env, cuda_state *s, const char *op, int32_t id,
                        struct cuda_dnn_state **dnn, cudnnHandle_t *handle) {
    *dnn = NULL;
    *handle = NULL;
    struct cuda_dnn_state *d = s->dnn;
    if (d == NULL) {
        d = calloc(1, sizeof *d + (size_t)s->n_devices * sizeof d->devs[0]);
        if (d == NULL)
            return CUDA_ERR(env, NNM_E_NOMEM, "cuda %s: out of memory", op);
        d->n_devices = s->n_devices;
        s->dnn = d;
        dnn_load(s, d);
    }
    if (d->loaded != 1)
        return CUDA_ERR(env, NNM_E_UNSUPPORTED,
                        "cuda %s: cuDNN is not available (%s); install cuDNN %d for CUDA %d, add it "
                        "to LD_LIBRARY_PATH or point NNM_CUDNN_LIBRARY at libcudnn.so.%d",
                        op, d->why, (int)CUDNN_MAJOR, (int)(CUDART_VERSION / 1000),
                        (int)CUDNN_MAJOR);
    cuda_dnn_device *dev = &d->devs[id];
    cudnnStatus_t cs;
    if (dev->handle == NULL) {
        cs = d->fn.cudnnCreate(&dev->handle);
        if (cs != CUDNN_STATUS_SUCCESS) {
            dev->handle = NULL;
            const nnm_status st = cuda_dnn_fail(env, d, op, "cudnnCreate", cs);
            if (st == NNM_E_UNSUPPORTED) {
                /* cuDNN cannot start here (driver, sub-libraries): remembered,
                 * so later ops decline at once */
                snprintf(d->why, sizeof d->why, "%s: cudnnCreate on cuda:%d: cuDNN status %d (%s)",
                         d->path, (int)id, (int)cs, d->fn.cudnnGetErrorString(cs));
                d->loaded = -1;
            }
            return st;
        }
    }
    /* bound on every call: the context's stream may be made after the handle */
    cs = d->fn.cudnnSetStream(dev->handle, cuda_stream(s, id));
    if (cs != CUDNN_STATUS_SUCCESS)
        return cuda_dnn_fail(env, d, op, "cudnnSetStream", cs);
    *dnn = d;
    *handle = dev->handle;
    return NNM_OK;
}

nnm_status cuda_dnn_fail(nnm_env *env, const struct cuda_dnn_state *d, const char *op,
                         const char *call, cudnnStatus_t cs) {
    nnm_status st = NNM_E_DEVICE;
#if CUDNN_MAJOR >= 9 /* status categories */
    const int cat = (int)CUDNN_STATUS_CATEGORY(cs);
    if (cat == CUDNN_STATUS_NOT_SUPPORTED || cat == CUDNN_STATUS_BAD_PARAM ||
        cs == CUDNN_STATUS_NOT_INITIALIZED || cs == CUDNN_STATUS_SUBLIBRARY_VERSION_MISMATCH ||
        cs == CUDNN_STATUS_SUBLIBRARY_LOADING_FAILED)
        st = NNM_E_UNSUPPORTED;
    else if (cs == CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED ||
             cs == CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED)
        st = NNM_E_NOMEM;
#else /* cuDNN 8's flat codes (a build against a PyTorch 2.0-era wheel) */
    if (cs == CUDNN_STATUS_NOT_SUPPORTED || cs == CUDNN_STATUS_BAD_PARAM ||
        cs == CUDNN_STATUS_NOT_INITIALIZED || cs == CUDNN_STATUS_ARCH_MISMATCH ||
        cs == CUDNN_STATUS_VERSION_MISMATCH || cs == CUDNN_STATUS_INVALID_VALUE)
        st = NNM_E_UNSUPPORTED;
    else if (cs == CUDNN_STATUS_ALLOC_FAILED)
        st = NNM_E_NOMEM;
#endif
    const char *text = d != NULL && d->fn.cudnnGetErrorString != NULL
                           ? d->fn.cudnnGetErrorString(cs)
                           : "no description";
    (void)cudaGetLastError(); /* a failed launch inside cuDNN must not leak into the next op */
    return CUDA_ERR(env, st, "cuda %s: %s: cuDNN status %d (%s)", op, call, (int)cs,
                    text != NULL ? text : "no description");
}

void cuda_dnn_shutdown(cuda_state *s) {
    struct cuda_dnn_state *d = s->dnn;
    if (d == NULL)
        return;
    for (int i = 0; i < d->n_devices; i++) {
        cuda_dnn_device *dev = &d->devs[i];
        if (dev->handle != NULL && cudaSetDevice(i) == cudaSuccess)
            (void)d->fn.cudnnDestroy(dev->handle);
        dev->handle = NULL;
        cuda_dnn_cache_clear(&dev->algos);
    }
    if (d->loaded == 1) {
        (void)d->fn.cudnnDestroyConvolutionDescriptor(d->cd);
        (void)d->fn.cudnnDestroyFilterDescriptor(d->wd);
        (void)d->fn.cudnnDestroyTensorDescriptor(d->bd);
        (void)d->fn.cudnnDestroyTensorDescriptor(d->yd);
        (void)d->fn.cudnnDestroyTensorDescriptor(d->xd);
    }
    if (d->dl != NULL)
        dlclose(d->dl); /* RTLD_NODELETE: stays mapped for cuDNN's thread-exit handlers */
    (void)cudaGetLastError();
    free(d);
    s->dnn = NULL;
}
