/* runtime/data/idx.c - IDX files (the MNIST family's format), gzipped or not.
 *
 * Format (http://yann.lecun.com/exdb/mnist/): two zero bytes, a type byte
 * (0x08 u8, 0x09 i8, 0x0B i16, 0x0C i32, 0x0D f32, 0x0E f64), the number of
 * dimensions (1 to NNM_MAX_DIMS), each dimension as a big-endian u32, then the
 * elements, big-endian, row-major. A dataset pairs an inputs file (its first
 * dimension is the sample count) with a targets file of the same count.
 *
 * Files are read through zlib's gzread, which reads gzip streams and plain
 * files alike. Treated as hostile: the header is checked before anything is
 * allocated; the data is read in growing chunks, so memory follows the bytes
 * the file really holds, never the sizes its header claims; a plain file's
 * size must match its header exactly; fewer bytes than the header promises
 * (truncated) or more (trailing) are errors naming the file; so is a corrupt
 * gzip stream. u8 inputs are kept as u8 (the loader converts per batch);
 * other element types are converted to f32 (inputs) or i64/f32 (targets).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "data_internal.h"

#define IDX_CHUNK ((size_t)1 << 20)

typedef struct idx_file {
    const char *path;
    int type;                     /* the IDX type byte */
    int32_t ndim;
    int64_t dims[NNM_MAX_DIMS];
    size_t esize;                 /* bytes per element */
    uint64_t count;               /* elements */
    unsigned char *data;          /* count * esize bytes, host order after read_idx */
} idx_file;

static size_t idx_esize(int type) {
    switch (type) {
    case 0x08:
    case 0x09: return 1;
    case 0x0B: return 2;
    case 0x0C:
    case 0x0D: return 4;
    case 0x0E: return 8;
    default: return 0;
    }
}

static const char *gz_message(gzFile gz) {
    int err = 0;
    const char *m = gzerror(gz, &err);
    if (err == Z_ERRNO) return strerror(errno);
    return m && *m ? m : "read error";
}

/* Reads exactly n bytes; returns how many it got (short = end or error). */
static size_t gz_read_full(gzFile gz, unsigned char *buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        unsigned want = n - got > (1u << 30) ? (1u << 30) : (unsigned)(n - got);
        int r = gzread(gz, buf + got, want);
        if (r <= 0) break;
        got += (size_t)r;
    }
    return got;
}

static void swap_bytes(unsigned char *p, size_t esize, uint64_t count) {
    if (esize == 1) return;
    for (uint64_t i = 0; i < count; i++, p += esize)
        for (size_t a = 0, b = esize - 1; a < b; a++, b--) {
            unsigned char t = p[a];
            p[a] = p[b];
            p[b] = t;
        }
}

