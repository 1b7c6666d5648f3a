/* plugins/embedding/embedding.c - the "embedding" layer (torch.nn.Embedding):
 * a lookup table, y[..., :] = weight[idx[...], :].
 *
 * Config (PyTorch's names and defaults):
 *   num_embeddings int, required, > 0
 *   embedding_dim  int, required, > 0
 *   padding_idx    int, default None; in [-num_embeddings, num_embeddings),
 *                  a negative one counts from the end (stored normalised, as
 *                  PyTorch does). Its row starts at zero and gets no gradient.
 * max_norm, norm_type, scale_grad_by_freq and sparse are not supported (a
 * manifest naming them is refused by the schema).
 * Parameter (PyTorch's state_dict name):
 *   weight [num_embeddings, embedding_dim]  N(0, 1), the padding row zeroed
 * Input 0: i64 indices of any shape; output 0: [*indices.shape, embedding_dim].
 * An index outside [0, num_embeddings) fails with NNM_E_INVALID naming it.
 *
 * A CPU kernel with its own backward: the weight's gradient is the sum of the
 * output gradient's rows per index (padding_idx's row left at zero),
 * accumulated through host->accumulate_grad; indices get no gradient.
 */
#include <nnmod/plugin.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layer_util.h"

typedef struct embedding_state {
    int64_t num_embeddings;
    int64_t embedding_dim;
    int has_padding;
    int64_t padding_idx; /* normalised to [0, num_embeddings) */
    nnm_tensor *weight;  /* borrowed: owned by the module */
} embedding_state;

#define EMBEDDING_MAX ((int64_t)1 << 31)

static nnm_status embedding_read_size(nnm_env *env, const char *key, int64_t *out) {
    const nnm_host *h = env->host;
    nnm_status st = h->config_int(env, key, NULL, out);
    if (st != NNM_OK)
        return st;
    if (*out <= 0)
        return h->set_error(env, NNM_E_INVALID, "%s must be > 0, got %lld", key, (long long)*out);
    if (*out > EMBEDDING_MAX)
        return h->set_error(env, NNM_E_LIMIT, "%s must be <= %lld, got %lld", key,
                            (long long)EMBEDDING_MAX, (long long)*out);
    return NNM_OK;
}

static nnm_status embedding_create(nnm_env *env, void **self) {
    const nnm_host *h = env->host;
    *self = NULL;
    embedding_state s = {0};
    nnm_status st = embedding_read_size(env, "num_embeddings", &s.num_embeddings);
    if (st == NNM_OK)
        st = embedding_read_size(env, "embedding_dim", &s.embedding_dim);
    if (st != NNM_OK)
        return st;
    if (s.num_embeddings > ((int64_t)1 << 40) / s.embedding_dim)
        return h->set_error(env, NNM_E_LIMIT, "weight of %lld x %lld elements is too large",
                            (long long)s.num_embeddings, (long long)s.embedding_dim);
    const int64_t none = INT64_MIN;
    st = h->config_int(env, "padding_idx", &none, &s.padding_idx);
    if (st != NNM_OK)
        return st;
    if (s.padding_idx != INT64_MIN) {
        if (s.padding_idx < -s.num_embeddings || s.padding_idx >= s.num_embeddings)
            return h->set_error(env, NNM_E_INVALID,
                                "padding_idx must be within num_embeddings (%lld), got %lld",
                                (long long)s.num_embeddings, (long long)s.padding_idx);
        if (s.padding_idx < 0)
            s.padding_idx += s.num_embeddings;
        s.has_padding = 1;
    }
    const int64_t wshape[2] = {s.num_embeddings, s.embedding_dim};
    st = h->param_new(env, "weight", 2, wshape, NNM_INIT_NORMAL, 0.0, 1.0, &s.weight);
    if (st != NNM_OK)
        return st;
    const nnm_tensor_desc *wd0 = h->tensor_desc(s.weight);
    /* (no data at all when the host validates on its meta device: nothing to zero) */
    if (s.has_padding && wd0->data != NULL) { /* PyTorch zeroes the padding row at init */
        const nnm_tensor_desc *wd = h->tensor_desc(s.weight);
        if (wd->device.type != NNM_DEVICE_CPU || !nnm_lu_is_contiguous(wd))
            return h->set_error(env, NNM_E_UNSUPPORTED,
                                "embedding: cannot zero the padding row on device type %d",
                                wd->device.type);
        float *w = nnm_lu_data(wd);
        memset(w + s.padding_idx * s.embedding_dim, 0, sizeof(float) * (size_t)s.embedding_dim);
    }
    embedding_state *p = malloc(sizeof *p);
    if (p == NULL)
        return h->set_error(env, NNM_E_NOMEM, "out of memory for the embedding layer's state");
    *p = s;
    *self = p;
    return NNM_OK;
}

