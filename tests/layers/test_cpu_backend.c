/* tests/layers/test_cpu_backend.c - the cpu backend plugin driven directly.
 *
 * The public API reaches the backend only through the ops layers use, so this
 * suite dlopens nnm_cpu.so, performs the entry handshake itself and calls the
 * backend vtable with a minimal host table (only set_error, which is all a
 * backend uses). Every kernel is checked against a naive double-precision
 * reference, including strided, broadcast and transposed operands, and the
 * optimizer steps against torch.optim (tests/golden/optim_step_golden.h).
 */
#include "test_util.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>

#include "golden/optim_step_golden.h"

#ifndef NNM_TEST_PLUGIN_DIR
#error "NNM_TEST_PLUGIN_DIR must name the directory holding nnm_cpu.so"
#endif

/* ------------------------------------------------------------------------ */
/* A minimal host                                                            */
/* ------------------------------------------------------------------------ */

static tu_fake_host g_fake; /* pass &g_fake.env; g_fake.msg holds what the backend reported */
static void *g_dl;
static const nnm_backend_vtable *g_be;
static void *g_state;

static int suite_init(void) {
    tu_fake_host_init(&g_fake);

    const nnm_plugin_desc *d = tu_plugin_open(NNM_TEST_PLUGIN_DIR "/nnm_cpu.so", &g_dl);
    if (d == NULL || d->n_backends != 1 || d->backends == NULL)
        return 1;
    g_be = d->backends[0];
    if (g_be->init(&g_fake.env, &g_state) != NNM_OK)
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

static uint32_t g_rng = 12345u; /* tu_rand's state: the inputs are the same every run */

/* ------------------------------------------------------------------------ */
/* Handshake, memory                                                         */
/* ------------------------------------------------------------------------ */

static void test_descriptor(void) {
    CU_ASSERT_PTR_NOT_NULL_FATAL(g_be);
    CU_ASSERT_EQUAL(g_be->struct_size, sizeof(nnm_backend_vtable));
    CU_ASSERT_STRING_EQUAL(g_be->name, "cpu");
    CU_ASSERT_EQUAL(g_be->device_type, NNM_DEVICE_CPU);
    CU_ASSERT_EQUAL(g_be->version_major, 1);
    CU_ASSERT_EQUAL(g_be->version_minor, 10); /* 1.3: conv, batch_norm (1.4); 1.4: index (1.5); 1.5: rnn_cell (1.5); 1.6: dtype ops (1.5); 1.7: ctc_loss (1.5); 1.8: set_num_threads (1.5); 1.9: embedding_bag (1.5); 1.10: layer_norm (1.5) */
    CU_ASSERT_PTR_NOT_NULL(g_be->index_select);
    CU_ASSERT_PTR_NOT_NULL(g_be->index_add);
    CU_ASSERT_PTR_NOT_NULL(g_be->rnn_cell);
    CU_ASSERT_PTR_NOT_NULL(g_be->rnn_cell_backward);
    CU_ASSERT_PTR_NOT_NULL(g_be->cast);
    CU_ASSERT_PTR_NOT_NULL(g_be->arg_reduce);
    CU_ASSERT_PTR_NOT_NULL(g_be->ctc_loss);
    CU_ASSERT_PTR_NOT_NULL(g_be->ctc_loss_backward);
    CU_ASSERT_PTR_NOT_NULL(g_be->embedding_bag);
    CU_ASSERT_PTR_NOT_NULL(g_be->embedding_bag_backward);
    CU_ASSERT_PTR_NOT_NULL(g_be->layer_norm);
    CU_ASSERT_PTR_NOT_NULL(g_be->layer_norm_backward);
    CU_ASSERT_EQUAL(g_be->flags, NNM_BACKEND_OPS_1_3 | NNM_BACKEND_OPS_1_5);
    CU_ASSERT_EQUAL(g_be->version_patch, 0);
    CU_ASSERT_PTR_NOT_NULL(g_be->alloc);
    CU_ASSERT_PTR_NOT_NULL(g_be->free);
    CU_ASSERT_PTR_NOT_NULL(g_be->memcpy);
    CU_ASSERT_PTR_NOT_NULL(g_be->fill);
    CU_ASSERT_PTR_NOT_NULL(g_be->gemm);
    CU_ASSERT_PTR_NOT_NULL(g_be->binary);
    CU_ASSERT_PTR_NOT_NULL(g_be->unary);
    CU_ASSERT_PTR_NOT_NULL(g_be->reduce); /* 1.1 */
    CU_ASSERT_PTR_NOT_NULL(g_be->log_softmax);
    CU_ASSERT_PTR_NOT_NULL(g_be->nll);
    CU_ASSERT_PTR_NOT_NULL(g_be->nll_backward);
    CU_ASSERT_PTR_NOT_NULL(g_be->sgd_step);
    CU_ASSERT_PTR_NOT_NULL(g_be->adam_step);
    CU_ASSERT_PTR_NOT_NULL(g_be->im2col); /* 1.3 */
    CU_ASSERT_PTR_NOT_NULL(g_be->pool_backward);
    CU_ASSERT_PTR_NOT_NULL(g_be->where);
    CU_ASSERT_PTR_NOT_NULL(g_be->conv); /* 1.4 */
    CU_ASSERT_PTR_NOT_NULL(g_be->conv_backward);
    CU_ASSERT_PTR_NOT_NULL(g_be->batch_norm);
    CU_ASSERT_PTR_NOT_NULL(g_be->batch_norm_backward);

    void *sym = dlsym(g_dl, NNM_PLUGIN_ENTRY_SYMBOL);
    nnm_plugin_entry_fn entry;
    memcpy(&entry, &sym, sizeof entry);
    const nnm_plugin_desc *d = entry(NNM_ABI_MAJOR, NNM_ABI_MINOR);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    CU_ASSERT_EQUAL(d->struct_size, sizeof(nnm_plugin_desc));
    CU_ASSERT_EQUAL(d->abi_major, NNM_ABI_MAJOR);
    CU_ASSERT_EQUAL(d->abi_minor, NNM_ABI_MINOR);
    CU_ASSERT_EQUAL(d->n_layers, 0);
    CU_ASSERT_PTR_NULL(entry(NNM_ABI_MAJOR + 1, 0)); /* another major is refused */
}

static void test_alloc_free(void) {
    const size_t sizes[] = {0, 1, 3, 63, 64, 65, 1000, 4096, 100003};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        void *p = NULL;
        tu_fake_host_reset(&g_fake);
        CU_ASSERT_EQUAL_FATAL(g_be->alloc(&g_fake.env, g_state, 0, sizes[i], &p), NNM_OK);
        CU_ASSERT_PTR_NOT_NULL_FATAL(p);
        CU_ASSERT_EQUAL((uintptr_t)p % 64u, 0);
        memset(p, 0xab, sizes[i]); /* ASan: the whole size is ours */
        g_be->free(g_state, 0, p);
    }
    void *a = NULL, *b = NULL; /* two 0-byte allocations are distinct */
    CU_ASSERT_EQUAL(g_be->alloc(&g_fake.env, g_state, 0, 0, &a), NNM_OK);
    CU_ASSERT_EQUAL(g_be->alloc(&g_fake.env, g_state, 0, 0, &b), NNM_OK);
    CU_ASSERT_PTR_NOT_EQUAL(a, b);
    g_be->free(g_state, 0, a);
    g_be->free(g_state, 0, b);
    g_be->free(g_state, 0, NULL); /* harmless */

    void *p = (void *)&p;
    tu_fake_host_reset(&g_fake);
    CU_ASSERT_EQUAL(g_be->alloc(&g_fake.env, g_state, 1, 16, &p), NNM_E_DEVICE);
    CU_ASSERT_PTR_NULL(p);
    CU_ASSERT_TRUE(g_fake.n_errors == 1 && strstr(g_fake.msg, "device") != NULL);
    tu_fake_host_reset(&g_fake);
    CU_ASSERT_EQUAL(g_be->alloc(&g_fake.env, g_state, 0, SIZE_MAX, &p), NNM_E_NOMEM);
    CU_ASSERT_PTR_NULL(p);
    CU_ASSERT_EQUAL(g_fake.n_errors, 1);
}

static void test_memcpy(void) {
    const nnm_device cpu = {NNM_DEVICE_CPU, 0}, cuda = {NNM_DEVICE_CUDA, 0};
    float src[37], dst[37];
    tu_fill_rand(&g_rng, src, 37);
    memset(dst, 0, sizeof dst);
    CU_ASSERT_EQUAL(g_be->memcpy(&g_fake.env, g_state, dst, cpu, src, cpu, sizeof src), NNM_OK);
    CU_ASSERT_EQUAL(memcmp(dst, src, sizeof src), 0);
    CU_ASSERT_EQUAL(g_be->memcpy(&g_fake.env, g_state, NULL, cpu, NULL, cpu, 0), NNM_OK);

    tu_fake_host_reset(&g_fake);
    CU_ASSERT_EQUAL(g_be->memcpy(&g_fake.env, g_state, dst, cuda, src, cpu, 4), NNM_E_DEVICE);
    CU_ASSERT_PTR_NOT_NULL(strstr(g_fake.msg, "CPU"));
    tu_fake_host_reset(&g_fake);
    CU_ASSERT_EQUAL(g_be->memcpy(&g_fake.env, g_state, dst, cpu, src, cuda, 4), NNM_E_DEVICE);
    CU_ASSERT_EQUAL(g_fake.n_errors, 1);
    tu_fake_host_reset(&g_fake);
    CU_ASSERT_EQUAL(g_be->memcpy(&g_fake.env, g_state, NULL, cpu, src, cpu, 4), NNM_E_INVALID);
    CU_ASSERT_EQUAL(g_fake.n_errors, 1);
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
    CU_ASSERT_EQUAL(g_be->fill(&g_fake.env, g_state, &v.d, 2.5), NNM_OK);
    for (int i = 0; i < 64; i++)
        CU_ASSERT_EQUAL(buf[i], i < 12 ? 2.5f : -1.0f);

    /* strided: [3,4] view with row stride 10 and column stride 2, byte offset 1 float */
    for (int i = 0; i < 64; i++)
        buf[i] = -1.0f;
    tview_init(&v, buf, 2, (int64_t[]){3, 4}, (int64_t[]){10, 2});
    v.d.byte_offset = sizeof(float);
    CU_ASSERT_EQUAL(g_be->fill(&g_fake.env, g_state, &v.d, 7.0), NNM_OK);
    for (int i = 0; i < 64; i++) {
        int k = i - 1;
        int hit = k >= 0 && k / 10 < 3 && k % 10 < 8 && k % 2 == 0;
        CU_ASSERT_EQUAL(buf[i], hit ? 7.0f : -1.0f);
    }

    /* 0-d scalar, and an empty tensor (data may be NULL) */
    buf[0] = 0.0f;
    tview_init(&v, buf, 0, NULL, NULL);
    CU_ASSERT_EQUAL(g_be->fill(&g_fake.env, g_state, &v.d, -3.0), NNM_OK);
    CU_ASSERT_EQUAL(buf[0], -3.0f);
    tview_init(&v, NULL, 2, (int64_t[]){0, 5}, NULL);
    CU_ASSERT_EQUAL(g_be->fill(&g_fake.env, g_state, &v.d, 1.0), NNM_OK);

    /* 8 dims, mostly size 1, one transposed pair */
    for (int i = 0; i < 64; i++)
        buf[i] = 0.0f;
    tview_init(&v, buf, 8, (int64_t[]){1, 2, 1, 3, 1, 1, 2, 1}, NULL);
    CU_ASSERT_EQUAL(g_be->fill(&g_fake.env, g_state, &v.d, 4.0), NNM_OK);
    for (int i = 0; i < 64; i++)
        CU_ASSERT_EQUAL(buf[i], i < 12 ? 4.0f : 0.0f);

    /* errors */
    tview_init(&v, buf, 1, (int64_t[]){4}, NULL);
    v.d.dtype = (nnm_dtype){NNM_DTYPE_FLOAT, 64, 1};
    tu_fake_host_reset(&g_fake);
    CU_ASSERT_EQUAL(g_be->fill(&g_fake.env, g_state, &v.d, 1.0), NNM_E_DTYPE);
    CU_ASSERT_PTR_NOT_NULL(strstr(g_fake.msg, "f32"));
    v.d.dtype = NNM_F32;
    v.d.device.type = NNM_DEVICE_CUDA;
    tu_fake_host_reset(&g_fake);
    CU_ASSERT_EQUAL(g_be->fill(&g_fake.env, g_state, &v.d, 1.0), NNM_E_DEVICE);
    CU_ASSERT_EQUAL(g_fake.n_errors, 1);
    v.d.device.type = NNM_DEVICE_CPU;
    v.d.ndim = NNM_MAX_DIMS + 1;
    tu_fake_host_reset(&g_fake);
    CU_ASSERT_EQUAL(g_be->fill(&g_fake.env, g_state, &v.d, 1.0), NNM_E_LIMIT);
    tu_fake_host_reset(&g_fake);
    CU_ASSERT_EQUAL(g_be->fill(&g_fake.env, g_state, NULL, 1.0), NNM_E_INVALID);
    CU_ASSERT_EQUAL(g_fake.n_errors, 1);
}

