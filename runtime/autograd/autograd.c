/* runtime/autograd/autograd.c - the backward graph and the engine (reverse mode).
 *
 * Ops record nodes (derivatives.c); nnm_backward walks the nodes reachable
 * from the root, counts how many edges lead into each, and runs them in an
 * order where every node has received all of its output gradients before it
 * runs (Kahn's algorithm). Leaves accumulate into .grad. Nodes and their
 * scratch come from per-context free lists, so a steady-state training step
 * does not touch the heap.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* ---- nodes -------------------------------------------------------------- */

/* Releases *slot (NULL-tolerant) and clears it; the test inline, as most
 * slots of a node are empty. */
static inline void drop(nnm_tensor **slot) {
    if (*slot) {
        nnm_tensor_release(*slot);
        *slot = NULL;
    }
}

static void node_drop_saved(nnm__node *n) {
    if (n->kind & NNM__NODE_HOOKS_HELD) nnm__bw_hooks_drop(n);
    for (uint32_t i = 0; i < n->n_saved; i++) drop(&n->saved[i]);
    n->n_saved = 0;
    if (n->module) /* only hook nodes hold gradients of outputs */
        for (uint32_t i = 0; i < NNM__MAX_IO; i++) drop(&n->hook_grad_out[i]);
}

void nnm__node_release(nnm__node *n) {
    /* Iterative over chains of last references, so a deep graph (a long
     * training loop's worth of ops) cannot overflow the C stack. */
    while (n && --n->refs == 0) {
        nnm_ctx *ctx = n->ctx;
        nnm__node *upstream = NULL;
        node_drop_saved(n);
        for (uint32_t i = 0; i < n->n_in; i++) {
            drop(&n->next[i].leaf);
            if (n->next[i].fn) {
                if (!upstream) upstream = n->next[i].fn;
                else nnm__node_release(n->next[i].fn);
            }
        }
        for (uint32_t i = 0; i < n->n_out; i++) drop(&n->grad[i]);
        free(n->in_shapes);
        if (n->module) nnm_module_release(n->module);
        if (n->peer) nnm__node_release(n->peer);
        n->next_free = ctx->free_nodes;
        ctx->free_nodes = n;
        nnm__poison_entry(n, sizeof *n, &n->next_free); /* a use after release is reported under ASan */
        nnm__ctx_release(ctx);
        n = upstream;
    }
}

int nnm__needs_grad(nnm_tensor *a, nnm_tensor *b, nnm_tensor *c) {
    if (!nnm__grad_enabled()) return 0;
    return (a && (a->flags & NNM__T_REQUIRES_GRAD)) || (b && (b->flags & NNM__T_REQUIRES_GRAD)) ||
           (c && (c->flags & NNM__T_REQUIRES_GRAD));
}

nnm__node *nnm__node_new(nnm_ctx *ctx, const char *name, nnm__backward_fn fn, nnm_tensor *const *inputs,
                         uint32_t n_in, uint32_t n_out) {
    nnm__node *n = ctx->free_nodes;
    if (n) {
        NNM__UNPOISON(n, sizeof *n);
        ctx->free_nodes = n->next_free;
    }
    else if (!(n = malloc(sizeof *n)))
        return NULL;
    memset(n, 0, offsetof(nnm__node, next));
    memset(n->next, 0, n_in * sizeof n->next[0]);
    memset(n->grad, 0, n_out * sizeof n->grad[0]);
    n->refs = 1;
    n->n_in = (uint16_t)n_in;
    n->n_out = (uint16_t)n_out;
    n->name = name;
    n->backward = fn;
    n->ctx = ctx;
    nnm__ctx_retain(ctx);
    for (uint32_t i = 0; i < n_in; i++) {
        nnm_tensor *t = inputs ? inputs[i] : NULL;
        if (t && t->tied) t = t->tied; /* a tied parameter: its gradient goes to the one it is tied to */
        if (!t || !(t->flags & NNM__T_REQUIRES_GRAD)) continue;
        if (t->grad_fn) {
            n->next[i].fn = t->grad_fn;
            n->next[i].fn->refs++;
            n->next[i].nr = t->output_nr;
        } else {
            n->next[i].leaf = t;
            t->refs++;
        }
    }
    return n;
}

