/* tests/state/test_state_dict.c - state dicts: nnm_module_save/nnm_module_load
 * and PyTorch interop.
 *
 * Golden fixtures (tests/golden/state/, written by make_state_golden.py with
 * PyTorch) hold trained state_dicts, inputs and expected outputs; the suite
 * builds the same trees through the C API, loads the weights and reproduces
 * PyTorch's outputs. The nested model uses a "center" layer registered
 * statically by this file (x - running_mean, with a persistent and a
 * non-persistent buffer), like the script's Center module. Saved files are
 * checked against the key lists PyTorch recorded, so CI needs no torch; with
 * NNM_TEST_KEEP_DIR set, the saved files are also left there for
 * `make_state_golden.py --check FILE`.
 */
#include "state_test.h"

#include <math.h>

#ifndef NNM_STATE_GOLDEN_DIR
#error "NNM_STATE_GOLDEN_DIR must name tests/golden/state"
#endif

#include "center_layer.h"

static int suite_init(void) {
    if (state_suite_init()) return 1;
    nnm_status st = nnm_plugin_register_static(g_ctx, &center_plugin, "test_state_dict.c");
    if (st) fprintf(stderr, "register center: %s\n", nnm_ctx_errmsg(g_ctx));
    return st != NNM_OK;
}

/* ------------------------------------------------------------------------ */
/* Building the trees                                                        */
/* ------------------------------------------------------------------------ */

static nnm_module *mk(const char *request, const char *k1, int64_t v1, const char *k2,
                      int64_t v2) {
    nnm_config *cfg = NULL;
    if (nnm_config_new(&cfg) != NNM_OK) return NULL;
    if (k1) nnm_config_set_int(cfg, k1, v1);
    if (k2) nnm_config_set_int(cfg, k2, v2);
    nnm_module *m = tu_module(g_ctx, request, cfg);
    nnm_config_free(cfg);
    return m;
}

static nnm_module *linear(int64_t in, int64_t out) {
    return mk("linear", "in_features", in, "out_features", out);
}
static nnm_module *seq(void) { return mk("sequential", NULL, 0, NULL, 0); }

/* Adds child under name (NULL: index) and drops the caller's reference. */
static void add(nnm_module *parent, const char *name, nnm_module *child) {
    CU_ASSERT_FATAL(parent != NULL && child != NULL);
    CHECK_STATUS(nnm_module_add_child(parent, name, child), NNM_OK);
    nnm_module_release(child);
}

/* Sequential(Linear(4,8), ReLU, Linear(8,out2)). */
static nnm_module *make_mlp(int64_t out2) {
    nnm_module *m = seq();
    add(m, NULL, linear(4, 8));
    add(m, NULL, mk("relu", NULL, 0, NULL, 0));
    add(m, NULL, linear(8, out2));
    return m;
}

/* The script's Net: encoder, norm, heads (ModuleList), tasks (ModuleDict),
 * with sequential modules as plain containers. */
static nnm_module *make_nested(void) {
    nnm_module *root = seq();
    nnm_module *enc = seq();
    add(enc, NULL, linear(4, 8));
    add(enc, NULL, mk("relu", NULL, 0, NULL, 0));
    add(enc, NULL, linear(8, 6));
    add(root, "encoder", enc);
    add(root, "norm", mk("center", "features", 6, NULL, 0));
    nnm_module *heads = seq();
    add(heads, NULL, linear(6, 3));
    add(heads, NULL, linear(6, 2));
    add(root, "heads", heads);
    nnm_module *tasks = seq();
    nnm_module *cls = seq();
    add(cls, NULL, linear(6, 5));
    add(cls, NULL, mk("relu", NULL, 0, NULL, 0));
    add(cls, NULL, linear(5, 3));
    add(tasks, "cls", cls);
    add(tasks, "reg", linear(6, 2));
    add(root, "tasks", tasks);
    return root;
}