/* ------------------------------------------------------------------------ */
/* gemm                                                                      */
/* ------------------------------------------------------------------------ */

/* nan_c: C starts as NaN (beta 0 must overwrite it, as BLAS does) */
static void check_gemm_c(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, float beta,
                         int64_t pad, int nan_c) {
    const int64_t a_rows = ta ? k : m, a_cols = ta ? m : k;
    const int64_t b_rows = tb ? n : k, b_cols = tb ? k : n;
    const int64_t lda = a_cols + pad, ldb = b_cols + pad, ldc = n + pad;
    float *a = malloc(sizeof(float) * (size_t)(a_rows * lda + 1));
    float *b = malloc(sizeof(float) * (size_t)(b_rows * ldb + 1));
    float *c = malloc(sizeof(float) * (size_t)(m * ldc + 1));
    double *want = malloc(sizeof(double) * (size_t)(m * n + 1));
    tu_fill_rand(&g_rng, a, (size_t)(a_rows * lda));
    tu_fill_rand(&g_rng, b, (size_t)(b_rows * ldb));
    tu_fill_rand(&g_rng, c, (size_t)(m * ldc));
    if (nan_c)
        for (int64_t i = 0; i < m * ldc; i++)
            c[i] = NAN;
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
    tu_fake_host_reset(&g_fake);
    CU_ASSERT_EQUAL(g_be->gemm(&g_fake.env, g_state, &g), NNM_OK);
    int bad = 0;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++)
            if (!tu_match(c[i * ldc + j], want[i * n + j], 1e-5, 1e-4 * (double)(k + 1)))
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

static void check_gemm(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, float beta,
                       int64_t pad) {
    check_gemm_c(ta, tb, m, n, k, alpha, beta, pad, 0);
}

static void test_gemm(void) {
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            check_gemm(ta, tb, 1, 1, 1, 1.0f, 0.0f, 0);
            check_gemm(ta, tb, 5, 3, 4, 1.0f, 0.0f, 0);
            check_gemm(ta, tb, 7, 9, 13, 0.5f, 1.0f, 3);
            check_gemm(ta, tb, 33, 17, 65, -2.0f, 0.25f, 1);
            check_gemm(ta, tb, 64, 64, 64, 1.0f, 0.0f, 0);
            /* one or two rows: the backend's own loops instead of OpenBLAS */
            check_gemm(ta, tb, 1, 16, 16, 1.0f, 0.0f, 0);
            check_gemm(ta, tb, 2, 9, 13, 0.5f, 1.0f, 3);
            check_gemm(ta, tb, 1, 33, 65, -2.0f, 0.25f, 1);
            check_gemm(ta, tb, 2, 64, 64, 1.0f, 0.0f, 0); /* the largest such product */
            check_gemm(ta, tb, 2, 65, 64, 1.0f, 0.0f, 0); /* one past it: OpenBLAS */
        }
    /* with a thread count set, large products may take two OpenBLAS threads */
    CU_ASSERT_PTR_NOT_NULL_FATAL(g_be->set_num_threads);
    CU_ASSERT_EQUAL(g_be->set_num_threads(&g_fake.env, g_state, 0), NNM_E_INVALID);
    CU_ASSERT_EQUAL(g_be->set_num_threads(&g_fake.env, g_state, 2), NNM_OK);
    check_gemm(0, 1, 128, 128, 160, 1.0f, 0.0f, 0);
    check_gemm(1, 0, 8, 16, 16, 1.0f, 0.5f, 2);
    CU_ASSERT_EQUAL(g_be->set_num_threads(&g_fake.env, g_state, 1), NNM_OK);
}

/* Threaded products (2^21 multiply-adds and more with 2 threads) are cut
 * into parts of whole 12-row tiles or 32-column panels, each the one-thread
 * AVX-512 kernel on the backend's helpers: the bits of one thread, for
 * every transpose form, both cuts, padded leading dims, alpha and beta;
 * then again while two threads of this test keep both cores busy (the
 * backend's helpers lose their core), and on a backend state with the
 * contention windows on (NNM_CPU_THREADS_ADAPT=1: parts run on the caller
 * alone for a while): the bits stay. The same for
 * relu over 2^20 elements (cut in 64-element blocks). Where the CPU lacks
 * AVX-512 (or NNM_CPU_GEMM=blas) OpenBLAS's own threads take the products:
 * only the values are checked (test_gemm). No timing is asserted. */
static atomic_int g_hog_stop;

static void *hog_main(void *p) {
    (void)p;
    volatile unsigned x = 0;
    while (!atomic_load(&g_hog_stop))
        x = x * 1664525u + 1013904223u;
    return NULL;
}

static int gemm_bits_match(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, float beta,
                           int64_t pad) {
    const int64_t a_rows = ta ? k : m, a_cols = ta ? m : k;
    const int64_t b_rows = tb ? n : k, b_cols = tb ? k : n;
    const int64_t lda = a_cols + pad, ldb = b_cols + pad, ldc = n + pad;
    float *a = malloc(sizeof(float) * (size_t)(a_rows * lda));
    float *b = malloc(sizeof(float) * (size_t)(b_rows * ldb));
    float *c1 = malloc(sizeof(float) * (size_t)(m * ldc));
    float *c2 = malloc(sizeof(float) * (size_t)(m * ldc));
    int same = 0;
    if (a && b && c1 && c2) {
        tu_fill_rand(&g_rng, a, (size_t)(a_rows * lda));
        tu_fill_rand(&g_rng, b, (size_t)(b_rows * ldb));
        tu_fill_rand(&g_rng, c1, (size_t)(m * ldc));
        memcpy(c2, c1, sizeof(float) * (size_t)(m * ldc));
        nnm_gemm_args g = {sizeof g, ta, tb, m, n, k, alpha, beta, a, lda, b, ldb, c1, ldc};
        CU_ASSERT_EQUAL(g_be->set_num_threads(&g_fake.env, g_state, 1), NNM_OK);
        CU_ASSERT_EQUAL(g_be->gemm(&g_fake.env, g_state, &g), NNM_OK);
        g.c = c2;
        CU_ASSERT_EQUAL(g_be->set_num_threads(&g_fake.env, g_state, 2), NNM_OK);
        CU_ASSERT_EQUAL(g_be->gemm(&g_fake.env, g_state, &g), NNM_OK);
        same = memcmp(c1, c2, sizeof(float) * (size_t)(m * ldc)) == 0;
        if (!same)
            fprintf(stderr, "gemm ta=%d tb=%d m=%lld n=%lld k=%lld: 2 threads differ from 1\n", ta, tb,
                    (long long)m, (long long)n, (long long)k);
    }
    free(a);
    free(b);
    free(c1);
    free(c2);
    CU_ASSERT_EQUAL(g_be->set_num_threads(&g_fake.env, g_state, 1), NNM_OK);
    return same;
}

static int relu_bits_match(void) {
    const int64_t n = (int64_t)1 << 20;
    float *x = malloc(sizeof(float) * (size_t)n), *o1 = malloc(sizeof(float) * (size_t)n),
          *o2 = malloc(sizeof(float) * (size_t)n);
    int same = 0;
    if (x && o1 && o2) {
        tu_fill_rand(&g_rng, x, (size_t)n);
        tview xv, v1, v2;
        tview_init(&xv, x, 1, &n, NULL);
        tview_init(&v1, o1, 1, &n, NULL);
        tview_init(&v2, o2, 1, &n, NULL);
        nnm_unary_args u1 = {sizeof u1, NNM_UNARY_RELU, 0.0, &xv.d, &v1.d}, u2 = {sizeof u2, NNM_UNARY_RELU, 0.0, &xv.d, &v2.d};
        CU_ASSERT_EQUAL(g_be->set_num_threads(&g_fake.env, g_state, 1), NNM_OK);
        CU_ASSERT_EQUAL(g_be->unary(&g_fake.env, g_state, &u1), NNM_OK);
        CU_ASSERT_EQUAL(g_be->set_num_threads(&g_fake.env, g_state, 2), NNM_OK);
        CU_ASSERT_EQUAL(g_be->unary(&g_fake.env, g_state, &u2), NNM_OK);
        same = memcmp(o1, o2, sizeof(float) * (size_t)n) == 0;
    }
    free(x);
    free(o1);
    free(o2);
    CU_ASSERT_EQUAL(g_be->set_num_threads(&g_fake.env, g_state, 1), NNM_OK);
    return same;
}

static void test_gemm_threads_bits(void) {
    const char *pick = getenv("NNM_CPU_GEMM");
    const int own = __builtin_cpu_supports("avx512f") && !(pick != NULL && strcmp(pick, "blas") == 0);
    pthread_t hogs[2];
    int n_hogs = 0;
    void *plain = g_state, *adaptive = NULL;
    for (int round = 0; round < 3; round++) {
        if (round == 1) { /* both cores busy */
            atomic_store(&g_hog_stop, 0);
            for (int i = 0; i < 2; i++)
                if (pthread_create(&hogs[n_hogs], NULL, hog_main, NULL) == 0)
                    n_hogs++;
        }
        if (round == 2) { /* and a backend state with the contention windows on (read at init) */
            setenv("NNM_CPU_THREADS_ADAPT", "1", 1);
            CU_ASSERT_EQUAL_FATAL(g_be->init(&g_fake.env, &adaptive), NNM_OK);
            unsetenv("NNM_CPU_THREADS_ADAPT");
            g_state = adaptive;
        }
        for (int rep = 0; rep < (round ? 3 : 1); rep++)
            for (int ta = 0; ta < 2; ta++)
                for (int tb = 0; tb < 2; tb++) {
                    int ok = 1;
                    ok &= gemm_bits_match(ta, tb, 64, 784, 256, 1.0f, 0.0f, 0);   /* by columns */
                    ok &= gemm_bits_match(ta, tb, 300, 100, 128, 0.5f, 1.0f, 3);  /* by rows */
                    ok &= gemm_bits_match(ta, tb, 1000, 48, 64, -2.0f, 0.25f, 1); /* rows, a larger last part */
                    ok &= gemm_bits_match(ta, tb, 13, 4096, 64, 1.0f, 0.0f, 0);   /* 13 rows: by columns */
                    ok &= gemm_bits_match(ta, tb, 48, 300, 600, 1.0f, 0.5f, 2);   /* k over one 256-deep slice */
                    if (own)
                        CU_ASSERT(ok);
                }
        CU_ASSERT(relu_bits_match());
    }
    g_state = plain;
    g_be->shutdown(adaptive);
    atomic_store(&g_hog_stop, 1);
    for (int i = 0; i < n_hogs; i++)
        pthread_join(hogs[i], NULL);
    /* and the values of a threaded product, both cuts */
    CU_ASSERT_EQUAL(g_be->set_num_threads(&g_fake.env, g_state, 2), NNM_OK);
    check_gemm(1, 0, 64, 784, 256, 1.0f, 0.0f, 0);
    check_gemm(0, 1, 300, 100, 128, 0.5f, 1.0f, 3);
    CU_ASSERT_EQUAL(g_be->set_num_threads(&g_fake.env, g_state, 1), NNM_OK);
}

