/* tests/abi/test_bindable.c - what bindings rely on instead of the headers:
 * nnm_constant (every integer constant by name, values as the compiler sees
 * them), nnm_struct_size, nnm_ctx_set_error_msg (the non-variadic error
 * setter), and struct_size first in the structs the library hands out. */
#include "test_util.h"

#include <string.h>

#define EXPECT_CONSTANT(c)                                                               \
    do {                                                                                 \
        int64_t v_ = 12345;                                                              \
        CU_ASSERT_EQUAL(nnm_constant(#c, &v_), NNM_OK);                                  \
        CU_ASSERT_EQUAL(v_, (int64_t)(c));                                               \
    } while (0)

static void test_constant_values(void) {
    /* one of each family, values as this compiler sees the headers */
    EXPECT_CONSTANT(NNM_OK);
    EXPECT_CONSTANT(NNM_E_INVALID);
    EXPECT_CONSTANT(NNM_E_LIMIT);
    EXPECT_CONSTANT(NNM_DEVICE_CPU);
    EXPECT_CONSTANT(NNM_DEVICE_CUDA);
    EXPECT_CONSTANT(NNM_DTYPE_FLOAT);
    EXPECT_CONSTANT(NNM_DTYPE_BFLOAT);
    EXPECT_CONSTANT(NNM_MAX_DIMS);
    EXPECT_CONSTANT(NNM_MAX_IO);
    EXPECT_CONSTANT(NNM_UNARY_SIGN);
    EXPECT_CONSTANT(NNM_BINARY_MUL);
    EXPECT_CONSTANT(NNM_REDUCE_MEAN);
    EXPECT_CONSTANT(NNM_REDUCTION_SUM);
    EXPECT_CONSTANT(NNM_INIT_NORMAL);
    EXPECT_CONSTANT(NNM_CONFIG_STRS);
    EXPECT_CONSTANT(NNM_CONFIG_REQUIRED);
    EXPECT_CONSTANT(NNM_ARITY_ANY);
    EXPECT_CONSTANT(NNM_LAYER_CONTAINER);
    EXPECT_CONSTANT(NNM_SPEC_LEADING_ANY);
    EXPECT_CONSTANT(NNM_CTX_NO_DISCOVERY);
    EXPECT_CONSTANT(NNM_BUILD_NO_WEIGHTS);
    EXPECT_CONSTANT(NNM_MANIFEST_JSON);
    EXPECT_CONSTANT(NNM_MANIFEST_DEFAULT_MAX_BYTES);
    EXPECT_CONSTANT(NNM_SAFETENSORS_MAX_HEADER);
    EXPECT_CONSTANT(NNM_ABI_MAJOR);
    EXPECT_CONSTANT(NNM_ABI_MINOR);
    EXPECT_CONSTANT(NNM_VERSION_MINOR);
    int64_t v = 0;
    CU_ASSERT_EQUAL(nnm_constant("NNM_ARITY_ANY", &v), NNM_OK);
    CU_ASSERT_EQUAL(v, -1);
    CU_ASSERT_EQUAL(nnm_constant("NNM_MANIFEST_DEFAULT_MAX_BYTES", &v), NNM_OK);
    CU_ASSERT_EQUAL(v, 16 << 20);
}

static void test_constant_misses(void) {
    int64_t v = 7;
    CU_ASSERT_EQUAL(nnm_constant("NNM_NO_SUCH_THING", &v), NNM_E_NOT_FOUND);
    CU_ASSERT_EQUAL(v, 7);
    /* not integer constants: strings, compound literals, function-like macros */
    CU_ASSERT_EQUAL(nnm_constant("NNM_VERSION_STRING", &v), NNM_E_NOT_FOUND);
    CU_ASSERT_EQUAL(nnm_constant("NNM_F32", &v), NNM_E_NOT_FOUND);
    CU_ASSERT_EQUAL(nnm_constant("NNM_HOST_HAS", &v), NNM_E_NOT_FOUND);
    CU_ASSERT_EQUAL(nnm_constant("nnm_e_shape", &v), NNM_E_NOT_FOUND); /* case matters */
    CU_ASSERT_EQUAL(nnm_constant("", &v), NNM_E_NOT_FOUND);
    CU_ASSERT_EQUAL(nnm_constant(NULL, &v), NNM_E_INVALID);
    CU_ASSERT_EQUAL(nnm_constant("NNM_OK", NULL), NNM_E_INVALID);
}

static void test_constant_enumeration(void) {
    uint32_t n = nnm_constant_count();
    CU_ASSERT(n >= 80); /* 84 when written; the headers only grow */
    const char *prev = NULL;
    uint32_t n_status = 0;
    for (uint32_t i = 0; i < n; i++) {
        int64_t v = 0, w = 1;
        const char *name = nnm_constant_at(i, &v);
        CU_ASSERT_PTR_NOT_NULL_FATAL(name);
        CU_ASSERT(strncmp(name, "NNM_", 4) == 0 && strncmp(name, "NNM__", 5) != 0);
        if (prev) CU_ASSERT(strcmp(prev, name) < 0); /* sorted, no duplicates */
        prev = name;
        CU_ASSERT_EQUAL(nnm_constant(name, &w), NNM_OK); /* every entry is findable */
        CU_ASSERT_EQUAL(w, v);
        CU_ASSERT_PTR_EQUAL(nnm_constant_at(i, NULL), name);
        if (strncmp(name, "NNM_E_", 6) == 0 || strcmp(name, "NNM_OK") == 0) {
            /* every status constant has its name in nnm_status_name */
            CU_ASSERT_STRING_EQUAL(nnm_status_name((nnm_status)v), name);
            n_status++;
        }
    }
    CU_ASSERT_EQUAL(n_status, 19); /* 18 through 1.2; 1.3 adds NNM_E_TIMEOUT */
    CU_ASSERT_PTR_NULL(nnm_constant_at(n, NULL));
    CU_ASSERT_PTR_NULL(nnm_constant_at(UINT32_MAX, NULL));
}

#define EXPECT_SIZE(s) CU_ASSERT_EQUAL(nnm_struct_size(#s), sizeof(s))

static void test_struct_sizes(void) {
    EXPECT_SIZE(nnm_ctx_options);
    EXPECT_SIZE(nnm_ctx_stats);
    EXPECT_SIZE(nnm_plugin_info);
    EXPECT_SIZE(nnm_dlpack_tensor);
    EXPECT_SIZE(nnm_profile_event);
    EXPECT_SIZE(nnm_sgd_options);
    EXPECT_SIZE(nnm_adam_options);
    EXPECT_SIZE(nnm_st_entry);
    EXPECT_SIZE(nnm_kv);
    EXPECT_SIZE(nnm_load_report);
    EXPECT_SIZE(nnm_manifest_limits);
    EXPECT_SIZE(nnm_tensor_desc);
    EXPECT_SIZE(nnm_device);
    EXPECT_SIZE(nnm_dtype);
    EXPECT_SIZE(nnm_env);
    EXPECT_SIZE(nnm_host);
    EXPECT_SIZE(nnm_layer_vtable);
    EXPECT_SIZE(nnm_backend_vtable);
    EXPECT_SIZE(nnm_plugin_desc);
    EXPECT_SIZE(nnm_config_field);
    EXPECT_SIZE(nnm_gemm_args);
    EXPECT_SIZE(nnm_sgd_args);
    EXPECT_SIZE(nnm_adam_args);
    CU_ASSERT_EQUAL(nnm_struct_size("nnm_tensor"), 0); /* opaque */
    CU_ASSERT_EQUAL(nnm_struct_size("no_such_struct"), 0);
    CU_ASSERT_EQUAL(nnm_struct_size(NULL), 0);
}

static void test_set_error_msg(void) {
    nnm_ctx *ctx = NULL;
    nnm_ctx_options opts = {sizeof opts, NNM_CTX_NO_DISCOVERY, 0};
    CU_ASSERT_EQUAL_FATAL(nnm_ctx_new(&opts, &ctx), NNM_OK);
    /* returns the code; the text is taken literally (no format) */
    CU_ASSERT_EQUAL(nnm_ctx_set_error_msg(ctx, NNM_E_HOOK, "100% wrong %s %n"), NNM_E_HOOK);
    CU_ASSERT_STRING_EQUAL(nnm_ctx_errmsg(ctx), "100% wrong %s %n");
    CU_ASSERT_EQUAL(nnm_ctx_set_error_msg(ctx, NNM_E_SHAPE, NULL), NNM_E_SHAPE);
    CU_ASSERT_STRING_EQUAL(nnm_ctx_errmsg(ctx), "");
    /* a message past the capacity is truncated, never overflows */
    static char big[5000];
    memset(big, 'x', sizeof big - 1);
    CU_ASSERT_EQUAL(nnm_ctx_set_error_msg(ctx, NNM_E_INVALID, big), NNM_E_INVALID);
    size_t len = strlen(nnm_ctx_errmsg(ctx));
    CU_ASSERT(len > 0 && len < sizeof big - 1);
    CU_ASSERT_EQUAL(nnm_ctx_set_error_msg(NULL, NNM_E_IO, "x"), NNM_E_IO);
    nnm_ctx_free(ctx);
}

/* A hook failing through nnm_ctx_set_error_msg fails the call with its code
 * and its text, attributed to the module. */
static nnm_status failing_hook(void *user, nnm_module *m, nnm_tensor *const *in, uint32_t n_in,
                               nnm_tensor **out, uint32_t n_out) {
    (void)in, (void)n_in, (void)out, (void)n_out;
    (void)user;
    return nnm_ctx_set_error_msg(nnm_module_ctx(m), NNM_E_HOOK, "the hook says no");
}

static void test_set_error_msg_from_hook(void) {
    nnm_ctx *ctx = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_ctx_new(NULL, &ctx), NNM_OK);
    nnm_module *m = tu_module(ctx, "relu", NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_EQUAL(nnm_module_register_forward_hook(m, failing_hook, NULL, NULL), NNM_OK);
    int64_t shape[2] = {2, 3};
    nnm_tensor *x = tu_tf32(ctx, 2, shape, NULL), *y = NULL;
    CU_ASSERT_EQUAL(nnm_module_call(m, &x, 1, &y, 1), NNM_E_HOOK);
    CU_ASSERT_PTR_NULL(y);
    CU_ASSERT(strstr(nnm_ctx_errmsg(ctx), "the hook says no") != NULL);
    nnm_tensor_release(x);
    nnm_module_release(m);
    nnm_ctx_free(ctx);
}

static void test_load_report_struct_size(void) {
    nnm_ctx *ctx = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_ctx_new(NULL, &ctx), NNM_OK);
    nnm_module *m = tu_linear(ctx, "linear", 4, 8, 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    nnm_load_report *rep = NULL;
    /* a file whose keys do not fit: not strict, so the report lists them */
    CU_ASSERT_EQUAL(nnm_module_load(m, NNM_TEST_MLP_SAFETENSORS, 0, &rep), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(rep);
    CU_ASSERT_EQUAL(rep->struct_size, sizeof *rep);
    CU_ASSERT(rep->n_missing + rep->n_unexpected + rep->n_mismatched > 0);
    nnm_load_report_free(rep);
    nnm_module_release(m);
    nnm_ctx_free(ctx);
}

int main(void) {
    static const struct {
        const char *name;
        CU_TestFunc fn;
    } tests[] = {
        {"constant values", test_constant_values},
        {"constant misses", test_constant_misses},
        {"constant enumeration", test_constant_enumeration},
        {"struct sizes", test_struct_sizes},
        {"set_error_msg", test_set_error_msg},
        {"set_error_msg from a hook", test_set_error_msg_from_hook},
        {"load report struct_size", test_load_report_struct_size},
    };
    CU_pSuite suite = tu_suite("bindable", NULL, NULL);
    if (!suite) return 2;
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++)
        if (!CU_add_test(suite, tests[i].name, tests[i].fn)) return 2;
    return tu_run();
}
