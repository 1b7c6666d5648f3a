/* tests/autograd/test_backward_hooks.c - layers with their own backward (one
 * node, saved tensors, parameter gradients through the host) and full module
 * backward hooks: order, replacing gradients, removal. */
#include "ag_test.h"

#include <string.h>

/* ---- a layer with its own backward: y = w * x (w a [1] parameter) -------- */

typedef struct wscale {
    nnm_tensor *w;
} wscale;

static int g_custom_forwards, g_custom_backwards, g_recorded_inside;
/* 1: backward hands accumulate_grad the full reduction as it comes, 0-d,
 * for the [1] parameter (what a plugin author writes first) */
static int g_grad_0d;

static nnm_status ws_create(nnm_env *env, void **self) {
    const nnm_host *h = env->host;
    wscale *s = calloc(1, sizeof *s);
    if (!s) return h->set_error(env, NNM_E_NOMEM, "out of memory");
    int64_t shape[1] = {1};
    nnm_status st = h->param_new(env, "w", 1, shape, NNM_INIT_CONSTANT, 3.0, 0, &s->w);
    if (st) {
        free(s);
        return st;
    }
    *self = s;
    return NNM_OK;
}

static void ws_destroy(void *self) { free(self); }

static nnm_status ws_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in,
                             nnm_tensor **out, uint32_t n_out) {
    (void)n_in, (void)n_out;
    const nnm_host *h = env->host;
    wscale *s = self;
    g_custom_forwards++;
    nnm_tensor *keep[2] = {in[0], s->w};
    nnm_status st = h->save_for_backward(env, keep, 2);
    if (st) return st;
    st = h->op_binary(env, NNM_BINARY_MUL, in[0], s->w, &out[0]);
    /* forward runs with recording off: the host ops made no node */
    if (!st && nnm_tensor_requires_grad(out[0])) g_recorded_inside++;
    return st;
}

/* dx = g * w; dw = sum(g * x) */
static nnm_status ws_backward(nnm_env *env, void *self, nnm_tensor *const *gout, uint32_t n_out,
                              nnm_tensor **gin, uint32_t n_in) {
    (void)n_out, (void)n_in;
    const nnm_host *h = env->host;
    wscale *s = self;
    g_custom_backwards++;
    nnm_tensor *const *saved;
    uint32_t n_saved;
    nnm_status st = h->saved_tensors(env, &saved, &n_saved);
    if (st) return st;
    if (n_saved != 2) return h->set_error(env, NNM_E_STATE, "expected 2 saved tensors, got %u", n_saved);
    if ((st = h->op_binary(env, NNM_BINARY_MUL, gout[0], saved[1], &gin[0]))) return st;
    nnm_tensor *gx = NULL, *gw = NULL;
    if (!(st = h->op_binary(env, NNM_BINARY_MUL, gout[0], saved[0], &gx)) &&
        !(st = h->op_reduce(env, NNM_REDUCE_SUM, gx, NULL, 0, !g_grad_0d, &gw))) {
        int64_t one[1] = {1};
        nnm_tensor *gw1 = NULL;
        if (g_grad_0d)
            st = h->accumulate_grad(env, s->w, gw);
        else if (!(st = h->op_reshape(env, gw, 1, one, &gw1)))
            st = h->accumulate_grad(env, s->w, gw1);
        h->tensor_release(gw1);
    }
    h->tensor_release(gx);
    h->tensor_release(gw);
    return st;
}

static const nnm_layer_vtable ws_vt = {
    .struct_size = sizeof(nnm_layer_vtable),
    .name = "wscale",
    .version_major = 1,
    .n_inputs = 1,
    .n_outputs = 1,
    .create = ws_create,
    .destroy = ws_destroy,
    .forward = ws_forward,
    .backward = ws_backward,
};
static const nnm_layer_vtable *const ws_layers[] = {&ws_vt};
static const nnm_plugin_desc ws_desc = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
    .name = "wscale",
    .n_layers = 1,
    .layers = ws_layers,
};

static int suite_init(void) {
    if (ag_suite_init()) return 1;
    return nnm_plugin_register_static(g_ctx, &ws_desc, "test_backward_hooks") ? 1 : 0;
}

static nnm_tensor *vec(const float *v, int64_t n, int requires_grad) {
    int64_t shape[1] = {n};
    nnm_tensor *t = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_tensor_from_f32(g_ctx, 1, shape, v, &t), NNM_OK);
    if (requires_grad) CU_ASSERT_EQUAL(nnm_tensor_set_requires_grad(t, 1), NNM_OK);
    return t;
}

static void values(nnm_tensor *t, float *out, size_t cap) {
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    CU_ASSERT_EQUAL_FATAL(nnm_tensor_to_f32(t, out, cap), NNM_OK);
}

static nnm_status grab_first(void *user, const char *name, nnm_tensor *t) {
    (void)name;
    *(nnm_tensor **)user = t;
    return NNM_E_EXISTS; /* stop at the first */
}

