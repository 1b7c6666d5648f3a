/* runtime/module/host.c - the host table handed to plugins through every nnm_env.
 * Each slot checks the phase it is valid in, so a plugin that declares a
 * parameter from forward gets an error instead of corrupting the module. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static nnm_status host_set_error(nnm_env *env, nnm_status code, const char *fmt, ...)
    NNM__PRINTF(3, 4);
/* Every slot checks what a plugin hands it before touching anything: an env
 * the runtime made for this invocation, and non-NULL pointers where it reads
 * or writes. A slot that cannot even find the context returns NNM_E_INVALID
 * (or 0) without a message; the call path then says the plugin failed
 * without one. */
static nnm__env *env_check(nnm_env *env) {
    if (!env || env->struct_size != sizeof(nnm_env) || env->host != &nnm__host ||
        env->reserved != nnm__env_tag(env))
        return NULL; /* a copy or a foreign pointer: nothing past the public part is read */
    nnm__env *e = nnm__env_of(env);
    return e->magic == NNM__ENV_MAGIC ? e : NULL;
}

#define ENV(e, env)                                                                              \
    nnm__env *e = env_check(env);                                                                \
    if (!e) return NNM_E_INVALID

static nnm_status null_arg(nnm__env *e, const char *slot, const char *what) {
    return nnm__error(e->ctx, NNM_E_INVALID, "host->%s: %s is NULL", slot, what);
}

static nnm_status host_set_error(nnm_env *env, nnm_status code, const char *fmt, ...) {
    if (!env_check(env) || !fmt) return code;
    va_list ap;
    va_start(ap, fmt);
    nnm__verror(nnm__env_of(env)->ctx, code, fmt, ap);
    va_end(ap);
    return code;
}

/* ---- config ------------------------------------------------------------- */

static nnm_status cfg_lookup(nnm_env *env, const char *key, int type, const nnm__cfg_entry **out) {
    *out = NULL;
    ENV(e, env);
    if (e->phase != NNM__PHASE_CREATE)
        return nnm__error(e->ctx, NNM_E_STATE, "config is readable only in create");
    if (!key) return nnm__error(e->ctx, NNM_E_INVALID, "config key is NULL");
    const nnm__cfg_entry *it = nnm__config_find(e->cfg, key);
    if (!it) return NNM_OK; /* missing: *out stays NULL */
    const size_t i = (size_t)(it - e->cfg->items);
    int have = it->type;
    /* An integer is a fine float (JSON writes 1 for 1.0). */
    if (have != type && !(type == NNM__CFG_FLOAT && have == NNM__CFG_INT) &&
        !(type == NNM__CFG_FLOATS && have == NNM__CFG_INTS) &&
        !(have == NNM__CFG_INTS && it->u.ints.n == 0 &&
          (type == NNM__CFG_FLOATS || type == NNM__CFG_STRS)))
        return nnm__error(e->ctx, NNM_E_TYPE, "config.%s: expected %s, got %s", key,
                          nnm__cfg_type_name(type), nnm__cfg_type_name(have));
    if (i < 64) e->cfg_read |= (uint64_t)1 << i;
    *out = it;
    return NNM_OK;
}

static nnm_status missing(nnm_env *env, const char *key, int type) {
    return nnm__error(nnm__env_of(env)->ctx, NNM_E_NOT_FOUND, "config.%s: required %s is missing",
                      key, nnm__cfg_type_name(type));
}

static nnm_status host_config_int(nnm_env *env, const char *key, const int64_t *dflt, int64_t *out) {
    const nnm__cfg_entry *c;
    if (!out) return env_check(env) ? null_arg(nnm__env_of(env), "config_int", "out") : NNM_E_INVALID;
    nnm_status st = cfg_lookup(env, key, NNM__CFG_INT, &c);
    if (st) return st;
    if (c) *out = c->u.i;
    else if (dflt) *out = *dflt;
    else return missing(env, key, NNM__CFG_INT);
    return NNM_OK;
}

static nnm_status host_config_float(nnm_env *env, const char *key, const double *dflt, double *out) {
    const nnm__cfg_entry *c;
    if (!out) return env_check(env) ? null_arg(nnm__env_of(env), "config_float", "out") : NNM_E_INVALID;
    nnm_status st = cfg_lookup(env, key, NNM__CFG_FLOAT, &c);
    if (st) return st;
    if (c) *out = c->type == NNM__CFG_INT ? (double)c->u.i : c->u.f;
    else if (dflt) *out = *dflt;
    else return missing(env, key, NNM__CFG_FLOAT);
    return NNM_OK;
}

static nnm_status host_config_bool(nnm_env *env, const char *key, const int *dflt, int *out) {
    const nnm__cfg_entry *c;
    if (!out) return env_check(env) ? null_arg(nnm__env_of(env), "config_bool", "out") : NNM_E_INVALID;
    nnm_status st = cfg_lookup(env, key, NNM__CFG_BOOL, &c);
    if (st) return st;
    if (c) *out = c->u.b;
    else if (dflt) *out = *dflt;
    else return missing(env, key, NNM__CFG_BOOL);
    return NNM_OK;
}

static nnm_status host_config_str(nnm_env *env, const char *key, const char *dflt, const char **out) {
    const nnm__cfg_entry *c;
    if (!out) return env_check(env) ? null_arg(nnm__env_of(env), "config_str", "out") : NNM_E_INVALID;
    nnm_status st = cfg_lookup(env, key, NNM__CFG_STR, &c);
    if (st) return st;
    if (c) *out = c->u.s;
    else if (dflt) *out = dflt;
    else return missing(env, key, NNM__CFG_STR);
    return NNM_OK;
}

static nnm_status list_too_long(nnm_env *env, const char *key, size_t n, size_t cap, int type) {
    return nnm__error(nnm__env_of(env)->ctx, NNM_E_LIMIT, "config.%s: %s of %zu entries is longer than %zu",
                      key, nnm__cfg_type_name(type), n, cap);
}

