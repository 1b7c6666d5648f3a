/* runtime/module/config.c - the typed key/value map a layer's create reads. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

const char *nnm__cfg_type_name(int type) {
    switch (type) {
    case NNM__CFG_INT: return "integer";
    case NNM__CFG_FLOAT: return "float";
    case NNM__CFG_BOOL: return "bool";
    case NNM__CFG_STR: return "string";
    case NNM__CFG_INTS: return "list of integers";
    case NNM__CFG_FLOATS: return "list of floats";
    case NNM__CFG_STRS: return "list of strings";
    case NNM_CONFIG_INT_OR_INTS: return "integer or list of integers";
    case NNM_CONFIG_ANY: return "value";
    }
    return "unknown";
}

NNM_API nnm_status nnm_config_new(nnm_config **out) {
    if (!out) return NNM_E_INVALID;
    *out = calloc(1, sizeof **out);
    return *out ? NNM_OK : NNM_E_NOMEM;
}

static void free_strs(char **v, size_t n) {
    for (size_t i = 0; v && i < n; i++) free(v[i]);
    free(v);
}

static void entry_clear(nnm__cfg_entry *e) {
    if (e->type == NNM__CFG_STR) free(e->u.s);
    if (e->type == NNM__CFG_INTS) free(e->u.ints.v);
    if (e->type == NNM__CFG_FLOATS) free(e->u.floats.v);
    if (e->type == NNM__CFG_STRS) free_strs(e->u.strs.v, e->u.strs.n);
    memset(&e->u, 0, sizeof e->u);
}

NNM_API void nnm_config_free(nnm_config *cfg) {
    if (!cfg) return;
    for (size_t i = 0; i < cfg->count; i++) {
        entry_clear(&cfg->items[i]);
        free(cfg->items[i].key);
    }
    free(cfg->items);
    nnm__name_index_free(&cfg->index);
    free(cfg);
}

static uint32_t key_hash_at(const void *items, uint32_t i) {
    return ((const nnm__cfg_entry *)items)[i].hash;
}

nnm__cfg_entry *nnm__config_find(const nnm_config *cfg, const char *key) {
    if (!cfg) return NULL;
    const uint32_t h = nnm__name_hash(key, strlen(key));
    if (cfg->index.slots) {
        NNM__NAME_INDEX_FOREACH(&cfg->index, h, k) {
            nnm__cfg_entry *e = &cfg->items[cfg->index.slots[k] - 1];
            if (e->hash == h && strcmp(e->key, key) == 0) return e;
        }
        return NULL;
    }
    for (size_t i = 0; i < cfg->count; i++)
        if (cfg->items[i].hash == h && strcmp(cfg->items[i].key, key) == 0) return &cfg->items[i];
    return NULL;
}

/* The entry for key, created empty (type -1) when missing; NULL on OOM. */
static nnm__cfg_entry *slot(nnm_config *cfg, const char *key) {
    nnm__cfg_entry *had = nnm__config_find(cfg, key);
    if (had) {
        entry_clear(had);
        return had;
    }
    if (cfg->count >= UINT32_MAX) return NULL; /* the index counts in 32 bits */
    if (cfg->count == cfg->cap) {
        size_t cap = cfg->cap ? cfg->cap * 2 : 8;
        nnm__cfg_entry *p = realloc(cfg->items, cap * sizeof *p);
        if (!p) return NULL;
        cfg->items = p;
        cfg->cap = cap;
    }
    char *k = strdup(key);
    if (!k) return NULL;
    nnm__cfg_entry *e = &cfg->items[cfg->count++];
    memset(e, 0, sizeof *e);
    e->key = k;
    e->hash = nnm__name_hash(k, strlen(k));
    e->type = -1;
    nnm__name_index_added(&cfg->index, (uint32_t)cfg->count, cfg->items, key_hash_at);
    return e;
}

#define SETTER_PROLOGUE                                                                 \
    if (!cfg || !key || !*key) return NNM_E_INVALID;                                    \
    nnm__cfg_entry *e = slot(cfg, key);                                                 \
    if (!e) return NNM_E_NOMEM;

