/* tests/runtime/test_call.c - the central call path: hook order, replacement,
 * removal, error propagation with module paths, modes, containers, profiler,
 * input checks, and that no forward runs outside the wrapper. */
#include "test_util.h"

#include <pthread.h>

#include "runtime/probe_layer.h"

static nnm_ctx *ctx;

static int suite_init(void) {
    if (tu_ctx_new(&ctx)) return 1;
    return nnm_plugin_register_static(ctx, &probe_desc, "test_call") ? 1 : 0;
}

static int suite_fini(void) { return tu_ctx_free(&ctx); }

static nnm_module *probe(double scale) {
    nnm_config *cfg;
    nnm_config_new(&cfg);
    nnm_config_set_float(cfg, "scale", scale);
    nnm_module *m = tu_module(ctx, "probe", cfg);
    nnm_config_free(cfg);
    return m;
}

static nnm_tensor *vec(int n, float v) {
    int64_t shape[2] = {1, n};
    float buf[64];
    for (int i = 0; i < n; i++) buf[i] = v;
    nnm_tensor *t = NULL;
    nnm_tensor_from_f32(ctx, 2, shape, buf, &t);
    return t;
}

static float first(nnm_tensor *t) {
    float v[64];
    CU_ASSERT_FATAL(nnm_tensor_numel(t) <= 64);
    CU_ASSERT_EQUAL_FATAL(nnm_tensor_to_f32(t, v, 64), NNM_OK);
    return v[0];
}

/* ---- hooks that log ----------------------------------------------------- */

static nnm_status pre_log(void *user, nnm_module *m, nnm_tensor **in, uint32_t n_in) {
    (void)m, (void)in, (void)n_in;
    probe_mark(*(const char *)user);
    return NNM_OK;
}

static nnm_status post_log(void *user, nnm_module *m, nnm_tensor *const *in, uint32_t n_in,
                           nnm_tensor **out, uint32_t n_out) {
    (void)m, (void)in, (void)n_in, (void)out, (void)n_out;
    probe_mark(*(const char *)user);
    return NNM_OK;
}

static void test_hook_order(void) {
    probe_reset();
    nnm_module *m = probe(1.0);
    nnm_hook_handle *h[8];
    CU_ASSERT_EQUAL(nnm_module_register_forward_pre_hook(m, pre_log, "c", &h[0]), NNM_OK);
    CU_ASSERT_EQUAL(nnm_ctx_register_forward_pre_hook(ctx, pre_log, "a", &h[1]), NNM_OK);
    CU_ASSERT_EQUAL(nnm_module_register_forward_pre_hook(m, pre_log, "d", &h[2]), NNM_OK);
    CU_ASSERT_EQUAL(nnm_ctx_register_forward_pre_hook(ctx, pre_log, "b", &h[3]), NNM_OK);
    CU_ASSERT_EQUAL(nnm_module_register_forward_hook(m, post_log, "y", &h[4]), NNM_OK);
    CU_ASSERT_EQUAL(nnm_ctx_register_forward_hook(ctx, post_log, "w", &h[5]), NNM_OK);
    CU_ASSERT_EQUAL(nnm_module_register_forward_hook(m, post_log, "z", &h[6]), NNM_OK);
    CU_ASSERT_EQUAL(nnm_ctx_register_forward_hook(ctx, post_log, "x", &h[7]), NNM_OK);
    nnm_tensor *x = vec(3, 1.0f), *y = NULL;
    CU_ASSERT_EQUAL(nnm_module_call(m, &x, 1, &y, 1), NNM_OK);
    /* global pre, module pre, forward, global post, module post; each in
     * registration order */
    CU_ASSERT_STRING_EQUAL(g_probe.order, "abcdFwxyz");
    for (int i = 0; i < 8; i++) nnm_hook_remove(h[i]);
    nnm_tensor_release(y);
    nnm_tensor_release(x);
    nnm_module_release(m);
}

