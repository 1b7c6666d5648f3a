/* plugins/cuda/cuda_cache.h - the cuda backend's caching allocator, as plain
 * C with no CUDA call in it: device memory comes from and goes back to two
 * callbacks, so tests/cuda/test_cuda_cache.c proves the logic on the CPU with
 * a fake device.
 *
 * Like PyTorch's CUDACachingAllocator in spirit, and small:
 *  - a request is rounded up to its size class: 512-byte granules up to
 *    CC_SMALL_LIMIT (1 MiB), 2 MiB granules above (0 bytes: one granule);
 *  - a freed block goes to the free list of its pool, the pool of the
 *    (device, stream) it was allocated for, and is handed out again only for
 *    the same class on the same (device, stream): any work the new owner
 *    queues on that stream runs after the work the old owner queued, so reuse
 *    needs no synchronisation (stream order). A block must therefore never be
 *    used on another stream than the one it was allocated for, unless that
 *    use is finished (host-side wait) before the block is freed;
 *  - no splitting or merging: a block serves its own class only;
 *  - when the device says out of memory, every free block of that device is
 *    given back and the request tried once more;
 *  - CC_EXACT blocks (tensor memory, which the runtime caches itself) are
 *    neither rounded nor cached: freeing one gives it back at once.
 * Not thread-safe: the backend uses one cache per context, and a context is
 * used by one thread at a time.
 */
#ifndef NNM_CUDA_CACHE_H
#define NNM_CUDA_CACHE_H

#include <stddef.h>
#include <stdint.h>

#define CC_SMALL_LIMIT ((size_t)1 << 20) /* classes of 512 B up to here */
#define CC_SMALL_ROUND ((size_t)512)
#define CC_LARGE_ROUND ((size_t)2 << 20) /* classes of 2 MiB above */

/* Results (cc_alloc, the dev_malloc callback). */
enum {
    CC_OK = 0,
    CC_E_OOM = 1,    /* the device is out of memory (after the retry) */
    CC_E_DEVICE = 2, /* the device failed otherwise (the callback kept why) */
    CC_E_HOST = 3,   /* no host memory for the bookkeeping */
    CC_E_UNKNOWN = 4 /* cc_free: not a block of this cache (or freed twice) */
};

/* cc_alloc's flags. */
#define CC_EXACT 1u /* exact size, never cached: cc_free gives it back at once */

/* Where device memory comes from. dev_malloc returns CC_OK (and a non-NULL
 * *ptr), CC_E_OOM, or CC_E_DEVICE; dev_free cannot fail. */
typedef struct cc_ops {
    int (*dev_malloc)(void *user, int32_t device, size_t bytes, void **ptr);
    void (*dev_free)(void *user, int32_t device, void *ptr);
} cc_ops;

typedef struct cc_stats {
    uint64_t bytes_in_use;        /* in blocks handed out and not freed */
    uint64_t bytes_cached;        /* in free blocks kept for reuse */
    uint64_t peak_bytes_in_use;   /* high-water mark of bytes_in_use */
    uint64_t peak_bytes_reserved; /* high-water mark of in_use + cached */
    uint64_t device_mallocs;      /* successful dev_malloc calls */
    uint64_t device_frees;        /* dev_free calls */
    uint64_t cache_hits;          /* requests served from a free list */
    uint64_t oom_releases;        /* times the cache was emptied to retry */
    uint64_t blocks_in_use;
} cc_stats;

typedef struct cc_cache cc_cache;

/* The class `bytes` rounds up to (what a cached block of it holds). 0 when
 * rounding would overflow. */
size_t cc_round(size_t bytes);

/* A new, empty cache over `ops` (copied); NULL without host memory. */
cc_cache *cc_new(const cc_ops *ops, void *user);
/* Gives every block back (free and in use: nothing may use them any more)
 * and frees the cache. NULL: no-op. */
void cc_destroy(cc_cache *c);

/* A block of at least `bytes` bytes for use on (device, stream). CC_OK and
 * *ptr, or an error and *ptr NULL (nothing held). */
int cc_alloc(cc_cache *c, int32_t device, uintptr_t stream, size_t bytes, unsigned flags,
             void **ptr);
/* Returns a block: to its pool's free list, or to the device (CC_EXACT).
 * NULL: CC_OK, nothing done. CC_E_UNKNOWN for a pointer this cache does not
 * hold in use (nothing done). */
int cc_free(cc_cache *c, void *ptr);
/* The size of the block in use at ptr (0 if none). */
size_t cc_block_size(const cc_cache *c, const void *ptr);
/* Gives every free block of `device` (-1: of every device) back; returns the
 * bytes released. */
uint64_t cc_release_cached(cc_cache *c, int32_t device);
void cc_get_stats(const cc_cache *c, cc_stats *out);
/* Restarts the peaks from the current figures. */
void cc_reset_peaks(cc_cache *c);

#endif /* NNM_CUDA_CACHE_H */
