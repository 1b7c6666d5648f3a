/* plugins/common/fold_inputs.h - the forward of the n-ary elementwise layers
 * ("add", "mul"): out = ((in[0] op in[1]) op in[2]) op ..., with NumPy
 * broadcasting, from host ops only (so autograd and every device come from
 * the runtime). One input returns that tensor itself (one more reference), as
 * identity does. Header-only, so each plugin stays one .so built against
 * plugin.h alone.
 */
#ifndef NNM_PLUGINS_FOLD_INPUTS_H
#define NNM_PLUGINS_FOLD_INPUTS_H

#include <nnmod/plugin.h>

/* `layer` names the layer in messages; op is an enum nnm_binary_op. */
static inline nnm_status nnm_fold_inputs(nnm_env *env, const char *layer, int32_t op,
                                         nnm_tensor *const *in, uint32_t n_in, nnm_tensor **out,
                                         uint32_t n_out) {
    const nnm_host *h = env->host;
    if (n_in < 1 || n_out != 1 || in == NULL || out == NULL)
        return h->set_error(env, NNM_E_SHAPE,
                            "%s takes at least 1 input and returns 1 output, got %u and %u", layer,
                            (unsigned)n_in, (unsigned)n_out);
    out[0] = NULL;
    for (uint32_t i = 0; i < n_in; i++)
        if (in[i] == NULL)
            return h->set_error(env, NNM_E_INVALID, "%s: input %u is NULL", layer, (unsigned)i);
    nnm_tensor *acc = in[0]; /* borrowed while it is in[0] */
    if (n_in == 1) {
        h->tensor_retain(acc);
        out[0] = acc;
        return NNM_OK;
    }
    for (uint32_t i = 1; i < n_in; i++) {
        nnm_tensor *next = NULL;
        nnm_status st = h->op_binary(env, op, acc, in[i], &next);
        if (i > 1)
            h->tensor_release(acc); /* a partial result of the previous step */
        if (st != NNM_OK) {
            h->tensor_release(next); /* NULL on failure by contract; be safe */
            return st;               /* the op has set the message */
        }
        acc = next;
    }
    out[0] = acc;
    return NNM_OK;
}

#endif /* NNM_PLUGINS_FOLD_INPUTS_H */
