/* runtime/state/checkpoint.c - checkpoints: a module's state dict, its optimizer's
 * state and user metadata in one safetensors file, for resuming training
 * exactly.
 *
 * File layout (one safetensors file, written atomically by
 * nnm_safetensors_write):
 *
 *   <state dict key>                  every parameter and persistent buffer of
 *                                     the module, as nnm_module_save writes them
 *   optim.<param key>.<state>         the optimizer's state tensors (F32), where
 *                                     <param key> is the parameter's state dict
 *                                     key and <state> one of momentum_buffer
 *                                     (SGD), exp_avg, exp_avg_sq, max_exp_avg_sq
 *                                     (Adam/AdamW), step ([1], Adam/AdamW).
 *                                     A parameter that has not stepped yet has
 *                                     none (PyTorch's lazy state).
 *   __metadata__:
 *     nnmod_checkpoint                "1" (this layout's version)
 *     nnmod_optim                     JSON, when an optimizer was saved:
 *        {"version": 1, "kind": "sgd" | "adam" | "adamw", "stepped": bool,
 *         "groups": [{"lr": x, "weight_decay": x,
 *                     SGD: "momentum": x, "dampening": x, "nesterov": bool,
 *                     Adam: "betas": [b1, b2], "eps": x, "amsgrad": bool,
 *                     "params": [<param key>, ...]}, ...],
 *         "steps": {<param key>: <updates taken, exact int64>, ...}}
 *        (doubles printed with 17 significant digits: they round-trip
 *        exactly). The step count lives here for every kind: SGD's first
 *        step (buffer = grad) depends on it, and Adam's f32 `step` tensor
 *        only mirrors it.
 *     nnmod_manifest_sha256           nnm_manifest_hash of the manifest given, or of
 *                                     the one m was built from
 *     nnmod_version                   written by the safetensors writer
 *     user pairs                      any key not starting with "nnmod"
 *
 * Loading validates everything (the file, module keys, shapes, the
 * optimizer's kind, groups, parameters, steps and state tensors) and builds
 * the new optimizer state before it changes anything; then it copies the
 * module's tensors and swaps the optimizer's state in. Only a device copy
 * failing halfway (not possible on the CPU) can leave the module partly
 * loaded; the optimizer is then left as it was.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define CK_FORMAT "1"
#define CK_OPTIM_VERSION 1
#define CK_META_FORMAT "nnmod_checkpoint"
#define CK_META_OPTIM "nnmod_optim"
#define CK_META_MANIFEST "nnmod_manifest_sha256"
#define CK_RESERVED "nnmod"
#define CK_PREFIX "optim."
#define CK_NAME_CAP 1280   /* "optim." + a state dict key (<= 1024) + "." + state */
#define CK_SHOW 160        /* bytes of a name quoted in a message */
#define CK_SHOW_PATH 256
#define CK_MAX_STEPS ((json_int_t)1 << 53) /* per parameter */

static const char *const kind_names[] = {"sgd", "adam", "adamw"};

/* ---- small helpers ------------------------------------------------------- */

/* An error whose message starts with the (bounded) path. */
static nnm_status ck_fail(nnm_ctx *ctx, nnm_status code, const char *path, const char *fmt, ...)
    NNM__PRINTF(4, 5);
static nnm_status ck_fail(nnm_ctx *ctx, nnm_status code, const char *path, const char *fmt, ...) {
    char msg[NNM__ERRMSG_CAP], pb[CK_SHOW_PATH];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return nnm__error(ctx, code, "%s: %s", nnm__show(path, pb, sizeof pb), msg);
}

/* A bounded message builder. */
typedef struct ck_msg {
    char buf[NNM__ERRMSG_CAP - CK_SHOW_PATH - 16];
    size_t len;
    int dropped;
} ck_msg;

static void msg_add(ck_msg *mb, const char *fmt, ...) NNM__PRINTF(2, 3);
static void msg_add(ck_msg *mb, const char *fmt, ...) {
    char tmp[CK_NAME_CAP + 256];
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (w < 0) return;
    size_t n = strlen(tmp);
    if (mb->dropped || mb->len + n + 16 >= sizeof mb->buf) { /* room for " (and more)" */
        mb->dropped = 1;
        return;
    }
    memcpy(mb->buf + mb->len, tmp, n + 1);
    mb->len += n;
}

static int is_f32(nnm_dtype d) { return d.code == NNM_DTYPE_FLOAT && d.bits == 32 && d.lanes == 1; }

/* ---- the module's state dict ------------------------------------------- */

typedef struct ck_key {
    char *name;
    nnm_tensor *t;         /* borrowed from the module */
    int64_t file_idx;      /* entry in the file, -1 if missing */
} ck_key;

typedef struct ck_keys {
    nnm_ctx *ctx;
    ck_key *v;
    size_t n, cap;
    /* (tensor, key index) sorted by tensor, for naming optimizer parameters */
    struct ck_by_tensor {
        uintptr_t t;
        size_t idx;
    } *by_t;
} ck_keys;

