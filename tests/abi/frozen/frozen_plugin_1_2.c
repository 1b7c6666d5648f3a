/* tests/abi/frozen/frozen_plugin_1_2.c - a layer built against the frozen ABI
 * 1.2 snapshot (abi_1_2/, see README.md), using what 1.1 and 1.2 added: a
 * declared config schema, a display name, a 1.1 reduction. Layer
 * "frozen_scaled_sum" 1.2.0: y = scale * sum(x, dim=-1, keepdim). */
#include <nnmod/plugin.h>

#include <stdio.h>
#include <stdlib.h>

typedef struct scaled_sum {
    double scale;
} scaled_sum;

static nnm_status ss_create(nnm_env *env, void **self) {
    const nnm_host *h = env->host;
    double one = 1.0;
    scaled_sum s;
    nnm_status st = h->config_float(env, "scale", &one, &s.scale);
    if (st) return st;
    scaled_sum *p = malloc(sizeof *p);
    if (!p) return h->set_error(env, NNM_E_NOMEM, "out of memory");
    *p = s;
    *self = p;
    return NNM_OK;
}

static void ss_destroy(void *self) { free(self); }

static nnm_status ss_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in,
                             nnm_tensor **out, uint32_t n_out) {
    (void)n_in, (void)n_out;
    const nnm_host *h = env->host;
    const scaled_sum *s = self;
    int32_t last = -1;
    nnm_tensor *r = NULL;
    nnm_status st = h->op_reduce(env, NNM_REDUCE_SUM, in[0], &last, 1, 1, &r);
    if (st) return st;
    st = h->op_unary(env, NNM_UNARY_SCALE, r, s->scale, &out[0]);
    h->tensor_release(r);
    return st;
}

static int ss_extra_repr(void *self, char *buf, size_t cap) {
    return snprintf(buf, cap, "scale=%g", ((const scaled_sum *)self)->scale);
}

static const nnm_config_field ss_config[] = {{"scale", NNM_CONFIG_FLOAT, 0, "factor"}};

static const nnm_layer_vtable ss_vt = {
    sizeof(nnm_layer_vtable), 0, "frozen_scaled_sum", 1, 2, 0, 1, 1,
    ss_create, ss_destroy, ss_forward, ss_extra_repr,
    NULL,                     /* backward (1.1): composed from host ops */
    NULL,                     /* finalize (1.2) */
    ss_config, 1, 0,          /* config schema (1.2) */
    "FrozenScaledSum",        /* display_name (1.2) */
};
static const nnm_layer_vtable *const layers[] = {&ss_vt};
static const nnm_plugin_desc desc = {
    sizeof(nnm_plugin_desc), NNM_ABI_MAJOR, NNM_ABI_MINOR, "frozen_scaled_sum",
    "built against the frozen ABI 1.2 snapshot", 1, 0, layers, NULL,
};

NNM_PLUGIN_DEFINE(desc)