static nnm_status pre_double(void *user, nnm_module *m, nnm_tensor **in, uint32_t n_in) {
    (void)user, (void)n_in;
    nnm_tensor *twice = NULL;
    float v[64];
    int64_t n = nnm_tensor_numel(in[0]);
    nnm_tensor_to_f32(in[0], v, 64);
    for (int64_t i = 0; i < n; i++) v[i] *= 2;
    nnm_status st = nnm_tensor_from_f32(nnm_module_ctx(m), nnm_tensor_desc_get(in[0])->ndim,
                                        nnm_tensor_desc_get(in[0])->shape, v, &twice);
    if (st) return st;
    in[0] = twice; /* a new reference: the runtime releases what it replaces */
    return NNM_OK;
}

static nnm_status post_add_one(void *user, nnm_module *m, nnm_tensor *const *in, uint32_t n_in,
                               nnm_tensor **out, uint32_t n_out) {
    (void)user, (void)in, (void)n_in, (void)n_out;
    float v[64];
    int64_t n = nnm_tensor_numel(out[0]);
    nnm_tensor_to_f32(out[0], v, 64);
    for (int64_t i = 0; i < n; i++) v[i] += 1;
    nnm_tensor *t = NULL;
    nnm_status st = nnm_tensor_from_f32(nnm_module_ctx(m), nnm_tensor_desc_get(out[0])->ndim,
                                        nnm_tensor_desc_get(out[0])->shape, v, &t);
    if (st) return st;
    out[0] = t;
    return NNM_OK;
}

static void test_hook_replacement(void) {
    probe_reset();
    nnm_module *m = probe(3.0);
    nnm_tensor *x = vec(4, 1.0f), *y = NULL;
    nnm_hook_handle *h1, *h2, *h3;
    /* two pre-hooks chain: 1 -> 2 -> 4; then 3*4 = 12; then +1 = 13 */
    nnm_module_register_forward_pre_hook(m, pre_double, NULL, &h1);
    nnm_module_register_forward_pre_hook(m, pre_double, NULL, &h2);
    nnm_module_register_forward_hook(m, post_add_one, NULL, &h3);
    CU_ASSERT_EQUAL(nnm_module_call(m, &x, 1, &y, 1), NNM_OK);
    CU_ASSERT_DOUBLE_EQUAL(first(y), 13.0, 1e-6);
    CU_ASSERT_DOUBLE_EQUAL(first(x), 1.0, 1e-6); /* the caller's input is untouched */
    nnm_tensor_release(y);
    nnm_hook_remove(h2);
    CU_ASSERT_EQUAL(nnm_module_call(m, &x, 1, &y, 1), NNM_OK);
    CU_ASSERT_DOUBLE_EQUAL(first(y), 7.0, 1e-6);
    nnm_tensor_release(y);
    nnm_hook_remove(h1);
    nnm_hook_remove(h3);
    nnm_hook_remove(NULL); /* no-op */
    nnm_tensor_release(x);
    nnm_module_release(m);
}

static nnm_hook_handle *g_self_handle, *g_other_handle;

static nnm_status pre_remove_self(void *user, nnm_module *m, nnm_tensor **in, uint32_t n_in) {
    (void)user, (void)m, (void)in, (void)n_in;
    probe_mark('s');
    nnm_hook_remove(g_self_handle);
    return NNM_OK;
}

static nnm_status pre_remove_other(void *user, nnm_module *m, nnm_tensor **in, uint32_t n_in) {
    (void)user, (void)m, (void)in, (void)n_in;
    probe_mark('r');
    nnm_hook_remove(g_other_handle);
    return NNM_OK;
}

static nnm_status pre_add_hook(void *user, nnm_module *m, nnm_tensor **in, uint32_t n_in) {
    (void)user, (void)in, (void)n_in;
    probe_mark('+');
    nnm_hook_handle **slot = user;
    if (!*slot) return nnm_module_register_forward_pre_hook(m, pre_log, "n", slot);
    return NNM_OK;
}

