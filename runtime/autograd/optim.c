/* runtime/autograd/optim.c - optimizers: SGD (momentum, dampening, nesterov, weight
 * decay) and Adam/AdamW (betas, eps, weight decay, amsgrad), with parameter
 * groups, exactly torch.optim's single-tensor algorithms.
 *
 * An optimizer is made over every parameter of a module's tree, found through
 * the registry (nnm_module_named_parameters), never a hand list; it keeps each
 * parameter's dotted name (for state names and group prefixes), a reference on
 * the parameter and one on the module. The maths runs in the parameter's
 * device backend (sgd_step / adam_step slots, ABI 1.1) over contiguous f32
 * buffers; the runtime only owns the state and the bookkeeping.
 *
 * State is created on a parameter's first step with a .grad, on its device,
 * zero-filled (PyTorch's lazy state), so a steady-state step allocates
 * nothing. The step count is kept as an int64 and mirrored into a [1] f32 CPU
 * tensor (PyTorch keeps `step` on the CPU too); a value written into that
 * tensor through the state visitor (a restored checkpoint) is taken as the
 * count on the next step.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

enum optim_kind { OPTIM_SGD, OPTIM_ADAM };

/* Room for the longest state-name suffix (".momentum_buffer", 16 bytes) and
 * its NUL. */
#define SUFFIX_CAP sizeof(".momentum_buffer")

typedef struct optim_param {
    nnm_tensor *t;              /* referenced */
    char *name;                 /* "<dotted name>" + room for a state suffix */
    size_t name_len;
    uint32_t group;
    int64_t step;               /* updates taken (the truth; step_t mirrors it) */
    nnm_tensor *momentum_buf;   /* SGD with momentum != 0 */
    nnm_tensor *exp_avg;        /* Adam */
    nnm_tensor *exp_avg_sq;
    nnm_tensor *max_exp_avg_sq; /* amsgrad */
    nnm_tensor *step_t;         /* Adam: [1] f32 on the CPU */
} optim_param;

typedef struct optim_group {
    double lr;
    double weight_decay;
} optim_group;

struct nnm_optim {
    nnm_ctx *ctx;
    nnm_module *module;         /* referenced */
    int kind;                   /* enum optim_kind */
    int stepped;                /* a step has run: groups are frozen */
    /* hyper-parameters shared by every group */
    double momentum, dampening;
    int nesterov;
    double beta1, beta2, eps;
    int amsgrad, decoupled;
    optim_param *params;
    uint32_t n_params, cap_params;
    optim_group *groups;
    uint32_t n_groups;
};

/* ---- creation ----------------------------------------------------------- */

static void optim_destroy(nnm_optim *o) {
    for (uint32_t i = 0; i < o->n_params; i++) {
        optim_param *p = &o->params[i];
        nnm_tensor_release(p->momentum_buf);
        nnm_tensor_release(p->exp_avg);
        nnm_tensor_release(p->exp_avg_sq);
        nnm_tensor_release(p->max_exp_avg_sq);
        nnm_tensor_release(p->step_t);
        nnm_tensor_release(p->t);
        free(p->name);
    }
    free(o->params);
    free(o->groups);
    nnm_module_release(o->module);
    free(o);
}

static nnm_status collect_param(void *user, const char *name, nnm_tensor *t) {
    nnm_optim *o = user;
    /* A parameter shared by two modules is optimized once, under the first
     * name (named_parameters(remove_duplicate=True)). */
    for (uint32_t i = 0; i < o->n_params; i++)
        if (o->params[i].t == t) return NNM_OK;
    if (o->n_params == o->cap_params) {
        uint32_t cap = o->cap_params ? o->cap_params * 2 : 8;
        optim_param *v = realloc(o->params, cap * sizeof *v);
        if (!v) return nnm__error(o->ctx, NNM_E_NOMEM, "out of memory (optimizer)");
        o->params = v;
        o->cap_params = cap;
    }
    size_t len = strlen(name);
    char *copy = malloc(len + SUFFIX_CAP);
    if (!copy) return nnm__error(o->ctx, NNM_E_NOMEM, "out of memory (optimizer)");
    memcpy(copy, name, len + 1);
    optim_param *p = &o->params[o->n_params++];
    memset(p, 0, sizeof *p);
    p->t = t;
    nnm_tensor_retain(t);
    p->name = copy;
    p->name_len = len;
    p->group = 0;
    return NNM_OK;
}

