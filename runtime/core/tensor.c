/* runtime/core/tensor.c - reference counted tensors over shared storages, and
 * DLPack interchange. Tensor objects are recycled through a per-context free
 * list, so creating one in a steady-state loop touches no heap. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

size_t nnm__dtype_size(nnm_dtype dt) { return ((size_t)dt.bits * dt.lanes + 7) / 8; }

int nnm__shape_str(const nnm_tensor_desc *d, char *buf, size_t cap) {
    size_t n = 0;
    int w = snprintf(buf, cap, "[");
    n += w > 0 ? (size_t)w : 0;
    for (int32_t i = 0; i < d->ndim; i++) {
        w = snprintf(buf + (n < cap ? n : cap), n < cap ? cap - n : 0, "%s%lld", i ? ", " : "",
                     (long long)d->shape[i]);
        n += w > 0 ? (size_t)w : 0;
    }
    w = snprintf(buf + (n < cap ? n : cap), n < cap ? cap - n : 0, "]");
    n += w > 0 ? (size_t)w : 0;
    return (int)n;
}

static nnm_tensor *tensor_obj(nnm_ctx *ctx) {
    nnm_tensor *t = ctx->free_tensors;
    if (NNM__LIKELY(t != NULL)) {
        NNM__UNPOISON(t, sizeof *t);
        ctx->free_tensors = t->next_free;
        return t;
    }
    return malloc(sizeof *t);
}

static inline __attribute__((always_inline)) void tensor_setup(nnm_tensor *t, nnm_ctx *ctx, nnm__storage *s, nnm_dtype dtype,
                         int32_t ndim, const int64_t *shape) {
    t->desc.data = s->data;
    t->desc.device = s->device;
    t->desc.ndim = ndim;
    t->desc.dtype = dtype;
    t->desc.shape = t->shape;
    t->desc.strides = t->strides;
    t->desc.byte_offset = 0;
    int64_t stride = 1;
    for (int32_t i = ndim - 1; i >= 0; i--) {
        t->shape[i] = shape[i];
        t->strides[i] = stride;
        stride *= shape[i];
    }
    t->refs = 1;
    t->flags = 0;
    t->grad = NULL;
    t->grad_fn = NULL;
    t->grad_hooks = NULL;
    t->output_nr = 0;
    t->tied = NULL;
    t->storage = s;
    t->ctx = ctx;
    t->next_free = NULL;
    ctx->stats.live_tensors++;
    nnm__ctx_retain(ctx);
}

static nnm_status check_shape(nnm_ctx *ctx, int32_t ndim, const int64_t *shape, nnm_dtype dtype,
                              size_t *bytes) {
    if (ndim < 0 || ndim > NNM_MAX_DIMS)
        return nnm__error(ctx, NNM_E_SHAPE, "tensors have 0 to %d dims, got %d", NNM_MAX_DIMS,
                          (int)ndim);
    if (ndim > 0 && !shape) return nnm__error(ctx, NNM_E_INVALID, "shape is NULL");
    size_t esize = nnm__dtype_size(dtype);
    if (esize == 0 || dtype.lanes != 1)
        return nnm__error(ctx, NNM_E_DTYPE, "unsupported dtype (code %d, bits %d, lanes %d)",
                          dtype.code, dtype.bits, dtype.lanes);
    size_t n = esize;
    for (int32_t i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return nnm__error(ctx, NNM_E_SHAPE, "negative dimension %lld at dim %d",
                              (long long)shape[i], (int)i);
        size_t m; /* no division: this runs for every tensor an op makes */
        if (__builtin_mul_overflow(n, (size_t)shape[i], &m) || m > SIZE_MAX / 2)
            return nnm__error(ctx, NNM_E_LIMIT, "tensor size overflows");
        n = m;
    }
    *bytes = n;
    return NNM_OK;
}

/* check_shape's answer for the shapes ops make (positive dims, a one-lane
 * dtype of whole bytes, a product far from overflow): the byte count with a
 * multiply that reports overflow per dim, no division; 0 for anything else
 * (check_shape then decides, and says why). */
