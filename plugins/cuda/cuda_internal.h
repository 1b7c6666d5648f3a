/* plugins/cuda/cuda_internal.h - what the cuda backend's C files share: the
 * per-context state, the error helpers, descriptor checks, and two seams,
 * the stream every launch uses (cuda_stream) and temporary device memory
 * (cuda_scratch_*).
 *
 * Private to the plugin: the plugin's link exports only nnm_plugin_entry
 * (cmake/nnm_plugin.map), so these names never leave nnm_cuda.so.
 *
 * One file per concern: cuda.c (init, shutdown, streams, the vtable),
 * cuda_memory.c (alloc, free, copies, scratch, pinned host buffers) over
 * cuda_cache.c (the caching allocator's logic, plain C), cuda_elementwise.c (fill,
 * unary, binary, where), cuda_ops.h (the other op families: cuda_<family>.c),
 * cuda_gemm.c (cuBLAS), cuda_dnn*.c (cuDNN: conv, batch norm; pooling). A
 * concern that needs state of its own hangs ONE pointer off cuda_state, owns
 * the struct behind it and frees it in a shutdown hook of its own called from
 * cuda_shutdown.
 */
#ifndef NNM_CUDA_INTERNAL_H
#define NNM_CUDA_INTERNAL_H

#include <nnmod/plugin.h>

#include "cuda_kernels.h"

#include <cublas_api.h>
#include <cuda_runtime_api.h>

#include <stdint.h>

/* set_error through the host, tolerating a missing env (returns the code). */
#define CUDA_ERR(env, code, ...)                                                         \
    (((env) != NULL && (env)->host != NULL && (env)->host->set_error != NULL)            \
         ? (env)->host->set_error((env), (code), __VA_ARGS__)                            \
         : (code))

#define CUDA_STR_(x) #x
#define CUDA_STR(x) CUDA_STR_(x)

/* cuBLAS entry points, dlsym'd by cuda_gemm_load (checked against the
 * header's declarations there). */
typedef cublasStatus_t (*cuda_cublas_create_fn)(cublasHandle_t *handle);
typedef cublasStatus_t (*cuda_cublas_destroy_fn)(cublasHandle_t handle);
typedef cublasStatus_t (*cuda_cublas_set_stream_fn)(cublasHandle_t handle, cudaStream_t stream);
typedef cublasStatus_t (*cuda_cublas_sgemm_fn)(cublasHandle_t handle, cublasOperation_t transa,
                                               cublasOperation_t transb, int m, int n, int k,
                                               const float *alpha, const float *A, int lda,
                                               const float *B, int ldb, const float *beta,
                                               float *C, int ldc);
typedef const char *(*cuda_cublas_status_string_fn)(cublasStatus_t status);

/* What the backend keeps per device, per context. */
typedef struct cuda_device {
    /* The context's stream here: non-blocking (no implicit order with the
     * legacy default stream or with other contexts), made on the device's
     * first use (cuda_stream_make), synchronised and destroyed at shutdown.
     * NULL until then. */
    cudaStream_t stream;
    int legacy_used;       /* making the stream failed once: work went to the legacy stream */
    cublasHandle_t cublas; /* NULL until the first gemm here */
} cuda_device;

struct cuda_mem_state; /* cuda_memory.c: the caching allocator and pinned host buffers */
struct cuda_dnn_state; /* cuda_dnn*.c: cuDNN (NULL until first used or absent) */

/* One per context (init makes it, shutdown frees it). */
typedef struct cuda_state {
    int n_devices;
    void *cublas_dl; /* dlopen handle of libcublas */
    cuda_cublas_create_fn cublas_create;
    cuda_cublas_destroy_fn cublas_destroy;
    cuda_cublas_set_stream_fn cublas_set_stream; /* NULL if absent: default stream only */
    cuda_cublas_sgemm_fn cublas_sgemm;
    cuda_cublas_status_string_fn cublas_status_string; /* NULL if absent */
    struct cuda_mem_state *mem;
    struct cuda_dnn_state *dnn;
    cuda_device devs[]; /* n_devices entries */
} cuda_state;

/* ---- errors and devices (cuda.c) ------------------------------------------ */

/* The status a failed CUDA runtime call maps to (NNM_E_NOMEM or
 * NNM_E_DEVICE). Clears the (non-sticky) error so the next call does not
 * see it again. */
nnm_status cuda_status_of(cudaError_t e);
/* Sets "cuda <op>: <call>: <cuda's text> (<name>)" and returns its status. */
nnm_status cuda_fail(nnm_env *env, const char *op, const char *call, cudaError_t e);
/* NNM_E_DEVICE naming op unless 0 <= id < n_devices. */
nnm_status cuda_check_id(nnm_env *env, const cuda_state *s, const char *op, int32_t id);
/* Makes device `id` (already checked) current on the calling thread. */
nnm_status cuda_use(nnm_env *env, const char *op, int32_t id);
/* Makes the context's stream on device `id` (checked) if it has none yet,
 * with device `id` made current. cuda_alloc calls it (a device's first use
 * is its first allocation), so a failure is reported there. */
