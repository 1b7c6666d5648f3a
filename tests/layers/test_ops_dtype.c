/* tests/layers/test_ops_dtype.c - the ABI 1.5 dtype host ops (op_cast,
 * op_detach, op_arg_reduce), the 1.5 unary codes (sin..trunc) and binary pow,
 * through the functional ops that expose them (tensor_ops to/float/long/
 * int/bool/type_as/detach, math_ops argmax/argmin/max/min/floor/round/...):
 * conversion rules at their edges (NaN, out of range, wrap, -0), argmax's
 * first-extreme and NaN rules, round half to even, the round family's zero
 * gradient, detach cutting the graph, dtype errors named by op; and an old
 * backend (the cpu kernels under another name, flags without
 * NNM_BACKEND_OPS_1_5 and a vtable that stops before the cast slot) refused
 * with NNM_E_UNSUPPORTED naming op and backend. PyTorch's values are in the
 * conformance suite (ops_dtype). */
#include "test_util.h"

#include <dlfcn.h>
#include <math.h>
#include <stdint.h>

static nnm_ctx *g_ctx;  /* cpu backend */
static nnm_ctx *g_octx; /* "oldcpu": the cpu kernels as a pre-1.5 backend */
#define TU_CTX g_ctx

static void *g_cpu_dl;
static nnm_backend_vtable g_vt;
static const nnm_backend_vtable *const g_backends[] = {&g_vt};
static const nnm_plugin_desc g_desc = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = 4,
    .name = "oldcpu",
    .n_backends = 1,
    .backends = g_backends,
};

static const nnm_dtype I64 = {NNM_DTYPE_INT, 64, 1}, I32 = {NNM_DTYPE_INT, 32, 1}, U8 = {NNM_DTYPE_UINT, 8, 1},
                       BOOL8 = {NNM_DTYPE_BOOL, 8, 1};

/* A module of `type` with one optional string and int config. */
static nnm_module *made(nnm_ctx *ctx, const char *type, const char *skey, const char *sval, const char *ikey,
                        int64_t ival) {
    nnm_config *cfg = NULL;
    nnm_config_new(&cfg);
    if (skey) nnm_config_set_str(cfg, skey, sval);
    if (ikey) nnm_config_set_int(cfg, ikey, ival);
    nnm_module *m = tu_module(ctx, type, cfg);
    nnm_config_free(cfg);
    return m;
}

static int is_dtype(nnm_tensor *t, nnm_dtype dt) {
    const nnm_tensor_desc *d = nnm_tensor_desc_get(t);
    return d && d->dtype.code == dt.code && d->dtype.bits == dt.bits && d->dtype.lanes == dt.lanes;
}

/* x (f32 [n]) through `type`: the result's bytes in out (elem bytes each). */
static void cast_f32(const char *type, const char *dtype, const float *x, int64_t n, nnm_dtype want, void *out,
                     size_t elem) {
    nnm_module *m = made(g_ctx, type, dtype ? "dtype" : NULL, dtype, NULL, 0);
    nnm_tensor *t = tu_tf32(g_ctx, 1, &n, x), *y = NULL;
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CHECK_STATUS(tu_call1(m, t, &y), NNM_OK);
    CU_ASSERT_TRUE(is_dtype(y, want));
    CU_ASSERT_TRUE(tu_shape_is(y, 1, &n));
    if (y && tu_cpu_data(y)) memcpy(out, tu_cpu_data(y), (size_t)n * elem);
    nnm_tensor_release(y);
    nnm_tensor_release(t);
    nnm_module_release(m);
}

