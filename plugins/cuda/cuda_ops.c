/* plugins/cuda/cuda_ops.c - the checks the cuda backend's op families share
 * (cuda_ops.h), and set_num_threads. */
#include "cuda_ops.h"

#include <string.h>

int cuda_dtype_kind(nnm_dtype dt) {
    if (dt.lanes != 1)
        return CUDA_DT_BAD;
    if (dt.code == NNM_DTYPE_FLOAT && dt.bits == 32)
        return CUDA_DT_F32;
    if (dt.code == NNM_DTYPE_INT && dt.bits == 64)
        return CUDA_DT_I64;
    if (dt.code == NNM_DTYPE_INT && dt.bits == 32)
        return CUDA_DT_I32;
    if (dt.code == NNM_DTYPE_UINT && dt.bits == 8)
        return CUDA_DT_U8;
    if (dt.code == NNM_DTYPE_BOOL && dt.bits == 8)
        return CUDA_DT_BOOL;
    return CUDA_DT_BAD;
}

size_t cuda_dtype_size(int kind) {
    switch (kind) {
    case CUDA_DT_I64: return 8;
    case CUDA_DT_F32:
    case CUDA_DT_I32: return 4;
    default: return 1;
    }
}

nnm_status cuda_check_desc_dt(nnm_env *env, const cuda_state *s, const char *op, const char *what,
                              const nnm_tensor_desc *d, int kind, int32_t *id, int64_t *numel) {
    if (d == NULL)
        return CUDA_ERR(env, NNM_E_INVALID, "cuda %s: %s tensor is NULL", op, what);
    if (d->device.type != NNM_DEVICE_CUDA)
        return CUDA_ERR(env, NNM_E_DEVICE,
                        "cuda %s: %s tensor is on device type %d, the cuda backend handles "
                        "only CUDA tensors (type %d)",
                        op, what, (int)d->device.type, (int)NNM_DEVICE_CUDA);
    if (*id < 0) {
        nnm_status st = cuda_check_id(env, s, op, d->device.id);
        if (st != NNM_OK)
            return st;
        *id = d->device.id;
    } else if (d->device.id != *id) {
        return CUDA_ERR(env, NNM_E_DEVICE,
                        "cuda %s: %s tensor is on cuda:%d, the output on cuda:%d", op, what,
                        (int)d->device.id, (int)*id);
    }
    const int k = cuda_dtype_kind(d->dtype);
    if (k == CUDA_DT_BAD || (kind != CUDA_DT_ANY && k != kind))
        return CUDA_ERR(env, NNM_E_DTYPE,
                        "cuda %s: %s tensor has dtype (code %u, bits %u, lanes %u); %s", op, what,
                        (unsigned)d->dtype.code, (unsigned)d->dtype.bits,
                        (unsigned)d->dtype.lanes,
                        kind == CUDA_DT_I64   ? "it must be i64 (code 0, bits 64, lanes 1)"
                        : kind == CUDA_DT_F32 ? "it must be f32 (code 2, bits 32, lanes 1)"
                                              : "it must be one of f32, i64, i32, u8 and bool");
    if (d->ndim < 0 || d->ndim > NNM_MAX_DIMS)
        return CUDA_ERR(env, NNM_E_LIMIT, "cuda %s: %s tensor has ndim %d (0..%d allowed)", op,
                        what, (int)d->ndim, NNM_MAX_DIMS);
    if (d->ndim > 0 && (d->shape == NULL || d->strides == NULL))
        return CUDA_ERR(env, NNM_E_INVALID, "cuda %s: %s tensor has NULL shape or strides", op,
                        what);
    const size_t esize = cuda_dtype_size(k);
    if (d->byte_offset % esize != 0)
        return CUDA_ERR(env, NNM_E_INVALID,
                        "cuda %s: %s tensor byte_offset %llu is not a multiple of %u", op, what,
                        (unsigned long long)d->byte_offset, (unsigned)esize);
    int64_t n = 1;
    for (int32_t i = 0; i < d->ndim; i++) {
        const int64_t sz = d->shape[i];
        if (sz < 0)
            return CUDA_ERR(env, NNM_E_SHAPE,
                            "cuda %s: %s tensor has negative size %lld in dim %d", op, what,
                            (long long)sz, (int)i);
        if (sz != 0 && n > INT64_MAX / sz)
            return CUDA_ERR(env, NNM_E_LIMIT, "cuda %s: %s tensor has too many elements", op,
                            what);
        n *= sz;
    }
    if (n > 0 && d->data == NULL)
        return CUDA_ERR(env, NNM_E_INVALID, "cuda %s: %s tensor has NULL data", op, what);
    *numel = n;
    return NNM_OK;
}

int cuda_is_contiguous(const nnm_tensor_desc *d) {
    int64_t want = 1;
    for (int32_t i = d->ndim - 1; i >= 0; i--) {
        if (d->shape[i] != 1 && d->strides[i] != want)
            return 0;
        want *= d->shape[i];
    }
    return 1;
}

nnm_status cuda_err_contiguous(nnm_env *env, const char *op, const char *what) {
    return CUDA_ERR(env, NNM_E_INVALID, "cuda %s: %s tensor must be contiguous", op, what);
}

nnm_status cuda_raw_device(nnm_env *env, const cuda_state *s, const char *op, const char *what,
                           const void *p, int32_t *id) {
    struct cudaPointerAttributes at;
    memset(&at, 0, sizeof at);
    cudaError_t e = cudaPointerGetAttributes(&at, p);
    if (e != cudaSuccess)
        return cuda_fail(env, op, "cudaPointerGetAttributes", e);
    if (at.type != cudaMemoryTypeDevice && at.type != cudaMemoryTypeManaged)
        return CUDA_ERR(env, NNM_E_DEVICE, "cuda %s: %s is not CUDA device memory (type %d)", op,
                        what, (int)at.type);
    nnm_status st = cuda_check_id(env, s, op, at.device);
    if (st == NNM_OK)
        st = cuda_use(env, op, at.device);
    if (st == NNM_OK)
        *id = at.device;
    return st;
}

nnm_status cuda_read_back(nnm_env *env, cuda_state *s, int32_t id, const char *op, void *host,
                          const void *dev, size_t bytes) {
    cudaStream_t st = cuda_stream(s, id);
    cudaError_t e = cudaMemcpyAsync(host, dev, bytes, cudaMemcpyDeviceToHost, st);
    if (e != cudaSuccess)
        return cuda_fail(env, op, "cudaMemcpyAsync", e);
    e = cudaStreamSynchronize(st);
    if (e != cudaSuccess)
        return cuda_fail(env, op, "cudaStreamSynchronize", e);
    return NNM_OK;
}

nnm_status cuda_set_num_threads(nnm_env *env, void *state, int32_t n) {
    (void)state;
    if (n < 1)
        return CUDA_ERR(env, NNM_E_INVALID, "cuda set_num_threads: n must be >= 1, got %d", (int)n);
    return NNM_OK; /* a GPU's kernels size their own grids */
}
