/* runtime/autograd/derivatives.c - what each op records for autograd, and its backward.
 *
 * Every backward is written with the runtime's own ops and backend calls, so
 * it runs on whichever device the tensors live. Backward runs with grad mode
 * off, so nothing here records (no double backward yet).
 */
#include <stddef.h>
#include <string.h>

#include "internal.h"

/* Does input i of n lead anywhere that wants a gradient? */
static int wants(const nnm__node *n, uint32_t i) { return n->next[i].fn || n->next[i].leaf; }

static void keep_shape(nnm__node *n, int slot, const nnm_tensor *t) {
    n->in_ndim[slot] = t->desc.ndim;
    memcpy(n->in_shape[slot], t->shape, (size_t)t->desc.ndim * sizeof(int64_t));
}

/* ---- helpers ------------------------------------------------------------ */

nnm_status nnm__gemm(nnm_ctx *ctx, int trans_a, int trans_b, nnm_tensor *a, nnm_tensor *b,
                     int64_t m, int64_t n, int64_t k, float beta, nnm_tensor *c) {
    nnm__backend *be;
    nnm_status st = nnm__backend_get(ctx, c->desc.device, &be);
    if (st) return st;
    nnm__env env;
    nnm__env_init(&env, ctx, NULL, NNM__PHASE_BACKEND);
    nnm_gemm_args g = {sizeof g, trans_a, trans_b, m, n, k, 1.0f, beta,
                       (const float *)((const char *)a->desc.data + a->desc.byte_offset),
                       trans_a ? m : k,
                       (const float *)((const char *)b->desc.data + b->desc.byte_offset),
                       trans_b ? k : n,
                       (float *)((char *)c->desc.data + c->desc.byte_offset), n};
    return be->vt->gemm(&env.pub, be->state, &g);
}

nnm_status nnm__expand(nnm_ctx *ctx, nnm_tensor *t, int32_t ndim, const int64_t *shape, nnm_tensor **out) {
    *out = NULL;
    int64_t strides[NNM_MAX_DIMS];
    for (int32_t i = 0; i < ndim; i++) {
        int32_t j = t->desc.ndim - ndim + i;
        strides[i] = (j >= 0 && t->shape[j] != 1) ? t->strides[j] : 0;
    }
    nnm_tensor *view, *y;
    nnm_status st = nnm__tensor_view(t, ndim, shape, strides, &view);
    if (st) return st;
    st = nnm__op_unary(ctx, NNM_UNARY_COPY, view, 0, &y);
    nnm_tensor_release(view);
    if (!st) *out = y;
    return st;
}

nnm_status nnm__sum_to(nnm_ctx *ctx, nnm_tensor *g, int32_t ndim, const int64_t *shape, nnm_tensor **out) {
    *out = NULL;
    int32_t dims[NNM_MAX_DIMS];
    uint32_t nd = 0;
    int32_t lead = g->desc.ndim - ndim;
    for (int32_t i = 0; i < g->desc.ndim; i++)
        if (i < lead || (shape[i - lead] == 1 && g->shape[i] != 1)) dims[nd++] = i;
    nnm_tensor *r = NULL;
    nnm_status st;
    if (nd == 0) {
        nnm_tensor_retain(g);
        r = g;
    } else if ((st = nnm__op_reduce(ctx, NNM_REDUCE_SUM, g, dims, nd, 1, &r))) {
        return st;
    }
    if (r->desc.ndim == ndim) {
        *out = r;
        return NNM_OK;
    }
    st = nnm__op_reshape(ctx, r, ndim, shape, out);
    nnm_tensor_release(r);
    return st;
}

/* a (op) b, no recording: backward runs with grad mode off anyway. */
static nnm_status bin(nnm_ctx *ctx, int32_t op, nnm_tensor *a, nnm_tensor *b, nnm_tensor **out) {
    return nnm__op_binary(ctx, op, a, b, out);
}

static nnm_status un(nnm_ctx *ctx, int32_t op, nnm_tensor *x, double alpha, nnm_tensor **out) {
    return nnm__op_unary(ctx, op, x, alpha, out);
}

/* ---- unary -------------------------------------------------------------- */

/* relu's gradient as torch's threshold_backward(g, y, 0): `y <= 0 ? 0 : g`.
 * y = relu(x) is >= 0 or NaN, so that is where(y != 0, g, 0): one pass
 * where the backend has `where` (1.3), which also passes g through at a NaN
 * x as torch does. Older backends get g * step(x) (two passes; 0 at a NaN x,
 * NaN where g is infinite and x <= 0). */
static int has_where(const nnm__backend *be) {
    return be->vt->struct_size >= offsetof(nnm_backend_vtable, where) + sizeof be->vt->where && be->vt->where;
}

static nnm_status relu_backward(nnm_ctx *ctx, nnm_tensor *g, nnm_tensor *x, nnm_tensor *y, nnm_tensor **out) {
    nnm__backend *be;
    nnm_status st = nnm__backend_get(ctx, g->desc.device, &be);
    if (st) return st;
    nnm_tensor *t = NULL;
    if (has_where(be) && y) {
        if (!(st = nnm__op_full(ctx, g->desc.device, 0, NULL, 0.0, &t))) st = nnm__op_where(ctx, y, g, t, out);
    } else if (!(st = un(ctx, NNM_UNARY_STEP, x, 0, &t))) {
        st = bin(ctx, NNM_BINARY_MUL, g, t, out);
    }
    nnm_tensor_release(t);
    return st;
}

