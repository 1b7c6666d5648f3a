/* tests/docs/test_docs.c - what the documentation states, checked (issue 9
 * section 7):
 *  - docs/writing-a-plugin.md section 6: the page's doc_cube plugin (its
 *    snippets, extracted and compiled as written) gives cube(x) = x^3 and,
 *    through its own backward, d/dx = 3x^2: against the formula and against
 *    central finite differences of the forward; host ops ran inside backward;
 *  - docs/writing-a-plugin.md section 7: the page's doc_center plugin (a
 *    buffer and train/eval behaviour): outputs and running_mean in training,
 *    eval output, gradients in both modes, a state dict round trip, repr;
 *  - docs/writing-a-plugin.md section 8: the page's C++ plugin (doc_cxx,
 *    compiled as C++17 with -Wall -Wextra -Werror -pedantic): values for f32
 *    and i64 inputs, the gradient autograd records, the repr;
 *  - docs/abi.md: "NNM_ABI_MAJOR.NNM_ABI_MINOR (now X.Y)" is version.h's;
 *  - nnmod.h and docs/abi.md section 4: grad mode is per thread (another
 *    thread's no_grad does not reach this one, a new thread starts with it
 *    on), while the error message belongs to the context (a failure on one
 *    thread is read on another). */
#define _GNU_SOURCE /* pthread */
#include "test_util.h"

#include <pthread.h>

static nnm_ctx *g_ctx;
#define TU_CTX g_ctx

static int suite_init(void) { return tu_ctx_new(&g_ctx); }
static int suite_clean(void) { return tu_ctx_free(&g_ctx); }

/* ---- the page's custom-backward plugin -------------------------------------- */

static double sum_cube(nnm_module *m, const float *xs, int64_t n) {
    const int64_t shape[1] = {n};
    nnm_tensor *x = tu_tf32(g_ctx, 1, shape, xs), *y = NULL;
    double s = 0;
    int prev = nnm_grad_set_enabled(0);
    if (x && nnm_module_call(m, &x, 1, &y, 1) == NNM_OK) {
        float v[8];
        if (nnm_tensor_to_f32(y, v, 8) == NNM_OK)
            for (int64_t i = 0; i < n; i++) s += v[i];
    }
    nnm_grad_set_enabled(prev);
    nnm_tensor_release(y);
    nnm_tensor_release(x);
    return s;
}

