/* runtime/manifest/write.c - nnm_manifest -> document tree (JSON) or msgpack bytes.
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
    for (uint32_t i = 0; !bad && i < mf->n_plugins; i++) {
        const nnm__mf_plugin *e = &mf->plugins[i];
        if (e->provider) { /* a pinned provider: {"version": ..., "provider": ...} */
            json_t *pin = json_object();
            bad = put(pl, e->name, pin) || put(pin, "version", json_string(e->range)) ||
                  put(pin, "provider", json_string(e->provider));
        } else {
            bad = put(pl, e->name, json_string(e->range));
        }
    }
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
    if (!bad && mf->training) bad = put(doc, "training", nnm__mf_config_to_doc(mf->training));
    if (!bad && mf->n_ties) {
        json_t *ti = json_object();
        bad = put(doc, "ties", ti);
        for (uint32_t i = 0; !bad && i < mf->n_ties; i++)
            bad = put(ti, mf->tie_keys[i], json_string(mf->tie_values[i]));
    }
    if (bad) {
        json_decref(doc);
        if (!doc) json_decref(pl);
        return NULL;
    }
    return doc;
}

/* ---- msgpack encoding --------------------------------------------------- */

/* The same document as nnm__mf_to_doc, packed straight from the manifest:
 * no tree to allocate, and the hash streams it without a buffer. The key
 * order is nnm__mf_to_doc's (jansson iterates in insertion order), so the
 * msgpack and JSON writers say the same thing; the round-trip tests and the
 * fuzz harness compare what each reads back. Every string of a manifest is
 * NUL-terminated UTF-8 (the readers and nnm_manifest_from_module see to it). */

static int pack_str(msgpack_packer *pk, const char *s) {
    size_t n = strlen(s);
    return msgpack_pack_str(pk, n) || msgpack_pack_str_body(pk, s, n);
}

static int pack_config(msgpack_packer *pk, const nnm_config *cfg) {
    if (msgpack_pack_map(pk, cfg->count)) return -1;
    for (size_t i = 0; i < cfg->count; i++) {
        const nnm__cfg_entry *e = &cfg->items[i];
        int bad = pack_str(pk, e->key);
        switch (e->type) {
        case NNM__CFG_INT: bad = bad || msgpack_pack_int64(pk, e->u.i); break;
        case NNM__CFG_FLOAT: bad = bad || msgpack_pack_double(pk, e->u.f); break;
        case NNM__CFG_BOOL:
            bad = bad || (e->u.b ? msgpack_pack_true(pk) : msgpack_pack_false(pk));
            break;
        case NNM__CFG_STR: bad = bad || pack_str(pk, e->u.s); break;
        case NNM__CFG_INTS:
            bad = bad || msgpack_pack_array(pk, e->u.ints.n);
            for (size_t k = 0; !bad && k < e->u.ints.n; k++)
                bad = msgpack_pack_int64(pk, e->u.ints.v[k]);
            break;
        case NNM__CFG_FLOATS:
            bad = bad || msgpack_pack_array(pk, e->u.floats.n);
            for (size_t k = 0; !bad && k < e->u.floats.n; k++)
                bad = msgpack_pack_double(pk, e->u.floats.v[k]);
            break;
        case NNM__CFG_STRS:
            bad = bad || msgpack_pack_array(pk, e->u.strs.n);
            for (size_t k = 0; !bad && k < e->u.strs.n; k++) bad = pack_str(pk, e->u.strs.v[k]);
            break;
        default: bad = 1;
        }
        if (bad) return -1;
    }
    return 0;
}

static int pack_module(msgpack_packer *pk, const nnm_manifest *mf, uint32_t index, int root) {
    const nnm__mf_module *m = &mf->modules[index];
    int has_cfg = m->cfg && m->cfg->count, has_kids = m->n_children != 0;
    if (msgpack_pack_map(pk, (size_t)(!root + 1 + has_cfg + has_kids))) return -1;
    if (!root && (pack_str(pk, "name") || pack_str(pk, m->name))) return -1;
    if (pack_str(pk, "type") || pack_str(pk, mf->plugins[m->plugin].name)) return -1;
    if (has_cfg && (pack_str(pk, "config") || pack_config(pk, m->cfg))) return -1;
    if (has_kids) {
        if (pack_str(pk, "children") || msgpack_pack_array(pk, m->n_children)) return -1;
        for (uint32_t i = 0; i < m->n_children; i++)
            if (pack_module(pk, mf, m->children[i], 0)) return -1;
    }
    return 0;
}

int nnm__mf_pack(const nnm_manifest *mf, msgpack_packer *pk) {
    size_t n = 3 + (mf->n_modules != 0) + (mf->weights_path != NULL) + (mf->n_meta != 0) +
               (mf->training != NULL) + (mf->n_ties != 0);
    if (msgpack_pack_map(pk, n) || pack_str(pk, "format") || pack_str(pk, NNM__MF_FORMAT) ||
        pack_str(pk, "version") || msgpack_pack_int64(pk, NNM__MF_VERSION) ||
        pack_str(pk, "plugins") || msgpack_pack_map(pk, mf->n_plugins))
        return -1;
    for (uint32_t i = 0; i < mf->n_plugins; i++) {
        const nnm__mf_plugin *e = &mf->plugins[i];
        if (pack_str(pk, e->name)) return -1;
        if (e->provider) {
            if (msgpack_pack_map(pk, 2) || pack_str(pk, "version") || pack_str(pk, e->range) ||
                pack_str(pk, "provider") || pack_str(pk, e->provider))
                return -1;
        } else if (pack_str(pk, e->range)) {
            return -1;
        }
    }
    if (mf->n_modules && (pack_str(pk, "root") || pack_module(pk, mf, 0, 1))) return -1;
    if (mf->weights_path) {
        if (pack_str(pk, "weights") || msgpack_pack_map(pk, 1 + (mf->weights_sha256 != NULL)) ||
            pack_str(pk, "path") || pack_str(pk, mf->weights_path))
            return -1;
        if (mf->weights_sha256 && (pack_str(pk, "sha256") || pack_str(pk, mf->weights_sha256)))
            return -1;
    }
    if (mf->n_meta) {
        if (pack_str(pk, "metadata") || msgpack_pack_map(pk, mf->n_meta)) return -1;
        for (uint32_t i = 0; i < mf->n_meta; i++)
            if (pack_str(pk, mf->meta_keys[i]) || pack_str(pk, mf->meta_values[i])) return -1;
    }
    if (mf->training && (pack_str(pk, "training") || pack_config(pk, mf->training))) return -1;
    if (mf->n_ties) {
        if (pack_str(pk, "ties") || msgpack_pack_map(pk, mf->n_ties)) return -1;
        for (uint32_t i = 0; i < mf->n_ties; i++)
            if (pack_str(pk, mf->tie_keys[i]) || pack_str(pk, mf->tie_values[i])) return -1;
    }
    return 0;
}