static void test_cast_rules(void) {
    LEAK_CHECK_BEGIN();
    const float x[7] = {-2.7f, 2.7f, NAN, 1e20f, -0.5f, 300.0f, -1.0f};
    int64_t l[7];
    cast_f32("to", "torch.int64", x, 7, I64, l, 8);
    const int64_t lw[7] = {-2, 2, INT64_MIN, INT64_MIN, 0, 300, -1};
    CU_ASSERT(memcmp(l, lw, sizeof lw) == 0);
    int64_t l2[7];
    cast_f32("long", NULL, x, 7, I64, l2, 8);
    CU_ASSERT(memcmp(l2, lw, sizeof lw) == 0);
    int32_t i[7];
    cast_f32("int", NULL, x, 7, I32, i, 4);
    const int32_t iw[7] = {-2, 2, INT32_MIN, INT32_MIN, 0, 300, -1};
    CU_ASSERT(memcmp(i, iw, sizeof iw) == 0);
    uint8_t u[7];
    cast_f32("to", "uint8", x, 7, U8, u, 1);
    CU_ASSERT_EQUAL(u[0], 254); /* -2 wraps */
    CU_ASSERT_EQUAL(u[5], 44);  /* 300 wraps, as torch */
    CU_ASSERT_EQUAL(u[6], 255);
    const float bx[5] = {0.0f, -0.0f, NAN, 2.0f, -1e-30f};
    uint8_t b[5];
    cast_f32("bool", NULL, bx, 5, BOOL8, b, 1);
    const uint8_t bw[5] = {0, 0, 1, 1, 1};
    CU_ASSERT(memcmp(b, bw, sizeof bw) == 0);
    /* f32 -> f32 is x itself (torch's .to returns self) */
    nnm_module *f = made(g_ctx, "float", NULL, NULL, NULL, 0);
    const int64_t n3 = 3;
    nnm_tensor *t = tu_tf32(g_ctx, 1, &n3, x), *y = NULL;
    CHECK_STATUS(tu_call1(f, t, &y), NNM_OK);
    CU_ASSERT_PTR_EQUAL(y, t);
    nnm_tensor_release(y);
    nnm_tensor_release(t);
    /* i64 -> f32 -> back, bool -> f32 */
    const int64_t li[3] = {-5, 0, 1 << 20};
    nnm_tensor *ti = tu_ti64(g_ctx, 1, &n3, li), *yf = NULL, *yb = NULL, *yl = NULL;
    CHECK_STATUS(tu_call1(f, ti, &yf), NNM_OK);
    float *fv = tu_read_f32(yf, NULL);
    CU_ASSERT(fv && fv[0] == -5.0f && fv[1] == 0.0f && fv[2] == 1048576.0f);
    free(fv);
    nnm_module *bm = made(g_ctx, "bool", NULL, NULL, NULL, 0), *lm = made(g_ctx, "long", NULL, NULL, NULL, 0);
    CHECK_STATUS(tu_call1(bm, ti, &yb), NNM_OK);
    CHECK_STATUS(tu_call1(lm, yb, &yl), NNM_OK);
    const int64_t lbw[3] = {1, 0, 1};
    CU_ASSERT(yl && tu_cpu_data(yl) && memcmp(tu_cpu_data(yl), lbw, sizeof lbw) == 0);
    nnm_tensor_release(yf);
    nnm_tensor_release(yb);
    nnm_tensor_release(yl);
    nnm_tensor_release(ti);
    nnm_module_release(f);
    nnm_module_release(bm);
    nnm_module_release(lm);
    LEAK_CHECK_END();
}