void nnm__node_attach(nnm__node *n, nnm_tensor *out, uint32_t nr) {
    if (out->grad_fn) nnm__node_release(out->grad_fn);
    n->refs++;
    out->grad_fn = n;
    out->output_nr = nr;
    out->flags |= NNM__T_REQUIRES_GRAD;
}

nnm_status nnm__node_save(nnm__node *n, nnm_tensor *t) {
    if (n->n_saved >= NNM__NODE_SAVED)
        return nnm__error(n->ctx, NNM_E_LIMIT, "%s: more than %d saved tensors", n->name, NNM__NODE_SAVED);
    nnm_tensor *alias;
    nnm_status st = nnm__tensor_view(t, t->desc.ndim, t->shape, t->strides, &alias);
    if (st) return st;
    n->saved[n->n_saved++] = alias;
    return NNM_OK;
}

nnm_status nnm__node_save_input(nnm__node *n, nnm_tensor *t) {
    if (n->n_saved >= NNM__NODE_SAVED)
        return nnm__error(n->ctx, NNM_E_LIMIT, "%s: more than %d saved tensors", n->name, NNM__NODE_SAVED);
    nnm_tensor_retain(t);
    n->saved[n->n_saved++] = t;
    return NNM_OK;
}

nnm_status nnm__node_save_at(nnm__node *n, uint32_t i, nnm_tensor *t) {
    nnm_tensor *alias;
    nnm_status st = nnm__tensor_view(t, t->desc.ndim, t->shape, t->strides, &alias);
    if (st) return st;
    if (n->saved[i]) nnm_tensor_release(n->saved[i]);
    n->saved[i] = alias;
    return NNM_OK;
}

nnm_status nnm__grad_accumulate(nnm_ctx *ctx, nnm_tensor **slot, nnm_tensor *grad) {
    if (!*slot) {
        nnm_tensor_retain(grad);
        *slot = grad;
        return NNM_OK;
    }
    nnm_tensor *sum;
    nnm_status st = nnm__op_binary(ctx, NNM_BINARY_ADD, *slot, grad, &sum);
    if (st) return st;
    nnm_tensor_release(*slot);
    *slot = sum;
    return NNM_OK;
}

/* acc += g in place, when acc can take it (contiguous f32 of g's shape, on
 * g's device, a backend with binary ops); 1 if done (or failed: *st), 0 if
 * the caller must fall back to a new tensor. */
static int add_in_place(nnm_ctx *ctx, nnm_tensor *acc, nnm_tensor *g, nnm_status *st) {
    if (acc->desc.ndim != g->desc.ndim || !nnm__device_eq(acc->desc.device, g->desc.device) ||
        acc->desc.dtype.code != NNM_DTYPE_FLOAT || acc->desc.dtype.bits != 32 ||
        g->desc.dtype.code != NNM_DTYPE_FLOAT || g->desc.dtype.bits != 32 ||
        !nnm__tensor_is_contiguous(acc))
        return 0;
    for (int32_t i = 0; i < acc->desc.ndim; i++)
        if (acc->shape[i] != g->shape[i]) return 0;
    nnm__backend *be;
    if (nnm__backend_get(ctx, acc->desc.device, &be) || !be->vt->binary) return 0;
    nnm__env env;
    nnm__env_init(&env, ctx, NULL, NNM__PHASE_BACKEND);
    /* out aliases a element for element: each is read before it is written */
    nnm_binary_args args = {sizeof args, NNM_BINARY_ADD, &acc->desc, &g->desc, &acc->desc};
    *st = be->vt->binary(&env.pub, be->state, &args);
    return 1;
}

/* Copies g into view (contiguous, g's shape and device) and makes view the
 * leaf's .grad. */
