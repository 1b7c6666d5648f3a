/* plugins/conv/conv.c - the convolution layers of torch.nn, one plugin:
 *
 *   conv1d           (Conv1d)           x [N, C_in, L]    or [C_in, L]
 *   conv2d           (Conv2d)           x [N, C_in, H, W] or [C_in, H, W]
 *   conv3d           (Conv3d)           x [N, C_in, D, H, W] or [C_in, D, H, W]
 *   conv_transpose1d/2d/3d (ConvTranspose1d/2d/3d), inputs as above
 *
 * Config (PyTorch's constructor arguments and defaults; "int or tuple" keys
 * take an integer or a list of one integer per spatial dim):
 *   in_channels, out_channels  int, required
 *   kernel_size                int or tuple, required
 *   stride = 1, dilation = 1   int or tuple
 *   padding = 0                int or tuple; conv1d/conv2d also "valid" (0)
 *                              and "same" (stride 1 only; an uneven total
 *                              puts the extra zero after, as PyTorch)
 *   output_padding = 0         int or tuple (conv_transpose*)
 *   groups = 1                 divides both channel counts (groups ==
 *                              in_channels: depthwise)
 *   bias = true
 *   padding_mode = "zeros"     or (conv1d/2d/3d) "reflect", "replicate",
 *                              "circular": the input is padded with
 *                              op_index_select (ABI 1.5) and convolved
 *                              without padding, as PyTorch does
 *   functional = false         (1.1) F.conv2d(x, weight, bias, ...): the
 *                              layer declares no parameters and takes
 *                              the weight (of the shape below) and, as
 *                              a third input, the bias; so a weight the
 *                              graph computes (weight_norm, a fixed
 *                              blur kernel in a buffer, a standardised
 *                              weight) convolves, with its gradient
 * Parameters (PyTorch's state_dict names and init, kaiming_uniform_(a=sqrt(5))
 * = U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for the weight and the bias):
 *   weight [out, in / groups, *kernel]  (transposed: [in, out / groups, *kernel])
 *   bias   [out]
 * Forward is one host op (op_conv: im2col + the backend's gemm), so autograd
 * and every backend with the im2col/col2im slots come from the runtime. */
#include <nnmod/plugin.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum conv_kind { CONV_1D, CONV_2D, CONV_3D, CONV_T1D, CONV_T2D, CONV_T3D };

enum conv_pad_mode { PAD_ZEROS, PAD_REFLECT, PAD_REPLICATE, PAD_CIRCULAR };
static const char *const conv_pad_modes[] = {"zeros", "reflect", "replicate", "circular"};

typedef struct conv_state {
    int kind;
    int32_t ns;                 /* spatial dims */
    int64_t in_channels, out_channels, groups;
    int64_t kernel[3], stride[3], padding[3], dilation[3], output_padding[3];
    int pad_mode;               /* enum conv_pad_mode */
    int transposed;
    const char *padding_str;    /* "same" / "valid", or NULL for numbers */
    int bias;
    int functional;             /* weight (and bias) are inputs 1 (and 2) */
    int64_t wshape[5];          /* the weight's shape */
    nnm_conv_params p;          /* what forward hands to op_conv */
    nnm_tensor *weight, *b;     /* borrowed: owned by the module */
} conv_state;

static const char *const conv_names[] = {"conv1d",           "conv2d",           "conv3d",
                                         "conv_transpose1d", "conv_transpose2d", "conv_transpose3d"};

/* Largest channel count or kernel size accepted (keeps products far from overflow). */
#define CONV_MAX_DIM ((int64_t)1 << 24)

static nnm_status conv_positive(nnm_env *env, const char *layer, const char *key, const int64_t *v,
                                int32_t n, int64_t min) {
    for (int32_t i = 0; i < n; i++)
        if (v[i] < min || v[i] > CONV_MAX_DIM)
            return env->host->set_error(env, NNM_E_INVALID, "%s: %s must be in [%lld, %lld], got %lld",
                                        layer, key, (long long)min, (long long)CONV_MAX_DIM, (long long)v[i]);
    return NNM_OK;
}

