/* runtime/manifest/schema.c - schema v1: document tree -> nnm_manifest.
 *
 * Strict, because a typo in a hand-written manifest should be an error and
 * not a silently ignored key. Every message starts with the path of the
 * offending value inside the document ("root.children[2].config.out_features:
 * expected integer, got string"). Plugin requests are resolved here, against
 * the context's loaded plugins, so that each module's config can be checked
 * against its layer's declared schema before anything is created.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "manifest_internal.h"
#include "loader/loader.h"

typedef struct pass {
    nnm_manifest *mf;
    nnm_ctx *ctx;
    const nnm_manifest_limits *lim;
    const nnm_layer_vtable **vts; /* per plugin entry */
    uint32_t dotted_len;          /* of the module module() is about to record */
} pass;

static nnm_status fail(nnm_ctx *ctx, nnm_status code, const char *path, const char *fmt, ...)
    NNM__PRINTF(4, 5);
static nnm_status fail(nnm_ctx *ctx, nnm_status code, const char *path, const char *fmt, ...) {
    char msg[NNM__ERRMSG_CAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return nnm__error(ctx, code, "%s: %s", path, msg);
}

static const char *kind(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "map";
    case JSON_ARRAY: return "list";
    case JSON_STRING: return "string";
    case JSON_INTEGER: return "integer";
    case JSON_REAL: return "float";
    case JSON_TRUE:
    case JSON_FALSE: return "bool";
    case JSON_NULL: return "nil";
    }
    return "value";
}

/* Keys of obj must be among `allowed` (NULL-terminated). */
static nnm_status only_keys(pass *p, const json_t *obj, const char *path,
                            const char *const *allowed, const char *list) {
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)obj, k, v) {
        int ok = 0;
        for (const char *const *a = allowed; *a && !ok; a++) ok = strcmp(*a, k) == 0;
        if (!ok)
            return fail(p->ctx, NNM_E_INVALID, path, "unknown key '%s' (expected %s)", k, list);
    }
    return NNM_OK;
}

/* ---- config ------------------------------------------------------------- */

static nnm_status list_value(pass *p, nnm_config *cfg, const char *key, const json_t *arr,
                             const char *path) {
    size_t n = json_array_size(arr), i;
    const json_t *e;
    int ints = 0, reals = 0, strs = 0;
    char ep[1100];
    const size_t base = nnm__path_set(ep, sizeof ep, path);
    json_array_foreach(arr, i, e) {
        nnm__path_index(ep, sizeof ep, base, i);
        if (json_is_integer(e)) ints++;
        else if (json_is_real(e)) reals++;
        else if (json_is_string(e)) strs++;
        else
            return fail(p->ctx, NNM_E_TYPE, ep, "lists hold numbers or strings, got %s", kind(e));
        if (strs && (ints || reals))
            return fail(p->ctx, NNM_E_TYPE, ep, "list mixes strings and numbers");
    }
    nnm_status st;
    if (strs) {
        const char **v = malloc(n * sizeof *v);
        if (!v) return nnm__error(p->ctx, NNM_E_NOMEM, "out of memory (manifest)");
        json_array_foreach(arr, i, e) v[i] = json_string_value(e);
        st = nnm_config_set_strs(cfg, key, v, n);
        free(v);
    } else if (reals) {
        double *v = malloc(n * sizeof *v);
        if (!v) return nnm__error(p->ctx, NNM_E_NOMEM, "out of memory (manifest)");
        json_array_foreach(arr, i, e) v[i] = json_number_value(e);
        st = nnm_config_set_floats(cfg, key, v, n);
        free(v);
    } else {
        int64_t *v = malloc((n ? n : 1) * sizeof *v);
        if (!v) return nnm__error(p->ctx, NNM_E_NOMEM, "out of memory (manifest)");
        json_array_foreach(arr, i, e) v[i] = (int64_t)json_integer_value(e);
        st = nnm_config_set_ints(cfg, key, v, n);
        free(v);
    }
    return st ? nnm__error(p->ctx, st, "out of memory (manifest)") : NNM_OK;
}

