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

static nnm_status check_inputs(nnm_module *m, nnm_tensor *const *in, uint32_t n_in) {
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

/* ---- custom-backward layers ---------------------------------------------- */

/* Does a call of m on these inputs need a node for its own backward? */
static int custom_node_needed(const nnm_module *m, nnm_tensor *const *in, uint32_t n_in) {
    if (!m->vt->backward || !nnm_grad_is_enabled()) return 0;
    for (uint32_t i = 0; i < n_in; i++)
        if (in[i]->flags & NNM__T_REQUIRES_GRAD) return 1;
    for (uint32_t i = 0; i < m->n_params; i++)
        if (m->params[i].t->flags & NNM__T_REQUIRES_GRAD) return 1;
    return 0;
}

static nnm_status custom_backward(nnm_ctx *ctx, nnm__node *n, nnm_tensor *const *gout, nnm_tensor **gin) {
    nnm_module *m = n->module;
    nnm__env env;
    nnm__env_init(&env, ctx, m, NNM__PHASE_BACKWARD);
    env.grad = 0;
    env.node = n;
    ctx->errmsg[0] = 0;
    nnm_status st = m->vt->backward(&env.pub, m->self, gout, n->n_out, gin, n->n_in);
    if (st) {
        if (st > 0) st = NNM_E_PLUGIN;
        if (!ctx->errmsg[0]) nnm__error(ctx, st, "backward failed (%s)", nnm_status_str(st));
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
    m->refs++;
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

static nnm_status run_bw_list(nnm_module *m, nnm__hook_list *l, int pre, nnm_tensor **g, uint32_t n_g,
                              nnm_tensor *const *gout, uint32_t n_out) {
    if (!l->count) return NNM_OK;
    nnm_status st = NNM_OK;
    uint32_t limit = l->next_id;
    l->running++;
    for (nnm_hook_handle *h = l->head; h && !st; h = h->next) {
        if (h->removed || h->id >= limit) continue;
        nnm_tensor *before[NNM__MAX_IO];
        memcpy(before, g, n_g * sizeof *g);
        m->ctx->errmsg[0] = 0;
        st = pre ? h->fn.bw_pre(h->user, m, g, n_g) : h->fn.bw(h->user, m, g, n_g, gout, n_out);
        for (uint32_t i = 0; i < n_g; i++)
            if (g[i] != before[i]) nnm_tensor_release(before[i]); /* a hook put a new reference */
        if (st) {
            if (st > 0) st = NNM_E_HOOK;
            fail(m, st, "%s failed: %s", pre ? "backward pre-hook" : "backward hook",
                 m->ctx->errmsg[0] ? m->ctx->errmsg : nnm_status_str(st));
        }
    }
    nnm__hook_list_end(l);
    return st;
}

static nnm_status hook_out_backward(nnm_ctx *ctx, nnm__node *n, nnm_tensor *const *gout, nnm_tensor **gin) {
    (void)ctx;
    nnm_module *m = n->module;
    for (uint32_t i = 0; i < n->n_out; i++) {
        gin[i] = gout[i];
        nnm_tensor_retain(gin[i]);
    }
    nnm_status st = run_bw_list(m, &m->bw_pre_hooks, 1, gin, n->n_out, NULL, 0);
    if (!st && n->peer) {
        for (uint32_t i = 0; i < n->n_out; i++) {
            nnm_tensor_release(n->peer->hook_grad_out[i]);
            n->peer->hook_grad_out[i] = gin[i];
            nnm_tensor_retain(gin[i]);
        }
        n->peer->ival = n->n_out;
    } else if (!st && m->bw_hooks.count) {
        /* no input needs a gradient: the hook sees none, as in PyTorch */
        nnm_tensor *none[NNM__MAX_IO] = {0};
        st = run_bw_list(m, &m->bw_hooks, 0, none, m->vt->n_inputs > 0 ? (uint32_t)m->vt->n_inputs : 0,
                         gin, n->n_out);
        for (uint32_t i = 0; i < NNM__MAX_IO; i++) nnm_tensor_release(none[i]);
    }
    return st;
}

static nnm_status hook_in_backward(nnm_ctx *ctx, nnm__node *n, nnm_tensor *const *gout, nnm_tensor **gin) {
    (void)ctx;
    nnm_module *m = n->module;
    for (uint32_t i = 0; i < n->n_out; i++) {
        gin[i] = gout[i];
        nnm_tensor_retain(gin[i]);
    }
    return run_bw_list(m, &m->bw_hooks, 0, gin, n->n_out, n->hook_grad_out, (uint32_t)n->ival);
}

/* Replaces each tensor of v that requires grad with an alias that is output i
 * of a new identity node over v; *node gets the node (NULL if none needed).
 * `owned` marks entries the caller holds references to (bit i). */
static nnm_status wrap(nnm_module *m, nnm__backward_fn fn, nnm_tensor **v, uint32_t n, uint32_t *owned,
                       nnm__node **node) {
    *node = NULL;
    int any = 0;
    for (uint32_t i = 0; i < n; i++) any |= (v[i]->flags & NNM__T_REQUIRES_GRAD) != 0;
    if (!any) return NNM_OK;
    nnm__node *nd = nnm__node_new(m->ctx, "BackwardHookFunctionBackward", fn, v, n, n);
    if (!nd) return nnm__error(m->ctx, NNM_E_NOMEM, "out of memory (autograd node)");
    nd->module = m;
    m->refs++;
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

/* Runs the layer's forward with its call context. */
static nnm_status run_forward(nnm_module *m, nnm_tensor *const *in, uint32_t n_in, nnm_tensor **out,
                              uint32_t n_out) {
    nnm__env env;
    nnm__env_init(&env, m->ctx, m, NNM__PHASE_FORWARD);
    env.grad = nnm_grad_is_enabled();
    nnm_status st;
    if (NNM__UNLIKELY(custom_node_needed(m, in, n_in))) {
        /* forward computes without recording; the layer is one node */
        nnm_tensor *saved[NNM__NODE_SAVED];
        env.saved = saved;
        nnm_grad_set_enabled(0);
        st = m->vt->forward(&env.pub, m->self, in, n_in, out, n_out);
        nnm_grad_set_enabled(1);
        for (uint32_t i = 0; !st && i < n_out; i++)
            if (!out[i]) st = fail(m, NNM_E_PLUGIN, "forward returned OK but left output %u NULL", i);
        if (!st) {
            st = nnm__record_layer(m, in, n_in, out, n_out, saved, env.n_saved);
        } else {
            for (uint32_t i = 0; i < env.n_saved; i++) nnm_tensor_release(saved[i]);
        }
    } else {
        st = m->vt->forward(&env.pub, m->self, in, n_in, out, n_out);
    }
    if (NNM__UNLIKELY(st)) {
        if (st > 0) st = NNM_E_PLUGIN; /* positive is not a status: keep the contract */
        nnm__error_attribute(m->ctx, m);
        goto drop;
    }
    for (uint32_t i = 0; i < n_out; i++)
        if (NNM__UNLIKELY(!out[i])) {
            st = fail(m, NNM_E_PLUGIN, "forward returned OK but left output %u NULL", i);
            goto drop;
        }
    return NNM_OK;
drop:
    for (uint32_t i = 0; i < n_out; i++) {
        nnm_tensor_release(out[i]);
        out[i] = NULL;
    }
    return st;
}

/* Pre-hooks of one list over the working input array; `owned` marks entries
 * the runtime holds a reference to (those a hook put there). */
static nnm_status run_pre_hooks(nnm_module *m, nnm__hook_list *l, nnm_tensor **xin, uint32_t n_in,
                                uint32_t *owned) {
    if (!l->count) return NNM_OK;
    nnm_status st = NNM_OK;
    uint32_t limit = l->next_id; /* hooks added during this call wait for the next */
    l->running++;
    for (nnm_hook_handle *h = l->head; h && !st; h = h->next) {
        if (h->removed || h->id >= limit) continue;
        nnm_tensor *before[NNM__MAX_IO];
        memcpy(before, xin, n_in * sizeof *xin);
        m->ctx->errmsg[0] = 0;
        st = h->fn.pre(h->user, m, xin, n_in);
        for (uint32_t i = 0; i < n_in; i++) {
            if (xin[i] == before[i]) continue;
            if (*owned & (1u << i)) nnm_tensor_release(before[i]);
            *owned |= 1u << i;
        }
        if (st) {
            if (st > 0) st = NNM_E_HOOK;
            fail(m, st, "forward pre-hook failed: %s",
                 m->ctx->errmsg[0] ? m->ctx->errmsg : nnm_status_str(st));
        }
    }
    nnm__hook_list_end(l);
    return st;
}

static nnm_status run_post_hooks(nnm_module *m, nnm__hook_list *l, nnm_tensor *const *xin,
                                 uint32_t n_in, nnm_tensor **out, uint32_t n_out) {
    if (!l->count) return NNM_OK;
    nnm_status st = NNM_OK;
    uint32_t limit = l->next_id;
    l->running++;
    for (nnm_hook_handle *h = l->head; h && !st; h = h->next) {
        if (h->removed || h->id >= limit) continue;
        nnm_tensor *before[NNM__MAX_IO];
        memcpy(before, out, n_out * sizeof *out);
        m->ctx->errmsg[0] = 0;
        st = h->fn.post(h->user, m, xin, n_in, out, n_out);
        for (uint32_t i = 0; i < n_out; i++)
            if (out[i] != before[i]) nnm_tensor_release(before[i]);
        if (st) {
            if (st > 0) st = NNM_E_HOOK;
            fail(m, st, "forward hook failed: %s",
                 m->ctx->errmsg[0] ? m->ctx->errmsg : nnm_status_str(st));
        }
    }
    nnm__hook_list_end(l);
    for (uint32_t i = 0; i < n_out && !st; i++)
        if (!out[i]) st = fail(m, NNM_E_HOOK, "forward hook left output %u NULL", i);
    return st;
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

    nnm_status st = run_pre_hooks(m, &ctx->gpre_hooks, xin, n_in, &owned);
    if (!st) st = run_pre_hooks(m, &m->pre_hooks, xin, n_in, &owned);
    if (!st) st = check_inputs(m, xin, n_in);
    int bw = (m->bw_hooks.count || m->bw_pre_hooks.count) && nnm_grad_is_enabled();
    nnm__node *in_node = NULL, *out_node = NULL;
    if (!st && bw && m->bw_hooks.count) st = wrap(m, hook_in_backward, xin, n_in, &owned, &in_node);
    if (!st) st = run_forward(m, xin, n_in, out, n_out);
    if (!st) st = run_post_hooks(m, &ctx->gpost_hooks, xin, n_in, out, n_out);
    if (!st) st = run_post_hooks(m, &m->post_hooks, xin, n_in, out, n_out);
    if (!st && bw) { /* step 6: backward hooks on the outputs' node */
        uint32_t all = n_out >= 32 ? ~0u : (1u << n_out) - 1;
        st = wrap(m, hook_out_backward, out, n_out, &all, &out_node);
        if (out_node && in_node) {
            out_node->peer = in_node;
            in_node->refs++;
        }
    }
    nnm__node_release(in_node);
    nnm__node_release(out_node);
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

nnm_status nnm__module_call(nnm_module *m, nnm_tensor *const *in, uint32_t n_in, nnm_tensor **out,
                            uint32_t n_out) {
    if (NNM__UNLIKELY(!nnm__module_live(m))) return NNM_E_INVALID;
    if (out)
        for (uint32_t i = 0; i < n_out && i < NNM__MAX_IO; i++) out[i] = NULL;
    nnm_status st = check_arity(m, in, n_in, out, n_out);
    if (NNM__UNLIKELY(st)) return st;
    if (NNM__LIKELY(!(m->n_hooks | m->ctx->n_global_hooks))) {
        if (NNM__UNLIKELY((st = check_inputs(m, in, n_in)))) return st;
        return run_forward(m, in, n_in, out, n_out);
    }
    return slow_call(m, in, n_in, out, n_out);
}

NNM_API nnm_status nnm_module_call(nnm_module *m, nnm_tensor *const *in, uint32_t n_in,
                                   nnm_tensor **out, uint32_t n_out) {
    return nnm__module_call(m, in, n_in, out, n_out);
}