static void test_cast_errors(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *m = NULL;
    nnm_config *cfg = NULL;
    nnm_config_new(&cfg);
    nnm_config_set_str(cfg, "dtype", "float16");
    CHECK_ERROR(nnm_module_create(g_ctx, "to", cfg, &m), NNM_E_DTYPE, "to: dtype \"float16\"");
    nnm_config_free(cfg);
    /* an f64 input is named with both dtypes */
    const int64_t n = 2;
    nnm_tensor *d = NULL, *y = NULL;
    CHECK_STATUS(nnm_tensor_new(g_ctx, (nnm_device){NNM_DEVICE_CPU, 0}, (nnm_dtype){NNM_DTYPE_FLOAT, 64, 1}, 1, &n, &d),
                 NNM_OK);
    nnm_module *l = made(g_ctx, "long", NULL, NULL, NULL, 0);
    CHECK_ERROR(tu_call1(l, d, &y), NNM_E_DTYPE, "cast: from f64 to i64");
    /* argmax of an integer tensor, masked_fill with an f64 mask */
    const int64_t li[2] = {1, 2};
    nnm_tensor *ti = tu_ti64(g_ctx, 1, &n, li);
    nnm_module *am = made(g_ctx, "argmax", NULL, NULL, "dim", 0);
    CHECK_ERROR(tu_call1(am, ti, &y), NNM_E_DTYPE, "argmax: x must be f32, got i64");
    const float xv[2] = {1, 2};
    nnm_tensor *x = tu_tf32(g_ctx, 1, &n, xv);
    nnm_config_new(&cfg);
    nnm_config_set_float(cfg, "value", 0.0);
    nnm_module *mf = tu_module(g_ctx, "masked_fill", cfg);
    nnm_config_free(cfg);
    CHECK_ERROR(tu_call2(mf, x, d, &y), NNM_E_DTYPE, "masked_fill: mask (input 1) must be bool or f32");
    /* argmax over an empty dim, a dim out of range */
    const int64_t e2[2] = {2, 0};
    nnm_tensor *ex = NULL;
    CHECK_STATUS(nnm_tensor_new(g_ctx, (nnm_device){NNM_DEVICE_CPU, 0}, NNM_F32, 2, e2, &ex), NNM_OK);
    nnm_module *am1 = made(g_ctx, "argmax", NULL, NULL, "dim", 1), *am5 = made(g_ctx, "argmin", NULL, NULL, "dim", 5);
    CHECK_ERROR(tu_call1(am1, ex, &y), NNM_E_SHAPE, "argmax: Expected reduction dim 1 to have non-zero size");
    CHECK_ERROR(tu_call1(am5, x, &y), NNM_E_SHAPE, "argmin: Dimension out of range");
    /* max without dim asked for indices */
    nnm_module *mx = made(g_ctx, "max", NULL, NULL, NULL, 0);
    nnm_tensor *in[1] = {x}, *out2[2] = {NULL, NULL};
    CHECK_ERROR(nnm_module_call(mx, in, 1, out2, 2), NNM_E_SHAPE, "indices (a second output) need dim");
    nnm_tensor_release(d);
    nnm_tensor_release(ti);
    nnm_tensor_release(x);
    nnm_tensor_release(ex);
    nnm_module_release(l);
    nnm_module_release(am);
    nnm_module_release(mf);
    nnm_module_release(am1);
    nnm_module_release(am5);
    nnm_module_release(mx);
    LEAK_CHECK_END();
}

