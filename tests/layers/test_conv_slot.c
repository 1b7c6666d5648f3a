/* tests/layers/test_conv_slot.c - the runtime's side of the ABI 1.4 backend
 * slots conv / conv_backward, as docs/abi.md states it, with a third-party
 * style backend: the cpu backend's kernels under another name ("slotprobe",
 * registered statically on the CPU device, the cpu plugin itself not
 * loaded) whose conv slots do what g_mode says:
 *   - declining (NNM_E_UNSUPPORTED) with or without a message, or after
 *     writing garbage into y / grad_x / grad_w, runs im2col + gemm: the
 *     same answer as a silent decline, and the message is not left behind;
 *   - any other status fails the op with the slot's message (or one saying
 *     it gave none), forward or backward. */
#include "test_util.h"

#include <dlfcn.h>

static nnm_ctx *g_ctx;
#define TU_CTX g_ctx

enum {
    MODE_DECLINE,         /* NNM_E_UNSUPPORTED, no message */
    MODE_DECLINE_MSG,     /* NNM_E_UNSUPPORTED with a message */
    MODE_DECLINE_WRITTEN, /* garbage in the outputs, then NNM_E_UNSUPPORTED */
    MODE_FAIL_MSG,        /* NNM_E_INVALID with a message */
    MODE_FAIL_BARE,       /* NNM_E_INVALID, no message */
    MODE_FAIL_BACKWARD,   /* forward declines, backward fails with a message */
};
static int g_mode;
static int g_calls[2]; /* conv, conv_backward */

static void *g_cpu_dl;
static nnm_backend_vtable g_vt;

static void scribble(const nnm_tensor_desc *d) {
    if (d == NULL) return;
    int64_t n = 1;
    for (int32_t i = 0; i < d->ndim; i++) n *= d->shape[i];
    float *p = (float *)((char *)d->data + d->byte_offset);
    for (int64_t i = 0; i < n; i++) p[i] = 12345.0f;
}

static nnm_status slot(nnm_env *env, const nnm_conv_args *a, int backward) {
    g_calls[backward]++;
    switch (g_mode) {
    case MODE_DECLINE_MSG:
        return env->host->set_error(env, NNM_E_UNSUPPORTED, "slotprobe: declined with a message");
    case MODE_DECLINE_WRITTEN:
        scribble(a->y), scribble(a->grad_x), scribble(a->grad_w);
        return NNM_E_UNSUPPORTED;
    case MODE_FAIL_MSG:
        return env->host->set_error(env, NNM_E_INVALID, "slotprobe: %s failed", backward ? "conv_backward" : "conv");
    case MODE_FAIL_BARE:
        return NNM_E_INVALID;
    case MODE_FAIL_BACKWARD:
        return backward ? env->host->set_error(env, NNM_E_INVALID, "slotprobe: conv_backward failed")
                        : NNM_E_UNSUPPORTED;
    default:
        return NNM_E_UNSUPPORTED;
    }
}
static nnm_status probe_conv(nnm_env *env, void *state, const nnm_conv_args *a) {
    (void)state;
    return slot(env, a, 0);
}
static nnm_status probe_conv_backward(nnm_env *env, void *state, const nnm_conv_args *a) {
    (void)state;
    return slot(env, a, 1);
}

static const nnm_backend_vtable *const g_backends[] = {&g_vt};
static const nnm_plugin_desc g_desc = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
    .name = "slotprobe",
    .n_backends = 1,
    .backends = g_backends,
};

#define NX (2 * 4 * 6 * 5)
#define NW (4 * 4 * 9)
#define NY (2 * 4 * 6 * 5)

/* One conv (op_probe, padding 1: a 3x3 geometry the cpu's Winograd would
 * take) forward and backward of sum(y * y). The call's status; y, grad_x,
 * grad_w on success. */
static nnm_status run(float *y, float *gx, float *gw) {
    static const int64_t xs[4] = {2, 4, 6, 5}, ws[4] = {4, 4, 3, 3}, bs[1] = {4};
    float x[NX], w[NW], b[4];
    tu_fill_uniform(x, NX, 1u, -1.0, 1.0);
    tu_fill_uniform(w, NW, 2u, -0.5, 0.5);
    tu_fill_uniform(b, 4, 3u, -0.5, 0.5);
    nnm_config *cfg = NULL;
    nnm_config_new(&cfg);
    nnm_config_set_str(cfg, "op", "conv");
    nnm_config_set_int(cfg, "ns", 2);
    const int64_t pad[2] = {1, 1};
    nnm_config_set_ints(cfg, "padding", pad, 2);
    nnm_config_set_ints(cfg, "padding_end", pad, 2);
    nnm_module *m = tu_module(g_ctx, "op_probe", cfg);
    nnm_config_free(cfg);
    if (m == NULL) return NNM_E_PLUGIN;
    nnm_tensor *in[3] = {tu_tf32(g_ctx, 4, xs, x), tu_tf32(g_ctx, 4, ws, w), tu_tf32(g_ctx, 1, bs, b)};
    for (int i = 0; i < 2; i++) nnm_tensor_set_requires_grad(in[i], 1);
    nnm_tensor *out = NULL;
    nnm_status st = nnm_module_call(m, in, 3, &out, 1);
    if (st == NNM_OK) {
        memcpy(y, tu_cpu_data(out), sizeof(float) * NY);
        st = nnm_backward(out, out, 0);
    }
    if (st == NNM_OK) {
        memcpy(gx, tu_cpu_data(nnm_tensor_grad(in[0])), sizeof(float) * NX);
        memcpy(gw, tu_cpu_data(nnm_tensor_grad(in[1])), sizeof(float) * NW);
    }
    nnm_tensor_release(out);
    for (int i = 0; i < 3; i++) nnm_tensor_release(in[i]);
    nnm_module_release(m);
    return st;
}

