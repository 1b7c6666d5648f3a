/* plugins/cuda/cuda_memory.c - the cuda backend's memory: device allocations
 * through the caching allocator (cuda_cache.c), copies between host and
 * devices, scratch for ops' workspaces, and pinned host buffers for staging
 * copies to a device.
 *
 * Copies run on the context's stream (cuda_stream), so they follow the
 * kernels already queued there. One that reads or writes ordinary host
 * memory returns only when done, as the backend contract's memcpy promises;
 * one from a pinned buffer of cuda_host_alloc to a device returns at once
 * (the buffer is the backend's until host_free, which lets it be reused only
 * once the copies queued from it ran: an event recorded on the stream).
 */
#include "cuda_internal.h"
#include "cuda_cache.h"

#include <stdlib.h>
#include <string.h>

/* A pinned host buffer. */
typedef struct cuda_host_block {
    void *ptr;
    size_t size;
    int32_t device;        /* whose stream its copies went to */
    cudaEvent_t done;      /* recorded there at host_free; NULL: none pending */
    struct cuda_host_block *next;
} cuda_host_block;

struct cuda_mem_state {
    cuda_state *s;
    cc_cache *cache;
    cudaError_t last;           /* the device error behind a CC_E_DEVICE */
    cuda_host_block *host_used; /* handed out */
    cuda_host_block *host_free; /* given back (maybe with copies pending) */
    size_t host_cached;         /* bytes on host_free */
};

/* Page-locked memory is taken from the machine's RAM for good: past this
 * much given back, the buffers whose copies have run are freed. */
#define CUDA_HOST_CACHE_MAX ((size_t)256 << 20)

/* ------------------------------------------------------------------------ */
/* The caching allocator's device                                            */
/* ------------------------------------------------------------------------ */

static int cuda_dev_malloc(void *user, int32_t device, size_t bytes, void **ptr) {
    struct cuda_mem_state *m = user;
    *ptr = NULL;
    if (cuda_use(NULL, "alloc", device) != NNM_OK) {
        m->last = cudaGetLastError();
        if (m->last == cudaSuccess)
            m->last = cudaErrorInvalidDevice;
        return CC_E_DEVICE;
    }
    cudaError_t e = cudaMalloc(ptr, bytes); /* aligned to at least 256 bytes */
    if (e == cudaSuccess && *ptr != NULL)
        return CC_OK;
    (void)cudaGetLastError(); /* not sticky: clear it for the next call */
    *ptr = NULL;
    m->last = e;
    return e == cudaErrorMemoryAllocation ? CC_E_OOM : CC_E_DEVICE;
}

/* A block goes back to the driver only once the work queued on the
 * device's stream (that may still use it) has run. */
static void cuda_dev_free(void *user, int32_t device, void *ptr) {
    struct cuda_mem_state *m = user;
    if (device < 0 || device >= m->s->n_devices || cuda_use(NULL, "free", device) != NNM_OK) {
        (void)cudaGetLastError();
        return; /* cannot reach the device: leave the block to the driver */
    }
    if (m->s->devs[device].stream != NULL)
        (void)cudaStreamSynchronize(m->s->devs[device].stream);
    (void)cudaFree(ptr); /* nothing to report: free cannot fail */
    (void)cudaGetLastError();
}

nnm_status cuda_memory_init(nnm_env *env, cuda_state *s) {
    struct cuda_mem_state *m = calloc(1, sizeof *m);
    if (m == NULL)
        return CUDA_ERR(env, NNM_E_NOMEM, "cuda init: out of memory");
    m->s = s;
    static const cc_ops ops = {cuda_dev_malloc, cuda_dev_free};
    m->cache = cc_new(&ops, m);
    if (m->cache == NULL) {
        free(m);
        return CUDA_ERR(env, NNM_E_NOMEM, "cuda init: out of memory");
    }
    s->mem = m;
    return NNM_OK;
}

