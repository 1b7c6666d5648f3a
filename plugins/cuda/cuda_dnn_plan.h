/* plugins/cuda/cuda_dnn_plan.h - the pure-C half of the cuDNN concern: the
 * translation of nnm args (conv, batch norm, pooling) into the plain
 * numbers the cuDNN descriptor calls and the pooling kernels take, and the
 * per-device cache of convolution algorithms keyed by geometry.
 *
 * Nothing here includes a CUDA or cuDNN header or touches device memory:
 * tests/cuda/test_cuda_dnn_plan.c compiles cuda_dnn_plan.c on its own and
 * checks every translation and the cache on a machine without a GPU. The
 * cuDNN side (cuda_dnn*.c) calls cudnnSet*NdDescriptor with exactly these
 * numbers and nothing else.
 *
 * Every *_plan function returns NNM_OK (the plan is filled), NNM_E_UNSUPPORTED
 * (a well-formed geometry this path does not take: the caller declines, the
 * reason in msg), or another status for malformed arguments (msg says what).
 * msg is always NUL-terminated; the caller prefixes "cuda <op>: ".
 */
#ifndef NNM_CUDA_DNN_PLAN_H
#define NNM_CUDA_DNN_PLAN_H

#include <nnmod/plugin.h>

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A pooling's geometry promoted to 3 spatial dims (size-1 dims in front),
 * as the pooling kernels (dnn_kernels.cu) take it by value: `outer` planes
 * of in[0] x in[1] x in[2] pooled to out[0] x out[1] x out[2]. */
typedef struct nnm__cuda_pool_geom {
    int32_t op;                /* enum nnm_pool_op */
    int32_t count_include_pad;
    int64_t divisor_override;  /* > 0 replaces the avg divisor */
    int64_t outer;
    int64_t in[3], out[3], k[3], s[3], p[3], d[3];
} nnm__cuda_pool_geom;

/* N, C and up to NNM_MAX_SPATIAL spatial dims. */
#define CUDA_DNN_MAX_DIMS (2 + NNM_MAX_SPATIAL)

/* A fully packed NCHW / NCDHW tensor as cudnnSetTensorNdDescriptor takes it. */
typedef struct cuda_dnn_tensor {
    int nbdims; /* 4 or 5 */
    int dims[CUDA_DNN_MAX_DIMS];
    int strides[CUDA_DNN_MAX_DIMS];
} cuda_dnn_tensor;

/* One convolution (not transposed) as cuDNN sees it. A 1-d convolution is
 * the 2-d one of height 1 (kernel 1, stride 1, no padding, dilation 1 in
 * the inserted dim), as PyTorch hands 1-d convolutions to cuDNN. */
typedef struct cuda_dnn_conv_plan {
    int nbdims;                /* 4 (1-d, 2-d) or 5 (3-d) */
    int n_spatial;             /* nbdims - 2 */
    cuda_dnn_tensor x, y;      /* x [N, C_in, *in], y [N, C_out, *out] */
    cuda_dnn_tensor bias;      /* [1, C_out, 1, ...]: what cudnnAddTensor adds */
    int w[CUDA_DNN_MAX_DIMS];  /* filter, NCHW: [C_out, C_in / groups, *kernel] */
    int pad[NNM_MAX_SPATIAL];  /* symmetric zero padding */
    int stride[NNM_MAX_SPATIAL];
    int dilation[NNM_MAX_SPATIAL];
    int groups;
} cuda_dnn_conv_plan;

/* The three convolution problems a geometry has, each with its own algorithm. */
enum cuda_dnn_conv_kind {
    CUDA_DNN_CONV_FWD = 0,
    CUDA_DNN_CONV_BWD_DATA = 1,
    CUDA_DNN_CONV_BWD_FILTER = 2
};

/* Translates a conv (backward 0) or conv_backward (1) call. Checks the
 * params and every tensor's shape (x, w, y or grad_out, b, grad_x, grad_w;
 * the descriptors themselves - device, dtype, strides - are the caller's to
 * check) and that they make one convolution. Declines (NNM_E_UNSUPPORTED): a
 * transposed convolution, uneven padding (padding != padding_end), a size,
 * stride or element count above INT_MAX, an empty tensor. */
nnm_status cuda_dnn_conv_plan_make(const nnm_conv_args *a, int backward, cuda_dnn_conv_plan *p,
                                   char *msg, size_t cap);