/* padding: an int, a list, or (conv only) "same" / "valid". */
static nnm_status conv_read_padding(nnm_env *env, conv_state *s, const char *layer) {
    const nnm_host *h = env->host;
    int32_t type = 0;
    const int64_t zero = 0;
    if (h->config_type(env, "padding", &type) == NNM_OK && type == NNM_CONFIG_STR) {
        const char *v = NULL;
        nnm_status st = h->config_str(env, "padding", NULL, &v);
        if (st) return st;
        if (s->transposed)
            return h->set_error(env, NNM_E_INVALID, "%s: padding must be an int or a tuple, got \"%.32s\"",
                                layer, v);
        if (strcmp(v, "valid") == 0) {
            s->padding_str = "valid";
        } else if (strcmp(v, "same") == 0) {
            s->padding_str = "same";
        } else {
            return h->set_error(env, NNM_E_INVALID,
                                "%s: invalid padding string \"%.32s\", should be one of {'valid', 'same'}",
                                layer, v);
        }
        memset(s->padding, 0, sizeof s->padding);
        return NNM_OK;
    }
    nnm_status st = h->config_int_or_ints(env, "padding", &zero, s->padding, (size_t)s->ns);
    if (st) return st;
    return conv_positive(env, layer, "padding", s->padding, s->ns, 0);
}

static nnm_status conv_new(nnm_env *env, int kind, void **self) {
    const nnm_host *h = env->host;
    *self = NULL;
    if (!NNM_HOST_HAS(h, op_conv))
        return h->set_error(env, NNM_E_VERSION, "%s needs a host of ABI 1.3 (op_conv)", conv_names[kind]);
    const char *layer = conv_names[kind];
    conv_state s;
    memset(&s, 0, sizeof s);
    s.kind = kind;
    s.transposed = kind >= CONV_T1D;
    s.ns = (kind % 3) + 1;
    const size_t n = (size_t)s.ns;
    const int64_t one = 1, zero = 0;
    const int yes = 1, no = 0;
    const char *mode = NULL;
    nnm_status st;
    if ((st = h->config_int(env, "in_channels", NULL, &s.in_channels)) ||
        (st = h->config_int(env, "out_channels", NULL, &s.out_channels)) ||
        (st = h->config_int_or_ints(env, "kernel_size", NULL, s.kernel, n)) ||
        (st = h->config_int_or_ints(env, "stride", &one, s.stride, n)) ||
        (st = h->config_int_or_ints(env, "dilation", &one, s.dilation, n)) ||
        (st = h->config_int(env, "groups", &one, &s.groups)) || (st = h->config_bool(env, "bias", &yes, &s.bias)) ||
        (st = h->config_bool(env, "functional", &no, &s.functional)) ||
        (st = h->config_str(env, "padding_mode", "zeros", &mode)) || (st = conv_read_padding(env, &s, layer)))
        return st;
    if (s.transposed && (st = h->config_int_or_ints(env, "output_padding", &zero, s.output_padding, n)))
        return st;
    if ((st = conv_positive(env, layer, "in_channels", &s.in_channels, 1, 1)) ||
        (st = conv_positive(env, layer, "out_channels", &s.out_channels, 1, 1)) ||
        (st = conv_positive(env, layer, "kernel_size", s.kernel, s.ns, 1)) ||
        (st = conv_positive(env, layer, "stride", s.stride, s.ns, 1)) ||
        (st = conv_positive(env, layer, "dilation", s.dilation, s.ns, 1)) ||
        (st = conv_positive(env, layer, "output_padding", s.output_padding, s.ns, 0)) ||
        (st = conv_positive(env, layer, "groups", &s.groups, 1, 1)))
        return st;
    s.pad_mode = -1;
    for (int i = 0; i < 4; i++)
        if (strcmp(mode, conv_pad_modes[i]) == 0) s.pad_mode = i;
    if (s.pad_mode < 0)
        return h->set_error(env, NNM_E_INVALID,
                            "%s: padding_mode must be one of \"zeros\", \"reflect\", \"replicate\" or \"circular\", "
                            "got \"%.32s\"",
                            layer, mode);
    if (s.transposed && s.pad_mode != PAD_ZEROS)
        return h->set_error(env, NNM_E_INVALID, "%s: only \"zeros\" padding mode is supported", layer);
    if (s.pad_mode != PAD_ZEROS && !NNM_HOST_HAS(h, op_index_select))
        return h->set_error(env, NNM_E_VERSION, "%s: padding_mode \"%s\" needs a host of ABI 1.5 (op_index_select)",
                            layer, mode);
    if (s.in_channels % s.groups) return h->set_error(env, NNM_E_INVALID, "%s: in_channels must be divisible by groups", layer);
    if (s.out_channels % s.groups)
        return h->set_error(env, NNM_E_INVALID, "%s: out_channels must be divisible by groups", layer);
    for (int32_t i = 0; s.transposed && i < s.ns; i++)
        if (s.output_padding[i] >= s.stride[i] && s.output_padding[i] >= s.dilation[i])
            return h->set_error(env, NNM_E_INVALID, "%s: output padding must be smaller than either stride or dilation",
                                layer);
    s.p.struct_size = sizeof s.p;
    s.p.n_spatial = s.ns;
    s.p.groups = (int32_t)s.groups;
    s.p.transposed = s.transposed;
    for (int32_t i = 0; i < s.ns; i++) {
        s.p.stride[i] = s.stride[i];
        s.p.dilation[i] = s.dilation[i];
        s.p.output_padding[i] = s.output_padding[i];
        s.p.padding[i] = s.p.padding_end[i] = s.padding[i];
        if (s.padding_str && strcmp(s.padding_str, "same") == 0) {
            if (s.stride[i] != 1)
                return h->set_error(env, NNM_E_INVALID, "%s: padding='same' is not supported for strided convolutions",
                                    layer);
            const int64_t total = s.dilation[i] * (s.kernel[i] - 1);
            s.p.padding[i] = total / 2;
            s.p.padding_end[i] = total - total / 2;
        }
    }
    /* parameters: PyTorch's shapes and default init */
    int64_t wshape[5];
    int64_t kprod = 1;
    for (int32_t i = 0; i < s.ns && kprod <= CONV_MAX_DIM; i++) kprod *= s.kernel[i]; /* <= 2^48: no overflow */
    if (s.transposed) {
        wshape[0] = s.in_channels;
        wshape[1] = s.out_channels / s.groups;
    } else {
        wshape[0] = s.out_channels;
        wshape[1] = s.in_channels / s.groups;
    }
    for (int32_t i = 0; i < s.ns; i++) wshape[2 + i] = s.kernel[i];
    if (wshape[0] * wshape[1] > CONV_MAX_DIM * 64 || kprod > CONV_MAX_DIM)
        return h->set_error(env, NNM_E_LIMIT, "%s: weight too large", layer);
    const double bound = 1.0 / sqrt((double)(wshape[1] * kprod));
    memcpy(s.wshape, wshape, sizeof s.wshape);
    if (!s.functional &&
        (st = h->param_new(env, "weight", s.ns + 2, wshape, NNM_INIT_UNIFORM, -bound, bound, &s.weight)))
        return st;
    if (s.bias && !s.functional) {
        const int64_t bshape[1] = {s.out_channels};
        if ((st = h->param_new(env, "bias", 1, bshape, NNM_INIT_UNIFORM, -bound, bound, &s.b))) return st;
    }
    conv_state *p = malloc(sizeof *p);
    if (!p) return h->set_error(env, NNM_E_NOMEM, "%s: out of memory", layer);
    *p = s;
    *self = p;
    return NNM_OK;
}