static inline size_t shape_bytes_fast(int32_t ndim, const int64_t *shape, nnm_dtype dtype) {
    if ((uint32_t)(ndim - 1) >= (uint32_t)NNM_MAX_DIMS || !shape || dtype.lanes != 1 || !dtype.bits ||
        dtype.bits > 64 || (dtype.bits & 7))
        return 0;
    uint64_t n = dtype.bits / 8;
    for (int32_t i = 0; i < ndim; i++)
        if (shape[i] <= 0 || __builtin_mul_overflow(n, (uint64_t)shape[i], &n)) return 0;
    return n <= SIZE_MAX / 2 ? (size_t)n : 0;
}

nnm_status nnm__tensor_alloc(nnm_ctx *ctx, nnm_device dev, nnm_dtype dtype, int32_t ndim,
                             const int64_t *shape, nnm_tensor **out) {
    *out = NULL;
    size_t bytes = shape_bytes_fast(ndim, shape, dtype);
    nnm_status st;
    if (NNM__UNLIKELY(!bytes) && (st = check_shape(ctx, ndim, shape, dtype, &bytes))) return st;
    nnm__storage *s = nnm__storage_cached(ctx, dev, bytes); /* inline: a cached block */
    if (NNM__UNLIKELY(!s) && (st = nnm__storage_new(ctx, dev, bytes, &s))) return st;
    nnm_tensor *t = tensor_obj(ctx);
    if (!t) {
        nnm__storage_release(s);
        return nnm__error(ctx, NNM_E_NOMEM, "out of memory (tensor)");
    }
    tensor_setup(t, ctx, s, dtype, ndim, shape);
    *out = t;
    return NNM_OK;
}

nnm_status nnm__tensor_view(nnm_tensor *t, int32_t ndim, const int64_t *shape,
                            const int64_t *strides, nnm_tensor **out) {
    nnm_ctx *ctx = t->ctx;
    *out = NULL;
    nnm_tensor *v = tensor_obj(ctx);
    if (!v) return nnm__error(ctx, NNM_E_NOMEM, "out of memory (tensor)");
    t->storage->refs++;
    tensor_setup(v, ctx, t->storage, t->desc.dtype, ndim, shape);
    v->desc.data = t->desc.data;
    v->desc.byte_offset = t->desc.byte_offset;
    if (strides)
        for (int32_t i = 0; i < ndim; i++) v->strides[i] = strides[i];
    *out = v;
    return NNM_OK;
}

void nnm__tensors_fini(nnm_ctx *ctx) {
    while (ctx->free_tensors) {
        nnm_tensor *t = ctx->free_tensors;
        NNM__UNPOISON(t, sizeof *t);
        ctx->free_tensors = t->next_free;
        free(t);
    }
}

NNM_API nnm_status nnm_tensor_new(nnm_ctx *ctx, nnm_device device, nnm_dtype dtype, int32_t ndim,
                                  const int64_t *shape, nnm_tensor **out) {
    if (!out) return ctx ? nnm__error(ctx, NNM_E_INVALID, "nnm_tensor_new: out is NULL")
                         : NNM_E_INVALID;
    *out = NULL;
    if (!ctx) return NNM_E_INVALID;
    return nnm__tensor_alloc(ctx, device, dtype, ndim, shape, out);
}

NNM_API nnm_status nnm_tensor_from_f32(nnm_ctx *ctx, int32_t ndim, const int64_t *shape,
                                       const float *data, nnm_tensor **out) {
    nnm_status st = nnm_tensor_new(ctx, (nnm_device){NNM_DEVICE_CPU, 0}, NNM_F32, ndim, shape, out);
    if (st) return st;
    size_t n = (size_t)nnm__numel(ndim, shape);
    if (data)
        memcpy((*out)->desc.data, data, n * sizeof(float));
    else
        memset((*out)->desc.data, 0, n * sizeof(float));
    return NNM_OK;
}

NNM_API nnm_status nnm_tensor_from_i64(nnm_ctx *ctx, int32_t ndim, const int64_t *shape,
                                       const int64_t *data, nnm_tensor **out) {
    nnm_dtype i64 = {NNM_DTYPE_INT, 64, 1};
    nnm_status st = nnm_tensor_new(ctx, (nnm_device){NNM_DEVICE_CPU, 0}, i64, ndim, shape, out);
    if (st) return st;
    size_t n = (size_t)nnm__numel(ndim, shape);
    if (data)
        memcpy((*out)->desc.data, data, n * sizeof(int64_t));
    else
        memset((*out)->desc.data, 0, n * sizeof(int64_t));
    return NNM_OK;
}

