/* tests/optim/test_optim.c - the optimizers (SGD, Adam, AdamW) through the
 * public API only.
 *
 * Parity: tests/golden/optim_golden.h (written by
 * tests/golden/make_optim_golden.py with PyTorch) holds initial parameters,
 * the gradients of 3 steps and the parameters after each step, plus the final
 * optimizer state, for SGD (momentum, dampening, nesterov, weight decay), Adam
 * (betas, eps, weight decay, amsgrad), AdamW (default and explicit weight
 * decay, amsgrad) and two parameter-group cases. Gradients are set with
 * nnm_tensor_set_grad, so these tests need no autograd.
 *
 * Plugins are found by discovery (the directory beside libnnmod). Each test
 * checks that it leaves no live tensor or module behind.
 * NNM_TEST_DEVICE=emu|cuda (tests/test_device.h; ctest's test_optim_emu): the
 * PyTorch parity cases only, on that device (the backend's sgd_step and
 * adam_step slots on device memory).
 */
#include "test_util.h"

#include "golden/optim_golden.h"
#include "test_device.h"

/* Parameters must match PyTorch within RTOL relative (plus ATOL for elements
 * that are (nearly) zero). The state is held to STATE_RTOL: the backend ABI
 * passes hyper-parameters as float, so 1 - beta2 is 1 - 0.999f =
 * 0.00099998713 instead of 0.001, and exp_avg_sq (and its max) carry that
 * 1.29e-5 relative offset; bias correction uses the same beta2, so it cancels
 * in the parameters. */
#define RTOL 1e-6
#define ATOL 1e-7
#define STATE_RTOL 2e-5

static nnm_ctx *g_ctx;
#define TU_CTX g_ctx
static double g_worst_param, g_worst_state; /* largest relative differences vs golden */

static int g_skip; /* NNM_TEST_DEVICE names a device this machine lacks */

static int suite_init(void) {
    if (tu_ctx_new(&g_ctx) != 0)
        return 1;
    const int r = td_init(g_ctx);
    g_skip = r == 1;
    return r < 0;
}

static int suite_clean(void) {
    const int r = tu_ctx_free(&g_ctx);
    td_teardown();
    return r;
}

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */
/* ------------------------------------------------------------------------ */

/* nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2)): children "0" and "1". */
static nnm_module *make_seq(void) {
    nnm_module *seq = tu_module(g_ctx, "sequential", NULL);
    if (seq == NULL)
        return NULL;
    nnm_module *a = tu_linear(g_ctx, "linear", 4, 3, -1);
    nnm_module *b = tu_linear(g_ctx, "linear", 3, 2, -1);
    int ok = a && b && nnm_module_add_child(seq, NULL, a) == NNM_OK &&
             nnm_module_add_child(seq, NULL, b) == NNM_OK;
    nnm_module_release(a);
    nnm_module_release(b);
    if (!ok) {
        nnm_module_release(seq);
        return NULL;
    }
    return seq;
}

/* A new f32 CPU tensor shaped like t holding `data`. */
static nnm_tensor *like(nnm_tensor *t, const float *data) {
    const nnm_tensor_desc *d = nnm_tensor_desc_get(t);
    return tu_tf32(g_ctx, d->ndim, d->shape, data);
}

/* Sets t.grad to a copy of data on t's device (the optimizer sees only .grad). */
static void set_grad(nnm_tensor *t, const float *data) {
    nnm_tensor *g = like(t, data);
    if (nnm_tensor_desc_get(t)->device.type != NNM_DEVICE_CPU)
        CU_ASSERT_TRUE(td_move(g_ctx, &g));
    CHECK_STATUS(nnm_tensor_set_grad(t, g), NNM_OK);
    nnm_tensor_release(g);
}

/* Elements of got/want beyond rtol/ATOL (tu_count_mismatch, under "what step
 * N"); *worst is raised to the largest relative error of the elements more
 * than ATOL apart. */
static int compare(const char *what, int step, const float *got, const float *want, int64_t n,
                   double rtol, double *worst) {
    for (int64_t i = 0; i < n; i++) {
        double diff = fabs((double)got[i] - (double)want[i]);
        double rel = diff / fmax(fabs((double)want[i]), 1e-30);
        if (diff > ATOL && rel > *worst)
            *worst = rel;
    }
    char label[128];
    snprintf(label, sizeof label, "%s step %d", what, step);
    return tu_count_mismatch(label, got, want, n, rtol, ATOL, 0);
}

