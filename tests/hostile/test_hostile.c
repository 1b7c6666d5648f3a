/* tests/hostile/test_hostile.c - what crosses the plugin ABI is checked
 * (issue 9 §3): each fixture in hostile_plugin.c misbehaves on purpose, and
 * the host must answer with a status and a message naming the plugin file or
 * the module, never a crash, a leak or raw control characters. */
#include "test_util.h"

static nnm_ctx *g_ctx;
#define TU_CTX g_ctx

#define HX(stem) NNM_HOSTILE_DIR "/hx_" stem ".so"

static int suite_init(void) {
    if (tu_ctx_new(&g_ctx)) return 1;
    return nnm_plugin_load(g_ctx, HX("layers")) == NNM_OK ? 0 : 1;
}

static int suite_clean(void) { return tu_ctx_free(&g_ctx); }

/* No byte of s is a control character other than '\n'. */
static int printable(const char *s) {
    for (; *s; s++)
        if (((unsigned char)*s < 0x20 && *s != '\n') || *s == 0x7f) return 0;
    return 1;
}

static nnm_tensor *mat(int64_t r, int64_t c, float v, int requires_grad) {
    int64_t shape[2] = {r, c};
    float buf[64];
    for (int i = 0; i < r * c && i < 64; i++) buf[i] = v;
    nnm_tensor *t = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_tensor_from_f32(g_ctx, 2, shape, buf, &t), NNM_OK);
    if (requires_grad) CU_ASSERT_EQUAL(nnm_tensor_set_requires_grad(t, 1), NNM_OK);
    return t;
}

/* ---- descriptors that claim too much ---------------------------------- */

