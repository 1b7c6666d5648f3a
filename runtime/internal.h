/* runtime/internal.h - the runtime's private structures (nnm__ names).
 *
 * Objects: a context owns the plugin registry, the backends, the caching
 * allocator, the global hooks and the error message. Modules, tensors and
 * storages each hold one reference on their context, so a context outlives
 * everything made from it even after nnm_ctx_free.
 */
#ifndef NNM_RUNTIME_INTERNAL_H
#define NNM_RUNTIME_INTERNAL_H

#include <stdarg.h>
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

#define NNM__ERRMSG_CAP 1024
#define NNM__MAX_IO NNM_MAX_IO  /* most inputs or outputs of one call */
#define NNM__MAX_SPECS 4        /* input specs a layer may declare */
#define NNM__DEVICE_TYPES 3     /* index by nnm_device_type (1 = CPU, 2 = CUDA) */
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
    struct nnm__hook_list *grad_hooks; /* post-accumulate-grad hooks; NULL: none */
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

/* ---- hooks -------------------------------------------------------------- */

typedef struct nnm__hook nnm__hook;

typedef struct nnm__hook_list {
    nnm__hook *head, *tail;
    uint32_t count;               /* live (not removed) hooks */
    uint32_t running;             /* iterations in progress */
    uint32_t dead;                /* removed, waiting for the iterations to end */
    uint32_t n_always;            /* live hooks with NNM_HOOK_ALWAYS_CALL */
    uint64_t seq;                 /* stamps registrations and removals (from 1) */
    nnm_ctx *ctx;
    uint32_t *owner_count;        /* counter to keep in step (fast-path gate) */
} nnm__hook_list;

/* One registered hook. An iteration started when seq was S runs the hooks
 * with id < S that are live or were removed at or after S (PyTorch's
 * snapshot semantics). */
struct nnm__hook {
    nnm__hook *next, *prev;
    nnm__hook_list *list;
    uint64_t id;                  /* list seq at registration */
    uint64_t removed_at;          /* list seq at removal; 0 while live */
    uint32_t flags;               /* NNM_HOOK_* */
    union {
        nnm_forward_pre_hook_fn pre;
        nnm_forward_hook_fn post;
        nnm_backward_pre_hook_fn bw_pre;
        nnm_backward_hook_fn bw;
        nnm_grad_hook_fn grad;    /* a tensor's post-accumulate-grad hook */
    } fn;
    void *user;
    void (*user_free)(void *user);
    nnm_hook_handle *handle;      /* NULL when it has none (or it was freed) */
};

/* A handle outlives its hook: the hook clears `hook` when it goes. */
struct nnm_hook_handle {
    nnm__hook *hook;              /* NULL once the hook is gone */
    nnm_ctx *owner;               /* context-owned (first-version) handles; NULL: the caller's */
    nnm_hook_handle *next, *prev; /* in owner->hook_handles */
};

/* hooks.c: iteration over a list (the call path and the engine). */
static inline int nnm__hook_runs(const nnm__hook *h, uint64_t start) {
    return h->id < start && (!h->removed_at || h->removed_at >= start);
}

/* ---- modules ------------------------------------------------------------ */

typedef struct nnm__named_tensor {
    char *name;
    nnm_tensor *t;
    int persistent;
    nnm_tensor *alias;            /* tied: the tensor the plugin holds (owned; t is the
                                   * one it is tied to); NULL when not tied */
} nnm__named_tensor;

typedef struct nnm__input_spec {
    int32_t ndim;
    uint32_t flags;
    int64_t dims[NNM_MAX_DIMS];
} nnm__input_spec;