/* Products of 12 rows or more and 2^15 multiply-adds or more run the
 * backend's AVX-512 kernel where the CPU has AVX-512F (gemm_avx512.inc),
 * OpenBLAS elsewhere: sizes one past each of its blocks (12-row x 32-column
 * tiles, 256-deep k slices, 144-row A blocks, 2048-column B blocks) and
 * exact multiples, every transpose form, leading dims with padding, alpha
 * and beta (0 overwriting a NaN C), on one thread. */
static void test_gemm_large(void) {
    CU_ASSERT_EQUAL(g_be->set_num_threads(&g_fake.env, g_state, 1), NNM_OK);
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            check_gemm(ta, tb, 12, 32, 96, 1.0f, 0.0f, 0);
            check_gemm(ta, tb, 13, 33, 257, 1.0f, 0.0f, 1);
            check_gemm(ta, tb, 24, 64, 512, 0.5f, 1.0f, 0);
            check_gemm(ta, tb, 145, 65, 40, -2.0f, 0.25f, 3);
            check_gemm(ta, tb, 12, 2049, 3, 1.0f, 0.5f, 5);
            check_gemm(ta, tb, 150, 100, 300, 1.0f, 0.0f, 7);
            check_gemm(ta, tb, 37, 17, 61, 1.0f, -1.0f, 2);
            check_gemm_c(ta, tb, 29, 47, 270, 1.0f, 0.0f, 1, 1);
        }
}

static void test_gemm_edges(void) {
    float a[16], b[16], c[16];
    tu_fill_rand(&g_rng, a, 16);
    tu_fill_rand(&g_rng, b, 16);
    for (int i = 0; i < 16; i++)
        c[i] = 3.0f;

    /* m = 0 and n = 0: nothing happens, NULL pointers allowed */
    nnm_gemm_args g = {sizeof g, 0, 0, 0, 4, 4, 1.0f, 0.0f, NULL, 4, NULL, 4, NULL, 4};
    CU_ASSERT_EQUAL(g_be->gemm(&g_fake.env, g_state, &g), NNM_OK);
    g = (nnm_gemm_args){sizeof g, 0, 0, 4, 0, 4, 1.0f, 0.0f, a, 4, b, 1, c, 1};
    CU_ASSERT_EQUAL(g_be->gemm(&g_fake.env, g_state, &g), NNM_OK);
    for (int i = 0; i < 16; i++)
        CU_ASSERT_EQUAL(c[i], 3.0f);

    /* k = 0: the product is zero, so C = beta * C */
    g = (nnm_gemm_args){sizeof g, 0, 0, 2, 4, 0, 1.0f, 0.5f, NULL, 1, NULL, 4, c, 4};
    CU_ASSERT_EQUAL(g_be->gemm(&g_fake.env, g_state, &g), NNM_OK);
    for (int i = 0; i < 16; i++)
        CU_ASSERT_EQUAL(c[i], i < 8 ? 1.5f : 3.0f);
    c[0] = NAN;
    g.beta = 0.0f;
    CU_ASSERT_EQUAL(g_be->gemm(&g_fake.env, g_state, &g), NNM_OK);
    for (int i = 0; i < 16; i++)
        CU_ASSERT_EQUAL(c[i], i < 8 ? 0.0f : 3.0f);

    /* invalid arguments */
    tu_fake_host_reset(&g_fake);
    CU_ASSERT_EQUAL(g_be->gemm(&g_fake.env, g_state, NULL), NNM_E_INVALID);
    CU_ASSERT_EQUAL(g_fake.n_errors, 1);
    g = (nnm_gemm_args){sizeof g, 0, 0, 2, 2, 2, 1.0f, 0.0f, a, 2, b, 2, c, 1};
    tu_fake_host_reset(&g_fake);
    CU_ASSERT_EQUAL(g_be->gemm(&g_fake.env, g_state, &g), NNM_E_INVALID);
    CU_ASSERT_PTR_NOT_NULL(strstr(g_fake.msg, "ldc"));
    g.ldc = 2;
    g.lda = 1;
    tu_fake_host_reset(&g_fake);
    CU_ASSERT_EQUAL(g_be->gemm(&g_fake.env, g_state, &g), NNM_E_INVALID);
    CU_ASSERT_PTR_NOT_NULL(strstr(g_fake.msg, "lda"));
    g.lda = 2;
    g.trans_b = 1;
    g.k = 3; /* B^T stored n x k: ldb must be >= 3 */
    g.lda = 3;
    tu_fake_host_reset(&g_fake);
    CU_ASSERT_EQUAL(g_be->gemm(&g_fake.env, g_state, &g), NNM_E_INVALID);
    CU_ASSERT_PTR_NOT_NULL(strstr(g_fake.msg, "ldb"));
    g = (nnm_gemm_args){sizeof g, 0, 0, 2, 2, 2, 1.0f, 0.0f, NULL, 2, b, 2, c, 2};
    tu_fake_host_reset(&g_fake);
    CU_ASSERT_EQUAL(g_be->gemm(&g_fake.env, g_state, &g), NNM_E_INVALID);
    g = (nnm_gemm_args){sizeof g, 0, 0, -1, 2, 2, 1.0f, 0.0f, a, 2, b, 2, c, 2};
    tu_fake_host_reset(&g_fake);
    CU_ASSERT_EQUAL(g_be->gemm(&g_fake.env, g_state, &g), NNM_E_SHAPE);
    g = (nnm_gemm_args){8, 0, 0, 2, 2, 2, 1.0f, 0.0f, a, 2, b, 2, c, 2};
    tu_fake_host_reset(&g_fake);
    CU_ASSERT_EQUAL(g_be->gemm(&g_fake.env, g_state, &g), NNM_E_INVALID);
    CU_ASSERT_EQUAL(g_fake.n_errors, 1);
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
    tu_fake_host_reset(&g_fake);
    nnm_status st = g_be->binary(&g_fake.env, g_state, &args);
    CU_ASSERT_EQUAL(st, NNM_OK);
    if (st != NNM_OK) {
        fprintf(stderr, "binary op %d: %s\n", op, g_fake.msg);
        return;
    }
    int bad = 0;
    for (int64_t i = 0; i < dim_or1(out, 0); i++)
        for (int64_t j = 0; j < dim_or1(out, 1); j++)
            for (int64_t k = 0; k < dim_or1(out, 2); k++) {
                /* broadcast dims of a/b have stride 0, so at3 reads the right element */
                double want = ref_binary(op, *at3(a, i, j, k), *at3(b, i, j, k));
                if (!tu_match(*at3(out, i, j, k), want, 1e-6, 1e-7))
                    bad++;
            }
    CU_ASSERT_EQUAL(bad, 0);
    if (bad)
        fprintf(stderr, "binary op %d: %d wrong\n", op, bad);
}

static void test_binary_contiguous(void) {
    float a[60], b[60], o[60];
    tu_fill_rand(&g_rng, a, 60);
    tu_fill_rand(&g_rng, b, 60);
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
    CU_ASSERT_EQUAL(g_be->binary(&g_fake.env, g_state, &args), NNM_OK);
    for (int i = 0; i < 8; i++)
        CU_ASSERT_EQUAL(x[i], 10.0f + (float)i);
}

static void test_binary_broadcast(void) {
    float a[60], b[60], o[60];
    tu_fill_rand(&g_rng, a, 60);
    tu_fill_rand(&g_rng, b, 60);
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
    tu_fake_host_reset(&g_fake);
    CU_ASSERT_EQUAL(g_be->binary(&g_fake.env, g_state, &args), NNM_E_SHAPE);
    CU_ASSERT_EQUAL(g_fake.n_errors, 1);

    tview_init(&vb, b, 2, (int64_t[]){2, 4}, NULL);
    tu_fake_host_reset(&g_fake);
    CU_ASSERT_EQUAL(g_be->binary(&g_fake.env, g_state, &args), NNM_E_SHAPE);

    tview_init(&vb, b, 1, (int64_t[]){8}, NULL);
    vb.d.dtype = (nnm_dtype){NNM_DTYPE_INT, 32, 1};
    tu_fake_host_reset(&g_fake);
    CU_ASSERT_EQUAL(g_be->binary(&g_fake.env, g_state, &args), NNM_E_DTYPE);
    CU_ASSERT_PTR_NOT_NULL(strstr(g_fake.msg, "f32"));
    vb.d.dtype = NNM_F32;

    args.op = 42;
    tu_fake_host_reset(&g_fake);
    CU_ASSERT_EQUAL(g_be->binary(&g_fake.env, g_state, &args), NNM_E_UNSUPPORTED);
    args.op = NNM_BINARY_ADD;
    args.a = NULL;
    tu_fake_host_reset(&g_fake);
    CU_ASSERT_EQUAL(g_be->binary(&g_fake.env, g_state, &args), NNM_E_INVALID);
    CU_ASSERT_EQUAL(g_fake.n_errors, 1);
    tu_fake_host_reset(&g_fake);
    CU_ASSERT_EQUAL(g_be->binary(&g_fake.env, g_state, NULL), NNM_E_INVALID);
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
    case NNM_UNARY_STEP: return x > 0.0 ? 1.0 : 0.0;
    case NNM_UNARY_SIGN: return x > 0.0 ? 1.0 : (x < 0.0 ? -1.0 : 0.0);
    default: return NAN;
    }
}

static void check_unary(int op, double alpha, const tview *x, const tview *out) {
    nnm_unary_args args = {sizeof args, op, alpha, &x->d, &out->d};
    tu_fake_host_reset(&g_fake);
    nnm_status st = g_be->unary(&g_fake.env, g_state, &args);
    CU_ASSERT_EQUAL(st, NNM_OK);
    if (st != NNM_OK) {
        fprintf(stderr, "unary op %d: %s\n", op, g_fake.msg);
        return;
    }
    int bad = 0;
    for (int64_t i = 0; i < dim_or1(out, 0); i++)
        for (int64_t j = 0; j < dim_or1(out, 1); j++)
            for (int64_t k = 0; k < dim_or1(out, 2); k++) {
                double want = ref_unary(op, *at3(x, i, j, k), alpha);
                if (!tu_match(*at3(out, i, j, k), want, 2e-6, 1e-7))
                    bad++;
            }
    CU_ASSERT_EQUAL(bad, 0);
    if (bad)
        fprintf(stderr, "unary op %d: %d wrong\n", op, bad);
}