static nnm_status conv1d_create(nnm_env *env, void **self) { return conv_new(env, CONV_1D, self); }
static nnm_status conv2d_create(nnm_env *env, void **self) { return conv_new(env, CONV_2D, self); }
static nnm_status conv3d_create(nnm_env *env, void **self) { return conv_new(env, CONV_3D, self); }
static nnm_status conv_t1d_create(nnm_env *env, void **self) { return conv_new(env, CONV_T1D, self); }
static nnm_status conv_t2d_create(nnm_env *env, void **self) { return conv_new(env, CONV_T2D, self); }
static nnm_status conv_t3d_create(nnm_env *env, void **self) { return conv_new(env, CONV_T3D, self); }

static void conv_destroy(void *self) { free(self); }

/* *out = x [N, C, *spatial] padded by s->p.padding / padding_end per
 * spatial dim in s->pad_mode (reflect, replicate, circular), as F.pad:
 * op_index_select with the reflected / clamped / wrapped indices, so the
 * gradient is index_add (PyTorch's). */
static nnm_status conv_pad_input(nnm_env *env, const conv_state *s, nnm_tensor *x, nnm_tensor **out) {
    const nnm_host *h = env->host;
    const nnm_dtype i64 = {NNM_DTYPE_INT, 64, 1};
    nnm_tensor *cur = x;
    h->tensor_retain(cur);
    nnm_status st = NNM_OK;
    for (int32_t i = 0; i < s->ns && !st; i++) {
        const int64_t n = h->tensor_desc(cur)->shape[2 + i], b = s->p.padding[i], a = s->p.padding_end[i];
        if (!a && !b) continue;
        if ((s->pad_mode == PAD_REFLECT && (b >= n || a >= n)) || (s->pad_mode == PAD_CIRCULAR && (b > n || a > n))) {
            st = h->set_error(env, NNM_E_SHAPE,
                              "%s: padding (%lld, %lld) is too large for spatial dim %d of size %lld with padding_mode "
                              "\"%s\"",
                              conv_names[s->kind], (long long)b, (long long)a, (int)i, (long long)n,
                              conv_pad_modes[s->pad_mode]);
            break;
        }
        const int64_t m = n + a + b;
        int64_t *idx = malloc((size_t)m * sizeof *idx);
        if (!idx) {
            st = h->set_error(env, NNM_E_NOMEM, "%s: out of memory", conv_names[s->kind]);
            break;
        }
        for (int64_t j = 0; j < m; j++) {
            const int64_t k = j - b;
            if (s->pad_mode == PAD_REFLECT)
                idx[j] = k < 0 ? -k : k >= n ? 2 * (n - 1) - k : k;
            else if (s->pad_mode == PAD_REPLICATE)
                idx[j] = k < 0 ? 0 : k >= n ? n - 1 : k;
            else
                idx[j] = ((k % n) + n) % n;
        }
        nnm_tensor *it = NULL, *y = NULL;
        st = h->tensor_from_host(env, 1, &m, i64, idx, &it);
        free(idx);
        if (!st) st = h->op_index_select(env, cur, 2 + i, it, &y);
        h->tensor_release(it);
        h->tensor_release(cur);
        cur = y;
    }
    if (st) {
        h->tensor_release(cur);
        return st;
    }
    *out = cur;
    return NNM_OK;
}