/* Common part of the constructors: collects the parameters of m. */
static nnm_status optim_new(nnm_module *m, int kind, double lr, double weight_decay,
                            const char *who, nnm_optim **out) {
    nnm_ctx *ctx = m->ctx;
    nnm_optim *o = calloc(1, sizeof *o);
    if (!o) return nnm__error(ctx, NNM_E_NOMEM, "out of memory (optimizer)");
    o->ctx = ctx;
    o->kind = kind;
    o->module = m;
    nnm_module_retain(m);
    o->groups = malloc(sizeof *o->groups);
    if (!o->groups) {
        optim_destroy(o);
        return nnm__error(ctx, NNM_E_NOMEM, "out of memory (optimizer)");
    }
    o->groups[0].lr = lr;
    o->groups[0].weight_decay = weight_decay;
    o->n_groups = 1;
    nnm_status st = nnm_module_named_parameters(m, collect_param, o);
    if (st) {
        optim_destroy(o);
        return st;
    }
    if (o->n_params == 0) {
        optim_destroy(o);
        return nnm__error(ctx, NNM_E_INVALID, "%s: optimizer got an empty parameter list", who);
    }
    *out = o;
    return NNM_OK;
}

/* NaN fails every check below, as it should. */
static nnm_status check_lr_wd(nnm_ctx *ctx, const char *who, double lr, double weight_decay) {
    if (!(lr >= 0.0))
        return nnm__error(ctx, NNM_E_INVALID, "%s: Invalid learning rate: %g", who, lr);
    if (!(weight_decay >= 0.0))
        return nnm__error(ctx, NNM_E_INVALID, "%s: Invalid weight_decay value: %g", who,
                          weight_decay);
    return NNM_OK;
}

NNM_API nnm_status nnm_optim_sgd_new(nnm_module *m, const nnm_sgd_options *opts, nnm_optim **out) {
    static const char who[] = "nnm_optim_sgd_new";
    if (out) *out = NULL;
    if (!nnm__module_live(m)) return NNM_E_INVALID;
    nnm_ctx *ctx = m->ctx;
    if (!opts || !out) return nnm__error(ctx, NNM_E_INVALID, "%s: NULL argument", who);
    if (opts->struct_size < sizeof *opts)
        return nnm__error(ctx, NNM_E_INVALID, "%s: nnm_sgd_options.struct_size is %u, want %zu",
                          who, (unsigned)opts->struct_size, sizeof *opts);
    nnm_status st = check_lr_wd(ctx, who, opts->lr, opts->weight_decay);
    if (st) return st;
    if (!(opts->momentum >= 0.0))
        return nnm__error(ctx, NNM_E_INVALID, "%s: Invalid momentum value: %g", who,
                          opts->momentum);
    if (!isfinite(opts->dampening))
        return nnm__error(ctx, NNM_E_INVALID, "%s: Invalid dampening value: %g", who,
                          opts->dampening);
    if (opts->nesterov && (opts->momentum <= 0.0 || opts->dampening != 0.0))
        return nnm__error(ctx, NNM_E_INVALID,
                          "%s: Nesterov momentum requires a momentum and zero dampening", who);
    nnm_optim *o;
    if ((st = optim_new(m, OPTIM_SGD, opts->lr, opts->weight_decay, who, &o))) return st;
    o->momentum = opts->momentum;
    o->dampening = opts->dampening;
    o->nesterov = opts->nesterov != 0;
    *out = o;
    return NNM_OK;
}

NNM_API nnm_status nnm_optim_adam_new(nnm_module *m, const nnm_adam_options *opts,
                                      nnm_optim **out) {
    static const char who[] = "nnm_optim_adam_new";
    if (out) *out = NULL;
    if (!nnm__module_live(m)) return NNM_E_INVALID;
    nnm_ctx *ctx = m->ctx;
    if (!opts || !out) return nnm__error(ctx, NNM_E_INVALID, "%s: NULL argument", who);
    if (opts->struct_size < sizeof *opts)
        return nnm__error(ctx, NNM_E_INVALID, "%s: nnm_adam_options.struct_size is %u, want %zu",
                          who, (unsigned)opts->struct_size, sizeof *opts);
    nnm_status st = check_lr_wd(ctx, who, opts->lr, opts->weight_decay);
    if (st) return st;
    if (!(opts->eps >= 0.0))
        return nnm__error(ctx, NNM_E_INVALID, "%s: Invalid epsilon value: %g", who, opts->eps);
    if (!(opts->beta1 >= 0.0 && opts->beta1 < 1.0))
        return nnm__error(ctx, NNM_E_INVALID, "%s: Invalid beta parameter at index 0: %g", who,
                          opts->beta1);
    if (!(opts->beta2 >= 0.0 && opts->beta2 < 1.0))
        return nnm__error(ctx, NNM_E_INVALID, "%s: Invalid beta parameter at index 1: %g", who,
                          opts->beta2);
    nnm_optim *o;
    if ((st = optim_new(m, OPTIM_ADAM, opts->lr, opts->weight_decay, who, &o))) return st;
    o->beta1 = opts->beta1;
    o->beta2 = opts->beta2;
    o->eps = opts->eps;
    o->amsgrad = opts->amsgrad != 0;
    o->decoupled = opts->decoupled != 0;
    *out = o;
    return NNM_OK;
}