static void test_doc_cube(void) {
    LEAK_CHECK_BEGIN();
    CHECK_STATUS(nnm_plugin_load(g_ctx, NNM_DOC_CUBE), NNM_OK);
    nnm_module *m = NULL;
    CHECK_STATUS(nnm_module_create(g_ctx, "cube@^1", NULL, &m), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    float xs[6] = {-2.0f, -0.5f, 0.0f, 0.25f, 1.0f, 1.5f};
    const int64_t shape[1] = {6};
    nnm_tensor *x = tu_tf32(g_ctx, 1, shape, xs), *y = NULL;
    CU_ASSERT_PTR_NOT_NULL_FATAL(x);
    CHECK_STATUS(nnm_tensor_set_requires_grad(x, 1), NNM_OK);
    CHECK_STATUS(nnm_module_call(m, &x, 1, &y, 1), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(y);
    CU_ASSERT_FALSE(nnm_tensor_is_leaf(y)); /* one custom node was recorded */
    float v[6];
    CHECK_STATUS(nnm_tensor_to_f32(y, v, 6), NNM_OK);
    for (int i = 0; i < 6; i++) CU_ASSERT_DOUBLE_EQUAL(v[i], xs[i] * xs[i] * xs[i], 1e-6);
    /* backward with d(loss)/dy = ones: x.grad = 3x^2 */
    const float ones[6] = {1, 1, 1, 1, 1, 1};
    nnm_tensor *g = tu_tf32(g_ctx, 1, shape, ones);
    CHECK_STATUS(nnm_backward(y, g, 0), NNM_OK);
    nnm_tensor *xg = nnm_tensor_grad(x);
    CU_ASSERT_PTR_NOT_NULL_FATAL(xg);
    float gv[6];
    CHECK_STATUS(nnm_tensor_to_f32(xg, gv, 6), NNM_OK);
    for (int i = 0; i < 6; i++) {
        CU_ASSERT_DOUBLE_EQUAL(gv[i], 3.0 * xs[i] * xs[i], 1e-5);
        /* central differences of sum(cube(x)) in double around x_i */
        const float h = 1e-2f;
        float xp[6], xm[6];
        memcpy(xp, xs, sizeof xp);
        memcpy(xm, xs, sizeof xm);
        xp[i] += h;
        xm[i] -= h;
        double fd = (sum_cube(m, xp, 6) - sum_cube(m, xm, 6)) / (2.0 * h);
        /* error of the central difference of x^3 is h^2 = 1e-4 exactly,
         * plus f32 rounding of the sums */
        CU_ASSERT_DOUBLE_EQUAL(gv[i], fd, 2e-3 * (1.0 + fabs(fd)));
    }
    /* the graph was freed: a second backward fails in the runtime */
    CU_ASSERT_NOT_EQUAL(nnm_backward(y, g, 0), NNM_OK);
    /* under no_grad nothing is recorded and save_for_backward is a no-op */
    nnm_tensor *y2 = NULL;
    int prev = nnm_grad_set_enabled(0);
    CHECK_STATUS(nnm_module_call(m, &x, 1, &y2, 1), NNM_OK);
    nnm_grad_set_enabled(prev);
    CU_ASSERT_TRUE(nnm_tensor_is_leaf(y2));
    nnm_tensor_release(y2);
    nnm_tensor_release(g);
    nnm_tensor_release(y);
    nnm_tensor_release(x);
    nnm_module_release(m);
    LEAK_CHECK_END();
}

/* ---- the page's buffer and train/eval plugin -------------------------------- */

/* y = m(x) for x [2, 3], then backward with d(loss)/dy = w; y and x.grad out */
static void center_call(nnm_module *m, const float *xs, const float *w, float *y, float *gx) {
    const int64_t shape[2] = {2, 3};
    nnm_tensor *x = tu_tf32(g_ctx, 2, shape, xs), *out = NULL;
    nnm_tensor *g = tu_tf32(g_ctx, 2, shape, w);
    CU_ASSERT_PTR_NOT_NULL_FATAL(x);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    CHECK_STATUS(nnm_tensor_set_requires_grad(x, 1), NNM_OK);
    CHECK_STATUS(nnm_module_call(m, &x, 1, &out, 1), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(out);
    CHECK_STATUS(nnm_tensor_to_f32(out, y, 6), NNM_OK);
    CHECK_STATUS(nnm_backward(out, g, 0), NNM_OK);
    nnm_tensor *xg = nnm_tensor_grad(x);
    CU_ASSERT_PTR_NOT_NULL_FATAL(xg);
    CHECK_STATUS(nnm_tensor_to_f32(xg, gx, 6), NNM_OK);
    nnm_tensor_release(out);
    nnm_tensor_release(g);
    nnm_tensor_release(x);
}

static void check6(const float *got, const float *want, const char *what) {
    for (int i = 0; i < 6; i++) {
        if (fabs(got[i] - want[i]) > 1e-6)
            fprintf(stderr, "\n  doc_center %s[%d]: %g, expected %g\n", what, i, got[i], want[i]);
        CU_ASSERT_DOUBLE_EQUAL(got[i], want[i], 1e-6);
    }
}

static void check_running_mean(nnm_module *m, const float *want) {
    nnm_state_dict *sd = NULL;
    CHECK_STATUS(nnm_module_state_dict(m, &sd), NNM_OK);
    CU_ASSERT_EQUAL(nnm_state_dict_count(sd), 1); /* the buffer, and nothing else */
    nnm_tensor *rm = nnm_state_dict_get(sd, "running_mean");
    CU_ASSERT_PTR_NOT_NULL_FATAL(rm);
    float v[3];
    CHECK_STATUS(nnm_tensor_to_f32(rm, v, 3), NNM_OK);
    for (int i = 0; i < 3; i++) CU_ASSERT_DOUBLE_EQUAL(v[i], want[i], 1e-6);
    nnm_state_dict_free(sd);
}

static void test_doc_center(void) {
    LEAK_CHECK_BEGIN();
    CHECK_STATUS(nnm_plugin_load(g_ctx, NNM_DOC_CENTER), NNM_OK);
    nnm_config *cfg = NULL;
    CHECK_STATUS(nnm_config_new(&cfg), NNM_OK);
    CHECK_STATUS(nnm_config_set_int(cfg, "num_features", 3), NNM_OK);
    CHECK_STATUS(nnm_config_set_float(cfg, "momentum", 0.5), NNM_OK);
    nnm_module *m = NULL, *m2 = NULL;
    CHECK_STATUS(nnm_module_create(g_ctx, "example.center@^1", cfg, &m), NNM_OK);
    CHECK_STATUS(nnm_module_create(g_ctx, "example.center@^1", cfg, &m2), NNM_OK);
    nnm_config_free(cfg);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m2);
    char repr[128];
    CU_ASSERT(nnm_module_repr(m, repr, sizeof repr) > 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(repr, "Center(3, momentum=0.5)"));
    CU_ASSERT_EQUAL(nnm_module_num_params(m), 0); /* a buffer is no parameter */

    const float xs[6] = {1, 2, 3, 3, 4, 5}, w[6] = {1, 2, 3, 4, 5, 6};
    float y[6], gx[6];
    /* training: x minus the batch mean [2, 3, 4]; the gradient goes through
     * the mean too: w minus its column means [2.5, 3.5, 4.5] */
    center_call(m, xs, w, y, gx);
    check6(y, (const float[6]){-1, -1, -1, 1, 1, 1}, "train y");
    check6(gx, (const float[6]){-1.5f, -1.5f, -1.5f, 1.5f, 1.5f, 1.5f}, "train x.grad");
    check_running_mean(m, (const float[3]){1, 1.5f, 2}); /* 0.5 * 0 + 0.5 * mean */
    center_call(m, xs, w, y, gx);
    check_running_mean(m, (const float[3]){1.5f, 2.25f, 3});
    /* eval: x minus running_mean, which no longer changes; x.grad = w */
    CHECK_STATUS(nnm_module_train(m, 0), NNM_OK);
    center_call(m, xs, w, y, gx);
    check6(y, (const float[6]){-0.5f, -0.25f, 0, 1.5f, 1.75f, 2}, "eval y");
    check6(gx, w, "eval x.grad");
    check_running_mean(m, (const float[3]){1.5f, 2.25f, 3});
    /* the state dict carries the buffer to another module */
    nnm_state_dict *sd = NULL;
    nnm_load_report *rep = NULL;
    CHECK_STATUS(nnm_module_state_dict(m, &sd), NNM_OK);
    CHECK_STATUS(nnm_module_load_state_dict(m2, sd, 1, &rep), NNM_OK);
    nnm_load_report_free(rep);
    nnm_state_dict_free(sd);
    CHECK_STATUS(nnm_module_train(m2, 0), NNM_OK);
    center_call(m2, xs, w, y, gx);
    check6(y, (const float[6]){-0.5f, -0.25f, 0, 1.5f, 1.75f, 2}, "loaded eval y");
    /* the input spec the plugin declared */
    const int64_t bad_shape[2] = {2, 4};
    const float bad[8] = {0};
    nnm_tensor *bx = tu_tf32(g_ctx, 2, bad_shape, bad), *by = NULL;
    CHECK_ERROR(nnm_module_call(m, &bx, 1, &by, 1), NNM_E_SHAPE, "expected input [*, 3], got [2, 4]");
    nnm_tensor_release(bx);
    /* and a dtype the host ops refuse, said as a user says it */
    const int64_t iv[6] = {1, 2, 3, 4, 5, 6};
    const int64_t ishape[2] = {2, 3};
    nnm_tensor *ix = tu_ti64(g_ctx, 2, ishape, iv);
    CHECK_ERROR(nnm_module_call(m, &ix, 1, &by, 1), NNM_E_DTYPE, "must be f32, got i64");
    nnm_tensor_release(ix);
    nnm_module_release(m2);
    nnm_module_release(m);
    LEAK_CHECK_END();
}

/* ---- the page's C++ plugin (section 8) --------------------------------------- */

static void test_doc_cxx(void) {
    LEAK_CHECK_BEGIN();
    CHECK_STATUS(nnm_plugin_load(g_ctx, NNM_DOC_CXX), NNM_OK);
    nnm_config *cfg = NULL;
    CHECK_STATUS(nnm_config_new(&cfg), NNM_OK);
    CHECK_STATUS(nnm_config_set_float(cfg, "alpha", 2.0), NNM_OK);
    nnm_module *m = NULL;
    CHECK_STATUS(nnm_module_create(g_ctx, "example.softsign@^1", cfg, &m), NNM_OK);
    nnm_config_free(cfg);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    char repr[128];
    CU_ASSERT(nnm_module_repr(m, repr, sizeof repr) > 0);
    CU_ASSERT_STRING_EQUAL(repr, "Softsign(alpha=2)\nTotal params: 0\n");
    /* f32: values and the gradient autograd records, 2 / (1 + |x|)^2 */
    const float xs[6] = {-3, -0.5f, 0, 0.25f, 1, 4};
    const int64_t shape[2] = {2, 3};
    nnm_tensor *x = tu_tf32(g_ctx, 2, shape, xs), *y = NULL, *s = NULL;
    CU_ASSERT_PTR_NOT_NULL_FATAL(x);
    CHECK_STATUS(nnm_tensor_set_requires_grad(x, 1), NNM_OK);
    CHECK_STATUS(nnm_module_call(m, &x, 1, &y, 1), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(y);
    float v[6], g[6];
    CHECK_STATUS(nnm_tensor_to_f32(y, v, 6), NNM_OK);
    for (int i = 0; i < 6; i++) CU_ASSERT_DOUBLE_EQUAL(v[i], 2.0 * xs[i] / (1 + fabs(xs[i])), 1e-6);
    CHECK_STATUS(nnm_op_reduce(g_ctx, NNM_REDUCE_SUM, y, NULL, 0, 0, &s), NNM_OK);
    CHECK_STATUS(nnm_backward(s, NULL, 0), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(nnm_tensor_grad(x));
    CHECK_STATUS(nnm_tensor_to_f32(nnm_tensor_grad(x), g, 6), NNM_OK);
    for (int i = 0; i < 6; i++) {
        if (xs[i] == 0) continue; /* |x|'s kink: the gradient there is a convention */
        CU_ASSERT_DOUBLE_EQUAL(g[i], 2.0 / ((1 + fabs(xs[i])) * (1 + fabs(xs[i]))), 1e-5);
    }
    nnm_tensor_release(s);
    nnm_tensor_release(y);
    nnm_tensor_release(x);
    /* an i64 input is cast first */
    const int64_t iv[6] = {-3, -1, 0, 1, 2, 5};
    nnm_tensor *ix = tu_ti64(g_ctx, 2, shape, iv);
    y = NULL;
    CHECK_STATUS(nnm_module_call(m, &ix, 1, &y, 1), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(y);
    CHECK_STATUS(nnm_tensor_to_f32(y, v, 6), NNM_OK);
    for (int i = 0; i < 6; i++) CU_ASSERT_DOUBLE_EQUAL(v[i], 2.0 * iv[i] / (1 + fabs((double)iv[i])), 1e-6);
    nnm_tensor_release(y);
    nnm_tensor_release(ix);
    nnm_module_release(m);
    LEAK_CHECK_END();
}

/* ---- docs/abi.md states the ABI version of version.h ---------------------- */

static void test_abi_md_version(void) {
    size_t n = 0;
    unsigned char *md = tu_read_file(NNM_ABI_MD, &n);
    CU_ASSERT_PTR_NOT_NULL_FATAL(md);
    char want[64];
    snprintf(want, sizeof want, "`NNM_ABI_MAJOR.NNM_ABI_MINOR` (now %d.%d)", NNM_ABI_MAJOR,
             NNM_ABI_MINOR);
    if (!strstr((const char *)md, want))
        fprintf(stderr, "\n  docs/abi.md does not say %s\n", want);
    CU_ASSERT_PTR_NOT_NULL(strstr((const char *)md, want));
    /* and the table of what each minor added reaches this minor */
    char row[32];
    snprintf(row, sizeof row, "\n| %d.%d |", NNM_ABI_MAJOR, NNM_ABI_MINOR);
    if (!strstr((const char *)md, row))
        fprintf(stderr, "\n  docs/abi.md has no row for ABI %d.%d\n", NNM_ABI_MAJOR, NNM_ABI_MINOR);
    CU_ASSERT_PTR_NOT_NULL(strstr((const char *)md, row));
    free(md);
}

/* ---- grad mode per thread, errors per context ------------------------------- */

typedef struct thread_view {
    int grad_at_start;   /* the new thread's grad mode */
    int grad_after_main; /* after main turned its own off (main waits for it) */
    char msg[256];       /* the context's message, read on this thread */
    nnm_ctx *ctx;
} thread_view;

static void *other_thread(void *arg) {
    thread_view *v = arg;
    v->grad_at_start = nnm_grad_is_enabled();
    snprintf(v->msg, sizeof v->msg, "%s", nnm_ctx_errmsg(v->ctx));
    /* fail a call on this thread: main reads the message afterwards */
    nnm_module *m = NULL;
    (void)nnm_module_create(v->ctx, "no_such_layer_xyz", NULL, &m);
    v->grad_after_main = nnm_grad_is_enabled();
    return NULL;
}

static void test_thread_rules(void) {
    /* main: grad off, and a failure on the context */
    int prev = nnm_grad_set_enabled(0);
    nnm_module *m = NULL;
    CU_ASSERT_NOT_EQUAL(nnm_module_create(g_ctx, "linear", NULL, &m), NNM_OK);
    char main_msg[256];
    snprintf(main_msg, sizeof main_msg, "%s", nnm_ctx_errmsg(g_ctx));
    CU_ASSERT_TRUE(main_msg[0] != 0);
    thread_view v;
    memset(&v, 0, sizeof v);
    v.ctx = g_ctx; /* one thread at a time: main waits in join */
    pthread_t th;
    CU_ASSERT_EQUAL_FATAL(pthread_create(&th, NULL, other_thread, &v), 0);
    CU_ASSERT_EQUAL(pthread_join(th, NULL), 0);
    /* grad mode: main's no_grad did not reach the other thread */
    CU_ASSERT_EQUAL(v.grad_at_start, 1);
    CU_ASSERT_EQUAL(v.grad_after_main, 1);
    CU_ASSERT_EQUAL(nnm_grad_is_enabled(), 0); /* and the other's calls did not change main's */
    /* the message: the other thread read main's failure, and main reads the
     * other thread's (the context's message, whoever failed) */
    CU_ASSERT_STRING_EQUAL(v.msg, main_msg);
    CHECK_MSG("no_such_layer_xyz");
    nnm_grad_set_enabled(prev);
}

int main(void) {
    CU_pSuite s = tu_suite("docs", suite_init, suite_clean);
    if (!s) return 1;
    CU_add_test(s, "writing-a-plugin.md: the custom-backward plugin, as written", test_doc_cube);
    CU_add_test(s, "writing-a-plugin.md: the buffer and train/eval plugin, as written",
                test_doc_center);
    CU_add_test(s, "writing-a-plugin.md: the C++ plugin, as written", test_doc_cxx);
    CU_add_test(s, "abi.md: the ABI version is version.h's", test_abi_md_version);
    CU_add_test(s, "grad mode per thread, errors per context", test_thread_rules);
    return tu_run();
}