static nnm_status grad_into_view(nnm_ctx *ctx, nnm_tensor *leaf, nnm_tensor *view, nnm_tensor *g) {
    nnm_status st = NNM_OK;
    nnm_tensor *c = NULL;
    if (!nnm__tensor_is_contiguous(g)) {
        if ((st = nnm__op_unary(ctx, NNM_UNARY_COPY, g, 0, &c))) return st;
        g = c;
    }
    nnm__backend *be;
    if (!(st = nnm__backend_get(ctx, view->desc.device, &be))) {
        nnm__env env;
        nnm__env_init(&env, ctx, NULL, NNM__PHASE_BACKEND);
        st = be->vt->memcpy(&env.pub, be->state, (char *)view->desc.data + view->desc.byte_offset,
                            view->desc.device, (char *)g->desc.data + g->desc.byte_offset,
                            g->desc.device, (size_t)nnm_tensor_numel(g) * sizeof(float));
    }
    nnm_tensor_release(c);
    if (st) return st;
    nnm_tensor_retain(view);
    leaf->grad = view;
    return NNM_OK;
}

static nnm_status leaf_add(nnm_ctx *ctx, nnm_tensor *leaf, nnm_tensor *grad) {
    /* As PyTorch's AccumulateGrad (`variable.grad += new_grad` when not
     * creating a graph): the same .grad tensor is updated in place, so a
     * reference taken to it earlier sees the sum. A .grad that cannot be
     * (one a user set that is not contiguous) is replaced by the sum. */
    nnm_status st = NNM_OK;
    if (leaf->grad && add_in_place(ctx, leaf->grad, grad, &st)) return st;
    if (leaf->grad) return nnm__grad_accumulate(ctx, &leaf->grad, grad);
    nnm_tensor *view = leaf->grad_hooks ? leaf->grad_hooks->view : NULL;
    if (view && nnm__device_eq(view->desc.device, grad->desc.device) &&
        grad->desc.dtype.code == NNM_DTYPE_FLOAT && grad->desc.dtype.bits == 32 &&
        nnm_tensor_numel(grad) == nnm_tensor_numel(view))
        return grad_into_view(ctx, leaf, view, grad); /* DDP: the gradient lives in its bucket */
    /* Take the tensor only when nothing else can see its memory (as PyTorch
     * steals a gradient it solely owns); otherwise .grad gets a copy, so a
     * caller's tensor, another leaf's .grad and .grad never alias. */
    if (grad->refs == 1 && grad->storage->refs == 1 && nnm__tensor_is_contiguous(grad)) {
        nnm_tensor_retain(grad);
        leaf->grad = grad;
        return NNM_OK;
    }
    return nnm__op_unary(ctx, NNM_UNARY_COPY, grad, 0, &leaf->grad);
}

/* A leaf's hooks run once per backward, after its last contribution: the
 * engine counts the edges into each leaf that has hooks (count_deps) and runs
 * them when the count reaches zero (edge_done), if a gradient arrived. A
 * contribution the walk did not count (a leaf that got hooks during the
 * backward) runs them at once. */
nnm_status nnm__leaf_accumulate(nnm_ctx *ctx, nnm_tensor *leaf, nnm_tensor *grad) {
    nnm_status st = leaf_add(ctx, leaf, grad);
    nnm__grad_hooks *gh = leaf->grad_hooks;
    if (st || !gh) return st;
    if (gh->pending) {
        gh->got = 1; /* edge_done runs the hooks after the last edge */
        return NNM_OK;
    }
    return nnm__grad_hooks_run(leaf); /* DDP's gradient-ready event */
}

/* One counted edge into leaf has run in walk `mark`. */
static nnm_status edge_done(nnm_tensor *leaf, uint32_t mark) {
    nnm__grad_hooks *gh = leaf->grad_hooks;
    if (!gh || gh->mark != mark || !gh->pending || --gh->pending) return NNM_OK;
    if (!gh->got) return NNM_OK;
    gh->got = 0;
    return nnm__grad_hooks_run(leaf);
}

/* ---- gradients a backward hands over before it returns ------------------ */