static void test_argmax_rules(void) {
    LEAK_CHECK_BEGIN();
    /* rows: a NaN after the max wins (the first NaN); ties take the first */
    const float xv[8] = {1.0f, NAN, 3.0f, NAN, 2.0f, 5.0f, 5.0f, -1.0f};
    const int64_t s[2] = {2, 4};
    nnm_tensor *x = tu_tf32(g_ctx, 2, s, xv), *y = NULL;
    nnm_module *am = made(g_ctx, "argmax", NULL, NULL, "dim", -1), *an = made(g_ctx, "argmin", NULL, NULL, "dim", 1);
    CHECK_STATUS(tu_call1(am, x, &y), NNM_OK);
    const int64_t two = 2, wmax[2] = {1, 1}, wmin[2] = {1, 3};
    CU_ASSERT_TRUE(tu_shape_is(y, 1, &two));
    CU_ASSERT(y && is_dtype(y, I64) && memcmp(tu_cpu_data(y), wmax, sizeof wmax) == 0);
    nnm_tensor_release(y);
    CHECK_STATUS(tu_call1(an, x, &y), NNM_OK);
    CU_ASSERT(y && memcmp(tu_cpu_data(y), wmin, sizeof wmin) == 0);
    nnm_tensor_release(y);
    /* max(dim=0, keepdim) -> (values [1, 4], indices [1, 4] i64) */
    nnm_config *cfg = NULL;
    nnm_config_new(&cfg);
    nnm_config_set_int(cfg, "dim", 0);
    nnm_config_set_bool(cfg, "keepdim", 1);
    nnm_module *mx = tu_module(g_ctx, "max", cfg);
    nnm_config_free(cfg);
    const float v2[8] = {1, 7, 3, 4, 2, 0, 3, 9};
    nnm_tensor *x2 = tu_tf32(g_ctx, 2, s, v2), *in[1] = {x2}, *out[2] = {NULL, NULL};
    CHECK_STATUS(nnm_module_call(mx, in, 1, out, 2), NNM_OK);
    const int64_t ks[2] = {1, 4}, wi[4] = {1, 0, 0, 1};
    CU_ASSERT_TRUE(tu_shape_is(out[0], 2, ks) && tu_shape_is(out[1], 2, ks));
    float *vv = tu_read_f32(out[0], NULL);
    CU_ASSERT(vv && vv[0] == 2 && vv[1] == 7 && vv[2] == 3 && vv[3] == 9);
    free(vv);
    CU_ASSERT(out[1] && is_dtype(out[1], I64) && memcmp(tu_cpu_data(out[1]), wi, sizeof wi) == 0);
    nnm_tensor_release(out[0]);
    nnm_tensor_release(out[1]);
    /* argmax over all dims: a 0-d index into the flattened tensor */
    nnm_module *af = made(g_ctx, "argmax", NULL, NULL, NULL, 0);
    CHECK_STATUS(tu_call1(af, x2, &y), NNM_OK);
    CU_ASSERT(y && nnm_tensor_desc_get(y)->ndim == 0 && *(int64_t *)tu_cpu_data(y) == 7);
    nnm_tensor_release(y);
    nnm_tensor_release(x);
    nnm_tensor_release(x2);
    nnm_module_release(am);
    nnm_module_release(an);
    nnm_module_release(mx);
    nnm_module_release(af);
    LEAK_CHECK_END();
}

/* round half to even; the round family's gradient is zeros (defined) */
static void test_round_family(void) {
    LEAK_CHECK_BEGIN();
    const float xv[6] = {0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.7f};
    const int64_t n = 6;
    nnm_tensor *x = tu_tf32(g_ctx, 1, &n, xv), *y = NULL, *s = NULL;
    CHECK_STATUS(nnm_tensor_set_requires_grad(x, 1), NNM_OK);
    static const char *const ops[4] = {"round", "floor", "ceil", "trunc"};
    static const float want[4][6] = {{0, 2, 2, -0.0f, -2, -3}, {0, 1, 2, -1, -2, -3}, {1, 2, 3, -0.0f, -1, -2},
                                     {0, 1, 2, -0.0f, -1, -2}};
    for (int k = 0; k < 4; k++) {
        nnm_module *m = made(g_ctx, ops[k], NULL, NULL, NULL, 0);
        CHECK_STATUS(tu_call1(m, x, &y), NNM_OK);
        float *v = tu_read_f32(y, NULL);
        for (int i = 0; v && i < 6; i++) CU_ASSERT_EQUAL(v[i], want[k][i]);
        free(v);
        CHECK_STATUS(nnm_op_reduce(g_ctx, NNM_REDUCE_SUM, y, NULL, 0, 0, &s), NNM_OK);
        CHECK_STATUS(nnm_backward(s, NULL, 0), NNM_OK);
        float *g = tu_read_f32(nnm_tensor_grad(x), NULL);
        CU_ASSERT_PTR_NOT_NULL(g);
        for (int i = 0; g && i < 6; i++) CU_ASSERT_EQUAL(g[i], 0.0f);
        free(g);
        nnm_tensor_release(s);
        nnm_tensor_release(y);
        nnm_module_release(m);
    }
    nnm_tensor_release(x);
    LEAK_CHECK_END();
}

