/* runtime/manifest/build.c - manifest -> module tree, and module tree ->
 * manifest.
 *
 * Building creates each module through nnm_module_create (so a layer's
 * schema and create run exactly as for C API users), attaches children in
 * document order, finalizes each container once its subtree is complete,
 * then loads the weights. Messages name the module's document path.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "manifest_internal.h"

/* Re-attributes the message on ctx (from create/finalize of module `m`) to
 * the module's document path. "linear: config.k: ..." from a create becomes
 * "root.children[2].config.k: ... (linear)". */
static nnm_status attribute(nnm_ctx *ctx, nnm_status st, const nnm_manifest *mf,
                            const nnm__mf_module *m) {
    char msg[NNM__ERRMSG_CAP];
    memcpy(msg, ctx->errmsg, sizeof msg);
    const char *type = mf->plugins[m->plugin].name;
    const char *body = msg;
    size_t tn = strlen(type);
    if (strncmp(body, type, tn) == 0 && strncmp(body + tn, ": ", 2) == 0) body += tn + 2;
    if (strncmp(body, "config.", 7) == 0)
        return nnm__error(ctx, st, "%s.%s (%s)", m->path, body, type);
    return nnm__error(ctx, st, "%s (%s): %s", m->path, type, body);
}

static nnm_status build_module(const nnm_manifest *mf, uint32_t index, nnm_device dev,
                               nnm_module **out) {
    nnm_ctx *ctx = mf->ctx;
    const nnm__mf_module *m = &mf->modules[index];
    nnm_module *mod = NULL;
    nnm_status st = nnm_module_create_on(ctx, mf->plugins[m->plugin].request, m->cfg, dev, &mod);
    if (st) return attribute(ctx, st, mf, m);
    if (mod->n_made && m->n_children) {
        /* the schema pass refuses this for a layer that declares
         * NNM_LAYER_OWNS_CHILDREN; this is the one that made children
         * without declaring it */
        nnm_module_release(mod);
        return nnm__error(ctx, NNM_E_INVALID, "%s.children: %s makes its children itself from its "
                          "config (as a PyTorch __init__ does); a manifest lists none for it",
                          m->path, mf->plugins[m->plugin].name);
    }
    for (uint32_t i = 0; i < m->n_children; i++) {
        nnm_module *child = NULL;
        const nnm__mf_module *c = &mf->modules[m->children[i]];
        if ((st = build_module(mf, m->children[i], dev, &child))) break;
        st = nnm_module_add_child(mod, c->name, child);
        nnm_module_release(child);
        if (st) {
            st = attribute(ctx, st, mf, c);
            break;
        }
    }
    if (!st && (st = nnm__module_finalize_self(mod))) st = attribute(ctx, st, mf, m);
    if (st) {
        nnm_module_release(mod);
        return st;
    }
    *out = mod;
    return NNM_OK;
}

/* The checks every build makes on the meta tree before a real one is made:
 * each parameter's and buffer's dotted name fits NNM_NAME_MAX (a module's
 * own name was checked when the document was read), and the bytes they
 * would take add up to no more than limits.max_param_bytes. `mod` is the
 * module built from record `index`; children are in document order. */
/* meta_check for the modules a layer made below mod (host->child_new),
 * which the document does not list: `len` is mod's dotted name length. */
static nnm_status made_bytes(const nnm_manifest *mf, const nnm__mf_module *m, const nnm_module *mod,
                             size_t len, uint64_t *total, uint32_t depth) {
    nnm_ctx *ctx = mf->ctx;
    for (uint32_t c = 0; c < mod->n_children; c++) {
        const nnm_module *k = mod->children[c];
        const size_t kl = len + (len ? 1 : 0) + strlen(mod->child_names[c]);
        for (int b = 0; b < 2; b++) {
            const nnm__named_tensor *v = b ? k->buffers : k->params;
            const uint32_t n = b ? k->n_buffers : k->n_params;
            for (uint32_t i = 0; i < n; i++) {
                const size_t tl = kl + 1 + strlen(v[i].name);
                if (kl > NNM_NAME_MAX || tl > NNM_NAME_MAX)
                    return nnm__error(ctx, NNM_E_LIMIT, "%s (%s): %s '%s' of the module it made, '%s': "
                                      "its dotted name would be %zu bytes, more than %d (NNM_NAME_MAX)",
                                      m->path, mf->plugins[m->plugin].name, b ? "buffer" : "parameter",
                                      v[i].name, mod->child_names[c], tl, NNM_NAME_MAX);
                const uint64_t bytes = (uint64_t)nnm_tensor_numel(v[i].t) * nnm__dtype_size(v[i].t->desc.dtype);
                *total = bytes > UINT64_MAX - *total ? UINT64_MAX : *total + bytes;
            }
        }
        if (depth < 4096) {
            nnm_status st = made_bytes(mf, m, k, kl, total, depth + 1);
            if (st) return st;
        }
    }
    return NNM_OK;
}

