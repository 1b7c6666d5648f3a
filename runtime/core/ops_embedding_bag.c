/* runtime/core/ops_embedding_bag.c - host->op_embedding_bag (ABI 1.5):
 * F.embedding_bag as one op over the backend's embedding_bag /
 * embedding_bag_backward slots (a segment reduction of weight rows), and ONE
 * autograd node.
 *
 * As ops_ctc.c: check dtypes, shapes and devices, read the offsets and the
 * indices to host memory and check every value a kernel indexes with (PyTorch
 * checks them on the CPU too; a kernel must never go out of range), hand the
 * kernel the offsets normalised to bags + 1 entries ending at n, allocate the
 * output (and, for max, the argmax rows backward routes with) from the caching
 * allocator, dispatch, record. A backend without the slots gets
 * NNM_E_UNSUPPORTED naming the op and the backend before anything is
 * computed, so the layer composes the bags from host ops instead. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static int is_f32(const nnm_tensor *t) {
    return t->desc.dtype.code == NNM_DTYPE_FLOAT && t->desc.dtype.bits == 32 && t->desc.dtype.lanes == 1;
}

static int is_i64(const nnm_tensor *t) {
    return t->desc.dtype.code == NNM_DTYPE_INT && t->desc.dtype.bits == 64 && t->desc.dtype.lanes == 1;
}

static const nnm_dtype I64 = {NNM_DTYPE_INT, 64, 1};

static nnm_status same_dev(nnm_ctx *ctx, const char *what, const nnm_tensor *t, const nnm_tensor *w) {
    if (nnm__device_eq(t->desc.device, w->desc.device)) return NNM_OK;
    char a[32], b[32];
    return nnm__error(ctx, NNM_E_DEVICE, "embedding_bag: %s is on %s, weight on %s", what,
                      nnm__device_name(t->desc.device, a, sizeof a), nnm__device_name(w->desc.device, b, sizeof b));
}

/* Fills the backend args' sizes. */
static void bag_args(nnm_embedding_bag_args *a, int32_t mode, int64_t padding_idx, const nnm_tensor *w, int64_t n,
                     int64_t bags) {
    memset(a, 0, sizeof *a);
    a->struct_size = sizeof *a;
    a->mode = mode;
    a->padding_idx = padding_idx;
    a->num_embeddings = w->shape[0];
    a->dim = w->shape[1];
    a->n = n;
    a->bags = bags;
}

/* ---- the node ------------------------------------------------------------ */

/* inputs: weight, per_sample_weights (or NULL); saved: weight, indices [n],
 * offsets [bags + 1], per_sample_weights [n] (or NULL), arg (max; or NULL);
 * op = mode, ival = padding_idx (-1: none), in_shape[1] = psw's shape */
static nnm_status bag_backward(nnm_ctx *ctx, nnm__node *n, nnm_tensor *const *gout, nnm_tensor **gin) {
    const int want_w = n->next[0].fn || n->next[0].leaf, want_p = n->next[1].fn || n->next[1].leaf;
    if (!gout[0] || !(want_w || want_p)) return NNM_OK;
    nnm_tensor *w = n->saved[0], *idx = n->saved[1], *off = n->saved[2], *psw = n->saved[3], *arg = n->saved[4];
    nnm_tensor *g = NULL, *gp = NULL;
    nnm__backend *be;
    nnm_status st = NNM__BACKEND_SLOT(ctx, w->desc.device, embedding_bag_backward, "embedding_bag backward", &be);
    if (st) return st;
    const int64_t nn = idx->shape[0], bags = off->shape[0] - 1;
    if ((st = nnm__contiguous(ctx, gout[0], &g)) ||
        (want_w && (st = nnm__op_full(ctx, w->desc.device, 2, w->shape, 0.0, &gin[0]))) ||
        (want_p && psw && (st = nnm__tensor_alloc(ctx, w->desc.device, NNM_F32, 1, &nn, &gp))))
        goto done;
    nnm_embedding_bag_args a;
    bag_args(&a, n->op, n->ival, w, nn, bags);
    a.weight = &w->desc;
    a.indices = &idx->desc;
    a.offsets = &off->desc;
    a.per_sample_weights = psw ? &psw->desc : NULL;
    a.arg = arg ? &arg->desc : NULL;
    a.grad_out = &g->desc;
    a.grad_weight = want_w ? &gin[0]->desc : NULL;
    a.grad_per_sample_weights = gp ? &gp->desc : NULL;
    nnm__env env;
    nnm__env_init(&env, ctx, NULL, NNM__PHASE_BACKEND);
    st = be->vt->embedding_bag_backward(&env.pub, be->state, &a);
    if (!st && gp) st = nnm__op_reshape(ctx, gp, n->in_ndim[1], n->in_shape[1], &gin[1]);
done:
    nnm_tensor_release(g);
    nnm_tensor_release(gp);
    if (st) {
        nnm_tensor_release(gin[0]);
        nnm_tensor_release(gin[1]);
        gin[0] = gin[1] = NULL;
    }
    return st;
}

