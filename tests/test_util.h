/* tests/test_util.h - the CUnit scaffolding every suite shares.
 *
 * Header-only: static inline functions and macros, one version of each helper
 * the suites used to copy. Include it FIRST in a suite (before any system
 * header): it asks for POSIX (mkdtemp, lstat, dlopen) unless the suite already
 * chose a feature set (_POSIX_C_SOURCE, _GNU_SOURCE, _XOPEN_SOURCE).
 *
 * The context. Functions take what they use as arguments (an nnm_ctx *, a
 * directory). The assertion macros (CHECK_STATUS, CHECK_MSG, CHECK_ERROR,
 * LEAK_CHECK_BEGIN/_END) read the context whose message they print and whose
 * counts they compare from TU_CTX, which a suite that uses them defines as an
 * expression of type nnm_ctx *, usually its global:
 *
 *     static nnm_ctx *g_ctx;
 *     #define TU_CTX g_ctx
 *
 * (tests/checkpoint, with one context per training run, points it at the run
 * being checked.) A macro is expanded where it is used, so TU_CTX may be
 * defined before or after this header; a suite that never uses those macros
 * need not define it.
 *
 * Ownership: a function that returns a tensor, a module or a malloc'd buffer
 * gives the caller a new reference (nnm_tensor_release, nnm_module_release,
 * free); one that takes a tensor or module borrows it. Paths come from static
 * rotating buffers (see tu_path). Nothing here frees a context it did not make.
 *
 * Sections: running suites, contexts, status checks, leak checks, temp
 * directories and files, plugins driven directly (the entry handshake and a
 * fake host), tensors, modules, deterministic values, comparisons.
 */
#ifndef NNM_TESTS_TEST_UTIL_H
#define NNM_TESTS_TEST_UTIL_H

#if !defined(_POSIX_C_SOURCE) && !defined(_GNU_SOURCE) && !defined(_XOPEN_SOURCE)
#define _POSIX_C_SOURCE 200809L /* mkdtemp, lstat; the suites: strdup, kill, ... */
#endif

#include <CUnit/Basic.h>

#include <nnmod/nnmod.h>

#include <dirent.h>
#include <dlfcn.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------------ */
/* Running suites                                                            */
/* ------------------------------------------------------------------------ */

/* Adds a suite to the CUnit registry, initialising the registry first if no
 * suite was added yet. NULL on failure (the registry is then cleaned up, so
 * main just returns its failure status). */
static inline CU_pSuite tu_suite(const char *name, CU_InitializeFunc init, CU_CleanupFunc clean) {
    if (!CU_registry_initialized() && CU_initialize_registry() != CUE_SUCCESS)
        return NULL;
    CU_pSuite s = CU_add_suite(name, init, clean);
    if (s == NULL)
        CU_cleanup_registry();
    return s;
}

/* Runs every suite registered so far (verbose output, which ends with the
 * run summary and its `asserts` line), then cleans up the registry. Returns
 * the process exit status: 1 when an assertion, a test or a suite's
 * init/cleanup failed, CUnit reported an error, or no test ran; else 0. */
static inline int tu_run(void) {
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    const unsigned failed = CU_get_number_of_failures() + CU_get_number_of_suites_failed() +
                            CU_get_number_of_tests_failed();
    const unsigned ran = CU_get_number_of_tests_run();
    const CU_ErrorCode err = CU_get_error();
    CU_cleanup_registry();
    return failed != 0 || ran == 0 || err != CUE_SUCCESS ? 1 : 0;
}

/* ------------------------------------------------------------------------ */
/* Contexts                                                                  */
/* ------------------------------------------------------------------------ */

/* A new context with default options in *out. Returns 0, or 1 after printing
 * the status (CUnit's convention for a suite's init function). The caller
 * frees it with tu_ctx_free. */
static inline int tu_ctx_new(nnm_ctx **out) {
    nnm_status st = nnm_ctx_new(NULL, out);
    if (st != NNM_OK) {
        fprintf(stderr, "nnm_ctx_new: %s\n", nnm_status_name(st));
        return 1;
    }
    return 0;
}

/* Frees *ctx (NULL is a no-op) and sets it to NULL. Returns 0 (for a suite's
 * cleanup function). */
