/* runtime/manifest/write.c - nnm_manifest -> document tree -> msgpack bytes.
 *
 * The document is rebuilt from the parsed manifest rather than kept from the
 * input, so one manifest always gives the same bytes (keys in schema order,
 * every child named, floats as float64) whatever it was read from; that is
 * what nnm_manifest_hash digests.
 */
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#include "manifest_internal.h"

static int put(json_t *obj, const char *key, json_t *v) {
    return v ? json_object_set_new(obj, key, v) : -1;
}

json_t *nnm__mf_config_to_doc(const nnm_config *cfg) {
    json_t *obj = json_object();
    for (size_t i = 0; obj && i < cfg->count; i++) {
        const nnm__cfg_entry *e = &cfg->items[i];
        json_t *v = NULL;
        switch (e->type) {
        case NNM__CFG_INT: v = json_integer((json_int_t)e->u.i); break;
        case NNM__CFG_FLOAT: v = json_real(e->u.f); break;
        case NNM__CFG_BOOL: v = json_boolean(e->u.b); break;
        case NNM__CFG_STR: v = json_string(e->u.s); break;
        case NNM__CFG_INTS:
            v = json_array();
            for (size_t k = 0; v && k < e->u.ints.n; k++)
                if (json_array_append_new(v, json_integer((json_int_t)e->u.ints.v[k]))) {
                    json_decref(v);
                    v = NULL;
                }
            break;
        case NNM__CFG_FLOATS:
            v = json_array();
            for (size_t k = 0; v && k < e->u.floats.n; k++)
                if (json_array_append_new(v, json_real(e->u.floats.v[k]))) {
                    json_decref(v);
                    v = NULL;
                }
            break;
        case NNM__CFG_STRS:
            v = json_array();
            for (size_t k = 0; v && k < e->u.strs.n; k++)
                if (json_array_append_new(v, json_string(e->u.strs.v[k]))) {
                    json_decref(v);
                    v = NULL;
                }
            break;
        }
        if (put(obj, e->key, v)) {
            json_decref(obj);
            return NULL;
        }
    }
    return obj;
}

static json_t *module_doc(const nnm_manifest *mf, uint32_t index, int root) {
    const nnm__mf_module *m = &mf->modules[index];
    json_t *obj = json_object();
    if (!obj) return NULL;
    int bad = (!root && put(obj, "name", json_string(m->name))) ||
              put(obj, "type", json_string(mf->plugins[m->plugin].name));
    if (!bad && m->cfg && m->cfg->count) bad = put(obj, "config", nnm__mf_config_to_doc(m->cfg));
    if (!bad && m->n_children) {
        json_t *kids = json_array();
        bad = put(obj, "children", kids);
        for (uint32_t i = 0; !bad && i < m->n_children; i++)
            bad = json_array_append_new(kids, module_doc(mf, m->children[i], 0));
    }
    if (bad) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

json_t *nnm__mf_to_doc(const nnm_manifest *mf) {
    json_t *doc = json_object(), *pl = json_object();
    int bad = !doc || put(doc, "format", json_string(NNM__MF_FORMAT)) ||
              put(doc, "version", json_integer(NNM__MF_VERSION)) || put(doc, "plugins", pl);
    for (uint32_t i = 0; !bad && i < mf->n_plugins; i++)
        bad = put(pl, mf->plugins[i].name, json_string(mf->plugins[i].range));
    if (!bad && mf->n_modules) bad = put(doc, "root", module_doc(mf, 0, 1));
    if (!bad && mf->weights_path) {
        json_t *w = json_object();
        bad = put(doc, "weights", w) || put(w, "path", json_string(mf->weights_path));
        if (!bad && mf->weights_sha256) bad = put(w, "sha256", json_string(mf->weights_sha256));
    }
    if (!bad && mf->n_meta) {
        json_t *md = json_object();
        bad = put(doc, "metadata", md);
        for (uint32_t i = 0; !bad && i < mf->n_meta; i++)
            bad = put(md, mf->meta_keys[i], json_string(mf->meta_values[i]));
    }
    if (bad) {
        json_decref(doc);
        if (!doc) json_decref(pl);
        return NULL;
    }
    return doc;
}

/* ---- msgpack encoding --------------------------------------------------- */

static int pack(msgpack_packer *pk, const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        if (msgpack_pack_map(pk, json_object_size(v))) return -1;
        const char *k;
        const json_t *e;
        json_object_foreach((json_t *)v, k, e) {
            size_t n = strlen(k);
            if (msgpack_pack_str(pk, n) || msgpack_pack_str_body(pk, k, n) || pack(pk, e)) return -1;
        }
        return 0;
    }
    case JSON_ARRAY: {
        if (msgpack_pack_array(pk, json_array_size(v))) return -1;
        size_t i;
        const json_t *e;
        json_array_foreach(v, i, e) if (pack(pk, e)) return -1;
        return 0;
    }
    case JSON_STRING: {
        size_t n = json_string_length(v);
        return msgpack_pack_str(pk, n) || msgpack_pack_str_body(pk, json_string_value(v), n);
    }
    case JSON_INTEGER: return msgpack_pack_int64(pk, (int64_t)json_integer_value(v));
    case JSON_REAL: return msgpack_pack_double(pk, json_real_value(v));
    case JSON_TRUE: return msgpack_pack_true(pk);
    case JSON_FALSE: return msgpack_pack_false(pk);
    case JSON_NULL: return msgpack_pack_nil(pk);
    }
    return -1;
}

nnm_status nnm__mf_pack(nnm_ctx *ctx, const json_t *doc, void **out, size_t *len) {
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    if (pack(&pk, doc)) {
        msgpack_sbuffer_destroy(&sb);
        return nnm__error(ctx, NNM_E_NOMEM, "out of memory (writing a manifest)");
    }
    *len = sb.size;
    *out = msgpack_sbuffer_release(&sb);
    if (!*out) { /* an empty buffer: never, a document is at least a map */
        *out = malloc(1);
        if (!*out) return nnm__error(ctx, NNM_E_NOMEM, "out of memory (writing a manifest)");
    }
    return NNM_OK;
}