static void test_custom_backward_layer(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *m = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_module_create(g_ctx, "wscale", NULL, &m), NNM_OK);
    nnm_tensor *w = NULL;
    nnm_module_named_parameters(m, grab_first, &w);
    CU_ASSERT_PTR_NOT_NULL_FATAL(w);
    float xv[3] = {1, 2, -4};
    nnm_tensor *x = vec(xv, 3, 1), *y = NULL, *l = NULL;
    g_custom_forwards = g_custom_backwards = g_recorded_inside = 0;
    CU_ASSERT_EQUAL_FATAL(nnm_module_call(m, &x, 1, &y, 1), NNM_OK);
    CU_ASSERT_EQUAL(g_recorded_inside, 0);
    CU_ASSERT_TRUE(nnm_tensor_requires_grad(y));
    CU_ASSERT_FALSE(nnm_tensor_is_leaf(y));
    CU_ASSERT_EQUAL_FATAL(nnm_op_reduce(g_ctx, NNM_REDUCE_SUM, y, NULL, 0, 0, &l), NNM_OK);
    CU_ASSERT_EQUAL(nnm_backward(l, NULL, 0), NNM_OK);
    CU_ASSERT_EQUAL(g_custom_backwards, 1);
    float gx[3], gw[1];
    values(nnm_tensor_grad(x), gx, 3);
    values(nnm_tensor_grad(w), gw, 1);
    for (int i = 0; i < 3; i++) CU_ASSERT_DOUBLE_EQUAL(gx[i], 3.0, 1e-6); /* w */
    CU_ASSERT_DOUBLE_EQUAL(gw[0], 1 + 2 - 4, 1e-6);                       /* sum(x) */
    nnm_tensor_release(l);
    nnm_tensor_release(y);

    /* under no_grad no node is made and backward is not possible */
    int prev = nnm_grad_set_enabled(0);
    CU_ASSERT_EQUAL(nnm_module_call(m, &x, 1, &y, 1), NNM_OK);
    CU_ASSERT_FALSE(nnm_tensor_requires_grad(y));
    nnm_grad_set_enabled(prev);
    CU_ASSERT_EQUAL(nnm_backward(y, NULL, 0), NNM_E_INVALID);
    nnm_tensor_release(y);
    nnm_tensor_release(x);
    nnm_module_release(m);
    LEAK_CHECK_END();
}

/* A gradient of the parameter's element count in another shape (a full
 * reduction is 0-d, the parameter [1]) is taken in the parameter's shape:
 * .grad always has its parameter's shape, as in PyTorch (it used to keep
 * the 0-d shape, and an optimizer or a state-dict reader then saw [] for a
 * [1] parameter). */
static void test_accumulate_grad_takes_the_parameters_shape(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *m = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_module_create(g_ctx, "wscale", NULL, &m), NNM_OK);
    nnm_tensor *w = NULL;
    nnm_module_named_parameters(m, grab_first, &w);
    CU_ASSERT_PTR_NOT_NULL_FATAL(w);
    float xv[3] = {1, 2, -4};
    nnm_tensor *x = vec(xv, 3, 1);
    g_grad_0d = 1;
    for (int round = 1; round <= 2; round++) { /* set, then accumulated */
        nnm_tensor *y = NULL, *l = NULL;
        CU_ASSERT_EQUAL_FATAL(nnm_module_call(m, &x, 1, &y, 1), NNM_OK);
        CU_ASSERT_EQUAL_FATAL(nnm_op_reduce(g_ctx, NNM_REDUCE_SUM, y, NULL, 0, 0, &l), NNM_OK);
        CU_ASSERT_EQUAL(nnm_backward(l, NULL, 0), NNM_OK);
        const nnm_tensor_desc *d = nnm_tensor_desc_get(nnm_tensor_grad(w));
        CU_ASSERT_PTR_NOT_NULL_FATAL(d);
        CU_ASSERT_EQUAL(d->ndim, 1);
        if (d->ndim == 1) CU_ASSERT_EQUAL(d->shape[0], 1);
        float gw[1];
        values(nnm_tensor_grad(w), gw, 1);
        CU_ASSERT_DOUBLE_EQUAL(gw[0], round * (1 + 2 - 4), 1e-6);
        nnm_tensor_release(l);
        nnm_tensor_release(y);
    }
    g_grad_0d = 0;
    nnm_tensor_release(x);
    nnm_module_release(m);
    LEAK_CHECK_END();
}

/* ---- full backward hooks -------------------------------------------------- */

static char g_order[64];
static int g_n_order;
static void mark(char c) {
    if (g_n_order < (int)sizeof g_order - 1) g_order[g_n_order++] = c, g_order[g_n_order] = 0;
}

static float g_seen_gout, g_seen_gin;

static nnm_status bw_pre(void *user, nnm_module *m, nnm_tensor **gout, uint32_t n_out) {
    (void)m, (void)n_out;
    mark(*(const char *)user);
    float v[8];
    if (gout[0] && nnm_tensor_to_f32(gout[0], v, 8) == NNM_OK) g_seen_gout = v[0];
    return NNM_OK;
}

static nnm_status bw_hook(void *user, nnm_module *m, nnm_tensor **gin, uint32_t n_in, nnm_tensor *const *gout,
                          uint32_t n_out) {
    (void)m, (void)n_in, (void)gout, (void)n_out;
    mark(*(const char *)user);
    float v[8];
    if (gin[0] && nnm_tensor_to_f32(gin[0], v, 8) == NNM_OK) g_seen_gin = v[0];
    return NNM_OK;
}

