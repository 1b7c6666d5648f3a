/* runtime/core/ops_rnn.c - host->op_rnn (ABI 1.5): one recurrent layer in one
 * direction over a whole sequence, as one op and one autograd node.
 *
 * The layer computes the input projection of every time step beforehand in
 * one op_linear (gx = x @ W_ih^T + b_ih, [T, B, G*H]); what is left is the
 * recurrence. Per step this file runs one backend gemm (h_prev @ W_hh^T) and
 * the backend's fused gate kernel (rnn_cell), plus one gemm with W_hr for an
 * LSTM with a projection; nothing per step allocates or records. The node's
 * backward is back-propagation through time: per step (last first) the
 * backend's rnn_cell_backward and one gemm (dgates @ W_hh) for the
 * recurrent gradient; the weight gradients are then one gemm each over all
 * steps at once (dW_hh = dgates^T @ h_prev, dW_hr = dh^T @ h_raw).
 *
 * Memory: forward keeps, when the node is recorded, the gate activations
 * (LSTM, GRU: [T, B, 4H]) besides y; an LSTM keeps every c ([T, B, H]) and,
 * with a projection, every h before it ([T, B, H]). All of it lives in one
 * workspace tensor (`ws`): act, then c, then h_raw. */
#include <string.h>

#include "internal.h"

static int is_f32(const nnm_tensor *t) {
    return t->desc.dtype.code == NNM_DTYPE_FLOAT && t->desc.dtype.bits == 32 && t->desc.dtype.lanes == 1;
}

static float *fp(const nnm_tensor *t) { return (float *)(void *)((char *)t->desc.data + t->desc.byte_offset); }

static int64_t gates_of(int32_t mode) { return mode == NNM_RNN_LSTM ? 4 : mode == NNM_RNN_GRU ? 3 : 1; }

static const char *mode_name(int32_t mode) {
    switch (mode) {
    case NNM_RNN_TANH: return "RnnTanhBackward";
    case NNM_RNN_RELU: return "RnnReluBackward";
    case NNM_RNN_LSTM: return "LstmBackward";
    default: return "GruBackward";
    }
}

/* Sizes of one op_rnn call. */
typedef struct rnn_dims {
    int32_t mode, reverse, lstm, gru, proj;
    int64_t T, B, H, P, G;
} rnn_dims;

/* Offsets (in floats) of the workspace's parts, and its size. */
static void ws_layout(const rnn_dims *d, int keep_act, int64_t *act, int64_t *c, int64_t *hraw, int64_t *total) {
    const int64_t tbh = d->T * d->B * d->H;
    *act = 0;
    *c = keep_act && d->G > 1 ? 4 * tbh : 0;
    *hraw = *c + (d->lstm ? tbh : 0);
    *total = *hraw + (d->proj ? tbh : 0);
}

/* What the per-step loops need: the backend, its slots, one env. */
typedef struct rnn_run {
    nnm_ctx *ctx;
    nnm__backend *be;
    nnm__env env;
    nnm_device dev;
    nnm_status (*cell)(nnm_env *, void *, const nnm_rnn_cell_args *);
    nnm_status (*cell_bwd)(nnm_env *, void *, const nnm_rnn_cell_args *);
} rnn_run;

static void *slot_at(const nnm__backend *be, size_t off) {
    void *slot = NULL;
    if (be->vt->struct_size >= off + sizeof slot) memcpy(&slot, (const char *)be->vt + off, sizeof slot);
    return slot;
}

static nnm_status run_init(nnm_ctx *ctx, nnm_device dev, int backward, rnn_run *r) {
    memset(r, 0, sizeof *r);
    r->ctx = ctx;
    r->dev = dev;
    nnm_status st = nnm__backend_get(ctx, dev, &r->be);
    if (st) return st;
    void *c = slot_at(r->be, offsetof(nnm_backend_vtable, rnn_cell));
    void *b = slot_at(r->be, offsetof(nnm_backend_vtable, rnn_cell_backward));
    memcpy(&r->cell, &c, sizeof c);
    memcpy(&r->cell_bwd, &b, sizeof b);
    if (!r->cell || (backward && !r->cell_bwd) || !r->be->vt->gemm || !r->be->vt->fill)
        return nnm__error(ctx, NNM_E_UNSUPPORTED, "rnn: backend '%s' does not implement %s (ABI 1.5 slot)",
                          r->be->vt->name, !r->cell ? "rnn_cell" : !r->be->vt->gemm ? "gemm"
                                                   : !r->be->vt->fill ? "fill" : "rnn_cell_backward");
    nnm__env_init(&r->env, ctx, NULL, NNM__PHASE_BACKEND);
    return NNM_OK;
}

