/* runtime/data/idx.c - IDX files (the MNIST family's format), gzipped or not.
 *
 * Format (http://yann.lecun.com/exdb/mnist/): two zero bytes, a type byte
 * (0x08 u8, 0x09 i8, 0x0B i16, 0x0C i32, 0x0D f32, 0x0E f64), the number of
 * dimensions (1 to NNM_MAX_DIMS), each dimension as a big-endian u32, then the
 * elements, big-endian, row-major. A dataset pairs an inputs file (its first
 * dimension is the sample count) with a targets file of the same count.
 *
 * Files are read through zlib's gzread, which reads gzip streams and plain
 * files alike. Treated as hostile (issue 19), in this order, so that no
 * memory goes to a file before it is known to be what it says:
 *   1. both headers are read and checked: magic, type, dimensions, products
 *      of dimensions (overflow-checked), a plain file's size against its
 *      header exactly;
 *   2. the headers are checked against each other (the same sample count,
 *      samples and targets of at least one value) and what the dataset would
 *      hold against the byte limit (nnm_dataset_options.max_bytes);
 *   3. a gzip stream is inflated once into a small scratch buffer, to check
 *      that it holds exactly the bytes its header declares (no more: a bomb
 *      stops one byte past them; no less; no corrupt stream);
 *   4. only then is the data read, in 1 MiB pieces converted as they come
 *      (u8 inputs kept as u8, other inputs to f32, targets to i64 or f32)
 *      into a buffer that grows with what arrived, and floating-point values
 *      are checked to be finite (unless NNM_DATASET_ALLOW_NONFINITE).
 * Every failure names the file (and the sample, for a bad value).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "data_internal.h"

#define IDX_PIECE ((size_t)1 << 20) /* bytes inflated at a time (a multiple of 8) */

