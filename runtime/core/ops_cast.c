/* runtime/core/ops_cast.c - the ABI 1.5 dtype and no-gradient ops: cast
 * (x.to(dtype)), detach, and argmax/argmin over one dim.
 *
 * As in ops.c: check dtypes, shapes and devices, allocate the output from the
 * caching allocator and dispatch to the device's backend (its 1.5 `cast` and
 * `arg_reduce` slots). None of them records for autograd: a cast to x's own
 * dtype returns x itself (so f32 -> f32 keeps its gradient, as torch's .to
 * returns self), every other cast and arg reduction yields or reads a dtype
 * without gradients, and detach is the explicit cut. */
#include <stdio.h>
#include <string.h>

#include "internal.h"

/* 1 when dt is one of the dtypes cast and the backends' cast slot take. */
static int cast_dtype_ok(nnm_dtype dt) {
    if (dt.lanes != 1) return 0;
    switch (dt.code) {
    case NNM_DTYPE_FLOAT: return dt.bits == 32;
    case NNM_DTYPE_INT: return dt.bits == 64 || dt.bits == 32;
    case NNM_DTYPE_UINT: return dt.bits == 8;
    case NNM_DTYPE_BOOL: return dt.bits == 8;
    default: return 0;
    }
}

/* "f32", "i64", ... for messages (buf for the unknown ones). */
static const char *dtype_name(nnm_dtype dt, char *buf, size_t cap) {
    static const char *const codes[] = {"i", "u", "f", "?", "bf", "?", "bool"};
    if (dt.code == NNM_DTYPE_BOOL && dt.bits == 8 && dt.lanes == 1) return "bool";
    snprintf(buf, cap, "%s%u%s", dt.code < 7 ? codes[dt.code] : "?", (unsigned)dt.bits, dt.lanes == 1 ? "" : "xN");
    return buf;
}

static int same_dtype(nnm_dtype a, nnm_dtype b) { return a.code == b.code && a.bits == b.bits && a.lanes == b.lanes; }

/* The backend's slot at byte offset off, or NULL (an older backend's vtable
 * stops before it; the loader zero-fills what it lacks). */
static void *slot_at(const nnm__backend *be, size_t off) {
    void *slot = NULL;
    if (be->vt->struct_size >= off + sizeof slot) memcpy(&slot, (const char *)be->vt + off, sizeof slot);
    return slot;
}

nnm_status nnm__op_cast(nnm_ctx *ctx, nnm_tensor *x, nnm_dtype dtype, nnm_tensor **out) {
    *out = NULL;
    if (!x) return nnm__error(ctx, NNM_E_INVALID, "cast: x is NULL");
    char a[16], b[16];
    if (!cast_dtype_ok(x->desc.dtype) || !cast_dtype_ok(dtype))
        return nnm__error(ctx, NNM_E_DTYPE, "cast: from %s to %s: only f32, i64, i32, u8 and bool are supported",
                          dtype_name(x->desc.dtype, a, sizeof a), dtype_name(dtype, b, sizeof b));
    if (same_dtype(x->desc.dtype, dtype)) { /* torch's .to(own dtype) is self */
        nnm_tensor_retain(x);
        *out = x;
        return NNM_OK;
    }
    nnm__backend *be;
    nnm_status st = nnm__backend_get(ctx, x->desc.device, &be);
    if (st) return st;
    nnm_status (*fn)(nnm_env *, void *, const nnm_cast_args *) = NULL;
    void *slot = slot_at(be, offsetof(nnm_backend_vtable, cast));
    memcpy(&fn, &slot, sizeof fn);
    if (!fn)
        return nnm__error(ctx, NNM_E_UNSUPPORTED, "cast: backend '%s' has no cast slot (ABI 1.5): %s to %s",
                          be->vt->name, dtype_name(x->desc.dtype, a, sizeof a), dtype_name(dtype, b, sizeof b));
    nnm_tensor *y = NULL;
    if ((st = nnm__tensor_alloc(ctx, x->desc.device, dtype, x->desc.ndim, x->shape, &y))) return st;
    if (nnm__numel(x->desc.ndim, x->shape) > 0) {
        nnm__env env;
        nnm__env_init(&env, ctx, NULL, NNM__PHASE_BACKEND);
        nnm_cast_args args = {sizeof args, 0, &x->desc, &y->desc};
        const uint64_t seq = ctx->err_seq;
        st = nnm__backend_check(ctx, be, "cast", fn(&env.pub, be->state, &args), seq);
    }
    if (st) nnm_tensor_release(y);
    else *out = y;
    return st;
}

