/* runtime/manifest/read_msgpack.c - msgpack bytes -> document tree, safely.
 *
 * msgpack-c 4 trusts counts: a map header that claims 2^32 entries makes it
 * allocate count x 24 bytes before it looks for a single one (a 5-byte
 * document can ask for 96 GB), and a document nested deeper than its fixed
 * stack of 32 comes back as "out of memory". So a pre-scan walks the bytes
 * first: every array/map count is checked against the bytes remaining (each
 * element takes at least one), and depth, value count and lengths against
 * the limits. Only a document that passes reaches msgpack_unpack_next, whose
 * allocations are then bounded by a small multiple of the document's size.
 * The converted tree refuses what a manifest cannot hold: non-string keys,
 * binary and extension values, integers beyond int64, invalid UTF-8,
 * duplicate keys, non-finite floats.
 */
#include <math.h>
#include <msgpack.h>
#include <string.h>

#include "manifest_internal.h"

typedef struct scan {
    const unsigned char *p;
    size_t len, pos;
    uint64_t nodes, max_nodes;
    uint32_t max_depth;
    nnm_ctx *ctx;
} scan;

static uint64_t be(const unsigned char *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = v << 8 | p[i];
    return v;
}

static nnm_status truncated(scan *s, const char *what) {
    return nnm__error(s->ctx, NNM_E_INVALID, "msgpack: byte %zu: truncated %s (document is %zu bytes)",
                      s->pos, what, s->len);
}

/* Reads an n-byte big-endian length after the type byte. */
static nnm_status take_len(scan *s, int n, uint64_t *out) {
    if (s->len - s->pos < (size_t)n) return truncated(s, "length");
    *out = be(s->p + s->pos, n);
    s->pos += (size_t)n;
    return NNM_OK;
}

static nnm_status skip_bytes(scan *s, uint64_t n, const char *what) {
    if (n > s->len - s->pos) return truncated(s, what);
    s->pos += (size_t)n;
    return NNM_OK;
}

static nnm_status scan_value(scan *s, uint32_t depth);

/* n elements of a container (pairs counted as 2). */
static nnm_status scan_items(scan *s, uint64_t n, uint32_t depth, const char *what) {
    size_t at = s->pos;
    if (depth + 1 > s->max_depth)
        return nnm__error(s->ctx, NNM_E_LIMIT,
                          "msgpack: byte %zu: nesting deeper than %u%s", at, s->max_depth,
                          s->max_depth == NNM__MF_MSGPACK_MAX_DEPTH
                              ? " (the most msgpack-c's unpacker can hold)"
                              : " (limits.max_depth)");
    if (n > s->len - s->pos)
        return nnm__error(s->ctx, NNM_E_INVALID,
                          "msgpack: byte %zu: %s claims %llu entries but only %zu bytes remain", at,
                          what, (unsigned long long)n, s->len - s->pos);
    if (n > s->max_nodes - s->nodes)
        return nnm__error(s->ctx, NNM_E_LIMIT,
                          "msgpack: byte %zu: more than %llu values (limits.max_nodes)", at,
                          (unsigned long long)s->max_nodes);
    for (uint64_t i = 0; i < n; i++) {
        nnm_status st = scan_value(s, depth + 1);
        if (st) return st;
    }
    return NNM_OK;
}

