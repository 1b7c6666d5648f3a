/* runtime/module/call.c - THE call path: module(x).
 *
 * nnm_module_call is the only way a layer's forward runs. In order:
 *   1. the module is live, arity fits, inputs are non-NULL;
 *   2. global forward-pre-hooks, then the module's (each may replace inputs);
 *   3. inputs are on the module's device and match its declared input specs;
 *   4. the call context (training flag, grad mode, device) is built and
 *      forward runs;
 *   5. global forward hooks, then the module's (each may replace outputs);
 *   6. (backward hooks attach here with autograd);
 *   7. a profiler event, when a profiler is set.
 * With no hooks and no profiler the call takes a fast path that does steps 1,
 * 3 and 4 only, with no allocation.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static nnm_status fail(nnm_module *m, nnm_status code, const char *fmt, ...) NNM__PRINTF(3, 4);
static nnm_status fail(nnm_module *m, nnm_status code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    nnm__verror(m->ctx, code, fmt, ap);
    va_end(ap);
    nnm__error_attribute(m->ctx, m);
    return code;
}

static nnm_status check_arity(nnm_module *m, nnm_tensor *const *in, uint32_t n_in, nnm_tensor **out,
                              uint32_t n_out) {
    const nnm_layer_vtable *vt = m->vt;
    if (NNM__UNLIKELY(n_in > NNM__MAX_IO || n_out > NNM__MAX_IO))
        return fail(m, NNM_E_LIMIT, "at most %d inputs and outputs per call", NNM__MAX_IO);
    if (NNM__UNLIKELY(vt->n_inputs != NNM_ARITY_ANY && n_in != (uint32_t)vt->n_inputs))
        return fail(m, NNM_E_SHAPE, "expected %d input%s, got %u", (int)vt->n_inputs,
                    vt->n_inputs == 1 ? "" : "s", n_in);
    if (NNM__UNLIKELY(vt->n_outputs != NNM_ARITY_ANY && n_out != (uint32_t)vt->n_outputs))
        return fail(m, NNM_E_SHAPE, "produces %d output%s, caller asked for %u", (int)vt->n_outputs,
                    vt->n_outputs == 1 ? "" : "s", n_out);
    if (NNM__UNLIKELY((n_in && !in) || (n_out && !out)))
        return fail(m, NNM_E_INVALID, "input or output array is NULL");
    return NNM_OK;
}

static void spec_str(const nnm__input_spec *s, char *buf, size_t cap) {
    size_t n = 0;
    int w = snprintf(buf, cap, "[%s", (s->flags & NNM_SPEC_LEADING_ANY) ? "*" : "");
    n += w > 0 ? (size_t)w : 0;
    for (int32_t i = 0; i < s->ndim && n < cap; i++) {
        const char *sep = (i || (s->flags & NNM_SPEC_LEADING_ANY)) ? ", " : "";
        if (s->dims[i] < 0)
            w = snprintf(buf + n, cap - n, "%s?", sep);
        else
            w = snprintf(buf + n, cap - n, "%s%lld", sep, (long long)s->dims[i]);
        n += w > 0 ? (size_t)w : 0;
    }
    if (n < cap) snprintf(buf + n, cap - n, "]");
}

static int spec_matches(const nnm__input_spec *s, const nnm_tensor *t) {
    int32_t nd = t->desc.ndim;
    if (s->flags & NNM_SPEC_LEADING_ANY) {
        if (nd < s->ndim) return 0;
    } else if (nd != s->ndim) {
        return 0;
    }
    int32_t off = nd - s->ndim;
    for (int32_t i = 0; i < s->ndim; i++)
        if (s->dims[i] >= 0 && t->shape[off + i] != s->dims[i]) return 0;
    return 1;
}

static nnm_status inputs_failed(nnm_module *m, nnm_tensor *const *in, uint32_t n_in) {
    for (uint32_t i = 0; i < n_in; i++) {
        const nnm_tensor *t = in[i];
        if (NNM__UNLIKELY(!t)) return fail(m, NNM_E_INVALID, "input %u is NULL", i);
        if (NNM__UNLIKELY(!nnm__device_eq(t->desc.device, m->device))) {
            char a[32], b[32];
            return fail(m, NNM_E_DEVICE, "input %u is on %s, module is on %s", i,
                        nnm__device_name(t->desc.device, a, sizeof a),
                        nnm__device_name(m->device, b, sizeof b));
        }
        if (i < m->n_specs && m->specs[i].ndim >= 0 && !spec_matches(&m->specs[i], t)) {
            char want[160], got[160];
            spec_str(&m->specs[i], want, sizeof want);
            nnm__shape_str(&t->desc, got, sizeof got);
            if (n_in > 1) return fail(m, NNM_E_SHAPE, "expected input %u %s, got %s", i, want, got);
            return fail(m, NNM_E_SHAPE, "expected input %s, got %s", want, got);
        }
    }
    return NNM_OK;
}

/* Inputs non-NULL, on the module's device and matching its specs: tested
 * inline, every call; inputs_failed finds which is wrong and says so. */
static inline nnm_status check_inputs(nnm_module *m, nnm_tensor *const *in, uint32_t n_in) {
    for (uint32_t i = 0; i < n_in; i++) {
        const nnm_tensor *t = in[i];
        if (NNM__UNLIKELY(!t || !nnm__device_eq(t->desc.device, m->device) ||
                          (i < m->n_specs && m->specs[i].ndim >= 0 && !spec_matches(&m->specs[i], t))))
            return inputs_failed(m, in, n_in);
    }
    return NNM_OK;
}

/* A plugin stores one new reference in each slot it fills (forward's
 * out[i], backward's grad_in[i]), also when it then fails (the runtime
 * releases what it left there). A tensor it borrowed (an input; a grad_out
 * or a saved tensor) handed back, or one tensor stored in several slots, must
 * have gained a reference per slot, else it would be released once too often
 * (a use after free). `refs` holds each borrowed tensor's count before the
 * call. Slots that own nothing are taken out (set to NULL, not released);
 * with `report`, the first lie fails the call naming the slots. Cheap: the
 * callers look for a repeated pointer first. */
