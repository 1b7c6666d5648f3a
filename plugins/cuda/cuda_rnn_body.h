/* plugins/cuda/cuda_rnn_body.h - the per-unit bodies of rnn_cell and
 * rnn_cell_backward (rnn.cu), plain C (see cuda_hd.h): element q = b * H + j
 * of one time step, the cpu backend's gate maths (plugins/cpu/rnn_loops.inc)
 * with libm's tanhf and the overflow-free sigmoid. nnm_rnn_cell_args says
 * which pointers each mode reads and writes (c may alias c_prev: each
 * element is read before it is written). */
#ifndef NNM_CUDA_RNN_BODY_H
#define NNM_CUDA_RNN_BODY_H

#include <nnmod/plugin.h>

#include "cuda_hd.h"

#include <stddef.h>

/* gate blocks per mode */
static inline NNM_CUDA_HD int64_t nnm_cuda_rnn_gates(int32_t mode) {
    return mode == NNM_RNN_LSTM ? 4 : mode == NNM_RNN_GRU ? 3 : 1;
}

static inline NNM_CUDA_HD void nnm_cuda_rnn_fwd_elem(const nnm_rnn_cell_args *a, int64_t q) {
    const int64_t H = a->hidden, G = nnm_cuda_rnn_gates(a->mode);
    const int64_t bi = q / H, j = q % H;
    const float *gx = a->gx + bi * G * H, *gh = a->gh + bi * G * H, *bh = a->b_hh;
    if (a->mode == NNM_RNN_TANH || a->mode == NNM_RNN_RELU) {
        float v = gx[j] + gh[j];
        if (bh != NULL)
            v = v + bh[j];
        a->h[q] = a->mode == NNM_RNN_TANH ? tanhf(v) : (v > 0.0f ? v : (v != v ? v : 0.0f));
        return;
    }
    float *act = a->act != NULL ? a->act + bi * 4 * H : NULL;
    if (a->mode == NNM_RNN_LSTM) {
        float ai = gx[j] + gh[j], af = gx[H + j] + gh[H + j];
        float ag = gx[2 * H + j] + gh[2 * H + j], ao = gx[3 * H + j] + gh[3 * H + j];
        if (bh != NULL) {
            ai += bh[j];
            af += bh[H + j];
            ag += bh[2 * H + j];
            ao += bh[3 * H + j];
        }
        const float i = nnm_cuda_sigmoid(ai), f = nnm_cuda_sigmoid(af);
        const float g = tanhf(ag), o = nnm_cuda_sigmoid(ao);
        const float fc = f * a->c_prev[q], ig = i * g;
        const float cn = fc + ig;
        a->c[q] = cn;
        a->h[q] = o * tanhf(cn);
        if (act != NULL) {
            act[j] = i;
            act[H + j] = f;
            act[2 * H + j] = g;
            act[3 * H + j] = o;
        }
        return;
    }
    /* GRU */
    float ar = gx[j] + gh[j], az = gx[H + j] + gh[H + j], hn = gh[2 * H + j];
    if (bh != NULL) {
        ar += bh[j];
        az += bh[H + j];
        hn += bh[2 * H + j];
    }
    const float r = nnm_cuda_sigmoid(ar), z = nnm_cuda_sigmoid(az);
    const float rh = r * hn;
    const float n = tanhf(gx[2 * H + j] + rh);
    const float zn = (1.0f - z) * n, zh = z * a->h_prev[q];
    a->h[q] = zn + zh;
    if (act != NULL) {
        act[j] = r;
        act[H + j] = z;
        act[2 * H + j] = n;
        act[3 * H + j] = hn;
    }
}

static inline NNM_CUDA_HD void nnm_cuda_rnn_bwd_elem(const nnm_rnn_cell_args *a, int64_t q) {
    const int64_t H = a->hidden, G = nnm_cuda_rnn_gates(a->mode);
    const int64_t bi = q / H, j = q % H;
    float *dgx = a->dgx + bi * G * H;
    const float dh = a->dh[q];
    if (a->mode == NNM_RNN_TANH) {
        const float h = a->h[q];
        dgx[j] = dh * (1.0f - h * h);
        return;
    }
    if (a->mode == NNM_RNN_RELU) {
        dgx[j] = a->h[q] > 0.0f ? dh : 0.0f;
        return;
    }
    const float *act = a->act + bi * 4 * H;
    if (a->mode == NNM_RNN_LSTM) {
        const float i = act[j], f = act[H + j], g = act[2 * H + j], o = act[3 * H + j];
        const float tc = tanhf(a->c[q]);
        const float dtc = dh * o * (1.0f - tc * tc);
        const float dct = a->dc[q] + dtc;
        const float di = dct * g, dg = dct * i, df = dct * a->c_prev[q], dout = dh * tc;
        a->dc[q] = dct * f;
        dgx[j] = di * i * (1.0f - i);
        dgx[H + j] = df * f * (1.0f - f);
        dgx[2 * H + j] = dg * (1.0f - g * g);
        dgx[3 * H + j] = dout * o * (1.0f - o);
        return;
    }
    /* GRU */
    float *dgh = a->dgh + bi * G * H;
    const float r = act[j], z = act[H + j], n = act[2 * H + j], hn = act[3 * H + j];
    const float dan = dh * (1.0f - z) * (1.0f - n * n);
    const float daz = dh * (a->h_prev[q] - n) * z * (1.0f - z);
    const float dar = dan * hn * r * (1.0f - r);
    const float dz = dh * z;
    a->dh_prev[q] += dz;
    dgx[j] = dar;
    dgx[H + j] = daz;
    dgx[2 * H + j] = dan;
    dgh[j] = dar;
    dgh[H + j] = daz;
    dgh[2 * H + j] = dan * r;
}

#endif /* NNM_CUDA_RNN_BODY_H */