NNM_API void nnm_optim_free(nnm_optim *opt) {
    if (opt) optim_destroy(opt);
}

/* ---- groups ------------------------------------------------------------- */

NNM_API nnm_status nnm_optim_add_group(nnm_optim *opt, const char *prefix, double lr,
                                       double weight_decay, uint32_t *group) {
    static const char who[] = "nnm_optim_add_group";
    if (group) *group = UINT32_MAX;
    if (!opt) return NNM_E_INVALID;
    nnm_ctx *ctx = opt->ctx;
    if (!prefix) return nnm__error(ctx, NNM_E_INVALID, "%s: prefix is NULL", who);
    nnm_status st = check_lr_wd(ctx, who, lr, weight_decay);
    if (st) return st;
    if (opt->stepped)
        return nnm__error(ctx, NNM_E_STATE, "%s: groups must be added before the first step",
                          who);
    size_t plen = strlen(prefix);
    uint32_t matched = 0;
    for (uint32_t i = 0; i < opt->n_params; i++)
        if (strncmp(opt->params[i].name, prefix, plen) == 0) matched++;
    if (!matched)
        return nnm__error(ctx, NNM_E_NOT_FOUND, "%s: no parameter name starts with '%s'", who,
                          prefix);
    optim_group *g = realloc(opt->groups, (opt->n_groups + 1) * sizeof *g);
    if (!g) return nnm__error(ctx, NNM_E_NOMEM, "out of memory (optimizer group)");
    opt->groups = g;
    uint32_t idx = opt->n_groups++;
    g[idx].lr = lr;
    g[idx].weight_decay = weight_decay;
    /* Moved from whichever group held them: a later, narrower prefix can
     * split a group further. */
    for (uint32_t i = 0; i < opt->n_params; i++)
        if (strncmp(opt->params[i].name, prefix, plen) == 0) opt->params[i].group = idx;
    if (group) *group = idx;
    return NNM_OK;
}

NNM_API uint32_t nnm_optim_group_count(const nnm_optim *opt) { return opt ? opt->n_groups : 0; }

NNM_API nnm_status nnm_optim_set_lr(nnm_optim *opt, uint32_t group, double lr) {
    if (!opt) return NNM_E_INVALID;
    if (group >= opt->n_groups)
        return nnm__error(opt->ctx, NNM_E_INVALID, "nnm_optim_set_lr: no group %u (%u groups)",
                          (unsigned)group, (unsigned)opt->n_groups);
    if (!(lr >= 0.0))
        return nnm__error(opt->ctx, NNM_E_INVALID, "nnm_optim_set_lr: Invalid learning rate: %g",
                          lr);
    opt->groups[group].lr = lr;
    return NNM_OK;
}

/* NaN for a NULL optimizer or a group that does not exist. */
NNM_API double nnm_optim_get_lr(const nnm_optim *opt, uint32_t group) {
    if (!opt || group >= opt->n_groups) return NAN;
    return opt->groups[group].lr;
}

/* ---- step --------------------------------------------------------------- */

static int is_f32(const nnm_tensor *t) {
    return t->desc.dtype.code == NNM_DTYPE_FLOAT && t->desc.dtype.bits == 32 &&
           t->desc.dtype.lanes == 1;
}

static float *f32_data(nnm_tensor *t) {
    return (float *)(void *)((char *)t->desc.data + t->desc.byte_offset);
}