/* replaces the output gradient by 10x itself */
static nnm_status bw_pre_scale(void *user, nnm_module *m, nnm_tensor **gout, uint32_t n_out) {
    (void)user, (void)n_out;
    nnm_tensor *t = NULL;
    nnm_status st = nnm_op_unary(nnm_module_ctx(m), NNM_UNARY_SCALE, gout[0], 10.0, &t);
    if (st) return st;
    gout[0] = t; /* a new reference; the runtime drops the one replaced */
    return NNM_OK;
}

/* replaces the input gradient by zeros */
static nnm_status bw_zero_gin(void *user, nnm_module *m, nnm_tensor **gin, uint32_t n_in, nnm_tensor *const *gout,
                              uint32_t n_out) {
    (void)user, (void)n_in, (void)gout, (void)n_out;
    nnm_tensor *t = NULL;
    nnm_status st = nnm_op_unary(nnm_module_ctx(m), NNM_UNARY_SCALE, gin[0], 0.0, &t);
    if (st) return st;
    gin[0] = t;
    return NNM_OK;
}

static nnm_module *relu_module(void) {
    nnm_module *m = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_module_create(g_ctx, "relu", NULL, &m), NNM_OK);
    return m;
}

/* y = relu(x) * 2 summed: dL/dy_relu = 2, dL/dx = 2 on positive x */
static void run(nnm_module *m, nnm_tensor *x) {
    nnm_tensor *y = NULL, *s = NULL, *l = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_module_call(m, &x, 1, &y, 1), NNM_OK);
    CU_ASSERT_EQUAL_FATAL(nnm_op_unary(g_ctx, NNM_UNARY_SCALE, y, 2.0, &s), NNM_OK);
    CU_ASSERT_EQUAL_FATAL(nnm_op_reduce(g_ctx, NNM_REDUCE_SUM, s, NULL, 0, 0, &l), NNM_OK);
    CU_ASSERT_EQUAL(nnm_backward(l, NULL, 0), NNM_OK);
    nnm_tensor_release(l);
    nnm_tensor_release(s);
    nnm_tensor_release(y);
}

static void test_backward_hooks_order_and_values(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *m = relu_module();
    float xv[2] = {1.5f, 2.5f};
    nnm_tensor *x = vec(xv, 2, 1);
    nnm_hook_handle *h[4];
    CU_ASSERT_EQUAL(nnm_module_register_full_backward_hook(m, bw_hook, "H", &h[0]), NNM_OK);
    CU_ASSERT_EQUAL(nnm_module_register_full_backward_pre_hook(m, bw_pre, "p", &h[1]), NNM_OK);
    CU_ASSERT_EQUAL(nnm_module_register_full_backward_pre_hook(m, bw_pre, "q", &h[2]), NNM_OK);
    CU_ASSERT_EQUAL(nnm_module_register_full_backward_hook(m, bw_hook, "I", &h[3]), NNM_OK);
    g_n_order = 0, g_order[0] = 0;
    run(m, x);
    /* pre-hooks (with the outputs' grads) first, in order; then the hooks */
    CU_ASSERT_STRING_EQUAL(g_order, "pqHI");
    CU_ASSERT_DOUBLE_EQUAL(g_seen_gout, 2.0, 1e-6);
    CU_ASSERT_DOUBLE_EQUAL(g_seen_gin, 2.0, 1e-6);
    float gx[2];
    values(nnm_tensor_grad(x), gx, 2);
    CU_ASSERT_DOUBLE_EQUAL(gx[0], 2.0, 1e-6);

    /* removal: removed hooks do not fire */
    nnm_hook_remove(h[1]);
    nnm_hook_remove(h[3]);
    g_n_order = 0, g_order[0] = 0;
    run(m, x);
    CU_ASSERT_STRING_EQUAL(g_order, "qH");
    nnm_hook_remove(h[0]);
    nnm_hook_remove(h[2]);
    g_n_order = 0, g_order[0] = 0;
    run(m, x);
    CU_ASSERT_STRING_EQUAL(g_order, "");
    nnm_tensor_release(x);
    nnm_module_release(m);
    LEAK_CHECK_END();
}

static void test_backward_hooks_replace_gradients(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *m = relu_module();
    float xv[2] = {1.0f, 3.0f};
    nnm_tensor *x = vec(xv, 2, 1);
    nnm_hook_handle *a, *b;
    /* the pre-hook scales the outputs' grads by 10: x.grad = 20 */
    nnm_module_register_full_backward_pre_hook(m, bw_pre_scale, NULL, &a);
    run(m, x);
    float gx[2];
    values(nnm_tensor_grad(x), gx, 2);
    CU_ASSERT_DOUBLE_EQUAL(gx[0], 20.0, 1e-5);
    CU_ASSERT_DOUBLE_EQUAL(gx[1], 20.0, 1e-5);
    /* the full hook zeroes the inputs' grads: x.grad gets nothing more */
    nnm_module_register_full_backward_hook(m, bw_zero_gin, NULL, &b);
    run(m, x);
    values(nnm_tensor_grad(x), gx, 2);
    CU_ASSERT_DOUBLE_EQUAL(gx[0], 20.0, 1e-5);
    nnm_hook_remove(a);
    nnm_hook_remove(b);
    nnm_tensor_release(x);
    nnm_module_release(m);
    LEAK_CHECK_END();
}