static nnm_status config(pass *p, const json_t *obj, const char *path, nnm_config **out) {
    *out = NULL;
    if (!json_is_object(obj)) return fail(p->ctx, NNM_E_TYPE, path, "expected map, got %s", kind(obj));
    nnm_config *cfg;
    if (nnm_config_new(&cfg)) return nnm__error(p->ctx, NNM_E_NOMEM, "out of memory (manifest)");
    const char *k;
    const json_t *v;
    char kp[1100];
    const size_t base = nnm__path_set(kp, sizeof kp, path);
    json_object_foreach((json_t *)obj, k, v) {
        nnm__path_key(kp, sizeof kp, base, k);
        nnm_status st = NNM_OK;
        if (!*k) st = fail(p->ctx, NNM_E_INVALID, path, "empty key");
        else if (json_is_integer(v)) st = nnm_config_set_int(cfg, k, (int64_t)json_integer_value(v));
        else if (json_is_real(v)) st = nnm_config_set_float(cfg, k, json_real_value(v));
        else if (json_is_boolean(v)) st = nnm_config_set_bool(cfg, k, json_is_true(v));
        else if (json_is_string(v)) st = nnm_config_set_str(cfg, k, json_string_value(v));
        else if (json_is_array(v)) st = list_value(p, cfg, k, v, kp);
        else
            st = fail(p->ctx, NNM_E_TYPE, kp,
                      "expected an integer, float, bool, string or list, got %s", kind(v));
        if (st == NNM_E_NOMEM && !strstr(nnm_ctx_errmsg(p->ctx), "out of memory"))
            nnm__error(p->ctx, st, "out of memory (manifest)");
        if (st) {
            nnm_config_free(cfg);
            return st;
        }
    }
    *out = cfg;
    return NNM_OK;
}

#define NNM__CONFIG_JSON_MAX (64u * 1024u)

nnm_status nnm__config_from_json(nnm_ctx *ctx, const char *text, const char *prefix, nnm_config **out) {
    *out = NULL;
    size_t len = text ? strlen(text) : 0;
    if (!len) return nnm_config_new(out) ? nnm__error(ctx, NNM_E_NOMEM, "out of memory (config)") : NNM_OK;
    if (len > NNM__CONFIG_JSON_MAX)
        return nnm__error(ctx, NNM_E_LIMIT, "%s: the JSON text is %zu bytes, more than %u", prefix, len,
                          NNM__CONFIG_JSON_MAX);
    json_error_t err;
    json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
    if (!doc)
        return nnm__error(ctx, NNM_E_INVALID, "%s: json: line %d, column %d: %s", prefix, err.line,
                          err.column, err.text);
    pass p = {NULL, ctx, NULL, NULL, 0};
    nnm_status st = config(&p, doc, prefix, out);
    json_decref(doc);
    return st;
}

/* ---- modules ------------------------------------------------------------ */

/* Sibling names seen so far: an open-addressing set, so a container with
 * thousands of children is checked in linear time. */
typedef struct name_set {
    const char **names;           /* borrowed; NULL = empty slot */
    size_t *index;                /* the child index of each name */
    size_t mask, slot;            /* slot: where the last miss would go */
} name_set;

static int names_init(name_set *s, size_t n) {
    size_t cap = 16;
    while (cap < 2 * n) cap *= 2;
    s->names = calloc(cap, sizeof *s->names);
    s->index = calloc(cap, sizeof *s->index);
    s->mask = cap - 1;
    s->slot = 0;
    if (s->names && s->index) return 0;
    free(s->names);
    free(s->index);
    return -1;
}

static void names_free(name_set *s) {
    free(s->names);
    free(s->index);
}

/* 1 (and *at) when name was seen; else 0, with s->slot where to put it. */
static int names_seen(name_set *s, const char *name, size_t *at) {
    const uint32_t h = nnm__name_hash(name, strlen(name));
    for (size_t k = h & s->mask;; k = (k + 1) & s->mask) {
        if (!s->names[k]) {
            s->slot = k;
            return 0;
        }
        if (strcmp(s->names[k], name) == 0) {
            *at = s->index[k];
            return 1;
        }
    }
}

/* Child i of module `self` (at path): its name, checked against its
 * siblings, then the child itself. */
static nnm_status module(pass *p, const json_t *v, const char *path, const char *name,
                         uint32_t *index);

