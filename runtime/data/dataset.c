/* runtime/data/dataset.c - datasets: what every reader shares (element
 * conversion, info, statistics, slices) and the safetensors dataset, an
 * inputs tensor and a targets tensor of one file, read in place from its
 * mapping. The IDX reader is idx.c; the batching pipeline is loader.c. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data_internal.h"

#define SHOW_NAME 160 /* bytes of a (hostile) tensor name quoted in a message */

size_t nnm__elem_size(int elem) {
    switch (elem) {
    case NNM__ELEM_U8:
    case NNM__ELEM_I8: return 1;
    case NNM__ELEM_U16:
    case NNM__ELEM_I16:
    case NNM__ELEM_F16:
    case NNM__ELEM_BF16: return 2;
    case NNM__ELEM_I32:
    case NNM__ELEM_F32: return 4;
    case NNM__ELEM_F64: return 8;
    default: return 0;
    }
}

static float half_to_f32(uint16_t h) {
    int sign = h >> 15, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    float v;
    if (exp == 0)
        v = ldexpf((float)man, -24);
    else if (exp == 31)
        v = man ? NAN : INFINITY;
    else
        v = ldexpf((float)(man | 0x400), exp - 25);
    return sign ? -v : v;
}

/* The hot case (images). restrict, because a char pointer may alias
 * anything, and blocks of 16 with a fixed trip count, which -O2's cheap
 * vectoriser takes (a plain loop stays scalar there: 4x slower). */
static void u8_to_f32(const unsigned char *restrict src, size_t n, float a, float b,
                      float *restrict dst) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (size_t k = 0; k < 16; k++) dst[i + k] = a * (float)src[i + k] + b;
    for (; i < n; i++) dst[i] = a * (float)src[i] + b;
}

void nnm__elem_to_f32(int elem, const unsigned char *src, size_t n, float a, float b, float *dst) {
    size_t i;
    switch (elem) {
    case NNM__ELEM_U8:
        u8_to_f32(src, n, a, b, dst);
        return;
    case NNM__ELEM_F32:
        for (i = 0; i < n; i++) {
            float v;
            memcpy(&v, src + 4 * i, 4);
            dst[i] = a * v + b;
        }
        return;
    default: break;
    }
    for (i = 0; i < n; i++) {
        const unsigned char *p = src + i * nnm__elem_size(elem);
        float v = 0;
        switch (elem) {
        case NNM__ELEM_I8: v = (float)(int8_t)p[0]; break;
        case NNM__ELEM_U16: {
            uint16_t u;
            memcpy(&u, p, 2);
            v = (float)u;
        } break;
        case NNM__ELEM_I16: {
            int16_t u;
            memcpy(&u, p, 2);
            v = (float)u;
        } break;
        case NNM__ELEM_I32: {
            int32_t u;
            memcpy(&u, p, 4);
            v = (float)u;
        } break;
        case NNM__ELEM_F16: {
            uint16_t u;
            memcpy(&u, p, 2);
            v = half_to_f32(u);
        } break;
        case NNM__ELEM_BF16: {
            uint16_t u;
            uint32_t bits;
            memcpy(&u, p, 2);
            bits = (uint32_t)u << 16;
            memcpy(&v, &bits, 4);
        } break;
        case NNM__ELEM_F64: {
            double d;
            memcpy(&d, p, 8);
            v = (float)d;
        } break;
        default: break;
        }
        dst[i] = a * v + b;
    }
}

nnm_dataset *nnm__dataset_new(nnm_ctx *ctx, const char *source) {
    nnm_dataset *ds = calloc(1, sizeof *ds);
    if (!ds) return NULL;
    ds->source = strdup(source);
    if (!ds->source) {
        free(ds);
        return NULL;
    }
    ds->ctx = ctx;
    nnm__ctx_retain(ctx);
    return ds;
}

