/* plugins/math_ops/math_ops.c - PyTorch's elementwise, reduction and product
 * functions as stateless layers, for graphs that hold a PyTorch forward:
 *
 *   sub, div            x, y | x     other (one input), reverse = false, sub: alpha = 1
 *   pow                 x, y | x     exponent (one input), reverse = false
 *   neg, abs, sqrt, rsqrt, exp, log, erf, sign  x
 *   sin, cos, floor, ceil, round, trunc        x  (ABI 1.5 host; round: half to even, no decimals)
 *   clamp               x            min, max (either may be absent, not both)
 *   mean, sum, amax, amin  x         dim (int or ints; absent: all), keepdim = false
 *   max, min            x | x, y     dim (int; absent: all), keepdim = false; two
 *                                    inputs: the elementwise maximum/minimum; asked
 *                                    for two outputs with dim: (values, indices i64)
 *   argmax, argmin      x            dim (int; absent: the flattened x), keepdim = false
 *   maximum, minimum    x, y         (none)
 *   matmul              a, b         (none; torch.matmul, 1-d operands too)
 *   bmm                 a, b         (none; [B, n, m] @ [B, m, p])
 *   masked_fill         x, mask      value
 *   eq, ne, lt, le, gt, ge  x, y | x other (one input); result f32 0/1
 *   where               cond, x, y   (none; cond != 0 picks x)
 *   full                [like...]    size, fill_value, from_input, from_dim
 *   var, std            x            dim (int or ints; absent: all), unbiased = true, keepdim = false
 *   norm                x            p = 2 (number or "inf"), dim, keepdim = false
 *   normalize           x            p = 2, dim = 1, eps = 1e-12 (F.normalize)
 *   arange              [like...]    end, start = 0, step = 1, dtype, from_input, from_dim (ABI 1.5 host)
 *
 * Every op is composed of host ops only (op_unary, op_binary, op_reduce,
 * op_matmul, op_bmm, op_where, op_full, op_reshape), so it runs on every
 * device and autograd comes from the runtime. Messages start with the op's
 * name and name the config key or input they are about.
 */
#include <nnmod/plugin.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layer_util.h"
#include "ops_common.h"

enum mop_kind {
    M_SUB, M_DIV, M_POW, M_ERF, M_SIGN, M_NEG, M_ABS, M_SQRT, M_RSQRT, M_EXP, M_LOG, M_CLAMP, M_MEAN, M_SUM, M_AMAX,
    M_AMIN, M_MAX, M_MIN, M_MAXIMUM, M_MINIMUM, M_MATMUL, M_BMM, M_MASKED_FILL, M_EQ, M_NE, M_LT, M_LE,
    M_GT, M_GE, M_WHERE, M_FULL, M_VAR, M_STD, M_NORM, M_NORMALIZE, M_ARANGE,
    M_SIN, M_COS, M_FLOOR, M_CEIL, M_ROUND, M_TRUNC, M_ARGMAX, M_ARGMIN
};

typedef struct mop_state {
    int kind;
    const char *op;
    double other, alpha, min, max, value;
    int has_other, reverse, has_min, has_max, has_dim, keepdim;
    int64_t dims[NNM_MAX_DIMS];
    size_t n_dims;
    nnm_oc_sizes sizes; /* full; arange: its end */
    double p, eps, start, step;       /* norm, normalize; arange */
    int unbiased, i64;                /* var, std; arange */
} mop_state;

/* ---- create ------------------------------------------------------------- */

static nnm_status mop_create(nnm_env *env, int kind, const char *op, void **self) {
    const nnm_host *h = env->host;
    *self = NULL;
    mop_state *s = calloc(1, sizeof *s);
    if (!s) return h->set_error(env, NNM_E_NOMEM, "%s: out of memory", op);
    s->kind = kind;
    s->op = op;
    s->alpha = 1.0;
    nnm_status st = NNM_OK;
    const int no = 0;
    int present = 0;
    const double one = 1.0;
    switch (kind) {
    case M_SUB:
    case M_DIV:
    case M_POW:
    case M_EQ: case M_NE: case M_LT: case M_LE: case M_GT: case M_GE:
        st = nnm_oc_config_float_ex(env, op, kind == M_POW ? "exponent" : "other", NULL, &s->other, &s->has_other);
        if (!st && kind <= M_POW) st = h->config_bool(env, "reverse", &no, &s->reverse);
        if (!st && kind == M_SUB) st = h->config_float(env, "alpha", &one, &s->alpha);
        if (!st && kind == M_POW && s->reverse && s->has_other && !(s->other > 0.0))
            st = h->set_error(env, NNM_E_UNSUPPORTED,
                              "pow: exponent: reverse (exponent ** x) is composed as exp(x * log(exponent)) and needs "
                              "exponent > 0, got %g",
                              s->other);
        break;
    case M_CLAMP:
        if (!(st = nnm_oc_config_float_ex(env, op, "min", NULL, &s->min, &s->has_min)) &&
            !(st = nnm_oc_config_float_ex(env, op, "max", NULL, &s->max, &s->has_max)) && !s->has_min && !s->has_max)
            st = h->set_error(env, NNM_E_INVALID, "clamp: At least one of 'min' or 'max' must not be None");
        break;
    case M_MEAN: case M_SUM: case M_AMAX: case M_AMIN: case M_MAX: case M_MIN: case M_ARGMAX: case M_ARGMIN: {
        st = nnm_oc_config_int_or_ints(env, op, "dim", s->dims, NNM_MAX_DIMS, &s->n_dims, &s->has_dim);
        if (!st) st = h->config_bool(env, "keepdim", &no, &s->keepdim);
        if (!st && (kind == M_ARGMAX || kind == M_ARGMIN) && s->has_dim && s->n_dims != 1)
            st = h->set_error(env, NNM_E_TYPE, "%s: dim must be one integer", op);
        if (!st && (kind == M_MAX || kind == M_MIN) && s->has_dim && s->n_dims != 1)
            st = h->set_error(env, NNM_E_TYPE, "%s: dim must be one integer (use amax/amin for several dims)", op);
        break;
    }
    case M_MASKED_FILL:
        if (!(st = nnm_oc_config_float_ex(env, op, "value", NULL, &s->value, &present)) && !present)
            st = h->set_error(env, NNM_E_NOT_FOUND, "masked_fill: value is required");
        break;
    case M_FULL:
        if (!(st = nnm_oc_sizes_config(env, op, "size", &s->sizes)))
            st = nnm_oc_config_float_ex(env, op, "fill_value", NULL, &s->value, &present);
        if (!st && !present) st = h->set_error(env, NNM_E_NOT_FOUND, "full: fill_value is required");
        for (size_t i = 0; !st && i < s->sizes.n; i++)
            if (s->sizes.size[i] < 0 && s->sizes.from_input[i] < 0) {
                char b[256];
                st = h->set_error(env, NNM_E_INVALID, "full: size: Trying to create tensor with negative dimension %lld: %s",
                                  (long long)s->sizes.size[i], nnm_oc_ints_str(s->sizes.size, s->sizes.n, b, sizeof b));
            }
        break;
    case M_VAR:
    case M_STD: {
        const int yes = 1;
        st = nnm_oc_config_int_or_ints(env, op, "dim", s->dims, NNM_MAX_DIMS, &s->n_dims, &s->has_dim);
        if (!st) st = h->config_bool(env, "unbiased", &yes, &s->unbiased);
        if (!st) st = h->config_bool(env, "keepdim", &no, &s->keepdim);
        break;
    }
    case M_NORM:
    case M_NORMALIZE: {
        const double two = 2.0, tiny = 1e-12;
        const int64_t one_dim = 1;
        st = nnm_oc_config_float_ex(env, op, "p", &two, &s->p, NULL);
        if (!st && !(s->p > 0.0))
            st = h->set_error(env, NNM_E_UNSUPPORTED, "%s: p: only p > 0 (and \"inf\") is supported, got %g", op, s->p);
        if (!st && kind == M_NORM) {
            st = nnm_oc_config_int_or_ints(env, op, "dim", s->dims, NNM_MAX_DIMS, &s->n_dims, &s->has_dim);
            if (!st) st = h->config_bool(env, "keepdim", &no, &s->keepdim);
        } else if (!st) {
            s->n_dims = 1;
            s->has_dim = 1;
            if (!(st = h->config_int(env, "dim", &one_dim, &s->dims[0])))
                st = h->config_float(env, "eps", &tiny, &s->eps);
        }
        break;
    }
    case M_ARANGE: {
        const double zf = 0.0, of = 1.0;
        int32_t te = -1, ts = NNM_CONFIG_INT, tp = NNM_CONFIG_INT, tdt = -1;
        const char *dtype = NULL;
        size_t ni = 0, nd = 0;
        int pi = 0, pd = 0;
        if ((st = h->config_type(env, "end", &te))) {
            if (st == NNM_E_NOT_FOUND) st = h->set_error(env, NNM_E_NOT_FOUND, "arange: end is required");
            break;
        }
        h->config_type(env, "start", &ts); /* absent: stays INT */
        h->config_type(env, "step", &tp);
        if ((st = h->config_float(env, "end", NULL, &s->value)) || (st = h->config_float(env, "start", &zf, &s->start)) ||
            (st = h->config_float(env, "step", &of, &s->step)) ||
            (h->config_type(env, "dtype", &tdt) == NNM_OK && (st = h->config_str(env, "dtype", NULL, &dtype))) ||
            (st = nnm_oc_config_ints_opt(env, op, "from_input", s->sizes.from_input, 1, &ni, &pi)) ||
            (st = nnm_oc_config_ints_opt(env, op, "from_dim", s->sizes.from_dim, 1, &nd, &pd)))
            break;
        s->sizes.n = 1;
        s->sizes.dynamic = pi;
        if (pi != pd || (pi && (ni != 1 || nd != 1))) {
            st = h->set_error(env, NNM_E_INVALID, "arange: from_input and from_dim go together, one entry each (for end)");
            break;
        }
        if (!pi) s->sizes.from_input[0] = -1;
        if (s->step == 0.0) {
            st = h->set_error(env, NNM_E_INVALID, "arange: step must be nonzero");
            break;
        }
        if (dtype == NULL) s->i64 = te == NNM_CONFIG_INT && ts == NNM_CONFIG_INT && tp == NNM_CONFIG_INT; /* as PyTorch */
        else if (!strcmp(dtype, "int64")) s->i64 = 1;
        else if (!strcmp(dtype, "float32")) s->i64 = 0;
        else st = h->set_error(env, NNM_E_UNSUPPORTED, "arange: dtype \"%s\": only \"int64\" and \"float32\"", dtype);
        break;
    }
    default:
        break;
    }
    if (st) {
        free(s);
        return st;
    }
    *self = s;
    return NNM_OK;
}

