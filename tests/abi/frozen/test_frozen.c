/* tests/abi/frozen/test_frozen.c - plugins built against earlier releases of
 * the ABI (frozen snapshots) keep loading and running in this runtime. */
#include <string.h>

#include <CUnit/Basic.h>

#include "nnmod/nnmod.h"

static void test_abi_1_0_plugin_loads_and_runs(void) {
    nnm_ctx_options opts = {sizeof opts, NNM_CTX_NO_DISCOVERY, 0};
    nnm_ctx *ctx = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_ctx_new(&opts, &ctx), NNM_OK);
    /* the CPU backend from the build tree, then the frozen-ABI fixture */
    CU_ASSERT_EQUAL_FATAL(nnm_plugin_load(ctx, NNM_TEST_CPU_PLUGIN), NNM_OK);
    nnm_status st = nnm_plugin_load(ctx, NNM_TEST_FROZEN_1_0);
    CU_ASSERT_EQUAL_FATAL(st, NNM_OK);
    nnm_plugin_info info = {sizeof info};
    CU_ASSERT_EQUAL(nnm_plugin_info_get(ctx, 1, &info), NNM_OK);
    CU_ASSERT_EQUAL(info.abi_major, 1);
    CU_ASSERT_EQUAL(info.abi_minor, 0);

    nnm_config *cfg;
    nnm_config_new(&cfg);
    nnm_config_set_float(cfg, "a", 2.0);
    nnm_config_set_float(cfg, "b", 0.5);
    nnm_module *m = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_module_create(ctx, "frozen_affine@^1.0", cfg, &m), NNM_OK);
    nnm_config_free(cfg);
    int64_t shape[2] = {1, 3};
    float x[3] = {1, -2, 3}, y[3];
    nnm_tensor *tx = NULL, *ty = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_tensor_from_f32(ctx, 2, shape, x, &tx), NNM_OK);
    CU_ASSERT_EQUAL_FATAL(nnm_module_call(m, &tx, 1, &ty, 1), NNM_OK);
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(ty, y, 3), NNM_OK);
    CU_ASSERT_DOUBLE_EQUAL(y[0], 2.5, 1e-6);
    CU_ASSERT_DOUBLE_EQUAL(y[1], -3.5, 1e-6);
    CU_ASSERT_DOUBLE_EQUAL(y[2], 6.5, 1e-6);
    nnm_tensor_release(ty);
    nnm_tensor_release(tx);
    nnm_module_release(m);
    nnm_ctx_free(ctx);
}

static void test_abi_1_2_plugin_loads_and_runs(void) {
    nnm_ctx_options opts = {sizeof opts, NNM_CTX_NO_DISCOVERY, 0};
    nnm_ctx *ctx = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_ctx_new(&opts, &ctx), NNM_OK);
    CU_ASSERT_EQUAL_FATAL(nnm_plugin_load(ctx, NNM_TEST_CPU_PLUGIN), NNM_OK);
    CU_ASSERT_EQUAL_FATAL(nnm_plugin_load(ctx, NNM_TEST_FROZEN_1_2), NNM_OK);
    nnm_plugin_info info = {sizeof info};
    CU_ASSERT_EQUAL(nnm_plugin_info_get(ctx, 1, &info), NNM_OK);
    CU_ASSERT_EQUAL(info.abi_major, 1);
    CU_ASSERT_EQUAL(info.abi_minor, 2);

    nnm_config *cfg;
    nnm_config_new(&cfg);
    nnm_config_set_float(cfg, "scale", 0.5);
    nnm_module *m = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_module_create(ctx, "frozen_scaled_sum@^1.2", cfg, &m), NNM_OK);
    /* its 1.2 schema is enforced by this runtime */
    nnm_config_set_int(cfg, "bogus", 1);
    nnm_module *bad = NULL;
    CU_ASSERT_EQUAL(nnm_module_create(ctx, "frozen_scaled_sum", cfg, &bad), NNM_E_INVALID);
    nnm_config_free(cfg);
    char repr[128];
    nnm_module_repr(m, repr, sizeof repr);
    CU_ASSERT_PTR_NOT_NULL(strstr(repr, "FrozenScaledSum(scale=0.5)"));
    int64_t shape[2] = {2, 3};
    float x[6] = {1, 2, 3, 4, 5, 6}, y[2];
    nnm_tensor *tx = NULL, *ty = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_tensor_from_f32(ctx, 2, shape, x, &tx), NNM_OK);
    CU_ASSERT_EQUAL_FATAL(nnm_module_call(m, &tx, 1, &ty, 1), NNM_OK);
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(ty, y, 2), NNM_OK);
    CU_ASSERT_DOUBLE_EQUAL(y[0], 3.0, 1e-6);
    CU_ASSERT_DOUBLE_EQUAL(y[1], 7.5, 1e-6);
    nnm_tensor_release(ty);
    nnm_tensor_release(tx);
    nnm_module_release(m);
    nnm_ctx_free(ctx);
}

