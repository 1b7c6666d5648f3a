/* runtime/core/ops_internal.h - the ops behind the host table: argument checks, allocation, backend dispatch, recording.
 * Private to the runtime (nnm__ names); runtime/internal.h includes every such header. */
#ifndef NNM_OPS_INTERNAL_H
#define NNM_OPS_INTERNAL_H

#include "../core/core_internal.h"

/* ops.c: every op checks shapes and devices, allocates its output, and
 * dispatches to the backend. */
nnm_status nnm__op_linear(nnm_ctx *ctx, nnm_tensor *x, nnm_tensor *w, nnm_tensor *b,
                          nnm_tensor **out);
nnm_status nnm__op_matmul(nnm_ctx *ctx, nnm_tensor *a, nnm_tensor *b, nnm_tensor **out);
nnm_status nnm__op_binary(nnm_ctx *ctx, int32_t op, nnm_tensor *a, nnm_tensor *b,
                          nnm_tensor **out);
nnm_status nnm__op_unary(nnm_ctx *ctx, int32_t op, nnm_tensor *x, double alpha,
                         nnm_tensor **out);
nnm_status nnm__op_fill(nnm_ctx *ctx, nnm_tensor *t, double value);
nnm_status nnm__op_reduce(nnm_ctx *ctx, int32_t op, nnm_tensor *x, const int32_t *dims,
                          uint32_t n_dims, int keepdim, nnm_tensor **out);
nnm_status nnm__op_log_softmax(nnm_ctx *ctx, nnm_tensor *x, nnm_tensor **out);
nnm_status nnm__op_nll(nnm_ctx *ctx, nnm_tensor *logp, nnm_tensor *target, int64_t ignore_index,
                       double label_smoothing, int32_t reduction, nnm_tensor **out);
nnm_status nnm__op_reshape(nnm_ctx *ctx, nnm_tensor *x, int32_t ndim, const int64_t *shape,
                           nnm_tensor **out);
/* Backend-only helpers (no recording) used by derivatives. */
nnm_status nnm__gemm(nnm_ctx *ctx, int trans_a, int trans_b, nnm_tensor *a, nnm_tensor *b,
                     int64_t m, int64_t n, int64_t k, float beta, nnm_tensor *c);
/* "erf" for NNM_UNARY_ERF, ... ("?" when unknown). */
const char *nnm__unary_name(int32_t op);
/* 1 when backend `be` has ABI-1.1 slots and unary ops. */
int nnm__backend_minor(const nnm__backend *be);
/* ops_nn.c, ops_shape.c: the ABI 1.3 ops (each checks its arguments, sets an
 * error naming the op, allocates from the caching allocator, dispatches, and
 * records for autograd). */
nnm_status nnm__op_full(nnm_ctx *ctx, nnm_device dev, int32_t ndim, const int64_t *shape,
                        double value, nnm_tensor **out);
nnm_status nnm__op_rand(nnm_ctx *ctx, nnm_device dev, int32_t dist, double a, double b,
                        int32_t ndim, const int64_t *shape, nnm_tensor **out);
nnm_status nnm__op_bmm(nnm_ctx *ctx, nnm_tensor *a, nnm_tensor *b, nnm_tensor **out);
nnm_status nnm__op_permute(nnm_ctx *ctx, nnm_tensor *x, const int32_t *perm, int32_t ndim,
                           nnm_tensor **out);
nnm_status nnm__op_concat(nnm_ctx *ctx, nnm_tensor *const *xs, uint32_t n, int32_t dim,
                          nnm_tensor **out);
nnm_status nnm__op_slice(nnm_ctx *ctx, nnm_tensor *x, int32_t dim, int64_t start, int64_t length,
                         nnm_tensor **out);
nnm_status nnm__op_softmax(nnm_ctx *ctx, nnm_tensor *x, int32_t dim, int log, nnm_tensor **out);
nnm_status nnm__op_where(nnm_ctx *ctx, nnm_tensor *cond, nnm_tensor *a, nnm_tensor *b,
                         nnm_tensor **out);