static nnm_tensor *call1(nnm_module *root, const char *path, nnm_tensor *x) {
    nnm_module *m = path ? nnm_module_get(root, path) : root;
    CU_ASSERT_PTR_NOT_NULL(m);
    nnm_tensor *y = NULL;
    if (m) CHECK_STATUS(nnm_module_call(m, &x, 1, &y, 1), NNM_OK);
    return y;
}

/* Net.forward: cat([heads.0(h), heads.1(h), tasks.cls(h), tasks.reg(h)], -1)
 * with h = norm(encoder(x)); out holds rows x 10 floats. */
static int nested_forward(nnm_module *root, nnm_tensor *x, float *out, int64_t rows) {
    nnm_tensor *e = call1(root, "encoder", x);
    nnm_tensor *h = e ? call1(root, "norm", e) : NULL;
    const char *parts[4] = {"heads.0", "heads.1", "tasks.cls", "tasks.reg"};
    int col = 0, ok = h != NULL;
    for (int i = 0; i < 4 && ok; i++) {
        nnm_tensor *y = call1(root, parts[i], h);
        if (!y) {
            ok = 0;
            break;
        }
        int64_t w = nnm_tensor_desc_get(y)->shape[1];
        float *buf = malloc(sizeof(float) * (size_t)(rows * w));
        ok = buf && nnm_tensor_to_f32(y, buf, (size_t)(rows * w)) == NNM_OK;
        for (int64_t r = 0; ok && r < rows; r++)
            for (int64_t c = 0; c < w; c++) out[r * 10 + col + c] = buf[r * w + c];
        col += (int)w;
        free(buf);
        nnm_tensor_release(y);
    }
    nnm_tensor_release(h);
    nnm_tensor_release(e);
    return ok && col == 10;
}

/* ------------------------------------------------------------------------ */
/* Golden files                                                              */
/* ------------------------------------------------------------------------ */

/* A new f32 tensor from a golden entry (F32 only). */
static nnm_tensor *golden_tensor(nnm_safetensors *st, const char *name) {
    nnm_st_entry e;
    e.struct_size = sizeof e;
    CU_ASSERT_EQUAL_FATAL(nnm_safetensors_find(st, name, &e), NNM_OK);
    CU_ASSERT_STRING_EQUAL_FATAL(e.dtype_name, "F32");
    float *f = malloc(e.nbytes ? e.nbytes : 1);
    CU_ASSERT_FATAL(f != NULL);
    memcpy(f, e.data, e.nbytes);
    nnm_tensor *t = NULL;
    CHECK_STATUS(nnm_tensor_from_f32(g_ctx, e.ndim, e.shape, f, &t), NNM_OK);
    free(f);
    return t;
}

/* got[] (as many floats as want_t holds) is within 1e-5 relative + 1e-6 of
 * want_t; prints the first differences otherwise. */
static int close_enough(const float *got, nnm_tensor *want_t) {
    int64_t n = 0;
    float *want = tu_read_f32(want_t, &n);
    int bad = want != NULL ? tu_count_mismatch(NULL, got, want, n, 1e-5, 1e-6, 0) : -1;
    free(want);
    return bad == 0;
}

static float *forward_mlp(nnm_module *m, nnm_tensor *x) {
    nnm_tensor *y = call1(m, NULL, x);
    if (!y) return NULL;
    int64_t n = nnm_tensor_numel(y);
    float *out = malloc(sizeof(float) * (size_t)n);
    if (out && nnm_tensor_to_f32(y, out, (size_t)n) != NNM_OK) {
        free(out);
        out = NULL;
    }
    nnm_tensor_release(y);
    return out;
}