NNM_API nnm_status nnm_config_set_int(nnm_config *cfg, const char *key, int64_t v) {
    SETTER_PROLOGUE
    e->type = NNM__CFG_INT;
    e->u.i = v;
    return NNM_OK;
}

NNM_API nnm_status nnm_config_set_float(nnm_config *cfg, const char *key, double v) {
    SETTER_PROLOGUE
    e->type = NNM__CFG_FLOAT;
    e->u.f = v;
    return NNM_OK;
}

NNM_API nnm_status nnm_config_set_bool(nnm_config *cfg, const char *key, int v) {
    SETTER_PROLOGUE
    e->type = NNM__CFG_BOOL;
    e->u.b = v != 0;
    return NNM_OK;
}

/* Copies n strings; NULL on OOM or a NULL string. */
static char **dup_strs(const char *const *v, size_t n) {
    char **copy = calloc(n ? n : 1, sizeof *copy);
    if (!copy) return NULL;
    for (size_t i = 0; i < n; i++)
        if (!v[i] || !(copy[i] = strdup(v[i]))) {
            free_strs(copy, i);
            return NULL;
        }
    return copy;
}

/* A malloc'd copy of n elements of `size` bytes (at least one byte). */
static void *dup_array(const void *v, size_t n, size_t size) {
    void *copy = malloc(n ? n * size : 1);
    if (copy && n) memcpy(copy, v, n * size);
    return copy;
}

/* Stores `copy` (a string, or a list of n values of `type`) under key. The
 * entry owns copy from here on; on failure it is freed. NULL copy: OOM. */
static nnm_status set_owned(nnm_config *cfg, const char *key, int type, void *copy, size_t n) {
    nnm_status st = NNM_OK;
    nnm__cfg_entry *e = NULL;
    if (!copy) return NNM_E_NOMEM;
    if (!cfg || !key || !*key)
        st = NNM_E_INVALID;
    else if (!(e = slot(cfg, key)))
        st = NNM_E_NOMEM;
    if (st) {
        if (type == NNM__CFG_STRS) free_strs(copy, n);
        else free(copy);
        return st;
    }
    e->type = type;
    switch (type) {
    case NNM__CFG_STR: e->u.s = copy; break;
    case NNM__CFG_INTS: e->u.ints.v = copy, e->u.ints.n = n; break;
    case NNM__CFG_FLOATS: e->u.floats.v = copy, e->u.floats.n = n; break;
    case NNM__CFG_STRS: e->u.strs.v = copy, e->u.strs.n = n; break;
    }
    return NNM_OK;
}

NNM_API nnm_status nnm_config_set_str(nnm_config *cfg, const char *key, const char *v) {
    if (!v) return NNM_E_INVALID;
    return set_owned(cfg, key, NNM__CFG_STR, strdup(v), 0);
}

NNM_API nnm_status nnm_config_set_ints(nnm_config *cfg, const char *key, const int64_t *v, size_t n) {
    if (n && !v) return NNM_E_INVALID;
    return set_owned(cfg, key, NNM__CFG_INTS, dup_array(v, n, sizeof *v), n);
}

NNM_API nnm_status nnm_config_set_floats(nnm_config *cfg, const char *key, const double *v,
                                         size_t n) {
    if (n && !v) return NNM_E_INVALID;
    return set_owned(cfg, key, NNM__CFG_FLOATS, dup_array(v, n, sizeof *v), n);
}

NNM_API nnm_status nnm_config_set_strs(nnm_config *cfg, const char *key, const char *const *v,
                                       size_t n) {
    if (n && !v) return NNM_E_INVALID;
    for (size_t i = 0; i < n; i++)
        if (!v[i]) return NNM_E_INVALID;
    return set_owned(cfg, key, NNM__CFG_STRS, dup_strs(v, n), n);
}

NNM_API size_t nnm_config_count(const nnm_config *cfg) { return cfg ? cfg->count : 0; }

