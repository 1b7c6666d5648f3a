/* plugins/cuda/cuda.c - the CUDA backend: device memory (cudaMalloc), copies,
 * cuBLAS gemm and strided f32 elementwise kernels (kernels.cu).
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
 *    kernel on the legacy default stream of the tensors' device. Ops are
 *    asynchronous; memcpy to the host synchronises, as cudaMemcpy does;
 *  - cuBLAS is not linked: init dlopens it (libcublas.so.<major> of the
 *    toolkit this was built with, then libcublas.so, then the toolkit's own
 *    copy), so that loading nnm_cuda.so - which every context does, GPU or
 *    not - costs only the small static CUDA runtime. One cuBLAS handle per
 *    device, created on first use;
 *  - the current device of the calling thread is switched to the tensors'
 *    device when it differs (like torch.cuda.set_device), and left there.
 */
#include <nnmod/plugin.h>

#include "cuda_kernels.h"

#include <cublas_api.h>
#include <cuda_runtime_api.h>

#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* set_error through the host, tolerating a missing env (returns the code). */
#define CUDA_ERR(env, code, ...)                                                         \
    (((env) != NULL && (env)->host != NULL && (env)->host->set_error != NULL)            \
         ? (env)->host->set_error((env), (code), __VA_ARGS__)                            \
         : (code))

#define CUDA_STR_(x) #x
#define CUDA_STR(x) CUDA_STR_(x)

/* The cuBLAS this plugin was compiled against, and where the toolkit keeps it. */
#define CUDA_CUBLAS_SONAME "libcublas.so." CUDA_STR(CUBLAS_VER_MAJOR)
#ifndef NNM_CUDA_TOOLKIT_LIBDIR
#define NNM_CUDA_TOOLKIT_LIBDIR ""
#endif

/* ------------------------------------------------------------------------ */
/* State                                                                     */
/* ------------------------------------------------------------------------ */

typedef cublasStatus_t (*cuda_cublas_create_fn)(cublasHandle_t *handle);
typedef cublasStatus_t (*cuda_cublas_destroy_fn)(cublasHandle_t handle);
typedef cublasStatus_t (*cuda_cublas_sgemm_fn)(cublasHandle_t handle, cublasOperation_t transa,
                                               cublasOperation_t transb, int m, int n, int k,
                                               const float *alpha, const float *A, int lda,
                                               const float *B, int ldb, const float *beta,
                                               float *C, int ldc);
typedef const char *(*cuda_cublas_status_string_fn)(cublasStatus_t status);

#if defined(__GNUC__)
/* The dlsym'd pointers must have exactly the types the header declares. */
_Static_assert(__builtin_types_compatible_p(cuda_cublas_create_fn, __typeof__(&cublasCreate_v2)),
               "cublasCreate_v2 signature");
_Static_assert(__builtin_types_compatible_p(cuda_cublas_destroy_fn,
                                            __typeof__(&cublasDestroy_v2)),
               "cublasDestroy_v2 signature");
_Static_assert(__builtin_types_compatible_p(cuda_cublas_sgemm_fn, __typeof__(&cublasSgemm_v2)),
               "cublasSgemm_v2 signature");
_Static_assert(__builtin_types_compatible_p(cuda_cublas_status_string_fn,
                                            __typeof__(&cublasGetStatusString)),
               "cublasGetStatusString signature");
#endif

typedef struct cuda_state {
    int n_devices;
    void *cublas_dl;                            /* dlopen handle of libcublas */
    cuda_cublas_create_fn cublas_create;
    cuda_cublas_destroy_fn cublas_destroy;
    cuda_cublas_sgemm_fn cublas_sgemm;
    cuda_cublas_status_string_fn cublas_status_string; /* NULL if absent */
    cublasHandle_t handles[];                   /* n_devices entries, NULL until used */
} cuda_state;

/* ------------------------------------------------------------------------ */
/* Errors and devices                                                        */
/* ------------------------------------------------------------------------ */

