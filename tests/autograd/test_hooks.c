/* tests/autograd/test_hooks.c - the second version of the hook API
 * (nnmod.h, "Hooks, version 2"): handles that are safe in any order,
 * user-data destructors, prepend for every kind, always_call forward hooks,
 * global backward hooks, and the PyTorch semantics of the call path around
 * them: a hook removed during a call still runs in that call, and a full
 * backward hook gets one grad_in entry per input of the call (NULL where no
 * gradient). Each test names the PyTorch behaviour it matches. */
#include "ag_test.h"

/* ---- "hk": out = w * (in[0] + in[1] + ...), any number of inputs, w a [1]
 * parameter (2.0). Config fail=true makes forward fail (with a message). */

typedef struct hk {
    nnm_tensor *w;
    int fail;
} hk;

static nnm_status hk_create(nnm_env *env, void **self) {
    const nnm_host *h = env->host;
    hk *s = calloc(1, sizeof *s);
    if (!s) return h->set_error(env, NNM_E_NOMEM, "out of memory");
    int no = 0;
    int64_t shape[1] = {1};
    nnm_status st = h->config_bool(env, "fail", &no, &s->fail);
    if (!st) st = h->param_new(env, "w", 1, shape, NNM_INIT_CONSTANT, 2.0, 0, &s->w);
    if (st) {
        free(s);
        return st;
    }
    *self = s;
    return NNM_OK;
}

static void hk_destroy(void *self) { free(self); }

static nnm_status hk_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in,
                             nnm_tensor **out, uint32_t n_out) {
    (void)n_out;
    const nnm_host *h = env->host;
    hk *s = self;
    if (s->fail) return h->set_error(env, NNM_E_SHAPE, "hk failed on purpose");
    nnm_tensor *sum = in[0];
    h->tensor_retain(sum);
    for (uint32_t i = 1; i < n_in; i++) {
        nnm_tensor *t = NULL;
        nnm_status st = h->op_binary(env, NNM_BINARY_ADD, sum, in[i], &t);
        h->tensor_release(sum);
        if (st) return st;
        sum = t;
    }
    nnm_status st = h->op_binary(env, NNM_BINARY_MUL, sum, s->w, &out[0]);
    h->tensor_release(sum);
    return st;
}

static const nnm_layer_vtable hk_vt = {
    .struct_size = sizeof(nnm_layer_vtable),
    .name = "hk",
    .version_major = 1,
    .n_inputs = NNM_ARITY_ANY,
    .n_outputs = 1,
    .create = hk_create,
    .destroy = hk_destroy,
    .forward = hk_forward,
};
static const nnm_layer_vtable *const hk_layers[] = {&hk_vt};
static const nnm_plugin_desc hk_desc = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
    .name = "hk",
    .n_layers = 1,
    .layers = hk_layers,
};

static int suite_init(void) {
    if (ag_suite_init()) return 1;
    return nnm_plugin_register_static(g_ctx, &hk_desc, "test_hooks") ? 1 : 0;
}

static nnm_module *mk_hk(int fail) {
    nnm_config *cfg = NULL;
    nnm_config_new(&cfg);
    nnm_config_set_bool(cfg, "fail", fail);
    nnm_module *m = tu_module(g_ctx, "hk", cfg);
    nnm_config_free(cfg);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    return m;
}

static nnm_tensor *vec2(float a, float b, int requires_grad) {
    int64_t shape[1] = {2};
    float v[2] = {a, b};
    nnm_tensor *t = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_tensor_from_f32(g_ctx, 1, shape, v, &t), NNM_OK);
    if (requires_grad) CU_ASSERT_EQUAL(nnm_tensor_set_requires_grad(t, 1), NNM_OK);
    return t;
}

/* y = m(in...); sum(y).backward() */
static nnm_status call_backward(nnm_module *m, nnm_tensor **in, uint32_t n_in) {
    nnm_tensor *y = NULL, *l = NULL;
    nnm_status st = nnm_module_call(m, in, n_in, &y, 1);
    if (!st) st = nnm_op_reduce(g_ctx, NNM_REDUCE_SUM, y, NULL, 0, 0, &l);
    if (!st) st = nnm_backward(l, NULL, 0);
    nnm_tensor_release(l);
    nnm_tensor_release(y);
    return st;
}

/* ---- logging hooks --------------------------------------------------------- */

static char g_order[128];
static int g_n;
static void mark(char c) {
    if (g_n < (int)sizeof g_order - 1) g_order[g_n++] = c, g_order[g_n] = 0;
}
static void reset(void) { g_n = 0, g_order[0] = 0; }