/* replaces the gradient by one of shape [3] (the input is [2]) */
static nnm_status bw_pre_wrong_shape(void *user, nnm_module *m, nnm_tensor **gout, uint32_t n_out) {
    (void)user, (void)n_out;
    int64_t shape[1] = {3};
    float v[3] = {1, 1, 1};
    nnm_tensor *t = NULL;
    nnm_status st = nnm_tensor_from_f32(nnm_module_ctx(m), 1, shape, v, &t);
    if (st) return st;
    gout[0] = t;
    return NNM_OK;
}

static nnm_status bw_wrong_shape_gin(void *user, nnm_module *m, nnm_tensor **gin, uint32_t n_in,
                                     nnm_tensor *const *gout, uint32_t n_out) {
    (void)gout, (void)n_out, (void)n_in;
    return bw_pre_wrong_shape(user, m, gin, 1);
}

/* a [1, 2] gradient for a [2] input sums down to it, as validate_outputs does */
static nnm_status bw_broadcast_gin(void *user, nnm_module *m, nnm_tensor **gin, uint32_t n_in,
                                   nnm_tensor *const *gout, uint32_t n_out) {
    (void)user, (void)gout, (void)n_out, (void)n_in;
    int64_t shape[2] = {3, 2};
    float v[6] = {1, 2, 1, 2, 1, 2};
    nnm_tensor *t = NULL;
    nnm_status st = nnm_tensor_from_f32(nnm_module_ctx(m), 2, shape, v, &t);
    if (st) return st;
    gin[0] = t;
    return NNM_OK;
}

/* y = relu(x) * 2 summed; returns nnm_backward's status */
static nnm_status run_status(nnm_module *m, nnm_tensor *x) {
    nnm_tensor *y = NULL, *s = NULL, *l = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_module_call(m, &x, 1, &y, 1), NNM_OK);
    CU_ASSERT_EQUAL_FATAL(nnm_op_unary(g_ctx, NNM_UNARY_SCALE, y, 2.0, &s), NNM_OK);
    CU_ASSERT_EQUAL_FATAL(nnm_op_reduce(g_ctx, NNM_REDUCE_SUM, s, NULL, 0, 0, &l), NNM_OK);
    nnm_status st = nnm_backward(l, NULL, 0);
    nnm_tensor_release(l);
    nnm_tensor_release(s);
    nnm_tensor_release(y);
    return st;
}

static void test_backward_hooks_validate_replaced_gradients(void) {
    LEAK_CHECK_BEGIN();
    float xv[2] = {1.0f, 3.0f};
    nnm_tensor *x = vec(xv, 2, 1);
    /* a pre-hook that puts a [3] gradient for a [2] output fails the backward,
     * naming the module, as PyTorch's validate_outputs does */
    nnm_module *m = relu_module();
    nnm_hook_handle *a;
    nnm_module_register_full_backward_pre_hook(m, bw_pre_wrong_shape, NULL, &a);
    CU_ASSERT_EQUAL(run_status(m, x), NNM_E_SHAPE);
    const char *msg = nnm_ctx_errmsg(g_ctx);
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "invalid gradient at index 0"));
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "[3]"));
    nnm_hook_remove(a);
    nnm_module_release(m);
    /* the same from a full backward hook over the inputs' gradients */
    m = relu_module();
    nnm_module_register_full_backward_hook(m, bw_wrong_shape_gin, NULL, &a);
    CU_ASSERT_EQUAL(run_status(m, x), NNM_E_SHAPE);
    nnm_hook_remove(a);
    nnm_module_release(m);
    /* a broadcastable one is summed to the input's shape: x.grad = 3 * [1, 2] */
    nnm_tensor_release(x);
    x = vec(xv, 2, 1);
    m = relu_module();
    nnm_module_register_full_backward_hook(m, bw_broadcast_gin, NULL, &a);
    CU_ASSERT_EQUAL(run_status(m, x), NNM_OK);
    float gx[2];
    values(nnm_tensor_grad(x), gx, 2);
    CU_ASSERT_DOUBLE_EQUAL(gx[0], 3.0, 1e-6);
    CU_ASSERT_DOUBLE_EQUAL(gx[1], 6.0, 1e-6);
    nnm_hook_remove(a);
    nnm_module_release(m);
    nnm_tensor_release(x);
    LEAK_CHECK_END();
}

