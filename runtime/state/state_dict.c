/* runtime/state/state_dict.c - state dicts: a module tree's parameters and
 * persistent buffers under PyTorch's dotted state_dict names, saved to and
 * loaded from safetensors files.
 *
 * Names and order follow Module.state_dict(): for each module, its own
 * parameters, then its own persistent buffers, then each child's under
 * "<child>.". Loading validates everything first (keys, shapes, dtypes,
 * devices) and only then copies, so a strict failure changes nothing. F32
 * tensors accept F32, F16, BF16, F64 and I64 data (converted; I64 is for
 * PyTorch's integer buffers such as num_batches_tracked); other dtypes need
 * the same dtype. Data is copied straight from the file's mapping.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define SD_NAME_CAP (NNM_NAME_MAX + 1) /* longest dotted name, and its NUL */
#define SD_SHOW 160        /* bytes of a key quoted in the error message */

typedef struct sd_item {
    char *name;
    nnm_tensor *t;
    int64_t file_idx;      /* entry in the file, -1 if missing */
    int status;            /* 0 ok, 1 missing, 2 mismatched, 3 missing: set to 0 */
} sd_item;

/* A batch or instance norm's num_batches_tracked (an i64 scalar buffer of
 * that name) that the state dict lacks: PyTorch's _NormBase loads a dict
 * without version metadata (a plain dict, safetensors, checkpoints older
 * than PyTorch 0.4.1) by setting it to 0, and does not report it missing. */
static int nbt_defaults(const sd_item *it) {
    const char *dot = strrchr(it->name, '.');
    const char *last = dot ? dot + 1 : it->name;
    const nnm_tensor *t = it->t;
    return strcmp(last, "num_batches_tracked") == 0 && t->desc.dtype.code == NNM_DTYPE_INT &&
           t->desc.dtype.bits == 64 && nnm_tensor_numel(t) == 1;
}

typedef struct sd_list {
    sd_item *v;
    size_t n, cap;
} sd_list;

static void sd_list_free(sd_list *l) {
    for (size_t i = 0; i < l->n; i++) free(l->v[i].name);
    free(l->v);
}

static nnm_status sd_push(nnm_ctx *ctx, sd_list *l, const char *name, nnm_tensor *t) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        sd_item *v = realloc(l->v, cap * sizeof *v);
        if (!v) return nnm__error(ctx, NNM_E_NOMEM, "out of memory (state dict)");
        l->v = v;
        l->cap = cap;
    }
    char *copy = strdup(name);
    if (!copy) return nnm__error(ctx, NNM_E_NOMEM, "out of memory (state dict)");
    l->v[l->n].name = copy;
    l->v[l->n].t = t;
    l->v[l->n].file_idx = -1;
    l->v[l->n].status = 0;
    l->n++;
    return NNM_OK;
}

/* buf holds the prefix (len bytes); appends ".name" or "name". */
static int sd_name(char *buf, size_t len, const char *name, size_t *newlen) {
    size_t nl = strlen(name), need = len + (len ? 1 : 0) + nl;
    if (need + 1 > SD_NAME_CAP) return -1;
    if (len) buf[len++] = '.';
    memcpy(buf + len, name, nl + 1);
    *newlen = need;
    return 0;
}

static nnm_status collect(nnm_module *m, char *buf, size_t len, sd_list *l) {
    for (int b = 0; b < 2; b++) {
        const nnm__named_tensor *v = b ? m->buffers : m->params;
        uint32_t n = b ? m->n_buffers : m->n_params;
        for (uint32_t i = 0; i < n; i++) {
            if (b && !v[i].persistent) continue;
            size_t nl;
            if (sd_name(buf, len, v[i].name, &nl))
                return nnm__error(m->ctx, NNM_E_LIMIT, "state dict name longer than %d bytes",
                                  SD_NAME_CAP);
            nnm_status st = sd_push(m->ctx, l, buf, v[i].t);
            buf[len] = 0;
            if (st) return st;
        }
    }
    for (uint32_t i = 0; i < m->n_children; i++) {
        size_t nl;
        if (sd_name(buf, len, m->child_names[i], &nl))
            return nnm__error(m->ctx, NNM_E_LIMIT, "state dict name longer than %d bytes",
                              SD_NAME_CAP);
        nnm_status st = collect(m->children[i], buf, nl, l);
        buf[len] = 0;
        if (st) return st;
    }
    return NNM_OK;
}

