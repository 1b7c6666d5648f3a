/* plugins/cuda/cuda_cache.c - the caching allocator's logic (cuda_cache.h
 * says what it promises). Plain C: no CUDA header, no CUDA call; device
 * memory comes only from the two callbacks.
 *
 * Bookkeeping: a block is either in use (in the hash table keyed by its
 * address, so cc_free finds it from the pointer alone) or free (on its
 * pool's list, sorted by size, so a lookup stops at the first block not
 * smaller than the class). A pool is one (device, stream); contexts have one
 * stream per device, so there are few, found by a linear search.
 */
#include "cuda_cache.h"

#include <stdlib.h>
#include <string.h>

typedef struct cc_block {
    void *ptr;
    size_t size;
    int32_t device;
    uint32_t exact; /* CC_EXACT: never cached */
    uintptr_t stream;
    struct cc_block *next; /* hash chain while in use, free list while free */
} cc_block;

typedef struct cc_pool {
    int32_t device;
    uintptr_t stream;
    cc_block *free; /* ascending size */
} cc_pool;

struct cc_cache {
    cc_ops ops;
    void *user;
    cc_pool *pools;
    uint32_t n_pools, cap_pools;
    cc_block **buckets; /* in-use blocks by address */
    size_t n_buckets;   /* a power of two */
    size_t n_used;
    cc_stats st;
};

size_t cc_round(size_t bytes) {
    if (bytes == 0)
        return CC_SMALL_ROUND;
    const size_t g = bytes <= CC_SMALL_LIMIT ? CC_SMALL_ROUND : CC_LARGE_ROUND;
    if (bytes > SIZE_MAX - (g - 1))
        return 0;
    return (bytes + g - 1) / g * g;
}

static size_t bucket_of(const cc_cache *c, const void *p) {
    uint64_t h = (uint64_t)(uintptr_t)p * 0x9e3779b97f4a7c15ull;
    return (size_t)(h >> 32) & (c->n_buckets - 1);
}

static void note_peaks(cc_cache *c) {
    if (c->st.bytes_in_use > c->st.peak_bytes_in_use)
        c->st.peak_bytes_in_use = c->st.bytes_in_use;
    if (c->st.bytes_in_use + c->st.bytes_cached > c->st.peak_bytes_reserved)
        c->st.peak_bytes_reserved = c->st.bytes_in_use + c->st.bytes_cached;
}

cc_cache *cc_new(const cc_ops *ops, void *user) {
    if (ops == NULL || ops->dev_malloc == NULL || ops->dev_free == NULL)
        return NULL;
    cc_cache *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->ops = *ops;
    c->user = user;
    c->n_buckets = 64;
    c->buckets = calloc(c->n_buckets, sizeof *c->buckets);
    if (c->buckets == NULL) {
        free(c);
        return NULL;
    }
    return c;
}

static void give_back(cc_cache *c, cc_block *b) {
    c->ops.dev_free(c->user, b->device, b->ptr);
    c->st.device_frees++;
    free(b);
}

void cc_destroy(cc_cache *c) {
    if (c == NULL)
        return;
    (void)cc_release_cached(c, -1);
    for (size_t i = 0; i < c->n_buckets; i++) {
        while (c->buckets[i] != NULL) {
            cc_block *b = c->buckets[i];
            c->buckets[i] = b->next;
            give_back(c, b);
        }
    }
    free(c->buckets);
    free(c->pools);
    free(c);
}

static cc_pool *pool_find(cc_cache *c, int32_t device, uintptr_t stream) {
    for (uint32_t i = 0; i < c->n_pools; i++)
        if (c->pools[i].device == device && c->pools[i].stream == stream)
            return &c->pools[i];
    return NULL;
}

static cc_pool *pool_get(cc_cache *c, int32_t device, uintptr_t stream) {
    cc_pool *p = pool_find(c, device, stream);
    if (p != NULL)
        return p;
    if (c->n_pools == c->cap_pools) {
        uint32_t cap = c->cap_pools ? c->cap_pools * 2 : 4;
        cc_pool *np = realloc(c->pools, cap * sizeof *np);
        if (np == NULL)
            return NULL;
        c->pools = np;
        c->cap_pools = cap;
    }
    p = &c->pools[c->n_pools++];
    p->device = device;
    p->stream = stream;
    p->free = NULL;
    return p;
}

/* Keeps the load factor at most 1 (a failed grow only makes chains longer). */
static void maybe_grow(cc_cache *c) {
    if (c->n_used < c->n_buckets)
        return;
    size_t n = c->n_buckets * 2;
    cc_block **nb = calloc(n, sizeof *nb);
    if (nb == NULL)
        return;
    cc_block **old = c->buckets;
    size_t old_n = c->n_buckets;
    c->buckets = nb;
    c->n_buckets = n;
    for (size_t i = 0; i < old_n; i++) {
        while (old[i] != NULL) {
            cc_block *b = old[i];
            old[i] = b->next;
            size_t k = bucket_of(c, b->ptr);
            b->next = nb[k];
            nb[k] = b;
        }
    }
    free(old);
}

