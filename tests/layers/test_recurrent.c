/* tests/layers/test_recurrent.c - the recurrent layers (plugins/recurrent)
 * beyond the conformance suite's golden rows (tests/golden/conformance/
 * {rnn,lstm,gru,*_cell}.safetensors: forward, h_n/c_n, every gradient,
 * finite differences, repr, state names):
 *   - PyTorch's own state dicts (make_recurrent_golden.py) load with
 *     nnm_module_load(strict=1) and give PyTorch's outputs;
 *   - dropout between layers: train only, from the call context's generator
 *     (seeded contexts reproduce it, another seed does not), never after the
 *     last layer, p = 1 zeroes the next layer's input;
 *   - one autograd node per layer and direction: a long sequence's backward
 *     equals the conformance gradients' law (here: finite differences of a
 *     36-step 2-layer bidirectional LSTM);
 *   - a backend without the ABI 1.5 rnn_cell slots: NNM_E_UNSUPPORTED naming
 *     the op and the backend (and without rnn_cell_backward only when a
 *     gradient is recorded);
 *   - bad configs and inputs fail with a status and a message;
 *   - nothing leaks.
 */
#include "test_util.h"

#include <dlfcn.h>
#include <math.h>

#ifndef NNM_RECURRENT_GOLDEN_DIR
#error "NNM_RECURRENT_GOLDEN_DIR must name tests/golden/recurrent"
#endif

static nnm_ctx *g_ctx;
#define TU_CTX g_ctx

/* A cpu backend without the rnn slots (g_vt_nornn) and one without the
 * backward slot only (g_vt_nobwd), each the only CPU backend of its context. */
static void *g_cpu_dl;
static nnm_backend_vtable g_vt_nornn, g_vt_nobwd;
static const nnm_backend_vtable *const g_be_nornn[] = {&g_vt_nornn}, *const g_be_nobwd[] = {&g_vt_nobwd};
static const nnm_plugin_desc g_desc_nornn = {.struct_size = sizeof(nnm_plugin_desc),
                                             .abi_major = NNM_ABI_MAJOR,
                                             .abi_minor = NNM_ABI_MINOR,
                                             .name = "nornn",
                                             .n_backends = 1,
                                             .backends = g_be_nornn};
static const nnm_plugin_desc g_desc_nobwd = {.struct_size = sizeof(nnm_plugin_desc),
                                             .abi_major = NNM_ABI_MAJOR,
                                             .abi_minor = NNM_ABI_MINOR,
                                             .name = "nobwd",
                                             .n_backends = 1,
                                             .backends = g_be_nobwd};

/* A context of its own with `desc` as its CPU backend and the recurrent and
 * linear plugins, or NULL. */
static nnm_ctx *ctx_with(const nnm_plugin_desc *desc) {
    nnm_ctx_options o = {sizeof o, NNM_CTX_NO_DISCOVERY, 0};
    nnm_ctx *ctx = NULL;
    if (nnm_ctx_new(&o, &ctx) != NNM_OK) return NULL;
    if (nnm_plugin_register_static(ctx, desc, "test_recurrent") != NNM_OK ||
        nnm_plugin_load(ctx, NNM_TEST_RECURRENT_PLUGIN) != NNM_OK) {
        fprintf(stderr, "%s\n", nnm_ctx_errmsg(ctx));
        nnm_ctx_free(ctx);
        return NULL;
    }
    return ctx;
}

static int suite_init(void) {
    if (tu_ctx_new(&g_ctx)) return 1;
    const nnm_plugin_desc *cpu = tu_plugin_open(NNM_TEST_CPU_PLUGIN, &g_cpu_dl);
    if (!cpu || cpu->n_backends < 1) return 1;
    const nnm_backend_vtable *v = cpu->backends[0];
    memcpy(&g_vt_nornn, v, v->struct_size < sizeof g_vt_nornn ? v->struct_size : sizeof g_vt_nornn);
    g_vt_nornn.struct_size = sizeof g_vt_nornn;
    g_vt_nobwd = g_vt_nornn;
    g_vt_nornn.name = "nornn";
    g_vt_nornn.rnn_cell = NULL;
    g_vt_nornn.rnn_cell_backward = NULL;
    g_vt_nobwd.name = "nobwd";
    g_vt_nobwd.rnn_cell_backward = NULL;
    return 0;
}

