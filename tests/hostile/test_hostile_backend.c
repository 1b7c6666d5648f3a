/* tests/hostile/test_hostile_backend.c - lying backends and layers that
 * misuse child_new, registered the way a stranger's plugin would be:
 *
 *  - "cpunoctc" (tests/layers/noctc_backend.h): a backend that claims ABI
 *    1.5 and NNM_BACKEND_OPS_1_5 but leaves every optional slot NULL past
 *    `where` (conv, pool, norms, softmax, nll, index_select, rnn_cell, cast,
 *    arg_reduce, ctc_loss, set_num_threads). Each op of sessions 6-7 must
 *    either run on its generic fallback with the CPU's answer, or fail with
 *    NNM_E_UNSUPPORTED naming the op and the backend; never call a NULL slot.
 *  - "shortvt": a vtable whose struct_size stops before the ABI 1.4 slots
 *    while the memory past it holds non-NULL traps (what an older plugin's
 *    neighbouring data could hold): the runtime must read no slot beyond
 *    struct_size.
 *  - "liar": slots that fail with a status outside the ABI's codes and no
 *    message.
 *  - layers whose create calls child_new on themselves (directly or through
 *    another layer), twice with one name, with control bytes, into a module
 *    they did not make, with hostile config JSON. */
#include "test_util.h"

#include <stddef.h>

#include "nnmod/plugin.h"

static nnm_ctx *g_ctx;
#define TU_CTX g_ctx

#include "layers/noctc_backend.h"

#define INTS(...) (const int64_t[]){__VA_ARGS__}, sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)
#define SHAPE(...) (int32_t)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (const int64_t[]){__VA_ARGS__}

static const char *const g_plugins[] = {
    NNM_HX_CPU, NNM_HX_EMBEDDING, NNM_HX_POOL, NNM_HX_LOSSES, NNM_HX_RESAMPLE, NNM_HX_TENSOR_OPS,
    NNM_HX_MATH_OPS, NNM_HX_RECURRENT, NNM_HX_CONV, NNM_HX_NORMALIZATION, NNM_HX_ACTIVATIONS,
    NNM_HX_IDENTITY, NNM_HX_SEQUENTIAL, NNM_HX_RELU, NNM_HX_LINEAR, NNM_HX_DROPOUT, NNM_HX_FLATTEN,
    NNM_HX_ADD, NNM_HX_MUL,
};

static int load_all(nnm_ctx *ctx) {
    for (size_t i = 0; i < sizeof g_plugins / sizeof g_plugins[0]; i++)
        if (nnm_plugin_load(ctx, g_plugins[i]) != NNM_OK) {
            fprintf(stderr, "%s: %s\n", g_plugins[i], nnm_ctx_errmsg(ctx));
            return 1;
        }
    return 0;
}

static int suite_init(void) {
    nnm_ctx_options o = {sizeof o, NNM_CTX_NO_DISCOVERY, 0};
    if (nnm_ctx_new(&o, &g_ctx) != NNM_OK) return 1;
    const nnm_plugin_desc *cpu = tu_plugin_open(NNM_HX_CPU, &g_cpu_dl);
    if (!cpu || cpu->n_backends < 1) return 1;
    g_cpu_vt = cpu->backends[0];
    if (load_all(g_ctx)) return 1;
    return nnm_plugin_register_static(g_ctx, &noctc_desc, "test_hostile_backend") != NNM_OK;
}

static int suite_clean(void) {
    nnm_ctx_free(g_ctx);
    g_ctx = NULL;
    if (g_cpu_dl) dlclose(g_cpu_dl);
    g_cpu_dl = NULL;
    return 0;
}

static nnm_config *cfg_new(void) {
    nnm_config *c = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_config_new(&c), NNM_OK);
    return c;
}

/* A tensor on dev holding n elements of p (host memory on both devices). */
static nnm_tensor *on_dev(nnm_device dev, nnm_dtype dt, int32_t nd, const int64_t *shape, const void *p) {
    nnm_tensor *t = NULL;
    CHECK_STATUS(nnm_tensor_new(g_ctx, dev, dt, nd, shape, &t), NNM_OK);
    int64_t n = 1;
    for (int32_t i = 0; i < nd; i++) n *= shape[i];
    if (t && n && p) memcpy(nnm_tensor_desc_get(t)->data, p, (size_t)n * (dt.bits / 8u));
    return t;
}

static const nnm_dtype F32 = {NNM_DTYPE_FLOAT, 32, 1}, I64 = {NNM_DTYPE_INT, 64, 1};

/* One op on both devices: the module `layer` (config cfg, kept) with the
 * inputs made by mk. On the lying device it must give the CPU's values, or
 * fail with NNM_E_UNSUPPORTED naming the backend (then `unsupported_ok`
 * must be set: the op has no fallback). */
typedef struct in_spec {
    nnm_dtype dt;
    int32_t nd;
    int64_t shape[4];
    const void *data;
} in_spec;

/* the lying backend's name, as the messages must give it */
static const char *g_be_name = "cpunoctc";

static void both(const char *layer, const nnm_config *cfg, const in_spec *ins, uint32_t n_in, uint32_t n_out,
                 int unsupported_ok) {
    float *res[2] = {NULL, NULL};
    int64_t n[2] = {0, 0};
    nnm_status st[2] = {NNM_OK, NNM_OK};
    const nnm_device devs[2] = {{NNM_DEVICE_CPU, 0}, g_noctc};
    /* one module (one set of random weights), run on the CPU, then moved */
    nnm_module *m = tu_module(g_ctx, layer, cfg);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    for (int d = 0; d < 2; d++) {
        if (d) CHECK_STATUS(nnm_module_to(m, devs[d]), NNM_OK);
        nnm_tensor *in[8] = {0}, *out[4] = {0};
        for (uint32_t i = 0; i < n_in; i++) in[i] = on_dev(devs[d], ins[i].dt, ins[i].nd, ins[i].shape, ins[i].data);
        st[d] = nnm_module_call(m, in, n_in, out, n_out);
        if (st[d] == NNM_OK) {
            nnm_tensor *y = out[0];
            const nnm_tensor_desc *yd = nnm_tensor_desc_get(y);
            nnm_tensor *yf = NULL;
            if (d || yd->dtype.code != NNM_DTYPE_FLOAT) {
                /* to the CPU (the fake device is host memory), then to f32 */
                nnm_tensor *yc = on_dev(devs[0], yd->dtype, yd->ndim, yd->shape, (const char *)yd->data + yd->byte_offset);
                if (yd->dtype.code != NNM_DTYPE_FLOAT) {
                    nnm_module *back = tu_module(g_ctx, "float", NULL);
                    CHECK_STATUS(nnm_module_call(back, &yc, 1, &yf, 1), NNM_OK);
                    nnm_tensor_release(yc);
                    nnm_module_release(back);
                } else {
                    yf = yc;
                }
                y = yf;
            }
            res[d] = tu_read_f32(y, &n[d]);
            nnm_tensor_release(yf);
        } else if (d == 1) {
            const char *msg = nnm_ctx_errmsg(g_ctx);
            if (!(unsupported_ok && st[d] == NNM_E_UNSUPPORTED && strstr(msg, g_be_name)))
                fprintf(stderr, "\n  %s on %s: %s: %s\n", layer, g_be_name, nnm_status_name(st[d]), msg);
            CU_ASSERT_TRUE(unsupported_ok);
            CU_ASSERT_EQUAL(st[d], NNM_E_UNSUPPORTED);
            CU_ASSERT_PTR_NOT_NULL(strstr(msg, g_be_name));
        } else {
            fprintf(stderr, "\n  %s on cpu: %s: %s\n", layer, nnm_status_name(st[d]), nnm_ctx_errmsg(g_ctx));
            CU_ASSERT_EQUAL(st[d], NNM_OK);
        }
        for (uint32_t i = 0; i < n_out; i++) {
            if (st[d] != NNM_OK) CU_ASSERT_PTR_NULL(out[i]);
            nnm_tensor_release(out[i]);
        }
        for (uint32_t i = 0; i < n_in; i++) nnm_tensor_release(in[i]);
    }
    nnm_module_release(m);
    if (st[0] == NNM_OK && st[1] == NNM_OK) {
        CU_ASSERT_EQUAL(n[0], n[1]);
        for (int64_t i = 0; res[0] && res[1] && i < n[0] && i < n[1]; i++) {
            const int same = res[1][i] == res[0][i] || tu_near(res[1][i], res[0][i], 1e-4, 1e-4) ||
                             (isnan(res[0][i]) && isnan(res[1][i]));
            if (!same) fprintf(stderr, "\n  %s [%lld]: %s %g, cpu %g", layer, (long long)i, g_be_name, res[1][i], res[0][i]);
            CU_ASSERT_TRUE(same);
        }
    }
    free(res[0]);
    free(res[1]);
}