static inline int tu_ctx_free(nnm_ctx **ctx) {
    nnm_ctx_free(*ctx);
    *ctx = NULL;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Status checks (read TU_CTX)                                               */
/* ------------------------------------------------------------------------ */

/* One assertion: `expr` (an nnm_status) equals `want`. On a mismatch it also
 * prints the expression, both statuses and TU_CTX's message. */
#define CHECK_STATUS(expr, want)                                                         \
    do {                                                                                 \
        nnm_status got_ = (expr);                                                        \
        if (got_ != (want))                                                              \
            fprintf(stderr, "\n  %s:%d: %s -> %s (want %s): %s\n", __FILE__, __LINE__,    \
                    #expr, nnm_status_name(got_), nnm_status_name(want),                 \
                    nnm_ctx_errmsg(TU_CTX));                                             \
        CU_ASSERT_EQUAL(got_, (want));                                                   \
    } while (0)

/* One assertion: TU_CTX's message contains `needle`; prints both otherwise. */
#define CHECK_MSG(needle)                                                                \
    do {                                                                                 \
        const char *m_ = nnm_ctx_errmsg(TU_CTX);                                         \
        if (strstr(m_, (needle)) == NULL)                                                \
            fprintf(stderr, "\n  %s:%d: message \"%s\" lacks \"%s\"\n", __FILE__,         \
                    __LINE__, m_, (needle));                                             \
        CU_ASSERT_PTR_NOT_NULL(strstr(m_, (needle)));                                    \
    } while (0)

/* Two assertions: `expr` returns `want`, and TU_CTX's message (read after
 * `expr` ran) contains `needle`. Prints all of it when either fails. */
#define CHECK_ERROR(expr, want, needle)                                                  \
    do {                                                                                 \
        nnm_status got_ = (expr);                                                        \
        const char *msg_ = nnm_ctx_errmsg(TU_CTX);                                       \
        int has_ = msg_ != NULL && strstr(msg_, (needle)) != NULL;                       \
        if (got_ != (want) || !has_)                                                     \
            fprintf(stderr, "\n  %s:%d: %s -> %s (want %s containing \"%s\"): %s\n",      \
                    __FILE__, __LINE__, #expr, nnm_status_name(got_),                    \
                    nnm_status_name(want), (needle), msg_ ? msg_ : "(null)");            \
        CU_ASSERT_EQUAL(got_, (want));                                                   \
        CU_ASSERT_TRUE(has_);                                                            \
    } while (0)

/* ------------------------------------------------------------------------ */
/* Leak checks                                                               */
/* ------------------------------------------------------------------------ */

/* ctx's statistics now; one assertion: nnm_ctx_stats_get succeeded (the
 * result is zeroed when it did not). */
static inline nnm_ctx_stats tu_stats(nnm_ctx *ctx) {
    nnm_ctx_stats s;
    memset(&s, 0, sizeof s);
    s.struct_size = sizeof s;
    nnm_status st = nnm_ctx_stats_get(ctx, &s);
    CU_ASSERT_EQUAL(st, NNM_OK);
    if (st != NNM_OK) {
        memset(&s, 0, sizeof s);
        s.struct_size = sizeof s;
    }
    return s;
}

/* Live tensors and modules of a context; ok is 0 when they could not be read. */
typedef struct tu_live {
    uint64_t tensors, modules;
    int ok;
} tu_live;

/* ctx's live counts now. One assertion, as in tu_stats: they were readable. */
static inline tu_live tu_live_now(nnm_ctx *ctx) {
    tu_live c = {0, 0, 0};
    nnm_ctx_stats s;
    memset(&s, 0, sizeof s);
    s.struct_size = sizeof s;
    if (nnm_ctx_stats_get(ctx, &s) == NNM_OK) {
        c.tensors = s.live_tensors;
        c.modules = s.live_modules;
        c.ok = 1;
    }
    CU_ASSERT_TRUE(c.ok);
    return c;
}

/* A test's leak check: LEAK_CHECK_BEGIN() at the top of a test (a
 * declaration), LEAK_CHECK_END() at its end, in the same scope; both read
 * TU_CTX. END asserts that both snapshots were read and that the live tensors
 * and modules are as many as at BEGIN, and prints how many leaked otherwise.
 * Five assertions in all (one per snapshot, three at END). */
#define LEAK_CHECK_BEGIN() const tu_live live_before_ = tu_live_now(TU_CTX)
#define LEAK_CHECK_END()                                                                 \
    do {                                                                                 \
        tu_live after_ = tu_live_now(TU_CTX);                                            \
        CU_ASSERT_TRUE(live_before_.ok && after_.ok);                                    \
        if (after_.tensors != live_before_.tensors || after_.modules != live_before_.modules) \
            fprintf(stderr, "\n  %s:%d: %lld tensors, %lld modules leaked\n", __FILE__,    \
                    __LINE__, (long long)(after_.tensors - live_before_.tensors),        \
                    (long long)(after_.modules - live_before_.modules));                 \
        CU_ASSERT_EQUAL(after_.tensors, live_before_.tensors);                           \
        CU_ASSERT_EQUAL(after_.modules, live_before_.modules);                           \
    } while (0)

/* ------------------------------------------------------------------------ */
/* Temp directories and files                                                */
/* ------------------------------------------------------------------------ */

/* Makes a private directory /tmp/<prefix>XXXXXX (mkdtemp) and writes its path
 * to dir (cap bytes). Returns 0, or -1 after perror (dir then holds ""). The
 * caller removes it with tu_dir_remove_all. */
static inline int tu_tmpdir_new(char *dir, size_t cap, const char *prefix) {
    snprintf(dir, cap, "/tmp/%sXXXXXX", prefix);
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        dir[0] = '\0';
        return -1;
    }
    return 0;
}

