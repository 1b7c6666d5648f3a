/* tests/layers/test_transformer.c - the transformer plugin's layers and the
 * host slot they are built on (child_new, ABI 1.5):
 *   - every case of tests/golden/transformer (PyTorch 1.13, made by
 *     tests/golden/make_transformer_golden.py): build from a one-module
 *     manifest, load PyTorch's state_dict STRICTLY, print as PyTorch, call
 *     (eval with masks, train with dropout 0; batch_first, norm_first, gelu,
 *     unbatched), compare the output, the input gradients and every
 *     parameter's gradient of sum(output * W);
 *   - the made children are real children: PyTorch's state_dict keys in
 *     PyTorch's order, their hooks fire, train/eval reaches them, a device
 *     move takes them;
 *   - manifests: nnm_manifest_from_module writes none of them and the
 *     manifest round-trips (same keys, same outputs); a manifest giving
 *     children to such a layer is refused, naming the layer; a tree changed
 *     by hand (a child attached, replaced or deleted) is refused by
 *     nnm_manifest_from_module, naming the child;
 *   - bad configs are refused with PyTorch's messages, and a failing child
 *     creation names the child.
 * NNM_TEST_DEVICE=emu|cuda (tests/test_device.h; ctest's test_transformer_emu)
 * runs the golden cases on that device (the layer moved after its state
 * loaded, the inputs copied there); the other tests run on the CPU run only. */
#include "test_util.h"

#include "golden_util.h"
#include "test_device.h"

#define FWD_RTOL 1e-4
#define FWD_ATOL 2e-5
#define GRAD_RTOL 1e-3
#define GRAD_ATOL 1e-4

static nnm_ctx *g_ctx;
#define TU_CTX g_ctx
static int g_skip; /* NNM_TEST_DEVICE names a device this machine lacks */

/* The entry as a bool tensor (nonzero: true). */
static nnm_tensor *entry_bool(nnm_safetensors *st, const char *name) {
    nnm_st_entry e = {sizeof e};
    if (nnm_safetensors_find(st, name, &e) != NNM_OK) return NULL;
    nnm_tensor *t = NULL;
    const nnm_dtype dt = {NNM_DTYPE_BOOL, 8, 1};
    if (nnm_tensor_new(g_ctx, (nnm_device){NNM_DEVICE_CPU, 0}, dt, e.ndim, e.shape, &t) != NNM_OK) return NULL;
    uint8_t *p = tu_cpu_data(t);
    const float *f = (const float *)e.data;
    for (int64_t i = 0; i < nnm_tensor_numel(t); i++) p[i] = f[i] != 0.0f;
    return t;
}

/* PyTorch's state_dict from the fixture, loaded strictly (missing or
 * unexpected keys, or a shape that differs, fail). */
static int load_strict(const char *file, nnm_module *m, nnm_safetensors *st) {
    nnm_state_dict *sd = NULL;
    if (nnm_state_dict_new(g_ctx, &sd) != NNM_OK) return 1;
    int bad = 0;
    for (uint32_t i = 0; i < nnm_safetensors_count(st) && !bad; i++) {
        nnm_st_entry e = {sizeof e};
        if (nnm_safetensors_entry(st, i, &e) != NNM_OK || strncmp(e.name, "state.", 6) != 0) continue;
        nnm_tensor *t = gu_entry_f32(g_ctx, st, e.name);
        bad = !t || nnm_state_dict_set(sd, e.name + 6, t) != NNM_OK;
        nnm_tensor_release(t);
    }
    nnm_load_report *rep = NULL;
    if (!bad && nnm_module_load_state_dict(m, sd, 1, &rep) != NNM_OK) {
        fprintf(stderr, "\n  %s: strict load of PyTorch's state_dict: %s\n", file, nnm_ctx_errmsg(g_ctx));
        bad = 1;
    }
    nnm_load_report_free(rep);
    nnm_state_dict_free(sd);
    return bad;
}

typedef struct named_list {
    int n;
    char names[256][128];
    nnm_tensor *t[256];
} named_list;

static nnm_status collect(void *user, const char *name, nnm_tensor *t) {
    named_list *l = user;
    if (l->n < 256) {
        snprintf(l->names[l->n], sizeof l->names[0], "%s", name);
        l->t[l->n++] = t;
    }
    return NNM_OK;
}

static int idx_in(const char *list, int i) {
    for (const char *q = list; q && *q;) {
        if (atoi(q) == i) return 1;
        q = strchr(q, ',');
        if (q) q++;
    }
    return 0;
}