static nnm_status host_config_ints(nnm_env *env, const char *key, int64_t *buf, size_t cap, size_t *n) {
    const nnm__cfg_entry *c;
    if (!n || (cap && !buf))
        return env_check(env) ? null_arg(nnm__env_of(env), "config_ints", !n ? "n" : "buf")
                              : NNM_E_INVALID;
    nnm_status st = cfg_lookup(env, key, NNM__CFG_INTS, &c);
    if (st) return st;
    if (!c) return missing(env, key, NNM__CFG_INTS);
    if (c->u.ints.n > cap) return list_too_long(env, key, c->u.ints.n, cap, NNM__CFG_INTS);
    if (c->u.ints.n) memcpy(buf, c->u.ints.v, c->u.ints.n * sizeof *buf);
    *n = c->u.ints.n;
    return NNM_OK;
}

/* ---- state -------------------------------------------------------------- */

static nnm_status init_tensor(nnm_ctx *ctx, nnm_tensor *t, int32_t init, double a, double b) {
    float *p = (float *)t->desc.data;
    int64_t n = nnm_tensor_numel(t);
    /* The meta device has no data: the arguments are checked, nothing is written. */
    if (t->desc.device.type == NNM_DEVICE_META) n = 0;
    switch (init) {
    case NNM_INIT_ZEROS: return n ? nnm__op_fill(ctx, t, 0.0) : NNM_OK;
    case NNM_INIT_ONES: return n ? nnm__op_fill(ctx, t, 1.0) : NNM_OK;
    case NNM_INIT_CONSTANT: return n ? nnm__op_fill(ctx, t, a) : NNM_OK;
    case NNM_INIT_UNIFORM:
        if (!(a <= b)) return nnm__error(ctx, NNM_E_INVALID, "uniform init needs a <= b (%g, %g)", a, b);
        for (int64_t i = 0; i < n; i++) p[i] = (float)(a + (b - a) * nnm__rng_uniform(ctx->rng));
        return NNM_OK;
    case NNM_INIT_NORMAL:
        if (!(b >= 0)) return nnm__error(ctx, NNM_E_INVALID, "normal init needs std >= 0 (%g)", b);
        for (int64_t i = 0; i < n; i++) p[i] = (float)(a + b * nnm__rng_normal(ctx->rng));
        return NNM_OK;
    }
    return nnm__error(ctx, NNM_E_INVALID, "unknown init %d", (int)init);
}

static int is_i64(nnm_dtype d) {
    return d.code == NNM_DTYPE_INT && d.bits == 64 && d.lanes == 1;
}

/* An i64 tensor's elements: zeros, ones or a constant (a, toward zero). */
static nnm_status init_i64(nnm_ctx *ctx, nnm_tensor *t, int32_t init, double a) {
    if (init != NNM_INIT_ZEROS && init != NNM_INIT_ONES && init != NNM_INIT_CONSTANT)
        return nnm__error(ctx, NNM_E_INVALID,
                          "buffer_new_v2: an i64 buffer takes init zeros, ones or constant (got %d)",
                          (int)init);
    if (init == NNM_INIT_CONSTANT && !(a > -9.2e18 && a < 9.2e18))
        return nnm__error(ctx, NNM_E_INVALID, "buffer_new_v2: constant %g does not fit in i64", a);
    const int64_t v = init == NNM_INIT_ZEROS ? 0 : init == NNM_INIT_ONES ? 1 : (int64_t)a;
    int64_t *p = (int64_t *)t->desc.data;
    int64_t n = t->desc.device.type == NNM_DEVICE_META ? 0 : nnm_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) p[i] = v;
    return NNM_OK;
}

static nnm_status declare(nnm_env *env, int buffer, const char *name, int32_t ndim,
                          const int64_t *shape, nnm_dtype dtype, int32_t init, double a, double b,
                          int persistent, nnm_tensor **out) {
    if (out) *out = NULL;
    ENV(e, env);
    if (!out) return nnm__error(e->ctx, NNM_E_INVALID, "param_new/buffer_new: out is NULL");
    if (!name) return nnm__error(e->ctx, NNM_E_INVALID, "param_new/buffer_new: name is NULL");
    if (e->phase != NNM__PHASE_CREATE)
        return nnm__error(e->ctx, NNM_E_STATE, "parameters and buffers are declared only in create");
    const int i64 = is_i64(dtype);
    if (!i64 && !(dtype.code == NNM_DTYPE_FLOAT && dtype.bits == 32 && dtype.lanes == 1))
        return nnm__error(e->ctx, NNM_E_DTYPE,
                          "buffer_new_v2: dtype code %u bits %u lanes %u (f32 or i64 only)",
                          (unsigned)dtype.code, (unsigned)dtype.bits, (unsigned)dtype.lanes);
    nnm_tensor *t;
    /* Modules are created on the CPU (init writes through the CPU pointer) or the meta device. */
    nnm_status st = nnm__tensor_alloc(e->ctx, e->module->device, dtype, ndim, shape, &t);
    if (st) return st;
    if ((st = i64 ? init_i64(e->ctx, t, init, a) : init_tensor(e->ctx, t, init, a, b)) ||
        (st = nnm__module_add_tensor(e->module, buffer, name, t, persistent))) {
        nnm_tensor_release(t);
        return st;
    }
    if (!buffer) t->flags |= NNM__T_REQUIRES_GRAD; /* parameters train by default */
    *out = t;
    return NNM_OK;
}

static nnm_status host_param_new(nnm_env *env, const char *name, int32_t ndim, const int64_t *shape,
                                 int32_t init, double a, double b, nnm_tensor **out) {
    return declare(env, 0, name, ndim, shape, NNM_F32, init, a, b, 1, out);
}

static nnm_status host_buffer_new(nnm_env *env, const char *name, int32_t ndim, const int64_t *shape,
                                  int32_t init, double a, int persistent, nnm_tensor **out) {
    return declare(env, 1, name, ndim, shape, NNM_F32, init, a, 0.0, persistent != 0, out);
}

