/* tests/layers/test_cpu_backend.c - the cpu backend plugin driven directly.
 *
 * The public API reaches the backend only through the ops layers use, so this
 * suite dlopens nnm_cpu.so, performs the entry handshake itself and calls the
 * backend vtable with a minimal host table (only set_error, which is all a
 * backend uses). Every kernel is checked against a naive double-precision
 * reference, including strided, broadcast and transposed operands.
 */
#include <CUnit/Basic.h>

#include <nnmod/plugin.h>

#include <dlfcn.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef NNM_TEST_PLUGIN_DIR
#error "NNM_TEST_PLUGIN_DIR must name the directory holding nnm_cpu.so"
#endif

/* ------------------------------------------------------------------------ */
/* A minimal host                                                            */
/* ------------------------------------------------------------------------ */

static char g_msg[1024];
static int g_n_errors;

static nnm_status fake_set_error(nnm_env *env, nnm_status code, const char *fmt, ...) {
    (void)env;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_msg, sizeof g_msg, fmt, ap);
    va_end(ap);
    g_n_errors++;
    return code;
}

static nnm_host g_host;
static nnm_env g_env;
static void *g_dl;
static const nnm_backend_vtable *g_be;
static void *g_state;

static void reset_error(void) {
    g_msg[0] = '\0';
    g_n_errors = 0;
}

static int suite_init(void) {
    memset(&g_host, 0, sizeof g_host);
    g_host.struct_size = sizeof g_host;
    g_host.abi_major = NNM_ABI_MAJOR;
    g_host.abi_minor = NNM_ABI_MINOR;
    g_host.set_error = fake_set_error;
    g_env.struct_size = sizeof g_env;
    g_env.host = &g_host;

    g_dl = dlopen(NNM_TEST_PLUGIN_DIR "/nnm_cpu.so", RTLD_NOW | RTLD_LOCAL);
    if (g_dl == NULL) {
        fprintf(stderr, "dlopen nnm_cpu.so: %s\n", dlerror());
        return 1;
    }
    void *sym = dlsym(g_dl, NNM_PLUGIN_ENTRY_SYMBOL);
    if (sym == NULL)
        return 1;
    nnm_plugin_entry_fn entry;
    memcpy(&entry, &sym, sizeof entry); /* object pointer -> function pointer */
    const nnm_plugin_desc *d = entry(NNM_ABI_MAJOR, NNM_ABI_MINOR);
    if (d == NULL || d->n_backends != 1 || d->backends == NULL)
        return 1;
    g_be = d->backends[0];
    if (g_be->init(&g_env, &g_state) != NNM_OK)
        return 1;
    return 0;
}