/* saved[0] = x, saved[1] = y, each only where the op's gradient reads it
 * (unary_saves), else NULL */
static nnm_status unary_backward(nnm_ctx *ctx, nnm__node *n, nnm_tensor *const *gout, nnm_tensor **gin) {
    nnm_tensor *g = gout[0], *x = n->saved[0], *y = n->saved[1], *t = NULL, *u = NULL;
    if (!g || !wants(n, 0)) return NNM_OK;
    nnm_status st = NNM_OK;
    switch (n->op) {
    case NNM_UNARY_COPY: nnm_tensor_retain(g); gin[0] = g; break;
    case NNM_UNARY_NEG: st = un(ctx, NNM_UNARY_NEG, g, 0, &gin[0]); break;
    case NNM_UNARY_SCALE: st = un(ctx, NNM_UNARY_SCALE, g, n->alpha, &gin[0]); break;
    case NNM_UNARY_RELU: st = relu_backward(ctx, g, x, y, &gin[0]); break;
    case NNM_UNARY_ABS:
        if (!(st = un(ctx, NNM_UNARY_SIGN, x, 0, &t))) st = bin(ctx, NNM_BINARY_MUL, g, t, &gin[0]);
        break;
    case NNM_UNARY_EXP: st = bin(ctx, NNM_BINARY_MUL, g, y, &gin[0]); break;
    case NNM_UNARY_LOG: st = bin(ctx, NNM_BINARY_DIV, g, x, &gin[0]); break;
    case NNM_UNARY_SQRT: /* g / (2 y) */
        if (!(st = bin(ctx, NNM_BINARY_DIV, g, y, &t))) st = un(ctx, NNM_UNARY_SCALE, t, 0.5, &gin[0]);
        break;
    case NNM_UNARY_TANH: /* g - g y y */
        if (!(st = bin(ctx, NNM_BINARY_MUL, g, y, &t)) && !(st = bin(ctx, NNM_BINARY_MUL, t, y, &u)))
            st = bin(ctx, NNM_BINARY_SUB, g, u, &gin[0]);
        break;
    case NNM_UNARY_SIGMOID: /* g y - g y y */
        if (!(st = bin(ctx, NNM_BINARY_MUL, g, y, &t)) && !(st = bin(ctx, NNM_BINARY_MUL, t, y, &u)))
            st = bin(ctx, NNM_BINARY_SUB, t, u, &gin[0]);
        break;
    /* ---- ABI 1.3 ---- */
    case NNM_UNARY_ADD_SCALAR: nnm_tensor_retain(g); gin[0] = g; break;
    case NNM_UNARY_ERF: /* g * 2/sqrt(pi) * exp(-x^2) */
        if (!(st = bin(ctx, NNM_BINARY_MUL, x, x, &t)) && !(st = un(ctx, NNM_UNARY_SCALE, t, -1.0, &u))) {
            nnm_tensor_release(t);
            t = NULL;
            if (!(st = un(ctx, NNM_UNARY_EXP, u, 0, &t))) {
                nnm_tensor_release(u);
                u = NULL;
                if (!(st = un(ctx, NNM_UNARY_SCALE, t, 1.1283791670955126, &u)))
                    st = bin(ctx, NNM_BINARY_MUL, g, u, &gin[0]);
            }
        }
        break;
    case NNM_UNARY_POW: /* g * a * x^(a - 1); a = 0 gives zeros, as torch */
        if (n->alpha == 0.0) {
            st = un(ctx, NNM_UNARY_SCALE, g, 0.0, &gin[0]);
        } else if (!(st = un(ctx, NNM_UNARY_POW, x, n->alpha - 1.0, &t)) &&
                   !(st = un(ctx, NNM_UNARY_SCALE, t, n->alpha, &u))) {
            st = bin(ctx, NNM_BINARY_MUL, g, u, &gin[0]);
        }
        break;
    case NNM_UNARY_CLAMP_MIN: /* g * (x >= a), the bound itself passing, as torch.clamp */
        if (!(st = un(ctx, NNM_UNARY_GE, x, n->alpha, &t))) st = bin(ctx, NNM_BINARY_MUL, g, t, &gin[0]);
        break;
    case NNM_UNARY_CLAMP_MAX: /* g * (x <= a) = g * (-x >= -a) */
        if (!(st = un(ctx, NNM_UNARY_NEG, x, 0, &u)) && !(st = un(ctx, NNM_UNARY_GE, u, -n->alpha, &t)))
            st = bin(ctx, NNM_BINARY_MUL, g, t, &gin[0]);
        break;
    /* ---- ABI 1.5 ---- */
    case NNM_UNARY_SIN: /* g cos(x) */
        if (!(st = un(ctx, NNM_UNARY_COS, x, 0, &t))) st = bin(ctx, NNM_BINARY_MUL, g, t, &gin[0]);
        break;
    case NNM_UNARY_COS: /* -g sin(x) */
        if (!(st = un(ctx, NNM_UNARY_SIN, x, 0, &t)) && !(st = bin(ctx, NNM_BINARY_MUL, g, t, &u)))
            st = un(ctx, NNM_UNARY_NEG, u, 0, &gin[0]);
        break;
    case NNM_UNARY_FLOOR:
    case NNM_UNARY_CEIL:
    case NNM_UNARY_ROUND:
    case NNM_UNARY_TRUNC: /* zeros, as torch (not g * 0: an infinite g stays out of it) */
        st = nnm__op_full(ctx, g->desc.device, x->desc.ndim, x->shape, 0.0, &gin[0]);
        break;
    case NNM_UNARY_SILU:
    case NNM_UNARY_GELU:
    case NNM_UNARY_GELU_TANH:
    case NNM_UNARY_HARDSWISH:
    case NNM_UNARY_LEAKY_RELU:
    case NNM_UNARY_ELU:
    case NNM_UNARY_RELU6:
    case NNM_UNARY_HARDSIGMOID: /* g * f'(x): the op's *_GRAD twin, then one product */
        if (!(st = un(ctx, n->op + (NNM_UNARY_SILU_GRAD - NNM_UNARY_SILU), x, n->alpha, &t)))
            st = bin(ctx, NNM_BINARY_MUL, g, t, &gin[0]);
        break;
    default:
        st = nnm__error(ctx, NNM_E_UNSUPPORTED, "unary op %d is not differentiable", (int)n->op);
    }
    nnm_tensor_release(t);
    nnm_tensor_release(u);
    return st;
}