struct nnm_module {
    uint32_t magic;
    uint32_t refs;
    nnm_ctx *ctx;
    const nnm_layer_vtable *vt;
    nnm__plugin *plugin;
    void *self;
    char *name;                   /* "" for a root */
    uint32_t name_hash;           /* of name, set by add_child */
    nnm_module *parent;           /* not referenced (the parent references us) */
    nnm_module **children;
    uint32_t n_children, cap_children;
    nnm__name_index child_index;  /* of children's names, past NNM__NAME_INDEX_MIN */
    nnm__named_tensor *params;
    uint32_t n_params, cap_params;
    nnm__named_tensor *buffers;
    uint32_t n_buffers, cap_buffers;
    nnm__input_spec specs[NNM__MAX_SPECS];
    uint32_t n_specs;
    uint32_t n_hooks;             /* pre + post, for the fast-path gate */
    nnm__hook_list pre_hooks, post_hooks;
    nnm__hook_list bw_pre_hooks, bw_hooks; /* full backward (pre-)hooks */
    int training;
    int created;                  /* create succeeded: destroy is due */
    nnm_config *cfg;              /* the config it was created with (owned; for writing) */
    char *manifest_sha256;        /* hash of the manifest it was built from (roots; owned) */
    nnm_device device;
    /* The name of each child slot (owned) and its nnm__name_hash: a child
     * shared by two slots (nnm_module_set_child) has a name in each, while
     * its own `name` is the one under its first parent (for paths). */
    char **child_names;
    uint32_t *child_hashes;
    /* The names of its outputs (host->set_output_names; owned), or NULL. */
    char **output_names;
    uint32_t n_output_names;
};

/* ---- context ------------------------------------------------------------ */

struct nnm_ctx {
    uint32_t refs;                /* 1 for the user + 1 per module/tensor/storage */
    int closed;                   /* nnm_ctx_free was called */
    nnm__registry reg;
    nnm__backend backends[NNM__DEVICE_TYPES];
    nnm__pool *pools;
    uint32_t n_pools;
    nnm__storage *free_storages;  /* recycled storage objects without memory */
    nnm_tensor *free_tensors;     /* recycled tensor objects */
    nnm__node *free_nodes;        /* recycled autograd nodes */
    nnm__node **stack;            /* engine scratch, grown as needed */
    uint32_t stack_cap;
    uint32_t n_backward_hooks;    /* modules' backward hooks, for the call path */
    uint32_t mark_seq;            /* autograd walks: marks visited nodes */
    nnm_ctx_stats stats;
    uint32_t n_global_hooks;      /* + profiler: nonzero leaves the fast path */
    nnm__hook_list gpre_hooks, gpost_hooks;
    nnm_profile_fn profiler;
    void *profiler_user;
    uint32_t depth;               /* call nesting depth */
    uint64_t rng[4];              /* xoshiro256** state */
    int err_attributed;           /* the message already names a module path */
    uint32_t shared_links;        /* set_child attached a module already attached elsewhere:
                                   * walks then visit each module and tensor once */
    char errmsg[NNM__ERRMSG_CAP];
    /* hooks.c */
    nnm__hook_list gbw_pre_hooks, gbw_hooks; /* global full backward (pre-)hooks */
    nnm_hook_handle *hook_handles; /* handles the context owns (first-version API) */
    uint64_t err_seq;             /* counts messages set: "did the plugin say why?" */
};

/* The private side of an nnm_env. */
enum nnm__phase {
    NNM__PHASE_CREATE,
    NNM__PHASE_FORWARD,
    NNM__PHASE_BACKEND,
    NNM__PHASE_BACKWARD,
    NNM__PHASE_FINALIZE
};

typedef struct nnm__env {
    nnm_env pub;
    nnm_ctx *ctx;
    nnm_module *module;           /* NULL outside a layer invocation */
    const nnm_config *cfg;        /* create only */
    uint64_t cfg_read;            /* create: bit i set when key i was read */
    int phase;
    int training;
    int grad;
    nnm_device device;
    nnm__node *node;              /* backward: the node being run */
    nnm_tensor **saved;           /* custom forward: save_for_backward target */
    uint32_t n_saved;
    uint32_t magic;               /* NNM__ENV_MAGIC: host slots refuse envs the runtime did not make */
} nnm__env;

#define NNM__ENV_MAGIC 0x6e6e6d45u /* "nnmE" */

extern const nnm_host nnm__host;

static inline nnm__env *nnm__env_of(nnm_env *env) { return (nnm__env *)env; }

static inline void nnm__env_init(nnm__env *e, nnm_ctx *ctx, nnm_module *m, int phase) {
    e->pub.struct_size = sizeof(nnm_env);
    e->pub.reserved = 0;
    e->pub.host = &nnm__host;
    e->ctx = ctx;
    e->module = m;
    e->cfg = NULL;
    e->cfg_read = 0;
    e->phase = phase;
    e->training = m ? m->training : 0;
    e->grad = 1;
    e->device = m ? m->device : (nnm_device){NNM_DEVICE_CPU, 0};
    e->node = NULL;
    e->saved = NULL;
    e->n_saved = 0;
    e->magic = NNM__ENV_MAGIC;
}

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

