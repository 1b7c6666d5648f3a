/* runtime/module/module.c - the module tree: creation from a layer plugin, children,
 * parameters and buffers with PyTorch-style dotted names, modes, device moves,
 * and the printed tree. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define NAME_CAP (NNM_NAME_MAX + 1) /* longest dotted name a walk builds, and its NUL */


static void free_named(nnm__named_tensor *v, uint32_t n) {
    for (uint32_t i = 0; i < n; i++) {
        free(v[i].name);
        nnm_tensor_release(v[i].t);
        nnm_tensor_release(v[i].alias);
    }
    free(v);
}

/* Forgets m as the maker of the modules below it (they may outlive it). */
static void made_forget(nnm_module *m, nnm_module *owner, uint32_t depth) {
    for (uint32_t i = 0; i < m->n_children && depth < 4096; i++) {
        nnm_module *c = m->children[i];
        if (c->made_by != owner) continue;
        c->made_by = NULL;
        made_forget(c, owner, depth + 1);
    }
}

static void module_destroy(nnm_module *m) {
    nnm_ctx *ctx = m->ctx;
    if (m->n_made) made_forget(m, m, 0);
    if (m->created && m->vt->destroy) m->vt->destroy(m->self);
    nnm__hook_list_clear(&m->pre_hooks);
    nnm__hook_list_clear(&m->post_hooks);
    nnm__hook_list_clear(&m->bw_pre_hooks);
    nnm__hook_list_clear(&m->bw_hooks);
    for (uint32_t i = 0; i < m->n_children; i++) {
        if (m->children[i]->parent == m) m->children[i]->parent = NULL;
        nnm_module_release(m->children[i]);
        free(m->child_names[i]);
    }
    free(m->children);
    free(m->child_names);
    free(m->child_hashes);
    nnm__name_index_free(&m->child_index);
    free_named(m->params, m->n_params);
    free_named(m->buffers, m->n_buffers);
    free(m->name);
    nnm_config_free(m->cfg);
    free(m->manifest_sha256);
    nnm__module_set_output_names(m, NULL, 0);
    m->magic = 0;
    m->plugin->live_modules--;
    nnm__plugin_release(m->plugin); /* may dlclose: vt is not touched after this */
    free(m);
    ctx->stats.live_modules--;
    nnm__ctx_release(ctx);
}

nnm_status nnm__module_finalize_self(nnm_module *m);

/* Finalizes the modules below m that `owner` made, children first; the
 * message names the module's path below owner. */
static nnm_status made_finalize(nnm_module *m, const nnm_module *owner, uint32_t depth) {
    for (uint32_t i = 0; i < m->n_children; i++) {
        nnm_module *c = m->children[i];
        if (c->made_by != owner || depth > 4096) continue;
        nnm_status st = made_finalize(c, owner, depth + 1);
        if (!st) st = nnm__module_finalize_self(c);
        if (st) {
            char msg[NNM__ERRMSG_CAP];
            memcpy(msg, m->ctx->errmsg, sizeof msg);
            return nnm__error(m->ctx, st, "%s (%s): %s", c->name, c->vt->name, msg);
        }
    }
    return NNM_OK;
}

/* Every module below m must have been made by a layer (a module attached by
 * hand is not implied by any config); counts those `owner` made. */
static nnm_status made_check(const nnm_module *m, const nnm_module *owner, const char *path,
                             const char *below, uint32_t *made, uint32_t depth) {
    for (uint32_t i = 0; i < m->n_children; i++) {
        const nnm_module *c = m->children[i];
        char sub[512];
        snprintf(sub, sizeof sub, "%s%s%s", below, *below ? "." : "", m->child_names[i]);
        if (!c->made_by)
            return nnm__error(m->ctx, NNM_E_STATE, "%s (%s): '%s' was attached by hand, but %s makes "
                              "its children from its config: a manifest cannot hold it",
                              path, owner->vt->name, sub, owner->vt->name);
        if (c->made_by == owner) (*made)++;
        if (depth > 4096) continue;
        nnm_status st = made_check(c, owner, path, sub, made, depth + 1);
        if (st) return st;
    }
    return NNM_OK;
}

NNM_API nnm_status nnm_module_create(nnm_ctx *ctx, const char *request, const nnm_config *cfg,
                                     nnm_module **out) {
    return nnm_module_create_on(ctx, request, cfg, (nnm_device){NNM_DEVICE_CPU, 0}, out);
}

