/* plugins/tensor_ops/tensor_ops.c - PyTorch's shape and indexing functions as
 * stateless layers, for graphs that hold a PyTorch forward:
 *
 *   view, reshape      x, [like...]   shape (one -1), from_input, from_dim
 *   permute            x              dims
 *   transpose          x              dim0, dim1
 *   contiguous         x              (none: returns x)
 *   squeeze            x              dim (int or ints; absent: every size-1 dim)
 *   unsqueeze          x              dim
 *   expand             x, [like...]   size (-1 keeps a dim), from_input, from_dim
 *   expand_as          x, other       (none)
 *   repeat             x              repeats
 *   chunk              x              chunks, dim = 0          (outputs: any)
 *   split              x              split_size_or_sections, dim = 0 (any)
 *   unbind             x              dim = 0                  (outputs: any)
 *   getitem            x              index (list of strings: "3", "1:3", "::2",
 *                                     "None", "...")
 *   narrow             x              dim, start, length
 *   select             x              dim, index
 *   stack              x1..xn         dim = 0
 *   roll               x              shifts, dims (int or ints each)
 *   pad                x              pad, mode = "constant", value = 0.0
 *   index_select       x, index (i64) dim                     (ABI 1.5 host)
 *   flip               x              dims                    (ABI 1.5 host)
 *   triu, tril         x              diagonal = 0            (ABI 1.5 host)
 *   to                 x              dtype ("float32", "int64", "int32", "uint8", "bool";
 *                                     "float", "long", "int"; "torch." optional) (1.5)
 *   float, long, int, bool  x         (none: .float(), .long(), .int(), .bool()) (1.5)
 *   type_as            x, other       (none: x cast to other's dtype; other lends only
 *                                     its dtype, no gradient reaches it) (1.5)
 *   detach             x              (none: x outside autograd) (ABI 1.5 host)
 *   cumsum             x              dim                     (torch.cumsum; f32)
 *   gather             x, index (i64) dim                     (torch.gather; ABI 1.5 host)
 *
 * Every op is composed of host ops only (op_reshape, op_permute, op_slice,
 * op_concat, op_binary, op_full; index_select, flip, triu and tril also
 * op_index_select, tensor_from_host and op_where, and refuse a host older
 * than ABI 1.5 with NNM_E_UNSUPPORTED), so it runs on every device and autograd
 * comes from the runtime. A "like" input only lends its shape (the dynamic
 * sizes convention of docs/layers.md): no gradient reaches it. Messages
 * start with the op's name and name the config key they are about; where
 * PyTorch has a message for the same mistake, it is PyTorch's.
 */
#include <nnmod/plugin.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layer_util.h"
#include "ops_common.h"

enum top_kind {
    K_VIEW, K_RESHAPE, K_PERMUTE, K_TRANSPOSE, K_CONTIGUOUS, K_SQUEEZE, K_UNSQUEEZE, K_EXPAND,
    K_EXPAND_AS, K_REPEAT, K_CHUNK, K_SPLIT, K_UNBIND, K_GETITEM, K_NARROW, K_SELECT, K_STACK,
    K_ROLL, K_PAD, K_INDEX_SELECT, K_FLIP, K_TRIU, K_TRIL,
    K_TO, K_FLOAT, K_LONG, K_INT, K_BOOL, K_TYPE_AS, K_DETACH, K_CUMSUM, K_GATHER
};

/* One element of a getitem index. */
enum gi_kind { GI_INT, GI_SLICE, GI_NONE, GI_ELLIPSIS };
typedef struct gi_elem {
    int kind;
    int has_start, has_stop;
    int64_t index;             /* GI_INT */
    int64_t start, stop, step; /* GI_SLICE */
} gi_elem;

typedef struct top_state {
    int kind;
    const char *op;
    nnm_oc_sizes sizes;                 /* view, reshape, expand */
    int64_t ints[NNM_OC_MAX_LIST];      /* dims, repeats, sections, shifts, pad */
    size_t n_ints;
    int has_ints;
    int64_t ints2[NNM_OC_MAX_LIST];     /* roll: dims */
    size_t n_ints2;
    int has_ints2;
    int64_t dim, dim0, dim1, start, length, index, chunks;
    int split_is_int;
    double value;
    gi_elem gi[NNM_OC_MAX_LIST];
    size_t n_gi;
    nnm_dtype dtype;                    /* to, float, long, int, bool */
    const char *dtype_name;             /* its PyTorch name (static) */
} top_state;

/* PyTorch's dtype names ("torch." optional) that op_cast takes. */
static const struct { const char *name; nnm_dtype dt; } top_dtypes[] = {
    {"float32", {NNM_DTYPE_FLOAT, 32, 1}}, {"float", {NNM_DTYPE_FLOAT, 32, 1}},
    {"int64", {NNM_DTYPE_INT, 64, 1}},     {"long", {NNM_DTYPE_INT, 64, 1}},
    {"int32", {NNM_DTYPE_INT, 32, 1}},     {"int", {NNM_DTYPE_INT, 32, 1}},
    {"uint8", {NNM_DTYPE_UINT, 8, 1}},     {"bool", {NNM_DTYPE_BOOL, 8, 1}},
};

/* ---- helpers ------------------------------------------------------------ */

static const nnm_tensor_desc *D(nnm_env *env, const nnm_tensor *t) {
    return env->host->tensor_desc(t);
}

static nnm_status retain_out(nnm_env *env, nnm_tensor *x, nnm_tensor **out) {
    env->host->tensor_retain(x);
    *out = x;
    return NNM_OK;
}

/* x reshaped to shape, or x itself when it already has that shape. */
static nnm_status reshape_to(nnm_env *env, nnm_tensor *x, int32_t ndim, const int64_t *shape,
                             nnm_tensor **out) {
    const nnm_tensor_desc *d = D(env, x);
    int same = d->ndim == ndim;
    for (int32_t i = 0; same && i < ndim; i++) same = d->shape[i] == shape[i];
    if (same) return retain_out(env, x, out);
    return env->host->op_reshape(env, x, ndim, shape, out);
}

/* PyTorch's infer_size for view/reshape: `want` (n entries, one -1 allowed)
 * for numel elements into out. */
static nnm_status infer_size(nnm_env *env, const char *op, const int64_t *want, size_t n, int64_t numel,
                             int64_t *out) {
    const nnm_host *h = env->host;
    char s[256];
    int64_t known = 1;
    int infer = -1;
    for (size_t i = 0; i < n; i++) {
        out[i] = want[i];
        if (want[i] == -1) {
            if (infer >= 0) return h->set_error(env, NNM_E_SHAPE, "%s: shape: only one dimension can be inferred", op);
            infer = (int)i;
        } else if (want[i] < 0) {
            return h->set_error(env, NNM_E_SHAPE, "%s: shape: invalid shape dimension %lld", op, (long long)want[i]);
        } else {
            known *= want[i];
        }
    }
    if (infer >= 0) {
        if (known == 0) {
            if (numel == 0)
                return h->set_error(env, NNM_E_SHAPE,
                                    "%s: cannot reshape tensor of 0 elements into shape %s because the "
                                    "unspecified dimension size -1 can be any value and is ambiguous",
                                    op, nnm_oc_ints_str(want, n, s, sizeof s));
        } else if (numel % known == 0) {
            out[infer] = numel / known;
            return NNM_OK;
        }
    } else if (known == numel) {
        return NNM_OK;
    }
    return h->set_error(env, NNM_E_SHAPE, "%s: shape '%s' is invalid for input of size %lld", op,
                        nnm_oc_ints_str(want, n, s, sizeof s), (long long)numel);
}

/* A new tensor of `shape` filled with value (no gradient). */
static nnm_status full(nnm_env *env, int32_t ndim, const int64_t *shape, double value, nnm_tensor **out) {
    return env->host->op_full(env, ndim, shape, value, out);
}

/* x broadcast to `target` (ndim entries, x's dims aligned right; every x dim
 * equals its target or is 1): x * ones, the ones tensor only as large as the
 * expanded dims. */
static nnm_status broadcast_to(nnm_env *env, nnm_tensor *x, int32_t ndim, const int64_t *target,
                               nnm_tensor **out) {
    const nnm_host *h = env->host;
    const nnm_tensor_desc *d = D(env, x);
    int64_t ones[NNM_MAX_DIMS];
    int need = 0;
    for (int32_t i = 0; i < ndim; i++) {
        int32_t j = i - (ndim - d->ndim);
        int64_t have = j >= 0 ? d->shape[j] : 1;
        ones[i] = have == target[i] ? 1 : target[i];
        need |= ones[i] != 1;
    }
    if (!need) return reshape_to(env, x, ndim, target, out);
    nnm_tensor *o = NULL;
    nnm_status st = full(env, ndim, ones, 1.0, &o);
    if (!st) st = h->op_binary(env, NNM_BINARY_MUL, x, o, out);
    h->tensor_release(o);
    return st;
}

/* x viewed as [outer, size(dim), inner]. */
static void split3(const nnm_tensor_desc *d, int32_t dim, int64_t *s3) {
    s3[0] = 1;
    s3[1] = d->shape[dim];
    s3[2] = 1;
    for (int32_t i = 0; i < d->ndim; i++) {
        if (i < dim) s3[0] *= d->shape[i];
        else if (i > dim) s3[2] *= d->shape[i];
    }
}

/* Elements start, start + step, ... (len of them) of dim `dim`: x[..., start::step][:len].
 * step > 1 is a composition: slice, pad to len * step with zeros, view as
 * [len, step], take column 0 (no gather host op is needed). */