static int run_case(const char *file) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", NNM_TEST_TRANSFORMER_DIR, file);
    nnm_safetensors *st = NULL;
    if (nnm_safetensors_open(g_ctx, path, &st) != NNM_OK) {
        fprintf(stderr, "\n  %s: %s\n", file, nnm_ctx_errmsg(g_ctx));
        return 1;
    }
    int bad = 0, n_in = 0;
    nnm_manifest *mf = NULL;
    nnm_module *m = NULL;
    nnm_tensor *in[NNM_MAX_IO] = {0}, *y = NULL, *w = NULL, *p = NULL, *s = NULL;
    const char *man = gu_meta(st, "manifest"), *mode = gu_meta(st, "mode"), *gi = gu_meta(st, "grad_inputs"),
               *bi = gu_meta(st, "bool_inputs"), *want_repr = gu_meta(st, "repr");
    n_in = gu_meta(st, "n_inputs") ? atoi(gu_meta(st, "n_inputs")) : 0;
    if (!man || !mode || n_in < 1 || n_in > NNM_MAX_IO) {
        fprintf(stderr, "\n  %s: malformed fixture\n", file);
        bad = 1;
        goto done;
    }
    if (nnm_manifest_parse(g_ctx, man, strlen(man), NNM_MANIFEST_JSON, NULL, NULL, &mf) != NNM_OK ||
        nnm_manifest_build(mf, 0, &m) != NNM_OK) {
        fprintf(stderr, "\n  %s: building the layer: %s\n", file, nnm_ctx_errmsg(g_ctx));
        bad = 1;
        goto done;
    }
    if ((bad = load_strict(file, m, st))) goto done;
    if (want_repr) {
        static char got[65536];
        nnm_module_repr(m, got, sizeof got);
        gu_torch_repr(got);
        g_gu.tensors++;
        if (strcmp(got, want_repr) != 0) {
            fprintf(stderr, "\n  %s: repr\n    got  %s\n    want %s\n", file, got, want_repr);
            bad++;
        }
    }
    nnm_module_train(m, strcmp(mode, "train") == 0);
    if (nnm_module_to(m, td_device()) != NNM_OK) {
        fprintf(stderr, "\n  %s: to %s: %s\n", file, td_name(), nnm_ctx_errmsg(g_ctx));
        bad = 1;
        goto done;
    }
    for (int i = 0; i < n_in; i++) {
        char name[32];
        snprintf(name, sizeof name, "input_%d", i);
        in[i] = idx_in(bi, i) ? entry_bool(st, name) : gu_entry_f32(g_ctx, st, name);
        if (!in[i] || !td_move(g_ctx, &in[i])) {
            fprintf(stderr, "\n  %s: no %s\n", file, name);
            bad = 1;
            goto done;
        }
        if (idx_in(gi, i)) nnm_tensor_set_requires_grad(in[i], 1);
    }
    if (nnm_module_call(m, in, (uint32_t)n_in, &y, 1) != NNM_OK) {
        fprintf(stderr, "\n  %s: call: %s\n", file, nnm_ctx_errmsg(g_ctx));
        bad = 1;
        goto done;
    }
    bad += gu_compare(file, "output", y, st, "output_0", FWD_RTOL, FWD_ATOL);
    if (strcmp(mode, "train") != 0) {
        /* eval under no_grad: multihead_attention's fused inference path
         * (one in-projection, host->op_attention), where the masks allow it */
        nnm_tensor *y0 = NULL;
        const int prev = nnm_grad_set_enabled(0);
        if (nnm_module_call(m, in, (uint32_t)n_in, &y0, 1) != NNM_OK) {
            fprintf(stderr, "\n  %s: no_grad call: %s\n", file, nnm_ctx_errmsg(g_ctx));
            bad++;
        } else {
            bad += gu_compare(file, "output (no_grad)", y0, st, "output_0", FWD_RTOL, FWD_ATOL);
        }
        nnm_grad_set_enabled(prev);
        nnm_tensor_release(y0);
    }
    w = gu_entry_f32(g_ctx, st, "upstream_0");
    if (!w || !td_move(g_ctx, &w) || nnm_op_binary(g_ctx, NNM_BINARY_MUL, y, w, &p) != NNM_OK ||
        nnm_op_reduce(g_ctx, NNM_REDUCE_SUM, p, NULL, 0, 0, &s) != NNM_OK || nnm_backward(s, NULL, 0) != NNM_OK) {
        fprintf(stderr, "\n  %s: backward: %s\n", file, nnm_ctx_errmsg(g_ctx));
        bad++;
        goto done;
    }
    for (int i = 0; i < n_in; i++) {
        if (!idx_in(gi, i)) continue;
        char name[32];
        snprintf(name, sizeof name, "grad_input_%d", i);
        bad += gu_compare(file, name, nnm_tensor_grad(in[i]), st, name, GRAD_RTOL, GRAD_ATOL);
    }
    static named_list ps;
    ps.n = 0;
    nnm_module_named_parameters(m, collect, &ps);
    for (int j = 0; j < ps.n; j++) {
        char key[160];
        snprintf(key, sizeof key, "grad.%s", ps.names[j]);
        bad += gu_compare(file, key, nnm_tensor_grad(ps.t[j]), st, key, GRAD_RTOL, GRAD_ATOL);
    }