/* A zero-filled state tensor shaped like p, on p's device. */
static nnm_status state_new(nnm_ctx *ctx, const nnm_tensor *p, nnm_tensor **slot) {
    nnm_tensor *t;
    nnm_status st = nnm__tensor_alloc(ctx, p->desc.device, p->desc.dtype, p->desc.ndim, p->shape, &t);
    if (st) return st;
    if ((st = nnm__op_fill(ctx, t, 0.0))) {
        nnm_tensor_release(t);
        return st;
    }
    *slot = t;
    return NNM_OK;
}

static nnm_status check_state_device(nnm_ctx *ctx, const optim_param *p, const nnm_tensor *s) {
    if (!s || nnm__device_eq(s->desc.device, p->t->desc.device)) return NNM_OK;
    char ds[32], dp[32];
    return nnm__error(ctx, NNM_E_DEVICE,
                      "nnm_optim_step: the state of '%s' is on %s but the parameter is on %s "
                      "(the module moved after the optimizer's first step)",
                      p->name, nnm__device_name(s->desc.device, ds, sizeof ds),
                      nnm__device_name(p->t->desc.device, dp, sizeof dp));
}

/* Checks one parameter with a grad and creates its state if it has none.
 * Changes no parameter, so a failure here leaves the model as it was. */
static nnm_status prepare_param(nnm_optim *o, optim_param *p) {
    nnm_ctx *ctx = o->ctx;
    nnm_tensor *t = p->t, *g = t->grad;
    if (!is_f32(t) || !is_f32(g))
        return nnm__error(ctx, NNM_E_DTYPE,
                          "nnm_optim_step: parameter '%s': optimizers support f32 parameters "
                          "and gradients only", p->name);
    if (!nnm__tensor_is_contiguous(t))
        return nnm__error(ctx, NNM_E_UNSUPPORTED,
                          "nnm_optim_step: parameter '%s' is not contiguous", p->name);
    if (nnm_tensor_numel(g) != nnm_tensor_numel(t)) {
        char sg[128], sp[128];
        nnm__shape_str(&g->desc, sg, sizeof sg);
        nnm__shape_str(&t->desc, sp, sizeof sp);
        return nnm__error(ctx, NNM_E_SHAPE, "nnm_optim_step: parameter '%s' is %s but its grad %s",
                          p->name, sp, sg);
    }
    if (!nnm__device_eq(g->desc.device, t->desc.device)) {
        char dg[32], dp[32];
        return nnm__error(ctx, NNM_E_DEVICE,
                          "nnm_optim_step: parameter '%s' is on %s but its grad on %s", p->name,
                          nnm__device_name(t->desc.device, dp, sizeof dp),
                          nnm__device_name(g->desc.device, dg, sizeof dg));
    }
    nnm__backend *be;
    nnm_status st = nnm__backend_get(ctx, t->desc.device, &be);
    if (st) return st;
    int sgd = o->kind == OPTIM_SGD;
    if ((sgd && !be->vt->sgd_step) || (!sgd && !be->vt->adam_step)) {
        char dn[32];
        return nnm__error(ctx, NNM_E_UNSUPPORTED,
                          "nnm_optim_step: backend '%s' (device %s) has no %s slot; %s needs a "
                          "backend of ABI 1.1 or later that implements it",
                          be->vt->name, nnm__device_name(t->desc.device, dn, sizeof dn),
                          sgd ? "sgd_step" : "adam_step", sgd ? "SGD" : "Adam");
    }
    if (sgd) {
        if (o->momentum != 0.0 && !p->momentum_buf) {
            if ((st = state_new(ctx, t, &p->momentum_buf))) return st;
        }
        return check_state_device(ctx, p, p->momentum_buf);
    }
    if (!p->exp_avg && (st = state_new(ctx, t, &p->exp_avg))) return st;
    if (!p->exp_avg_sq && (st = state_new(ctx, t, &p->exp_avg_sq))) return st;
    if (o->amsgrad && !p->max_exp_avg_sq && (st = state_new(ctx, t, &p->max_exp_avg_sq)))
        return st;
    if (!p->step_t) {
        const int64_t one = 1;
        if ((st = nnm__tensor_alloc(ctx, (nnm_device){NNM_DEVICE_CPU, 0}, NNM_F32, 1, &one,
                                    &p->step_t)))
            return st;
        *f32_data(p->step_t) = (float)p->step;
    }
    if ((st = check_state_device(ctx, p, p->exp_avg)) ||
        (st = check_state_device(ctx, p, p->exp_avg_sq)) ||
        (st = check_state_device(ctx, p, p->max_exp_avg_sq)))
        return st;
    return NNM_OK;
}

