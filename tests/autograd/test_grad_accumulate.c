/* tests/autograd/test_grad_accumulate.c - .grad accumulation matches
 * PyTorch's AccumulateGrad: without create_graph the same tensor is updated
 * in place (`variable.grad += new_grad`), so a reference taken to .grad
 * before a second backward sees the sum:
 *
 *     w = torch.ones(3, requires_grad=True)
 *     (w * 2).sum().backward(); g = w.grad
 *     (w * 3).sum().backward()
 *     w.grad is g, g == [5, 5, 5]
 *
 * and a tensor assigned with `w.grad = t` is the one that accumulates. */
#include "ag_test.h"

static void scaled_sum_backward(nnm_tensor *w, double k) {
    nnm_tensor *y = NULL, *l = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_op_unary(g_ctx, NNM_UNARY_SCALE, w, k, &y), NNM_OK);
    CU_ASSERT_EQUAL_FATAL(nnm_op_reduce(g_ctx, NNM_REDUCE_SUM, y, NULL, 0, 0, &l), NNM_OK);
    CHECK_STATUS(nnm_backward(l, NULL, 0), NNM_OK);
    nnm_tensor_release(l);
    nnm_tensor_release(y);
}

static void test_grad_updated_in_place(void) {
    LEAK_CHECK_BEGIN();
    int64_t shape[1] = {3};
    float ones[3] = {1, 1, 1}, v[3];
    nnm_tensor *w = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_tensor_from_f32(g_ctx, 1, shape, ones, &w), NNM_OK);
    nnm_tensor_set_requires_grad(w, 1);
    scaled_sum_backward(w, 2.0);
    nnm_tensor *g = nnm_tensor_grad(w);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    nnm_tensor_retain(g); /* g = w.grad */
    scaled_sum_backward(w, 3.0);
    CU_ASSERT_PTR_EQUAL(nnm_tensor_grad(w), g); /* w.grad is g */
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(g, v, 3), NNM_OK);
    for (int i = 0; i < 3; i++) CU_ASSERT_DOUBLE_EQUAL(v[i], 5.0, 0);
    nnm_tensor_release(g);

    /* w.grad = t: t accumulates */
    float tv[3] = {10, 20, 30};
    nnm_tensor *t = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_tensor_from_f32(g_ctx, 1, shape, tv, &t), NNM_OK);
    CU_ASSERT_EQUAL(nnm_tensor_set_grad(w, t), NNM_OK);
    scaled_sum_backward(w, 2.0);
    CU_ASSERT_PTR_EQUAL(nnm_tensor_grad(w), t);
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(t, v, 3), NNM_OK);
    CU_ASSERT_DOUBLE_EQUAL(v[0], 12.0, 0);
    CU_ASSERT_DOUBLE_EQUAL(v[2], 32.0, 0);
    nnm_tensor_release(t);

    /* zero_grad (set_to_none) then backward: a fresh .grad, the old one untouched */
    nnm_tensor *old = nnm_tensor_grad(w);
    nnm_tensor_retain(old);
    CU_ASSERT_EQUAL(nnm_tensor_set_grad(w, NULL), NNM_OK);
    scaled_sum_backward(w, 2.0);
    CU_ASSERT_PTR_NOT_EQUAL(nnm_tensor_grad(w), old);
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(old, v, 3), NNM_OK);
    CU_ASSERT_DOUBLE_EQUAL(v[0], 12.0, 0);
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(nnm_tensor_grad(w), v, 3), NNM_OK);
    CU_ASSERT_DOUBLE_EQUAL(v[0], 2.0, 0);
    nnm_tensor_release(old);
    nnm_tensor_release(w);
    LEAK_CHECK_END();
}

/* A parameter used twice in one graph: both contributions land in one .grad
 * (the second in place). PyTorch: w.grad == 2 + 3 after (2w + 3w).sum(). */
static void test_two_uses_one_grad(void) {
    LEAK_CHECK_BEGIN();
    int64_t shape[1] = {2};
    float ones[2] = {1, 1}, v[2];
    nnm_tensor *w = NULL, *a = NULL, *b = NULL, *s = NULL, *l = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_tensor_from_f32(g_ctx, 1, shape, ones, &w), NNM_OK);
    nnm_tensor_set_requires_grad(w, 1);
    CU_ASSERT_EQUAL_FATAL(nnm_op_unary(g_ctx, NNM_UNARY_SCALE, w, 2.0, &a), NNM_OK);
    CU_ASSERT_EQUAL_FATAL(nnm_op_unary(g_ctx, NNM_UNARY_SCALE, w, 3.0, &b), NNM_OK);
    CU_ASSERT_EQUAL_FATAL(nnm_op_binary(g_ctx, NNM_BINARY_ADD, a, b, &s), NNM_OK);
    CU_ASSERT_EQUAL_FATAL(nnm_op_reduce(g_ctx, NNM_REDUCE_SUM, s, NULL, 0, 0, &l), NNM_OK);
    CHECK_STATUS(nnm_backward(l, NULL, 0), NNM_OK);
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(nnm_tensor_grad(w), v, 2), NNM_OK);
    CU_ASSERT_DOUBLE_EQUAL(v[0], 5.0, 0);
    CU_ASSERT_DOUBLE_EQUAL(v[1], 5.0, 0);
    nnm_tensor_release(l);
    nnm_tensor_release(s);
    nnm_tensor_release(b);
    nnm_tensor_release(a);
    nnm_tensor_release(w);
    LEAK_CHECK_END();
}

