/* tests/state/state_test.h - helpers shared by the state suites: a context, a
 * private temp directory (mkdtemp under /tmp, removed at the end), file
 * crafting, status-and-message checks and leak checks. Header-only; each
 * suite includes it once. */
#ifndef NNM_TESTS_STATE_TEST_H
#define NNM_TESTS_STATE_TEST_H

#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* mkdtemp, lstat, strdup, kill, nanosleep */
#endif

#include <CUnit/Basic.h>

#include <nnmod/nnmod.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static nnm_ctx *g_ctx;
static char g_dir[64];

static inline int dir_remove_all(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    struct dirent *e;
    char p[512];
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode))
            dir_remove_all(p);
        else
            unlink(p);
    }
    closedir(d);
    return rmdir(dir);
}

/* Entries of dir whose name contains `needle` ("" counts every entry). */
static inline int dir_count(const char *dir, const char *needle) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strstr(e->d_name, needle)) n++;
    closedir(d);
    return n;
}

static inline int state_suite_init(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/nnm_state_XXXXXX");
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    nnm_status st = nnm_ctx_new(NULL, &g_ctx);
    if (st != NNM_OK) {
        fprintf(stderr, "nnm_ctx_new: %s\n", nnm_status_name(st));
        return 1;
    }
    return 0;
}

static inline int state_suite_clean(void) {
    nnm_ctx_free(g_ctx);
    g_ctx = NULL;
    if (g_dir[0]) dir_remove_all(g_dir);
    return 0;
}

/* A path in the temp dir (rotating static buffers: up to 4 live at once). */
static inline const char *tpath(const char *name) {
    static char bufs[4][256];
    static int k;
    char *b = bufs[k++ & 3];
    snprintf(b, 256, "%s/%s", g_dir, name);
    return b;
}

static inline int write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    size_t w = n ? fwrite(data, 1, n, f) : 0;
    return (fclose(f) == 0) && w == n;
}

static inline unsigned char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(len > 0 ? (size_t)len : 1);
    if (b && len > 0 && fread(b, 1, (size_t)len, f) != (size_t)len) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (n) *n = len > 0 ? (size_t)len : 0;
    return b;
}

/* Writes a safetensors file: header length `hlen` (or the real length when
 * hlen == UINT64_MAX), the header text of `header_len` bytes, and `data_len`
 * data bytes (a byte pattern). */
static inline int craft_n(const char *path, uint64_t hlen, const char *header, size_t header_len,
                   size_t data_len) {
    size_t total = 8 + header_len + data_len;
    unsigned char *b = malloc(total);
    if (!b) return 0;
    if (hlen == UINT64_MAX) hlen = header_len;
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(hlen >> (8 * i));
    memcpy(b + 8, header, header_len);
    for (size_t i = 0; i < data_len; i++) b[8 + header_len + i] = (unsigned char)(i * 7 + 1);
    int ok = write_bytes(path, b, total);
    free(b);
    return ok;
}

static inline int craft(const char *path, const char *header, size_t data_len) {
    return craft_n(path, UINT64_MAX, header, strlen(header), data_len);
}

/* Prints the context's message when a status is not the expected one. */
#define CHECK_STATUS(expr, want)                                                         \
    do {                                                                                 \
        nnm_status got_ = (expr);                                                        \
        if (got_ != (want))                                                              \
            fprintf(stderr, "\n  %s:%d: %s -> %s (want %s): %s\n", __FILE__, __LINE__,    \
                    #expr, nnm_status_name(got_), nnm_status_name(want),                 \
                    nnm_ctx_errmsg(g_ctx));                                              \
        CU_ASSERT_EQUAL(got_, (want));                                                   \
    } while (0)

/* The context's message contains `needle`. */
#define CHECK_MSG(needle)                                                                \
    do {                                                                                 \
        const char *m_ = nnm_ctx_errmsg(g_ctx);                                          \
        if (!strstr(m_, (needle)))                                                       \
            fprintf(stderr, "\n  %s:%d: message \"%s\" lacks \"%s\"\n", __FILE__,         \
                    __LINE__, m_, (needle));                                             \
        CU_ASSERT_PTR_NOT_NULL(strstr(m_, (needle)));                                    \
    } while (0)

typedef struct live_counts {
    uint64_t tensors, modules;
    int ok;
} live_counts;

static inline live_counts live_now(void) {
    nnm_ctx_stats s;
    memset(&s, 0, sizeof s);
    s.struct_size = sizeof s;
    live_counts c = {0, 0, 0};
    if (nnm_ctx_stats_get(g_ctx, &s) == NNM_OK) {
        c.tensors = s.live_tensors;
        c.modules = s.live_modules;
        c.ok = 1;
    }
    return c;
}

#define LEAK_CHECK_BEGIN() const live_counts live_before_ = live_now()
#define LEAK_CHECK_END()                                                                 \
    do {                                                                                 \
        live_counts after_ = live_now();                                                 \
        CU_ASSERT_TRUE(live_before_.ok && after_.ok);                                    \
        CU_ASSERT_EQUAL(after_.tensors, live_before_.tensors);                           \
        CU_ASSERT_EQUAL(after_.modules, live_before_.modules);                           \
    } while (0)

static inline int run_suite(CU_pSuite (*add)(void)) {
    if (CU_initialize_registry() != CUE_SUCCESS) return 1;
    if (add() == NULL) {
        CU_cleanup_registry();
        return 1;
    }
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    const unsigned failed = CU_get_number_of_failures() + CU_get_number_of_suites_failed() +
                            CU_get_number_of_tests_failed();
    CU_cleanup_registry();
    return failed != 0 ? 1 : 0;
}

#endif /* NNM_TESTS_STATE_TEST_H */
