/* tests/layers/test_unsupported.c - a model that needs an ABI 1.3 op on a
 * device whose backend lacks it fails with NNM_E_UNSUPPORTED, and the message
 * names the op and the backend. The device is a fake "gpu" backend compiled
 * into the test (device type CUDA, host memory, the 1.0 slots it must have and
 * nothing of 1.3), so this runs on every machine. */
#include "test_util.h"

static nnm_status fake_init(nnm_env *env, void **state) {
    (void)env;
    *state = NULL;
    return NNM_OK;
}
static void fake_shutdown(void *state) { (void)state; }
static nnm_status fake_alloc(nnm_env *env, void *state, int32_t id, size_t bytes, void **ptr) {
    (void)env, (void)state, (void)id;
    *ptr = aligned_alloc(64, bytes ? (bytes + 63) / 64 * 64 : 64);
    return *ptr ? NNM_OK : NNM_E_NOMEM;
}
static void fake_free(void *state, int32_t id, void *ptr) {
    (void)state, (void)id;
    free(ptr);
}
static nnm_status fake_memcpy(nnm_env *env, void *state, void *dst, nnm_device dd, const void *src, nnm_device sd,
                              size_t bytes) {
    (void)env, (void)state, (void)dd, (void)sd;
    if (bytes) memmove(dst, src, bytes);
    return NNM_OK;
}
/* fill of contiguous f32 only: enough for parameter init and zero grads */
static nnm_status fake_fill(nnm_env *env, void *state, const nnm_tensor_desc *out, double v) {
    (void)env, (void)state;
    int64_t n = 1;
    for (int32_t i = 0; i < out->ndim; i++) n *= out->shape[i];
    float *p = (float *)(void *)((char *)out->data + out->byte_offset);
    for (int64_t i = 0; i < n; i++) p[i] = (float)v;
    return NNM_OK;
}

static const nnm_backend_vtable fake_be = {
    .struct_size = sizeof(nnm_backend_vtable),
    .name = "fakegpu",
    .version_major = 1,
    .device_type = NNM_DEVICE_CUDA,
    .init = fake_init,
    .shutdown = fake_shutdown,
    .alloc = fake_alloc,
    .free = fake_free,
    .memcpy = fake_memcpy,
    .fill = fake_fill,
};
static const nnm_backend_vtable *const fake_backends[] = {&fake_be};
static const nnm_plugin_desc fake_desc = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
    .name = "fakegpu",
    .n_backends = 1,
    .backends = fake_backends,
};

static nnm_ctx *g_ctx;

/* Builds `layer` (config items "k=v" ints), moves it to the fake device, and
 * calls it on a [2, 3, 6, 6] input there: the call must fail with
 * NNM_E_UNSUPPORTED naming `op` and the backend. */
static void needs(const char *layer, const char *k1, int64_t v1, const char *k2, int64_t v2, const char *op) {
    nnm_config *cfg = NULL;
    nnm_config_new(&cfg);
    if (k1) nnm_config_set_int(cfg, k1, v1);
    if (k2) nnm_config_set_int(cfg, k2, v2);
    if (!strcmp(layer, "conv2d")) {
        nnm_config_set_int(cfg, "in_channels", 3);
        nnm_config_set_int(cfg, "out_channels", 2);
    }
    nnm_module *m = tu_module(g_ctx, layer, cfg);
    nnm_config_free(cfg);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    nnm_device gpu = {NNM_DEVICE_CUDA, 0};
    CU_ASSERT_EQUAL_FATAL(nnm_module_to(m, gpu), NNM_OK);
    int64_t shape[4] = {2, 3, 6, 6};
    nnm_tensor *x = NULL, *y = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_tensor_new(g_ctx, gpu, NNM_F32, 4, shape, &x), NNM_OK);
    nnm_status st = nnm_module_call(m, &x, 1, &y, 1);
    const char *msg = nnm_ctx_errmsg(g_ctx);
    if (st != NNM_E_UNSUPPORTED || !strstr(msg, op) || !strstr(msg, "fakegpu"))
        fprintf(stderr, "\n  %s: %s \"%s\"\n", layer, nnm_status_name(st), msg);
    CU_ASSERT_EQUAL(st, NNM_E_UNSUPPORTED);
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, op));
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "fakegpu"));
    CU_ASSERT_PTR_NULL(y);
    nnm_tensor_release(x);
    nnm_module_release(m);
}

static void test_layers_on_a_backend_without_the_ops(void) {
    needs("conv2d", "kernel_size", 3, NULL, 0, "conv");
    needs("max_pool2d", "kernel_size", 2, NULL, 0, "max_pool");
    needs("avg_pool2d", "kernel_size", 2, NULL, 0, "avg_pool");
    needs("adaptive_avg_pool2d", "output_size", 2, NULL, 0, "adaptive_avg_pool");
    needs("batch_norm2d", "num_features", 3, NULL, 0, "fakegpu");
}

static int suite_init(void) {
    /* no discovery: the fake backend is the only one for CUDA */
    nnm_ctx_options o = {sizeof o, NNM_CTX_NO_DISCOVERY, 0};
    if (nnm_ctx_new(&o, &g_ctx) != NNM_OK) return 1;
    static const char *const plugins[] = {"cpu", "conv", "pool", "normalization"};
    for (int i = 0; i < 4; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/nnm_%s.so", NNM_TEST_PLUGIN_DIR, plugins[i]);
        if (nnm_plugin_load(g_ctx, path) != NNM_OK) {
            fprintf(stderr, "%s: %s\n", path, nnm_ctx_errmsg(g_ctx));
            return 1;
        }
    }
    return nnm_plugin_register_static(g_ctx, &fake_desc, "test_unsupported") != NNM_OK;
}

static int suite_clean(void) {
    nnm_ctx_free(g_ctx);
    return 0;
}

int main(void) {
    CU_pSuite s = tu_suite("unsupported", suite_init, suite_clean);
    if (!s) return 1;
    CU_add_test(s, "an op the device's backend lacks: NNM_E_UNSUPPORTED naming op and backend",
                test_layers_on_a_backend_without_the_ops);
    return tu_run();
}