static float *read_all(const tu_named *pl, int64_t total) {
    float *v = malloc(sizeof(float) * (size_t)total);
    int64_t off = 0;
    for (int i = 0; v && i < pl->n; i++) {
        int64_t n = nnm_tensor_numel(pl->t[i]);
        CU_ASSERT_EQUAL(nnm_tensor_to_f32(pl->t[i], v + off, (size_t)n), NNM_OK);
        off += n;
    }
    return v;
}

/* The optimizer's state, collected (one assertion: the visit succeeded). */
static tu_named state_of(nnm_optim *o) {
    tu_named l;
    memset(&l, 0, sizeof l);
    CHECK_STATUS(nnm_optim_state(o, tu_named_add, &l), NNM_OK);
    return l;
}

static nnm_sgd_options sgd_opts(double lr, double momentum) {
    nnm_sgd_options o;
    memset(&o, 0, sizeof o);
    o.struct_size = sizeof o;
    o.lr = lr;
    o.momentum = momentum;
    return o;
}

static nnm_adam_options adam_opts(double lr, int decoupled) {
    nnm_adam_options o;
    memset(&o, 0, sizeof o);
    o.struct_size = sizeof o;
    o.lr = lr;
    o.beta1 = 0.9;
    o.beta2 = 0.999;
    o.eps = 1e-8;
    o.decoupled = decoupled;
    o.weight_decay = decoupled ? 0.01 : 0.0;
    return o;
}

/* ------------------------------------------------------------------------ */
/* PyTorch parity                                                            */
/* ------------------------------------------------------------------------ */

static nnm_status make_case_optim(const og_case *c, nnm_module *m, nnm_optim **o) {
    if (c->kind == OG_SGD) {
        nnm_sgd_options so = sgd_opts(c->lr, c->momentum);
        so.dampening = c->dampening;
        so.nesterov = c->nesterov;
        so.weight_decay = c->weight_decay;
        return nnm_optim_sgd_new(m, &so, o);
    }
    nnm_adam_options ao = adam_opts(c->lr, c->kind == OG_ADAMW);
    ao.beta1 = c->beta1;
    ao.beta2 = c->beta2;
    ao.eps = c->eps;
    ao.amsgrad = c->amsgrad;
    ao.weight_decay = c->weight_decay; /* AdamW's default (0.01) is spelled out */
    return nnm_optim_adam_new(m, &ao, o);
}