static const char *unary_name(int32_t op) {
    static const char *names[] = {"CopyBackward", "NegBackward", "ReluBackward", "ExpBackward",
                                  "LogBackward", "TanhBackward", "SigmoidBackward", "SqrtBackward",
                                  "AbsBackward", "MulScalarBackward", "StepBackward", "SignBackward",
                                  "ErfBackward", "AddScalarBackward", "PowBackward", "ClampMinBackward",
                                  "ClampMaxBackward", "GeBackward", "SinBackward", "CosBackward",
                                  "FloorBackward", "CeilBackward", "RoundBackward", "TruncBackward",
                                  "SiluBackward", "GeluBackward", "GeluBackward", "HardswishBackward",
                                  "LeakyReluBackward", "EluBackward", "Relu6Backward", "HardsigmoidBackward"};
    return op >= 0 && op < (int32_t)(sizeof names / sizeof names[0]) ? names[op] : "UnaryBackward";
}

/* Which of x (bit 0) and y (bit 1) unary_backward reads for op: a node
 * keeps only those alive (PyTorch's relu saves only its result, exp its
 * result, copy and neg nothing). */
static unsigned unary_saves(nnm_ctx *ctx, int32_t op, const nnm_tensor *x) {
    switch (op) {
    case NNM_UNARY_COPY:
    case NNM_UNARY_NEG:
    case NNM_UNARY_SCALE:
    case NNM_UNARY_ADD_SCALAR: return 0;
    case NNM_UNARY_EXP:
    case NNM_UNARY_SQRT:
    case NNM_UNARY_TANH:
    case NNM_UNARY_SIGMOID: return 2;
    case NNM_UNARY_RELU: {
        nnm__backend *be; /* without `where`, relu's gradient is g * step(x) */
        if (nnm__backend_get(ctx, x->desc.device, &be)) return 3;
        return has_where(be) ? 2 : 1;
    }
    default: return 1;
    }
}

nnm_status nnm__record_unary(nnm_ctx *ctx, int32_t op, double alpha, nnm_tensor *x, nnm_tensor *y) {
    if (op == NNM_UNARY_STEP || op == NNM_UNARY_SIGN || op == NNM_UNARY_GE)
        return NNM_OK; /* zero gradient almost everywhere */
    if (op >= NNM_UNARY_SILU_GRAD && op <= NNM_UNARY_HARDSIGMOID_GRAD)
        return NNM_OK; /* derivatives: backward runs them, nothing differentiates them again */
    nnm__node *n = nnm__node_new(ctx, unary_name(op), unary_backward, &x, 1, 1);
    if (!n) return nnm__error(ctx, NNM_E_NOMEM, "out of memory (autograd node)");
    n->op = op;
    n->alpha = alpha;
    unsigned saves = unary_saves(ctx, op, x);
    nnm_status st = NNM_OK;
    n->n_saved = 2; /* saved[0] x, saved[1] y; NULL where not needed */
    if (saves & 1) st = nnm__node_save_at(n, 0, x);
    if (!st && (saves & 2)) st = nnm__node_save_at(n, 1, y);
    if (!st) nnm__node_attach(n, y, 0);
    nnm__node_release(n);
    return st;
}

/* ---- binary ------------------------------------------------------------- */