static nnm_status collect_state(nnm_module *m, sd_list *l) {
    char buf[SD_NAME_CAP];
    buf[0] = 0;
    return collect(m, buf, 0, l);
}

NNM_API nnm_status nnm_module_save(nnm_module *m, const char *path, uint32_t n_meta,
                                   const nnm_kv *meta) {
    if (!nnm__module_live(m)) return NNM_E_INVALID;
    nnm_ctx *ctx = m->ctx;
    if (!path) return nnm__error(ctx, NNM_E_INVALID, "nnm_module_save: path is NULL");
    sd_list l = {0};
    nnm_status st = collect_state(m, &l);
    const char **names = NULL;
    nnm_tensor **tensors = NULL;
    if (st) goto done;
    if (l.n > UINT32_MAX) {
        st = nnm__error(ctx, NNM_E_LIMIT, "too many tensors in the state dict");
        goto done;
    }
    names = malloc((l.n ? l.n : 1) * sizeof *names);
    tensors = malloc((l.n ? l.n : 1) * sizeof *tensors);
    if (!names || !tensors) {
        st = nnm__error(ctx, NNM_E_NOMEM, "out of memory (state dict)");
        goto done;
    }
    for (size_t i = 0; i < l.n; i++) {
        names[i] = l.v[i].name;
        tensors[i] = l.v[i].t;
    }
    /* A model built from a manifest names it, unless the caller already does. */
    int add_hash = m->manifest_sha256 != NULL;
    for (uint32_t i = 0; add_hash && meta && i < n_meta; i++)
        if (meta[i].key && strcmp(meta[i].key, "nnmod_manifest_sha256") == 0) add_hash = 0;
    if (add_hash) {
        nnm_kv *all = malloc((n_meta + 1) * sizeof *all);
        if (!all) {
            st = nnm__error(ctx, NNM_E_NOMEM, "out of memory (state dict)");
            goto done;
        }
        if (n_meta) memcpy(all, meta, n_meta * sizeof *all);
        all[n_meta] = (nnm_kv){"nnmod_manifest_sha256", m->manifest_sha256};
        st = nnm_safetensors_write(ctx, path, (uint32_t)l.n, names, tensors, n_meta + 1, all);
        free(all);
    } else {
        st = nnm_safetensors_write(ctx, path, (uint32_t)l.n, names, tensors, n_meta, meta);
    }
done:
    free(names);
    free(tensors);
    sd_list_free(&l);
    return st;
}

/* ---- loading ------------------------------------------------------------ */

static int is_f32(nnm_dtype d) { return d.code == NNM_DTYPE_FLOAT && d.bits == 32 && d.lanes == 1; }

static int dtype_eq(nnm_dtype a, nnm_dtype b) {
    return a.code == b.code && a.bits == b.bits && a.lanes == b.lanes;
}

/* Can file data of dtype `src` load into a tensor of dtype `dst`? */
static int is_i64_dt(nnm_dtype d) { return d.code == NNM_DTYPE_INT && d.bits == 64 && d.lanes == 1; }

static int convertible(nnm_dtype src, nnm_dtype dst) {
    if (dtype_eq(src, dst)) return 1;
    /* an i64 buffer (num_batches_tracked) from a file that kept it as f32 or
     * f64 (nnmod before ABI 1.5): the count, truncated toward zero */
    if (is_i64_dt(dst)) return src.code == NNM_DTYPE_FLOAT && (src.bits == 32 || src.bits == 64);
    if (!is_f32(dst)) return 0;
    return (src.code == NNM_DTYPE_FLOAT && (src.bits == 16 || src.bits == 64)) ||
           (src.code == NNM_DTYPE_BFLOAT && src.bits == 16) ||
           /* PyTorch's integer buffers nnmod keeps in f32 (batch norm's
            * num_batches_tracked); exact up to 2^24 */
           (src.code == NNM_DTYPE_INT && src.bits == 64);
}