static void test_backward_hook_without_input_grad(void) {
    /* the input needs no grad: the hook still fires, with no input gradient */
    LEAK_CHECK_BEGIN();
    nnm_config *cfg;
    nnm_config_new(&cfg);
    nnm_config_set_int(cfg, "in_features", 2);
    nnm_config_set_int(cfg, "out_features", 2);
    nnm_module *m = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_module_create(g_ctx, "linear", cfg, &m), NNM_OK);
    nnm_config_free(cfg);
    float xv[2] = {1, 2};
    nnm_tensor *x = vec(xv, 2, 0);
    nnm_hook_handle *h;
    nnm_module_register_full_backward_hook(m, bw_hook, "H", &h);
    g_n_order = 0, g_order[0] = 0;
    g_seen_gin = -1;
    run(m, x);
    CU_ASSERT_STRING_EQUAL(g_order, "H");
    CU_ASSERT_DOUBLE_EQUAL(g_seen_gin, -1, 0); /* gin[0] was NULL */
    nnm_module_zero_grad(m);
    nnm_hook_remove(h);
    nnm_tensor_release(x);
    nnm_module_release(m);
    LEAK_CHECK_END();
}

/* One input needs a gradient, the other not: PyTorch's BackwardHookFunction
 * materializes the second's gradient, so the hook sees zeros of its shape
 * there (not None), and what a hook puts there goes nowhere (not even a
 * wrong shape is an error). */
static int g_mixed_ok;
static nnm_status bw_mixed(void *user, nnm_module *m, nnm_tensor **gin, uint32_t n_in,
                           nnm_tensor *const *gout, uint32_t n_out) {
    (void)user, (void)gout, (void)n_out;
    g_mixed_ok = n_in == 2 && gin[0] != NULL && gin[1] != NULL;
    if (!g_mixed_ok) return NNM_OK;
    const nnm_tensor_desc *d = nnm_tensor_desc_get(gin[1]);
    float v[3] = {1, 1, 1}, g0[3] = {0, 0, 0};
    g_mixed_ok = d->ndim == 1 && d->shape[0] == 3 && nnm_tensor_to_f32(gin[1], v, 3) == NNM_OK &&
                 v[0] == 0 && v[1] == 0 && v[2] == 0 && nnm_tensor_to_f32(gin[0], g0, 3) == NNM_OK &&
                 g0[0] == 2 && g0[1] == 2 && g0[2] == 2;
    const int64_t five = 5;
    nnm_tensor *junk = NULL;
    if (nnm_tensor_new(nnm_module_ctx(m), (nnm_device){NNM_DEVICE_CPU, 0}, NNM_F32, 1, &five, &junk))
        return NNM_E_NOMEM;
    gin[1] = junk; /* the runtime releases the zeros it replaced */
    return NNM_OK;
}

static void test_backward_hook_mixed_inputs(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *m = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_module_create(g_ctx, "add", NULL, &m), NNM_OK);
    float xv[3] = {1, 2, 3}, cv[3] = {4, 5, 6};
    nnm_tensor *in[2] = {vec(xv, 3, 1), vec(cv, 3, 0)};
    nnm_hook_handle *h = NULL;
    CU_ASSERT_EQUAL(nnm_module_register_full_backward_hook(m, bw_mixed, NULL, &h), NNM_OK);
    nnm_tensor *y = NULL, *sc = NULL, *l = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_module_call(m, in, 2, &y, 1), NNM_OK);
    CU_ASSERT_EQUAL_FATAL(nnm_op_unary(g_ctx, NNM_UNARY_SCALE, y, 2.0, &sc), NNM_OK);
    CU_ASSERT_EQUAL_FATAL(nnm_op_reduce(g_ctx, NNM_REDUCE_SUM, sc, NULL, 0, 0, &l), NNM_OK);
    g_mixed_ok = 0;
    CU_ASSERT_EQUAL(nnm_backward(l, NULL, 0), NNM_OK);
    CU_ASSERT_TRUE(g_mixed_ok);
    float gx[3];
    values(nnm_tensor_grad(in[0]), gx, 3);
    CU_ASSERT_TRUE(gx[0] == 2 && gx[1] == 2 && gx[2] == 2);
    CU_ASSERT_PTR_NULL(nnm_tensor_grad(in[1]));
    nnm_hook_remove(h);
    nnm_tensor_release(l);
    nnm_tensor_release(sc);
    nnm_tensor_release(y);
    nnm_tensor_release(in[0]);
    nnm_tensor_release(in[1]);
    nnm_module_release(m);
    LEAK_CHECK_END();
}

/* ---- backward hooks are captured when the forward runs ---------------------- */

/* What PyTorch 1.13 does (checked with torch's nn.Module: _call_impl takes the
 * lists of backward hooks before the forward pre-hooks and gives them to the
 * BackwardHook of that call; register_full_backward_pre_hook, 2.x, likewise):
 *   a hook removed between forward and backward still runs;
 *   a hook registered between forward and backward does not (with or without
 *   another hook present at forward);
 *   a global hook removed between forward and backward still runs;
 *   with retain_graph, a hook removed between two backwards runs both times,
 *   and so does a hook that removes itself. */

static nnm_hook_handle *g_self_handle;
static nnm_status bw_self_remove(void *user, nnm_module *m, nnm_tensor **gin, uint32_t n_in,
                                 nnm_tensor *const *gout, uint32_t n_out) {
    (void)user, (void)m, (void)gin, (void)n_in, (void)gout, (void)n_out;
    mark('S');
    nnm_hook_remove(g_self_handle);
    return NNM_OK;
}

static int g_freed;
static void count_free(void *user) {
    (void)user;
    g_freed++;
}

