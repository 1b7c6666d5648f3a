/* runtime/core/ops_index.c - the ABI 1.5 ops: tensors from host data, and
 * index_select with its adjoint index_add (its gradient).
 *
 * As in ops.c: check shapes, dtypes and devices, allocate outputs from the
 * caching allocator, dispatch to the device's backend, and record for
 * autograd. index_select goes to the backend's `index_select` slot; a
 * backend without it runs f32 tensors as a one-hot matrix product through
 * its gemm (onehot [m, n] @ x viewed as [outer, n, inner]), so every device
 * with a gemm has the op; other dtypes there are NNM_E_UNSUPPORTED naming the
 * op and the backend. The indices are checked on the host before anything is
 * written (a device index tensor is copied down once). */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static const nnm_dtype i64_dtype = {NNM_DTYPE_INT, 64, 1};

static int is_f32(const nnm_tensor *t) {
    return t->desc.dtype.code == NNM_DTYPE_FLOAT && t->desc.dtype.bits == 32 && t->desc.dtype.lanes == 1;
}

static int is_i64(const nnm_tensor *t) {
    return t->desc.dtype.code == NNM_DTYPE_INT && t->desc.dtype.bits == 64 && t->desc.dtype.lanes == 1;
}

static void *tdata(const nnm_tensor *t) { return (char *)t->desc.data + t->desc.byte_offset; }

/* Copies `bytes` bytes from host memory into t's storage (any device). */
static nnm_status upload(nnm_ctx *ctx, nnm_tensor *t, const void *src, size_t bytes) {
    if (!bytes || t->desc.device.type == NNM_DEVICE_META) return NNM_OK;
    if (t->desc.device.type == NNM_DEVICE_CPU) {
        memcpy(tdata(t), src, bytes);
        return NNM_OK;
    }
    nnm__backend *be;
    nnm_status st = nnm__backend_get(ctx, t->desc.device, &be);
    if (st) return st;
    nnm__env env;
    nnm__env_init(&env, ctx, NULL, NNM__PHASE_BACKEND);
    return be->vt->memcpy(&env.pub, be->state, tdata(t), t->desc.device, src, (nnm_device){NNM_DEVICE_CPU, 0},
                          bytes);
}

/* ---- tensor_from_host ----------------------------------------------------- */

nnm_status nnm__tensor_from_host(nnm_ctx *ctx, nnm_device dev, int32_t ndim, const int64_t *shape, nnm_dtype dtype,
                                 const void *data, nnm_tensor **out) {
    *out = NULL;
    if (ndim < 0 || ndim > NNM_MAX_DIMS || (ndim && !shape))
        return nnm__error(ctx, NNM_E_SHAPE, "tensor_from_host: bad ndim %d", (int)ndim);
    nnm_tensor *t = NULL;
    nnm_status st = nnm__tensor_alloc(ctx, dev, dtype, ndim, shape, &t);
    if (st) return st;
    const size_t bytes = (size_t)nnm__numel(ndim, shape) * nnm__dtype_size(dtype);
    if (bytes && !data) {
        nnm_tensor_release(t);
        return nnm__error(ctx, NNM_E_INVALID, "tensor_from_host: data is NULL for %zu bytes", bytes);
    }
    if ((st = upload(ctx, t, data, bytes))) {
        nnm_tensor_release(t);
        return st;
    }
    *out = t;
    return NNM_OK;
}

/* ---- index_select --------------------------------------------------------- */

/* The m indices of the 0- or 1-d i64 tensor `index`, on the host (malloc'd
 * into *host), each checked against [0, n). */
static nnm_status read_index(nnm_ctx *ctx, const nnm_tensor *index, int64_t n, int64_t **host, int64_t *m) {
    *host = NULL;
    *m = index->desc.ndim ? index->shape[0] : 1;
    int64_t *h = malloc((size_t)(*m ? *m : 1) * sizeof *h);
    if (!h) return nnm__error(ctx, NNM_E_NOMEM, "index_select: out of memory for %lld indices", (long long)*m);
    const int64_t stride = index->desc.ndim ? index->strides[0] : 1;
    nnm_status st = NNM_OK;
    if (index->desc.device.type == NNM_DEVICE_CPU) {
        const int64_t *p = tdata(index);
        for (int64_t j = 0; j < *m; j++) h[j] = p[j * stride];
    } else if (*m) {
        nnm__backend *be;
        if (stride != 1 && *m > 1)
            st = nnm__error(ctx, NNM_E_UNSUPPORTED, "index_select: a strided index tensor off the CPU");
        else if (!(st = nnm__backend_get(ctx, index->desc.device, &be))) {
            nnm__env env;
            nnm__env_init(&env, ctx, NULL, NNM__PHASE_BACKEND);
            st = be->vt->memcpy(&env.pub, be->state, h, (nnm_device){NNM_DEVICE_CPU, 0}, tdata(index),
                                index->desc.device, (size_t)*m * sizeof *h);
        }
    }
    for (int64_t j = 0; !st && j < *m; j++)
        if (h[j] < 0 || h[j] >= n)
            st = nnm__error(ctx, NNM_E_INVALID,
                            "index_select: index %lld (entry %lld) is out of range for a dim of size %lld",
                            (long long)h[j], (long long)j, (long long)n);
    if (st) free(h);
    else *host = h;
    return st;
}

