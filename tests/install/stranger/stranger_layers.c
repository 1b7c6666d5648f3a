/* stranger_layers.c - a third-party plugin written from docs/writing-a-plugin.md,
 * docs/abi.md and the installed nnmod/plugin.h alone (tests/install/stranger).
 *
 * Three layers, domain "stranger":
 *   scaled_tanh       y = scale * tanh(x), `scale` a learned [1] parameter,
 *                     with a hand-written backward (one autograd node);
 *   scaled_tanh_auto  the same maths composed of host ops (autograd for free);
 *   track_mean        y = x - mean: the batch mean over the leading dims in
 *                     training (folded into the persistent buffer
 *                     `running_mean`, and the i64 counter `num_batches_tracked`
 *                     counts the batches), `running_mean` in eval mode.
 */
#include <stdio.h>
#include <stdlib.h>

#include "nnmod/plugin.h"

/* ---- scaled_tanh (own backward) and scaled_tanh_auto (composed) ---------- */

typedef struct scaled_tanh {
    double init;
    nnm_tensor *scale; /* borrowed from the module */
} scaled_tanh;

static const nnm_config_field scaled_tanh_config[] = {
    {"init_scale", NNM_CONFIG_FLOAT, 0, "the scale's initial value (default 1)"},
};

static nnm_status scaled_tanh_create(nnm_env *env, void **self) {
    const nnm_host *h = env->host;
    const double one = 1.0;
    const int64_t shape[1] = {1};
    double init;
    nnm_status st;
    /* 1.1 slots (custom backward), 1.3 (ADD_SCALAR): checked before use */
    if (!NNM_HOST_HAS(h, save_for_backward) || !NNM_HOST_HAS(h, op_reduce) ||
        !NNM_HOST_HAS(h, op_full))
        return h->set_error(env, NNM_E_VERSION, "scaled_tanh: needs a host of ABI 1.3 or later");
    if ((st = h->config_float(env, "init_scale", &one, &init)) != NNM_OK)
        return st;
    scaled_tanh *s = calloc(1, sizeof *s);
    if (!s)
        return h->set_error(env, NNM_E_NOMEM, "scaled_tanh: out of memory");
    s->init = init;
    st = h->param_new(env, "scale", 1, shape, NNM_INIT_CONSTANT, init, 0.0, &s->scale);
    if (st != NNM_OK) {
        free(s);
        return st;
    }
    *self = s;
    return NNM_OK;
}

static void scaled_tanh_destroy(void *self) { free(self); }

static int scaled_tanh_extra_repr(void *self, char *buf, size_t cap) {
    const scaled_tanh *s = self;
    return snprintf(buf, cap, "init_scale=%g", s->init);
}

/* forward of both: y = scale * tanh(x). With a backward slot the runtime runs
 * it with recording off; without one every op is recorded. */
static nnm_status scaled_tanh_forward(nnm_env *env, void *self, nnm_tensor *const *in,
                                      uint32_t n_in, nnm_tensor **out, uint32_t n_out) {
    const nnm_host *h = env->host;
    scaled_tanh *s = self;
    nnm_tensor *t = NULL;
    (void)n_in, (void)n_out;
    nnm_status st = h->op_unary(env, NNM_UNARY_TANH, in[0], 0.0, &t);
    if (st == NNM_OK)
        st = h->op_binary(env, NNM_BINARY_MUL, t, s->scale, &out[0]); /* [1] broadcasts */
    h->tensor_release(t);
    return st;
}

static nnm_status scaled_tanh_own_forward(nnm_env *env, void *self, nnm_tensor *const *in,
                                          uint32_t n_in, nnm_tensor **out, uint32_t n_out) {
    const nnm_host *h = env->host;
    scaled_tanh *s = self;
    nnm_tensor *t = NULL;
    (void)n_in, (void)n_out;
    nnm_status st = h->op_unary(env, NNM_UNARY_TANH, in[0], 0.0, &t);
    if (st == NNM_OK) /* keep tanh(x): backward needs nothing else of x */
        st = h->save_for_backward(env, &t, 1);
    if (st == NNM_OK)
        st = h->op_binary(env, NNM_BINARY_MUL, t, s->scale, &out[0]);
    h->tensor_release(t);
    return st;
}

/* dy/dx = scale * (1 - t^2), dy/dscale = t: grad_x = g * scale * (1 - t^2),
 * grad_scale = sum(g * t), reshaped to the parameter's [1]. */