/* Re-prefixes the backend's message with the parameter's name. */
static nnm_status step_failed(nnm_ctx *ctx, const optim_param *p, nnm_status st) {
    return nnm__error(ctx, st, "nnm_optim_step: parameter '%s': %s", p->name,
                      ctx->errmsg[0] ? ctx->errmsg : nnm_status_str(st));
}

static nnm_status update_param(nnm_optim *o, optim_param *p) {
    nnm_ctx *ctx = o->ctx;
    nnm_tensor *t = p->t, *g = t->grad, *gc = NULL;
    nnm__backend *be;
    nnm_status st = nnm__backend_get(ctx, t->desc.device, &be);
    if (st) return st;
    if (!nnm__tensor_is_contiguous(g)) {
        if ((st = nnm__op_unary(ctx, NNM_UNARY_COPY, g, 0, &gc))) return step_failed(ctx, p, st);
        g = gc;
    }
    const optim_group *grp = &o->groups[p->group];
    nnm__env env;
    nnm__env_init(&env, ctx, NULL, NNM__PHASE_BACKEND);
    ctx->errmsg[0] = 0;
    int64_t n = nnm_tensor_numel(t);
    if (o->kind == OPTIM_SGD) {
        nnm_sgd_args a;
        memset(&a, 0, sizeof a);
        a.struct_size = sizeof a;
        a.nesterov = o->nesterov;
        a.first_step = p->step == 0;
        a.n = n;
        a.param = f32_data(t);
        a.grad = f32_data(g);
        a.momentum_buf = p->momentum_buf ? f32_data(p->momentum_buf) : NULL;
        a.lr = grp->lr;
        a.momentum = o->momentum;
        a.dampening = o->dampening;
        a.weight_decay = grp->weight_decay;
        st = be->vt->sgd_step(&env.pub, be->state, &a);
    } else {
        /* A count restored into the visible step tensor wins. */
        float shown = *f32_data(p->step_t);
        if (shown != p->step && shown >= 0.0f && isfinite(shown)) p->step = (int64_t)shown;
        nnm_adam_args a;
        memset(&a, 0, sizeof a);
        a.struct_size = sizeof a;
        a.decoupled = o->decoupled;
        a.step = p->step + 1;
        a.n = n;
        a.param = f32_data(t);
        a.grad = f32_data(g);
        a.exp_avg = f32_data(p->exp_avg);
        a.exp_avg_sq = f32_data(p->exp_avg_sq);
        a.max_exp_avg_sq = p->max_exp_avg_sq ? f32_data(p->max_exp_avg_sq) : NULL;
        a.lr = grp->lr;
        a.beta1 = o->beta1;
        a.beta2 = o->beta2;
        a.eps = o->eps;
        a.weight_decay = grp->weight_decay;
        st = be->vt->adam_step(&env.pub, be->state, &a);
    }
    nnm_tensor_release(gc);
    if (st) return step_failed(ctx, p, st);
    p->step++;
    if (p->step_t) *f32_data(p->step_t) = (float)p->step;
    return NNM_OK;
}

NNM_API nnm_status nnm_optim_step(nnm_optim *opt) {
    if (!opt) return NNM_E_INVALID;
    if (!nnm__module_live(opt->module)) return NNM_E_STATE;
    /* Everything that can fail before a parameter changes is checked (and
     * state created) for all parameters first; only a backend failing
     * mid-way can leave some parameters updated and others not. */
    nnm_status st;
    for (uint32_t i = 0; i < opt->n_params; i++)
        if (opt->params[i].t->grad && (st = prepare_param(opt, &opt->params[i]))) return st;
    opt->stepped = 1;
    for (uint32_t i = 0; i < opt->n_params; i++)
        if (opt->params[i].t->grad && (st = update_param(opt, &opt->params[i]))) return st;
    return NNM_OK;
}

NNM_API nnm_status nnm_optim_zero_grad(nnm_optim *opt) {
    if (!opt) return NNM_E_INVALID;
    for (uint32_t i = 0; i < opt->n_params; i++) {
        nnm_tensor *t = opt->params[i].t;
        nnm_tensor *g = t->grad;
        t->grad = NULL;
        nnm_tensor_release(g);
    }
    return NNM_OK;
}

/* ---- state -------------------------------------------------------------- */