static void embedding_destroy(void *self) {
    free(self);
}

/* A contiguous i64 CPU copy (or reference) of the indices, checked against
 * the table's size. */
static nnm_status embedding_indices(nnm_env *env, const embedding_state *s, nnm_tensor *x,
                                    nnm_tensor **out) {
    const nnm_host *h = env->host;
    *out = NULL;
    const nnm_tensor_desc *d = h->tensor_desc(x);
    char dt[64];
    if (d->dtype.code != NNM_DTYPE_INT || d->dtype.bits != 64)
        return h->set_error(env, NNM_E_DTYPE, "embedding takes i64 indices, got %s",
                            nnm_lu_dtype_str(d->dtype, dt, sizeof dt));
    if (d->device.type != NNM_DEVICE_CPU)
        return h->set_error(env, NNM_E_UNSUPPORTED,
                            "embedding has a CPU kernel only; no kernel for device type %d",
                            d->device.type);
    if (!nnm_lu_is_contiguous(d))
        return h->set_error(env, NNM_E_UNSUPPORTED, "embedding: strided indices");
    if (d->ndim + 1 > NNM_MAX_DIMS)
        return h->set_error(env, NNM_E_SHAPE, "indices of %d dims leave no room for the "
                            "embedding dim (at most %d dims)", (int)d->ndim, NNM_MAX_DIMS);
    const int64_t *idx = nnm_lu_data(d);
    const int64_t n = nnm_lu_numel(d);
    for (int64_t i = 0; i < n; i++)
        if (idx[i] < 0 || idx[i] >= s->num_embeddings)
            return h->set_error(env, NNM_E_INVALID,
                                "index %lld (element %lld) is out of range for %lld embeddings",
                                (long long)idx[i], (long long)i, (long long)s->num_embeddings);
    h->tensor_retain(x);
    *out = x;
    return NNM_OK;
}

static nnm_status embedding_forward(nnm_env *env, void *self, nnm_tensor *const *in,
                                    uint32_t n_in, nnm_tensor **out, uint32_t n_out) {
    const nnm_host *h = env->host;
    const embedding_state *s = self;
    if (s == NULL)
        return h->set_error(env, NNM_E_STATE, "embedding: forward without state");
    if (n_in != 1 || n_out != 1 || in == NULL || out == NULL || in[0] == NULL)
        return h->set_error(env, NNM_E_SHAPE, "embedding takes 1 input and 1 output, got %u and %u",
                            (unsigned)n_in, (unsigned)n_out);
    nnm_tensor *idx = NULL;
    nnm_status st = embedding_indices(env, s, in[0], &idx);
    if (st != NNM_OK)
        return st;
    const nnm_tensor_desc *id = h->tensor_desc(idx);
    const nnm_tensor_desc *wd = h->tensor_desc(s->weight);
    if (wd->device.type != NNM_DEVICE_CPU || !nnm_lu_is_contiguous(wd)) {
        h->tensor_release(idx);
        return h->set_error(env, NNM_E_UNSUPPORTED, "embedding: weight not on the CPU");
    }
    int64_t shape[NNM_MAX_DIMS];
    memcpy(shape, id->shape, sizeof(int64_t) * (size_t)id->ndim);
    shape[id->ndim] = s->embedding_dim;
    st = h->tensor_new(env, id->ndim + 1, shape, NNM_F32, &out[0]);
    if (st == NNM_OK) {
        const int64_t *ip = nnm_lu_data(id);
        const float *w = nnm_lu_data(wd);
        float *y = nnm_lu_data(h->tensor_desc(out[0]));
        const int64_t n = nnm_lu_numel(id), D = s->embedding_dim;
        for (int64_t i = 0; i < n; i++)
            memcpy(y + i * D, w + ip[i] * D, sizeof(float) * (size_t)D);
        st = h->save_for_backward(env, &idx, 1);
        if (st != NNM_OK) {
            h->tensor_release(out[0]);
            out[0] = NULL;
        }
    }
    h->tensor_release(idx);
    return st;
}