static int suite_clean(void) {
    int rc = tu_ctx_free(&g_ctx);
    if (g_cpu_dl) dlclose(g_cpu_dl);
    return rc;
}

/* ---- helpers --------------------------------------------------------------- */

typedef struct kv {
    const char *key;
    char type; /* 'i' int, 'f' float, 'b' bool, 's' string */
    double num;
    const char *str;
} kv;

static nnm_module *make(nnm_ctx *ctx, const char *type, const kv *items, int n) {
    nnm_config *c = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_config_new(&c), NNM_OK);
    for (int i = 0; i < n; i++) {
        if (items[i].type == 'i') nnm_config_set_int(c, items[i].key, (int64_t)items[i].num);
        else if (items[i].type == 'f') nnm_config_set_float(c, items[i].key, items[i].num);
        else if (items[i].type == 'b') nnm_config_set_bool(c, items[i].key, items[i].num != 0);
        else nnm_config_set_str(c, items[i].key, items[i].str);
    }
    nnm_module *m = NULL;
    nnm_status st = nnm_module_create(ctx, type, c, &m);
    if (st != NNM_OK) fprintf(stderr, "\n  create %s: %s\n", type, nnm_ctx_errmsg(ctx));
    nnm_config_free(c);
    return m;
}

/* A failing create: the status and a message containing `want`. */
static void refused(const char *type, const kv *items, int n, nnm_status code, const char *want) {
    nnm_config *c = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_config_new(&c), NNM_OK);
    for (int i = 0; i < n; i++) {
        if (items[i].type == 'i') nnm_config_set_int(c, items[i].key, (int64_t)items[i].num);
        else if (items[i].type == 'f') nnm_config_set_float(c, items[i].key, items[i].num);
        else if (items[i].type == 'b') nnm_config_set_bool(c, items[i].key, items[i].num != 0);
        else nnm_config_set_str(c, items[i].key, items[i].str);
    }
    nnm_module *m = NULL;
    nnm_status st = nnm_module_create(g_ctx, type, c, &m);
    nnm_config_free(c);
    const char *msg = nnm_ctx_errmsg(g_ctx);
    if (st != code || !strstr(msg, want))
        fprintf(stderr, "\n  %s: got %s \"%s\", want %s with \"%s\"\n", type, nnm_status_name(st), msg,
                nnm_status_name(code), want);
    CU_ASSERT_EQUAL(st, code);
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, want));
    CU_ASSERT_PTR_NULL(m);
    nnm_module_release(m);
}

/* Deterministic values in [-1, 1). */
static void fill(float *p, int64_t n, unsigned seed) {
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = (float)((seed >> 8) & 0xffff) / 32768.0f - 1.0f;
    }
}

static nnm_tensor *rand_t(nnm_ctx *ctx, int32_t nd, const int64_t *shape, unsigned seed) {
    int64_t n = 1;
    for (int i = 0; i < nd; i++) n *= shape[i];
    float *buf = malloc(sizeof(float) * (size_t)(n ? n : 1));
    fill(buf, n, seed);
    nnm_tensor *t = tu_tf32(ctx, nd, shape, buf);
    free(buf);
    return t;
}

static double max_abs_diff(nnm_tensor *a, const nnm_st_entry *e) {
    int64_t n = 0;
    float *p = tu_read_f32(a, &n);
    if (!p || n * 4 != (int64_t)e->nbytes) {
        free(p);
        return INFINITY;
    }
    const float *q = e->data;
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs((double)p[i] - q[i]));
    free(p);
    return m;
}

/* ---- PyTorch state dicts, strictly --------------------------------------------- */

