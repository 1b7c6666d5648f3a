/* runtime/core/ops_ctc.c - host->op_ctc_loss (ABI 1.5): F.ctc_loss's
 * per-sample negative log likelihoods as one op over the backend's ctc_loss /
 * ctc_loss_backward slots, and ONE autograd node.
 *
 * As ops_norm.c: check shapes, dtypes, devices and values (the lengths and
 * the targets are read to host memory: PyTorch checks them on the CPU too,
 * and a kernel must never index out of range), normalise the targets to the
 * padded [N, S] layout the slot takes, allocate the outputs and the forward
 * variables (alpha, kept for backward) from the caching allocator, dispatch,
 * record. A backend without the slots gets NNM_E_UNSUPPORTED naming the op
 * and the backend before anything is computed, so the layer can compose the
 * recursion from host ops instead. */
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

static nnm_status same_dev(nnm_ctx *ctx, const char *what, const nnm_tensor *t, const nnm_tensor *lp) {
    if (nnm__device_eq(t->desc.device, lp->desc.device)) return NNM_OK;
    char a[32], b[32];
    return nnm__error(ctx, NNM_E_DEVICE, "ctc_loss: %s is on %s, log_probs on %s", what,
                      nnm__device_name(t->desc.device, a, sizeof a), nnm__device_name(lp->desc.device, b, sizeof b));
}

/* Fills the backend args' sizes. */
static void ctc_args(nnm_ctc_args *a, const nnm_tensor *lp, int64_t s, const nnm_ctc_params *p) {
    memset(a, 0, sizeof *a);
    a->struct_size = sizeof *a;
    a->zero_infinity = p->zero_infinity != 0;
    a->blank = p->blank;
    a->t = lp->shape[0];
    a->n = lp->shape[1];
    a->c = lp->shape[2];
    a->s = s;
}

/* ---- the node ------------------------------------------------------------ */

/* saved: log_probs (contiguous), targets [N, S], input_lengths, target_lengths,
 * nll, alpha; op = zero_infinity, ival = blank */
static nnm_status ctc_backward(nnm_ctx *ctx, nnm__node *n, nnm_tensor *const *gout, nnm_tensor **gin) {
    if (!gout[0] || !(n->next[0].fn || n->next[0].leaf)) return NNM_OK;
    nnm_tensor *lp = n->saved[0], *tg = n->saved[1], *il = n->saved[2], *tl = n->saved[3];
    nnm_tensor *nll = n->saved[4], *alpha = n->saved[5], *g = NULL;
    nnm__backend *be;
    nnm_status st = NNM__BACKEND_SLOT(ctx, lp->desc.device, ctc_loss_backward, "ctc_loss backward", &be);
    if (st) return st;
    if ((st = nnm__contiguous(ctx, gout[0], &g)) ||
        (st = nnm__tensor_alloc(ctx, lp->desc.device, NNM_F32, 3, lp->shape, &gin[0])))
        goto done;
    nnm_ctc_params p = {sizeof p, n->op, n->ival};
    nnm_ctc_args a;
    ctc_args(&a, lp, tg->shape[1], &p);
    a.log_probs = &lp->desc;
    a.targets = &tg->desc;
    a.input_lengths = &il->desc;
    a.target_lengths = &tl->desc;
    a.nll = &nll->desc;
    a.alpha = &alpha->desc;
    a.grad_out = &g->desc;
    a.grad_log_probs = &gin[0]->desc;
    nnm__env env;
    nnm__env_init(&env, ctx, NULL, NNM__PHASE_BACKEND);
    const uint64_t seq = ctx->err_seq;
    st = nnm__backend_check(ctx, be, "ctc_loss_backward", be->vt->ctc_loss_backward(&env.pub, be->state, &a), seq);
done:
    nnm_tensor_release(g);
    if (st) {
        nnm_tensor_release(gin[0]);
        gin[0] = NULL;
    }
    return st;
}

static nnm_status ctc_record(nnm_ctx *ctx, nnm_tensor *log_probs, nnm_tensor *const *keep, const nnm_ctc_params *p,
                             nnm_tensor *out) {
    nnm__node *n = nnm__node_new(ctx, "CtcLossBackward", ctc_backward, &log_probs, 1, 1);
    if (!n) return nnm__error(ctx, NNM_E_NOMEM, "out of memory (autograd node)");
    n->op = p->zero_infinity != 0;
    n->ival = p->blank;
    nnm_status st = NNM_OK;
    for (int i = 0; i < 6 && !st; i++) st = nnm__node_save(n, keep[i]);
    if (!st) nnm__node_attach(n, out, 0);
    nnm__node_release(n);
    return st;
}

