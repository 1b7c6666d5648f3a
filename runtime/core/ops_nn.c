/* runtime/core/ops_nn.c - the ABI 1.3 ops the standard layers need: constant
 * and random tensors, batched matmul, softmax over any dim, where, in-place
 * buffer updates, convolution and pooling. A convolution goes first to the
 * backend's own kernel (ABI 1.4 `conv` / `conv_backward`, e.g. the CPU
 * backend's Winograd 3x3); when the backend has none or declines the
 * geometry, it runs as im2col + gemm.
 *
 * As in ops.c: check shapes, dtypes and devices, allocate outputs (and
 * scratch) from the caching allocator, dispatch to the device's backend, and
 * record for autograd. A backend without a slot gets NNM_E_UNSUPPORTED naming
 * the op and the backend. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static int is_f32(const nnm_tensor *t) {
    return t->desc.dtype.code == NNM_DTYPE_FLOAT && t->desc.dtype.bits == 32 && t->desc.dtype.lanes == 1;
}

static nnm_status need_f32(nnm_ctx *ctx, const char *op, const char *what, const nnm_tensor *t) {
    if (!t) return nnm__error(ctx, NNM_E_INVALID, "%s: %s is NULL", op, what);
    if (!is_f32(t)) return nnm__error(ctx, NNM_E_DTYPE, "%s: %s must be f32", op, what);
    return NNM_OK;
}

static nnm_status same_device(nnm_ctx *ctx, const char *op, const nnm_tensor *a, const nnm_tensor *b) {
    if (nnm__device_eq(a->desc.device, b->desc.device)) return NNM_OK;
    char da[32], db[32];
    return nnm__error(ctx, NNM_E_DEVICE, "%s: operands are on different devices (%s and %s)", op,
                      nnm__device_name(a->desc.device, da, sizeof da),
                      nnm__device_name(b->desc.device, db, sizeof db));
}

static float *fdata(const nnm_tensor *t) {
    return (float *)(void *)((char *)t->desc.data + t->desc.byte_offset);
}

static nnm_status check_shape_arg(nnm_ctx *ctx, const char *op, int32_t ndim, const int64_t *shape) {
    if (ndim < 0 || ndim > NNM_MAX_DIMS || (ndim && !shape))
        return nnm__error(ctx, NNM_E_SHAPE, "%s: bad ndim %d", op, (int)ndim);
    for (int32_t i = 0; i < ndim; i++)
        if (shape[i] < 0) return nnm__error(ctx, NNM_E_SHAPE, "%s: negative size in dim %d", op, (int)i);
    return NNM_OK;
}

/* ---- full, rand --------------------------------------------------------- */

nnm_status nnm__op_full(nnm_ctx *ctx, nnm_device dev, int32_t ndim, const int64_t *shape, double value,
                        nnm_tensor **out) {
    *out = NULL;
    nnm_status st = check_shape_arg(ctx, "full", ndim, shape);
    nnm_tensor *t = NULL;
    if (st || (st = nnm__tensor_alloc(ctx, dev, NNM_F32, ndim, shape, &t))) return st;
    if ((st = nnm__op_fill(ctx, t, value))) nnm_tensor_release(t);
    else *out = t;
    return st;
}

nnm_status nnm__op_rand(nnm_ctx *ctx, nnm_device dev, int32_t dist, double a, double b, int32_t ndim,
                        const int64_t *shape, nnm_tensor **out) {
    *out = NULL;
    nnm_status st = check_shape_arg(ctx, "rand", ndim, shape);
    if (st) return st;
    if (dist == NNM_RAND_UNIFORM && !(a <= b))
        return nnm__error(ctx, NNM_E_INVALID, "rand: uniform needs a <= b (%g, %g)", a, b);
    if (dist == NNM_RAND_NORMAL && !(b >= 0))
        return nnm__error(ctx, NNM_E_INVALID, "rand: normal needs std >= 0 (%g)", b);
    if (dist == NNM_RAND_BERNOULLI && !(a >= 0 && a <= 1))
        return nnm__error(ctx, NNM_E_INVALID, "rand: bernoulli needs a probability in [0, 1] (%g)", a);
    if (dist < NNM_RAND_UNIFORM || dist > NNM_RAND_BERNOULLI)
        return nnm__error(ctx, NNM_E_INVALID, "rand: unknown distribution %d", (int)dist);
    /* Drawn on the host (one stream for every device), then moved. */
    nnm_device cpu = {NNM_DEVICE_CPU, 0};
    nnm_tensor *h = NULL, *t = NULL;
    if ((st = nnm__tensor_alloc(ctx, cpu, NNM_F32, ndim, shape, &h))) return st;
    float *p = fdata(h);
    int64_t n = nnm_tensor_numel(h);
    for (int64_t i = 0; i < n; i++) {
        double u;
        switch (dist) {
        case NNM_RAND_UNIFORM: u = a + (b - a) * nnm__rng_uniform(ctx->rng); break;
        case NNM_RAND_NORMAL: u = a + b * nnm__rng_normal(ctx->rng); break;
        default: u = nnm__rng_uniform(ctx->rng) < a ? b : 0.0; break;
        }
        p[i] = (float)u;
    }
    if (dev.type == NNM_DEVICE_CPU) {
        *out = h;
        return NNM_OK;
    }
    nnm__backend *be;
    if (!(st = nnm__backend_get(ctx, dev, &be)) &&
        !(st = nnm__tensor_alloc(ctx, dev, NNM_F32, ndim, shape, &t))) {
        st = nnm__backend_upload(ctx, be, t->desc.data, dev, p, (size_t)n * sizeof(float)); /* no wait */
    }
    nnm_tensor_release(h);
    if (st) nnm_tensor_release(t);
    else *out = t;
    return st;
}

/* ---- batched matmul ----------------------------------------------------- */

/* One gemm per batch entry; a and b contiguous with `na`/`nb` batch dims
 * broadcast to obatch[0..nbd). trans_*: use the transposed matrix. Writes c
 * ([batch..., m, n] contiguous) with C = op(A) op(B) + beta C. */
