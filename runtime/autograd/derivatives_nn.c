/* runtime/autograd/derivatives_nn.c - what the ABI 1.3 (and 1.4) ops record for
 * autograd, and their backward (as derivatives.c: written with the runtime's
 * own ops, run with grad mode off). */
#include <string.h>

#include "internal.h"


static int wants(const nnm__node *n, uint32_t i) { return n->next[i].fn || n->next[i].leaf; }

static void keep_shape(nnm__node *n, int slot, const nnm_tensor *t) {
    n->in_ndim[slot] = t->desc.ndim;
    memcpy(n->in_shape[slot], t->shape, (size_t)t->desc.ndim * sizeof(int64_t));
}

static nnm_status oom(nnm_ctx *ctx) { return nnm__error(ctx, NNM_E_NOMEM, "out of memory (autograd node)"); }

/* ---- bmm ---------------------------------------------------------------- */

/* saved[0] = a, saved[1] = b; in_shape = their shapes */
static nnm_status bmm_backward(nnm_ctx *ctx, nnm__node *n, nnm_tensor *const *gout, nnm_tensor **gin) {
    nnm_tensor *g = gout[0], *a = n->saved[0], *b = n->saved[1], *full = NULL, *a2 = NULL, *g2 = NULL;
    if (!g) return NNM_OK;
    nnm_status st = NNM_OK;
    if (wants(n, 0) && !(st = nnm__bmm_raw(ctx, 0, 1, g, b, &full))) { /* g @ b^T */
        st = nnm__sum_to(ctx, full, n->in_ndim[0], n->in_shape[0], &gin[0]);
        nnm_tensor_release(full);
        full = NULL;
    }
    if (!st && wants(n, 1)) {
        if (b->desc.ndim == 2) { /* shared b: a^T @ g over every row at once */
            int64_t k = a->shape[a->desc.ndim - 1], nn = g->shape[g->desc.ndim - 1];
            int64_t sa[2] = {nnm_tensor_numel(a) / (k ? k : 1), k}, sg[2] = {sa[0], nn};
            if (k == 0) sa[0] = sg[0] = nnm__numel(a->desc.ndim - 1, a->shape);
            if (!(st = nnm__op_reshape(ctx, a, 2, sa, &a2)) && !(st = nnm__op_reshape(ctx, g, 2, sg, &g2)))
                st = nnm__bmm_raw(ctx, 1, 0, a2, g2, &gin[1]);
        } else if (!(st = nnm__bmm_raw(ctx, 1, 0, a, g, &full))) {
            st = nnm__sum_to(ctx, full, n->in_ndim[1], n->in_shape[1], &gin[1]);
        }
    }
    nnm_tensor_release(full);
    nnm_tensor_release(a2);
    nnm_tensor_release(g2);
    return st;
}

nnm_status nnm__record_bmm(nnm_ctx *ctx, nnm_tensor *a, nnm_tensor *b, nnm_tensor *ac, nnm_tensor *bc,
                           nnm_tensor *y) {
    nnm_tensor *in[2] = {a, b};
    nnm__node *n = nnm__node_new(ctx, "BmmBackward", bmm_backward, in, 2, 1);
    if (!n) return oom(ctx);
    keep_shape(n, 0, a);
    keep_shape(n, 1, b);
    nnm_status st = nnm__node_save(n, ac);
    if (!st) st = nnm__node_save(n, bc);
    if (!st) nnm__node_attach(n, y, 0);
    nnm__node_release(n);
    return st;
}

/* ---- permute, concat, slice --------------------------------------------- */

/* u.sizes = the permutation; ival = ndim */
static nnm_status permute_backward(nnm_ctx *ctx, nnm__node *n, nnm_tensor *const *gout, nnm_tensor **gin) {
    if (!gout[0] || !wants(n, 0)) return NNM_OK;
    int32_t inv[NNM_MAX_DIMS];
    for (int32_t i = 0; i < (int32_t)n->ival; i++) inv[n->u.sizes[i]] = i;
    return nnm__op_permute(ctx, gout[0], inv, (int32_t)n->ival, &gin[0]);
}

nnm_status nnm__record_permute(nnm_ctx *ctx, nnm_tensor *x, const int32_t *perm, nnm_tensor *y) {
    nnm__node *n = nnm__node_new(ctx, "PermuteBackward", permute_backward, &x, 1, 1);
    if (!n) return oom(ctx);
    n->ival = x->desc.ndim;
    for (int32_t i = 0; i < x->desc.ndim; i++) n->u.sizes[i] = perm[i];
    nnm__node_attach(n, y, 0);
    nnm__node_release(n);
    return NNM_OK;
}