static int suite_clean(void) {
    if (g_be != NULL && g_be->shutdown != NULL)
        g_be->shutdown(g_state);
    if (g_dl != NULL)
        dlclose(g_dl);
    g_dl = NULL;
    g_be = NULL;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Tensor descriptors over test-owned memory                                 */
/* ------------------------------------------------------------------------ */

typedef struct tview {
    nnm_tensor_desc d;
    int64_t shape[NNM_MAX_DIMS];
    int64_t strides[NNM_MAX_DIMS];
} tview;

/* A view of `data` with the given shape and strides (NULL strides: contiguous). */
static void tview_init(tview *v, float *data, int32_t ndim, const int64_t *shape,
                       const int64_t *strides) {
    memset(v, 0, sizeof *v);
    v->d.data = data;
    v->d.device = (nnm_device){NNM_DEVICE_CPU, 0};
    v->d.ndim = ndim;
    v->d.dtype = NNM_F32;
    v->d.shape = v->shape;
    v->d.strides = v->strides;
    int64_t st = 1;
    for (int32_t i = ndim - 1; i >= 0; i--) {
        v->shape[i] = shape[i];
        v->strides[i] = strides != NULL ? strides[i] : st;
        st *= shape[i];
    }
}

/* Element (i, j, k) of a view of at most 3 dims (missing dims are 0); a dim
 * of size 1 is broadcast (read at index 0). */
static float *at3(const tview *v, int64_t i, int64_t j, int64_t k) {
    int64_t idx[3] = {i, j, k};
    int64_t off = 0;
    for (int32_t d = 0; d < v->d.ndim; d++)
        off += (v->shape[d] == 1 ? 0 : idx[d]) * v->strides[d];
    return (float *)v->d.data + v->d.byte_offset / sizeof(float) + off;
}

static int64_t dim_or1(const tview *v, int32_t d) {
    return d < v->d.ndim ? v->shape[d] : 1;
}

static uint32_t g_rng = 12345u;
static float frand(void) { /* deterministic, in [-2, 2) */
    g_rng = g_rng * 1664525u + 1013904223u;
    return (float)((g_rng >> 8) & 0xffff) / 16384.0f - 2.0f;
}

static void fill_rand(float *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        p[i] = frand();
}

static int close_enough(double got, double want, double rtol, double atol) {
    if (isnan(want))
        return isnan(got);
    if (isinf(want))
        return got == want;
    return fabs(got - want) <= atol + rtol * fabs(want);
}

/* ------------------------------------------------------------------------ */
/* Handshake, memory                                                         */
/* ------------------------------------------------------------------------ */

static void test_descriptor(void) {
    CU_ASSERT_PTR_NOT_NULL_FATAL(g_be);
    CU_ASSERT_EQUAL(g_be->struct_size, sizeof(nnm_backend_vtable));
    CU_ASSERT_STRING_EQUAL(g_be->name, "cpu");
    CU_ASSERT_EQUAL(g_be->device_type, NNM_DEVICE_CPU);
    CU_ASSERT_EQUAL(g_be->version_major, 1);
    CU_ASSERT_EQUAL(g_be->version_minor, 0);
    CU_ASSERT_EQUAL(g_be->version_patch, 0);
    CU_ASSERT_PTR_NOT_NULL(g_be->alloc);
    CU_ASSERT_PTR_NOT_NULL(g_be->free);
    CU_ASSERT_PTR_NOT_NULL(g_be->memcpy);
    CU_ASSERT_PTR_NOT_NULL(g_be->fill);
    CU_ASSERT_PTR_NOT_NULL(g_be->gemm);
    CU_ASSERT_PTR_NOT_NULL(g_be->binary);
    CU_ASSERT_PTR_NOT_NULL(g_be->unary);

    void *sym = dlsym(g_dl, NNM_PLUGIN_ENTRY_SYMBOL);
    nnm_plugin_entry_fn entry;
    memcpy(&entry, &sym, sizeof entry);
    const nnm_plugin_desc *d = entry(NNM_ABI_MAJOR, NNM_ABI_MINOR);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    CU_ASSERT_EQUAL(d->struct_size, sizeof(nnm_plugin_desc));
    CU_ASSERT_EQUAL(d->abi_major, NNM_ABI_MAJOR);
    CU_ASSERT_EQUAL(d->n_layers, 0);
    CU_ASSERT_PTR_NULL(entry(NNM_ABI_MAJOR + 1, 0)); /* another major is refused */
}

static void test_alloc_free(void) {
    const size_t sizes[] = {0, 1, 3, 63, 64, 65, 1000, 4096, 100003};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        void *p = NULL;
        reset_error();
        CU_ASSERT_EQUAL_FATAL(g_be->alloc(&g_env, g_state, 0, sizes[i], &p), NNM_OK);
        CU_ASSERT_PTR_NOT_NULL_FATAL(p);
        CU_ASSERT_EQUAL((uintptr_t)p % 64u, 0);
        memset(p, 0xab, sizes[i]); /* ASan: the whole size is ours */
        g_be->free(g_state, 0, p);
    }
    void *a = NULL, *b = NULL; /* two 0-byte allocations are distinct */
    CU_ASSERT_EQUAL(g_be->alloc(&g_env, g_state, 0, 0, &a), NNM_OK);
    CU_ASSERT_EQUAL(g_be->alloc(&g_env, g_state, 0, 0, &b), NNM_OK);
    CU_ASSERT_PTR_NOT_EQUAL(a, b);
    g_be->free(g_state, 0, a);
    g_be->free(g_state, 0, b);
    g_be->free(g_state, 0, NULL); /* harmless */

    void *p = (void *)&p;
    reset_error();
    CU_ASSERT_EQUAL(g_be->alloc(&g_env, g_state, 1, 16, &p), NNM_E_DEVICE);
    CU_ASSERT_PTR_NULL(p);
    CU_ASSERT_TRUE(g_n_errors == 1 && strstr(g_msg, "device") != NULL);
    reset_error();
    CU_ASSERT_EQUAL(g_be->alloc(&g_env, g_state, 0, SIZE_MAX, &p), NNM_E_NOMEM);
    CU_ASSERT_PTR_NULL(p);
    CU_ASSERT_EQUAL(g_n_errors, 1);
}

