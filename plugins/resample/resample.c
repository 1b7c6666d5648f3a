/* plugins/resample/resample.c - resampling and padding layers of torch.nn,
 * composed from host ops (so every device and autograd come from the
 * runtime):
 *
 *   upsample          (Upsample / F.interpolate)  size | scale_factor, mode, align_corners,
 *                                                 recompute_scale_factor, antialias (1.1);
 *                                                 from_input, from_dim (1.2): size entries
 *                                                 read from the shapes of extra "like"
 *                                                 inputs (F.interpolate(x, size=skip.shape[2:]))
 *   pixel_shuffle     (PixelShuffle)    upscale_factor
 *   pixel_unshuffle   (PixelUnshuffle)  downscale_factor
 *   zero_pad2d        (ZeroPad2d)       padding
 *   constant_pad1d/2d/3d (ConstantPadNd) padding, value
 *   reflection_pad1d/2d  (ReflectionPadNd)  padding
 *   replication_pad1d/2d (ReplicationPadNd) padding
 *
 * upsample is separable: one spatial dim at a time, each output position a
 * weighted sum of input rows picked with host->op_index_select (ABI 1.5),
 * the weights a constant tensor made with host->tensor_from_host. The
 * indices and weights are PyTorch 1.13's (aten/src/ATen/native/UpSample.h:
 * nearest_idx, area_pixel_compute_source_index, the cubic convolution with
 * A = -0.75), computed in float as PyTorch's CPU kernels do; "area" is
 * adaptive average pooling (host->op_pool). Reflection and replication
 * padding are index_select with the reflected / clamped indices (their
 * gradient, index_add, is PyTorch's); constant padding is concatenation with
 * op_full blocks (negative padding crops, with op_slice). pixel_(un)shuffle
 * is a reshape and a permute. */
#include <nnmod/plugin.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layer_util.h"

/* ------------------------------------------------------------------------ */
/* A chain of host ops (as in plugins/activations/composed.inc): every       */
/* intermediate goes to a scratch list released at the end; the first        */
/* failure sticks and turns the rest into no-ops.                            */
/* ------------------------------------------------------------------------ */

#define RS_SCRATCH 96
#define RS_MAX_OUT 1099511627776.0 /* 2^40: most output positions along one dim (times taps) */

typedef struct rs_chain {
    nnm_env *env;
    nnm_status st;
    int n;
    nnm_tensor *t[RS_SCRATCH];
} rs_chain;

static nnm_tensor *rs_keep(rs_chain *c, nnm_status st, nnm_tensor *y) {
    if (st != NNM_OK) {
        c->env->host->tensor_release(y);
        c->st = st;
        return NULL;
    }
    if (c->n == RS_SCRATCH) {
        c->env->host->tensor_release(y);
        c->st = c->env->host->set_error(c->env, NNM_E_LIMIT, "resample: scratch list full");
        return NULL;
    }
    c->t[c->n++] = y;
    return y;
}

static void rs_chain_free(rs_chain *c) {
    for (int i = 0; i < c->n; i++)
        c->env->host->tensor_release(c->t[i]);
    c->n = 0;
}

/* out = y with one more reference, then the scratch list released. */
static nnm_status rs_finish(rs_chain *c, nnm_tensor *y, nnm_tensor **out) {
    if (c->st == NNM_OK && y != NULL) {
        c->env->host->tensor_retain(y);
        *out = y;
    } else if (c->st == NNM_OK) {
        c->st = c->env->host->set_error(c->env, NNM_E_STATE, "resample: no result");
    }
    rs_chain_free(c);
    return c->st;
}

static nnm_tensor *rs_select(rs_chain *c, nnm_tensor *x, int32_t dim, const int64_t *idx, int64_t m) {
    if (c->st != NNM_OK)
        return NULL;
    const nnm_host *h = c->env->host;
    const nnm_dtype i64 = {NNM_DTYPE_INT, 64, 1};
    nnm_tensor *it = NULL, *y = NULL;
    nnm_status st = h->tensor_from_host(c->env, 1, &m, i64, idx, &it);
    if (!rs_keep(c, st, it))
        return NULL;
    st = h->op_index_select(c->env, x, dim, it, &y);
    return rs_keep(c, st, y);
}

/* A constant f32 [m, 1, ..., 1] (`trailing` ones): per-row weights along a
 * dim followed by `trailing` dims. */
static nnm_tensor *rs_weights(rs_chain *c, const float *w, int64_t m, int32_t trailing) {
    if (c->st != NNM_OK)
        return NULL;
    int64_t shape[NNM_MAX_DIMS];
    shape[0] = m;
    for (int32_t i = 0; i < trailing; i++)
        shape[1 + i] = 1;
    nnm_tensor *t = NULL;
    const nnm_status st = c->env->host->tensor_from_host(c->env, 1 + trailing, shape, NNM_F32, w, &t);
    return rs_keep(c, st, t);
}

static nnm_tensor *rs_binary(rs_chain *c, int32_t op, nnm_tensor *a, nnm_tensor *b) {
    if (c->st != NNM_OK)
        return NULL;
    nnm_tensor *y = NULL;
    const nnm_status st = c->env->host->op_binary(c->env, op, a, b, &y);
    return rs_keep(c, st, y);
}

static nnm_status rs_need_15(nnm_env *env, const char *layer) {
    const nnm_host *h = env->host;
    if (!NNM_HOST_HAS(h, op_index_select) || !NNM_HOST_HAS(h, tensor_from_host))
        return h->set_error(env, NNM_E_VERSION,
                            "%s needs the host slots tensor_from_host and op_index_select (ABI "
                            "1.5); this host is ABI %u.%u",
                            layer, (unsigned)h->abi_major, (unsigned)h->abi_minor);
    return NNM_OK;
}

/* "(1, 2, 3)" of n ints (a 1-tuple as "(1,)", Python's repr). */
static int rs_tuple(char *buf, size_t cap, const int64_t *v, int n) {
    size_t at = 0;
    int k = snprintf(buf, cap, "(");
    at = k > 0 ? (size_t)k : 0;
    for (int i = 0; i < n && at < cap; i++) {
        k = snprintf(buf + at, cap - at, "%s%lld", i ? ", " : "", (long long)v[i]);
        at += k > 0 ? (size_t)k : 0;
    }
    if (at < cap)
        k = snprintf(buf + at, cap - at, n == 1 ? ",)" : ")");
    return (int)(at + (k > 0 ? (size_t)k : 0));
}

