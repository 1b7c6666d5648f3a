/* tests/cuda/test_cuda_dnn_plan.c - the cuda backend's cuDNN translation,
 * without a GPU: plugins/cuda/cuda_dnn_plan.c compiled into this suite on
 * its own (no CUDA, no cuDNN), checked for representative geometries:
 *  - conv: the numbers cudnnSetTensorNdDescriptor / SetFilterNdDescriptor /
 *    SetConvolutionNdDescriptor get (1-d lifted to 2-d of height 1, 2-d,
 *    3-d, groups, depthwise, stride, dilation, padding), forward and
 *    backward, the declines (transposed, uneven padding, INT_MAX, empty) and
 *    the shape errors;
 *  - the algorithm cache: keys, find/put/replace, growth, the reset at
 *    CUDA_DNN_CACHE_MAX, clear;
 *  - batch norm: [n, c, l] -> {n, c, l, 1} and {1, c, 1, 1}, PyTorch's
 *    bounds for cuDNN;
 *  - pooling: the promotion to 3 spatial dims and the cpu backend's checks;
 *    and the pooling kernels' per-element bodies (cuda_dnn_pool_body.h, what
 *    each GPU thread of dnn_kernels.cu runs) run here over every element of
 *    fixed and random geometries, inputs full of ties and NaN, against the
 *    cpu backend's pool / pool_backward slots, bit for bit; likewise the
 *    batch-norm helper kernels' bodies (cuda_dnn_bn_body.h: eval mode's saved
 *    statistics and input gradient, the weight and bias gradients, an empty
 *    batch's statistics) against the cpu backend's batch_norm slots.
 *  - where the build found cudnn.h and libcudnn loads (it needs no GPU for
 *    this): the backend's own descriptor code (cuda_dnn_desc.c) run against
 *    the real cuDNN - every entry point resolves, the version matches, and
 *    cuDNN, asked back, understood each plan (the output dims it computes,
 *    the padding, strides, dilations and groups it holds, the batch-norm
 *    channel descriptor it derives).
 * What only a GPU proves (that cuDNN runs these convolutions and batch norms
 * and computes what the cpu backend does) is tests/cuda/test_cuda_dnn.c.
 */
#if !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* dladdr */
#endif
#include "test_util.h"

#include "cuda_dnn_plan.h"
#include "cuda_dnn_pool_body.h"
#include "cuda_dnn_bn_body.h"
#ifdef NNM_TEST_CUDNN
#include "cuda_dnn_desc.h"
#endif

#include <dlfcn.h>
#include <limits.h>

#ifndef NNM_TEST_PLUGIN_DIR
#error "NNM_TEST_PLUGIN_DIR must name the directory holding the plugins"
#endif

/* A descriptor over no memory (the plan reads shapes only). */
typedef struct tdesc {
    nnm_tensor_desc d;
    int64_t shape[NNM_MAX_DIMS];
    int64_t strides[NNM_MAX_DIMS];
} tdesc;

static void td_set(tdesc *t, int32_t ndim, const int64_t *shape) {
    memset(t, 0, sizeof *t);
    t->d.ndim = ndim;
    t->d.shape = t->shape;
    t->d.strides = t->strides;
    t->d.dtype = NNM_F32;
    t->d.device.type = NNM_DEVICE_CUDA;
    t->d.data = (void *)t; /* never read */
    int64_t st = 1;
    for (int32_t i = ndim - 1; i >= 0; i--) {
        t->shape[i] = shape[i];
        t->strides[i] = st;
        st *= shape[i];
    }
}

/* A conv problem: params and the four tensors. */
typedef struct conv_case {
    nnm_conv_params p;
    tdesc x, w, y, b, gx, gw;
    nnm_conv_args a;
} conv_case;

/* ns spatial dims; x [n, cin, *in], w [cout, cin / g, *k]; y from the formula. */
static void conv_setup(conv_case *c, int32_t ns, int64_t n, int64_t cin, int64_t cout, int32_t g,
                       const int64_t *in, const int64_t *k, const int64_t *stride,
                       const int64_t *pad, const int64_t *dil) {
    memset(c, 0, sizeof *c);
    c->p.struct_size = sizeof c->p;
    c->p.n_spatial = ns;
    c->p.groups = g;
    int64_t xs[5] = {n, cin}, ws[5] = {cout, cin / g}, ys[5] = {n, cout};
    for (int32_t i = 0; i < ns; i++) {
        c->p.stride[i] = stride[i];
        c->p.padding[i] = c->p.padding_end[i] = pad[i];
        c->p.dilation[i] = dil[i];
        xs[2 + i] = in[i];
        ws[2 + i] = k[i];
        ys[2 + i] = (in[i] + 2 * pad[i] - dil[i] * (k[i] - 1) - 1) / stride[i] + 1;
    }
    td_set(&c->x, ns + 2, xs);
    td_set(&c->w, ns + 2, ws);
    td_set(&c->y, ns + 2, ys);
    td_set(&c->b, 1, &cout);
    td_set(&c->gx, ns + 2, xs);
    td_set(&c->gw, ns + 2, ws);
    c->a.struct_size = sizeof c->a;
    c->a.params = &c->p;
    c->a.x = &c->x.d;
    c->a.w = &c->w.d;
    c->a.b = &c->b.d;
    c->a.y = &c->y.d;
}

/* The same problem as a conv_backward call. */
static void conv_as_backward(conv_case *c) {
    c->a.b = NULL;
    c->a.y = NULL;
    c->a.grad_out = &c->y.d;
    c->a.grad_x = &c->gx.d;
    c->a.grad_w = &c->gw.d;
}

static int packed_ok(const cuda_dnn_tensor *t) {
    int64_t st = 1;
    for (int i = t->nbdims - 1; i >= 0; i--) {
        if (t->strides[i] != st)
            return 0;
        st *= t->dims[i];
    }
    return 1;
}

static void expect_dims(const int *got, const int *want, int n) {
    for (int i = 0; i < n; i++)
        CU_ASSERT_EQUAL(got[i], want[i]);
}

static void test_conv_2d(void) {
    conv_case c;
    conv_setup(&c, 2, 2, 3, 4, 1, (int64_t[]){7, 9}, (int64_t[]){3, 3}, (int64_t[]){1, 1},
               (int64_t[]){1, 1}, (int64_t[]){1, 1});
    cuda_dnn_conv_plan p;
    char msg[256];
    CU_ASSERT_EQUAL_FATAL(cuda_dnn_conv_plan_make(&c.a, 0, &p, msg, sizeof msg), NNM_OK);
    CU_ASSERT_EQUAL(p.nbdims, 4);
    CU_ASSERT_EQUAL(p.n_spatial, 2);
    CU_ASSERT_EQUAL(p.groups, 1);
    expect_dims(p.x.dims, (int[]){2, 3, 7, 9}, 4);
    expect_dims(p.x.strides, (int[]){189, 63, 9, 1}, 4);
    expect_dims(p.y.dims, (int[]){2, 4, 7, 9}, 4);
    expect_dims(p.w, (int[]){4, 3, 3, 3}, 4);
    expect_dims(p.bias.dims, (int[]){1, 4, 1, 1}, 4);
    expect_dims(p.pad, (int[]){1, 1}, 2);
    expect_dims(p.stride, (int[]){1, 1}, 2);
    expect_dims(p.dilation, (int[]){1, 1}, 2);
    CU_ASSERT_TRUE(packed_ok(&p.x) && packed_ok(&p.y) && packed_ok(&p.bias));
    CU_ASSERT_EQUAL(p.x.nbdims, 4);
    CU_ASSERT_EQUAL(p.y.nbdims, 4);
    CU_ASSERT_EQUAL(p.bias.nbdims, 4);

    /* the same geometry as conv_backward: the same plan (y from grad_out) */
    cuda_dnn_conv_plan pb;
    conv_as_backward(&c);
    CU_ASSERT_EQUAL_FATAL(cuda_dnn_conv_plan_make(&c.a, 1, &pb, msg, sizeof msg), NNM_OK);
    CU_ASSERT_EQUAL(memcmp(&p.x, &pb.x, sizeof p.x), 0);
    CU_ASSERT_EQUAL(memcmp(&p.y, &pb.y, sizeof p.y), 0);
    CU_ASSERT_EQUAL(memcmp(p.w, pb.w, sizeof p.w), 0);
    /* one gradient only is fine; none is an error */
    c.a.grad_w = NULL;
    CU_ASSERT_EQUAL(cuda_dnn_conv_plan_make(&c.a, 1, &pb, msg, sizeof msg), NNM_OK);
    c.a.grad_x = NULL;
    CU_ASSERT_EQUAL(cuda_dnn_conv_plan_make(&c.a, 1, &pb, msg, sizeof msg), NNM_E_INVALID);
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "neither"));
}

/* 1-d with groups, stride, padding and dilation: 2-d of height 1, the
 * inserted dim first (kernel 1, stride 1, no padding, dilation 1). */