static void load_and_compare(const char *name, const char *type, const kv *cfg, int ncfg, int n_out) {
    char path[1024];
    nnm_module *m = make(g_ctx, type, cfg, ncfg);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    snprintf(path, sizeof path, "%s/%s.state.safetensors", NNM_RECURRENT_GOLDEN_DIR, name);
    nnm_load_report *rep = NULL;
    nnm_status st = nnm_module_load(m, path, 1, &rep);
    if (st != NNM_OK) fprintf(stderr, "\n  %s: %s\n", path, nnm_ctx_errmsg(g_ctx));
    CU_ASSERT_EQUAL(st, NNM_OK);
    nnm_load_report_free(rep);
    CU_ASSERT_EQUAL(nnm_module_train(m, 0), NNM_OK);
    snprintf(path, sizeof path, "%s/%s.io.safetensors", NNM_RECURRENT_GOLDEN_DIR, name);
    nnm_safetensors *io = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_safetensors_open(g_ctx, path, &io), NNM_OK);
    nnm_st_entry ex = {.struct_size = sizeof ex};
    CU_ASSERT_EQUAL_FATAL(nnm_safetensors_find(io, "x", &ex), NNM_OK);
    nnm_tensor *x = tu_tf32(g_ctx, ex.ndim, ex.shape, ex.data), *out[3] = {NULL, NULL, NULL};
    st = nnm_module_call(m, &x, 1, out, (uint32_t)n_out);
    if (st != NNM_OK) fprintf(stderr, "\n  %s forward: %s\n", name, nnm_ctx_errmsg(g_ctx));
    CU_ASSERT_EQUAL_FATAL(st, NNM_OK);
    static const char *const names[3] = {"y", "h_n", "c_n"};
    for (int k = 0; k < n_out; k++) {
        nnm_st_entry e = {.struct_size = sizeof e};
        CU_ASSERT_EQUAL_FATAL(nnm_safetensors_find(io, names[k], &e), NNM_OK);
        CU_ASSERT_TRUE(tu_shape_is(out[k], e.ndim, e.shape));
        const double d = max_abs_diff(out[k], &e);
        if (!(d < 2e-5)) fprintf(stderr, "\n  %s %s: max |nnmod - torch| = %g\n", name, names[k], d);
        CU_ASSERT_TRUE(d < 2e-5);
        nnm_tensor_release(out[k]);
    }
    nnm_tensor_release(x);
    nnm_safetensors_close(io);
    /* a file of another layout is refused, strictly */
    snprintf(path, sizeof path, "%s/%s.state.safetensors", NNM_RECURRENT_GOLDEN_DIR,
             strcmp(name, "gru_2layer") ? "gru_2layer" : "rnn_relu_bidir");
    CU_ASSERT_NOT_EQUAL(nnm_module_load(m, path, 1, NULL), NNM_OK);
    nnm_module_release(m);
}

static void test_pytorch_state_dicts(void) {
    LEAK_CHECK_BEGIN();
    const kv lstm[] = {{"input_size", 'i', 5, 0}, {"hidden_size", 'i', 8, 0},    {"num_layers", 'i', 2, 0},
                       {"bidirectional", 'b', 1, 0}, {"proj_size", 'i', 3, 0}, {"batch_first", 'b', 1, 0}};
    load_and_compare("lstm_proj_bidir", "lstm", lstm, 6, 3);
    const kv gru[] = {{"input_size", 'i', 4, 0}, {"hidden_size", 'i', 6, 0}, {"num_layers", 'i', 2, 0}};
    load_and_compare("gru_2layer", "gru", gru, 3, 2);
    const kv rnn[] = {{"input_size", 'i', 3, 0}, {"hidden_size", 'i', 5, 0}, {"nonlinearity", 's', 0, "relu"},
                      {"bidirectional", 'b', 1, 0}};
    load_and_compare("rnn_relu_bidir", "rnn", rnn, 4, 2);
    LEAK_CHECK_END();
}

/* ---- dropout between layers ------------------------------------------------------ */

enum { DT = 6, DB = 3, DI = 4, DH = 5 };

/* output of an lstm (2 layers, dropout p) on a fixed input in a fresh
 * context seeded `seed`, train or eval, called `calls` times (the last kept) */
