/* tests/manifest/test_meta.c - the meta device and what builds on it
 * (issue 9 section 4): validating a manifest allocates no parameter memory
 * (PyTorch's device="meta": shapes and dtypes, no storage), the total
 * parameter bytes a real build may allocate is bounded by
 * limits.max_param_bytes and refused before allocation, every build checks
 * dotted-name lengths with the document path, and any file a manifest names
 * must be a regular file before anything reads it (a FIFO or /dev/zero used
 * to hang). */
#include "state/state_test.h"

#include <errno.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>

#if defined(__SANITIZE_ADDRESS__)
#define META_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define META_SANITIZED 1
#endif
#endif
#ifndef META_SANITIZED
#define META_SANITIZED 0
#endif

#define HDR "\"format\": \"nnmod.manifest\", \"version\": 1, "
#define PLUG "\"plugins\": {\"sequential\": \"^1.0\", \"linear\": \"^1.0\", \"relu\": \"^1.0\"}, "

/* 10 x Linear(83666, 83666): 70,000,832,220 parameters, 280 GB of f32. */
#define BIG_F 83666LL
#define BIG_LAYERS 10
#define BIG_PARAMS (BIG_LAYERS * (BIG_F * BIG_F + BIG_F))

static char *big_manifest(void) {
    size_t cap = 4096;
    char *s = malloc(cap);
    if (!s) return NULL;
    size_t n = (size_t)snprintf(s, cap, "{" HDR PLUG "\"root\": {\"type\": \"sequential\", \"children\": [");
    for (int i = 0; i < BIG_LAYERS; i++)
        n += (size_t)snprintf(s + n, cap - n,
                              "%s{\"type\": \"linear\", \"config\": {\"in_features\": %lld, "
                              "\"out_features\": %lld}}",
                              i ? ", " : "", BIG_F, BIG_F);
    snprintf(s + n, cap - n, "]}}");
    return s;
}

static nnm_manifest *parse(const char *text, const nnm_manifest_limits *lim) {
    nnm_manifest *mf = NULL;
    nnm_status st = nnm_manifest_parse(g_ctx, text, strlen(text), NNM_MANIFEST_JSON, lim, g_dir, &mf);
    if (st) fprintf(stderr, "\n  parse failed: %s\n", nnm_ctx_errmsg(g_ctx));
    return mf;
}

/* ---- the meta device ------------------------------------------------------ */

