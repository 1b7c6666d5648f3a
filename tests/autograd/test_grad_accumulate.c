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

int main(void) {
    CU_pSuite s = tu_suite("grad_accumulate", ag_suite_init, ag_suite_clean);
    if (!s) return 1;
    CU_add_test(s, ".grad is updated in place (PyTorch AccumulateGrad)", test_grad_updated_in_place);
    CU_add_test(s, "two uses of a leaf add up in one .grad", test_two_uses_one_grad);
    return tu_run();
}
