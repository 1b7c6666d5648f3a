/* tests/runtime/test_call_fast.c - the rules the small-model path must keep
 * (issue 21, bench_call's seq50: a 50-deep Sequential(Linear(16, 16), ReLU)
 * at batch 1). Whatever makes a steady-state forward cheap (the call path's
 * hook-free branch, pooled tensors and nodes, the cpu backend's batch-1
 * gemv), nothing is decided once and reused:
 *   - a hook registered between two calls, on a module deep in the tree or
 *     on the context, runs on the second; one removed does not;
 *   - no_grad records nothing (no output requires grad, no node to walk),
 *     and grad mode back on records again on the very next call;
 *   - train/eval switched between calls is honoured by the next call;
 *   - the batch-1 gemv gives the product for every size near the kernel's
 *     blocking (8 rows, k a multiple of 8 or not), with and without bias;
 *   - ReLU keeps torch.relu's values (-0, NaN, infinities) in the vector
 *     blocks and the tail of the backend's small-row loop;
 *   - a warm forward makes no heap allocation and the allocator's books
 *     (bytes in use and cached, hits, peaks) balance over steady calls;
 *   - under ASan, the free lists poison what they hold: a released tensor's
 *     object and its cached data block read as poisoned, and the block
 *     handed out again does not.
 */
#include "test_util.h"

#if defined(__SANITIZE_ADDRESS__)
#define TCF_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TCF_ASAN 1
#endif
#endif
#ifdef TCF_ASAN
#include <sanitizer/asan_interface.h>
#endif

static nnm_ctx *g_ctx;
#define TU_CTX g_ctx

static int suite_init(void) { return tu_ctx_new(&g_ctx); }
static int suite_fini(void) { return tu_ctx_free(&g_ctx); }

#define DEPTH 10 /* Linear(16, 16) + ReLU pairs */