static void test_golden_mlp(void) {
    LEAK_CHECK_BEGIN();
    nnm_safetensors *io = NULL;
    CHECK_STATUS(nnm_safetensors_open(g_ctx, golden("mlp_io.safetensors"), &io), NNM_OK);
    CU_ASSERT_FATAL(io != NULL);
    nnm_tensor *x = golden_tensor(io, "input");
    nnm_tensor *y = golden_tensor(io, "output");
    nnm_tensor *y_mixed = golden_tensor(io, "output_mixed");

    nnm_module *m = make_mlp(3);
    nnm_load_report *rep = NULL;
    CHECK_STATUS(nnm_module_load(m, golden("mlp.safetensors"), 1, &rep), NNM_OK);
    CU_ASSERT_FATAL(rep != NULL);
    CU_ASSERT_EQUAL(rep->n_missing + rep->n_unexpected + rep->n_mismatched, 0);
    nnm_load_report_free(rep);
    float *out = forward_mlp(m, x);
    CU_ASSERT_FATAL(out != NULL);
    CU_ASSERT_TRUE(close_enough(out, y));
    free(out);

    /* F16 / BF16 / F64 weights, converted to f32 on load */
    CHECK_STATUS(nnm_module_load(m, golden("mlp_mixed.safetensors"), 1, NULL), NNM_OK);
    out = forward_mlp(m, x);
    CU_ASSERT_FATAL(out != NULL);
    CU_ASSERT_TRUE(close_enough(out, y_mixed));
    free(out);

    nnm_module_release(m);
    nnm_tensor_release(x);
    nnm_tensor_release(y);
    nnm_tensor_release(y_mixed);
    nnm_safetensors_close(io);
    LEAK_CHECK_END();
}

/* Also leaves a copy in $NNM_TEST_KEEP_DIR for make_state_golden.py --check. */
static void keep_copy(nnm_module *m, const char *name) {
    const char *dir = getenv("NNM_TEST_KEEP_DIR");
    if (!dir || !*dir) return;
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    CHECK_STATUS(nnm_module_save(m, p, 0, NULL), NNM_OK);
}

static void test_golden_nested(void) {
    LEAK_CHECK_BEGIN();
    nnm_safetensors *io = NULL;
    CHECK_STATUS(nnm_safetensors_open(g_ctx, golden("nested_io.safetensors"), &io), NNM_OK);
    CU_ASSERT_FATAL(io != NULL);
    nnm_tensor *x = golden_tensor(io, "input");
    nnm_tensor *y = golden_tensor(io, "output");
    int64_t rows = nnm_tensor_desc_get(x)->shape[0];

    nnm_module *m = make_nested();
    CHECK_STATUS(nnm_module_load(m, golden("nested.safetensors"), 1, NULL), NNM_OK);
    float *out = calloc((size_t)rows * 10, sizeof(float));
    CU_ASSERT_FATAL(out != NULL);
    CU_ASSERT_TRUE(nested_forward(m, x, out, rows));
    CU_ASSERT_TRUE(close_enough(out, y));

    /* The reverse: nnmod's file carries exactly PyTorch's keys (the
     * non-persistent buffer norm.scratch is not among them). */
    const char *p = tu_path(g_dir, "nested_nnmod.safetensors");
    const nnm_kv meta[1] = {{"epoch", "3"}};
    CHECK_STATUS(nnm_module_save(m, p, 1, meta), NNM_OK);
    char *got = file_keys(p), *want = torch_keys("nested_io.safetensors");
    CU_ASSERT_FATAL(got != NULL && want != NULL);
    if (strcmp(got, want)) fprintf(stderr, "\n  keys:\n  got  %s\n  want %s\n", got, want);
    CU_ASSERT_STRING_EQUAL(got, want);
    CU_ASSERT_PTR_NULL(strstr(got, "scratch"));
    CU_ASSERT_PTR_NOT_NULL(strstr(got, "tasks.cls.2.weight"));
    free(got);
    free(want);
    keep_copy(m, "nested_nnmod.safetensors");

    /* ... and a fresh tree loaded from it computes the same, bit for bit. */
    nnm_module *m2 = make_nested();
    CHECK_STATUS(nnm_module_load(m2, p, 1, NULL), NNM_OK);
    float *out2 = calloc((size_t)rows * 10, sizeof(float));
    CU_ASSERT_FATAL(out2 != NULL);
    CU_ASSERT_TRUE(nested_forward(m2, x, out2, rows));
    CU_ASSERT_EQUAL(memcmp(out, out2, sizeof(float) * (size_t)rows * 10), 0);
    free(out2);
    nnm_module_release(m2);

    free(out);
    nnm_module_release(m);
    nnm_tensor_release(x);
    nnm_tensor_release(y);
    nnm_safetensors_close(io);
    LEAK_CHECK_END();
}

