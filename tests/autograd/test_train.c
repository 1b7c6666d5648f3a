/* tests/autograd/test_train.c - end-to-end training through the call path,
 * autograd, a loss layer and an optimizer: small models on synthetic
 * separable problems must reach 100% training accuracy within a bounded
 * number of steps (each step: zero_grad, forward, loss, backward, step).
 * Deterministic: the data come from a fixed LCG and the weights from the
 * context's default seed.
 */
#include "ag_test.h"

#define N_SAMPLES 64

/* XOR of quadrants: class 1 where x0 * x1 > 0; every |x_i| >= 0.2 (a margin).
 * Separable by an MLP, not by a linear model. */
static void make_xor(float *x, int64_t *y) {
    float u[2 * N_SAMPLES];
    tu_fill_uniform(u, 2 * N_SAMPLES, 77, -1.0, 1.0);
    for (int i = 0; i < N_SAMPLES; i++) {
        for (int j = 0; j < 2; j++) {
            float v = u[2 * i + j];
            x[2 * i + j] = v < 0 ? v * 0.8f - 0.2f : v * 0.8f + 0.2f;
        }
        y[i] = (x[2 * i] * x[2 * i + 1] > 0) ? 1 : 0;
    }
}

/* Two blobs around (-1, -1) and (1, 1): linearly separable. */
static void make_blobs(float *x, int64_t *y) {
    float u[2 * N_SAMPLES];
    tu_fill_uniform(u, 2 * N_SAMPLES, 78, -0.7, 0.7);
    for (int i = 0; i < N_SAMPLES; i++) {
        y[i] = i % 2;
        const float c = y[i] ? 1.0f : -1.0f;
        x[2 * i] = c + u[2 * i];
        x[2 * i + 1] = c + u[2 * i + 1];
    }
}

/* Fraction of rows of logits [N, 2] whose argmax is the label. */
static double accuracy(nnm_tensor *logits, const int64_t *y) {
    float v[2 * N_SAMPLES];
    if (nnm_tensor_to_f32(logits, v, 2 * N_SAMPLES) != NNM_OK)
        return -1.0;
    int ok = 0;
    for (int i = 0; i < N_SAMPLES; i++)
        ok += (v[2 * i + 1] > v[2 * i]) == (y[i] == 1);
    return (double)ok / N_SAMPLES;
}

static uint64_t heap_allocs(void) {
    nnm_ctx_stats s;
    memset(&s, 0, sizeof s);
    s.struct_size = sizeof s;
    return nnm_ctx_stats_get(g_ctx, &s) == NNM_OK ? s.heap_allocs : 0;
}

/* Trains `model` with `opt` on (x, y) until every sample is right; returns the
 * step at which it got there, or -1. */
static int train(const char *what, nnm_module *model, nnm_optim *opt, nnm_tensor *x,
                 nnm_tensor *t, const int64_t *y, int max_steps) {
    nnm_module *ce = mk_loss("cross_entropy", NULL, INT64_MIN, -1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ce);
    double first_loss = NAN, last_loss = NAN;
    int reached = -1;
    uint64_t allocs_before = 0, allocs_steps = 0;
    for (int step = 0; step < max_steps; step++) {
        if (step == 10)
            allocs_before = heap_allocs();
        CHECK_STATUS(nnm_optim_zero_grad(opt), NNM_OK);
        nnm_tensor *logits = NULL, *loss = NULL;
        CHECK_STATUS(tu_call1(model, x, &logits), NNM_OK);
        CU_ASSERT_PTR_NOT_NULL_FATAL(logits);
        CHECK_STATUS(tu_call2(ce, logits, t, &loss), NNM_OK);
        CU_ASSERT_PTR_NOT_NULL_FATAL(loss);
        last_loss = scalar_of(loss);
        if (step == 0)
            first_loss = last_loss;
        const double acc = accuracy(logits, y);
        if (acc == 1.0 && reached < 0) {
            reached = step;
            nnm_tensor_release(logits);
            nnm_tensor_release(loss);
            break;
        }
        CHECK_STATUS(nnm_backward(loss, NULL, 0), NNM_OK);
        CHECK_STATUS(nnm_optim_step(opt), NNM_OK);
        nnm_tensor_release(logits);
        nnm_tensor_release(loss);
        if (step == 19)
            allocs_steps = heap_allocs() - allocs_before;
    }
    printf("\n    %s: 100%% after %d steps (loss %.4f -> %.4f); heap allocations in "
           "steps 10-19: %llu ",
           what, reached, first_loss, last_loss, (unsigned long long)allocs_steps);
    CU_ASSERT_TRUE(last_loss < first_loss);
    nnm_module_release(ce);
    return reached;
}

static void test_train_xor_mlp(void) {
    LEAK_CHECK_BEGIN();
    float xv[2 * N_SAMPLES];
    int64_t yv[N_SAMPLES];
    make_xor(xv, yv);
    nnm_tensor *x = tu_tf32(g_ctx, 2, (int64_t[]){N_SAMPLES, 2}, xv);
    nnm_tensor *t = tu_ti64(g_ctx, 1, (int64_t[]){N_SAMPLES}, yv);
    nnm_module *mlp = mk_mlp(2, 16, 2);
    CU_ASSERT_PTR_NOT_NULL_FATAL(mlp);
    nnm_adam_options ao = {sizeof ao, 0, 1, 0, 0.05, 0.9, 0.999, 1e-8, 0.0};
    nnm_optim *opt = NULL;
    CHECK_STATUS(nnm_optim_adam_new(mlp, &ao, &opt), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(opt);
    const int reached = train("XOR, MLP 2-16-2, AdamW", mlp, opt, x, t, yv, 500);
    CU_ASSERT_TRUE(reached >= 0);
    nnm_optim_free(opt);
    nnm_module_release(mlp);
    nnm_tensor_release(x);
    nnm_tensor_release(t);
    LEAK_CHECK_END();
}

static void test_train_blobs_sgd(void) {
    LEAK_CHECK_BEGIN();
    float xv[2 * N_SAMPLES];
    int64_t yv[N_SAMPLES];
    make_blobs(xv, yv);
    nnm_tensor *x = tu_tf32(g_ctx, 2, (int64_t[]){N_SAMPLES, 2}, xv);
    nnm_tensor *t = tu_ti64(g_ctx, 1, (int64_t[]){N_SAMPLES}, yv);
    nnm_module *mlp = mk_mlp(2, 8, 2);
    CU_ASSERT_PTR_NOT_NULL_FATAL(mlp);
    nnm_sgd_options so = {sizeof so, 1, 0.1, 0.9, 0.0, 1e-4}; /* nesterov */
    nnm_optim *opt = NULL;
    CHECK_STATUS(nnm_optim_sgd_new(mlp, &so, &opt), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(opt);
    const int reached = train("blobs, MLP 2-8-2, SGD nesterov", mlp, opt, x, t, yv, 300);
    CU_ASSERT_TRUE(reached >= 0);
    nnm_optim_free(opt);
    nnm_module_release(mlp);
    nnm_tensor_release(x);
    nnm_tensor_release(t);
    LEAK_CHECK_END();
}

int main(void) {
    CU_pSuite s = tu_suite("training", ag_suite_init, ag_suite_clean);
    if (s == NULL)
        return 2;
    CU_add_test(s, "XOR quadrants, MLP, AdamW: 100% accuracy", test_train_xor_mlp);
    CU_add_test(s, "two blobs, MLP, SGD nesterov: 100% accuracy", test_train_blobs_sgd);
    return tu_run();
}