static void test_hook_removal(void) {
    probe_reset();
    nnm_module *m = probe(1.0);
    nnm_tensor *x = vec(2, 1.0f), *y = NULL;
    /* a hook that removes itself runs once */
    nnm_module_register_forward_pre_hook(m, pre_remove_self, NULL, &g_self_handle);
    CU_ASSERT_EQUAL(nnm_module_call(m, &x, 1, &y, 1), NNM_OK);
    nnm_tensor_release(y);
    CU_ASSERT_EQUAL(nnm_module_call(m, &x, 1, &y, 1), NNM_OK);
    nnm_tensor_release(y);
    CU_ASSERT_STRING_EQUAL(g_probe.order, "sFF");

    /* a hook that removes a later one: the later one still runs in that call
     * (PyTorch iterates over a snapshot of its hook dict), never after */
    probe_reset();
    nnm_hook_handle *hr;
    nnm_module_register_forward_pre_hook(m, pre_remove_other, NULL, &hr);
    nnm_module_register_forward_pre_hook(m, pre_log, "o", &g_other_handle);
    CU_ASSERT_EQUAL(nnm_module_call(m, &x, 1, &y, 1), NNM_OK);
    nnm_tensor_release(y);
    CU_ASSERT_STRING_EQUAL(g_probe.order, "roF");
    CU_ASSERT_EQUAL(nnm_module_call(m, &x, 1, &y, 1), NNM_OK);
    nnm_tensor_release(y);
    CU_ASSERT_STRING_EQUAL(g_probe.order, "roFrF");
    nnm_hook_remove(hr);

    /* a hook added during a call waits for the next call */
    probe_reset();
    nnm_hook_handle *added = NULL, *ha;
    nnm_module_register_forward_pre_hook(m, pre_add_hook, &added, &ha);
    CU_ASSERT_EQUAL(nnm_module_call(m, &x, 1, &y, 1), NNM_OK);
    nnm_tensor_release(y);
    CU_ASSERT_EQUAL(nnm_module_call(m, &x, 1, &y, 1), NNM_OK);
    nnm_tensor_release(y);
    CU_ASSERT_STRING_EQUAL(g_probe.order, "+F+nF");
    nnm_hook_remove(ha);
    nnm_hook_remove(added);
    nnm_tensor_release(x);
    nnm_module_release(m); /* frees nothing twice: ASan checks */
}

static nnm_status pre_fail(void *user, nnm_module *m, nnm_tensor **in, uint32_t n_in) {
    (void)in, (void)n_in;
    return nnm_ctx_set_error(nnm_module_ctx(m), NNM_E_HOOK, "%s", (const char *)user);
}

static nnm_status post_fail(void *user, nnm_module *m, nnm_tensor *const *in, uint32_t n_in,
                            nnm_tensor **out, uint32_t n_out) {
    (void)in, (void)n_in, (void)out, (void)n_out;
    return nnm_ctx_set_error(nnm_module_ctx(m), NNM_E_INVALID, "%s", (const char *)user);
}

/* root: sequential { layers: sequential { 0: probe, 1: probe(fail) } } */
static nnm_module *failing_tree(nnm_module **leaf) {
    nnm_module *root = tu_module(ctx, "sequential", NULL);
    nnm_module *layers = tu_module(ctx, "sequential", NULL);
    nnm_config *cfg;
    nnm_config_new(&cfg);
    nnm_config_set_bool(cfg, "fail", 1);
    nnm_module *a = probe(1.0), *b = tu_module(ctx, "probe", cfg);
    nnm_config_free(cfg);
    nnm_module_add_child(layers, NULL, a);
    nnm_module_add_child(layers, NULL, b);
    nnm_module_add_child(root, "layers", layers);
    nnm_module_release(a);
    nnm_module_release(b);
    nnm_module_release(layers);
    *leaf = b;
    return root;
}