typedef struct owned_check {
    nnm_tensor *const *borrowed;
    const uint32_t *refs;
    uint32_t n_borrowed;
    nnm_tensor *const *held;          /* each holds one more reference (forward's saved tensors) */
    uint32_t n_held;
    uint32_t split;                   /* borrowed[b < split] are src[0] b, the rest src[1] b - split */
    const char *src[2];               /* "input"; "grad_out", "saved tensor" */
    const char *fn;                   /* "forward", "backward" */
    const char *slot_name;            /* "output", "grad_in" */
} owned_check;

static nnm_status unowned_slots(nnm_module *m, const owned_check *c, nnm_tensor **slot, uint32_t n_slot,
                                int report) {
    nnm_status st = NNM_OK;
    for (uint32_t j = 0; j < n_slot; j++) {
        nnm_tensor *t = slot[j];
        if (!t) continue;
        int seen = 0; /* checked at its first slot */
        for (uint32_t e = 0; e < j && !seen; e++) seen = slot[e] == t;
        if (seen) continue;
        uint32_t k = 0, second = j;
        for (uint32_t e = j; e < n_slot; e++)
            if (slot[e] == t && k++ == 1) second = e;
        uint32_t base = 0, b = 0;
        for (; b < c->n_borrowed; b++)
            if (c->borrowed[b] == t) {
                base = c->refs[b];
                break;
            }
        for (uint32_t h = 0; h < c->n_held; h++) base += c->held[h] == t;
        if (t->refs >= base + k) continue;
        uint32_t missing = base + k - t->refs;
        if (missing > k) missing = k;
        for (uint32_t e = n_slot; e-- > j && missing;)
            if (slot[e] == t) slot[e] = NULL, missing--;
        if (!report || st) continue;
        if (b < c->n_borrowed)
            st = fail(m, NNM_E_PLUGIN,
                      "%s returned %s %u as %s %u without taking a reference (host->tensor_retain)",
                      c->fn, c->src[b >= c->split], b < c->split ? b : b - c->split, c->slot_name, j);
        else
            st = fail(m, NNM_E_PLUGIN,
                      "%s returned the same tensor as %s %u and %s %u with fewer references than "
                      "slots (store a new reference in each: host->tensor_retain)",
                      c->fn, c->slot_name, j, c->slot_name, second);
    }
    return st;
}

/* 1 when a slot repeats a borrowed tensor or an earlier slot. */
static inline int slots_repeat(nnm_tensor *const *borrowed, uint32_t n_borrowed, nnm_tensor *const *slot,
                               uint32_t n_slot) {
    int hit = 0;
    for (uint32_t j = 0; j < n_slot; j++) {
        if (!slot[j]) continue;
        for (uint32_t i = 0; i < n_borrowed; i++) hit |= slot[j] == borrowed[i];
        for (uint32_t e = 0; e < j; e++) hit |= slot[j] == slot[e];
    }
    return hit;
}

/* ---- custom-backward layers ---------------------------------------------- */

/* Does a call of m on these inputs need a node for its own backward? */
static int custom_node_needed(const nnm_module *m, nnm_tensor *const *in, uint32_t n_in) {
    if (!m->vt->backward || !nnm__grad_enabled()) return 0;
    for (uint32_t i = 0; i < n_in; i++)
        if (in[i]->flags & NNM__T_REQUIRES_GRAD) return 1;
    for (uint32_t i = 0; i < m->n_params; i++)
        if (m->params[i].t->flags & NNM__T_REQUIRES_GRAD) return 1;
    return 0;
}

/* A plugin's failure status, made a proper nnm_status with a message: a
 * positive or unknown code becomes NNM_E_PLUGIN, and a failure that set no
 * message (err_seq unchanged since `seq`) gets one saying so. */
static nnm_status plugin_failed(nnm_ctx *ctx, nnm_status st, uint64_t seq, const char *what) {
    nnm_status code = st > 0 || !strcmp(nnm_status_name(st), "unknown") ? NNM_E_PLUGIN : st;
    if (code != st)
        nnm__error(ctx, code, "%s failed with status %d, which is not an nnm_status%s%s", what,
                   (int)st, ctx->err_seq != seq ? ": " : "", ctx->err_seq != seq ? ctx->errmsg : "");
    else if (ctx->err_seq == seq)
        nnm__error(ctx, code, "%s failed with %s and no message", what, nnm_status_name(code));
    return code;
}

/* Input i's shape as recorded for a custom node. */
static const int64_t *node_in_shape(const nnm__node *n, uint32_t i, int32_t *ndim) {
    if (n->in_shapes) {
        const int64_t *p = n->in_shapes + (size_t)i * (NNM_MAX_DIMS + 1);
        *ndim = (int32_t)p[0];
        return p + 1;
    }
    *ndim = n->in_ndim[i];
    return n->in_shape[i];
}

/* Records the inputs' shapes on n, to check what its backward returns (up
 * to 2 inline, more in a malloc'd table). Returns nonzero when out of memory. */
static int record_in_shapes(nnm__node *n, nnm_tensor *const *in, uint32_t n_in) {
    int64_t *meta = n_in > 2 ? malloc((size_t)n_in * (NNM_MAX_DIMS + 1) * sizeof *meta) : NULL;
    if (n_in > 2 && !meta) return 1;
    n->in_shapes = meta;
    for (uint32_t i = 0; i < n_in; i++) {
        const nnm_tensor *x = in[i];
        if (meta) {
            meta[(size_t)i * (NNM_MAX_DIMS + 1)] = x->desc.ndim;
            memcpy(meta + (size_t)i * (NNM_MAX_DIMS + 1) + 1, x->shape, (size_t)x->desc.ndim * sizeof *meta);
        } else {
            n->in_ndim[i] = x->desc.ndim;
            memcpy(n->in_shape[i], x->shape, (size_t)x->desc.ndim * sizeof *meta);
        }
    }
    return 0;
}