static void test_conv_1d_lifted(void) {
    conv_case c;
    conv_setup(&c, 1, 2, 4, 6, 2, (int64_t[]){10}, (int64_t[]){3}, (int64_t[]){2},
               (int64_t[]){1}, (int64_t[]){2});
    CU_ASSERT_EQUAL(c.y.shape[2], 4); /* (10 + 2 - 4 - 1) / 2 + 1 */
    cuda_dnn_conv_plan p;
    char msg[256];
    CU_ASSERT_EQUAL_FATAL(cuda_dnn_conv_plan_make(&c.a, 0, &p, msg, sizeof msg), NNM_OK);
    CU_ASSERT_EQUAL(p.nbdims, 4);
    CU_ASSERT_EQUAL(p.n_spatial, 2);
    CU_ASSERT_EQUAL(p.groups, 2);
    expect_dims(p.x.dims, (int[]){2, 4, 1, 10}, 4);
    expect_dims(p.y.dims, (int[]){2, 6, 1, 4}, 4);
    expect_dims(p.w, (int[]){6, 2, 1, 3}, 4);
    expect_dims(p.pad, (int[]){0, 1}, 2);
    expect_dims(p.stride, (int[]){1, 2}, 2);
    expect_dims(p.dilation, (int[]){1, 2}, 2);
    expect_dims(p.bias.dims, (int[]){1, 6, 1, 1}, 4);
    CU_ASSERT_TRUE(packed_ok(&p.x) && packed_ok(&p.y));
}

static void test_conv_3d_and_depthwise(void) {
    conv_case c;
    conv_setup(&c, 3, 1, 2, 3, 1, (int64_t[]){4, 5, 6}, (int64_t[]){2, 2, 2},
               (int64_t[]){1, 2, 1}, (int64_t[]){0, 1, 1}, (int64_t[]){1, 1, 2});
    cuda_dnn_conv_plan p;
    char msg[256];
    CU_ASSERT_EQUAL_FATAL(cuda_dnn_conv_plan_make(&c.a, 0, &p, msg, sizeof msg), NNM_OK);
    CU_ASSERT_EQUAL(p.nbdims, 5);
    CU_ASSERT_EQUAL(p.n_spatial, 3);
    expect_dims(p.x.dims, (int[]){1, 2, 4, 5, 6}, 5);
    expect_dims(p.x.strides, (int[]){240, 120, 30, 6, 1}, 5);
    /* out: (4 - 1 - 1) / 1 + 1 = 3, (5 + 2 - 1 - 1) / 2 + 1 = 3, (6 + 2 - 2 - 1) / 1 + 1 = 6 */
    expect_dims(p.y.dims, (int[]){1, 3, 3, 3, 6}, 5);
    expect_dims(p.w, (int[]){3, 2, 2, 2, 2}, 5);
    expect_dims(p.pad, (int[]){0, 1, 1}, 3);
    expect_dims(p.stride, (int[]){1, 2, 1}, 3);
    expect_dims(p.dilation, (int[]){1, 1, 2}, 3);
    expect_dims(p.bias.dims, (int[]){1, 3, 1, 1, 1}, 5);

    /* depthwise: groups == C_in == C_out, filter [C, 1, kh, kw] */
    conv_setup(&c, 2, 3, 8, 8, 8, (int64_t[]){5, 5}, (int64_t[]){3, 3}, (int64_t[]){2, 2},
               (int64_t[]){1, 1}, (int64_t[]){1, 1});
    CU_ASSERT_EQUAL_FATAL(cuda_dnn_conv_plan_make(&c.a, 0, &p, msg, sizeof msg), NNM_OK);
    CU_ASSERT_EQUAL(p.groups, 8);
    expect_dims(p.w, (int[]){8, 1, 3, 3}, 4);
    expect_dims(p.y.dims, (int[]){3, 8, 3, 3}, 4);
}

static void test_conv_declines_and_errors(void) {
    conv_case c;
    cuda_dnn_conv_plan p;
    char msg[256];
#define SETUP()                                                                           \
    conv_setup(&c, 2, 2, 4, 4, 2, (int64_t[]){6, 6}, (int64_t[]){3, 3}, (int64_t[]){1, 1}, \
               (int64_t[]){1, 1}, (int64_t[]){1, 1})
    SETUP();
    CU_ASSERT_EQUAL(cuda_dnn_conv_plan_make(&c.a, 0, &p, msg, sizeof msg), NNM_OK);
    /* declines */
    SETUP();
    c.p.transposed = 1;
    CU_ASSERT_EQUAL(cuda_dnn_conv_plan_make(&c.a, 0, &p, msg, sizeof msg), NNM_E_UNSUPPORTED);
    SETUP();
    c.p.padding_end[1] = 2; /* "same" with an even kernel: y grows by one */
    c.y.shape[3] = 7;
    CU_ASSERT_EQUAL(cuda_dnn_conv_plan_make(&c.a, 0, &p, msg, sizeof msg), NNM_E_UNSUPPORTED);
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "uneven padding"));
    SETUP();
    c.x.shape[0] = c.y.shape[0] = 0;
    CU_ASSERT_EQUAL(cuda_dnn_conv_plan_make(&c.a, 0, &p, msg, sizeof msg), NNM_E_UNSUPPORTED);
    SETUP();
    c.x.shape[0] = c.y.shape[0] = (int64_t)INT_MAX + 1;
    CU_ASSERT_EQUAL(cuda_dnn_conv_plan_make(&c.a, 0, &p, msg, sizeof msg), NNM_E_UNSUPPORTED);
    SETUP();
    c.x.shape[0] = c.y.shape[0] = 1 << 26; /* every dim fits, the element count does not */
    CU_ASSERT_EQUAL(cuda_dnn_conv_plan_make(&c.a, 0, &p, msg, sizeof msg), NNM_E_UNSUPPORTED);
    /* malformed */
    SETUP();
    c.y.shape[2] = 5;
    CU_ASSERT_EQUAL(cuda_dnn_conv_plan_make(&c.a, 0, &p, msg, sizeof msg), NNM_E_SHAPE);
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "do not make one convolution"));
    SETUP();
    c.w.shape[1] = 4; /* C_in / groups is 2 */
    CU_ASSERT_EQUAL(cuda_dnn_conv_plan_make(&c.a, 0, &p, msg, sizeof msg), NNM_E_SHAPE);
    SETUP();
    c.p.groups = 3;
    CU_ASSERT_EQUAL(cuda_dnn_conv_plan_make(&c.a, 0, &p, msg, sizeof msg), NNM_E_SHAPE);
    SETUP();
    c.b.shape[0] = 5;
    CU_ASSERT_EQUAL(cuda_dnn_conv_plan_make(&c.a, 0, &p, msg, sizeof msg), NNM_E_SHAPE);
    SETUP();
    c.a.b = NULL; /* no bias is fine */
    CU_ASSERT_EQUAL(cuda_dnn_conv_plan_make(&c.a, 0, &p, msg, sizeof msg), NNM_OK);
    SETUP();
    c.x.d.ndim = 3;
    CU_ASSERT_EQUAL(cuda_dnn_conv_plan_make(&c.a, 0, &p, msg, sizeof msg), NNM_E_SHAPE);
    SETUP();
    c.p.n_spatial = 0;
    CU_ASSERT_EQUAL(cuda_dnn_conv_plan_make(&c.a, 0, &p, msg, sizeof msg), NNM_E_INVALID);
    SETUP();
    c.p.stride[0] = 0;
    CU_ASSERT_EQUAL(cuda_dnn_conv_plan_make(&c.a, 0, &p, msg, sizeof msg), NNM_E_INVALID);
    SETUP();
    c.a.params = NULL;
    CU_ASSERT_EQUAL(cuda_dnn_conv_plan_make(&c.a, 0, &p, msg, sizeof msg), NNM_E_INVALID);
    SETUP();
    c.a.struct_size = 8;
    CU_ASSERT_EQUAL(cuda_dnn_conv_plan_make(&c.a, 0, &p, msg, sizeof msg), NNM_E_INVALID);
    CU_ASSERT_EQUAL(cuda_dnn_conv_plan_make(NULL, 0, &p, msg, sizeof msg), NNM_E_INVALID);
    SETUP();
    conv_as_backward(&c);
    c.gx.shape[1] = 3;
    CU_ASSERT_EQUAL(cuda_dnn_conv_plan_make(&c.a, 1, &p, msg, sizeof msg), NNM_E_SHAPE);
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "grad_x"));
    SETUP();
    conv_as_backward(&c);
    c.gw.shape[0] = 3;
    CU_ASSERT_EQUAL(cuda_dnn_conv_plan_make(&c.a, 1, &p, msg, sizeof msg), NNM_E_SHAPE);
    SETUP();
    conv_as_backward(&c);
    c.a.grad_out = NULL;
    CU_ASSERT_EQUAL(cuda_dnn_conv_plan_make(&c.a, 1, &p, msg, sizeof msg), NNM_E_INVALID);
#undef SETUP
}