static const float g_x24[24] = {0.5f, -1, 2, 3, -4, 5, 6, -7, 8, 9, 10, -11, 1.5f, 2.5f, -3.5f, 4.5f, 0, 0, 7, -8, 9, 1, 2, 3};

static void test_index_and_casts(void) {
    LEAK_CHECK_BEGIN();
    const int64_t idx[3] = {2, 0, 3};
    nnm_config *c = cfg_new();
    nnm_config_set_int(c, "dim", 1);
    both("index_select", c, (in_spec[]){{F32, 2, {4, 6}, g_x24}, {I64, 1, {3}, idx}}, 2, 1, 0);
    /* out of range on the fallback too: named, not read out of bounds */
    const int64_t bad[2] = {1, 6};
    nnm_module *m = tu_module(g_ctx, "index_select", c);
    CHECK_STATUS(nnm_module_to(m, g_noctc), NNM_OK);
    nnm_tensor *in[2] = {on_dev(g_noctc, F32, 2, (const int64_t[]){4, 6}, g_x24), on_dev(g_noctc, I64, 1, (const int64_t[]){2}, bad)};
    nnm_tensor *y = NULL;
    CHECK_ERROR(nnm_module_call(m, in, 2, &y, 1), NNM_E_INVALID, "6");
    CU_ASSERT_PTR_NULL(y);
    nnm_tensor_release(in[0]);
    nnm_tensor_release(in[1]);
    nnm_module_release(m);
    nnm_config_free(c);
    c = cfg_new();
    nnm_config_set_ints(c, "dims", INTS(0, 1));
    both("flip", c, (in_spec[]){{F32, 2, {4, 6}, g_x24}}, 1, 1, 0);
    nnm_config_free(c);
    const char *casts[] = {"long", "int", "bool"};
    for (int k = 0; k < 3; k++) both(casts[k], NULL, (in_spec[]){{F32, 2, {4, 6}, g_x24}}, 1, 1, 1);
    c = cfg_new();
    nnm_config_set_int(c, "dim", 1);
    both("argmax", c, (in_spec[]){{F32, 2, {4, 6}, g_x24}}, 1, 1, 1);
    both("max", c, (in_spec[]){{F32, 2, {4, 6}, g_x24}}, 1, 2, 1);
    nnm_config_free(c);
    LEAK_CHECK_END();
}

