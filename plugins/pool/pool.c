/* plugins/pool/pool.c - the 2-d pooling layers of torch.nn, one plugin:
 *
 *   max_pool2d          (MaxPool2d)          kernel_size, stride = kernel_size,
 *                                            padding = 0, dilation = 1,
 *                                            return_indices = false (true is
 *                                            refused: one output), ceil_mode = false
 *   avg_pool2d          (AvgPool2d)          kernel_size, stride = kernel_size,
 *                                            padding = 0, ceil_mode = false,
 *                                            count_include_pad = true,
 *                                            divisor_override = none
 *   adaptive_avg_pool2d (AdaptiveAvgPool2d)  output_size (PyTorch's None
 *                                            entries are not supported)
 *
 * "int or tuple" keys take an integer or a list of two; extra_repr prints
 * them as they were given, as PyTorch does. Input [N, C, H, W] or [C, H, W].
 * Stateless; forward is one host op (op_pool), so autograd and every backend
 * with the pool slots come from the runtime. */
#include <nnmod/plugin.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum pool_kind { POOL_MAX, POOL_AVG, POOL_ADAPTIVE };

/* An "int or tuple" value and how it was written. */
typedef struct pool_pair {
    int64_t v[2];
    int is_int;
} pool_pair;

typedef struct pool_state {
    int kind;
    pool_pair kernel, stride, padding, dilation, output_size;
    int ceil_mode, count_include_pad;
    int64_t divisor_override; /* 0: None */
    nnm_pool_params p;
} pool_state;

static const char *const pool_names[] = {"max_pool2d", "avg_pool2d", "adaptive_avg_pool2d"};

/* Reads key into *out (dflt NULL: required); remembers whether it was an int. */
static nnm_status pool_read_pair(nnm_env *env, const char *key, const int64_t *dflt, pool_pair *out, int64_t min) {
    const nnm_host *h = env->host;
    int32_t type = NNM_CONFIG_INT;
    int present = h->config_type(env, key, &type) == NNM_OK;
    nnm_status st = h->config_int_or_ints(env, key, dflt, out->v, 2);
    if (st) return st;
    out->is_int = !present || type == NNM_CONFIG_INT;
    for (int i = 0; i < 2; i++)
        if (out->v[i] < min || out->v[i] > ((int64_t)1 << 30))
            return h->set_error(env, NNM_E_INVALID, "%s must be >= %lld, got %lld", key, (long long)min,
                                (long long)out->v[i]);
    return NNM_OK;
}