/* ======================================================================== */
/* upsample                                                                  */
/* ======================================================================== */

enum rs_mode { RS_NEAREST, RS_NEAREST_EXACT, RS_LINEAR, RS_BILINEAR, RS_BICUBIC, RS_TRILINEAR, RS_AREA };

static const char *const rs_mode_names[] = {"nearest", "nearest-exact", "linear", "bilinear",
                                            "bicubic", "trilinear",     "area"};

typedef struct up_state {
    int mode;                 /* enum rs_mode */
    int align_corners;        /* given and true */
    int recompute;            /* recompute_scale_factor */
    int antialias;            /* F.interpolate's antialias (bilinear, bicubic) */
    int n_size, n_scale;      /* entries given (1: the same for every dim); 0: not given */
    int size_list;            /* size was a list (printed as a tuple) */
    int scale_list;
    int64_t size[3];
    double scale[3];
    int dynamic;              /* from_input / from_dim given (1.2) */
    int64_t from_input[3], from_dim[3];
} up_state;

static nnm_status up_create(nnm_env *env, void **self) {
    const nnm_host *h = env->host;
    *self = NULL;
    nnm_status st = rs_need_15(env, "upsample");
    if (st != NNM_OK)
        return st;
    up_state s;
    memset(&s, 0, sizeof s);
    int32_t t = 0;
    if (h->config_type(env, "size", &t) == NNM_OK) {
        size_t n = 0;
        if (t == NNM_CONFIG_INT) {
            st = h->config_int(env, "size", NULL, &s.size[0]);
            n = 1;
        } else {
            st = h->config_ints(env, "size", s.size, 3, &n);
            s.size_list = 1;
        }
        if (st != NNM_OK)
            return st;
        if (n < 1)
            return h->set_error(env, NNM_E_INVALID, "size must have 1 to 3 entries");
        s.n_size = (int)n;
    }
    if (h->config_type(env, "scale_factor", &t) == NNM_OK) {
        size_t n = 0;
        if (t == NNM_CONFIG_INT || t == NNM_CONFIG_FLOAT) {
            st = h->config_float(env, "scale_factor", NULL, &s.scale[0]);
            n = 1;
        } else {
            st = h->config_floats(env, "scale_factor", s.scale, 3, &n);
            s.scale_list = 1;
        }
        if (st != NNM_OK)
            return st;
        if (n < 1)
            return h->set_error(env, NNM_E_INVALID, "scale_factor must have 1 to 3 entries");
        for (size_t i = 0; i < n; i++)
            if (!(s.scale[i] > 0.0) || !isfinite(s.scale[i]))
                return h->set_error(env, NNM_E_INVALID, "scale_factor entries must be > 0, got %g",
                                    s.scale[i]);
        s.n_scale = (int)n;
    }
    if (s.n_size && s.n_scale)
        return h->set_error(env, NNM_E_INVALID, "only one of size or scale_factor should be defined");
    /* 1.2: size entries read from the shapes of extra inputs (the dynamic
     * sizes convention of docs/layers.md): entry i is
     * inputs[from_input[i]].shape[from_dim[i]] when from_input[i] >= 0 */
    int has_fi = h->config_type(env, "from_input", &t) == NNM_OK;
    int has_fd = h->config_type(env, "from_dim", &t) == NNM_OK;
    if (has_fi != has_fd)
        return h->set_error(env, NNM_E_INVALID, "upsample: from_input and from_dim go together (%s is missing)",
                            has_fi ? "from_dim" : "from_input");
    if (has_fi) {
        size_t ni = 0, nd = 0;
        if (!s.n_size)
            return h->set_error(env, NNM_E_INVALID, "upsample: from_input and from_dim are for size, not scale_factor");
        if ((st = h->config_ints(env, "from_input", s.from_input, 3, &ni)) != NNM_OK ||
            (st = h->config_ints(env, "from_dim", s.from_dim, 3, &nd)) != NNM_OK)
            return st == NNM_E_LIMIT ? h->set_error(env, NNM_E_LIMIT, "upsample: from_input, from_dim: at most 3 entries")
                                     : st;
        if (ni != (size_t)s.n_size || nd != (size_t)s.n_size)
            return h->set_error(env, NNM_E_SHAPE,
                                "upsample: from_input (%zu entries) and from_dim (%zu entries) must have as many "
                                "entries as size (%d)",
                                ni, nd, s.n_size);
        for (size_t i = 0; i < ni; i++)
            if (s.from_input[i] < -1 || s.from_input[i] >= NNM_MAX_IO)
                return h->set_error(env, NNM_E_INVALID,
                                    "upsample: from_input[%zu] = %lld is neither -1 nor an input index (0..%d)",
                                    i, (long long)s.from_input[i], NNM_MAX_IO - 1);
        s.dynamic = 1;
    }
    for (int i = 0; i < s.n_size; i++) /* an entry read from an input's shape may be a placeholder */
        if (s.size[i] < 1 && !(s.dynamic && s.from_input[i] >= 0))
            return h->set_error(env, NNM_E_INVALID, "size entries must be >= 1, got %lld",
                                (long long)s.size[i]);
    if (!s.n_size && !s.n_scale)
        return h->set_error(env, NNM_E_INVALID, "either size or scale_factor should be defined");
    const char *mode = NULL;
    if ((st = h->config_str(env, "mode", "nearest", &mode)) != NNM_OK)
        return st;
    s.mode = -1;
    for (int i = 0; i < (int)(sizeof rs_mode_names / sizeof rs_mode_names[0]); i++)
        if (strcmp(mode, rs_mode_names[i]) == 0)
            s.mode = i;
    if (s.mode < 0)
        return h->set_error(env, NNM_E_INVALID,
                            "mode must be nearest, nearest-exact, linear, bilinear, bicubic, "
                            "trilinear or area; got \"%s\"",
                            mode);
    if (h->config_type(env, "align_corners", &t) == NNM_OK) {
        const int no = 0;
        if ((st = h->config_bool(env, "align_corners", &no, &s.align_corners)) != NNM_OK)
            return st;
        if (s.mode == RS_NEAREST || s.mode == RS_NEAREST_EXACT || s.mode == RS_AREA)
            return h->set_error(env, NNM_E_INVALID,
                                "align_corners option can only be set with the interpolating modes: "
                                "linear | bilinear | bicubic | trilinear");
    }
    const int no = 0;
    if ((st = h->config_bool(env, "recompute_scale_factor", &no, &s.recompute)) != NNM_OK)
        return st;
    if ((st = h->config_bool(env, "antialias", &no, &s.antialias)) != NNM_OK)
        return st;
    if (s.antialias && s.mode != RS_BILINEAR && s.mode != RS_BICUBIC)
        return h->set_error(env, NNM_E_INVALID,
                            "Anti-alias option is only supported for bilinear and bicubic modes");
    up_state *p = malloc(sizeof *p);
    if (p == NULL)
        return h->set_error(env, NNM_E_NOMEM, "out of memory for the upsample state");
    *p = s;
    *self = p;
    return NNM_OK;
}