static void run_golden_case(const og_case *c) {
    nnm_module *m = c->model == OG_LINEAR_4_3 ? tu_linear(g_ctx, "linear", 4, 3, -1) : make_seq();
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    tu_named pl = tu_params_of(m);
    CU_ASSERT_EQUAL_FATAL(pl.n, c->n_params);
    int64_t off = 0;
    for (int i = 0; i < pl.n; i++) {
        CU_ASSERT_STRING_EQUAL(pl.names[i], c->names[i]);
        CU_ASSERT_EQUAL_FATAL(nnm_tensor_numel(pl.t[i]), c->numel[i]);
        CU_ASSERT_TRUE(tu_write_f32(pl.t[i], c->init + off, (size_t)c->numel[i]));
        off += c->numel[i];
    }
    CHECK_STATUS(nnm_module_to(m, td_device()), NNM_OK); /* NNM_TEST_DEVICE */
    nnm_optim *o = NULL;
    CHECK_STATUS(make_case_optim(c, m, &o), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(o);
    if (c->group_prefix != NULL) {
        uint32_t gi = 0;
        CHECK_STATUS(nnm_optim_add_group(o, c->group_prefix, c->group_lr, c->group_weight_decay,
                                         &gi),
                     NNM_OK);
        CU_ASSERT_EQUAL(gi, 1);
        CU_ASSERT_EQUAL(nnm_optim_group_count(o), 2);
        CU_ASSERT_EQUAL(nnm_optim_get_lr(o, 1), c->group_lr);
    }
    int bad = 0;
    for (int s = 0; s < OG_STEPS; s++) {
        off = 0;
        for (int i = 0; i < pl.n; i++) {
            set_grad(pl.t[i], c->grads + s * c->total + off);
            off += c->numel[i];
        }
        CHECK_STATUS(nnm_optim_step(o), NNM_OK);
        float *got = read_all(&pl, c->total);
        CU_ASSERT_PTR_NOT_NULL_FATAL(got);
        bad += compare(c->name, s + 1, got, c->after + s * c->total, c->total, RTOL,
                       &g_worst_param);
        free(got);
    }
    /* State: the same names, in the same order, with the same values. */
    tu_named sl = state_of(o);
    CU_ASSERT_EQUAL(sl.n, c->n_state);
    for (int i = 0; i < sl.n && i < c->n_state; i++) {
        CU_ASSERT_STRING_EQUAL(sl.names[i], c->state[i].name);
        CU_ASSERT_EQUAL(nnm_tensor_numel(sl.t[i]), c->state[i].numel);
        if (nnm_tensor_numel(sl.t[i]) != c->state[i].numel)
            continue;
        float *v = malloc(sizeof(float) * (size_t)c->state[i].numel);
        CU_ASSERT_EQUAL(nnm_tensor_to_f32(sl.t[i], v, (size_t)c->state[i].numel), NNM_OK);
        bad += compare(c->state[i].name, OG_STEPS, v, c->state[i].values, c->state[i].numel,
                       STATE_RTOL, &g_worst_state);
        free(v);
    }
    if (bad)
        fprintf(stderr, "\n  case %s: %d mismatches\n", c->name, bad);
    CU_ASSERT_EQUAL(bad, 0);
    CHECK_STATUS(nnm_optim_zero_grad(o), NNM_OK);
    nnm_optim_free(o);
    nnm_module_release(m);
}

static void test_golden(void) {
    if (g_skip)
        return;
    LEAK_CHECK_BEGIN();
    for (int i = 0; i < OG_NCASES; i++)
        run_golden_case(&og_cases[i]);
    LEAK_CHECK_END();
    fprintf(stderr,
            "\n  %d PyTorch cases on %s; worst relative difference: parameters %.3g (rtol %g), "
            "state %.3g (rtol %g); atol %g\n",
            OG_NCASES, td_name(), g_worst_param, RTOL, g_worst_state, STATE_RTOL, ATOL);
}

/* ------------------------------------------------------------------------ */
/* Behaviour                                                                 */
/* ------------------------------------------------------------------------ */

/* A parameter without .grad is neither updated nor given state. */
static void test_skip_without_grad(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *m = tu_linear(g_ctx, "linear", 4, 3, -1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    tu_named pl = tu_params_of(m);
    float b0[3], b1[3], w0[12], w1[12], gw[12];
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(pl.t[1], b0, 3), NNM_OK);
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(pl.t[0], w0, 12), NNM_OK);
    nnm_adam_options ao = adam_opts(0.01, 1);
    ao.amsgrad = 1;
    nnm_optim *o = NULL;
    CHECK_STATUS(nnm_optim_adam_new(m, &ao, &o), NNM_OK);
    /* no grads at all: a no-op that creates nothing */
    CHECK_STATUS(nnm_optim_step(o), NNM_OK);
    CU_ASSERT_EQUAL(state_of(o).n, 0);
    for (int i = 0; i < 12; i++)
        gw[i] = 0.25f * (float)(i - 6);
    set_grad(pl.t[0], gw);
    CU_ASSERT_PTR_NULL(nnm_tensor_grad(pl.t[1]));
    CHECK_STATUS(nnm_optim_step(o), NNM_OK);
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(pl.t[1], b1, 3), NNM_OK);
    CU_ASSERT_EQUAL(memcmp(b0, b1, sizeof b0), 0);
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(pl.t[0], w1, 12), NNM_OK);
    CU_ASSERT_NOT_EQUAL(memcmp(w0, w1, sizeof w0), 0);
    tu_named sl = state_of(o);
    CU_ASSERT_EQUAL(sl.n, 4);
    for (int i = 0; i < sl.n; i++)
        CU_ASSERT_EQUAL(strncmp(sl.names[i], "weight.", 7), 0);
    nnm_optim_free(o);
    nnm_module_release(m);
    LEAK_CHECK_END();
}

static void test_zero_grad(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *m = make_seq();
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    tu_named pl = tu_params_of(m);
    CU_ASSERT_EQUAL_FATAL(pl.n, 4);
    nnm_sgd_options so = sgd_opts(0.1, 0.9);
    nnm_optim *o = NULL;
    CHECK_STATUS(nnm_optim_sgd_new(m, &so, &o), NNM_OK);
    float ones[12];
    for (int i = 0; i < 12; i++)
        ones[i] = 1.0f;
    for (int i = 0; i < pl.n; i++)
        set_grad(pl.t[i], ones);
    for (int i = 0; i < pl.n; i++)
        CU_ASSERT_PTR_NOT_NULL(nnm_tensor_grad(pl.t[i]));
    CHECK_STATUS(nnm_optim_zero_grad(o), NNM_OK);
    for (int i = 0; i < pl.n; i++)
        CU_ASSERT_PTR_NULL(nnm_tensor_grad(pl.t[i]));
    /* nothing has a grad: the step changes nothing and makes no state */
    float before[12], after[12];
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(pl.t[0], before, 12), NNM_OK);
    CHECK_STATUS(nnm_optim_step(o), NNM_OK);
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(pl.t[0], after, 12), NNM_OK);
    CU_ASSERT_EQUAL(memcmp(before, after, sizeof before), 0);
    CU_ASSERT_EQUAL(state_of(o).n, 0);
    CHECK_STATUS(nnm_optim_zero_grad(o), NNM_OK); /* twice is fine */
    nnm_optim_free(o);
    nnm_module_release(m);
    LEAK_CHECK_END();
}