static nnm_status batched_gemm(nnm_ctx *ctx, nnm__backend *be, int ta, int tb, nnm_tensor *a,
                               nnm_tensor *b, nnm_tensor *c, int32_t nbd, const int64_t *obatch,
                               int64_t m, int64_t n, int64_t k, float beta) {
    int32_t ad = a->desc.ndim - 2, bd = b->desc.ndim - 2;
    int64_t amat = a->shape[ad] * a->shape[ad + 1], bmat = b->shape[bd] * b->shape[bd + 1];
    /* batch strides (in matrices) of a and b over the broadcast batch shape */
    int64_t as[NNM_MAX_DIMS], bs[NNM_MAX_DIMS], acc_a = 1, acc_b = 1;
    for (int32_t i = nbd - 1; i >= 0; i--) {
        int32_t ia = ad - nbd + i, ib = bd - nbd + i;
        int64_t sa = ia >= 0 ? a->shape[ia] : 1, sb = ib >= 0 ? b->shape[ib] : 1;
        as[i] = sa == 1 ? 0 : acc_a;
        bs[i] = sb == 1 ? 0 : acc_b;
        acc_a *= sa;
        acc_b *= sb;
    }
    int64_t total = nnm__numel(nbd, obatch), idx[NNM_MAX_DIMS] = {0};
    nnm__env env;
    nnm__env_init(&env, ctx, NULL, NNM__PHASE_BACKEND);
    const float *pa = fdata(a), *pb = fdata(b);
    float *pc = fdata(c);
    int64_t oa = 0, ob = 0;
    for (int64_t t = 0; t < total; t++) {
        nnm_gemm_args g = {sizeof g, ta, tb, m, n, k, 1.0f, beta,
                           pa + oa * amat, ta ? m : k, pb + ob * bmat, tb ? k : n, pc + t * m * n, n};
        nnm_status st = be->vt->gemm(&env.pub, be->state, &g);
        if (st) return st;
        for (int32_t i = nbd - 1; i >= 0; i--) {
            oa += as[i];
            ob += bs[i];
            if (++idx[i] < obatch[i]) break;
            oa -= as[i] * obatch[i];
            ob -= bs[i] * obatch[i];
            idx[i] = 0;
        }
    }
    return NNM_OK;
}

/* The broadcast batch shape of a [..., m, k] and b [..., k, n]. */
static nnm_status bmm_batch(nnm_ctx *ctx, const nnm_tensor *a, const nnm_tensor *b, int32_t *nbd,
                            int64_t *batch) {
    int32_t na = a->desc.ndim - 2, nb = b->desc.ndim - 2, n = na > nb ? na : nb;
    for (int32_t i = 0; i < n; i++) {
        int32_t ia = na - n + i, ib = nb - n + i;
        int64_t da = ia >= 0 ? a->shape[ia] : 1, db = ib >= 0 ? b->shape[ib] : 1;
        if (da != db && da != 1 && db != 1)
            return nnm__error(ctx, NNM_E_SHAPE, "bmm: batch dims do not broadcast (%lld vs %lld)",
                              (long long)da, (long long)db);
        batch[i] = da == 1 ? db : da;
    }
    *nbd = n;
    return NNM_OK;
}

nnm_status nnm__bmm_raw(nnm_ctx *ctx, int ta, int tb, nnm_tensor *a, nnm_tensor *b, nnm_tensor **out) {
    *out = NULL;
    int32_t ad = a->desc.ndim, bd = b->desc.ndim, nbd = 0;
    int64_t m = ta ? a->shape[ad - 1] : a->shape[ad - 2], k = ta ? a->shape[ad - 2] : a->shape[ad - 1];
    int64_t kb = tb ? b->shape[bd - 1] : b->shape[bd - 2], n = tb ? b->shape[bd - 2] : b->shape[bd - 1];
    if (k != kb) {
        char s1[128], s2[128];
        nnm__shape_str(&a->desc, s1, sizeof s1);
        nnm__shape_str(&b->desc, s2, sizeof s2);
        return nnm__error(ctx, NNM_E_SHAPE, "bmm: cannot multiply %s by %s", s1, s2);
    }
    int64_t shape[NNM_MAX_DIMS];
    nnm_status st = bmm_batch(ctx, a, b, &nbd, shape);
    if (st) return st;
    if (nbd + 2 > NNM_MAX_DIMS) return nnm__error(ctx, NNM_E_LIMIT, "bmm: too many dims");
    shape[nbd] = m;
    shape[nbd + 1] = n;
    nnm__backend *be;
    if ((st = nnm__backend_get(ctx, a->desc.device, &be))) return st;
    if (!be->vt->gemm) return nnm__error(ctx, NNM_E_UNSUPPORTED, "bmm: backend '%s' has no gemm", be->vt->name);
    nnm_tensor *ac = NULL, *bc = NULL, *y = NULL;
    if ((st = nnm__contiguous(ctx, a, &ac)) || (st = nnm__contiguous(ctx, b, &bc)) ||
        (st = nnm__tensor_alloc(ctx, a->desc.device, NNM_F32, nbd + 2, shape, &y)))
        goto done;
    if (bd == 2 && !ta && nbd > 0) {
        /* [..., m, k] @ [k, n]: one gemm over every row of a */
        nnm__env env;
        nnm__env_init(&env, ctx, NULL, NNM__PHASE_BACKEND);
        nnm_gemm_args g = {sizeof g, 0, tb, nnm__numel(ad - 1, ac->shape), n, k, 1.0f, 0.0f, fdata(ac), k,
                           fdata(bc), tb ? k : n, fdata(y), n};
        st = be->vt->gemm(&env.pub, be->state, &g);
        goto done;
    }
    st = batched_gemm(ctx, be, ta, tb, ac, bc, y, nbd, shape, m, n, k, 0.0f);
done:
    nnm_tensor_release(ac);
    nnm_tensor_release(bc);
    if (st) nnm_tensor_release(y);
    else *out = y;
    return st;
}

nnm_status nnm__op_bmm(nnm_ctx *ctx, nnm_tensor *a, nnm_tensor *b, nnm_tensor **out) {
    *out = NULL;
    nnm_status st;
    if ((st = need_f32(ctx, "bmm", "a", a)) || (st = need_f32(ctx, "bmm", "b", b)) ||
        (st = same_device(ctx, "bmm", a, b)))
        return st;
    if (a->desc.ndim < 2 || b->desc.ndim < 2)
        return nnm__error(ctx, NNM_E_SHAPE, "bmm: both operands need at least 2 dims (got %d and %d)",
                          (int)a->desc.ndim, (int)b->desc.ndim);
    nnm_tensor *y = NULL;
    if ((st = nnm__bmm_raw(ctx, 0, 0, a, b, &y))) return st;
    if (nnm__needs_grad(a, b, NULL) && (st = nnm__record_bmm(ctx, a, b, a, b, y))) {
        nnm_tensor_release(y);
        return st;
    }
    *out = y;
    return NNM_OK;
}

/* ---- softmax ------------------------------------------------------------ */

nnm_status nnm__op_softmax(nnm_ctx *ctx, nnm_tensor *x, int32_t dim, int log, nnm_tensor **out) {
    *out = NULL;
    nnm_status st = need_f32(ctx, "softmax", "x", x);
    if (st) return st;
    int32_t nd = x->desc.ndim, d = dim < 0 ? dim + nd : dim;
    if (nd == 0) d = 0;
    else if (d < 0 || d >= nd)
        return nnm__error(ctx, NNM_E_SHAPE, "softmax: dim %d out of range for a %d-d tensor", (int)dim, (int)nd);
    nnm__backend *be;
    if ((st = NNM__BACKEND_SLOT(ctx, x->desc.device, softmax, "softmax", &be))) return st;
    nnm_tensor *xc = NULL, *y = NULL;
    if ((st = nnm__contiguous(ctx, x, &xc)) ||
        (st = nnm__tensor_alloc(ctx, x->desc.device, NNM_F32, nd, x->shape, &y)))
        goto done;
    nnm_softmax_args a = {sizeof a, log != 0, 1, nd ? x->shape[d] : 1, 1, &xc->desc, &y->desc};
    for (int32_t i = 0; i < d; i++) a.outer *= x->shape[i];
    for (int32_t i = d + 1; i < nd; i++) a.inner *= x->shape[i];
    nnm__env env;
    nnm__env_init(&env, ctx, NULL, NNM__PHASE_BACKEND);
    if (!(st = be->vt->softmax(&env.pub, be->state, &a)) && nnm__needs_grad(x, NULL, NULL))
        st = nnm__record_softmax(ctx, x, d, log != 0, y);
done:
    nnm_tensor_release(xc);
    if (st) nnm_tensor_release(y);
    else *out = y;
    return st;
}