static void test_conv_keys(void) {
    conv_case c;
    cuda_dnn_conv_plan p, q;
    char msg[256];
    conv_setup(&c, 2, 2, 4, 8, 2, (int64_t[]){6, 7}, (int64_t[]){3, 3}, (int64_t[]){1, 2},
               (int64_t[]){1, 1}, (int64_t[]){1, 1});
    CU_ASSERT_EQUAL_FATAL(cuda_dnn_conv_plan_make(&c.a, 0, &p, msg, sizeof msg), NNM_OK);
    CU_ASSERT_EQUAL_FATAL(cuda_dnn_conv_plan_make(&c.a, 0, &q, msg, sizeof msg), NNM_OK);
    cuda_dnn_conv_key k1, k2, k3, k4;
    memset(&k1, 0xab, sizeof k1); /* garbage first: key_make must clear everything */
    cuda_dnn_conv_key_make(&k1, &p, CUDA_DNN_CONV_FWD, 0);
    cuda_dnn_conv_key_make(&k2, &q, CUDA_DNN_CONV_FWD, 0);
    CU_ASSERT_EQUAL(memcmp(&k1, &k2, sizeof k1), 0);
    cuda_dnn_conv_key_make(&k3, &p, CUDA_DNN_CONV_BWD_DATA, 0);
    CU_ASSERT_NOT_EQUAL(memcmp(&k1, &k3, sizeof k1), 0);
    cuda_dnn_conv_key_make(&k4, &p, CUDA_DNN_CONV_FWD, 1);
    CU_ASSERT_NOT_EQUAL(memcmp(&k1, &k4, sizeof k1), 0);
    /* another batch size, stride, dilation or group count is another key */
    const int64_t n0 = c.x.shape[0];
    c.x.shape[0] = c.y.shape[0] = n0 + 1;
    CU_ASSERT_EQUAL_FATAL(cuda_dnn_conv_plan_make(&c.a, 0, &q, msg, sizeof msg), NNM_OK);
    cuda_dnn_conv_key_make(&k2, &q, CUDA_DNN_CONV_FWD, 0);
    CU_ASSERT_NOT_EQUAL(memcmp(&k1, &k2, sizeof k1), 0);
    conv_setup(&c, 2, 2, 4, 8, 2, (int64_t[]){6, 7}, (int64_t[]){3, 3}, (int64_t[]){1, 2},
               (int64_t[]){1, 1}, (int64_t[]){1, 2});
    CU_ASSERT_EQUAL_FATAL(cuda_dnn_conv_plan_make(&c.a, 0, &q, msg, sizeof msg), NNM_OK);
    cuda_dnn_conv_key_make(&k2, &q, CUDA_DNN_CONV_FWD, 0);
    CU_ASSERT_NOT_EQUAL(memcmp(&k1, &k2, sizeof k1), 0);
    CU_ASSERT_EQUAL(k2.dilation[1], 2);
    CU_ASSERT_EQUAL(k2.groups, 2);
    CU_ASSERT_EQUAL(k2.nbdims, 4);
}

/* Keys that differ only in the batch size n. */
static cuda_dnn_conv_key key_n(int n) {
    cuda_dnn_conv_plan p;
    memset(&p, 0, sizeof p);
    p.nbdims = 4;
    p.n_spatial = 2;
    p.groups = 1;
    p.x.dims[0] = n;
    p.x.dims[1] = 3;
    p.x.dims[2] = p.x.dims[3] = 8;
    p.w[0] = 4;
    p.w[1] = 3;
    p.w[2] = p.w[3] = 3;
    p.stride[0] = p.stride[1] = p.dilation[0] = p.dilation[1] = 1;
    cuda_dnn_conv_key k;
    cuda_dnn_conv_key_make(&k, &p, CUDA_DNN_CONV_FWD, 0);
    return k;
}

static void test_cache(void) {
    cuda_dnn_cache c;
    memset(&c, 0, sizeof c);
    cuda_dnn_conv_key k = key_n(1);
    CU_ASSERT_PTR_NULL(cuda_dnn_cache_find(&c, &k)); /* empty, no table yet */
    const cuda_dnn_algo a1 = {3, 3, 4096};
    CU_ASSERT_EQUAL(cuda_dnn_cache_put(&c, &k, &a1), NNM_OK);
    const cuda_dnn_algo *got = cuda_dnn_cache_find(&c, &k);
    CU_ASSERT_PTR_NOT_NULL_FATAL(got);
    CU_ASSERT_EQUAL(got->algo, 3);
    CU_ASSERT_EQUAL(got->math_type, 3);
    CU_ASSERT_EQUAL(got->workspace, 4096);
    CU_ASSERT_EQUAL(c.count, 1);
    /* replace: still one entry */
    const cuda_dnn_algo a2 = {1, 3, 0};
    CU_ASSERT_EQUAL(cuda_dnn_cache_put(&c, &k, &a2), NNM_OK);
    CU_ASSERT_EQUAL(c.count, 1);
    CU_ASSERT_EQUAL(cuda_dnn_cache_find(&c, &k)->algo, 1);
    /* grows: a thousand geometries, all found with their own values */
    for (int n = 2; n <= 1000; n++) {
        cuda_dnn_conv_key kn = key_n(n);
        const cuda_dnn_algo v = {n % 7, 3, (size_t)n * 16};
        CU_ASSERT_EQUAL(cuda_dnn_cache_put(&c, &kn, &v), NNM_OK);
    }
    CU_ASSERT_EQUAL(c.count, 1000);
    CU_ASSERT_TRUE(c.cap >= 2000 && (c.cap & (c.cap - 1)) == 0);
    int bad = 0;
    for (int n = 2; n <= 1000; n++) {
        cuda_dnn_conv_key kn = key_n(n);
        const cuda_dnn_algo *v = cuda_dnn_cache_find(&c, &kn);
        bad += v == NULL || v->algo != n % 7 || v->workspace != (size_t)n * 16;
    }
    CU_ASSERT_EQUAL(bad, 0);
    cuda_dnn_conv_key absent = key_n(5000);
    const uint64_t misses = c.misses;
    CU_ASSERT_PTR_NULL(cuda_dnn_cache_find(&c, &absent));
    CU_ASSERT_EQUAL(c.misses, misses + 1);
    /* full: the next new key empties it first */
    for (int n = 1001; n <= CUDA_DNN_CACHE_MAX; n++) {
        cuda_dnn_conv_key kn = key_n(n);
        const cuda_dnn_algo v = {0, 3, 0};
        CU_ASSERT_EQUAL(cuda_dnn_cache_put(&c, &kn, &v), NNM_OK);
    }
    CU_ASSERT_EQUAL(c.count, CUDA_DNN_CACHE_MAX);
    CU_ASSERT_EQUAL(c.resets, 0);
    cuda_dnn_conv_key over = key_n(CUDA_DNN_CACHE_MAX + 1);
    CU_ASSERT_EQUAL(cuda_dnn_cache_put(&c, &over, &a1), NNM_OK);
    CU_ASSERT_EQUAL(c.resets, 1);
    CU_ASSERT_EQUAL(c.count, 1);
    CU_ASSERT_PTR_NOT_NULL(cuda_dnn_cache_find(&c, &over));
    CU_ASSERT_PTR_NULL(cuda_dnn_cache_find(&c, &k));
    cuda_dnn_cache_clear(&c);
    CU_ASSERT_EQUAL(c.count, 0);
    CU_ASSERT_PTR_NULL(cuda_dnn_cache_find(&c, &over));
    CU_ASSERT_EQUAL(cuda_dnn_cache_put(&c, &over, &a1), NNM_OK); /* usable again */
    cuda_dnn_cache_clear(&c);
    cuda_dnn_cache_clear(&c); /* twice is harmless */
}

static void test_bn_plan(void) {
    cuda_dnn_bn_plan p;
    char msg[256];
    CU_ASSERT_EQUAL_FATAL(cuda_dnn_bn_plan_make(4, 3, 10, 1, &p, msg, sizeof msg), NNM_OK);
    CU_ASSERT_EQUAL(p.x.nbdims, 4);
    expect_dims(p.x.dims, (int[]){4, 3, 10, 1}, 4);
    expect_dims(p.x.strides, (int[]){30, 10, 1, 1}, 4);
    CU_ASSERT_EQUAL(p.ch.nbdims, 4);
    expect_dims(p.ch.dims, (int[]){1, 3, 1, 1}, 4);
    expect_dims(p.ch.strides, (int[]){3, 1, 1, 1}, 4);
    CU_ASSERT_EQUAL(p.count, 40);
    /* BatchNorm1d on [N, C]: l = 1 */
    CU_ASSERT_EQUAL(cuda_dnn_bn_plan_make(16, 5, 1, 1, &p, msg, sizeof msg), NNM_OK);
    expect_dims(p.x.dims, (int[]){16, 5, 1, 1}, 4);
    /* declines */
    CU_ASSERT_EQUAL(cuda_dnn_bn_plan_make(1, 5, 1, 1, &p, msg, sizeof msg), NNM_E_UNSUPPORTED);
    CU_ASSERT_EQUAL(cuda_dnn_bn_plan_make(1, 5, 1, 0, &p, msg, sizeof msg), NNM_OK); /* eval: fine */
    CU_ASSERT_EQUAL(cuda_dnn_bn_plan_make(0, 5, 7, 1, &p, msg, sizeof msg), NNM_E_UNSUPPORTED);
    CU_ASSERT_EQUAL(cuda_dnn_bn_plan_make(70000, 2, 2, 0, &p, msg, sizeof msg), NNM_E_UNSUPPORTED);
    CU_ASSERT_EQUAL(cuda_dnn_bn_plan_make(70000, 2, 2, 1, &p, msg, sizeof msg), NNM_OK);
    CU_ASSERT_EQUAL(cuda_dnn_bn_plan_make(900000, 2, 2, 1, &p, msg, sizeof msg), NNM_E_UNSUPPORTED);
    CU_ASSERT_EQUAL(cuda_dnn_bn_plan_make(64, 1024, 1 << 15, 1, &p, msg, sizeof msg),
                    NNM_E_UNSUPPORTED); /* 2^31 elements */
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "INT_MAX"));
    CU_ASSERT_EQUAL(cuda_dnn_bn_plan_make(-1, 5, 7, 1, &p, msg, sizeof msg), NNM_E_SHAPE);
    CU_ASSERT_EQUAL(cuda_dnn_bn_plan_make(INT64_MAX, 5, 7, 1, &p, msg, sizeof msg), NNM_E_SHAPE);
}