/* functional: inputs 1 and 2 as the weight (s->wshape, f32) and the bias
 * ([out_channels]); a 0-element bias is none. */
static nnm_status conv_operands(nnm_env *env, const conv_state *s, nnm_tensor *const *in, uint32_t n_in,
                                nnm_tensor **w, nnm_tensor **b) {
    const nnm_host *h = env->host;
    const char *layer = conv_names[s->kind];
    const nnm_tensor_desc *wd = h->tensor_desc(in[1]);
    int ok = wd->ndim == s->ns + 2;
    for (int32_t i = 0; ok && i < s->ns + 2; i++) ok = wd->shape[i] == s->wshape[i];
    if (!ok) {
        char got[96];
        size_t k = (size_t)snprintf(got, sizeof got, "[");
        for (int32_t i = 0; i < wd->ndim && i < 5 && k < sizeof got; i++)
            k += (size_t)snprintf(got + k, sizeof got - k, "%s%lld", i ? ", " : "", (long long)wd->shape[i]);
        if (k < sizeof got) snprintf(got + k, sizeof got - k, "]");
        return h->set_error(env, NNM_E_SHAPE,
                            "%s (functional): weight must be [%lld, %lld, kernel_size...] as configured, got %s",
                            layer, (long long)s->wshape[0], (long long)s->wshape[1], got);
    }
    *w = in[1];
    *b = NULL;
    if (n_in == 3 && in[2] && h->tensor_desc(in[2])->ndim != 1)
        return h->set_error(env, NNM_E_SHAPE, "%s (functional): bias must be 1-d [out_channels]", layer);
    if (n_in == 3 && in[2] && h->tensor_desc(in[2])->shape[0] != 0) {
        if (h->tensor_desc(in[2])->shape[0] != s->out_channels)
            return h->set_error(env, NNM_E_SHAPE, "%s (functional): bias must have %lld elements, got %lld", layer,
                                (long long)s->out_channels, (long long)h->tensor_desc(in[2])->shape[0]);
        *b = in[2];
    }
    return NNM_OK;
}