/* The first element's byte; NULL for a tensor without data (the meta
 * device: NULL + 0 is undefined). */
static char *bytes_of(const nnm_tensor *t) {
    return t->desc.data ? (char *)t->desc.data + t->desc.byte_offset : NULL;
}

nnm_status nnm__tensor_read_i64(nnm_tensor *t, int64_t *dst, size_t n) {
    nnm_ctx *ctx = t->ctx;
    if ((uint64_t)nnm__numel(t->desc.ndim, t->shape) != n)
        return nnm__error(ctx, NNM_E_SHAPE, "read i64: the tensor has %lld elements, not %zu",
                          (long long)nnm__numel(t->desc.ndim, t->shape), n);
    if (!n) return NNM_OK;
    const char *p = bytes_of(t);
    if (t->desc.device.type == NNM_DEVICE_CPU) {
        /* any strides: walk the elements in row-major order */
        int64_t idx[NNM_MAX_DIMS] = {0};
        for (size_t k = 0; k < n; k++) {
            int64_t off = 0;
            for (int32_t d = 0; d < t->desc.ndim; d++) off += idx[d] * t->strides[d];
            memcpy(&dst[k], p + off * 8, 8);
            for (int32_t d = t->desc.ndim - 1; d >= 0; d--) {
                if (++idx[d] < t->shape[d]) break;
                idx[d] = 0;
            }
        }
        return NNM_OK;
    }
    if (!nnm__tensor_is_contiguous(t))
        return nnm__error(ctx, NNM_E_UNSUPPORTED, "read i64: a strided tensor off the CPU");
    nnm__backend *be;
    nnm_status st = nnm__backend_get(ctx, t->desc.device, &be);
    if (st) return st;
    nnm__env env;
    nnm__env_init(&env, ctx, NULL, NNM__PHASE_BACKEND);
    return be->vt->memcpy(&env.pub, be->state, dst, (nnm_device){NNM_DEVICE_CPU, 0}, p, t->desc.device, n * 8);
}

nnm_status nnm__tensor_write_i64(nnm_tensor *t, const int64_t *src, size_t n) {
    nnm_ctx *ctx = t->ctx;
    if ((uint64_t)nnm__numel(t->desc.ndim, t->shape) != n || !nnm__tensor_is_contiguous(t))
        return nnm__error(ctx, NNM_E_SHAPE, "write i64: %zu elements into a tensor of %lld (contiguous only)", n,
                          (long long)nnm__numel(t->desc.ndim, t->shape));
    if (!n) return NNM_OK;
    char *p = bytes_of(t);
    if (t->desc.device.type == NNM_DEVICE_CPU) {
        memcpy(p, src, n * 8);
        return NNM_OK;
    }
    nnm__backend *be;
    nnm_status st = nnm__backend_get(ctx, t->desc.device, &be);
    if (st) return st;
    return nnm__backend_upload(ctx, be, p, t->desc.device, src, n * 8); /* staged: no wait */
}