/* ---- where -------------------------------------------------------------- */

nnm_status nnm__op_where(nnm_ctx *ctx, nnm_tensor *cond, nnm_tensor *a, nnm_tensor *b, nnm_tensor **out) {
    *out = NULL;
    nnm_status st;
    if ((st = need_f32(ctx, "where", "cond", cond)) || (st = need_f32(ctx, "where", "a", a)) ||
        (st = need_f32(ctx, "where", "b", b)) || (st = same_device(ctx, "where", cond, a)) ||
        (st = same_device(ctx, "where", a, b)))
        return st;
    const nnm_tensor *ts[3] = {cond, a, b};
    int32_t n = 0;
    for (int k = 0; k < 3; k++)
        if (ts[k]->desc.ndim > n) n = ts[k]->desc.ndim;
    int64_t shape[NNM_MAX_DIMS], str[3][NNM_MAX_DIMS];
    for (int32_t i = 0; i < n; i++) {
        int64_t s = 1;
        for (int k = 0; k < 3; k++) {
            int32_t j = ts[k]->desc.ndim - n + i;
            int64_t dk = j >= 0 ? ts[k]->shape[j] : 1;
            if (dk != 1 && s != 1 && dk != s)
                return nnm__error(ctx, NNM_E_SHAPE, "where: operand shapes do not broadcast (dim %d)", (int)i);
            if (dk != 1) s = dk;
        }
        shape[i] = s;
        for (int k = 0; k < 3; k++) {
            int32_t j = ts[k]->desc.ndim - n + i;
            str[k][i] = (j >= 0 && ts[k]->shape[j] != 1) ? ts[k]->strides[j] : 0;
        }
    }
    nnm__backend *be;
    if ((st = NNM__BACKEND_SLOT(ctx, a->desc.device, where, "where", &be))) return st;
    nnm_tensor *y = NULL;
    if ((st = nnm__tensor_alloc(ctx, a->desc.device, NNM_F32, n, shape, &y))) return st;
    nnm_tensor_desc d[3];
    for (int k = 0; k < 3; k++) {
        d[k] = ts[k]->desc;
        d[k].ndim = n;
        d[k].shape = shape;
        d[k].strides = str[k];
    }
    nnm__env env;
    nnm__env_init(&env, ctx, NULL, NNM__PHASE_BACKEND);
    nnm_where_args wa = {sizeof wa, 0, &d[0], &d[1], &d[2], &y->desc};
    if (!(st = be->vt->where(&env.pub, be->state, &wa)) && nnm__needs_grad(a, b, NULL))
        st = nnm__record_where(ctx, cond, a, b, y);
    if (st) nnm_tensor_release(y);
    else *out = y;
    return st;
}

/* ---- in-place update ---------------------------------------------------- */

/* op_update on an i64 dst (1.5: num_batches_tracked): the counts go through
 * host memory, dst = trunc(alpha * dst + beta * src) per element, with
 * src (f32 or i64) of one element or dst's count; exact for alpha 1 and an
 * integral beta * src (a counter's += 1) however large the count. */
static nnm_status update_i64(nnm_ctx *ctx, nnm_tensor *dst, nnm_tensor *src, double alpha, double beta) {
    if (dst->flags & NNM__T_REQUIRES_GRAD)
        return nnm__error(ctx, NNM_E_STATE, "update: the destination requires grad");
    if (!nnm__tensor_is_contiguous(dst))
        return nnm__error(ctx, NNM_E_INVALID, "update: the destination must be contiguous");
    const size_t n = (size_t)nnm_tensor_numel(dst);
    const size_t ns = src ? (size_t)nnm_tensor_numel(src) : 0;
    if (src && ns != 1 && ns != n)
        return nnm__error(ctx, NNM_E_SHAPE, "update: an i64 destination takes a src of 1 or %zu elements, not %zu",
                          n, ns);
    if (src && !nnm__device_eq(dst->desc.device, src->desc.device))
        return same_device(ctx, "update", dst, src);
    const int src_i64 = src && src->desc.dtype.code == NNM_DTYPE_INT && src->desc.dtype.bits == 64;
    if (src && !src_i64 && !is_f32(src)) return nnm__error(ctx, NNM_E_DTYPE, "update: src must be f32 or i64");
    int64_t *d = malloc((n ? n : 1) * sizeof *d), *si = NULL;
    float *sf = NULL;
    nnm_status st = d ? nnm__tensor_read_i64(dst, d, n) : nnm__error(ctx, NNM_E_NOMEM, "update: out of memory");
    if (!st && src) {
        if (src_i64) {
            if (!(si = malloc(ns * sizeof *si))) st = nnm__error(ctx, NNM_E_NOMEM, "update: out of memory");
            else st = nnm__tensor_read_i64(src, si, ns);
        } else {
            if (!(sf = malloc(ns * sizeof *sf))) st = nnm__error(ctx, NNM_E_NOMEM, "update: out of memory");
            else st = nnm_tensor_to_f32(src, sf, ns);
        }
    }
    for (size_t i = 0; !st && i < n; i++) {
        const size_t j = ns == 1 ? 0 : i;
        if (!src) {
            d[i] = (int64_t)(alpha * (double)d[i]);
            continue;
        }
        const double b = beta * (si ? (double)si[j] : (double)sf[j]);
        if (alpha == 1.0 && b == (double)(int64_t)b) d[i] += (int64_t)b; /* exact */
        else d[i] = (int64_t)(alpha * (double)d[i] + b);
    }
    if (!st) st = nnm__tensor_write_i64(dst, d, n);
    free(d);
    free(si);
    free(sf);
    return st;
}

