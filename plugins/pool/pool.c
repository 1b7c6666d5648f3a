/* plugins/pool/pool.c - the pooling layers of torch.nn, one plugin (the
 * 2-d ones below; max_pool1d/3d, avg_pool1d/3d and adaptive_avg_pool1d/3d
 * take the same keys over 1 or 3 spatial dims, avg_pool1d without
 * divisor_override, as PyTorch; adaptive_max_pool1d/2d/3d take
 * output_size and return_indices = false, composed from op_index_select and
 * op_binary MAX, see amax_forward; return_indices = true gives the indices
 * as max_indices does for max pooling):
 *
 *   max_pool2d          (MaxPool2d)          kernel_size, stride = kernel_size,
 *                                            padding = 0, dilation = 1,
 *                                            return_indices = false (true: a
 *                                            second output, i64 indices as
 *                                            PyTorch's, see max_indices),
 *                                            ceil_mode = false
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

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum pool_kind { POOL_MAX, POOL_AVG, POOL_ADAPTIVE, POOL_ADAPTIVE_MAX };

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
    int return_indices; /* max pooling: a second output */
    int64_t divisor_override; /* 0: None */
    nnm_pool_params p;
} pool_state;

static const char *const pool_names[3][4] = {
    {"max_pool1d", "avg_pool1d", "adaptive_avg_pool1d", "adaptive_max_pool1d"},
    {"max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d"},
    {"max_pool3d", "avg_pool3d", "adaptive_avg_pool3d", "adaptive_max_pool3d"},
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
            return h->set_error(env, NNM_E_INVALID, "%s must be >= %lld and <= 2^30, got %lld", key,
                                (long long)min, (long long)out->v[i]);
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
    if (kind == POOL_ADAPTIVE || kind == POOL_ADAPTIVE_MAX) {
        if ((st = pool_read_pair(env, "output_size", NULL, &s.output_size, 1, ns))) return st;
        int ret_idx = 0;
        if (kind == POOL_ADAPTIVE_MAX && (st = h->config_bool(env, "return_indices", &no, &ret_idx))) return st;
        if (ret_idx && (!NNM_HOST_HAS(h, op_arg_reduce) || !NNM_HOST_HAS(h, op_cast) ||
                        !NNM_HOST_HAS(h, op_detach) || !NNM_HOST_HAS(h, op_index_select)))
            return h->set_error(env, NNM_E_VERSION,
                                "%s: return_indices=true needs a host of ABI 1.5 (op_arg_reduce)",
                                POOL_NAME(&s));
        s.return_indices = ret_idx;
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
            if (ret_idx && (!NNM_HOST_HAS(h, op_arg_reduce) || !NNM_HOST_HAS(h, op_cast) ||
                            !NNM_HOST_HAS(h, op_detach) || !NNM_HOST_HAS(h, op_index_select)))
                return h->set_error(env, NNM_E_VERSION,
                                    "%s: return_indices=true needs a host of ABI 1.5 (op_arg_reduce)",
                                    POOL_NAME(&s));
            s.return_indices = ret_idx;
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
POOL_CREATE(amax1_create, POOL_ADAPTIVE_MAX, 1)
POOL_CREATE(amax2_create, POOL_ADAPTIVE_MAX, 2)
POOL_CREATE(amax3_create, POOL_ADAPTIVE_MAX, 3)

static void pool_destroy(void *self) { free(self); }

/* ------------------------------------------------------------------------ */
/* adaptive_max_pool1d/2d/3d: composed (the host's op_pool has no adaptive   */
/* max). Separable: per spatial dim, output j is the max over its window     */
/* [floor(j * in / out), ceil((j + 1) * in / out)) of the input rows, taken  */
/* as a chain of op_binary MAX over op_index_select'ed rows (a window        */
/* shorter than the longest repeats its last row). The gradient reaches the  */
/* maximum (a row counted twice gets its halves back through index_add).     */
/* ------------------------------------------------------------------------ */

static nnm_status amax_dim(nnm_env *env, nnm_tensor *x, int32_t axis, int64_t in, int64_t out, nnm_tensor **y) {
    const nnm_host *h = env->host;
    const nnm_dtype i64 = {NNM_DTYPE_INT, 64, 1};
    *y = NULL;
    int64_t kmax = 1;
    for (int64_t j = 0; j < out; j++) {
        const int64_t s = (j * in) / out, e = ((j + 1) * in + out - 1) / out;
        if (e - s > kmax) kmax = e - s;
    }
    int64_t *idx = malloc((size_t)out * sizeof *idx);
    if (!idx) return h->set_error(env, NNM_E_NOMEM, "adaptive max pool: out of memory");
    nnm_status st = NNM_OK;
    nnm_tensor *acc = NULL;
    for (int64_t k = 0; k < kmax && !st; k++) {
        for (int64_t j = 0; j < out; j++) {
            const int64_t s = (j * in) / out, e = ((j + 1) * in + out - 1) / out;
            idx[j] = s + k < e ? s + k : e - 1;
        }
        nnm_tensor *it = NULL, *rows = NULL, *m = NULL;
        st = h->tensor_from_host(env, 1, &out, i64, idx, &it);
        if (!st) st = h->op_index_select(env, x, axis, it, &rows);
        h->tensor_release(it);
        if (st) break;
        if (!acc) {
            acc = rows;
            continue;
        }
        st = h->op_binary(env, NNM_BINARY_MAX, acc, rows, &m);
        h->tensor_release(acc);
        h->tensor_release(rows);
        acc = m;
    }
    free(idx);
    if (st) {
        h->tensor_release(acc);
        return st;
    }
    *y = acc;
    return NNM_OK;
}

static nnm_status amax_forward(nnm_env *env, const pool_state *s, nnm_tensor *x, nnm_tensor **out) {
    const nnm_host *h = env->host;
    if (!NNM_HOST_HAS(h, op_index_select) || !NNM_HOST_HAS(h, tensor_from_host))
        return h->set_error(env, NNM_E_VERSION, "%s needs a host of ABI 1.5 (op_index_select)", POOL_NAME(s));
    const nnm_tensor_desc *d = h->tensor_desc(x);
    const int32_t nd = d->ndim;
    int64_t in[3];
    for (int i = 0; i < s->ns; i++) {
        in[i] = d->shape[nd - s->ns + i];
        if (in[i] < 1)
            return h->set_error(env, NNM_E_SHAPE, "%s: spatial dim %d of the input is empty", POOL_NAME(s), i);
    }
    nnm_tensor *cur = x;
    h->tensor_retain(cur);
    for (int i = 0; i < s->ns; i++) {
        nnm_tensor *y = NULL;
        nnm_status st = amax_dim(env, cur, nd - s->ns + i, in[i], s->output_size.v[i], &y);
        h->tensor_release(cur);
        if (st) return st;
        cur = y;
    }
    *out = cur;
    return NNM_OK;
}

/* ------------------------------------------------------------------------ */
/* max pooling's indices (return_indices=true): composed. PyTorch's index of */
/* an output is the flat position of its window's maximum in the input's     */
/* plane (d * H * W + h * W + w). The windows are gathered from the detached */
/* input [R, P] (R planes of P elements) with one op_index_select of O * K   */
/* positions (O outputs, K window elements; a position in the padding       */
/* repeats the window's first element inside the input, which PyTorch also  */
/* reports for a window of -inf), op_arg_reduce takes the first maximum in   */
/* window order (PyTorch's rule), and the window-local winner k of output o  */
/* becomes table[o * K + k], the position gathered there (f32 arithmetic,    */
/* exact below 2^24, checked). No gradient: the values come from op_pool.    */
/* Adaptive max pooling's too: its windows [floor(o * in / out),            */
/* ceil((o + 1) * in / out)), a shorter one padded with repeats of its start. */
/* ------------------------------------------------------------------------ */

static nnm_status max_indices(nnm_env *env, const pool_state *s, nnm_tensor *x, nnm_tensor *values,
                              nnm_tensor **out) {
    const nnm_host *h = env->host;
    const nnm_dtype i64 = {NNM_DTYPE_INT, 64, 1};
    const nnm_tensor_desc *xd = h->tensor_desc(x), *vd = h->tensor_desc(values);
    const int ns = s->ns, nd = xd->ndim;
    const int adaptive = s->kind == POOL_ADAPTIVE_MAX;
    int64_t in[3] = {1, 1, 1}, on[3] = {1, 1, 1}, kd[3] = {1, 1, 1}, R = 1, P = 1, O = 1, K = 1;
    for (int i = 0; i < nd - ns; i++) R *= xd->shape[i];
    for (int i = 0; i < ns; i++) {
        in[i] = xd->shape[nd - ns + i];
        on[i] = vd->shape[nd - ns + i];
        P *= in[i];
        O *= on[i];
        kd[i] = s->kernel.v[i];
        if (adaptive) /* the longest window [floor(o * in / out), ceil((o + 1) * in / out)) */
            for (int64_t o = 0; o < on[i]; o++) {
                const int64_t w = ((o + 1) * in[i] + on[i] - 1) / on[i] - (o * in[i]) / on[i];
                kd[i] = o == 0 || w > kd[i] ? w : kd[i];
            }
        K *= kd[i]; /* each factor <= 2^30 and K < 2^24 before it: no overflow */
        if (K >= ((int64_t)1 << 24) || O >= ((int64_t)1 << 24)) break;
    }
    if (P >= ((int64_t)1 << 24) || O >= ((int64_t)1 << 24) || K >= ((int64_t)1 << 24) ||
        O * K >= ((int64_t)1 << 24))
        return h->set_error(env, NNM_E_LIMIT,
                            "%s: return_indices=true takes planes and windows of fewer than 2^24 "
                            "elements (%lld and %lld x %lld)", POOL_NAME(s), (long long)P, (long long)O,
                            (long long)K);
    if (R == 0 || O == 0) /* no windows: no indices */
        return h->op_cast(env, values, i64, out);
    int64_t *pos = malloc(sizeof(int64_t) * (size_t)(O * K));
    float *table = malloc(sizeof(float) * (size_t)(O * K));
    float *base = malloc(sizeof(float) * (size_t)O);
    if (!pos || !table || !base) {
        free(pos), free(table), free(base);
        return h->set_error(env, NNM_E_NOMEM, "%s: out of memory for the indices", POOL_NAME(s));
    }
    for (int64_t o = 0; o < O; o++) {
        int64_t oc[3] = {0, 0, 0}, rem = o, first = -1;
        for (int i = ns - 1; i >= 0; i--) {
            oc[i] = rem % on[i];
            rem /= on[i];
        }
        base[o] = (float)(o * K);
        for (int pass = 0; pass < 2; pass++) /* pass 0 finds the first position inside */
            for (int64_t k = 0; k < K; k++) {
                int64_t kc = k, flat = 0, inside = 1;
                for (int i = ns - 1; i >= 0; i--) {
                    const int64_t ki = kc % kd[i];
                    kc /= kd[i];
                    int64_t c;
                    if (adaptive) { /* a window shorter than kd[i] ends in repeats of its start */
                        const int64_t st = (oc[i] * in[i]) / on[i];
                        const int64_t en = ((oc[i] + 1) * in[i] + on[i] - 1) / on[i];
                        c = ki < en - st ? st + ki : st;
                    } else {
                        c = oc[i] * s->stride.v[i] - s->padding.v[i] + ki * s->dilation.v[i];
                    }
                    inside &= c >= 0 && c < in[i];
                    int64_t mul = 1;
                    for (int j = i + 1; j < ns; j++) mul *= in[j];
                    flat += c * mul;
                }
                if (pass == 0 && inside && first < 0) first = flat;
                if (pass == 1) {
                    pos[o * K + k] = inside ? flat : first;
                    table[o * K + k] = (float)pos[o * K + k];
                }
            }
        if (first < 0) { /* PyTorch's windows always start inside */
            free(pos), free(table), free(base);
            return h->set_error(env, NNM_E_SHAPE, "%s: output %lld has a window outside the input",
                                POOL_NAME(s), (long long)o);
        }
    }
    const int64_t xs[2] = {R, P}, ps[1] = {O * K}, ws[3] = {R, O, K}, os[1] = {O}, ts[1] = {O * K},
                  flat_n[1] = {R * O};
    nnm_tensor *xdet = NULL, *x2 = NULL, *pt = NULL, *win = NULL, *w3 = NULL, *am = NULL, *amf = NULL;
    nnm_tensor *bt = NULL, *sum = NULL, *sumi = NULL, *sflat = NULL, *tt = NULL, *got = NULL, *goti = NULL;
    nnm_status st = h->op_detach(env, x, &xdet);
    if (!st) st = h->op_reshape(env, xdet, 2, xs, &x2);
    if (!st) st = h->tensor_from_host(env, 1, ps, i64, pos, &pt);
    if (!st) st = h->op_index_select(env, x2, 1, pt, &win);
    if (!st) st = h->op_reshape(env, win, 3, ws, &w3);
    if (!st) st = h->op_arg_reduce(env, NNM_REDUCE_MAX, w3, 2, 0, &am); /* [R, O] window-local */
    if (!st) st = h->op_cast(env, am, NNM_F32, &amf);
    if (!st) st = h->tensor_from_host(env, 1, os, NNM_F32, base, &bt);
    if (!st) st = h->op_binary(env, NNM_BINARY_ADD, amf, bt, &sum); /* o * K + k */
    if (!st) st = h->op_cast(env, sum, i64, &sumi);
    if (!st) st = h->op_reshape(env, sumi, 1, flat_n, &sflat);
    if (!st) st = h->tensor_from_host(env, 1, ts, NNM_F32, table, &tt);
    if (!st) st = h->op_index_select(env, tt, 0, sflat, &got);
    if (!st) st = h->op_cast(env, got, i64, &goti);
    if (!st) st = h->op_reshape(env, goti, vd->ndim, vd->shape, out);
    nnm_tensor *tmp[] = {xdet, x2, pt, win, w3, am, amf, bt, sum, sumi, sflat, tt, got, goti};
    for (size_t i = 0; i < sizeof tmp / sizeof tmp[0]; i++) h->tensor_release(tmp[i]);
    free(pos), free(table), free(base);
    return st;
}

static nnm_status pool_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in, nnm_tensor **out,
                               uint32_t n_out) {
    const nnm_host *h = env->host;
    const pool_state *s = self;
    if (n_in != 1 || !in[0] || n_out < 1 || n_out > (s->return_indices ? 2u : 1u))
        return h->set_error(env, NNM_E_SHAPE, "%s takes 1 input and returns %s, got %u outputs", POOL_NAME(s),
                            s->return_indices ? "1 or 2 outputs (values, indices)" : "1 output",
                            (unsigned)n_out);
    const nnm_tensor_desc *d = h->tensor_desc(in[0]);
    if (d->ndim != s->ns + 1 && d->ndim != s->ns + 2)
        return h->set_error(env, NNM_E_SHAPE, "%s: expected %dD or %dD input, got %dD", POOL_NAME(s), s->ns + 1,
                            s->ns + 2, (int)d->ndim);
    nnm_status st = s->kind == POOL_ADAPTIVE_MAX ? amax_forward(env, s, in[0], out)
                                                 : h->op_pool(env, in[0], &s->p, out);
    if (st == NNM_OK && n_out == 2 && (st = max_indices(env, s, in[0], out[0], &out[1])) != NNM_OK) {
        h->tensor_release(out[0]);
        out[0] = NULL;
    }
    return st;
}

static int pool_pair_str(char *buf, size_t cap, const pool_pair *p, int ns) {
    if (p->is_int) return snprintf(buf, cap, "%lld", (long long)p->v[0]);
    if (ns == 1) return snprintf(buf, cap, "(%lld,)", (long long)p->v[0]);
    if (ns == 2) return snprintf(buf, cap, "(%lld, %lld)", (long long)p->v[0], (long long)p->v[1]);
    return snprintf(buf, cap, "(%lld, %lld, %lld)", (long long)p->v[0], (long long)p->v[1], (long long)p->v[2]);
}

/* ------------------------------------------------------------------------ */
/* max_unpool1d/2d/3d (MaxUnpool1d/2d/3d): kernel_size, stride = kernel_size, */
/* padding = 0. forward(input, indices): output [*, *out] with out = (in - 1) */
/* * stride - 2 * padding + kernel, zeros except out.plane[indices] = input    */
/* (PyTorch's flat per-plane indices, as max_pool*d with return_indices      */
/* gives them). Composed: the indices are read on the host (exactly below    */
/* 2^24 off the CPU) into the inverse map, each output position pointing at  */
/* the input element written there or at a zero row, and one               */
/* op_index_select of [input, 0] makes the output; its gradient (index_add)  */
/* gives each input element the output gradient at its index. Where two      */
/* elements of a plane name the same index the last one wins (PyTorch's CPU  */
/* loop), and only it gets that gradient (PyTorch gathers it for both).      */
/* ------------------------------------------------------------------------ */

typedef struct unpool_state {
    int ns;
    int64_t kernel[3], stride[3], padding[3];
} unpool_state;

static const char *const unpool_names[3] = {"max_unpool1d", "max_unpool2d", "max_unpool3d"};

static nnm_status unpool_new(nnm_env *env, int ns, void **self) {
    const nnm_host *h = env->host;
    *self = NULL;
    if (!NNM_HOST_HAS(h, op_index_select) || !NNM_HOST_HAS(h, tensor_from_host))
        return h->set_error(env, NNM_E_VERSION, "%s needs a host of ABI 1.5 (op_index_select)",
                            unpool_names[ns - 1]);
    unpool_state s;
    memset(&s, 0, sizeof s);
    s.ns = ns;
    pool_pair k, st_, pd;
    const int64_t zero = 0;
    int32_t t;
    nnm_status st = pool_read_pair(env, "kernel_size", NULL, &k, 1, ns);
    if (st) return st;
    if (h->config_type(env, "stride", &t) == NNM_OK) {
        if ((st = pool_read_pair(env, "stride", NULL, &st_, 1, ns))) return st;
    } else {
        st_ = k; /* stride=None */
    }
    if ((st = pool_read_pair(env, "padding", &zero, &pd, 0, ns))) return st;
    for (int i = 0; i < ns; i++) {
        s.kernel[i] = k.v[i];
        s.stride[i] = st_.v[i];
        s.padding[i] = pd.v[i];
    }
    unpool_state *p = malloc(sizeof *p);
    if (!p) return h->set_error(env, NNM_E_NOMEM, "%s: out of memory", unpool_names[ns - 1]);
    *p = s;
    *self = p;
    return NNM_OK;
}

static nnm_status unpool1_create(nnm_env *env, void **self) { return unpool_new(env, 1, self); }
static nnm_status unpool2_create(nnm_env *env, void **self) { return unpool_new(env, 2, self); }
static nnm_status unpool3_create(nnm_env *env, void **self) { return unpool_new(env, 3, self); }

static nnm_status unpool_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in,
                                 nnm_tensor **out, uint32_t n_out) {
    const nnm_host *h = env->host;
    const unpool_state *s = self;
    const char *name = unpool_names[s->ns - 1];
    if (n_in != 2 || n_out != 1 || !in[0] || !in[1])
        return h->set_error(env, NNM_E_SHAPE, "%s takes input and indices and returns 1 output (output_size "
                            "is not supported)", name);
    const nnm_tensor_desc *xd = h->tensor_desc(in[0]), *id = h->tensor_desc(in[1]);
    const int ns = s->ns, nd = xd->ndim;
    if (nd != ns + 1 && nd != ns + 2)
        return h->set_error(env, NNM_E_SHAPE, "%s: expected %dD or %dD input, got %dD", name, ns + 1, ns + 2,
                            (int)nd);
    if (id->dtype.code != NNM_DTYPE_INT || id->dtype.bits != 64)
        return h->set_error(env, NNM_E_DTYPE, "%s: indices must be i64 (max_pool's return_indices)", name);
    int same = id->ndim == nd;
    for (int i = 0; same && i < nd; i++) same = id->shape[i] == xd->shape[i];
    if (!same)
        return h->set_error(env, NNM_E_SHAPE, "%s: Expected shape of indices to be same as that of the input "
                            "tensor", name);
    int64_t R = 1, M = 1, P = 1, oshape[NNM_MAX_DIMS];
    for (int i = 0; i < nd - ns; i++) {
        R *= xd->shape[i];
        oshape[i] = xd->shape[i];
    }
    for (int i = 0; i < ns; i++) {
        const int64_t isz = xd->shape[nd - ns + i];
        if (isz > ((int64_t)1 << 31))
            return h->set_error(env, NNM_E_LIMIT, "%s: too many elements", name);
        const int64_t o = (isz - 1) * s->stride[i] - 2 * s->padding[i] + s->kernel[i]; /* < 2^62 */
        if (o < 1)
            return h->set_error(env, NNM_E_SHAPE, "%s: output size %lld of spatial dim %d is too small", name,
                                (long long)o, i);
        if (o > ((int64_t)1 << 40) / P)
            return h->set_error(env, NNM_E_LIMIT, "%s: too many elements", name);
        oshape[nd - ns + i] = o;
        M *= isz;
        P *= o;
    }
    if (R * M >= ((int64_t)1 << 40) || R > ((int64_t)1 << 40) / P)
        return h->set_error(env, NNM_E_LIMIT, "%s: too many elements", name);
    /* the indices on the host */
    const int64_t n = R * M;
    const int64_t *idx = NULL;
    int64_t *own = NULL;
    float *f = NULL;
    nnm_status st = NNM_OK;
    if (id->device.type == NNM_DEVICE_CPU) {
        int contiguous = 1;
        int64_t acc = 1;
        for (int i = nd - 1; i >= 0; acc *= id->shape[i], i--)
            if (id->shape[i] != 1 && id->strides[i] != acc) contiguous = 0;
        if (contiguous) idx = n ? (const int64_t *)((char *)id->data + id->byte_offset) : NULL;
    }
    if (idx == NULL && n > 0) {
        own = malloc(sizeof(int64_t) * (size_t)n);
        f = malloc(sizeof(float) * (size_t)n);
        st = own && f ? h->tensor_read_f32(env, in[1], f, (size_t)n)
                      : h->set_error(env, NNM_E_NOMEM, "%s: out of memory", name);
        for (int64_t i = 0; st == NNM_OK && i < n; i++) {
            if (!(fabsf(f[i]) < 16777216.0f))
                st = h->set_error(env, NNM_E_LIMIT, "%s: indices off the CPU are read exactly below 2^24",
                                  name);
            else
                own[i] = (int64_t)f[i];
        }
        idx = own;
    }
    int64_t *inv = st == NNM_OK ? malloc(sizeof(int64_t) * (size_t)(R * P > 0 ? R * P : 1)) : NULL;
    if (st == NNM_OK && inv == NULL) st = h->set_error(env, NNM_E_NOMEM, "%s: out of memory", name);
    for (int64_t i = 0; st == NNM_OK && i < R * P; i++) inv[i] = n; /* the zero row */
    for (int64_t r = 0; st == NNM_OK && r < R; r++)
        for (int64_t m = 0; m < M; m++) {
            const int64_t q = idx[r * M + m];
            if (q < 0 || q >= P) {
                st = h->set_error(env, NNM_E_INVALID, "%s: Found an invalid max index: %lld (output volumes "
                                  "are of size %lld)", name, (long long)q, (long long)P);
                break;
            }
            inv[r * P + q] = r * M + m;
        }
    free(own);
    free(f);
    nnm_tensor *flat = NULL, *zero = NULL, *ext = NULL, *it = NULL, *y = NULL;
    const int64_t fshape[1] = {n}, one[1] = {1}, ishape[1] = {R * P};
    if (st == NNM_OK) st = h->op_reshape(env, in[0], 1, fshape, &flat);
    if (st == NNM_OK) st = h->op_full(env, 1, one, 0.0, &zero);
    if (st == NNM_OK) {
        nnm_tensor *parts[2] = {flat, zero};
        st = h->op_concat(env, parts, 2, 0, &ext);
    }
    if (st == NNM_OK) st = h->tensor_from_host(env, 1, ishape, (nnm_dtype){NNM_DTYPE_INT, 64, 1}, inv, &it);
    if (st == NNM_OK) st = h->op_index_select(env, ext, 0, it, &y);
    if (st == NNM_OK) st = h->op_reshape(env, y, nd, oshape, &out[0]);
    free(inv);
    nnm_tensor *tmp[] = {flat, zero, ext, it, y};
    for (size_t i = 0; i < sizeof tmp / sizeof tmp[0]; i++) h->tensor_release(tmp[i]);
    return st;
}