NNM_API nnm_status nnm_module_create_on(nnm_ctx *ctx, const char *request, const nnm_config *cfg,
                                        nnm_device device, nnm_module **out) {
    if (out) *out = NULL;
    if (!ctx) return NNM_E_INVALID;
    if (!request || !out) return nnm__error(ctx, NNM_E_INVALID, "nnm_module_create: NULL argument");
    if (!(device.type == NNM_DEVICE_CPU || device.type == NNM_DEVICE_META) || device.id != 0)
        return nnm__error(ctx, NNM_E_DEVICE, "nnm_module_create_on: modules are created on the CPU "
                          "or the meta device (then moved with nnm_module_to)");
    const nnm_layer_vtable *vt;
    nnm__plugin *owner;
    char err[NNM__ERRMSG_CAP];
    err[0] = 0;
    nnm_status st = nnm__registry_find_layer(&ctx->reg, request, &vt, &owner, err, sizeof err);
    if (st) return nnm__error(ctx, st, "%s", err);

    st = nnm__config_check(ctx, vt, cfg, "config");
    if (st) {
        char msg[NNM__ERRMSG_CAP];
        memcpy(msg, ctx->errmsg, sizeof msg);
        return nnm__error(ctx, st, "%s: %s", vt->name, msg);
    }
    nnm_module *m = calloc(1, sizeof *m);
    char *name = strdup("");
    nnm_config *copy = nnm__config_clone(cfg);
    if (!m || !name || !copy) {
        free(m);
        free(name);
        nnm_config_free(copy);
        return nnm__error(ctx, NNM_E_NOMEM, "out of memory (module)");
    }
    m->cfg = copy;
    m->magic = NNM__MODULE_MAGIC;
    m->refs = 1;
    m->ctx = ctx;
    m->vt = vt;
    m->plugin = owner;
    m->name = name;
    m->training = 1;
    m->device = device;
    nnm__hook_list_init(&m->pre_hooks, ctx, &m->n_hooks);
    nnm__hook_list_init(&m->post_hooks, ctx, &m->n_hooks);
    nnm__hook_list_init(&m->bw_pre_hooks, ctx, &m->n_hooks);
    nnm__hook_list_init(&m->bw_hooks, ctx, &m->n_hooks);
    nnm__plugin_retain(owner);
    owner->live_modules++;
    nnm__ctx_retain(ctx);
    ctx->stats.live_modules++;

    nnm__env env;
    nnm__env_init(&env, ctx, m, NNM__PHASE_CREATE);
    env.cfg = cfg;
    ctx->errmsg[0] = 0;
    st = vt->create(&env.pub, &m->self);
    if (st) {
        if (!ctx->errmsg[0]) nnm__error(ctx, st, "create failed (%s)", nnm_status_str(st));
        char msg[NNM__ERRMSG_CAP];
        memcpy(msg, ctx->errmsg, sizeof msg);
        nnm__error(ctx, st, "%s: %s", vt->name, msg);
        m->self = NULL;
        module_destroy(m); /* create failed: the plugin cleaned up, destroy is not called */
        return st;
    }
    m->created = 1;
    /* A key create never read is a typo or a config for another layer: say
     * so, as PyTorch does for an unexpected keyword argument. */
    for (size_t i = 0; cfg && i < cfg->count && i < 64; i++) {
        if (env.cfg_read & ((uint64_t)1 << i)) continue;
        nnm__error(ctx, NNM_E_INVALID, "%s: config.%s: unknown key (not read by the layer)",
                   vt->name, cfg->items[i].key);
        module_destroy(m);
        return NNM_E_INVALID;
    }
    /* The modules create made (host->child_new), children first. */
    if (m->n_made && (st = made_finalize(m, m, 0))) {
        char msg[NNM__ERRMSG_CAP];
        memcpy(msg, ctx->errmsg, sizeof msg);
        nnm__error(ctx, st, "%s: %s", vt->name, msg);
        module_destroy(m);
        return st;
    }
    /* create may have probed optional keys (a missing list sets a message):
     * a module that was made leaves no error behind. */
    ctx->errmsg[0] = 0;
    *out = m;
    return NNM_OK;
}

nnm_status nnm__module_made_intact(const nnm_module *m, const char *path) {
    uint32_t made = 0;
    nnm_status st = made_check(m, m, path, "", &made, 0);
    if (st) return st;
    if (made != m->n_made)
        return nnm__error(m->ctx, NNM_E_STATE, "%s (%s): %u of the %u modules its create made were "
                          "deleted or replaced; a manifest cannot say so (it would make them again)",
                          path, m->vt->name, m->n_made - made, m->n_made);
    return NNM_OK;
}

NNM_API void nnm_module_retain(nnm_module *m) {
    if (nnm__module_live(m)) m->refs++;
}

NNM_API void nnm_module_release(nnm_module *m) {
    if (!nnm__module_live(m)) return;
    if (--m->refs == 0) module_destroy(m);
}


static uint32_t child_hash_at(const void *items, uint32_t i) {
    return ((const uint32_t *)items)[i];
}

/* The slot of m's child named by the len bytes at name, or UINT32_MAX. */
static uint32_t find_slot(const nnm_module *m, const char *name, size_t len) {
    const uint32_t h = nnm__name_hash(name, len);
#define NNM__NAMED(i) \
    (m->child_hashes[i] == h && strncmp(m->child_names[i], name, len) == 0 && !m->child_names[i][len])
    if (m->child_index.slots) {
        NNM__NAME_INDEX_FOREACH(&m->child_index, h, k) {
            const uint32_t i = m->child_index.slots[k] - 1;
            if (NNM__NAMED(i)) return i;
        }
        return UINT32_MAX;
    }
    for (uint32_t i = 0; i < m->n_children; i++)
        if (NNM__NAMED(i)) return i;
    return UINT32_MAX;
#undef NNM__NAMED
}

/* The child of m named by the len bytes at name, or NULL. */
static nnm_module *find_child(const nnm_module *m, const char *name, size_t len) {
    const uint32_t i = find_slot(m, name, len);
    return i == UINT32_MAX ? NULL : m->children[i];
}

/* Grows m's child arrays to hold one more; 0, or -1 out of memory. */
static int children_reserve(nnm_module *m) {
    if (m->n_children < m->cap_children) return 0;
    uint32_t cap = m->cap_children ? m->cap_children * 2 : 4;
    nnm_module **v = realloc(m->children, cap * sizeof *v);
    if (!v) return -1;
    m->children = v;
    char **nv = realloc(m->child_names, cap * sizeof *nv);
    if (!nv) return -1;
    m->child_names = nv;
    uint32_t *hv = realloc(m->child_hashes, cap * sizeof *hv);
    if (!hv) return -1;
    m->child_hashes = hv;
    m->cap_children = cap;
    return 0;
}

/* ---- visited sets ----------------------------------------------------------- */

int nnm__seen_add(nnm__seen *s, const void *p) {
    if (2 * (s->n + 1) > s->mask + 1) {
        size_t cap = s->slots ? 2 * (s->mask + 1) : 64;
        const void **v = calloc(cap, sizeof *v);
        if (!v) return -1;
        for (size_t i = 0; s->slots && i <= s->mask; i++) {
            if (!s->slots[i]) continue;
            size_t k = ((uintptr_t)s->slots[i] >> 4) & (cap - 1);
            while (v[k]) k = (k + 1) & (cap - 1);
            v[k] = s->slots[i];
        }
        free(s->slots);
        s->slots = v;
        s->mask = cap - 1;
    }
    size_t k = ((uintptr_t)p >> 4) & s->mask;
    for (; s->slots[k]; k = (k + 1) & s->mask)
        if (s->slots[k] == p) return 0;
    s->slots[k] = p;
    s->n++;
    return 1;
}

