/* tests/abi/frozen/frozen_plugin.c - a layer built against a frozen snapshot of
 * the plugin ABI (see README.md). Layer "frozen_affine" 1.0.0: y = a * x + b
 * with a, b from the config, computed with host ops only. */
#include <nnmod/plugin.h>

#include <stdlib.h>

typedef struct affine {
    double a, b;
    nnm_tensor *shift; /* buffer [1] holding b, borrowed */
} affine;

static nnm_status affine_create(nnm_env *env, void **self) {
    const nnm_host *h = env->host;
    double one = 1.0, zero = 0.0;
    affine s;
    nnm_status st;
    if ((st = h->config_float(env, "a", &one, &s.a)) || (st = h->config_float(env, "b", &zero, &s.b)))
        return st;
    int64_t shape[1] = {1};
    if ((st = h->buffer_new(env, "shift", 1, shape, NNM_INIT_CONSTANT, s.b, 1, &s.shift))) return st;
    affine *p = malloc(sizeof *p);
    if (!p) return h->set_error(env, NNM_E_NOMEM, "out of memory");
    *p = s;
    *self = p;
    return NNM_OK;
}

static void affine_destroy(void *self) { free(self); }

static nnm_status affine_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in,
                                 nnm_tensor **out, uint32_t n_out) {
    (void)n_in, (void)n_out;
    const nnm_host *h = env->host;
    affine *s = self;
    nnm_tensor *scaled = NULL;
    nnm_status st = h->op_unary(env, NNM_UNARY_SCALE, in[0], s->a, &scaled);
    if (st) return st;
    st = h->op_binary(env, NNM_BINARY_ADD, scaled, s->shift, &out[0]);
    h->tensor_release(scaled);
    return st;
}

static const nnm_layer_vtable affine_vt = {
    sizeof(nnm_layer_vtable), 0, "frozen_affine", 1, 0, 0, 1, 1,
    affine_create, affine_destroy, affine_forward, NULL,
};
static const nnm_layer_vtable *const layers[] = {&affine_vt};
static const nnm_plugin_desc desc = {
    sizeof(nnm_plugin_desc), NNM_ABI_MAJOR, NNM_ABI_MINOR, "frozen_affine",
    "built against a frozen ABI snapshot", 1, 0, layers, NULL,
};

NNM_PLUGIN_DEFINE(desc)