static void test_memcpy(void) {
    const nnm_device cpu = {NNM_DEVICE_CPU, 0}, cuda = {NNM_DEVICE_CUDA, 0};
    float src[37], dst[37];
    fill_rand(src, 37);
    memset(dst, 0, sizeof dst);
    CU_ASSERT_EQUAL(g_be->memcpy(&g_env, g_state, dst, cpu, src, cpu, sizeof src), NNM_OK);
    CU_ASSERT_EQUAL(memcmp(dst, src, sizeof src), 0);
    CU_ASSERT_EQUAL(g_be->memcpy(&g_env, g_state, NULL, cpu, NULL, cpu, 0), NNM_OK);

    reset_error();
    CU_ASSERT_EQUAL(g_be->memcpy(&g_env, g_state, dst, cuda, src, cpu, 4), NNM_E_DEVICE);
    CU_ASSERT_PTR_NOT_NULL(strstr(g_msg, "CPU"));
    reset_error();
    CU_ASSERT_EQUAL(g_be->memcpy(&g_env, g_state, dst, cpu, src, cuda, 4), NNM_E_DEVICE);
    CU_ASSERT_EQUAL(g_n_errors, 1);
    reset_error();
    CU_ASSERT_EQUAL(g_be->memcpy(&g_env, g_state, NULL, cpu, src, cpu, 4), NNM_E_INVALID);
    CU_ASSERT_EQUAL(g_n_errors, 1);
}

/* ------------------------------------------------------------------------ */
/* fill                                                                      */
/* ------------------------------------------------------------------------ */

static void test_fill(void) {
    float buf[64];
    tview v;

    /* contiguous [3,4] */
    for (int i = 0; i < 64; i++)
        buf[i] = -1.0f;
    tview_init(&v, buf, 2, (int64_t[]){3, 4}, NULL);
    CU_ASSERT_EQUAL(g_be->fill(&g_env, g_state, &v.d, 2.5), NNM_OK);
    for (int i = 0; i < 64; i++)
        CU_ASSERT_EQUAL(buf[i], i < 12 ? 2.5f : -1.0f);

    /* strided: [3,4] view with row stride 10 and column stride 2, byte offset 1 float */
    for (int i = 0; i < 64; i++)
        buf[i] = -1.0f;
    tview_init(&v, buf, 2, (int64_t[]){3, 4}, (int64_t[]){10, 2});
    v.d.byte_offset = sizeof(float);
    CU_ASSERT_EQUAL(g_be->fill(&g_env, g_state, &v.d, 7.0), NNM_OK);
    for (int i = 0; i < 64; i++) {
        int k = i - 1;
        int hit = k >= 0 && k / 10 < 3 && k % 10 < 8 && k % 2 == 0;
        CU_ASSERT_EQUAL(buf[i], hit ? 7.0f : -1.0f);
    }

    /* 0-d scalar, and an empty tensor (data may be NULL) */
    buf[0] = 0.0f;
    tview_init(&v, buf, 0, NULL, NULL);
    CU_ASSERT_EQUAL(g_be->fill(&g_env, g_state, &v.d, -3.0), NNM_OK);
    CU_ASSERT_EQUAL(buf[0], -3.0f);
    tview_init(&v, NULL, 2, (int64_t[]){0, 5}, NULL);
    CU_ASSERT_EQUAL(g_be->fill(&g_env, g_state, &v.d, 1.0), NNM_OK);

    /* 8 dims, mostly size 1, one transposed pair */
    for (int i = 0; i < 64; i++)
        buf[i] = 0.0f;
    tview_init(&v, buf, 8, (int64_t[]){1, 2, 1, 3, 1, 1, 2, 1}, NULL);
    CU_ASSERT_EQUAL(g_be->fill(&g_env, g_state, &v.d, 4.0), NNM_OK);
    for (int i = 0; i < 64; i++)
        CU_ASSERT_EQUAL(buf[i], i < 12 ? 4.0f : 0.0f);

    /* errors */
    tview_init(&v, buf, 1, (int64_t[]){4}, NULL);
    v.d.dtype = (nnm_dtype){NNM_DTYPE_FLOAT, 64, 1};
    reset_error();
    CU_ASSERT_EQUAL(g_be->fill(&g_env, g_state, &v.d, 1.0), NNM_E_DTYPE);
    CU_ASSERT_PTR_NOT_NULL(strstr(g_msg, "f32"));
    v.d.dtype = NNM_F32;
    v.d.device.type = NNM_DEVICE_CUDA;
    reset_error();
    CU_ASSERT_EQUAL(g_be->fill(&g_env, g_state, &v.d, 1.0), NNM_E_DEVICE);
    CU_ASSERT_EQUAL(g_n_errors, 1);
    v.d.device.type = NNM_DEVICE_CPU;
    v.d.ndim = NNM_MAX_DIMS + 1;
    reset_error();
    CU_ASSERT_EQUAL(g_be->fill(&g_env, g_state, &v.d, 1.0), NNM_E_LIMIT);
    reset_error();
    CU_ASSERT_EQUAL(g_be->fill(&g_env, g_state, NULL, 1.0), NNM_E_INVALID);
    CU_ASSERT_EQUAL(g_n_errors, 1);
}