static void rs_destroy(void *self) {
    free(self);
}

/* PyTorch's area_pixel_compute_scale (float); scale_given: 1 / scale_factor. */
static float up_scale(int64_t in, int64_t out, int align, int have_scale, double scale) {
    if (align)
        return out > 1 ? (float)(in - 1) / (float)(out - 1) : 0.0f;
    if (have_scale && scale > 0.0)
        return (float)(1.0 / scale);
    return (float)in / (float)out;
}

static float up_source(float scale, int64_t dst, int align, int cubic) {
    if (align)
        return scale * (float)dst;
    const float src = scale * ((float)dst + 0.5f) - 0.5f;
    return (!cubic && src < 0.0f) ? 0.0f : src;
}

static void cubic_coeffs(float c[4], float t) {
    const float A = -0.75f;
    float x = t + 1.0f;
    c[0] = ((A * x - 5.0f * A) * x + 8.0f * A) * x - 4.0f * A;
    x = t;
    c[1] = ((A + 2.0f) * x - (A + 3.0f)) * x * x + 1.0f;
    x = 1.0f - t;
    c[2] = ((A + 2.0f) * x - (A + 3.0f)) * x * x + 1.0f;
    x = 2.0f - t;
    c[3] = ((A * x - 5.0f * A) * x + 8.0f * A) * x - 4.0f * A;
}

/* The filters of PyTorch 1.13's antialiased kernels
 * (aten/src/ATen/native/cpu/UpSampleKernel.cpp, HelperInterpLinear and
 * HelperInterpCubic::aa_filter): the triangle, and the cubic convolution
 * with a = -0.5 (PIL's). */
static float aa_filter(int cubic, float x) {
    if (x < 0.0f)
        x = -x;
    if (!cubic)
        return x < 1.0f ? 1.0f - x : 0.0f;
    const double a = -0.5;
    if (x < 1.0f)
        return (float)(((a + 2.0) * x - (a + 3.0)) * x * x + 1);
    if (x < 2.0f)
        return (float)((((x - 5) * x + 8) * x - 4) * a);
    return 0.0f;
}

/* antialias: output j of dim (in -> out) is the normalised filter over the
 * input positions within `support` of its centre, the filter stretched by
 * the scale when downsampling (_compute_weights_aa, in float as PyTorch's
 * CPU kernel computes them for f32). Writes up to *taps (K) entries per
 * output, tap k of output j at [k * out + j] (weight 0 past the window). */
static int64_t aa_taps(int cubic, float scale) {
    const float interp = cubic ? 4.0f : 2.0f;
    const float support = scale >= 1.0f ? interp * 0.5f * scale : interp * 0.5f;
    return (int64_t)ceilf(support) * 2 + 1;
}

static void aa_weights(int cubic, int64_t in, int64_t out, float scale, int64_t K, int64_t *idx,
                       float *w) {
    const float interp = cubic ? 4.0f : 2.0f;
    const float support = scale >= 1.0f ? interp * 0.5f * scale : interp * 0.5f;
    const float invscale = scale >= 1.0f ? 1.0f / scale : 1.0f;
    /* the mixed float/double arithmetic of PyTorch's expressions (its 0.5
     * literals are doubles), so the windows and weights are PyTorch's */
    for (int64_t j = 0; j < out; j++) {
        const float center = (float)((double)scale * ((double)j + 0.5));
        int64_t xmin = (int64_t)((double)(center - support) + 0.5);
        if (xmin < 0)
            xmin = 0;
        int64_t xmax = (int64_t)((double)(center + support) + 0.5);
        if (xmax > in)
            xmax = in;
        const int64_t xsize = xmax - xmin;
        float total = 0.0f;
        for (int64_t k = 0; k < K; k++) {
            idx[k * out + j] = k < xsize ? xmin + k : (xmin < in ? xmin : in - 1);
            w[k * out + j] =
                k < xsize ? aa_filter(cubic, (float)(((double)((float)(k + xmin) - center) + 0.5) *
                                                     (double)invscale))
                          : 0.0f;
            total += w[k * out + j];
        }
        for (int64_t k = 0; k < xsize && k < K; k++)
            if (total != 0.0f)
                w[k * out + j] /= total;
    }
}

