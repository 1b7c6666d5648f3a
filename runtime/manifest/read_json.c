/* runtime/manifest/read_json.c - JSON text -> document tree (jansson).
 *
 * jansson parses with duplicate keys refused and without NUL in strings; its
 * own depth cap is 2048. The size was checked by the caller; depth and value
 * count are bounded on the text before parsing and checked exactly on the
 * tree after, against the same limits as msgpack.
 */
#include <stdio.h>
#include <string.h>

#include "manifest_internal.h"

typedef struct walk {
    nnm_ctx *ctx;
    uint64_t nodes, max_nodes;
    uint32_t max_depth;
} walk;

static const char *shown(const char *path) { return *path ? path : "document"; }

/* At the ceiling, the reason is msgpack's: a JSON document nested deeper
 * would have no msgpack twin. */
static const char *depth_why(uint32_t max_depth) {
    return max_depth == NNM__MF_MSGPACK_MAX_DEPTH ? " (the most a manifest may nest: msgpack-c's limit)"
                                                  : " (limits.max_depth)";
}

/* path: where v sits, for messages ("" is the document itself). */
static nnm_status check(walk *w, const json_t *v, uint32_t depth, char *path, size_t plen) {
    if (++w->nodes > w->max_nodes)
        return nnm__error(w->ctx, NNM_E_LIMIT, "json: more than %llu values (limits.max_nodes)",
                          (unsigned long long)w->max_nodes);
    if (!json_is_object(v) && !json_is_array(v)) return NNM_OK;
    if (depth + 1 > w->max_depth)
        return nnm__error(w->ctx, NNM_E_LIMIT, "json: nesting deeper than %u%s", w->max_depth,
                          depth_why(w->max_depth));
    size_t base = strlen(path);
    nnm_status st = NNM_OK;
    if (json_is_array(v)) {
        size_t i;
        const json_t *e;
        json_array_foreach(v, i, e) {
            nnm__path_index(path, plen, base, i);
            if ((st = check(w, e, depth + 1, path, plen))) break;
        }
        path[base] = 0;
        return st;
    }
    const char *k;
    const json_t *e;
    unsigned i = 0;
    json_object_foreach((json_t *)v, k, e) {
        /* msgpack keys have the same bound (read_msgpack.c), so a document
         * converts to the other encoding and back */
        if (strlen(k) > NNM__MF_MAX_KEY)
            return nnm__error(w->ctx, NNM_E_INVALID, "%s: map key #%u is longer than %u bytes",
                              shown(path), i, NNM__MF_MAX_KEY);
        w->nodes++; /* the key */
        nnm__path_key(path, plen, base, k);
        st = check(w, e, depth + 1, path, plen);
        path[base] = 0;
        if (st) return st;
        i++;
    }
    return NNM_OK;
}

/* Before jansson builds a tree (tens of bytes per value), a pass over the
 * text bounds the values (1 + commas + colons + containers, at least the
 * real count) and the nesting, so a document within max_bytes cannot make
 * the parser allocate far more than the limits allow. Strings are skipped,
 * escapes included; syntax is jansson's business. */
static nnm_status prescan(nnm_ctx *ctx, const char *p, size_t len, const nnm_manifest_limits *lim) {
    uint64_t bound = 1;
    uint32_t depth = 0;
    int in_str = 0;
    for (size_t i = 0; i < len; i++) {
        char c = p[i];
        if (in_str) {
            if (c == '\\') i++;
            else if (c == '"') in_str = 0;
            continue;
        }
        switch (c) {
        case '"': in_str = 1; break;
        case ',': case ':': bound++; break;
        case '[': case '{':
            bound++;
            if (++depth > lim->max_depth)
                return nnm__error(ctx, NNM_E_LIMIT, "json: byte %zu: nesting deeper than %u%s", i,
                                  lim->max_depth, depth_why(lim->max_depth));
            break;
        case ']': case '}':
            if (depth) depth--;
            break;
        }
        if (bound > lim->max_nodes)
            return nnm__error(ctx, NNM_E_LIMIT, "json: byte %zu: more than %llu values (limits.max_nodes)",
                              i, (unsigned long long)lim->max_nodes);
    }
    return NNM_OK;
}

nnm_status nnm__mf_read_json(nnm_ctx *ctx, const char *data, size_t len,
                             const nnm_manifest_limits *lim, json_t **out) {
    *out = NULL;
    nnm_status pre = prescan(ctx, data, len, lim);
    if (pre) return pre;
    json_error_t err;
    json_t *doc = json_loadb(data, len, JSON_REJECT_DUPLICATES, &err);
    if (!doc)
        return nnm__error(ctx, NNM_E_INVALID, "json: line %d, column %d: %s", err.line, err.column,
                          err.text);
    walk w = {ctx, 0, lim->max_nodes, lim->max_depth};
    char path[1024] = "";
    nnm_status st = check(&w, doc, 0, path, sizeof path);
    if (st) {
        json_decref(doc);
        return st;
    }
    *out = doc;
    return NNM_OK;
}