static nnm_status child(pass *p, const json_t *c, const char *path, uint32_t self, size_t i,
                        name_set *seen) {
    nnm_manifest *mf = p->mf;
    char cp[1100], np[1100], cname[32];
    size_t cl = nnm__path_key(cp, sizeof cp, nnm__path_set(cp, sizeof cp, path), "children");
    cl = nnm__path_index(cp, sizeof cp, cl, i);
    const char *nm = cname;
    const json_t *jn = json_is_object(c) ? json_object_get(c, "name") : NULL;
    if (!jn) {
        snprintf(cname, sizeof cname, "%zu", i); /* unnamed: PyTorch's index name */
    } else {
        nnm__path_key(np, sizeof np, nnm__path_put(np, sizeof np, 0, cp, cl), "name");
        if (!json_is_string(jn))
            return fail(p->ctx, NNM_E_TYPE, np, "expected string, got %s", kind(jn));
        nm = json_string_value(jn);
        if (!nnm__name_valid(nm)) {
            char nb[128];
            return fail(p->ctx, NNM_E_INVALID, np, "'%s' is not a module name (%s)",
                        nnm__show(nm, nb, sizeof nb), NNM__NAME_RULE);
        }
    }
    size_t j;
    if (names_seen(seen, nm, &j))
        return fail(p->ctx, NNM_E_EXISTS, jn ? np : cp, "duplicate name '%s' (as children[%zu])",
                    nm, j);
    /* Every walk of the built tree (named_modules, state dicts, messages)
     * spells this module's dotted name: refused here, by path, for every
     * command alike, rather than by the first walk that meets it. */
    const size_t parent_len = mf->modules[self].dotted_len;
    const size_t dotted = parent_len + (parent_len ? 1 : 0) + strlen(nm);
    if (dotted > NNM_NAME_MAX)
        return fail(p->ctx, NNM_E_LIMIT, jn ? np : cp,
                    "the module's dotted name would be %zu bytes, more than %d (NNM_NAME_MAX)",
                    dotted, NNM_NAME_MAX);
    uint32_t ci;
    p->dotted_len = (uint32_t)dotted;
    nnm_status st = module(p, c, cp, nm, &ci);
    if (st) return st;
    mf->modules[self].children[i] = ci;
    mf->modules[self].n_children = (uint32_t)i + 1;
    seen->names[seen->slot] = mf->modules[ci].name;
    seen->index[seen->slot] = i;
    return NNM_OK;
}

static const char *const module_keys[] = {"name", "type", "config", "children", NULL};

static nnm_status module(pass *p, const json_t *v, const char *path, const char *name,
                         uint32_t *index) {
    nnm_manifest *mf = p->mf;
    if (!json_is_object(v)) return fail(p->ctx, NNM_E_TYPE, path, "expected map, got %s", kind(v));
    nnm_status st = only_keys(p, v, path, module_keys, "name, type, config, children");
    if (st) return st;
    if (mf->n_modules >= p->lim->max_modules)
        return fail(p->ctx, NNM_E_LIMIT, path, "more than %llu modules (limits.max_modules)",
                    (unsigned long long)p->lim->max_modules);
    char sub[1100];
    const json_t *type = json_object_get(v, "type");
    nnm__path_key(sub, sizeof sub, nnm__path_set(sub, sizeof sub, path), "type");
    if (!type) return fail(p->ctx, NNM_E_NOT_FOUND, sub, "required string is missing");
    if (!json_is_string(type))
        return fail(p->ctx, NNM_E_TYPE, sub, "expected string, got %s", kind(type));
    const char *tname = json_string_value(type);
    int pi = -1;
    for (uint32_t i = 0; i < mf->n_plugins && pi < 0; i++)
        if (strcmp(mf->plugins[i].name, tname) == 0) pi = (int)i;
    if (pi < 0)
        return fail(p->ctx, NNM_E_NOT_FOUND, sub, "'%s' is not listed in plugins", tname);
    const nnm_layer_vtable *vt = p->vts[pi];

    nnm__mf_module *m = nnm__mf_add_module(mf, path);
    if (!m) return nnm__error(p->ctx, NNM_E_NOMEM, "out of memory (manifest)");
    uint32_t self = mf->n_modules - 1;
    *index = self;
    m->dotted_len = p->dotted_len;
    m->plugin = (uint32_t)pi;
    if (!(m->name = strdup(name))) return nnm__error(p->ctx, NNM_E_NOMEM, "out of memory (manifest)");

    const json_t *cv = json_object_get(v, "config");
    nnm_config *cfg = NULL;
    nnm__path_key(sub, sizeof sub, nnm__path_set(sub, sizeof sub, path), "config");
    if (cv) {
        if ((st = config(p, cv, sub, &cfg))) return st;
    } else if (nnm_config_new(&cfg)) {
        return nnm__error(p->ctx, NNM_E_NOMEM, "out of memory (manifest)");
    }
    mf->modules[self].cfg = cfg;
    if ((st = nnm__config_check(p->ctx, vt, cfg, sub))) return st;

    const json_t *kids = json_object_get(v, "children");
    if (!kids) return NNM_OK;
    nnm__path_key(sub, sizeof sub, nnm__path_set(sub, sizeof sub, path), "children");
    if (!json_is_array(kids)) return fail(p->ctx, NNM_E_TYPE, sub, "expected list, got %s", kind(kids));
    if ((vt->flags & NNM_LAYER_OWNS_CHILDREN) && json_array_size(kids))
        return fail(p->ctx, NNM_E_INVALID, sub,
                    "%s makes its children itself from its config (as a PyTorch __init__ does); "
                    "a manifest lists none for it", vt->name);
    if (!(vt->flags & NNM_LAYER_CONTAINER) && json_array_size(kids))
        return fail(p->ctx, NNM_E_INVALID, sub, "%s is not a container", vt->name);
    size_t n = json_array_size(kids);
    uint32_t *idx = calloc(n ? n : 1, sizeof *idx);
    if (!idx) return nnm__error(p->ctx, NNM_E_NOMEM, "out of memory (manifest)");
    mf->modules[self].children = idx; /* owned by the record from now on */
    name_set seen;
    if (names_init(&seen, n)) return nnm__error(p->ctx, NNM_E_NOMEM, "out of memory (manifest)");
    for (size_t i = 0; i < n && !st; i++) st = child(p, json_array_get(kids, i), path, self, i, &seen);
    names_free(&seen);
    return st;
}