static nnm_status strided_slice(nnm_env *env, nnm_tensor *x, int32_t dim, int64_t start, int64_t len,
                                int64_t step, nnm_tensor **out) {
    const nnm_host *h = env->host;
    if (step == 1 || len <= 1) return h->op_slice(env, x, dim, start, len, out);
    const nnm_tensor_desc *d = D(env, x);
    int64_t s3[3], fshape[NNM_MAX_DIMS];
    split3(d, dim, s3);
    memcpy(fshape, d->shape, (size_t)d->ndim * sizeof fshape[0]);
    fshape[dim] = len;
    const int64_t avail = d->shape[dim] - start, want = len * step;
    nnm_tensor *t = NULL, *u = NULL, *z = NULL;
    nnm_status st = h->op_reshape(env, x, 3, s3, &t);
    if (!st) st = h->op_slice(env, t, 1, start, want < avail ? want : avail, &u);
    if (!st) nnm_oc_swap(h, &t, u), u = NULL;
    if (!st && want > avail) { /* pad the last group with zeros */
        int64_t zs[3] = {s3[0], want - avail, s3[2]};
        if (!(st = full(env, 3, zs, 0.0, &z))) {
            nnm_tensor *pair[2] = {t, z};
            if (!(st = h->op_concat(env, pair, 2, 1, &u))) nnm_oc_swap(h, &t, u), u = NULL;
        }
    }
    if (!st) {
        int64_t s4[4] = {s3[0], len, step, s3[2]};
        if (!(st = h->op_reshape(env, t, 4, s4, &u))) nnm_oc_swap(h, &t, u), u = NULL;
    }
    if (!st && !(st = h->op_slice(env, t, 2, 0, 1, &u))) nnm_oc_swap(h, &t, u), u = NULL;
    if (!st) st = h->op_reshape(env, t, d->ndim, fshape, out);
    h->tensor_release(t);
    h->tensor_release(u);
    h->tensor_release(z);
    return st;
}

/* x with dim `dim` removed (x.select(dim, index)). */
static nnm_status select_dim(nnm_env *env, nnm_tensor *x, int32_t dim, int64_t index, nnm_tensor **out) {
    const nnm_host *h = env->host;
    const nnm_tensor_desc *d = D(env, x);
    int64_t shape[NNM_MAX_DIMS];
    int32_t n = 0;
    for (int32_t i = 0; i < d->ndim; i++)
        if (i != dim) shape[n++] = d->shape[i];
    nnm_tensor *t = NULL;
    nnm_status st = h->op_slice(env, x, dim, index, 1, &t);
    if (!st) st = h->op_reshape(env, t, n, shape, out);
    h->tensor_release(t);
    return st;
}

/* ---- create ------------------------------------------------------------- */

/* Parses one getitem element. */
static nnm_status parse_index(nnm_env *env, size_t i, const char *s, gi_elem *e) {
    const nnm_host *h = env->host;
    memset(e, 0, sizeof *e);
    if (strcmp(s, "None") == 0) {
        e->kind = GI_NONE;
        return NNM_OK;
    }
    if (strcmp(s, "...") == 0 || strcmp(s, "Ellipsis") == 0) {
        e->kind = GI_ELLIPSIS;
        return NNM_OK;
    }
    const char *colon = strchr(s, ':');
    if (colon == NULL) {
        char *end = NULL;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (*s == '\0' || *end != '\0' || errno)
            return h->set_error(env, NNM_E_INVALID,
                                "getitem: index[%zu] = \"%s\" is not an integer, a slice (\"1:3\", \"::2\"), "
                                "\"None\" or \"...\"",
                                i, s);
        e->kind = GI_INT;
        e->index = v;
        return NNM_OK;
    }
    e->kind = GI_SLICE;
    e->step = 1;
    const char *p = s;
    for (int part = 0; part < 3; part++) {
        const char *q = strchr(p, ':');
        size_t len = q ? (size_t)(q - p) : strlen(p);
        if (len > 0) {
            char buf[32];
            char *end = NULL;
            if (len >= sizeof buf) goto bad;
            memcpy(buf, p, len);
            buf[len] = '\0';
            errno = 0;
            long long v = strtoll(buf, &end, 10);
            if (*end != '\0' || errno) goto bad;
            if (part == 0) e->start = v, e->has_start = 1;
            else if (part == 1) e->stop = v, e->has_stop = 1;
            else e->step = v;
        }
        if (!q) break;
        if (part == 2) goto bad; /* a fourth part */
        p = q + 1;
    }
    if (e->step == 0) return h->set_error(env, NNM_E_INVALID, "getitem: index[%zu] = \"%s\": slice step cannot be zero", i, s);
    if (e->step < 0)
        return h->set_error(env, NNM_E_INVALID, "getitem: index[%zu] = \"%s\": step must be greater than zero", i, s);
    return NNM_OK;
bad:
    return h->set_error(env, NNM_E_INVALID,
                        "getitem: index[%zu] = \"%s\" is not a slice \"start:stop:step\" of integers", i, s);
}