static float half_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13); /* inf / NaN */
    } else if (exp) {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    } else if (man) { /* subnormal: normalise */
        exp = 113;
        while (!(man & 0x400)) {
            man <<= 1;
            exp--;
        }
        bits = sign | (exp << 23) | ((man & 0x3ff) << 13);
    } else {
        bits = sign;
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* Converts n elements of file data (possibly unaligned) into f32 at dst. */
static void convert_to_f32(float *dst, const unsigned char *src, size_t n, nnm_dtype dt) {
    if (dt.code == NNM_DTYPE_FLOAT && dt.bits == 32) {
        memcpy(dst, src, n * 4);
    } else if (dt.code == NNM_DTYPE_FLOAT && dt.bits == 16) {
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            dst[i] = half_to_f32(h);
        }
    } else if (dt.code == NNM_DTYPE_BFLOAT) {
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            uint32_t bits = (uint32_t)h << 16;
            memcpy(&dst[i], &bits, 4);
        }
    } else if (dt.code == NNM_DTYPE_INT) { /* I64 */
        for (size_t i = 0; i < n; i++) {
            int64_t q;
            memcpy(&q, src + 8 * i, 8);
            dst[i] = (float)q;
        }
    } else { /* F64 */
        for (size_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, src + 8 * i, 8);
            dst[i] = (float)d;
        }
    }
}

/* A bounded message builder. */
typedef struct msgbuf {
    char buf[NNM__ERRMSG_CAP - 64];
    size_t len;
    size_t dropped;
} msgbuf;

static void msg_add(msgbuf *mb, const char *fmt, ...) NNM__PRINTF(2, 3);
static void msg_add(msgbuf *mb, const char *fmt, ...) {
    char tmp[SD_NAME_CAP + 128];
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (w < 0) return;
    size_t n = strlen(tmp);
    if (mb->len + n + 32 >= sizeof mb->buf) { /* keep room for "(and N more)" */
        mb->dropped++;
        return;
    }
    memcpy(mb->buf + mb->len, tmp, n + 1);
    mb->len += n;
}

static void describe_mismatch(const nnm_st_entry *e, const nnm_tensor *t, const char *key,
                              char *buf, size_t cap) {
    char fs[160], ms[160];
    nnm_tensor_desc fd;
    memset(&fd, 0, sizeof fd);
    fd.ndim = e->ndim;
    fd.shape = (int64_t *)e->shape;
    nnm__shape_str(&fd, fs, sizeof fs);
    nnm__shape_str(&t->desc, ms, sizeof ms);
    if (!convertible(e->dtype, t->desc.dtype))
        snprintf(buf, cap, "%s: file %s %s vs module %s %s (dtype not convertible)", key, fs,
                 e->dtype_name, ms, nnm__st_dtype_name(t->desc.dtype));
    else
        snprintf(buf, cap, "%s: file %s vs module %s", key, fs, ms);
}

/* Where a load reads from: a safetensors file, or an in-memory state dict
 * (nnm_module_load_state_dict), each seen as entries with a name, a dtype,
 * a shape and contiguous host data. */
typedef struct sd_source {
    const nnm_safetensors *file;  /* either this */
    const nnm_state_dict *mem;    /* or this, with its entries' views: */
    const nnm_st_entry *views;
} sd_source;

static uint32_t src_count(const sd_source *s);
static void src_entry(const sd_source *s, uint32_t i, nnm_st_entry *e);
static int64_t src_lookup(const sd_source *s, const char *name);

/* Packs the three lists into one allocation (freed with one free()). */
static nnm_load_report *make_report(const sd_list *l, const sd_source *st,
                                    const unsigned char *used, char **mism, size_t n_mism) {
    size_t n_missing = 0, n_unexp = 0, strings = 0;
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i].status == 1) n_missing++, strings += strlen(l->v[i].name) + 1;
    uint32_t nf = src_count(st);
    for (uint32_t i = 0; i < nf; i++)
        if (!used[i]) {
            nnm_st_entry e;
            e.struct_size = sizeof e;
            src_entry(st, i, &e);
            n_unexp++;
            strings += strlen(e.name) + 1;
        }
    for (size_t i = 0; i < n_mism; i++) strings += strlen(mism[i]) + 1;
    size_t ptrs = n_missing + n_unexp + n_mism;
    nnm_load_report *r = malloc(sizeof *r + ptrs * sizeof(char *) + strings);
    if (!r) return NULL;
    const char **p = (const char **)(r + 1);
    char *s = (char *)(p + ptrs);
    r->struct_size = sizeof *r;
    r->n_missing = (uint32_t)n_missing;
    r->missing = p;
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i].status == 1) {
            size_t n = strlen(l->v[i].name) + 1;
            memcpy(s, l->v[i].name, n);
            *p++ = s;
            s += n;
        }
    r->n_unexpected = (uint32_t)n_unexp;
    r->unexpected = p;
    for (uint32_t i = 0; i < nf; i++)
        if (!used[i]) {
            nnm_st_entry e;
            e.struct_size = sizeof e;
            src_entry(st, i, &e);
            size_t n = strlen(e.name) + 1;
            memcpy(s, e.name, n);
            *p++ = s;
            s += n;
        }
    r->n_mismatched = (uint32_t)n_mism;
    r->mismatched = p;
    for (size_t i = 0; i < n_mism; i++) {
        size_t n = strlen(mism[i]) + 1;
        memcpy(s, mism[i], n);
        *p++ = s;
        s += n;
    }
    return r;
}

