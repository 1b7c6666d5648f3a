/* plugins/pool/pool.c - the pooling layers of torch.nn, one plugin (the
 * 2-d ones below; max_pool1d/3d, avg_pool1d/3d and adaptive_avg_pool1d/3d
 * take the same keys over 1 or 3 spatial dims, avg_pool1d without
 * divisor_override, as PyTorch):
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
 * "int or tuple" keys take an integer or a list of one per spatial dim;
 * extra_repr prints them as they were given, as PyTorch does (AvgPool1d
 * always as 1-tuples). Input [N, C, *spatial] or [C, *spatial].
 * Stateless; forward is one host op (op_pool), so autograd and every backend
 * with the pool slots come from the runtime. */
#include <nnmod/plugin.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum pool_kind { POOL_MAX, POOL_AVG, POOL_ADAPTIVE };

/* An "int or tuple" value and how it was written. */
typedef struct pool_pair {
    int64_t v[3];
    int is_int;
} pool_pair;

typedef struct pool_state {
    int kind;
    int ns; /* spatial dims */
    pool_pair kernel, stride, padding, dilation, output_size;
    int ceil_mode, count_include_pad;
    int64_t divisor_override; /* 0: None */
    nnm_pool_params p;
} pool_state;

static const char *const pool_names[3][3] = {
    {"max_pool1d", "avg_pool1d", "adaptive_avg_pool1d"},
    {"max_pool2d", "avg_pool2d", "adaptive_avg_pool2d"},
    {"max_pool3d", "avg_pool3d", "adaptive_avg_pool3d"},
};
#define POOL_NAME(s) pool_names[(s)->ns - 1][(s)->kind]

/* Reads key into *out (dflt NULL: required); remembers whether it was an int. */
static nnm_status pool_read_pair(nnm_env *env, const char *key, const int64_t *dflt, pool_pair *out, int64_t min,
                                 int ns) {
    const nnm_host *h = env->host;
    int32_t type = NNM_CONFIG_INT;
    int present = h->config_type(env, key, &type) == NNM_OK;
    nnm_status st = h->config_int_or_ints(env, key, dflt, out->v, (size_t)ns);
    if (st) return st;
    out->is_int = !present || type == NNM_CONFIG_INT;
    for (int i = 0; i < ns; i++)
        if (out->v[i] < min || out->v[i] > ((int64_t)1 << 30))
            return h->set_error(env, NNM_E_INVALID, "%s must be >= %lld, got %lld", key, (long long)min,
                                (long long)out->v[i]);
    return NNM_OK;
}