/* atomic_file.c - replace a file atomically (temp file, fsync, rename,
 * fsync of the directory). open, then write to a->fd, then commit or abort;
 * commit and a failed open leave nothing to clean up. */
typedef struct nnm__atomic {
    int fd;
    char *tmp;
    const char *path;             /* borrowed */
} nnm__atomic;
nnm_status nnm__atomic_open(nnm_ctx *ctx, const char *path, nnm__atomic *a);
nnm_status nnm__atomic_commit(nnm_ctx *ctx, nnm__atomic *a);
void nnm__atomic_abort(nnm__atomic *a);
/* write(2) until done; -1 with errno on failure. */
int nnm__write_all(int fd, const void *buf, size_t len);

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

/* module.c - runs m's layer finalize (not its children's); the message is
 * not attributed to a module path. */
nnm_status nnm__module_finalize_self(nnm_module *m);

/* ctx.c */
nnm_status nnm__error(nnm_ctx *ctx, nnm_status code, const char *fmt, ...) NNM__PRINTF(3, 4);
nnm_status nnm__verror(nnm_ctx *ctx, nnm_status code, const char *fmt, va_list ap);
/* Prefixes the current message with "path (type): " once per failure. */
void nnm__error_attribute(nnm_ctx *ctx, const nnm_module *m);
void nnm__ctx_retain(nnm_ctx *ctx);
void nnm__ctx_release(nnm_ctx *ctx);
const char *nnm__device_name(nnm_device d, char *buf, size_t cap);

/* backend.c */
/* The initialised backend for a device, or an error set on ctx. */
nnm_status nnm__backend_get(nnm_ctx *ctx, nnm_device dev, nnm__backend **out);
void nnm__backends_shutdown(nnm_ctx *ctx);

/* alloc.c */
nnm_status nnm__storage_new(nnm_ctx *ctx, nnm_device dev, size_t bytes, nnm__storage **out);
void nnm__storage_release(nnm__storage *s);
void nnm__alloc_fini(nnm_ctx *ctx);

/* tensor.c */
nnm_status nnm__tensor_alloc(nnm_ctx *ctx, nnm_device dev, nnm_dtype dtype, int32_t ndim,
                             const int64_t *shape, nnm_tensor **out);
int nnm__tensor_is_contiguous(const nnm_tensor *t);
int64_t nnm__numel(int32_t ndim, const int64_t *shape);
size_t nnm__dtype_size(nnm_dtype dt);
int nnm__shape_str(const nnm_tensor_desc *d, char *buf, size_t cap);
void nnm__tensors_fini(nnm_ctx *ctx);

/* ops.c: every op checks shapes and devices, allocates its output, and
 * dispatches to the backend. */
nnm_status nnm__op_linear(nnm_ctx *ctx, nnm_tensor *x, nnm_tensor *w, nnm_tensor *b,
                          nnm_tensor **out);
nnm_status nnm__op_matmul(nnm_ctx *ctx, nnm_tensor *a, nnm_tensor *b, nnm_tensor **out);
nnm_status nnm__op_binary(nnm_ctx *ctx, int32_t op, nnm_tensor *a, nnm_tensor *b,
                          nnm_tensor **out);
nnm_status nnm__op_unary(nnm_ctx *ctx, int32_t op, nnm_tensor *x, double alpha,
                         nnm_tensor **out);
nnm_status nnm__op_fill(nnm_ctx *ctx, nnm_tensor *t, double value);
nnm_status nnm__op_reduce(nnm_ctx *ctx, int32_t op, nnm_tensor *x, const int32_t *dims,
                          uint32_t n_dims, int keepdim, nnm_tensor **out);
nnm_status nnm__op_log_softmax(nnm_ctx *ctx, nnm_tensor *x, nnm_tensor **out);
nnm_status nnm__op_nll(nnm_ctx *ctx, nnm_tensor *logp, nnm_tensor *target, int64_t ignore_index,
                       double label_smoothing, int32_t reduction, nnm_tensor **out);
nnm_status nnm__op_reshape(nnm_ctx *ctx, nnm_tensor *x, int32_t ndim, const int64_t *shape,
                           nnm_tensor **out);
/* Backend-only helpers (no recording) used by derivatives. */
nnm_status nnm__gemm(nnm_ctx *ctx, int trans_a, int trans_b, nnm_tensor *a, nnm_tensor *b,
                     int64_t m, int64_t n, int64_t k, float beta, nnm_tensor *c);