NNM_API void nnm_load_report_free(nnm_load_report *report) { free(report); }

/* Copies one file entry into t (shape and dtype already checked). */
static nnm_status copy_entry(nnm_ctx *ctx, nnm_tensor *t, const nnm_st_entry *e) {
    size_t n = (size_t)nnm_tensor_numel(t);
    size_t bytes = n * nnm__dtype_size(t->desc.dtype);
    if (bytes == 0) return NNM_OK;
    if (is_i64_dt(t->desc.dtype) && !dtype_eq(e->dtype, t->desc.dtype)) { /* f32 / f64 counts */
        int64_t *q = malloc(bytes);
        if (!q) return nnm__error(ctx, NNM_E_NOMEM, "out of memory (load)");
        for (size_t i = 0; i < n; i++) {
            double v;
            if (e->dtype.bits == 32) {
                float f;
                memcpy(&f, (const unsigned char *)e->data + 4 * i, 4);
                v = f;
            } else {
                memcpy(&v, (const unsigned char *)e->data + 8 * i, 8);
            }
            q[i] = v != v ? 0 : v >= 9.2e18 ? INT64_MAX : v <= -9.2e18 ? INT64_MIN : (int64_t)v;
        }
        nnm_status st = nnm__tensor_write_i64(t, q, n);
        free(q);
        return st;
    }
    char *dst = (char *)t->desc.data + t->desc.byte_offset;
    int same = dtype_eq(e->dtype, t->desc.dtype);
    if (t->desc.device.type == NNM_DEVICE_CPU) {
        if (same)
            memcpy(dst, e->data, bytes);
        else
            convert_to_f32((float *)(void *)dst, e->data, n, e->dtype);
        return NNM_OK;
    }
    nnm__backend *be;
    nnm_status st = nnm__backend_get(ctx, t->desc.device, &be);
    if (st) return st;
    const void *src = e->data;
    float *tmp = NULL;
    if (!same) {
        if (!(tmp = malloc(bytes))) return nnm__error(ctx, NNM_E_NOMEM, "out of memory (load)");
        convert_to_f32(tmp, e->data, n, e->dtype);
        src = tmp;
    }
    nnm__env env;
    nnm__env_init(&env, ctx, NULL, NNM__PHASE_BACKEND);
    st = be->vt->memcpy(&env.pub, be->state, dst, t->desc.device, src,
                        (nnm_device){NNM_DEVICE_CPU, 0}, bytes);
    free(tmp);
    return st;
}