static int unpool_extra_repr(void *self, char *buf, size_t cap) {
    const unpool_state *s = self;
    char k[48], st[48], pd[48];
    pool_pair a = {{s->kernel[0], s->kernel[1], s->kernel[2]}, 0};
    pool_pair b = {{s->stride[0], s->stride[1], s->stride[2]}, 0};
    pool_pair c = {{s->padding[0], s->padding[1], s->padding[2]}, 0};
    pool_pair_str(k, sizeof k, &a, s->ns);
    pool_pair_str(st, sizeof st, &b, s->ns);
    pool_pair_str(pd, sizeof pd, &c, s->ns);
    return snprintf(buf, cap, "kernel_size=%s, stride=%s, padding=%s", k, st, pd);
}

static int pool_extra_repr(void *self, char *buf, size_t cap) {
    const pool_state *s = self;
    char k[48], st[48], pd[48], dl[48];
    if (s->kind == POOL_ADAPTIVE || s->kind == POOL_ADAPTIVE_MAX) {
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
    {"return_indices", NNM_CONFIG_BOOL, 0, "a second output: PyTorch's i64 indices, default false"},
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
static const nnm_config_field unpool_config[] = {
    {"kernel_size", NNM_CONFIG_INT_OR_INTS, NNM_CONFIG_REQUIRED, "the pooling's window size"},
    {"stride", NNM_CONFIG_INT_OR_INTS, 0, "default: kernel_size"},
    {"padding", NNM_CONFIG_INT_OR_INTS, 0, "the pooling's padding, default 0"},
};
static const nnm_config_field amax_config[] = {
    {"output_size", NNM_CONFIG_INT_OR_INTS, NNM_CONFIG_REQUIRED, "target size per spatial dim"},
    {"return_indices", NNM_CONFIG_BOOL, 0, "a second output: PyTorch's i64 indices, default false"},
};

#define POOL_LAYER(var, lname, display, create_fn, cfg) POOL_LAYER_V(var, lname, display, create_fn, cfg, 0, 1)
/* max pooling 1.1: return_indices, so any number of outputs (checked in forward) */
#define POOL_LAYER_V(var, lname, display, create_fn, cfg, minor, n_out)                               \
    static const nnm_layer_vtable var = {                                                             \
        .struct_size = sizeof(nnm_layer_vtable),                                                      \
        .name = lname,                                                                                \
        .version_major = 1,                                                                           \
        .version_minor = minor,                                                                       \
        .n_inputs = 1,                                                                                \
        .n_outputs = n_out,                                                                           \
        .create = create_fn,                                                                          \
        .destroy = pool_destroy,                                                                      \
        .forward = pool_forward,                                                                      \
        .extra_repr = pool_extra_repr,                                                                \
        .config_fields = cfg,                                                                         \
        .n_config_fields = sizeof cfg / sizeof cfg[0],                                                \
        .display_name = display,                                                                      \
    }

POOL_LAYER_V(max_layer, "max_pool2d", "MaxPool2d", max_create, max_config, 1, NNM_ARITY_ANY);
POOL_LAYER(avg_layer, "avg_pool2d", "AvgPool2d", avg_create, avg_config);
POOL_LAYER(adaptive_layer, "adaptive_avg_pool2d", "AdaptiveAvgPool2d", adaptive_create, adaptive_config);
POOL_LAYER_V(max1_layer, "max_pool1d", "MaxPool1d", max1_create, max_config, 1, NNM_ARITY_ANY);
POOL_LAYER(avg1_layer, "avg_pool1d", "AvgPool1d", avg1_create, avg1_config);
POOL_LAYER(adaptive1_layer, "adaptive_avg_pool1d", "AdaptiveAvgPool1d", adaptive1_create, adaptive_config);
POOL_LAYER_V(max3_layer, "max_pool3d", "MaxPool3d", max3_create, max_config, 1, NNM_ARITY_ANY);
POOL_LAYER(avg3_layer, "avg_pool3d", "AvgPool3d", avg3_create, avg_config);
POOL_LAYER(adaptive3_layer, "adaptive_avg_pool3d", "AdaptiveAvgPool3d", adaptive3_create, adaptive_config);
POOL_LAYER_V(amax1_layer, "adaptive_max_pool1d", "AdaptiveMaxPool1d", amax1_create, amax_config, 1,
             NNM_ARITY_ANY);
POOL_LAYER_V(amax2_layer, "adaptive_max_pool2d", "AdaptiveMaxPool2d", amax2_create, amax_config, 1,
             NNM_ARITY_ANY);
POOL_LAYER_V(amax3_layer, "adaptive_max_pool3d", "AdaptiveMaxPool3d", amax3_create, amax_config, 1,
             NNM_ARITY_ANY);

#define UNPOOL_LAYER(var, lname, display, create_fn)                                                  \
    static const nnm_layer_vtable var = {                                                             \
        .struct_size = sizeof(nnm_layer_vtable),                                                      \
        .name = lname,                                                                                \
        .version_major = 1,                                                                           \
        .n_inputs = 2,                                                                                \
        .n_outputs = 1,                                                                               \
        .create = create_fn,                                                                          \
        .destroy = pool_destroy,                                                                      \
        .forward = unpool_forward,                                                                    \
        .extra_repr = unpool_extra_repr,                                                              \
        .config_fields = unpool_config,                                                               \
        .n_config_fields = sizeof unpool_config / sizeof unpool_config[0],                            \
        .display_name = display,                                                                      \
    }
UNPOOL_LAYER(unpool1_layer, "max_unpool1d", "MaxUnpool1d", unpool1_create);
UNPOOL_LAYER(unpool2_layer, "max_unpool2d", "MaxUnpool2d", unpool2_create);
UNPOOL_LAYER(unpool3_layer, "max_unpool3d", "MaxUnpool3d", unpool3_create);

static const nnm_layer_vtable *const pool_layers[] = {&max_layer,   &avg_layer,   &adaptive_layer, &max1_layer,
                                                      &avg1_layer,  &adaptive1_layer, &max3_layer, &avg3_layer,
                                                      &adaptive3_layer, &amax1_layer, &amax2_layer, &amax3_layer,
                                                      &unpool1_layer, &unpool2_layer, &unpool3_layer};

static const nnm_plugin_desc pool_plugin = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
    .name = "pool",
    .description = "Pooling (torch.nn.MaxPool1d/2d/3d, AvgPool1d/2d/3d, AdaptiveAvgPool1d/2d/3d over op_pool; "
                   "AdaptiveMaxPool1d/2d/3d and MaxUnpool1d/2d/3d composed)",
    .n_layers = sizeof pool_layers / sizeof pool_layers[0],
    .layers = pool_layers,
    .domain = NNM_DOMAIN_NNMOD, /* nnmod's own library: the plain names */
};

NNM_PLUGIN_DEFINE(pool_plugin)
