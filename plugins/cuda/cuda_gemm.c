/* plugins/cuda/cuda_gemm.c - gemm through cuBLAS.
 *
 * cuBLAS is not linked: init dlopens it (libcublas.so.<major> of the toolkit
 * this was built with, then libcublas.so, then the toolkit's own copy), so
 * loading nnm_cuda.so costs only the small static CUDA runtime. One handle
 * per device per context, made on first use and bound to the context's
 * stream.
 */
#include "cuda_internal.h"

#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

/* The cuBLAS this plugin was compiled against, and where the toolkit keeps it. */
#define CUDA_CUBLAS_SONAME "libcublas.so." CUDA_STR(CUBLAS_VER_MAJOR)
#ifndef NNM_CUDA_TOOLKIT_LIBDIR
#define NNM_CUDA_TOOLKIT_LIBDIR ""
#endif

#if defined(__GNUC__)
/* The dlsym'd pointers must have exactly the types the header declares. */
_Static_assert(__builtin_types_compatible_p(cuda_cublas_create_fn, __typeof__(&cublasCreate_v2)),
               "cublasCreate_v2 signature");
_Static_assert(__builtin_types_compatible_p(cuda_cublas_destroy_fn,
                                            __typeof__(&cublasDestroy_v2)),
               "cublasDestroy_v2 signature");
_Static_assert(__builtin_types_compatible_p(cuda_cublas_set_stream_fn,
                                            __typeof__(&cublasSetStream_v2)),
               "cublasSetStream_v2 signature");
_Static_assert(__builtin_types_compatible_p(cuda_cublas_sgemm_fn, __typeof__(&cublasSgemm_v2)),
               "cublasSgemm_v2 signature");
_Static_assert(__builtin_types_compatible_p(cuda_cublas_status_string_fn,
                                            __typeof__(&cublasGetStatusString)),
               "cublasGetStatusString signature");
#endif

/* dlopens cuBLAS and resolves what gemm uses; on failure sets a message
 * naming every place tried. */
nnm_status cuda_gemm_load(nnm_env *env, cuda_state *s) {
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
    void *p_stream = dlsym(s->cublas_dl, "cublasSetStream_v2");
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
    if (p_stream != NULL)
        memcpy(&s->cublas_set_stream, &p_stream, sizeof p_stream);
    return NNM_OK;
}

void cuda_gemm_shutdown(cuda_state *s) {
    for (int i = 0; i < s->n_devices; i++) {
        if (s->devs[i].cublas != NULL && cudaSetDevice(i) == cudaSuccess)
            (void)s->cublas_destroy(s->devs[i].cublas);
        s->devs[i].cublas = NULL;
    }
    if (s->cublas_dl != NULL)
        dlclose(s->cublas_dl);
    s->cublas_dl = NULL;
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

nnm_status cuda_gemm(nnm_env *env, void *state, const nnm_gemm_args *g) {
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
                           ? nnm__cuda_launch_fill(cuda_stream(s, id), &L, g->m * g->n, g->c, 0.0f)
                           : nnm__cuda_launch_unary(cuda_stream(s, id), NNM_UNARY_SCALE, &L,
                                                    g->m * g->n, g->c, g->c, g->beta);
        return cuda_launched(env, "gemm", rc);
    }
    cuda_device *dev = &s->devs[id];
    if (dev->cublas == NULL) {
        cublasStatus_t cs = s->cublas_create(&dev->cublas);
        if (cs != CUBLAS_STATUS_SUCCESS) {
            dev->cublas = NULL;
            return cuda_cublas_fail(env, s, "cublasCreate", cs);
        }
    }
    /* Bound on every call: the context's stream may be made after the handle. */
    if (s->cublas_set_stream != NULL) {
        cublasStatus_t cs = s->cublas_set_stream(dev->cublas, cuda_stream(s, id));
        if (cs != CUBLAS_STATUS_SUCCESS)
            return cuda_cublas_fail(env, s, "cublasSetStream", cs);
    } else if (cuda_stream(s, id) != NULL) {
        return CUDA_ERR(env, NNM_E_DEVICE, "cuda gemm: this cuBLAS lacks cublasSetStream_v2");
    }
    /* cuBLAS is column-major, and a row-major matrix read column-major is its
     * transpose: C^T = op(B)^T op(A)^T, so swap the operands (and m with n)
     * and keep each one's transpose flag. */
    const float alpha = g->alpha, beta = g->beta;
    cublasStatus_t cs = s->cublas_sgemm(
        dev->cublas, g->trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
        g->trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, (int)g->n, (int)g->m, (int)g->k, &alpha, g->b,
        (int)g->ldb, g->a, (int)g->lda, &beta, g->c, (int)g->ldc);
    if (cs != CUBLAS_STATUS_SUCCESS)
        return cuda_cublas_fail(env, s, "cublasSgemm", cs);
    return NNM_OK;
}
