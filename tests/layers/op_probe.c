/* tests/layers/op_probe.c - a test fixture plugin (never installed): layer
 * "op_probe" runs ONE host op of ABI 1.3 on its inputs, chosen by config, so
 * the golden/gradcheck runner (test_layers_golden.c) drives every new host op
 * through the real call path, autograd included.
 *
 * Config ("op" picks the rest): unary {code, alpha} | bmm | permute {perm} |
 * concat {dim} | slice {dim, start, length} | softmax {dim, log} | where |
 * masked_fill {value} (where(in[1], full(value), in[0])) | full {shape,
 * value} | rand {dist, a, b, shape} | update {alpha, beta} (in[0] updated in
 * place, returned) | batch_norm {bn_flags, training, momentum, eps} (1.4:
 * inputs x, then running_mean and running_var when bn_flags & 1, weight when
 * bn_flags & 2, bias when bn_flags & 4) | index_select {dim, ints} (1.5:
 * the indices `ints` through tensor_from_host, or the i64 input in[1] when
 * `ints` is absent) | layer_norm {bn_flags, dim, eps} (1.5: inputs x, then
 * residual when bn_flags & 1, weight when & 2, bias when & 4; dim is
 * normalized_ndim). */
#include <nnmod/plugin.h>

#include <stdlib.h>
#include <string.h>

typedef struct probe {
    char op[16];
    int64_t code, dim, start, length, log, dist;
    double alpha, beta, value, a, b;
    int64_t ints[8];
    size_t n_ints;
    nnm_conv_params conv;
    nnm_pool_params pool;
    int64_t bn_flags, training;
    double momentum, eps;
} probe;

/* conv/pool geometry: "ns" spatial dims; lists of ns entries (or one int). */
static nnm_status probe_geometry(nnm_env *env, probe *s) {
    const nnm_host *h = env->host;
    const int64_t one = 1, zero = 0;
    int64_t ns = 2, groups = 1, tr = 0, pool_op = 0, ceil = 0, cip = 1, div = 0, pe[3];
    nnm_status st;
    if ((st = h->config_int(env, "ns", &ns, &ns)) || ns < 1 || ns > 3)
        return st ? st : h->set_error_msg(env, NNM_E_INVALID, "op_probe: ns");
    size_t n = (size_t)ns;
    if ((st = h->config_int(env, "groups", &one, &groups)) || (st = h->config_int(env, "transposed", &zero, &tr)) ||
        (st = h->config_int(env, "pool_op", &zero, &pool_op)) || (st = h->config_int(env, "ceil_mode", &zero, &ceil)) ||
        (st = h->config_int(env, "count_include_pad", &one, &cip)) ||
        (st = h->config_int(env, "divisor_override", &zero, &div)) ||
        (st = h->config_int_or_ints(env, "stride", &one, s->conv.stride, n)) ||
        (st = h->config_int_or_ints(env, "padding", &zero, s->conv.padding, n)) ||
        (st = h->config_int_or_ints(env, "dilation", &one, s->conv.dilation, n)) ||
        (st = h->config_int_or_ints(env, "output_padding", &zero, s->conv.output_padding, n)) ||
        (st = h->config_int_or_ints(env, "kernel", &one, s->pool.kernel, n)) ||
        (st = h->config_int_or_ints(env, "output_size", &one, s->pool.output_size, n)))
        return st;
    int32_t t;
    int have_pe = h->config_type(env, "padding_end", &t) == NNM_OK;
    if (have_pe && (st = h->config_int_or_ints(env, "padding_end", NULL, pe, n))) return st;
    s->conv.struct_size = sizeof s->conv;
    s->conv.n_spatial = (int32_t)ns;
    s->conv.groups = (int32_t)groups;
    s->conv.transposed = (int32_t)tr;
    for (size_t i = 0; i < n; i++) s->conv.padding_end[i] = have_pe ? pe[i] : s->conv.padding[i];
    s->pool.struct_size = sizeof s->pool;
    s->pool.op = (int32_t)pool_op;
    s->pool.n_spatial = (int32_t)ns;
    s->pool.ceil_mode = (int32_t)ceil;
    s->pool.count_include_pad = (int32_t)cip;
    s->pool.divisor_override = div;
    for (size_t i = 0; i < n; i++) {
        s->pool.stride[i] = s->conv.stride[i];
        s->pool.padding[i] = s->conv.padding[i];
        s->pool.dilation[i] = s->conv.dilation[i];
    }
    return NNM_OK;
}