/* The algorithm cache's key: everything cuDNN's choice depends on. Made by
 * cuda_dnn_conv_key_make only (it zeroes the padding bytes: keys compare
 * with memcmp). */
typedef struct cuda_dnn_conv_key {
    int32_t kind;      /* enum cuda_dnn_conv_kind */
    int32_t math;      /* the math type the search allowed (0 FMA only, 1 TF32 too) */
    int32_t nbdims;
    int32_t groups;
    int32_t x[CUDA_DNN_MAX_DIMS];
    int32_t w[CUDA_DNN_MAX_DIMS];
    int32_t pad[NNM_MAX_SPATIAL];
    int32_t stride[NNM_MAX_SPATIAL];
    int32_t dilation[NNM_MAX_SPATIAL];
} cuda_dnn_conv_key;

void cuda_dnn_conv_key_make(cuda_dnn_conv_key *k, const cuda_dnn_conv_plan *p, int kind,
                            int math);

/* What the cache remembers of one search: the algorithm, the math type it
 * runs with and the workspace it needs. */
typedef struct cuda_dnn_algo {
    int algo;
    int math_type;
    size_t workspace;
} cuda_dnn_algo;

/* Open addressing, linear probing, power-of-two capacity grown at half
 * load; when CUDA_DNN_CACHE_MAX entries are reached it is emptied and starts
 * over (a model with ever new shapes must not grow it without bound). One
 * per device per context: a context is used by one thread at a time, so no
 * lock. A zeroed struct is an empty cache. */
#define CUDA_DNN_CACHE_MAX 4096
typedef struct cuda_dnn_cache_entry {
    cuda_dnn_conv_key key;
    cuda_dnn_algo val;
    int used;
} cuda_dnn_cache_entry;
typedef struct cuda_dnn_cache {
    cuda_dnn_cache_entry *slots;
    size_t cap;   /* 0 or a power of two */
    size_t count;
    uint64_t hits, misses, resets; /* for tests and curiosity */
} cuda_dnn_cache;

/* The entry for k, or NULL (counts a hit or a miss). */
const cuda_dnn_algo *cuda_dnn_cache_find(cuda_dnn_cache *c, const cuda_dnn_conv_key *k);
/* Inserts or replaces. NNM_E_NOMEM (nothing changed) if the table cannot grow. */
nnm_status cuda_dnn_cache_put(cuda_dnn_cache *c, const cuda_dnn_conv_key *k, const cuda_dnn_algo *v);
/* Frees the table; the cache is empty (and usable) afterwards. */
void cuda_dnn_cache_clear(cuda_dnn_cache *c);

/* ---- batch norm ----------------------------------------------------------- */

/* x [n, c, l] as cuDNN's spatial batch norm takes it: x {n, c, l, 1} packed
 * and the per-channel tensors {1, c, 1, 1}. */
typedef struct cuda_dnn_bn_plan {
    cuda_dnn_tensor x;
    cuda_dnn_tensor ch;
    int64_t count; /* n * l: values per channel */
} cuda_dnn_bn_plan;

/* Declines (NNM_E_UNSUPPORTED) what PyTorch does not give cuDNN either: more
 * than INT_MAX - 1 elements, n above 880801 (training) or 65535 (eval), and
 * empty tensors (the caller handles n * l == 0 or c == 0 itself). */
nnm_status cuda_dnn_bn_plan_make(int64_t n, int64_t c, int64_t l, int training,
                                 cuda_dnn_bn_plan *p, char *msg, size_t cap);

/* ---- pooling --------------------------------------------------------------- */

/* Checks a pool (backward 0) or pool_backward (1) call's geometry as the
 * cpu backend does (x and out/grad_out of the same ndim >= n_spatial, equal
 * leading dims, sane windows, every window starting inside the padded
 * input; grad_x of x's shape) and promotes it to 3 spatial dims for the
 * kernels (dims of size 1 in front). The descriptors themselves are the
 * caller's to check. */
nnm_status cuda_dnn_pool_plan(const nnm_pool_args *a, int backward, nnm__cuda_pool_geom *g,
                              char *msg, size_t cap);

#ifdef __cplusplus
}
#endif

#endif /* NNM_CUDA_DNN_PLAN_H */