#define CREATE(fn, kind, op) \
    static nnm_status fn(nnm_env *env, void **self) { return mop_create(env, kind, op, self); }
CREATE(sub_create, M_SUB, "sub")
CREATE(div_create, M_DIV, "div")
CREATE(pow_create, M_POW, "pow")
CREATE(neg_create, M_NEG, "neg")
CREATE(erf_create, M_ERF, "erf")
CREATE(sign_create, M_SIGN, "sign")
CREATE(abs_create, M_ABS, "abs")
CREATE(sqrt_create, M_SQRT, "sqrt")
CREATE(rsqrt_create, M_RSQRT, "rsqrt")
CREATE(exp_create, M_EXP, "exp")
CREATE(log_create, M_LOG, "log")
CREATE(clamp_create, M_CLAMP, "clamp")
CREATE(mean_create, M_MEAN, "mean")
CREATE(sum_create, M_SUM, "sum")
CREATE(amax_create, M_AMAX, "amax")
CREATE(amin_create, M_AMIN, "amin")
CREATE(max_create, M_MAX, "max")
CREATE(min_create, M_MIN, "min")
CREATE(maximum_create, M_MAXIMUM, "maximum")
CREATE(minimum_create, M_MINIMUM, "minimum")
CREATE(matmul_create, M_MATMUL, "matmul")
CREATE(bmm_create, M_BMM, "bmm")
CREATE(masked_fill_create, M_MASKED_FILL, "masked_fill")
CREATE(eq_create, M_EQ, "eq")
CREATE(ne_create, M_NE, "ne")
CREATE(lt_create, M_LT, "lt")
CREATE(le_create, M_LE, "le")
CREATE(gt_create, M_GT, "gt")
CREATE(ge_create, M_GE, "ge")
CREATE(where_create, M_WHERE, "where")
CREATE(full_create, M_FULL, "full")
CREATE(var_create, M_VAR, "var")
CREATE(std_create, M_STD, "std")
CREATE(norm_create, M_NORM, "norm")
CREATE(normalize_create, M_NORMALIZE, "normalize")
CREATE(arange_create, M_ARANGE, "arange")
CREATE(sin_create, M_SIN, "sin")
CREATE(cos_create, M_COS, "cos")
CREATE(floor_create, M_FLOOR, "floor")
CREATE(ceil_create, M_CEIL, "ceil")
CREATE(round_create, M_ROUND, "round")
CREATE(trunc_create, M_TRUNC, "trunc")
CREATE(argmax_create, M_ARGMAX, "argmax")
CREATE(argmin_create, M_ARGMIN, "argmin")

static void mop_destroy(void *self) { free(self); }

/* ---- helpers ------------------------------------------------------------ */

static const nnm_tensor_desc *D(nnm_env *env, const nnm_tensor *t) { return env->host->tensor_desc(t); }

static nnm_status un(nnm_env *env, int32_t op, nnm_tensor *x, double alpha, nnm_tensor **out) {
    return env->host->op_unary(env, op, x, alpha, out);
}

/* *t = op(*t, alpha), releasing the old *t. */
static nnm_status un_inplace(nnm_env *env, int32_t op, nnm_tensor **t, double alpha) {
    nnm_tensor *u = NULL;
    nnm_status st = un(env, op, *t, alpha, &u);
    if (!st) nnm_oc_swap(env->host, t, u);
    return st;
}

/* a op b where b is the 0-d scalar v (broadcast; no gradient to it), or
 * v op a when scalar_first. */
static nnm_status bin_scalar(nnm_env *env, int32_t op, nnm_tensor *a, double v, int scalar_first, nnm_tensor **out) {
    const nnm_host *h = env->host;
    nnm_tensor *c = NULL;
    nnm_status st = h->op_full(env, 0, NULL, v, &c);
    if (!st) st = scalar_first ? h->op_binary(env, op, c, a, out) : h->op_binary(env, op, a, c, out);
    h->tensor_release(c);
    return st;
}

/* One input with `other`, or two without: the message names the op. */
static nnm_status check_operands(nnm_env *env, const mop_state *s, uint32_t n_in, const char *key) {
    const nnm_host *h = env->host;
    if (n_in == 1 && !s->has_other)
        return h->set_error(env, NNM_E_SHAPE, "%s: one input needs the scalar `%s` in the config", s->op, key);
    if (n_in == 2 && s->has_other)
        return h->set_error(env, NNM_E_SHAPE, "%s: `%s` is for one input; got two inputs as well", s->op, key);
    return NNM_OK;
}

/* ---- forwards ----------------------------------------------------------- */