static nnm_status probe_create(nnm_env *env, void **self) {
    const nnm_host *h = env->host;
    if (!NNM_HOST_HAS(h, op_update))
        return h->set_error(env, NNM_E_VERSION, "op_probe needs a host of ABI 1.3");
    probe s;
    memset(&s, 0, sizeof s);
    const char *op = NULL;
    const int64_t zero = 0, minus1 = -1;
    const double dzero = 0.0, one = 1.0;
    const int no = 0;
    int lg = 0;
    nnm_status st;
    if ((st = h->config_str(env, "op", NULL, &op)) || (st = h->config_int(env, "code", &zero, &s.code)) ||
        (st = h->config_int(env, "dim", &minus1, &s.dim)) || (st = h->config_int(env, "start", &zero, &s.start)) ||
        (st = h->config_int(env, "length", &zero, &s.length)) || (st = h->config_bool(env, "log", &no, &lg)) ||
        (st = h->config_int(env, "dist", &zero, &s.dist)) || (st = h->config_float(env, "alpha", &dzero, &s.alpha)) ||
        (st = h->config_float(env, "beta", &one, &s.beta)) || (st = h->config_float(env, "value", &dzero, &s.value)) ||
        (st = h->config_float(env, "a", &dzero, &s.a)) || (st = h->config_float(env, "b", &one, &s.b)))
        return st;
    s.log = lg;
    const double mom = 0.1, eps = 1e-5;
    if ((st = h->config_int(env, "bn_flags", &zero, &s.bn_flags)) ||
        (st = h->config_int(env, "training", &zero, &s.training)) ||
        (st = h->config_float(env, "momentum", &mom, &s.momentum)) || (st = h->config_float(env, "eps", &eps, &s.eps)))
        return st;
    if ((st = probe_geometry(env, &s))) return st;
    int32_t type = 0;
    if (h->config_type(env, "ints", &type) == NNM_OK &&
        (st = h->config_ints(env, "ints", s.ints, 8, &s.n_ints)))
        return st;
    if (strlen(op) >= sizeof s.op) return h->set_error_msg(env, NNM_E_INVALID, "op_probe: op name too long");
    memcpy(s.op, op, strlen(op) + 1);
    probe *p = malloc(sizeof *p);
    if (!p) return h->set_error_msg(env, NNM_E_NOMEM, "op_probe: out of memory");
    *p = s;
    *self = p;
    return NNM_OK;
}

static void probe_destroy(void *self) { free(self); }

static nnm_status probe_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in,
                                nnm_tensor **out, uint32_t n_out) {
    const nnm_host *h = env->host;
    const probe *s = self;
    if (n_out != 1) return h->set_error_msg(env, NNM_E_SHAPE, "op_probe has one output");
    const char *op = s->op;
    if (!strcmp(op, "unary")) return h->op_unary(env, (int32_t)s->code, in[0], s->alpha, out);
    if (!strcmp(op, "bmm")) return h->op_bmm(env, in[0], in[1], out);
    if (!strcmp(op, "permute")) {
        int32_t perm[8];
        for (size_t i = 0; i < s->n_ints; i++) perm[i] = (int32_t)s->ints[i];
        return h->op_permute(env, in[0], perm, (int32_t)s->n_ints, out);
    }
    if (!strcmp(op, "concat")) return h->op_concat(env, in, n_in, (int32_t)s->dim, out);
    if (!strcmp(op, "slice")) return h->op_slice(env, in[0], (int32_t)s->dim, s->start, s->length, out);
    if (!strcmp(op, "softmax")) return h->op_softmax(env, in[0], (int32_t)s->dim, (int)s->log, out);
    if (!strcmp(op, "where")) return h->op_where(env, in[0], in[1], in[2], out);
    if (!strcmp(op, "masked_fill")) {
        int64_t one[1] = {1};
        nnm_tensor *v = NULL;
        nnm_status st = h->op_full(env, 1, one, s->value, &v);
        if (!st) st = h->op_where(env, in[1], v, in[0], out);
        h->tensor_release(v);
        return st;
    }
    if (!strcmp(op, "full")) return h->op_full(env, (int32_t)s->n_ints, s->ints, s->value, out);
    if (!strcmp(op, "rand"))
        return h->op_rand(env, (int32_t)s->dist, s->a, s->b, (int32_t)s->n_ints, s->ints, out);
    if (!strcmp(op, "conv")) return h->op_conv(env, in[0], in[1], n_in > 2 ? in[2] : NULL, &s->conv, out);
    if (!strcmp(op, "pool")) return h->op_pool(env, in[0], &s->pool, out);
    if (!strcmp(op, "update")) {
        nnm_status st = h->op_update(env, in[0], n_in > 1 ? in[1] : NULL, s->alpha, s->beta);
        if (st) return st;
        h->tensor_retain(in[0]);
        out[0] = in[0];
        return NNM_OK;
    }
    if (!strcmp(op, "batch_norm")) {
        if (!NNM_HOST_HAS(h, op_batch_norm)) return h->set_error_msg(env, NNM_E_VERSION, "op_probe: host < 1.4");
        nnm_tensor *t[5] = {NULL, NULL, NULL, NULL, NULL}; /* x, running_mean, running_var, weight, bias */
        uint32_t k = 0;
        t[0] = k < n_in ? in[k++] : NULL;
        if (s->bn_flags & 1) t[1] = k < n_in ? in[k++] : NULL, t[2] = k < n_in ? in[k++] : NULL;
        if (s->bn_flags & 2) t[3] = k < n_in ? in[k++] : NULL;
        if (s->bn_flags & 4) t[4] = k < n_in ? in[k++] : NULL;
        const nnm_batch_norm_params p = {sizeof p, (int32_t)s->training, s->momentum, s->eps};
        return h->op_batch_norm(env, t[0], t[1], t[2], t[3], t[4], &p, out);
    }
    if (!strcmp(op, "layer_norm")) { /* 1.5: x, then residual (bn_flags & 1), weight (& 2), bias (& 4); dim = normalized_ndim */
        if (!NNM_HOST_HAS(h, op_layer_norm)) return h->set_error_msg(env, NNM_E_VERSION, "op_probe: host < 1.5");
        nnm_tensor *t[4] = {NULL, NULL, NULL, NULL};
        uint32_t k = 0;
        t[0] = k < n_in ? in[k++] : NULL;
        for (int f = 0; f < 3; f++)
            if (s->bn_flags & (1 << f)) t[1 + f] = k < n_in ? in[k++] : NULL;
        const nnm_layer_norm_params p = {sizeof p, (int32_t)s->dim, s->eps};
        return h->op_layer_norm(env, t[0], t[1], t[2], t[3], &p, out);
    }
    if (!strcmp(op, "index_select")) {
        if (!NNM_HOST_HAS(h, op_index_select)) return h->set_error_msg(env, NNM_E_VERSION, "op_probe: host < 1.5");
        if (n_in > 1) return h->op_index_select(env, in[0], (int32_t)s->dim, in[1], out);
        const int64_t m = (int64_t)s->n_ints;
        const nnm_dtype i64 = {NNM_DTYPE_INT, 64, 1};
        nnm_tensor *idx = NULL;
        nnm_status st = h->tensor_from_host(env, 1, &m, i64, s->ints, &idx);
        if (!st) st = h->op_index_select(env, in[0], (int32_t)s->dim, idx, out);
        h->tensor_release(idx);
        return st;
    }
    return h->set_error_msg(env, NNM_E_INVALID, "op_probe: unknown op");
}

