/* runtime/core/ops.c - tensor ops: check shapes, dtypes and devices, allocate the
 * output from the caching allocator, and dispatch to the device's backend.
 * (Autograd recording will hook in here: every differentiable op passes
 * through one of these functions.) */
#include <stdio.h>
#include <string.h>

#include "internal.h"

const char *nnm__unary_name(int32_t op) {
    static const char *const names[] = {"copy", "neg", "relu", "exp", "log", "tanh", "sigmoid", "sqrt",
                                        "abs", "scale", "step", "sign", "erf", "add_scalar", "pow",
                                        "clamp_min", "clamp_max", "ge", "sin", "cos", "floor",
                                        "ceil", "round", "trunc", "silu", "gelu", "gelu_tanh", "hardswish",
                                        "leaky_relu", "elu", "relu6", "hardsigmoid", "silu_grad", "gelu_grad",
                                        "gelu_tanh_grad", "hardswish_grad", "leaky_relu_grad", "elu_grad",
                                        "relu6_grad", "hardsigmoid_grad"};
    return op >= 0 && op < (int32_t)(sizeof names / sizeof names[0]) ? names[op] : "?";
}

static int is_f32(const nnm_tensor *t) {
    return t->desc.dtype.code == NNM_DTYPE_FLOAT && t->desc.dtype.bits == 32 &&
           t->desc.dtype.lanes == 1;
}

static nnm_status check_f32_failed(nnm_ctx *ctx, const char *op, const char *what, const nnm_tensor *t) {
    if (NNM__UNLIKELY(!t)) return nnm__error(ctx, NNM_E_INVALID, "%s: %s is NULL", op, what);
    if (NNM__UNLIKELY(!is_f32(t))) {
        /* "got i64", as a user says it (DLPack codes: 0 int, 1 uint, 2 float, 4 bfloat) */
        static const char *const kinds[] = {"i", "u", "f", "?", "bf"};
        const nnm_dtype dt = t->desc.dtype;
        char got[32];
        if (dt.code == NNM_DTYPE_BOOL)
            snprintf(got, sizeof got, "bool");
        else
            snprintf(got, sizeof got, "%s%u%s", dt.code < 5 ? kinds[dt.code] : "?", (unsigned)dt.bits,
                     dt.lanes == 1 ? "" : " with several lanes");
        return nnm__error(ctx, NNM_E_DTYPE, "%s: %s must be f32, got %s", op, what, got);
    }
    return NNM_OK;
}

/* check_f32 and check_same_device pass inline and call out only to fail */
static inline nnm_status check_f32(nnm_ctx *ctx, const char *op, const char *what, const nnm_tensor *t) {
    return NNM__LIKELY(t && is_f32(t)) ? NNM_OK : check_f32_failed(ctx, op, what, t);
}

static nnm_status devices_differ(nnm_ctx *ctx, const char *op, const nnm_tensor *a, const nnm_tensor *b) {
    char da[32], db[32];
    return nnm__error(ctx, NNM_E_DEVICE, "%s: operands are on different devices (%s and %s)", op,
                      nnm__device_name(a->desc.device, da, sizeof da),
                      nnm__device_name(b->desc.device, db, sizeof db));
}

static inline nnm_status check_same_device(nnm_ctx *ctx, const char *op, const nnm_tensor *a,
                                           const nnm_tensor *b) {
    return NNM__LIKELY(nnm__device_eq(a->desc.device, b->desc.device)) ? NNM_OK
                                                                      : devices_differ(ctx, op, a, b);
}

nnm_status nnm__op_fill(nnm_ctx *ctx, nnm_tensor *t, double value) {
    nnm__backend *be;
    nnm_status st = nnm__backend_get(ctx, t->desc.device, &be);
    if (st) return st;
    if (!be->vt->fill) return nnm__error(ctx, NNM_E_UNSUPPORTED, "backend '%s' has no fill", be->vt->name);
    nnm__env env;
    nnm__env_init(&env, ctx, NULL, NNM__PHASE_BACKEND);
    return be->vt->fill(&env.pub, be->state, &t->desc, value);
}