NNM_API nnm_status nnm_tensor_to_f32(nnm_tensor *t, float *dst, size_t cap) {
    if (!t) return NNM_E_INVALID;
    nnm_ctx *ctx = t->ctx;
    if (!dst) return nnm__error(ctx, NNM_E_INVALID, "nnm_tensor_to_f32: dst is NULL");
    int64_t n = nnm__numel(t->desc.ndim, t->shape);
    if (t->desc.dtype.code == NNM_DTYPE_INT && t->desc.dtype.bits == 64 && t->desc.dtype.lanes == 1) {
        /* an i64 tensor (num_batches_tracked, an index buffer) is converted */
        if ((uint64_t)n > cap)
            return nnm__error(ctx, NNM_E_LIMIT, "nnm_tensor_to_f32: %lld elements do not fit in %zu",
                              (long long)n, cap);
        int64_t *q = malloc((size_t)(n ? n : 1) * sizeof *q);
        if (!q) return nnm__error(ctx, NNM_E_NOMEM, "nnm_tensor_to_f32: out of memory");
        nnm_status st = nnm__tensor_read_i64(t, q, (size_t)n);
        for (int64_t i = 0; !st && i < n; i++) dst[i] = (float)q[i];
        free(q);
        return st;
    }
    if (t->desc.dtype.code != NNM_DTYPE_FLOAT || t->desc.dtype.bits != 32)
        return nnm__error(ctx, NNM_E_DTYPE, "nnm_tensor_to_f32: tensor is not f32 (or i64)");
    if ((uint64_t)n > cap)
        return nnm__error(ctx, NNM_E_LIMIT, "nnm_tensor_to_f32: %lld elements do not fit in %zu",
                          (long long)n, cap);
    nnm_tensor *src = t;
    nnm_tensor *tmp = NULL;
    if (!nnm__tensor_is_contiguous(t)) {
        nnm_status st = nnm__op_unary(ctx, NNM_UNARY_COPY, t, 0, &tmp);
        if (st) return st;
        src = tmp;
    }
    const char *p = bytes_of(src);
    nnm_status st = NNM_OK;
    if (src->desc.device.type == NNM_DEVICE_CPU) {
        memcpy(dst, p, (size_t)n * sizeof(float));
    } else {
        nnm__backend *be;
        st = nnm__backend_get(ctx, src->desc.device, &be);
        if (!st) {
            nnm__env env;
            nnm__env_init(&env, ctx, NULL, NNM__PHASE_BACKEND);
            st = be->vt->memcpy(&env.pub, be->state, dst, (nnm_device){NNM_DEVICE_CPU, 0}, p,
                                src->desc.device, (size_t)n * sizeof(float));
        }
    }
    nnm_tensor_release(tmp);
    return st;
}

/* Copies `bytes` bytes from src (on src_dev) to dst (on dst_dev) through the
 * backend of whichever side is not the CPU; between two devices of different
 * types through a host buffer. */
static nnm_status copy_between(nnm_ctx *ctx, void *dst, nnm_device dst_dev, const void *src,
                               nnm_device src_dev, size_t bytes) {
    const int dst_cpu = dst_dev.type == NNM_DEVICE_CPU, src_cpu = src_dev.type == NNM_DEVICE_CPU;
    if (dst_cpu && src_cpu) {
        memcpy(dst, src, bytes);
        return NNM_OK;
    }
    nnm__env env;
    nnm__env_init(&env, ctx, NULL, NNM__PHASE_BACKEND);
    nnm__backend *be;
    nnm_status st;
    if (src_cpu || dst_cpu || src_dev.type == dst_dev.type) {
        if ((st = nnm__backend_get(ctx, src_cpu ? dst_dev : src_dev, &be))) return st;
        /* host to device: staged in page-locked memory where the backend has
         * it, so the copy does not wait for the device's queued work */
        if (src_cpu) return nnm__backend_upload(ctx, be, dst, dst_dev, src, bytes);
        return be->vt->memcpy(&env.pub, be->state, dst, dst_dev, src, src_dev, bytes);
    }
    void *h = malloc(bytes);
    if (!h) return nnm__error(ctx, NNM_E_NOMEM, "nnm_tensor_to: out of memory (%zu bytes)", bytes);
    const nnm_device cpu = {NNM_DEVICE_CPU, 0};
    st = copy_between(ctx, h, cpu, src, src_dev, bytes);
    if (!st) st = copy_between(ctx, dst, dst_dev, h, cpu, bytes);
    free(h);
    return st;
}

