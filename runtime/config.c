/* runtime/config.c - the typed key/value map a layer's create reads. */
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
    }
    return "unknown";
}

NNM_API nnm_status nnm_config_new(nnm_config **out) {
    if (!out) return NNM_E_INVALID;
    *out = calloc(1, sizeof **out);
    return *out ? NNM_OK : NNM_E_NOMEM;
}

static void entry_clear(nnm__cfg_entry *e) {
    if (e->type == NNM__CFG_STR) free(e->u.s);
    if (e->type == NNM__CFG_INTS) free(e->u.ints.v);
    memset(&e->u, 0, sizeof e->u);
}

NNM_API void nnm_config_free(nnm_config *cfg) {
    if (!cfg) return;
    for (size_t i = 0; i < cfg->count; i++) {
        entry_clear(&cfg->items[i]);
        free(cfg->items[i].key);
    }
    free(cfg->items);
    free(cfg);
}

/* The entry for key, created empty (type -1) when missing; NULL on OOM. */
static nnm__cfg_entry *slot(nnm_config *cfg, const char *key) {
    for (size_t i = 0; i < cfg->count; i++)
        if (strcmp(cfg->items[i].key, key) == 0) {
            entry_clear(&cfg->items[i]);
            return &cfg->items[i];
        }
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
    e->type = -1;
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

NNM_API nnm_status nnm_config_set_str(nnm_config *cfg, const char *key, const char *v) {
    if (!v) return NNM_E_INVALID;
    char *copy = strdup(v);
    if (!copy) return NNM_E_NOMEM;
    if (!cfg || !key || !*key) {
        free(copy);
        return NNM_E_INVALID;
    }
    nnm__cfg_entry *e = slot(cfg, key);
    if (!e) {
        free(copy);
        return NNM_E_NOMEM;
    }
    e->type = NNM__CFG_STR;
    e->u.s = copy;
    return NNM_OK;
}

NNM_API nnm_status nnm_config_set_ints(nnm_config *cfg, const char *key, const int64_t *v, size_t n) {
    if (n && !v) return NNM_E_INVALID;
    int64_t *copy = malloc((n ? n : 1) * sizeof *copy);
    if (!copy) return NNM_E_NOMEM;
    if (n) memcpy(copy, v, n * sizeof *copy);
    if (!cfg || !key || !*key) {
        free(copy);
        return NNM_E_INVALID;
    }
    nnm__cfg_entry *e = slot(cfg, key);
    if (!e) {
        free(copy);
        return NNM_E_NOMEM;
    }
    e->type = NNM__CFG_INTS;
    e->u.ints.v = copy;
    e->u.ints.n = n;
    return NNM_OK;
}
