/* future_plugin.c - version negotiation from the plugin's side, as docs/abi.md
 * sections 1 and 3 describe it (tests/install/stranger). One source, three
 * plugins:
 *   -DFUTURE_MODE=1  stranger_future: built "for ABI 1.(N+1)": its descriptor
 *                    and vtable are larger than this runtime's (a slot of a
 *                    minor the runtime does not know); it must load and run.
 *   -DFUTURE_MODE=2  stranger_picky: needs a runtime of ABI 1.(N+1) and says so
 *                    by refusing this one in its entry point.
 *   -DFUTURE_MODE=3  stranger_major2: declares ABI 2.0; refused by name.
 */
#include <stddef.h>

#include "nnmod/plugin.h"

#ifndef FUTURE_MODE
#define FUTURE_MODE 1
#endif

static nnm_status neg_create(nnm_env *env, void **self) {
    (void)env;
    *self = NULL;
    return NNM_OK;
}

static nnm_status neg_forward(nnm_env *env, void *self, nnm_tensor *const *in, uint32_t n_in,
                              nnm_tensor **out, uint32_t n_out) {
    (void)self, (void)n_in, (void)n_out;
    return env->host->op_unary(env, NNM_UNARY_NEG, in[0], 0.0, &out[0]);
}

/* a vtable and a descriptor as a later minor would have them: the current
 * struct, then a slot this runtime has never heard of */
typedef struct future_layer_vtable {
    nnm_layer_vtable v;
    void (*slot_of_a_later_minor)(void);
} future_layer_vtable;

typedef struct future_plugin_desc {
    nnm_plugin_desc d;
    const char *field_of_a_later_minor;
} future_plugin_desc;

static void later_slot(void) {}

static const future_layer_vtable neg_layer = {
    .v = {
        .struct_size = sizeof(future_layer_vtable),
        .name = "neg",
        .version_major = 1, .version_minor = 0, .version_patch = 0,
        .n_inputs = 1,
        .n_outputs = 1,
        .create = neg_create,
        .forward = neg_forward,
        .config_fields = NULL,
    },
    .slot_of_a_later_minor = later_slot,
};

static const nnm_layer_vtable *const layers[] = {&neg_layer.v};

#if FUTURE_MODE == 1
#define PLUGIN_NAME "stranger_future"
#define PLUGIN_MAJOR NNM_ABI_MAJOR
#elif FUTURE_MODE == 2
#define PLUGIN_NAME "stranger_picky"
#define PLUGIN_MAJOR NNM_ABI_MAJOR
#else
#define PLUGIN_NAME "stranger_major2"
#define PLUGIN_MAJOR (NNM_ABI_MAJOR + 1)
#endif

static const future_plugin_desc desc = {
    .d = {
        .struct_size = sizeof(future_plugin_desc),
        .abi_major = PLUGIN_MAJOR,
        .abi_minor = FUTURE_MODE == 3 ? 0 : NNM_ABI_MINOR + 1,
        .name = PLUGIN_NAME,
        .description = "a plugin of a later ABI minor (or major)",
        .n_layers = 1,
        .layers = layers,
        .domain = "stranger",
    },
    .field_of_a_later_minor = "ignored by this runtime",
};

#if FUTURE_MODE == 2
/* The entry point written by hand instead of NNM_PLUGIN_DEFINE: this plugin
 * needs a slot of ABI 1.(N+1), so it refuses an older runtime. */
NNM_PLUGIN_EXPORT const nnm_plugin_desc *nnm_plugin_entry(uint16_t host_abi_major,
                                                          uint16_t host_abi_minor);
NNM_PLUGIN_EXPORT const nnm_plugin_desc *nnm_plugin_entry(uint16_t host_abi_major,
                                                          uint16_t host_abi_minor) {
    if (host_abi_major != NNM_ABI_MAJOR || host_abi_minor < NNM_ABI_MINOR + 1)
        return NULL;
    return &desc.d;
}
#else
NNM_PLUGIN_DEFINE(desc.d)
#endif