NNM_API nnm_status nnm_tensor_to(nnm_tensor *t, nnm_device device, nnm_tensor **out) {
    if (out) *out = NULL;
    if (!t || !out) return NNM_E_INVALID;
    nnm_ctx *ctx = t->ctx;
    if (t->desc.device.type == NNM_DEVICE_META && device.type != NNM_DEVICE_META)
        return nnm__error(ctx, NNM_E_DEVICE, "nnm_tensor_to: a tensor on the meta device has no "
                          "data to copy");
    nnm_tensor *o = NULL;
    nnm_status st = nnm__tensor_alloc(ctx, device, t->desc.dtype, t->desc.ndim, t->shape, &o);
    if (st) return st;
    const size_t esize = nnm__dtype_size(t->desc.dtype);
    const int64_t n = nnm__numel(t->desc.ndim, t->shape);
    if (device.type == NNM_DEVICE_META || n == 0) {
        *out = o;
        return NNM_OK;
    }
    const char *src = bytes_of(t);
    nnm_tensor *tmp = NULL;
    void *packed = NULL;
    if (!nnm__tensor_is_contiguous(t)) {
        if (t->desc.device.type == NNM_DEVICE_CPU) {
            /* any strides on the host: gather the elements in row-major order */
            char *q = packed = malloc((size_t)n * esize);
            if (!q) st = nnm__error(ctx, NNM_E_NOMEM, "nnm_tensor_to: out of memory");
            int64_t idx[NNM_MAX_DIMS] = {0};
            for (int64_t k = 0; !st && k < n; k++) {
                int64_t off = 0;
                for (int32_t d = 0; d < t->desc.ndim; d++) off += idx[d] * t->strides[d];
                memcpy(q + (size_t)k * esize, src + off * (int64_t)esize, esize);
                for (int32_t d = t->desc.ndim - 1; d >= 0; d--) {
                    if (++idx[d] < t->shape[d]) break;
                    idx[d] = 0;
                }
            }
            src = packed;
        } else if (t->desc.dtype.code == NNM_DTYPE_FLOAT && t->desc.dtype.bits == 32) {
            /* a contiguous copy on its own device first (no autograd record) */
            int was = nnm_grad_set_enabled(0);
            st = nnm__op_unary(ctx, NNM_UNARY_COPY, t, 0, &tmp);
            nnm_grad_set_enabled(was);
            if (!st) src = bytes_of(tmp);
        } else {
            st = nnm__error(ctx, NNM_E_UNSUPPORTED, "nnm_tensor_to: a strided tensor of this dtype "
                            "off the CPU");
        }
    }
    if (!st) st = copy_between(ctx, bytes_of(o), device, src, t->desc.device, (size_t)n * esize);
    free(packed);
    nnm_tensor_release(tmp);
    if (st) {
        nnm_tensor_release(o);
        return st;
    }
    *out = o;
    return NNM_OK;
}

NNM_API void nnm_tensor_retain(nnm_tensor *t) {
    if (t) t->refs++;
}

NNM_API void nnm_tensor_release(nnm_tensor *t) {
    if (!t || --t->refs) return;
    nnm_ctx *ctx = t->ctx;
    if (t->storage) nnm__storage_release_inline(t->storage);
    t->storage = NULL;
    if (t->grad) nnm_tensor_release(t->grad);
    if (t->grad_fn) nnm__node_release(t->grad_fn);
    if (t->grad_hooks) nnm__grad_hooks_free(t);
    t->grad = NULL;
    t->grad_fn = NULL;
    if (t->tied) nnm_tensor_release(t->tied);
    t->tied = NULL;
    t->next_free = ctx->free_tensors;
    ctx->free_tensors = t;
    nnm__poison_entry(t, sizeof *t, &t->next_free); /* a use after release is reported under ASan */
    ctx->stats.live_tensors--;
    nnm__ctx_release(ctx);
}

NNM_API const nnm_tensor_desc *nnm_tensor_desc_get(const nnm_tensor *t) { return t ? &t->desc : NULL; }

NNM_API int64_t nnm_tensor_numel(const nnm_tensor *t) {
    return t ? nnm__numel(t->desc.ndim, t->shape) : 0;
}

/* ---- DLPack ------------------------------------------------------------- */

typedef struct dlpack_export {
    nnm_dlpack_tensor dl;
    int64_t shape[NNM_MAX_DIMS];
    int64_t strides[NNM_MAX_DIMS];
    nnm__storage *storage;
} dlpack_export;

static void dlpack_export_delete(nnm_dlpack_tensor *self) {
    dlpack_export *e = (dlpack_export *)self;
    nnm__storage_release(e->storage);
    free(e);
}