static void test_unary(void) {
    float x[60], o[60];
    tu_fill_rand(&g_rng, x, 60);
    x[0] = 0.0f;
    x[1] = -0.0f;
    x[2] = NAN;
    x[3] = 30.0f; /* sigmoid/tanh saturation */
    x[4] = -30.0f;
    x[5] = -100.0f; /* sigmoid must not produce NaN */
    tview vx, vo;
    for (int op = NNM_UNARY_COPY; op <= NNM_UNARY_SIGN; op++) {
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
    CU_ASSERT_EQUAL(g_be->unary(&g_fake.env, g_state, &args), NNM_OK);
    CU_ASSERT_TRUE(o[0] >= 0.0f && o[0] < 1e-30f);

    /* errors */
    tview_init(&vx, x, 1, (int64_t[]){6}, NULL);
    tview_init(&vo, o, 1, (int64_t[]){5}, NULL);
    args = (nnm_unary_args){sizeof args, NNM_UNARY_EXP, 0.0, &vx.d, &vo.d};
    tu_fake_host_reset(&g_fake);
    CU_ASSERT_EQUAL(g_be->unary(&g_fake.env, g_state, &args), NNM_E_SHAPE);
    CU_ASSERT_EQUAL(g_fake.n_errors, 1);
    tview_init(&vo, o, 1, (int64_t[]){6}, NULL);
    vo.d.dtype = (nnm_dtype){NNM_DTYPE_BFLOAT, 16, 1};
    tu_fake_host_reset(&g_fake);
    CU_ASSERT_EQUAL(g_be->unary(&g_fake.env, g_state, &args), NNM_E_DTYPE);
    vo.d.dtype = NNM_F32;
    args.op = -1;
    tu_fake_host_reset(&g_fake);
    CU_ASSERT_EQUAL(g_be->unary(&g_fake.env, g_state, &args), NNM_E_UNSUPPORTED);
    CU_ASSERT_EQUAL(g_fake.n_errors, 1);
}

/* ------------------------------------------------------------------------ */
/* reduce (1.1)                                                              */
/* ------------------------------------------------------------------------ */

/* Element at multi-index idx of any view (no broadcast: the view's strides
 * say everything). */
static double at_nd(const tview *v, const int64_t *idx) {
    int64_t off = 0;
    for (int32_t d = 0; d < v->d.ndim; d++)
        off += idx[d] * v->strides[d];
    return *((const float *)v->d.data + v->d.byte_offset / sizeof(float) + off);
}

/* Runs reduce(op, alpha) of x into a contiguous out of shape oshape (into
 * obuf) and compares with a double reference. Returns the number of wrong
 * elements (or -1 when the call failed). */
static int check_reduce(int op, double alpha, const tview *x, const int64_t *oshape, float *obuf,
                        double rtol) {
    tview vo;
    tview_init(&vo, obuf, x->d.ndim, oshape, NULL);
    int64_t n_out = 1, n_x = 1;
    for (int32_t d = 0; d < x->d.ndim; d++) {
        n_out *= oshape[d];
        n_x *= x->shape[d];
    }
    for (int64_t i = 0; i < n_out; i++)
        obuf[i] = -12345.0f;
    nnm_reduce_args args = {sizeof args, op, alpha, &x->d, &vo.d};
    tu_fake_host_reset(&g_fake);
    nnm_status st = g_be->reduce(&g_fake.env, g_state, &args);
    CU_ASSERT_EQUAL(st, NNM_OK);
    if (st != NNM_OK) {
        fprintf(stderr, "reduce op %d: %s\n", op, g_fake.msg);
        return -1;
    }
    /* reference: walk every element of x, accumulate into its output slot */
    double *acc = calloc((size_t)(n_out > 0 ? n_out : 1), sizeof(double));
    int64_t *cnt = calloc((size_t)(n_out > 0 ? n_out : 1), sizeof(int64_t));
    int64_t idx[NNM_MAX_DIMS] = {0};
    for (int64_t e = 0; e < n_x; e++) {
        int64_t oi = 0;
        for (int32_t d = 0; d < x->d.ndim; d++)
            oi = oi * oshape[d] + (oshape[d] == 1 ? 0 : idx[d]);
        const double v = at_nd(x, idx);
        if (cnt[oi] == 0)
            acc[oi] = op == NNM_REDUCE_MAX || op == NNM_REDUCE_MIN ? v : 0.0;
        if (op == NNM_REDUCE_SUM || op == NNM_REDUCE_MEAN)
            acc[oi] += v;
        else if (isnan(v) || isnan(acc[oi]))
            acc[oi] = NAN;
        else if (op == NNM_REDUCE_MAX ? v > acc[oi] : v < acc[oi])
            acc[oi] = v;
        cnt[oi]++;
        for (int32_t d = x->d.ndim - 1; d >= 0; d--) {
            if (++idx[d] < x->shape[d])
                break;
            idx[d] = 0;
        }
    }
    int bad = 0;
    for (int64_t i = 0; i < n_out; i++) {
        double want = op == NNM_REDUCE_MEAN ? acc[i] / (double)cnt[i] : acc[i];
        want *= alpha;
        if (!tu_match(obuf[i], want, rtol, 1e-6))
            bad++;
    }
    if (bad)
        fprintf(stderr, "reduce op %d ndim %d: %d of %lld wrong\n", op, (int)x->d.ndim, bad,
                (long long)n_out);
    free(acc);
    free(cnt);
    return bad;
}

static void test_reduce(void) {
    static float x[4096], o[1024]; /* o: the largest output is [1, 1000] */
    tu_fill_rand(&g_rng, x, 4096);
    tview vx;
    for (int op = NNM_REDUCE_SUM; op <= NNM_REDUCE_MIN; op++) {
        const double alpha = op == NNM_REDUCE_MEAN ? 1.0 : -0.5;
        /* [3,4,5]: every subset of dims (bit i set: dim i reduced), keepdim layout */
        tview_init(&vx, x, 3, (int64_t[]){3, 4, 5}, NULL);
        for (int mask = 0; mask < 8; mask++) {
            int64_t os[3];
            for (int d = 0; d < 3; d++)
                os[d] = (mask >> d) & 1 ? 1 : vx.shape[d];
            CU_ASSERT_EQUAL(check_reduce(op, alpha, &vx, os, o, 1e-6), 0);
        }
        /* transposed [4,5] read from a [5,4] buffer, with a byte offset */
        tview_init(&vx, x, 2, (int64_t[]){4, 5}, (int64_t[]){1, 4});
        vx.d.byte_offset = 3 * sizeof(float);
        CU_ASSERT_EQUAL(check_reduce(op, alpha, &vx, (int64_t[]){4, 1}, o, 1e-6), 0);
        CU_ASSERT_EQUAL(check_reduce(op, alpha, &vx, (int64_t[]){1, 5}, o, 1e-6), 0);
        CU_ASSERT_EQUAL(check_reduce(op, alpha, &vx, (int64_t[]){1, 1}, o, 1e-6), 0);
        /* broadcast: [3,4,5] whose dim 0 has stride 0; sliced: every other row */
        tview_init(&vx, x, 3, (int64_t[]){3, 4, 5}, (int64_t[]){0, 5, 1});
        CU_ASSERT_EQUAL(check_reduce(op, alpha, &vx, (int64_t[]){1, 4, 1}, o, 1e-6), 0);
        CU_ASSERT_EQUAL(check_reduce(op, alpha, &vx, (int64_t[]){3, 1, 5}, o, 1e-6), 0);
        tview_init(&vx, x, 3, (int64_t[]){2, 3, 7}, (int64_t[]){60, 20, 2});
        CU_ASSERT_EQUAL(check_reduce(op, alpha, &vx, (int64_t[]){2, 1, 7}, o, 1e-6), 0);
        CU_ASSERT_EQUAL(check_reduce(op, alpha, &vx, (int64_t[]){1, 3, 1}, o, 1e-6), 0);
        /* negative stride (a flipped view) */
        tview_init(&vx, x, 2, (int64_t[]){6, 8}, (int64_t[]){-8, 1});
        vx.d.byte_offset = 40 * sizeof(float);
        CU_ASSERT_EQUAL(check_reduce(op, alpha, &vx, (int64_t[]){1, 8}, o, 1e-6), 0);
        /* wider than one tile of the kept-inner walk: [7, 300] -> [1, 300] */
        tview_init(&vx, x, 2, (int64_t[]){7, 300}, NULL);
        CU_ASSERT_EQUAL(check_reduce(op, alpha, &vx, (int64_t[]){1, 300}, o, 1e-6), 0);
        CU_ASSERT_EQUAL(check_reduce(op, alpha, &vx, (int64_t[]){7, 1}, o, 1e-6), 0);
        /* 8 dims with size-1 dims in between; 0-d; nothing reduced */
        tview_init(&vx, x, 8, (int64_t[]){2, 1, 3, 1, 2, 2, 1, 5}, NULL);
        CU_ASSERT_EQUAL(
            check_reduce(op, alpha, &vx, (int64_t[]){1, 1, 3, 1, 1, 2, 1, 5}, o, 1e-6), 0);
        CU_ASSERT_EQUAL(
            check_reduce(op, alpha, &vx, (int64_t[]){2, 1, 1, 1, 2, 1, 1, 1}, o, 1e-6), 0);
        tview_init(&vx, x + 9, 0, NULL, NULL);
        CU_ASSERT_EQUAL(check_reduce(op, alpha, &vx, NULL, o, 0.0), 0);
    }

    /* a long row: the sum stays accurate (accumulated in double) */
    float *big = malloc(sizeof(float) * 1000003);
    CU_ASSERT_PTR_NOT_NULL_FATAL(big);
    for (int i = 0; i < 1000003; i++)
        big[i] = 0.1f + 1e-3f * (float)(i % 7);
    tview_init(&vx, big, 1, (int64_t[]){1000003}, NULL);
    CU_ASSERT_EQUAL(check_reduce(NNM_REDUCE_SUM, 1.0, &vx, (int64_t[]){1}, o, 1e-7), 0);
    CU_ASSERT_EQUAL(check_reduce(NNM_REDUCE_MEAN, 1.0, &vx, (int64_t[]){1}, o, 1e-7), 0);
    tview_init(&vx, big, 2, (int64_t[]){1000, 1000}, NULL);
    CU_ASSERT_EQUAL(check_reduce(NNM_REDUCE_SUM, 1.0, &vx, (int64_t[]){1, 1000}, o, 1e-7), 0);
    free(big);

    /* NaN propagates through max/min and sums */
    float nanrow[6] = {1.0f, 2.0f, NAN, -3.0f, 4.0f, 0.5f};
    tview_init(&vx, nanrow, 2, (int64_t[]){2, 3}, NULL);
    for (int op = NNM_REDUCE_SUM; op <= NNM_REDUCE_MIN; op++)
        CU_ASSERT_EQUAL(check_reduce(op, 1.0, &vx, (int64_t[]){2, 1}, o, 1e-6), 0);
    CU_ASSERT_TRUE(isnan(o[0]) && o[1] == -3.0f); /* min of the second row */

    /* -inf and +inf in max/min */
    float infs[3] = {-INFINITY, -INFINITY, -INFINITY};
    tview_init(&vx, infs, 1, (int64_t[]){3}, NULL);
    CU_ASSERT_EQUAL(check_reduce(NNM_REDUCE_MAX, 1.0, &vx, (int64_t[]){1}, o, 0.0), 0);
    CU_ASSERT_EQUAL(o[0], -INFINITY);
}

static void test_reduce_empty_and_errors(void) {
    float x[16] = {0}, o[16];
    tu_fill_rand(&g_rng, x, 16);
    tview vx, vo;
    /* [0,3] -> [1,3]: sum 0, mean NaN, max/min an error (torch) */
    tview_init(&vx, NULL, 2, (int64_t[]){0, 3}, NULL);
    tview_init(&vo, o, 2, (int64_t[]){1, 3}, NULL);
    nnm_reduce_args args = {sizeof args, NNM_REDUCE_SUM, 2.0, &vx.d, &vo.d};
    CU_ASSERT_EQUAL(g_be->reduce(&g_fake.env, g_state, &args), NNM_OK);
    CU_ASSERT_TRUE(o[0] == 0.0f && o[1] == 0.0f && o[2] == 0.0f);
    args.op = NNM_REDUCE_MEAN;
    CU_ASSERT_EQUAL(g_be->reduce(&g_fake.env, g_state, &args), NNM_OK);
    CU_ASSERT_TRUE(isnan(o[0]) && isnan(o[1]) && isnan(o[2]));
    for (int op = NNM_REDUCE_MAX; op <= NNM_REDUCE_MIN; op++) {
        args.op = op;
        tu_fake_host_reset(&g_fake);
        CU_ASSERT_EQUAL(g_be->reduce(&g_fake.env, g_state, &args), NNM_E_SHAPE);
        CU_ASSERT_TRUE(g_fake.n_errors == 1 && strstr(g_fake.msg, "zero elements") != NULL);
    }
    /* [3,0] -> [3,0]: an empty output is fine even for max; [0,3] -> [0,1] too */
    tview_init(&vx, NULL, 2, (int64_t[]){3, 0}, NULL);
    tview_init(&vo, NULL, 2, (int64_t[]){3, 0}, NULL);
    args.op = NNM_REDUCE_MAX;
    CU_ASSERT_EQUAL(g_be->reduce(&g_fake.env, g_state, &args), NNM_OK);
    tview_init(&vx, NULL, 2, (int64_t[]){0, 3}, NULL);
    tview_init(&vo, NULL, 2, (int64_t[]){0, 1}, NULL);
    CU_ASSERT_EQUAL(g_be->reduce(&g_fake.env, g_state, &args), NNM_OK);

    /* errors: a size that is neither x's nor 1, ndim, non-contiguous out, dtype, op */
    tview_init(&vx, x, 2, (int64_t[]){4, 4}, NULL);
    tview_init(&vo, o, 2, (int64_t[]){2, 4}, NULL);
    args = (nnm_reduce_args){sizeof args, NNM_REDUCE_SUM, 1.0, &vx.d, &vo.d};
    tu_fake_host_reset(&g_fake);
    CU_ASSERT_EQUAL(g_be->reduce(&g_fake.env, g_state, &args), NNM_E_SHAPE);
    CU_ASSERT_TRUE(g_fake.n_errors == 1 && strstr(g_fake.msg, "dim 0") != NULL);
    tview_init(&vo, o, 1, (int64_t[]){4}, NULL);
    tu_fake_host_reset(&g_fake);
    CU_ASSERT_EQUAL(g_be->reduce(&g_fake.env, g_state, &args), NNM_E_SHAPE);
    tview_init(&vo, o, 2, (int64_t[]){4, 1}, (int64_t[]){2, 1});
    tu_fake_host_reset(&g_fake);
    CU_ASSERT_EQUAL(g_be->reduce(&g_fake.env, g_state, &args), NNM_E_INVALID);
    CU_ASSERT_PTR_NOT_NULL(strstr(g_fake.msg, "contiguous"));
    tview_init(&vo, o, 2, (int64_t[]){4, 1}, NULL);
    vx.d.dtype = (nnm_dtype){NNM_DTYPE_INT, 64, 1};
    tu_fake_host_reset(&g_fake);
    CU_ASSERT_EQUAL(g_be->reduce(&g_fake.env, g_state, &args), NNM_E_DTYPE);
    vx.d.dtype = NNM_F32;
    args.op = 4;
    tu_fake_host_reset(&g_fake);
    CU_ASSERT_EQUAL(g_be->reduce(&g_fake.env, g_state, &args), NNM_E_UNSUPPORTED);
    args.op = NNM_REDUCE_SUM;
    args.struct_size = 8;
    tu_fake_host_reset(&g_fake);
    CU_ASSERT_EQUAL(g_be->reduce(&g_fake.env, g_state, &args), NNM_E_INVALID);
    tu_fake_host_reset(&g_fake);
    CU_ASSERT_EQUAL(g_be->reduce(&g_fake.env, g_state, NULL), NNM_E_INVALID);
    CU_ASSERT_EQUAL(g_fake.n_errors, 1);
}

/* ------------------------------------------------------------------------ */
/* log_softmax (1.1)                                                         */
/* ------------------------------------------------------------------------ */

static int check_log_softmax(const float *x, int64_t rows, int64_t c, const float *out) {
    int bad = 0;
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * c;
        double m = -INFINITY;
        for (int64_t j = 0; j < c; j++)
            m = xr[j] > m ? xr[j] : m;
        double s = 0.0;
        for (int64_t j = 0; j < c; j++)
            s += exp((double)xr[j] - m);
        for (int64_t j = 0; j < c; j++) {
            const double want = (double)xr[j] - m - log(s);
            if (!tu_match(out[r * c + j], want, 1e-6, 1e-6))
                bad++;
        }
    }
    return bad;
}