/* Sequential of DEPTH x (Linear(16, 16), ReLU). */
static nnm_module *seq_model(void) {
    nnm_module *seq = tu_module(g_ctx, "sequential", NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(seq);
    for (int i = 0; i < DEPTH; i++) {
        nnm_module *l = tu_linear(g_ctx, "linear", 16, 16, -1);
        nnm_module *r = tu_module(g_ctx, "relu", NULL);
        CU_ASSERT_PTR_NOT_NULL_FATAL(l);
        CU_ASSERT_PTR_NOT_NULL_FATAL(r);
        CU_ASSERT_EQUAL(nnm_module_add_child(seq, NULL, l), NNM_OK);
        CU_ASSERT_EQUAL(nnm_module_add_child(seq, NULL, r), NNM_OK);
        nnm_module_release(l);
        nnm_module_release(r);
    }
    return seq;
}

static nnm_tensor *input16(void) {
    float v[16];
    for (int i = 0; i < 16; i++) v[i] = 0.25f * (float)(i % 5) - 0.3f;
    int64_t shape[2] = {1, 16};
    return tu_tf32(g_ctx, 2, shape, v);
}

/* Calls m on x `n` times, dropping the outputs. */
static void call_n(nnm_module *m, nnm_tensor *x, int n) {
    for (int i = 0; i < n; i++) {
        nnm_tensor *y = NULL;
        CU_ASSERT_EQUAL(tu_call1(m, x, &y), NNM_OK);
        nnm_tensor_release(y);
    }
}

/* ---- hooks between calls -------------------------------------------------- */

static nnm_status count_pre(void *user, nnm_module *m, nnm_tensor **in, uint32_t n_in) {
    (void)m, (void)in, (void)n_in;
    (*(int *)user)++;
    return NNM_OK;
}

static nnm_status count_post(void *user, nnm_module *m, nnm_tensor *const *in, uint32_t n_in,
                             nnm_tensor **out, uint32_t n_out) {
    (void)m, (void)in, (void)n_in, (void)out, (void)n_out;
    (*(int *)user)++;
    return NNM_OK;
}

/* A forward hook that replaces the output by zeros of its shape: its effect
 * shows in the model's output. (Releasing out[0] here too would be a double
 * release: the ASan build's poisoned free list reports it.) */
static nnm_status zero_post(void *user, nnm_module *m, nnm_tensor *const *in, uint32_t n_in,
                            nnm_tensor **out, uint32_t n_out) {
    (void)user, (void)in, (void)n_in, (void)n_out;
    float z[16] = {0};
    int64_t shape[2] = {1, 16};
    nnm_tensor *t = NULL;
    nnm_status st = nnm_tensor_from_f32(nnm_module_ctx(m), 2, shape, z, &t);
    if (st) return st;
    out[0] = t; /* the call path releases the output it replaces */
    return NNM_OK;
}

static void test_hook_added_between_calls_runs(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *seq = seq_model();
    nnm_tensor *x = input16();
    call_n(seq, x, 3); /* steady state first: pools warm, the plain path taken */

    /* a pre- and a forward hook on a module deep in the tree */
    nnm_module *deep = nnm_module_child(seq, 2 * DEPTH - 3); /* a linear near the end */
    CU_ASSERT_PTR_NOT_NULL_FATAL(deep);
    int pre = 0, post = 0;
    nnm_hook_handle *hp = NULL, *hf = NULL;
    CU_ASSERT_EQUAL(nnm_module_register_forward_pre_hook(deep, count_pre, &pre, &hp), NNM_OK);
    CU_ASSERT_EQUAL(nnm_module_register_forward_hook(deep, count_post, &post, &hf), NNM_OK);
    call_n(seq, x, 1);
    CU_ASSERT_EQUAL(pre, 1);
    CU_ASSERT_EQUAL(post, 1);
    call_n(seq, x, 2);
    CU_ASSERT_EQUAL(pre, 3);
    CU_ASSERT_EQUAL(post, 3);

    /* removed between calls: not run on the next */
    nnm_hook_remove(hp);
    nnm_hook_remove(hf);
    call_n(seq, x, 2);
    CU_ASSERT_EQUAL(pre, 3);
    CU_ASSERT_EQUAL(post, 3);

    /* a global hook registered between calls sees every module of the next
     * call (the root and its 2 * DEPTH children), and none after removal */
    int g = 0;
    nnm_hook_handle *hg = NULL;
    CU_ASSERT_EQUAL(nnm_ctx_register_forward_hook(g_ctx, count_post, &g, &hg), NNM_OK);
    call_n(seq, x, 1);
    CU_ASSERT_EQUAL(g, 2 * DEPTH + 1);
    nnm_hook_remove(hg);
    call_n(seq, x, 1);
    CU_ASSERT_EQUAL(g, 2 * DEPTH + 1);

    /* a hook that changes the output, added after many plain calls: the
     * next output is what the hook made it (the last ReLU's output zeroed) */
    nnm_module *last = nnm_module_child(seq, 2 * DEPTH - 1);
    nnm_hook_handle *hz = NULL;
    CU_ASSERT_EQUAL(nnm_module_register_forward_hook(last, zero_post, NULL, &hz), NNM_OK);
    nnm_tensor *y = NULL;
    CU_ASSERT_EQUAL(tu_call1(seq, x, &y), NNM_OK);
    float v[16];
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(y, v, 16), NNM_OK);
    int zeros = 0;
    for (int i = 0; i < 16; i++) zeros += v[i] == 0.0f;
    CU_ASSERT_EQUAL(zeros, 16);
    nnm_tensor_release(y);
    nnm_hook_remove(hz);

    nnm_tensor_release(x);
    nnm_module_release(seq);
    LEAK_CHECK_END();
}

/* ---- grad mode between calls --------------------------------------------- */