static nnm_status pre_log(void *user, nnm_module *m, nnm_tensor **in, uint32_t n_in) {
    (void)m, (void)in, (void)n_in;
    mark(*(const char *)user);
    return NNM_OK;
}

static nnm_status post_log(void *user, nnm_module *m, nnm_tensor *const *in, uint32_t n_in,
                           nnm_tensor **out, uint32_t n_out) {
    (void)m, (void)in, (void)n_in, (void)out, (void)n_out;
    mark(*(const char *)user);
    return NNM_OK;
}

static nnm_status bwpre_log(void *user, nnm_module *m, nnm_tensor **gout, uint32_t n_out) {
    (void)m, (void)gout, (void)n_out;
    mark(*(const char *)user);
    return NNM_OK;
}

static nnm_status bw_log(void *user, nnm_module *m, nnm_tensor **gin, uint32_t n_in,
                         nnm_tensor *const *gout, uint32_t n_out) {
    (void)m, (void)gin, (void)n_in, (void)gout, (void)n_out;
    mark(*(const char *)user);
    return NNM_OK;
}

/* user_free that counts, per user datum */
typedef struct closure {
    char tag;
    int freed;
    int running; /* set while the hook runs: user_free must never see it */
    int freed_while_running;
    nnm_hook_handle *self;
} closure;

static void closure_free(void *user) {
    closure *c = user;
    c->freed++;
    if (c->running) c->freed_while_running++;
}

static nnm_hook_options opts_of(uint32_t flags, void (*user_free)(void *)) {
    nnm_hook_options o = {sizeof o, flags, user_free};
    return o;
}

/* ---- handles ---------------------------------------------------------------- */

/* Issue 9 §2: removing a hook after its module died, or twice, was a
 * use-after-free. Now it is a no-op that says so (ASan checks the rest). */