nnm_status nnm__op_unary(nnm_ctx *ctx, int32_t op, nnm_tensor *x, double alpha, nnm_tensor **out) {
    *out = NULL;
    nnm_status st = check_f32(ctx, "unary", "x", x);
    if (st) return st;
    if (NNM__UNLIKELY(op < NNM_UNARY_COPY || op > NNM_UNARY_HARDSIGMOID_GRAD))
        return nnm__error(ctx, NNM_E_INVALID, "unary: unknown op %d", (int)op);
    nnm__backend *be;
    if ((st = nnm__backend_get(ctx, x->desc.device, &be))) return st;
    if (NNM__UNLIKELY(!be->vt->unary))
        return nnm__error(ctx, NNM_E_UNSUPPORTED, "backend '%s' has no unary ops", be->vt->name);
    if (NNM__UNLIKELY(op > NNM_UNARY_SCALE && !nnm__backend_minor(be)))
        return nnm__error(ctx, NNM_E_UNSUPPORTED, "backend '%s' predates unary op %d (ABI 1.1)",
                          be->vt->name, (int)op);
    if (NNM__UNLIKELY(op > NNM_UNARY_SIGN && !(be->vt->flags & NNM_BACKEND_OPS_1_3)))
        return nnm__error(ctx, NNM_E_UNSUPPORTED, "unary op %s: backend '%s' does not implement it (ABI 1.3)",
                          nnm__unary_name(op), be->vt->name);
    if (NNM__UNLIKELY(op > NNM_UNARY_GE && !(be->vt->flags & NNM_BACKEND_OPS_1_5)))
        return nnm__error(ctx, NNM_E_UNSUPPORTED, "unary op %s: backend '%s' does not implement it (ABI 1.5)",
                          nnm__unary_name(op), be->vt->name);
    nnm_tensor *y;
    if ((st = nnm__tensor_alloc(ctx, x->desc.device, x->desc.dtype, x->desc.ndim, x->shape, &y)))
        return st;
    nnm__env env;
    nnm__env_init(&env, ctx, NULL, NNM__PHASE_BACKEND);
    nnm_unary_args a = {sizeof a, op, alpha, &x->desc, &y->desc};
    if ((st = be->vt->unary(&env.pub, be->state, &a)) ||
        (nnm__needs_grad(x, NULL, NULL) && (st = nnm__record_unary(ctx, op, alpha, x, y)))) {
        nnm_tensor_release(y);
        return st;
    }
    *out = y;
    return NNM_OK;
}

/* Broadcast shapes a and b (NumPy rules) into shape/ndim, and give each operand
 * strides over that shape with 0 on broadcast dims. */
static nnm_status broadcast(nnm_ctx *ctx, const nnm_tensor *a, const nnm_tensor *b, int32_t *ndim,
                            int64_t *shape, int64_t *sa, int64_t *sb) {
    int32_t n = a->desc.ndim > b->desc.ndim ? a->desc.ndim : b->desc.ndim;
    for (int32_t i = 0; i < n; i++) {
        int32_t ia = a->desc.ndim - n + i, ib = b->desc.ndim - n + i;
        int64_t da = ia >= 0 ? a->shape[ia] : 1, db = ib >= 0 ? b->shape[ib] : 1;
        if (da != db && da != 1 && db != 1) {
            char s1[128], s2[128];
            nnm__shape_str(&a->desc, s1, sizeof s1);
            nnm__shape_str(&b->desc, s2, sizeof s2);
            return nnm__error(ctx, NNM_E_SHAPE, "shapes %s and %s do not broadcast (dim %d: %lld vs %lld)",
                              s1, s2, (int)i, (long long)da, (long long)db);
        }
        shape[i] = da == 1 ? db : da;
        sa[i] = (ia >= 0 && da != 1) ? a->strides[ia] : 0;
        sb[i] = (ib >= 0 && db != 1) ? b->strides[ib] : 0;
    }
    *ndim = n;
    return NNM_OK;
}