/* u.sizes = each input's size along dim; ival = dim */
static nnm_status concat_backward(nnm_ctx *ctx, nnm__node *n, nnm_tensor *const *gout, nnm_tensor **gin) {
    nnm_tensor *g = gout[0];
    if (!g) return NNM_OK;
    int64_t at = 0;
    nnm_status st = NNM_OK;
    for (uint32_t i = 0; i < n->n_in && !st; i++) {
        if (wants(n, i)) st = nnm__op_slice(ctx, g, (int32_t)n->ival, at, n->u.sizes[i], &gin[i]);
        at += n->u.sizes[i];
    }
    return st;
}

nnm_status nnm__record_concat(nnm_ctx *ctx, nnm_tensor *const *xs, uint32_t count, int32_t dim, nnm_tensor *y) {
    nnm__node *n = nnm__node_new(ctx, "CatBackward", concat_backward, xs, count, 1);
    if (!n) return oom(ctx);
    n->ival = dim;
    for (uint32_t i = 0; i < count; i++) n->u.sizes[i] = xs[i]->shape[dim];
    nnm__node_attach(n, y, 0);
    nnm__node_release(n);
    return NNM_OK;
}

/* ival = dim, u.sizes[0] = start, in_shape[0] = x's shape */
static nnm_status slice_backward(nnm_ctx *ctx, nnm__node *n, nnm_tensor *const *gout, nnm_tensor **gin) {
    if (!gout[0] || !wants(n, 0)) return NNM_OK;
    nnm_tensor *g = NULL;
    nnm_status st = nnm__contiguous(ctx, gout[0], &g);
    if (!st) st = nnm__slice_backward(ctx, n->in_ndim[0], n->in_shape[0], (int32_t)n->ival, n->u.sizes[0], g, &gin[0]);
    nnm_tensor_release(g);
    return st;
}

nnm_status nnm__record_slice(nnm_ctx *ctx, nnm_tensor *x, int32_t dim, int64_t start, nnm_tensor *y) {
    nnm__node *n = nnm__node_new(ctx, "SliceBackward", slice_backward, &x, 1, 1);
    if (!n) return oom(ctx);
    n->ival = dim;
    n->u.sizes[0] = start;
    keep_shape(n, 0, x);
    nnm__node_attach(n, y, 0);
    nnm__node_release(n);
    return NNM_OK;
}

/* ---- softmax ------------------------------------------------------------ */

/* saved[0] = y; ival = dim; op = log */
static nnm_status softmax_backward(nnm_ctx *ctx, nnm__node *n, nnm_tensor *const *gout, nnm_tensor **gin) {
    nnm_tensor *g = gout[0], *y = n->saved[0], *t = NULL, *s = NULL, *u = NULL;
    if (!g || !wants(n, 0)) return NNM_OK;
    int32_t d = (int32_t)n->ival;
    nnm_status st;
    if (n->op) { /* g - exp(y) * sum(g) */
        if (!(st = nnm__op_unary(ctx, NNM_UNARY_EXP, y, 0, &t)) &&
            !(st = nnm__op_reduce(ctx, NNM_REDUCE_SUM, g, &d, 1, 1, &s)) &&
            !(st = nnm__op_binary(ctx, NNM_BINARY_MUL, t, s, &u)))
            st = nnm__op_binary(ctx, NNM_BINARY_SUB, g, u, &gin[0]);
    } else { /* y * (g - sum(g * y)) */
        if (!(st = nnm__op_binary(ctx, NNM_BINARY_MUL, g, y, &t)) &&
            !(st = nnm__op_reduce(ctx, NNM_REDUCE_SUM, t, &d, 1, 1, &s)) &&
            !(st = nnm__op_binary(ctx, NNM_BINARY_SUB, g, s, &u)))
            st = nnm__op_binary(ctx, NNM_BINARY_MUL, y, u, &gin[0]);
    }
    nnm_tensor_release(t);
    nnm_tensor_release(s);
    nnm_tensor_release(u);
    return st;
}

nnm_status nnm__record_softmax(nnm_ctx *ctx, nnm_tensor *x, int32_t dim, int log, nnm_tensor *y) {
    nnm__node *n = nnm__node_new(ctx, log ? "LogSoftmaxBackward" : "SoftmaxBackward", softmax_backward, &x, 1, 1);
    if (!n) return oom(ctx);
    n->ival = dim;
    n->op = log;
    nnm_status st = nnm__node_save(n, y);
    if (!st) nnm__node_attach(n, y, 0);
    nnm__node_release(n);
    return st;
}