static nnm_status pool_new(nnm_env *env, int kind, void **self) {
    const nnm_host *h = env->host;
    *self = NULL;
    if (!NNM_HOST_HAS(h, op_pool))
        return h->set_error(env, NNM_E_VERSION, "%s needs a host of ABI 1.3 (op_pool)", pool_names[kind]);
    pool_state s;
    memset(&s, 0, sizeof s);
    s.kind = kind;
    const int64_t zero = 0, one = 1;
    const int no = 0, yes = 1;
    nnm_status st;
    if (kind == POOL_ADAPTIVE) {
        if ((st = pool_read_pair(env, "output_size", NULL, &s.output_size, 1))) return st;
    } else {
        int ret_idx = 0;
        int32_t t;
        if ((st = pool_read_pair(env, "kernel_size", NULL, &s.kernel, 1))) return st;
        if (h->config_type(env, "stride", &t) == NNM_OK) {
            if ((st = pool_read_pair(env, "stride", NULL, &s.stride, 1))) return st;
        } else {
            s.stride = s.kernel; /* stride=None */
        }
        if ((st = pool_read_pair(env, "padding", &zero, &s.padding, 0)) ||
            (st = h->config_bool(env, "ceil_mode", &no, &s.ceil_mode)))
            return st;
        if (kind == POOL_MAX) {
            if ((st = pool_read_pair(env, "dilation", &one, &s.dilation, 1)) ||
                (st = h->config_bool(env, "return_indices", &no, &ret_idx)))
                return st;
            if (ret_idx)
                return h->set_error(env, NNM_E_UNSUPPORTED,
                                    "max_pool2d: return_indices=true is not supported (one output)");
        } else {
            s.dilation.v[0] = s.dilation.v[1] = 1;
            if ((st = h->config_bool(env, "count_include_pad", &yes, &s.count_include_pad)) ||
                (st = h->config_int(env, "divisor_override", &zero, &s.divisor_override)))
                return st;
            if (h->config_type(env, "divisor_override", &t) == NNM_OK && s.divisor_override == 0)
                return h->set_error(env, NNM_E_INVALID, "avg_pool2d: divisor must be not zero");
            if (s.divisor_override < 0)
                return h->set_error(env, NNM_E_INVALID, "avg_pool2d: divisor_override must be > 0");
        }
        for (int i = 0; i < 2; i++)
            if (s.padding.v[i] > s.kernel.v[i] / 2)
                return h->set_error(env, NNM_E_INVALID, "%s: pad should be at most half of kernel size",
                                    pool_names[kind]);
    }
    s.p.struct_size = sizeof s.p;
    s.p.op = kind == POOL_MAX ? NNM_POOL_MAX : kind == POOL_AVG ? NNM_POOL_AVG : NNM_POOL_ADAPTIVE_AVG;
    s.p.n_spatial = 2;
    s.p.ceil_mode = s.ceil_mode;
    s.p.count_include_pad = s.count_include_pad;
    s.p.divisor_override = s.divisor_override;
    for (int i = 0; i < 2; i++) {
        s.p.kernel[i] = s.kernel.v[i];
        s.p.stride[i] = s.stride.v[i];
        s.p.padding[i] = s.padding.v[i];
        s.p.dilation[i] = s.dilation.v[i];
        s.p.output_size[i] = s.output_size.v[i];
    }
    pool_state *p = malloc(sizeof *p);
    if (!p) return h->set_error(env, NNM_E_NOMEM, "%s: out of memory", pool_names[kind]);
    *p = s;
    *self = p;
    return NNM_OK;
}

static nnm_status max_create(nnm_env *env, void **self) { return pool_new(env, POOL_MAX, self); }
static nnm_status avg_create(nnm_env *env, void **self) { return pool_new(env, POOL_AVG, self); }
static nnm_status adaptive_create(nnm_env *env, void **self) { return pool_new(env, POOL_ADAPTIVE, self); }

static void pool_destroy(void *self) { free(self); }

static nnm_status pool_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in, nnm_tensor **out,
                               uint32_t n_out) {
    const nnm_host *h = env->host;
    const pool_state *s = self;
    if (n_in != 1 || n_out != 1 || !in[0])
        return h->set_error(env, NNM_E_SHAPE, "%s takes 1 input and 1 output", pool_names[s->kind]);
    const nnm_tensor_desc *d = h->tensor_desc(in[0]);
    if (d->ndim != 3 && d->ndim != 4)
        return h->set_error(env, NNM_E_SHAPE, "%s: expected 3D or 4D input, got %dD", pool_names[s->kind],
                            (int)d->ndim);
    return h->op_pool(env, in[0], &s->p, out);
}

static int pool_pair_str(char *buf, size_t cap, const pool_pair *p) {
    if (p->is_int) return snprintf(buf, cap, "%lld", (long long)p->v[0]);
    return snprintf(buf, cap, "(%lld, %lld)", (long long)p->v[0], (long long)p->v[1]);
}