/* A pooling over x [lead..., *in] with the given out shape. */
typedef struct pool_case {
    nnm_pool_args a;
    tdesc x, o, gx;
} pool_case;

static void pool_setup(pool_case *c, int32_t op, int32_t ns, int32_t nd, const int64_t *xs,
                       const int64_t *os, const int64_t *k, const int64_t *s, const int64_t *p,
                       const int64_t *d) {
    memset(c, 0, sizeof *c);
    c->a.struct_size = sizeof c->a;
    c->a.op = op;
    c->a.n_spatial = ns;
    for (int32_t i = 0; i < ns; i++) {
        c->a.kernel[i] = k[i];
        c->a.stride[i] = s[i];
        c->a.padding[i] = p[i];
        c->a.dilation[i] = d[i];
    }
    td_set(&c->x, nd, xs);
    td_set(&c->o, nd, os);
    td_set(&c->gx, nd, xs);
    c->a.x = &c->x.d;
    c->a.out = &c->o.d;
}

static void test_pool_plan(void) {
    pool_case c;
    nnm__cuda_pool_geom g;
    char msg[256];
    /* 2-d max 3x3 stride 2 pad 1 over [2, 3, 8, 8] -> 4 x 4 */
    pool_setup(&c, NNM_POOL_MAX, 2, 4, (int64_t[]){2, 3, 8, 8}, (int64_t[]){2, 3, 4, 4},
               (int64_t[]){3, 3}, (int64_t[]){2, 2}, (int64_t[]){1, 1}, (int64_t[]){1, 1});
    CU_ASSERT_EQUAL_FATAL(cuda_dnn_pool_plan(&c.a, 0, &g, msg, sizeof msg), NNM_OK);
    CU_ASSERT_EQUAL(g.op, NNM_POOL_MAX);
    CU_ASSERT_EQUAL(g.outer, 6);
    const int64_t in[3] = {1, 8, 8}, out[3] = {1, 4, 4}, k[3] = {1, 3, 3}, s[3] = {1, 2, 2},
                  p[3] = {0, 1, 1}, d[3] = {1, 1, 1};
    for (int i = 0; i < 3; i++) {
        CU_ASSERT_EQUAL(g.in[i], in[i]);
        CU_ASSERT_EQUAL(g.out[i], out[i]);
        CU_ASSERT_EQUAL(g.k[i], k[i]);
        CU_ASSERT_EQUAL(g.s[i], s[i]);
        CU_ASSERT_EQUAL(g.p[i], p[i]);
        CU_ASSERT_EQUAL(g.d[i], d[i]);
    }
    /* backward: grad_out and grad_x instead of out */
    c.a.out = NULL;
    c.a.grad_out = &c.o.d;
    c.a.grad_x = &c.gx.d;
    CU_ASSERT_EQUAL(cuda_dnn_pool_plan(&c.a, 1, &g, msg, sizeof msg), NNM_OK);
    c.gx.shape[3] = 7;
    CU_ASSERT_EQUAL(cuda_dnn_pool_plan(&c.a, 1, &g, msg, sizeof msg), NNM_E_SHAPE);
    c.a.grad_x = NULL;
    CU_ASSERT_EQUAL(cuda_dnn_pool_plan(&c.a, 1, &g, msg, sizeof msg), NNM_E_INVALID);

    /* 1-d avg over [5, 9] (no batch dim): promoted as 1 x 1 x 9 */
    pool_setup(&c, NNM_POOL_AVG, 1, 2, (int64_t[]){5, 9}, (int64_t[]){5, 5}, (int64_t[]){3},
               (int64_t[]){2}, (int64_t[]){1}, (int64_t[]){1});
    c.a.count_include_pad = 7;
    c.a.divisor_override = 2;
    CU_ASSERT_EQUAL_FATAL(cuda_dnn_pool_plan(&c.a, 0, &g, msg, sizeof msg), NNM_OK);
    CU_ASSERT_EQUAL(g.outer, 5);
    CU_ASSERT_EQUAL(g.in[0], 1);
    CU_ASSERT_EQUAL(g.in[1], 1);
    CU_ASSERT_EQUAL(g.in[2], 9);
    CU_ASSERT_EQUAL(g.out[2], 5);
    CU_ASSERT_EQUAL(g.count_include_pad, 1);
    CU_ASSERT_EQUAL(g.divisor_override, 2);
    /* 3-d adaptive over [1, 2, 3, 4, 5] -> 2 x 2 x 7 */
    pool_setup(&c, NNM_POOL_ADAPTIVE_AVG, 3, 5, (int64_t[]){1, 2, 3, 4, 5},
               (int64_t[]){1, 2, 2, 2, 7}, (int64_t[]){1, 1, 1}, (int64_t[]){1, 1, 1},
               (int64_t[]){0, 0, 0}, (int64_t[]){1, 1, 1});
    CU_ASSERT_EQUAL(cuda_dnn_pool_plan(&c.a, 0, &g, msg, sizeof msg), NNM_OK);
    CU_ASSERT_EQUAL(g.outer, 2);
    CU_ASSERT_EQUAL(g.out[2], 7);
    c.o.shape[4] = 0;
    CU_ASSERT_EQUAL(cuda_dnn_pool_plan(&c.a, 0, &g, msg, sizeof msg), NNM_E_SHAPE);
    /* errors, as the cpu backend's */
    pool_setup(&c, NNM_POOL_MAX, 2, 4, (int64_t[]){2, 3, 8, 8}, (int64_t[]){2, 4, 4, 4},
               (int64_t[]){3, 3}, (int64_t[]){2, 2}, (int64_t[]){1, 1}, (int64_t[]){1, 1});
    CU_ASSERT_EQUAL(cuda_dnn_pool_plan(&c.a, 0, &g, msg, sizeof msg), NNM_E_SHAPE); /* leading dim */
    pool_setup(&c, NNM_POOL_MAX, 2, 4, (int64_t[]){2, 3, 8, 8}, (int64_t[]){2, 3, 9, 4},
               (int64_t[]){3, 3}, (int64_t[]){2, 2}, (int64_t[]){1, 1}, (int64_t[]){1, 1});
    CU_ASSERT_EQUAL(cuda_dnn_pool_plan(&c.a, 0, &g, msg, sizeof msg), NNM_E_SHAPE); /* too large */
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "too large"));
    pool_setup(&c, NNM_POOL_MAX, 2, 4, (int64_t[]){2, 3, 8, 8}, (int64_t[]){2, 3, 4, 4},
               (int64_t[]){0, 3}, (int64_t[]){2, 2}, (int64_t[]){1, 1}, (int64_t[]){1, 1});
    CU_ASSERT_EQUAL(cuda_dnn_pool_plan(&c.a, 0, &g, msg, sizeof msg), NNM_E_INVALID);
    pool_setup(&c, 7, 2, 4, (int64_t[]){2, 3, 8, 8}, (int64_t[]){2, 3, 4, 4}, (int64_t[]){3, 3},
               (int64_t[]){2, 2}, (int64_t[]){1, 1}, (int64_t[]){1, 1});
    CU_ASSERT_EQUAL(cuda_dnn_pool_plan(&c.a, 0, &g, msg, sizeof msg), NNM_E_UNSUPPORTED);
    pool_setup(&c, NNM_POOL_MAX, 2, 4, (int64_t[]){2, 3, 8, 8}, (int64_t[]){2, 3, 4, 4},
               (int64_t[]){3, 3}, (int64_t[]){2, 2}, (int64_t[]){1, 1}, (int64_t[]){1, 1});
    c.a.n_spatial = 4;
    CU_ASSERT_EQUAL(cuda_dnn_pool_plan(&c.a, 0, &g, msg, sizeof msg), NNM_E_SHAPE);
    CU_ASSERT_EQUAL(cuda_dnn_pool_plan(NULL, 0, &g, msg, sizeof msg), NNM_E_INVALID);
}


/* ------------------------------------------------------------------------ */
/* The pooling kernels' bodies against the cpu backend, bit for bit          */
/* ------------------------------------------------------------------------ */

static const nnm_backend_vtable *g_cpu_vt;
static void *g_cpu_state, *g_cpu_dl;
static tu_fake_host g_fake;
static uint32_t g_rng = 77u;

static int cpu_open(void) {
    tu_fake_host_init(&g_fake);
    const nnm_plugin_desc *d = tu_plugin_open(NNM_TEST_PLUGIN_DIR "/nnm_cpu.so", &g_cpu_dl);
    if (d == NULL || d->n_backends != 1)
        return 1;
    g_cpu_vt = d->backends[0];
    return g_cpu_vt->init(&g_fake.env, &g_cpu_state) == NNM_OK ? 0 : 1;
}

static int cpu_close(void) {
    if (g_cpu_vt != NULL && g_cpu_state != NULL)
        g_cpu_vt->shutdown(g_cpu_state);
    if (g_cpu_dl != NULL)
        dlclose(g_cpu_dl);
    return 0;
}