/* ---- where -------------------------------------------------------------- */

/* saved[0] = cond; in_shape = a's and b's shapes */
static nnm_status where_backward(nnm_ctx *ctx, nnm__node *n, nnm_tensor *const *gout, nnm_tensor **gin) {
    nnm_tensor *g = gout[0], *cond = n->saved[0], *zero = NULL, *full = NULL;
    if (!g) return NNM_OK;
    int64_t one[1] = {1};
    nnm_status st = nnm__op_full(ctx, g->desc.device, 1, one, 0.0, &zero);
    for (uint32_t i = 0; i < 2 && !st; i++) {
        if (!wants(n, i)) continue;
        st = i == 0 ? nnm__op_where(ctx, cond, g, zero, &full) : nnm__op_where(ctx, cond, zero, g, &full);
        if (!st) st = nnm__sum_to(ctx, full, n->in_ndim[i], n->in_shape[i], &gin[i]);
        nnm_tensor_release(full);
        full = NULL;
    }
    nnm_tensor_release(zero);
    return st;
}

nnm_status nnm__record_where(nnm_ctx *ctx, nnm_tensor *cond, nnm_tensor *a, nnm_tensor *b, nnm_tensor *y) {
    nnm_tensor *in[2] = {a, b};
    nnm__node *n = nnm__node_new(ctx, "WhereBackward", where_backward, in, 2, 1);
    if (!n) return oom(ctx);
    keep_shape(n, 0, a);
    keep_shape(n, 1, b);
    nnm_status st = nnm__node_save(n, cond);
    if (!st) nnm__node_attach(n, y, 0);
    nnm__node_release(n);
    return st;
}

/* ---- convolution and pooling -------------------------------------------- */

/* saved[0] = x, saved[1] = w (contiguous); u.conv; ival = has bias.
 *
 * As linear_backward: the parameters' gradients come first and are handed
 * to the engine at once (nnm__node_emit), so DDP starts their bucket's
 * all-reduce before the input's gradient (the larger part) is computed; the
 * weight's gradient is written straight into DDP's bucket view where the
 * engine offers it (nnm__node_grad_dest, overwrite case): no temporary, no
 * copy into the bucket. */
static nnm_status conv_backward(nnm_ctx *ctx, nnm__node *n, nnm_tensor *const *gout, nnm_tensor **gin) {
    nnm_tensor *g = gout[0], *x = n->saved[0], *w = n->saved[1];
    if (!g) return NNM_OK;
    nnm_status st = NNM_OK;
    if (wants(n, 1)) {
        nnm_tensor *ops[3] = {g, x, w};
        int acc = 0;
        nnm_tensor *dest = nnm__node_grad_dest(ctx, n, 1, ops, 3, &acc);
        if (dest && !acc) {
            if (!(st = nnm__conv_backward(ctx, &n->u.conv, x, w, g, NULL, NULL, dest)))
                st = nnm__node_grad_dest_done(ctx, n, 1, dest);
        } else if (!(st = nnm__conv_backward(ctx, &n->u.conv, x, w, g, NULL, &gin[1], NULL))) {
            st = nnm__node_emit(ctx, n, 1, gin[1]);
        }
    }
    if (!st && n->ival && wants(n, 2)) { /* sum over every dim but the channels */
        int32_t dims[NNM_MAX_DIMS];
        uint32_t nd = 0;
        for (int32_t i = 0; i < g->desc.ndim; i++)
            if (i != 1) dims[nd++] = i;
        if (!(st = nnm__op_reduce(ctx, NNM_REDUCE_SUM, g, dims, nd, 0, &gin[2]))) st = nnm__node_emit(ctx, n, 2, gin[2]);
    }
    if (!st && wants(n, 0)) st = nnm__conv_backward(ctx, &n->u.conv, x, w, g, &gin[0], NULL, NULL);
    return st;
}

nnm_status nnm__record_conv(nnm_ctx *ctx, nnm_tensor *x, nnm_tensor *w, nnm_tensor *b, nnm_tensor *xc,
                            nnm_tensor *wc, const nnm_conv_params *p, nnm_tensor *y) {
    nnm_tensor *in[3] = {x, w, b};
    nnm__node *n = nnm__node_new(ctx, p->transposed ? "ConvolutionTransposeBackward" : "ConvolutionBackward",
                                 conv_backward, in, b ? 3 : 2, 1);
    if (!n) return oom(ctx);
    n->u.conv = *p;
    n->ival = b != NULL;
    nnm_status st = nnm__node_save(n, xc);
    if (!st) st = nnm__node_save(n, wc);
    if (!st) nnm__node_attach(n, y, 0);
    nnm__node_release(n);
    return st;
}