/* c[m, n] = beta * c + op(a) @ op(b) (row-major, leading dims given). */
static nnm_status gemm(rnn_run *r, int ta, int tb, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                       const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    nnm_gemm_args g = {sizeof g, ta, tb, m, n, k, 1.0f, beta, a, lda, b, ldb, c, ldc};
    return r->be->vt->gemm(&r->env.pub, r->be->state, &g);
}

static nnm_status copy(rnn_run *r, float *dst, const float *src, int64_t n) {
    if (n <= 0) return NNM_OK;
    return r->be->vt->memcpy(&r->env.pub, r->be->state, dst, r->dev, src, r->dev, (size_t)n * sizeof(float));
}

static nnm_status zero(rnn_run *r, float *p, int64_t n) {
    if (n <= 0) return NNM_OK;
    int64_t stride = 1;
    nnm_tensor_desc d = {p, r->dev, 1, NNM_F32, &n, &stride, 0};
    return r->be->vt->fill(&r->env.pub, r->be->state, &d, 0.0);
}

/* Time index of processing step s. */
static int64_t step_t(const rnn_dims *d, int64_t s) { return d->reverse ? d->T - 1 - s : s; }

static nnm_status check_shape(nnm_ctx *ctx, const char *what, const nnm_tensor *t, int32_t ndim, int64_t d0,
                              int64_t d1) {
    if (t->desc.ndim == ndim && t->shape[0] == d0 && (ndim < 2 || t->shape[1] == d1)) return NNM_OK;
    char s[128];
    nnm__shape_str(&t->desc, s, sizeof s);
    if (ndim == 1)
        return nnm__error(ctx, NNM_E_SHAPE, "rnn: %s must be [%lld], got %s", what, (long long)d0, s);
    return nnm__error(ctx, NNM_E_SHAPE, "rnn: %s must be [%lld, %lld], got %s", what, (long long)d0, (long long)d1,
                      s);
}

/* ---- backward ------------------------------------------------------------ */

static int wants(const nnm__node *n, uint32_t i) { return n->next[i].fn || n->next[i].leaf; }

/* Node layout: op = mode, ival = reverse, in_shape[0] = {T, B, H, P};
 * saved: w_hh, h0, y, ws, then c0 (LSTM), then w_hr (projection). Inputs:
 * gx, w_hh, b_hh, w_hr, h0, c0. Outputs: y, c_n (LSTM). */
