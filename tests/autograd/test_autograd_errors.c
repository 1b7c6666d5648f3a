/* tests/autograd/test_autograd_errors.c - autograd, optimizer and loss-layer
 * contracts and bad input: a second backward through a freed graph, backward
 * of a non-scalar without a gradient, optimizers over no parameters or with
 * bad options, no-grad scopes, accumulation across backward calls, zero_grad,
 * detach, and the loss layers' config and input checks. Each case returns a
 * clear status with a message, never a crash, and leaves nothing alive.
 */
#include "ag_test.h"

/* A [4, 3] input, a Linear(3, 2) and an MSE against a [4, 2] target. */
typedef struct small_net {
    nnm_module *lin, *mse;
    nnm_tensor *x, *t;
    tu_named pl;
} small_net;

static void small_net_init(small_net *n) {
    float xv[12], tv[8];
    tu_fill_uniform(xv, 12, 1, -1.0, 1.0);
    tu_fill_uniform(tv, 8, 2, -1.0, 1.0);
    n->lin = tu_linear(g_ctx, "linear", 3, 2, 1);
    n->mse = mk_loss("mse_loss", NULL, INT64_MIN, -1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(n->lin);
    CU_ASSERT_PTR_NOT_NULL_FATAL(n->mse);
    n->x = tu_tf32(g_ctx, 2, (int64_t[]){4, 3}, xv);
    n->t = tu_tf32(g_ctx, 2, (int64_t[]){4, 2}, tv);
    n->pl = tu_params_of(n->lin);
    CU_ASSERT_EQUAL_FATAL(n->pl.n, 2);
}

static void small_net_free(small_net *n) {
    nnm_module_zero_grad(n->lin);
    nnm_tensor_release(n->x);
    nnm_tensor_release(n->t);
    nnm_module_release(n->lin);
    nnm_module_release(n->mse);
}

static nnm_tensor *small_net_loss(small_net *n) {
    nnm_tensor *y = NULL, *loss = NULL;
    CHECK_STATUS(tu_call1(n->lin, n->x, &y), NNM_OK);
    CHECK_STATUS(tu_call2(n->mse, y, n->t, &loss), NNM_OK);
    nnm_tensor_release(y);
    return loss;
}

/* Copies of both parameters' gradients (NULL where unset). */
static void grads_of(small_net *n, float *g[2], int64_t len[2]) {
    for (int i = 0; i < 2; i++)
        g[i] = tu_read_f32(nnm_tensor_grad(n->pl.t[i]), &len[i]);
}

/* ------------------------------------------------------------------------ */
/* Backward                                                                  */
/* ------------------------------------------------------------------------ */

static void test_backward_twice(void) {
    LEAK_CHECK_BEGIN();
    small_net n;
    small_net_init(&n);
    nnm_tensor *loss = small_net_loss(&n);
    CU_ASSERT_PTR_NOT_NULL_FATAL(loss);
    CHECK_STATUS(nnm_backward(loss, NULL, 0), NNM_OK);
    float *g1[2];
    int64_t len[2];
    grads_of(&n, g1, len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g1[0]);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g1[1]);

    /* The graph was freed: a second backward is NNM_E_STATE and changes nothing. */
    CHECK_ERROR(nnm_backward(loss, NULL, 0), NNM_E_STATE, "second time");
    float *g2[2];
    int64_t len2[2];
    grads_of(&n, g2, len2);
    for (int i = 0; i < 2; i++) {
        CU_ASSERT_PTR_NOT_NULL_FATAL(g2[i]);
        CU_ASSERT_EQUAL(ag_mismatch("grad after failed backward", g2[i], g1[i], len[i], 0, 0,
                                    NULL),
                        0);
        free(g2[i]);
    }
    /* A third attempt says the same. */
    CHECK_ERROR(nnm_backward(loss, NULL, 0), NNM_E_STATE, "second time");
    nnm_tensor_release(loss);

    /* retain_graph keeps it: two backward calls accumulate twice the gradient. */
    CHECK_STATUS(nnm_module_zero_grad(n.lin), NNM_OK);
    CU_ASSERT_PTR_NULL(nnm_tensor_grad(n.pl.t[0]));
    loss = small_net_loss(&n);
    CU_ASSERT_PTR_NOT_NULL_FATAL(loss);
    CHECK_STATUS(nnm_backward(loss, NULL, 1), NNM_OK);
    CHECK_STATUS(nnm_backward(loss, NULL, 0), NNM_OK);
    grads_of(&n, g2, len2);
    for (int i = 0; i < 2; i++) {
        CU_ASSERT_PTR_NOT_NULL_FATAL(g2[i]);
        for (int64_t j = 0; j < len[i]; j++)
            g1[i][j] *= 2.0f;
        CU_ASSERT_EQUAL(ag_mismatch("grad after retain_graph + backward", g2[i], g1[i], len[i],
                                    1e-6, 1e-7, NULL),
                        0);
        free(g2[i]);
    }
    CHECK_ERROR(nnm_backward(loss, NULL, 0), NNM_E_STATE, "retain_graph");
    nnm_tensor_release(loss);

    /* A fresh forward after the failure works again. */
    CHECK_STATUS(nnm_module_zero_grad(n.lin), NNM_OK);
    loss = small_net_loss(&n);
    CHECK_STATUS(nnm_backward(loss, NULL, 0), NNM_OK);
    nnm_tensor_release(loss);
    for (int i = 0; i < 2; i++)
        free(g1[i]);
    small_net_free(&n);
    LEAK_CHECK_END();
}