static void test_no_grad_records_nothing(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *seq = seq_model();
    nnm_tensor *x = input16();
    call_n(seq, x, 3);

    int prev = nnm_grad_set_enabled(0);
    nnm_tensor *y = NULL;
    CU_ASSERT_EQUAL(tu_call1(seq, x, &y), NNM_OK);
    CU_ASSERT_EQUAL(nnm_tensor_requires_grad(y), 0);
    nnm_grad_set_enabled(prev);
    /* no graph behind it: backward has nothing to walk and says so */
    CU_ASSERT_NOT_EQUAL(nnm_backward(y, NULL, 0), NNM_OK);
    nnm_tensor_release(y);
    /* and no parameter got a gradient */
    nnm_module *first = nnm_module_child(seq, 0);
    tu_named p = tu_params_of(first);
    nnm_tensor *w = tu_named_get(&p, "weight");
    CU_ASSERT_PTR_NOT_NULL_FATAL(w);
    CU_ASSERT_PTR_NULL(nnm_tensor_grad(w));

    /* grad mode back on: the very next call records, and backward reaches the
     * first layer's weight */
    y = NULL;
    CU_ASSERT_EQUAL(tu_call1(seq, x, &y), NNM_OK);
    CU_ASSERT_EQUAL(nnm_tensor_requires_grad(y), 1);
    nnm_tensor *s = NULL;
    CU_ASSERT_EQUAL(nnm_op_reduce(g_ctx, NNM_REDUCE_SUM, y, NULL, 0, 0, &s), NNM_OK);
    if (s) {
        CU_ASSERT_EQUAL(nnm_backward(s, NULL, 0), NNM_OK);
        nnm_tensor_release(s);
    }
    CU_ASSERT_PTR_NOT_NULL(nnm_tensor_grad(w));
    nnm_tensor_release(y);
    CU_ASSERT_EQUAL(nnm_module_zero_grad(seq), NNM_OK);

    /* and off again, after a recorded call */
    prev = nnm_grad_set_enabled(0);
    y = NULL;
    CU_ASSERT_EQUAL(tu_call1(seq, x, &y), NNM_OK);
    CU_ASSERT_EQUAL(nnm_tensor_requires_grad(y), 0);
    nnm_tensor_release(y);
    nnm_grad_set_enabled(prev);

    nnm_tensor_release(x);
    nnm_module_release(seq);
    LEAK_CHECK_END();
}

/* ---- train/eval between calls --------------------------------------------- */