/* Resamples dim `axis` of x (size in -> out). */
static nnm_tensor *up_dim(rs_chain *c, const up_state *s, nnm_tensor *x, int32_t axis, int32_t ndim,
                          int64_t in, int64_t out, int have_scale, double scale) {
    if (c->st != NNM_OK)
        return NULL;
    const nnm_host *h = c->env->host;
    const int32_t trailing = ndim - axis - 1;
    const float aa_scale = s->antialias ? up_scale(in, out, s->align_corners, have_scale, scale) : 0.0f;
    const int64_t taps = s->antialias ? aa_taps(s->mode == RS_BICUBIC, aa_scale) : 4;
    if (taps > 4 * in + 16 || out > RS_MAX_OUT / taps) { /* only a window this wide could be
                                                           * nonzero (scale ~ in / out) */
        c->st = h->set_error(c->env, NNM_E_LIMIT, "upsample: %lld output positions of %lld taps each "
                             "(input %lld) are too many", (long long)out, (long long)taps, (long long)in);
        return NULL;
    }
    if (!nnm_lu_host_fits((double)out * (double)taps * (double)(sizeof(int64_t) + sizeof(float)))) {
        c->st = h->set_error(c->env, NNM_E_NOMEM, "upsample: the tables for %lld output positions of %lld taps "
                             "each are more than this machine's memory", (long long)out, (long long)taps);
        return NULL;
    }
    int64_t *idx = malloc((size_t)out * (size_t)taps * sizeof *idx);
    float *w = malloc((size_t)out * (size_t)taps * sizeof *w);
    nnm_tensor *y = NULL;
    if (idx == NULL || w == NULL) {
        c->st = h->set_error(c->env, NNM_E_NOMEM, "upsample: out of memory for %lld indices",
                             (long long)out);
        goto done;
    }
    if (s->antialias) { /* bilinear or bicubic: taps of the stretched filter */
        aa_weights(s->mode == RS_BICUBIC, in, out, aa_scale, taps, idx, w);
        for (int64_t k = 0; k < taps; k++) {
            int used = 0;
            for (int64_t j = 0; j < out && !used; j++)
                used = w[k * out + j] != 0.0f;
            if (!used && k > 0)
                continue; /* a tap no output uses (past every window) */
            nnm_tensor *term = rs_binary(c, NNM_BINARY_MUL, rs_select(c, x, axis, idx + k * out, out),
                                         rs_weights(c, w + k * out, out, trailing));
            y = y == NULL ? term : rs_binary(c, NNM_BINARY_ADD, y, term);
        }
    } else if (s->mode == RS_NEAREST || s->mode == RS_NEAREST_EXACT) {
        const float sc = (have_scale && scale > 0.0) ? (float)(1.0 / scale) : (float)in / (float)out;
        for (int64_t j = 0; j < out; j++) {
            int64_t k;
            if (s->mode == RS_NEAREST_EXACT)
                k = (int64_t)floorf((float)(((double)j + 0.5) * sc));
            else if (out == in)
                k = j;
            else if (out == 2 * in)
                k = j >> 1;
            else
                k = (int64_t)floorf((float)j * sc);
            idx[j] = k < in - 1 ? k : in - 1;
        }
        y = rs_select(c, x, axis, idx, out);
    } else if (s->mode == RS_BICUBIC) {
        const float sc = up_scale(in, out, s->align_corners, have_scale, scale);
        for (int64_t j = 0; j < out; j++) {
            const float src = up_source(sc, j, s->align_corners, 1);
            const int64_t i0 = (int64_t)floorf(src);
            float cf[4];
            cubic_coeffs(cf, src - (float)i0);
            for (int k = 0; k < 4; k++) {
                int64_t r = i0 - 1 + k;
                r = r < 0 ? 0 : r > in - 1 ? in - 1 : r;
                idx[k * out + j] = r;
                w[k * out + j] = cf[k];
            }
        }
        for (int k = 0; k < 4; k++) {
            nnm_tensor *term = rs_binary(c, NNM_BINARY_MUL, rs_select(c, x, axis, idx + k * out, out),
                                         rs_weights(c, w + k * out, out, trailing));
            y = k == 0 ? term : rs_binary(c, NNM_BINARY_ADD, y, term);
        }
    } else { /* linear, bilinear, trilinear */
        const float sc = up_scale(in, out, s->align_corners, have_scale, scale);
        for (int64_t j = 0; j < out; j++) {
            if (out == in) {
                idx[j] = idx[out + j] = j;
                w[j] = 1.0f;
                w[out + j] = 0.0f;
                continue;
            }
            const float src = up_source(sc, j, s->align_corners, 0);
            const int64_t i0 = (int64_t)src;
            const int64_t i1 = i0 + (i0 < in - 1 ? 1 : 0);
            float l1 = src - (float)i0;
            l1 = l1 < 0.0f ? 0.0f : l1 > 1.0f ? 1.0f : l1;
            idx[j] = i0;
            idx[out + j] = i1;
            w[j] = 1.0f - l1;
            w[out + j] = l1;
        }
        nnm_tensor *a = rs_binary(c, NNM_BINARY_MUL, rs_select(c, x, axis, idx, out),
                                  rs_weights(c, w, out, trailing));
        nnm_tensor *b = rs_binary(c, NNM_BINARY_MUL, rs_select(c, x, axis, idx + out, out),
                                  rs_weights(c, w + out, out, trailing));
        y = rs_binary(c, NNM_BINARY_ADD, a, b);
    }
done:
    free(idx);
    free(w);
    return y;
}