static void test_log_softmax(void) {
    float x[256], xc[256], o[256];
    tu_fill_rand(&g_rng, x, 256);
    /* large values: a naive exp would overflow */
    for (int j = 0; j < 7; j++) {
        x[7 + j] = 1000.0f + (float)j;
        x[14 + j] = -3000.0f - 10.0f * (float)j;
        x[21 + j] = 5.0f; /* all equal: log(1/7) */
    }
    x[30] = -INFINITY; /* one -inf in a row: its output is -inf, the rest finite */
    memcpy(xc, x, sizeof x);
    tview vx, vo;
    const int64_t shapes[][3] = {{6, 7, 0}, {12, 21, 0}, {1, 1, 0}, {3, 4, 5}};
    const int32_t ndims[] = {2, 2, 2, 3};
    for (int k = 0; k < 4; k++) {
        tview_init(&vx, x, ndims[k], shapes[k], NULL);
        tview_init(&vo, o, ndims[k], shapes[k], NULL);
        nnm_log_softmax_args args = {sizeof args, 0, &vx.d, &vo.d};
        tu_fake_host_reset(&g_fake);
        CU_ASSERT_EQUAL_FATAL(g_be->log_softmax(&g_fake.env, g_state, &args), NNM_OK);
        const int64_t c = shapes[k][ndims[k] - 1];
        int64_t n = 1;
        for (int32_t d = 0; d < ndims[k]; d++)
            n *= shapes[k][d];
        CU_ASSERT_EQUAL(check_log_softmax(x, n / c, c, o), 0);
        if (k == 0) { /* rows of 7 */
            CU_ASSERT_EQUAL(o[30], -INFINITY);
            CU_ASSERT_TRUE(isfinite(o[29]) && isfinite(o[31]));
            CU_ASSERT_TRUE(fabs(o[21] - log(1.0 / 7.0)) < 1e-6);
            CU_ASSERT_TRUE(fabs(o[7 + 6] - (-log(1.0 + exp(-1.0) + exp(-2.0) + exp(-3.0) +
                                                 exp(-4.0) + exp(-5.0) + exp(-6.0)))) < 1e-6);
        }
    }

    /* 1-d, 0-d (log_softmax of one value is 0), byte_offset, in place */
    tview_init(&vx, x, 1, (int64_t[]){9}, NULL);
    tview_init(&vo, o, 1, (int64_t[]){9}, NULL);
    vx.d.byte_offset = 2 * sizeof(float);
    nnm_log_softmax_args args = {sizeof args, 0, &vx.d, &vo.d};
    CU_ASSERT_EQUAL(g_be->log_softmax(&g_fake.env, g_state, &args), NNM_OK);
    CU_ASSERT_EQUAL(check_log_softmax(x + 2, 1, 9, o), 0);
    tview_init(&vx, x, 0, NULL, NULL);
    tview_init(&vo, o, 0, NULL, NULL);
    CU_ASSERT_EQUAL(g_be->log_softmax(&g_fake.env, g_state, &args), NNM_OK);
    CU_ASSERT_EQUAL(o[0], 0.0f);
    tview_init(&vx, x, 2, (int64_t[]){12, 21}, NULL);
    args.out = &vx.d;
    CU_ASSERT_EQUAL(g_be->log_softmax(&g_fake.env, g_state, &args), NNM_OK);
    CU_ASSERT_EQUAL(check_log_softmax(xc, 12, 21, x), 0);
    /* empty last dim */
    tview_init(&vx, NULL, 2, (int64_t[]){3, 0}, NULL);
    tview_init(&vo, NULL, 2, (int64_t[]){3, 0}, NULL);
    args = (nnm_log_softmax_args){sizeof args, 0, &vx.d, &vo.d};
    CU_ASSERT_EQUAL(g_be->log_softmax(&g_fake.env, g_state, &args), NNM_OK);

    /* errors: shape mismatch, non-contiguous, dtype */
    tview_init(&vx, x, 2, (int64_t[]){4, 5}, NULL);
    tview_init(&vo, o, 2, (int64_t[]){5, 4}, NULL);
    tu_fake_host_reset(&g_fake);
    CU_ASSERT_EQUAL(g_be->log_softmax(&g_fake.env, g_state, &args), NNM_E_SHAPE);
    tview_init(&vo, o, 2, (int64_t[]){4, 5}, NULL);
    tview_init(&vx, x, 2, (int64_t[]){4, 5}, (int64_t[]){1, 4});
    tu_fake_host_reset(&g_fake);
    CU_ASSERT_EQUAL(g_be->log_softmax(&g_fake.env, g_state, &args), NNM_E_INVALID);
    CU_ASSERT_TRUE(g_fake.n_errors == 1 && strstr(g_fake.msg, "contiguous") != NULL);
    tview_init(&vx, x, 2, (int64_t[]){4, 5}, NULL);
    vo.d.dtype = (nnm_dtype){NNM_DTYPE_FLOAT, 64, 1};
    tu_fake_host_reset(&g_fake);
    CU_ASSERT_EQUAL(g_be->log_softmax(&g_fake.env, g_state, &args), NNM_E_DTYPE);
    tu_fake_host_reset(&g_fake);
    CU_ASSERT_EQUAL(g_be->log_softmax(&g_fake.env, g_state, NULL), NNM_E_INVALID);
}

/* ------------------------------------------------------------------------ */
/* nll, nll_backward (1.1)                                                   */
/* ------------------------------------------------------------------------ */

/* A view of i64 targets (strided). */
static void tview_init_i64(tview *v, int64_t *data, int64_t n, int64_t stride) {
    tview_init(v, (float *)(void *)data, 1, (int64_t[]){n}, (int64_t[]){stride});
    v->d.dtype = (nnm_dtype){NNM_DTYPE_INT, 64, 1};
}

static double ref_nll(const float *row, int64_t c, int64_t t, int64_t ignore, double e) {
    if (t == ignore)
        return 0.0;
    double s = 0.0;
    for (int64_t j = 0; j < c; j++)
        s += -(double)row[j];
    return (1.0 - e) * -(double)row[t] + (e != 0.0 ? e * s / (double)c : 0.0);
}

static void run_nll(const tview *lp, const tview *tg, int64_t ignore, double e, float *out,
                    float *count, nnm_status want) {
    const int64_t n = lp->shape[0];
    tview vo, vc;
    tview_init(&vo, out, 1, (int64_t[]){n}, NULL);
    tview_init(&vc, count, 1, (int64_t[]){1}, NULL);
    nnm_nll_args a = {sizeof a, 0, ignore, e, &lp->d, &tg->d, &vo.d, count ? &vc.d : NULL};
    tu_fake_host_reset(&g_fake);
    const nnm_status st = g_be->nll(&g_fake.env, g_state, &a);
    CU_ASSERT_EQUAL(st, want);
    if (st != want)
        fprintf(stderr, "nll: got %d, want %d: %s\n", (int)st, (int)want, g_fake.msg);
}