NNM_API const char *nnm_config_key(const nnm_config *cfg, size_t index, int *type) {
    if (!cfg || index >= cfg->count) return NULL;
    if (type) *type = cfg->items[index].type;
    return cfg->items[index].key;
}

nnm_config *nnm__config_clone(const nnm_config *cfg) {
    nnm_config *c = NULL;
    if (nnm_config_new(&c)) return NULL;
    for (size_t i = 0; cfg && i < cfg->count; i++) {
        const nnm__cfg_entry *e = &cfg->items[i];
        nnm_status st = NNM_E_INVALID;
        switch (e->type) {
        case NNM__CFG_INT: st = nnm_config_set_int(c, e->key, e->u.i); break;
        case NNM__CFG_FLOAT: st = nnm_config_set_float(c, e->key, e->u.f); break;
        case NNM__CFG_BOOL: st = nnm_config_set_bool(c, e->key, e->u.b); break;
        case NNM__CFG_STR: st = nnm_config_set_str(c, e->key, e->u.s); break;
        case NNM__CFG_INTS: st = nnm_config_set_ints(c, e->key, e->u.ints.v, e->u.ints.n); break;
        case NNM__CFG_FLOATS:
            st = nnm_config_set_floats(c, e->key, e->u.floats.v, e->u.floats.n);
            break;
        case NNM__CFG_STRS:
            st = nnm_config_set_strs(c, e->key, (const char *const *)e->u.strs.v, e->u.strs.n);
            break;
        }
        if (st) {
            nnm_config_free(c);
            return NULL;
        }
    }
    return c;
}

static int type_fits(int want, int have) {
    if (want == have) return 1;
    if (want == NNM__CFG_FLOAT && have == NNM__CFG_INT) return 1;
    if (want == NNM__CFG_FLOATS && have == NNM__CFG_INTS) return 1;
    if (want == NNM_CONFIG_INT_OR_INTS && (have == NNM__CFG_INT || have == NNM__CFG_INTS)) return 1;
    if (want == NNM_CONFIG_ANY) return 1; /* create checks it */
    /* An empty list reads as a list of anything. */
    return 0;
}

static int empty_list(const nnm__cfg_entry *e) {
    return (e->type == NNM__CFG_INTS && e->u.ints.n == 0) ||
           (e->type == NNM__CFG_FLOATS && e->u.floats.n == 0) ||
           (e->type == NNM__CFG_STRS && e->u.strs.n == 0);
}

static int is_list(int type) {
    return type == NNM__CFG_INTS || type == NNM__CFG_FLOATS || type == NNM__CFG_STRS;
}

nnm_status nnm__config_check(nnm_ctx *ctx, const nnm_layer_vtable *vt, const nnm_config *cfg,
                             const char *prefix) {
    if (!vt->config_fields) return NNM_OK;
    for (size_t i = 0; cfg && i < cfg->count; i++) {
        const nnm__cfg_entry *e = &cfg->items[i];
        const nnm_config_field *f = NULL;
        for (uint32_t j = 0; j < vt->n_config_fields && !f; j++)
            if (vt->config_fields[j].key && strcmp(vt->config_fields[j].key, e->key) == 0)
                f = &vt->config_fields[j];
        if (!f)
            return nnm__error(ctx, NNM_E_INVALID, "%s.%s: unknown key (layer %s takes no such config)",
                              prefix, e->key, vt->name);
        if (!type_fits(f->type, e->type) && !(is_list(f->type) && empty_list(e)))
            return nnm__error(ctx, NNM_E_TYPE, "%s.%s: expected %s, got %s", prefix, e->key,
                              nnm__cfg_type_name(f->type), nnm__cfg_type_name(e->type));
    }
    for (uint32_t j = 0; j < vt->n_config_fields; j++) {
        const nnm_config_field *f = &vt->config_fields[j];
        if ((f->flags & NNM_CONFIG_REQUIRED) && f->key && !nnm__config_find(cfg, f->key))
            return nnm__error(ctx, NNM_E_NOT_FOUND, "%s.%s: required %s is missing", prefix, f->key,
                              nnm__cfg_type_name(f->type));
    }
    return NNM_OK;
}