static nnm_status up_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in,
                             nnm_tensor **out, uint32_t n_out) {
    const nnm_host *h = env->host;
    const up_state *s = self;
    if (s == NULL)
        return h->set_error(env, NNM_E_STATE, "upsample: forward without state");
    if (n_in < 1 || (n_in > 1 && !s->dynamic) || n_in > NNM_MAX_IO || n_out != 1 || in == NULL ||
        out == NULL || in[0] == NULL)
        return h->set_error(env, NNM_E_SHAPE,
                            "upsample takes 1 input (more only with from_input: inputs lending their shape) "
                            "and 1 output, got %u and %u",
                            (unsigned)n_in, (unsigned)n_out);
    int64_t dyn[3] = {0, 0, 0}; /* the size entries read from the like inputs' shapes */
    for (int i = 0; s->dynamic && i < s->n_size; i++) {
        dyn[i] = s->size[i];
        if (s->from_input[i] < 0)
            continue;
        if ((uint32_t)s->from_input[i] >= n_in || in[s->from_input[i]] == NULL)
            return h->set_error(env, NNM_E_SHAPE, "upsample: from_input[%d] = %lld, but the op got %u inputs", i,
                                (long long)s->from_input[i], (unsigned)n_in);
        const nnm_tensor_desc *ld = h->tensor_desc(in[s->from_input[i]]);
        const int64_t fd = s->from_dim[i] < 0 ? s->from_dim[i] + ld->ndim : s->from_dim[i];
        if (fd < 0 || fd >= ld->ndim)
            return h->set_error(env, NNM_E_SHAPE, "upsample: from_dim[%d] = %lld is out of range for input %lld of %d dims",
                                i, (long long)s->from_dim[i], (long long)s->from_input[i], (int)ld->ndim);
        dyn[i] = ld->shape[fd];
        if (dyn[i] < 1)
            return h->set_error(env, NNM_E_SHAPE, "upsample: size entry %d read from input %lld is %lld (must be >= 1)",
                                i, (long long)s->from_input[i], (long long)dyn[i]);
    }
    const nnm_tensor_desc *d = h->tensor_desc(in[0]);
    const int32_t ndim = d->ndim, ns = ndim - 2;
    if (ns < 1 || ns > 3)
        return h->set_error(env, NNM_E_SHAPE,
                            "upsample takes [N, C, *spatial] with 1 to 3 spatial dims, got %d dims",
                            (int)ndim);
    static const int need[] = {0, 0, 1, 2, 2, 3, 0}; /* spatial dims a mode needs (0: any) */
    if (need[s->mode] && need[s->mode] != ns)
        return h->set_error(env, NNM_E_SHAPE, "Got %dD input, but %s mode needs %dD input",
                            (int)ndim, rs_mode_names[s->mode], need[s->mode] + 2);
    const int n_given = s->n_size ? s->n_size : s->n_scale;
    if (n_given != 1 && n_given != ns)
        return h->set_error(env, NNM_E_SHAPE,
                            "Input is expected to have %d spatial dimensions, but %s has %d entries",
                            (int)ns, s->n_size ? "size" : "scale_factor", n_given);
    int64_t osz[3];
    double sc[3];
    for (int32_t i = 0; i < ns; i++) {
        const int k = n_given == 1 ? 0 : i;
        sc[i] = s->n_scale ? s->scale[k] : 0.0;
        /* floor(in * scale) as a double first: a huge scale_factor must not
         * convert an out-of-range double to int64 (undefined) */
        const double o = s->n_size ? (double)(s->dynamic ? dyn[k] : s->size[k])
                                   : floor((double)d->shape[2 + i] * s->scale[k]);
        if (o > RS_MAX_OUT)
            return h->set_error(env, NNM_E_LIMIT,
                                "upsample: output size %.0f of spatial dim %d is too large (input %lld, "
                                "%s %g; at most 2^40)",
                                o, (int)i, (long long)d->shape[2 + i], s->n_size ? "size" : "scale_factor",
                                s->n_size ? o : sc[i]);
        osz[i] = (int64_t)o;
        if (osz[i] < 1)
            return h->set_error(env, NNM_E_SHAPE,
                                "upsample: output size %lld of spatial dim %d is too small (input %lld, "
                                "scale_factor %g)",
                                (long long)osz[i], (int)i, (long long)d->shape[2 + i], sc[i]);
    }
    const int have_scale = s->n_scale && !s->recompute;
    if (s->mode == RS_AREA) {
        nnm_pool_params p;
        memset(&p, 0, sizeof p);
        p.struct_size = sizeof p;
        p.op = NNM_POOL_ADAPTIVE_AVG;
        p.n_spatial = ns;
        for (int32_t i = 0; i < ns; i++) {
            p.output_size[i] = osz[i];
            p.kernel[i] = p.stride[i] = p.dilation[i] = 1;
        }
        return h->op_pool(env, in[0], &p, &out[0]);
    }
    rs_chain c;
    memset(&c, 0, sizeof c);
    c.env = env;
    nnm_tensor *y = in[0];
    for (int32_t i = 0; i < ns && c.st == NNM_OK; i++) {
        const int64_t isz = d->shape[2 + i];
        /* PyTorch copies an unchanged size for nearest and the linear modes;
         * bicubic and nearest-exact with a scale_factor other than 1 still
         * resample (floor(in * s) == in does not make s 1) */
        const int copies = s->mode != RS_BICUBIC && s->mode != RS_NEAREST_EXACT;
        if (osz[i] == isz && (copies || !have_scale || sc[i] == 1.0))
            continue;
        y = up_dim(&c, s, y, 2 + i, ndim, isz, osz[i], have_scale, sc[i]);
    }
    if (y == in[0] && c.st == NNM_OK) { /* nothing to resample */
        h->tensor_retain(y);
        out[0] = y;
        return NNM_OK;
    }
    return rs_finish(&c, y, &out[0]);
}

static int up_extra_repr(void *self, char *buf, size_t cap) {
    const up_state *s = self;
    if (s == NULL)
        return snprintf(buf, cap, "%s", "");
    char info[160];
    size_t at = 0;
    if (s->n_scale) {
        at = (size_t)snprintf(info, sizeof info, "scale_factor=%s", s->scale_list ? "(" : "");
        for (int i = 0; i < s->n_scale && at < sizeof info; i++) {
            char num[40];
            nnm_lu_pyfloat(num, sizeof num, s->scale[i]);
            at += (size_t)snprintf(info + at, sizeof info - at, "%s%s", i ? ", " : "", num);
        }
        if (s->scale_list && at < sizeof info)
            snprintf(info + at, sizeof info - at, "%s", s->n_scale == 1 ? ",)" : ")");
    } else if (s->size_list) {
        at = (size_t)snprintf(info, sizeof info, "size=");
        rs_tuple(info + at, sizeof info - at, s->size, s->n_size);
    } else {
        snprintf(info, sizeof info, "size=%lld", (long long)s->size[0]);
    }
    return snprintf(buf, cap, "%s, mode=%s%s", info, rs_mode_names[s->mode],
                    s->antialias ? ", antialias=True" : "");
}

/* ======================================================================== */
/* pixel_shuffle, pixel_unshuffle                                            */
/* ======================================================================== */

typedef struct ps_state {
    int64_t r;
    int unshuffle;
} ps_state;

static nnm_status ps_new(nnm_env *env, int unshuffle, void **self) {
    const nnm_host *h = env->host;
    *self = NULL;
    const char *key = unshuffle ? "downscale_factor" : "upscale_factor";
    ps_state s = {0, unshuffle};
    nnm_status st = h->config_int(env, key, NULL, &s.r);
    if (st != NNM_OK)
        return st;
    if (s.r < 1)
        return h->set_error(env, NNM_E_INVALID, "%s must be >= 1, got %lld", key, (long long)s.r);
    if (s.r > INT32_MAX) /* r * r and H * r stay in int64 */
        return h->set_error(env, NNM_E_LIMIT, "%s %lld is too large (at most 2^31 - 1)", key, (long long)s.r);
    ps_state *p = malloc(sizeof *p);
    if (p == NULL)
        return h->set_error(env, NNM_E_NOMEM, "out of memory for the pixel shuffle state");
    *p = s;
    *self = p;
    return NNM_OK;
}

static nnm_status pixel_shuffle_create(nnm_env *env, void **self) {
    return ps_new(env, 0, self);
}

static nnm_status pixel_unshuffle_create(nnm_env *env, void **self) {
    return ps_new(env, 1, self);
}