static void test_mlp_keys(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *m = make_mlp(3);
    CHECK_STATUS(nnm_module_load(m, golden("mlp.safetensors"), 1, NULL), NNM_OK);
    const char *p = tu_path(g_dir, "mlp_nnmod.safetensors");
    CHECK_STATUS(nnm_module_save(m, p, 0, NULL), NNM_OK);
    char *got = file_keys(p), *want = torch_keys("mlp_io.safetensors");
    CU_ASSERT_FATAL(got != NULL && want != NULL);
    CU_ASSERT_STRING_EQUAL(got, want);
    CU_ASSERT_STRING_EQUAL(got, "0.bias,0.weight,2.bias,2.weight");
    free(got);
    free(want);
    keep_copy(m, "mlp_nnmod.safetensors");
    /* the saved bytes equal PyTorch's */
    nnm_safetensors *a = NULL, *b = NULL;
    CHECK_STATUS(nnm_safetensors_open(g_ctx, p, &a), NNM_OK);
    CHECK_STATUS(nnm_safetensors_open(g_ctx, golden("mlp.safetensors"), &b), NNM_OK);
    for (uint32_t i = 0; a && b && i < nnm_safetensors_count(a); i++) {
        nnm_st_entry ea, eb;
        ea.struct_size = eb.struct_size = sizeof ea;
        nnm_safetensors_entry(a, i, &ea);
        CU_ASSERT_EQUAL_FATAL(nnm_safetensors_find(b, ea.name, &eb), NNM_OK);
        CU_ASSERT_EQUAL(ea.nbytes, eb.nbytes);
        CU_ASSERT_EQUAL(memcmp(ea.data, eb.data, ea.nbytes), 0);
    }
    nnm_safetensors_close(a);
    nnm_safetensors_close(b);
    nnm_module_release(m);
    LEAK_CHECK_END();
}

/* ------------------------------------------------------------------------ */
/* strict / non-strict                                                       */
/* ------------------------------------------------------------------------ */

/* All state of m as one float vector (for "nothing changed" checks). */
typedef struct snap {
    float v[4096];
    size_t n;
} snap;

static nnm_status snap_visit(void *user, const char *name, nnm_tensor *t) {
    snap *s = user;
    (void)name;
    size_t n = (size_t)nnm_tensor_numel(t);
    if (s->n + n > 4096) return NNM_E_LIMIT;
    nnm_status st = nnm_tensor_to_f32(t, s->v + s->n, n);
    s->n += n;
    return st;
}

static snap *take_snap(nnm_module *m) {
    snap *s = calloc(1, sizeof *s);
    CU_ASSERT_FATAL(s != NULL);
    CU_ASSERT_EQUAL(nnm_module_named_parameters(m, snap_visit, s), NNM_OK);
    CU_ASSERT_EQUAL(nnm_module_named_buffers(m, snap_visit, s), NNM_OK);
    return s;
}

static int same_snap(const snap *a, const snap *b) {
    return a->n == b->n && memcmp(a->v, b->v, a->n * sizeof(float)) == 0;
}

static int has(const char *const *v, uint32_t n, const char *s) {
    for (uint32_t i = 0; i < n; i++)
        if (!strcmp(v[i], s)) return 1;
    return 0;
}