nnm_status nnm__op_update(nnm_ctx *ctx, nnm_tensor *dst, nnm_tensor *src, double alpha, double beta) {
    if (dst && dst->desc.dtype.code == NNM_DTYPE_INT && dst->desc.dtype.bits == 64 && dst->desc.dtype.lanes == 1)
        return update_i64(ctx, dst, src, alpha, beta);
    nnm_status st = need_f32(ctx, "update", "dst", dst);
    if (st || (src && ((st = need_f32(ctx, "update", "src", src)) || (st = same_device(ctx, "update", dst, src)))))
        return st;
    if (dst->flags & NNM__T_REQUIRES_GRAD)
        return nnm__error(ctx, NNM_E_STATE,
                          "update: the destination requires grad (in-place updates are for buffers "
                          "such as running statistics)");
    if (!nnm__tensor_is_contiguous(dst))
        return nnm__error(ctx, NNM_E_INVALID, "update: the destination must be contiguous");
    nnm__backend *be;
    if ((st = nnm__backend_get(ctx, dst->desc.device, &be))) return st;
    if (!be->vt->unary || !be->vt->binary)
        return nnm__error(ctx, NNM_E_UNSUPPORTED, "update: backend '%s' lacks unary/binary ops", be->vt->name);
    nnm__env env;
    nnm__env_init(&env, ctx, NULL, NNM__PHASE_BACKEND);
    if (!src) {
        nnm_unary_args u = {sizeof u, NNM_UNARY_SCALE, alpha, &dst->desc, &dst->desc};
        return be->vt->unary(&env.pub, be->state, &u);
    }
    int32_t nd = dst->desc.ndim;
    if (src->desc.ndim > nd) return nnm__error(ctx, NNM_E_SHAPE, "update: src has more dims than dst");
    int64_t sstr[NNM_MAX_DIMS];
    for (int32_t i = 0; i < nd; i++) {
        int32_t j = src->desc.ndim - nd + i;
        int64_t sz = j >= 0 ? src->shape[j] : 1;
        if (sz != 1 && sz != dst->shape[i]) {
            char s1[128], s2[128];
            nnm__shape_str(&src->desc, s1, sizeof s1);
            nnm__shape_str(&dst->desc, s2, sizeof s2);
            return nnm__error(ctx, NNM_E_SHAPE, "update: src %s does not broadcast to dst %s", s1, s2);
        }
        sstr[i] = sz == 1 ? 0 : src->strides[j];
    }
    /* scaled copies first, so dst is written once and never read while written */
    nnm_tensor *sd = NULL, *ss = NULL;
    if ((st = nnm__tensor_alloc(ctx, dst->desc.device, NNM_F32, nd, dst->shape, &sd)) ||
        (st = nnm__tensor_alloc(ctx, dst->desc.device, NNM_F32, nd, dst->shape, &ss)))
        goto done;
    nnm_tensor_desc sv = src->desc;
    sv.ndim = nd;
    sv.shape = dst->shape;
    sv.strides = sstr;
    nnm_unary_args u1 = {sizeof u1, NNM_UNARY_SCALE, alpha, &dst->desc, &sd->desc};
    nnm_unary_args u2 = {sizeof u2, NNM_UNARY_SCALE, beta, &sv, &ss->desc};
    nnm_binary_args ba = {sizeof ba, NNM_BINARY_ADD, &sd->desc, &ss->desc, &dst->desc};
    if (!(st = be->vt->unary(&env.pub, be->state, &u1)) && !(st = be->vt->unary(&env.pub, be->state, &u2)))
        st = be->vt->binary(&env.pub, be->state, &ba);
done:
    nnm_tensor_release(sd);
    nnm_tensor_release(ss);
    return st;
}

/* ---- convolution -------------------------------------------------------- */

typedef struct conv_geom {
    int32_t ns, groups;
    int64_t n, cin, cout, cin_g, cout_g;
    int64_t in[NNM_MAX_SPATIAL], out[NNM_MAX_SPATIAL], k[NNM_MAX_SPATIAL];
    int64_t l_in, l_out, kprod;
    int pointwise;                /* 1x1, stride 1, no padding: the image is its own column matrix */
} conv_geom;

static nnm_status conv_geometry(nnm_ctx *ctx, const nnm_tensor *x, const nnm_tensor *w,
                                const nnm_conv_params *p, conv_geom *G) {
    const char *op = p->transposed ? "conv_transpose" : "conv";
    int32_t ns = p->n_spatial;
    if (ns < 1 || ns > NNM_MAX_SPATIAL)
        return nnm__error(ctx, NNM_E_INVALID, "%s: n_spatial %d (1..%d)", op, (int)ns, NNM_MAX_SPATIAL);
    if (x->desc.ndim != ns + 2 || w->desc.ndim != ns + 2) {
        char sx[128], sw[128];
        nnm__shape_str(&x->desc, sx, sizeof sx);
        nnm__shape_str(&w->desc, sw, sizeof sw);
        return nnm__error(ctx, NNM_E_SHAPE, "%s: expected input [N, C, %d spatial dims] and weight of %d dims, got %s and %s",
                          op, (int)ns, (int)ns + 2, sx, sw);
    }
    if (p->groups < 1) return nnm__error(ctx, NNM_E_INVALID, "%s: groups must be >= 1 (%d)", op, (int)p->groups);
    memset(G, 0, sizeof *G);
    G->ns = ns;
    G->groups = p->groups;
    G->n = x->shape[0];
    G->cin = x->shape[1];
    int64_t gr = p->groups;
    if (!p->transposed) {
        G->cout = w->shape[0];
        G->cin_g = w->shape[1];
        G->cout_g = G->cout / gr;
        if (G->cin != G->cin_g * gr || G->cout % gr)
            return nnm__error(ctx, NNM_E_SHAPE,
                              "conv: input has %lld channels; weight [%lld, %lld, ...] with groups=%d expects %lld",
                              (long long)G->cin, (long long)G->cout, (long long)G->cin_g, (int)gr,
                              (long long)(G->cin_g * gr));
    } else {
        G->cout_g = w->shape[1];
        G->cout = G->cout_g * gr;
        G->cin_g = G->cin / gr;
        if (w->shape[0] != G->cin || G->cin % gr)
            return nnm__error(ctx, NNM_E_SHAPE,
                              "conv_transpose: input has %lld channels; weight [%lld, %lld, ...] with groups=%d",
                              (long long)G->cin, (long long)w->shape[0], (long long)w->shape[1], (int)gr);
    }
    G->l_in = G->l_out = G->kprod = 1;
    G->pointwise = !p->transposed;
    for (int32_t i = 0; i < ns; i++) {
        int64_t in = x->shape[2 + i], k = w->shape[2 + i], s = p->stride[i], d = p->dilation[i];
        int64_t pa = p->padding[i], pe = p->padding_end[i], op_ = p->output_padding[i];
        if (s < 1 || d < 1 || pa < 0 || pe < 0 || k < 1 || op_ < 0)
            return nnm__error(ctx, NNM_E_INVALID,
                              "%s: spatial dim %d: stride %lld, dilation %lld, padding %lld/%lld, kernel %lld "
                              "(stride, dilation, kernel >= 1; padding >= 0)",
                              op, (int)i, (long long)s, (long long)d, (long long)pa, (long long)pe, (long long)k);
        /* PyTorch: "Only zero batch or zero channel inputs are supported" (a
         * transposed conv would otherwise make a bias-only output of nothing). */
        if (in == 0 && x->shape[0] != 0)
            return nnm__error(ctx, NNM_E_SHAPE,
                              "%s: input size 0 in spatial dim %d: only a zero batch is supported, as in "
                              "PyTorch",
                              op, (int)i);
        int64_t o;
        if (!p->transposed) {
            if (op_) return nnm__error(ctx, NNM_E_INVALID, "conv: output_padding is for conv_transpose only");
            int64_t span = in + pa + pe - d * (k - 1) - 1;
            if (span < 0)
                return nnm__error(ctx, NNM_E_SHAPE,
                                  "conv: input size %lld (padded %lld) in spatial dim %d is smaller than the "
                                  "kernel's extent %lld",
                                  (long long)in, (long long)(in + pa + pe), (int)i, (long long)(d * (k - 1) + 1));
            o = span / s + 1;
        } else {
            if (op_ >= s && op_ >= d)
                return nnm__error(ctx, NNM_E_INVALID,
                                  "conv_transpose: output_padding %lld must be smaller than stride or dilation",
                                  (long long)op_);
            o = (in - 1) * s - pa - pe + d * (k - 1) + op_ + 1;
            if (o < 1)
                return nnm__error(ctx, NNM_E_SHAPE, "conv_transpose: output size %lld in spatial dim %d",
                                  (long long)o, (int)i);
        }
        G->in[i] = in;
        G->out[i] = o;
        G->k[i] = k;
        G->l_in *= in;
        G->l_out *= o;
        G->kprod *= k;
        if (k != 1 || s != 1 || pa || pe) G->pointwise = 0;
    }
    return NNM_OK;
}

