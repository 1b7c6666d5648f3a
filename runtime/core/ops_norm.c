/* runtime/core/ops_norm.c - the normalisation ops (ABI 1.4): batch norm as
 * one fused op over the backend's batch_norm / batch_norm_backward slots.
 *
 * As in ops.c: check shapes, dtypes and devices, allocate outputs from the
 * caching allocator, dispatch to the device's backend, and record ONE
 * autograd node (derivatives_nn.c). A backend without the slots gets
 * NNM_E_UNSUPPORTED naming the op and the backend, before anything is
 * written, so a layer can fall back to composing the op. */
#include <string.h>

#include "internal.h"

static int is_f32(const nnm_tensor *t) {
    return t->desc.dtype.code == NNM_DTYPE_FLOAT && t->desc.dtype.bits == 32 && t->desc.dtype.lanes == 1;
}

/* A per-channel operand ([C], f32, x's device), or NULL. */
static nnm_status check_channel(nnm_ctx *ctx, const char *what, const nnm_tensor *t, const nnm_tensor *x,
                                int64_t c) {
    if (!t) return NNM_OK;
    if (!is_f32(t)) return nnm__error(ctx, NNM_E_DTYPE, "batch_norm: %s must be f32", what);
    if (t->desc.ndim != 1 || t->shape[0] != c) {
        char s[128];
        nnm__shape_str(&t->desc, s, sizeof s);
        return nnm__error(ctx, NNM_E_SHAPE, "batch_norm: %s must be [%lld] (the input's channels), got %s", what,
                          (long long)c, s);
    }
    if (!nnm__device_eq(t->desc.device, x->desc.device)) {
        char dx[32], dt[32];
        return nnm__error(ctx, NNM_E_DEVICE, "batch_norm: %s is on %s, the input on %s", what,
                          nnm__device_name(t->desc.device, dt, sizeof dt),
                          nnm__device_name(x->desc.device, dx, sizeof dx));
    }
    return NNM_OK;
}

/* Fills the backend args for x viewed as [n, c, l]. */
static void bn_args(nnm_batch_norm_args *a, const nnm_tensor *x, int training, double momentum, double eps) {
    memset(a, 0, sizeof *a);
    a->struct_size = sizeof *a;
    a->training = training != 0;
    a->momentum = momentum;
    a->eps = eps;
    a->n = x->shape[0];
    a->c = x->shape[1];
    a->l = nnm__numel(x->desc.ndim - 2, x->shape + 2);
}