static nnm_status fwd_sub(nnm_env *env, const mop_state *s, nnm_tensor *const *in, uint32_t n_in, nnm_tensor **out) {
    const nnm_host *h = env->host;
    nnm_status st = check_operands(env, s, n_in, "other");
    if (st) return st;
    if (n_in == 1) {
        if (!s->reverse) return un(env, NNM_UNARY_ADD_SCALAR, in[0], -s->alpha * s->other, out); /* x - alpha * other */
        nnm_tensor *t = NULL;                                                                 /* other - alpha * x */
        if (!(st = un(env, NNM_UNARY_SCALE, in[0], -s->alpha, &t))) st = un(env, NNM_UNARY_ADD_SCALAR, t, s->other, out);
        h->tensor_release(t);
        return st;
    }
    nnm_tensor *a = s->reverse ? in[1] : in[0], *b = s->reverse ? in[0] : in[1];
    if (s->alpha == 1.0) return h->op_binary(env, NNM_BINARY_SUB, a, b, out);
    nnm_tensor *t = NULL;
    if (!(st = un(env, NNM_UNARY_SCALE, b, s->alpha, &t))) st = h->op_binary(env, NNM_BINARY_SUB, a, t, out);
    h->tensor_release(t);
    return st;
}

static nnm_status fwd_div(nnm_env *env, const mop_state *s, nnm_tensor *const *in, uint32_t n_in, nnm_tensor **out) {
    nnm_status st = check_operands(env, s, n_in, "other");
    if (st) return st;
    if (n_in == 1) return bin_scalar(env, NNM_BINARY_DIV, in[0], s->other, s->reverse, out);
    return env->host->op_binary(env, NNM_BINARY_DIV, s->reverse ? in[1] : in[0], s->reverse ? in[0] : in[1], out);
}

/* base ** exponent for tensors: exp(exponent * log(base)) (base > 0). */
static nnm_status pow_tensors(nnm_env *env, nnm_tensor *base, nnm_tensor *e, nnm_tensor **out) {
    const nnm_host *h = env->host;
    /* a host with the 1.5 dtype ops (op_cast) has the binary pow too
     * (negative bases with integral exponents, as torch); an older one
     * composes exp(e * log(base)), bases > 0 only */
    if (NNM_HOST_HAS(h, op_cast)) return h->op_binary(env, NNM_BINARY_POW, base, e, out);
    nnm_tensor *l = NULL, *m = NULL;
    nnm_status st = un(env, NNM_UNARY_LOG, base, 0, &l);
    if (!st) st = h->op_binary(env, NNM_BINARY_MUL, e, l, &m);
    if (!st) st = un(env, NNM_UNARY_EXP, m, 0, out);
    h->tensor_release(l);
    h->tensor_release(m);
    return st;
}

static nnm_status fwd_pow(nnm_env *env, const mop_state *s, nnm_tensor *const *in, uint32_t n_in, nnm_tensor **out) {
    const nnm_host *h = env->host;
    nnm_status st = check_operands(env, s, n_in, "exponent");
    if (st) return st;
    if (n_in == 2) return s->reverse ? pow_tensors(env, in[1], in[0], out) : pow_tensors(env, in[0], in[1], out);
    if (!s->reverse) return un(env, NNM_UNARY_POW, in[0], s->other, out);
    nnm_tensor *t = NULL; /* exponent ** x = exp(x * log(exponent)) */
    if (!(st = un(env, NNM_UNARY_SCALE, in[0], log(s->other), &t))) st = un(env, NNM_UNARY_EXP, t, 0, out);
    h->tensor_release(t);
    return st;
}

static nnm_status fwd_clamp(nnm_env *env, const mop_state *s, nnm_tensor *x, nnm_tensor **out) {
    nnm_tensor *t = x;
    env->host->tensor_retain(t);
    nnm_status st = NNM_OK;
    if (s->has_min) st = un_inplace(env, NNM_UNARY_CLAMP_MIN, &t, s->min);
    if (!st && s->has_max) st = un_inplace(env, NNM_UNARY_CLAMP_MAX, &t, s->max);
    if (st) {
        env->host->tensor_release(t);
        return st;
    }
    *out = t;
    return NNM_OK;
}

static nnm_status fwd_reduce(nnm_env *env, const mop_state *s, nnm_tensor *x, nnm_tensor **out) {
    const nnm_host *h = env->host;
    const nnm_tensor_desc *d = D(env, x);
    static const int32_t ops[] = {NNM_REDUCE_MEAN, NNM_REDUCE_SUM, NNM_REDUCE_MAX, NNM_REDUCE_MIN, NNM_REDUCE_MAX,
                                  NNM_REDUCE_MIN};
    const int32_t op = ops[s->kind - M_MEAN];
    const int minmax = op == NNM_REDUCE_MAX || op == NNM_REDUCE_MIN;
    int32_t dims[NNM_MAX_DIMS];
    int seen[NNM_MAX_DIMS] = {0};
    for (size_t i = 0; i < s->n_dims; i++) {
        nnm_status st = nnm_oc_wrap_dim(env, s->op, "dim", s->dims[i], d->ndim, &dims[i]);
        if (st) return st;
        if (seen[dims[i]]++)
            return h->set_error(env, NNM_E_INVALID, "%s: dim: dim %d appears multiple times in the list of dims", s->op,
                                (int)dims[i]);
    }
    if (d->ndim == 0) { /* a scalar reduces to itself */
        h->tensor_retain(x);
        *out = x;
        return NNM_OK;
    }
    if (minmax) {
        for (int32_t i = 0; i < d->ndim; i++)
            if (d->shape[i] == 0 && (s->n_dims == 0 || seen[i]))
                return h->set_error(env, NNM_E_SHAPE, "%s: %s(): Expected reduction dim %d to have non-zero size.", s->op,
                                    s->op, (int)i);
    }
    return h->op_reduce(env, op, x, dims, (uint32_t)s->n_dims, s->keepdim, out);
}

/* a @ b for a, b of >= 1 dims, as torch.matmul. */
static nnm_status fwd_matmul(nnm_env *env, nnm_tensor *a, nnm_tensor *b, nnm_tensor **out) {
    const nnm_host *h = env->host;
    const nnm_tensor_desc *da = D(env, a), *db = D(env, b);
    char sa[256], sb[256];
    if (da->ndim == 0 || db->ndim == 0)
        return h->set_error(env, NNM_E_SHAPE, "matmul: both arguments to matmul need to be at least 1D, but they are %dD and %dD",
                            (int)da->ndim, (int)db->ndim);
    const int64_t ka = da->shape[da->ndim - 1], kb = db->shape[db->ndim >= 2 ? db->ndim - 2 : 0];
    if (da->ndim == 1 && db->ndim == 1 && ka != kb)
        return h->set_error(env, NNM_E_SHAPE,
                            "matmul: inconsistent tensor size, expected tensor [%lld] and src [%lld] to have the same number "
                            "of elements, but got %lld and %lld elements respectively",
                            (long long)ka, (long long)kb, (long long)ka, (long long)kb);
    if (ka != kb)
        return h->set_error(env, NNM_E_SHAPE, "matmul: mat1 and mat2 shapes cannot be multiplied (%s and %s)",
                            nnm_oc_shape_str(h, a, sa, sizeof sa), nnm_oc_shape_str(h, b, sb, sizeof sb));
    /* batch dims must broadcast */
    const int32_t ba = da->ndim - 2, bb = db->ndim - 2, nb = ba > bb ? ba : bb;
    int64_t batch[NNM_MAX_DIMS];
    for (int32_t i = 0; i < nb; i++) {
        const int32_t ia = ba - nb + i, ib = bb - nb + i;
        const int64_t xa = ia >= 0 ? da->shape[ia] : 1, xb = ib >= 0 ? db->shape[ib] : 1;
        if (xa != xb && xa != 1 && xb != 1)
            return h->set_error(env, NNM_E_SHAPE,
                                "matmul: The size of tensor a (%lld) must match the size of tensor b (%lld) at "
                                "non-singleton dimension %d",
                                (long long)xa, (long long)xb, (int)i);
        batch[i] = xa == 1 ? xb : xa;
    }
    nnm_tensor *a2 = NULL, *b2 = NULL, *y = NULL;
    nnm_status st = NNM_OK;
    if (da->ndim == 1) {
        int64_t s2[2] = {1, ka};
        st = h->op_reshape(env, a, 2, s2, &a2);
    } else {
        h->tensor_retain(a);
        a2 = a;
    }
    if (!st && db->ndim == 1) {
        int64_t s2[2] = {kb, 1};
        st = h->op_reshape(env, b, 2, s2, &b2);
    } else if (!st) {
        h->tensor_retain(b);
        b2 = b;
    }
    if (!st) {
        if (D(env, a2)->ndim == 2 && D(env, b2)->ndim == 2) st = h->op_matmul(env, a2, b2, &y);
        else st = h->op_bmm(env, a2, b2, &y);
    }
    if (!st && (da->ndim == 1 || db->ndim == 1)) { /* drop the dims the 1-d operands gained */
        int64_t shape[NNM_MAX_DIMS];
        int32_t n = 0;
        for (int32_t i = 0; i < nb; i++) shape[n++] = batch[i];
        if (da->ndim > 1) shape[n++] = da->shape[da->ndim - 2];
        if (db->ndim > 1) shape[n++] = db->shape[db->ndim - 1];
        nnm_tensor *u = NULL;
        if (!(st = h->op_reshape(env, y, n, shape, &u))) nnm_oc_swap(h, &y, u);
    }
    h->tensor_release(a2);
    h->tensor_release(b2);
    if (st) {
        h->tensor_release(y);
        return st;
    }
    *out = y;
    return NNM_OK;
}

