/* tests/runtime/test_tensor_to.c - nnm_tensor_to, PyTorch's
 * t.detach().to(device): what nnm train/run --device move each batch with.
 *
 *  - cpu -> cpu: a contiguous copy (f32, i64, bool), independent of the
 *    source, for strided sources too (a transposed DLPack view), a new leaf
 *    whatever the source's autograd state, empty tensors and 0-d ones;
 *  - to the meta device: the shape and dtype alone; from it: NNM_E_DEVICE;
 *  - to cuda:0: where this machine has no CUDA device (or no cuda plugin) a
 *    clean failure, NNM_E_NO_DEVICE or NNM_E_DEVICE with the backend's
 *    message, *out NULL, nothing leaked; where it has one, the round trip
 *    cpu -> cuda -> cpu gives back every byte (f32 strided, i64, bool) and
 *    the copy's device is cuda:0;
 *  - NULL arguments: NNM_E_INVALID.
 */
#include "test_util.h"

static nnm_ctx *g_ctx;
#define TU_CTX g_ctx

static const nnm_device CPU0 = {NNM_DEVICE_CPU, 0};
static const nnm_device CUDA0 = {NNM_DEVICE_CUDA, 0};
static const nnm_device META = {NNM_DEVICE_META, 0};

static int suite_init(void) { return tu_ctx_new(&g_ctx); }
static int suite_fini(void) { return tu_ctx_free(&g_ctx); }

static void noop_delete(nnm_dlpack_tensor *self) { (void)self; }

/* A transposed [3, 2] view of m (2 x 3 row-major), through DLPack. */
static nnm_tensor *transposed(float *m, nnm_dlpack_tensor *dl, int64_t *shape, int64_t *strides) {
    shape[0] = 3, shape[1] = 2, strides[0] = 1, strides[1] = 3;
    *dl = (nnm_dlpack_tensor){{1, 0}, NULL, noop_delete, 0,
                              {m, {NNM_DEVICE_CPU, 0}, 2, {NNM_DTYPE_FLOAT, 32, 1}, shape, strides, 0}};
    nnm_tensor *t = NULL;
    CHECK_STATUS(nnm_tensor_from_dlpack(g_ctx, dl, &t), NNM_OK);
    return t;
}