static void dropout_run(uint64_t seed, double p, int layers, int train, int calls, float *y) {
    nnm_ctx_options o;
    memset(&o, 0, sizeof o);
    o.struct_size = sizeof o;
    o.seed = seed;
    nnm_ctx *ctx = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_ctx_new(&o, &ctx), NNM_OK);
    const kv cfg[] = {{"input_size", 'i', DI, 0}, {"hidden_size", 'i', DH, 0}, {"num_layers", 'i', layers, 0},
                      {"dropout", 'f', p, 0}};
    nnm_module *m = make(ctx, "lstm", cfg, 4);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    /* the same weights whatever the seed */
    nnm_state_dict *sd = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_module_state_dict(m, &sd), NNM_OK);
    for (uint32_t i = 0; i < nnm_state_dict_count(sd); i++) {
        const char *name = NULL;
        nnm_tensor *t = NULL;
        CU_ASSERT_EQUAL(nnm_state_dict_entry(sd, i, &name, &t), NNM_OK);
        const int64_t n = nnm_tensor_numel(t);
        float *buf = malloc(sizeof(float) * (size_t)n);
        fill(buf, n, 100 + i);
        for (int64_t k = 0; k < n; k++) buf[k] *= 0.5f;
        CU_ASSERT_TRUE(tu_write_f32(t, buf, (size_t)n));
        free(buf);
    }
    nnm_state_dict_free(sd);
    CU_ASSERT_EQUAL(nnm_module_train(m, train), NNM_OK);
    const int64_t xs[3] = {DT, DB, DI};
    nnm_tensor *x = rand_t(ctx, 3, xs, 7), *out = NULL;
    for (int c = 0; c < calls; c++) {
        nnm_tensor_release(out);
        out = NULL;
        CU_ASSERT_EQUAL_FATAL(nnm_module_call(m, &x, 1, &out, 1), NNM_OK);
    }
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(out, y, DT * DB * DH), NNM_OK);
    nnm_tensor_release(out);
    nnm_tensor_release(x);
    nnm_module_release(m);
    nnm_ctx_free(ctx);
}

static void test_dropout_between_layers(void) {
    static float a[DT * DB * DH], b[DT * DB * DH], c[DT * DB * DH], e1[DT * DB * DH], e2[DT * DB * DH],
        z[DT * DB * DH], n1[DT * DB * DH];
    dropout_run(42, 0.5, 2, 1, 1, a);
    dropout_run(42, 0.5, 2, 1, 1, b);
    dropout_run(43, 0.5, 2, 1, 1, c);
    CU_ASSERT_EQUAL(memcmp(a, b, sizeof a), 0);    /* seeded alike: the same masks */
    CU_ASSERT_NOT_EQUAL(memcmp(a, c, sizeof a), 0); /* another seed: others */
    dropout_run(42, 0.5, 2, 1, 2, b);               /* a second call draws new masks */
    CU_ASSERT_NOT_EQUAL(memcmp(a, b, sizeof a), 0);
    dropout_run(42, 0.5, 2, 0, 1, e1);               /* eval: no dropout, any seed */
    dropout_run(43, 0.5, 2, 0, 2, e2);
    CU_ASSERT_EQUAL(memcmp(e1, e2, sizeof e1), 0);
    CU_ASSERT_NOT_EQUAL(memcmp(a, e1, sizeof a), 0);
    dropout_run(42, 0.0, 2, 1, 1, z);                 /* p = 0 in train is eval */
    CU_ASSERT_EQUAL(memcmp(z, e1, sizeof z), 0);
    /* one layer: nothing to drop between layers (PyTorch warns), train == eval */
    dropout_run(42, 0.5, 1, 1, 1, n1);
    dropout_run(42, 0.5, 1, 0, 1, z);
    CU_ASSERT_EQUAL(memcmp(n1, z, sizeof z), 0);
    /* p = 1: layer 2 sees zeros, so its output is the same whatever layer 1 gives */
    dropout_run(42, 1.0, 2, 1, 1, a);
    dropout_run(43, 1.0, 2, 1, 1, b);
    CU_ASSERT_EQUAL(memcmp(a, b, sizeof a), 0);
    int finite = 1;
    for (int i = 0; i < DT * DB * DH; i++) finite &= isfinite(a[i]) != 0;
    CU_ASSERT_TRUE(finite);
}

/* ---- a long sequence against finite differences --------------------------------- */

/* s = sum(out * w) for an lstm; the gradient of x by backward and by central
 * differences (double sums of f32 outputs). */
