/* tests/autograd/test_autograd_parity.c - nnmod against PyTorch golden vectors
 * (the safetensors files in tests/golden/autograd, written by
 * tests/golden/make_golden.py):
 * model outputs, losses, every parameter gradient (and none for a parameter
 * left unused), parameters after 3 SGD-momentum steps and after 3 AdamW
 * steps, and each loss layer's loss and input/target gradients for every
 * reduction. Tolerance |got - want| <= 1e-6 + 1e-5 |want|; the worst relative
 * error of each kind (over elements with |want| >= 1e-3) is printed at the end.
 */
#include "ag_test.h"

#define PAR_RTOL 1e-5
#define PAR_ATOL 1e-6

#ifndef NNM_AUTOGRAD_GOLDEN_DIR
#error "NNM_AUTOGRAD_GOLDEN_DIR must name tests/golden/autograd"
#endif

enum { W_OUTPUT, W_LOSS, W_GRAD, W_SGD, W_ADAMW, W_LOSSLAYER, W_N };
static double g_worst[W_N];
static const char *const g_worst_names[W_N] = {"outputs", "losses", "gradients",
                                               "params after 3 SGD-momentum steps",
                                               "params after 3 AdamW steps",
                                               "loss layers (loss and grads)"};

/* ------------------------------------------------------------------------ */
/* Golden files                                                              */
/* ------------------------------------------------------------------------ */

static nnm_safetensors *golden_open(const char *file) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", NNM_AUTOGRAD_GOLDEN_DIR, file);
    nnm_safetensors *st = NULL;
    nnm_status s = nnm_safetensors_open(g_ctx, path, &st);
    if (s != NNM_OK)
        fprintf(stderr, "\n  open %s: %s: %s\n", path, nnm_status_name(s), nnm_ctx_errmsg(g_ctx));
    return st;
}

static const char *meta(const nnm_safetensors *st, const char *key) {
    const uint32_t n = nnm_safetensors_metadata_count(st);
    for (uint32_t i = 0; i < n; i++) {
        const char *k = NULL, *v = NULL;
        if (nnm_safetensors_metadata(st, i, &k, &v) == NNM_OK && strcmp(k, key) == 0)
            return v;
    }
    return NULL;
}

static double meta_f(const nnm_safetensors *st, const char *key) {
    const char *v = meta(st, key);
    if (v == NULL) {
        fprintf(stderr, "\n  golden metadata lacks %s\n", key);
        CU_FAIL("golden metadata key missing");
        return NAN;
    }
    return strtod(v, NULL);
}

static int has(const nnm_safetensors *st, const char *name) {
    nnm_st_entry e;
    memset(&e, 0, sizeof e);
    e.struct_size = sizeof e;
    return nnm_safetensors_find(st, name, &e) == NNM_OK;
}

/* The f32 data of an entry (into the mapping); NULL if absent. */
static const float *gdata(const nnm_safetensors *st, const char *name, int64_t *n) {
    nnm_st_entry e;
    memset(&e, 0, sizeof e);
    e.struct_size = sizeof e;
    *n = 0;
    if (nnm_safetensors_find(st, name, &e) != NNM_OK || e.dtype.code != NNM_DTYPE_FLOAT ||
        e.dtype.bits != 32) {
        fprintf(stderr, "\n  golden lacks f32 tensor %s\n", name);
        return NULL;
    }
    *n = (int64_t)(e.nbytes / 4);
    return e.data;
}

/* A new tensor holding a copy of an entry (f32 or i64). */
static nnm_tensor *gtensor(const nnm_safetensors *st, const char *name) {
    nnm_st_entry e;
    memset(&e, 0, sizeof e);
    e.struct_size = sizeof e;
    if (nnm_safetensors_find(st, name, &e) != NNM_OK) {
        fprintf(stderr, "\n  golden lacks %s\n", name);
        CU_FAIL("golden tensor missing");
        return NULL;
    }
    if (e.dtype.code == NNM_DTYPE_INT && e.dtype.bits == 64)
        return tu_ti64(g_ctx, e.ndim, e.shape, e.data);
    CU_ASSERT_TRUE(e.dtype.code == NNM_DTYPE_FLOAT && e.dtype.bits == 32);
    return tu_tf32(g_ctx, e.ndim, e.shape, e.data);
}