/* A device block of `bytes` on device `id` (checked) for its stream. */
static nnm_status cuda_block_get(nnm_env *env, cuda_state *s, const char *op, int32_t id,
                                 size_t bytes, unsigned flags, void **ptr) {
    *ptr = NULL;
    nnm_status st = cuda_stream_make(env, s, op, id); /* also makes `id` current */
    if (st != NNM_OK)
        return st;
    struct cuda_mem_state *m = s->mem;
    cc_stats before;
    cc_get_stats(m->cache, &before);
    int rc = cc_alloc(m->cache, id, (uintptr_t)s->devs[id].stream, bytes, flags, ptr);
    if (rc == CC_OK)
        return NNM_OK;
    cc_stats now;
    cc_get_stats(m->cache, &now);
    const double mib = 1.0 / (1024.0 * 1024.0);
    if (rc == CC_E_OOM)
        return CUDA_ERR(env, NNM_E_NOMEM,
                        "cuda %s: out of memory allocating %zu bytes on cuda:%d (this context's "
                        "cuda backend holds %.1f MiB in use%s)",
                        op, bytes, (int)id, (double)now.bytes_in_use * mib,
                        now.oom_releases > before.oom_releases
                            ? "; its cached blocks were given back and the allocation retried"
                            : "");
    if (rc == CC_E_HOST)
        return CUDA_ERR(env, NNM_E_NOMEM, "cuda %s: out of host memory", op);
    return cuda_fail(env, op, "cudaMalloc", m->last);
}

/* ------------------------------------------------------------------------ */
/* Memory                                                                    */
/* ------------------------------------------------------------------------ */

nnm_status cuda_alloc(nnm_env *env, void *state, int32_t device_id, size_t bytes,
                             void **ptr) {
    cuda_state *s = state;
    if (ptr == NULL)
        return CUDA_ERR(env, NNM_E_INVALID, "cuda alloc: ptr is NULL");
    *ptr = NULL;
    if (s == NULL)
        return CUDA_ERR(env, NNM_E_STATE, "cuda alloc: backend not initialised");
    nnm_status st = cuda_check_id(env, s, "alloc", device_id);
    if (st != NNM_OK)
        return st;
    /* exact: the runtime rounds and caches tensor memory itself; a 0-byte
     * request gets a unique block (cc_alloc's one granule) */
    return cuda_block_get(env, s, "alloc", device_id, bytes, CC_EXACT, ptr);
}

void cuda_free(void *state, int32_t device_id, void *ptr) {
    cuda_state *s = state;
    (void)device_id; /* the block knows its device */
    if (ptr == NULL || s == NULL || s->mem == NULL)
        return;
    (void)cc_free(s->mem->cache, ptr); /* not ours (cannot happen): nothing to do */
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

/* The pinned block in use that holds [p, p + bytes), or NULL. */
static const cuda_host_block *cuda_pinned_of(const cuda_state *s, const void *p, size_t bytes) {
    const char *c = p;
    for (const cuda_host_block *b = s->mem->host_used; b != NULL; b = b->next) {
        const char *lo = b->ptr;
        if (c >= lo && (size_t)(c - lo) <= b->size && bytes <= b->size - (size_t)(c - lo))
            return b;
    }
    return NULL;
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
        /* After the source device's queued work, on the destination's stream
         * (so its later work follows), and waited for: the source block may
         * be freed and reused on its own stream as soon as this returns. */
        if ((st = cuda_use(env, "memcpy", src_dev.id)) != NNM_OK)
            return st;
        e = cudaStreamSynchronize(cuda_stream(s, src_dev.id));
        if (e != cudaSuccess)
            return cuda_fail(env, "memcpy", "cudaStreamSynchronize", e);
        if ((st = cuda_use(env, "memcpy", dst_dev.id)) != NNM_OK)
            return st;
        const cudaStream_t ds = cuda_stream(s, dst_dev.id);
        e = cudaMemcpyPeerAsync(dst, dst_dev.id, src, src_dev.id, bytes, ds);
        if (e == cudaSuccess)
            e = cudaStreamSynchronize(ds);
        if (e != cudaSuccess)
            return cuda_fail(env, "memcpy", "cudaMemcpyPeerAsync", e);
        return NNM_OK;
    }
    const enum cudaMemcpyKind kind = dst_gpu && src_gpu ? cudaMemcpyDeviceToDevice
                                     : dst_gpu          ? cudaMemcpyHostToDevice
                                                        : cudaMemcpyDeviceToHost;
    const int32_t id = dst_gpu ? dst_dev.id : src_dev.id;
    if ((st = cuda_use(env, "memcpy", id)) != NNM_OK)
        return st;
    /* In the stream's order, after the kernels that made src. A copy that
     * touches host memory waits for it (the caller may read or free the host
     * buffer when this returns), except one from a pinned staging buffer to
     * a device (the buffer stays the backend's until host_free, whose event
     * keeps it from reuse until the copy ran); device to device does not. */
    const cudaStream_t stream = cuda_stream(s, id);
    e = cudaMemcpyAsync(dst, src, bytes, kind, stream);
    if (e != cudaSuccess)
        return cuda_fail(env, "memcpy", "cudaMemcpyAsync", e);
    const int async = kind == cudaMemcpyDeviceToDevice ||
                      (kind == cudaMemcpyHostToDevice && cuda_pinned_of(s, src, bytes) != NULL);
    if (!async && (e = cudaStreamSynchronize(stream)) != cudaSuccess)
        return cuda_fail(env, "memcpy", "cudaStreamSynchronize", e);
    return NNM_OK;
}