static const nnm_config_field probe_config[] = {
    {"op", NNM_CONFIG_STR, NNM_CONFIG_REQUIRED, NULL}, {"code", NNM_CONFIG_INT, 0, NULL},
    {"dim", NNM_CONFIG_INT, 0, NULL},   {"start", NNM_CONFIG_INT, 0, NULL},
    {"length", NNM_CONFIG_INT, 0, NULL}, {"log", NNM_CONFIG_BOOL, 0, NULL},
    {"dist", NNM_CONFIG_INT, 0, NULL},  {"alpha", NNM_CONFIG_FLOAT, 0, NULL},
    {"beta", NNM_CONFIG_FLOAT, 0, NULL}, {"value", NNM_CONFIG_FLOAT, 0, NULL},
    {"a", NNM_CONFIG_FLOAT, 0, NULL},   {"b", NNM_CONFIG_FLOAT, 0, NULL},
    {"ints", NNM_CONFIG_INTS, 0, NULL}, {"ns", NNM_CONFIG_INT, 0, NULL},
    {"groups", NNM_CONFIG_INT, 0, NULL}, {"transposed", NNM_CONFIG_INT, 0, NULL},
    {"pool_op", NNM_CONFIG_INT, 0, NULL}, {"ceil_mode", NNM_CONFIG_INT, 0, NULL},
    {"count_include_pad", NNM_CONFIG_INT, 0, NULL}, {"divisor_override", NNM_CONFIG_INT, 0, NULL},
    {"stride", NNM_CONFIG_INT_OR_INTS, 0, NULL}, {"padding", NNM_CONFIG_INT_OR_INTS, 0, NULL},
    {"padding_end", NNM_CONFIG_INT_OR_INTS, 0, NULL}, {"dilation", NNM_CONFIG_INT_OR_INTS, 0, NULL},
    {"output_padding", NNM_CONFIG_INT_OR_INTS, 0, NULL}, {"kernel", NNM_CONFIG_INT_OR_INTS, 0, NULL},
    {"output_size", NNM_CONFIG_INT_OR_INTS, 0, NULL}, {"bn_flags", NNM_CONFIG_INT, 0, NULL},
    {"training", NNM_CONFIG_INT, 0, NULL}, {"momentum", NNM_CONFIG_FLOAT, 0, NULL},
    {"eps", NNM_CONFIG_FLOAT, 0, NULL},
};

static const nnm_layer_vtable probe_layer = {
    .struct_size = sizeof(nnm_layer_vtable),
    .name = "op_probe",
    .version_major = 1,
    .n_inputs = NNM_ARITY_ANY,
    .n_outputs = 1,
    .create = probe_create,
    .destroy = probe_destroy,
    .forward = probe_forward,
    .config_fields = probe_config,
    .n_config_fields = sizeof probe_config / sizeof probe_config[0],
};

static const nnm_layer_vtable *const probe_layers[] = {&probe_layer};
static const nnm_plugin_desc probe_plugin = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
    .name = "op_probe",
    .description = "test fixture: one ABI 1.3 or 1.4 host op per module",
    .n_layers = 1,
    .layers = probe_layers,
};

NNM_PLUGIN_DEFINE(probe_plugin)