static nnm_status host_buffer_new_v2(nnm_env *env, const char *name, int32_t ndim,
                                     const int64_t *shape, nnm_dtype dtype, int32_t init, double a,
                                     double b, int persistent, nnm_tensor **out) {
    return declare(env, 1, name, ndim, shape, dtype, init, a, b, persistent != 0, out);
}

static nnm_status host_set_output_names(nnm_env *env, const char *const *names, uint32_t n) {
    ENV(e, env);
    if (e->phase != NNM__PHASE_CREATE || !e->module)
        return nnm__error(e->ctx, NNM_E_STATE, "output names are set only in create");
    if (n > NNM_MAX_IO)
        return nnm__error(e->ctx, NNM_E_LIMIT, "set_output_names: %u names; a call has at most %d outputs",
                          (unsigned)n, NNM_MAX_IO);
    if (n && !names) return null_arg(e, "set_output_names", "names");
    char nb[128];
    for (uint32_t i = 0; i < n; i++) {
        const char *z = names[i];
        if (!z) return nnm__error(e->ctx, NNM_E_INVALID, "set_output_names: names[%u] is NULL", i);
        size_t len = strlen(z);
        int bad = !len || !nnm__utf8_valid(z, len);
        for (size_t k = 0; !bad && k < len; k++) {
            unsigned char c = (unsigned char)z[k];
            bad = c < 0x20 || c == 0x7f ||
                  (c == 0xC2 && k + 1 < len && (unsigned char)z[k + 1] >= 0x80 &&
                   (unsigned char)z[k + 1] <= 0x9F);
        }
        if (bad)
            return nnm__error(e->ctx, NNM_E_INVALID,
                              "set_output_names: names[%u] '%s' is not a name (non-empty UTF-8 "
                              "without control characters)",
                              i, nnm__show(z, nb, sizeof nb));
        for (uint32_t j = 0; j < i; j++)
            if (strcmp(names[j], z) == 0)
                return nnm__error(e->ctx, NNM_E_INVALID,
                                  "set_output_names: names[%u] '%s' is also names[%u]", i,
                                  nnm__show(z, nb, sizeof nb), j);
    }
    char **copy = n ? calloc(n, sizeof *copy) : NULL;
    if (n && !copy) return nnm__error(e->ctx, NNM_E_NOMEM, "out of memory");
    for (uint32_t i = 0; i < n; i++)
        if (!(copy[i] = strdup(names[i]))) {
            for (uint32_t j = 0; j < i; j++) free(copy[j]);
            free(copy);
            return nnm__error(e->ctx, NNM_E_NOMEM, "out of memory");
        }
    nnm__module_set_output_names(e->module, copy, n);
    return NNM_OK;
}

static nnm_status host_input_spec(nnm_env *env, uint32_t index, int32_t ndim, const int64_t *dims,
                                  uint32_t flags) {
    ENV(e, env);
    if (e->phase != NNM__PHASE_CREATE)
        return nnm__error(e->ctx, NNM_E_STATE, "input specs are declared only in create");
    if (index >= NNM__MAX_SPECS || ndim < 0 || ndim > NNM_MAX_DIMS || (ndim && !dims))
        return nnm__error(e->ctx, NNM_E_INVALID, "input_spec: index %u / ndim %d out of range",
                          index, (int)ndim);
    nnm__input_spec *s = &e->module->specs[index];
    s->ndim = ndim;
    s->flags = flags;
    for (int32_t i = 0; i < ndim; i++) s->dims[i] = dims[i];
    if (e->module->n_specs <= index) e->module->n_specs = index + 1;
    return NNM_OK;
}

/* ---- call context ------------------------------------------------------- */

static int host_is_training(nnm_env *env) {
    nnm__env *e = env_check(env);
    return e ? e->training : 0;
}
static int host_grad_enabled(nnm_env *env) {
    nnm__env *e = env_check(env);
    return e ? e->grad : 0;
}
static nnm_device host_device(nnm_env *env) {
    nnm__env *e = env_check(env);
    return e ? e->device : (nnm_device){NNM_DEVICE_CPU, 0};
}

static uint32_t host_child_count(nnm_env *env) {
    nnm__env *e = env_check(env);
    return e && e->module ? e->module->n_children : 0;
}

static nnm_status host_child_call(nnm_env *env, uint32_t index, nnm_tensor *const *in, uint32_t n_in,
                                  nnm_tensor **out, uint32_t n_out) {
    ENV(e, env);
    if (e->phase != NNM__PHASE_FORWARD || !e->module)
        return nnm__error(e->ctx, NNM_E_STATE, "child_call is valid only in forward");
    if (index >= e->module->n_children)
        return nnm__error(e->ctx, NNM_E_NOT_FOUND, "no child %u (module has %u)", index,
                          e->module->n_children);
    return nnm__module_call(e->module->children[index], in, n_in, out, n_out);
}


static nnm_status host_config_floats(nnm_env *env, const char *key, double *buf, size_t cap,
                                     size_t *n) {
    const nnm__cfg_entry *c;
    if (!n || (cap && !buf))
        return env_check(env) ? null_arg(nnm__env_of(env), "config_floats", !n ? "n" : "buf")
                              : NNM_E_INVALID;
    nnm_status st = cfg_lookup(env, key, NNM__CFG_FLOATS, &c);
    if (st) return st;
    if (!c) return missing(env, key, NNM__CFG_FLOATS);
    size_t len = c->type == NNM__CFG_INTS ? c->u.ints.n : c->u.floats.n;
    if (len > cap) return list_too_long(env, key, len, cap, NNM__CFG_FLOATS);
    for (size_t i = 0; i < len; i++)
        buf[i] = c->type == NNM__CFG_INTS ? (double)c->u.ints.v[i] : c->u.floats.v[i];
    *n = len;
    return NNM_OK;
}

