/* tests/fuzz/fuzz_manifest.c - libFuzzer harness over the manifest reader
 * and the builder.
 *
 * Each input is parsed as msgpack or JSON (sniffed, as nnm_manifest_load
 * does) with small limits. A document that passes is written back in both
 * encodings, and each is parsed again: both must succeed and give the same
 * hash as the first (the writer's output is canonical).
 *
 * Then, when every integer in its configs is small (a valid manifest may
 * legitimately ask for a layer of any size, so big ones are not built), it is
 * built without weights: plugin schemas, creates and the graph's wiring
 * (its node strings are a little language of their own) see the input. A
 * build that fails must say why; a tree that builds must describe itself
 * (nnm_manifest_from_module) as a manifest that builds again and describes
 * itself with the same hash.
 *
 * Every parsed document, whatever its sizes, is also built on the meta
 * device (NNM_BUILD_META: shapes, no storage), which is what validation does
 * and what every real build does first: it must either fail with a message
 * or give a tree that describes itself with the same hash, and, when the
 * document is small enough to build for real, the same parameter count,
 * bytes and printed tree as the real build.
 *
 * Build with clang:
 *     cmake -DCMAKE_C_COMPILER=clang -DNNM_FUZZ=ON -B build-fuzz && cmake --build build-fuzz
 *     build-fuzz/bin/fuzz_manifest -max_total_time=60 NEW_DIR tests/fuzz/corpus_manifest
 */
#include <nnmod/nnmod.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* white-box: the parsed modules' configs, to bound what gets built */
#include "runtime/manifest/manifest_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static nnm_ctx *g_ctx;

/* A broken property: say which, so that a CI log shows it without the
 * crash file. */
static void fail(const char *what) {
    fprintf(stderr, "fuzz_manifest: %s: %s\n", what, nnm_ctx_errmsg(g_ctx));
    abort();
}

static void reparse(const nnm_manifest *mf, int format, const char *want) {
    const char *name = format == NNM_MANIFEST_JSON ? "JSON" : "msgpack";
    void *buf = NULL;
    size_t len = 0;
    if (nnm_manifest_write(mf, format, &buf, &len) != NNM_OK) {
        fprintf(stderr, "fuzz_manifest: (%s) ", name);
        fail("a parsed manifest does not write");
    }
    nnm_manifest *again = NULL;
    if (nnm_manifest_parse(g_ctx, buf, len, format, NULL, NULL, &again) != NNM_OK) {
        fprintf(stderr, "fuzz_manifest: (%s) ", name);
        fail("the written manifest does not parse");
    }
    char hash[65];
    if (nnm_manifest_hash(again, hash) != NNM_OK) fail("no hash of the re-read manifest");
    if (strcmp(hash, want) != 0) {
        fprintf(stderr, "fuzz_manifest: (%s) hash %s, want %s\n", name, hash, want);
        abort();
    }
    nnm_manifest_free(again);
    nnm_free(buf);
}

/* Every integer config value within +-64: layers stay a few KB. */
#define FUZZ_MAX_INT 64

static int small_enough(const nnm_manifest *mf) {
    for (uint32_t i = 0; i < mf->n_modules; i++) {
        const nnm_config *cfg = mf->modules[i].cfg;
        for (size_t k = 0; cfg && k < nnm_config_count(cfg); k++) {
            int type = -1;
            const char *key = nnm_config_key(cfg, k, &type);
            const int64_t *v = NULL, *one = NULL;
            int64_t x = 0;
            size_t n = 0;
            if (type == NNM_CONFIG_INT && nnm_config_get_int(cfg, key, &x) == NNM_OK) {
                one = &x;
                n = 1;
            } else if (type == NNM_CONFIG_INTS) {
                nnm_config_get_ints(cfg, key, &v, &n);
                one = v;
            }
            for (size_t j = 0; j < n; j++)
                if (one[j] < -FUZZ_MAX_INT || one[j] > FUZZ_MAX_INT) return 0;
        }
    }
    return 1;
}

