/* tests/hostile/hostile_fixture.c - hostile inputs for nnm train, eval and
 * predict (test_hostile_cli.sh), made at test time:
 *
 *   hostile_fixture data DIR
 *       a small learnable dataset (8x8 u8 images, 10 classes: train 300
 *       samples gzipped IDX, test 100 plain IDX) and its manifest mlp.json,
 *       then the hostile variants: wrap.json (an input_shape whose product
 *       wraps to 0), del_names.json (class names holding DEL and C1 bytes),
 *       nan-test.safetensors (f32 inputs, sample 7 holds a NaN),
 *       nan-input.safetensors (one f32 input with an infinity),
 *       ignored.safetensors (every 4th test target is -100),
 *       bad-label.safetensors (sample 3's target is 2^63 - 1),
 *       zero-width.idx (12 bytes: 10^8 samples of no values).
 *   hostile_fixture meta IN OUT KEY=VALUE...
 *       copies the safetensors file IN to OUT with its __metadata__ keys set
 *       (KEY= with nothing after removes KEY); tensors unchanged.
 *   hostile_fixture bomb PATH N_SAMPLES ZERO_MIB [labels]
 *       a gzip bomb (bomb.h): an IDX header declaring N_SAMPLES samples of
 *       28x28 u8 (or, with "labels", N_SAMPLES u8 labels), then ZERO_MIB MiB
 *       of zeros.
 *   hostile_fixture labels PATH N
 *       a plain IDX file of N u8 labels (i % 10).
 *   hostile_fixture rss OUTFILE CMD ARGS...
 *       runs CMD, waits for it (wait4) and writes "STATUS MAXRSS_KIB" to
 *       OUTFILE: the exit status (128 + signal when killed) and its peak
 *       resident memory, which getrusage reports for the child.
 */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "bomb.h"

static int fail(const char *what) {
    fprintf(stderr, "hostile_fixture: %s\n", what);
    return 1;
}

static uint32_t rng = 4242;
static uint32_t next(void) {
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return rng;
}

static void make(unsigned char *img, unsigned char *lab, int n) {
    for (int s = 0; s < n; s++) {
        int c = (int)(next() % 10);
        lab[s] = (unsigned char)c;
        unsigned char *p = img + 64 * s;
        for (int i = 0; i < 64; i++) p[i] = (unsigned char)(next() % 90);
        int r0 = (c / 4) * 2, c0 = (c % 4) * 2;
        for (int dr = 0; dr < 2; dr++)
            for (int dc = 0; dc < 2; dc++) p[(r0 + dr) * 8 + c0 + dc] = (unsigned char)(160 + next() % 96);
    }
}

static int put(const char *path, int gz, const void *a, size_t na, const void *b, size_t nb) {
    if (gz) {
        gzFile f = gzopen(path, "wb");
        if (!f) return fail(path);
        int ok = gzwrite(f, a, (unsigned)na) == (int)na && gzwrite(f, b, (unsigned)nb) == (int)nb;
        return gzclose(f) != Z_OK || !ok ? fail(path) : 0;
    }
    FILE *f = fopen(path, "wb");
    if (!f) return fail(path);
    int ok = fwrite(a, 1, na, f) == na && (!nb || fwrite(b, 1, nb, f) == nb);
    return fclose(f) || !ok ? fail(path) : 0;
}

/* A safetensors file of an inputs tensor (dtype, shape [n, per]) and an I64
 * targets tensor [n]. */
static int put_st(const char *path, const char *dtype, size_t esize, int n, int per,
                  const void *inputs, const int64_t *targets) {
    char head[512];
    size_t tb = 8 * (size_t)n, ib = esize * (size_t)n * (size_t)per;
    int hl = snprintf(head, sizeof head,
                      "{\"targets\":{\"dtype\":\"I64\",\"shape\":[%d],\"data_offsets\":[0,%zu]},"
                      "\"inputs\":{\"dtype\":\"%s\",\"shape\":[%d,%d],\"data_offsets\":[%zu,%zu]}}",
                      n, tb, dtype, n, per, tb, tb + ib);
    while (hl % 8) head[hl++] = ' ';
    FILE *f = fopen(path, "wb");
    if (!f) return fail(path);
    uint64_t len = (uint64_t)hl;
    fwrite(&len, 8, 1, f);
    fwrite(head, 1, (size_t)hl, f);
    fwrite(targets, 8, (size_t)n, f);
    fwrite(inputs, esize, (size_t)n * (size_t)per, f);
    return fclose(f) ? fail(path) : 0;
}