static int emitting(const nnm_ctx *ctx, const nnm__node *n, uint32_t i) {
    return ctx->emit_node == n && i < n->n_in && i < 32 && !(ctx->emit_mask & (1u << i));
}

nnm_status nnm__node_emit(nnm_ctx *ctx, nnm__node *n, uint32_t i, nnm_tensor *g) {
    if (!g || !emitting(ctx, n, i)) return NNM_OK;
    nnm__edge *e = &n->next[i];
    nnm_status st = NNM_OK;
    ctx->emit_mask |= 1u << i; /* done, whatever the outcome: the engine skips it */
    if (e->leaf) {
        st = nnm__leaf_accumulate(ctx, e->leaf, g);
        if (!st) st = edge_done(e->leaf, ctx->emit_mark);
    } else if (e->fn) {
        st = nnm__grad_accumulate(ctx, &e->fn->grad[e->nr], g);
    }
    return st;
}

static int shares(const nnm_tensor *t, nnm_tensor *const *srcs, uint32_t n_srcs) {
    for (uint32_t k = 0; k < n_srcs; k++)
        if (srcs[k] && srcs[k]->storage == t->storage) return 1;
    return 0;
}

nnm_tensor *nnm__node_grad_dest(nnm_ctx *ctx, nnm__node *n, uint32_t i, nnm_tensor *const *srcs,
                                uint32_t n_srcs, int *accumulate) {
    *accumulate = 0;
    if (!emitting(ctx, n, i) || !n->next[i].leaf) return NULL;
    nnm_tensor *leaf = n->next[i].leaf, *d = leaf->grad;
    if (d) *accumulate = 1;
    else if (!(d = leaf->grad_hooks ? leaf->grad_hooks->view : NULL)) return NULL;
    if (d->desc.dtype.code != NNM_DTYPE_FLOAT || d->desc.dtype.bits != 32 ||
        !nnm__device_eq(d->desc.device, leaf->desc.device) || !nnm__tensor_is_contiguous(d) ||
        nnm_tensor_numel(d) != nnm_tensor_numel(leaf) || shares(d, srcs, n_srcs))
        return NULL;
    return d;
}

nnm_status nnm__node_grad_dest_done(nnm_ctx *ctx, nnm__node *n, uint32_t i, nnm_tensor *dest) {
    if (!emitting(ctx, n, i) || !n->next[i].leaf) return NNM_OK;
    nnm_tensor *leaf = n->next[i].leaf;
    ctx->emit_mask |= 1u << i;
    if (!leaf->grad) {
        nnm_tensor_retain(dest);
        leaf->grad = dest;
    }
    nnm__grad_hooks *gh = leaf->grad_hooks;
    if (!gh) return NNM_OK;
    if (!gh->pending) return nnm__grad_hooks_run(leaf); /* as nnm__leaf_accumulate */
    gh->got = 1;
    return edge_done(leaf, ctx->emit_mark);
}

nnm_status nnm__backward_on_end(nnm_ctx *ctx, nnm_status (*fn)(void *user, nnm_status walk), void *user) {
    if (!ctx->bw_depth) return NNM_E_STATE;
    if (ctx->n_end_cb == sizeof ctx->end_cb / sizeof ctx->end_cb[0]) return NNM_E_LIMIT;
    ctx->end_cb[ctx->n_end_cb].fn = fn;
    ctx->end_cb[ctx->n_end_cb++].user = user;
    return NNM_OK;
}

static nnm_tensor *custom_param(const nnm__node *n, uint32_t i) {
    nnm_tensor *t = n->module->params[i].t;
    if (t->tied) t = t->tied;
    return t->flags & NNM__T_REQUIRES_GRAD ? t : NULL;
}

/* Counts one edge into leaf for walk `mark` (or, with mark 0, clears its count). */
static void edge_count(nnm_tensor *leaf, uint32_t mark) {
    nnm__grad_hooks *gh = leaf ? leaf->grad_hooks : NULL;
    if (!gh) return;
    if (!mark) {
        gh->pending = 0;
        gh->got = 0;
        return;
    }
    if (gh->mark != mark) {
        gh->mark = mark;
        gh->pending = 0;
        gh->got = 0;
    }
    gh->pending++;
}