static nnm_status fwd_bmm(nnm_env *env, nnm_tensor *a, nnm_tensor *b, nnm_tensor **out) {
    const nnm_host *h = env->host;
    const nnm_tensor_desc *da = D(env, a), *db = D(env, b);
    if (da->ndim != 3) return h->set_error(env, NNM_E_SHAPE, "bmm: batch1 must be a 3D tensor (got %d dims)", (int)da->ndim);
    if (db->ndim != 3) return h->set_error(env, NNM_E_SHAPE, "bmm: batch2 must be a 3D tensor (got %d dims)", (int)db->ndim);
    if (db->shape[0] != da->shape[0] || db->shape[1] != da->shape[2])
        return h->set_error(env, NNM_E_SHAPE,
                            "bmm: Expected size for first two dimensions of batch2 tensor to be: [%lld, %lld] but got: "
                            "[%lld, %lld].",
                            (long long)da->shape[0], (long long)da->shape[2], (long long)db->shape[0],
                            (long long)db->shape[1]);
    return h->op_bmm(env, a, b, out);
}

static nnm_status need_f32(nnm_env *env, const char *op, const char *what, nnm_tensor *t) {
    const nnm_tensor_desc *d = D(env, t);
    if (nnm_lu_is_f32(d)) return NNM_OK;
    char b[64];
    return env->host->set_error(env, NNM_E_DTYPE,
                                "%s: %s must be f32 (0/1 for a mask; nnmod's comparisons give f32), got %s", op, what,
                                nnm_lu_dtype_str(d->dtype, b, sizeof b));
}

/* x compared with y (or with the scalar c when y is NULL): f32 0/1. */
static nnm_status fwd_compare(nnm_env *env, const mop_state *s, nnm_tensor *x, nnm_tensor *y, nnm_tensor **out) {
    const nnm_host *h = env->host;
    const double c = y ? 0.0 : (double)(float)s->other; /* PyTorch compares an f32 tensor with the scalar as f32 */
    nnm_tensor *t = NULL, *u = NULL;
    nnm_status st = NNM_OK;
    if (y) {
        if ((st = h->op_binary(env, NNM_BINARY_SUB, x, y, &t))) return st; /* zero exactly when x == y */
    } else {
        h->tensor_retain(x);
        t = x;
    }
    switch (s->kind) {
    case M_GE: st = un(env, NNM_UNARY_GE, t, c, out); break;
    case M_LE:
        if (!(st = un(env, NNM_UNARY_NEG, t, 0, &u))) st = un(env, NNM_UNARY_GE, u, -c, out);
        break;
    case M_GT:
        if (c != 0.0) st = un_inplace(env, NNM_UNARY_ADD_SCALAR, &t, -c);
        if (!st) st = un(env, NNM_UNARY_STEP, t, 0, out);
        break;
    case M_LT:
        if (!(st = un_inplace(env, NNM_UNARY_NEG, &t, 0)) && c != 0.0) st = un_inplace(env, NNM_UNARY_ADD_SCALAR, &t, c);
        if (!st) st = un(env, NNM_UNARY_STEP, t, 0, out);
        break;
    case M_EQ:
    case M_NE: {
        nnm_tensor *e = NULL;
        if (y) { /* -|x - y| >= 0 */
            if (!(st = un_inplace(env, NNM_UNARY_ABS, &t, 0)) && !(st = un_inplace(env, NNM_UNARY_NEG, &t, 0)))
                st = un(env, NNM_UNARY_GE, t, 0.0, &e);
        } else { /* (x >= c) * (-x >= -c): exact for infinities too */
            nnm_tensor *g1 = NULL, *g2 = NULL;
            if (!(st = un(env, NNM_UNARY_GE, t, c, &g1)) && !(st = un(env, NNM_UNARY_NEG, t, 0, &u)) &&
                !(st = un(env, NNM_UNARY_GE, u, -c, &g2)))
                st = h->op_binary(env, NNM_BINARY_MUL, g1, g2, &e);
            h->tensor_release(g1);
            h->tensor_release(g2);
        }
        if (!st && s->kind == M_NE) { /* 1 - eq */
            if (!(st = un_inplace(env, NNM_UNARY_NEG, &e, 0))) st = un_inplace(env, NNM_UNARY_ADD_SCALAR, &e, 1.0);
        }
        if (st) h->tensor_release(e);
        else *out = e;
        break;
    }
    default: st = h->set_error(env, NNM_E_STATE, "%s: not a comparison", s->op);
    }
    h->tensor_release(t);
    h->tensor_release(u);
    return st;
}

static nnm_status fwd_full(nnm_env *env, const mop_state *s, nnm_tensor *const *in, uint32_t n_in, nnm_tensor **out) {
    int64_t size[NNM_MAX_DIMS];
    nnm_status st = nnm_oc_sizes_resolve(env, "full", &s->sizes, in, n_in, size);
    if (st) return st;
    for (size_t i = 0; i < s->sizes.n; i++)
        if (size[i] < 0) {
            char b[256];
            return env->host->set_error(env, NNM_E_SHAPE, "full: size: Trying to create tensor with negative dimension %lld: %s",
                                        (long long)size[i], nnm_oc_ints_str(size, s->sizes.n, b, sizeof b));
        }
    return env->host->op_full(env, (int32_t)s->sizes.n, size, s->value, out);
}

/* reduce over s->dims (none: all) keeping dims; n = elements per result */
static nnm_status reduce_keep(nnm_env *env, const mop_state *s, int32_t op, nnm_tensor *x, nnm_tensor **out,
                              int64_t *n) {
    const nnm_host *h = env->host;
    const nnm_tensor_desc *d = D(env, x);
    int32_t dims[NNM_MAX_DIMS];
    int seen[NNM_MAX_DIMS] = {0};
    for (size_t i = 0; i < s->n_dims; i++) {
        nnm_status st = nnm_oc_wrap_dim(env, s->op, "dim", s->dims[i], d->ndim, &dims[i]);
        if (st) return st;
        if (seen[dims[i]]++)
            return h->set_error(env, NNM_E_INVALID, "%s: dim: dim %d appears multiple times in the list of dims", s->op,
                                (int)dims[i]);
    }
    if (n) {
        *n = 1;
        for (int32_t i = 0; i < d->ndim; i++)
            if (s->n_dims == 0 || seen[i]) *n *= d->shape[i];
    }
    return h->op_reduce(env, op, x, dims, d->ndim ? (uint32_t)s->n_dims : 0, 1, out);
}