static nnm_status meta_check(const nnm_manifest *mf, uint32_t index, const nnm_module *mod,
                             uint64_t *total) {
    nnm_ctx *ctx = mf->ctx;
    const nnm__mf_module *m = &mf->modules[index];
    const char *type = mf->plugins[m->plugin].name;
    for (int b = 0; b < 2; b++) {
        const nnm__named_tensor *v = b ? mod->buffers : mod->params;
        const uint32_t n = b ? mod->n_buffers : mod->n_params;
        for (uint32_t i = 0; i < n; i++) {
            const size_t len = m->dotted_len + (m->dotted_len ? 1 : 0) + strlen(v[i].name);
            if (len > NNM_NAME_MAX)
                return nnm__error(ctx, NNM_E_LIMIT, "%s (%s): %s '%s': its dotted name would be %zu "
                                  "bytes, more than %d (NNM_NAME_MAX)", m->path, type,
                                  b ? "buffer" : "parameter", v[i].name, len, NNM_NAME_MAX);
            const nnm_tensor *t = v[i].t;
            const uint64_t bytes = (uint64_t)nnm_tensor_numel(t) * nnm__dtype_size(t->desc.dtype);
            *total = bytes > UINT64_MAX - *total ? UINT64_MAX : *total + bytes;
        }
    }
    for (uint32_t i = 0; i < m->n_children && i < mod->n_children; i++) {
        nnm_status st = meta_check(mf, m->children[i], mod->children[i], total);
        if (st) return st;
    }
    if (mod->n_made) {
        nnm_status st = made_bytes(mf, m, mod, m->dotted_len, total, 0);
        if (st) return st;
    }
    if (index == 0 && *total > mf->max_param_bytes)
        return nnm__error(ctx, NNM_E_LIMIT, "%s: the model's parameters and buffers would take %llu "
                          "bytes, more than %llu (limits.max_param_bytes); nothing was allocated",
                          m->path, (unsigned long long)*total,
                          (unsigned long long)mf->max_param_bytes);
    return NNM_OK;
}

static nnm_status load_weights(const nnm_manifest *mf, nnm_module *root) {
    nnm_ctx *ctx = mf->ctx;
    const char *rel = mf->weights_path;
    size_t n = strlen(mf->base_dir) + strlen(rel) + 2;
    char *path = malloc(n);
    if (!path) return nnm__error(ctx, NNM_E_NOMEM, "weights: out of memory");
    if (rel[0] == '/' || !mf->base_dir[0])
        snprintf(path, n, "%s", rel);
    else
        snprintf(path, n, "%s/%s", mf->base_dir, rel);
    nnm_status st = NNM_OK;
    if (mf->weights_sha256) {
        char hex[65];
        if ((st = nnm__sha256_file(ctx, path, hex))) {
            char msg[NNM__ERRMSG_CAP];
            memcpy(msg, ctx->errmsg, sizeof msg);
            st = nnm__error(ctx, st, "weights: %s", msg);
        } else if (strcmp(hex, mf->weights_sha256) != 0) {
            st = nnm__error(ctx, NNM_E_INVALID,
                            "weights.sha256: %s has sha256 %s, the manifest expects %s", path, hex,
                            mf->weights_sha256);
        }
    }
    if (!st && (st = nnm_module_load(root, path, 1, NULL))) {
        char msg[NNM__ERRMSG_CAP];
        memcpy(msg, ctx->errmsg, sizeof msg);
        st = nnm__error(ctx, st, "weights: %s", msg);
    }
    free(path);
    return st;
}