/* ---- the document ------------------------------------------------------- */

static nnm_status plugins(pass *p, const json_t *v) {
    nnm_manifest *mf = p->mf;
    if (!v) return fail(p->ctx, NNM_E_NOT_FOUND, "plugins", "required map is missing");
    if (!json_is_object(v)) return fail(p->ctx, NNM_E_TYPE, "plugins", "expected map, got %s", kind(v));
    size_t n = json_object_size(v);
    p->vts = calloc(n ? n : 1, sizeof *p->vts);
    if (!p->vts) return nnm__error(p->ctx, NNM_E_NOMEM, "out of memory (manifest)");
    const char *k;
    const json_t *r;
    char path[400];
    json_object_foreach((json_t *)v, k, r) {
        snprintf(path, sizeof path, "plugins.%s", k);
        nnm__version_req kreq;
        if (strchr(k, '@') || strchr(k, '#') || nnm__version_req_parse(k, &kreq) != NNM_OK)
            return fail(p->ctx, NNM_E_INVALID, "plugins",
                        "'%s' is not a layer type name ([a-z0-9_], or domain.name)", k);
        /* "^1.2", or {"version": "^1.2", "provider": "nnm_acme.so"} (a pin) */
        const char *range = NULL, *provider = NULL;
        if (json_is_object(r)) {
            static const char *const pkeys[] = {"version", "provider", NULL};
            nnm_status kst = only_keys(p, r, path, pkeys, "version, provider");
            if (kst) return kst;
            const json_t *ver = json_object_get(r, "version"), *prov = json_object_get(r, "provider");
            char sub[480];
            if (ver && !json_is_string(ver)) {
                snprintf(sub, sizeof sub, "%s.version", path);
                return fail(p->ctx, NNM_E_TYPE, sub, "expected a version range string, got %s",
                            kind(ver));
            }
            if (prov && (!json_is_string(prov) || !json_string_value(prov)[0])) {
                snprintf(sub, sizeof sub, "%s.provider", path);
                return fail(p->ctx, NNM_E_TYPE, sub,
                            "expected a non-empty string (a plugin file, its path, or a plugin "
                            "name), got %s", json_is_string(prov) ? "\"\"" : kind(prov));
            }
            range = ver ? json_string_value(ver) : "*";
            provider = prov ? json_string_value(prov) : NULL;
        } else if (json_is_string(r)) {
            range = json_string_value(r);
        } else {
            return fail(p->ctx, NNM_E_TYPE, path,
                        "expected a version range string, got %s (a pinned provider is a map "
                        "{version, provider})",
                        kind(r));
        }
        int i = nnm__mf_plugin_index(mf, k, range, provider);
        if (i < 0) return nnm__error(p->ctx, NNM_E_NOMEM, "out of memory (manifest)");
        nnm__mf_plugin *pl = &mf->plugins[i];
        nnm__plugin *owner;
        char err[NNM__ERRMSG_CAP] = "";
        nnm_status st = nnm__registry_find_layer(&p->ctx->reg, pl->request, &p->vts[i], &owner, err,
                                                 sizeof err);
        if (st) return fail(p->ctx, st, path, "%s", err);
        snprintf(pl->version, sizeof pl->version, "%u.%u.%u", p->vts[i]->version_major,
                 p->vts[i]->version_minor, p->vts[i]->version_patch);
    }
    return NNM_OK;
}

