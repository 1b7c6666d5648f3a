/* tests/layers/nobag_backend.h - two stand-ins for the cpu backend on the
 * CPU device, each the cpu plugin's own vtable with a higher version (so a
 * context that registers one uses it for every CPU tensor) and its own name:
 *   "cpunobag"    the embedding_bag slots NULL: host->op_embedding_bag is
 *                 NNM_E_UNSUPPORTED and the embedding_bag layer composes
 *                 its bags from host ops (the fallback a backend without
 *                 the slots gets);
 *   "cpubagcount" the same slots, counted, so a test can tell that the
 *                 fused kernels did run;
 *   "cpubaglies"  an embedding_bag slot that fails with a status outside
 *                 the ABI and no message (the runtime must blame it);
 *   "cpunoln"     the layer_norm slots NULL (ABI 1.5): host->op_layer_norm
 *                 is NNM_E_UNSUPPORTED and the layer_norm layer composes it;
 *   "cpulncount"  the same slots, counted (g_lncount_calls);
 *   "cpulnlies"   a layer_norm slot failing with status 4242, no message.
 * Both count index_select calls (the composed path gathers rows with it;
 * the fused one never does). The includer calls nobag_setup(cpu_plugin_path)
 * once (dlopens the cpu plugin), registers nobag_desc or bagcount_desc with
 * nnm_plugin_register_static in a context that has made no CPU tensor yet,
 * and nobag_teardown() at the end. */
#ifndef NNM_TESTS_NOBAG_BACKEND_H
#define NNM_TESTS_NOBAG_BACKEND_H

#include <dlfcn.h>

#include "nnmod/plugin.h"

static void *g_nobag_dl;
static const nnm_backend_vtable *g_nobag_cpu;
static nnm_backend_vtable g_nobag_vt, g_bagcount_vt, g_baglies_vt;
static int g_nobag_index_selects, g_bagcount_calls;
static nnm_backend_vtable g_noln_vt, g_lncount_vt, g_lnlies_vt;
static int g_lncount_calls;

static nnm_status lncount_fwd(nnm_env *env, void *state, const nnm_layer_norm_args *a) {
    g_lncount_calls++;
    return g_nobag_cpu->layer_norm(env, state, a);
}
static nnm_status lncount_bwd(nnm_env *env, void *state, const nnm_layer_norm_args *a) {
    g_lncount_calls++;
    return g_nobag_cpu->layer_norm_backward(env, state, a);
}
static nnm_status lnlies_fwd(nnm_env *env, void *state, const nnm_layer_norm_args *a) {
    (void)env, (void)state, (void)a;
    return 4242;
}

static nnm_status nobag_index_select(nnm_env *env, void *state, const nnm_index_args *a) {
    g_nobag_index_selects++;
    return g_nobag_cpu->index_select(env, state, a);
}
static nnm_status bagcount_fwd(nnm_env *env, void *state, const nnm_embedding_bag_args *a) {
    g_bagcount_calls++;
    return g_nobag_cpu->embedding_bag(env, state, a);
}
static nnm_status bagcount_bwd(nnm_env *env, void *state, const nnm_embedding_bag_args *a) {
    g_bagcount_calls++;
    return g_nobag_cpu->embedding_bag_backward(env, state, a);
}

static nnm_status baglies_fwd(nnm_env *env, void *state, const nnm_embedding_bag_args *a) {
    (void)env, (void)state, (void)a;
    return 4242;
}

static const nnm_backend_vtable *const noln_backends[] = {&g_noln_vt};
static const nnm_backend_vtable *const lncount_backends[] = {&g_lncount_vt};
static const nnm_backend_vtable *const lnlies_backends[] = {&g_lnlies_vt};
#define NOBAG_DESC(var, nm, arr)                                                                                       \
    static const nnm_plugin_desc var = {.struct_size = sizeof(nnm_plugin_desc), .abi_major = NNM_ABI_MAJOR,            \
                                        .abi_minor = NNM_ABI_MINOR, .name = nm, .n_backends = 1, .backends = arr}
