/* tests/layers/test_models.c - the example models of examples/manifests/
 * against PyTorch (tests/golden/make_model_golden.py). For each
 * tests/golden/models/<model>.io.safetensors:
 *   1. the manifest it names is loaded and built without weights, then the
 *      state dict PyTorch wrote (<model>.state.safetensors) is loaded with
 *      strict=1: every parameter and buffer name is PyTorch's;
 *   2. where PyTorch's model is deterministic in train mode: after three
 *      train-mode calls the output and the buffers (running statistics,
 *      num_batches_tracked) match;
 *   3. eval mode: the output matches, and backward of sum(output * W) gives
 *      PyTorch's gradients for the input and every parameter.
 * NNM_TEST_DEVICE=emu|cuda (tests/test_device.h; ctest's test_models_emu):
 * the same on that device, the model moved there after its state loaded
 * (the reload before the eval pass then writes device memory).
 */
#include "test_util.h"

#include "test_device.h"

#ifndef NNM_SOURCE_DIR
#error "NNM_SOURCE_DIR must name the repository root"
#endif

static nnm_ctx *g_ctx;
#define TU_CTX g_ctx
static int g_skip; /* NNM_TEST_DEVICE names a device this machine lacks */

#define RTOL 2e-4
#define ATOL 2e-5
#define MAX_MODELS 16
#define TRAIN_STEPS 3 /* as make_model_golden.py */

static char g_models[MAX_MODELS][256]; /* model names */
static int g_n_models;

static int entry(nnm_safetensors *st, const char *name, nnm_st_entry *e) {
    memset(e, 0, sizeof *e);
    e->struct_size = sizeof *e;
    return nnm_safetensors_find(st, name, e) == NNM_OK;
}

/* Compares f32 tensor t with golden f32 entry e; returns bad elements (-1:
 * missing or misshapen). */
static int compare(const char *what, nnm_tensor *t, const nnm_st_entry *e, double *worst) {
    if (t == NULL || !tu_shape_is(t, e->ndim, e->shape)) {
        fprintf(stderr, "\n    %s: %s", what, t ? "shape differs" : "missing");
        return -1;
    }
    int64_t n = 0;
    float *got = tu_read_f32(t, &n);
    if (got == NULL)
        return -1;
    int bad = 0;
    for (int64_t i = 0; i < n; i++) {
        float want;
        memcpy(&want, (const char *)e->data + 4 * i, 4);
        const double err = fabs((double)got[i] - want), tol = ATOL + RTOL * fabs(want);
        if (!(err <= tol)) {
            if (bad < 3)
                fprintf(stderr, "\n    %s[%lld]: got %.9g want %.9g", what, (long long)i,
                        (double)got[i], (double)want);
            bad++;
        }
        *worst = fmax(*worst, isnan(err) ? INFINITY : err / tol);
    }
    free(got);
    return bad;
}

/* e as a new tensor on the test device. */
static nnm_tensor *tensor_of(const nnm_st_entry *e) {
    nnm_tensor *t = tu_tf32(g_ctx, e->ndim, e->shape, e->data);
    CU_ASSERT_TRUE(td_move(g_ctx, &t));
    return t;
}