/* ---- the op -------------------------------------------------------------- */

nnm_status nnm__op_ctc_loss(nnm_ctx *ctx, nnm_tensor *log_probs, nnm_tensor *targets, nnm_tensor *input_lengths,
                            nnm_tensor *target_lengths, const nnm_ctc_params *p, nnm_tensor **out) {
    *out = NULL;
    if (!p || p->struct_size < sizeof(nnm_ctc_params))
        return nnm__error(ctx, NNM_E_INVALID, "ctc_loss: params are NULL or too small");
    if (!log_probs || !targets || !input_lengths || !target_lengths)
        return nnm__error(ctx, NNM_E_INVALID, "ctc_loss: %s is NULL",
                          !log_probs ? "log_probs" : !targets ? "targets" : !input_lengths ? "input_lengths"
                                                                                          : "target_lengths");
    char s1[128];
    if (!is_f32(log_probs)) return nnm__error(ctx, NNM_E_DTYPE, "ctc_loss: log_probs must be f32");
    if (log_probs->desc.ndim != 3) {
        nnm__shape_str(&log_probs->desc, s1, sizeof s1);
        return nnm__error(ctx, NNM_E_SHAPE, "ctc_loss: log_probs must be [T, N, C], got %s", s1);
    }
    const int64_t T = log_probs->shape[0], N = log_probs->shape[1], C = log_probs->shape[2];
    nnm_tensor *const ints[3] = {targets, input_lengths, target_lengths};
    static const char *const int_names[3] = {"targets", "input_lengths", "target_lengths"};
    nnm_status st;
    for (int i = 0; i < 3; i++) {
        if (!is_i64(ints[i])) return nnm__error(ctx, NNM_E_DTYPE, "ctc_loss: %s must be i64", int_names[i]);
        if ((st = same_dev(ctx, int_names[i], ints[i], log_probs))) return st;
    }
    for (int i = 1; i < 3; i++)
        if (ints[i]->desc.ndim != 1 || ints[i]->shape[0] != N) {
            nnm__shape_str(&ints[i]->desc, s1, sizeof s1);
            return nnm__error(ctx, NNM_E_SHAPE, "ctc_loss: %s must be [%lld] (the batch), got %s", int_names[i],
                              (long long)N, s1);
        }
    if (p->blank < 0 || p->blank >= C)
        return nnm__error(ctx, NNM_E_INVALID, "ctc_loss: blank must be in [0, %lld) (the classes), got %lld",
                          (long long)C, (long long)p->blank);
    const int padded = targets->desc.ndim == 2;
    if (!(padded && targets->shape[0] == N) && targets->desc.ndim != 1) {
        nnm__shape_str(&targets->desc, s1, sizeof s1);
        return nnm__error(ctx, NNM_E_SHAPE,
                          "ctc_loss: targets must be [%lld, S] (padded) or 1-d (concatenated), got %s", (long long)N,
                          s1);
    }
    /* what the kernel must never go past */
    const int64_t n_tg = nnm__numel(targets->desc.ndim, targets->shape);
    int64_t *host = malloc((size_t)(2 * N + n_tg + 1) * sizeof(int64_t));
    if (!host) return nnm__error(ctx, NNM_E_NOMEM, "ctc_loss: out of memory");
    int64_t *il = host, *tl = host + N, *tg = host + 2 * N, *padv = NULL;
    nnm_tensor *lpc = NULL, *tgp = NULL, *ilt = NULL, *tlt = NULL, *nll = NULL, *alpha = NULL;
    if ((st = nnm__tensor_read_i64(input_lengths, il, (size_t)N)) ||
        (st = nnm__tensor_read_i64(target_lengths, tl, (size_t)N)) ||
        (n_tg && (st = nnm__tensor_read_i64(targets, tg, (size_t)n_tg))))
        goto done;
    int64_t S = padded ? targets->shape[1] : 0, sum = 0;
    for (int64_t b = 0; b < N; b++) {
        if (il[b] < 0 || il[b] > T) {
            st = nnm__error(ctx, NNM_E_INVALID, "ctc_loss: input_lengths[%lld] = %lld is not in [0, %lld] (T)",
                            (long long)b, (long long)il[b], (long long)T);
            goto done;
        }
        if (tl[b] < 0 || (padded && tl[b] > S)) {
            st = nnm__error(ctx, NNM_E_INVALID, "ctc_loss: target_lengths[%lld] = %lld is not in [0, %lld]%s",
                            (long long)b, (long long)tl[b], (long long)(padded ? S : INT64_MAX),
                            padded ? " (the targets' width)" : "");
            goto done;
        }
        if (!padded && tl[b] > S) S = tl[b];
        sum += tl[b];
    }
    if (!padded && sum != n_tg) {
        nnm__shape_str(&targets->desc, s1, sizeof s1);
        st = nnm__error(ctx, NNM_E_SHAPE, "ctc_loss: concatenated targets %s must hold the sum of target_lengths, %lld",
                        s1, (long long)sum);
        goto done;
    }
    /* the targets as [N, S], each used entry in [0, C) */
    if (!(padv = calloc((size_t)(N * S + 1), sizeof(int64_t)))) {
        st = nnm__error(ctx, NNM_E_NOMEM, "ctc_loss: out of memory");
        goto done;
    }
    for (int64_t b = 0, at = 0; b < N; b++) {
        for (int64_t k = 0; k < tl[b]; k++) {
            const int64_t v = padded ? tg[b * S + k] : tg[at + k];
            if (v < 0 || v >= C) {
                st = nnm__error(ctx, NNM_E_INVALID, "ctc_loss: target %lld of sample %lld is %lld, not in [0, %lld)",
                                (long long)k, (long long)b, (long long)v, (long long)C);
                goto done;
            }
            padv[b * S + k] = v;
        }
        at += tl[b];
    }
    const int record = nnm__needs_grad(log_probs, NULL, NULL);
    nnm__backend *be;
    if ((st = NNM__BACKEND_SLOT(ctx, log_probs->desc.device, ctc_loss, "ctc_loss", &be)) ||
        (record && (st = NNM__BACKEND_SLOT(ctx, log_probs->desc.device, ctc_loss_backward, "ctc_loss", &be))))
        goto done;
    const nnm_device dev = log_probs->desc.device;
    const int64_t ts[2] = {N, S}, ns[1] = {N}, as[3] = {N, T, 2 * S + 1};
    if ((st = nnm__contiguous(ctx, log_probs, &lpc)) ||
        (st = nnm__tensor_from_host(ctx, dev, 2, ts, I64, padv, &tgp)) ||
        (st = nnm__tensor_from_host(ctx, dev, 1, ns, I64, il, &ilt)) ||
        (st = nnm__tensor_from_host(ctx, dev, 1, ns, I64, tl, &tlt)) ||
        (st = nnm__tensor_alloc(ctx, dev, NNM_F32, 1, ns, &nll)) ||
        (st = nnm__tensor_alloc(ctx, dev, NNM_F32, 3, as, &alpha)))
        goto done;
    nnm_ctc_args a;
    ctc_args(&a, log_probs, S, p);
    a.log_probs = &lpc->desc;
    a.targets = &tgp->desc;
    a.input_lengths = &ilt->desc;
    a.target_lengths = &tlt->desc;
    a.nll = &nll->desc;
    a.alpha = &alpha->desc;
    nnm__env env;
    nnm__env_init(&env, ctx, NULL, NNM__PHASE_BACKEND);
    const uint64_t seq = ctx->err_seq;
    if (!(st = nnm__backend_check(ctx, be, "ctc_loss", be->vt->ctc_loss(&env.pub, be->state, &a), seq)) && record) {
        nnm_tensor *const keep[6] = {lpc, tgp, ilt, tlt, nll, alpha};
        st = ctc_record(ctx, log_probs, keep, p, nll);
    }
done:
    free(host);
    free(padv);
    nnm_tensor_release(lpc);
    nnm_tensor_release(tgp);
    nnm_tensor_release(ilt);
    nnm_tensor_release(tlt);
    nnm_tensor_release(alpha);
    if (st) nnm_tensor_release(nll);
    else *out = nll;
    return st;
}