/* ---- the public face of autograd ---------------------------------------- */

NNM_API nnm_status nnm_tensor_set_requires_grad(nnm_tensor *t, int requires_grad) {
    if (!t) return NNM_E_INVALID;
    if (t->grad_fn)
        return nnm__error(t->ctx, NNM_E_STATE,
                          "requires_grad can only be changed on leaf tensors (detach it first)");
    if (requires_grad && (t->desc.dtype.code != NNM_DTYPE_FLOAT || t->desc.dtype.bits != 32))
        return nnm__error(t->ctx, NNM_E_DTYPE, "only f32 tensors can require gradients");
    if (requires_grad) t->flags |= NNM__T_REQUIRES_GRAD;
    else t->flags &= ~NNM__T_REQUIRES_GRAD;
    return NNM_OK;
}

NNM_API int nnm_tensor_requires_grad(const nnm_tensor *t) {
    return t && (t->flags & NNM__T_REQUIRES_GRAD) ? 1 : 0;
}

NNM_API int nnm_tensor_is_leaf(const nnm_tensor *t) { return t && !t->grad_fn; }

NNM_API nnm_tensor *nnm_tensor_grad(const nnm_tensor *t) { return t ? t->grad : NULL; }

NNM_API nnm_status nnm_tensor_set_grad(nnm_tensor *t, nnm_tensor *grad) {
    if (!t) return NNM_E_INVALID;
    if (grad == t) return nnm__error(t->ctx, NNM_E_INVALID, "can't assign a tensor as its own grad");
    if (grad && grad->ctx != t->ctx)
        return nnm__error(t->ctx, NNM_E_INVALID, "grad belongs to another context");
    if (grad && (grad->desc.dtype.code != t->desc.dtype.code || grad->desc.dtype.bits != t->desc.dtype.bits))
        return nnm__error(t->ctx, NNM_E_DTYPE, "grad's dtype differs from its tensor's");
    if (grad) {
        int same = grad->desc.ndim == t->desc.ndim;
        for (int32_t i = 0; same && i < t->desc.ndim; i++) same = grad->shape[i] == t->shape[i];
        if (!same) {
            char a[128], b[128];
            nnm__shape_str(&grad->desc, a, sizeof a);
            nnm__shape_str(&t->desc, b, sizeof b);
            return nnm__error(t->ctx, NNM_E_SHAPE, "grad of shape %s assigned to a tensor of shape %s", a, b);
        }
        if (!nnm__device_eq(grad->desc.device, t->desc.device))
            return nnm__error(t->ctx, NNM_E_DEVICE, "grad is on another device than its tensor");
        nnm_tensor_retain(grad);
    }
    nnm_tensor_release(t->grad);
    t->grad = grad;
    return NNM_OK;
}

NNM_API nnm_status nnm_tensor_detach(nnm_tensor *t, nnm_tensor **out) {
    if (out) *out = NULL;
    if (!t) return NNM_E_INVALID;
    if (!out) return nnm__error(t->ctx, NNM_E_INVALID, "nnm_tensor_detach: out is NULL");
    return nnm__tensor_view(t, t->desc.ndim, t->shape, t->strides, out);
}

static nnm_status zero_one(void *user, const char *name, nnm_tensor *t) {
    (void)user, (void)name;
    nnm_tensor_release(t->grad);
    t->grad = NULL;
    return NNM_OK;
}

NNM_API nnm_status nnm_module_zero_grad(nnm_module *m) {
    if (!nnm__module_live(m)) return NNM_E_INVALID;
    return nnm_module_named_parameters(m, zero_one, NULL);
}

/* ---- the engine --------------------------------------------------------- */