void nnm__seen_free(nnm__seen *s) {
    free(s->slots);
    s->slots = NULL;
    s->mask = s->n = 0;
}

/* Is `name` taken by a child, parameter or buffer of m? */
static int name_taken(const nnm_module *m, const char *name) {
    if (find_child(m, name, strlen(name))) return 1;
    for (uint32_t i = 0; i < m->n_params; i++)
        if (strcmp(m->params[i].name, name) == 0) return 1;
    for (uint32_t i = 0; i < m->n_buffers; i++)
        if (strcmp(m->buffers[i].name, name) == 0) return 1;
    return 0;
}

NNM_API nnm_status nnm_module_add_child(nnm_module *parent, const char *name, nnm_module *child) {
    if (!nnm__module_live(parent)) return NNM_E_INVALID;
    nnm_ctx *ctx = parent->ctx;
    if (!nnm__module_live(child))
        return nnm__error(ctx, NNM_E_INVALID, "nnm_module_add_child: child is not a live module");
    if (child->ctx != ctx)
        return nnm__error(ctx, NNM_E_INVALID, "nnm_module_add_child: child is of another context");
    if (child->parent)
        return nnm__error(ctx, NNM_E_STATE, "nnm_module_add_child: '%s' already has a parent",
                          child->name);
    for (nnm_module *a = parent; a; a = a->parent)
        if (a == child)
            return nnm__error(ctx, NNM_E_INVALID, "nnm_module_add_child: would make a cycle");
    char idx[16];
    if (!name) {
        snprintf(idx, sizeof idx, "%u", parent->n_children);
        name = idx;
    }
    if (!nnm__name_valid(name)) {
        char nb[128];
        return nnm__error(ctx, NNM_E_INVALID, "invalid child name '%s' (%s)",
                          nnm__show(name, nb, sizeof nb), NNM__NAME_RULE);
    }
    if (name_taken(parent, name))
        return nnm__error(ctx, NNM_E_EXISTS, "'%s' is already a child, parameter or buffer", name);
    if (!nnm__device_eq(child->device, parent->device))
        return nnm__error(ctx, NNM_E_DEVICE, "child '%s' is on another device than its parent",
                          name);
    char *copy = strdup(name), *slot = strdup(name);
    if (!copy || !slot || children_reserve(parent)) {
        free(copy);
        free(slot);
        return nnm__error(ctx, NNM_E_NOMEM, "out of memory");
    }
    free(child->name);
    child->name = copy;
    child->name_hash = nnm__name_hash(copy, strlen(copy));
    child->parent = parent;
    child->refs++;
    parent->children[parent->n_children] = child;
    parent->child_names[parent->n_children] = slot;
    parent->child_hashes[parent->n_children] = child->name_hash;
    parent->n_children++;
    nnm__name_index_added(&parent->child_index, parent->n_children, parent->child_hashes,
                          child_hash_at);
    return NNM_OK;
}

/* ---- names and structure ------------------------------------------------ */

NNM_API const char *nnm_module_name(const nnm_module *m) { return nnm__module_live(m) ? m->name : ""; }
NNM_API const char *nnm_module_type(const nnm_module *m) {
    return nnm__module_live(m) ? m->vt->name : "";
}
NNM_API nnm_module *nnm_module_parent(const nnm_module *m) {
    return nnm__module_live(m) ? m->parent : NULL;
}
NNM_API uint32_t nnm_module_child_count(const nnm_module *m) {
    return nnm__module_live(m) ? m->n_children : 0;
}
NNM_API nnm_module *nnm_module_child(const nnm_module *m, uint32_t index) {
    return nnm__module_live(m) && index < m->n_children ? m->children[index] : NULL;
}
NNM_API const char *nnm_module_child_name(const nnm_module *m, uint32_t index) {
    return nnm__module_live(m) && index < m->n_children ? m->child_names[index] : NULL;
}
NNM_API nnm_ctx *nnm_module_ctx(const nnm_module *m) { return nnm__module_live(m) ? m->ctx : NULL; }

NNM_API const nnm_config *nnm_module_config(const nnm_module *m) {
    return nnm__module_live(m) ? m->cfg : NULL;
}

nnm_status nnm__module_finalize_self(nnm_module *m) {
    if (!m->vt->finalize) return NNM_OK;
    nnm__env env;
    nnm__env_init(&env, m->ctx, m, NNM__PHASE_FINALIZE);
    m->ctx->errmsg[0] = 0;
    nnm_status st = m->vt->finalize(&env.pub, m->self);
    if (st && !m->ctx->errmsg[0]) nnm__error(m->ctx, st, "finalize failed (%s)", nnm_status_str(st));
    return st;
}

static nnm_status finalize_one(void *user, const char *name, nnm_module *m) {
    (void)user;
    (void)name;
    nnm_status st = nnm__module_finalize_self(m);
    if (st) nnm__error_attribute(m->ctx, m);
    return st;
}

NNM_API nnm_status nnm_module_finalize(nnm_module *m) {
    if (!nnm__module_live(m)) return NNM_E_INVALID;
    m->ctx->err_attributed = 0;
    return nnm_module_apply(m, finalize_one, NULL); /* children first */
}

NNM_API int nnm_module_path(const nnm_module *m, char *buf, size_t cap) {
    if (!nnm__module_live(m)) {
        if (cap) buf[0] = 0;
        return 0;
    }
    /* Collect ancestors root-first (depth is bounded by the buffer anyway). */
    const nnm_module *chain[64];
    int depth = 0;
    for (const nnm_module *a = m; a->parent && depth < 64; a = a->parent) chain[depth++] = a;
    size_t n = 0;
    for (int i = depth - 1; i >= 0; i--) {
        int w = snprintf(buf ? buf + (n < cap ? n : cap) : NULL, n < cap ? cap - n : 0, "%s%s",
                         i == depth - 1 ? "" : ".", chain[i]->name);
        if (w > 0) n += (size_t)w;
    }
    if (depth == 0 && cap) buf[0] = 0;
    return (int)n;
}