static void test_new_layers(void) {
    LEAK_CHECK_BEGIN();
    /* embedding_bag: composed, must run */
    nnm_config *c = cfg_new();
    nnm_config_set_int(c, "num_embeddings", 6);
    nnm_config_set_int(c, "embedding_dim", 4);
    nnm_config_set_str(c, "mode", "max");
    const int64_t ix[5] = {0, 5, 2, 2, 1}, off[3] = {0, 2, 2};
    both("embedding_bag", c, (in_spec[]){{I64, 1, {5}, ix}, {I64, 1, {3}, off}}, 2, 1, 0);
    nnm_config_set_str(c, "mode", "mean");
    nnm_config_set_int(c, "padding_idx", 2);
    both("embedding_bag", c, (in_spec[]){{I64, 1, {5}, ix}, {I64, 1, {3}, off}}, 2, 1, 0);
    nnm_config_free(c);
    /* embedding: host ops since 1.1.1, so it runs here too (index_select's
     * one-hot fallback), padding_idx and max_norm included */
    c = cfg_new();
    nnm_config_set_int(c, "num_embeddings", 6);
    nnm_config_set_int(c, "embedding_dim", 4);
    both("embedding", c, (in_spec[]){{I64, 1, {5}, ix}}, 1, 1, 0);
    nnm_config_set_int(c, "padding_idx", 2);
    nnm_config_set_float(c, "max_norm", 1.0);
    both("embedding", c, (in_spec[]){{I64, 1, {5}, ix}}, 1, 1, 0);
    nnm_config_free(c);
    /* max_unpool2d */
    c = cfg_new();
    nnm_config_set_int(c, "kernel_size", 2);
    const int64_t ui[4] = {0, 3, 9, 15};
    both("max_unpool2d", c, (in_spec[]){{F32, 4, {1, 1, 2, 2}, g_x24}, {I64, 4, {1, 1, 2, 2}, ui}}, 2, 1, 0);
    nnm_config_free(c);
    /* upsample with antialias: index_select and products */
    c = cfg_new();
    nnm_config_set_ints(c, "size", INTS(3, 2));
    nnm_config_set_str(c, "mode", "bilinear");
    nnm_config_set_bool(c, "antialias", 1);
    both("upsample", c, (in_spec[]){{F32, 4, {1, 1, 4, 6}, g_x24}}, 1, 1, 0);
    nnm_config_free(c);
    /* ctc_loss: the composed recursion */
    float lp[3 * 2 * 4];
    for (int i = 0; i < 24; i++) lp[i] = logf(0.25f);
    const int64_t tg[4] = {1, 2, 3, 3}, il[2] = {3, 2}, tl[2] = {2, 1};
    c = cfg_new();
    nnm_config_set_str(c, "reduction", "none");
    both("ctc_loss", c, (in_spec[]){{F32, 3, {3, 2, 4}, lp}, {I64, 2, {2, 2}, tg}, {I64, 1, {2}, il}, {I64, 1, {2}, tl}}, 4, 1, 0);
    nnm_config_free(c);
    /* the blank among the targets, repeated labels that need more steps
     * than the input has (inf), zero_infinity: fused and composed agree */
    const int64_t tgb[4] = {0, 2, 3, 3}, ilb[2] = {3, 3}, tlb[2] = {2, 2};
    c = cfg_new();
    nnm_config_set_str(c, "reduction", "none");
    both("ctc_loss", c, (in_spec[]){{F32, 3, {3, 2, 4}, lp}, {I64, 2, {2, 2}, tgb}, {I64, 1, {2}, ilb}, {I64, 1, {2}, tlb}}, 4, 1, 0);
    const int64_t ils[2] = {2, 2};
    both("ctc_loss", c, (in_spec[]){{F32, 3, {3, 2, 4}, lp}, {I64, 2, {2, 2}, tgb}, {I64, 1, {2}, ils}, {I64, 1, {2}, tlb}}, 4, 1, 0);
    nnm_config_set_bool(c, "zero_infinity", 1);
    nnm_config_set_str(c, "reduction", "mean");
    both("ctc_loss", c, (in_spec[]){{F32, 3, {3, 2, 4}, lp}, {I64, 2, {2, 2}, tgb}, {I64, 1, {2}, ils}, {I64, 1, {2}, tlb}}, 4, 1, 0);
    nnm_config_free(c);
    /* recurrent layers: the rnn_cell slot is NULL */
    const char *rnns[] = {"rnn", "lstm", "gru"};
    for (int k = 0; k < 3; k++) {
        c = cfg_new();
        nnm_config_set_int(c, "input_size", 4);
        nnm_config_set_int(c, "hidden_size", 3);
        both(rnns[k], c, (in_spec[]){{F32, 3, {3, 2, 4}, g_x24}}, 1, 1, 1);
        nnm_config_free(c);
    }
    /* pooling, conv, norms, losses with NULL kernels */
    c = cfg_new();
    nnm_config_set_int(c, "kernel_size", 2);
    both("max_pool2d", c, (in_spec[]){{F32, 4, {1, 1, 4, 6}, g_x24}}, 1, 1, 1);
    nnm_config_free(c);
    c = cfg_new();
    nnm_config_set_int(c, "in_channels", 1);
    nnm_config_set_int(c, "out_channels", 2);
    nnm_config_set_int(c, "kernel_size", 3);
    both("conv2d", c, (in_spec[]){{F32, 4, {1, 1, 4, 6}, g_x24}}, 1, 1, 1);
    nnm_config_free(c);
    c = cfg_new();
    nnm_config_set_int(c, "num_features", 4);
    both("batch_norm1d", c, (in_spec[]){{F32, 2, {6, 4}, g_x24}}, 1, 1, 1);
    nnm_config_free(c);
    const int64_t cls[4] = {0, 5, 2, 1};
    both("cross_entropy", NULL, (in_spec[]){{F32, 2, {4, 6}, g_x24}, {I64, 1, {4}, cls}}, 2, 1, 1);
    c = cfg_new();
    nnm_config_set_int(c, "dim", 1);
    both("softmax", c, (in_spec[]){{F32, 2, {4, 6}, g_x24}}, 1, 1, 1);
    nnm_config_free(c);
    LEAK_CHECK_END();
}

/* empty batches, empty bags, empty sequences: on the CPU and through the
 * fallbacks, never a read of a zero-sized buffer */
static void test_empty(void) {
    LEAK_CHECK_BEGIN();
    const int64_t none[1] = {0};
    (void)none;
    /* ctc_loss: T = 0 (every length 0), and N = 0 */
    nnm_config *c = cfg_new();
    nnm_config_set_str(c, "reduction", "none");
    both("ctc_loss", c, (in_spec[]){{F32, 3, {0, 2, 4}, NULL}, {I64, 2, {2, 0}, NULL},
                                   {I64, 1, {2}, (const int64_t[]){0, 0}}, {I64, 1, {2}, (const int64_t[]){0, 0}}}, 4, 1, 0);
    both("ctc_loss", c, (in_spec[]){{F32, 3, {3, 0, 4}, NULL}, {I64, 2, {0, 2}, NULL},
                                   {I64, 1, {0}, NULL}, {I64, 1, {0}, NULL}}, 4, 1, 0);
    nnm_config_set_str(c, "reduction", "sum");
    both("ctc_loss", c, (in_spec[]){{F32, 3, {3, 0, 4}, NULL}, {I64, 1, {0}, NULL},
                                   {I64, 1, {0}, NULL}, {I64, 1, {0}, NULL}}, 4, 1, 0);
    nnm_config_free(c);
    /* embedding_bag: no indices at all, two empty bags, every mode */
    const char *modes[] = {"sum", "mean", "max"};
    for (int k = 0; k < 3; k++) {
        c = cfg_new();
        nnm_config_set_int(c, "num_embeddings", 6);
        nnm_config_set_int(c, "embedding_dim", 4);
        nnm_config_set_str(c, "mode", modes[k]);
        both("embedding_bag", c, (in_spec[]){{I64, 1, {0}, NULL}, {I64, 1, {2}, (const int64_t[]){0, 0}}}, 2, 1, 0);
        both("embedding_bag", c, (in_spec[]){{I64, 2, {0, 3}, NULL}}, 1, 1, 0);
        both("embedding_bag", c, (in_spec[]){{I64, 2, {2, 0}, NULL}}, 1, 1, 0);
        nnm_config_free(c);
    }
    /* max_unpool2d, upsample, index_select, argmax on an empty batch */
    c = cfg_new();
    nnm_config_set_int(c, "kernel_size", 2);
    both("max_unpool2d", c, (in_spec[]){{F32, 4, {0, 1, 2, 2}, NULL}, {I64, 4, {0, 1, 2, 2}, NULL}}, 2, 1, 0);
    nnm_config_free(c);
    c = cfg_new();
    nnm_config_set_ints(c, "size", (const int64_t[]){3, 2}, 2);
    nnm_config_set_str(c, "mode", "bicubic");
    nnm_config_set_bool(c, "antialias", 1);
    both("upsample", c, (in_spec[]){{F32, 4, {0, 2, 7, 5}, NULL}}, 1, 1, 0);
    nnm_config_free(c);
    c = cfg_new();
    nnm_config_set_int(c, "dim", 0);
    both("index_select", c, (in_spec[]){{F32, 2, {4, 6}, g_x24}, {I64, 1, {0}, NULL}}, 2, 1, 0);
    both("index_select", c, (in_spec[]){{F32, 2, {0, 6}, NULL}, {I64, 1, {0}, NULL}}, 2, 1, 0);
    nnm_config_set_int(c, "dim", 1);
    both("argmax", c, (in_spec[]){{F32, 2, {0, 6}, NULL}}, 1, 1, 1);
    nnm_config_free(c);
    c = cfg_new();
    nnm_config_set_int(c, "input_size", 4);
    nnm_config_set_int(c, "hidden_size", 3);
    both("lstm", c, (in_spec[]){{F32, 3, {3, 0, 4}, NULL}}, 1, 1, 1);
    /* an empty sequence is refused, as PyTorch ("Expected sequence length to be larger than 0") */
    nnm_module *m = tu_module(g_ctx, "gru", c);
    nnm_tensor *x = on_dev(g_noctc, F32, 3, (const int64_t[]){0, 2, 4}, NULL), *y = NULL;
    CHECK_STATUS(nnm_module_to(m, g_noctc), NNM_OK);
    CHECK_ERROR(nnm_module_call(m, &x, 1, &y, 1), NNM_E_SHAPE, "gru: the sequence is empty ([0, 2, 4])");
    CU_ASSERT_PTR_NULL(y);
    nnm_tensor_release(x);
    nnm_module_release(m);
    nnm_config_free(c);
    LEAK_CHECK_END();
}

