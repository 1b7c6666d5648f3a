/* plugins/concat/concat.c - the "concat" layer: torch.cat(inputs, dim), for
 * graphs (DenseNet/U-Net skip connections: "cat: up, skip").
 *
 * Config:
 *   dim  int, default 0 (torch.cat's default); negative counts from the end
 * Takes 1 to NNM_MAX_IO f32 inputs of the same number of dims (at least 1)
 * whose sizes agree except along dim; returns one contiguous tensor. One input
 * is returned as itself (one more reference), as torch.cat copies but the
 * values are the same.
 *
 * A CPU kernel with its own backward (the gradient is cut back into the
 * inputs' pieces); another device gives NNM_E_UNSUPPORTED. Backward keeps one
 * small saved tensor: the inputs' sizes along dim (i64), so that a module
 * called several times before backward needs no per-call state.
 */
#include <nnmod/plugin.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layer_util.h"

typedef struct concat_state {
    int64_t dim;
} concat_state;

static nnm_status concat_create(nnm_env *env, void **self) {
    const nnm_host *h = env->host;
    *self = NULL;
    const int64_t dflt = 0;
    int64_t dim = 0;
    nnm_status st = h->config_int(env, "dim", &dflt, &dim);
    if (st != NNM_OK)
        return st;
    if (dim < -NNM_MAX_DIMS || dim >= NNM_MAX_DIMS)
        return h->set_error(env, NNM_E_INVALID, "dim must be in [-%d, %d), got %lld",
                            NNM_MAX_DIMS, NNM_MAX_DIMS, (long long)dim);
    concat_state *p = malloc(sizeof *p);
    if (p == NULL)
        return h->set_error(env, NNM_E_NOMEM, "out of memory for the concat layer's state");
    p->dim = dim;
    *self = p;
    return NNM_OK;
}

static void concat_destroy(void *self) {
    free(self);
}

/* The dim for tensors of ndim dims, or -1 after setting the message. */
static int32_t concat_dim(nnm_env *env, const concat_state *s, int32_t ndim) {
    const int64_t d = s->dim < 0 ? s->dim + ndim : s->dim;
    if (ndim < 1 || d < 0 || d >= ndim) {
        env->host->set_error(env, NNM_E_SHAPE, "dim %lld is out of range for inputs of %d dims",
                             (long long)s->dim, (int)ndim);
        return -1;
    }
    return (int32_t)d;
}

/* outer = prod(shape[:dim]), inner = prod(shape[dim+1:]). */
static void concat_split(const nnm_tensor_desc *d, int32_t dim, int64_t *outer, int64_t *inner) {
    *outer = 1;
    *inner = 1;
    for (int32_t i = 0; i < d->ndim; i++) {
        if (i < dim)
            *outer *= d->shape[i];
        else if (i > dim)
            *inner *= d->shape[i];
    }
}

static nnm_status concat_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in,
                                 nnm_tensor **out, uint32_t n_out) {
    const nnm_host *h = env->host;
    const concat_state *s = self;
    if (s == NULL)
        return h->set_error(env, NNM_E_STATE, "concat: forward without state");
    if (n_in < 1 || n_in > NNM_MAX_IO || n_out != 1 || in == NULL || out == NULL)
        return h->set_error(env, NNM_E_SHAPE,
                            "concat takes 1 to %d inputs and returns 1 output, got %u and %u",
                            NNM_MAX_IO, (unsigned)n_in, (unsigned)n_out);
    for (uint32_t i = 0; i < n_in; i++)
        if (in[i] == NULL)
            return h->set_error(env, NNM_E_INVALID, "concat: input %u is NULL", (unsigned)i);
    const nnm_tensor_desc *d0 = h->tensor_desc(in[0]);
    const int32_t dim = concat_dim(env, s, d0->ndim);
    if (dim < 0)
        return NNM_E_SHAPE;

    /* shapes agree except along dim */
    int64_t shape[NNM_MAX_DIMS];
    memcpy(shape, d0->shape, sizeof(int64_t) * (size_t)d0->ndim);
    shape[dim] = 0;
    int64_t sizes[NNM_MAX_IO];
    for (uint32_t i = 0; i < n_in; i++) {
        const nnm_tensor_desc *d = h->tensor_desc(in[i]);
        if (d->ndim != d0->ndim)
            return h->set_error(env, NNM_E_SHAPE, "input %u has %d dims, input 0 has %d",
                                (unsigned)i, (int)d->ndim, (int)d0->ndim);
        for (int32_t k = 0; k < d->ndim; k++)
            if (k != dim && d->shape[k] != d0->shape[k])
                return h->set_error(env, NNM_E_SHAPE,
                                    "input %u has size %lld in dim %d, input 0 has %lld "
                                    "(only dim %d may differ)",
                                    (unsigned)i, (long long)d->shape[k], (int)k,
                                    (long long)d0->shape[k], (int)dim);
        sizes[i] = d->shape[dim];
        shape[dim] += sizes[i];
    }
    if (n_in == 1) {
        h->tensor_retain(in[0]);
        out[0] = in[0];
        return NNM_OK;
    }

    nnm_tensor *y = NULL;
    nnm_status st = h->tensor_new(env, d0->ndim, shape, NNM_F32, &y);
    if (st != NNM_OK)
        return st;
    int64_t outer, inner;
    concat_split(h->tensor_desc(y), dim, &outer, &inner);
    float *yp = nnm_lu_data(h->tensor_desc(y));
    int64_t at = 0; /* offset along dim */
    for (uint32_t i = 0; i < n_in && st == NNM_OK; i++) {
        nnm_tensor *x = NULL;
        st = nnm_lu_cpu_f32(env, "concat", in[i], &x);
        if (st != NNM_OK)
            break;
        const float *xp = nnm_lu_data(h->tensor_desc(x));
        const int64_t row = sizes[i] * inner;
        for (int64_t o = 0; o < outer; o++)
            memcpy(yp + (o * shape[dim] + at) * inner, xp + o * row, sizeof(float) * (size_t)row);
        at += sizes[i];
        h->tensor_release(x);
    }
    /* the sizes along dim, for backward */
    nnm_tensor *keep = NULL;
    const int64_t kshape[1] = {(int64_t)n_in};
    const nnm_dtype i64 = {NNM_DTYPE_INT, 64, 1};
    if (st == NNM_OK)
        st = h->tensor_new(env, 1, kshape, i64, &keep);
    if (st == NNM_OK) {
        const nnm_tensor_desc *kd = h->tensor_desc(keep);
        if (kd->device.type == NNM_DEVICE_CPU)
            memcpy(nnm_lu_data(kd), sizes, sizeof(int64_t) * n_in);
        st = h->save_for_backward(env, &keep, 1);
    }
    h->tensor_release(keep);
    if (st != NNM_OK) {
        h->tensor_release(y);
        return st;
    }
    out[0] = y;
    return NNM_OK;
}

