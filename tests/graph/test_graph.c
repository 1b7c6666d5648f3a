/* tests/graph/test_graph.c - the container plugins and the declared config
 * schemas, through the public API only.
 *
 *  - graph: a residual MLP block (a ResNet basic block with linear layers)
 *    checked against PyTorch, forward and gradients (tests/golden/
 *    graph_golden.h, written by tests/golden/make_graph_golden.py); nodes
 *    listed out of order; multi-input, multi-output and input-less nodes
 *    (the fixture layers of fixture_layers.c); every create-time and
 *    finalize-time error with its message; lifetimes of intermediates; hooks
 *    on children; failures inside a child leaving nothing behind.
 *  - module_list / module_dict: children by name, PyTorch parameter names,
 *    forward refused.
 *  - add: broadcasting sum of any number of inputs.
 *  - config schemas: refused before create, with the key in the message.
 *
 * Every test checks that it leaves no live tensor or module behind.
 * NNM_TEST_DEVICE=emu|cuda (tests/test_device.h; ctest's test_graph_emu) runs
 * the residual block's golden tests only, on that device.
 */
#include "test_util.h"

#include <math.h>

#include "golden/graph_golden.h"
#include "test_device.h"

static nnm_ctx *g_ctx;
#define TU_CTX g_ctx
static int g_skip; /* NNM_TEST_DEVICE names a device this machine lacks */

static int suite_init(void) {
    if (tu_ctx_new(&g_ctx) != 0)
        return 1;
    const int r = td_init(g_ctx);
    g_skip = r == 1;
    if (r < 0) {
        tu_ctx_free(&g_ctx);
        return 1;
    }
    nnm_status st = nnm_plugin_load(g_ctx, NNM_GRAPH_FIXTURE_PLUGIN);
    if (st != NNM_OK) {
        fprintf(stderr, "loading %s: %s: %s\n", NNM_GRAPH_FIXTURE_PLUGIN, nnm_status_name(st),
                nnm_ctx_errmsg(g_ctx));
        tu_ctx_free(&g_ctx);
        return 1;
    }
    return 0;
}

static int suite_clean(void) { return tu_ctx_free(&g_ctx); }
static int suite_clean_device(void) {
    const int r = tu_ctx_free(&g_ctx);
    td_teardown();
    return r;
}

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */
/* ------------------------------------------------------------------------ */

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

/* Number of elements of `got` (a tensor of n elements) that differ from
 * want[] by more than 1e-5 (absolute) + 1e-5 (relative); -1 if unreadable. */
static int count_mismatch(const char *what, nnm_tensor *got, const float *want, size_t n) {
    if (got == NULL || (size_t)nnm_tensor_numel(got) != n) {
        fprintf(stderr, "\n  %s: %s\n", what, got ? "wrong number of elements" : "NULL tensor");
        return -1;
    }
    float *buf = tu_read_f32(got, NULL);
    int bad = buf != NULL ? tu_count_mismatch(what, buf, want, (int64_t)n, 1e-5, 1e-5, 0) : -1;
    free(buf);
    return bad;
}

#define CHECK_VALUES(what, t, want, n) CU_ASSERT_EQUAL(count_mismatch(what, t, want, n), 0)

/* tu_module / tu_linear (no bias key), asserting that the module was made. */
static nnm_module *mk_plain(const char *request) {
    nnm_module *m = tu_module(g_ctx, request, NULL);
    CU_ASSERT_PTR_NOT_NULL(m);
    return m;
}

static nnm_module *mk_linear(int64_t in, int64_t out) {
    nnm_module *m = tu_linear(g_ctx, "linear", in, out, -1);
    CU_ASSERT_PTR_NOT_NULL(m);
    return m;
}

/* A graph; a count < 0 leaves that key out of the config (its default). */
static nnm_status graph_new(const char *const *inputs, int n_inputs, const char *const *nodes,
                            int n_nodes, const char *const *outputs, int n_outputs,
                            nnm_module **out) {
    nnm_config *cfg = NULL;
    *out = NULL;
    nnm_status st = nnm_config_new(&cfg);
    if (st != NNM_OK)
        return st;
    static const char *const none[1] = {""};
    if (n_inputs >= 0)
        st = nnm_config_set_strs(cfg, "inputs", n_inputs ? inputs : none, (size_t)n_inputs);
    if (st == NNM_OK && n_nodes >= 0)
        st = nnm_config_set_strs(cfg, "nodes", n_nodes ? nodes : none, (size_t)n_nodes);
    if (st == NNM_OK && n_outputs >= 0)
        st = nnm_config_set_strs(cfg, "outputs", n_outputs ? outputs : none, (size_t)n_outputs);
    if (st == NNM_OK)
        st = nnm_module_create(g_ctx, "graph", cfg, out);
    nnm_config_free(cfg);
    return st;
}

/* Adds `child` (a new module, NULL on an earlier failure) under `name` and
 * drops the caller's reference. */
static void adopt(nnm_module *parent, const char *name, nnm_module *child) {
    CU_ASSERT_PTR_NOT_NULL_FATAL(child);
    CHECK_STATUS(nnm_module_add_child(parent, name, child), NNM_OK);
    nnm_module_release(child);
}

/* The parameter `name` of m (one assertion, tu_params_of's), or NULL. */
static nnm_tensor *param_of(nnm_module *m, const char *name) {
    tu_named l = tu_params_of(m);
    nnm_tensor *t = tu_named_get(&l, name);
    if (t == NULL)
        fprintf(stderr, "\n  no parameter '%s'\n", name);
    return t;
}

/* sum(t) as a new scalar tensor. */
static nnm_tensor *sum_all(nnm_tensor *t) {
    nnm_tensor *s = NULL;
    CHECK_STATUS(nnm_op_reduce(g_ctx, NNM_REDUCE_SUM, t, NULL, 0, 0, &s), NNM_OK);
    return s;
}

/* ------------------------------------------------------------------------ */
/* graph: the residual block against PyTorch                                 */
/* ------------------------------------------------------------------------ */

static const char *const block_nodes[] = {"fc1: x", "act1: fc1", "fc2: act1", "sum: fc2, x",
                                          "out: sum"};
/* The same graph listed backwards, with untidy whitespace: the execution
 * order comes from the edges, not from the listing. */
static const char *const block_nodes_reversed[] = {" out :sum ", "sum:fc2 ,  x", "fc2 : act1",
                                                   "act1:\tfc1", "fc1 :x"};

/* The block with the golden weights; children attached in another order than
 * the nodes are listed (they are matched by name). */
static nnm_module *build_block(int reversed) {
    nnm_module *g = NULL;
    const char *const *nodes = reversed ? block_nodes_reversed : block_nodes;
    const char *const outputs[] = {"out"};
    /* Reversed, the last node listed is fc1: name the output explicitly. */
    CHECK_STATUS(graph_new(NULL, -1, nodes, 5, outputs, reversed ? 1 : -1, &g), NNM_OK);
    if (g == NULL)
        return NULL;
    adopt(g, "out", mk_plain("relu"));
    adopt(g, "fc2", mk_linear(GRAPH_GOLDEN_H, GRAPH_GOLDEN_D));
    adopt(g, "sum", mk_plain("add"));
    adopt(g, "fc1", mk_linear(GRAPH_GOLDEN_D, GRAPH_GOLDEN_H));
    adopt(g, "act1", mk_plain("relu"));
    CHECK_STATUS(nnm_module_finalize(g), NNM_OK);
    CU_ASSERT_TRUE(tu_write_f32(param_of(g, "fc1.weight"), graph_golden_fc1_w,
                             N_OF(graph_golden_fc1_w)));
    CU_ASSERT_TRUE(tu_write_f32(param_of(g, "fc1.bias"), graph_golden_fc1_b,
                             N_OF(graph_golden_fc1_b)));
    CU_ASSERT_TRUE(tu_write_f32(param_of(g, "fc2.weight"), graph_golden_fc2_w,
                             N_OF(graph_golden_fc2_w)));
    CU_ASSERT_TRUE(tu_write_f32(param_of(g, "fc2.bias"), graph_golden_fc2_b,
                             N_OF(graph_golden_fc2_b)));
    return g;
}

static void check_block(int reversed) {
    if (g_skip)
        return;
    LEAK_CHECK_BEGIN();
    nnm_module *g = build_block(reversed);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    CHECK_STATUS(nnm_module_zero_grad(g), NNM_OK);
    CHECK_STATUS(nnm_module_to(g, td_device()), NNM_OK); /* NNM_TEST_DEVICE */
    const int64_t xshape[2] = {GRAPH_GOLDEN_BATCH, GRAPH_GOLDEN_D};
    nnm_tensor *x = tu_tf32(g_ctx, 2, xshape, graph_golden_x);
    nnm_tensor *c = tu_tf32(g_ctx, 2, xshape, graph_golden_c);
    CU_ASSERT_TRUE(td_move(g_ctx, &x) && td_move(g_ctx, &c));
    CHECK_STATUS(nnm_tensor_set_requires_grad(x, 1), NNM_OK);

    nnm_tensor *y = NULL;
    CHECK_STATUS(nnm_module_call(g, &x, 1, &y, 1), NNM_OK);
    CHECK_VALUES("y", y, graph_golden_y, N_OF(graph_golden_y));

    nnm_tensor *yc = NULL;
    CHECK_STATUS(nnm_op_binary(g_ctx, NNM_BINARY_MUL, y, c, &yc), NNM_OK);
    nnm_tensor *loss = sum_all(yc);
    CHECK_VALUES("loss", loss, &graph_golden_loss, 1);
    CHECK_STATUS(nnm_backward(loss, NULL, 0), NNM_OK);
    CHECK_VALUES("grad x", nnm_tensor_grad(x), graph_golden_grad_x, N_OF(graph_golden_grad_x));
    CHECK_VALUES("grad fc1.weight", nnm_tensor_grad(param_of(g, "fc1.weight")),
                 graph_golden_grad_fc1_w, N_OF(graph_golden_grad_fc1_w));
    CHECK_VALUES("grad fc1.bias", nnm_tensor_grad(param_of(g, "fc1.bias")),
                 graph_golden_grad_fc1_b, N_OF(graph_golden_grad_fc1_b));
    CHECK_VALUES("grad fc2.weight", nnm_tensor_grad(param_of(g, "fc2.weight")),
                 graph_golden_grad_fc2_w, N_OF(graph_golden_grad_fc2_w));
    CHECK_VALUES("grad fc2.bias", nnm_tensor_grad(param_of(g, "fc2.bias")),
                 graph_golden_grad_fc2_b, N_OF(graph_golden_grad_fc2_b));

    nnm_tensor_release(loss);
    nnm_tensor_release(yc);
    nnm_tensor_release(y);
    nnm_tensor_release(c);
    nnm_tensor_release(x);
    nnm_module_release(g);
    LEAK_CHECK_END();
}