/* eq(a, b) as 1/0: 1 - step(a - b) - step(b - a). */
static nnm_status equal_mask(nnm_ctx *ctx, nnm_tensor *a, nnm_tensor *b, nnm_tensor **out) {
    nnm_tensor *d = NULL, *s1 = NULL, *s2 = NULL, *sum = NULL, *one = NULL;
    nnm_status st;
    int64_t shape1[1] = {1};
    if (!(st = bin(ctx, NNM_BINARY_SUB, a, b, &d)) && !(st = un(ctx, NNM_UNARY_STEP, d, 0, &s1)) &&
        !(st = un(ctx, NNM_UNARY_NEG, d, 0, &s2))) {
        nnm_tensor *t = s2;
        s2 = NULL;
        st = un(ctx, NNM_UNARY_STEP, t, 0, &s2);
        nnm_tensor_release(t);
    }
    if (!st && !(st = bin(ctx, NNM_BINARY_ADD, s1, s2, &sum)) &&
        !(st = nnm__tensor_alloc(ctx, a->desc.device, a->desc.dtype, 1, shape1, &one)) &&
        !(st = nnm__op_fill(ctx, one, 1.0)))
        st = bin(ctx, NNM_BINARY_SUB, one, sum, out);
    nnm_tensor_release(d);
    nnm_tensor_release(s1);
    nnm_tensor_release(s2);
    nnm_tensor_release(sum);
    nnm_tensor_release(one);
    return st;
}

/* For max (sign 1) or min (sign -1): the share of g going to a: 1 where a
 * wins, 1/2 on ties (as torch.maximum), 0 where b wins. */
static nnm_status minmax_share(nnm_ctx *ctx, int sign, nnm_tensor *a, nnm_tensor *b, nnm_tensor **out) {
    nnm_tensor *d = NULL, *win = NULL, *eq = NULL, *half = NULL;
    nnm_status st = sign > 0 ? bin(ctx, NNM_BINARY_SUB, a, b, &d) : bin(ctx, NNM_BINARY_SUB, b, a, &d);
    if (!st && !(st = un(ctx, NNM_UNARY_STEP, d, 0, &win)) && !(st = equal_mask(ctx, a, b, &eq)) &&
        !(st = un(ctx, NNM_UNARY_SCALE, eq, 0.5, &half)))
        st = bin(ctx, NNM_BINARY_ADD, win, half, out);
    nnm_tensor_release(d);
    nnm_tensor_release(win);
    nnm_tensor_release(eq);
    nnm_tensor_release(half);
    return st;
}

/* x == 0 exactly as 1/0 (NaN: 0): (x >= 0) * (-x >= 0). */
static nnm_status is_zero(nnm_ctx *ctx, nnm_tensor *x, nnm_tensor **out) {
    nnm_tensor *p = NULL, *m = NULL, *q = NULL;
    nnm_status st = un(ctx, NNM_UNARY_GE, x, 0.0, &p);
    if (!st && !(st = un(ctx, NNM_UNARY_NEG, x, 0, &m)) && !(st = un(ctx, NNM_UNARY_GE, m, 0.0, &q)))
        st = bin(ctx, NNM_BINARY_MUL, p, q, out);
    nnm_tensor_release(p);
    nnm_tensor_release(m);
    nnm_tensor_release(q);
    return st;
}

/* where(cond, 0, v) over the broadcast shape. */
static nnm_status zero_where(nnm_ctx *ctx, nnm_tensor *cond, nnm_tensor *v, nnm_tensor **out) {
    nnm_tensor *z = NULL;
    nnm_status st = nnm__op_full(ctx, v->desc.device, 0, NULL, 0.0, &z);
    if (!st) st = nnm__op_where(ctx, cond, z, v, out);
    nnm_tensor_release(z);
    return st;
}

/* d(a^b)/da: where(b == 0, 0, g * b * a^(b - 1)). */
static nnm_status pow_grad_base(nnm_ctx *ctx, nnm_tensor *g, nnm_tensor *a, nnm_tensor *b, nnm_tensor **out) {
    nnm_tensor *bm1 = NULL, *p = NULL, *t = NULL, *v = NULL, *c = NULL;
    nnm_status st = un(ctx, NNM_UNARY_ADD_SCALAR, b, -1.0, &bm1);
    if (!st && !(st = bin(ctx, NNM_BINARY_POW, a, bm1, &p)) && !(st = bin(ctx, NNM_BINARY_MUL, p, b, &t)) &&
        !(st = bin(ctx, NNM_BINARY_MUL, g, t, &v)) && !(st = is_zero(ctx, b, &c)))
        st = zero_where(ctx, c, v, out);
    nnm_tensor_release(bm1);
    nnm_tensor_release(p);
    nnm_tensor_release(t);
    nnm_tensor_release(v);
    nnm_tensor_release(c);
    return st;
}

/* d(a^b)/db: where(a == 0 and b >= 0, 0, g * a^b * log(a)). */
static nnm_status pow_grad_exponent(nnm_ctx *ctx, nnm_tensor *g, nnm_tensor *a, nnm_tensor *b, nnm_tensor **out) {
    nnm_tensor *y = NULL, *l = NULL, *t = NULL, *v = NULL, *za = NULL, *gb = NULL, *c = NULL;
    nnm_status st = bin(ctx, NNM_BINARY_POW, a, b, &y);
    if (!st && !(st = un(ctx, NNM_UNARY_LOG, a, 0, &l)) && !(st = bin(ctx, NNM_BINARY_MUL, y, l, &t)) &&
        !(st = bin(ctx, NNM_BINARY_MUL, g, t, &v)) && !(st = is_zero(ctx, a, &za)) &&
        !(st = un(ctx, NNM_UNARY_GE, b, 0.0, &gb)) && !(st = bin(ctx, NNM_BINARY_MUL, za, gb, &c)))
        st = zero_where(ctx, c, v, out);
    nnm_tensor_release(y);
    nnm_tensor_release(l);
    nnm_tensor_release(t);
    nnm_tensor_release(v);
    nnm_tensor_release(za);
    nnm_tensor_release(gb);
    nnm_tensor_release(c);
    return st;
}