nnm_status nnm__dataset_finish(nnm_dataset *ds, const char *targets_what) {
    ds->n = ds->n_stored;
    ds->sample_numel = nnm__numel(ds->ndim, ds->shape);
    ds->t_numel = nnm__numel(ds->t_ndim, ds->t_shape);
    ds->n_classes = 0;
    ds->n_ignored = 0;
    if (ds->n_stored < 1)
        return nnm__error(ds->ctx, NNM_E_INVALID, "%.*s: the dataset holds no samples",
                          NNM__SHOW_PATH, ds->source);
    if (ds->labels) {
        /* Class indices: 0 to 2^31 - 1, or -100 (ignore_index: the sample
         * counts in neither the loss nor the accuracy). Anything else is a
         * corrupt or foreign file; refused here, where the file and the
         * sample can still be named (and 1 + the largest cannot overflow). */
        int64_t hi = -1;
        const uint64_t count = (uint64_t)ds->n_stored * (uint64_t)ds->t_numel;
        for (uint64_t i = 0; i < count; i++) {
            const int64_t v = ds->labels[i];
            if (v == NNM_DATASET_IGNORE_INDEX) {
                ds->n_ignored++;
                continue;
            }
            if (v < 0 || v > NNM_DATASET_MAX_CLASS)
                return nnm__error(ds->ctx, NNM_E_INVALID,
                                  "%.*s: sample %llu has target %lld, not a class index (0 to "
                                  "%lld, or %d to ignore the sample)",
                                  NNM__SHOW_PATH * 2, targets_what,
                                  (unsigned long long)(i / (uint64_t)(ds->t_numel ? ds->t_numel : 1)),
                                  (long long)v, (long long)NNM_DATASET_MAX_CLASS,
                                  NNM_DATASET_IGNORE_INDEX);
            if (v > hi) hi = v;
        }
        ds->n_classes = hi + 1;
    }
    return NNM_OK;
}

NNM_API void nnm_dataset_free(nnm_dataset *ds) {
    if (!ds) return;
    free(ds->owned_inputs);
    free(ds->labels);
    free(ds->tvalues);
    nnm_safetensors_close(ds->st);
    free(ds->source);
    nnm__ctx_release(ds->ctx);
    free(ds);
}

static const nnm_dtype elem_dtypes[] = {
    [NNM__ELEM_U8] = {NNM_DTYPE_UINT, 8, 1},    [NNM__ELEM_I8] = {NNM_DTYPE_INT, 8, 1},
    [NNM__ELEM_U16] = {NNM_DTYPE_UINT, 16, 1},  [NNM__ELEM_I16] = {NNM_DTYPE_INT, 16, 1},
    [NNM__ELEM_I32] = {NNM_DTYPE_INT, 32, 1},   [NNM__ELEM_F16] = {NNM_DTYPE_FLOAT, 16, 1},
    [NNM__ELEM_BF16] = {NNM_DTYPE_BFLOAT, 16, 1}, [NNM__ELEM_F32] = {NNM_DTYPE_FLOAT, 32, 1},
    [NNM__ELEM_F64] = {NNM_DTYPE_FLOAT, 64, 1},
};

static void dataset_info_fill(const nnm_dataset *ds, nnm_dataset_info *out);

NNM_API nnm_status nnm_dataset_info_get(const nnm_dataset *ds, nnm_dataset_info *out) {
    /* A caller built against 0.4 (no n_ignored) passes the smaller size:
     * fill what it has room for. */
    const size_t v04 = offsetof(nnm_dataset_info, n_ignored);
    if (!ds || !out || out->struct_size < v04) return NNM_E_INVALID;
    uint32_t size = out->struct_size;
    nnm_dataset_info full;
    memset(&full, 0, sizeof full);
    dataset_info_fill(ds, &full);
    memcpy(out, &full, size < sizeof full ? size : sizeof full);
    out->struct_size = size;
    return NNM_OK;
}

static void dataset_info_fill(const nnm_dataset *ds, nnm_dataset_info *out) {
    out->struct_size = sizeof *out;
    out->n_samples = ds->n;
    out->input_ndim = ds->ndim;
    memcpy(out->input_shape, ds->shape, sizeof ds->shape);
    out->input_dtype = elem_dtypes[ds->elem];
    out->target_ndim = ds->t_ndim;
    memcpy(out->target_shape, ds->t_shape, sizeof ds->t_shape);
    out->target_dtype = !ds->has_targets ? (nnm_dtype){0, 0, 0}
                        : ds->t_float ? NNM_F32 : (nnm_dtype){NNM_DTYPE_INT, 64, 1};
    out->n_classes = ds->n_classes;
    out->source = ds->source;
    out->n_ignored = ds->n_ignored;
}

