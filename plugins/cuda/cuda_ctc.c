/* plugins/cuda/cuda_ctc.c - ctc_loss and ctc_loss_backward (1.5): checked
 * as the cpu backend's (plugins/cpu/ctc_kernels.inc; the runtime checked
 * lengths and targets), one thread per sample (ctc.cu); the backward's beta
 * and per-class sums live in scratch memory. */
#include "cuda_ctc_kernels.h"
#include "cuda_ops.h"

static nnm_status cuda_ctc_check(nnm_env *env, cuda_state *s, const char *op,
                                 const nnm_ctc_args *a, int backward, int32_t *id) {
    if (a == NULL || a->struct_size < sizeof(nnm_ctc_args))
        return CUDA_ERR(env, NNM_E_INVALID, "cuda %s: args are NULL or too small", op);
    if (s == NULL)
        return CUDA_ERR(env, NNM_E_STATE, "cuda %s: backend not initialised", op);
    if (a->t < 0 || a->n < 0 || a->c < 0 || a->s < 0)
        return CUDA_ERR(env, NNM_E_INVALID, "cuda %s: bad sizes", op);
    const nnm_tensor_desc *f[4] = {a->log_probs, a->nll, a->alpha,
                                   backward ? a->grad_log_probs : a->nll};
    const nnm_tensor_desc *i[3] = {a->targets, a->input_lengths, a->target_lengths};
    int64_t n = 0;
    for (int k = 0; k < 4; k++) {
        nnm_status st = cuda_check_desc(env, s, op, "f32", f[k], id, &n);
        if (st != NNM_OK)
            return st;
        if (!cuda_is_contiguous(f[k]))
            return CUDA_ERR(env, NNM_E_INVALID, "cuda %s: tensors must be contiguous", op);
    }
    for (int k = 0; k < 3; k++) {
        nnm_status st = cuda_check_desc_dt(env, s, op, "i64", i[k], CUDA_DT_I64, id, &n);
        if (st != NNM_OK)
            return st;
        if (!cuda_is_contiguous(i[k]))
            return CUDA_ERR(env, NNM_E_INVALID, "cuda %s: tensors must be contiguous", op);
    }
    if (backward) {
        nnm_status st = cuda_check_desc(env, s, op, "grad_out", a->grad_out, id, &n);
        if (st != NNM_OK)
            return st;
    }
    return NNM_OK;
}

static nnm_cuda_ctc cuda_ctc_plan(const nnm_ctc_args *a, int backward) {
    nnm_cuda_ctc P;
    memset(&P, 0, sizeof P);
    P.t = a->t;
    P.n = a->n;
    P.c = a->c;
    P.s = a->s;
    P.blank = a->blank;
    P.zero_infinity = a->zero_infinity != 0;
    P.lp = cuda_bytes(a->log_probs);
    P.tgs = cuda_bytes(a->targets);
    P.il = cuda_bytes(a->input_lengths);
    P.tl = cuda_bytes(a->target_lengths);
    P.nll = cuda_bytes(a->nll);
    P.alpha = cuda_bytes(a->alpha);
    if (backward) {
        P.go = cuda_bytes(a->grad_out);
        P.go_stride = a->grad_out->ndim == 1 ? a->grad_out->strides[0] : 0;
        P.grad = cuda_bytes(a->grad_log_probs);
    }
    return P;
}

nnm_status cuda_ctc_loss(nnm_env *env, void *state, const nnm_ctc_args *a) {
    cuda_state *s = state;
    int32_t id = -1;
    nnm_status st = cuda_ctc_check(env, s, "ctc_loss", a, 0, &id);
    if (st != NNM_OK || a->n == 0)
        return st;
    if ((st = cuda_use(env, "ctc_loss", id)) != NNM_OK)
        return st;
    const nnm_cuda_ctc P = cuda_ctc_plan(a, 0);
    return cuda_launched(env, "ctc_loss", nnm__cuda_launch_ctc_loss(cuda_stream(s, id), &P));
}

nnm_status cuda_ctc_loss_backward(nnm_env *env, void *state, const nnm_ctc_args *a) {
    cuda_state *s = state;
    int32_t id = -1;
    nnm_status st = cuda_ctc_check(env, s, "ctc_loss_backward", a, 1, &id);
    if (st != NNM_OK || a->n == 0)
        return st;
    if ((st = cuda_use(env, "ctc_loss_backward", id)) != NNM_OK)
        return st;
    nnm_cuda_ctc P = cuda_ctc_plan(a, 1);
    const int64_t per = 2 * (2 * a->s + 1) + a->c;
    if (per > INT64_MAX / 4 / a->n)
        return CUDA_ERR(env, NNM_E_LIMIT, "cuda ctc_loss_backward: workspace too large");
    void *work = NULL;
    if ((st = cuda_scratch_get(env, s, id, (size_t)(a->n * per) * sizeof(float), &work)) != NNM_OK)
        return st;
    P.work = work;
    st = cuda_launched(env, "ctc_loss_backward",
                       nnm__cuda_launch_ctc_loss_backward(cuda_stream(s, id), &P));
    cuda_scratch_put(s, id, work);
    return st;
}
