/* plugins/recurrent/recurrent.c - torch.nn's recurrent layers: rnn (tanh /
 * relu), lstm (with proj_size), gru, and rnn_cell, lstm_cell, gru_cell.
 *
 * Built from host ops only, so they run on every device whose backend has
 * the ABI 1.5 rnn_cell slots, and get their gradients from the runtime:
 *   - the input projection of every time step is ONE op_linear
 *     (x @ W_ih^T + b_ih over [T, B, I]);
 *   - the recurrence is ONE host->op_rnn per layer and direction: the
 *     runtime runs a gemm and the backend's fused gate kernel per step and
 *     records one autograd node whose backward is back-propagation through
 *     time (runtime/core/ops_rnn.c);
 *   - directions are joined with op_concat, dropout between layers (train
 *     mode, p > 0) is op_rand + op_binary MUL from the call context's
 *     generator, h_n is a slice of each direction's output.
 * Nothing here touches tensor memory.
 *
 * Inputs: x, then optionally h0 (and c0 for lstm); an input with 0
 * elements is absent (PyTorch's None): zeros. Outputs: output, h_n (and c_n
 * for lstm); the caller may ask for fewer. Shapes and state names are
 * PyTorch's (weight_ih_l0, weight_hh_l0_reverse, weight_hr_l1, ...).
 * Packed sequences are not supported. */
#include <nnmod/plugin.h>

#include "layer_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One module's configuration and its parameters (borrowed handles). */
typedef struct rec {
    int32_t mode;                 /* enum nnm_rnn_mode */
    int cell;                     /* rnn_cell, lstm_cell, gru_cell */
    const char *type;             /* "lstm", ... for messages */
    int64_t input_size, hidden_size, num_layers, proj_size;
    int bias, batch_first, bidirectional;
    double dropout;
    int n;                        /* layers x directions */
    nnm_tensor **w_ih, **w_hh, **b_ih, **b_hh, **w_hr; /* n entries each */
} rec;

static int64_t gates(int32_t mode) { return mode == NNM_RNN_LSTM ? 4 : mode == NNM_RNN_GRU ? 3 : 1; }

static void rec_free(rec *s) {
    if (!s) return;
    free(s->w_ih);
    free(s->w_hh);
    free(s->b_ih);
    free(s->b_hh);
    free(s->w_hr);
    free(s);
}

static void rec_destroy(void *self) { rec_free(self); }

/* ---- create ---------------------------------------------------------------- */

