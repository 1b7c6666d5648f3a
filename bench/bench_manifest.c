/* bench/bench_manifest.c - parse, validate and assemble a 1,000-module
 * manifest.
 *
 * The document: a Sequential of 500 x (Linear(16, 16), ReLU) = 1,001 modules,
 * every child named, written once as JSON and once as msgpack (about 70 KB
 * and 50 KB). Timed separately, medians of REPS runs:
 *   manifest_parse_*   bytes -> validated nnm_manifest (limits, schema,
 *                      plugin resolution, every config checked)
 *   manifest_build     nnm_manifest -> module tree (create of every layer,
 *                      parameters allocated and initialised, finalize)
 *                      (every real build first builds on the meta device)
 *   manifest_build_meta the same on the meta device only (NNM_BUILD_META:
 *                      no parameter memory), what `nnm validate` builds
 *   manifest_total_*   parse + build (target: < 5 ms)
 *   manifest_write_*   nnm_manifest -> bytes
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BENCH_NAME "bench_manifest"
#include "bench_util.h"
#include "nnmod/nnmod.h"

#define REPS 31
#define PAIRS 500

static char *make_json(size_t *len) {
    size_t cap = 256 + (size_t)PAIRS * 200, n = 0;
    char *s = malloc(cap);
    if (!s) exit(1);
    n += (size_t)snprintf(s + n, cap - n,
                          "{\"format\": \"nnmod.manifest\", \"version\": 1, \"plugins\": "
                          "{\"sequential\": \"^1.0\", \"linear\": \"^1.0\", \"relu\": \"^1.0\"}, "
                          "\"root\": {\"type\": \"sequential\", \"children\": [");
    for (int i = 0; i < PAIRS; i++)
        n += (size_t)snprintf(s + n, cap - n,
                              "%s{\"name\": \"fc%d\", \"type\": \"linear\", \"config\": "
                              "{\"in_features\": 16, \"out_features\": 16}}, "
                              "{\"name\": \"act%d\", \"type\": \"relu\"}",
                              i ? ", " : "", i, i);
    n += (size_t)snprintf(s + n, cap - n, "]}}");
    *len = n;
    return s;
}

static void bench_format(nnm_ctx *ctx, const char *tag, const void *doc, size_t len, int format) {
    double parse[REPS], build[REPS], total[REPS], write[REPS], meta[REPS];
    for (int r = 0; r < REPS; r++) {
        nnm_manifest *mf;
        nnm_module *m;
        double t0 = now_s();
        if (nnm_manifest_parse(ctx, doc, len, format, NULL, NULL, &mf)) die(ctx, "parse");
        double t1 = now_s();
        if (nnm_manifest_build(mf, NNM_BUILD_NO_WEIGHTS, &m)) die(ctx, "build");
        double t2 = now_s();
        void *out;
        size_t out_len;
        if (nnm_manifest_write(mf, format, &out, &out_len)) die(ctx, "write");
        double t3 = now_s();
        nnm_module *mm;
        if (nnm_manifest_build(mf, NNM_BUILD_META, &mm)) die(ctx, "build (meta)");
        meta[r] = (now_s() - t3) * 1e3;
        nnm_module_release(mm);
        parse[r] = (t1 - t0) * 1e3;
        build[r] = (t2 - t1) * 1e3;
        total[r] = (t2 - t0) * 1e3;
        write[r] = (t3 - t2) * 1e3;
        nnm_free(out);
        nnm_module_release(m);
        nnm_manifest_free(mf);
    }
    printf("{\"bench\": \"manifest_parse_%s\", \"value\": %.3f, \"unit\": \"ms\", \"bytes\": %zu, "
           "\"modules\": %d, \"reps\": %d}\n",
           tag, median(parse, REPS), len, 2 * PAIRS + 1, REPS);
    printf("{\"bench\": \"manifest_build\", \"value\": %.3f, \"unit\": \"ms\", \"from\": \"%s\", "
           "\"modules\": %d, \"reps\": %d}\n",
           median(build, REPS), tag, 2 * PAIRS + 1, REPS);
    printf("{\"bench\": \"manifest_build_meta\", \"value\": %.3f, \"unit\": \"ms\", \"from\": \"%s\", "
           "\"modules\": %d, \"reps\": %d}\n",
           median(meta, REPS), tag, 2 * PAIRS + 1, REPS);
    printf("{\"bench\": \"manifest_total_%s\", \"value\": %.3f, \"unit\": \"ms\", \"modules\": %d, "
           "\"target\": 5, \"reps\": %d}\n",
           tag, median(total, REPS), 2 * PAIRS + 1, REPS);
    printf("{\"bench\": \"manifest_write_%s\", \"value\": %.3f, \"unit\": \"ms\", \"reps\": %d}\n", tag,
           median(write, REPS), REPS);
}

int main(void) {
    nnm_ctx *ctx;
    if (nnm_ctx_new(NULL, &ctx)) return 1;
    size_t jlen;
    char *json = make_json(&jlen);
    nnm_manifest *mf;
    if (nnm_manifest_parse(ctx, json, jlen, NNM_MANIFEST_JSON, NULL, NULL, &mf)) die(ctx, "parse");
    void *mp;
    size_t mlen;
    if (nnm_manifest_write(mf, NNM_MANIFEST_MSGPACK, &mp, &mlen)) die(ctx, "write");
    nnm_manifest_free(mf);
    bench_format(ctx, "json", json, jlen, NNM_MANIFEST_JSON);
    bench_format(ctx, "msgpack", mp, mlen, NNM_MANIFEST_MSGPACK);
    nnm_free(mp);
    free(json);
    nnm_ctx_free(ctx);
    return 0;
}