nnm_status nnm__op_binary(nnm_ctx *ctx, int32_t op, nnm_tensor *a, nnm_tensor *b, nnm_tensor **out) {
    *out = NULL;
    nnm_status st;
    if ((st = check_f32(ctx, "binary", "a", a)) || (st = check_f32(ctx, "binary", "b", b)) ||
        (st = check_same_device(ctx, "binary", a, b)))
        return st;
    if (NNM__UNLIKELY(op < NNM_BINARY_ADD || op > NNM_BINARY_POW))
        return nnm__error(ctx, NNM_E_INVALID, "binary: unknown op %d", (int)op);
    int32_t ndim = 0;
    int64_t shape[NNM_MAX_DIMS], sa[NNM_MAX_DIMS], sb[NNM_MAX_DIMS];
    if ((st = broadcast(ctx, a, b, &ndim, shape, sa, sb))) return st;
    nnm__backend *be;
    if ((st = nnm__backend_get(ctx, a->desc.device, &be))) return st;
    if (NNM__UNLIKELY(!be->vt->binary))
        return nnm__error(ctx, NNM_E_UNSUPPORTED, "backend '%s' has no binary ops", be->vt->name);
    if (NNM__UNLIKELY(op > NNM_BINARY_MIN && !(be->vt->flags & NNM_BACKEND_OPS_1_5)))
        return nnm__error(ctx, NNM_E_UNSUPPORTED, "binary op pow: backend '%s' does not implement it (ABI 1.5)",
                          be->vt->name);
    nnm_tensor *y;
    if ((st = nnm__tensor_alloc(ctx, a->desc.device, a->desc.dtype, ndim, shape, &y))) return st;
    nnm_tensor_desc da = a->desc, db = b->desc;
    da.ndim = db.ndim = ndim;
    da.shape = db.shape = shape;
    da.strides = sa;
    db.strides = sb;
    nnm__env env;
    nnm__env_init(&env, ctx, NULL, NNM__PHASE_BACKEND);
    nnm_binary_args args = {sizeof args, op, &da, &db, &y->desc};
    if ((st = be->vt->binary(&env.pub, be->state, &args)) ||
        (nnm__needs_grad(a, b, NULL) && (st = nnm__record_binary(ctx, op, a, b, y)))) {
        nnm_tensor_release(y);
        return st;
    }
    *out = y;
    return NNM_OK;
}

/* Row-major leading dimension of a matrix view, or 0 if the view is not one
 * BLAS can take (inner stride must be 1). */
/* The op slots a backend may leave NULL (only alloc/free/memcpy are required). */
static nnm_status need_slot(nnm_ctx *ctx, const nnm__backend *be, int present, const char *name) {
    if (NNM__LIKELY(present)) return NNM_OK;
    return nnm__error(ctx, NNM_E_UNSUPPORTED, "backend '%s' does not implement %s", be->vt->name, name);
}

static int64_t ld_of(const nnm_tensor *t, int32_t row_dim) {
    int32_t last = t->desc.ndim - 1;
    if (t->shape[last] != 1 && t->strides[last] != 1) return 0;
    int64_t ld = t->strides[row_dim];
    return ld >= t->shape[last] ? ld : (t->shape[row_dim] <= 1 ? t->shape[last] : 0);
}

static nnm_status contiguous(nnm_ctx *ctx, nnm_tensor *t, nnm_tensor **out) {
    if (nnm__tensor_is_contiguous(t)) {
        nnm_tensor_retain(t);
        *out = t;
        return NNM_OK;
    }
    return nnm__op_unary(ctx, NNM_UNARY_COPY, t, 0, out);
}

static const float *fptr(const nnm_tensor *t) {
    return (const float *)((const char *)t->desc.data + t->desc.byte_offset);
}

