/* tests/docs/test_docs.c - what the documentation states, checked (issue 9
 * section 7):
 *  - docs/writing-a-plugin.md section 6: the page's doc_cube plugin (its
 *    snippets, extracted and compiled as written) gives cube(x) = x^3 and,
 *    through its own backward, d/dx = 3x^2: against the formula and against
 *    central finite differences of the forward; host ops ran inside backward;
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
    CU_add_test(s, "abi.md: the ABI version is version.h's", test_abi_md_version);
    CU_add_test(s, "grad mode per thread, errors per context", test_thread_rules);
    return tu_run();
}