static void test_backward_nonscalar(void) {
    LEAK_CHECK_BEGIN();
    small_net n;
    small_net_init(&n);
    nnm_tensor *y = NULL;
    CHECK_STATUS(tu_call1(n.lin, n.x, &y), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(y);
    CHECK_ERROR(nnm_backward(y, NULL, 0), NNM_E_INVALID,
                "grad can be implicitly created only for scalar outputs");
    CU_ASSERT_PTR_NULL(nnm_tensor_grad(n.pl.t[0]));
    CU_ASSERT_PTR_NULL(nnm_tensor_grad(n.pl.t[1]));

    /* A gradient of the wrong shape (PyTorch: "Mismatch in shape"), even one
     * with as many elements as the output, is refused before anything runs. */
    float gv[8];
    tu_fill_uniform(gv, 8, 3, -1.0, 1.0);
    nnm_tensor *bad = tu_tf32(g_ctx, 2, (int64_t[]){2, 4}, gv);
    nnm_tensor *bad2 = tu_tf32(g_ctx, 1, (int64_t[]){8}, gv);
    nnm_tensor *bad3 = tu_tf32(g_ctx, 2, (int64_t[]){4, 3}, NULL);
    CHECK_STATUS(nnm_backward(y, bad2, 0), NNM_E_SHAPE);
    CHECK_STATUS(nnm_backward(y, bad3, 0), NNM_E_SHAPE);
    CHECK_STATUS(nnm_backward(y, bad, 0), NNM_E_SHAPE);
    CU_ASSERT_PTR_NULL(nnm_tensor_grad(n.pl.t[0]));
    CU_ASSERT_PTR_NULL(nnm_tensor_grad(n.pl.t[1]));

    /* The refused calls left the graph intact. With an explicit gradient g:
     * dW = g^T x, db = sum_rows g. */
    nnm_tensor *g = tu_tf32(g_ctx, 2, (int64_t[]){4, 2}, gv);
    CHECK_STATUS(nnm_backward(y, g, 0), NNM_OK);
    float xv[12];
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(n.x, xv, 12), NNM_OK);
    float want_w[6] = {0}, want_b[2] = {0};
    for (int r = 0; r < 4; r++)
        for (int o = 0; o < 2; o++) {
            want_b[o] += gv[r * 2 + o];
            for (int i = 0; i < 3; i++)
                want_w[o * 3 + i] += gv[r * 2 + o] * xv[r * 3 + i];
        }
    float *gw = tu_read_f32(nnm_tensor_grad(tu_named_get(&n.pl, "weight")), NULL);
    float *gb = tu_read_f32(nnm_tensor_grad(tu_named_get(&n.pl, "bias")), NULL);
    CU_ASSERT_PTR_NOT_NULL(gw);
    CU_ASSERT_PTR_NOT_NULL(gb);
    if (gw != NULL && gb != NULL) {
        CU_ASSERT_EQUAL(ag_mismatch("dW", gw, want_w, 6, 1e-5, 1e-6, NULL), 0);
        CU_ASSERT_EQUAL(ag_mismatch("db", gb, want_b, 2, 1e-5, 1e-6, NULL), 0);
    }
    free(gw);
    free(gb);
    nnm_tensor_release(g);
    nnm_tensor_release(bad);
    nnm_tensor_release(bad2);
    nnm_tensor_release(bad3);
    nnm_tensor_release(y);
    small_net_free(&n);
    LEAK_CHECK_END();
}