/* Removes dir and everything below it (symbolic links are removed, never
 * followed). Returns rmdir's result for dir: 0, or -1 (also for "" or NULL). */
static inline int tu_dir_remove_all(const char *dir) {
    DIR *d = dir != NULL && dir[0] != '\0' ? opendir(dir) : NULL;
    if (d == NULL)
        return -1;
    struct dirent *e;
    char p[512];
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode))
            tu_dir_remove_all(p);
        else
            unlink(p);
    }
    closedir(d);
    return rmdir(dir);
}

/* "dir/name" in one of 4 static buffers used in turn: a result stays valid
 * until 4 more calls (not thread-safe). */
static inline const char *tu_path(const char *dir, const char *name) {
    static char bufs[4][512];
    static unsigned k;
    char *b = bufs[k++ & 3u];
    snprintf(b, sizeof bufs[0], "%s/%s", dir, name);
    return b;
}

/* Writes n bytes (n may be 0) to path, replacing it. 1 on success, else 0. */
static inline int tu_write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f)
        return 0;
    size_t w = n ? fwrite(data, 1, n, f) : 0;
    return (fclose(f) == 0) && w == n;
}

/* The whole of a file in a new malloc'd buffer (free it), its length in *n
 * (may be NULL); NULL when it cannot be opened or read. */
static inline unsigned char *tu_read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    /* One byte more, always NUL: text files can be searched with strstr. */
    unsigned char *b = malloc(len > 0 ? (size_t)len + 1 : 1);
    if (b && len > 0 && fread(b, 1, (size_t)len, f) != (size_t)len) {
        free(b);
        b = NULL;
    }
    if (b)
        b[len > 0 ? (size_t)len : 0] = 0;
    fclose(f);
    if (n)
        *n = len > 0 ? (size_t)len : 0;
    return b;
}

/* ------------------------------------------------------------------------ */
/* Plugins driven directly: the handshake and a fake host                   */
/* ------------------------------------------------------------------------ */

/* Only set_error, which is all a backend (or a simple layer) calls: it
 * formats the message into msg and counts the call. Pass &h->env to the
 * plugin's slots; set_error finds h from it (env is h's first member, the
 * way the runtime keeps its private data behind the public env). */
typedef struct tu_fake_host {
    nnm_env env;    /* first: set_error casts the env it gets back to tu_fake_host */
    nnm_host host;
    char msg[1024]; /* the last message ("" after tu_fake_host_reset) */
    int n_errors;   /* set_error calls since tu_fake_host_reset */
} tu_fake_host;

static inline nnm_status tu_fake_set_error(nnm_env *env, nnm_status code, const char *fmt, ...) {
    tu_fake_host *h = (tu_fake_host *)(void *)env;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(h->msg, sizeof h->msg, fmt, ap);
    va_end(ap);
    h->n_errors++;
    return code;
}

/* Clears the recorded message and count. */
static inline void tu_fake_host_reset(tu_fake_host *h) {
    h->msg[0] = '\0';
    h->n_errors = 0;
}

/* A host of this ABI version whose only slot is set_error, and its env. */
static inline void tu_fake_host_init(tu_fake_host *h) {
    memset(h, 0, sizeof *h);
    h->host.struct_size = sizeof h->host;
    h->host.abi_major = NNM_ABI_MAJOR;
    h->host.abi_minor = NNM_ABI_MINOR;
    h->host.set_error = tu_fake_set_error;
    h->env.struct_size = sizeof h->env;
    h->env.host = &h->host;
}