static void test_long_sequence_gradcheck(void) {
    LEAK_CHECK_BEGIN();
    const kv cfg[] = {{"input_size", 'i', 3, 0}, {"hidden_size", 'i', 4, 0}, {"num_layers", 'i', 2, 0},
                      {"bidirectional", 'b', 1, 0}};
    nnm_module *m = make(g_ctx, "lstm", cfg, 4);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    enum { T = 36, B = 2, I = 3, O = 8 };
    const int64_t xs[3] = {T, B, I}, ws[3] = {T, B, O};
    static float xv[T * B * I], wv[T * B * O], yv[T * B * O], gx[T * B * I];
    fill(xv, T * B * I, 11);
    fill(wv, T * B * O, 12);
    nnm_tensor *x = tu_tf32(g_ctx, 3, xs, xv), *w = tu_tf32(g_ctx, 3, ws, wv), *y = NULL;
    CU_ASSERT_EQUAL(nnm_tensor_set_requires_grad(x, 1), NNM_OK);
    CU_ASSERT_EQUAL_FATAL(nnm_module_call(m, &x, 1, &y, 1), NNM_OK);
    CU_ASSERT_EQUAL_FATAL(nnm_backward(y, w, 0), NNM_OK);
    nnm_tensor *g = nnm_tensor_grad(x);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    CU_ASSERT_EQUAL(nnm_tensor_to_f32(g, gx, T * B * I), NNM_OK);
    nnm_tensor_release(y);
    y = NULL;
    int prev = nnm_grad_set_enabled(0);
    double worst = 0;
    const int probe[6] = {0, 5, T * B * I / 2, T * B * I - 7, T * B * I - 1, 3 * B * I + 1};
    for (int k = 0; k < 6; k++) {
        double s[2];
        for (int sgn = 0; sgn < 2; sgn++) {
            float xp[T * B * I];
            memcpy(xp, xv, sizeof xp);
            xp[probe[k]] += sgn ? -1e-2f : 1e-2f;
            nnm_tensor *xt = tu_tf32(g_ctx, 3, xs, xp);
            CU_ASSERT_EQUAL_FATAL(nnm_module_call(m, &xt, 1, &y, 1), NNM_OK);
            CU_ASSERT_EQUAL(nnm_tensor_to_f32(y, yv, T * B * O), NNM_OK);
            s[sgn] = 0;
            for (int i = 0; i < T * B * O; i++) s[sgn] += (double)yv[i] * wv[i];
            nnm_tensor_release(y);
            nnm_tensor_release(xt);
            y = NULL;
        }
        const double fd = (s[0] - s[1]) / 2e-2, err = fabs(fd - gx[probe[k]]) / (2e-3 + 1e-2 * fabs(fd));
        worst = fmax(worst, err);
    }
    nnm_grad_set_enabled(prev);
    if (!(worst < 1)) fprintf(stderr, "\n  long sequence gradcheck: worst error / tolerance %g\n", worst);
    CU_ASSERT_TRUE(worst < 1);
    nnm_tensor_release(x);
    nnm_tensor_release(w);
    nnm_module_release(m);
    LEAK_CHECK_END();
}

/* ---- a backend without the slots -------------------------------------------------- */