static void test_descriptor_bounds(void) {
    static const struct {
        const char *file, *needle;
    } cases[] = {
        {HX("fields_many"), "declares 1000000 config fields (at most 256)"},
        {HX("fields_null"), "declares 3 config fields but config_fields is NULL"},
        {HX("field_key"), "config field #1: invalid key"},
        {HX("field_type"), "config field 'k': unknown type 99"},
        {HX("display_esc"), "layer 'hx_display_esc': invalid display_name"},
        {HX("name_esc"), "invalid plugin name"},
        {HX("name_long"), "invalid plugin name (want 1 to 63"},
        {HX("desc_esc"), "invalid description"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        nnm_status st = nnm_plugin_load(g_ctx, cases[i].file);
        const char *msg = nnm_ctx_errmsg(g_ctx);
        if (st != NNM_E_PLUGIN || !strstr(msg, cases[i].needle) || !strstr(msg, "hx_"))
            fprintf(stderr, "\n  %s: %s: %s\n", cases[i].file, nnm_status_name(st), msg);
        CU_ASSERT_EQUAL(st, NNM_E_PLUGIN);
        CU_ASSERT_PTR_NOT_NULL(strstr(msg, cases[i].needle));
        CU_ASSERT_PTR_NOT_NULL(strstr(msg, "hx_")); /* names the file */
        CU_ASSERT_TRUE(printable(msg));
    }
    /* none of them registered a layer */
    const nnm_layer_vtable *vt = NULL;
    CU_ASSERT_EQUAL(nnm_layer_find(g_ctx, "hx_display_esc", &vt), NNM_E_NOT_FOUND);
    CU_ASSERT_EQUAL(nnm_layer_find(g_ctx, "hx_fields_many", &vt), NNM_E_NOT_FOUND);
}

/* ---- host-table slots given NULL or foreign pointers --------------------- */

static void test_host_slots_check_pointers(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *m = NULL;
    /* create calls every config, state and query slot with NULL pointers,
     * a NULL env and a copied env; each must refuse (else create fails) */
    CHECK_STATUS(nnm_module_create(g_ctx, "hx_nullargs", NULL, &m), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    nnm_tensor *x = mat(2, 4, 1.0f, 0), *y = NULL;
    /* forward does the same with the op, child and autograd slots */
    CHECK_STATUS(nnm_module_call(m, &x, 1, &y, 1), NNM_OK);
    nnm_tensor_release(y);
    nnm_tensor_release(x);
    nnm_module_release(m);
    LEAK_CHECK_END();
}

/* ---- text a plugin writes into a host buffer ------------------------------- */

static void test_extra_repr_terminated_and_clean(void) {
    LEAK_CHECK_BEGIN();
    const char *types[2] = {"hx_repr_full", "hx_repr_esc"};
    for (int i = 0; i < 2; i++) {
        nnm_module *m = tu_module(g_ctx, types[i], NULL);
        CU_ASSERT_PTR_NOT_NULL_FATAL(m);
        char buf[4096];
        memset(buf, 'Z', sizeof buf);
        int64_t n = nnm_module_repr(m, buf, sizeof buf);
        CU_ASSERT_TRUE(n > 0 && n < (int64_t)sizeof buf);
        CU_ASSERT_TRUE(memchr(buf, 0, sizeof buf) != NULL);
        CU_ASSERT_TRUE(printable(buf));
        if (i == 1) CU_ASSERT_PTR_NOT_NULL(strstr(buf, "x=1"));
        nnm_module_release(m);
    }
    LEAK_CHECK_END();
}

/* ---- failures without a message --------------------------------------------- */

static void test_silent_failures_get_a_message(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *s = tu_module(g_ctx, "hx_silent", NULL), *p = tu_module(g_ctx, "hx_positive", NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    nnm_tensor *x = mat(2, 4, 1.0f, 0), *y = NULL;
    /* a stale message from an earlier failure must not pass for this one's */
    nnm_ctx_set_error(g_ctx, NNM_E_IO, "an older, unrelated message");
    CHECK_ERROR(nnm_module_call(s, &x, 1, &y, 1), NNM_E_PLUGIN,
                "(hx_silent): forward failed with NNM_E_PLUGIN and no message");
    CU_ASSERT_PTR_NULL(y);
    CHECK_ERROR(nnm_module_call(p, &x, 1, &y, 1), NNM_E_PLUGIN,
                "(hx_positive): forward failed with status 7, which is not an nnm_status");
    nnm_tensor_release(x);
    nnm_module_release(s);
    nnm_module_release(p);
    LEAK_CHECK_END();
}

/* ---- an output that is an input without a reference ---------------------------- */

static void test_passthrough_without_reference(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *bad = tu_module(g_ctx, "hx_passthrough", NULL);
    nnm_module *good = tu_module(g_ctx, "hx_identity_ok", NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(bad);
    CU_ASSERT_PTR_NOT_NULL_FATAL(good);
    nnm_tensor *x = mat(2, 4, 3.0f, 0), *y = NULL;
    CHECK_ERROR(nnm_module_call(bad, &x, 1, &y, 1), NNM_E_PLUGIN,
                "forward returned input 0 as output 0 without taking a reference");
    CU_ASSERT_PTR_NULL(y);
    /* x is intact: still ours, still readable (ASan: not freed) */
    float v[8];
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(x, v, 8), NNM_OK);
    CU_ASSERT_DOUBLE_EQUAL(v[7], 3.0, 0);
    /* done right, the same thing passes */
    CHECK_STATUS(nnm_module_call(good, &x, 1, &y, 1), NNM_OK);
    CU_ASSERT_PTR_EQUAL(y, x);
    nnm_tensor_release(y);
    nnm_tensor_release(x);
    nnm_module_release(bad);
    nnm_module_release(good);
    LEAK_CHECK_END();
}

/* ---- custom backward gradients ---------------------------------------------------- */

/* head = hx_badgrad(grad=shape, dtype, silent) as child "head" of a
 * sequential; x [2, 4] requires grad; sum(seq(x)).backward(). */
static nnm_status badgrad_backward(const int64_t *shape, size_t ndim, const char *dtype, int silent,
                                   nnm_tensor **x_out) {
    nnm_config *cfg = NULL;
    nnm_config_new(&cfg);
    nnm_config_set_ints(cfg, "grad", shape, ndim);
    nnm_config_set_str(cfg, "dtype", dtype);
    nnm_config_set_bool(cfg, "silent", silent);
    nnm_module *head = tu_module(g_ctx, "hx_badgrad", cfg);
    nnm_config_free(cfg);
    nnm_module *seq = tu_module(g_ctx, "sequential", NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(head);
    CU_ASSERT_PTR_NOT_NULL_FATAL(seq);
    CU_ASSERT_EQUAL(nnm_module_add_child(seq, "head", head), NNM_OK);
    nnm_module_release(head);
    nnm_tensor *x = mat(2, 4, 1.0f, 1), *y = NULL, *l = NULL;
    nnm_status st = nnm_module_call(seq, &x, 1, &y, 1);
    if (!st) st = nnm_op_reduce(g_ctx, NNM_REDUCE_SUM, y, NULL, 0, 0, &l);
    if (!st) st = nnm_backward(l, NULL, 0);
    nnm_tensor_release(l);
    nnm_tensor_release(y);
    nnm_module_release(seq);
    *x_out = x;
    return st;
}

/* PyTorch's engine (validate_outputs) refuses a custom Function's gradient
 * whose shape its input's does not expand to: "Function MyFnBackward
 * returned an invalid gradient at index 0 - got [7] but expected shape
 * compatible with [2, 4]"; one the input's shape expands to is summed down
 * (at::sum_to); another device is refused. nnmod names the module path. */
static void test_custom_backward_gradients(void) {
    LEAK_CHECK_BEGIN();
    nnm_tensor *x = NULL;
    const int64_t seven[1] = {7}, broad[3] = {3, 2, 4}, right[2] = {2, 4}, narrow[2] = {2, 1};
    CHECK_ERROR(badgrad_backward(seven, 1, "f32", 0, &x), NNM_E_SHAPE,
                "head (hx_badgrad): backward returned an invalid gradient at index 0 - got [7] "
                "but expected shape compatible with [2, 4]");
    CU_ASSERT_PTR_NULL(nnm_tensor_grad(x));
    nnm_tensor_release(x);
    CHECK_ERROR(badgrad_backward(narrow, 2, "f32", 0, &x), NNM_E_SHAPE,
                "got [2, 1] but expected shape compatible with [2, 4]");
    nnm_tensor_release(x);
    CHECK_ERROR(badgrad_backward(right, 2, "i64", 0, &x), NNM_E_DTYPE,
                "head (hx_badgrad): backward returned an invalid gradient at index 0 - expected "
                "dtype f32");
    nnm_tensor_release(x);
    CHECK_ERROR(badgrad_backward(right, 2, "f32", 1, &x), NNM_E_SHAPE,
                "head (hx_badgrad): backward failed with NNM_E_SHAPE and no message");
    nnm_tensor_release(x);
    /* the right shape, and one that broadcasts: summed to [2, 4] (3 each) */
    CHECK_STATUS(badgrad_backward(right, 2, "f32", 0, &x), NNM_OK);
    float g[8];
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(nnm_tensor_grad(x), g, 8), NNM_OK);
    CU_ASSERT_DOUBLE_EQUAL(g[0], 1.0, 0);
    nnm_tensor_release(x);
    CHECK_STATUS(badgrad_backward(broad, 3, "f32", 0, &x), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(nnm_tensor_grad(x));
    const nnm_tensor_desc *d = nnm_tensor_desc_get(nnm_tensor_grad(x));
    CU_ASSERT_TRUE(d->ndim == 2 && d->shape[0] == 2 && d->shape[1] == 4);
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(nnm_tensor_grad(x), g, 8), NNM_OK);
    CU_ASSERT_DOUBLE_EQUAL(g[0], 3.0, 0);
    CU_ASSERT_DOUBLE_EQUAL(g[7], 3.0, 0);
    nnm_tensor_release(x);
    LEAK_CHECK_END();
}

/* ---- ownership lies in backward and in multi-output forwards -------------------- */

/* sum(m(x)).backward() for a one-input layer; x [2, 4] requires grad. */
static nnm_status backward_through(const char *type, nnm_tensor **x_out) {
    nnm_module *m = tu_module(g_ctx, type, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    nnm_tensor *x = mat(2, 4, 1.0f, 1), *y = NULL, *l = NULL;
    nnm_status st = nnm_module_call(m, &x, 1, &y, 1);
    if (!st) st = nnm_op_reduce(g_ctx, NNM_REDUCE_SUM, y, NULL, 0, 0, &l);
    if (!st) st = nnm_backward(l, NULL, 0);
    nnm_tensor_release(l);
    nnm_tensor_release(y);
    nnm_module_release(m);
    *x_out = x;
    return st;
}

/* A backward that hands back a tensor it borrowed (grad_out, a saved tensor)
 * or one tensor in two slots without a reference per slot would have the
 * engine release it twice (a use after free): refused, naming the module. */
static void test_backward_borrowed_gradients(void) {
    LEAK_CHECK_BEGIN();
    nnm_tensor *x = NULL;
    CHECK_ERROR(backward_through("hx_bwpass", &x), NNM_E_PLUGIN,
                "(hx_bwpass): backward returned grad_out 0 as grad_in 0 without taking a reference "
                "(host->tensor_retain)");
    CU_ASSERT_PTR_NULL(nnm_tensor_grad(x));
    nnm_tensor_release(x);
    CHECK_ERROR(backward_through("hx_bwsaved", &x), NNM_E_PLUGIN,
                "(hx_bwsaved): backward returned saved tensor 0 as grad_in 0 without taking a "
                "reference (host->tensor_retain)");
    /* the saved input (x itself) is intact */
    float v[8];
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(x, v, 8), NNM_OK);
    CU_ASSERT_DOUBLE_EQUAL(v[3], 1.0, 0);
    nnm_tensor_release(x);

    const char *types[2] = {"hx_bwdup", "hx_bwdup_ok"};
    for (int k = 0; k < 2; k++) {
        nnm_module *m = tu_module(g_ctx, types[k], NULL);
        CU_ASSERT_PTR_NOT_NULL_FATAL(m);
        nnm_tensor *in[2] = {mat(2, 4, 1.0f, 1), mat(2, 4, 2.0f, 1)}, *y = NULL, *l = NULL;
        nnm_status st = nnm_module_call(m, in, 2, &y, 1);
        if (!st) st = nnm_op_reduce(g_ctx, NNM_REDUCE_SUM, y, NULL, 0, 0, &l);
        if (!st) st = nnm_backward(l, NULL, 0);
        if (k == 0) {
            CHECK_ERROR(st, NNM_E_PLUGIN,
                        "(hx_bwdup): backward returned the same tensor as grad_in 0 and grad_in 1 "
                        "with fewer references than slots");
        } else {
            CHECK_STATUS(st, NNM_OK);
            for (int i = 0; i < 2; i++) {
                CU_ASSERT_PTR_NOT_NULL_FATAL(nnm_tensor_grad(in[i]));
                CU_ASSERT_EQUAL(nnm_tensor_to_f32(nnm_tensor_grad(in[i]), v, 8), NNM_OK);
                CU_ASSERT_DOUBLE_EQUAL(v[7], 1.0, 0);
            }
        }
        nnm_tensor_release(l);
        nnm_tensor_release(y);
        nnm_tensor_release(in[0]);
        nnm_tensor_release(in[1]);
        nnm_module_release(m);
    }
    LEAK_CHECK_END();
}

/* One new tensor stored in two outputs with one reference: refused (the
 * caller would release it twice). */
static void test_forward_duplicate_outputs(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *m = tu_module(g_ctx, "hx_fwdup", NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    nnm_tensor *x = mat(2, 4, 1.0f, 0), *y[2] = {NULL, NULL};
    CHECK_ERROR(nnm_module_call(m, &x, 1, y, 2), NNM_E_PLUGIN,
                "(hx_fwdup): forward returned the same tensor as output 0 and output 1 with fewer "
                "references than slots");
    CU_ASSERT_PTR_NULL(y[0]);
    CU_ASSERT_PTR_NULL(y[1]);
    nnm_tensor_release(x);
    nnm_module_release(m);
    LEAK_CHECK_END();
}

/* A forward that sets an error and returns OK: the status wins (the output
 * is good), and a later silent failure does not get the stale message. */
static void test_error_set_but_ok(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *m = tu_module(g_ctx, "hx_errok", NULL), *s = tu_module(g_ctx, "hx_silent", NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    nnm_tensor *x = mat(2, 4, 5.0f, 0), *y = NULL;
    CHECK_STATUS(nnm_module_call(m, &x, 1, &y, 1), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(y);
    float v[8];
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(y, v, 8), NNM_OK);
    CU_ASSERT_DOUBLE_EQUAL(v[7], 5.0, 0);
    nnm_tensor_release(y);
    y = NULL;
    CHECK_ERROR(nnm_module_call(s, &x, 1, &y, 1), NNM_E_PLUGIN, "forward failed with NNM_E_PLUGIN and no message");
    CU_ASSERT_PTR_NULL(strstr(nnm_ctx_errmsg(g_ctx), "hx_errok"));
    nnm_tensor_release(x);
    nnm_module_release(m);
    nnm_module_release(s);
    LEAK_CHECK_END();
}

/* A message handed over without its NUL is read up to what fits in the
 * context's message, never past it. */
static void test_unterminated_message(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *m = tu_module(g_ctx, "hx_unterminated", NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    nnm_tensor *x = mat(2, 4, 1.0f, 0), *y = NULL;
    CHECK_ERROR(nnm_module_call(m, &x, 1, &y, 1), NNM_E_PLUGIN, "AAAAAAAA");
    CU_ASSERT_PTR_NULL(y);
    nnm_tensor_release(x);
    nnm_module_release(m);
    LEAK_CHECK_END();
}

/* ---- re-entrant calls ------------------------------------------------------------ */

/* A forward pre-hook that calls its own module again: PyTorch raises
 * RecursionError; nnmod must fail with a status, not overflow the stack. */
static nnm_status reenter_hook(void *user, nnm_module *m, nnm_tensor **in, uint32_t n_in) {
    (*(int *)user)++;
    nnm_tensor *y = NULL;
    nnm_status st = nnm_module_call(m, in, n_in, &y, 1);
    nnm_tensor_release(y);
    return st;
}

/* A full backward hook that runs a backward through its own module again. */
static nnm_status rebackward_hook(void *user, nnm_module *m, nnm_tensor **grad_in, uint32_t n_in,
                                  nnm_tensor *const *grad_out, uint32_t n_out) {
    (void)grad_in, (void)n_in, (void)grad_out, (void)n_out;
    (*(int *)user)++;
    int prev = nnm_grad_set_enabled(1); /* hooks run with grad mode off, as PyTorch's */
    nnm_tensor *x = mat(2, 4, 1.0f, 1), *y = NULL, *l = NULL;
    nnm_status st = nnm_module_call(m, &x, 1, &y, 1);
    if (!st) st = nnm_op_reduce(g_ctx, NNM_REDUCE_SUM, y, NULL, 0, 0, &l);
    if (!st) st = nnm_backward(l, NULL, 0);
    nnm_tensor_release(l);
    nnm_tensor_release(y);
    nnm_tensor_release(x);
    nnm_grad_set_enabled(prev);
    return st;
}

static void test_reentrant_call_is_bounded(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *m = tu_module(g_ctx, "hx_identity_ok", NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    int calls = 0;
    nnm_hook_handle *h = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_module_register_forward_pre_hook(m, reenter_hook, &calls, &h), NNM_OK);
    nnm_tensor *x = mat(2, 4, 1.0f, 0), *y = NULL;
    CHECK_ERROR(nnm_module_call(m, &x, 1, &y, 1), NNM_E_LIMIT, "calls nested deeper than");
    CU_ASSERT_PTR_NULL(y);
    CU_ASSERT_TRUE(calls > 10);
    nnm_hook_remove(h);
    /* the module still works */
    CHECK_STATUS(nnm_module_call(m, &x, 1, &y, 1), NNM_OK);
    nnm_tensor_release(y);
    y = NULL;
    /* a backward hook that always runs another backward through m */
    calls = 0;
    CU_ASSERT_EQUAL_FATAL(nnm_module_register_full_backward_hook(m, rebackward_hook, &calls, &h), NNM_OK);
    CHECK_ERROR(rebackward_hook(&calls, m, NULL, 0, NULL, 0), NNM_E_LIMIT,
                "backward calls nested deeper than 64");
    CU_ASSERT_TRUE(calls > 10);
    if (calls <= 10) fprintf(stderr, "\n  backward hook ran %d times\n", calls);
    nnm_hook_remove(h);
    nnm_tensor_release(x);
    nnm_module_release(m);
    LEAK_CHECK_END();
}

/* ---- a backend whose alloc lies ------------------------------------------------------ */

static void test_backend_alloc_null(void) {
    nnm_ctx_options o = {sizeof o, NNM_CTX_NO_DISCOVERY, 0};
    nnm_ctx *ctx = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_ctx_new(&o, &ctx), NNM_OK);
    CU_ASSERT_EQUAL_FATAL(nnm_plugin_load(ctx, HX("alloc_null")), NNM_OK);
    int64_t shape[1] = {16};
    nnm_tensor *t = (nnm_tensor *)&o;
    nnm_status st = nnm_tensor_new(ctx, (nnm_device){NNM_DEVICE_CUDA, 0}, NNM_F32, 1, shape, &t);
    CU_ASSERT_EQUAL(st, NNM_E_PLUGIN);
    CU_ASSERT_PTR_NULL(t);
    const char *msg = nnm_ctx_errmsg(ctx);
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "backend 'allocnull'"));
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "hx_alloc_null.so"));
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "returned success but a NULL pointer"));
    nnm_ctx_free(ctx);
}