/* The status a failed CUDA runtime call maps to. Clears the (non-sticky)
 * error so the next call does not see it again. */
static nnm_status cuda_status_of(cudaError_t e) {
    (void)cudaGetLastError();
    return e == cudaErrorMemoryAllocation ? NNM_E_NOMEM : NNM_E_DEVICE;
}

static nnm_status cuda_fail(nnm_env *env, const char *op, const char *call, cudaError_t e) {
    return CUDA_ERR(env, cuda_status_of(e), "cuda %s: %s: %s (%s)", op, call,
                    cudaGetErrorString(e), cudaGetErrorName(e));
}

static nnm_status cuda_check_id(nnm_env *env, const cuda_state *s, const char *op, int32_t id) {
    if (id < 0 || id >= s->n_devices)
        return CUDA_ERR(env, NNM_E_DEVICE, "cuda %s: no CUDA device %d (this machine has %d)", op,
                        (int)id, s->n_devices);
    return NNM_OK;
}

/* Makes device `id` (already checked) current on the calling thread. */
static nnm_status cuda_use(nnm_env *env, const char *op, int32_t id) {
    int cur = -1;
    if (cudaGetDevice(&cur) == cudaSuccess && cur == id)
        return NNM_OK;
    cudaError_t e = cudaSetDevice(id);
    if (e != cudaSuccess)
        return cuda_fail(env, op, "cudaSetDevice", e);
    return NNM_OK;
}

/* ------------------------------------------------------------------------ */
/* Descriptor checks (as the cpu backend's, for CUDA tensors)                */
/* ------------------------------------------------------------------------ */

static int cuda_is_f32(nnm_dtype dt) {
    return dt.code == NNM_DTYPE_FLOAT && dt.bits == 32 && dt.lanes == 1;
}

/* Validates one descriptor an op reads or writes: CUDA device `id` (or, when
 * *id is -1, any valid device, which it then sets), f32, sane ndim, shape and
 * strides present, data present unless empty. Sets *numel. */