/* detach shares the data and cuts the graph: d(detach(x) * x)/dx = x */
static void test_detach(void) {
    LEAK_CHECK_BEGIN();
    const float xv[3] = {1.0f, -2.0f, 3.0f};
    const int64_t n = 3;
    nnm_tensor *x = tu_tf32(g_ctx, 1, &n, xv), *d = NULL, *p = NULL, *s = NULL;
    CHECK_STATUS(nnm_tensor_set_requires_grad(x, 1), NNM_OK);
    nnm_module *m = made(g_ctx, "detach", NULL, NULL, NULL, 0);
    CHECK_STATUS(tu_call1(m, x, &d), NNM_OK);
    CU_ASSERT(d && tu_cpu_data(d) == tu_cpu_data(x));
    CHECK_STATUS(nnm_op_binary(g_ctx, NNM_BINARY_MUL, d, x, &p), NNM_OK);
    CHECK_STATUS(nnm_op_reduce(g_ctx, NNM_REDUCE_SUM, p, NULL, 0, 0, &s), NNM_OK);
    CHECK_STATUS(nnm_backward(s, NULL, 0), NNM_OK);
    float *g = tu_read_f32(nnm_tensor_grad(x), NULL);
    CU_ASSERT(g && g[0] == 1.0f && g[1] == -2.0f && g[2] == 3.0f);
    free(g);
    /* a detached tensor alone has no gradient to give */
    nnm_tensor *s2 = NULL;
    CHECK_STATUS(nnm_op_reduce(g_ctx, NNM_REDUCE_SUM, d, NULL, 0, 0, &s2), NNM_OK);
    CU_ASSERT_NOT_EQUAL(nnm_backward(s2, NULL, 0), NNM_OK);
    nnm_tensor_release(s2);
    nnm_tensor_release(s);
    nnm_tensor_release(p);
    nnm_tensor_release(d);
    nnm_tensor_release(x);
    nnm_module_release(m);
    LEAK_CHECK_END();
}

/* pow of tensors: negative bases with integral exponents, 0 ** 0 */
static void test_pow_tensors(void) {
    LEAK_CHECK_BEGIN();
    const float av[4] = {-2.0f, -3.0f, 0.0f, -2.0f}, bv[4] = {3.0f, 2.0f, 0.0f, 0.5f};
    const int64_t n = 4;
    nnm_tensor *a = tu_tf32(g_ctx, 1, &n, av), *b = tu_tf32(g_ctx, 1, &n, bv), *y = NULL;
    nnm_module *m = made(g_ctx, "pow", NULL, NULL, NULL, 0);
    CHECK_STATUS(tu_call2(m, a, b, &y), NNM_OK);
    float *v = tu_read_f32(y, NULL);
    CU_ASSERT(v && v[0] == -8.0f && v[1] == 9.0f && v[2] == 1.0f && isnan(v[3]));
    free(v);
    nnm_tensor_release(y);
    nnm_tensor_release(a);
    nnm_tensor_release(b);
    nnm_module_release(m);
    LEAK_CHECK_END();
}