nnm_status nnm__op_linear(nnm_ctx *ctx, nnm_tensor *x, nnm_tensor *w, nnm_tensor *b, nnm_tensor **out) {
    *out = NULL;
    nnm_status st;
    /* the checks below in one test first: they cost more than a batch-1
     * Linear(16, 16)'s arithmetic when each is a call */
    if (NNM__UNLIKELY(!x || !w || !is_f32(x) || !is_f32(w) || (b && !is_f32(b)) ||
                      !nnm__device_eq(x->desc.device, w->desc.device) ||
                      (b && !nnm__device_eq(x->desc.device, b->desc.device))) &&
        ((st = check_f32(ctx, "linear", "input", x)) || (st = check_f32(ctx, "linear", "weight", w)) ||
         (b && (st = check_f32(ctx, "linear", "bias", b))) ||
         (st = check_same_device(ctx, "linear", x, w)) ||
         (b && (st = check_same_device(ctx, "linear", x, b)))))
        return st;
    if (NNM__UNLIKELY(w->desc.ndim != 2 || x->desc.ndim < 1)) {
        char sx[128], sw[128];
        nnm__shape_str(&x->desc, sx, sizeof sx);
        nnm__shape_str(&w->desc, sw, sizeof sw);
        return nnm__error(ctx, NNM_E_SHAPE, "linear: input %s and weight %s (weight must be 2-D)", sx, sw);
    }
    int64_t n_out = w->shape[0], k = w->shape[1];
    if (NNM__UNLIKELY(x->shape[x->desc.ndim - 1] != k)) {
        char sx[128];
        nnm__shape_str(&x->desc, sx, sizeof sx);
        return nnm__error(ctx, NNM_E_SHAPE, "linear: expected input [*, %lld], got %s", (long long)k, sx);
    }
    if (NNM__UNLIKELY(b && (b->desc.ndim != 1 || b->shape[0] != n_out))) {
        char sb[128];
        nnm__shape_str(&b->desc, sb, sizeof sb);
        return nnm__error(ctx, NNM_E_SHAPE, "linear: expected bias [%lld], got %s", (long long)n_out, sb);
    }
    nnm__backend *be;
    if ((st = nnm__backend_get(ctx, x->desc.device, &be)) ||
        (st = need_slot(ctx, be, be->vt->gemm != NULL, "gemm")) ||
        (b && (st = need_slot(ctx, be, be->vt->unary != NULL, "unary"))))
        return st;
    /* xc, wc: x and w themselves (borrowed) when contiguous, else contiguous
     * copies (owned: xo, wo) */
    nnm_tensor *xc = x, *wc = w, *xo = NULL, *wo = NULL, *y = NULL;
    if (NNM__UNLIKELY(!nnm__tensor_is_contiguous(x))) {
        if ((st = contiguous(ctx, x, &xo))) goto done;
        xc = xo;
    }
    if (NNM__UNLIKELY(!nnm__tensor_is_contiguous(w))) {
        if ((st = contiguous(ctx, w, &wo))) goto done;
        wc = wo;
    }
    int64_t shape[NNM_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape); /* fixed size: two vector moves, not a call */
    shape[x->desc.ndim - 1] = n_out;
    if ((st = nnm__tensor_alloc(ctx, x->desc.device, x->desc.dtype, x->desc.ndim, shape, &y))) goto done;
    int64_t m = nnm__numel(x->desc.ndim - 1, x->shape); /* rows: no division (x's last dim is k) */
    nnm__env env;
    nnm__env_init(&env, ctx, NULL, NNM__PHASE_BACKEND);
    float beta = 0.0f;
    if (b && m <= 4 && (b->strides[0] == 1 || n_out == 1) && y->desc.device.type == NNM_DEVICE_CPU) {
        /* A few rows in host memory (batch 1, small models): the bias
         * copied row by row here, as nnm_tensor_from_f32 writes CPU tensors
         * itself; cheaper than a broadcast op's checks or a backend call. */
        const size_t row = (size_t)n_out * sizeof(float);
        for (int64_t r = 0; r < m; r++) memcpy((float *)y->desc.data + r * n_out, fptr(b), row);
        beta = 1.0f;
    } else if (b && m <= 4 && (b->strides[0] == 1 || n_out == 1) && be->vt->memcpy) {
        /* A few rows (batch 1, small models): the bias copied row by row with
         * the backend's memcpy, cheaper than a broadcast op's checks. */
        for (int64_t r = 0; r < m && !st; r++)
            st = be->vt->memcpy(&env.pub, be->state, (float *)y->desc.data + r * n_out, y->desc.device,
                                fptr(b), b->desc.device, (size_t)n_out * sizeof(float));
        if (st) goto done;
        beta = 1.0f;
    } else if (b) {
        /* Seed every row of y with the bias (a stride-0 broadcast copy), then
         * let the GEMM accumulate onto it: one pass over y instead of two. */
        int64_t bs[2] = {0, b->strides[0]}, bsh[2] = {m, n_out};
        nnm_tensor_desc bd = b->desc, yd = y->desc;
        bd.ndim = yd.ndim = 2;
        bd.shape = yd.shape = bsh;
        bd.strides = bs;
        int64_t ys[2] = {n_out, 1};
        yd.strides = ys;
        nnm_unary_args ua = {sizeof ua, NNM_UNARY_COPY, 0, &bd, &yd};
        if ((st = be->vt->unary(&env.pub, be->state, &ua))) goto done;
        beta = 1.0f;
    }
    nnm_gemm_args g = {sizeof g, 0, 1, m, n_out, k, 1.0f, beta,
                       fptr(xc), k, fptr(wc), k, (float *)y->desc.data, n_out};
    if (!(st = be->vt->gemm(&env.pub, be->state, &g)) && nnm__needs_grad(x, w, b))
        st = nnm__record_linear(ctx, x, w, b, xc, wc, y);
done:
    nnm_tensor_release(xo);
    nnm_tensor_release(wo);
    if (st) nnm_tensor_release(y);
    else *out = y;
    return st;
}

