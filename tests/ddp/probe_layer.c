/* tests/ddp/probe_layer.c - the "ddp_probe" layer (nnm_ddp_probe.so), for the
 * DDP tests: y = x * scale over the last dim ([F] parameter "scale"); a
 * buffer "running_mean" [F] that forward updates in training, as batch norm's
 * running stats, from the batch it sees (0.9 * old + 0.1 * mean of rows);
 * and, with config with_unused, a parameter "unused" [2] that forward never
 * touches. CPU only. */
#include <string.h>

#include "nnmod/plugin.h"

typedef struct probe {
    nnm_tensor *scale, *running_mean, *unused;
    int64_t f;
} probe;

static probe g_probes[16];
static int g_n;

static nnm_status probe_create(nnm_env *env, void **self) {
    const nnm_host *h = env->host;
    int64_t f;
    nnm_status st = h->config_int(env, "features", NULL, &f);
    if (st) return st;
    int dflt = 0, with_unused;
    if ((st = h->config_bool(env, "with_unused", &dflt, &with_unused))) return st;
    if (g_n == 16) return h->set_error(env, NNM_E_LIMIT, "ddp_probe: at most 16 per process");
    probe *p = &g_probes[g_n++];
    memset(p, 0, sizeof *p);
    p->f = f;
    int64_t shape[1] = {f}, two[1] = {2};
    if ((st = h->param_new(env, "scale", 1, shape, NNM_INIT_UNIFORM, 0.5, 1.5, &p->scale))) return st;
    if (with_unused &&
        (st = h->param_new(env, "unused", 1, two, NNM_INIT_CONSTANT, 0.25, 0, &p->unused)))
        return st;
    if ((st = h->buffer_new(env, "running_mean", 1, shape, NNM_INIT_ZEROS, 0, 1, &p->running_mean)))
        return st;
    *self = p;
    return NNM_OK;
}

static nnm_status probe_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in,
                                nnm_tensor **out, uint32_t n_out) {
    (void)n_in, (void)n_out;
    const nnm_host *h = env->host;
    probe *p = self;
    if (h->is_training(env)) {
        const nnm_tensor_desc *x = h->tensor_desc(in[0]);
        const nnm_tensor_desc *rm = h->tensor_desc(p->running_mean);
        if (x->ndim != 2 || x->shape[1] != p->f || x->strides[1] != 1)
            return h->set_error(env, NNM_E_SHAPE, "ddp_probe: want contiguous [N, %lld]", (long long)p->f);
        const float *xv = (const float *)((const char *)x->data + x->byte_offset);
        float *r = (float *)((char *)rm->data + rm->byte_offset);
        for (int64_t j = 0; j < p->f; j++) {
            double s = 0;
            for (int64_t i = 0; i < x->shape[0]; i++) s += xv[i * x->strides[0] + j];
            r[j] = (float)(0.9 * r[j] + 0.1 * (s / (double)x->shape[0]));
        }
    }
    return h->op_binary(env, NNM_BINARY_MUL, in[0], p->scale, &out[0]);
}

static const nnm_layer_vtable probe_vt = {
    .struct_size = sizeof(nnm_layer_vtable),
    .name = "ddp_probe",
    .version_major = 1,
    .n_inputs = 1,
    .n_outputs = 1,
    .create = probe_create,
    .forward = probe_forward,
};

static const nnm_layer_vtable *const layers[] = {&probe_vt};

static const nnm_plugin_desc desc = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
    .name = "ddp_probe",
    .n_layers = 1,
    .layers = layers,
};

NNM_PLUGIN_DEFINE(desc)