/* "erf" for NNM_UNARY_ERF, ... ("?" when unknown). */
const char *nnm__unary_name(int32_t op);
/* 1 when backend `be` has ABI-1.1 slots and unary ops. */
int nnm__backend_minor(const nnm__backend *be);

/* autograd.c - nodes of the backward graph and the engine.
 *
 * A node is made by an op (or a custom-backward layer call) whose inputs need
 * grad. Its edges point upstream: to the node that made each input (fn, nr),
 * or to the input itself when it is a leaf that requires grad. Saved tensors
 * are aliases with no grad_fn, so no node ever references its own output. */
#define NNM__NODE_SAVED 6

typedef nnm_status (*nnm__backward_fn)(nnm_ctx *ctx, nnm__node *n, nnm_tensor *const *grad_out,
                                       nnm_tensor **grad_in);

typedef struct nnm__edge {
    nnm__node *fn;                /* owned; or NULL */
    uint32_t nr;                  /* which output of fn */
    nnm_tensor *leaf;             /* owned; a leaf that requires grad, or NULL */
} nnm__edge;

struct nnm__node {
    uint32_t refs;
    uint16_t n_in, n_out;         /* edges; outputs (grads the node receives) */
    const char *name;             /* "LinearBackward" */
    nnm__backward_fn backward;
    nnm_ctx *ctx;
    nnm__edge next[NNM__MAX_IO];
    nnm_tensor *saved[NNM__NODE_SAVED];
    uint32_t n_saved;
    int freed;                    /* saved state released after a backward */
    /* op metadata */
    int32_t op;
    double alpha;
    int64_t ival;
    int32_t in_ndim[2];
    int64_t in_shape[2][NNM_MAX_DIMS];
    nnm_module *module;           /* owned: custom-backward and hook nodes */
    nnm__node *peer;              /* owned: the input-side node of a hook pair */
    nnm_tensor *hook_grad_out[NNM__MAX_IO]; /* hook pairs: grads of the outputs */
    /* engine scratch */
    uint32_t deps;
    uint32_t mark;
    nnm_tensor *grad[NNM__MAX_IO];
    nnm__node *next_free;
    /* op metadata of the ABI 1.3 ops (ops_nn.c, ops_shape.c) */
    union {
        nnm_conv_params conv;
        nnm_pool_params pool;
        int64_t sizes[NNM__MAX_IO]; /* concat: each input's size along dim; permute: perm */
    } u;
    /* custom-backward nodes with more than 2 inputs: input i's ndim and
     * shape at in_shapes[i * (NNM_MAX_DIMS + 1)] (malloc'd; up to 2 inputs
     * use in_ndim/in_shape) */
    int64_t *in_shapes;
};

void nnm__node_release(nnm__node *n); /* NULL: no-op */
/* True when an op on these inputs must be recorded (grad mode on and one of
 * them requires grad). NULL inputs are ignored. */
int nnm__needs_grad(nnm_tensor *a, nnm_tensor *b, nnm_tensor *c);
/* A node with edges to `inputs` (n_in of them, NULLs allowed); NULL on OOM. */
nnm__node *nnm__node_new(nnm_ctx *ctx, const char *name, nnm__backward_fn fn, nnm_tensor *const *inputs,
                         uint32_t n_in, uint32_t n_out);
/* Makes `out` output nr of node n (takes a reference on n). */
void nnm__node_attach(nnm__node *n, nnm_tensor *out, uint32_t nr);
/* Saves an alias of t (no grad_fn) in n; NNM_E_NOMEM on failure. */
nnm_status nnm__node_save(nnm__node *n, nnm_tensor *t);
/* A tensor object sharing t's storage with its own shape/strides (strides
 * NULL: contiguous) and no autograd information. */
nnm_status nnm__tensor_view(nnm_tensor *t, int32_t ndim, const int64_t *shape,
                            const int64_t *strides, nnm_tensor **out);
/* A contiguous tensor of `shape` holding t broadcast to it. */
nnm_status nnm__expand(nnm_ctx *ctx, nnm_tensor *t, int32_t ndim, const int64_t *shape,
                       nnm_tensor **out);
