/* plugins/cuda/cuda.c - the CUDA backend: device memory (cudaMalloc), copies,
 * cuBLAS gemm and strided f32 elementwise kernels (kernels.cu). This file:
 * init, shutdown, the shared checks and the vtable; the concerns live in
 * cuda_*.c (cuda_internal.h says which).
 *
 * Contract (see nnm_backend_vtable in nnmod/plugin.h), the cpu backend's in
 * every respect but where the memory lives:
 *  - init counts the devices; on a machine without a GPU or without a driver
 *    it returns NNM_E_NO_DEVICE with "no CUDA device: ..." and the runtime
 *    never calls anything else. Nothing here prints, exits or aborts;
 *  - memory is plain device memory from cudaMalloc on the requested device
 *    (256-byte aligned; never managed memory); alloc of 0 bytes returns a
 *    valid, unique pointer that free accepts;
 *  - only f32 tensors are supported; other dtypes give NNM_E_DTYPE;
 *  - every op validates its descriptors exactly as the cpu backend does, merges
 *    dims the same way (cuda_layout_init is cpu_layout_init) and launches one
 *    kernel on the context's stream of the tensors' device (cuda_stream). Ops are
 *    asynchronous; memcpy to the host synchronises, as cudaMemcpy does;
 *  - cuBLAS is not linked: init dlopens it (libcublas.so.<major> of the
 *    toolkit this was built with, then libcublas.so, then the toolkit's own
 *    copy), so that loading nnm_cuda.so - which every context does, GPU or
 *    not - costs only the small static CUDA runtime. One cuBLAS handle per
 *    device, created on first use;
 *  - the current device of the calling thread is switched to the tensors'
 *    device when it differs (like torch.cuda.set_device), and left there.
 */
#include "cuda_internal.h"

#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Errors and devices                                                        */
/* ------------------------------------------------------------------------ */

/* The status a failed CUDA runtime call maps to. Clears the (non-sticky)
 * error so the next call does not see it again. */
nnm_status cuda_status_of(cudaError_t e) {
    (void)cudaGetLastError();
    return e == cudaErrorMemoryAllocation ? NNM_E_NOMEM : NNM_E_DEVICE;
}

nnm_status cuda_fail(nnm_env *env, const char *op, const char *call, cudaError_t e) {
    return CUDA_ERR(env, cuda_status_of(e), "cuda %s: %s: %s (%s)", op, call,
                    cudaGetErrorString(e), cudaGetErrorName(e));
}

nnm_status cuda_check_id(nnm_env *env, const cuda_state *s, const char *op, int32_t id) {
    if (id < 0 || id >= s->n_devices)
        return CUDA_ERR(env, NNM_E_DEVICE, "cuda %s: no CUDA device %d (this machine has %d)", op,
                        (int)id, s->n_devices);
    return NNM_OK;
}

/* Makes device `id` (already checked) current on the calling thread. */
nnm_status cuda_use(nnm_env *env, const char *op, int32_t id) {
    int cur = -1;
    if (cudaGetDevice(&cur) == cudaSuccess && cur == id)
        return NNM_OK;
    cudaError_t e = cudaSetDevice(id);
    if (e != cudaSuccess)
        return cuda_fail(env, op, "cudaSetDevice", e);
    return NNM_OK;
}
nnm_status cuda_launched(nnm_env *env, const char *op, int rc) {
    if (rc == 0)
        return NNM_OK;
    return cuda_fail(env, op, "kernel launch", (cudaError_t)rc);
}


/* ------------------------------------------------------------------------ */
/* Descriptor checks (as the cpu backend's, for CUDA tensors)                */
/* ------------------------------------------------------------------------ */

int cuda_is_f32(nnm_dtype dt) {
    return dt.code == NNM_DTYPE_FLOAT && dt.bits == 32 && dt.lanes == 1;
}

/* Validates one descriptor an op reads or writes: CUDA device `id` (or, when
 * *id is -1, any valid device, which it then sets), f32, sane ndim, shape and
 * strides present, data present unless empty. Sets *numel. */