static nnm_status cuda_check_desc(nnm_env *env, const cuda_state *s, const char *op,
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
        return CUDA_ERR(env, NNM_E_DEVICE, "cuda %s: %s tensor is on cuda:%d, the output on cuda:%d",
                        op, what, (int)d->device.id, (int)*id);
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

/* The first element, byte_offset applied (device address arithmetic only). */
static float *cuda_base(const nnm_tensor_desc *d) {
    return (float *)(void *)((char *)d->data + d->byte_offset);
}

/* The layout the cpu backend builds too (plugins/common/strided_layout.h). */
static nnm_status cuda_layout_init(nnm_env *env, const char *op, nnm__cuda_layout *L,
                                   int32_t ndim, const int64_t *shape, int32_t nops,
                                   const nnm_tensor_desc *const *ds, const char *const *names) {
    memset(L, 0, sizeof *L); /* kernels get the whole struct by value */
    return nnm_strided_layout_init(env, "cuda", op, L, ndim, shape, nops, ds, names);
}

/* ------------------------------------------------------------------------ */
/* init / shutdown                                                           */
/* ------------------------------------------------------------------------ */

/* dlopens cuBLAS and resolves what gemm uses; on failure sets a message
 * naming every place tried. */
static nnm_status cuda_load_cublas(nnm_env *env, cuda_state *s) {
    const char *names[3] = {CUDA_CUBLAS_SONAME, "libcublas.so", NULL};
    char toolkit_path[512];
    if (NNM_CUDA_TOOLKIT_LIBDIR[0] != '\0' &&
        (size_t)snprintf(toolkit_path, sizeof toolkit_path, "%s/%s", NNM_CUDA_TOOLKIT_LIBDIR,
                         CUDA_CUBLAS_SONAME) < sizeof toolkit_path)
        names[2] = toolkit_path;
    char first_err[256] = "";
    for (int i = 0; i < 3 && s->cublas_dl == NULL; i++) {
        if (names[i] == NULL)
            continue;
        s->cublas_dl = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (s->cublas_dl == NULL && first_err[0] == '\0') {
            const char *e = dlerror();
            snprintf(first_err, sizeof first_err, "%s", e != NULL ? e : "unknown error");
        }
    }
    if (s->cublas_dl == NULL)
        return CUDA_ERR(env, NNM_E_DEVICE,
                        "cuda init: cuBLAS could not be loaded (tried %s, libcublas.so%s%s): %s; "
                        "install the CUDA %d cuBLAS library or add it to LD_LIBRARY_PATH",
                        CUDA_CUBLAS_SONAME, names[2] != NULL ? ", " : "",
                        names[2] != NULL ? names[2] : "", first_err, (int)CUBLAS_VER_MAJOR);
    void *p_create = dlsym(s->cublas_dl, "cublasCreate_v2");
    void *p_destroy = dlsym(s->cublas_dl, "cublasDestroy_v2");
    void *p_sgemm = dlsym(s->cublas_dl, "cublasSgemm_v2");
    void *p_str = dlsym(s->cublas_dl, "cublasGetStatusString");
    if (p_create == NULL || p_destroy == NULL || p_sgemm == NULL) {
        dlclose(s->cublas_dl);
        s->cublas_dl = NULL;
        return CUDA_ERR(env, NNM_E_DEVICE,
                        "cuda init: the cuBLAS library found lacks cublasCreate_v2, "
                        "cublasDestroy_v2 or cublasSgemm_v2");
    }
    /* object pointer -> function pointer, as POSIX dlsym intends */
    memcpy(&s->cublas_create, &p_create, sizeof p_create);
    memcpy(&s->cublas_destroy, &p_destroy, sizeof p_destroy);
    memcpy(&s->cublas_sgemm, &p_sgemm, sizeof p_sgemm);
    if (p_str != NULL)
        memcpy(&s->cublas_status_string, &p_str, sizeof p_str);
    return NNM_OK;
}

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
    cuda_state *s = calloc(1, sizeof *s + (size_t)n * sizeof s->handles[0]);
    if (s == NULL)
        return CUDA_ERR(env, NNM_E_NOMEM, "cuda init: out of memory");
    s->n_devices = n;
    nnm_status st = cuda_load_cublas(env, s);
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
    for (int i = 0; i < s->n_devices; i++) {
        if (s->handles[i] != NULL && cudaSetDevice(i) == cudaSuccess)
            (void)s->cublas_destroy(s->handles[i]);
        s->handles[i] = NULL;
    }
    (void)cudaGetLastError();
    if (s->cublas_dl != NULL)
        dlclose(s->cublas_dl);
    free(s);
}

/* ------------------------------------------------------------------------ */
/* Memory                                                                    */
/* ------------------------------------------------------------------------ */

#define CUDA_MIN_ALLOC 256u /* what a 0-byte request gets: unique and non-NULL */

static nnm_status cuda_alloc(nnm_env *env, void *state, int32_t device_id, size_t bytes,
                             void **ptr) {
    cuda_state *s = state;
    if (ptr == NULL)
        return CUDA_ERR(env, NNM_E_INVALID, "cuda alloc: ptr is NULL");
    *ptr = NULL;
    if (s == NULL)
        return CUDA_ERR(env, NNM_E_STATE, "cuda alloc: backend not initialised");
    nnm_status st = cuda_check_id(env, s, "alloc", device_id);
    if (st == NNM_OK)
        st = cuda_use(env, "alloc", device_id);
    if (st != NNM_OK)
        return st;
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes == 0 ? CUDA_MIN_ALLOC : bytes);
    if (e != cudaSuccess || p == NULL) {
        (void)cudaGetLastError();
        if (e == cudaErrorMemoryAllocation)
            return CUDA_ERR(env, NNM_E_NOMEM,
                            "cuda alloc: out of memory allocating %zu bytes on cuda:%d", bytes,
                            (int)device_id);
        return cuda_fail(env, "alloc", "cudaMalloc", e);
    }
    *ptr = p; /* cudaMalloc aligns to at least 256 bytes */
    return NNM_OK;
}

