/* runtime/core/ctx.c - the context: registry, backends, errors, statistics. */
#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* sched_getaffinity */
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__linux__)
#include <sched.h>
#endif
#include <unistd.h>

#include "internal.h"

#ifndef NNM_INSTALL_PLUGIN_DIR
#define NNM_INSTALL_PLUGIN_DIR NULL
#endif

NNM_API const char *nnm_version(void) { return NNM_VERSION_STRING; }

NNM_API void nnm_abi_version(uint16_t *major, uint16_t *minor) {
    if (major) *major = NNM_ABI_MAJOR;
    if (minor) *minor = NNM_ABI_MINOR;
}

static const struct {
    nnm_status code;
    const char *name;
    const char *text;
} status_table[] = {
    {NNM_OK, "NNM_OK", "success"},
    {NNM_E_INVALID, "NNM_E_INVALID", "invalid argument"},
    {NNM_E_NOMEM, "NNM_E_NOMEM", "out of memory"},
    {NNM_E_SHAPE, "NNM_E_SHAPE", "shape or arity mismatch"},
    {NNM_E_DTYPE, "NNM_E_DTYPE", "unsupported or mismatched dtype"},
    {NNM_E_DEVICE, "NNM_E_DEVICE", "wrong or unavailable device"},
    {NNM_E_NOT_FOUND, "NNM_E_NOT_FOUND", "not found"},
    {NNM_E_TYPE, "NNM_E_TYPE", "value of the wrong type"},
    {NNM_E_VERSION, "NNM_E_VERSION", "version mismatch"},
    {NNM_E_LOAD, "NNM_E_LOAD", "shared object could not be loaded"},
    {NNM_E_UNSUPPORTED, "NNM_E_UNSUPPORTED", "not implemented"},
    {NNM_E_STATE, "NNM_E_STATE", "object in the wrong state"},
    {NNM_E_IO, "NNM_E_IO", "file system error"},
    {NNM_E_PLUGIN, "NNM_E_PLUGIN", "plugin failure"},
    {NNM_E_HOOK, "NNM_E_HOOK", "hook failure"},
    {NNM_E_NO_DEVICE, "NNM_E_NO_DEVICE", "no device of this type on this machine"},
    {NNM_E_EXISTS, "NNM_E_EXISTS", "already exists"},
    {NNM_E_LIMIT, "NNM_E_LIMIT", "limit exceeded"},
    {NNM_E_TIMEOUT, "NNM_E_TIMEOUT", "a peer did not answer in time"},
};

NNM_API const char *nnm_status_name(nnm_status status) {
    for (size_t i = 0; i < sizeof status_table / sizeof status_table[0]; i++)
        if (status_table[i].code == status) return status_table[i].name;
    return "unknown";
}

NNM_API const char *nnm_status_str(nnm_status status) {
    for (size_t i = 0; i < sizeof status_table / sizeof status_table[0]; i++)
        if (status_table[i].code == status) return status_table[i].text;
    return "unknown status";
}

/* Every message goes through nnm__verror: a plugin or an application may
 * repeat config strings, file names or tensor names that came from an
 * untrusted file. Control characters (C0, DEL, C1 as UTF-8 C2 80..C2 9F; a
 * terminal would obey them) are written \xHH as the nnm tool writes them,
 * and a UTF-8 sequence that truncation cut at the end is dropped. */
static void scrub_message(const char *in, char *out, size_t cap) {
    const unsigned char *u = (const unsigned char *)in;
    size_t o = 0;
    for (size_t i = 0; u[i];) {
        const size_t k = u[i] < 0x20 || u[i] == 0x7f                            ? 1
                         : u[i] == 0xC2 && u[i + 1] >= 0x80 && u[i + 1] <= 0x9F ? 2
                                                                                : 0;
        if (k) {
            if (o + 4 * k + 1 > cap) break;
            for (size_t j = 0; j < k; j++, o += 4) snprintf(out + o, 5, "\\x%02x", u[i + j]);
            i += k;
            continue;
        }
        size_t n = u[i] >= 0xF0 ? 4 : u[i] >= 0xE0 ? 3 : u[i] >= 0xC0 ? 2 : 1, have = 1;
        while (have < n && u[i + have]) have++;
        if (have < n || o + n + 1 > cap) break; /* cut at the end: dropped whole */
        memcpy(out + o, u + i, n);
        o += n;
        i += n;
    }
    out[o] = 0;
}