static void test_cpu_copies(void) {
    LEAK_CHECK_BEGIN();
    float v[6] = {1, 2, 3, 4, 5, 6};
    nnm_tensor *t = tu_tf32(g_ctx, 2, (int64_t[]){2, 3}, v), *c = NULL;
    CHECK_STATUS(nnm_tensor_set_requires_grad(t, 1), NNM_OK);
    CHECK_STATUS(nnm_tensor_to(t, CPU0, &c), NNM_OK);
    if (c) {
        const nnm_tensor_desc *d = nnm_tensor_desc_get(c);
        CU_ASSERT_PTR_NOT_EQUAL(d->data, nnm_tensor_desc_get(t)->data); /* a copy */
        CU_ASSERT_TRUE(tu_shape_is(c, 2, (int64_t[]){2, 3}));
        CU_ASSERT_EQUAL(memcmp(tu_cpu_data(c), v, sizeof v), 0);
        CU_ASSERT_FALSE(nnm_tensor_requires_grad(c)); /* detach().to(): a new leaf */
        CU_ASSERT_TRUE(nnm_tensor_is_leaf(c));
        ((float *)tu_cpu_data(t))[0] = 42; /* independent of the source */
        CU_ASSERT_EQUAL(((float *)tu_cpu_data(c))[0], 1.0f);
    }
    nnm_tensor_release(c);
    nnm_tensor_release(t);

    /* i64 and bool keep their dtype and bytes */
    int64_t iv[4] = {-100, 0, 7, INT64_MAX};
    t = tu_ti64(g_ctx, 1, (int64_t[]){4}, iv);
    CHECK_STATUS(nnm_tensor_to(t, CPU0, &c), NNM_OK);
    if (c) {
        CU_ASSERT_EQUAL(nnm_tensor_desc_get(c)->dtype.code, NNM_DTYPE_INT);
        CU_ASSERT_EQUAL(nnm_tensor_desc_get(c)->dtype.bits, 64);
        CU_ASSERT_EQUAL(memcmp(tu_cpu_data(c), iv, sizeof iv), 0);
    }
    nnm_tensor_release(c);
    nnm_tensor_release(t);
    const nnm_dtype b8 = {NNM_DTYPE_BOOL, 8, 1};
    t = NULL;
    CHECK_STATUS(nnm_tensor_new(g_ctx, CPU0, b8, 1, (int64_t[]){3}, &t), NNM_OK);
    if (t) {
        memcpy(tu_cpu_data(t), (uint8_t[]){1, 0, 1}, 3);
        CHECK_STATUS(nnm_tensor_to(t, CPU0, &c), NNM_OK);
        if (c) {
            CU_ASSERT_EQUAL(nnm_tensor_desc_get(c)->dtype.code, NNM_DTYPE_BOOL);
            CU_ASSERT_EQUAL(memcmp(tu_cpu_data(c), (uint8_t[]){1, 0, 1}, 3), 0);
        }
        nnm_tensor_release(c);
    }
    nnm_tensor_release(t);

    /* a strided source is gathered in row-major order */
    float m[6] = {1, 2, 3, 4, 5, 6};
    nnm_dlpack_tensor dl;
    int64_t shape[2], strides[2];
    t = transposed(m, &dl, shape, strides);
    CHECK_STATUS(nnm_tensor_to(t, CPU0, &c), NNM_OK);
    if (c) {
        const float want[6] = {1, 4, 2, 5, 3, 6};
        CU_ASSERT_EQUAL(memcmp(tu_cpu_data(c), want, sizeof want), 0);
        CU_ASSERT_EQUAL(nnm_tensor_desc_get(c)->strides[0], 2); /* contiguous */
        CU_ASSERT_EQUAL(nnm_tensor_desc_get(c)->strides[1], 1);
    }
    nnm_tensor_release(c);
    nnm_tensor_release(t);

    /* empty and 0-d */
    t = tu_tf32(g_ctx, 2, (int64_t[]){0, 5}, NULL);
    CHECK_STATUS(nnm_tensor_to(t, CPU0, &c), NNM_OK);
    CU_ASSERT_TRUE(c && tu_shape_is(c, 2, (int64_t[]){0, 5}));
    nnm_tensor_release(c);
    nnm_tensor_release(t);
    t = tu_tf32(g_ctx, 0, NULL, (float[]){2.5f});
    CHECK_STATUS(nnm_tensor_to(t, CPU0, &c), NNM_OK);
    if (c) {
        CU_ASSERT_EQUAL(nnm_tensor_desc_get(c)->ndim, 0);
        CU_ASSERT_EQUAL(((float *)tu_cpu_data(c))[0], 2.5f);
    }
    nnm_tensor_release(c);
    nnm_tensor_release(t);
    LEAK_CHECK_END();
}

static void test_meta(void) {
    LEAK_CHECK_BEGIN();
    nnm_tensor *t = tu_tf32(g_ctx, 2, (int64_t[]){4, 3}, NULL), *mt = NULL, *c = NULL;
    CHECK_STATUS(nnm_tensor_to(t, META, &mt), NNM_OK);
    if (mt) {
        CU_ASSERT_EQUAL(nnm_tensor_desc_get(mt)->device.type, NNM_DEVICE_META);
        CU_ASSERT_PTR_NULL(nnm_tensor_desc_get(mt)->data);
        CU_ASSERT_TRUE(tu_shape_is(mt, 2, (int64_t[]){4, 3}));
        CHECK_ERROR(nnm_tensor_to(mt, CPU0, &c), NNM_E_DEVICE, "meta device has no data");
        CU_ASSERT_PTR_NULL(c);
    }
    nnm_tensor_release(mt);
    nnm_tensor_release(t);
    LEAK_CHECK_END();
}

/* 1 when this machine has a CUDA device nnmod can use; else prints why once. */
static int have_cuda(void) {
    static int known = -1;
    if (known >= 0) return known;
    nnm_tensor *t = NULL;
    nnm_status st = nnm_tensor_new(g_ctx, CUDA0, NNM_F32, 1, (int64_t[]){1}, &t);
    nnm_tensor_release(t);
    known = st == NNM_OK;
    if (!known) printf("\ntest_tensor_to: SKIPPED (the cuda round trips): %s\n", nnm_ctx_errmsg(g_ctx));
    return known;
}