static nnm_status create_common(nnm_env *env, void **self, int32_t mode, int cell, const char *type) {
    const nnm_host *h = env->host;
    *self = NULL;
    if (!NNM_HOST_HAS(h, op_rnn) || !NNM_HOST_HAS(h, op_concat) || !NNM_HOST_HAS(h, op_slice) ||
        !NNM_HOST_HAS(h, op_rand) || !NNM_HOST_HAS(h, op_permute))
        return h->set_error(env, NNM_E_VERSION,
                            "%s needs the host slots op_rnn (ABI 1.5), op_concat, op_slice, op_rand and "
                            "op_permute (ABI 1.3); this runtime has ABI %u.%u",
                            type, (unsigned)h->abi_major, (unsigned)h->abi_minor);
    rec *s = calloc(1, sizeof *s);
    if (!s) return h->set_error(env, NNM_E_NOMEM, "%s: out of memory", type);
    s->mode = mode;
    s->cell = cell;
    s->type = type;
    const int64_t one = 1, zero = 0;
    const int yes = 1, no = 0;
    const double dzero = 0.0;
    nnm_status st = NNM_OK;
    if ((st = h->config_int(env, "input_size", NULL, &s->input_size)) ||
        (st = h->config_int(env, "hidden_size", NULL, &s->hidden_size)) ||
        (st = h->config_bool(env, "bias", &yes, &s->bias)))
        goto fail;
    if (!cell) {
        if ((st = h->config_int(env, "num_layers", &one, &s->num_layers)) ||
            (st = h->config_bool(env, "batch_first", &no, &s->batch_first)) ||
            (st = h->config_float(env, "dropout", &dzero, &s->dropout)) ||
            (st = h->config_bool(env, "bidirectional", &no, &s->bidirectional)) ||
            (st = h->config_int(env, "proj_size", &zero, &s->proj_size)))
            goto fail;
    } else {
        s->num_layers = 1;
    }
    if (mode == NNM_RNN_TANH) { /* rnn and rnn_cell: nonlinearity picks TANH or RELU */
        const char *nl = NULL;
        if ((st = h->config_str(env, "nonlinearity", "tanh", &nl))) goto fail;
        if (strcmp(nl, "relu") == 0) s->mode = NNM_RNN_RELU;
        else if (strcmp(nl, "tanh") != 0) {
            st = h->set_error(env, NNM_E_INVALID, "%s: unknown nonlinearity '%s' (\"tanh\" or \"relu\")", type, nl);
            goto fail;
        }
    }
    if (s->input_size < 0 || s->hidden_size <= 0 || s->num_layers <= 0) {
        st = h->set_error(env, NNM_E_INVALID,
                          "%s: input_size must be >= 0 and hidden_size and num_layers > 0 (got %lld, %lld, %lld)",
                          type, (long long)s->input_size, (long long)s->hidden_size, (long long)s->num_layers);
        goto fail;
    }
    if (!(s->dropout >= 0.0 && s->dropout <= 1.0)) {
        st = h->set_error(env, NNM_E_INVALID, "%s: dropout should be a number in range [0, 1] representing the "
                          "probability of an element being zeroed, got %g", type, s->dropout);
        goto fail;
    }
    if (s->proj_size < 0 || (s->proj_size > 0 && s->proj_size >= s->hidden_size)) {
        st = h->set_error(env, NNM_E_INVALID, "%s: proj_size has to be %s (got %lld, hidden_size %lld)", type,
                          s->proj_size < 0 ? "a positive integer" : "smaller than hidden_size",
                          (long long)s->proj_size, (long long)s->hidden_size);
        goto fail;
    }
    if (s->proj_size > 0 && mode != NNM_RNN_LSTM) {
        st = h->set_error(env, NNM_E_INVALID, "%s: proj_size argument is only supported for LSTM, not RNN or GRU",
                          type);
        goto fail;
    }
    const int D = s->bidirectional ? 2 : 1;
    if (s->input_size > ((int64_t)1 << 40) || s->hidden_size > ((int64_t)1 << 40)) { /* 4 * hidden_size stays in int64 */
        st = h->set_error(env, NNM_E_LIMIT, "%s: input_size %lld or hidden_size %lld is more than 2^40", type,
                          (long long)s->input_size, (long long)s->hidden_size);
        goto fail;
    }
    if (s->num_layers > 100000) {
        st = h->set_error(env, NNM_E_LIMIT, "%s: num_layers %lld is more than 100000", type,
                          (long long)s->num_layers);
        goto fail;
    }
    s->n = (int)s->num_layers * D;
    s->w_ih = calloc((size_t)s->n, sizeof *s->w_ih);
    s->w_hh = calloc((size_t)s->n, sizeof *s->w_hh);
    s->b_ih = calloc((size_t)s->n, sizeof *s->b_ih);
    s->b_hh = calloc((size_t)s->n, sizeof *s->b_hh);
    s->w_hr = calloc((size_t)s->n, sizeof *s->w_hr);
    if (!s->w_ih || !s->w_hh || !s->b_ih || !s->b_hh || !s->w_hr) {
        st = h->set_error(env, NNM_E_NOMEM, "%s: out of memory", type);
        goto fail;
    }
    /* PyTorch's order (_flat_weights_names) and init: every parameter
     * U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)) */
    const double k = 1.0 / sqrt((double)s->hidden_size);
    const int64_t H = s->hidden_size, GH = gates(mode) * H, P = s->proj_size > 0 ? s->proj_size : H;
    for (int l = 0; l < s->num_layers; l++) {
        for (int d = 0; d < D; d++) {
            const int i = l * D + d;
            char sfx[48], name[64];
            if (cell) sfx[0] = '\0';
            else snprintf(sfx, sizeof sfx, "_l%d%s", l, d ? "_reverse" : "");
            const int64_t in = l == 0 ? s->input_size : P * D;
            const int64_t wih[2] = {GH, in}, whh[2] = {GH, P}, bsh[1] = {GH}, whr[2] = {P, H};
            snprintf(name, sizeof name, "weight_ih%s", sfx);
            if ((st = h->param_new(env, name, 2, wih, NNM_INIT_UNIFORM, -k, k, &s->w_ih[i]))) goto fail;
            snprintf(name, sizeof name, "weight_hh%s", sfx);
            if ((st = h->param_new(env, name, 2, whh, NNM_INIT_UNIFORM, -k, k, &s->w_hh[i]))) goto fail;
            if (s->bias) {
                snprintf(name, sizeof name, "bias_ih%s", sfx);
                if ((st = h->param_new(env, name, 1, bsh, NNM_INIT_UNIFORM, -k, k, &s->b_ih[i]))) goto fail;
                snprintf(name, sizeof name, "bias_hh%s", sfx);
                if ((st = h->param_new(env, name, 1, bsh, NNM_INIT_UNIFORM, -k, k, &s->b_hh[i]))) goto fail;
            }
            if (s->proj_size > 0) {
                snprintf(name, sizeof name, "weight_hr%s", sfx);
                if ((st = h->param_new(env, name, 2, whr, NNM_INIT_UNIFORM, -k, k, &s->w_hr[i]))) goto fail;
            }
        }
    }
    *self = s;
    return NNM_OK;
fail:
    rec_free(s);
    return st;
}