/* Sums g over the dims it was broadcast along, giving a tensor of shape. */
nnm_status nnm__sum_to(nnm_ctx *ctx, nnm_tensor *g, int32_t ndim, const int64_t *shape,
                       nnm_tensor **out);
/* Adds grad into a leaf's .grad, copying rather than sharing memory. */
nnm_status nnm__leaf_accumulate(nnm_ctx *ctx, nnm_tensor *leaf, nnm_tensor *grad);
/* Adds grad into *slot (taking a reference, or replacing *slot with a sum). */
nnm_status nnm__grad_accumulate(nnm_ctx *ctx, nnm_tensor **slot, nnm_tensor *grad);

/* derivatives.c: record an op's node on its output y (x/w/a/b: the inputs as
 * given; xc/wc/ac/bc: the contiguous copies forward used). */
nnm_status nnm__record_unary(nnm_ctx *ctx, int32_t op, double alpha, nnm_tensor *x, nnm_tensor *y);
nnm_status nnm__record_binary(nnm_ctx *ctx, int32_t op, nnm_tensor *a, nnm_tensor *b, nnm_tensor *y);
nnm_status nnm__record_linear(nnm_ctx *ctx, nnm_tensor *x, nnm_tensor *w, nnm_tensor *b, nnm_tensor *xc,
                              nnm_tensor *wc, nnm_tensor *y);
nnm_status nnm__record_matmul(nnm_ctx *ctx, nnm_tensor *a, nnm_tensor *b, nnm_tensor *ac, nnm_tensor *bc,
                              nnm_tensor *y);
nnm_status nnm__record_reduce(nnm_ctx *ctx, int32_t op, nnm_tensor *x, nnm_tensor *rkeep, nnm_tensor *y);
nnm_status nnm__record_log_softmax(nnm_ctx *ctx, nnm_tensor *x, nnm_tensor *y);
nnm_status nnm__record_nll(nnm_ctx *ctx, nnm_tensor *logp, nnm_tensor *target, nnm_tensor *count,
                           int64_t ignore_index, double smoothing, int32_t reduction, nnm_tensor *y);
nnm_status nnm__record_reshape(nnm_ctx *ctx, nnm_tensor *x, nnm_tensor *y);

/* ops_nn.c, ops_shape.c: the ABI 1.3 ops (each checks its arguments, sets an
 * error naming the op, allocates from the caching allocator, dispatches, and
 * records for autograd). */
nnm_status nnm__op_full(nnm_ctx *ctx, nnm_device dev, int32_t ndim, const int64_t *shape,
                        double value, nnm_tensor **out);
nnm_status nnm__op_rand(nnm_ctx *ctx, nnm_device dev, int32_t dist, double a, double b,
                        int32_t ndim, const int64_t *shape, nnm_tensor **out);
nnm_status nnm__op_bmm(nnm_ctx *ctx, nnm_tensor *a, nnm_tensor *b, nnm_tensor **out);
nnm_status nnm__op_permute(nnm_ctx *ctx, nnm_tensor *x, const int32_t *perm, int32_t ndim,
                           nnm_tensor **out);
nnm_status nnm__op_concat(nnm_ctx *ctx, nnm_tensor *const *xs, uint32_t n, int32_t dim,
                          nnm_tensor **out);
nnm_status nnm__op_slice(nnm_ctx *ctx, nnm_tensor *x, int32_t dim, int64_t start, int64_t length,
                         nnm_tensor **out);
nnm_status nnm__op_softmax(nnm_ctx *ctx, nnm_tensor *x, int32_t dim, int log, nnm_tensor **out);
nnm_status nnm__op_where(nnm_ctx *ctx, nnm_tensor *cond, nnm_tensor *a, nnm_tensor *b,
                         nnm_tensor **out);
nnm_status nnm__op_conv(nnm_ctx *ctx, nnm_tensor *x, nnm_tensor *w, nnm_tensor *b,
                        const nnm_conv_params *p, nnm_tensor **out);
nnm_status nnm__op_pool(nnm_ctx *ctx, nnm_tensor *x, const nnm_pool_params *p, nnm_tensor **out);
nnm_status nnm__op_update(nnm_ctx *ctx, nnm_tensor *dst, nnm_tensor *src, double alpha, double beta);
/* Backward helpers of the 1.3 ops (no recording; ops_nn.c). conv: grads of x
 * and w for the saved contiguous x, w (either out pointer NULL: not wanted). */
