/* nnmod/nnmod.h - the application API of libnnmod.
 *
 * If it is not in this header (or in plugin.h, which it includes) it is not API.
 *
 * Conventions, for every function below:
 *  - Fallible functions return nnm_status: NNM_OK (0) or a negative NNM_E_* code.
 *    The message of the last failure on a context is nnm_ctx_errmsg(ctx); it is
 *    owned by the context and valid until the next failing call on it.
 *  - When a function that returns an object through `**out` fails, *out is set
 *    to NULL and nothing needs freeing.
 *  - Passing NULL to a release/free function is a harmless no-op. Passing NULL
 *    where an object is required returns NNM_E_INVALID (never crashes).
 *  - Objects with _retain/_release are reference counted; a function that hands
 *    one out through `**out` gives the caller one reference.
 *  - A context and everything made from it may be used by one thread at a time.
 *    Grad mode is per thread, as in PyTorch.
 *  - For bindings: the error message belongs to the CONTEXT (read it on the
 *    thread that made the failing call, before the context is used again),
 *    while grad mode belongs to the calling OS THREAD (not to the context: a
 *    no-grad scope covers only calls made on the thread that set it, and a
 *    new thread starts with grad mode on). docs/abi.md, section 4.
 *  - The library never prints, exits or aborts.
 *  - Every struct that crosses the API starts with `uint32_t struct_size`
 *    (sizeof as the filler saw it), except those laid out by DLPack
 *    (nnm_device, nnm_dtype, nnm_tensor_desc, nnm_dlpack_*) and the element
 *    types of arrays (nnm_kv, nnm_config_field), whose layouts are frozen.
 *  - No entry point is variadic-only, and every constant is reachable at run
 *    time (nnm_constant), so any FFI (cgo, Julia's ccall, ctypes) can bind it.
 */
#ifndef NNMOD_NNMOD_H
#define NNMOD_NNMOD_H

#include <stddef.h>
#include <stdint.h>

#include "plugin.h"
#include "version.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define NNM_API __declspec(dllimport)
#elif defined(NNM_BUILDING_LIBRARY)
#define NNM_API __attribute__((visibility("default")))
#else
#define NNM_API
#endif

typedef struct nnm_ctx nnm_ctx;
typedef struct nnm_module nnm_module;
typedef struct nnm_config nnm_config;
typedef struct nnm_manifest nnm_manifest;
typedef struct nnm_hook_handle nnm_hook_handle;

/* ------------------------------------------------------------------------ */
/* Versions and status                                                       */
/* ------------------------------------------------------------------------ */

/* The library's version string, e.g. "0.1.0". Static; never free it. */
NNM_API const char *nnm_version(void);
/* The plugin ABI this library speaks. Either pointer may be NULL. */
NNM_API void nnm_abi_version(uint16_t *major, uint16_t *minor);
/* A static name for a status code ("NNM_E_SHAPE"); "unknown" for others. */
NNM_API const char *nnm_status_name(nnm_status status);
/* A static one-line description of a status code. */
NNM_API const char *nnm_status_str(nnm_status status);

/* For bindings that cannot read C macros and enums (cgo, Julia's ccall,
 * ctypes): every integer constant of nnmod.h, plugin.h and version.h by its
 * C name ("NNM_E_SHAPE", "NNM_DEVICE_CPU", "NNM_MAX_DIMS", "NNM_ABI_MINOR",
 * ...), as this library was built. NNM_OK and the value in *value;
 * NNM_E_NOT_FOUND for a name that is not one (*value untouched);
 * NNM_E_INVALID for NULL name or value. */
NNM_API nnm_status nnm_constant(const char *name, int64_t *value);
/* The constants in name order: their number, and entry `index` (the name is
 * static; NULL past the end; value may be NULL). */
NNM_API uint32_t nnm_constant_count(void);
NNM_API const char *nnm_constant_at(uint32_t index, int64_t *value);
/* sizeof of a public struct as this library was built ("nnm_tensor_desc",
 * "nnm_host", "nnm_sgd_options", ... the name after `struct`), so a binding
 * can check its own declarations at run time; 0 for an unknown name or NULL. */
NNM_API size_t nnm_struct_size(const char *name);

/* ------------------------------------------------------------------------ */
/* Context                                                                   */
/* ------------------------------------------------------------------------ */

/* Flags for nnm_ctx_options.flags. */
#define NNM_CTX_NO_DISCOVERY 1u /* do not scan the default plugin paths at creation */

typedef struct nnm_ctx_options {
    uint32_t struct_size; /* sizeof(nnm_ctx_options) */
    uint32_t flags;       /* NNM_CTX_* */
    uint64_t seed;        /* parameter-init generator seed; 0 picks 0x6e6e6d6f64 */
} nnm_ctx_options;

/* Creates a context. `opts` may be NULL (defaults: discovery on, default seed).
 * Discovery scans NNM_PLUGIN_PATH, the directory beside libnnmod
 * (nnmod/plugins) and the installed plugin directory, in that order; plugins
 * that fail to load are recorded (see nnm_plugin_info) and never make
 * creation fail. Free with nnm_ctx_free. */
NNM_API nnm_status nnm_ctx_new(const nnm_ctx_options *opts, nnm_ctx **out);
/* Frees the context. Modules and tensors still alive keep what they need
 * (their plugin, backend and allocator) until they are released. NULL: no-op. */
NNM_API void nnm_ctx_free(nnm_ctx *ctx);
/* The message of the last failure on ctx ("" if none). Owned by ctx. A NULL
 * ctx gives a static message saying so. */
NNM_API const char *nnm_ctx_errmsg(const nnm_ctx *ctx);
/* Sets ctx's error message and returns `code`: for hooks and callbacks that
 * fail and want to say why. */