/* The backend's slot at byte offset off, or NULL (the loader zero-fills
 * what an older backend lacks). */
static void *slot_at(const nnm__backend *be, size_t off) {
    void *slot = NULL;
    if (be->vt->struct_size >= off + sizeof slot) memcpy(&slot, (const char *)be->vt + off, sizeof slot);
    return slot;
}

/* The one-hot matrix [m, n] (transposed: [n, m]) of the indices, on dev. */
static nnm_status one_hot(nnm_ctx *ctx, nnm_device dev, const int64_t *idx, int64_t m, int64_t n,
                          nnm_tensor **out) {
    *out = NULL;
    const int64_t shape[2] = {m, n};
    float *h = calloc((size_t)(m * n > 0 ? m * n : 1), sizeof *h);
    if (!h) return nnm__error(ctx, NNM_E_NOMEM, "index_select: out of memory for a %lld x %lld one-hot matrix",
                              (long long)m, (long long)n);
    for (int64_t j = 0; j < m; j++) h[j * n + idx[j]] = 1.0f;
    nnm_status st = nnm__tensor_from_host(ctx, dev, 2, shape, NNM_F32, h, out);
    free(h);
    return st;
}

/* The contiguous i64 index [m] on dev (idx uploaded). */
static nnm_status index_tensor(nnm_ctx *ctx, nnm_device dev, const int64_t *idx, int64_t m, nnm_tensor **out) {
    return nnm__tensor_from_host(ctx, dev, 1, &m, i64_dtype, idx, out);
}

/* dst (contiguous, [outer, m, inner]) from src ([outer, n, inner]) through
 * the slot or the one-hot gemm. add: the adjoint, src [outer, m, inner]
 * summed into dst [outer, n, inner], which must hold zeros (the fallback
 * overwrites it). */
static nnm_status run_index(nnm_ctx *ctx, int add, nnm_tensor *src, nnm_tensor *dst, const int64_t *idx,
                            int64_t outer, int64_t n, int64_t inner, int64_t m) {
    nnm__backend *be;
    nnm_device dev = src->desc.device;
    nnm_status st = nnm__backend_get(ctx, dev, &be);
    if (st) return st;
    if (!outer || !inner || !m || !n) return NNM_OK; /* nothing to move */
    nnm_status (*fn)(nnm_env *, void *, const nnm_index_args *) = NULL;
    void *slot = slot_at(be, add ? offsetof(nnm_backend_vtable, index_add) : offsetof(nnm_backend_vtable, index_select));
    memcpy(&fn, &slot, sizeof fn);
    if (fn) {
        nnm_tensor *it = NULL;
        if ((st = index_tensor(ctx, dev, idx, m, &it))) return st;
        nnm_index_args a = {sizeof a, (uint32_t)nnm__dtype_size(src->desc.dtype), outer, n, inner, m,
                            &it->desc, &src->desc, &dst->desc};
        nnm__env env;
        nnm__env_init(&env, ctx, NULL, NNM__PHASE_BACKEND);
        const uint64_t seq = ctx->err_seq;
        st = nnm__backend_check(ctx, be, add ? "index_add" : "index_select", fn(&env.pub, be->state, &a), seq);
        nnm_tensor_release(it);
        return st;
    }
    if (!is_f32(src) || !be->vt->gemm)
        return nnm__error(ctx, NNM_E_UNSUPPORTED, "%s: backend '%s' has no %s slot%s (ABI 1.5)",
                          add ? "index_add" : "index_select", be->vt->name, add ? "index_add" : "index_select",
                          is_f32(src) ? " and no gemm" : ", and only f32 tensors run without it");
    /* one-hot fallback: dst[o] = onehot @ src[o] (select) or onehot^T @ src[o] (add) */
    nnm_tensor *oh = NULL, *s3 = NULL, *prod = NULL;
    const int64_t s_shape[3] = {outer, add ? m : n, inner};
    if (!(st = one_hot(ctx, dev, idx, m, n, &oh)) &&
        !(st = nnm__tensor_view(src, 3, s_shape, NULL, &s3)) &&
        !(st = nnm__bmm_raw(ctx, add, 0, oh, s3, &prod))) {
        /* dst has prod's elements in the same order (a view of [outer, *, inner]);
         * for add, dst holds the caller's zeros, so the sum is the copy */
        nnm__env env;
        nnm__env_init(&env, ctx, NULL, NNM__PHASE_BACKEND);
        const size_t bytes = (size_t)(outer * (add ? n : m) * inner) * sizeof(float);
        st = be->vt->memcpy(&env.pub, be->state, tdata(dst), dev, tdata(prod), dev, bytes);
    }
    nnm_tensor_release(oh);
    nnm_tensor_release(s3);
    nnm_tensor_release(prod);
    return st;
}