/* ---- typed getters ------------------------------------------------------ */

static nnm_status get_typed(const nnm_config *cfg, const char *key, int type,
                            const nnm__cfg_entry **out) {
    if (!cfg || !key) return NNM_E_INVALID;
    const nnm__cfg_entry *e = nnm__config_find(cfg, key);
    if (!e) return NNM_E_NOT_FOUND;
    if (!type_fits(type, e->type) && !(is_list(type) && empty_list(e))) return NNM_E_TYPE;
    *out = e;
    return NNM_OK;
}

NNM_API nnm_status nnm_config_get_int(const nnm_config *cfg, const char *key, int64_t *out) {
    const nnm__cfg_entry *e;
    nnm_status st = out ? get_typed(cfg, key, NNM__CFG_INT, &e) : NNM_E_INVALID;
    if (!st) *out = e->u.i;
    return st;
}

NNM_API nnm_status nnm_config_get_float(const nnm_config *cfg, const char *key, double *out) {
    const nnm__cfg_entry *e;
    nnm_status st = out ? get_typed(cfg, key, NNM__CFG_FLOAT, &e) : NNM_E_INVALID;
    if (!st) *out = e->type == NNM__CFG_INT ? (double)e->u.i : e->u.f;
    return st;
}

NNM_API nnm_status nnm_config_get_bool(const nnm_config *cfg, const char *key, int *out) {
    const nnm__cfg_entry *e;
    nnm_status st = out ? get_typed(cfg, key, NNM__CFG_BOOL, &e) : NNM_E_INVALID;
    if (!st) *out = e->u.b;
    return st;
}

NNM_API nnm_status nnm_config_get_str(const nnm_config *cfg, const char *key, const char **out) {
    const nnm__cfg_entry *e;
    nnm_status st = out ? get_typed(cfg, key, NNM__CFG_STR, &e) : NNM_E_INVALID;
    if (!st) *out = e->u.s;
    return st;
}

NNM_API nnm_status nnm_config_get_ints(const nnm_config *cfg, const char *key, const int64_t **v,
                                       size_t *n) {
    const nnm__cfg_entry *e;
    nnm_status st = v && n ? get_typed(cfg, key, NNM__CFG_INTS, &e) : NNM_E_INVALID;
    if (st) return st;
    *v = e->u.ints.v;
    *n = e->u.ints.n;
    return NNM_OK;
}

/* An integer list does not read as floats here: there is no double array to
 * lend. Callers wanting either read both. */
NNM_API nnm_status nnm_config_get_floats(const nnm_config *cfg, const char *key, const double **v,
                                         size_t *n) {
    const nnm__cfg_entry *e;
    nnm_status st = v && n ? get_typed(cfg, key, NNM__CFG_FLOATS, &e) : NNM_E_INVALID;
    if (st) return st;
    if (e->type != NNM__CFG_FLOATS) {
        if (!empty_list(e)) return NNM_E_TYPE;
        *v = NULL;
        *n = 0;
        return NNM_OK;
    }
    *v = e->u.floats.v;
    *n = e->u.floats.n;
    return NNM_OK;
}

NNM_API nnm_status nnm_config_get_strs(const nnm_config *cfg, const char *key,
                                       const char *const **v, size_t *n) {
    const nnm__cfg_entry *e;
    nnm_status st = v && n ? get_typed(cfg, key, NNM__CFG_STRS, &e) : NNM_E_INVALID;
    if (st) return st;
    if (e->type != NNM__CFG_STRS) {
        *v = NULL;
        *n = 0;
        return NNM_OK;
    }
    *v = (const char *const *)e->u.strs.v;
    *n = e->u.strs.n;
    return NNM_OK;
}

NNM_API void nnm_free(void *p) { free(p); }