static nnm_status pool_new(nnm_env *env, int kind, int ns, void **self) {
    const nnm_host *h = env->host;
    *self = NULL;
    if (!NNM_HOST_HAS(h, op_pool))
        return h->set_error(env, NNM_E_VERSION, "%s needs a host of ABI 1.3 (op_pool)", pool_names[ns - 1][kind]);
    pool_state s;
    memset(&s, 0, sizeof s);
    s.kind = kind;
    s.ns = ns;
    const int64_t zero = 0, one = 1;
    const int no = 0, yes = 1;
    nnm_status st;
    if (kind == POOL_ADAPTIVE) {
        if ((st = pool_read_pair(env, "output_size", NULL, &s.output_size, 1, ns))) return st;
    } else {
        int ret_idx = 0;
        int32_t t;
        if ((st = pool_read_pair(env, "kernel_size", NULL, &s.kernel, 1, ns))) return st;
        if (h->config_type(env, "stride", &t) == NNM_OK) {
            if ((st = pool_read_pair(env, "stride", NULL, &s.stride, 1, ns))) return st;
        } else {
            s.stride = s.kernel; /* stride=None */
        }
        if ((st = pool_read_pair(env, "padding", &zero, &s.padding, 0, ns)) ||
            (st = h->config_bool(env, "ceil_mode", &no, &s.ceil_mode)))
            return st;
        if (kind == POOL_MAX) {
            if ((st = pool_read_pair(env, "dilation", &one, &s.dilation, 1, ns)) ||
                (st = h->config_bool(env, "return_indices", &no, &ret_idx)))
                return st;
            if (ret_idx)
                return h->set_error(env, NNM_E_UNSUPPORTED,
                                    "%s: return_indices=true is not supported (one output)", POOL_NAME(&s));
        } else {
            s.dilation.v[0] = s.dilation.v[1] = s.dilation.v[2] = 1;
            if ((st = h->config_bool(env, "count_include_pad", &yes, &s.count_include_pad)) ||
                (ns != 1 && (st = h->config_int(env, "divisor_override", &zero, &s.divisor_override))))
                return st;
            if (ns != 1 && h->config_type(env, "divisor_override", &t) == NNM_OK && s.divisor_override == 0)
                return h->set_error(env, NNM_E_INVALID, "%s: divisor must be not zero", POOL_NAME(&s));
            if (s.divisor_override < 0)
                return h->set_error(env, NNM_E_INVALID, "%s: divisor_override must be > 0", POOL_NAME(&s));
            if (ns == 1) /* AvgPool1d keeps its arguments as 1-tuples */
                s.kernel.is_int = s.stride.is_int = s.padding.is_int = 0;
        }
        for (int i = 0; i < ns; i++)
            if (s.padding.v[i] > s.kernel.v[i] / 2)
                return h->set_error(env, NNM_E_INVALID, "%s: pad should be at most half of kernel size",
                                    POOL_NAME(&s));
    }
    s.p.struct_size = sizeof s.p;
    s.p.op = kind == POOL_MAX ? NNM_POOL_MAX : kind == POOL_AVG ? NNM_POOL_AVG : NNM_POOL_ADAPTIVE_AVG;
    s.p.n_spatial = ns;
    s.p.ceil_mode = s.ceil_mode;
    s.p.count_include_pad = s.count_include_pad;
    s.p.divisor_override = s.divisor_override;
    for (int i = 0; i < ns; i++) {
        s.p.kernel[i] = s.kernel.v[i];
        s.p.stride[i] = s.stride.v[i];
        s.p.padding[i] = s.padding.v[i];
        s.p.dilation[i] = s.dilation.v[i];
        s.p.output_size[i] = s.output_size.v[i];
    }
    pool_state *p = malloc(sizeof *p);
    if (!p) return h->set_error(env, NNM_E_NOMEM, "%s: out of memory", POOL_NAME(&s));
    *p = s;
    *self = p;
    return NNM_OK;
}

#define POOL_CREATE(fn, kind, ns)                                                                     \
    static nnm_status fn(nnm_env *env, void **self) { return pool_new(env, kind, ns, self); }
POOL_CREATE(max1_create, POOL_MAX, 1)
POOL_CREATE(max_create, POOL_MAX, 2)
POOL_CREATE(max3_create, POOL_MAX, 3)
POOL_CREATE(avg1_create, POOL_AVG, 1)
POOL_CREATE(avg_create, POOL_AVG, 2)
POOL_CREATE(avg3_create, POOL_AVG, 3)
POOL_CREATE(adaptive1_create, POOL_ADAPTIVE, 1)
POOL_CREATE(adaptive_create, POOL_ADAPTIVE, 2)
POOL_CREATE(adaptive3_create, POOL_ADAPTIVE, 3)

static void pool_destroy(void *self) { free(self); }

static nnm_status pool_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in, nnm_tensor **out,
                               uint32_t n_out) {
    const nnm_host *h = env->host;
    const pool_state *s = self;
    if (n_in != 1 || n_out != 1 || !in[0])
        return h->set_error(env, NNM_E_SHAPE, "%s takes 1 input and 1 output", POOL_NAME(s));
    const nnm_tensor_desc *d = h->tensor_desc(in[0]);
    if (d->ndim != s->ns + 1 && d->ndim != s->ns + 2)
        return h->set_error(env, NNM_E_SHAPE, "%s: expected %dD or %dD input, got %dD", POOL_NAME(s), s->ns + 1,
                            s->ns + 2, (int)d->ndim);
    return h->op_pool(env, in[0], &s->p, out);
}