/* A gradient with the output's element count but another shape is refused
 * up front; it must never broadcast into a .grad of the wrong shape. */
static void test_backward_grad_shape(void) {
    LEAK_CHECK_BEGIN();
    float v[4] = {0.1f, 0.2f, 0.3f, 0.4f};
    nnm_tensor *x = tu_tf32(g_ctx, 2, (int64_t[]){1, 4}, v);
    CHECK_STATUS(nnm_tensor_set_requires_grad(x, 1), NNM_OK);
    nnm_tensor *y = NULL;
    CHECK_STATUS(nnm_op_unary(g_ctx, NNM_UNARY_TANH, x, 0.0, &y), NNM_OK);
    nnm_tensor *g41 = tu_tf32(g_ctx, 2, (int64_t[]){4, 1}, v);
    nnm_tensor *g14 = tu_tf32(g_ctx, 2, (int64_t[]){1, 4}, v);
    CHECK_STATUS(nnm_backward(y, g41, 0), NNM_E_SHAPE);
    nnm_tensor *gx = nnm_tensor_grad(x);
    if (gx != NULL && !same_shape(gx, x))
        fprintf(stderr, "\n  x is [1, 4] but x.grad has %d dims, %lld elements\n",
                (int)nnm_tensor_desc_get(gx)->ndim, (long long)nnm_tensor_numel(gx));
    CU_ASSERT_PTR_NULL(gx);
    nnm_tensor_set_grad(x, NULL);
    /* the refused call left the graph as it was */
    CHECK_STATUS(nnm_backward(y, g14, 0), NNM_OK);
    gx = nnm_tensor_grad(x);
    CU_ASSERT_TRUE(gx != NULL && same_shape(gx, x));
    nnm_tensor_set_grad(x, NULL);
    nnm_tensor_release(g41);
    nnm_tensor_release(g14);
    nnm_tensor_release(y);
    nnm_tensor_release(x);
    LEAK_CHECK_END();
}

static void test_backward_without_graph(void) {
    LEAK_CHECK_BEGIN();
    CU_ASSERT_EQUAL(nnm_backward(NULL, NULL, 0), NNM_E_INVALID);
    float v[3] = {1, 2, 3};
    nnm_tensor *x = tu_tf32(g_ctx, 1, (int64_t[]){3}, v);
    nnm_tensor *s = NULL;
    CHECK_STATUS(nnm_op_reduce(g_ctx, NNM_REDUCE_SUM, x, NULL, 0, 0, &s), NNM_OK);
    CU_ASSERT_FALSE(nnm_tensor_requires_grad(s));
    /* Nothing requires grad: a clear error, as PyTorch's "does not require grad". */
    CHECK_ERROR(nnm_backward(s, NULL, 0), NNM_E_INVALID, "does not require grad");
    nnm_tensor_release(s);

    /* requires_grad is for f32 leaves only. */
    nnm_tensor *i = tu_ti64(g_ctx, 1, (int64_t[]){3}, (int64_t[]){1, 2, 3});
    CU_ASSERT_NOT_EQUAL(nnm_tensor_set_requires_grad(i, 1), NNM_OK);
    CU_ASSERT_FALSE(nnm_tensor_requires_grad(i));
    nnm_tensor_release(i);
    CHECK_STATUS(nnm_tensor_set_requires_grad(x, 1), NNM_OK);
    nnm_tensor *e = NULL;
    CHECK_STATUS(nnm_op_unary(g_ctx, NNM_UNARY_EXP, x, 0.0, &e), NNM_OK);
    CU_ASSERT_TRUE(nnm_tensor_requires_grad(e));
    CU_ASSERT_FALSE(nnm_tensor_is_leaf(e));
    CU_ASSERT_TRUE(nnm_tensor_is_leaf(x));
    CU_ASSERT_NOT_EQUAL(nnm_tensor_set_requires_grad(e, 0), NNM_OK); /* not a leaf */
    nnm_tensor_release(e);

    /* A leaf as the root: its gradient is the seed, 1. */
    nnm_tensor *one = tu_tf32(g_ctx, 0, NULL, (float[]){1.0f});
    CHECK_STATUS(nnm_tensor_set_requires_grad(one, 1), NNM_OK);
    CHECK_STATUS(nnm_backward(one, NULL, 0), NNM_OK);
    CU_ASSERT_DOUBLE_EQUAL(scalar_of(nnm_tensor_grad(one)), 1.0, 0.0);
    nnm_tensor_set_grad(one, NULL);
    nnm_tensor_release(one);
    nnm_tensor_set_grad(x, NULL);
    nnm_tensor_release(x);
    LEAK_CHECK_END();
}

