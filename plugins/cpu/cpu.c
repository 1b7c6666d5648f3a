/* plugins/cpu/cpu.c - the CPU backend: host memory, OpenBLAS gemm, and strided
 * f32 elementwise kernels.
 *
 * Contract (see nnm_backend_vtable in nnmod/plugin.h):
 *  - memory is 64-byte aligned host memory from aligned_alloc; alloc of 0 bytes
 *    returns a valid, unique pointer that free accepts;
 *  - only f32 tensors are supported; other dtypes give NNM_E_DTYPE;
 *  - every op validates its descriptors and reports through host->set_error;
 *  - ops never allocate and never recurse: N-d strided tensors are walked with
 *    a fixed-size index (ndim <= NNM_MAX_DIMS) after merging the dimensions
 *    that are contiguous in every operand, so the common cases (contiguous,
 *    bias broadcast along rows, scalar broadcast) reduce to 1-d or 2-d loops
 *    with unit-stride inner loops the compiler vectorises.
 */
#include <nnmod/plugin.h>

#include <cblas.h>

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CPU_ALIGN 64u

/* set_error through the host, tolerating a missing env (returns the code). */
#define CPU_ERR(env, code, ...)                                                          \
    (((env) != NULL && (env)->host != NULL && (env)->host->set_error != NULL)            \
         ? (env)->host->set_error((env), (code), __VA_ARGS__)                            \
         : (code))

/* ------------------------------------------------------------------------ */
/* Descriptor checks                                                         */
/* ------------------------------------------------------------------------ */

static int cpu_is_f32(nnm_dtype dt) {
    return dt.code == NNM_DTYPE_FLOAT && dt.bits == 32 && dt.lanes == 1;
}

/* Validates one descriptor an op reads or writes: CPU, f32, sane ndim, shape
 * and strides present, data present unless empty. Sets *numel. */
static nnm_status cpu_check_desc(nnm_env *env, const char *op, const char *what,
                                 const nnm_tensor_desc *d, int64_t *numel) {
    if (d == NULL)
        return CPU_ERR(env, NNM_E_INVALID, "cpu %s: %s tensor is NULL", op, what);
    if (d->device.type != NNM_DEVICE_CPU)
        return CPU_ERR(env, NNM_E_DEVICE,
                       "cpu %s: %s tensor is on device type %d, the cpu backend handles "
                       "only CPU tensors (type %d)",
                       op, what, (int)d->device.type, (int)NNM_DEVICE_CPU);
    if (!cpu_is_f32(d->dtype))
        return CPU_ERR(env, NNM_E_DTYPE,
                       "cpu %s: %s tensor has dtype (code %u, bits %u, lanes %u); the cpu "
                       "backend supports only f32 for now",
                       op, what, (unsigned)d->dtype.code, (unsigned)d->dtype.bits,
                       (unsigned)d->dtype.lanes);
    if (d->ndim < 0 || d->ndim > NNM_MAX_DIMS)
        return CPU_ERR(env, NNM_E_LIMIT, "cpu %s: %s tensor has ndim %d (0..%d allowed)", op,
                       what, (int)d->ndim, NNM_MAX_DIMS);
    if (d->ndim > 0 && (d->shape == NULL || d->strides == NULL))
        return CPU_ERR(env, NNM_E_INVALID, "cpu %s: %s tensor has NULL shape or strides", op,
                       what);
    if (d->byte_offset % sizeof(float) != 0)
        return CPU_ERR(env, NNM_E_INVALID,
                       "cpu %s: %s tensor byte_offset %llu is not a multiple of 4", op, what,
                       (unsigned long long)d->byte_offset);
    int64_t n = 1;
    for (int32_t i = 0; i < d->ndim; i++) {
        int64_t s = d->shape[i];
        if (s < 0)
            return CPU_ERR(env, NNM_E_SHAPE, "cpu %s: %s tensor has negative size %lld in dim %d",
                           op, what, (long long)s, (int)i);
        if (s != 0 && n > INT64_MAX / s)
            return CPU_ERR(env, NNM_E_LIMIT, "cpu %s: %s tensor has too many elements", op, what);
        n *= s;
    }
    if (n > 0 && d->data == NULL)
        return CPU_ERR(env, NNM_E_INVALID, "cpu %s: %s tensor has NULL data", op, what);
    *numel = n;
    return NNM_OK;
}

/* The first element, byte_offset applied. */
static float *cpu_base(const nnm_tensor_desc *d) {
    return (float *)(void *)((char *)d->data + d->byte_offset);
}