nnm_status nnm__op_matmul(nnm_ctx *ctx, nnm_tensor *a, nnm_tensor *b, nnm_tensor **out) {
    *out = NULL;
    nnm_status st;
    if ((st = check_f32(ctx, "matmul", "a", a)) || (st = check_f32(ctx, "matmul", "b", b)) ||
        (st = check_same_device(ctx, "matmul", a, b)))
        return st;
    if (NNM__UNLIKELY(a->desc.ndim != 2 || b->desc.ndim != 2 || a->shape[1] != b->shape[0])) {
        char s1[128], s2[128];
        nnm__shape_str(&a->desc, s1, sizeof s1);
        nnm__shape_str(&b->desc, s2, sizeof s2);
        return nnm__error(ctx, NNM_E_SHAPE, "matmul: cannot multiply %s by %s", s1, s2);
    }
    nnm__backend *be;
    if ((st = nnm__backend_get(ctx, a->desc.device, &be)) ||
        (st = need_slot(ctx, be, be->vt->gemm != NULL, "gemm")))
        return st;
    nnm_tensor *ac = NULL, *bc = NULL, *y = NULL;
    int64_t lda = ld_of(a, 0), ldb = ld_of(b, 0);
    if (lda) { nnm_tensor_retain(a); ac = a; } else if ((st = contiguous(ctx, a, &ac))) goto done;
    if (ldb) { nnm_tensor_retain(b); bc = b; } else if ((st = contiguous(ctx, b, &bc))) goto done;
    if (!lda) lda = ac->shape[1];
    if (!ldb) ldb = bc->shape[1];
    int64_t shape[2] = {a->shape[0], b->shape[1]};
    if ((st = nnm__tensor_alloc(ctx, a->desc.device, a->desc.dtype, 2, shape, &y))) goto done;
    nnm__env env;
    nnm__env_init(&env, ctx, NULL, NNM__PHASE_BACKEND);
    nnm_gemm_args g = {sizeof g, 0, 0, shape[0], shape[1], a->shape[1], 1.0f, 0.0f,
                       fptr(ac), lda, fptr(bc), ldb, (float *)y->desc.data, shape[1]};
    if (!(st = be->vt->gemm(&env.pub, be->state, &g)) && nnm__needs_grad(a, b, NULL))
        st = nnm__record_matmul(ctx, a, b, ac, bc, y);
done:
    nnm_tensor_release(ac);
    nnm_tensor_release(bc);
    if (st) nnm_tensor_release(y);
    else *out = y;
    return st;
}

int nnm__backend_minor(const nnm__backend *be) {
    return be->vt->struct_size >= offsetof(nnm_backend_vtable, adam_step) + sizeof(void *) ? 1 : 0;
}

static nnm_status no_slot(nnm_ctx *ctx, const nnm__backend *be, const char *op) {
    return nnm__error(ctx, NNM_E_UNSUPPORTED, "%s: backend '%s' does not implement it", op, be->vt->name);
}

/* ---- reshape ------------------------------------------------------------ */

