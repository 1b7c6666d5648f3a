/* examples/bindings/c/mlp_example.c - the reference program every binding's
 * example reproduces (examples/bindings/{rust,go,python}): same steps, same
 * numbers, same text, byte for byte (tests compare them).
 *
 *   mlp_example <manifest>     (examples/manifests/mlp.json)
 *
 * Loads the manifest (its parameters come from the context's default seed),
 * registers a global forward hook that prints each module's output shape,
 * runs a forward on a fixed input, computes loss = mean(y * y), runs
 * backward, prints each parameter's gradient sums, takes one SGD step
 * (lr 0.1), and prints the loss again. Numbers are printed with "%.6f". */
#include <stdio.h>
#include <stdlib.h>

#include <nnmod/nnmod.h>

#define FAIL(ctx, st, what)                                                              \
    do {                                                                                 \
        fprintf(stderr, "mlp_example: %s: %s: %s\n", what, nnm_status_name(st),          \
                nnm_ctx_errmsg(ctx));                                                    \
        exit(1);                                                                         \
    } while (0)
#define TRY(ctx, expr, what)                                                             \
    do {                                                                                 \
        nnm_status st_ = (expr);                                                         \
        if (st_ != NNM_OK) FAIL(ctx, st_, what);                                         \
    } while (0)

static void print_shape(const nnm_tensor *t) {
    const nnm_tensor_desc *d = nnm_tensor_desc_get(t);
    printf("[");
    for (int32_t i = 0; i < d->ndim; i++) printf(i ? ", %lld" : "%lld", (long long)d->shape[i]);
    printf("]");
}

static nnm_status print_output_shape(void *user, nnm_module *m, nnm_tensor *const *in,
                                     uint32_t n_in, nnm_tensor **out, uint32_t n_out) {
    (void)user, (void)in, (void)n_in;
    char path[256];
    nnm_module_path(m, path, sizeof path);
    printf("hook %s (%s) -> ", path[0] ? path : "(root)", nnm_module_type(m));
    for (uint32_t i = 0; i < n_out; i++) print_shape(out[i]);
    printf("\n");
    return NNM_OK;
}

/* The elements of an f32 tensor as doubles summed in order, and their
 * absolute values summed. */
static void sums(nnm_tensor *t, double *sum, double *abs_sum) {
    int64_t n = nnm_tensor_numel(t);
    float *v = malloc((size_t)n * sizeof *v);
    if (!v || nnm_tensor_to_f32(t, v, (size_t)n) != NNM_OK) {
        fprintf(stderr, "mlp_example: cannot read a tensor\n");
        exit(1);
    }
    *sum = 0, *abs_sum = 0;
    for (int64_t i = 0; i < n; i++) {
        *sum += v[i];
        *abs_sum += v[i] < 0 ? -(double)v[i] : v[i];
    }
    free(v);
}

static nnm_status print_grad(void *user, const char *name, nnm_tensor *p) {
    (void)user;
    double s, a;
    sums(nnm_tensor_grad(p), &s, &a);
    printf("grad %s ", name);
    print_shape(p);
    printf(" sum %.6f abs %.6f\n", s, a);
    return NNM_OK;
}

static nnm_status print_param(void *user, const char *name, nnm_tensor *p) {
    (void)user;
    double s, a;
    sums(p, &s, &a);
    printf("param %s sum %.6f abs %.6f\n", name, s, a);
    return NNM_OK;
}

/* loss = mean(y * y) */
static nnm_tensor *mse0(nnm_ctx *ctx, nnm_tensor *y) {
    nnm_tensor *sq = NULL, *loss = NULL;
    TRY(ctx, nnm_op_binary(ctx, NNM_BINARY_MUL, y, y, &sq), "y * y");
    TRY(ctx, nnm_op_reduce(ctx, NNM_REDUCE_MEAN, sq, NULL, 0, 0, &loss), "mean");
    nnm_tensor_release(sq);
    return loss;
}

static double scalar(nnm_tensor *t) {
    float v = 0;
    if (nnm_tensor_to_f32(t, &v, 1) != NNM_OK) exit(1);
    return v;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: mlp_example <manifest>\n");
        return 2;
    }
    nnm_ctx *ctx = NULL;
    TRY(ctx, nnm_ctx_new(NULL, &ctx), "context");
    nnm_manifest *mf = NULL;
    nnm_module *model = NULL;
    TRY(ctx, nnm_manifest_load(ctx, argv[1], NNM_MANIFEST_AUTO, NULL, &mf), "manifest");
    TRY(ctx, nnm_manifest_build(mf, 0, &model), "build");
    nnm_manifest_free(mf);
    printf("model %s, %lld parameters\n", nnm_module_type(model),
           (long long)nnm_module_num_params(model));

    /* x[i] = ((5 i) mod 11 - 5) / 8: exact in f32, the same in every language */
    float xv[8];
    for (int i = 0; i < 8; i++) xv[i] = (float)((i * 5) % 11 - 5) / 8.0f;
    int64_t shape[2] = {2, 4};
    nnm_tensor *x = NULL;
    TRY(ctx, nnm_tensor_from_f32(ctx, 2, shape, xv, &x), "input");
    printf("input ");
    print_shape(x);
    printf("\n");

    nnm_hook_handle *hook = NULL;
    TRY(ctx, nnm_ctx_register_forward_hook(ctx, print_output_shape, NULL, &hook), "hook");
    nnm_tensor *y = NULL;
    TRY(ctx, nnm_module_call(model, &x, 1, &y, 1), "forward");
    nnm_hook_remove(hook);

    float yv[6];
    TRY(ctx, nnm_tensor_to_f32(y, yv, 6), "read output");
    printf("output ");
    print_shape(y);
    printf("\n");
    for (int r = 0; r < 2; r++)
        printf("  %.6f %.6f %.6f\n", yv[r * 3], yv[r * 3 + 1], yv[r * 3 + 2]);

    nnm_tensor *loss = mse0(ctx, y);
    printf("loss %.6f\n", scalar(loss));
    TRY(ctx, nnm_backward(loss, NULL, 0), "backward");
    TRY(ctx, nnm_module_named_parameters(model, print_grad, NULL), "grads");

    nnm_sgd_options so = {sizeof so, 0, 0.1, 0.0, 0.0, 0.0};
    nnm_optim *opt = NULL;
    TRY(ctx, nnm_optim_sgd_new(model, &so, &opt), "sgd");
    TRY(ctx, nnm_optim_step(opt), "step");
    printf("sgd step lr %.6f\n", so.lr);
    TRY(ctx, nnm_module_named_parameters(model, print_param, NULL), "params");

    nnm_tensor *y2 = NULL, *loss2 = NULL;
    TRY(ctx, nnm_module_call(model, &x, 1, &y2, 1), "forward after step");
    loss2 = mse0(ctx, y2);
    printf("loss after step %.6f\n", scalar(loss2));

    nnm_tensor_release(loss2);
    nnm_tensor_release(y2);
    nnm_optim_free(opt);
    nnm_tensor_release(loss);
    nnm_tensor_release(y);
    nnm_tensor_release(x);
    nnm_module_release(model);
    nnm_ctx_free(ctx);
    return 0;
}