/* PyTorch's validate_outputs: a gradient must have its input's dtype and
 * device, and a shape the input's expands to (then it is summed down to the
 * input's shape); anything else is refused at the node, naming the module. */
static nnm_status check_grad(nnm_ctx *ctx, nnm__node *n, uint32_t i, nnm_tensor **g) {
    nnm_module *m = n->module;
    nnm_tensor *t = *g;
    char a[160], b[160];
    if (t->desc.dtype.code != NNM_DTYPE_FLOAT || t->desc.dtype.bits != 32 || t->desc.dtype.lanes != 1)
        return nnm__error(ctx, NNM_E_DTYPE,
                          "backward returned an invalid gradient at index %u - expected dtype f32 "
                          "but got another dtype (code %u, %u bits)",
                          i, t->desc.dtype.code, t->desc.dtype.bits);
    if (!nnm__device_eq(t->desc.device, m->device))
        return nnm__error(ctx, NNM_E_DEVICE,
                          "backward returned an invalid gradient at index %u - expected device %s "
                          "but got %s",
                          i, nnm__device_name(m->device, a, sizeof a),
                          nnm__device_name(t->desc.device, b, sizeof b));
    int32_t nd;
    const int64_t *shape = node_in_shape(n, i, &nd);
    int same = t->desc.ndim == nd, expandable = nd <= t->desc.ndim;
    for (int32_t d = 0; d < nd; d++) {
        int64_t want = shape[d];
        same &= t->desc.ndim == nd && t->shape[d] == want;
        /* a gradient of fewer dims than the input is never expandable (and
         * has no dim to compare: do not index before its shape) */
        if (expandable) {
            int64_t got = t->shape[t->desc.ndim - nd + d];
            expandable &= got == want || want == 1;
        }
    }
    if (same) return NNM_OK;
    if (!expandable) {
        nnm_tensor_desc want = t->desc;
        want.ndim = nd;
        want.shape = (int64_t *)shape;
        nnm__shape_str(&t->desc, a, sizeof a);
        nnm__shape_str(&want, b, sizeof b);
        return nnm__error(ctx, NNM_E_SHAPE,
                          "backward returned an invalid gradient at index %u - got %s but expected "
                          "shape compatible with %s",
                          i, a, b);
    }
    nnm_tensor *sum;
    nnm_status st = nnm__sum_to(ctx, t, nd, shape, &sum);
    if (st) return st;
    nnm_tensor_release(t);
    *g = sum;
    return NNM_OK;
}

static nnm_status custom_backward(nnm_ctx *ctx, nnm__node *n, nnm_tensor *const *gout, nnm_tensor **gin) {
    nnm_module *m = n->module;
    nnm__env env;
    nnm__env_init(&env, ctx, m, NNM__PHASE_BACKWARD);
    env.grad = 0;
    env.node = n;
    /* what backward borrows: the gradients of the outputs, the saved tensors */
    nnm_tensor *borrowed[NNM__MAX_IO + NNM__NODE_SAVED];
    uint32_t refs[NNM__MAX_IO + NNM__NODE_SAVED], nb = 0;
    for (uint32_t i = 0; i < n->n_out; i++, nb++) {
        borrowed[nb] = gout[i];
        refs[nb] = gout[i] ? gout[i]->refs : 0;
    }
    for (uint32_t i = 0; i < n->n_saved; i++, nb++) {
        borrowed[nb] = n->saved[i];
        refs[nb] = n->saved[i] ? n->saved[i]->refs : 0;
    }
    uint64_t seq = ctx->err_seq;
    nnm_status st = m->vt->backward(&env.pub, m->self, gout, n->n_out, gin, n->n_in);
    if (st) st = plugin_failed(ctx, st, seq, "backward");
    if (NNM__UNLIKELY(slots_repeat(borrowed, nb, gin, n->n_in))) {
        const owned_check c = {borrowed, refs, nb, NULL, 0, n->n_out, {"grad_out", "saved tensor"},
                               "backward", "grad_in"};
        nnm_status own = unowned_slots(m, &c, gin, n->n_in, !st);
        if (!st) st = own;
    }
    for (uint32_t i = 0; i < n->n_in && !st; i++) {
        if (!gin[i]) continue;
        if (!n->next[i].fn && !n->next[i].leaf) { /* needs none: dropped, as PyTorch */
            nnm_tensor_release(gin[i]);
            gin[i] = NULL;
            continue;
        }
        st = check_grad(ctx, n, i, &gin[i]);
    }
    if (st) {
        nnm__error_attribute(ctx, m);
        for (uint32_t i = 0; i < n->n_in; i++) {
            nnm_tensor_release(gin[i]);
            gin[i] = NULL;
        }
    }
    return st;
}

/* Records one node for a custom-backward call: edges to the inputs, the
 * tensors forward saved, and the outputs attached to it. Takes the saved
 * references. */
nnm_status nnm__record_layer(nnm_module *m, nnm_tensor *const *in, uint32_t n_in, nnm_tensor **out,
                             uint32_t n_out, nnm_tensor **saved, uint32_t n_saved) {
    nnm__node *n = nnm__node_new(m->ctx, "CustomBackward", custom_backward, in, n_in, n_out);
    if (!n) {
        for (uint32_t i = 0; i < n_saved; i++) nnm_tensor_release(saved[i]);
        return nnm__error(m->ctx, NNM_E_NOMEM, "out of memory (autograd node)");
    }
    for (uint32_t i = 0; i < n_saved; i++) n->saved[i] = saved[i];
    n->n_saved = n_saved;
    n->module = m;
    memset(n->hook_grad_out, 0, sizeof n->hook_grad_out);
    n->kind |= NNM__NODE_CUSTOM;
    m->refs++;
    if (record_in_shapes(n, in, n_in)) {
        nnm__node_release(n);
        return nnm__error(m->ctx, NNM_E_NOMEM, "out of memory (autograd node)");
    }
    nnm_status st = NNM_OK;
    for (uint32_t i = 0; i < n_out && !st; i++) {
        nnm_tensor *o = out[i];
        if (o->grad_fn || (o->flags & NNM__T_REQUIRES_GRAD)) {
            /* an input or parameter passed through: attach to an alias, never
             * to the caller's tensor */
            nnm_tensor *alias;
            if ((st = nnm__tensor_view(o, o->desc.ndim, o->shape, o->strides, &alias))) break;
            nnm_tensor_release(o);
            out[i] = o = alias;
        }
        nnm__node_attach(n, o, i);
    }
    nnm__node_release(n);
    return st;
}