done:
    nnm_tensor_release(s);
    nnm_tensor_release(p);
    nnm_tensor_release(w);
    nnm_tensor_release(y);
    for (int i = 0; i < n_in; i++) nnm_tensor_release(in[i]);
    nnm_module_release(m);
    nnm_manifest_free(mf);
    nnm_safetensors_close(st);
    return bad;
}

static void test_golden(void) {
    if (g_skip) return;
    char *names[64];
    int n = gu_list_fixtures(NNM_TEST_TRANSFORMER_DIR, names, 64);
    CU_ASSERT(n >= 10);
    int failed = 0;
    for (int i = 0; i < n; i++) {
        int bad = run_case(names[i]);
        if (bad) fprintf(stderr, "\n  FAILED %s (%d)\n", names[i], bad);
        failed += bad != 0;
        free(names[i]);
    }
    CU_ASSERT_EQUAL(failed, 0);
    CU_ASSERT(g_gu.tensors > 10 * 20);
}

/* ---- the made children are children ------------------------------------- */

static nnm_module *encoder_layer(int64_t d, int64_t h, int64_t ff, double p) {
    nnm_config *cfg = NULL;
    nnm_config_new(&cfg);
    nnm_config_set_int(cfg, "d_model", d);
    nnm_config_set_int(cfg, "nhead", h);
    nnm_config_set_int(cfg, "dim_feedforward", ff);
    nnm_config_set_float(cfg, "dropout", p);
    nnm_module *m = tu_module(g_ctx, "transformer_encoder_layer", cfg);
    nnm_config_free(cfg);
    return m;
}

static nnm_status key_of(void *user, const char *name, nnm_tensor *t) {
    (void)t;
    named_list *l = user;
    if (l->n < 256) snprintf(l->names[l->n++], sizeof l->names[0], "%s", name);
    return NNM_OK;
}

