/* runtime/core/core_internal.h - the runtime core: backends, storage, tensors, configs, names, the context's errors and utilities.
 * Private to the runtime (nnm__ names); runtime/internal.h includes every such header. */
#ifndef NNM_CORE_INTERNAL_H
#define NNM_CORE_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "loader/loader.h"
#include "nnmod/nnmod.h"

#if defined(__GNUC__)
#define NNM__LIKELY(x) __builtin_expect(!!(x), 1)
#define NNM__UNLIKELY(x) __builtin_expect(!!(x), 0)
#define NNM__PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define NNM__LIKELY(x) (x)
#define NNM__UNLIKELY(x) (x)
#define NNM__PRINTF(a, b)
#endif

/* AddressSanitizer's manual poisoning, for the runtime's own free lists
 * (recycled tensor, storage and node objects, and the caching allocator's
 * CPU blocks): an entry is poisoned while it waits on a list, so a use
 * after its release is reported as ASan reports one after free(), though
 * the memory never went back to malloc. Unpoisoned when it is handed out
 * again (or freed). Nothing outside an ASan build (NNM_SANITIZE). */
#if defined(__SANITIZE_ADDRESS__)
#define NNM__ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NNM__ASAN 1
#endif
#endif
#ifdef NNM__ASAN
#include <sanitizer/asan_interface.h>
#define NNM__POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define NNM__UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define NNM__POISON(p, n) ((void)(p), (void)(n))
#define NNM__UNPOISON(p, n) ((void)(p), (void)(n))
#endif

/* Poisons a free-list entry (n bytes at p) all but its pointer-sized link
 * field at `link`. LeakSanitizer does not follow pointers kept in poisoned
 * memory, so a fully poisoned list would be reported as leaked by any
 * program that keeps its context until exit (a fuzzer, a server). */
static inline void nnm__poison_entry(void *p, size_t n, void *link) {
    char *a = (char *)p, *l = (char *)link;
    const size_t head = (size_t)(l - a), tail = n - head - sizeof(void *);
    NNM__POISON(a, head);
    NNM__POISON(l + sizeof(void *), tail);
}

#define NNM__ERRMSG_CAP 1024
#define NNM__MAX_IO NNM_MAX_IO  /* most inputs or outputs of one call */
#define NNM__MAX_SPECS 4        /* input specs a layer may declare */
#define NNM__DEVICE_TYPES 32    /* backends indexed by DLPack device type (1 = CPU, 2 = CUDA, 12 = ext_dev, ...) */
#define NNM__NCLASSES 192       /* allocator size classes */
#define NNM__MODULE_MAGIC 0x6e6e6d4du /* "nnmM" while alive */

/* ---- backends ----------------------------------------------------------- */

typedef struct nnm__backend {
    const nnm_backend_vtable *vt; /* normalised copy owned by `plugin` */
    nnm__plugin *plugin;          /* referenced while the context lives */
    void *state;
    nnm_status status;            /* NNM_OK once initialised */
    int tried;
    char error[256];
} nnm__backend;

/* ---- storage and the caching allocator ---------------------------------- */

typedef struct nnm__storage {
    void *data;
    size_t bytes;                 /* usable size (the size class) */
    nnm_device device;
    uint32_t refs;
    int32_t size_class;           /* -1: not from the cache (external) */
    nnm_ctx *ctx;
    nnm_dlpack_tensor *external;  /* imported DLPack tensor, deleter on free */
    struct nnm__storage *next;    /* free list link */
} nnm__storage;

typedef struct nnm__pool {
    nnm_device device;
    nnm__storage *free[NNM__NCLASSES];
} nnm__pool;

/* ---- tensors ------------------------------------------------------------ */

#define NNM__T_PARAM 1u          /* owned by a module as a parameter */
#define NNM__T_BUFFER 2u
#define NNM__T_REQUIRES_GRAD 4u  /* a leaf that wants .grad, or an op result in a graph */

typedef struct nnm__node nnm__node; /* autograd.c */