static nnm_status ps_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in,
                             nnm_tensor **out, uint32_t n_out) {
    const nnm_host *h = env->host;
    const ps_state *s = self;
    const char *name = s && s->unshuffle ? "pixel_unshuffle" : "pixel_shuffle";
    if (s == NULL)
        return h->set_error(env, NNM_E_STATE, "%s: forward without state", name);
    if (n_in != 1 || n_out != 1 || in == NULL || out == NULL || in[0] == NULL)
        return h->set_error(env, NNM_E_SHAPE, "%s takes 1 input and 1 output", name);
    const nnm_tensor_desc *d = h->tensor_desc(in[0]);
    char sh[128];
    if (d->ndim < 3)
        return h->set_error(env, NNM_E_SHAPE, "%s expects input to have at least 3 dimensions, but got input %s",
                            name, nnm_lu_shape_str(d, sh, sizeof sh));
    const int32_t nd = d->ndim;
    int64_t batch = 1;
    for (int32_t i = 0; i < nd - 3; i++)
        batch *= d->shape[i];
    const int64_t C = d->shape[nd - 3], H = d->shape[nd - 2], W = d->shape[nd - 1], r = s->r;
    int64_t v[6], o[NNM_MAX_DIMS];
    int32_t perm[6];
    for (int32_t i = 0; i < nd - 3; i++)
        o[i] = d->shape[i];
    if (!s->unshuffle) {
        if (C % (r * r))
            return h->set_error(env, NNM_E_SHAPE,
                                "pixel_shuffle expects its input's 'channel' dimension to be divisible "
                                "by the square of upscale_factor, but input %s has %lld channels, not "
                                "divisible by %lld",
                                nnm_lu_shape_str(d, sh, sizeof sh), (long long)C, (long long)(r * r));
        const int64_t c = C / (r * r);
        v[0] = batch, v[1] = c, v[2] = r, v[3] = r, v[4] = H, v[5] = W;
        const int32_t p[6] = {0, 1, 4, 2, 5, 3};
        memcpy(perm, p, sizeof perm);
        o[nd - 3] = c, o[nd - 2] = H * r, o[nd - 1] = W * r;
    } else {
        if (H % r || W % r)
            return h->set_error(env, NNM_E_SHAPE,
                                "pixel_unshuffle expects height and width to be divisible by "
                                "downscale_factor %lld, got input %s",
                                (long long)r, nnm_lu_shape_str(d, sh, sizeof sh));
        v[0] = batch, v[1] = C, v[2] = H / r, v[3] = r, v[4] = W / r, v[5] = r;
        const int32_t p[6] = {0, 1, 3, 5, 2, 4};
        memcpy(perm, p, sizeof perm);
        o[nd - 3] = C * r * r, o[nd - 2] = H / r, o[nd - 1] = W / r;
    }
    rs_chain c;
    memset(&c, 0, sizeof c);
    c.env = env;
    nnm_tensor *t = NULL;
    c.st = h->op_reshape(env, in[0], 6, v, &t);
    t = rs_keep(&c, c.st, t);
    if (c.st == NNM_OK) {
        nnm_tensor *pt = NULL;
        c.st = h->op_permute(env, t, perm, 6, &pt);
        t = rs_keep(&c, c.st, pt);
    }
    if (c.st == NNM_OK) {
        nnm_tensor *rt = NULL;
        c.st = h->op_reshape(env, t, nd, o, &rt);
        t = rs_keep(&c, c.st, rt);
    }
    return rs_finish(&c, t, &out[0]);
}

static int ps_extra_repr(void *self, char *buf, size_t cap) {
    const ps_state *s = self;
    if (s == NULL)
        return snprintf(buf, cap, "%s", "");
    return snprintf(buf, cap, "%s=%lld", s->unshuffle ? "downscale_factor" : "upscale_factor",
                    (long long)s->r);
}

/* ======================================================================== */
/* padding                                                                   */
/* ======================================================================== */

enum pad_mode { PAD_CONSTANT, PAD_REFLECT, PAD_REPLICATE };

typedef struct pad_state {
    int mode;        /* enum pad_mode */
    int dims;        /* padded (last) dims: 1..3 */
    int zero;        /* zero_pad2d: printed without "padding=" and value */
    int value_int;   /* value given as an integer */
    int64_t pad[6];  /* F.pad order: last dim first, (before, after) */
    double value;
} pad_state;

static const char *const pad_names[3][3] = {
    {"constant_pad1d", "constant_pad2d", "constant_pad3d"},
    {"reflection_pad1d", "reflection_pad2d", "reflection_pad3d"},
    {"replication_pad1d", "replication_pad2d", "replication_pad3d"},
};

static nnm_status pad_new(nnm_env *env, int mode, int dims, int zero, void **self) {
    const nnm_host *h = env->host;
    *self = NULL;
    pad_state s;
    memset(&s, 0, sizeof s);
    s.mode = mode;
    s.dims = dims;
    s.zero = zero;
    nnm_status st = NNM_OK;
    if (mode != PAD_CONSTANT && (st = rs_need_15(env, pad_names[mode][dims - 1])) != NNM_OK)
        return st;
    if ((st = h->config_int_or_ints(env, "padding", NULL, s.pad, (size_t)(2 * dims))) != NNM_OK)
        return st;
    if (mode == PAD_CONSTANT && !zero) {
        if ((st = h->config_float(env, "value", NULL, &s.value)) != NNM_OK)
            return st;
        int32_t t = 0;
        s.value_int = h->config_type(env, "value", &t) == NNM_OK && t == NNM_CONFIG_INT;
    }
    if (mode == PAD_CONSTANT && !NNM_HOST_HAS(h, op_full))
        return h->set_error(env, NNM_E_VERSION, "constant padding needs the host slot op_full (ABI 1.3)");
    for (int i = 0; i < 2 * dims; i++) /* no dim is that long: keeps n + before + after in int64 */
        if (s.pad[i] > (int64_t)RS_MAX_OUT || s.pad[i] < -(int64_t)RS_MAX_OUT)
            return h->set_error(env, NNM_E_LIMIT, "%s: padding[%d] = %lld is too large (at most 2^40)",
                                pad_names[mode][dims - 1], i, (long long)s.pad[i]);
    pad_state *p = malloc(sizeof *p);
    if (p == NULL)
        return h->set_error(env, NNM_E_NOMEM, "out of memory for the padding state");
    *p = s;
    *self = p;
    return NNM_OK;
}

#define PAD_CREATE(fn, mode, dims, zero)                                                  \
    static nnm_status fn(nnm_env *env, void **self) {                                    \
        return pad_new(env, mode, dims, zero, self);                                     \
    }
PAD_CREATE(zero_pad2d_create, PAD_CONSTANT, 2, 1)
PAD_CREATE(constant_pad1d_create, PAD_CONSTANT, 1, 0)
PAD_CREATE(constant_pad2d_create, PAD_CONSTANT, 2, 0)
PAD_CREATE(constant_pad3d_create, PAD_CONSTANT, 3, 0)
PAD_CREATE(reflection_pad1d_create, PAD_REFLECT, 1, 0)
PAD_CREATE(reflection_pad2d_create, PAD_REFLECT, 2, 0)
PAD_CREATE(replication_pad1d_create, PAD_REPLICATE, 1, 0)
PAD_CREATE(replication_pad2d_create, PAD_REPLICATE, 2, 0)