/* ---- full backward hooks ------------------------------------------------- *
 * A module with backward hooks gets two identity nodes around its call: one
 * over its inputs (it sees the inputs' gradients: the full backward hook) and
 * one over its outputs (it sees the outputs' gradients: the pre-hook). The
 * output node hands the outputs' gradients to the input node through `peer`. */

/* The hook lists of one event are snapshotted together (PyTorch builds one
 * tuple of the global and the module's hooks before running any): the caller
 * marks both lists running, takes both `start`s, runs them, then ends them. */
static nnm_status run_bw_list(nnm_module *m, nnm__hook_list *l, uint64_t start, int pre, nnm_tensor **g,
                              uint32_t n_g, nnm_tensor *const *gout, uint32_t n_out) {
    nnm_status st = NNM_OK;
    for (nnm__hook *h = l->head; h && !st; h = h->next) {
        if (!nnm__hook_runs(h, start)) continue;
        nnm_tensor *before[NNM__MAX_IO];
        memcpy(before, g, n_g * sizeof *g);
        uint64_t seq = m->ctx->err_seq;
        st = pre ? h->fn.bw_pre(h->user, m, g, n_g) : h->fn.bw(h->user, m, g, n_g, gout, n_out);
        for (uint32_t i = 0; i < n_g; i++)
            if (g[i] != before[i]) nnm_tensor_release(before[i]); /* a hook put a new reference */
        if (st) {
            if (st > 0) st = NNM_E_HOOK;
            fail(m, st, "%s failed: %s", pre ? "backward pre-hook" : "backward hook",
                 m->ctx->err_seq != seq ? m->ctx->errmsg : nnm_status_str(st));
        }
    }
    return st;
}

/* Backward hooks are captured when the forward runs, as PyTorch's
 * _call_impl takes the lists of (global and module) backward hooks before
 * the forward pre-hooks and hands them to the BackwardHook of that call: a
 * hook removed between the forward and the backward still runs, one added
 * then does not. A hook node keeps the seq of each list at that moment
 * (u.hook_start, in bw_lists' order) and holds the lists `running`, so a hook
 * removed since stays alive (and its user_free waits) until the node drops
 * its saved state (after its last backward, or when it is freed). */
static void bw_lists(nnm_module *m, nnm__hook_list *l[4]) {
    l[0] = &m->ctx->gbw_pre_hooks;
    l[1] = &m->bw_pre_hooks;
    l[2] = &m->ctx->gbw_hooks;
    l[3] = &m->bw_hooks;
}

static void bw_hold(nnm_module *m, uint64_t *start) {
    nnm__hook_list *l[4];
    bw_lists(m, l);
    for (int i = 0; i < 4; i++) {
        if (start) start[i] = l[i]->seq;
        l[i]->running++;
    }
}

static void bw_unhold(nnm_module *m) {
    nnm__hook_list *l[4];
    bw_lists(m, l);
    for (int i = 0; i < 4; i++) nnm__hook_list_end(l[i]);
}

void nnm__bw_hooks_drop(nnm__node *n) {
    n->kind &= ~NNM__NODE_HOOKS_HELD;
    bw_unhold(n->module);
}

/* Does a captured list hold a hook that runs? */
static int bw_any(const nnm__hook_list *l, uint64_t start) {
    for (const nnm__hook *h = l->head; h; h = h->next)
        if (nnm__hook_runs(h, start)) return 1;
    return 0;
}

/* Global hooks, then the module's, as n captured them. */
static nnm_status run_bw_hooks(nnm__node *n, int pre, nnm_tensor **g, uint32_t n_g,
                               nnm_tensor *const *gout, uint32_t n_out) {
    nnm_module *m = n->module;
    nnm_ctx *ctx = m->ctx;
    nnm__hook_list *gl = pre ? &ctx->gbw_pre_hooks : &ctx->gbw_hooks;
    nnm__hook_list *ml = pre ? &m->bw_pre_hooks : &m->bw_hooks;
    uint64_t gs = n->u.hook_start[pre ? 0 : 2], ms = n->u.hook_start[pre ? 1 : 3];
    if (!gl->head && !ml->head) return NNM_OK;
    gl->running++;
    ml->running++;
    nnm_status st = run_bw_list(m, gl, gs, pre, g, n_g, gout, n_out);
    if (!st) st = run_bw_list(m, ml, ms, pre, g, n_g, gout, n_out);
    nnm__hook_list_end(gl);
    nnm__hook_list_end(ml);
    return st;
}

/* What the hooks left in gin goes on through the graph: the engine's
 * validate_outputs rules apply (PyTorch checks BackwardHookFunctionBackward's
 * results the same way), so a hook that returns a gradient of another shape,
 * dtype or device fails here, naming the module, instead of corrupting the
 * gradients upstream. */
static nnm_status check_hook_grads(nnm_ctx *ctx, nnm__node *n, nnm_tensor **gin) {
    nnm_status st = NNM_OK;
    for (uint32_t i = 0; i < n->n_out && !st; i++)
        if (gin[i]) st = check_grad(ctx, n, i, &gin[i]);
    if (st) nnm__error_attribute(ctx, n->module);
    return st;
}

