/* plugins/common/strided_layout.h - the broadcasting layout the compute
 * backends (cpu, cuda) build before an elementwise kernel.
 *
 * Up to NNM_LAYOUT_MAX_OPS operands (operand 0 is the output) are iterated
 * together over one shape: an operand whose size in a dim is 1 while the
 * shape's is not is read with stride 0 there (broadcast), size-1 dims are
 * dropped, and dims contiguous in every operand are merged, so the last dim
 * (ndim-1) is the longest possible inner loop. ndim 0 after merging means one
 * element. Strides are in elements.
 *
 * Private to this repository's plugins (not part of the ABI). Header-only,
 * plain C that C++ (nvcc) also compiles.
 */
#ifndef NNM_PLUGINS_STRIDED_LAYOUT_H
#define NNM_PLUGINS_STRIDED_LAYOUT_H

#include <nnmod/plugin.h>

#include <stddef.h>
#include <stdint.h>

/* Most operands one elementwise kernel reads or writes (out, a, b). */
#define NNM_LAYOUT_MAX_OPS 4

typedef struct nnm_strided_layout {
    int32_t ndim;
    int32_t nops;
    int64_t shape[NNM_MAX_DIMS];
    int64_t strides[NNM_LAYOUT_MAX_OPS][NNM_MAX_DIMS];
} nnm_strided_layout;

/* set_error through the host, tolerating a missing env (returns the code). */
#define NNM_LAYOUT_ERR(env, code, ...)                                                   \
    (((env) != NULL && (env)->host != NULL && (env)->host->set_error != NULL)            \
         ? (env)->host->set_error((env), (code), __VA_ARGS__)                            \
         : (code))

/* Builds L for `shape` (ndim dims) from the nops descriptors ds (named
 * names[k] in messages, which read "<backend> <op>: ..."). Every ds[k] must
 * have ndim dims, each of the shape's size or 1; otherwise NNM_E_SHAPE with a
 * message set through env's host (env may be NULL). */
static inline nnm_status nnm_strided_layout_init(nnm_env *env, const char *backend,
                                                 const char *op, nnm_strided_layout *L,
                                                 int32_t ndim, const int64_t *shape, int32_t nops,
                                                 const nnm_tensor_desc *const *ds,
                                                 const char *const *names) {
    L->ndim = 0;
    L->nops = nops;
    for (int32_t k = 0; k < nops; k++) {
        if (ds[k]->ndim != ndim)
            return NNM_LAYOUT_ERR(env, NNM_E_SHAPE, "%s %s: %s tensor has %d dims, output has %d",
                                  backend, op, names[k], (int)ds[k]->ndim, (int)ndim);
        for (int32_t i = 0; i < ndim; i++)
            if (ds[k]->shape[i] != shape[i] && ds[k]->shape[i] != 1)
                return NNM_LAYOUT_ERR(
                    env, NNM_E_SHAPE, "%s %s: %s tensor has size %lld in dim %d, output has %lld",
                    backend, op, names[k], (long long)ds[k]->shape[i], (int)i, (long long)shape[i]);
    }
    for (int32_t i = 0; i < ndim; i++) {
        if (shape[i] == 1)
            continue; /* a size-1 dim never moves any index */
        int32_t j = L->ndim;
        int64_t st[NNM_LAYOUT_MAX_OPS];
        for (int32_t k = 0; k < nops; k++)
            st[k] = ds[k]->shape[i] == 1 ? 0 : ds[k]->strides[i];
        /* merge into the previous kept dim when every operand is contiguous across both */
        if (j > 0) {
            int mergeable = 1;
            for (int32_t k = 0; k < nops; k++)
                if (L->strides[k][j - 1] != st[k] * shape[i])
                    mergeable = 0;
            if (mergeable) {
                L->shape[j - 1] *= shape[i];
                for (int32_t k = 0; k < nops; k++)
                    L->strides[k][j - 1] = st[k];
                continue;
            }
        }
        L->shape[j] = shape[i];
        for (int32_t k = 0; k < nops; k++)
            L->strides[k][j] = st[k];
        L->ndim = j + 1;
    }
    return NNM_OK;
}

#endif