static void test_error_propagation(void) {
    probe_reset();
    nnm_module *leaf, *root = failing_tree(&leaf);
    nnm_tensor *x = vec(2, 1.0f), *y = (nnm_tensor *)&y;
    /* forward failure deep in the tree names the innermost module path */
    CU_ASSERT_EQUAL(nnm_module_call(root, &x, 1, &y, 1), NNM_E_PLUGIN);
    CU_ASSERT_PTR_NULL(y);
    CU_ASSERT_STRING_EQUAL(nnm_ctx_errmsg(ctx), "layers.1 (probe): probe failed on purpose");

    /* a failing pre-hook stops the call before forward */
    probe_reset();
    nnm_module *ok = nnm_module_get(root, "layers.0");
    CU_ASSERT_PTR_NOT_NULL_FATAL(ok);
    nnm_hook_handle *h;
    nnm_module_register_forward_pre_hook(ok, pre_fail, "bad input", &h);
    CU_ASSERT_EQUAL(nnm_module_call(ok, &x, 1, &y, 1), NNM_E_HOOK);
    CU_ASSERT_PTR_NULL(y);
    CU_ASSERT_EQUAL(g_probe.forwards, 0);
    CU_ASSERT_STRING_EQUAL(nnm_ctx_errmsg(ctx), "layers.0 (probe): forward pre-hook failed: bad input");
    nnm_hook_remove(h);

    /* a failing forward hook: outputs are released and NULL */
    nnm_module_register_forward_hook(ok, post_fail, "bad output", &h);
    CU_ASSERT_EQUAL(nnm_module_call(ok, &x, 1, &y, 1), NNM_E_INVALID);
    CU_ASSERT_PTR_NULL(y);
    CU_ASSERT_STRING_EQUAL(nnm_ctx_errmsg(ctx), "layers.0 (probe): forward hook failed: bad output");
    nnm_hook_remove(h);

    /* a global hook failing on a child names the child */
    nnm_module_release(root);
    nnm_tensor_release(x);
}