static void test_strict_shape_mismatch(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *m = make_mlp(4); /* the file's last layer has 3 outputs */
    snap *before = take_snap(m);
    nnm_load_report *rep = (nnm_load_report *)1;
    CHECK_STATUS(nnm_module_load(m, golden("mlp.safetensors"), 1, &rep), NNM_E_SHAPE);
    CHECK_MSG("mlp.safetensors: error(s) loading the state dict (strict)");
    CHECK_MSG("2.weight: file [3, 8] vs module [4, 8]");
    CHECK_MSG("2.bias: file [3] vs module [4]");
    CHECK_MSG("nothing was loaded");
    CU_ASSERT_FATAL(rep != NULL && rep != (nnm_load_report *)1); /* every mismatch, listed */
    CU_ASSERT_EQUAL(rep->n_mismatched, 2);
    nnm_load_report_free(rep);
    snap *after = take_snap(m);
    CU_ASSERT_TRUE(same_snap(before, after)); /* 0.* matched but were not copied */
    free(after);

    /* Not strict: PyTorch's load_state_dict(sd, strict=False) still raises
     * "size mismatch for 2.weight: copying a param with shape [3, 8] ..."
     * and copies nothing; so does nnm_module_load, and it reports every
     * mismatch. (Before: the matching keys loaded and it returned OK.) */
    rep = NULL;
    CHECK_STATUS(nnm_module_load(m, golden("mlp.safetensors"), 0, &rep), NNM_E_SHAPE);
    CHECK_MSG("error(s) loading the state dict (not strict): 2 size mismatch(es)");
    CHECK_MSG("2.weight: file [3, 8] vs module [4, 8]");
    CHECK_MSG("2.bias: file [3] vs module [4]");
    CU_ASSERT_FATAL(rep != NULL);
    CU_ASSERT_EQUAL(rep->n_missing, 0);
    CU_ASSERT_EQUAL(rep->n_unexpected, 0);
    CU_ASSERT_EQUAL(rep->n_mismatched, 2);
    CU_ASSERT_TRUE(has(rep->mismatched, rep->n_mismatched, "2.weight: file [3, 8] vs module [4, 8]"));
    CU_ASSERT_TRUE(has(rep->mismatched, rep->n_mismatched, "2.bias: file [3] vs module [4]"));
    nnm_load_report_free(rep);
    after = take_snap(m);
    CU_ASSERT_TRUE(same_snap(before, after)); /* 0.* fit, yet nothing was copied */
    free(after);
    free(before);
    nnm_module_release(m);
    LEAK_CHECK_END();
}

static void test_strict_missing_unexpected(void) {
    LEAK_CHECK_BEGIN();
    /* the module has an extra layer "3" (missing from the file) */
    nnm_module *m = make_mlp(3);
    add(m, NULL, linear(3, 2));
    snap *before = take_snap(m);
    CHECK_STATUS(nnm_module_load(m, golden("mlp.safetensors"), 1, NULL), NNM_E_NOT_FOUND);
    CHECK_MSG("2 missing key(s): '3.weight', '3.bias'");
    snap *after = take_snap(m);
    CU_ASSERT_TRUE(same_snap(before, after));
    free(after);
    nnm_load_report *rep = NULL;
    CHECK_STATUS(nnm_module_load(m, golden("mlp.safetensors"), 0, &rep), NNM_OK);
    CU_ASSERT_FATAL(rep != NULL);
    CU_ASSERT_EQUAL(rep->n_missing, 2);
    CU_ASSERT_TRUE(has(rep->missing, rep->n_missing, "3.weight"));
    CU_ASSERT_TRUE(has(rep->missing, rep->n_missing, "3.bias"));
    CU_ASSERT_EQUAL(rep->n_unexpected + rep->n_mismatched, 0);
    nnm_load_report_free(rep);
    free(before);
    nnm_module_release(m);

    /* the module lacks layer "2": its keys are unexpected */
    m = seq();
    add(m, NULL, linear(4, 8));
    before = take_snap(m);
    CHECK_STATUS(nnm_module_load(m, golden("mlp.safetensors"), 1, NULL), NNM_E_NOT_FOUND);
    CHECK_MSG("2 unexpected key(s): '2.bias', '2.weight'");
    after = take_snap(m);
    CU_ASSERT_TRUE(same_snap(before, after));
    free(after);
    CHECK_STATUS(nnm_module_load(m, golden("mlp.safetensors"), 0, &rep), NNM_OK);
    CU_ASSERT_FATAL(rep != NULL);
    CU_ASSERT_EQUAL(rep->n_unexpected, 2);
    CU_ASSERT_TRUE(has(rep->unexpected, rep->n_unexpected, "2.weight"));
    CU_ASSERT_EQUAL(rep->n_missing + rep->n_mismatched, 0);
    nnm_load_report_free(rep);
    after = take_snap(m);
    CU_ASSERT_FALSE(same_snap(before, after));
    free(after);
    free(before);
    nnm_module_release(m);
    LEAK_CHECK_END();
}

