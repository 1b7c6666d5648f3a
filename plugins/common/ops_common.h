/* plugins/common/ops_common.h - what the functional-op plugins (tensor_ops,
 * math_ops) share: PyTorch's dim wrapping with PyTorch's message, shapes in
 * messages, "int or ints" config values, and the dynamic sizes convention
 * (`from_input` / `from_dim`, docs/layers.md "Functional ops").
 *
 * Private to this repository's plugins (not part of the ABI). Header-only;
 * built only against abi/nnmod/plugin.h and the C library. Every message
 * starts with the op's name ("view: ...") and names the config key or input
 * it is about.
 */
#ifndef NNM_PLUGINS_OPS_COMMON_H
#define NNM_PLUGINS_OPS_COMMON_H

#include <nnmod/plugin.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Most entries of a list config (sizes, dims, sections) the ops keep. */
#define NNM_OC_MAX_LIST 64

/* "[2, 3]" of n sizes into buf (cap bytes); returns buf. */
static inline const char *nnm_oc_ints_str(const int64_t *v, size_t n, char *buf, size_t cap) {
    size_t at = 0;
    int k = snprintf(buf, cap, "[");
    at = k > 0 ? (size_t)k : 0;
    for (size_t i = 0; i < n && at < cap; i++) {
        k = snprintf(buf + at, cap - at, "%s%lld", i ? ", " : "", (long long)v[i]);
        at += k > 0 ? (size_t)k : 0;
    }
    if (at < cap) snprintf(buf + at, cap - at, "]");
    return buf;
}

/* The shape of tensor t as "[2, 3]". */
static inline const char *nnm_oc_shape_str(const nnm_host *h, const nnm_tensor *t, char *buf,
                                           size_t cap) {
    const nnm_tensor_desc *d = h->tensor_desc(t);
    return nnm_oc_ints_str(d->shape, (size_t)d->ndim, buf, cap);
}

/* PyTorch's maybe_wrap_dim: dim in [-n, n) (n = max(ndim, 1) for scalars, as
 * PyTorch) becomes 0..n-1 in *out. `what` names the config key. */
static inline nnm_status nnm_oc_wrap_dim(nnm_env *env, const char *op, const char *what, int64_t dim,
                                         int32_t ndim, int32_t *out) {
    const int64_t n = ndim > 0 ? ndim : 1;
    *out = 0;
    if (dim < -n || dim >= n)
        return env->host->set_error(env, NNM_E_SHAPE,
                                    "%s: %s: Dimension out of range (expected to be in range of "
                                    "[%lld, %lld], but got %lld)",
                                    op, what, (long long)-n, (long long)(n - 1), (long long)dim);
    *out = (int32_t)(dim < 0 ? dim + n : dim);
    return NNM_OK;
}

/* A config value that is an integer or a list of integers ("dim": 1 or
 * [1, 2]): *n = 0 and *present = 0 when the key is absent. */
static inline nnm_status nnm_oc_config_int_or_ints(nnm_env *env, const char *op, const char *key,
                                                   int64_t *buf, size_t cap, size_t *n,
                                                   int *present) {
    const nnm_host *h = env->host;
    int32_t type = -1;
    *n = 0;
    *present = 0;
    nnm_status st = h->config_type(env, key, &type);
    if (st == NNM_E_NOT_FOUND) return NNM_OK;
    if (st) return st;
    *present = 1;
    if (type == NNM_CONFIG_INT) {
        *n = 1;
        return h->config_int(env, key, NULL, buf);
    }
    if (type == NNM_CONFIG_INTS || type == NNM_CONFIG_FLOATS || type == NNM_CONFIG_STRS) {
        st = h->config_ints(env, key, buf, cap, n); /* an empty list of any type is fine */
        if (st == NNM_E_LIMIT)
            return h->set_error(env, NNM_E_LIMIT, "%s: %s: at most %zu entries", op, key, cap);
        return st;
    }
    return h->set_error(env, NNM_E_TYPE, "%s: %s must be an integer or a list of integers", op, key);
}

