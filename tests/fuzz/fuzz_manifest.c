/* tests/fuzz/fuzz_manifest.c - libFuzzer harness over the manifest reader.
 *
 * Each input is parsed as msgpack or JSON (sniffed, as nnm_manifest_load
 * does) with small limits. A document that passes is written back in both
 * encodings, and each is parsed again: both must succeed and give the same
 * hash as the first (the writer's output is canonical). Building is left out:
 * a valid manifest may legitimately ask for a layer of any size.
 * Build with clang:
 *     cmake -DCMAKE_C_COMPILER=clang -DNNM_FUZZ=ON -B build-fuzz && cmake --build build-fuzz
 *     build-fuzz/bin/fuzz_manifest -max_total_time=60 NEW_DIR tests/fuzz/corpus_manifest
 */
#include <nnmod/nnmod.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    nnm_manifest_free(mf);
    return 0;
}