nnm_status nnm__op_batch_norm(nnm_ctx *ctx, nnm_tensor *x, nnm_tensor *running_mean, nnm_tensor *running_var,
                              nnm_tensor *weight, nnm_tensor *bias, const nnm_batch_norm_params *p,
                              nnm_tensor **out) {
    *out = NULL;
    if (!p || p->struct_size < sizeof(nnm_batch_norm_params))
        return nnm__error(ctx, NNM_E_INVALID, "batch_norm: params are NULL or too small");
    if (!x) return nnm__error(ctx, NNM_E_INVALID, "batch_norm: input is NULL");
    if (!is_f32(x)) return nnm__error(ctx, NNM_E_DTYPE, "batch_norm: input must be f32");
    if (x->desc.ndim < 2)
        return nnm__error(ctx, NNM_E_SHAPE, "batch_norm: input must be [N, C, *] (>= 2 dims), got %d dims",
                          (int)x->desc.ndim);
    if (!(p->eps >= 0)) return nnm__error(ctx, NNM_E_INVALID, "batch_norm: eps must be >= 0, got %g", p->eps);
    if (p->momentum != p->momentum) return nnm__error(ctx, NNM_E_INVALID, "batch_norm: momentum is NaN");
    const int64_t c = x->shape[1];
    nnm_status st;
    if ((st = check_channel(ctx, "weight", weight, x, c)) || (st = check_channel(ctx, "bias", bias, x, c)) ||
        (st = check_channel(ctx, "running_mean", running_mean, x, c)) ||
        (st = check_channel(ctx, "running_var", running_var, x, c)))
        return st;
    if (!running_mean != !running_var)
        return nnm__error(ctx, NNM_E_INVALID, "batch_norm: running_mean and running_var are given both or neither");
    if (!p->training && !running_mean)
        return nnm__error(ctx, NNM_E_INVALID,
                          "batch_norm: eval mode needs running_mean and running_var (or training mode)");
    nnm_tensor *const stats[2] = {running_mean, running_var};
    for (int i = 0; i < 2; i++) {
        if (!stats[i]) continue;
        if (stats[i]->flags & NNM__T_REQUIRES_GRAD)
            return nnm__error(ctx, NNM_E_STATE,
                              "batch_norm: %s requires grad (running statistics are buffers, updated in place)",
                              i ? "running_var" : "running_mean");
        if (!nnm__tensor_is_contiguous(stats[i]))
            return nnm__error(ctx, NNM_E_INVALID, "batch_norm: %s must be contiguous",
                              i ? "running_var" : "running_mean");
    }
    const int64_t per_channel = nnm__numel(x->desc.ndim, x->shape) / (c ? c : 1);
    if (p->training && c && per_channel == 1) {
        char s[128];
        nnm__shape_str(&x->desc, s, sizeof s);
        return nnm__error(ctx, NNM_E_SHAPE,
                          "batch_norm: expected more than 1 value per channel when training, got input %s", s);
    }
    const int record = nnm__needs_grad(x, weight, bias);
    nnm__backend *be;
    if ((st = NNM__BACKEND_SLOT(ctx, x->desc.device, batch_norm, "batch_norm", &be)) ||
        (record && (st = NNM__BACKEND_SLOT(ctx, x->desc.device, batch_norm_backward, "batch_norm", &be))))
        return st;
    nnm_tensor *xc = NULL, *wc = NULL, *bc = NULL, *y = NULL, *mean = NULL, *invstd = NULL;
    const int64_t cs[1] = {c};
    if ((st = nnm__contiguous(ctx, x, &xc)) || (weight && (st = nnm__contiguous(ctx, weight, &wc))) ||
        (bias && (st = nnm__contiguous(ctx, bias, &bc))) ||
        (st = nnm__tensor_alloc(ctx, x->desc.device, NNM_F32, x->desc.ndim, x->shape, &y)) ||
        (st = nnm__tensor_alloc(ctx, x->desc.device, NNM_F32, 1, cs, &mean)) ||
        (st = nnm__tensor_alloc(ctx, x->desc.device, NNM_F32, 1, cs, &invstd)))
        goto done;
    nnm_batch_norm_args a;
    bn_args(&a, x, p->training, p->momentum, p->eps);
    a.x = &xc->desc;
    a.weight = wc ? &wc->desc : NULL;
    a.bias = bc ? &bc->desc : NULL;
    a.running_mean = running_mean ? &running_mean->desc : NULL;
    a.running_var = running_var ? &running_var->desc : NULL;
    a.save_mean = &mean->desc;
    a.save_invstd = &invstd->desc;
    a.y = &y->desc;
    nnm__env env;
    nnm__env_init(&env, ctx, NULL, NNM__PHASE_BACKEND);
    if (!(st = be->vt->batch_norm(&env.pub, be->state, &a)) && record)
        st = nnm__record_batch_norm(ctx, x, weight, bias, xc, wc, mean, invstd, p->training, y);
done:
    nnm_tensor_release(xc);
    nnm_tensor_release(wc);
    nnm_tensor_release(bc);
    nnm_tensor_release(mean);
    nnm_tensor_release(invstd);
    if (st) nnm_tensor_release(y);
    else *out = y;
    return st;
}