/* ------------------------------------------------------------------------ */
/* The strided walker                                                        */
/* ------------------------------------------------------------------------ */

#define CPU_MAX_OPS 3

/* Up to three operands iterated together over one shape. After cpu_layout()
 * dims of size 1 are dropped and dims contiguous in every operand merged; the
 * last dim (ndim-1) is the inner loop. ndim 0 after merging means one element. */
typedef struct cpu_layout {
    int32_t ndim;
    int32_t nops;
    int64_t shape[NNM_MAX_DIMS];
    int64_t strides[CPU_MAX_OPS][NNM_MAX_DIMS];
} cpu_layout;

/* Builds the layout of `shape` (ndim dims) with each operand's strides. An
 * operand whose size in a dim is 1 while the shape's is not is read with
 * stride 0 there (broadcast); other mismatches give NNM_E_SHAPE. */
static nnm_status cpu_layout_init(nnm_env *env, const char *op, cpu_layout *L, int32_t ndim,
                                  const int64_t *shape, int32_t nops,
                                  const nnm_tensor_desc *const *ds, const char *const *names) {
    L->ndim = 0;
    L->nops = nops;
    for (int32_t k = 0; k < nops; k++) {
        if (ds[k]->ndim != ndim)
            return CPU_ERR(env, NNM_E_SHAPE, "cpu %s: %s tensor has %d dims, output has %d", op,
                           names[k], (int)ds[k]->ndim, (int)ndim);
        for (int32_t i = 0; i < ndim; i++) {
            if (ds[k]->shape[i] != shape[i] && ds[k]->shape[i] != 1)
                return CPU_ERR(env, NNM_E_SHAPE,
                               "cpu %s: %s tensor has size %lld in dim %d, output has %lld", op,
                               names[k], (long long)ds[k]->shape[i], (int)i,
                               (long long)shape[i]);
        }
    }
    for (int32_t i = 0; i < ndim; i++) {
        if (shape[i] == 1)
            continue; /* a size-1 dim never moves any index */
        int32_t j = L->ndim;
        int64_t st[CPU_MAX_OPS];
        for (int32_t k = 0; k < nops; k++)
            st[k] = ds[k]->shape[i] == 1 ? 0 : ds[k]->strides[i];
        /* merge into the previous kept dim when every operand is contiguous across both */
        if (j > 0) {
            int mergeable = 1;
            for (int32_t k = 0; k < nops; k++)
                if (L->strides[k][j - 1] != st[k] * shape[i])
                    mergeable = 0;
            if (mergeable) {
                L->shape[j - 1] *= shape[i];
                for (int32_t k = 0; k < nops; k++)
                    L->strides[k][j - 1] = st[k];
                continue;
            }
        }
        L->shape[j] = shape[i];
        for (int32_t k = 0; k < nops; k++)
            L->strides[k][j] = st[k];
        L->ndim = j + 1;
    }
    return NNM_OK;
}

/* Walks every inner row of a layout: for each combination of the outer
 * indices, calls BODY with p[k] pointing at operand k's first element of the
 * row, `n` the inner length and `s[k]` the inner strides. No recursion: a
 * fixed index array carried like an odometer. */
#define CPU_WALK(L, base, BODY)                                                          \
    do {                                                                                 \
        const cpu_layout *L_ = (L);                                                      \
        int64_t idx_[NNM_MAX_DIMS] = {0};                                                \
        float *p[CPU_MAX_OPS];                                                           \
        int64_t s[CPU_MAX_OPS];                                                          \
        int64_t n = L_->ndim > 0 ? L_->shape[L_->ndim - 1] : 1;                          \
        for (int32_t k_ = 0; k_ < L_->nops; k_++) {                                      \
            p[k_] = (base)[k_];                                                          \
            s[k_] = L_->ndim > 0 ? L_->strides[k_][L_->ndim - 1] : 0;                    \
        }                                                                                \
        for (;;) {                                                                       \
            BODY;                                                                        \
            int32_t d_ = L_->ndim - 2;                                                   \
            for (; d_ >= 0; d_--) {                                                      \
                for (int32_t k_ = 0; k_ < L_->nops; k_++)                                \
                    p[k_] += L_->strides[k_][d_];                                        \
                if (++idx_[d_] < L_->shape[d_])                                          \
                    break;                                                               \
                for (int32_t k_ = 0; k_ < L_->nops; k_++)                                \
                    p[k_] -= L_->strides[k_][d_] * L_->shape[d_];                        \
                idx_[d_] = 0;                                                            \
            }                                                                            \
            if (d_ < 0)                                                                  \
                break;                                                                   \
        }                                                                                \
    } while (0)