nnm_status nnm__op_detach(nnm_ctx *ctx, nnm_tensor *x, nnm_tensor **out) {
    *out = NULL;
    if (!x) return nnm__error(ctx, NNM_E_INVALID, "detach: x is NULL");
    return nnm__tensor_view(x, x->desc.ndim, x->shape, x->strides, out);
}

nnm_status nnm__op_arg_reduce(nnm_ctx *ctx, int32_t op, nnm_tensor *x, int32_t dim, int keepdim, nnm_tensor **out) {
    *out = NULL;
    const char *name = op == NNM_REDUCE_MAX ? "argmax" : op == NNM_REDUCE_MIN ? "argmin" : "arg_reduce";
    if (op != NNM_REDUCE_MAX && op != NNM_REDUCE_MIN)
        return nnm__error(ctx, NNM_E_INVALID, "arg_reduce: op %d is neither NNM_REDUCE_MAX nor NNM_REDUCE_MIN",
                          (int)op);
    if (!x) return nnm__error(ctx, NNM_E_INVALID, "%s: x is NULL", name);
    if (x->desc.dtype.code != NNM_DTYPE_FLOAT || x->desc.dtype.bits != 32 || x->desc.dtype.lanes != 1) {
        char a[16];
        return nnm__error(ctx, NNM_E_DTYPE, "%s: x must be f32, got %s", name, dtype_name(x->desc.dtype, a, sizeof a));
    }
    const int32_t nd = x->desc.ndim, span = nd ? nd : 1;
    const int32_t d = dim < 0 ? dim + span : dim;
    if (d < 0 || d >= span)
        return nnm__error(ctx, NNM_E_SHAPE, "%s: Dimension out of range (expected to be in range of [%d, %d], but got %d)",
                          name, (int)-span, (int)span - 1, (int)dim);
    const int64_t n = nd ? x->shape[d] : 1;
    if (n == 0)
        return nnm__error(ctx, NNM_E_SHAPE, "%s: Expected reduction dim %d to have non-zero size.", name, (int)d);
    int64_t shape[NNM_MAX_DIMS];
    int32_t ond = 0;
    for (int32_t i = 0; i < nd; i++)
        if (i != d) shape[ond++] = x->shape[i];
        else if (keepdim) shape[ond++] = 1;
    const int64_t outer = nd ? nnm__numel(d, x->shape) : 1, inner = nd ? nnm__numel(nd - d - 1, x->shape + d + 1) : 1;
    nnm__backend *be;
    nnm_status st = nnm__backend_get(ctx, x->desc.device, &be);
    if (st) return st;
    nnm_status (*fn)(nnm_env *, void *, const nnm_arg_reduce_args *) = NULL;
    void *slot = slot_at(be, offsetof(nnm_backend_vtable, arg_reduce));
    memcpy(&fn, &slot, sizeof fn);
    if (!fn) return nnm__error(ctx, NNM_E_UNSUPPORTED, "%s: backend '%s' has no arg_reduce slot (ABI 1.5)", name, be->vt->name);
    const nnm_dtype i64 = {NNM_DTYPE_INT, 64, 1};
    nnm_tensor *xc = NULL, *y = NULL;
    if (!(st = nnm__contiguous(ctx, x, &xc)) && !(st = nnm__tensor_alloc(ctx, x->desc.device, i64, ond, shape, &y)) &&
        outer * inner > 0) {
        nnm__env env;
        nnm__env_init(&env, ctx, NULL, NNM__PHASE_BACKEND);
        nnm_arg_reduce_args args = {sizeof args, op, outer, n, inner, &xc->desc, &y->desc};
        const uint64_t seq = ctx->err_seq;
        st = nnm__backend_check(ctx, be, "arg_reduce", fn(&env.pub, be->state, &args), seq);
    }
    nnm_tensor_release(xc);
    if (st) nnm_tensor_release(y);
    else *out = y;
    return st;
}