static nnm_status scaled_tanh_backward(nnm_env *env, void *self, nnm_tensor *const *grad_out,
                                       uint32_t n_out, nnm_tensor **grad_in, uint32_t n_in) {
    const nnm_host *h = env->host;
    scaled_tanh *s = self;
    nnm_tensor *const *saved = NULL;
    uint32_t n_saved = 0;
    nnm_tensor *t2 = NULL, *d = NULL, *gs = NULL, *gt = NULL, *sum = NULL, *sum1 = NULL;
    const int64_t one[1] = {1};
    (void)n_out, (void)n_in;
    if (grad_out[0] == NULL)
        return NNM_OK;
    nnm_status st = h->saved_tensors(env, &saved, &n_saved);
    if (st == NNM_OK && n_saved != 1)
        st = h->set_error(env, NNM_E_STATE, "scaled_tanh: expected 1 saved tensor, got %u", n_saved);
    /* d = 1 - t^2 */
    if (st == NNM_OK)
        st = h->op_binary(env, NNM_BINARY_MUL, saved[0], saved[0], &t2);
    if (st == NNM_OK)
        st = h->op_unary(env, NNM_UNARY_SCALE, t2, -1.0, &d);
    if (st == NNM_OK) {
        h->tensor_release(t2);
        t2 = d;
        d = NULL;
        st = h->op_unary(env, NNM_UNARY_ADD_SCALAR, t2, 1.0, &d);
    }
    /* grad_x = g * scale * d */
    if (st == NNM_OK)
        st = h->op_binary(env, NNM_BINARY_MUL, grad_out[0], s->scale, &gs);
    if (st == NNM_OK)
        st = h->op_binary(env, NNM_BINARY_MUL, gs, d, &grad_in[0]);
    /* grad_scale = sum(g * t) as [1] */
    if (st == NNM_OK)
        st = h->op_binary(env, NNM_BINARY_MUL, grad_out[0], saved[0], &gt);
    if (st == NNM_OK)
        st = h->op_reduce(env, NNM_REDUCE_SUM, gt, NULL, 0, 0, &sum);
    if (st == NNM_OK)
        st = h->op_reshape(env, sum, 1, one, &sum1);
    if (st == NNM_OK)
        st = h->accumulate_grad(env, s->scale, sum1);
    h->tensor_release(t2);
    h->tensor_release(d);
    h->tensor_release(gs);
    h->tensor_release(gt);
    h->tensor_release(sum);
    h->tensor_release(sum1);
    return st;
}

/* ---- track_mean: a buffer updated in training ----------------------------- */

typedef struct track_mean {
    int64_t num_features;
    double momentum;
    nnm_tensor *running_mean;        /* f32 [num_features], persistent */
    nnm_tensor *num_batches_tracked; /* i64 [], persistent */
} track_mean;

static const nnm_config_field track_mean_config[] = {
    {"num_features", NNM_CONFIG_INT, NNM_CONFIG_REQUIRED, "size of the last dim"},
    {"momentum", NNM_CONFIG_FLOAT, 0, "running_mean's update weight (default 0.1)"},
};

static nnm_status track_mean_create(nnm_env *env, void **self) {
    const nnm_host *h = env->host;
    const double dflt_momentum = 0.1;
    const nnm_dtype i64 = {NNM_DTYPE_INT, 64, 1};
    int64_t n;
    double momentum;
    nnm_status st;
    if (!NNM_HOST_HAS(h, buffer_new_v2) || !NNM_HOST_HAS(h, op_update) || !NNM_HOST_HAS(h, op_full))
        return h->set_error(env, NNM_E_VERSION, "track_mean: needs a host of ABI 1.5 or later");
    if ((st = h->config_int(env, "num_features", NULL, &n)) != NNM_OK ||
        (st = h->config_float(env, "momentum", &dflt_momentum, &momentum)) != NNM_OK)
        return st;
    if (n < 1)
        return h->set_error(env, NNM_E_INVALID, "num_features must be >= 1, got %lld", (long long)n);
    if (momentum < 0.0 || momentum > 1.0)
        return h->set_error(env, NNM_E_INVALID, "momentum must be in [0, 1], got %g", momentum);
    track_mean *c = calloc(1, sizeof *c);
    if (!c)
        return h->set_error(env, NNM_E_NOMEM, "track_mean: out of memory");
    c->num_features = n;
    c->momentum = momentum;
    const int64_t shape[1] = {n};
    st = h->buffer_new(env, "running_mean", 1, shape, NNM_INIT_ZEROS, 0.0, 1, &c->running_mean);
    if (st == NNM_OK) /* a 0-d i64 counter, as batch norm's */
        st = h->buffer_new_v2(env, "num_batches_tracked", 0, NULL, i64, NNM_INIT_ZEROS, 0.0, 0.0, 1,
                              &c->num_batches_tracked);
    if (st == NNM_OK)
        st = h->input_spec(env, 0, 1, shape, NNM_SPEC_LEADING_ANY);
    if (st != NNM_OK) {
        free(c);
        return st;
    }
    *self = c;
    return NNM_OK;
}