static void test_validate_70b_on_meta(void) {
    LEAK_CHECK_BEGIN();
    char *text = big_manifest();
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    /* Validation applies the limit a real build would (one set of checks),
     * so a caller who means to build it raises limits.max_param_bytes. */
    nnm_manifest_limits lim;
    memset(&lim, 0, sizeof lim);
    lim.struct_size = sizeof lim;
    lim.max_param_bytes = (uint64_t)300 << 30;
    nnm_manifest *mf = parse(text, &lim);
    CU_ASSERT_PTR_NOT_NULL_FATAL(mf);
    const nnm_ctx_stats before = tu_stats(g_ctx);
    nnm_module *m = NULL;
    CHECK_STATUS(nnm_manifest_build(mf, NNM_BUILD_META, &m), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    const nnm_ctx_stats after = tu_stats(g_ctx);
    /* the tree is complete: names, shapes, counts, bytes */
    CU_ASSERT_EQUAL(nnm_module_num_params(m), BIG_PARAMS);
    CU_ASSERT_EQUAL(nnm_module_nbytes(m), (uint64_t)BIG_PARAMS * 4u);
    CU_ASSERT_EQUAL(nnm_module_device(m).type, NNM_DEVICE_META);
    nnm_module *fc = nnm_module_get(m, "9");
    CU_ASSERT_PTR_NOT_NULL_FATAL(fc);
    CU_ASSERT_EQUAL(nnm_module_device(fc).type, NNM_DEVICE_META);
    /* ... and no parameter memory: the allocator was never asked */
    CU_ASSERT_EQUAL(after.bytes_in_use, before.bytes_in_use);
    CU_ASSERT_EQUAL(after.heap_allocs, before.heap_allocs);
    nnm_module_release(m);

    nnm_manifest_free(mf);

    /* With the default limit (16 GiB), validating and building are refused
     * alike, before anything is allocated. */
    mf = parse(text, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(mf);
    m = (nnm_module *)1;
    CHECK_STATUS(nnm_manifest_build(mf, NNM_BUILD_META, &m), NNM_E_LIMIT);
    CU_ASSERT_PTR_NULL(m);
    m = (nnm_module *)1;
    CHECK_STATUS(nnm_manifest_build(mf, NNM_BUILD_NO_WEIGHTS, &m), NNM_E_LIMIT);
    CU_ASSERT_PTR_NULL(m);
    char want[200];
    snprintf(want, sizeof want, "root: the model's parameters and buffers would take %lld bytes, "
             "more than 17179869184 (limits.max_param_bytes); nothing was allocated", BIG_PARAMS * 4);
    CHECK_MSG(want);
    CU_ASSERT_EQUAL(tu_stats(g_ctx).heap_allocs, before.heap_allocs);
    nnm_manifest_free(mf);
    free(text);
    LEAK_CHECK_END();
}

/* VmSize of this process, in bytes (0 if unknown). */
static uint64_t vm_size(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long pages = 0;
    if (!f) return 0;
    if (fscanf(f, "%llu", &pages) != 1) pages = 0;
    fclose(f);
    return (uint64_t)pages * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* The same validation under an address-space limit of what the process
 * already maps plus 64 MB: a build that allocated even one of its 28 GB
 * weights would fail. (Skipped under AddressSanitizer, whose shadow memory
 * cannot live under RLIMIT_AS; the allocator counts above still hold.) */
static void test_validate_70b_under_rlimit(void) {
    if (META_SANITIZED) return;
    char *text = big_manifest();
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    const uint64_t vm = vm_size();
    CU_ASSERT_FATAL(vm > 0);
    fflush(NULL);
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        struct rlimit rl = {vm + (64u << 20), vm + (64u << 20)};
        if (setrlimit(RLIMIT_AS, &rl) != 0) _exit(10);
        void *probe = malloc((size_t)1 << 30); /* the limit really bites */
        if (probe) _exit(11);
        nnm_manifest *mf = NULL;
        nnm_manifest_limits lim;
        memset(&lim, 0, sizeof lim);
        lim.struct_size = sizeof lim;
        lim.max_param_bytes = (uint64_t)300 << 30;
        if (nnm_manifest_parse(g_ctx, text, strlen(text), NNM_MANIFEST_JSON, &lim, NULL, &mf)) _exit(12);
        nnm_module *m = NULL;
        if (nnm_manifest_build(mf, NNM_BUILD_META, &m)) _exit(13);
        if (nnm_module_num_params(m) != BIG_PARAMS) _exit(14);
        nnm_module_release(m);
        /* a real build under this limit fails for want of memory, cleanly */
        if (nnm_manifest_build(mf, 0, &m) != NNM_E_NOMEM || m) _exit(15);
        nnm_manifest_free(mf);
        _exit(0);
    }
    int status = 0;
    CU_ASSERT_EQUAL(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status))
        fprintf(stderr, "\n  child status %d (exit %d)\n", status, WEXITSTATUS(status));
    CU_ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    free(text);
}

static void test_limit_override(void) {
    LEAK_CHECK_BEGIN();
    const char *text = "{" HDR PLUG "\"root\": {\"type\": \"sequential\", \"children\": ["
                       "{\"type\": \"linear\", \"config\": {\"in_features\": 4, \"out_features\": 8}},"
                       "{\"type\": \"linear\", \"config\": {\"in_features\": 8, \"out_features\": 3}}]}}";
    /* (4*8+8 + 8*3+3) * 4 = 268 bytes */
    nnm_manifest_limits lim;
    memset(&lim, 0, sizeof lim);
    lim.struct_size = sizeof lim;
    lim.max_param_bytes = 267;
    nnm_manifest *mf = parse(text, &lim);
    CU_ASSERT_PTR_NOT_NULL_FATAL(mf);
    nnm_module *m = NULL;
    CHECK_STATUS(nnm_manifest_build(mf, 0, &m), NNM_E_LIMIT);
    CHECK_MSG("would take 268 bytes, more than 267 (limits.max_param_bytes)");
    /* validation applies the same limit (one set of checks) */
    CHECK_STATUS(nnm_manifest_build(mf, NNM_BUILD_META, &m), NNM_E_LIMIT);
    nnm_manifest_free(mf);
    lim.max_param_bytes = 268;
    mf = parse(text, &lim);
    CU_ASSERT_PTR_NOT_NULL_FATAL(mf);
    CHECK_STATUS(nnm_manifest_build(mf, 0, &m), NNM_OK);
    CU_ASSERT_EQUAL(nnm_module_nbytes(m), 268u);
    CU_ASSERT_EQUAL(nnm_module_device(m).type, NNM_DEVICE_CPU);
    nnm_module_release(m);
    nnm_manifest_free(mf);
    /* an old caller's struct (without the field) gets the default */
    lim.struct_size = (uint32_t)offsetof(nnm_manifest_limits, max_param_bytes);
    lim.max_param_bytes = 1;
    mf = parse(text, &lim);
    CU_ASSERT_PTR_NOT_NULL_FATAL(mf);
    CHECK_STATUS(nnm_manifest_build(mf, 0, &m), NNM_OK);
    nnm_module_release(m);
    nnm_manifest_free(mf);
    LEAK_CHECK_END();
}

static nnm_status grab_first(void *user, const char *name, nnm_tensor *t) {
    (void)name;
    if (!*(nnm_tensor **)user) *(nnm_tensor **)user = t;
    return NNM_OK;
}

static void test_meta_module_api(void) {
    LEAK_CHECK_BEGIN();
    nnm_config *cfg = NULL;
    CHECK_STATUS(nnm_config_new(&cfg), NNM_OK);
    nnm_config_set_int(cfg, "in_features", 3);
    nnm_config_set_int(cfg, "out_features", 2);
    const nnm_device meta = {NNM_DEVICE_META, 0};
    nnm_module *m = NULL;
    CHECK_STATUS(nnm_module_create_on(g_ctx, "linear", cfg, meta, &m), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_EQUAL(nnm_module_num_params(m), 8);
    nnm_tensor *w = NULL;
    CHECK_STATUS(nnm_module_named_parameters(m, grab_first, &w), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(w);
    const nnm_tensor_desc *d = nnm_tensor_desc_get(w);
    CU_ASSERT_PTR_NULL(d->data); /* shape and dtype only */
    CU_ASSERT_EQUAL(d->ndim, 2);
    CU_ASSERT_TRUE(d->shape[0] == 2 && d->shape[1] == 3);
    CU_ASSERT_EQUAL(d->device.type, NNM_DEVICE_META);
    /* calling it is refused: nothing computes on meta */
    const int64_t xs[2] = {1, 3};
    nnm_tensor *x = tu_tf32(g_ctx, 2, xs, NULL);
    nnm_tensor *y = (nnm_tensor *)1;
    nnm_status st = nnm_module_call(m, &x, 1, &y, 1);
    CU_ASSERT_NOT_EQUAL(st, NNM_OK);
    CU_ASSERT_PTR_NULL(y);
    /* neither saved, nor moved off meta, nor loaded */
    CHECK_STATUS(nnm_module_save(m, tu_path(g_dir, "meta.safetensors"), 0, NULL), NNM_E_DEVICE);
    CHECK_MSG("meta device");
    CU_ASSERT_EQUAL(dir_count(g_dir, "meta.safetensors"), 0);
    CHECK_STATUS(nnm_module_to(m, (nnm_device){NNM_DEVICE_CPU, 0}), NNM_E_DEVICE);
    CHECK_MSG("meta device has no data");
    nnm_module_release(m);

    /* other devices are refused at create; a CPU module moves to meta
     * (PyTorch's .to("meta")) and its memory goes back */
    CHECK_STATUS(nnm_module_create_on(g_ctx, "linear", cfg, (nnm_device){NNM_DEVICE_CUDA, 0}, &m),
                 NNM_E_DEVICE);
    CU_ASSERT_PTR_NULL(m);
    CHECK_STATUS(nnm_module_create(g_ctx, "linear", cfg, &m), NNM_OK);
    const uint64_t in_use = tu_stats(g_ctx).bytes_in_use;
    CHECK_STATUS(nnm_module_to(m, meta), NNM_OK);
    CU_ASSERT_TRUE(tu_stats(g_ctx).bytes_in_use < in_use);
    CU_ASSERT_EQUAL(nnm_module_nbytes(m), 32u);
    nnm_module_release(m);
    nnm_tensor_release(x);

    /* a meta tensor: shape, no data; reading it is refused */
    const int64_t s[2] = {1000000, 1000000}, s1[1] = {1};
    nnm_tensor *t = NULL;
    CHECK_STATUS(nnm_tensor_new(g_ctx, meta, (nnm_dtype){NNM_DTYPE_FLOAT, 32, 1}, 2, s, &t), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    CU_ASSERT_PTR_NULL(nnm_tensor_desc_get(t)->data);
    CU_ASSERT_EQUAL(nnm_tensor_numel(t), 1000000LL * 1000000LL);
    nnm_tensor *small = NULL;
    CHECK_STATUS(nnm_tensor_new(g_ctx, meta, (nnm_dtype){NNM_DTYPE_FLOAT, 32, 1}, 1, s1, &small), NNM_OK);
    float f;
    CHECK_STATUS(nnm_tensor_to_f32(small, &f, 1), NNM_E_DEVICE);
    CHECK_MSG("meta device");
    nnm_tensor_release(small);
    nnm_dlpack_tensor *dl = (nnm_dlpack_tensor *)1;
    CHECK_STATUS(nnm_tensor_to_dlpack(t, &dl), NNM_E_DEVICE);
    CU_ASSERT_PTR_NULL(dl);
    nnm_tensor *u = NULL;
    CHECK_STATUS(nnm_op_unary(g_ctx, NNM_UNARY_RELU, t, 0.0, &u), NNM_E_DEVICE);
    CU_ASSERT_PTR_NULL(u);
    nnm_tensor_release(t);
    nnm_config_free(cfg);
    LEAK_CHECK_END();
}

/* ---- one set of checks: names ------------------------------------------- */

/* A sequential nesting `depth` sequentials named with `len` 'a's, the
 * innermost holding one linear named "fc". */
static char *deep_names(int depth, size_t len) {
    size_t cap = 256 + (size_t)depth * (len + 128);
    char *s = malloc(cap), *name = malloc(len + 1);
    if (!s || !name) return NULL;
    memset(name, 'a', len);
    name[len] = 0;
    size_t n = (size_t)snprintf(s, cap, "{" HDR PLUG "\"root\": {\"type\": \"sequential\", \"children\": [");
    for (int i = 0; i < depth; i++)
        n += (size_t)snprintf(s + n, cap - n, "{\"name\": \"%s\", \"type\": \"sequential\", \"children\": [",
                              name);
    n += (size_t)snprintf(s + n, cap - n,
                          "{\"name\": \"fc\", \"type\": \"linear\", \"config\": {\"in_features\": 1, "
                          "\"out_features\": 1}}");
    for (int i = 0; i < depth; i++) n += (size_t)snprintf(s + n, cap - n, "]}");
    snprintf(s + n, cap - n, "]}}");
    free(name);
    return s;
}

static void test_name_limits(void) {
    LEAK_CHECK_BEGIN();
    /* 5 x 250 bytes: the fifth level's dotted name is 1254 bytes. Refused
     * when the document is read (so by validate, run and inspect alike),
     * naming the module's path; it used to pass parsing and building and
     * fail only in a later walk, without a path. */
    char *text = deep_names(5, 250);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    nnm_manifest *mf = (nnm_manifest *)1;
    CHECK_STATUS(nnm_manifest_parse(g_ctx, text, strlen(text), NNM_MANIFEST_JSON, NULL, NULL, &mf),
                 NNM_E_LIMIT);
    CU_ASSERT_PTR_NULL(mf);
    CHECK_MSG("root.children[0].children[0].children[0].children[0].children[0].name: the module's "
              "dotted name would be 1254 bytes, more than 1023 (NNM_NAME_MAX)");
    free(text);
    /* 4 x 253 + 3 dots = 1015, + ".fc" = 1018: fits; + ".weight": 1025 does
     * not, and the build (meta pass) says so with the path */
    text = deep_names(4, 253);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    mf = parse(text, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(mf);
    nnm_module *m = (nnm_module *)1;
    CHECK_STATUS(nnm_manifest_build(mf, NNM_BUILD_META, &m), NNM_E_LIMIT);
    CU_ASSERT_PTR_NULL(m);
    CHECK_MSG("root.children[0].children[0].children[0].children[0].children[0] (linear): parameter "
              "'weight': its dotted name would be 1025 bytes, more than 1023");
    CHECK_STATUS(nnm_manifest_build(mf, 0, &m), NNM_E_LIMIT);
    nnm_manifest_free(mf);
    free(text);
    /* 4 x 251: ".weight" ends at 1017 bytes: builds, and every walk works */
    text = deep_names(4, 251);
    mf = parse(text, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(mf);
    CHECK_STATUS(nnm_manifest_build(mf, 0, &m), NNM_OK);
    CHECK_STATUS(nnm_module_save(m, tu_path(g_dir, "deep.safetensors"), 0, NULL), NNM_OK);
    nnm_module_release(m);
    nnm_manifest_free(mf);
    free(text);
    LEAK_CHECK_END();
}

/* ---- regular files -------------------------------------------------------- */

static void weights_refused(const char *weights, const char *needle) {
    char text[1024];
    snprintf(text, sizeof text,
             "{" HDR PLUG "\"root\": {\"type\": \"linear\", \"config\": {\"in_features\": 1, "
             "\"out_features\": 1}}, \"weights\": {\"path\": \"%s\", \"sha256\": "
             "\"0000000000000000000000000000000000000000000000000000000000000000\"}}",
             weights);
    nnm_manifest *mf = parse(text, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(mf);
    nnm_module *m = (nnm_module *)1;
    CHECK_STATUS(nnm_manifest_build(mf, 0, &m), NNM_E_IO);
    CU_ASSERT_PTR_NULL(m);
    CHECK_MSG(needle);
    nnm_manifest_free(mf);
}

static void test_weights_must_be_regular(void) {
    LEAK_CHECK_BEGIN();
    /* /dev/zero with a sha256 used to hash forever */
    weights_refused("/dev/zero", "weights: /dev/zero: is a character device, not a regular file");
    /* a FIFO used to block in open() (nobody writes to it) */
    const char *fifo = tu_path(g_dir, "weights.fifo");
    CU_ASSERT_EQUAL_FATAL(mkfifo(fifo, 0600), 0);
    weights_refused("weights.fifo", "weights.fifo: is a FIFO, not a regular file");
    /* a directory */
    weights_refused(".", "is a directory, not a regular file");
    /* the manifest itself, from a FIFO: refused without blocking */
    nnm_manifest *mf = (nnm_manifest *)1;
    CHECK_STATUS(nnm_manifest_load(g_ctx, fifo, NNM_MANIFEST_AUTO, NULL, &mf), NNM_E_IO);
    CU_ASSERT_PTR_NULL(mf);
    CHECK_MSG("is a FIFO, not a regular file");
    unlink(fifo);
    LEAK_CHECK_END();
}

int main(void) {
    CU_pSuite s = tu_suite("meta", state_suite_init, state_suite_clean);
    if (!s) return 1;
    CU_add_test(s, "70B-parameter manifest validated on the meta device", test_validate_70b_on_meta);
    CU_add_test(s, "the same under RLIMIT_AS", test_validate_70b_under_rlimit);
    CU_add_test(s, "limits.max_param_bytes: default and override", test_limit_override);
    CU_add_test(s, "meta modules and tensors", test_meta_module_api);
    CU_add_test(s, "dotted-name limits with document paths", test_name_limits);
    CU_add_test(s, "files a manifest names must be regular", test_weights_must_be_regular);
    return tu_run();
}