/* Constant padding of dim `axis` by (before, after); negative crops. */
static nnm_tensor *pad_constant_dim(rs_chain *c, nnm_tensor *x, int32_t axis, int64_t before,
                                    int64_t after, double value) {
    if (c->st != NNM_OK)
        return NULL;
    const nnm_host *h = c->env->host;
    const nnm_tensor_desc *d = h->tensor_desc(x);
    const int64_t n = d->shape[axis];
    if (before < 0 || after < 0) { /* crop first */
        const int64_t start = before < 0 ? -before : 0, len = n - start - (after < 0 ? -after : 0);
        nnm_tensor *t = NULL;
        c->st = h->op_slice(c->env, x, axis, start, len, &t);
        x = rs_keep(c, c->st, t);
        if (x == NULL)
            return NULL;
        d = h->tensor_desc(x);
    }
    nnm_tensor *parts[3];
    uint32_t k = 0;
    int64_t shape[NNM_MAX_DIMS];
    memcpy(shape, d->shape, (size_t)d->ndim * sizeof shape[0]);
    for (int side = 0; side < 2; side++) {
        const int64_t p = side ? after : before;
        if (side)
            parts[k++] = x;
        if (p <= 0)
            continue;
        shape[axis] = p;
        nnm_tensor *f = NULL;
        c->st = h->op_full(c->env, d->ndim, shape, value, &f);
        if (!rs_keep(c, c->st, f))
            return NULL;
        parts[k++] = f;
    }
    if (k == 1)
        return x;
    nnm_tensor *y = NULL;
    c->st = h->op_concat(c->env, parts, k, axis, &y);
    return rs_keep(c, c->st, y);
}

static nnm_status pad_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in,
                              nnm_tensor **out, uint32_t n_out) {
    const nnm_host *h = env->host;
    const pad_state *s = self;
    if (s == NULL)
        return h->set_error(env, NNM_E_STATE, "padding: forward without state");
    const char *name = s->zero ? "zero_pad2d" : pad_names[s->mode][s->dims - 1];
    if (n_in != 1 || n_out != 1 || in == NULL || out == NULL || in[0] == NULL)
        return h->set_error(env, NNM_E_SHAPE, "%s takes 1 input and 1 output", name);
    const nnm_tensor_desc *d = h->tensor_desc(in[0]);
    const int32_t nd = d->ndim;
    char sh[128];
    if (s->mode == PAD_CONSTANT && nd < s->dims)
        return h->set_error(env, NNM_E_SHAPE, "%s pads the last %d dims; input %s has fewer", name,
                            s->dims, nnm_lu_shape_str(d, sh, sizeof sh));
    if (s->mode != PAD_CONSTANT && nd != s->dims + 1 && nd != s->dims + 2)
        return h->set_error(env, NNM_E_SHAPE,
                            "%s expects %d or %d dims (without or with a batch dim), got input %s", name,
                            s->dims + 1, s->dims + 2, nnm_lu_shape_str(d, sh, sizeof sh));
    for (int i = 0; i < s->dims; i++) {
        const int32_t axis = nd - 1 - i;
        const int64_t n = d->shape[axis], b = s->pad[2 * i], a = s->pad[2 * i + 1];
        if (n + a + b < (s->mode == PAD_CONSTANT ? 0 : 1))
            return h->set_error(env, NNM_E_SHAPE,
                                "%s: padding (%lld, %lld) of dim %d of input %s leaves no elements", name,
                                (long long)b, (long long)a, (int)axis, nnm_lu_shape_str(d, sh, sizeof sh));
        if (s->mode == PAD_REFLECT && (b >= n || a >= n))
            return h->set_error(env, NNM_E_SHAPE,
                                "%s: padding size should be less than the corresponding input dimension, "
                                "but got padding (%lld, %lld) at dimension %d of input %s",
                                name, (long long)b, (long long)a, (int)axis, nnm_lu_shape_str(d, sh, sizeof sh));
    }
    rs_chain c;
    memset(&c, 0, sizeof c);
    c.env = env;
    nnm_tensor *y = in[0];
    for (int i = 0; i < s->dims && c.st == NNM_OK; i++) {
        const int32_t axis = nd - 1 - i;
        const int64_t n = d->shape[axis], b = s->pad[2 * i], a = s->pad[2 * i + 1];
        if (a == 0 && b == 0)
            continue;
        if (s->mode == PAD_CONSTANT) {
            y = pad_constant_dim(&c, y, axis, b, a, s->value);
            continue;
        }
        const int64_t m = n + a + b;
        if (!nnm_lu_host_fits((double)m * sizeof(int64_t))) {
            c.st = h->set_error(env, NNM_E_NOMEM, "%s: an index table of %lld entries is more than this machine's "
                                "memory", name, (long long)m);
            break;
        }
        int64_t *idx = malloc((size_t)m * sizeof *idx);
        if (idx == NULL) {
            c.st = h->set_error(env, NNM_E_NOMEM, "%s: out of memory", name);
            break;
        }
        for (int64_t j = 0; j < m; j++) {
            const int64_t k = j - b;
            if (s->mode == PAD_REFLECT)
                idx[j] = k < 0 ? -k : k >= n ? 2 * (n - 1) - k : k;
            else
                idx[j] = k < 0 ? 0 : k >= n ? n - 1 : k;
        }
        y = rs_select(&c, y, axis, idx, m);
        free(idx);
    }
    if (y == in[0] && c.st == NNM_OK) {
        h->tensor_retain(y);
        out[0] = y;
        return NNM_OK;
    }
    return rs_finish(&c, y, &out[0]);
}

static int pad_extra_repr(void *self, char *buf, size_t cap) {
    const pad_state *s = self;
    if (s == NULL)
        return snprintf(buf, cap, "%s", "");
    char tup[160], num[40];
    rs_tuple(tup, sizeof tup, s->pad, 2 * s->dims);
    if (s->mode != PAD_CONSTANT || s->zero)
        return snprintf(buf, cap, "%s", tup);
    if (s->value_int)
        snprintf(num, sizeof num, "%lld", (long long)s->value);
    else
        nnm_lu_pyfloat(num, sizeof num, s->value);
    return snprintf(buf, cap, "padding=%s, value=%s", tup, num);
}

/* ======================================================================== */
/* Schemas and vtables                                                       */
/* ======================================================================== */

