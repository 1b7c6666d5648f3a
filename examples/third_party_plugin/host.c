/* swish_host - an application that uses the out-of-tree swish plugin.
 *
 *   swish_host [PLUGIN.so]   load the plugin from an explicit path (default:
 *                            the one this project just built)
 *   swish_host --discover    rely on discovery: the plugin was installed into
 *                            nnmod's plugin directory (cmake --install)
 *
 * Builds swish modules, registers a forward-pre-hook and a forward hook, runs
 * them through nnm_module_call and checks the values against expf. Exits 0
 * when everything matches, 1 otherwise.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nnmod/nnmod.h"

#ifndef SWISH_PLUGIN_PATH
#define SWISH_PLUGIN_PATH "example_swish.so"
#endif

#define N 6

static int failures;

#define EXPECT(cond, ...)                                                                  \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "swish_host: %s:%d: ", __FILE__, __LINE__);                    \
            fprintf(stderr, __VA_ARGS__);                                                  \
            fprintf(stderr, "\n");                                                         \
            failures++;                                                                    \
        }                                                                                  \
    } while (0)

#define CHECK(ctx, call)                                                                   \
    do {                                                                                   \
        nnm_status st_ = (call);                                                           \
        if (st_ != NNM_OK) {                                                               \
            fprintf(stderr, "swish_host: %s: %s: %s\n", #call, nnm_status_name(st_),       \
                    nnm_ctx_errmsg(ctx));                                                  \
            failures++;                                                                    \
            goto done;                                                                     \
        }                                                                                  \
    } while (0)

typedef struct seen {
    unsigned pre, fwd;
    int64_t in_numel, out_numel;
} seen;

static nnm_status pre_hook(void *user, nnm_module *m, nnm_tensor **in, uint32_t n_in) {
    seen *s = user;
    (void)m;
    s->pre++;
    s->in_numel = n_in == 1 ? nnm_tensor_numel(in[0]) : -1;
    return NNM_OK;
}

static nnm_status fwd_hook(void *user, nnm_module *m, nnm_tensor *const *in, uint32_t n_in,
                           nnm_tensor **out, uint32_t n_out) {
    seen *s = user;
    (void)m;
    (void)in;
    (void)n_in;
    s->fwd++;
    s->out_numel = n_out == 1 ? nnm_tensor_numel(out[0]) : -1;
    return NNM_OK;
}

/* Makes swish(beta[, learn_beta]), runs it on x with both hooks, checks y. */
static void run_one(nnm_ctx *ctx, double beta, int learn, int64_t want_params) {
    static const float xs[N] = {-3.0f, -1.0f, -0.25f, 0.0f, 0.5f, 2.0f};
    const int64_t shape[2] = {2, 3};
    nnm_config *cfg = NULL;
    nnm_module *m = NULL;
    nnm_tensor *x = NULL, *y = NULL;
    seen s = {0, 0, 0, 0};
    float ys[N];
    char repr[256];

    CHECK(ctx, nnm_config_new(&cfg));
    CHECK(ctx, nnm_config_set_float(cfg, "beta", beta));
    CHECK(ctx, nnm_config_set_bool(cfg, "learn_beta", learn));
    CHECK(ctx, nnm_module_create(ctx, "example.swish@^1", cfg, &m));
    EXPECT(nnm_module_num_params(m) == want_params, "beta=%g learn=%d: %lld parameters", beta,
           learn, (long long)nnm_module_num_params(m));
    nnm_module_repr(m, repr, sizeof repr);
    printf("%s\n", repr);
    EXPECT(strstr(repr, "beta=") != NULL, "repr lacks extra_repr: %s", repr);

    CHECK(ctx, nnm_module_register_forward_pre_hook(m, pre_hook, &s, NULL));
    CHECK(ctx, nnm_module_register_forward_hook(m, fwd_hook, &s, NULL));

    CHECK(ctx, nnm_tensor_from_f32(ctx, 2, shape, xs, &x));
    CHECK(ctx, nnm_module_call(m, &x, 1, &y, 1));
    CHECK(ctx, nnm_tensor_to_f32(y, ys, N));

    EXPECT(s.pre == 1 && s.fwd == 1, "hooks fired %u pre, %u forward; want 1 and 1", s.pre,
           s.fwd);
    EXPECT(s.in_numel == N && s.out_numel == N, "hooks saw %lld in, %lld out elements",
           (long long)s.in_numel, (long long)s.out_numel);
    for (int i = 0; i < N; i++) {
        double want = xs[i] / (1.0 + exp(-beta * xs[i]));
        EXPECT(fabs(ys[i] - want) <= 1e-5 + 1e-5 * fabs(want), "y[%d] = %.7f, want %.7f", i,
               (double)ys[i], want);
    }
    printf("  swish(beta=%g%s) on 6 values: ok, hooks: %u pre, %u forward\n", beta,
           learn ? ", learned" : "", s.pre, s.fwd);
done:
    nnm_tensor_release(y);
    nnm_tensor_release(x);
    nnm_module_release(m); /* its hooks go with it */
    nnm_config_free(cfg);
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : SWISH_PLUGIN_PATH;
    int discover = strcmp(path, "--discover") == 0;
    nnm_ctx *ctx = NULL;
    const nnm_layer_vtable *vt = NULL;
    int found = 0;

    /* Discovery finds the installed plugins (among them the cpu backend) in
     * nnmod/plugins beside the libnnmod this program was linked with. */
    CHECK(ctx, nnm_ctx_new(NULL, &ctx));
    if (!discover)
        CHECK(ctx, nnm_plugin_load(ctx, path));

    for (uint32_t i = 0; i < nnm_plugin_count(ctx); i++) {
        nnm_plugin_info info;
        memset(&info, 0, sizeof info);
        info.struct_size = sizeof info;
        if (nnm_plugin_info_get(ctx, i, &info) == NNM_OK && info.name &&
            strcmp(info.name, "example_swish") == 0) {
            printf("loaded %s from %s (ABI %u.%u)\n", info.name, info.path, info.abi_major,
                   info.abi_minor);
            EXPECT(info.status == NNM_OK, "example_swish failed to load: %s", info.error);
            found = 1;
        }
    }
    EXPECT(found, "example_swish is not in the plugin list");

    CHECK(ctx, nnm_layer_find(ctx, "example.swish@^1", &vt));
    EXPECT(vt->version_major == 1, "swish version %u", vt->version_major);

    run_one(ctx, 1.5, 0, 0);
    run_one(ctx, 0.5, 1, 1);

done:
    nnm_ctx_free(ctx);
    if (failures) {
        fprintf(stderr, "swish_host: %d failure(s)\n", failures);
        return 1;
    }
    printf("swish_host: all checks passed\n");
    return 0;
}