/* set_num_threads is NULL on cpunoctc: the count is kept for the backends
 * that have the slot, and nothing calls the NULL one. */
static void test_threads(void) {
    CHECK_STATUS(nnm_ctx_set_num_threads(g_ctx, 2), NNM_OK);
    nnm_tensor *x = on_dev(g_noctc, F32, 2, (const int64_t[]){4, 6}, g_x24), *y = NULL;
    nnm_module *m = tu_module(g_ctx, "relu", NULL);
    CHECK_STATUS(nnm_module_to(m, g_noctc), NNM_OK);
    CHECK_STATUS(nnm_module_call(m, &x, 1, &y, 1), NNM_OK);
    CHECK_STATUS(nnm_ctx_set_num_threads(g_ctx, 1), NNM_OK);
    nnm_tensor_release(x);
    nnm_tensor_release(y);
    nnm_module_release(m);
}

/* ---- a vtable shorter than the ABI it claims -------------------------------- */

static int g_trap_calls;
static nnm_status trap_slot(void) {
    g_trap_calls++;
    return NNM_E_PLUGIN;
}

/* the liars share the cpu kernels' one state (nc_init would make another
 * per context and lose the first) */
static nnm_status shared_init(nnm_env *env, void **state) {
    *state = NULL;
    return g_cpu_state ? NNM_OK : g_cpu_vt->init(env, &g_cpu_state);
}

/* the whole 1.5 vtable in memory, struct_size covering only up to `where` */
static nnm_backend_vtable g_short;

static const nnm_backend_vtable *const short_backends[] = {&g_short};
static const nnm_plugin_desc short_desc = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
    .name = "shortvt",
    .n_backends = 1,
    .backends = short_backends,
};

static void test_short_vtable(void) {
    nnm_ctx_options o = {sizeof o, NNM_CTX_NO_DISCOVERY, 0};
    nnm_ctx *ctx = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_ctx_new(&o, &ctx), NNM_OK);
    CU_ASSERT_EQUAL_FATAL(load_all(ctx), 0);
    g_short = noctc_be;
    g_short.name = "shortvt";
    g_short.init = shared_init;
    g_short.struct_size = (uint32_t)(offsetof(nnm_backend_vtable, where) + sizeof g_short.where);
    /* every slot past struct_size is a trap */
    void (**slots)(void) = (void (**)(void))((char *)&g_short + g_short.struct_size);
    const size_t n_traps = (sizeof g_short - g_short.struct_size) / sizeof(void (*)(void));
    for (size_t i = 0; i < n_traps; i++) {
        const size_t at = g_short.struct_size + i * sizeof(void (*)(void));
        if (at % sizeof(void *) == 0) slots[i] = (void (*)(void))trap_slot;
    }
    CHECK_STATUS(nnm_plugin_register_static(ctx, &short_desc, "test_hostile_backend"), NNM_OK);
    nnm_ctx *saved = g_ctx;
    g_ctx = ctx;
    g_be_name = "shortvt";
    g_trap_calls = 0;
    CHECK_STATUS(nnm_ctx_set_num_threads(ctx, 2), NNM_OK);
    nnm_config *c = cfg_new();
    nnm_config_set_int(c, "dim", 1);
    both("index_select", c, (in_spec[]){{F32, 2, {4, 6}, g_x24}, {I64, 1, {3}, (const int64_t[]){2, 0, 3}}}, 2, 1, 0);
    both("argmax", c, (in_spec[]){{F32, 2, {4, 6}, g_x24}}, 1, 1, 1);
    both("long", NULL, (in_spec[]){{F32, 2, {4, 6}, g_x24}}, 1, 1, 1);
    nnm_config_free(c);
    c = cfg_new();
    nnm_config_set_int(c, "input_size", 4);
    nnm_config_set_int(c, "hidden_size", 3);
    both("gru", c, (in_spec[]){{F32, 3, {3, 2, 4}, g_x24}}, 1, 1, 1);
    nnm_config_free(c);
    c = cfg_new();
    nnm_config_set_int(c, "kernel_size", 2);
    both("max_pool2d", c, (in_spec[]){{F32, 4, {1, 1, 4, 6}, g_x24}}, 1, 1, 1);
    nnm_config_free(c);
    float lp[24];
    for (int i = 0; i < 24; i++) lp[i] = logf(0.25f);
    both("ctc_loss", NULL, (in_spec[]){{F32, 3, {3, 2, 4}, lp}, {I64, 2, {2, 2}, (const int64_t[]){1, 2, 3, 3}},
                                        {I64, 1, {2}, (const int64_t[]){3, 3}}, {I64, 1, {2}, (const int64_t[]){2, 2}}}, 4, 1, 0);
    CU_ASSERT_EQUAL(g_trap_calls, 0);
    g_be_name = "cpunoctc";
    g_ctx = saved;
    nnm_ctx_free(ctx);
}

/* ---- slots that fail with a status outside the ABI and no message ------------ */

static nnm_status liar_index_select(nnm_env *env, void *state, const nnm_index_args *a) {
    (void)env, (void)state, (void)a;
    return (nnm_status)-4242;
}
static nnm_status liar_cast(nnm_env *env, void *state, const nnm_cast_args *a) {
    (void)env, (void)state, (void)a;
    return (nnm_status)77;
}
static nnm_status liar_arg_reduce(nnm_env *env, void *state, const nnm_arg_reduce_args *a) {
    (void)env, (void)state, (void)a;
    return (nnm_status)-4242;
}
static nnm_status liar_rnn(nnm_env *env, void *state, const nnm_rnn_cell_args *a) {
    (void)env, (void)state, (void)a;
    return (nnm_status)77;
}
static nnm_status liar_ctc(nnm_env *env, void *state, const nnm_ctc_args *a) {
    (void)env, (void)state, (void)a;
    return (nnm_status)-4242;
}
static nnm_status liar_threads(nnm_env *env, void *state, int32_t n) {
    (void)env, (void)state, (void)n;
    return (nnm_status)-4242;
}
static nnm_backend_vtable g_liar;
static const nnm_backend_vtable *const liar_backends[] = {&g_liar};
static const nnm_plugin_desc liar_desc = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
    .name = "liar",
    .n_backends = 1,
    .backends = liar_backends,
};