/* The meta tree (NULL if the meta build failed) against the real one. */
static void same_as_meta(nnm_module *meta, nnm_module *m) {
    if (!meta) fail("the meta build failed where the real build passed");
    if (nnm_module_num_params(meta) != nnm_module_num_params(m) ||
        nnm_module_nbytes(meta) != nnm_module_nbytes(m))
        fail("the meta tree's parameter count or bytes differ from the real tree's");
    char a[4096], b[4096];
    int64_t na = nnm_module_repr(meta, a, sizeof a), nb = nnm_module_repr(m, b, sizeof b);
    if (na != nb || strcmp(a, b) != 0) fail("the meta tree prints differently from the real tree");
}

/* Builds mf on the meta device; returns the tree or NULL (after checking
 * the failure says why). */
static nnm_module *build_meta(const nnm_manifest *mf) {
    nnm_module *m = NULL;
    if (nnm_manifest_build(mf, NNM_BUILD_META, &m) != NNM_OK) {
        if (m) fail("a failed meta build returned a module");
        if (!nnm_ctx_errmsg(g_ctx)[0]) fail("a failed meta build left no message");
        return NULL;
    }
    if (nnm_module_device(m).type != NNM_DEVICE_META) fail("a meta build is not on the meta device");
    return m;
}

static void build_and_describe(const nnm_manifest *mf, nnm_module *meta) {
    nnm_module *m = NULL;
    if (nnm_manifest_build(mf, NNM_BUILD_NO_WEIGHTS, &m) != NNM_OK) {
        if (m) fail("a failed build returned a module");
        if (!nnm_ctx_errmsg(g_ctx)[0]) fail("a failed build left no message");
        return;
    }
    same_as_meta(meta, m);
    nnm_manifest *d1 = NULL, *d2 = NULL;
    nnm_module *m2 = NULL;
    char h1[65], h2[65];
    if (nnm_manifest_from_module(m, &d1) != NNM_OK) fail("a built tree does not describe itself");
    if (nnm_manifest_build(d1, NNM_BUILD_NO_WEIGHTS, &m2) != NNM_OK)
        fail("a built tree's own manifest does not build");
    if (nnm_manifest_from_module(m2, &d2) != NNM_OK) fail("a rebuilt tree does not describe itself");
    if (nnm_manifest_hash(d1, h1) != NNM_OK || nnm_manifest_hash(d2, h2) != NNM_OK)
        fail("no hash of a described tree");
    if (strcmp(h1, h2) != 0) {
        fprintf(stderr, "fuzz_manifest: describe(build(describe(tree))) hash %s, want %s\n", h2, h1);
        abort();
    }
    nnm_manifest *dm = NULL;
    char hm[65];
    if (nnm_manifest_from_module(meta, &dm) != NNM_OK || nnm_manifest_hash(dm, hm) != NNM_OK)
        fail("the meta tree does not describe itself");
    if (strcmp(hm, h1) != 0) fail("the meta tree describes itself differently from the real tree");
    nnm_manifest_free(dm);
    nnm_manifest_free(d2);
    nnm_manifest_free(d1);
    nnm_module_release(m2);
    nnm_module_release(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_ctx && nnm_ctx_new(NULL, &g_ctx) != NNM_OK) abort();
    nnm_manifest_limits lim = {sizeof lim, 0, 1u << 16, 1u << 14, 1u << 10};
    nnm_manifest *mf = NULL;
    if (nnm_manifest_parse(g_ctx, data, size, NNM_MANIFEST_AUTO, &lim, NULL, &mf) != NNM_OK) {
        if (mf) fail("a failed parse returned a manifest");
        if (!nnm_ctx_errmsg(g_ctx)[0]) fail("a failed parse left no message");
        return 0;
    }
    char hash[65];
    if (nnm_manifest_hash(mf, hash) != NNM_OK) fail("no hash of a parsed manifest");
    reparse(mf, NNM_MANIFEST_MSGPACK, hash);
    reparse(mf, NNM_MANIFEST_JSON, hash);
    nnm_module *meta = build_meta(mf);
    if (small_enough(mf)) build_and_describe(mf, meta);
    nnm_module_release(meta);
    nnm_manifest_free(mf);
    return 0;
}
