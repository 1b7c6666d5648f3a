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
 *    valid, unique pointer that free accepts. Tensor memory (which the
 *    runtime caches) and ops' scratch go through the caching allocator
 *    (cuda_cache.c, cuda_memory.c): scratch is cached per (device, stream)
 *    and reused in stream order; an out-of-memory gives the cache back and
 *    retries once;
 *  - f32 tensors, plus what the cpu backend takes besides (i64 targets and
 *    indices, cast's five dtypes, index_select's raw elements); other dtypes
 *    give NNM_E_DTYPE. The op families beyond fill/unary/binary/gemm are
 *    listed in cuda_ops.h;
 *  - every op validates its descriptors exactly as the cpu backend does, merges
 *    dims the same way (cuda_layout_init is cpu_layout_init) and launches one
 *    kernel on the context's stream of the tensors' device (cuda_stream): one
 *    non-blocking stream per device per context, made on the device's first
 *    use, synchronised and destroyed at shutdown. Ops are asynchronous;
 *    memcpy to the host synchronises, as cudaMemcpy does, and so does memcpy
 *    from ordinary host memory; from host_alloc's pinned buffers it does not
 *    (docs/abi.md, "Streams"). `synchronize` waits for the streams;
 *  - cuBLAS is not linked: init dlopens it (libcublas.so.<major> of the
 *    toolkit this was built with, then libcublas.so, then the toolkit's own
 *    copy), so that loading nnm_cuda.so - which every context does, GPU or
 *    not - costs only the small static CUDA runtime. One cuBLAS handle per
 *    device, created on first use;
 *  - the current device of the calling thread is switched to the tensors'
 *    device when it differs (like torch.cuda.set_device), and left there.
 */
#include "cuda_internal.h"
#include "cuda_ops.h"

#include <dlfcn.h>
#include <stdint.h>
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
/* ------------------------------------------------------------------------ */
/* Streams: one per device per context                                       */
/* ------------------------------------------------------------------------ */

nnm_status cuda_stream_make(nnm_env *env, cuda_state *s, const char *op, int32_t id) {
    cuda_device *d = &s->devs[id];
    if (d->stream != NULL)
        return NNM_OK;
    nnm_status st = cuda_use(env, op, id);
    if (st != NNM_OK)
        return st;
    cudaStream_t stream = NULL;
    cudaError_t e = cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
    if (e != cudaSuccess || stream == NULL) {
        d->legacy_used = 1; /* the caller may still queue work on the legacy stream */
        return cuda_fail(env, op, "cudaStreamCreateWithFlags",
                         e != cudaSuccess ? e : cudaErrorInvalidResourceHandle);
    }
    if (d->legacy_used) {
        /* work queued on the legacy stream while this one could not be made
         * comes first: the new stream does not order itself after it */
        e = cudaStreamSynchronize(NULL);
        if (e != cudaSuccess) {
            (void)cudaStreamDestroy(stream);
            return cuda_fail(env, op, "cudaStreamSynchronize (legacy stream)", e);
        }
        d->legacy_used = 0;
    }
    d->stream = stream;
    return NNM_OK;
}

cudaStream_t cuda_stream_lazy(const cuda_state *s, int32_t id) {
    /* s is the context's own state (calloc'd, never const underneath) */
    cuda_state *m = (cuda_state *)(uintptr_t)s;
    if (cuda_stream_make(NULL, m, "stream", id) != NNM_OK) {
        m->devs[id].legacy_used = 1;
        (void)cudaGetLastError();
        return NULL;
    }
    return m->devs[id].stream;
}

/* Waits for one device's stream (made or not: the legacy stream then). */
static nnm_status cuda_sync_device(nnm_env *env, cuda_state *s, int32_t id) {
    cuda_device *d = &s->devs[id];
    if (d->stream == NULL && !d->legacy_used)
        return NNM_OK; /* never used by this context: nothing queued */
    nnm_status st = cuda_use(env, "synchronize", id);
    if (st != NNM_OK)
        return st;
    cudaError_t e = cudaStreamSynchronize(d->stream); /* NULL: the legacy stream */
    if (e != cudaSuccess)
        return CUDA_ERR(env, cuda_status_of(e),
                        "cuda synchronize: work queued on cuda:%d failed: %s (%s)", (int)id,
                        cudaGetErrorString(e), cudaGetErrorName(e));
    return NNM_OK;
}