/* A list of ints config (`key`), absent -> *n = 0. */
static inline nnm_status nnm_oc_config_ints_opt(nnm_env *env, const char *op, const char *key,
                                                int64_t *buf, size_t cap, size_t *n, int *present) {
    const nnm_host *h = env->host;
    int32_t type = -1;
    *n = 0;
    *present = 0;
    nnm_status st = h->config_type(env, key, &type);
    if (st == NNM_E_NOT_FOUND) return NNM_OK;
    if (st) return st;
    *present = 1;
    st = h->config_ints(env, key, buf, cap, n);
    if (st == NNM_E_LIMIT)
        return h->set_error(env, NNM_E_LIMIT, "%s: %s: at most %zu entries", op, key, cap);
    return st;
}

/* A float config that may also be written as a string, "inf", "-inf" or
 * "nan" (also "Infinity", "-Infinity", "NaN"), since JSON has no literal for
 * them (masked_fill(mask, float("-inf")) is common). The schema declares such
 * a key NNM_CONFIG_ANY. Absent: *out = *dflt, or *present = 0 when dflt is
 * NULL (present may be NULL when dflt is not). */
static inline nnm_status nnm_oc_config_float_ex(nnm_env *env, const char *op, const char *key,
                                                const double *dflt, double *out, int *present) {
    const nnm_host *h = env->host;
    int32_t type = -1;
    if (present) *present = 0;
    nnm_status st = h->config_type(env, key, &type);
    if (st == NNM_E_NOT_FOUND) {
        if (dflt) *out = *dflt;
        return NNM_OK;
    }
    if (st) return st;
    if (present) *present = 1;
    if (type == NNM_CONFIG_INT || type == NNM_CONFIG_FLOAT) return h->config_float(env, key, NULL, out);
    if (type == NNM_CONFIG_STR) {
        const char *v = NULL;
        if ((st = h->config_str(env, key, NULL, &v))) return st;
        if (!strcmp(v, "inf") || !strcmp(v, "Infinity") || !strcmp(v, "+inf")) *out = 1.0 / 0.0;
        else if (!strcmp(v, "-inf") || !strcmp(v, "-Infinity")) *out = -1.0 / 0.0;
        else if (!strcmp(v, "nan") || !strcmp(v, "NaN")) *out = 0.0 / 0.0;
        else
            return h->set_error(env, NNM_E_TYPE,
                                "%s: %s: expected a number or \"inf\", \"-inf\", \"nan\", got \"%s\"", op,
                                key, v);
        return NNM_OK;
    }
    return h->set_error(env, NNM_E_TYPE, "%s: %s: expected a number or \"inf\", \"-inf\", \"nan\"", op, key);
}

/* ---- dynamic sizes ---------------------------------------------------- */

/* A size list whose entries may come from the shapes of the op's inputs:
 * entry i is inputs[from_input[i]].shape[from_dim[i]] when from_input[i] >= 0
 * (from_dim negative counts from the end of that input's dims), else
 * size[i]. */
typedef struct nnm_oc_sizes {
    int64_t size[NNM_MAX_DIMS];
    int64_t from_input[NNM_MAX_DIMS];
    int64_t from_dim[NNM_MAX_DIMS];
    size_t n;
    int dynamic; /* from_input given */
} nnm_oc_sizes;

/* Reads `key` (required list of ints, at most NNM_MAX_DIMS entries) and the
 * optional from_input / from_dim lists, which must both be given or both be
 * absent, with key's length. */
static inline nnm_status nnm_oc_sizes_config(nnm_env *env, const char *op, const char *key,
                                             nnm_oc_sizes *s) {
    const nnm_host *h = env->host;
    memset(s, 0, sizeof *s);
    nnm_status st = h->config_ints(env, key, s->size, NNM_MAX_DIMS, &s->n);
    if (st == NNM_E_LIMIT)
        return h->set_error(env, NNM_E_LIMIT, "%s: %s: at most %d sizes", op, key, NNM_MAX_DIMS);
    if (st) return st;
    size_t ni = 0, nd = 0;
    int pi = 0, pd = 0;
    if ((st = nnm_oc_config_ints_opt(env, op, "from_input", s->from_input, NNM_MAX_DIMS, &ni, &pi)) ||
        (st = nnm_oc_config_ints_opt(env, op, "from_dim", s->from_dim, NNM_MAX_DIMS, &nd, &pd)))
        return st;
    if (pi != pd)
        return h->set_error(env, NNM_E_INVALID, "%s: from_input and from_dim go together (%s is missing)",
                            op, pi ? "from_dim" : "from_input");
    if (pi && (ni != s->n || nd != s->n))
        return h->set_error(env, NNM_E_SHAPE,
                            "%s: from_input (%zu entries) and from_dim (%zu entries) must have as many "
                            "entries as %s (%zu)",
                            op, ni, nd, key, s->n);
    for (size_t i = 0; i < ni; i++)
        if (s->from_input[i] < -1 || s->from_input[i] >= NNM_MAX_IO)
            return h->set_error(env, NNM_E_INVALID,
                                "%s: from_input[%zu] = %lld is neither -1 nor an input index (0..%d)", op,
                                i, (long long)s->from_input[i], NNM_MAX_IO - 1);
    s->dynamic = pi;
    if (!pi)
        for (size_t i = 0; i < s->n; i++) s->from_input[i] = -1;
    return NNM_OK;
}