static void test_eval_switch_between_calls(void) {
    LEAK_CHECK_BEGIN();
    /* Sequential(Linear, ReLU, ..., Dropout(0.5)): eval is deterministic,
     * train zeroes about half and doubles the rest */
    nnm_module *seq = seq_model();
    nnm_config *cfg = NULL;
    nnm_config_new(&cfg);
    nnm_config_set_float(cfg, "p", 0.5);
    nnm_module *drop = tu_module(g_ctx, "dropout", cfg);
    nnm_config_free(cfg);
    CU_ASSERT_PTR_NOT_NULL_FATAL(drop);
    CU_ASSERT_EQUAL(nnm_module_add_child(seq, NULL, drop), NNM_OK);
    nnm_module_release(drop);
    float ones[16];
    for (int i = 0; i < 16; i++) ones[i] = 1.0f;
    int64_t shape[2] = {1, 16};
    /* a positive input through small positive weights: every ReLU output
     * positive, so dropout's zeros are its own */
    nnm_tensor *x = tu_tf32(g_ctx, 2, shape, ones);
    float wv[256], bv[16];
    for (int i = 0; i < 256; i++) wv[i] = 1.0f / 16.0f;
    for (int i = 0; i < 16; i++) bv[i] = 0.01f;
    for (int i = 0; i < DEPTH; i++) {
        tu_named p = tu_params_of(nnm_module_child(seq, 2 * i));
        CU_ASSERT_TRUE(tu_write_f32(tu_named_get(&p, "weight"), wv, 256));
        CU_ASSERT_TRUE(tu_write_f32(tu_named_get(&p, "bias"), bv, 16));
    }

    float ev[16], tv[16];
    CU_ASSERT_EQUAL(nnm_module_train(seq, 0), NNM_OK);
    call_n(seq, x, 3);
    nnm_tensor *y = NULL;
    CU_ASSERT_EQUAL(tu_call1(seq, x, &y), NNM_OK);
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(y, ev, 16), NNM_OK);
    nnm_tensor_release(y);
    for (int i = 0; i < 16; i++) CU_ASSERT_TRUE(ev[i] > 0.5f);

    /* train: each element 0 or twice the eval value; over a few calls some
     * element is dropped (all 16 kept 4 times running: 2^-64) */
    CU_ASSERT_EQUAL(nnm_module_train(seq, 1), NNM_OK);
    int dropped = 0, bad = 0;
    for (int c = 0; c < 4; c++) {
        y = NULL;
        CU_ASSERT_EQUAL(tu_call1(seq, x, &y), NNM_OK);
        CU_ASSERT_EQUAL(nnm_tensor_to_f32(y, tv, 16), NNM_OK);
        nnm_tensor_release(y);
        for (int i = 0; i < 16; i++) {
            if (tv[i] == 0.0f) dropped++;
            else if (!tu_near(tv[i], 2.0 * ev[i], 1e-5, 1e-6)) bad++;
        }
    }
    CU_ASSERT_TRUE(dropped > 0);
    CU_ASSERT_EQUAL(bad, 0);

    /* eval again: the next call is the eval output, bit for bit */
    CU_ASSERT_EQUAL(nnm_module_train(seq, 0), NNM_OK);
    y = NULL;
    CU_ASSERT_EQUAL(tu_call1(seq, x, &y), NNM_OK);
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(y, tv, 16), NNM_OK);
    nnm_tensor_release(y);
    CU_ASSERT_EQUAL(memcmp(tv, ev, sizeof ev), 0);

    nnm_tensor_release(x);
    nnm_module_release(seq);
    LEAK_CHECK_END();
}

/* ---- the batch-1 gemv ------------------------------------------------------ */

/* Linear(k, n) at `rows` rows against a double reference, bias or not. */
static void check_linear(int64_t k, int64_t n, int64_t rows, int bias) {
    nnm_module *l = tu_linear(g_ctx, "linear", k, n, bias);
    CU_ASSERT_PTR_NOT_NULL_FATAL(l);
    float *w = malloc((size_t)(k * n) * sizeof *w), *b = malloc((size_t)n * sizeof *b);
    float *xv = malloc((size_t)(rows * k) * sizeof *xv), *yv = malloc((size_t)(rows * n) * sizeof *yv);
    CU_ASSERT_FATAL(w && b && xv && yv);
    tu_fill_uniform(w, (size_t)(k * n), 7u + (uint32_t)(k * 131 + n), -1.0, 1.0);
    tu_fill_uniform(b, (size_t)n, 11u + (uint32_t)n, -1.0, 1.0);
    tu_fill_uniform(xv, (size_t)(rows * k), 13u + (uint32_t)k, -1.0, 1.0);
    tu_named p = tu_params_of(l);
    CU_ASSERT_TRUE(tu_write_f32(tu_named_get(&p, "weight"), w, (size_t)(k * n)));
    if (bias) CU_ASSERT_TRUE(tu_write_f32(tu_named_get(&p, "bias"), b, (size_t)n));
    int64_t shape[2] = {rows, k};
    nnm_tensor *x = tu_tf32(g_ctx, 2, shape, xv), *y = NULL;
    CU_ASSERT_EQUAL(tu_call1(l, x, &y), NNM_OK);
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(y, yv, (size_t)(rows * n)), NNM_OK);
    int bad = 0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < n; j++) {
            double want = bias ? b[j] : 0.0;
            for (int64_t q = 0; q < k; q++) want += (double)xv[r * k + q] * w[j * k + q];
            if (!tu_near(yv[r * n + j], want, 1e-5, 1e-5)) {
                if (!bad)
                    fprintf(stderr, "\n  linear(%lld, %lld) rows %lld bias %d: [%lld][%lld] = %g, want %g\n",
                            (long long)k, (long long)n, (long long)rows, bias, (long long)r,
                            (long long)j, yv[r * n + j], want);
                bad++;
            }
        }
    CU_ASSERT_EQUAL(bad, 0);
    nnm_tensor_release(x);
    nnm_tensor_release(y);
    nnm_module_release(l);
    free(w), free(b), free(xv), free(yv);
}