/* The result with the reduced dims dropped unless keepdim (x: the input). */
static nnm_status drop_reduced(nnm_env *env, const mop_state *s, nnm_tensor *x, nnm_tensor *r, nnm_tensor **out) {
    const nnm_host *h = env->host;
    const nnm_tensor_desc *d = D(env, x);
    if (s->keepdim) {
        h->tensor_retain(r);
        *out = r;
        return NNM_OK;
    }
    int seen[NNM_MAX_DIMS] = {0};
    for (size_t i = 0; i < s->n_dims; i++) {
        int32_t k;
        nnm_oc_wrap_dim(env, s->op, "dim", s->dims[i], d->ndim, &k);
        seen[k] = 1;
    }
    int64_t shape[NNM_MAX_DIMS];
    int32_t n = 0;
    for (int32_t i = 0; i < d->ndim; i++)
        if (!(s->n_dims == 0 || seen[i])) shape[n++] = d->shape[i];
    return h->op_reshape(env, r, n, shape, out);
}

/* var = sum((x - mean)^2) / (n - unbiased); std = sqrt(var). */
static nnm_status fwd_var(nnm_env *env, const mop_state *s, nnm_tensor *x, nnm_tensor **out) {
    const nnm_host *h = env->host;
    nnm_tensor *m = NULL, *dv = NULL, *sq = NULL, *sum = NULL, *v = NULL;
    int64_t n = 0;
    nnm_status st = reduce_keep(env, s, NNM_REDUCE_MEAN, x, &m, &n);
    if (!st) st = h->op_binary(env, NNM_BINARY_SUB, x, m, &dv);
    if (!st) st = h->op_binary(env, NNM_BINARY_MUL, dv, dv, &sq);
    if (!st) st = reduce_keep(env, s, NNM_REDUCE_SUM, sq, &sum, NULL);
    if (!st) {
        const double div = (double)n - (s->unbiased ? 1.0 : 0.0);
        st = h->op_unary(env, NNM_UNARY_SCALE, sum, div > 0 ? 1.0 / div : (double)INFINITY, &v);
    }
    if (!st && s->kind == M_STD) st = un_inplace(env, NNM_UNARY_SQRT, &v, 0);
    if (!st) st = drop_reduced(env, s, x, v, out);
    h->tensor_release(m);
    h->tensor_release(dv);
    h->tensor_release(sq);
    h->tensor_release(sum);
    h->tensor_release(v);
    return st;
}

/* The p-norm over s->dims, keeping dims. */
static nnm_status pnorm_keep(nnm_env *env, const mop_state *s, nnm_tensor *x, nnm_tensor **out) {
    const nnm_host *h = env->host;
    nnm_tensor *a = NULL, *t = NULL;
    nnm_status st;
    if (isinf(s->p)) {
        if (!(st = un(env, NNM_UNARY_ABS, x, 0, &a))) st = reduce_keep(env, s, NNM_REDUCE_MAX, a, out, NULL);
    } else if (s->p == 2.0) {
        if (!(st = h->op_binary(env, NNM_BINARY_MUL, x, x, &a)) && !(st = reduce_keep(env, s, NNM_REDUCE_SUM, a, &t, NULL)))
            st = un(env, NNM_UNARY_SQRT, t, 0, out);
    } else if (s->p == 1.0) {
        if (!(st = un(env, NNM_UNARY_ABS, x, 0, &a))) st = reduce_keep(env, s, NNM_REDUCE_SUM, a, out, NULL);
    } else {
        if (!(st = un(env, NNM_UNARY_ABS, x, 0, &a)) && !(st = un_inplace(env, NNM_UNARY_POW, &a, s->p)) &&
            !(st = reduce_keep(env, s, NNM_REDUCE_SUM, a, &t, NULL)))
            st = un(env, NNM_UNARY_POW, t, 1.0 / s->p, out);
    }
    h->tensor_release(a);
    h->tensor_release(t);
    return st;
}

static nnm_status fwd_norm(nnm_env *env, const mop_state *s, nnm_tensor *x, nnm_tensor **out) {
    const nnm_host *h = env->host;
    nnm_tensor *r = NULL;
    nnm_status st = pnorm_keep(env, s, x, &r);
    if (!st) {
        if (s->kind == M_NORM) {
            st = drop_reduced(env, s, x, r, out);
        } else { /* F.normalize: x / max(norm, eps) */
            if (!(st = un_inplace(env, NNM_UNARY_CLAMP_MIN, &r, s->eps))) st = h->op_binary(env, NNM_BINARY_DIV, x, r, out);
        }
    }
    h->tensor_release(r);
    return st;
}

static nnm_status fwd_arange(nnm_env *env, const mop_state *s, nnm_tensor *const *in, uint32_t n_in, nnm_tensor **out) {
    const nnm_host *h = env->host;
    if (!NNM_HOST_HAS(h, tensor_from_host))
        return h->set_error(env, NNM_E_UNSUPPORTED, "arange needs an ABI 1.5 host (tensor_from_host)");
    double end = s->value;
    if (s->sizes.from_input[0] >= 0) {
        nnm_oc_sizes one = s->sizes;
        int64_t e = 0;
        nnm_status st = nnm_oc_sizes_resolve(env, "arange", &one, in, n_in, &e);
        if (st) return st;
        end = (double)e;
    }
    if ((s->step > 0 && end < s->start) || (s->step < 0 && end > s->start))
        return h->set_error(env, NNM_E_INVALID, "arange: upper bound and larger bound inconsistent with step sign");
    const double len = ceil((end - s->start) / s->step);
    if (!(len >= 0 && len < 1e12)) return h->set_error(env, NNM_E_LIMIT, "arange: %g elements", len);
    const int64_t n = (int64_t)len;
    /* every value of an int64 arange must be one (the first and the last
     * bound them): converting a double past int64 is undefined */
    for (int64_t i = 0; s->i64 && n > 0 && i < 2; i++) {
        const double v = s->start + (double)(i ? n - 1 : 0) * s->step;
        if (!(v >= -9223372036854775808.0 && v < 9223372036854775808.0))
            return h->set_error(env, NNM_E_LIMIT, "arange: value %.17g does not fit an int64 tensor", v);
    }
    /* The values are made in host memory first: no more than the machine
     * has (under ASan or an overcommitting kernel, malloc of 8 TB is not a
     * clean NULL). */
    if (!nnm_lu_host_fits((double)n * 8.0))
        return h->set_error(env, NNM_E_NOMEM, "arange: %lld elements (%.3g bytes) are more than this machine's memory",
                            (long long)n, (double)n * 8.0);
    void *buf = malloc((size_t)(n ? n : 1) * 8);
    if (!buf) return h->set_error(env, NNM_E_NOMEM, "arange: out of memory for %lld elements", (long long)n);
    for (int64_t i = 0; i < n; i++) {
        const double v = s->start + (double)i * s->step;
        if (s->i64) ((int64_t *)buf)[i] = (int64_t)v;
        else ((float *)buf)[i] = (float)v;
    }
    const nnm_dtype dt = s->i64 ? (nnm_dtype){NNM_DTYPE_INT, 64, 1} : NNM_F32;
    nnm_status st = h->tensor_from_host(env, 1, &n, dt, buf, out);
    free(buf);
    return st;
}

/* A mask or condition as f32 0/1: an f32 one is used as is (borrowed: *out
 * gets a new reference), a bool/integer one is cast through the 1.5 host's
 * op_cast (x != 0, as torch takes a bool mask). */