static void test_dtype_not_convertible(void) {
    LEAK_CHECK_BEGIN();
    /* 0.bias stored as I32: not convertible to the module's F32 */
    const int64_t wshape[2] = {8, 4}, bshape[1] = {8};
    nnm_tensor *w = NULL, *b = NULL;
    CHECK_STATUS(nnm_tensor_from_f32(g_ctx, 2, wshape, NULL, &w), NNM_OK);
    CHECK_STATUS(nnm_tensor_new(g_ctx, (nnm_device){NNM_DEVICE_CPU, 0},
                                (nnm_dtype){NNM_DTYPE_INT, 32, 1}, 1, bshape, &b),
                 NNM_OK);
    memset(nnm_tensor_desc_get(b)->data, 0, 32);
    const char *names[2] = {"0.weight", "0.bias"};
    nnm_tensor *ts[2] = {w, b};
    const char *p = tu_path(g_dir, "i32bias.safetensors");
    CHECK_STATUS(nnm_safetensors_write(g_ctx, p, 2, names, ts, 0, NULL), NNM_OK);
    nnm_module *m = seq();
    add(m, NULL, linear(4, 8));
    CHECK_STATUS(nnm_module_load(m, p, 1, NULL), NNM_E_SHAPE);
    CHECK_MSG("0.bias: file [8] I32 vs module [8] F32 (dtype not convertible)");
    nnm_load_report *rep = NULL;
    /* not strict: a dtype nnmod cannot convert (it converts floats into F32
     * only; PyTorch's copy_ would convert this one) is refused like a size
     * mismatch: nothing loads */
    CHECK_STATUS(nnm_module_load(m, p, 0, &rep), NNM_E_SHAPE);
    CHECK_MSG("0.bias: file [8] I32 vs module [8] F32 (dtype not convertible)");
    CU_ASSERT_FATAL(rep != NULL);
    CU_ASSERT_EQUAL(rep->n_mismatched, 1);
    nnm_load_report_free(rep);
    nnm_load_report_free(NULL);
    nnm_module_release(m);
    nnm_tensor_release(w);
    nnm_tensor_release(b);
    LEAK_CHECK_END();
}