/* ------------------------------------------------------------------------ */
/* gemm                                                                      */
/* ------------------------------------------------------------------------ */

static void check_gemm(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, float beta,
                       int64_t pad) {
    const int64_t a_rows = ta ? k : m, a_cols = ta ? m : k;
    const int64_t b_rows = tb ? n : k, b_cols = tb ? k : n;
    const int64_t lda = a_cols + pad, ldb = b_cols + pad, ldc = n + pad;
    float *a = malloc(sizeof(float) * (size_t)(a_rows * lda + 1));
    float *b = malloc(sizeof(float) * (size_t)(b_rows * ldb + 1));
    float *c = malloc(sizeof(float) * (size_t)(m * ldc + 1));
    double *want = malloc(sizeof(double) * (size_t)(m * n + 1));
    fill_rand(a, (size_t)(a_rows * lda));
    fill_rand(b, (size_t)(b_rows * ldb));
    fill_rand(c, (size_t)(m * ldc));
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double acc = 0.0;
            for (int64_t p = 0; p < k; p++) {
                double av = ta ? a[p * lda + i] : a[i * lda + p];
                double bv = tb ? b[j * ldb + p] : b[p * ldb + j];
                acc += av * bv;
            }
            want[i * n + j] = alpha * acc + (beta == 0.0f ? 0.0 : beta * (double)c[i * ldc + j]);
        }
    nnm_gemm_args g = {sizeof g, ta, tb, m, n, k, alpha, beta, a, lda, b, ldb, c, ldc};
    reset_error();
    CU_ASSERT_EQUAL(g_be->gemm(&g_env, g_state, &g), NNM_OK);
    int bad = 0;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++)
            if (!close_enough(c[i * ldc + j], want[i * n + j], 1e-5, 1e-4 * (double)(k + 1)))
                bad++;
    CU_ASSERT_EQUAL(bad, 0);
    if (bad)
        fprintf(stderr, "gemm ta=%d tb=%d m=%lld n=%lld k=%lld: %d wrong\n", ta, tb, (long long)m,
                (long long)n, (long long)k, bad);
    free(a);
    free(b);
    free(c);
    free(want);
}

static void test_gemm(void) {
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            check_gemm(ta, tb, 1, 1, 1, 1.0f, 0.0f, 0);
            check_gemm(ta, tb, 5, 3, 4, 1.0f, 0.0f, 0);
            check_gemm(ta, tb, 7, 9, 13, 0.5f, 1.0f, 3);
            check_gemm(ta, tb, 33, 17, 65, -2.0f, 0.25f, 1);
            check_gemm(ta, tb, 64, 64, 64, 1.0f, 0.0f, 0);
        }
}