/* The parameter `name` (a state-dict name below root) as its module and
 * its entry, or an error naming `what` (the manifest path). */
static nnm_status find_param(const nnm_manifest *mf, nnm_module *root, const char *name,
                             const char *what, nnm_module **owner, nnm_tensor **t) {
    nnm_ctx *ctx = mf->ctx;
    const char *dot = strrchr(name, '.');
    nnm_module *m = root;
    const char *leaf = name;
    char *path = NULL;
    if (dot) {
        path = strndup(name, (size_t)(dot - name));
        if (!path) return nnm__error(ctx, NNM_E_NOMEM, "out of memory (manifest)");
        m = nnm_module_get(root, path);
        leaf = dot + 1;
    }
    char nb[160];
    if (!m) {
        nnm_status st = nnm__error(ctx, NNM_E_NOT_FOUND, "%s: no module '%s' in the model", what,
                                   nnm__show(path, nb, sizeof nb));
        free(path);
        return st;
    }
    free(path);
    for (uint32_t i = 0; i < m->n_params; i++)
        if (strcmp(m->params[i].name, leaf) == 0) {
            *owner = m;
            *t = m->params[i].t;
            return NNM_OK;
        }
    return nnm__error(ctx, NNM_E_NOT_FOUND, "%s: no parameter '%s' in the model", what,
                      nnm__show(name, nb, sizeof nb));
}

/* "ties": each key's parameter becomes the value's (nnm_module_set_parameter),
 * before the weights are loaded; messages name ties.KEY. */
static nnm_status apply_ties(const nnm_manifest *mf, nnm_module *root) {
    nnm_ctx *ctx = mf->ctx;
    for (uint32_t i = 0; i < mf->n_ties; i++) {
        char what[NNM_NAME_MAX + 64], nb[160];
        snprintf(what, sizeof what, "ties.%s", nnm__show(mf->tie_keys[i], nb, sizeof nb));
        nnm_module *owner, *src;
        nnm_tensor *mine, *to;
        nnm_status st = find_param(mf, root, mf->tie_keys[i], what, &owner, &mine);
        if (!st) st = find_param(mf, root, mf->tie_values[i], what, &src, &to);
        if (st) return st;
        const char *leaf = strrchr(mf->tie_keys[i], '.');
        leaf = leaf ? leaf + 1 : mf->tie_keys[i];
        if ((st = nnm_module_set_parameter(owner, leaf, to))) {
            char msg[NNM__ERRMSG_CAP];
            memcpy(msg, ctx->errmsg, sizeof msg);
            const char *body = strncmp(msg, "nnm_module_set_parameter: ", 26) == 0 ? msg + 26 : msg;
            return nnm__error(ctx, st, "%s: %s", what, body);
        }
        (void)mine;
    }
    return NNM_OK;
}

NNM_API nnm_status nnm_manifest_build(const nnm_manifest *mf, uint32_t flags, nnm_module **out) {
    if (out) *out = NULL;
    if (!mf) return NNM_E_INVALID;
    if (!out) return nnm__error(mf->ctx, NNM_E_INVALID, "nnm_manifest_build: out is NULL");
    if (!mf->n_modules) return nnm__error(mf->ctx, NNM_E_INVALID, "root: the manifest has no module");
    /* One validation path for every build: on the meta device first. */
    const nnm_device meta = {NNM_DEVICE_META, 0};
    const int meta_only = (flags & NNM_BUILD_META) != 0;
    nnm_module *root = NULL;
    uint64_t total = 0;
    nnm_status st = build_module(mf, 0, meta, &root);
    if (!st) st = meta_check(mf, 0, root, &total);
    if (!st) st = apply_ties(mf, root);
    if (!st && !meta_only) {
        nnm_module_release(root);
        root = NULL;
        st = build_module(mf, 0, (nnm_device){NNM_DEVICE_CPU, 0}, &root);
        if (!st) st = apply_ties(mf, root);
        if (!st && mf->weights_path && !(flags & NNM_BUILD_NO_WEIGHTS)) st = load_weights(mf, root);
    }
    /* Remembered so that nnm_module_save records which manifest it was. */
    char hex[65];
    if (!st && !(st = nnm_manifest_hash(mf, hex)) && !(root->manifest_sha256 = strdup(hex)))
        st = nnm__error(mf->ctx, NNM_E_NOMEM, "out of memory (manifest)");
    if (st) {
        nnm_module_release(root); /* NULL: no-op */
        if (mf->source) { /* messages of a loaded manifest name its file, as load's do */
            char msg[NNM__ERRMSG_CAP];
            memcpy(msg, mf->ctx->errmsg, sizeof msg);
            nnm__error(mf->ctx, st, "%s: %s", mf->source, msg);
        }
        return st;
    }
    *out = root;
    return NNM_OK;
}