/* im2col / col2im args for one group of one image: `im` has `ch` planes of
 * im_size, the columns walk col_size positions. */
static void im2col_args(nnm_im2col_args *a, const nnm_conv_params *p, const int64_t *im_size,
                        const int64_t *col_size, const int64_t *k, int64_t ch, float *im, float *col) {
    memset(a, 0, sizeof *a);
    a->struct_size = sizeof *a;
    a->n_spatial = p->n_spatial;
    a->channels = ch;
    for (int32_t i = 0; i < p->n_spatial; i++) {
        a->im_size[i] = im_size[i];
        a->col_size[i] = col_size[i];
        a->kernel[i] = k[i];
        a->stride[i] = p->stride[i];
        a->padding[i] = p->padding[i];
        a->dilation[i] = p->dilation[i];
    }
    a->im = im;
    a->col = col;
}

static nnm_status gemm_raw(nnm__env *env, nnm__backend *be, int ta, int tb, int64_t m, int64_t n, int64_t k,
                           const float *a, const float *b, float beta, float *c) {
    nnm_gemm_args g = {sizeof g, ta, tb, m, n, k, 1.0f, beta, a, ta ? m : k, b, tb ? k : n, c, n};
    return be->vt->gemm(&env->pub, be->state, &g);
}

/* The backend's whole-convolution slot (ABI 1.4 `conv` or `conv_backward`,
 * at byte offset `off` of its vtable), or NULL when it has none (an older
 * vtable, or a NULL slot). */
typedef nnm_status (*conv_slot_fn)(nnm_env *env, void *state, const nnm_conv_args *args);
static conv_slot_fn conv_slot(const nnm__backend *be, size_t off) {
    conv_slot_fn f = NULL;
    if (be->vt->struct_size >= off + sizeof f) memcpy(&f, (const char *)be->vt + off, sizeof f);
    return f;
}

/* Offers a convolution to the backend's own kernel. NNM_OK: it ran.
 * NNM_E_UNSUPPORTED: no slot, or the backend declined this geometry; the
 * context's message is left as it was before the call (a declining backend
 * should set none, but a stale one must not leak into a later failure), so
 * the caller falls back to im2col + gemm silently. Anything else: the
 * backend's error. */
static nnm_status try_backend_conv(nnm_ctx *ctx, nnm__backend *be, size_t off, const nnm_conv_args *a) {
    conv_slot_fn f = conv_slot(be, off);
    if (!f) return NNM_E_UNSUPPORTED;
    uint64_t seq = ctx->err_seq;
    int attributed = ctx->err_attributed;
    char saved[NNM__ERRMSG_CAP];
    memcpy(saved, ctx->errmsg, sizeof saved);
    nnm__env env;
    nnm__env_init(&env, ctx, NULL, NNM__PHASE_BACKEND);
    nnm_status st = f(&env.pub, be->state, a);
    if (st == NNM_E_UNSUPPORTED && ctx->err_seq != seq) {
        memcpy(ctx->errmsg, saved, sizeof saved);
        ctx->err_seq = seq;
        ctx->err_attributed = attributed;
    }
    return st;
}

/* Adds b [C] to y [N, C, *] along dim 1, in place. */
static nnm_status add_channel_bias(nnm_ctx *ctx, nnm__backend *be, nnm_tensor *y, nnm_tensor *b) {
    int64_t nc = y->shape[0] * y->shape[1];
    int64_t shape[3] = {y->shape[0], y->shape[1], nnm_tensor_numel(y) / (nc != 0 ? nc : 1)};
    int64_t ys[3] = {shape[1] * shape[2], shape[2], 1}, bs[3] = {0, b->strides[0], 0};
    nnm_tensor_desc yd = y->desc, bd = b->desc;
    yd.ndim = bd.ndim = 3;
    yd.shape = bd.shape = shape;
    yd.strides = ys;
    bd.strides = bs;
    nnm__env env;
    nnm__env_init(&env, ctx, NULL, NNM__PHASE_BACKEND);
    nnm_binary_args a = {sizeof a, NNM_BINARY_ADD, &yd, &bd, &yd};
    return be->vt->binary(&env.pub, be->state, &a);
}

