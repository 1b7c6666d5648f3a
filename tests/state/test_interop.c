/* tests/state/test_interop.c - PyTorch interop through manifests.
 *
 * tests/golden/make_state_golden.py trains two models in PyTorch and writes,
 * beside their state dicts and input/output pairs, the MATCHING nnmod
 * manifests (tests/golden/state/):
 *
 *   mlp.manifest.json     sequential(linear 4-8, relu, linear 8-3)
 *   nested.manifest.json  the script's Net as a root "graph" whose nodes call
 *                         into a module_list and a module_dict
 *                         ("heads.0: norm", "tasks.cls: norm"), with a
 *                         "center" layer (x - running_mean, a persistent and
 *                         a non-persistent buffer) registered statically here
 *
 * each naming its weights file with its sha256. For both models the suite
 * loads the manifest, builds the tree (weights loaded, hash verified), runs
 * PyTorch's input and compares with PyTorch's output; then the reverse: the
 * built model saves a state dict whose keys are exactly PyTorch's
 * state_dict keys (recorded in the *_io file's __metadata__) and whose
 * tensors equal PyTorch's bit for bit. A manifest whose sha256 was altered is
 * refused. No torch is needed here; with NNM_TEST_KEEP_DIR set, the saved
 * files are left there for `make_state_golden.py --check FILE`.
 */
#include "state_test.h"

#include <math.h>

#ifndef NNM_STATE_GOLDEN_DIR
#error "NNM_STATE_GOLDEN_DIR must name tests/golden/state"
#endif

#include "center_layer.h"

static int suite_init(void) {
    if (state_suite_init()) return 1;
    nnm_status st = nnm_plugin_register_static(g_ctx, &center_plugin, "test_interop.c");
    if (st) fprintf(stderr, "register center: %s\n", nnm_ctx_errmsg(g_ctx));
    return st != NNM_OK;
}

/* ------------------------------------------------------------------------ */
/* Golden files                                                              */
/* ------------------------------------------------------------------------ */

/* The golden inputs and outputs of one model (an *_io file). */
typedef struct golden_io {
    nnm_tensor *input;
    float *output; /* rows x cols */
    int64_t rows, cols;
} golden_io;

static void io_free(golden_io *io) {
    nnm_tensor_release(io->input);
    free(io->output);
    memset(io, 0, sizeof *io);
}

static int io_load(const char *name, golden_io *io) {
    memset(io, 0, sizeof *io);
    nnm_safetensors *st = NULL;
    CHECK_STATUS(nnm_safetensors_open(g_ctx, golden(name), &st), NNM_OK);
    if (!st) return 0;
    nnm_st_entry in, out;
    in.struct_size = out.struct_size = sizeof in;
    int ok = nnm_safetensors_find(st, "input", &in) == NNM_OK &&
             nnm_safetensors_find(st, "output", &out) == NNM_OK &&
             !strcmp(in.dtype_name, "F32") && !strcmp(out.dtype_name, "F32") && out.ndim == 2;
    if (ok) {
        /* The mapped data may be unaligned for float: copy it out. */
        float *x = malloc(in.nbytes ? in.nbytes : 1);
        io->output = malloc(out.nbytes ? out.nbytes : 1);
        ok = x && io->output;
        if (ok) {
            memcpy(x, in.data, in.nbytes);
            memcpy(io->output, out.data, out.nbytes);
            io->rows = out.shape[0];
            io->cols = out.shape[1];
            ok = nnm_tensor_from_f32(g_ctx, in.ndim, in.shape, x, &io->input) == NNM_OK;
        }
        free(x);
    }
    nnm_safetensors_close(st);
    CU_ASSERT_TRUE(ok);
    if (!ok) io_free(io);
    return ok;
}