/* Compares tensor t with golden entry `name` (shape and values). */
static void expect_golden(const nnm_safetensors *st, const char *name, nnm_tensor *t, int kind) {
    nnm_st_entry e;
    memset(&e, 0, sizeof e);
    e.struct_size = sizeof e;
    CU_ASSERT_PTR_NOT_NULL(t);
    if (t == NULL)
        return;
    if (nnm_safetensors_find(st, name, &e) != NNM_OK) {
        fprintf(stderr, "\n  golden lacks %s\n", name);
        CU_FAIL("golden tensor missing");
        return;
    }
    if (!tu_shape_is(t, e.ndim, e.shape)) {
        fprintf(stderr, "\n  %s: shape differs from PyTorch's (ndim %d vs %d)\n", name,
                (int)nnm_tensor_desc_get(t)->ndim, (int)e.ndim);
        CU_FAIL("shape differs from PyTorch's");
        return;
    }
    int64_t n = 0, ng = 0;
    float *got = tu_read_f32(t, &n);
    const float *want = gdata(st, name, &ng);
    CU_ASSERT_PTR_NOT_NULL_FATAL(got);
    CU_ASSERT_PTR_NOT_NULL_FATAL(want);
    CU_ASSERT_EQUAL_FATAL(n, ng);
    CU_ASSERT_EQUAL(ag_mismatch(name, got, want, n, PAR_RTOL, PAR_ATOL, &g_worst[kind]), 0);
    free(got);
}

/* ------------------------------------------------------------------------ */
/* Models                                                                    */
/* ------------------------------------------------------------------------ */

typedef struct model_fixture {
    const char *file;
    const char *variants[3];
    nnm_module *(*build)(void);
    const char *call_path; /* the module forward calls ("" the root) */
} model_fixture;

static nnm_module *build_mlp(void) {
    return mk_mlp(4, 8, 3);
}

static nnm_module *build_linreg(void) {
    return tu_linear(g_ctx, "linear", 3, 1, 1);
}

/* Net(used, unused): a plain container whose forward calls only `used`. */
static nnm_module *build_unused(void) {
    nnm_module *root = tu_module(g_ctx, "sequential", NULL);
    nnm_module *used = tu_linear(g_ctx, "linear", 3, 2, 1);
    nnm_module *unused = tu_linear(g_ctx, "linear", 3, 2, 1);
    if (root == NULL || used == NULL || unused == NULL ||
        nnm_module_add_child(root, "used", used) != NNM_OK ||
        nnm_module_add_child(root, "unused", unused) != NNM_OK) {
        nnm_module_release(root);
        root = NULL;
    }
    nnm_module_release(used);
    nnm_module_release(unused);
    return root;
}

static const model_fixture g_models[] = {
    {"mlp_ce.safetensors", {"plain", "smooth", NULL}, build_mlp, ""},
    {"linreg_mse.safetensors", {"mse", NULL, NULL}, build_linreg, ""},
    {"unused.safetensors", {"ce_sum", NULL, NULL}, build_unused, "used"},
};

/* The loss layer of variant v, from the file's metadata. */
static nnm_module *variant_loss(const nnm_safetensors *st, const char *v) {
    char k[128];
    snprintf(k, sizeof k, "%s.loss_layer", v);
    const char *layer = meta(st, k);
    snprintf(k, sizeof k, "%s.reduction", v);
    const char *red = meta(st, k);
    CU_ASSERT_PTR_NOT_NULL(layer);
    CU_ASSERT_PTR_NOT_NULL(red);
    if (layer == NULL || red == NULL)
        return NULL;
    int64_t ignore = INT64_MIN;
    double ls = -1;
    snprintf(k, sizeof k, "%s.ignore_index", v);
    if (meta(st, k) != NULL)
        ignore = strtoll(meta(st, k), NULL, 10);
    snprintf(k, sizeof k, "%s.label_smoothing", v);
    if (meta(st, k) != NULL)
        ls = strtod(meta(st, k), NULL);
    return mk_loss(layer, red, ignore, ls);
}

/* Sets every parameter to the golden's init.<name>. */
static void load_init(const nnm_safetensors *st, const tu_named *pl) {
    for (int i = 0; i < pl->n; i++) {
        char k[96];
        snprintf(k, sizeof k, "init.%s", pl->names[i]);
        int64_t n = 0;
        const float *v = gdata(st, k, &n);
        CU_ASSERT_PTR_NOT_NULL_FATAL(v);
        CU_ASSERT_TRUE(tu_write_f32(pl->t[i], v, (size_t)n));
    }
}