nnm_status nnm__conv_backward(nnm_ctx *ctx, const nnm_conv_params *p, nnm_tensor *x, nnm_tensor *w,
                              nnm_tensor *g, nnm_tensor **gx, nnm_tensor **gw);
nnm_status nnm__pool_backward(nnm_ctx *ctx, const nnm_pool_params *p, nnm_tensor *x, nnm_tensor *g,
                              nnm_tensor **gx);
/* op(a) @ op(b) over broadcast batch dims, never recorded. */
nnm_status nnm__bmm_raw(nnm_ctx *ctx, int ta, int tb, nnm_tensor *a, nnm_tensor *b, nnm_tensor **out);
/* The gradient of a slice: zeros of `shape` with g copied at `start` along d. */
nnm_status nnm__slice_backward(nnm_ctx *ctx, int32_t ndim, const int64_t *shape, int32_t d, int64_t start,
                               nnm_tensor *g, nnm_tensor **out);
/* A contiguous tensor with t's values (t itself, retained, when it is one). */
nnm_status nnm__contiguous(nnm_ctx *ctx, nnm_tensor *t, nnm_tensor **out);
/* The backend of dev when its vtable has the slot at byte offset `off` (the
 * loader's normalised copy zeroes what an older plugin lacks), else an
 * NNM_E_UNSUPPORTED error naming op and backend. */
nnm_status nnm__backend_slot(nnm_ctx *ctx, nnm_device dev, size_t off, const char *op,
                             nnm__backend **out);
#define NNM__BACKEND_SLOT(ctx, dev, slot, op, out) \
    nnm__backend_slot((ctx), (dev), offsetof(nnm_backend_vtable, slot), (op), (out))
/* derivatives_nn.c: the nodes of the 1.3 ops. */
nnm_status nnm__record_bmm(nnm_ctx *ctx, nnm_tensor *a, nnm_tensor *b, nnm_tensor *ac, nnm_tensor *bc,
                           nnm_tensor *y);
nnm_status nnm__record_permute(nnm_ctx *ctx, nnm_tensor *x, const int32_t *perm, nnm_tensor *y);
nnm_status nnm__record_concat(nnm_ctx *ctx, nnm_tensor *const *xs, uint32_t n, int32_t dim,
                              nnm_tensor *y);
nnm_status nnm__record_slice(nnm_ctx *ctx, nnm_tensor *x, int32_t dim, int64_t start, nnm_tensor *y);
nnm_status nnm__record_softmax(nnm_ctx *ctx, nnm_tensor *x, int32_t dim, int log, nnm_tensor *y);
nnm_status nnm__record_where(nnm_ctx *ctx, nnm_tensor *cond, nnm_tensor *a, nnm_tensor *b, nnm_tensor *y);
nnm_status nnm__record_conv(nnm_ctx *ctx, nnm_tensor *x, nnm_tensor *w, nnm_tensor *b, nnm_tensor *xc,
                            nnm_tensor *wc, const nnm_conv_params *p, nnm_tensor *y);
nnm_status nnm__record_pool(nnm_ctx *ctx, nnm_tensor *x, nnm_tensor *xc, const nnm_pool_params *p,
                            nnm_tensor *y);

/* ops_norm.c: the normalisation ops of ABI 1.4. batch_norm checks its
 * arguments (see nnm_host.op_batch_norm), runs the backend's fused kernel
 * and records one node; nnm__batch_norm_backward (no recording) writes the
 * gradients wanted (each out pointer NULL: not wanted) from the saved
 * contiguous x, weight (or NULL) and the saved statistics. */
nnm_status nnm__op_batch_norm(nnm_ctx *ctx, nnm_tensor *x, nnm_tensor *running_mean, nnm_tensor *running_var,
                              nnm_tensor *weight, nnm_tensor *bias, const nnm_batch_norm_params *p,
                              nnm_tensor **out);
nnm_status nnm__batch_norm_backward(nnm_ctx *ctx, int training, nnm_tensor *x, nnm_tensor *w, nnm_tensor *mean,
                                    nnm_tensor *invstd, nnm_tensor *g, nnm_tensor **gx, nnm_tensor **gw,
                                    nnm_tensor **gb);
/* derivatives_nn.c: batch_norm's node (inputs x, weight, bias; saves xc,
 * wc, mean, invstd). */