static nnm_status rnn_create(nnm_env *env, void **self) { return create_common(env, self, NNM_RNN_TANH, 0, "rnn"); }
static nnm_status lstm_create(nnm_env *env, void **self) { return create_common(env, self, NNM_RNN_LSTM, 0, "lstm"); }
static nnm_status gru_create(nnm_env *env, void **self) { return create_common(env, self, NNM_RNN_GRU, 0, "gru"); }
static nnm_status rnn_cell_create(nnm_env *env, void **self) {
    return create_common(env, self, NNM_RNN_TANH, 1, "rnn_cell");
}
static nnm_status lstm_cell_create(nnm_env *env, void **self) {
    return create_common(env, self, NNM_RNN_LSTM, 1, "lstm_cell");
}
static nnm_status gru_cell_create(nnm_env *env, void **self) {
    return create_common(env, self, NNM_RNN_GRU, 1, "gru_cell");
}

/* ---- forward helpers --------------------------------------------------------- */

static void rel(nnm_env *env, nnm_tensor *t) { env->host->tensor_release(t); }

/* The optional input i: NULL when not passed or with 0 elements (None). */
static nnm_tensor *optional_in(nnm_env *env, nnm_tensor *const *in, uint32_t n_in, uint32_t i) {
    if (i >= n_in || !in[i]) return NULL;
    return nnm_lu_numel(env->host->tensor_desc(in[i])) == 0 ? NULL : in[i];
}

/* Checks that t is [d0, d1, d2] (ndim 3) or [d0, d2] (ndim 2, unbatched). */
static nnm_status check_state(nnm_env *env, const rec *s, const char *what, nnm_tensor *t, int batched, int64_t d0,
                              int64_t d1, int64_t d2) {
    const nnm_tensor_desc *d = env->host->tensor_desc(t);
    const int ok = batched ? d->ndim == 3 && d->shape[0] == d0 && d->shape[1] == d1 && d->shape[2] == d2
                           : d->ndim == 2 && d->shape[0] == d0 && d->shape[1] == d2;
    if (ok) return NNM_OK;
    char got[128];
    nnm_lu_shape_str(d, got, sizeof got);
    if (batched)
        return env->host->set_error(env, NNM_E_SHAPE, "%s: expected %s of size [%lld, %lld, %lld], got %s", s->type,
                                    what, (long long)d0, (long long)d1, (long long)d2, got);
    return env->host->set_error(env, NNM_E_SHAPE, "%s: for unbatched 2-D input, %s should also be 2-D: expected "
                                "[%lld, %lld], got %s", s->type, what, (long long)d0, (long long)d2, got);
}