static void test_buffers(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *m = make_nested();
    CHECK_STATUS(nnm_module_load(m, golden("nested.safetensors"), 1, NULL), NNM_OK);
    nnm_module *norm = nnm_module_get(m, "norm");
    CU_ASSERT_FATAL(norm != NULL);
    /* running_mean came from the file; scratch (not persistent) stayed 0 */
    typedef struct bufs {
        float mean[6], scratch[6];
        int n;
    } bufs;
    bufs bb;
    memset(&bb, 0, sizeof bb);
    nnm_safetensors *st = NULL;
    CHECK_STATUS(nnm_safetensors_open(g_ctx, golden("nested.safetensors"), &st), NNM_OK);
    nnm_st_entry e;
    e.struct_size = sizeof e;
    CU_ASSERT_EQUAL_FATAL(nnm_safetensors_find(st, "norm.running_mean", &e), NNM_OK);
    float want[6];
    memcpy(want, e.data, sizeof want);
    CU_ASSERT_EQUAL(nnm_safetensors_find(st, "norm.scratch", &e), NNM_E_NOT_FOUND);
    nnm_safetensors_close(st);
    snap *s = take_snap(norm); /* buffers: running_mean then scratch */
    CU_ASSERT_EQUAL(s->n, 12);
    CU_ASSERT_EQUAL(memcmp(s->v, want, sizeof want), 0);
    for (int i = 6; i < 12; i++) CU_ASSERT_EQUAL(s->v[i], 0.0f);
    free(s);
    /* a sub-module saves and loads under names relative to itself */
    const char *p = tu_path(g_dir, "cls.safetensors");
    CHECK_STATUS(nnm_module_save(nnm_module_get(m, "tasks.cls"), p, 0, NULL), NNM_OK);
    char *keys = file_keys(p);
    CU_ASSERT_STRING_EQUAL(keys, "0.bias,0.weight,2.bias,2.weight");
    free(keys);
    nnm_module_release(m);
    LEAK_CHECK_END();
}

static void test_load_errors(void) {
    LEAK_CHECK_BEGIN();
    nnm_module *m = make_mlp(3);
    snap *before = take_snap(m);
    CHECK_STATUS(nnm_module_load(m, tu_path(g_dir, "absent.safetensors"), 0, NULL), NNM_E_IO);
    CHECK_MSG("absent.safetensors: cannot open");
    const char *p = tu_path(g_dir, "garbage.safetensors");
    CU_ASSERT_FATAL(craft(p, "{\"0.weight\":{\"dtype\":\"F32\",\"shape\":[8,4],"
                             "\"data_offsets\":[0,64]}}", 64));
    nnm_load_report *rep = (nnm_load_report *)1;
    CHECK_STATUS(nnm_module_load(m, p, 0, &rep), NNM_E_SHAPE);
    CU_ASSERT_PTR_NULL(rep);
    CHECK_MSG("needs 128");
    snap *after = take_snap(m);
    CU_ASSERT_TRUE(same_snap(before, after));
    free(after);
    free(before);
    CU_ASSERT_EQUAL(nnm_module_load(NULL, p, 0, NULL), NNM_E_INVALID);
    CHECK_STATUS(nnm_module_load(m, NULL, 0, NULL), NNM_E_INVALID);
    CU_ASSERT_EQUAL(nnm_module_save(NULL, p, 0, NULL), NNM_E_INVALID);
    CHECK_STATUS(nnm_module_save(m, NULL, 0, NULL), NNM_E_INVALID);
    CHECK_STATUS(nnm_module_save(m, g_dir, 0, NULL), NNM_E_IO);
    CHECK_MSG("is a directory");
    nnm_module_release(m);
    LEAK_CHECK_END();
}

static CU_pSuite add_suite(void) {
    CU_pSuite s = tu_suite("state_dict", suite_init, state_suite_clean);
    if (!s) return NULL;
    CU_add_test(s, "PyTorch MLP golden (F32 and F16/BF16/F64)", test_golden_mlp);
    CU_add_test(s, "PyTorch nested golden and the reverse", test_golden_nested);
    CU_add_test(s, "MLP keys and bytes equal PyTorch's", test_mlp_keys);
    CU_add_test(s, "strict: shape mismatch changes nothing", test_strict_shape_mismatch);
    CU_add_test(s, "strict: missing and unexpected", test_strict_missing_unexpected);
    CU_add_test(s, "dtype not convertible", test_dtype_not_convertible);
    CU_add_test(s, "persistent and non-persistent buffers", test_buffers);
    CU_add_test(s, "load/save errors", test_load_errors);
    return s;
}

int main(void) { return add_suite() != NULL ? tu_run() : 1; }