/* The load itself, from either source; `path` names it in messages. */
static nnm_status load_from(nnm_module *m, const sd_source *st, const char *path, int strict,
                            nnm_load_report **report) {
    nnm_ctx *ctx = m->ctx;
    sd_list l = {0};
    unsigned char *used = NULL;
    char **mism = NULL;
    size_t n_mism = 0;
    nnm_status rc = NNM_OK;
    if ((rc = collect_state(m, &l))) goto done;
    uint32_t nf = src_count(st);
    used = calloc(nf ? nf : 1, 1);
    mism = calloc(l.n ? l.n : 1, sizeof *mism);
    if (!used || !mism) {
        rc = nnm__error(ctx, NNM_E_NOMEM, "out of memory (load)");
        goto done;
    }

    /* 1. Match and check everything. */
    size_t n_missing = 0;
    for (size_t i = 0; i < l.n; i++) {
        sd_item *it = &l.v[i];
        it->file_idx = src_lookup(st, it->name);
        if (it->file_idx < 0) {
            it->status = nbt_defaults(it) ? 3 : 1;
            n_missing += it->status == 1;
            continue;
        }
        used[it->file_idx] = 1;
        nnm_st_entry e;
        e.struct_size = sizeof e;
        src_entry(st, (uint32_t)it->file_idx, &e);
        const nnm_tensor *t = it->t;
        int ok = e.ndim == t->desc.ndim && convertible(e.dtype, t->desc.dtype);
        for (int32_t d = 0; ok && d < e.ndim; d++) ok = e.shape[d] == t->desc.shape[d];
        if (!ok) {
            char buf[SD_NAME_CAP + 400];
            describe_mismatch(&e, t, it->name, buf, sizeof buf);
            if (!(mism[n_mism] = strdup(buf))) {
                rc = nnm__error(ctx, NNM_E_NOMEM, "out of memory (load)");
                goto done;
            }
            n_mism++;
            it->status = 2;
            continue;
        }
        if (!nnm__tensor_is_contiguous(t)) {
            rc = nnm__error(ctx, NNM_E_UNSUPPORTED,
                            "%.256s: cannot load '%.256s': the module's tensor is not contiguous",
                            path, it->name);
            goto done;
        }
        if (t->desc.device.type != NNM_DEVICE_CPU) {
            nnm__backend *be;
            if ((rc = nnm__backend_get(ctx, t->desc.device, &be))) goto done;
        }
    }
    size_t n_unexp = 0;
    for (uint32_t i = 0; i < nf; i++) n_unexp += !used[i];

    /* A shape or dtype that does not fit is refused even when not strict, as
     * PyTorch raises "size mismatch" whatever `strict` says: nothing loads. */
    if (n_mism || (strict && (n_missing || n_unexp))) {
        msgbuf mb;
        mb.len = 0;
        mb.dropped = 0;
        mb.buf[0] = 0;
        char kb[SD_SHOW];
        if (n_missing && strict) {
            msg_add(&mb, "%zu missing key(s):", n_missing);
            const char *sep = " ";
            for (size_t i = 0; i < l.n; i++)
                if (l.v[i].status == 1) {
                    msg_add(&mb, "%s'%.*s'", sep, SD_SHOW, l.v[i].name);
                    sep = ", ";
                }
            msg_add(&mb, ";");
        }
        if (n_unexp && strict) {
            msg_add(&mb, " %zu unexpected key(s):", n_unexp);
            const char *sep = " ";
            for (uint32_t i = 0; i < nf; i++)
                if (!used[i]) {
                    nnm_st_entry e;
                    e.struct_size = sizeof e;
                    src_entry(st, i, &e);
                    /* file names may hold anything: quote them bounded */
                    snprintf(kb, sizeof kb, "%s", e.name);
                    for (char *c = kb; *c; c++)
                        if ((unsigned char)*c < 0x20 || *c == 0x7f) *c = '?';
                    msg_add(&mb, "%s'%s'", sep, kb);
                    sep = ", ";
                }
            msg_add(&mb, ";");
        }
        if (n_mism) {
            msg_add(&mb, " %zu size mismatch(es):", n_mism);
            for (size_t i = 0; i < n_mism; i++)
                msg_add(&mb, "%s%.*s", i ? "; " : " ", SD_SHOW + 120, mism[i]);
        }
        while (mb.len && (mb.buf[mb.len - 1] == ';' || mb.buf[mb.len - 1] == ' '))
            mb.buf[--mb.len] = 0;
        const char *body = mb.buf + (mb.buf[0] == ' ');
        char pb[200];
        snprintf(pb, sizeof pb, "%s", path);
        rc = nnm__error(ctx, n_mism ? NNM_E_SHAPE : NNM_E_NOT_FOUND,
                        "%s: error(s) loading the state dict (%s): %s%s; nothing was loaded", pb,
                        strict ? "strict" : "not strict", body,
                        mb.dropped ? " (and more: see the load report)" : "");
        /* The message holds what fits; the report holds every key. */
        if (report) *report = make_report(&l, st, used, mism, n_mism);
        goto done;
    }

    /* 2. The report, before anything changes (so running out of memory here
     *    leaves the module as it was). */
    if (report && !(*report = make_report(&l, st, used, mism, n_mism))) {
        rc = nnm__error(ctx, NNM_E_NOMEM, "out of memory (load report)");
        goto done;
    }

    /* 3. Copy (nothing above changed the module). */
    for (size_t i = 0; i < l.n; i++) {
        sd_item *it = &l.v[i];
        if (it->status == 3) {
            const int64_t zero = 0;
            if ((rc = nnm__tensor_write_i64(it->t, &zero, 1))) goto done;
            continue;
        }
        if (it->status) continue;
        nnm_st_entry e;
        e.struct_size = sizeof e;
        src_entry(st, (uint32_t)it->file_idx, &e);
        if ((rc = copy_entry(ctx, it->t, &e))) {
            char msg[NNM__ERRMSG_CAP];
            memcpy(msg, ctx->errmsg, sizeof msg);
            rc = nnm__error(ctx, rc, "%.256s: copying '%.256s' to the module's device failed "
                            "(the module is partly loaded): %.400s", path, it->name, msg);
            if (report) {
                nnm_load_report_free(*report);
                *report = NULL;
            }
            goto done;
        }
    }
done:
    if (mism)
        for (size_t i = 0; i < n_mism; i++) free(mism[i]);
    free(mism);
    free(used);
    sd_list_free(&l);
    return rc;
}