static nnm_status hook_out_backward(nnm_ctx *ctx, nnm__node *n, nnm_tensor *const *gout, nnm_tensor **gin) {
    nnm_module *m = n->module;
    for (uint32_t i = 0; i < n->n_out; i++) {
        gin[i] = gout[i];
        nnm_tensor_retain(gin[i]);
    }
    nnm_status st = run_bw_hooks(n, 1, gin, n->n_out, NULL, 0);
    if (!st) st = check_hook_grads(ctx, n, gin);
    if (!st && n->peer) {
        for (uint32_t i = 0; i < n->n_out; i++) {
            nnm_tensor_release(n->peer->hook_grad_out[i]);
            n->peer->hook_grad_out[i] = gin[i];
            nnm_tensor_retain(gin[i]);
        }
        n->peer->ival = n->n_out;
    } else if (!st && (bw_any(&ctx->gbw_hooks, n->u.hook_start[2]) ||
                       bw_any(&m->bw_hooks, n->u.hook_start[3]))) {
        /* No input needs a gradient: the hook sees one NULL per input of
         * the call (ival), as PyTorch passes (None,) * n_inputs, and may not
         * put a gradient there ("should always return None"). */
        nnm_tensor *none[NNM__MAX_IO] = {0};
        uint32_t n_in = (uint32_t)n->ival;
        st = run_bw_hooks(n, 0, none, n_in, gin, n->n_out);
        int put = 0;
        for (uint32_t i = 0; i < NNM__MAX_IO; i++) {
            put |= none[i] != NULL;
            nnm_tensor_release(none[i]);
        }
        if (!st && put)
            st = fail(m, NNM_E_HOOK,
                      "backward hook for a call where no input requires gradient must leave "
                      "every grad_in NULL");
    }
    return st;
}

/* The full backward hook over the inputs' gradients. An input of the call
 * that needs no gradient (while another does) shows zeros of its shape, as
 * PyTorch's BackwardHookFunction marks it non-differentiable and
 * materializes its gradient (f32 here, where PyTorch keeps an integer
 * input's dtype); whatever a hook leaves there goes nowhere, so it is
 * dropped unchecked. With no input needing a gradient, hook_out_backward
 * passes NULLs (PyTorch's (None,) * n). */
static nnm_status hook_in_backward(nnm_ctx *ctx, nnm__node *n, nnm_tensor *const *gout, nnm_tensor **gin) {
    nnm_status st = NNM_OK;
    for (uint32_t i = 0; i < n->n_out; i++) {
        gin[i] = gout[i];
        nnm_tensor_retain(gin[i]);
    }
    for (uint32_t i = 0; i < n->n_out && !st; i++)
        if (!gin[i] && !n->next[i].fn && !n->next[i].leaf) {
            int32_t nd;
            const int64_t *shape = node_in_shape(n, i, &nd);
            st = nnm__op_full(ctx, n->module->device, nd, shape, 0.0, &gin[i]);
        }
    if (!st) st = run_bw_hooks(n, 0, gin, n->n_out, n->hook_grad_out, (uint32_t)n->ival);
    for (uint32_t i = 0; i < n->n_out; i++)
        if (!n->next[i].fn && !n->next[i].leaf) {
            nnm_tensor_release(gin[i]);
            gin[i] = NULL;
        }
    return st ? st : check_hook_grads(ctx, n, gin);
}

/* Replaces each tensor of v that requires grad with an alias that is output i
 * of a new identity node over v; *node gets the node (NULL if none needed).
 * `owned` marks entries the caller holds references to (bit i). */
static nnm_status wrap(nnm_module *m, nnm__backward_fn fn, const uint64_t *bw_start, nnm_tensor **v,
                       uint32_t n, uint32_t *owned, nnm__node **node) {
    *node = NULL;
    int any = 0;
    for (uint32_t i = 0; i < n; i++) any |= (v[i]->flags & NNM__T_REQUIRES_GRAD) != 0;
    if (!any) return NNM_OK;
    nnm__node *nd = nnm__node_new(m->ctx, "BackwardHookFunctionBackward", fn, v, n, n);
    if (!nd) return nnm__error(m->ctx, NNM_E_NOMEM, "out of memory (autograd node)");
    nd->module = m;
    memset(nd->hook_grad_out, 0, sizeof nd->hook_grad_out);
    m->refs++;
    memcpy(nd->u.hook_start, bw_start, sizeof nd->u.hook_start);
    bw_hold(m, NULL);
    nd->kind |= NNM__NODE_HOOKS_HELD;
    if (record_in_shapes(nd, v, n)) {
        nnm__node_release(nd);
        return nnm__error(m->ctx, NNM_E_NOMEM, "out of memory (autograd node)");
    }
    nnm_status st = NNM_OK;
    for (uint32_t i = 0; i < n && !st; i++) {
        if (!(v[i]->flags & NNM__T_REQUIRES_GRAD)) continue;
        nnm_tensor *alias;
        if ((st = nnm__tensor_view(v[i], v[i]->desc.ndim, v[i]->shape, v[i]->strides, &alias))) break;
        nnm__node_attach(nd, alias, i);
        if (*owned & (1u << i)) nnm_tensor_release(v[i]);
        v[i] = alias;
        *owned |= 1u << i;
    }
    if (st) nnm__node_release(nd);
    else *node = nd;
    return st;
}

/* Forward's slots (the common case inline: no output repeats an input or
 * another output). */
static inline nnm_status check_passthrough(nnm_module *m, nnm_tensor *const *in, uint32_t n_in,
                                           const uint32_t *refs, nnm_tensor **out, uint32_t n_out,
                                           nnm_tensor *const *saved, uint32_t n_saved, int report) {
    if (NNM__LIKELY(!slots_repeat(in, n_in, out, n_out))) return NNM_OK;
    const owned_check c = {in, refs, n_in, saved, n_saved, n_in, {"input", "input"}, "forward", "output"};
    return unowned_slots(m, &c, out, n_out, report);
}