NNM_API nnm_module *nnm_module_get(const nnm_module *m, const char *path) {
    if (!nnm__module_live(m) || !path) return NULL;
    const nnm_module *cur = m;
    while (*path) {
        const char *dot = strchr(path, '.');
        size_t len = dot ? (size_t)(dot - path) : strlen(path);
        const nnm_module *next = find_child(cur, path, len);
        if (!next) return NULL;
        cur = next;
        path += len + (dot ? 1 : 0);
        if (dot && !*path) return NULL; /* trailing dot */
    }
    return (nnm_module *)cur;
}

/* ---- walks -------------------------------------------------------------- */

/* Appends ".name" (or "name" at the root) to a prefix of length len. */
static int name_push(char *buf, size_t len, const char *name, size_t *newlen) {
    size_t nl = strlen(name);
    size_t need = len + (len ? 1 : 0) + nl;
    if (need + 1 > NAME_CAP) return -1;
    if (len) buf[len++] = '.';
    memcpy(buf + len, name, nl + 1);
    *newlen = need;
    return 0;
}

/* Marks m (or tensor t) visited when the tree shares modules or tensors;
 * 1: first visit, 0: seen before, < 0: out of memory (message set). */
static int first_visit(nnm_ctx *ctx, nnm__seen *seen, const void *p) {
    if (!seen) return 1;
    int r = nnm__seen_add(seen, p);
    if (r < 0) nnm__error(ctx, NNM_E_NOMEM, "out of memory (walk)");
    return r;
}

/* Walks visit each module once, under its first name, when modules are
 * shared (PyTorch's named_modules(remove_duplicate=True)): `seen` is then
 * non-NULL. */
static nnm_status walk_modules(nnm_module *m, char *buf, size_t len, nnm_module_visit_fn fn,
                               void *user, nnm__seen *seen) {
    int r = first_visit(m->ctx, seen, m);
    if (r <= 0) return r < 0 ? NNM_E_NOMEM : NNM_OK;
    nnm_status st = fn(user, buf, m);
    if (st) return st;
    for (uint32_t i = 0; i < m->n_children; i++) {
        size_t nl;
        if (name_push(buf, len, m->child_names[i], &nl))
            return nnm__error(m->ctx, NNM_E_LIMIT, "module name longer than %d bytes", NNM_NAME_MAX);
        st = walk_modules(m->children[i], buf, nl, fn, user, seen);
        buf[len] = 0;
        if (st) return st;
    }
    return NNM_OK;
}

NNM_API nnm_status nnm_module_named_modules(nnm_module *m, nnm_module_visit_fn fn, void *user) {
    if (!nnm__module_live(m)) return NNM_E_INVALID;
    if (!fn) return nnm__error(m->ctx, NNM_E_INVALID, "visitor is NULL");
    char buf[NAME_CAP];
    buf[0] = 0;
    nnm__seen seen = {0};
    nnm_status st = walk_modules(m, buf, 0, fn, user, m->ctx->shared_links ? &seen : NULL);
    nnm__seen_free(&seen);
    return st;
}

/* Parameters (or buffers) in PyTorch's order: a module's own, then each
 * child's; each module and each tensor once when some are shared. */
static nnm_status walk_tensors(nnm_module *m, int buffers, char *buf, size_t len,
                               nnm_tensor_visit_fn fn, void *user, nnm__seen *seen) {
    int r = first_visit(m->ctx, seen, m);
    if (r <= 0) return r < 0 ? NNM_E_NOMEM : NNM_OK;
    const nnm__named_tensor *v = buffers ? m->buffers : m->params;
    uint32_t n = buffers ? m->n_buffers : m->n_params;
    for (uint32_t i = 0; i < n; i++) {
        if ((r = first_visit(m->ctx, seen, v[i].t)) <= 0) {
            if (r < 0) return NNM_E_NOMEM;
            continue;
        }
        size_t nl;
        if (name_push(buf, len, v[i].name, &nl))
            return nnm__error(m->ctx, NNM_E_LIMIT, "tensor name longer than %d bytes", NNM_NAME_MAX);
        nnm_status st = fn(user, buf, v[i].t);
        buf[len] = 0;
        if (st) return st;
    }
    for (uint32_t i = 0; i < m->n_children; i++) {
        size_t nl;
        if (name_push(buf, len, m->child_names[i], &nl))
            return nnm__error(m->ctx, NNM_E_LIMIT, "module name longer than %d bytes", NNM_NAME_MAX);
        nnm_status st = walk_tensors(m->children[i], buffers, buf, nl, fn, user, seen);
        buf[len] = 0;
        if (st) return st;
    }
    return NNM_OK;
}

static nnm_status tensors_once(nnm_module *m, int buffers, nnm_tensor_visit_fn fn, void *user) {
    char buf[NAME_CAP];
    buf[0] = 0;
    nnm__seen seen = {0};
    nnm_status st = walk_tensors(m, buffers, buf, 0, fn, user, m->ctx->shared_links ? &seen : NULL);
    nnm__seen_free(&seen);
    return st;
}

NNM_API nnm_status nnm_module_named_parameters(nnm_module *m, nnm_tensor_visit_fn fn, void *user) {
    if (!nnm__module_live(m)) return NNM_E_INVALID;
    if (!fn) return nnm__error(m->ctx, NNM_E_INVALID, "visitor is NULL");
    return tensors_once(m, 0, fn, user);
}

NNM_API nnm_status nnm_module_named_buffers(nnm_module *m, nnm_tensor_visit_fn fn, void *user) {
    if (!nnm__module_live(m)) return NNM_E_INVALID;
    if (!fn) return nnm__error(m->ctx, NNM_E_INVALID, "visitor is NULL");
    return tensors_once(m, 1, fn, user);
}