/* Same bits, NaN equal to NaN. */
static int bits_differ(const float *a, const float *b, size_t n, const char *what) {
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        const int same = (a[i] != a[i] && b[i] != b[i]) || memcmp(&a[i], &b[i], sizeof(float)) == 0;
        if (!same && bad++ < 4)
            fprintf(stderr, "\n  %s[%zu]: bodies %.9g cpu %.9g", what, i, (double)a[i], (double)b[i]);
    }
    return bad;
}

/* Pools x [lead, *in] to out shape os with the bodies (as the GPU grid runs
 * them) and with the cpu backend; compares forward and gradient. */
static int pool_vs_cpu(const char *name, int32_t op, int32_t ns, int32_t nd, const int64_t *xs,
                       const int64_t *os, const int64_t *k, const int64_t *st, const int64_t *pd,
                       const int64_t *dl, int cip, int64_t dov, int fill) {
    pool_case c;
    pool_setup(&c, op, ns, nd, xs, os, k, st, pd, dl);
    c.a.count_include_pad = cip;
    c.a.divisor_override = dov;
    nnm__cuda_pool_geom g;
    char msg[256];
    if (cuda_dnn_pool_plan(&c.a, 0, &g, msg, sizeof msg) != NNM_OK) {
        fprintf(stderr, "\n  %s: plan: %s", name, msg);
        return 1;
    }
    const size_t nx = (size_t)(g.outer * g.in[0] * g.in[1] * g.in[2]);
    const size_t no = (size_t)(g.outer * g.out[0] * g.out[1] * g.out[2]);
    float *x = calloc(nx + 1, sizeof(float)), *go = calloc(no + 1, sizeof(float));
    float *o_body = calloc(no + 1, sizeof(float)), *o_cpu = calloc(no + 1, sizeof(float));
    float *gx_body = calloc(nx + 1, sizeof(float)), *gx_cpu = calloc(nx + 1, sizeof(float));
    int64_t *arg = calloc(no + 1, sizeof(int64_t));
    if (!x || !go || !o_body || !o_cpu || !gx_body || !gx_cpu || !arg)
        return 1;
    tu_fill_rand(&g_rng, x, nx);
    tu_fill_rand(&g_rng, go, no);
    for (size_t i = 0; fill && i < nx; i++)
        x[i] = (float)(int)((tu_rand(&g_rng) + 2.0f) * 0.75f); /* 0..2: ties everywhere */
    if (fill && nx > 3) {
        x[nx / 3] = NAN;
        x[nx - 1] = -INFINITY;
    }
    /* the bodies, one "thread" per element */
    const int64_t pin = g.in[0] * g.in[1] * g.in[2], pout = g.out[0] * g.out[1] * g.out[2];
    for (int64_t idx = 0; idx < (int64_t)no; idx++)
        o_body[idx] = dnn_pool_forward_one(&g, x + (idx / pout) * pin, idx % pout, &arg[idx]);
    for (int64_t idx = 0; idx < (int64_t)nx; idx++) {
        const int64_t pl = idx / pin, qi = idx % pin;
        gx_body[idx] = op == NNM_POOL_MAX
                           ? dnn_pool_backward_max_one(&g, arg + pl * pout, go + pl * pout, qi)
                           : dnn_pool_backward_avg_one(&g, go + pl * pout, qi);
    }
    /* the cpu backend */
    c.x.d.device.type = c.o.d.device.type = c.gx.d.device.type = NNM_DEVICE_CPU;
    c.x.d.data = x;
    c.o.d.data = o_cpu;
    int bad = 0;
    tu_fake_host_reset(&g_fake);
    if (g_cpu_vt->pool(&g_fake.env, g_cpu_state, &c.a) != NNM_OK) {
        fprintf(stderr, "\n  %s: cpu pool: %s", name, g_fake.msg);
        bad++;
    }
    tdesc gd;
    td_set(&gd, nd, os);
    gd.d.device.type = NNM_DEVICE_CPU;
    gd.d.data = go;
    c.gx.d.data = gx_cpu;
    c.a.out = NULL;
    c.a.grad_out = &gd.d;
    c.a.grad_x = &c.gx.d;
    if (g_cpu_vt->pool_backward(&g_fake.env, g_cpu_state, &c.a) != NNM_OK) {
        fprintf(stderr, "\n  %s: cpu pool_backward: %s", name, g_fake.msg);
        bad++;
    }
    char what[160];
    snprintf(what, sizeof what, "%s (fill %d): out", name, fill);
    bad += bits_differ(o_body, o_cpu, no, what);
    snprintf(what, sizeof what, "%s (fill %d): grad_x", name, fill);
    bad += bits_differ(gx_body, gx_cpu, nx, what);
    free(x);
    free(go);
    free(o_body);
    free(o_cpu);
    free(gx_body);
    free(gx_cpu);
    free(arg);
    return bad;
}

static void test_pool_bodies_fixed(void) {
    static const struct {
        const char *name;
        int32_t op, ns, nd;
        int64_t xs[5], os[5], k[3], s[3], p[3], d[3];
        int cip;
        int64_t dov;
    } cs[] = {
        {"max 2x2/2", NNM_POOL_MAX, 2, 4, {2, 3, 8, 8}, {2, 3, 4, 4}, {2, 2}, {2, 2}, {0, 0}, {1, 1}, 0, 0},
        {"max 2x2/2 odd (margins)", NNM_POOL_MAX, 2, 4, {1, 2, 9, 7}, {1, 2, 4, 3}, {2, 2}, {2, 2}, {0, 0}, {1, 1}, 0, 0},
        {"max 3x3/2 pad 1", NNM_POOL_MAX, 2, 4, {2, 3, 9, 9}, {2, 3, 5, 5}, {3, 3}, {2, 2}, {1, 1}, {1, 1}, 0, 0},
        {"max 3x3/2 ceil", NNM_POOL_MAX, 2, 4, {1, 2, 8, 8}, {1, 2, 4, 4}, {3, 3}, {2, 2}, {0, 0}, {1, 1}, 0, 0},
        {"max 3x3/1 overlapping", NNM_POOL_MAX, 2, 4, {1, 2, 6, 7}, {1, 2, 4, 5}, {3, 3}, {1, 1}, {0, 0}, {1, 1}, 0, 0},
        {"max dilation 2", NNM_POOL_MAX, 2, 4, {1, 2, 10, 9}, {1, 2, 10, 4}, {2, 3}, {1, 2}, {1, 1}, {2, 2}, 0, 0},
        {"max 1d", NNM_POOL_MAX, 1, 3, {2, 3, 15}, {2, 3, 8}, {3}, {2}, {1}, {1}, 0, 0},
        {"max 3d", NNM_POOL_MAX, 3, 5, {1, 2, 5, 6, 7}, {1, 2, 2, 3, 4}, {2, 2, 3}, {2, 2, 2}, {0, 0, 1}, {1, 1, 1}, 0, 0},
        {"avg 3x3/1 pad 1 include", NNM_POOL_AVG, 2, 4, {2, 2, 7, 7}, {2, 2, 7, 7}, {3, 3}, {1, 1}, {1, 1}, {1, 1}, 1, 0},
        {"avg 3x3/2 pad 1 exclude", NNM_POOL_AVG, 2, 4, {2, 2, 7, 7}, {2, 2, 4, 4}, {3, 3}, {2, 2}, {1, 1}, {1, 1}, 0, 0},
        {"avg ceil include pad", NNM_POOL_AVG, 2, 4, {1, 2, 8, 8}, {1, 2, 5, 5}, {3, 3}, {2, 2}, {1, 1}, {1, 1}, 1, 0},
        {"avg ceil exclude pad", NNM_POOL_AVG, 2, 4, {1, 2, 8, 8}, {1, 2, 5, 5}, {3, 3}, {2, 2}, {1, 1}, {1, 1}, 0, 0},
        {"avg divisor_override", NNM_POOL_AVG, 2, 4, {1, 3, 6, 6}, {1, 3, 3, 3}, {2, 2}, {2, 2}, {0, 0}, {1, 1}, 0, 3},
        {"avg 2x2/2 tiles", NNM_POOL_AVG, 2, 4, {2, 3, 8, 6}, {2, 3, 4, 3}, {2, 2}, {2, 2}, {0, 0}, {1, 1}, 1, 0},
        {"avg 1d", NNM_POOL_AVG, 1, 3, {2, 2, 11}, {2, 2, 6}, {2}, {2}, {1}, {1}, 0, 0},
        {"avg 3d", NNM_POOL_AVG, 3, 5, {1, 2, 4, 5, 6}, {1, 2, 2, 2, 3}, {2, 2, 2}, {2, 2, 2}, {0, 0, 0}, {1, 1, 1}, 0, 0},
        {"adaptive 7x7 -> 3x2", NNM_POOL_ADAPTIVE_AVG, 2, 4, {2, 3, 7, 7}, {2, 3, 3, 2}, {1, 1}, {1, 1}, {0, 0}, {1, 1}, 0, 0},
        {"adaptive 3 -> 5", NNM_POOL_ADAPTIVE_AVG, 1, 3, {2, 2, 3}, {2, 2, 5}, {1}, {1}, {0}, {1}, 0, 0},
        {"adaptive global 3d", NNM_POOL_ADAPTIVE_AVG, 3, 5, {2, 2, 3, 4, 5}, {2, 2, 1, 1, 1}, {1, 1, 1}, {1, 1, 1}, {0, 0, 0}, {1, 1, 1}, 0, 0},
    };
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++)
        for (int fill = 0; fill < 2; fill++)
            CU_ASSERT_EQUAL(pool_vs_cpu(cs[i].name, cs[i].op, cs[i].ns, cs[i].nd, cs[i].xs, cs[i].os,
                                        cs[i].k, cs[i].s, cs[i].p, cs[i].d, cs[i].cip, cs[i].dov,
                                        fill),
                            0);
}