/* Releases the outputs of a call that failed, leaving them NULL. */
static nnm_status drop_outputs(nnm_status st, nnm_tensor **out, uint32_t n_out) {
    for (uint32_t i = 0; i < n_out; i++) {
        nnm_tensor_release(out[i]);
        out[i] = NULL;
    }
    return st;
}

/* What a forward returned, checked: a failure made a proper status with a
 * message naming the module, an output left NULL, a borrowed input (or one
 * new tensor in two outputs) handed back without a reference per slot
 * (refs: the inputs' counts before the call; saved/n_saved: what a custom
 * layer saved, each holding one more). On any failure the outputs it owns
 * are released, those it does not own taken out. */
static __attribute__((noinline)) nnm_status forward_check(nnm_module *m, nnm_status st, uint64_t seq,
                                                          nnm_tensor *const *in, uint32_t n_in,
                                                          const uint32_t *refs, nnm_tensor **out,
                                                          uint32_t n_out, nnm_tensor *const *saved,
                                                          uint32_t n_saved) {
    if (st) {
        st = plugin_failed(m->ctx, st, seq, "forward");
        nnm__error_attribute(m->ctx, m);
    }
    for (uint32_t i = 0; !st && i < n_out; i++)
        if (!out[i]) st = fail(m, NNM_E_PLUGIN, "forward returned OK but left output %u NULL", i);
    if (!st) st = check_passthrough(m, in, n_in, refs, out, n_out, saved, n_saved, 1);
    if (!st) return NNM_OK;
    (void)check_passthrough(m, in, n_in, refs, out, n_out, saved, n_saved, 0); /* only what it owns */
    return drop_outputs(st, out, n_out);
}

/* forward_check's common case inline: OK, every output set, none of them
 * an input or another output. */
static inline nnm_status forward_returned(nnm_module *m, nnm_status st, uint64_t seq,
                                          nnm_tensor *const *in, uint32_t n_in, const uint32_t *refs,
                                          nnm_tensor **out, uint32_t n_out) {
    int plain = st == NNM_OK;
    for (uint32_t j = 0; j < n_out; j++) {
        plain &= out[j] != NULL;
        for (uint32_t i = 0; i < n_in; i++) plain &= out[j] != in[i];
        for (uint32_t e = 0; e < j; e++) plain &= out[j] != out[e];
    }
    return NNM__LIKELY(plain) ? NNM_OK : forward_check(m, st, seq, in, n_in, refs, out, n_out, NULL, 0);
}

/* A custom-backward layer's forward: it computes without recording, and the
 * call is recorded as one node. */
static __attribute__((noinline)) nnm_status run_custom(nnm_module *m, nnm_tensor *const *in, uint32_t n_in,
                                                        nnm_tensor **out, uint32_t n_out) {
    nnm_ctx *ctx = m->ctx;
    nnm__env env;
    nnm__env_init(&env, ctx, m, NNM__PHASE_FORWARD);
    env.grad = nnm__grad_enabled();
    uint32_t refs[NNM__MAX_IO];
    for (uint32_t i = 0; i < n_in; i++) refs[i] = in[i]->refs;
    uint64_t seq = ctx->err_seq;
    nnm_tensor *saved[NNM__NODE_SAVED];
    env.saved = saved;
    nnm_grad_set_enabled(0);
    nnm_status st = m->vt->forward(&env.pub, m->self, in, n_in, out, n_out);
    nnm_grad_set_enabled(1);
    st = forward_check(m, st, seq, in, n_in, refs, out, n_out, saved, env.n_saved);
    if (st) {
        for (uint32_t i = 0; i < env.n_saved; i++) nnm_tensor_release(saved[i]);
        return st;
    }
    st = nnm__record_layer(m, in, n_in, out, n_out, saved, env.n_saved);
    return st ? drop_outputs(st, out, n_out) : NNM_OK;
}

/* Runs the layer's forward with its call context. The plain case (no
 * node of the layer's own to record) in a small frame: it runs for every
 * module of every call. */
static nnm_status run_forward(nnm_module *m, nnm_tensor *const *in, uint32_t n_in, nnm_tensor **out,
                              uint32_t n_out) {
    if (NNM__UNLIKELY(custom_node_needed(m, in, n_in))) return run_custom(m, in, n_in, out, n_out);
    nnm_ctx *ctx = m->ctx;
    nnm__env env;
    nnm__env_init(&env, ctx, m, NNM__PHASE_FORWARD);
    env.grad = nnm__grad_enabled();
    uint32_t refs[NNM__MAX_IO];
    for (uint32_t i = 0; i < n_in; i++) refs[i] = in[i]->refs;
    uint64_t seq = ctx->err_seq;
    nnm_status st = m->vt->forward(&env.pub, m->self, in, n_in, out, n_out);
    return forward_returned(m, st, seq, in, n_in, refs, out, n_out);
}

/* Pre-hooks of one list over the working input array; `owned` marks entries
 * the runtime holds a reference to (those a hook put there). */
static nnm_status run_pre_hooks(nnm_module *m, nnm__hook_list *l, uint64_t start, nnm_tensor **xin,
                                uint32_t n_in, uint32_t *owned) {
    nnm_status st = NNM_OK;
    for (nnm__hook *h = l->head; h && !st; h = h->next) {
        if (!nnm__hook_runs(h, start)) continue;
        nnm_tensor *before[NNM__MAX_IO];
        memcpy(before, xin, n_in * sizeof *xin);
        uint64_t seq = m->ctx->err_seq;
        st = h->fn.pre(h->user, m, xin, n_in);
        for (uint32_t i = 0; i < n_in; i++) {
            if (xin[i] == before[i]) continue;
            if (*owned & (1u << i)) nnm_tensor_release(before[i]);
            *owned |= 1u << i;
        }
        if (st) {
            if (st > 0) st = NNM_E_HOOK;
            fail(m, st, "forward pre-hook failed: %s",
                 m->ctx->err_seq != seq ? m->ctx->errmsg : nnm_status_str(st));
        }
    }
    return st;
}

