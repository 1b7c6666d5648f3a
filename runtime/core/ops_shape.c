/* runtime/core/ops_shape.c - the ABI 1.3 ops that move elements without
 * arithmetic: permute, concat, slice. Each result is a new contiguous tensor
 * (plugins may read any result as row-major memory); the copies are the
 * backend's strided unary COPY, which 1.3 backends accept with a strided
 * output (NNM_BACKEND_OPS_1_3). */
#include <string.h>

#include "internal.h"

nnm_status nnm__contiguous(nnm_ctx *ctx, nnm_tensor *t, nnm_tensor **out) {
    if (nnm__tensor_is_contiguous(t)) {
        nnm_tensor_retain(t);
        *out = t;
        return NNM_OK;
    }
    return nnm__op_unary(ctx, NNM_UNARY_COPY, t, 0, out);
}

nnm_status nnm__backend_slot(nnm_ctx *ctx, nnm_device dev, size_t off, const char *op,
                             nnm__backend **out) {
    nnm__backend *be;
    nnm_status st = nnm__backend_get(ctx, dev, &be);
    if (st) return st;
    void *slot = NULL;
    if (be->vt->struct_size >= off + sizeof slot) memcpy(&slot, (const char *)be->vt + off, sizeof slot);
    if (!slot)
        return nnm__error(ctx, NNM_E_UNSUPPORTED, "%s: backend '%s' does not implement it (ABI 1.3 slot)",
                          op, be->vt->name);
    *out = be;
    return NNM_OK;
}

/* Copies src (any strides) into the region `dst` describes (any strides, same
 * shape), without recording. Needs a 1.3 backend: older ones take only a
 * contiguous output. */
static nnm_status copy_into(nnm_ctx *ctx, const char *op, const nnm_tensor_desc *dst, nnm_tensor *src) {
    nnm__backend *be;
    nnm_status st = nnm__backend_get(ctx, src->desc.device, &be);
    if (st) return st;
    if (!be->vt->unary || !(be->vt->flags & NNM_BACKEND_OPS_1_3))
        return nnm__error(ctx, NNM_E_UNSUPPORTED,
                          "%s: backend '%s' cannot copy into a strided output (needs ABI 1.3 ops)", op,
                          be->vt->name);
    nnm__env env;
    nnm__env_init(&env, ctx, NULL, NNM__PHASE_BACKEND);
    nnm_unary_args a = {sizeof a, NNM_UNARY_COPY, 0, &src->desc, dst};
    return be->vt->unary(&env.pub, be->state, &a);
}

static nnm_status check_f32_any(nnm_ctx *ctx, const char *op, const nnm_tensor *t) {
    if (!t) return nnm__error(ctx, NNM_E_INVALID, "%s: tensor is NULL", op);
    if (t->desc.dtype.code != NNM_DTYPE_FLOAT || t->desc.dtype.bits != 32)
        return nnm__error(ctx, NNM_E_DTYPE, "%s: tensor must be f32", op);
    return NNM_OK;
}

/* ---- permute ------------------------------------------------------------ */

nnm_status nnm__op_permute(nnm_ctx *ctx, nnm_tensor *x, const int32_t *perm, int32_t ndim, nnm_tensor **out) {
    *out = NULL;
    nnm_status st = check_f32_any(ctx, "permute", x);
    if (st) return st;
    if (!perm || ndim != x->desc.ndim)
        return nnm__error(ctx, NNM_E_SHAPE, "permute: %d dims given for a %d-d tensor", (int)ndim,
                          (int)x->desc.ndim);
    int32_t p[NNM_MAX_DIMS];
    int seen[NNM_MAX_DIMS] = {0};
    int64_t shape[NNM_MAX_DIMS], strides[NNM_MAX_DIMS];
    for (int32_t i = 0; i < ndim; i++) {
        int32_t d = perm[i] < 0 ? perm[i] + ndim : perm[i];
        if (d < 0 || d >= ndim || seen[d])
            return nnm__error(ctx, NNM_E_INVALID, "permute: entry %d (%d) repeats or is out of range",
                              (int)i, (int)perm[i]);
        seen[d] = 1;
        p[i] = d;
        shape[i] = x->shape[d];
        strides[i] = x->strides[d];
    }
    nnm_tensor *view = NULL, *y = NULL;
    if ((st = nnm__tensor_view(x, ndim, shape, strides, &view))) return st;
    st = nnm__op_unary(ctx, NNM_UNARY_COPY, view, 0, &y); /* the view has no grad_fn: not recorded */
    nnm_tensor_release(view);
    if (!st && nnm__needs_grad(x, NULL, NULL)) st = nnm__record_permute(ctx, x, p, y);
    if (st) nnm_tensor_release(y);
    else *out = y;
    return st;
}

/* ---- concat ------------------------------------------------------------- */

