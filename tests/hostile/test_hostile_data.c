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

/* ---- memory before refusal: peak RSS of a forked child ------------------------- */

typedef struct open_case {
    const char *inputs, *targets; /* IDX files */
    uint64_t max_bytes;           /* 0: the default */
    nnm_status want;
    const char *needle;
} open_case;

/* Opens the case's dataset in a child process; returns the child's peak
 * resident memory in KiB (ru_maxrss of wait4), -1 when it did not refuse as
 * wanted. The child starts with the parent's pages (its peak includes them):
 * callers subtract a child that does nothing. */
static long child_peak_kib(const open_case *c) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        if (!c) _exit(0);
        nnm_dataset_options o;
        memset(&o, 0, sizeof o);
        o.struct_size = sizeof o;
        o.max_bytes = c->max_bytes;
        nnm_dataset *ds = NULL;
        nnm_status st = nnm_dataset_open_idx_v2(g_ctx, c->inputs, c->targets, &o, &ds);
        const char *msg = nnm_ctx_errmsg(g_ctx);
        int good = st == c->want && !ds && strstr(msg, c->needle);
        if (!good) fprintf(stderr, "\n  child: %s: %s\n", nnm_status_name(st), msg);
        _exit(good ? 0 : 1);
    }
    int status = 0;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) != pid) return -1;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return -1;
    return ru.ru_maxrss;
}

static const char *idx_labels(const char *name, uint32_t n) {
    unsigned char h[16];
    size_t hl = hx_idx_header(h, 0x08, 1, &n);
    unsigned char *buf = calloc(1, hl + n);
    CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
    memcpy(buf, h, hl);
    const char *path = tu_path(g_dir, name);
    CU_ASSERT_TRUE(tu_write_file(path, buf, hl + n));
    free(buf);
    return path;
}

static const char *idx_bomb(const char *name, int ndim, uint32_t n, uint64_t zero_mib) {
    unsigned char h[32];
    uint32_t d[3] = {n, 28, 28};
    size_t hl = hx_idx_header(h, 0x08, ndim, d);
    const char *path = tu_path(g_dir, name);
    CU_ASSERT_EQUAL_FATAL(hx_gzip_bomb(path, h, hl, zero_mib), 0);
    return path;
}

static void test_bombs_refused_before_memory(void) {
    char in_small[512], lab_small[512], in_big[512], lab_big[512], cut[512], lab_cut[512],
        zero[512], lab_4g[512], lab_1e8[512];
    /* 4.8 GB of zeros (4.6 MB of gzip) behind a header declaring 6000 images */
    snprintf(in_small, sizeof in_small, "%s", idx_bomb("b6000.idx.gz", 3, 6000, 4600));
    snprintf(lab_small, sizeof lab_small, "%s", idx_labels("l6000.idx", 6000));
    /* the same declaring 6,100,000 images: 4.8 GB, over the 4 GiB default */
    snprintf(in_big, sizeof in_big, "%s", idx_bomb("b6m.idx.gz", 3, 6100000, 4600));
    snprintf(lab_big, sizeof lab_big, "%s", idx_bomb("l6m.idx.gz", 1, 6100000, 6));
    /* 7,340,032 images declared (5.75 GB), 1 GiB in the stream: truncated */
    snprintf(cut, sizeof cut, "%s", idx_bomb("cut.idx.gz", 3, 7340032, 1024));
    snprintf(lab_cut, sizeof lab_cut, "%s", idx_bomb("l7m.idx.gz", 1, 7340032, 7));
    /* 10^8 samples of shape [0]: 12 bytes */
    uint32_t dz[2] = {100000000u, 0};
    unsigned char h[16];
    size_t hl = hx_idx_header(h, 0x08, 2, dz);
    snprintf(zero, sizeof zero, "%s", tu_path(g_dir, "zero.idx"));
    CU_ASSERT_TRUE(tu_write_file(zero, h, hl));
    snprintf(lab_1e8, sizeof lab_1e8, "%s", idx_bomb("l1e8.idx.gz", 1, 100000000u, 1));
    /* 4e9 labels declared for 6000 images */
    snprintf(lab_4g, sizeof lab_4g, "%s", idx_bomb("l4g.idx.gz", 1, 4000000000u, 4600));
    const open_case cases[] = {
        {in_small, lab_small, 0, NNM_E_INVALID, "trailing bytes"},
        {in_small, NULL, 0, NNM_E_INVALID, "trailing bytes"},
        {in_big, lab_big, 0, NNM_E_LIMIT, "over the limit of 4294967296 bytes"},
        {cut, lab_cut, (uint64_t)1 << 40, NNM_E_INVALID, "truncated"},
        {zero, lab_1e8, 0, NNM_E_SHAPE, "samples of no values"},
        {in_small, lab_4g, 0, NNM_E_SHAPE, "holds 4000000000 targets"},
        {lab_4g, NULL, 0, NNM_E_LIMIT, "over the limit"},
    };
    const long base = child_peak_kib(NULL);
    CU_ASSERT_TRUE_FATAL(base > 0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        long kib = child_peak_kib(&cases[i]);
        /* each would take gigabytes; 64 MiB is room for a slow allocator */
        if (kib < 0 || kib - base > 65536)
            fprintf(stderr, "\n  case %zu (%s): peak %ld KiB over a baseline of %ld KiB\n", i,
                    cases[i].needle, kib, base);
        CU_ASSERT_TRUE(kib > 0);
        CU_ASSERT_TRUE(kib - base <= 65536);
    }
}