struct nnm_tensor {
    nnm_tensor_desc desc;         /* first, so a tensor is its descriptor */
    int64_t shape[NNM_MAX_DIMS];
    int64_t strides[NNM_MAX_DIMS];
    uint32_t refs;
    uint32_t flags;
    nnm__storage *storage;
    nnm_ctx *ctx;
    struct nnm_tensor *next_free;
    /* autograd */
    nnm_tensor *grad;             /* .grad, owned; NULL when unset */
    nnm__node *grad_fn;           /* owned reference; NULL for leaves */
    uint32_t output_nr;           /* which output of grad_fn this is */
    struct nnm__grad_hooks *grad_hooks; /* post-accumulate-grad hooks, DDP's bucket view;
                                         * NULL: none (autograd_internal.h) */
    /* A parameter a plugin holds that was tied to another
     * (nnm_module_set_parameter): it shares that one's storage, and
     * autograd records the other as the leaf. Owned; NULL when not tied. */
    nnm_tensor *tied;
};
/* ---- config ------------------------------------------------------------- */

/* The same numbers as the public enum nnm_config_type. */
enum nnm__cfg_type {
    NNM__CFG_INT = NNM_CONFIG_INT,
    NNM__CFG_FLOAT = NNM_CONFIG_FLOAT,
    NNM__CFG_BOOL = NNM_CONFIG_BOOL,
    NNM__CFG_STR = NNM_CONFIG_STR,
    NNM__CFG_INTS = NNM_CONFIG_INTS,
    NNM__CFG_FLOATS = NNM_CONFIG_FLOATS,
    NNM__CFG_STRS = NNM_CONFIG_STRS
};

/* name_index.c - constant-time lookup by name in an append-only list whose
 * items keep their FNV-1a name hash (a module's children, a config's keys).
 * Short lists have no table (slots NULL): callers scan them, and do the same
 * when the table could not be allocated. */
#define NNM__NAME_INDEX_MIN 16u
typedef struct nnm__name_index {
    uint32_t *slots;              /* item index + 1; 0 = empty; NULL = scan */
    uint32_t mask;                /* slots - 1 (a power of two minus one) */
} nnm__name_index;
uint32_t nnm__name_hash(const char *s, size_t n);
/* Call after appending item n - 1; hash_at(items, i) is item i's hash. */
void nnm__name_index_added(nnm__name_index *x, uint32_t n, const void *items,
                           uint32_t (*hash_at)(const void *items, uint32_t i));
void nnm__name_index_free(nnm__name_index *x);
/* for (k = first; slots[k]; k = next) candidates slots[k] - 1 */
#define NNM__NAME_INDEX_FOREACH(x, h, k) \
    for (uint32_t k = (h) & (x)->mask; (x)->slots[k]; k = (k + 1) & (x)->mask)

typedef struct nnm__cfg_entry {
    char *key;
    uint32_t hash;                /* nnm__name_hash of key */
    int type;
    union {
        int64_t i;
        double f;
        int b;
        char *s;
        struct {
            int64_t *v;
            size_t n;
        } ints;
        struct {
            double *v;
            size_t n;
        } floats;
        struct {
            char **v;
            size_t n;
        } strs;
    } u;
} nnm__cfg_entry;

struct nnm_config {
    nnm__cfg_entry *items;
    size_t count, cap;
    nnm__name_index index;        /* of keys, past NNM__NAME_INDEX_MIN */
};

const char *nnm__cfg_type_name(int type);
/* The entry for key (NULL cfg: none), or NULL. */
nnm__cfg_entry *nnm__config_find(const nnm_config *cfg, const char *key);
/* A deep copy of cfg (NULL cfg: an empty config); NULL on OOM. */
nnm_config *nnm__config_clone(const nnm_config *cfg);
/* Checks cfg against a layer's declared schema (no-op without one): unknown
 * keys, missing required keys, wrong types. The message starts with
 * `prefix` + ".key" (prefix "config" from the C API; the document path from
 * a manifest). */
nnm_status nnm__config_check(nnm_ctx *ctx, const nnm_layer_vtable *vt, const nnm_config *cfg,
                             const char *prefix);
/* manifest/schema.c - a config from a JSON object text (NULL or "": empty),
 * as a manifest's "config" map; messages start with `prefix` ("config"). */