static void cuda_free(void *state, int32_t device_id, void *ptr) {
    cuda_state *s = state;
    if (ptr == NULL || s == NULL)
        return;
    if (device_id >= 0 && device_id < s->n_devices)
        (void)cuda_use(NULL, "free", device_id);
    (void)cudaFree(ptr); /* nothing to report: free cannot fail */
    (void)cudaGetLastError();
}

/* Device type and id checks for one side of a copy. */
static nnm_status cuda_check_side(nnm_env *env, const cuda_state *s, const char *what,
                                  nnm_device dev) {
    if (dev.type == NNM_DEVICE_CPU)
        return NNM_OK;
    if (dev.type != NNM_DEVICE_CUDA)
        return CUDA_ERR(env, NNM_E_DEVICE,
                        "cuda memcpy: %s is on device type %d; the cuda backend copies between "
                        "CUDA (type %d) and CPU (type %d) memory",
                        what, (int)dev.type, (int)NNM_DEVICE_CUDA, (int)NNM_DEVICE_CPU);
    return cuda_check_id(env, s, "memcpy", dev.id);
}

static nnm_status cuda_memcpy(nnm_env *env, void *state, void *dst, nnm_device dst_dev,
                              const void *src, nnm_device src_dev, size_t bytes) {
    cuda_state *s = state;
    if (s == NULL)
        return CUDA_ERR(env, NNM_E_STATE, "cuda memcpy: backend not initialised");
    nnm_status st = cuda_check_side(env, s, "dst", dst_dev);
    if (st == NNM_OK)
        st = cuda_check_side(env, s, "src", src_dev);
    if (st != NNM_OK)
        return st;
    if (bytes == 0)
        return NNM_OK;
    if (dst == NULL || src == NULL)
        return CUDA_ERR(env, NNM_E_INVALID, "cuda memcpy: NULL %s with %zu bytes to copy",
                        dst == NULL ? "dst" : "src", bytes);
    const int dst_gpu = dst_dev.type == NNM_DEVICE_CUDA;
    const int src_gpu = src_dev.type == NNM_DEVICE_CUDA;
    cudaError_t e;
    if (!dst_gpu && !src_gpu) {
        memmove(dst, src, bytes);
        return NNM_OK;
    } else if (dst_gpu && src_gpu && dst_dev.id != src_dev.id) {
        e = cudaMemcpyPeer(dst, dst_dev.id, src, src_dev.id, bytes);
        if (e != cudaSuccess)
            return cuda_fail(env, "memcpy", "cudaMemcpyPeer", e);
        return NNM_OK;
    }
    const enum cudaMemcpyKind kind = dst_gpu && src_gpu ? cudaMemcpyDeviceToDevice
                                     : dst_gpu          ? cudaMemcpyHostToDevice
                                                        : cudaMemcpyDeviceToHost;
    if ((st = cuda_use(env, "memcpy", dst_gpu ? dst_dev.id : src_dev.id)) != NNM_OK)
        return st;
    e = cudaMemcpy(dst, src, bytes, kind);
    if (e != cudaSuccess)
        return cuda_fail(env, "memcpy", "cudaMemcpy", e);
    return NNM_OK;
}

/* ------------------------------------------------------------------------ */
/* Elementwise                                                               */
/* ------------------------------------------------------------------------ */

static nnm_status cuda_launched(nnm_env *env, const char *op, int rc) {
    if (rc == 0)
        return NNM_OK;
    return cuda_fail(env, op, "kernel launch", (cudaError_t)rc);
}

