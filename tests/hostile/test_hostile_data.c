/* tests/hostile/test_hostile_data.c - issue 19 through the library: hostile
 * datasets (IDX and safetensors), loaders and checkpoints. One test per class
 * of the issue: crashes (products and sums of untrusted integers), memory
 * before refusal (peak RSS of a forked child through getrusage/wait4: robust
 * on a loaded machine, no timing), counters read from files, silent garbage
 * (non-finite data, ignored targets), vague refusals (every message names the
 * file and the sample or tensor). The gzip bombs are made here, at test time. */
#define _DEFAULT_SOURCE
#include "test_util.h"

#include <jansson.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>

#include "bomb.h"

static nnm_ctx *g_ctx;
#define TU_CTX g_ctx
static char g_dir[256];

static int init(void) {
    if (tu_ctx_new(&g_ctx)) return 1;
    return tu_tmpdir_new(g_dir, sizeof g_dir, "nnm_hostile_data");
}
static int clean(void) {
    tu_dir_remove_all(g_dir);
    return tu_ctx_free(&g_ctx);
}

/* A safetensors file: `head` is the JSON header (padded here), then n blobs. */
static void write_st(const char *path, const char *head, const void *a, size_t na, const void *b,
                     size_t nb) {
    size_t hl = strlen(head), pad = (8 - hl % 8) % 8;
    FILE *f = fopen(path, "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    uint64_t len = hl + pad;
    fwrite(&len, 8, 1, f);
    fwrite(head, 1, hl, f);
    for (size_t i = 0; i < pad; i++) fputc(' ', f);
    if (na) fwrite(a, 1, na, f);
    if (nb) fwrite(b, 1, nb, f);
    CU_ASSERT_EQUAL(fclose(f), 0);
}

/* u8 inputs [n, 4] and I64 targets [n] */
static const char *st_u8_i64(const char *name, int n, const int64_t *targets) {
    const char *path = tu_path(g_dir, name);
    char head[512];
    snprintf(head, sizeof head,
             "{\"targets\":{\"dtype\":\"I64\",\"shape\":[%d],\"data_offsets\":[0,%d]},"
             "\"inputs\":{\"dtype\":\"U8\",\"shape\":[%d,4],\"data_offsets\":[%d,%d]}}",
             n, 8 * n, n, 8 * n, 12 * n);
    unsigned char x[4 * 64] = {0};
    for (int i = 0; i < 4 * n; i++) x[i] = (unsigned char)(i * 7);
    write_st(path, head, targets, 8 * (size_t)n, x, 4 * (size_t)n);
    return path;
}

/* ---- crashes: products and sums of untrusted integers --------------------------- */

static void test_targets_range(void) {
    nnm_dataset *ds = NULL;
    /* 2^63 - 1 once overflowed 1 + the largest target (UBSan) */
    int64_t t[6] = {0, 1, 2, INT64_MAX, 4, 5};
    CHECK_ERROR(nnm_dataset_open_safetensors(g_ctx, st_u8_i64("huge.st", 6, t), NULL, NULL, &ds),
                NNM_E_INVALID, "sample 3 has target 9223372036854775807");
    CHECK_MSG("huge.st: targets 'targets'");
    CU_ASSERT_PTR_NULL(ds);
    t[3] = -5; /* not a class, not ignore_index */
    CHECK_ERROR(nnm_dataset_open_safetensors(g_ctx, st_u8_i64("neg.st", 6, t), NULL, NULL, &ds),
                NNM_E_INVALID, "sample 3 has target -5");
    t[3] = INT64_MIN;
    CHECK_ERROR(nnm_dataset_open_safetensors(g_ctx, st_u8_i64("min.st", 6, t), NULL, NULL, &ds),
                NNM_E_INVALID, "sample 3 has target -9223372036854775808");
    /* -100 is PyTorch's ignore_index: kept, counted, not a class */
    t[3] = NNM_DATASET_IGNORE_INDEX;
    t[5] = NNM_DATASET_IGNORE_INDEX;
    CHECK_STATUS(nnm_dataset_open_safetensors(g_ctx, st_u8_i64("ign.st", 6, t), NULL, NULL, &ds),
                 NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ds);
    nnm_dataset_info info = {sizeof info};
    CHECK_STATUS(nnm_dataset_info_get(ds, &info), NNM_OK);
    CU_ASSERT_EQUAL(info.n_classes, 5);
    CU_ASSERT_EQUAL(info.n_ignored, 2);
    CHECK_STATUS(nnm_dataset_limit(ds, 4), NNM_OK); /* counted over the visible samples */
    CHECK_STATUS(nnm_dataset_info_get(ds, &info), NNM_OK);
    CU_ASSERT_EQUAL(info.n_ignored, 1);
    /* a caller built against 0.4 passes the smaller struct: filled up to it */
    struct {
        nnm_dataset_info info;
        char guard[16];
    } old;
    memset(&old, 0x5a, sizeof old);
    old.info.struct_size = (uint32_t)offsetof(nnm_dataset_info, n_ignored);
    CHECK_STATUS(nnm_dataset_info_get(ds, &old.info), NNM_OK);
    CU_ASSERT_EQUAL(old.info.n_samples, 4);
    CU_ASSERT_EQUAL((unsigned char)old.guard[0], 0x5a);
    nnm_dataset_free(ds);
}

static void test_loader_shape_products(void) {
    int64_t t[4] = {0, 1, 2, 3};
    nnm_dataset *ds = NULL;
    CHECK_STATUS(nnm_dataset_open_safetensors(g_ctx, st_u8_i64("ok.st", 4, t), NULL, NULL, &ds),
                 NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ds);
    nnm_loader_options o;
    memset(&o, 0, sizeof o);
    o.struct_size = sizeof o;
    o.batch_size = 2;
    nnm_loader *l = NULL;
    /* 2^32 x 2^32 wraps to 0 in 64 bits; 2^62 x 4 to 0 as well */
    static const int64_t shapes[][2] = {{(int64_t)1 << 32, (int64_t)1 << 32},
                                        {(int64_t)1 << 62, 4},
                                        {INT64_MAX, INT64_MAX},
                                        {2, 0}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        o.ndim = 2;
        o.shape[0] = shapes[i][0];
        o.shape[1] = shapes[i][1];
        CHECK_ERROR(nnm_loader_new(ds, &o, &l), NNM_E_SHAPE, "cannot be viewed as");
        CHECK_MSG("ok.st");
        CU_ASSERT_PTR_NULL(l);
    }
    o.shape[0] = 2;
    o.shape[1] = 2;
    CHECK_STATUS(nnm_loader_new(ds, &o, &l), NNM_OK);
    nnm_loader_free(l);
    nnm_dataset_free(ds);
}

/* ---- counters and transforms from files ----------------------------------------- */

static void test_loader_normalisation_refused(void) {
    int64_t t[4] = {0, 1, 2, 3};
    nnm_dataset *ds = NULL;
    CHECK_STATUS(nnm_dataset_open_safetensors(g_ctx, st_u8_i64("norm.st", 4, t), NULL, NULL, &ds),
                 NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ds);
    nnm_loader_options o;
    memset(&o, 0, sizeof o);
    o.struct_size = sizeof o;
    o.batch_size = 2;
    nnm_loader *l = NULL;
    o.std = 1e-300; /* every value * 1e300: an infinity in f32 */
    CHECK_ERROR(nnm_loader_new(ds, &o, &l), NNM_E_INVALID, "norm.st: normalisation");
    o.std = 1;
    o.mean = NAN;
    CHECK_ERROR(nnm_loader_new(ds, &o, &l), NNM_E_INVALID, "norm.st: normalisation");
    o.mean = 0;
    o.scale = -1;
    CHECK_ERROR(nnm_loader_new(ds, &o, &l), NNM_E_INVALID, "norm.st: normalisation");
    CU_ASSERT_PTR_NULL(l);
    nnm_dataset_free(ds);
}

/* Rewrites a checkpoint's nnmod_optim "steps" to `step` for every parameter. */
static void set_steps(const char *in, const char *out, json_int_t step) {
    size_t n = 0;
    unsigned char *buf = tu_read_file(in, &n);
    CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
    uint64_t hl;
    memcpy(&hl, buf, 8);
    json_t *doc = json_loadb((const char *)buf + 8, (size_t)hl, 0, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
    json_t *meta = json_object_get(doc, "__metadata__");
    const char *optim = json_string_value(json_object_get(meta, "nnmod_optim"));
    CU_ASSERT_PTR_NOT_NULL_FATAL(optim);
    json_t *o = json_loads(optim, 0, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(o);
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(o, "steps"), k, v) json_integer_set(v, step);
    char *ot = json_dumps(o, JSON_COMPACT);
    json_object_set_new(meta, "nnmod_optim", json_string(ot));
    char *text = json_dumps(doc, JSON_COMPACT);
    write_st(out, text, buf + 8 + hl, n - 8 - (size_t)hl, NULL, 0);
    free(text);
    free(ot);
    json_decref(o);
    json_decref(doc);
    free(buf);
}

static void test_checkpoint_steps_range(void) {
    nnm_module *m = tu_linear(g_ctx, "linear", 3, 2, 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(m);
    nnm_sgd_options so;
    memset(&so, 0, sizeof so);
    so.struct_size = sizeof so;
    so.lr = 0.1;
    so.momentum = 0.9;
    nnm_optim *opt = NULL;
    CHECK_STATUS(nnm_optim_sgd_new(m, &so, &opt), NNM_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(opt);
    /* one step, so that the state exists */
    float xv[3] = {1, 2, 3};
    int64_t xs[2] = {1, 3};
    nnm_tensor *x = tu_tf32(g_ctx, 2, xs, xv), *y = NULL, *s = NULL;
    CHECK_STATUS(tu_call1(m, x, &y), NNM_OK);
    CHECK_STATUS(nnm_op_reduce(g_ctx, NNM_REDUCE_SUM, y, NULL, 0, 0, &s), NNM_OK);
    CHECK_STATUS(nnm_backward(s, NULL, 0), NNM_OK);
    CHECK_STATUS(nnm_optim_step(opt), NNM_OK);
    const char *good = tu_path(g_dir, "ck.safetensors");
    CHECK_STATUS(nnm_checkpoint_save(good, m, opt, NULL, 0, NULL), NNM_OK);
    const char *bad = tu_path(g_dir, "ck_steps.safetensors");
    /* 2^62: the next steps would near the int64 overflow; 2^53 + 1: past exact */
    static const json_int_t steps[] = {(json_int_t)1 << 62, ((json_int_t)1 << 53) + 1, -1};
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        set_steps(good, bad, steps[i]);
        CHECK_ERROR(nnm_checkpoint_load(bad, m, opt), NNM_E_INVALID, "nnmod_optim.steps['");
        CHECK_MSG("ck_steps.safetensors");
        CHECK_MSG("expected a step count from 0 to 2^53");
    }
    set_steps(good, bad, 1); /* the same file, rewritten: still loads */
    CHECK_STATUS(nnm_checkpoint_load(bad, m, opt), NNM_OK);
    nnm_tensor_release(x);
    nnm_tensor_release(y);
    nnm_tensor_release(s);
    nnm_optim_free(opt);
    nnm_module_release(m);
}

int main(void) {
    CU_pSuite s = tu_suite("hostile data (issue 19)", init, clean);
    if (!s) return 1;
    CU_add_test(s, "crash: class targets range-checked, ignore_index counted", test_targets_range);
    CU_add_test(s, "crash: loader shape products checked", test_loader_shape_products);
    CU_add_test(s, "counters: a normalisation that overflows f32 is refused",
                test_loader_normalisation_refused);
    CU_add_test(s, "counters: checkpoint step counts range-checked", test_checkpoint_steps_range);
    return tu_run();
}