/* ------------------------------------------------------------------------ */
/* init / shutdown / memory                                                  */
/* ------------------------------------------------------------------------ */

/* The backend keeps no state of its own: OpenBLAS manages its thread pool. */
static nnm_status cpu_init(nnm_env *env, void **state) {
    if (state == NULL)
        return CPU_ERR(env, NNM_E_INVALID, "cpu init: state is NULL");
    *state = NULL;
    return NNM_OK;
}

static void cpu_shutdown(void *state) {
    (void)state;
}

static nnm_status cpu_alloc(nnm_env *env, void *state, int32_t device_id, size_t bytes,
                            void **ptr) {
    (void)state;
    if (ptr == NULL)
        return CPU_ERR(env, NNM_E_INVALID, "cpu alloc: ptr is NULL");
    *ptr = NULL;
    if (device_id != 0)
        return CPU_ERR(env, NNM_E_DEVICE, "cpu alloc: no CPU device %d (only 0)", (int)device_id);
    if (bytes > SIZE_MAX - (CPU_ALIGN - 1))
        return CPU_ERR(env, NNM_E_NOMEM, "cpu alloc: %zu bytes is too large", bytes);
    /* aligned_alloc wants a multiple of the alignment; 0 bytes gets one line so
     * the pointer is unique and non-NULL. */
    size_t rounded = bytes == 0 ? CPU_ALIGN : (bytes + CPU_ALIGN - 1) & ~(size_t)(CPU_ALIGN - 1);
    void *p = aligned_alloc(CPU_ALIGN, rounded);
    if (p == NULL)
        return CPU_ERR(env, NNM_E_NOMEM, "cpu alloc: out of memory allocating %zu bytes", bytes);
    *ptr = p;
    return NNM_OK;
}

static void cpu_free(void *state, int32_t device_id, void *ptr) {
    (void)state;
    (void)device_id;
    free(ptr);
}

static nnm_status cpu_memcpy(nnm_env *env, void *state, void *dst, nnm_device dst_dev,
                             const void *src, nnm_device src_dev, size_t bytes) {
    (void)state;
    if (dst_dev.type != NNM_DEVICE_CPU || src_dev.type != NNM_DEVICE_CPU)
        return CPU_ERR(env, NNM_E_DEVICE,
                       "cpu memcpy: copies only between CPU memory (type %d); got dst device "
                       "type %d, src device type %d",
                       (int)NNM_DEVICE_CPU, (int)dst_dev.type, (int)src_dev.type);
    if (bytes == 0)
        return NNM_OK;
    if (dst == NULL || src == NULL)
        return CPU_ERR(env, NNM_E_INVALID, "cpu memcpy: NULL %s with %zu bytes to copy",
                       dst == NULL ? "dst" : "src", bytes);
    memmove(dst, src, bytes); /* tolerate overlap: callers never need to care */
    return NNM_OK;
}

static nnm_status cpu_fill(nnm_env *env, void *state, const nnm_tensor_desc *out, double value) {
    (void)state;
    int64_t numel = 0;
    nnm_status st = cpu_check_desc(env, "fill", "output", out, &numel);
    if (st != NNM_OK)
        return st;
    if (numel == 0)
        return NNM_OK;
    const float v = (float)value;
    cpu_layout L;
    const nnm_tensor_desc *ds[1] = {out};
    static const char *const names[1] = {"output"};
    st = cpu_layout_init(env, "fill", &L, out->ndim, out->shape, 1, ds, names);
    if (st != NNM_OK)
        return st;
    float *base[1] = {cpu_base(out)};
    CPU_WALK(&L, base, {
        float *o = p[0];
        if (s[0] == 1) {
            for (int64_t i = 0; i < n; i++)
                o[i] = v;
        } else {
            for (int64_t i = 0; i < n; i++)
                o[i * s[0]] = v;
        }
    });
    return NNM_OK;
}

/* ------------------------------------------------------------------------ */
/* gemm                                                                      */
/* ------------------------------------------------------------------------ */

static int64_t cpu_max1(int64_t x) {
    return x > 1 ? x : 1;
}

