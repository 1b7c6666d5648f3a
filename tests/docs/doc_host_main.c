/* tests/docs/doc_host_main.c - runs the host snippet of
 * docs/writing-a-plugin.md (section 4) as written: this file supplies what
 * the snippet uses and does not show (the hooks, `seen`, the input `xs`),
 * includes the snippet as the body of main, then checks what the page says
 * happens: the swish outputs x / (1 + exp(-1.5 x)), and both hooks fired
 * once. Run from the directory holding build/example_swish.so (the page's
 * path), which tests/docs/CMakeLists.txt builds from the page's own plugin
 * snippets. Exits 0 when every check passed. */
#include <math.h>
#include <stdio.h>

#include <nnmod/nnmod.h>

typedef struct seen_t {
    int pre, post;
    int64_t numel;
} seen_t;

static nnm_status pre_hook(void *user, nnm_module *m, nnm_tensor **in, uint32_t n_in) {
    (void)m;
    seen_t *s = user;
    s->pre++;
    s->numel = n_in ? nnm_tensor_numel(in[0]) : -1;
    return NNM_OK;
}

static nnm_status fwd_hook(void *user, nnm_module *m, nnm_tensor *const *in, uint32_t n_in,
                           nnm_tensor **out, uint32_t n_out) {
    (void)m, (void)in, (void)n_in;
    seen_t *s = user;
    s->post++;
    if (n_out && nnm_tensor_numel(out[0]) != s->numel) s->numel = -1;
    return NNM_OK;
}

int main(void) {
    static const float xs[6] = {-3.0f, -1.0f, -0.25f, 0.0f, 0.5f, 2.0f};
    seen_t seen = {0, 0, 0};
    /* ---- the page's snippet, as written ---- */
#include "doc_host.c"
    /* ---- what the page says it does ---- */
    int failed = 0;
    if (!ctx || !m || !x || !y) {
        fprintf(stderr, "doc_host: the snippet failed: %s\n", ctx ? nnm_ctx_errmsg(ctx) : "no context");
        return 1;
    }
    float v[6];
    if (nnm_tensor_to_f32(y, v, 6) != NNM_OK) failed = 1;
    for (int i = 0; i < 6 && !failed; i++) {
        double want = xs[i] / (1.0 + exp(-1.5 * xs[i]));
        if (fabs(v[i] - want) > 1e-6 * (1.0 + fabs(want))) {
            fprintf(stderr, "doc_host: y[%d] = %.9g, want %.9g\n", i, v[i], want);
            failed = 1;
        }
    }
    if (seen.pre != 1 || seen.post != 1 || seen.numel != 6) {
        fprintf(stderr, "doc_host: hooks fired %d/%d times, saw %lld elements\n", seen.pre, seen.post,
                (long long)seen.numel);
        failed = 1;
    }
    nnm_tensor_release(y);
    nnm_tensor_release(x);
    nnm_module_release(m);
    nnm_ctx_free(ctx);
    if (!failed) printf("doc_host: the page's host snippet ran as described\n");
    return failed;
}