/* The documented state names, over a nested tree; step is a [1] f32 count. */
static void test_state_names(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *m = make_seq();
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    tu_named pl = tu_params_of(m);
    CU_ASSERT_EQUAL_FATAL(pl.n, 4);
    nnm_adam_options ao = adam_opts(0.001, 0);
    ao.amsgrad = 1;
    nnm_optim *o = NULL;
    CHECK_STATUS(nnm_optim_adam_new(m, &ao, &o), NNM_OK);
    float g[12];
    for (int i = 0; i < 12; i++)
        g[i] = 0.1f * (float)i;
    for (int s = 0; s < 3; s++) {
        for (int i = 0; i < pl.n; i++)
            set_grad(pl.t[i], g);
        CHECK_STATUS(nnm_optim_step(o), NNM_OK);
    }
    static const char *const want[] = {
        "0.weight.exp_avg", "0.weight.exp_avg_sq", "0.weight.max_exp_avg_sq", "0.weight.step",
        "0.bias.exp_avg",   "0.bias.exp_avg_sq",   "0.bias.max_exp_avg_sq",   "0.bias.step",
        "1.weight.exp_avg", "1.weight.exp_avg_sq", "1.weight.max_exp_avg_sq", "1.weight.step",
        "1.bias.exp_avg",   "1.bias.exp_avg_sq",   "1.bias.max_exp_avg_sq",   "1.bias.step",
    };
    tu_named sl = state_of(o);
    CU_ASSERT_EQUAL_FATAL(sl.n, 16);
    for (int i = 0; i < sl.n; i++) {
        CU_ASSERT_STRING_EQUAL(sl.names[i], want[i]);
        const nnm_tensor_desc *d = nnm_tensor_desc_get(sl.t[i]);
        CU_ASSERT_EQUAL(d->dtype.code, NNM_DTYPE_FLOAT);
        CU_ASSERT_EQUAL(d->dtype.bits, 32);
        if (strstr(sl.names[i], ".step") != NULL) {
            CU_ASSERT_EQUAL(d->ndim, 1);
            CU_ASSERT_EQUAL(d->shape[0], 1);
            float v = 0;
            CU_ASSERT_EQUAL(nnm_tensor_to_f32(sl.t[i], &v, 1), NNM_OK);
            CU_ASSERT_EQUAL(v, 3.0f);
        } else {
            CU_ASSERT_EQUAL(nnm_tensor_numel(sl.t[i]), nnm_tensor_numel(pl.t[i / 4]));
        }
    }
    /* a visitor's status stops the walk and comes back */
    CU_ASSERT_EQUAL(nnm_optim_state(o, tu_named_add, &(tu_named){.n = TU_MAX_NAMED}), NNM_E_LIMIT);
    nnm_optim_free(o);

    /* SGD: momentum_buffer only (torch keeps no step for SGD); none without momentum */
    nnm_sgd_options so = sgd_opts(0.1, 0.5);
    CHECK_STATUS(nnm_optim_sgd_new(m, &so, &o), NNM_OK);
    for (int i = 0; i < pl.n; i++)
        set_grad(pl.t[i], g);
    CHECK_STATUS(nnm_optim_step(o), NNM_OK);
    sl = state_of(o);
    CU_ASSERT_EQUAL(sl.n, 4);
    CU_ASSERT_STRING_EQUAL(sl.names[0], "0.weight.momentum_buffer");
    CU_ASSERT_STRING_EQUAL(sl.names[3], "1.bias.momentum_buffer");
    nnm_optim_free(o);
    so.momentum = 0;
    CHECK_STATUS(nnm_optim_sgd_new(m, &so, &o), NNM_OK);
    CHECK_STATUS(nnm_optim_step(o), NNM_OK);
    CU_ASSERT_EQUAL(state_of(o).n, 0);
    nnm_optim_free(o);
    nnm_module_release(m);
    LEAK_CHECK_END();
}