/* ---- module tree -> manifest -------------------------------------------- */

/* A config given through the C API may hold what no manifest can: a key
 * longer than the readers take, text that is not UTF-8, a NaN. Refused here,
 * by path, rather than written into a document that cannot be read back. */
static nnm_status writable_string(nnm_ctx *ctx, const char *path, const char *key, const char *s) {
    if (nnm__utf8_valid(s, strlen(s))) return NNM_OK;
    return nnm__error(ctx, NNM_E_INVALID, "%s.config.%s: text that is not UTF-8 cannot be written to a manifest",
                      path, key);
}

static nnm_status writable_config(nnm_ctx *ctx, const nnm_config *cfg, const char *path) {
    for (size_t i = 0; cfg && i < cfg->count; i++) {
        const nnm__cfg_entry *e = &cfg->items[i];
        size_t kn = strlen(e->key);
        if (kn > NNM__MF_MAX_KEY || !nnm__utf8_valid(e->key, kn))
            return nnm__error(ctx, NNM_E_INVALID,
                              "%s.config: key #%zu is longer than %u bytes or not UTF-8; it cannot be "
                              "written to a manifest", path, i, NNM__MF_MAX_KEY);
        nnm_status st = NNM_OK;
        const double *f = NULL;
        size_t nf = 0;
        switch (e->type) {
        case NNM__CFG_STR: st = writable_string(ctx, path, e->key, e->u.s); break;
        case NNM__CFG_STRS:
            for (size_t k = 0; !st && k < e->u.strs.n; k++)
                st = writable_string(ctx, path, e->key, e->u.strs.v[k]);
            break;
        case NNM__CFG_FLOAT: f = &e->u.f; nf = 1; break;
        case NNM__CFG_FLOATS: f = e->u.floats.v; nf = e->u.floats.n; break;
        default: break;
        }
        for (size_t k = 0; !st && k < nf; k++)
            if (!isfinite(f[k]))
                st = nnm__error(ctx, NNM_E_INVALID,
                                "%s.config.%s: the non-finite float %g cannot be written to a manifest",
                                path, e->key, f[k]);
        if (st) return st;
    }
    return NNM_OK;
}

/* The nesting a module at tree depth `depth` takes in the document: the
 * document map is level 1, the root module's map 2, each generation adds a
 * children list and a map; the config map and a list inside it add 2. */
static uint32_t doc_levels(const nnm_config *cfg, uint32_t depth) {
    uint32_t levels = 2 + 2 * depth;
    if (!cfg || !cfg->count) return levels;
    for (size_t i = 0; i < cfg->count; i++)
        if (cfg->items[i].type == NNM__CFG_INTS || cfg->items[i].type == NNM__CFG_FLOATS ||
            cfg->items[i].type == NNM__CFG_STRS)
            return levels + 2;
    return levels + 1;
}

/* Describes m, called `name` in its parent's slot ("" for the root). A
 * module shared by two slots is written under each (a manifest has no
 * sharing: the tree it rebuilds has two copies). */