/* torch.cat of n tensors along dim, n any (op_concat takes up to 16 at a
 * time; more are joined in groups). */
static nnm_status cat_many(nnm_env *env, nnm_tensor **xs, int n, int32_t dim, nnm_tensor **out) {
    const nnm_host *h = env->host;
    if (n <= NNM_MAX_IO) return h->op_concat(env, xs, (uint32_t)n, dim, out);
    nnm_tensor *parts[NNM_MAX_IO] = {0};
    int np = 0;
    nnm_status st = NNM_OK;
    for (int i = 0; i < n && !st; i += NNM_MAX_IO, np++) {
        const int m = n - i < NNM_MAX_IO ? n - i : NNM_MAX_IO;
        st = h->op_concat(env, xs + i, (uint32_t)m, dim, &parts[np]);
    }
    if (!st) st = cat_many(env, parts, np, dim, out);
    for (int i = 0; i < np; i++) rel(env, parts[i]);
    return st;
}

/* t (any shape) reshaped to ndim dims. */
static nnm_status reshape(nnm_env *env, nnm_tensor *t, int32_t ndim, const int64_t *shape, nnm_tensor **out) {
    return env->host->op_reshape(env, t, ndim, shape, out);
}

/* Slice i of t along dim 0 reshaped to [d1, d2], or NULL when t is. */
static nnm_status state_of(nnm_env *env, nnm_tensor *t, int i, int64_t d1, int64_t d2, nnm_tensor **out) {
    *out = NULL;
    if (!t) return NNM_OK;
    nnm_tensor *sl = NULL;
    const int64_t shape[2] = {d1, d2};
    nnm_status st = env->host->op_slice(env, t, 0, i, 1, &sl);
    if (!st) st = reshape(env, sl, 2, shape, out);
    rel(env, sl);
    return st;
}

/* ---- forward: rnn, lstm, gru ---------------------------------------------- */