NNM_API nnm_status nnm_module_load(nnm_module *m, const char *path, int strict,
                                   nnm_load_report **report) {
    if (report) *report = NULL;
    if (!nnm__module_live(m)) return NNM_E_INVALID;
    nnm_ctx *ctx = m->ctx;
    if (!path) return nnm__error(ctx, NNM_E_INVALID, "nnm_module_load: path is NULL");
    nnm_safetensors *st = NULL;
    nnm_status rc = nnm_safetensors_open(ctx, path, &st);
    if (rc) return rc;
    sd_source src = {st, NULL, NULL};
    rc = load_from(m, &src, path, strict, report);
    nnm_safetensors_close(st);
    return rc;
}

/* ---- checkpoint support (runtime/state/checkpoint.c) ------------------------- */

nnm_status nnm__state_dict_visit(nnm_module *m, nnm_tensor_visit_fn fn, void *user) {
    sd_list l = {0};
    nnm_status st = collect_state(m, &l);
    for (size_t i = 0; !st && i < l.n; i++) st = fn(user, l.v[i].name, l.v[i].t);
    sd_list_free(&l);
    return st;
}

int nnm__state_entry_fits(const nnm_st_entry *e, const nnm_tensor *t, const char *key, char *why,
                          size_t cap) {
    int ok = e->ndim == t->desc.ndim && convertible(e->dtype, t->desc.dtype);
    for (int32_t d = 0; ok && d < e->ndim; d++) ok = e->shape[d] == t->desc.shape[d];
    if (!ok && why && cap) describe_mismatch(e, t, key, why, cap);
    return ok;
}

nnm_status nnm__state_copy_entry(nnm_ctx *ctx, nnm_tensor *t, const nnm_st_entry *e) {
    return copy_entry(ctx, t, e);
}

/* ---- in-memory state dicts (name -> tensor) -------------------------------- */

typedef struct sd_entry {
    char *name;
    uint32_t hash;
    nnm_tensor *t;                /* a reference */
} sd_entry;

struct nnm_state_dict {
    nnm_ctx *ctx;                 /* referenced */
    sd_entry *v;
    uint32_t n, cap;
    nnm__name_index index;        /* past NNM__NAME_INDEX_MIN entries */
};

static uint32_t sd_hash_at(const void *items, uint32_t i) { return ((const sd_entry *)items)[i].hash; }

static int64_t sd_find(const nnm_state_dict *sd, const char *name) {
    const uint32_t h = nnm__name_hash(name, strlen(name));
    if (sd->index.slots) {
        NNM__NAME_INDEX_FOREACH(&sd->index, h, k) {
            const sd_entry *e = &sd->v[sd->index.slots[k] - 1];
            if (e->hash == h && strcmp(e->name, name) == 0) return (int64_t)(sd->index.slots[k] - 1);
        }
        return -1;
    }
    for (uint32_t i = 0; i < sd->n; i++)
        if (sd->v[i].hash == h && strcmp(sd->v[i].name, name) == 0) return i;
    return -1;
}

static uint32_t src_count(const sd_source *s) {
    return s->file ? nnm_safetensors_count(s->file) : s->mem->n;
}

static void src_entry(const sd_source *s, uint32_t i, nnm_st_entry *e) {
    if (s->file)
        nnm_safetensors_entry(s->file, i, e);
    else
        *e = s->views[i];
}

static int64_t src_lookup(const sd_source *s, const char *name) {
    return s->file ? nnm__safetensors_lookup(s->file, name) : sd_find(s->mem, name);
}