static void test_residual_block_golden(void) {
    check_block(0);
}

static void test_residual_block_listed_backwards(void) {
    check_block(1);
}

/* Parameters are named by the children's names, as in PyTorch; the printed
 * tree shows the graph's extra_repr. */
static void test_residual_block_names_and_repr(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *g = build_block(0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    tu_named l = tu_params_of(g);
    CU_ASSERT_EQUAL(l.n, 4);
    CU_ASSERT_PTR_NOT_NULL(param_of(g, "fc1.weight"));
    CU_ASSERT_PTR_NOT_NULL(param_of(g, "fc2.bias"));
    char buf[2048];
    CU_ASSERT_TRUE(nnm_module_repr(g, buf, sizeof buf) > 0);
    if (strstr(buf, "inputs=[x], outputs=[out]") == NULL)
        fprintf(stderr, "\n  repr: %s\n", buf);
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "inputs=[x], outputs=[out]"));
    nnm_module_release(g);
    LEAK_CHECK_END();
}

/* ------------------------------------------------------------------------ */
/* graph: multi-input, multi-output, input-less nodes                        */
/* ------------------------------------------------------------------------ */

static nnm_module *build_multi(void) {
    static const char *const inputs[] = {"a", "b"};
    static const char *const nodes[] = {
        "f: a",       /* fx_fork: f:0 = a, f:1 = 2a          */
        "d: f:1, b",  /* fx_sub: 2a - b                      */
        "s: f, d",    /* add: a + (2a - b) = 3a - b          */
        "n: a",       /* fx_fan (any outputs): n:2 = 3a      */
        "k:",         /* fx_const: [5]                       */
        "t: n:2, k",  /* add: 3a + 5                         */
    };
    static const char *const outputs[] = {"s", "f:1", "d", "t", "a"};
    nnm_module *g = NULL;
    CHECK_STATUS(graph_new(inputs, 2, nodes, (int)N_OF(nodes), outputs, (int)N_OF(outputs), &g),
                 NNM_OK);
    if (g == NULL)
        return NULL;
    adopt(g, "f", mk_plain("fx_fork"));
    adopt(g, "d", mk_plain("fx_sub"));
    adopt(g, "s", mk_plain("add"));
    adopt(g, "n", mk_plain("fx_fan"));
    adopt(g, "k", mk_plain("fx_const"));
    adopt(g, "t", mk_plain("add"));
    return g;
}

static void test_multi_input_output(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *g = build_multi();
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    CHECK_STATUS(nnm_module_finalize(g), NNM_OK);
    const int64_t shape[1] = {3};
    const float av[3] = {1, 2, 3}, bv[3] = {10, 20, 30};
    nnm_tensor *in[2] = {tu_tf32(g_ctx, 1, shape, av), tu_tf32(g_ctx, 1, shape, bv)};
    CHECK_STATUS(nnm_tensor_set_requires_grad(in[0], 1), NNM_OK);
    CHECK_STATUS(nnm_tensor_set_requires_grad(in[1], 1), NNM_OK);
    nnm_tensor *out[5] = {NULL};
    CHECK_STATUS(nnm_module_call(g, in, 2, out, 5), NNM_OK);
    const float s[3] = {-7, -14, -21}, f1[3] = {2, 4, 6}, d[3] = {-8, -16, -24},
                t[3] = {8, 11, 14};
    CHECK_VALUES("s", out[0], s, 3);
    CHECK_VALUES("f:1", out[1], f1, 3);
    CHECK_VALUES("d", out[2], d, 3);
    CHECK_VALUES("t", out[3], t, 3);
    CU_ASSERT_PTR_EQUAL(out[4], in[0]); /* a graph input returned: the same tensor */

    /* Autograd through the wiring: d/da sum(s + f:1 + d + t) = 3 + 2 + 2 + 3,
     * d/db = -1 - 1. */
    nnm_tensor *acc = NULL, *tmp = NULL;
    CHECK_STATUS(nnm_op_binary(g_ctx, NNM_BINARY_ADD, out[0], out[1], &acc), NNM_OK);
    CHECK_STATUS(nnm_op_binary(g_ctx, NNM_BINARY_ADD, acc, out[2], &tmp), NNM_OK);
    nnm_tensor_release(acc);
    CHECK_STATUS(nnm_op_binary(g_ctx, NNM_BINARY_ADD, tmp, out[3], &acc), NNM_OK);
    nnm_tensor_release(tmp);
    nnm_tensor *loss = sum_all(acc);
    CHECK_STATUS(nnm_backward(loss, NULL, 0), NNM_OK);
    const float ga[3] = {10, 10, 10}, gb[3] = {-2, -2, -2};
    CHECK_VALUES("grad a", nnm_tensor_grad(in[0]), ga, 3);
    CHECK_VALUES("grad b", nnm_tensor_grad(in[1]), gb, 3);

    char buf[2048];
    nnm_module_repr(g, buf, sizeof buf);
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "inputs=[a, b], outputs=[s, f:1, d, t, a]"));

    nnm_tensor_release(loss);
    nnm_tensor_release(acc);
    for (int i = 0; i < 5; i++)
        nnm_tensor_release(out[i]);
    nnm_tensor_release(in[0]);
    nnm_tensor_release(in[1]);
    nnm_module_release(g);
    LEAK_CHECK_END();
}

/* Outputs that are graph inputs come back as the same tensors, one new
 * reference each; an unused input is fine. */
