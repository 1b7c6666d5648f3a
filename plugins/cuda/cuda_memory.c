/* plugins/cuda/cuda_memory.c - the cuda backend's memory: device allocations,
 * copies between host and devices, and scratch for ops' workspaces.
 *
 * Copies run on the context's stream (cuda_stream), so they follow the
 * kernels already queued there; one that reads or writes host memory
 * returns only when done, as the backend contract's memcpy promises.
 */
#include "cuda_internal.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Memory                                                                    */
/* ------------------------------------------------------------------------ */

#define CUDA_MIN_ALLOC 256u /* what a 0-byte request gets: unique and non-NULL */

nnm_status cuda_alloc(nnm_env *env, void *state, int32_t device_id, size_t bytes,
                             void **ptr) {
    cuda_state *s = state;
    if (ptr == NULL)
        return CUDA_ERR(env, NNM_E_INVALID, "cuda alloc: ptr is NULL");
    *ptr = NULL;
    if (s == NULL)
        return CUDA_ERR(env, NNM_E_STATE, "cuda alloc: backend not initialised");
    nnm_status st = cuda_check_id(env, s, "alloc", device_id);
    if (st == NNM_OK)
        st = cuda_use(env, "alloc", device_id);
    if (st != NNM_OK)
        return st;
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes == 0 ? CUDA_MIN_ALLOC : bytes);
    if (e != cudaSuccess || p == NULL) {
        (void)cudaGetLastError();
        if (e == cudaErrorMemoryAllocation)
            return CUDA_ERR(env, NNM_E_NOMEM,
                            "cuda alloc: out of memory allocating %zu bytes on cuda:%d", bytes,
                            (int)device_id);
        return cuda_fail(env, "alloc", "cudaMalloc", e);
    }
    *ptr = p; /* cudaMalloc aligns to at least 256 bytes */
    return NNM_OK;
}

void cuda_free(void *state, int32_t device_id, void *ptr) {
    cuda_state *s = state;
    if (ptr == NULL || s == NULL)
        return;
    if (device_id >= 0 && device_id < s->n_devices)
        (void)cuda_use(NULL, "free", device_id);
    (void)cudaFree(ptr); /* nothing to report: free cannot fail */
    (void)cudaGetLastError();
}

/* Device type and id checks for one side of a copy. */
static nnm_status cuda_check_side(nnm_env *env, const cuda_state *s, const char *what,
                                  nnm_device dev) {
    if (dev.type == NNM_DEVICE_CPU)
        return NNM_OK;
    if (dev.type != NNM_DEVICE_CUDA)
        return CUDA_ERR(env, NNM_E_DEVICE,
                        "cuda memcpy: %s is on device type %d; the cuda backend copies between "
                        "CUDA (type %d) and CPU (type %d) memory",
                        what, (int)dev.type, (int)NNM_DEVICE_CUDA, (int)NNM_DEVICE_CPU);
    return cuda_check_id(env, s, "memcpy", dev.id);
}

nnm_status cuda_memcpy(nnm_env *env, void *state, void *dst, nnm_device dst_dev,
                              const void *src, nnm_device src_dev, size_t bytes) {
    cuda_state *s = state;
    if (s == NULL)
        return CUDA_ERR(env, NNM_E_STATE, "cuda memcpy: backend not initialised");
    nnm_status st = cuda_check_side(env, s, "dst", dst_dev);
    if (st == NNM_OK)
        st = cuda_check_side(env, s, "src", src_dev);
    if (st != NNM_OK)
        return st;
    if (bytes == 0)
        return NNM_OK;
    if (dst == NULL || src == NULL)
        return CUDA_ERR(env, NNM_E_INVALID, "cuda memcpy: NULL %s with %zu bytes to copy",
                        dst == NULL ? "dst" : "src", bytes);
    const int dst_gpu = dst_dev.type == NNM_DEVICE_CUDA;
    const int src_gpu = src_dev.type == NNM_DEVICE_CUDA;
    cudaError_t e;
    if (!dst_gpu && !src_gpu) {
        memmove(dst, src, bytes);
        return NNM_OK;
    } else if (dst_gpu && src_gpu && dst_dev.id != src_dev.id) {
        /* after the source device's queued work; synchronous like cudaMemcpyPeer */
        if ((st = cuda_use(env, "memcpy", src_dev.id)) != NNM_OK)
            return st;
        e = cudaStreamSynchronize(cuda_stream(s, src_dev.id));
        if (e == cudaSuccess)
            e = cudaMemcpyPeer(dst, dst_dev.id, src, src_dev.id, bytes);
        if (e != cudaSuccess)
            return cuda_fail(env, "memcpy", "cudaMemcpyPeer", e);
        return NNM_OK;
    }
    const enum cudaMemcpyKind kind = dst_gpu && src_gpu ? cudaMemcpyDeviceToDevice
                                     : dst_gpu          ? cudaMemcpyHostToDevice
                                                        : cudaMemcpyDeviceToHost;
    if ((st = cuda_use(env, "memcpy", dst_gpu ? dst_dev.id : src_dev.id)) != NNM_OK)
        return st;
    /* In the stream's order, after the kernels that made src; a copy that
     * touches host memory waits for it (the caller may read or free the host
     * buffer when this returns), a device-to-device one does not. */
    const cudaStream_t stream = cuda_stream(s, dst_gpu ? dst_dev.id : src_dev.id);
    e = cudaMemcpyAsync(dst, src, bytes, kind, stream);
    if (e != cudaSuccess)
        return cuda_fail(env, "memcpy", "cudaMemcpyAsync", e);
    if (kind != cudaMemcpyDeviceToDevice && (e = cudaStreamSynchronize(stream)) != cudaSuccess)
        return cuda_fail(env, "memcpy", "cudaStreamSynchronize", e);
    return NNM_OK;
}

/* ------------------------------------------------------------------------ */
/* Scratch                                                                   */
/* ------------------------------------------------------------------------ */

/* Plain cudaMalloc/cudaFree for now: cudaFree waits for the device, so
 * memory an op queued work on is never reused early. */
nnm_status cuda_scratch_get(nnm_env *env, cuda_state *s, int32_t id, size_t bytes, void **ptr) {
    *ptr = NULL;
    if (bytes == 0)
        return NNM_OK;
    return cuda_alloc(env, s, id, bytes, ptr);
}

void cuda_scratch_put(cuda_state *s, int32_t id, void *ptr) {
    cuda_free(s, id, ptr);
}

void cuda_memory_shutdown(cuda_state *s) {
    (void)s; /* nothing kept yet */
}
