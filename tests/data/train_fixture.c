/* tests/data/train_fixture.c - fixtures and checks for test_train.sh.
 *
 *   train_fixture data DIR
 *       writes a small learnable dataset (10 classes of 8x8 u8 images: noise
 *       plus a bright 2x2 block whose place is the class): 1,000 training
 *       samples gzipped, 200 test samples plain, as IDX pairs; the same
 *       training data as a safetensors file; and manifests: mlp.json (64-32-10
 *       with ReLU, a training section; tests/ddp uses it too), mlp_dropout.json
 *       (the same with dropout 0.1 after the ReLU), wrong_out.json (5
 *       outputs for 10 classes), wrong_loss.json (mse_loss on class targets).
 *   train_fixture trace FILE STEPS EVAL_BATCHES
 *       checks a trace of nnm train on mlp.json: valid JSON, complete ("X")
 *       events only, one forward span per module call (each of fc1, act, fc2
 *       and the root STEPS + EVAL_BATCHES times), one backward span per module
 *       and step, and every child's span inside one of its parent's.
 */
#define _POSIX_C_SOURCE 200809L
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static int fail(const char *what) {
    fprintf(stderr, "train_fixture: %s\n", what);
    return 1;
}

static uint32_t rng = 12345;
static uint32_t next(void) {
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return rng;
}

static size_t header(unsigned char *b, int ndim, const uint32_t *dims) {
    size_t at = 0;
    b[at++] = 0, b[at++] = 0, b[at++] = 0x08, b[at++] = (unsigned char)ndim;
    for (int d = 0; d < ndim; d++) {
        b[at++] = (unsigned char)(dims[d] >> 24), b[at++] = (unsigned char)(dims[d] >> 16);
        b[at++] = (unsigned char)(dims[d] >> 8), b[at++] = (unsigned char)dims[d];
    }
    return at;
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
    int ok = fwrite(a, 1, na, f) == na && fwrite(b, 1, nb, f) == nb;
    return fclose(f) || !ok ? fail(path) : 0;
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

static int write_split(const char *dir, const char *name, int n, int gz) {
    unsigned char *img = malloc((size_t)n * 64), *lab = malloc((size_t)n), h[32];
    char path[1024];
    int r = 1;
    if (!img || !lab) goto out;
    make(img, lab, n);
    uint32_t di[3] = {(uint32_t)n, 8, 8}, dl[1] = {(uint32_t)n};
    snprintf(path, sizeof path, "%s/%s-images.idx%s", dir, name, gz ? ".gz" : "");
    if (put(path, gz, h, header(h, 3, di), img, (size_t)n * 64)) goto out;
    snprintf(path, sizeof path, "%s/%s-labels.idx%s", dir, name, gz ? ".gz" : "");
    if (put(path, gz, h, header(h, 1, dl), lab, (size_t)n)) goto out;
    if (gz) {
        /* the same data as safetensors: inputs U8 [n, 8, 8], targets I64 [n] */
        char head[512];
        int hl = snprintf(head, sizeof head,
                          "{\"inputs\":{\"dtype\":\"U8\",\"shape\":[%d,8,8],\"data_offsets\":[%d,%d]},"
                          "\"targets\":{\"dtype\":\"I64\",\"shape\":[%d],\"data_offsets\":[0,%d]}}",
                          n, 8 * n, 8 * n + 64 * n, n, 8 * n);
        while (hl % 8) head[hl++] = ' ';
        snprintf(path, sizeof path, "%s/%s.safetensors", dir, name);
        FILE *f = fopen(path, "wb");
        if (!f) goto out;
        uint64_t len = (uint64_t)hl;
        fwrite(&len, 8, 1, f);
        fwrite(head, 1, (size_t)hl, f);
        for (int s = 0; s < n; s++) {
            int64_t t = lab[s];
            fwrite(&t, 8, 1, f);
        }
        fwrite(img, 64, (size_t)n, f);
        if (fclose(f)) goto out;
    }
    r = 0;
out:
    free(img);
    free(lab);
    return r;
}

static int write_manifest(const char *dir, const char *name, int outputs, const char *loss,
                          int dropout) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) return fail(path);
    fprintf(f,
            "{\"format\": \"nnmod.manifest\", \"version\": 1,\n"
            " \"plugins\": {\"sequential\": \"^1.0\", \"linear\": \"^1.0\", \"relu\": \"^1.0\"%s},\n"
            " \"root\": {\"type\": \"sequential\", \"children\": [\n"
            "  {\"name\": \"fc1\", \"type\": \"linear\", \"config\": {\"in_features\": 64, \"out_features\": 32}},\n"
            "  {\"name\": \"act\", \"type\": \"relu\"},\n%s"
            "  {\"name\": \"fc2\", \"type\": \"linear\", \"config\": {\"in_features\": 32, \"out_features\": %d}}]},\n"
            " \"metadata\": {\"class_names\": \"c0,c1,c2,c3,c4,c5,c6,c7,c8,c9\"},\n"
            " \"training\": {\"train_data\": [\"train-images.idx.gz\", \"train-labels.idx.gz\"],\n"
            "  \"test_data\": [\"test-images.idx\", \"test-labels.idx\"], \"input_shape\": [64],\n"
            "  \"optimizer\": \"adam\", \"lr\": 0.003, \"batch_size\": 32, \"epochs\": 3,\n"
            "  \"loss\": \"%s\", \"seed\": 5}}\n",
            dropout ? ", \"dropout\": \"^1.0\"" : "",
            dropout ? "  {\"name\": \"drop\", \"type\": \"dropout\", \"config\": {\"p\": 0.1}},\n" : "",
            outputs, loss);
    return fclose(f) ? fail(path) : 0;
}