static void test_gemm_edges(void) {
    float a[16], b[16], c[16];
    fill_rand(a, 16);
    fill_rand(b, 16);
    for (int i = 0; i < 16; i++)
        c[i] = 3.0f;

    /* m = 0 and n = 0: nothing happens, NULL pointers allowed */
    nnm_gemm_args g = {sizeof g, 0, 0, 0, 4, 4, 1.0f, 0.0f, NULL, 4, NULL, 4, NULL, 4};
    CU_ASSERT_EQUAL(g_be->gemm(&g_env, g_state, &g), NNM_OK);
    g = (nnm_gemm_args){sizeof g, 0, 0, 4, 0, 4, 1.0f, 0.0f, a, 4, b, 1, c, 1};
    CU_ASSERT_EQUAL(g_be->gemm(&g_env, g_state, &g), NNM_OK);
    for (int i = 0; i < 16; i++)
        CU_ASSERT_EQUAL(c[i], 3.0f);

    /* k = 0: the product is zero, so C = beta * C */
    g = (nnm_gemm_args){sizeof g, 0, 0, 2, 4, 0, 1.0f, 0.5f, NULL, 1, NULL, 4, c, 4};
    CU_ASSERT_EQUAL(g_be->gemm(&g_env, g_state, &g), NNM_OK);
    for (int i = 0; i < 16; i++)
        CU_ASSERT_EQUAL(c[i], i < 8 ? 1.5f : 3.0f);
    c[0] = NAN;
    g.beta = 0.0f;
    CU_ASSERT_EQUAL(g_be->gemm(&g_env, g_state, &g), NNM_OK);
    for (int i = 0; i < 16; i++)
        CU_ASSERT_EQUAL(c[i], i < 8 ? 0.0f : 3.0f);

    /* invalid arguments */
    reset_error();
    CU_ASSERT_EQUAL(g_be->gemm(&g_env, g_state, NULL), NNM_E_INVALID);
    CU_ASSERT_EQUAL(g_n_errors, 1);
    g = (nnm_gemm_args){sizeof g, 0, 0, 2, 2, 2, 1.0f, 0.0f, a, 2, b, 2, c, 1};
    reset_error();
    CU_ASSERT_EQUAL(g_be->gemm(&g_env, g_state, &g), NNM_E_INVALID);
    CU_ASSERT_PTR_NOT_NULL(strstr(g_msg, "ldc"));
    g.ldc = 2;
    g.lda = 1;
    reset_error();
    CU_ASSERT_EQUAL(g_be->gemm(&g_env, g_state, &g), NNM_E_INVALID);
    CU_ASSERT_PTR_NOT_NULL(strstr(g_msg, "lda"));
    g.lda = 2;
    g.trans_b = 1;
    g.k = 3; /* B^T stored n x k: ldb must be >= 3 */
    g.lda = 3;
    reset_error();
    CU_ASSERT_EQUAL(g_be->gemm(&g_env, g_state, &g), NNM_E_INVALID);
    CU_ASSERT_PTR_NOT_NULL(strstr(g_msg, "ldb"));
    g = (nnm_gemm_args){sizeof g, 0, 0, 2, 2, 2, 1.0f, 0.0f, NULL, 2, b, 2, c, 2};
    reset_error();
    CU_ASSERT_EQUAL(g_be->gemm(&g_env, g_state, &g), NNM_E_INVALID);
    g = (nnm_gemm_args){sizeof g, 0, 0, -1, 2, 2, 1.0f, 0.0f, a, 2, b, 2, c, 2};
    reset_error();
    CU_ASSERT_EQUAL(g_be->gemm(&g_env, g_state, &g), NNM_E_SHAPE);
    g = (nnm_gemm_args){8, 0, 0, 2, 2, 2, 1.0f, 0.0f, a, 2, b, 2, c, 2};
    reset_error();
    CU_ASSERT_EQUAL(g_be->gemm(&g_env, g_state, &g), NNM_E_INVALID);
    CU_ASSERT_EQUAL(g_n_errors, 1);
}

/* ------------------------------------------------------------------------ */
/* binary                                                                    */
/* ------------------------------------------------------------------------ */

static double ref_binary(int op, double x, double y) {
    switch (op) {
    case NNM_BINARY_ADD: return x + y;
    case NNM_BINARY_SUB: return x - y;
    case NNM_BINARY_MUL: return x * y;
    case NNM_BINARY_DIV: return x / y;
    case NNM_BINARY_MAX: return isnan(x) || isnan(y) ? NAN : (x > y ? x : y);
    case NNM_BINARY_MIN: return isnan(x) || isnan(y) ? NAN : (x < y ? x : y);
    default: return NAN;
    }
}

/* Runs op over views of at most 3 dims and compares with the reference. */
static void check_binary(int op, const tview *a, const tview *b, const tview *out) {
    nnm_binary_args args = {sizeof args, op, &a->d, &b->d, &out->d};
    reset_error();
    nnm_status st = g_be->binary(&g_env, g_state, &args);
    CU_ASSERT_EQUAL(st, NNM_OK);
    if (st != NNM_OK) {
        fprintf(stderr, "binary op %d: %s\n", op, g_msg);
        return;
    }
    int bad = 0;
    for (int64_t i = 0; i < dim_or1(out, 0); i++)
        for (int64_t j = 0; j < dim_or1(out, 1); j++)
            for (int64_t k = 0; k < dim_or1(out, 2); k++) {
                /* broadcast dims of a/b have stride 0, so at3 reads the right element */
                double want = ref_binary(op, *at3(a, i, j, k), *at3(b, i, j, k));
                if (!close_enough(*at3(out, i, j, k), want, 1e-6, 1e-7))
                    bad++;
            }
    CU_ASSERT_EQUAL(bad, 0);
    if (bad)
        fprintf(stderr, "binary op %d: %d wrong\n", op, bad);
}