nnm_status nnm__verror(nnm_ctx *ctx, nnm_status code, const char *fmt, va_list ap) {
    if (!ctx) return code;
    /* fmt may name ctx->errmsg itself (re-prefixing): format into a copy. */
    char tmp[NNM__ERRMSG_CAP];
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    scrub_message(tmp, ctx->errmsg, sizeof ctx->errmsg);
    ctx->err_attributed = 0;
    ctx->err_seq++;
    return code;
}

nnm_status nnm__error(nnm_ctx *ctx, nnm_status code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    nnm__verror(ctx, code, fmt, ap);
    va_end(ap);
    return code;
}

NNM_API nnm_status nnm_ctx_set_error(nnm_ctx *ctx, nnm_status code, const char *fmt, ...) {
    if (!ctx || !fmt) return code;
    va_list ap;
    va_start(ap, fmt);
    nnm__verror(ctx, code, fmt, ap);
    va_end(ap);
    return code;
}

void nnm__error_attribute(nnm_ctx *ctx, const nnm_module *m) {
    if (ctx->err_attributed) return;
    char path[256], msg[NNM__ERRMSG_CAP];
    int n = nnm_module_path(m, path, sizeof path);
    memcpy(msg, ctx->errmsg, sizeof msg);
    snprintf(ctx->errmsg, sizeof ctx->errmsg, "%s (%s): %s", n > 0 ? path : "<root>",
             m->vt->name, msg);
    ctx->err_attributed = 1;
}

NNM_API const char *nnm_ctx_errmsg(const nnm_ctx *ctx) {
    return ctx ? ctx->errmsg : "no context (NULL nnm_ctx)";
}

const char *nnm__device_name(nnm_device d, char *buf, size_t cap) {
    const char *t = d.type == NNM_DEVICE_META ? "meta" : nnm__device_type_name(d.type);
    if (d.type == NNM_DEVICE_CPU || d.type == NNM_DEVICE_META)
        snprintf(buf, cap, "%s", t);
    else if (strcmp(t, "unknown") == 0)
        snprintf(buf, cap, "device type %d:%d", (int)d.type, (int)d.id);
    else
        snprintf(buf, cap, "%s:%d", t, (int)d.id);
    return buf;
}

/* A positive thread count in environment variable `name`, or 0. */
static int32_t env_threads(const char *name) {
    const char *v = getenv(name);
    if (!v || !*v) return 0;
    char *end;
    long n = strtol(v, &end, 10);
    return *end == 0 && n >= 1 && n <= 1024 ? (int32_t)n : 0;
}

/* The intra-op thread count a new context starts with, as PyTorch's: the
 * first of NNM_NUM_THREADS, OMP_NUM_THREADS and OPENBLAS_NUM_THREADS set to
 * a positive number (so a process that pinned its BLAS to one thread gets one
 * everywhere), else the CPUs this process may run on. */
static int32_t default_threads(void) {
    static const char *const vars[] = {"NNM_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        int32_t n = env_threads(vars[i]);
        if (n) return n;
    }
#if defined(__linux__)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) >= 1)
        return CPU_COUNT(&set) > 1024 ? 1024 : (int32_t)CPU_COUNT(&set);
#endif
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 1024 ? 1024 : (int32_t)n;
}

NNM_API nnm_status nnm_ctx_new(const nnm_ctx_options *opts, nnm_ctx **out) {
    if (!out) return NNM_E_INVALID;
    *out = NULL;
    uint32_t flags = 0;
    uint64_t seed = 0;
    if (opts) {
        if (opts->struct_size < offsetof(nnm_ctx_options, flags) + sizeof opts->flags)
            return NNM_E_INVALID;
        flags = opts->flags;
        if (opts->struct_size >= offsetof(nnm_ctx_options, seed) + sizeof opts->seed)
            seed = opts->seed;
    }
    nnm_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return NNM_E_NOMEM;
    ctx->refs = 1;
    ctx->num_threads = default_threads();
    ctx->stats.struct_size = sizeof ctx->stats;
    nnm__registry_init(&ctx->reg);
    nnm__hooks_ctx_init(ctx);
    nnm__rng_seed(ctx->rng, seed ? seed : 0x6e6e6d6f64ull);
    if (!(flags & NNM_CTX_NO_DISCOVERY))
        nnm__registry_discover(&ctx->reg, getenv("NNM_PLUGIN_PATH"), NNM_INSTALL_PLUGIN_DIR);
    *out = ctx;
    return NNM_OK;
}