/* an old backend is never sent what it does not know */
static void test_old_backend_refused(void) {
#undef TU_CTX
#define TU_CTX g_octx
    const float xv[2] = {0.5f, 1.5f};
    const int64_t n = 2;
    nnm_tensor *x = tu_tf32(g_octx, 1, &n, xv), *y = NULL;
    CHECK_ERROR(nnm_op_unary(g_octx, NNM_UNARY_SIN, x, 0, &y), NNM_E_UNSUPPORTED,
                "unary op sin: backend 'oldcpu' does not implement it (ABI 1.5)");
    CHECK_ERROR(nnm_op_unary(g_octx, NNM_UNARY_ROUND, x, 0, &y), NNM_E_UNSUPPORTED, "unary op round: backend 'oldcpu'");
    CHECK_ERROR(nnm_op_binary(g_octx, NNM_BINARY_POW, x, x, &y), NNM_E_UNSUPPORTED,
                "binary op pow: backend 'oldcpu' does not implement it (ABI 1.5)");
    /* the 1.3 codes still run there */
    CHECK_STATUS(nnm_op_unary(g_octx, NNM_UNARY_ERF, x, 0, &y), NNM_OK);
    nnm_tensor_release(y);
    y = NULL;
    nnm_module *l = made(g_octx, "long", NULL, NULL, NULL, 0), *am = made(g_octx, "argmax", NULL, NULL, "dim", 0);
    nnm_module *f = made(g_octx, "float", NULL, NULL, NULL, 0), *fl = made(g_octx, "floor", NULL, NULL, NULL, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(l);
    CHECK_ERROR(tu_call1(l, x, &y), NNM_E_UNSUPPORTED, "cast: backend 'oldcpu' has no cast slot (ABI 1.5): f32 to i64");
    CHECK_ERROR(tu_call1(am, x, &y), NNM_E_UNSUPPORTED, "argmax: backend 'oldcpu' has no arg_reduce slot");
    CHECK_ERROR(tu_call1(fl, x, &y), NNM_E_UNSUPPORTED, "unary op floor: backend 'oldcpu'");
    /* f32 -> f32 needs no slot */
    CHECK_STATUS(tu_call1(f, x, &y), NNM_OK);
    nnm_tensor_release(y);
    /* pow of two tensors on the old backend: the binary pow is refused too */
    nnm_module *pw = made(g_octx, "pow", NULL, NULL, NULL, 0);
    CHECK_ERROR(tu_call2(pw, x, x, &y), NNM_E_UNSUPPORTED, "binary op pow: backend 'oldcpu'");
    nnm_module_release(pw);
    nnm_module_release(l);
    nnm_module_release(am);
    nnm_module_release(f);
    nnm_module_release(fl);
    nnm_tensor_release(x);
#undef TU_CTX
#define TU_CTX g_ctx
}

static int suite_init(void) {
    if (tu_ctx_new(&g_ctx)) return 1;
    const nnm_plugin_desc *cpu = tu_plugin_open(NNM_TEST_CPU_PLUGIN, &g_cpu_dl);
    if (!cpu || cpu->n_backends < 1) return 1;
    const nnm_backend_vtable *v = cpu->backends[0];
    memcpy(&g_vt, v, v->struct_size < sizeof g_vt ? v->struct_size : sizeof g_vt);
    g_vt.struct_size = (uint32_t)offsetof(nnm_backend_vtable, cast); /* built before the 1.5 dtype slots */
    g_vt.flags = NNM_BACKEND_OPS_1_3;
    g_vt.name = "oldcpu";
    nnm_ctx_options o = {sizeof o, NNM_CTX_NO_DISCOVERY, 0};
    if (nnm_ctx_new(&o, &g_octx) != NNM_OK) return 1;
    if (nnm_plugin_register_static(g_octx, &g_desc, "test_ops_dtype") != NNM_OK ||
        nnm_plugin_load(g_octx, NNM_TEST_MATH_OPS) != NNM_OK || nnm_plugin_load(g_octx, NNM_TEST_TENSOR_OPS) != NNM_OK) {
        fprintf(stderr, "%s\n", nnm_ctx_errmsg(g_octx));
        return 1;
    }
    return 0;
}

static int suite_clean(void) {
    nnm_ctx_free(g_octx);
    tu_ctx_free(&g_ctx);
    if (g_cpu_dl) dlclose(g_cpu_dl);
    return 0;
}

int main(void) {
    CU_pSuite s = tu_suite("ops_dtype", suite_init, suite_clean);
    CU_add_test(s, "cast: truncation, NaN and out of range to the minimum, u8 wraps, bool, f32 -> f32 is x",
                test_cast_rules);
    CU_add_test(s, "cast/argmax/masked_fill: dtype errors named; argmax empty dim and dim range; max indices need dim",
                test_cast_errors);
    CU_add_test(s, "argmax/argmin: first extreme, NaN wins; max(dim, keepdim) values and i64 indices; flat argmax",
                test_argmax_rules);
    CU_add_test(s, "round half to even, floor, ceil, trunc; zero gradient", test_round_family);
    CU_add_test(s, "detach: shared data, no gradient through it", test_detach);
    CU_add_test(s, "pow of tensors: negative bases, integral exponents, 0 ** 0", test_pow_tensors);
    CU_add_test(s, "a backend without NNM_BACKEND_OPS_1_5 or the cast/arg_reduce slots: refused, naming op and backend",
                test_old_backend_refused);
    return tu_run();
}