static nnm_status rnn_backward(nnm_ctx *ctx, nnm__node *n, nnm_tensor *const *gout, nnm_tensor **gin) {
    rnn_dims d;
    memset(&d, 0, sizeof d);
    d.mode = n->op;
    d.reverse = (int32_t)n->ival;
    d.lstm = d.mode == NNM_RNN_LSTM;
    d.gru = d.mode == NNM_RNN_GRU;
    d.T = n->in_shape[0][0];
    d.B = n->in_shape[0][1];
    d.H = n->in_shape[0][2];
    d.P = n->in_shape[0][3];
    d.G = gates_of(d.mode);
    d.proj = n->alpha != 0.0;
    nnm_tensor *whh = n->saved[0], *h0 = n->saved[1], *y = n->saved[2], *ws = n->saved[3];
    nnm_tensor *c0 = d.lstm ? n->saved[4] : NULL, *whr = d.proj ? n->saved[4 + d.lstm] : NULL;
    nnm_tensor *gy = gout[0], *gcn = d.lstm && n->n_out > 1 ? gout[1] : NULL;
    if (!gy && !gcn) return NNM_OK;
    const int64_t T = d.T, B = d.B, H = d.H, P = d.P, GH = d.G * d.H;
    const int64_t tshape[3] = {T, B, GH}, hshape[2] = {B, P}, cshape[2] = {B, H}, yshape[3] = {T, B, P};
    rnn_run r;
    nnm_status st = run_init(ctx, whh->desc.device, 1, &r);
    if (st) return st;
    nnm_tensor *dgx = NULL, *dgh = NULL, *dhall = NULL, *dh0 = NULL, *dc = NULL, *dhraw = NULL, *gyc = NULL;
    if ((st = nnm__tensor_alloc(ctx, r.dev, NNM_F32, 3, tshape, &dgx)) ||
        (d.gru && (st = nnm__tensor_alloc(ctx, r.dev, NNM_F32, 3, tshape, &dgh))) ||
        (st = nnm__tensor_alloc(ctx, r.dev, NNM_F32, 3, yshape, &dhall)) ||
        (st = nnm__tensor_alloc(ctx, r.dev, NNM_F32, 2, hshape, &dh0)) ||
        (d.lstm && (st = nnm__tensor_alloc(ctx, r.dev, NNM_F32, 2, cshape, &dc))) ||
        (d.proj && (st = nnm__tensor_alloc(ctx, r.dev, NNM_F32, 2, cshape, &dhraw))))
        goto done;
    if (!dgh) {
        nnm_tensor_retain(dgx);
        dgh = dgx;
    }
    /* dhall[t] = dL/dy[t] (the output's gradient; the recurrent part is
     * added step by step) */
    if (gy) {
        if ((st = nnm__contiguous(ctx, gy, &gyc)) || (st = copy(&r, fp(dhall), fp(gyc), T * B * P))) goto done;
    } else if ((st = zero(&r, fp(dhall), T * B * P))) {
        goto done;
    }
    if ((st = zero(&r, fp(dh0), B * P))) goto done;
    if (d.lstm) {
        nnm_tensor *gc = NULL;
        if (gcn && !(st = nnm__contiguous(ctx, gcn, &gc))) st = copy(&r, fp(dc), fp(gc), B * H);
        else if (!gcn) st = zero(&r, fp(dc), B * H);
        nnm_tensor_release(gc);
        if (st) goto done;
    }
    int64_t o_act, o_c, o_hraw, o_total;
    ws_layout(&d, 1, &o_act, &o_c, &o_hraw, &o_total);
    float *wsp = fp(ws), *yp = fp(y);
    for (int64_t s = T - 1; s >= 0 && B > 0; s--) {
        const int64_t t = step_t(&d, s), tp = s ? step_t(&d, s - 1) : -1;
        float *dh = fp(dhall) + t * B * P;
        float *dn = s ? fp(dhall) + tp * B * P : fp(dh0);
        const float *dcell = dh;
        if (d.proj) { /* dh_raw[B, H] = dh[B, P] @ w_hr[P, H] */
            if ((st = gemm(&r, 0, 0, B, H, P, dh, P, fp(whr), H, 0.0f, fp(dhraw), H))) goto done;
            dcell = fp(dhraw);
        }
        nnm_rnn_cell_args a;
        memset(&a, 0, sizeof a);
        a.struct_size = sizeof a;
        a.mode = d.mode;
        a.batch = B;
        a.hidden = H;
        a.h_prev = s ? yp + tp * B * P : fp(h0);
        a.c_prev = d.lstm ? (s ? wsp + o_c + tp * B * H : fp(c0)) : NULL;
        a.h = yp + t * B * P;
        a.c = d.lstm ? wsp + o_c + t * B * H : NULL;
        a.act = d.G > 1 ? wsp + o_act + t * B * 4 * H : NULL;
        a.dh = dcell;
        a.dc = d.lstm ? fp(dc) : NULL;
        a.dgx = fp(dgx) + t * B * GH;
        a.dgh = d.gru ? fp(dgh) + t * B * GH : NULL;
        a.dh_prev = dn;
        const uint64_t seq = ctx->err_seq;
        if ((st = nnm__backend_check(ctx, r.be, "rnn_cell_backward", r.cell_bwd(&r.env.pub, r.be->state, &a), seq)))
            goto done;
        /* dn[B, P] += dgh_t[B, GH] @ w_hh[GH, P] */
        if ((st = gemm(&r, 0, 0, B, P, GH, fp(dgh) + t * B * GH, GH, fp(whh), P, 1.0f, dn, P))) goto done;
    }
    if (wants(n, 1)) { /* dW_hh = sum_s dgh[t(s)]^T @ h_prev(s) */
        const int64_t wshape[2] = {GH, P};
        if ((st = nnm__tensor_alloc(ctx, r.dev, NNM_F32, 2, wshape, &gin[1]))) goto done;
        float *dw = fp(gin[1]);
        const int64_t t0 = step_t(&d, 0);
        if (B == 0) st = zero(&r, dw, GH * P);
        else st = gemm(&r, 1, 0, GH, P, B, fp(dgh) + t0 * B * GH, GH, fp(h0), P, 0.0f, dw, P);
        if (!st && T > 1 && B > 0) {
            /* forward: dgh[1..T-1] with y[0..T-2]; reverse: dgh[0..T-2] with y[1..T-1] */
            const float *ga = fp(dgh) + (d.reverse ? 0 : B * GH);
            const float *hb = yp + (d.reverse ? B * P : 0);
            st = gemm(&r, 1, 0, GH, P, (T - 1) * B, ga, GH, hb, P, 1.0f, dw, P);
        }
        if (st) goto done;
    }
    if (wants(n, 2)) { /* db_hh = column sums of dgh */
        const int64_t vshape[2] = {T * B, GH};
        const int32_t dim0 = 0;
        nnm_tensor *v = NULL;
        if (!(st = nnm__tensor_view(dgh, 2, vshape, NULL, &v)))
            st = nnm__op_reduce(ctx, NNM_REDUCE_SUM, v, &dim0, 1, 0, &gin[2]);
        nnm_tensor_release(v);
        if (st) goto done;
    }
    if (d.proj && wants(n, 3)) { /* dW_hr[P, H] = dhall^T @ h_raw */
        const int64_t wshape[2] = {P, H};
        if ((st = nnm__tensor_alloc(ctx, r.dev, NNM_F32, 2, wshape, &gin[3]))) goto done;
        if (T * B == 0) st = zero(&r, fp(gin[3]), P * H);
        else st = gemm(&r, 1, 0, P, H, T * B, fp(dhall), P, wsp + o_hraw, H, 0.0f, fp(gin[3]), H);
        if (st) goto done;
    }
    if (wants(n, 0)) {
        gin[0] = dgx;
        dgx = NULL;
    }
    if (wants(n, 4)) {
        gin[4] = dh0;
        dh0 = NULL;
    }
    if (d.lstm && wants(n, 5)) {
        gin[5] = dc;
        dc = NULL;
    }
done:
    nnm_tensor_release(dgx);
    nnm_tensor_release(dgh);
    nnm_tensor_release(dhall);
    nnm_tensor_release(dh0);
    nnm_tensor_release(dc);
    nnm_tensor_release(dhraw);
    nnm_tensor_release(gyc);
    return st;
}