static void test_backend_without_rnn_slots(void) {
    nnm_ctx *ctx = ctx_with(&g_desc_nornn);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
    const kv cfg[] = {{"input_size", 'i', 3, 0}, {"hidden_size", 'i', 4, 0}};
    const char *types[3] = {"lstm", "gru_cell", "rnn"};
    for (int k = 0; k < 3; k++) {
        nnm_module *m = make(ctx, types[k], cfg, 2);
        CU_ASSERT_PTR_NOT_NULL_FATAL(m);
        const int64_t xs3[3] = {2, 1, 3}, xs2[2] = {1, 3};
        nnm_tensor *x = rand_t(ctx, k == 1 ? 2 : 3, k == 1 ? xs2 : xs3, 3), *y = NULL;
        nnm_status st = nnm_module_call(m, &x, 1, &y, 1);
        const char *msg = nnm_ctx_errmsg(ctx);
        if (st != NNM_E_UNSUPPORTED || !strstr(msg, "rnn_cell") || !strstr(msg, "nornn"))
            fprintf(stderr, "\n  %s: %s \"%s\"\n", types[k], nnm_status_name(st), msg);
        CU_ASSERT_EQUAL(st, NNM_E_UNSUPPORTED);
        CU_ASSERT_PTR_NOT_NULL(strstr(msg, "rnn_cell"));
        CU_ASSERT_PTR_NOT_NULL(strstr(msg, "nornn"));
        CU_ASSERT_PTR_NULL(y);
        nnm_tensor_release(x);
        nnm_module_release(m);
    }
    nnm_ctx_free(ctx);
    /* without the backward slot: inference runs, recording for autograd fails */
    ctx = ctx_with(&g_desc_nobwd);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ctx);
    nnm_module *m = make(ctx, "gru", cfg, 2);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    const int64_t xs[3] = {2, 1, 3};
    nnm_tensor *x = rand_t(ctx, 3, xs, 3), *y = NULL;
    int prev = nnm_grad_set_enabled(0);
    CU_ASSERT_EQUAL(nnm_module_call(m, &x, 1, &y, 1), NNM_OK);
    nnm_grad_set_enabled(prev);
    nnm_tensor_release(y);
    y = NULL;
    nnm_status st = nnm_module_call(m, &x, 1, &y, 1);
    CU_ASSERT_EQUAL(st, NNM_E_UNSUPPORTED);
    CU_ASSERT_PTR_NOT_NULL(strstr(nnm_ctx_errmsg(ctx), "rnn_cell_backward"));
    CU_ASSERT_PTR_NOT_NULL(strstr(nnm_ctx_errmsg(ctx), "nobwd"));
    nnm_tensor_release(x);
    nnm_module_release(m);
    nnm_ctx_free(ctx);
}

/* ---- bad configs and inputs --------------------------------------------------------- */

static void test_bad_configs(void) {
    LEAK_CHECK_BEGIN();
    const kv base[] = {{"input_size", 'i', 3, 0}, {"hidden_size", 'i', 4, 0}};
    kv c[4];
    memcpy(c, base, sizeof base);
    c[2] = (kv){"proj_size", 'i', 2, 0};
    refused("gru", c, 3, NNM_E_INVALID, "only supported for LSTM");
    c[2] = (kv){"proj_size", 'i', 4, 0};
    refused("lstm", c, 3, NNM_E_INVALID, "smaller than hidden_size");
    c[2] = (kv){"nonlinearity", 's', 0, "sigmoid"};
    refused("rnn", c, 3, NNM_E_INVALID, "sigmoid");
    refused("rnn_cell", c, 3, NNM_E_INVALID, "sigmoid");
    refused("lstm", c, 3, NNM_E_INVALID, "nonlinearity"); /* not an LSTM key */
    c[2] = (kv){"dropout", 'f', 1.5, 0};
    refused("gru", c, 3, NNM_E_INVALID, "dropout");
    c[2] = (kv){"num_layers", 'i', 0, 0};
    refused("lstm", c, 3, NNM_E_INVALID, "num_layers");
    c[2] = (kv){"num_layers", 'i', 2, 0};
    refused("gru_cell", c, 3, NNM_E_INVALID, "num_layers"); /* cells have no layers */
    c[1] = (kv){"hidden_size", 'i', 0, 0};
    refused("rnn", c, 2, NNM_E_INVALID, "hidden_size");
    refused("lstm", base, 1, NNM_E_NOT_FOUND, "hidden_size");
    LEAK_CHECK_END();
}

static void call_fails(nnm_module *m, nnm_tensor *const *in, uint32_t n_in, uint32_t n_out, const char *want) {
    nnm_tensor *out[4] = {NULL, NULL, NULL, NULL};
    nnm_status st = nnm_module_call(m, in, n_in, out, n_out);
    const char *msg = nnm_ctx_errmsg(g_ctx);
    if (st != NNM_E_SHAPE || !strstr(msg, want))
        fprintf(stderr, "\n  got %s \"%s\", want NNM_E_SHAPE with \"%s\"\n", nnm_status_name(st), msg, want);
    CU_ASSERT_EQUAL(st, NNM_E_SHAPE);
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, want));
    for (int k = 0; k < 4; k++) {
        CU_ASSERT_PTR_NULL(out[k]);
        nnm_tensor_release(out[k]);
    }
}