static nnm_status host_config_strs(nnm_env *env, const char *key, const char **buf, size_t cap,
                                   size_t *n) {
    const nnm__cfg_entry *c;
    if (!n || (cap && !buf))
        return env_check(env) ? null_arg(nnm__env_of(env), "config_strs", !n ? "n" : "buf")
                              : NNM_E_INVALID;
    nnm_status st = cfg_lookup(env, key, NNM__CFG_STRS, &c);
    if (st) return st;
    if (!c) return missing(env, key, NNM__CFG_STRS);
    size_t len = c->type == NNM__CFG_STRS ? c->u.strs.n : 0; /* else an empty list */
    if (len > cap) return list_too_long(env, key, len, cap, NNM__CFG_STRS);
    for (size_t i = 0; i < len; i++) buf[i] = c->u.strs.v[i];
    *n = len;
    return NNM_OK;
}

static nnm_status host_child_info(nnm_env *env, uint32_t index, const char **name,
                                  int32_t *n_inputs, int32_t *n_outputs) {
    ENV(e, env);
    if (!e->module || e->phase == NNM__PHASE_CREATE || e->phase == NNM__PHASE_BACKEND)
        return nnm__error(e->ctx, NNM_E_STATE, "child_info is valid in forward, backward and finalize");
    if (index >= e->module->n_children)
        return nnm__error(e->ctx, NNM_E_NOT_FOUND, "no child %u (module has %u)", index,
                          e->module->n_children);
    const nnm_module *c = e->module->children[index];
    if (name) *name = e->module->child_names[index]; /* the slot's: a shared child has one per slot */
    if (n_inputs) *n_inputs = c->vt->n_inputs;
    if (n_outputs) *n_outputs = c->vt->n_outputs;
    return NNM_OK;
}

static nnm_status descendant(nnm_env *env, const char *path, const char *what, nnm_module **out) {
    ENV(e, env);
    if (!e->module || e->phase == NNM__PHASE_CREATE || e->phase == NNM__PHASE_BACKEND)
        return nnm__error(e->ctx, NNM_E_STATE, "%s is valid in forward, backward and finalize", what);
    if (!path || !*path) return nnm__error(e->ctx, NNM_E_INVALID, "%s: empty path", what);
    *out = nnm_module_get(e->module, path);
    if (!*out) return nnm__error(e->ctx, NNM_E_NOT_FOUND, "no descendant module '%s'", path);
    return NNM_OK;
}

static nnm_status host_descendant_info(nnm_env *env, const char *path, int32_t *n_inputs,
                                       int32_t *n_outputs) {
    nnm_module *d;
    nnm_status st = descendant(env, path, "descendant_info", &d);
    if (st) return st;
    if (n_inputs) *n_inputs = d->vt->n_inputs;
    if (n_outputs) *n_outputs = d->vt->n_outputs;
    return NNM_OK;
}

static nnm_status host_descendant_call(nnm_env *env, const char *path, nnm_tensor *const *in,
                                       uint32_t n_in, nnm_tensor **out, uint32_t n_out) {
    ENV(e, env);
    if (e->phase != NNM__PHASE_FORWARD || !e->module)
        return nnm__error(e->ctx, NNM_E_STATE, "descendant_call is valid only in forward");
    nnm_module *d;
    nnm_status st = descendant(env, path, "descendant_call", &d);
    if (st) return st;
    return nnm__module_call(d, in, n_in, out, n_out);
}

/* A descendant's parameter or buffer by its dotted state-dict name below
 * the module (1.5): the module path up to the last '.', the tensor after it. */
static nnm_status host_descendant_tensor(nnm_env *env, const char *path, nnm_tensor **out) {
    ENV(e, env);
    if (!out) return null_arg(e, "descendant_tensor", "out");
    *out = NULL;
    if (!e->module || e->phase == NNM__PHASE_CREATE || e->phase == NNM__PHASE_BACKEND)
        return nnm__error(e->ctx, NNM_E_STATE, "descendant_tensor is valid in forward, backward and finalize");
    if (!path || !*path) return nnm__error(e->ctx, NNM_E_INVALID, "descendant_tensor: empty path");
    const char *dot = strrchr(path, '.');
    if (!dot || dot == path || !dot[1])
        return nnm__error(e->ctx, NNM_E_NOT_FOUND, "descendant_tensor: '%s' names no tensor of a descendant", path);
    const size_t n = (size_t)(dot - path);
    char stack[256];
    char *mp = n < sizeof stack ? stack : malloc(n + 1);
    if (!mp) return nnm__error(e->ctx, NNM_E_NOMEM, "descendant_tensor: out of memory");
    memcpy(mp, path, n);
    mp[n] = '\0';
    nnm_module *d = nnm_module_get(e->module, mp);
    if (mp != stack) free(mp);
    const char *leaf = dot + 1;
    for (uint32_t i = 0; d && i < d->n_params; i++)
        if (strcmp(d->params[i].name, leaf) == 0) {
            *out = d->params[i].t;
            return NNM_OK;
        }
    for (uint32_t i = 0; d && i < d->n_buffers; i++)
        if (d->buffers[i].t && strcmp(d->buffers[i].name, leaf) == 0) {
            *out = d->buffers[i].t;
            return NNM_OK;
        }
    return nnm__error(e->ctx, NNM_E_NOT_FOUND, "descendant_tensor: no parameter or buffer '%s'%s", path,
                      d ? "" : " (no such descendant module)");
}

/* ---- tensors and ops ---------------------------------------------------- */

static const nnm_tensor_desc *host_tensor_desc(const nnm_tensor *t) { return t ? &t->desc : NULL; }
static void host_tensor_retain(nnm_tensor *t) { nnm_tensor_retain(t); }
static void host_tensor_release(nnm_tensor *t) { nnm_tensor_release(t); }

static nnm_status host_tensor_new(nnm_env *env, int32_t ndim, const int64_t *shape, nnm_dtype dtype,
                                  nnm_tensor **out) {
    ENV(e, env);
    if (!out) return nnm__error(e->ctx, NNM_E_INVALID, "tensor_new: out is NULL");
    return nnm__tensor_alloc(e->ctx, e->device, dtype, ndim, shape, out);
}