static nnm_status record(nnm_ctx *ctx, const rnn_dims *d, nnm_tensor *const *in, nnm_tensor *const *keep,
                         uint32_t n_keep, nnm_tensor *y, nnm_tensor *cn) {
    nnm__node *n = nnm__node_new(ctx, mode_name(d->mode), rnn_backward, in, 6, d->lstm ? 2 : 1);
    if (!n) return nnm__error(ctx, NNM_E_NOMEM, "out of memory (autograd node)");
    n->op = d->mode;
    n->ival = d->reverse;
    n->alpha = d->proj ? 1.0 : 0.0;
    n->in_ndim[0] = 4;
    n->in_shape[0][0] = d->T;
    n->in_shape[0][1] = d->B;
    n->in_shape[0][2] = d->H;
    n->in_shape[0][3] = d->P;
    nnm_status st = NNM_OK;
    for (uint32_t i = 0; i < n_keep && !st; i++) st = nnm__node_save(n, keep[i]);
    if (!st) {
        nnm__node_attach(n, y, 0);
        if (d->lstm) nnm__node_attach(n, cn, 1);
    }
    nnm__node_release(n);
    return st;
}

/* ---- forward ------------------------------------------------------------- */

nnm_status nnm__op_rnn(nnm_ctx *ctx, const nnm_rnn_params *p, nnm_tensor *gx, nnm_tensor *w_hh, nnm_tensor *b_hh,
                       nnm_tensor *w_hr, nnm_tensor *h0, nnm_tensor *c0, nnm_tensor **y_out, nnm_tensor **cn_out) {
    *y_out = NULL;
    if (cn_out) *cn_out = NULL;
    if (!p || p->struct_size < sizeof(nnm_rnn_params))
        return nnm__error(ctx, NNM_E_INVALID, "rnn: params is NULL or its struct_size is too small");
    if (p->mode < NNM_RNN_TANH || p->mode > NNM_RNN_GRU)
        return nnm__error(ctx, NNM_E_INVALID, "rnn: unknown mode %d", (int)p->mode);
    if (!gx || !w_hh) return nnm__error(ctx, NNM_E_INVALID, "rnn: %s is NULL", !gx ? "gx" : "w_hh");
    rnn_dims d;
    memset(&d, 0, sizeof d);
    d.mode = p->mode;
    d.reverse = p->reverse != 0;
    d.lstm = d.mode == NNM_RNN_LSTM;
    d.gru = d.mode == NNM_RNN_GRU;
    d.G = gates_of(d.mode);
    d.proj = w_hr != NULL;
    if (d.lstm && !cn_out) return nnm__error(ctx, NNM_E_INVALID, "rnn: an LSTM needs c_n");
    if (!d.lstm && (c0 || w_hr))
        return nnm__error(ctx, NNM_E_INVALID, "rnn: %s is for an LSTM only", c0 ? "c0" : "w_hr");
    nnm_tensor *const all[6] = {gx, w_hh, b_hh, w_hr, h0, c0};
    static const char *const names[6] = {"gx", "w_hh", "b_hh", "w_hr", "h0", "c0"};
    for (int i = 0; i < 6; i++) {
        if (!all[i]) continue;
        if (!is_f32(all[i])) return nnm__error(ctx, NNM_E_DTYPE, "rnn: %s must be f32", names[i]);
        if (!nnm__device_eq(all[i]->desc.device, gx->desc.device)) {
            char a[32], b[32];
            return nnm__error(ctx, NNM_E_DEVICE, "rnn: %s is on %s, gx on %s", names[i],
                              nnm__device_name(all[i]->desc.device, a, sizeof a),
                              nnm__device_name(gx->desc.device, b, sizeof b));
        }
    }
    if (gx->desc.ndim != 3 || gx->shape[0] < 1 || gx->shape[2] % d.G || gx->shape[2] == 0) {
        char s[128];
        nnm__shape_str(&gx->desc, s, sizeof s);
        return nnm__error(ctx, NNM_E_SHAPE, "rnn: gx must be [T >= 1, B, %lld * hidden], got %s", (long long)d.G, s);
    }
    d.T = gx->shape[0];
    d.B = gx->shape[1];
    d.H = gx->shape[2] / d.G;
    const int64_t GH = gx->shape[2];
    d.P = w_hh->desc.ndim == 2 ? w_hh->shape[1] : -1;
    nnm_status st;
    if ((st = check_shape(ctx, "w_hh", w_hh, 2, GH, d.proj ? d.P : d.H))) return st;
    if (d.proj && (st = check_shape(ctx, "w_hr", w_hr, 2, d.P, d.H))) return st;
    if (b_hh && (st = check_shape(ctx, "b_hh", b_hh, 1, GH, 0))) return st;
    if (h0 && (st = check_shape(ctx, "h0", h0, 2, d.B, d.P))) return st;
    if (c0 && (st = check_shape(ctx, "c0", c0, 2, d.B, d.H))) return st;
    const int rec = nnm__needs_grad(gx, w_hh, b_hh) || nnm__needs_grad(w_hr, h0, c0);
    rnn_run r;
    if ((st = run_init(ctx, gx->desc.device, rec, &r))) return st;
    const int64_t T = d.T, B = d.B, H = d.H, P = d.P;
    nnm_tensor *gxc = NULL, *whc = NULL, *bhc = NULL, *wrc = NULL, *h0c = NULL, *c0c = NULL;
    nnm_tensor *y = NULL, *cn = NULL, *ws = NULL, *gh = NULL;
    const int64_t hshape[2] = {B, P}, cshape[2] = {B, H}, yshape[3] = {T, B, P}, ghshape[2] = {B, GH};
    if ((st = nnm__contiguous(ctx, gx, &gxc)) || (st = nnm__contiguous(ctx, w_hh, &whc)) ||
        (b_hh && (st = nnm__contiguous(ctx, b_hh, &bhc))) || (w_hr && (st = nnm__contiguous(ctx, w_hr, &wrc))))
        goto done;
    if (h0) st = nnm__contiguous(ctx, h0, &h0c);
    else st = nnm__op_full(ctx, r.dev, 2, hshape, 0.0, &h0c);
    if (st) goto done;
    if (d.lstm) {
        if (c0) st = nnm__contiguous(ctx, c0, &c0c);
        else st = nnm__op_full(ctx, r.dev, 2, cshape, 0.0, &c0c);
        if (st) goto done;
    }
    int64_t o_act, o_c, o_hraw, o_total;
    ws_layout(&d, rec, &o_act, &o_c, &o_hraw, &o_total);
    const int64_t wsn = o_total ? o_total : 1;
    if ((st = nnm__tensor_alloc(ctx, r.dev, NNM_F32, 3, yshape, &y)) ||
        (st = nnm__tensor_alloc(ctx, r.dev, NNM_F32, 1, &wsn, &ws)) ||
        (st = nnm__tensor_alloc(ctx, r.dev, NNM_F32, 2, ghshape, &gh)) ||
        (d.lstm && (st = nnm__tensor_alloc(ctx, r.dev, NNM_F32, 2, cshape, &cn))))
        goto done;
    float *yp = fp(y), *wsp = fp(ws);
    for (int64_t s = 0; s < T && B > 0; s++) {
        const int64_t t = step_t(&d, s), tp = s ? step_t(&d, s - 1) : -1;
        const float *hp = s ? yp + tp * B * P : fp(h0c);
        /* gh[B, GH] = h_prev[B, P] @ w_hh[GH, P]^T */
        if ((st = gemm(&r, 0, 1, B, GH, P, hp, P, fp(whc), P, 0.0f, fp(gh), GH))) goto done;
        nnm_rnn_cell_args a;
        memset(&a, 0, sizeof a);
        a.struct_size = sizeof a;
        a.mode = d.mode;
        a.batch = B;
        a.hidden = H;
        a.gx = fp(gxc) + t * B * GH;
        a.gh = fp(gh);
        a.b_hh = bhc ? fp(bhc) : NULL;
        a.h_prev = hp;
        a.c_prev = d.lstm ? (s ? wsp + o_c + tp * B * H : fp(c0c)) : NULL;
        a.h = d.proj ? wsp + o_hraw + t * B * H : yp + t * B * P;
        a.c = d.lstm ? wsp + o_c + t * B * H : NULL;
        a.act = rec && d.G > 1 ? wsp + o_act + t * B * 4 * H : NULL;
        const uint64_t seq = ctx->err_seq;
        if ((st = nnm__backend_check(ctx, r.be, "rnn_cell", r.cell(&r.env.pub, r.be->state, &a), seq))) goto done;
        if (d.proj && (st = gemm(&r, 0, 1, B, P, H, a.h, H, fp(wrc), H, 0.0f, yp + t * B * P, P))) goto done;
    }
    if (d.lstm && B > 0 && (st = copy(&r, fp(cn), wsp + o_c + step_t(&d, T - 1) * B * H, B * H))) goto done;
    if (rec) {
        nnm_tensor *keep[6] = {whc, h0c, y, ws, NULL, NULL};
        uint32_t nk = 4;
        if (d.lstm) keep[nk++] = c0c;
        if (d.proj) keep[nk++] = wrc;
        st = record(ctx, &d, all, keep, nk, y, cn);
    }
done:
    nnm_tensor_release(gxc);
    nnm_tensor_release(whc);
    nnm_tensor_release(bhc);
    nnm_tensor_release(wrc);
    nnm_tensor_release(h0c);
    nnm_tensor_release(c0c);
    nnm_tensor_release(ws);
    nnm_tensor_release(gh);
    if (st) {
        nnm_tensor_release(y);
        nnm_tensor_release(cn);
        return st;
    }
    *y_out = y;
    if (cn_out) *cn_out = cn;
    return NNM_OK;
}