nnm_status nnm__record_batch_norm(nnm_ctx *ctx, nnm_tensor *x, nnm_tensor *weight, nnm_tensor *bias,
                                  nnm_tensor *xc, nnm_tensor *wc, nnm_tensor *mean, nnm_tensor *invstd,
                                  int training, nnm_tensor *y);

/* ops_index.c: the ABI 1.5 ops. tensor_from_host copies numel(shape)
 * elements of dtype from host memory into a new tensor on dev (no grad);
 * index_select checks its arguments (see nnm_host.op_index_select), runs the
 * backend's slot or the one-hot gemm and records IndexSelectBackward;
 * nnm__index_add_backward (no recording) is its gradient: zeros of x's shape
 * with g's slices added at the indices idx[0..m) along dim d. */
nnm_status nnm__tensor_from_host(nnm_ctx *ctx, nnm_device dev, int32_t ndim, const int64_t *shape, nnm_dtype dtype,
                                 const void *data, nnm_tensor **out);
nnm_status nnm__op_index_select(nnm_ctx *ctx, nnm_tensor *x, int32_t dim, nnm_tensor *index, nnm_tensor **out);
nnm_status nnm__index_add_backward(nnm_ctx *ctx, nnm_tensor *g, int32_t d, const int64_t *idx, int64_t m,
                                   int32_t ndim, const int64_t *shape, nnm_tensor **out);
/* derivatives_nn.c: index_select's node (input x; keeps a host copy of the
 * m indices). */
nnm_status nnm__record_index_select(nnm_ctx *ctx, nnm_tensor *x, int32_t dim, const int64_t *idx, int64_t m,
                                    nnm_tensor *y);

/* ops_rnn.c: host->op_rnn (ABI 1.5), one recurrent layer in one direction
 * over a sequence: per step a gemm and the backend's rnn_cell slot; records
 * one node whose backward (BPTT) runs rnn_cell_backward per step. */
nnm_status nnm__op_rnn(nnm_ctx *ctx, const nnm_rnn_params *p, nnm_tensor *gx, nnm_tensor *w_hh, nnm_tensor *b_hh,
                       nnm_tensor *w_hr, nnm_tensor *h0, nnm_tensor *c0, nnm_tensor **y, nnm_tensor **c_n);

/* call.c: custom-backward layers and module backward hooks */
nnm_status nnm__record_layer(nnm_module *m, nnm_tensor *const *in, uint32_t n_in, nnm_tensor **out,
                             uint32_t n_out, nnm_tensor **saved, uint32_t n_saved);

/* rng.c */
void nnm__rng_seed(uint64_t s[4], uint64_t seed);
double nnm__rng_uniform(uint64_t s[4]);      /* [0, 1) */
double nnm__rng_normal(uint64_t s[4]);

/* hooks.c */
void nnm__hook_list_init(nnm__hook_list *l, nnm_ctx *ctx, uint32_t *owner_count);
/* Drops every hook of l (their user_free runs; deferred while l is running). */
void nnm__hook_list_clear(nnm__hook_list *l);
/* Ends one iteration over l (the call path increments l->running to start one). */
void nnm__hook_list_end(nnm__hook_list *l);
/* Appends a post-accumulate-grad hook to a tensor's list (grad_hooks.c). */
nnm_status nnm__hook_add_grad(nnm__hook_list *l, nnm_grad_hook_fn fn, void *user,
                              nnm_hook_handle **handle);
/* Context lifetime: the global lists at creation, at nnm_ctx_free (the
 * user's view ends) and at destruction (context-owned handles are freed). */
void nnm__hooks_ctx_init(nnm_ctx *ctx);
void nnm__hooks_ctx_close(nnm_ctx *ctx);
void nnm__hooks_ctx_fini(nnm_ctx *ctx);

/* grad_hooks.c - a leaf's post-accumulate-grad hooks: run after every
 * addition into its .grad; freed with the tensor. */
nnm_status nnm__grad_hooks_run(nnm_tensor *leaf);
void nnm__grad_hooks_free(nnm_tensor *t);

/* dist/comm.c - for the DDP reducer. */
nnm_ctx *nnm__comm_ctx(const nnm_comm *c);
void nnm__comm_retain(nnm_comm *c);

/* module.c */
int nnm__module_live(const nnm_module *m);
/* Visited pointers, for walks over trees that share modules or tensors
 * (named_parameters(remove_duplicate=True)). nnm__seen_add: 1 when p was
 * not there (and now is), 0 when it was, -1 out of memory. */