static nnm_status read_idx(nnm_ctx *ctx, idx_file *f, uint64_t max_bytes) {
    const char *path = f->path;
    struct stat sb;
    if (stat(path, &sb) != 0)
        return nnm__error(ctx, NNM_E_IO, "%.*s: %s", NNM__SHOW_PATH, path, strerror(errno));
    if (!S_ISREG(sb.st_mode))
        return nnm__error(ctx, NNM_E_IO, "%.*s: not a regular file", NNM__SHOW_PATH, path);
    gzFile gz = gzopen(path, "rb");
    if (!gz)
        return nnm__error(ctx, errno == ENOMEM ? NNM_E_NOMEM : NNM_E_IO, "%.*s: %s",
                          NNM__SHOW_PATH, path, errno ? strerror(errno) : "cannot open");
    gzbuffer(gz, 1u << 17);
    nnm_status st = NNM_OK;
    unsigned char head[4 + 4 * NNM_MAX_DIMS];
    size_t got = gz_read_full(gz, head, 4);
    int compressed = !gzdirect(gz);
    if (got < 4) {
        st = nnm__error(ctx, NNM_E_INVALID, "%.*s: truncated IDX header (%zu of 4 bytes)%s%s",
                        NNM__SHOW_PATH, path, got, got ? "" : ": ", got ? "" : gz_message(gz));
        goto out;
    }
    if (head[0] || head[1] || !idx_esize(head[2])) {
        st = nnm__error(ctx, NNM_E_INVALID,
                        "%.*s: not an IDX file (magic %02x %02x %02x %02x; expected 00 00, a "
                        "type 08/09/0b/0c/0d/0e, then the dimension count)",
                        NNM__SHOW_PATH, path, head[0], head[1], head[2], head[3]);
        goto out;
    }
    f->type = head[2];
    f->esize = idx_esize(f->type);
    f->ndim = head[3];
    if (f->ndim < 1 || f->ndim > NNM_MAX_DIMS) {
        st = nnm__error(ctx, NNM_E_INVALID, "%.*s: %d dimensions (an IDX file here has 1 to %d)",
                        NNM__SHOW_PATH, path, (int)f->ndim, NNM_MAX_DIMS);
        goto out;
    }
    got = gz_read_full(gz, head + 4, 4 * (size_t)f->ndim);
    if (got < 4 * (size_t)f->ndim) {
        st = nnm__error(ctx, NNM_E_INVALID, "%.*s: truncated IDX header (%zu of %zu bytes)",
                        NNM__SHOW_PATH, path, 4 + got, 4 + 4 * (size_t)f->ndim);
        goto out;
    }
    uint64_t count = 1;
    for (int32_t d = 0; d < f->ndim; d++) {
        const unsigned char *p = head + 4 + 4 * d;
        uint32_t v = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
        f->dims[d] = v;
        if (v == 0) {
            count = 0;
        } else if (count && count > max_bytes / v) {
            st = nnm__error(ctx, NNM_E_LIMIT, "%.*s: the header claims more than %llu elements",
                            NNM__SHOW_PATH, path, (unsigned long long)max_bytes);
            goto out;
        } else {
            count *= v;
        }
    }
    if (count > max_bytes / f->esize) {
        st = nnm__error(ctx, NNM_E_LIMIT,
                        "%.*s: the header claims %llu bytes of data, over the %llu-byte limit",
                        NNM__SHOW_PATH, path, (unsigned long long)(count * f->esize),
                        (unsigned long long)max_bytes);
        goto out;
    }
    f->count = count;
    const uint64_t want = count * f->esize, head_len = 4 + 4 * (uint64_t)f->ndim;
    if (!compressed && (uint64_t)sb.st_size != head_len + want) {
        st = nnm__error(ctx, NNM_E_INVALID,
                        "%.*s: %s: the header promises %llu bytes of data, the file holds %lld",
                        NNM__SHOW_PATH, path,
                        (uint64_t)sb.st_size < head_len + want ? "truncated" : "trailing bytes",
                        (unsigned long long)want, (long long)(sb.st_size - (off_t)head_len));
        goto out;
    }
    /* Grow with what arrives: a small hostile file claiming gigabytes costs
     * what it really decompresses to, no more. */
    size_t cap = 0, have = 0;
    while (have < want) {
        if (have == cap) {
            size_t next = cap ? cap * 2 : IDX_CHUNK;
            if (next > want) next = (size_t)want;
            unsigned char *p = realloc(f->data, next);
            if (!p) {
                st = nnm__error(ctx, NNM_E_NOMEM, "%.*s: out of memory for %llu bytes of data",
                                NNM__SHOW_PATH, path, (unsigned long long)want);
                goto out;
            }
            f->data = p;
            cap = next;
        }
        size_t r = gz_read_full(gz, f->data + have, cap - have);
        have += r;
        if (have < cap) break;
    }
    if (have < want) {
        int err = 0;
        char why[200] = "";
        gzerror(gz, &err);
        if (err != Z_OK) snprintf(why, sizeof why, " (%s)", gz_message(gz));
        st = nnm__error(ctx, NNM_E_INVALID,
                        "%.*s: truncated: the header promises %llu bytes of data, the file "
                        "holds %zu%s",
                        NNM__SHOW_PATH, path, (unsigned long long)want, have, why);
        goto out;
    }
    unsigned char extra;
    if (gz_read_full(gz, &extra, 1) == 1) {
        st = nnm__error(ctx, NNM_E_INVALID,
                        "%.*s: trailing bytes after the %llu bytes of data the header promises",
                        NNM__SHOW_PATH, path, (unsigned long long)want);
        goto out;
    }
    {
        int err = 0;
        gzerror(gz, &err);
        if (err != Z_OK && err != Z_BUF_ERROR) {
            st = nnm__error(ctx, NNM_E_INVALID, "%.*s: %s", NNM__SHOW_PATH, path, gz_message(gz));
            goto out;
        }
        if (err == Z_BUF_ERROR) { /* the gzip stream ends early: no trailer */
            st = nnm__error(ctx, NNM_E_INVALID, "%.*s: truncated gzip stream (%s)",
                            NNM__SHOW_PATH, path, gz_message(gz));
            goto out;
        }
    }
    swap_bytes(f->data, f->esize, f->count);
out:
    gzclose(gz);
    return st;
}