/* saved[0] = a, saved[1] = b; in_shape = their shapes */
static nnm_status binary_backward(nnm_ctx *ctx, nnm__node *n, nnm_tensor *const *gout, nnm_tensor **gin) {
    nnm_tensor *g = gout[0], *a = n->saved[0], *b = n->saved[1];
    if (!g) return NNM_OK;
    nnm_tensor *full[2] = {NULL, NULL}, *t = NULL, *u = NULL;
    nnm_status st = NNM_OK;
    switch (n->op) {
    case NNM_BINARY_ADD:
        nnm_tensor_retain(g), nnm_tensor_retain(g);
        full[0] = full[1] = g;
        break;
    case NNM_BINARY_SUB:
        nnm_tensor_retain(g);
        full[0] = g;
        if (wants(n, 1)) st = un(ctx, NNM_UNARY_NEG, g, 0, &full[1]);
        break;
    case NNM_BINARY_MUL:
        if (wants(n, 0)) st = bin(ctx, NNM_BINARY_MUL, g, b, &full[0]);
        if (!st && wants(n, 1)) st = bin(ctx, NNM_BINARY_MUL, g, a, &full[1]);
        break;
    case NNM_BINARY_DIV: /* g / b, -(g / b) * a / b */
        if (!(st = bin(ctx, NNM_BINARY_DIV, g, b, &full[0])) && wants(n, 1) &&
            !(st = bin(ctx, NNM_BINARY_MUL, full[0], a, &t)) && !(st = bin(ctx, NNM_BINARY_DIV, t, b, &u)))
            st = un(ctx, NNM_UNARY_NEG, u, 0, &full[1]);
        break;
    case NNM_BINARY_MAX:
    case NNM_BINARY_MIN: {
        int sign = n->op == NNM_BINARY_MAX ? 1 : -1;
        if (!(st = minmax_share(ctx, sign, a, b, &t))) {
            if (wants(n, 0)) st = bin(ctx, NNM_BINARY_MUL, g, t, &full[0]);
            if (!st && wants(n, 1) && !(st = minmax_share(ctx, sign, b, a, &u)))
                st = bin(ctx, NNM_BINARY_MUL, g, u, &full[1]);
        }
        break;
    }
    case NNM_BINARY_POW: /* as torch's pow_backward_self / pow_backward_exponent */
        if (wants(n, 0)) st = pow_grad_base(ctx, g, a, b, &full[0]);
        if (!st && wants(n, 1)) st = pow_grad_exponent(ctx, g, a, b, &full[1]);
        break;
    default:
        st = nnm__error(ctx, NNM_E_UNSUPPORTED, "binary op %d is not differentiable", (int)n->op);
    }
    for (int i = 0; i < 2 && !st; i++)
        if (full[i] && wants(n, (uint32_t)i))
            st = nnm__sum_to(ctx, full[i], n->in_ndim[i], n->in_shape[i], &gin[i]);
    nnm_tensor_release(full[0]);
    nnm_tensor_release(full[1]);
    nnm_tensor_release(t);
    nnm_tensor_release(u);
    return st;
}

nnm_status nnm__record_binary(nnm_ctx *ctx, int32_t op, nnm_tensor *a, nnm_tensor *b, nnm_tensor *y) {
    static const char *names[] = {"AddBackward", "SubBackward", "MulBackward", "DivBackward",
                                  "MaximumBackward", "MinimumBackward", "PowBackward"};
    nnm_tensor *in[2] = {a, b};
    nnm__node *n = nnm__node_new(ctx, names[op], binary_backward, in, 2, 1);
    if (!n) return nnm__error(ctx, NNM_E_NOMEM, "out of memory (autograd node)");
    n->op = op;
    keep_shape(n, 0, a);
    keep_shape(n, 1, b);
    nnm_status st = NNM_OK;
    if (op != NNM_BINARY_ADD && op != NNM_BINARY_SUB) {
        st = nnm__node_save(n, a);
        if (!st) st = nnm__node_save(n, b);
    }
    if (!st) nnm__node_attach(n, y, 0);
    nnm__node_release(n);
    return st;
}

/* ---- linear and matmul -------------------------------------------------- */

static nnm_status contiguous_of(nnm_ctx *ctx, nnm_tensor *t, nnm_tensor **out) {
    if (nnm__tensor_is_contiguous(t)) {
        nnm_tensor_retain(t);
        *out = t;
        return NNM_OK;
    }
    return nnm__op_unary(ctx, NNM_UNARY_COPY, t, 0, out);
}

/* Rows [r0, r1) of c [nout, k] = g^T x (+ beta c): g [m, nout], x [m, k]
 * (all of it: nnm__gemm(ctx, 1, 0, g, x, nout, k, m, beta, c)). */