static nnm_status top_create(nnm_env *env, int kind, const char *op, void **self) {
    const nnm_host *h = env->host;
    *self = NULL;
    top_state *s = calloc(1, sizeof *s);
    if (!s) return h->set_error(env, NNM_E_NOMEM, "%s: out of memory", op);
    s->kind = kind;
    s->op = op;
    nnm_status st = NNM_OK;
    const int64_t zero = 0;
    int present = 0;
    switch (kind) {
    case K_VIEW:
    case K_RESHAPE:
        st = nnm_oc_sizes_config(env, op, "shape", &s->sizes);
        break;
    case K_EXPAND:
        st = nnm_oc_sizes_config(env, op, "size", &s->sizes);
        break;
    case K_PERMUTE:
        st = h->config_ints(env, "dims", s->ints, NNM_MAX_DIMS, &s->n_ints);
        if (st == NNM_E_LIMIT) st = h->set_error(env, NNM_E_LIMIT, "permute: dims: at most %d entries", NNM_MAX_DIMS);
        break;
    case K_TRANSPOSE:
        if (!(st = h->config_int(env, "dim0", NULL, &s->dim0))) st = h->config_int(env, "dim1", NULL, &s->dim1);
        break;
    case K_SQUEEZE:
        st = nnm_oc_config_int_or_ints(env, op, "dim", s->ints, NNM_MAX_DIMS, &s->n_ints, &s->has_ints);
        break;
    case K_UNSQUEEZE:
        st = h->config_int(env, "dim", NULL, &s->dim);
        break;
    case K_REPEAT:
        st = h->config_ints(env, "repeats", s->ints, NNM_MAX_DIMS, &s->n_ints);
        if (st == NNM_E_LIMIT) st = h->set_error(env, NNM_E_LIMIT, "repeat: repeats: at most %d entries", NNM_MAX_DIMS);
        for (size_t i = 0; !st && i < s->n_ints; i++)
            if (s->ints[i] < 0) {
                char b[256];
                st = h->set_error(env, NNM_E_INVALID, "repeat: repeats: Trying to create tensor with negative dimension %lld: %s",
                                  (long long)s->ints[i], nnm_oc_ints_str(s->ints, s->n_ints, b, sizeof b));
            }
        break;
    case K_CHUNK:
        if (!(st = h->config_int(env, "chunks", NULL, &s->chunks)) && !(st = h->config_int(env, "dim", &zero, &s->dim)) &&
            s->chunks <= 0)
            st = h->set_error(env, NNM_E_INVALID, "chunk: chunk expects `chunks` to be greater than 0, got: %lld",
                              (long long)s->chunks);
        break;
    case K_SPLIT: {
        int32_t type = -1;
        if ((st = h->config_int(env, "dim", &zero, &s->dim))) break;
        if ((st = h->config_type(env, "split_size_or_sections", &type))) {
            if (st == NNM_E_NOT_FOUND)
                st = h->set_error(env, NNM_E_NOT_FOUND, "split: split_size_or_sections is required");
            break;
        }
        s->split_is_int = type == NNM_CONFIG_INT;
        st = nnm_oc_config_int_or_ints(env, op, "split_size_or_sections", s->ints, NNM_MAX_IO, &s->n_ints, &present);
        for (size_t i = 0; !st && i < s->n_ints; i++)
            if (s->ints[i] < 0)
                st = h->set_error(env, NNM_E_INVALID, "split: split_size_or_sections[%zu] = %lld is negative", i,
                                  (long long)s->ints[i]);
        break;
    }
    case K_UNBIND:
    case K_STACK:
        st = h->config_int(env, "dim", &zero, &s->dim);
        break;
    case K_INDEX_SELECT:
    case K_CUMSUM:
    case K_GATHER:
        st = h->config_int(env, "dim", NULL, &s->dim);
        break;
    case K_FLIP:
        st = nnm_oc_config_int_or_ints(env, op, "dims", s->ints, NNM_MAX_DIMS, &s->n_ints, &s->has_ints);
        if (!st && !s->has_ints) st = h->set_error(env, NNM_E_NOT_FOUND, "flip: dims is required");
        break;
    case K_TRIU:
    case K_TRIL:
        st = h->config_int(env, "diagonal", &zero, &s->index);
        break;
    case K_TO: {
        const char *name = NULL;
        if (!(st = h->config_str(env, "dtype", NULL, &name))) {
            const char *bare = strncmp(name, "torch.", 6) == 0 ? name + 6 : name;
            size_t i = 0;
            while (i < sizeof top_dtypes / sizeof top_dtypes[0] && strcmp(top_dtypes[i].name, bare) != 0) i++;
            if (i == sizeof top_dtypes / sizeof top_dtypes[0])
                st = h->set_error(env, NNM_E_DTYPE, "to: dtype \"%s\": one of float32 (float), int64 (long), int32 (int), "
                                  "uint8, bool", name);
            else s->dtype = top_dtypes[i].dt, s->dtype_name = top_dtypes[i].name;
        }
        break;
    }
    case K_FLOAT: s->dtype = top_dtypes[0].dt, s->dtype_name = "float32"; break;
    case K_LONG: s->dtype = top_dtypes[2].dt, s->dtype_name = "int64"; break;
    case K_INT: s->dtype = top_dtypes[4].dt, s->dtype_name = "int32"; break;
    case K_BOOL: s->dtype = top_dtypes[7].dt, s->dtype_name = "bool"; break;
    case K_GETITEM: {
        const char *idx[NNM_OC_MAX_LIST];
        size_t n = 0;
        st = h->config_strs(env, "index", idx, NNM_OC_MAX_LIST, &n);
        if (st == NNM_E_LIMIT) st = h->set_error(env, NNM_E_LIMIT, "getitem: index: at most %d elements", NNM_OC_MAX_LIST);
        int ellipses = 0;
        for (size_t i = 0; !st && i < n; i++) {
            st = parse_index(env, i, idx[i], &s->gi[i]);
            if (!st && s->gi[i].kind == GI_ELLIPSIS && ellipses++)
                st = h->set_error(env, NNM_E_INVALID, "getitem: index: an index can only have a single ellipsis ('...')");
        }
        s->n_gi = n;
        break;
    }
    case K_NARROW:
        if (!(st = h->config_int(env, "dim", NULL, &s->dim)) && !(st = h->config_int(env, "start", NULL, &s->start)) &&
            !(st = h->config_int(env, "length", NULL, &s->length)) && s->length < 0)
            st = h->set_error(env, NNM_E_INVALID, "narrow: length must be non-negative, got %lld", (long long)s->length);
        break;
    case K_SELECT:
        if (!(st = h->config_int(env, "dim", NULL, &s->dim))) st = h->config_int(env, "index", NULL, &s->index);
        break;
    case K_ROLL:
        st = nnm_oc_config_int_or_ints(env, op, "shifts", s->ints, NNM_MAX_DIMS, &s->n_ints, &s->has_ints);
        if (!st && !s->has_ints) st = h->set_error(env, NNM_E_NOT_FOUND, "roll: shifts is required");
        if (!st) st = nnm_oc_config_int_or_ints(env, op, "dims", s->ints2, NNM_MAX_DIMS, &s->n_ints2, &s->has_ints2);
        if (!st && s->has_ints2 && s->n_ints2 != s->n_ints)
            st = h->set_error(env, NNM_E_SHAPE, "roll: shifts and dimensions must align. shifts: %zu, dims:%zu", s->n_ints,
                              s->n_ints2);
        if (!st && !s->has_ints2 && s->n_ints != 1)
            st = h->set_error(env, NNM_E_SHAPE, "roll: without dims, shifts must be one integer (got %zu)", s->n_ints);
        break;
    case K_PAD: {
        const char *mode = NULL;
        const double zf = 0.0;
        st = h->config_ints(env, "pad", s->ints, 2 * NNM_MAX_DIMS, &s->n_ints);
        if (st == NNM_E_LIMIT) st = h->set_error(env, NNM_E_SHAPE, "pad: pad: Padding length too large");
        if (!st) st = h->config_str(env, "mode", "constant", &mode);
        if (!st) st = nnm_oc_config_float_ex(env, op, "value", &zf, &s->value, NULL);
        if (!st && strcmp(mode, "constant") != 0)
            st = h->set_error(env, NNM_E_UNSUPPORTED, "pad: mode \"%s\" is not supported (only \"constant\"; "
                              "reflect/replicate/circular padding are the layers of issue 18)", mode);
        if (!st && s->n_ints % 2 != 0) st = h->set_error(env, NNM_E_SHAPE, "pad: pad: Padding length must be divisible by 2");
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
    static nnm_status fn(nnm_env *env, void **self) { return top_create(env, kind, op, self); }
CREATE(view_create, K_VIEW, "view")
CREATE(reshape_create, K_RESHAPE, "reshape")
CREATE(permute_create, K_PERMUTE, "permute")
CREATE(transpose_create, K_TRANSPOSE, "transpose")
CREATE(contiguous_create, K_CONTIGUOUS, "contiguous")
CREATE(squeeze_create, K_SQUEEZE, "squeeze")
CREATE(unsqueeze_create, K_UNSQUEEZE, "unsqueeze")
CREATE(expand_create, K_EXPAND, "expand")
CREATE(expand_as_create, K_EXPAND_AS, "expand_as")
CREATE(repeat_create, K_REPEAT, "repeat")
CREATE(chunk_create, K_CHUNK, "chunk")
CREATE(split_create, K_SPLIT, "split")
CREATE(unbind_create, K_UNBIND, "unbind")
CREATE(getitem_create, K_GETITEM, "getitem")
CREATE(narrow_create, K_NARROW, "narrow")
CREATE(select_create, K_SELECT, "select")
CREATE(stack_create, K_STACK, "stack")
CREATE(roll_create, K_ROLL, "roll")
CREATE(pad_create, K_PAD, "pad")
CREATE(index_select_create, K_INDEX_SELECT, "index_select")
CREATE(flip_create, K_FLIP, "flip")
CREATE(triu_create, K_TRIU, "triu")
CREATE(tril_create, K_TRIL, "tril")
CREATE(to_create, K_TO, "to")
CREATE(float_create, K_FLOAT, "float")
CREATE(long_create, K_LONG, "long")
CREATE(int_create, K_INT, "int")
CREATE(bool_create, K_BOOL, "bool")
CREATE(type_as_create, K_TYPE_AS, "type_as")
CREATE(detach_create, K_DETACH, "detach")
CREATE(cumsum_create, K_CUMSUM, "cumsum")
CREATE(gather_create, K_GATHER, "gather")

static void top_destroy(void *self) { free(self); }

/* ---- forwards ----------------------------------------------------------- */

static nnm_status fwd_view(nnm_env *env, const top_state *s, nnm_tensor *const *in, uint32_t n_in,
                           nnm_tensor **out) {
    int64_t want[NNM_MAX_DIMS], shape[NNM_MAX_DIMS];
    nnm_status st = nnm_oc_sizes_resolve(env, s->op, &s->sizes, in, n_in, want);
    const nnm_tensor_desc *d = D(env, in[0]);
    int64_t numel = 1;
    for (int32_t i = 0; i < d->ndim; i++) numel *= d->shape[i];
    if (!st) st = infer_size(env, s->op, want, s->sizes.n, numel, shape);
    if (!st) st = reshape_to(env, in[0], (int32_t)s->sizes.n, shape, out);
    return st;
}

static nnm_status fwd_permute(nnm_env *env, const top_state *s, nnm_tensor *x, nnm_tensor **out) {
    const nnm_host *h = env->host;
    const nnm_tensor_desc *d = D(env, x);
    int32_t perm[NNM_MAX_DIMS];
    int seen[NNM_MAX_DIMS] = {0}, identity = 1;
    if ((int32_t)s->n_ints != d->ndim)
        return h->set_error(env, NNM_E_SHAPE,
                            "permute: dims: number of dimensions in the tensor input does not match the length of "
                            "the desired ordering of dimensions i.e. input.dim() = %d is not equal to len(dims) = %zu",
                            (int)d->ndim, s->n_ints);
    for (size_t i = 0; i < s->n_ints; i++) {
        nnm_status st = nnm_oc_wrap_dim(env, "permute", "dims", s->ints[i], d->ndim, &perm[i]);
        if (st) return st;
        if (seen[perm[i]]++) return h->set_error(env, NNM_E_INVALID, "permute: dims: duplicate dims are not allowed.");
        identity &= perm[i] == (int32_t)i;
    }
    if (identity) return retain_out(env, x, out);
    return h->op_permute(env, x, perm, d->ndim, out);
}

static nnm_status fwd_transpose(nnm_env *env, const top_state *s, nnm_tensor *x, nnm_tensor **out) {
    const nnm_tensor_desc *d = D(env, x);
    int32_t a, b, perm[NNM_MAX_DIMS];
    nnm_status st;
    if ((st = nnm_oc_wrap_dim(env, "transpose", "dim0", s->dim0, d->ndim, &a)) ||
        (st = nnm_oc_wrap_dim(env, "transpose", "dim1", s->dim1, d->ndim, &b)))
        return st;
    if (a == b || d->ndim < 2) return retain_out(env, x, out);
    for (int32_t i = 0; i < d->ndim; i++) perm[i] = i;
    perm[a] = b;
    perm[b] = a;
    return env->host->op_permute(env, x, perm, d->ndim, out);
}

static nnm_status fwd_squeeze(nnm_env *env, const top_state *s, nnm_tensor *x, nnm_tensor **out) {
    const nnm_tensor_desc *d = D(env, x);
    int sel[NNM_MAX_DIMS] = {0};
    for (size_t i = 0; i < s->n_ints; i++) {
        int32_t k;
        nnm_status st = nnm_oc_wrap_dim(env, "squeeze", "dim", s->ints[i], d->ndim, &k);
        if (st) return st;
        sel[k] = 1;
    }
    int64_t shape[NNM_MAX_DIMS];
    int32_t n = 0;
    for (int32_t i = 0; i < d->ndim; i++)
        if (!(d->shape[i] == 1 && (!s->has_ints || sel[i]))) shape[n++] = d->shape[i];
    return reshape_to(env, x, n, shape, out);
}

static nnm_status fwd_unsqueeze(nnm_env *env, const top_state *s, nnm_tensor *x, nnm_tensor **out) {
    const nnm_tensor_desc *d = D(env, x);
    if (d->ndim >= NNM_MAX_DIMS)
        return env->host->set_error(env, NNM_E_LIMIT, "unsqueeze: a tensor has at most %d dims", NNM_MAX_DIMS);
    int32_t k;
    nnm_status st = nnm_oc_wrap_dim(env, "unsqueeze", "dim", s->dim, d->ndim + 1, &k);
    if (st) return st;
    int64_t shape[NNM_MAX_DIMS];
    int32_t n = 0;
    for (int32_t i = 0; i <= d->ndim; i++) {
        if (i == k) shape[n++] = 1;
        if (i < d->ndim) shape[n++] = d->shape[i];
    }
    return reshape_to(env, x, n, shape, out);
}

/* expand's target shape from `size` (n entries; -1 keeps a dim). */
static nnm_status expand_target(nnm_env *env, const char *op, const nnm_tensor_desc *d, const int64_t *size,
                                size_t n, int64_t *target) {
    const nnm_host *h = env->host;
    char a[256], b[256];
    if ((int32_t)n < d->ndim)
        return h->set_error(env, NNM_E_SHAPE,
                            "%s: size: the number of sizes provided (%zu) must be greater or equal to the number "
                            "of dimensions in the tensor (%d)",
                            op, n, (int)d->ndim);
    for (size_t i = 0; i < n; i++) {
        int32_t j = (int32_t)i - ((int32_t)n - d->ndim);
        if (j < 0) {
            if (size[i] < 0)
                return h->set_error(env, NNM_E_SHAPE,
                                    "%s: size: The expanded size of the tensor (%lld) isn't allowed in a leading, "
                                    "non-existing dimension %zu",
                                    op, (long long)size[i], i);
            target[i] = size[i];
        } else if (size[i] == -1) {
            target[i] = d->shape[j];
        } else if (size[i] < 0) {
            return h->set_error(env, NNM_E_SHAPE, "%s: size: invalid size %lld", op, (long long)size[i]);
        } else if (d->shape[j] != size[i] && d->shape[j] != 1) {
            return h->set_error(env, NNM_E_SHAPE,
                                "%s: The expanded size of the tensor (%lld) must match the existing size (%lld) at "
                                "non-singleton dimension %zu.  Target sizes: %s.  Tensor sizes: %s",
                                op, (long long)size[i], (long long)d->shape[j], i, nnm_oc_ints_str(size, n, a, sizeof a),
                                nnm_oc_ints_str(d->shape, (size_t)d->ndim, b, sizeof b));
        } else {
            target[i] = size[i];
        }
    }
    return NNM_OK;
}

static nnm_status fwd_expand(nnm_env *env, const top_state *s, nnm_tensor *const *in, uint32_t n_in,
                             nnm_tensor **out) {
    int64_t size[NNM_MAX_DIMS], target[NNM_MAX_DIMS];
    const nnm_tensor_desc *d = D(env, in[0]);
    nnm_status st;
    size_t n;
    if (s->kind == K_EXPAND_AS) {
        const nnm_tensor_desc *o = D(env, in[1]);
        n = (size_t)o->ndim;
        memcpy(size, o->shape, n * sizeof size[0]);
    } else {
        n = s->sizes.n;
        if ((st = nnm_oc_sizes_resolve(env, s->op, &s->sizes, in, n_in, size))) return st;
    }
    if ((st = expand_target(env, s->op, d, size, n, target))) return st;
    return broadcast_to(env, in[0], (int32_t)n, target, out);
}

static nnm_status fwd_repeat(nnm_env *env, const top_state *s, nnm_tensor *x, nnm_tensor **out) {
    const nnm_host *h = env->host;
    const nnm_tensor_desc *d = D(env, x);
    const int32_t n = (int32_t)s->n_ints;
    if (n < d->ndim)
        return h->set_error(env, NNM_E_SHAPE,
                            "repeat: repeats: Number of dimensions of repeat dims can not be smaller than number of "
                            "dimensions of tensor");
    int64_t shape[NNM_MAX_DIMS];
    for (int32_t i = 0; i < n; i++) {
        int32_t j = i - (n - d->ndim);
        shape[i] = j >= 0 ? d->shape[j] : 1;
    }
    nnm_tensor *t = NULL;
    nnm_status st = reshape_to(env, x, n, shape, &t);
    /* one dim at a time: [outer, 1, s, inner] * ones[1, r, 1, 1] -> [outer, r * s, inner] */
    for (int32_t i = 0; !st && i < n; i++) {
        const int64_t r = s->ints[i];
        if (r == 1) continue;
        int64_t outer = 1, inner = 1;
        for (int32_t k = 0; k < n; k++) {
            if (k < i) outer *= shape[k];
            else if (k > i) inner *= shape[k];
        }
        int64_t s4[4] = {outer, 1, shape[i], inner}, o4[4] = {1, r, 1, 1};
        nnm_tensor *v = NULL, *ones = NULL, *w = NULL;
        if (!(st = h->op_reshape(env, t, 4, s4, &v)) && !(st = full(env, 4, o4, 1.0, &ones)) &&
            !(st = h->op_binary(env, NNM_BINARY_MUL, v, ones, &w))) {
            shape[i] *= r;
            nnm_tensor *u = NULL;
            if (!(st = h->op_reshape(env, w, n, shape, &u))) nnm_oc_swap(h, &t, u);
        }
        h->tensor_release(v);
        h->tensor_release(ones);
        h->tensor_release(w);
    }
    if (st) {
        h->tensor_release(t);
        return st;
    }
    *out = t;
    return NNM_OK;
}

/* chunk, split, unbind: n_out pieces along dim. */
static nnm_status fwd_pieces(nnm_env *env, const top_state *s, nnm_tensor *x, nnm_tensor **out, uint32_t n_out) {
    const nnm_host *h = env->host;
    const nnm_tensor_desc *d = D(env, x);
    int32_t dim;
    nnm_status st = nnm_oc_wrap_dim(env, s->op, "dim", s->dim, d->ndim, &dim);
    if (st) return st;
    if (d->ndim == 0) return h->set_error(env, NNM_E_SHAPE, "%s: the input is a 0-d tensor (nothing to split)", s->op);
    const int64_t size = d->shape[dim];
    int64_t starts[NNM_MAX_IO], lens[NNM_MAX_IO];
    int64_t count = 0;
    if (s->kind == K_UNBIND) {
        count = size;
        for (int64_t i = 0; i < count && i < NNM_MAX_IO; i++) starts[i] = i, lens[i] = 1;
    } else if (s->kind == K_CHUNK || s->split_is_int) {
        int64_t piece;
        if (s->kind == K_CHUNK) {
            piece = (size + s->chunks - 1) / s->chunks;
            count = piece == 0 ? s->chunks : (size + piece - 1) / piece;
        } else {
            piece = s->ints[0];
            if (piece == 0 && size != 0)
                return h->set_error(env, NNM_E_INVALID,
                                    "split: split_size_or_sections: split_size can only be 0 if dimension size is 0, "
                                    "but got dimension size of %lld",
                                    (long long)size);
            count = piece == 0 || size == 0 ? 1 : (size + piece - 1) / piece;
        }
        for (int64_t i = 0; i < count && i < NNM_MAX_IO; i++) {
            starts[i] = i * piece;
            lens[i] = size - starts[i] < piece ? size - starts[i] : piece;
            if (piece == 0) starts[i] = 0, lens[i] = 0;
        }
    } else {
        int64_t sum = 0;
        for (size_t i = 0; i < s->n_ints; i++) {
            starts[i] = sum;
            lens[i] = s->ints[i];
            sum += s->ints[i];
        }
        if (sum != size) {
            char b[512];
            return h->set_error(env, NNM_E_SHAPE,
                                "split: split_size_or_sections: split_with_sizes expects split_sizes to sum exactly to "
                                "%lld (input tensor's size at dimension %d), but got split_sizes=%s",
                                (long long)size, (int)dim, nnm_oc_ints_str(s->ints, s->n_ints, b, sizeof b));
        }
        count = (int64_t)s->n_ints;
    }
    if ((int64_t)n_out > count)
        return h->set_error(env, NNM_E_SHAPE, "%s: %u outputs asked, but the input gives %lld pieces along dim %d (size %lld)",
                            s->op, (unsigned)n_out, (long long)count, (int)dim, (long long)size);
    for (uint32_t i = 0; i < n_out; i++) {
        st = s->kind == K_UNBIND ? select_dim(env, x, dim, starts[i], &out[i])
                                 : h->op_slice(env, x, dim, starts[i], lens[i], &out[i]);
        if (st) {
            for (uint32_t k = 0; k < i; k++) {
                h->tensor_release(out[k]);
                out[k] = NULL;
            }
            return st;
        }
    }
    return NNM_OK;
}

static nnm_status fwd_getitem(nnm_env *env, const top_state *s, nnm_tensor *x, nnm_tensor **out) {
    const nnm_host *h = env->host;
    const nnm_tensor_desc *d = D(env, x);
    const int32_t nd = d->ndim;
    int32_t consumed = 0;
    for (size_t i = 0; i < s->n_gi; i++) consumed += s->gi[i].kind == GI_INT || s->gi[i].kind == GI_SLICE;
    if (consumed > nd)
        return h->set_error(env, NNM_E_SHAPE, "getitem: index: too many indices for tensor of dimension %d", (int)nd);
    int64_t shape[NNM_OC_MAX_LIST + NNM_MAX_DIMS];
    int32_t n = 0, in_dim = 0;
    nnm_tensor *t = x;
    h->tensor_retain(t);
    nnm_status st = NNM_OK;
    for (size_t i = 0; !st && i < s->n_gi; i++) {
        const gi_elem *e = &s->gi[i];
        if (e->kind == GI_NONE) {
            shape[n++] = 1;
        } else if (e->kind == GI_ELLIPSIS) {
            for (int32_t k = 0; k < nd - consumed; k++) shape[n++] = d->shape[in_dim++];
        } else if (e->kind == GI_INT) {
            const int64_t size = d->shape[in_dim];
            if (e->index < -size || e->index >= size) {
                st = h->set_error(env, NNM_E_SHAPE, "getitem: index[%zu]: index %lld is out of bounds for dimension %d with size %lld",
                                  i, (long long)e->index, (int)in_dim, (long long)size);
                break;
            }
            nnm_tensor *u = NULL;
            if (!(st = h->op_slice(env, t, in_dim, e->index < 0 ? e->index + size : e->index, 1, &u)))
                nnm_oc_swap(h, &t, u);
            in_dim++;
        } else {
            const int64_t size = d->shape[in_dim];
            int64_t a = e->has_start ? e->start : 0, b = e->has_stop ? e->stop : size;
            if (a < 0) a = a + size < 0 ? 0 : a + size;
            if (a > size) a = size;
            if (b < 0) b = b + size < 0 ? 0 : b + size;
            if (b > size) b = size;
            const int64_t len = b > a ? (b - a + e->step - 1) / e->step : 0;
            if (!(a == 0 && len == size)) {
                nnm_tensor *u = NULL;
                if (!(st = strided_slice(env, t, in_dim, a, len, e->step, &u))) nnm_oc_swap(h, &t, u);
            }
            shape[n++] = len;
            in_dim++;
        }
        if (n > NNM_MAX_DIMS) st = h->set_error(env, NNM_E_LIMIT, "getitem: the result would have more than %d dims", NNM_MAX_DIMS);
    }
    while (!st && in_dim < nd) {
        shape[n++] = d->shape[in_dim++];
        if (n > NNM_MAX_DIMS) st = h->set_error(env, NNM_E_LIMIT, "getitem: the result would have more than %d dims", NNM_MAX_DIMS);
    }
    if (!st) st = reshape_to(env, t, n, shape, out);
    h->tensor_release(t);
    return st;
}

static nnm_status fwd_narrow(nnm_env *env, const top_state *s, nnm_tensor *x, nnm_tensor **out) {
    const nnm_host *h = env->host;
    const nnm_tensor_desc *d = D(env, x);
    int32_t dim;
    nnm_status st = nnm_oc_wrap_dim(env, "narrow", "dim", s->dim, d->ndim, &dim);
    if (st) return st;
    if (d->ndim == 0) return h->set_error(env, NNM_E_SHAPE, "narrow: narrow() cannot be applied to a 0-dim tensor.");
    const int64_t size = d->shape[dim];
    if (s->start < -size || s->start > size)
        return h->set_error(env, NNM_E_SHAPE, "narrow: start: start out of range (expected to be in range of [%lld, %lld], but got %lld)",
                            (long long)-size, (long long)size, (long long)s->start);
    const int64_t a = s->start < 0 ? s->start + size : s->start;
    if (a + s->length > size)
        return h->set_error(env, NNM_E_SHAPE, "narrow: start (%lld) + length (%lld) exceeds dimension size (%lld).", (long long)a,
                            (long long)s->length, (long long)size);
    if (a == 0 && s->length == size) return retain_out(env, x, out);
    return h->op_slice(env, x, dim, a, s->length, out);
}

static nnm_status fwd_select(nnm_env *env, const top_state *s, nnm_tensor *x, nnm_tensor **out) {
    const nnm_host *h = env->host;
    const nnm_tensor_desc *d = D(env, x);
    if (d->ndim == 0) return h->set_error(env, NNM_E_SHAPE, "select: select() cannot be applied to a 0-dim tensor.");
    int32_t dim;
    nnm_status st = nnm_oc_wrap_dim(env, "select", "dim", s->dim, d->ndim, &dim);
    if (st) return st;
    const int64_t size = d->shape[dim];
    if (s->index < -size || s->index >= size) {
        char b[256];
        return h->set_error(env, NNM_E_SHAPE, "select: index: select(): index %lld out of range for tensor of size %s at dimension %d",
                            (long long)s->index, nnm_oc_ints_str(d->shape, (size_t)d->ndim, b, sizeof b), (int)dim);
    }
    return select_dim(env, x, dim, s->index < 0 ? s->index + size : s->index, out);
}

static nnm_status fwd_stack(nnm_env *env, const top_state *s, nnm_tensor *const *in, uint32_t n_in, nnm_tensor **out) {
    const nnm_host *h = env->host;
    const nnm_tensor_desc *d0 = D(env, in[0]);
    for (uint32_t i = 1; i < n_in; i++) {
        const nnm_tensor_desc *di = D(env, in[i]);
        int same = di->ndim == d0->ndim;
        for (int32_t k = 0; same && k < d0->ndim; k++) same = di->shape[k] == d0->shape[k];
        if (!same) {
            char a[256], b[256];
            return h->set_error(env, NNM_E_SHAPE, "stack: stack expects each tensor to be equal size, but got %s at entry 0 and %s at entry %u",
                                nnm_oc_shape_str(h, in[0], a, sizeof a), nnm_oc_shape_str(h, in[i], b, sizeof b), (unsigned)i);
        }
    }
    if (d0->ndim >= NNM_MAX_DIMS) return h->set_error(env, NNM_E_LIMIT, "stack: a tensor has at most %d dims", NNM_MAX_DIMS);
    int32_t dim;
    nnm_status st = nnm_oc_wrap_dim(env, "stack", "dim", s->dim, d0->ndim + 1, &dim);
    if (st) return st;
    int64_t shape[NNM_MAX_DIMS];
    int32_t n = 0;
    for (int32_t i = 0; i <= d0->ndim; i++) {
        if (i == dim) shape[n++] = 1;
        if (i < d0->ndim) shape[n++] = d0->shape[i];
    }
    nnm_tensor *parts[NNM_MAX_IO] = {0};
    for (uint32_t i = 0; !st && i < n_in; i++) st = h->op_reshape(env, in[i], n, shape, &parts[i]);
    if (!st) {
        if (n_in == 1) {
            *out = parts[0];
            parts[0] = NULL;
        } else {
            st = h->op_concat(env, parts, n_in, dim, out);
        }
    }
    for (uint32_t i = 0; i < n_in; i++) h->tensor_release(parts[i]);
    return st;
}

/* concat of the two pieces [size - k, size) and [0, size - k) of dim. */
static nnm_status roll_dim(nnm_env *env, nnm_tensor *t, int32_t dim, int64_t shift, nnm_tensor **out) {
    const nnm_host *h = env->host;
    const int64_t size = D(env, t)->shape[dim];
    const int64_t k = size ? ((shift % size) + size) % size : 0;
    if (k == 0) return retain_out(env, t, out);
    nnm_tensor *p[2] = {NULL, NULL};
    nnm_status st = h->op_slice(env, t, dim, size - k, k, &p[0]);
    if (!st) st = h->op_slice(env, t, dim, 0, size - k, &p[1]);
    if (!st) st = h->op_concat(env, p, 2, dim, out);
    h->tensor_release(p[0]);
    h->tensor_release(p[1]);
    return st;
}

static nnm_status fwd_roll(nnm_env *env, const top_state *s, nnm_tensor *x, nnm_tensor **out) {
    const nnm_host *h = env->host;
    const nnm_tensor_desc *d = D(env, x);
    nnm_status st;
    nnm_tensor *t = NULL, *u = NULL;
    if (!s->has_ints2) { /* flatten, roll, restore */
        int64_t n = 1;
        for (int32_t i = 0; i < d->ndim; i++) n *= d->shape[i];
        if ((st = h->op_reshape(env, x, 1, &n, &t))) return st;
        if (!(st = roll_dim(env, t, 0, s->ints[0], &u))) st = h->op_reshape(env, u, d->ndim, d->shape, out);
        h->tensor_release(t);
        h->tensor_release(u);
        return st;
    }
    h->tensor_retain(x);
    t = x;
    st = NNM_OK;
    for (size_t i = 0; !st && i < s->n_ints; i++) {
        int32_t dim;
        if ((st = nnm_oc_wrap_dim(env, "roll", "dims", s->ints2[i], d->ndim, &dim))) break;
        if (d->ndim == 0) continue;
        if (!(st = roll_dim(env, t, dim, s->ints[i], &u))) nnm_oc_swap(h, &t, u);
    }
    if (st) {
        h->tensor_release(t);
        return st;
    }
    *out = t;
    return NNM_OK;
}

static nnm_status fwd_pad(nnm_env *env, const top_state *s, nnm_tensor *x, nnm_tensor **out) {
    const nnm_host *h = env->host;
    const nnm_tensor_desc *d = D(env, x);
    const int32_t pairs = (int32_t)(s->n_ints / 2);
    if (pairs > d->ndim) return h->set_error(env, NNM_E_SHAPE, "pad: pad: Padding length too large");
    nnm_tensor *t = x;
    h->tensor_retain(t);
    nnm_status st = NNM_OK;
    for (int32_t k = 0; !st && k < pairs; k++) {
        const int32_t dim = d->ndim - 1 - k;
        const int64_t left = s->ints[2 * k], right = s->ints[2 * k + 1];
        const int64_t size = D(env, t)->shape[dim];
        if (size + left + right < 0) {
            st = h->set_error(env, NNM_E_SHAPE,
                              "pad: pad: The input size %lld, plus negative padding %lld and %lld resulted in a negative "
                              "output size, which is invalid. Check dimension %d of your input.",
                              (long long)size, (long long)left, (long long)right, (int)dim);
            break;
        }
        const int64_t a = left < 0 ? -left : 0, keep = size - a - (right < 0 ? -right : 0);
        nnm_tensor *u = NULL;
        const nnm_tensor_desc *td = D(env, t);
        if (keep < 0) { /* the crops take every element: what is left is padding only */
            int64_t fs[NNM_MAX_DIMS];
            memcpy(fs, td->shape, (size_t)td->ndim * sizeof fs[0]);
            fs[dim] = size + left + right;
            if (!(st = full(env, td->ndim, fs, s->value, &u))) nnm_oc_swap(h, &t, u);
            continue;
        }
        if (a > 0 || keep < size) {
            if ((st = h->op_slice(env, t, dim, a, keep, &u))) break;
            nnm_oc_swap(h, &t, u);
        }
        if (left <= 0 && right <= 0) continue;
        td = D(env, t);
        int64_t ps[NNM_MAX_DIMS];
        memcpy(ps, td->shape, (size_t)td->ndim * sizeof ps[0]);
        nnm_tensor *parts[3] = {NULL, NULL, NULL};
        uint32_t np = 0;
        if (left > 0) {
            ps[dim] = left;
            if ((st = full(env, td->ndim, ps, s->value, &parts[np++]))) goto cleanup;
        }
        h->tensor_retain(t);
        parts[np++] = t;
        if (right > 0) {
            ps[dim] = right;
            if ((st = full(env, td->ndim, ps, s->value, &parts[np++]))) goto cleanup;
        }
        if (!(st = h->op_concat(env, parts, np, dim, &u))) nnm_oc_swap(h, &t, u);
    cleanup:
        for (uint32_t i = 0; i < 3; i++) h->tensor_release(parts[i]);
    }
    if (st) {
        h->tensor_release(t);
        return st;
    }
    *out = t;
    return NNM_OK;
}

/* ---- ABI 1.5: index_select, flip, triu, tril ---------------------------- */

static nnm_status need_15(nnm_env *env, const char *op) {
    const nnm_host *h = env->host;
    if (NNM_HOST_HAS(h, op_index_select) && NNM_HOST_HAS(h, tensor_from_host)) return NNM_OK;
    return h->set_error(env, NNM_E_UNSUPPORTED, "%s needs an ABI 1.5 host (op_index_select, tensor_from_host)", op);
}

static nnm_status fwd_index_select(nnm_env *env, const top_state *s, nnm_tensor *x, nnm_tensor *index,
                                   nnm_tensor **out) {
    nnm_status st = need_15(env, "index_select");
    int32_t dim;
    if (!st) st = nnm_oc_wrap_dim(env, "index_select", "dim", s->dim, D(env, x)->ndim, &dim);
    if (!st) st = env->host->op_index_select(env, x, dim, index, out);
    return st;
}

static nnm_status fwd_flip(nnm_env *env, const top_state *s, nnm_tensor *x, nnm_tensor **out) {
    const nnm_host *h = env->host;
    nnm_status st = need_15(env, "flip");
    if (st) return st;
    const nnm_tensor_desc *d = D(env, x);
    int seen[NNM_MAX_DIMS] = {0};
    int32_t dims[NNM_MAX_DIMS];
    for (size_t i = 0; i < s->n_ints; i++) {
        if ((st = nnm_oc_wrap_dim(env, "flip", "dims", s->ints[i], d->ndim, &dims[i]))) return st;
        if (seen[dims[i]]++)
            return h->set_error(env, NNM_E_INVALID, "flip: dims: dim %d appears multiple times in the list of dims", (int)dims[i]);
    }
    nnm_tensor *t = x;
    h->tensor_retain(t);
    for (size_t i = 0; !st && i < s->n_ints && d->ndim > 0; i++) {
        const int64_t n = d->shape[dims[i]];
        if (n <= 1) continue;
        int64_t *idx = malloc((size_t)n * sizeof *idx);
        if (!idx) {
            st = h->set_error(env, NNM_E_NOMEM, "flip: out of memory");
            break;
        }
        for (int64_t k = 0; k < n; k++) idx[k] = n - 1 - k;
        nnm_tensor *it = NULL, *u = NULL;
        const nnm_dtype i64 = {NNM_DTYPE_INT, 64, 1};
        st = h->tensor_from_host(env, 1, &n, i64, idx, &it);
        free(idx);
        if (!st && !(st = h->op_index_select(env, t, dims[i], it, &u))) nnm_oc_swap(h, &t, u);
        h->tensor_release(it);
    }
    if (st) {
        h->tensor_release(t);
        return st;
    }
    *out = t;
    return NNM_OK;
}

/* triu keeps j - i >= diagonal, tril j - i <= diagonal, over the last two
 * dims: where(mask, x, 0) with the mask made on the host. */
static nnm_status fwd_tri(nnm_env *env, const top_state *s, nnm_tensor *x, nnm_tensor **out) {
    const nnm_host *h = env->host;
    nnm_status st = need_15(env, s->op);
    if (st) return st;
    const nnm_tensor_desc *d = D(env, x);
    if (d->ndim < 2)
        return h->set_error(env, NNM_E_SHAPE, "%s: input tensor must have at least 2 dimensions (got %d)", s->op, (int)d->ndim);
    const int64_t r = d->shape[d->ndim - 2], c = d->shape[d->ndim - 1];
    float *m = malloc((size_t)(r * c > 0 ? r * c : 1) * sizeof *m);
    if (!m) return h->set_error(env, NNM_E_NOMEM, "%s: out of memory", s->op);
    for (int64_t i = 0; i < r; i++)
        for (int64_t j = 0; j < c; j++)
            m[i * c + j] = (s->kind == K_TRIU ? j - i >= s->index : j - i <= s->index) ? 1.0f : 0.0f;
    nnm_tensor *mask = NULL, *zero = NULL;
    const int64_t ms[2] = {r, c};
    st = h->tensor_from_host(env, 2, ms, NNM_F32, m, &mask);
    free(m);
    if (!st) st = full(env, 0, NULL, 0.0, &zero);
    if (!st) st = h->op_where(env, mask, x, zero, out);
    h->tensor_release(mask);
    h->tensor_release(zero);
    return st;
}

/* torch.cumsum(x, dim) as a Hillis-Steele scan of host ops: log2(n) steps
 * of y += y shifted by 2^k along dim (a slice after zeros), so autograd
 * and every device come with it; O(n log n) adds, each sum in a balanced
 * order (its rounding within that of PyTorch's sequential sum). f32. */
static nnm_status fwd_cumsum(nnm_env *env, const top_state *s, nnm_tensor *x, nnm_tensor **out) {
    const nnm_host *h = env->host;
    const nnm_tensor_desc *d = D(env, x);
    int32_t dim;
    nnm_status st = nnm_oc_wrap_dim(env, "cumsum", "dim", s->dim, d->ndim, &dim);
    if (st) return st;
    if (!nnm_lu_is_f32(d)) {
        char b[64];
        return h->set_error(env, NNM_E_DTYPE, "cumsum: x must be f32 (cast an integer tensor first), got %s",
                            nnm_lu_dtype_str(d->dtype, b, sizeof b));
    }
    nnm_tensor *y = x;
    h->tensor_retain(y);
    const int64_t n = d->ndim ? d->shape[dim] : 1;
    for (int64_t k = 1; !st && k < n; k *= 2) {
        int64_t zs[NNM_MAX_DIMS];
        for (int32_t i = 0; i < d->ndim; i++) zs[i] = i == dim ? k : d->shape[i];
        nnm_tensor *zero = NULL, *head = NULL, *shifted = NULL, *sum = NULL;
        if (!(st = full(env, d->ndim, zs, 0.0, &zero)) && !(st = h->op_slice(env, y, dim, 0, n - k, &head))) {
            nnm_tensor *parts[2] = {zero, head};
            if (!(st = h->op_concat(env, parts, 2, dim, &shifted)) &&
                !(st = h->op_binary(env, NNM_BINARY_ADD, y, shifted, &sum)))
                nnm_oc_swap(h, &y, sum);
        }
        h->tensor_release(zero);
        h->tensor_release(head);
        h->tensor_release(shifted);
    }
    if (st) {
        h->tensor_release(y);
        return st;
    }
    *out = y;
    return NNM_OK;
}

/* torch.gather(x, dim, index): out[i][j][k] = x[i][index[i][j][k]][k] (dim
 * 1), out shaped as index, whose every other dim is at most x's. Composed
 * as index_select of x flattened, at the flat positions index * stride(dim)
 * + the offset of the other coordinates (a table made on the host from the
 * shapes alone); the position is computed in f32 (op_cast), exact while x
 * has fewer than 2^24 elements, which is refused beyond. The gradient is
 * index_select's (index_add: repeated positions sum, as gather's). */
static nnm_status fwd_gather(nnm_env *env, const top_state *s, nnm_tensor *x, nnm_tensor *index, nnm_tensor **out) {
    const nnm_host *h = env->host;
    nnm_status st = need_15(env, "gather");
    if (!st && !NNM_HOST_HAS(h, op_cast)) st = h->set_error(env, NNM_E_UNSUPPORTED, "gather needs an ABI 1.5 host (op_cast)");
    if (st) return st;
    const nnm_tensor_desc *d = D(env, x), *di = D(env, index);
    int32_t dim;
    if ((st = nnm_oc_wrap_dim(env, "gather", "dim", s->dim, d->ndim, &dim))) return st;
    char b[64];
    if (di->dtype.code != NNM_DTYPE_INT || di->dtype.bits != 64)
        return h->set_error(env, NNM_E_DTYPE, "gather: gather(): Expected dtype int64 for index, got %s",
                            nnm_lu_dtype_str(di->dtype, b, sizeof b));
    const int32_t nd = d->ndim ? d->ndim : 1;
    if ((di->ndim ? di->ndim : 1) != nd)
        return h->set_error(env, NNM_E_SHAPE, "gather: Index tensor must have the same number of dimensions as input tensor");
    int64_t xs[NNM_MAX_DIMS], is[NNM_MAX_DIMS], stride[NNM_MAX_DIMS];
    int64_t xn = 1, in = 1;
    for (int32_t i = 0; i < nd; i++) {
        xs[i] = d->ndim ? d->shape[i] : 1;
        is[i] = di->ndim ? di->shape[i] : 1;
        xn *= xs[i];
        in *= is[i];
        if (i != dim && is[i] > xs[i])
            return h->set_error(env, NNM_E_SHAPE, "gather: Size does not match at dimension %d expected index [%lld] to be "
                                "smaller than self [%lld] apart from dimension %d", (int)i, (long long)is[i],
                                (long long)xs[i], (int)dim);
    }
    if (xn >= (int64_t)1 << 24)
        return h->set_error(env, NNM_E_LIMIT, "gather: x has %lld elements; nnmod's gather computes positions in f32, "
                            "exact below 2^24 (16777216)", (long long)xn);
    int64_t acc = 1;
    for (int32_t i = nd - 1; i >= 0; i--) {
        stride[i] = acc;
        acc *= xs[i];
    }
    if (in == 0 || xn == 0) return full(env, di->ndim, di->shape, 0.0, out);
    float *base = malloc((size_t)in * sizeof *base);
    if (!base) return h->set_error(env, NNM_E_NOMEM, "gather: out of memory");
    for (int64_t p = 0; p < in; p++) { /* the offset of p's coordinates but dim's */
        int64_t rem = p, off = 0;
        for (int32_t i = nd - 1; i >= 0; i--) {
            const int64_t c = rem % is[i];
            rem /= is[i];
            if (i != dim) off += c * stride[i];
        }
        base[p] = (float)off;
    }
    nnm_tensor *bt = NULL, *fi = NULL, *pos = NULL, *pos64 = NULL, *flat = NULL, *flatpos = NULL, *y = NULL;
    const nnm_dtype i64 = {NNM_DTYPE_INT, 64, 1};
    const int64_t one_d[1] = {-1};
    st = h->tensor_from_host(env, di->ndim, di->shape, NNM_F32, base, &bt);
    free(base);
    if (!st) st = h->op_cast(env, index, NNM_F32, &fi);
    if (!st) st = h->op_unary(env, NNM_UNARY_SCALE, fi, (double)stride[dim], &pos);
    if (!st) { /* + the offsets; an index outside [0, size) is caught below, before its position is used */
        nnm_tensor *t = NULL;
        if (!(st = h->op_binary(env, NNM_BINARY_ADD, pos, bt, &t))) nnm_oc_swap(h, &pos, t);
    }
    if (!st) { /* an entry out of range would land on another row: refused, as PyTorch does */
        nnm_tensor *lo = NULL, *hi = NULL;
        float mn = 0, mx = 0;
        const int32_t dims0[1] = {0};
        nnm_tensor *fr = NULL;
        if (!(st = h->op_reshape(env, fi, 1, one_d, &fr)) && !(st = h->op_reduce(env, NNM_REDUCE_MIN, fr, dims0, 1, 0, &lo)) &&
            !(st = h->op_reduce(env, NNM_REDUCE_MAX, fr, dims0, 1, 0, &hi)) && !(st = h->tensor_read_f32(env, lo, &mn, 1)) &&
            !(st = h->tensor_read_f32(env, hi, &mx, 1)) && (mn < 0 || mx >= (float)xs[dim]))
            st = h->set_error(env, NNM_E_INVALID, "gather: index %lld is out of bounds for dimension %d with size %lld",
                              (long long)(mn < 0 ? mn : mx), (int)dim, (long long)xs[dim]);
        h->tensor_release(fr);
        h->tensor_release(lo);
        h->tensor_release(hi);
    }
    if (!st) st = h->op_cast(env, pos, i64, &pos64);
    if (!st) st = h->op_reshape(env, pos64, 1, one_d, &flatpos);
    if (!st) st = h->op_reshape(env, x, 1, one_d, &flat);
    if (!st) st = h->op_index_select(env, flat, 0, flatpos, &y);
    if (!st) st = h->op_reshape(env, y, di->ndim, di->shape, out);
    h->tensor_release(bt);
    h->tensor_release(fi);
    h->tensor_release(pos);
    h->tensor_release(pos64);
    h->tensor_release(flat);
    h->tensor_release(flatpos);
    h->tensor_release(y);
    return st;
}

/* x.to(dtype) / x.type_as(other) through the 1.5 host's op_cast. */
static nnm_status fwd_cast(nnm_env *env, const top_state *s, nnm_tensor *x, const nnm_tensor *other, nnm_tensor **out) {
    const nnm_host *h = env->host;
    if (!NNM_HOST_HAS(h, op_cast)) return h->set_error(env, NNM_E_UNSUPPORTED, "%s needs an ABI 1.5 host (op_cast)", s->op);
    return h->op_cast(env, x, other ? D(env, other)->dtype : s->dtype, out);
}

static nnm_status top_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in, nnm_tensor **out,
                              uint32_t n_out) {
    const nnm_host *h = env->host;
    const top_state *s = self;
    if (!s) return h->set_error(env, NNM_E_STATE, "tensor op: forward without state");
    nnm_status st;
    if (s->kind == K_CHUNK || s->kind == K_SPLIT || s->kind == K_UNBIND) {
        if (n_in != 1 || !in || !in[0]) return h->set_error(env, NNM_E_SHAPE, "%s takes 1 input, got %u", s->op, (unsigned)n_in);
        if (n_out < 1 || n_out > NNM_MAX_IO || !out)
            return h->set_error(env, NNM_E_SHAPE, "%s: 1 to %d outputs, %u asked", s->op, NNM_MAX_IO, (unsigned)n_out);
        for (uint32_t i = 0; i < n_out; i++) out[i] = NULL;
        return fwd_pieces(env, s, in[0], out, n_out);
    }
    uint32_t lo = 1, hi = 1;
    switch (s->kind) {
    case K_VIEW: case K_RESHAPE: case K_EXPAND: hi = NNM_MAX_IO; break;
    case K_EXPAND_AS: case K_INDEX_SELECT: case K_TYPE_AS: case K_GATHER: lo = hi = 2; break;
    case K_STACK: hi = NNM_MAX_IO; break;
    default: break;
    }
    if ((st = nnm_oc_check_io(env, s->op, in, n_in, lo, hi, out, n_out))) return st;
    switch (s->kind) {
    case K_VIEW:
    case K_RESHAPE: return fwd_view(env, s, in, n_in, out);
    case K_PERMUTE: return fwd_permute(env, s, in[0], out);
    case K_TRANSPOSE: return fwd_transpose(env, s, in[0], out);
    case K_CONTIGUOUS: return retain_out(env, in[0], out);
    case K_SQUEEZE: return fwd_squeeze(env, s, in[0], out);
    case K_UNSQUEEZE: return fwd_unsqueeze(env, s, in[0], out);
    case K_EXPAND:
    case K_EXPAND_AS: return fwd_expand(env, s, in, n_in, out);
    case K_REPEAT: return fwd_repeat(env, s, in[0], out);
    case K_GETITEM: return fwd_getitem(env, s, in[0], out);
    case K_NARROW: return fwd_narrow(env, s, in[0], out);
    case K_SELECT: return fwd_select(env, s, in[0], out);
    case K_STACK: return fwd_stack(env, s, in, n_in, out);
    case K_ROLL: return fwd_roll(env, s, in[0], out);
    case K_PAD: return fwd_pad(env, s, in[0], out);
    case K_INDEX_SELECT: return fwd_index_select(env, s, in[0], in[1], out);
    case K_FLIP: return fwd_flip(env, s, in[0], out);
    case K_TRIU:
    case K_TRIL: return fwd_tri(env, s, in[0], out);
    case K_TO: case K_FLOAT: case K_LONG: case K_INT: case K_BOOL: return fwd_cast(env, s, in[0], NULL, out);
    case K_TYPE_AS: return fwd_cast(env, s, in[0], in[1], out);
    case K_CUMSUM: return fwd_cumsum(env, s, in[0], out);
    case K_GATHER: return fwd_gather(env, s, in[0], in[1], out);
    case K_DETACH:
        if (!NNM_HOST_HAS(h, op_detach)) return h->set_error(env, NNM_E_UNSUPPORTED, "detach needs an ABI 1.5 host (op_detach)");
        return h->op_detach(env, in[0], out);
    default: return h->set_error(env, NNM_E_STATE, "tensor op: unknown kind %d", s->kind);
    }
}

/* ---- extra_repr (print(model)) ------------------------------------------ */

static int top_extra_repr(void *self, char *buf, size_t cap) {
    const top_state *s = self;
    char a[512], b[512];
    if (!s) return snprintf(buf, cap, "%s", "");
    switch (s->kind) {
    case K_VIEW:
    case K_RESHAPE: return snprintf(buf, cap, "shape=%s", nnm_oc_ints_str(s->sizes.size, s->sizes.n, a, sizeof a));
    case K_EXPAND: return snprintf(buf, cap, "size=%s", nnm_oc_ints_str(s->sizes.size, s->sizes.n, a, sizeof a));
    case K_PERMUTE: return snprintf(buf, cap, "dims=%s", nnm_oc_ints_str(s->ints, s->n_ints, a, sizeof a));
    case K_TRANSPOSE: return snprintf(buf, cap, "dim0=%lld, dim1=%lld", (long long)s->dim0, (long long)s->dim1);
    case K_SQUEEZE:
        if (!s->has_ints) return snprintf(buf, cap, "%s", "");
        return snprintf(buf, cap, "dim=%s", nnm_oc_ints_str(s->ints, s->n_ints, a, sizeof a));
    case K_UNSQUEEZE:
    case K_UNBIND:
    case K_INDEX_SELECT:
    case K_CUMSUM:
    case K_GATHER:
    case K_STACK: return snprintf(buf, cap, "dim=%lld", (long long)s->dim);
    case K_FLIP: return snprintf(buf, cap, "dims=%s", nnm_oc_ints_str(s->ints, s->n_ints, a, sizeof a));
    case K_TRIU:
    case K_TRIL: return snprintf(buf, cap, "diagonal=%lld", (long long)s->index);
    case K_TO: return snprintf(buf, cap, "dtype=torch.%s", s->dtype_name);
    case K_REPEAT: return snprintf(buf, cap, "repeats=%s", nnm_oc_ints_str(s->ints, s->n_ints, a, sizeof a));
    case K_CHUNK: return snprintf(buf, cap, "chunks=%lld, dim=%lld", (long long)s->chunks, (long long)s->dim);
    case K_SPLIT:
        if (s->split_is_int)
            return snprintf(buf, cap, "split_size_or_sections=%lld, dim=%lld", (long long)s->ints[0], (long long)s->dim);
        return snprintf(buf, cap, "split_size_or_sections=%s, dim=%lld", nnm_oc_ints_str(s->ints, s->n_ints, a, sizeof a),
                        (long long)s->dim);
    case K_NARROW:
        return snprintf(buf, cap, "dim=%lld, start=%lld, length=%lld", (long long)s->dim, (long long)s->start,
                        (long long)s->length);
    case K_SELECT: return snprintf(buf, cap, "dim=%lld, index=%lld", (long long)s->dim, (long long)s->index);
    case K_ROLL:
        if (!s->has_ints2) return snprintf(buf, cap, "shifts=%s", nnm_oc_ints_str(s->ints, s->n_ints, a, sizeof a));
        return snprintf(buf, cap, "shifts=%s, dims=%s", nnm_oc_ints_str(s->ints, s->n_ints, a, sizeof a),
                        nnm_oc_ints_str(s->ints2, s->n_ints2, b, sizeof b));
    case K_PAD: {
        char v[40];
        nnm_oc_ints_str(s->ints, s->n_ints, a, sizeof a);
        snprintf(v, sizeof v, "%g", s->value);
        return snprintf(buf, cap, "pad=%s, mode=constant, value=%s", a, v);
    }
    case K_GETITEM: {
        size_t at = 0;
        int k = snprintf(buf, cap, "index=[");
        at += k > 0 ? (size_t)k : 0;
        for (size_t i = 0; i < s->n_gi; i++) {
            const gi_elem *e = &s->gi[i];
            char t[96];
            if (e->kind == GI_NONE) snprintf(t, sizeof t, "None");
            else if (e->kind == GI_ELLIPSIS) snprintf(t, sizeof t, "...");
            else if (e->kind == GI_INT) snprintf(t, sizeof t, "%lld", (long long)e->index);
            else {
                char sa[32] = "", sb[32] = "", sc[32] = "";
                if (e->has_start) snprintf(sa, sizeof sa, "%lld", (long long)e->start);
                if (e->has_stop) snprintf(sb, sizeof sb, "%lld", (long long)e->stop);
                if (e->step != 1) snprintf(sc, sizeof sc, ":%lld", (long long)e->step);
                snprintf(t, sizeof t, "%s:%s%s", sa, sb, sc);
            }
            k = snprintf(buf + (at < cap ? at : cap), at < cap ? cap - at : 0, "%s%s", i ? ", " : "", t);
            at += k > 0 ? (size_t)k : 0;
        }
        k = snprintf(buf + (at < cap ? at : cap), at < cap ? cap - at : 0, "]");
        at += k > 0 ? (size_t)k : 0;
        return (int)at;
    }
    default: return snprintf(buf, cap, "%s", "");
    }
}

/* ---- schemas and vtables ------------------------------------------------ */

#define SIZES_FIELDS(key, doc)                                                                          \
    {key, NNM_CONFIG_INTS, NNM_CONFIG_REQUIRED, doc},                                                 \
    {"from_input", NNM_CONFIG_INTS, 0, "per size entry: the input whose shape gives it, or -1"},      \
    {"from_dim", NNM_CONFIG_INTS, 0, "per size entry: the dim of that input (negative from the end)"}

static const nnm_config_field view_config[] = {SIZES_FIELDS("shape", "the new shape; one entry may be -1")};
static const nnm_config_field expand_config[] = {SIZES_FIELDS("size", "the expanded shape; -1 keeps a dim")};
static const nnm_config_field permute_config[] = {{"dims", NNM_CONFIG_INTS, NNM_CONFIG_REQUIRED, "the order of the dims"}};
static const nnm_config_field transpose_config[] = {
    {"dim0", NNM_CONFIG_INT, NNM_CONFIG_REQUIRED, "first dim to swap"},
    {"dim1", NNM_CONFIG_INT, NNM_CONFIG_REQUIRED, "second dim to swap"},
};
static const nnm_config_field none_config[1] = {{NULL, 0, 0, NULL}};
static const nnm_config_field squeeze_config[] = {
    {"dim", NNM_CONFIG_INT_OR_INTS, 0, "dim(s) to drop when of size 1; absent: every size-1 dim"}};
static const nnm_config_field unsqueeze_config[] = {{"dim", NNM_CONFIG_INT, NNM_CONFIG_REQUIRED, "where the new dim goes"}};
static const nnm_config_field repeat_config[] = {{"repeats", NNM_CONFIG_INTS, NNM_CONFIG_REQUIRED, "copies per dim"}};
static const nnm_config_field chunk_config[] = {
    {"chunks", NNM_CONFIG_INT, NNM_CONFIG_REQUIRED, "number of chunks (> 0)"},
    {"dim", NNM_CONFIG_INT, 0, "dim to split, default 0"},
};
static const nnm_config_field split_config[] = {
    {"split_size_or_sections", NNM_CONFIG_INT_OR_INTS, NNM_CONFIG_REQUIRED, "piece size, or the sizes of the pieces"},
    {"dim", NNM_CONFIG_INT, 0, "dim to split, default 0"},
};
static const nnm_config_field dim0_config[] = {{"dim", NNM_CONFIG_INT, 0, "dim, default 0"}};
static const nnm_config_field getitem_config[] = {
    {"index", NNM_CONFIG_STRS, NNM_CONFIG_REQUIRED, "x[...] elements: \"3\", \"1:3\", \"::2\", \"None\", \"...\""}};
static const nnm_config_field narrow_config[] = {
    {"dim", NNM_CONFIG_INT, NNM_CONFIG_REQUIRED, "dim to narrow"},
    {"start", NNM_CONFIG_INT, NNM_CONFIG_REQUIRED, "first element (negative counts from the end)"},
    {"length", NNM_CONFIG_INT, NNM_CONFIG_REQUIRED, "number of elements"},
};
static const nnm_config_field select_config[] = {
    {"dim", NNM_CONFIG_INT, NNM_CONFIG_REQUIRED, "dim to index"},
    {"index", NNM_CONFIG_INT, NNM_CONFIG_REQUIRED, "the index (negative counts from the end)"},
};
static const nnm_config_field roll_config[] = {
    {"shifts", NNM_CONFIG_INT_OR_INTS, NNM_CONFIG_REQUIRED, "shift per dim"},
    {"dims", NNM_CONFIG_INT_OR_INTS, 0, "dims to roll; absent: the flattened tensor"},
};
static const nnm_config_field pad_config[] = {
    {"pad", NNM_CONFIG_INTS, NNM_CONFIG_REQUIRED, "(left, right) per dim, last dim first (negative crops)"},
    {"mode", NNM_CONFIG_STR, 0, "\"constant\" (the only one)"},
    {"value", NNM_CONFIG_ANY, 0, "fill value, default 0 (number, \"inf\", \"-inf\", \"nan\")"},
};

static const nnm_config_field index_select_config[] = {{"dim", NNM_CONFIG_INT, NNM_CONFIG_REQUIRED, "dim to index"}};
static const nnm_config_field cumsum_config[] = {{"dim", NNM_CONFIG_INT, NNM_CONFIG_REQUIRED, "dim to sum along"}};
static const nnm_config_field gather_config[] = {{"dim", NNM_CONFIG_INT, NNM_CONFIG_REQUIRED, "dim the index picks along"}};
static const nnm_config_field flip_config[] = {{"dims", NNM_CONFIG_INT_OR_INTS, NNM_CONFIG_REQUIRED, "dims to reverse"}};
static const nnm_config_field tri_config[] = {{"diagonal", NNM_CONFIG_INT, 0, "which diagonal, default 0 (> 0 above)"}};
static const nnm_config_field to_config[] = {
    {"dtype", NNM_CONFIG_STR, NNM_CONFIG_REQUIRED, "float32 (float), int64 (long), int32 (int), uint8, bool; \"torch.\" optional"}};

#define N_FIELDS(a) ((uint32_t)(sizeof(a) / sizeof((a)[0])))
#define LAYER(var, nm, create_fn, nin, nout, cfg, ncfg)                                                 \
    static const nnm_layer_vtable var = {                                                               \
        .struct_size = sizeof(nnm_layer_vtable),                                                        \
        .name = nm,                                                                                     \
        .version_major = 1,                                                                             \
        .version_minor = 0,                                                                             \
        .n_inputs = nin,                                                                                \
        .n_outputs = nout,                                                                              \
        .create = create_fn,                                                                            \
        .destroy = top_destroy,                                                                         \
        .forward = top_forward,                                                                         \
        .extra_repr = top_extra_repr,                                                                   \
        .config_fields = cfg,                                                                           \
        .n_config_fields = ncfg,                                                                        \
    }

LAYER(view_layer, "view", view_create, NNM_ARITY_ANY, 1, view_config, N_FIELDS(view_config));
LAYER(reshape_layer, "reshape", reshape_create, NNM_ARITY_ANY, 1, view_config, N_FIELDS(view_config));
LAYER(permute_layer, "permute", permute_create, 1, 1, permute_config, N_FIELDS(permute_config));
LAYER(transpose_layer, "transpose", transpose_create, 1, 1, transpose_config, N_FIELDS(transpose_config));
LAYER(contiguous_layer, "contiguous", contiguous_create, 1, 1, none_config, 0);
LAYER(squeeze_layer, "squeeze", squeeze_create, 1, 1, squeeze_config, N_FIELDS(squeeze_config));
LAYER(unsqueeze_layer, "unsqueeze", unsqueeze_create, 1, 1, unsqueeze_config, N_FIELDS(unsqueeze_config));
LAYER(expand_layer, "expand", expand_create, NNM_ARITY_ANY, 1, expand_config, N_FIELDS(expand_config));
LAYER(expand_as_layer, "expand_as", expand_as_create, 2, 1, none_config, 0);
LAYER(repeat_layer, "repeat", repeat_create, 1, 1, repeat_config, N_FIELDS(repeat_config));
LAYER(chunk_layer, "chunk", chunk_create, 1, NNM_ARITY_ANY, chunk_config, N_FIELDS(chunk_config));
LAYER(split_layer, "split", split_create, 1, NNM_ARITY_ANY, split_config, N_FIELDS(split_config));
LAYER(unbind_layer, "unbind", unbind_create, 1, NNM_ARITY_ANY, dim0_config, N_FIELDS(dim0_config));
LAYER(getitem_layer, "getitem", getitem_create, 1, 1, getitem_config, N_FIELDS(getitem_config));
LAYER(narrow_layer, "narrow", narrow_create, 1, 1, narrow_config, N_FIELDS(narrow_config));
LAYER(select_layer, "select", select_create, 1, 1, select_config, N_FIELDS(select_config));
LAYER(stack_layer, "stack", stack_create, NNM_ARITY_ANY, 1, dim0_config, N_FIELDS(dim0_config));
LAYER(roll_layer, "roll", roll_create, 1, 1, roll_config, N_FIELDS(roll_config));
LAYER(pad_layer, "pad", pad_create, 1, 1, pad_config, N_FIELDS(pad_config));
LAYER(index_select_layer, "index_select", index_select_create, 2, 1, index_select_config, N_FIELDS(index_select_config));
LAYER(flip_layer, "flip", flip_create, 1, 1, flip_config, N_FIELDS(flip_config));
LAYER(triu_layer, "triu", triu_create, 1, 1, tri_config, N_FIELDS(tri_config));
LAYER(tril_layer, "tril", tril_create, 1, 1, tri_config, N_FIELDS(tri_config));
LAYER(to_layer, "to", to_create, 1, 1, to_config, N_FIELDS(to_config));
LAYER(float_layer, "float", float_create, 1, 1, none_config, 0);
LAYER(long_layer, "long", long_create, 1, 1, none_config, 0);
LAYER(int_layer, "int", int_create, 1, 1, none_config, 0);
LAYER(bool_layer, "bool", bool_create, 1, 1, none_config, 0);
LAYER(type_as_layer, "type_as", type_as_create, 2, 1, none_config, 0);
LAYER(detach_layer, "detach", detach_create, 1, 1, none_config, 0);
LAYER(cumsum_layer, "cumsum", cumsum_create, 1, 1, cumsum_config, N_FIELDS(cumsum_config));
LAYER(gather_layer, "gather", gather_create, 2, 1, gather_config, N_FIELDS(gather_config));

static const nnm_layer_vtable *const top_layers[] = {
    &view_layer,   &reshape_layer, &permute_layer, &transpose_layer, &contiguous_layer, &squeeze_layer,
    &unsqueeze_layer, &expand_layer, &expand_as_layer, &repeat_layer, &chunk_layer,    &split_layer,
    &unbind_layer, &getitem_layer, &narrow_layer,  &select_layer,    &stack_layer,      &roll_layer,
    &pad_layer,    &index_select_layer, &flip_layer, &triu_layer, &tril_layer,
    &to_layer,     &float_layer,   &long_layer,    &int_layer,       &bool_layer,       &type_as_layer,
    &detach_layer, &cumsum_layer, &gather_layer,
};

static const nnm_plugin_desc top_plugin = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
    .name = "tensor_ops",
    .description = "PyTorch's shape and indexing functions (view, permute, getitem, ...) as stateless layers",
    .n_layers = (uint32_t)(sizeof top_layers / sizeof top_layers[0]),
    .layers = top_layers,
    .domain = NNM_DOMAIN_NNMOD, /* nnmod's own library: the plain names */
};

NNM_PLUGIN_DEFINE(top_plugin)