/* Element i of a read (host-order) IDX file as a double. */
static double idx_elem(const idx_file *f, uint64_t i) {
    const unsigned char *p = f->data + i * f->esize;
    switch (f->type) {
    case 0x08: return p[0];
    case 0x09: return (int8_t)p[0];
    case 0x0B: {
        int16_t v;
        memcpy(&v, p, 2);
        return v;
    }
    case 0x0C: {
        int32_t v;
        memcpy(&v, p, 4);
        return v;
    }
    case 0x0D: {
        float v;
        memcpy(&v, p, 4);
        return v;
    }
    default: {
        double v;
        memcpy(&v, p, 8);
        return v;
    }
    }
}

NNM_API nnm_status nnm_dataset_open_idx(nnm_ctx *ctx, const char *inputs_path,
                                        const char *targets_path, nnm_dataset **out) {
    if (out) *out = NULL;
    if (!ctx) return NNM_E_INVALID;
    if (!inputs_path || !out)
        return nnm__error(ctx, NNM_E_INVALID, "nnm_dataset_open_idx: NULL argument");
    idx_file in = {inputs_path}, tg = {targets_path};
    nnm_dataset *ds = NULL;
    nnm_status st;
    if ((st = read_idx(ctx, &in, NNM_DATASET_MAX_BYTES))) goto done;
    if (targets_path && (st = read_idx(ctx, &tg, NNM_DATASET_MAX_BYTES))) goto done;
    if (targets_path && in.dims[0] != tg.dims[0]) {
        st = nnm__error(ctx, NNM_E_SHAPE, "%.*s holds %lld samples but %.*s holds %lld targets",
                        NNM__SHOW_PATH, inputs_path, (long long)in.dims[0], NNM__SHOW_PATH,
                        targets_path, (long long)tg.dims[0]);
        goto done;
    }
    char source[2 * NNM__SHOW_PATH + 8];
    if (targets_path)
        snprintf(source, sizeof source, "%.*s + %.*s", NNM__SHOW_PATH, inputs_path,
                 NNM__SHOW_PATH, targets_path);
    else
        snprintf(source, sizeof source, "%.*s", NNM__SHOW_PATH, inputs_path);
    ds = nnm__dataset_new(ctx, source);
    if (!ds) {
        st = nnm__error(ctx, NNM_E_NOMEM, "%.*s: out of memory", NNM__SHOW_PATH, inputs_path);
        goto done;
    }
    ds->n_stored = in.dims[0];
    ds->ndim = in.ndim - 1;
    for (int32_t d = 1; d < in.ndim; d++) ds->shape[d - 1] = in.dims[d];
    if (in.type == 0x08) {
        ds->elem = NNM__ELEM_U8; /* kept as stored: the loader converts per batch */
        ds->owned_inputs = in.data;
        in.data = NULL;
    } else if (in.type == 0x0D) {
        ds->elem = NNM__ELEM_F32;
        ds->owned_inputs = in.data;
        in.data = NULL;
    } else {
        float *v = malloc((size_t)(in.count ? in.count : 1) * sizeof *v);
        if (!v) {
            st = nnm__error(ctx, NNM_E_NOMEM, "%.*s: out of memory", NNM__SHOW_PATH, inputs_path);
            goto done;
        }
        for (uint64_t i = 0; i < in.count; i++) v[i] = (float)idx_elem(&in, i);
        ds->elem = NNM__ELEM_F32;
        ds->owned_inputs = v;
    }
    ds->inputs = ds->owned_inputs;
    if (!targets_path) {
        if ((st = nnm__dataset_finish(ds, inputs_path))) goto done;
        *out = ds;
        ds = NULL;
        goto done;
    }
    ds->has_targets = 1;
    ds->t_ndim = tg.ndim - 1;
    for (int32_t d = 1; d < tg.ndim; d++) ds->t_shape[d - 1] = tg.dims[d];
    if (tg.type == 0x0D || tg.type == 0x0E) {
        ds->t_float = 1;
        ds->tvalues = malloc((size_t)(tg.count ? tg.count : 1) * sizeof *ds->tvalues);
        if (!ds->tvalues) goto oom;
        for (uint64_t i = 0; i < tg.count; i++) ds->tvalues[i] = (float)idx_elem(&tg, i);
    } else {
        ds->labels = malloc((size_t)(tg.count ? tg.count : 1) * sizeof *ds->labels);
        if (!ds->labels) goto oom;
        for (uint64_t i = 0; i < tg.count; i++) ds->labels[i] = (int64_t)idx_elem(&tg, i);
    }
    if ((st = nnm__dataset_finish(ds, targets_path))) goto done;
    *out = ds;
    ds = NULL;
    goto done;
oom:
    st = nnm__error(ctx, NNM_E_NOMEM, "%.*s: out of memory", NNM__SHOW_PATH, targets_path);
done:
    nnm_dataset_free(ds);
    free(in.data);
    free(tg.data);
    return st;
}