nnm_status nnm__op_conv(nnm_ctx *ctx, nnm_tensor *x, nnm_tensor *w, nnm_tensor *b,
                        const nnm_conv_params *p, nnm_tensor **out);
nnm_status nnm__op_pool(nnm_ctx *ctx, nnm_tensor *x, const nnm_pool_params *p, nnm_tensor **out);
nnm_status nnm__op_update(nnm_ctx *ctx, nnm_tensor *dst, nnm_tensor *src, double alpha, double beta);
/* Backward helpers of the 1.3 ops (no recording; ops_nn.c). conv: grads of x
 * and w for the saved contiguous x, w (either out pointer NULL: not wanted);
 * gw_into, when not NULL (gw then NULL), a contiguous f32 tensor of w's shape
 * that the weight's gradient overwrites instead of going to a new tensor (a
 * DDP bucket view: no temporary, no copy). */
nnm_status nnm__conv_backward(nnm_ctx *ctx, const nnm_conv_params *p, nnm_tensor *x, nnm_tensor *w,
                              nnm_tensor *g, nnm_tensor **gx, nnm_tensor **gw, nnm_tensor *gw_into);
nnm_status nnm__pool_backward(nnm_ctx *ctx, const nnm_pool_params *p, nnm_tensor *x, nnm_tensor *g,
                              nnm_tensor **gx);
/* op(a) @ op(b) over broadcast batch dims, never recorded. */
nnm_status nnm__bmm_raw(nnm_ctx *ctx, int ta, int tb, nnm_tensor *a, nnm_tensor *b, nnm_tensor **out);
/* The gradient of a slice: zeros of `shape` with g copied at `start` along d. */
nnm_status nnm__slice_backward(nnm_ctx *ctx, int32_t ndim, const int64_t *shape, int32_t d, int64_t start,
                               nnm_tensor *g, nnm_tensor **out);
/* A contiguous tensor with t's values (t itself, retained, when it is one). */
nnm_status nnm__contiguous(nnm_ctx *ctx, nnm_tensor *t, nnm_tensor **out);
/* The backend of dev when its vtable has the slot at byte offset `off` (the
 * loader's normalised copy zeroes what an older plugin lacks), else an
 * NNM_E_UNSUPPORTED error naming op and backend. */
nnm_status nnm__backend_slot(nnm_ctx *ctx, nnm_device dev, size_t off, const char *op,
                             nnm__backend **out);
#define NNM__BACKEND_SLOT(ctx, dev, slot, op, out) \
    nnm__backend_slot((ctx), (dev), offsetof(nnm_backend_vtable, slot), (op), (out))
/* ops_norm.c: the normalisation ops of ABI 1.4. batch_norm checks its
 * arguments (see nnm_host.op_batch_norm), runs the backend's fused kernel
 * and records one node; nnm__batch_norm_backward (no recording) writes the
 * gradients wanted (each out pointer NULL: not wanted) from the saved
 * contiguous x, weight (or NULL) and the saved statistics. */
nnm_status nnm__op_batch_norm(nnm_ctx *ctx, nnm_tensor *x, nnm_tensor *running_mean, nnm_tensor *running_var,
                              nnm_tensor *weight, nnm_tensor *bias, const nnm_batch_norm_params *p,
                              nnm_tensor **out);
nnm_status nnm__batch_norm_backward(nnm_ctx *ctx, int training, nnm_tensor *x, nnm_tensor *w, nnm_tensor *mean,
                                    nnm_tensor *invstd, nnm_tensor *g, nnm_tensor **gx, nnm_tensor **gw,
                                    nnm_tensor **gb);
/* ops_norm.c: host->op_layer_norm (ABI 1.5), F.layer_norm of x (+ residual)
 * over the backend's layer_norm slots, one node; nnm__layer_norm_backward
 * (no recording) writes the gradients wanted (NULL: not wanted) from the
 * saved contiguous x, residual (or NULL), weight (or NULL), mean and rstd,
 * with k = normalized_ndim. */
nnm_status nnm__op_layer_norm(nnm_ctx *ctx, nnm_tensor *x, nnm_tensor *residual, nnm_tensor *weight,
                              nnm_tensor *bias, const nnm_layer_norm_params *p, nnm_tensor **out);