static void test_binary_contiguous(void) {
    float a[60], b[60], o[60];
    fill_rand(a, 60);
    fill_rand(b, 60);
    for (int i = 0; i < 60; i++)
        if (fabsf(b[i]) < 0.1f)
            b[i] = 0.5f; /* keep DIV tame */
    a[3] = NAN;
    b[7] = NAN;
    tview va, vb, vo;
    for (int op = NNM_BINARY_ADD; op <= NNM_BINARY_MIN; op++) {
        tview_init(&va, a, 3, (int64_t[]){3, 4, 5}, NULL);
        tview_init(&vb, b, 3, (int64_t[]){3, 4, 5}, NULL);
        tview_init(&vo, o, 3, (int64_t[]){3, 4, 5}, NULL);
        check_binary(op, &va, &vb, &vo);
        /* 1-d, 0-d */
        tview_init(&va, a, 1, (int64_t[]){60}, NULL);
        tview_init(&vb, b, 1, (int64_t[]){60}, NULL);
        tview_init(&vo, o, 1, (int64_t[]){60}, NULL);
        check_binary(op, &va, &vb, &vo);
        tview_init(&va, a, 0, NULL, NULL);
        tview_init(&vb, b, 0, NULL, NULL);
        tview_init(&vo, o, 0, NULL, NULL);
        check_binary(op, &va, &vb, &vo);
    }
    /* in place: out aliases a */
    float x[8], y[8];
    for (int i = 0; i < 8; i++) {
        x[i] = (float)i;
        y[i] = 10.0f;
    }
    tview_init(&va, x, 1, (int64_t[]){8}, NULL);
    tview_init(&vb, y, 1, (int64_t[]){8}, NULL);
    nnm_binary_args args = {sizeof args, NNM_BINARY_ADD, &va.d, &vb.d, &va.d};
    CU_ASSERT_EQUAL(g_be->binary(&g_env, g_state, &args), NNM_OK);
    for (int i = 0; i < 8; i++)
        CU_ASSERT_EQUAL(x[i], 10.0f + (float)i);
}

static void test_binary_broadcast(void) {
    float a[60], b[60], o[60];
    fill_rand(a, 60);
    fill_rand(b, 60);
    for (int i = 0; i < 60; i++)
        if (fabsf(b[i]) < 0.1f)
            b[i] = -0.5f;
    tview va, vb, vo;
    for (int op = NNM_BINARY_ADD; op <= NNM_BINARY_MIN; op++) {
        /* bias add: b [5] broadcast along the rows of [4,5] */
        tview_init(&va, a, 2, (int64_t[]){4, 5}, NULL);
        tview_init(&vb, b, 2, (int64_t[]){4, 5}, (int64_t[]){0, 1});
        tview_init(&vo, o, 2, (int64_t[]){4, 5}, NULL);
        check_binary(op, &va, &vb, &vo);
        /* the same with b's own shape [1,5] */
        tview_init(&vb, b, 2, (int64_t[]){1, 5}, (int64_t[]){5, 1});
        check_binary(op, &va, &vb, &vo);
        /* column broadcast: b [4,1] */
        tview_init(&vb, b, 2, (int64_t[]){4, 5}, (int64_t[]){1, 0});
        check_binary(op, &va, &vb, &vo);
        /* scalar broadcast on either side */
        tview_init(&vb, b, 2, (int64_t[]){4, 5}, (int64_t[]){0, 0});
        check_binary(op, &va, &vb, &vo);
        check_binary(op, &vb, &va, &vo);
        /* a transposed: a is a [5,4] buffer read as [4,5] */
        tview_init(&va, a, 2, (int64_t[]){4, 5}, (int64_t[]){1, 4});
        tview_init(&vb, b, 2, (int64_t[]){4, 5}, (int64_t[]){0, 1});
        check_binary(op, &va, &vb, &vo);
        /* 3-d: [3,4,5] with a batch-broadcast b [1,4,5] and a sliced a */
        tview_init(&va, a, 3, (int64_t[]){3, 4, 5}, NULL);
        tview_init(&vb, b, 3, (int64_t[]){3, 4, 5}, (int64_t[]){0, 5, 1});
        tview_init(&vo, o, 3, (int64_t[]){3, 4, 5}, NULL);
        check_binary(op, &va, &vb, &vo);
        tview_init(&va, a, 3, (int64_t[]){3, 2, 5}, (int64_t[]){20, 10, 1}); /* every other row */
        tview_init(&vb, b, 3, (int64_t[]){3, 2, 5}, (int64_t[]){1, 0, 3});
        tview_init(&vo, o, 3, (int64_t[]){3, 2, 5}, NULL);
        check_binary(op, &va, &vb, &vo);
        /* a strided output */
        float big[120];
        for (int i = 0; i < 120; i++)
            big[i] = -99.0f;
        tview_init(&va, a, 2, (int64_t[]){4, 5}, NULL);
        tview_init(&vb, b, 2, (int64_t[]){4, 5}, NULL);
        tview_init(&vo, big, 2, (int64_t[]){4, 5}, (int64_t[]){1, 8});
        check_binary(op, &va, &vb, &vo);
        int untouched = 0;
        for (int i = 0; i < 120; i++)
            untouched += big[i] == -99.0f;
        CU_ASSERT_EQUAL(untouched, 120 - 20);
    }
    /* byte_offset on an operand */
    tview_init(&va, a, 1, (int64_t[]){10}, NULL);
    tview_init(&vb, b, 1, (int64_t[]){10}, NULL);
    vb.d.byte_offset = 5 * sizeof(float);
    tview_init(&vo, o, 1, (int64_t[]){10}, NULL);
    check_binary(NNM_BINARY_MUL, &va, &vb, &vo);
}