static int write_manifest(const char *dir, const char *name, const char *shape,
                          const char *class_names) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) return fail(path);
    fprintf(f,
            "{\"format\": \"nnmod.manifest\", \"version\": 1,\n"
            " \"plugins\": {\"sequential\": \"^1.0\", \"linear\": \"^1.0\", \"relu\": \"^1.0\"},\n"
            " \"root\": {\"type\": \"sequential\", \"children\": [\n"
            "  {\"name\": \"fc1\", \"type\": \"linear\", \"config\": {\"in_features\": 64, \"out_features\": 32}},\n"
            "  {\"name\": \"act\", \"type\": \"relu\"},\n"
            "  {\"name\": \"fc2\", \"type\": \"linear\", \"config\": {\"in_features\": 32, \"out_features\": 10}}]},\n"
            " \"metadata\": {\"class_names\": \"%s\"},\n"
            " \"training\": {\"train_data\": [\"train-images.idx.gz\", \"train-labels.idx.gz\"],\n"
            "  \"test_data\": [\"test-images.idx\", \"test-labels.idx\"], \"input_shape\": %s,\n"
            "  \"optimizer\": \"adam\", \"lr\": 0.003, \"batch_size\": 32, \"epochs\": 2,\n"
            "  \"loss\": \"cross_entropy\", \"seed\": 5}}\n",
            class_names, shape);
    return fclose(f) ? fail(path) : 0;
}

static int cmd_data(const char *dir) {
    enum { NTR = 300, NTE = 100 };
    unsigned char img[NTR * 64], lab[NTR], h[32];
    char path[1024];
    make(img, lab, NTR);
    uint32_t di[3] = {NTR, 8, 8}, dl[1] = {NTR};
    snprintf(path, sizeof path, "%s/train-images.idx.gz", dir);
    if (put(path, 1, h, hx_idx_header(h, 0x08, 3, di), img, sizeof img)) return 1;
    snprintf(path, sizeof path, "%s/train-labels.idx.gz", dir);
    if (put(path, 1, h, hx_idx_header(h, 0x08, 1, dl), lab, NTR)) return 1;
    make(img, lab, NTE);
    di[0] = dl[0] = NTE;
    snprintf(path, sizeof path, "%s/test-images.idx", dir);
    if (put(path, 0, h, hx_idx_header(h, 0x08, 3, di), img, NTE * 64)) return 1;
    snprintf(path, sizeof path, "%s/test-labels.idx", dir);
    if (put(path, 0, h, hx_idx_header(h, 0x08, 1, dl), lab, NTE)) return 1;
    static const char names[] = "c0,c1,c2,c3,c4,c5,c6,c7,c8,c9";
    if (write_manifest(dir, "mlp.json", "[64]", names)) return 1;
    /* 2^32 x 2^32 wraps to 0 in 64 bits: once a division by zero */
    if (write_manifest(dir, "wrap.json", "[4294967296, 4294967296]", names)) return 1;
    /* DEL, a C1 CSI (U+009B) and ESC in class names (JSON escapes) */
    if (write_manifest(dir, "del_names.json", "[64]",
                       "c0\\u007f,c1\\u009b31m,c2\\u001b[2J,c3,c4,c5,c6,c7,c8,c9"))
        return 1;

    int64_t t[NTE];
    float fx[NTE * 64];
    for (int s = 0; s < NTE; s++) {
        t[s] = lab[s];
        for (int i = 0; i < 64; i++) fx[s * 64 + i] = img[s * 64 + i];
    }
    fx[7 * 64 + 5] = NAN;
    snprintf(path, sizeof path, "%s/nan-test.safetensors", dir);
    if (put_st(path, "F32", 4, NTE, 64, fx, t)) return 1;
    fx[7 * 64 + 5] = 1;
    fx[0 * 64 + 2] = INFINITY;
    snprintf(path, sizeof path, "%s/nan-input.safetensors", dir);
    if (put_st(path, "F32", 4, 1, 64, fx, t)) return 1;
    for (int s = 0; s < NTE; s++) t[s] = s % 4 == 0 ? -100 : lab[s];
    snprintf(path, sizeof path, "%s/ignored.safetensors", dir);
    if (put_st(path, "U8", 1, NTE, 64, img, t)) return 1;
    for (int s = 0; s < NTE; s++) t[s] = lab[s];
    t[3] = INT64_MAX;
    snprintf(path, sizeof path, "%s/bad-label.safetensors", dir);
    if (put_st(path, "U8", 1, NTE, 64, img, t)) return 1;
    /* 12 bytes: 10^8 samples of shape [0] */
    uint32_t dz[2] = {100000000u, 0};
    snprintf(path, sizeof path, "%s/zero-width.idx", dir);
    if (put(path, 0, h, hx_idx_header(h, 0x08, 2, dz), NULL, 0)) return 1;
    return 0;
}