/* A .grad is the leaf's own tensor: writing into the gradient passed to
 * backward afterwards must not change it, and two leaves never share one
 * (PyTorch copies a gradient it cannot steal before making it a .grad). */
static void test_grad_does_not_alias_caller(void) {
    LEAK_CHECK_BEGIN();
    float v[6] = {1, 2, 3, 4, 5, 6}, gv[6] = {0.5f, -1, 2, 0.25f, 3, -2};
    nnm_tensor *x = tu_tf32(g_ctx, 2, (int64_t[]){2, 3}, v);
    CHECK_STATUS(nnm_tensor_set_requires_grad(x, 1), NNM_OK);
    nnm_tensor *g = tu_tf32(g_ctx, 2, (int64_t[]){2, 3}, gv);
    float *gp = tu_cpu_data(g);
    CU_ASSERT_PTR_NOT_NULL_FATAL(gp);

    /* x itself as the root */
    CHECK_STATUS(nnm_backward(x, g, 0), NNM_OK);
    nnm_tensor *xg = nnm_tensor_grad(x);
    CU_ASSERT_PTR_NOT_NULL_FATAL(xg);
    gp[0] = 100.0f;
    float got[6];
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(xg, got, 6), NNM_OK);
    CU_ASSERT_DOUBLE_EQUAL(got[0], 0.5, 0.0);
    gp[0] = 0.5f;
    nnm_tensor_set_grad(x, NULL);

    /* through a reshape (whose backward is a reshape of the gradient) */
    nnm_tensor *r = NULL;
    CHECK_STATUS(nnm_op_reshape(g_ctx, x, 2, (int64_t[]){3, 2}, &r), NNM_OK);
    nnm_tensor *g32 = NULL;
    CHECK_STATUS(nnm_op_reshape(g_ctx, g, 2, (int64_t[]){3, 2}, &g32), NNM_OK);
    CHECK_STATUS(nnm_backward(r, g32, 0), NNM_OK);
    xg = nnm_tensor_grad(x);
    CU_ASSERT_PTR_NOT_NULL_FATAL(xg);
    gp[1] = 100.0f;
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(xg, got, 6), NNM_OK);
    CU_ASSERT_DOUBLE_EQUAL(got[1], -1.0, 0.0);
    nnm_tensor_release(g32);
    nnm_tensor_release(r);
    nnm_tensor_set_grad(x, NULL);

    /* two leaves never share one .grad: sum(x + w) gives each its own */
    nnm_tensor *w = tu_tf32(g_ctx, 2, (int64_t[]){2, 3}, gv);
    CHECK_STATUS(nnm_tensor_set_requires_grad(w, 1), NNM_OK);
    nnm_tensor *z = NULL, *sum = NULL;
    CHECK_STATUS(nnm_op_binary(g_ctx, NNM_BINARY_ADD, x, w, &z), NNM_OK);
    CHECK_STATUS(nnm_op_reduce(g_ctx, NNM_REDUCE_SUM, z, NULL, 0, 0, &sum), NNM_OK);
    CHECK_STATUS(nnm_backward(sum, NULL, 0), NNM_OK);
    nnm_tensor *xg2 = nnm_tensor_grad(x), *wg = nnm_tensor_grad(w);
    CU_ASSERT_TRUE_FATAL(xg2 != NULL && wg != NULL);
    CU_ASSERT_PTR_NOT_EQUAL(xg2, wg);
    CU_ASSERT_PTR_NOT_EQUAL(tu_cpu_data(xg2), tu_cpu_data(wg));
    nnm_tensor_release(sum);
    nnm_tensor_release(z);
    nnm_tensor_set_grad(w, NULL);
    nnm_tensor_release(w);
    nnm_tensor_set_grad(x, NULL);
    nnm_tensor_release(g);
    nnm_tensor_release(x);
    LEAK_CHECK_END();
}