static void test_input_checks(void) {
    /* the exact message of the issue: layers.3.fc1: expected input [*, 784] */
    nnm_module *root = tu_module(ctx, "sequential", NULL);
    nnm_module *layers = tu_module(ctx, "sequential", NULL);
    for (int i = 0; i < 3; i++) {
        nnm_module *p = probe(1.0);
        nnm_module_add_child(layers, NULL, p);
        nnm_module_release(p);
    }
    nnm_module *block = tu_module(ctx, "sequential", NULL);
    nnm_module *fc1 = tu_linear(ctx, "linear", 784, 10, -1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(fc1);
    CU_ASSERT_EQUAL(nnm_module_add_child(block, "fc1", fc1), NNM_OK);
    CU_ASSERT_EQUAL(nnm_module_add_child(layers, NULL, block), NNM_OK);
    CU_ASSERT_EQUAL(nnm_module_add_child(root, "layers", layers), NNM_OK);
    nnm_module_release(fc1);
    nnm_module_release(block);
    nnm_module_release(layers);

    nnm_tensor *x = vec(10, 1.0f), *y = NULL;
    CU_ASSERT_EQUAL(nnm_module_call(root, &x, 1, &y, 1), NNM_E_SHAPE);
    CU_ASSERT_STRING_EQUAL(nnm_ctx_errmsg(ctx),
                           "layers.3.fc1 (linear): expected input [*, 784], got [1, 10]");
    /* arity */
    nnm_tensor *two[2] = {x, x};
    CU_ASSERT_EQUAL(nnm_module_call(root, two, 2, &y, 1), NNM_E_SHAPE);
    CU_ASSERT_STRING_EQUAL(nnm_ctx_errmsg(ctx), "<root> (sequential): expected 1 input, got 2");
    CU_ASSERT_EQUAL(nnm_module_call(root, &x, 1, two, 2), NNM_E_SHAPE);
    /* NULL input, NULL module */
    nnm_tensor *null_in = NULL;
    CU_ASSERT_EQUAL(nnm_module_call(root, &null_in, 1, &y, 1), NNM_E_INVALID);
    CU_ASSERT_PTR_NOT_NULL(strstr(nnm_ctx_errmsg(ctx), "input 0 is NULL"));
    CU_ASSERT_EQUAL(nnm_module_call(NULL, &x, 1, &y, 1), NNM_E_INVALID);
    CU_ASSERT_EQUAL(nnm_module_call(root, NULL, 1, &y, 1), NNM_E_INVALID);
    /* spec with leading dims: [2, 3, 784] passes the check */
    nnm_module *fc = nnm_module_get(root, "layers.3.fc1");
    CU_ASSERT_PTR_NOT_NULL_FATAL(fc);
    int64_t shape[3] = {2, 3, 784};
    nnm_tensor *x3 = NULL;
    CU_ASSERT_EQUAL(nnm_tensor_from_f32(ctx, 3, shape, NULL, &x3), NNM_OK);
    CU_ASSERT_EQUAL(nnm_module_call(fc, &x3, 1, &y, 1), NNM_OK);
    CU_ASSERT_EQUAL(nnm_tensor_desc_get(y)->ndim, 3);
    CU_ASSERT_EQUAL(nnm_tensor_desc_get(y)->shape[2], 10);
    nnm_tensor_release(y);
    nnm_tensor_release(x3);
    nnm_tensor_release(x);
    nnm_module_release(root);
}

static void test_modes(void) {
    probe_reset();
    nnm_module *root = tu_module(ctx, "sequential", NULL), *p = probe(1.0);
    nnm_module_add_child(root, NULL, p);
    nnm_tensor *x = vec(2, 1.0f), *y = NULL;
    CU_ASSERT_EQUAL(nnm_module_is_training(p), 1); /* modules start in training */
    CU_ASSERT_EQUAL(nnm_module_call(root, &x, 1, &y, 1), NNM_OK);
    nnm_tensor_release(y);
    CU_ASSERT_EQUAL(g_probe.last_training, 1);
    CU_ASSERT_EQUAL(g_probe.last_grad, 1);
    CU_ASSERT_EQUAL(nnm_module_train(root, 0), NNM_OK); /* eval() is recursive */
    CU_ASSERT_EQUAL(nnm_module_is_training(p), 0);
    int prev = nnm_grad_set_enabled(0);
    CU_ASSERT_EQUAL(prev, 1);
    CU_ASSERT_EQUAL(nnm_module_call(root, &x, 1, &y, 1), NNM_OK);
    nnm_tensor_release(y);
    CU_ASSERT_EQUAL(g_probe.last_training, 0);
    CU_ASSERT_EQUAL(g_probe.last_grad, 0);
    nnm_grad_set_enabled(prev);
    CU_ASSERT_EQUAL(nnm_module_train(p, 1), NNM_OK); /* a subtree alone */
    CU_ASSERT_EQUAL(nnm_module_is_training(root), 0);
    CU_ASSERT_EQUAL(nnm_module_is_training(p), 1);
    nnm_tensor_release(x);
    nnm_module_release(p);
    nnm_module_release(root);
}

static void *grad_thread(void *arg) {
    int *seen = arg;
    seen[0] = nnm_grad_is_enabled(); /* a new thread starts with grad on */
    nnm_grad_set_enabled(0);
    seen[1] = nnm_grad_is_enabled();
    return NULL;
}

static void test_grad_mode_per_thread(void) {
    int seen[2] = {-1, -1};
    pthread_t th;
    nnm_grad_set_enabled(1);
    CU_ASSERT_EQUAL_FATAL(pthread_create(&th, NULL, grad_thread, seen), 0);
    pthread_join(th, NULL);
    CU_ASSERT_EQUAL(seen[0], 1);
    CU_ASSERT_EQUAL(seen[1], 0);
    CU_ASSERT_EQUAL(nnm_grad_is_enabled(), 1); /* untouched here */
}

static int g_wrapper_entries;
static nnm_status count_entries(void *user, nnm_module *m, nnm_tensor **in, uint32_t n_in) {
    (void)user, (void)in, (void)n_in;
    if (strcmp(nnm_module_type(m), "probe") == 0) g_wrapper_entries++;
    return NNM_OK;
}

static void test_container_children_go_through_wrapper(void) {
    probe_reset();
    g_wrapper_entries = 0;
    nnm_module *root = tu_module(ctx, "sequential", NULL);
    nnm_module *kids[3];
    for (int i = 0; i < 3; i++) {
        kids[i] = probe(2.0);
        nnm_module_add_child(root, NULL, kids[i]);
    }
    nnm_hook_handle *child_hook, *global;
    nnm_module_register_forward_pre_hook(kids[1], pre_log, "k", &child_hook);
    nnm_ctx_register_forward_pre_hook(ctx, count_entries, NULL, &global);
    nnm_tensor *x = vec(2, 1.0f), *y = NULL;
    for (int i = 0; i < 5; i++) {
        CU_ASSERT_EQUAL(nnm_module_call(root, &x, 1, &y, 1), NNM_OK);
        CU_ASSERT_DOUBLE_EQUAL(first(y), 8.0, 1e-6);
        nnm_tensor_release(y);
    }
    /* every forward the plugin saw came through the wrapper */
    CU_ASSERT_EQUAL(g_probe.forwards, 15);
    CU_ASSERT_EQUAL(g_wrapper_entries, 15);
    CU_ASSERT_EQUAL(g_probe.bad_env, 0);
    /* the child's own hook fired on each container call, before its forward */
    CU_ASSERT_STRING_EQUAL(g_probe.order, "FkFFFkFFFkFFFkFFFkFF");
    nnm_hook_remove(global);
    nnm_hook_remove(child_hook);
    /* with no hooks at all (fast path) the plugin still sees every call */
    probe_reset();
    for (int i = 0; i < 4; i++) {
        CU_ASSERT_EQUAL(nnm_module_call(root, &x, 1, &y, 1), NNM_OK);
        nnm_tensor_release(y);
    }
    CU_ASSERT_EQUAL(g_probe.forwards, 12);
    for (int i = 0; i < 3; i++) nnm_module_release(kids[i]);
    nnm_tensor_release(x);
    nnm_module_release(root);
}

typedef struct prof_rec {
    int n;
    char paths[16][64];
    uint32_t depth[16];
    int bad_time;
} prof_rec;

static void on_profile(void *user, const nnm_profile_event *ev) {
    prof_rec *r = user;
    if (ev->end_ns < ev->start_ns) r->bad_time++;
    if (r->n < 16) {
        snprintf(r->paths[r->n], sizeof r->paths[0], "%s:%s", ev->path, ev->type);
        r->depth[r->n] = ev->depth;
    }
    r->n++;
}

static void test_profiler(void) {
    nnm_module *root = tu_module(ctx, "sequential", NULL), *a = probe(1.0), *b = probe(1.0);
    nnm_module_add_child(root, "a", a);
    nnm_module_add_child(root, "b", b);
    prof_rec rec = {0};
    CU_ASSERT_EQUAL(nnm_ctx_set_profiler(ctx, on_profile, &rec), NNM_OK);
    nnm_tensor *x = vec(2, 1.0f), *y = NULL;
    CU_ASSERT_EQUAL(nnm_module_call(root, &x, 1, &y, 1), NNM_OK);
    nnm_tensor_release(y);
    CU_ASSERT_EQUAL(rec.n, 3); /* children end first */
    CU_ASSERT_STRING_EQUAL(rec.paths[0], "a:probe");
    CU_ASSERT_STRING_EQUAL(rec.paths[1], "b:probe");
    CU_ASSERT_STRING_EQUAL(rec.paths[2], ":sequential");
    CU_ASSERT_EQUAL(rec.depth[0], 1);
    CU_ASSERT_EQUAL(rec.depth[2], 0);
    CU_ASSERT_EQUAL(rec.bad_time, 0);
    CU_ASSERT_EQUAL(nnm_ctx_set_profiler(ctx, NULL, NULL), NNM_OK);
    CU_ASSERT_EQUAL(nnm_module_call(root, &x, 1, &y, 1), NNM_OK);
    nnm_tensor_release(y);
    CU_ASSERT_EQUAL(rec.n, 3); /* off: no more events */
    nnm_tensor_release(x);
    nnm_module_release(a);
    nnm_module_release(b);
    nnm_module_release(root);
}

static nnm_module *g_victim;
static nnm_status release_victim(void *user, nnm_module *m, nnm_tensor **in, uint32_t n_in) {
    (void)user, (void)m, (void)in, (void)n_in;
    nnm_module_release(g_victim); /* drops the caller's last reference mid-call */
    g_victim = NULL;
    return NNM_OK;
}

static void test_module_released_by_its_hook(void) {
    g_victim = probe(1.0);
    nnm_module *m = g_victim;
    nnm_module_register_forward_pre_hook(m, release_victim, NULL, NULL);
    nnm_tensor *x = vec(2, 1.0f), *y = NULL;
    CU_ASSERT_EQUAL(nnm_module_call(m, &x, 1, &y, 1), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL(y);
    nnm_tensor_release(y);
    nnm_tensor_release(x);
}

static void test_steady_state_allocates_nothing(void) {
    nnm_module *root = tu_module(ctx, "sequential", NULL);
    for (int i = 0; i < 4; i++) {
        nnm_module *l = tu_linear(ctx, "linear", 16, 16, -1), *r = tu_module(ctx, "relu", NULL);
        nnm_module_add_child(root, NULL, l);
        nnm_module_add_child(root, NULL, r);
        nnm_module_release(l);
        nnm_module_release(r);
    }
    nnm_tensor *x = vec(16, 0.5f), *y = NULL;
    for (int i = 0; i < 3; i++) { /* warm the cache */
        CU_ASSERT_EQUAL(nnm_module_call(root, &x, 1, &y, 1), NNM_OK);
        nnm_tensor_release(y);
    }
    nnm_ctx_stats before = {sizeof before}, after = {sizeof after};
    nnm_ctx_stats_get(ctx, &before);
    for (int i = 0; i < 100; i++) {
        CU_ASSERT_EQUAL(nnm_module_call(root, &x, 1, &y, 1), NNM_OK);
        nnm_tensor_release(y);
    }
    nnm_ctx_stats_get(ctx, &after);
    CU_ASSERT_EQUAL(after.heap_allocs, before.heap_allocs);
    CU_ASSERT(after.cache_hits >= before.cache_hits + 100 * 8);
    CU_ASSERT_EQUAL(after.live_tensors, before.live_tensors);
    nnm_tensor_release(x);
    nnm_module_release(root);
}

int main(void) {
    CU_pSuite s = tu_suite("call_path", suite_init, suite_fini);
    if (s == NULL)
        return 1;
    CU_add_test(s, "hook order: global then module, registration order", test_hook_order);
    CU_add_test(s, "hooks replace inputs and outputs", test_hook_replacement);
    CU_add_test(s, "hook removal, also during a call", test_hook_removal);
    CU_add_test(s, "errors propagate with the module path", test_error_propagation);
    CU_add_test(s, "input arity, device and shape checks", test_input_checks);
    CU_add_test(s, "train/eval and grad mode reach forward", test_modes);
    CU_add_test(s, "grad mode is per thread", test_grad_mode_per_thread);
    CU_add_test(s, "container children go through the wrapper", test_container_children_go_through_wrapper);
    CU_add_test(s, "profiler events", test_profiler);
    CU_add_test(s, "module released by its own hook", test_module_released_by_its_hook);
    CU_add_test(s, "steady-state forward allocates nothing", test_steady_state_allocates_nothing);
    return tu_run();
}