static void test_bad_inputs(void) {
    LEAK_CHECK_BEGIN();
    const kv cfg[] = {{"input_size", 'i', 3, 0}, {"hidden_size", 'i', 4, 0}, {"num_layers", 'i', 2, 0}};
    nnm_module *lstm = make(g_ctx, "lstm", cfg, 3), *cell = make(g_ctx, "lstm_cell", cfg, 2);
    CU_ASSERT_PTR_NOT_NULL_FATAL(lstm);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cell);
    const int64_t x_ok[3] = {5, 2, 3}, x_bad[3] = {5, 2, 4}, x4[4] = {1, 5, 2, 3}, x_empty[3] = {0, 2, 3};
    const int64_t h_bad[3] = {1, 2, 4}, h_unb[2] = {2, 4}, c_ok[3] = {2, 2, 4};
    nnm_tensor *xo = rand_t(g_ctx, 3, x_ok, 1), *xb = rand_t(g_ctx, 3, x_bad, 1), *x4t = rand_t(g_ctx, 4, x4, 1);
    nnm_tensor *xe = rand_t(g_ctx, 3, x_empty, 1), *hb = rand_t(g_ctx, 3, h_bad, 1), *hu = rand_t(g_ctx, 2, h_unb, 1);
    nnm_tensor *co = rand_t(g_ctx, 3, c_ok, 1);
    call_fails(lstm, &xb, 1, 1, "expected input [T, N, 3]");
    call_fails(lstm, &x4t, 1, 1, "unbatched [T, 3]");
    call_fails(lstm, &xe, 1, 1, "empty");
    nnm_tensor *in1[3] = {xo, hb, co};
    call_fails(lstm, in1, 3, 3, "expected h0 of size [2, 2, 4]");
    nnm_tensor *in2[2] = {xo, hu};
    call_fails(lstm, in2, 2, 1, "expected h0 of size [2, 2, 4]");
    call_fails(lstm, &xo, 1, 4, "1 to 3");
    nnm_tensor *in3[2] = {xb, co};
    const int64_t cx[2] = {2, 3}, ch[2] = {3, 4};
    nnm_tensor *cxt = rand_t(g_ctx, 2, cx, 1), *cht = rand_t(g_ctx, 2, ch, 1);
    in3[0] = cxt;
    in3[1] = cht;
    call_fails(cell, in3, 2, 1, "expected h of size [2, 4]");
    call_fails(cell, &xo, 1, 1, "expected input [N, 3]");
    nnm_tensor *ts[9] = {xo, xb, x4t, xe, hb, hu, co, cxt, cht};
    for (int i = 0; i < 9; i++) nnm_tensor_release(ts[i]);
    nnm_module_release(lstm);
    nnm_module_release(cell);
    LEAK_CHECK_END();
}

/* ---- the outputs' shapes and the autograd nodes --------------------------------------- */

static void test_shapes_and_no_grad(void) {
    LEAK_CHECK_BEGIN();
    const kv cfg[] = {{"input_size", 'i', 3, 0},    {"hidden_size", 'i', 6, 0}, {"num_layers", 'i', 3, 0},
                      {"bidirectional", 'b', 1, 0}, {"proj_size", 'i', 2, 0},   {"batch_first", 'b', 1, 0}};
    nnm_module *m = make(g_ctx, "lstm", cfg, 6);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    const int64_t xs[3] = {4, 7, 3};
    nnm_tensor *x = rand_t(g_ctx, 3, xs, 5), *out[3] = {NULL, NULL, NULL};
    int prev = nnm_grad_set_enabled(0);
    CU_ASSERT_EQUAL_FATAL(nnm_module_call(m, &x, 1, out, 3), NNM_OK);
    nnm_grad_set_enabled(prev);
    const int64_t ys[3] = {4, 7, 4}, hs[3] = {6, 4, 2}, cs[3] = {6, 4, 6};
    CU_ASSERT_TRUE(tu_shape_is(out[0], 3, ys));
    CU_ASSERT_TRUE(tu_shape_is(out[1], 3, hs));
    CU_ASSERT_TRUE(tu_shape_is(out[2], 3, cs));
    for (int k = 0; k < 3; k++) {
        CU_ASSERT_FALSE(nnm_tensor_requires_grad(out[k]));
        nnm_tensor_release(out[k]);
    }
    nnm_tensor_release(x);
    nnm_module_release(m);
    LEAK_CHECK_END();
}