nnm_status nnm__batch_norm_backward(nnm_ctx *ctx, int training, nnm_tensor *x, nnm_tensor *w, nnm_tensor *mean,
                                    nnm_tensor *invstd, nnm_tensor *g0, nnm_tensor **gx, nnm_tensor **gw,
                                    nnm_tensor **gb) {
    if (gx) *gx = NULL;
    if (gw) *gw = NULL;
    if (gb) *gb = NULL;
    nnm__backend *be;
    nnm_status st = NNM__BACKEND_SLOT(ctx, x->desc.device, batch_norm_backward, "batch_norm backward", &be);
    if (st) return st;
    const int64_t cs[1] = {x->shape[1]};
    nnm_tensor *g = NULL;
    if ((st = nnm__contiguous(ctx, g0, &g)) ||
        (gx && (st = nnm__tensor_alloc(ctx, x->desc.device, NNM_F32, x->desc.ndim, x->shape, gx))) ||
        (gw && (st = nnm__tensor_alloc(ctx, x->desc.device, NNM_F32, 1, cs, gw))) ||
        (gb && (st = nnm__tensor_alloc(ctx, x->desc.device, NNM_F32, 1, cs, gb))))
        goto done;
    nnm_batch_norm_args a;
    bn_args(&a, x, training, 0.0, 0.0);
    a.x = &x->desc;
    a.weight = w ? &w->desc : NULL;
    a.save_mean = &mean->desc;
    a.save_invstd = &invstd->desc;
    a.grad_out = &g->desc;
    a.grad_x = gx ? &(*gx)->desc : NULL;
    a.grad_weight = gw ? &(*gw)->desc : NULL;
    a.grad_bias = gb ? &(*gb)->desc : NULL;
    nnm__env env;
    nnm__env_init(&env, ctx, NULL, NNM__PHASE_BACKEND);
    st = be->vt->batch_norm_backward(&env.pub, be->state, &a);
done:
    nnm_tensor_release(g);
    if (st) {
        if (gx) nnm_tensor_release(*gx), *gx = NULL;
        if (gw) nnm_tensor_release(*gw), *gw = NULL;
        if (gb) nnm_tensor_release(*gb), *gb = NULL;
    }
    return st;
}

/* ---- layer normalisation (1.5) --------------------------------------------
 * F.layer_norm(x [+ residual]) as ONE op over the backend's layer_norm /
 * layer_norm_backward slots and ONE autograd node (LayerNormBackward):
 * inputs x, residual, weight, bias; saved x and residual (contiguous),
 * mean and rstd [rows], weight (contiguous). x and residual receive the
 * same gradient. */

enum { LN_X, LN_R, LN_MEAN, LN_RSTD, LN_W };

static void ln_args(nnm_layer_norm_args *a, int64_t rows, int64_t cols, double eps) {
    memset(a, 0, sizeof *a);
    a->struct_size = sizeof *a;
    a->rows = rows;
    a->cols = cols;
    a->eps = eps;
}

/* The weight / bias of F.layer_norm: f32 of x's last k dims on x's device, or NULL. */
static nnm_status ln_check_affine(nnm_ctx *ctx, const char *what, const nnm_tensor *t, const nnm_tensor *x, int32_t k) {
    if (!t) return NNM_OK;
    if (!is_f32(t)) return nnm__error(ctx, NNM_E_DTYPE, "layer_norm: %s must be f32", what);
    int ok = t->desc.ndim == k;
    for (int32_t i = 0; ok && i < k; i++) ok = t->shape[i] == x->shape[x->desc.ndim - k + i];
    if (!ok) {
        char s[128], sx[128];
        nnm__shape_str(&t->desc, s, sizeof s);
        nnm__shape_str(&x->desc, sx, sizeof sx);
        return nnm__error(ctx, NNM_E_SHAPE, "layer_norm: %s %s must have the shape of the input's last %d dims (input %s)",
                          what, s, (int)k, sx);
    }
    if (!nnm__device_eq(t->desc.device, x->desc.device)) {
        char dx[32], dt[32];
        return nnm__error(ctx, NNM_E_DEVICE, "layer_norm: %s is on %s, the input on %s", what,
                          nnm__device_name(t->desc.device, dt, sizeof dt), nnm__device_name(x->desc.device, dx, sizeof dx));
    }
    return NNM_OK;
}