/* ---- silent garbage: non-finite data ------------------------------------------ */

static void test_nonfinite_refused(void) {
    /* IDX f32 inputs [4, 3] (big-endian) with a NaN in sample 2, value 1 */
    unsigned char buf[64];
    uint32_t d[2] = {4, 3};
    size_t hl = hx_idx_header(buf, 0x0D, 2, d);
    for (int i = 0; i < 12; i++) {
        float v = i == 7 ? NAN : (float)i;
        uint32_t u;
        memcpy(&u, &v, 4);
        for (int b = 0; b < 4; b++) buf[hl + 4 * i + b] = (unsigned char)(u >> (24 - 8 * b));
    }
    const char *in = tu_path(g_dir, "nan.idx");
    char inp[512];
    snprintf(inp, sizeof inp, "%s", in);
    CU_ASSERT_TRUE(tu_write_file(inp, buf, hl + 48));
    const char *lab = idx_labels("l4.idx", 4);
    nnm_dataset *ds = NULL;
    CHECK_ERROR(nnm_dataset_open_idx(g_ctx, inp, lab, &ds), NNM_E_INVALID,
                "nan.idx: sample 2 holds NaN (value 1 of the sample)");
    nnm_dataset_options o;
    memset(&o, 0, sizeof o);
    o.struct_size = sizeof o;
    o.flags = NNM_DATASET_ALLOW_NONFINITE;
    CHECK_STATUS(nnm_dataset_open_idx_v2(g_ctx, inp, lab, &o, &ds), NNM_OK);
    nnm_dataset_free(ds);
    ds = NULL;
    /* IDX f64 targets: 1e300 is an infinity in f32 */
    uint32_t dt[1] = {4};
    hl = hx_idx_header(buf, 0x0E, 1, dt);
    for (int i = 0; i < 4; i++) {
        double v = i == 3 ? 1e300 : (double)i;
        uint64_t u;
        memcpy(&u, &v, 8);
        for (int b = 0; b < 8; b++) buf[hl + 8 * i + b] = (unsigned char)(u >> (56 - 8 * b));
    }
    const char *tp = tu_path(g_dir, "big.idx");
    char tpp[512];
    snprintf(tpp, sizeof tpp, "%s", tp);
    CU_ASSERT_TRUE(tu_write_file(tpp, buf, hl + 32));
    snprintf(inp, sizeof inp, "%s", idx_labels("in4.idx", 4)); /* u8 inputs [4] */
    CHECK_ERROR(nnm_dataset_open_idx(g_ctx, inp, tpp, &ds), NNM_E_INVALID,
                "big.idx: sample 3 holds 1e+300, outside f32's range");
    /* safetensors: F16 inputs with an infinity (0x7c00) in sample 1, BF16
     * targets with a NaN (0x7fc0) in sample 2 */
    const char *sp = tu_path(g_dir, "half.st");
    uint16_t x[6] = {0x3c00, 0x3c00, 0x3c00, 0x7c00, 0x3c00, 0x3c00}, t[3] = {0, 0, 0x7fc0};
    write_st(sp,
             "{\"inputs\":{\"dtype\":\"F16\",\"shape\":[3,2],\"data_offsets\":[0,12]},"
             "\"targets\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[12,18]}}",
             x, sizeof x, t, sizeof t);
    CHECK_ERROR(nnm_dataset_open_safetensors(g_ctx, sp, NULL, NULL, &ds), NNM_E_INVALID,
                "half.st: inputs 'inputs': sample 1 holds an infinity (value 1 of the sample)");
    x[3] = 0x3c00;
    write_st(sp,
             "{\"inputs\":{\"dtype\":\"F16\",\"shape\":[3,2],\"data_offsets\":[0,12]},"
             "\"targets\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[12,18]}}",
             x, sizeof x, t, sizeof t);
    CHECK_ERROR(nnm_dataset_open_safetensors(g_ctx, sp, NULL, NULL, &ds), NNM_E_INVALID,
                "half.st: targets 'targets': sample 2 holds NaN");
    CHECK_STATUS(nnm_dataset_open_safetensors_v2(g_ctx, sp, &o, &ds), NNM_OK);
    nnm_dataset_free(ds);
}

