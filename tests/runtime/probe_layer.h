/* tests/runtime/probe_layer.h - an in-process layer ("probe") registered with
 * nnm_plugin_register_static. It records every forward it sees, so the tests
 * can compare what the plugin saw with what went through the call path.
 *
 * Config: scale (float, default 1): out = scale * x
 *         features (int, default -1): if >= 0, declares input spec [*, features]
 *         fail (bool, default 0): forward fails with NNM_E_PLUGIN
 *         tag (int, default 0): written to the log on each forward
 */
#ifndef NNM_TEST_PROBE_LAYER_H
#define NNM_TEST_PROBE_LAYER_H

#include <stdlib.h>

#include "nnmod/nnmod.h"

typedef struct probe_log {
    int forwards;          /* forward invocations */
    int last_training;
    int last_grad;
    int bad_env;           /* forwards that got an env without the host table */
    char order[256];       /* event letters appended by tests and the probe */
    int n_order;
    const nnm_host *host;  /* the host table the runtime handed in */
} probe_log;

static probe_log g_probe;

static inline void probe_mark(char c) {
    if (g_probe.n_order < (int)sizeof g_probe.order - 1) {
        g_probe.order[g_probe.n_order++] = c;
        g_probe.order[g_probe.n_order] = 0;
    }
}

static inline void probe_reset(void) { memset(&g_probe, 0, sizeof g_probe); }

typedef struct probe_state {
    double scale;
    int fail;
    int64_t tag;
} probe_state;

static nnm_status probe_create(nnm_env *env, void **self) {
    const nnm_host *h = env->host;
    double one = 1.0;
    int64_t minus1 = -1, zero = 0;
    int no = 0;
    probe_state *s = calloc(1, sizeof *s);
    if (!s) return h->set_error(env, NNM_E_NOMEM, "out of memory");
    int64_t features;
    nnm_status st;
    if ((st = h->config_float(env, "scale", &one, &s->scale)) ||
        (st = h->config_int(env, "features", &minus1, &features)) ||
        (st = h->config_bool(env, "fail", &no, &s->fail)) ||
        (st = h->config_int(env, "tag", &zero, &s->tag))) {
        free(s);
        return st;
    }
    nnm_tensor *w;
    int64_t shape[1] = {1};
    if ((st = h->param_new(env, "w", 1, shape, NNM_INIT_CONSTANT, s->scale, 0, &w))) {
        free(s);
        return st;
    }
    if (features >= 0 && (st = h->input_spec(env, 0, 1, &features, NNM_SPEC_LEADING_ANY))) {
        free(s);
        return st;
    }
    *self = s;
    return NNM_OK;
}

static void probe_destroy(void *self) { free(self); }

static nnm_status probe_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in,
                                nnm_tensor **out, uint32_t n_out) {
    (void)n_in;
    (void)n_out;
    probe_state *s = self;
    const nnm_host *h = env->host;
    g_probe.forwards++;
    if (env->struct_size < sizeof(nnm_env) || !h || h->struct_size < sizeof(nnm_host))
        g_probe.bad_env++;
    g_probe.host = h;
    g_probe.last_training = h->is_training(env);
    g_probe.last_grad = h->grad_enabled(env);
    probe_mark('F');
    if (s->fail) return h->set_error(env, NNM_E_PLUGIN, "probe failed on purpose");
    return h->op_unary(env, NNM_UNARY_SCALE, in[0], s->scale, &out[0]);
}

static int probe_extra_repr(void *self, char *buf, size_t cap) {
    probe_state *s = self;
    return snprintf(buf, cap, "scale=%g", s->scale);
}

static const nnm_layer_vtable probe_vt = {
    .struct_size = sizeof(nnm_layer_vtable),
    .name = "probe",
    .version_major = 1,
    .n_inputs = 1,
    .n_outputs = 1,
    .create = probe_create,
    .destroy = probe_destroy,
    .forward = probe_forward,
    .extra_repr = probe_extra_repr,
};

static const nnm_layer_vtable *const probe_layers[] = {&probe_vt};

static const nnm_plugin_desc probe_desc = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
    .name = "probe",
    .description = "test layer that records what it sees",
    .n_layers = 1,
    .layers = probe_layers,
};

#endif