#define OUT_CHECK(env, out)                                                                       \
    if (!env_check(env)) return NNM_E_INVALID;                                                    \
    if (!(out)) return nnm__error(nnm__env_of(env)->ctx, NNM_E_INVALID, "op: out is NULL")

static nnm_status host_op_linear(nnm_env *env, nnm_tensor *x, nnm_tensor *w, nnm_tensor *b,
                                 nnm_tensor **out) {
    OUT_CHECK(env, out);
    return nnm__op_linear(nnm__env_of(env)->ctx, x, w, b, out);
}

static nnm_status host_op_matmul(nnm_env *env, nnm_tensor *a, nnm_tensor *b, nnm_tensor **out) {
    OUT_CHECK(env, out);
    return nnm__op_matmul(nnm__env_of(env)->ctx, a, b, out);
}

static nnm_status host_op_binary(nnm_env *env, int32_t op, nnm_tensor *a, nnm_tensor *b,
                                 nnm_tensor **out) {
    OUT_CHECK(env, out);
    return nnm__op_binary(nnm__env_of(env)->ctx, op, a, b, out);
}

static nnm_status host_op_unary(nnm_env *env, int32_t op, nnm_tensor *x, double alpha,
                                nnm_tensor **out) {
    OUT_CHECK(env, out);
    if (!x) return nnm__error(nnm__env_of(env)->ctx, NNM_E_INVALID, "unary: x is NULL");
    return nnm__op_unary(nnm__env_of(env)->ctx, op, x, alpha, out);
}

static nnm_status host_op_reduce(nnm_env *env, int32_t op, nnm_tensor *x, const int32_t *dims,
                                 uint32_t n_dims, int keepdim, nnm_tensor **out) {
    OUT_CHECK(env, out);
    if (!x) return nnm__error(nnm__env_of(env)->ctx, NNM_E_INVALID, "reduce: x is NULL");
    return nnm__op_reduce(nnm__env_of(env)->ctx, op, x, dims, n_dims, keepdim, out);
}

static nnm_status host_op_log_softmax(nnm_env *env, nnm_tensor *x, nnm_tensor **out) {
    OUT_CHECK(env, out);
    if (!x) return nnm__error(nnm__env_of(env)->ctx, NNM_E_INVALID, "log_softmax: x is NULL");
    return nnm__op_log_softmax(nnm__env_of(env)->ctx, x, out);
}

static nnm_status host_op_nll(nnm_env *env, nnm_tensor *logp, nnm_tensor *target, int64_t ignore_index,
                              double label_smoothing, int32_t reduction, nnm_tensor **out) {
    OUT_CHECK(env, out);
    if (!logp) return nnm__error(nnm__env_of(env)->ctx, NNM_E_INVALID, "nll: input is NULL");
    return nnm__op_nll(nnm__env_of(env)->ctx, logp, target, ignore_index, label_smoothing, reduction, out);
}

static nnm_status host_op_reshape(nnm_env *env, nnm_tensor *x, int32_t ndim, const int64_t *shape,
                                  nnm_tensor **out) {
    OUT_CHECK(env, out);
    if (!x || (ndim > 0 && !shape))
        return null_arg(nnm__env_of(env), "op_reshape", !x ? "x" : "shape");
    return nnm__op_reshape(nnm__env_of(env)->ctx, x, ndim, shape, out);
}

static nnm_status host_save_for_backward(nnm_env *env, nnm_tensor *const *t, uint32_t n) {
    ENV(e, env);
    if (e->phase != NNM__PHASE_FORWARD)
        return nnm__error(e->ctx, NNM_E_STATE, "save_for_backward is valid only in forward");
    if (n && !t) return nnm__error(e->ctx, NNM_E_INVALID, "save_for_backward: tensors are NULL");
    if (!e->saved) return NNM_OK; /* no graph is being recorded (no_grad, or nothing needs grad) */
    if (e->n_saved + n > NNM__NODE_SAVED)
        return nnm__error(e->ctx, NNM_E_LIMIT, "save_for_backward: at most %d tensors", NNM__NODE_SAVED);
    for (uint32_t i = 0; i < n; i++)
        if (!t[i]) return nnm__error(e->ctx, NNM_E_INVALID, "save_for_backward: tensor %u is NULL", i);
    for (uint32_t i = 0; i < n; i++) {
        nnm_tensor *alias;
        nnm_status st = nnm__tensor_view(t[i], t[i]->desc.ndim, t[i]->shape, t[i]->strides, &alias);
        if (st) return st;
        e->saved[e->n_saved++] = alias;
    }
    return NNM_OK;
}

static nnm_status host_saved_tensors(nnm_env *env, nnm_tensor *const **t, uint32_t *n) {
    ENV(e, env);
    if (e->phase != NNM__PHASE_BACKWARD || !e->node || !t || !n)
        return nnm__error(e->ctx, NNM_E_STATE, "saved_tensors is valid only in backward");
    *t = e->node->saved;
    *n = e->node->n_saved;
    return NNM_OK;
}

static nnm_status host_accumulate_grad(nnm_env *env, nnm_tensor *param, nnm_tensor *grad) {
    ENV(e, env);
    if (e->phase != NNM__PHASE_BACKWARD || !e->module)
        return nnm__error(e->ctx, NNM_E_STATE, "accumulate_grad is valid only in backward");
    if (!param || !grad) return nnm__error(e->ctx, NNM_E_INVALID, "accumulate_grad: NULL tensor");
    int owned = 0;
    for (uint32_t i = 0; i < e->module->n_params; i++)
        owned |= e->module->params[i].t == param || e->module->params[i].alias == param;
    if (!owned) return nnm__error(e->ctx, NNM_E_INVALID, "accumulate_grad: not a parameter of this module");
    if (param->tied) param = param->tied; /* tied (nnm_module_set_parameter): one .grad */
    if (!(param->flags & NNM__T_REQUIRES_GRAD)) return NNM_OK; /* frozen: nothing to do */
    if (nnm_tensor_numel(grad) != nnm_tensor_numel(param))
        return nnm__error(e->ctx, NNM_E_SHAPE, "accumulate_grad: gradient size differs from the parameter's");
    /* the same elements in another shape (a full reduction is 0-d, the
     * parameter [1]): .grad takes the parameter's shape, as in PyTorch */
    int same = grad->desc.ndim == param->desc.ndim;
    for (int32_t i = 0; same && i < param->desc.ndim; i++) same = grad->shape[i] == param->shape[i];
    if (same) return nnm__leaf_accumulate(e->ctx, param, grad);
    nnm_tensor *g = NULL;
    nnm_status st = nnm_op_reshape(e->ctx, grad, param->desc.ndim, param->shape, &g);
    if (st == NNM_OK) st = nnm__leaf_accumulate(e->ctx, param, g);
    nnm_tensor_release(g);
    return st;
}