/* ---- meta: rewrite a safetensors file's __metadata__ ------------------------ */

static int cmd_meta(const char *in, const char *out, int n, char **kv) {
    FILE *f = fopen(in, "rb");
    if (!f) return fail(in);
    uint64_t hl;
    if (fread(&hl, 8, 1, f) != 1 || hl > 100000000u) return fail("bad header length");
    char *head = malloc(hl + 1);
    if (!head || fread(head, 1, hl, f) != hl) return fail("short header");
    head[hl] = 0;
    json_error_t je;
    json_t *doc = json_loads(head, 0, &je);
    if (!doc) return fail("header is not JSON");
    json_t *meta = json_object_get(doc, "__metadata__");
    if (!meta) {
        meta = json_object();
        json_object_set_new(doc, "__metadata__", meta);
    }
    for (int i = 0; i < n; i++) {
        char *eq = strchr(kv[i], '=');
        if (!eq) return fail("expected KEY=VALUE");
        *eq = 0;
        if (!eq[1]) json_object_del(meta, kv[i]);
        else json_object_set_new(meta, kv[i], json_string(eq + 1));
    }
    char *text = json_dumps(doc, JSON_COMPACT);
    size_t tl = strlen(text), pad = (8 - tl % 8) % 8;
    FILE *o = fopen(out, "wb");
    if (!o) return fail(out);
    uint64_t nl = tl + pad;
    fwrite(&nl, 8, 1, o);
    fwrite(text, 1, tl, o);
    for (size_t i = 0; i < pad; i++) fputc(' ', o);
    char buf[65536];
    size_t r;
    while ((r = fread(buf, 1, sizeof buf, f)) > 0) fwrite(buf, 1, r, o);
    fclose(f);
    free(text);
    free(head);
    json_decref(doc);
    return fclose(o) ? fail(out) : 0;
}

/* ---- rss: a command's exit status and peak memory ----------------------------- */

static int cmd_rss(const char *outfile, char **argv) {
    pid_t pid = fork();
    if (pid < 0) return fail("fork");
    if (pid == 0) {
        execv(argv[0], argv);
        _exit(127);
    }
    int status = 0;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) != pid) return fail("wait4");
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    FILE *o = fopen(outfile, "w");
    if (!o) return fail(outfile);
    fprintf(o, "%d %ld\n", code, ru.ru_maxrss); /* KiB on Linux */
    return fclose(o) ? fail(outfile) : 0;
}

int main(int argc, char **argv) {
    if (argc >= 3 && !strcmp(argv[1], "data")) return cmd_data(argv[2]);
    if (argc >= 4 && !strcmp(argv[1], "meta")) return cmd_meta(argv[2], argv[3], argc - 4, argv + 4);
    if (argc >= 5 && !strcmp(argv[1], "bomb")) {
        unsigned char h[32];
        uint32_t n = (uint32_t)strtoul(argv[3], NULL, 10);
        uint32_t d[3] = {n, 28, 28};
        int labels = argc > 5 && !strcmp(argv[5], "labels");
        size_t hl = hx_idx_header(h, 0x08, labels ? 1 : 3, d);
        return hx_gzip_bomb(argv[2], h, hl, strtoull(argv[4], NULL, 10)) ? fail("bomb") : 0;
    }
    if (argc >= 4 && !strcmp(argv[1], "rss")) return cmd_rss(argv[2], argv + 3);
    if (argc >= 4 && !strcmp(argv[1], "labels")) {
        unsigned char h[32];
        uint32_t n = (uint32_t)strtoul(argv[3], NULL, 10);
        unsigned char *lab = malloc(n ? n : 1);
        if (!lab) return fail("out of memory");
        for (uint32_t i = 0; i < n; i++) lab[i] = (unsigned char)(i % 10);
        int r = put(argv[2], 0, h, hx_idx_header(h, 0x08, 1, &n), lab, n);
        free(lab);
        return r;
    }
    fprintf(stderr, "usage: hostile_fixture data DIR | meta IN OUT KEY=VALUE... | "
                    "bomb PATH N ZERO_MIB [labels] | rss OUTFILE CMD ARGS...\n");
    return 2;
}