static void run_model(int index) {
    if (g_skip)
        return;
    LEAK_CHECK_BEGIN();
    const char *name = g_models[index];
    char path[512], state_path[512];
    snprintf(path, sizeof path, "%s/tests/golden/models/%s.io.safetensors", NNM_SOURCE_DIR, name);
    snprintf(state_path, sizeof state_path, "%s/tests/golden/models/%s.state.safetensors",
             NNM_SOURCE_DIR, name);
    nnm_safetensors *io = NULL;
    nnm_manifest *mf = NULL;
    nnm_module *m = NULL;
    nnm_tensor *x = NULL, *y = NULL, *w = NULL, *p = NULL, *s = NULL;
    double worst = 0.0;
    int fails = 0;
    CHECK_STATUS(nnm_safetensors_open(g_ctx, path, &io), NNM_OK);
    if (io == NULL)
        goto done;
    const char *manifest = NULL;
    for (uint32_t i = 0; i < nnm_safetensors_metadata_count(io); i++) {
        const char *k = NULL, *v = NULL;
        if (nnm_safetensors_metadata(io, i, &k, &v) == NNM_OK && strcmp(k, "manifest") == 0)
            manifest = v;
    }
    CU_ASSERT_PTR_NOT_NULL_FATAL(manifest);
    char mpath[512];
    snprintf(mpath, sizeof mpath, "%s/%s", NNM_SOURCE_DIR, manifest);

    /* 1. the manifest, and PyTorch's state dict, strictly */
    CHECK_STATUS(nnm_manifest_load(g_ctx, mpath, NNM_MANIFEST_AUTO, NULL, &mf), NNM_OK);
    if (mf == NULL)
        goto done;
    CHECK_STATUS(nnm_manifest_build(mf, NNM_BUILD_NO_WEIGHTS, &m), NNM_OK);
    if (m == NULL)
        goto done;
    nnm_status rc = nnm_module_load(m, state_path, 1, NULL);
    CHECK_STATUS(rc, NNM_OK);
    if (rc != NNM_OK)
        goto done;
    rc = nnm_module_to(m, td_device());
    CHECK_STATUS(rc, NNM_OK);
    if (rc != NNM_OK)
        goto done;

    nnm_st_entry ex, ey, ew;
    CU_ASSERT_TRUE_FATAL(entry(io, "input", &ex) && entry(io, "output", &ey) &&
                         entry(io, "gout", &ew));

    /* 2. one train-mode call, where PyTorch's is deterministic */
    nnm_st_entry et;
    if (entry(io, "train.output", &et)) {
        CHECK_STATUS(nnm_module_train(m, 1), NNM_OK);
        int prev = nnm_grad_set_enabled(0);
        x = tensor_of(&ex);
        for (int k = 0; k < TRAIN_STEPS; k++) {
            nnm_tensor_release(y);
            y = NULL;
            CHECK_STATUS(tu_call1(m, x, &y), NNM_OK);
        }
        nnm_grad_set_enabled(prev);
        fails += compare("train.output", y, &et, &worst) != 0;
        nnm_tensor_release(y);
        nnm_tensor_release(x);
        y = x = NULL;
        tu_named bufs;
        memset(&bufs, 0, sizeof bufs);
        CHECK_STATUS(nnm_module_named_buffers(m, tu_named_add, &bufs), NNM_OK);
        for (int i = 0; i < bufs.n; i++) {
            char key[256];
            nnm_st_entry eb;
            snprintf(key, sizeof key, "train.after.%s", bufs.names[i]);
            if (!entry(io, key, &eb))
                continue;
            if (eb.dtype.code == NNM_DTYPE_INT && eb.dtype.bits == 64) {
                /* num_batches_tracked: i64 in PyTorch, f32 in nnmod */
                int64_t want;
                float got = NAN;
                memcpy(&want, eb.data, 8);
                CU_ASSERT_EQUAL(nnm_tensor_to_f32(bufs.t[i], &got, 1), NNM_OK);
                if ((double)got != (double)want) {
                    fprintf(stderr, "\n    %s: %g, PyTorch %lld", key, (double)got,
                            (long long)want);
                    fails++;
                }
                continue;
            }
            fails += compare(key, bufs.t[i], &eb, &worst) != 0;
        }
        /* back to PyTorch's state for the eval pass */
        CHECK_STATUS(nnm_module_load(m, state_path, 1, NULL), NNM_OK);
    }

    /* 3. eval: output and gradients */
    CHECK_STATUS(nnm_module_train(m, 0), NNM_OK);
    x = tensor_of(&ex);
    w = tensor_of(&ew);
    CHECK_STATUS(nnm_tensor_set_requires_grad(x, 1), NNM_OK);
    CHECK_STATUS(nnm_module_zero_grad(m), NNM_OK);
    int prev = nnm_grad_set_enabled(1);
    rc = tu_call1(m, x, &y);
    CHECK_STATUS(rc, NNM_OK);
    if (rc == NNM_OK) {
        fails += compare("output", y, &ey, &worst) != 0;
        CHECK_STATUS(nnm_op_binary(g_ctx, NNM_BINARY_MUL, y, w, &p), NNM_OK);
        CHECK_STATUS(nnm_op_reduce(g_ctx, NNM_REDUCE_SUM, p, NULL, 0, 0, &s), NNM_OK);
        rc = s != NULL ? nnm_backward(s, NULL, 0) : NNM_E_INVALID;
        CHECK_STATUS(rc, NNM_OK);
    }
    nnm_grad_set_enabled(prev);
    if (rc == NNM_OK) {
        nnm_st_entry eg;
        CU_ASSERT_TRUE(entry(io, "grad.input", &eg));
        fails += compare("grad.input", nnm_tensor_grad(x), &eg, &worst) != 0;
        tu_named params;
        memset(&params, 0, sizeof params);
        CHECK_STATUS(nnm_module_named_parameters(m, tu_named_add, &params), NNM_OK);
        int n_grads = 0;
        for (uint32_t i = 0; i < nnm_safetensors_count(io); i++) {
            nnm_st_entry e = {.struct_size = sizeof e};
            if (nnm_safetensors_entry(io, i, &e) == NNM_OK && strncmp(e.name, "grad.", 5) == 0 &&
                strcmp(e.name, "grad.input") != 0)
                n_grads++;
        }
        CU_ASSERT_EQUAL(n_grads, params.n); /* every parameter got PyTorch's gradient */
        for (int i = 0; i < params.n; i++) {
            char key[256];
            snprintf(key, sizeof key, "grad.%s", params.names[i]);
            if (!entry(io, key, &eg)) {
                fprintf(stderr, "\n    %s: no PyTorch gradient", key);
                fails++;
                continue;
            }
            fails += compare(key, nnm_tensor_grad(params.t[i]), &eg, &worst) != 0;
        }
    }
    fprintf(stderr, "\n  %s %s on %s: worst error/tolerance %.3g\n", fails ? "FAIL" : "ok", name, td_name(), worst);
    CU_ASSERT_EQUAL(fails, 0);

done:
    nnm_tensor_release(s);
    nnm_tensor_release(p);
    nnm_tensor_release(y);
    nnm_tensor_release(w);
    nnm_tensor_release(x);
    nnm_module_release(m);
    nnm_manifest_free(mf);
    nnm_safetensors_close(io);
    LEAK_CHECK_END();
}