static nnm_status scan_value(scan *s, uint32_t depth) {
    if (s->pos >= s->len) return truncated(s, "value");
    if (++s->nodes > s->max_nodes)
        return nnm__error(s->ctx, NNM_E_LIMIT, "msgpack: byte %zu: more than %llu values (limits.max_nodes)",
                          s->pos, (unsigned long long)s->max_nodes);
    unsigned c = s->p[s->pos++];
    uint64_t n = 0;
    nnm_status st;
    if (c <= 0x7f || c >= 0xe0) return NNM_OK;                 /* fixint */
    if (c >= 0x80 && c <= 0x8f) return scan_items(s, 2u * (c & 0x0f), depth, "map");
    if (c >= 0x90 && c <= 0x9f) return scan_items(s, c & 0x0f, depth, "array");
    if (c >= 0xa0 && c <= 0xbf) return skip_bytes(s, c & 0x1f, "string");
    switch (c) {
    case 0xc0: case 0xc2: case 0xc3: return NNM_OK;            /* nil, false, true */
    case 0xc1:
        return nnm__error(s->ctx, NNM_E_INVALID, "msgpack: byte %zu: 0xc1 is never used", s->pos - 1);
    case 0xc4: case 0xd9: if ((st = take_len(s, 1, &n))) return st; return skip_bytes(s, n, "string");
    case 0xc5: case 0xda: if ((st = take_len(s, 2, &n))) return st; return skip_bytes(s, n, "string");
    case 0xc6: case 0xdb: if ((st = take_len(s, 4, &n))) return st; return skip_bytes(s, n, "string");
    case 0xc7: if ((st = take_len(s, 1, &n))) return st; return skip_bytes(s, n + 1, "extension");
    case 0xc8: if ((st = take_len(s, 2, &n))) return st; return skip_bytes(s, n + 1, "extension");
    case 0xc9: if ((st = take_len(s, 4, &n))) return st; return skip_bytes(s, n + 1, "extension");
    case 0xca: return skip_bytes(s, 4, "float");
    case 0xcb: return skip_bytes(s, 8, "float");
    case 0xcc: case 0xd0: return skip_bytes(s, 1, "integer");
    case 0xcd: case 0xd1: return skip_bytes(s, 2, "integer");
    case 0xce: case 0xd2: return skip_bytes(s, 4, "integer");
    case 0xcf: case 0xd3: return skip_bytes(s, 8, "integer");
    case 0xd4: return skip_bytes(s, 2, "extension");
    case 0xd5: return skip_bytes(s, 3, "extension");
    case 0xd6: return skip_bytes(s, 5, "extension");
    case 0xd7: return skip_bytes(s, 9, "extension");
    case 0xd8: return skip_bytes(s, 17, "extension");
    case 0xdc: if ((st = take_len(s, 2, &n))) return st; return scan_items(s, n, depth, "array");
    case 0xdd: if ((st = take_len(s, 4, &n))) return st; return scan_items(s, n, depth, "array");
    case 0xde: if ((st = take_len(s, 2, &n))) return st; return scan_items(s, 2 * n, depth, "map");
    case 0xdf: if ((st = take_len(s, 4, &n))) return st; return scan_items(s, 2 * n, depth, "map");
    }
    return nnm__error(s->ctx, NNM_E_INVALID, "msgpack: byte %zu: unknown type byte 0x%02x", s->pos - 1, c);
}

/* ---- msgpack_object -> jansson ------------------------------------------ */

/* path: where the value sits, for messages ("" is the document itself). */
static nnm_status convert(nnm_ctx *ctx, const msgpack_object *o, char *path, size_t plen,
                          json_t **out);

static const char *shown(const char *path) { return *path ? path : "document"; }

static nnm_status convert_map(nnm_ctx *ctx, const msgpack_object_map *m, char *path, size_t plen,
                              json_t **out) {
    json_t *obj = json_object();
    if (!obj) return nnm__error(ctx, NNM_E_NOMEM, "out of memory (manifest)");
    size_t base = strlen(path);
    for (uint32_t i = 0; i < m->size; i++) {
        const msgpack_object *k = &m->ptr[i].key;
        if (k->type != MSGPACK_OBJECT_STR) {
            json_decref(obj);
            return nnm__error(ctx, NNM_E_INVALID, "%s: map key #%u is not a string", shown(path), i);
        }
        const char *ks = k->via.str.ptr;
        uint32_t kn = k->via.str.size;
        char key[NNM__MF_MAX_KEY + 1];
        if (kn > NNM__MF_MAX_KEY || (kn && memchr(ks, 0, kn))) {
            json_decref(obj);
            return nnm__error(ctx, NNM_E_INVALID, "%s: map key #%u is longer than %u bytes or holds NUL",
                              shown(path), i, NNM__MF_MAX_KEY);
        }
        if (kn) memcpy(key, ks, kn); /* an empty str may come with a NULL ptr */
        key[kn] = 0;
        if (!nnm__utf8_valid(key, kn)) {
            json_decref(obj);
            return nnm__error(ctx, NNM_E_INVALID, "%s: map key #%u is not valid UTF-8", shown(path), i);
        }
        if (json_object_get(obj, key)) {
            json_decref(obj);
            return nnm__error(ctx, NNM_E_INVALID, "%s%s%s: duplicate key", path, *path ? "." : "", key);
        }
        nnm__path_key(path, plen, base, key);
        json_t *v = NULL;
        nnm_status st = convert(ctx, &m->ptr[i].val, path, plen, &v);
        path[base] = 0;
        if (st || json_object_set_new(obj, key, v)) {
            json_decref(obj);
            return st ? st : nnm__error(ctx, NNM_E_NOMEM, "out of memory (manifest)");
        }
    }
    *out = obj;
    return NNM_OK;
}