nnm_status cuda_synchronize(nnm_env *env, void *state, int32_t device_id) {
    cuda_state *s = state;
    if (s == NULL)
        return CUDA_ERR(env, NNM_E_STATE, "cuda synchronize: backend not initialised");
    if (device_id >= 0) {
        nnm_status st = cuda_check_id(env, s, "synchronize", device_id);
        return st != NNM_OK ? st : cuda_sync_device(env, s, device_id);
    }
    if (device_id != -1)
        return CUDA_ERR(env, NNM_E_DEVICE, "cuda synchronize: no CUDA device %d", (int)device_id);
    nnm_status first = NNM_OK;
    for (int32_t i = 0; i < s->n_devices; i++) {
        nnm_status st = cuda_sync_device(first == NNM_OK ? env : NULL, s, i);
        if (st != NNM_OK && first == NNM_OK)
            first = st;
    }
    return first;
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

/* Validates one f32 descriptor (cuda_check_desc_dt, cuda_ops.c, has the
 * checks for every dtype). */
nnm_status cuda_check_desc(nnm_env *env, const cuda_state *s, const char *op, const char *what,
                           const nnm_tensor_desc *d, int32_t *id, int64_t *numel) {
    return cuda_check_desc_dt(env, s, op, what, d, CUDA_DT_F32, id, numel);
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
    if ((st = cuda_memory_init(env, s)) != NNM_OK) {
        cuda_gemm_shutdown(s);
        free(s);
        return st;
    }
    *state = s;
    return NNM_OK;
}

#include "cuda_dnn.h" /* the cuDNN concern: cuda_dnn_shutdown and its slots */

static void cuda_shutdown(void *state) {
    cuda_state *s = state;
    if (s == NULL)
        return;
    /* Everything queued finishes before anything it uses goes away. */
    for (int32_t i = 0; i < s->n_devices; i++)
        if (s->devs[i].stream != NULL || s->devs[i].legacy_used)
            (void)cuda_sync_device(NULL, s, i);
    cuda_gemm_shutdown(s);
#ifdef NNM_CUDA_HAVE_CUDNN
    cuda_dnn_shutdown(s); /* cuDNN handles: after the streams' work, before the streams go */
#endif
    cuda_memory_shutdown(s);
    for (int32_t i = 0; i < s->n_devices; i++) {
        if (s->devs[i].stream != NULL && cudaSetDevice(i) == cudaSuccess)
            (void)cudaStreamDestroy(s->devs[i].stream);
        s->devs[i].stream = NULL;
    }
    (void)cudaGetLastError();
    free(s);
}

/* ------------------------------------------------------------------------ */
/* Descriptor                                                                */
/* ------------------------------------------------------------------------ */

static const nnm_backend_vtable cuda_backend = {
    .struct_size = sizeof(nnm_backend_vtable),
    .flags = NNM_BACKEND_OPS_1_3 | NNM_BACKEND_OPS_1_5, /* unary/binary: cuda_elementwise.c */
    .name = "cuda",
    .version_major = 1,
    .version_minor = 1, /* 1.1: every backend slot, cuDNN, streams, a caching allocator */
    .version_patch = 0,
    .device_type = NNM_DEVICE_CUDA,
    .init = cuda_init,
    .shutdown = cuda_shutdown,
    .alloc = cuda_alloc,
    .free = cuda_free,
    .memcpy = cuda_memcpy,
    /* the cuDNN concern's slots (cuda_dnn.h); conv and batch norm need cudnn.h at build time */
    .pool = cuda_dnn_pool,
    .pool_backward = cuda_dnn_pool_backward,
#ifdef NNM_CUDA_HAVE_CUDNN
    .conv = cuda_dnn_conv,
    .conv_backward = cuda_dnn_conv_backward,
    .batch_norm = cuda_dnn_batch_norm,
    .batch_norm_backward = cuda_dnn_batch_norm_backward,
#endif
    .fill = cuda_fill,
    .gemm = cuda_gemm,
    /* the op families (cuda_ops.h), ABI 1.1 to 1.5 */
    .reduce = cuda_reduce,
    .log_softmax = cuda_log_softmax,
    .nll = cuda_nll,
    .nll_backward = cuda_nll_backward,
    .sgd_step = cuda_sgd_step,
    .adam_step = cuda_adam_step,
    .im2col = cuda_im2col,
    .col2im = cuda_col2im,
    .softmax = cuda_softmax,
    .where = cuda_where,
    .index_select = cuda_index_select,
    .index_add = cuda_index_add,
    .rnn_cell = cuda_rnn_cell,
    .rnn_cell_backward = cuda_rnn_cell_backward,
    .cast = cuda_cast,
    .arg_reduce = cuda_arg_reduce,
    .ctc_loss = cuda_ctc_loss,
    .ctc_loss_backward = cuda_ctc_loss_backward,
    .set_num_threads = cuda_set_num_threads,
    .embedding_bag = cuda_embedding_bag,
    .embedding_bag_backward = cuda_embedding_bag_backward,
    .layer_norm = cuda_layer_norm,
    .layer_norm_backward = cuda_layer_norm_backward,
    .binary = cuda_binary,
    .unary = cuda_unary,
    .synchronize = cuda_synchronize,
    .host_alloc = cuda_host_alloc,
    .host_free = cuda_host_free,
};

static const nnm_backend_vtable *const cuda_backends[] = {&cuda_backend};

static const nnm_plugin_desc cuda_plugin = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
    .name = "cuda",
    .description = "CUDA backend: cudaMalloc memory, cuBLAS gemm, strided elementwise ops "
                   "(every unary op, pow, where, cast), reductions, softmax, nll, SGD/Adam steps, "
                   "im2col/col2im, index_select/index_add, layer norm, recurrent cells, "
                   "embedding bags, CTC",
    .n_layers = 0,
    .n_backends = 1,
    .layers = NULL,
    .backends = cuda_backends,
    .domain = NNM_DOMAIN_NNMOD, /* nnmod's own library: the plain names */
};

NNM_PLUGIN_DEFINE(cuda_plugin)