static nnm_status cpu_gemm(nnm_env *env, void *state, const nnm_gemm_args *g) {
    (void)state;
    if (g == NULL)
        return CPU_ERR(env, NNM_E_INVALID, "cpu gemm: args is NULL");
    if (g->struct_size < sizeof(nnm_gemm_args))
        return CPU_ERR(env, NNM_E_INVALID, "cpu gemm: args struct_size %u < %zu",
                       (unsigned)g->struct_size, sizeof(nnm_gemm_args));
    if (g->m < 0 || g->n < 0 || g->k < 0)
        return CPU_ERR(env, NNM_E_SHAPE, "cpu gemm: negative size m=%lld n=%lld k=%lld",
                       (long long)g->m, (long long)g->n, (long long)g->k);
    if (g->m == 0 || g->n == 0)
        return NNM_OK; /* C is empty */
    /* Stored shapes (row-major): A is m x k, or k x m when transposed; B is
     * k x n, or n x k when transposed; C is m x n. */
    const int64_t a_cols = g->trans_a ? g->m : g->k;
    const int64_t b_cols = g->trans_b ? g->k : g->n;
    if (g->c == NULL)
        return CPU_ERR(env, NNM_E_INVALID, "cpu gemm: c is NULL");
    if (g->ldc < cpu_max1(g->n))
        return CPU_ERR(env, NNM_E_INVALID, "cpu gemm: ldc=%lld < n=%lld", (long long)g->ldc,
                       (long long)g->n);
    if (g->k > 0) {
        if (g->a == NULL || g->b == NULL)
            return CPU_ERR(env, NNM_E_INVALID, "cpu gemm: %s is NULL", g->a == NULL ? "a" : "b");
        if (g->lda < cpu_max1(a_cols))
            return CPU_ERR(env, NNM_E_INVALID, "cpu gemm: lda=%lld < %lld (trans_a=%d)",
                           (long long)g->lda, (long long)cpu_max1(a_cols), (int)(g->trans_a != 0));
        if (g->ldb < cpu_max1(b_cols))
            return CPU_ERR(env, NNM_E_INVALID, "cpu gemm: ldb=%lld < %lld (trans_b=%d)",
                           (long long)g->ldb, (long long)cpu_max1(b_cols), (int)(g->trans_b != 0));
    }
    if (g->m > INT_MAX || g->n > INT_MAX || g->k > INT_MAX || g->lda > INT_MAX ||
        g->ldb > INT_MAX || g->ldc > INT_MAX)
        return CPU_ERR(env, NNM_E_LIMIT,
                       "cpu gemm: sizes or leading dims above %d are not supported by this "
                       "OpenBLAS build",
                       INT_MAX);
    if (g->k == 0) {
        /* op(A) @ op(B) is all zeros: C = beta * C (beta 0 overwrites, like BLAS) */
        for (int64_t i = 0; i < g->m; i++) {
            float *row = g->c + i * g->ldc;
            for (int64_t j = 0; j < g->n; j++)
                row[j] = g->beta == 0.0f ? 0.0f : g->beta * row[j];
        }
        return NNM_OK;
    }
    cblas_sgemm(CblasRowMajor, g->trans_a ? CblasTrans : CblasNoTrans,
                g->trans_b ? CblasTrans : CblasNoTrans, (int)g->m, (int)g->n, (int)g->k, g->alpha,
                g->a, (int)g->lda, g->b, (int)g->ldb, g->beta, g->c, (int)g->ldc);
    return NNM_OK;
}

/* ------------------------------------------------------------------------ */
/* Elementwise                                                               */
/* ------------------------------------------------------------------------ */

/* torch.maximum / torch.minimum: NaN in either input gives NaN. */
static inline float cpu_maxf(float a, float b) {
    return a != a ? a : (b != b ? b : (a > b ? a : b));
}
static inline float cpu_minf(float a, float b) {
    return a != a ? a : (b != b ? b : (a < b ? a : b));
}

#define CPU_ADD(x, y) ((x) + (y))
#define CPU_SUB(x, y) ((x) - (y))
#define CPU_MUL(x, y) ((x) * (y))
#define CPU_DIV(x, y) ((x) / (y))
#define CPU_MAX(x, y) cpu_maxf((x), (y))
#define CPU_MIN(x, y) cpu_minf((x), (y))

/* One inner row of a binary op; p[0]=out, p[1]=a, p[2]=b. The unit-stride
 * and broadcast-scalar cases get their own loops so they vectorise. */