void nnm__ctx_destroy(nnm_ctx *ctx) {
    nnm__hooks_ctx_fini(ctx);
    nnm__alloc_fini(ctx);
    nnm__tensors_fini(ctx);
    while (ctx->free_nodes) {
        nnm__node *n = ctx->free_nodes;
        NNM__UNPOISON(n, sizeof *n);
        ctx->free_nodes = n->next_free;
        free(n);
    }
    free(ctx->stack);
    nnm__backends_shutdown(ctx);
    nnm__registry_fini(&ctx->reg);
    free(ctx);
}


NNM_API void nnm_ctx_free(nnm_ctx *ctx) {
    if (!ctx || ctx->closed) return;
    ctx->closed = 1;
    /* Global hooks belong to the user's view of the context. */
    nnm__hooks_ctx_close(ctx);
    ctx->profiler = NULL;
    ctx->n_global_hooks = 0;
    nnm__ctx_release(ctx);
}

NNM_API nnm_status nnm_ctx_stats_get(nnm_ctx *ctx, nnm_ctx_stats *out) {
    if (!ctx || !out) return NNM_E_INVALID;
    size_t n = out->struct_size;
    if (n < offsetof(nnm_ctx_stats, heap_allocs)) return NNM_E_INVALID;
    if (n > sizeof *out) n = sizeof *out;
    memcpy(out, &ctx->stats, n);
    out->struct_size = (uint32_t)n;
    return NNM_OK;
}

NNM_API nnm_status nnm_ctx_set_num_threads(nnm_ctx *ctx, int32_t n) {
    if (!ctx) return NNM_E_INVALID;
    if (n < 1) return nnm__error(ctx, NNM_E_INVALID, "nnm_ctx_set_num_threads: n must be >= 1, got %d", (int)n);
    ctx->num_threads = n;
    for (int i = 0; i < NNM__DEVICE_TYPES; i++) { /* the backends already started */
        nnm__backend *be = &ctx->backends[i];
        if (be->tried && be->status == NNM_OK) {
            nnm_status st = nnm__backend_push_threads(ctx, be);
            if (st) return st;
        }
    }
    return NNM_OK;
}

NNM_API int32_t nnm_ctx_num_threads(const nnm_ctx *ctx) { return ctx ? ctx->num_threads : 0; }

NNM_API void nnm_ctx_reset_peak_stats(nnm_ctx *ctx) {
    if (!ctx) return;
    ctx->stats.peak_bytes_in_use = ctx->stats.bytes_in_use;
    ctx->stats.peak_bytes_reserved = ctx->stats.bytes_in_use + ctx->stats.bytes_cached;
}

NNM_API nnm_status nnm_ctx_set_profiler(nnm_ctx *ctx, nnm_profile_fn fn, void *user) {
    if (!ctx) return NNM_E_INVALID;
    if (ctx->profiler && !fn) ctx->n_global_hooks--;
    if (!ctx->profiler && fn) ctx->n_global_hooks++;
    ctx->profiler = fn;
    ctx->profiler_user = user;
    return NNM_OK;
}

/* ---- plugins ------------------------------------------------------------ */

NNM_API nnm_status nnm_plugin_load(nnm_ctx *ctx, const char *path) {
    if (!ctx) return NNM_E_INVALID;
    if (!path) return nnm__error(ctx, NNM_E_INVALID, "nnm_plugin_load: path is NULL");
    char err[NNM__ERRMSG_CAP];
    err[0] = 0;
    nnm_status st = nnm__registry_load_file(&ctx->reg, path, NULL, err, sizeof err);
    if (st) return nnm__error(ctx, st, "%s", err);
    return NNM_OK;
}

NNM_API nnm_status nnm_plugin_load_dir(nnm_ctx *ctx, const char *dir, uint32_t *n_loaded) {
    if (n_loaded) *n_loaded = 0;
    if (!ctx) return NNM_E_INVALID;
    if (!dir) return nnm__error(ctx, NNM_E_INVALID, "nnm_plugin_load_dir: dir is NULL");
    char err[NNM__ERRMSG_CAP];
    err[0] = 0;
    nnm_status st = nnm__registry_load_dir(&ctx->reg, dir, n_loaded, err, sizeof err);
    if (st) return nnm__error(ctx, st, "%s", err);
    return NNM_OK;
}