static nnm_status seq_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in, nnm_tensor **out,
                              uint32_t n_out) {
    const nnm_host *h = env->host;
    const rec *s = self;
    const int lstm = s->mode == NNM_RNN_LSTM;
    const uint32_t max_in = lstm ? 3 : 2, max_out = lstm ? 3 : 2;
    if (n_in < 1 || n_in > max_in || n_out < 1 || n_out > max_out)
        return h->set_error(env, NNM_E_SHAPE, "%s takes 1 to %u inputs (x, h0%s) and gives 1 to %u outputs (output, "
                            "h_n%s); got %u and %u", s->type, max_in, lstm ? ", c0" : "", max_out,
                            lstm ? ", c_n" : "", n_in, n_out);
    const nnm_tensor_desc *xd = h->tensor_desc(in[0]);
    char got[128];
    if ((xd->ndim != 2 && xd->ndim != 3) || xd->shape[xd->ndim - 1] != s->input_size)
        return h->set_error(env, NNM_E_SHAPE, "%s: expected input [T, N, %lld] (batch_first: [N, T, %lld]) or "
                            "unbatched [T, %lld], got %s", s->type, (long long)s->input_size,
                            (long long)s->input_size, (long long)s->input_size,
                            nnm_lu_shape_str(xd, got, sizeof got));
    const int batched = xd->ndim == 3;
    const int D = s->bidirectional ? 2 : 1;
    const int64_t H = s->hidden_size, P = s->proj_size > 0 ? s->proj_size : H, LD = s->n;
    const int64_t T = batched && s->batch_first ? xd->shape[1] : xd->shape[0];
    const int64_t B = batched ? (s->batch_first ? xd->shape[0] : xd->shape[1]) : 1;
    if (T < 1)
        return h->set_error(env, NNM_E_SHAPE, "%s: the sequence is empty (%s)", s->type,
                            nnm_lu_shape_str(xd, got, sizeof got));
    nnm_tensor *h0in = optional_in(env, in, n_in, 1), *c0in = lstm ? optional_in(env, in, n_in, 2) : NULL;
    nnm_status st = NNM_OK;
    if (h0in && (st = check_state(env, s, lstm ? "h0" : "hidden", h0in, batched, LD, B, P))) return st;
    if (c0in && (st = check_state(env, s, "c0", c0in, batched, LD, B, H))) return st;

    nnm_tensor *x = NULL, *h0 = NULL, *c0 = NULL, *layer = NULL;
    nnm_tensor **hn = calloc((size_t)LD, sizeof *hn), **cn = calloc((size_t)LD, sizeof *cn);
    if (!hn || !cn) {
        st = h->set_error(env, NNM_E_NOMEM, "%s: out of memory", s->type);
        goto done;
    }
    /* time-major [T, B, I] */
    if (!batched) {
        const int64_t sh[3] = {T, 1, s->input_size};
        st = reshape(env, in[0], 3, sh, &x);
    } else if (s->batch_first) {
        const int32_t perm[3] = {1, 0, 2};
        st = h->op_permute(env, in[0], perm, 3, &x);
    } else {
        h->tensor_retain(in[0]);
        x = in[0];
    }
    if (st) goto done;
    if (h0in && !batched) {
        const int64_t sh[3] = {LD, 1, P};
        if ((st = reshape(env, h0in, 3, sh, &h0))) goto done;
    } else if (h0in) {
        h->tensor_retain(h0in);
        h0 = h0in;
    }
    if (c0in && !batched) {
        const int64_t sh[3] = {LD, 1, H};
        if ((st = reshape(env, c0in, 3, sh, &c0))) goto done;
    } else if (c0in) {
        h->tensor_retain(c0in);
        c0 = c0in;
    }
    layer = x;
    x = NULL;
    const int train = h->is_training(env);
    for (int l = 0; l < s->num_layers; l++) {
        nnm_tensor *ys[2] = {NULL, NULL};
        for (int d = 0; d < D && !st; d++) {
            const int i = l * D + d;
            nnm_tensor *gx = NULL, *hi = NULL, *ci = NULL, *c_n = NULL;
            nnm_rnn_params p = {sizeof p, s->mode, d, 0};
            if (!(st = h->op_linear(env, layer, s->w_ih[i], s->b_ih[i], &gx)) &&
                !(st = state_of(env, h0, i, B, P, &hi)) && !(st = state_of(env, c0, i, B, H, &ci)))
                st = h->op_rnn(env, &p, gx, s->w_hh[i], s->b_hh[i], s->w_hr[i], hi, ci, &ys[d], lstm ? &c_n : NULL);
            if (!st) st = h->op_slice(env, ys[d], 0, d ? 0 : T - 1, 1, &hn[i]);
            if (!st && lstm) {
                const int64_t sh[3] = {1, B, H};
                st = reshape(env, c_n, 3, sh, &cn[i]);
            }
            rel(env, gx);
            rel(env, hi);
            rel(env, ci);
            rel(env, c_n);
        }
        nnm_tensor *next = NULL;
        if (!st) {
            if (D == 2) st = h->op_concat(env, ys, 2, 2, &next);
            else {
                next = ys[0];
                ys[0] = NULL;
            }
        }
        rel(env, ys[0]);
        rel(env, ys[1]);
        if (!st && train && s->dropout > 0.0 && l < s->num_layers - 1) {
            nnm_tensor *mask = NULL, *dropped = NULL;
            if (s->dropout >= 1.0) {
                st = h->op_unary(env, NNM_UNARY_SCALE, next, 0.0, &dropped);
            } else {
                const nnm_tensor_desc *nd = h->tensor_desc(next);
                if (!(st = h->op_rand(env, NNM_RAND_BERNOULLI, 1.0 - s->dropout, 1.0 / (1.0 - s->dropout), nd->ndim,
                                      nd->shape, &mask)))
                    st = h->op_binary(env, NNM_BINARY_MUL, next, mask, &dropped);
            }
            rel(env, mask);
            rel(env, next);
            next = dropped;
        }
        rel(env, layer);
        layer = next;
        if (st) goto done;
    }
    /* output */
    if (!batched) {
        const int64_t sh[2] = {T, D * P};
        st = reshape(env, layer, 2, sh, &out[0]);
    } else if (s->batch_first) {
        const int32_t perm[3] = {1, 0, 2};
        st = h->op_permute(env, layer, perm, 3, &out[0]);
    } else {
        h->tensor_retain(layer);
        out[0] = layer;
    }
    for (uint32_t k = 1; k < n_out && !st; k++) {
        nnm_tensor *all = NULL;
        const int64_t w = k == 1 ? P : H;
        if (!(st = cat_many(env, k == 1 ? hn : cn, (int)LD, 0, &all))) {
            if (batched) {
                out[k] = all;
                all = NULL;
            } else {
                const int64_t sh[2] = {LD, w};
                st = reshape(env, all, 2, sh, &out[k]);
            }
        }
        rel(env, all);
    }
    if (st)
        for (uint32_t k = 0; k < n_out; k++) {
            rel(env, out[k]);
            out[k] = NULL;
        }
done:
    rel(env, x);
    rel(env, h0);
    rel(env, c0);
    rel(env, layer);
    for (int64_t i = 0; i < LD; i++) {
        if (hn) rel(env, hn[i]);
        if (cn) rel(env, cn[i]);
    }
    free(hn);
    free(cn);
    return st;
}

