/* runtime/module/module_internal.h - modules and the environment a layer runs in (the host table's side).
 * Private to the runtime (nnm__ names); runtime/internal.h includes every such header. */
#ifndef NNM_MODULE_INTERNAL_H
#define NNM_MODULE_INTERNAL_H

#include "../core/ctx_internal.h"

/* ---- modules ------------------------------------------------------------ */

typedef struct nnm__named_tensor {
    char *name;
    nnm_tensor *t;
    int persistent;
    nnm_tensor *alias;            /* tied: the tensor the plugin holds (owned; t is the
                                   * one it is tied to); NULL when not tied */
} nnm__named_tensor;

typedef struct nnm__input_spec {
    int32_t ndim;
    uint32_t flags;
    int64_t dims[NNM_MAX_DIMS];
} nnm__input_spec;

struct nnm_module {
    /* What every call reads first, in the first 64 bytes (one cache line):
     * a small model's forward touches a hundred modules, and at batch 1 it
     * waits on their lines more than it computes. */
    uint32_t magic;
    uint32_t refs;
    nnm_ctx *ctx;
    const nnm_layer_vtable *vt;
    void *self;
    nnm_module **children;
    uint32_t n_children;
    uint32_t n_hooks;             /* pre + post, for the fast-path gate */
    uint32_t n_specs;
    int training;
    nnm_device device;
    nnm__input_spec specs[NNM__MAX_SPECS]; /* next line: specs[0]'s ndim, flags, dims[0..6] */
    /* the rest: names, tree, parameters, hooks */
    uint32_t cap_children;
    nnm__plugin *plugin;
    char *name;                   /* "" for a root */
    uint32_t name_hash;           /* of name, set by add_child */
    nnm_module *parent;           /* not referenced (the parent references us) */
    nnm__name_index child_index;  /* of children's names, past NNM__NAME_INDEX_MIN */
    nnm__named_tensor *params;
    uint32_t n_params, cap_params;
    nnm__named_tensor *buffers;
    uint32_t n_buffers, cap_buffers;
    nnm__hook_list pre_hooks, post_hooks;
    nnm__hook_list bw_pre_hooks, bw_hooks; /* full backward (pre-)hooks */
    int created;                  /* create succeeded: destroy is due */
    nnm_config *cfg;              /* the config it was created with (owned; for writing) */
    char *manifest_sha256;        /* hash of the manifest it was built from (roots; owned) */
    /* The name of each child slot (owned) and its nnm__name_hash: a child
     * shared by two slots (nnm_module_set_child) has a name in each, while
     * its own `name` is the one under its first parent (for paths). */
    char **child_names;
    uint32_t *child_hashes;
    /* The names of its outputs (host->set_output_names; owned), or NULL. */
    char **output_names;
    uint32_t n_output_names;
    /* host->child_new (1.5): the module whose create made this one (not
     * referenced; cleared when that module dies), and how many modules this
     * one's create made. A module that made some is described by its
     * config alone: manifests hold none of its subtree. */
    nnm_module *made_by;
    uint32_t n_made;
};
/* The private side of an nnm_env. */
enum nnm__phase {
    NNM__PHASE_CREATE,
    NNM__PHASE_FORWARD,
    NNM__PHASE_BACKEND,
    NNM__PHASE_BACKWARD,
    NNM__PHASE_FINALIZE
};

typedef struct nnm__env {
    nnm_env pub;
    nnm_ctx *ctx;
    nnm_module *module;           /* NULL outside a layer invocation */
    const nnm_config *cfg;        /* create only */
    uint64_t cfg_read;            /* create: bit i set when key i was read */
    int phase;
    int training;
    int grad;
    nnm_device device;
    nnm__node *node;              /* backward: the node being run */
    nnm_tensor **saved;           /* custom forward: save_for_backward target */
    uint32_t n_saved;
    uint32_t magic;               /* NNM__ENV_MAGIC: host slots refuse envs the runtime did not make */
} nnm__env;

#define NNM__ENV_MAGIC 0x6e6e6d45u /* "nnmE" */

extern const nnm_host nnm__host;

static inline nnm__env *nnm__env_of(nnm_env *env) { return (nnm__env *)env; }

/* The value an env the runtime made keeps in its public `reserved` field: a
 * function of its own address, so a plugin's copy of the public part (or any
 * foreign pointer) is refused from the 16 bytes it surely has, before the
 * host reads the private part behind them (host.c, env_check). */
static inline uint32_t nnm__env_tag(const void *e) {
    return (uint32_t)((uintptr_t)e >> 3) ^ NNM__ENV_MAGIC;
}

static inline void nnm__env_init(nnm__env *e, nnm_ctx *ctx, nnm_module *m, int phase) {
    e->pub.struct_size = sizeof(nnm_env);
    e->pub.reserved = nnm__env_tag(e);
    e->pub.host = &nnm__host;
    e->ctx = ctx;
    e->module = m;
    e->cfg = NULL;
    e->cfg_read = 0;
    e->phase = phase;
    e->training = m ? m->training : 0;
    e->grad = 1;
    e->device = m ? m->device : (nnm_device){NNM_DEVICE_CPU, 0};
    e->node = NULL;
    e->saved = NULL;
    e->n_saved = 0;
    e->magic = NNM__ENV_MAGIC;
}
/* module.c - runs m's layer finalize (not its children's); the message is
 * not attributed to a module path. */
nnm_status nnm__module_finalize_self(nnm_module *m);
/* module.c - checks that the subtree of m (which made children through
 * host->child_new) is still what its create made: every descendant made by
 * a layer, and as many made by m as it made. Else NNM_E_STATE with a
 * message naming `path` and the first module that differs. */
nnm_status nnm__module_made_intact(const nnm_module *m, const char *path);
/* call.c: custom-backward layers and module backward hooks */
/* call.c: a backward-hook node lets go of the hook lists it captured at
 * forward (autograd.c, when the node drops its saved state). */
void nnm__bw_hooks_drop(nnm__node *n);
nnm_status nnm__record_layer(nnm_module *m, nnm_tensor *const *in, uint32_t n_in, nnm_tensor **out,
                             uint32_t n_out, nnm_tensor **saved, uint32_t n_saved);
/* module.c */
static inline int nnm__module_live(const nnm_module *m) { return m && m->magic == NNM__MODULE_MAGIC; }
/* Visited pointers, for walks over trees that share modules or tensors
 * (named_parameters(remove_duplicate=True)). nnm__seen_add: 1 when p was
 * not there (and now is), 0 when it was, -1 out of memory. */
typedef struct nnm__seen {
    const void **slots;
    size_t mask, n;
} nnm__seen;
int nnm__seen_add(nnm__seen *s, const void *p);
void nnm__seen_free(nnm__seen *s);

nnm_status nnm__module_add_tensor(nnm_module *m, int buffer, const char *name, nnm_tensor *t,
                                  int persistent);
/* Replaces m's output names by `names` (n of them, owned from now on; NULL
 * and 0 remove them). */
void nnm__module_set_output_names(nnm_module *m, char **names, uint32_t n);
/* call.c */
nnm_status nnm__module_call(nnm_module *m, nnm_tensor *const *in, uint32_t n_in, nnm_tensor **out,
                            uint32_t n_out);

#endif /* NNM_MODULE_INTERNAL_H */