static void test_nll(void) {
    enum { N = 6, C = 5 };
    float x[N * C], lp[N * C], out[N], count = -1.0f;
    tu_fill_rand(&g_rng, x, N * C);
    tview vx, vlp, vt;
    tview_init(&vx, x, 2, (int64_t[]){N, C}, NULL);
    tview_init(&vlp, lp, 2, (int64_t[]){N, C}, NULL);
    nnm_log_softmax_args ls = {sizeof ls, 0, &vx.d, &vlp.d};
    CU_ASSERT_EQUAL_FATAL(g_be->log_softmax(&g_fake.env, g_state, &ls), NNM_OK);

    /* targets at stride 2 in an i64 buffer; ignore_index -100, then 2 (a valid class,
     * rows 1 and 4) */
    int64_t tbuf[2 * N] = {1, 99, -100, 99, 4, 99, 0, 99, 2, 99, 3, 99};
    tview_init_i64(&vt, tbuf, N, 2);
    const int64_t ignores[] = {-100, 2};
    const double smooth[] = {0.0, 0.1, 1.0};
    for (int k = 0; k < 2; k++)
        for (int s = 0; s < 3; s++) {
            tbuf[2] = ignores[k]; /* row 1: -100 (out of range but ignored), or class 2 */
            for (int i = 0; i < N; i++)
                out[i] = 777.0f;
            count = -1.0f;
            run_nll(&vlp, &vt, ignores[k], smooth[s], out, &count, NNM_OK);
            int bad = 0, kept = 0;
            for (int i = 0; i < N; i++) {
                const int64_t t = tbuf[2 * i];
                kept += t != ignores[k];
                if (!tu_match(out[i], ref_nll(lp + i * C, C, t, ignores[k], smooth[s]), 1e-6,
                                  1e-7))
                    bad++;
            }
            CU_ASSERT_EQUAL(bad, 0);
            CU_ASSERT_EQUAL(count, (float)kept);
            run_nll(&vlp, &vt, ignores[k], smooth[s], out, NULL, NNM_OK); /* count optional */
        }

    /* e = 0 never touches the other classes: a -inf elsewhere stays harmless */
    float lp2[C] = {-INFINITY, -0.5f, -1.0f, -INFINITY, -2.0f};
    int64_t t2 = 1;
    tview vlp2, vt2;
    tview_init(&vlp2, lp2, 2, (int64_t[]){1, C}, NULL);
    tview_init_i64(&vt2, &t2, 1, 1);
    run_nll(&vlp2, &vt2, -100, 0.0, out, NULL, NNM_OK);
    CU_ASSERT_EQUAL(out[0], 0.5f);

    /* N = 0 */
    tview_init(&vlp2, NULL, 2, (int64_t[]){0, C}, NULL);
    tview_init_i64(&vt2, NULL, 0, 1);
    count = -1.0f;
    run_nll(&vlp2, &vt2, -100, 0.0, NULL, &count, NNM_OK);
    CU_ASSERT_EQUAL(count, 0.0f);

    /* an out-of-range target: an error naming it, and nothing written */
    int64_t tb[N] = {0, 1, 7, 2, 3, 4};
    tview_init_i64(&vt, tb, N, 1);
    for (int i = 0; i < N; i++)
        out[i] = 777.0f;
    count = -1.0f;
    run_nll(&vlp, &vt, -100, 0.0, out, &count, NNM_E_INVALID);
    CU_ASSERT_EQUAL(g_fake.n_errors, 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(g_fake.msg, "nll: target 7 at row 2 is outside [0, 5)"));
    CU_ASSERT_TRUE(out[0] == 777.0f && out[5] == 777.0f && count == -1.0f);
    tb[2] = -1;
    run_nll(&vlp, &vt, -100, 0.0, out, NULL, NNM_E_INVALID);
    CU_ASSERT_PTR_NOT_NULL(strstr(g_fake.msg, "target -1 at row 2"));
    tb[2] = 7;
    run_nll(&vlp, &vt, 7, 0.0, out, NULL, NNM_OK); /* out of range but ignored: fine */
    CU_ASSERT_EQUAL(out[2], 0.0f);
    tb[2] = 2;

    /* wrong dtypes and shapes */
    vt.d.dtype = (nnm_dtype){NNM_DTYPE_INT, 32, 1};
    run_nll(&vlp, &vt, -100, 0.0, out, NULL, NNM_E_DTYPE);
    CU_ASSERT_PTR_NOT_NULL(strstr(g_fake.msg, "i64"));
    vt.d.dtype = (nnm_dtype){NNM_DTYPE_INT, 64, 1};
    vlp.d.dtype = (nnm_dtype){NNM_DTYPE_INT, 64, 1};
    run_nll(&vlp, &vt, -100, 0.0, out, NULL, NNM_E_DTYPE);
    vlp.d.dtype = NNM_F32;
    tview_init_i64(&vt, tb, N - 1, 1);
    run_nll(&vlp, &vt, -100, 0.0, out, NULL, NNM_E_SHAPE);
    tview_init_i64(&vt, tb, N, 1);
    tview_init(&vlp2, lp, 1, (int64_t[]){N * C}, NULL);
    run_nll(&vlp2, &vt, -100, 0.0, out, NULL, NNM_E_SHAPE);
    tview_init(&vlp2, lp, 2, (int64_t[]){N, C}, (int64_t[]){1, N}); /* transposed */
    run_nll(&vlp2, &vt, -100, 0.0, out, NULL, NNM_E_INVALID);
    run_nll(&vlp, &vt, -100, 1.5, out, NULL, NNM_E_INVALID); /* smoothing outside [0, 1] */
    CU_ASSERT_PTR_NOT_NULL(strstr(g_fake.msg, "label_smoothing"));
    tu_fake_host_reset(&g_fake);
    CU_ASSERT_EQUAL(g_be->nll(&g_fake.env, g_state, NULL), NNM_E_INVALID);
}

static void test_nll_backward(void) {
    enum { N = 5, C = 4 };
    float lp[N * C], gl[N * C], g[2 * N];
    tu_fill_rand(&g_rng, lp, N * C);
    tu_fill_rand(&g_rng, g, 2 * N);
    int64_t tb[N] = {3, -100, 0, 2, 1};
    tview vg, vt, vgl, vlp;
    tview_init(&vg, g, 1, (int64_t[]){N}, (int64_t[]){2}); /* strided grad */
    tview_init_i64(&vt, tb, N, 1);
    tview_init(&vgl, gl, 2, (int64_t[]){N, C}, NULL);
    tview_init(&vlp, lp, 2, (int64_t[]){N, C}, NULL);
    const double smooth[] = {0.0, 0.2};
    for (int s = 0; s < 2; s++) {
        const double e = smooth[s];
        for (int i = 0; i < N * C; i++)
            gl[i] = 777.0f;
        nnm_nll_backward_args a = {sizeof a, 0, -100, e, &vg.d, &vt.d, &vgl.d};
        tu_fake_host_reset(&g_fake);
        CU_ASSERT_EQUAL_FATAL(g_be->nll_backward(&g_fake.env, g_state, &a), NNM_OK);
        int bad = 0;
        for (int i = 0; i < N; i++)
            for (int c = 0; c < C; c++) {
                const double want = tb[i] == -100 ? 0.0
                                                  : (double)g[2 * i] *
                                                        (-(1.0 - e) * (c == tb[i]) - e / C);
                if (!tu_match(gl[i * C + c], want, 1e-6, 1e-7))
                    bad++;
            }
        CU_ASSERT_EQUAL(bad, 0);

        /* and it is the gradient of sum_i g[i] * nll(logp)[i]: nll is linear in
         * logp, so central differences are exact up to float rounding */
        float out_p[N], out_m[N];
        bad = 0;
        for (int k = 0; k < N * C; k++) {
            const float keep = lp[k], h = 0.25f;
            lp[k] = keep + h;
            run_nll(&vlp, &vt, -100, e, out_p, NULL, NNM_OK);
            lp[k] = keep - h;
            run_nll(&vlp, &vt, -100, e, out_m, NULL, NNM_OK);
            lp[k] = keep;
            double fd = 0.0;
            for (int i = 0; i < N; i++)
                fd += (double)g[2 * i] * ((double)out_p[i] - (double)out_m[i]) / (2.0 * h);
            if (!tu_match(gl[k], fd, 1e-4, 1e-5))
                bad++;
        }
        CU_ASSERT_EQUAL(bad, 0);
    }

    /* an out-of-range target; a grad of the wrong length */
    tb[4] = 4;
    nnm_nll_backward_args a = {sizeof a, 0, -100, 0.0, &vg.d, &vt.d, &vgl.d};
    tu_fake_host_reset(&g_fake);
    CU_ASSERT_EQUAL(g_be->nll_backward(&g_fake.env, g_state, &a), NNM_E_INVALID);
    CU_ASSERT_PTR_NOT_NULL(strstr(g_fake.msg, "target 4 at row 4 is outside [0, 4)"));
    tb[4] = 1;
    tview_init(&vg, g, 1, (int64_t[]){N + 1}, NULL);
    tu_fake_host_reset(&g_fake);
    CU_ASSERT_EQUAL(g_be->nll_backward(&g_fake.env, g_state, &a), NNM_E_SHAPE);
    CU_ASSERT_EQUAL(g_fake.n_errors, 1);
    tu_fake_host_reset(&g_fake);
    CU_ASSERT_EQUAL(g_be->nll_backward(&g_fake.env, g_state, NULL), NNM_E_INVALID);
}

/* ------------------------------------------------------------------------ */
/* sgd_step, adam_step (1.1)                                                 */
/* ------------------------------------------------------------------------ */

enum { OPT_N = 37, OPT_STEPS = 3 };

/* Relative distance, with a floor so values near 0 compare absolutely. */
static double rel_err(double got, double want, double floor_) {
    return fabs(got - want) / fmax(fabs(want), floor_);
}

static void test_sgd_vs_reference(void) {
    struct {
        float lr, momentum, dampening, wd;
        int nesterov;
    } cfg[] = {
        {0.1f, 0.9f, 0.1f, 0.01f, 0}, {0.1f, 0.9f, 0.0f, 0.01f, 1}, {0.05f, 0.0f, 0.0f, 0.0f, 0},
        {0.05f, 0.0f, 0.0f, 0.1f, 0}, {0.2f, 0.5f, 0.0f, 0.0f, 0},
    };
    for (size_t k = 0; k < sizeof cfg / sizeof cfg[0]; k++) {
        float p[OPT_N], buf[OPT_N], g[OPT_STEPS][OPT_N];
        double rp[OPT_N], rb[OPT_N];
        tu_fill_rand(&g_rng, p, OPT_N);
        for (int s = 0; s < OPT_STEPS; s++)
            tu_fill_rand(&g_rng, g[s], OPT_N);
        for (int i = 0; i < OPT_N; i++)
            rp[i] = p[i];
        double worst = 0.0;
        for (int s = 0; s < OPT_STEPS; s++) {
            nnm_sgd_args a = {sizeof a, cfg[k].nesterov, s == 0, 0, OPT_N, p, g[s],
                              cfg[k].momentum != 0.0f ? buf : NULL, cfg[k].lr,
                              cfg[k].momentum, cfg[k].dampening, cfg[k].wd};
            tu_fake_host_reset(&g_fake);
            CU_ASSERT_EQUAL_FATAL(g_be->sgd_step(&g_fake.env, g_state, &a), NNM_OK);
            for (int i = 0; i < OPT_N; i++) {
                double d = (double)g[s][i] + (double)cfg[k].wd * rp[i];
                if (cfg[k].momentum != 0.0f) {
                    rb[i] = s == 0 ? d
                                   : (double)cfg[k].momentum * rb[i] +
                                         (1.0 - (double)cfg[k].dampening) * d;
                    d = cfg[k].nesterov ? d + (double)cfg[k].momentum * rb[i] : rb[i];
                }
                rp[i] -= (double)cfg[k].lr * d;
                worst = fmax(worst, rel_err(p[i], rp[i], 1e-2));
            }
        }
        CU_ASSERT_TRUE(worst < 2e-6);
        if (worst >= 2e-6)
            fprintf(stderr, "sgd config %zu: worst relative error %g\n", k, worst);
    }
    /* errors */
    float p[4] = {0}, g[4] = {0};
    nnm_sgd_args a = {sizeof a, 0, 1, 0, 4, p, g, NULL, 0.1f, 0.9f, 0.0f, 0.0f};
    tu_fake_host_reset(&g_fake);
    CU_ASSERT_EQUAL(g_be->sgd_step(&g_fake.env, g_state, &a), NNM_E_INVALID);
    CU_ASSERT_TRUE(g_fake.n_errors == 1 && strstr(g_fake.msg, "momentum_buf") != NULL);
    a.momentum = 0.0f; /* then the buffer may be NULL */
    CU_ASSERT_EQUAL(g_be->sgd_step(&g_fake.env, g_state, &a), NNM_OK);
    a.n = -1;
    tu_fake_host_reset(&g_fake);
    CU_ASSERT_EQUAL(g_be->sgd_step(&g_fake.env, g_state, &a), NNM_E_INVALID);
    a.n = 0;
    a.param = NULL;
    CU_ASSERT_EQUAL(g_be->sgd_step(&g_fake.env, g_state, &a), NNM_OK); /* n = 0: nothing to touch */
    a.n = 4;
    tu_fake_host_reset(&g_fake);
    CU_ASSERT_EQUAL(g_be->sgd_step(&g_fake.env, g_state, &a), NNM_E_INVALID);
    CU_ASSERT_PTR_NOT_NULL(strstr(g_fake.msg, "param"));
    tu_fake_host_reset(&g_fake);
    CU_ASSERT_EQUAL(g_be->sgd_step(&g_fake.env, g_state, NULL), NNM_E_INVALID);
}

