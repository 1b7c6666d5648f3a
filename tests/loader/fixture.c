/* tests/loader/fixture.c - good and deliberately broken plugins for the loader
 * suite. Built once per FX_* kind (see CMakeLists.txt); includes only abi/.
 *
 * Every layer's forward reports "<name> <version> forward" through
 * host->set_error, so the suite can tell which vtable it reached. */
#include <stdio.h>

#include "nnmod/plugin.h"

/* Each kind uses only some of the helpers below. */
#define FX_UNUSED __attribute__((unused))

FX_UNUSED static int fx_state;

FX_UNUSED static nnm_status fx_create(nnm_env *env, void **self) {
    (void)env;
    *self = &fx_state;
    return NNM_OK;
}

FX_UNUSED static void fx_destroy(void *self) { (void)self; }

FX_UNUSED static int fx_extra_repr(void *self, char *buf, size_t cap) {
    (void)self;
    return snprintf(buf, cap, "fixture");
}

#define FX_LAYER_FN(id, nm, a, b, c)                                                    \
    static nnm_status id##_forward(nnm_env *env, void *self, nnm_tensor *const *in,      \
                                   uint32_t n_in, nnm_tensor **out, uint32_t n_out) {    \
        (void)self; (void)in; (void)n_in; (void)out; (void)n_out;                        \
        return env->host->set_error(env, NNM_E_UNSUPPORTED, "%s %d.%d.%d forward", nm,  \
                                    a, b, c);                                            \
    }

/* A complete ABI 1.0 layer vtable. */
#define FX_LAYER(id, nm, a, b, c)                                                       \
    FX_LAYER_FN(id, nm, a, b, c)                                                         \
    static const nnm_layer_vtable id = {sizeof(nnm_layer_vtable), 0, nm, a, b, c, 1, 1, \
                                        fx_create, fx_destroy, id##_forward,             \
                                        fx_extra_repr};

FX_UNUSED static nnm_status fx_init(nnm_env *env, void **state) {
    (void)env;
    *state = &fx_state;
    return NNM_OK;
}
FX_UNUSED static void fx_shutdown(void *state) { (void)state; }
FX_UNUSED static nnm_status fx_alloc(nnm_env *env, void *state, int32_t dev, size_t bytes, void **ptr) {
    (void)env; (void)state; (void)dev; (void)bytes;
    *ptr = NULL;
    return NNM_E_UNSUPPORTED;
}
FX_UNUSED static void fx_free(void *state, int32_t dev, void *ptr) { (void)state; (void)dev; (void)ptr; }
FX_UNUSED static nnm_status fx_memcpy(nnm_env *env, void *state, void *dst, nnm_device dd, const void *src,
                            nnm_device sd, size_t bytes) {
    (void)env; (void)state; (void)dst; (void)dd; (void)src; (void)sd; (void)bytes;
    return NNM_E_UNSUPPORTED;
}

#define FX_BACKEND(id, nm, a, b, c, dev)                                                 \
    static const nnm_backend_vtable id = {sizeof(nnm_backend_vtable), 0, nm, a, b, c, dev, \
                                          fx_init, fx_shutdown, fx_alloc, fx_free,        \
                                          fx_memcpy, NULL, NULL, NULL, NULL};

#define FX_DESC(nm, layers, n_layers, backends, n_backends)                              \
    static const nnm_plugin_desc fx_desc = {sizeof(nnm_plugin_desc), NNM_ABI_MAJOR,     \
                                            NNM_ABI_MINOR, nm, "loader test fixture",   \
                                            n_layers, n_backends, layers, backends};

/* ------------------------------------------------------------------------ */
#if defined(FX_GOOD_A)
FX_LAYER(vl_100, "vlayer", 1, 0, 0)
FX_LAYER(vl_120, "vlayer", 1, 2, 0)
FX_BACKEND(be_cpu, "fxcpu", 1, 0, 0, NNM_DEVICE_CPU)
static const nnm_layer_vtable *const fx_layers[] = {&vl_100, &vl_120};
static const nnm_backend_vtable *const fx_backends[] = {&be_cpu};
FX_DESC("good_a", fx_layers, 2, fx_backends, 1)
NNM_PLUGIN_DEFINE(fx_desc)