typedef struct idx_file {
    const char *path;
    int type;                     /* the IDX type byte */
    int32_t ndim;
    int64_t dims[NNM_MAX_DIMS];
    size_t esize;                 /* bytes per element */
    uint64_t count;               /* elements */
    uint64_t per;                 /* elements per sample (dims[1..]) */
    uint64_t head_len;
    gzFile gz;                    /* open after idx_open, at the data */
    int compressed;
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

static void idx_close(idx_file *f) {
    if (f->gz) gzclose(f->gz);
    f->gz = NULL;
}

/* Step 1: opens f->path and reads and checks its header. */
static nnm_status idx_open(nnm_ctx *ctx, idx_file *f) {
    const char *path = f->path;
    struct stat sb;
    if (stat(path, &sb) != 0)
        return nnm__error(ctx, NNM_E_IO, "%.*s: %s", NNM__SHOW_PATH, path, strerror(errno));
    if (!S_ISREG(sb.st_mode))
        return nnm__error(ctx, NNM_E_IO, "%.*s: not a regular file", NNM__SHOW_PATH, path);
    errno = 0;
    f->gz = gzopen(path, "rb");
    if (!f->gz)
        return nnm__error(ctx, errno == ENOMEM ? NNM_E_NOMEM : NNM_E_IO, "%.*s: %s",
                          NNM__SHOW_PATH, path, errno ? strerror(errno) : "cannot open");
    gzbuffer(f->gz, 1u << 17);
    unsigned char head[4 + 4 * NNM_MAX_DIMS];
    size_t got = gz_read_full(f->gz, head, 4);
    f->compressed = !gzdirect(f->gz);
    if (got < 4)
        return nnm__error(ctx, NNM_E_INVALID, "%.*s: truncated IDX header (%zu of 4 bytes)%s%s",
                          NNM__SHOW_PATH, path, got, got ? "" : ": ", got ? "" : gz_message(f->gz));
    if (head[0] || head[1] || !idx_esize(head[2]))
        return nnm__error(ctx, NNM_E_INVALID,
                          "%.*s: not an IDX file (magic %02x %02x %02x %02x; expected 00 00, a "
                          "type 08/09/0b/0c/0d/0e, then the dimension count)",
                          NNM__SHOW_PATH, path, head[0], head[1], head[2], head[3]);
    f->type = head[2];
    f->esize = idx_esize(f->type);
    f->ndim = head[3];
    if (f->ndim < 1 || f->ndim > NNM_MAX_DIMS)
        return nnm__error(ctx, NNM_E_INVALID, "%.*s: %d dimensions (an IDX file here has 1 to %d)",
                          NNM__SHOW_PATH, path, (int)f->ndim, NNM_MAX_DIMS);
    got = gz_read_full(f->gz, head + 4, 4 * (size_t)f->ndim);
    if (got < 4 * (size_t)f->ndim)
        return nnm__error(ctx, NNM_E_INVALID, "%.*s: truncated IDX header (%zu of %zu bytes)",
                          NNM__SHOW_PATH, path, 4 + got, 4 + 4 * (size_t)f->ndim);
    uint64_t count = 1, per = 1, want;
    int wraps = 0;
    for (int32_t d = 0; d < f->ndim; d++) {
        const unsigned char *p = head + 4 + 4 * d;
        uint32_t v = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
        f->dims[d] = v;
        wraps |= __builtin_mul_overflow(count, (uint64_t)v, &count);
        if (d > 0) wraps |= __builtin_mul_overflow(per, (uint64_t)v, &per);
    }
    if (wraps || __builtin_mul_overflow(count, (uint64_t)f->esize, &want))
        return nnm__error(ctx, NNM_E_LIMIT,
                          "%.*s: the header declares more than 2^64 bytes of data",
                          NNM__SHOW_PATH, path);
    f->count = count;
    f->per = per;
    f->head_len = 4 + 4 * (uint64_t)f->ndim;
    if (!f->compressed && (uint64_t)sb.st_size != f->head_len + want)
        return nnm__error(ctx, NNM_E_INVALID,
                          "%.*s: %s: the header promises %llu bytes of data, the file holds %lld",
                          NNM__SHOW_PATH, path,
                          (uint64_t)sb.st_size < f->head_len + want ? "truncated" : "trailing bytes",
                          (unsigned long long)want, (long long)(sb.st_size - (off_t)f->head_len));
    return NNM_OK;
}

/* After the data: no byte more, and no stream error. */
static nnm_status idx_check_end(nnm_ctx *ctx, idx_file *f, uint64_t want, uint64_t have) {
    const char *path = f->path;
    if (have < want) {
        int err = 0;
        char why[200] = "";
        gzerror(f->gz, &err);
        if (err != Z_OK) snprintf(why, sizeof why, " (%s)", gz_message(f->gz));
        return nnm__error(ctx, NNM_E_INVALID,
                          "%.*s: truncated: the header promises %llu bytes of data, the file "
                          "holds %llu%s",
                          NNM__SHOW_PATH, path, (unsigned long long)want,
                          (unsigned long long)have, why);
    }
    unsigned char extra;
    if (gz_read_full(f->gz, &extra, 1) == 1)
        return nnm__error(ctx, NNM_E_INVALID,
                          "%.*s: trailing bytes after the %llu bytes of data the header promises",
                          NNM__SHOW_PATH, path, (unsigned long long)want);
    int err = 0;
    gzerror(f->gz, &err);
    if (err == Z_BUF_ERROR) /* the gzip stream ends early: no trailer */
        return nnm__error(ctx, NNM_E_INVALID, "%.*s: truncated gzip stream (%s)", NNM__SHOW_PATH,
                          path, gz_message(f->gz));
    if (err != Z_OK)
        return nnm__error(ctx, NNM_E_INVALID, "%.*s: %s", NNM__SHOW_PATH, path, gz_message(f->gz));
    return NNM_OK;
}

/* Step 3: a gzip stream holds exactly its header's bytes (read into a
 * scratch piece, nothing kept); then back to the data. */
static nnm_status idx_check_stream(nnm_ctx *ctx, idx_file *f, unsigned char *piece) {
    if (!f->compressed) return NNM_OK;
    const uint64_t want = f->count * f->esize;
    uint64_t have = 0;
    while (have < want) {
        size_t n = want - have < IDX_PIECE ? (size_t)(want - have) : IDX_PIECE;
        size_t r = gz_read_full(f->gz, piece, n);
        have += r;
        if (r < n) break;
    }
    nnm_status st = idx_check_end(ctx, f, want, have);
    if (st) return st;
    unsigned char head[4 + 4 * NNM_MAX_DIMS];
    if (gzrewind(f->gz) != 0 || gz_read_full(f->gz, head, (size_t)f->head_len) != f->head_len)
        return nnm__error(ctx, NNM_E_IO, "%.*s: cannot read it again: %s", NNM__SHOW_PATH,
                          f->path, gz_message(f->gz));
    return NNM_OK;
}

/* Element p (host order after swapping) of type `type` as a double. */
static double idx_value(int type, const unsigned char *p) {
    switch (type) {
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

enum { IDX_AS_U8, IDX_AS_F32, IDX_AS_I64 };

/* Step 4: reads the data into a new buffer of `as` elements (*out, malloc'd),
 * converting and checking a piece at a time. */
static nnm_status idx_read(nnm_ctx *ctx, idx_file *f, int as, int allow_nonfinite,
                           unsigned char *piece, void **out) {
    const char *path = f->path;
    const uint64_t want = f->count * f->esize;
    const size_t out_es = as == IDX_AS_U8 ? 1 : as == IDX_AS_F32 ? 4 : 8;
    const size_t total = (size_t)f->count * out_es; /* bounded by the limit */
    const int is_float = f->type == 0x0D || f->type == 0x0E;
    unsigned char *buf = NULL;
    size_t cap = 0;
    uint64_t have = 0, done = 0; /* bytes read, elements converted */
    nnm_status st = NNM_OK;
    while (have < want) {
        size_t n = want - have < IDX_PIECE ? (size_t)(want - have) : IDX_PIECE;
        size_t r = gz_read_full(f->gz, piece, n);
        have += r;
        const size_t nel = r / f->esize;
        /* grow with what arrived: memory follows the data, not the header */
        size_t need = (size_t)(done + nel) * out_es;
        if (need > cap) {
            size_t next = cap ? cap : IDX_PIECE;
            while (next < need) next *= 2;
            if (next > total) next = total;
            unsigned char *p = realloc(buf, next ? next : 1);
            if (!p) {
                st = nnm__error(ctx, NNM_E_NOMEM, "%.*s: out of memory for %llu bytes of data",
                                NNM__SHOW_PATH, path, (unsigned long long)total);
                goto fail;
            }
            buf = p;
            cap = next;
        }
        for (size_t i = 0; i < nel; i++) {
            unsigned char *e = piece + i * f->esize;
            for (size_t a = 0, b = f->esize - 1; a < b; a++, b--) { /* big-endian */
                unsigned char t = e[a];
                e[a] = e[b];
                e[b] = t;
            }
            const uint64_t at = done + i;
            if (as == IDX_AS_U8) {
                buf[at] = e[0];
                continue;
            }
            double v = idx_value(f->type, e);
            if (as == IDX_AS_I64) {
                int64_t iv = (int64_t)v; /* integer types only: exact */
                memcpy(buf + 8 * at, &iv, 8);
                continue;
            }
            float fv = (float)v;
            if (is_float && !allow_nonfinite && !isfinite(fv)) {
                const uint64_t per = f->per ? f->per : 1;
                char what[64];
                if (isnan(v)) snprintf(what, sizeof what, "NaN");
                else if (isinf(v)) snprintf(what, sizeof what, "an infinity");
                else snprintf(what, sizeof what, "%g, outside f32's range", v);
                st = nnm__error(ctx, NNM_E_INVALID,
                                "%.*s: sample %llu holds %s (value %llu of the sample): data "
                                "must be finite (NNM_DATASET_ALLOW_NONFINITE, nnm "
                                "--allow-nonfinite, lets it through)",
                                NNM__SHOW_PATH, path, (unsigned long long)(at / per), what,
                                (unsigned long long)(at % per));
                goto fail;
            }
            memcpy(buf + 4 * at, &fv, 4);
        }
        done += nel;
        if (r < n) break;
    }
    if ((st = idx_check_end(ctx, f, want, have))) goto fail;
    *out = buf ? buf : malloc(1);
    if (!*out) {
        st = nnm__error(ctx, NNM_E_NOMEM, "%.*s: out of memory", NNM__SHOW_PATH, path);
        goto fail;
    }
    return NNM_OK;
fail:
    free(buf);
    return st;
}

static nnm_status idx_limit_error(nnm_ctx *ctx, const char *source, uint64_t inputs,
                                  uint64_t targets, uint64_t order, uint64_t max) {
    return nnm__error(ctx, NNM_E_LIMIT,
                      "%.*s: the dataset would hold %llu MiB (inputs %llu bytes, targets %llu, "
                      "sample order %llu), over the limit of %llu bytes "
                      "(nnm_dataset_options.max_bytes; nnm: --max-data-bytes or "
                      "training.max_data_bytes); nothing was read",
                      NNM__SHOW_PATH * 2, source,
                      (unsigned long long)((inputs + targets + order) >> 20),
                      (unsigned long long)inputs, (unsigned long long)targets,
                      (unsigned long long)order, (unsigned long long)max);
}

NNM_API nnm_status nnm_dataset_open_idx(nnm_ctx *ctx, const char *inputs_path,
                                        const char *targets_path, nnm_dataset **out) {
    return nnm_dataset_open_idx_v2(ctx, inputs_path, targets_path, NULL, out);
}

NNM_API nnm_status nnm_dataset_open_idx_v2(nnm_ctx *ctx, const char *inputs_path,
                                           const char *targets_path,
                                           const nnm_dataset_options *opts, nnm_dataset **out) {
    if (out) *out = NULL;
    if (!ctx) return NNM_E_INVALID;
    if (!inputs_path || !out)
        return nnm__error(ctx, NNM_E_INVALID, "nnm_dataset_open_idx: NULL argument");
    nnm__dataset_opts o;
    nnm_status st = nnm__dataset_opts_get(ctx, opts, &o);
    if (st) return st;
    idx_file in = {inputs_path}, tg = {targets_path};
    nnm_dataset *ds = NULL;
    unsigned char *piece = NULL;
    void *tdata = NULL;
    char source[2 * NNM__SHOW_PATH + 8];
    if (targets_path)
        snprintf(source, sizeof source, "%.*s + %.*s", NNM__SHOW_PATH, inputs_path,
                 NNM__SHOW_PATH, targets_path);
    else
        snprintf(source, sizeof source, "%.*s", NNM__SHOW_PATH, inputs_path);

    /* 1-2: both headers, against each other and the limit */
    if ((st = idx_open(ctx, &in))) goto done;
    if (targets_path && (st = idx_open(ctx, &tg))) goto done;
    if (in.dims[0] < 1) {
        st = nnm__error(ctx, NNM_E_INVALID, "%.*s: the dataset holds no samples", NNM__SHOW_PATH,
                        inputs_path);
        goto done;
    }
    if (targets_path && in.dims[0] != tg.dims[0]) {
        st = nnm__error(ctx, NNM_E_SHAPE, "%.*s holds %lld samples but %.*s holds %lld targets",
                        NNM__SHOW_PATH, inputs_path, (long long)in.dims[0], NNM__SHOW_PATH,
                        targets_path, (long long)tg.dims[0]);
        goto done;
    }
    if (in.per == 0 || (targets_path && tg.per == 0)) {
        const idx_file *z = in.per == 0 ? &in : &tg;
        st = nnm__error(ctx, NNM_E_SHAPE,
                        "%.*s: %lld %s of no values each (a dimension after the first is 0)",
                        NNM__SHOW_PATH, z->path, (long long)z->dims[0],
                        z == &in ? "samples" : "targets");
        goto done;
    }
    const int t_float = targets_path && (tg.type == 0x0D || tg.type == 0x0E);
    uint64_t in_bytes = in.count * (in.type == 0x08 ? 1u : 4u); /* <= count * 8: no wrap */
    uint64_t tg_bytes = targets_path ? tg.count * (t_float ? 4u : 8u) : 0;
    uint64_t order = 16 * (uint64_t)in.dims[0], held = 0;
    if (in.count > UINT64_MAX / 8 || tg.count > UINT64_MAX / 8 ||
        __builtin_add_overflow(in_bytes, tg_bytes, &held) ||
        __builtin_add_overflow(held, order, &held) || held > o.max_bytes) {
        st = idx_limit_error(ctx, source, in_bytes, tg_bytes, order, o.max_bytes);
        goto done;
    }
    /* 3: the streams hold what their headers declare */
    piece = malloc(IDX_PIECE);
    if (!piece) {
        st = nnm__error(ctx, NNM_E_NOMEM, "%.*s: out of memory", NNM__SHOW_PATH, inputs_path);
        goto done;
    }
    if ((st = idx_check_stream(ctx, &in, piece))) goto done;
    if (targets_path && (st = idx_check_stream(ctx, &tg, piece))) goto done;

    /* 4: the data */
    ds = nnm__dataset_new(ctx, source);
    if (!ds) {
        st = nnm__error(ctx, NNM_E_NOMEM, "%.*s: out of memory", NNM__SHOW_PATH, inputs_path);
        goto done;
    }
    const int allow = (o.flags & NNM_DATASET_ALLOW_NONFINITE) != 0;
    ds->n_stored = in.dims[0];
    ds->ndim = in.ndim - 1;
    for (int32_t d = 1; d < in.ndim; d++) ds->shape[d - 1] = in.dims[d];
    ds->elem = in.type == 0x08 ? NNM__ELEM_U8 : NNM__ELEM_F32; /* u8 stays u8 */
    if ((st = idx_read(ctx, &in, in.type == 0x08 ? IDX_AS_U8 : IDX_AS_F32, allow, piece,
                       &ds->owned_inputs)))
        goto done;
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
    ds->t_float = t_float;
    if ((st = idx_read(ctx, &tg, t_float ? IDX_AS_F32 : IDX_AS_I64, allow, piece, &tdata)))
        goto done;
    if (t_float) ds->tvalues = tdata;
    else ds->labels = tdata;
    tdata = NULL;
    if ((st = nnm__dataset_finish(ds, targets_path))) goto done;
    *out = ds;
    ds = NULL;
done:
    nnm_dataset_free(ds);
    free(tdata);
    free(piece);
    idx_close(&in);
    idx_close(&tg);
    return st;
}