static void test_abi_1_3_plugin_loads_and_runs(void) {
    nnm_ctx_options opts = {sizeof opts, NNM_CTX_NO_DISCOVERY, 0};
    nnm_ctx *ctx = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_ctx_new(&opts, &ctx), NNM_OK);
    CU_ASSERT_EQUAL_FATAL(nnm_plugin_load(ctx, NNM_TEST_CPU_PLUGIN), NNM_OK);
    CU_ASSERT_EQUAL_FATAL(nnm_plugin_load(ctx, NNM_TEST_FROZEN_1_3), NNM_OK);
    nnm_plugin_info info = {sizeof info};
    CU_ASSERT_EQUAL(nnm_plugin_info_get(ctx, 1, &info), NNM_OK);
    CU_ASSERT_EQUAL(info.abi_major, 1);
    CU_ASSERT_EQUAL(info.abi_minor, 3);

    nnm_config *cfg;
    nnm_config_new(&cfg);
    int64_t k[2] = {2, 1};
    nnm_config_set_ints(cfg, "kernel_size", k, 2);
    nnm_module *m = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_module_create(ctx, "frozen_max_pool@^1.3", cfg, &m), NNM_OK);
    nnm_config_free(cfg);
    char repr[128];
    nnm_module_repr(m, repr, sizeof repr);
    CU_ASSERT_PTR_NOT_NULL(strstr(repr, "FrozenMaxPool(kernel_size=(2, 1))"));
    /* [1, 1, 2, 3] pooled by (2, 1): the larger of each column */
    int64_t shape[4] = {1, 1, 2, 3};
    float x[6] = {1, 5, 3, 4, 2, 6}, y[3];
    nnm_tensor *tx = NULL, *ty = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_tensor_from_f32(ctx, 4, shape, x, &tx), NNM_OK);
    CU_ASSERT_EQUAL_FATAL(nnm_module_call(m, &tx, 1, &ty, 1), NNM_OK);
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(ty, y, 3), NNM_OK);
    CU_ASSERT_DOUBLE_EQUAL(y[0], 4.0, 0);
    CU_ASSERT_DOUBLE_EQUAL(y[1], 5.0, 0);
    CU_ASSERT_DOUBLE_EQUAL(y[2], 6.0, 0);
    nnm_tensor_release(ty);
    nnm_tensor_release(tx);
    nnm_module_release(m);
    nnm_ctx_free(ctx);
}

static void test_abi_1_4_plugin_loads_and_runs(void) {
    nnm_ctx_options opts = {sizeof opts, NNM_CTX_NO_DISCOVERY, 0};
    nnm_ctx *ctx = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_ctx_new(&opts, &ctx), NNM_OK);
    CU_ASSERT_EQUAL_FATAL(nnm_plugin_load(ctx, NNM_TEST_CPU_PLUGIN), NNM_OK);
    CU_ASSERT_EQUAL_FATAL(nnm_plugin_load(ctx, NNM_TEST_FROZEN_1_4), NNM_OK);
    nnm_plugin_info info = {sizeof info};
    CU_ASSERT_EQUAL(nnm_plugin_info_get(ctx, 1, &info), NNM_OK);
    CU_ASSERT_EQUAL(info.abi_major, 1);
    CU_ASSERT_EQUAL(info.abi_minor, 4);

    nnm_config *cfg;
    nnm_config_new(&cfg);
    nnm_config_set_float(cfg, "eps", 0.0);
    nnm_module *m = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_module_create(ctx, "frozen_batch_norm@^1.4", cfg, &m), NNM_OK);
    nnm_config_free(cfg);
    char repr[128];
    nnm_module_repr(m, repr, sizeof repr);
    CU_ASSERT_PTR_NOT_NULL(strstr(repr, "FrozenBatchNorm(eps=0)"));
    /* [2, 2]: channel 0 holds 1, 3 (mean 2, biased variance 1), channel 1 4, 0 */
    int64_t shape[2] = {2, 2};
    float x[4] = {1, 4, 3, 0}, y[4];
    nnm_tensor *tx = NULL, *ty = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_tensor_from_f32(ctx, 2, shape, x, &tx), NNM_OK);
    CU_ASSERT_EQUAL_FATAL(nnm_module_call(m, &tx, 1, &ty, 1), NNM_OK);
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(ty, y, 4), NNM_OK);
    CU_ASSERT_DOUBLE_EQUAL(y[0], -1.0, 1e-6);
    CU_ASSERT_DOUBLE_EQUAL(y[1], 1.0, 1e-6);
    CU_ASSERT_DOUBLE_EQUAL(y[2], 1.0, 1e-6);
    CU_ASSERT_DOUBLE_EQUAL(y[3], -1.0, 1e-6);
    nnm_tensor_release(ty);
    nnm_tensor_release(tx);
    nnm_module_release(m);
    nnm_ctx_free(ctx);
}

int main(void) {
    if (CU_initialize_registry() != CUE_SUCCESS) return 1;
    CU_pSuite s = CU_add_suite("frozen_abi", NULL, NULL);
    CU_add_test(s, "a plugin built against ABI 1.0 loads and runs", test_abi_1_0_plugin_loads_and_runs);
    CU_add_test(s, "a plugin built against ABI 1.2 loads and runs", test_abi_1_2_plugin_loads_and_runs);
    CU_add_test(s, "a plugin built against ABI 1.3 loads and runs", test_abi_1_3_plugin_loads_and_runs);
    CU_add_test(s, "a plugin built against ABI 1.4 loads and runs", test_abi_1_4_plugin_loads_and_runs);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failures = CU_get_number_of_failures() + CU_get_number_of_suites_failed();
    int err = CU_get_error();
    CU_cleanup_registry();
    return failures || err ? 1 : 0;
}