/* The batch-norm helper bodies against the cpu backend's batch_norm slots. */
static void test_bn_bodies(void) {
    const int64_t shapes[][3] = {{4, 3, 25}, {16, 6, 1}, {2, 5, 300}, {0, 3, 7}, {1, 2, 1}};
    for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
        const int64_t n = shapes[t][0], C = shapes[t][1], l = shapes[t][2];
        const size_t nx = (size_t)(n * C * l), nc = (size_t)C;
        float *x = calloc(nx + 1, 4), *g = calloc(nx + 1, 4), *y = calloc(nx + 1, 4),
              *gx = calloc(nx + 1, 4), *w = calloc(nc, 4), *b = calloc(nc, 4), *rm = calloc(nc, 4),
              *rv = calloc(nc, 4), *sm = calloc(nc, 4), *si = calloc(nc, 4), *gw = calloc(nc, 4),
              *gb = calloc(nc, 4);
        CU_ASSERT_FATAL(x && g && y && gx && w && b && rm && rv && sm && si && gw && gb);
        tu_fill_rand(&g_rng, x, nx);
        for (size_t i = 0; i < nx; i++)
            x[i] = 3.0f + x[i];
        tu_fill_rand(&g_rng, g, nx);
        tu_fill_rand(&g_rng, w, nc);
        tu_fill_rand(&g_rng, b, nc);
        tu_fill_rand(&g_rng, rm, nc);
        for (size_t i = 0; i < nc; i++)
            rv[i] = 0.25f + fabsf(tu_rand(&g_rng));
        const double eps = 1e-5;
        tdesc dx, dy, dg, dgx, dw, db, drm, drv, dsm, dsi, dgw, dgb;
        const int64_t xs[3] = {n, C, l};
        td_set(&dx, 3, xs);
        td_set(&dy, 3, xs);
        td_set(&dg, 3, xs);
        td_set(&dgx, 3, xs);
        tdesc *cs[] = {&dw, &db, &drm, &drv, &dsm, &dsi, &dgw, &dgb};
        float *cd[] = {w, b, rm, rv, sm, si, gw, gb};
        for (int i = 0; i < 8; i++) {
            td_set(cs[i], 1, &C);
            cs[i]->d.data = cd[i];
            cs[i]->d.device.type = NNM_DEVICE_CPU;
        }
        tdesc *xsd[] = {&dx, &dy, &dg, &dgx};
        float *xd[] = {x, y, g, gx};
        for (int i = 0; i < 4; i++) {
            xsd[i]->d.data = xd[i];
            xsd[i]->d.device.type = NNM_DEVICE_CPU;
        }
        for (int training = 0; training < 2; training++) {
            nnm_batch_norm_args a;
            memset(&a, 0, sizeof a);
            a.struct_size = sizeof a;
            a.training = training;
            a.momentum = 0.1;
            a.eps = eps;
            a.n = n;
            a.c = C;
            a.l = l;
            a.x = &dx.d;
            a.weight = &dw.d;
            a.bias = &db.d;
            a.running_mean = &drm.d;
            a.running_var = &drv.d;
            a.save_mean = &dsm.d;
            a.save_invstd = &dsi.d;
            a.y = &dy.d;
            if (training && n * l == 1)
                continue; /* the runtime refuses one value per channel in training */
            const float rv0 = rv[0]; /* before training updates it */
            tu_fake_host_reset(&g_fake);
            CU_ASSERT_EQUAL_FATAL(g_cpu_vt->batch_norm(&g_fake.env, g_cpu_state, &a), NNM_OK);
            if (!training) {
                /* the saved statistics: bit for bit */
                for (size_t c = 0; c < nc; c++) {
                    CU_ASSERT_EQUAL(memcmp(&sm[c], &rm[c], 4), 0);
                    const float want = dnn_bn_invstd(c == 0 ? rv0 : rv[c], eps);
                    CU_ASSERT_EQUAL(memcmp(&si[c], &want, 4), 0);
                }
            } else if (n * l == 0) {
                const float want = dnn_bn_empty_invstd(eps);
                for (size_t c = 0; c < nc; c++) {
                    CU_ASSERT_EQUAL(sm[c], 0.0f);
                    CU_ASSERT_EQUAL(memcmp(&si[c], &want, 4), 0);
                }
            }
            nnm_batch_norm_args ab = a;
            ab.bias = ab.running_mean = ab.running_var = ab.y = NULL;
            ab.grad_out = &dg.d;
            ab.grad_x = &dgx.d;
            ab.grad_weight = &dgw.d;
            ab.grad_bias = &dgb.d;
            CU_ASSERT_EQUAL_FATAL(g_cpu_vt->batch_norm_backward(&g_fake.env, g_cpu_state, &ab),
                                  NNM_OK);
            /* weight and bias gradients, either mode: the same sums (double, another order) */
            for (int64_t c = 0; c < C; c++) {
                double sg = 0.0, sgx = 0.0;
                dnn_bn_sums(x, g, n, C, l, c, (double)sm[c], 0, 1, &sg, &sgx);
                CU_ASSERT_TRUE(tu_near(dnn_bn_grad_weight(sgx, si[c]), gw[c], 1e-6, 1e-6));
                CU_ASSERT_TRUE(tu_near((float)sg, gb[c], 1e-6, 1e-6));
            }
            /* eval's input gradient: bit for bit */
            if (!training) {
                int bad = 0;
                for (size_t i = 0; i < nx; i++) {
                    const float v = dnn_bn_eval_grad_x_one(g, w, si, C, l, (int64_t)i);
                    bad += memcmp(&v, &gx[i], 4) != 0;
                }
                CU_ASSERT_EQUAL(bad, 0);
            }
        }
        float *all[] = {x, g, y, gx, w, b, rm, rv, sm, si, gw, gb};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            free(all[i]);
    }
}

static int64_t rnd_in(int64_t lo, int64_t hi) { /* [lo, hi] */
    const double u = ((double)tu_rand(&g_rng) + 2.0) / 4.0; /* [0, 1) */
    return lo + (int64_t)(u * (double)(hi - lo + 1));
}

/* Random geometries, output sizes as the runtime computes them (floor or
 * ceil mode), every op. */
static void test_pool_bodies_random(void) {
    int bad_cases = 0, ran = 0;
    for (int t = 0; t < 300; t++) {
        const int32_t op = (int32_t)rnd_in(0, 2), ns = (int32_t)rnd_in(1, 3), nd = ns + 2;
        int64_t xs[5] = {rnd_in(1, 2), rnd_in(1, 3)}, os[5] = {xs[0], xs[1]};
        int64_t k[3], s[3], p[3], d[3];
        const int ceil_mode = (int)rnd_in(0, 1);
        int ok = 1;
        for (int i = 0; i < ns; i++) {
            const int64_t in = rnd_in(1, 9);
            xs[2 + i] = in;
            k[i] = rnd_in(1, 4);
            s[i] = rnd_in(1, 3);
            p[i] = rnd_in(0, k[i] / 2);
            d[i] = op == NNM_POOL_MAX ? rnd_in(1, 2) : 1;
            if (op == NNM_POOL_ADAPTIVE_AVG) {
                os[2 + i] = rnd_in(1, 8);
                continue;
            }
            const int64_t span = in + 2 * p[i] - d[i] * (k[i] - 1) - 1;
            if (span < 0) {
                ok = 0;
                break;
            }
            int64_t o = (ceil_mode ? (span + s[i] - 1) / s[i] : span / s[i]) + 1;
            if (ceil_mode && (o - 1) * s[i] >= in + p[i])
                o--;
            os[2 + i] = o;
        }
        if (!ok)
            continue;
        const int cip = (int)rnd_in(0, 1);
        const int64_t dov = op == NNM_POOL_AVG && rnd_in(0, 3) == 0 ? rnd_in(1, 5) : 0;
        char name[64];
        snprintf(name, sizeof name, "random #%d (op %d, %dd)", t, (int)op, (int)ns);
        bad_cases += pool_vs_cpu(name, op, ns, nd, xs, os, k, s, p, d, cip, dov, t % 2) != 0;
        ran++;
    }
    CU_ASSERT_EQUAL(bad_cases, 0);
    CU_ASSERT_TRUE(ran >= 200); /* few geometries are too small for their window */
}

/* ------------------------------------------------------------------------ */
/* The descriptor code against the real cuDNN (host calls only, no GPU)      */
/* ------------------------------------------------------------------------ */

#ifdef NNM_TEST_CUDNN
#ifndef NNM_TEST_CUDA_LIBDIR
#define NNM_TEST_CUDA_LIBDIR ""
#endif

static void *g_dnn_dl;
static cuda_dnn_fns g_fn;
static char g_dnn_skip[512];
/* what the test asks cuDNN back, beyond what the backend uses */
static __typeof__(&cudnnGetConvolutionNdForwardOutputDim) g_outdim;
static __typeof__(&cudnnDeriveBNTensorDescriptor) g_derive_bn;
static __typeof__(&cudnnGetTensorNdDescriptor) g_get_tensor;
static __typeof__(&cudnnGetFilterNdDescriptor) g_get_filter;
static __typeof__(&cudnnGetConvolutionNdDescriptor) g_get_conv;
static __typeof__(&cudnnGetConvolutionGroupCount) g_get_groups;