static void test_no_grad_and_detach(void) {
    LEAK_CHECK_BEGIN();
    small_net n;
    small_net_init(&n);
    CU_ASSERT_TRUE(nnm_tensor_requires_grad(n.pl.t[0])); /* parameters do from creation */
    CU_ASSERT_TRUE(nnm_tensor_is_leaf(n.pl.t[0]));
    CU_ASSERT_TRUE(nnm_grad_is_enabled());
    int prev = nnm_grad_set_enabled(0);
    CU_ASSERT_EQUAL(prev, 1);
    nnm_tensor *loss = small_net_loss(&n);
    CU_ASSERT_PTR_NOT_NULL_FATAL(loss);
    CU_ASSERT_FALSE(nnm_tensor_requires_grad(loss));
    CU_ASSERT_NOT_EQUAL(nnm_backward(loss, NULL, 0), NNM_OK);
    nnm_tensor_release(loss);
    nnm_grad_set_enabled(prev);
    CU_ASSERT_PTR_NULL(nnm_tensor_grad(n.pl.t[0]));

    /* detach: same values, outside the graph */
    nnm_tensor *y = NULL, *d = NULL;
    CHECK_STATUS(tu_call1(n.lin, n.x, &y), NNM_OK);
    CU_ASSERT_TRUE(nnm_tensor_requires_grad(y));
    CHECK_STATUS(nnm_tensor_detach(y, &d), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    CU_ASSERT_FALSE(nnm_tensor_requires_grad(d));
    CU_ASSERT_TRUE(nnm_tensor_is_leaf(d));
    float a[8], b[8];
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(y, a, 8), NNM_OK);
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(d, b, 8), NNM_OK);
    CU_ASSERT_EQUAL(memcmp(a, b, sizeof a), 0);
    nnm_tensor *loss2 = NULL;
    CHECK_STATUS(tu_call2(n.mse, d, n.t, &loss2), NNM_OK);
    CU_ASSERT_FALSE(nnm_tensor_requires_grad(loss2));
    nnm_tensor_release(loss2);
    nnm_tensor_release(d);
    nnm_tensor_release(y);

    /* zero_grad sets .grad to none */
    loss = small_net_loss(&n);
    CHECK_STATUS(nnm_backward(loss, NULL, 0), NNM_OK);
    nnm_tensor_release(loss);
    CU_ASSERT_PTR_NOT_NULL(nnm_tensor_grad(n.pl.t[0]));
    CHECK_STATUS(nnm_module_zero_grad(n.lin), NNM_OK);
    CU_ASSERT_PTR_NULL(nnm_tensor_grad(n.pl.t[0]));
    CU_ASSERT_PTR_NULL(nnm_tensor_grad(n.pl.t[1]));
    small_net_free(&n);
    LEAK_CHECK_END();
}

/* ------------------------------------------------------------------------ */
/* Optimizers                                                                */
/* ------------------------------------------------------------------------ */