nnm_status nnm__op_conv(nnm_ctx *ctx, nnm_tensor *x, nnm_tensor *w, nnm_tensor *b, const nnm_conv_params *p,
                        nnm_tensor **out) {
    *out = NULL;
    nnm_status st;
    if (!p || p->struct_size < sizeof(nnm_conv_params))
        return nnm__error(ctx, NNM_E_INVALID, "conv: params are NULL or too small");
    const char *op = p->transposed ? "conv_transpose" : "conv";
    if ((st = need_f32(ctx, op, "input", x)) || (st = need_f32(ctx, op, "weight", w)) ||
        (b && (st = need_f32(ctx, op, "bias", b))) || (st = same_device(ctx, op, x, w)) ||
        (b && (st = same_device(ctx, op, x, b))))
        return st;
    conv_geom G;
    if ((st = conv_geometry(ctx, x, w, p, &G))) return st;
    if (b && (b->desc.ndim != 1 || b->shape[0] != G.cout))
        return nnm__error(ctx, NNM_E_SHAPE, "%s: bias must be [%lld]", op, (long long)G.cout);
    nnm__backend *be;
    if ((st = nnm__backend_get(ctx, x->desc.device, &be))) return st;
    int64_t shape[NNM_MAX_DIMS] = {G.n, G.cout};
    for (int32_t i = 0; i < G.ns; i++) shape[2 + i] = G.out[i];
    nnm_tensor *xc = NULL, *wc = NULL, *bc = NULL, *y = NULL, *col = NULL;
    /* the backend's own kernel first (1.4), when it has one for this geometry */
    if (!p->transposed && conv_slot(be, offsetof(nnm_backend_vtable, conv)) && nnm__numel(G.ns + 2, shape)) {
        if ((st = nnm__contiguous(ctx, x, &xc)) || (st = nnm__contiguous(ctx, w, &wc)) ||
            (b && (st = nnm__contiguous(ctx, b, &bc))) ||
            (st = nnm__tensor_alloc(ctx, x->desc.device, NNM_F32, G.ns + 2, shape, &y)))
            goto done;
        nnm_conv_args ca = {sizeof ca, 0, p, &xc->desc, &wc->desc, bc ? &bc->desc : NULL, &y->desc, NULL, NULL, NULL};
        st = try_backend_conv(ctx, be, offsetof(nnm_backend_vtable, conv), &ca);
        if (st != NNM_E_UNSUPPORTED) goto recorded;
        st = NNM_OK;
    }
    if (!be->vt->gemm || !be->vt->binary) {
        st = nnm__error(ctx, NNM_E_UNSUPPORTED, "%s: backend '%s' lacks gemm", op, be->vt->name);
        goto done;
    }
    if (!G.pointwise &&
        (st = p->transposed ? NNM__BACKEND_SLOT(ctx, x->desc.device, col2im, op, &be)
                            : NNM__BACKEND_SLOT(ctx, x->desc.device, im2col, op, &be)))
        goto done;
    if ((!xc && (st = nnm__contiguous(ctx, x, &xc))) || (!wc && (st = nnm__contiguous(ctx, w, &wc))) ||
        (!y && (st = nnm__tensor_alloc(ctx, x->desc.device, NNM_F32, G.ns + 2, shape, &y))))
        goto done;
    nnm__env env;
    nnm__env_init(&env, ctx, NULL, NNM__PHASE_BACKEND);
    int64_t rows = (p->transposed ? G.cout_g : G.cin_g) * G.kprod;
    int64_t cols = p->transposed ? G.l_in : G.l_out;
    if (!G.pointwise && nnm__numel(G.ns + 2, shape)) {
        int64_t cshape[2] = {rows, cols};
        if ((st = nnm__tensor_alloc(ctx, x->desc.device, NNM_F32, 2, cshape, &col))) goto done;
    }
    const float *W = fdata(wc);
    float *X = fdata(xc), *Y = fdata(y), *C = col ? fdata(col) : NULL;
    /* conv with a bias: seed y with it (one broadcast copy) and let each gemm
     * accumulate onto it, instead of zeroing y and adding the bias after */
    float beta = 0.0f;
    if (b && !p->transposed && nnm_tensor_numel(y)) {
        int64_t bshape[3] = {G.n, G.cout, G.l_out}, bstr[3] = {0, b->strides[0], 0}, ystr[3] = {G.cout * G.l_out, G.l_out, 1};
        nnm_tensor_desc bd = b->desc, yd = y->desc;
        bd.ndim = yd.ndim = 3;
        bd.shape = yd.shape = bshape;
        bd.strides = bstr;
        yd.strides = ystr;
        nnm_unary_args ua = {sizeof ua, NNM_UNARY_COPY, 0, &bd, &yd};
        if (!be->vt->unary) st = nnm__error(ctx, NNM_E_UNSUPPORTED, "%s: backend '%s' has no unary ops", op, be->vt->name);
        else st = be->vt->unary(&env.pub, be->state, &ua);
        beta = 1.0f;
    }
    for (int64_t n = 0; n < G.n && !st; n++) {
        for (int64_t g = 0; g < G.groups && !st; g++) {
            if (!p->transposed) {
                float *xi = X + (n * G.cin + g * G.cin_g) * G.l_in;
                float *yo = Y + (n * G.cout + g * G.cout_g) * G.l_out;
                const float *wg = W + g * G.cout_g * G.cin_g * G.kprod;
                const float *src = xi;
                if (!G.pointwise) {
                    nnm_im2col_args ia;
                    im2col_args(&ia, p, G.in, G.out, G.k, G.cin_g, xi, C);
                    if ((st = be->vt->im2col(&env.pub, be->state, &ia))) break;
                    src = C;
                }
                st = gemm_raw(&env, be, 0, 0, G.cout_g, G.l_out, G.cin_g * G.kprod, wg, src, beta, yo);
            } else {
                float *xi = X + (n * G.cin + g * G.cin_g) * G.l_in;
                float *yo = Y + (n * G.cout + g * G.cout_g) * G.l_out;
                const float *wg = W + g * G.cin_g * G.cout_g * G.kprod;
                if (G.pointwise) { /* unreachable: transposed never takes the shortcut */
                    st = NNM_E_INVALID;
                    break;
                }
                /* columns = W_g^T @ x: [cout_g * K, L_in] */
                if ((st = gemm_raw(&env, be, 1, 0, rows, G.l_in, G.cin_g, wg, xi, 0.0f, C))) break;
                nnm_im2col_args ia;
                im2col_args(&ia, p, G.out, G.in, G.k, G.cout_g, yo, C);
                st = be->vt->col2im(&env.pub, be->state, &ia);
            }
        }
    }
    if (!st && b && p->transposed && nnm_tensor_numel(y)) st = add_channel_bias(ctx, be, y, b);
recorded:
    if (!st && nnm__needs_grad(x, w, b)) st = nnm__record_conv(ctx, x, w, b, xc, wc, p, y);
done:
    nnm_tensor_release(xc);
    nnm_tensor_release(wc);
    nnm_tensor_release(bc);
    nnm_tensor_release(col);
    if (st) nnm_tensor_release(y);
    else *out = y;
    return st;
}

/* W' for the gradient of a stride-1 convolution's input, computed as a
 * convolution: W'[g, ci, co, k] = W[g * cout_g + co, ci, K - 1 - k] (channels
 * swapped within each group, kernel flipped), contiguous. */
static nnm_status conv_flip_weight(nnm_ctx *ctx, nnm_tensor *w, const conv_geom *G, nnm_tensor **out) {
    int64_t shape[NNM_MAX_DIMS], strides[NNM_MAX_DIMS];
    int64_t kp = G->kprod;
    shape[0] = G->groups;
    strides[0] = G->cout_g * G->cin_g * kp;
    shape[1] = G->cin_g;
    strides[1] = kp;
    shape[2] = G->cout_g;
    strides[2] = G->cin_g * kp;
    int64_t s = 1, off = 0;
    for (int32_t i = G->ns - 1; i >= 0; i--) {
        shape[3 + i] = G->k[i];
        strides[3 + i] = -s;
        off += (G->k[i] - 1) * s;
        s *= G->k[i];
    }
    nnm_tensor *view = NULL;
    nnm_status st = nnm__tensor_view(w, 3 + G->ns, shape, strides, &view);
    if (st) return st;
    view->desc.byte_offset += (uint64_t)off * sizeof(float);
    st = nnm__op_unary(ctx, NNM_UNARY_COPY, view, 0, out);
    nnm_tensor_release(view);
    return st;
}