static nnm_status describe(nnm_manifest *mf, const nnm_module *m, const char *name,
                           const char *path, uint32_t depth, uint32_t *index) {
    nnm_ctx *ctx = mf->ctx;
    const nnm_layer_vtable *vt = m->vt;
    nnm_status wst = writable_config(ctx, m->cfg, path);
    if (wst) return wst;
    /* What is written must read back with the default limits, in msgpack too. */
    uint32_t levels = doc_levels(m->cfg, depth);
    if (levels > NNM_MANIFEST_DEFAULT_MAX_DEPTH)
        return nnm__error(ctx, NNM_E_LIMIT,
                          "%s: a module nested %u deep takes %u levels in a manifest; a manifest "
                          "reads at most %u (the msgpack unpacker's stack)",
                          path, depth, levels, NNM_MANIFEST_DEFAULT_MAX_DEPTH);
    char range[48];
    snprintf(range, sizeof range, "^%u.%u", vt->version_major, vt->version_minor);
    char type[160]; /* the plain name where it reaches this layer, else the qualified one */
    nnm__registry_request_name(&ctx->reg, m->plugin, vt, type, sizeof type);
    int pi = nnm__mf_plugin_index(mf, type, range, NULL);
    if (pi < 0) return nnm__error(ctx, NNM_E_NOMEM, "out of memory (manifest)");
    nnm__mf_plugin *pl = &mf->plugins[pi];
    if (!pl->version[0]) {
        snprintf(pl->version, sizeof pl->version, "%u.%u.%u", vt->version_major, vt->version_minor,
                 vt->version_patch);
    } else if (strcmp(pl->range, range) != 0) {
        /* One range per type: keep the lower minor of one major. */
        unsigned maj = 0, min = 0;
        sscanf(pl->range, "^%u.%u", &maj, &min);
        if (maj != vt->version_major)
            return nnm__error(ctx, NNM_E_VERSION,
                              "%s: modules of type %s come from versions %u.x and %u.x; a manifest "
                              "names one range per type",
                              path, type, maj, vt->version_major);
        if (vt->version_minor < min) {
            free(pl->range);
            free(pl->request);
            pl->range = strdup(range);
            size_t n = strlen(type) + strlen(range) + 2;
            pl->request = malloc(n);
            if (!pl->range || !pl->request) return nnm__error(ctx, NNM_E_NOMEM, "out of memory (manifest)");
            snprintf(pl->request, n, "%s@%s", type, range);
        }
    }
    nnm__mf_module *rec = nnm__mf_add_module(mf, path);
    if (!rec) return nnm__error(ctx, NNM_E_NOMEM, "out of memory (manifest)");
    uint32_t self = mf->n_modules - 1;
    *index = self;
    rec->plugin = (uint32_t)pi;
    rec->name = strdup(name);
    rec->cfg = nnm__config_clone(m->cfg);
    rec->children = calloc(m->n_children ? m->n_children : 1, sizeof *rec->children);
    if (!rec->name || !rec->cfg || !rec->children)
        return nnm__error(ctx, NNM_E_NOMEM, "out of memory (manifest)");
    /* Children its create made (host->child_new) are implied by its config:
     * none is written, and the tree must still be what the config makes. */
    if (m->n_made) return nnm__module_made_intact(m, path);
    for (uint32_t i = 0; i < m->n_children; i++) {
        char cp[1100];
        snprintf(cp, sizeof cp, "%s.children[%u]", path, i);
        uint32_t ci = 0; /* set by describe on success; GCC 12 -O3 cannot see it */
        nnm_status st = describe(mf, m->children[i], m->child_names[i], cp, depth + 1, &ci);
        if (st) return st;
        mf->modules[self].children[i] = ci; /* modules may have moved: index again */
        mf->modules[self].n_children = i + 1;
    }
    return NNM_OK;
}

/* Tied parameters below m (nnm_module_set_parameter) as the manifest's
 * ties: an entry with an alias is tied to the tensor `t`, held untied by
 * the first entry in tree order that has it. `owners` collects those
 * (pass 0), pass 1 writes each tied entry's key. */
typedef struct tie_walk {
    nnm_manifest *mf;
    const nnm_tensor **t;
    char **name;
    uint32_t n, cap;
} tie_walk;