static nnm_status apply_rec(nnm_module *m, char *buf, size_t len, nnm_module_visit_fn fn,
                            void *user) {
    for (uint32_t i = 0; i < m->n_children; i++) {
        size_t nl;
        if (name_push(buf, len, m->child_names[i], &nl))
            return nnm__error(m->ctx, NNM_E_LIMIT, "module name longer than %d bytes", NNM_NAME_MAX);
        nnm_status st = apply_rec(m->children[i], buf, nl, fn, user);
        buf[len] = 0;
        if (st) return st;
    }
    return fn(user, buf, m);
}

NNM_API nnm_status nnm_module_apply(nnm_module *m, nnm_module_visit_fn fn, void *user) {
    if (!nnm__module_live(m)) return NNM_E_INVALID;
    if (!fn) return nnm__error(m->ctx, NNM_E_INVALID, "visitor is NULL");
    char buf[NAME_CAP];
    buf[0] = 0;
    return apply_rec(m, buf, 0, fn, user);
}

static int64_t own_params(const nnm_module *m) {
    int64_t n = 0;
    for (uint32_t i = 0; i < m->n_params; i++) n += nnm_tensor_numel(m->params[i].t);
    return n;
}

typedef struct counts {
    int64_t params;
    uint64_t bytes;
} counts;

static nnm_status count_param(void *user, const char *name, nnm_tensor *t) {
    (void)name;
    counts *c = user;
    c->params += nnm_tensor_numel(t);
    const uint64_t x = (uint64_t)nnm_tensor_numel(t) * nnm__dtype_size(t->desc.dtype);
    c->bytes = x > UINT64_MAX - c->bytes ? UINT64_MAX : c->bytes + x;
    return NNM_OK;
}

/* Each tensor once (sum(p.numel() for p in m.parameters()) in PyTorch). */
static int64_t count_params(nnm_module *m) {
    counts c = {0, 0};
    return tensors_once(m, 0, count_param, &c) ? -1 : c.params;
}

NNM_API int64_t nnm_module_num_params(nnm_module *m) {
    return nnm__module_live(m) ? count_params(m) : 0;
}

NNM_API uint64_t nnm_module_nbytes(nnm_module *m) {
    if (!nnm__module_live(m)) return 0;
    counts c = {0, 0};
    if (tensors_once(m, 0, count_param, &c) || tensors_once(m, 1, count_param, &c)) return UINT64_MAX;
    return c.bytes;
}

/* ---- printing ----------------------------------------------------------- */

typedef struct outbuf {
    char *buf;
    size_t cap, len;
} outbuf;

static void out_printf(outbuf *o, const char *fmt, ...) NNM__PRINTF(2, 3);
static void out_printf(outbuf *o, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(o->buf ? o->buf + (o->len < o->cap ? o->len : o->cap) : NULL,
                      o->len < o->cap ? o->cap - o->len : 0, fmt, ap);
    va_end(ap);
    if (w > 0) o->len += (size_t)w;
}

/* "linear" -> "Linear", "batch_norm" -> "BatchNorm": PyTorch's class names. */
static void class_name(const char *type, char *buf, size_t cap) {
    size_t n = 0;
    int up = 1;
    for (; *type && n + 1 < cap; type++) {
        if (*type == '_') {
            up = 1;
            continue;
        }
        buf[n++] = up ? (char)toupper((unsigned char)*type) : *type;
        up = 0;
    }
    buf[n] = 0;
}

static void repr_rec(const nnm_module *m, outbuf *o, int indent) {
    if (indent > 2 * 256) { /* a shared module is printed under each name; depth is bounded */
        out_printf(o, "...");
        return;
    }
    char cls[64], extra[512];
    if (m->vt->display_name)
        snprintf(cls, sizeof cls, "%s", m->vt->display_name);
    else
        class_name(m->vt->name, cls, sizeof cls);
    extra[0] = 0;
    if (m->vt->extra_repr) {
        int w = m->vt->extra_repr(m->self, extra, sizeof extra);
        /* the plugin's text: terminated by the host whatever it wrote, and
         * never a control character (a terminal would obey it) */
        extra[sizeof extra - 1] = 0;
        if (w < 0) extra[0] = 0;
        for (char *c = extra; *c; c++)
            if ((unsigned char)*c < 0x20 || *c == 0x7f) *c = '?';
    }
    /* As PyTorch: the extra text inline for a leaf, on its own line first
     * for a module with children. */
    out_printf(o, "%s(%s", cls, m->n_children ? "" : extra);
    if (m->n_children) {
        out_printf(o, "\n");
        if (extra[0]) out_printf(o, "%*s%s\n", indent + 2, "", extra);
        for (uint32_t i = 0; i < m->n_children; i++) {
            out_printf(o, "%*s(%s): ", indent + 2, "", m->child_names[i]);
            repr_rec(m->children[i], o, indent + 2);
            out_printf(o, "\n");
        }
        out_printf(o, "%*s)", indent, "");
    } else {
        out_printf(o, ")");
    }
    int64_t own = own_params(m);
    if (own && m->n_children == 0) out_printf(o, "  # %lld params", (long long)own);
}

NNM_API int64_t nnm_module_repr(nnm_module *m, char *buf, size_t cap) {
    if (!nnm__module_live(m)) return -1;
    outbuf o = {buf, cap, 0};
    if (buf && cap) buf[0] = 0;
    repr_rec(m, &o, 0);
    out_printf(&o, "\nTotal params: %lld\n", (long long)count_params(m));
    if (buf && cap) buf[o.len < cap ? o.len : cap - 1] = 0;
    return (int64_t)o.len;
}

/* ---- modes and devices -------------------------------------------------- */

static void set_training(nnm_module *m, int training) {
    m->training = training;
    for (uint32_t i = 0; i < m->n_children; i++) set_training(m->children[i], training);
}

NNM_API nnm_status nnm_module_train(nnm_module *m, int training) {
    if (!nnm__module_live(m)) return NNM_E_INVALID;
    set_training(m, training != 0);
    return NNM_OK;
}

NNM_API int nnm_module_is_training(const nnm_module *m) {
    return nnm__module_live(m) ? m->training : 0;
}