/* Largest |got - want| over n floats; prints the first few beyond tol. */
static double max_abs_diff(const float *got, const float *want, size_t n, double tol) {
    double worst = 0;
    int shown = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        if (!(d <= tol) && shown++ < 3)
            fprintf(stderr, "\n  [%zu] got %.9g want %.9g\n", i, (double)got[i], (double)want[i]);
        if (!(d <= worst)) worst = d;
    }
    return worst;
}

/* Every tensor of `saved` is in `want` (PyTorch's file) with the same dtype,
 * shape and bytes, and both hold as many tensors. */
static void check_bitwise(const char *saved, const char *want) {
    nnm_safetensors *a = NULL, *b = NULL;
    CHECK_STATUS(nnm_safetensors_open(g_ctx, saved, &a), NNM_OK);
    CHECK_STATUS(nnm_safetensors_open(g_ctx, want, &b), NNM_OK);
    CU_ASSERT_FATAL(a != NULL && b != NULL);
    CU_ASSERT_EQUAL(nnm_safetensors_count(a), nnm_safetensors_count(b));
    for (uint32_t i = 0; i < nnm_safetensors_count(a); i++) {
        nnm_st_entry ea, eb;
        ea.struct_size = eb.struct_size = sizeof ea;
        CHECK_STATUS(nnm_safetensors_entry(a, i, &ea), NNM_OK);
        if (nnm_safetensors_find(b, ea.name, &eb) != NNM_OK) {
            fprintf(stderr, "\n  %s: not in PyTorch's file\n", ea.name);
            CU_FAIL("key not in PyTorch's file");
            continue;
        }
        CU_ASSERT_STRING_EQUAL(ea.dtype_name, eb.dtype_name);
        CU_ASSERT_EQUAL(ea.ndim, eb.ndim);
        for (int32_t d = 0; d < ea.ndim && d < eb.ndim; d++)
            CU_ASSERT_EQUAL(ea.shape[d], eb.shape[d]);
        CU_ASSERT_EQUAL(ea.nbytes, eb.nbytes);
        int same = ea.nbytes == eb.nbytes && memcmp(ea.data, eb.data, ea.nbytes) == 0;
        if (!same) fprintf(stderr, "\n  %s: bytes differ from PyTorch's\n", ea.name);
        CU_ASSERT_TRUE(same);
    }
    nnm_safetensors_close(a);
    nnm_safetensors_close(b);
}

/* The value of metadata `key` of a safetensors file, copied; NULL if none. */
static char *file_meta(const char *path, const char *key) {
    nnm_safetensors *st = NULL;
    if (nnm_safetensors_open(g_ctx, path, &st) != NNM_OK) return NULL;
    char *found = NULL;
    for (uint32_t i = 0; i < nnm_safetensors_metadata_count(st); i++) {
        const char *k, *v;
        if (nnm_safetensors_metadata(st, i, &k, &v) == NNM_OK && !strcmp(k, key))
            found = strdup(v);
    }
    nnm_safetensors_close(st);
    return found;
}

/* ------------------------------------------------------------------------ */
/* Both directions                                                           */
/* ------------------------------------------------------------------------ */