#define CPU_BINARY_ROW(F)                                                                \
    do {                                                                                 \
        float *o = p[0];                                                                 \
        const float *x = p[1], *y = p[2];                                                \
        if (s[0] == 1 && s[1] == 1 && s[2] == 1) {                                       \
            for (int64_t i = 0; i < n; i++)                                              \
                o[i] = F(x[i], y[i]);                                                    \
        } else if (s[0] == 1 && s[1] == 1 && s[2] == 0) {                                \
            const float yv = y[0];                                                       \
            for (int64_t i = 0; i < n; i++)                                              \
                o[i] = F(x[i], yv);                                                      \
        } else if (s[0] == 1 && s[1] == 0 && s[2] == 1) {                                \
            const float xv = x[0];                                                       \
            for (int64_t i = 0; i < n; i++)                                              \
                o[i] = F(xv, y[i]);                                                      \
        } else {                                                                         \
            for (int64_t i = 0; i < n; i++)                                              \
                o[i * s[0]] = F(x[i * s[1]], y[i * s[2]]);                               \
        }                                                                                \
    } while (0)

static nnm_status cpu_binary(nnm_env *env, void *state, const nnm_binary_args *args) {
    (void)state;
    if (args == NULL)
        return CPU_ERR(env, NNM_E_INVALID, "cpu binary: args is NULL");
    if (args->struct_size < sizeof(nnm_binary_args))
        return CPU_ERR(env, NNM_E_INVALID, "cpu binary: args struct_size %u < %zu",
                       (unsigned)args->struct_size, sizeof(nnm_binary_args));
    if (args->op < NNM_BINARY_ADD || args->op > NNM_BINARY_MIN)
        return CPU_ERR(env, NNM_E_UNSUPPORTED, "cpu binary: unknown op %d", (int)args->op);
    int64_t n_out = 0, n_a = 0, n_b = 0;
    nnm_status st = cpu_check_desc(env, "binary", "output", args->out, &n_out);
    if (st == NNM_OK)
        st = cpu_check_desc(env, "binary", "a", args->a, &n_a);
    if (st == NNM_OK)
        st = cpu_check_desc(env, "binary", "b", args->b, &n_b);
    if (st != NNM_OK)
        return st;
    cpu_layout L;
    const nnm_tensor_desc *ds[3] = {args->out, args->a, args->b};
    static const char *const names[3] = {"output", "a", "b"};
    st = cpu_layout_init(env, "binary", &L, args->out->ndim, args->out->shape, 3, ds, names);
    if (st != NNM_OK || n_out == 0)
        return st;
    float *base[3] = {cpu_base(args->out), cpu_base(args->a), cpu_base(args->b)};
    switch (args->op) {
    case NNM_BINARY_ADD: CPU_WALK(&L, base, CPU_BINARY_ROW(CPU_ADD)); break;
    case NNM_BINARY_SUB: CPU_WALK(&L, base, CPU_BINARY_ROW(CPU_SUB)); break;
    case NNM_BINARY_MUL: CPU_WALK(&L, base, CPU_BINARY_ROW(CPU_MUL)); break;
    case NNM_BINARY_DIV: CPU_WALK(&L, base, CPU_BINARY_ROW(CPU_DIV)); break;
    case NNM_BINARY_MAX: CPU_WALK(&L, base, CPU_BINARY_ROW(CPU_MAX)); break;
    case NNM_BINARY_MIN: CPU_WALK(&L, base, CPU_BINARY_ROW(CPU_MIN)); break;
    default: break; /* checked above */
    }
    return NNM_OK;
}

static inline float cpu_relu(float x) {
    return x < 0.0f ? 0.0f : x; /* NaN stays NaN, like torch.relu */
}
static inline float cpu_sigmoid(float x) {
    /* exp of a non-positive argument only, so nothing overflows */
    if (x >= 0.0f)
        return 1.0f / (1.0f + expf(-x));
    const float e = expf(x);
    return e / (1.0f + e);
}

#define CPU_U_COPY(x) (x)
#define CPU_U_NEG(x) (-(x))
#define CPU_U_RELU(x) cpu_relu(x)
#define CPU_U_EXP(x) expf(x)
#define CPU_U_LOG(x) logf(x)
#define CPU_U_TANH(x) tanhf(x)
#define CPU_U_SIGMOID(x) cpu_sigmoid(x)
#define CPU_U_SQRT(x) sqrtf(x)
#define CPU_U_ABS(x) fabsf(x)
#define CPU_U_SCALE(x) (alpha * (x))