#elif defined(FX_GOOD_B)
FX_LAYER(vl_135, "vlayer", 1, 3, 5)
FX_LAYER(vl_200, "vlayer", 2, 0, 0)
FX_LAYER(zl_003, "zlayer", 0, 0, 3)
FX_LAYER(zl_004, "zlayer", 0, 0, 4)
FX_LAYER(zl_020, "zlayer", 0, 2, 0)
FX_LAYER(zl_025, "zlayer", 0, 2, 5)
FX_LAYER(zl_030, "zlayer", 0, 3, 0)
FX_BACKEND(be_cpu, "fxcpu", 1, 5, 0, NNM_DEVICE_CPU)
static const nnm_layer_vtable *const fx_layers[] = {&vl_135, &vl_200, &zl_003, &zl_004,
                                                    &zl_020, &zl_025, &zl_030};
static const nnm_backend_vtable *const fx_backends[] = {&be_cpu};
FX_DESC("good_b", fx_layers, 7, fx_backends, 1)
NNM_PLUGIN_DEFINE(fx_desc)

#elif defined(FX_BESIDE)
FX_LAYER(bl, "besidelayer", 1, 0, 0)
static const nnm_layer_vtable *const fx_layers[] = {&bl};
FX_DESC("beside", fx_layers, 1, NULL, 0)
NNM_PLUGIN_DEFINE(fx_desc)

#elif defined(FX_ABI2)
/* Built for the next ABI major: answers any host (it should not). */
FX_LAYER(al, "abi2layer", 1, 0, 0)
static const nnm_layer_vtable *const fx_layers[] = {&al};
static const nnm_plugin_desc fx_desc = {sizeof(nnm_plugin_desc), NNM_ABI_MAJOR + 1, 0, "abi2",
                                        NULL, 1, 0, fx_layers, NULL};
NNM_PLUGIN_EXPORT const nnm_plugin_desc *nnm_plugin_entry(uint16_t host_major, uint16_t host_minor);
NNM_PLUGIN_EXPORT const nnm_plugin_desc *nnm_plugin_entry(uint16_t host_major, uint16_t host_minor) {
    (void)host_major; (void)host_minor;
    return &fx_desc;
}

#elif defined(FX_NOENTRY)
/* Exports a near miss, not the entry symbol. */
NNM_PLUGIN_EXPORT int nnm_plugin_entry_v0(void);
NNM_PLUGIN_EXPORT int nnm_plugin_entry_v0(void) { return 0; }

#elif defined(FX_REFUSE)
NNM_PLUGIN_EXPORT const nnm_plugin_desc *nnm_plugin_entry(uint16_t host_major, uint16_t host_minor);
NNM_PLUGIN_EXPORT const nnm_plugin_desc *nnm_plugin_entry(uint16_t host_major, uint16_t host_minor) {
    (void)host_major; (void)host_minor;
    return NULL;
}

#elif defined(FX_SMALLDESC)
static const nnm_plugin_desc fx_desc = {16, NNM_ABI_MAJOR, NNM_ABI_MINOR, "smalldesc", NULL,
                                        0, 0, NULL, NULL};
NNM_PLUGIN_DEFINE(fx_desc)

#elif defined(FX_NULLVT)
FX_LAYER(ok, "nullvt_ok", 1, 0, 0)
static const nnm_layer_vtable *const fx_layers[] = {&ok, NULL};
FX_DESC("nullvt", fx_layers, 2, NULL, 0)
NNM_PLUGIN_DEFINE(fx_desc)

#elif defined(FX_NULLFWD)
static const nnm_layer_vtable nf = {sizeof(nnm_layer_vtable), 0, "nullfwd", 1, 0, 0, 1, 1,
                                    fx_create, NULL, NULL, NULL};