static void test_state_dict_keys(void) {
    if (td_off_cpu() || g_skip) return; /* the CPU run covers it */
    nnm_module *m = encoder_layer(8, 2, 12, 0.1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    static const char *const want[] = {
        "self_attn.in_proj_weight", "self_attn.in_proj_bias", "self_attn.out_proj.weight",
        "self_attn.out_proj.bias",  "linear1.weight",         "linear1.bias",
        "linear2.weight",           "linear2.bias",           "norm1.weight",
        "norm1.bias",               "norm2.weight",           "norm2.bias"};
    static named_list l;
    l.n = 0;
    CHECK_STATUS(nnm_module_named_parameters(m, key_of, &l), NNM_OK);
    CU_ASSERT_EQUAL(l.n, 12);
    for (int i = 0; i < l.n && i < 12; i++)
        if (strcmp(l.names[i], want[i]) != 0) {
            fprintf(stderr, "\n  key %d: %s, PyTorch's is %s\n", i, l.names[i], want[i]);
            CU_FAIL("state_dict key order");
        }
    /* PyTorch's child names and order */
    static const char *const kids[] = {"self_attn", "linear1", "dropout", "linear2",
                                       "norm1",     "norm2",   "dropout1", "dropout2"};
    CU_ASSERT_EQUAL(nnm_module_child_count(m), 8);
    for (uint32_t i = 0; i < 8 && i < nnm_module_child_count(m); i++)
        CU_ASSERT_STRING_EQUAL(nnm_module_name(nnm_module_child(m, i)), kids[i]);
    CU_ASSERT_STRING_EQUAL(nnm_module_type(nnm_module_get(m, "self_attn.out_proj")),
                           "non_dynamically_quantizable_linear");
    CU_ASSERT_EQUAL(nnm_module_num_params(m), 3 * 8 * 8 + 3 * 8 + 8 * 8 + 8 + 8 * 12 + 12 + 12 * 8 + 8 + 4 * 8);
    nnm_module_release(m);

    /* a stack: layers.N.*, norm.* */
    nnm_config *cfg = NULL;
    nnm_config_new(&cfg);
    nnm_config_set_int(cfg, "d_model", 8);
    nnm_config_set_int(cfg, "nhead", 2);
    nnm_config_set_int(cfg, "dim_feedforward", 12);
    nnm_config_set_int(cfg, "num_layers", 3);
    nnm_config_set_bool(cfg, "norm", 1);
    m = tu_module(g_ctx, "transformer_encoder", cfg);
    nnm_config_free(cfg);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    l.n = 0;
    CHECK_STATUS(nnm_module_named_parameters(m, key_of, &l), NNM_OK);
    CU_ASSERT_EQUAL(l.n, 3 * 12 + 2);
    CU_ASSERT_STRING_EQUAL(l.names[0], "layers.0.self_attn.in_proj_weight");
    CU_ASSERT_STRING_EQUAL(l.names[12], "layers.1.self_attn.in_proj_weight");
    CU_ASSERT_STRING_EQUAL(l.names[36], "norm.weight");
    CU_ASSERT_STRING_EQUAL(nnm_module_type(nnm_module_get(m, "layers")), "module_list");
    nnm_module_release(m);
}

static int g_hook_calls;
static nnm_status count_hook(void *user, nnm_module *m, nnm_tensor *const *in, uint32_t n_in, nnm_tensor **out,
                             uint32_t n_out) {
    (void)user, (void)m, (void)in, (void)n_in, (void)out, (void)n_out;
    g_hook_calls++;
    return NNM_OK;
}

static void test_children_are_children(void) {
    if (td_off_cpu() || g_skip) return; /* the CPU run covers it */
    LEAK_CHECK_BEGIN();
    nnm_module *m = encoder_layer(8, 2, 12, 0.5);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    /* hooks on made children fire through the layer's forward */
    g_hook_calls = 0;
    CHECK_STATUS(nnm_module_register_forward_hook(nnm_module_get(m, "self_attn.out_proj"), count_hook, NULL, NULL),
                 NNM_OK);
    CHECK_STATUS(nnm_module_register_forward_hook(nnm_module_get(m, "linear2"), count_hook, NULL, NULL), NNM_OK);
    float xv[4 * 2 * 8];
    tu_fill_uniform(xv, 64, 7, -1, 1);
    nnm_tensor *x = tu_tf32(g_ctx, 3, (int64_t[]){4, 2, 8}, xv), *y = NULL, *y2 = NULL;
    CHECK_STATUS(tu_call1(m, x, &y), NNM_OK);
    CU_ASSERT_EQUAL(g_hook_calls, 2);
    /* eval reaches them: dropout 0.5 off, two calls agree */
    CHECK_STATUS(nnm_module_train(m, 0), NNM_OK);
    CU_ASSERT_FALSE(nnm_module_is_training(nnm_module_get(m, "dropout1")));
    CU_ASSERT_FALSE(nnm_module_is_training(nnm_module_get(m, "self_attn.out_proj")));
    nnm_tensor_release(y);
    y = NULL;
    CHECK_STATUS(tu_call1(m, x, &y), NNM_OK);
    CHECK_STATUS(tu_call1(m, x, &y2), NNM_OK);
    int64_t n1 = 0, n2 = 0;
    float *a = tu_read_f32(y, &n1), *b = tu_read_f32(y2, &n2);
    CU_ASSERT(a && b && n1 == 64 && n2 == 64 && memcmp(a, b, 64 * sizeof(float)) == 0);
    free(a);
    free(b);
    CU_ASSERT_EQUAL(g_hook_calls, 6);
    /* a device move takes them (to the meta device: the data is dropped) */
    CHECK_STATUS(nnm_module_to(m, (nnm_device){NNM_DEVICE_META, 0}), NNM_OK);
    CU_ASSERT_EQUAL(nnm_module_device(nnm_module_get(m, "self_attn.out_proj")).type, NNM_DEVICE_META);
    /* printing, PyTorch's layout */
    char buf[4096];
    nnm_module_repr(m, buf, sizeof buf);
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "TransformerEncoderLayer(\n  (self_attn): MultiheadAttention(\n    "
                                       "(out_proj): NonDynamicallyQuantizableLinear(in_features=8, out_features=8, bias=True)"));
    nnm_tensor_release(y);
    nnm_tensor_release(y2);
    nnm_tensor_release(x);
    nnm_module_release(m);
    LEAK_CHECK_END();
}

/* ---- manifests -------------------------------------------------------------- */

static const char *const k_stack_manifest =
    "{\"format\": \"nnmod.manifest\", \"version\": 1, \"plugins\": {\"sequential\": \"^1.0\", "
    "\"transformer_encoder\": \"^1.0\", \"linear\": \"^1.0\"},"
    " \"root\": {\"type\": \"sequential\", \"children\": ["
    "{\"name\": \"enc\", \"type\": \"transformer_encoder\", \"config\": {\"d_model\": 8, \"nhead\": 2,"
    " \"dim_feedforward\": 12, \"num_layers\": 2, \"norm\": true, \"batch_first\": true, \"dropout\": 0.25}},"
    "{\"name\": \"head\", \"type\": \"linear\", \"config\": {\"in_features\": 8, \"out_features\": 3}}]}}";