nnm_status nnm__op_reshape(nnm_ctx *ctx, nnm_tensor *x, int32_t ndim, const int64_t *shape, nnm_tensor **out) {
    *out = NULL;
    if (!x) return nnm__error(ctx, NNM_E_INVALID, "reshape: x is NULL");
    if (ndim < 0 || ndim > NNM_MAX_DIMS || (ndim && !shape))
        return nnm__error(ctx, NNM_E_SHAPE, "reshape: bad target ndim %d", (int)ndim);
    int64_t dims[NNM_MAX_DIMS], known = 1, n = nnm_tensor_numel(x);
    int infer = -1;
    for (int32_t i = 0; i < ndim; i++) {
        dims[i] = shape[i];
        if (shape[i] == -1 && infer < 0) infer = (int)i;
        else if (shape[i] < 0) return nnm__error(ctx, NNM_E_SHAPE, "reshape: invalid size %lld", (long long)shape[i]);
        else known *= shape[i];
    }
    if (infer >= 0) dims[infer] = known ? n / known : 0;
    if (nnm__numel(ndim, dims) != n) {
        char sx[128];
        nnm__shape_str(&x->desc, sx, sizeof sx);
        return nnm__error(ctx, NNM_E_SHAPE, "reshape: cannot view %s (%lld elements) with the given shape",
                          sx, (long long)n);
    }
    nnm_tensor *src = NULL, *y = NULL;
    nnm_status st = contiguous(ctx, x, &src);
    if (!st) st = nnm__tensor_view(src, ndim, dims, NULL, &y);
    nnm_tensor_release(src);
    if (!st && nnm__needs_grad(x, NULL, NULL)) st = nnm__record_reshape(ctx, x, y);
    if (st) nnm_tensor_release(y);
    else *out = y;
    return st;
}

/* ---- reductions --------------------------------------------------------- */

nnm_status nnm__op_reduce(nnm_ctx *ctx, int32_t op, nnm_tensor *x, const int32_t *dims, uint32_t n_dims,
                          int keepdim, nnm_tensor **out) {
    *out = NULL;
    nnm_status st = check_f32(ctx, "reduce", "x", x);
    if (st) return st;
    if (op < NNM_REDUCE_SUM || op > NNM_REDUCE_MIN)
        return nnm__error(ctx, NNM_E_INVALID, "reduce: unknown op %d", (int)op);
    if (n_dims && !dims) return nnm__error(ctx, NNM_E_INVALID, "reduce: dims is NULL");
    int32_t nd = x->desc.ndim;
    int reduced[NNM_MAX_DIMS] = {0};
    for (uint32_t i = 0; i < n_dims; i++) {
        int32_t d = dims[i] < 0 ? dims[i] + nd : dims[i];
        if (d < 0 || d >= nd)
            return nnm__error(ctx, NNM_E_SHAPE, "reduce: dim %d out of range for a %d-d tensor", (int)dims[i], (int)nd);
        reduced[d] = 1;
    }
    int64_t kshape[NNM_MAX_DIMS], oshape[NNM_MAX_DIMS];
    int32_t ond = 0;
    for (int32_t i = 0; i < nd; i++) {
        int r = n_dims == 0 || reduced[i];
        kshape[i] = r ? 1 : x->shape[i];
        if (!r) oshape[ond++] = x->shape[i];
    }
    nnm__backend *be;
    if ((st = nnm__backend_get(ctx, x->desc.device, &be))) return st;
    if (!be->vt->reduce || !nnm__backend_minor(be)) return no_slot(ctx, be, "reduce");
    nnm_tensor *rk = NULL, *y = NULL;
    if ((st = nnm__tensor_alloc(ctx, x->desc.device, x->desc.dtype, nd, kshape, &rk))) return st;
    nnm__env env;
    nnm__env_init(&env, ctx, NULL, NNM__PHASE_BACKEND);
    nnm_reduce_args a = {sizeof a, op, 1.0, &x->desc, &rk->desc};
    if (!(st = be->vt->reduce(&env.pub, be->state, &a))) {
        if (keepdim) {
            y = rk;
            rk = NULL;
        } else {
            st = nnm__tensor_view(rk, ond, oshape, NULL, &y);
        }
    }
    if (!st && nnm__needs_grad(x, NULL, NULL)) st = nnm__record_reduce(ctx, op, x, rk ? rk : y, y);
    nnm_tensor_release(rk);
    if (st) nnm_tensor_release(y);
    else *out = y;
    return st;
}

/* ---- log_softmax and nll ------------------------------------------------- */