static const nnm_config_field up_config[] = {
    {"size", NNM_CONFIG_ANY, 0, "output spatial size: int or list (one of size, scale_factor)"},
    {"scale_factor", NNM_CONFIG_ANY, 0, "multiplier of the spatial size: float or list"},
    {"mode", NNM_CONFIG_STR, 0,
     "nearest (default), nearest-exact, linear, bilinear, bicubic, trilinear, area"},
    {"align_corners", NNM_CONFIG_BOOL, 0, "interpolating modes only (default None: false)"},
    {"recompute_scale_factor", NNM_CONFIG_BOOL, 0,
     "true: interpolate with in/out ratios instead of scale_factor (default None: false)"},
    {"antialias", NNM_CONFIG_BOOL, 0,
     "F.interpolate's anti-aliasing filter, bilinear and bicubic only (default false)"},
    {"from_input", NNM_CONFIG_INTS, 0,
     "(1.2) per size entry: the input whose shape gives it (0: x, 1..: extra inputs), or -1"},
    {"from_dim", NNM_CONFIG_INTS, 0, "(1.2) per size entry: the dim of that input (negative from the end)"},
};
static const nnm_config_field ps_config[] = {
    {"upscale_factor", NNM_CONFIG_INT, NNM_CONFIG_REQUIRED, "r: [*, C r^2, H, W] -> [*, C, H r, W r]"},
};
static const nnm_config_field pu_config[] = {
    {"downscale_factor", NNM_CONFIG_INT, NNM_CONFIG_REQUIRED, "r: [*, C, H r, W r] -> [*, C r^2, H, W]"},
};
static const nnm_config_field pad_config[] = {
    {"padding", NNM_CONFIG_INT_OR_INTS, NNM_CONFIG_REQUIRED,
     "int, or (before, after) per padded dim, last dim first"},
};
static const nnm_config_field cpad_config[] = {
    {"padding", NNM_CONFIG_INT_OR_INTS, NNM_CONFIG_REQUIRED,
     "int, or (before, after) per padded dim, last dim first"},
    {"value", NNM_CONFIG_FLOAT, NNM_CONFIG_REQUIRED, "the fill value"},
};

#define RS_VTABLE(var, lname, disp, createfn, fwd, repr, fields)                          \
    RS_VTABLE_V(var, lname, disp, createfn, fwd, repr, fields, 0)
#define RS_VTABLE_V(var, lname, disp, createfn, fwd, repr, fields, minor)                 \
    RS_VTABLE_VN(var, lname, disp, createfn, fwd, repr, fields, minor, 1)
#define RS_VTABLE_VN(var, lname, disp, createfn, fwd, repr, fields, minor, n_in)          \
    static const nnm_layer_vtable var = {                                                \
        .struct_size = sizeof(nnm_layer_vtable),                                         \
        .flags = 0,                                                                      \
        .name = lname,                                                                   \
        .display_name = disp,                                                            \
        .version_major = 1,                                                              \
        .version_minor = minor,                                                          \
        .version_patch = 0,                                                              \
        .n_inputs = n_in,                                                                \
        .n_outputs = 1,                                                                  \
        .create = createfn,                                                              \
        .destroy = rs_destroy,                                                           \
        .forward = fwd,                                                                  \
        .extra_repr = repr,                                                              \
        .config_fields = fields,                                                         \
        .n_config_fields = sizeof fields / sizeof fields[0],                             \
    };

/* upsample 1.1: antialias; 1.2: from_input / from_dim (sizes from extra inputs' shapes) */
RS_VTABLE_VN(upsample_layer, "upsample", "Upsample", up_create, up_forward, up_extra_repr, up_config, 2,
             NNM_ARITY_ANY)
RS_VTABLE(pixel_shuffle_layer, "pixel_shuffle", "PixelShuffle", pixel_shuffle_create, ps_forward,
          ps_extra_repr, ps_config)
RS_VTABLE(pixel_unshuffle_layer, "pixel_unshuffle", "PixelUnshuffle", pixel_unshuffle_create,
          ps_forward, ps_extra_repr, pu_config)
RS_VTABLE(zero_pad2d_layer, "zero_pad2d", "ZeroPad2d", zero_pad2d_create, pad_forward,
          pad_extra_repr, pad_config)
RS_VTABLE(constant_pad1d_layer, "constant_pad1d", "ConstantPad1d", constant_pad1d_create,
          pad_forward, pad_extra_repr, cpad_config)
RS_VTABLE(constant_pad2d_layer, "constant_pad2d", "ConstantPad2d", constant_pad2d_create,
          pad_forward, pad_extra_repr, cpad_config)
RS_VTABLE(constant_pad3d_layer, "constant_pad3d", "ConstantPad3d", constant_pad3d_create,
          pad_forward, pad_extra_repr, cpad_config)
RS_VTABLE(reflection_pad1d_layer, "reflection_pad1d", "ReflectionPad1d", reflection_pad1d_create,
          pad_forward, pad_extra_repr, pad_config)
RS_VTABLE(reflection_pad2d_layer, "reflection_pad2d", "ReflectionPad2d", reflection_pad2d_create,
          pad_forward, pad_extra_repr, pad_config)
RS_VTABLE(replication_pad1d_layer, "replication_pad1d", "ReplicationPad1d",
          replication_pad1d_create, pad_forward, pad_extra_repr, pad_config)
RS_VTABLE(replication_pad2d_layer, "replication_pad2d", "ReplicationPad2d",
          replication_pad2d_create, pad_forward, pad_extra_repr, pad_config)

static const nnm_layer_vtable *const rs_layers[] = {
    &upsample_layer,        &pixel_shuffle_layer,    &pixel_unshuffle_layer,
    &zero_pad2d_layer,      &constant_pad1d_layer,   &constant_pad2d_layer,
    &constant_pad3d_layer,  &reflection_pad1d_layer, &reflection_pad2d_layer,
    &replication_pad1d_layer, &replication_pad2d_layer,
};

static const nnm_plugin_desc rs_plugin = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
    .name = "resample",
    .description = "Upsample (nearest, linear, bilinear, bicubic, trilinear, area), PixelShuffle, "
                   "PixelUnshuffle and the padding layers of torch.nn, from host ops",
    .n_layers = sizeof rs_layers / sizeof rs_layers[0],
    .n_backends = 0,
    .layers = rs_layers,
    .backends = NULL,
    .domain = NNM_DOMAIN_NNMOD, /* nnmod's own library: the plain names */
};

NNM_PLUGIN_DEFINE(rs_plugin)