static int hexdigit(int c) { return isdigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

static nnm_status weights(pass *p, const json_t *v) {
    static const char *const keys[] = {"path", "sha256", NULL};
    if (!json_is_object(v)) return fail(p->ctx, NNM_E_TYPE, "weights", "expected map, got %s", kind(v));
    nnm_status st = only_keys(p, v, "weights", keys, "path, sha256");
    if (st) return st;
    const json_t *path = json_object_get(v, "path"), *sha = json_object_get(v, "sha256");
    if (!path) return fail(p->ctx, NNM_E_NOT_FOUND, "weights.path", "required string is missing");
    if (!json_is_string(path) || !*json_string_value(path))
        return fail(p->ctx, NNM_E_TYPE, "weights.path", "expected a non-empty string, got %s",
                    json_is_string(path) ? "\"\"" : kind(path));
    const char *hex = NULL;
    if (sha) {
        if (!json_is_string(sha))
            return fail(p->ctx, NNM_E_TYPE, "weights.sha256", "expected string, got %s", kind(sha));
        hex = json_string_value(sha);
        size_t n = strlen(hex);
        int ok = n == 64;
        for (size_t i = 0; ok && i < n; i++) ok = hexdigit((unsigned char)hex[i]);
        if (!ok) return fail(p->ctx, NNM_E_INVALID, "weights.sha256", "expected 64 hex digits");
    }
    st = nnm_manifest_set_weights(p->mf, json_string_value(path), hex);
    return st ? nnm__error(p->ctx, st, "out of memory (manifest)") : NNM_OK;
}

static nnm_status metadata(pass *p, const json_t *v) {
    nnm_manifest *mf = p->mf;
    if (!json_is_object(v)) return fail(p->ctx, NNM_E_TYPE, "metadata", "expected map, got %s", kind(v));
    size_t n = json_object_size(v);
    mf->meta_keys = calloc(n ? n : 1, sizeof *mf->meta_keys);
    mf->meta_values = calloc(n ? n : 1, sizeof *mf->meta_values);
    if (!mf->meta_keys || !mf->meta_values) return nnm__error(p->ctx, NNM_E_NOMEM, "out of memory (manifest)");
    const char *k;
    const json_t *s;
    json_object_foreach((json_t *)v, k, s) {
        if (!json_is_string(s)) {
            char path[400];
            snprintf(path, sizeof path, "metadata.%s", k);
            return fail(p->ctx, NNM_E_TYPE, path, "expected string, got %s", kind(s));
        }
        uint32_t i = mf->n_meta;
        mf->meta_keys[i] = strdup(k);
        mf->meta_values[i] = strdup(json_string_value(s));
        mf->n_meta++;
        if (!mf->meta_keys[i] || !mf->meta_values[i])
            return nnm__error(p->ctx, NNM_E_NOMEM, "out of memory (manifest)");
    }
    return NNM_OK;
}

/* "ties": {"lm_head.weight": "transformer.wte.weight"}: each key, a
 * parameter's state-dict name, is tied to the parameter the value names
 * (PyTorch's `self.lm_head.weight = self.transformer.wte.weight`). The
 * names are checked against the tree when it is built. */
static nnm_status ties(pass *p, const json_t *v) {
    nnm_manifest *mf = p->mf;
    if (!json_is_object(v)) return fail(p->ctx, NNM_E_TYPE, "ties", "expected map, got %s", kind(v));
    size_t n = json_object_size(v);
    mf->tie_keys = calloc(n ? n : 1, sizeof *mf->tie_keys);
    mf->tie_values = calloc(n ? n : 1, sizeof *mf->tie_values);
    if (!mf->tie_keys || !mf->tie_values) return nnm__error(p->ctx, NNM_E_NOMEM, "out of memory (manifest)");
    const char *k;
    const json_t *s;
    json_object_foreach((json_t *)v, k, s) {
        char path[400];
        snprintf(path, sizeof path, "ties.%s", k);
        if (!json_is_string(s)) return fail(p->ctx, NNM_E_TYPE, path, "expected string, got %s", kind(s));
        const char *to = json_string_value(s);
        if (!k[0] || !to[0])
            return fail(p->ctx, NNM_E_INVALID, path, "expected two parameter names, got an empty one");
        if (strlen(k) > NNM_NAME_MAX || strlen(to) > NNM_NAME_MAX)
            return fail(p->ctx, NNM_E_LIMIT, path, "a parameter name longer than %d bytes (NNM_NAME_MAX)",
                        NNM_NAME_MAX);
        if (strcmp(k, to) == 0) return fail(p->ctx, NNM_E_INVALID, path, "a parameter tied to itself");
        uint32_t i = mf->n_ties;
        mf->tie_keys[i] = strdup(k);
        mf->tie_values[i] = strdup(to);
        mf->n_ties++;
        if (!mf->tie_keys[i] || !mf->tie_values[i])
            return nnm__error(p->ctx, NNM_E_NOMEM, "out of memory (manifest)");
    }
    return NNM_OK;
}

static const char *const top_keys[] = {"format", "version", "plugins", "root", "weights",
                                       "metadata", "training", "ties", NULL};

nnm_status nnm__mf_from_doc(nnm_manifest *mf, const json_t *doc, const nnm_manifest_limits *lim) {
    pass p = {mf, mf->ctx, lim, NULL};
    nnm_ctx *ctx = mf->ctx;
    if (!json_is_object(doc))
        return fail(ctx, NNM_E_TYPE, "document", "expected a map, got %s", kind(doc));
    nnm_status st = only_keys(&p, doc, "document", top_keys,
                              "format, version, plugins, root, weights, metadata, training, ties");
    if (st) return st;
    const json_t *f = json_object_get(doc, "format"), *ver = json_object_get(doc, "version");
    if (!f) return fail(ctx, NNM_E_NOT_FOUND, "format", "required string is missing (\"" NNM__MF_FORMAT "\")");
    if (!json_is_string(f) || strcmp(json_string_value(f), NNM__MF_FORMAT) != 0)
        return fail(ctx, NNM_E_INVALID, "format", "expected \"" NNM__MF_FORMAT "\"");
    if (!ver) return fail(ctx, NNM_E_NOT_FOUND, "version", "required integer is missing");
    if (!json_is_integer(ver)) return fail(ctx, NNM_E_TYPE, "version", "expected integer, got %s", kind(ver));
    json_int_t vn = json_integer_value(ver);
    if (vn > NNM__MF_VERSION)
        return fail(ctx, NNM_E_VERSION, "version", "%lld is newer than this nnmod reads (%d)",
                    (long long)vn, NNM__MF_VERSION);
    if (vn < 1) return fail(ctx, NNM_E_INVALID, "version", "%lld is not a schema version", (long long)vn);

    if ((st = plugins(&p, json_object_get(doc, "plugins")))) goto out;
    const json_t *w = json_object_get(doc, "weights"), *md = json_object_get(doc, "metadata");
    if (w && (st = weights(&p, w))) goto out;
    if (md && (st = metadata(&p, md))) goto out;
    const json_t *ti = json_object_get(doc, "ties");
    if (ti && (st = ties(&p, ti))) goto out;
    /* "training": a config-like map (docs/training.md); its keys are the
     * trainer's to check, the reader only checks the value kinds. */
    const json_t *tr = json_object_get(doc, "training");
    if (tr && (st = config(&p, tr, "training", &mf->training))) goto out;
    const json_t *root = json_object_get(doc, "root");
    if (!root) {
        st = fail(ctx, NNM_E_NOT_FOUND, "root", "required module is missing");
        goto out;
    }
    if (json_is_object(root) && json_object_get(root, "name")) {
        st = fail(ctx, NNM_E_INVALID, "root.name", "the root module has no name");
        goto out;
    }
    uint32_t ri;
    st = module(&p, root, "root", "", &ri);
out:
    free(p.vts);
    return st;
}