nnm_status nnm__layer_norm_backward(nnm_ctx *ctx, int32_t k, double eps, nnm_tensor *x, nnm_tensor *r, nnm_tensor *w,
                                    nnm_tensor *mean, nnm_tensor *rstd, nnm_tensor *g0, nnm_tensor **gx,
                                    nnm_tensor **gw, nnm_tensor **gb) {
    if (gx) *gx = NULL;
    if (gw) *gw = NULL;
    if (gb) *gb = NULL;
    nnm__backend *be;
    nnm_status st = NNM__BACKEND_SLOT(ctx, x->desc.device, layer_norm_backward, "layer_norm backward", &be);
    if (st) return st;
    const int32_t nd = x->desc.ndim;
    const int64_t cols = nnm__numel(k, x->shape + nd - k), rows = nnm__numel(nd - k, x->shape);
    nnm_tensor *g = NULL;
    if ((st = nnm__contiguous(ctx, g0, &g)) ||
        (gx && (st = nnm__tensor_alloc(ctx, x->desc.device, NNM_F32, nd, x->shape, gx))))
        goto done;
    if (rows == 0 || cols == 0) { /* nothing to normalise: zero parameter gradients */
        if ((gw && (st = nnm__op_full(ctx, x->desc.device, k, x->shape + nd - k, 0.0, gw))) ||
            (gb && (st = nnm__op_full(ctx, x->desc.device, k, x->shape + nd - k, 0.0, gb))))
            goto done;
        goto done;
    }
    if ((gw && (st = nnm__tensor_alloc(ctx, x->desc.device, NNM_F32, k, x->shape + nd - k, gw))) ||
        (gb && (st = nnm__tensor_alloc(ctx, x->desc.device, NNM_F32, k, x->shape + nd - k, gb))))
        goto done;
    nnm_layer_norm_args a;
    ln_args(&a, rows, cols, eps);
    a.x = &x->desc;
    a.residual = r ? &r->desc : NULL;
    a.weight = w ? &w->desc : NULL;
    a.mean = &mean->desc;
    a.rstd = &rstd->desc;
    a.grad_out = &g->desc;
    a.grad_x = gx ? &(*gx)->desc : NULL;
    a.grad_weight = gw ? &(*gw)->desc : NULL;
    a.grad_bias = gb ? &(*gb)->desc : NULL;
    nnm__env env;
    nnm__env_init(&env, ctx, NULL, NNM__PHASE_BACKEND);
    const uint64_t seq = ctx->err_seq;
    st = nnm__backend_check(ctx, be, "layer_norm_backward", be->vt->layer_norm_backward(&env.pub, be->state, &a), seq);
done:
    nnm_tensor_release(g);
    if (st) {
        if (gx) nnm_tensor_release(*gx), *gx = NULL;
        if (gw) nnm_tensor_release(*gw), *gw = NULL;
        if (gb) nnm_tensor_release(*gb), *gb = NULL;
    }
    return st;
}

static int ln_wants(const nnm__node *n, uint32_t i) { return i < n->n_in && (n->next[i].fn || n->next[i].leaf); }

/* op = normalized_ndim, alpha = eps (see ln_record) */
static nnm_status ln_backward(nnm_ctx *ctx, nnm__node *n, nnm_tensor *const *gout, nnm_tensor **gin) {
    const int wx = ln_wants(n, 0), wr = ln_wants(n, 1), ww = ln_wants(n, 2), wb = ln_wants(n, 3);
    if (!gout[0] || !(wx || wr || ww || wb)) return NNM_OK;
    nnm_tensor *gx = NULL;
    nnm_status st = nnm__layer_norm_backward(ctx, (int32_t)n->op, n->alpha, n->saved[LN_X], n->saved[LN_R],
                                             n->saved[LN_W], n->saved[LN_MEAN], n->saved[LN_RSTD], gout[0],
                                             (wx || wr) ? &gx : NULL, ww ? &gin[2] : NULL, wb ? &gin[3] : NULL);
    if (st) return st;
    if (wx) {
        nnm_tensor_retain(gx);
        gin[0] = gx;
    }
    if (wr) {
        nnm_tensor_retain(gx);
        gin[1] = gx;
    }
    nnm_tensor_release(gx);
    return NNM_OK;
}

static nnm_status ln_record(nnm_ctx *ctx, nnm_tensor *const *ins, nnm_tensor *const *keep, int32_t k, double eps,
                            nnm_tensor *out) {
    nnm__node *n = nnm__node_new(ctx, "NativeLayerNormBackward", ln_backward, ins, 4, 1);
    if (!n) return nnm__error(ctx, NNM_E_NOMEM, "out of memory (autograd node)");
    n->op = k;
    n->alpha = eps;
    n->n_saved = 5; /* slots left NULL are skipped */
    nnm_status st = NNM_OK;
    for (uint32_t i = 0; i < 5 && !st; i++)
        if (keep[i]) st = nnm__node_save_at(n, i, keep[i]);
    if (!st) nnm__node_attach(n, out, 0);
    nnm__node_release(n);
    return st;
}