/* Groups: counts, lr get/set, an lr change taking effect, errors. */
static void test_groups_lr(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *m = make_seq();
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    tu_named pl = tu_params_of(m);
    nnm_sgd_options so = sgd_opts(0.5, 0);
    nnm_optim *o = NULL;
    CHECK_STATUS(nnm_optim_sgd_new(m, &so, &o), NNM_OK);
    CU_ASSERT_EQUAL(nnm_optim_group_count(o), 1);
    CU_ASSERT_EQUAL(nnm_optim_get_lr(o, 0), 0.5);
    CU_ASSERT_TRUE(isnan(nnm_optim_get_lr(o, 1)));
    uint32_t gi = 99;
    CHECK_STATUS(nnm_optim_add_group(o, "2.", 0.1, 0, &gi), NNM_E_NOT_FOUND);
    CU_ASSERT_EQUAL(gi, UINT32_MAX);
    CHECK_MSG("no parameter name starts with '2.'");
    CHECK_STATUS(nnm_optim_add_group(o, "1.", -0.1, 0, NULL), NNM_E_INVALID);
    CHECK_STATUS(nnm_optim_add_group(o, "1.", 0.1, -1, NULL), NNM_E_INVALID);
    CHECK_STATUS(nnm_optim_add_group(o, NULL, 0.1, 0, NULL), NNM_E_INVALID);
    CU_ASSERT_EQUAL(nnm_optim_group_count(o), 1);
    CHECK_STATUS(nnm_optim_add_group(o, "1.", 0.25, 0, &gi), NNM_OK);
    CU_ASSERT_EQUAL(gi, 1);
    /* a narrower prefix splits a group further */
    CHECK_STATUS(nnm_optim_add_group(o, "1.bias", 0.0, 0, NULL), NNM_OK);
    CU_ASSERT_EQUAL(nnm_optim_group_count(o), 3);
    CHECK_STATUS(nnm_optim_set_lr(o, 0, 1.0), NNM_OK);
    CU_ASSERT_EQUAL(nnm_optim_get_lr(o, 0), 1.0);
    CHECK_STATUS(nnm_optim_set_lr(o, 3, 1.0), NNM_E_INVALID);
    CHECK_STATUS(nnm_optim_set_lr(o, 0, -1.0), NNM_E_INVALID);
    CHECK_STATUS(nnm_optim_set_lr(o, 0, NAN), NNM_E_INVALID);
    CU_ASSERT_EQUAL(nnm_optim_get_lr(o, 0), 1.0);

    /* plain SGD: p -= lr * g with each group's lr (1.0, 0.25, 0.0) */
    float before[4][12], after[4][12], g[12];
    for (int i = 0; i < 12; i++)
        g[i] = 0.5f;
    for (int i = 0; i < pl.n; i++) {
        int64_t n = nnm_tensor_numel(pl.t[i]);
        CU_ASSERT_EQUAL(nnm_tensor_to_f32(pl.t[i], before[i], (size_t)n), NNM_OK);
        set_grad(pl.t[i], g);
    }
    CHECK_STATUS(nnm_optim_step(o), NNM_OK);
    const float lr[4] = {1.0f, 1.0f, 0.25f, 0.0f};
    for (int i = 0; i < pl.n; i++) {
        int64_t n = nnm_tensor_numel(pl.t[i]);
        CU_ASSERT_EQUAL(nnm_tensor_to_f32(pl.t[i], after[i], (size_t)n), NNM_OK);
        for (int64_t k = 0; k < n; k++)
            CU_ASSERT_EQUAL(after[i][k], before[i][k] + (-lr[i]) * 0.5f);
    }
    /* groups are frozen after the first step; lr is not */
    CHECK_STATUS(nnm_optim_add_group(o, "0.", 0.1, 0, NULL), NNM_E_STATE);
    CHECK_MSG("before the first step");
    CHECK_STATUS(nnm_optim_set_lr(o, 2, 0.5), NNM_OK); /* "1.bias": was 0 */
    CHECK_STATUS(nnm_optim_step(o), NNM_OK);
    float again[2];
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(pl.t[3], again, 2), NNM_OK);
    for (int k = 0; k < 2; k++)
        CU_ASSERT_EQUAL(again[k], after[3][k] + (-0.5f) * 0.5f);
    nnm_optim_free(o);
    nnm_module_release(m);
    LEAK_CHECK_END();
}