NNM_API nnm_status nnm_dataset_limit(nnm_dataset *ds, int64_t n) {
    if (!ds) return NNM_E_INVALID;
    if (n < 1)
        return nnm__error(ds->ctx, NNM_E_INVALID, "nnm_dataset_limit: %lld samples (at least 1)",
                          (long long)n);
    ds->n = n < ds->n_stored ? n : ds->n_stored;
    ds->n_ignored = 0; /* of the visible samples */
    if (ds->labels)
        for (uint64_t i = 0; i < (uint64_t)ds->n * (uint64_t)ds->t_numel; i++)
            ds->n_ignored += ds->labels[i] == NNM_DATASET_IGNORE_INDEX;
    return NNM_OK;
}

NNM_API nnm_status nnm_dataset_stats(const nnm_dataset *ds, double scale, double *mean,
                                     double *std) {
    if (!ds || !mean || !std) return NNM_E_INVALID;
    /* Sums in double per sample, then over samples: exact enough for any
     * dataset that fits in memory, and one pass. */
    enum { CHUNK = 4096 };
    float buf[CHUNK];
    double s = 0, s2 = 0;
    const size_t es = nnm__elem_size(ds->elem);
    const size_t total = (size_t)ds->n * (size_t)ds->sample_numel;
    for (size_t at = 0; at < total; at += CHUNK) {
        size_t k = total - at < CHUNK ? total - at : CHUNK;
        nnm__elem_to_f32(ds->elem, ds->inputs + at * es, k, (float)scale, 0.0f, buf);
        double cs = 0, cs2 = 0;
        for (size_t i = 0; i < k; i++) {
            cs += buf[i];
            cs2 += (double)buf[i] * buf[i];
        }
        s += cs;
        s2 += cs2;
    }
    double m = s / (double)total, var = s2 / (double)total - m * m;
    *mean = m;
    *std = var > 0 ? sqrt(var) : 0.0;
    return NNM_OK;
}

/* ---- safetensors ------------------------------------------------------- */

static int st_elem(const char *dtype_name) {
    static const struct {
        const char *name;
        int elem;
    } map[] = {{"U8", NNM__ELEM_U8},   {"I8", NNM__ELEM_I8},     {"U16", NNM__ELEM_U16},
               {"I16", NNM__ELEM_I16}, {"I32", NNM__ELEM_I32},   {"F16", NNM__ELEM_F16},
               {"BF16", NNM__ELEM_BF16}, {"F32", NNM__ELEM_F32}, {"F64", NNM__ELEM_F64}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(map[i].name, dtype_name) == 0) return map[i].elem;
    return -1;
}

/* Reads target element i of an integer entry as i64; 0 when the dtype is
 * not an integer one. */
static int st_int(const nnm_st_entry *e, uint64_t i, int64_t *v) {
    const unsigned char *p = (const unsigned char *)e->data;
    const char *n = e->dtype_name;
    if (!strcmp(n, "I64")) { memcpy(v, p + 8 * i, 8); return 1; }
    if (!strcmp(n, "U64")) {
        uint64_t u;
        memcpy(&u, p + 8 * i, 8);
        *v = u > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)u; /* refused as a class */
        return 1;
    }
    if (!strcmp(n, "I32")) { int32_t u; memcpy(&u, p + 4 * i, 4); *v = u; return 1; }
    if (!strcmp(n, "U32")) { uint32_t u; memcpy(&u, p + 4 * i, 4); *v = u; return 1; }
    if (!strcmp(n, "I16")) { int16_t u; memcpy(&u, p + 2 * i, 2); *v = u; return 1; }
    if (!strcmp(n, "U16")) { uint16_t u; memcpy(&u, p + 2 * i, 2); *v = u; return 1; }
    if (!strcmp(n, "I8")) { *v = (int8_t)p[i]; return 1; }
    if (!strcmp(n, "U8") || !strcmp(n, "BOOL")) { *v = p[i]; return 1; }
    return 0;
}