static void test_dataset_limits(void) {
    int64_t t[4] = {0, 1, 2, 3};
    const char *p = st_u8_i64("lim.st", 4, t);
    nnm_dataset_options o;
    memset(&o, 0, sizeof o);
    o.struct_size = sizeof o;
    o.max_bytes = 100; /* inputs 16 + targets 32 + order 64 = 112 */
    nnm_dataset *ds = NULL;
    CHECK_ERROR(nnm_dataset_open_safetensors_v2(g_ctx, p, &o, &ds), NNM_E_LIMIT,
                "lim.st: the dataset would hold");
    CHECK_MSG("over the limit of 100 bytes");
    o.max_bytes = 112;
    CHECK_STATUS(nnm_dataset_open_safetensors_v2(g_ctx, p, &o, &ds), NNM_OK);
    nnm_dataset_free(ds);
    ds = NULL;
    o.struct_size = 8;
    CHECK_ERROR(nnm_dataset_open_safetensors_v2(g_ctx, p, &o, &ds), NNM_E_INVALID, "struct_size");
    o.struct_size = sizeof o;
    o.flags = 0x80;
    CHECK_ERROR(nnm_dataset_open_safetensors_v2(g_ctx, p, &o, &ds), NNM_E_INVALID, "unknown flags");
    /* a sample of no values, and no samples */
    const char *z = tu_path(g_dir, "zero.st");
    write_st(z,
             "{\"inputs\":{\"dtype\":\"U8\",\"shape\":[1099511627776,0],\"data_offsets\":[0,0]},"
             "\"targets\":{\"dtype\":\"U8\",\"shape\":[1099511627776,0],\"data_offsets\":[0,0]}}",
             NULL, 0, NULL, 0);
    CHECK_ERROR(nnm_dataset_open_safetensors(g_ctx, z, NULL, NULL, &ds), NNM_E_SHAPE,
                "1099511627776 samples of no values");
    CU_ASSERT_PTR_NULL(ds);
}

/* ---- a comm plugin that never answers ------------------------------------------ */

static void comm_timeout_case(const char *file, const char *name) {
    nnm_ctx *ctx = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_ctx_new(NULL, &ctx), NNM_OK);
    char path[512];
    snprintf(path, sizeof path, "%s/%s.so", NNM_HOSTILE_COMM_DIR, file);
    CU_ASSERT_EQUAL_FATAL(nnm_plugin_load(ctx, path), NNM_OK);
    nnm_comm_options co = {sizeof co, 0, 0.2};
    nnm_comm *c = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_comm_new(ctx, name, &co, &c), NNM_OK);
    float v[4] = {1, 2, 3, 4};
    int64_t shape[1] = {4};
    nnm_tensor *t = NULL;
    CU_ASSERT_EQUAL_FATAL(nnm_tensor_from_f32(ctx, 1, shape, v, &t), NNM_OK);
    nnm_status st = nnm_comm_all_reduce(c, t);
    const char *msg = nnm_ctx_errmsg(ctx);
    char want[128];
    snprintf(want, sizeof want, "comm '%s' rank 0 of 1: all-reduce #1 timed out after 0 s", name);
    if (st != NNM_E_TIMEOUT || !strstr(msg, want)) fprintf(stderr, "\n  %s: %s\n", name, msg);
    CU_ASSERT_EQUAL(st, NNM_E_TIMEOUT);
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, want));
    /* broken: the next collective is refused at once, with the same story */
    CU_ASSERT_EQUAL(nnm_comm_barrier(c), NNM_E_STATE);
    CU_ASSERT_PTR_NOT_NULL(strstr(nnm_ctx_errmsg(ctx), "all-reduce #1 timed out"));
    CU_ASSERT_PTR_NOT_NULL(strstr(nnm_ctx_errmsg(ctx), "the communicator is broken"));
    nnm_tensor_release(t);
    nnm_comm_free(c);
    /* with `test`, the abandoned work went with the plugin's shutdown and the
     * context is free; without, a thread is still inside the plugin's wait:
     * the communicator, the plugin and the context stay for the process */
    nnm_ctx_free(ctx);
}

static void test_comm_wait_bounded(void) {
    unsetenv("NNM_COMM_TIMEOUT"); /* the options' 0.2 s */
    comm_timeout_case("hx_hang", "hx_hang");
    comm_timeout_case("hx_hang_notest", "hx_hang_notest");
}

int main(void) {
    CU_pSuite s = tu_suite("hostile data (issue 19)", init, clean);
    if (!s) return 1;
    CU_add_test(s, "crash: class targets range-checked, ignore_index counted", test_targets_range);
    CU_add_test(s, "crash: loader shape products checked", test_loader_shape_products);
    CU_add_test(s, "counters: a normalisation that overflows f32 is refused",
                test_loader_normalisation_refused);
    CU_add_test(s, "counters: checkpoint step counts range-checked", test_checkpoint_steps_range);
    CU_add_test(s, "memory: gzip bombs and lying headers refused before memory (peak RSS)",
                test_bombs_refused_before_memory);
    CU_add_test(s, "silent garbage: non-finite data refused by file and sample",
                test_nonfinite_refused);
    CU_add_test(s, "memory: the dataset byte limit, zero-width samples", test_dataset_limits);
    CU_add_test(s, "comm: the host bounds every wait on a plugin that never completes",
                test_comm_wait_bounded);
    return tu_run();
}
