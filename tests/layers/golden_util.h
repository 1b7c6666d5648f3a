/* tests/layers/golden_util.h - what the PyTorch golden runners of
 * tests/layers share (test_layers_golden, test_transformer): metadata and
 * f32 entries of a fixture, comparing a result with a fixture entry,
 * nnmod's repr as PyTorch prints it, and the sorted fixture files of a
 * directory. Header-only, static functions; include after test_util.h. */
#ifndef NNM_TESTS_GOLDEN_UTIL_H
#define NNM_TESTS_GOLDEN_UTIL_H

#include "test_util.h"

#include <dirent.h>

/* What gu_compare compared: tensors and their values. */
static struct {
    int64_t tensors, values;
} g_gu;

/* __metadata__[key] of a fixture, or NULL. */
static const char *gu_meta(nnm_safetensors *st, const char *key) {
    for (uint32_t i = 0; i < nnm_safetensors_metadata_count(st); i++) {
        const char *k = NULL, *v = NULL;
        if (nnm_safetensors_metadata(st, i, &k, &v) == NNM_OK && strcmp(k, key) == 0) return v;
    }
    return NULL;
}

/* A new f32 CPU tensor holding fixture entry `name`, or NULL (absent). */
static nnm_tensor *gu_entry_f32(nnm_ctx *ctx, nnm_safetensors *st, const char *name) {
    nnm_st_entry e = {sizeof e};
    if (nnm_safetensors_find(st, name, &e) != NNM_OK) return NULL;
    nnm_tensor *t = NULL;
    if (nnm_tensor_from_f32(ctx, e.ndim, e.shape, (const float *)e.data, &t) != NNM_OK) return NULL;
    return t;
}

/* 0 when `got` has the shape and values (rtol/atol; NaN and inf where
 * PyTorch has them) of fixture entry `name`, else 1 with a message naming
 * file and what. */
static int gu_compare(const char *file, const char *what, nnm_tensor *got, nnm_safetensors *st,
                      const char *name, double rtol, double atol) {
    nnm_st_entry e = {sizeof e};
    if (nnm_safetensors_find(st, name, &e) != NNM_OK) {
        fprintf(stderr, "\n  %s: no '%s' in the fixture\n", file, name);
        return 1;
    }
    if (got == NULL) {
        fprintf(stderr, "\n  %s: %s: nnmod produced nothing, PyTorch has '%s'\n", file, what, name);
        return 1;
    }
    if (!tu_shape_is(got, e.ndim, e.shape)) {
        fprintf(stderr, "\n  %s: %s: shape differs from PyTorch's\n", file, what);
        return 1;
    }
    int64_t n = 0;
    float *v = tu_read_f32(got, &n);
    char label[256];
    snprintf(label, sizeof label, "%s %s", file, what);
    int bad = v ? tu_count_mismatch(label, v, (const float *)e.data, n, rtol, atol, TU_MATCH_NONFINITE) : 1;
    g_gu.tensors++;
    g_gu.values += n;
    free(v);
    return bad != 0;
}

/* nnm_module_repr's text as PyTorch prints it: without the "  # N params"
 * comments, the closing "Total params" line and trailing newlines nnmod
 * adds. In place. */
static void gu_torch_repr(char *s) {
    char *cut = strstr(s, "\nTotal params:");
    if (cut != NULL) *cut = '\0';
    char *w = s;
    for (const char *p = s; *p;) {
        if (strncmp(p, "  # ", 4) == 0) {
            const char *q = p + 4;
            while (*q >= '0' && *q <= '9') q++;
            if (q > p + 4 && strncmp(q, " params", 7) == 0) {
                p = q + 7;
                continue;
            }
        }
        *w++ = *p++;
    }
    *w = '\0';
    size_t len = strlen(s);
    while (len && s[len - 1] == '\n') s[--len] = 0;
}

static int gu_cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The *.safetensors file names of dir, sorted, strdup'ed into names (at most
 * cap; the caller frees each); the count, or -1 when dir cannot be read. */
static int gu_list_fixtures(const char *dir, char **names, int cap) {
    DIR *d = opendir(dir);
    if (d == NULL) return -1;
    int n = 0;
    for (struct dirent *de; (de = readdir(d)) != NULL && n < cap;) {
        size_t len = strlen(de->d_name);
        if (len > 12 && strcmp(de->d_name + len - 12, ".safetensors") == 0) names[n++] = strdup(de->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof names[0], gu_cmp_str);
    return n;
}

#endif /* NNM_TESTS_GOLDEN_UTIL_H */
