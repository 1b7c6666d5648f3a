/* runtime/state/safetensors.c - reading and writing safetensors files.
 *
 * Format (https://github.com/huggingface/safetensors): an 8-byte little-endian
 * header length N, N bytes of UTF-8 JSON, then the data section. The JSON is an
 * object: "__metadata__" (optional) maps strings to strings; every other key is
 * a tensor {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]} with
 * offsets relative to the data section.
 *
 * The reader follows the reference implementation's rules and treats the file
 * as hostile: N <= NNM_SAFETENSORS_MAX_HEADER and 8 + N <= file size; the
 * header starts with '{', is valid UTF-8 and valid JSON with no duplicate keys;
 * byte counts equal shape x dtype size computed with overflow checks; the
 * entries, sorted by offset, cover the data section exactly (from 0, no gaps,
 * no overlaps, no trailing bytes). Unknown fields inside a tensor object are
 * ignored, as the reference does (but one tensor's description may take at
 * most 64 KiB). Everything is checked before a handle is
 * returned. The file is mapped read-only (MAP_PRIVATE) and tensor data is never
 * copied; the only allocations are the parser's (bounded by N, itself bounded
 * by the cap and the file size) and tables sized by the validated header.
 * As with any mapping, a file truncated by another process while mapped
 * raises SIGBUS on access; the reader cannot prevent that.
 *
 * The writer lays tensors out like the reference writer (largest element size
 * first, then by name, so every tensor is aligned to its element size), pads
 * the header with spaces to a multiple of 8, and replaces the destination
 * atomically: "<path>.tmp.<pid>" in the same directory, fsync, rename, fsync
 * of the directory. On failure the temp file is removed and the old file is
 * untouched; a crash can leave a stale "*.tmp.*" file beside it, never a torn
 * destination.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian; add byte swapping for this target"
#endif

#define SHOW_NAME 160 /* bytes of a (hostile) name quoted in a message */
#define SHOW_PATH NNM__SHOW_PATH /* bytes of a path quoted in a message */
#define WRITE_CHUNK ((size_t)1 << 20)

/* ---- dtypes ------------------------------------------------------------- */

typedef struct st_dtype {
    const char *name;
    nnm_dtype dt;
} st_dtype;

static const st_dtype st_dtypes[] = {
    {"F64", {NNM_DTYPE_FLOAT, 64, 1}},  {"F32", {NNM_DTYPE_FLOAT, 32, 1}},
    {"F16", {NNM_DTYPE_FLOAT, 16, 1}},  {"BF16", {NNM_DTYPE_BFLOAT, 16, 1}},
    {"I64", {NNM_DTYPE_INT, 64, 1}},    {"I32", {NNM_DTYPE_INT, 32, 1}},
    {"I16", {NNM_DTYPE_INT, 16, 1}},    {"I8", {NNM_DTYPE_INT, 8, 1}},
    {"U64", {NNM_DTYPE_UINT, 64, 1}},   {"U32", {NNM_DTYPE_UINT, 32, 1}},
    {"U16", {NNM_DTYPE_UINT, 16, 1}},   {"U8", {NNM_DTYPE_UINT, 8, 1}},
    {"BOOL", {NNM_DTYPE_BOOL, 8, 1}},
};
#define N_DTYPES (sizeof st_dtypes / sizeof st_dtypes[0])

static int dtype_by_name(const char *s) {
    for (size_t i = 0; i < N_DTYPES; i++)
        if (strcmp(st_dtypes[i].name, s) == 0) return (int)i;
    return -1;
}

static int dtype_by_value(nnm_dtype dt) {
    for (size_t i = 0; i < N_DTYPES; i++)
        if (st_dtypes[i].dt.code == dt.code && st_dtypes[i].dt.bits == dt.bits &&
            dt.lanes == 1)
            return (int)i;
    return -1;
}

const char *nnm__st_dtype_name(nnm_dtype dt) {
    int i = dtype_by_value(dt);
    return i < 0 ? "?" : st_dtypes[i].name;
}

/* ---- messages ----------------------------------------------------------- */

static nnm_status st_fail(nnm_ctx *ctx, nnm_status code, const char *path, const char *fmt, ...)
    NNM__PRINTF(4, 5);
static nnm_status st_fail(nnm_ctx *ctx, nnm_status code, const char *path, const char *fmt, ...) {
    char msg[NNM__ERRMSG_CAP], pbuf[SHOW_PATH];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return nnm__error(ctx, code, "%s: %s", nnm__show_path(path, pbuf, sizeof pbuf), msg);
}

static const char *errno_str(int e, char *buf, size_t cap) {
    if (strerror_r(e, buf, cap) != 0) snprintf(buf, cap, "errno %d", e);
    return buf;
}

/* Writes "[2, 3]". */
static void shape_str(int32_t ndim, const int64_t *shape, char *buf, size_t cap) {
    nnm_tensor_desc d;
    memset(&d, 0, sizeof d);
    d.ndim = ndim;
    d.shape = (int64_t *)shape;
    nnm__shape_str(&d, buf, cap);
}

/* ---- the reader --------------------------------------------------------- */

typedef struct st_tensor {
    const char *name;   /* in the arena, set once parsing is done */
    size_t name_off;
    int32_t dtype;      /* index into st_dtypes */
    int32_t ndim;
    int64_t shape[NNM_MAX_DIMS];
    uint64_t begin, end;
} st_tensor;