/* Forward hooks of one list. On failure *stop is the hook that failed (the
 * caller keeps the list running, so it stays valid for run_always). */
static nnm_status run_post_hooks(nnm_module *m, nnm__hook_list *l, uint64_t start,
                                 nnm_tensor *const *xin, uint32_t n_in, nnm_tensor **out,
                                 uint32_t n_out, nnm__hook **stop) {
    nnm_status st = NNM_OK;
    for (nnm__hook *h = l->head; h && !st; h = h->next) {
        if (!nnm__hook_runs(h, start)) continue;
        nnm_tensor *before[NNM__MAX_IO];
        memcpy(before, out, n_out * sizeof *out);
        uint64_t seq = m->ctx->err_seq;
        st = h->fn.post(h->user, m, xin, n_in, out, n_out);
        for (uint32_t i = 0; i < n_out; i++)
            if (out[i] != before[i]) nnm_tensor_release(before[i]);
        if (st) {
            if (st > 0) st = NNM_E_HOOK;
            fail(m, st, "forward hook failed: %s",
                 m->ctx->err_seq != seq ? m->ctx->errmsg : nnm_status_str(st));
            *stop = h;
        }
    }
    return st;
}

/* How far the forward hooks got before a call failed. */
enum { RAN_NONE, RAN_GLOBAL_TO_STOP, RAN_MODULE_TO_STOP, RAN_ALL };

/* always_call (PyTorch 2.x): after a failure, the forward hooks flagged
 * NNM_HOOK_ALWAYS_CALL that did not run yet, global then module. Their
 * status is ignored and the first failure's message is kept. */
static void run_always(nnm_module *m, int ran, nnm__hook *stop, nnm_tensor *const *xin,
                       uint32_t n_in, nnm_tensor **out, uint32_t n_out) {
    nnm_ctx *ctx = m->ctx;
    char msg[NNM__ERRMSG_CAP];
    memcpy(msg, ctx->errmsg, sizeof msg);
    int attributed = ctx->err_attributed;
    nnm__hook_list *lists[2] = {&ctx->gpost_hooks, &m->post_hooks};
    for (int k = 0; k < 2; k++) {
        nnm__hook_list *l = lists[k];
        if (ran == RAN_ALL || (k == 0 && ran == RAN_MODULE_TO_STOP) || !l->n_always) continue;
        /* entries up to and including stop ran already */
        int skipping = (k == 0 && ran == RAN_GLOBAL_TO_STOP) || (k == 1 && ran == RAN_MODULE_TO_STOP);
        uint64_t start = l->seq;
        l->running++;
        for (nnm__hook *h = l->head; h; h = h->next) {
            if (skipping) {
                if (h == stop) skipping = 0;
                continue;
            }
            if (!(h->flags & NNM_HOOK_ALWAYS_CALL) || !nnm__hook_runs(h, start)) continue;
            nnm_tensor *before[NNM__MAX_IO];
            memcpy(before, out, n_out * sizeof *out);
            (void)h->fn.post(h->user, m, xin, n_in, out, n_out);
            for (uint32_t i = 0; i < n_out; i++)
                if (out[i] != before[i]) nnm_tensor_release(before[i]);
        }
        nnm__hook_list_end(l);
    }
    memcpy(ctx->errmsg, msg, sizeof msg);
    ctx->err_attributed = attributed;
}

static nnm_status slow_call(nnm_module *m, nnm_tensor *const *in, uint32_t n_in, nnm_tensor **out,
                            uint32_t n_out) {
    nnm_ctx *ctx = m->ctx;
    nnm_profile_fn prof = ctx->profiler;
    void *prof_user = ctx->profiler_user;
    uint64_t t0 = prof ? now_ns() : 0;
    uint32_t depth = ctx->depth++;
    nnm_tensor *xin[NNM__MAX_IO];
    uint32_t owned = 0;
    if (n_in) memcpy(xin, in, n_in * sizeof *in);
    nnm_module_retain(m); /* a hook may drop the caller's last reference */
    /* Backward hooks are captured now, before the forward pre-hooks (PyTorch's
     * _call_impl); held until the hook nodes hold them themselves. */
    uint64_t bw_start[4];
    int bw_full = m->bw_hooks.count || ctx->gbw_hooks.count;
    int bw = (bw_full || m->bw_pre_hooks.count || ctx->gbw_pre_hooks.count) && nnm__grad_enabled();
    if (bw) bw_hold(m, bw_start);
    /* The forward-hook lists run for the whole call, so the hook where a
     * failure stopped them stays valid for run_always. */
    nnm__hook_list *gpost = &ctx->gpost_hooks, *mpost = &m->post_hooks;
    gpost->running++;
    mpost->running++;

    /* hooks registered during this call wait for the next one */
    nnm__hook_list *gpre = &ctx->gpre_hooks, *mpre = &m->pre_hooks;
    uint64_t gs = gpre->seq, ms = mpre->seq;
    gpre->running++;
    mpre->running++;
    nnm_status st = run_pre_hooks(m, gpre, gs, xin, n_in, &owned);
    if (!st) st = run_pre_hooks(m, mpre, ms, xin, n_in, &owned);
    nnm__hook_list_end(gpre);
    nnm__hook_list_end(mpre);
    if (!st) st = check_inputs(m, xin, n_in);
    nnm__node *in_node = NULL, *out_node = NULL;
    if (!st && bw && bw_full) st = wrap(m, hook_in_backward, bw_start, xin, n_in, &owned, &in_node);
    if (!st) st = run_forward(m, xin, n_in, out, n_out);
    int ran = RAN_NONE;
    nnm__hook *stop = NULL;
    gs = gpost->seq, ms = mpost->seq;
    if (!st) {
        ran = RAN_GLOBAL_TO_STOP;
        st = run_post_hooks(m, gpost, gs, xin, n_in, out, n_out, &stop);
    }
    if (!st) {
        ran = RAN_MODULE_TO_STOP;
        st = run_post_hooks(m, mpost, ms, xin, n_in, out, n_out, &stop);
    }
    if (!st) {
        ran = RAN_ALL;
        for (uint32_t i = 0; i < n_out && !st; i++)
            if (!out[i]) st = fail(m, NNM_E_HOOK, "forward hook left output %u NULL", i);
    }
    if (!st && bw) { /* step 6: backward hooks on the outputs' node */
        uint32_t all = n_out >= 32 ? ~0u : (1u << n_out) - 1;
        st = wrap(m, hook_out_backward, bw_start, out, n_out, &all, &out_node);
        if (out_node) out_node->ival = n_in; /* grad_in's length when no input needs grad */
        if (out_node && in_node) {
            out_node->peer = in_node;
            in_node->refs++;
        }
    }
    nnm__node_release(in_node);
    nnm__node_release(out_node);
    if (bw) bw_unhold(m);
    if (st && (gpost->n_always || mpost->n_always)) run_always(m, ran, stop, xin, n_in, out, n_out);
    nnm__hook_list_end(gpost);
    nnm__hook_list_end(mpost);
    if (st)
        for (uint32_t i = 0; i < n_out; i++) {
            nnm_tensor_release(out[i]);
            out[i] = NULL;
        }
    for (uint32_t i = 0; i < n_in; i++)
        if (owned & (1u << i)) nnm_tensor_release(xin[i]);

    ctx->depth = depth;
    if (prof) {
        char path[256];
        nnm_module_path(m, path, sizeof path);
        nnm_profile_event ev = {sizeof ev, st, path, m->vt->name, t0, now_ns(), depth, 0};
        prof(prof_user, &ev);
    }
    nnm_module_release(m);
    return st;
}

