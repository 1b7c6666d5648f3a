/* tests/state/state_test.h - what the state suites (and tests/manifest) share
 * beyond tests/test_util.h: the suite's context (g_ctx, which TU_CTX names)
 * and private temp directory (g_dir: /tmp/nnm_state_XXXXXX, removed with
 * everything in it at the end), counting temp files, crafting safetensors
 * files byte by byte, and reading the PyTorch golden files (where the suite
 * defines NNM_STATE_GOLDEN_DIR). Header-only; each suite includes it once,
 * first. */
#ifndef NNM_TESTS_STATE_TEST_H
#define NNM_TESTS_STATE_TEST_H

#include "test_util.h"

static nnm_ctx *g_ctx;
#define TU_CTX g_ctx
static char g_dir[64];

/* The suite's init: g_dir, then g_ctx. 0, or 1 after printing why. */
static inline int state_suite_init(void) {
    if (tu_tmpdir_new(g_dir, sizeof g_dir, "nnm_state_") != 0)
        return 1;
    return tu_ctx_new(&g_ctx);
}

/* The suite's cleanup: frees g_ctx, removes g_dir and all it holds. */
static inline int state_suite_clean(void) {
    tu_ctx_free(&g_ctx);
    if (g_dir[0])
        tu_dir_remove_all(g_dir);
    return 0;
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

/* Writes a safetensors file: header length `hlen` (or the real length when
 * hlen == UINT64_MAX), the header text of `header_len` bytes, and `data_len`
 * data bytes (a byte pattern). */
static inline int craft_n(const char *path, uint64_t hlen, const char *header,
                          size_t header_len, size_t data_len) {
    size_t total = 8 + header_len + data_len;
    unsigned char *b = malloc(total);
    if (!b) return 0;
    if (hlen == UINT64_MAX) hlen = header_len;
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(hlen >> (8 * i));
    memcpy(b + 8, header, header_len);
    for (size_t i = 0; i < data_len; i++) b[8 + header_len + i] = (unsigned char)(i * 7 + 1);
    int ok = tu_write_file(path, b, total);
    free(b);
    return ok;
}

/* craft_n with the real header length. */
static inline int craft(const char *path, const char *header, size_t data_len) {
    return craft_n(path, UINT64_MAX, header, strlen(header), data_len);
}

/* ------------------------------------------------------------------------ */
/* PyTorch golden files                                                      */
/* ------------------------------------------------------------------------ */

/* Comma-joined sorted list of strings (v is sorted in place); malloc'd (free
 * it), NULL when out of memory. */
static inline char *join_sorted(const char **v, uint32_t n) {
    for (uint32_t i = 1; i < n; i++) /* insertion sort: tiny lists */
        for (uint32_t j = i; j > 0 && strcmp(v[j - 1], v[j]) > 0; j--) {
            const char *t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    size_t len = 1;
    for (uint32_t i = 0; i < n; i++) len += strlen(v[i]) + 1;
    char *out = calloc(1, len);
    for (uint32_t i = 0; out && i < n; i++) {
        if (i) strcat(out, ",");
        strcat(out, v[i]);
    }
    return out;
}

/* The tensor names of a safetensors file, sorted and joined by ','; malloc'd
 * (free it), NULL when the file cannot be read. */
static inline char *file_keys(const char *path) {
    nnm_safetensors *st = NULL;
    if (nnm_safetensors_open(g_ctx, path, &st) != NNM_OK) return NULL;
    uint32_t n = nnm_safetensors_count(st);
    const char **v = calloc(n ? n : 1, sizeof *v);
    char *out = NULL;
    if (v) {
        for (uint32_t i = 0; i < n; i++) {
            nnm_st_entry e;
            e.struct_size = sizeof e;
            if (nnm_safetensors_entry(st, i, &e) != NNM_OK) {
                n = i; /* the names read so far */
                break;
            }
            v[i] = e.name;
        }
        out = join_sorted(v, n);
    }
    free(v);
    nnm_safetensors_close(st);
    return out;
}

#ifdef NNM_STATE_GOLDEN_DIR
/* tests/golden/state/<name> (tu_path's rotating buffers). */
static inline const char *golden(const char *name) { return tu_path(NNM_STATE_GOLDEN_DIR, name); }

/* PyTorch's state_dict keys, recorded by the script in the *_io file's
 * __metadata__["state_dict_keys"], sorted and joined by ','; malloc'd (free
 * it), NULL when missing. */
static inline char *torch_keys(const char *io_file) {
    nnm_safetensors *st = NULL;
    if (nnm_safetensors_open(g_ctx, golden(io_file), &st) != NNM_OK) return NULL;
    const char *k, *v = NULL;
    for (uint32_t i = 0; i < nnm_safetensors_metadata_count(st); i++)
        if (nnm_safetensors_metadata(st, i, &k, &v) == NNM_OK && !strcmp(k, "state_dict_keys"))
            break;
        else
            v = NULL;
    char *copy = v ? strdup(v) : NULL;
    nnm_safetensors_close(st);
    if (!copy) return NULL;
    const char *parts[64];
    uint32_t n = 0;
    char *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok && n < 64; tok = strtok_r(NULL, ",", &save))
        parts[n++] = tok;
    char *out = join_sorted(parts, n);
    free(copy);
    return out;
}
#endif

#endif /* NNM_TESTS_STATE_TEST_H */