/* sum(5d + 6d) backward on its own graph, from inside a hook (torch.enable_grad()). */
static nnm_status inner_backward(void *user, nnm_tensor *t) {
    (void)t;
    nnm_tensor *d = user, *y = NULL, *y2 = NULL, *s = NULL, *l = NULL;
    int prev = nnm_grad_set_enabled(1); /* backward runs hooks with grad mode off, as PyTorch */
    nnm_status st = nnm_op_unary(g_ctx, NNM_UNARY_SCALE, d, 5.0, &y);
    if (!st) st = nnm_op_unary(g_ctx, NNM_UNARY_SCALE, d, 6.0, &y2);
    if (!st) st = nnm_op_binary(g_ctx, NNM_BINARY_ADD, y, y2, &s);
    if (!st) st = nnm_op_reduce(g_ctx, NNM_REDUCE_SUM, s, NULL, 0, 0, &l);
    if (!st) st = nnm_backward(l, NULL, 0);
    nnm_tensor_release(l);
    nnm_tensor_release(s);
    nnm_tensor_release(y2);
    nnm_tensor_release(y);
    nnm_grad_set_enabled(prev);
    return st;
}

/* A hook may run a backward of its own (a penalty term, a probe): the outer
 * walk still holds nodes it has not run, and the inner one must not walk
 * over them. sum(2a + 3b + 4c): c's hook fires while a*2 + b*3's node waits
 * on the engine stack. */
static void test_backward_inside_hook(void) {
    LEAK_CHECK_BEGIN();
    int64_t shape[1] = {2};
    float ones[2] = {1, 1}, v[2];
    nnm_tensor *lv[4] = {0}, *t[6] = {0}, *l = NULL;
    for (int i = 0; i < 4; i++) {
        CU_ASSERT_EQUAL_FATAL(nnm_tensor_from_f32(g_ctx, 1, shape, ones, &lv[i]), NNM_OK);
        nnm_tensor_set_requires_grad(lv[i], 1);
    }
    CU_ASSERT_EQUAL_FATAL(nnm_tensor_register_post_accumulate_grad_hook(lv[2], inner_backward, lv[3], NULL),
                          NNM_OK);
    for (int i = 0; i < 3; i++)
        CU_ASSERT_EQUAL_FATAL(nnm_op_unary(g_ctx, NNM_UNARY_SCALE, lv[i], 2.0 + i, &t[i]), NNM_OK);
    CU_ASSERT_EQUAL_FATAL(nnm_op_binary(g_ctx, NNM_BINARY_ADD, t[0], t[1], &t[3]), NNM_OK);
    CU_ASSERT_EQUAL_FATAL(nnm_op_binary(g_ctx, NNM_BINARY_ADD, t[3], t[2], &t[4]), NNM_OK);
    CU_ASSERT_EQUAL_FATAL(nnm_op_reduce(g_ctx, NNM_REDUCE_SUM, t[4], NULL, 0, 0, &l), NNM_OK);
    CHECK_STATUS(nnm_backward(l, NULL, 0), NNM_OK);
    static const double want[4] = {2, 3, 4, 11};
    for (int i = 0; i < 4; i++) {
        CU_ASSERT_PTR_NOT_NULL_FATAL(nnm_tensor_grad(lv[i]));
        CU_ASSERT_EQUAL(nnm_tensor_to_f32(nnm_tensor_grad(lv[i]), v, 2), NNM_OK);
        CU_ASSERT_DOUBLE_EQUAL(v[0], want[i], 0);
        CU_ASSERT_DOUBLE_EQUAL(v[1], want[i], 0);
    }
    nnm_tensor_release(l);
    for (int i = 0; i < 5; i++) nnm_tensor_release(t[i]);
    for (int i = 0; i < 4; i++) nnm_tensor_release(lv[i]);
    LEAK_CHECK_END();
}

int main(void) {
    CU_pSuite s = tu_suite("grad_accumulate", ag_suite_init, ag_suite_clean);
    if (!s) return 1;
    CU_add_test(s, ".grad is updated in place (PyTorch AccumulateGrad)", test_grad_updated_in_place);
    CU_add_test(s, "two uses of a leaf add up in one .grad", test_two_uses_one_grad);
    CU_add_test(s, "a backward run inside a hook leaves the outer walk intact", test_backward_inside_hook);
    return tu_run();
}