NNM_API nnm_status nnm_state_dict_new(nnm_ctx *ctx, nnm_state_dict **out) {
    if (out) *out = NULL;
    if (!ctx) return NNM_E_INVALID;
    if (!out) return nnm__error(ctx, NNM_E_INVALID, "nnm_state_dict_new: out is NULL");
    nnm_state_dict *sd = calloc(1, sizeof *sd);
    if (!sd) return nnm__error(ctx, NNM_E_NOMEM, "out of memory (state dict)");
    sd->ctx = ctx;
    nnm__ctx_retain(ctx);
    *out = sd;
    return NNM_OK;
}

NNM_API void nnm_state_dict_free(nnm_state_dict *sd) {
    if (!sd) return;
    for (uint32_t i = 0; i < sd->n; i++) {
        free(sd->v[i].name);
        nnm_tensor_release(sd->v[i].t);
    }
    free(sd->v);
    nnm__name_index_free(&sd->index);
    nnm_ctx *ctx = sd->ctx;
    free(sd);
    nnm__ctx_release(ctx);
}

NNM_API nnm_status nnm_state_dict_set(nnm_state_dict *sd, const char *name, nnm_tensor *t) {
    if (!sd) return NNM_E_INVALID;
    nnm_ctx *ctx = sd->ctx;
    if (!name || !t) return nnm__error(ctx, NNM_E_INVALID, "nnm_state_dict_set: NULL argument");
    size_t len = strlen(name);
    if (!len || len > NNM_NAME_MAX)
        return nnm__error(ctx, NNM_E_INVALID, "nnm_state_dict_set: a key is 1 to %d bytes, got %zu",
                          NNM_NAME_MAX, len);
    if (t->ctx != ctx)
        return nnm__error(ctx, NNM_E_INVALID, "nnm_state_dict_set: the tensor is of another context");
    int64_t at = sd_find(sd, name);
    if (at >= 0) { /* sd[name] = t replaces */
        nnm_tensor_retain(t);
        nnm_tensor_release(sd->v[at].t);
        sd->v[at].t = t;
        return NNM_OK;
    }
    if (sd->n == UINT32_MAX - 1) return nnm__error(ctx, NNM_E_LIMIT, "state dict: too many entries");
    if (sd->n == sd->cap) {
        uint32_t cap = sd->cap ? sd->cap * 2 : 16;
        sd_entry *v = realloc(sd->v, cap * sizeof *v);
        if (!v) return nnm__error(ctx, NNM_E_NOMEM, "out of memory (state dict)");
        sd->v = v;
        sd->cap = cap;
    }
    char *copy = strdup(name);
    if (!copy) return nnm__error(ctx, NNM_E_NOMEM, "out of memory (state dict)");
    nnm_tensor_retain(t);
    sd->v[sd->n] = (sd_entry){copy, nnm__name_hash(name, len), t};
    sd->n++;
    nnm__name_index_added(&sd->index, sd->n, sd->v, sd_hash_at);
    return NNM_OK;
}

NNM_API uint32_t nnm_state_dict_count(const nnm_state_dict *sd) { return sd ? sd->n : 0; }

NNM_API nnm_status nnm_state_dict_entry(const nnm_state_dict *sd, uint32_t index, const char **name,
                                        nnm_tensor **t) {
    if (name) *name = NULL;
    if (t) *t = NULL;
    if (!sd) return NNM_E_INVALID;
    if (index >= sd->n) return nnm__error(sd->ctx, NNM_E_NOT_FOUND, "state dict: no entry %u", index);
    if (name) *name = sd->v[index].name;
    if (t) *t = sd->v[index].t;
    return NNM_OK;
}

NNM_API nnm_tensor *nnm_state_dict_get(const nnm_state_dict *sd, const char *name) {
    if (!sd || !name) return NULL;
    int64_t at = sd_find(sd, name);
    return at < 0 ? NULL : sd->v[at].t;
}

