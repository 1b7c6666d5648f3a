/* tests/fuzz/fuzz_dataset.c - libFuzzer harness over the dataset readers
 * (issue 19): IDX pairs, gzipped or not, and the dataset side of safetensors
 * files, then a loader over whatever opened (every batch gathered, so a bad
 * bound shows up under ASan), the statistics and the info.
 *
 * Input: a mode byte, then its body.
 *   mode & 0x80 == 0: an IDX pair. Body: a 2-byte little-endian length L, L
 *     bytes of the inputs file, the rest the targets file. mode bit 0x01:
 *     the harness gzips the inputs (so mutations explore the IDX content,
 *     not deflate), 0x02 the targets; 0x04: inputs alone (no targets file);
 *     0x08: the bytes are written as they are even with 0x01/0x02 unset
 *     (raw gzip streams, corrupt or not, reach zlib that way too).
 *   mode & 0x80: a safetensors dataset, as fuzz_safetensors's 0xA5 form: a
 *     2-byte little-endian data length D, the header text, D data bytes (the
 *     harness writes the 8-byte header length).
 *   mode bit 0x10: NNM_DATASET_ALLOW_NONFINITE; 0x20: a 4 KiB byte limit.
 * Files are memfds opened through /proc/self/fd/N. The byte limit is at most
 * 64 MiB, so a header may claim anything and the harness stays small.
 * Build with clang:
 *     cmake -DCMAKE_C_COMPILER=clang -DNNM_FUZZ=ON -B build-fuzz
 *     cmake --build build-fuzz --target fuzz_dataset
 *     build-fuzz/bin/fuzz_dataset -max_total_time=60 NEW_DIR tests/fuzz/corpus_dataset
 */
#define _GNU_SOURCE /* memfd_create */
#include <nnmod/nnmod.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static nnm_ctx *g_ctx;
static volatile double g_sink;

static int write_all(int fd, const uint8_t *p, size_t n) {
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* A memfd holding p[0..n), gzipped when gz; -1 on failure. */
static int memfile(const uint8_t *p, size_t n, int gz) {
    int fd = memfd_create("fuzz.dataset", MFD_CLOEXEC);
    if (fd < 0) return -1;
    int bad;
    if (gz) {
        uLongf cap = compressBound((uLong)n) + 32;
        uint8_t *z = malloc(cap);
        z_stream s;
        memset(&s, 0, sizeof s);
        bad = !z || deflateInit2(&s, 1, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY) != Z_OK;
        if (!bad) {
            s.next_in = (Bytef *)p;
            s.avail_in = (uInt)n;
            s.next_out = z;
            s.avail_out = (uInt)cap;
            bad = deflate(&s, Z_FINISH) != Z_STREAM_END;
            if (!bad) bad = write_all(fd, z, cap - s.avail_out);
            deflateEnd(&s);
        }
        free(z);
    } else {
        bad = write_all(fd, p, n);
    }
    if (bad) {
        close(fd);
        return -1;
    }
    return fd;
}

static void exercise(nnm_dataset *ds) {
    nnm_dataset_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    if (nnm_dataset_info_get(ds, &info) != NNM_OK) abort();
    if (info.n_samples < 1) abort(); /* an empty dataset must be refused */
    double mean = 0, std = 0;
    if (nnm_dataset_stats(ds, 0.5, &mean, &std) != NNM_OK) abort();
    nnm_loader_options o;
    memset(&o, 0, sizeof o);
    o.struct_size = sizeof o;
    o.flags = NNM_LOADER_SHUFFLE;
    o.batch_size = 7;
    o.world_size = 2;
    o.rank = 1;
    nnm_loader *l = NULL;
    if (nnm_loader_new(ds, &o, &l) != NNM_OK) return;
    double sum = mean + std;
    for (;;) {
        nnm_tensor *x = NULL, *y = NULL;
        if (nnm_loader_next(l, &x, &y) != NNM_OK || !x) {
            nnm_tensor_release(x);
            nnm_tensor_release(y);
            break;
        }
        const nnm_tensor_desc *d = nnm_tensor_desc_get(x);
        int64_t n = nnm_tensor_numel(x);
        const float *v = d->data;
        for (int64_t i = 0; i < n; i++) sum += v[i];
        if (y) {
            const nnm_tensor_desc *t = nnm_tensor_desc_get(y);
            const unsigned char *b = t->data;
            size_t bytes = (size_t)nnm_tensor_numel(y) * (t->dtype.bits / 8u);
            for (size_t i = 0; i < bytes; i++) sum += b[i];
        }
        nnm_tensor_release(x);
        nnm_tensor_release(y);
    }
    nnm_loader_free(l);
    g_sink += sum;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_ctx && nnm_ctx_new(NULL, &g_ctx) != NNM_OK) abort();
    if (size < 3) return 0;
    const uint8_t mode = data[0];
    nnm_dataset_options o;
    memset(&o, 0, sizeof o);
    o.struct_size = sizeof o;
    o.flags = (mode & 0x10) ? NNM_DATASET_ALLOW_NONFINITE : 0u;
    o.max_bytes = (mode & 0x20) ? 4096 : (uint64_t)64 << 20;
    size_t len = (size_t)data[1] | (size_t)data[2] << 8, rest = size - 3;
    const uint8_t *body = data + 3;
    if (len > rest) len = rest;
    nnm_dataset *ds = (nnm_dataset *)1;
    nnm_status st;
    int fa = -1, fb = -1;
    char pa[64], pb[64];
    if (mode & 0x80) {
        /* safetensors: the header text, then `len` data bytes */
        uint64_t hlen = rest - len;
        uint8_t len8[8];
        for (int i = 0; i < 8; i++) len8[i] = (uint8_t)(hlen >> (8 * i));
        fa = memfd_create("fuzz.safetensors", MFD_CLOEXEC);
        if (fa < 0) return 0;
        if (write_all(fa, len8, 8) || write_all(fa, body, rest)) {
            close(fa);
            return 0;
        }
        snprintf(pa, sizeof pa, "/proc/self/fd/%d", fa);
        st = nnm_dataset_open_safetensors_v2(g_ctx, pa, &o, &ds);
    } else {
        const int raw = (mode & 0x08) != 0;
        fa = memfile(body, len, !raw && (mode & 0x01));
        if (!(mode & 0x04)) fb = memfile(body + len, rest - len, !raw && (mode & 0x02));
        if (fa < 0 || (!(mode & 0x04) && fb < 0)) {
            if (fa >= 0) close(fa);
            if (fb >= 0) close(fb);
            return 0;
        }
        snprintf(pa, sizeof pa, "/proc/self/fd/%d", fa);
        snprintf(pb, sizeof pb, "/proc/self/fd/%d", fb);
        st = nnm_dataset_open_idx_v2(g_ctx, pa, fb >= 0 ? pb : NULL, &o, &ds);
    }
    if (st == NNM_OK) {
        if (!ds) abort();
        exercise(ds);
        nnm_dataset_free(ds);
    } else if (ds != NULL) {
        abort(); /* failure must leave *out NULL */
    } else if (!nnm_ctx_errmsg(g_ctx)[0]) {
        abort(); /* every refusal says why */
    }
    if (fa >= 0) close(fa);
    if (fb >= 0) close(fb);
    return 0;
}