/* ---- trace check ------------------------------------------------------------ */

typedef struct span {
    const char *name;
    double ts, end;
} span;

static int check_trace(const char *path, long steps, long evals) {
    json_error_t err;
    json_t *doc = json_load_file(path, 0, &err);
    if (!doc) {
        fprintf(stderr, "train_fixture: %s: not JSON: %s (line %d)\n", path, err.text, err.line);
        return 1;
    }
    json_t *ev = json_object_get(doc, "traceEvents");
    if (!json_is_array(ev)) return fail("no traceEvents array");
    size_t n = json_array_size(ev);
    span *sp = calloc(n ? n : 1, sizeof *sp);
    if (!sp) return fail("out of memory");
    static const char *fwd[] = {"fc1", "act", "fc2", "sequential"};
    static const char *bwd[] = {"fc1 (backward)", "act (backward)", "fc2 (backward)",
                                "sequential (backward)"};
    long nf[4] = {0}, nb[4] = {0};
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(ev, i);
        const char *ph = json_string_value(json_object_get(e, "ph"));
        const char *name = json_string_value(json_object_get(e, "name"));
        json_t *ts = json_object_get(e, "ts"), *dur = json_object_get(e, "dur");
        if (!ph || strcmp(ph, "X") || !name || !json_is_number(ts) || !json_is_number(dur) ||
            json_number_value(dur) < 0)
            return fail("an event is not a complete span (ph X, name, ts, dur >= 0)");
        sp[i] = (span){name, json_number_value(ts), json_number_value(ts) + json_number_value(dur)};
        for (int k = 0; k < 4; k++) {
            nf[k] += strcmp(name, fwd[k]) == 0;
            nb[k] += strcmp(name, bwd[k]) == 0;
        }
    }
    int bad = 0;
    for (int k = 0; k < 4; k++) {
        if (nf[k] != steps + evals || nb[k] != steps) {
            fprintf(stderr, "train_fixture: %s: %ld forward spans (want %ld), %s: %ld (want %ld)\n",
                    fwd[k], nf[k], steps + evals, bwd[k], nb[k], steps);
            bad = 1;
        }
    }
    /* nesting: each layer's span lies inside a root span of the same kind */
    for (size_t i = 0; i < n && !bad; i++) {
        int layer_f = 0, layer_b = 0;
        for (int k = 0; k < 3; k++) {
            layer_f |= strcmp(sp[i].name, fwd[k]) == 0;
            layer_b |= strcmp(sp[i].name, bwd[k]) == 0;
        }
        if (!layer_f && !layer_b) continue;
        const char *parent = layer_f ? fwd[3] : bwd[3];
        int inside = 0;
        for (size_t j = 0; j < n && !inside; j++)
            inside = strcmp(sp[j].name, parent) == 0 && sp[j].ts <= sp[i].ts + 1e-3 &&
                     sp[i].end <= sp[j].end + 1e-3;
        if (!inside) {
            fprintf(stderr, "train_fixture: span '%s' at %.3f is inside no '%s' span\n",
                    sp[i].name, sp[i].ts, parent);
            bad = 1;
        }
    }
    free(sp);
    json_decref(doc);
    if (!bad) printf("trace ok: %zu spans\n", n);
    return bad;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "data")) {
        const char *dir = argv[2];
        if (write_split(dir, "train", 1000, 1) || write_split(dir, "test", 200, 0)) return 1;
        if (write_manifest(dir, "mlp.json", 10, "cross_entropy", 0) ||
            write_manifest(dir, "mlp_dropout.json", 10, "cross_entropy", 1) ||
            write_manifest(dir, "wrong_out.json", 5, "cross_entropy", 0) ||
            write_manifest(dir, "wrong_loss.json", 10, "mse_loss", 0))
            return 1;
        return 0;
    }
    if (argc == 5 && !strcmp(argv[1], "trace"))
        return check_trace(argv[2], strtol(argv[3], NULL, 10), strtol(argv[4], NULL, 10));
    fprintf(stderr, "usage: train_fixture data DIR | trace FILE STEPS EVAL_BATCHES\n");
    return 2;
}