/* dlopens the plugin file `path` (RTLD_NOW | RTLD_LOCAL) and calls its entry
 * point at this ABI version, as a host's handshake would. Returns the
 * plugin's descriptor (owned by the plugin, valid until dlclose) and the
 * handle in *dl, which the caller dlcloses; NULL after printing why (*dl is
 * then NULL and nothing stays open). */
static inline const nnm_plugin_desc *tu_plugin_open(const char *path, void **dl) {
    *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (*dl == NULL) {
        fprintf(stderr, "dlopen %s: %s\n", path, dlerror());
        return NULL;
    }
    void *sym = dlsym(*dl, NNM_PLUGIN_ENTRY_SYMBOL);
    nnm_plugin_entry_fn entry = NULL;
    if (sym != NULL)
        memcpy(&entry, &sym, sizeof entry); /* object pointer -> function pointer */
    const nnm_plugin_desc *d = entry != NULL ? entry(NNM_ABI_MAJOR, NNM_ABI_MINOR) : NULL;
    if (d == NULL) {
        fprintf(stderr, "%s: %s\n", path, sym ? "entry refused this ABI" : "no entry symbol");
        dlclose(*dl);
        *dl = NULL;
    }
    return d;
}

/* ------------------------------------------------------------------------ */
/* Tensors                                                                   */
/* ------------------------------------------------------------------------ */

/* tu_tf32/tu_ti64's check: one assertion (st is NNM_OK), printing what
 * failed and ctx's message otherwise. Returns t. */
static inline nnm_tensor *tu_made_(nnm_ctx *ctx, nnm_status st, const char *what, nnm_tensor *t) {
    if (st != NNM_OK)
        fprintf(stderr, "\n  %s: %s: %s\n", what, nnm_status_name(st), nnm_ctx_errmsg(ctx));
    CU_ASSERT_EQUAL(st, NNM_OK);
    return t;
}

/* A new f32 CPU tensor of the given shape holding a copy of data. One
 * assertion (the status is NNM_OK; prints ctx's message otherwise). NULL on
 * failure. */
static inline nnm_tensor *tu_tf32(nnm_ctx *ctx, int32_t ndim, const int64_t *shape,
                                  const float *data) {
    nnm_tensor *t = NULL;
    nnm_status st = nnm_tensor_from_f32(ctx, ndim, shape, data, &t);
    return tu_made_(ctx, st, "nnm_tensor_from_f32", t);
}

/* The same for an i64 tensor (class indices, targets). */
static inline nnm_tensor *tu_ti64(nnm_ctx *ctx, int32_t ndim, const int64_t *shape,
                                  const int64_t *data) {
    nnm_tensor *t = NULL;
    nnm_status st = nnm_tensor_from_i64(ctx, ndim, shape, data, &t);
    return tu_made_(ctx, st, "nnm_tensor_from_i64", t);
}

/* A new malloc'd copy of a tensor's elements as f32 (free it), numel in *n
 * (may be NULL); NULL when t is NULL or cannot be read. */
static inline float *tu_read_f32(nnm_tensor *t, int64_t *n) {
    int64_t numel = nnm_tensor_numel(t);
    if (n != NULL)
        *n = numel;
    if (t == NULL)
        return NULL;
    float *buf = malloc(sizeof(float) * (size_t)(numel > 0 ? numel : 1));
    if (buf != NULL && nnm_tensor_to_f32(t, buf, (size_t)numel) != NNM_OK) {
        free(buf);
        buf = NULL;
    }
    return buf;
}

/* The first element of a contiguous CPU tensor (borrowed, lives as long as
 * t); NULL for another device or a strided tensor. */
static inline void *tu_cpu_data(nnm_tensor *t) {
    const nnm_tensor_desc *d = nnm_tensor_desc_get(t);
    if (d == NULL || d->device.type != NNM_DEVICE_CPU)
        return NULL;
    int64_t st = 1;
    for (int32_t i = d->ndim - 1; i >= 0; i--) {
        if (d->shape[i] != 1 && d->strides[i] != st)
            return NULL;
        st *= d->shape[i];
    }
    return (char *)d->data + d->byte_offset;
}

/* Overwrites a contiguous f32 CPU tensor of n elements (e.g. a parameter)
 * with data, in place. 1 on success; 0 (nothing written) for any other
 * tensor. */