static nnm_status conv_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in, nnm_tensor **out,
                               uint32_t n_out) {
    const nnm_host *h = env->host;
    const conv_state *s = self;
    const char *layer = conv_names[s->kind];
    nnm_tensor *weight = s->weight, *bias = s->b;
    if (s->functional) {
        if ((n_in != 2 && n_in != 3) || n_out != 1 || !in[0] || !in[1])
            return h->set_error(env, NNM_E_SHAPE, "%s (functional) takes 2 or 3 inputs (x, weight, bias) and 1 output",
                                layer);
        nnm_status st = conv_operands(env, s, in, n_in, &weight, &bias);
        if (st) return st;
    } else if (n_in != 1 || n_out != 1 || !in[0]) {
        return h->set_error(env, NNM_E_SHAPE, "%s takes 1 input and 1 output", layer);
    }
    const nnm_tensor_desc *d = h->tensor_desc(in[0]);
    const int32_t batched = s->ns + 2, unbatched = s->ns + 1;
    if (d->ndim != batched && d->ndim != unbatched)
        return h->set_error(env, NNM_E_SHAPE, "%s: expected a %dD (unbatched) or %dD (batched) input, got %dD", layer,
                            (int)unbatched, (int)batched, (int)d->ndim);
    const int64_t c = d->shape[d->ndim == batched ? 1 : 0];
    if (c != s->in_channels)
        return h->set_error(env, NNM_E_SHAPE, "%s: expected input with %lld channels, got %lld", layer,
                            (long long)s->in_channels, (long long)c);
    if (d->ndim == batched && s->pad_mode == PAD_ZEROS) return h->op_conv(env, in[0], weight, bias, &s->p, out);
    /* unbatched: as PyTorch, add the batch dim and take it off again */
    int64_t shape[5] = {1};
    nnm_tensor *x = NULL, *y = NULL;
    nnm_status st;
    if (d->ndim == batched) {
        h->tensor_retain(in[0]);
        x = in[0];
        st = NNM_OK;
    } else {
        for (int32_t i = 0; i < d->ndim; i++) shape[1 + i] = d->shape[i];
        st = h->op_reshape(env, in[0], batched, shape, &x);
    }
    if (!st && s->pad_mode != PAD_ZEROS) {
        /* F.pad(x, padding, mode) then a convolution without padding */
        nnm_tensor *px = NULL;
        st = conv_pad_input(env, s, x, &px);
        h->tensor_release(x);
        x = px;
        if (!st) {
            nnm_conv_params p0 = s->p;
            memset(p0.padding, 0, sizeof p0.padding);
            memset(p0.padding_end, 0, sizeof p0.padding_end);
            if (d->ndim == batched) {
                st = h->op_conv(env, x, weight, bias, &p0, out);
                h->tensor_release(x);
                return st;
            }
            st = h->op_conv(env, x, weight, bias, &p0, &y);
        }
    } else if (!st) {
        st = h->op_conv(env, x, weight, bias, &s->p, &y);
    }
    if (!st) {
        const nnm_tensor_desc *yd = h->tensor_desc(y);
        st = h->op_reshape(env, y, unbatched, yd->shape + 1, out);
    }
    h->tensor_release(x);
    h->tensor_release(y);
    return st;
}

/* "(3, 3)" or "(3,)" as Python prints a tuple. */
static int conv_tuple(char *buf, size_t cap, const int64_t *v, int32_t n) {
    if (n == 1) return snprintf(buf, cap, "(%lld,)", (long long)v[0]);
    if (n == 2) return snprintf(buf, cap, "(%lld, %lld)", (long long)v[0], (long long)v[1]);
    return snprintf(buf, cap, "(%lld, %lld, %lld)", (long long)v[0], (long long)v[1], (long long)v[2]);
}

static int conv_all(const int64_t *v, int32_t n, int64_t x) {
    for (int32_t i = 0; i < n; i++)
        if (v[i] != x) return 0;
    return 1;
}

/* PyTorch's _ConvNd.extra_repr. */
static int conv_extra_repr(void *self, char *buf, size_t cap) {
    const conv_state *s = self;
    char k[48], st[48], t[48];
    conv_tuple(k, sizeof k, s->kernel, s->ns);
    conv_tuple(st, sizeof st, s->stride, s->ns);
    char out[512];
    size_t n = (size_t)snprintf(out, sizeof out, "%lld, %lld, kernel_size=%s, stride=%s", (long long)s->in_channels,
                                (long long)s->out_channels, k, st);
    if (s->padding_str) {
        n += (size_t)snprintf(out + n, sizeof out - n, ", padding=%s", s->padding_str);
    } else if (!conv_all(s->padding, s->ns, 0)) {
        conv_tuple(t, sizeof t, s->padding, s->ns);
        n += (size_t)snprintf(out + n, sizeof out - n, ", padding=%s", t);
    }
    if (!conv_all(s->dilation, s->ns, 1)) {
        conv_tuple(t, sizeof t, s->dilation, s->ns);
        n += (size_t)snprintf(out + n, sizeof out - n, ", dilation=%s", t);
    }
    if (!conv_all(s->output_padding, s->ns, 0)) {
        conv_tuple(t, sizeof t, s->output_padding, s->ns);
        n += (size_t)snprintf(out + n, sizeof out - n, ", output_padding=%s", t);
    }
    if (s->groups != 1) n += (size_t)snprintf(out + n, sizeof out - n, ", groups=%lld", (long long)s->groups);
    if (!s->bias) n += (size_t)snprintf(out + n, sizeof out - n, ", bias=False");
    if (s->pad_mode != PAD_ZEROS) snprintf(out + n, sizeof out - n, ", padding_mode=%s", conv_pad_modes[s->pad_mode]);
    return snprintf(buf, cap, "%s", out);
}