nnm_status nnm__config_from_json(nnm_ctx *ctx, const char *text, const char *prefix, nnm_config **out);
static inline int nnm__device_eq(nnm_device a, nnm_device b) {
    return a.type == b.type && a.id == b.id;
}
/* sha256.c - FIPS 180-4 SHA-256 (weights checks, manifest hashes). */
typedef struct nnm__sha256 {
    uint32_t h[8];
    uint64_t bytes;               /* total length so far */
    uint8_t buf[64];
    uint32_t fill;
} nnm__sha256;
void nnm__sha256_init(nnm__sha256 *s);
void nnm__sha256_update(nnm__sha256 *s, const void *data, size_t n);
void nnm__sha256_final(nnm__sha256 *s, uint8_t digest[32]);
/* 64 lowercase hex digits and a NUL. */
void nnm__sha256_hex(const uint8_t digest[32], char out[65]);
/* The digest of a whole file, as hex; errors (with the path) set on ctx. */
nnm_status nnm__sha256_file(nnm_ctx *ctx, const char *path, char out[65]);
/* text.c - offset of the first byte that is not part of valid UTF-8 (no
 * overlongs, no surrogates, nothing past U+10FFFF), or len if all is valid. */
size_t nnm__utf8_invalid_at(const void *s, size_t len);
static inline int nnm__utf8_valid(const void *s, size_t len) {
    return nnm__utf8_invalid_at(s, len) == len;
}
/* A name a module, parameter or buffer may have, as PyTorch allows: any
 * non-empty valid UTF-8 without '.' and without control characters (C0,
 * DEL, C1: U+0080..U+009F). torchvision names children "block1-0". */
int nnm__name_valid(const char *s);
/* The rule in words, for messages. */
#define NNM__NAME_RULE "a name is non-empty UTF-8 without '.' and control characters"
/* Copies s into buf (cap > 4) for quoting in a message: control characters
 * (C0, DEL, C1) as '?',
 * "..." when cut, never in the middle of a UTF-8 sequence. Returns buf. */
const char *nnm__show(const char *s, char *buf, size_t cap);
/* The same for a path, keeping its tail (the file name) when cut. */
#define NNM__SHOW_PATH 256
const char *nnm__show_path(const char *p, char *buf, size_t cap);

/* file.c - opens path for reading only if it is a regular file (never
 * blocking on a FIFO, never reading a device); *fd (close it) and *size
 * (may be NULL) on success; else NNM_E_IO with a message naming the path and
 * what it is ("is a FIFO, not a regular file <what>"). what may be NULL. */
nnm_status nnm__open_regular(nnm_ctx *ctx, const char *path, const char *what, int *fd,
                             uint64_t *size);
/* ctx.c */
nnm_status nnm__error(nnm_ctx *ctx, nnm_status code, const char *fmt, ...) NNM__PRINTF(3, 4);
nnm_status nnm__verror(nnm_ctx *ctx, nnm_status code, const char *fmt, va_list ap);
/* Prefixes the current message with "path (type): " once per failure. */
void nnm__error_attribute(nnm_ctx *ctx, const nnm_module *m);
/* Frees a context whose last reference went (nnm__ctx_release, inline in
 * ctx_internal.h with nnm__ctx_retain: every tensor, storage and node takes
 * one, so they are two instructions, not calls). */
void nnm__ctx_destroy(nnm_ctx *ctx);
const char *nnm__device_name(nnm_device d, char *buf, size_t cap);

/* backend.c */
/* The initialised backend for a device, or an error set on ctx: starts it
 * on first use. Ops call nnm__backend_get (ctx_internal.h), which inlines
 * the started case. */
nnm_status nnm__backend_find(nnm_ctx *ctx, nnm_device dev, nnm__backend **out);
/* Tells an initialised backend ctx->num_threads (set_num_threads slot), when
 * the count was set and the backend has the slot; else NNM_OK. */
nnm_status nnm__backend_push_threads(nnm_ctx *ctx, nnm__backend *be);
void nnm__backends_shutdown(nnm_ctx *ctx);
/* What a backend slot returned, made fit to pass on: NNM_OK stays; a status
 * of the ABI with a message (set since err_seq was `seq`) stays; one without
 * a message gets one naming the backend and the slot; anything else (a
 * positive number, a code the ABI does not define) becomes NNM_E_PLUGIN
 * naming backend, slot and the number, so the blame is not the layer's. */