/* Loads a golden manifest and builds it (weights loaded, sha256 checked). */
static nnm_module *build_golden(const char *manifest, nnm_manifest **mf_out) {
    nnm_manifest *mf = NULL;
    nnm_module *m = NULL;
    CHECK_STATUS(nnm_manifest_load(g_ctx, golden(manifest), NNM_MANIFEST_AUTO, NULL, &mf), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(mf);
    /* The script gave the weights with their hash: the build verifies it. */
    CU_ASSERT_PTR_NOT_NULL(nnm_manifest_weights_path(mf));
    CU_ASSERT_PTR_NOT_NULL(nnm_manifest_weights_sha256(mf));
    CHECK_STATUS(nnm_manifest_build(mf, 0, &m), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    *mf_out = mf;
    return m;
}

/* nnmod's state dict of the built model: PyTorch's keys, PyTorch's bytes,
 * and the manifest's hash in the metadata; kept in $NNM_TEST_KEEP_DIR for
 * make_state_golden.py --check. */
static void check_reverse(nnm_module *m, const nnm_manifest *mf, const char *saved_name,
                          const char *weights, const char *io_file) {
    const char *p = tu_path(g_dir, saved_name);
    CHECK_STATUS(nnm_module_save(m, p, 0, NULL), NNM_OK);
    char *got = file_keys(p), *want = torch_keys(io_file);
    CU_ASSERT_FATAL(got != NULL && want != NULL);
    if (strcmp(got, want)) fprintf(stderr, "\n  keys:\n  got  %s\n  want %s\n", got, want);
    CU_ASSERT_STRING_EQUAL(got, want);
    free(got);
    free(want);
    check_bitwise(p, golden(weights));
    char hash[65];
    CHECK_STATUS(nnm_manifest_hash(mf, hash), NNM_OK);
    char *rec = file_meta(p, "nnmod_manifest_sha256");
    CU_ASSERT_PTR_NOT_NULL(rec);
    if (rec) CU_ASSERT_STRING_EQUAL(rec, hash);
    free(rec);

    const char *dir = getenv("NNM_TEST_KEEP_DIR");
    if (dir && *dir) {
        char keep[512];
        snprintf(keep, sizeof keep, "%s/%s", dir, saved_name);
        CHECK_STATUS(nnm_module_save(m, keep, 0, NULL), NNM_OK);
    }
}

static void test_mlp(void) {
    LEAK_CHECK_BEGIN();
    golden_io io;
    if (!io_load("mlp_io.safetensors", &io)) return;
    nnm_manifest *mf = NULL;
    nnm_module *m = build_golden("mlp.manifest.json", &mf);
    CU_ASSERT_STRING_EQUAL(nnm_manifest_weights_path(mf), "mlp.safetensors");
    CU_ASSERT_STRING_EQUAL(nnm_module_type(m), "sequential");

    nnm_tensor *y = NULL;
    CHECK_STATUS(nnm_module_call(m, &io.input, 1, &y, 1), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(y);
    const size_t n = (size_t)(io.rows * io.cols);
    CU_ASSERT_EQUAL_FATAL(nnm_tensor_numel(y), (int64_t)n);
    float *got = malloc(n * sizeof *got);
    CU_ASSERT_FATAL(got != NULL);
    CHECK_STATUS(nnm_tensor_to_f32(y, got, n), NNM_OK);
    double err = max_abs_diff(got, io.output, n, 1e-5);
    printf("\n    mlp: max |nnmod - PyTorch| = %.3g ", err);
    CU_ASSERT_TRUE(err <= 1e-5);
    free(got);
    nnm_tensor_release(y);

    check_reverse(m, mf, "mlp_manifest_nnmod.safetensors", "mlp.safetensors",
                  "mlp_io.safetensors");
    nnm_module_release(m);
    nnm_manifest_free(mf);
    io_free(&io);
    LEAK_CHECK_END();
}

/* Net.forward = cat([heads[0](h), heads[1](h), tasks["cls"](h),
 * tasks["reg"](h)], -1). nnmod has no cat layer yet, so the manifest's graph
 * returns the four head outputs and this concatenates them into
 * out[rows x cols]. */
static int nested_forward(nnm_module *m, nnm_tensor *x, float *out, int64_t rows, int64_t cols) {
    nnm_tensor *y[4] = {NULL, NULL, NULL, NULL};
    nnm_status st = nnm_module_call(m, &x, 1, y, 4);
    CHECK_STATUS(st, NNM_OK);
    int64_t col = 0;
    int ok = st == NNM_OK;
    for (int i = 0; i < 4 && ok; i++) {
        const nnm_tensor_desc *d = nnm_tensor_desc_get(y[i]);
        ok = d->ndim == 2 && d->shape[0] == rows && col + d->shape[1] <= cols;
        if (!ok) break;
        int64_t w = d->shape[1];
        float *buf = malloc(sizeof(float) * (size_t)(rows * w));
        ok = buf && nnm_tensor_to_f32(y[i], buf, (size_t)(rows * w)) == NNM_OK;
        for (int64_t r = 0; ok && r < rows; r++)
            for (int64_t c = 0; c < w; c++) out[r * cols + col + c] = buf[r * w + c];
        free(buf);
        col += w;
    }
    for (int i = 0; i < 4; i++) nnm_tensor_release(y[i]);
    return ok && col == cols;
}

static void test_nested(void) {
    LEAK_CHECK_BEGIN();
    golden_io io;
    if (!io_load("nested_io.safetensors", &io)) return;
    nnm_manifest *mf = NULL;
    nnm_module *m = build_golden("nested.manifest.json", &mf);
    CU_ASSERT_STRING_EQUAL(nnm_module_type(m), "graph");
    CU_ASSERT_STRING_EQUAL(nnm_module_type(nnm_module_get(m, "heads")), "module_list");
    CU_ASSERT_STRING_EQUAL(nnm_module_type(nnm_module_get(m, "tasks")), "module_dict");
    CU_ASSERT_STRING_EQUAL(nnm_module_type(nnm_module_get(m, "norm")), "center");

    const size_t n = (size_t)(io.rows * io.cols);
    float *got = calloc(n, sizeof *got);
    CU_ASSERT_FATAL(got != NULL);
    CU_ASSERT_TRUE(nested_forward(m, io.input, got, io.rows, io.cols));
    double err = max_abs_diff(got, io.output, n, 1e-5);
    printf("\n    nested: max |nnmod - PyTorch| = %.3g ", err);
    CU_ASSERT_TRUE(err <= 1e-5);

    /* The reverse; norm.scratch (not persistent) is not among the keys. */
    check_reverse(m, mf, "nested_manifest_nnmod.safetensors", "nested.safetensors",
                  "nested_io.safetensors");
    char *keys = file_keys(tu_path(g_dir, "nested_manifest_nnmod.safetensors"));
    CU_ASSERT_PTR_NOT_NULL_FATAL(keys);
    CU_ASSERT_PTR_NULL(strstr(keys, "scratch"));
    CU_ASSERT_PTR_NOT_NULL(strstr(keys, "norm.running_mean"));
    CU_ASSERT_PTR_NOT_NULL(strstr(keys, "tasks.cls.2.weight"));
    free(keys);

    /* The manifest nnmod writes for the built tree rebuilds it: the same
     * outputs, bit for bit, with the saved weights. */
    nnm_manifest *back = NULL, *again = NULL;
    void *doc = NULL;
    size_t len = 0;
    CHECK_STATUS(nnm_manifest_from_module(m, &back), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(back);
    CHECK_STATUS(nnm_manifest_write(back, NNM_MANIFEST_JSON, &doc, &len), NNM_OK);
    CHECK_STATUS(nnm_manifest_parse(g_ctx, doc, len, NNM_MANIFEST_JSON, NULL, NULL, &again),
                 NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(again);
    nnm_module *m2 = NULL;
    CHECK_STATUS(nnm_manifest_build(again, NNM_BUILD_NO_WEIGHTS, &m2), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m2);
    CHECK_STATUS(nnm_module_load(m2, tu_path(g_dir, "nested_manifest_nnmod.safetensors"), 1, NULL),
                 NNM_OK);
    float *got2 = calloc(n, sizeof *got2);
    CU_ASSERT_FATAL(got2 != NULL);
    CU_ASSERT_TRUE(nested_forward(m2, io.input, got2, io.rows, io.cols));
    CU_ASSERT_EQUAL(memcmp(got, got2, n * sizeof *got), 0);
    free(got2);
    nnm_module_release(m2);
    nnm_manifest_free(again);
    nnm_manifest_free(back);
    nnm_free(doc);

    free(got);
    nnm_module_release(m);
    nnm_manifest_free(mf);
    io_free(&io);
    LEAK_CHECK_END();
}

/* ------------------------------------------------------------------------ */
/* The weights' hash                                                         */
/* ------------------------------------------------------------------------ */

/* hex with its first digit changed. */
static void alter_hex(const char *hex, char out[65]) {
    snprintf(out, 65, "%s", hex);
    out[0] = out[0] == '0' ? '1' : '0';
}

static void check_refused(const nnm_manifest *mf, const char *bad_hex) {
    nnm_module *m = (nnm_module *)&m;
    CHECK_STATUS(nnm_manifest_build(mf, 0, &m), NNM_E_INVALID);
    CU_ASSERT_PTR_NULL(m);
    CHECK_MSG("weights.sha256: ");
    CHECK_MSG("mlp.safetensors has sha256 ");
    char needle[128];
    snprintf(needle, sizeof needle, "the manifest expects %s", bad_hex);
    CHECK_MSG(needle);
}

static void test_altered_sha256(void) {
    LEAK_CHECK_BEGIN();
    nnm_manifest *mf = NULL;
    CHECK_STATUS(nnm_manifest_load(g_ctx, golden("mlp.manifest.json"), NNM_MANIFEST_AUTO, NULL,
                                   &mf),
                 NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(mf);
    const char *good = nnm_manifest_weights_sha256(mf);
    CU_ASSERT_PTR_NOT_NULL_FATAL(good);
    CU_ASSERT_EQUAL_FATAL(strlen(good), 64);
    char bad[65], good_copy[65];
    snprintf(good_copy, sizeof good_copy, "%s", good);
    alter_hex(good, bad);

    /* The document as the script wrote it, with one digit of the hash
     * changed (read from the golden dir, so the weights path resolves). */
    size_t len = 0;
    unsigned char *text = tu_read_file(golden("mlp.manifest.json"), &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    char *at = NULL;
    for (size_t i = 0; i + 64 <= len; i++)
        if (memcmp(text + i, good_copy, 64) == 0) {
            at = (char *)text + i;
            break;
        }
    CU_ASSERT_PTR_NOT_NULL_FATAL(at);
    memcpy(at, bad, 64);
    nnm_manifest *altered = NULL;
    CHECK_STATUS(nnm_manifest_parse(g_ctx, text, len, NNM_MANIFEST_AUTO, NULL,
                                    NNM_STATE_GOLDEN_DIR, &altered),
                 NNM_OK);
    free(text);
    CU_ASSERT_PTR_NOT_NULL_FATAL(altered);
    check_refused(altered, bad);
    /* Without weights, nothing is hashed: the tree builds. */
    nnm_module *m = NULL;
    CHECK_STATUS(nnm_manifest_build(altered, NNM_BUILD_NO_WEIGHTS, &m), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL(m);
    nnm_module_release(m);
    nnm_manifest_free(altered);

    /* The same through nnm_manifest_set_weights; back to the right hash, the
     * build succeeds. */
    CHECK_STATUS(nnm_manifest_set_weights(mf, "mlp.safetensors", bad), NNM_OK);
    check_refused(mf, bad);
    CHECK_STATUS(nnm_manifest_set_weights(mf, "mlp.safetensors", good_copy), NNM_OK);
    m = NULL;
    CHECK_STATUS(nnm_manifest_build(mf, 0, &m), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL(m);
    nnm_module_release(m);
    nnm_manifest_free(mf);
    LEAK_CHECK_END();
}

static CU_pSuite add_suite(void) {
    CU_pSuite s = tu_suite("interop", suite_init, state_suite_clean);
    if (!s) return NULL;
    CU_add_test(s, "MLP manifest: PyTorch's output; PyTorch's keys and bytes back", test_mlp);
    CU_add_test(s, "nested manifest (graph into module_list/module_dict): both ways",
                test_nested);
    CU_add_test(s, "altered weights sha256 refused", test_altered_sha256);
    return s;
}

int main(void) { return add_suite() != NULL ? tu_run() : 1; }