struct nnm_safetensors {
    nnm_ctx *ctx;          /* referenced */
    void *map;
    size_t map_len;
    const unsigned char *data; /* the data section */
    uint64_t data_len;
    st_tensor *t;          /* n, in offset order */
    uint32_t n, cap;
    const st_tensor **by_name; /* the entries sorted by name */
    size_t *meta;          /* 2 * n_meta arena offsets: key, value, key, value... */
    uint32_t n_meta, cap_meta;
    char *arena;           /* every string, NUL-terminated */
    size_t arena_len, arena_cap;
};

static int cmp_offset(const void *a, const void *b) {
    const st_tensor *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int cmp_name_ptr(const void *a, const void *b) {
    return strcmp((*(const st_tensor *const *)a)->name, (*(const st_tensor *const *)b)->name);
}

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

NNM_API void nnm_safetensors_close(nnm_safetensors *st) {
    if (!st) return;
    if (st->map) munmap(st->map, st->map_len);
    free(st->t);
    free(st->by_name);
    free(st->meta);
    free(st->arena);
    nnm_ctx *ctx = st->ctx;
    free(st);
    if (ctx) nnm__ctx_release(ctx);
}

/* Grows *v (elements of `size` bytes) to hold one more than *cap. */
static int grow(void **v, uint32_t *cap, size_t size) {
    if (*cap >= UINT32_MAX / 2) return -1;
    uint32_t c = *cap ? *cap * 2 : 16;
    void *p = realloc(*v, (size_t)c * size);
    if (!p) return -1;
    *v = p;
    *cap = c;
    return 0;
}

/* Copies s (len bytes) into the arena; its offset in *off. The arena never
 * outgrows the header: every string comes from a longer JSON literal. */
static int arena_add(nnm_safetensors *st, const char *s, size_t len, size_t *off) {
    if (st->arena_cap - st->arena_len < len + 1) {
        size_t c = st->arena_cap ? st->arena_cap : 256;
        while (c - st->arena_len < len + 1) c *= 2;
        char *p = realloc(st->arena, c);
        if (!p) return -1;
        st->arena = p;
        st->arena_cap = c;
    }
    memcpy(st->arena + st->arena_len, s, len);
    st->arena[st->arena_len + len] = 0;
    *off = st->arena_len;
    st->arena_len += len + 1;
    return 0;
}

/* Reads one non-negative JSON integer. */
static int json_uint(const json_t *v, uint64_t *out) {
    if (!json_is_integer(v)) return -1;
    json_int_t i = json_integer_value(v);
    if (i < 0) return -1;
    *out = (uint64_t)i;
    return 0;
}

/* Validates one tensor object and fills *t (name set by the caller). */
static nnm_status parse_tensor(nnm_ctx *ctx, const char *path, const char *key, const json_t *v,
                               st_tensor *t) {
    char nb[SHOW_NAME];
    if (!json_is_object(v))
        return st_fail(ctx, NNM_E_INVALID, path, "tensor '%s': entry is not a JSON object",
                       nnm__show(key, nb, sizeof nb));
    const json_t *dt = json_object_get(v, "dtype");
    const json_t *shape = json_object_get(v, "shape");
    const json_t *offs = json_object_get(v, "data_offsets");
    const char *missing = !dt ? "dtype" : !shape ? "shape" : !offs ? "data_offsets" : NULL;
    if (missing)
        return st_fail(ctx, NNM_E_INVALID, path, "tensor '%s': field '%s' is missing",
                       nnm__show(key, nb, sizeof nb), missing);
    if (!json_is_string(dt))
        return st_fail(ctx, NNM_E_INVALID, path, "tensor '%s': field 'dtype' is not a string",
                       nnm__show(key, nb, sizeof nb));
    int di = dtype_by_name(json_string_value(dt));
    if (di < 0) {
        char db[32];
        return st_fail(ctx, NNM_E_DTYPE, path,
                       "tensor '%s': unknown dtype '%s' (supported: F64 F32 F16 BF16 I64 I32 "
                       "I16 I8 U64 U32 U16 U8 BOOL)",
                       nnm__show(key, nb, sizeof nb), nnm__show(json_string_value(dt), db, sizeof db));
    }
    t->dtype = di;
    if (!json_is_array(shape))
        return st_fail(ctx, NNM_E_INVALID, path, "tensor '%s': field 'shape' is not an array",
                       nnm__show(key, nb, sizeof nb));
    size_t nd = json_array_size(shape);
    if (nd > NNM_MAX_DIMS)
        return st_fail(ctx, NNM_E_LIMIT, path, "tensor '%s': shape has %zu dims, at most %d allowed",
                       nnm__show(key, nb, sizeof nb), nd, NNM_MAX_DIMS);
    t->ndim = (int32_t)nd;
    uint64_t bytes = (uint64_t)st_dtypes[di].dt.bits / 8;
    int wrapped = 0;
    for (size_t i = 0; i < nd; i++) {
        uint64_t d;
        if (json_uint(json_array_get(shape, i), &d))
            return st_fail(ctx, NNM_E_INVALID, path,
                           "tensor '%s': shape entry %zu is not a non-negative integer",
                           nnm__show(key, nb, sizeof nb), i);
        t->shape[i] = (int64_t)d;
        if (!wrapped && __builtin_mul_overflow(bytes, d, &bytes)) wrapped = 1;
    }
    if (!json_is_array(offs) || json_array_size(offs) != 2)
        return st_fail(ctx, NNM_E_INVALID, path,
                       "tensor '%s': field 'data_offsets' is not an array [begin, end]",
                       nnm__show(key, nb, sizeof nb));
    if (json_uint(json_array_get(offs, 0), &t->begin) || json_uint(json_array_get(offs, 1), &t->end))
        return st_fail(ctx, NNM_E_INVALID, path,
                       "tensor '%s': data_offsets entries are not non-negative integers",
                       nnm__show(key, nb, sizeof nb));
    if (t->begin > t->end)
        return st_fail(ctx, NNM_E_INVALID, path,
                       "tensor '%s': data_offsets [%llu, %llu] end before they begin",
                       nnm__show(key, nb, sizeof nb), (unsigned long long)t->begin,
                       (unsigned long long)t->end);
    char sb[256];
    if (wrapped) {
        shape_str(t->ndim, t->shape, sb, sizeof sb);
        return st_fail(ctx, NNM_E_LIMIT, path,
                       "tensor '%s': shape %s of %s overflows 64 bits when counting its bytes",
                       nnm__show(key, nb, sizeof nb), sb, st_dtypes[di].name);
    }
    if (bytes != t->end - t->begin) {
        shape_str(t->ndim, t->shape, sb, sizeof sb);
        return st_fail(ctx, NNM_E_SHAPE, path,
                       "tensor '%s': data_offsets [%llu, %llu] hold %llu bytes but shape %s of "
                       "%s needs %llu",
                       nnm__show(key, nb, sizeof nb), (unsigned long long)t->begin,
                       (unsigned long long)t->end, (unsigned long long)(t->end - t->begin), sb,
                       st_dtypes[di].name, (unsigned long long)bytes);
    }
    return NNM_OK;
}

/* ---- the header, one top-level member at a time -------------------------
 *
 * The header is not parsed as one JSON document: a document of 100 MB of
 * "{}" or "[0,0,...]" would cost jansson gigabytes. A small scanner finds the
 * extent of each top-level member (and of each __metadata__ member) and jansson
 * parses just that value, which is checked, copied into compact tables and
 * freed, so memory stays proportional to what the header describes and the
 * first bad entry stops the parse. Syntax inside a value is jansson's to judge
 * (with JSON_REJECT_DUPLICATES); duplicate top-level and metadata keys are
 * found by sorting. */

#define JS_MAX_DEPTH 64
/* A tensor's description is a few hundred bytes; a bigger one is refused
 * before jansson sees it (it could only be padding or unknown fields). */
#define JS_MAX_ENTRY 65536

typedef struct jscan {
    const unsigned char *base; /* the header, for offsets in messages */
    const unsigned char *p, *end;
} jscan;

typedef struct hparse {
    nnm_ctx *ctx;
    const char *path;
    nnm_safetensors *st;
    const unsigned char *base;
    int seen_meta;
} hparse;

static void js_ws(jscan *s) {
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

/* Past the closing quote of the string starting at p (at '"'), or NULL. */
static const unsigned char *js_skip_string(const unsigned char *p, const unsigned char *e) {
    for (p++; p < e; p++) {
        if (*p == '\\') {
            if (e - p < 2) return NULL;
            p++;
        } else if (*p == '"') {
            return p + 1;
        }
    }
    return NULL;
}

static nnm_status js_error(const hparse *h, const unsigned char *at, const char *what) {
    return st_fail(h->ctx, NNM_E_INVALID, h->path,
                   "header is not valid JSON: %s (header offset %zu)", what,
                   (size_t)(at - h->base));
}

/* The extent of the JSON value at s->p (after spaces); advances past it. */
static nnm_status js_span(const hparse *h, jscan *s, const unsigned char **start, size_t *len) {
    js_ws(s);
    const unsigned char *b = s->p, *p = b, *e = s->end;
    if (p >= e) return js_error(h, p, "unexpected end of the header");
    if (*p == '"') {
        if (!(p = js_skip_string(p, e))) return js_error(h, b, "unterminated string");
    } else if (*p == '{' || *p == '[') {
        int depth = 0;
        while (p < e) {
            if (*p == '"') {
                if (!(p = js_skip_string(p, e))) return js_error(h, b, "unterminated string");
                continue;
            }
            if (*p == '{' || *p == '[') {
                if (++depth > JS_MAX_DEPTH) return js_error(h, p, "nested too deeply");
            } else if (*p == '}' || *p == ']') {
                if (--depth == 0) {
                    p++;
                    break;
                }
            }
            p++;
        }
        if (depth != 0) return js_error(h, b, "unterminated object or array");
    } else {
        while (p < e && *p != ',' && *p != ':' && *p != '}' && *p != ']' && *p != ' ' &&
               *p != '\t' && *p != '\n' && *p != '\r')
            p++;
        if (p == b) return js_error(h, b, "expected a value");
    }
    *start = b;
    *len = (size_t)(p - b);
    s->p = p;
    return NNM_OK;
}

/* jansson parses exactly one value's text. */
static nnm_status js_load(const hparse *h, const unsigned char *v, size_t len, json_t **out) {
    json_error_t jerr;
    *out = json_loadb((const char *)v, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
    if (*out) return NNM_OK;
    return st_fail(h->ctx, NNM_E_INVALID, h->path,
                   "header is not valid JSON: %.200s (header offset %zu)", jerr.text,
                   (size_t)(v - h->base) + (jerr.position > 0 ? (size_t)jerr.position : 0));
}

typedef nnm_status (*js_member_fn)(hparse *h, const char *key, const unsigned char *v,
                                   size_t len);

/* Calls fn for each member of the object at s->p, in order. */
static nnm_status js_object(hparse *h, jscan *s, js_member_fn fn) {
    js_ws(s);
    if (s->p >= s->end || *s->p != '{') return js_error(h, s->p, "expected an object");
    s->p++;
    js_ws(s);
    if (s->p < s->end && *s->p == '}') {
        s->p++;
        return NNM_OK;
    }
    for (;;) {
        js_ws(s);
        if (s->p >= s->end || *s->p != '"') return js_error(h, s->p, "expected a string key");
        const unsigned char *v;
        size_t len;
        json_t *key;
        nnm_status rc;
        if ((rc = js_span(h, s, &v, &len)) || (rc = js_load(h, v, len, &key))) return rc;
        js_ws(s);
        if (s->p >= s->end || *s->p != ':') {
            json_decref(key);
            return js_error(h, s->p, "expected ':' after a key");
        }
        s->p++;
        if (!(rc = js_span(h, s, &v, &len))) rc = fn(h, json_string_value(key), v, len);
        json_decref(key);
        if (rc) return rc;
        js_ws(s);
        if (s->p < s->end && *s->p == ',') {
            s->p++;
            continue;
        }
        if (s->p < s->end && *s->p == '}') {
            s->p++;
            return NNM_OK;
        }
        return js_error(h, s->p, "expected ',' or '}'");
    }
}

static nnm_status meta_member(hparse *h, const char *key, const unsigned char *v, size_t len) {
    nnm_safetensors *st = h->st;
    char nb[SHOW_NAME];
    if (*v != '"')
        return st_fail(h->ctx, NNM_E_TYPE, h->path,
                       "__metadata__ key '%s': value is not a string (only string to string is "
                       "allowed)",
                       nnm__show(key, nb, sizeof nb));
    json_t *j;
    nnm_status rc = js_load(h, v, len, &j);
    if (rc) return rc;
    if (st->n_meta == st->cap_meta &&
        grow((void **)&st->meta, &st->cap_meta, 2 * sizeof *st->meta))
        rc = st_fail(h->ctx, NNM_E_NOMEM, h->path, "out of memory reading the header");
    else if (arena_add(st, key, strlen(key), &st->meta[2 * st->n_meta]) ||
             arena_add(st, json_string_value(j), json_string_length(j),
                       &st->meta[2 * st->n_meta + 1]))
        rc = st_fail(h->ctx, NNM_E_NOMEM, h->path, "out of memory reading the header");
    else
        st->n_meta++;
    json_decref(j);
    return rc;
}

static nnm_status root_member(hparse *h, const char *key, const unsigned char *v, size_t len) {
    nnm_safetensors *st = h->st;
    if (strcmp(key, "__metadata__") == 0) {
        if (h->seen_meta)
            return st_fail(h->ctx, NNM_E_INVALID, h->path, "duplicate key '__metadata__'");
        h->seen_meta = 1;
        if (*v != '{')
            return st_fail(h->ctx, NNM_E_INVALID, h->path, "__metadata__ is not a JSON object");
        jscan sub = {h->base, v, v + len};
        return js_object(h, &sub, meta_member);
    }
    if (len > JS_MAX_ENTRY) {
        char nb[SHOW_NAME];
        return st_fail(h->ctx, NNM_E_LIMIT, h->path,
                       "tensor '%s': entry of %zu bytes is larger than the %d a tensor "
                       "description may take",
                       nnm__show(key, nb, sizeof nb), len, JS_MAX_ENTRY);
    }
    json_t *j;
    nnm_status rc = js_load(h, v, len, &j);
    if (rc) return rc;
    st_tensor t;
    memset(&t, 0, sizeof t);
    rc = parse_tensor(h->ctx, h->path, key, j, &t);
    json_decref(j);
    if (rc) return rc;
    if ((st->n == st->cap && grow((void **)&st->t, &st->cap, sizeof *st->t)) ||
        arena_add(st, key, strlen(key), &t.name_off))
        return st_fail(h->ctx, NNM_E_NOMEM, h->path, "out of memory reading the header");
    st->t[st->n++] = t;
    return NNM_OK;
}

/* Parses and checks the header; fills st's tables. */
static nnm_status parse_header(nnm_ctx *ctx, const char *path, nnm_safetensors *st,
                               const unsigned char *hdr, size_t hlen) {
    if (hlen == 0) return st_fail(ctx, NNM_E_INVALID, path, "header is empty (length 0)");
    if (hdr[0] != '{')
        return st_fail(ctx, NNM_E_INVALID, path,
                       "header does not start with '{' (byte 0x%02x): not a safetensors file?",
                       hdr[0]);
    size_t bad = nnm__utf8_invalid_at(hdr, hlen);
    if (bad != hlen)
        return st_fail(ctx, NNM_E_INVALID, path,
                       "header is not valid UTF-8 (byte 0x%02x at header offset %zu)", hdr[bad],
                       bad);
    hparse h = {ctx, path, st, hdr, 0};
    jscan s = {hdr, hdr, hdr + hlen};
    nnm_status rc = js_object(&h, &s, root_member);
    if (rc) return rc;
    js_ws(&s);
    if (s.p != s.end) return js_error(&h, s.p, "unexpected data after the top-level object");

    for (uint32_t i = 0; i < st->n; i++) st->t[i].name = st->arena + st->t[i].name_off;
    st->by_name = malloc((st->n ? st->n : 1) * sizeof *st->by_name);
    if (!st->by_name) return st_fail(ctx, NNM_E_NOMEM, path, "out of memory reading the header");
    char nb[SHOW_NAME], pb[SHOW_NAME];

    /* Duplicate keys: tensors, then metadata. */
    for (uint32_t i = 0; i < st->n; i++) st->by_name[i] = &st->t[i];
    qsort(st->by_name, st->n, sizeof *st->by_name, cmp_name_ptr);
    for (uint32_t i = 1; i < st->n; i++)
        if (strcmp(st->by_name[i - 1]->name, st->by_name[i]->name) == 0)
            return st_fail(ctx, NNM_E_INVALID, path, "duplicate key '%s'",
                           nnm__show(st->by_name[i]->name, nb, sizeof nb));
    if (st->n_meta > 1) {
        const char **keys = malloc(st->n_meta * sizeof *keys);
        if (!keys) return st_fail(ctx, NNM_E_NOMEM, path, "out of memory reading the header");
        for (uint32_t i = 0; i < st->n_meta; i++) keys[i] = st->arena + st->meta[2 * i];
        qsort(keys, st->n_meta, sizeof *keys, cmp_str_ptr);
        for (uint32_t i = 1; i < st->n_meta; i++)
            if (strcmp(keys[i - 1], keys[i]) == 0) {
                rc = st_fail(ctx, NNM_E_INVALID, path, "duplicate __metadata__ key '%s'",
                             nnm__show(keys[i], nb, sizeof nb));
                break;
            }
        free(keys);
        if (rc) return rc;
    }

    /* The entries, by offset, must tile the data section exactly. */
    if (st->n > 1) qsort(st->t, st->n, sizeof *st->t, cmp_offset);
    uint64_t at = 0;
    for (uint32_t i = 0; i < st->n; i++) {
        const st_tensor *t = &st->t[i];
        if (t->end > st->data_len)
            return st_fail(ctx, NNM_E_INVALID, path,
                           "tensor '%s': data_offsets [%llu, %llu] run past the end of the data "
                           "section (%llu bytes)",
                           nnm__show(t->name, nb, sizeof nb), (unsigned long long)t->begin,
                           (unsigned long long)t->end, (unsigned long long)st->data_len);
        if (t->begin < at) {
            const st_tensor *p = &st->t[i - 1];
            return st_fail(ctx, NNM_E_INVALID, path,
                           "tensor '%s': data_offsets [%llu, %llu] overlap tensor '%s' [%llu, "
                           "%llu]",
                           nnm__show(t->name, nb, sizeof nb), (unsigned long long)t->begin,
                           (unsigned long long)t->end, nnm__show(p->name, pb, sizeof pb),
                           (unsigned long long)p->begin, (unsigned long long)p->end);
        }
        if (t->begin > at)
            return st_fail(ctx, NNM_E_INVALID, path,
                           "tensor '%s': gap of %llu bytes before data_offsets [%llu, %llu] (the "
                           "data before it ends at %llu)",
                           nnm__show(t->name, nb, sizeof nb), (unsigned long long)(t->begin - at),
                           (unsigned long long)t->begin, (unsigned long long)t->end,
                           (unsigned long long)at);
        at = t->end;
    }
    if (at != st->data_len)
        return st_fail(ctx, NNM_E_INVALID, path,
                       "%llu trailing bytes after the last tensor (tensors end at %llu, the data "
                       "section has %llu bytes)",
                       (unsigned long long)(st->data_len - at), (unsigned long long)at,
                       (unsigned long long)st->data_len);
    /* qsort moved the entries: sort the name index again. */
    for (uint32_t i = 0; i < st->n; i++) st->by_name[i] = &st->t[i];
    qsort(st->by_name, st->n, sizeof *st->by_name, cmp_name_ptr);
    return NNM_OK;
}

NNM_API nnm_status nnm_safetensors_open(nnm_ctx *ctx, const char *path, nnm_safetensors **out) {
    if (out) *out = NULL;
    if (!ctx) return NNM_E_INVALID;
    if (!path || !out) return nnm__error(ctx, NNM_E_INVALID, "nnm_safetensors_open: NULL argument");
    char eb[128];
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return st_fail(ctx, NNM_E_IO, path, "cannot open: %s", errno_str(errno, eb, sizeof eb));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return st_fail(ctx, NNM_E_IO, path, "cannot stat: %s", errno_str(e, eb, sizeof eb));
    }
    if (S_ISDIR(sb.st_mode)) {
        close(fd);
        return st_fail(ctx, NNM_E_IO, path, "is a directory, not a safetensors file");
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return st_fail(ctx, NNM_E_IO, path, "is not a regular file");
    }
    uint64_t size = (uint64_t)sb.st_size;
    if (size < 8) {
        close(fd);
        if (size == 0) return st_fail(ctx, NNM_E_INVALID, path, "file is empty");
        return st_fail(ctx, NNM_E_INVALID, path,
                       "file is %llu bytes, too short for the 8-byte header length",
                       (unsigned long long)size);
    }
    if (size > SIZE_MAX) {
        close(fd);
        return st_fail(ctx, NNM_E_LIMIT, path, "file is too large to map");
    }
    void *map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (map == MAP_FAILED)
        return st_fail(ctx, NNM_E_IO, path, "cannot map %llu bytes: %s", (unsigned long long)size,
                       errno_str(e, eb, sizeof eb));
    const unsigned char *p = map;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | p[i];
    nnm_status rc;
    if (hlen > NNM_SAFETENSORS_MAX_HEADER) {
        rc = st_fail(ctx, NNM_E_LIMIT, path,
                     "header length %llu exceeds the limit of %u bytes",
                     (unsigned long long)hlen, NNM_SAFETENSORS_MAX_HEADER);
        munmap(map, (size_t)size);
        return rc;
    }
    if (hlen > size - 8) {
        rc = st_fail(ctx, NNM_E_INVALID, path,
                     "header length %llu runs past the end of the file (%llu bytes): truncated?",
                     (unsigned long long)hlen, (unsigned long long)size);
        munmap(map, (size_t)size);
        return rc;
    }
    nnm_safetensors *st = calloc(1, sizeof *st);
    if (!st) {
        munmap(map, (size_t)size);
        return st_fail(ctx, NNM_E_NOMEM, path, "out of memory");
    }
    st->map = map;
    st->map_len = (size_t)size;
    st->data = p + 8 + hlen;
    st->data_len = size - 8 - hlen;
    if ((rc = parse_header(ctx, path, st, p + 8, (size_t)hlen))) {
        nnm_safetensors_close(st);
        return rc;
    }
    st->ctx = ctx;
    nnm__ctx_retain(ctx);
    *out = st;
    return NNM_OK;
}

NNM_API uint32_t nnm_safetensors_count(const nnm_safetensors *st) { return st ? st->n : 0; }

static nnm_status fill_entry(const nnm_safetensors *st, const st_tensor *t, nnm_st_entry *out) {
    if (out->struct_size < sizeof *out)
        return nnm__error(st->ctx, NNM_E_VERSION,
                          "nnm_st_entry.struct_size is %u, want at least %zu", out->struct_size,
                          sizeof *out);
    out->dtype = st_dtypes[t->dtype].dt;
    out->name = t->name;
    out->dtype_name = st_dtypes[t->dtype].name;
    out->ndim = t->ndim;
    out->shape = t->shape;
    out->data = st->data + t->begin;
    out->nbytes = t->end - t->begin;
    return NNM_OK;
}

NNM_API nnm_status nnm_safetensors_entry(const nnm_safetensors *st, uint32_t index,
                                         nnm_st_entry *out) {
    if (!st) return NNM_E_INVALID;
    if (!out) return nnm__error(st->ctx, NNM_E_INVALID, "nnm_safetensors_entry: out is NULL");
    if (index >= st->n)
        return nnm__error(st->ctx, NNM_E_NOT_FOUND, "entry %u of %u does not exist", index, st->n);
    return fill_entry(st, &st->t[index], out);
}

int64_t nnm__safetensors_lookup(const nnm_safetensors *st, const char *name) {
    size_t lo = 0, hi = st->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(st->by_name[mid]->name, name);
        if (c == 0) return st->by_name[mid] - st->t;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

NNM_API nnm_status nnm_safetensors_find(const nnm_safetensors *st, const char *name,
                                        nnm_st_entry *out) {
    if (!st) return NNM_E_INVALID;
    if (!name || !out)
        return nnm__error(st->ctx, NNM_E_INVALID, "nnm_safetensors_find: NULL argument");
    int64_t i = nnm__safetensors_lookup(st, name);
    if (i < 0) {
        char nb[SHOW_NAME];
        return nnm__error(st->ctx, NNM_E_NOT_FOUND, "no tensor named '%s' in the file",
                          nnm__show(name, nb, sizeof nb));
    }
    return fill_entry(st, &st->t[i], out);
}

NNM_API uint32_t nnm_safetensors_metadata_count(const nnm_safetensors *st) {
    return st ? st->n_meta : 0;
}

NNM_API nnm_status nnm_safetensors_metadata(const nnm_safetensors *st, uint32_t index,
                                            const char **key, const char **value) {
    if (key) *key = NULL;
    if (value) *value = NULL;
    if (!st) return NNM_E_INVALID;
    if (index >= st->n_meta)
        return nnm__error(st->ctx, NNM_E_NOT_FOUND, "metadata entry %u of %u does not exist",
                          index, st->n_meta);
    if (key) *key = st->arena + st->meta[2 * index];
    if (value) *value = st->arena + st->meta[2 * index + 1];
    return NNM_OK;
}

/* ---- the writer --------------------------------------------------------- */

typedef struct wr_item {
    const char *name;
    nnm_tensor *t;
    int dtype;
    uint64_t bytes;
} wr_item;

static int cmp_wr(const void *a, const void *b) {
    const wr_item *x = a, *y = b;
    size_t sx = st_dtypes[x->dtype].dt.bits, sy = st_dtypes[y->dtype].dt.bits;
    if (sx != sy) return sx > sy ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int cmp_wr_name(const void *a, const void *b) {
    return strcmp(((const wr_item *)a)->name, ((const wr_item *)b)->name);
}


/* Builds the padded header: 8 length bytes + JSON + spaces. */
static nnm_status build_header(nnm_ctx *ctx, const char *path, wr_item *items, uint32_t n,
                               uint32_t n_meta, const nnm_kv *meta, unsigned char **out,
                               size_t *out_len) {
    *out = NULL;
    char nb[SHOW_NAME];
    nnm_status rc = NNM_OK;
    json_t *root = json_object(), *md = json_object();
    if (!root || !md) {
        json_decref(root);
        json_decref(md);
        return st_fail(ctx, NNM_E_NOMEM, path, "out of memory building the header");
    }
    for (uint32_t i = 0; i < n_meta; i++) {
        if (strcmp(meta[i].key, "nnmod_version") == 0) continue; /* ours is written below */
        json_t *v = json_string(meta[i].value);
        if (!v) {
            rc = st_fail(ctx, NNM_E_INVALID, path, "metadata '%s': value is not valid UTF-8",
                         nnm__show(meta[i].key, nb, sizeof nb));
            goto fail;
        }
        if (json_object_set_new(md, meta[i].key, v)) {
            rc = st_fail(ctx, NNM_E_INVALID, path, "metadata key '%s' is not valid UTF-8",
                         nnm__show(meta[i].key, nb, sizeof nb));
            goto fail;
        }
    }
    if (json_object_set_new(md, "nnmod_version", json_string(nnm_version()))) {
        rc = st_fail(ctx, NNM_E_NOMEM, path, "out of memory building the header");
        goto fail;
    }
    int r = json_object_set_new(root, "__metadata__", md); /* takes md, even on failure */
    md = NULL;
    if (r) {
        rc = st_fail(ctx, NNM_E_NOMEM, path, "out of memory building the header");
        goto fail;
    }
    uint64_t at = 0;
    for (uint32_t i = 0; i < n; i++) {
        const nnm_tensor_desc *d = &items[i].t->desc;
        json_t *e = json_object(), *shape = json_array(), *offs = json_array();
        int bad = !e || !shape || !offs;
        for (int32_t k = 0; !bad && k < d->ndim; k++)
            bad = json_array_append_new(shape, json_integer((json_int_t)d->shape[k]));
        bad = bad || json_array_append_new(offs, json_integer((json_int_t)at)) ||
              json_array_append_new(offs, json_integer((json_int_t)(at + items[i].bytes)));
        bad = bad || json_object_set_new(e, "dtype", json_string(st_dtypes[items[i].dtype].name));
        if (!bad) { /* each set takes its value, even on failure */
            int r1 = json_object_set_new(e, "shape", shape);
            int r2 = json_object_set_new(e, "data_offsets", offs);
            shape = offs = NULL;
            bad = r1 || r2;
        }
        if (bad) {
            json_decref(e);
            json_decref(shape);
            json_decref(offs);
            rc = st_fail(ctx, NNM_E_NOMEM, path, "out of memory building the header");
            goto fail;
        }
        if (json_object_set_new(root, items[i].name, e)) {
            rc = st_fail(ctx, NNM_E_INVALID, path, "tensor name '%s' is not valid UTF-8",
                         nnm__show(items[i].name, nb, sizeof nb));
            goto fail;
        }
        at += items[i].bytes;
    }
    size_t jlen = json_dumpb(root, NULL, 0, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (jlen == 0) {
        rc = st_fail(ctx, NNM_E_NOMEM, path, "cannot serialise the header");
        goto fail;
    }
    size_t hlen = (jlen + 7) & ~(size_t)7;
    if (hlen > NNM_SAFETENSORS_MAX_HEADER) {
        rc = st_fail(ctx, NNM_E_LIMIT, path, "header of %zu bytes exceeds the limit of %u", hlen,
                     NNM_SAFETENSORS_MAX_HEADER);
        goto fail;
    }
    unsigned char *buf = malloc(8 + hlen);
    if (!buf) {
        rc = st_fail(ctx, NNM_E_NOMEM, path, "out of memory building the header");
        goto fail;
    }
    if (json_dumpb(root, (char *)buf + 8, jlen, JSON_COMPACT | JSON_PRESERVE_ORDER) != jlen) {
        free(buf);
        rc = st_fail(ctx, NNM_E_NOMEM, path, "cannot serialise the header");
        goto fail;
    }
    memset(buf + 8 + jlen, ' ', hlen - jlen);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    *out = buf;
    *out_len = 8 + hlen;
fail:
    json_decref(md);
    json_decref(root);
    return rc;
}

/* Writes one tensor's bytes to fd (copying to the host as needed). */
static nnm_status write_tensor(nnm_ctx *ctx, const char *path, int fd, const wr_item *it) {
    nnm_tensor *t = it->t;
    char nb[SHOW_NAME], eb[128];
    if (it->bytes == 0) return NNM_OK;
    int cpu = t->desc.device.type == NNM_DEVICE_CPU;
    /* (a meta tensor has no data: NULL + 0 is undefined) */
    const char *src = t->desc.data ? (const char *)t->desc.data + t->desc.byte_offset : NULL;
    if (cpu && nnm__tensor_is_contiguous(t)) {
        if (nnm__write_all(fd, src, (size_t)it->bytes))
            return st_fail(ctx, NNM_E_IO, path, "writing tensor '%s': %s",
                           nnm__show(it->name, nb, sizeof nb), errno_str(errno, eb, sizeof eb));
        return NNM_OK;
    }
    void *tmp = malloc((size_t)it->bytes);
    if (!tmp)
        return st_fail(ctx, NNM_E_NOMEM, path, "out of memory copying tensor '%s' (%llu bytes)",
                       nnm__show(it->name, nb, sizeof nb), (unsigned long long)it->bytes);
    nnm_status rc;
    if (t->desc.dtype.code == NNM_DTYPE_FLOAT && t->desc.dtype.bits == 32) {
        rc = nnm_tensor_to_f32(t, tmp, (size_t)it->bytes / sizeof(float));
    } else {
        nnm__backend *be;
        rc = nnm__backend_get(ctx, t->desc.device, &be);
        if (!rc) {
            nnm__env env;
            nnm__env_init(&env, ctx, NULL, NNM__PHASE_BACKEND);
            rc = be->vt->memcpy(&env.pub, be->state, tmp, (nnm_device){NNM_DEVICE_CPU, 0}, src,
                                t->desc.device, (size_t)it->bytes);
        }
    }
    if (rc) {
        char msg[NNM__ERRMSG_CAP];
        memcpy(msg, ctx->errmsg, sizeof msg);
        free(tmp);
        return st_fail(ctx, rc, path, "copying tensor '%s' to the host: %s",
                       nnm__show(it->name, nb, sizeof nb), msg);
    }
    rc = NNM_OK;
    if (nnm__write_all(fd, tmp, (size_t)it->bytes))
        rc = st_fail(ctx, NNM_E_IO, path, "writing tensor '%s': %s", nnm__show(it->name, nb, sizeof nb),
                     errno_str(errno, eb, sizeof eb));
    free(tmp);
    return rc;
}


NNM_API nnm_status nnm_safetensors_write(nnm_ctx *ctx, const char *path, uint32_t n,
                                         const char *const *names, nnm_tensor *const *tensors,
                                         uint32_t n_meta, const nnm_kv *meta) {
    if (!ctx) return NNM_E_INVALID;
    if (!path || (n && (!names || !tensors)) || (n_meta && !meta))
        return nnm__error(ctx, NNM_E_INVALID, "nnm_safetensors_write: NULL argument");
    if (!*path) return nnm__error(ctx, NNM_E_INVALID, "nnm_safetensors_write: empty path");
    char nb[SHOW_NAME], eb[128];

    for (uint32_t i = 0; i < n_meta; i++) {
        if (!meta[i].key || !meta[i].value)
            return st_fail(ctx, NNM_E_INVALID, path, "metadata pair %u has a NULL key or value", i);
        for (uint32_t k = 0; k < i; k++)
            if (strcmp(meta[k].key, meta[i].key) == 0)
                return st_fail(ctx, NNM_E_EXISTS, path, "metadata key '%s' is given twice",
                               nnm__show(meta[i].key, nb, sizeof nb));
    }
    wr_item *items = malloc((n ? n : 1) * sizeof *items);
    if (!items) return st_fail(ctx, NNM_E_NOMEM, path, "out of memory");
    nnm_status rc = NNM_OK;
    for (uint32_t i = 0; i < n; i++) {
        nnm_tensor *t = tensors[i];
        if (!names[i] || !t) {
            rc = st_fail(ctx, NNM_E_INVALID, path, "tensor %u has a NULL name or tensor", i);
            goto out;
        }
        if (strcmp(names[i], "__metadata__") == 0) {
            rc = st_fail(ctx, NNM_E_INVALID, path, "'__metadata__' cannot name a tensor");
            goto out;
        }
        int di = dtype_by_value(t->desc.dtype);
        if (di < 0) {
            rc = st_fail(ctx, NNM_E_DTYPE, path,
                         "tensor '%s': dtype (code %d, bits %d, lanes %d) has no safetensors name",
                         nnm__show(names[i], nb, sizeof nb), t->desc.dtype.code, t->desc.dtype.bits,
                         t->desc.dtype.lanes);
            goto out;
        }
        int f32 = t->desc.dtype.code == NNM_DTYPE_FLOAT && t->desc.dtype.bits == 32;
        if (!f32 && !nnm__tensor_is_contiguous(t)) {
            rc = st_fail(ctx, NNM_E_UNSUPPORTED, path,
                         "tensor '%s': writing a non-contiguous %s tensor is not supported",
                         nnm__show(names[i], nb, sizeof nb), st_dtypes[di].name);
            goto out;
        }
        items[i].name = names[i];
        items[i].t = t;
        items[i].dtype = di;
        items[i].bytes = (uint64_t)nnm_tensor_numel(t) * (st_dtypes[di].dt.bits / 8);
    }
    /* Duplicates: sort by name alone first, then into the file's order. */
    qsort(items, n, sizeof *items, cmp_wr_name);
    for (uint32_t i = 1; i < n; i++)
        if (strcmp(items[i - 1].name, items[i].name) == 0) {
            rc = st_fail(ctx, NNM_E_EXISTS, path, "tensor name '%s' is given twice",
                         nnm__show(items[i].name, nb, sizeof nb));
            goto out;
        }
    qsort(items, n, sizeof *items, cmp_wr);

    unsigned char *hdr = NULL;
    size_t hdr_len = 0;
    if ((rc = build_header(ctx, path, items, n, n_meta, meta, &hdr, &hdr_len))) goto out;
    nnm__atomic af;
    if ((rc = nnm__atomic_open(ctx, path, &af))) {
        free(hdr);
        goto out;
    }
    if (nnm__write_all(af.fd, hdr, hdr_len))
        rc = st_fail(ctx, NNM_E_IO, path, "writing the header: %s", errno_str(errno, eb, sizeof eb));
    free(hdr);
    for (uint32_t i = 0; i < n && !rc; i++) rc = write_tensor(ctx, path, af.fd, &items[i]);
    if (rc)
        nnm__atomic_abort(&af);
    else
        rc = nnm__atomic_commit(ctx, &af);
out:
    free(items);
    return rc;
}