/* The sizes for this call into out[0..s->n). */
static inline nnm_status nnm_oc_sizes_resolve(nnm_env *env, const char *op, const nnm_oc_sizes *s,
                                              nnm_tensor *const *in, uint32_t n_in, int64_t *out) {
    const nnm_host *h = env->host;
    for (size_t i = 0; i < s->n; i++) {
        out[i] = s->size[i];
        if (s->from_input[i] < 0) continue;
        if ((uint32_t)s->from_input[i] >= n_in)
            return h->set_error(env, NNM_E_SHAPE, "%s: from_input[%zu] = %lld, but the op got %u inputs",
                                op, i, (long long)s->from_input[i], (unsigned)n_in);
        const nnm_tensor_desc *d = h->tensor_desc(in[s->from_input[i]]);
        int64_t fd = s->from_dim[i] < 0 ? s->from_dim[i] + d->ndim : s->from_dim[i];
        if (fd < 0 || fd >= d->ndim)
            return h->set_error(env, NNM_E_SHAPE,
                                "%s: from_dim[%zu] = %lld is out of range for input %lld of %d dims", op,
                                i, (long long)s->from_dim[i], (long long)s->from_input[i], (int)d->ndim);
        out[i] = d->shape[fd];
    }
    return NNM_OK;
}

/* Checks the call's arity: n_in in [min_in, max_in], n_out == 1, no NULL
 * input. */
static inline nnm_status nnm_oc_check_io(nnm_env *env, const char *op, nnm_tensor *const *in,
                                         uint32_t n_in, uint32_t min_in, uint32_t max_in,
                                         nnm_tensor **out, uint32_t n_out) {
    const nnm_host *h = env->host;
    if (n_in < min_in || n_in > max_in) {
        if (min_in == max_in)
            return h->set_error(env, NNM_E_SHAPE, "%s takes %u input%s, got %u", op, (unsigned)min_in,
                                min_in == 1 ? "" : "s", (unsigned)n_in);
        return h->set_error(env, NNM_E_SHAPE, "%s takes %u to %u inputs, got %u", op, (unsigned)min_in,
                            (unsigned)max_in, (unsigned)n_in);
    }
    if (n_out != 1 || out == NULL)
        return h->set_error(env, NNM_E_SHAPE, "%s returns 1 output, %u asked", op, (unsigned)n_out);
    out[0] = NULL;
    for (uint32_t i = 0; i < n_in; i++)
        if (in[i] == NULL) return h->set_error(env, NNM_E_INVALID, "%s: input %u is NULL", op, (unsigned)i);
    return NNM_OK;
}

/* x reshaped (a view when x is contiguous). */
static inline nnm_status nnm_oc_reshape(nnm_env *env, nnm_tensor *x, int32_t ndim, const int64_t *shape,
                                        nnm_tensor **out) {
    return env->host->op_reshape(env, x, ndim, shape, out);
}

/* Replaces *t (owned) by r (owned) - for chains of ops. */
static inline void nnm_oc_swap(const nnm_host *h, nnm_tensor **t, nnm_tensor *r) {
    h->tensor_release(*t);
    *t = r;
}

/* Appends Python's list repr of v (n entries) to buf at *at (cap). */
static inline void nnm_oc_repr_ints(char *buf, size_t cap, size_t *at, const int64_t *v, size_t n) {
    char tmp[512];
    nnm_oc_ints_str(v, n, tmp, sizeof tmp);
    int k = snprintf(buf + (*at < cap ? *at : cap), *at < cap ? cap - *at : 0, "%s", tmp);
    *at += k > 0 ? (size_t)k : 0;
}

#endif /* NNM_PLUGINS_OPS_COMMON_H */