nnm_status nnm__backend_check(nnm_ctx *ctx, const nnm__backend *be, const char *slot, nnm_status st, uint64_t seq);
/* Waits for the work ctx queued on device `dev` (its backend's optional
 * `synchronize` slot; NNM_OK at once for a backend without one, or one not
 * started). Before a communicator reads or writes device memory that an
 * asynchronous backend's ops produced (runtime/dist/comm.c). */
nnm_status nnm__backend_sync(nnm_ctx *ctx, nnm_device dev);
/* Copies `bytes` bytes of host memory `src` to `dst` on device `dev` (be is
 * dev's backend) without waiting for the device when the backend has
 * host_alloc/host_free: through a page-locked staging buffer, given back in
 * stream order, so the caller may reuse src at once and the host does not
 * wait for the work queued before the copy. Otherwise (or when no staging
 * memory is to be had) the backend's plain, waiting memcpy. */
nnm_status nnm__backend_upload(nnm_ctx *ctx, nnm__backend *be, void *dst, nnm_device dev,
                               const void *src, size_t bytes);

/* alloc.c */
nnm_status nnm__storage_new(nnm_ctx *ctx, nnm_device dev, size_t bytes, nnm__storage **out);
void nnm__storage_release(nnm__storage *s); /* NULL: no-op */
/* What nnm__storage_release does once the last reference went (the
 * inline nnm__storage_release_inline, ctx_internal.h, caches a first-pool
 * block itself); and the pool of a device, made on first use (NULL: out of
 * memory). */
void nnm__storage_dead(nnm__storage *s);
nnm__pool *nnm__pool_add(nnm_ctx *ctx, nnm_device dev);
/* A storage object from the context's free list (or malloc'd): no memory,
 * fields unset; NULL when out of memory. nnm__storage_obj_recycle puts one
 * back (its memory, if any, already dealt with). */
nnm__storage *nnm__storage_obj(nnm_ctx *ctx);
void nnm__storage_obj_recycle(nnm_ctx *ctx, nnm__storage *s);
void nnm__alloc_fini(nnm_ctx *ctx);

/* tensor.c */
nnm_status nnm__tensor_alloc(nnm_ctx *ctx, nnm_device dev, nnm_dtype dtype, int32_t ndim,
                             const int64_t *shape, nnm_tensor **out);
/* Row-major contiguous (dims of size 1 may have any stride); inline, as
 * every op asks it of every operand. */
/* As PyTorch's is_contiguous: row-major strides, ignoring dims of size 1;
 * a tensor with no elements is contiguous whatever its strides say (a
 * DLPack import of an empty NumPy array has strides 0). */
static inline int nnm__tensor_is_contiguous(const nnm_tensor *t) {
    int64_t expect = 1;
    for (int32_t i = t->desc.ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->strides[i] != expect) {
            for (int32_t j = 0; j < t->desc.ndim; j++)
                if (t->shape[j] == 0) return 1;
            return 0;
        }
        expect *= t->shape[i];
    }
    return 1;
}
static inline int64_t nnm__numel(int32_t ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int32_t i = 0; i < ndim; i++) n *= shape[i];
    return n;
}
size_t nnm__dtype_size(nnm_dtype dt);
int nnm__shape_str(const nnm_tensor_desc *d, char *buf, size_t cap);
/* The n elements of an i64 tensor (any device; any strides on the CPU) into
 * host memory in row-major order, and back into a contiguous one. */
nnm_status nnm__tensor_read_i64(nnm_tensor *t, int64_t *dst, size_t n);
nnm_status nnm__tensor_write_i64(nnm_tensor *t, const int64_t *src, size_t n);
void nnm__tensors_fini(nnm_ctx *ctx);
/* rng.c */
void nnm__rng_seed(uint64_t s[4], uint64_t seed);
double nnm__rng_uniform(uint64_t s[4]);      /* [0, 1) */
double nnm__rng_normal(uint64_t s[4]);

#endif /* NNM_CORE_INTERNAL_H */
