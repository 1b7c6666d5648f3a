/* runtime/core/sha256.c - SHA-256 (FIPS 180-4), portable C11, no external library.
 *
 * Used to check weights files against the digest a manifest records and to
 * hash manifests for checkpoints. Byte-oriented and endian-independent: words
 * are assembled from bytes big-endian as the standard defines, so the result
 * is the same on every host. Not constant-time (nothing here is secret).
 *
 * Streaming: init, any number of updates of any sizes (including 0), final.
 * final leaves the state wiped; init it again to hash another message.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* open, fstat, strerror_r */
#endif

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

#define SHA256_READ_CHUNK ((size_t)1 << 16) /* bytes per read() of a file */

static const uint32_t K[64] = {
    0x428a2f98u, 0x71374491u, 0xb5c0fbcfu, 0xe9b5dba5u, 0x3956c25bu, 0x59f111f1u, 0x923f82a4u,
    0xab1c5ed5u, 0xd807aa98u, 0x12835b01u, 0x243185beu, 0x550c7dc3u, 0x72be5d74u, 0x80deb1feu,
    0x9bdc06a7u, 0xc19bf174u, 0xe49b69c1u, 0xefbe4786u, 0x0fc19dc6u, 0x240ca1ccu, 0x2de92c6fu,
    0x4a7484aau, 0x5cb0a9dcu, 0x76f988dau, 0x983e5152u, 0xa831c66du, 0xb00327c8u, 0xbf597fc7u,
    0xc6e00bf3u, 0xd5a79147u, 0x06ca6351u, 0x14292967u, 0x27b70a85u, 0x2e1b2138u, 0x4d2c6dfcu,
    0x53380d13u, 0x650a7354u, 0x766a0abbu, 0x81c2c92eu, 0x92722c85u, 0xa2bfe8a1u, 0xa81a664bu,
    0xc24b8b70u, 0xc76c51a3u, 0xd192e819u, 0xd6990624u, 0xf40e3585u, 0x106aa070u, 0x19a4c116u,
    0x1e376c08u, 0x2748774cu, 0x34b0bcb5u, 0x391c0cb3u, 0x4ed8aa4au, 0x5b9cca4fu, 0x682e6ff3u,
    0x748f82eeu, 0x78a5636fu, 0x84c87814u, 0x8cc70208u, 0x90befffau, 0xa4506cebu, 0xbef9a3f7u,
    0xc67178f2u};

static uint32_t rotr(uint32_t x, unsigned n) { return (x >> n) | (x << (32 - n)); }

/* One 64-byte block into the state h. */
static void compress(uint32_t h[8], const uint8_t *p) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | (uint32_t)p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = k + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i] +
                      w[i];
        uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        k = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
    h[5] += f;
    h[6] += g;
    h[7] += k;
}

void nnm__sha256_init(nnm__sha256 *s) {
    static const uint32_t h0[8] = {0x6a09e667u, 0xbb67ae85u, 0x3c6ef372u, 0xa54ff53au,
                                   0x510e527fu, 0x9b05688cu, 0x1f83d9abu, 0x5be0cd19u};
    memcpy(s->h, h0, sizeof h0);
    s->bytes = 0;
    s->fill = 0;
    memset(s->buf, 0, sizeof s->buf);
}

/* data may be NULL when n is 0. */
void nnm__sha256_update(nnm__sha256 *s, const void *data, size_t n) {
    const uint8_t *p = data;
    if (n == 0) return;
    s->bytes += n;
    if (s->fill) {
        size_t take = 64 - s->fill;
        if (take > n) take = n;
        memcpy(s->buf + s->fill, p, take);
        s->fill += (uint32_t)take;
        p += take;
        n -= take;
        if (s->fill < 64) return;
        compress(s->h, s->buf);
        s->fill = 0;
    }
    for (; n >= 64; p += 64, n -= 64) compress(s->h, p);
    if (n) {
        memcpy(s->buf, p, n);
        s->fill = (uint32_t)n;
    }
}

void nnm__sha256_final(nnm__sha256 *s, uint8_t digest[32]) {
    /* The message length in bits, mod 2^64 (FIPS 180-4 allows < 2^64 bits). */
    uint64_t bits = s->bytes << 3;
    uint8_t pad[72];
    size_t padlen = (s->fill < 56 ? 56 : 120) - s->fill;
    memset(pad, 0, sizeof pad);
    pad[0] = 0x80;
    for (int i = 0; i < 8; i++) pad[padlen + (size_t)i] = (uint8_t)(bits >> (56 - 8 * i));
    nnm__sha256_update(s, pad, padlen + 8);
    for (int i = 0; i < 8; i++) {
        digest[4 * i] = (uint8_t)(s->h[i] >> 24);
        digest[4 * i + 1] = (uint8_t)(s->h[i] >> 16);
        digest[4 * i + 2] = (uint8_t)(s->h[i] >> 8);
        digest[4 * i + 3] = (uint8_t)s->h[i];
    }
    memset(s, 0, sizeof *s);
}

void nnm__sha256_hex(const uint8_t digest[32], char out[65]) {
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hex[digest[i] >> 4];
        out[2 * i + 1] = hex[digest[i] & 15];
    }
    out[64] = 0;
}

static const char *errno_str(int e, char *buf, size_t cap) {
    if (strerror_r(e, buf, cap) != 0) snprintf(buf, cap, "errno %d", e);
    return buf;
}

/* Reads the file in chunks (works for any file a read() can stream, so a
 * file that changes while it is read gives some digest, never a crash). On
 * failure out is "" and the message, naming the path, is on ctx (ctx may be
 * NULL: then only the status says what happened). */
nnm_status nnm__sha256_file(nnm_ctx *ctx, const char *path, char out[65]) {
    char eb[128];
    if (out) out[0] = 0;
    if (!path || !out) return nnm__error(ctx, NNM_E_INVALID, "sha256: NULL argument");
    int fd;
    nnm_status ost = nnm__open_regular(ctx, path, "for sha256", &fd, NULL);
    if (ost) return ost;
    uint8_t *buf = malloc(SHA256_READ_CHUNK);
    if (!buf) {
        close(fd);
        return nnm__error(ctx, NNM_E_NOMEM, "%.512s: out of memory for sha256", path);
    }
    nnm__sha256 s;
    nnm__sha256_init(&s);
    nnm_status rc = NNM_OK;
    for (;;) {
        ssize_t r = read(fd, buf, SHA256_READ_CHUNK);
        if (r < 0) {
            if (errno == EINTR) continue;
            rc = nnm__error(ctx, NNM_E_IO, "%.512s: read failed during sha256: %s", path,
                            errno_str(errno, eb, sizeof eb));
            break;
        }
        if (r == 0) break;
        nnm__sha256_update(&s, buf, (size_t)r);
    }
    free(buf);
    close(fd);
    if (rc) return rc;
    uint8_t d[32];
    nnm__sha256_final(&s, d);
    nnm__sha256_hex(d, out);
    return NNM_OK;
}