static int pool_pair_str(char *buf, size_t cap, const pool_pair *p, int ns) {
    if (p->is_int) return snprintf(buf, cap, "%lld", (long long)p->v[0]);
    if (ns == 1) return snprintf(buf, cap, "(%lld,)", (long long)p->v[0]);
    if (ns == 2) return snprintf(buf, cap, "(%lld, %lld)", (long long)p->v[0], (long long)p->v[1]);
    return snprintf(buf, cap, "(%lld, %lld, %lld)", (long long)p->v[0], (long long)p->v[1], (long long)p->v[2]);
}

static int pool_extra_repr(void *self, char *buf, size_t cap) {
    const pool_state *s = self;
    char k[48], st[48], pd[48], dl[48];
    if (s->kind == POOL_ADAPTIVE) {
        pool_pair_str(k, sizeof k, &s->output_size, s->ns);
        return snprintf(buf, cap, "output_size=%s", k);
    }
    pool_pair_str(k, sizeof k, &s->kernel, s->ns);
    pool_pair_str(st, sizeof st, &s->stride, s->ns);
    pool_pair_str(pd, sizeof pd, &s->padding, s->ns);
    if (s->kind == POOL_AVG) return snprintf(buf, cap, "kernel_size=%s, stride=%s, padding=%s", k, st, pd);
    pool_pair_str(dl, sizeof dl, &s->dilation, s->ns);
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
static const nnm_config_field avg1_config[] = {
    {"kernel_size", NNM_CONFIG_INT_OR_INTS, NNM_CONFIG_REQUIRED, "window size"},
    {"stride", NNM_CONFIG_INT_OR_INTS, 0, "default: kernel_size"},
    {"padding", NNM_CONFIG_INT_OR_INTS, 0, "implicit zero padding, default 0"},
    {"ceil_mode", NNM_CONFIG_BOOL, 0, "round the output size up, default false"},
    {"count_include_pad", NNM_CONFIG_BOOL, 0, "padded zeros count in the average, default true"},
};
static const nnm_config_field adaptive_config[] = {
    {"output_size", NNM_CONFIG_INT_OR_INTS, NNM_CONFIG_REQUIRED, "target size per spatial dim"},
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
POOL_LAYER(max1_layer, "max_pool1d", "MaxPool1d", max1_create, max_config);
POOL_LAYER(avg1_layer, "avg_pool1d", "AvgPool1d", avg1_create, avg1_config);
POOL_LAYER(adaptive1_layer, "adaptive_avg_pool1d", "AdaptiveAvgPool1d", adaptive1_create, adaptive_config);
POOL_LAYER(max3_layer, "max_pool3d", "MaxPool3d", max3_create, max_config);
POOL_LAYER(avg3_layer, "avg_pool3d", "AvgPool3d", avg3_create, avg_config);
POOL_LAYER(adaptive3_layer, "adaptive_avg_pool3d", "AdaptiveAvgPool3d", adaptive3_create, adaptive_config);

static const nnm_layer_vtable *const pool_layers[] = {&max_layer,  &avg_layer,  &adaptive_layer,
                                                      &max1_layer, &avg1_layer, &adaptive1_layer,
                                                      &max3_layer, &avg3_layer, &adaptive3_layer};

static const nnm_plugin_desc pool_plugin = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
    .name = "pool",
    .description = "Pooling (torch.nn.MaxPool1d/2d/3d, AvgPool1d/2d/3d, AdaptiveAvgPool1d/2d/3d) over op_pool",
    .n_layers = sizeof pool_layers / sizeof pool_layers[0],
    .layers = pool_layers,
};

NNM_PLUGIN_DEFINE(pool_plugin)