static const nnm_layer_vtable *const fx_layers[] = {&nf};
FX_DESC("nullfwd", fx_layers, 1, NULL, 0)
NNM_PLUGIN_DEFINE(fx_desc)

#elif defined(FX_SMALLVT)
/* struct_size stops before `create`. */
FX_LAYER_FN(sv, "smallvt", 1, 0, 0)
static const nnm_layer_vtable sv = {40, 0, "smallvt", 1, 0, 0, 1, 1, fx_create, NULL,
                                    sv_forward, NULL};
static const nnm_layer_vtable *const fx_layers[] = {&sv};
FX_DESC("smallvt", fx_layers, 1, NULL, 0)
NNM_PLUGIN_DEFINE(fx_desc)

#elif defined(FX_NULLARR)
FX_DESC("nullarr", NULL, 3, NULL, 0)
NNM_PLUGIN_DEFINE(fx_desc)

#elif defined(FX_BADBACKEND)
static const nnm_backend_vtable bb = {sizeof(nnm_backend_vtable), 0, "badbackend", 9, 9, 9,
                                      NNM_DEVICE_CPU, fx_init, fx_shutdown, NULL, fx_free,
                                      fx_memcpy, NULL, NULL, NULL, NULL};
static const nnm_backend_vtable *const fx_backends[] = {&bb};
FX_DESC("badbackend", NULL, 0, fx_backends, 1)
NNM_PLUGIN_DEFINE(fx_desc)

#elif defined(FX_NONAME)
FX_LAYER(nn, "noname_layer", 1, 0, 0)
static const nnm_layer_vtable *const fx_layers[] = {&nn};
FX_DESC("", fx_layers, 1, NULL, 0)
NNM_PLUGIN_DEFINE(fx_desc)

#elif defined(FX_DUP)
/* The same (name, version) as good_a's second layer. */
FX_LAYER(vl_120, "vlayer", 1, 2, 0)
static const nnm_layer_vtable *const fx_layers[] = {&vl_120};
FX_DESC("dup", fx_layers, 1, NULL, 0)
NNM_PLUGIN_DEFINE(fx_desc)

#elif defined(FX_NEWER)
/* Built against the next ABI minor: the descriptor and the layer vtable each
 * have one more trailing slot, and a bigger struct_size. */
FX_LAYER_FN(nl, "newlayer", 1, 0, 0)
static int fx_future_slot(void *self) { (void)self; return 42; }
typedef struct fx_layer_vtable_next {
    nnm_layer_vtable v1_0;
    int (*future_slot)(void *self); /* appended by the next minor */
} fx_layer_vtable_next;
typedef struct fx_desc_next {
    nnm_plugin_desc v1_0;
    const char *future_field;       /* appended by the next minor */
} fx_desc_next;
static const fx_layer_vtable_next nl = {
    {sizeof(fx_layer_vtable_next), 0, "newlayer", 1, 0, 0, 1, 1, fx_create, fx_destroy,
     nl_forward, fx_extra_repr},
    fx_future_slot};
static const nnm_layer_vtable *const fx_layers[] = {&nl.v1_0};
static const fx_desc_next fx_desc = {
    {sizeof(fx_desc_next), NNM_ABI_MAJOR, NNM_ABI_MINOR + 1, "newer", NULL, 1, 0, fx_layers,
     NULL},
    "future"};
NNM_PLUGIN_DEFINE(fx_desc.v1_0)

#elif defined(FX_OLDER)
/* A layer vtable from a minor that ended right after `forward`: extra_repr is
 * set in memory but outside struct_size, so the runtime must not see it. */
FX_LAYER_FN(ol, "oldlayer", 1, 0, 0)
static const nnm_layer_vtable ol = {offsetof(nnm_layer_vtable, extra_repr), 0, "oldlayer", 1,
                                    0, 0, 1, 1, fx_create, NULL, ol_forward, fx_extra_repr};
static const nnm_layer_vtable *const fx_layers[] = {&ol};
FX_DESC("older", fx_layers, 1, NULL, 0)
NNM_PLUGIN_DEFINE(fx_desc)

#else
#error "define one FX_* kind"
#endif