static void hash_put(cc_cache *c, cc_block *b) {
    size_t k = bucket_of(c, b->ptr);
    b->next = c->buckets[k];
    c->buckets[k] = b;
    c->n_used++;
    maybe_grow(c);
}

/* Unlinks and returns the in-use block at ptr, or NULL. */
static cc_block *hash_take(cc_cache *c, const void *ptr) {
    cc_block **pp = &c->buckets[bucket_of(c, ptr)];
    for (; *pp != NULL; pp = &(*pp)->next) {
        if ((*pp)->ptr == ptr) {
            cc_block *b = *pp;
            *pp = b->next;
            b->next = NULL;
            c->n_used--;
            return b;
        }
    }
    return NULL;
}

size_t cc_block_size(const cc_cache *c, const void *ptr) {
    if (c == NULL || ptr == NULL)
        return 0;
    for (const cc_block *b = c->buckets[bucket_of(c, ptr)]; b != NULL; b = b->next)
        if (b->ptr == ptr)
            return b->size;
    return 0;
}

static void hand_out(cc_cache *c, cc_block *b, void **ptr) {
    hash_put(c, b);
    c->st.bytes_in_use += b->size;
    c->st.blocks_in_use++;
    note_peaks(c);
    *ptr = b->ptr;
}

int cc_alloc(cc_cache *c, int32_t device, uintptr_t stream, size_t bytes, unsigned flags,
             void **ptr) {
    *ptr = NULL;
    const int exact = (flags & CC_EXACT) != 0;
    const size_t size = exact ? (bytes ? bytes : CC_SMALL_ROUND) : cc_round(bytes);
    if (size == 0)
        return CC_E_OOM; /* no device holds SIZE_MAX bytes */
    cc_pool *pool = NULL;
    if (!exact) {
        pool = pool_get(c, device, stream);
        if (pool == NULL)
            return CC_E_HOST;
        cc_block **pp = &pool->free;
        while (*pp != NULL && (*pp)->size < size)
            pp = &(*pp)->next;
        if (*pp != NULL && (*pp)->size == size) {
            cc_block *b = *pp;
            *pp = b->next;
            c->st.bytes_cached -= b->size;
            c->st.cache_hits++;
            hand_out(c, b, ptr);
            return CC_OK;
        }
    }
    cc_block *b = malloc(sizeof *b);
    if (b == NULL)
        return CC_E_HOST;
    void *p = NULL;
    int rc = c->ops.dev_malloc(c->user, device, size, &p);
    if (rc == CC_E_OOM && cc_release_cached(c, device) > 0) {
        c->st.oom_releases++;
        p = NULL;
        rc = c->ops.dev_malloc(c->user, device, size, &p);
    }
    if (rc == CC_OK && p == NULL)
        rc = CC_E_DEVICE; /* a callback that says yes and gives nothing */
    if (rc != CC_OK) {
        free(b);
        return rc == CC_E_OOM ? CC_E_OOM : CC_E_DEVICE;
    }
    c->st.device_mallocs++;
    b->ptr = p;
    b->size = size;
    b->device = device;
    b->exact = (uint32_t)exact;
    b->stream = stream;
    b->next = NULL;
    hand_out(c, b, ptr);
    return CC_OK;
}

int cc_free(cc_cache *c, void *ptr) {
    if (ptr == NULL)
        return CC_OK;
    cc_block *b = hash_take(c, ptr);
    if (b == NULL)
        return CC_E_UNKNOWN;
    c->st.bytes_in_use -= b->size;
    c->st.blocks_in_use--;
    cc_pool *pool = b->exact ? NULL : pool_get(c, b->device, b->stream);
    if (pool == NULL) { /* exact, or no host memory for a pool: give it back */
        give_back(c, b);
        return CC_OK;
    }
    cc_block **pp = &pool->free;
    while (*pp != NULL && (*pp)->size < b->size)
        pp = &(*pp)->next;
    b->next = *pp;
    *pp = b;
    c->st.bytes_cached += b->size;
    return CC_OK;
}

uint64_t cc_release_cached(cc_cache *c, int32_t device) {
    uint64_t bytes = 0;
    if (c == NULL)
        return 0;
    for (uint32_t i = 0; i < c->n_pools; i++) {
        cc_pool *p = &c->pools[i];
        if (device >= 0 && p->device != device)
            continue;
        while (p->free != NULL) {
            cc_block *b = p->free;
            p->free = b->next;
            bytes += b->size;
            c->st.bytes_cached -= b->size;
            give_back(c, b);
        }
    }
    return bytes;
}

void cc_get_stats(const cc_cache *c, cc_stats *out) {
    if (c == NULL) {
        memset(out, 0, sizeof *out);
        return;
    }
    *out = c->st;
}

void cc_reset_peaks(cc_cache *c) {
    if (c == NULL)
        return;
    c->st.peak_bytes_in_use = c->st.bytes_in_use;
    c->st.peak_bytes_reserved = c->st.bytes_in_use + c->st.bytes_cached;
}