/* ------------------------------------------------------------------------ */
/* Scratch                                                                   */
/* ------------------------------------------------------------------------ */

nnm_status cuda_scratch_get(nnm_env *env, cuda_state *s, int32_t id, size_t bytes, void **ptr) {
    *ptr = NULL;
    if (bytes == 0)
        return NNM_OK;
    return cuda_block_get(env, s, "scratch", id, bytes, 0, ptr);
}

void cuda_scratch_put(cuda_state *s, int32_t id, void *ptr) {
    (void)id; /* the block knows its device and stream */
    if (ptr != NULL && s != NULL && s->mem != NULL)
        (void)cc_free(s->mem->cache, ptr);
}

/* ------------------------------------------------------------------------ */
/* Pinned host buffers                                                       */
/* ------------------------------------------------------------------------ */

static void cuda_host_block_free(cuda_host_block *b) {
    if (b->done != NULL)
        (void)cudaEventDestroy(b->done);
    (void)cudaFreeHost(b->ptr);
    (void)cudaGetLastError();
    free(b);
}

/* Frees the given-back buffers whose copies have run; returns how many. */
static int cuda_host_trim(struct cuda_mem_state *m) {
    int n = 0;
    cuda_host_block **pp = &m->host_free;
    while (*pp != NULL) {
        cuda_host_block *b = *pp;
        if (b->done != NULL && cudaEventQuery(b->done) != cudaSuccess) {
            (void)cudaGetLastError();
            pp = &b->next;
            continue;
        }
        *pp = b->next;
        m->host_cached -= b->size;
        cuda_host_block_free(b);
        n++;
    }
    return n;
}