nnm_status nnm__layer_norm_backward(nnm_ctx *ctx, int32_t k, double eps, nnm_tensor *x, nnm_tensor *r, nnm_tensor *w,
                                    nnm_tensor *mean, nnm_tensor *rstd, nnm_tensor *g0, nnm_tensor **gx,
                                    nnm_tensor **gw, nnm_tensor **gb);
/* ops_index.c: the ABI 1.5 ops. tensor_from_host copies numel(shape)
 * elements of dtype from host memory into a new tensor on dev (no grad);
 * index_select checks its arguments (see nnm_host.op_index_select), runs the
 * backend's slot or the one-hot gemm and records IndexSelectBackward;
 * nnm__index_add_backward (no recording) is its gradient: zeros of x's shape
 * with g's slices added at the indices idx[0..m) along dim d. */
nnm_status nnm__tensor_from_host(nnm_ctx *ctx, nnm_device dev, int32_t ndim, const int64_t *shape, nnm_dtype dtype,
                                 const void *data, nnm_tensor **out);
nnm_status nnm__op_index_select(nnm_ctx *ctx, nnm_tensor *x, int32_t dim, nnm_tensor *index, nnm_tensor **out);
nnm_status nnm__index_add_backward(nnm_ctx *ctx, nnm_tensor *g, int32_t d, const int64_t *idx, int64_t m,
                                   int32_t ndim, const int64_t *shape, nnm_tensor **out);
/* ops_rnn.c: host->op_rnn (ABI 1.5), one recurrent layer in one direction
 * over a sequence: per step a gemm and the backend's rnn_cell slot; records
 * one node whose backward (BPTT) runs rnn_cell_backward per step. */
nnm_status nnm__op_rnn(nnm_ctx *ctx, const nnm_rnn_params *p, nnm_tensor *gx, nnm_tensor *w_hh, nnm_tensor *b_hh,
                       nnm_tensor *w_hr, nnm_tensor *h0, nnm_tensor *c0, nnm_tensor **y, nnm_tensor **c_n);
/* ops_cast.c: the ABI 1.5 dtype ops (see nnm_host.op_cast, op_detach,
 * op_arg_reduce); none records for autograd. */
nnm_status nnm__op_cast(nnm_ctx *ctx, nnm_tensor *x, nnm_dtype dtype, nnm_tensor **out);
nnm_status nnm__op_detach(nnm_ctx *ctx, nnm_tensor *x, nnm_tensor **out);
nnm_status nnm__op_arg_reduce(nnm_ctx *ctx, int32_t op, nnm_tensor *x, int32_t dim, int keepdim, nnm_tensor **out);
/* ops_ctc.c: host->op_ctc_loss (ABI 1.5), F.ctc_loss's per-sample negative
 * log likelihoods over the backend's ctc_loss slots, one autograd node. */
nnm_status nnm__op_ctc_loss(nnm_ctx *ctx, nnm_tensor *log_probs, nnm_tensor *targets, nnm_tensor *input_lengths,
                            nnm_tensor *target_lengths, const nnm_ctc_params *p, nnm_tensor **out);
/* ops_embedding_bag.c: host->op_embedding_bag (ABI 1.5), F.embedding_bag as
 * one segment reduction over the backend's embedding_bag slots, one autograd
 * node (weight, per_sample_weights). */
nnm_status nnm__op_embedding_bag(nnm_ctx *ctx, nnm_tensor *weight, nnm_tensor *indices, nnm_tensor *offsets,
                                 nnm_tensor *psw, const nnm_embedding_bag_params *p, nnm_tensor **out);
/* ops_attention.c: host->op_attention (ABI 1.5), multi-head attention's core
 * over packed heads through the gemm slot's leading dimensions and the
 * softmax slot; inference only (no node). */
nnm_status nnm__op_attention(nnm_ctx *ctx, nnm_tensor *q, nnm_tensor *k, nnm_tensor *v, nnm_tensor *mask,
                             const nnm_attention_params *p, nnm_tensor **out);

#endif /* NNM_OPS_INTERNAL_H */