#define CONV_COMMON_FIELDS                                                                            \
    {"in_channels", NNM_CONFIG_INT, NNM_CONFIG_REQUIRED, "channels of the input"},                    \
        {"out_channels", NNM_CONFIG_INT, NNM_CONFIG_REQUIRED, "channels the convolution produces"},   \
        {"kernel_size", NNM_CONFIG_INT_OR_INTS, NNM_CONFIG_REQUIRED, "int or tuple"},                 \
        {"stride", NNM_CONFIG_INT_OR_INTS, 0, "int or tuple, default 1"},                             \
        {"dilation", NNM_CONFIG_INT_OR_INTS, 0, "int or tuple, default 1"},                           \
        {"groups", NNM_CONFIG_INT, 0, "blocked connections, default 1"},                              \
        {"bias", NNM_CONFIG_BOOL, 0, "learnable bias, default true"},                                 \
        {"padding_mode", NNM_CONFIG_STR, 0, "\"zeros\" (default), \"reflect\", \"replicate\", \"circular\""}, \
        {"functional", NNM_CONFIG_BOOL, 0, "(1.1) weight and bias are inputs 1 and 2 (F.conv*d), default false"}

static const nnm_config_field conv_config[] = {
    CONV_COMMON_FIELDS,
    {"padding", NNM_CONFIG_ANY, 0, "int, tuple, \"valid\" or \"same\"; default 0"},
};

static const nnm_config_field conv_t_config[] = {
    CONV_COMMON_FIELDS,
    {"padding", NNM_CONFIG_INT_OR_INTS, 0, "int or tuple, default 0"},
    {"output_padding", NNM_CONFIG_INT_OR_INTS, 0, "int or tuple, default 0"},
};

#define CONV_LAYER(var, lname, display, create_fn, cfg)                                               \
    static const nnm_layer_vtable var = {                                                             \
        .struct_size = sizeof(nnm_layer_vtable),                                                      \
        .name = lname,                                                                                \
        .version_major = 1,                                                                           \
        .version_minor = 1,                                                                           \
        .version_patch = 0,                                                                           \
        .n_inputs = NNM_ARITY_ANY,                                                                                \
        .n_outputs = 1,                                                                               \
        .create = create_fn,                                                                          \
        .destroy = conv_destroy,                                                                      \
        .forward = conv_forward,                                                                      \
        .extra_repr = conv_extra_repr,                                                                \
        .config_fields = cfg,                                                                         \
        .n_config_fields = sizeof cfg / sizeof cfg[0],                                                \
        .display_name = display,                                                                      \
    }

CONV_LAYER(conv1d_layer, "conv1d", "Conv1d", conv1d_create, conv_config);
CONV_LAYER(conv2d_layer, "conv2d", "Conv2d", conv2d_create, conv_config);
CONV_LAYER(conv3d_layer, "conv3d", "Conv3d", conv3d_create, conv_config);
CONV_LAYER(conv_t1d_layer, "conv_transpose1d", "ConvTranspose1d", conv_t1d_create, conv_t_config);
CONV_LAYER(conv_t2d_layer, "conv_transpose2d", "ConvTranspose2d", conv_t2d_create, conv_t_config);
CONV_LAYER(conv_t3d_layer, "conv_transpose3d", "ConvTranspose3d", conv_t3d_create, conv_t_config);

static const nnm_layer_vtable *const conv_layers[] = {&conv1d_layer,   &conv2d_layer,   &conv3d_layer,
                                                      &conv_t1d_layer, &conv_t2d_layer, &conv_t3d_layer};

static const nnm_plugin_desc conv_plugin = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
    .name = "conv",
    .description = "Convolutions (torch.nn.Conv1d/2d/3d, ConvTranspose1d/2d/3d) over op_conv",
    .n_layers = sizeof conv_layers / sizeof conv_layers[0],
    .layers = conv_layers,
    .domain = NNM_DOMAIN_NNMOD, /* nnmod's own library: the plain names */
};

NNM_PLUGIN_DEFINE(conv_plugin)