static void test_liar_statuses(void) {
    nnm_ctx_options o = {sizeof o, NNM_CTX_NO_DISCOVERY, 0};
    nnm_ctx *ctx = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_ctx_new(&o, &ctx), NNM_OK);
    CU_ASSERT_EQUAL_FATAL(load_all(ctx), 0);
    g_liar = noctc_be;
    g_liar.name = "liar";
    g_liar.init = shared_init;
    g_liar.index_select = liar_index_select;
    g_liar.cast = liar_cast;
    g_liar.arg_reduce = liar_arg_reduce;
    g_liar.set_num_threads = liar_threads;
    g_liar.rnn_cell = liar_rnn;
    g_liar.rnn_cell_backward = liar_rnn;
    g_liar.ctc_loss = liar_ctc;
    g_liar.ctc_loss_backward = liar_ctc;
    CHECK_STATUS(nnm_plugin_register_static(ctx, &liar_desc, "test_hostile_backend"), NNM_OK);
    nnm_ctx *saved = g_ctx;
    g_ctx = ctx;
    struct { const char *layer; const char *slot; } cases[] = {{"index_select", "index_select"}, {"long", "cast"}, {"argmax", "arg_reduce"}};
    for (int k = 0; k < 3; k++) {
        nnm_config *c = cfg_new();
        if (k != 1) nnm_config_set_int(c, "dim", 1);
        nnm_module *m = tu_module(ctx, cases[k].layer, c);
        nnm_config_free(c);
        CU_ASSERT_PTR_NOT_NULL_FATAL(m);
        CHECK_STATUS(nnm_module_to(m, g_noctc), NNM_OK);
        nnm_tensor *in[2] = {on_dev(g_noctc, F32, 2, (const int64_t[]){4, 6}, g_x24),
                             on_dev(g_noctc, I64, 1, (const int64_t[]){1}, (const int64_t[]){1})};
        nnm_tensor *y = NULL;
        nnm_status st = nnm_module_call(m, in, k ? 1 : 2, &y, 1);
        const char *msg = nnm_ctx_errmsg(ctx);
        /* a status of the ABI (negative, known), and a message naming backend and slot */
        CU_ASSERT_TRUE(st < 0);
        CU_ASSERT_STRING_NOT_EQUAL(nnm_status_name(st), "unknown");
        if (!strstr(msg, "liar") || !strstr(msg, cases[k].slot))
            fprintf(stderr, "\n  %s: %s: %s\n", cases[k].layer, nnm_status_name(st), msg);
        CU_ASSERT_PTR_NOT_NULL(strstr(msg, "liar"));
        CU_ASSERT_PTR_NOT_NULL(strstr(msg, cases[k].slot));
        CU_ASSERT_PTR_NULL(y);
        nnm_tensor_release(in[0]);
        nnm_tensor_release(in[1]);
        nnm_module_release(m);
    }
    /* rnn_cell and ctc_loss */
    nnm_config *c = cfg_new();
    nnm_config_set_int(c, "input_size", 4);
    nnm_config_set_int(c, "hidden_size", 3);
    nnm_module *m = tu_module(ctx, "gru", c);
    nnm_config_free(c);
    CHECK_STATUS(nnm_module_to(m, g_noctc), NNM_OK);
    nnm_tensor *x = on_dev(g_noctc, F32, 3, (const int64_t[]){3, 2, 4}, g_x24), *y = NULL;
    CHECK_ERROR(nnm_module_call(m, &x, 1, &y, 1), NNM_E_PLUGIN, "backend 'liar': rnn_cell failed with status 77");
    CU_ASSERT_PTR_NULL(y);
    nnm_tensor_release(x);
    nnm_module_release(m);
    float lp[24];
    for (int i = 0; i < 24; i++) lp[i] = logf(0.25f);
    m = tu_module(ctx, "ctc_loss", NULL);
    CHECK_STATUS(nnm_module_to(m, g_noctc), NNM_OK);
    nnm_tensor *ci[4] = {on_dev(g_noctc, F32, 3, (const int64_t[]){3, 2, 4}, lp),
                         on_dev(g_noctc, I64, 2, (const int64_t[]){2, 2}, (const int64_t[]){1, 2, 3, 3}),
                         on_dev(g_noctc, I64, 1, (const int64_t[]){2}, (const int64_t[]){3, 3}),
                         on_dev(g_noctc, I64, 1, (const int64_t[]){2}, (const int64_t[]){2, 2})};
    CHECK_ERROR(nnm_module_call(m, ci, 4, &y, 1), NNM_E_PLUGIN, "backend 'liar': ctc_loss failed with status -4242");
    CU_ASSERT_PTR_NULL(y);
    for (int i = 0; i < 4; i++) nnm_tensor_release(ci[i]);
    nnm_module_release(m);
    /* the backend is up now: a thread count goes to its set_num_threads */
    nnm_status st = nnm_ctx_set_num_threads(ctx, 3);
    CU_ASSERT_EQUAL(st, NNM_E_PLUGIN);
    CU_ASSERT_PTR_NOT_NULL(strstr(nnm_ctx_errmsg(ctx), "backend 'liar': set_num_threads failed with status -4242"));
    g_ctx = saved;
    nnm_ctx_free(ctx);
}

/* ---- layers that misuse child_new ------------------------------------------ */

static nnm_status mk_self(nnm_env *env, void **self) {
    *self = NULL;
    return env->host->child_new(env, "again", "hx_self", NULL, NULL);
}
static nnm_status mk_ping(nnm_env *env, void **self) {
    *self = NULL;
    return env->host->child_new(env, "pong", "hx_pong", NULL, NULL);
}
static nnm_status mk_pong(nnm_env *env, void **self) {
    *self = NULL;
    return env->host->child_new(env, "ping", "hx_ping", NULL, NULL);
}
static nnm_status mk_dup(nnm_env *env, void **self) {
    *self = NULL;
    nnm_status st = env->host->child_new(env, "a", "identity", NULL, NULL);
    return st ? st : env->host->child_new(env, "a", "identity", NULL, NULL);
}
static nnm_status mk_ctrl(nnm_env *env, void **self) {
    *self = NULL;
    return env->host->child_new(env, "a\x1b[2Jb", "identity", NULL, NULL);
}
static nnm_status mk_ghost(nnm_env *env, void **self) {
    *self = NULL;
    return env->host->child_new(env, "ghost.a", "identity", NULL, NULL);
}
static nnm_status mk_badjson(nnm_env *env, void **self) {
    *self = NULL;
    return env->host->child_new(env, "a", "identity", NULL, "{\"x\": [1, 2,");
}
static char g_deep_json[200016];
static nnm_status mk_deepjson(nnm_env *env, void **self) {
    *self = NULL;
    return env->host->child_new(env, "a", "identity", NULL, g_deep_json);
}
static char g_big_json[200001];
static nnm_status mk_bigjson(nnm_env *env, void **self) {
    *self = NULL;
    return env->host->child_new(env, "a", "identity", NULL, g_big_json);
}
static nnm_status hx_plain_create(nnm_env *env, void **self) {
    (void)env;
    *self = NULL;
    return NNM_OK;
}
/* ignores the failure of its child_new and says OK */
static nnm_status mk_ignore(nnm_env *env, void **self) {
    *self = NULL;
    (void)env->host->child_new(env, "a", "no_such_layer", NULL, NULL);
    (void)env->host->child_new(env, "b", "hx_self", NULL, NULL);
    return env->host->child_new(env, "c", "identity", NULL, NULL);
}
/* makes two children, then fails: they go with it */
static nnm_status mk_fail(nnm_env *env, void **self) {
    *self = NULL;
    nnm_status st = env->host->child_new(env, "a", "identity", NULL, NULL);
    if (!st) st = env->host->child_new(env, "b", "hx_dup", NULL, NULL); /* fails inside */
    return st ? st : env->host->set_error(env, NNM_E_INVALID, "hx_fail: no");
}
/* calls child_new and set_output_names from forward, where neither is valid */
static nnm_status mk_late_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in, nnm_tensor **out,
                                  uint32_t n_out) {
    (void)self, (void)in, (void)n_in, (void)out, (void)n_out;
    nnm_status st = env->host->child_new(env, "late", "identity", NULL, NULL);
    if (st != NNM_E_STATE) return env->host->set_error(env, NNM_E_PLUGIN, "child_new in forward: %d", (int)st);
    const char *names[1] = {"o"};
    st = env->host->set_output_names(env, names, 1);
    return st;
}
static nnm_status mk_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in, nnm_tensor **out,
                             uint32_t n_out) {
    (void)self, (void)n_in, (void)n_out;
    return env->host->op_unary(env, NNM_UNARY_COPY, in[0], 0, &out[0]);
}