NNM_API nnm_device nnm_module_device(const nnm_module *m) {
    return nnm__module_live(m) ? m->device : (nnm_device){NNM_DEVICE_CPU, 0};
}

/* A device move: new storages for every tensor first, then one commit, so a
 * failure midway leaves the whole tree where it was. */
typedef struct move {
    nnm_tensor **t;
    nnm__storage **s;
    size_t n, cap;
} move;

static nnm_status collect(nnm_module *m, move *mv, nnm__seen *seen) {
    int r = first_visit(m->ctx, seen, m);
    if (r <= 0) return r < 0 ? NNM_E_NOMEM : NNM_OK;
    for (int b = 0; b < 2; b++) {
        nnm__named_tensor *v = b ? m->buffers : m->params;
        uint32_t n = b ? m->n_buffers : m->n_params;
        for (uint32_t i = 0; i < n; i++) {
            if ((r = first_visit(m->ctx, seen, v[i].t)) <= 0) { /* a shared tensor moves once */
                if (r < 0) return NNM_E_NOMEM;
                continue;
            }
            if (mv->n == mv->cap) {
                size_t cap = mv->cap ? mv->cap * 2 : 16;
                nnm_tensor **t = realloc(mv->t, cap * sizeof *t);
                if (!t) return NNM_E_NOMEM;
                mv->t = t;
                nnm__storage **s = realloc(mv->s, cap * sizeof *s);
                if (!s) return NNM_E_NOMEM;
                mv->s = s;
                mv->cap = cap;
            }
            mv->t[mv->n] = v[i].t;
            mv->s[mv->n++] = NULL;
        }
    }
    for (uint32_t i = 0; i < m->n_children; i++) {
        nnm_status st = collect(m->children[i], mv, seen);
        if (st) return st;
    }
    return NNM_OK;
}

/* A tied parameter's plugin-held tensor follows the one it is tied to. */
static void alias_follow(nnm_tensor *alias, const nnm_tensor *t) {
    if (alias->storage != t->storage) {
        t->storage->refs++;
        nnm__storage_release(alias->storage);
        alias->storage = t->storage;
    }
    alias->desc.data = t->desc.data;
    alias->desc.device = t->desc.device;
    alias->desc.byte_offset = t->desc.byte_offset;
}

static void sync_aliases(nnm_module *m) {
    for (uint32_t i = 0; i < m->n_params; i++)
        if (m->params[i].alias) alias_follow(m->params[i].alias, m->params[i].t);
    for (uint32_t i = 0; i < m->n_children; i++) sync_aliases(m->children[i]);
}

static void set_device(nnm_module *m, nnm_device dev) {
    m->device = dev;
    for (uint32_t i = 0; i < m->n_children; i++) set_device(m->children[i], dev);
}

NNM_API nnm_status nnm_module_to(nnm_module *m, nnm_device dev) {
    if (!nnm__module_live(m)) return NNM_E_INVALID;
    nnm_ctx *ctx = m->ctx;
    if (nnm__device_eq(dev, m->device)) return NNM_OK;
    if (m->parent)
        return nnm__error(ctx, NNM_E_STATE, "nnm_module_to: move the root module, not a child");
    if (m->device.type == NNM_DEVICE_META)
        return nnm__error(ctx, NNM_E_DEVICE, "nnm_module_to: a module on the meta device has no data "
                          "to move; build it on a real device");
    /* To the meta device (PyTorch's .to("meta")): the data is dropped. */
    const int to_meta = dev.type == NNM_DEVICE_META;
    if (to_meta && dev.id != 0)
        return nnm__error(ctx, NNM_E_DEVICE, "nnm_module_to: the meta device has id 0");
    nnm__backend *dst_be = NULL;
    nnm_status st = to_meta ? NNM_OK : nnm__backend_get(ctx, dev, &dst_be);
    if (st) return st;
    move mv = {0};
    nnm__seen seen = {0};
    st = collect(m, &mv, ctx->shared_links ? &seen : NULL);
    nnm__seen_free(&seen);
    if (st) {
        st = nnm__error(ctx, st, "out of memory (device move)");
        goto done;
    }
    for (size_t i = 0; i < mv.n && !st; i++) {
        nnm_tensor *t = mv.t[i];
        size_t bytes = (size_t)nnm_tensor_numel(t) * nnm__dtype_size(t->desc.dtype);
        if ((st = nnm__storage_new(ctx, dev, bytes, &mv.s[i])) || to_meta) continue;
        /* The backend of whichever side is not the CPU does the copy. */
        nnm__backend *be = dst_be;
        if (dev.type == NNM_DEVICE_CPU && (st = nnm__backend_get(ctx, t->desc.device, &be))) break;
        nnm__env env;
        nnm__env_init(&env, ctx, NULL, NNM__PHASE_BACKEND);
        st = be->vt->memcpy(&env.pub, be->state, mv.s[i]->data, dev,
                            (const char *)t->desc.data + t->desc.byte_offset, t->desc.device, bytes);
    }
    if (st) {
        for (size_t i = 0; i < mv.n; i++) nnm__storage_release(mv.s[i]);
        goto done;
    }
    for (size_t i = 0; i < mv.n; i++) {
        nnm_tensor *t = mv.t[i];
        nnm__storage_release(t->storage);
        t->storage = mv.s[i];
        t->desc.data = mv.s[i]->data;
        t->desc.device = dev;
        t->desc.byte_offset = 0;
    }
    sync_aliases(m);
    set_device(m, dev);
done:
    free(mv.t);
    free(mv.s);
    return st;
}

/* ---- declarations made by create (called through the host table) ------- */