static void test_small_gemv_sizes(void) {
    LEAK_CHECK_BEGIN();
    /* n around the 8-row blocks (and the 4-row and single-row tails), k a
     * multiple of 8 (the 8-row path) or not (the older paths) */
    static const int64_t ks[] = {1, 7, 8, 16, 17, 24, 32, 64};
    static const int64_t ns[] = {1, 3, 4, 8, 12, 15, 16, 17, 24, 40};
    for (size_t a = 0; a < sizeof ks / sizeof ks[0]; a++)
        for (size_t c = 0; c < sizeof ns / sizeof ns[0]; c++)
            for (int64_t rows = 1; rows <= 3; rows++) {
                check_linear(ks[a], ns[c], rows, 1);
                check_linear(ks[a], ns[c], rows, 0);
            }
    LEAK_CHECK_END();
}

/* ---- ReLU's values -------------------------------------------------------- */

/* The cpu backend's small-row ReLU (vectorised when out and x do not
 * overlap, with a scalar tail): torch.relu's values, -0 kept as -0, NaN
 * kept as NaN, infinities and subnormals as they are, over 8-lane blocks
 * and the tail alike (19 elements), with grad mode on and off. */
static void test_relu_values(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *r = tu_module(g_ctx, "relu", NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    const float nan = __builtin_nanf(""), inf = __builtin_inff(), sub = 1e-45f;
    float v[19] = {-1.0f, -0.0f, 0.0f, nan, inf, -inf, sub, -sub, 2.5f, -3.0f,
                   1.0f,  -nan, 7.0f, -0.5f, 0.25f, -0.0f, nan, -inf, 3.0f};
    int64_t shape[2] = {1, 19};
    nnm_tensor *x = tu_tf32(g_ctx, 2, shape, v);
    for (int grad = 1; grad >= 0; grad--) {
        int prev = nnm_grad_set_enabled(grad);
        nnm_tensor *y = NULL;
        CU_ASSERT_EQUAL(tu_call1(r, x, &y), NNM_OK);
        nnm_grad_set_enabled(prev);
        float w[19];
        CU_ASSERT_EQUAL(nnm_tensor_to_f32(y, w, 19), NNM_OK);
        for (int i = 0; i < 19; i++) {
            if (v[i] != v[i]) {
                CU_ASSERT_TRUE(w[i] != w[i]); /* NaN stays NaN */
            } else if (v[i] < 0.0f) {
                CU_ASSERT_TRUE(w[i] == 0.0f && !__builtin_signbit(w[i]));
            } else {
                CU_ASSERT_EQUAL(memcmp(&w[i], &v[i], sizeof w[i]), 0); /* -0 stays -0 */
            }
        }
        nnm_tensor_release(y);
    }
    /* the input is untouched */
    float back[19];
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(x, back, 19), NNM_OK);
    CU_ASSERT_EQUAL(memcmp(back, v, sizeof v), 0);
    nnm_tensor_release(x);
    nnm_module_release(r);
    LEAK_CHECK_END();
}

/* ---- the allocator's books over steady-state calls ------------------------- */

/* A warm forward takes every tensor from the cache and gives it back: no
 * heap allocation, one cache hit per tensor made (a Linear's output and a
 * ReLU's per pair), the bytes in use back where they were once the output
 * is released, the cache holding what it held, no new peak. Under no_grad
 * and with grad (the graph's saved tensors are released with the output). */