#define MK_LAYER(id, nm, fn)                                                                                 \
    static const nnm_layer_vtable id = {.struct_size = sizeof(nnm_layer_vtable), .name = nm, .version_major = 1, \
                                        .n_inputs = 1, .n_outputs = 1, .create = fn, .forward = mk_forward,  \
                                        .flags = NNM_LAYER_OWNS_CHILDREN};
MK_LAYER(l_self, "hx_self", mk_self)
MK_LAYER(l_ping, "hx_ping", mk_ping)
MK_LAYER(l_pong, "hx_pong", mk_pong)
MK_LAYER(l_dup, "hx_dup", mk_dup)
MK_LAYER(l_ctrl, "hx_ctrl", mk_ctrl)
MK_LAYER(l_ghost, "hx_ghost", mk_ghost)
MK_LAYER(l_badjson, "hx_badjson", mk_badjson)
MK_LAYER(l_deepjson, "hx_deepjson", mk_deepjson)
MK_LAYER(l_ignore, "hx_ignore", mk_ignore)
MK_LAYER(l_bigjson, "hx_bigjson", mk_bigjson)
MK_LAYER(l_fail, "hx_fail", mk_fail)
static const nnm_layer_vtable l_late = {.struct_size = sizeof(nnm_layer_vtable), .name = "hx_late", .version_major = 1,
                                        .n_inputs = 1, .n_outputs = 1, .create = hx_plain_create,
                                        .forward = mk_late_forward};
static const nnm_layer_vtable *const mk_layers[] = {&l_self, &l_ping, &l_pong, &l_dup, &l_ctrl,
                                                    &l_ghost, &l_badjson, &l_deepjson, &l_ignore, &l_bigjson,
                                                    &l_fail, &l_late};
static const nnm_plugin_desc mk_desc = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
    .name = "hx_makers",
    .n_layers = sizeof mk_layers / sizeof mk_layers[0],
    .layers = mk_layers,
};

static int printable(const char *s) {
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f) return 0;
    return 1;
}

static void test_child_new_misuse(void) {
    nnm_ctx_options o = {sizeof o, NNM_CTX_NO_DISCOVERY, 0};
    nnm_ctx *ctx = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_ctx_new(&o, &ctx), NNM_OK);
    CU_ASSERT_EQUAL_FATAL(load_all(ctx), 0);
    CHECK_STATUS(nnm_plugin_register_static(ctx, &mk_desc, "test_hostile_backend"), NNM_OK);
    nnm_ctx *saved = g_ctx;
    g_ctx = ctx;
    LEAK_CHECK_BEGIN();
    for (size_t i = 0; i + 1 < sizeof g_deep_json; i++) g_deep_json[i] = i < 30000 ? '[' : i < 60000 ? ']' : 0;
    memcpy(g_deep_json, "{\"x\": ", 6);
    memset(g_big_json, ' ', sizeof g_big_json - 1);
    memcpy(g_big_json, "{}", 2);
    static const struct { const char *layer; nnm_status want; const char *needle; } cases[] = {
        {"hx_self", NNM_E_LIMIT, "nested"},
        {"hx_ping", NNM_E_LIMIT, "nested"},
        {"hx_dup", NNM_E_EXISTS, "'a'"},
        {"hx_ctrl", NNM_E_INVALID, "child 'a?[2Jb' (identity)"},
        {"hx_ghost", NNM_E_NOT_FOUND, "child_new: 'ghost' is not a module this layer made"},
        {"hx_badjson", NNM_E_INVALID, "child_new: a.config"},
        {"hx_deepjson", NNM_E_INVALID, "hx_deepjson: child_new: a.config"},
        {"hx_fail", NNM_E_EXISTS, "hx_fail: child 'b' (hx_dup): "},
        {"hx_bigjson", NNM_E_LIMIT, "hx_bigjson: child_new: a.config: the JSON text is 200000 bytes, more than 65536"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        nnm_module *m = NULL;
        nnm_status st = nnm_module_create(ctx, cases[k].layer, NULL, &m);
        const char *msg = nnm_ctx_errmsg(ctx);
        if (st != cases[k].want || !strstr(msg, cases[k].needle))
            fprintf(stderr, "\n  %s: %s (want %s, \"%s\"): %.300s\n", cases[k].layer, nnm_status_name(st),
                    nnm_status_name(cases[k].want), cases[k].needle, msg);
        CU_ASSERT_EQUAL(st, cases[k].want);
        CU_ASSERT_PTR_NOT_NULL(strstr(msg, cases[k].needle));
        CU_ASSERT_TRUE(printable(msg));
        CU_ASSERT_PTR_NULL(m);
        nnm_module_release(m);
    }
    /* a create that swallows its children's failures: what it made is all
     * there is, and nothing of the failed ones is left behind */
    nnm_module *m = NULL;
    CHECK_STATUS(nnm_module_create(ctx, "hx_ignore", NULL, &m), NNM_OK);
    if (m) {
        CU_ASSERT_EQUAL(nnm_module_child_count(m), 1);
        CU_ASSERT_PTR_NOT_NULL(nnm_module_get(m, "c"));
        CU_ASSERT_PTR_NULL(nnm_module_get(m, "b"));
    }
    nnm_module_release(m);
    /* child_new and set_output_names from forward */
    m = NULL;
    CHECK_STATUS(nnm_module_create(ctx, "hx_late", NULL, &m), NNM_OK);
    nnm_tensor *x = NULL, *y = NULL;
    CU_ASSERT_EQUAL(nnm_tensor_from_f32(ctx, 1, (const int64_t[]){2}, NULL, &x), NNM_OK);
    CHECK_ERROR(nnm_module_call(m, &x, 1, &y, 1), NNM_E_STATE, "output names are set only in create");
    CU_ASSERT_PTR_NULL(y);
    CU_ASSERT_EQUAL(nnm_module_child_count(m), 0);
    nnm_tensor_release(x);
    nnm_module_release(m);
    LEAK_CHECK_END();
    g_ctx = saved;
    nnm_ctx_free(ctx);
}

