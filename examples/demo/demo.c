/* examples/demo/demo.c - the main job: what nnmod does, end to end, on CPU.
 *
 * Creates a context (discovery finds the plugins installed beside libnnmod),
 * lists the plugins, builds Sequential(Linear(4, 8), ReLU, Linear(8, 3))
 * through the C API, prints the tree like print(model), registers a global
 * forward-pre-hook and a module forward hook that print what they see, runs a
 * forward, shows the call path's input check, switches to eval mode, writes
 * the model as a JSON manifest and rebuilds it from that, and frees
 * everything. Exits 0 on success, 1 (with the runtime's message) on failure.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "nnmod/nnmod.h"

#define BATCH 2
#define IN_FEATURES 4
#define HIDDEN 8
#define OUT_FEATURES 3

/* Fails the demo with the context's message when a call does not return NNM_OK. */
#define CHECK(ctx, call)                                                                   \
    do {                                                                                   \
        nnm_status st_ = (call);                                                           \
        if (st_ != NNM_OK) {                                                               \
            fprintf(stderr, "nnm_demo: %s failed: %s: %s\n", #call, nnm_status_name(st_),  \
                    nnm_ctx_errmsg(ctx));                                                  \
            goto fail;                                                                     \
        }                                                                                  \
    } while (0)