static nnm_status gemm_rows_tn(nnm_ctx *ctx, nnm_tensor *g, nnm_tensor *x, int64_t r0, int64_t r1,
                               int64_t nout, int64_t k, int64_t m, float beta, nnm_tensor *c) {
    nnm__backend *be;
    nnm_status st = nnm__backend_get(ctx, c->desc.device, &be);
    if (st) return st;
    nnm__env env;
    nnm__env_init(&env, ctx, NULL, NNM__PHASE_BACKEND);
    nnm_gemm_args a = {sizeof a, 1, 0, r1 - r0, k, m, 1.0f, beta,
                       (const float *)((const char *)g->desc.data + g->desc.byte_offset) + r0, nout,
                       (const float *)((const char *)x->desc.data + x->desc.byte_offset), k,
                       (float *)((char *)c->desc.data + c->desc.byte_offset) + r0 * k, k};
    return be->vt->gemm(&env.pub, be->state, &a);
}

/* saved[0] = x (contiguous), saved[1] = w (contiguous); ival = has bias;
 * in_shape[0] = x's shape. y = x w^T + b over M = numel(x) / k rows.
 *
 * The parameters' gradients come first and are handed to the engine at once
 * (nnm__node_emit), so their post-accumulate-grad hooks run before the
 * input's gemm: DDP starts a bucket's all-reduce there, and that gemm, as
 * large as the weight's, overlaps it. The weight's gradient is written by
 * its gemm straight into the tensor that keeps it where the engine offers
 * one (the .grad it adds into, or DDP's bucket view): no temporary, no copy
 * into the bucket; a large one in row blocks, which DDP all-reduces one by
 * one as they are written. */
static nnm_status linear_backward(nnm_ctx *ctx, nnm__node *n, nnm_tensor *const *gout, nnm_tensor **gin) {
    nnm_tensor *g0 = gout[0], *x = n->saved[0], *w = n->saved[1], *g = NULL;
    if (!g0) return NNM_OK;
    int64_t nout = w->shape[0], k = w->shape[1];
    int64_t m = nnm__numel(n->in_ndim[0], n->in_shape[0]) / (k ? k : 1);
    nnm_status st = contiguous_of(ctx, g0, &g);
    if (!st && wants(n, 1)) {
        nnm_tensor *ops[2] = {g, x};
        int acc = 0;
        nnm_tensor *dest = nnm__node_grad_dest(ctx, n, 1, ops, 2, &acc), *gw = dest;
        if (!gw && !(st = nnm__tensor_alloc(ctx, w->desc.device, w->desc.dtype, 2, w->shape, &gin[1])))
            gw = gin[1];
        /* A large weight's gradient in row blocks, always the same ones
         * (nnm__grad_block_rows: by its shape, DDP or not, so the bits never
         * depend on who asked); where the leaf takes it in parts (DDP), each
         * block is handed over once written. */
        int64_t rows = nnm__grad_block_rows(nout, k);
        int parts = dest && rows && nnm__node_grad_dest_parts(ctx, n, 1, dest);
        if (!rows) rows = nout;
        for (int64_t r0 = 0; !st && r0 < nout; r0 += rows) { /* [n,M] x [M,k] */
            int64_t r1 = r0 + rows < nout ? r0 + rows : nout;
            st = gemm_rows_tn(ctx, g, x, r0, r1, nout, k, m, acc ? 1.0f : 0.0f, gw);
            if (!st && parts) st = nnm__node_grad_dest_part(ctx, n, 1, dest, r0 * k, r1 * k);
        }
        if (!st) st = dest ? nnm__node_grad_dest_done(ctx, n, 1, dest) : nnm__node_emit(ctx, n, 1, gin[1]);
    }
    if (!st && n->ival && wants(n, 2)) {
        int64_t shape[1] = {nout};
        if (!(st = nnm__sum_to(ctx, g, 1, shape, &gin[2]))) st = nnm__node_emit(ctx, n, 2, gin[2]);
    }
    if (!st && wants(n, 0) &&
        !(st = nnm__tensor_alloc(ctx, x->desc.device, x->desc.dtype, n->in_ndim[0], n->in_shape[0], &gin[0])))
        st = nnm__gemm(ctx, 0, 0, g, w, m, k, nout, 0.0f, gin[0]); /* [M,n] x [n,k] */
    nnm_tensor_release(g);
    return st;
}

nnm_status nnm__record_linear(nnm_ctx *ctx, nnm_tensor *x, nnm_tensor *w, nnm_tensor *b, nnm_tensor *xc,
                              nnm_tensor *wc, nnm_tensor *y) {
    nnm_tensor *in[3] = {x, w, b};
    nnm__node *n = nnm__node_new(ctx, "LinearBackward", linear_backward, in, b ? 3 : 2, 1);
    if (!n) return nnm__error(ctx, NNM_E_NOMEM, "out of memory (autograd node)");
    n->ival = b != NULL;
    keep_shape(n, 0, x);
    nnm_status st = nnm__node_save_input(n, xc);
    if (!st) st = nnm__node_save_input(n, wc);
    if (!st) nnm__node_attach(n, y, 0);
    nnm__node_release(n);
    return st;
}