static nnm_status concat_backward(nnm_env *env, void *self, nnm_tensor *const *grad_out,
                                  uint32_t n_out, nnm_tensor **grad_in, uint32_t n_in) {
    const nnm_host *h = env->host;
    const concat_state *s = self;
    for (uint32_t i = 0; i < n_in; i++)
        grad_in[i] = NULL;
    if (s == NULL || n_out != 1)
        return h->set_error(env, NNM_E_STATE, "concat backward: unexpected arity");
    if (grad_out[0] == NULL)
        return NNM_OK;
    nnm_tensor *const *saved = NULL;
    uint32_t n_saved = 0;
    nnm_status st = h->saved_tensors(env, &saved, &n_saved);
    if (st != NNM_OK)
        return st;
    if (n_in == 1) { /* forward returned its input */
        h->tensor_retain(grad_out[0]);
        grad_in[0] = grad_out[0];
        return NNM_OK;
    }
    if (n_saved != 1 || nnm_lu_numel(h->tensor_desc(saved[0])) != (int64_t)n_in)
        return h->set_error(env, NNM_E_STATE, "concat backward: saved sizes missing");
    const int64_t *sizes = nnm_lu_data(h->tensor_desc(saved[0]));
    nnm_tensor *g = NULL;
    st = nnm_lu_cpu_f32(env, "concat", grad_out[0], &g);
    if (st != NNM_OK)
        return st;
    const nnm_tensor_desc *gd = h->tensor_desc(g);
    const int32_t dim = concat_dim(env, s, gd->ndim);
    if (dim < 0) {
        h->tensor_release(g);
        return NNM_E_SHAPE;
    }
    int64_t outer, inner;
    concat_split(gd, dim, &outer, &inner);
    const float *gp = nnm_lu_data(gd);
    int64_t shape[NNM_MAX_DIMS];
    memcpy(shape, gd->shape, sizeof(int64_t) * (size_t)gd->ndim);
    int64_t at = 0;
    for (uint32_t i = 0; i < n_in && st == NNM_OK; i++) {
        shape[dim] = sizes[i];
        st = h->tensor_new(env, gd->ndim, shape, NNM_F32, &grad_in[i]);
        if (st != NNM_OK)
            break;
        float *xp = nnm_lu_data(h->tensor_desc(grad_in[i]));
        const int64_t row = sizes[i] * inner;
        for (int64_t o = 0; o < outer; o++)
            memcpy(xp + o * row, gp + (o * gd->shape[dim] + at) * inner,
                   sizeof(float) * (size_t)row);
        at += sizes[i];
    }
    h->tensor_release(g);
    if (st != NNM_OK)
        for (uint32_t i = 0; i < n_in; i++) {
            h->tensor_release(grad_in[i]);
            grad_in[i] = NULL;
        }
    return st;
}

static int concat_extra_repr(void *self, char *buf, size_t cap) {
    const concat_state *s = self;
    if (s == NULL)
        return snprintf(buf, cap, "%s", "");
    return snprintf(buf, cap, "dim=%lld", (long long)s->dim);
}

static const nnm_config_field concat_config[] = {
    {"dim", NNM_CONFIG_INT, 0, "dim to concatenate along (default 0; negative from the end)"},
};

static const nnm_layer_vtable concat_layer = {
    .struct_size = sizeof(nnm_layer_vtable),
    .flags = 0,
    .name = "concat",
    .display_name = "Concat",
    .version_major = 1,
    .version_minor = 0,
    .version_patch = 0,
    .n_inputs = NNM_ARITY_ANY,
    .n_outputs = 1,
    .create = concat_create,
    .destroy = concat_destroy,
    .forward = concat_forward,
    .extra_repr = concat_extra_repr,
    .backward = concat_backward,
    .config_fields = concat_config,
    .n_config_fields = sizeof concat_config / sizeof concat_config[0],
};

static const nnm_layer_vtable *const concat_layers[] = {&concat_layer};

static const nnm_plugin_desc concat_plugin = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
    .name = "concat",
    .description = "Concatenation of all inputs along one dim (torch.cat), for graphs",
    .n_layers = 1,
    .n_backends = 0,
    .layers = concat_layers,
    .backends = NULL,
    .domain = NNM_DOMAIN_NNMOD, /* nnmod's own library: the plain names */
};

NNM_PLUGIN_DEFINE(concat_plugin)