/* One input, one output, no hooks, no node of the layer's own (every
 * module of a small MLP): the checks of nnm__module_call's plain path in
 * one test, the forward in a frame of its own. Returns 1 when it ran the
 * call (*st its status); 0 when something differs, and nothing was done:
 * the general path then checks, and says what is wrong. */
static inline int call_one(nnm_module *m, nnm_tensor *const *in, nnm_tensor **out, nnm_status *st) {
    const nnm_layer_vtable *vt = m->vt;
    nnm_tensor *x = in[0];
    if (NNM__UNLIKELY((m->n_hooks | m->ctx->n_global_hooks) || (vt->n_inputs != 1 && vt->n_inputs != NNM_ARITY_ANY) ||
                      (vt->n_outputs != 1 && vt->n_outputs != NNM_ARITY_ANY) || !x ||
                      !nnm__device_eq(x->desc.device, m->device) ||
                      (m->n_specs && m->specs[0].ndim >= 0 && !spec_matches(&m->specs[0], x)) ||
                      custom_node_needed(m, in, 1)))
        return 0;
    nnm__env env;
    nnm__env_init(&env, m->ctx, m, NNM__PHASE_FORWARD);
    env.grad = nnm__grad_enabled();
    const uint32_t refs = x->refs;
    const uint64_t seq = m->ctx->err_seq;
    out[0] = NULL;
    nnm_status r = vt->forward(&env.pub, m->self, in, 1, out, 1);
    *st = NNM__LIKELY(!r && out[0] && out[0] != x) ? NNM_OK : forward_check(m, r, seq, in, 1, &refs, out, 1, NULL, 0);
    return 1;
}

nnm_status nnm__module_call(nnm_module *m, nnm_tensor *const *in, uint32_t n_in, nnm_tensor **out,
                            uint32_t n_out) {
    if (NNM__UNLIKELY(!nnm__module_live(m))) return NNM_E_INVALID;
    nnm_status st;
    if (NNM__LIKELY(n_in == 1 && n_out == 1 && in && out) && call_one(m, in, out, &st)) return st;
    if (out)
        for (uint32_t i = 0; i < n_out && i < NNM__MAX_IO; i++) out[i] = NULL;
    st = check_arity(m, in, n_in, out, n_out);
    if (NNM__UNLIKELY(st)) return st;
    if (NNM__LIKELY(!(m->n_hooks | m->ctx->n_global_hooks))) {
        if (NNM__UNLIKELY((st = check_inputs(m, in, n_in)))) return st;
        return run_forward(m, in, n_in, out, n_out);
    }
    return slow_call(m, in, n_in, out, n_out);
}

/* Calls through the public entry nest only when a hook or a layer calls back
 * into the runtime (containers call their children through the host table):
 * a module that calls itself, directly or through a hook, must end with a
 * status, not a stack overflow (PyTorch raises RecursionError). 256 nested
 * calls is more than PyTorch's default recursion limit allows. */
#define NNM__API_DEPTH_MAX 256

NNM_API nnm_status nnm_module_call(nnm_module *m, nnm_tensor *const *in, uint32_t n_in,
                                   nnm_tensor **out, uint32_t n_out) {
    if (NNM__UNLIKELY(!nnm__module_live(m))) return NNM_E_INVALID;
    nnm_ctx *ctx = m->ctx;
    if (NNM__UNLIKELY(ctx->api_depth >= NNM__API_DEPTH_MAX)) {
        if (out)
            for (uint32_t i = 0; i < n_out && i < NNM__MAX_IO; i++) out[i] = NULL;
        ctx->api_overflow = 1;
        return fail(m, NNM_E_LIMIT,
                    "calls nested deeper than %d (a hook or layer that calls its module again?)",
                    NNM__API_DEPTH_MAX);
    }
    ctx->api_depth++;
    nnm_status st = nnm__module_call(m, in, n_in, out, n_out);
    if (NNM__UNLIKELY(--ctx->api_depth == 0 && ctx->api_overflow)) {
        ctx->api_overflow = 0;
        if (st) /* 256 wrapped "hook failed: " prefixes pushed the cause out of the message */
            st = fail(m, NNM_E_LIMIT,
                      "calls nested deeper than %d (a hook or layer that calls its module again?)",
                      NNM__API_DEPTH_MAX);
    }
    return st;
}