static void test_optim_bad_input(void) {
    LEAK_CHECK_BEGIN();
    nnm_sgd_options so = {sizeof so, 0, 0.1, 0.9, 0.0, 0.0};
    nnm_adam_options ao = {sizeof ao, 0, 1, 0, 1e-3, 0.9, 0.999, 1e-8, 0.01};
    nnm_optim *opt = (nnm_optim *)&so; /* must be reset to NULL on failure */

    /* A module without parameters: an empty parameter list. */
    nnm_module *relu = tu_module(g_ctx, "relu", NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(relu);
    CHECK_ERROR(nnm_optim_sgd_new(relu, &so, &opt), NNM_E_INVALID, "parameter");
    CU_ASSERT_PTR_NULL(opt);
    opt = (nnm_optim *)&so;
    CHECK_ERROR(nnm_optim_adam_new(relu, &ao, &opt), NNM_E_INVALID, "parameter");
    CU_ASSERT_PTR_NULL(opt);
    nnm_module_release(relu);

    /* NULL arguments. */
    CU_ASSERT_EQUAL(nnm_optim_sgd_new(NULL, &so, &opt), NNM_E_INVALID);
    CU_ASSERT_PTR_NULL(opt);
    nnm_module *lin = tu_linear(g_ctx, "linear", 3, 2, 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(lin);
    CU_ASSERT_EQUAL(nnm_optim_sgd_new(lin, NULL, &opt), NNM_E_INVALID);
    CU_ASSERT_EQUAL(nnm_optim_sgd_new(lin, &so, NULL), NNM_E_INVALID);
    CU_ASSERT_EQUAL(nnm_optim_step(NULL), NNM_E_INVALID);
    CU_ASSERT_EQUAL(nnm_optim_zero_grad(NULL), NNM_E_INVALID);
    nnm_optim_free(NULL);

    /* Invalid hyper-parameters, as PyTorch's ValueError. */
    nnm_sgd_options s2 = so;
    s2.lr = -0.1;
    CHECK_ERROR(nnm_optim_sgd_new(lin, &s2, &opt), NNM_E_INVALID, "learning rate");
    CU_ASSERT_PTR_NULL(opt);
    s2 = so;
    s2.momentum = -0.5;
    CU_ASSERT_EQUAL(nnm_optim_sgd_new(lin, &s2, &opt), NNM_E_INVALID);
    s2 = so;
    s2.nesterov = 1;
    s2.dampening = 0.5; /* nesterov needs momentum > 0 and zero dampening */
    CU_ASSERT_EQUAL(nnm_optim_sgd_new(lin, &s2, &opt), NNM_E_INVALID);
    nnm_adam_options a2 = ao;
    a2.beta1 = 1.0;
    CHECK_ERROR(nnm_optim_adam_new(lin, &a2, &opt), NNM_E_INVALID, "beta");
    a2 = ao;
    a2.beta2 = -0.1;
    CU_ASSERT_EQUAL(nnm_optim_adam_new(lin, &a2, &opt), NNM_E_INVALID);
    a2 = ao;
    a2.eps = -1.0;
    CU_ASSERT_EQUAL(nnm_optim_adam_new(lin, &a2, &opt), NNM_E_INVALID);
    a2 = ao;
    a2.weight_decay = -1.0;
    CU_ASSERT_EQUAL(nnm_optim_adam_new(lin, &a2, &opt), NNM_E_INVALID);
    a2 = ao;
    a2.struct_size = 4; /* too small to hold the options */
    CU_ASSERT_EQUAL(nnm_optim_adam_new(lin, &a2, &opt), NNM_E_INVALID);
    CU_ASSERT_PTR_NULL(opt);

    /* A step with no gradients anywhere leaves every parameter alone. */
    tu_named pl = tu_params_of(lin);
    float before[6], after[6];
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(pl.t[0], before, 6), NNM_OK);
    CHECK_STATUS(nnm_optim_adam_new(lin, &ao, &opt), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(opt);
    CHECK_STATUS(nnm_optim_step(opt), NNM_OK);
    CHECK_STATUS(nnm_optim_zero_grad(opt), NNM_OK);
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(pl.t[0], after, 6), NNM_OK);
    CU_ASSERT_EQUAL(memcmp(before, after, sizeof before), 0);
    nnm_optim_free(opt);
    nnm_module_release(lin);
    LEAK_CHECK_END();
}

/* ------------------------------------------------------------------------ */
/* Loss layers: config and inputs                                            */
/* ------------------------------------------------------------------------ */

static nnm_status try_loss(const char *layer, nnm_config *cfg) {
    nnm_module *m = NULL;
    nnm_status st = nnm_module_create(g_ctx, layer, cfg, &m);
    CU_ASSERT_TRUE(st == NNM_OK ? m != NULL : m == NULL);
    nnm_module_release(m);
    nnm_config_free(cfg);
    return st;
}

static nnm_config *cfg_str(const char *k, const char *v) {
    nnm_config *c = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_config_new(&c), NNM_OK);
    nnm_config_set_str(c, k, v);
    return c;
}

static nnm_config *cfg_float(const char *k, double v) {
    nnm_config *c = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_config_new(&c), NNM_OK);
    nnm_config_set_float(c, k, v);
    return c;
}