nnm_status nnm__dataset_opts_get(nnm_ctx *ctx, const nnm_dataset_options *opts,
                                 nnm__dataset_opts *out) {
    memset(out, 0, sizeof *out);
    if (opts) {
        if (opts->struct_size < sizeof *opts)
            return nnm__error(ctx, NNM_E_INVALID,
                              "nnm_dataset_options: struct_size %u is too small (%zu)",
                              (unsigned)opts->struct_size, sizeof *opts);
        if (opts->flags & ~NNM_DATASET_ALLOW_NONFINITE)
            return nnm__error(ctx, NNM_E_INVALID, "nnm_dataset_options: unknown flags 0x%x",
                              (unsigned)(opts->flags & ~NNM_DATASET_ALLOW_NONFINITE));
        out->flags = opts->flags;
        out->max_bytes = opts->max_bytes;
        out->inputs_name = opts->inputs_name;
        out->targets_name = opts->targets_name;
    }
    if (!out->max_bytes) out->max_bytes = NNM_DATASET_DEFAULT_MAX_BYTES;
    if (!out->inputs_name) out->inputs_name = NNM_DATASET_INPUTS;
    if (!out->targets_name) out->targets_name = NNM_DATASET_TARGETS;
    return NNM_OK;
}

/* The first non-finite value of `count` elements of `elem` at data (per
 * values a sample), refused naming what and the sample; NNM_OK when none. */
static nnm_status check_finite(nnm_ctx *ctx, const char *what, int elem, const unsigned char *data,
                               uint64_t count, uint64_t per) {
    if (elem != NNM__ELEM_F16 && elem != NNM__ELEM_BF16 && elem != NNM__ELEM_F32 &&
        elem != NNM__ELEM_F64)
        return NNM_OK;
    enum { CHUNK = 4096 };
    float buf[CHUNK];
    const size_t es = nnm__elem_size(elem);
    for (uint64_t at = 0; at < count; at += CHUNK) {
        size_t k = count - at < CHUNK ? (size_t)(count - at) : CHUNK;
        nnm__elem_to_f32(elem, data + at * es, k, 1.0f, 0.0f, buf);
        for (size_t i = 0; i < k; i++) {
            if (isfinite(buf[i])) continue;
            const uint64_t e = at + i;
            char v[64];
            double d = buf[i];
            if (elem == NNM__ELEM_F64) memcpy(&d, data + e * 8, 8);
            if (isnan(d)) snprintf(v, sizeof v, "NaN");
            else if (isinf(d)) snprintf(v, sizeof v, "an infinity");
            else snprintf(v, sizeof v, "%g, outside f32's range", d);
            return nnm__error(ctx, NNM_E_INVALID,
                              "%s: sample %llu holds %s (value %llu of the sample): data must be "
                              "finite (NNM_DATASET_ALLOW_NONFINITE, nnm --allow-nonfinite, lets "
                              "it through)",
                              what, (unsigned long long)(e / per), v, (unsigned long long)(e % per));
        }
    }
    return NNM_OK;
}

NNM_API nnm_status nnm_dataset_open_safetensors(nnm_ctx *ctx, const char *path,
                                                const char *inputs_name, const char *targets_name,
                                                nnm_dataset **out) {
    nnm_dataset_options o;
    memset(&o, 0, sizeof o);
    o.struct_size = sizeof o;
    o.inputs_name = inputs_name;
    o.targets_name = targets_name;
    return nnm_dataset_open_safetensors_v2(ctx, path, &o, out);
}