static nnm_status tie_visit(tie_walk *w, const nnm_module *m, const char *prefix, int pass, uint32_t depth) {
    nnm_ctx *ctx = w->mf->ctx;
    char name[NNM_NAME_MAX + 2];
    for (uint32_t i = 0; i < m->n_params; i++) {
        const nnm__named_tensor *e = &m->params[i];
        int len = snprintf(name, sizeof name, "%s%s%s", prefix, prefix[0] ? "." : "", e->name);
        if (len < 0 || (size_t)len >= sizeof name) continue; /* refused when the tree was built */
        if (pass == 0 && !e->alias) {
            if (w->n == w->cap) {
                uint32_t cap = w->cap ? 2 * w->cap : 16;
                const nnm_tensor **t = realloc(w->t, cap * sizeof *t);
                if (t) w->t = t;
                char **nm = t ? realloc(w->name, cap * sizeof *nm) : NULL;
                if (nm) w->name = nm;
                if (!t || !nm) return nnm__error(ctx, NNM_E_NOMEM, "out of memory (manifest)");
                w->cap = cap;
            }
            if (!(w->name[w->n] = strdup(name))) return nnm__error(ctx, NNM_E_NOMEM, "out of memory (manifest)");
            w->t[w->n++] = e->t;
        } else if (pass == 1 && e->alias) {
            const char *to = NULL;
            for (uint32_t k = 0; k < w->n && !to; k++)
                if (w->t[k] == e->t) to = w->name[k];
            char nb[160];
            if (!to)
                return nnm__error(ctx, NNM_E_INVALID,
                                  "nnm_manifest_from_module: '%s' is tied to a parameter outside this tree; "
                                  "a manifest cannot hold that tie",
                                  nnm__show(name, nb, sizeof nb));
            nnm_manifest *mf = w->mf;
            char **k2 = realloc(mf->tie_keys, (mf->n_ties + 1) * sizeof *k2);
            if (k2) mf->tie_keys = k2;
            char **v2 = k2 ? realloc(mf->tie_values, (mf->n_ties + 1) * sizeof *v2) : NULL;
            if (v2) mf->tie_values = v2;
            if (!k2 || !v2) return nnm__error(ctx, NNM_E_NOMEM, "out of memory (manifest)");
            mf->tie_keys[mf->n_ties] = strdup(name);
            mf->tie_values[mf->n_ties] = strdup(to);
            mf->n_ties++;
            if (!mf->tie_keys[mf->n_ties - 1] || !mf->tie_values[mf->n_ties - 1])
                return nnm__error(ctx, NNM_E_NOMEM, "out of memory (manifest)");
        }
    }
    if (depth > 4096) return NNM_OK;
    for (uint32_t c = 0; c < m->n_children; c++) {
        int len = snprintf(name, sizeof name, "%s%s%s", prefix, prefix[0] ? "." : "", m->child_names[c]);
        if (len < 0 || (size_t)len >= sizeof name) continue;
        nnm_status st = tie_visit(w, m->children[c], name, pass, depth + 1);
        if (st) return st;
    }
    return NNM_OK;
}

static nnm_status describe_ties(nnm_manifest *mf, const nnm_module *m) {
    tie_walk w = {mf, NULL, NULL, 0, 0};
    nnm_status st = tie_visit(&w, m, "", 0, 0);
    if (!st) st = tie_visit(&w, m, "", 1, 0);
    for (uint32_t i = 0; i < w.n; i++) free(w.name[i]);
    free(w.name);
    free(w.t);
    return st;
}

NNM_API nnm_status nnm_manifest_from_module(nnm_module *m, nnm_manifest **out) {
    if (out) *out = NULL;
    if (!nnm__module_live(m)) return NNM_E_INVALID;
    if (!out) return nnm__error(m->ctx, NNM_E_INVALID, "nnm_manifest_from_module: out is NULL");
    nnm_manifest *mf = nnm__mf_new(m->ctx, NULL);
    if (!mf) return nnm__error(m->ctx, NNM_E_NOMEM, "out of memory (manifest)");
    uint32_t root;
    nnm_status st = describe(mf, m, "", "root", 0, &root);
    if (!st) st = describe_ties(mf, m);
    if (st) {
        nnm_manifest_free(mf);
        return st;
    }
    *out = mf;
    return NNM_OK;
}