static nnm_status track_mean_forward(nnm_env *env, void *self, nnm_tensor *const *in,
                                     uint32_t n_in, nnm_tensor **out, uint32_t n_out) {
    const nnm_host *h = env->host;
    track_mean *c = self;
    (void)n_in, (void)n_out;
    if (!h->is_training(env))
        return h->op_binary(env, NNM_BINARY_SUB, in[0], c->running_mean, &out[0]);
    int32_t dims[NNM_MAX_DIMS];
    const int32_t ndim = h->tensor_desc(in[0])->ndim;
    for (int32_t i = 0; i < ndim - 1; i++)
        dims[i] = i;
    nnm_tensor *mean = NULL, *one = NULL;
    nnm_status st = NNM_OK;
    if (ndim > 1) {
        st = h->op_reduce(env, NNM_REDUCE_MEAN, in[0], dims, (uint32_t)(ndim - 1), 0, &mean);
    } else {
        h->tensor_retain(in[0]);
        mean = in[0];
    }
    if (st == NNM_OK)
        st = h->op_update(env, c->running_mean, mean, 1.0 - c->momentum, c->momentum);
    if (st == NNM_OK)
        st = h->op_full(env, 0, NULL, 1.0, &one);
    if (st == NNM_OK) /* num_batches_tracked += 1 */
        st = h->op_update(env, c->num_batches_tracked, one, 1.0, 1.0);
    if (st == NNM_OK)
        st = h->op_binary(env, NNM_BINARY_SUB, in[0], mean, &out[0]);
    h->tensor_release(one);
    h->tensor_release(mean);
    return st;
}

static void track_mean_destroy(void *self) { free(self); }

static int track_mean_extra_repr(void *self, char *buf, size_t cap) {
    const track_mean *c = self;
    return snprintf(buf, cap, "%lld, momentum=%g", (long long)c->num_features, c->momentum);
}

/* ---- the descriptor ------------------------------------------------------- */

static const nnm_layer_vtable scaled_tanh_layer = {
    .struct_size = sizeof(nnm_layer_vtable),
    .name = "scaled_tanh",
    .version_major = 1, .version_minor = 0, .version_patch = 0,
    .n_inputs = 1,
    .n_outputs = 1,
    .create = scaled_tanh_create,
    .destroy = scaled_tanh_destroy,
    .forward = scaled_tanh_own_forward,
    .extra_repr = scaled_tanh_extra_repr,
    .backward = scaled_tanh_backward,
    .config_fields = scaled_tanh_config,
    .n_config_fields = sizeof scaled_tanh_config / sizeof scaled_tanh_config[0],
    .display_name = "ScaledTanh",
};

static const nnm_layer_vtable scaled_tanh_auto_layer = {
    .struct_size = sizeof(nnm_layer_vtable),
    .name = "scaled_tanh_auto",
    .version_major = 1, .version_minor = 0, .version_patch = 0,
    .n_inputs = 1,
    .n_outputs = 1,
    .create = scaled_tanh_create,
    .destroy = scaled_tanh_destroy,
    .forward = scaled_tanh_forward,
    .extra_repr = scaled_tanh_extra_repr,
    .config_fields = scaled_tanh_config,
    .n_config_fields = sizeof scaled_tanh_config / sizeof scaled_tanh_config[0],
};

static const nnm_layer_vtable track_mean_layer = {
    .struct_size = sizeof(nnm_layer_vtable),
    .name = "track_mean",
    .version_major = 1, .version_minor = 0, .version_patch = 0,
    .n_inputs = 1,
    .n_outputs = 1,
    .create = track_mean_create,
    .destroy = track_mean_destroy,
    .forward = track_mean_forward,
    .extra_repr = track_mean_extra_repr,
    .config_fields = track_mean_config,
    .n_config_fields = sizeof track_mean_config / sizeof track_mean_config[0],
};

static const nnm_layer_vtable *const layers[] = {&scaled_tanh_layer, &scaled_tanh_auto_layer,
                                                 &track_mean_layer};

static const nnm_plugin_desc desc = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
    .name = "stranger_layers",
    .description = "scaled_tanh (own backward and composed), track_mean (a running buffer)",
    .n_layers = sizeof layers / sizeof layers[0],
    .layers = layers,
    .domain = "stranger",
};

NNM_PLUGIN_DEFINE(desc)