static void test_binary_errors(void) {
    float a[8] = {0}, b[8] = {0}, o[8] = {0};
    tview va, vb, vo;
    tview_init(&va, a, 1, (int64_t[]){8}, NULL);
    tview_init(&vb, b, 1, (int64_t[]){4}, NULL);
    tview_init(&vo, o, 1, (int64_t[]){8}, NULL);
    nnm_binary_args args = {sizeof args, NNM_BINARY_ADD, &va.d, &vb.d, &vo.d};
    reset_error();
    CU_ASSERT_EQUAL(g_be->binary(&g_env, g_state, &args), NNM_E_SHAPE);
    CU_ASSERT_EQUAL(g_n_errors, 1);

    tview_init(&vb, b, 2, (int64_t[]){2, 4}, NULL);
    reset_error();
    CU_ASSERT_EQUAL(g_be->binary(&g_env, g_state, &args), NNM_E_SHAPE);

    tview_init(&vb, b, 1, (int64_t[]){8}, NULL);
    vb.d.dtype = (nnm_dtype){NNM_DTYPE_INT, 32, 1};
    reset_error();
    CU_ASSERT_EQUAL(g_be->binary(&g_env, g_state, &args), NNM_E_DTYPE);
    CU_ASSERT_PTR_NOT_NULL(strstr(g_msg, "f32"));
    vb.d.dtype = NNM_F32;

    args.op = 42;
    reset_error();
    CU_ASSERT_EQUAL(g_be->binary(&g_env, g_state, &args), NNM_E_UNSUPPORTED);
    args.op = NNM_BINARY_ADD;
    args.a = NULL;
    reset_error();
    CU_ASSERT_EQUAL(g_be->binary(&g_env, g_state, &args), NNM_E_INVALID);
    CU_ASSERT_EQUAL(g_n_errors, 1);
    reset_error();
    CU_ASSERT_EQUAL(g_be->binary(&g_env, g_state, NULL), NNM_E_INVALID);
}

/* ------------------------------------------------------------------------ */
/* unary                                                                     */
/* ------------------------------------------------------------------------ */

static double ref_unary(int op, double x, double alpha) {
    switch (op) {
    case NNM_UNARY_COPY: return x;
    case NNM_UNARY_NEG: return -x;
    case NNM_UNARY_RELU: return isnan(x) ? x : (x > 0.0 ? x : 0.0);
    case NNM_UNARY_EXP: return exp(x);
    case NNM_UNARY_LOG: return log(x);
    case NNM_UNARY_TANH: return tanh(x);
    case NNM_UNARY_SIGMOID: return 1.0 / (1.0 + exp(-x));
    case NNM_UNARY_SQRT: return sqrt(x);
    case NNM_UNARY_ABS: return fabs(x);
    case NNM_UNARY_SCALE: return (double)(float)alpha * x;
    default: return NAN;
    }
}

static void check_unary(int op, double alpha, const tview *x, const tview *out) {
    nnm_unary_args args = {sizeof args, op, alpha, &x->d, &out->d};
    reset_error();
    nnm_status st = g_be->unary(&g_env, g_state, &args);
    CU_ASSERT_EQUAL(st, NNM_OK);
    if (st != NNM_OK) {
        fprintf(stderr, "unary op %d: %s\n", op, g_msg);
        return;
    }
    int bad = 0;
    for (int64_t i = 0; i < dim_or1(out, 0); i++)
        for (int64_t j = 0; j < dim_or1(out, 1); j++)
            for (int64_t k = 0; k < dim_or1(out, 2); k++) {
                double want = ref_unary(op, *at3(x, i, j, k), alpha);
                if (!close_enough(*at3(out, i, j, k), want, 2e-6, 1e-7))
                    bad++;
            }
    CU_ASSERT_EQUAL(bad, 0);
    if (bad)
        fprintf(stderr, "unary op %d: %d wrong\n", op, bad);
}