/* The optimizer holds its module: releasing the caller's reference first is fine. */
static void test_holds_module(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *m = tu_linear(g_ctx, "linear", 4, 3, -1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    tu_named pl = tu_params_of(m);
    nnm_adam_options ao = adam_opts(0.01, 1);
    nnm_optim *o = NULL;
    CHECK_STATUS(nnm_optim_adam_new(m, &ao, &o), NNM_OK);
    float g[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    set_grad(pl.t[0], g);
    set_grad(pl.t[1], g);
    nnm_module_release(m);
    CU_ASSERT_EQUAL(tu_live_now(g_ctx).modules, live_before_.modules + 1);
    CHECK_STATUS(nnm_optim_step(o), NNM_OK);
    CHECK_STATUS(nnm_optim_zero_grad(o), NNM_OK);
    nnm_optim_free(o);
    LEAK_CHECK_END();
}

/* After the first step (state made), steps allocate nothing. */
static void test_steady_state_no_alloc(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *m = make_seq();
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    tu_named pl = tu_params_of(m);
    nnm_tensor *grads[4];
    float g[12];
    for (int i = 0; i < 12; i++)
        g[i] = 0.01f * (float)(i + 1);
    for (int i = 0; i < pl.n; i++)
        grads[i] = like(pl.t[i], g);
    for (int kind = 0; kind < 2; kind++) {
        nnm_optim *o = NULL;
        if (kind == 0) {
            nnm_sgd_options so = sgd_opts(0.01, 0.9);
            so.nesterov = 1;
            so.weight_decay = 1e-4;
            CHECK_STATUS(nnm_optim_sgd_new(m, &so, &o), NNM_OK);
        } else {
            nnm_adam_options ao = adam_opts(0.001, 1);
            ao.amsgrad = 1;
            CHECK_STATUS(nnm_optim_adam_new(m, &ao, &o), NNM_OK);
        }
        CU_ASSERT_PTR_NOT_NULL_FATAL(o);
        for (int i = 0; i < pl.n; i++)
            CHECK_STATUS(nnm_tensor_set_grad(pl.t[i], grads[i]), NNM_OK);
        CHECK_STATUS(nnm_optim_step(o), NNM_OK); /* makes the state */
        nnm_ctx_stats s0 = tu_stats(g_ctx);
        for (int it = 0; it < 10; it++) {
            CHECK_STATUS(nnm_optim_step(o), NNM_OK);
            CHECK_STATUS(nnm_optim_zero_grad(o), NNM_OK);
            for (int i = 0; i < pl.n; i++)
                CHECK_STATUS(nnm_tensor_set_grad(pl.t[i], grads[i]), NNM_OK);
        }
        nnm_ctx_stats s1 = tu_stats(g_ctx);
        CU_ASSERT_EQUAL(s1.heap_allocs, s0.heap_allocs);
        CU_ASSERT_EQUAL(s1.cache_hits, s0.cache_hits);
        CU_ASSERT_EQUAL(s1.live_tensors, s0.live_tensors);
        CHECK_STATUS(nnm_optim_zero_grad(o), NNM_OK);
        nnm_optim_free(o);
    }
    for (int i = 0; i < pl.n; i++)
        nnm_tensor_release(grads[i]);
    nnm_module_release(m);
    LEAK_CHECK_END();
}

/* A non-contiguous .grad (a transposed view imported through DLPack) is
 * read in logical order. */
static void test_strided_grad(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *m = tu_linear(g_ctx, "linear", 4, 3, -1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    tu_named pl = tu_params_of(m);
    float w0[12], w1[12];
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(pl.t[0], w0, 12), NNM_OK);
    /* storage holds g^T (4 x 3); the view is g (3 x 4) with strides {1, 3} */
    float storage[12];
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 4; c++)
            storage[c * 3 + r] = (float)(r * 4 + c) * 0.125f;
    int64_t shape[2] = {3, 4}, strides[2] = {1, 3};
    nnm_dlpack_tensor dl;
    memset(&dl, 0, sizeof dl);
    dl.version.major = 1;
    dl.dl_tensor.data = storage;
    dl.dl_tensor.device.type = NNM_DEVICE_CPU;
    dl.dl_tensor.ndim = 2;
    dl.dl_tensor.dtype.code = NNM_DTYPE_FLOAT;
    dl.dl_tensor.dtype.bits = 32;
    dl.dl_tensor.dtype.lanes = 1;
    dl.dl_tensor.shape = shape;
    dl.dl_tensor.strides = strides;
    nnm_tensor *g = NULL;
    CHECK_STATUS(nnm_tensor_from_dlpack(g_ctx, &dl, &g), NNM_OK);
    CHECK_STATUS(nnm_tensor_set_grad(pl.t[0], g), NNM_OK);
    nnm_tensor_release(g);
    nnm_sgd_options so = sgd_opts(1.0, 0);
    nnm_optim *o = NULL;
    CHECK_STATUS(nnm_optim_sgd_new(m, &so, &o), NNM_OK);
    CHECK_STATUS(nnm_optim_step(o), NNM_OK);
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(pl.t[0], w1, 12), NNM_OK);
    for (int k = 0; k < 12; k++)
        CU_ASSERT_EQUAL(w1[k], w0[k] - (float)k * 0.125f);
    nnm_optim_free(o);
    nnm_module_release(m); /* drops the grad, which calls the (NULL) deleter */
    LEAK_CHECK_END();
}