static nnm_status stack_push(nnm_ctx *ctx, uint32_t *len, nnm__node *n) {
    if (*len == ctx->stack_cap) {
        uint32_t cap = ctx->stack_cap ? ctx->stack_cap * 2 : 64;
        nnm__node **s = realloc(ctx->stack, cap * sizeof *s);
        if (!s) return nnm__error(ctx, NNM_E_NOMEM, "out of memory (autograd)");
        ctx->stack = s;
        ctx->stack_cap = cap;
    }
    ctx->stack[(*len)++] = n;
    if (*len > ctx->stack_used) ctx->stack_used = *len;
    return NNM_OK;
}

/* Counts, for every node reachable from root, the edges leading into it,
 * and for every leaf with hooks the edges (and custom nodes' parameters)
 * leading into it, stamped with leaf_mark (0: clears those counts).
 * Nodes are marked with `mark` so each is visited once. The stack is reused
 * afterwards as the ready list. */
static nnm_status count_deps(nnm_ctx *ctx, nnm__node *root, uint32_t mark, uint32_t leaf_mark) {
    const uint32_t base = ctx->stack_base;
    uint32_t len = base;
    root->mark = mark;
    root->deps = 0;
    nnm_status st = stack_push(ctx, &len, root);
    while (!st && len > base) {
        nnm__node *n = ctx->stack[--len];
        if (n->kind & NNM__NODE_CUSTOM)
            for (uint32_t i = 0; i < n->module->n_params; i++) edge_count(custom_param(n, i), leaf_mark);
        for (uint32_t i = 0; i < n->n_in; i++) {
            nnm__node *up = n->next[i].fn;
            edge_count(n->next[i].leaf, leaf_mark);
            if (!up) continue;
            if (up->mark != mark) {
                up->mark = mark;
                up->deps = 0;
                if ((st = stack_push(ctx, &len, up))) break;
            }
            up->deps++;
        }
    }
    return st;
}

/* Releases the gradients left waiting in the nodes of a walk that failed. */
static void clear_pending(nnm_ctx *ctx, nnm__node *top) {
    uint32_t mark = ++ctx->mark_seq;
    if (count_deps(ctx, top, mark, 0)) return; /* out of memory: the nodes keep them until freed */
    const uint32_t base = ctx->stack_base;
    uint32_t len = base;
    ctx->stack[len++] = top;
    top->mark = mark + 1; /* second pass: visit each node once more */
    while (len > base) {
        nnm__node *n = ctx->stack[--len];
        for (uint32_t i = 0; i < n->n_out; i++) {
            nnm_tensor_release(n->grad[i]);
            n->grad[i] = NULL;
        }
        for (uint32_t i = 0; i < n->n_in; i++) {
            nnm__node *up = n->next[i].fn;
            if (up && up->mark == mark) {
                up->mark = mark + 1;
                if (stack_push(ctx, &len, up)) return;
            }
        }
    }
    ++ctx->mark_seq;
}