static nnm_status mask_f32(nnm_env *env, const char *op, const char *what, nnm_tensor *m, nnm_tensor **out) {
    const nnm_host *h = env->host;
    const nnm_tensor_desc *d = D(env, m);
    *out = NULL;
    if (d->dtype.code == NNM_DTYPE_FLOAT && d->dtype.bits == 32 && d->dtype.lanes == 1) {
        h->tensor_retain(m);
        *out = m;
        return NNM_OK;
    }
    if (!NNM_HOST_HAS(h, op_cast)) return need_f32(env, op, what, m);
    const nnm_dtype b8 = {NNM_DTYPE_BOOL, 8, 1};
    nnm_tensor *b = NULL;
    nnm_status st = d->dtype.code == NNM_DTYPE_BOOL ? NNM_OK : h->op_cast(env, m, b8, &b);
    if (!st) st = h->op_cast(env, b ? b : m, NNM_F32, out);
    h->tensor_release(b);
    if (st == NNM_E_DTYPE)
        return h->set_error(env, NNM_E_DTYPE, "%s: %s must be bool or f32 (code %d, %d bits)", op, what,
                            (int)d->dtype.code, (int)d->dtype.bits);
    return st;
}

/* torch.argmax/argmin (dim absent: over the flattened tensor, as torch). */
static nnm_status fwd_argreduce(nnm_env *env, const mop_state *s, nnm_tensor *x, nnm_tensor **out) {
    const nnm_host *h = env->host;
    if (!NNM_HOST_HAS(h, op_arg_reduce))
        return h->set_error(env, NNM_E_UNSUPPORTED, "%s needs an ABI 1.5 host (op_arg_reduce)", s->op);
    const int32_t op = s->kind == M_ARGMAX || s->kind == M_MAX ? NNM_REDUCE_MAX : NNM_REDUCE_MIN;
    if (s->has_dim) return h->op_arg_reduce(env, op, x, (int32_t)s->dims[0], s->keepdim, out);
    const nnm_tensor_desc *d = D(env, x);
    const int64_t flat = -1;
    nnm_tensor *f = NULL, *r = NULL;
    nnm_status st = h->op_reshape(env, x, 1, &flat, &f);
    if (!st) st = h->op_arg_reduce(env, op, f, 0, 0, &r);
    if (!st && s->keepdim && d->ndim > 0) { /* torch 1.13: keepdim keeps every dim as size 1 */
        int64_t ones[NNM_MAX_DIMS];
        for (int32_t i = 0; i < d->ndim; i++) ones[i] = 1;
        st = h->op_reshape(env, r, d->ndim, ones, out);
    } else if (!st) {
        *out = r;
        r = NULL;
    }
    h->tensor_release(f);
    h->tensor_release(r);
    return st;
}

/* max(x, dim) / min(x, dim) with two outputs: (values, indices i64). */
static nnm_status fwd_minmax_indices(nnm_env *env, const mop_state *s, nnm_tensor *x, nnm_tensor **out) {
    const nnm_host *h = env->host;
    if (!s->has_dim)
        return h->set_error(env, NNM_E_SHAPE, "%s: indices (a second output) need dim; without dim %s returns 1 output",
                            s->op, s->op);
    nnm_status st = fwd_reduce(env, s, x, &out[0]);
    if (!st) st = fwd_argreduce(env, s, x, &out[1]);
    if (st) {
        h->tensor_release(out[0]);
        out[0] = NULL;
    }
    return st;
}

static nnm_status mop_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in, nnm_tensor **out,
                              uint32_t n_out) {
    const nnm_host *h = env->host;
    const mop_state *s = self;
    if (!s) return h->set_error(env, NNM_E_STATE, "math op: forward without state");
    uint32_t lo = 1, hi = 1;
    switch (s->kind) {
    case M_SUB: case M_DIV: case M_POW: case M_MAX: case M_MIN:
    case M_EQ: case M_NE: case M_LT: case M_LE: case M_GT: case M_GE: hi = 2; break;
    case M_MAXIMUM: case M_MINIMUM: case M_MATMUL: case M_BMM: case M_MASKED_FILL: lo = hi = 2; break;
    case M_WHERE: lo = hi = 3; break;
    case M_FULL: case M_ARANGE: lo = 0, hi = NNM_MAX_IO; break;
    default: break;
    }
    if ((s->kind == M_MAX || s->kind == M_MIN) && n_out == 2 && n_in == 1 && out && in && in[0]) {
        out[0] = out[1] = NULL;
        return fwd_minmax_indices(env, s, in[0], out);
    }
    nnm_status st = nnm_oc_check_io(env, s->op, in, n_in, lo, hi, out, n_out);
    if (st) return st;
    switch (s->kind) {
    case M_SUB: return fwd_sub(env, s, in, n_in, out);
    case M_DIV: return fwd_div(env, s, in, n_in, out);
    case M_POW: return fwd_pow(env, s, in, n_in, out);
    case M_NEG: return un(env, NNM_UNARY_NEG, in[0], 0, out);
    case M_ERF: return un(env, NNM_UNARY_ERF, in[0], 0, out);
    case M_SIGN: return un(env, NNM_UNARY_SIGN, in[0], 0, out);
    case M_ABS: return un(env, NNM_UNARY_ABS, in[0], 0, out);
    case M_SQRT: return un(env, NNM_UNARY_SQRT, in[0], 0, out);
    case M_RSQRT: return un(env, NNM_UNARY_POW, in[0], -0.5, out);
    case M_EXP: return un(env, NNM_UNARY_EXP, in[0], 0, out);
    case M_LOG: return un(env, NNM_UNARY_LOG, in[0], 0, out);
    case M_SIN: return un(env, NNM_UNARY_SIN, in[0], 0, out);
    case M_COS: return un(env, NNM_UNARY_COS, in[0], 0, out);
    case M_FLOOR: return un(env, NNM_UNARY_FLOOR, in[0], 0, out);
    case M_CEIL: return un(env, NNM_UNARY_CEIL, in[0], 0, out);
    case M_ROUND: return un(env, NNM_UNARY_ROUND, in[0], 0, out);
    case M_TRUNC: return un(env, NNM_UNARY_TRUNC, in[0], 0, out);
    case M_ARGMAX: case M_ARGMIN: return fwd_argreduce(env, s, in[0], out);
    case M_CLAMP: return fwd_clamp(env, s, in[0], out);
    case M_MAX:
    case M_MIN:
        if (n_in == 2) {
            if (s->has_dim)
                return h->set_error(env, NNM_E_SHAPE, "%s: dim is for one input; two inputs are the elementwise %s",
                                    s->op, s->kind == M_MAX ? "maximum" : "minimum");
            return h->op_binary(env, s->kind == M_MAX ? NNM_BINARY_MAX : NNM_BINARY_MIN, in[0], in[1], out);
        }
        return fwd_reduce(env, s, in[0], out);
    case M_MEAN: case M_SUM: case M_AMAX: case M_AMIN: return fwd_reduce(env, s, in[0], out);
    case M_MAXIMUM: return h->op_binary(env, NNM_BINARY_MAX, in[0], in[1], out);
    case M_MINIMUM: return h->op_binary(env, NNM_BINARY_MIN, in[0], in[1], out);
    case M_MATMUL: return fwd_matmul(env, in[0], in[1], out);
    case M_BMM: return fwd_bmm(env, in[0], in[1], out);
    case M_MASKED_FILL: {
        nnm_tensor *v = NULL, *m = NULL;
        if ((st = mask_f32(env, "masked_fill", "mask (input 1)", in[1], &m))) return st;
        if (!(st = h->op_full(env, 0, NULL, s->value, &v))) st = h->op_where(env, m, v, in[0], out);
        h->tensor_release(v);
        h->tensor_release(m);
        return st;
    }
    case M_EQ: case M_NE: case M_LT: case M_LE: case M_GT: case M_GE:
        if ((st = check_operands(env, s, n_in, "other"))) return st;
        return fwd_compare(env, s, in[0], n_in == 2 ? in[1] : NULL, out);
    case M_WHERE: {
        nnm_tensor *c = NULL;
        if ((st = mask_f32(env, "where", "condition (input 0)", in[0], &c))) return st;
        st = h->op_where(env, c, in[1], in[2], out);
        h->tensor_release(c);
        return st;
    }
    case M_FULL: return fwd_full(env, s, in, n_in, out);
    case M_VAR:
    case M_STD: return fwd_var(env, s, in[0], out);
    case M_NORM:
    case M_NORMALIZE: return fwd_norm(env, s, in[0], out);
    case M_ARANGE: return fwd_arange(env, s, in, n_in, out);
    default: return h->set_error(env, NNM_E_STATE, "math op: unknown kind %d", s->kind);
    }
}