nnm_status nnm__op_layer_norm(nnm_ctx *ctx, nnm_tensor *x, nnm_tensor *residual, nnm_tensor *weight,
                              nnm_tensor *bias, const nnm_layer_norm_params *p, nnm_tensor **out) {
    *out = NULL;
    if (!p || p->struct_size < sizeof(nnm_layer_norm_params))
        return nnm__error(ctx, NNM_E_INVALID, "layer_norm: params are NULL or too small");
    if (!x) return nnm__error(ctx, NNM_E_INVALID, "layer_norm: input is NULL");
    if (!is_f32(x)) return nnm__error(ctx, NNM_E_DTYPE, "layer_norm: input must be f32");
    const int32_t nd = x->desc.ndim, k = p->normalized_ndim;
    if (k < 1 || k > nd)
        return nnm__error(ctx, NNM_E_SHAPE, "layer_norm: normalized_ndim must be in [1, %d] (the input's dims), got %d",
                          (int)nd, (int)k);
    if (!(p->eps >= 0) || p->eps > 1e300)
        return nnm__error(ctx, NNM_E_INVALID, "layer_norm: eps must be finite and >= 0, got %g", p->eps);
    nnm_status st;
    if (residual) {
        if (!is_f32(residual)) return nnm__error(ctx, NNM_E_DTYPE, "layer_norm: residual must be f32");
        int same = residual->desc.ndim == nd;
        for (int32_t i = 0; same && i < nd; i++) same = residual->shape[i] == x->shape[i];
        if (!same) {
            char s[128], sx[128];
            nnm__shape_str(&residual->desc, s, sizeof s);
            nnm__shape_str(&x->desc, sx, sizeof sx);
            return nnm__error(ctx, NNM_E_SHAPE, "layer_norm: residual %s must have the input's shape %s", s, sx);
        }
        if (!nnm__device_eq(residual->desc.device, x->desc.device))
            return nnm__error(ctx, NNM_E_DEVICE, "layer_norm: residual is on another device than the input");
    }
    if ((st = ln_check_affine(ctx, "weight", weight, x, k)) || (st = ln_check_affine(ctx, "bias", bias, x, k)))
        return st;
    const int64_t cols = nnm__numel(k, x->shape + nd - k), rows = nnm__numel(nd - k, x->shape);
    const int record = nnm__needs_grad(x, residual, weight) || nnm__needs_grad(bias, NULL, NULL);
    nnm__backend *be;
    if ((st = NNM__BACKEND_SLOT(ctx, x->desc.device, layer_norm, "layer_norm", &be)) ||
        (record && (st = NNM__BACKEND_SLOT(ctx, x->desc.device, layer_norm_backward, "layer_norm", &be))))
        return st;
    nnm_tensor *xc = NULL, *rc = NULL, *wc = NULL, *bc = NULL, *y = NULL, *mean = NULL, *rstd = NULL;
    if ((st = nnm__contiguous(ctx, x, &xc)) || (residual && (st = nnm__contiguous(ctx, residual, &rc))) ||
        (weight && (st = nnm__contiguous(ctx, weight, &wc))) || (bias && (st = nnm__contiguous(ctx, bias, &bc))) ||
        (st = nnm__tensor_alloc(ctx, x->desc.device, NNM_F32, nd, x->shape, &y)) ||
        (st = nnm__tensor_alloc(ctx, x->desc.device, NNM_F32, 1, &rows, &mean)) ||
        (st = nnm__tensor_alloc(ctx, x->desc.device, NNM_F32, 1, &rows, &rstd)))
        goto done;
    if (rows > 0 && cols > 0) {
        nnm_layer_norm_args a;
        ln_args(&a, rows, cols, p->eps);
        a.x = &xc->desc;
        a.residual = rc ? &rc->desc : NULL;
        a.weight = wc ? &wc->desc : NULL;
        a.bias = bc ? &bc->desc : NULL;
        a.y = &y->desc;
        a.mean = &mean->desc;
        a.rstd = &rstd->desc;
        nnm__env env;
        nnm__env_init(&env, ctx, NULL, NNM__PHASE_BACKEND);
        const uint64_t seq = ctx->err_seq;
        st = nnm__backend_check(ctx, be, "layer_norm", be->vt->layer_norm(&env.pub, be->state, &a), seq);
    }
    if (!st && record) {
        nnm_tensor *const ins[4] = {x, residual, weight, bias};
        nnm_tensor *const keep[5] = {xc, rc, mean, rstd, wc};
        st = ln_record(ctx, ins, keep, k, p->eps, y);
    }
done:
    nnm_tensor_release(xc);
    nnm_tensor_release(rc);
    nnm_tensor_release(wc);
    nnm_tensor_release(bc);
    nnm_tensor_release(mean);
    nnm_tensor_release(rstd);
    if (st) nnm_tensor_release(y);
    else *out = y;
    return st;
}