static void test_handles_stale(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *m = mk_hk(0);
    nnm_hook_handle *v1 = NULL, *v2 = NULL, *v1b = NULL;
    closure c = {'a', 0, 0, 0, NULL};
    nnm_hook_options o = opts_of(0, closure_free);
    CHECK_STATUS(nnm_module_register_forward_hook(m, post_log, "x", &v1), NNM_OK);
    CHECK_STATUS(nnm_module_register_forward_pre_hook(m, pre_log, "y", &v1b), NNM_OK);
    CHECK_STATUS(nnm_module_register_forward_hook_v2(m, post_log, &c, &o, &v2), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(v1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(v2);
    CU_ASSERT_TRUE(nnm_hook_handle_is_live(v1));
    CU_ASSERT_TRUE(nnm_hook_handle_is_live(v2));

    /* twice */
    CU_ASSERT_EQUAL(nnm_hook_handle_remove(v1b), NNM_OK);
    CU_ASSERT_EQUAL(nnm_hook_handle_remove(v1b), NNM_E_STATE);
    nnm_hook_remove(v1b); /* the first-version call: a no-op as well */
    CU_ASSERT_FALSE(nnm_hook_handle_is_live(v1b));

    /* after the module's death: the destructor ran once, handles are stale */
    nnm_module_release(m);
    CU_ASSERT_EQUAL(c.freed, 1);
    CU_ASSERT_FALSE(nnm_hook_handle_is_live(v1));
    CU_ASSERT_FALSE(nnm_hook_handle_is_live(v2));
    CU_ASSERT_EQUAL(nnm_hook_handle_remove(v1), NNM_E_STATE);
    CU_ASSERT_EQUAL(nnm_hook_handle_remove(v2), NNM_E_STATE);
    nnm_hook_remove(v1);
    nnm_hook_remove(v2);
    CU_ASSERT_EQUAL(c.freed, 1);
    nnm_hook_handle_free(v2); /* the caller's */
    nnm_hook_handle_free(v1); /* a context-owned one may be freed early too */
    nnm_hook_handle_free(NULL);
    CU_ASSERT_EQUAL(nnm_hook_handle_remove(NULL), NNM_E_INVALID);
    LEAK_CHECK_END();
}

/* A _v2 handle outlives its context: a finalizer may run after everything
 * else is gone. The global hook's destructor runs at nnm_ctx_free. */
static void test_handles_outlive_context(void) {
    nnm_ctx *ctx = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_ctx_new(NULL, &ctx), NNM_OK);
    closure c = {'g', 0, 0, 0, NULL}, d = {'h', 0, 0, 0, NULL};
    nnm_hook_options o = opts_of(0, closure_free);
    nnm_hook_handle *hg = NULL, *hb = NULL;
    CU_ASSERT_EQUAL(nnm_ctx_register_forward_hook_v2(ctx, post_log, &c, &o, &hg), NNM_OK);
    CU_ASSERT_EQUAL(nnm_ctx_register_full_backward_hook(ctx, bw_log, &d, &o, &hb), NNM_OK);
    /* no handle asked for: none made, the hook still registered */
    CU_ASSERT_EQUAL(nnm_ctx_register_forward_pre_hook_v2(ctx, pre_log, &d, NULL, NULL), NNM_OK);
    nnm_ctx_free(ctx);
    CU_ASSERT_EQUAL(c.freed, 1);
    CU_ASSERT_EQUAL(d.freed, 1);
    CU_ASSERT_EQUAL(nnm_hook_handle_remove(hg), NNM_E_STATE);
    CU_ASSERT_FALSE(nnm_hook_handle_is_live(hb));
    nnm_hook_handle_free(hg);
    nnm_hook_handle_free(hb);
}

/* Freeing a handle never removes its hook (dropping PyTorch's
 * RemovableHandle does not either); removal runs the destructor once. */
static void test_handle_free_keeps_hook(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *m = mk_hk(0);
    nnm_tensor *x = vec2(1, 2, 0), *y = NULL;
    closure c = {'k', 0, 0, 0, NULL};
    nnm_hook_options o = opts_of(0, closure_free);
    nnm_hook_handle *h = NULL, *h2 = NULL;
    CU_ASSERT_EQUAL(nnm_module_register_forward_pre_hook_v2(m, pre_log, "k", NULL, &h), NNM_OK);
    nnm_hook_handle_free(h);
    reset();
    CU_ASSERT_EQUAL(nnm_module_call(m, &x, 1, &y, 1), NNM_OK);
    nnm_tensor_release(y);
    CU_ASSERT_STRING_EQUAL(g_order, "k");
    /* removal: the destructor runs at once, exactly once */
    CU_ASSERT_EQUAL(nnm_module_register_forward_pre_hook_v2(m, pre_log, &c, &o, &h2), NNM_OK);
    CU_ASSERT_EQUAL(nnm_hook_handle_remove(h2), NNM_OK);
    CU_ASSERT_EQUAL(c.freed, 1);
    CU_ASSERT_EQUAL(nnm_hook_handle_remove(h2), NNM_E_STATE);
    CU_ASSERT_EQUAL(c.freed, 1);
    nnm_hook_handle_free(h2);
    nnm_tensor_release(x);
    nnm_module_release(m);
    LEAK_CHECK_END();
}

/* A hook that removes itself: its destructor runs after it returned. */
static nnm_status pre_remove_self(void *user, nnm_module *m, nnm_tensor **in, uint32_t n_in) {
    (void)m, (void)in, (void)n_in;
    closure *c = user;
    c->running = 1;
    mark(c->tag);
    CU_ASSERT_EQUAL(nnm_hook_handle_remove(c->self), NNM_OK);
    c->running = 0;
    return NNM_OK;
}

static void test_user_free_after_own_removal(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *m = mk_hk(0);
    nnm_tensor *x = vec2(1, 2, 0), *y = NULL;
    closure c = {'s', 0, 0, 0, NULL};
    nnm_hook_options o = opts_of(0, closure_free);
    CU_ASSERT_EQUAL(nnm_module_register_forward_pre_hook_v2(m, pre_remove_self, &c, &o, &c.self), NNM_OK);
    reset();
    for (int i = 0; i < 2; i++) {
        CU_ASSERT_EQUAL(nnm_module_call(m, &x, 1, &y, 1), NNM_OK);
        nnm_tensor_release(y);
    }
    CU_ASSERT_STRING_EQUAL(g_order, "s");
    CU_ASSERT_EQUAL(c.freed, 1);
    CU_ASSERT_EQUAL(c.freed_while_running, 0);
    nnm_hook_handle_free(c.self);
    /* registration that fails never takes `user`: no destructor call */
    nnm_hook_options bad = opts_of(NNM_HOOK_ALWAYS_CALL, closure_free);
    nnm_hook_handle *h = (nnm_hook_handle *)&c; /* set to NULL on failure */
    CHECK_ERROR(nnm_module_register_forward_pre_hook_v2(m, pre_log, &c, &bad, &h), NNM_E_INVALID,
                "forward hooks only");
    CU_ASSERT_PTR_NULL(h);
    bad = opts_of(0x100, closure_free);
    CHECK_ERROR(nnm_module_register_forward_hook_v2(m, post_log, &c, &bad, NULL), NNM_E_INVALID,
                "unknown hook flags");
    bad = opts_of(0, closure_free);
    bad.struct_size = 2;
    CU_ASSERT_EQUAL(nnm_module_register_forward_hook_v2(m, post_log, &c, &bad, NULL), NNM_E_INVALID);
    CU_ASSERT_EQUAL(nnm_module_register_forward_hook_v2(m, NULL, &c, NULL, NULL), NNM_E_INVALID);
    CU_ASSERT_EQUAL(nnm_module_register_forward_hook_v2(NULL, post_log, &c, NULL, NULL), NNM_E_INVALID);
    CU_ASSERT_EQUAL(nnm_ctx_register_full_backward_hook(NULL, bw_log, &c, NULL, NULL), NNM_E_INVALID);
    CU_ASSERT_EQUAL(c.freed, 1);
    nnm_tensor_release(x);
    nnm_module_release(m);
    LEAK_CHECK_END();
}

/* ---- order: prepend ---------------------------------------------------------- */

/* PyTorch: register_forward_pre_hook / register_forward_hook /
 * register_full_backward_pre_hook / register_full_backward_hook with
 * prepend=True run before the hooks already registered; global hooks run
 * before the module's (nnmod offers prepend on the global lists too). */
static void test_prepend_every_kind(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *m = mk_hk(0);
    nnm_tensor *x = vec2(1, 2, 1);
    nnm_hook_options pre = opts_of(NNM_HOOK_PREPEND, NULL);
    nnm_hook_handle *h[16] = {0};
    int k = 0;
    CU_ASSERT_EQUAL(nnm_module_register_forward_pre_hook_v2(m, pre_log, "b", NULL, &h[k++]), NNM_OK);
    CU_ASSERT_EQUAL(nnm_module_register_forward_pre_hook_v2(m, pre_log, "a", &pre, &h[k++]), NNM_OK);
    CU_ASSERT_EQUAL(nnm_ctx_register_forward_pre_hook_v2(g_ctx, pre_log, "B", NULL, &h[k++]), NNM_OK);
    CU_ASSERT_EQUAL(nnm_ctx_register_forward_pre_hook_v2(g_ctx, pre_log, "A", &pre, &h[k++]), NNM_OK);
    CU_ASSERT_EQUAL(nnm_module_register_forward_hook_v2(m, post_log, "d", NULL, &h[k++]), NNM_OK);
    CU_ASSERT_EQUAL(nnm_module_register_forward_hook_v2(m, post_log, "c", &pre, &h[k++]), NNM_OK);
    CU_ASSERT_EQUAL(nnm_ctx_register_forward_hook_v2(g_ctx, post_log, "D", NULL, &h[k++]), NNM_OK);
    CU_ASSERT_EQUAL(nnm_ctx_register_forward_hook_v2(g_ctx, post_log, "C", &pre, &h[k++]), NNM_OK);
    CU_ASSERT_EQUAL(nnm_module_register_full_backward_pre_hook_v2(m, bwpre_log, "f", NULL, &h[k++]), NNM_OK);
    CU_ASSERT_EQUAL(nnm_module_register_full_backward_pre_hook_v2(m, bwpre_log, "e", &pre, &h[k++]), NNM_OK);
    CU_ASSERT_EQUAL(nnm_ctx_register_full_backward_pre_hook(g_ctx, bwpre_log, "F", NULL, &h[k++]), NNM_OK);
    CU_ASSERT_EQUAL(nnm_ctx_register_full_backward_pre_hook(g_ctx, bwpre_log, "E", &pre, &h[k++]), NNM_OK);
    CU_ASSERT_EQUAL(nnm_module_register_full_backward_hook_v2(m, bw_log, "h", NULL, &h[k++]), NNM_OK);
    CU_ASSERT_EQUAL(nnm_module_register_full_backward_hook_v2(m, bw_log, "g", &pre, &h[k++]), NNM_OK);
    CU_ASSERT_EQUAL(nnm_ctx_register_full_backward_hook(g_ctx, bw_log, "H", NULL, &h[k++]), NNM_OK);
    CU_ASSERT_EQUAL(nnm_ctx_register_full_backward_hook(g_ctx, bw_log, "G", &pre, &h[k++]), NNM_OK);
    reset();
    CHECK_STATUS(call_backward(m, &x, 1), NNM_OK);
    CU_ASSERT_STRING_EQUAL(g_order, "ABabCDcdEFefGHgh");
    for (int i = 0; i < k; i++) {
        CU_ASSERT_EQUAL(nnm_hook_handle_remove(h[i]), NNM_OK);
        nnm_hook_handle_free(h[i]);
    }
    /* all gone: the call takes the fast path again and no hook runs */
    reset();
    CHECK_STATUS(call_backward(m, &x, 1), NNM_OK);
    CU_ASSERT_STRING_EQUAL(g_order, "");
    nnm_tensor_release(x);
    nnm_module_release(m);
    LEAK_CHECK_END();
}

/* ---- global backward hooks ------------------------------------------------------ */

/* PyTorch: nn.modules.module.register_module_full_backward_hook and
 * register_module_full_backward_pre_hook fire for every module, before the
 * module's own hooks; grad values are the same the module's hooks see. */
static float g_gin0;
static nnm_status bw_grab(void *user, nnm_module *m, nnm_tensor **gin, uint32_t n_in,
                          nnm_tensor *const *gout, uint32_t n_out) {
    (void)gout, (void)n_out;
    mark(*(const char *)user);
    float v[2];
    if (n_in && gin[0] && nnm_tensor_to_f32(gin[0], v, 2) == NNM_OK) g_gin0 = v[0];
    if (strcmp(nnm_module_type(m), "hk") != 0) mark('?');
    return NNM_OK;
}

static void test_global_backward_hooks(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *kids[2] = {mk_hk(0), mk_hk(0)};
    nnm_module *seq = mk_seq(kids, 2);
    CU_ASSERT_PTR_NOT_NULL_FATAL(seq);
    nnm_tensor *x = vec2(1, 2, 1);
    nnm_hook_handle *hg = NULL, *hp = NULL, *hm = NULL;
    CU_ASSERT_EQUAL(nnm_ctx_register_full_backward_hook(g_ctx, bw_grab, "G", NULL, &hg), NNM_OK);
    CU_ASSERT_EQUAL(nnm_ctx_register_full_backward_pre_hook(g_ctx, bwpre_log, "P", NULL, &hp), NNM_OK);
    CU_ASSERT_EQUAL(nnm_module_register_full_backward_hook_v2(nnm_module_child(seq, 0), bw_log, "m",
                                                              NULL, &hm), NNM_OK);
    reset();
    g_gin0 = 0;
    nnm_tensor *y = NULL, *l = NULL;
    /* the sequential itself is a module too: hooks fire for it (type
     * "sequential" marks '?'): seq's node is outermost, so it runs first */
    CU_ASSERT_EQUAL_FATAL(nnm_module_call(seq, &x, 1, &y, 1), NNM_OK);
    CU_ASSERT_EQUAL_FATAL(nnm_op_reduce(g_ctx, NNM_REDUCE_SUM, y, NULL, 0, 0, &l), NNM_OK);
    CHECK_STATUS(nnm_backward(l, NULL, 0), NNM_OK);
    /* pre-hooks at each output node, hooks at each input node, outermost
     * first: seq P, hk1 P G, hk0 P G m, seq G (a "sequential": '?') */
    CU_ASSERT_STRING_EQUAL(g_order, "PPGPGmG?");
    CU_ASSERT_DOUBLE_EQUAL(g_gin0, 4.0, 1e-6); /* d(sum(2 * 2x))/dx */
    nnm_tensor_release(l);
    nnm_tensor_release(y);
    nnm_hook_handle_remove(hg);
    nnm_hook_handle_remove(hp);
    nnm_hook_handle_remove(hm);
    nnm_hook_handle_free(hg);
    nnm_hook_handle_free(hp);
    nnm_hook_handle_free(hm);
    nnm_tensor_release(x);
    nnm_module_release(seq);
    LEAK_CHECK_END();
}

/* ---- full backward hook: one grad_in per input ------------------------------------ */

static uint32_t g_seen_n_in;
static int g_seen_null[4];
static nnm_status bw_count(void *user, nnm_module *m, nnm_tensor **gin, uint32_t n_in,
                           nnm_tensor *const *gout, uint32_t n_out) {
    (void)user, (void)m, (void)gout, (void)n_out;
    g_seen_n_in = n_in;
    for (uint32_t i = 0; i < n_in && i < 4; i++) g_seen_null[i] = gin[i] == NULL;
    return NNM_OK;
}

/* Issue 9 §5. PyTorch: a full backward hook on a module called with n tensor
 * inputs gets grad_input of length n: all None when no input needs a
 * gradient (then only the parameters need grads), and when one does, zeros
 * for each that does not (torch 1.13 checked: BackwardHookFunction marks
 * them non-differentiable and materializes their gradients). The module
 * here takes any number of inputs (like add and graph). */
static void test_grad_in_one_per_input(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *m = mk_hk(0);
    nnm_hook_handle *h = NULL;
    CU_ASSERT_EQUAL(nnm_module_register_full_backward_hook_v2(m, bw_count, NULL, NULL, &h), NNM_OK);
    nnm_tensor *in[3] = {vec2(1, 2, 0), vec2(3, 4, 0), vec2(5, 6, 0)};
    /* no input needs grad (w does): three NULLs */
    g_seen_n_in = 99;
    CHECK_STATUS(call_backward(m, in, 3), NNM_OK);
    CU_ASSERT_EQUAL(g_seen_n_in, 3);
    CU_ASSERT_TRUE(g_seen_null[0] && g_seen_null[1] && g_seen_null[2]);
    /* the middle one needs grad: zeros, grad, zeros */
    nnm_tensor_set_requires_grad(in[1], 1);
    g_seen_n_in = 99;
    CHECK_STATUS(call_backward(m, in, 3), NNM_OK);
    CU_ASSERT_EQUAL(g_seen_n_in, 3);
    CU_ASSERT_TRUE(!g_seen_null[0] && !g_seen_null[1] && !g_seen_null[2]);
    nnm_module_zero_grad(m);
    nnm_hook_handle_free(h);
    for (int i = 0; i < 3; i++) nnm_tensor_release(in[i]);
    nnm_module_release(m);
    LEAK_CHECK_END();
}

/* PyTorch raises "Backward hook for Modules where no input requires gradient
 * should always return None or None for all gradients." */
static nnm_status bw_put(void *user, nnm_module *m, nnm_tensor **gin, uint32_t n_in,
                         nnm_tensor *const *gout, uint32_t n_out) {
    (void)user, (void)m, (void)n_in, (void)n_out;
    nnm_tensor_retain(gout[0]);
    gin[0] = gout[0];
    return NNM_OK;
}

static void test_grad_in_none_must_stay_none(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *m = mk_hk(0);
    nnm_tensor *x = vec2(1, 2, 0);
    CU_ASSERT_EQUAL(nnm_module_register_full_backward_hook_v2(m, bw_put, NULL, NULL, NULL), NNM_OK);
    CHECK_ERROR(call_backward(m, &x, 1), NNM_E_HOOK, "no input requires gradient");
    nnm_module_zero_grad(m);
    nnm_tensor_release(x);
    nnm_module_release(m);
    LEAK_CHECK_END();
}

/* ---- removal during a call ---------------------------------------------------------- */

static nnm_hook_handle *g_victim;
static nnm_status bw_remove_other(void *user, nnm_module *m, nnm_tensor **gin, uint32_t n_in,
                                  nnm_tensor *const *gout, uint32_t n_out) {
    (void)user, (void)m, (void)gin, (void)n_in, (void)gout, (void)n_out;
    mark('r');
    nnm_hook_handle_remove(g_victim);
    return NNM_OK;
}

static nnm_status post_remove_other(void *user, nnm_module *m, nnm_tensor *const *in, uint32_t n_in,
                                    nnm_tensor **out, uint32_t n_out) {
    (void)user, (void)m, (void)in, (void)n_in, (void)out, (void)n_out;
    mark('r');
    nnm_hook_handle_remove(g_victim);
    return NNM_OK;
}

/* Issue 9 §5. PyTorch iterates over a snapshot of the hook dicts
 * (`for hook in (*_global_forward_hooks.values(), *self._forward_hooks.values())`),
 * so a hook removed by an earlier one still runs in that call, and never after;
 * the same for backward hooks. Its destructor runs once the call is done. */
static void test_removed_during_call_still_runs(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *m = mk_hk(0);
    nnm_tensor *x = vec2(1, 2, 1), *y = NULL;
    closure c = {'v', 0, 0, 0, NULL};
    nnm_hook_options o = opts_of(0, closure_free);
    nnm_hook_handle *hr = NULL;
    CU_ASSERT_EQUAL(nnm_module_register_forward_hook_v2(m, post_remove_other, NULL, NULL, &hr), NNM_OK);
    CU_ASSERT_EQUAL(nnm_module_register_forward_hook_v2(m, post_log, &c, &o, &g_victim), NNM_OK);
    reset();
    CU_ASSERT_EQUAL(nnm_module_call(m, &x, 1, &y, 1), NNM_OK);
    nnm_tensor_release(y);
    CU_ASSERT_STRING_EQUAL(g_order, "rv");
    CU_ASSERT_EQUAL(c.freed, 1);
    CU_ASSERT_EQUAL(nnm_module_call(m, &x, 1, &y, 1), NNM_OK);
    nnm_tensor_release(y);
    CU_ASSERT_STRING_EQUAL(g_order, "rvr");
    nnm_hook_handle_remove(hr);
    nnm_hook_handle_free(hr);
    nnm_hook_handle_free(g_victim);

    /* one snapshot of global and module hooks: a global hook removing a
     * module hook does not stop it in that call either */
    closure e = {'u', 0, 0, 0, NULL};
    CU_ASSERT_EQUAL(nnm_ctx_register_forward_hook_v2(g_ctx, post_remove_other, NULL, NULL, &hr), NNM_OK);
    CU_ASSERT_EQUAL(nnm_module_register_forward_hook_v2(m, post_log, &e, &o, &g_victim), NNM_OK);
    reset();
    for (int i = 0; i < 2; i++) {
        CU_ASSERT_EQUAL(nnm_module_call(m, &x, 1, &y, 1), NNM_OK);
        nnm_tensor_release(y);
    }
    CU_ASSERT_STRING_EQUAL(g_order, "rur");
    CU_ASSERT_EQUAL(e.freed, 1);
    nnm_hook_handle_remove(hr);
    nnm_hook_handle_free(hr);
    nnm_hook_handle_free(g_victim);

    /* backward hooks: the global one removes the module's */
    closure d = {'w', 0, 0, 0, NULL};
    CU_ASSERT_EQUAL(nnm_ctx_register_full_backward_hook(g_ctx, bw_remove_other, NULL, NULL, &hr), NNM_OK);
    CU_ASSERT_EQUAL(nnm_module_register_full_backward_hook_v2(m, bw_log, &d, &o, &g_victim), NNM_OK);
    reset();
    CHECK_STATUS(call_backward(m, &x, 1), NNM_OK);
    CHECK_STATUS(call_backward(m, &x, 1), NNM_OK);
    CU_ASSERT_STRING_EQUAL(g_order, "rwr");
    CU_ASSERT_EQUAL(d.freed, 1);
    nnm_hook_handle_remove(hr);
    nnm_hook_handle_free(hr);
    nnm_hook_handle_free(g_victim);
    nnm_module_zero_grad(m);
    nnm_tensor_release(x);
    nnm_module_release(m);
    LEAK_CHECK_END();
}

/* ---- always_call ------------------------------------------------------------------------ */

static int g_always_null_out;
static nnm_status post_always(void *user, nnm_module *m, nnm_tensor *const *in, uint32_t n_in,
                              nnm_tensor **out, uint32_t n_out) {
    (void)in, (void)n_in;
    mark(*(const char *)user);
    if (n_out && out[0]) return NNM_OK;
    g_always_null_out++;
    /* what it says and returns is ignored on the failure path */
    return nnm_ctx_set_error(nnm_module_ctx(m), NNM_E_IO, "always hook complains");
}

static nnm_status post_fail(void *user, nnm_module *m, nnm_tensor *const *in, uint32_t n_in,
                            nnm_tensor **out, uint32_t n_out) {
    (void)in, (void)n_in, (void)out, (void)n_out;
    mark(*(const char *)user);
    return nnm_ctx_set_error(nnm_module_ctx(m), NNM_E_HOOK, "forward hook refused");
}

static nnm_status pre_fail(void *user, nnm_module *m, nnm_tensor **in, uint32_t n_in) {
    (void)in, (void)n_in;
    mark(*(const char *)user);
    return nnm_ctx_set_error(nnm_module_ctx(m), NNM_E_HOOK, "pre-hook refused");
}

/* PyTorch 2.x register_forward_hook(..., always_call=True) and
 * register_module_forward_hook(..., always_call=True): when forward (or a
 * pre-hook, or a forward hook) raises, the always_call hooks that did not
 * run yet are called with result None, their own errors are silenced, and
 * the original exception propagates. Hooks without the flag do not run. */
static void test_always_call(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *bad = mk_hk(1), *good = mk_hk(0);
    nnm_tensor *x = vec2(1, 2, 0), *y = (nnm_tensor *)&g_n;
    nnm_hook_options always = opts_of(NNM_HOOK_ALWAYS_CALL, NULL);
    nnm_hook_handle *h[6] = {0};

    /* forward fails: the always hooks run (global first), the plain one not */
    CU_ASSERT_EQUAL(nnm_module_register_forward_hook_v2(bad, post_log, "p", NULL, &h[0]), NNM_OK);
    CU_ASSERT_EQUAL(nnm_module_register_forward_hook_v2(bad, post_always, "a", &always, &h[1]), NNM_OK);
    CU_ASSERT_EQUAL(nnm_ctx_register_forward_hook_v2(g_ctx, post_always, "G", &always, &h[2]), NNM_OK);
    reset();
    g_always_null_out = 0;
    CHECK_ERROR(nnm_module_call(bad, &x, 1, &y, 1), NNM_E_SHAPE, "hk failed on purpose");
    CU_ASSERT_PTR_NULL(y);
    CU_ASSERT_STRING_EQUAL(g_order, "Ga");
    CU_ASSERT_EQUAL(g_always_null_out, 2);
    CU_ASSERT_PTR_NULL(strstr(nnm_ctx_errmsg(g_ctx), "complains"));

    /* a pre-hook fails: the same */
    nnm_hook_handle *hp = NULL;
    CU_ASSERT_EQUAL(nnm_module_register_forward_pre_hook_v2(good, pre_fail, "X", NULL, &hp), NNM_OK);
    CU_ASSERT_EQUAL(nnm_module_register_forward_hook_v2(good, post_always, "b", &always, &h[3]), NNM_OK);
    reset();
    CHECK_ERROR(nnm_module_call(good, &x, 1, &y, 1), NNM_E_HOOK, "pre-hook refused");
    CU_ASSERT_STRING_EQUAL(g_order, "XGb");
    nnm_hook_handle_remove(hp);
    nnm_hook_handle_free(hp);

    /* a forward hook fails: always hooks that ran already do not run again,
     * the ones after it do; on success they run once, as plain hooks */
    CU_ASSERT_EQUAL(nnm_module_register_forward_hook_v2(good, post_fail, "F", NULL, &h[4]), NNM_OK);
    CU_ASSERT_EQUAL(nnm_module_register_forward_hook_v2(good, post_always, "c", &always, &h[5]), NNM_OK);
    reset();
    g_always_null_out = 0;
    CHECK_ERROR(nnm_module_call(good, &x, 1, &y, 1), NNM_E_HOOK, "forward hook refused");
    CU_ASSERT_PTR_NULL(y);
    CU_ASSERT_STRING_EQUAL(g_order, "GbFc");
    CU_ASSERT_EQUAL(g_always_null_out, 0); /* forward had produced the output */
    /* success: each runs once, in order, as a plain hook */
    nnm_hook_handle_remove(h[4]);
    reset();
    CU_ASSERT_EQUAL(nnm_module_call(good, &x, 1, &y, 1), NNM_OK);
    CU_ASSERT_STRING_EQUAL(g_order, "Gbc");
    nnm_tensor_release(y);
    for (int i = 0; i < 6; i++) {
        nnm_hook_handle_remove(h[i]);
        nnm_hook_handle_free(h[i]);
    }
    reset();
    CU_ASSERT_EQUAL(nnm_module_call(good, &x, 1, &y, 1), NNM_OK);
    CU_ASSERT_STRING_EQUAL(g_order, "");
    nnm_tensor_release(y);
    nnm_tensor_release(x);
    nnm_module_release(bad);
    nnm_module_release(good);
    LEAK_CHECK_END();
}

int main(void) {
    CU_pSuite s = tu_suite("hooks", suite_init, ag_suite_clean);
    if (s == NULL) return 1;
    CU_add_test(s, "stale handles: removed twice, after the module died", test_handles_stale);
    CU_add_test(s, "a _v2 handle outlives its context", test_handles_outlive_context);
    CU_add_test(s, "freeing a handle keeps the hook; removal runs user_free once",
                test_handle_free_keeps_hook);
    CU_add_test(s, "user_free runs after a hook removed itself; not on failure",
                test_user_free_after_own_removal);
    CU_add_test(s, "prepend for every kind, global before module", test_prepend_every_kind);
    CU_add_test(s, "global full backward (pre-)hooks", test_global_backward_hooks);
    CU_add_test(s, "full backward hook: one grad_in per input", test_grad_in_one_per_input);
    CU_add_test(s, "full backward hook: no input grad, none may be put", test_grad_in_none_must_stay_none);
    CU_add_test(s, "a hook removed during a call still runs in it (PyTorch)",
                test_removed_during_call_still_runs);
    CU_add_test(s, "always_call forward hooks", test_always_call);
    return tu_run();
}