nnm_status cuda_host_alloc(nnm_env *env, void *state, int32_t device_id, size_t bytes,
                           void **ptr) {
    cuda_state *s = state;
    if (ptr == NULL)
        return CUDA_ERR(env, NNM_E_INVALID, "cuda host_alloc: ptr is NULL");
    *ptr = NULL;
    if (s == NULL || s->mem == NULL)
        return CUDA_ERR(env, NNM_E_STATE, "cuda host_alloc: backend not initialised");
    nnm_status st = cuda_check_id(env, s, "host_alloc", device_id);
    if (st == NNM_OK)
        st = cuda_use(env, "host_alloc", device_id);
    if (st != NNM_OK)
        return st;
    struct cuda_mem_state *m = s->mem;
    const size_t size = cc_round(bytes);
    if (size == 0)
        return CUDA_ERR(env, NNM_E_NOMEM, "cuda host_alloc: %zu bytes is too many", bytes);
    /* a given-back buffer of the same class whose copies have run */
    for (cuda_host_block **pp = &m->host_free; *pp != NULL; pp = &(*pp)->next) {
        cuda_host_block *b = *pp;
        if (b->size != size)
            continue;
        if (b->done != NULL) {
            cudaError_t e = cudaEventQuery(b->done);
            if (e == cudaErrorNotReady) {
                (void)cudaGetLastError();
                continue;
            }
            if (e != cudaSuccess)
                return cuda_fail(env, "host_alloc", "cudaEventQuery", e);
        }
        *pp = b->next;
        m->host_cached -= b->size;
        if (b->device != device_id && b->done != NULL) {
            /* an event belongs to the device it was made on; this one has
             * completed: make the next one on the new device */
            (void)cudaEventDestroy(b->done);
            b->done = NULL;
        }
        b->device = device_id;
        b->next = m->host_used;
        m->host_used = b;
        *ptr = b->ptr;
        return NNM_OK;
    }
    cuda_host_block *b = calloc(1, sizeof *b);
    if (b == NULL)
        return CUDA_ERR(env, NNM_E_NOMEM, "cuda host_alloc: out of host memory");
    /* portable: pinned for every device, whichever is current */
    cudaError_t e = cudaHostAlloc(&b->ptr, size, cudaHostAllocPortable);
    if (e == cudaErrorMemoryAllocation && cuda_host_trim(m) > 0) {
        (void)cudaGetLastError();
        e = cudaHostAlloc(&b->ptr, size, cudaHostAllocPortable);
    }
    if (e != cudaSuccess || b->ptr == NULL) {
        free(b);
        if (e == cudaErrorMemoryAllocation) {
            (void)cudaGetLastError();
            return CUDA_ERR(env, NNM_E_NOMEM,
                            "cuda host_alloc: out of page-locked host memory (%zu bytes)", size);
        }
        return cuda_fail(env, "host_alloc", "cudaHostAlloc",
                         e != cudaSuccess ? e : cudaErrorMemoryAllocation);
    }
    b->size = size;
    b->device = device_id;
    b->next = m->host_used;
    m->host_used = b;
    *ptr = b->ptr; /* page-aligned */
    return NNM_OK;
}

void cuda_host_free(void *state, int32_t device_id, void *ptr) {
    cuda_state *s = state;
    (void)device_id; /* the block knows the device its copies went to */
    if (ptr == NULL || s == NULL || s->mem == NULL)
        return;
    struct cuda_mem_state *m = s->mem;
    cuda_host_block **pp = &m->host_used;
    while (*pp != NULL && (*pp)->ptr != ptr)
        pp = &(*pp)->next;
    cuda_host_block *b = *pp;
    if (b == NULL)
        return; /* not ours: nothing to do */
    *pp = b->next;
    /* Reusable once the copies queued from it so far have run: an event at
     * this point of its device's stream; without one, wait now. */
    cudaError_t e = cuda_use(NULL, "host_free", b->device) == NNM_OK ? cudaSuccess
                                                                     : cudaErrorInvalidDevice;
    const cudaStream_t stream = e == cudaSuccess ? cuda_stream(s, b->device) : NULL;
    if (e == cudaSuccess && b->done == NULL)
        e = cudaEventCreateWithFlags(&b->done, cudaEventDisableTiming);
    if (e == cudaSuccess)
        e = cudaEventRecord(b->done, stream);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        if (b->done != NULL)
            (void)cudaEventDestroy(b->done);
        b->done = NULL;
        (void)cudaDeviceSynchronize(); /* its copies are done now */
        (void)cudaGetLastError();
    }
    b->next = m->host_free;
    m->host_free = b;
    m->host_cached += b->size;
    if (m->host_cached > CUDA_HOST_CACHE_MAX)
        (void)cuda_host_trim(m);
}

void cuda_memory_shutdown(cuda_state *s) {
    struct cuda_mem_state *m = s->mem;
    if (m == NULL)
        return;
    /* the streams were synchronised: nothing queued uses these any more */
    cc_destroy(m->cache);
    while (m->host_used != NULL) {
        cuda_host_block *b = m->host_used;
        m->host_used = b->next;
        cuda_host_block_free(b);
    }
    while (m->host_free != NULL) {
        cuda_host_block *b = m->host_free;
        m->host_free = b->next;
        cuda_host_block_free(b);
    }
    free(m);
    s->mem = NULL;
}
