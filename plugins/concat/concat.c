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
 * One host op, op_concat (ABI 1.3): the backend's strided copies, so it runs
 * on every device, and the runtime records it for autograd (the gradient is
 * cut back into the inputs' pieces). 1.0.1: before it, a CPU loop with its
 * own backward.
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

    /* shapes agree except along dim (the layer's messages; op_concat checks
     * again) */
    char dt[64];
    for (uint32_t i = 0; i < n_in; i++) {
        const nnm_tensor_desc *d = h->tensor_desc(in[i]);
        if (!nnm_lu_is_f32(d))
            return h->set_error(env, NNM_E_DTYPE, "concat takes f32 tensors, got %s for input %u",
                                nnm_lu_dtype_str(d->dtype, dt, sizeof dt), (unsigned)i);
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
    }
    if (n_in == 1) {
        h->tensor_retain(in[0]);
        out[0] = in[0];
        return NNM_OK;
    }
    if (!NNM_HOST_HAS(h, op_concat))
        return h->set_error(env, NNM_E_VERSION, "concat needs a host of ABI 1.3 (op_concat)");
    /* one host op: the backend's strided copies on any device, recorded for
     * autograd (the gradient is cut back into the inputs' pieces) */
    return h->op_concat(env, in, n_in, dim, &out[0]);
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
    .version_patch = 1,
    .n_inputs = NNM_ARITY_ANY,
    .n_outputs = 1,
    .create = concat_create,
    .destroy = concat_destroy,
    .forward = concat_forward,
    .extra_repr = concat_extra_repr,
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