#define DNN_SYM(var, name)                                                                \
    do {                                                                                  \
        void *p_ = dlsym(g_dnn_dl, name);                                                 \
        memcpy(&(var), &p_, sizeof p_);                                                   \
    } while (0)

static int dnn_open(void) {
    const char *env = getenv("NNM_CUDNN_LIBRARY");
    char alt[1024];
    snprintf(alt, sizeof alt, "%s/%s", NNM_TEST_CUDA_LIBDIR, CUDA_DNN_SONAME);
    const char *tries[2] = {env != NULL && env[0] ? env : CUDA_DNN_SONAME, alt};
    for (int i = 0; i < 2 && g_dnn_dl == NULL; i++)
        g_dnn_dl = dlopen(tries[i], RTLD_NOW | RTLD_LOCAL);
    if (g_dnn_dl == NULL) {
        const char *e = dlerror();
        snprintf(g_dnn_skip, sizeof g_dnn_skip, "%s", e ? e : "libcudnn not found");
        printf("test_cuda_dnn_plan: cuDNN descriptors: SKIPPED: %s\n", g_dnn_skip);
        return 0;
    }
    DNN_SYM(g_outdim, "cudnnGetConvolutionNdForwardOutputDim");
    DNN_SYM(g_derive_bn, "cudnnDeriveBNTensorDescriptor");
    DNN_SYM(g_get_tensor, "cudnnGetTensorNdDescriptor");
    DNN_SYM(g_get_filter, "cudnnGetFilterNdDescriptor");
    DNN_SYM(g_get_conv, "cudnnGetConvolutionNdDescriptor");
    DNN_SYM(g_get_groups, "cudnnGetConvolutionGroupCount");
    return 0;
}

static int dnn_close(void) {
    if (g_dnn_dl != NULL)
        dlclose(g_dnn_dl);
    g_dnn_dl = NULL;
    return 0;
}

static void test_dnn_resolve(void) {
    if (g_dnn_dl == NULL)
        return; /* skipped (printed) */
    const char *missing = cuda_dnn_resolve(g_dnn_dl, &g_fn);
    if (missing != NULL)
        fprintf(stderr, "\n  libcudnn lacks %s", missing);
    CU_ASSERT_PTR_NULL_FATAL(missing);
    const size_t v = g_fn.cudnnGetVersion();
    CU_ASSERT_EQUAL(cuda_dnn_version_major(v), (size_t)CUDNN_MAJOR);
    CU_ASSERT_EQUAL(cuda_dnn_version_major(90100), 9);
    CU_ASSERT_EQUAL(cuda_dnn_version_major(8907), 8);
    CU_ASSERT_EQUAL(cuda_dnn_version_major(7605), 7);
    CU_ASSERT_PTR_NOT_NULL(g_fn.cudnnGetErrorString(CUDNN_STATUS_BAD_PARAM));
    CU_ASSERT_PTR_NOT_NULL_FATAL(g_outdim);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g_derive_bn);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g_get_tensor);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g_get_filter);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g_get_conv);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g_get_groups);
}

/* Describes plan p with the backend's code and checks what cuDNN holds. */
static void dnn_check_conv(const char *name, const cuda_dnn_conv_plan *p) {
    cudnnTensorDescriptor_t xd = NULL, yd = NULL, bd = NULL;
    cudnnFilterDescriptor_t wd = NULL;
    cudnnConvolutionDescriptor_t cd = NULL;
    CU_ASSERT_EQUAL_FATAL(g_fn.cudnnCreateTensorDescriptor(&xd), CUDNN_STATUS_SUCCESS);
    CU_ASSERT_EQUAL_FATAL(g_fn.cudnnCreateTensorDescriptor(&yd), CUDNN_STATUS_SUCCESS);
    CU_ASSERT_EQUAL_FATAL(g_fn.cudnnCreateTensorDescriptor(&bd), CUDNN_STATUS_SUCCESS);
    CU_ASSERT_EQUAL_FATAL(g_fn.cudnnCreateFilterDescriptor(&wd), CUDNN_STATUS_SUCCESS);
    CU_ASSERT_EQUAL_FATAL(g_fn.cudnnCreateConvolutionDescriptor(&cd), CUDNN_STATUS_SUCCESS);
    const char *call = "";
    const cudnnStatus_t cs = cuda_dnn_describe_conv(&g_fn, xd, yd, wd, cd, p, &call);
    if (cs != CUDNN_STATUS_SUCCESS)
        fprintf(stderr, "\n  %s: %s: %s", name, call, g_fn.cudnnGetErrorString(cs));
    CU_ASSERT_EQUAL(cs, CUDNN_STATUS_SUCCESS);
    CU_ASSERT_EQUAL(cuda_dnn_set_tensor(&g_fn, bd, &p->bias), CUDNN_STATUS_SUCCESS);
    /* the output cuDNN computes is the plan's y */
    int od[CUDA_DNN_MAX_DIMS] = {0};
    CU_ASSERT_EQUAL(g_outdim(cd, xd, wd, p->nbdims, od), CUDNN_STATUS_SUCCESS);
    for (int i = 0; i < p->nbdims; i++)
        if (od[i] != p->y.dims[i]) {
            fprintf(stderr, "\n  %s: cuDNN's output dim %d is %d, the plan's %d", name, i, od[i],
                    p->y.dims[i]);
            CU_FAIL("output dims");
        }
    /* and it holds the numbers given */
    int n = 0, pad[3], st[3], dil[3];
    cudnnConvolutionMode_t mode;
    cudnnDataType_t dt;
    CU_ASSERT_EQUAL(g_get_conv(cd, 3, &n, pad, st, dil, &mode, &dt), CUDNN_STATUS_SUCCESS);
    CU_ASSERT_EQUAL(n, p->n_spatial);
    for (int i = 0; i < n && i < 3; i++) {
        CU_ASSERT_EQUAL(pad[i], p->pad[i]);
        CU_ASSERT_EQUAL(st[i], p->stride[i]);
        CU_ASSERT_EQUAL(dil[i], p->dilation[i]);
    }
    CU_ASSERT_EQUAL(mode, CUDNN_CROSS_CORRELATION);
    CU_ASSERT_EQUAL(dt, CUDNN_DATA_FLOAT);
    int groups = 0;
    CU_ASSERT_EQUAL(g_get_groups(cd, &groups), CUDNN_STATUS_SUCCESS);
    CU_ASSERT_EQUAL(groups, p->groups);
    int fd[CUDA_DNN_MAX_DIMS] = {0}, fn_dims = 0;
    cudnnTensorFormat_t fmt;
    CU_ASSERT_EQUAL(g_get_filter(wd, CUDA_DNN_MAX_DIMS, &dt, &fmt, &fn_dims, fd), CUDNN_STATUS_SUCCESS);
    CU_ASSERT_EQUAL(fn_dims, p->nbdims);
    CU_ASSERT_EQUAL(fmt, CUDNN_TENSOR_NCHW);
    for (int i = 0; i < p->nbdims; i++)
        CU_ASSERT_EQUAL(fd[i], p->w[i]);
    int td[CUDA_DNN_MAX_DIMS], ts[CUDA_DNN_MAX_DIMS], tn = 0;
    CU_ASSERT_EQUAL(g_get_tensor(xd, CUDA_DNN_MAX_DIMS, &dt, &tn, td, ts), CUDNN_STATUS_SUCCESS);
    CU_ASSERT_EQUAL(tn, p->nbdims);
    for (int i = 0; i < tn && i < CUDA_DNN_MAX_DIMS; i++) {
        CU_ASSERT_EQUAL(td[i], p->x.dims[i]);
        CU_ASSERT_EQUAL(ts[i], p->x.strides[i]);
    }
    (void)g_fn.cudnnDestroyConvolutionDescriptor(cd);
    (void)g_fn.cudnnDestroyFilterDescriptor(wd);
    (void)g_fn.cudnnDestroyTensorDescriptor(bd);
    (void)g_fn.cudnnDestroyTensorDescriptor(yd);
    (void)g_fn.cudnnDestroyTensorDescriptor(xd);
}

static void test_dnn_conv_descriptors(void) {
    if (g_dnn_dl == NULL || g_fn.cudnnCreateTensorDescriptor == NULL)
        return; /* skipped (printed), or resolve failed (reported) */
    static const struct {
        const char *name;
        int32_t ns, g;
        int64_t n, cin, cout, in[3], k[3], s[3], p[3], d[3];
    } cs[] = {
        {"2d 3x3 pad 1", 2, 1, 2, 3, 4, {7, 9}, {3, 3}, {1, 1}, {1, 1}, {1, 1}},
        {"2d groups 2 stride 2 dilation 2 pad 2", 2, 2, 2, 4, 6, {11, 9}, {3, 3}, {2, 2}, {2, 2}, {2, 2}},
        {"2d depthwise", 2, 8, 3, 8, 8, {10, 10}, {3, 3}, {2, 2}, {1, 1}, {1, 1}},
        {"2d asymmetric", 2, 2, 2, 6, 4, {12, 9}, {3, 2}, {2, 1}, {2, 0}, {1, 3}},
        {"2d resnet stem", 2, 1, 2, 3, 64, {224, 224}, {7, 7}, {2, 2}, {3, 3}, {1, 1}},
        {"1d lifted", 1, 2, 2, 4, 6, {20}, {3}, {2}, {2}, {2}},
        {"3d", 3, 1, 2, 2, 3, {5, 6, 7}, {3, 3, 3}, {1, 1, 1}, {1, 1, 1}, {1, 1, 1}},
        {"3d groups stride dilation", 3, 2, 1, 4, 4, {6, 7, 8}, {2, 3, 2}, {2, 1, 2}, {0, 1, 1}, {1, 2, 1}},
    };
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        conv_case c;
        conv_setup(&c, cs[i].ns, cs[i].n, cs[i].cin, cs[i].cout, cs[i].g, cs[i].in, cs[i].k,
                   cs[i].s, cs[i].p, cs[i].d);
        cuda_dnn_conv_plan p;
        char msg[256];
        CU_ASSERT_EQUAL_FATAL(cuda_dnn_conv_plan_make(&c.a, 0, &p, msg, sizeof msg), NNM_OK);
        dnn_check_conv(cs[i].name, &p);
    }
}