NNM_API nnm_status nnm_backward(nnm_tensor *root, nnm_tensor *grad, int retain_graph) {
    if (!root) return NNM_E_INVALID;
    nnm_ctx *ctx = root->ctx;
    if (!(root->flags & NNM__T_REQUIRES_GRAD))
        return nnm__error(ctx, NNM_E_INVALID,
                          "element 0 of tensors does not require grad and does not have a grad_fn");
    nnm_tensor *seed = NULL;
    nnm_status st = NNM_OK;
    int prev_grad = nnm_grad_set_enabled(0);
    uint32_t end_base = ctx->n_end_cb; /* this backward's end callbacks start here */
    /* A hook may run a backward of its own: it walks on the engine stack
     * above every entry the outer walks hold (stack_used). */
    const uint32_t outer_base = ctx->stack_base;
    const uint32_t base = ctx->stack_base = ctx->stack_used;
    ctx->bw_depth++;
    if (grad) {
        int same = grad->desc.ndim == root->desc.ndim;
        for (int32_t i = 0; same && i < root->desc.ndim; i++) same = grad->shape[i] == root->shape[i];
        if (!same || !nnm__device_eq(grad->desc.device, root->desc.device)) {
            char a[128], b[128];
            nnm__shape_str(&grad->desc, a, sizeof a);
            nnm__shape_str(&root->desc, b, sizeof b);
            st = nnm__error(ctx, NNM_E_SHAPE,
                            "mismatch in shape: grad_output has a shape of %s and output has a shape of %s "
                            "(or is on another device)", a, b);
            goto out;
        }
        nnm_tensor_retain(grad);
        seed = grad;
    } else {
        if (nnm_tensor_numel(root) != 1) {
            st = nnm__error(ctx, NNM_E_INVALID, "grad can be implicitly created only for scalar outputs");
            goto out;
        }
        if ((st = nnm__tensor_alloc(ctx, root->desc.device, root->desc.dtype, root->desc.ndim,
                                    root->shape, &seed)) ||
            (st = nnm__op_fill(ctx, seed, 1.0)))
            goto out;
    }
    if (!root->grad_fn) { /* a leaf: its own gradient is the seed */
        st = nnm__leaf_accumulate(ctx, root, seed);
        goto out;
    }

    nnm__node *top = root->grad_fn;
    uint32_t mark = ++ctx->mark_seq;
    if ((st = count_deps(ctx, top, mark, mark))) goto out;
    top->grad[root->output_nr] = seed;
    seed = NULL;
    uint32_t len = base;
    ctx->stack[len++] = top; /* count_deps left room for at least one */
    ctx->stack_used = len;
    while (len > base) {
        nnm__node *n = ctx->stack[--len];
        if (n->freed) {
            st = nnm__error(ctx, NNM_E_STATE,
                            "trying to backward through the graph a second time (%s was freed); "
                            "pass retain_graph=1 to the first backward",
                            n->name);
            break;
        }
        nnm_tensor *gin[NNM__MAX_IO] = {0};
        /* the backward may hand gradients over early (nnm__node_emit); a
         * hook it runs may start a backward of its own: keep the outer one's */
        nnm__node *outer_node = ctx->emit_node;
        uint32_t outer_mark = ctx->emit_mark, outer_mask = ctx->emit_mask;
        ctx->emit_node = n;
        ctx->emit_mark = mark;
        ctx->emit_mask = 0;
        st = n->backward(ctx, n, n->grad, gin);
        uint32_t emitted = ctx->emit_mask;
        ctx->emit_node = outer_node;
        ctx->emit_mark = outer_mark;
        ctx->emit_mask = outer_mask;
        for (uint32_t i = 0; i < n->n_out; i++) {
            nnm_tensor_release(n->grad[i]);
            n->grad[i] = NULL;
        }
        if (!retain_graph) {
            node_drop_saved(n);
            n->freed = 1;
        }
        if (!st && (n->kind & NNM__NODE_CUSTOM))
            for (uint32_t i = 0; i < n->module->n_params && !st; i++) {
                nnm_tensor *p = custom_param(n, i);
                if (p) st = edge_done(p, mark);
            }
        for (uint32_t i = 0; i < n->n_in; i++) {
            nnm__edge *e = &n->next[i];
            int early = i < 32 && (emitted & (1u << i)); /* handed over already */
            if (!st && gin[i] && !early) {
                if (e->leaf) st = nnm__leaf_accumulate(ctx, e->leaf, gin[i]);
                else if (e->fn) st = nnm__grad_accumulate(ctx, &e->fn->grad[e->nr], gin[i]);
            }
            if (!st && e->leaf && !early) st = edge_done(e->leaf, mark);
            nnm_tensor_release(gin[i]);
            if (e->fn && --e->fn->deps == 0 && !st) st = stack_push(ctx, &len, e->fn);
        }
        if (st) break;
    }
    if (st) clear_pending(ctx, top);
out:
    nnm_tensor_release(seed);
    for (uint32_t i = end_base; i < ctx->n_end_cb; i++) { /* a callback may queue more */
        nnm_status s2 = ctx->end_cb[i].fn(ctx->end_cb[i].user, st);
        if (!st) st = s2;
    }
    ctx->n_end_cb = end_base;
    ctx->stack_used = base;
    ctx->stack_base = outer_base;
    ctx->bw_depth--;
    nnm_grad_set_enabled(prev_grad);
    return st;
}