static void test_cuda(void) {
    LEAK_CHECK_BEGIN();
    float v[6] = {1, -2, 3.5f, 4, 5, 6};
    nnm_tensor *t = tu_tf32(g_ctx, 2, (int64_t[]){2, 3}, v), *g = (nnm_tensor *)1, *back = NULL;
    if (!have_cuda()) {
        nnm_status st = nnm_tensor_to(t, CUDA0, &g);
        CU_ASSERT_TRUE(st == NNM_E_NO_DEVICE || st == NNM_E_DEVICE);
        CU_ASSERT_PTR_NULL(g);
        const char *msg = nnm_ctx_errmsg(g_ctx);
        if (!(msg && (strstr(msg, "cuda") || strstr(msg, "CUDA"))))
            fprintf(stderr, "\n  no-device message names no cuda: %s\n", msg ? msg : "(null)");
        CU_ASSERT_TRUE(msg && (strstr(msg, "cuda") || strstr(msg, "CUDA")));
        nnm_tensor_release(t);
        LEAK_CHECK_END();
        return;
    }
    /* f32 there and back */
    CHECK_STATUS(nnm_tensor_to(t, CUDA0, &g), NNM_OK);
    if (g) {
        CU_ASSERT_EQUAL(nnm_tensor_desc_get(g)->device.type, NNM_DEVICE_CUDA);
        CU_ASSERT_EQUAL(nnm_tensor_desc_get(g)->device.id, 0);
        CHECK_STATUS(nnm_tensor_to(g, CPU0, &back), NNM_OK);
        CU_ASSERT_TRUE(back && memcmp(tu_cpu_data(back), v, sizeof v) == 0);
        float r[6] = {0};
        CHECK_STATUS(nnm_tensor_to_f32(g, r, 6), NNM_OK);
        CU_ASSERT_EQUAL(memcmp(r, v, sizeof v), 0);
        nnm_tensor_release(back);
        back = NULL;
        /* cuda -> cuda: a copy on the device */
        nnm_tensor *g2 = NULL;
        CHECK_STATUS(nnm_tensor_to(g, CUDA0, &g2), NNM_OK);
        CU_ASSERT_TRUE(g2 && nnm_tensor_desc_get(g2)->data != nnm_tensor_desc_get(g)->data);
        if (g2) CHECK_STATUS(nnm_tensor_to_f32(g2, r, 6), NNM_OK);
        CU_ASSERT_EQUAL(memcmp(r, v, sizeof v), 0);
        nnm_tensor_release(g2);
    }
    nnm_tensor_release(g);
    nnm_tensor_release(t);
    /* a strided host source, and i64 targets */
    float m[6] = {1, 2, 3, 4, 5, 6};
    nnm_dlpack_tensor dl;
    int64_t shape[2], strides[2];
    t = transposed(m, &dl, shape, strides);
    g = NULL;
    CHECK_STATUS(nnm_tensor_to(t, CUDA0, &g), NNM_OK);
    float r[6] = {0};
    if (g) CHECK_STATUS(nnm_tensor_to_f32(g, r, 6), NNM_OK);
    const float want[6] = {1, 4, 2, 5, 3, 6};
    CU_ASSERT_EQUAL(memcmp(r, want, sizeof want), 0);
    nnm_tensor_release(g);
    nnm_tensor_release(t);
    int64_t iv[3] = {-100, 3, 9};
    t = tu_ti64(g_ctx, 1, (int64_t[]){3}, iv);
    g = NULL;
    CHECK_STATUS(nnm_tensor_to(t, CUDA0, &g), NNM_OK);
    if (g) CHECK_STATUS(nnm_tensor_to(g, CPU0, &back), NNM_OK);
    CU_ASSERT_TRUE(back && memcmp(tu_cpu_data(back), iv, sizeof iv) == 0);
    nnm_tensor_release(back);
    nnm_tensor_release(g);
    nnm_tensor_release(t);
    LEAK_CHECK_END();
}

static void test_null_arguments(void) {
    nnm_tensor *t = tu_tf32(g_ctx, 1, (int64_t[]){2}, NULL), *c = (nnm_tensor *)1;
    CU_ASSERT_EQUAL(nnm_tensor_to(NULL, CPU0, &c), NNM_E_INVALID);
    CU_ASSERT_PTR_NULL(c);
    CU_ASSERT_EQUAL(nnm_tensor_to(t, CPU0, NULL), NNM_E_INVALID);
    CU_ASSERT_NOT_EQUAL(nnm_tensor_to(t, (nnm_device){99, 0}, &c), NNM_OK);
    CU_ASSERT_PTR_NULL(c);
    nnm_tensor_release(t);
}

int main(void) {
    CU_pSuite s = tu_suite("tensor_to", suite_init, suite_fini);
    if (s == NULL) return 1;
    CU_add_test(s, "cpu copies: dtypes, strides, a new leaf", test_cpu_copies);
    CU_add_test(s, "the meta device", test_meta);
    CU_add_test(s, "cuda: round trips, or a clean no-device failure", test_cuda);
    CU_add_test(s, "NULL arguments", test_null_arguments);
    return tu_run();
}