int main(void) {
    CU_pSuite s = tu_suite("hostile", suite_init, suite_clean);
    if (!s) return 1;
    CU_add_test(s, "descriptors: bounded counts, names and text", test_descriptor_bounds);
    CU_add_test(s, "host slots refuse NULL and foreign pointers", test_host_slots_check_pointers);
    CU_add_test(s, "extra_repr: terminated by the host, no control characters",
                test_extra_repr_terminated_and_clean);
    CU_add_test(s, "a failure without set_error gets a message", test_silent_failures_get_a_message);
    CU_add_test(s, "an input returned without a reference is refused",
                test_passthrough_without_reference);
    CU_add_test(s, "custom backward gradients are checked like PyTorch's",
                test_custom_backward_gradients);
    CU_add_test(s, "a backend alloc that returns NULL with success", test_backend_alloc_null);
    CU_add_test(s, "backward: borrowed or shared gradients need their references",
                test_backward_borrowed_gradients);
    CU_add_test(s, "forward: one tensor in two outputs needs two references",
                test_forward_duplicate_outputs);
    CU_add_test(s, "an error set with an OK status", test_error_set_but_ok);
    CU_add_test(s, "a message without its NUL is read bounded", test_unterminated_message);
    CU_add_test(s, "a re-entrant call is bounded, not a stack overflow", test_reentrant_call_is_bounded);
    return tu_run();
}