static void test_declines(void) {
    LEAK_CHECK_BEGIN();
    static float y0[NY], gx0[NX], gw0[NW], y[NY], gx[NX], gw[NW];
    g_mode = MODE_DECLINE;
    memset(g_calls, 0, sizeof g_calls);
    CHECK_STATUS(run(y0, gx0, gw0), NNM_OK);
    /* offered both, declined both; the backward twice: the weight's gradient
     * first (handed over early: DDP), then the input's */
    CU_ASSERT(g_calls[0] == 1 && g_calls[1] == 2);
    const int modes[2] = {MODE_DECLINE_MSG, MODE_DECLINE_WRITTEN};
    for (int i = 0; i < 2; i++) {
        g_mode = modes[i];
        memset(g_calls, 0, sizeof g_calls);
        CHECK_STATUS(run(y, gx, gw), NNM_OK);
        CU_ASSERT(g_calls[0] == 1 && g_calls[1] == 2);
        /* im2col + gemm wrote every element: the same answer, bit for bit */
        CU_ASSERT(memcmp(y, y0, sizeof y) == 0);
        CU_ASSERT(memcmp(gx, gx0, sizeof gx) == 0);
        CU_ASSERT(memcmp(gw, gw0, sizeof gw) == 0);
        /* the decline's message is dropped, not kept for a later failure */
        CU_ASSERT_PTR_NULL(strstr(nnm_ctx_errmsg(g_ctx), "slotprobe"));
    }
    LEAK_CHECK_END();
}

static void test_failures(void) {
    LEAK_CHECK_BEGIN();
    static float y[NY], gx[NX], gw[NW];
    g_mode = MODE_FAIL_MSG;
    CHECK_ERROR(run(y, gx, gw), NNM_E_INVALID, "slotprobe: conv failed");
    g_mode = MODE_FAIL_BARE;
    CHECK_ERROR(run(y, gx, gw), NNM_E_INVALID, "no message");
    g_mode = MODE_FAIL_BACKWARD;
    memset(g_calls, 0, sizeof g_calls);
    CHECK_ERROR(run(y, gx, gw), NNM_E_INVALID, "slotprobe: conv_backward failed");
    CU_ASSERT(g_calls[0] == 1 && g_calls[1] == 1);
    g_mode = MODE_DECLINE;
    LEAK_CHECK_END();
}

static int suite_init(void) {
    const nnm_plugin_desc *cpu = tu_plugin_open(NNM_TEST_CPU_PLUGIN, &g_cpu_dl);
    if (!cpu || cpu->n_backends < 1) return 1;
    const nnm_backend_vtable *v = cpu->backends[0];
    memcpy(&g_vt, v, v->struct_size < sizeof g_vt ? v->struct_size : sizeof g_vt);
    g_vt.struct_size = sizeof g_vt;
    g_vt.name = "slotprobe";
    g_vt.conv = probe_conv;
    g_vt.conv_backward = probe_conv_backward;
    nnm_ctx_options o = {sizeof o, NNM_CTX_NO_DISCOVERY, 0};
    if (nnm_ctx_new(&o, &g_ctx) != NNM_OK) return 1;
    if (nnm_plugin_register_static(g_ctx, &g_desc, "test_conv_slot") != NNM_OK ||
        nnm_plugin_load(g_ctx, NNM_TEST_OP_PROBE) != NNM_OK) {
        fprintf(stderr, "%s\n", nnm_ctx_errmsg(g_ctx));
        return 1;
    }
    return 0;
}

static int suite_clean(void) {
    nnm_ctx_free(g_ctx);
    if (g_cpu_dl) dlclose(g_cpu_dl);
    return 0;
}

int main(void) {
    CU_pSuite s = tu_suite("conv_slot", suite_init, suite_clean);
    CU_add_test(s, "a backend's conv slots declining (with or without a message, after writing): im2col's answer",
                test_declines);
    CU_add_test(s, "a backend's conv slots failing: the op fails with the slot's message", test_failures);
    return tu_run();
}