nnm_status nnm__conv_backward(nnm_ctx *ctx, const nnm_conv_params *p, nnm_tensor *x, nnm_tensor *w,
                              nnm_tensor *g0, nnm_tensor **gx, nnm_tensor **gw, nnm_tensor *gw_into) {
    conv_geom G;
    nnm_status st = conv_geometry(ctx, x, w, p, &G);
    if (st) return st;
    if (gw_into && (gw || gw_into->desc.dtype.code != NNM_DTYPE_FLOAT || gw_into->desc.dtype.bits != 32 ||
                    !nnm__tensor_is_contiguous(gw_into) || gw_into->desc.ndim != w->desc.ndim ||
                    memcmp(gw_into->shape, w->shape, sizeof(int64_t) * (size_t)w->desc.ndim) ||
                    !nnm__device_eq(gw_into->desc.device, w->desc.device)))
        return nnm__error(ctx, NNM_E_INVALID, "conv backward: gw_into must be a contiguous f32 tensor of w's shape");
    nnm__backend *be;
    if ((st = nnm__backend_get(ctx, x->desc.device, &be))) return st;
    /* the backend's own kernel first (1.4), when it has one for this geometry;
     * x and w are the forward's contiguous copies */
    if (!p->transposed && (gx || gw || gw_into) && conv_slot(be, offsetof(nnm_backend_vtable, conv_backward)) &&
        nnm_tensor_numel(x) && nnm_tensor_numel(g0)) {
        nnm_tensor *g = NULL;
        if (gx) *gx = NULL;
        if (gw) *gw = NULL;
        if ((st = nnm__contiguous(ctx, g0, &g)) ||
            (gx && (st = nnm__tensor_alloc(ctx, x->desc.device, NNM_F32, x->desc.ndim, x->shape, gx))) ||
            (gw && (st = nnm__tensor_alloc(ctx, x->desc.device, NNM_F32, w->desc.ndim, w->shape, gw))))
            goto tried;
        nnm_conv_args ca = {sizeof ca, 0, p, &x->desc, &w->desc, NULL, NULL, &g->desc,
                            gx ? &(*gx)->desc : NULL, gw ? &(*gw)->desc : gw_into ? &gw_into->desc : NULL};
        st = try_backend_conv(ctx, be, offsetof(nnm_backend_vtable, conv_backward), &ca);
    tried:
        nnm_tensor_release(g);
        if (st == NNM_OK) return NNM_OK;
        if (gx) nnm_tensor_release(*gx), *gx = NULL;
        if (gw) nnm_tensor_release(*gw), *gw = NULL;
        if (st != NNM_E_UNSUPPORTED) return st;
        st = NNM_OK; /* declined: im2col + gemm below */
    }
    if (!G.pointwise && ((st = NNM__BACKEND_SLOT(ctx, x->desc.device, im2col, "conv backward", &be)) ||
                         (st = NNM__BACKEND_SLOT(ctx, x->desc.device, col2im, "conv backward", &be))))
        return st;
    /* Stride 1 (not pointwise, not transposed): the input's gradient is itself
     * a convolution of gy with the flipped weights, one im2col and a gemm of
     * the forward's shape instead of a K = cout_g gemm and a col2im. */
    int as_conv = gx && !p->transposed && !G.pointwise;
    for (int32_t i = 0; as_conv && i < G.ns; i++)
        as_conv = p->stride[i] == 1 && p->padding[i] <= p->dilation[i] * (G.k[i] - 1) &&
                  p->padding_end[i] <= p->dilation[i] * (G.k[i] - 1);
    nnm_conv_params pf = *p;
    for (int32_t i = 0; i < G.ns; i++) pf.padding[i] = p->dilation[i] * (G.k[i] - 1) - p->padding[i];
    nnm_tensor *g = NULL, *col = NULL, *wf = NULL, *gwt = NULL; /* gwt: where the weight's gradient goes */
    if ((st = nnm__contiguous(ctx, g0, &g))) return st;
    if (gx && (st = nnm__tensor_alloc(ctx, x->desc.device, NNM_F32, x->desc.ndim, x->shape, gx))) goto done;
    if (gw && (st = nnm__tensor_alloc(ctx, x->desc.device, NNM_F32, w->desc.ndim, w->shape, gw))) goto done;
    gwt = gw ? *gw : gw_into;
    if (gwt && G.n == 0 && (st = nnm__op_fill(ctx, gwt, 0.0))) goto done;
    int64_t rows = (p->transposed ? G.cout_g : G.cin_g) * G.kprod;
    int64_t cols = p->transposed ? G.l_in : G.l_out;
    if (!G.pointwise) {
        /* one scratch for every column matrix this backward unfolds */
        int64_t cshape[1] = {rows * cols};
        if (as_conv && G.cout_g * G.kprod * G.l_in > cshape[0]) cshape[0] = G.cout_g * G.kprod * G.l_in;
        if ((st = nnm__tensor_alloc(ctx, x->desc.device, NNM_F32, 1, cshape, &col))) goto done;
    }
    if (as_conv && (st = conv_flip_weight(ctx, w, &G, &wf))) goto done;
    nnm__env env;
    nnm__env_init(&env, ctx, NULL, NNM__PHASE_BACKEND);
    const float *W = fdata(w), *X = fdata(x), *GY = fdata(g), *WF = wf ? fdata(wf) : NULL;
    float *GX = gx ? fdata(*gx) : NULL, *GW = gwt ? fdata(gwt) : NULL, *C = col ? fdata(col) : NULL;
    for (int64_t n = 0; n < G.n && !st; n++) {
        for (int64_t gr = 0; gr < G.groups && !st; gr++) {
            const float beta = n == 0 ? 0.0f : 1.0f;
            const float *xi = X + (n * G.cin + gr * G.cin_g) * G.l_in;
            const float *gy = GY + (n * G.cout + gr * G.cout_g) * G.l_out;
            float *gxi = GX ? GX + (n * G.cin + gr * G.cin_g) * G.l_in : NULL;
            if (!p->transposed) {
                const float *wg = W + gr * G.cout_g * G.cin_g * G.kprod;
                float *gwg = GW ? GW + gr * G.cout_g * G.cin_g * G.kprod : NULL;
                if (gwg) { /* gW_g += gy [cout_g, L] @ col^T [L, cin_g K] */
                    const float *cm = xi;
                    if (!G.pointwise) {
                        nnm_im2col_args ia;
                        im2col_args(&ia, p, G.in, G.out, G.k, G.cin_g, (float *)xi, C);
                        if ((st = be->vt->im2col(&env.pub, be->state, &ia))) break;
                        cm = C;
                    }
                    if ((st = gemm_raw(&env, be, 0, 1, G.cout_g, G.cin_g * G.kprod, G.l_out, gy, cm, beta, gwg)))
                        break;
                }
                if (gxi && as_conv) { /* gx = conv(gy, W') */
                    nnm_im2col_args ia;
                    im2col_args(&ia, &pf, G.out, G.in, G.k, G.cout_g, (float *)gy, C);
                    if (!(st = be->vt->im2col(&env.pub, be->state, &ia)))
                        st = gemm_raw(&env, be, 0, 0, G.cin_g, G.l_in, G.cout_g * G.kprod,
                                      WF + gr * G.cin_g * G.cout_g * G.kprod, C, 0.0f, gxi);
                } else if (gxi) { /* columns = W_g^T @ gy, folded back */
                    if (G.pointwise) {
                        st = gemm_raw(&env, be, 1, 0, G.cin_g, G.l_out, G.cout_g, wg, gy, 0.0f, gxi);
                    } else if (!(st = gemm_raw(&env, be, 1, 0, rows, G.l_out, G.cout_g, wg, gy, 0.0f, C))) {
                        nnm_im2col_args ia;
                        im2col_args(&ia, p, G.in, G.out, G.k, G.cin_g, gxi, C);
                        st = be->vt->col2im(&env.pub, be->state, &ia);
                    }
                }
            } else {
                /* y = col2im(W_g^T x): its adjoint unfolds gy */
                const float *wg = W + gr * G.cin_g * G.cout_g * G.kprod;
                float *gwg = GW ? GW + gr * G.cin_g * G.cout_g * G.kprod : NULL;
                nnm_im2col_args ia;
                im2col_args(&ia, p, G.out, G.in, G.k, G.cout_g, (float *)gy, C);
                if ((st = be->vt->im2col(&env.pub, be->state, &ia))) break;
                if (gxi && (st = gemm_raw(&env, be, 0, 0, G.cin_g, G.l_in, rows, wg, C, 0.0f, gxi))) break;
                if (gwg) st = gemm_raw(&env, be, 0, 1, G.cin_g, rows, G.l_in, xi, C, beta, gwg);
            }
        }
    }
done:
    nnm_tensor_release(g);
    nnm_tensor_release(col);
    nnm_tensor_release(wf);
    if (st) {
        if (gx) nnm_tensor_release(*gx), *gx = NULL;
        if (gw) nnm_tensor_release(*gw), *gw = NULL;
    }
    return st;
}