static nnm_status visit_state(optim_param *p, const char *suffix, nnm_tensor *t,
                              nnm_tensor_visit_fn fn, void *user) {
    if (!t) return NNM_OK;
    snprintf(p->name + p->name_len, SUFFIX_CAP, ".%s", suffix);
    nnm_status st = fn(user, p->name, t);
    p->name[p->name_len] = 0;
    return st;
}

NNM_API nnm_status nnm_optim_state(nnm_optim *opt, nnm_tensor_visit_fn fn, void *user) {
    if (!opt) return NNM_E_INVALID;
    if (!fn) return nnm__error(opt->ctx, NNM_E_INVALID, "nnm_optim_state: visitor is NULL");
    for (uint32_t i = 0; i < opt->n_params; i++) {
        optim_param *p = &opt->params[i];
        nnm_status st;
        if ((st = visit_state(p, "momentum_buffer", p->momentum_buf, fn, user)) ||
            (st = visit_state(p, "exp_avg", p->exp_avg, fn, user)) ||
            (st = visit_state(p, "exp_avg_sq", p->exp_avg_sq, fn, user)) ||
            (st = visit_state(p, "max_exp_avg_sq", p->max_exp_avg_sq, fn, user)) ||
            (st = visit_state(p, "step", p->step_t, fn, user)))
            return st;
    }
    return NNM_OK;
}

/* ---- checkpoint support (runtime/state/checkpoint.c) ------------------------- */
/* What nnm_checkpoint_save/_load need to read and restore an optimizer
 * exactly (internal.h, "optim.c: checkpoint support"). */

const char *const nnm__optim_slot_names[NNM__OPTIM_SLOTS] = {
    "momentum_buffer", "exp_avg", "exp_avg_sq", "max_exp_avg_sq", "step"};

void nnm__optim_info_get(const nnm_optim *o, nnm__optim_info *out) {
    memset(out, 0, sizeof *out);
    out->kind = o->kind == OPTIM_SGD ? NNM__OPTIM_SGD
                                     : (o->decoupled ? NNM__OPTIM_ADAMW : NNM__OPTIM_ADAM);
    out->stepped = o->stepped;
    out->momentum = o->momentum;
    out->dampening = o->dampening;
    out->nesterov = o->nesterov;
    out->beta1 = o->beta1;
    out->beta2 = o->beta2;
    out->eps = o->eps;
    out->amsgrad = o->amsgrad;
    out->n_groups = o->n_groups;
    out->n_params = o->n_params;
    out->ctx = o->ctx;
    out->module = o->module;
}

void nnm__optim_group_get(const nnm_optim *o, uint32_t g, double *lr, double *weight_decay) {
    *lr = o->groups[g].lr;
    *weight_decay = o->groups[g].weight_decay;
}

void nnm__optim_param_get(const nnm_optim *o, uint32_t i, nnm__optim_pstate *out) {
    const optim_param *p = &o->params[i];
    out->name = p->name;
    out->param = p->t;
    out->group = p->group;
    out->step = p->step;
    out->slot[0] = p->momentum_buf;
    out->slot[1] = p->exp_avg;
    out->slot[2] = p->exp_avg_sq;
    out->slot[3] = p->max_exp_avg_sq;
    out->slot[4] = p->step_t;
}

void nnm__optim_restore(nnm_optim *o, const nnm__optim_info *info, const double *lr,
                        const double *weight_decay, const nnm__optim_pstate *ps) {
    o->stepped = info->stepped;
    o->momentum = info->momentum;
    o->dampening = info->dampening;
    o->nesterov = info->nesterov;
    o->beta1 = info->beta1;
    o->beta2 = info->beta2;
    o->eps = info->eps;
    o->amsgrad = info->amsgrad;
    for (uint32_t g = 0; g < o->n_groups; g++) {
        o->groups[g].lr = lr[g];
        o->groups[g].weight_decay = weight_decay[g];
    }
    for (uint32_t i = 0; i < o->n_params; i++) {
        optim_param *p = &o->params[i];
        nnm_tensor **slots[NNM__OPTIM_SLOTS] = {&p->momentum_buf, &p->exp_avg, &p->exp_avg_sq,
                                                &p->max_exp_avg_sq, &p->step_t};
        p->step = ps[i].step;
        for (int k = 0; k < NNM__OPTIM_SLOTS; k++) {
            nnm_tensor_release(*slots[k]);
            *slots[k] = ps[i].slot[k];
        }
    }
}