nnm_status nnm__op_log_softmax(nnm_ctx *ctx, nnm_tensor *x, nnm_tensor **out) {
    *out = NULL;
    nnm_status st = check_f32(ctx, "log_softmax", "x", x);
    if (st) return st;
    if (x->desc.ndim < 1) return nnm__error(ctx, NNM_E_SHAPE, "log_softmax: x needs at least 1 dim");
    nnm__backend *be;
    if ((st = nnm__backend_get(ctx, x->desc.device, &be))) return st;
    if (!be->vt->log_softmax || !nnm__backend_minor(be)) return no_slot(ctx, be, "log_softmax");
    nnm_tensor *xc = NULL, *y = NULL;
    if ((st = contiguous(ctx, x, &xc)) ||
        (st = nnm__tensor_alloc(ctx, x->desc.device, x->desc.dtype, x->desc.ndim, x->shape, &y)))
        goto done;
    nnm__env env;
    nnm__env_init(&env, ctx, NULL, NNM__PHASE_BACKEND);
    nnm_log_softmax_args a = {sizeof a, 0, &xc->desc, &y->desc};
    if (!(st = be->vt->log_softmax(&env.pub, be->state, &a)) && nnm__needs_grad(x, NULL, NULL))
        st = nnm__record_log_softmax(ctx, x, y);
done:
    nnm_tensor_release(xc);
    if (st) nnm_tensor_release(y);
    else *out = y;
    return st;
}

nnm_status nnm__op_nll(nnm_ctx *ctx, nnm_tensor *logp, nnm_tensor *target, int64_t ignore_index,
                       double label_smoothing, int32_t reduction, nnm_tensor **out) {
    *out = NULL;
    nnm_status st = check_f32(ctx, "nll", "input", logp);
    if (st) return st;
    if (!target) return nnm__error(ctx, NNM_E_INVALID, "nll: target is NULL");
    if (target->desc.dtype.code != NNM_DTYPE_INT || target->desc.dtype.bits != 64)
        return nnm__error(ctx, NNM_E_DTYPE, "nll: target must be i64 class indices");
    if ((st = check_same_device(ctx, "nll", logp, target))) return st;
    if (logp->desc.ndim != 2 || target->desc.ndim != 1 || target->shape[0] != logp->shape[0]) {
        char s1[128], s2[128];
        nnm__shape_str(&logp->desc, s1, sizeof s1);
        nnm__shape_str(&target->desc, s2, sizeof s2);
        return nnm__error(ctx, NNM_E_SHAPE, "nll: expected input [N, C] and target [N], got %s and %s", s1, s2);
    }
    if (!(label_smoothing >= 0.0 && label_smoothing <= 1.0))
        return nnm__error(ctx, NNM_E_INVALID, "nll: label_smoothing must be in [0, 1], got %g", label_smoothing);
    if (reduction < NNM_REDUCTION_NONE || reduction > NNM_REDUCTION_SUM)
        return nnm__error(ctx, NNM_E_INVALID, "nll: unknown reduction %d", (int)reduction);
    nnm__backend *be;
    if ((st = nnm__backend_get(ctx, logp->desc.device, &be))) return st;
    if (!be->vt->nll || !nnm__backend_minor(be)) return no_slot(ctx, be, "nll");
    nnm_tensor *lc = NULL, *tc = NULL, *per = NULL, *count = NULL, *y = NULL;
    int64_t one[1] = {1};
    if ((st = contiguous(ctx, logp, &lc)) || (st = contiguous(ctx, target, &tc)) ||
        (st = nnm__tensor_alloc(ctx, logp->desc.device, NNM_F32, 1, target->shape, &per)) ||
        (st = nnm__tensor_alloc(ctx, logp->desc.device, NNM_F32, 1, one, &count)))
        goto done;
    nnm__env env;
    nnm__env_init(&env, ctx, NULL, NNM__PHASE_BACKEND);
    nnm_nll_args a = {sizeof a, 0, ignore_index, label_smoothing, &lc->desc, &tc->desc, &per->desc, &count->desc};
    if ((st = be->vt->nll(&env.pub, be->state, &a))) goto done;
    if (reduction == NNM_REDUCTION_NONE) {
        y = per;
        per = NULL;
    } else {
        nnm_tensor *sum = NULL;
        nnm_reduce_args r = {sizeof r, NNM_REDUCE_SUM, 1.0, NULL, NULL};
        int64_t kshape[1] = {1};
        if ((st = nnm__tensor_alloc(ctx, logp->desc.device, NNM_F32, 1, kshape, &sum))) goto done;
        r.x = &per->desc;
        r.out = &sum->desc;
        if (!(st = be->vt->reduce ? be->vt->reduce(&env.pub, be->state, &r) : no_slot(ctx, be, "reduce"))) {
            nnm_tensor *num = sum;
            if (reduction == NNM_REDUCTION_MEAN) { /* sum / count, as F.nll_loss */
                nnm_tensor *d = NULL;
                if (!(st = nnm__tensor_alloc(ctx, logp->desc.device, NNM_F32, 1, kshape, &d))) {
                    nnm_binary_args b = {sizeof b, NNM_BINARY_DIV, &sum->desc, &count->desc, &d->desc};
                    st = be->vt->binary(&env.pub, be->state, &b);
                }
                nnm_tensor_release(sum);
                num = d;
            }
            if (!st) st = nnm__tensor_view(num, 0, NULL, NULL, &y); /* a 0-d scalar */
            nnm_tensor_release(num);
        } else {
            nnm_tensor_release(sum);
        }
    }
    if (!st && nnm__needs_grad(logp, NULL, NULL))
        st = nnm__record_nll(ctx, logp, tc, count, ignore_index, label_smoothing, reduction, y);
done:
    nnm_tensor_release(lc);
    nnm_tensor_release(tc);
    nnm_tensor_release(per);
    nnm_tensor_release(count);
    if (st) nnm_tensor_release(y);
    else *out = y;
    return st;
}