/* forward + loss; *out the model output (may be NULL), returns the loss. */
static nnm_tensor *model_loss(nnm_module *fwd, nnm_module *lossm, nnm_tensor *x, nnm_tensor *t,
                              nnm_tensor **out) {
    nnm_tensor *y = NULL, *loss = NULL;
    CHECK_STATUS(tu_call1(fwd, x, &y), NNM_OK);
    if (y != NULL)
        CHECK_STATUS(tu_call2(lossm, y, t, &loss), NNM_OK);
    if (out != NULL)
        *out = y;
    else
        nnm_tensor_release(y);
    return loss;
}

/* Three steps of {zero_grad, forward, loss, backward, step} with `opt`. */
static void run_steps(const nnm_safetensors *st, const char *v, const char *opt_name,
                      nnm_optim *opt, nnm_module *fwd, nnm_module *lossm, nnm_tensor *x,
                      nnm_tensor *t) {
    const int steps = (int)meta_f(st, "steps");
    CU_ASSERT_EQUAL_FATAL(steps, 3);
    float losses[3] = {0};
    for (int s = 0; s < steps; s++) {
        CHECK_STATUS(nnm_optim_zero_grad(opt), NNM_OK);
        nnm_tensor *loss = model_loss(fwd, lossm, x, t, NULL);
        CU_ASSERT_PTR_NOT_NULL_FATAL(loss);
        losses[s] = (float)scalar_of(loss);
        CHECK_STATUS(nnm_backward(loss, NULL, 0), NNM_OK);
        nnm_tensor_release(loss);
        CHECK_STATUS(nnm_optim_step(opt), NNM_OK);
    }
    char k[128];
    snprintf(k, sizeof k, "%s.%s_losses", v, opt_name);
    int64_t n = 0;
    const float *want = gdata(st, k, &n);
    CU_ASSERT_EQUAL_FATAL(n, steps);
    CU_ASSERT_EQUAL(ag_mismatch(k, losses, want, n, PAR_RTOL, PAR_ATOL, &g_worst[W_LOSS]), 0);
}

static void check_params_after(const nnm_safetensors *st, const tu_named *pl, const char *v,
                               const char *opt_name, int kind) {
    for (int i = 0; i < pl->n; i++) {
        char k[128];
        snprintf(k, sizeof k, "%s.%s.%s", v, opt_name, pl->names[i]);
        expect_golden(st, k, pl->t[i], kind);
    }
}