/* ---- extra_repr --------------------------------------------------------- */

static int mop_extra_repr(void *self, char *buf, size_t cap) {
    const mop_state *s = self;
    char a[256], f1[40], f2[40];
    if (!s) return snprintf(buf, cap, "%s", "");
    size_t at = 0;
#define APPEND(...)                                                                                   \
    do {                                                                                              \
        int k_ = snprintf(buf + (at < cap ? at : cap), at < cap ? cap - at : 0, __VA_ARGS__);         \
        at += k_ > 0 ? (size_t)k_ : 0;                                                                \
    } while (0)
    switch (s->kind) {
    case M_SUB: case M_DIV: case M_POW: case M_EQ: case M_NE: case M_LT: case M_LE: case M_GT: case M_GE:
        if (s->has_other) {
            nnm_lu_pyfloat(f1, sizeof f1, s->other);
            APPEND("%s=%s", s->kind == M_POW ? "exponent" : "other", f1);
        }
        if (s->kind == M_SUB && s->alpha != 1.0) {
            nnm_lu_pyfloat(f2, sizeof f2, s->alpha);
            APPEND("%salpha=%s", at ? ", " : "", f2);
        }
        if (s->reverse) APPEND("%sreverse=True", at ? ", " : "");
        break;
    case M_CLAMP:
        if (s->has_min) nnm_lu_pyfloat(f1, sizeof f1, s->min);
        if (s->has_max) nnm_lu_pyfloat(f2, sizeof f2, s->max);
        APPEND("min=%s, max=%s", s->has_min ? f1 : "None", s->has_max ? f2 : "None");
        break;
    case M_MEAN: case M_SUM: case M_AMAX: case M_AMIN: case M_MAX: case M_MIN: case M_ARGMAX: case M_ARGMIN:
        if (s->has_dim) APPEND("dim=%s, ", s->n_dims == 1 ? (snprintf(a, sizeof a, "%lld", (long long)s->dims[0]), a)
                                                          : nnm_oc_ints_str(s->dims, s->n_dims, a, sizeof a));
        APPEND("keepdim=%s", s->keepdim ? "True" : "False");
        break;
    case M_MASKED_FILL:
        nnm_lu_pyfloat(f1, sizeof f1, s->value);
        APPEND("value=%s", f1);
        break;
    case M_FULL:
        nnm_lu_pyfloat(f1, sizeof f1, s->value);
        APPEND("size=%s, fill_value=%s", nnm_oc_ints_str(s->sizes.size, s->sizes.n, a, sizeof a), f1);
        break;
    case M_VAR: case M_STD: case M_NORM:
        if (s->kind == M_NORM) {
            nnm_lu_pyfloat(f1, sizeof f1, s->p);
            APPEND("p=%s, ", f1);
        }
        if (s->has_dim) APPEND("dim=%s, ", nnm_oc_ints_str(s->dims, s->n_dims, a, sizeof a));
        if (s->kind != M_NORM) APPEND("unbiased=%s, ", s->unbiased ? "True" : "False");
        APPEND("keepdim=%s", s->keepdim ? "True" : "False");
        break;
    case M_NORMALIZE:
        nnm_lu_pyfloat(f1, sizeof f1, s->p);
        nnm_lu_pyfloat(f2, sizeof f2, s->eps);
        APPEND("p=%s, dim=%lld, eps=%s", f1, (long long)s->dims[0], f2);
        break;
    case M_ARANGE:
        nnm_lu_pyfloat(f1, sizeof f1, s->start);
        nnm_lu_pyfloat(f2, sizeof f2, s->value);
        APPEND("start=%s, end=%s, ", f1, s->sizes.from_input[0] >= 0 ? "(from an input)" : f2);
        nnm_lu_pyfloat(f1, sizeof f1, s->step);
        APPEND("step=%s, dtype=%s", f1, s->i64 ? "int64" : "float32");
        break;
    default: APPEND("%s", ""); break;
    }
#undef APPEND
    return (int)at;
}

/* ---- schemas and vtables ------------------------------------------------ */

static const nnm_config_field none_config[1] = {{NULL, 0, 0, NULL}};
static const nnm_config_field sub_config[] = {
    {"other", NNM_CONFIG_ANY, 0, "the scalar operand when there is one input (number, \"inf\", \"-inf\", \"nan\")"},
    {"reverse", NNM_CONFIG_BOOL, 0, "other - alpha * x (torch.rsub), default false"},
    {"alpha", NNM_CONFIG_FLOAT, 0, "multiplier of the second operand, default 1"},
};
static const nnm_config_field div_config[] = {
    {"other", NNM_CONFIG_ANY, 0, "the scalar divisor when there is one input (number or \"inf\", ...)"},
    {"reverse", NNM_CONFIG_BOOL, 0, "other / x, default false"},
};
static const nnm_config_field pow_config[] = {
    {"exponent", NNM_CONFIG_ANY, 0, "the scalar exponent when there is one input"},
    {"reverse", NNM_CONFIG_BOOL, 0, "exponent ** x, default false"},
};
static const nnm_config_field cmp_config[] = {{"other", NNM_CONFIG_ANY, 0, "the scalar to compare with (one input; number or \"inf\", ...)"}};
static const nnm_config_field clamp_config[] = {
    {"min", NNM_CONFIG_ANY, 0, "lower bound (absent: none)"},
    {"max", NNM_CONFIG_ANY, 0, "upper bound (absent: none)"},
};
static const nnm_config_field reduce_config[] = {
    {"dim", NNM_CONFIG_INT_OR_INTS, 0, "dim(s) to reduce; absent: all"},
    {"keepdim", NNM_CONFIG_BOOL, 0, "keep reduced dims as size 1, default false"},
};
static const nnm_config_field minmax_config[] = {
    {"dim", NNM_CONFIG_INT, 0, "dim to reduce; absent: all"},
    {"keepdim", NNM_CONFIG_BOOL, 0, "keep the reduced dim as size 1, default false"},
};
static const nnm_config_field masked_fill_config[] = {{"value", NNM_CONFIG_ANY, NNM_CONFIG_REQUIRED, "fill value (number, \"inf\", \"-inf\", \"nan\")"}};
static const nnm_config_field full_config[] = {
    {"size", NNM_CONFIG_INTS, NNM_CONFIG_REQUIRED, "the shape"},
    {"fill_value", NNM_CONFIG_ANY, NNM_CONFIG_REQUIRED, "every element's value (number, \"inf\", \"-inf\", \"nan\")"},
    {"from_input", NNM_CONFIG_INTS, 0, "per size entry: the input whose shape gives it, or -1"},
    {"from_dim", NNM_CONFIG_INTS, 0, "per size entry: the dim of that input (negative from the end)"},
};

static const nnm_config_field var_config[] = {
    {"dim", NNM_CONFIG_INT_OR_INTS, 0, "dim(s) to reduce; absent: all"},
    {"unbiased", NNM_CONFIG_BOOL, 0, "divide by n - 1 (Bessel), default true"},
    {"keepdim", NNM_CONFIG_BOOL, 0, "keep reduced dims as size 1, default false"},
};
static const nnm_config_field norm_config[] = {
    {"p", NNM_CONFIG_ANY, 0, "the norm's order, default 2 (a number > 0 or \"inf\")"},
    {"dim", NNM_CONFIG_INT_OR_INTS, 0, "dim(s) to reduce; absent: all"},
    {"keepdim", NNM_CONFIG_BOOL, 0, "keep reduced dims as size 1, default false"},
};
static const nnm_config_field normalize_config[] = {
    {"p", NNM_CONFIG_ANY, 0, "the norm's order, default 2 (a number > 0 or \"inf\")"},
    {"dim", NNM_CONFIG_INT, 0, "dim to normalise, default 1"},
    {"eps", NNM_CONFIG_FLOAT, 0, "smallest divisor, default 1e-12"},
};
static const nnm_config_field arange_config[] = {
    {"end", NNM_CONFIG_FLOAT, NNM_CONFIG_REQUIRED, "the bound (excluded); an integer keeps the int64 default"},
    {"start", NNM_CONFIG_FLOAT, 0, "first value, default 0"},
    {"step", NNM_CONFIG_FLOAT, 0, "the step, default 1 (nonzero)"},
    {"dtype", NNM_CONFIG_STR, 0, "\"int64\" or \"float32\"; absent: int64 when start, end and step are integers"},
    {"from_input", NNM_CONFIG_INTS, 0, "[i]: end is the size of input i's dim from_dim[0]"},
    {"from_dim", NNM_CONFIG_INTS, 0, "[d]: that dim (negative from the end)"},
};