/* y = m(x); l = sum(2 y); the caller backwards l (retain_graph as asked). */
static void forward(nnm_module *m, nnm_tensor *x, nnm_tensor **l) {
    nnm_tensor *y = NULL, *s = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_module_call(m, &x, 1, &y, 1), NNM_OK);
    CU_ASSERT_EQUAL_FATAL(nnm_op_unary(g_ctx, NNM_UNARY_SCALE, y, 2.0, &s), NNM_OK);
    CU_ASSERT_EQUAL_FATAL(nnm_op_reduce(g_ctx, NNM_REDUCE_SUM, s, NULL, 0, 0, l), NNM_OK);
    nnm_tensor_release(s);
    nnm_tensor_release(y);
}

static void test_backward_hooks_captured_at_forward(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *m = relu_module();
    float xv[2] = {1.5f, 2.5f};
    nnm_tensor *x = vec(xv, 2, 1), *l = NULL;
    nnm_hook_handle *h = NULL, *p = NULL, *late = NULL, *g = NULL;

    /* removed between forward and backward: still runs (hook and pre-hook) */
    CU_ASSERT_EQUAL(nnm_module_register_full_backward_hook_v2(m, bw_hook, "A", NULL, &h), NNM_OK);
    CU_ASSERT_EQUAL(nnm_module_register_full_backward_pre_hook_v2(m, bw_pre, "p", NULL, &p), NNM_OK);
    forward(m, x, &l);
    nnm_hook_remove(h);
    nnm_hook_remove(p);
    g_n_order = 0, g_order[0] = 0;
    CU_ASSERT_EQUAL(nnm_backward(l, NULL, 0), NNM_OK);
    CU_ASSERT_STRING_EQUAL(g_order, "pA");
    nnm_tensor_release(l);
    nnm_hook_handle_free(h);
    nnm_hook_handle_free(p);
    /* ... and not in the next forward */
    forward(m, x, &l);
    g_n_order = 0, g_order[0] = 0;
    CU_ASSERT_EQUAL(nnm_backward(l, NULL, 0), NNM_OK);
    CU_ASSERT_STRING_EQUAL(g_order, "");
    nnm_tensor_release(l);

    /* registered between forward and backward: does not run, whether or not
     * another hook was there at forward */
    forward(m, x, &l);
    CU_ASSERT_EQUAL(nnm_module_register_full_backward_hook_v2(m, bw_hook, "B", NULL, &late), NNM_OK);
    g_n_order = 0, g_order[0] = 0;
    CU_ASSERT_EQUAL(nnm_backward(l, NULL, 0), NNM_OK);
    CU_ASSERT_STRING_EQUAL(g_order, "");
    nnm_tensor_release(l);
    forward(m, x, &l); /* B present at forward */
    CU_ASSERT_EQUAL(nnm_module_register_full_backward_hook_v2(m, bw_hook, "C", NULL, &h), NNM_OK);
    CU_ASSERT_EQUAL(nnm_module_register_full_backward_pre_hook_v2(m, bw_pre, "q", NULL, &p), NNM_OK);
    g_n_order = 0, g_order[0] = 0;
    CU_ASSERT_EQUAL(nnm_backward(l, NULL, 0), NNM_OK);
    CU_ASSERT_STRING_EQUAL(g_order, "B");
    nnm_tensor_release(l);
    nnm_hook_handle_remove(late);
    nnm_hook_handle_remove(h);
    nnm_hook_handle_remove(p);
    nnm_hook_handle_free(late);
    nnm_hook_handle_free(h);
    nnm_hook_handle_free(p);

    /* a global hook removed between forward and backward still runs */
    CU_ASSERT_EQUAL(nnm_ctx_register_full_backward_hook(g_ctx, bw_hook, "G", NULL, &g), NNM_OK);
    forward(m, x, &l);
    nnm_hook_remove(g);
    g_n_order = 0, g_order[0] = 0;
    CU_ASSERT_EQUAL(nnm_backward(l, NULL, 0), NNM_OK);
    CU_ASSERT_STRING_EQUAL(g_order, "G");
    nnm_tensor_release(l);
    nnm_hook_handle_free(g);

    /* retain_graph: removed between two backwards, it runs both times; its
     * user_free waits until the graph that captured it is gone */
    nnm_hook_options o = {sizeof o, 0, count_free};
    g_freed = 0;
    CU_ASSERT_EQUAL(nnm_module_register_full_backward_hook_v2(m, bw_hook, "R", &o, &h), NNM_OK);
    forward(m, x, &l);
    g_n_order = 0, g_order[0] = 0;
    CU_ASSERT_EQUAL(nnm_backward(l, NULL, 1), NNM_OK);
    nnm_hook_remove(h);
    CU_ASSERT_EQUAL(g_freed, 0);
    CU_ASSERT_EQUAL(nnm_backward(l, NULL, 1), NNM_OK);
    CU_ASSERT_STRING_EQUAL(g_order, "RR");
    CU_ASSERT_EQUAL(g_freed, 0);
    nnm_tensor_release(l); /* the graph goes: so does the hook */
    CU_ASSERT_EQUAL(g_freed, 1);
    nnm_hook_handle_free(h);

    /* a hook that removes itself runs in every backward of the graph that
     * captured it, and in no later forward's */
    CU_ASSERT_EQUAL(nnm_module_register_full_backward_hook_v2(m, bw_self_remove, NULL, NULL, &g_self_handle),
                    NNM_OK);
    forward(m, x, &l);
    g_n_order = 0, g_order[0] = 0;
    CU_ASSERT_EQUAL(nnm_backward(l, NULL, 1), NNM_OK);
    CU_ASSERT_EQUAL(nnm_backward(l, NULL, 0), NNM_OK);
    CU_ASSERT_STRING_EQUAL(g_order, "SS");
    nnm_tensor_release(l);
    forward(m, x, &l);
    CU_ASSERT_EQUAL(nnm_backward(l, NULL, 0), NNM_OK);
    CU_ASSERT_STRING_EQUAL(g_order, "SS");
    nnm_tensor_release(l);
    nnm_hook_handle_free(g_self_handle);


    nnm_tensor_release(x);
    nnm_module_release(m);
    LEAK_CHECK_END();
}