nnm_status nnm__module_add_tensor(nnm_module *m, int buffer, const char *name, nnm_tensor *t,
                                  int persistent) {
    nnm_ctx *ctx = m->ctx;
    char nb[128];
    if (!name || !nnm__name_valid(name))
        return nnm__error(ctx, NNM_E_INVALID, "invalid %s name '%s' (%s)",
                          buffer ? "buffer" : "parameter",
                          name ? nnm__show(name, nb, sizeof nb) : "(null)", NNM__NAME_RULE);
    if (name_taken(m, name))
        return nnm__error(ctx, NNM_E_EXISTS, "'%s' is declared twice", name);
    nnm__named_tensor **v = buffer ? &m->buffers : &m->params;
    uint32_t *n = buffer ? &m->n_buffers : &m->n_params;
    uint32_t *cap = buffer ? &m->cap_buffers : &m->cap_params;
    char *copy = strdup(name);
    if (!copy) return nnm__error(ctx, NNM_E_NOMEM, "out of memory");
    if (*n == *cap) {
        uint32_t c = *cap ? *cap * 2 : 4;
        nnm__named_tensor *p = realloc(*v, c * sizeof *p);
        if (!p) {
            free(copy);
            return nnm__error(ctx, NNM_E_NOMEM, "out of memory");
        }
        *v = p;
        *cap = c;
    }
    (*v)[*n].name = copy;
    (*v)[*n].t = t;
    (*v)[*n].persistent = persistent;
    (*v)[*n].alias = NULL;
    (*n)++;
    t->flags |= buffer ? NNM__T_BUFFER : NNM__T_PARAM;
    return NNM_OK;
}

void nnm__module_set_output_names(nnm_module *m, char **names, uint32_t n) {
    for (uint32_t i = 0; i < m->n_output_names; i++) free(m->output_names[i]);
    free(m->output_names);
    m->output_names = names;
    m->n_output_names = n;
}

NNM_API const char *const *nnm_module_output_names(const nnm_module *m, uint32_t *n) {
    if (n) *n = 0;
    if (!nnm__module_live(m) || !m->n_output_names) return NULL;
    if (n) *n = m->n_output_names;
    return (const char *const *)m->output_names;
}

/* ---- replacing, removing and sharing children ------------------------------ */

static uint32_t child_slot(const nnm_module *m, const nnm_module *c) {
    for (uint32_t i = 0; i < m->n_children; i++)
        if (m->children[i] == c) return i;
    return UINT32_MAX;
}

/* Lets go of c, which m no longer lists in some slot: when m was its first
 * parent and lists it nowhere else, c becomes a root (name "", parent
 * NULL). m's reference goes. */
static void child_drop(nnm_module *m, nnm_module *c) {
    const uint32_t other = c->parent == m ? child_slot(m, c) : UINT32_MAX;
    if (other != UINT32_MAX) { /* still m's under another name: that is its name now */
        char *again = strdup(m->child_names[other]);
        if (again) {
            free(c->name);
            c->name = again;
            c->name_hash = m->child_hashes[other];
        }
    } else if (c->parent == m) {
        c->parent = NULL;
        char *root = strdup("");
        if (root) { /* out of memory: it keeps its old name, which is harmless */
            free(c->name);
            c->name = root;
            c->name_hash = nnm__name_hash("", 0);
        }
    }
    nnm_module_release(c);
}

/* Is `target` in the subtree of m (m included)? */
static int reaches(const nnm_module *m, const nnm_module *target, uint32_t depth) {
    if (m == target) return 1;
    if (depth > 4096) return 1; /* deeper than any walk can name: refuse as if a cycle */
    for (uint32_t i = 0; i < m->n_children; i++)
        if (reaches(m->children[i], target, depth + 1)) return 1;
    return 0;
}

NNM_API nnm_status nnm_module_set_child(nnm_module *parent, const char *name, nnm_module *child) {
    if (!nnm__module_live(parent)) return NNM_E_INVALID;
    nnm_ctx *ctx = parent->ctx;
    if (!name) return nnm__error(ctx, NNM_E_INVALID, "nnm_module_set_child: name is NULL");
    if (!nnm__module_live(child))
        return nnm__error(ctx, NNM_E_INVALID, "nnm_module_set_child: child is not a live module");
    if (child->ctx != ctx)
        return nnm__error(ctx, NNM_E_INVALID, "nnm_module_set_child: child is of another context");
    const uint32_t i = find_slot(parent, name, strlen(name));
    if (i == UINT32_MAX && !child->parent)
        return nnm_module_add_child(parent, name, child); /* a new attribute: appended */
    if (i != UINT32_MAX && parent->children[i] == child) return NNM_OK;
    char nb[128];
    if (!nnm__name_valid(name))
        return nnm__error(ctx, NNM_E_INVALID, "invalid child name '%s' (%s)",
                          nnm__show(name, nb, sizeof nb), NNM__NAME_RULE);
    if (i == UINT32_MAX && name_taken(parent, name))
        return nnm__error(ctx, NNM_E_EXISTS, "'%s' is already a parameter or buffer", name);
    if (reaches(child, parent, 0))
        return nnm__error(ctx, NNM_E_INVALID, "nnm_module_set_child: would make a cycle");
    if (!nnm__device_eq(child->device, parent->device))
        return nnm__error(ctx, NNM_E_DEVICE, "child '%s' is on another device than its parent",
                          name);
    const int shared = child->parent != NULL; /* already attached: now reachable twice */
    char *slot = strdup(name), *own = shared ? NULL : strdup(name);
    if (!slot || (!shared && !own) || (i == UINT32_MAX && children_reserve(parent))) {
        free(slot);
        free(own);
        return nnm__error(ctx, NNM_E_NOMEM, "out of memory");
    }
    if (!shared) { /* its first parent: it takes the slot's name, as add_child gives */
        free(child->name);
        child->name = own;
        child->name_hash = nnm__name_hash(own, strlen(own));
        child->parent = parent;
    } else {
        ctx->shared_links++; /* walks now visit each module and tensor once */
    }
    child->refs++;
    if (i == UINT32_MAX) { /* model.b = model.a: a second name for a module */
        const uint32_t n = parent->n_children;
        parent->children[n] = child;
        parent->child_names[n] = slot;
        parent->child_hashes[n] = nnm__name_hash(slot, strlen(slot));
        parent->n_children = n + 1;
        nnm__name_index_added(&parent->child_index, n + 1, parent->child_hashes, child_hash_at);
        return NNM_OK;
    }
    /* In place: the same slot, so the order of children (and a container's
     * view of them by index) is kept, as PyTorch keeps a reassigned key's
     * place in _modules. The new child keeps its own hooks and its own
     * training flag, as in PyTorch (call nnm_module_train on the parent to
     * set the whole tree again). The slot's name and hash are unchanged. */
    free(slot);
    nnm_module *old = parent->children[i];
    parent->children[i] = child;
    child_drop(parent, old);
    return NNM_OK;
}