static nnm_status cuda_fill(nnm_env *env, void *state, const nnm_tensor_desc *out, double value) {
    cuda_state *s = state;
    if (s == NULL)
        return CUDA_ERR(env, NNM_E_STATE, "cuda fill: backend not initialised");
    int64_t numel = 0;
    int32_t id = -1;
    nnm_status st = cuda_check_desc(env, s, "fill", "output", out, &id, &numel);
    if (st != NNM_OK)
        return st;
    if (numel == 0)
        return NNM_OK;
    nnm__cuda_layout L;
    const nnm_tensor_desc *ds[1] = {out};
    static const char *const names[1] = {"output"};
    st = cuda_layout_init(env, "fill", &L, out->ndim, out->shape, 1, ds, names);
    if (st == NNM_OK)
        st = cuda_use(env, "fill", id);
    if (st != NNM_OK)
        return st;
    return cuda_launched(env, "fill",
                         nnm__cuda_launch_fill(&L, numel, cuda_base(out), (float)value));
}

static nnm_status cuda_binary(nnm_env *env, void *state, const nnm_binary_args *args) {
    cuda_state *s = state;
    if (args == NULL)
        return CUDA_ERR(env, NNM_E_INVALID, "cuda binary: args is NULL");
    if (args->struct_size < sizeof(nnm_binary_args))
        return CUDA_ERR(env, NNM_E_INVALID, "cuda binary: args struct_size %u < %zu",
                        (unsigned)args->struct_size, sizeof(nnm_binary_args));
    if (args->op < NNM_BINARY_ADD || args->op > NNM_BINARY_MIN)
        return CUDA_ERR(env, NNM_E_UNSUPPORTED, "cuda binary: unknown op %d", (int)args->op);
    if (s == NULL)
        return CUDA_ERR(env, NNM_E_STATE, "cuda binary: backend not initialised");
    int64_t n_out = 0, n_a = 0, n_b = 0;
    int32_t id = -1;
    nnm_status st = cuda_check_desc(env, s, "binary", "output", args->out, &id, &n_out);
    if (st == NNM_OK)
        st = cuda_check_desc(env, s, "binary", "a", args->a, &id, &n_a);
    if (st == NNM_OK)
        st = cuda_check_desc(env, s, "binary", "b", args->b, &id, &n_b);
    if (st != NNM_OK)
        return st;
    nnm__cuda_layout L;
    const nnm_tensor_desc *ds[3] = {args->out, args->a, args->b};
    static const char *const names[3] = {"output", "a", "b"};
    st = cuda_layout_init(env, "binary", &L, args->out->ndim, args->out->shape, 3, ds, names);
    if (st != NNM_OK || n_out == 0)
        return st;
    if ((st = cuda_use(env, "binary", id)) != NNM_OK)
        return st;
    return cuda_launched(env, "binary",
                         nnm__cuda_launch_binary(args->op, &L, n_out, cuda_base(args->out),
                                                 cuda_base(args->a), cuda_base(args->b)));
}

static nnm_status cuda_unary(nnm_env *env, void *state, const nnm_unary_args *args) {
    cuda_state *s = state;
    if (args == NULL)
        return CUDA_ERR(env, NNM_E_INVALID, "cuda unary: args is NULL");
    if (args->struct_size < sizeof(nnm_unary_args))
        return CUDA_ERR(env, NNM_E_INVALID, "cuda unary: args struct_size %u < %zu",
                        (unsigned)args->struct_size, sizeof(nnm_unary_args));
    if (args->op < NNM_UNARY_COPY || args->op > NNM_UNARY_SIGN)
        return CUDA_ERR(env, NNM_E_UNSUPPORTED, "cuda unary: unknown op %d", (int)args->op);
    if (s == NULL)
        return CUDA_ERR(env, NNM_E_STATE, "cuda unary: backend not initialised");
    int64_t n_out = 0, n_x = 0;
    int32_t id = -1;
    nnm_status st = cuda_check_desc(env, s, "unary", "output", args->out, &id, &n_out);
    if (st == NNM_OK)
        st = cuda_check_desc(env, s, "unary", "x", args->x, &id, &n_x);
    if (st != NNM_OK)
        return st;
    nnm__cuda_layout L;
    const nnm_tensor_desc *ds[2] = {args->out, args->x};
    static const char *const names[2] = {"output", "x"};
    st = cuda_layout_init(env, "unary", &L, args->out->ndim, args->out->shape, 2, ds, names);
    if (st != NNM_OK || n_out == 0)
        return st;
    if ((st = cuda_use(env, "unary", id)) != NNM_OK)
        return st;
    return cuda_launched(env, "unary",
                         nnm__cuda_launch_unary(args->op, &L, n_out, cuda_base(args->out),
                                                cuda_base(args->x), (float)args->alpha));
}

