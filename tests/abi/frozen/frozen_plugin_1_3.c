/* tests/abi/frozen/frozen_plugin_1_3.c - a layer built against the frozen ABI
 * 1.3 snapshot (abi_1_3/, see README.md), using what 1.3 added: an "int or
 * list" config value and host->op_pool. Layer "frozen_max_pool" 1.3.0:
 * y = F.max_pool2d(x, kernel_size) with stride = kernel_size. */
#include <nnmod/plugin.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct frozen_pool {
    int64_t k[2];
} frozen_pool;

static nnm_status fp_create(nnm_env *env, void **self) {
    const nnm_host *h = env->host;
    const int64_t dflt = 2;
    int64_t k[2];
    nnm_status st = h->config_int_or_ints(env, "kernel_size", &dflt, k, 2);
    if (st) return st;
    frozen_pool *p = malloc(sizeof *p);
    if (!p) return h->set_error_msg(env, NNM_E_NOMEM, "out of memory");
    memcpy(p->k, k, sizeof k);
    *self = p;
    return NNM_OK;
}

static void fp_destroy(void *self) { free(self); }

static nnm_status fp_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in,
                             nnm_tensor **out, uint32_t n_out) {
    (void)n_in, (void)n_out;
    const frozen_pool *s = self;
    nnm_pool_params p;
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    p.op = NNM_POOL_MAX;
    p.n_spatial = 2;
    for (int i = 0; i < 2; i++) {
        p.kernel[i] = p.stride[i] = s->k[i];
        p.dilation[i] = 1;
    }
    return env->host->op_pool(env, in[0], &p, &out[0]);
}

static int fp_extra_repr(void *self, char *buf, size_t cap) {
    const frozen_pool *s = self;
    return snprintf(buf, cap, "kernel_size=(%lld, %lld)", (long long)s->k[0], (long long)s->k[1]);
}

static const nnm_config_field fp_config[] = {{"kernel_size", NNM_CONFIG_INT_OR_INTS, 0, "window"}};

static const nnm_layer_vtable fp_vt = {
    sizeof(nnm_layer_vtable), 0, "frozen_max_pool", 1, 3, 0, 1, 1,
    fp_create, fp_destroy, fp_forward, fp_extra_repr,
    NULL,                     /* backward (1.1): recorded by op_pool */
    NULL,                     /* finalize (1.2) */
    fp_config, 1, 0,          /* config schema (1.2) */
    "FrozenMaxPool",          /* display_name (1.2) */
};
static const nnm_layer_vtable *const layers[] = {&fp_vt};
static const nnm_plugin_desc desc = {
    sizeof(nnm_plugin_desc), NNM_ABI_MAJOR, NNM_ABI_MINOR, "frozen_max_pool",
    "built against the frozen ABI 1.3 snapshot", 1, 0, layers, NULL, 0, 0, NULL,
};

NNM_PLUGIN_DEFINE(desc)