static nnm_status bag_record(nnm_ctx *ctx, nnm_tensor *weight, nnm_tensor *psw_in, nnm_tensor *const *keep,
                             int32_t mode, int64_t padding_idx, nnm_tensor *out) {
    nnm_tensor *ins[2] = {weight, psw_in};
    nnm__node *n = nnm__node_new(ctx, "EmbeddingBagBackward", bag_backward, ins, 2, 1);
    if (!n) return nnm__error(ctx, NNM_E_NOMEM, "out of memory (autograd node)");
    n->op = mode;
    n->ival = padding_idx;
    n->n_saved = 5; /* slots left NULL are skipped */
    if (psw_in) {
        n->in_ndim[1] = psw_in->desc.ndim;
        memcpy(n->in_shape[1], psw_in->shape, sizeof(int64_t) * (size_t)psw_in->desc.ndim);
    }
    nnm_status st = NNM_OK;
    for (uint32_t i = 0; i < 5 && !st; i++)
        if (keep[i]) st = nnm__node_save_at(n, i, keep[i]);
    if (!st) nnm__node_attach(n, out, 0);
    nnm__node_release(n);
    return st;
}

/* ---- the op -------------------------------------------------------------- */

/* The offsets as bags + 1 entries ending at n, checked (PyTorch's messages). */
static nnm_status bag_offsets(nnm_ctx *ctx, nnm_tensor *offsets, int64_t n, int64_t n2d, int last_offset,
                              int64_t **out, int64_t *bags) {
    int64_t n_off = offsets ? offsets->shape[0] : n2d;
    if (last_offset && n_off < 1)
        return nnm__error(ctx, NNM_E_SHAPE, "embedding_bag: include_last_offset needs at least one offset, got none");
    const int64_t B = last_offset ? n_off - 1 : n_off;
    int64_t *off = malloc(sizeof(int64_t) * (size_t)(B + 1 > n_off ? B + 1 : n_off));
    if (!off) return nnm__error(ctx, NNM_E_NOMEM, "embedding_bag: out of memory");
    nnm_status st = NNM_OK;
    if (offsets) {
        if (n_off && (st = nnm__tensor_read_i64(offsets, off, (size_t)n_off))) goto fail;
    } else {
        const int64_t N = n2d ? n / n2d : 0;
        for (int64_t b = 0; b < n_off; b++) off[b] = b * N;
    }
    if (n_off > 0 && off[0] != 0) {
        st = nnm__error(ctx, NNM_E_INVALID,
                        "embedding_bag: offsets[0] has to be 0, i.e., the first sequence in the mini-batch has to "
                        "start from position 0. However, got %lld", (long long)off[0]);
        goto fail;
    }
    for (int64_t b = 0; b < n_off; b++) {
        if (off[b] > n) {
            st = nnm__error(ctx, NNM_E_INVALID,
                            "embedding_bag: offsets[%lld] can not be greater than input's length %lld but got %lld",
                            (long long)b, (long long)n, (long long)off[b]);
            goto fail;
        }
        if (b > 0 && off[b] < off[b - 1]) {
            st = nnm__error(ctx, NNM_E_INVALID,
                            "embedding_bag: offsets must be non-decreasing, got offsets[%lld] = %lld after %lld",
                            (long long)b, (long long)off[b], (long long)off[b - 1]);
            goto fail;
        }
    }
    if (last_offset && off[n_off - 1] != n) {
        /* PyTorch 1.13 leaves trailing indices out of the forward and reads
         * past its buffers in backward: refused */
        st = nnm__error(ctx, NNM_E_INVALID,
                        "embedding_bag: with include_last_offset the last offset must be the input's length %lld "
                        "(the end of the last bag), got %lld", (long long)n, (long long)off[n_off - 1]);
        goto fail;
    }
    off[B] = n;
    *out = off;
    *bags = B;
    return NNM_OK;
fail:
    free(off);
    return st;
}