NNM_API nnm_status nnm_plugin_register_static(nnm_ctx *ctx, const nnm_plugin_desc *desc,
                                              const char *origin) {
    if (!ctx) return NNM_E_INVALID;
    if (!desc) return nnm__error(ctx, NNM_E_INVALID, "nnm_plugin_register_static: desc is NULL");
    char err[NNM__ERRMSG_CAP];
    err[0] = 0;
    nnm_status st = nnm__registry_register_static(&ctx->reg, desc, origin ? origin : "<static>",
                                                  err, sizeof err);
    if (st) return nnm__error(ctx, st, "%s", err);
    return NNM_OK;
}

NNM_API uint32_t nnm_plugin_count(const nnm_ctx *ctx) { return ctx ? ctx->reg.count : 0; }

NNM_API nnm_status nnm_plugin_info_get(const nnm_ctx *ctx, uint32_t index, nnm_plugin_info *out) {
    if (!ctx || !out || out->struct_size < sizeof(nnm_plugin_info)) return NNM_E_INVALID;
    if (index >= ctx->reg.count) return NNM_E_NOT_FOUND;
    const nnm__plugin *p = ctx->reg.items[index];
    out->status = p->status;
    out->path = p->path;
    out->name = p->desc ? p->desc->name : NULL;
    out->error = p->error ? p->error : "";
    out->abi_major = p->abi_major;
    out->abi_minor = p->abi_minor;
    out->n_layers = p->n_layers;
    out->n_backends = p->n_backends;
    out->live_modules = p->live_modules;
    return NNM_OK;
}

NNM_API nnm_status nnm_plugin_layer_info(const nnm_ctx *ctx, uint32_t plugin, uint32_t layer,
                                         nnm_layer_info *out) {
    if (!ctx || !out || out->struct_size < sizeof(nnm_layer_info)) return NNM_E_INVALID;
    if (plugin >= ctx->reg.count) return NNM_E_NOT_FOUND;
    const nnm__plugin *p = ctx->reg.items[plugin];
    if (p->status != NNM_OK || layer >= p->n_layers) return NNM_E_NOT_FOUND;
    const nnm_layer_vtable *vt = &p->layers[layer];
    out->flags = nnm__registry_layer_flags(&ctx->reg, p, layer);
    out->name = vt->name;
    out->domain = p->domain;
    out->qualified_name = p->qnames[layer];
    out->version_major = vt->version_major;
    out->version_minor = vt->version_minor;
    out->version_patch = vt->version_patch;
    out->reserved = 0;
    return NNM_OK;
}

_Static_assert(NNM_LAYER_INFO_DECLARED == NNM__LF_DECLARED && NNM_LAYER_INFO_PLAIN == NNM__LF_PLAIN &&
                   NNM_LAYER_INFO_SHADOWED == NNM__LF_SHADOWED &&
                   NNM_LAYER_INFO_BUILTIN == NNM__LF_BUILTIN,
               "layer info flags");

NNM_API nnm_status nnm_layer_find(nnm_ctx *ctx, const char *request, const nnm_layer_vtable **out) {
    if (out) *out = NULL;
    if (!ctx) return NNM_E_INVALID;
    if (!request || !out) return nnm__error(ctx, NNM_E_INVALID, "nnm_layer_find: NULL argument");
    char err[NNM__ERRMSG_CAP];
    err[0] = 0;
    nnm__plugin *owner = NULL;
    nnm_status st = nnm__registry_find_layer(&ctx->reg, request, out, &owner, err, sizeof err);
    if (st) return nnm__error(ctx, st, "%s", err);
    return NNM_OK;
}

/* ---- grad mode (per thread, like torch.is_grad_enabled) ----------------- */

NNM__TLS_FAST _Thread_local int nnm__grad_disabled;

NNM_API int nnm_grad_set_enabled(int enabled) {
    int prev = !nnm__grad_disabled;
    nnm__grad_disabled = !enabled;
    return prev;
}

NNM_API int nnm_grad_is_enabled(void) { return nnm__grad_enabled(); }