/* ---- a backend with only its required slots --------------------------------- */

static nnm_backend_vtable g_bare;
static const nnm_backend_vtable *const bare_backends[] = {&g_bare};
static const nnm_plugin_desc bare_desc = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
    .name = "bare",
    .n_backends = 1,
    .backends = bare_backends,
};

/* Every layer on a backend that has init, alloc, free and memcpy and claims
 * the 1.3 and 1.5 op sets: each op runs (shape-only ops need no kernel) or
 * fails with NNM_E_UNSUPPORTED naming the backend; no NULL slot is called. */
static void test_bare_backend(void) {
    nnm_ctx_options o = {sizeof o, NNM_CTX_NO_DISCOVERY, 0};
    nnm_ctx *ctx = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_ctx_new(&o, &ctx), NNM_OK);
    CU_ASSERT_EQUAL_FATAL(load_all(ctx), 0);
    memset(&g_bare, 0, sizeof g_bare);
    g_bare.struct_size = sizeof g_bare;
    g_bare.flags = NNM_BACKEND_OPS_1_3 | NNM_BACKEND_OPS_1_5;
    g_bare.name = "bare";
    g_bare.version_major = 1;
    g_bare.device_type = NNM_DEVICE_CUDA;
    g_bare.init = shared_init;
    g_bare.shutdown = nc_shutdown;
    g_bare.alloc = nc_alloc;
    g_bare.free = nc_free;
    g_bare.memcpy = nc_memcpy;
    CHECK_STATUS(nnm_plugin_register_static(ctx, &bare_desc, "test_hostile_backend"), NNM_OK);
    CHECK_STATUS(nnm_ctx_set_num_threads(ctx, 2), NNM_OK);
    nnm_ctx *saved = g_ctx;
    g_ctx = ctx;
    static const struct {
        const char *layer;
        const char *cfg; /* "k=v,k=v" ints */
        int n_in;        /* 1: x; 2: x, i64 index/target; 3: x, x */
        int xdims;       /* 2: [4, 6]; 3: [3, 2, 4]; 4: [1, 1, 4, 6] */
    } L[] = {
        {"linear", "in_features=6,out_features=2", 1, 2}, {"relu", "", 1, 2}, {"gelu", "", 1, 2},
        {"softmax", "dim=1", 1, 2}, {"log_softmax", "dim=1", 1, 2}, {"layer_norm", "normalized_shape=6", 1, 2},
        {"batch_norm1d", "num_features=6", 1, 2}, {"dropout", "", 1, 2}, {"flatten", "", 1, 2},
        {"view", "shape=24", 1, 2}, {"transpose", "dim0=0,dim1=1", 1, 2}, {"flip", "dims=0", 1, 2},
        {"triu", "", 1, 2}, {"sum", "dim=1", 1, 2}, {"mean", "", 1, 2}, {"argmax", "dim=1", 1, 2},
        {"long", "", 1, 2}, {"bool", "", 1, 2}, {"cross_entropy", "", 2, 2}, {"index_select", "dim=1", 2, 2},
        {"add", "", 3, 2}, {"mul", "", 3, 2}, {"mse_loss", "", 3, 2}, {"matmul", "", 0, 2},
        {"conv2d", "in_channels=1,out_channels=2,kernel_size=3", 1, 4}, {"max_pool2d", "kernel_size=2", 1, 4},
        {"avg_pool2d", "kernel_size=2", 1, 4}, {"adaptive_avg_pool2d", "output_size=1", 1, 4},
        {"upsample", "scale_factor=2", 1, 4}, {"gru", "input_size=4,hidden_size=3", 1, 3},
        {"lstm", "input_size=4,hidden_size=3", 1, 3}, {"embedding_bag", "num_embeddings=6,embedding_dim=4", 4, 0},
        {"ctc_loss", "", 5, 0}, {"max_unpool2d", "kernel_size=2", 6, 0},
    };
    static const float x24[24] = {0};
    const nnm_device bare = g_noctc;
    for (size_t k = 0; k < sizeof L / sizeof L[0]; k++) {
        nnm_config *c = cfg_new();
        char kv[128];
        snprintf(kv, sizeof kv, "%s", L[k].cfg);
        for (char *tok = strtok(kv, ","); tok; tok = strtok(NULL, ",")) {
            char *eq = strchr(tok, '=');
            *eq = 0;
            if (!strcmp(tok, "scale_factor")) nnm_config_set_float(c, tok, atof(eq + 1));
            else if (!strcmp(tok, "shape")) nnm_config_set_ints(c, tok, (const int64_t[]){atoll(eq + 1)}, 1);
            else nnm_config_set_int(c, tok, atoll(eq + 1));
        }
        nnm_module *m = NULL;
        nnm_status st = nnm_module_create(ctx, L[k].layer, c, &m);
        nnm_config_free(c);
        if (st != NNM_OK) {
            fprintf(stderr, "\n  create %s: %s\n", L[k].layer, nnm_ctx_errmsg(ctx));
            CU_FAIL("create");
            continue;
        }
        st = nnm_module_to(m, bare);
        nnm_tensor *in[4] = {0}, *out[2] = {0};
        uint32_t n_in = 1;
        const int xd = L[k].xdims;
        if (st == NNM_OK) {
            if (xd == 2) in[0] = on_dev(bare, F32, 2, (const int64_t[]){4, 6}, x24);
            if (xd == 3) in[0] = on_dev(bare, F32, 3, (const int64_t[]){3, 2, 4}, x24);
            if (xd == 4) in[0] = on_dev(bare, F32, 4, (const int64_t[]){1, 1, 4, 6}, x24);
            switch (L[k].n_in) {
            case 0: in[1] = on_dev(bare, F32, 2, (const int64_t[]){6, 4}, x24); n_in = 2; break;
            case 2: in[1] = on_dev(bare, I64, 1, (const int64_t[]){4}, (const int64_t[]){0, 1, 2, 3}); n_in = 2; break;
            case 3: in[1] = on_dev(bare, F32, 2, (const int64_t[]){4, 6}, x24); n_in = 2; break;
            case 4:
                in[0] = on_dev(bare, I64, 1, (const int64_t[]){3}, (const int64_t[]){0, 5, 2});
                in[1] = on_dev(bare, I64, 1, (const int64_t[]){2}, (const int64_t[]){0, 1});
                n_in = 2;
                break;
            case 5:
                in[0] = on_dev(bare, F32, 3, (const int64_t[]){3, 2, 4}, x24);
                in[1] = on_dev(bare, I64, 2, (const int64_t[]){2, 2}, (const int64_t[]){1, 2, 3, 3});
                in[2] = on_dev(bare, I64, 1, (const int64_t[]){2}, (const int64_t[]){3, 3});
                in[3] = on_dev(bare, I64, 1, (const int64_t[]){2}, (const int64_t[]){2, 2});
                n_in = 4;
                break;
            case 6:
                in[0] = on_dev(bare, F32, 4, (const int64_t[]){1, 1, 2, 2}, x24);
                in[1] = on_dev(bare, I64, 4, (const int64_t[]){1, 1, 2, 2}, (const int64_t[]){0, 3, 9, 15});
                n_in = 2;
                break;
            default: break;
            }
            st = nnm_module_call(m, in, n_in, out, 1);
        }
        const char *msg = nnm_ctx_errmsg(ctx);
        const int fine = st == NNM_OK || (st == NNM_E_UNSUPPORTED && strstr(msg, "bare") != NULL);
        if (!fine) fprintf(stderr, "\n  %s on bare: %s: %s\n", L[k].layer, nnm_status_name(st), msg);
        CU_ASSERT_TRUE(fine);
        if (st != NNM_OK) CU_ASSERT_PTR_NULL(out[0]);
        nnm_tensor_release(out[0]);
        for (int i = 0; i < 4; i++) nnm_tensor_release(in[i]);
        nnm_module_release(m);
    }
    g_ctx = saved;
    nnm_ctx_free(ctx);
}