typedef struct nnm__seen {
    const void **slots;
    size_t mask, n;
} nnm__seen;
int nnm__seen_add(nnm__seen *s, const void *p);
void nnm__seen_free(nnm__seen *s);

nnm_status nnm__module_add_tensor(nnm_module *m, int buffer, const char *name, nnm_tensor *t,
                                  int persistent);
/* Replaces m's output names by `names` (n of them, owned from now on; NULL
 * and 0 remove them). */
void nnm__module_set_output_names(nnm_module *m, char **names, uint32_t n);

/* safetensors.c */
/* Index (file order) of the entry named `name`, or -1; sets no error. */
int64_t nnm__safetensors_lookup(const nnm_safetensors *st, const char *name);
/* "F32", "BF16", ... for a dtype; "?" if it has no safetensors name. */
const char *nnm__st_dtype_name(nnm_dtype dt);

/* state_dict.c: checkpoint support (runtime/state/checkpoint.c). */
/* Visits m's state dict (parameters and persistent buffers under their
 * dotted keys, in state_dict order; shared tensors under every name).
 * Tensors are borrowed; names are valid during the call. */
nnm_status nnm__state_dict_visit(nnm_module *m, nnm_tensor_visit_fn fn, void *user);
/* 1 when file entry e can load into t (same shape; dtype equal or converted
 * to f32). Otherwise 0 and, when why != NULL, "key: file [2] vs module [3]". */
int nnm__state_entry_fits(const nnm_st_entry *e, const nnm_tensor *t, const char *key, char *why,
                          size_t cap);
/* Copies entry e (already checked with nnm__state_entry_fits) into the
 * contiguous tensor t, on t's device. */
nnm_status nnm__state_copy_entry(nnm_ctx *ctx, nnm_tensor *t, const nnm_st_entry *e);

/* optim.c: checkpoint support (runtime/state/checkpoint.c). */
enum nnm__optim_kind { NNM__OPTIM_SGD, NNM__OPTIM_ADAM, NNM__OPTIM_ADAMW };
#define NNM__OPTIM_SLOTS 5
/* State names by slot: momentum_buffer, exp_avg, exp_avg_sq, max_exp_avg_sq,
 * step (the [1] f32 CPU mirror of the count; Adam only). */
extern const char *const nnm__optim_slot_names[NNM__OPTIM_SLOTS];

typedef struct nnm__optim_info {
    int kind;                     /* enum nnm__optim_kind */
    int stepped;                  /* a step has run (groups frozen) */
    double momentum, dampening;   /* SGD */
    int nesterov;
    double beta1, beta2, eps;     /* Adam, AdamW */
    int amsgrad;
    uint32_t n_groups, n_params;
    nnm_ctx *ctx;                 /* borrowed */
    nnm_module *module;           /* borrowed: the module it was made over */
} nnm__optim_info;

typedef struct nnm__optim_pstate {
    const char *name;             /* dotted name relative to info.module; owned by the optimizer */
    nnm_tensor *param;            /* borrowed */
    uint32_t group;
    int64_t step;                 /* updates taken */
    nnm_tensor *slot[NNM__OPTIM_SLOTS]; /* NULL: no such state (yet) */
} nnm__optim_pstate;

void nnm__optim_info_get(const nnm_optim *o, nnm__optim_info *out);
void nnm__optim_group_get(const nnm_optim *o, uint32_t g, double *lr, double *weight_decay);
/* Parameter i (< n_params), in the optimizer's order; slots borrowed. */
void nnm__optim_param_get(const nnm_optim *o, uint32_t i, nnm__optim_pstate *out);
/* Replaces the shared hyper-parameters and the stepped flag with info's,
 * each group's lr and weight decay with lr[g]/weight_decay[g] (n_groups
 * entries), and every parameter's step and slots with ps[i]'s (n_params
 * entries, the optimizer's order; group membership is not changed). Takes
 * the slot references of ps and releases the old ones. Cannot fail. */
void nnm__optim_restore(nnm_optim *o, const nnm__optim_info *info, const double *lr,
                        const double *weight_decay, const nnm__optim_pstate *ps);

/* call.c */
nnm_status nnm__module_call(nnm_module *m, nnm_tensor *const *in, uint32_t n_in, nnm_tensor **out,
                            uint32_t n_out);

#endif /* NNM_RUNTIME_INTERNAL_H */