static void test_steady_state_books(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *seq = seq_model();
    nnm_tensor *x = input16();
    for (int grad = 0; grad <= 1; grad++) {
        int prev = nnm_grad_set_enabled(grad);
        call_n(seq, x, 3);
        nnm_ctx_stats a = {sizeof a}, b = {sizeof b};
        CU_ASSERT_EQUAL(nnm_ctx_stats_get(g_ctx, &a), NNM_OK);
        call_n(seq, x, 5);
        CU_ASSERT_EQUAL(nnm_ctx_stats_get(g_ctx, &b), NNM_OK);
        nnm_grad_set_enabled(prev);
        CU_ASSERT_EQUAL(b.heap_allocs, a.heap_allocs);
        CU_ASSERT_EQUAL(b.bytes_in_use, a.bytes_in_use);
        CU_ASSERT_EQUAL(b.bytes_cached, a.bytes_cached);
        CU_ASSERT_EQUAL(b.live_tensors, a.live_tensors);
        CU_ASSERT_EQUAL(b.peak_bytes_in_use, a.peak_bytes_in_use);
        CU_ASSERT_EQUAL(b.peak_bytes_reserved, a.peak_bytes_reserved);
        if (!grad) CU_ASSERT_EQUAL(b.cache_hits - a.cache_hits, (uint64_t)(5 * 2 * DEPTH));
        if (grad) CU_ASSERT_TRUE(b.cache_hits - a.cache_hits >= (uint64_t)(5 * 2 * DEPTH));
    }
    nnm_tensor_release(x);
    nnm_module_release(seq);
    LEAK_CHECK_END();
}

/* ---- ASan sees through the pools ------------------------------------------ */

static void test_pools_poisoned_under_asan(void) {
#ifdef TCF_ASAN
    int64_t shape[2] = {1, 16};
    nnm_tensor *t = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_tensor_from_f32(g_ctx, 2, shape, NULL, &t), NNM_OK);
    const nnm_tensor_desc *d = nnm_tensor_desc_get(t);
    void *data = d->data;
    CU_ASSERT_FALSE(__asan_address_is_poisoned(t));
    CU_ASSERT_FALSE(__asan_address_is_poisoned(data));
    nnm_tensor_release(t);
    /* released: the object waits on the tensor free list, the block on its
     * size class, both poisoned */
    CU_ASSERT_TRUE(__asan_address_is_poisoned(t));
    CU_ASSERT_TRUE(__asan_address_is_poisoned(data));
    /* the next tensor of that size takes both back, unpoisoned */
    nnm_tensor *u = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_tensor_from_f32(g_ctx, 2, shape, NULL, &u), NNM_OK);
    const nnm_tensor_desc *e = nnm_tensor_desc_get(u);
    CU_ASSERT_FALSE(__asan_address_is_poisoned(u));
    CU_ASSERT_FALSE(__asan_address_is_poisoned(e->data));
    CU_ASSERT_FALSE(__asan_address_is_poisoned((char *)e->data + 15 * sizeof(float)));
    nnm_tensor_release(u);
#else
    printf("SKIPPED: not an ASan build (NNM_SANITIZE) ");
#endif
}

int main(void) {
    CU_pSuite s = tu_suite("call_fast", suite_init, suite_fini);
    if (!s) return 1;
    CU_add_test(s, "a hook added or removed between calls is honoured", test_hook_added_between_calls_runs);
    CU_add_test(s, "no_grad records nothing; grad on records again", test_no_grad_records_nothing);
    CU_add_test(s, "train/eval switched between calls", test_eval_switch_between_calls);
    CU_add_test(s, "the batch-1 gemv at sizes around its blocking", test_small_gemv_sizes);
    CU_add_test(s, "ReLU keeps -0, NaN, infinities (vector blocks and tail)", test_relu_values);
    CU_add_test(s, "steady-state calls: no heap allocation, the allocator's books balance",
                test_steady_state_books);
    CU_add_test(s, "pooled tensors and blocks are poisoned under ASan", test_pools_poisoned_under_asan);
    return tu_run();
}