nnm_status nnm__op_concat(nnm_ctx *ctx, nnm_tensor *const *xs, uint32_t n, int32_t dim, nnm_tensor **out) {
    *out = NULL;
    if (!xs || n == 0 || n > NNM__MAX_IO)
        return nnm__error(ctx, NNM_E_INVALID, "concat: takes 1 to %d tensors, got %u", NNM__MAX_IO, n);
    nnm_status st;
    for (uint32_t i = 0; i < n; i++)
        if ((st = check_f32_any(ctx, "concat", xs[i]))) return st;
    const nnm_tensor *x0 = xs[0];
    int32_t nd = x0->desc.ndim, d = dim < 0 ? dim + nd : dim;
    if (d < 0 || d >= nd)
        return nnm__error(ctx, NNM_E_SHAPE, "concat: dim %d out of range for %d-d tensors", (int)dim, (int)nd);
    int64_t shape[NNM_MAX_DIMS];
    memcpy(shape, x0->shape, (size_t)nd * sizeof shape[0]);
    shape[d] = 0;
    for (uint32_t i = 0; i < n; i++) {
        const nnm_tensor *t = xs[i];
        if (!nnm__device_eq(t->desc.device, x0->desc.device))
            return nnm__error(ctx, NNM_E_DEVICE, "concat: tensor %u is on another device", i);
        int ok = t->desc.ndim == nd;
        for (int32_t j = 0; ok && j < nd; j++) ok = j == d || t->shape[j] == x0->shape[j];
        if (!ok) {
            char s0[128], si[128];
            nnm__shape_str(&x0->desc, s0, sizeof s0);
            nnm__shape_str(&t->desc, si, sizeof si);
            return nnm__error(ctx, NNM_E_SHAPE, "concat: tensor %u %s does not match tensor 0 %s outside dim %d",
                              i, si, s0, (int)d);
        }
        shape[d] += t->shape[d];
    }
    nnm_tensor *y = NULL;
    if ((st = nnm__tensor_alloc(ctx, x0->desc.device, x0->desc.dtype, nd, shape, &y))) return st;
    int64_t at = 0;
    for (uint32_t i = 0; i < n && !st; i++) {
        nnm_tensor_desc dst = y->desc;
        int64_t sh[NNM_MAX_DIMS];
        memcpy(sh, shape, (size_t)nd * sizeof sh[0]);
        sh[d] = xs[i]->shape[d];
        dst.shape = sh;
        dst.byte_offset += (uint64_t)(at * y->strides[d]) * sizeof(float);
        if (nnm__numel(nd, sh)) st = copy_into(ctx, "concat", &dst, xs[i]);
        at += sh[d];
    }
    int need = 0;
    for (uint32_t i = 0; i < n; i++) need |= nnm__needs_grad(xs[i], NULL, NULL);
    if (!st && need) st = nnm__record_concat(ctx, xs, n, d, y);
    if (st) nnm_tensor_release(y);
    else *out = y;
    return st;
}

/* ---- slice -------------------------------------------------------------- */

nnm_status nnm__op_slice(nnm_ctx *ctx, nnm_tensor *x, int32_t dim, int64_t start, int64_t length,
                         nnm_tensor **out) {
    *out = NULL;
    nnm_status st = check_f32_any(ctx, "slice", x);
    if (st) return st;
    int32_t nd = x->desc.ndim, d = dim < 0 ? dim + nd : dim;
    if (d < 0 || d >= nd)
        return nnm__error(ctx, NNM_E_SHAPE, "slice: dim %d out of range for a %d-d tensor", (int)dim, (int)nd);
    if (start < 0 || length < 0 || start > x->shape[d] || length > x->shape[d] - start)
        return nnm__error(ctx, NNM_E_SHAPE, "slice: [%lld, %lld + %lld) is outside dim %d of size %lld",
                          (long long)start, (long long)start, (long long)length, (int)d,
                          (long long)x->shape[d]);
    int64_t shape[NNM_MAX_DIMS];
    memcpy(shape, x->shape, (size_t)nd * sizeof shape[0]);
    shape[d] = length;
    nnm_tensor *view = NULL, *y = NULL;
    if ((st = nnm__tensor_view(x, nd, shape, x->strides, &view))) return st;
    view->desc.byte_offset += (uint64_t)(start * x->strides[d]) * sizeof(float);
    st = nnm__op_unary(ctx, NNM_UNARY_COPY, view, 0, &y);
    nnm_tensor_release(view);
    if (!st && nnm__needs_grad(x, NULL, NULL)) st = nnm__record_slice(ctx, x, d, start, y);
    if (st) nnm_tensor_release(y);
    else *out = y;
    return st;
}

nnm_status nnm__slice_backward(nnm_ctx *ctx, int32_t ndim, const int64_t *shape, int32_t d, int64_t start,
                               nnm_tensor *g, nnm_tensor **out) {
    *out = NULL;
    nnm_tensor *z = NULL;
    nnm_status st = nnm__op_full(ctx, g->desc.device, ndim, shape, 0.0, &z);
    if (st) return st;
    nnm_tensor_desc dst = z->desc;
    dst.shape = g->shape;
    dst.byte_offset += (uint64_t)(start * z->strides[d]) * sizeof(float);
    if (nnm_tensor_numel(g)) st = copy_into(ctx, "slice backward", &dst, g);
    if (st) nnm_tensor_release(z);
    else *out = z;
    return st;
}