/* ---- ABI 1.3 ------------------------------------------------------------ */

static nnm_status host_set_error_msg(nnm_env *env, nnm_status code, const char *msg) {
    if (!env_check(env)) return code;
    /* bounded: a message without its NUL is read up to what fits, no further */
    if (msg) nnm__error(nnm__env_of(env)->ctx, code, "%.*s", NNM__ERRMSG_CAP - 1, msg);
    return code;
}

static nnm_status host_config_type(nnm_env *env, const char *key, int32_t *type) {
    ENV(e, env);
    if (e->phase != NNM__PHASE_CREATE)
        return nnm__error(e->ctx, NNM_E_STATE, "config is readable only in create");
    if (!key || !type) return nnm__error(e->ctx, NNM_E_INVALID, "config_type: NULL argument");
    const nnm__cfg_entry *it = nnm__config_find(e->cfg, key);
    if (!it) return NNM_E_NOT_FOUND;
    *type = it->type;
    return NNM_OK;
}

static nnm_status host_config_int_or_ints(nnm_env *env, const char *key, const int64_t *dflt, int64_t *out,
                                          size_t n) {
    ENV(e, env);
    if (e->phase != NNM__PHASE_CREATE)
        return nnm__error(e->ctx, NNM_E_STATE, "config is readable only in create");
    if (!key || (n && !out)) return nnm__error(e->ctx, NNM_E_INVALID, "config_int_or_ints: NULL argument");
    const nnm__cfg_entry *it = nnm__config_find(e->cfg, key);
    if (!it) {
        if (!dflt)
            return nnm__error(e->ctx, NNM_E_NOT_FOUND, "config.%s: required integer or list of %zu integers is missing",
                              key, n);
        for (size_t i = 0; i < n; i++) out[i] = *dflt;
        return NNM_OK;
    }
    const size_t idx = (size_t)(it - e->cfg->items);
    if (it->type == NNM__CFG_INT) {
        for (size_t i = 0; i < n; i++) out[i] = it->u.i;
    } else if (it->type == NNM__CFG_INTS) {
        if (it->u.ints.n != n)
            return nnm__error(e->ctx, NNM_E_SHAPE, "config.%s: expected an integer or a list of %zu integers, got %zu",
                              key, n, it->u.ints.n);
        for (size_t i = 0; i < n; i++) out[i] = it->u.ints.v[i];
    } else {
        return nnm__error(e->ctx, NNM_E_TYPE, "config.%s: expected an integer or a list of %zu integers, got %s", key,
                          n, nnm__cfg_type_name(it->type));
    }
    if (idx < 64) e->cfg_read |= (uint64_t)1 << idx;
    return NNM_OK;
}

static nnm_status host_tensor_read_f32(nnm_env *env, nnm_tensor *t, float *dst, size_t n) {
    ENV(e, env);
    if (!t || (n && !dst)) return nnm__error(e->ctx, NNM_E_INVALID, "tensor_read_f32: NULL argument");
    if ((uint64_t)nnm_tensor_numel(t) != n)
        return nnm__error(e->ctx, NNM_E_SHAPE, "tensor_read_f32: the tensor has %lld elements, not %zu",
                          (long long)nnm_tensor_numel(t), n);
    return n ? nnm_tensor_to_f32(t, dst, n) : NNM_OK;
}

static nnm_status host_op_full(nnm_env *env, int32_t ndim, const int64_t *shape, double value, nnm_tensor **out) {
    OUT_CHECK(env, out);
    nnm__env *e = nnm__env_of(env); /* checked by OUT_CHECK */
    return nnm__op_full(e->ctx, e->device, ndim, shape, value, out);
}

static nnm_status host_op_rand(nnm_env *env, int32_t dist, double a, double b, int32_t ndim, const int64_t *shape,
                               nnm_tensor **out) {
    OUT_CHECK(env, out);
    nnm__env *e = nnm__env_of(env); /* checked by OUT_CHECK */
    return nnm__op_rand(e->ctx, e->device, dist, a, b, ndim, shape, out);
}

static nnm_status host_op_bmm(nnm_env *env, nnm_tensor *a, nnm_tensor *b, nnm_tensor **out) {
    OUT_CHECK(env, out);
    return nnm__op_bmm(nnm__env_of(env)->ctx, a, b, out);
}

static nnm_status host_op_permute(nnm_env *env, nnm_tensor *x, const int32_t *perm, int32_t ndim, nnm_tensor **out) {
    OUT_CHECK(env, out);
    return nnm__op_permute(nnm__env_of(env)->ctx, x, perm, ndim, out);
}

static nnm_status host_op_concat(nnm_env *env, nnm_tensor *const *xs, uint32_t n, int32_t dim, nnm_tensor **out) {
    OUT_CHECK(env, out);
    return nnm__op_concat(nnm__env_of(env)->ctx, xs, n, dim, out);
}

static nnm_status host_op_slice(nnm_env *env, nnm_tensor *x, int32_t dim, int64_t start, int64_t length,
                                nnm_tensor **out) {
    OUT_CHECK(env, out);
    return nnm__op_slice(nnm__env_of(env)->ctx, x, dim, start, length, out);
}

static nnm_status host_op_softmax(nnm_env *env, nnm_tensor *x, int32_t dim, int log, nnm_tensor **out) {
    OUT_CHECK(env, out);
    return nnm__op_softmax(nnm__env_of(env)->ctx, x, dim, log, out);
}