#define MODEL_TEST(i)                                                                    \
    static void model_test_##i(void) { run_model(i); }
MODEL_TEST(0) MODEL_TEST(1) MODEL_TEST(2) MODEL_TEST(3) MODEL_TEST(4) MODEL_TEST(5)
MODEL_TEST(6) MODEL_TEST(7) MODEL_TEST(8) MODEL_TEST(9) MODEL_TEST(10) MODEL_TEST(11)
MODEL_TEST(12) MODEL_TEST(13) MODEL_TEST(14) MODEL_TEST(15)
static void (*const g_tests[MAX_MODELS])(void) = {
    model_test_0,  model_test_1,  model_test_2,  model_test_3,  model_test_4,  model_test_5,
    model_test_6,  model_test_7,  model_test_8,  model_test_9,  model_test_10, model_test_11,
    model_test_12, model_test_13, model_test_14, model_test_15};

static int cmp_str(const void *a, const void *b) {
    return strcmp((const char *)a, (const char *)b);
}

static void list_models(void) {
    DIR *d = opendir(NNM_SOURCE_DIR "/tests/golden/models");
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL && g_n_models < MAX_MODELS) {
        size_t n = strlen(e->d_name);
        const char *suffix = ".io.safetensors";
        if (n > strlen(suffix) && strcmp(e->d_name + n - strlen(suffix), suffix) == 0 &&
            n - strlen(suffix) < sizeof g_models[0]) {
            memcpy(g_models[g_n_models], e->d_name, n - strlen(suffix));
            g_models[g_n_models++][n - strlen(suffix)] = '\0';
        }
    }
    if (d != NULL)
        closedir(d);
    qsort(g_models, (size_t)g_n_models, sizeof g_models[0], cmp_str);
}

static void test_found(void) {
    CU_ASSERT_TRUE(g_n_models > 0);
}

static int suite_init(void) {
    if (tu_ctx_new(&g_ctx) != 0)
        return 1;
    const int r = td_init(g_ctx);
    g_skip = r == 1;
    return r < 0;
}

static int suite_clean(void) {
    const int r = tu_ctx_free(&g_ctx);
    td_teardown();
    return r;
}

int main(void) {
    CU_pSuite s = tu_suite("example models vs PyTorch", suite_init, suite_clean);
    if (s == NULL)
        return 1;
    list_models();
    CU_add_test(s, "golden models found", test_found);
    for (int i = 0; i < g_n_models; i++)
        CU_add_test(s, g_models[i], g_tests[i]);
    return tu_run();
}