/* ---- parameters' gradients are handed over first --------------------------- */

/* A linear layer's backward computes its weight's and bias's gradients
 * before its input's and hands them over at once, so their post-accumulate-
 * grad hooks (DDP's readiness) run before the input's gemm; the weight's
 * gemm writes into .grad itself when one is there (adding) and the values
 * are those of the plain path. Used twice in one forward, each parameter's
 * hook still runs once per backward, after its last contribution. */
typedef struct lin_params {
    nnm_tensor *w, *b;
} lin_params;

static nnm_status take_params(void *user, const char *name, nnm_tensor *t) {
    lin_params *p = user;
    if (!strcmp(name, "weight")) p->w = t;
    if (!strcmp(name, "bias")) p->b = t;
    return NNM_OK;
}

static nnm_status order_hook(void *user, nnm_tensor *t) {
    (void)t;
    mark(*(const char *)user);
    return NNM_OK;
}

static void test_param_grads_first(void) {
    LEAK_CHECK_BEGIN();
    enum { M = 3, K = 4, N = 2 };
    nnm_module *lin = tu_linear(g_ctx, "linear", K, N, 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(lin);
    lin_params p = {NULL, NULL};
    CU_ASSERT_EQUAL(nnm_module_named_parameters(lin, take_params, &p), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p.w);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p.b);
    float wv[N * K], xv[M * K];
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(p.w, wv, N * K), NNM_OK);
    for (int i = 0; i < M * K; i++) xv[i] = 0.25f * (float)(i % 5) - 0.5f;
    int64_t xs[2] = {M, K};
    nnm_tensor *x = tu_tf32(g_ctx, 2, xs, xv), *y = NULL, *l = NULL;
    CU_ASSERT_EQUAL(nnm_tensor_set_requires_grad(x, 1), NNM_OK);
    nnm_hook_handle *hw = NULL, *hb = NULL, *hx = NULL;
    CU_ASSERT_EQUAL(nnm_tensor_register_post_accumulate_grad_hook(p.w, order_hook, "w", &hw), NNM_OK);
    CU_ASSERT_EQUAL(nnm_tensor_register_post_accumulate_grad_hook(p.b, order_hook, "b", &hb), NNM_OK);
    CU_ASSERT_EQUAL(nnm_tensor_register_post_accumulate_grad_hook(x, order_hook, "x", &hx), NNM_OK);

    /* l = sum(x w^T + b): dw[o][j] = sum_i x[i][j], db[o] = M, dx[i][j] = sum_o w[o][j] */
    CU_ASSERT_EQUAL_FATAL(tu_call1(lin, x, &y), NNM_OK);
    CU_ASSERT_EQUAL_FATAL(nnm_op_reduce(g_ctx, NNM_REDUCE_SUM, y, NULL, 0, 0, &l), NNM_OK);
    g_n_order = 0, g_order[0] = 0;
    CU_ASSERT_EQUAL(nnm_backward(l, NULL, 1), NNM_OK);
    CU_ASSERT_STRING_EQUAL(g_order, "wbx");
    float gw[N * K], gb[N], gx[M * K];
    for (int rep = 1; rep <= 2; rep++) { /* the second backward adds into .grad */
        CU_ASSERT_EQUAL(nnm_tensor_to_f32(nnm_tensor_grad(p.w), gw, N * K), NNM_OK);
        CU_ASSERT_EQUAL(nnm_tensor_to_f32(nnm_tensor_grad(p.b), gb, N), NNM_OK);
        CU_ASSERT_EQUAL(nnm_tensor_to_f32(nnm_tensor_grad(x), gx, M * K), NNM_OK);
        for (int o = 0; o < N; o++) {
            CU_ASSERT_DOUBLE_EQUAL(gb[o], rep * M, 1e-6);
            for (int j = 0; j < K; j++) {
                float s = 0;
                for (int i = 0; i < M; i++) s += xv[i * K + j];
                CU_ASSERT_DOUBLE_EQUAL(gw[o * K + j], rep * s, 1e-5);
            }
        }
        for (int i = 0; i < M; i++)
            for (int j = 0; j < K; j++)
                CU_ASSERT_DOUBLE_EQUAL(gx[i * K + j], rep * (wv[j] + wv[K + j]), 1e-5);
        if (rep == 1) {
            nnm_tensor *held = nnm_tensor_grad(p.w);
            g_n_order = 0, g_order[0] = 0;
            CU_ASSERT_EQUAL(nnm_backward(l, NULL, 0), NNM_OK);
            CU_ASSERT_STRING_EQUAL(g_order, "wbx");
            CU_ASSERT_PTR_EQUAL(nnm_tensor_grad(p.w), held); /* updated in place */
        }
    }
    nnm_tensor_release(l);
    nnm_tensor_release(y);

    /* a square layer called twice: each parameter's hook runs once, after
     * both of its gradients (the first written into .grad, the second added) */
    nnm_module *sq = tu_linear(g_ctx, "linear", K, K, 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(sq);
    lin_params q = {NULL, NULL};
    CU_ASSERT_EQUAL(nnm_module_named_parameters(sq, take_params, &q), NNM_OK);
    nnm_hook_handle *qw = NULL, *qb = NULL;
    CU_ASSERT_EQUAL(nnm_tensor_register_post_accumulate_grad_hook(q.w, order_hook, "W", &qw), NNM_OK);
    CU_ASSERT_EQUAL(nnm_tensor_register_post_accumulate_grad_hook(q.b, order_hook, "B", &qb), NNM_OK);
    float qv[K * K], qbv[K];
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(q.w, qv, K * K), NNM_OK);
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(q.b, qbv, K), NNM_OK);
    nnm_tensor *h1 = NULL, *h2 = NULL;
    nnm_tensor_set_grad(x, NULL);
    CU_ASSERT_EQUAL_FATAL(tu_call1(sq, x, &h1), NNM_OK);
    CU_ASSERT_EQUAL_FATAL(tu_call1(sq, h1, &h2), NNM_OK);
    CU_ASSERT_EQUAL_FATAL(nnm_op_reduce(g_ctx, NNM_REDUCE_SUM, h2, NULL, 0, 0, &l), NNM_OK);
    g_n_order = 0, g_order[0] = 0;
    CU_ASSERT_EQUAL(nnm_backward(l, NULL, 0), NNM_OK);
    CU_ASSERT_STRING_EQUAL(g_order, "WBx");
    /* h1 = x W^T + B; l = sum(h1 W^T + B): dh1[i][o] = sum_p W[p][o];
     * dW[o][j] = sum_i h1[i][j] + sum_i dh1[i][o] x[i][j]; dB[o] = M + sum_i dh1[i][o] */
    float h1v[M * K], dW[K * K], dB[K];
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(h1, h1v, M * K), NNM_OK);
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(nnm_tensor_grad(q.w), dW, K * K), NNM_OK);
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(nnm_tensor_grad(q.b), dB, K), NNM_OK);
    for (int o = 0; o < K; o++) {
        float colsum = 0;
        for (int pp = 0; pp < K; pp++) colsum += qv[pp * K + o];
        CU_ASSERT_DOUBLE_EQUAL(dB[o], M * (1.0f + colsum), 1e-4);
        for (int j = 0; j < K; j++) {
            float s = 0;
            for (int i = 0; i < M; i++) s += h1v[i * K + j] + colsum * xv[i * K + j];
            CU_ASSERT_DOUBLE_EQUAL(dW[o * K + j], s, 1e-4);
        }
    }
    nnm_tensor_release(l);
    nnm_tensor_release(h2);
    nnm_tensor_release(h1);
    nnm_hook_remove(qw);
    nnm_hook_remove(qb);
    nnm_hook_handle_free(qw);
    nnm_hook_handle_free(qb);
    nnm_module_release(sq);

    nnm_hook_remove(hw);
    nnm_hook_remove(hb);
    nnm_hook_remove(hx);
    nnm_hook_handle_free(hw);
    nnm_hook_handle_free(hb);
    nnm_hook_handle_free(hx);
    nnm_tensor_release(x);
    nnm_module_release(lin);
    LEAK_CHECK_END();
}

int main(void) {
    CU_pSuite s = tu_suite("backward_hooks", suite_init, ag_suite_clean);
    if (s == NULL)
        return 1;
    CU_add_test(s, "a layer with its own backward is one node", test_custom_backward_layer);
    CU_add_test(s, "accumulate_grad takes the parameter's shape", test_accumulate_grad_takes_the_parameters_shape);
    CU_add_test(s, "full backward hooks: order, values, removal", test_backward_hooks_order_and_values);
    CU_add_test(s, "full backward hooks replace gradients", test_backward_hooks_replace_gradients);
    CU_add_test(s, "backward hook when no input needs grad", test_backward_hook_without_input_grad);
    CU_add_test(s, "backward hook: zeros for an input without grad beside one with",
                test_backward_hook_mixed_inputs);
    CU_add_test(s, "gradients a backward hook replaces are validated",
                test_backward_hooks_validate_replaced_gradients);
    CU_add_test(s, "backward hooks are captured when the forward runs",
                test_backward_hooks_captured_at_forward);
    CU_add_test(s, "a linear layer's parameter gradients are handed over first", test_param_grads_first);
    return tu_run();
}