static void test_loss_config(void) {
    LEAK_CHECK_BEGIN();
    static const char *const layers[] = {"mse_loss", "cross_entropy", "nll_loss",
                                         "bce_with_logits"};
    for (int i = 0; i < 4; i++) {
        CHECK_ERROR(try_loss(layers[i], cfg_str("reduction", "avg")), NNM_E_INVALID,
                    "reduction must be \"mean\", \"sum\" or \"none\", got \"avg\"");
        CU_ASSERT_EQUAL(try_loss(layers[i], cfg_float("reduction", 1.0)), NNM_E_TYPE);
        CHECK_STATUS(try_loss(layers[i], NULL), NNM_OK);
        CHECK_STATUS(try_loss(layers[i], cfg_str("reduction", "none")), NNM_OK);
    }
    CHECK_ERROR(try_loss("cross_entropy", cfg_float("label_smoothing", 1.5)), NNM_E_INVALID,
                "label_smoothing must be in [0, 1], got 1.5");
    CU_ASSERT_EQUAL(try_loss("cross_entropy", cfg_float("label_smoothing", -0.1)),
                    NNM_E_INVALID);
    CU_ASSERT_EQUAL(try_loss("cross_entropy", cfg_float("label_smoothing", NAN)), NNM_E_INVALID);
    CHECK_STATUS(try_loss("cross_entropy", cfg_float("label_smoothing", 1.0)), NNM_OK);
    CU_ASSERT_EQUAL(try_loss("cross_entropy", cfg_str("ignore_index", "x")), NNM_E_TYPE);
    /* keys a loss does not have are refused, as an unexpected kwarg */
    CU_ASSERT_NOT_EQUAL(try_loss("nll_loss", cfg_float("label_smoothing", 0.1)), NNM_OK);
    CU_ASSERT_NOT_EQUAL(try_loss("mse_loss", cfg_float("ignore_index", 1)), NNM_OK);

    /* extra_repr: none, as PyTorch's losses ("CrossEntropyLoss()") */
    nnm_config *c = NULL;
    nnm_config_new(&c);
    nnm_config_set_str(c, "reduction", "sum");
    nnm_config_set_int(c, "ignore_index", 3);
    nnm_config_set_float(c, "label_smoothing", 0.25);
    nnm_module *m = NULL;
    CHECK_STATUS(nnm_module_create(g_ctx, "cross_entropy", c, &m), NNM_OK);
    nnm_config_free(c);
    char buf[256];
    CU_ASSERT_TRUE(nnm_module_repr(m, buf, sizeof buf) > 0);
    if (strstr(buf, "CrossEntropyLoss()") == NULL)
        fprintf(stderr, "\n  repr: %s\n", buf);
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "CrossEntropyLoss()"));
    nnm_module_release(m);
    m = mk_loss("mse_loss", NULL, INT64_MIN, -1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_TRUE(nnm_module_repr(m, buf, sizeof buf) > 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "MSELoss()"));
    nnm_module_release(m);
    LEAK_CHECK_END();
}