/* ------------------------------------------------------------------------ */
/* gemm                                                                      */
/* ------------------------------------------------------------------------ */

static int64_t cuda_max1(int64_t x) {
    return x > 1 ? x : 1;
}

/* The device `p` lives on, or an error if it is not device memory (a host
 * pointer handed to cuBLAS would fault asynchronously and poison the
 * context, so it is refused here). */
static nnm_status cuda_ptr_device(nnm_env *env, const cuda_state *s, const char *what,
                                  const void *p, int32_t *id) {
    struct cudaPointerAttributes at;
    memset(&at, 0, sizeof at);
    cudaError_t e = cudaPointerGetAttributes(&at, p);
    if (e != cudaSuccess)
        return cuda_fail(env, "gemm", "cudaPointerGetAttributes", e);
    if (at.type != cudaMemoryTypeDevice && at.type != cudaMemoryTypeManaged)
        return CUDA_ERR(env, NNM_E_DEVICE, "cuda gemm: %s is not CUDA device memory", what);
    if (*id < 0) {
        nnm_status st = cuda_check_id(env, s, "gemm", at.device);
        if (st != NNM_OK)
            return st;
        *id = at.device;
    } else if (at.device != *id) {
        return CUDA_ERR(env, NNM_E_DEVICE, "cuda gemm: %s is on cuda:%d, c on cuda:%d", what,
                        at.device, (int)*id);
    }
    return NNM_OK;
}

static nnm_status cuda_cublas_fail(nnm_env *env, const cuda_state *s, const char *call,
                                   cublasStatus_t cs) {
    const char *msg = s->cublas_status_string != NULL ? s->cublas_status_string(cs) : NULL;
    return CUDA_ERR(env, cs == CUBLAS_STATUS_ALLOC_FAILED ? NNM_E_NOMEM : NNM_E_DEVICE,
                    "cuda gemm: %s: cuBLAS status %d (%s)", call, (int)cs,
                    msg != NULL ? msg : "no description");
}