static void test_dnn_bn_descriptors(void) {
    if (g_dnn_dl == NULL || g_fn.cudnnCreateTensorDescriptor == NULL)
        return;
    const int64_t shapes[][3] = {{4, 3, 25}, {16, 6, 1}, {2, 64, 3136}, {1, 5, 7}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        cuda_dnn_bn_plan p;
        char msg[256];
        CU_ASSERT_EQUAL_FATAL(cuda_dnn_bn_plan_make(shapes[i][0], shapes[i][1], shapes[i][2], 0, &p,
                                                    msg, sizeof msg),
                              NNM_OK);
        cudnnTensorDescriptor_t xd = NULL, chd = NULL, derived = NULL;
        CU_ASSERT_EQUAL_FATAL(g_fn.cudnnCreateTensorDescriptor(&xd), CUDNN_STATUS_SUCCESS);
        CU_ASSERT_EQUAL_FATAL(g_fn.cudnnCreateTensorDescriptor(&chd), CUDNN_STATUS_SUCCESS);
        CU_ASSERT_EQUAL_FATAL(g_fn.cudnnCreateTensorDescriptor(&derived), CUDNN_STATUS_SUCCESS);
        const char *call = "";
        CU_ASSERT_EQUAL(cuda_dnn_describe_bn(&g_fn, xd, chd, &p, &call), CUDNN_STATUS_SUCCESS);
        /* the per-channel descriptor is the one cuDNN derives for spatial mode */
        CU_ASSERT_EQUAL(g_derive_bn(derived, xd, CUDNN_BATCHNORM_SPATIAL), CUDNN_STATUS_SUCCESS);
        int d1[4], s1[4], d2[4], s2[4], n1 = 0, n2 = 0;
        cudnnDataType_t t1, t2;
        CU_ASSERT_EQUAL(g_get_tensor(derived, 4, &t1, &n1, d1, s1), CUDNN_STATUS_SUCCESS);
        CU_ASSERT_EQUAL(g_get_tensor(chd, 4, &t2, &n2, d2, s2), CUDNN_STATUS_SUCCESS);
        CU_ASSERT_EQUAL(n1, 4);
        CU_ASSERT_EQUAL(n2, 4);
        CU_ASSERT_EQUAL(t1, t2);
        for (int j = 0; j < 4; j++) {
            CU_ASSERT_EQUAL(d1[j], d2[j]);
            CU_ASSERT_EQUAL(s1[j], s2[j]);
        }
        (void)g_fn.cudnnDestroyTensorDescriptor(derived);
        (void)g_fn.cudnnDestroyTensorDescriptor(chd);
        (void)g_fn.cudnnDestroyTensorDescriptor(xd);
    }
}

/* The search order, and NNM_CUDNN_LIBRARY's override, with the real library. */
static void test_dnn_open_order(void) {
    char cand[8][CUDA_DNN_PATH_MAX];
    int n = cuda_dnn_candidates("/w/site-packages/nvidia/cu13/lib", "/usr/local/cuda/lib", cand, 8);
    CU_ASSERT_EQUAL_FATAL(n, 5);
    CU_ASSERT_STRING_EQUAL(cand[0], CUDA_DNN_SONAME);
    CU_ASSERT_STRING_EQUAL(cand[1], "libcudnn.so");
    CU_ASSERT_STRING_EQUAL(cand[2], "/usr/local/cuda/lib/" CUDA_DNN_SONAME);
    CU_ASSERT_STRING_EQUAL(cand[3], "/w/site-packages/nvidia/cu13/lib/" CUDA_DNN_SONAME);
    CU_ASSERT_STRING_EQUAL(cand[4], "/w/site-packages/nvidia/cu13/lib/../../cudnn/lib/" CUDA_DNN_SONAME);
    /* cuBLAS in the toolkit's directory: not tried twice */
    n = cuda_dnn_candidates("/usr/local/cuda/lib", "/usr/local/cuda/lib", cand, 8);
    CU_ASSERT_EQUAL(n, 4);
    n = cuda_dnn_candidates("", "", cand, 8);
    CU_ASSERT_EQUAL(n, 2);
    CU_ASSERT_EQUAL(cuda_dnn_candidates("/a", "/b", cand, 1), 1);

    if (g_dnn_dl == NULL)
        return; /* no cuDNN here: the loads below need one */
    const char *old = getenv("NNM_CUDNN_LIBRARY");
    char *saved = old != NULL ? strdup(old) : NULL;
    char path[512], why[1024];
    /* a file that is not there: NULL, naming it, and nothing else tried */
    setenv("NNM_CUDNN_LIBRARY", "/nonexistent/libcudnn.so.9", 1);
    void *h = cuda_dnn_open("", NNM_TEST_CUDA_LIBDIR, path, sizeof path, why, sizeof why);
    CU_ASSERT_PTR_NULL(h);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "/nonexistent/libcudnn.so.9"));
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "nothing else is tried"));
    /* the directory holding it: loads libcudnn.so.<major> from there */
    Dl_info info;
    void *sym = dlsym(g_dnn_dl, "cudnnGetVersion");
    if (sym != NULL && dladdr(sym, &info) != 0 && info.dli_fname != NULL) {
        char dir[512];
        snprintf(dir, sizeof dir, "%s", info.dli_fname);
        char *slash = strrchr(dir, '/');
        if (slash != NULL) {
            *slash = '\0';
            setenv("NNM_CUDNN_LIBRARY", dir, 1);
            h = cuda_dnn_open("", "", path, sizeof path, why, sizeof why);
            CU_ASSERT_PTR_NOT_NULL(h);
            CU_ASSERT_PTR_NOT_NULL(strstr(path, "/" CUDA_DNN_SONAME));
            if (h != NULL)
                dlclose(h);
        }
    }
    /* unset: the search finds it (the soname or the toolkit's copy) */
    unsetenv("NNM_CUDNN_LIBRARY");
    h = cuda_dnn_open("/nonexistent/nvidia/cu13/lib", NNM_TEST_CUDA_LIBDIR, path, sizeof path, why,
                      sizeof why);
    CU_ASSERT_PTR_NOT_NULL(h);
    if (h != NULL) {
        cuda_dnn_fns fn;
        CU_ASSERT_PTR_NULL(cuda_dnn_resolve(h, &fn));
        dlclose(h);
    }
    if (saved != NULL) {
        setenv("NNM_CUDNN_LIBRARY", saved, 1);
        free(saved);
    }
}
#endif /* NNM_TEST_CUDNN */

int main(void) {
    CU_pSuite s = tu_suite("cuda dnn plan", NULL, NULL);
    if (s == NULL)
        return 1;
    CU_add_test(s, "conv 2-d: descriptors, forward and backward", test_conv_2d);
    CU_add_test(s, "conv 1-d: lifted to 2-d of height 1", test_conv_1d_lifted);
    CU_add_test(s, "conv 3-d and depthwise", test_conv_3d_and_depthwise);
    CU_add_test(s, "conv declines and shape errors", test_conv_declines_and_errors);
    CU_add_test(s, "conv algorithm keys", test_conv_keys);
    CU_add_test(s, "algorithm cache", test_cache);
    CU_add_test(s, "batch norm plan", test_bn_plan);
    CU_add_test(s, "pool plan", test_pool_plan);
    CU_pSuite b = tu_suite("cuda kernel bodies vs the cpu backend", cpu_open, cpu_close);
    if (b == NULL)
        return 1;
    CU_add_test(b, "fixed geometries, bit for bit", test_pool_bodies_fixed);
    CU_add_test(b, "300 random geometries, bit for bit", test_pool_bodies_random);
    CU_add_test(b, "batch-norm helper bodies vs the cpu backend's batch_norm", test_bn_bodies);
#ifdef NNM_TEST_CUDNN
    CU_pSuite r = tu_suite("the descriptor code against the real cuDNN (no GPU needed)", dnn_open,
                           dnn_close);
    if (r == NULL)
        return 1;
    CU_add_test(r, "entry points resolve, version matches", test_dnn_resolve);
    CU_add_test(r, "conv descriptors: cuDNN's output dims are the plan's", test_dnn_conv_descriptors);
    CU_add_test(r, "batch norm descriptors: the per-channel one cuDNN derives",
                test_dnn_bn_descriptors);
    CU_add_test(r, "where cuDNN is looked for; NNM_CUDNN_LIBRARY", test_dnn_open_order);
#endif
    return tu_run();
}