static nnm_status convert(nnm_ctx *ctx, const msgpack_object *o, char *path, size_t plen,
                          json_t **out) {
    json_t *v = NULL;
    switch (o->type) {
    case MSGPACK_OBJECT_NIL: v = json_null(); break;
    case MSGPACK_OBJECT_BOOLEAN: v = json_boolean(o->via.boolean); break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        if (o->via.u64 > (uint64_t)INT64_MAX)
            return nnm__error(ctx, NNM_E_INVALID, "%s: integer %llu is beyond int64", shown(path),
                              (unsigned long long)o->via.u64);
        v = json_integer((json_int_t)o->via.u64);
        break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: v = json_integer((json_int_t)o->via.i64); break;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        if (!isfinite(o->via.f64))
            return nnm__error(ctx, NNM_E_INVALID, "%s: non-finite float", shown(path));
        v = json_real(o->via.f64);
        break;
    case MSGPACK_OBJECT_STR:
        if (o->via.str.size == 0) { /* msgpack-c may give a NULL ptr then */
            v = json_string("");
            break;
        }
        if (memchr(o->via.str.ptr, 0, o->via.str.size))
            return nnm__error(ctx, NNM_E_INVALID, "%s: string holds a NUL byte", shown(path));
        if (!nnm__utf8_valid(o->via.str.ptr, o->via.str.size))
            return nnm__error(ctx, NNM_E_INVALID, "%s: string is not valid UTF-8", shown(path));
        v = json_stringn(o->via.str.ptr, o->via.str.size);
        break;
    case MSGPACK_OBJECT_ARRAY: {
        v = json_array();
        if (!v) break;
        size_t base = strlen(path);
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            nnm__path_index(path, plen, base, i);
            json_t *e = NULL;
            nnm_status st = convert(ctx, &o->via.array.ptr[i], path, plen, &e);
            path[base] = 0;
            if (st || json_array_append_new(v, e)) {
                json_decref(v);
                return st ? st : nnm__error(ctx, NNM_E_NOMEM, "out of memory (manifest)");
            }
        }
        break;
    }
    case MSGPACK_OBJECT_MAP: return convert_map(ctx, &o->via.map, path, plen, out);
    case MSGPACK_OBJECT_BIN:
        return nnm__error(ctx, NNM_E_INVALID, "%s: binary data has no place in a manifest", shown(path));
    case MSGPACK_OBJECT_EXT:
        return nnm__error(ctx, NNM_E_INVALID, "%s: extension type %d has no place in a manifest",
                          shown(path), (int)o->via.ext.type);
    }
    if (!v) return nnm__error(ctx, NNM_E_NOMEM, "out of memory (manifest)");
    *out = v;
    return NNM_OK;
}

nnm_status nnm__mf_read_msgpack(nnm_ctx *ctx, const unsigned char *data, size_t len,
                                const nnm_manifest_limits *lim, json_t **out) {
    *out = NULL;
    if (len == 0) return nnm__error(ctx, NNM_E_INVALID, "msgpack: empty document");
    scan s = {data, len, 0, 0, lim->max_nodes, lim->max_depth, ctx}; /* <= 32: nnm__mf_limits */
    nnm_status st = scan_value(&s, 0);
    if (st) return st;
    if (s.pos != len)
        return nnm__error(ctx, NNM_E_INVALID, "msgpack: %zu trailing bytes after the document",
                          len - s.pos);

    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    msgpack_unpack_return r = msgpack_unpack_next(&u, (const char *)data, len, &off);
    if (r != MSGPACK_UNPACK_SUCCESS) {
        msgpack_unpacked_destroy(&u);
        return nnm__error(ctx, r == MSGPACK_UNPACK_NOMEM_ERROR ? NNM_E_NOMEM : NNM_E_INVALID,
                          "msgpack: msgpack-c refused a document the pre-scan passed (code %d)",
                          (int)r);
    }
    char path[1024] = "";
    st = convert(ctx, &u.data, path, sizeof path, out);
    msgpack_unpacked_destroy(&u);
    return st;
}