static void check_model(const model_fixture *f) {
    LEAK_CHECK_BEGIN();
    nnm_safetensors *st = golden_open(f->file);
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    nnm_module *root = f->build();
    CU_ASSERT_PTR_NOT_NULL_FATAL(root);
    nnm_module *fwd = f->call_path[0] ? nnm_module_get(root, f->call_path) : root;
    CU_ASSERT_PTR_NOT_NULL_FATAL(fwd);
    tu_named pl = tu_params_of(root);

    /* Parameter names are PyTorch's state_dict keys, in order. */
    char keys[512] = "";
    for (int i = 0; i < pl.n; i++)
        snprintf(keys + strlen(keys), sizeof keys - strlen(keys), "%s%s", i ? "," : "",
                 pl.names[i]);
    const char *want_keys = meta(st, "state_dict_keys");
    CU_ASSERT_PTR_NOT_NULL_FATAL(want_keys);
    if (strcmp(keys, want_keys) != 0)
        fprintf(stderr, "\n  %s: parameters %s, PyTorch %s\n", f->file, keys, want_keys);
    CU_ASSERT_STRING_EQUAL(keys, want_keys);

    nnm_tensor *x = gtensor(st, "input");
    nnm_tensor *t = gtensor(st, "target");
    CU_ASSERT_PTR_NOT_NULL_FATAL(x);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);

    for (int vi = 0; vi < 3 && f->variants[vi] != NULL; vi++) {
        const char *v = f->variants[vi];
        char k[128];
        nnm_module *lossm = variant_loss(st, v);
        CU_ASSERT_PTR_NOT_NULL_FATAL(lossm);

        /* One forward/backward from the initial weights. */
        load_init(st, &pl);
        CHECK_STATUS(nnm_module_zero_grad(root), NNM_OK);
        nnm_tensor *y = NULL;
        nnm_tensor *loss = model_loss(fwd, lossm, x, t, &y);
        CU_ASSERT_PTR_NOT_NULL_FATAL(loss);
        if (vi == 0)
            expect_golden(st, "output", y, W_OUTPUT);
        snprintf(k, sizeof k, "%s.loss", v);
        expect_golden(st, k, loss, W_LOSS);
        CU_ASSERT_TRUE(nnm_tensor_requires_grad(loss));
        CHECK_STATUS(nnm_backward(loss, NULL, 0), NNM_OK);
        nnm_tensor_release(loss);
        nnm_tensor_release(y);
        for (int i = 0; i < pl.n; i++) {
            snprintf(k, sizeof k, "%s.grad.%s", v, pl.names[i]);
            nnm_tensor *g = nnm_tensor_grad(pl.t[i]);
            if (has(st, k)) {
                if (g == NULL)
                    fprintf(stderr, "\n  %s: %s has no gradient\n", f->file, pl.names[i]);
                CU_ASSERT_PTR_NOT_NULL(g);
                expect_golden(st, k, g, W_GRAD);
            } else {
                /* PyTorch leaves .grad None for a parameter the loss never
                 * touched; so must nnmod. */
                if (g != NULL)
                    fprintf(stderr, "\n  %s: unused %s got a gradient\n", f->file, pl.names[i]);
                CU_ASSERT_PTR_NULL(g);
            }
        }
        CU_ASSERT_PTR_NULL(nnm_tensor_grad(x)); /* inputs never asked for one */

        /* 3 SGD-momentum steps. */
        load_init(st, &pl);
        CHECK_STATUS(nnm_module_zero_grad(root), NNM_OK);
        nnm_sgd_options so = {sizeof so, 0, meta_f(st, "sgd.lr"), meta_f(st, "sgd.momentum"), 0.0,
                              meta_f(st, "sgd.weight_decay")};
        nnm_optim *opt = NULL;
        CHECK_STATUS(nnm_optim_sgd_new(root, &so, &opt), NNM_OK);
        if (opt != NULL) {
            run_steps(st, v, "sgd", opt, fwd, lossm, x, t);
            check_params_after(st, &pl, v, "sgd", W_SGD);
        }
        nnm_optim_free(opt);

        /* 3 AdamW steps. */
        load_init(st, &pl);
        CHECK_STATUS(nnm_module_zero_grad(root), NNM_OK);
        nnm_adam_options ao = {sizeof ao, 0, 1, 0, meta_f(st, "adamw.lr"),
                               meta_f(st, "adamw.beta1"), meta_f(st, "adamw.beta2"),
                               meta_f(st, "adamw.eps"), meta_f(st, "adamw.weight_decay")};
        opt = NULL;
        CHECK_STATUS(nnm_optim_adam_new(root, &ao, &opt), NNM_OK);
        if (opt != NULL) {
            run_steps(st, v, "adamw", opt, fwd, lossm, x, t);
            check_params_after(st, &pl, v, "adamw", W_ADAMW);
        }
        nnm_optim_free(opt);
        CHECK_STATUS(nnm_module_zero_grad(root), NNM_OK);
        nnm_module_release(lossm);
    }
    nnm_tensor_release(x);
    nnm_tensor_release(t);
    nnm_module_release(root);
    nnm_safetensors_close(st);
    LEAK_CHECK_END();
}

static void test_mlp_cross_entropy(void) {
    check_model(&g_models[0]);
}

static void test_linreg_mse(void) {
    check_model(&g_models[1]);
}

static void test_unused_parameter(void) {
    check_model(&g_models[2]);
}

/* ------------------------------------------------------------------------ */
/* Loss layers on their own                                                  */
/* ------------------------------------------------------------------------ */

/* Makes the layer of a config string "layer;key=value;...". */
static nnm_module *loss_from_spec(const char *spec) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", spec);
    const char *layer = buf, *red = NULL;
    int64_t ignore = INT64_MIN;
    double ls = -1;
    /* "layer;k=v;k=v": split at every ';' in place */
    char *kv = strchr(buf, ';');
    if (kv != NULL)
        *kv++ = '\0';
    while (kv != NULL) {
        char *next = strchr(kv, ';');
        if (next != NULL)
            *next++ = '\0';
        char *eq = strchr(kv, '=');
        if (eq != NULL) {
            *eq = '\0';
            if (strcmp(kv, "reduction") == 0)
                red = eq + 1;
            else if (strcmp(kv, "ignore_index") == 0)
                ignore = strtoll(eq + 1, NULL, 10);
            else if (strcmp(kv, "label_smoothing") == 0)
                ls = strtod(eq + 1, NULL);
            else
                CU_FAIL("unknown key in a loss spec");
        }
        kv = next;
    }
    return layer ? mk_loss(layer, red, ignore, ls) : NULL;
}