nnm_status cuda_stream_make(nnm_env *env, cuda_state *s, const char *op, int32_t id);
/* cuda_stream's slow path: makes the stream; if that fails, the legacy
 * default stream (NULL) for this call, and the stream made later first waits
 * for what went there. */
cudaStream_t cuda_stream_lazy(const cuda_state *s, int32_t id);
/* The stream every kernel, copy, cuBLAS and cuDNN call on device `id`
 * (checked, and current) goes to: the context's own, non-blocking. Work on it
 * runs in issue order, so memory freed by one op and reused by the next
 * needs no synchronisation; the host sees results after a copy to the host
 * or a synchronize (cuda_synchronize). */
static inline cudaStream_t cuda_stream(const cuda_state *s, int32_t id) {
    return s->devs[id].stream != NULL ? s->devs[id].stream : cuda_stream_lazy(s, id);
}
/* The backend's `synchronize` slot: waits for the stream of device
 * `device_id` (-1: of every device this context used) and reports an
 * asynchronous failure of its work. */
nnm_status cuda_synchronize(nnm_env *env, void *state, int32_t device_id);
/* Maps a launcher's return (a cudaError_t as int; 0 is success). */
nnm_status cuda_launched(nnm_env *env, const char *op, int rc);

/* ---- descriptors (cuda.c) ------------------------------------------------- */

int cuda_is_f32(nnm_dtype dt);
/* Validates one descriptor an op reads or writes: CUDA device `id` (or, when
 * *id is -1, any valid device, which it then sets), f32, sane ndim, shape and
 * strides present, data present unless empty. Sets *numel. */
nnm_status cuda_check_desc(nnm_env *env, const cuda_state *s, const char *op, const char *what,
                           const nnm_tensor_desc *d, int32_t *id, int64_t *numel);
/* The first element, byte_offset applied (device address arithmetic only). */
static inline float *cuda_base(const nnm_tensor_desc *d) {
    return (float *)(void *)((char *)d->data + d->byte_offset);
}
/* The layout the cpu backend builds too (plugins/common/strided_layout.h). */
nnm_status cuda_layout_init(nnm_env *env, const char *op, nnm__cuda_layout *L, int32_t ndim,
                            const int64_t *shape, int32_t nops, const nnm_tensor_desc *const *ds,
                            const char *const *names);

/* ---- memory (cuda_memory.c) ----------------------------------------------- */

/* Makes s->mem (cuda_init calls it). */
nnm_status cuda_memory_init(nnm_env *env, cuda_state *s);
/* Tensor memory (the runtime caches it itself): exact size, through the
 * caching allocator's bookkeeping (cuda_cache.c, CC_EXACT), so that an
 * out-of-memory first gives the cached scratch blocks back and retries. */
nnm_status cuda_alloc(nnm_env *env, void *state, int32_t device_id, size_t bytes, void **ptr);
void cuda_free(void *state, int32_t device_id, void *ptr);
/* Stream-ordered copies; to the host (and from ordinary host memory) they
 * return once done, from cuda_host_alloc memory to a device they do not. */
nnm_status cuda_memcpy(nnm_env *env, void *state, void *dst, nnm_device dst_dev, const void *src,
                       nnm_device src_dev, size_t bytes);
/* The host_alloc / host_free slots: pinned staging memory, cached, reused
 * once the copies queued from it have run (a CUDA event per buffer). */
nnm_status cuda_host_alloc(nnm_env *env, void *state, int32_t device_id, size_t bytes, void **ptr);
void cuda_host_free(void *state, int32_t device_id, void *ptr);
/* Temporary device memory on device `id` (checked and current) for one op's
 * use on cuda_stream(s, id): a workspace, a partial sum. From the caching
 * allocator, in classes (512 B up to 1 MiB, 2 MiB above), kept per (device,
 * stream) when put back. Put it back right after the op's work is queued:
 * the next op on the same stream that gets the block runs after that work
 * (stream order), so no synchronisation is needed. Never use it on another
 * stream. *ptr is NULL when bytes is 0. NNM_E_NOMEM (with a message) when
 * the device is out of memory even after the cache was given back. */
nnm_status cuda_scratch_get(nnm_env *env, cuda_state *s, int32_t id, size_t bytes, void **ptr);
void cuda_scratch_put(cuda_state *s, int32_t id, void *ptr);
/* Frees what the memory concern keeps (cuda_shutdown calls it, after every
 * stream was synchronised and before they are destroyed). */
void cuda_memory_shutdown(cuda_state *s);

/* ---- ops ------------------------------------------------------------------ */

/* cuda_elementwise.c */
nnm_status cuda_fill(nnm_env *env, void *state, const nnm_tensor_desc *out, double value);
nnm_status cuda_binary(nnm_env *env, void *state, const nnm_binary_args *args);
nnm_status cuda_unary(nnm_env *env, void *state, const nnm_unary_args *args);

/* cuda_gemm.c: cuBLAS is dlopened at init (cuda_gemm_load), handles made
 * per device on first use, freed by cuda_gemm_shutdown. */
nnm_status cuda_gemm_load(nnm_env *env, cuda_state *s);
void cuda_gemm_shutdown(cuda_state *s);
nnm_status cuda_gemm(nnm_env *env, void *state, const nnm_gemm_args *args);

#endif /* NNM_CUDA_INTERNAL_H */