/* ---- descriptors and vtables with wrong sizes or versions ------------------ */

static nnm_backend_vtable g_tiny_be, g_be_noinit;
static nnm_layer_vtable g_tiny_layer, g_layer_nofwd;
static const nnm_backend_vtable *g_be_list[1];
static const nnm_layer_vtable *g_layer_list[1];

static void test_descriptor_sizes(void) {
    nnm_ctx_options o = {sizeof o, NNM_CTX_NO_DISCOVERY, 0};
    nnm_ctx *ctx = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_ctx_new(&o, &ctx), NNM_OK);
    nnm_ctx *saved = g_ctx;
    g_ctx = ctx;
    g_tiny_be = noctc_be;
    g_tiny_be.name = "tinybe";
    g_tiny_be.struct_size = 8; /* not even its name */
    g_be_noinit = noctc_be;
    g_be_noinit.name = "noinit";
    g_be_noinit.init = NULL;
    g_be_noinit.alloc = NULL;
    g_tiny_layer = l_dup;
    g_tiny_layer.name = "hx_tiny";
    g_tiny_layer.struct_size = 12;
    g_layer_nofwd = l_dup;
    g_layer_nofwd.name = "hx_nofwd";
    g_layer_nofwd.forward = NULL;
    static const struct {
        nnm_plugin_desc d;
        const nnm_backend_vtable *be;
        const nnm_layer_vtable *layer;
        nnm_status want;
        const char *needle;
    } cases[] = {
        {{.struct_size = 4, .abi_major = NNM_ABI_MAJOR, .abi_minor = NNM_ABI_MINOR, .name = "small"}, NULL, NULL,
         NNM_E_PLUGIN, "struct_size"},
        {{.struct_size = sizeof(nnm_plugin_desc), .abi_major = NNM_ABI_MAJOR + 1, .abi_minor = 0, .name = "major"}, NULL,
         NULL, NNM_E_VERSION, "ABI"},
        {{.struct_size = sizeof(nnm_plugin_desc), .abi_major = NNM_ABI_MAJOR, .abi_minor = NNM_ABI_MINOR, .name = "nullbe",
          .n_backends = 1},
         NULL, NULL, NNM_E_PLUGIN, "backend"},
        {{.struct_size = sizeof(nnm_plugin_desc), .abi_major = NNM_ABI_MAJOR, .abi_minor = NNM_ABI_MINOR, .name = "tiny",
          .n_backends = 1},
         &g_tiny_be, NULL, NNM_E_PLUGIN, "struct_size"},
        {{.struct_size = sizeof(nnm_plugin_desc), .abi_major = NNM_ABI_MAJOR, .abi_minor = NNM_ABI_MINOR, .name = "noinit",
          .n_backends = 1},
         &g_be_noinit, NULL, NNM_E_PLUGIN, "noinit"},
        {{.struct_size = sizeof(nnm_plugin_desc), .abi_major = NNM_ABI_MAJOR, .abi_minor = NNM_ABI_MINOR, .name = "tinyl",
          .n_layers = 1},
         NULL, &g_tiny_layer, NNM_E_PLUGIN, "struct_size"},
        {{.struct_size = sizeof(nnm_plugin_desc), .abi_major = NNM_ABI_MAJOR, .abi_minor = NNM_ABI_MINOR, .name = "nofwd",
          .n_layers = 1},
         NULL, &g_layer_nofwd, NNM_E_PLUGIN, "forward"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        nnm_plugin_desc d = cases[k].d;
        g_be_list[0] = cases[k].be;
        g_layer_list[0] = cases[k].layer;
        if (d.n_backends) d.backends = g_be_list;
        if (d.n_layers) d.layers = g_layer_list;
        nnm_status st = nnm_plugin_register_static(ctx, &d, "test_hostile_backend");
        const char *msg = nnm_ctx_errmsg(ctx);
        if (st != cases[k].want || !strstr(msg, cases[k].needle))
            fprintf(stderr, "\n  desc %s: %s (want %s \"%s\"): %s\n", d.name, nnm_status_name(st),
                    nnm_status_name(cases[k].want), cases[k].needle, msg);
        CU_ASSERT_EQUAL(st, cases[k].want);
        CU_ASSERT_PTR_NOT_NULL(strstr(msg, cases[k].needle));
    }
    /* a newer minor loads (gated per slot, not refused) */
    nnm_plugin_desc newer = {.struct_size = sizeof(nnm_plugin_desc), .abi_major = NNM_ABI_MAJOR,
                             .abi_minor = NNM_ABI_MINOR + 7, .name = "newer", .n_layers = 1};
    g_layer_list[0] = &l_dup;
    newer.layers = g_layer_list;
    CHECK_STATUS(nnm_plugin_register_static(ctx, &newer, "test_hostile_backend"), NNM_OK);
    /* nothing of the refused ones is findable */
    const nnm_layer_vtable *vt = NULL;
    CU_ASSERT_EQUAL(nnm_layer_find(ctx, "hx_tiny", &vt), NNM_E_NOT_FOUND);
    CU_ASSERT_EQUAL(nnm_layer_find(ctx, "hx_nofwd", &vt), NNM_E_NOT_FOUND);
    g_ctx = saved;
    nnm_ctx_free(ctx);
}

int main(void) {
    CU_pSuite s = tu_suite("hostile_backend", suite_init, suite_clean);
    if (s == NULL) return 1;
    CU_add_test(s, "1.5 backend without index_select/cast/arg_reduce slots", test_index_and_casts);
    CU_add_test(s, "1.5 backend without slots: the new layers", test_new_layers);
    CU_add_test(s, "1.5 backend without set_num_threads", test_threads);
    CU_add_test(s, "empty batches, bags and sequences on both devices", test_empty);
    CU_add_test(s, "a vtable shorter than the ABI it claims", test_short_vtable);
    CU_add_test(s, "slots failing with foreign statuses and no message", test_liar_statuses);
    CU_add_test(s, "layers that misuse child_new", test_child_new_misuse);
    CU_add_test(s, "descriptors and vtables with wrong sizes or versions", test_descriptor_sizes);
    CU_add_test(s, "a backend with only its required slots", test_bare_backend);
    return tu_run();
}