/* ---- forward: rnn_cell, lstm_cell, gru_cell -------------------------------- */

static nnm_status cell_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in, nnm_tensor **out,
                               uint32_t n_out) {
    const nnm_host *h = env->host;
    const rec *s = self;
    const int lstm = s->mode == NNM_RNN_LSTM;
    const uint32_t max_in = lstm ? 3 : 2, max_out = lstm ? 2 : 1;
    if (n_in < 1 || n_in > max_in || n_out < 1 || n_out > max_out)
        return h->set_error(env, NNM_E_SHAPE, "%s takes 1 to %u inputs (x, h%s) and gives %s; got %u inputs and %u "
                            "outputs", s->type, max_in, lstm ? ", c" : "", lstm ? "1 or 2 outputs (h', c')" : "1 output",
                            n_in, n_out);
    const nnm_tensor_desc *xd = h->tensor_desc(in[0]);
    char got[128];
    if ((xd->ndim != 1 && xd->ndim != 2) || xd->shape[xd->ndim - 1] != s->input_size)
        return h->set_error(env, NNM_E_SHAPE, "%s: expected input [N, %lld] or unbatched [%lld], got %s", s->type,
                            (long long)s->input_size, (long long)s->input_size,
                            nnm_lu_shape_str(xd, got, sizeof got));
    const int batched = xd->ndim == 2;
    const int64_t H = s->hidden_size, B = batched ? xd->shape[0] : 1, GH = gates(s->mode) * H;
    nnm_tensor *hin = optional_in(env, in, n_in, 1), *cin = lstm ? optional_in(env, in, n_in, 2) : NULL;
    nnm_tensor *const states[2] = {hin, cin};
    for (int k = 0; k < 2; k++) {
        if (!states[k]) continue;
        const nnm_tensor_desc *d = h->tensor_desc(states[k]);
        if (d->ndim != xd->ndim || d->shape[d->ndim - 1] != H || (batched && d->shape[0] != B)) {
            char want[64];
            if (batched) snprintf(want, sizeof want, "[%lld, %lld]", (long long)B, (long long)H);
            else snprintf(want, sizeof want, "[%lld]", (long long)H);
            return h->set_error(env, NNM_E_SHAPE, "%s: expected %s of size %s for input %s, got %s", s->type,
                                k ? "c" : "h", want, nnm_lu_shape_str(xd, got, sizeof got),
                                nnm_lu_shape_str(d, got + 64, sizeof got - 64));
        }
    }
    const int64_t xs[2] = {B, s->input_size}, gs[3] = {1, B, GH}, hs[2] = {B, H}, ys1[1] = {H};
    nnm_tensor *x2 = NULL, *gx = NULL, *gx3 = NULL, *h2 = NULL, *c2 = NULL, *y = NULL, *c_n = NULL;
    nnm_status st = reshape(env, in[0], 2, xs, &x2);
    if (!st && hin) st = reshape(env, hin, 2, hs, &h2);
    if (!st && cin) st = reshape(env, cin, 2, hs, &c2);
    if (!st) st = h->op_linear(env, x2, s->w_ih[0], s->b_ih[0], &gx);
    if (!st) st = reshape(env, gx, 3, gs, &gx3);
    nnm_rnn_params p = {sizeof p, s->mode, 0, 0};
    if (!st) st = h->op_rnn(env, &p, gx3, s->w_hh[0], s->b_hh[0], NULL, h2, c2, &y, lstm ? &c_n : NULL);
    if (!st) st = batched ? reshape(env, y, 2, hs, &out[0]) : reshape(env, y, 1, ys1, &out[0]);
    if (!st && n_out > 1) st = batched ? reshape(env, c_n, 2, hs, &out[1]) : reshape(env, c_n, 1, ys1, &out[1]);
    if (st)
        for (uint32_t k = 0; k < n_out; k++) {
            rel(env, out[k]);
            out[k] = NULL;
        }
    rel(env, x2);
    rel(env, gx);
    rel(env, gx3);
    rel(env, h2);
    rel(env, c2);
    rel(env, y);
    rel(env, c_n);
    return st;
}

