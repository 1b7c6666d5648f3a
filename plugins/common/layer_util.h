/* plugins/common/layer_util.h - small helpers the layer plugins of this
 * repository share: a contiguous f32 CPU view of a tensor for layers that ship
 * their own CPU kernels, and Python's float repr for extra_repr.
 *
 * Private to this repository's plugins (not part of the ABI). Header-only;
 * built only against abi/nnmod/plugin.h and the C library.
 */
#ifndef NNM_PLUGINS_LAYER_UTIL_H
#define NNM_PLUGINS_LAYER_UTIL_H

#include <nnmod/plugin.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* 1 when `bytes` of host memory (a table or buffer sized from a config)
 * could exist on this machine. Such a size must not reach malloc when it is
 * larger: ASan aborts on it and an overcommitting kernel may say yes. 1 when
 * the machine's size is unknown. */
static inline int nnm_lu_host_fits(double bytes) {
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    return pages <= 0 || page <= 0 || bytes <= (double)pages * (double)page;
}

/* 1 when d is laid out row-major without gaps (size-1 dims may have any
 * stride), or holds no elements (any strides, as PyTorch's is_contiguous). */
static inline int nnm_lu_is_contiguous(const nnm_tensor_desc *d) {
    int64_t st = 1;
    for (int32_t i = d->ndim - 1; i >= 0; i--) {
        if (d->shape[i] != 1 && d->strides[i] != st) {
            for (int32_t j = 0; j < d->ndim; j++)
                if (d->shape[j] == 0)
                    return 1;
            return 0;
        }
        st *= d->shape[i];
    }
    return 1;
}

static inline int64_t nnm_lu_numel(const nnm_tensor_desc *d) {
    int64_t n = 1;
    for (int32_t i = 0; i < d->ndim; i++)
        n *= d->shape[i];
    return n;
}

static inline int nnm_lu_is_f32(const nnm_tensor_desc *d) {
    return d->dtype.code == NNM_DTYPE_FLOAT && d->dtype.bits == 32 && d->dtype.lanes == 1;
}

/* "[2, 3]" (d's shape) into buf, cut to cap; returns buf. */
static inline const char *nnm_lu_shape_str(const nnm_tensor_desc *d, char *buf, size_t cap) {
    size_t at = 0;
    int n = snprintf(buf, cap, "[");
    at = n > 0 ? (size_t)n : 0;
    for (int32_t i = 0; i < d->ndim && at < cap; i++) {
        n = snprintf(buf + at, cap - at, "%s%lld", i ? ", " : "", (long long)d->shape[i]);
        at += n > 0 ? (size_t)n : 0;
    }
    if (at < cap) snprintf(buf + at, cap - at, "]");
    return buf;
}

/* PyTorch-like name of a dtype for messages ("i64", "u8", "f32", "bool",
 * "bf16"), written to buf (cap >= 32); returns buf. */
static inline const char *nnm_lu_dtype_str(nnm_dtype t, char *buf, size_t cap) {
    const char *k = t.code == NNM_DTYPE_INT     ? "i"
                    : t.code == NNM_DTYPE_UINT  ? "u"
                    : t.code == NNM_DTYPE_FLOAT ? "f"
                    : t.code == NNM_DTYPE_BFLOAT ? "bf"
                                                 : NULL;
    if (t.code == NNM_DTYPE_BOOL && t.lanes == 1) snprintf(buf, cap, "bool");
    else if (k && t.lanes == 1) snprintf(buf, cap, "%s%u", k, (unsigned)t.bits);
    else snprintf(buf, cap, "dtype code %u, %u bits, %u lanes", (unsigned)t.code, (unsigned)t.bits,
                  (unsigned)t.lanes);
    return buf;
}

/* The first element of a tensor whose descriptor is d. */
static inline void *nnm_lu_data(const nnm_tensor_desc *d) {
    return (char *)d->data + d->byte_offset;
}

/* *out = a contiguous f32 CPU tensor with x's values: x itself (one more
 * reference) when it already is one, else a copy (host op_unary COPY, which
 * writes a contiguous tensor). `who` names the layer in messages. A tensor on
 * another device gives NNM_E_UNSUPPORTED: these kernels are CPU only. The
 * caller releases *out. */
static inline nnm_status nnm_lu_cpu_f32(nnm_env *env, const char *who, nnm_tensor *x,
                                        nnm_tensor **out) {
    const nnm_host *h = env->host;
    *out = NULL;
    const nnm_tensor_desc *d = h->tensor_desc(x);
    char dt[64];
    if (!nnm_lu_is_f32(d))
        return h->set_error(env, NNM_E_DTYPE, "%s takes f32 tensors, got %s", who,
                            nnm_lu_dtype_str(d->dtype, dt, sizeof dt));
    if (d->device.type != NNM_DEVICE_CPU)
        return h->set_error(env, NNM_E_UNSUPPORTED,
                            "%s has a CPU kernel only; no kernel for device type %d", who,
                            d->device.type);
    if (nnm_lu_is_contiguous(d)) {
        h->tensor_retain(x);
        *out = x;
        return NNM_OK;
    }
    return h->op_unary(env, NNM_UNARY_COPY, x, 0.0, out);
}

/* A new contiguous f32 tensor of d's shape (on the invocation's device). */
static inline nnm_status nnm_lu_new_like(nnm_env *env, const nnm_tensor_desc *d,
                                         nnm_tensor **out) {
    return env->host->tensor_new(env, d->ndim, d->shape, NNM_F32, out);
}

/* Python's repr() of a float: the shortest %g form that reads back to the
 * same double, with ".0" appended to an integral value ("1.0", "0.01",
 * "1e-05", "inf", "nan"). Writes at most cap bytes like snprintf and returns
 * what snprintf returns. */
static inline int nnm_lu_pyfloat(char *buf, size_t cap, double v) {
    char tmp[40];
    if (v != v)
        return snprintf(buf, cap, "nan");
    if (v == 1.0 / 0.0)
        return snprintf(buf, cap, "inf");
    if (v == -1.0 / 0.0)
        return snprintf(buf, cap, "-inf");
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        if (strtod(tmp, NULL) == v)
            break;
    }
    /* Python writes exponents with at least two digits, as %g does, and uses
     * the exponent form only below 1e-4 or from 1e16; %g switches at the
     * precision instead, so a large integral value is redone in full. */
    if (strchr(tmp, 'e') != NULL && v < 1e16 && v > -1e16 && v == (double)(long long)v)
        snprintf(tmp, sizeof tmp, "%.0f", v);
    if (strpbrk(tmp, ".e") == NULL)
        strcat(tmp, ".0");
    return snprintf(buf, cap, "%s", tmp);
}

#endif /* NNM_PLUGINS_LAYER_UTIL_H */