static nnm_status host_op_where(nnm_env *env, nnm_tensor *cond, nnm_tensor *a, nnm_tensor *b, nnm_tensor **out) {
    OUT_CHECK(env, out);
    return nnm__op_where(nnm__env_of(env)->ctx, cond, a, b, out);
}

static nnm_status host_op_conv(nnm_env *env, nnm_tensor *x, nnm_tensor *w, nnm_tensor *b, const nnm_conv_params *p,
                               nnm_tensor **out) {
    OUT_CHECK(env, out);
    return nnm__op_conv(nnm__env_of(env)->ctx, x, w, b, p, out);
}

static nnm_status host_op_pool(nnm_env *env, nnm_tensor *x, const nnm_pool_params *p, nnm_tensor **out) {
    OUT_CHECK(env, out);
    return nnm__op_pool(nnm__env_of(env)->ctx, x, p, out);
}

static nnm_status host_op_update(nnm_env *env, nnm_tensor *dst, nnm_tensor *src, double alpha, double beta) {
    ENV(e, env);
    if (!dst || !src) return null_arg(e, "op_update", !dst ? "dst" : "src");
    return nnm__op_update(nnm__env_of(env)->ctx, dst, src, alpha, beta);
}

static nnm_status host_op_batch_norm(nnm_env *env, nnm_tensor *x, nnm_tensor *running_mean, nnm_tensor *running_var,
                                     nnm_tensor *weight, nnm_tensor *bias, const nnm_batch_norm_params *p,
                                     nnm_tensor **out) {
    OUT_CHECK(env, out);
    return nnm__op_batch_norm(nnm__env_of(env)->ctx, x, running_mean, running_var, weight, bias, p, out);
}

static nnm_status host_tensor_from_host(nnm_env *env, int32_t ndim, const int64_t *shape, nnm_dtype dtype,
                                        const void *data, nnm_tensor **out) {
    OUT_CHECK(env, out);
    nnm__env *e = nnm__env_of(env); /* checked by OUT_CHECK */
    return nnm__tensor_from_host(e->ctx, e->device, ndim, shape, dtype, data, out);
}

static nnm_status host_op_index_select(nnm_env *env, nnm_tensor *x, int32_t dim, nnm_tensor *index,
                                       nnm_tensor **out) {
    OUT_CHECK(env, out);
    return nnm__op_index_select(nnm__env_of(env)->ctx, x, dim, index, out);
}

static nnm_status host_op_rnn(nnm_env *env, const nnm_rnn_params *p, nnm_tensor *gx, nnm_tensor *w_hh,
                              nnm_tensor *b_hh, nnm_tensor *w_hr, nnm_tensor *h0, nnm_tensor *c0, nnm_tensor **y,
                              nnm_tensor **c_n) {
    OUT_CHECK(env, y);
    if (c_n) *c_n = NULL;
    return nnm__op_rnn(nnm__env_of(env)->ctx, p, gx, w_hh, b_hh, w_hr, h0, c0, y, c_n);
}

/* ---- children a layer makes (1.5) ------------------------------------- */

static nnm_status host_child_new(nnm_env *env, const char *name, const char *layer_type,
                                 const char *version_range, const char *config_json) {
    ENV(e, env);
    if (e->phase != NNM__PHASE_CREATE || !e->module)
        return nnm__error(e->ctx, NNM_E_STATE, "child_new is valid only in create");
    if (!name || !layer_type) return null_arg(e, "child_new", !name ? "name" : "layer_type");
    nnm_ctx *ctx = e->ctx;
    nnm_module *owner = e->module, *parent = owner;
    char nb[128];
    const char *leaf = name, *dot = strrchr(name, '.');
    if (dot) { /* "self_attn.out_proj": into a module this create made */
        char prefix[NNM_NAME_MAX + 1];
        const size_t n = (size_t)(dot - name);
        if (n >= sizeof prefix)
            return nnm__error(ctx, NNM_E_LIMIT, "child_new: path '%s' is too long", nnm__show(name, nb, sizeof nb));
        memcpy(prefix, name, n);
        prefix[n] = 0;
        parent = nnm_module_get(owner, prefix);
        if (!parent || parent->made_by != owner)
            return nnm__error(ctx, NNM_E_NOT_FOUND, "child_new: '%s' is not a module this layer made "
                              "(make it first)", nnm__show(prefix, nb, sizeof nb));
        leaf = dot + 1;
    }
    char request[160];
    if (version_range && *version_range)
        snprintf(request, sizeof request, "%s@%s", layer_type, version_range);
    else
        snprintf(request, sizeof request, "%s", layer_type);
    nnm_config *cfg = NULL;
    char prefix[NNM_NAME_MAX + 16];
    snprintf(prefix, sizeof prefix, "%s.config", name);
    nnm_status st = nnm__config_from_json(ctx, config_json, prefix, &cfg);
    if (st) {
        char msg[NNM__ERRMSG_CAP];
        memcpy(msg, ctx->errmsg, sizeof msg);
        return nnm__error(ctx, st, "child_new: %s", msg);
    }
    if (ctx->make_depth >= NNM__MAKE_DEPTH_MAX) {
        nnm_config_free(cfg);
        char tb[64], ob[64];
        ctx->make_overflow = 1;
        return nnm__error(ctx, NNM_E_LIMIT,
                          "child_new: modules made inside modules are nested deeper than %u: '%s' (%s) made "
                          "by a %s (does a layer's create make itself, directly or through others?)",
                          NNM__MAKE_DEPTH_MAX, nnm__show(name, nb, sizeof nb), nnm__show(layer_type, tb, sizeof tb),
                          nnm__show(owner->vt->name, ob, sizeof ob));
    }
    nnm_module *c = NULL;
    ctx->make_depth++;
    st = nnm_module_create_on(ctx, request, cfg, owner->device, &c);
    ctx->make_depth--;
    const int overflow = ctx->make_overflow;
    if (ctx->make_depth == 0) ctx->make_overflow = 0;
    nnm_config_free(cfg);
    if (!st) {
        st = nnm_module_add_child(parent, leaf, c);
        if (!st) {
            c->made_by = owner;
            owner->n_made++;
        }
        nnm_module_release(c); /* the parent holds it now (or nothing does) */
    }
    if (st && overflow) return st; /* the cause, unwrapped: 32 prefixes would push it out of the message */
    if (st) {
        char msg[NNM__ERRMSG_CAP], tb[64];
        memcpy(msg, ctx->errmsg, sizeof msg);
        return nnm__error(ctx, st, "child '%s' (%s): %s", nnm__show(name, nb, sizeof nb),
                          nnm__show(layer_type, tb, sizeof tb), msg);
    }
    return NNM_OK;
}