/* saved[0] = x (contiguous); u.pool */
static nnm_status pool_backward(nnm_ctx *ctx, nnm__node *n, nnm_tensor *const *gout, nnm_tensor **gin) {
    if (!gout[0] || !wants(n, 0)) return NNM_OK;
    return nnm__pool_backward(ctx, &n->u.pool, n->saved[0], gout[0], &gin[0]);
}

nnm_status nnm__record_pool(nnm_ctx *ctx, nnm_tensor *x, nnm_tensor *xc, const nnm_pool_params *p, nnm_tensor *y) {
    static const char *const names[] = {"MaxPoolBackward", "AvgPoolBackward", "AdaptiveAvgPoolBackward"};
    nnm__node *n = nnm__node_new(ctx, names[p->op], pool_backward, &x, 1, 1);
    if (!n) return oom(ctx);
    n->u.pool = *p;
    nnm_status st = nnm__node_save(n, xc);
    if (!st) nnm__node_attach(n, y, 0);
    nnm__node_release(n);
    return st;
}

/* ---- batch normalisation (1.4) ------------------------------------------ */

/* saved[0] = x (contiguous), saved[1] = mean, saved[2] = invstd, saved[3] =
 * weight (contiguous) when ival; op = training */
static nnm_status batch_norm_backward(nnm_ctx *ctx, nnm__node *n, nnm_tensor *const *gout, nnm_tensor **gin) {
    if (!gout[0] || !(wants(n, 0) || wants(n, 1) || wants(n, 2))) return NNM_OK;
    return nnm__batch_norm_backward(ctx, n->op, n->saved[0], n->ival ? n->saved[3] : NULL, n->saved[1], n->saved[2],
                                    gout[0], wants(n, 0) ? &gin[0] : NULL, wants(n, 1) ? &gin[1] : NULL,
                                    wants(n, 2) ? &gin[2] : NULL);
}

nnm_status nnm__record_batch_norm(nnm_ctx *ctx, nnm_tensor *x, nnm_tensor *weight, nnm_tensor *bias,
                                  nnm_tensor *xc, nnm_tensor *wc, nnm_tensor *mean, nnm_tensor *invstd,
                                  int training, nnm_tensor *y) {
    nnm_tensor *in[3] = {x, weight, bias};
    nnm__node *n = nnm__node_new(ctx, "NativeBatchNormBackward", batch_norm_backward, in, 3, 1);
    if (!n) return oom(ctx);
    n->op = training != 0;
    n->ival = wc != NULL;
    nnm_status st = nnm__node_save(n, xc);
    if (!st) st = nnm__node_save(n, mean);
    if (!st) st = nnm__node_save(n, invstd);
    if (!st && wc) st = nnm__node_save(n, wc);
    if (!st) nnm__node_attach(n, y, 0);
    nnm__node_release(n);
    return st;
}

/* ---- index_select (1.5) ------------------------------------------------- */

/* saved[0] = the indices (i64 [m], host memory); ival = dim; in_shape[0] = x's shape */
static nnm_status index_select_backward(nnm_ctx *ctx, nnm__node *n, nnm_tensor *const *gout, nnm_tensor **gin) {
    if (!gout[0] || !wants(n, 0)) return NNM_OK;
    const nnm_tensor *it = n->saved[0];
    const int64_t *idx = (const int64_t *)(const void *)((const char *)it->desc.data + it->desc.byte_offset);
    return nnm__index_add_backward(ctx, gout[0], (int32_t)n->ival, idx, it->shape[0], n->in_ndim[0], n->in_shape[0],
                                   &gin[0]);
}

nnm_status nnm__record_index_select(nnm_ctx *ctx, nnm_tensor *x, int32_t dim, const int64_t *idx, int64_t m,
                                    nnm_tensor *y) {
    nnm_tensor *it = NULL;
    const nnm_dtype i64 = {NNM_DTYPE_INT, 64, 1};
    nnm_status st = nnm__tensor_from_host(ctx, (nnm_device){NNM_DEVICE_CPU, 0}, 1, &m, i64, idx, &it);
    if (st) return st;
    nnm__node *n = nnm__node_new(ctx, "IndexSelectBackward", index_select_backward, &x, 1, 1);
    if (!n) {
        nnm_tensor_release(it);
        return oom(ctx);
    }
    n->ival = dim;
    keep_shape(n, 0, x);
    st = nnm__node_save(n, it);
    if (!st) nnm__node_attach(n, y, 0);
    nnm__node_release(n);
    nnm_tensor_release(it);
    return st;
}