/* ---- extra_repr ------------------------------------------------------------ */

static int rec_extra_repr(void *self, char *buf, size_t cap) {
    const rec *s = self;
    char tmp[512];
    size_t at = 0;
#define ADD(...)                                                                   \
    do {                                                                           \
        int k_ = snprintf(tmp + at, sizeof tmp - at, __VA_ARGS__);                 \
        if (k_ > 0) at = at + (size_t)k_ < sizeof tmp ? at + (size_t)k_ : sizeof tmp - 1; \
    } while (0)
    ADD("%lld, %lld", (long long)s->input_size, (long long)s->hidden_size);
    if (s->cell) {
        if (!s->bias) ADD(", bias=False");
        if (s->mode == NNM_RNN_RELU) ADD(", nonlinearity=relu");
    } else {
        if (s->proj_size) ADD(", proj_size=%lld", (long long)s->proj_size);
        if (s->num_layers != 1) ADD(", num_layers=%lld", (long long)s->num_layers);
        if (!s->bias) ADD(", bias=False");
        if (s->batch_first) ADD(", batch_first=True");
        if (s->dropout != 0.0) {
            char f[40]; /* PyTorch keeps float(dropout): 1 prints as 1.0 */
            nnm_lu_pyfloat(f, sizeof f, s->dropout);
            ADD(", dropout=%s", f);
        }
        if (s->bidirectional) ADD(", bidirectional=True");
    }
#undef ADD
    return snprintf(buf, cap, "%s", tmp);
}

/* ---- tables ---------------------------------------------------------------- */

#define SEQ_FIELDS                                                                                   \
    {"input_size", NNM_CONFIG_INT, NNM_CONFIG_REQUIRED, "features of x"},                            \
    {"hidden_size", NNM_CONFIG_INT, NNM_CONFIG_REQUIRED, "features of h"},                           \
    {"num_layers", NNM_CONFIG_INT, 0, "stacked layers (1)"},                                         \
    {"bias", NNM_CONFIG_BOOL, 0, "bias_ih and bias_hh (true)"},                                      \
    {"batch_first", NNM_CONFIG_BOOL, 0, "x and output are [N, T, *] instead of [T, N, *] (false)"},  \
    {"dropout", NNM_CONFIG_FLOAT, 0, "dropout on every layer's output but the last, train mode (0)"}, \
    {"bidirectional", NNM_CONFIG_BOOL, 0, "a reverse direction too (false)"},                        \
    {"proj_size", NNM_CONFIG_INT, 0, "LSTM only: h projected to this size by weight_hr (0: none)"}

