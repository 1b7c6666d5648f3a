/* tests/abi/frozen/frozen_plugin_1_4.c - a layer built against the frozen ABI
 * 1.4 snapshot (abi_1_4/, see README.md), using what 1.4 added:
 * host->op_batch_norm. Layer "frozen_batch_norm" 1.4.0: y =
 * F.batch_norm(x, None, None, training=True, eps=config eps) (no affine, no
 * running statistics). */
#include <nnmod/plugin.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct frozen_bn {
    double eps;
} frozen_bn;

static nnm_status fb_create(nnm_env *env, void **self) {
    const nnm_host *h = env->host;
    const double dflt = 1e-5;
    double eps;
    nnm_status st = h->config_float(env, "eps", &dflt, &eps);
    if (st) return st;
    frozen_bn *p = malloc(sizeof *p);
    if (!p) return h->set_error_msg(env, NNM_E_NOMEM, "out of memory");
    p->eps = eps;
    *self = p;
    return NNM_OK;
}

static void fb_destroy(void *self) { free(self); }

static nnm_status fb_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in,
                             nnm_tensor **out, uint32_t n_out) {
    (void)n_in, (void)n_out;
    const frozen_bn *s = self;
    nnm_batch_norm_params p;
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    p.training = 1;
    p.momentum = 0.1;
    p.eps = s->eps;
    return env->host->op_batch_norm(env, in[0], NULL, NULL, NULL, NULL, &p, &out[0]);
}

static int fb_extra_repr(void *self, char *buf, size_t cap) {
    const frozen_bn *s = self;
    return snprintf(buf, cap, "eps=%g", s->eps);
}

static const nnm_config_field fb_config[] = {{"eps", NNM_CONFIG_FLOAT, 0, "added to the variance"}};

static const nnm_layer_vtable fb_vt = {
    sizeof(nnm_layer_vtable), 0, "frozen_batch_norm", 1, 4, 0, 1, 1,
    fb_create, fb_destroy, fb_forward, fb_extra_repr,
    NULL,                     /* backward (1.1): recorded by op_batch_norm */
    NULL,                     /* finalize (1.2) */
    fb_config, 1, 0,          /* config schema (1.2) */
    "FrozenBatchNorm",        /* display_name (1.2) */
};
static const nnm_layer_vtable *const layers[] = {&fb_vt};
static const nnm_plugin_desc desc = {
    sizeof(nnm_plugin_desc), NNM_ABI_MAJOR, NNM_ABI_MINOR, "frozen_batch_norm",
    "built against the frozen ABI 1.4 snapshot", 1, 0, layers, NULL, 0, 0, NULL,
};

NNM_PLUGIN_DEFINE(desc)
