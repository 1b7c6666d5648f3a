/* tests/abi/compile_plugin.c - plugin.h on its own, as a plugin uses it.
 * Built as strict C99 and C11 (-pedantic-errors); the build fails if the
 * header does not compile. In C11 the header's static_asserts are checked. */
#include "nnmod/plugin.h"

#include <stddef.h>

static nnm_status t_create(nnm_env *env, void **self) {
    const nnm_host *h = env->host;
    int64_t v = 0;
    const int64_t dflt = 1;
    *self = NULL;
    if (NNM_HOST_HAS(h, config_int))
        return h->config_int(env, "k", &dflt, &v);
    return h->set_error(env, NNM_E_UNSUPPORTED, "no config_int in host ABI %u.%u",
                        (unsigned)h->abi_major, (unsigned)h->abi_minor);
}

static void t_destroy(void *self) {
    (void)self;
}

static nnm_status t_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in,
                            nnm_tensor **out, uint32_t n_out) {
    const nnm_tensor_desc *d = env->host->tensor_desc(in[0]);
    nnm_dtype f32 = NNM_F32;
    (void)self;
    (void)n_in;
    (void)n_out;
    if (d->dtype.code != f32.code || d->dtype.bits != f32.bits)
        return env->host->set_error(env, NNM_E_DTYPE, "want f32");
    return env->host->op_unary(env, NNM_UNARY_COPY, in[0], 0.0, &out[0]);
}

static int t_extra_repr(void *self, char *buf, size_t cap) {
    (void)self;
    if (cap)
        buf[0] = '\0';
    return 0;
}

static const nnm_layer_vtable t_layer = {
    sizeof(nnm_layer_vtable), 0, "abi_compile_test", 1, 0, 0, 1, 1,
    t_create, t_destroy, t_forward, t_extra_repr, NULL, NULL, NULL, 0, 0, NULL};

static const nnm_layer_vtable *const t_layers[] = {&t_layer};

static const nnm_plugin_desc t_desc = {
    sizeof(nnm_plugin_desc), NNM_ABI_MAJOR, NNM_ABI_MINOR, "abi_compile_test", NULL,
    1, 0, t_layers, NULL, 0, 0, NULL, NULL};

NNM_PLUGIN_DEFINE(t_desc)