static inline int tu_write_f32(nnm_tensor *t, const float *data, size_t n) {
    const nnm_tensor_desc *d = nnm_tensor_desc_get(t);
    void *p = tu_cpu_data(t);
    if (p == NULL || d->dtype.code != NNM_DTYPE_FLOAT || d->dtype.bits != 32 ||
        (size_t)nnm_tensor_numel(t) != n)
        return 0;
    memcpy(p, data, n * sizeof(float));
    return 1;
}

/* 1 when t has exactly this shape. */
static inline int tu_shape_is(nnm_tensor *t, int32_t ndim, const int64_t *shape) {
    const nnm_tensor_desc *d = nnm_tensor_desc_get(t);
    if (d == NULL || d->ndim != ndim)
        return 0;
    for (int32_t i = 0; i < ndim; i++)
        if (d->shape[i] != shape[i])
            return 0;
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Modules                                                                   */
/* ------------------------------------------------------------------------ */

/* nnm_module_create(ctx, request, cfg) (cfg may be NULL; it stays the
 * caller's). The new module, or NULL after printing the request, the status
 * and ctx's message. No assertion. */
static inline nnm_module *tu_module(nnm_ctx *ctx, const char *request, const nnm_config *cfg) {
    nnm_module *m = NULL;
    nnm_status st = nnm_module_create(ctx, request, cfg, &m);
    if (st != NNM_OK)
        fprintf(stderr, "\n  create %s: %s: %s\n", request, nnm_status_name(st),
                nnm_ctx_errmsg(ctx));
    return m;
}

/* mf written in each encoding reads back (default limits) to a manifest of
 * the same hash. 1 when it does; 0 after printing what went wrong. */
static inline int tu_manifest_reads_back(nnm_ctx *ctx, const nnm_manifest *mf) {
    char want[65], got[65];
    if (nnm_manifest_hash(mf, want) != NNM_OK) return 0;
    for (int f = 0; f < 2; f++) {
        int format = f ? NNM_MANIFEST_JSON : NNM_MANIFEST_MSGPACK;
        void *buf = NULL;
        size_t len = 0;
        nnm_manifest *back = NULL;
        int ok = nnm_manifest_write(mf, format, &buf, &len) == NNM_OK &&
                 nnm_manifest_parse(ctx, buf, len, format, NULL, NULL, &back) == NNM_OK &&
                 nnm_manifest_hash(back, got) == NNM_OK && strcmp(got, want) == 0;
        if (!ok)
            fprintf(stderr, "\n  %s does not read back: %s\n", f ? "JSON" : "msgpack",
                    nnm_ctx_errmsg(ctx));
        nnm_manifest_free(back);
        nnm_free(buf);
        if (!ok) return 0;
    }
    return 1;
}

/* A linear layer through `request` ("linear", "linear@^1", ...) with
 * in_features and out_features; bias 0 or 1 sets the "bias" key, bias < 0
 * leaves it out (the layer's default). As tu_module: NULL on failure. */
static inline nnm_module *tu_linear(nnm_ctx *ctx, const char *request, int64_t in, int64_t out,
                                    int bias) {
    nnm_config *cfg = NULL;
    if (nnm_config_new(&cfg) != NNM_OK)
        return NULL;
    nnm_config_set_int(cfg, "in_features", in);
    nnm_config_set_int(cfg, "out_features", out);
    if (bias >= 0)
        nnm_config_set_bool(cfg, "bias", bias);
    nnm_module *m = tu_module(ctx, request, cfg);
    nnm_config_free(cfg);
    return m;
}

/* Calls a module with one input (tu_call1) or two (tu_call2) and one output:
 * the status; *out is the output (a new reference) or NULL. */
static inline nnm_status tu_call1(nnm_module *m, nnm_tensor *x, nnm_tensor **out) {
    *out = NULL;
    nnm_tensor *in[1] = {x};
    return nnm_module_call(m, in, 1, out, 1);
}

static inline nnm_status tu_call2(nnm_module *m, nnm_tensor *a, nnm_tensor *b,
                                  nnm_tensor **out) {
    *out = NULL;
    nnm_tensor *in[2] = {a, b};
    return nnm_module_call(m, in, 2, out, 1);
}

/* Named tensors in visiting order (parameters, buffers, optimizer state):
 * fill one with tu_named_add as the visitor of nnm_module_named_parameters,
 * nnm_optim_state and the like. The tensors are borrowed from what was
 * visited. */
#define TU_MAX_NAMED 32
typedef struct tu_named {
    int n;
    char names[TU_MAX_NAMED][64];
    nnm_tensor *t[TU_MAX_NAMED];
} tu_named;

/* The visitor: appends (name, t) to the tu_named `user`; NNM_E_LIMIT past
 * TU_MAX_NAMED. */
static inline nnm_status tu_named_add(void *user, const char *name, nnm_tensor *t) {
    tu_named *l = user;
    if (l->n >= TU_MAX_NAMED)
        return NNM_E_LIMIT;
    snprintf(l->names[l->n], sizeof l->names[l->n], "%s", name);
    l->t[l->n] = t;
    l->n++;
    return NNM_OK;
}

/* m's parameters. One assertion: nnm_module_named_parameters succeeded;
 * prints the status and the message otherwise. */
static inline tu_named tu_params_of(nnm_module *m) {
    tu_named l;
    memset(&l, 0, sizeof l);
    nnm_status st = nnm_module_named_parameters(m, tu_named_add, &l);
    if (st != NNM_OK)
        fprintf(stderr, "\n  named_parameters: %s: %s\n", nnm_status_name(st),
                nnm_ctx_errmsg(nnm_module_ctx(m)));
    CU_ASSERT_EQUAL(st, NNM_OK);
    return l;
}

/* The tensor called `name` in l, or NULL. */
static inline nnm_tensor *tu_named_get(const tu_named *l, const char *name) {
    for (int i = 0; i < l->n; i++)
        if (strcmp(l->names[i], name) == 0)
            return l->t[i];
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Deterministic values                                                      */
/* ------------------------------------------------------------------------ */

/* The next value in [-2, 2) of a 32-bit LCG whose state is *state. */
static inline float tu_rand(uint32_t *state) {
    *state = *state * 1664525u + 1013904223u;
    return (float)((*state >> 8) & 0xffff) / 16384.0f - 2.0f;
}

/* n values of tu_rand(state). */
static inline void tu_fill_rand(uint32_t *state, float *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        p[i] = tu_rand(state);
}

/* n uniform values in [lo, hi), the same for the same seed (24-bit steps). */
static inline void tu_fill_uniform(float *p, size_t n, uint32_t seed, double lo, double hi) {
    uint32_t s = seed * 2654435761u + 12345u;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        double u = (double)(s >> 8) / 16777216.0;
        p[i] = (float)(lo + (hi - lo) * u);
    }
}

/* ------------------------------------------------------------------------ */
/* Comparisons                                                               */
/* ------------------------------------------------------------------------ */

/* |got - want| <= atol + rtol * |want|. False whenever either is NaN, and for
 * an infinite want. */
static inline int tu_near(double got, double want, double rtol, double atol) {
    return fabs(got - want) <= atol + rtol * fabs(want);
}

/* tu_near, except that a NaN want matches a NaN got and an infinite want
 * matches the same infinity: for kernels fed NaN and infinities on purpose. */
static inline int tu_match(double got, double want, double rtol, double atol) {
    if (isnan(want))
        return isnan(got);
    if (isinf(want))
        return got == want;
    return tu_near(got, want, rtol, atol);
}

/* tu_count_mismatch's flags. */
#define TU_MATCH_NONFINITE 1u /* compare with tu_match instead of tu_near */

/* The number of elements of got[n] that are not tu_near (or, with
 * TU_MATCH_NONFINITE, tu_match) want[n]. Prints the first 4 under `what`
 * (NULL: "values") and how many differ in all. */
static inline int tu_count_mismatch(const char *what, const float *got, const float *want,
                                    int64_t n, double rtol, double atol, unsigned flags) {
    if (what == NULL)
        what = "values";
    int bad = 0;
    for (int64_t i = 0; i < n; i++) {
        const int ok = (flags & TU_MATCH_NONFINITE) ? tu_match(got[i], want[i], rtol, atol)
                                                    : tu_near(got[i], want[i], rtol, atol);
        if (!ok) {
            if (bad < 4)
                fprintf(stderr, "\n  %s[%lld]: got %.9g want %.9g", what, (long long)i,
                        (double)got[i], (double)want[i]);
            bad++;
        }
    }
    if (bad)
        fprintf(stderr, "\n  %s: %d of %lld elements differ\n", what, bad, (long long)n);
    return bad;
}

#endif /* NNM_TESTS_TEST_UTIL_H */