static nnm_status embedding_backward(nnm_env *env, void *self, nnm_tensor *const *grad_out,
                                     uint32_t n_out, nnm_tensor **grad_in, uint32_t n_in) {
    const nnm_host *h = env->host;
    const embedding_state *s = self;
    if (s == NULL || n_out != 1 || n_in != 1)
        return h->set_error(env, NNM_E_STATE, "embedding backward: unexpected arity");
    grad_in[0] = NULL; /* indices are not differentiable */
    if (grad_out[0] == NULL)
        return NNM_OK;
    nnm_tensor *const *saved = NULL;
    uint32_t n_saved = 0;
    nnm_status st = h->saved_tensors(env, &saved, &n_saved);
    if (st != NNM_OK)
        return st;
    if (n_saved != 1)
        return h->set_error(env, NNM_E_STATE, "embedding backward: saved indices missing");
    const nnm_tensor_desc *id = h->tensor_desc(saved[0]);
    nnm_tensor *g = NULL, *gw = NULL;
    st = nnm_lu_cpu_f32(env, "embedding", grad_out[0], &g);
    if (st != NNM_OK)
        return st;
    const int64_t n = nnm_lu_numel(id), D = s->embedding_dim;
    if (nnm_lu_numel(h->tensor_desc(g)) != n * D) {
        h->tensor_release(g);
        return h->set_error(env, NNM_E_SHAPE, "embedding backward: gradient of another size");
    }
    const int64_t wshape[2] = {s->num_embeddings, D};
    st = h->tensor_new(env, 2, wshape, NNM_F32, &gw);
    if (st == NNM_OK) {
        float *gwp = nnm_lu_data(h->tensor_desc(gw));
        memset(gwp, 0, sizeof(float) * (size_t)(s->num_embeddings * D));
        const int64_t *ip = nnm_lu_data(id);
        const float *gp = nnm_lu_data(h->tensor_desc(g));
        for (int64_t i = 0; i < n; i++) {
            if (s->has_padding && ip[i] == s->padding_idx)
                continue;
            float *row = gwp + ip[i] * D;
            for (int64_t k = 0; k < D; k++)
                row[k] += gp[i * D + k];
        }
        st = h->accumulate_grad(env, s->weight, gw);
    }
    h->tensor_release(gw);
    h->tensor_release(g);
    return st;
}

static int embedding_extra_repr(void *self, char *buf, size_t cap) {
    const embedding_state *s = self;
    if (s == NULL)
        return snprintf(buf, cap, "%s", "");
    if (s->has_padding)
        return snprintf(buf, cap, "%lld, %lld, padding_idx=%lld", (long long)s->num_embeddings,
                        (long long)s->embedding_dim, (long long)s->padding_idx);
    return snprintf(buf, cap, "%lld, %lld", (long long)s->num_embeddings,
                    (long long)s->embedding_dim);
}

static const nnm_config_field embedding_config[] = {
    {"num_embeddings", NNM_CONFIG_INT, NNM_CONFIG_REQUIRED, "size of the table (> 0)"},
    {"embedding_dim", NNM_CONFIG_INT, NNM_CONFIG_REQUIRED, "size of each vector (> 0)"},
    {"padding_idx", NNM_CONFIG_INT, 0, "row that stays zero and gets no gradient (default None)"},
};

static const nnm_layer_vtable embedding_layer = {
    .struct_size = sizeof(nnm_layer_vtable),
    .flags = 0,
    .name = "embedding",
    .display_name = "Embedding",
    .version_major = 1,
    .version_minor = 0,
    .version_patch = 0,
    .n_inputs = 1,
    .n_outputs = 1,
    .create = embedding_create,
    .destroy = embedding_destroy,
    .forward = embedding_forward,
    .extra_repr = embedding_extra_repr,
    .backward = embedding_backward,
    .config_fields = embedding_config,
    .n_config_fields = sizeof embedding_config / sizeof embedding_config[0],
};

static const nnm_layer_vtable *const embedding_layers[] = {&embedding_layer};

static const nnm_plugin_desc embedding_plugin = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
    .name = "embedding",
    .description = "Embedding lookup table (torch.nn.Embedding), i64 indices",
    .n_layers = 1,
    .n_backends = 0,
    .layers = embedding_layers,
    .backends = NULL,
    .domain = NNM_DOMAIN_NNMOD, /* nnmod's own library: the plain names */
};

NNM_PLUGIN_DEFINE(embedding_plugin)