static void test_output_is_graph_input(void) {
    LEAK_CHECK_BEGIN();
    static const char *const inputs[] = {"x", "y", "unused"};
    static const char *const nodes[] = {"r: x"};
    static const char *const outputs[] = {"y", "r", "x", "y"};
    nnm_module *g = NULL;
    CHECK_STATUS(graph_new(inputs, 3, nodes, 1, outputs, 4, &g), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    adopt(g, "r", mk_plain("relu"));
    /* no finalize: the first forward maps the children */
    const int64_t shape[1] = {2};
    const float xv[2] = {-1, 2}, yv[2] = {3, 4};
    nnm_tensor *in[3] = {tu_tf32(g_ctx, 1, shape, xv), tu_tf32(g_ctx, 1, shape, yv),
                         tu_tf32(g_ctx, 1, shape, yv)};
    nnm_tensor *out[4] = {NULL};
    CHECK_STATUS(nnm_module_call(g, in, 3, out, 4), NNM_OK);
    CU_ASSERT_PTR_EQUAL(out[0], in[1]);
    CU_ASSERT_PTR_EQUAL(out[2], in[0]);
    CU_ASSERT_PTR_EQUAL(out[3], in[1]);
    const float r[2] = {0, 2};
    CHECK_VALUES("r", out[1], r, 2);
    for (int i = 0; i < 4; i++)
        nnm_tensor_release(out[i]);
    /* The inputs are still alive and untouched: the graph only borrowed them. */
    CHECK_VALUES("x", in[0], xv, 2);
    for (int i = 0; i < 3; i++)
        nnm_tensor_release(in[i]);
    nnm_module_release(g);
    LEAK_CHECK_END();
}

/* A graph called with the wrong number of inputs or outputs. */
static void test_forward_arity(void) {
    LEAK_CHECK_BEGIN();
    static const char *const nodes[] = {"r: x"};
    nnm_module *g = NULL;
    CHECK_STATUS(graph_new(NULL, -1, nodes, 1, NULL, -1, &g), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    adopt(g, "r", mk_plain("relu"));
    const int64_t shape[1] = {2};
    nnm_tensor *in[2] = {tu_tf32(g_ctx, 1, shape, NULL), tu_tf32(g_ctx, 1, shape, NULL)};
    nnm_tensor *out[2] = {NULL, NULL};
    CHECK_ERROR(nnm_module_call(g, in, 2, out, 1), NNM_E_SHAPE,
                "graph takes 1 input (config.inputs), got 2");
    CU_ASSERT_PTR_NULL(out[0]);
    CHECK_ERROR(nnm_module_call(g, in, 1, out, 2), NNM_E_SHAPE,
                "graph returns 1 output (config.outputs), caller asked for 2");
    CU_ASSERT_PTR_NULL(out[0]);
    CU_ASSERT_PTR_NULL(out[1]);
    nnm_tensor_release(in[0]);
    nnm_tensor_release(in[1]);
    nnm_module_release(g);
    LEAK_CHECK_END();
}

/* ------------------------------------------------------------------------ */
/* graph: lifetimes and the call path                                        */
/* ------------------------------------------------------------------------ */

typedef struct live_probe {
    uint64_t seen;
    int calls;
} live_probe;

static nnm_status probe_live(void *user, nnm_module *m, nnm_tensor **in, uint32_t n_in) {
    (void)m;
    (void)in;
    (void)n_in;
    live_probe *p = user;
    p->seen = tu_live_now(g_ctx).tensors;
    p->calls++;
    return NNM_OK;
}

/* A chain a -> b -> c -> d: when d runs, only c's output is still held (a's
 * and b's were released after their last use). */
static void test_intermediates_released_after_last_use(void) {
    LEAK_CHECK_BEGIN();
    static const char *const nodes[] = {"a: x", "b: a", "c: b", "d: c"};
    nnm_module *g = NULL;
    CHECK_STATUS(graph_new(NULL, -1, nodes, 4, NULL, -1, &g), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    const char *names[4] = {"a", "b", "c", "d"};
    for (int i = 0; i < 4; i++)
        adopt(g, names[i], mk_plain("relu"));
    CHECK_STATUS(nnm_module_finalize(g), NNM_OK);
    live_probe probe = {0, 0};
    CHECK_STATUS(nnm_module_register_forward_pre_hook(nnm_module_get(g, "d"), probe_live, &probe,
                                                      NULL),
                 NNM_OK);
    const int64_t shape[1] = {4};
    const float xv[4] = {-1, 1, -2, 2};
    nnm_tensor *x = tu_tf32(g_ctx, 1, shape, xv);
    int was = nnm_grad_set_enabled(0); /* nothing kept for backward */
    const uint64_t before = tu_live_now(g_ctx).tensors;
    nnm_tensor *y = NULL;
    CHECK_STATUS(nnm_module_call(g, &x, 1, &y, 1), NNM_OK);
    nnm_grad_set_enabled(was);
    CU_ASSERT_EQUAL(probe.calls, 1);
    CU_ASSERT_EQUAL(probe.seen, before + 1);
    CU_ASSERT_EQUAL(tu_live_now(g_ctx).tensors, before + 1); /* y only */
    const float want[4] = {0, 1, 0, 2};
    CHECK_VALUES("y", y, want, 4);
    nnm_tensor_release(y);
    nnm_tensor_release(x);
    nnm_module_release(g);
    LEAK_CHECK_END();
}

typedef struct hook_counts {
    int pre, post;
} hook_counts;

static nnm_status count_pre(void *user, nnm_module *m, nnm_tensor **in, uint32_t n_in) {
    (void)m;
    (void)in;
    (void)n_in;
    ((hook_counts *)user)->pre++;
    return NNM_OK;
}

static nnm_status count_post(void *user, nnm_module *m, nnm_tensor *const *in, uint32_t n_in,
                             nnm_tensor **out, uint32_t n_out) {
    (void)m;
    (void)in;
    (void)out;
    hook_counts *c = user;
    if (n_in == 2 && n_out == 1)
        c->post++;
    return NNM_OK;
}

static nnm_status fail_pre(void *user, nnm_module *m, nnm_tensor **in, uint32_t n_in) {
    (void)user;
    (void)in;
    (void)n_in;
    return nnm_ctx_set_error(nnm_module_ctx(m), NNM_E_HOOK, "refused by a test hook on %s",
                             nnm_module_name(m));
}

/* Children run through the call path: their hooks fire, and a failure inside
 * one fails the graph with the child's path and leaves nothing behind. */
static void test_child_hooks_and_failures(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *g = build_block(0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    hook_counts fc1 = {0, 0}, sum = {0, 0};
    nnm_hook_handle *h1 = NULL;
    CHECK_STATUS(nnm_module_register_forward_pre_hook(nnm_module_get(g, "fc1"), count_pre, &fc1,
                                                      &h1),
                 NNM_OK);
    CHECK_STATUS(nnm_module_register_forward_hook(nnm_module_get(g, "sum"), count_post, &sum,
                                                  NULL),
                 NNM_OK);
    const int64_t xshape[2] = {GRAPH_GOLDEN_BATCH, GRAPH_GOLDEN_D};
    nnm_tensor *x = tu_tf32(g_ctx, 2, xshape, graph_golden_x);
    CHECK_STATUS(nnm_tensor_set_requires_grad(x, 1), NNM_OK);
    nnm_tensor *y = NULL;
    for (int i = 0; i < 2; i++) {
        CHECK_STATUS(nnm_module_call(g, &x, 1, &y, 1), NNM_OK);
        nnm_tensor_release(y);
        y = NULL;
    }
    CU_ASSERT_EQUAL(fc1.pre, 2);
    CU_ASSERT_EQUAL(sum.post, 2); /* and "sum" saw its 2 inputs */

    /* A child that fails halfway (fc1 and act1 have run, their outputs are
     * held): the graph fails with the child's message and path, out stays
     * NULL, and every intermediate is released (checked at the end). */
    nnm_hook_handle *hf = NULL;
    CHECK_STATUS(nnm_module_register_forward_pre_hook(nnm_module_get(g, "fc2"), fail_pre, NULL,
                                                      &hf),
                 NNM_OK);
    CHECK_ERROR(nnm_module_call(g, &x, 1, &y, 1), NNM_E_HOOK, "refused by a test hook on fc2");
    CHECK_ERROR(nnm_module_call(g, &x, 1, &y, 1), NNM_E_HOOK, "fc2 (linear)");
    CU_ASSERT_PTR_NULL(y);
    nnm_hook_remove(hf);
    nnm_hook_remove(h1);
    CHECK_STATUS(nnm_module_call(g, &x, 1, &y, 1), NNM_OK);
    CU_ASSERT_EQUAL(fc1.pre, 4); /* h1 saw the two failed calls, not this one */
    CHECK_VALUES("y", y, graph_golden_y, N_OF(graph_golden_y));
    nnm_tensor_release(y);
    nnm_tensor_release(x);
    nnm_module_release(g);
    LEAK_CHECK_END();
}

typedef struct reenter {
    nnm_module *graph;
    nnm_tensor *x;
    nnm_tensor *inner; /* what the nested call returned */
    nnm_status st;
    int depth;
} reenter;

static nnm_status call_graph_again(void *user, nnm_module *m, nnm_tensor **in, uint32_t n_in) {
    (void)m;
    (void)in;
    (void)n_in;
    reenter *r = user;
    if (r->depth++ == 0)
        r->st = nnm_module_call(r->graph, &r->x, 1, &r->inner, 1);
    r->depth--;
    return NNM_OK;
}

/* A hook of a child that calls the graph again, while the graph runs: the
 * nested forward gets scratch arrays of its own and both results are right. */
static void test_reentrant_forward(void) {
    LEAK_CHECK_BEGIN();
    static const char *const nodes[] = {"a: x", "b: a, x"};
    nnm_module *g = NULL;
    CHECK_STATUS(graph_new(NULL, -1, nodes, 2, NULL, -1, &g), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    adopt(g, "a", mk_plain("relu"));
    adopt(g, "b", mk_plain("add"));
    const int64_t shape[1] = {2};
    const float xv[2] = {-1, 2}, want[2] = {-1, 4};
    nnm_tensor *x = tu_tf32(g_ctx, 1, shape, xv);
    reenter r = {g, x, NULL, NNM_E_STATE, 0};
    CHECK_STATUS(nnm_module_register_forward_pre_hook(nnm_module_get(g, "b"), call_graph_again,
                                                      &r, NULL),
                 NNM_OK);
    nnm_tensor *y = NULL;
    CHECK_STATUS(nnm_module_call(g, &x, 1, &y, 1), NNM_OK);
    CU_ASSERT_EQUAL(r.st, NNM_OK);
    CHECK_VALUES("outer", y, want, 2);
    CHECK_VALUES("inner", r.inner, want, 2);
    nnm_tensor_release(r.inner);
    nnm_tensor_release(y);
    nnm_tensor_release(x);
    nnm_module_release(g);
    LEAK_CHECK_END();
}

/* ------------------------------------------------------------------------ */
/* graph: create-time errors                                                 */
/* ------------------------------------------------------------------------ */

typedef struct create_case {
    const char *inputs[4];
    int n_inputs; /* -1: key left out */
    const char *nodes[6];
    int n_nodes;
    const char *outputs[4];
    int n_outputs;
    nnm_status want;
    const char *needle;
} create_case;

static const create_case create_cases[] = {
    {{0}, -1, {"fc1: x", "act: fc1", "fc2: act", "out: fc9"}, 4, {0}, -1, NNM_E_INVALID,
     "graph: config.nodes[3]: unknown input 'fc9'"},
    {{0}, -1, {"a: x", "relu: a", "relu: a"}, 3, {0}, -1, NNM_E_INVALID,
     "config.nodes[2]: duplicate node 'relu'"},
    {{0}, -1, {"a: x", "b x"}, 2, {0}, -1, NNM_E_INVALID,
     "config.nodes[1]: expected \"name: input, input, ...\", got \"b x\""},
    {{0}, -1, {": x"}, 1, {0}, -1, NNM_E_INVALID,
     "config.nodes[0]: expected \"name: input, input, ...\""},
    /* a dotted node name is a descendant's path ("heads.0"); a bad path is
     * bad syntax */
    {{0}, -1, {"a..b: x"}, 1, {0}, -1, NNM_E_INVALID,
     "config.nodes[0]: expected \"name: input, input, ...\", got \"a..b: x\""},
    {{0}, -1, {".a: x"}, 1, {0}, -1, NNM_E_INVALID,
     "config.nodes[0]: expected \"name: input, input, ...\", got \".a: x\""},
    {{0}, -1, {"a.: x"}, 1, {0}, -1, NNM_E_INVALID,
     "config.nodes[0]: expected \"name: input, input, ...\", got \"a.: x\""},
    {{0}, -1, {"a. b: x"}, 1, {0}, -1, NNM_E_INVALID,
     "config.nodes[0]: expected \"name: input, input, ...\", got \"a. b: x\""},
    {{0}, -1, {"a.b c: x"}, 1, {0}, -1, NNM_E_INVALID,
     "config.nodes[0]: expected \"name: input, input, ...\", got \"a.b c: x\""},
    {{0}, -1, {"h.0: x", "h.1: h..0"}, 2, {0}, -1, NNM_E_INVALID,
     "config.nodes[1]: bad input 'h..0'"},
    {{0}, -1, {"h.0: x", "h.1: h.0."}, 2, {0}, -1, NNM_E_INVALID,
     "config.nodes[1]: bad input 'h.0.'"},
    {{0}, -1, {"h.0: x", "h.1: h.2"}, 2, {0}, -1, NNM_E_INVALID,
     "config.nodes[1]: unknown input 'h.2'"},
    {{0}, -1, {"h.0: x", "h.1: h"}, 2, {0}, -1, NNM_E_INVALID, "config.nodes[1]: unknown input 'h'"},
    {{0}, -1, {"h.0: x", "h.0: x"}, 2, {0}, -1, NNM_E_INVALID,
     "config.nodes[1]: duplicate node 'h.0'"},
    {{0}, -1, {"h.0: x"}, 1, {"h.0:"}, 1, NNM_E_INVALID,
     "config.outputs[0]: bad reference 'h.0:'"},
    {{0}, -1, {"h.0: x"}, 1, {"h.1:1"}, 1, NNM_E_INVALID, "config.outputs[0]: unknown node 'h.1'"},
    {{0}, -1, {"h.0: x", "h.1: x.y"}, 2, {0}, -1, NNM_E_INVALID,
     "config.nodes[1]: unknown input 'x.y'"},
    {{0}, -1, {"a: b", "b: a"}, 2, {"a"}, 1, NNM_E_INVALID,
     "config.nodes: cycle through 'a' -> 'b' -> 'a'"},
    {{0}, -1, {"a: x", "b: a, d", "c: b", "d: c"}, 4, {0}, -1, NNM_E_INVALID,
     "config.nodes: cycle through 'b' -> 'd' -> 'c' -> 'b'"},
    {{0}, -1, {"a: a"}, 1, {0}, -1, NNM_E_INVALID, "config.nodes: cycle through 'a' -> 'a'"},
    {{0}, -1, {"a: x"}, 1, {"a", "z"}, 2, NNM_E_INVALID, "config.outputs[1]: unknown node 'z'"},
    {{0}, -1, {"a: x"}, 1, {"z"}, 1, NNM_E_INVALID, "config.outputs[0]: unknown node 'z'"},
    {{0}, -1, {"a: x"}, 1, {"a:"}, 1, NNM_E_INVALID, "config.outputs[0]: bad reference 'a:'"},
    {{0}, -1, {"x: x"}, 1, {0}, -1, NNM_E_INVALID,
     "config.nodes[0]: node 'x' has the name of a graph input"},
    {{"inp"}, 1, {"a: inp", "inp: a"}, 2, {0}, -1, NNM_E_INVALID,
     "config.nodes[1]: node 'inp' has the name of a graph input"},
    {{0}, -1, {"a: x", "b: a, x:1"}, 2, {0}, -1, NNM_E_INVALID,
     "config.nodes[1]: 'x:1' refers to output 1 of graph input 'x', which is one tensor"},
    {{0}, -1, {"a: x"}, 1, {"x:2"}, 1, NNM_E_INVALID,
     "config.outputs[0]: 'x:2' refers to output 2 of graph input 'x'"},
    {{0}, -1, {"a: x,"}, 1, {0}, -1, NNM_E_INVALID, "config.nodes[0]: bad input ''"},
    {{0}, -1, {"a: x, , x"}, 1, {0}, -1, NNM_E_INVALID, "config.nodes[0]: bad input ''"},
    {{0}, -1, {"a: x:k"}, 1, {0}, -1, NNM_E_INVALID, "config.nodes[0]: bad input 'x:k'"},
    {{0}, -1, {"a: x", "b: a:99999"}, 2, {0}, -1, NNM_E_INVALID,
     "config.nodes[1]: bad input 'a:99999'"},
    /* one call has at most NNM_MAX_IO outputs and inputs */
    {{0}, -1, {"a: x", "b: a:16"}, 2, {0}, -1, NNM_E_INVALID,
     "config.nodes[1]: bad input 'a:16' (expected NAME or NAME:K, K <= 15)"},
    {{0}, -1, {"a: x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x"}, 1, {0}, -1, NNM_E_LIMIT,
     "config.nodes[0]: 17 inputs; a call takes at most 16"},
    {{"x", "x"}, 2, {"a: x"}, 1, {0}, -1, NNM_E_INVALID, "config.inputs[1]: duplicate input 'x'"},
    {{"1x"}, 1, {"a: 1x"}, 1, {0}, -1, NNM_E_INVALID,
     "config.inputs[0]: invalid name '1x' (use [A-Za-z_][A-Za-z0-9_]*)"},
    {{"a b"}, 1, {"a: x"}, 1, {0}, -1, NNM_E_INVALID, "config.inputs[0]: invalid name 'a b'"},
    {{0}, -1, {"a: x"}, 1, {0}, 0, NNM_E_INVALID,
     "config.outputs: empty (a graph returns at least one tensor)"},
    {{0}, -1, {0}, 0, {0}, -1, NNM_E_INVALID,
     "config.nodes: empty, and no config.outputs to return"},
    /* the schema, before create */
    {{0}, -1, {0}, -1, {0}, -1, NNM_E_NOT_FOUND,
     "graph: config.nodes: required list of strings is missing"},
};

static void test_create_errors(void) {
    LEAK_CHECK_BEGIN();
    for (size_t i = 0; i < N_OF(create_cases); i++) {
        const create_case *c = &create_cases[i];
        nnm_module *g = (nnm_module *)&g; /* must come back NULL */
        CHECK_ERROR(graph_new(c->inputs, c->n_inputs, c->nodes, c->n_nodes, c->outputs,
                              c->n_outputs, &g),
                    c->want, c->needle);
        CU_ASSERT_PTR_NULL(g);
        nnm_module_release(g);
    }
    LEAK_CHECK_END();
}

/* Valid corner cases: no inputs at all, a graph that returns its input
 * through no node, x:0 for x. */
static void test_create_corner_cases(void) {
    LEAK_CHECK_BEGIN();
    static const char *const nodes[] = {"k:"};
    nnm_module *g = NULL;
    CHECK_STATUS(graph_new(NULL, 0, nodes, 1, NULL, -1, &g), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    adopt(g, "k", mk_plain("fx_const"));
    nnm_tensor *y = NULL;
    CHECK_STATUS(nnm_module_call(g, NULL, 0, &y, 1), NNM_OK);
    const float five[1] = {5};
    CHECK_VALUES("k", y, five, 1);
    nnm_tensor_release(y);
    nnm_module_release(g);

    static const char *const outputs[] = {"x:0"};
    CHECK_STATUS(graph_new(NULL, -1, NULL, 0, outputs, 1, &g), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    const int64_t shape[1] = {1};
    nnm_tensor *x = tu_tf32(g_ctx, 1, shape, five);
    CHECK_STATUS(nnm_module_call(g, &x, 1, &y, 1), NNM_OK);
    CU_ASSERT_PTR_EQUAL(y, x);
    nnm_tensor_release(y);
    nnm_tensor_release(x);
    nnm_module_release(g);
    LEAK_CHECK_END();
}

/* ------------------------------------------------------------------------ */
/* graph: finalize-time errors (and the same at the first forward)           */
/* ------------------------------------------------------------------------ */

static void test_finalize_missing_child(void) {
    LEAK_CHECK_BEGIN();
    static const char *const nodes[] = {"fc: x", "act: fc", "out: act", "conv9: out"};
    nnm_module *g = NULL;
    CHECK_STATUS(graph_new(NULL, -1, nodes, 4, NULL, -1, &g), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    adopt(g, "fc", mk_linear(2, 2));
    adopt(g, "act", mk_plain("relu"));
    adopt(g, "out", mk_plain("relu"));
    CHECK_ERROR(nnm_module_finalize(g), NNM_E_INVALID,
                "config.nodes[3]: no child module named 'conv9'");

    /* Never finalized: the first forward finds the same mistake. */
    const int64_t shape[2] = {1, 2};
    const float xv[2] = {1, -1};
    nnm_tensor *x = tu_tf32(g_ctx, 2, shape, xv);
    nnm_tensor *y = NULL;
    CHECK_ERROR(nnm_module_call(g, &x, 1, &y, 1), NNM_E_INVALID,
                "config.nodes[3]: no child module named 'conv9'");
    CU_ASSERT_PTR_NULL(y);

    /* Through a parent: finalize reaches the graph and names its path. */
    nnm_module *root = mk_plain("sequential");
    CU_ASSERT_PTR_NOT_NULL_FATAL(root);
    nnm_module_retain(g);
    adopt(root, "block", g);
    CHECK_ERROR(nnm_module_finalize(root), NNM_E_INVALID,
                "block (graph): config.nodes[3]: no child module named 'conv9'");

    /* Fixed: the next forward maps the children again. */
    adopt(g, "conv9", mk_plain("identity"));
    CHECK_STATUS(nnm_module_call(g, &x, 1, &y, 1), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL(y);
    nnm_tensor_release(y);
    CHECK_STATUS(nnm_module_finalize(root), NNM_OK);
    nnm_tensor_release(x);
    nnm_module_release(g);
    nnm_module_release(root);
    LEAK_CHECK_END();
}

static void test_finalize_extra_child(void) {
    LEAK_CHECK_BEGIN();
    static const char *const nodes[] = {"r: x"};
    nnm_module *g = NULL;
    CHECK_STATUS(graph_new(NULL, -1, nodes, 1, NULL, -1, &g), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    adopt(g, "r", mk_plain("relu"));
    CHECK_STATUS(nnm_module_finalize(g), NNM_OK);
    adopt(g, "foo", mk_plain("relu"));
    CHECK_ERROR(nnm_module_finalize(g), NNM_E_INVALID, "child 'foo' is not a node of the graph");
    /* a forward after the child was added notices too */
    const int64_t shape[1] = {1};
    nnm_tensor *x = tu_tf32(g_ctx, 1, shape, NULL);
    nnm_tensor *y = NULL;
    CHECK_ERROR(nnm_module_call(g, &x, 1, &y, 1), NNM_E_INVALID,
                "child 'foo' is not a node of the graph");
    CU_ASSERT_PTR_NULL(y);
    nnm_tensor_release(x);
    nnm_module_release(g);
    LEAK_CHECK_END();
}

typedef struct arity_case {
    const char *nodes[3];
    int n_nodes;
    const char *outputs[2];
    int n_outputs;
    const char *types[3]; /* child i is named like node i, of this layer */
    const char *needle;   /* NULL: finalize succeeds */
} arity_case;

static const arity_case arity_cases[] = {
    {{"fc: x, x"}, 1, {0}, -1, {"linear"}, "config.nodes[0]: child 'fc' takes 1 input, the node lists 2"},
    {{"d: x"}, 1, {0}, -1, {"fx_sub"}, "config.nodes[0]: child 'd' takes 2 inputs, the node lists 1"},
    {{"k: x"}, 1, {0}, -1, {"fx_const"}, "config.nodes[0]: child 'k' takes 0 inputs, the node lists 1"},
    {{"f: x", "s: f, f:2"}, 2, {0}, -1, {"fx_fork", "add"},
     "config.nodes[1]: 'f:2': child 'f' has 2 outputs"},
    {{"r: x"}, 1, {"r:1"}, 1, {"relu"}, "config.outputs[0]: 'r:1': child 'r' has 1 output"},
    {{"n: x", "s: n:7, n:3"}, 2, {0}, -1, {"fx_fan", "add"}, NULL}, /* any outputs: 8 */
    {{"s: x, x, x"}, 1, {0}, -1, {"add"}, NULL},                    /* any inputs */
};

static void test_finalize_arity(void) {
    LEAK_CHECK_BEGIN();
    for (size_t i = 0; i < N_OF(arity_cases); i++) {
        const arity_case *c = &arity_cases[i];
        nnm_module *g = NULL;
        CHECK_STATUS(graph_new(NULL, -1, c->nodes, c->n_nodes, c->outputs, c->n_outputs, &g),
                     NNM_OK);
        CU_ASSERT_PTR_NOT_NULL_FATAL(g);
        for (int j = 0; j < c->n_nodes; j++) {
            char name[16];
            snprintf(name, sizeof name, "%.*s", (int)strcspn(c->nodes[j], ":"), c->nodes[j]);
            adopt(g, name, strcmp(c->types[j], "linear") == 0 ? mk_linear(1, 1)
                                                               : mk_plain(c->types[j]));
        }
        if (c->needle != NULL) {
            CHECK_ERROR(nnm_module_finalize(g), NNM_E_INVALID, c->needle);
        } else {
            CHECK_STATUS(nnm_module_finalize(g), NNM_OK);
        }
        nnm_module_release(g);
    }

    /* The any-output child is called with 8 outputs; n:7 = 8x, n:3 = 4x. */
    static const char *const nodes[] = {"n: x", "s: n:7, n:3"};
    nnm_module *g = NULL;
    CHECK_STATUS(graph_new(NULL, -1, nodes, 2, NULL, -1, &g), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    adopt(g, "n", mk_plain("fx_fan"));
    adopt(g, "s", mk_plain("add"));
    const int64_t shape[1] = {2};
    const float xv[2] = {1, -2}, want[2] = {12, -24};
    nnm_tensor *x = tu_tf32(g_ctx, 1, shape, xv);
    nnm_tensor *y = NULL;
    CHECK_STATUS(nnm_module_call(g, &x, 1, &y, 1), NNM_OK);
    CHECK_VALUES("n:7 + n:3", y, want, 2);
    nnm_tensor_release(y);
    nnm_tensor_release(x);
    nnm_module_release(g);
    LEAK_CHECK_END();
}

/* ------------------------------------------------------------------------ */
/* graph: nodes that name descendants (self.heads[0](h), self.tasks["cls"])  */
/* ------------------------------------------------------------------------ */

/* Weights of the descendant graph below (row-major [out, in]). */
static const float desc_enc_w[6] = {0.5f, -1.0f, 1.5f, 0.25f, -0.75f, 2.0f}; /* [3, 2] */
static const float desc_enc_b[3] = {0.1f, -0.2f, 0.3f};
static const float desc_h0_w[6] = {1.0f, -0.5f, 0.25f, -1.5f, 0.75f, 0.5f}; /* [2, 3] */
static const float desc_h0_b[2] = {0.05f, -0.1f};
static const float desc_h1_w[3] = {0.3f, -0.6f, 0.9f}; /* [1, 3] */
static const float desc_h1_b[1] = {0.2f};
static const float desc_cls_w[6] = {-0.4f, 0.8f, 1.2f, 0.6f, -0.2f, -1.0f}; /* [2, 3] */
static const float desc_cls_b[2] = {-0.3f, 0.15f};
static const float desc_x[4] = {1.0f, -2.0f, 0.5f, 3.0f}; /* [2, 2] */

/* y[r, o] = b[o] + sum_i w[o, i] x[r, i] for 2 rows. */
static void ref_linear(const float *w, const float *b, int in, int out, const float *x, float *y) {
    for (int r = 0; r < 2; r++)
        for (int o = 0; o < out; o++) {
            float acc = b[o];
            for (int i = 0; i < in; i++)
                acc += w[o * in + i] * x[r * in + i];
            y[r * out + o] = acc;
        }
}

/* A graph calling into its children's children, as a PyTorch forward does:
 *
 *   enc    sequential(linear 2->3, relu)   a node, and the head of "enc.0"
 *   heads  module_list[linear 3->2, linear 3->1]
 *   tasks  module_dict{cls: linear 3->2, fork: fx_fork, fan: fx_fan}
 *   sum    add
 *
 *   enc: x                    h    = relu(enc.0(x))
 *   enc.0: x                  pre  = enc.0(x)     (a descendant of a node)
 *   heads.0: enc              a    = heads[0](h)
 *   heads.1: enc              b    = heads[1](h)
 *   tasks.cls: enc            c    = tasks["cls"](h)
 *   tasks.fork: tasks.cls     (c, 2c)
 *   tasks.fan: heads.1        (b, 2b, 3b)         (any outputs: 3 asked for)
 *   sum: heads.0, tasks.fork:1, tasks.fan:2       a + 2c + 3b
 *   outputs: sum, enc.0, tasks.fork:0, heads.1
 *
 * The nodes are listed in another order than they run. */
static nnm_module *build_descendants(void) {
    static const char *const nodes[] = {
        "sum: heads.0, tasks.fork:1, tasks.fan:2",
        "enc: x",
        " heads.0 : enc",
        "heads.1: enc",
        "tasks.cls: enc",
        "tasks.fork: tasks.cls",
        "tasks.fan: heads.1",
        "enc.0: x",
    };
    static const char *const outputs[] = {"sum", "enc.0", " tasks.fork:0 ", "heads.1"};
    nnm_module *g = NULL;
    CHECK_STATUS(graph_new(NULL, -1, nodes, (int)N_OF(nodes), outputs, (int)N_OF(outputs), &g),
                 NNM_OK);
    if (g == NULL)
        return NULL;
    nnm_module *enc = mk_plain("sequential");
    CU_ASSERT_PTR_NOT_NULL_FATAL(enc);
    adopt(enc, NULL, mk_linear(2, 3));
    adopt(enc, NULL, mk_plain("relu"));
    nnm_module *heads = mk_plain("module_list");
    CU_ASSERT_PTR_NOT_NULL_FATAL(heads);
    adopt(heads, NULL, mk_linear(3, 2));
    adopt(heads, NULL, mk_linear(3, 1));
    nnm_module *tasks = mk_plain("module_dict");
    CU_ASSERT_PTR_NOT_NULL_FATAL(tasks);
    adopt(tasks, "cls", mk_linear(3, 2));
    adopt(tasks, "fork", mk_plain("fx_fork"));
    adopt(tasks, "fan", mk_plain("fx_fan"));
    adopt(g, "tasks", tasks);
    adopt(g, "enc", enc);
    adopt(g, "sum", mk_plain("add"));
    adopt(g, "heads", heads);
    CU_ASSERT_TRUE(tu_write_f32(param_of(g, "enc.0.weight"), desc_enc_w, N_OF(desc_enc_w)));
    CU_ASSERT_TRUE(tu_write_f32(param_of(g, "enc.0.bias"), desc_enc_b, N_OF(desc_enc_b)));
    CU_ASSERT_TRUE(tu_write_f32(param_of(g, "heads.0.weight"), desc_h0_w, N_OF(desc_h0_w)));
    CU_ASSERT_TRUE(tu_write_f32(param_of(g, "heads.0.bias"), desc_h0_b, N_OF(desc_h0_b)));
    CU_ASSERT_TRUE(tu_write_f32(param_of(g, "heads.1.weight"), desc_h1_w, N_OF(desc_h1_w)));
    CU_ASSERT_TRUE(tu_write_f32(param_of(g, "heads.1.bias"), desc_h1_b, N_OF(desc_h1_b)));
    CU_ASSERT_TRUE(tu_write_f32(param_of(g, "tasks.cls.weight"), desc_cls_w, N_OF(desc_cls_w)));
    CU_ASSERT_TRUE(tu_write_f32(param_of(g, "tasks.cls.bias"), desc_cls_b, N_OF(desc_cls_b)));
    return g;
}

/* The four outputs computed in plain C. */
typedef struct desc_want {
    float sum[4], pre[6], c[4], b[2];
} desc_want;

static desc_want desc_reference(void) {
    desc_want w;
    float h[6], a[4];
    ref_linear(desc_enc_w, desc_enc_b, 2, 3, desc_x, w.pre);
    for (int i = 0; i < 6; i++)
        h[i] = w.pre[i] > 0 ? w.pre[i] : 0;
    ref_linear(desc_h0_w, desc_h0_b, 3, 2, h, a);
    ref_linear(desc_h1_w, desc_h1_b, 3, 1, h, w.b);
    ref_linear(desc_cls_w, desc_cls_b, 3, 2, h, w.c);
    for (int r = 0; r < 2; r++)
        for (int o = 0; o < 2; o++)
            w.sum[r * 2 + o] = a[r * 2 + o] + 2 * w.c[r * 2 + o] + 3 * w.b[r];
    return w;
}

static void check_desc_outputs(nnm_tensor *const *out, const desc_want *w) {
    CHECK_VALUES("sum", out[0], w->sum, 4);
    CHECK_VALUES("enc.0", out[1], w->pre, 6);
    CHECK_VALUES("tasks.fork:0", out[2], w->c, 4);
    CHECK_VALUES("heads.1", out[3], w->b, 2);
}

typedef struct any_counts {
    int pre, post;
} any_counts;

static nnm_status any_pre(void *user, nnm_module *m, nnm_tensor **in, uint32_t n_in) {
    (void)m;
    (void)in;
    (void)n_in;
    ((any_counts *)user)->pre++;
    return NNM_OK;
}

static nnm_status any_post(void *user, nnm_module *m, nnm_tensor *const *in, uint32_t n_in,
                           nnm_tensor **out, uint32_t n_out) {
    (void)m;
    (void)in;
    (void)n_in;
    (void)out;
    (void)n_out;
    ((any_counts *)user)->post++;
    return NNM_OK;
}

/* Values through a module_list, a module_dict and a sequential child, with
 * multi-output (fixed and any) descendants read by dotted NAME:K, and
 * gradients flowing into the descendants' parameters. */
static void test_descendant_values(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *g = build_descendants();
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    CHECK_STATUS(nnm_module_finalize(g), NNM_OK);
    CHECK_STATUS(nnm_module_zero_grad(g), NNM_OK);
    const desc_want w = desc_reference();
    const int64_t xshape[2] = {2, 2};
    nnm_tensor *x = tu_tf32(g_ctx, 2, xshape, desc_x);
    nnm_tensor *out[4] = {NULL};
    CHECK_STATUS(nnm_module_call(g, &x, 1, out, 4), NNM_OK);
    check_desc_outputs(out, &w);
    /* The same tensors as calling the descendants directly. */
    nnm_tensor *direct = NULL;
    CHECK_STATUS(nnm_module_call(nnm_module_get(g, "enc.0"), &x, 1, &direct, 1), NNM_OK);
    CHECK_VALUES("enc.0 direct", direct, w.pre, 6);
    nnm_tensor_release(direct);

    /* Gradients reach the descendants: d sum(sum) / d heads.1.bias =
     * 3 * (2 rows * 2 columns) = 12; d / d tasks.cls.bias = 2 * 2 rows. */
    nnm_tensor *loss = sum_all(out[0]);
    CHECK_STATUS(nnm_backward(loss, NULL, 0), NNM_OK);
    const float g_h1b[1] = {12}, g_clsb[2] = {4, 4}, g_h0b[2] = {2, 2};
    CHECK_VALUES("grad heads.1.bias", nnm_tensor_grad(param_of(g, "heads.1.bias")), g_h1b, 1);
    CHECK_VALUES("grad tasks.cls.bias", nnm_tensor_grad(param_of(g, "tasks.cls.bias")), g_clsb, 2);
    CHECK_VALUES("grad heads.0.bias", nnm_tensor_grad(param_of(g, "heads.0.bias")), g_h0b, 2);
    nnm_tensor_release(loss);
    for (int i = 0; i < 4; i++) {
        nnm_tensor_release(out[i]);
        out[i] = NULL;
    }

    /* Again, without finalize: the first forward maps the nodes. */
    nnm_module *g2 = build_descendants();
    CU_ASSERT_PTR_NOT_NULL_FATAL(g2);
    int was = nnm_grad_set_enabled(0);
    for (int round = 0; round < 2; round++) {
        CHECK_STATUS(nnm_module_call(g2, &x, 1, out, 4), NNM_OK);
        check_desc_outputs(out, &w);
        for (int i = 0; i < 4; i++) {
            nnm_tensor_release(out[i]);
            out[i] = NULL;
        }
    }
    nnm_grad_set_enabled(was);

    /* Parameter names are PyTorch's; the repr shows dotted outputs. */
    tu_named l = tu_params_of(g2);
    static const char *const want_names[] = {"tasks.cls.weight", "tasks.cls.bias",
                                             "enc.0.weight",     "enc.0.bias",
                                             "heads.0.weight",   "heads.0.bias",
                                             "heads.1.weight",   "heads.1.bias"};
    CU_ASSERT_EQUAL_FATAL(l.n, (int)N_OF(want_names));
    for (size_t i = 0; i < N_OF(want_names); i++)
        CU_ASSERT_STRING_EQUAL(l.names[i], want_names[i]);
    char buf[4096];
    CU_ASSERT_TRUE(nnm_module_repr(g2, buf, sizeof buf) > 0);
    if (strstr(buf, "outputs=[sum, enc.0, tasks.fork:0, heads.1]") == NULL)
        fprintf(stderr, "\n  repr: %s\n", buf);
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "outputs=[sum, enc.0, tasks.fork:0, heads.1]"));

    nnm_module_release(g2);
    nnm_tensor_release(x);
    nnm_module_release(g);
    LEAK_CHECK_END();
}

/* Descendants run through the call path: their hooks fire once per forward,
 * and a failure inside one fails the graph with its path and leaves nothing
 * behind. */
static void test_descendant_hooks_and_failures(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *g = build_descendants();
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    CHECK_STATUS(nnm_module_finalize(g), NNM_OK);
    any_counts h0 = {0, 0}, cls = {0, 0}, fan = {0, 0}, enc0 = {0, 0}, heads = {0, 0};
    nnm_hook_handle *hh = NULL;
    CHECK_STATUS(nnm_module_register_forward_pre_hook(nnm_module_get(g, "heads.0"), any_pre, &h0,
                                                      &hh),
                 NNM_OK);
    CHECK_STATUS(nnm_module_register_forward_hook(nnm_module_get(g, "tasks.cls"), any_post, &cls,
                                                  NULL),
                 NNM_OK);
    CHECK_STATUS(nnm_module_register_forward_hook(nnm_module_get(g, "tasks.fan"), any_post, &fan,
                                                  NULL),
                 NNM_OK);
    /* enc.0 runs twice per forward: as node "enc.0" and inside node "enc" */
    CHECK_STATUS(nnm_module_register_forward_pre_hook(nnm_module_get(g, "enc.0"), any_pre, &enc0,
                                                      NULL),
                 NNM_OK);
    /* the module_list itself is never called */
    CHECK_STATUS(nnm_module_register_forward_pre_hook(nnm_module_get(g, "heads"), any_pre, &heads,
                                                      NULL),
                 NNM_OK);
    const desc_want w = desc_reference();
    const int64_t xshape[2] = {2, 2};
    nnm_tensor *x = tu_tf32(g_ctx, 2, xshape, desc_x);
    CHECK_STATUS(nnm_tensor_set_requires_grad(x, 1), NNM_OK);
    nnm_tensor *out[4] = {NULL};
    for (int round = 0; round < 3; round++) {
        CHECK_STATUS(nnm_module_call(g, &x, 1, out, 4), NNM_OK);
        check_desc_outputs(out, &w);
        for (int i = 0; i < 4; i++) {
            nnm_tensor_release(out[i]);
            out[i] = NULL;
        }
    }
    CU_ASSERT_EQUAL(h0.pre, 3);
    CU_ASSERT_EQUAL(cls.post, 3);
    CU_ASSERT_EQUAL(fan.post, 3);
    CU_ASSERT_EQUAL(enc0.pre, 6);
    CU_ASSERT_EQUAL(heads.pre, 0);

    /* A descendant refusing halfway (enc, heads.* and tasks.cls have run):
     * the graph fails with its message and path, out stays NULL, every
     * intermediate is released (checked at the end). */
    nnm_hook_handle *hf = NULL;
    CHECK_STATUS(nnm_module_register_forward_pre_hook(nnm_module_get(g, "tasks.fork"), fail_pre,
                                                      NULL, &hf),
                 NNM_OK);
    CHECK_ERROR(nnm_module_call(g, &x, 1, out, 4), NNM_E_HOOK, "refused by a test hook on fork");
    CHECK_ERROR(nnm_module_call(g, &x, 1, out, 4), NNM_E_HOOK, "tasks.fork (fx_fork)");
    for (int i = 0; i < 4; i++)
        CU_ASSERT_PTR_NULL(out[i]);
    nnm_hook_remove(hf);
    nnm_hook_remove(hh);
    CHECK_STATUS(nnm_module_call(g, &x, 1, out, 4), NNM_OK);
    check_desc_outputs(out, &w);
    CU_ASSERT_EQUAL(h0.pre, 5); /* the two failed calls got past heads.0; not this one */
    for (int i = 0; i < 4; i++)
        nnm_tensor_release(out[i]);
    nnm_tensor_release(x);
    nnm_module_release(g);
    LEAK_CHECK_END();
}

/* Finalize-time errors for dotted nodes (and the same at the first
 * forward); fixing the tree makes the next forward map it again. */
static void test_descendant_errors(void) {
    LEAK_CHECK_BEGIN();
    const int64_t shape[2] = {1, 3};
    nnm_tensor *x = tu_tf32(g_ctx, 2, shape, NULL);
    nnm_tensor *y = NULL;

    /* heads has 2 entries; the graph calls heads.2 */
    static const char *const nodes[] = {"heads.0: x", "heads.2: x", "s: heads.0, heads.2"};
    nnm_module *g = NULL;
    CHECK_STATUS(graph_new(NULL, -1, nodes, 3, NULL, -1, &g), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    nnm_module *heads = mk_plain("module_list");
    CU_ASSERT_PTR_NOT_NULL_FATAL(heads);
    adopt(heads, NULL, mk_linear(3, 2));
    adopt(heads, NULL, mk_linear(3, 2));
    nnm_module_retain(heads);
    adopt(g, "heads", heads);
    adopt(g, "s", mk_plain("add"));
    CHECK_ERROR(nnm_module_finalize(g), NNM_E_INVALID,
                "(graph): config.nodes[1]: no descendant module named 'heads.2'");
    CHECK_ERROR(nnm_module_call(g, &x, 1, &y, 1), NNM_E_INVALID,
                "config.nodes[1]: no descendant module named 'heads.2'");
    CU_ASSERT_PTR_NULL(y);
    /* Through a parent: the message names the graph's path. */
    nnm_module *root = mk_plain("module_dict");
    CU_ASSERT_PTR_NOT_NULL_FATAL(root);
    nnm_module_retain(g);
    adopt(root, "block", g);
    CHECK_ERROR(nnm_module_finalize(root), NNM_E_INVALID,
                "block (graph): config.nodes[1]: no descendant module named 'heads.2'");
    /* Fixed: the next forward maps the nodes again (the graph's own children
     * did not change). */
    adopt(heads, NULL, mk_linear(3, 2));
    CHECK_STATUS(nnm_module_call(g, &x, 1, &y, 1), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL(y);
    nnm_tensor_release(y);
    y = NULL;
    CHECK_STATUS(nnm_module_finalize(root), NNM_OK);
    nnm_module_release(heads);
    nnm_module_release(g);
    nnm_module_release(root);

    /* a child that is neither a node nor the head of a dotted node */
    static const char *const nodes2[] = {"heads.0: x"};
    CHECK_STATUS(graph_new(NULL, -1, nodes2, 1, NULL, -1, &g), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    heads = mk_plain("module_list");
    CU_ASSERT_PTR_NOT_NULL_FATAL(heads);
    adopt(heads, NULL, mk_linear(3, 2));
    adopt(g, "heads", heads);
    CHECK_STATUS(nnm_module_finalize(g), NNM_OK);
    adopt(g, "head", mk_linear(3, 2)); /* "head" is no prefix of "heads" */
    CHECK_ERROR(nnm_module_finalize(g), NNM_E_INVALID,
                "child 'head' is not a node of the graph (config.nodes has no entry \"head: ...\" "
                "nor \"head.NAME: ...\")");
    CHECK_ERROR(nnm_module_call(g, &x, 1, &y, 1), NNM_E_INVALID,
                "child 'head' is not a node of the graph");
    CU_ASSERT_PTR_NULL(y);
    nnm_module_release(g);

    /* the head of a dotted node is no child at all; a path deeper than the
     * tree; a path through a leaf */
    static const char *const nodes3[][2] = {
        {"r: x", "nope.0: r"}, {"r: x", "r.0.w: r"}, {"r: x", "r.weight: r"}};
    static const char *const needles3[] = {
        "config.nodes[1]: no descendant module named 'nope.0'",
        "config.nodes[1]: no descendant module named 'r.0.w'",
        "config.nodes[1]: no descendant module named 'r.weight'"};
    for (size_t i = 0; i < N_OF(nodes3); i++) {
        CHECK_STATUS(graph_new(NULL, -1, nodes3[i], 2, NULL, -1, &g), NNM_OK);
        CU_ASSERT_PTR_NOT_NULL_FATAL(g);
        adopt(g, "r", i == 1 ? mk_plain("sequential") : mk_linear(3, 3));
        CHECK_ERROR(nnm_module_finalize(g), NNM_E_INVALID, needles3[i]);
        nnm_module_release(g);
    }

    /* arity of a descendant: inputs, outputs read by a node or returned */
    static const struct {
        const char *nodes[2];
        int n_nodes;
        const char *outputs[1];
        int n_outputs;
        const char *needle;
    } arity[] = {
        {{"t.lin: x, x"}, 1, {0}, -1,
         "config.nodes[0]: descendant 't.lin' takes 1 input, the node lists 2"},
        {{"t.sub: x"}, 1, {0}, -1,
         "config.nodes[0]: descendant 't.sub' takes 2 inputs, the node lists 1"},
        {{"t.fork: x", "t.sub: t.fork:2, x"}, 2, {0}, -1,
         "config.nodes[1]: 't.fork:2': descendant 't.fork' has 2 outputs"},
        {{"t.lin: x"}, 1, {"t.lin:1"}, 1,
         "config.outputs[0]: 't.lin:1': descendant 't.lin' has 1 output"},
    };
    for (size_t i = 0; i < N_OF(arity); i++) {
        CHECK_STATUS(graph_new(NULL, -1, arity[i].nodes, arity[i].n_nodes, arity[i].outputs,
                               arity[i].n_outputs, &g),
                     NNM_OK);
        CU_ASSERT_PTR_NOT_NULL_FATAL(g);
        nnm_module *t = mk_plain("module_dict");
        CU_ASSERT_PTR_NOT_NULL_FATAL(t);
        adopt(t, "lin", mk_linear(3, 3));
        adopt(t, "sub", mk_plain("fx_sub"));
        adopt(t, "fork", mk_plain("fx_fork"));
        adopt(g, "t", t);
        CHECK_ERROR(nnm_module_finalize(g), NNM_E_INVALID, arity[i].needle);
        nnm_module_release(g);
    }

    /* A dotted node may name a module_list itself: the call is refused as
     * calling it directly is. */
    static const char *const nodes4[] = {"m.inner: x"};
    CHECK_STATUS(graph_new(NULL, -1, nodes4, 1, NULL, -1, &g), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    nnm_module *m = mk_plain("module_dict");
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    adopt(m, "inner", mk_plain("module_list"));
    adopt(g, "m", m);
    CHECK_STATUS(nnm_module_finalize(g), NNM_OK);
    CHECK_ERROR(nnm_module_call(g, &x, 1, &y, 1), NNM_E_UNSUPPORTED,
                "module_list is not callable");
    CU_ASSERT_PTR_NULL(y);
    nnm_module_release(g);

    nnm_tensor_release(x);
    LEAK_CHECK_END();
}

/* ------------------------------------------------------------------------ */
/* module_list, module_dict                                                  */
/* ------------------------------------------------------------------------ */

static void test_module_list_and_dict(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *root = mk_plain("module_dict");
    nnm_module *list = mk_plain("module_list");
    CU_ASSERT_PTR_NOT_NULL_FATAL(root);
    CU_ASSERT_PTR_NOT_NULL_FATAL(list);
    nnm_module *l0 = mk_linear(3, 4), *l1 = mk_linear(4, 2);
    adopt(list, NULL, l0);
    adopt(list, NULL, l1);
    adopt(root, "layers", list);
    adopt(root, "head", mk_linear(2, 1));
    CHECK_STATUS(nnm_module_finalize(root), NNM_OK);

    CU_ASSERT_PTR_EQUAL(nnm_module_get(root, "layers.0"), l0);
    CU_ASSERT_PTR_EQUAL(nnm_module_get(root, "layers.1"), l1);
    CU_ASSERT_STRING_EQUAL(nnm_module_name(l1), "1");
    tu_named p = tu_params_of(root);
    static const char *const want[] = {"layers.0.weight", "layers.0.bias", "layers.1.weight",
                                       "layers.1.bias",   "head.weight",   "head.bias"};
    CU_ASSERT_EQUAL_FATAL(p.n, (int)N_OF(want));
    for (size_t i = 0; i < N_OF(want); i++)
        CU_ASSERT_STRING_EQUAL(p.names[i], want[i]);

    /* Neither container is callable; their children are. */
    const int64_t shape[2] = {1, 3};
    nnm_tensor *x = tu_tf32(g_ctx, 2, shape, NULL);
    nnm_tensor *y = (nnm_tensor *)&y;
    CHECK_ERROR(nnm_module_call(list, &x, 1, &y, 1), NNM_E_UNSUPPORTED,
                "module_list is not callable: call its children (torch.nn.ModuleList has no "
                "forward)");
    CU_ASSERT_PTR_NULL(y);
    CHECK_ERROR(nnm_module_call(root, &x, 1, &y, 1), NNM_E_UNSUPPORTED,
                "module_dict is not callable: call its children (torch.nn.ModuleDict has no "
                "forward)");
    CHECK_ERROR(nnm_module_call(list, NULL, 0, NULL, 0), NNM_E_UNSUPPORTED, "layers (module_list)");
    CHECK_STATUS(nnm_module_call(nnm_module_get(root, "layers.0"), &x, 1, &y, 1), NNM_OK);
    nnm_tensor_release(y);

    char buf[2048];
    CU_ASSERT_TRUE(nnm_module_repr(root, buf, sizeof buf) > 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "(layers): ModuleList(\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "(0): Linear(in_features=3, out_features=4"));
    nnm_tensor_release(x);
    nnm_module_release(root);
    LEAK_CHECK_END();
}

/* ------------------------------------------------------------------------ */
/* add                                                                       */
/* ------------------------------------------------------------------------ */

static void test_add(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *add = mk_plain("add");
    CU_ASSERT_PTR_NOT_NULL_FATAL(add);
    const int64_t s23[2] = {2, 3}, s3[1] = {3}, s1[1] = {1};
    const float av[6] = {1, 2, 3, 4, 5, 6}, bv[3] = {10, 20, 30}, cv[1] = {100};
    nnm_tensor *in[3] = {tu_tf32(g_ctx, 2, s23, av), tu_tf32(g_ctx, 1, s3, bv),
                         tu_tf32(g_ctx, 1, s1, cv)};
    nnm_tensor *y = NULL;
    CHECK_STATUS(nnm_module_call(add, in, 3, &y, 1), NNM_OK);
    const float want[6] = {111, 122, 133, 114, 125, 136};
    CHECK_VALUES("a + b + c", y, want, 6);
    nnm_tensor_release(y);

    CHECK_STATUS(nnm_module_call(add, in, 1, &y, 1), NNM_OK);
    CU_ASSERT_PTR_EQUAL(y, in[0]); /* one input: that tensor itself */
    nnm_tensor_release(y);

    CHECK_ERROR(nnm_module_call(add, NULL, 0, &y, 1), NNM_E_SHAPE, "add takes at least 1 input");
    CU_ASSERT_PTR_NULL(y);
    nnm_tensor *bad[2] = {in[0], NULL};
    const int64_t s4[1] = {4};
    bad[1] = tu_tf32(g_ctx, 1, s4, NULL);
    CHECK_STATUS(nnm_module_call(add, bad, 2, &y, 1), NNM_E_SHAPE); /* [2, 3] + [4] */
    CU_ASSERT_PTR_NULL(y);
    nnm_tensor_release(bad[1]);
    for (int i = 0; i < 3; i++)
        nnm_tensor_release(in[i]);
    nnm_module_release(add);
    LEAK_CHECK_END();
}

/* ------------------------------------------------------------------------ */
/* Declared config schemas                                                   */
/* ------------------------------------------------------------------------ */

static nnm_status create_with(const char *layer, nnm_config *cfg) {
    nnm_module *m = (nnm_module *)&m;
    nnm_status st = nnm_module_create(g_ctx, layer, cfg, &m);
    CU_ASSERT_TRUE(st == NNM_OK ? m != NULL : m == NULL);
    nnm_module_release(m);
    nnm_config_free(cfg);
    return st;
}

static nnm_config *cfg_new(void) {
    nnm_config *cfg = NULL;
    CHECK_STATUS(nnm_config_new(&cfg), NNM_OK);
    return cfg;
}

static void test_schema_linear(void) {
    LEAK_CHECK_BEGIN();
    nnm_config *cfg = cfg_new();
    nnm_config_set_str(cfg, "in_features", "3");
    nnm_config_set_int(cfg, "out_features", 2);
    CHECK_ERROR(create_with("linear", cfg), NNM_E_TYPE,
                "linear: config.in_features: expected integer, got string");

    /* Before create: linear's create would first miss in_features; the schema
     * check reports the wrong type of the key that is there. */
    cfg = cfg_new();
    nnm_config_set_str(cfg, "out_features", "2");
    CHECK_ERROR(create_with("linear", cfg), NNM_E_TYPE,
                "linear: config.out_features: expected integer, got string");

    cfg = cfg_new();
    nnm_config_set_int(cfg, "in_features", 3);
    CHECK_ERROR(create_with("linear", cfg), NNM_E_NOT_FOUND,
                "linear: config.out_features: required integer is missing");

    cfg = cfg_new();
    nnm_config_set_int(cfg, "in_features", 3);
    nnm_config_set_int(cfg, "out_features", 2);
    nnm_config_set_bool(cfg, "biass", 0);
    CHECK_ERROR(create_with("linear", cfg), NNM_E_INVALID,
                "linear: config.biass: unknown key (layer linear takes no such config)");

    cfg = cfg_new();
    nnm_config_set_int(cfg, "in_features", 3);
    nnm_config_set_int(cfg, "out_features", 2);
    nnm_config_set_int(cfg, "bias", 1);
    CHECK_ERROR(create_with("linear", cfg), NNM_E_TYPE,
                "linear: config.bias: expected bool, got integer");

    cfg = cfg_new();
    nnm_config_set_int(cfg, "in_features", 3);
    nnm_config_set_int(cfg, "out_features", 2);
    nnm_config_set_bool(cfg, "bias", 0);
    CHECK_STATUS(create_with("linear", cfg), NNM_OK);
    LEAK_CHECK_END();
}

static void test_schema_others(void) {
    LEAK_CHECK_BEGIN();
    static const char *const no_config[] = {"relu",  "identity",    "sequential", "add",
                                            "module_list", "module_dict"};
    for (size_t i = 0; i < N_OF(no_config); i++) {
        nnm_config *cfg = cfg_new();
        nnm_config_set_bool(cfg, "inplace", 1);
        char needle[128];
        snprintf(needle, sizeof needle,
                 "%s: config.inplace: unknown key (layer %s takes no such config)", no_config[i],
                 no_config[i]);
        CHECK_ERROR(create_with(no_config[i], cfg), NNM_E_INVALID, needle);
    }

    nnm_config *cfg = cfg_new();
    nnm_config_set_int(cfg, "reduction", 1);
    CHECK_ERROR(create_with("mse_loss", cfg), NNM_E_TYPE,
                "mse_loss: config.reduction: expected string, got integer");
    cfg = cfg_new();
    nnm_config_set_int(cfg, "ignore_index", 1);
    CHECK_ERROR(create_with("mse_loss", cfg), NNM_E_INVALID, "config.ignore_index: unknown key");
    cfg = cfg_new();
    nnm_config_set_int(cfg, "label_smoothing", 0); /* an integer is a fine float */
    nnm_config_set_int(cfg, "ignore_index", 3);
    nnm_config_set_str(cfg, "reduction", "sum");
    CHECK_STATUS(create_with("cross_entropy", cfg), NNM_OK);
    cfg = cfg_new();
    nnm_config_set_float(cfg, "ignore_index", 1.5);
    CHECK_ERROR(create_with("nll_loss", cfg), NNM_E_TYPE,
                "nll_loss: config.ignore_index: expected integer, got float");
    cfg = cfg_new();
    nnm_config_set_str(cfg, "label_smoothing", "0.1");
    CHECK_ERROR(create_with("bce_with_logits", cfg), NNM_E_INVALID,
                "config.label_smoothing: unknown key");

    cfg = cfg_new();
    const int64_t ints[2] = {1, 2};
    nnm_config_set_ints(cfg, "nodes", ints, 2);
    CHECK_ERROR(create_with("graph", cfg), NNM_E_TYPE,
                "graph: config.nodes: expected list of strings, got list of integers");
    cfg = cfg_new();
    nnm_config_set_str(cfg, "nodes", "r: x");
    CHECK_ERROR(create_with("graph", cfg), NNM_E_TYPE,
                "graph: config.nodes: expected list of strings, got string");
    cfg = cfg_new();
    const char *const nodes[1] = {"r: x"};
    nnm_config_set_strs(cfg, "nodes", nodes, 1);
    nnm_config_set_strs(cfg, "edges", nodes, 1);
    CHECK_ERROR(create_with("graph", cfg), NNM_E_INVALID,
                "graph: config.edges: unknown key (layer graph takes no such config)");
    LEAK_CHECK_END();
}

/* Every layer this change touched declares a schema, and it lists what its
 * create reads. */
static void test_schema_declared(void) {
    static const struct {
        const char *layer;
        uint32_t n;
        const char *keys[8];
        uint32_t required; /* bit i: keys[i] is required */
    } want[] = {
        {"linear", 3, {"in_features", "out_features", "bias"}, 3u},
        {"relu", 0, {0}, 0},
        {"identity", 0, {0}, 0},
        {"sequential", 0, {0}, 0},
        {"mse_loss", 1, {"reduction"}, 0},
        {"bce_with_logits", 3, {"reduction", "weight", "pos_weight"}, 0}, /* 1.1: weights */
        {"nll_loss", 3, {"reduction", "ignore_index", "weight"}, 0},
        {"cross_entropy", 4, {"reduction", "ignore_index", "label_smoothing", "weight"}, 0},
        {"add", 2, {"other", "alpha"}, 0}, /* 1.1: optional scalar operand */
        {"module_list", 0, {0}, 0},
        {"module_dict", 0, {0}, 0},
        {"graph", 8, {"inputs", "nodes", "outputs", "parameters", "buffers", "output_names",
                      "constants", "reads"}, 2u}, /* 1.2: constants, reads */
    };
    for (size_t i = 0; i < N_OF(want); i++) {
        const nnm_layer_vtable *vt = NULL;
        CHECK_STATUS(nnm_layer_find(g_ctx, want[i].layer, &vt), NNM_OK);
        if (vt == NULL)
            continue;
        if (vt->config_fields == NULL || vt->n_config_fields != want[i].n)
            fprintf(stderr, "\n  %s: schema %p with %u fields, want %u\n", want[i].layer,
                    (const void *)vt->config_fields, (unsigned)vt->n_config_fields,
                    (unsigned)want[i].n);
        CU_ASSERT_PTR_NOT_NULL(vt->config_fields);
        CU_ASSERT_EQUAL(vt->n_config_fields, want[i].n);
        for (uint32_t j = 0; j < want[i].n && j < vt->n_config_fields; j++) {
            CU_ASSERT_STRING_EQUAL(vt->config_fields[j].key, want[i].keys[j]);
            CU_ASSERT_EQUAL((int)((vt->config_fields[j].flags & NNM_CONFIG_REQUIRED) != 0),
                            (int)((want[i].required >> j) & 1u));
            CU_ASSERT_PTR_NOT_NULL(vt->config_fields[j].doc);
        }
    }
}

/* A layer without a declared schema (fx_any) takes any config through the C
 * API, including what no manifest can hold; nnm_manifest_from_module refuses
 * those by path instead of writing a document that would not read back. A
 * key of 255 bytes is the longest both readers take, and it round-trips. */
static nnm_status describe_with(nnm_config *cfg) {
    nnm_module *seq = NULL, *m = NULL;
    nnm_manifest *mf = (nnm_manifest *)&mf;
    CHECK_STATUS(nnm_module_create(g_ctx, "sequential", NULL, &seq), NNM_OK);
    CHECK_STATUS(nnm_module_create(g_ctx, "fx_any", cfg, &m), NNM_OK);
    nnm_config_free(cfg);
    CHECK_STATUS(nnm_module_add_child(seq, "body", m), NNM_OK);
    nnm_module_release(m);
    nnm_status st = nnm_manifest_from_module(seq, &mf);
    CU_ASSERT_TRUE(st == NNM_OK ? mf != NULL : mf == NULL);
    if (st == NNM_OK) {
        CU_ASSERT_TRUE(tu_manifest_reads_back(g_ctx, mf));
    }
    nnm_manifest_free(mf);
    nnm_module_release(seq);
    return st;
}

static void test_schema_unwritable(void) {
    LEAK_CHECK_BEGIN();
    char key[300];
    memset(key, 'k', sizeof key);
    key[255] = 0;
    nnm_config *cfg = cfg_new();
    nnm_config_set_str(cfg, "key", key);
    nnm_config_set_int(cfg, key, 1); /* 255 bytes: fine */
    CHECK_STATUS(describe_with(cfg), NNM_OK);
    key[255] = 'k';
    key[256] = 0;
    cfg = cfg_new();
    nnm_config_set_str(cfg, "key", key);
    nnm_config_set_int(cfg, key, 1);
    CHECK_ERROR(describe_with(cfg), NNM_E_INVALID,
                "root.children[0].config: key #1 is longer than 255 bytes or not UTF-8");
    cfg = cfg_new();
    nnm_config_set_str(cfg, "key", "caf\xc3");
    nnm_config_set_int(cfg, "caf\xc3", 1);
    CHECK_ERROR(describe_with(cfg), NNM_E_INVALID,
                "root.children[0].config.key: text that is not UTF-8 cannot be written");
    cfg = cfg_new();
    nnm_config_set_int(cfg, "n", 1);
    nnm_config_set_float(cfg, "slope", NAN);
    CHECK_ERROR(describe_with(cfg), NNM_E_INVALID,
                "root.children[0].config.slope: the non-finite float nan cannot be written");
    const double fl[2] = {1.0, -INFINITY};
    cfg = cfg_new();
    nnm_config_set_floats(cfg, "fs", fl, 2);
    CHECK_ERROR(describe_with(cfg), NNM_E_INVALID, "config.fs: the non-finite float -inf");
    cfg = cfg_new();
    nnm_config_set_str(cfg, "s", "caf\xc3"); /* truncated UTF-8 */
    CHECK_ERROR(describe_with(cfg), NNM_E_INVALID,
                "root.children[0].config.s: text that is not UTF-8 cannot be written");
    const char *const strs[2] = {"ok", "\xff"};
    cfg = cfg_new();
    nnm_config_set_strs(cfg, "ss", strs, 2);
    CHECK_ERROR(describe_with(cfg), NNM_E_INVALID, "config.ss: text that is not UTF-8");
    /* and a config of every kind that a manifest can hold goes through */
    const char *const fine[2] = {"ok", "caf\xc3\xa9"};
    cfg = cfg_new();
    nnm_config_set_int(cfg, "n", -7);
    nnm_config_set_float(cfg, "slope", -0.0);
    nnm_config_set_floats(cfg, "fs", fl, 1);
    nnm_config_set_str(cfg, "s", "");
    nnm_config_set_strs(cfg, "ss", fine, 2);
    CHECK_STATUS(describe_with(cfg), NNM_OK);
    LEAK_CHECK_END();
}

/* ------------------------------------------------------------------------ */

int main(void) {
    const char *dev = getenv("NNM_TEST_DEVICE");
    if (dev != NULL && *dev && strcmp(dev, "cpu") != 0) { /* the goldens, on that device */
        CU_pSuite d = tu_suite("graph on NNM_TEST_DEVICE", suite_init, suite_clean_device);
        if (d == NULL)
            return 2;
        CU_add_test(d, "residual block vs PyTorch (forward, grads)", test_residual_block_golden);
        CU_add_test(d, "residual block listed backwards", test_residual_block_listed_backwards);
        return tu_run();
    }
    CU_pSuite s = tu_suite("graph", suite_init, suite_clean);
    if (s == NULL)
        return 2;
    CU_add_test(s, "residual block vs PyTorch (forward, grads)", test_residual_block_golden);
    CU_add_test(s, "residual block listed backwards", test_residual_block_listed_backwards);
    CU_add_test(s, "parameter names and repr", test_residual_block_names_and_repr);
    CU_add_test(s, "multi-input, multi-output, input-less nodes", test_multi_input_output);
    CU_add_test(s, "graph inputs as outputs", test_output_is_graph_input);
    CU_add_test(s, "forward arity", test_forward_arity);
    CU_add_test(s, "intermediates released after last use",
                test_intermediates_released_after_last_use);
    CU_add_test(s, "child hooks fire; child failures leave nothing", test_child_hooks_and_failures);
    CU_add_test(s, "re-entrant forward", test_reentrant_forward);
    CU_add_test(s, "create errors", test_create_errors);
    CU_add_test(s, "create corner cases", test_create_corner_cases);
    CU_add_test(s, "finalize: missing child (and lazily)", test_finalize_missing_child);
    CU_add_test(s, "finalize: extra child", test_finalize_extra_child);
    CU_add_test(s, "finalize: arity", test_finalize_arity);
    CU_add_test(s, "descendant nodes: values through module_list and module_dict",
                test_descendant_values);
    CU_add_test(s, "descendant nodes: hooks fire; failures leave nothing",
                test_descendant_hooks_and_failures);
    CU_add_test(s, "descendant nodes: finalize errors", test_descendant_errors);

    CU_pSuite c = tu_suite("containers and add", suite_init, suite_clean);
    if (c == NULL)
        return 2;
    CU_add_test(c, "module_list and module_dict", test_module_list_and_dict);
    CU_add_test(c, "add", test_add);

    CU_pSuite k = tu_suite("config schemas", suite_init, suite_clean);
    if (k == NULL)
        return 2;
    CU_add_test(k, "linear", test_schema_linear);
    CU_add_test(k, "other layers", test_schema_others);
    CU_add_test(k, "declared", test_schema_declared);
    CU_add_test(k, "manifests refuse configs they cannot hold", test_schema_unwritable);

    return tu_run();
}