static nnm_status cuda_gemm(nnm_env *env, void *state, const nnm_gemm_args *g) {
    cuda_state *s = state;
    if (g == NULL)
        return CUDA_ERR(env, NNM_E_INVALID, "cuda gemm: args is NULL");
    if (g->struct_size < sizeof(nnm_gemm_args))
        return CUDA_ERR(env, NNM_E_INVALID, "cuda gemm: args struct_size %u < %zu",
                        (unsigned)g->struct_size, sizeof(nnm_gemm_args));
    if (s == NULL)
        return CUDA_ERR(env, NNM_E_STATE, "cuda gemm: backend not initialised");
    if (g->m < 0 || g->n < 0 || g->k < 0)
        return CUDA_ERR(env, NNM_E_SHAPE, "cuda gemm: negative size m=%lld n=%lld k=%lld",
                        (long long)g->m, (long long)g->n, (long long)g->k);
    if (g->m == 0 || g->n == 0)
        return NNM_OK; /* C is empty */
    /* Stored shapes (row-major): A is m x k, or k x m when transposed; B is
     * k x n, or n x k when transposed; C is m x n. */
    const int64_t a_cols = g->trans_a ? g->m : g->k;
    const int64_t b_cols = g->trans_b ? g->k : g->n;
    if (g->c == NULL)
        return CUDA_ERR(env, NNM_E_INVALID, "cuda gemm: c is NULL");
    if (g->ldc < cuda_max1(g->n))
        return CUDA_ERR(env, NNM_E_INVALID, "cuda gemm: ldc=%lld < n=%lld", (long long)g->ldc,
                        (long long)g->n);
    if (g->k > 0) {
        if (g->a == NULL || g->b == NULL)
            return CUDA_ERR(env, NNM_E_INVALID, "cuda gemm: %s is NULL",
                            g->a == NULL ? "a" : "b");
        if (g->lda < cuda_max1(a_cols))
            return CUDA_ERR(env, NNM_E_INVALID, "cuda gemm: lda=%lld < %lld (trans_a=%d)",
                            (long long)g->lda, (long long)cuda_max1(a_cols),
                            (int)(g->trans_a != 0));
        if (g->ldb < cuda_max1(b_cols))
            return CUDA_ERR(env, NNM_E_INVALID, "cuda gemm: ldb=%lld < %lld (trans_b=%d)",
                            (long long)g->ldb, (long long)cuda_max1(b_cols),
                            (int)(g->trans_b != 0));
    }
    if (g->m > INT_MAX || g->n > INT_MAX || g->k > INT_MAX || g->lda > INT_MAX ||
        g->ldb > INT_MAX || g->ldc > INT_MAX)
        return CUDA_ERR(env, NNM_E_LIMIT,
                        "cuda gemm: sizes or leading dims above %d are not supported", INT_MAX);
    int32_t id = -1;
    nnm_status st = cuda_ptr_device(env, s, "c", g->c, &id);
    if (st == NNM_OK && g->k > 0)
        st = cuda_ptr_device(env, s, "a", g->a, &id);
    if (st == NNM_OK && g->k > 0)
        st = cuda_ptr_device(env, s, "b", g->b, &id);
    if (st == NNM_OK)
        st = cuda_use(env, "gemm", id);
    if (st != NNM_OK)
        return st;
    if (g->k == 0) {
        /* op(A) @ op(B) is all zeros: C = beta * C (beta 0 overwrites, like
         * BLAS), as an m x n view of C with row stride ldc. */
        nnm__cuda_layout L;
        memset(&L, 0, sizeof L);
        L.ndim = 2;
        L.nops = 2;
        L.shape[0] = g->m;
        L.shape[1] = g->n;
        L.strides[0][0] = L.strides[1][0] = g->ldc;
        L.strides[0][1] = L.strides[1][1] = 1;
        const int rc = g->beta == 0.0f
                           ? nnm__cuda_launch_fill(&L, g->m * g->n, g->c, 0.0f)
                           : nnm__cuda_launch_unary(NNM_UNARY_SCALE, &L, g->m * g->n, g->c,
                                                    g->c, g->beta);
        return cuda_launched(env, "gemm", rc);
    }
    if (s->handles[id] == NULL) {
        cublasStatus_t cs = s->cublas_create(&s->handles[id]);
        if (cs != CUBLAS_STATUS_SUCCESS) {
            s->handles[id] = NULL;
            return cuda_cublas_fail(env, s, "cublasCreate", cs);
        }
    }
    /* cuBLAS is column-major, and a row-major matrix read column-major is its
     * transpose: C^T = op(B)^T op(A)^T, so swap the operands (and m with n)
     * and keep each one's transpose flag. */
    const float alpha = g->alpha, beta = g->beta;
    cublasStatus_t cs = s->cublas_sgemm(
        s->handles[id], g->trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
        g->trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, (int)g->n, (int)g->m, (int)g->k, &alpha, g->b,
        (int)g->ldb, g->a, (int)g->lda, &beta, g->c, (int)g->ldc);
    if (cs != CUBLAS_STATUS_SUCCESS)
        return cuda_cublas_fail(env, s, "cublasSgemm", cs);
    return NNM_OK;
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