static void check_loss_case(const nnm_safetensors *st, const char *key, const char *spec) {
    char cs[64], k[160];
    const char *dot = strchr(key, '.');
    CU_ASSERT_PTR_NOT_NULL_FATAL(dot);
    snprintf(cs, sizeof cs, "%.*s", (int)(dot - key), key);
    nnm_module *m = loss_from_spec(spec);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    snprintf(k, sizeof k, "%s.input", cs);
    nnm_tensor *x = gtensor(st, k);
    snprintf(k, sizeof k, "%s.target", cs);
    nnm_tensor *t = gtensor(st, k);
    snprintf(k, sizeof k, "%s.grad_target", key);
    const int target_grad = has(st, k);
    CU_ASSERT_PTR_NOT_NULL_FATAL(x);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    CHECK_STATUS(nnm_tensor_set_requires_grad(x, 1), NNM_OK);
    if (target_grad)
        CHECK_STATUS(nnm_tensor_set_requires_grad(t, 1), NNM_OK);
    nnm_tensor *loss = NULL;
    CHECK_STATUS(tu_call2(m, x, t, &loss), NNM_OK);
    if (loss != NULL) {
        snprintf(k, sizeof k, "%s.loss", key);
        expect_golden(st, k, loss, W_LOSSLAYER);
        nnm_tensor *gout = NULL;
        if (strstr(spec, "reduction=none") != NULL) {
            snprintf(k, sizeof k, "%s.gout", cs);
            gout = gtensor(st, k);
        }
        CHECK_STATUS(nnm_backward(loss, gout, 0), NNM_OK);
        nnm_tensor_release(gout);
        snprintf(k, sizeof k, "%s.grad_input", key);
        expect_golden(st, k, nnm_tensor_grad(x), W_LOSSLAYER);
        if (target_grad) {
            snprintf(k, sizeof k, "%s.grad_target", key);
            expect_golden(st, k, nnm_tensor_grad(t), W_LOSSLAYER);
        } else {
            CU_ASSERT_PTR_NULL(nnm_tensor_grad(t));
        }
    }
    nnm_tensor_release(loss);
    nnm_tensor_release(x);
    nnm_tensor_release(t);
    nnm_module_release(m);
}

static void test_loss_layers(void) {
    LEAK_CHECK_BEGIN();
    nnm_safetensors *st = golden_open("losses.safetensors");
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    const uint32_t n = nnm_safetensors_metadata_count(st);
    int cases = 0;
    for (uint32_t i = 0; i < n; i++) {
        const char *k = NULL, *v = NULL;
        CU_ASSERT_EQUAL(nnm_safetensors_metadata(st, i, &k, &v), NNM_OK);
        if (k == NULL || v == NULL || strchr(v, ';') == NULL)
            continue; /* torch_version and the like */
        check_loss_case(st, k, v);
        cases++;
    }
    CU_ASSERT_EQUAL(cases, 27); /* every case make_golden.py writes */
    printf(" [%d loss cases] ", cases);
    nnm_safetensors_close(st);
    LEAK_CHECK_END();
}

int main(void) {
    CU_pSuite s = tu_suite("autograd parity with PyTorch", ag_suite_init, ag_suite_clean);
    if (s == NULL)
        return 2;
    CU_add_test(s, "MLP + cross-entropy (ignore_index, label smoothing)", test_mlp_cross_entropy);
    CU_add_test(s, "linear regression + MSE", test_linreg_mse);
    CU_add_test(s, "unused parameter keeps no gradient", test_unused_parameter);
    CU_add_test(s, "loss layers, every reduction", test_loss_layers);
    int rc = tu_run();
    printf("\nworst relative error vs PyTorch, elements with |want| >= 1e-3 "
           "(tolerance %g + %g * |want|):\n", PAR_ATOL, PAR_RTOL);
    for (int i = 0; i < W_N; i++)
        printf("  %-36s %.3g\n", g_worst_names[i], g_worst[i]);
    return rc;
}