/* "[2, 4]" */
static const char *shape_str(const nnm_tensor *t, char *buf, size_t cap) {
    const nnm_tensor_desc *d = nnm_tensor_desc_get(t);
    size_t n = 0;
    if (!d) {
        snprintf(buf, cap, "(null)");
        return buf;
    }
    n += (size_t)snprintf(buf + n, cap - n, "[");
    for (int32_t i = 0; i < d->ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%" PRId64, i ? ", " : "", d->shape[i]);
    if (n < cap)
        snprintf(buf + n, cap - n, "]");
    return buf;
}

/* The module's dotted path, or "<root>" for the root. */
static const char *path_str(const nnm_module *m, char *buf, size_t cap) {
    if (nnm_module_path(m, buf, cap) <= 0)
        snprintf(buf, cap, "<root>");
    return buf;
}

static void print_values(const char *label, nnm_tensor *t) {
    float v[BATCH * HIDDEN];
    const nnm_tensor_desc *d = nnm_tensor_desc_get(t);
    int64_t n = nnm_tensor_numel(t);
    if (!d || d->ndim != 2 || n > (int64_t)(sizeof v / sizeof v[0]) ||
        nnm_tensor_to_f32(t, v, sizeof v / sizeof v[0]) != NNM_OK) {
        printf("%s (cannot read)\n", label);
        return;
    }
    for (int64_t r = 0; r < d->shape[0]; r++) {
        printf("%s[%" PRId64 "] =", label, r);
        for (int64_t c = 0; c < d->shape[1]; c++)
            printf(" %+.5f", (double)v[r * d->shape[1] + c]);
        printf("\n");
    }
}

/* Global forward-pre-hook: fires for every module of the context, before its
 * forward, in call order (so a container before its children). */
static nnm_status on_pre(void *user, nnm_module *m, nnm_tensor **in, uint32_t n_in) {
    unsigned *calls = user;
    char path[128], shape[64];
    (*calls)++;
    printf("  pre-hook   %-8s %-10s in  %s\n", path_str(m, path, sizeof path), nnm_module_type(m),
           n_in ? shape_str(in[0], shape, sizeof shape) : "-");
    return NNM_OK;
}

/* Forward hook on the last linear only: sees its inputs and outputs. */
static nnm_status on_fwd(void *user, nnm_module *m, nnm_tensor *const *in, uint32_t n_in,
                         nnm_tensor **out, uint32_t n_out) {
    unsigned *calls = user;
    char path[128], s_in[64], s_out[64];
    (*calls)++;
    printf("  fwd-hook   %-8s %-10s in  %s -> out %s\n", path_str(m, path, sizeof path),
           nnm_module_type(m), n_in ? shape_str(in[0], s_in, sizeof s_in) : "-",
           n_out ? shape_str(out[0], s_out, sizeof s_out) : "-");
    return NNM_OK;
}

static nnm_status print_mode(void *user, const char *name, nnm_module *m) {
    (void)user;
    printf("  %-8s %-10s training=%d\n", name[0] ? name : "<root>", nnm_module_type(m),
           nnm_module_is_training(m));
    return NNM_OK;
}

static nnm_status make_linear(nnm_ctx *ctx, int64_t in, int64_t out, nnm_module **m) {
    nnm_config *cfg = NULL;
    nnm_status st = nnm_config_new(&cfg);
    if (st == NNM_OK)
        st = nnm_config_set_int(cfg, "in_features", in);
    if (st == NNM_OK)
        st = nnm_config_set_int(cfg, "out_features", out);
    if (st == NNM_OK)
        st = nnm_module_create(ctx, "linear@^1", cfg, m);
    nnm_config_free(cfg);
    return st;
}

int main(void) {
    nnm_ctx *ctx = NULL;
    nnm_module *model = NULL, *fc1 = NULL, *act = NULL, *fc2 = NULL;
    nnm_tensor *x = NULL, *y = NULL, *bad = NULL, *y_bad = NULL;
    nnm_hook_handle *h_pre = NULL, *h_fwd = NULL;
    char *tree = NULL;
    nnm_manifest *mf = NULL;
    nnm_module *rebuilt = NULL;
    nnm_tensor *y2 = NULL;
    void *json = NULL;
    size_t json_len = 0;
    char weights[64];
    unsigned pre_calls = 0, fwd_calls = 0;
    uint16_t abi_major = 0, abi_minor = 0;
    int rc = 1;

    nnm_abi_version(&abi_major, &abi_minor);
    printf("nnmod %s, plugin ABI %u.%u\n\n", nnm_version(), abi_major, abi_minor);

    /* 1. A context; discovery scans NNM_PLUGIN_PATH, the installed plugin dir
     *    and nnmod/plugins beside libnnmod. */
    CHECK(ctx, nnm_ctx_new(NULL, &ctx));

    uint32_t n_plugins = nnm_plugin_count(ctx);
    printf("plugins (%u):\n", n_plugins);
    for (uint32_t i = 0; i < n_plugins; i++) {
        nnm_plugin_info info = {.struct_size = sizeof info};
        CHECK(ctx, nnm_plugin_info_get(ctx, i, &info));
        if (info.status == NNM_OK)
            printf("  ok   %-12s ABI %u.%u  %u layer(s), %u backend(s)  %s\n", info.name,
                   info.abi_major, info.abi_minor, info.n_layers, info.n_backends, info.path);
        else
            printf("  FAIL %s: %s\n", info.path, info.error);
    }

    /* 2. Sequential(Linear(4, 8), ReLU, Linear(8, 3)). Children are named
     *    "0", "1", "2" like PyTorch's Sequential; the parent takes its own
     *    reference, so ours are dropped right away. */
    CHECK(ctx, nnm_module_create(ctx, "sequential", NULL, &model));
    CHECK(ctx, make_linear(ctx, IN_FEATURES, HIDDEN, &fc1));
    CHECK(ctx, nnm_module_create(ctx, "relu", NULL, &act));
    CHECK(ctx, make_linear(ctx, HIDDEN, OUT_FEATURES, &fc2));
    CHECK(ctx, nnm_module_add_child(model, NULL, fc1));
    CHECK(ctx, nnm_module_add_child(model, NULL, act));
    CHECK(ctx, nnm_module_add_child(model, NULL, fc2));
    nnm_module_release(fc1);
    nnm_module_release(act);
    nnm_module_release(fc2);
    fc1 = act = fc2 = NULL;

    int64_t len = nnm_module_repr(model, NULL, 0);
    tree = malloc((size_t)len + 1);
    if (!tree) {
        fprintf(stderr, "nnm_demo: out of memory\n");
        goto fail;
    }
    nnm_module_repr(model, tree, (size_t)len + 1);
    printf("\nmodel:\n%s\nnnm_module_num_params: %" PRId64 "\n", tree,
           nnm_module_num_params(model));

    /* 3. Hooks: one global forward-pre-hook, one forward hook on "2". */
    CHECK(ctx, nnm_ctx_register_forward_pre_hook(ctx, on_pre, &pre_calls, &h_pre));
    CHECK(ctx, nnm_module_register_forward_hook(nnm_module_get(model, "2"), on_fwd, &fwd_calls,
                                                &h_fwd));

    /* 4. Forward through the central call path: model(x). */
    static const float xs[BATCH * IN_FEATURES] = {0.5f, -1.0f, 2.0f, 0.25f,
                                                  -0.75f, 1.5f, 0.0f, -2.0f};
    const int64_t x_shape[2] = {BATCH, IN_FEATURES};
    CHECK(ctx, nnm_tensor_from_f32(ctx, 2, x_shape, xs, &x));
    printf("\nforward (training mode):\n");
    print_values("  x", x);
    CHECK(ctx, nnm_module_call(model, &x, 1, &y, 1));
    print_values("  y", y);
    printf("hooks fired: %u pre, %u forward\n", pre_calls, fwd_calls);
    nnm_tensor_release(y);
    y = NULL;

    /* 5. The call path checks inputs and names the module in its error. */
    const int64_t bad_shape[2] = {BATCH, IN_FEATURES + 1};
    CHECK(ctx, nnm_tensor_from_f32(ctx, 2, bad_shape, NULL, &bad));
    printf("\nforward with a [%d, %d] input:\n", BATCH, IN_FEATURES + 1);
    nnm_status st = nnm_module_call(model, &bad, 1, &y_bad, 1);
    printf("  -> %s: %s\n", nnm_status_name(st), nnm_ctx_errmsg(ctx));
    if (st == NNM_OK) {
        fprintf(stderr, "nnm_demo: a wrong input shape was accepted\n");
        goto fail;
    }

    /* 6. eval() sets the flag on the whole tree; remove the pre-hook first. */
    nnm_hook_remove(h_pre);
    h_pre = NULL;
    CHECK(ctx, nnm_module_train(model, 0));
    printf("\nafter eval():\n");
    CHECK(ctx, nnm_module_named_modules(model, print_mode, NULL));
    printf("\nforward (eval mode, pre-hook removed):\n");
    CHECK(ctx, nnm_module_call(model, &x, 1, &y, 1));
    print_values("  y", y);
    printf("hooks fired: %u pre, %u forward\n", pre_calls, fwd_calls);

    /* 7. The same model as a manifest (docs/manifest.md): described, written
     *    as JSON, parsed back and rebuilt; with the weights copied over
     *    through a state dict it computes the same output. */
    CHECK(ctx, nnm_manifest_from_module(model, &mf));
    CHECK(ctx, nnm_manifest_write(mf, NNM_MANIFEST_JSON, &json, &json_len));
    printf("\nas a manifest (%zu bytes of JSON):\n%.*s", json_len, (int)json_len, (char *)json);
    nnm_manifest_free(mf);
    mf = NULL;
    CHECK(ctx, nnm_manifest_parse(ctx, json, json_len, NNM_MANIFEST_AUTO, NULL, NULL, &mf));
    CHECK(ctx, nnm_manifest_build(mf, 0, &rebuilt));
    snprintf(weights, sizeof weights, "/tmp/nnm_demo.%ld.safetensors", (long)getpid());
    CHECK(ctx, nnm_module_save(model, weights, 0, NULL));
    st = nnm_module_load(rebuilt, weights, 1, NULL);
    remove(weights);
    CHECK(ctx, st);
    CHECK(ctx, nnm_module_train(rebuilt, 0));
    CHECK(ctx, nnm_module_call(rebuilt, &x, 1, &y2, 1));
    print_values("rebuilt from the manifest, y", y2);

    rc = 0;
fail:
    /* 8. Everything made is freed; NULL is a no-op for every release. */
    free(tree);
    nnm_free(json);
    nnm_manifest_free(mf);
    nnm_tensor_release(y2);
    nnm_module_release(rebuilt);
    nnm_hook_remove(h_pre);
    nnm_hook_remove(h_fwd);
    nnm_tensor_release(x);
    nnm_tensor_release(y);
    nnm_tensor_release(bad);
    nnm_tensor_release(y_bad);
    nnm_module_release(fc1);
    nnm_module_release(act);
    nnm_module_release(fc2);
    nnm_module_release(model);
    nnm_ctx_free(ctx);
    if (rc == 0)
        printf("\ndone\n");
    return rc;
}