NNM_API nnm_status nnm_dataset_open_safetensors_v2(nnm_ctx *ctx, const char *path,
                                                   const nnm_dataset_options *opts,
                                                   nnm_dataset **out) {
    if (out) *out = NULL;
    if (!ctx) return NNM_E_INVALID;
    if (!path || !out) return nnm__error(ctx, NNM_E_INVALID, "nnm_dataset_open_safetensors: NULL argument");
    nnm__dataset_opts op;
    nnm_status st = nnm__dataset_opts_get(ctx, opts, &op);
    if (st) return st;
    const char *inputs_name = op.inputs_name, *targets_name = op.targets_name;
    nnm_dataset *ds = nnm__dataset_new(ctx, path);
    if (!ds) return nnm__error(ctx, NNM_E_NOMEM, "%.*s: out of memory", NNM__SHOW_PATH, path);
    st = nnm_safetensors_open(ctx, path, &ds->st);
    nnm_st_entry in = {sizeof in}, tg = {sizeof tg};
    char what[NNM__SHOW_PATH + SHOW_NAME + 16];
    if (st) goto fail; /* the reader's message names the file */
    if (nnm_safetensors_find(ds->st, inputs_name, &in) != NNM_OK) {
        st = nnm__error(ctx, NNM_E_NOT_FOUND, "%.*s: no inputs tensor named '%.*s'",
                        NNM__SHOW_PATH, path, SHOW_NAME, inputs_name);
        goto fail;
    }
    if (nnm_safetensors_find(ds->st, targets_name, &tg) != NNM_OK) {
        st = nnm__error(ctx, NNM_E_NOT_FOUND, "%.*s: no targets tensor named '%.*s'",
                        NNM__SHOW_PATH, path, SHOW_NAME, targets_name);
        goto fail;
    }
    ds->elem = st_elem(in.dtype_name);
    if (ds->elem < 0) {
        st = nnm__error(ctx, NNM_E_TYPE,
                        "%.*s: inputs '%.*s' has dtype %s; a dataset takes U8, I8, U16, I16, "
                        "I32, F16, BF16, F32 or F64",
                        NNM__SHOW_PATH, path, SHOW_NAME, inputs_name, in.dtype_name);
        goto fail;
    }
    if (in.ndim < 1 || tg.ndim < 1) {
        st = nnm__error(ctx, NNM_E_SHAPE,
                        "%.*s: inputs and targets need a first (sample) dimension; '%.*s' has "
                        "%d dimensions, '%.*s' %d",
                        NNM__SHOW_PATH, path, SHOW_NAME, inputs_name, (int)in.ndim, SHOW_NAME,
                        targets_name, (int)tg.ndim);
        goto fail;
    }
    if (in.shape[0] != tg.shape[0]) {
        st = nnm__error(ctx, NNM_E_SHAPE,
                        "%.*s: %lld inputs ('%.*s') but %lld targets ('%.*s')", NNM__SHOW_PATH,
                        path, (long long)in.shape[0], SHOW_NAME, inputs_name,
                        (long long)tg.shape[0], SHOW_NAME, targets_name);
        goto fail;
    }
    if (in.ndim - 1 > NNM_MAX_DIMS - 1 || tg.ndim - 1 > NNM_MAX_DIMS - 1) {
        st = nnm__error(ctx, NNM_E_SHAPE, "%.*s: a sample has more than %d dimensions",
                        NNM__SHOW_PATH, path, NNM_MAX_DIMS - 1);
        goto fail;
    }
    /* The header's counts against each other and the limit, before anything
     * is allocated (the reader checked that each tensor's bytes are in the
     * file, so these products cannot wrap). */
    uint64_t in_per = 1, t_per = 1;
    for (int32_t d = 1; d < in.ndim; d++) in_per *= (uint64_t)in.shape[d];
    for (int32_t d = 1; d < tg.ndim; d++) t_per *= (uint64_t)tg.shape[d];
    if (in.shape[0] < 1) {
        st = nnm__error(ctx, NNM_E_INVALID, "%.*s: the dataset holds no samples", NNM__SHOW_PATH,
                        path);
        goto fail;
    }
    if (!in_per || !t_per) {
        st = nnm__error(ctx, NNM_E_SHAPE,
                        "%.*s: %s '%.*s' has %lld samples of no values each (a dimension after "
                        "the first is 0)",
                        NNM__SHOW_PATH, path, !in_per ? "inputs" : "targets", SHOW_NAME,
                        !in_per ? inputs_name : targets_name, (long long)in.shape[0]);
        goto fail;
    }
    {
        const int t_is_float = !strcmp(tg.dtype_name, "F32") || !strcmp(tg.dtype_name, "F64") ||
                               !strcmp(tg.dtype_name, "F16") || !strcmp(tg.dtype_name, "BF16");
        const uint64_t n = (uint64_t)in.shape[0], t_held = n * t_per * (t_is_float ? 4u : 8u);
        const uint64_t order = 16 * n, held = in.nbytes + t_held + order;
        if (held > op.max_bytes) {
            st = nnm__error(ctx, NNM_E_LIMIT,
                            "%.*s: the dataset would hold %llu MiB (inputs '%.*s' %llu bytes, "
                            "targets %llu, sample order %llu), over the limit of %llu bytes "
                            "(nnm_dataset_options.max_bytes; nnm: --max-data-bytes or "
                            "training.max_data_bytes); nothing was read",
                            NNM__SHOW_PATH, path, (unsigned long long)(held >> 20), SHOW_NAME,
                            inputs_name, (unsigned long long)in.nbytes,
                            (unsigned long long)t_held, (unsigned long long)order,
                            (unsigned long long)op.max_bytes);
            goto fail;
        }
    }
    if (!(op.flags & NNM_DATASET_ALLOW_NONFINITE)) {
        snprintf(what, sizeof what, "%.*s: inputs '%.*s'", NNM__SHOW_PATH, path, SHOW_NAME,
                 inputs_name);
        if ((st = check_finite(ctx, what, ds->elem, in.data, (uint64_t)in.shape[0] * in_per,
                               in_per)))
            goto fail;
    }
    ds->n_stored = in.shape[0];
    ds->ndim = in.ndim - 1;
    for (int32_t d = 1; d < in.ndim; d++) ds->shape[d - 1] = in.shape[d];
    ds->inputs = in.data;
    ds->t_ndim = tg.ndim - 1;
    ds->has_targets = 1;
    for (int32_t d = 1; d < tg.ndim; d++) ds->t_shape[d - 1] = tg.shape[d];
    /* The reader checked nbytes == numel * element size, so these counts are
     * the file's own and bounded by its size. */
    uint64_t tcount = (uint64_t)nnm__numel(tg.ndim, tg.shape);
    int64_t probe;
    if (tcount && st_int(&tg, 0, &probe)) {
        ds->labels = malloc((size_t)tcount * sizeof *ds->labels);
        if (!ds->labels) goto oom;
        for (uint64_t i = 0; i < tcount; i++) st_int(&tg, i, &ds->labels[i]);
    } else if (!strcmp(tg.dtype_name, "F32") || !strcmp(tg.dtype_name, "F64") ||
               !strcmp(tg.dtype_name, "F16") || !strcmp(tg.dtype_name, "BF16")) {
        int te = st_elem(tg.dtype_name);
        ds->t_float = 1;
        ds->tvalues = malloc((size_t)(tcount ? tcount : 1) * sizeof *ds->tvalues);
        if (!ds->tvalues) goto oom;
        nnm__elem_to_f32(te, tg.data, (size_t)tcount, 1.0f, 0.0f, ds->tvalues);
        if (!(op.flags & NNM_DATASET_ALLOW_NONFINITE)) {
            snprintf(what, sizeof what, "%.*s: targets '%.*s'", NNM__SHOW_PATH, path, SHOW_NAME,
                     targets_name);
            if ((st = check_finite(ctx, what, te, tg.data, tcount, t_per))) goto fail;
        }
    } else if (tcount) {
        st = nnm__error(ctx, NNM_E_TYPE,
                        "%.*s: targets '%.*s' has dtype %s; a dataset takes integer (class "
                        "indices) or floating targets",
                        NNM__SHOW_PATH, path, SHOW_NAME, targets_name, tg.dtype_name);
        goto fail;
    }
    snprintf(what, sizeof what, "%.*s: targets '%.*s'", NNM__SHOW_PATH, path, SHOW_NAME,
             targets_name);
    if ((st = nnm__dataset_finish(ds, what))) goto fail;
    *out = ds;
    return NNM_OK;
oom:
    st = nnm__error(ctx, NNM_E_NOMEM, "%.*s: out of memory for the targets", NNM__SHOW_PATH, path);
fail:
    nnm_dataset_free(ds);
    return st;
}
