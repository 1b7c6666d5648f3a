/* tests/names/names_fixture.c - third-party plugins that provide layers
 * nnmod's own library also has (issue 20). One source, several files; each
 * layer scales its input by a factor of its own, so a test tells the
 * providers apart by one forward:
 *
 *   FX_OLD     built against the frozen ABI 1.2 headers (an out-of-tree plugin
 *              written for nnmod 0.2, before domains): plugin "acme_old", no
 *              domain, gelu 1.0.0 (x3) and layer_norm 1.0.0 (x3);
 *   FX_OLD2    the same kind, another vendor: plugin "other_old", gelu 1.0.0
 *              (x11) and old_only 1.0.0 (x13), a name nobody else has;
 *   FX_NEW     built against the current headers with domain "acme": gelu
 *              1.0.0 (x5) and 2.0.0 (x7), layer_norm 1.0.0 (x5);
 *   FX_COPY    FX_NEW again in another file (the same plugin installed
 *              twice: every acme name is provided by two files);
 *   FX_BADDOM  a domain that breaks the syntax ("Acme"): refused at load.
 */
#include <nnmod/plugin.h>

#include <stddef.h>

#define SCALE_LAYER(fn, factor)                                                          \
    static nnm_status fn(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in,  \
                         nnm_tensor **out, uint32_t n_out) {                             \
        (void)self, (void)n_in, (void)n_out;                                             \
        return env->host->op_unary(env, NNM_UNARY_SCALE, in[0], (factor), &out[0]);     \
    }

static nnm_status fx_create(nnm_env *env, void **self) {
    (void)env;
    *self = NULL;
    return NNM_OK;
}

/* Positional initialisers: the frozen 1.2 header has no designated-field
 * differences that matter, and this keeps one text for both header sets. */
#define LAYER(var, name, maj, fwd)                                                       \
    static const nnm_layer_vtable var = {sizeof(nnm_layer_vtable), 0, name, maj, 0, 0, 1, 1, \
                                         fx_create, NULL, fwd, NULL}

#if defined(FX_OLD)
SCALE_LAYER(old_gelu_fwd, 3.0)
SCALE_LAYER(old_ln_fwd, 3.0)
LAYER(l_gelu, "gelu", 1, old_gelu_fwd);
LAYER(l_ln, "layer_norm", 1, old_ln_fwd);
static const nnm_layer_vtable *const layers[] = {&l_gelu, &l_ln};
static const nnm_plugin_desc desc = {sizeof(nnm_plugin_desc), NNM_ABI_MAJOR, NNM_ABI_MINOR,
                                     "acme_old", "written for nnmod 0.2 (ABI 1.2)", 2, 0,
                                     layers, NULL};
#elif defined(FX_OLD2)
SCALE_LAYER(o2_gelu_fwd, 11.0)
SCALE_LAYER(o2_only_fwd, 13.0)
LAYER(l_gelu, "gelu", 1, o2_gelu_fwd);
LAYER(l_only, "old_only", 1, o2_only_fwd);
static const nnm_layer_vtable *const layers[] = {&l_gelu, &l_only};
static const nnm_plugin_desc desc = {sizeof(nnm_plugin_desc), NNM_ABI_MAJOR, NNM_ABI_MINOR,
                                     "other_old", "another vendor, no domain", 2, 0,
                                     layers, NULL};
#elif defined(FX_NEW) || defined(FX_COPY) || defined(FX_BADDOM)
SCALE_LAYER(new_gelu1_fwd, 5.0)
SCALE_LAYER(new_gelu2_fwd, 7.0)
SCALE_LAYER(new_ln_fwd, 5.0)
LAYER(l_gelu1, "gelu", 1, new_gelu1_fwd);
LAYER(l_gelu2, "gelu", 2, new_gelu2_fwd);
LAYER(l_ln, "layer_norm", 1, new_ln_fwd);
static const nnm_layer_vtable *const layers[] = {&l_gelu1, &l_gelu2, &l_ln};
static const nnm_plugin_desc desc = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
    .name = "acme_layers",
    .description = "qualified: domain acme",
    .n_layers = 3,
    .layers = layers,
#if defined(FX_BADDOM)
    .domain = "Acme",
#else
    .domain = "acme",
#endif
};
#else
#error "define one FX_* kind"
#endif

NNM_PLUGIN_DEFINE(desc)