static void test_adam_vs_reference(void) {
    struct {
        float lr, b1, b2, eps, wd;
        int decoupled, amsgrad;
    } cfg[] = {
        {0.01f, 0.9f, 0.999f, 1e-8f, 0.0f, 0, 0},  {0.01f, 0.9f, 0.999f, 1e-8f, 0.01f, 0, 0},
        {0.01f, 0.9f, 0.999f, 1e-8f, 0.01f, 0, 1}, {0.01f, 0.9f, 0.999f, 1e-8f, 0.01f, 1, 0},
        {0.02f, 0.8f, 0.99f, 1e-6f, 0.1f, 1, 1},
    };
    for (size_t k = 0; k < sizeof cfg / sizeof cfg[0]; k++) {
        float p[OPT_N], m[OPT_N] = {0}, v[OPT_N] = {0}, vmax[OPT_N] = {0}, g[OPT_STEPS][OPT_N];
        double rp[OPT_N], rm[OPT_N] = {0}, rv[OPT_N] = {0}, rvmax[OPT_N] = {0};
        tu_fill_rand(&g_rng, p, OPT_N);
        for (int s = 0; s < OPT_STEPS; s++) {
            tu_fill_rand(&g_rng, g[s], OPT_N);
            for (int i = 0; i < OPT_N; i++)
                g[s][i] *= s == 1 ? 0.05f : 1.0f; /* a small step makes amsgrad's max matter */
        }
        for (int i = 0; i < OPT_N; i++)
            rp[i] = p[i];
        double worst = 0.0;
        for (int s = 0; s < OPT_STEPS; s++) {
            nnm_adam_args a = {sizeof a, cfg[k].decoupled, s + 1, OPT_N, p, g[s], m, v,
                               cfg[k].amsgrad ? vmax : NULL, cfg[k].lr, cfg[k].b1, cfg[k].b2,
                               cfg[k].eps, cfg[k].wd};
            tu_fake_host_reset(&g_fake);
            CU_ASSERT_EQUAL_FATAL(g_be->adam_step(&g_fake.env, g_state, &a), NNM_OK);
            const double lr = cfg[k].lr, b1 = cfg[k].b1, b2 = cfg[k].b2, wd = cfg[k].wd;
            const double bc1 = 1.0 - pow(b1, s + 1), bc2 = 1.0 - pow(b2, s + 1);
            for (int i = 0; i < OPT_N; i++) {
                double gi = g[s][i];
                if (cfg[k].decoupled)
                    rp[i] *= 1.0 - lr * wd;
                else
                    gi += wd * rp[i];
                rm[i] = b1 * rm[i] + (1.0 - b1) * gi;
                rv[i] = b2 * rv[i] + (1.0 - b2) * gi * gi;
                double vv = rv[i];
                if (cfg[k].amsgrad) {
                    rvmax[i] = fmax(rvmax[i], rv[i]);
                    vv = rvmax[i];
                }
                rp[i] -= lr / bc1 * rm[i] / (sqrt(vv) / sqrt(bc2) + (double)cfg[k].eps);
                worst = fmax(worst, rel_err(p[i], rp[i], 1e-2));
            }
        }
        CU_ASSERT_TRUE(worst < 2e-6);
        if (worst >= 2e-6)
            fprintf(stderr, "adam config %zu: worst relative error %g\n", k, worst);
    }
    /* errors */
    float p[4] = {0}, g[4] = {0}, m[4] = {0}, v[4] = {0};
    nnm_adam_args a = {sizeof a, 0, 0, 4, p, g, m, v, NULL, 0.1f, 0.9f, 0.999f, 1e-8f, 0.0f};
    tu_fake_host_reset(&g_fake);
    CU_ASSERT_EQUAL(g_be->adam_step(&g_fake.env, g_state, &a), NNM_E_INVALID);
    CU_ASSERT_TRUE(g_fake.n_errors == 1 && strstr(g_fake.msg, "step") != NULL);
    a.step = 1;
    a.exp_avg_sq = NULL;
    tu_fake_host_reset(&g_fake);
    CU_ASSERT_EQUAL(g_be->adam_step(&g_fake.env, g_state, &a), NNM_E_INVALID);
    CU_ASSERT_PTR_NOT_NULL(strstr(g_fake.msg, "exp_avg_sq"));
    a.exp_avg_sq = v;
    a.struct_size = 16;
    tu_fake_host_reset(&g_fake);
    CU_ASSERT_EQUAL(g_be->adam_step(&g_fake.env, g_state, &a), NNM_E_INVALID);
    tu_fake_host_reset(&g_fake);
    CU_ASSERT_EQUAL(g_be->adam_step(&g_fake.env, g_state, NULL), NNM_E_INVALID);
}

/* Against torch.optim itself (tests/golden/make_optim_step_golden.py). */
static void test_optim_golden(void) {
    int n_cases = (int)(sizeof osg_cases / sizeof osg_cases[0]);
    int exact = 0, total = 0;
    double worst = 0.0;
    for (int k = 0; k < n_cases; k++) {
        const osg_case *c = &osg_cases[k];
        float p[OSG_N], buf[OSG_N], m[OSG_N] = {0}, v[OSG_N] = {0}, vmax[OSG_N] = {0};
        memcpy(p, osg_param0, sizeof p);
        for (int s = 0; s < OSG_STEPS; s++) {
            nnm_status st;
            tu_fake_host_reset(&g_fake);
            if (c->kind == OSG_SGD) {
                nnm_sgd_args a = {sizeof a, c->nesterov, s == 0, 0, OSG_N, p, osg_grads[s],
                                  c->momentum != 0.0f ? buf : NULL, c->lr, c->momentum,
                                  c->dampening, c->weight_decay};
                st = g_be->sgd_step(&g_fake.env, g_state, &a);
            } else {
                nnm_adam_args a = {sizeof a, c->kind == OSG_ADAMW, s + 1, OSG_N, p, osg_grads[s],
                                   m, v, c->amsgrad ? vmax : NULL, c->lr, c->beta1, c->beta2,
                                   c->eps, c->weight_decay};
                st = g_be->adam_step(&g_fake.env, g_state, &a);
            }
            CU_ASSERT_EQUAL_FATAL(st, NNM_OK);
            int case_bad = 0;
            for (int i = 0; i < OSG_N; i++) {
                const double want = c->after[s][i], e = rel_err(p[i], want, 1e-30);
                worst = fmax(worst, e);
                exact += p[i] == c->after[s][i];
                total++;
                if (e > 1e-6)
                    case_bad++;
            }
            CU_ASSERT_EQUAL(case_bad, 0);
            if (case_bad)
                fprintf(stderr, "optim golden %s step %d: %d elements off by > 1e-6 rel\n",
                        c->name, s + 1, case_bad);
        }
    }
    fprintf(stderr, "\n    optim golden: %d/%d values bit-identical to torch, worst rel %.3g ",
            exact, total, worst);
}

/* ------------------------------------------------------------------------ */
/* embedding_bag (1.5): segment reductions of weight rows                     */
/* ------------------------------------------------------------------------ */

static void tview_i64(tview *v, int64_t *data, int64_t n) {
    tview_init(v, (float *)(void *)data, 1, &n, NULL);
    v->d.dtype = (nnm_dtype){NNM_DTYPE_INT, 64, 1};
}

/* layer_norm (1.5): rows [0, 1, 2, 3] and [2, 2, 2, 2] (constant: y =
 * bias) with a residual and the affine, the gradients, and bad arguments
 * refused (sizes, counts, NULLs). */
static void test_layer_norm_slots(void) {
    CU_ASSERT_PTR_NOT_NULL_FATAL(g_be->layer_norm);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g_be->layer_norm_backward);
    float x[8] = {0, 1, 2, 3, 1, 1, 1, 1}, r[8] = {0, 0, 0, 0, 1, 1, 1, 1}, w[4] = {1, 2, 1, 1},
          b[4] = {0, 0, 1, 0}, y[8], mean[2], rstd[2], g[8] = {1, 0, 0, 0, 0, 0, 0, 0}, gx[8], gw[4], gb[4];
    tview X, R, W, B, Y, M, S, G, GX, GW, GB;
    tview_init(&X, x, 2, (int64_t[]){2, 4}, NULL);
    tview_init(&R, r, 2, (int64_t[]){2, 4}, NULL);
    tview_init(&W, w, 1, (int64_t[]){4}, NULL);
    tview_init(&B, b, 1, (int64_t[]){4}, NULL);
    tview_init(&Y, y, 2, (int64_t[]){2, 4}, NULL);
    tview_init(&M, mean, 1, (int64_t[]){2}, NULL);
    tview_init(&S, rstd, 1, (int64_t[]){2}, NULL);
    tview_init(&G, g, 2, (int64_t[]){2, 4}, NULL);
    tview_init(&GX, gx, 2, (int64_t[]){2, 4}, NULL);
    tview_init(&GW, gw, 1, (int64_t[]){4}, NULL);
    tview_init(&GB, gb, 1, (int64_t[]){4}, NULL);
    nnm_layer_norm_args a;
    memset(&a, 0, sizeof a);
    a.struct_size = sizeof a;
    a.rows = 2, a.cols = 4, a.eps = 0.0;
    a.x = &X.d, a.residual = &R.d, a.weight = &W.d, a.bias = &B.d, a.y = &Y.d, a.mean = &M.d, a.rstd = &S.d;
    CU_ASSERT_EQUAL(g_be->layer_norm(&g_fake.env, g_state, &a), NNM_OK);
    /* row 0: mean 1.5, var 1.25; row 1 (x + r = 2) is constant */
    CU_ASSERT_EQUAL(mean[0], 1.5f);
    CU_ASSERT_TRUE(fabsf(rstd[0] - 1.0f / sqrtf(1.25f)) < 1e-6f);
    CU_ASSERT_TRUE(fabsf(y[0] - (-1.5f / sqrtf(1.25f))) < 1e-5f);
    CU_ASSERT_TRUE(fabsf(y[1] - 2.0f * (-0.5f / sqrtf(1.25f))) < 1e-5f);
    CU_ASSERT_TRUE(fabsf(y[2] - (0.5f / sqrtf(1.25f) + 1.0f)) < 1e-5f);
    CU_ASSERT_EQUAL(mean[1], 2.0f);
    a.eps = 1e-5; /* the constant row: y = bias */
    CU_ASSERT_EQUAL(g_be->layer_norm(&g_fake.env, g_state, &a), NNM_OK);
    CU_ASSERT_TRUE(y[4] == 0 && y[5] == 0 && y[6] == 1 && y[7] == 0);
    a.grad_out = &G.d, a.grad_x = &GX.d, a.grad_weight = &GW.d, a.grad_bias = &GB.d;
    CU_ASSERT_EQUAL(g_be->layer_norm_backward(&g_fake.env, g_state, &a), NNM_OK);
    CU_ASSERT_TRUE(gb[0] == 1 && gb[1] == 0 && gb[2] == 0 && gb[3] == 0); /* dbias = sum of g */
    CU_ASSERT_TRUE(fabsf(gw[0] - (-1.5f * rstd[0])) < 1e-5f && gw[1] == 0); /* dweight = sum of g xh */
    float sum = 0;
    for (int k = 0; k < 4; k++) sum += gx[k]; /* dx sums to 0 over a row */
    CU_ASSERT_TRUE(fabsf(sum) < 1e-5f);
    for (int k = 4; k < 8; k++) CU_ASSERT_EQUAL(gx[k], 0.0f); /* g 0 there */
    /* bad arguments: refused, nothing read out of range */
    CU_ASSERT_EQUAL(g_be->layer_norm(&g_fake.env, g_state, NULL), NNM_E_INVALID);
    a.struct_size = 8;
    CU_ASSERT_EQUAL(g_be->layer_norm(&g_fake.env, g_state, &a), NNM_E_INVALID);
    a.struct_size = sizeof a;
    a.cols = 0;
    CU_ASSERT_EQUAL(g_be->layer_norm(&g_fake.env, g_state, &a), NNM_E_INVALID);
    a.cols = 5; /* 2 x 5 is not x's 8 elements */
    CU_ASSERT_EQUAL(g_be->layer_norm(&g_fake.env, g_state, &a), NNM_E_SHAPE);
    a.cols = 4;
    a.eps = -1;
    CU_ASSERT_EQUAL(g_be->layer_norm(&g_fake.env, g_state, &a), NNM_E_INVALID);
    a.eps = 1e-5;
    a.mean = NULL;
    CU_ASSERT_EQUAL(g_be->layer_norm(&g_fake.env, g_state, &a), NNM_E_INVALID);
    a.mean = &M.d;
    a.grad_out = NULL;
    CU_ASSERT_EQUAL(g_be->layer_norm_backward(&g_fake.env, g_state, &a), NNM_E_INVALID);
}