static void test_manifest_round_trip(void) {
    if (td_off_cpu() || g_skip) return; /* the CPU run covers it */
    LEAK_CHECK_BEGIN();
    nnm_manifest *mf = NULL, *mf2 = NULL, *back = NULL;
    nnm_module *m = NULL, *m2 = NULL;
    CHECK_STATUS(nnm_manifest_parse(g_ctx, k_stack_manifest, strlen(k_stack_manifest), NNM_MANIFEST_JSON, NULL,
                                    NULL, &mf),
                 NNM_OK);
    CHECK_STATUS(nnm_manifest_build(mf, 0, &m), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    CU_ASSERT_PTR_NOT_NULL(nnm_module_get(m, "enc.layers.1.self_attn.out_proj"));
    /* the tree -> a manifest: the made children are not written */
    CHECK_STATUS(nnm_manifest_from_module(m, &back), NNM_OK);
    void *text = NULL;
    size_t len = 0;
    CHECK_STATUS(nnm_manifest_write(back, NNM_MANIFEST_JSON, &text, &len), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    char *js = calloc(1, len + 1);
    memcpy(js, text, len);
    CU_ASSERT_PTR_NULL(strstr(js, "self_attn"));
    CU_ASSERT_PTR_NULL(strstr(js, "layers."));
    CU_ASSERT_PTR_NULL(strstr(js, "module_list"));
    CU_ASSERT_PTR_NOT_NULL(strstr(js, "transformer_encoder"));
    CU_ASSERT_PTR_NOT_NULL(strstr(js, "\"head\""));
    /* ... and reads back to the same tree */
    CHECK_STATUS(nnm_manifest_parse(g_ctx, js, len, NNM_MANIFEST_JSON, NULL, NULL, &mf2), NNM_OK);
    CHECK_STATUS(nnm_manifest_build(mf2, 0, &m2), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m2);
    nnm_state_dict *sd = NULL, *sd2 = NULL;
    CHECK_STATUS(nnm_module_state_dict(m, &sd), NNM_OK);
    CHECK_STATUS(nnm_module_state_dict(m2, &sd2), NNM_OK);
    CU_ASSERT_EQUAL(nnm_state_dict_count(sd), nnm_state_dict_count(sd2));
    CU_ASSERT_EQUAL(nnm_state_dict_count(sd), 2 * 12 + 2 + 2);
    for (uint32_t i = 0; i < nnm_state_dict_count(sd) && i < nnm_state_dict_count(sd2); i++) {
        const char *a = NULL, *b = NULL;
        nnm_state_dict_entry(sd, i, &a, NULL);
        nnm_state_dict_entry(sd2, i, &b, NULL);
        CU_ASSERT_STRING_EQUAL(a, b);
    }
    /* same weights, same outputs */
    CHECK_STATUS(nnm_module_load_state_dict(m2, sd, 1, NULL), NNM_OK);
    nnm_module_train(m, 0);
    nnm_module_train(m2, 0);
    float xv[2 * 3 * 8];
    tu_fill_uniform(xv, 48, 3, -1, 1);
    nnm_tensor *x = tu_tf32(g_ctx, 3, (int64_t[]){2, 3, 8}, xv), *y = NULL, *y2 = NULL;
    CHECK_STATUS(tu_call1(m, x, &y), NNM_OK);
    CHECK_STATUS(tu_call1(m2, x, &y2), NNM_OK);
    int64_t n1 = 0, n2 = 0;
    float *a = tu_read_f32(y, &n1), *b = tu_read_f32(y2, &n2);
    CU_ASSERT(a && b && n1 == 18 && n2 == 18 && memcmp(a, b, 18 * sizeof(float)) == 0);
    free(a);
    free(b);
    /* the same manifest text again (a round trip is a fixed point) */
    nnm_manifest *again = NULL;
    void *text2 = NULL;
    size_t len2 = 0;
    CHECK_STATUS(nnm_manifest_from_module(m2, &again), NNM_OK);
    CHECK_STATUS(nnm_manifest_write(again, NNM_MANIFEST_JSON, &text2, &len2), NNM_OK);
    CU_ASSERT(len2 == len && text2 && memcmp(text, text2, len) == 0);
    nnm_free(text2);
    nnm_manifest_free(again);
    /* msgpack too, and validation on the meta device counts the made tensors */
    CU_ASSERT_TRUE(tu_manifest_reads_back(g_ctx, back));
    nnm_module *meta_m = NULL;
    CHECK_STATUS(nnm_manifest_build(mf2, NNM_BUILD_META, &meta_m), NNM_OK);
    CU_ASSERT_EQUAL(nnm_module_nbytes(meta_m), nnm_module_nbytes(m));
    nnm_module_release(meta_m);
    nnm_tensor_release(y);
    nnm_tensor_release(y2);
    nnm_tensor_release(x);
    nnm_state_dict_free(sd);
    nnm_state_dict_free(sd2);
    free(js);
    nnm_free(text);
    nnm_module_release(m);
    nnm_module_release(m2);
    nnm_manifest_free(mf);
    nnm_manifest_free(mf2);
    nnm_manifest_free(back);
    LEAK_CHECK_END();
}

static void test_manifest_limits_count_made(void) {
    if (td_off_cpu() || g_skip) return; /* the CPU run covers it */
    /* limits.max_param_bytes sees the tensors of the made children (the
     * layer itself declares none) */
    nnm_manifest_limits lim = {sizeof lim};
    lim.max_param_bytes = 4096;
    const char *doc =
        "{\"format\": \"nnmod.manifest\", \"version\": 1, \"plugins\": {\"transformer_encoder_layer\": \"^1.0\"},"
        " \"root\": {\"type\": \"transformer_encoder_layer\", \"config\": {\"d_model\": 64, \"nhead\": 2}}}";
    nnm_manifest *mf = NULL;
    nnm_module *m = NULL;
    CHECK_STATUS(nnm_manifest_parse(g_ctx, doc, strlen(doc), NNM_MANIFEST_JSON, &lim, NULL, &mf), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(mf);
    CHECK_ERROR(nnm_manifest_build(mf, 0, &m), NNM_E_LIMIT, "max_param_bytes");
    CU_ASSERT_PTR_NULL(m);
    nnm_manifest_free(mf);
}

static void test_manifest_children_refused(void) {
    if (td_off_cpu() || g_skip) return; /* the CPU run covers it */
    const char *doc =
        "{\"format\": \"nnmod.manifest\", \"version\": 1, \"plugins\": {\"transformer_encoder_layer\": \"^1.0\","
        " \"linear\": \"^1.0\"}, \"root\": {\"type\": \"transformer_encoder_layer\", \"config\": {\"d_model\": 8,"
        " \"nhead\": 2}, \"children\": [{\"name\": \"linear1\", \"type\": \"linear\", \"config\":"
        " {\"in_features\": 8, \"out_features\": 2048}}]}}";
    nnm_manifest *mf = NULL;
    CHECK_ERROR(nnm_manifest_parse(g_ctx, doc, strlen(doc), NNM_MANIFEST_JSON, NULL, NULL, &mf), NNM_E_INVALID,
                "root.children: transformer_encoder_layer makes its children itself from its config");
    CU_ASSERT_PTR_NULL(mf);
    /* an empty list is no children */
    const char *empty =
        "{\"format\": \"nnmod.manifest\", \"version\": 1, \"plugins\": {\"transformer_encoder_layer\": \"^1.0\"},"
        " \"root\": {\"type\": \"transformer_encoder_layer\", \"config\": {\"d_model\": 8, \"nhead\": 2},"
        " \"children\": []}}";
    CHECK_STATUS(nnm_manifest_parse(g_ctx, empty, strlen(empty), NNM_MANIFEST_JSON, NULL, NULL, &mf), NNM_OK);
    nnm_manifest_free(mf);
}

static void test_changed_tree_refused(void) {
    if (td_off_cpu() || g_skip) return; /* the CPU run covers it */
    LEAK_CHECK_BEGIN();
    nnm_manifest *mf = NULL;
    /* attached by hand */
    nnm_module *m = encoder_layer(8, 2, 12, 0.1);
    nnm_module *extra = tu_linear(g_ctx, "linear", 8, 8, 1);
    CHECK_STATUS(nnm_module_add_child(m, "adapter", extra), NNM_OK);
    CHECK_ERROR(nnm_manifest_from_module(m, &mf), NNM_E_STATE, "'adapter' was attached by hand");
    CU_ASSERT_PTR_NULL(mf);
    /* replaced (model.linear1 = Linear(...)) */
    CHECK_STATUS(nnm_module_del_child(m, "adapter"), NNM_OK);
    CHECK_STATUS(nnm_manifest_from_module(m, &mf), NNM_OK);
    nnm_manifest_free(mf);
    mf = NULL;
    nnm_module *lin = tu_linear(g_ctx, "linear", 8, 12, 1);
    CHECK_STATUS(nnm_module_set_child(m, "linear1", lin), NNM_OK);
    CHECK_ERROR(nnm_manifest_from_module(m, &mf), NNM_E_STATE, "'linear1' was attached by hand");
    /* deleted */
    nnm_module *m2 = encoder_layer(8, 2, 12, 0.1);
    CHECK_STATUS(nnm_module_del_child(m2, "dropout2"), NNM_OK);
    CHECK_ERROR(nnm_manifest_from_module(m2, &mf), NNM_E_STATE, "deleted or replaced");
    /* and calling a deleted child fails, naming it (PyTorch: AttributeError) */
    float xv[16];
    tu_fill_uniform(xv, 16, 1, -1, 1);
    nnm_tensor *x = tu_tf32(g_ctx, 2, (int64_t[]){2, 8}, xv), *y = NULL;
    CHECK_ERROR(tu_call1(m2, x, &y), NNM_E_NOT_FOUND, "dropout2");
    /* a made child outlives its maker without dangling */
    nnm_module *sa = nnm_module_get(m2, "self_attn");
    nnm_module_retain(sa);
    nnm_module_release(m2);
    CHECK_STATUS(nnm_manifest_from_module(sa, &mf), NNM_OK);
    nnm_manifest_free(mf);
    nnm_module_release(sa);
    nnm_tensor_release(x);
    nnm_module_release(extra);
    nnm_module_release(lin);
    nnm_module_release(m);
    LEAK_CHECK_END();
}

static void test_bad_configs(void) {
    if (td_off_cpu() || g_skip) return; /* the CPU run covers it */
    nnm_config *cfg = NULL;
    nnm_module *m = NULL;
    nnm_config_new(&cfg);
    nnm_config_set_int(cfg, "d_model", 10);
    nnm_config_set_int(cfg, "nhead", 3);
    CHECK_ERROR(nnm_module_create(g_ctx, "transformer_encoder_layer", cfg, &m), NNM_E_INVALID,
                "d_model must be divisible by nhead");
    nnm_config_set_int(cfg, "nhead", 2);
    nnm_config_set_str(cfg, "activation", "tanh");
    CHECK_ERROR(nnm_module_create(g_ctx, "transformer_encoder_layer", cfg, &m), NNM_E_INVALID,
                "activation should be relu/gelu, not tanh");
    nnm_config_set_str(cfg, "activation", "gelu");
    CHECK_ERROR(nnm_module_create(g_ctx, "transformer_encoder", cfg, &m), NNM_E_NOT_FOUND, "num_layers");
    nnm_config_set_int(cfg, "num_layers", 2);
    CHECK_ERROR(nnm_module_create(g_ctx, "transformer_encoder_layer", cfg, &m), NNM_E_INVALID, "num_layers");
    CU_ASSERT_PTR_NULL(m);
    nnm_config_free(cfg);
    /* a wrong input names the layer's own terms */
    nnm_module *l = encoder_layer(8, 2, 12, 0.0);
    float xv[12];
    tu_fill_uniform(xv, 12, 1, -1, 1);
    nnm_tensor *x = tu_tf32(g_ctx, 2, (int64_t[]){2, 6}, xv), *y = NULL;
    CHECK_ERROR(tu_call1(l, x, &y), NNM_E_SHAPE, "src must be f32 [S, N, E] (or [S, E] unbatched) with E = d_model = 8");
    nnm_tensor_release(x);
    nnm_module_release(l);
}

/* multihead_attention's fused inference path (grad mode off: one
 * in-projection, host->op_attention over packed heads) against its composed
 * path (grad mode on), for each way the projections pack: self-attention (q,
 * k, v one tensor), cross-attention (k and v one tensor), three tensors, and
 * kdim/vdim (separate weights); seq-first, batch-first and unbatched; no
 * mask, causal, a bool key padding mask and a f32 attn_mask. */
static void test_fused_attention_matches(void) {
    if (td_off_cpu() || g_skip) return; /* the CPU run covers it */
    LEAK_CHECK_BEGIN();
    enum { E = 12, H = 3, L = 5, S = 7, N = 2 };
    static const struct { int batch_first, batched, pack, kvdim, causal, kpm, am; } cases[] = {
        {0, 1, 0, 0, 0, 0, 0}, {1, 1, 0, 0, 1, 0, 0}, {0, 0, 0, 0, 0, 0, 1}, {0, 1, 1, 0, 0, 1, 0},
        {1, 1, 1, 0, 0, 0, 1}, {0, 1, 2, 0, 0, 0, 0}, {1, 1, 2, 1, 0, 1, 1}, {0, 0, 1, 1, 1, 0, 0},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const int bf = cases[c].batch_first, b = cases[c].batched, pack = cases[c].pack;
        const int64_t kd = cases[c].kvdim ? 8 : E, vd = cases[c].kvdim ? 6 : E;
        const int64_t Lq = pack == 0 ? S : L; /* self-attention: one length */
        nnm_config *cfg = NULL;
        nnm_config_new(&cfg);
        nnm_config_set_int(cfg, "embed_dim", E);
        nnm_config_set_int(cfg, "num_heads", H);
        nnm_config_set_int(cfg, "kdim", pack == 0 ? E : kd);
        nnm_config_set_int(cfg, "vdim", pack == 0 ? E : vd);
        nnm_config_set_bool(cfg, "batch_first", bf);
        nnm_config_set_bool(cfg, "is_causal", cases[c].causal);
        nnm_module *m = tu_module(g_ctx, "multihead_attention", cfg);
        nnm_config_free(cfg);
        CU_ASSERT_PTR_NOT_NULL_FATAL(m);
        nnm_config *lc = NULL;
        nnm_config_new(&lc);
        nnm_config_set_int(lc, "in_features", E);
        nnm_config_set_int(lc, "out_features", E);
        nnm_module *op = tu_module(g_ctx, "linear", lc);
        nnm_config_free(lc);
        CHECK_STATUS(nnm_module_add_child(m, "out_proj", op), NNM_OK);
        nnm_module_release(op);
        nnm_module_train(m, 0);
        float buf[3][N * S * E];
        nnm_tensor *x[3] = {NULL, NULL, NULL};
        const int64_t T[3] = {Lq, S, S}, C[3] = {E, pack == 0 ? E : kd, pack == 0 ? E : vd};
        for (int i = 0; i < 3; i++) {
            if (i > 0 && (pack == 0 || (pack == 1 && i == 2))) {
                x[i] = x[pack == 0 ? 0 : 1];
                nnm_tensor_retain(x[i]);
                continue;
            }
            tu_fill_uniform(buf[i], (size_t)(N * T[i] * C[i]), (uint32_t)(c * 3 + i + 1), -1, 1);
            const int64_t s3[3] = {bf ? N : T[i], bf ? T[i] : N, C[i]}, s2[2] = {T[i], C[i]};
            x[i] = b ? tu_tf32(g_ctx, 3, s3, buf[i]) : tu_tf32(g_ctx, 2, s2, buf[i]);
        }
        if (pack == 1 && cases[c].kvdim) { /* k and v share a tensor only with kdim == vdim */
            nnm_tensor_release(x[2]);
            float vb[N * S * 6];
            tu_fill_uniform(vb, (size_t)(N * S * vd), 99, -1, 1);
            const int64_t s3[3] = {bf ? N : S, bf ? S : N, vd}, s2[2] = {S, vd};
            x[2] = b ? tu_tf32(g_ctx, 3, s3, vb) : tu_tf32(g_ctx, 2, s2, vb);
        }
        nnm_tensor *in[5] = {x[0], x[1], x[2], NULL, NULL};
        uint32_t n_in = 3;
        if (cases[c].kpm) {
            uint8_t kb[N * S] = {0};
            for (int i = 0; i < N * S; i += 3) kb[i + 1] = 1;
            const int64_t ks[2] = {N, S};
            CHECK_STATUS(nnm_tensor_new(g_ctx, (nnm_device){NNM_DEVICE_CPU, 0}, (nnm_dtype){NNM_DTYPE_BOOL, 8, 1},
                                        b ? 2 : 1, b ? ks : ks + 1, &in[3]), NNM_OK);
            memcpy(tu_cpu_data(in[3]), kb, (size_t)(b ? N * S : S));
            n_in = 4;
        }
        if (cases[c].am) {
            float ab[L * S > S * S ? L * S : S * S];
            tu_fill_uniform(ab, (size_t)(Lq * S), 7, -2, 2);
            if (!in[3]) CHECK_STATUS(nnm_tensor_from_f32(g_ctx, 1, (int64_t[]){0}, NULL, &in[3]), NNM_OK);
            in[4] = tu_tf32(g_ctx, 2, (int64_t[]){Lq, S}, ab);
            n_in = 5;
        }
        nnm_tensor *y1 = NULL, *y0 = NULL;
        CHECK_STATUS(nnm_module_call(m, in, n_in, &y1, 1), NNM_OK); /* grad on: composed */
        const int prev = nnm_grad_set_enabled(0);
        CHECK_STATUS(nnm_module_call(m, in, n_in, &y0, 1), NNM_OK); /* fused */
        nnm_grad_set_enabled(prev);
        const int64_t n = y1 ? nnm_tensor_numel(y1) : 0;
        CU_ASSERT_TRUE(n == (b ? N : 1) * Lq * E && y0 != NULL && nnm_tensor_numel(y0) == n);
        float a1[N * S * E], a0[N * S * E];
        int bad = 0;
        if (y0 && y1 && nnm_tensor_to_f32(y1, a1, (size_t)n) == NNM_OK && nnm_tensor_to_f32(y0, a0, (size_t)n) == NNM_OK) {
            for (int64_t i = 0; i < n; i++)
                if (!(fabsf(a1[i] - a0[i]) <= 1e-5f + 1e-4f * fabsf(a1[i]))) {
                    if (!bad) fprintf(stderr, "\n  [%lld] %g vs %g", (long long)i, a1[i], a0[i]);
                    bad++;
                }
        } else {
            bad = -1;
        }
        if (bad) fprintf(stderr, "\n  fused attention case %zu: %d elements differ (of %lld)\n", c, bad, (long long)n);
        CU_ASSERT_EQUAL(bad, 0);
        nnm_tensor_release(y0);
        nnm_tensor_release(y1);
        for (int i = 0; i < 5; i++) nnm_tensor_release(in[i]);
        nnm_module_release(m);
    }
    LEAK_CHECK_END();
}

static int init(void) {
    if (tu_ctx_new(&g_ctx) != 0) return 1;
    const int r = td_init(g_ctx);
    g_skip = r == 1;
    return r < 0;
}
static int clean(void) {
    const int r = tu_ctx_free(&g_ctx);
    td_teardown();
    return r;
}

int main(void) {
    CU_pSuite s = tu_suite("transformer", init, clean);
    CU_add_test(s, "golden (PyTorch 1.13)", test_golden);
    CU_add_test(s, "fused inference attention matches the composed path", test_fused_attention_matches);
    CU_add_test(s, "state_dict keys", test_state_dict_keys);
    CU_add_test(s, "made children are children", test_children_are_children);
    CU_add_test(s, "manifest round trip", test_manifest_round_trip);
    CU_add_test(s, "manifest limits count made", test_manifest_limits_count_made);
    CU_add_test(s, "manifest children refused", test_manifest_children_refused);
    CU_add_test(s, "changed tree refused", test_changed_tree_refused);
    CU_add_test(s, "bad configs", test_bad_configs);
    return tu_run();
}