/* ---- pooling ------------------------------------------------------------ */

static void pool_args(nnm_pool_args *a, const nnm_pool_params *p) {
    memset(a, 0, sizeof *a);
    a->struct_size = sizeof *a;
    a->op = p->op;
    a->n_spatial = p->n_spatial;
    a->count_include_pad = p->count_include_pad != 0;
    a->divisor_override = p->divisor_override;
    const int adaptive = p->op == NNM_POOL_ADAPTIVE_AVG; /* windows come from the sizes alone */
    for (int32_t i = 0; i < p->n_spatial; i++) {
        a->kernel[i] = adaptive ? 1 : p->kernel[i];
        a->stride[i] = adaptive ? 1 : p->stride[i];
        a->padding[i] = adaptive ? 0 : p->padding[i];
        a->dilation[i] = p->op == NNM_POOL_MAX ? p->dilation[i] : 1;
    }
}

nnm_status nnm__op_pool(nnm_ctx *ctx, nnm_tensor *x, const nnm_pool_params *p, nnm_tensor **out) {
    *out = NULL;
    nnm_status st;
    if (!p || p->struct_size < sizeof(nnm_pool_params))
        return nnm__error(ctx, NNM_E_INVALID, "pool: params are NULL or too small");
    static const char *const names[] = {"max_pool", "avg_pool", "adaptive_avg_pool"};
    if (p->op < NNM_POOL_MAX || p->op > NNM_POOL_ADAPTIVE_AVG)
        return nnm__error(ctx, NNM_E_INVALID, "pool: unknown op %d", (int)p->op);
    const char *op = names[p->op];
    if ((st = need_f32(ctx, op, "input", x))) return st;
    int32_t ns = p->n_spatial, nd = x->desc.ndim;
    if (ns < 1 || ns > NNM_MAX_SPATIAL || nd < ns + 1)
        return nnm__error(ctx, NNM_E_SHAPE, "%s: needs a [C, %d spatial dims] or batched input, got %d dims",
                          op, (int)ns, (int)nd);
    int64_t shape[NNM_MAX_DIMS];
    memcpy(shape, x->shape, (size_t)nd * sizeof shape[0]);
    for (int32_t i = 0; i < ns; i++) {
        int64_t in = x->shape[nd - ns + i], o;
        if (p->op == NNM_POOL_ADAPTIVE_AVG) {
            o = p->output_size[i];
            if (o < 1 || in < 1)
                return nnm__error(ctx, NNM_E_SHAPE, "%s: output size %lld from input size %lld in spatial dim %d",
                                  op, (long long)o, (long long)in, (int)i);
        } else {
            int64_t k = p->kernel[i], s = p->stride[i], pa = p->padding[i];
            int64_t d = p->op == NNM_POOL_MAX ? p->dilation[i] : 1;
            if (k < 1 || s < 1 || d < 1 || pa < 0)
                return nnm__error(ctx, NNM_E_INVALID, "%s: kernel, stride, dilation >= 1 and padding >= 0 (dim %d)",
                                  op, (int)i);
            if (pa > k / 2)
                return nnm__error(ctx, NNM_E_INVALID, "%s: padding %lld should be at most half of kernel size %lld",
                                  op, (long long)pa, (long long)k);
            int64_t span = in + 2 * pa - d * (k - 1) - 1;
            if (span < 0)
                return nnm__error(ctx, NNM_E_SHAPE, "%s: input size %lld in spatial dim %d is too small for the window",
                                  op, (long long)in, (int)i);
            o = (p->ceil_mode ? (span + s - 1) / s : span / s) + 1;
            if (p->ceil_mode && (o - 1) * s >= in + pa) o--; /* the last window must start inside */
        }
        shape[nd - ns + i] = o;
    }
    nnm__backend *be;
    if ((st = NNM__BACKEND_SLOT(ctx, x->desc.device, pool, op, &be))) return st;
    nnm_tensor *xc = NULL, *y = NULL;
    if ((st = nnm__contiguous(ctx, x, &xc)) || (st = nnm__tensor_alloc(ctx, x->desc.device, NNM_F32, nd, shape, &y)))
        goto done;
    nnm_pool_args a;
    pool_args(&a, p);
    a.x = &xc->desc;
    a.out = &y->desc;
    nnm__env env;
    nnm__env_init(&env, ctx, NULL, NNM__PHASE_BACKEND);
    if (!(st = be->vt->pool(&env.pub, be->state, &a)) && nnm__needs_grad(x, NULL, NULL))
        st = nnm__record_pool(ctx, x, xc, p, y);
done:
    nnm_tensor_release(xc);
    if (st) nnm_tensor_release(y);
    else *out = y;
    return st;
}

nnm_status nnm__pool_backward(nnm_ctx *ctx, const nnm_pool_params *p, nnm_tensor *x, nnm_tensor *g0,
                              nnm_tensor **gx) {
    *gx = NULL;
    nnm__backend *be;
    nnm_status st = NNM__BACKEND_SLOT(ctx, x->desc.device, pool_backward, "pool backward", &be);
    if (st) return st;
    nnm_tensor *g = NULL, *r = NULL;
    if ((st = nnm__contiguous(ctx, g0, &g)) ||
        (st = nnm__tensor_alloc(ctx, x->desc.device, NNM_F32, x->desc.ndim, x->shape, &r)))
        goto done;
    nnm_pool_args a;
    pool_args(&a, p);
    a.x = &x->desc;
    a.grad_out = &g->desc;
    a.grad_x = &r->desc;
    nnm__env env;
    nnm__env_init(&env, ctx, NULL, NNM__PHASE_BACKEND);
    st = be->vt->pool_backward(&env.pub, be->state, &a);
done:
    nnm_tensor_release(g);
    if (st) nnm_tensor_release(r);
    else *gx = r;
    return st;
}