static void test_loss_bad_inputs(void) {
    LEAK_CHECK_BEGIN();
    float v[12];
    tu_fill_uniform(v, 12, 9, -1.0, 1.0);
    nnm_tensor *x43 = tu_tf32(g_ctx, 2, (int64_t[]){4, 3}, v);
    nnm_tensor *x34 = tu_tf32(g_ctx, 2, (int64_t[]){3, 4}, v);
    nnm_tensor *x3d = tu_tf32(g_ctx, 3, (int64_t[]){2, 2, 3}, v);
    nnm_tensor *f4 = tu_tf32(g_ctx, 1, (int64_t[]){4}, v);
    nnm_tensor *t4 = tu_ti64(g_ctx, 1, (int64_t[]){4}, (int64_t[]){0, 2, 1, 0});
    nnm_tensor *t5 = tu_ti64(g_ctx, 1, (int64_t[]){5}, (int64_t[]){0, 2, 1, 0, 1});
    nnm_tensor *tbad = tu_ti64(g_ctx, 1, (int64_t[]){4}, (int64_t[]){0, 7, 1, 0});
    nnm_tensor *tneg = tu_ti64(g_ctx, 1, (int64_t[]){4}, (int64_t[]){0, -1, 1, 0});
    nnm_tensor *out = NULL;

    nnm_module *ce = mk_loss("cross_entropy", NULL, INT64_MIN, -1);
    nnm_module *nll = mk_loss("nll_loss", NULL, INT64_MIN, -1);
    nnm_module *mse = mk_loss("mse_loss", NULL, INT64_MIN, -1);
    nnm_module *bce = mk_loss("bce_with_logits", NULL, INT64_MIN, -1);
    CU_ASSERT_FATAL(ce && nll && mse && bce);

    /* an f32 target is class probabilities (1.1): of the input's shape */
    CHECK_ERROR(tu_call2(ce, x43, f4, &out), NNM_E_SHAPE,
                "class-probability target [4] must have the input's shape [4, 3]");
    CHECK_ERROR(tu_call2(nll, x43, f4, &out), NNM_E_DTYPE, "i64");
    CU_ASSERT_PTR_NULL(out);
    CHECK_ERROR(tu_call2(ce, x43, t5, &out), NNM_E_SHAPE, "expected target of shape [4]");
    /* [N, C, d1] takes a target [N, d1] (1.1) */
    CHECK_ERROR(tu_call2(ce, x3d, t4, &out), NNM_E_SHAPE,
                "expected target of shape [2, 3] for input [2, 2, 3], got [4]");
    CHECK_ERROR(tu_call2(nll, x43, t5, &out), NNM_E_SHAPE, "nll_loss");
    CU_ASSERT_NOT_EQUAL(tu_call2(ce, x43, tbad, &out), NNM_OK); /* class 7 of 3 */
    CU_ASSERT_PTR_NULL(out);
    CU_ASSERT_NOT_EQUAL(tu_call2(nll, x43, tneg, &out), NNM_OK); /* -1 is not ignore_index */
    CU_ASSERT_PTR_NULL(out);
    CHECK_ERROR(tu_call2(mse, x43, x34, &out), NNM_E_SHAPE,
                "target size [3, 4] must be the same as input size [4, 3]");
    CHECK_ERROR(tu_call2(bce, x43, x3d, &out), NNM_E_SHAPE, "must be the same as input size");
    CHECK_ERROR(tu_call2(bce, x43, t4, &out), NNM_E_DTYPE, "f32");
    /* arity: the call path refuses a loss called with one input */
    CU_ASSERT_NOT_EQUAL(tu_call1(mse, x43, &out), NNM_OK);
    CU_ASSERT_PTR_NULL(out);

    /* and the good calls work, with PyTorch's output shapes */
    CHECK_STATUS(tu_call2(ce, x43, t4, &out), NNM_OK);
    CU_ASSERT_TRUE(tu_shape_is(out, 0, NULL));
    nnm_tensor_release(out);
    CHECK_STATUS(tu_call2(mse, x43, x43, &out), NNM_OK);
    CU_ASSERT_TRUE(tu_shape_is(out, 0, NULL));
    CU_ASSERT_DOUBLE_EQUAL(scalar_of(out), 0.0, 0.0);
    nnm_tensor_release(out);

    nnm_module_release(ce);
    nnm_module_release(nll);
    nnm_module_release(mse);
    nnm_module_release(bce);
    nnm_tensor *all[] = {x43, x34, x3d, f4, t4, t5, tbad, tneg};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        nnm_tensor_release(all[i]);
    LEAK_CHECK_END();
}

int main(void) {
    CU_pSuite s = tu_suite("autograd errors", ag_suite_init, ag_suite_clean);
    if (s == NULL)
        return 2;
    CU_add_test(s, "backward twice through a freed graph", test_backward_twice);
    CU_add_test(s, "backward of a non-scalar", test_backward_nonscalar);
    CU_add_test(s, "backward with a gradient of another shape", test_backward_grad_shape);
    CU_add_test(s, "backward without a graph", test_backward_without_graph);
    CU_add_test(s, ".grad aliases neither the caller's gradient nor another leaf's",
                test_grad_does_not_alias_caller);
    CU_add_test(s, "no_grad, detach, zero_grad", test_no_grad_and_detach);
    CU_add_test(s, "optimizers: empty parameter list, bad options", test_optim_bad_input);
    CU_add_test(s, "loss layers: config", test_loss_config);
    CU_add_test(s, "loss layers: bad inputs", test_loss_bad_inputs);
    return tu_run();
}