/* Splits shape at d: outer = prod(shape[:d]), inner = prod(shape[d+1:]). */
static void split_at(int32_t ndim, const int64_t *shape, int32_t d, int64_t *outer, int64_t *inner) {
    *outer = nnm__numel(d, shape);
    *inner = nnm__numel(ndim - d - 1, shape + d + 1);
}

nnm_status nnm__op_index_select(nnm_ctx *ctx, nnm_tensor *x, int32_t dim, nnm_tensor *index, nnm_tensor **out) {
    *out = NULL;
    if (!x || !index) return nnm__error(ctx, NNM_E_INVALID, "index_select: %s is NULL", !x ? "x" : "index");
    if (!is_i64(index)) return nnm__error(ctx, NNM_E_DTYPE, "index_select: index must be i64");
    if (index->desc.ndim > 1)
        return nnm__error(ctx, NNM_E_SHAPE, "index_select: index must have 0 or 1 dims, got %d",
                          (int)index->desc.ndim);
    if (!nnm__device_eq(x->desc.device, index->desc.device)) {
        char dx[32], di[32];
        return nnm__error(ctx, NNM_E_DEVICE, "index_select: x is on %s, index on %s",
                          nnm__device_name(x->desc.device, dx, sizeof dx),
                          nnm__device_name(index->desc.device, di, sizeof di));
    }
    const int32_t nd = x->desc.ndim, span = nd ? nd : 1;
    const int32_t d = dim < 0 ? dim + span : dim;
    if (d < 0 || d >= span)
        return nnm__error(ctx, NNM_E_SHAPE, "index_select: dim %d is out of range for a %d-d tensor", (int)dim,
                          (int)nd);
    const int64_t n = nd ? x->shape[d] : 1;
    int64_t *idx = NULL, m = 0;
    nnm_status st = read_index(ctx, index, n, &idx, &m);
    if (st) return st;
    if (nd == 0 && m != 1) {
        free(idx);
        return nnm__error(ctx, NNM_E_SHAPE, "index_select: a 0-d x takes one index, got %lld", (long long)m);
    }
    int64_t shape[NNM_MAX_DIMS];
    for (int32_t i = 0; i < nd; i++) shape[i] = i == d ? m : x->shape[i];
    int64_t outer = 1, inner = 1;
    if (nd) split_at(nd, x->shape, d, &outer, &inner);
    nnm_tensor *xc = NULL, *y = NULL;
    if (!is_f32(x) && !nnm__tensor_is_contiguous(x))
        st = nnm__error(ctx, NNM_E_UNSUPPORTED, "index_select: a non-contiguous tensor that is not f32");
    if (!st) st = nnm__contiguous(ctx, x, &xc);
    if (!st) st = nnm__tensor_alloc(ctx, x->desc.device, x->desc.dtype, nd, shape, &y);
    if (!st) st = run_index(ctx, 0, xc, y, idx, outer, n, inner, m);
    if (!st && is_f32(x) && nnm__needs_grad(x, NULL, NULL)) st = nnm__record_index_select(ctx, x, d, idx, m, y);
    free(idx);
    nnm_tensor_release(xc);
    if (st) nnm_tensor_release(y);
    else *out = y;
    return st;
}

nnm_status nnm__index_add_backward(nnm_ctx *ctx, nnm_tensor *g, int32_t d, const int64_t *idx, int64_t m,
                                   int32_t ndim, const int64_t *shape, nnm_tensor **out) {
    *out = NULL;
    nnm_tensor *gc = NULL, *gx = NULL;
    int64_t outer = 1, inner = 1;
    if (ndim) split_at(ndim, shape, d, &outer, &inner);
    const int64_t n = ndim ? shape[d] : 1;
    nnm_status st = nnm__contiguous(ctx, g, &gc);
    if (!st) st = nnm__op_full(ctx, g->desc.device, ndim, shape, 0.0, &gx);
    if (!st) st = run_index(ctx, 1, gc, gx, idx, outer, n, inner, m);
    nnm_tensor_release(gc);
    if (st) nnm_tensor_release(gx);
    else *out = gx;
    return st;
}