static void test_unary(void) {
    float x[60], o[60];
    fill_rand(x, 60);
    x[0] = 0.0f;
    x[1] = -0.0f;
    x[2] = NAN;
    x[3] = 30.0f; /* sigmoid/tanh saturation */
    x[4] = -30.0f;
    x[5] = -100.0f; /* sigmoid must not produce NaN */
    tview vx, vo;
    for (int op = NNM_UNARY_COPY; op <= NNM_UNARY_SCALE; op++) {
        const double alpha = op == NNM_UNARY_SCALE ? -0.3 : 0.0;
        tview_init(&vx, x, 2, (int64_t[]){6, 10}, NULL);
        tview_init(&vo, o, 2, (int64_t[]){6, 10}, NULL);
        check_unary(op, alpha, &vx, &vo);
        /* transposed input */
        tview_init(&vx, x, 2, (int64_t[]){10, 6}, (int64_t[]){1, 10});
        tview_init(&vo, o, 2, (int64_t[]){10, 6}, NULL);
        check_unary(op, alpha, &vx, &vo);
        /* broadcast input (a row repeated) and a 3-d slice */
        tview_init(&vx, x, 2, (int64_t[]){4, 10}, (int64_t[]){0, 1});
        tview_init(&vo, o, 2, (int64_t[]){4, 10}, NULL);
        check_unary(op, alpha, &vx, &vo);
        tview_init(&vx, x, 3, (int64_t[]){2, 3, 4}, (int64_t[]){30, 10, 2});
        vx.d.byte_offset = 4;
        tview_init(&vo, o, 3, (int64_t[]){2, 3, 4}, NULL);
        check_unary(op, alpha, &vx, &vo);
    }
    /* sigmoid(-100) is a tiny positive number or 0, never NaN */
    tview_init(&vx, x + 5, 1, (int64_t[]){1}, NULL);
    tview_init(&vo, o, 1, (int64_t[]){1}, NULL);
    nnm_unary_args args = {sizeof args, NNM_UNARY_SIGMOID, 0.0, &vx.d, &vo.d};
    CU_ASSERT_EQUAL(g_be->unary(&g_env, g_state, &args), NNM_OK);
    CU_ASSERT_TRUE(o[0] >= 0.0f && o[0] < 1e-30f);

    /* errors */
    tview_init(&vx, x, 1, (int64_t[]){6}, NULL);
    tview_init(&vo, o, 1, (int64_t[]){5}, NULL);
    args = (nnm_unary_args){sizeof args, NNM_UNARY_EXP, 0.0, &vx.d, &vo.d};
    reset_error();
    CU_ASSERT_EQUAL(g_be->unary(&g_env, g_state, &args), NNM_E_SHAPE);
    CU_ASSERT_EQUAL(g_n_errors, 1);
    tview_init(&vo, o, 1, (int64_t[]){6}, NULL);
    vo.d.dtype = (nnm_dtype){NNM_DTYPE_BFLOAT, 16, 1};
    reset_error();
    CU_ASSERT_EQUAL(g_be->unary(&g_env, g_state, &args), NNM_E_DTYPE);
    vo.d.dtype = NNM_F32;
    args.op = -1;
    reset_error();
    CU_ASSERT_EQUAL(g_be->unary(&g_env, g_state, &args), NNM_E_UNSUPPORTED);
    CU_ASSERT_EQUAL(g_n_errors, 1);
}

int main(void) {
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite("cpu_backend", suite_init, suite_clean);
    if (s == NULL) {
        CU_cleanup_registry();
        return 1;
    }
    CU_add_test(s, "descriptor and handshake", test_descriptor);
    CU_add_test(s, "alloc/free", test_alloc_free);
    CU_add_test(s, "memcpy", test_memcpy);
    CU_add_test(s, "fill", test_fill);
    CU_add_test(s, "gemm vs naive", test_gemm);
    CU_add_test(s, "gemm edges and errors", test_gemm_edges);
    CU_add_test(s, "binary contiguous", test_binary_contiguous);
    CU_add_test(s, "binary broadcast and strided", test_binary_broadcast);
    CU_add_test(s, "binary errors", test_binary_errors);
    CU_add_test(s, "unary", test_unary);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    const unsigned failed = CU_get_number_of_failures() + CU_get_number_of_suites_failed() +
                            CU_get_number_of_tests_failed();
    CU_cleanup_registry();
    return failed != 0 ? 1 : 0;
}