/* NaN and infinities into the fused gate kernels (whose exp builds a power
 * of two from the integer part of its argument: a NaN must never reach that
 * conversion, UBSan's float-cast-overflow). x is [T 3, B 2, 1]: batch 1
 * holds a NaN at step 1, which makes its outputs NaN from then on and leaves
 * batch 0 finite; then x = +inf and -inf everywhere, which saturate every
 * gate (sigmoid 0 or 1, tanh +-1): the rnn (tanh), lstm and gru outputs stay
 * finite within [-1, 1]. Forward and backward both run. */
static void test_nan_and_inf_inputs(void) {
    LEAK_CHECK_BEGIN();
    static const char *const types[3] = {"rnn", "lstm", "gru"};
    const kv cfg[] = {{"input_size", 'i', 1, 0}, {"hidden_size", 'i', 4, 0}};
    for (int t = 0; t < 3; t++) {
        nnm_module *m = make(g_ctx, types[t], cfg, 2);
        CU_ASSERT_PTR_NOT_NULL_FATAL(m);
        const int64_t xs[3] = {3, 2, 1};
        for (int kind = 0; kind < 3; kind++) {
            float xv[6] = {0.5f, -0.25f, 0.75f, NAN, -1.0f, 2.0f};
            if (kind > 0)
                for (int i = 0; i < 6; i++) xv[i] = kind == 1 ? INFINITY : -INFINITY;
            nnm_tensor *x = tu_tf32(g_ctx, 3, xs, xv), *out[3] = {NULL, NULL, NULL}, *s = NULL;
            nnm_tensor_set_requires_grad(x, 1);
            const uint32_t n_out = t == 1 ? 3 : 2; /* output, h_n (, c_n) */
            CU_ASSERT_EQUAL_FATAL(nnm_module_call(m, &x, 1, out, n_out), NNM_OK);
            float y[3 * 2 * 4];
            CU_ASSERT_EQUAL(nnm_tensor_to_f32(out[0], y, 24), NNM_OK);
            for (int step = 0; step < 3; step++)
                for (int b = 0; b < 2; b++)
                    for (int j = 0; j < 4; j++) {
                        const float v = y[(step * 2 + b) * 4 + j];
                        if (kind == 0 && b == 1 && step >= 1) {
                            CU_ASSERT_TRUE(isnan(v));
                        } else {
                            CU_ASSERT_TRUE(isfinite(v) && v >= -1.0f && v <= 1.0f);
                        }
                    }
            /* backward through the same kernels: runs, whatever the values */
            CU_ASSERT_EQUAL(nnm_op_reduce(g_ctx, NNM_REDUCE_SUM, out[0], NULL, 0, 0, &s), NNM_OK);
            CU_ASSERT_EQUAL(nnm_backward(s, NULL, 0), NNM_OK);
            nnm_tensor_release(s);
            for (uint32_t k = 0; k < n_out; k++) nnm_tensor_release(out[k]);
            nnm_tensor_release(x);
        }
        nnm_module_release(m);
    }
    LEAK_CHECK_END();
}

int main(void) {
    CU_pSuite s = tu_suite("recurrent", suite_init, suite_clean);
    if (!s) return 1;
    CU_add_test(s, "PyTorch state dicts load strictly and give PyTorch's outputs", test_pytorch_state_dicts);
    CU_add_test(s, "dropout between layers: train only, seeded, not after the last layer", test_dropout_between_layers);
    CU_add_test(s, "a 36-step 2-layer bidirectional lstm against finite differences", test_long_sequence_gradcheck);
    CU_add_test(s, "a backend without the rnn_cell slots: NNM_E_UNSUPPORTED naming op and backend",
                test_backend_without_rnn_slots);
    CU_add_test(s, "bad configs", test_bad_configs);
    CU_add_test(s, "bad inputs", test_bad_inputs);
    CU_add_test(s, "output shapes; no graph under no_grad", test_shapes_and_no_grad);
    CU_add_test(s, "NaN and infinite inputs through the fused gates", test_nan_and_inf_inputs);
    return tu_run();
}