nnm_status nnm__op_embedding_bag(nnm_ctx *ctx, nnm_tensor *weight, nnm_tensor *indices, nnm_tensor *offsets,
                                 nnm_tensor *psw, const nnm_embedding_bag_params *p, nnm_tensor **out) {
    *out = NULL;
    if (!p || p->struct_size < sizeof(nnm_embedding_bag_params))
        return nnm__error(ctx, NNM_E_INVALID, "embedding_bag: params are NULL or too small");
    if (!weight || !indices) return nnm__error(ctx, NNM_E_INVALID, "embedding_bag: %s is NULL", weight ? "indices" : "weight");
    char s1[128], s2[128];
    if (!is_f32(weight) || weight->desc.ndim != 2) {
        nnm__shape_str(&weight->desc, s1, sizeof s1);
        return nnm__error(ctx, is_f32(weight) ? NNM_E_SHAPE : NNM_E_DTYPE,
                          "embedding_bag: weight must be f32 [num_embeddings, dim], got %s", s1);
    }
    if (p->mode != NNM_REDUCE_SUM && p->mode != NNM_REDUCE_MEAN && p->mode != NNM_REDUCE_MAX)
        return nnm__error(ctx, NNM_E_INVALID, "embedding_bag: mode must be sum, mean or max (enum nnm_reduce_op), got %d",
                          (int)p->mode);
    const int64_t V = weight->shape[0];
    if (p->has_padding_idx && (p->padding_idx < 0 || p->padding_idx >= V))
        return nnm__error(ctx, NNM_E_INVALID, "embedding_bag: padding_idx %lld is not in [0, %lld)",
                          (long long)p->padding_idx, (long long)V);
    if (!is_i64(indices)) return nnm__error(ctx, NNM_E_DTYPE, "embedding_bag: indices must be i64");
    nnm_status st;
    if ((st = same_dev(ctx, "indices", indices, weight))) return st;
    const int two_d = indices->desc.ndim == 2;
    if (!two_d && indices->desc.ndim != 1) {
        nnm__shape_str(&indices->desc, s1, sizeof s1);
        return nnm__error(ctx, NNM_E_SHAPE, "embedding_bag: indices must be 1-d (with offsets) or 2-d, got %s", s1);
    }
    if (two_d == (offsets != NULL))
        return nnm__error(ctx, NNM_E_INVALID, two_d ? "embedding_bag: a 2-d input takes no offsets"
                                                    : "embedding_bag: a 1-d input needs offsets");
    if (two_d && p->include_last_offset)
        return nnm__error(ctx, NNM_E_INVALID, "embedding_bag: include_last_offset takes a 1-d input with offsets");
    if (offsets) {
        if (!is_i64(offsets)) return nnm__error(ctx, NNM_E_DTYPE, "embedding_bag: offsets must be i64");
        if ((st = same_dev(ctx, "offsets", offsets, weight))) return st;
        if (offsets->desc.ndim != 1) {
            nnm__shape_str(&offsets->desc, s1, sizeof s1);
            return nnm__error(ctx, NNM_E_SHAPE, "embedding_bag: offsets must be 1-d, got %s", s1);
        }
    }
    if (psw) {
        if (!is_f32(psw)) return nnm__error(ctx, NNM_E_DTYPE, "embedding_bag: per_sample_weights must be f32");
        if ((st = same_dev(ctx, "per_sample_weights", psw, weight))) return st;
        int same = psw->desc.ndim == indices->desc.ndim;
        for (int32_t k = 0; same && k < psw->desc.ndim; k++) same = psw->shape[k] == indices->shape[k];
        if (!same) {
            nnm__shape_str(&psw->desc, s1, sizeof s1);
            nnm__shape_str(&indices->desc, s2, sizeof s2);
            return nnm__error(ctx, NNM_E_SHAPE,
                              "embedding_bag: per_sample_weights %s must have the shape of the indices %s", s1, s2);
        }
        if (p->mode != NNM_REDUCE_SUM)
            return nnm__error(ctx, NNM_E_INVALID, "embedding_bag: per_sample_weights is only supported for mode sum");
    }
    const int record = nnm__needs_grad(weight, psw, NULL);
    nnm__backend *be;
    if ((st = NNM__BACKEND_SLOT(ctx, weight->desc.device, embedding_bag, "embedding_bag", &be)) ||
        (record && (st = NNM__BACKEND_SLOT(ctx, weight->desc.device, embedding_bag_backward, "embedding_bag", &be))))
        return st;
    const int64_t n = nnm__numel(indices->desc.ndim, indices->shape), D = weight->shape[1];
    int64_t *off = NULL, *idx = NULL, B = 0;
    nnm_tensor *idx_t = NULL, *off_t = NULL, *psw_t = NULL, *y = NULL, *arg = NULL;
    if ((st = bag_offsets(ctx, offsets, n, two_d ? indices->shape[0] : 0, p->include_last_offset != 0, &off, &B)))
        return st;
    const int cpu_direct = indices->desc.device.type == NNM_DEVICE_CPU && nnm__tensor_is_contiguous(indices);
    if (cpu_direct) {
        idx = n ? (int64_t *)((char *)indices->desc.data + indices->desc.byte_offset) : NULL;
    } else if (!(idx = malloc(sizeof(int64_t) * (size_t)(n ? n : 1)))) {
        st = nnm__error(ctx, NNM_E_NOMEM, "embedding_bag: out of memory");
        goto done;
    } else if (n && (st = nnm__tensor_read_i64(indices, idx, (size_t)n))) {
        goto done;
    }
    for (int64_t i = 0; i < n; i++)
        if (idx[i] < 0 || idx[i] >= V) {
            st = nnm__error(ctx, NNM_E_INVALID, "embedding_bag: index %lld (element %lld) is out of range for %lld embeddings",
                            (long long)idx[i], (long long)i, (long long)V);
            goto done;
        }
    const nnm_device dev = weight->desc.device;
    const int64_t flat[1] = {n}, bo[1] = {B + 1}, ys[2] = {B, D};
    if ((st = nnm__contiguous(ctx, weight, &y)))
        goto done;
    nnm_tensor *wc = y;
    y = NULL;
    if (cpu_direct)
        st = nnm__tensor_view(indices, 1, flat, NULL, &idx_t); /* read in place: no copy */
    else
        st = nnm__tensor_from_host(ctx, dev, 1, flat, I64, idx, &idx_t);
    if (!st) st = nnm__tensor_from_host(ctx, dev, 1, bo, I64, off, &off_t);
    if (!st && psw) {
        nnm_tensor *pc = NULL;
        if (!(st = nnm__contiguous(ctx, psw, &pc))) {
            nnm_tensor *pv = NULL;
            st = nnm__tensor_view(pc, 1, flat, NULL, &pv);
            psw_t = pv;
        }
        nnm_tensor_release(pc);
    }
    if (!st) st = nnm__tensor_alloc(ctx, dev, NNM_F32, 2, ys, &y);
    if (!st && p->mode == NNM_REDUCE_MAX) st = nnm__tensor_alloc(ctx, dev, I64, 2, ys, &arg);
    if (!st) {
        nnm_embedding_bag_args a;
        const int64_t pad = p->has_padding_idx ? p->padding_idx : -1;
        bag_args(&a, p->mode, pad, wc, n, B);
        a.weight = &wc->desc;
        a.indices = &idx_t->desc;
        a.offsets = &off_t->desc;
        a.per_sample_weights = psw_t ? &psw_t->desc : NULL;
        a.out = &y->desc;
        a.arg = arg ? &arg->desc : NULL;
        nnm__env env;
        nnm__env_init(&env, ctx, NULL, NNM__PHASE_BACKEND);
        if (!(st = be->vt->embedding_bag(&env.pub, be->state, &a)) && record) {
            nnm_tensor *const keep[5] = {wc, idx_t, off_t, psw_t, arg};
            st = bag_record(ctx, weight, psw, keep, p->mode, pad, y);
        }
    }
    nnm_tensor_release(wc);
done:
    if (!cpu_direct) free(idx);
    free(off);
    nnm_tensor_release(idx_t);
    nnm_tensor_release(off_t);
    nnm_tensor_release(psw_t);
    nnm_tensor_release(arg);
    if (st) nnm_tensor_release(y);
    else *out = y;
    return st;
}