static nnm_status keys_push(void *user, const char *name, nnm_tensor *t) {
    ck_keys *k = user;
    if (k->n == k->cap) {
        size_t cap = k->cap ? 2 * k->cap : 16;
        ck_key *v = realloc(k->v, cap * sizeof *v);
        if (!v) return nnm__error(k->ctx, NNM_E_NOMEM, "out of memory (checkpoint)");
        k->v = v;
        k->cap = cap;
    }
    char *copy = malloc(strlen(name) + 1);
    if (!copy) return nnm__error(k->ctx, NNM_E_NOMEM, "out of memory (checkpoint)");
    strcpy(copy, name);
    k->v[k->n].name = copy;
    k->v[k->n].t = t;
    k->v[k->n].file_idx = -1;
    k->n++;
    return NNM_OK;
}

static void keys_free(ck_keys *k) {
    for (size_t i = 0; i < k->n; i++) free(k->v[i].name);
    free(k->v);
    free(k->by_t);
}

static int cmp_by_tensor(const void *a, const void *b) {
    const struct ck_by_tensor *x = a, *y = b;
    if (x->t != y->t) return x->t < y->t ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static nnm_status keys_collect(nnm_module *m, ck_keys *k) {
    k->ctx = m->ctx;
    nnm_status st = nnm__state_dict_visit(m, keys_push, k);
    if (st) return st;
    k->by_t = malloc((k->n ? k->n : 1) * sizeof *k->by_t);
    if (!k->by_t) return nnm__error(k->ctx, NNM_E_NOMEM, "out of memory (checkpoint)");
    for (size_t i = 0; i < k->n; i++) {
        k->by_t[i].t = (uintptr_t)k->v[i].t;
        k->by_t[i].idx = i;
    }
    qsort(k->by_t, k->n, sizeof *k->by_t, cmp_by_tensor);
    return NNM_OK;
}

/* The first state dict key naming tensor t (a shared parameter has several;
 * the first is the one named_parameters keeps), or NULL. */
static const char *keys_name_of(const ck_keys *k, const nnm_tensor *t) {
    size_t lo = 0, hi = k->n;
    uintptr_t want = (uintptr_t)t;
    while (lo < hi) { /* lower bound */
        size_t mid = lo + (hi - lo) / 2;
        if (k->by_t[mid].t < want)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < k->n && k->by_t[lo].t == want ? k->v[k->by_t[lo].idx].name : NULL;
}

/* ---- the optimizer's parameters, named by the module's keys ------------- */

typedef struct ck_optim {
    nnm__optim_info info;
    nnm__optim_pstate *ps;      /* n_params, the optimizer's order */
    const char **names;         /* state dict keys (borrowed from ck_keys) */
    struct ck_by_name {
        const char *name;
        uint32_t idx;
    } *by_name;                 /* sorted by name */
} ck_optim;

static void ck_optim_free(ck_optim *o) {
    free(o->ps);
    free(o->names);
    free(o->by_name);
}

static int cmp_by_name(const void *a, const void *b) {
    return strcmp(((const struct ck_by_name *)a)->name, ((const struct ck_by_name *)b)->name);
}

/* Reads opt's parameters and names each by its key in m's state dict. */
static nnm_status ck_optim_read(nnm_ctx *ctx, const char *who, nnm_optim *opt, const ck_keys *k,
                                ck_optim *o) {
    memset(o, 0, sizeof *o);
    nnm__optim_info_get(opt, &o->info);
    char nb[CK_SHOW];
    if (o->info.ctx != ctx)
        return nnm__error(ctx, NNM_E_INVALID, "%s: the optimizer belongs to another context", who);
    uint32_t n = o->info.n_params;
    o->ps = malloc((n ? n : 1) * sizeof *o->ps);
    o->names = malloc((n ? n : 1) * sizeof *o->names);
    o->by_name = malloc((n ? n : 1) * sizeof *o->by_name);
    if (!o->ps || !o->names || !o->by_name)
        return nnm__error(ctx, NNM_E_NOMEM, "out of memory (checkpoint)");
    for (uint32_t i = 0; i < n; i++) {
        nnm__optim_param_get(opt, i, &o->ps[i]);
        o->names[i] = keys_name_of(k, o->ps[i].param);
        if (!o->names[i])
            return nnm__error(ctx, NNM_E_INVALID,
                              "%s: the optimizer's parameter '%s' is not in the module's state "
                              "dict (was the optimizer made over another module?)",
                              who, nnm__show(o->ps[i].name, nb, sizeof nb));
        o->by_name[i].name = o->names[i];
        o->by_name[i].idx = i;
    }
    qsort(o->by_name, n, sizeof *o->by_name, cmp_by_name);
    return NNM_OK;
}

/* The optimizer's index of the parameter keyed `name`, or -1. */
static int64_t ck_optim_find(const ck_optim *o, const char *name) {
    size_t lo = 0, hi = o->info.n_params;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(o->by_name[mid].name, name);
        if (c == 0) return o->by_name[mid].idx;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

static int state_name(char *buf, const char *key, int slot) {
    int w = snprintf(buf, CK_NAME_CAP, CK_PREFIX "%s.%s", key, nnm__optim_slot_names[slot]);
    return w > 0 && w < CK_NAME_CAP;
}

/* ---- saving ------------------------------------------------------------- */

/* Sets o[key] = v (v may be NULL: failure); the reference to v is taken. */
static int jset(json_t *o, const char *key, json_t *v) {
    return v ? json_object_set_new(o, key, v) : -1;
}

static json_t *jnum(double x) { return isfinite(x) ? json_real(x) : NULL; }

/* The nnmod_optim document (a malloc'd string) or NULL on failure. */
static char *optim_json(const ck_optim *o, nnm_optim *opt) {
    const nnm__optim_info *in = &o->info;
    json_t *root = json_object(), *groups = json_array(), *steps = json_object();
    int bad = !root || !groups || !steps;
    bad = bad || jset(root, "version", json_integer(CK_OPTIM_VERSION));
    bad = bad || jset(root, "kind", json_string(kind_names[in->kind]));
    bad = bad || jset(root, "stepped", json_boolean(in->stepped));
    for (uint32_t g = 0; !bad && g < in->n_groups; g++) {
        double lr, wd;
        nnm__optim_group_get(opt, g, &lr, &wd);
        json_t *jg = json_object();
        if (!jg || json_array_append_new(groups, jg)) { /* takes jg, even on failure */
            bad = 1;
            break;
        }
        bad = jset(jg, "lr", jnum(lr)) || jset(jg, "weight_decay", jnum(wd));
        if (in->kind == NNM__OPTIM_SGD) {
            bad = bad || jset(jg, "momentum", jnum(in->momentum)) ||
                  jset(jg, "dampening", jnum(in->dampening)) ||
                  jset(jg, "nesterov", json_boolean(in->nesterov));
        } else {
            json_t *betas = NULL;
            bad = bad || !(betas = json_array()) || jset(jg, "betas", betas) ||
                  json_array_append_new(betas, jnum(in->beta1)) ||
                  json_array_append_new(betas, jnum(in->beta2)) ||
                  jset(jg, "eps", jnum(in->eps)) || jset(jg, "amsgrad", json_boolean(in->amsgrad));
        }
        json_t *params = NULL;
        bad = bad || !(params = json_array()) || jset(jg, "params", params);
        for (uint32_t i = 0; !bad && i < in->n_params; i++)
            if (o->ps[i].group == g) bad = json_array_append_new(params, json_string(o->names[i]));
    }
    for (uint32_t i = 0; !bad && i < in->n_params; i++)
        bad = jset(steps, o->names[i], json_integer((json_int_t)o->ps[i].step));
    char *text = NULL;
    if (!bad) {
        int r1 = json_object_set_new(root, "groups", groups);
        int r2 = json_object_set_new(root, "steps", steps);
        groups = steps = NULL;
        if (!r1 && !r2) text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    }
    json_decref(groups);
    json_decref(steps);
    json_decref(root);
    return text;
}

NNM_API nnm_status nnm_checkpoint_save(const char *path, nnm_module *m, nnm_optim *opt,
                                       const nnm_manifest *manifest, uint32_t n_meta,
                                       const nnm_kv *meta) {
    static const char who[] = "nnm_checkpoint_save";
    if (!nnm__module_live(m)) return NNM_E_INVALID;
    nnm_ctx *ctx = m->ctx;
    if (!path) return nnm__error(ctx, NNM_E_INVALID, "%s: path is NULL", who);
    if (n_meta && !meta) return nnm__error(ctx, NNM_E_INVALID, "%s: meta is NULL", who);
    char nb[CK_SHOW];
    for (uint32_t i = 0; i < n_meta; i++) {
        if (!meta[i].key || !meta[i].value)
            return ck_fail(ctx, NNM_E_INVALID, path, "metadata pair %u has a NULL key or value",
                           (unsigned)i);
        if (strncmp(meta[i].key, CK_RESERVED, strlen(CK_RESERVED)) == 0)
            return ck_fail(ctx, NNM_E_INVALID, path,
                           "metadata key '%s' is reserved (keys starting with \"" CK_RESERVED
                           "\" are the library's)",
                           nnm__show(meta[i].key, nb, sizeof nb));
    }
    if (n_meta > UINT32_MAX - 3) return ck_fail(ctx, NNM_E_LIMIT, path, "too many metadata pairs");

    ck_keys k = {0};
    ck_optim o = {0};
    const char **names = NULL;
    char **owned = NULL;        /* the "optim.*" names */
    size_t n_owned = 0;
    nnm_tensor **tensors = NULL;
    nnm_kv *kv = NULL;
    char *optim_text = NULL;
    char mhash[65];
    nnm_status st = keys_collect(m, &k);
    if (st) goto done;
    size_t n_state = 0;
    if (opt) {
        if ((st = ck_optim_read(ctx, who, opt, &k, &o))) goto done;
        for (uint32_t i = 0; i < o.info.n_params; i++)
            for (int s = 0; s < NNM__OPTIM_SLOTS; s++) n_state += o.ps[i].slot[s] != NULL;
    }
    size_t total = k.n + n_state;
    if (total > UINT32_MAX) {
        st = ck_fail(ctx, NNM_E_LIMIT, path, "too many tensors for one file");
        goto done;
    }
    names = malloc((total ? total : 1) * sizeof *names);
    tensors = malloc((total ? total : 1) * sizeof *tensors);
    owned = calloc(n_state ? n_state : 1, sizeof *owned);
    kv = malloc(((size_t)n_meta + 3) * sizeof *kv);
    if (!names || !tensors || !owned || !kv) {
        st = nnm__error(ctx, NNM_E_NOMEM, "out of memory (checkpoint)");
        goto done;
    }
    for (size_t i = 0; i < k.n; i++) {
        names[i] = k.v[i].name;
        tensors[i] = k.v[i].t;
    }
    size_t at = k.n;
    for (uint32_t i = 0; opt && i < o.info.n_params; i++)
        for (int s = 0; s < NNM__OPTIM_SLOTS; s++) {
            if (!o.ps[i].slot[s]) continue;
            char buf[CK_NAME_CAP];
            if (!state_name(buf, o.names[i], s)) {
                st = ck_fail(ctx, NNM_E_LIMIT, path, "state name of '%s' is too long",
                             nnm__show(o.names[i], nb, sizeof nb));
                goto done;
            }
            if (!(owned[n_owned] = malloc(strlen(buf) + 1))) {
                st = nnm__error(ctx, NNM_E_NOMEM, "out of memory (checkpoint)");
                goto done;
            }
            strcpy(owned[n_owned], buf);
            names[at] = owned[n_owned++];
            tensors[at++] = o.ps[i].slot[s];
        }

    uint32_t nkv = 0;
    for (uint32_t i = 0; i < n_meta; i++) kv[nkv++] = meta[i];
    kv[nkv++] = (nnm_kv){CK_META_FORMAT, CK_FORMAT};
    if (opt) {
        if (!(optim_text = optim_json(&o, opt))) {
            st = ck_fail(ctx, NNM_E_INVALID, path,
                         "cannot describe the optimizer as JSON (out of memory, or a "
                         "hyper-parameter is not finite)");
            goto done;
        }
        kv[nkv++] = (nnm_kv){CK_META_OPTIM, optim_text};
    }
    if (manifest) {
        if ((st = nnm_manifest_hash(manifest, mhash))) {
            st = ck_fail(ctx, st, path, "hashing the manifest failed: %s", nnm_status_str(st));
            goto done;
        }
        kv[nkv++] = (nnm_kv){CK_META_MANIFEST, mhash};
    } else if (m->manifest_sha256) { /* a root built from a manifest knows it */
        kv[nkv++] = (nnm_kv){CK_META_MANIFEST, m->manifest_sha256};
    }
    st = nnm_safetensors_write(ctx, path, (uint32_t)total, names, tensors, nkv, kv);
done:
    free(optim_text);
    free(kv);
    if (owned)
        for (size_t i = 0; i < n_owned; i++) free(owned[i]);
    free(owned);
    free(tensors);
    free(names);
    ck_optim_free(&o);
    keys_free(&k);
    return st;
}

/* ---- loading: the optimizer's part -------------------------------------- */

/* The restored optimizer, built before anything changes. */
typedef struct ck_plan {
    nnm__optim_info info;       /* hyper-parameters from the file */
    double *lr, *wd;            /* per group */
    nnm__optim_pstate *ps;      /* per parameter: step and the NEW slot tensors (owned) */
    int64_t (*idx)[NNM__OPTIM_SLOTS]; /* file entry per slot, -1: none */
} ck_plan;

static void plan_free(ck_plan *p, uint32_t n_params) {
    if (p->ps)
        for (uint32_t i = 0; i < n_params; i++)
            for (int s = 0; s < NNM__OPTIM_SLOTS; s++) nnm_tensor_release(p->ps[i].slot[s]);
    free(p->ps);
    free(p->idx);
    free(p->lr);
    free(p->wd);
}

/* A finite number >= lo (or any finite number when lo is -INFINITY). */
static int get_num(const json_t *o, const char *key, double lo, double *out) {
    const json_t *v = json_object_get(o, key);
    if (!v || !json_is_number(v)) return 0;
    double x = json_number_value(v);
    if (!isfinite(x) || x < lo) return 0;
    *out = x;
    return 1;
}

static int get_bool(const json_t *o, const char *key, int *out) {
    const json_t *v = json_object_get(o, key);
    if (!v || !json_is_boolean(v)) return 0;
    *out = json_is_true(v);
    return 1;
}

/* Reads one group's shared hyper-parameters into h (the first group) or
 * checks them against h (the others). */
static nnm_status parse_shared(nnm_ctx *ctx, const char *path, const json_t *jg, uint32_t g,
                               nnm__optim_info *h) {
    nnm__optim_info x = *h;
    const char *bad = NULL;
    if (h->kind == NNM__OPTIM_SGD) {
        if (!get_num(jg, "momentum", 0.0, &x.momentum))
            bad = "momentum";
        else if (!get_num(jg, "dampening", -INFINITY, &x.dampening))
            bad = "dampening";
        else if (!get_bool(jg, "nesterov", &x.nesterov))
            bad = "nesterov";
        else if (x.nesterov && (x.momentum <= 0.0 || x.dampening != 0.0))
            bad = "nesterov (needs a momentum and zero dampening)";
    } else {
        const json_t *b = json_object_get(jg, "betas");
        double b1, b2;
        if (!json_is_array(b) || json_array_size(b) != 2 ||
            !json_is_number(json_array_get(b, 0)) || !json_is_number(json_array_get(b, 1)) ||
            !((b1 = json_number_value(json_array_get(b, 0))) >= 0.0 && b1 < 1.0) ||
            !((b2 = json_number_value(json_array_get(b, 1))) >= 0.0 && b2 < 1.0))
            bad = "betas";
        else if (!get_num(jg, "eps", 0.0, &x.eps))
            bad = "eps";
        else if (!get_bool(jg, "amsgrad", &x.amsgrad))
            bad = "amsgrad";
        else {
            x.beta1 = b1;
            x.beta2 = b2;
        }
    }
    if (bad)
        return ck_fail(ctx, NNM_E_INVALID, path,
                       CK_META_OPTIM ": groups[%u].%s is missing or invalid", (unsigned)g, bad);
    if (g == 0) {
        *h = x;
        return NNM_OK;
    }
    if (x.momentum != h->momentum || x.dampening != h->dampening || x.nesterov != h->nesterov ||
        x.beta1 != h->beta1 || x.beta2 != h->beta2 || x.eps != h->eps || x.amsgrad != h->amsgrad)
        return ck_fail(ctx, NNM_E_UNSUPPORTED, path,
                       CK_META_OPTIM ": groups[%u] differs from groups[0] in a hyper-parameter "
                       "other than lr and weight_decay (nnmod shares those across groups)",
                       (unsigned)g);
    return NNM_OK;
}

/* Is slot s a state of this kind of optimizer? */
static int slot_valid(const nnm__optim_info *h, int s) {
    if (h->kind == NNM__OPTIM_SGD) return s == 0;
    if (s == 3) return h->amsgrad;
    return s != 0;
}

/* Is slot s required for a parameter that has taken `step` updates? */
static int slot_required(const nnm__optim_info *h, int s, int64_t step) {
    if (step == 0) return 0;
    if (h->kind == NNM__OPTIM_SGD) return s == 0 && h->momentum != 0.0;
    return slot_valid(h, s);
}

/* Validates the nnmod_optim document and the optimizer's tensors against
 * `o`, marks the file entries it uses, and fills plan (no tensors yet). */
static nnm_status plan_optim(nnm_ctx *ctx, const char *path, const nnm_safetensors *st,
                             const char *text, const ck_optim *o, unsigned char *used,
                             ck_plan *plan) {
    char nb[CK_SHOW];
    nnm_status rc = NNM_OK;
    uint32_t n = o->info.n_params, ng = o->info.n_groups;
    json_error_t je;
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return ck_fail(ctx, NNM_E_INVALID, path, CK_META_OPTIM " is not valid JSON: %s (line %d)",
                       nnm__show(je.text, nb, sizeof nb), je.line);
    plan->info = o->info;
    plan->lr = malloc(ng * sizeof *plan->lr);
    plan->wd = malloc(ng * sizeof *plan->wd);
    plan->ps = calloc(n ? n : 1, sizeof *plan->ps);
    plan->idx = malloc((n ? n : 1) * sizeof *plan->idx);
    uint32_t *group_of = malloc((n ? n : 1) * sizeof *group_of);
    if (!plan->lr || !plan->wd || !plan->ps || !plan->idx || !group_of) {
        rc = nnm__error(ctx, NNM_E_NOMEM, "out of memory (checkpoint)");
        goto done;
    }
    for (uint32_t i = 0; i < n; i++) group_of[i] = UINT32_MAX;

    const json_t *jv = json_object_get(root, "version");
    if (!json_is_object(root) || !json_is_integer(jv)) {
        rc = ck_fail(ctx, NNM_E_INVALID, path, CK_META_OPTIM " has no integer \"version\"");
        goto done;
    }
    if (json_integer_value(jv) != CK_OPTIM_VERSION) {
        rc = ck_fail(ctx, NNM_E_VERSION, path,
                     CK_META_OPTIM " version %lld is not supported (this library reads %d)",
                     (long long)json_integer_value(jv), CK_OPTIM_VERSION);
        goto done;
    }
    const char *kind = json_string_value(json_object_get(root, "kind"));
    if (!kind) {
        rc = ck_fail(ctx, NNM_E_INVALID, path, CK_META_OPTIM " has no \"kind\"");
        goto done;
    }
    if (strcmp(kind, kind_names[o->info.kind]) != 0) {
        rc = ck_fail(ctx, NNM_E_INVALID, path, "the optimizer in the file is %s, this one is %s",
                     nnm__show(kind, nb, sizeof nb), kind_names[o->info.kind]);
        goto done;
    }
    if (!get_bool(root, "stepped", &plan->info.stepped)) {
        rc = ck_fail(ctx, NNM_E_INVALID, path,
                     CK_META_OPTIM ".stepped is missing or not a boolean");
        goto done;
    }

    /* Groups: the same number, each over the same parameters. */
    const json_t *groups = json_object_get(root, "groups");
    if (!json_is_array(groups) || json_array_size(groups) == 0) {
        rc = ck_fail(ctx, NNM_E_INVALID, path, CK_META_OPTIM ".groups is missing or empty");
        goto done;
    }
    if (json_array_size(groups) != ng) {
        rc = ck_fail(ctx, NNM_E_INVALID, path,
                     "the optimizer in the file has %zu parameter group(s), this one %u "
                     "(add the same groups before loading)",
                     json_array_size(groups), (unsigned)ng);
        goto done;
    }
    for (uint32_t g = 0; g < ng; g++) {
        const json_t *jg = json_array_get(groups, g);
        if (!json_is_object(jg)) {
            rc = ck_fail(ctx, NNM_E_INVALID, path, CK_META_OPTIM ".groups[%u] is not an object",
                         (unsigned)g);
            goto done;
        }
        const int lr_ok = get_num(jg, "lr", 0.0, &plan->lr[g]);
        if (!lr_ok || !get_num(jg, "weight_decay", 0.0, &plan->wd[g])) {
            rc = ck_fail(ctx, NNM_E_INVALID, path,
                         CK_META_OPTIM ".groups[%u].%s is missing or invalid (a finite number "
                         ">= 0)", (unsigned)g, lr_ok ? "weight_decay" : "lr");
            goto done;
        }
        if ((rc = parse_shared(ctx, path, jg, g, &plan->info))) goto done;
        const json_t *params = json_object_get(jg, "params");
        if (!json_is_array(params)) {
            rc = ck_fail(ctx, NNM_E_INVALID, path, CK_META_OPTIM ".groups[%u].params is not a list",
                         (unsigned)g);
            goto done;
        }
        for (size_t j = 0; j < json_array_size(params); j++) {
            const char *pn = json_string_value(json_array_get(params, j));
            int64_t i = pn ? ck_optim_find(o, pn) : -1;
            if (!pn) {
                rc = ck_fail(ctx, NNM_E_INVALID, path,
                             CK_META_OPTIM ".groups[%u].params[%zu] is not a string",
                             (unsigned)g, j);
                goto done;
            }
            if (i < 0) {
                rc = ck_fail(ctx, NNM_E_NOT_FOUND, path,
                             "the optimizer in the file has a parameter '%s' that this one lacks",
                             nnm__show(pn, nb, sizeof nb));
                goto done;
            }
            if (group_of[i] != UINT32_MAX) {
                rc = ck_fail(ctx, NNM_E_INVALID, path,
                             CK_META_OPTIM ": parameter '%s' is listed twice",
                             nnm__show(pn, nb, sizeof nb));
                goto done;
            }
            if (o->ps[i].group != g) {
                rc = ck_fail(ctx, NNM_E_INVALID, path,
                             "parameter '%s' is in group %u in the file but in group %u here "
                             "(add the same groups before loading)",
                             nnm__show(pn, nb, sizeof nb), (unsigned)g, (unsigned)o->ps[i].group);
                goto done;
            }
            group_of[i] = g;
        }
    }
    for (uint32_t i = 0; i < n; i++)
        if (group_of[i] == UINT32_MAX) {
            rc = ck_fail(ctx, NNM_E_NOT_FOUND, path,
                         "this optimizer's parameter '%s' is not in the optimizer in the file",
                         nnm__show(o->names[i], nb, sizeof nb));
            goto done;
        }

    /* Steps: one exact count per parameter, nothing else. */
    const json_t *steps = json_object_get(root, "steps");
    if (!json_is_object(steps) || json_object_size(steps) != n) {
        rc = ck_fail(ctx, NNM_E_INVALID, path,
                     CK_META_OPTIM ".steps is missing or does not have one count per parameter");
        goto done;
    }
    for (uint32_t i = 0; i < n; i++) {
        const json_t *js = json_object_get(steps, o->names[i]);
        if (!json_is_integer(js)) {
            rc = ck_fail(ctx, NNM_E_INVALID, path,
                         CK_META_OPTIM ".steps: no valid count for '%s'",
                         nnm__show(o->names[i], nb, sizeof nb));
            goto done;
        }
        /* A count from a file: 0 to 2^53 (exact in a double, and far from
         * the int64 overflow the next step would hit at 2^63 - 1). */
        if (json_integer_value(js) < 0 || json_integer_value(js) > CK_MAX_STEPS) {
            rc = ck_fail(ctx, NNM_E_INVALID, path,
                         CK_META_OPTIM ".steps['%s'] is %lld: expected a step count from 0 to "
                         "2^53", nnm__show(o->names[i], nb, sizeof nb),
                         (long long)json_integer_value(js));
            goto done;
        }
        plan->ps[i].step = (int64_t)json_integer_value(js);
        plan->ps[i].param = o->ps[i].param;
        plan->ps[i].name = o->ps[i].name;
        plan->ps[i].group = o->ps[i].group;
    }

    /* State tensors: exact f32 of the parameter's shape ([1] for step). */
    for (uint32_t i = 0; i < n; i++) {
        const nnm_tensor *p = o->ps[i].param;
        for (int s = 0; s < NNM__OPTIM_SLOTS; s++) {
            plan->idx[i][s] = -1;
            char key[CK_NAME_CAP];
            if (!state_name(key, o->names[i], s)) {
                rc = ck_fail(ctx, NNM_E_LIMIT, path, "state name of '%s' is too long",
                             nnm__show(o->names[i], nb, sizeof nb));
                goto done;
            }
            int64_t fi = slot_valid(&plan->info, s) ? nnm__safetensors_lookup(st, key) : -1;
            if (fi < 0) {
                if (slot_required(&plan->info, s, plan->ps[i].step)) {
                    rc = ck_fail(ctx, NNM_E_NOT_FOUND, path,
                                 "'%s' is missing (the parameter has taken %lld step(s))",
                                 nnm__show(key, nb, sizeof nb), (long long)plan->ps[i].step);
                    goto done;
                }
                continue; /* an entry of a slot not valid here stays unused: unexpected */
            }
            nnm_st_entry e;
            e.struct_size = sizeof e;
            nnm_safetensors_entry(st, (uint32_t)fi, &e);
            int ok = is_f32(e.dtype);
            if (s == 4)
                ok = ok && e.ndim == 1 && e.shape[0] == 1;
            else
                ok = ok && e.ndim == p->desc.ndim;
            for (int32_t d = 0; ok && s != 4 && d < e.ndim; d++)
                ok = e.shape[d] == p->desc.shape[d];
            if (!ok) {
                char fs[128], ps[128];
                nnm_tensor_desc fd;
                memset(&fd, 0, sizeof fd);
                fd.ndim = e.ndim;
                fd.shape = (int64_t *)e.shape;
                nnm__shape_str(&fd, fs, sizeof fs);
                if (s == 4)
                    snprintf(ps, sizeof ps, "[1]");
                else
                    nnm__shape_str(&p->desc, ps, sizeof ps);
                rc = ck_fail(ctx, NNM_E_SHAPE, path, "'%s': file %s %s, want %s F32",
                             nnm__show(key, nb, sizeof nb), fs, e.dtype_name, ps);
                goto done;
            }
            if (s == 4) {
                float v;
                memcpy(&v, e.data, sizeof v);
                if (v != (float)plan->ps[i].step) {
                    rc = ck_fail(ctx, NNM_E_INVALID, path,
                                 "'%s' holds %g but " CK_META_OPTIM ".steps says %lld",
                                 nnm__show(key, nb, sizeof nb), (double)v,
                                 (long long)plan->ps[i].step);
                    goto done;
                }
            }
            used[fi] = 1;
            plan->idx[i][s] = fi;
        }
    }
done:
    free(group_of);
    json_decref(root);
    return rc;
}

/* Makes the new state tensors (on the parameter's device; step on the CPU)
 * from the file. Changes nothing else. */
static nnm_status plan_build(nnm_ctx *ctx, const char *path, const nnm_safetensors *st,
                             ck_plan *plan, uint32_t n) {
    for (uint32_t i = 0; i < n; i++)
        for (int s = 0; s < NNM__OPTIM_SLOTS; s++) {
            if (plan->idx[i][s] < 0) continue;
            nnm_st_entry e;
            e.struct_size = sizeof e;
            nnm_safetensors_entry(st, (uint32_t)plan->idx[i][s], &e);
            nnm_device dev = s == 4 ? (nnm_device){NNM_DEVICE_CPU, 0}
                                    : plan->ps[i].param->desc.device;
            nnm_tensor *t;
            nnm_status rc = nnm__tensor_alloc(ctx, dev, NNM_F32, e.ndim, e.shape, &t);
            if (!rc && (rc = nnm__state_copy_entry(ctx, t, &e))) nnm_tensor_release(t);
            if (rc) {
                char msg[NNM__ERRMSG_CAP], nb[CK_SHOW];
                memcpy(msg, ctx->errmsg, sizeof msg);
                return ck_fail(ctx, rc, path, "restoring '%s': %s", nnm__show(e.name, nb, sizeof nb),
                               msg);
            }
            plan->ps[i].slot[s] = t;
        }
    return NNM_OK;
}

/* ---- loading ------------------------------------------------------------ */

/* The strict-load message: missing, unexpected (file entries not used; with
 * skip_optim, those under "optim." are left to the optimizer's check) and
 * mismatched keys. */
static nnm_status strict_error(nnm_ctx *ctx, const char *path, const nnm_safetensors *st,
                               const unsigned char *used, int skip_optim, size_t n_miss,
                               const ck_msg *miss, size_t n_mism, const ck_msg *mism) {
    char nb[CK_SHOW];
    ck_msg unexp = {{0}, 0, 0}, all = {{0}, 0, 0};
    size_t n_unexp = 0;
    for (uint32_t i = 0; i < nnm_safetensors_count(st); i++) {
        if (used[i]) continue;
        nnm_st_entry e;
        e.struct_size = sizeof e;
        nnm_safetensors_entry(st, i, &e);
        if (skip_optim && strncmp(e.name, CK_PREFIX, strlen(CK_PREFIX)) == 0) continue;
        msg_add(&unexp, "%s'%s'", n_unexp++ ? ", " : " ", nnm__show(e.name, nb, sizeof nb));
    }
    if (n_miss)
        msg_add(&all, "%zu missing key(s):%s%s;", n_miss, miss->buf, miss->dropped ? " ..." : "");
    if (n_unexp)
        msg_add(&all, " %zu unexpected key(s):%s%s;", n_unexp, unexp.buf,
                unexp.dropped ? " ..." : "");
    if (n_mism)
        msg_add(&all, " %zu mismatched:%s%s;", n_mism, mism->buf, mism->dropped ? " ..." : "");
    if (all.len && all.buf[all.len - 1] == ';') all.buf[--all.len] = 0;
    return ck_fail(ctx, n_mism ? NNM_E_SHAPE : NNM_E_NOT_FOUND, path,
                   "the checkpoint does not fit the module (strict): %s%s",
                   all.buf + (all.buf[0] == ' '), all.dropped ? " (and more)" : "");
}

NNM_API nnm_status nnm_checkpoint_load(const char *path, nnm_module *m, nnm_optim *opt) {
    static const char who[] = "nnm_checkpoint_load";
    if (!nnm__module_live(m)) return NNM_E_INVALID;
    nnm_ctx *ctx = m->ctx;
    if (!path) return nnm__error(ctx, NNM_E_INVALID, "%s: path is NULL", who);
    char nb[CK_SHOW];
    nnm_safetensors *st = NULL;
    ck_keys k = {0};
    ck_optim o = {0};
    ck_plan plan;
    memset(&plan, 0, sizeof plan);
    unsigned char *used = NULL;
    nnm_status rc = nnm_safetensors_open(ctx, path, &st);
    if (rc) return rc;

    /* Metadata: the layout version and the optimizer's document. */
    const char *format = NULL, *optim_text = NULL;
    for (uint32_t i = 0; i < nnm_safetensors_metadata_count(st); i++) {
        const char *key, *value;
        nnm_safetensors_metadata(st, i, &key, &value);
        if (strcmp(key, CK_META_FORMAT) == 0) format = value;
        if (strcmp(key, CK_META_OPTIM) == 0) optim_text = value;
    }
    if (format && strcmp(format, CK_FORMAT) != 0) {
        rc = ck_fail(ctx, NNM_E_VERSION, path,
                     "checkpoint layout version '%s' is not supported (this library reads "
                     "version " CK_FORMAT ")",
                     nnm__show(format, nb, sizeof nb));
        goto done;
    }
    if ((rc = keys_collect(m, &k))) goto done;
    uint32_t nf = nnm_safetensors_count(st);
    if (!(used = calloc(nf ? nf : 1, 1))) {
        rc = nnm__error(ctx, NNM_E_NOMEM, "out of memory (checkpoint)");
        goto done;
    }

    /* 1. The module, strictly: every key present and fitting. */
    ck_msg miss = {{0}, 0, 0}, mism = {{0}, 0, 0};
    size_t n_miss = 0, n_mism = 0;
    for (size_t i = 0; i < k.n; i++) {
        ck_key *it = &k.v[i];
        it->file_idx = nnm__safetensors_lookup(st, it->name);
        if (it->file_idx < 0) {
            msg_add(&miss, "%s'%s'", n_miss++ ? ", " : " ", nnm__show(it->name, nb, sizeof nb));
            continue;
        }
        used[it->file_idx] = 1;
        nnm_st_entry e;
        e.struct_size = sizeof e;
        nnm_safetensors_entry(st, (uint32_t)it->file_idx, &e);
        char why[CK_SHOW + 400];
        if (!nnm__state_entry_fits(&e, it->t, nnm__show(it->name, nb, sizeof nb), why, sizeof why)) {
            msg_add(&mism, "%s%s", n_mism++ ? "; " : " ", why);
            continue;
        }
        if (!nnm__tensor_is_contiguous(it->t)) {
            rc = ck_fail(ctx, NNM_E_UNSUPPORTED, path,
                         "cannot load '%s': the module's tensor is not contiguous",
                         nnm__show(it->name, nb, sizeof nb));
            goto done;
        }
        if (it->t->desc.device.type != NNM_DEVICE_CPU) {
            nnm__backend *be;
            if ((rc = nnm__backend_get(ctx, it->t->desc.device, &be))) goto done;
        }
    }
    if (n_miss || n_mism) {
        /* Reported first, with the unexpected keys outside "optim.". */
        rc = strict_error(ctx, path, st, used, optim_text != NULL, n_miss, &miss, n_mism, &mism);
        goto done;
    }

    /* 2. The optimizer: kind, groups, parameters, steps, state tensors. */
    if (opt) {
        if ((rc = ck_optim_read(ctx, who, opt, &k, &o))) goto done;
        if (!optim_text) {
            rc = ck_fail(ctx, NNM_E_NOT_FOUND, path,
                         "the checkpoint holds no optimizer state (it was saved without an "
                         "optimizer)");
            goto done;
        }
        if ((rc = plan_optim(ctx, path, st, optim_text, &o, used, &plan))) goto done;
    } else if (optim_text) {
        /* Loading the weights alone: the optimizer's entries are not ours. */
        for (uint32_t i = 0; i < nf; i++) {
            nnm_st_entry e;
            e.struct_size = sizeof e;
            nnm_safetensors_entry(st, i, &e);
            if (strncmp(e.name, CK_PREFIX, strlen(CK_PREFIX)) == 0) used[i] = 1;
        }
    }
    /* Nothing left over. */
    for (uint32_t i = 0; i < nf; i++)
        if (!used[i]) {
            rc = strict_error(ctx, path, st, used, 0, 0, &miss, 0, &mism);
            goto done;
        }

    /* 3. The optimizer's new state, built aside. */
    if (opt && (rc = plan_build(ctx, path, st, &plan, o.info.n_params))) goto done;

    /* 4. Copy the module's tensors (nothing above changed anything). */
    for (size_t i = 0; i < k.n; i++) {
        nnm_st_entry e;
        e.struct_size = sizeof e;
        nnm_safetensors_entry(st, (uint32_t)k.v[i].file_idx, &e);
        if ((rc = nnm__state_copy_entry(ctx, k.v[i].t, &e))) {
            char msg[NNM__ERRMSG_CAP];
            memcpy(msg, ctx->errmsg, sizeof msg);
            rc = ck_fail(ctx, rc,
                         path, "copying '%s' to the module's device failed (the module is partly "
                         "loaded; the optimizer is unchanged): %.400s",
                         nnm__show(k.v[i].name, nb, sizeof nb), msg);
            goto done;
        }
    }

    /* 5. Swap the optimizer's state in (cannot fail). */
    if (opt) {
        nnm__optim_restore(opt, &plan.info, plan.lr, plan.wd, plan.ps);
        for (uint32_t i = 0; i < o.info.n_params; i++)
            for (int s = 0; s < NNM__OPTIM_SLOTS; s++) plan.ps[i].slot[s] = NULL;
    }
done:
    plan_free(&plan, o.info.n_params);
    free(used);
    ck_optim_free(&o);
    keys_free(&k);
    nnm_safetensors_close(st);
    return rc;
}