static const nnm_config_field rnn_config[] = {
    SEQ_FIELDS,
    {"nonlinearity", NNM_CONFIG_STR, 0, "\"tanh\" (default) or \"relu\""},
};
static const nnm_config_field lstm_gru_config[] = {SEQ_FIELDS};
static const nnm_config_field rnn_cell_config[] = {
    {"input_size", NNM_CONFIG_INT, NNM_CONFIG_REQUIRED, "features of x"},
    {"hidden_size", NNM_CONFIG_INT, NNM_CONFIG_REQUIRED, "features of h"},
    {"bias", NNM_CONFIG_BOOL, 0, "bias_ih and bias_hh (true)"},
    {"nonlinearity", NNM_CONFIG_STR, 0, "\"tanh\" (default) or \"relu\""},
};
static const nnm_config_field cell_config[] = {
    {"input_size", NNM_CONFIG_INT, NNM_CONFIG_REQUIRED, "features of x"},
    {"hidden_size", NNM_CONFIG_INT, NNM_CONFIG_REQUIRED, "features of h"},
    {"bias", NNM_CONFIG_BOOL, 0, "bias_ih and bias_hh (true)"},
};

#define LAYER(var, nm, disp, cr, fw, cfg)                                                            \
    static const nnm_layer_vtable var = {                                                            \
        .struct_size = sizeof(nnm_layer_vtable),                                                     \
        .name = nm,                                                                                  \
        .display_name = disp,                                                                        \
        .version_major = 1,                                                                          \
        .version_minor = 0,                                                                          \
        .version_patch = 0,                                                                          \
        .n_inputs = NNM_ARITY_ANY,                                                                   \
        .n_outputs = NNM_ARITY_ANY,                                                                  \
        .create = cr,                                                                                \
        .destroy = rec_destroy,                                                                      \
        .forward = fw,                                                                               \
        .extra_repr = rec_extra_repr,                                                                \
        .config_fields = cfg,                                                                        \
        .n_config_fields = sizeof cfg / sizeof cfg[0],                                               \
    }

LAYER(rnn_layer, "rnn", "RNN", rnn_create, seq_forward, rnn_config);
LAYER(lstm_layer, "lstm", "LSTM", lstm_create, seq_forward, lstm_gru_config);
LAYER(gru_layer, "gru", "GRU", gru_create, seq_forward, lstm_gru_config);
LAYER(rnn_cell_layer, "rnn_cell", "RNNCell", rnn_cell_create, cell_forward, rnn_cell_config);
LAYER(lstm_cell_layer, "lstm_cell", "LSTMCell", lstm_cell_create, cell_forward, cell_config);
LAYER(gru_cell_layer, "gru_cell", "GRUCell", gru_cell_create, cell_forward, cell_config);

static const nnm_layer_vtable *const rec_layers[] = {&rnn_layer,      &lstm_layer,      &gru_layer,
                                                     &rnn_cell_layer, &lstm_cell_layer, &gru_cell_layer};

static const nnm_plugin_desc rec_plugin = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
    .name = "recurrent",
    .description = "Recurrent layers (torch.nn.RNN, LSTM, GRU and their cells): one op_linear for the input "
                   "projection and one fused op_rnn per layer and direction",
    .n_layers = 6,
    .n_backends = 0,
    .layers = rec_layers,
    .backends = NULL,
    .domain = NNM_DOMAIN_NNMOD, /* nnmod's own library: the plain names */
};

NNM_PLUGIN_DEFINE(rec_plugin)