NNM_API nnm_status nnm_tensor_to_dlpack(nnm_tensor *t, nnm_dlpack_tensor **out) {
    if (out) *out = NULL;
    if (!t) return NNM_E_INVALID;
    if (!out) return nnm__error(t->ctx, NNM_E_INVALID, "nnm_tensor_to_dlpack: out is NULL");
    if (t->desc.device.type == NNM_DEVICE_META) /* no data, and no DLPack device type */
        return nnm__error(t->ctx, NNM_E_DEVICE, "nnm_tensor_to_dlpack: a meta tensor has no data");
    dlpack_export *e = calloc(1, sizeof *e);
    if (!e) return nnm__error(t->ctx, NNM_E_NOMEM, "out of memory (dlpack export)");
    e->dl.version.major = 1;
    e->dl.version.minor = 0;
    e->dl.manager_ctx = e;
    e->dl.deleter = dlpack_export_delete;
    e->dl.flags = 0;
    e->dl.dl_tensor = t->desc;
    memcpy(e->shape, t->shape, sizeof e->shape);
    memcpy(e->strides, t->strides, sizeof e->strides);
    e->dl.dl_tensor.shape = e->shape;
    e->dl.dl_tensor.strides = e->strides;
    e->storage = t->storage;
    e->storage->refs++;
    *out = &e->dl;
    return NNM_OK;
}

NNM_API nnm_status nnm_tensor_from_dlpack(nnm_ctx *ctx, nnm_dlpack_tensor *src, nnm_tensor **out) {
    if (out) *out = NULL;
    nnm_status st = NNM_OK;
    if (!ctx || !src || !out) {
        st = ctx ? nnm__error(ctx, NNM_E_INVALID, "nnm_tensor_from_dlpack: NULL argument")
                 : NNM_E_INVALID;
        goto fail;
    }
    const nnm_tensor_desc *d = &src->dl_tensor;
    if (src->version.major != 1) {
        st = nnm__error(ctx, NNM_E_VERSION, "DLPack major version %u is not supported (want 1)",
                        (unsigned)src->version.major);
        goto fail;
    }
    size_t bytes;
    if ((st = check_shape(ctx, d->ndim, d->shape, d->dtype, &bytes))) goto fail;
    /* a producer's lies that would be dereferenced later: NULL memory
     * holding elements, elements not on their alignment */
    if (bytes > 0 && !d->data) {
        st = nnm__error(ctx, NNM_E_INVALID, "nnm_tensor_from_dlpack: %zu bytes of elements at a NULL data pointer",
                        bytes);
        goto fail;
    }
    const size_t esize = nnm__dtype_size(d->dtype);
    if (d->byte_offset % esize || (uintptr_t)d->data % esize) {
        st = nnm__error(ctx, NNM_E_INVALID,
                        "nnm_tensor_from_dlpack: data %p + byte_offset %llu is not aligned to its %zu-byte elements",
                        d->data, (unsigned long long)d->byte_offset, esize);
        goto fail;
    }
    nnm__backend *be;
    if ((st = nnm__backend_get(ctx, d->device, &be))) goto fail;
    (void)be;
    nnm__storage *s = nnm__storage_obj(ctx);
    if (!s) {
        st = nnm__error(ctx, NNM_E_NOMEM, "out of memory (dlpack import)");
        goto fail;
    }
    nnm_tensor *t = tensor_obj(ctx);
    if (!t) {
        nnm__storage_obj_recycle(ctx, s);
        st = nnm__error(ctx, NNM_E_NOMEM, "out of memory (dlpack import)");
        goto fail;
    }
    s->data = d->data;
    s->bytes = bytes;
    s->device = d->device;
    s->refs = 1;
    s->size_class = -1;
    s->ctx = ctx;
    s->external = src;
    s->next = NULL;
    nnm__ctx_retain(ctx);
    tensor_setup(t, ctx, s, d->dtype, d->ndim, d->shape);
    t->desc.byte_offset = d->byte_offset;
    if (d->strides)
        for (int32_t i = 0; i < d->ndim; i++) t->strides[i] = d->strides[i];
    *out = t;
    return NNM_OK;
fail:
    if (src && src->deleter) src->deleter(src);
    return st;
}