NNM_API nnm_status nnm_module_state_dict(nnm_module *m, nnm_state_dict **out) {
    if (out) *out = NULL;
    if (!nnm__module_live(m)) return NNM_E_INVALID;
    if (!out) return nnm__error(m->ctx, NNM_E_INVALID, "nnm_module_state_dict: out is NULL");
    sd_list l = {0};
    nnm_state_dict *sd = NULL;
    nnm_status st = collect_state(m, &l);
    if (!st) st = nnm_state_dict_new(m->ctx, &sd);
    for (size_t i = 0; !st && i < l.n; i++) {
        /* detached (PyTorch's state_dict holds tensors without autograd
         * that share the module's storage) */
        const nnm_tensor *t = l.v[i].t;
        nnm_tensor *v = NULL;
        st = nnm__tensor_view(l.v[i].t, t->desc.ndim, t->shape, t->strides, &v);
        if (!st) {
            v->desc.byte_offset = t->desc.byte_offset;
            st = nnm_state_dict_set(sd, l.v[i].name, v);
            nnm_tensor_release(v);
        }
    }
    sd_list_free(&l);
    if (st) {
        nnm_state_dict_free(sd);
        return st;
    }
    *out = sd;
    return NNM_OK;
}

/* The host view of entry e's tensor for a load: its own data when it is
 * contiguous on the CPU, else a contiguous host copy in *tmp (free it). */
static nnm_status view_of(nnm_ctx *ctx, const sd_entry *e, nnm_st_entry *v, void **tmp) {
    const nnm_tensor *t = e->t;
    *tmp = NULL;
    memset(v, 0, sizeof *v);
    v->struct_size = sizeof *v;
    v->dtype = t->desc.dtype;
    v->name = e->name;
    v->dtype_name = nnm__st_dtype_name(t->desc.dtype);
    v->ndim = t->desc.ndim;
    v->shape = t->shape;
    const size_t n = (size_t)nnm_tensor_numel(t), bytes = n * nnm__dtype_size(t->desc.dtype);
    v->nbytes = bytes;
    char nb[160];
    if (t->desc.device.type == NNM_DEVICE_META)
        return nnm__error(ctx, NNM_E_DEVICE, "state dict: '%s' is on the meta device (no data to load)",
                          nnm__show(e->name, nb, sizeof nb));
    const int contiguous = nnm__tensor_is_contiguous(t);
    if (contiguous && t->desc.device.type == NNM_DEVICE_CPU) {
        v->data = (const char *)t->desc.data + t->desc.byte_offset;
        return NNM_OK;
    }
    if (!(*tmp = malloc(bytes ? bytes : 1))) return nnm__error(ctx, NNM_E_NOMEM, "out of memory (load)");
    v->data = *tmp;
    if (!contiguous) {
        if (!is_f32(t->desc.dtype))
            return nnm__error(ctx, NNM_E_UNSUPPORTED, "state dict: '%s' is not contiguous (only f32 "
                              "entries may be strided)", nnm__show(e->name, nb, sizeof nb));
        return nnm_tensor_to_f32((nnm_tensor *)t, *tmp, n);
    }
    nnm__backend *be;
    nnm_status st = nnm__backend_get(ctx, t->desc.device, &be);
    if (st) return st;
    nnm__env env;
    nnm__env_init(&env, ctx, NULL, NNM__PHASE_BACKEND);
    return be->vt->memcpy(&env.pub, be->state, *tmp, (nnm_device){NNM_DEVICE_CPU, 0},
                          (const char *)t->desc.data + t->desc.byte_offset, t->desc.device, bytes);
}

NNM_API nnm_status nnm_module_load_state_dict(nnm_module *m, const nnm_state_dict *sd, int strict,
                                              nnm_load_report **report) {
    if (report) *report = NULL;
    if (!nnm__module_live(m)) return NNM_E_INVALID;
    nnm_ctx *ctx = m->ctx;
    if (!sd) return nnm__error(ctx, NNM_E_INVALID, "nnm_module_load_state_dict: state dict is NULL");
    if (sd->ctx != ctx)
        return nnm__error(ctx, NNM_E_INVALID, "nnm_module_load_state_dict: state dict of another context");
    nnm_st_entry *views = calloc(sd->n ? sd->n : 1, sizeof *views);
    void **tmps = calloc(sd->n ? sd->n : 1, sizeof *tmps);
    nnm_status st = views && tmps ? NNM_OK : nnm__error(ctx, NNM_E_NOMEM, "out of memory (load)");
    for (uint32_t i = 0; !st && i < sd->n; i++) st = view_of(ctx, &sd->v[i], &views[i], &tmps[i]);
    if (!st) {
        sd_source src = {NULL, sd, views};
        st = load_from(m, &src, "state dict", strict, report);
    }
    for (uint32_t i = 0; tmps && i < sd->n; i++) free(tmps[i]);
    free(tmps);
    free(views);
    return st;
}