/* One inner row of a unary op; p[0]=out, p[1]=x. */
#define CPU_UNARY_ROW(F)                                                                 \
    do {                                                                                 \
        float *o = p[0];                                                                 \
        const float *x = p[1];                                                           \
        if (s[0] == 1 && s[1] == 1) {                                                    \
            for (int64_t i = 0; i < n; i++)                                              \
                o[i] = F(x[i]);                                                          \
        } else {                                                                         \
            for (int64_t i = 0; i < n; i++)                                              \
                o[i * s[0]] = F(x[i * s[1]]);                                            \
        }                                                                                \
    } while (0)

static nnm_status cpu_unary(nnm_env *env, void *state, const nnm_unary_args *args) {
    (void)state;
    if (args == NULL)
        return CPU_ERR(env, NNM_E_INVALID, "cpu unary: args is NULL");
    if (args->struct_size < sizeof(nnm_unary_args))
        return CPU_ERR(env, NNM_E_INVALID, "cpu unary: args struct_size %u < %zu",
                       (unsigned)args->struct_size, sizeof(nnm_unary_args));
    if (args->op < NNM_UNARY_COPY || args->op > NNM_UNARY_SCALE)
        return CPU_ERR(env, NNM_E_UNSUPPORTED, "cpu unary: unknown op %d", (int)args->op);
    int64_t n_out = 0, n_x = 0;
    nnm_status st = cpu_check_desc(env, "unary", "output", args->out, &n_out);
    if (st == NNM_OK)
        st = cpu_check_desc(env, "unary", "x", args->x, &n_x);
    if (st != NNM_OK)
        return st;
    cpu_layout L;
    const nnm_tensor_desc *ds[2] = {args->out, args->x};
    static const char *const names[2] = {"output", "x"};
    st = cpu_layout_init(env, "unary", &L, args->out->ndim, args->out->shape, 2, ds, names);
    if (st != NNM_OK || n_out == 0)
        return st;
    float *base[2] = {cpu_base(args->out), cpu_base(args->x)};
    const float alpha = (float)args->alpha;
    switch (args->op) {
    case NNM_UNARY_COPY: CPU_WALK(&L, base, CPU_UNARY_ROW(CPU_U_COPY)); break;
    case NNM_UNARY_NEG: CPU_WALK(&L, base, CPU_UNARY_ROW(CPU_U_NEG)); break;
    case NNM_UNARY_RELU: CPU_WALK(&L, base, CPU_UNARY_ROW(CPU_U_RELU)); break;
    case NNM_UNARY_EXP: CPU_WALK(&L, base, CPU_UNARY_ROW(CPU_U_EXP)); break;
    case NNM_UNARY_LOG: CPU_WALK(&L, base, CPU_UNARY_ROW(CPU_U_LOG)); break;
    case NNM_UNARY_TANH: CPU_WALK(&L, base, CPU_UNARY_ROW(CPU_U_TANH)); break;
    case NNM_UNARY_SIGMOID: CPU_WALK(&L, base, CPU_UNARY_ROW(CPU_U_SIGMOID)); break;
    case NNM_UNARY_SQRT: CPU_WALK(&L, base, CPU_UNARY_ROW(CPU_U_SQRT)); break;
    case NNM_UNARY_ABS: CPU_WALK(&L, base, CPU_UNARY_ROW(CPU_U_ABS)); break;
    case NNM_UNARY_SCALE: CPU_WALK(&L, base, CPU_UNARY_ROW(CPU_U_SCALE)); break;
    default: break; /* checked above */
    }
    return NNM_OK;
}

/* ------------------------------------------------------------------------ */
/* Descriptor                                                                */
/* ------------------------------------------------------------------------ */

static const nnm_backend_vtable cpu_backend = {
    .struct_size = sizeof(nnm_backend_vtable),
    .flags = 0,
    .name = "cpu",
    .version_major = 1,
    .version_minor = 0,
    .version_patch = 0,
    .device_type = NNM_DEVICE_CPU,
    .init = cpu_init,
    .shutdown = cpu_shutdown,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .memcpy = cpu_memcpy,
    .fill = cpu_fill,
    .gemm = cpu_gemm,
    .binary = cpu_binary,
    .unary = cpu_unary,
};

static const nnm_backend_vtable *const cpu_backends[] = {&cpu_backend};

static const nnm_plugin_desc cpu_plugin = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
    .name = "cpu",
    .description = "CPU backend: host memory, OpenBLAS gemm, strided f32 elementwise ops",
    .n_layers = 0,
    .n_backends = 1,
    .layers = NULL,
    .backends = cpu_backends,
};

NNM_PLUGIN_DEFINE(cpu_plugin)