/* Bags [1, 3, 1], [], [0, 2] of a 4 x 3 table with padding_idx 3: sum
 * (with per-sample weights), mean and max (NaN never replaces a maximum,
 * the first maximum wins), their gradients, and corrupt indices and offsets
 * refused. */
static void test_embedding_bag(void) {
    CU_ASSERT_PTR_NOT_NULL_FATAL(g_be->embedding_bag);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g_be->embedding_bag_backward);
    float w[12] = {1, NAN, 3, 4, 5, 6, 7, 8, 9, -1, -2, -3};
    int64_t idx[5] = {1, 3, 1, 0, 2}, off[4] = {0, 3, 3, 5};
    float psw[5] = {2, 10, 0.5f, 1, -1}, y[9], g[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, gw[12], gp[5];
    int64_t arg[9];
    tview W, I, O, P, Y, A, G, GW, GP;
    tview_init(&W, w, 2, (int64_t[]){4, 3}, NULL);
    tview_i64(&I, idx, 5);
    tview_i64(&O, off, 4);
    tview_init(&P, psw, 1, (int64_t[]){5}, NULL);
    tview_init(&Y, y, 2, (int64_t[]){3, 3}, NULL);
    tview_init(&A, (float *)(void *)arg, 2, (int64_t[]){3, 3}, NULL);
    A.d.dtype = (nnm_dtype){NNM_DTYPE_INT, 64, 1};
    tview_init(&G, g, 2, (int64_t[]){3, 3}, NULL);
    tview_init(&GW, gw, 2, (int64_t[]){4, 3}, NULL);
    tview_init(&GP, gp, 1, (int64_t[]){5}, NULL);
    nnm_embedding_bag_args a = {sizeof a, NNM_REDUCE_SUM, 3, 4, 3, 5, 3, &W.d, &I.d, &O.d, &P.d, &Y.d,
                                NULL, NULL, NULL, NULL};
    /* sum with weights: 2 w1 + 0.5 w1, 0, w0 - w2 */
    CU_ASSERT_EQUAL(g_be->embedding_bag(&g_fake.env, g_state, &a), NNM_OK);
    const float sum_w[9] = {10, 12.5f, 15, 0, 0, 0, 1 - 7, NAN, 3 - 9};
    for (int k = 0; k < 9; k++)
        CU_ASSERT_TRUE(k == 7 ? isnan(y[k]) : y[k] == sum_w[k]);
    /* its gradients: rows += g[bag] * psw; psw's = g[bag] . w[row], 0 for padding */
    memset(gw, 0, sizeof gw);
    a.grad_out = &G.d;
    a.grad_weight = &GW.d;
    a.grad_per_sample_weights = &GP.d;
    CU_ASSERT_EQUAL(g_be->embedding_bag_backward(&g_fake.env, g_state, &a), NNM_OK);
    const float gw_want[12] = {7, 8, 9, 2.5f, 5, 7.5f, -7, -8, -9, 0, 0, 0};
    for (int k = 0; k < 12; k++)
        CU_ASSERT_EQUAL(gw[k], gw_want[k]);
    CU_ASSERT_EQUAL(gp[0], 1 * 4 + 2 * 5 + 3 * 6);
    CU_ASSERT_EQUAL(gp[1], 0.0f);
    CU_ASSERT_EQUAL(gp[2], gp[0]);
    CU_ASSERT_TRUE(isnan(gp[3])); /* w0 holds a NaN */
    CU_ASSERT_EQUAL(gp[4], 7 * 7 + 8 * 8 + 9 * 9);
    /* mean: w1, 0, (w0 + w2) / 2; the gradient divided by the count */
    a.mode = NNM_REDUCE_MEAN;
    a.per_sample_weights = NULL;
    a.grad_per_sample_weights = NULL;
    CU_ASSERT_EQUAL(g_be->embedding_bag(&g_fake.env, g_state, &a), NNM_OK);
    CU_ASSERT_TRUE(y[0] == 4 && y[1] == 5 && y[2] == 6 && y[3] == 0 && y[6] == 4 && y[8] == 6);
    memset(gw, 0, sizeof gw);
    CU_ASSERT_EQUAL(g_be->embedding_bag_backward(&g_fake.env, g_state, &a), NNM_OK);
    CU_ASSERT_TRUE(gw[3] == 1 && gw[4] == 2 && gw[5] == 3 && gw[0] == 3.5f && gw[6] == 3.5f && gw[9] == 0);
    /* max: per column, the first maximum; the NaN of w0 stays (nothing is > NaN) */
    a.mode = NNM_REDUCE_MAX;
    a.arg = &A.d;
    CU_ASSERT_EQUAL(g_be->embedding_bag(&g_fake.env, g_state, &a), NNM_OK);
    CU_ASSERT_TRUE(y[0] == 4 && y[1] == 5 && y[2] == 6 && y[3] == 0 && y[6] == 7 && isnan(y[7]) && y[8] == 9);
    CU_ASSERT_TRUE(arg[0] == 1 && arg[3] == -1 && arg[5] == -1 && arg[6] == 2 && arg[7] == 0 && arg[8] == 2);
    memset(gw, 0, sizeof gw);
    CU_ASSERT_EQUAL(g_be->embedding_bag_backward(&g_fake.env, g_state, &a), NNM_OK);
    const float gmax[12] = {0, 8, 0, 1, 2, 3, 7, 0, 9, 0, 0, 0};
    for (int k = 0; k < 12; k++)
        CU_ASSERT_EQUAL(gw[k], gmax[k]);
    /* corrupt inputs: an error, never an access out of range */
    arg[4] = 99;
    CU_ASSERT_EQUAL(g_be->embedding_bag_backward(&g_fake.env, g_state, &a), NNM_E_INVALID);
    idx[4] = 4;
    CU_ASSERT_EQUAL(g_be->embedding_bag(&g_fake.env, g_state, &a), NNM_E_INVALID);
    idx[4] = 2;
    off[3] = 4;
    CU_ASSERT_EQUAL(g_be->embedding_bag(&g_fake.env, g_state, &a), NNM_E_INVALID);
    off[3] = 5;
    off[2] = 1;
    CU_ASSERT_EQUAL(g_be->embedding_bag(&g_fake.env, g_state, &a), NNM_E_INVALID);
    off[2] = 3;
    a.per_sample_weights = &P.d; /* max takes none */
    CU_ASSERT_EQUAL(g_be->embedding_bag(&g_fake.env, g_state, &a), NNM_E_INVALID);
    a.struct_size = 16;
    CU_ASSERT_EQUAL(g_be->embedding_bag(&g_fake.env, g_state, &a), NNM_E_INVALID);

    /* wide rows: 64-column blocks summed in registers, then the rest; the
     * bits of a sequential float sum in bag order (sum with weights, mean) */
    enum { V2 = 9, D2 = 70, N2 = 11, B2 = 4 };
    static float w2[V2 * D2], y2[B2 * D2];
    int64_t idx2[N2] = {3, 0, 8, 3, 5, 1, 2, 7, 3, 4, 6}, off2[B2 + 1] = {0, 4, 4, 9, N2};
    float psw2[N2] = {0.5f, 1, -2, 3, 1, 0.25f, 1, 1, -1, 2, 1};
    for (int k = 0; k < V2 * D2; k++) w2[k] = (float)((k * 37) % 101 - 50) / 7.0f;
    tview W2, I2, O2, P2, Y2;
    tview_init(&W2, w2, 2, (int64_t[]){V2, D2}, NULL);
    tview_i64(&I2, idx2, N2);
    tview_i64(&O2, off2, B2 + 1);
    tview_init(&P2, psw2, 1, (int64_t[]){N2}, NULL);
    tview_init(&Y2, y2, 2, (int64_t[]){B2, D2}, NULL);
    for (int mode = 0; mode < 2; mode++) {
        nnm_embedding_bag_args a2 = {sizeof a2, mode ? NNM_REDUCE_MEAN : NNM_REDUCE_SUM, 5, V2, D2, N2, B2,
                                     &W2.d, &I2.d, &O2.d, mode ? NULL : &P2.d, &Y2.d, NULL, NULL, NULL, NULL};
        CU_ASSERT_EQUAL(g_be->embedding_bag(&g_fake.env, g_state, &a2), NNM_OK);
        int bad = 0;
        for (int b = 0; b < B2; b++)
            for (int k = 0; k < D2; k++) {
                float want = 0.0f;
                int cnt = 0;
                for (int64_t i = off2[b]; i < off2[b + 1]; i++) {
                    if (idx2[i] == 5) continue; /* padding_idx */
                    cnt++;
                    const float wv = w2[idx2[i] * D2 + k];
                    if (mode == 0 && psw2[i] != 1.0f)
                        want += wv * psw2[i];
                    else
                        want += wv;
                }
                if (mode == 1 && cnt > 1) want /= (float)cnt;
                bad += y2[b * D2 + k] != want;
            }
        CU_ASSERT_EQUAL(bad, 0);
    }
}

int main(void) {
    CU_pSuite s = tu_suite("cpu_backend", suite_init, suite_clean);
    if (s == NULL)
        return 1;
    CU_add_test(s, "descriptor and handshake", test_descriptor);
    CU_add_test(s, "alloc/free", test_alloc_free);
    CU_add_test(s, "memcpy", test_memcpy);
    CU_add_test(s, "fill", test_fill);
    CU_add_test(s, "gemm vs naive", test_gemm);
    CU_add_test(s, "large gemm vs naive (AVX-512 kernel)", test_gemm_large);
    CU_add_test(s, "threaded gemm: the bits of one thread, also on busy cores", test_gemm_threads_bits);
    CU_add_test(s, "gemm edges and errors", test_gemm_edges);
    CU_add_test(s, "binary contiguous", test_binary_contiguous);
    CU_add_test(s, "binary broadcast and strided", test_binary_broadcast);
    CU_add_test(s, "binary errors", test_binary_errors);
    CU_add_test(s, "unary", test_unary);
    CU_add_test(s, "reduce vs naive", test_reduce);
    CU_add_test(s, "reduce empty and errors", test_reduce_empty_and_errors);
    CU_add_test(s, "log_softmax", test_log_softmax);
    CU_add_test(s, "nll", test_nll);
    CU_add_test(s, "nll_backward", test_nll_backward);
    CU_add_test(s, "sgd_step vs double reference", test_sgd_vs_reference);
    CU_add_test(s, "adam_step vs double reference", test_adam_vs_reference);
    CU_add_test(s, "sgd/adam/adamw steps vs torch.optim golden", test_optim_golden);
    CU_add_test(s, "layer_norm slots", test_layer_norm_slots);
    CU_add_test(s, "embedding_bag and its backward", test_embedding_bag);
    return tu_run();
}