NNM_API nnm_status nnm_ctx_set_error(nnm_ctx *ctx, nnm_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* nnm_ctx_set_error without formatting, for callers that cannot call a
 * variadic function (cgo, Julia's ccall): `msg` (NULL: "") is copied, truncated
 * past the context's message capacity (1023 bytes); returns `code`. NULL ctx:
 * returns `code`, nothing else. */
NNM_API nnm_status nnm_ctx_set_error_msg(nnm_ctx *ctx, nnm_status code, const char *msg);

/* Allocation statistics, for benchmarks and leak checks. */
typedef struct nnm_ctx_stats {
    uint32_t struct_size;      /* set by the caller to sizeof(nnm_ctx_stats) */
    uint32_t reserved;
    uint64_t heap_allocs;      /* calls into malloc/backend alloc for tensors */
    uint64_t cache_hits;       /* tensor allocations served from the cache */
    uint64_t bytes_cached;     /* device bytes held in the cache, free */
    uint64_t bytes_in_use;     /* device bytes held by live tensors */
    uint64_t live_tensors;
    uint64_t live_modules;
    /* ---- fields above: nnmod 0.3 (a smaller struct_size gets only those) ---- */
    uint64_t peak_bytes_in_use;   /* high-water mark of bytes_in_use (nnmod 0.4) */
    uint64_t peak_bytes_reserved; /* high-water mark of bytes_in_use + bytes_cached: the
                                   * most device memory the allocator held (nnmod 0.4) */
} nnm_ctx_stats;
/* Copies min(out->struct_size, sizeof(nnm_ctx_stats)) bytes of ctx's
 * statistics and sets out->struct_size to that: a caller built against an
 * older, shorter struct gets the fields it knows. */
NNM_API nnm_status nnm_ctx_stats_get(nnm_ctx *ctx, nnm_ctx_stats *out);
/* Intra-op threads: the most threads one op of ctx may use (OpenBLAS's
 * gemm, the CPU backend's convolutions, batch norm, pooling, elementwise
 * ops). n >= 1 sets it (NNM_E_INVALID otherwise); the backend decides per op
 * and size how many it uses (small ops stay on one thread, where handing
 * half to a second costs more than it gives). A new context starts with
 * PyTorch's default: NNM_NUM_THREADS, OMP_NUM_THREADS or OPENBLAS_NUM_THREADS
 * (the first set to a positive number), else the number of CPUs the process
 * may run on. OpenBLAS keeps one count per process: contexts used from
 * several threads at once with different counts share it. (nnmod 0.4) */
NNM_API nnm_status nnm_ctx_set_num_threads(nnm_ctx *ctx, int32_t n);
/* The count ctx's ops may use: the one set by nnm_ctx_set_num_threads, or
 * the default above (>= 1). NULL ctx: 0. (nnmod 0.4) */
NNM_API int32_t nnm_ctx_num_threads(const nnm_ctx *ctx);
/* Restarts the high-water marks (peak_bytes_*) from the current figures, as
 * torch.cuda.reset_peak_memory_stats: the peak of one phase (a training step)
 * then reads from nnm_ctx_stats_get. NULL: no-op. (nnmod 0.4) */
NNM_API void nnm_ctx_reset_peak_stats(nnm_ctx *ctx);
/* Returns cached, unused device memory to the backends. */
NNM_API void nnm_ctx_empty_cache(nnm_ctx *ctx);
/* Waits until every op and copy ctx has queued on its devices has finished,
 * as torch.cuda.synchronize() does. Asynchronous backends (cuda) queue work
 * on one stream per device per context and return before it ran; a failure
 * of that work (a kernel fault) is reported here, or by the next copy to the
 * host, naming the backend. A context that only used synchronous backends
 * (cpu), or none: NNM_OK at once. Timing a GPU op means synchronising before
 * reading the clock. NULL ctx: NNM_E_INVALID. (nnmod 0.5) */
NNM_API nnm_status nnm_ctx_synchronize(nnm_ctx *ctx);

/* ------------------------------------------------------------------------ */
/* Plugins                                                                   */
/* ------------------------------------------------------------------------ */

/* Loads one plugin file. A file already loaded is not loaded twice. Errors
 * (not a shared object, no entry symbol, ABI major mismatch, bad descriptor,
 * duplicate (name, version)) return a status with a message naming the file and
 * the versions, and are also recorded in the plugin list. */
NNM_API nnm_status nnm_plugin_load(nnm_ctx *ctx, const char *path);
/* Loads every *.so in `dir` (not recursive). Returns NNM_OK even if some files
 * failed (see nnm_plugin_info); NNM_E_IO if dir cannot be read. *n_loaded
 * (may be NULL) receives the number of files loaded. */
NNM_API nnm_status nnm_plugin_load_dir(nnm_ctx *ctx, const char *dir, uint32_t *n_loaded);
/* Registers a descriptor that lives in the application itself (no file).
 * `desc` must outlive ctx. */
NNM_API nnm_status nnm_plugin_register_static(nnm_ctx *ctx, const nnm_plugin_desc *desc,
                                              const char *origin);

typedef struct nnm_plugin_info {
    uint32_t struct_size;      /* set by the caller */
    int32_t status;            /* NNM_OK if loaded, else why it failed */
    const char *path;          /* file, or the origin of a static registration */
    const char *name;          /* plugin name; NULL if it failed before the descriptor */
    const char *error;         /* "" if loaded */
    uint16_t abi_major, abi_minor; /* as the plugin declared; 0 if unknown */
    uint32_t n_layers;
    uint32_t n_backends;
    uint32_t live_modules;     /* modules alive that were made from it */
} nnm_plugin_info;
/* Number of plugin records (loaded and failed) in ctx. */
NNM_API uint32_t nnm_plugin_count(const nnm_ctx *ctx);
/* Fills *out for record `index`. Strings are owned by ctx and valid until it is
 * freed. */
NNM_API nnm_status nnm_plugin_info_get(const nnm_ctx *ctx, uint32_t index, nnm_plugin_info *out);

/* One layer of a loaded plugin, as name resolution sees it (docs/abi.md,
 * "Names"). Added in 0.5. */
typedef struct nnm_layer_info {
    uint32_t struct_size;      /* set by the caller */
    uint32_t flags;            /* NNM_LAYER_INFO_* */
    const char *name;          /* the layer's own name, "gelu" */
    const char *domain;        /* "nnmod", "acme"; for a plugin that declares
                                * none (ABI 1.0-1.4), its plugin name */
    const char *qualified_name; /* "<domain>.<name>": always reaches this file's
                                 * layer (with a version spec when it has several) */
    uint32_t version_major, version_minor, version_patch;
    uint32_t reserved;
} nnm_layer_info;
#define NNM_LAYER_INFO_DECLARED 1u /* the plugin declared its domain (ABI 1.5) */
#define NNM_LAYER_INFO_PLAIN 2u    /* the plain name ("gelu") reaches it */
#define NNM_LAYER_INFO_SHADOWED 4u /* no declared domain, and nnmod's library has a
                                    * layer of that name: the plain name is nnmod's;
                                    * this one answers to qualified_name only */
#define NNM_LAYER_INFO_BUILTIN 8u  /* domain NNM_DOMAIN_NNMOD: nnmod's own library */
/* Fills *out for layer `layer` of plugin record `plugin` (NNM_E_NOT_FOUND past
 * either end, or for a record that failed to load). Strings are owned by ctx
 * and valid until it is freed. */
NNM_API nnm_status nnm_plugin_layer_info(const nnm_ctx *ctx, uint32_t plugin, uint32_t layer,
                                         nnm_layer_info *out);

/* Looks a layer up by request, "[domain.]name[@spec][#provider]":
 *   name     a plain name ("gelu": nnmod's own where its library has one, else
 *            that of a plugin that declares no domain) or a qualified one
 *            ("acme.gelu", "nnmod.gelu");
 *   spec     "1.2.3" (exact), "^1.2", "~1.2", ">=1.2" or "*" (the default);
 *   provider pins the file: its path (with a '/'), file name or plugin name.
 * Among the providers the name reaches, the highest version the spec matches
 * wins; the same version from two files is refused (NNM_E_EXISTS, naming
 * both), never settled by load order. Returns the vtable (owned by the
 * plugin, valid while ctx lives) for inspection; modules are made with
 * nnm_module_create. */
NNM_API nnm_status nnm_layer_find(nnm_ctx *ctx, const char *request,
                                  const nnm_layer_vtable **out);

/* ------------------------------------------------------------------------ */
/* Tensors                                                                   */
/* ------------------------------------------------------------------------ */

/* The meta device (PyTorch's device="meta"): tensors with a shape and a dtype
 * and no storage (desc.data is NULL). Nothing computes on it and no backend
 * serves it: ops, copies, saving and loading refuse it with NNM_E_DEVICE.
 * Modules built on it (nnm_module_create_on, NNM_BUILD_META) describe a
 * model (names, shapes, parameter counts and bytes) without allocating it,
 * which is how manifests are validated. Not a DLPack device type. */
#define NNM_DEVICE_META 0x6d6574 /* "met" */

/* A new contiguous tensor on `device`, contents undefined (no contents at
 * all on NNM_DEVICE_META). */
NNM_API nnm_status nnm_tensor_new(nnm_ctx *ctx, nnm_device device, nnm_dtype dtype,
                                  int32_t ndim, const int64_t *shape, nnm_tensor **out);
/* A new contiguous f32 CPU tensor holding a copy of `data` (may be NULL: zeros). */
NNM_API nnm_status nnm_tensor_from_f32(nnm_ctx *ctx, int32_t ndim, const int64_t *shape,
                                       const float *data, nnm_tensor **out);
/* Copies the elements of an f32 tensor (any device, any strides) into `dst`,
 * which holds `cap` floats, in row-major order. An i64 tensor (since 0.5:
 * batch norm's num_batches_tracked) is converted, exact below 2^24. */
NNM_API nnm_status nnm_tensor_to_f32(nnm_tensor *t, float *dst, size_t cap);
/* (nnmod 0.5) A new contiguous tensor on `device` holding a copy of t's
 * elements (any dtype; any strides on the CPU, contiguous or f32 elsewhere),
 * like PyTorch's t.detach().to(device): the copy is a new leaf, recorded for
 * no autograd. Both devices' backends must be loaded (NNM_E_NO_DEVICE, with
 * the backend's message, where the machine lacks the device); to the meta
 * device only the shape and dtype are kept. *out is NULL on failure. */
NNM_API nnm_status nnm_tensor_to(nnm_tensor *t, nnm_device device, nnm_tensor **out);
NNM_API void nnm_tensor_retain(nnm_tensor *t);
NNM_API void nnm_tensor_release(nnm_tensor *t);
/* The DLTensor-shaped descriptor; lives as long as the tensor. NULL for NULL. */
NNM_API const nnm_tensor_desc *nnm_tensor_desc_get(const nnm_tensor *t);
/* Number of elements; 0 for NULL. */
NNM_API int64_t nnm_tensor_numel(const nnm_tensor *t);

/* DLPack interchange. The structs are laid out exactly like DLPack 1.x's
 * DLManagedTensorVersioned, so a pointer can be passed to any DLPack consumer. */
typedef struct nnm_dlpack_version {
    uint32_t major;
    uint32_t minor;
} nnm_dlpack_version;

typedef struct nnm_dlpack_tensor {
    nnm_dlpack_version version;  /* {1, 0} when produced by nnmod */
    void *manager_ctx;
    void (*deleter)(struct nnm_dlpack_tensor *self);
    uint64_t flags;              /* bit 0: read-only; bit 1: is a copy */
    nnm_tensor_desc dl_tensor;
} nnm_dlpack_tensor;

/* Exports `t` without copying: the returned struct holds a reference to t's
 * storage, dropped when the consumer calls out->deleter(out). */
NNM_API nnm_status nnm_tensor_to_dlpack(nnm_tensor *t, nnm_dlpack_tensor **out);
/* Imports without copying and takes ownership of `src`: its deleter is called
 * when the last nnmod reference goes (also when this call fails). Only major
 * version 1 and devices with a loaded backend are accepted. */
NNM_API nnm_status nnm_tensor_from_dlpack(nnm_ctx *ctx, nnm_dlpack_tensor *src, nnm_tensor **out);

/* ------------------------------------------------------------------------ */
/* Config: the typed map a layer's create reads                              */
/* ------------------------------------------------------------------------ */

/* An empty config. Free with nnm_config_free. */
NNM_API nnm_status nnm_config_new(nnm_config **out);
NNM_API void nnm_config_free(nnm_config *cfg);
/* Setters replace an existing key. Strings and lists are copied. */
NNM_API nnm_status nnm_config_set_int(nnm_config *cfg, const char *key, int64_t v);
NNM_API nnm_status nnm_config_set_float(nnm_config *cfg, const char *key, double v);
NNM_API nnm_status nnm_config_set_bool(nnm_config *cfg, const char *key, int v);
NNM_API nnm_status nnm_config_set_str(nnm_config *cfg, const char *key, const char *v);
NNM_API nnm_status nnm_config_set_ints(nnm_config *cfg, const char *key, const int64_t *v,
                                       size_t n);
NNM_API nnm_status nnm_config_set_floats(nnm_config *cfg, const char *key, const double *v,
                                         size_t n);
/* Every v[i] must be non-NULL. */
NNM_API nnm_status nnm_config_set_strs(nnm_config *cfg, const char *key, const char *const *v,
                                       size_t n);
/* Reading a config back, in insertion order. nnm_config_key returns the key
 * of entry `index` (owned by cfg; NULL past the end) and its enum
 * nnm_config_type in *type (may be NULL). An empty list reads as
 * NNM_CONFIG_INTS. */
NNM_API size_t nnm_config_count(const nnm_config *cfg);
NNM_API const char *nnm_config_key(const nnm_config *cfg, size_t index, int *type);
/* Typed getters: NNM_E_NOT_FOUND when the key is absent, NNM_E_TYPE when it
 * holds another type (an integer reads as a float). Lists and strings are
 * borrowed from cfg and valid until it changes or is freed. */
NNM_API nnm_status nnm_config_get_int(const nnm_config *cfg, const char *key, int64_t *out);
NNM_API nnm_status nnm_config_get_float(const nnm_config *cfg, const char *key, double *out);
NNM_API nnm_status nnm_config_get_bool(const nnm_config *cfg, const char *key, int *out);
NNM_API nnm_status nnm_config_get_str(const nnm_config *cfg, const char *key, const char **out);
NNM_API nnm_status nnm_config_get_ints(const nnm_config *cfg, const char *key, const int64_t **v,
                                       size_t *n);
NNM_API nnm_status nnm_config_get_floats(const nnm_config *cfg, const char *key, const double **v,
                                         size_t *n);
NNM_API nnm_status nnm_config_get_strs(const nnm_config *cfg, const char *key,
                                       const char *const **v, size_t *n);

/* ------------------------------------------------------------------------ */
/* Modules                                                                   */
/* ------------------------------------------------------------------------ */

/* Makes a module of the layer named by `request` (see nnm_layer_find), on the
 * CPU, in training mode. `cfg` may be NULL (empty) and is not kept. The module
 * holds its plugin loaded until it is released. */
NNM_API nnm_status nnm_module_create(nnm_ctx *ctx, const char *request, const nnm_config *cfg,
                                     nnm_module **out);
/* The same on a chosen device: NNM_DEVICE_CPU, or NNM_DEVICE_META (shapes
 * and dtypes, no storage; like PyTorch's device="meta"). Other devices:
 * NNM_E_DEVICE (create on the CPU, then nnm_module_to). */
NNM_API nnm_status nnm_module_create_on(nnm_ctx *ctx, const char *request, const nnm_config *cfg,
                                        nnm_device device, nnm_module **out);
NNM_API void nnm_module_retain(nnm_module *m);
/* Drops a reference; the last one destroys the module, its parameters and
 * buffers, and releases its children. */
NNM_API void nnm_module_release(nnm_module *m);
/* Appends `child` under `name` (NULL: its index, "0", "1", ...). The parent
 * takes its own reference. `child` must have no parent yet (NNM_E_STATE:
 * attaching one module in two places is sharing, which only
 * nnm_module_set_child does, on purpose). A name is any non-empty UTF-8
 * text without '.' and without control characters (C0, DEL, C1), as PyTorch
 * allows ("block1-0", "my head"), unique among the module's children,
 * parameters and buffers; else NNM_E_INVALID (NNM_E_EXISTS when taken). */
NNM_API nnm_status nnm_module_add_child(nnm_module *parent, const char *name, nnm_module *child);
/* model.name = child: replaces the child called `name` in place (same
 * position among the children, as PyTorch keeps a reassigned key's place),
 * or appends `child` when there is none. The old child is let go: it
 * becomes a root (name "", no parent) unless still attached elsewhere, and
 * loses the parent's reference; it keeps its hooks, as does the new child,
 * which also keeps its own training flag and must be on the parent's
 * device. A container that wired its children at finalize (a graph) should
 * be finalized again (nnm_module_finalize). */
NNM_API nnm_status nnm_module_set_child(nnm_module *parent, const char *name, nnm_module *child);
/* Sharing: `child` may already be attached elsewhere (model.b = model.a, or
 * one module in two trees). It is then reachable under each name: walks
 * (named_modules, named_parameters, buffers, num_params, nbytes, device
 * moves, optimizers) visit it and its tensors once, under the first name,
 * like PyTorch's remove_duplicate=True; state dicts list it under every
 * name, as PyTorch's state_dict() does; gradients from every use add up in
 * its parameters' .grad. A manifest has no sharing: nnm_manifest_from_module
 * writes it under each name (rebuilt, they are copies). Cycles are refused
 * (NNM_E_INVALID). nnm_module_name/parent give its first name and parent. */

/* del model.name: removes the child called `name` (NNM_E_NOT_FOUND if none);
 * the others keep their names and order (delattr, not Sequential's
 * renumbering del seq[i]). The removed child is let go as above. */
NNM_API nnm_status nnm_module_del_child(nnm_module *parent, const char *name);

/* THE way to run a module: module(x). Runs global then module forward-pre-hooks,
 * the layer's forward with the call context (training flag, grad mode, device),
 * global then module forward hooks, and profiler events. Inputs are borrowed;
 * each out[i] receives a new reference. On failure every out[i] is NULL and the
 * message names the module path ("layers.3.fc1 (linear): ..."). */
NNM_API nnm_status nnm_module_call(nnm_module *m, nnm_tensor *const *in, uint32_t n_in,
                                   nnm_tensor **out, uint32_t n_out);

/* Names and structure. Strings are owned by the module. */
NNM_API const char *nnm_module_name(const nnm_module *m);  /* "" for a root */
NNM_API const char *nnm_module_type(const nnm_module *m);  /* "linear" */
/* Writes the dotted path from the root ("layers.3.fc1"; "" for a root) like
 * snprintf: returns the length it wanted. */
NNM_API int nnm_module_path(const nnm_module *m, char *buf, size_t cap);
NNM_API nnm_module *nnm_module_parent(const nnm_module *m);  /* borrowed; NULL for a root */
NNM_API uint32_t nnm_module_child_count(const nnm_module *m);
NNM_API nnm_module *nnm_module_child(const nnm_module *m, uint32_t index); /* borrowed */
/* The name of m's child slot `index` ("fc1", "0"), owned by m and valid until
 * that slot is replaced or deleted; NULL past the end. A child shared under
 * two names (model.b = model.a) or attached in two trees has one name per
 * slot, where nnm_module_name gives its first. (Since 0.5.) */
NNM_API const char *nnm_module_child_name(const nnm_module *m, uint32_t index);
/* Finds a descendant by dotted path ("layers.3"); borrowed; NULL if none. */
NNM_API nnm_module *nnm_module_get(const nnm_module *m, const char *path);
NNM_API nnm_ctx *nnm_module_ctx(const nnm_module *m);
/* The config m was created with (a copy the module owns; borrowed). Never
 * NULL for a live module. */
NNM_API const nnm_config *nnm_module_config(const nnm_module *m);
/* The names of m's outputs, when its forward returns a dict rather than a
 * tuple (a graph with config.output_names, like torchvision's segmentation
 * models returning {"out": ..., "aux": ...}): an array of *n names, one per
 * output in call order, owned by m and valid while m lives. NULL, with *n
 * 0, when m's outputs have no names, or m is NULL or no live module. n may
 * be NULL. (Since 0.5; a layer sets them with host->set_output_names.) */
NNM_API const char *const *nnm_module_output_names(const nnm_module *m, uint32_t *n);
/* Lets each container of m's tree (children first) check its children
 * against its config (the layer's optional `finalize`), so a wiring mistake
 * fails here rather than at the first forward. The manifest builder calls it;
 * call it after assembling a tree through the C API. */
NNM_API nnm_status nnm_module_finalize(nnm_module *m);

/* The longest dotted name (module path, parameter or state dict key) in
 * bytes, without the NUL; walks that would build a longer one fail with
 * NNM_E_LIMIT, and manifests are refused for it at parse time. */
#define NNM_NAME_MAX 1023

/* Visitors return NNM_OK to go on; any other status stops the walk and is
 * returned. Names are full dotted names relative to `m`, valid during the call. */
typedef nnm_status (*nnm_module_visit_fn)(void *user, const char *name, nnm_module *m);
typedef nnm_status (*nnm_tensor_visit_fn)(void *user, const char *name, nnm_tensor *t);
/* Pre-order, `m` first with name "" (like named_modules). */
NNM_API nnm_status nnm_module_named_modules(nnm_module *m, nnm_module_visit_fn fn, void *user);
/* Parameters in registration order, own first then each child's (like
 * named_parameters(recurse=True)). Tensors are borrowed. */
NNM_API nnm_status nnm_module_named_parameters(nnm_module *m, nnm_tensor_visit_fn fn, void *user);
/* Buffers, persistent and not. */
NNM_API nnm_status nnm_module_named_buffers(nnm_module *m, nnm_tensor_visit_fn fn, void *user);
/* Calls fn on every child (recursively) then on m itself, like Module.apply. */
NNM_API nnm_status nnm_module_apply(nnm_module *m, nnm_module_visit_fn fn, void *user);
/* Total number of parameter elements (recursive). */
NNM_API int64_t nnm_module_num_params(nnm_module *m);
/* Bytes the parameters and buffers of m's tree hold (or would hold: on the
 * meta device, what a real build allocates), each tensor counted once. 0 for
 * NULL. */
NNM_API uint64_t nnm_module_nbytes(nnm_module *m);
/* Writes the tree like print(model), with parameter counts, like snprintf
 * (returns the length wanted; call with cap 0 to size the buffer). Every
 * line ends in '\n'; a module with parameters of its own has "  # N params"
 * after its line, and a last line "Total params: N" follows the tree: a
 * relu module gives "ReLU()\nTotal params: 0\n", a linear(4, 8) one
 * "Linear(in_features=4, out_features=8, bias=True)  # 40 params\nTotal
 * params: 40\n". */
NNM_API int64_t nnm_module_repr(nnm_module *m, char *buf, size_t cap);

/* Modes. train/eval set the flag on m and all its descendants. */
NNM_API nnm_status nnm_module_train(nnm_module *m, int training);
NNM_API int nnm_module_is_training(const nnm_module *m);
/* Moves every parameter and buffer of m's tree to `device` at once; tensor
 * handles stay the same. Fails with nothing moved if any move fails. To
 * NNM_DEVICE_META the data is dropped; from it, NNM_E_DEVICE (no data). */
NNM_API nnm_status nnm_module_to(nnm_module *m, nnm_device device);
NNM_API nnm_device nnm_module_device(const nnm_module *m);

/* Grad mode, per OS thread and not per context (torch.set_grad_enabled):
 * it affects the calls this thread makes on any context. Returns the
 * previous mode. A new thread starts with grad mode on. */
NNM_API int nnm_grad_set_enabled(int enabled);
NNM_API int nnm_grad_is_enabled(void);

/* ------------------------------------------------------------------------ */
/* Hooks                                                                     */
/* ------------------------------------------------------------------------ */

/* A forward-pre-hook sees the inputs before forward. To replace input i, store
 * a NEW reference in in[i]; the runtime releases the one it replaced. Return
 * non-OK (after nnm_ctx_set_error) to fail the call. */
typedef nnm_status (*nnm_forward_pre_hook_fn)(void *user, nnm_module *m, nnm_tensor **in,
                                              uint32_t n_in);
/* A forward hook sees inputs and outputs after forward; it replaces outputs the
 * same way (store a new reference in out[i]). */
typedef nnm_status (*nnm_forward_hook_fn)(void *user, nnm_module *m, nnm_tensor *const *in,
                                          uint32_t n_in, nnm_tensor **out, uint32_t n_out);

/* Registers a hook; hooks run in registration order, global ones before the
 * module's. *handle (may be NULL if never removed) is owned by the context:
 * it stays valid until the context is destroyed, also after its hook was
 * removed or its module died (see "Hooks, version 2" below for _v2
 * registrations with options, prepend, always_call and destructors). */
NNM_API nnm_status nnm_module_register_forward_pre_hook(nnm_module *m, nnm_forward_pre_hook_fn fn,
                                                        void *user, nnm_hook_handle **handle);
NNM_API nnm_status nnm_module_register_forward_hook(nnm_module *m, nnm_forward_hook_fn fn,
                                                    void *user, nnm_hook_handle **handle);
/* Global hooks fire for every module of ctx (register_module_forward_*_hook). */
NNM_API nnm_status nnm_ctx_register_forward_pre_hook(nnm_ctx *ctx, nnm_forward_pre_hook_fn fn,
                                                     void *user, nnm_hook_handle **handle);
NNM_API nnm_status nnm_ctx_register_forward_hook(nnm_ctx *ctx, nnm_forward_hook_fn fn,
                                                 void *user, nnm_hook_handle **handle);
/* Removes a hook; safe inside any hook, including the one removed. Removing
 * a hook that is already gone (removed, or its module or context died) is a
 * no-op; NULL: no-op. nnm_hook_handle_remove says which happened. A hook
 * removed during a call still runs in that call if its turn has not come,
 * as in PyTorch (see "Hooks, version 2"). */
NNM_API void nnm_hook_remove(nnm_hook_handle *handle);

/* ------------------------------------------------------------------------ */
/* Profiler                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct nnm_profile_event {
    uint32_t struct_size;
    int32_t status;          /* the call's result */
    const char *path;        /* module path, valid during the callback */
    const char *type;        /* layer type */
    uint64_t start_ns;       /* CLOCK_MONOTONIC */
    uint64_t end_ns;
    uint32_t depth;          /* nesting depth of calls; 0 for the outermost */
    uint32_t reserved;
} nnm_profile_event;

typedef void (*nnm_profile_fn)(void *user, const nnm_profile_event *ev);
/* Calls fn after every module call of ctx (NULL fn turns profiling off). */
NNM_API nnm_status nnm_ctx_set_profiler(nnm_ctx *ctx, nnm_profile_fn fn, void *user);

/* ------------------------------------------------------------------------ */
/* Ops (the same ops plugins reach through the host table)                   */
/* ------------------------------------------------------------------------ */

/* Each returns a new tensor through *out and, when grad mode is on and an
 * input requires grad, records the op for autograd. Inputs are borrowed and
 * must share a device. See plugin.h for each op's meaning. */
NNM_API nnm_status nnm_op_unary(nnm_ctx *ctx, int32_t op, nnm_tensor *x, double alpha,
                                nnm_tensor **out);
NNM_API nnm_status nnm_op_binary(nnm_ctx *ctx, int32_t op, nnm_tensor *a, nnm_tensor *b,
                                 nnm_tensor **out);
NNM_API nnm_status nnm_op_linear(nnm_ctx *ctx, nnm_tensor *x, nnm_tensor *w, nnm_tensor *b,
                                 nnm_tensor **out);
NNM_API nnm_status nnm_op_matmul(nnm_ctx *ctx, nnm_tensor *a, nnm_tensor *b, nnm_tensor **out);
NNM_API nnm_status nnm_op_reduce(nnm_ctx *ctx, int32_t op, nnm_tensor *x, const int32_t *dims,
                                 uint32_t n_dims, int keepdim, nnm_tensor **out);
NNM_API nnm_status nnm_op_log_softmax(nnm_ctx *ctx, nnm_tensor *x, nnm_tensor **out);
NNM_API nnm_status nnm_op_nll(nnm_ctx *ctx, nnm_tensor *logp, nnm_tensor *target,
                              int64_t ignore_index, double label_smoothing, int32_t reduction,
                              nnm_tensor **out);
NNM_API nnm_status nnm_op_reshape(nnm_ctx *ctx, nnm_tensor *x, int32_t ndim, const int64_t *shape,
                                  nnm_tensor **out);
/* A new contiguous i64 CPU tensor holding a copy of `data` (NULL: zeros). */
NNM_API nnm_status nnm_tensor_from_i64(nnm_ctx *ctx, int32_t ndim, const int64_t *shape,
                                       const int64_t *data, nnm_tensor **out);

/* ------------------------------------------------------------------------ */
/* Autograd                                                                  */
/* ------------------------------------------------------------------------ */

/* Marks a leaf tensor (one no op produced) as needing gradients. Parameters
 * require grad from creation. f32 only. */
NNM_API nnm_status nnm_tensor_set_requires_grad(nnm_tensor *t, int requires_grad);
NNM_API int nnm_tensor_requires_grad(const nnm_tensor *t);
/* 1 for tensors no recorded op produced. */
NNM_API int nnm_tensor_is_leaf(const nnm_tensor *t);
/* The accumulated gradient (.grad), borrowed; NULL when unset. */
NNM_API nnm_tensor *nnm_tensor_grad(const nnm_tensor *t);
/* Sets .grad (a reference is taken; NULL clears it), like `p.grad = g`. The
 * shape must match. */
NNM_API nnm_status nnm_tensor_set_grad(nnm_tensor *t, nnm_tensor *grad);
/* A new tensor sharing t's storage, outside any graph (t.detach()). */
NNM_API nnm_status nnm_tensor_detach(nnm_tensor *t, nnm_tensor **out);

/* Computes gradients of `root` with respect to every leaf that requires grad
 * and adds them into their .grad (loss.backward()). `grad` is d(out)/d(root),
 * required unless root has one element (then it is 1). The graph is freed
 * unless retain_graph; a second backward through a freed graph fails with
 * NNM_E_STATE. Runs with grad mode off. */
NNM_API nnm_status nnm_backward(nnm_tensor *root, nnm_tensor *grad, int retain_graph);

/* dec.weight = enc.weight: ties m's own parameter `name` to `param`, a
 * parameter of any module of the same context with the same shape, dtype
 * and device (NNM_E_SHAPE/NNM_E_DEVICE otherwise). From then on there is one
 * tensor: m's layer computes with param's memory, the state dict lists it
 * under both names, named_parameters and optimizers see it once, and the
 * gradients of both uses add up in param's .grad. Freeze or thaw a tied
 * parameter through nnm_module_requires_grad_ (which keeps both uses in
 * step). Tying a parameter back to its own original tensor unties it. */
NNM_API nnm_status nnm_module_set_parameter(nnm_module *m, const char *name, nnm_tensor *param);

/* Module.requires_grad_(flag): sets requires_grad on every parameter of
 * m's tree (freezing a backbone: nnm_module_requires_grad_(backbone, 0)). A
 * frozen parameter gets no .grad from backward, so optimizers skip it. */
NNM_API nnm_status nnm_module_requires_grad_(nnm_module *m, int requires_grad);

/* Sets every parameter's .grad of m's tree to none (zero_grad(set_to_none=True)). */
NNM_API nnm_status nnm_module_zero_grad(nnm_module *m);

/* Full backward hooks (register_full_backward_pre_hook / _hook). The pre-hook
 * sees the gradients of the module's outputs and may replace grad_out[i] (store
 * a new reference); the hook sees the gradients of its inputs and may replace
 * them the same way. n_in is the number of inputs of the call, as PyTorch's
 * len(grad_input), also when no input needs a gradient: then every
 * grad_in[i] is NULL and must stay NULL (else NNM_E_HOOK, as PyTorch
 * raises). When some input needs one, an input that does not gets f32 zeros
 * of its shape, as PyTorch's materialized gradients (what the hook leaves
 * there goes nowhere; PyTorch's zeros keep an integer input's dtype). A replaced gradient must be f32 on the
 * module's device with its tensor's shape or one that sums down to it
 * (then it is summed, as PyTorch's validate_outputs); anything else fails
 * the backward (NNM_E_SHAPE, NNM_E_DTYPE, NNM_E_DEVICE) naming the module
 * and the index. They fire during nnm_backward for calls
 * made while grad mode was on. Registration options, global backward hooks
 * and handles: "Hooks, version 2" below. */
typedef nnm_status (*nnm_backward_pre_hook_fn)(void *user, nnm_module *m, nnm_tensor **grad_out,
                                               uint32_t n_out);
typedef nnm_status (*nnm_backward_hook_fn)(void *user, nnm_module *m, nnm_tensor **grad_in,
                                           uint32_t n_in, nnm_tensor *const *grad_out,
                                           uint32_t n_out);
NNM_API nnm_status nnm_module_register_full_backward_pre_hook(nnm_module *m,
                                                              nnm_backward_pre_hook_fn fn,
                                                              void *user, nnm_hook_handle **handle);
NNM_API nnm_status nnm_module_register_full_backward_hook(nnm_module *m, nnm_backward_hook_fn fn,
                                                          void *user, nnm_hook_handle **handle);

/* ------------------------------------------------------------------------ */
/* Gradient-ready hooks (register_post_accumulate_grad_hook)                 */
/* ------------------------------------------------------------------------ */

/* Called during nnm_backward once the last gradient of that backward has
 * been added into t's .grad (t a leaf that requires grad: a parameter, or a
 * tensor marked with nnm_tensor_set_requires_grad), with t borrowed; t's
 * .grad (nnm_tensor_grad) holds the sum. Returning non-OK (after
 * nnm_ctx_set_error) fails the backward. A leaf that feeds the graph through
 * several edges (a module called twice, x * x) gets its hook once per
 * backward, after its last contribution, as PyTorch 2.x's (not in
 * PyTorch 1.13, which has no such hook). */
typedef nnm_status (*nnm_grad_hook_fn)(void *user, nnm_tensor *t);
/* Registers a hook on t; hooks run in registration order. *handle (may be
 * NULL) is owned by the context, as those of the first-version hook
 * registrations (see "Hooks, version 2" below): it may be removed with
 * nnm_hook_remove and freed early with nnm_hook_handle_free. The hooks die
 * with t. NNM_E_INVALID for a NULL t or fn; NNM_E_STATE for a non-leaf. */
NNM_API nnm_status nnm_tensor_register_post_accumulate_grad_hook(nnm_tensor *t,
                                                                 nnm_grad_hook_fn fn, void *user,
                                                                 nnm_hook_handle **handle);

/* ------------------------------------------------------------------------ */
/* Communicators: collectives between processes (docs/distributed.md)        */
/* ------------------------------------------------------------------------ */

typedef struct nnm_comm nnm_comm;
/* One collective in flight; nnm_comm_wait ends it. */
typedef struct nnm_comm_request nnm_comm_request;

/* The timeout when nnm_comm_options gives none; the environment variable
 * NNM_COMM_TIMEOUT (seconds) overrides both. */
#define NNM_COMM_DEFAULT_TIMEOUT_S 300.0

typedef struct nnm_comm_options {
    uint32_t struct_size; /* sizeof(nnm_comm_options) */
    uint32_t reserved;
    double timeout_s;     /* how long one collective waits for its peers; 0: default */
} nnm_comm_options;

/* Joins the job this process was launched in, through the comm plugin named
 * by `request` ("mpi", "nccl", "mpi@^1"; see nnm_layer_find for the forms).
 * opts may be NULL. NNM_E_NOT_FOUND when no such comm plugin is loaded,
 * NNM_E_UNSUPPORTED when the process was not launched for it (e.g. not under
 * mpirun), NNM_E_NO_DEVICE when its device is absent. Free with
 * nnm_comm_free. */
NNM_API nnm_status nnm_comm_new(nnm_ctx *ctx, const char *request, const nnm_comm_options *opts,
                                nnm_comm **out);
/* Leaves the job. Requests not yet waited on keep the communicator alive
 * until they are. NULL: no-op. */
NNM_API void nnm_comm_free(nnm_comm *c);
/* This process's rank (-1 for NULL), the number of processes (0 for NULL),
 * and the device its buffers live on. */
NNM_API int32_t nnm_comm_rank(const nnm_comm *c);
NNM_API int32_t nnm_comm_world_size(const nnm_comm *c);
NNM_API nnm_device nnm_comm_device(const nnm_comm *c);

/* Asynchronous collectives: each starts the collective and hands out a
 * request through *out (NULL on failure: nothing started). The tensors are
 * retained until the request is waited on and must not be read or written
 * before then. Every rank must start the same collectives in the same order.
 * Tensors must be contiguous and on the communicator's device. */
/* In place: t = the sum of t over all ranks. f32. */
NNM_API nnm_status nnm_comm_all_reduce_start(nnm_comm *c, nnm_tensor *t, nnm_comm_request **out);
/* In place: t = rank root's t. Any dtype. */
NNM_API nnm_status nnm_comm_broadcast_start(nnm_comm *c, nnm_tensor *t, int32_t root,
                                            nnm_comm_request **out);
/* out, of world_size times in's elements and in's dtype, receives every
 * rank's `in` in rank order. */
NNM_API nnm_status nnm_comm_all_gather_start(nnm_comm *c, nnm_tensor *in, nnm_tensor *out,
                                             nnm_comm_request **req);
NNM_API nnm_status nnm_comm_barrier_start(nnm_comm *c, nnm_comm_request **out);
/* Waits for the collective (at most the communicator's timeout: then
 * NNM_E_TIMEOUT, naming this rank and the ranks that did not answer) and
 * frees the request, also on failure. After a failure the communicator is
 * broken: every later collective fails. NULL: NNM_E_INVALID. */
NNM_API nnm_status nnm_comm_wait(nnm_comm_request *req);
/* The blocking forms: start, then wait. */
NNM_API nnm_status nnm_comm_all_reduce(nnm_comm *c, nnm_tensor *t);
NNM_API nnm_status nnm_comm_broadcast(nnm_comm *c, nnm_tensor *t, int32_t root);
NNM_API nnm_status nnm_comm_all_gather(nnm_comm *c, nnm_tensor *in, nnm_tensor *out);
NNM_API nnm_status nnm_comm_barrier(nnm_comm *c);

/* ------------------------------------------------------------------------ */
/* Distributed data parallel (PyTorch's DistributedDataParallel)             */
/* ------------------------------------------------------------------------ */

typedef struct nnm_ddp nnm_ddp;

/* Flags for nnm_ddp_options.flags. */
#define NNM_DDP_FIND_UNUSED_PARAMETERS 1u /* find_unused_parameters=True */
#define NNM_DDP_NO_BROADCAST_BUFFERS 2u   /* broadcast_buffers=False */

#define NNM_DDP_DEFAULT_BUCKET_BYTES (25u << 20)     /* bucket_cap_mb=25 */
#define NNM_DDP_DEFAULT_FIRST_BUCKET_BYTES (1u << 20) /* the first bucket: 1 MiB */

typedef struct nnm_ddp_options {
    uint32_t struct_size;        /* sizeof(nnm_ddp_options) */
    uint32_t flags;              /* NNM_DDP_* */
    uint64_t bucket_bytes;       /* 0: NNM_DDP_DEFAULT_BUCKET_BYTES */
    uint64_t first_bucket_bytes; /* 0: NNM_DDP_DEFAULT_FIRST_BUCKET_BYTES */
} nnm_ddp_options;

/* Wraps m for data-parallel training over c: broadcasts m's parameters and
 * buffers from rank 0 (so every rank starts identical), groups the
 * parameters that require grad into buckets in reverse registration order
 * (a bucket closes once it holds at least its cap: first_bucket_bytes for
 * the first, bucket_bytes after), and hooks every parameter's gradient-ready
 * event: during nnm_backward, a bucket whose gradients are all ready starts
 * its all-reduce at once, and the backward waits for every bucket before it
 * returns, leaving each .grad averaged over the ranks. m and c are retained
 * (c must outlive nothing: the wrapper keeps it). opts may be NULL. Every
 * rank must wrap the same architecture. Free with nnm_ddp_free. The
 * gradients live in the buckets (PyTorch's gradient_as_bucket_view): from
 * the first backward on, each parameter's .grad is a view of its slice of a
 * bucket, reduced in place (a .grad set by the user is copied into the
 * bucket and replaced by the view); such .grads stay valid after
 * nnm_ddp_free. */
NNM_API nnm_status nnm_ddp_new(nnm_module *m, nnm_comm *c, const nnm_ddp_options *opts,
                               nnm_ddp **out);
/* NULL: no-op. Unhooks the parameters. */
NNM_API void nnm_ddp_free(nnm_ddp *d);
/* The wrapped module (borrowed). */
NNM_API nnm_module *nnm_ddp_module(const nnm_ddp *d);
/* The forward of the wrapped module, as nnm_module_call: first broadcasts the
 * buffers from rank 0 (unless NNM_DDP_NO_BROADCAST_BUFFERS), then, with
 * NNM_DDP_FIND_UNUSED_PARAMETERS, marks the parameters the outputs do not
 * depend on as ready (their gradient counts as zero). Fails with
 * NNM_E_STATE, naming the parameters, when the previous backward left a
 * bucket unreduced (a parameter got no gradient without
 * NNM_DDP_FIND_UNUSED_PARAMETERS). */
NNM_API nnm_status nnm_ddp_call(nnm_ddp *d, nnm_tensor *const *in, uint32_t n_in,
                                nnm_tensor **out, uint32_t n_out);
/* no_sync: with sync 0, the backwards of the following calls only
 * accumulate gradients locally; the first backward after sync is set back to
 * 1 reduces the accumulated gradients. Returns the previous setting (-1 for
 * NULL). */
NNM_API int nnm_ddp_set_sync(nnm_ddp *d, int sync);

/* Statistics of the last synchronised backward, for benchmarks. */
typedef struct nnm_ddp_stats {
    uint32_t struct_size;        /* set by the caller */
    uint32_t n_buckets;
    uint64_t bytes_reduced;      /* per step, all buckets */
    double comm_s;               /* from the first bucket's start to the last one's end */
    double exposed_s;            /* of that, the wall time from the backward's last gradient
                                  * ready (the last bucket about to start) to the end of the
                                  * waits: what the backward still spent on communication */
} nnm_ddp_stats;
NNM_API nnm_status nnm_ddp_stats_get(const nnm_ddp *d, nnm_ddp_stats *out);

/* Hooks, version 2: options, prepend, always_call, user-data destructors,  */
/* and handles that are safe to use in any order                             */
/* ------------------------------------------------------------------------ */

/* Every kind of hook has a registration that takes nnm_hook_options: the
 * _v2 of each first-version function, and the global backward hooks, which
 * are new (PyTorch's names in brackets):
 *   forward pre-hook  nnm_module_register_forward_pre_hook_v2 [register_forward_pre_hook]
 *                     nnm_ctx_register_forward_pre_hook_v2 [register_module_forward_pre_hook]
 *   forward hook      nnm_module_register_forward_hook_v2 [register_forward_hook]
 *                     nnm_ctx_register_forward_hook_v2 [register_module_forward_hook]
 *   backward pre-hook nnm_module_register_full_backward_pre_hook_v2
 *                     nnm_ctx_register_full_backward_pre_hook
 *   backward hook     nnm_module_register_full_backward_hook_v2
 *                     nnm_ctx_register_full_backward_hook
 *
 * Order. Global hooks run before the module's, as in PyTorch. Within one
 * list hooks run in registration order, except that NNM_HOOK_PREPEND puts a
 * hook before every hook already on its list (PyTorch's prepend=True; nnmod
 * offers it for the global lists too).
 *
 * Changes during a call (as PyTorch, which iterates over a snapshot of its
 * hook dicts): a call runs the hooks that were registered when it started
 * iterating over a list. A hook registered during the call waits for the next
 * call; a hook removed during the call (by itself, another hook or the
 * forward) still runs in that call if its turn has not come yet, and never in
 * a later one. Backward hooks (pre-hooks and hooks, global and the module's)
 * are captured when the call's forward starts, as PyTorch's _call_impl does:
 * the backward of that call runs the hooks that were registered then, so a
 * backward hook removed between a forward and its backward still runs in
 * that backward (and in every backward of that graph, with retain_graph),
 * and one registered in between does not.
 *
 * always_call (PyTorch 2.x, forward hooks only). A forward hook registered
 * with NNM_HOOK_ALWAYS_CALL also runs when the call fails after its hooks
 * started: in a forward pre-hook, the input checks, forward, or an earlier
 * forward hook. It runs once per call: not again if it already ran before the
 * failure. On that failure path it sees the inputs as the pre-hooks left them
 * and out[i] NULL for every output forward did not produce; its status is
 * ignored, outputs it stores are released, and the call returns the first
 * failure with its message unchanged. A call refused before any hook runs
 * (a dead module, more inputs or outputs than the layer takes) runs none.
 *
 * user_free. When opts->user_free is set it is called exactly once, with
 * `user`, when the runtime drops the hook: when the hook is removed (if its
 * list is being run at that moment, as soon as that run ends, so a hook may
 * remove itself; for a backward hook that an autograd graph captured, once
 * that graph has run its last backward or is freed), when its module is
 * destroyed, or, for a global hook, at nnm_ctx_free. It is the place where a binding frees its closure. It must
 * not use the hook's module. If registration fails, user_free is not called
 * and `user` stays the caller's.
 *
 * Handles. A _v2 registration with handle != NULL gives the caller a new
 * nnm_hook_handle that the CALLER owns: free it with nnm_hook_handle_free,
 * exactly once, at any time: before or after removing the hook, and before
 * or after the hook's module or context is gone (the handle does not keep
 * either alive, and they do not free it). Freeing a handle never removes its
 * hook; a hook with no handle lives until its module dies (or, global, until
 * nnm_ctx_free). The first-version registrations (without _v2) hand out
 * handles owned by the CONTEXT instead: each stays valid until the context is
 * destroyed (after nnm_ctx_free and the release of its last module and
 * tensor), so removing it after its module died, or twice, is harmless; they
 * may be freed earlier with nnm_hook_handle_free. Code that registers hooks
 * in a loop should use _v2 and free its handles.
 *
 * Threads. Handles follow their context's rule: one thread at a time, the
 * same lock a binding holds for the context (a finalizer that frees or
 * removes a handle must take it). Once the hook is gone a handle touches
 * nothing but itself. */

/* Flags for nnm_hook_options.flags. */
#define NNM_HOOK_PREPEND 1u     /* run before the hooks already on the list */
#define NNM_HOOK_ALWAYS_CALL 2u /* forward hooks only: run even when the call fails */

typedef struct nnm_hook_options {
    uint32_t struct_size;          /* sizeof(nnm_hook_options) */
    uint32_t flags;                /* NNM_HOOK_*; unknown bits are refused (NNM_E_INVALID) */
    void (*user_free)(void *user); /* (optional) destructor of `user`; see above */
} nnm_hook_options;

/* Registrations. fn must not be NULL; opts may be NULL (append, no flags, no
 * destructor); handle may be NULL (no handle is made). NNM_E_INVALID for a
 * dead module, a NULL ctx or fn, unknown flags, or NNM_HOOK_ALWAYS_CALL on a
 * hook that is not a forward hook; *handle is NULL on failure. */
NNM_API nnm_status nnm_module_register_forward_pre_hook_v2(nnm_module *m, nnm_forward_pre_hook_fn fn,
                                                           void *user, const nnm_hook_options *opts,
                                                           nnm_hook_handle **handle);
NNM_API nnm_status nnm_module_register_forward_hook_v2(nnm_module *m, nnm_forward_hook_fn fn,
                                                       void *user, const nnm_hook_options *opts,
                                                       nnm_hook_handle **handle);
NNM_API nnm_status nnm_module_register_full_backward_pre_hook_v2(nnm_module *m,
                                                                 nnm_backward_pre_hook_fn fn,
                                                                 void *user,
                                                                 const nnm_hook_options *opts,
                                                                 nnm_hook_handle **handle);
NNM_API nnm_status nnm_module_register_full_backward_hook_v2(nnm_module *m, nnm_backward_hook_fn fn,
                                                             void *user, const nnm_hook_options *opts,
                                                             nnm_hook_handle **handle);
NNM_API nnm_status nnm_ctx_register_forward_pre_hook_v2(nnm_ctx *ctx, nnm_forward_pre_hook_fn fn,
                                                        void *user, const nnm_hook_options *opts,
                                                        nnm_hook_handle **handle);
NNM_API nnm_status nnm_ctx_register_forward_hook_v2(nnm_ctx *ctx, nnm_forward_hook_fn fn,
                                                    void *user, const nnm_hook_options *opts,
                                                    nnm_hook_handle **handle);
/* Global full backward hooks (register_module_full_backward_pre_hook /
 * register_module_full_backward_hook): they fire for every module of ctx
 * called while grad mode was on, before the module's own. */
NNM_API nnm_status nnm_ctx_register_full_backward_pre_hook(nnm_ctx *ctx, nnm_backward_pre_hook_fn fn,
                                                           void *user, const nnm_hook_options *opts,
                                                           nnm_hook_handle **handle);
NNM_API nnm_status nnm_ctx_register_full_backward_hook(nnm_ctx *ctx, nnm_backward_hook_fn fn,
                                                       void *user, const nnm_hook_options *opts,
                                                       nnm_hook_handle **handle);

/* Removes the hook (handle.remove()). NNM_OK when this call removed it;
 * NNM_E_STATE when it was already gone (removed before, or its module or
 * context died): a harmless no-op, and no message is set, so a finalizer
 * never overwrites the context's last error. NNM_E_INVALID for NULL. Safe
 * inside any hook, including the one removed. The handle stays valid. */
NNM_API nnm_status nnm_hook_handle_remove(nnm_hook_handle *handle);
/* 1 while the handle's hook is registered, 0 once it is gone (or for NULL). */
NNM_API int nnm_hook_handle_is_live(const nnm_hook_handle *handle);
/* Frees a handle (its hook, if any, stays registered). NULL is a no-op. After
 * this call the handle must not be used. */
NNM_API void nnm_hook_handle_free(nnm_hook_handle *handle);

/* ------------------------------------------------------------------------ */
/* Optimizers                                                                */
/* ------------------------------------------------------------------------ */

typedef struct nnm_optim nnm_optim;

typedef struct nnm_sgd_options {
    uint32_t struct_size;       /* sizeof(nnm_sgd_options) */
    int32_t nesterov;
    double lr, momentum, dampening, weight_decay;
} nnm_sgd_options;

typedef struct nnm_adam_options {
    uint32_t struct_size;       /* sizeof(nnm_adam_options) */
    int32_t amsgrad;
    int32_t decoupled;          /* 1: AdamW (decoupled weight decay) */
    int32_t reserved;
    double lr, beta1, beta2, eps, weight_decay;
} nnm_adam_options;

/* An optimizer over every parameter of m's tree (one group, the options'
 * hyper-parameters). It holds a reference on m. NNM_E_INVALID for an empty
 * parameter list or invalid options (lr < 0, betas outside [0, 1), ...). */
NNM_API nnm_status nnm_optim_sgd_new(nnm_module *m, const nnm_sgd_options *opts, nnm_optim **out);
NNM_API nnm_status nnm_optim_adam_new(nnm_module *m, const nnm_adam_options *opts, nnm_optim **out);
NNM_API void nnm_optim_free(nnm_optim *opt);
/* Moves the parameters whose dotted name starts with `prefix` into a new
 * group with its own lr and weight decay (the other hyper-parameters are the
 * optimizer's). Returns the group's index through *group (may be NULL).
 * Must be called before the first step. */
NNM_API nnm_status nnm_optim_add_group(nnm_optim *opt, const char *prefix, double lr,
                                       double weight_decay, uint32_t *group);
NNM_API uint32_t nnm_optim_group_count(const nnm_optim *opt);
NNM_API nnm_status nnm_optim_set_lr(nnm_optim *opt, uint32_t group, double lr);
NNM_API double nnm_optim_get_lr(const nnm_optim *opt, uint32_t group);
/* One update of every parameter that has a .grad (others are skipped, as in
 * PyTorch). */
NNM_API nnm_status nnm_optim_step(nnm_optim *opt);
/* Sets the .grad of every parameter of the optimizer to none. */
NNM_API nnm_status nnm_optim_zero_grad(nnm_optim *opt);
/* Visits the optimizer's state tensors, borrowed, by name:
 * "<param>.momentum_buffer", "<param>.exp_avg", "<param>.exp_avg_sq",
 * "<param>.max_exp_avg_sq", and "<param>.step" (a [1] f32 tensor). */
NNM_API nnm_status nnm_optim_state(nnm_optim *opt, nnm_tensor_visit_fn fn, void *user);

/* ------------------------------------------------------------------------ */
/* safetensors files                                                         */
/* ------------------------------------------------------------------------ */

typedef struct nnm_safetensors nnm_safetensors;

/* Limits of the reader (the format's reference values). */
#define NNM_SAFETENSORS_MAX_HEADER 100000000u /* header bytes */

/* One tensor of a safetensors file, as nnm_safetensors_entry describes it. */
typedef struct nnm_st_entry {
    uint32_t struct_size;       /* set by the caller */
    nnm_dtype dtype;            /* F32 -> {FLOAT,32}, BF16 -> {BFLOAT,16}, BOOL -> {BOOL,8}, ... */
    const char *name;           /* owned by the file handle */
    const char *dtype_name;     /* "F32", "BF16", ... (static) */
    int32_t ndim;
    const int64_t *shape;       /* owned by the file handle */
    const void *data;           /* into the mapping; valid until close */
    uint64_t nbytes;
} nnm_st_entry;

/* Opens and validates a file with mmap (the header is checked in full before
 * anything is returned; data is not copied). On failure *out is NULL and the
 * message (on ctx) says what is wrong and where. Close with
 * nnm_safetensors_close. */
NNM_API nnm_status nnm_safetensors_open(nnm_ctx *ctx, const char *path, nnm_safetensors **out);
NNM_API void nnm_safetensors_close(nnm_safetensors *st);
/* Entries in file (offset) order. */
NNM_API uint32_t nnm_safetensors_count(const nnm_safetensors *st);
NNM_API nnm_status nnm_safetensors_entry(const nnm_safetensors *st, uint32_t index, nnm_st_entry *out);
/* Finds an entry by name; NNM_E_NOT_FOUND if absent. */
NNM_API nnm_status nnm_safetensors_find(const nnm_safetensors *st, const char *name, nnm_st_entry *out);
/* __metadata__ values, string to string. Count, then key/value by index
 * (pointers owned by the handle). */
NNM_API uint32_t nnm_safetensors_metadata_count(const nnm_safetensors *st);
NNM_API nnm_status nnm_safetensors_metadata(const nnm_safetensors *st, uint32_t index,
                                            const char **key, const char **value);

/* A key/value pair of user metadata for the writers. */
typedef struct nnm_kv {
    const char *key;
    const char *value;
} nnm_kv;

/* Writes tensors (any device; copied to the host as needed) to `path`
 * atomically: a temp file in the same directory, fsync, rename, fsync of the
 * directory. A crash at any moment leaves the old file or the new one. Names
 * must be unique. The header is padded to 8 bytes; __metadata__ gets the user
 * pairs plus "nnmod_version". */
NNM_API nnm_status nnm_safetensors_write(nnm_ctx *ctx, const char *path, uint32_t n,
                                         const char *const *names, nnm_tensor *const *tensors,
                                         uint32_t n_meta, const nnm_kv *meta);

/* ------------------------------------------------------------------------ */
/* State dicts                                                               */
/* ------------------------------------------------------------------------ */

/* Saves every parameter and persistent buffer of m under its dotted name
 * (exactly PyTorch's state_dict keys) to a safetensors file, atomically.
 * __metadata__ gets the pairs in `meta` (n_meta of them; NULL when 0),
 * "nnmod_version", and, for a root built by nnm_manifest_build, the
 * manifest's hash as "nnmod_manifest_sha256". */
NNM_API nnm_status nnm_module_save(nnm_module *m, const char *path, uint32_t n_meta,
                                   const nnm_kv *meta);

/* What load found that did not fit (PyTorch's _IncompatibleKeys, plus shape
 * mismatches). Owned by the caller: free with nnm_load_report_free. */
typedef struct nnm_load_report {
    uint32_t struct_size;           /* set by the library: sizeof(nnm_load_report) */
    uint32_t n_missing;
    const char *const *missing;     /* keys the module has and the file lacks */
    uint32_t n_unexpected;
    const char *const *unexpected;  /* keys the file has and the module lacks */
    uint32_t n_mismatched;
    const char *const *mismatched;  /* "key: file [2, 3] vs module [3, 2]" (or dtype) */
} nnm_load_report;

/* Loads a state dict from a safetensors file into m's parameters and
 * persistent buffers, onto m's device (F32 converted from F16/BF16/F64 as
 * needed). A key whose shape (or dtype) does not fit fails with NNM_E_SHAPE
 * and loads nothing, strict or not, as PyTorch raises "size mismatch" even
 * with strict=False. strict: a missing or unexpected key also fails
 * (NNM_E_NOT_FOUND) and changes nothing. Not strict: when every shape fits,
 * matching keys load and missing/unexpected ones are reported. report may be
 * NULL; it is filled on success and also when the load was refused for keys
 * that do not fit (the message holds the first few; the report every one);
 * on other failures *report is NULL. */
NNM_API nnm_status nnm_module_load(nnm_module *m, const char *path, int strict,
                                   nnm_load_report **report);
NNM_API void nnm_load_report_free(nnm_load_report *report);

/* In-memory state dicts: name -> tensor, in insertion order, like the
 * OrderedDict of PyTorch's state_dict(); a tensor may sit under several
 * names. Free with nnm_state_dict_free (NULL: no-op). */
typedef struct nnm_state_dict nnm_state_dict;
NNM_API nnm_status nnm_state_dict_new(nnm_ctx *ctx, nnm_state_dict **out);
NNM_API void nnm_state_dict_free(nnm_state_dict *sd);
/* sd[name] = t: takes a reference on t (of sd's context); replaces the
 * tensor of an existing name, keeping its place. Names are 1 to
 * NNM_NAME_MAX bytes. */
NNM_API nnm_status nnm_state_dict_set(nnm_state_dict *sd, const char *name, nnm_tensor *t);
NNM_API uint32_t nnm_state_dict_count(const nnm_state_dict *sd); /* 0 for NULL */
/* Entry `index`: its name (owned by sd) and tensor (borrowed); either
 * pointer may be NULL. NNM_E_NOT_FOUND past the end. */
NNM_API nnm_status nnm_state_dict_entry(const nnm_state_dict *sd, uint32_t index, const char **name,
                                        nnm_tensor **t);
/* The tensor under `name` (borrowed), or NULL. */
NNM_API nnm_tensor *nnm_state_dict_get(const nnm_state_dict *sd, const char *name);
/* m.state_dict(): every parameter and persistent buffer of m's tree under
 * its dotted key (the keys of nnm_module_save), as tensors that share the
 * module's storage and carry no autograd (PyTorch's are detached the same
 * way): writing into one writes into the module. A new dict in *out. */
NNM_API nnm_status nnm_module_state_dict(nnm_module *m, nnm_state_dict **out);
/* m.load_state_dict(sd, strict): the rules of nnm_module_load (a size
 * mismatch refused strict or not, nothing loaded on a refusal, the same
 * report), reading each entry from its tensor (any device; a strided one
 * must be f32; a meta one is refused). Data is copied: sd is not kept. */
NNM_API nnm_status nnm_module_load_state_dict(nnm_module *m, const nnm_state_dict *sd, int strict,
                                              nnm_load_report **report);

/* ------------------------------------------------------------------------ */
/* Checkpoints: module + optimizer state + user metadata, for resuming       */
/* ------------------------------------------------------------------------ */

/* Writes one safetensors file, atomically: m's state dict under its own keys,
 * opt's state (may be NULL) under "optim.<param key>.<state>" (exp_avg,
 * momentum_buffer, step, ...; <param key> is the parameter's state dict key
 * in m, so opt may be over m or any part of it, but every one of its
 * parameters must be in m), the optimizer's kind, hyper-parameters, groups
 * (each group's lr, weight decay and parameter keys) and exact step counts as
 * JSON in __metadata__ "nnmod_optim", and the user pairs `meta` (NULL keys or
 * values and keys starting with "nnmod" are refused: NNM_E_INVALID, nothing
 * written). manifest (may be NULL) adds its hash as "nnmod_manifest_sha256";
 * with NULL, a root built by nnm_manifest_build records the hash of the
 * manifest it was built from. Nothing is borrowed past the call. */
NNM_API nnm_status nnm_checkpoint_save(const char *path, nnm_module *m, nnm_optim *opt,
                                       const nnm_manifest *manifest, uint32_t n_meta,
                                       const nnm_kv *meta);
/* Restores what nnm_checkpoint_save wrote into m and opt, so that training
 * resumes exactly as if never interrupted. Strict on the module's keys (a
 * missing or unexpected key: NNM_E_NOT_FOUND; a shape or dtype that does not
 * fit: NNM_E_SHAPE). The optimizer must be of the same kind (sgd, adam, adamw;
 * else NNM_E_INVALID) over the same parameters, in the same groups (add them
 * before loading); its hyper-parameters (each group's lr and weight decay,
 * momentum, betas, ...), step counts and state are replaced by the file's: a
 * parameter without state in the file has none after (its next step is a
 * first step), whether or not opt has stepped before. opt may be NULL: the
 * weights alone load and the optimizer's entries are ignored. Everything is
 * checked before anything changes, so nothing changes on failure (only a copy
 * to a device failing halfway can leave m partly loaded; the message says so).
 * The user metadata can be read with nnm_safetensors_open/_metadata. */
NNM_API nnm_status nnm_checkpoint_load(const char *path, nnm_module *m, nnm_optim *opt);

/* Frees memory the library handed over with malloc (nnm_manifest_write's
 * buffer). NULL is a no-op. */
NNM_API void nnm_free(void *p);

/* ------------------------------------------------------------------------ */
/* Manifests (docs/manifest.md)                                              */
/* ------------------------------------------------------------------------ */

/* nnm_manifest: a parsed, validated model description: plugins with version
 * ranges, the module tree with configs, optional weights. Immutable once
 * parsed, except for nnm_manifest_set_weights. */

enum nnm_manifest_format {
    NNM_MANIFEST_AUTO = 0,    /* reading: sniffed from the first byte; writing: from
                               * the file name (.json is JSON, anything else msgpack) */
    NNM_MANIFEST_MSGPACK = 1,
    NNM_MANIFEST_JSON = 2
};

/* Bounds on untrusted documents. Any zero field takes its default. */
typedef struct nnm_manifest_limits {
    uint32_t struct_size;   /* sizeof(nnm_manifest_limits) */
    uint32_t max_depth;     /* nesting of maps and arrays; default 32, which is
                             * also the most: msgpack-c unpacks no deeper, and
                             * JSON takes what its msgpack twin could */
    uint64_t max_bytes;     /* document size; default 16 MiB */
    uint64_t max_nodes;     /* values of any kind; default 1,000,000 */
    uint64_t max_modules;   /* modules in the tree; default 100,000 */
    /* (appended in 0.3) bytes of parameters and buffers a real build may
     * allocate, summed over the tree; default 16 GiB. Checked on the meta
     * device before anything is allocated. */
    uint64_t max_param_bytes;
} nnm_manifest_limits;

#define NNM_MANIFEST_DEFAULT_MAX_DEPTH 32u
#define NNM_MANIFEST_DEFAULT_MAX_BYTES (16u << 20)
#define NNM_MANIFEST_DEFAULT_MAX_NODES 1000000u
#define NNM_MANIFEST_DEFAULT_MAX_MODULES 100000u
#define NNM_MANIFEST_DEFAULT_MAX_PARAM_BYTES ((uint64_t)16 << 30)

/* Parses and validates a document against schema v1: the header, plugin
 * requests (each resolved against ctx's loaded plugins), the module tree
 * (names, types, config values, each layer's declared config schema), weights.
 * Every error message starts with the path inside the document
 * ("root.children[2].config.out_features: expected integer, got string").
 * `data` is not kept. base_dir (NULL: the current directory) is where a
 * relative weights path is resolved. limits may be NULL (defaults). */
NNM_API nnm_status nnm_manifest_parse(nnm_ctx *ctx, const void *data, size_t len, int format,
                                      const nnm_manifest_limits *limits, const char *base_dir,
                                      nnm_manifest **out);
/* Reads a file (refusing one over limits->max_bytes before reading it) and
 * parses it with base_dir = the file's directory. Its messages, and those of
 * nnm_manifest_build for it, start with the file's path. */
NNM_API nnm_status nnm_manifest_load(nnm_ctx *ctx, const char *path, int format,
                                     const nnm_manifest_limits *limits, nnm_manifest **out);
/* NULL is a no-op. */
NNM_API void nnm_manifest_free(nnm_manifest *mf);

/* Flags for nnm_manifest_build. */
#define NNM_BUILD_NO_WEIGHTS 1u   /* leave parameters as the layers initialised them */
#define NNM_BUILD_META 2u         /* build on NNM_DEVICE_META: shapes, no storage, no
                                   * weights (what validation needs; cannot be run) */

/* Builds the module tree the manifest describes (a new root; release it with
 * nnm_module_release; it remembers the manifest's hash for nnm_module_save),
 * then finalizes it (nnm_module_finalize) and, unless
 * NNM_BUILD_NO_WEIGHTS, loads the weights it names: the file (which must be
 * a regular file) has its sha256 checked first when the manifest gives one,
 * and the load is strict. On failure *out is NULL and nothing is left behind.
 *
 * Every build is validated the same way first: the tree is built on the meta
 * device (no parameter memory), each parameter's and buffer's dotted name is
 * checked against NNM_NAME_MAX and their total bytes against
 * limits.max_param_bytes (NNM_E_LIMIT, naming the document path, before
 * anything is allocated). With NNM_BUILD_META that meta tree is the result:
 * it can be inspected, counted and described, not run. */
NNM_API nnm_status nnm_manifest_build(const nnm_manifest *mf, uint32_t flags, nnm_module **out);

/* Describes a module tree as a manifest that rebuilds an identical tree: each
 * module's type and the config it was created with, children in order, the
 * plugins used at "^major.minor" of the loaded versions. No weights.
 * NNM_E_INVALID, naming the config's path, for what no manifest can hold (a
 * non-finite float, text that is not UTF-8, a key over 255 bytes); NNM_E_LIMIT
 * for a tree nested deeper than a document of 32 levels holds. *out is a
 * new manifest (nnm_manifest_free) or NULL on failure. */
NNM_API nnm_status nnm_manifest_from_module(nnm_module *m, nnm_manifest **out);

/* The weights reference: path as written in the document (relative to the
 * manifest) and sha256 as 64 lowercase hex digits; NULL when absent. Owned by
 * mf. */
NNM_API const char *nnm_manifest_weights_path(const nnm_manifest *mf);
NNM_API const char *nnm_manifest_weights_sha256(const nnm_manifest *mf);
/* Sets (path NULL: removes) the weights reference; the path must be UTF-8
 * text. sha256 may be NULL. Both are copied. */
NNM_API nnm_status nnm_manifest_set_weights(nnm_manifest *mf, const char *path,
                                            const char *sha256_hex);

/* Serialises to a malloc'd buffer (*out; free with nnm_free). format: MSGPACK
 * or JSON (AUTO means msgpack). The same manifest always gives the same bytes. */
NNM_API nnm_status nnm_manifest_write(const nnm_manifest *mf, int format, void **out,
                                      size_t *len);
/* Writes a file atomically (temp file, fsync, rename, fsync of the dir). */
NNM_API nnm_status nnm_manifest_save(const nnm_manifest *mf, const char *path, int format);
/* The sha256 of the manifest's msgpack encoding, as 64 hex digits and a NUL:
 * what checkpoints record in their __metadata__ as "nnmod_manifest_sha256". */
NNM_API nnm_status nnm_manifest_hash(const nnm_manifest *mf, char out[65]);

/* The plugins the manifest requires: name and version range as written, and
 * the version the request resolved to (borrowed from mf). */
NNM_API uint32_t nnm_manifest_plugin_count(const nnm_manifest *mf);
NNM_API nnm_status nnm_manifest_plugin(const nnm_manifest *mf, uint32_t index, const char **name,
                                       const char **range, const char **resolved_version);

/* ------------------------------------------------------------------------ */
/* Datasets and the batching pipeline (docs/training.md)                     */
/* ------------------------------------------------------------------------ */

typedef struct nnm_dataset nnm_dataset;
typedef struct nnm_loader nnm_loader;

/* (0.4) The most bytes of data one IDX file could hold; kept for source
 * compatibility. What a dataset may hold is now nnm_dataset_options.max_bytes. */
#define NNM_DATASET_MAX_BYTES ((uint64_t)1 << 34)
/* The bytes a dataset may hold when nnm_dataset_options.max_bytes is 0, and
 * for nnm_dataset_open_idx/_safetensors: 4 GiB (docs/training.md). */
#define NNM_DATASET_DEFAULT_MAX_BYTES ((uint64_t)4 << 30)
/* Integer targets are class indices 0..NNM_DATASET_MAX_CLASS, or
 * NNM_DATASET_IGNORE_INDEX (PyTorch's ignore_index: the sample counts in
 * neither the loss nor the accuracy); any other value is refused when the
 * dataset is opened, naming the file and the sample. */
#define NNM_DATASET_IGNORE_INDEX (-100)
#define NNM_DATASET_MAX_CLASS ((int64_t)INT32_MAX)
/* Tensor names of a safetensors dataset when none are given. */
#define NNM_DATASET_INPUTS "inputs"
#define NNM_DATASET_TARGETS "targets"

/* Opens an IDX pair (the MNIST family's format, gzipped or not): inputs (the
 * first dimension counts samples) and targets with the same count. Read with
 * zlib; checked as hostile input (magic, dimensions, sizes against the file,
 * truncated or trailing data, corrupt gzip): a failure names the file. Memory
 * follows the data the files really hold. u8 inputs stay u8 (converted per
 * batch by the loader); other types become f32. Integer targets are class
 * indices (i64), floating ones f32. targets_path may be NULL: a dataset of
 * inputs alone (its loaders hand out no targets). Free with nnm_dataset_free. */
NNM_API nnm_status nnm_dataset_open_idx(nnm_ctx *ctx, const char *inputs_path,
                                        const char *targets_path, nnm_dataset **out);
/* Opens a safetensors file holding an inputs tensor and a targets tensor
 * (names NULL: NNM_DATASET_INPUTS, NNM_DATASET_TARGETS) with the same first
 * dimension. Inputs (U8, I8, U16, I16, I32, F16, BF16, F32 or F64) are read
 * in place from the file's mapping, never copied; targets are integer (class
 * indices, held as i64) or floating (held as f32). */
NNM_API nnm_status nnm_dataset_open_safetensors(nnm_ctx *ctx, const char *path,
                                                const char *inputs_name, const char *targets_name,
                                                nnm_dataset **out);

/* Flags for nnm_dataset_options.flags. */
#define NNM_DATASET_ALLOW_NONFINITE 1u /* keep NaN and infinite inputs and f32 targets */

/* (0.5) How a dataset is opened. Every field may be 0/NULL: the defaults. */
typedef struct nnm_dataset_options {
    uint32_t struct_size;        /* sizeof(nnm_dataset_options) */
    uint32_t flags;              /* NNM_DATASET_* */
    /* The most bytes the dataset may hold, checked against the files'
     * headers before anything is read or allocated: the inputs as held (u8
     * as stored, other IDX types as f32; a safetensors file's inputs tensor
     * as mapped), the targets as held (8 bytes per class index, 4 per f32)
     * and 16 bytes per sample for a loader's order. 0: the default,
     * NNM_DATASET_DEFAULT_MAX_BYTES. Over it: NNM_E_LIMIT naming the file. */
    uint64_t max_bytes;
    const char *inputs_name;     /* safetensors: NULL means NNM_DATASET_INPUTS */
    const char *targets_name;    /* safetensors: NULL means NNM_DATASET_TARGETS */
} nnm_dataset_options;

/* (0.5) nnm_dataset_open_idx and nnm_dataset_open_safetensors with options
 * (opts NULL: the defaults). Before any data is read, the headers are
 * checked against each other (the same sample count; samples and targets of
 * at least one value) and against opts->max_bytes; a gzip stream is read
 * through once to check that it holds exactly the data its header declares
 * before any memory is given to it. Unless NNM_DATASET_ALLOW_NONFINITE, a
 * NaN or an infinity in floating-point inputs or targets (or an f64 value
 * out of f32's range) is refused, naming the file, the sample and the value.
 * Integer targets must be class indices (see NNM_DATASET_IGNORE_INDEX). */
NNM_API nnm_status nnm_dataset_open_idx_v2(nnm_ctx *ctx, const char *inputs_path,
                                           const char *targets_path,
                                           const nnm_dataset_options *opts, nnm_dataset **out);
NNM_API nnm_status nnm_dataset_open_safetensors_v2(nnm_ctx *ctx, const char *path,
                                                   const nnm_dataset_options *opts,
                                                   nnm_dataset **out);
/* NULL: no-op. Every loader over ds must be freed first. */
NNM_API void nnm_dataset_free(nnm_dataset *ds);

typedef struct nnm_dataset_info {
    uint32_t struct_size;        /* set by the caller */
    int32_t input_ndim;          /* one sample's input shape (without the sample dim) */
    int64_t n_samples;
    int64_t input_shape[NNM_MAX_DIMS];
    nnm_dtype input_dtype;       /* as stored */
    int32_t target_ndim;         /* 0 for one class index per sample */
    int64_t target_shape[NNM_MAX_DIMS];
    nnm_dtype target_dtype;      /* i64 or f32; all zero for an inputs-only dataset */
    int64_t n_classes;           /* 1 + the largest i64 target; 0 for f32 targets */
    const char *source;          /* the file name(s), owned by ds */
    /* ---- fields above are valid for 0.4 (a smaller struct_size gets them) ---- */
    int64_t n_ignored;           /* (0.5) visible i64 targets equal to NNM_DATASET_IGNORE_INDEX */
} nnm_dataset_info;
NNM_API nnm_status nnm_dataset_info_get(const nnm_dataset *ds, nnm_dataset_info *out);
/* Keeps only the first n samples visible (n past the end: all of them). */
NNM_API nnm_status nnm_dataset_limit(nnm_dataset *ds, int64_t n);
/* Mean and standard deviation (population) of every input value times
 * `scale`, over the visible samples: what normalisation divides by. */
NNM_API nnm_status nnm_dataset_stats(const nnm_dataset *ds, double scale, double *mean,
                                     double *std);

/* Flags for nnm_loader_options.flags. */
#define NNM_LOADER_SHUFFLE 1u   /* a new seeded order every epoch */
#define NNM_LOADER_DROP_LAST 2u /* no last partial batch */

typedef struct nnm_loader_options {
    uint32_t struct_size;        /* sizeof(nnm_loader_options) */
    uint32_t flags;              /* NNM_LOADER_* */
    int64_t batch_size;          /* >= 1 */
    uint64_t seed;               /* of the shuffle */
    uint32_t rank, world_size;   /* this process's slice; world_size 0 means 1 */
    /* Each input value x becomes (x * scale - mean) / std. scale 0: 1/255 for
     * u8 inputs, else 1; std 0: 1 (no normalisation with mean 0). */
    double scale, mean, std;
    int32_t ndim;                /* 0: samples keep the dataset's shape; else */
    int64_t shape[NNM_MAX_DIMS]; /* the shape to view each one as (same count) */
} nnm_loader_options;

/* A loader over ds (borrowed: it must outlive the loader), at epoch 0. The
 * order of epoch e is a documented function of (seed, e, N) (runtime/data/
 * loader.c): with world_size W, every rank computes the same permutation,
 * padded to a multiple of W with its first elements, and rank r takes every
 * W-th sample from r, like DistributedSampler(drop_last=False): the ranks'
 * slices are disjoint unless padded and together cover the dataset. */
NNM_API nnm_status nnm_loader_new(nnm_dataset *ds, const nnm_loader_options *opts,
                                  nnm_loader **out);
NNM_API void nnm_loader_free(nnm_loader *l);
/* Starts epoch `epoch` (its order) from its first batch. */
NNM_API nnm_status nnm_loader_set_epoch(nnm_loader *l, uint64_t epoch);
/* Samples and batches this rank gets per epoch. */
NNM_API int64_t nnm_loader_sample_count(const nnm_loader *l);
NNM_API int64_t nnm_loader_batch_count(const nnm_loader *l);
/* This rank's dataset indices for the current epoch, in order, into out
 * (cap entries; at least nnm_loader_sample_count). */
NNM_API nnm_status nnm_loader_indices(const nnm_loader *l, int64_t *out, size_t cap);
/* The next batch: *inputs a new f32 CPU tensor [B, sample shape...], *targets
 * a new i64 or f32 tensor [B, target shape...] (NULL for an inputs-only
 * dataset); the caller releases both.
 * At the end of the epoch returns NNM_OK with both NULL. */
NNM_API nnm_status nnm_loader_next(nnm_loader *l, nnm_tensor **inputs, nnm_tensor **targets);
/* Makes the batches of nnm_loader_next on `device` (default: the CPU), as
 * PyTorch's DataLoader(pin_memory=True) followed by .to(device,
 * non_blocking=True): each batch is gathered into page-locked host memory
 * when the device's backend offers it and copied on the backend's stream
 * without waiting, so gathering the next batch overlaps the device's work on
 * this one (without page-locked memory the copy waits). Inputs and targets
 * both go there. NNM_E_DEVICE (or the backend's NNM_E_NO_DEVICE) when the
 * device cannot be used; nothing changes then. (nnmod 0.5) */
NNM_API nnm_status nnm_loader_set_device(nnm_loader *l, nnm_device device);

/* Reseeds the context's generator (parameter initialisation and the random
 * ops layers draw from), like torch.manual_seed: the same seed gives the same
 * stream again, which is how a resumed training run replays an epoch's
 * dropout masks exactly. */
NNM_API nnm_status nnm_ctx_manual_seed(nnm_ctx *ctx, uint64_t seed);

/* The manifest's "training" section (docs/manifest.md, docs/training.md) as a
 * config: hyper-parameters and data for `nnm train`, kept and written back.
 * Borrowed from mf; NULL when the document has none (or mf is NULL). */
NNM_API const nnm_config *nnm_manifest_training(const nnm_manifest *mf);
/* The "metadata" map, string to string, in document order: count, then the
 * pair at `index` (pointers owned by mf; NNM_E_NOT_FOUND past the end; key or
 * value may be NULL when not wanted). */
NNM_API uint32_t nnm_manifest_metadata_count(const nnm_manifest *mf);
NNM_API nnm_status nnm_manifest_metadata(const nnm_manifest *mf, uint32_t index, const char **key,
                                         const char **value);

#ifdef __cplusplus
}
#endif

#endif /* NNMOD_NNMOD_H */