/* ---- the public op API --------------------------------------------------- */

#define PUBLIC_OUT(ctx, out)                                                                    \
    if (out) *out = NULL;                                                                       \
    if (!(ctx)) return NNM_E_INVALID;                                                           \
    if (!(out)) return nnm__error((ctx), NNM_E_INVALID, "%s: out is NULL", __func__)

NNM_API nnm_status nnm_op_unary(nnm_ctx *ctx, int32_t op, nnm_tensor *x, double alpha, nnm_tensor **out) {
    PUBLIC_OUT(ctx, out);
    return nnm__op_unary(ctx, op, x, alpha, out);
}
NNM_API nnm_status nnm_op_binary(nnm_ctx *ctx, int32_t op, nnm_tensor *a, nnm_tensor *b, nnm_tensor **out) {
    PUBLIC_OUT(ctx, out);
    return nnm__op_binary(ctx, op, a, b, out);
}
NNM_API nnm_status nnm_op_linear(nnm_ctx *ctx, nnm_tensor *x, nnm_tensor *w, nnm_tensor *b, nnm_tensor **out) {
    PUBLIC_OUT(ctx, out);
    return nnm__op_linear(ctx, x, w, b, out);
}
NNM_API nnm_status nnm_op_matmul(nnm_ctx *ctx, nnm_tensor *a, nnm_tensor *b, nnm_tensor **out) {
    PUBLIC_OUT(ctx, out);
    return nnm__op_matmul(ctx, a, b, out);
}
NNM_API nnm_status nnm_op_reduce(nnm_ctx *ctx, int32_t op, nnm_tensor *x, const int32_t *dims,
                                 uint32_t n_dims, int keepdim, nnm_tensor **out) {
    PUBLIC_OUT(ctx, out);
    return nnm__op_reduce(ctx, op, x, dims, n_dims, keepdim, out);
}
NNM_API nnm_status nnm_op_log_softmax(nnm_ctx *ctx, nnm_tensor *x, nnm_tensor **out) {
    PUBLIC_OUT(ctx, out);
    return nnm__op_log_softmax(ctx, x, out);
}
NNM_API nnm_status nnm_op_nll(nnm_ctx *ctx, nnm_tensor *logp, nnm_tensor *target, int64_t ignore_index,
                              double label_smoothing, int32_t reduction, nnm_tensor **out) {
    PUBLIC_OUT(ctx, out);
    return nnm__op_nll(ctx, logp, target, ignore_index, label_smoothing, reduction, out);
}
NNM_API nnm_status nnm_op_reshape(nnm_ctx *ctx, nnm_tensor *x, int32_t ndim, const int64_t *shape,
                                  nnm_tensor **out) {
    PUBLIC_OUT(ctx, out);
    return nnm__op_reshape(ctx, x, ndim, shape, out);
}