nnm_status cuda_check_desc(nnm_env *env, const cuda_state *s, const char *op,
                                  const char *what, const nnm_tensor_desc *d, int32_t *id,
                                  int64_t *numel) {
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
    if (!cuda_is_f32(d->dtype))
        return CUDA_ERR(env, NNM_E_DTYPE,
                        "cuda %s: %s tensor has dtype (code %u, bits %u, lanes %u); the cuda "
                        "backend supports only f32 for now",
                        op, what, (unsigned)d->dtype.code, (unsigned)d->dtype.bits,
                        (unsigned)d->dtype.lanes);
    if (d->ndim < 0 || d->ndim > NNM_MAX_DIMS)
        return CUDA_ERR(env, NNM_E_LIMIT, "cuda %s: %s tensor has ndim %d (0..%d allowed)", op,
                        what, (int)d->ndim, NNM_MAX_DIMS);
    if (d->ndim > 0 && (d->shape == NULL || d->strides == NULL))
        return CUDA_ERR(env, NNM_E_INVALID, "cuda %s: %s tensor has NULL shape or strides", op,
                        what);
    if (d->byte_offset % sizeof(float) != 0)
        return CUDA_ERR(env, NNM_E_INVALID,
                        "cuda %s: %s tensor byte_offset %llu is not a multiple of 4", op, what,
                        (unsigned long long)d->byte_offset);
    int64_t n = 1;
    for (int32_t i = 0; i < d->ndim; i++) {
        int64_t sz = d->shape[i];
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

/* The layout the cpu backend builds too (plugins/common/strided_layout.h). */
nnm_status cuda_layout_init(nnm_env *env, const char *op, nnm__cuda_layout *L,
                                   int32_t ndim, const int64_t *shape, int32_t nops,
                                   const nnm_tensor_desc *const *ds, const char *const *names) {
    memset(L, 0, sizeof *L); /* kernels get the whole struct by value */
    return nnm_strided_layout_init(env, "cuda", op, L, ndim, shape, nops, ds, names);
}

/* ------------------------------------------------------------------------ */
/* init / shutdown                                                           */
/* ------------------------------------------------------------------------ */

static nnm_status cuda_init(nnm_env *env, void **state) {
    if (state == NULL)
        return CUDA_ERR(env, NNM_E_INVALID, "cuda init: state is NULL");
    *state = NULL;
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        /* The runtime says "driver version is insufficient" also when there is
         * no driver at all; tell the two apart. */
        const char *hint = "";
        if (e == cudaErrorInsufficientDriver) {
            void *drv = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
            if (drv == NULL)
                hint = "; no NVIDIA driver is installed (libcuda.so.1 not found)";
            else
                dlclose(drv);
        }
        return CUDA_ERR(env, NNM_E_NO_DEVICE, "no CUDA device: cudaGetDeviceCount: %s (%s)%s",
                        cudaGetErrorString(e), cudaGetErrorName(e), hint);
    }
    if (n <= 0)
        return CUDA_ERR(env, NNM_E_NO_DEVICE, "no CUDA device: cudaGetDeviceCount found none");
    cuda_state *s = calloc(1, sizeof *s + (size_t)n * sizeof s->devs[0]);
    if (s == NULL)
        return CUDA_ERR(env, NNM_E_NOMEM, "cuda init: out of memory");
    s->n_devices = n;
    nnm_status st = cuda_gemm_load(env, s);
    if (st != NNM_OK) {
        free(s);
        return st;
    }
    *state = s;
    return NNM_OK;
}

static void cuda_shutdown(void *state) {
    cuda_state *s = state;
    if (s == NULL)
        return;
    cuda_gemm_shutdown(s);
    cuda_memory_shutdown(s);
    (void)cudaGetLastError();
    free(s);
}

/* ------------------------------------------------------------------------ */
/* Descriptor                                                                */
/* ------------------------------------------------------------------------ */

static const nnm_backend_vtable cuda_backend = {
    .struct_size = sizeof(nnm_backend_vtable),
    .flags = 0,
    .name = "cuda",
    .version_major = 1,
    .version_minor = 0,
    .version_patch = 0,
    .device_type = NNM_DEVICE_CUDA,
    .init = cuda_init,
    .shutdown = cuda_shutdown,
    .alloc = cuda_alloc,
    .free = cuda_free,
    .memcpy = cuda_memcpy,
    .fill = cuda_fill,
    .gemm = cuda_gemm,
    .binary = cuda_binary,
    .unary = cuda_unary,
};

static const nnm_backend_vtable *const cuda_backends[] = {&cuda_backend};

static const nnm_plugin_desc cuda_plugin = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
    .name = "cuda",
    .description = "CUDA backend: cudaMalloc memory, cuBLAS gemm, strided f32 elementwise kernels",
    .n_layers = 0,
    .n_backends = 1,
    .layers = NULL,
    .backends = cuda_backends,
    .domain = NNM_DOMAIN_NNMOD, /* nnmod's own library: the plain names */
};

NNM_PLUGIN_DEFINE(cuda_plugin)