NOBAG_DESC(noln_desc, "cpunoln", noln_backends);
NOBAG_DESC(lncount_desc, "cpulncount", lncount_backends);
NOBAG_DESC(lnlies_desc, "cpulnlies", lnlies_backends);
static const nnm_backend_vtable *const nobag_backends[] = {&g_nobag_vt};
static const nnm_backend_vtable *const baglies_backends[] = {&g_baglies_vt};
static const nnm_plugin_desc baglies_desc = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
    .name = "cpubaglies",
    .n_backends = 1,
    .backends = baglies_backends,
};
static const nnm_backend_vtable *const bagcount_backends[] = {&g_bagcount_vt};
static const nnm_plugin_desc nobag_desc = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
    .name = "cpunobag",
    .n_backends = 1,
    .backends = nobag_backends,
};
static const nnm_plugin_desc bagcount_desc = {
    .struct_size = sizeof(nnm_plugin_desc),
    .abi_major = NNM_ABI_MAJOR,
    .abi_minor = NNM_ABI_MINOR,
    .name = "cpubagcount",
    .n_backends = 1,
    .backends = bagcount_backends,
};

/* 0 on success. */
static int nobag_setup(const char *cpu_plugin) {
    g_nobag_dl = dlopen(cpu_plugin, RTLD_NOW | RTLD_LOCAL);
    void *sym = g_nobag_dl ? dlsym(g_nobag_dl, NNM_PLUGIN_ENTRY_SYMBOL) : NULL;
    nnm_plugin_entry_fn entry = NULL;
    if (sym != NULL) memcpy(&entry, &sym, sizeof entry); /* object pointer -> function pointer */
    const nnm_plugin_desc *d = entry ? entry(NNM_ABI_MAJOR, NNM_ABI_MINOR) : NULL;
    if (d == NULL || d->n_backends < 1 || d->backends[0]->struct_size < sizeof(nnm_backend_vtable) ||
        !d->backends[0]->embedding_bag || !d->backends[0]->index_select || !d->backends[0]->layer_norm)
        return 1;
    g_nobag_cpu = d->backends[0];
    g_nobag_vt = *g_nobag_cpu;
    g_nobag_vt.name = "cpunobag";
    g_nobag_vt.version_major = 1000;
    g_nobag_vt.index_select = nobag_index_select;
    g_nobag_vt.embedding_bag = NULL;
    g_nobag_vt.embedding_bag_backward = NULL;
    g_bagcount_vt = g_nobag_vt;
    g_bagcount_vt.name = "cpubagcount";
    g_bagcount_vt.embedding_bag = bagcount_fwd;
    g_bagcount_vt.embedding_bag_backward = bagcount_bwd;
    g_baglies_vt = g_bagcount_vt;
    g_baglies_vt.name = "cpubaglies";
    g_baglies_vt.embedding_bag = baglies_fwd;
    g_noln_vt = *g_nobag_cpu;
    g_noln_vt.name = "cpunoln";
    g_noln_vt.version_major = 1000;
    g_noln_vt.layer_norm = NULL;
    g_noln_vt.layer_norm_backward = NULL;
    g_lncount_vt = g_noln_vt;
    g_lncount_vt.name = "cpulncount";
    g_lncount_vt.layer_norm = lncount_fwd;
    g_lncount_vt.layer_norm_backward = lncount_bwd;
    g_lnlies_vt = g_lncount_vt;
    g_lnlies_vt.name = "cpulnlies";
    g_lnlies_vt.layer_norm = lnlies_fwd;
    return 0;
}

static void nobag_teardown(void) {
    if (g_nobag_dl) dlclose(g_nobag_dl);
    g_nobag_dl = NULL;
}

#endif /* NNM_TESTS_NOBAG_BACKEND_H */