static int pool_extra_repr(void *self, char *buf, size_t cap) {
    const pool_state *s = self;
    char k[48], st[48], pd[48], dl[48];
    if (s->kind == POOL_ADAPTIVE) {
        pool_pair_str(k, sizeof k, &s->output_size);
        return snprintf(buf, cap, "output_size=%s", k);
    }
    pool_pair_str(k, sizeof k, &s->kernel);
    pool_pair_str(st, sizeof st, &s->stride);
    pool_pair_str(pd, sizeof pd, &s->padding);
    if (s->kind == POOL_AVG) return snprintf(buf, cap, "kernel_size=%s, stride=%s, padding=%s", k, st, pd);
    pool_pair_str(dl, sizeof dl, &s->dilation);
    return snprintf(buf, cap, "kernel_size=%s, stride=%s, padding=%s, dilation=%s, ceil_mode=%s", k, st, pd, dl,
                    s->ceil_mode ? "True" : "False");
}

static const nnm_config_field max_config[] = {
    {"kernel_size", NNM_CONFIG_INT_OR_INTS, NNM_CONFIG_REQUIRED, "window size"},
    {"stride", NNM_CONFIG_INT_OR_INTS, 0, "default: kernel_size"},
    {"padding", NNM_CONFIG_INT_OR_INTS, 0, "implicit -inf padding, default 0"},
    {"dilation", NNM_CONFIG_INT_OR_INTS, 0, "default 1"},
    {"return_indices", NNM_CONFIG_BOOL, 0, "only false"},
    {"ceil_mode", NNM_CONFIG_BOOL, 0, "round the output size up, default false"},
};
static const nnm_config_field avg_config[] = {
    {"kernel_size", NNM_CONFIG_INT_OR_INTS, NNM_CONFIG_REQUIRED, "window size"},
    {"stride", NNM_CONFIG_INT_OR_INTS, 0, "default: kernel_size"},
    {"padding", NNM_CONFIG_INT_OR_INTS, 0, "implicit zero padding, default 0"},
    {"ceil_mode", NNM_CONFIG_BOOL, 0, "round the output size up, default false"},
    {"count_include_pad", NNM_CONFIG_BOOL, 0, "padded zeros count in the average, default true"},
    {"divisor_override", NNM_CONFIG_INT, 0, "divisor instead of the window size, default none"},
};
static const nnm_config_field adaptive_config[] = {
    {"output_size", NNM_CONFIG_INT_OR_INTS, NNM_CONFIG_REQUIRED, "target size H x W"},
};

#define POOL_LAYER(var, lname, display, create_fn, cfg)                                               \
    static const nnm_layer_vtable var = {                                                             \
        .struct_size = sizeof(nnm_layer_vtable),                                                      \
        .name = lname,                                                                                \
        .version_major = 1,                                                                           \
        .n_inputs = 1,                                                                                \
        .n_outputs = 1,                                                                               \
        .create = create_fn,                                                                          \
        .destroy = pool_destroy,                                                                      \
        .forward = pool_forward,                                                                      \
        .extra_repr = pool_extra_repr,                                                                \
        .config_fields = cfg,                                                                         \
        .n_config_fields = sizeof cfg / sizeof cfg[0],                                                \
        .display_name = display,                                                                      \
    }

POOL_LAYER(max_layer, "max_pool2d", "MaxPool2d", max_create, max_config);
POOL_LAYER(avg_layer, "avg_pool2d", "AvgPool2d", avg_create, avg_config);
POOL_LAYER(adaptive_layer, "adaptive_avg_pool2d", "AdaptiveAvgPool2d", adaptive_create, adaptive_config);

static const nnm_layer_vtable *const pool_layers[] = {&max_layer, &avg_layer, &adaptive_layer};

static const nnm_plugin_desc pool_plugin = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
    .name = "pool",
    .description = "2-d pooling (torch.nn.MaxPool2d, AvgPool2d, AdaptiveAvgPool2d) over op_pool",
    .n_layers = 3,
    .layers = pool_layers,
    .domain = NNM_DOMAIN_NNMOD, /* nnmod's own library: the plain names */
};

NNM_PLUGIN_DEFINE(pool_plugin)