/* saved[0] = a, saved[1] = b, both contiguous [m,k] and [k,n] */
static nnm_status matmul_backward(nnm_ctx *ctx, nnm__node *n, nnm_tensor *const *gout, nnm_tensor **gin) {
    nnm_tensor *g0 = gout[0], *a = n->saved[0], *b = n->saved[1], *g = NULL;
    if (!g0) return NNM_OK;
    int64_t m = a->shape[0], k = a->shape[1], nn = b->shape[1];
    nnm_status st = contiguous_of(ctx, g0, &g);
    if (!st && wants(n, 0) && !(st = nnm__tensor_alloc(ctx, a->desc.device, a->desc.dtype, 2, a->shape, &gin[0])))
        st = nnm__gemm(ctx, 0, 1, g, b, m, k, nn, 0.0f, gin[0]); /* g b^T */
    if (!st && wants(n, 1) && !(st = nnm__tensor_alloc(ctx, b->desc.device, b->desc.dtype, 2, b->shape, &gin[1])))
        st = nnm__gemm(ctx, 1, 0, a, g, k, nn, m, 0.0f, gin[1]); /* a^T g */
    nnm_tensor_release(g);
    return st;
}

nnm_status nnm__record_matmul(nnm_ctx *ctx, nnm_tensor *a, nnm_tensor *b, nnm_tensor *ac, nnm_tensor *bc,
                              nnm_tensor *y) {
    nnm_tensor *in[2] = {a, b};
    nnm__node *n = nnm__node_new(ctx, "MmBackward", matmul_backward, in, 2, 1);
    if (!n) return nnm__error(ctx, NNM_E_NOMEM, "out of memory (autograd node)");
    nnm_tensor *acc = NULL, *bcc = NULL;
    nnm_status st = contiguous_of(ctx, ac, &acc);
    if (!st) st = contiguous_of(ctx, bc, &bcc);
    if (!st) st = nnm__node_save(n, acc);
    if (!st) st = nnm__node_save(n, bcc);
    if (!st) nnm__node_attach(n, y, 0);
    nnm_tensor_release(acc);
    nnm_tensor_release(bcc);
    nnm__node_release(n);
    return st;
}

/* ---- reductions --------------------------------------------------------- */

/* saved[0] = x, saved[1] = keepdim-shaped result; in_shape[1] = that shape */
static nnm_status reduce_backward(nnm_ctx *ctx, nnm__node *n, nnm_tensor *const *gout, nnm_tensor **gin) {
    nnm_tensor *g = gout[0], *x = n->saved[0], *r = n->saved[1];
    if (!g || !wants(n, 0)) return NNM_OK;
    nnm_tensor *gk = NULL, *ge = NULL, *re = NULL, *mask = NULL, *cnt = NULL, *ce = NULL, *t = NULL;
    /* g in the keepdim shape, then broadcast to x's shape */
    nnm_status st = nnm__op_reshape(ctx, g, n->in_ndim[1], n->in_shape[1], &gk);
    if (!st) st = nnm__expand(ctx, gk, x->desc.ndim, x->shape, &ge);
    if (!st) {
        int64_t count = nnm_tensor_numel(x) / (nnm_tensor_numel(r) ? nnm_tensor_numel(r) : 1);
        switch (n->op) {
        case NNM_REDUCE_SUM: gin[0] = ge, ge = NULL; break;
        case NNM_REDUCE_MEAN: st = un(ctx, NNM_UNARY_SCALE, ge, count ? 1.0 / (double)count : 0.0, &gin[0]); break;
        default: { /* max/min: shared equally among the elements that attain it */
            int32_t dims[NNM_MAX_DIMS];
            uint32_t nd = 0;
            for (int32_t i = 0; i < x->desc.ndim; i++)
                if (n->in_shape[1][i] == 1 && x->shape[i] != 1) dims[nd++] = i;
            if (!(st = nnm__expand(ctx, r, x->desc.ndim, x->shape, &re)) && !(st = equal_mask(ctx, x, re, &mask)) &&
                !(st = nnm__op_reduce(ctx, NNM_REDUCE_SUM, mask, dims, nd, 1, &cnt)) &&
                !(st = nnm__expand(ctx, cnt, x->desc.ndim, x->shape, &ce)) &&
                !(st = bin(ctx, NNM_BINARY_MUL, ge, mask, &t)))
                st = bin(ctx, NNM_BINARY_DIV, t, ce, &gin[0]);
        }
        }
    }
    nnm_tensor_release(gk);
    nnm_tensor_release(ge);
    nnm_tensor_release(re);
    nnm_tensor_release(mask);
    nnm_tensor_release(cnt);
    nnm_tensor_release(ce);
    nnm_tensor_release(t);
    return st;
}

nnm_status nnm__record_reduce(nnm_ctx *ctx, int32_t op, nnm_tensor *x, nnm_tensor *rkeep, nnm_tensor *y) {
    static const char *names[] = {"SumBackward", "MeanBackward", "AmaxBackward", "AminBackward"};
    nnm__node *n = nnm__node_new(ctx, names[op], reduce_backward, &x, 1, 1);
    if (!n) return nnm__error(ctx, NNM_E_NOMEM, "out of memory (autograd node)");
    n->op = op;
    keep_shape(n, 1, rkeep);
    nnm_status st = nnm__node_save(n, x);
    if (!st) st = nnm__node_save(n, rkeep);
    if (!st) nnm__node_attach(n, y, 0);
    nnm__node_release(n);
    return st;
}