static nnm_status host_op_cast(nnm_env *env, nnm_tensor *x, nnm_dtype dtype, nnm_tensor **out) {
    OUT_CHECK(env, out);
    return nnm__op_cast(nnm__env_of(env)->ctx, x, dtype, out);
}

static nnm_status host_op_detach(nnm_env *env, nnm_tensor *x, nnm_tensor **out) {
    OUT_CHECK(env, out);
    return nnm__op_detach(nnm__env_of(env)->ctx, x, out);
}

static nnm_status host_op_arg_reduce(nnm_env *env, int32_t op, nnm_tensor *x, int32_t dim, int keepdim,
                                     nnm_tensor **out) {
    OUT_CHECK(env, out);
    return nnm__op_arg_reduce(nnm__env_of(env)->ctx, op, x, dim, keepdim, out);
}

static nnm_status host_op_ctc_loss(nnm_env *env, nnm_tensor *log_probs, nnm_tensor *targets,
                                   nnm_tensor *input_lengths, nnm_tensor *target_lengths, const nnm_ctc_params *p,
                                   nnm_tensor **out) {
    OUT_CHECK(env, out);
    return nnm__op_ctc_loss(nnm__env_of(env)->ctx, log_probs, targets, input_lengths, target_lengths, p, out);
}

static nnm_status host_op_embedding_bag(nnm_env *env, nnm_tensor *weight, nnm_tensor *indices, nnm_tensor *offsets,
                                        nnm_tensor *per_sample_weights, const nnm_embedding_bag_params *p,
                                        nnm_tensor **out) {
    OUT_CHECK(env, out);
    return nnm__op_embedding_bag(nnm__env_of(env)->ctx, weight, indices, offsets, per_sample_weights, p, out);
}

static nnm_status host_op_attention(nnm_env *env, nnm_tensor *q, nnm_tensor *k, nnm_tensor *v, nnm_tensor *mask,
                                    const nnm_attention_params *p, nnm_tensor **out) {
    OUT_CHECK(env, out);
    return nnm__op_attention(nnm__env_of(env)->ctx, q, k, v, mask, p, out);
}

static nnm_status host_op_layer_norm(nnm_env *env, nnm_tensor *x, nnm_tensor *residual, nnm_tensor *weight,
                                     nnm_tensor *bias, const nnm_layer_norm_params *p, nnm_tensor **out) {
    OUT_CHECK(env, out);
    return nnm__op_layer_norm(nnm__env_of(env)->ctx, x, residual, weight, bias, p, out);
}

const nnm_host nnm__host = {
    .struct_size = sizeof(nnm_host),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
    .set_error = host_set_error,
    .config_int = host_config_int,
    .config_float = host_config_float,
    .config_bool = host_config_bool,
    .config_str = host_config_str,
    .config_ints = host_config_ints,
    .param_new = host_param_new,
    .buffer_new = host_buffer_new,
    .input_spec = host_input_spec,
    .is_training = host_is_training,
    .grad_enabled = host_grad_enabled,
    .device = host_device,
    .child_count = host_child_count,
    .child_call = host_child_call,
    .tensor_desc = host_tensor_desc,
    .tensor_retain = host_tensor_retain,
    .tensor_release = host_tensor_release,
    .tensor_new = host_tensor_new,
    .op_linear = host_op_linear,
    .op_matmul = host_op_matmul,
    .op_binary = host_op_binary,
    .op_unary = host_op_unary,
    .op_reduce = host_op_reduce,
    .op_log_softmax = host_op_log_softmax,
    .op_nll = host_op_nll,
    .op_reshape = host_op_reshape,
    .save_for_backward = host_save_for_backward,
    .saved_tensors = host_saved_tensors,
    .accumulate_grad = host_accumulate_grad,
    .config_floats = host_config_floats,
    .config_strs = host_config_strs,
    .child_info = host_child_info,
    .descendant_info = host_descendant_info,
    .descendant_call = host_descendant_call,
    .set_error_msg = host_set_error_msg,
    .config_type = host_config_type,
    .config_int_or_ints = host_config_int_or_ints,
    .tensor_read_f32 = host_tensor_read_f32,
    .op_full = host_op_full,
    .op_rand = host_op_rand,
    .op_bmm = host_op_bmm,
    .op_permute = host_op_permute,
    .op_concat = host_op_concat,
    .op_slice = host_op_slice,
    .op_softmax = host_op_softmax,
    .op_where = host_op_where,
    .op_conv = host_op_conv,
    .op_pool = host_op_pool,
    .op_update = host_op_update,
    .op_batch_norm = host_op_batch_norm,
    .tensor_from_host = host_tensor_from_host,
    .op_index_select = host_op_index_select,
    .buffer_new_v2 = host_buffer_new_v2,
    .set_output_names = host_set_output_names,
    .op_rnn = host_op_rnn,
    .child_new = host_child_new,
    .op_cast = host_op_cast,
    .op_detach = host_op_detach,
    .op_arg_reduce = host_op_arg_reduce,
    .op_ctc_loss = host_op_ctc_loss,
    .op_embedding_bag = host_op_embedding_bag,
    .op_attention = host_op_attention,
    .descendant_tensor = host_descendant_tensor,
    .op_layer_norm = host_op_layer_norm,
};