NNM_API nnm_status nnm_module_del_child(nnm_module *parent, const char *name) {
    if (!nnm__module_live(parent)) return NNM_E_INVALID;
    nnm_ctx *ctx = parent->ctx;
    if (!name) return nnm__error(ctx, NNM_E_INVALID, "nnm_module_del_child: name is NULL");
    const uint32_t i = find_slot(parent, name, strlen(name));
    if (i == UINT32_MAX) {
        char nb[128];
        return nnm__error(ctx, NNM_E_NOT_FOUND, "nnm_module_del_child: no child named '%s'",
                          nnm__show(name, nb, sizeof nb));
    }
    nnm_module *c = parent->children[i];
    free(parent->child_names[i]);
    const uint32_t after = parent->n_children - i - 1;
    memmove(parent->children + i, parent->children + i + 1, after * sizeof *parent->children);
    memmove(parent->child_names + i, parent->child_names + i + 1, after * sizeof *parent->child_names);
    memmove(parent->child_hashes + i, parent->child_hashes + i + 1, after * sizeof *parent->child_hashes);
    parent->n_children--;
    /* The others keep their names (like delattr; Sequential's del seq[i],
     * which renumbers, is a container's business). The index is rebuilt. */
    nnm__name_index_free(&parent->child_index);
    nnm__name_index_added(&parent->child_index, parent->n_children, parent->child_hashes,
                          child_hash_at);
    child_drop(parent, c);
    return NNM_OK;
}

/* ---- requires_grad_ over a subtree ---------------------------------------- */

static nnm_status set_rg(nnm_module *m, int flag) {
    for (uint32_t i = 0; i < m->n_params; i++) {
        nnm_status st = nnm_tensor_set_requires_grad(m->params[i].t, flag);
        if (!st && m->params[i].alias) st = nnm_tensor_set_requires_grad(m->params[i].alias, flag);
        if (st) return st;
    }
    for (uint32_t i = 0; i < m->n_children; i++) {
        nnm_status st = set_rg(m->children[i], flag);
        if (st) return st;
    }
    return NNM_OK;
}

NNM_API nnm_status nnm_module_requires_grad_(nnm_module *m, int requires_grad) {
    if (!nnm__module_live(m)) return NNM_E_INVALID;
    return set_rg(m, requires_grad != 0);
}

/* ---- tied parameters (dec.weight = enc.weight) ------------------------------ */

NNM_API nnm_status nnm_module_set_parameter(nnm_module *m, const char *name, nnm_tensor *param) {
    if (!nnm__module_live(m)) return NNM_E_INVALID;
    nnm_ctx *ctx = m->ctx;
    if (!name || !param) return nnm__error(ctx, NNM_E_INVALID, "nnm_module_set_parameter: NULL argument");
    char nb[128];
    nnm__named_tensor *e = NULL;
    for (uint32_t i = 0; i < m->n_params && !e; i++)
        if (strcmp(m->params[i].name, name) == 0) e = &m->params[i];
    if (!e)
        return nnm__error(ctx, NNM_E_NOT_FOUND, "nnm_module_set_parameter: no parameter '%s' in this %s",
                          nnm__show(name, nb, sizeof nb), m->vt->name);
    if (param->ctx != ctx || !(param->flags & NNM__T_PARAM))
        return nnm__error(ctx, NNM_E_INVALID, "nnm_module_set_parameter: the tensor is not a parameter "
                          "of a module of this context");
    while (param->tied) param = param->tied;
    nnm_tensor *held = e->alias ? e->alias : e->t; /* what the layer computes with */
    if (param == e->t) return NNM_OK;
    char a[160], b[160];
    nnm__shape_str(&held->desc, a, sizeof a);
    nnm__shape_str(&param->desc, b, sizeof b);
    int same = held->desc.ndim == param->desc.ndim &&
               held->desc.dtype.code == param->desc.dtype.code &&
               held->desc.dtype.bits == param->desc.dtype.bits;
    for (int32_t d = 0; same && d < held->desc.ndim; d++) same = held->shape[d] == param->shape[d];
    if (!same) /* the layer was made for its own shape */
        return nnm__error(ctx, NNM_E_SHAPE, "nnm_module_set_parameter: '%s' is %s; cannot tie it to a "
                          "parameter of shape %s (or another dtype)", nnm__show(name, nb, sizeof nb), a, b);
    if (!nnm__device_eq(held->desc.device, param->desc.device))
        return nnm__error(ctx, NNM_E_DEVICE, "nnm_module_set_parameter: '%s' is on another device",
                          nnm__show(name, nb, sizeof nb));
    if (param == held) { /* tied back to its own tensor: untied */
        nnm_tensor_release(e->t);
        e->t = held;
        e->alias = NULL;
        nnm_tensor_release(held->tied);
        held->tied = NULL;
        return NNM_OK;
    }
    nnm_tensor_retain(param);
    if (e->alias)
        nnm_tensor_release(e->t);
    else
        e->alias = held; /* the entry's reference moves to alias */
    e->t = param;
    /* the layer's tensor becomes a view of param: same memory, its flag, no
     * .grad of its own; autograd records param in its place */
    alias_follow(held, param);
    nnm_tensor_release(held->tied);
    nnm_tensor_retain(param);
    held->tied = param;
    nnm_tensor_release(held->grad);
    held->grad = NULL;
    held->flags = (held->flags & ~NNM__T_REQUIRES_GRAD) | (param->flags & NNM__T_REQUIRES_GRAD);
    ctx->shared_links++; /* walks now visit each tensor once */
    return NNM_OK;
}