/* ------------------------------------------------------------------------ */
/* Bad input                                                                 */
/* ------------------------------------------------------------------------ */

static void test_bad_options(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *m = tu_linear(g_ctx, "linear", 2, 2, -1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    nnm_optim *o = (nnm_optim *)&o; /* must come back NULL */
    nnm_sgd_options so = sgd_opts(0.1, 0.9);
    nnm_adam_options ao = adam_opts(0.1, 0);

    CHECK_STATUS(nnm_optim_sgd_new(NULL, &so, &o), NNM_E_INVALID);
    CU_ASSERT_PTR_NULL(o);
    CHECK_STATUS(nnm_optim_sgd_new(m, NULL, &o), NNM_E_INVALID);
    CHECK_STATUS(nnm_optim_sgd_new(m, &so, NULL), NNM_E_INVALID);
    CHECK_STATUS(nnm_optim_adam_new(NULL, &ao, &o), NNM_E_INVALID);
    CHECK_STATUS(nnm_optim_adam_new(m, NULL, &o), NNM_E_INVALID);

    so.struct_size = 8;
    CHECK_STATUS(nnm_optim_sgd_new(m, &so, &o), NNM_E_INVALID);
    CHECK_MSG("struct_size");
    so = sgd_opts(-0.1, 0.9);
    CHECK_STATUS(nnm_optim_sgd_new(m, &so, &o), NNM_E_INVALID);
    CHECK_MSG("Invalid learning rate: -0.1");
    so = sgd_opts(NAN, 0.9);
    CHECK_STATUS(nnm_optim_sgd_new(m, &so, &o), NNM_E_INVALID);
    so = sgd_opts(0.1, -0.5);
    CHECK_STATUS(nnm_optim_sgd_new(m, &so, &o), NNM_E_INVALID);
    CHECK_MSG("Invalid momentum value: -0.5");
    so = sgd_opts(0.1, 0.9);
    so.weight_decay = -1;
    CHECK_STATUS(nnm_optim_sgd_new(m, &so, &o), NNM_E_INVALID);
    CHECK_MSG("Invalid weight_decay value");
    so = sgd_opts(0.1, 0);
    so.nesterov = 1;
    CHECK_STATUS(nnm_optim_sgd_new(m, &so, &o), NNM_E_INVALID);
    CHECK_MSG("Nesterov momentum requires a momentum and zero dampening");
    so = sgd_opts(0.1, 0.9);
    so.nesterov = 1;
    so.dampening = 0.1;
    CHECK_STATUS(nnm_optim_sgd_new(m, &so, &o), NNM_E_INVALID);
    CHECK_MSG("Nesterov momentum requires a momentum and zero dampening");
    so.dampening = 0;
    CHECK_STATUS(nnm_optim_sgd_new(m, &so, &o), NNM_OK); /* valid now */
    nnm_optim_free(o);
    o = NULL;

    ao.struct_size = 4;
    CHECK_STATUS(nnm_optim_adam_new(m, &ao, &o), NNM_E_INVALID);
    const double bad_betas[][2] = {{1.0, 0.999}, {-0.1, 0.999}, {0.9, 1.0}, {0.9, -1e-9},
                                   {NAN, 0.999}};
    for (size_t i = 0; i < sizeof bad_betas / sizeof bad_betas[0]; i++) {
        ao = adam_opts(0.1, 1);
        ao.beta1 = bad_betas[i][0];
        ao.beta2 = bad_betas[i][1];
        CHECK_STATUS(nnm_optim_adam_new(m, &ao, &o), NNM_E_INVALID);
        CHECK_MSG(i < 2 || i == 4 ? "Invalid beta parameter at index 0"
                                  : "Invalid beta parameter at index 1");
        CU_ASSERT_PTR_NULL(o);
    }
    ao = adam_opts(0.1, 1);
    ao.eps = -1e-8;
    CHECK_STATUS(nnm_optim_adam_new(m, &ao, &o), NNM_E_INVALID);
    CHECK_MSG("Invalid epsilon value");
    ao = adam_opts(-1, 1);
    CHECK_STATUS(nnm_optim_adam_new(m, &ao, &o), NNM_E_INVALID);
    CHECK_MSG("Invalid learning rate");
    ao = adam_opts(0.1, 1);
    ao.weight_decay = -0.01;
    CHECK_STATUS(nnm_optim_adam_new(m, &ao, &o), NNM_E_INVALID);
    CHECK_MSG("Invalid weight_decay value");
    ao = adam_opts(0.0, 0); /* lr 0, betas 0, eps 0 are all allowed */
    ao.beta1 = 0;
    ao.beta2 = 0;
    ao.eps = 0;
    CHECK_STATUS(nnm_optim_adam_new(m, &ao, &o), NNM_OK);
    nnm_optim_free(o);
    nnm_module_release(m);
    LEAK_CHECK_END();
}

static void test_empty_parameter_list(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *relu = NULL, *seq = NULL;
    CHECK_STATUS(nnm_module_create(g_ctx, "relu", NULL, &relu), NNM_OK);
    CHECK_STATUS(nnm_module_create(g_ctx, "sequential", NULL, &seq), NNM_OK);
    CU_ASSERT_FATAL(relu && seq);
    nnm_sgd_options so = sgd_opts(0.1, 0);
    nnm_adam_options ao = adam_opts(0.1, 1);
    nnm_optim *o = NULL;
    CHECK_STATUS(nnm_optim_sgd_new(relu, &so, &o), NNM_E_INVALID);
    CHECK_MSG("optimizer got an empty parameter list");
    CU_ASSERT_PTR_NULL(o);
    CHECK_STATUS(nnm_optim_adam_new(seq, &ao, &o), NNM_E_INVALID);
    CHECK_MSG("optimizer got an empty parameter list");
    CU_ASSERT_PTR_NULL(o);
    /* a container whose only child has no parameters is still empty */
    CHECK_STATUS(nnm_module_add_child(seq, NULL, relu), NNM_OK);
    CHECK_STATUS(nnm_optim_adam_new(seq, &ao, &o), NNM_E_INVALID);
    nnm_module_release(relu);
    nnm_module_release(seq);
    LEAK_CHECK_END();
}

static void test_null_safety(void) {
    nnm_optim_free(NULL);
    CU_ASSERT_EQUAL(nnm_optim_step(NULL), NNM_E_INVALID);
    CU_ASSERT_EQUAL(nnm_optim_zero_grad(NULL), NNM_E_INVALID);
    CU_ASSERT_EQUAL(nnm_optim_state(NULL, tu_named_add, NULL), NNM_E_INVALID);
    CU_ASSERT_EQUAL(nnm_optim_group_count(NULL), 0);
    CU_ASSERT_EQUAL(nnm_optim_set_lr(NULL, 0, 0.1), NNM_E_INVALID);
    CU_ASSERT_TRUE(isnan(nnm_optim_get_lr(NULL, 0)));
    uint32_t gi = 7;
    CU_ASSERT_EQUAL(nnm_optim_add_group(NULL, "0.", 0.1, 0, &gi), NNM_E_INVALID);
    CU_ASSERT_EQUAL(gi, UINT32_MAX);
    LEAK_CHECK_BEGIN();
    nnm_module *m = tu_linear(g_ctx, "linear", 2, 2, -1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    nnm_sgd_options so = sgd_opts(0.1, 0);
    nnm_optim *o = NULL;
    CHECK_STATUS(nnm_optim_sgd_new(m, &so, &o), NNM_OK);
    CHECK_STATUS(nnm_optim_state(o, NULL, NULL), NNM_E_INVALID);
    nnm_optim_free(o);
    nnm_module_release(m);
    LEAK_CHECK_END();
}

int main(void) {
    CU_pSuite s = tu_suite("optim", suite_init, suite_clean);
    if (s == NULL)
        return 1;
    CU_add_test(s, "PyTorch parity (SGD, Adam, AdamW, groups)", test_golden);
    const char *dev = getenv("NNM_TEST_DEVICE");
    if (dev != NULL && *dev && strcmp(dev, "cpu") != 0)
        return tu_run(); /* off the CPU: the parity cases only */
    CU_add_test(s, "params without grad are skipped", test_skip_without_grad);
    CU_add_test(s, "zero_grad", test_zero_grad);
    CU_add_test(s, "state names", test_state_names);
    CU_add_test(s, "groups and lr", test_groups_lr);
    CU_add_test(s, "holds its module", test_holds_module);
    CU_add_test(s, "steady-state step allocates nothing", test_steady_state_no_alloc);
    CU_add_test(s, "strided grad", test_strided_grad);
    CU_add_test(s, "bad options", test_bad_options);
    CU_add_test(s, "empty parameter list", test_empty_parameter_list);
    CU_add_test(s, "NULL safety", test_null_safety);
    return tu_run();
}