/* ---- log_softmax, nll, reshape ------------------------------------------ */

/* saved[0] = y = log_softmax(x); gx = g - exp(y) * sum(g, -1) */
static nnm_status log_softmax_backward(nnm_ctx *ctx, nnm__node *n, nnm_tensor *const *gout, nnm_tensor **gin) {
    nnm_tensor *g = gout[0], *y = n->saved[0], *p = NULL, *s = NULL, *ps = NULL;
    if (!g || !wants(n, 0)) return NNM_OK;
    int32_t last = -1;
    nnm_status st = un(ctx, NNM_UNARY_EXP, y, 0, &p);
    if (!st) st = nnm__op_reduce(ctx, NNM_REDUCE_SUM, g, &last, 1, 1, &s);
    if (!st) st = bin(ctx, NNM_BINARY_MUL, p, s, &ps);
    if (!st) st = bin(ctx, NNM_BINARY_SUB, g, ps, &gin[0]);
    nnm_tensor_release(p);
    nnm_tensor_release(s);
    nnm_tensor_release(ps);
    return st;
}

nnm_status nnm__record_log_softmax(nnm_ctx *ctx, nnm_tensor *x, nnm_tensor *y) {
    nnm__node *n = nnm__node_new(ctx, "LogSoftmaxBackward", log_softmax_backward, &x, 1, 1);
    if (!n) return nnm__error(ctx, NNM_E_NOMEM, "out of memory (autograd node)");
    nnm_status st = nnm__node_save(n, y);
    if (!st) nnm__node_attach(n, y, 0);
    nnm__node_release(n);
    return st;
}

/* saved[0] = target, saved[1] = count [1]; op = reduction, ival = ignore_index,
 * alpha = label smoothing, in_shape[0] = logp's shape. */
static nnm_status nll_backward(nnm_ctx *ctx, nnm__node *n, nnm_tensor *const *gout, nnm_tensor **gin) {
    nnm_tensor *g = gout[0], *target = n->saved[0], *count = n->saved[1], *per = NULL, *t = NULL;
    if (!g || !wants(n, 0)) return NNM_OK;
    int64_t rows[1] = {n->in_shape[0][0]};
    nnm_status st = NNM_OK;
    if (n->op == NNM_REDUCTION_NONE) {
        st = contiguous_of(ctx, g, &per);
    } else {
        nnm_tensor *g1 = g;
        if (n->op == NNM_REDUCTION_MEAN) st = bin(ctx, NNM_BINARY_DIV, g, count, &t), g1 = t;
        if (!st) st = nnm__expand(ctx, g1, 1, rows, &per);
    }
    nnm__backend *be;
    if (!st && !(st = nnm__backend_get(ctx, target->desc.device, &be)) &&
        !(st = nnm__tensor_alloc(ctx, target->desc.device, NNM_F32, 2, n->in_shape[0], &gin[0]))) {
        nnm__env env;
        nnm__env_init(&env, ctx, NULL, NNM__PHASE_BACKEND);
        nnm_nll_backward_args a = {sizeof a, 0, n->ival, n->alpha, &per->desc, &target->desc, &gin[0]->desc};
        st = be->vt->nll_backward ? be->vt->nll_backward(&env.pub, be->state, &a)
                                  : nnm__error(ctx, NNM_E_UNSUPPORTED, "backend '%s' has no nll_backward",
                                               be->vt->name);
    }
    nnm_tensor_release(per);
    nnm_tensor_release(t);
    return st;
}

nnm_status nnm__record_nll(nnm_ctx *ctx, nnm_tensor *logp, nnm_tensor *target, nnm_tensor *count,
                           int64_t ignore_index, double smoothing, int32_t reduction, nnm_tensor *y) {
    nnm__node *n = nnm__node_new(ctx, "NllLossBackward", nll_backward, &logp, 1, 1);
    if (!n) return nnm__error(ctx, NNM_E_NOMEM, "out of memory (autograd node)");
    n->op = reduction;
    n->ival = ignore_index;
    n->alpha = smoothing;
    keep_shape(n, 0, logp);
    nnm_status st = nnm__node_save(n, target);
    if (!st) st = nnm__node_save(n, count);
    if (!st) nnm__node_attach(n, y, 0);
    nnm__node_release(n);
    return st;
}

static nnm_status reshape_backward(nnm_ctx *ctx, nnm__node *n, nnm_tensor *const *gout, nnm_tensor **gin) {
    if (!gout[0] || !wants(n, 0)) return NNM_OK;
    return nnm__op_reshape(ctx, gout[0], n->in_ndim[0], n->in_shape[0], &gin[0]);
}

nnm_status nnm__record_reshape(nnm_ctx *ctx, nnm_tensor *x, nnm_tensor *y) {
    nnm__node *n = nnm__node_new(ctx, "ViewBackward", reshape_backward, &x, 1, 1);
    if (!n) return nnm__error(ctx, NNM_E_NOMEM, "out of memory (autograd node)");
    keep_shape(n, 0, x);
    nnm__node_attach(n, y, 0);
    nnm__node_release(n);
    return NNM_OK;
}
