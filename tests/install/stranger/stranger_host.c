/* stranger_host.c - an application of the installed nnmod (nnmod.h only) that
 * uses the plugins of this folder the way docs/writing-a-plugin.md says, and
 * checks what the docs promise (tests/install/stranger):
 *
 *   stranger_host LAYERS.so CXX.so FUTURE.so PICKY.so MAJOR2.so WORKDIR
 *
 * - scaled_tanh (own backward) and scaled_tanh_auto (composed): forward
 *   against the formula, input and parameter gradients against central
 *   finite differences through the public API, and against each other;
 * - track_mean: running_mean and the i64 num_batches_tracked after two
 *   training calls, the eval output, the gradient in both modes, a state dict
 *   round trip through safetensors (nnm_module_save / nnm_module_load), a
 *   size mismatch refused with a report, the input check's message;
 * - the C++ softsign: values, an i64 input, the learned alpha's gradient;
 * - config errors through the declared schema name the key;
 * - version negotiation: a plugin of a later minor loads and runs; one that
 *   refuses this runtime and one of another major fail with NNM_E_VERSION
 *   and a message naming the file and both versions.
 * Exits 0 and prints "stranger_host: all checks passed".
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nnmod/nnmod.h>

static int n_failed;

#define CHECK(cond, ...)                                                                  \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "%s:%d: FAIL: ", __FILE__, __LINE__);                         \
            fprintf(stderr, __VA_ARGS__);                                                 \
            fputc('\n', stderr);                                                          \
            n_failed++;                                                                   \
        }                                                                                 \
    } while (0)

/* a call that must succeed; on failure print the context's message and go on */
#define OK(ctx, call)                                                                     \
    do {                                                                                  \
        nnm_status st_ = (call);                                                          \
        CHECK(st_ == NNM_OK, "%s: %s: %s", #call, nnm_status_name(st_), nnm_ctx_errmsg(ctx)); \
    } while (0)

static nnm_tensor *tensor(nnm_ctx *ctx, int32_t ndim, const int64_t *shape, const float *v) {
    nnm_tensor *t = NULL;
    OK(ctx, nnm_tensor_from_f32(ctx, ndim, shape, v, &t));
    return t;
}

/* the value of a one-element tensor */
static float read1(nnm_tensor *t) {
    float v = NAN;
    if (t)
        nnm_tensor_to_f32(t, &v, 1);
    return v;
}

/* ---- a parameter by name --------------------------------------------------- */

struct find {
    const char *name;
    nnm_tensor *t;
};

static nnm_status find_visit(void *user, const char *name, nnm_tensor *t) {
    struct find *f = user;
    if (strcmp(name, f->name) == 0)
        f->t = t;
    return NNM_OK;
}

static nnm_tensor *param(nnm_module *m, const char *name) {
    struct find f = {name, NULL};
    nnm_module_named_parameters(m, find_visit, &f);
    return f.t;
}

static nnm_tensor *buffer(nnm_module *m, const char *name) {
    struct find f = {name, NULL};
    nnm_module_named_buffers(m, find_visit, &f);
    return f.t;
}

/* ---- gradient check --------------------------------------------------------- */

/* loss = sum(m(x) * w): its value (grad mode off) */
static double loss_value(nnm_ctx *ctx, nnm_module *m, nnm_tensor *x, nnm_tensor *w) {
    nnm_tensor *y = NULL, *p = NULL, *s = NULL;
    double v = NAN;
    int was = nnm_grad_set_enabled(0);
    OK(ctx, nnm_module_call(m, &x, 1, &y, 1));
    if (y)
        OK(ctx, nnm_op_binary(ctx, NNM_BINARY_MUL, y, w, &p));
    if (p)
        OK(ctx, nnm_op_reduce(ctx, NNM_REDUCE_SUM, p, NULL, 0, 0, &s));
    if (s)
        v = read1(s);
    nnm_tensor_release(s);
    nnm_tensor_release(p);
    nnm_tensor_release(y);
    nnm_grad_set_enabled(was);
    return v;
}

/* Backward's gradients of sum(m(x) * w) for x [2, 3] and for the parameter
 * `pname` (NULL: none) against central differences in f32 around the values.
 * The parameter is moved through the public API: a state dict entry with
 * the perturbed value, loaded with nnm_module_load_state_dict. gx and gp
 * (may be NULL) receive backward's gradients. */
static void gradcheck(nnm_ctx *ctx, nnm_module *m, const float *xv, const char *pname, float *gx_out,
                      float *gp_out, const char *what) {
    const int64_t shape[2] = {2, 3};
    const float wv[6] = {0.3f, -1.2f, 0.7f, 1.1f, -0.4f, 0.9f};
    const double eps = 1e-2, rtol = 1e-2, atol = 1e-3;
    nnm_tensor *x = tensor(ctx, 2, shape, xv), *w = tensor(ctx, 2, shape, wv);
    nnm_tensor *y = NULL, *p = NULL, *s = NULL;
    float gx[6] = {0}, gp = NAN;
    OK(ctx, nnm_tensor_set_requires_grad(x, 1));
    OK(ctx, nnm_module_zero_grad(m));
    OK(ctx, nnm_module_call(m, &x, 1, &y, 1));
    if (y)
        OK(ctx, nnm_op_binary(ctx, NNM_BINARY_MUL, y, w, &p));
    if (p)
        OK(ctx, nnm_op_reduce(ctx, NNM_REDUCE_SUM, p, NULL, 0, 0, &s));
    if (s)
        OK(ctx, nnm_backward(s, NULL, 0));
    CHECK(nnm_tensor_grad(x) != NULL, "%s: x has no gradient", what);
    if (nnm_tensor_grad(x))
        OK(ctx, nnm_tensor_to_f32(nnm_tensor_grad(x), gx, 6));
    nnm_tensor_release(s);
    nnm_tensor_release(p);
    nnm_tensor_release(y);

    for (int i = 0; i < 6; i++) {
        float v[6];
        memcpy(v, xv, sizeof v);
        v[i] = xv[i] + (float)eps;
        nnm_tensor *xu = tensor(ctx, 2, shape, v);
        v[i] = xv[i] - (float)eps;
        nnm_tensor *xd = tensor(ctx, 2, shape, v);
        double fd = (loss_value(ctx, m, xu, w) - loss_value(ctx, m, xd, w)) / (2 * eps);
        CHECK(fabs(gx[i] - fd) <= atol + rtol * fabs(fd), "%s: x[%d]: backward %g, finite differences %g",
              what, i, gx[i], fd);
        nnm_tensor_release(xu);
        nnm_tensor_release(xd);
    }
    if (pname) {
        nnm_tensor *pt = param(m, pname);
        CHECK(pt != NULL, "%s: no parameter '%s'", what, pname);
        CHECK(pt && nnm_tensor_grad(pt) != NULL, "%s: %s has no gradient", what, pname);
        if (pt && nnm_tensor_grad(pt)) {
            const float p0 = read1(pt);
            const int64_t one[1] = {1};
            double l[2];
            gp = read1(nnm_tensor_grad(pt));
            for (int k = 0; k < 2; k++) {
                float pv = p0 + (float)(k == 0 ? eps : -eps);
                nnm_state_dict *sd = NULL;
                nnm_tensor *t = tensor(ctx, 1, one, &pv);
                OK(ctx, nnm_state_dict_new(ctx, &sd));
                OK(ctx, nnm_state_dict_set(sd, pname, t));
                OK(ctx, nnm_module_load_state_dict(m, sd, 0, NULL));
                l[k] = loss_value(ctx, m, x, w);
                nnm_state_dict_free(sd);
                nnm_tensor_release(t);
            }
            {   /* put it back */
                nnm_state_dict *sd = NULL;
                nnm_tensor *t = tensor(ctx, 1, one, &p0);
                OK(ctx, nnm_state_dict_new(ctx, &sd));
                OK(ctx, nnm_state_dict_set(sd, pname, t));
                OK(ctx, nnm_module_load_state_dict(m, sd, 0, NULL));
                nnm_state_dict_free(sd);
                nnm_tensor_release(t);
            }
            double fd = (l[0] - l[1]) / (2 * eps);
            CHECK(fabs(gp - fd) <= atol + rtol * fabs(fd), "%s: %s: backward %g, finite differences %g",
                  what, pname, gp, fd);
        }
    }
    if (gx_out)
        memcpy(gx_out, gx, sizeof gx);
    if (gp_out)
        *gp_out = gp;
    nnm_tensor_release(x);
    nnm_tensor_release(w);
}

static nnm_module *create(nnm_ctx *ctx, const char *request, nnm_config *cfg) {
    nnm_module *m = NULL;
    OK(ctx, nnm_module_create(ctx, request, cfg, &m));
    return m;
}

/* ---- the checks --------------------------------------------------------------- */

static const float XV[6] = {-1.5f, -0.25f, 0.5f, 1.0f, 2.0f, 0.125f};

static void check_scaled_tanh(nnm_ctx *ctx) {
    nnm_config *cfg = NULL;
    char repr[256];
    OK(ctx, nnm_config_new(&cfg));
    OK(ctx, nnm_config_set_float(cfg, "init_scale", 1.5));
    nnm_module *own = create(ctx, "stranger.scaled_tanh@^1", cfg);
    nnm_module *autom = create(ctx, "stranger.scaled_tanh_auto@^1", cfg);
    nnm_config_free(cfg);
    if (!own || !autom)
        return;
    nnm_module_repr(own, repr, sizeof repr);
    CHECK(strcmp(repr, "ScaledTanh(init_scale=1.5)  # 1 params\nTotal params: 1\n") == 0, "repr: '%s'", repr);
    nnm_module_repr(autom, repr, sizeof repr);
    CHECK(strcmp(repr, "ScaledTanhAuto(init_scale=1.5)  # 1 params\nTotal params: 1\n") == 0, "repr: '%s'", repr);

    /* forward */
    const int64_t shape[2] = {2, 3};
    nnm_tensor *x = tensor(ctx, 2, shape, XV), *y = NULL;
    float yv[6];
    OK(ctx, nnm_module_call(own, &x, 1, &y, 1));
    if (y) {
        OK(ctx, nnm_tensor_to_f32(y, yv, 6));
        for (int i = 0; i < 6; i++)
            CHECK(fabsf(yv[i] - 1.5f * tanhf(XV[i])) < 1e-6f, "scaled_tanh[%d] = %g", i, yv[i]);
    }
    nnm_tensor_release(y);
    nnm_tensor_release(x);

    /* gradients: each against finite differences, then against each other */
    float gx_own[6], gx_auto[6], gs_own, gs_auto;
    gradcheck(ctx, own, XV, "scale", gx_own, &gs_own, "scaled_tanh");
    gradcheck(ctx, autom, XV, "scale", gx_auto, &gs_auto, "scaled_tanh_auto");
    for (int i = 0; i < 6; i++)
        CHECK(fabsf(gx_own[i] - gx_auto[i]) < 1e-5f, "x[%d]: own backward %g, autograd %g", i, gx_own[i],
              gx_auto[i]);
    CHECK(fabsf(gs_own - gs_auto) < 1e-5f, "scale: own backward %g, autograd %g", gs_own, gs_auto);

    /* a frozen scale gets no gradient from the own backward (accumulate_grad) */
    OK(ctx, nnm_module_requires_grad_(own, 0));
    OK(ctx, nnm_module_zero_grad(own));
    {
        nnm_tensor *xx = tensor(ctx, 2, shape, XV), *yy = NULL, *ss = NULL;
        OK(ctx, nnm_tensor_set_requires_grad(xx, 1));
        OK(ctx, nnm_module_call(own, &xx, 1, &yy, 1));
        if (yy)
            OK(ctx, nnm_op_reduce(ctx, NNM_REDUCE_SUM, yy, NULL, 0, 0, &ss));
        if (ss)
            OK(ctx, nnm_backward(ss, NULL, 0));
        CHECK(nnm_tensor_grad(xx) != NULL, "frozen scale: x lost its gradient");
        CHECK(param(own, "scale") && nnm_tensor_grad(param(own, "scale")) == NULL,
              "frozen scale got a gradient");
        nnm_tensor_release(ss);
        nnm_tensor_release(yy);
        nnm_tensor_release(xx);
    }
    nnm_module_release(own);
    nnm_module_release(autom);
}

static void check_track_mean(nnm_ctx *ctx, const char *workdir) {
    nnm_config *cfg = NULL;
    char path[1024], repr[256];
    OK(ctx, nnm_config_new(&cfg));
    OK(ctx, nnm_config_set_int(cfg, "num_features", 3));
    OK(ctx, nnm_config_set_float(cfg, "momentum", 0.5));
    nnm_module *m = create(ctx, "stranger.track_mean", cfg);
    nnm_module *m2 = create(ctx, "stranger.track_mean", cfg);
    nnm_config_free(cfg);
    if (!m || !m2)
        return;
    nnm_module_repr(m, repr, sizeof repr);
    CHECK(strcmp(repr, "TrackMean(3, momentum=0.5)\nTotal params: 0\n") == 0, "repr: '%s'", repr);

    /* two training calls: batch means {-0.5, 0.875, 0.3125} and {1, 2, 3} */
    const int64_t shape[2] = {2, 3};
    const float b2[6] = {0, 1, 2, 2, 3, 4};
    nnm_tensor *x1 = tensor(ctx, 2, shape, XV), *x2 = tensor(ctx, 2, shape, b2), *y = NULL;
    OK(ctx, nnm_module_call(m, &x1, 1, &y, 1));
    nnm_tensor_release(y), y = NULL;
    OK(ctx, nnm_module_call(m, &x2, 1, &y, 1));
    if (y) {
        float yv[6];
        OK(ctx, nnm_tensor_to_f32(y, yv, 6));
        for (int i = 0; i < 6; i++)
            CHECK(fabsf(yv[i] - (b2[i] - (float)(1 + i % 3))) < 1e-6f, "train y[%d] = %g", i, yv[i]);
    }
    nnm_tensor_release(y), y = NULL;
    /* 0.5 * (0.5 * mean1) + 0.5 * mean2 */
    const float want_rm[3] = {0.25f * -0.25f + 0.5f, 0.25f * 0.875f + 1.0f, 0.25f * 0.3125f + 1.5f};
    float rm[3] = {NAN, NAN, NAN}, nbt = NAN;
    nnm_tensor *rmt = buffer(m, "running_mean"), *nbtt = buffer(m, "num_batches_tracked");
    CHECK(rmt && nbtt, "buffers running_mean / num_batches_tracked missing");
    if (rmt)
        OK(ctx, nnm_tensor_to_f32(rmt, rm, 3));
    if (nbtt) {
        const nnm_tensor_desc *d = nnm_tensor_desc_get(nbtt);
        CHECK(d->dtype.code == NNM_DTYPE_INT && d->dtype.bits == 64 && d->ndim == 0,
              "num_batches_tracked: not a 0-d i64 tensor");
        OK(ctx, nnm_tensor_to_f32(nbtt, &nbt, 1));
    }
    for (int i = 0; i < 3; i++)
        CHECK(fabsf(rm[i] - want_rm[i]) < 1e-6f, "running_mean[%d] = %g, want %g", i, rm[i], want_rm[i]);
    CHECK(nbt == 2.0f, "num_batches_tracked = %g, want 2", nbt);

    /* the gradient in training flows through the batch mean too (on m2: the
     * training calls of a gradient check move its buffers; the load below
     * overwrites them) */
    gradcheck(ctx, m2, XV, NULL, NULL, NULL, "track_mean (train)");
    /* eval: x - running_mean, buffers unchanged */
    OK(ctx, nnm_module_train(m, 0));
    OK(ctx, nnm_module_call(m, &x2, 1, &y, 1));
    if (y) {
        float yv[6];
        OK(ctx, nnm_tensor_to_f32(y, yv, 6));
        for (int i = 0; i < 6; i++)
            CHECK(fabsf(yv[i] - (b2[i] - want_rm[i % 3])) < 1e-6f, "eval y[%d] = %g", i, yv[i]);
    }
    nnm_tensor_release(y), y = NULL;
    gradcheck(ctx, m, XV, NULL, NULL, NULL, "track_mean (eval)");

    /* state dict round trip through safetensors */
    snprintf(path, sizeof path, "%s/track_mean.safetensors", workdir);
    const nnm_kv meta[1] = {{"note", "stranger"}};
    OK(ctx, nnm_module_save(m, path, 1, meta));
    nnm_safetensors *st = NULL;
    OK(ctx, nnm_safetensors_open(ctx, path, &st));
    if (st) {
        nnm_st_entry e;
        memset(&e, 0, sizeof e);
        e.struct_size = sizeof e;
        CHECK(nnm_safetensors_count(st) == 2, "the file holds %u tensors, want 2", nnm_safetensors_count(st));
        CHECK(nnm_safetensors_find(st, "running_mean", &e) == NNM_OK && strcmp(e.dtype_name, "F32") == 0 &&
                  e.ndim == 1 && e.shape[0] == 3,
              "running_mean in the file");
        CHECK(nnm_safetensors_find(st, "num_batches_tracked", &e) == NNM_OK &&
                  strcmp(e.dtype_name, "I64") == 0 && e.ndim == 0,
              "num_batches_tracked in the file (%s, %d dims)", e.dtype_name ? e.dtype_name : "?", e.ndim);
        nnm_safetensors_close(st);
    }
    nnm_load_report *rep = NULL;
    OK(ctx, nnm_module_load(m2, path, 1, &rep));
    nnm_load_report_free(rep), rep = NULL;
    {
        float rm2[3] = {0}, nbt2 = 0;
        nnm_tensor *a = buffer(m2, "running_mean"), *b = buffer(m2, "num_batches_tracked");
        if (a)
            OK(ctx, nnm_tensor_to_f32(a, rm2, 3));
        if (b)
            OK(ctx, nnm_tensor_to_f32(b, &nbt2, 1));
        CHECK(memcmp(rm, rm2, sizeof rm) == 0 && nbt2 == 2.0f, "state dict round trip lost the buffers");
    }
    /* a module of another size refuses the file, names the key, loads nothing */
    {
        nnm_config *c4 = NULL;
        OK(ctx, nnm_config_new(&c4));
        OK(ctx, nnm_config_set_int(c4, "num_features", 4));
        nnm_module *m4 = create(ctx, "stranger.track_mean", c4);
        nnm_config_free(c4);
        if (m4) {
            nnm_status s = nnm_module_load(m4, path, 0, &rep);
            CHECK(s == NNM_E_SHAPE, "size mismatch: %s", nnm_status_name(s));
            CHECK(strstr(nnm_ctx_errmsg(ctx), "running_mean") != NULL, "size mismatch message: %s",
                  nnm_ctx_errmsg(ctx));
            CHECK(rep && rep->n_mismatched == 1, "size mismatch: report");
            nnm_load_report_free(rep), rep = NULL;
            nnm_module_release(m4);
        }
    }
    /* the input check */
    {
        const int64_t bad[2] = {2, 4};
        nnm_tensor *xb = tensor(ctx, 2, bad, NULL);
        nnm_status s = nnm_module_call(m, &xb, 1, &y, 1);
        CHECK(s == NNM_E_SHAPE && strstr(nnm_ctx_errmsg(ctx), "expected input [*, 3], got [2, 4]"),
              "input check: %s: %s", nnm_status_name(s), nnm_ctx_errmsg(ctx));
        nnm_tensor_release(xb);
    }
    nnm_tensor_release(x1);
    nnm_tensor_release(x2);
    nnm_module_release(m);
    nnm_module_release(m2);
}

static void check_softsign(nnm_ctx *ctx) {
    nnm_config *cfg = NULL;
    OK(ctx, nnm_config_new(&cfg));
    OK(ctx, nnm_config_set_float(cfg, "alpha", 2.0));
    nnm_module *m = create(ctx, "stranger_cxx.softsign", cfg);
    OK(ctx, nnm_config_set_bool(cfg, "learn_alpha", 1));
    nnm_module *ml = create(ctx, "stranger_cxx.softsign", cfg);
    nnm_config_free(cfg);
    if (!m || !ml)
        return;
    const int64_t shape[2] = {2, 3};
    const int64_t iv[6] = {-3, -1, 0, 1, 2, 5};
    nnm_tensor *x = tensor(ctx, 2, shape, XV), *xi = NULL, *y = NULL;
    float yv[6];
    OK(ctx, nnm_module_call(m, &x, 1, &y, 1));
    if (y) {
        OK(ctx, nnm_tensor_to_f32(y, yv, 6));
        for (int i = 0; i < 6; i++)
            CHECK(fabsf(yv[i] - 2.0f * XV[i] / (1 + fabsf(XV[i]))) < 1e-6f, "softsign[%d] = %g", i, yv[i]);
    }
    nnm_tensor_release(y), y = NULL;
    OK(ctx, nnm_tensor_from_i64(ctx, 2, shape, iv, &xi));
    OK(ctx, nnm_module_call(m, &xi, 1, &y, 1));
    if (y) {
        OK(ctx, nnm_tensor_to_f32(y, yv, 6));
        for (int i = 0; i < 6; i++)
            CHECK(fabsf(yv[i] - 2.0f * (float)iv[i] / (1 + fabsf((float)iv[i]))) < 1e-6f,
                  "softsign(i64)[%d] = %g", i, yv[i]);
    }
    nnm_tensor_release(y);
    gradcheck(ctx, ml, XV, "alpha", NULL, NULL, "softsign");
    nnm_tensor_release(x);
    nnm_tensor_release(xi);
    nnm_module_release(m);
    nnm_module_release(ml);
}

static void check_config_errors(nnm_ctx *ctx) {
    nnm_config *cfg = NULL;
    nnm_module *m = NULL;
    nnm_status s;
    OK(ctx, nnm_config_new(&cfg));
    OK(ctx, nnm_config_set_str(cfg, "init_scale", "big"));
    s = nnm_module_create(ctx, "stranger.scaled_tanh", cfg, &m);
    CHECK(s == NNM_E_TYPE && strstr(nnm_ctx_errmsg(ctx), "init_scale"), "a string init_scale: %s: %s",
          nnm_status_name(s), nnm_ctx_errmsg(ctx));
    nnm_config_free(cfg);
    s = nnm_module_create(ctx, "stranger.track_mean", NULL, &m);
    CHECK(s == NNM_E_NOT_FOUND && strstr(nnm_ctx_errmsg(ctx), "num_features"),
          "track_mean without num_features: %s: %s", nnm_status_name(s), nnm_ctx_errmsg(ctx));
    OK(ctx, nnm_config_new(&cfg));
    OK(ctx, nnm_config_set_int(cfg, "num_features", 3));
    OK(ctx, nnm_config_set_int(cfg, "momentun", 1));
    s = nnm_module_create(ctx, "stranger.track_mean", cfg, &m);
    CHECK(s != NNM_OK && strstr(nnm_ctx_errmsg(ctx), "momentun"), "a misspelt key: %s: %s",
          nnm_status_name(s), nnm_ctx_errmsg(ctx));
    nnm_config_free(cfg);
    /* the plain name does not reach a layer of a declared domain */
    s = nnm_module_create(ctx, "scaled_tanh", NULL, &m);
    CHECK(s == NNM_E_NOT_FOUND && strstr(nnm_ctx_errmsg(ctx), "stranger.scaled_tanh"),
          "the plain name: %s: %s", nnm_status_name(s), nnm_ctx_errmsg(ctx));
}

static void check_versions(nnm_ctx *ctx, const char *future, const char *picky, const char *major2) {
    uint16_t maj, min;
    nnm_status s;
    char want[128];
    nnm_abi_version(&maj, &min);
    CHECK(maj == NNM_ABI_MAJOR && min == NNM_ABI_MINOR, "runtime ABI %u.%u, headers %d.%d", maj, min,
          NNM_ABI_MAJOR, NNM_ABI_MINOR);
    /* a later minor: loads, its extra slots are ignored, its layer runs */
    OK(ctx, nnm_plugin_load(ctx, future));
    nnm_module *m = create(ctx, "stranger.neg", NULL);
    if (m) {
        const int64_t shape[1] = {3};
        const float v[3] = {1, -2, 3};
        nnm_tensor *x = tensor(ctx, 1, shape, v), *y = NULL;
        OK(ctx, nnm_module_call(m, &x, 1, &y, 1));
        float yv[3] = {0};
        if (y)
            OK(ctx, nnm_tensor_to_f32(y, yv, 3));
        CHECK(yv[0] == -1.0f && yv[1] == 2.0f && yv[2] == -3.0f, "neg from a later minor: %g %g %g", yv[0],
              yv[1], yv[2]);
        nnm_tensor_release(y);
        nnm_tensor_release(x);
        nnm_module_release(m);
    }
    /* a plugin that refuses this runtime */
    s = nnm_plugin_load(ctx, picky);
    snprintf(want, sizeof want, "refused runtime ABI %u.%u", maj, min);
    CHECK(s == NNM_E_VERSION && strstr(nnm_ctx_errmsg(ctx), picky) && strstr(nnm_ctx_errmsg(ctx), want),
          "a plugin refusing this runtime: %s: %s", nnm_status_name(s), nnm_ctx_errmsg(ctx));
    /* another major */
    s = nnm_plugin_load(ctx, major2);
    snprintf(want, sizeof want, "plugin ABI %d.0 is not compatible with runtime ABI %u.%u", maj + 1, maj, min);
    CHECK(s == NNM_E_VERSION && strstr(nnm_ctx_errmsg(ctx), major2) && strstr(nnm_ctx_errmsg(ctx), want),
          "a plugin of ABI 2: %s: %s", nnm_status_name(s), nnm_ctx_errmsg(ctx));
    /* both failures are in the plugin list, with the ABI each declared */
    int seen = 0;
    for (uint32_t i = 0; i < nnm_plugin_count(ctx); i++) {
        nnm_plugin_info info;
        memset(&info, 0, sizeof info);
        info.struct_size = sizeof info;
        if (nnm_plugin_info_get(ctx, i, &info) != NNM_OK || !info.path)
            continue;
        if (strcmp(info.path, major2) == 0) {
            seen++;
            CHECK(info.status == NNM_E_VERSION && info.abi_major == maj + 1, "major2's record: %d, ABI %u.%u",
                  info.status, info.abi_major, info.abi_minor);
        } else if (strcmp(info.path, picky) == 0) {
            seen++;
            CHECK(info.status == NNM_E_VERSION, "picky's record: %d", info.status);
        } else if (strcmp(info.path, future) == 0) {
            seen++;
            CHECK(info.status == NNM_OK && info.abi_minor == min + 1, "future's record: %d, ABI %u.%u",
                  info.status, info.abi_major, info.abi_minor);
        }
    }
    CHECK(seen == 3, "%d of the 3 version plugins in the plugin list", seen);
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: %s LAYERS.so CXX.so FUTURE.so PICKY.so MAJOR2.so WORKDIR\n", argv[0]);
        return 2;
    }
    nnm_ctx *ctx = NULL;
    if (nnm_ctx_new(NULL, &ctx) != NNM_OK) { /* discovery: the installed cpu backend */
        fprintf(stderr, "nnm_ctx_new: %s\n", nnm_ctx_errmsg(ctx));
        return 1;
    }
    OK(ctx, nnm_plugin_load(ctx, argv[1]));
    OK(ctx, nnm_plugin_load(ctx, argv[2]));
    check_scaled_tanh(ctx);
    check_track_mean(ctx, argv[6]);
    check_softsign(ctx);
    check_config_errors(ctx);
    check_versions(ctx, argv[3], argv[4], argv[5]);
    nnm_ctx_free(ctx);
    if (n_failed) {
        fprintf(stderr, "stranger_host: %d checks failed\n", n_failed);
        return 1;
    }
    printf("stranger_host: all checks passed\n");
    return 0;
}
