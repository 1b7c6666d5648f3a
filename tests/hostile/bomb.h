/* tests/hostile/bomb.h - gzip bombs made at test time (never committed).
 *
 * hx_gzip_bomb(path, head, head_len, zero_mib) writes a gzip file whose
 * stream inflates to `head` followed by zero_mib MiB of zero bytes, in
 * about 1 KiB per MiB and a few milliseconds: one MiB of zeros is deflated
 * once, ending in a full flush (byte-aligned, no back-reference across it),
 * and the same compressed bytes are repeated; the trailer's CRC-32 comes from
 * crc32_combine. A 4.5 MB file of this kind inflates to 4.7 GB.
 *
 * Header-only (static functions) for the suite and the CLI fixture. */
#ifndef NNM_TESTS_HOSTILE_BOMB_H
#define NNM_TESTS_HOSTILE_BOMB_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define HX_MIB ((size_t)1 << 20)

/* Raw-deflates `len` bytes of `in` ending with a full flush into *out
 * (malloc'd, *out_len bytes). 0 on success. */
static inline int hx_deflate_piece(z_stream *z, const unsigned char *in, size_t len, unsigned char **out,
                            size_t *out_len) {
    size_t cap = len + 4096;
    unsigned char *buf = malloc(cap);
    if (!buf) return -1;
    z->next_in = (unsigned char *)in;
    z->avail_in = (uInt)len;
    z->next_out = buf;
    z->avail_out = (uInt)cap;
    if (deflate(z, Z_FULL_FLUSH) != Z_OK || z->avail_in != 0) {
        free(buf);
        return -1;
    }
    *out = buf;
    *out_len = cap - z->avail_out;
    return 0;
}

static inline int hx_gzip_bomb(const char *path, const unsigned char *head, size_t head_len,
                        uint64_t zero_mib) {
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, 9, Z_DEFLATED, -15, 9, Z_DEFAULT_STRATEGY) != Z_OK) return -1;
    unsigned char *zeros = calloc(1, HX_MIB), *ph = NULL, *p1 = NULL, *p2 = NULL;
    size_t nh = 0, n1 = 0, n2 = 0;
    int rc = -1;
    FILE *f = NULL;
    if (!zeros) goto out;
    /* the header, then two MiB of zeros: the second piece is the one that
     * repeats (the first may still differ: the deflater's state was fresh) */
    if (hx_deflate_piece(&z, head, head_len, &ph, &nh) ||
        hx_deflate_piece(&z, zeros, HX_MIB, &p1, &n1) ||
        hx_deflate_piece(&z, zeros, HX_MIB, &p2, &n2))
        goto out;
    {
        unsigned char *p3 = NULL;
        size_t n3 = 0;
        if (hx_deflate_piece(&z, zeros, HX_MIB, &p3, &n3)) goto out;
        int same = n3 == n2 && memcmp(p3, p2, n2) == 0;
        free(p3);
        if (!same) goto out; /* not a repeating piece: this zlib deflates otherwise */
    }
    unsigned char tail[64];
    z.next_in = NULL;
    z.avail_in = 0;
    z.next_out = tail;
    z.avail_out = sizeof tail;
    if (deflate(&z, Z_FINISH) != Z_STREAM_END) goto out;
    size_t nt = sizeof tail - z.avail_out;
    f = fopen(path, "wb");
    if (!f) goto out;
    static const unsigned char gz_head[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 3};
    fwrite(gz_head, 1, sizeof gz_head, f);
    fwrite(ph, 1, nh, f);
    if (zero_mib) fwrite(p1, 1, n1, f);
    for (uint64_t i = 1; i < zero_mib; i++) fwrite(p2, 1, n2, f);
    fwrite(tail, 1, nt, f);
    /* CRC-32 of head + zeros, and the length mod 2^32 */
    uLong crc = crc32(0L, head, (uInt)head_len);
    uLong zc = crc32(0L, zeros, (uInt)HX_MIB);
    for (uint64_t i = 0; i < zero_mib; i++) crc = crc32_combine(crc, zc, (z_off_t)HX_MIB);
    uint64_t total = head_len + zero_mib * HX_MIB;
    unsigned char trailer[8];
    for (int i = 0; i < 4; i++) trailer[i] = (unsigned char)(crc >> (8 * i));
    for (int i = 0; i < 4; i++) trailer[4 + i] = (unsigned char)(total >> (8 * i));
    fwrite(trailer, 1, 8, f);
    rc = ferror(f) ? -1 : 0;
out:
    if (f && fclose(f)) rc = -1;
    deflateEnd(&z);
    free(zeros);
    free(ph);
    free(p1);
    free(p2);
    return rc;
}

/* An IDX header: type byte and dims (big-endian u32). Returns its length. */
static inline size_t hx_idx_header(unsigned char *b, int type, int ndim, const uint32_t *dims) {
    size_t at = 0;
    b[at++] = 0, b[at++] = 0, b[at++] = (unsigned char)type, b[at++] = (unsigned char)ndim;
    for (int d = 0; d < ndim; d++) {
        b[at++] = (unsigned char)(dims[d] >> 24), b[at++] = (unsigned char)(dims[d] >> 16);
        b[at++] = (unsigned char)(dims[d] >> 8), b[at++] = (unsigned char)dims[d];
    }
    return at;
}

#endif
