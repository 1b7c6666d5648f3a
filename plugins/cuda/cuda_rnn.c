/* plugins/cuda/cuda_rnn.c - rnn_cell and rnn_cell_backward (1.5): checked as
 * the cpu backend's (plugins/cpu/rnn_kernels.inc), one thread per unit
 * (rnn.cu). The args carry raw device pointers: the device is the one the
 * written h (forward) or dgx (backward) is on. */
#include "cuda_ops.h"
#include "cuda_rnn_kernels.h"

static nnm_status cuda_rnn_check(nnm_env *env, const char *op, const nnm_rnn_cell_args *a,
                                 int bwd) {
    if (a == NULL)
        return CUDA_ERR(env, NNM_E_INVALID, "cuda %s: args is NULL", op);
    if (a->struct_size < sizeof(nnm_rnn_cell_args))
        return CUDA_ERR(env, NNM_E_INVALID, "cuda %s: args struct_size %u < %zu", op,
                        (unsigned)a->struct_size, sizeof(nnm_rnn_cell_args));
    if (a->mode < NNM_RNN_TANH || a->mode > NNM_RNN_GRU)
        return CUDA_ERR(env, NNM_E_INVALID, "cuda %s: unknown mode %d", op, (int)a->mode);
    if (a->batch < 0 || a->hidden < 0)
        return CUDA_ERR(env, NNM_E_SHAPE, "cuda %s: negative batch %lld or hidden %lld", op,
                        (long long)a->batch, (long long)a->hidden);
    if (a->batch == 0 || a->hidden == 0)
        return NNM_OK;
    const int lstm = a->mode == NNM_RNN_LSTM, gru = a->mode == NNM_RNN_GRU;
    const char *missing = NULL;
    if (!bwd) {
        if (!a->gx || !a->gh || !a->h) missing = "gx, gh or h";
        else if (lstm && (!a->c_prev || !a->c)) missing = "c_prev or c";
        else if (gru && !a->h_prev) missing = "h_prev";
    } else {
        if (!a->dh || !a->dgx) missing = "dh or dgx";
        else if (!lstm && !gru && !a->h) missing = "h";
        else if (lstm && (!a->c_prev || !a->c || !a->act || !a->dc)) missing = "c_prev, c, act or dc";
        else if (gru && (!a->h_prev || !a->act || !a->dgh || !a->dh_prev))
            missing = "h_prev, act, dgh or dh_prev";
    }
    if (missing)
        return CUDA_ERR(env, NNM_E_INVALID, "cuda %s: %s is NULL (mode %d)", op, missing,
                        (int)a->mode);
    return NNM_OK;
}

nnm_status cuda_rnn_cell(nnm_env *env, void *state, const nnm_rnn_cell_args *a) {
    cuda_state *s = state;
    nnm_status st = cuda_rnn_check(env, "rnn_cell", a, 0);
    if (st != NNM_OK || a->batch == 0 || a->hidden == 0)
        return st;
    if (s == NULL)
        return CUDA_ERR(env, NNM_E_STATE, "cuda rnn_cell: backend not initialised");
    int32_t id = -1;
    if ((st = cuda_raw_device(env, s, "rnn_cell", "h", a->h, &id)) != NNM_OK)
        return st;
    return cuda_launched(env, "rnn_cell", nnm__cuda_launch_rnn_cell(cuda_stream(s, id), a));
}

nnm_status cuda_rnn_cell_backward(nnm_env *env, void *state, const nnm_rnn_cell_args *a) {
    cuda_state *s = state;
    nnm_status st = cuda_rnn_check(env, "rnn_cell_backward", a, 1);
    if (st != NNM_OK || a->batch == 0 || a->hidden == 0)
        return st;
    if (s == NULL)
        return CUDA_ERR(env, NNM_E_STATE, "cuda rnn_cell_backward: backend not initialised");
    int32_t id = -1;
    if ((st = cuda_raw_device(env, s, "rnn_cell_backward", "dgx", a->dgx, &id)) != NNM_OK)
        return st;
    return cuda_launched(env, "rnn_cell_backward",
                         nnm__cuda_launch_rnn_cell_backward(cuda_stream(s, id), a));
}