#define N_FIELDS(a) ((uint32_t)(sizeof(a) / sizeof((a)[0])))
#define LAYER(var, nm, create_fn, nin, cfg, ncfg) LAYER_V(var, nm, create_fn, nin, 1, 0, cfg, ncfg)
/* minor 1 (ABI 1.5 host): max/min return (values, indices) when asked for 2
 * outputs, pow of two tensors takes negative bases, masked_fill and where
 * take bool masks */
#define LAYER_V(var, nm, create_fn, nin, nout, minor, cfg, ncfg)                                        \
    static const nnm_layer_vtable var = {                                                               \
        .struct_size = sizeof(nnm_layer_vtable),                                                        \
        .name = nm,                                                                                     \
        .version_major = 1,                                                                             \
        .version_minor = minor,                                                                         \
        .n_inputs = nin,                                                                                \
        .n_outputs = nout,                                                                              \
        .create = create_fn,                                                                            \
        .destroy = mop_destroy,                                                                         \
        .forward = mop_forward,                                                                         \
        .extra_repr = mop_extra_repr,                                                                   \
        .config_fields = cfg,                                                                           \
        .n_config_fields = ncfg,                                                                        \
    }
#define ANY NNM_ARITY_ANY

LAYER(sub_layer, "sub", sub_create, ANY, sub_config, N_FIELDS(sub_config));
LAYER(div_layer, "div", div_create, ANY, div_config, N_FIELDS(div_config));
LAYER_V(pow_layer, "pow", pow_create, ANY, 1, 1, pow_config, N_FIELDS(pow_config));
LAYER(neg_layer, "neg", neg_create, 1, none_config, 0);
LAYER(erf_layer, "erf", erf_create, 1, none_config, 0);
LAYER(var_layer, "var", var_create, 1, var_config, N_FIELDS(var_config));
LAYER(std_layer, "std", std_create, 1, var_config, N_FIELDS(var_config));
LAYER(norm_layer, "norm", norm_create, 1, norm_config, N_FIELDS(norm_config));
LAYER(normalize_layer, "normalize", normalize_create, 1, normalize_config, N_FIELDS(normalize_config));
LAYER(arange_layer, "arange", arange_create, ANY, arange_config, N_FIELDS(arange_config));
LAYER(sign_layer, "sign", sign_create, 1, none_config, 0);
LAYER(abs_layer, "abs", abs_create, 1, none_config, 0);
LAYER(sqrt_layer, "sqrt", sqrt_create, 1, none_config, 0);
LAYER(rsqrt_layer, "rsqrt", rsqrt_create, 1, none_config, 0);
LAYER(exp_layer, "exp", exp_create, 1, none_config, 0);
LAYER(log_layer, "log", log_create, 1, none_config, 0);
LAYER(clamp_layer, "clamp", clamp_create, 1, clamp_config, N_FIELDS(clamp_config));
LAYER(mean_layer, "mean", mean_create, 1, reduce_config, N_FIELDS(reduce_config));
LAYER(sum_layer, "sum", sum_create, 1, reduce_config, N_FIELDS(reduce_config));
LAYER(amax_layer, "amax", amax_create, 1, reduce_config, N_FIELDS(reduce_config));
LAYER(amin_layer, "amin", amin_create, 1, reduce_config, N_FIELDS(reduce_config));
LAYER_V(max_layer, "max", max_create, ANY, ANY, 1, minmax_config, N_FIELDS(minmax_config));
LAYER_V(min_layer, "min", min_create, ANY, ANY, 1, minmax_config, N_FIELDS(minmax_config));
LAYER(maximum_layer, "maximum", maximum_create, 2, none_config, 0);
LAYER(minimum_layer, "minimum", minimum_create, 2, none_config, 0);
LAYER(matmul_layer, "matmul", matmul_create, 2, none_config, 0);
LAYER(bmm_layer, "bmm", bmm_create, 2, none_config, 0);
LAYER_V(masked_fill_layer, "masked_fill", masked_fill_create, 2, 1, 1, masked_fill_config, N_FIELDS(masked_fill_config));
LAYER(eq_layer, "eq", eq_create, ANY, cmp_config, N_FIELDS(cmp_config));
LAYER(ne_layer, "ne", ne_create, ANY, cmp_config, N_FIELDS(cmp_config));
LAYER(lt_layer, "lt", lt_create, ANY, cmp_config, N_FIELDS(cmp_config));
LAYER(le_layer, "le", le_create, ANY, cmp_config, N_FIELDS(cmp_config));
LAYER(gt_layer, "gt", gt_create, ANY, cmp_config, N_FIELDS(cmp_config));
LAYER(ge_layer, "ge", ge_create, ANY, cmp_config, N_FIELDS(cmp_config));
LAYER_V(where_layer, "where", where_create, 3, 1, 1, none_config, 0);
LAYER(sin_layer, "sin", sin_create, 1, none_config, 0);
LAYER(cos_layer, "cos", cos_create, 1, none_config, 0);
LAYER(floor_layer, "floor", floor_create, 1, none_config, 0);
LAYER(ceil_layer, "ceil", ceil_create, 1, none_config, 0);
LAYER(round_layer, "round", round_create, 1, none_config, 0);
LAYER(trunc_layer, "trunc", trunc_create, 1, none_config, 0);
LAYER(argmax_layer, "argmax", argmax_create, 1, minmax_config, N_FIELDS(minmax_config));
LAYER(argmin_layer, "argmin", argmin_create, 1, minmax_config, N_FIELDS(minmax_config));
LAYER(full_layer, "full", full_create, ANY, full_config, N_FIELDS(full_config));

static const nnm_layer_vtable *const mop_layers[] = {
    &sub_layer,  &div_layer,  &pow_layer,     &neg_layer,     &abs_layer,    &sqrt_layer,        &rsqrt_layer,
    &exp_layer,  &log_layer,  &clamp_layer,   &mean_layer,    &sum_layer,    &amax_layer,        &amin_layer,
    &max_layer,  &min_layer,  &maximum_layer, &minimum_layer, &matmul_layer, &bmm_layer,         &masked_fill_layer,
    &eq_layer,   &ne_layer,   &lt_layer,      &le_layer,      &gt_layer,     &ge_layer,          &where_layer,
    &full_layer, &erf_layer, &sign_layer, &var_layer, &std_layer, &norm_layer, &normalize_layer, &arange_layer,
    &sin_layer,  &cos_layer,  &floor_layer,   &ceil_layer,    &round_layer,  &trunc_layer,       &argmax_layer,
    &argmin_layer,
};

static const nnm_plugin_desc mop_plugin = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
    .name = "math_ops",
    .description = "PyTorch's elementwise, reduction and product functions (sub, mean, matmul, ...) as stateless layers",
    .n_layers = (uint32_t)(sizeof mop_layers / sizeof mop_layers[0]),
    .layers = mop_layers,
    .domain = NNM_DOMAIN_NNMOD, /* nnmod's own library: the plain names */
};

NNM_PLUGIN_DEFINE(mop_plugin)
